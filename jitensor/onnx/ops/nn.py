"""Neural-network ops: softmax and normalizations (BatchNormalization, LayerNormalization,
InstanceNormalization, LRN). Convolutions are in conv.py, pooling in pool.py, Pad and Resize in resize.py."""
from __future__ import annotations

import numpy as np

from ..registry import converter
from .common import axis, dtype_of


def _softmax_axes(ctx, x):
    nd = np.ndim(x)
    if ctx.opset >= 13:
        return axis(ctx, ctx.attr("axis", -1), nd), False
    return axis(ctx, ctx.attr("axis", 1), nd), True  # before 13: over the flattened trailing dimensions


def _softmax(ctx, x, log):
    a, flat = _softmax_axes(ctx, x)
    shape = np.shape(x)
    if flat:
        x = np.reshape(x, (int(np.prod(shape[:a], dtype=np.int64)), -1))
        a = 1
    m = np.max(x, axis=a, keepdims=True)
    e = x - m
    if log:
        y = e - np.log(np.sum(np.exp(e), axis=a, keepdims=True))
    else:
        p = np.exp(e)
        y = p / np.sum(p, axis=a, keepdims=True)
    return np.reshape(y, shape) if flat else y


@converter("Softmax")
def softmax(ctx, x):
    return _softmax(ctx, x, log=False)


@converter("LogSoftmax")
def log_softmax(ctx, x):
    return _softmax(ctx, x, log=True)


@converter("BatchNormalization")
def batch_norm(ctx, x, scale, bias, mean, var):
    if ctx.attr("training_mode", 0):
        raise ctx.unsupported("BatchNormalization in training mode")
    eps = ctx.attr("epsilon", 1e-5)
    shape = (1, -1) + (1,) * (np.ndim(x) - 2)
    dt = dtype_of(x)
    if all(isinstance(v, np.ndarray) for v in (scale, bias, mean, var)):  # fold the statistics into one a*x+b
        k = (scale / np.sqrt(var.astype(np.float64) + eps)).astype(dt)
        b = (bias - mean * k).astype(dt)
        return x * k.reshape(shape) + b.reshape(shape)
    k = scale / np.sqrt(var + eps)
    return x * np.reshape(k, shape) + np.reshape(bias - mean * k, shape)


@converter("LayerNormalization", since=17)
def layer_norm(ctx, x, scale, bias=None):
    a = axis(ctx, ctx.attr("axis", -1), np.ndim(x))
    eps = ctx.attr("epsilon", 1e-5)
    ax = tuple(range(a, np.ndim(x)))
    mu = np.mean(x, axis=ax, keepdims=True)
    d = x - mu
    var = np.mean(d * d, axis=ax, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    y = d * inv * scale
    if bias is not None:
        y = y + bias
    if ctx.n_outputs == 1:
        return y
    return (y, mu, inv)[:ctx.n_outputs]


@converter("InstanceNormalization", since=6)
def instance_norm(ctx, x, scale, bias):
    if np.ndim(x) < 3:
        raise ctx.error(f"InstanceNormalization needs an input of rank 3 or more, got shape {list(np.shape(x))}")
    eps = ctx.attr("epsilon", 1e-5)
    ax = tuple(range(2, np.ndim(x)))
    shape = (-1,) + (1,) * len(ax)
    mu = np.mean(x, axis=ax, keepdims=True)
    d = x - mu
    var = np.mean(d * d, axis=ax, keepdims=True)
    return d * (np.reshape(scale, shape) / np.sqrt(var + np.asarray(eps, dtype_of(x)))) + np.reshape(bias, shape)


@converter("LRN")
def lrn(ctx, x):
    size = ctx.attr("size")
    alpha, beta, bias = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    if np.ndim(x) < 3:
        raise ctx.error(f"LRN needs an input of rank 3 or more, got shape {list(np.shape(x))}")
    from .conv import crop_pad
    C = np.shape(x)[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # channels c - lo .. c + hi
    sq = crop_pad(x * x, [1], [lo], [hi], 0)
    s = None
    for j in range(size):
        part = sq[:, j:j + C]
        s = part if s is None else s + part
    dt = dtype_of(x)
    base = np.asarray(bias, dt) + np.asarray(alpha / size, dt) * s
    if beta == 0.75:  # base ** -0.75 = rsqrt(base) * rsqrt(sqrt(base))
        return x / (np.sqrt(base) * np.sqrt(np.sqrt(base)))
    return x / np.power(base, np.asarray(beta, dt))
