"""numpy's semantics for every elementwise op, per dtype, as LLVM instructions.

Integer division by zero gives 0 (and INT_MIN // -1 gives INT_MIN), shifts past the bit width give
0 or -1, float->int casts of NaN/out-of-range values give x86's "integer indefinite" as numpy does
on this hardware, max/min propagate NaN, C truthiness (NaN is true) decides floor_divide's branches.
Every emitter works on scalars and on vectors alike. `em` is the code generator (codegen/llvm.py):
its builder `b` and its `intrinsic`/`libm` helpers.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ..errors import CompileError
from .types import F32, F64, I1, I64, elem, fconst, like, ty

def emit_cast(em, v, src: np.dtype, dst: np.dtype):
    b = em.b
    src, dst = np.dtype(src), np.dtype(dst)
    if src == dst:
        return v
    st, dt_ = like(v, ty(src)), like(v, ty(dst))
    if dst.kind == "b":
        if src.kind == "f":
            return b.fcmp_unordered("!=", v, fconst(st, 0.0))  # NaN is truthy
        return b.icmp_unsigned("!=", v, ir.Constant(st, 0))
    if src.kind == "b":
        return b.uitofp(v, dt_) if dst.kind == "f" else b.zext(v, dt_)
    if src.kind == "f" and dst.kind == "f":
        return b.fptrunc(v, dt_) if dst.itemsize < src.itemsize else b.fpext(v, dt_)
    if dst.kind == "f":
        return b.sitofp(v, dt_) if src.kind == "i" else b.uitofp(v, dt_)
    if src.kind == "f":
        return _float_to_int(em, v, st, dst)
    # int -> int
    if elem(dt_).width < elem(st).width:
        return b.trunc(v, dt_)
    if elem(dt_).width > elem(st).width:
        return b.sext(v, dt_) if src.kind == "i" else b.zext(v, dt_)
    return v


def _float_to_int(em, v, st, dst):
    """numpy on x86: C casts compiled to cvtt*2si; NaN/out-of-range give INT_MIN of the 32/64-bit convert."""
    b = em.b
    dt_ = like(v, ty(dst))
    if dst.kind == "u" and dst.itemsize == 8:
        big = fconst(st, 2.0 ** 63)
        hi = b.xor(_cvtt(em, b.fsub(v, big), st, 64), ir.Constant(like(v, I64), 1 << 63))
        lo = _cvtt(em, v, st, 64)
        return b.select(b.fcmp_ordered(">=", v, big), hi, lo)
    width = 64 if dst.itemsize == 8 or (dst.kind == "u" and dst.itemsize == 4) else 32
    r = _cvtt(em, v, st, width)
    return b.trunc(r, dt_) if elem(dt_).width < width else r


def _cvtt(em, v, st, width):
    b = em.b
    it = like(v, ir.IntType(width))
    lim = 2.0 ** (width - 1)
    ok = b.and_(b.fcmp_ordered(">=", v, fconst(st, -lim)), b.fcmp_ordered("<", v, fconst(st, lim)))
    safe = b.select(ok, v, fconst(st, 0.0))  # keep fptosi away from poison
    return b.select(ok, b.fptosi(safe, it), ir.Constant(it, 1 << (width - 1)))


_FCMP = {"equal": "==", "not_equal": "!=", "less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">="}


def emit_call(em, op: str, args, arg_dts, out_dt):
    b = em.b
    dt = np.dtype(arg_dts[0]) if arg_dts else np.dtype(out_dt)
    if op == "where":
        return b.select(args[0], args[1], args[2])
    x = args[0]
    y = args[1] if len(args) > 1 else None
    t = x.type
    if dt.kind == "b":
        return _bool_op(b, op, x, y)
    if dt.kind == "f":
        return _float_op(em, op, x, y, args, t)
    if op in _FCMP and {np.dtype(d).kind for d in arg_dts} == {"i", "u"}:
        return _mixed_sign_cmp(b, op, x, y, dt.kind == "i")
    return _int_op(em, op, x, y, t, dt.kind == "i")


_LEFT_IS_SMALLER = {"less": 1, "less_equal": 1, "not_equal": 1, "greater": 0, "greater_equal": 0, "equal": 0}
_LEFT_IS_LARGER = {"less": 0, "less_equal": 0, "not_equal": 1, "greater": 1, "greater_equal": 1, "equal": 0}


def _mixed_sign_cmp(b, op, x, y, x_signed):
    """numpy's int64/uint64 comparison loops compare the values exactly (no common type holds both): a
    negative signed operand decides alone; otherwise the unsigned comparison is the right one."""
    zero = ir.Constant(x.type, 0)
    neg = b.icmp_signed("<", x if x_signed else y, zero)
    plain = b.icmp_unsigned(_FCMP[op], x, y)
    decided = (_LEFT_IS_SMALLER if x_signed else _LEFT_IS_LARGER)[op]
    return b.select(neg, ir.Constant(plain.type, decided), plain)


def _bool_op(b, op, x, y):
    if op in ("logical_and", "bitwise_and", "multiply", "minimum", "fmin", "reduce_mul"):
        return b.and_(x, y)
    if op in ("logical_or", "bitwise_or", "add", "maximum", "fmax", "reduce_add"):
        return b.or_(x, y)
    if op in ("logical_xor", "bitwise_xor", "not_equal"):
        return b.xor(x, y)
    if op == "equal":
        return b.icmp_unsigned("==", x, y)
    if op in ("logical_not", "invert"):
        return b.not_(x)
    if op in ("absolute", "positive", "square", "floor", "ceil", "trunc", "rint"):
        return x
    if op in ("less", "less_equal", "greater", "greater_equal"):
        return b.icmp_unsigned(_FCMP[op], x, y)
    if op in ("isnan", "isinf", "signbit"):
        return ir.Constant(like(x, I1), 0)
    if op == "isfinite":
        return ir.Constant(like(x, I1), 1)
    raise CompileError(f"op {op} on bool is not implemented in the code generator")


def _float_op(em, op, x, y, args, t):
    b = em.b
    zero = fconst(t, 0.0)
    if op == "add":
        return b.fadd(x, y)
    if op == "subtract":
        return b.fsub(x, y)
    if op == "multiply":
        return b.fmul(x, y)
    if op == "divide":
        return b.fdiv(x, y)
    if op == "reduce_add":
        return b.fadd(x, y, flags=("reassoc", "nsz", "contract"))
    if op == "reduce_mul":
        return b.fmul(x, y, flags=("reassoc", "nsz"))
    if op == "fma":
        return em.intrinsic("llvm.fma", None, list(args))
    if op in _FCMP:
        return (b.fcmp_unordered if op == "not_equal" else b.fcmp_ordered)(_FCMP[op], x, y)
    if op in ("maximum", "minimum"):  # numpy: (a >= b || isnan(a)) ? a : b -- NaN from either side wins
        c = b.fcmp_ordered(">=" if op == "maximum" else "<=", x, y)
        return b.select(b.or_(c, b.fcmp_unordered("uno", x, x)), x, y)
    if op == "fmax":
        return em.intrinsic("llvm.maxnum", None, [x, y])
    if op == "fmin":
        return em.intrinsic("llvm.minnum", None, [x, y])
    if op == "copysign":
        return em.intrinsic("llvm.copysign", None, [x, y])
    if op == "fmod":
        return b.frem(x, y)
    if op == "remainder":
        mod = b.frem(x, y)
        fix = b.and_(b.fcmp_ordered("!=", mod, zero),
                     b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
        r = b.select(fix, b.fadd(mod, y), mod)
        r = b.select(b.fcmp_ordered("==", mod, zero), em.intrinsic("llvm.copysign", None, [zero, y]), r)
        return b.select(b.fcmp_ordered("==", y, zero), mod, r)
    if op == "floor_divide":
        mod = b.frem(x, y)
        div = b.fdiv(b.fsub(x, mod), y)
        fix = b.and_(b.fcmp_ordered("!=", mod, zero),
                     b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
        div = b.select(fix, b.fsub(div, fconst(t, 1.0)), div)
        fl = em.intrinsic("llvm.floor", None, [div])
        fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), fconst(t, 0.5)), b.fadd(fl, fconst(t, 1.0)), fl)
        q = b.fdiv(x, y)
        # C truthiness: a NaN quotient is "nonzero" and stays NaN (NaN divisor, infinite dividend)
        r = b.select(b.fcmp_unordered("!=", div, zero), fl, em.intrinsic("llvm.copysign", None, [zero, q]))
        return b.select(b.fcmp_ordered("==", y, zero), q, r)
    if op == "negative":
        return b.fneg(x)
    if op == "positive":
        return x
    if op == "absolute":
        return em.intrinsic("llvm.fabs", None, [x])
    if op == "sign":
        one = fconst(t, 1.0)
        r = b.select(b.fcmp_ordered(">", x, zero), one,
                     b.select(b.fcmp_ordered("<", x, zero), fconst(t, -1.0), zero))
        return b.select(b.fcmp_unordered("uno", x, x), x, r)
    if op == "sqrt":
        return em.intrinsic("llvm.sqrt", None, [x])
    if op == "square":
        return b.fmul(x, x)
    if op == "reciprocal":
        return b.fdiv(fconst(t, 1.0), x)
    if op in ("floor", "ceil", "trunc", "rint"):
        return em.intrinsic("llvm." + op, None, [x])
    if op == "isnan":
        return b.fcmp_unordered("uno", x, x)
    if op == "isinf":
        return b.fcmp_ordered("==", em.intrinsic("llvm.fabs", None, [x]), fconst(t, float("inf")))
    if op == "isfinite":
        return b.fcmp_ordered("<", em.intrinsic("llvm.fabs", None, [x]), fconst(t, float("inf")))
    if op == "signbit":
        it = like(x, ir.IntType(32 if elem(t) == F32 else 64))
        return b.icmp_signed("<", b.bitcast(x, it), ir.Constant(it, 0))
    if op == "logical_not":
        return b.fcmp_ordered("==", x, zero)
    if op == "sigmoid":
        one = fconst(t, 1.0)
        return b.fdiv(one, b.fadd(one, transcendental(em, "exp", [b.fneg(x)])))
    if op in ("logical_and", "logical_or", "logical_xor"):
        xb, yb = b.fcmp_unordered("!=", x, zero), b.fcmp_unordered("!=", y, zero)
        return {"logical_and": b.and_, "logical_or": b.or_, "logical_xor": b.xor}[op](xb, yb)
    return transcendental(em, op, list(args))


_LIBM = {"exp": "exp", "exp2": "exp2", "expm1": "expm1", "log": "log", "log2": "log2", "log10": "log10",
         "log1p": "log1p", "sin": "sin", "cos": "cos", "tan": "tan", "arcsin": "asin", "arccos": "acos",
         "arctan": "atan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "arcsinh": "asinh", "arccosh": "acosh",
         "arctanh": "atanh", "cbrt": "cbrt", "power": "pow", "arctan2": "atan2", "hypot": "hypot"}


def transcendental(em, op, args):
    try:
        from . import mathlib
    except ImportError:
        mathlib = None
    if mathlib is not None and op in getattr(mathlib, "SUPPORTED", ()):
        v = mathlib.emit(em.b, op, args)
        return v
    if op in _LIBM:
        return em.libm(_LIBM[op], args)
    raise CompileError(f"float op {op} is not implemented in the code generator")


def _int_op(em, op, x, y, t, signed):
    b = em.b
    zero, one = ir.Constant(t, 0), ir.Constant(t, 1)
    bits = elem(t).width
    cmp = b.icmp_signed if signed else b.icmp_unsigned
    if op in ("add", "reduce_add"):
        return b.add(x, y)
    if op == "subtract":
        return b.sub(x, y)
    if op in ("multiply", "reduce_mul"):
        return b.mul(x, y)
    if op in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
        return cmp(_FCMP[op], x, y)
    if op in ("maximum", "fmax"):
        return b.select(cmp(">=", x, y), x, y)
    if op in ("minimum", "fmin"):
        return b.select(cmp("<=", x, y), x, y)
    if op in ("bitwise_and", "logical_and"):
        return b.and_(x, y) if op == "bitwise_and" else b.and_(b.icmp_unsigned("!=", x, zero), b.icmp_unsigned("!=", y, zero))
    if op in ("bitwise_or", "logical_or"):
        return b.or_(x, y) if op == "bitwise_or" else b.or_(b.icmp_unsigned("!=", x, zero), b.icmp_unsigned("!=", y, zero))
    if op in ("bitwise_xor", "logical_xor"):
        return b.xor(x, y) if op == "bitwise_xor" else b.xor(b.icmp_unsigned("!=", x, zero), b.icmp_unsigned("!=", y, zero))
    if op == "logical_not":
        return b.icmp_unsigned("==", x, zero)
    if op == "invert":
        return b.not_(x)
    if op in ("floor_divide", "remainder", "fmod"):
        bad = b.icmp_unsigned("==", y, zero)
        if signed:  # INT_MIN / -1 overflows (UB in LLVM): numpy gives INT_MIN (and 0 for the remainder)
            bad = b.or_(bad, b.and_(b.icmp_signed("==", y, ir.Constant(t, -1)),
                                    b.icmp_signed("==", x, ir.Constant(t, 1 << (bits - 1)))))
        ys = b.select(bad, one, y)
        if op == "floor_divide":
            if not signed:
                return b.select(bad, zero, b.udiv(x, ys))
            q = b.sdiv(x, ys)
            r = b.srem(x, ys)
            adj = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, ys), zero))
            q = b.select(adj, b.sub(q, one), q)
            minus_one = b.icmp_signed("==", y, ir.Constant(t, -1))
            return b.select(bad, b.select(minus_one, x, zero), q)  # INT_MIN // -1 == INT_MIN
        if not signed:
            return b.select(bad, zero, b.urem(x, ys))
        r = b.srem(x, ys)
        if op == "remainder":
            adj = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, ys), zero))
            r = b.select(adj, b.add(r, ys), r)
        return b.select(bad, zero, r)
    if op in ("left_shift", "right_shift"):
        width = ir.Constant(t, bits)
        inrange = b.icmp_unsigned("<", y, width)  # negative shift counts are huge unsigned: out of range
        ys = b.select(inrange, y, zero)
        if op == "left_shift":
            return b.select(inrange, b.shl(x, ys), zero)
        if signed:
            return b.select(inrange, b.ashr(x, ys), b.select(b.icmp_signed("<", x, zero), ir.Constant(t, -1), zero))
        return b.select(inrange, b.lshr(x, ys), zero)
    if op == "power":  # square-and-multiply over the exponent's bits, branch-free
        r, base = one, x
        for bit in range(bits - 1 if signed else bits):
            on = b.icmp_unsigned("!=", b.and_(y, ir.Constant(t, 1 << bit)), zero)
            r = b.select(on, b.mul(r, base), r)
            base = b.mul(base, base)
        return b.select(cmp("<", y, zero), zero, r) if signed else r
    if op == "negative":
        return b.sub(zero, x)
    if op in ("positive", "floor", "ceil", "trunc", "rint"):
        return x
    if op == "absolute":
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x) if signed else x
    if op == "sign":
        if signed:
            return b.sub(b.zext(cmp(">", x, zero), t), b.zext(cmp("<", x, zero), t))
        return b.zext(b.icmp_unsigned("!=", x, zero), t)
    if op == "square":
        return b.mul(x, x)
    if op == "reciprocal":  # numpy computes 1.0 / x in double and casts back (x == 0: inf -> INT_MIN)
        d = like(x, F64)
        q = b.fdiv(fconst(d, 1.0), b.sitofp(x, d) if signed else b.uitofp(x, d))
        return _float_to_int(em, q, d, np.dtype(f"{'i' if signed else 'u'}{bits // 8}"))
    if op in ("isnan", "isinf", "signbit"):
        return b.icmp_signed("<", x, zero) if op == "signbit" and signed else ir.Constant(like(x, I1), 0)
    if op == "isfinite":
        return ir.Constant(like(x, I1), 1)
    raise CompileError(f"op {op} on {'signed' if signed else 'unsigned'} integers is not implemented in the "
                       "code generator")


# ---------------------------------------------------------------------------------------------
# modules and engines
