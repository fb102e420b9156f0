"""Algebraic simplification: identities that save work without changing numpy's results."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Graph, Node
from . import rewrite


def scalar_value(n: Node):
    """The value of a constant (possibly broadcast) whose elements are all one number, else None."""
    while n.op in ("broadcast", "reshape"):
        n = n.inputs[0]
    if n.op != "const":
        return None
    a = n.attr("value").array
    if a.size == 0:
        return None
    v = a.flat[0]
    return v if np.all(a == v) and not (a.dtype.kind == "f" and np.isnan(v)) else None


def simplify(graph: Graph) -> Graph:
    def f(n: Node) -> Node:
        if n.op == "power" and n.dtype.kind == "f":
            e = scalar_value(n.inputs[1])
            x = n.inputs[0]
            # x**2 and x**3 by multiplication (numpy's pow is ~1 ulp, products are <= 1.5 ulp)
            if e == 2:
                return ops.binary("multiply", x, x, n.dtype, n.where)
            if e == 3:
                return ops.binary("multiply", ops.binary("multiply", x, x, n.dtype), x, n.dtype, n.where)
            if e == 1:
                return x
            if e == 0.5:
                return ops.unary("sqrt", x, n.dtype, n.where)
        if n.op == "multiply" and n.dtype.kind == "f":
            for a, b in (n.inputs, n.inputs[::-1]):
                if scalar_value(b) == 1:
                    return a
        if n.op in ("add", "subtract") and n.dtype.kind in "iuf":
            b = n.inputs[1]
            v = scalar_value(b)
            # x + 0 is x for ints; for floats only x + (-0.0) is exact (-0.0 + 0.0 = 0.0)
            if v == 0 and (n.dtype.kind != "f" or (n.op == "add" and np.signbit(v)) or
                           (n.op == "subtract" and not np.signbit(v))):
                return n.inputs[0]
        if n.op == "divide" and n.dtype.kind == "f":
            v = scalar_value(n.inputs[1])
            if v is not None and v != 0 and np.isfinite(v):
                m, e = np.frexp(v)
                if m == 0.5:  # power of two: the reciprocal is exact, so x * (1/v) == x / v
                    inv = ops.broadcast(ops.const(np.array(1 / v, n.dtype)), n.shape)
                    return ops.binary("multiply", n.inputs[0], inv, n.dtype, n.where)
        if n.op == "cast" and n.inputs[0].op == "cast":
            inner = n.inputs[0]
            src = inner.inputs[0]
            # widening then casting back (or further) loses nothing: skip the middle
            if np.can_cast(src.dtype, inner.dtype, "safe") and np.can_cast(inner.dtype, n.dtype, "safe"):
                return ops.cast(src, n.dtype, n.where)
        return n
    return rewrite(graph, f)
