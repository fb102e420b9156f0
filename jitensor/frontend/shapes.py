"""Shape manipulation: reshape, transpose and friends, broadcasting, concatenation, flips -> graph ops
(all of them become index arithmetic when fused)."""
from __future__ import annotations

import operator

import numpy as np

from ..errors import ShapeError, UnsupportedError
from ..graph import ops
from .numpy_api import _no_extra, asarray_t, check_dtype, implements, norm_axes, norm_axis, wrap
from .trace import user_frame

def _reshape_args(shape, size):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = [operator.index(s) for s in shape]
    if shape.count(-1) > 1:
        raise ShapeError("reshape: can only specify one unknown dimension", where=user_frame())
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ShapeError(f"reshape: cannot reshape array of size {size} into shape {tuple(shape)}",
                             where=user_frame())
        shape[shape.index(-1)] = size // known
    return tuple(shape)


@implements(np.reshape)
def reshape(a, *shape, order="C", newshape=None, copy=None):
    if newshape is not None:
        shape = (newshape,)
    if order != "C":
        raise UnsupportedError(f"reshape(order={order!r}) is not supported; only order='C'", where=user_frame())
    x = asarray_t(a)
    return wrap(ops.reshape(x.node, _reshape_args(shape, x.size), user_frame()), view_of=x)


@implements(np.shape)
def shape(a):  # shapes are static: known at trace time, plain Python ints
    return asarray_t(a).shape


@implements(np.ndim)
def ndim(a):
    return asarray_t(a).ndim


@implements(np.size)
def size(a, axis=None):
    x = asarray_t(a)
    return x.size if axis is None else x.shape[norm_axis(axis, x.ndim)]


@implements(np.ravel)
def ravel(a, order="C"):
    return reshape(a, -1, order=order)


def flatten(a, order="C"):
    return wrap(reshape(a, -1, order=order).node)


@implements(np.transpose)
def transpose(a, *axes):
    x = asarray_t(a)
    if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        axes = axes[0]
    if not axes:
        axes = tuple(reversed(range(x.ndim)))
    if len(axes) != x.ndim:
        raise ShapeError(f"transpose: axes {tuple(axes)} don't match array of {x.ndim} dimensions", where=user_frame())
    perm = [norm_axis(p, x.ndim) for p in axes]
    return wrap(ops.transpose(x.node, perm, user_frame()), view_of=x)


@implements(np.swapaxes)
def swapaxes(a, axis1, axis2):
    x = asarray_t(a)
    perm = list(range(x.ndim))
    i, j = norm_axis(axis1, x.ndim), norm_axis(axis2, x.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(x, perm)


@implements(np.moveaxis)
def moveaxis(a, source, destination):
    x = asarray_t(a)
    src = norm_axes(source, x.ndim) if isinstance(source, (tuple, list)) else (norm_axis(source, x.ndim),)
    dst = norm_axes(destination, x.ndim) if isinstance(destination, (tuple, list)) else (norm_axis(destination, x.ndim),)
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)


@implements(np.expand_dims)
def expand_dims(a, axis):
    x = asarray_t(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    nd = x.ndim + len(axes)
    axes = sorted(norm_axis(ax, nd) for ax in axes)
    shape = list(x.shape)
    for ax in axes:
        shape.insert(ax, 1)
    return reshape(x, shape)


@implements(np.squeeze)
def squeeze(a, axis=None):
    x = asarray_t(a)
    if axis is None:
        axes = [d for d, s in enumerate(x.shape) if s == 1]
    else:
        axes = norm_axes(axis, x.ndim)
        for d in axes:
            if x.shape[d] != 1:
                raise ShapeError(f"squeeze: cannot select an axis to squeeze out which has size not equal to one "
                                 f"(axis {d} of shape {x.shape})", where=user_frame())
    return reshape(x, tuple(s for d, s in enumerate(x.shape) if d not in axes))


@implements(np.broadcast_to)
def broadcast_to(array, shape, subok=False):
    x = asarray_t(array)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return wrap(ops.broadcast(x.node, shape, user_frame()), view_of=x)


@implements(np.broadcast_arrays)
def broadcast_arrays(*args, subok=False):
    xs = [asarray_t(a) for a in args]
    shape = ops.broadcast_shapes(*(x.shape for x in xs), where=user_frame(), what="np.broadcast_arrays")
    return tuple(broadcast_to(x, shape) for x in xs)


@implements(np.atleast_1d)
def atleast_1d(*arys):
    r = [asarray_t(a) if asarray_t(a).ndim >= 1 else reshape(a, (1,)) for a in arys]
    return r[0] if len(r) == 1 else r


@implements(np.atleast_2d)
def atleast_2d(*arys):
    r = []
    for a in arys:
        x = asarray_t(a)
        r.append(x if x.ndim >= 2 else reshape(x, (1,) * (2 - x.ndim) + x.shape))
    return r[0] if len(r) == 1 else r


def _concat_dtype(xs, dtype=None):
    if dtype is not None:
        return check_dtype(dtype)
    return np.result_type(*[x.dtype for x in xs])


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _no_extra("np.concatenate", out=out)
    xs = [asarray_t(a) for a in arrays]
    if not xs:
        raise ShapeError("need at least one array to concatenate", where=user_frame())
    if axis is None:
        xs = [ravel(x) for x in xs]
        axis = 0
    if any(x.ndim == 0 for x in xs):
        raise ShapeError("zero-dimensional arrays cannot be concatenated", where=user_frame())
    if len({x.ndim for x in xs}) > 1:
        raise ShapeError("concatenate: all the input arrays must have same number of dimensions, got shapes "
                         + ", ".join(str(x.shape) for x in xs), where=user_frame())
    ax = norm_axis(axis, xs[0].ndim)
    dt = _concat_dtype(xs, dtype)
    nodes = [ops.cast(x.node, dt) for x in xs]
    return wrap(ops.concat(nodes, ax, user_frame()))


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _no_extra("np.stack", out=out)
    xs = [asarray_t(a) for a in arrays]
    if not xs:
        raise ShapeError("need at least one array to stack", where=user_frame())
    if len({x.shape for x in xs}) > 1:
        raise ShapeError("all input arrays must have the same shape, got " + ", ".join(str(x.shape) for x in xs),
                         where=user_frame())
    ax = norm_axis(axis, xs[0].ndim + 1)
    return concatenate([expand_dims(x, ax) for x in xs], axis=ax, dtype=dtype)


@implements(np.hstack)
def hstack(tup, *, dtype=None, casting="same_kind"):
    xs = atleast_1d(*tup)
    xs = xs if isinstance(xs, list) else [xs]
    return concatenate(xs, axis=0 if xs[0].ndim == 1 else 1, dtype=dtype)


@implements(np.vstack)
def vstack(tup, *, dtype=None, casting="same_kind"):
    xs = atleast_2d(*tup)
    xs = xs if isinstance(xs, list) else [xs]
    return concatenate(xs, axis=0, dtype=dtype)


@implements(np.flip)
def flip(m, axis=None):
    x = asarray_t(m)
    axes = norm_axes(axis, x.ndim)
    key = tuple(slice(None, None, -1) if d in axes else slice(None) for d in range(x.ndim))
    return x[key]
