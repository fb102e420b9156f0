"""The frontend's table: numpy ufuncs, functions and ndarray methods -> graph ops.

Each entry turns Tracers, numpy arrays and Python scalars into graph nodes. Dtype rules are
numpy's own: ufunc loops come from `ufunc.resolve_dtypes` (NumPy 2 weak-scalar promotion), and
reduction result types from numpy on a one-element dummy, so numpy stays the spec. Adding a
function means one entry in FUNCTIONS (and METHODS for an ndarray method) plus a test.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..errors import ConcretizationError, DTypeError, ShapeError, UnsupportedError
from ..graph import ops
from ..graph.ir import SUPPORTED_DTYPES, Node
from .trace import Tracer, user_frame

# ---------------------------------------------------------------------------------------------
# operands


def check_dtype(dt, what="array") -> np.dtype:
    dt = np.dtype(dt)
    if dt not in SUPPORTED_DTYPES:
        raise DTypeError(f"{what} of dtype {dt} is not supported (jitensor handles bool, signed and unsigned "
                         "integers, float32 and float64)", where=user_frame())
    return dt


def is_literal(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def node_of(x) -> Node:
    """Any operand as a node; Python scalars take numpy's default dtype (callers handle weak typing)."""
    if isinstance(x, Tracer):
        return x.node
    if isinstance(x, (np.ndarray, np.generic)):
        check_dtype(x.dtype, "constant array")
        return ops.const(x, where=user_frame())
    if is_literal(x):
        return ops.const(np.asarray(x))
    if isinstance(x, (list, tuple)):
        if any(isinstance(v, Tracer) for v in x):
            return stack(list(x)).node
        a = np.asarray(x)
        check_dtype(a.dtype, "constant")
        return ops.const(a)
    if isinstance(x, complex):
        raise DTypeError("complex numbers are not supported", where=user_frame())
    raise UnsupportedError(f"cannot use a value of type {type(x).__name__} as an array", where=user_frame())


def wrap(node: Node, *, view_of: Tracer | None = None) -> Tracer:
    if view_of is not None:
        return Tracer(node, owner=False, base=view_of if view_of._owner else view_of._base)
    return Tracer(node)


def _dtype_token(x):
    """What `ufunc.resolve_dtypes` expects: a dtype, or the Python type for a weak scalar."""
    if isinstance(x, Tracer):
        return type(_weak_value(x)) if x._weak else x.dtype
    if is_literal(x):
        return np.dtype(bool) if isinstance(x, bool) else type(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return x.dtype
    return node_of(x).dtype


def _weak_value(t: Tracer):
    return {"b": False, "i": 0, "u": 0, "f": 0.0}[t.dtype.kind]


def _as_loop_operand(x, dt: np.dtype, fname: str) -> Node:
    if is_literal(x):
        try:
            a = np.array(x, dtype=dt)
        except OverflowError:
            raise DTypeError(f"{fname}: Python integer {x} out of bounds for {dt}", where=user_frame()) from None
        return ops.const(a)
    return ops.cast(node_of(x), dt, where=user_frame())


def broadcast_nodes(nodes: list[Node], what: str) -> list[Node]:
    shape = ops.broadcast_shapes(*(n.shape for n in nodes), where=user_frame(), what=what)
    return [ops.broadcast(n, shape, user_frame()) for n in nodes]


# ---------------------------------------------------------------------------------------------
# ufuncs

_ALIASES = {"fabs": "absolute", "true_divide": "divide", "mod": "remainder", "float_power": "power"}
_COMPOSITE = {}


def _composite(name):
    def deco(f):
        _COMPOSITE[name] = f
        return f
    return deco


_CMP_SWAP = {"less": "greater", "less_equal": "greater_equal", "greater": "less", "greater_equal": "less_equal",
             "equal": "equal", "not_equal": "not_equal"}
# a comparison with a Python int below an integer dtype's range, as one within it at the range's end
# (NumPy 2 compares exactly: uint8 != -1 is always True); above the range, `_CMP_ABOVE`
_CMP_BELOW = {"less": "less", "less_equal": "less", "greater": "greater_equal", "greater_equal": "greater_equal",
              "equal": "less", "not_equal": "greater_equal"}
_CMP_ABOVE = {"less": "less_equal", "less_equal": "less_equal", "greater": "greater", "greater_equal": "greater",
              "equal": "greater", "not_equal": "less_equal"}


def _out_of_range_comparison(ufunc, inputs, name):
    """`array op python_int` where the int lies outside the array's integer dtype: the same comparison
    against the dtype's end, whose result is numpy's (constant) one for every element; else None."""
    if name not in _CMP_SWAP or len(inputs) != 2:
        return None
    for k in (0, 1):
        x, lit = inputs[k], inputs[1 - k]
        if not (is_literal(lit) and type(lit) is int and isinstance(x, Tracer) and not x._weak
                and x.dtype.kind in "iu"):
            continue
        info = np.iinfo(x.dtype)
        if info.min <= lit <= info.max:
            return None
        op = name if k == 0 else _CMP_SWAP[name]  # as `x op lit`
        op, end = (_CMP_BELOW[op], int(info.min)) if lit < info.min else (_CMP_ABOVE[op], int(info.max))
        return ufunc_call(getattr(np, op), (x, end), op)
    return None


def ufunc_call(ufunc, inputs, name=None) -> Tracer:
    name = name or ufunc.__name__
    where = user_frame()
    exact = _out_of_range_comparison(ufunc, inputs, name)
    if exact is not None:
        return exact
    tokens = tuple(_dtype_token(x) for x in inputs)
    for t in tokens:
        if isinstance(t, np.dtype):
            check_dtype(t)
        elif t is complex:
            raise DTypeError(f"np.{name}: complex numbers are not supported", where=where)
    try:
        loop = ufunc.resolve_dtypes(tokens + (None,) * ufunc.nout)
    except Exception as e:  # numpy's own verdict: no loop for these dtypes
        raise DTypeError(f"np.{name} does not support the dtypes ({', '.join(map(str, tokens))}): {e}",
                         where=where) from None
    in_dts, out_dt = loop[:ufunc.nin], loop[ufunc.nin]
    for dt in (*in_dts, out_dt):
        if dt not in SUPPORTED_DTYPES:
            raise DTypeError(f"np.{name} on ({', '.join(map(str, tokens))}) computes in {dt}, which jitensor does "
                             "not support; cast the input first (e.g. x.astype(np.float32))", where=where)
    nodes = [_as_loop_operand(x, dt, name) for x, dt in zip(inputs, in_dts)]
    nodes = broadcast_nodes(nodes, f"np.{name}")
    op = _ALIASES.get(name, name)
    if op in _COMPOSITE:
        node = _COMPOSITE[op](nodes, out_dt, where)
    elif op in ops.UNARY:
        node = ops.unary(op, nodes[0], out_dt, where)
    elif op in ops.BINARY:
        node = ops.binary(op, nodes[0], nodes[1], out_dt, where)
    else:
        raise UnsupportedError(f"ufunc np.{name} is not supported by jitensor", where=where)
    # a ufunc of Python numbers returns a numpy scalar (np.exp(r) is np.float64): strongly typed, unlike r * 2
    return wrap(node)


_SAMPLE = {bool: True, int: 1, float: 1.0}
_PY_DTYPE = {bool: np.dtype(bool), int: np.dtype(np.int64), float: np.dtype(np.float64)}


def python_op(ufunc, pyop, inputs) -> Tracer:
    """A Python operator (`r * 2`, `-n`, `n // 2`) whose operands are all Python numbers, some traced.

    Python's rules give the result's type (int / int is a float, True + True an int): the operator applied
    to the literals and to sample values of the traced operands' types says which. Operands are computed in the type Python would
    convert them to; the result is a Python number again, weakly typed when numpy meets it.
    """
    types = [x._py if isinstance(x, Tracer) else type(x) for x in inputs]
    # literals take part with their own value: n ** -1 is a float, and r / 0 raises ZeroDivisionError as in Python
    samples = [_SAMPLE[x._py] if isinstance(x, Tracer) else x for x in inputs]
    try:
        rtype = type(pyop(*samples))
    except TypeError as e:  # 1.5 & 2: Python's own refusal
        raise TypeError(str(e)) from None
    if rtype not in _PY_DTYPE:
        raise DTypeError(f"Python {pyop.__name__} of {', '.join(t.__name__ for t in types)} gives a "
                         f"{rtype.__name__}, which jitensor does not support", where=user_frame())
    if float in types or rtype is float:  # n ** -1 computes in float, as Python does
        dt = np.dtype(np.float64)
    elif rtype is bool and all(t is bool for t in types):  # True & False, True == False
        dt = np.dtype(bool)
    else:  # bools act as ints in arithmetic and comparisons with ints
        dt = np.dtype(np.int64)
    name = ufunc.__name__
    nodes = [_as_loop_operand(x, dt, name) if is_literal(x) else ops.cast(x.node, dt, where=user_frame())
             for x in inputs]
    res = ufunc_call(ufunc, [wrap(n) for n in nodes])
    args = tuple(dict.fromkeys(a for x in inputs if isinstance(x, Tracer) for a in x._args))
    return Tracer(ops.cast(res.node, _PY_DTYPE[rtype]), py=rtype, args=args)


def _scalar_like(n: Node, v) -> Node:
    return ops.broadcast(ops.const(np.array(v, dtype=n.dtype)), n.shape)


@_composite("logaddexp")
def _logaddexp(nodes, dt, where, log2=False):
    a, b = nodes
    m = ops.binary("maximum", a, b, dt, where)
    d = ops.unary("absolute", ops.binary("subtract", a, b, dt, where), dt, where)
    nd = ops.unary("negative", d, dt, where)
    if log2:
        t = ops.binary("multiply", ops.unary("log1p", ops.unary("exp2", nd, dt), dt), _scalar_like(a, 1 / math.log(2)), dt)
        same = ops.binary("add", a, _scalar_like(a, 1.0), dt)
    else:
        t = ops.unary("log1p", ops.unary("exp", nd, dt), dt)
        same = ops.binary("add", a, _scalar_like(a, math.log(2)), dt)
    # equal arguments (including two infinities) take the exact branch, as numpy does
    return ops.where_(ops.binary("equal", a, b, np.dtype(bool)), same, ops.binary("add", m, t, dt), where)


_composite("logaddexp2")(lambda n, dt, w: _logaddexp(n, dt, w, log2=True))
_composite("deg2rad")(lambda n, dt, w: ops.binary("multiply", n[0], _scalar_like(n[0], math.pi / 180), dt, w))
_composite("radians")(_COMPOSITE["deg2rad"])
_composite("rad2deg")(lambda n, dt, w: ops.binary("multiply", n[0], _scalar_like(n[0], 180 / math.pi), dt, w))
_composite("degrees")(_COMPOSITE["rad2deg"])


def apply_ufunc(ufunc, method, inputs, kwargs):
    where = user_frame()
    if kwargs.get("out") is not None:
        raise UnsupportedError(f"np.{ufunc.__name__}(..., out=...) is not supported: jitensor returns new arrays; "
                               "use the return value", where=where)
    red_axis = kwargs.get("axis", 0)  # ufunc.reduce: axis=None means all axes, unlike a missing axis
    extra = {k: v for k, v in kwargs.items() if k not in ("out", "axis") and v is not None}
    if method == "__call__":
        if "dtype" in extra:
            dt = check_dtype(extra.pop("dtype"))
            inputs = [astype(wrap(node_of(x)), dt) if not is_literal(x) else x for x in inputs]
        if extra:
            raise UnsupportedError(f"np.{ufunc.__name__}: keyword arguments {sorted(extra)} are not supported",
                                   where=where)
        if ufunc is np.matmul:
            return matmul(*inputs)
        if ufunc.__name__ == "divmod":
            return np.floor_divide(*inputs), np.remainder(*inputs)
        if ufunc.__name__ == "clip":
            return clip(*inputs)
        return ufunc_call(ufunc, inputs)
    if method == "reduce" and ufunc.__name__ in _UFUNC_REDUCE:
        (x,) = inputs
        return _reduction(x, _UFUNC_REDUCE[ufunc.__name__], red_axis, extra.pop("keepdims", False),
                          extra.pop("dtype", None), name=f"np.{ufunc.__name__}.reduce")
    if method == "accumulate" and ufunc is np.add:
        (x,) = inputs
        return cumsum(x, axis=red_axis, dtype=extra.get("dtype"))
    if method == "outer" and not extra:
        a, b = (asarray_t(x) for x in inputs)
        return ufunc(a.reshape(a.shape + (1,) * b.ndim), b)
    raise UnsupportedError(f"np.{ufunc.__name__}.{method} is not supported by jitensor", where=where)


_UFUNC_REDUCE = {"add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min",
                 "logical_and": "all", "logical_or": "any"}


def asarray_t(x) -> Tracer:
    return x if isinstance(x, Tracer) else wrap(node_of(x))


# ---------------------------------------------------------------------------------------------
# __array_function__


FUNCTIONS: dict = {}


def implements(*funcs):
    def deco(f):
        for fn in funcs:
            FUNCTIONS[fn] = f
        return f
    return deco


def apply_function(func, args, kwargs):
    impl = FUNCTIONS.get(func)
    if impl is None:
        mod = getattr(func, "__module__", "numpy") or "numpy"
        name = mod.replace("numpy._core.", "numpy.").replace("numpy.linalg._linalg", "numpy.linalg") + "." + func.__name__
        raise UnsupportedError(f"{name} is not supported by jitensor", where=user_frame())
    try:
        return impl(*args, **kwargs)
    except TypeError as e:
        if "argument" in str(e) and "jitensor" not in str(e):
            raise UnsupportedError(f"np.{func.__name__}: unsupported arguments ({e})", where=user_frame()) from None
        raise


def norm_axis(axis, ndim, what="axis") -> int:
    if isinstance(axis, Tracer):
        axis._concrete("axis argument")
    a = operator.index(axis)
    if not -ndim <= a < ndim:
        raise ShapeError(f"{what} {a} is out of bounds for array of dimension {ndim}", where=user_frame())
    return a % ndim


def norm_axes(axis, ndim) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(norm_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ShapeError(f"duplicate value in 'axis': {axis}", where=user_frame())
        return axes
    return (norm_axis(axis, ndim),)


# -- reductions

def _reduction(x, kind, axis, keepdims, dtype, name, ddof=None):
    x = asarray_t(x)
    where = user_frame()
    n = x.node
    if n.dtype not in SUPPORTED_DTYPES:
        check_dtype(n.dtype)
    if n.ndim == 0 and axis in (0, -1, (0,), (-1,)):  # numpy accepts axis 0 on a 0-d array here
        if kind in ("argmax", "argmin"):
            return wrap(ops.const(np.array(0, np.intp)))
        axis = ()
    if kind in ("argmax", "argmin") and axis is None:
        n = ops.reshape(n, (n.type.size,), where)
        axes = (0,)
    else:
        axes = norm_axes(axis, n.ndim)
    count = int(np.prod([n.shape[a] for a in axes], dtype=np.int64))
    if count == 0 and kind in ("max", "min", "argmax", "argmin"):
        raise ShapeError(f"{name}: zero-size array to reduction operation {kind} which has no identity",
                         where=where)
    dummy = np.zeros((1,), n.dtype)
    if kind in ("sum", "prod"):
        out_dt = (np.sum if kind == "sum" else np.prod)(dummy, dtype=dtype).dtype
        check_dtype(out_dt)
        n = ops.cast(n, out_dt, where)
    elif kind in ("any", "all"):
        out_dt = np.dtype(bool)
        n = _truth(n)
    elif kind in ("argmax", "argmin"):
        out_dt = np.dtype(np.intp)
    else:
        out_dt = n.dtype
    r = ops.reduce(n, kind, axes, out_dt, where)
    if not keepdims and axes:
        r = ops.reshape(r, tuple(s for d, s in enumerate(r.shape) if d not in axes), where)
    if kind in ("argmax", "argmin") and axis is None and keepdims:
        r = ops.reshape(r, (1,) * x.ndim, where)
    out = wrap(r)
    out._npscalar = r.ndim == 0 and not keepdims
    return out


def _truth(n: Node) -> Node:
    if n.dtype == np.bool_:
        return n
    return ops.binary("not_equal", n, _scalar_like(n, 0), np.dtype(bool))


def _no_extra(name, **kw):
    bad = [k for k, v in kw.items() if v is not None and v is not np._NoValue and v is not False]
    if bad:
        raise UnsupportedError(f"{name}: arguments {bad} are not supported", where=user_frame())


def _mk_reduction(kind, fname):
    def f(a, axis=None, dtype=None, out=None, keepdims=False, initial=np._NoValue, where=np._NoValue):
        _no_extra(fname, out=out, initial=initial, where=where)
        if kind in ("max", "min", "any", "all") and dtype is not None:
            raise UnsupportedError(f"{fname}: dtype= is not supported", where=user_frame())
        return _reduction(a, kind, axis, keepdims, dtype, fname)
    return f


implements(np.sum)(_mk_reduction("sum", "np.sum"))
implements(np.prod)(_mk_reduction("prod", "np.prod"))
implements(np.max, np.amax)(_mk_reduction("max", "np.max"))
implements(np.min, np.amin)(_mk_reduction("min", "np.min"))
implements(np.any)(_mk_reduction("any", "np.any"))
implements(np.all)(_mk_reduction("all", "np.all"))


def _one_axis(axis):
    """argmax/argmin take one axis or None; numpy raises TypeError for a tuple (which the reduction would accept)."""
    if axis is not None and not isinstance(axis, Tracer):
        operator.index(axis)


@implements(np.argmax)
def argmax(a, axis=None, out=None, *, keepdims=False):
    _no_extra("np.argmax", out=out)
    _one_axis(axis)
    return _reduction(a, "argmax", axis, keepdims, None, "np.argmax")


@implements(np.argmin)
def argmin(a, axis=None, out=None, *, keepdims=False):
    _no_extra("np.argmin", out=out)
    _one_axis(axis)
    return _reduction(a, "argmin", axis, keepdims, None, "np.argmin")


def _mean_dtype(x: Tracer, dtype):
    if dtype is not None:
        return check_dtype(dtype)
    return np.mean(np.zeros((1,), x.dtype)).dtype


@implements(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=np._NoValue):
    _no_extra("np.mean", out=out, where=where)
    x = asarray_t(a)
    dt = _mean_dtype(x, dtype)
    axes = norm_axes(axis, x.ndim)
    count = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    s = _reduction(astype(x, dt) if x.dtype != dt else x, "sum", axis, keepdims, dt, "np.mean")
    return np.true_divide(s, wrap(ops.const(np.array(count, dt))))


@implements(np.var)
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=np._NoValue, mean=np._NoValue,
        correction=np._NoValue):
    _no_extra("np.var", out=out, where=where, mean=mean)
    if correction is not np._NoValue:
        ddof = correction
    x = asarray_t(a)
    dt = _mean_dtype(x, dtype)
    xc = astype(x, dt) if x.dtype != dt else x
    axes = norm_axes(axis, x.ndim)
    count = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    mu = _reduction(xc, "sum", axis, True, dt, "np.var") / wrap(ops.const(np.array(count, dt)))
    d = xc - mu
    s = _reduction(d * d, "sum", axis, keepdims, dt, "np.var")
    return s / wrap(ops.const(np.array(max(count - ddof, 0), dt)))


@implements(np.std)
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=np._NoValue, mean=np._NoValue,
        correction=np._NoValue):
    return np.sqrt(var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean, correction=correction))


@implements(np.cumsum)
def cumsum(a, axis=None, dtype=None, out=None):
    _no_extra("np.cumsum", out=out)
    x = asarray_t(a)
    n = x.node
    if axis is None:
        n = ops.reshape(n, (n.type.size,))
        ax = 0
    else:
        ax = norm_axis(axis, n.ndim)
    out_dt = np.cumsum(np.zeros((1,), n.dtype), dtype=dtype).dtype
    check_dtype(out_dt)
    return wrap(ops.cumsum(ops.cast(n, out_dt), ax, user_frame()))


# -- shape manipulation lives in shapes.py (reshape, transpose, concatenate...); registered in FUNCTIONS

from .shapes import broadcast_to, flatten, ravel, reshape, squeeze, stack, swapaxes, transpose  # noqa: E402


# -- elementwise functions that are not ufuncs

@implements(np.where)
def where_(condition, x=None, y=None):
    if x is None and y is None:
        raise ConcretizationError("np.where(condition) with one argument returns indices whose number depends on "
                                  "the data; jitensor needs static shapes. Use np.where(condition, x, y).",
                                  where=user_frame())
    if x is None or y is None:
        raise UnsupportedError("np.where: either both or neither of x and y should be given", where=user_frame())
    tokens = [(_weak_value(v) if v._weak else v.dtype) if isinstance(v, Tracer) else
              (v if is_literal(v) else node_of(v).dtype) for v in (x, y)]
    dt = check_dtype(np.result_type(*tokens))
    c = _truth(node_of(condition))
    nodes = broadcast_nodes([c, _as_loop_operand(x, dt, "where"), _as_loop_operand(y, dt, "where")], "np.where")
    return wrap(ops.where_(*nodes, where=user_frame()))


@implements(np.clip)
def clip(a, a_min=np._NoValue, a_max=np._NoValue, out=None, *, min=np._NoValue, max=np._NoValue, **kw):
    _no_extra("np.clip", out=out)
    lo = a_min if a_min is not np._NoValue else (min if min is not np._NoValue else None)
    hi = a_max if a_max is not np._NoValue else (max if max is not np._NoValue else None)
    r = a
    if asarray_t(a).dtype.kind in "iu":  # numpy drops Python int bounds beyond the dtype's range (no OverflowError)
        info = np.iinfo(asarray_t(a).dtype)
        lo = None if type(lo) is int and lo <= info.min else lo
        hi = None if type(hi) is int and hi >= info.max else hi
    if lo is not None:
        r = np.maximum(r, lo)
    if hi is not None:
        r = np.minimum(r, hi)
    return r if isinstance(r, Tracer) else asarray_t(r)


@implements(np.round, np.around)
def round_(a, decimals=0, out=None):
    _no_extra("np.round", out=out)
    x = asarray_t(a)
    if x.dtype.kind in "biu":
        if decimals >= 0:
            return copy(x)
        f = 10 ** (-decimals)  # half to even, as numpy: round in double, scale back
        return astype(np.rint(astype(x, np.float64) / f) * f, x.dtype)
    if decimals == 0:
        return np.rint(x)
    f = 10.0 ** decimals
    return np.rint(x * f) / f if decimals > 0 else np.rint(x / (10.0 ** -decimals)) * (10.0 ** -decimals)


@implements(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = asarray_t(x)
    if x.dtype.kind != "f":
        return wrap(x.node)
    fi = np.finfo(x.dtype)
    r = np.where(np.isnan(x), nan, x)
    r = np.where(r == np.inf, fi.max if posinf is None else posinf, r)
    return np.where(r == -np.inf, fi.min if neginf is None else neginf, r)


@implements(np.isclose)
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = asarray_t(a), asarray_t(b)
    fin = np.isfinite(a) & np.isfinite(b)
    close = np.abs(a - b) <= atol + rtol * np.abs(b)
    r = np.where(fin, close, a == b)
    if equal_nan:
        r = r | (np.isnan(a) & np.isnan(b))
    return r


@implements(np.allclose)
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return np.all(isclose(a, b, rtol, atol, equal_nan))


@implements(np.copy)
def copy(a, order="K", subok=False):
    return wrap(asarray_t(a).node)


def _like(a, dtype, fill, shape=None):
    x = asarray_t(a)
    dt = check_dtype(dtype) if dtype is not None else x.dtype
    shape = x.shape if shape is None else ((shape,) if isinstance(shape, int) else tuple(shape))
    if isinstance(fill, Tracer):
        return wrap(ops.broadcast(ops.cast(fill.node, dt), shape))
    return wrap(ops.broadcast(ops.const(np.array(fill).astype(dt)), shape))


@implements(np.zeros_like)
def zeros_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _like(a, dtype, 0, shape)


@implements(np.empty_like)
def empty_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _like(a, dtype, 0, shape)


@implements(np.ones_like)
def ones_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _like(a, dtype, 1, shape)


@implements(np.full_like)
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    x = asarray_t(a)
    if dtype is None and isinstance(fill_value, Tracer):
        dtype = x.dtype
    return _like(x, dtype, fill_value, shape)


def astype(a, dtype, order="K", casting="unsafe", subok=True, copy=True):
    x = asarray_t(a)
    dt = check_dtype(dtype, "astype target")
    return wrap(ops.cast(x.node, dt, user_frame()))


@implements(np.diff)
def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    _no_extra("np.diff", prepend=prepend, append=append)
    x = asarray_t(a)
    ax = norm_axis(axis, x.ndim)
    for _ in range(n):
        hi = tuple(slice(1, None) if d == ax else slice(None) for d in range(x.ndim))
        lo = tuple(slice(None, -1) if d == ax else slice(None) for d in range(x.ndim))
        x = np.not_equal(x[hi], x[lo]) if x.dtype == np.bool_ else x[hi] - x[lo]
    return x


@implements(np.tril, np.triu)
def _tri(m, k=0):
    raise UnsupportedError("np.tril/np.triu are not supported yet; use np.where with a constant mask",
                           where=user_frame())


@implements(np.take)
def take(a, indices, axis=None, out=None, mode="raise"):
    _no_extra("np.take", out=out)
    if mode != "raise":
        raise UnsupportedError(f"np.take(mode={mode!r}) is not supported", where=user_frame())
    x = asarray_t(a)
    if axis is None:
        x, axis = ravel(x), 0
    from .indexing import take_along
    return take_along(x, indices, norm_axis(axis, x.ndim))


@implements(np.take_along_axis)
def take_along_axis(arr, indices, axis):
    x, idx = asarray_t(arr), asarray_t(indices)
    if axis is None:
        x, axis = ravel(x), 0
    ax = norm_axis(axis, x.ndim)
    if idx.ndim != x.ndim:
        raise ShapeError("take_along_axis: indices and arr must have the same number of dimensions",
                         where=user_frame())
    # flatten (other dims, axis) into one gather over a merged index
    shape = ops.broadcast_shapes(tuple(1 if d == ax else s for d, s in enumerate(x.shape)),
                                 tuple(1 if d == ax else s for d, s in enumerate(idx.shape)), where=user_frame())
    out_shape = tuple(idx.shape[d] if d == ax else shape[d] for d in range(x.ndim))
    n = x.shape[ax]
    idx = np.where(idx < 0, idx + n, idx) if idx.dtype.kind == "i" else idx
    idx = broadcast_to(astype(idx, np.int64), out_shape)
    oob = (idx < 0) | (idx >= n)  # checked per axis: a bad index must not alias a valid flat position
    strides = np.cumprod((1,) + tuple(reversed(x.shape[1:])))[::-1]
    flat = None
    for d in range(x.ndim):
        if d == ax:
            term = idx * int(strides[d])
        else:
            r = [1] * x.ndim
            r[d] = out_shape[d]
            term = wrap(ops.const(np.arange(out_shape[d], dtype=np.int64).reshape(r) * int(strides[d])))
        flat = term if flat is None else flat + term
    flat = np.where(oob, x.size, flat)  # out of range along the axis: out of range of the flat gather too
    from .indexing import take_along
    return take_along(ravel(x), flat, 0, wrap_negative=False)


# ---------------------------------------------------------------------------------------------
# contractions live in linalg.py (matmul, dot, tensordot, einsum, norm...); they register in FUNCTIONS

from .linalg import dot, matmul  # noqa: E402  (after everything linalg.py imports from here)

# ---------------------------------------------------------------------------------------------
# ndarray methods (Tracer.__getattr__ looks here)

def _method_reduce(fn):
    return lambda self, axis=None, *a, **k: fn(self, axis, *a, **k)


METHODS = {
    "sum": _method_reduce(FUNCTIONS[np.sum]), "prod": _method_reduce(FUNCTIONS[np.prod]),
    "max": _method_reduce(FUNCTIONS[np.max]), "min": _method_reduce(FUNCTIONS[np.min]),
    "any": _method_reduce(FUNCTIONS[np.any]), "all": _method_reduce(FUNCTIONS[np.all]),
    "mean": _method_reduce(mean), "var": _method_reduce(var), "std": _method_reduce(std),
    "argmax": argmax, "argmin": argmin, "cumsum": cumsum,
    "reshape": reshape, "ravel": ravel, "flatten": flatten, "transpose": transpose, "swapaxes": swapaxes,
    "squeeze": squeeze, "astype": astype, "copy": copy, "clip": clip, "round": round_, "dot": dot,
    "take": take,
}
