"""Pooling: MaxPool, AveragePool, LpPool (pads, strides, dilations, ceil_mode, auto_pad) and their global forms.

A window op is a fold over the kernel offsets' strided slices of the padded input (np.maximum or +),
elementwise work that fuses into one kernel. Padding is -inf (max) or 0 (sums); ceil_mode adds the
extra padding the last window needs, and average pooling divides by a compile-time count of the
elements each window covers (the input's, or with count_include_pad the explicitly padded extent's).
"""
from __future__ import annotations

import numpy as np

from ..registry import converter
from .common import dtype_of
from .conv import crop_pad, offset_slices, shifted_slices, window_params


def _lowest(dt):
    return -np.inf if dt.kind == "f" else (np.iinfo(dt).min if dt.kind in "iu" else False)


def _window(ctx, x):
    """(kernel, strides, dilations, pads_begin, pads_end incl. ceil_mode's extra, out sizes, explicit pads_end)."""
    if np.ndim(x) < 3:
        raise ctx.error(f"pooling needs an input of rank 3 or more (N, C, spatial...), got shape {list(np.shape(x))}")
    S = np.shape(x)[2:]
    K = list(ctx.attr("kernel_shape"))
    strides, dil, pb, pe = window_params(ctx, S, K)
    ceil = ctx.attr("ceil_mode", 0)
    out, extra = [], []
    for i in range(len(S)):
        span = (K[i] - 1) * dil[i] + 1
        num = S[i] + pb[i] + pe[i] - span
        if num < 0:
            raise ctx.error(f"the window {K} (dilations {dil}) is larger than the padded input")
        o = (-(-num // strides[i]) if ceil else num // strides[i]) + 1
        if ceil and (o - 1) * strides[i] >= S[i] + pb[i]:  # a last window starting in the end padding is dropped
            o -= 1
        out.append(o)
        # past the explicit pads: the ceil_mode windows' extra (> 0), or padding no window reads (< 0)
        extra.append((o - 1) * strides[i] + span - (S[i] + pb[i] + pe[i]))
    return K, strides, dil, pb, [p + e for p, e in zip(pe, extra)], out, pe


def _fold(xp, K, strides, dil, out, op):
    y = None
    for _, sl in offset_slices(xp, 2, K, strides, dil, out):
        y = sl if y is None else op(y, sl)
    return y


@converter("MaxPool")
def max_pool(ctx, x):
    if ctx.n_outputs > 1:
        raise ctx.unsupported("MaxPool's Indices output")
    K, strides, dil, pb, pe, out, _ = _window(ctx, x)
    low = _lowest(dtype_of(x))
    if all(s == 1 for s in strides):  # one padded copy read by every offset
        xp = crop_pad(x, list(range(2, np.ndim(x))), pb, pe, low)
        return _fold(xp, K, strides, dil, out, np.maximum)
    y = None  # strided: the output is smaller than the input, and each offset's slice fills its own border
    for _, sl in shifted_slices(x, 2, K, strides, dil, out, pb, low):
        y = sl if y is None else np.maximum(y, sl)
    return y


def _counts(S, K, strides, dil, pb, pe, pe_explicit, include_pad):
    """How many elements each window averages over (numpy, compile time), shape `out`."""
    mask = np.ones(tuple(S), dtype=np.float64)
    axes = list(range(len(S)))
    if include_pad:
        mask = crop_pad(mask, axes, pb, pe_explicit, 1.0)
        mask = crop_pad(mask, axes, [0] * len(S), [a - b for a, b in zip(pe, pe_explicit)], 0.0)
    else:
        mask = crop_pad(mask, axes, pb, pe, 0.0)
    out = [(mask.shape[i] - (K[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in axes]
    return _fold(mask[None, None], K, strides, dil, out, np.add)[0, 0]


@converter("AveragePool")
def average_pool(ctx, x):
    K, strides, dil, pb, pe, out, pe_explicit = _window(ctx, x)
    dt = dtype_of(x)
    ns = np.ndim(x) - 2
    xp = crop_pad(x, list(range(2, 2 + ns)), pb, pe, 0)
    s = _fold(xp, K, strides, dil, out, np.add)
    cnt = _counts(np.shape(x)[2:], K, strides, dil, pb, pe, pe_explicit, ctx.attr("count_include_pad", 0))
    if np.all(cnt == cnt.flat[0]):
        return s * np.asarray(1.0 / cnt.flat[0], dtype=dt)
    return s * (1.0 / cnt).astype(dt)


@converter("LpPool")
def lp_pool(ctx, x):
    K, strides, dil, pb, pe, out, _ = _window(ctx, x)
    p = ctx.attr("p", 2)
    xp = crop_pad(x, list(range(2, np.ndim(x))), pb, pe, 0)
    dt = dtype_of(x)
    if p == 1:
        return _fold(np.abs(xp), K, strides, dil, out, np.add)
    if p == 2:
        return np.sqrt(_fold(xp * xp, K, strides, dil, out, np.add))
    s = _fold(np.power(np.abs(xp), np.asarray(p, dt)), K, strides, dil, out, np.add)
    return np.power(s, np.asarray(1.0 / p, dt))


def _spatial(ctx, x):
    if np.ndim(x) < 3:
        raise ctx.error(f"global pooling needs an input of rank 3 or more, got shape {list(np.shape(x))}")
    return tuple(range(2, np.ndim(x)))


@converter("GlobalAveragePool")
def global_average_pool(ctx, x):
    return np.mean(x, axis=_spatial(ctx, x), keepdims=True)


@converter("GlobalMaxPool")
def global_max_pool(ctx, x):
    return np.max(x, axis=_spatial(ctx, x), keepdims=True)


@converter("GlobalLpPool", since=2)
def global_lp_pool(ctx, x):
    ax, p = _spatial(ctx, x), ctx.attr("p", 2)
    if p == 2:
        return np.sqrt(np.sum(x * x, axis=ax, keepdims=True))
    if p == 1:
        return np.sum(np.abs(x), axis=ax, keepdims=True)
    dt = dtype_of(x)
    return np.power(np.sum(np.power(np.abs(x), np.asarray(p, dt)), axis=ax, keepdims=True), np.asarray(1.0 / p, dt))
