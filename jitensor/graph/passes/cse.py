"""Common-subexpression elimination: structurally equal nodes become one."""
from __future__ import annotations

from ..ir import Graph, Node
from . import rewrite


def cse(graph: Graph) -> Graph:
    seen: dict[tuple, Node] = {}

    def f(n: Node) -> Node:
        if n.op == "input":
            return n
        return seen.setdefault(n.key(), n)
    return rewrite(graph, f)
