"""Sink layout changes below the elementwise work that follows a matmul.

A convolution lowered to GEMMs produces its output in the GEMM's layout and moves it to NCHW with a
transpose and a reshape; its bias, activation and residual add then run on the moved value:

    before:  %y = matmul(%w, %cols) : (OH, M, OW)          after:  %y = matmul(%w, %cols) : (OH, M, OW)
             %t = transpose(%y, (1, 0, 2)) : (M, OH, OW)            %r = maximum(%y, %z') : (OH, M, OW)
             %r = maximum(%t, %z) : (M, OH, OW)                     %t = transpose(%r, (1, 0, 2))

Elementwise work computes the same values in any layout, so it is moved to the product's side of the views
(its other operands viewed the inverse way, which is index arithmetic on their loads). The matmul's
consumer then has the matmul's shape, and fusion makes it the GEMM's epilogue (applied to each tile in
registers); the views are inlined into whatever reads the result. Only chains of reshape and transpose
over a matmul (or over elementwise work on its result in its layout) move; a value read elsewhere too
keeps its place.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Graph, Node, TensorType

_CHAIN = ("reshape", "transpose")


def _users(graph: Graph) -> dict[int, int]:
    n_users: dict[int, int] = {}
    for n in graph.toposort():
        for i in n.inputs:
            n_users[id(i)] = n_users.get(id(i), 0) + 1
    for o in graph.outputs:
        n_users[id(o)] = n_users.get(id(o), 0) + 1
    return n_users


def _chain(v: Node, n_users: dict, sunk: set):
    """The view ops from v down to a matmul (or sunk work), top first, if every link is read only once."""
    links = []
    while v.op in _CHAIN:
        if n_users.get(id(v), 0) != 1:
            return None
        links.append(v)
        v = v.inputs[0]
    if not links or (v.op != "matmul" and id(v) not in sunk) or n_users.get(id(v), 0) != 1:
        return None
    return links, v


def _inverse(o: Node, links: list[Node]) -> Node:
    """o (the top of the chain's shape) viewed back to the shape at the chain's base."""
    for link in links:
        below = link.inputs[0]
        if link.op == "transpose":
            o = ops.transpose(o, np.argsort(link.attr("perm")), o.where)
        else:
            o = ops.reshape(o, below.shape, o.where)
    return o


def _redo(links: list[Node], base: Node) -> Node:
    """The chain's views applied to a new base, bottom first."""
    v = base
    for link in reversed(links):
        v = ops.transpose(v, link.attr("perm"), link.where) if link.op == "transpose" else \
            ops.reshape(v, link.shape, link.where)
    return v


def sink_views(graph: Graph) -> Graph:
    n_users = _users(graph)
    new: dict[int, Node] = {}
    sunk: set[int] = set()
    for n in graph.toposort():
        ins = tuple(new[id(i)] for i in n.inputs)
        m = n if all(a is b for a, b in zip(ins, n.inputs)) else Node(n.op, ins, n.attrs, n.type, n.where)
        n_users[id(m)] = n_users.get(id(n), 0)  # a rebuilt node has its original's readers
        if ops.kind(n) == "elementwise":
            for k, v in enumerate(ins):
                found = _chain(v, n_users, sunk)
                if found is None:
                    continue
                links, base = found
                args = tuple(base if j == k else _inverse(a, links) for j, a in enumerate(ins))
                work = Node(n.op, args, n.attrs, TensorType(base.shape, n.dtype), n.where)
                sunk.add(id(work))
                m = _redo(links, work)
                n_users[id(work)] = 1  # read by the rebuilt chain alone...
                for link in _nodes_of(m, work):
                    n_users[id(link)] = 1
                n_users[id(m)] = n_users.get(id(n), 0)  # ...whose top is read where n was
                break
            else:  # work on a matmul's result in its own layout: a base that later views may sink onto too
                if any((i.op == "matmul" or id(i) in sunk) and i.shape == n.shape for i in ins):
                    sunk.add(id(m))
        new[id(n)] = m
    return Graph(tuple(new.get(id(i), i) for i in graph.inputs), tuple(new[id(o)] for o in graph.outputs))


def _nodes_of(top: Node, base: Node):
    while top is not base:
        yield top
        top = top.inputs[0]
