"""Elementwise ops: arithmetic, comparisons, logic, activations and casts.

ONNX broadcasts like numpy and its binary ops take operands of one type, so numpy's promotion rules
are the identity here; where ONNX and numpy differ it is spelled out: integer Div truncates toward
zero, Mod follows its `fmod` attribute, Pow keeps the base's type.
"""
from __future__ import annotations

import math

import numpy as np

from ..registry import converter
from .common import dtype_of, is_int, onnx_dtype


def _binary(op_type, fn):
    converter(op_type)(lambda ctx, a, b: fn(a, b))


for _op, _fn in {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal, "Less": np.less,
                 "LessOrEqual": np.less_equal, "Greater": np.greater, "GreaterOrEqual": np.greater_equal,
                 "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
                 "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor}.items():
    _binary(_op, _fn)

_UNARY = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log, "Floor": np.floor,
          "Ceil": np.ceil, "Round": np.round, "Sign": np.sign, "Sin": np.sin, "Cos": np.cos, "Tan": np.tan,
          "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan, "Sinh": np.sinh, "Cosh": np.cosh,
          "Tanh": np.tanh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh, "Not": np.logical_not,
          "BitwiseNot": np.invert, "IsNaN": np.isnan}
for _op, _fn in _UNARY.items():
    converter(_op)(lambda ctx, x, _fn=_fn: _fn(x))


@converter("Div")
def div(ctx, a, b):
    if not is_int(a):
        return np.divide(a, b)
    q = np.floor_divide(a, b)  # numpy floors; ONNX (C) truncates toward zero
    return np.where((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)), q + 1, q).astype(dtype_of(a))


@converter("Mod")
def mod(ctx, a, b):
    if ctx.attr("fmod", 0):
        return np.fmod(a, b)
    if not is_int(a):
        raise ctx.error("Mod of floating-point tensors requires fmod=1")
    return np.remainder(a, b)


@converter("Pow")
def pow_(ctx, a, b):
    dt = dtype_of(a)
    if is_int(a) and not is_int(b):
        return np.power(np.asarray(a, np.float64) if isinstance(a, np.ndarray) else a.astype(np.float64),
                        b).astype(dt)
    if dtype_of(b) != dt:
        b = b.astype(dt) if not is_int(b) or is_int(a) else b
    return np.power(a, b).astype(dt)


@converter("Reciprocal")
def reciprocal(ctx, x):
    return np.reciprocal(x)


@converter("Max", "Min", "Sum", "Mean")
def variadic(ctx, *xs):
    fn = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[ctx.op_type]
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    if ctx.op_type == "Mean" and len(xs) > 1:
        out = (out / len(xs)).astype(dtype_of(xs[0]))
    return out


@converter("Where")
def where(ctx, c, a, b):
    return np.where(c, a, b)


@converter("Cast")
def cast(ctx, x):
    return x.astype(onnx_dtype(ctx, ctx.attr("to")))


@converter("CastLike")
def cast_like(ctx, x, like):
    return x.astype(dtype_of(like))


@converter("IsInf")
def isinf(ctx, x):
    neg, pos = ctx.attr("detect_negative", 1), ctx.attr("detect_positive", 1)
    if neg and pos:
        return np.isinf(x)
    if pos:
        return x == np.inf
    if neg:
        return x == -np.inf
    return np.zeros_like(x, dtype=bool)


# -- activations
@converter("Relu")
def relu(ctx, x):
    return np.maximum(x, 0)


@converter("LeakyRelu")
def leaky_relu(ctx, x):
    return np.where(x >= 0, x, x * ctx.attr("alpha", 0.01))


@converter("PRelu")
def prelu(ctx, x, slope):
    return np.where(x >= 0, x, x * slope)


@converter("Elu")
def elu(ctx, x):
    return np.where(x >= 0, x, ctx.attr("alpha", 1.0) * (np.exp(x) - 1))


@converter("Celu")
def celu(ctx, x):
    a = ctx.attr("alpha", 1.0)
    return np.maximum(x, 0) + np.minimum(0, a * (np.exp(x / a) - 1))


@converter("Selu")
def selu(ctx, x):
    a, g = ctx.attr("alpha", 1.67326319217681884765625), ctx.attr("gamma", 1.05070102214813232421875)
    return np.where(x > 0, g * x, g * (a * np.exp(x) - a))


@converter("ThresholdedRelu")
def thresholded_relu(ctx, x):
    return np.where(x > ctx.attr("alpha", 1.0), x, 0).astype(dtype_of(x))


@converter("Sigmoid")
def sigmoid(ctx, x):
    return 1 / (1 + np.exp(-x))


@converter("HardSigmoid")
def hard_sigmoid(ctx, x):
    return np.clip(x * ctx.attr("alpha", 0.2) + ctx.attr("beta", 0.5), 0, 1)


@converter("HardSwish")
def hard_swish(ctx, x):
    return x * np.clip(x * (1 / 6) + 0.5, 0, 1)


@converter("Softplus")
def softplus(ctx, x):
    return np.log(np.exp(x) + 1)


@converter("Softsign")
def softsign(ctx, x):
    return x / (1 + np.abs(x))


@converter("Mish")
def mish(ctx, x):
    return x * np.tanh(np.log1p(np.exp(x)))


@converter("Clip")
def clip_v1(ctx, x):
    return np.clip(x, ctx.attr("min", -np.inf), ctx.attr("max", np.inf)).astype(dtype_of(x))


@converter("Clip", since=11)
def clip(ctx, x, lo=None, hi=None):
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x


def erf(x):
    """erf from existing ops: a Taylor series below 0.5, Numerical Recipes' erfc (fractional error
    < 1.2e-7) above; float32-accurate."""
    a = np.abs(x)
    t = 1 / (1 + 0.5 * a)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    tail = 1 - t * np.exp(-a * a + poly)
    x2 = x * x
    series = x * (2 / math.sqrt(math.pi)) * (1 + x2 * (-1 / 3 + x2 * (1 / 10 + x2 * (-1 / 42 + x2 * (
        1 / 216 + x2 * (-1 / 1320 + x2 * (1 / 9360)))))))
    return np.where(a < 0.5, series, np.where(x < 0, -tail, tail))


@converter("Erf")
def erf_(ctx, x):
    return erf(x)


@converter("Gelu", since=20)
def gelu(ctx, x):
    if ctx.attr("approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))
