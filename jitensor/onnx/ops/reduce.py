"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare, ArgMax/ArgMin.

Axes are an attribute until opset 13 (ReduceSum) or 18 (the others), an input after; `keepdims`
defaults to 1 and `noop_with_empty_axes` makes an empty axes list the identity.
"""
from __future__ import annotations

import numpy as np

from ..registry import converter
from .common import axis, dtype_of

_INPUT_AXES_SINCE = {"ReduceSum": 13}


def _reduce(op, fn):
    def convert(ctx, x, axes=None):
        if ctx.opset >= _INPUT_AXES_SINCE.get(op, 18):
            ax = ctx.ints(axes, "axes") if axes is not None else []
        else:
            ax = list(ctx.attr("axes", []))
        keep = bool(ctx.attr("keepdims", 1))
        if not ax:
            if ctx.attr("noop_with_empty_axes", 0):
                return x
            ax = list(range(np.ndim(x)))
        ax = tuple(sorted({axis(ctx, a, np.ndim(x)) for a in ax}))
        return fn(x, ax, keep)
    converter(op)(convert)


_reduce("ReduceSum", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k, dtype=dtype_of(x)))
_reduce("ReduceMean", lambda x, ax, k: np.mean(x, axis=ax, keepdims=k).astype(dtype_of(x)))
_reduce("ReduceMax", lambda x, ax, k: np.max(x, axis=ax, keepdims=k))
_reduce("ReduceMin", lambda x, ax, k: np.min(x, axis=ax, keepdims=k))
_reduce("ReduceProd", lambda x, ax, k: np.prod(x, axis=ax, keepdims=k, dtype=dtype_of(x)))
_reduce("ReduceL1", lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k, dtype=dtype_of(x)))
_reduce("ReduceL2", lambda x, ax, k: np.sqrt(np.sum(x * x, axis=ax, keepdims=k, dtype=dtype_of(x))).astype(
    dtype_of(x)))
_reduce("ReduceSumSquare", lambda x, ax, k: np.sum(x * x, axis=ax, keepdims=k, dtype=dtype_of(x)))
_reduce("ReduceLogSum", lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k, dtype=dtype_of(x))))


def _logsumexp(x, ax, k):
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return s if k else np.squeeze(s, axis=ax)


_reduce("ReduceLogSumExp", _logsumexp)


def _arg(op, fn):
    @converter(op)
    def convert(ctx, x):
        a = axis(ctx, ctx.attr("axis", 0), np.ndim(x))
        keep = bool(ctx.attr("keepdims", 1))
        if ctx.attr("select_last_index", 0):
            n = np.shape(x)[a]
            r = (n - 1) - fn(np.flip(x, axis=a), axis=a, keepdims=keep)
        else:
            r = fn(x, axis=a, keepdims=keep)
        return r.astype(np.int64)


_arg("ArgMax", np.argmax)
_arg("ArgMin", np.argmin)
