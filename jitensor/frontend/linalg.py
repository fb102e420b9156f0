"""Contractions: matmul, dot, vdot, inner, outer, tensordot, einsum, linalg.norm -> graph ops.

Everything reduces to the batched `matmul` op (which the code generator gives its GEMM template)
or to elementwise products and reductions.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError, UnsupportedError
from ..graph import ops
from .numpy_api import _no_extra, _scalar_like, asarray_t, astype, implements, norm_axis, wrap
from .shapes import ravel, reshape, squeeze, transpose
from .trace import user_frame


@implements(np.matmul)
def matmul(a, b, **kw):
    where = user_frame()
    x, y = asarray_t(a), asarray_t(b)
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError("matmul: input operand does not have enough dimensions (scalars are not allowed; use *)",
                         where=where)
    try:
        in_dts = np.matmul.resolve_dtypes((x.dtype, y.dtype, None))
    except Exception as e:
        raise DTypeError(f"np.matmul does not support dtypes ({x.dtype}, {y.dtype}): {e}", where=where) from None
    dt = in_dts[2]
    xn, yn = ops.cast(x.node, dt), ops.cast(y.node, dt)
    boolean = dt == np.bool_
    if boolean:  # numpy's bool matmul is an OR of ANDs
        xn, yn = ops.cast(xn, np.int64), ops.cast(yn, np.int64)
    xv, yv = xn.ndim == 1, yn.ndim == 1
    if xv:
        xn = ops.reshape(xn, (1,) + xn.shape)
    if yv:
        yn = ops.reshape(yn, yn.shape + (1,))
    if xn.shape[-1] != yn.shape[-2]:
        raise ShapeError(f"matmul: Input operand 1 has a mismatch in its core dimension 0 (size {yn.shape[-2]} is "
                         f"different from {xn.shape[-1]}): shapes {x.shape} @ {y.shape}", where=where)
    batch = ops.broadcast_shapes(xn.shape[:-2], yn.shape[:-2], where=where, what="matmul batch dims")
    xn = ops.broadcast(xn, batch + xn.shape[-2:])
    yn = ops.broadcast(yn, batch + yn.shape[-2:])
    r = ops.matmul(xn, yn, where)
    shape = r.shape
    if xv:
        shape = shape[:-2] + shape[-1:]
    if yv:
        shape = shape[:-1]
    r = ops.reshape(r, shape)
    if boolean:
        r = ops.binary("not_equal", r, _scalar_like(r, 0), np.dtype(bool))
    return wrap(r)


@implements(np.dot)
def dot(a, b, out=None):
    _no_extra("np.dot", out=out)
    x, y = asarray_t(a), asarray_t(b)
    if x.ndim == 0 or y.ndim == 0:
        return np.multiply(x, y)
    if y.ndim <= 2:
        return matmul(x, y)
    return tensordot(x, y, axes=([x.ndim - 1], [y.ndim - 2]))


@implements(np.vdot)
def vdot(a, b):
    return dot(ravel(a), ravel(b))


@implements(np.inner)
def inner(a, b):
    x, y = asarray_t(a), asarray_t(b)
    if x.ndim == 0 or y.ndim == 0:
        return np.multiply(x, y)
    return tensordot(x, y, axes=([x.ndim - 1], [y.ndim - 1]))


@implements(np.outer)
def outer(a, b, out=None):
    _no_extra("np.outer", out=out)
    return np.multiply(reshape(ravel(a), (-1, 1)), ravel(b))


@implements(np.tensordot)
def tensordot(a, b, axes=2):
    x, y = asarray_t(a), asarray_t(b)
    if isinstance(axes, int):
        ax_a, ax_b = list(range(x.ndim - axes, x.ndim)), list(range(axes))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, int) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, int) else list(ax_b)
    ax_a = [norm_axis(d, x.ndim) for d in ax_a]
    ax_b = [norm_axis(d, y.ndim) for d in ax_b]
    if len(ax_a) != len(ax_b) or any(x.shape[i] != y.shape[j] for i, j in zip(ax_a, ax_b)):
        raise ShapeError(f"tensordot: shape-mismatch for sum ({x.shape}, {y.shape}, axes={axes})", where=user_frame())
    free_a = [d for d in range(x.ndim) if d not in ax_a]
    free_b = [d for d in range(y.ndim) if d not in ax_b]
    k = int(np.prod([x.shape[d] for d in ax_a], dtype=np.int64))
    xa = reshape(transpose(x, free_a + ax_a), (-1, k))
    yb = reshape(transpose(y, ax_b + free_b), (k, -1))
    return reshape(matmul(xa, yb), [x.shape[d] for d in free_a] + [y.shape[d] for d in free_b])


@implements(np.einsum)
def einsum(subscripts, *operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    _no_extra("np.einsum", out=out, dtype=dtype)
    from .einsum import einsum as _einsum
    return _einsum(subscripts, [asarray_t(o) for o in operands])


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    t = asarray_t(x)
    if t.dtype.kind != "f":
        t = astype(t, np.float64)
    if axis is None and ord is None:
        r = np.sqrt(np.sum(t * t))
        return reshape(r, (1,) * t.ndim) if keepdims else r
    if axis is None:
        axis = tuple(range(t.ndim)) if t.ndim == 2 else 0
        if t.ndim > 2:
            raise ShapeError("norm: improper number of dimensions to norm", where=user_frame())
    if isinstance(axis, int) or (isinstance(axis, tuple) and len(axis) == 1):
        ax = axis if isinstance(axis, int) else axis[0]
        a = np.abs(t)
        if ord is None or ord == 2:
            return np.sqrt(np.sum(t * t, axis=ax, keepdims=keepdims))
        if ord == np.inf:
            return np.max(a, axis=ax, keepdims=keepdims)
        if ord == -np.inf:
            return np.min(a, axis=ax, keepdims=keepdims)
        if ord == 1:
            return np.sum(a, axis=ax, keepdims=keepdims)
        if ord == 0:
            return np.sum((t != 0).astype(t.dtype), axis=ax, keepdims=keepdims)
        if isinstance(ord, (int, float)):
            return np.sum(a ** ord, axis=ax, keepdims=keepdims) ** (1.0 / ord)
    elif isinstance(axis, tuple) and len(axis) == 2:
        r0, r1 = (norm_axis(d, t.ndim) for d in axis)
        a = np.abs(t)
        if ord in (None, "fro"):
            return np.sqrt(np.sum(t * t, axis=axis, keepdims=keepdims))
        if ord in (1, -1, np.inf, -np.inf):
            sum_ax, red_ax = (r0, r1) if ord in (1, -1) else (r1, r0)
            s = np.sum(a, axis=sum_ax, keepdims=True)
            red = np.max if ord in (1, np.inf) else np.min
            r = red(s, axis=red_ax, keepdims=True)
            return r if keepdims else squeeze(r, axis=(r0, r1))
    raise UnsupportedError(f"np.linalg.norm(ord={ord!r}, axis={axis!r}) is not supported", where=user_frame())
