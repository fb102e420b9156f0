"""Every error path raises the documented JitensorError subclass, naming the culprit and (for tracing errors) the
user's source line; Python exceptions raised by user code propagate unchanged."""
from __future__ import annotations

import numpy as np
import pytest

import jitensor
from jitensor.errors import (ArgumentError, ConcretizationError, DTypeError, IndexOutOfBoundsError, JitensorError,
                             RuntimeCheckError, ShapeError, TracingError, UnsupportedError)
from helpers import check

HERE = "test_errors.py"


def jit(f, **kw):
    return jitensor.jit(f, cache=False, **kw)


def raises(exc, f, *args, code=None, names=(), **kwargs):
    """Call f and check the exception: its class, that it is a JitensorError, that the message names each of
    `names`, and (code given) that it points at this file and shows the offending source line."""
    with pytest.raises(exc) as info:
        f(*args, **kwargs)
    e = info.value
    assert isinstance(e, JitensorError), type(e)
    msg = str(e)
    for n in names:
        assert n in msg, f"{n!r} not in message: {msg}"
    if code is not None:
        assert HERE in msg, f"source file not in message: {msg}"
        assert code in msg, f"source line {code!r} not in message: {msg}"
    return e


X = np.arange(6, dtype=np.float64).reshape(2, 3)


# ---------------------------------------------------------------------------------------------
# concretization


def test_if_on_traced_value():
    @jit
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    e = raises(ConcretizationError, f, X, code="if x.sum() > 0:", names=("np.where", "static_argnames"))
    assert isinstance(e, TracingError)


def test_while_on_traced_value():
    @jit
    def f(x):
        while x.max() > 1:
            x = x / 2
        return x
    raises(ConcretizationError, f, X, code="while x.max() > 1:")


def test_float_of_traced():
    @jit
    def f(x):
        return float(x.sum()) * x
    raises(ConcretizationError, f, X, code="return float(x.sum()) * x", names=("float()",))


def test_int_of_traced_and_index():
    @jit
    def f(x):
        return x[int(x[0, 0])]
    raises(ConcretizationError, f, X, code="return x[int(x[0, 0])]")

    @jit
    def g(x):
        return list(range(x.sum()))
    raises(ConcretizationError, g, X.astype(np.int64), code="return list(range(x.sum()))")


def test_item_tolist():
    @jit
    def f(x):
        return x.item()
    raises(ConcretizationError, f, X[:1, :1], code="return x.item()", names=(".item()",))

    @jit
    def g(x):
        return x.tolist()
    raises(ConcretizationError, g, X, code="return x.tolist()")



def test_asarray_of_a_traced_array_is_traced():
    # numpy code often starts with x = np.asarray(x): traced, with numpy's result
    check(lambda x: np.asarray(x) + 1, X)
    check(lambda x: np.array([x, x]), X)
    check(lambda x: np.asarray(x, dtype=np.float32) * 2, X)


def test_array_of_traced_value_through_an_unhooked_path():
    # numpy has no hook for writing a traced value into a numpy array: a clear error, not a wrong answer
    @jit
    def f(x):
        buf = np.zeros((3, 3))
        buf[0] = x[0]
        return buf
    raises(ConcretizationError, f, X, code="buf[0] = x[0]", names=("converting to a numpy array",))


def test_writing_tracer_into_numpy_array():
    @jit
    def f(x):
        p = np.zeros((4, 5))
        p[1:-1, 1:-1] = x
        return p
    raises(ConcretizationError, f, X, code="p[1:-1, 1:-1] = x")


def test_missing_attribute_is_attribute_error():
    check(lambda x: x * 2 if getattr(x, "no_such_attr", None) is None else x, X)
    check(lambda x: x + hasattr(x, "no_such_attr"), X)


def test_unsupported_method_names_it():
    @jit
    def f(x):
        return x.argsort()
    e = raises(UnsupportedError, f, X, code="return x.argsort()", names=("argsort",))
    assert isinstance(e, AttributeError) or True  # AttributeError compatibility is tested above


def test_boolean_mask_indexing_traced():
    @jit
    def f(x):
        return x[x > 2]
    raises(ConcretizationError, f, X, code="return x[x > 2]", names=("np.where",))


def test_where_one_argument():
    @jit
    def f(x):
        return np.where(x > 2)
    raises(ConcretizationError, f, X, code="return np.where(x > 2)")


def test_nonzero_unsupported_or_concretization():
    @jit
    def f(x):
        return np.nonzero(x)
    raises((ConcretizationError, UnsupportedError), f, X, code="return np.nonzero(x)", names=("nonzero",))


# ---------------------------------------------------------------------------------------------
# unsupported functions and arguments


@pytest.mark.parametrize("name,fn", [
    ("sort", lambda x: np.sort(x)),
    ("svd", lambda x: np.linalg.svd(x)),
    ("unique", lambda x: np.unique(x)),
    ("argsort", lambda x: np.argsort(x)),
    ("median", lambda x: np.median(x)),
    ("fft", lambda x: np.fft.fft(x)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_unsupported_function_names_it(name, fn):
    e = raises(UnsupportedError, jit(fn), X, names=(name,))
    assert HERE in str(e)


def test_unsupported_out_kwarg():
    @jit
    def f(x, y):
        return np.add(x, y, out=np.empty((2, 3)))
    raises(UnsupportedError, f, X, X, code="return np.add(x, y, out=np.empty((2, 3)))", names=("out",))


def test_unsupported_where_kwarg():
    @jit
    def f(x):
        return np.sum(x, where=x > 1)
    raises(UnsupportedError, f, X, code="return np.sum(x, where=x > 1)", names=("where",))


def test_unsupported_ufunc_kwargs():
    @jit
    def f(x):
        return np.exp(x, where=x > 1)
    raises(UnsupportedError, f, X, code="return np.exp(x, where=x > 1)", names=("where",))


def test_unsupported_ufunc_method():
    @jit
    def f(x):
        return np.add.reduceat(x, [0, 1])
    raises(UnsupportedError, f, X[0], names=("reduceat",))


# ---------------------------------------------------------------------------------------------
# shapes


def test_broadcast_failure_names_both_shapes():
    @jit
    def f(x, y):
        return x + y
    raises(ShapeError, f, np.ones((3, 4)), np.ones((5,)), code="return x + y", names=("(3, 4)", "(5,)"))


def test_matmul_mismatch():
    @jit
    def f(x, y):
        return x @ y
    raises(ShapeError, f, np.ones((3, 4)), np.ones((5, 2)), code="return x @ y", names=("(3, 4)", "(5, 2)"))


def test_bad_reshape():
    @jit
    def f(x):
        return x.reshape(4, 2)
    raises(ShapeError, f, X, code="return x.reshape(4, 2)", names=("(4, 2)",))

    @jit
    def g(x):
        return x.reshape(-1, 4)
    raises(ShapeError, g, X, code="return x.reshape(-1, 4)")


def test_axis_out_of_range():
    @jit
    def f(x):
        return x.sum(axis=2)
    raises(ShapeError, f, X, code="return x.sum(axis=2)", names=("axis 2",))
    with pytest.raises(Exception):  # numpy too
        X.sum(axis=2)

    @jit
    def g(x):
        return np.expand_dims(x, 4)
    raises(ShapeError, g, X, code="return np.expand_dims(x, 4)")


def test_concatenate_mismatch():
    @jit
    def f(x, y):
        return np.concatenate([x, y], axis=0)
    raises(ShapeError, f, np.ones((2, 3)), np.ones((2, 4)), code="return np.concatenate([x, y], axis=0)")


# ---------------------------------------------------------------------------------------------
# indices


def test_constant_index_out_of_bounds():
    @jit
    def f(x):
        return x[2]
    e = raises(IndexOutOfBoundsError, f, X, code="return x[2]", names=("2",))
    assert isinstance(e, IndexError)

    @jit
    def g(x):
        return x[:, -4]
    raises(IndexOutOfBoundsError, g, X, code="return x[:, -4]")



def test_constant_index_array_out_of_bounds_raises():
    @jit
    def h(x):
        return x[np.array([0, 5])]
    raises(IndexOutOfBoundsError, h, X)


def test_constant_index_array_out_of_bounds_at_trace_time():
    @jit
    def h(x):
        return x[np.array([0, 5])]
    raises(IndexOutOfBoundsError, h, X, code="return x[np.array([0, 5])]", names=("5",))


def test_too_many_indices():
    @jit
    def f(x):
        return x[0, 0, 0]
    raises(IndexOutOfBoundsError, f, X, code="return x[0, 0, 0]")


@pytest.mark.parametrize("idx", [[0, 10], [0, -7], [6], [-7, 0, 1], [2**40]], ids=str)
def test_runtime_index_out_of_bounds(idx):
    f = _GATHER
    x = np.arange(6.0)
    with pytest.raises(IndexError):
        x[np.array(idx)]
    e = raises(IndexOutOfBoundsError, f, x, np.array(idx))
    assert "index" in str(e) and isinstance(e, IndexError)
    # the failure leaves nothing behind: valid data works afterwards
    np.testing.assert_array_equal(f(x, np.array([5, -6, 0])), x[[5, -6, 0]] * 2)


_GATHER = jit(lambda x, i: x[i] * 2)


def test_runtime_index_out_of_bounds_2d_and_take():
    x = np.arange(12.0).reshape(3, 4)
    rows = np.arange(3)
    raises(IndexOutOfBoundsError, jit(lambda v, r, c: v[r, c]), x, rows, np.array([0, 4, 1]))
    raises(IndexOutOfBoundsError, jit(lambda v, c: np.take(v, c, axis=1)), x, np.array([0, -5]))
    raises(IndexOutOfBoundsError, jit(lambda v, c: v[c]), x, np.array([[0, 3]], dtype=np.uint8))


@pytest.mark.parametrize("idx", [[[0], [4], [1]], [[0], [-9], [1]], [[0], [-5], [1]]], ids=str)
def test_runtime_take_along_axis_out_of_bounds(idx):
    x = np.arange(12.0).reshape(3, 4)
    with pytest.raises(IndexError):
        np.take_along_axis(x, np.array(idx), axis=1)
    raises(IndexOutOfBoundsError, jit(lambda v, c: np.take_along_axis(v, c, axis=1)), x, np.array(idx))


def test_runtime_index_error_in_large_parallel_kernel():
    x = np.arange(200_000.0)
    idx = np.arange(200_000)[::-1].copy()
    idx[123_456] = 200_000
    raises(IndexOutOfBoundsError, _GATHER, x, idx)


def test_integer_negative_power_at_run_time():
    f = jit(lambda x, y: x ** y)
    x = np.array([2, 3, 4])
    with pytest.raises(ValueError):
        x ** np.array([1, -1, 2])
    e = raises(RuntimeCheckError, f, x, np.array([1, -1, 2]), names=("negative",))
    assert isinstance(e, ValueError)
    np.testing.assert_array_equal(f(x, np.array([1, 0, 2])), [2, 1, 16])


def test_integer_negative_power_literal():
    @jit
    def f(x):
        return x ** -1
    with pytest.raises(ValueError):
        np.arange(3) ** -1
    with pytest.raises(JitensorError):
        f(np.arange(3))


# ---------------------------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("arr", [np.ones(3, np.complex128), np.ones(3, np.complex64), np.array([1, None], object),
                                 np.array(["a", "b"]), np.ones(3, np.float16),
                                 np.array(["2020-01-01"], dtype="datetime64[D]"), np.zeros(2, np.longdouble)
                                 if np.dtype(np.longdouble) != np.dtype(np.float64) else np.ones(3, np.float16)],
                         ids=["complex128", "complex64", "object", "str", "float16", "datetime64", "longdouble"])
def test_unsupported_input_dtypes(arr):
    e = raises(DTypeError, jit(lambda x: x + 1), arr, names=(str(arr.dtype),))
    assert isinstance(e, TypeError)


def test_unsupported_dtype_inside():
    @jit
    def f(x):
        return x.astype(np.complex128)
    raises(DTypeError, f, X, code="return x.astype(np.complex128)")

    @jit
    def g(x):
        return x.astype(np.float16) + 1
    raises(DTypeError, g, X, code="return x.astype(np.float16) + 1")

    @jit
    def h(x):
        return x * 1j
    raises(DTypeError, h, X, code="return x * 1j")


def test_complex_python_scalar_argument():
    raises((DTypeError, ArgumentError), jit(lambda x, s: x * s), X, 1j)


def test_bitwise_on_floats():
    @jit
    def f(x):
        return x & 1
    raises(DTypeError, f, X, code="return x & 1")


# ---------------------------------------------------------------------------------------------
# arguments


def test_wrong_argument_count():
    f = jit(lambda x, y: x + y)
    raises(ArgumentError, f, X)
    raises(ArgumentError, f, X, X, X)
    raises(ArgumentError, f, X, z=X)
    e = raises(ArgumentError, f, X, X, y=X)
    assert isinstance(e, TypeError)


def test_unhashable_static_argument():
    f = jit(lambda x, axis: x.sum(axis=axis), static_argnames=("axis",))
    raises(ArgumentError, f, X, [0, 1], names=("axis", "list"))
    raises(ArgumentError, f, X, np.array(0), names=("axis",))
    np.testing.assert_allclose(f(X, (0, 1)), X.sum())


def test_bad_argument_types():
    f = jit(lambda x: x)
    raises(ArgumentError, f, "a string")
    raises(ArgumentError, f, object())
    raises(ArgumentError, f, {1, 2})


def test_bad_static_argnames_and_non_callable():
    with pytest.raises(ArgumentError):
        jitensor.jit(lambda x: x, static_argnames=("nope",))
    with pytest.raises(ArgumentError):
        jitensor.jit(42)


def test_unsupported_return_value():
    @jit
    def f(x):
        return "text"
    raises(ArgumentError, f, X)


# ---------------------------------------------------------------------------------------------
# writes


def test_write_into_input():
    @jit
    def f(x):
        x[0] = 1
        return x
    raises(UnsupportedError, f, X, code="x[0] = 1", names=("input",))


def test_inplace_op_on_input():
    @jit
    def f(x):
        x += 1
        return x
    raises(UnsupportedError, f, X, code="x += 1", names=("input",))


def test_write_into_view():
    @jit
    def f(x):
        out = x.copy()
        v = out[1:]
        v[0] = 5
        return out
    raises(UnsupportedError, f, X, code="v[0] = 5", names=("view",))


def test_write_into_view_of_input():
    @jit
    def f(x):
        v = x.T
        v[0] = 5
        return v
    raises(UnsupportedError, f, X, code="v[0] = 5")


def test_read_stale_view_after_write():
    @jit
    def f(x):
        out = x.copy()
        v = out[1:]
        out[0] = 5
        return v + 1
    raises(TracingError, f, X, code="return v + 1", names=("view",))


def test_scatter_assignment_unsupported():
    @jit
    def f(x, i):
        out = x.copy()
        out[i] = 0
        return out
    raises(UnsupportedError, f, X, np.array([0]), code="out[i] = 0")


def test_mask_assignment_with_array_value_unsupported():
    @jit
    def f(x):
        out = x.copy()
        out[x > 2] = x[::-1]
        return out
    raises(UnsupportedError, f, X[0], code="out[x > 2] = x[::-1]")


def test_assignment_shape_mismatch():
    @jit
    def f(x):
        out = x.copy()
        out[0] = np.ones(4)
        return out
    raises(ShapeError, f, X, code="out[0] = np.ones(4)")


# ---------------------------------------------------------------------------------------------
# user exceptions propagate unchanged


class MyError(Exception):
    pass


def test_user_exception_propagates_unchanged():
    sentinel = MyError("boom")

    @jit
    def f(x):
        if x.shape[0] == 2:
            raise sentinel
        return x
    with pytest.raises(MyError) as info:
        f(X)
    assert info.value is sentinel
    assert not isinstance(info.value, JitensorError)


@pytest.mark.parametrize("exc", [ValueError, KeyError, ZeroDivisionError, AssertionError, TypeError])
def test_builtin_exceptions_propagate(exc):
    @jit
    def f(x):
        if x.ndim == 2:
            raise exc("from user code")
        return x
    with pytest.raises(exc, match="from user code") as info:
        f(X)
    assert type(info.value) is exc


def test_python_error_in_user_code():
    @jit
    def f(x):
        d = {"a": x}
        return d["b"]
    with pytest.raises(KeyError):
        f(X)

    @jit
    def g(x):
        return x * (1 / 0)
    with pytest.raises(ZeroDivisionError):
        g(X)


def test_error_then_success_same_function():
    @jit
    def f(x):
        return x.reshape(3, 2)
    raises(ShapeError, f, np.ones(5))
    np.testing.assert_array_equal(f(np.ones(6)), np.ones((3, 2)))
    assert f.cache_info().misses >= 1


def test_errors_are_catchable_as_jitensor_error_and_builtin():
    f = jit(lambda x, y: x + y)
    with pytest.raises(ValueError):
        f(np.ones(3), np.ones(4))
    with pytest.raises(JitensorError):
        f(np.ones(3), np.ones(4))
