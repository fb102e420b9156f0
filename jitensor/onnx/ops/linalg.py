"""Contractions: MatMul and Gemm (alpha * A' B' + beta * C)."""
from __future__ import annotations

import numpy as np

from ..registry import converter
from .common import dtype_of


@converter("MatMul")
def matmul(ctx, a, b):
    return np.matmul(a, b)


@converter("Gemm")
def gemm(ctx, a, b, c=None):
    if ctx.attr("transA", 0):
        a = np.transpose(a)
    if ctx.attr("transB", 0):
        b = np.transpose(b)
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    y = np.matmul(a, b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else c * beta)
    return y.astype(dtype_of(a)) if dtype_of(y) != dtype_of(a) else y
