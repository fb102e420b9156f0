"""The graph op vocabulary: constructors that check shapes/dtypes and build `Node`s.

Ops are few and primitive (tinygrad-style); numpy's larger API is mapped onto them by the
frontend. Elementwise ops take inputs of one shape (the frontend inserts explicit `broadcast`
nodes) already cast to the ufunc loop's input dtypes, so lowering never has to promote.

Kinds, as a fusion policy sees them (after TVM's classification):
  source      input, const
  elementwise unary/binary ufuncs, where, cast
  injective   broadcast, reshape, transpose, slice, concat, gather, set_slice (pure index maps)
  reduce      reduce (sum/prod/max/min/any/all/argmax/argmin over axes; reduced dims kept as 1)
  opaque      cumsum, matmul
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .ir import ConstValue, Node, TensorType, make_attrs

UNARY = frozenset("""negative positive absolute sign exp exp2 expm1 log log2 log10 log1p sqrt cbrt
square reciprocal sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh floor ceil
trunc rint logical_not invert isnan isinf isfinite signbit sigmoid""".split())
BINARY = frozenset("""add subtract multiply divide floor_divide remainder fmod power maximum minimum
fmax fmin arctan2 hypot copysign equal not_equal less less_equal greater greater_equal logical_and
logical_or logical_xor bitwise_and bitwise_or bitwise_xor left_shift right_shift""".split())
ELEMENTWISE = UNARY | BINARY | {"where", "cast"}
INJECTIVE = frozenset({"broadcast", "reshape", "transpose", "slice", "concat", "gather", "set_slice"})
REDUCE_KINDS = frozenset({"sum", "prod", "max", "min", "any", "all", "argmax", "argmin"})


def kind(node: Node) -> str:
    if node.op in ("input", "const"):
        return "source"
    if node.op in ELEMENTWISE:
        return "elementwise"
    if node.op in INJECTIVE:
        return "injective"
    if node.op == "reduce":
        return "reduce"
    return "opaque"


def _t(shape, dtype) -> TensorType:
    return TensorType(tuple(int(s) for s in shape), np.dtype(dtype))


def input_node(index: int, shape, dtype, where=None) -> Node:
    return Node("input", (), make_attrs(index=index), _t(shape, dtype), where)


def const(value, dtype=None, where=None) -> Node:
    a = np.asarray(value, dtype=dtype)
    if a.dtype not in _supported():
        raise DTypeError(f"constant of dtype {a.dtype} is not supported", where=where)
    return Node("const", (), make_attrs(value=ConstValue.of(a)), _t(a.shape, a.dtype), where)


def _supported():
    from .ir import SUPPORTED_DTYPES
    return SUPPORTED_DTYPES


def unary(op: str, x: Node, out_dtype, where=None) -> Node:
    assert op in UNARY, op
    return Node(op, (x,), (), _t(x.shape, out_dtype), where)


def binary(op: str, a: Node, b: Node, out_dtype, where=None) -> Node:
    assert op in BINARY, op
    assert a.shape == b.shape, (op, a.shape, b.shape)
    return Node(op, (a, b), (), _t(a.shape, out_dtype), where)


def where_(c: Node, a: Node, b: Node, where=None) -> Node:
    assert c.shape == a.shape == b.shape and a.dtype == b.dtype and c.dtype == np.bool_
    return Node("where", (c, a, b), (), _t(a.shape, a.dtype), where)


def cast(x: Node, dtype, where=None) -> Node:
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return Node("cast", (x,), (), _t(x.shape, dtype), where)


def broadcast_shapes(*shapes, where=None, what="broadcast") -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"{what}: shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together",
                         where=where) from None


def broadcast(x: Node, shape, where=None) -> Node:
    shape = tuple(int(s) for s in shape)
    if x.shape == shape:
        return x
    if broadcast_shapes(x.shape, shape, where=where, what="broadcast_to") != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast {x.shape} to {shape}", where=where)
    if len(x.shape) < len(shape):  # left-pad with 1s first, so broadcast only stretches size-1 dims
        x = reshape(x, (1,) * (len(shape) - len(x.shape)) + x.shape, where)
        if x.shape == shape:
            return x
    return Node("broadcast", (x,), (), _t(shape, x.dtype), where)


def reshape(x: Node, shape, where=None) -> Node:
    shape = tuple(int(s) for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != x.type.size or any(s < 0 for s in shape):
        raise ShapeError(f"reshape: cannot reshape array of shape {x.shape} into shape {shape}", where=where)
    if x.shape == shape:
        return x
    if x.op == "reshape":  # reshape of reshape is one reshape
        x = x.inputs[0]
        if x.shape == shape:
            return x
    return Node("reshape", (x,), (), _t(shape, x.dtype), where)


def transpose(x: Node, perm, where=None) -> Node:
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {perm} don't match an array of {x.ndim} dimensions", where=where)
    if perm == tuple(range(x.ndim)):
        return x
    return Node("transpose", (x,), make_attrs(perm=perm), _t([x.shape[p] for p in perm], x.dtype), where)


def slice_(x: Node, starts, steps, shape, where=None) -> Node:
    """out[i] = x[starts + i * steps]; bounds were normalized by the frontend (slice.indices)."""
    starts, steps, shape = (tuple(int(v) for v in t) for t in (starts, steps, shape))
    if shape == x.shape and all(s == 0 for s in starts) and all(s == 1 for s in steps):
        return x
    return Node("slice", (x,), make_attrs(starts=starts, steps=steps), _t(shape, x.dtype), where)


def concat(xs: list[Node], axis: int, where=None) -> Node:
    ref = xs[0]
    for x in xs[1:]:
        if x.ndim != ref.ndim or any(a != b for d, (a, b) in enumerate(zip(x.shape, ref.shape)) if d != axis):
            raise ShapeError("concatenate: all input dimensions except the concatenation axis must match, got "
                             + ", ".join(str(x.shape) for x in xs), where=where)
    xs = [x for x in xs if x.shape[axis] > 0] or xs[:1]
    if len(xs) == 1:
        return xs[0]
    shape = list(ref.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return Node("concat", tuple(xs), make_attrs(axis=axis), _t(shape, ref.dtype), where)


def gather(x: Node, index: Node, axis: int, where=None) -> Node:
    """out = x.take(index, axis): the index's dims replace dim `axis` (negative indices wrap;
    out-of-range raises at run time through the program's error flag)."""
    assert index.dtype.kind in "iu"
    shape = x.shape[:axis] + index.shape + x.shape[axis + 1:]
    if x.shape[axis] == 0 and index.type.size > 0:
        raise ShapeError(f"index out of range: cannot take from an empty axis {axis} of shape {x.shape}", where=where)
    return Node("gather", (x, index), make_attrs(axis=axis), _t(shape, x.dtype), where)


def set_slice(base: Node, value: Node, starts, steps, where=None) -> Node:
    """Functional `base[starts::steps] = value` (value already broadcast to the region's shape)."""
    assert value.dtype == base.dtype and value.ndim == base.ndim
    return Node("set_slice", (base, value), make_attrs(starts=tuple(starts), steps=tuple(steps)), base.type, where)


def reduce(x: Node, kind_: str, axes, out_dtype, where=None) -> Node:
    """Reduce over `axes`, keeping them as size-1 dims (the frontend reshapes for keepdims=False)."""
    assert kind_ in REDUCE_KINDS
    axes = tuple(sorted(int(a) for a in axes))
    shape = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
    return Node("reduce", (x,), make_attrs(kind=kind_, axes=axes), _t(shape, out_dtype), where)


def cumsum(x: Node, axis: int, where=None) -> Node:
    return Node("cumsum", (x,), make_attrs(axis=axis), x.type, where)


def matmul(a: Node, b: Node, where=None) -> Node:
    """Batched matmul on inputs of rank >= 2 with equal batch dims: [..., m, k] @ [..., k, n]."""
    assert a.ndim == b.ndim >= 2 and a.shape[:-2] == b.shape[:-2] and a.dtype == b.dtype
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: contraction dims differ: {a.shape} @ {b.shape}", where=where)
    return Node("matmul", (a, b), (), _t(a.shape[:-1] + b.shape[-1:], a.dtype), where)
