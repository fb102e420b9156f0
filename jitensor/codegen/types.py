"""LLVM types for numpy dtypes, and lane-polymorphic helpers (a value may be a scalar or a vector)."""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ..errors import CompileError

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()


def ty(dt: np.dtype):
    dt = np.dtype(dt)
    if dt.kind == "b":
        return I1
    if dt.kind in "iu":
        return ir.IntType(8 * dt.itemsize)
    if dt == np.float32:
        return F32
    if dt == np.float64:
        return F64
    raise CompileError(f"no LLVM type for dtype {dt}")


def mem_ty(dt: np.dtype):
    return I8 if np.dtype(dt).kind == "b" else ty(dt)


def _suffix(t) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_suffix(t.element)}"
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"


def fconst(t, v):
    return ir.Constant(t, v)


def like(v, t):
    """Scalar type `t`, or a vector of `t` with as many lanes as value `v`."""
    return ir.VectorType(t, v.type.count) if isinstance(v.type, ir.VectorType) else t


def elem(t):
    return t.element if isinstance(t, ir.VectorType) else t
