"""Indexing on tracers: basic slicing, integer-array (gather) indexing, functional writes."""
from __future__ import annotations

import operator

import numpy as np

from ..errors import ConcretizationError, IndexOutOfBoundsError, ShapeError, UnsupportedError
from ..graph import ops
from .numpy_api import asarray_t, astype, node_of, wrap
from .shapes import broadcast_to, reshape, transpose
from .trace import Tracer, user_frame


def _is_int(k) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _expand(x: Tracer, key) -> list:
    """Normalize a key to one entry per dim (plus None entries); bool constant masks become int arrays."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, list):
            k = np.asarray(k) if k else np.array([], dtype=np.intp)  # numpy: an empty list indexes nothing
            if k.dtype == object:
                raise UnsupportedError("nested sequences as indices are not supported", where=user_frame())
        if isinstance(k, (np.ndarray, Tracer)) and k.dtype == np.bool_:
            if isinstance(k, Tracer):
                raise ConcretizationError(
                    "boolean mask indexing x[mask] has a data-dependent shape, which jitensor cannot trace; "
                    "use np.where(mask, x, fill) (or x[mask] = scalar, which is supported)", where=user_frame())
            out.extend(np.nonzero(k))
            continue
        if isinstance(k, (bool, np.bool_)):
            raise UnsupportedError("indexing with a Python bool is not supported", where=user_frame())
        if isinstance(k, np.ndarray) and k.dtype.kind not in "iu":
            raise IndexError("arrays used as indices must be of integer (or boolean) type")
        if isinstance(k, Tracer) and k.dtype.kind not in "iu":
            raise IndexError("arrays used as indices must be of integer (or boolean) type")
        if not (k is None or k is Ellipsis or isinstance(k, (slice, np.ndarray, Tracer)) or _is_int(k)):
            raise UnsupportedError(f"index of type {type(k).__name__} is not supported", where=user_frame())
        out.append(k)
    n_ell = sum(k is Ellipsis for k in out)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(k is not None and k is not Ellipsis for k in out)
    if used > x.ndim:
        raise IndexOutOfBoundsError(f"too many indices for array: array is {x.ndim}-dimensional, but {used} were "
                                    "indexed", where=user_frame())
    fill = [slice(None)] * (x.ndim - used)
    if n_ell:
        i = out.index(Ellipsis)
        out = out[:i] + fill + out[i + 1:]
    else:
        out = out + fill
    return out


def _basic(x: Tracer, entries):
    """Apply ints/slices/None; return (tracer, positions of array entries in the result)."""
    starts, steps, lens, final_shape, adv = [], [], [], [], []
    d = 0
    for k in entries:
        if k is None:
            final_shape.append(1)
            continue
        n = x.shape[d]
        if _is_int(k):
            i = operator.index(k)
            if not -n <= i < n:
                raise IndexOutOfBoundsError(f"index {i} is out of bounds for axis {d} with size {n}",
                                            where=user_frame())
            starts.append(i % n), steps.append(1), lens.append(1)
        elif isinstance(k, slice):
            s, e, st = k.indices(n)
            starts.append(s), steps.append(st), lens.append(len(range(s, e, st)))
            final_shape.append(lens[-1])
        else:  # array index: keep the whole dim for now
            starts.append(0), steps.append(1), lens.append(n)
            adv.append((len(final_shape), k))
            final_shape.append(n)
        d += 1
    node = ops.slice_(x.node, starts, steps, lens, user_frame())
    t = wrap(node, view_of=x) if node is not x.node else x
    return reshape(t, tuple(final_shape)), adv


def getitem(x: Tracer, key):
    entries = _expand(x, key)
    t, adv = _basic(x, entries)
    if not adv:
        t = t if t is not x else wrap(x.node, view_of=x)
        if x._owner and not any(k is None for k in entries):
            t._key = key  # lets in-place ops on this view write through (out[1:] *= 3)
        return t
    positions = [p for p, _ in adv]
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    dest = positions[0] if adjacent else 0
    others = [d for d in range(t.ndim) if d not in positions]
    perm = others[:dest] + positions + others[dest:]
    t = transpose(t, perm) if perm != list(range(t.ndim)) else t
    sizes = [t.shape[dest + i] for i in range(len(positions))]
    if len(adv) == 1:  # constant index arrays are bounds-checked now, traced ones at run time
        return take_along(t, adv[0][1], dest)
    idxs = [asarray_t(k) for _, k in adv]
    # several array indices: wrap and bounds-check each, then one gather over the merged dims
    bshape = ops.broadcast_shapes(*(i.shape for i in idxs), where=user_frame(), what="indexing arrays")
    total = int(np.prod(sizes, dtype=np.int64))
    flat, oob = None, None
    for i, (idx, n) in enumerate(zip(idxs, sizes)):
        idx = astype(broadcast_to(idx, bshape), np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        bad = (idx < 0) | (idx >= n)
        oob = bad if oob is None else oob | bad
        stride = int(np.prod(sizes[i + 1:], dtype=np.int64))
        flat = idx * stride if flat is None else flat + idx * stride
    flat = np.where(oob, total, flat)  # an out-of-range index in any dim must not alias a valid element
    merged = reshape(t, t.shape[:dest] + (total,) + t.shape[dest + len(sizes):])
    return take_along(merged, flat, dest)


def take_along(x: Tracer, indices, axis: int, wrap_negative: bool = True):
    """x.take(indices, axis) as a gather node (negative indices wrap; out of range fails at run time)."""
    idx = node_of(indices) if not isinstance(indices, Tracer) else indices.node
    if idx.dtype.kind not in "iu":
        raise IndexError("arrays used as indices must be of integer type")
    if isinstance(indices, (np.ndarray, list, int, np.integer)):
        a = np.asarray(indices)
        n = x.shape[axis]
        if a.size and (a.max() >= n or a.min() < -n):
            bad = a[(a >= n) | (a < -n)].flat[0]
            raise IndexOutOfBoundsError(f"index {bad} is out of bounds for axis {axis} with size {n}",
                                        where=user_frame())
    idx = ops.cast(idx, np.int64)
    return wrap(ops.gather(x.node, idx, axis, user_frame()))


def setitem(x: Tracer, key, value):
    where = user_frame()
    mask = key[0] if isinstance(key, tuple) and len(key) == 1 else key
    if isinstance(mask, (Tracer, np.ndarray)) and mask.dtype == np.bool_:
        v = asarray_t(value)
        if v.ndim and v.size != 1:
            raise UnsupportedError("x[mask] = array assigns in data-dependent order; only a scalar value is "
                                   "supported (use np.where(mask, values, x))", where=where)
        if mask.shape != x.shape[:mask.ndim]:
            raise IndexOutOfBoundsError(f"boolean index of shape {mask.shape} does not match the array's leading "
                                        f"dimensions {x.shape[:mask.ndim]}", where=where)
        m = asarray_t(mask)
        if mask.ndim < x.ndim:  # a mask over the leading axes selects whole sub-arrays
            m = broadcast_to(reshape(m, mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape)
        x._assign(np.where(m, astype(reshape(v, ()), x.dtype), x).node, "x[mask] = value")
        return
    entries = _expand(x, key)
    if any(isinstance(k, (np.ndarray, Tracer)) for k in entries):
        raise UnsupportedError("assignment with integer-array indices (scatter) is not supported yet",
                               where=where)
    starts, steps, lens, view_shape = [], [], [], []
    d = 0
    for k in entries:
        if k is None:
            continue
        n = x.shape[d]
        if _is_int(k):
            i = operator.index(k)
            if not -n <= i < n:
                raise IndexOutOfBoundsError(f"index {i} is out of bounds for axis {d} with size {n}", where=where)
            starts.append(i % n), steps.append(1), lens.append(1)
        else:
            s, e, st = k.indices(n)
            starts.append(s), steps.append(st), lens.append(len(range(s, e, st)))
            view_shape.append(lens[-1])
        d += 1
    v = asarray_t(value)
    try:
        vb = ops.broadcast(ops.cast(v.node, x.dtype), tuple(view_shape), where)
    except ShapeError:
        raise ShapeError(f"could not broadcast input array from shape {v.shape} into shape {tuple(view_shape)}",
                         where=where) from None
    if 0 in lens:
        x._assign(x.node, "x[...] = value")
        return
    vb = ops.reshape(vb, tuple(lens), where)
    x._assign(ops.set_slice(x.node, vb, starts, steps, where), "x[...] = value")
