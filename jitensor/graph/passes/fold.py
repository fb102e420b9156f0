"""Constant folding: ops whose inputs are all constants are evaluated with numpy at compile time."""
from __future__ import annotations

from .. import ops
from ..interp import evaluate
from ..ir import Graph, Node
from . import rewrite

MAX_FOLD_ELEMENTS = 1 << 16  # larger constant results stay as code: no big arrays baked into kernels


def fold_constants(graph: Graph) -> Graph:
    def f(n: Node) -> Node:
        if n.op in ("input", "const") or not n.inputs or not all(i.op == "const" for i in n.inputs):
            return n
        if n.op == "broadcast" or n.type.size > MAX_FOLD_ELEMENTS:
            return n  # broadcasting a constant costs nothing in a kernel; keep the constant small
        val = evaluate(n, [i.attr("value").array for i in n.inputs])
        return ops.const(val.astype(n.dtype, copy=False).reshape(n.shape), where=n.where)
    return rewrite(graph, f)
