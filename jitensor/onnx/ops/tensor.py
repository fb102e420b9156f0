"""Shape and data-movement ops: Reshape, Transpose, Concat, Split, Slice, Gather, Squeeze, Expand, Tile...

Shapes, axes and indices that the model computes from constants arrive as numpy arrays, so shape
subgraphs (Shape -> Gather -> Concat -> Reshape) fold to constants as they are converted.
"""
from __future__ import annotations

import numpy as np

from ..registry import converter
from .common import axis, dtype_of, onnx_dtype


@converter("Identity")
def identity(ctx, x):
    return x


@converter("Dropout")
def dropout(ctx, x, ratio=None, training=None):
    if training is not None and ctx.constant(training, "training_mode").item():
        raise ctx.unsupported("Dropout in training mode")
    return (x, np.ones(np.shape(x), dtype=bool)) if ctx.n_outputs > 1 else x


@converter("Constant")
def constant(ctx):
    for k, dt in (("value", None), ("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                  ("value_ints", np.int64)):
        if k in ctx.attrs:
            return np.asarray(ctx.attrs[k], dtype=dt)
    raise ctx.unsupported(f"a Constant with attributes {sorted(ctx.attrs)}")


@converter("ConstantOfShape")
def constant_of_shape(ctx, shape):
    v = ctx.attr("value", np.zeros(1, np.float32))
    return np.full(ctx.ints(shape, "input"), v.reshape(-1)[0], dtype=v.dtype)


@converter("Shape")
def shape(ctx, x):
    s = np.array(np.shape(x), dtype=np.int64)
    if ctx.opset >= 15:
        n = len(s)
        start, end = ctx.attr("start", 0), ctx.attr("end", n)
        s = s[start:end]
    return s


@converter("Size")
def size(ctx, x):
    return np.array(np.size(x), dtype=np.int64)


@converter("Reshape", since=5)
def reshape(ctx, x, shape):
    dims = ctx.ints(shape, "shape")
    xs = np.shape(x)
    if not ctx.attr("allowzero", 0):
        dims = [xs[i] if d == 0 else d for i, d in enumerate(dims)]
    return np.reshape(x, dims)


@converter("Flatten")
def flatten(ctx, x):
    s = np.shape(x)
    a = axis(ctx, ctx.attr("axis", 1), len(s) + 1)
    return np.reshape(x, (int(np.prod(s[:a], dtype=np.int64)), int(np.prod(s[a:], dtype=np.int64))))


@converter("Transpose")
def transpose(ctx, x):
    perm = ctx.attr("perm", None)
    return np.transpose(x, perm)


def _axes(ctx, axes_in, name="axes"):
    if ctx.opset >= 13 or axes_in is not None:
        return None if axes_in is None else ctx.ints(axes_in, name)
    return ctx.attr(name, None)


@converter("Squeeze")
def squeeze(ctx, x, axes=None):
    ax = _axes(ctx, axes)
    if ax is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(axis(ctx, a, np.ndim(x)) for a in ax))


@converter("Unsqueeze")
def unsqueeze(ctx, x, axes=None):
    ax = _axes(ctx, axes)
    n = np.ndim(x) + len(ax)
    ax = sorted(axis(ctx, a, n) for a in ax)
    shape = list(np.shape(x))
    for a in ax:
        shape.insert(a, 1)
    return np.reshape(x, shape)


@converter("Concat")
def concat(ctx, *xs):
    return np.concatenate(xs, axis=ctx.attr("axis"))


@converter("Split")
def split(ctx, x, split=None):
    a = axis(ctx, ctx.attr("axis", 0), np.ndim(x))
    dim = np.shape(x)[a]
    if split is not None:
        sizes = ctx.ints(split, "split")
    elif "split" in ctx.attrs:
        sizes = list(ctx.attrs["split"])
    else:
        n = ctx.attr("num_outputs", ctx.n_outputs)
        step = -(-dim // n)  # ceil: the last part may be smaller (opset 18)
        sizes = [min(step, dim - i * step) for i in range(n)]
    if sum(sizes) != dim:
        raise ctx.error(f"split sizes {sizes} do not add up to dimension {dim}")
    idx = np.cumsum(sizes)[:-1].tolist()
    return tuple(np.split(x, idx, axis=a)) if not hasattr(x, "node") else tuple(
        x[(slice(None),) * a + (slice(s, e),)] for s, e in zip([0] + idx, idx + [dim]))


def _clamp_slice(start, end, step, dim):
    if step > 0:
        start = min(max(start + dim if start < 0 else start, 0), dim)
        end = min(max(end + dim if end < 0 else end, 0), dim)
        return slice(start, end, step)
    start = min(max(start + dim if start < 0 else start, 0), dim - 1)
    end = min(max(end + dim if end < 0 else end, -1), dim - 1)
    return slice(start, None if end == -1 else end, step)


@converter("Slice", since=10)
def slice_(ctx, x, starts, ends, axes=None, steps=None):
    starts, ends = ctx.ints(starts, "starts"), ctx.ints(ends, "ends")
    nd = np.ndim(x)
    ax = [axis(ctx, a, nd) for a in ctx.ints(axes, "axes")] if axes is not None else list(range(len(starts)))
    st = ctx.ints(steps, "steps") if steps is not None else [1] * len(starts)
    key = [slice(None)] * nd
    shape = np.shape(x)
    for a, s, e, k in zip(ax, starts, ends, st):
        if k == 0:
            raise ctx.error("a slice step of 0")
        key[a] = _clamp_slice(s, e, k, shape[a])
    return x[tuple(key)]


@converter("Slice")
def slice_v1(ctx, x):
    return slice_(ctx, x, ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes", None))


@converter("Gather")
def gather(ctx, x, indices):
    a = axis(ctx, ctx.attr("axis", 0), np.ndim(x))
    if isinstance(indices, np.ndarray):
        indices = np.where(indices < 0, indices + np.shape(x)[a], indices)
    return np.take(x, indices, axis=a)


@converter("GatherElements")
def gather_elements(ctx, x, indices):
    a = axis(ctx, ctx.attr("axis", 0), np.ndim(x))
    if isinstance(indices, np.ndarray):
        indices = np.where(indices < 0, indices + np.shape(x)[a], indices)
    return np.take_along_axis(x, indices, axis=a)


@converter("Expand", since=8)
def expand(ctx, x, shape):
    return np.broadcast_to(x, np.broadcast_shapes(np.shape(x), tuple(ctx.ints(shape, "shape"))))


@converter("Tile", since=6)
def tile(ctx, x, repeats):
    reps = ctx.ints(repeats, "repeats")
    shape = np.shape(x)
    if len(reps) != len(shape):
        raise ctx.error(f"repeats {reps} do not match the input's rank {len(shape)}")
    spread = [d for r, s in zip(reps, shape) for d in (1, s)]
    full = [d for r, s in zip(reps, shape) for d in (r, s)]
    return np.reshape(np.broadcast_to(np.reshape(x, spread), full), [r * s for r, s in zip(reps, shape)])


@converter("Range", since=11)
def range_(ctx, start, limit, delta):
    s, l, d = (ctx.constant(v, n) for v, n in ((start, "start"), (limit, "limit"), (delta, "delta")))
    return np.arange(s.item(), l.item(), d.item(), dtype=s.dtype)


@converter("EyeLike", since=9)
def eye_like(ctx, x):
    dt = onnx_dtype(ctx, ctx.attr("dtype")) if "dtype" in ctx.attrs else dtype_of(x)
    n, m = np.shape(x)
    return np.eye(n, m, k=ctx.attr("k", 0), dtype=dt)
