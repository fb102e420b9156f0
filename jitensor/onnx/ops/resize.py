"""Spatial resampling and rearrangement: Pad, Resize (nearest, linear, cubic), DepthToSpace, SpaceToDepth.

Everything index-related is computed with numpy at compile time, one axis at a time, and applied as
slices, broadcasts and concatenations where the index map has that structure (padding, integer
nearest upsampling), else as a gather with constant indices; interpolation weights are constants.
"""
from __future__ import annotations

import numpy as np

from ..registry import converter
from .common import dtype_of
from .conv import crop_pad


# -- index maps as slices ----------------------------------------------------------------------------------

def take_runs(x, axis: int, idx: np.ndarray):
    """np.take(x, idx, axis) written as a concatenation of slices (runs of step 1 or -1) and broadcasts
    (repeated indices), falling back to a gather when the map has many short runs."""
    idx = np.asarray(idx, dtype=np.int64)
    n = np.shape(x)[axis]
    if len(idx) == n and np.array_equal(idx, np.arange(n)):
        return x
    runs, i = [], 0
    while i < len(idx):
        j = i + 1
        step = int(idx[j] - idx[i]) if j < len(idx) else 1
        if step not in (-1, 0, 1):
            step = 1
        else:
            while j < len(idx) and idx[j] - idx[j - 1] == step:
                j += 1
        runs.append((int(idx[i]), step, j - i))
        i = j
    if len(runs) > 16:
        return np.take(x, idx, axis=axis)
    parts = []
    for start, step, length in runs:
        key = [slice(None)] * np.ndim(x)
        if step == 0:
            key[axis] = slice(start, start + 1)
            v = x[tuple(key)]
            shape = list(np.shape(v))
            shape[axis] = length
            parts.append(np.broadcast_to(v, tuple(shape)))
        else:
            stop = start + step * length
            key[axis] = slice(start, None if stop < 0 else stop, step)
            parts.append(x[tuple(key)])
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)


# -- Pad -----------------------------------------------------------------------------------------------------

def _pad_index(mode: str, n: int, b: int, e: int) -> np.ndarray:
    i = np.arange(-b, n + e)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if n == 1:  # reflect
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i > n - 1, period - i, i)


def pad(ctx, x, pads, value=0, mode="constant", axes=None):
    nd = np.ndim(x)
    axes = list(range(nd)) if axes is None else [a + nd if a < 0 else a for a in axes]
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"pads {pads} do not fit {len(axes)} axes")
    if any(not 0 <= a < nd for a in axes) or len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} are out of range or repeated for a tensor of rank {nd}")
    begin, end = pads[:len(axes)], pads[len(axes):]
    if mode == "constant":
        return crop_pad(x, axes, begin, end, value)
    if mode not in ("reflect", "edge", "wrap"):
        raise ctx.unsupported(f"Pad mode '{mode}'")
    for a, b, e in zip(axes, begin, end):
        if b == 0 and e == 0:
            continue
        n = np.shape(x)[a]
        if b < 0 or e < 0:  # negative pads crop first
            x = crop_pad(x, [a], [min(b, 0)], [min(e, 0)])
            n, b, e = np.shape(x)[a], max(b, 0), max(e, 0)
        if n == 0:
            raise ctx.error(f"cannot pad an empty axis {a} in mode '{mode}'")
        x = take_runs(x, a, _pad_index(mode, n, b, e))
    return x


@converter("Pad", since=2)
def pad_v2(ctx, x):
    return pad(ctx, x, list(ctx.attr("pads")), ctx.attr("value", 0.0), ctx.attr("mode", "constant"))


@converter("Pad", since=11)
def pad_v11(ctx, x, pads, value=None, axes=None):
    p = ctx.ints(pads, "pads")
    ax = None if axes is None else ctx.ints(axes, "axes")
    if value is None:
        v = 0
    elif isinstance(value, np.ndarray) or not hasattr(value, "dtype"):
        v = np.asarray(value).reshape(-1)
        v = v[0] if v.size else 0
    else:
        v = value  # a traced scalar
    return pad(ctx, x, p, v, ctx.attr("mode", "constant"), ax)


# -- DepthToSpace / SpaceToDepth ---------------------------------------------------------------------------

@converter("DepthToSpace")
def depth_to_space(ctx, x):
    bs = ctx.attr("blocksize")
    N, C, H, W = np.shape(x)
    if C % (bs * bs):
        raise ctx.error(f"{C} channels are not a multiple of blocksize^2 = {bs * bs}")
    c = C // (bs * bs)
    if ctx.attr("mode", "DCR") == "DCR":
        y = np.transpose(np.reshape(x, (N, bs, bs, c, H, W)), (0, 3, 4, 1, 5, 2))
    else:
        y = np.transpose(np.reshape(x, (N, c, bs, bs, H, W)), (0, 1, 4, 2, 5, 3))
    return np.reshape(y, (N, c, H * bs, W * bs))


@converter("SpaceToDepth")
def space_to_depth(ctx, x):
    bs = ctx.attr("blocksize")
    N, C, H, W = np.shape(x)
    if H % bs or W % bs:
        raise ctx.error(f"spatial size {H}x{W} is not a multiple of blocksize {bs}")
    y = np.transpose(np.reshape(x, (N, C, H // bs, bs, W // bs, bs)), (0, 3, 5, 1, 2, 4))
    return np.reshape(y, (N, C * bs * bs, H // bs, W // bs))


# -- Resize ----------------------------------------------------------------------------------------------------

def _source_coords(ctx, mode, n, m, scale, roi_lo, roi_hi):
    """Each output index's coordinate in the input (float64), per coordinate_transformation_mode."""
    x = np.arange(m, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adj = m / (scale * n)
        center = n / 2
        return center * (1 - adj) + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if m > 1 else np.zeros(m)
    if mode == "align_corners":
        return x * (n - 1) / (m - 1) if m > 1 else np.zeros(m)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "tf_crop_and_resize":
        if m > 1:
            return roi_lo * (n - 1) + x * (roi_hi - roi_lo) * (n - 1) / (m - 1)
        return np.full(m, 0.5 * (roi_lo + roi_hi) * (n - 1))
    raise ctx.unsupported(f"coordinate_transformation_mode '{mode}'")


def _nearest(ctx, c, mode):
    if mode == "round_prefer_floor":
        return np.ceil(c - 0.5)
    if mode == "round_prefer_ceil":
        return np.floor(c + 0.5)
    if mode == "floor":
        return np.floor(c)
    if mode == "ceil":
        return np.ceil(c)
    raise ctx.unsupported(f"nearest_mode '{mode}'")


def _cubic_coeffs(t, a):
    t = t[:, None] + np.array([1.0, 0.0, -1.0, -2.0])  # distances to taps i0-1, i0, i0+1, i0+2
    d = np.abs(t)
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))


def _resize_axis(ctx, x, ax, m, scale, roi_lo, roi_hi):
    n = np.shape(x)[ax]
    dt = dtype_of(x)
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 11 else "asymmetric")
    mode = ctx.attr("mode", "nearest")
    c = _source_coords(ctx, ctm, n, m, scale, roi_lo, roi_hi)
    bshape = [1] * np.ndim(x)
    bshape[ax] = m
    if mode == "nearest":
        nm = ctx.attr("nearest_mode", "round_prefer_floor") if ctx.opset >= 11 else "floor"
        idx = np.clip(_nearest(ctx, c, nm), 0, n - 1).astype(np.int64)
        r = m // n if n else 0
        if r > 1 and m == n * r and np.array_equal(idx, np.arange(m) // r):  # integer upsampling: a broadcast
            shape = list(np.shape(x))
            y = np.broadcast_to(np.expand_dims(x, ax + 1), tuple(shape[:ax + 1] + [r] + shape[ax + 1:]))
            y = np.reshape(y, tuple(shape[:ax] + [m] + shape[ax + 1:]))
        else:
            y = take_runs(x, ax, idx)
    elif mode in ("linear", "cubic"):
        i0 = np.floor(c)
        t = c - i0
        i0 = i0.astype(np.int64)
        if mode == "linear":
            offs, coef = [0, 1], np.stack([1 - t, t], axis=1)
        else:
            offs, coef = [-1, 0, 1, 2], _cubic_coeffs(t, ctx.attr("cubic_coeff_a", -0.75))
        taps = i0[:, None] + np.array(offs)
        if ctx.attr("exclude_outside", 0):
            coef = np.where((taps < 0) | (taps > n - 1), 0.0, coef)
            coef = coef / coef.sum(axis=1, keepdims=True)
        taps = np.clip(taps, 0, n - 1)
        y = None
        for k in range(len(offs)):
            if np.all(coef[:, k] == 0):
                continue
            term = take_runs(x, ax, taps[:, k])
            if not np.all(coef[:, k] == 1):
                term = term * coef[:, k].astype(dt).reshape(bshape)
            y = term if y is None else y + term
        if y is None:
            y = np.zeros(tuple(np.shape(x)[:ax]) + (m,) + tuple(np.shape(x)[ax + 1:]), dt)
    else:
        raise ctx.unsupported(f"Resize mode '{mode}'")
    if ctm == "tf_crop_and_resize":
        outside = (c < 0) | (c > n - 1)
        if outside.any():
            y = np.where(outside.reshape(bshape), np.asarray(ctx.attr("extrapolation_value", 0.0), dt), y)
    return y


def _resize(ctx, x, roi, scales, sizes):
    nd = np.ndim(x)
    shape = np.shape(x)
    axes = list(ctx.attr("axes", range(nd))) if ctx.opset >= 18 else list(range(nd))
    axes = [a + nd if a < 0 else a for a in axes]
    scales = None if scales is None else ctx.constant(scales, "scales").astype(np.float64).reshape(-1)
    sizes = None if sizes is None else ctx.ints(sizes, "sizes")
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and len(sizes) == 0:
        sizes = None
    if (scales is None) == (sizes is None):
        raise ctx.error("exactly one of 'scales' and 'sizes' must be given")
    ins = [shape[a] for a in axes]
    if sizes is not None:
        if len(sizes) != len(axes):
            raise ctx.error(f"sizes {sizes} do not fit {len(axes)} axes")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch") if ctx.opset >= 18 else "stretch"
        if policy == "stretch":
            outs = list(sizes)
            sc = [o / i for o, i in zip(outs, ins)]
        elif policy in ("not_larger", "not_smaller"):
            r = [o / i for o, i in zip(sizes, ins)]
            s = min(r) if policy == "not_larger" else max(r)
            sc = [s] * len(axes)
            outs = [int(np.floor(s * i + 0.5)) for i in ins]
        else:
            raise ctx.unsupported(f"keep_aspect_ratio_policy '{policy}'")
    else:
        if len(scales) != len(axes):
            raise ctx.error(f"scales {list(scales)} do not fit {len(axes)} axes")
        if np.any(scales <= 0):
            raise ctx.error(f"scales {list(scales)} must be positive")
        sc = list(scales)
        outs = [int(np.floor(i * s)) for i, s in zip(ins, sc)]
    if ctx.attr("antialias", 0) and ctx.attr("mode", "nearest") != "nearest" and any(s < 1 for s in sc):
        raise ctx.unsupported("Resize with antialias=1 when downscaling")
    rois = None
    if ctx.attr("coordinate_transformation_mode", "") == "tf_crop_and_resize":
        if roi is None:
            raise ctx.error("coordinate_transformation_mode 'tf_crop_and_resize' needs the roi input")
        r = ctx.constant(roi, "roi").astype(np.float64).reshape(-1)
        if len(r) != 2 * len(axes):
            raise ctx.error(f"roi {list(r)} does not fit {len(axes)} axes")
        rois = list(zip(r[:len(axes)], r[len(axes):]))
    y = x
    for k, (a, o, s) in enumerate(zip(axes, outs, sc)):
        lo, hi = rois[k] if rois else (0.0, 1.0)
        if o == shape[a] and s == 1.0 and rois is None:
            continue
        y = _resize_axis(ctx, y, a, o, s, lo, hi)
    return y


@converter("Resize", since=10)
def resize_v10(ctx, x, scales):
    return _resize(ctx, x, None, scales, None)


@converter("Resize", since=11)
def resize_v11(ctx, x, roi=None, scales=None, sizes=None):
    return _resize(ctx, x, roi, scales, sizes)


@converter("Upsample", since=7)
def upsample_v7(ctx, x):
    return _resize(ctx, x, None, np.asarray(ctx.attr("scales"), np.float64), None)


@converter("Upsample", since=9)
def upsample(ctx, x, scales):
    return _resize(ctx, x, None, scales, None)
