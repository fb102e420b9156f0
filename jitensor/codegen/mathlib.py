"""Inline, branch-free vector math emitted as plain LLVM IR.

LLVM lowers ``llvm.exp.*``, ``expf``, ``tanhf`` ... to scalar libm calls, even inside
vectorized loops.  This module emits its own implementations (range reduction +
minimax polynomials evaluated with ``llvm.fma``) that work identically on scalars
and on vectors of any width, for float and double.

Interface::

    SUPPORTED: frozenset[str]
    emit(builder, name, args) -> ir.Value

``args`` all have one type: ``float``, ``double`` or ``<N x float|double>``; the
result has that type.  Semantics follow the numpy ufunc of the same name
(``sigmoid`` is ``1/(1+exp(-x))``, ``erf`` is ``scipy.special.erf``).

Design rules:

* Only IR instructions and intrinsics that lower to machine instructions
  (fma, fabs, sqrt, floor, rint, bitcasts, selects, one ``masked.gather`` for
  the float64 ``power`` table).  No fast-math flags: NaN/Inf/-0/denormals are
  exact per numpy.
* Main paths are branch-free.  Only sin/cos/tan have a guarded slow path: for
  |x| beyond the Cody-Waite bound the lanes that need it are recomputed with
  libm (``sinf``/``sin``...), in new basic blocks.  **emit() may therefore
  change the builder's block**: it returns with the builder at the end of the
  merge block.  The builder must be positioned at the end of an unterminated
  block (the normal state while generating a loop body).
* Intrinsic declarations are looked up in ``module.globals`` before being
  declared, so emit() can be called any number of times on one module.

Polynomial coefficients are minimax fits (weighted Remez in mpmath, relative
error, coefficients rounded to the target precision one at a time with refits)
on the reduced intervals listed at ``_COEF``.  The "Max error" in each docstring
is the largest error measured with the harness of tests/codegen/test_mathlib.py
over 3 x 1M random inputs per function and precision (wide log-uniform ranges,
the function's interesting ranges, edge values), against numpy in higher
precision (float32 results vs float64, float64 vs long double; erf vs a series /
math.erfc), the worst points re-checked with mpmath.  float32 tanh and sigmoid
trade a little accuracy for speed (they sit in fused elementwise kernels).
"""
from __future__ import annotations

import decimal
import functools
import math
import struct
from fractions import Fraction as _Fr

from llvmlite import ir

__all__ = ["SUPPORTED", "emit"]

SUPPORTED = frozenset({
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2",
    "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
    "erf", "power", "sigmoid", "cbrt",
})
_NARGS = {"arctan2": 2, "power": 2}

# ---------------------------------------------------------------------------
# Exact constants and their hi/lo splits
# ---------------------------------------------------------------------------
_D = decimal.Context(prec=80)
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620")
_LN2 = _D.ln(decimal.Decimal(2))
_LN10 = _D.ln(decimal.Decimal(10))


def _round_sig(v, nbits: int) -> float:
    """Round an exact value (Decimal/Fraction) to `nbits` significant bits, ties to even."""
    f = _Fr(v)
    if f == 0:
        return 0.0
    s = -1 if f < 0 else 1
    f = abs(f)
    e = f.numerator.bit_length() - f.denominator.bit_length()
    if _Fr(2) ** e > f:
        e -= 1
    ulp = _Fr(2) ** (e - nbits + 1)
    return s * float(round(f / ulp) * ulp)


def _split(v, prec: int, hi_bits: int | None = None) -> tuple[float, float]:
    """v ~= hi + lo; hi has `hi_bits` significant bits (so small-int multiples are exact)."""
    hi = _round_sig(v, hi_bits or prec)
    return hi, _round_sig(_Fr(v) - _Fr(hi), prec)


def _f2i(x: float, dbl: bool) -> int:
    """Bit pattern of x as a signed int64 (dbl) or int32."""
    if dbl:
        return struct.unpack("<q", struct.pack("<d", x))[0]
    return struct.unpack("<i", struct.pack("<f", x))[0]


def _i2f(i: int) -> float:
    return struct.unpack("<d", struct.pack("<q", i))[0]


class _K:
    """Per-precision constants."""

    def __init__(self, dbl: bool):
        p = 53 if dbl else 24
        self.p = p
        self.mant = p - 1
        self.bias = 1023 if dbl else 127
        self.bits = 64 if dbl else 32
        # x + shifter rounds x to an integer, held in the low bits of the result
        self.shifter = 1.5 * 2.0 ** (p - 1)
        self.min_normal = 2.0 ** (1 - self.bias)
        self.one_bits = _f2i(1.0, dbl)
        self.sqh_bits = _f2i(_round_sig(_D.sqrt(decimal.Decimal("0.5")), p), dbl)
        self.mant_mask = (1 << self.mant) - 1
        self.log2e = _round_sig(1 / _Fr(_LN2), p)
        self.ln2 = _split(_LN2, p)                      # fma-based reductions: full-width hi
        self.ln2_t = _split(_LN2, p, p - 12)            # e*hi exact for |e| < 2^12
        self.log10_2_t = _split(_LN2 / _LN10, p, p - 12)
        self.ivln2 = _split(1 / _Fr(_LN2), p)
        self.ivln10 = _split(1 / _Fr(_LN10), p)
        self.two_over_pi = _round_sig(2 / _Fr(_PI), p)
        half_pi = _Fr(_PI) / 2
        if dbl:
            # P2 has 32 bits so k*P2 is exact for |k| < 2^21 (see _trig_reduce).
            p1 = _round_sig(half_pi, 53)
            p2 = _round_sig(half_pi - _Fr(p1), 32)
            p3 = _round_sig(half_pi - _Fr(p1) - _Fr(p2), 53)
            self.pio2 = (p1, p2, p3)
        else:
            p1 = _round_sig(half_pi, 24)
            p2 = _round_sig(half_pi - _Fr(p1), 24)
            p3 = _round_sig(half_pi - _Fr(p1) - _Fr(p2), 24)
            self.pio2 = (p1, p2, p3)
        self.pio2_hl = _split(half_pi, p)
        self.pi_hl = _split(_Fr(_PI), p)
        self.pio4_t = _split(_Fr(_PI) / 4, p, p - 3)    # j*hi exact for j <= 4
        third = _D.divide(decimal.Decimal(1), decimal.Decimal(3))
        self.cbrt2 = _round_sig(_D.power(decimal.Decimal(2), third), p)
        self.cbrt4 = _round_sig(_D.power(decimal.Decimal(4), third), p)


_KS = {False: _K(False), True: _K(True)}


# ---------------------------------------------------------------------------
# IR helpers
# ---------------------------------------------------------------------------
def _suffix(ty) -> str:
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_suffix(ty.element)}"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    if isinstance(ty, ir.PointerType):
        return "p0"
    raise TypeError(f"mathlib: no intrinsic suffix for {ty}")


def _declare(module: ir.Module, name: str, ret, args) -> ir.Function:
    """Declare `name` once per module (the module's symbol table is the cache)."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


class _E:
    """Emits float ops on one IR type (scalar or vector); constants are splatted."""

    def __init__(self, builder: ir.IRBuilder, ty):
        self.b = builder
        self.ty = ty
        if isinstance(ty, ir.VectorType):
            self.n, st = ty.count, ty.element
        else:
            self.n, st = None, ty
        if not isinstance(st, (ir.FloatType, ir.DoubleType)):
            raise TypeError(f"mathlib: unsupported type {ty}")
        self.dbl = isinstance(st, ir.DoubleType)
        self.st = st
        self.k = _KS[self.dbl]
        self.ity = self.vec(ir.IntType(self.k.bits))
        self.bty = self.vec(ir.IntType(1))

    @property
    def module(self) -> ir.Module:
        return self.b.block.function.module

    def vec(self, elem):
        return ir.VectorType(elem, self.n) if self.n is not None else elem

    def like(self, ty) -> "_E":
        return _E(self.b, self.vec(ty))

    # -- constants ---------------------------------------------------------
    def c(self, v: float):
        if self.n is None:
            return ir.Constant(self.st, float(v))
        return ir.Constant(self.ty, [float(v)] * self.n)

    def ci(self, v: int):
        if self.n is None:
            return ir.Constant(self.ity, int(v))
        return ir.Constant(self.ity, [int(v)] * self.n)

    def cb(self, v: bool):
        if self.n is None:
            return ir.Constant(self.bty, int(v))
        return ir.Constant(self.bty, [int(v)] * self.n)

    def _v(self, x):
        return self.c(x) if isinstance(x, (int, float)) else x

    # -- intrinsics --------------------------------------------------------
    def intr(self, name: str, *args, ret=None):
        args = [self._v(a) for a in args]
        ret = ret or args[0].type
        fn = _declare(self.module, f"llvm.{name}.{_suffix(args[0].type)}", ret,
                      [a.type for a in args])
        return self.b.call(fn, args)

    def fma(self, a, b, c):
        return self.intr("fma", a, b, c)

    def abs(self, a):
        return self.intr("fabs", a)

    def sqrt(self, a):
        return self.intr("sqrt", a)

    def floor(self, a):
        return self.intr("floor", a)

    def rint(self, a):
        return self.intr("rint", a)

    def copysign(self, mag, sgn):
        return self.intr("copysign", mag, sgn)

    # -- arithmetic --------------------------------------------------------
    def add(self, a, b):
        return self.b.fadd(self._v(a), self._v(b))

    def sub(self, a, b):
        return self.b.fsub(self._v(a), self._v(b))

    def mul(self, a, b):
        return self.b.fmul(self._v(a), self._v(b))

    def div(self, a, b):
        return self.b.fdiv(self._v(a), self._v(b))

    def neg(self, a):
        return self.b.fneg(a)

    # -- comparisons (ordered: false on NaN) and selects --------------------
    def lt(self, a, b):
        return self.b.fcmp_ordered("<", self._v(a), self._v(b))

    def le(self, a, b):
        return self.b.fcmp_ordered("<=", self._v(a), self._v(b))

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", self._v(a), self._v(b))

    def ge(self, a, b):
        return self.b.fcmp_ordered(">=", self._v(a), self._v(b))

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", self._v(a), self._v(b))

    def une(self, a, b):
        return self.b.fcmp_unordered("!=", self._v(a), self._v(b))

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def sel(self, cond, a, b):
        return self.b.select(cond, self._v(a), self._v(b))

    def and_(self, a, b):
        return self.b.and_(a, b)

    def or_(self, a, b):
        return self.b.or_(a, b)

    def not_(self, a):
        return self.b.not_(a)

    def min_c(self, x, hi):
        """min(x, hi) that keeps NaN (lowers to one minps: NaN in x -> x)."""
        return self.sel(self.gt(x, hi), hi, x)

    def max_c(self, x, lo):
        return self.sel(self.lt(x, lo), lo, x)

    # -- integer view ------------------------------------------------------
    def bits(self, x):
        return self.b.bitcast(x, self.ity)

    def flt(self, i):
        return self.b.bitcast(i, self.ty)

    def iadd(self, a, b):
        return self.b.add(a, self.ci(b) if isinstance(b, int) else b)

    def isub(self, a, b):
        return self.b.sub(a, self.ci(b) if isinstance(b, int) else b)

    def iand(self, a, b):
        return self.b.and_(a, self.ci(b) if isinstance(b, int) else b)

    def shl(self, a, n: int):
        return self.b.shl(a, self.ci(n))

    def ashr(self, a, n: int):
        return self.b.ashr(a, self.ci(n))

    def itof(self, i):
        return self.b.sitofp(i, self.ty)

    def signbit(self, x):
        return self.b.icmp_signed("<", self.bits(x), self.ci(0))

    def xorsign(self, x, ibit):
        """x with its sign flipped where integer `ibit` has the sign bit set."""
        return self.flt(self.b.xor(self.bits(x), ibit))

    # -- polynomials -------------------------------------------------------
    def poly(self, x, coeffs, x2=None):
        """sum c_i x^i with fma.  Horner (fewest ops: loops are throughput bound);
        only long polynomials are split into even/odd halves (two independent chains in
        x^2) to halve a dependency chain that would stall out-of-order execution."""
        coeffs = list(coeffs)
        if len(coeffs) < 10:
            acc = self.c(coeffs[-1])
            for cf in reversed(coeffs[:-1]):
                acc = self.fma(acc, x, cf)
            return acc
        x2 = x2 if x2 is not None else self.mul(x, x)
        ev = self.poly(x2, coeffs[0::2])
        od = self.poly(x2, coeffs[1::2])
        return self.fma(od, x, ev)

    # -- exponent manipulation ---------------------------------------------
    def pow2i(self, k):
        """2^k for an integer vector k in the normal exponent range."""
        return self.flt(self.shl(self.iadd(k, self.k.bias), self.k.mant))

    def ldexp2(self, p, k):
        """p * 2^k in two steps, so that denormal results round once and k may
        exceed the exponent range (k1, k2 stay normal). On 512-bit vectors with AVX-512, one
        vscalef does the same (one rounding, full range) in 2 instructions instead of 7."""
        if self.n is not None and self.n * self.k.bits == 512 and "+avx512f" in getattr(self.module, "jitensor_features", ""):
            kf = self.b.sitofp(k, self.ty)
            sfx, mask = ("pd", ir.IntType(8)) if self.dbl else ("ps", ir.IntType(16))
            fn = _declare(self.module, f"llvm.x86.avx512.mask.scalef.{sfx}.512", self.ty,
                          [self.ty, self.ty, self.ty, mask, ir.IntType(32)])
            return self.b.call(fn, [p, kf, p, ir.Constant(mask, -1), ir.Constant(ir.IntType(32), 4)])
        k1 = self.ashr(k, 1)
        k2 = self.isub(k, k1)
        return self.mul(self.mul(p, self.pow2i(k1)), self.pow2i(k2))

    def round_shift(self, x):
        """(kf, ki): x rounded to nearest integer as float and as int, via the
        1.5*2^(p-1) shifter (no fptosi: NaN lanes stay NaN, never poison)."""
        sh = self.k.shifter
        t = self.add(x, sh)
        ki = self.isub(self.bits(t), _f2i(sh, self.dbl))
        return self.sub(t, sh), ki

    def round_shift_fma(self, x, m):
        """Like round_shift(x * m), with the product inside the fma."""
        sh = self.k.shifter
        t = self.fma(x, m, sh)
        ki = self.isub(self.bits(t), _f2i(sh, self.dbl))
        return self.sub(t, sh), ki


# Minimax coefficients, lowest order first: (float32, float64).  What each approximates
# (z = x^2 for odd/even functions), on which interval, for relative error:
#   ASIN_A (asin(s)-s)/s^3, z in [0, 1/4]     ATAN_A (atan(u)-u)/u^3, z in [0, tan^2(pi/8)]
#   CBRT_0 cbrt(m), m in [1, 2]                COSH_C (cosh(x)-1)/x^2, z in [0, 1]
#   COS_C (cos r - 1 + r^2/2)/r^4, SIN_S (sin r - r)/r^3, TAN_T (tan r - r)/r^3: z in [0, (pi/4)^2]
#   ERF_S (erf(x)-x)/x, z in [0, 1]            ERFC_G erfc(x) e^(x^2) in t = x-1, t in
#   [0, 2.95] / [0, 5], weighted by e^(-x^2)   EXP2_Q (2^r-1)/r, r in [-1/2, 1/2]
#   EXPM1_Q/_W/_P (e^r-1-r)/r^2 on [-ln2/2, ln2/2] / [-ln2, ln2] / [0, ln2]
#   LOG_T (2 atanh(s)-2s)/s^3, z in [0, 0.0295] SINH_S (sinh(x)-x)/x^3, z in [0, 1]
#   POW_LOG1P_P (log1p(r)-r+r^2/2)/r^3, |r| <= 0.0117; POW32_*: LOG_T / EXP2_Q at ~2^-40
_COEF = {
    "ASIN_A": (
        (
            0.16666659712791443, 0.07500521838665009, 0.04451338201761246, 0.03183884918689728,
            0.014316808432340622, 0.037692274898290634,
        ),
        (
            0.1666666666666676, 0.07499999999970865, 0.04464285717456296, 0.030381942709747894,
            0.022372214939603237, 0.01735161278147031, 0.013980812215324809,
            0.011398974706111722, 0.010779928841087529, 0.0037075490281192527,
            0.021704845435625644, -0.02099559152566862, 0.03262656787549549,
        ),
    ),
    "ATAN_A": (
        (
            -0.33333316445350647, 0.19998525083065033, -0.1424429714679718, 0.10598265379667282,
            -0.0608733631670475,
        ),
        (
            -0.3333333333333319, 0.19999999999952184, -0.1428571428005417, 0.11111110776307183,
            -0.09090897551261563, 0.07692056529086308, -0.0666306199465974, 0.05847582060996869,
            -0.050379143394161705, 0.03802907827494818, -0.017868176134855276,
        ),
    ),
    "CBRT_0": (
        (
            0.5069793462753296, 0.7181540131568909, -0.30061161518096924, 0.08609136193990707,
            -0.010603896342217922,
        ),
        (
            0.44714086838576605, 0.9501013492514516, -0.6661815945961573, 0.38536745283938856,
            -0.14447296582512298, 0.03090476367851748, -0.002859702524149437,
        ),
    ),
    "COSH_C": (
        (
            0.4999999701976776, 0.04166693240404129, 0.001388165750540793,
            2.556761319283396e-05,
        ),
        (
            0.5000000000000001, 0.04166666666666372, 0.001388888888915074,
            2.480158719186356e-05, 2.755734369948082e-07, 2.0873767919730473e-09,
            1.1659218911810496e-11,
        ),
    ),
    "COS_C": (
        (
            0.04166664555668831, -0.0013887309469282627, 2.4432327336398885e-05,
        ),
        (
            0.041666666666666595, -0.0013888888888873307, 2.480158728896523e-05,
            -2.755731420307973e-07, 2.0875703139659373e-09, -1.1358617014100654e-11,
        ),
    ),
    "ERFC_G": (
        (
            0.42758357524871826, -0.27321183681488037, 0.1543666273355484, -0.07917868345975876,
            0.03734121844172478, -0.016040554270148277, 0.005955944303423166,
            -0.0017136340029537678, 0.0003210982831660658, -2.8108815968153067e-05,
        ),
        (
            0.427583576155807, -0.27321201478389606, 0.15437156137171804, -0.07922696893575773,
            0.03757229613047108, -0.01666186831095083, 0.006970137653915278,
            -0.0027690447976063738, 0.0010502078651133818, -0.00038181239592696427,
            0.00013341120525289864, -4.4795975474131755e-05, 1.4372933989104194e-05,
            -4.343283970254929e-06, 1.2053740954630709e-06, -2.967755729227969e-07,
            6.221276622122036e-08, -1.060055539121634e-08, 1.3897574729306402e-09,
            -1.301454237739343e-10, 7.689996272352523e-12, -2.1424333935393136e-13,
        ),
    ),
    "ERF_S": (
        (
            0.12837916612625122, -0.3761262595653534, 0.11283578723669052,
            -0.026853347197175026, 0.005187164526432753, -0.0007997886859811842,
            7.80705813667737e-05,
        ),
        (
            0.12837916709551256, -0.37612638903183343, 0.11283791670936952,
            -0.02686617064195934, 0.005223977596733628, -0.0008548325484435758,
            0.00012055280455611447, -1.4924464148250728e-05, 1.6444120188869867e-06,
            -1.6183640800388636e-07, 1.3614565367097002e-08, -7.602485904479099e-10,
        ),
    ),
    "EXP2_Q": (
        (
            0.6931471824645996, 0.24022650718688965, 0.05550400912761688, 0.009618083015084267,
            0.0013342826860025525, 0.00015453697415068746, 1.2994196367799304e-05,
        ),
        (
            0.6931471805599453, 0.2402265069591007, 0.05550410866482338, 0.009618129107630225,
            0.0013333558146033208, 0.00015403530388906345, 1.5252734167018946e-05,
            1.321549130610279e-06, 1.0177932320942434e-07, 7.052963006407379e-09,
            4.473295207046514e-10, 2.87038576225283e-11,
        ),
    ),
    "EXPM1_P": (
        (
            0.4999999701976776, 0.16666750609874725, 0.04165886715054512, 0.008366351947188377,
            0.0013191086472943425, 0.0002689420653041452,
        ),
        None,
    ),
    "EXPM1_Q": (
        (
            0.5, 0.1666666567325592, 0.04166646674275398, 0.008333639241755009,
            0.0013934954768046737, 0.0001967187854461372,
        ),
        (
            0.5000000000000001, 0.1666666666666667, 0.041666666666648824, 0.008333333333328443,
            0.0013888888897114057, 0.0001984126986540061, 2.480157177634297e-05,
            2.7557267154393024e-06, 2.7570127924908787e-07, 2.5100578517507546e-08,
            1.7052385154434256e-09,
        ),
    ),
    "EXPM1_W": (
        (
            0.5, 0.1666666716337204, 0.041666675359010696, 0.008333266712725163,
            0.0013887991663068533, 0.00019865320064127445, 2.508317083993461e-05,
            2.507027375031612e-06,
        ),
        (
            0.49999999999999994, 0.16666666666666663, 0.041666666666669405,
            0.008333333333336013, 0.001388888888848761, 0.0001984126983670216,
            2.4801587562608778e-05, 2.7557322270762968e-06, 2.7557235370584085e-07,
            2.5051159679823602e-08, 2.0889688593344525e-09, 1.6197646448123085e-10,
            1.0732032646986927e-11,
        ),
    ),
    "LOG_T": (
        (
            0.6666677594184875, 0.39977556467056274, 0.29872027039527893,
        ),
        (
            0.6666666666666735, 0.39999999999409, 0.2857142874383069, 0.22222198408023575,
            0.18183573739993575, 0.15313789631031105, 0.1479875145070658,
        ),
    ),
    "POW32_EXP2_Q": (
        None,
        (
            0.6931471805412035, 0.240226506947422, 0.055504109593367684, 0.009618129558983857,
            0.0013333434061236318, 0.00015403098234420637, 1.531423316673967e-05,
            1.3344170631332061e-06,
        ),
    ),
    "POW32_LOG_T": (
        None,
        (
            0.6666666563979734, 0.40000336721960367, 0.2853719754117582, 0.23584489497260094,
        ),
    ),
    "POW_LOG1P_P": (
        None,
        (
            0.3333333333333333, -0.25000000000006706, 0.20000000000120013, -0.16666666414856213,
            0.1428571227178382, -0.1250284606565154, 0.11121707694907595,
        ),
    ),
    "SINH_S": (
        (
            0.1666666716337204, 0.00833331048488617, 0.00019842895562760532,
            2.7822131869470468e-06,
        ),
        (
            0.16666666666666669, 0.008333333333332912, 0.00019841269841593405,
            2.7557319106760344e-06, 2.5052130997790968e-08, 1.605665927019909e-10,
            7.776596050493439e-13,
        ),
    ),
    "SIN_S": (
        (
            -0.1666666716337204, 0.008333379402756691, -0.00019853064441122115,
            2.8325100629444933e-06,
        ),
        (
            -0.1666666666666663, 0.00833333333332184, -0.0001984126982935853,
            2.7557313538515017e-06, -2.5050734389265252e-08, 1.589543328221801e-10,
        ),
    ),
    "TAN_T": (
        (
            0.3333333134651184, 0.13333433866500854, 0.053951043635606766, 0.022010497748851776,
            0.00823295209556818, 0.005197314545512199, -0.0008147816406562924,
            0.0021355520002543926,
        ),
        (
            0.3333333333333338, 0.13333333333325342, 0.05396825397290307, 0.02186948839932552,
            0.008863237922086082, 0.003592100886050969, 0.0014560455035507304,
            0.0005888647777214481, 0.00024375076904030097, 8.355830494026384e-05,
            6.722583169240145e-05, -2.5642418501486642e-05, 4.8646235649451485e-05,
            -2.4280573237178877e-05, 9.800866905234932e-06,
        ),
    ),
}


def _cf(e: _E, name: str):
    return _COEF[name][1 if e.dbl else 0]


# ---------------------------------------------------------------------------
# exp family
# ---------------------------------------------------------------------------
# Clamp bounds: beyond them the result is certainly 0 / inf / -1 after rounding,
# and k stays small enough for pow2i/ldexp2.
_EXP_HI = {False: 89.0, True: 709.9}        # k <= 128 / 1024 (2^(k-1) representable)
_EXP_LO = {False: -110.0, True: -750.0}     # e^lo < min_denormal / 2
_EXPM1_LO = {False: -20.0, True: -40.0}     # e^lo < ulp(1) / 4: expm1 == -1


def _exp_reduce(e: _E, x):
    """x = k*ln2 + r, |r| <= ln2/2 (Cody-Waite; with fma the first step is exact)."""
    kf, ki = e.round_shift_fma(x, e.k.log2e)
    hi, lo = e.k.ln2
    r = e.fma(kf, -hi, x)
    r = e.fma(kf, -lo, r)
    return ki, r


def _expm1_r(e: _E, r):
    """e^r - 1 on |r| <= 0.3466: r + r^2 Q(r) (minimax, rel. error 2^-31 / 2^-58)."""
    return e.fma(e.mul(r, r), e.poly(r, _cf(e, "EXPM1_Q")), r)


def _exp_core(e: _E, x, koff=0):
    """e^x * 2^koff for clamped x (NaN passes through)."""
    ki, r = _exp_reduce(e, x)
    p = e.add(_expm1_r(e, r), 1.0)
    if koff:
        ki = e.iadd(ki, koff)
    return e.ldexp2(p, ki)


def _expm1_parts(e: _E, x):
    """x = k ln2 + r with k = trunc(x/ln2), so r in (-ln2, ln2) has the sign of x; returns
    (k, em1 = e^r - 1) with em1 = r1 + (rl + r^2 P(r)): r1 = x - k ln2_hi is exact, so
    only the final add rounds at full size."""
    kf = e.intr("trunc", e.mul(x, e.k.log2e))
    ki = e.isub(e.bits(e.add(kf, e.k.shifter)), _f2i(e.k.shifter, e.dbl))
    hi, lo = e.k.ln2
    r1 = e.fma(kf, -hi, x)                    # exact
    rl = e.mul(kf, -lo)
    r = e.add(r1, rl)
    z = e.mul(r, r)
    return ki, e.add(r1, e.fma(z, e.poly(r, _cf(e, "EXPM1_W"), x2=z), rl))


def _expm1_core(e: _E, x):
    """e^x - 1 for clamped x: 2^k e^r - 1 never cancels (k >= 1 -> result >= 1,
    k <= -1 -> result <= -1/2); computed as 2 * (t*em1 + (t - 1/2)), t = 2^(k-1):
    one rounding, and em1 itself for k = 0."""
    ki, em1 = _expm1_parts(e, x)
    t = e.pow2i(e.isub(ki, 1))
    return e.mul(e.fma(t, em1, e.sub(t, 0.5)), 2.0)


def _f_exp(e: _E, x):
    """exp: Cody-Waite reduction by ln2, expm1 minimax polynomial on |r| <= ln2/2,
    2^k applied in two steps (exact denormal rounding).
    Max error 1.0 ulp (f32) / 1.0 ulp (f64)."""
    xc = e.max_c(e.min_c(x, _EXP_HI[e.dbl]), _EXP_LO[e.dbl])
    return _exp_core(e, xc)


def _f_exp2(e: _E, x):
    """exp2: x = k + r, |r| <= 1/2 exact, 2^r = 1 + r Q(r) (minimax), 2^k in two steps.
    Max error 0.9 ulp (f32) / 1.0 ulp (f64)."""
    lo, hi = (-160.0, 130.0) if not e.dbl else (-1100.0, 1030.0)
    xc = e.max_c(e.min_c(x, hi), lo)
    kf, ki = e.round_shift(xc)
    r = e.sub(xc, kf)
    p = e.fma(r, e.poly(r, _cf(e, "EXP2_Q")), 1.0)
    return e.ldexp2(p, ki)


def _f_expm1(e: _E, x):
    """expm1: same reduction as exp; 2^k*(1+em1)-1 as one fma (see _expm1_core).
    Max error 1.2 ulp (f32) / 1.6 ulp (f64)."""
    xc = e.max_c(e.min_c(x, _EXP_HI[e.dbl]), _EXPM1_LO[e.dbl])
    res = _expm1_core(e, xc)
    return e.sel(e.eq(x, 0.0), x, res)          # keep -0


def _div_fix(e: _E, q, num, D, Dlo, rD):
    """Refine q ~ num / (D + Dlo): q + (num - q D - q Dlo) / D, with 1/D ~ rD.  Removes
    the rounding of D and of the division (the residual of a division is exact)."""
    t = e.fma(e.neg(q), Dlo, e.fma(e.neg(q), D, num))
    return e.fma(t, rD, q)


def _f_sigmoid(e: _E, x):
    """sigmoid = 1/(1+exp(-x)): with E = exp(-|x|) in (0, 1], x >= 0 -> 1/(1+E),
    x < 0 -> E/(1+E) (no overflow, denormal tail kept); one division.  float32 (speed):
    x < 0 as E - E*q; float64: the quotient refined with the exact division residual
    (1/D is q or 1-q).  Max error 1.6 ulp (f32) / 1.5 ulp (f64)."""
    a = e.abs(x)
    ac = e.min_c(a, -_EXP_LO[e.dbl])
    E = _exp_core(e, e.neg(ac))
    neg = e.lt(x, 0.0)
    num = e.sel(neg, E, 1.0)
    D = e.add(E, 1.0)
    q = e.div(num, D)
    if not e.dbl:
        # speed first (fused kernels): x < 0 as E - E*q, which scales q's error by E <= 1
        return e.sel(neg, e.fma(e.neg(E), q, E), q)
    Dlo = e.add(e.sub(1.0, D), E)                  # exact (Fast2Sum, E <= 1)
    return _div_fix(e, q, num, D, Dlo, e.sel(neg, e.sub(1.0, q), q))


def _f_tanh(e: _E, x):
    """tanh(|x|) = E/(E+2), E = expm1(2|x|): no cancellation near 0, and E's relative
    error is damped by 2/(E+2) <= 1; one division; |x| clamped where tanh rounds to 1;
    sign copied.  float32 is tuned for speed (25 vector ops, about memory bandwidth):
    k = trunc(2|x|/ln2) keeps em1 = e^r - 1 in [0, 1) (one-sided minimax polynomial),
    and for E < 2 tanh = E/2 - (E/2) q, which shrinks the quotient's rounding errors.
    float64 refines the quotient with the exact division residual and the exact
    rounding error of E + 2.  Max error 1.7 ulp (f32) / 1.6 ulp (f64)."""
    a = e.abs(x)
    if not e.dbl:
        ac = e.min_c(a, 9.0)
        # E = e^(2a) - 1 = S (1 + em1) - 1, S = 2^k, k = trunc(2a/ln2): em1 in [0, 1), no
        # cancellation; h = a - k ln2/2 (the doubling folded into the constants).
        hi, lo = e.k.ln2
        kf = e.intr("trunc", e.mul(ac, 2.0 * e.k.log2e))
        # (bits(kf + shifter + bias) << 23) == (k + bias) << 23: the shifter's own bits
        # are shifted out
        S = e.flt(e.shl(e.bits(e.add(kf, e.k.shifter + e.k.bias)), e.k.mant))
        h = e.fma(kf, -0.5 * lo, e.fma(kf, -0.5 * hi, ac))
        cf = [c * 2.0 ** (i + 2) for i, c in enumerate(_cf(e, "EXPM1_P"))]   # r = 2h in [0, ln2)
        em1 = e.fma(e.mul(h, h), e.poly(h, cf), e.add(h, h))
        E = e.fma(S, em1, e.sub(S, 1.0))
        q = e.div(E, e.add(E, 2.0))
        # E < 2: tanh = E/2 - (E/2) q, which scales the quotient's rounding errors by E/2
        E2 = e.mul(E, 0.5)
        q = e.sel(e.lt(E, 2.0), e.fma(e.neg(E2), q, E2), q)
        return e.copysign(q, x)
    ac = e.min_c(a, 20.0)
    E = _expm1_core(e, e.add(ac, ac))
    D = e.add(E, 2.0)
    Dlo = e.add(e.sub(2.0, D), E)                  # exact for E >= 0 (D-2 and E-(D-2) are)
    rD = e.div(1.0, D)
    q = _div_fix(e, e.mul(E, rD), E, D, Dlo, rD)
    return e.copysign(q, x)


def _sinh_small(e: _E, a):
    """sinh(a) for 0 <= a <= 1: a + a^3 S(a^2) (minimax)."""
    z = e.mul(a, a)
    return e.fma(e.mul(a, z), e.poly(z, _cf(e, "SINH_S")), a)


def _quarter_exp(e: _E, a):
    """e^a / 4 = S (1 + em1), S = 2^(k-2) exact, em1 in [0, 1) (truncating reduction, so
    S and e^a/4 share a binade), for 0 <= a <= 89.5 / 710.6 (S stays finite; the final
    doubling overflows to inf where sinh/cosh do)."""
    ac = e.min_c(a, 89.5 if not e.dbl else 710.6)
    ki, em1 = _expm1_parts(e, ac)
    return e.pow2i(e.isub(ki, 2)), em1


def _f_sinh(e: _E, x):
    """sinh: |x| < 1 odd minimax polynomial; else 2 (H - 1/(16H)), H = e^|x|/4 kept as
    S + S*em1 so the large term is rounded only once.
    Max error 1.5 ulp (f32) / 1.5 ulp (f64)."""
    a = e.abs(x)
    S, em1 = _quarter_exp(e, a)
    q = e.div(0.0625, e.fma(S, em1, S))
    big = e.mul(e.fma(S, em1, e.sub(S, q)), 2.0)
    res = e.sel(e.lt(a, 1.0), _sinh_small(e, a), big)
    return e.copysign(res, x)


def _f_cosh(e: _E, x):
    """cosh: |x| < 1: 1 + x^2 C(x^2) (minimax); else 2 (H + 1/(16H)), H = e^|x|/4 as
    for sinh (no cancellation).  Max error 1.4 ulp (f32) / 1.5 ulp (f64)."""
    a = e.abs(x)
    S, em1 = _quarter_exp(e, a)
    q = e.div(0.0625, e.fma(S, em1, S))
    big = e.mul(e.fma(S, em1, e.add(S, q)), 2.0)
    z = e.mul(a, a)
    small = e.fma(z, e.poly(z, _cf(e, "COSH_C")), 1.0)
    return e.sel(e.lt(a, 1.0), small, big)


# ---------------------------------------------------------------------------
# log family
# ---------------------------------------------------------------------------
def _log_parts(e: _E, u):
    """u = 2^ef * m, m in [sqrt(1/2), sqrt(2)); log(m) = hi + lo with f = m - 1 exact,
    s = f/(2+f): log(1+f) = f - hfsq + s*(hfsq + R(s^2)) (R minimax, rel. 2^-30 / 2^-59).
    The division error of s only reaches the small term s*(...)."""
    k = e.k
    den = e.lt(u, k.min_normal)
    u = e.sel(den, e.mul(u, 2.0 ** (k.p + 1)), u)
    ix = e.iadd(e.bits(u), k.one_bits - k.sqh_bits)
    ef = e.itof(e.isub(e.ashr(ix, k.mant), k.bias))
    ef = e.sel(den, e.sub(ef, float(k.p + 1)), ef)
    m = e.flt(e.iadd(e.iand(ix, k.mant_mask), k.sqh_bits))
    f = e.sub(m, 1.0)
    s = e.div(f, e.add(f, 2.0))
    z = e.mul(s, s)
    R = e.mul(z, e.poly(z, _cf(e, "LOG_T")))
    hfsq = e.mul(e.mul(f, f), 0.5)
    hi = e.sub(f, hfsq)
    lo = e.fma(s, e.add(hfsq, R), e.sub(e.sub(f, hi), hfsq))
    return ef, hi, lo


def _log_finish(e: _E, ef, hi, lo, base: str):
    """ef*log_b(2) + (hi+lo)/ln(b), summed so that only the last add rounds much."""
    k = e.k
    if base == "e":
        p, plo = hi, lo
        chi, clo = k.ln2_t
    else:
        mhi, mlo = k.ivln2 if base == "2" else k.ivln10
        p = e.mul(hi, mhi)
        plo = e.add(e.fma(hi, mhi, e.neg(p)), e.fma(hi, mlo, e.mul(lo, mhi)))
        chi, clo = (1.0, 0.0) if base == "2" else k.log10_2_t
    A = e.mul(ef, chi) if chi != 1.0 else ef      # exact: chi has trailing zeros
    w = e.add(A, p)
    err = e.add(e.sub(A, w), p)                   # Fast2Sum: |A| >= |p| or A == 0
    tail = e.add(err, e.fma(ef, clo, plo) if clo else plo)
    return e.add(w, tail)


def _log_special(e: _E, u, res):
    """log(0) = -inf, log(<0) = nan, log(inf) = inf, log(nan) = nan."""
    res = e.sel(e.eq(u, 0.0), -math.inf, res)
    res = e.sel(e.lt(u, 0.0), math.nan, res)
    res = e.sel(e.eq(u, math.inf), math.inf, res)
    return e.sel(e.isnan(u), u, res)


def _logb(e: _E, x, base):
    ef, hi, lo = _log_parts(e, x)
    return _log_special(e, x, _log_finish(e, ef, hi, lo, base))


def _f_log(e: _E, x):
    """log: exponent/mantissa split (m in [sqrt(1/2), sqrt(2))), s = f/(2+f) series
    with minimax R(s^2).  One division.  Max error 0.8 ulp (f32) / 0.7 ulp (f64)."""
    return _logb(e, x, "e")


def _f_log2(e: _E, x):
    """log2: as log, the mantissa part multiplied by 1/ln2 in extended precision.
    Max error 0.8 ulp (f32) / 0.8 ulp (f64)."""
    return _logb(e, x, "2")


def _f_log10(e: _E, x):
    """log10: as log2 with 1/ln10 and a split log10(2).
    Max error 0.7 ulp (f32) / 0.8 ulp (f64)."""
    return _logb(e, x, "10")


def _two_sum_1(e: _E, y):
    """u + c == 1 + y exactly (Fast2Sum with operands ordered by magnitude)."""
    big = e.gt(e.abs(y), 1.0)
    a = e.sel(big, y, 1.0)
    b = e.sel(big, 1.0, y)
    u = e.add(a, b)
    return u, e.add(e.sub(a, u), b)


def _log1p_parts(e: _E, u, c, eoff=None):
    """log(u + c) (+ eoff*ln2 via ef) for a tiny correction c: log(u) + c/u."""
    ef, hi, lo = _log_parts(e, u)
    if c is not None:
        lo = e.add(lo, e.div(c, u))
    if eoff is not None:
        ef = e.add(ef, eoff)
    return ef, hi, lo


def _f_log1p(e: _E, x):
    """log1p: u = 1+x rounded, the rounding error c recovered exactly; log(u) + c/u.
    Max error 0.8 ulp (f32) / 0.7 ulp (f64)."""
    u, c = _two_sum_1(e, x)
    ef, hi, lo = _log1p_parts(e, u, c)
    res = _log_special(e, u, _log_finish(e, ef, hi, lo, "e"))
    return e.sel(e.eq(x, 0.0), x, res)


def _f_arcsinh(e: _E, x):
    """arcsinh(|x|) = log1p(a + a^2/(1+sqrt(1+a^2))) (no cancellation near 0);
    log(a) + ln2 once a^2 swamps 1.  Sign copied.
    Max error 1.5 ulp (f32) / 1.5 ulp (f64)."""
    a = e.abs(x)
    big = e.gt(a, 2.0 ** (e.k.p // 2 + 1))
    sq = e.sqrt(e.fma(a, a, 1.0))
    y = e.add(a, e.div(e.mul(a, a), e.add(sq, 1.0)))
    us, cs = _two_sum_1(e, y)
    u = e.sel(big, a, us)
    c = e.sel(big, 0.0, cs)
    ef, hi, lo = _log1p_parts(e, u, c, e.sel(big, 1.0, 0.0))
    res = _log_special(e, u, _log_finish(e, ef, hi, lo, "e"))
    return e.copysign(res, x)


def _f_arccosh(e: _E, x):
    """arccosh = log1p(y), y = t + sqrt(t^2 + 2t), t = x-1 exact near 1, with y carried
    as (hi, lo) (sqrt and sum errors recovered); log(x) + ln2 for large x; nan below 1.
    Max error 0.7 ulp (f32) / 0.7 ulp (f64)."""
    t = e.sub(x, 1.0)
    big = e.gt(x, 2.0 ** (e.k.p // 2 + 1))
    t2 = e.add(t, t)
    w = e.fma(t, t, t2)
    wlo = e.fma(t, t, e.sub(t2, w))                   # exact while t^2 << 2t
    sq = e.sqrt(w)
    sqlo = e.div(e.add(e.fma(e.neg(sq), sq, w), wlo), e.add(sq, sq))
    sqlo = e.sel(e.gt(sq, 0.0), sqlo, 0.0)
    y = e.add(t, sq)
    ylo = e.add(e.add(e.sub(sq, y), t), sqlo)         # Fast2Sum, sq >= t
    us, cs = _two_sum_1(e, y)
    u = e.sel(big, x, us)
    c = e.sel(big, 0.0, e.add(cs, ylo))
    ef, hi, lo = _log1p_parts(e, u, c, e.sel(big, 1.0, 0.0))
    res = _log_special(e, u, _log_finish(e, ef, hi, lo, "e"))
    return e.sel(e.lt(x, 1.0), math.nan, res)


def _f_arctanh(e: _E, x):
    """arctanh(|x|) = log1p(y)/2, y = 2a/(1-a), written as 2a + 2a*a/(1-a) for a < 1/2
    (exact leading term).  Sign copied.  Max error 1.5 ulp (f32) / 1.5 ulp (f64)."""
    a = e.abs(x)
    q = e.div(a, e.sub(1.0, a))
    a2 = e.add(a, a)
    y = e.sel(e.lt(a, 0.5), e.fma(a2, q, a2), e.add(q, q))
    u, c = _two_sum_1(e, y)
    ef, hi, lo = _log1p_parts(e, u, c)
    res = _log_special(e, u, _log_finish(e, ef, hi, lo, "e"))
    return e.copysign(e.mul(res, 0.5), x)


# ---------------------------------------------------------------------------
# trigonometric
# ---------------------------------------------------------------------------
# Beyond these |x| the Cody-Waite reduction is not accurate enough: libm slow path.
_TRIG_BOUND = {False: 2.0 ** 17, True: 2.0 ** 21}


def _trig_reduce(e: _E, x):
    """x = k*pi/2 + (hi + lo), |hi| <= ~pi/4.  Returns (k as int, hi, lo).

    f64: P1 (53 bits) makes x - k*P1 exact; k*P2 is exact (P2 has 32 bits, |k| < 2^21),
    so the rounding error of r1 - k*P2 is recovered exactly with TwoSum; P3 is folded
    into the tail.  f32: three-part fma chain, tail ignored."""
    k = e.k
    kf, ki = e.round_shift_fma(x, k.two_over_pi)
    p1, p2, p3 = k.pio2
    r1 = e.fma(kf, -p1, x)
    if not e.dbl:
        r = e.fma(kf, -p2, r1)
        return ki, e.fma(kf, -p3, r), None
    b = e.mul(kf, -p2)
    r2 = e.add(r1, b)
    bb = e.sub(r2, r1)
    err = e.add(e.sub(r1, e.sub(r2, bb)), e.sub(b, bb))
    t = e.fma(kf, -p3, err)
    hi = e.add(r2, t)
    lo = e.add(e.sub(r2, hi), t)
    return ki, hi, lo


def _sin_cos_poly(e: _E, hi, lo):
    """(sin, cos) of hi+lo on |hi| <= pi/4: minimax odd/even polynomials in z = hi^2
    (rel. 2^-32 / 2^-58), first-order correction for lo, cos as (1 - z/2) plus the exact
    rounding errors of 1 - z/2 and of z, plus the tail."""
    z = e.mul(hi, hi)
    corr = e.mul(e.mul(hi, z), e.poly(z, _cf(e, "SIN_S")))
    if lo is not None:
        corr = e.add(corr, e.fma(e.mul(z, -0.5), lo, lo))      # lo * cos(hi)
    sin = e.add(hi, corr)
    hz = e.mul(z, 0.5)
    w = e.sub(1.0, hz)
    tail = e.mul(e.mul(z, z), e.poly(z, _cf(e, "COS_C")))
    tail = e.fma(e.fma(hi, hi, e.neg(z)), -0.5, tail)
    if lo is not None:
        tail = e.fma(e.neg(hi), lo, tail)                      # - lo * sin(hi)
    return sin, e.add(w, e.add(e.sub(e.sub(1.0, w), hz), tail))


def _libm_name(name: str, dbl: bool) -> str:
    return name if dbl else name + "f"


def _slow_path(e: _E, mask, res, libm: str, args):
    """Recompute the lanes in `mask` with the scalar libm function in a separate,
    rarely taken block; returns the merged value, builder left in the merge block."""
    b = e.b
    if b.block.is_terminated:
        raise ValueError("mathlib.emit: builder must be at the end of an unterminated block")
    fn = b.function
    module = e.module
    callee = _declare(module, libm, e.st, [e.st] * len(args))
    if e.n is None:
        anyv = mask
    else:
        anyv = b.call(_declare(module, f"llvm.vector.reduce.or.{_suffix(mask.type)}",
                               ir.IntType(1), [mask.type]), [mask])
    head = b.block
    slow = fn.append_basic_block(name=f"mathlib.{libm}.slow")
    merge = fn.append_basic_block(name=f"mathlib.{libm}.merge")
    br = b.cbranch(anyv, slow, merge)
    br.set_weights([1, 1000])
    b.position_at_end(slow)
    if e.n is None:
        out = b.call(callee, args)
    else:
        out = res
        i32 = ir.IntType(32)
        for i in range(e.n):
            idx = ir.Constant(i32, i)
            lane = b.call(callee, [b.extract_element(a, idx) for a in args])
            keep = b.extract_element(res, idx)
            out = b.insert_element(out, b.select(b.extract_element(mask, idx), lane, keep), idx)
    slow_end = b.block
    b.branch(merge)
    b.position_at_end(merge)
    phi = b.phi(e.ty)
    phi.add_incoming(res, head)
    phi.add_incoming(out, slow_end)
    return phi


def _trig(e: _E, x, which: str):
    a = e.abs(x)
    ok = e.le(a, _TRIG_BOUND[e.dbl])
    xs = e.sel(ok, x, 0.0)                       # nan/inf/huge lanes: harmless input
    ki, hi, lo = _trig_reduce(e, xs)
    if which == "tan":
        z = e.mul(hi, hi)
        corr = e.mul(e.mul(hi, z), e.poly(z, _cf(e, "TAN_T")))
        if lo is not None:
            corr = e.fma(lo, e.add(z, 1.0), corr)   # d tan = lo * (1 + tan^2)
        t = e.add(hi, corr)
        tlo = e.add(e.sub(hi, t), corr)
        # odd k: -1/(t + tlo) = q0 + q0*(q0*t + 1 + tlo*q0), q0 = -1/t
        q0 = e.div(-1.0, t)
        resid = e.fma(q0, t, 1.0)
        cot = e.fma(q0, e.fma(tlo, q0, resid), q0)
        odd = e.b.icmp_signed("!=", e.iand(ki, 1), e.ci(0))
        res = e.sel(odd, cot, t)
    else:
        if which == "cos":
            ki = e.iadd(ki, 1)                   # cos(x) = sin(x + pi/2)
        s, c = _sin_cos_poly(e, hi, lo)
        swap = e.b.icmp_signed("!=", e.iand(ki, 1), e.ci(0))
        res = e.sel(swap, c, s)
        res = e.xorsign(res, e.shl(e.iand(ki, 2), e.k.bits - 2))
    if which != "cos":
        res = e.sel(e.eq(x, 0.0), x, res)         # keep -0
    res = e.sel(ok, res, e.sub(x, x))            # inf -> nan, nan -> nan
    slow = e.and_(e.gt(a, _TRIG_BOUND[e.dbl]), e.lt(a, math.inf))
    return _slow_path(e, slow, res, _libm_name(which, e.dbl), [x])


def _f_sin(e: _E, x):
    """sin: Cody-Waite reduction by pi/2 (3 parts; f64 with exact TwoSum tail),
    sin/cos minimax polynomials on |r| <= pi/4, quadrant by select + sign xor.
    |x| > 2^17 (f32) / 2^21 (f64): libm slow path.
    Max error 1.5 ulp (f32) / 0.8 ulp (f64)."""
    return _trig(e, x, "sin")


def _f_cos(e: _E, x):
    """cos: as sin with the quadrant shifted by one.
    Max error 1.5 ulp (f32) / 0.8 ulp (f64)."""
    return _trig(e, x, "cos")


def _f_tan(e: _E, x):
    """tan: reduction as sin; tan(r) = r + r^3 T(r^2) (minimax); odd quadrants
    -1/tan(r) with one division plus a residual correction.  float32 keeps no tail of
    the reduced argument, whose rounding tan's conditioning near pi/4 amplifies.
    Max error 2.1 ulp (f32) / 1.3 ulp (f64)."""
    return _trig(e, x, "tan")


# ---------------------------------------------------------------------------
# inverse trigonometric
# ---------------------------------------------------------------------------
def _atan_poly(e: _E, u):
    """atan(u) - u on |u| <= tan(pi/8): u^3 A(u^2) (minimax, rel. 2^-30 / 2^-59)."""
    z = e.mul(u, u)
    return e.mul(e.mul(u, z), e.poly(z, _cf(e, "ATAN_A")))


def _sum_pio4(e: _E, j, s, u, small):
    """j*pi/4 + s*(u + small), j in 0..4 (float), s = +-1: hi part summed with an
    exact Fast2Sum (|j*pi/4| >= |u| whenever j != 0)."""
    chi, clo = e.k.pio4_t
    K = e.mul(j, chi)                              # exact: chi has 3 trailing zero bits
    su = e.mul(s, u)
    w = e.add(K, su)
    err = e.add(e.sub(K, w), su)
    return e.add(w, e.add(err, e.fma(j, clo, e.mul(s, small))))


def _atan2_core(e: _E, ay, ax, xneg):
    """angle of (ax, ay) for ax, ay >= 0 (or x < 0 mirrored by `xneg`), in [0, pi].

    n = min, d = max; n <= tan(pi/8) d: u = n/d; else u = (n-d)/(n+d), +pi/4.  One
    division.  float64 also keeps n-d and n+d exact as (hi, lo) pairs and adds u_lo from
    the exact division residual.  Then |y| > |x|: pi/2 - t; x < 0: pi - t."""
    k = e.k
    swap = e.gt(ay, ax)
    n = e.sel(swap, ax, ay)
    d = e.sel(swap, ay, ax)
    # scale so that d*tan(pi/8) does not underflow and n+d does not overflow
    tiny = 2.0 ** (-(k.bias // 2))
    up = e.lt(d, tiny)
    sc = e.sel(up, 1.0 / tiny, e.sel(e.gt(d, 1.0), 0.5, 1.0))
    ns, ds = e.mul(n, sc), e.mul(d, sc)
    mid = e.or_(e.gt(ns, e.mul(ds, 0.41421356237309503)), e.eq(n, math.inf))
    nsub = e.sub(ns, ds)
    nadd = e.add(ns, ds)
    num = e.sel(mid, nsub, e.sel(up, ns, n))
    den = e.sel(mid, nadd, e.sel(up, ds, d))
    if e.dbl:
        num_lo = e.sel(mid, e.add(e.sub(e.neg(ds), nsub), ns), 0.0)   # Fast2Sum, ds >= ns
        den_lo = e.sel(mid, e.add(e.sub(ds, nadd), ns), 0.0)
        rden = e.div(1.0, den)
        u = e.mul(num, rden)
        resid = e.fma(e.neg(u), den, num)              # exact for a faithful quotient
        ulo = e.mul(e.fma(e.neg(u), den_lo, e.add(resid, num_lo)), rden)
        bad = e.isnan(u)                               # 0/0 and inf/inf
        u = e.sel(bad, 0.0, u)
        ulo = e.sel(e.or_(bad, e.isnan(ulo)), 0.0, ulo)
        z = e.mul(u, u)
        small = e.add(_atan_poly(e, u), e.fma(ulo, e.neg(z), ulo))   # + u_lo / (1 + u^2)
    else:
        u = e.div(num, den)                            # float32: speed, no u_lo
        u = e.sel(e.isnan(u), 0.0, u)
        small = _atan_poly(e, u)
    j = e.sel(mid, 1.0, 0.0)
    s = e.c(1.0)
    j = e.sel(swap, e.sub(2.0, j), j)
    s = e.sel(swap, -1.0, s)
    if xneg is not None:
        j = e.sel(xneg, e.sub(4.0, j), j)
        s = e.sel(xneg, e.neg(s), s)
    return _sum_pio4(e, j, s, u, small)


def _f_arctan(e: _E, x):
    """arctan: atan2(|x|, 1) core: reduction to |u| <= tan(pi/8) with one division,
    minimax odd polynomial, multiples of pi/4 added in extended precision; sign copied.
    Max error 1.9 ulp (f32) / 0.7 ulp (f64)."""
    a = e.abs(x)
    res = _atan2_core(e, a, e.c(1.0), None)
    res = e.sel(e.isnan(x), x, res)
    return e.copysign(res, x)


def _f_arctan2(e: _E, y, x):
    """arctan2: same core on (|x|, |y|), quadrant from sign(x) (incl. -0), sign of y
    copied; C99 special cases (zeros, infinities) fall out of the core.
    Max error 1.9 ulp (f32) / 0.7 ulp (f64)."""
    res = _atan2_core(e, e.abs(y), e.abs(x), e.signbit(x))
    res = e.sel(e.or_(e.isnan(x), e.isnan(y)), e.add(x, y), res)
    return e.copysign(res, y)


def _asin_parts(e: _E, x):
    """|x| <= 1/2: s = |x|, z = x^2; else z = (1-|x|)/2 (exact), s = sqrt(z) (+ s_lo);
    p = s + s z A(z) ~ asin(s) with one minimax polynomial for both branches."""
    a = e.abs(x)
    big = e.gt(a, 0.5)
    z = e.sel(big, e.mul(e.sub(1.0, a), 0.5), e.mul(a, a))
    sq = e.sqrt(z)
    s = e.sel(big, sq, a)
    # sqrt rounding error: s_lo = (z - s^2) / (2s)
    slo = e.div(e.fma(e.neg(sq), sq, z), e.add(sq, sq))
    slo = e.sel(e.and_(big, e.gt(sq, 0.0)), slo, 0.0)
    small = e.add(slo, e.mul(e.mul(s, z), e.poly(z, _cf(e, "ASIN_A"))))
    return big, s, small


def _sum_k(e: _E, khl, c, s, small):
    """K + c*(s + small) with K = khl (hi, lo) per lane, |K| >= |c*s| or K == 0."""
    khi, klo = khl
    cs = e.mul(c, s)
    w = e.add(khi, cs)
    err = e.add(e.sub(khi, w), cs)
    return e.add(w, e.add(err, e.fma(c, small, klo)))


def _f_arcsin(e: _E, x):
    """arcsin: |x| <= 1/2 odd minimax polynomial; else pi/2 - 2 asin(sqrt((1-|x|)/2))
    with the sqrt rounding error corrected.
    Max error 0.7 ulp (f32) / 0.7 ulp (f64)."""
    big, s, small = _asin_parts(e, x)
    h, l = e.k.pio2_hl
    K = (e.sel(big, h, 0.0), e.sel(big, l, 0.0))
    res = _sum_k(e, K, e.sel(big, -2.0, 1.0), s, small)
    return e.copysign(res, x)


def _f_arccos(e: _E, x):
    """arccos: pi/2 - asin(x) for |x| <= 1/2, 2 asin(sqrt((1-x)/2)) for x > 1/2,
    pi - 2 asin(sqrt((1+x)/2)) for x < -1/2.  Max error 0.6 ulp (f32) / 0.7 ulp (f64)."""
    big, s, small = _asin_parts(e, x)
    neg = e.lt(x, 0.0)
    h2, l2 = e.k.pio2_hl
    hp, lp = e.k.pi_hl
    khi = e.sel(big, e.sel(neg, hp, 0.0), h2)
    klo = e.sel(big, e.sel(neg, lp, 0.0), l2)
    c = e.sel(big, e.sel(neg, -2.0, 2.0), e.sel(neg, 1.0, -1.0))
    return _sum_k(e, (khi, klo), c, s, small)


# ---------------------------------------------------------------------------
# erf, cbrt
# ---------------------------------------------------------------------------
def _f_erf(e: _E, x):
    """erf: |x| < 1: x + x Q(x^2) (minimax); |x| >= 1: 1 - exp(-x^2) G(|x|-1) with
    G ~ erfc(x) e^(x^2) a minimax polynomial weighted by e^(-x^2) on [1, 3.95] / [1, 6],
    x^2 split exactly so exp(-x^2) keeps full accuracy.
    Max error 1.0 ulp (f32) / 1.1 ulp (f64)."""
    a = e.abs(x)
    z = e.mul(a, a)
    small = e.fma(a, e.poly(z, _cf(e, "ERF_S")), a)
    ac = e.min_c(a, 3.95 if not e.dbl else 6.0)
    q = e.mul(ac, ac)
    qlo = e.fma(ac, ac, e.neg(q))
    E = _exp_core(e, e.neg(q))
    E = e.fma(e.neg(E), qlo, E)                        # e^-(q+qlo) = e^-q (1 - qlo)
    G = e.poly(e.sub(ac, 1.0), _cf(e, "ERFC_G"))
    big = e.fma(e.neg(E), G, 1.0)
    return e.copysign(e.sel(e.lt(a, 1.0), small, big), x)


def _f_cbrt(e: _E, x):
    """cbrt: |x| = 2^(3q+j) m, m in [1,2): y0 = P(m) cbrt(2^j) (minimax, rel. 2^-16.7 /
    2^-22.5), one Halley step y0 + y0 (v - y0^3)/(2 y0^3 + v) with v - y0^3 computed
    from an exact y0^2; 2^q by exponent bits.
    Max error 0.5 ulp (f32) / 0.5 ulp (f64)."""
    k = e.k
    a = e.abs(x)
    den = e.lt(a, k.min_normal)
    sc = 3 * ((k.p + 2) // 3)                          # multiple of 3 >= p
    a = e.sel(den, e.mul(a, 2.0 ** sc), a)
    ia = e.bits(a)
    ef = e.itof(e.isub(e.ashr(ia, k.mant), k.bias))
    ef = e.sel(den, e.sub(ef, float(sc)), ef)
    m = e.flt(e.b.or_(e.iand(ia, k.mant_mask), e.ci(k.one_bits)))
    qf = e.floor(e.mul(e.add(ef, 0.5), 1.0 / 3.0))   # robust floor(ef/3) for integers
    j = e.sub(ef, e.mul(qf, 3.0))
    y0 = e.mul(e.poly(m, _cf(e, "CBRT_0")), e.sel(e.eq(j, 0.0), 1.0, e.sel(e.eq(j, 1.0), k.cbrt2, k.cbrt4)))
    v = e.mul(m, e.sel(e.eq(j, 0.0), 1.0, e.sel(e.eq(j, 1.0), 2.0, 4.0)))
    y2 = e.mul(y0, y0)
    y2lo = e.fma(y0, y0, e.neg(y2))
    y3 = e.mul(y2, y0)
    num = e.fma(e.neg(y2lo), y0, e.fma(e.neg(y2), y0, v))   # v - y0^3, accurately
    corr = e.div(num, e.fma(y3, 2.0, v))
    y = e.fma(y0, corr, y0)
    qi = e.b.fptosi(qf, e.ity)
    res = e.copysign(e.mul(y, e.pow2i(qi)), x)
    special = e.b.fcmp_unordered("==", e.add(x, x), x)      # 0, inf, nan
    return e.sel(special, x, res)


# ---------------------------------------------------------------------------
# power
# ---------------------------------------------------------------------------
_POW_TAB_BITS = 6


@functools.lru_cache(maxsize=None)
def _pow_table():
    """64 intervals of m in [sqrt(1/2), sqrt(2)) indexed by the top 6 mantissa bits of
    the offset representation: c ~ 1/m with 7 significant bits, so r = m*c - 1 is exact
    in one fma (|r| < 0.0117 < 2^-6), and -log(c) as a double-double."""
    k = _KS[True]
    sh = 52 - _POW_TAB_BITS
    cs, lhi, llo = [], [], []
    for j in range(1 << _POW_TAB_BITS):
        lo = _i2f(k.sqh_bits + (j << sh))
        hi = _i2f(k.sqh_bits + ((j + 1) << sh) - 1)
        if lo <= 1.0 <= hi:
            c = 1.0
        else:
            c = _round_sig(_Fr(2) / (_Fr(lo) + _Fr(hi)), 7)
        L = -_D.ln(decimal.Decimal(c))
        h = float(L)
        cs.append(c)
        lhi.append(h)
        llo.append(float(L - decimal.Decimal(h)))
    return tuple(cs + lhi + llo)


def _table_lookup(e: _E, values, idx, name):
    """values[idx] for an int vector idx: masked.gather on vectors, load on scalars."""
    module = e.module
    arrty = ir.ArrayType(e.st, len(values))
    gv = module.globals.get(name)
    if gv is None:
        gv = ir.GlobalVariable(module, arrty, name)
        gv.initializer = ir.Constant(arrty, list(values))
        gv.global_constant = True
        gv.linkage = "internal"
    b = e.b
    i64 = ir.IntType(64)
    if e.n is None:
        return b.load(b.gep(gv, [ir.Constant(i64, 0), idx]))
    # lane addresses as integers (llvmlite types a GEP with a vector index as a scalar
    # pointer), then one gather; the 4-argument form is auto-upgraded by newer LLVMs
    i32 = ir.IntType(32)
    undef = ir.Constant(e.ity, ir.Undefined)
    base = b.insert_element(undef, b.ptrtoint(gv, i64), ir.Constant(i32, 0))
    base = b.shuffle_vector(base, undef, ir.Constant(ir.VectorType(i32, e.n), [0] * e.n))
    ptrty = ir.VectorType(ir.PointerType(e.st), e.n)
    ptrs = b.inttoptr(b.add(base, b.mul(idx, e.ci(8))), ptrty)
    g = _declare(module, f"llvm.masked.gather.{_suffix(e.ty)}.v{e.n}p0", e.ty,
                 [ptrty, i32, e.bty, e.ty])
    return b.call(g, [ptrs, ir.Constant(i32, 8), e.cb(True), ir.Constant(e.ty, ir.Undefined)])


def _log_dd(e: _E, a):
    """log(a) as a double-double (hi, lo) with relative error ~2^-66 (f64 only):
    a = 2^ef m, m = c^-1 (1 + r) with a 64-entry table, log1p(r) = r - r^2/2 + r^3 P(r)."""
    k = e.k
    den = e.lt(a, k.min_normal)
    a = e.sel(den, e.mul(a, 2.0 ** 54), a)
    ix = e.iadd(e.bits(a), k.one_bits - k.sqh_bits)
    ef = e.itof(e.isub(e.ashr(ix, 52), k.bias))
    ef = e.sel(den, e.sub(ef, 54.0), ef)
    mb = e.iand(ix, k.mant_mask)
    m = e.flt(e.iadd(mb, k.sqh_bits))
    j = e.b.lshr(mb, e.ci(52 - _POW_TAB_BITS))
    tab = _pow_table()
    nt = 1 << _POW_TAB_BITS
    c = _table_lookup(e, tab, j, "__jitensor_mathlib_pow_tab")
    j2 = e.iadd(j, nt)
    lhi = _table_lookup(e, tab, j2, "__jitensor_mathlib_pow_tab")
    llo = _table_lookup(e, tab, e.iadd(j, 2 * nt), "__jitensor_mathlib_pow_tab")
    r = e.fma(m, c, -1.0)                                  # exact
    # A = ef*ln2 + Lhi (Fast2Sum: |ef*ln2| > |Lhi| unless ef == 0)
    l2hi, l2lo = k.ln2_t
    ea = e.mul(ef, l2hi)
    A = e.add(ea, lhi)
    Alo = e.add(e.sub(ea, A), lhi)
    # B = A + r (TwoSum: no magnitude order known)
    B = e.add(A, r)
    bb = e.sub(B, A)
    Blo = e.add(e.sub(A, e.sub(B, bb)), e.sub(r, bb))
    # C = B - r^2/2 (Fast2Sum: |B| >= r^2/2 because |B| ~ |log a| >= |r| or B == r)
    p = e.mul(r, r)
    plo = e.fma(r, r, e.neg(p))
    hp = e.mul(p, -0.5)
    C = e.add(B, hp)
    Clo = e.add(e.sub(B, C), hp)
    r3 = e.mul(p, r)
    tail = e.mul(r3, e.poly(r, _COEF["POW_LOG1P_P"][1]))
    tail = e.add(tail, e.fma(plo, -0.5, e.add(Alo, Blo)))
    tail = e.add(tail, e.fma(ef, l2lo, llo))
    tail = e.add(tail, Clo)
    hi = e.add(C, tail)
    lo = e.add(e.sub(C, hi), tail)
    return hi, lo


def _pow_magnitude64(e: _E, a, y):
    """exp(y * log(a)) for a >= 0 in double-double, f64."""
    lh, ll = _log_dd(e, a)
    fin = e.and_(e.gt(a, 0.0), e.lt(a, math.inf))
    lh = e.sel(fin, lh, e.sel(e.eq(a, 0.0), -math.inf, a))   # 0 -> -inf, inf/nan as is
    ll = e.sel(fin, ll, 0.0)
    th = e.mul(y, lh)
    tl = e.fma(y, lh, e.neg(th))
    tl = e.fma(y, ll, tl)
    tl = e.sel(e.lt(e.abs(th), 1.0e4), tl, 0.0)                 # inf*... would give nan
    tc = e.max_c(e.min_c(th, 720.0), -760.0)
    kf, ki = e.round_shift_fma(tc, e.k.log2e)
    hi, lo = e.k.ln2
    r1 = e.fma(kf, -hi, tc)                                     # exact
    rl = e.fma(kf, -lo, tl)
    r = e.add(r1, rl)
    z = e.mul(r, r)
    em1 = e.add(r1, e.fma(z, e.poly(r, _COEF["EXPM1_Q"][1]), rl))
    return e.ldexp2(e.add(em1, 1.0), ki)


def _pow_magnitude32(e: _E, a, y):
    """exp2(y * log2(a)) in f64 arithmetic for float32 inputs: ~2^-40 relative before
    the final rounding to float32."""
    k = e.k
    den = e.lt(a, k.min_normal)        # float32 denormals are normal in f64; a may be 0
    ix = e.iadd(e.bits(a), k.one_bits - k.sqh_bits)
    ef = e.itof(e.isub(e.ashr(ix, 52), k.bias))
    m = e.flt(e.iadd(e.iand(ix, k.mant_mask), k.sqh_bits))
    f = e.sub(m, 1.0)
    s = e.div(f, e.add(f, 2.0))
    z = e.mul(s, s)
    l1p = e.fma(e.mul(s, z), e.poly(z, _COEF["POW32_LOG_T"][1]), e.add(s, s))
    L = e.fma(l1p, k.log2e, ef)
    L = e.sel(den, -math.inf, L)                 # a == 0 (f32 inputs are never f64-denormal)
    L = e.sel(e.eq(a, math.inf), math.inf, L)
    L = e.sel(e.isnan(a), a, L)
    t = e.mul(y, L)
    tc = e.max_c(e.min_c(t, 200.0), -200.0)
    kf, ki = e.round_shift(tc)
    r = e.sub(tc, kf)
    p = e.fma(r, e.poly(r, _COEF["POW32_EXP2_Q"][1]), 1.0)
    return e.mul(p, e.pow2i(ki))


def _f_power(e: _E, x, y):
    """power: |x|^y = exp(y log|x|) with log in double-double (f64: 64-entry table +
    minimax log1p; f32: whole computation in f64), then C99/numpy special cases by
    select: x**0 = 1, 1**y = 1, (-1)**+-inf = 1, negative x needs integer y (odd y keeps
    the sign), zeros/infinities by the sign of y.
    Max error 0.5 ulp (f32) / 0.9 ulp (f64)."""
    if e.dbl:
        mag = _pow_magnitude64(e, e.abs(x), y)
    else:
        w = e.like(ir.DoubleType())
        xd, yd = e.b.fpext(x, w.ty), e.b.fpext(y, w.ty)
        mag = e.b.fptrunc(_pow_magnitude32(w, w.abs(xd), yd), e.ty)
    # special cases, in the argument type
    a = e.abs(x)
    yint = e.eq(e.rint(y), y)
    yh = e.mul(y, 0.5)
    yodd = e.and_(yint, e.une(e.rint(yh), yh))
    res = e.sel(e.and_(e.signbit(x), yodd), e.neg(mag), mag)
    negx = e.and_(e.lt(x, 0.0), e.gt(x, -math.inf))
    res = e.sel(e.and_(negx, e.not_(yint)), math.nan, res)
    one = e.or_(e.eq(y, 0.0), e.eq(x, 1.0))
    one = e.or_(one, e.and_(e.eq(a, 1.0), e.eq(e.abs(y), math.inf)))
    return e.sel(one, 1.0, res)

# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------
_FUNCS = {name: globals()["_f_" + name] for name in SUPPORTED}


def emit(builder: ir.IRBuilder, name: str, args: list) -> ir.Value:
    """Emit numpy's `name` applied to `args` (all of one float/double scalar or vector
    type) at the builder's position and return the result (same type).

    Only sin/cos/tan may add basic blocks (libm slow path for huge |x|); the builder
    is then left at the end of the new merge block, so callers must keep using
    `builder.block` rather than a block saved before the call."""
    fn = _FUNCS.get(name)
    if fn is None:
        raise ValueError(f"mathlib: unsupported function {name!r}")
    args = list(args)
    if len(args) != _NARGS.get(name, 1):
        raise ValueError(f"mathlib: {name} takes {_NARGS.get(name, 1)} argument(s), got {len(args)}")
    ty = args[0].type
    if any(a.type != ty for a in args):
        raise TypeError(f"mathlib: {name} arguments must share one type")
    return fn(_E(builder, ty), *args)
