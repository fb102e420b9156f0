"""Helpers shared by the converters."""
from __future__ import annotations

import numpy as np


def dtype_of(x) -> np.dtype:
    return np.asarray(x).dtype if not hasattr(x, "dtype") else np.dtype(x.dtype)


def is_int(x) -> bool:
    return dtype_of(x).kind in "iub"


def onnx_dtype(ctx, elem_type: int) -> np.dtype:
    from onnx.helper import tensor_dtype_to_np_dtype
    try:
        return np.dtype(tensor_dtype_to_np_dtype(int(elem_type)))
    except Exception:
        raise ctx.unsupported(f"ONNX element type {elem_type}") from None


def axis(ctx, a: int, ndim: int) -> int:
    if not -ndim <= a < max(ndim, 1):
        raise ctx.error(f"axis {a} is out of range for a tensor of rank {ndim}")
    return a + ndim if a < 0 else a
