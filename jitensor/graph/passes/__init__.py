"""Graph passes: plain functions Graph -> Graph, run in the order of PIPELINE."""
from __future__ import annotations

from typing import Callable

from ..ir import Graph, Node


def rewrite(graph: Graph, fn: Callable[[Node], Node]) -> Graph:
    """Rebuild the graph bottom-up: each node gets its inputs' replacements, then `fn` may replace it."""
    new: dict[int, Node] = {}
    for n in graph.toposort():
        ins = tuple(new[id(i)] for i in n.inputs)
        m = n if all(a is b for a, b in zip(ins, n.inputs)) else Node(n.op, ins, n.attrs, n.type, n.where)
        new[id(n)] = fn(m)
    return Graph(tuple(new.get(id(i), i) for i in graph.inputs), tuple(new[id(o)] for o in graph.outputs))


def optimize(graph: Graph) -> Graph:
    from .cse import cse
    from .fold import fold_constants
    from .simplify import simplify
    from .sink import sink_views
    for p in (fold_constants, simplify, fold_constants, sink_views, cse):
        graph = p(graph)
    return graph
