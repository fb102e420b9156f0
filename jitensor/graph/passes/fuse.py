"""Fusion: choose which nodes get a buffer; every other node is inlined into its consumers' loops.

A *group* is one materialized node (its kernel's output) plus the tree of elementwise and
injective producers inlined into it as index arithmetic, so chains like GELU become one loop
with no temporaries, and a reduction absorbs its elementwise prologue (sum((x - mu)**2) reads x
once). A node is materialized when inlining would repeat real work:
  - graph outputs, and ops that need whole-array loops: reduce, matmul, cumsum;
  - nodes read by several consumers, or stretched by a broadcast, unless they are cheap to
    recompute (a few arithmetic ops over buffers);
  - operands of matmul that do arithmetic (matmul reads each element many times).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from ..ir import Graph, Node

ANCHORS = frozenset({"reduce", "matmul", "cumsum"})
EXPENSIVE = frozenset({"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin",
                       "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
                       "power", "hypot", "cbrt", "sigmoid", "divide", "floor_divide", "remainder", "fmod", "sqrt"})
RECOMPUTE_LIMIT = 6  # inline a shared node if its inlined tree costs at most this many simple ops


@dataclass(frozen=True)
class FusionPlan:
    materialized: frozenset[int]  # ids of nodes that own a buffer
    order: tuple[Node, ...]       # materialized non-source nodes in execution order (one kernel each)

    def groups(self, graph: Graph) -> dict[int, int]:
        """node id -> index of the kernel it is computed in (for dumps)."""
        out: dict[int, int] = {}
        for k, root in enumerate(self.order):
            stack = [root]
            while stack:
                n = stack.pop()
                if id(n) in out:
                    continue
                out[id(n)] = k
                stack.extend(i for i in n.inputs if id(i) not in self.materialized and i.op not in ("input", "const"))
        return out


def inline_cost(n: Node, materialized: set, memo: dict) -> int:
    if id(n) in materialized or n.op in ("input", "const"):
        return 0
    if id(n) in memo:
        return memo[id(n)]
    own = 10 if n.op in EXPENSIVE else (3 if n.op in ("reshape", "gather", "concat", "set_slice") else 1)
    c = own + sum(inline_cost(i, materialized, memo) for i in n.inputs)
    memo[id(n)] = c
    return c


def plan_fusion(graph: Graph) -> FusionPlan:
    order = graph.toposort()
    users = graph.users()
    mat: set[int] = {id(o) for o in graph.outputs}
    for n in order:
        if n.op in ANCHORS:
            mat.add(id(n))
    # decide consumers first (reverse topological order) so costs see the final buffers below
    for n in reversed(order):
        if n.op in ("input", "const") or id(n) in mat:
            continue
        us = users.get(id(n), [])
        distinct = {id(u) for u in us}
        memo: dict = {}
        cost = inline_cost(n, mat, memo)
        stretched = any(u.op == "broadcast" and u.type.size > n.type.size for u in us)
        to_matmul = any(u.op == "matmul" for u in us) and any(
            ops.kind(m) == "elementwise" for m in _inlined_tree(n, mat))
        if to_matmul or (len(distinct) > 1 and cost > RECOMPUTE_LIMIT) or (stretched and cost > 2):
            mat.add(id(n))
    kernels = tuple(n for n in order if id(n) in mat and n.op not in ("input", "const"))
    return FusionPlan(frozenset(mat), kernels)


def _inlined_tree(n: Node, mat: set):
    stack, seen = [n], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield m
        stack.extend(i for i in m.inputs if id(i) not in mat and i.op not in ("input", "const"))
