"""Property tests (hypothesis): random broadcast-compatible shapes (rank 0..4, sizes 0..3) and dtype pairs from the
supported set; elementwise results match numpy in shape, dtype and value; broadcast failures match numpy; Python
scalar weak promotion matches numpy for each array dtype.

Each new (shape, dtype) signature compiles (~20-60 ms), so max_examples stays modest; derandomize keeps the run
time and the examples stable from run to run.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jitensor
from jitensor.errors import ShapeError
from helpers import assert_same, run_numpy

DTYPES = [np.dtype(d) for d in ("bool", "int8", "int32", "int64", "uint8", "uint32", "float32", "float64")]

SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no 'explain' (slow, writes patches)
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

dtypes = st.sampled_from(DTYPES)


def _elements(dt: np.dtype):
    if dt.kind == "f":
        return hnp.from_dtype(dt, allow_nan=True, allow_infinity=True, allow_subnormal=True)
    return hnp.from_dtype(dt)


@st.composite
def array_pairs(draw, compatible=True):
    if compatible:
        shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0,
                                                        max_side=3)).input_shapes
    else:
        shapes = [draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)) for _ in range(2)]
    d1, d2 = draw(dtypes), draw(dtypes)
    a = draw(hnp.arrays(d1, shapes[0], elements=_elements(d1)))
    b = draw(hnp.arrays(d2, shapes[1], elements=_elements(d2)))
    return a, b


def _add(a, b):
    return a + b


def _mul(a, b):
    return a * b


def _maximum(a, b):
    return np.maximum(a, b)


def _less(a, b):
    return a < b


def _where(a, b):
    return np.where(a > 0, a, b)


def _combo(a, b):
    return (a * b, a < b, np.maximum(a, b))


OPS = {"add": _add, "mul": _mul, "maximum": _maximum, "less": _less, "where": _where}
JITTED = {name: jitensor.jit(fn, cache=False) for name, fn in OPS.items()}


def _compare(name, a, b):
    fn = OPS[name]
    try:
        expected = run_numpy(fn, a, b)
    except TypeError:  # numpy has no loop for these dtypes (e.g. bool - bool): jitensor must refuse too
        with pytest.raises(jitensor.errors.JitensorError):
            JITTED[name](a, b)
        return
    with np.errstate(all="ignore"):
        got = JITTED[name](a, b)
    a0, b0 = a.copy(), b.copy()
    assert_same(expected, got, rtol={np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12})
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("name", list(OPS))
@SETTINGS
@given(pair=array_pairs())
def test_elementwise_matches_numpy(name, pair):
    a, b = pair
    _compare(name, a, b)


@SETTINGS
@given(pair=array_pairs())
def test_elementwise_on_strided_views(pair):
    """The same ops on reversed views of the inputs (new strides, same shapes)."""
    a, b = pair
    _compare("add", a[::-1] if a.ndim else a, b[..., ::-1] if b.ndim else b)
    _compare("where", a[..., ::-1] if a.ndim else a, b[::-1] if b.ndim else b)


@SETTINGS
@given(pair=array_pairs(compatible=False))
def test_broadcast_failure_iff_numpy_fails(pair):
    a, b = pair
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        with pytest.raises(ShapeError) as info:
            JITTED["mul"](a, b)
        assert str(a.shape) in str(info.value) and str(b.shape) in str(info.value)
        return
    _compare("mul", a, b)


_COMBO = jitensor.jit(_combo, cache=False)


@SETTINGS
@given(pair=array_pairs())
def test_fused_combination(pair):
    a, b = pair
    expected = run_numpy(_combo, a, b)
    with np.errstate(all="ignore"):
        got = _COMBO(a, b)
    assert_same(expected, got, rtol={np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12})


# -- Python scalar weak promotion


def _scalar_add(a, s):
    return a + s


def _scalar_rmul(a, s):
    return s * a


def _scalar_lt(a, s):
    return a < s


_SCALAR_OPS = {"add": _scalar_add, "rmul": _scalar_rmul, "lt": _scalar_lt}
_SCALAR_JIT = {k: jitensor.jit(f, cache=False) for k, f in _SCALAR_OPS.items()}


@st.composite
def array_and_scalar(draw):
    dt = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    a = draw(hnp.arrays(dt, shape, elements=_elements(dt)))
    kind = draw(st.sampled_from(["bool", "int", "float"]))
    if kind == "bool":
        s = draw(st.booleans())
    elif kind == "int":
        if dt.kind in "iu":  # a Python int must fit the array's dtype (numpy raises OverflowError otherwise)
            info = np.iinfo(dt)
            s = draw(st.integers(int(info.min), int(info.max)))
        else:
            s = draw(st.integers(-2 ** 31, 2 ** 31))
    else:
        s = draw(st.floats(allow_nan=True, allow_infinity=True, width=64))
    return a, s


@pytest.mark.parametrize("op", list(_SCALAR_OPS))
@SETTINGS
@given(data=array_and_scalar())
def test_python_scalar_weak_promotion(op, data):
    a, s = data
    fn = _SCALAR_OPS[op]
    try:
        expected = run_numpy(fn, a, s)
    except TypeError:
        with pytest.raises(jitensor.errors.JitensorError):
            _SCALAR_JIT[op](a, s)
        return
    with np.errstate(all="ignore"):
        got = _SCALAR_JIT[op](a, s)
    assert_same(expected, got, rtol={np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12})


@settings(max_examples=30, deadline=None, database=None, derandomize=True)
@given(dt=dtypes, s=st.one_of(st.booleans(), st.integers(-100, 100), st.floats(-1e3, 1e3)))
def test_scalar_literal_matches_argument(dt, s):
    """The scalar as a literal in the function body and as an argument give numpy's dtype."""
    a = np.arange(4).astype(dt)
    lit = jitensor.jit(lambda x: x + s, cache=False)
    try:
        expected = run_numpy(lambda x: x + s, a)
    except (TypeError, OverflowError):  # numpy refuses (a literal out of the dtype's range): so must jitensor
        with pytest.raises((TypeError, OverflowError, jitensor.errors.JitensorError)):
            lit(a)
        return  # (as an argument it is not refused yet: test_python_int_argument_out_of_range_raises)
    with np.errstate(all="ignore"):
        assert_same(expected, lit(a), rtol={np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12})
        assert_same(expected, _SCALAR_JIT["add"](a, s), rtol={np.dtype(np.float32): 2e-6,
                                                              np.dtype(np.float64): 1e-12})
