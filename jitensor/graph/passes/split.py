"""Split reductions over leading axes into parallel partial reductions.

A reduction over the leading axes (a column sum `x.sum(axis=0)`, or every axis) walks the reduced
rows in order, accumulating into its output row: one thread, or, blocked by columns, threads that
each read a short run of every row. Splitting the first axis into PARTS groups gives
`reduce(reshape(x, (PARTS, n0 / PARTS, ...)), the same axes + 1)`, whose outer loop over groups
is parallel and streams through memory, then a reduction of the PARTS partial results. A fixed
PARTS (not the thread count) keeps the compiled code, and its disk cache entry, the same on every
machine. A full argmax/argmin splits the same way: row argmaxes of the parts, then the argmax of
their winning values.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Graph, Node
from . import rewrite

PARTS = (8, 16, 12, 10, 6, 4)  # the first that divides the reduced size
MIN_ROWS_PER_PART = 64
MIN_ELEMENTS = 1 << 16
KINDS = frozenset({"sum", "prod", "max", "min", "any", "all"})


def split_leading_reductions(graph: Graph) -> Graph:
    return rewrite(graph, _split)


def _split(n: Node) -> Node:
    if n.op == "reduce" and n.attr("kind") in ("argmax", "argmin"):
        return _split_arg(n)
    if n.op != "reduce" or n.attr("kind") not in KINDS:
        return n
    x = n.inputs[0]
    axes = n.attr("axes")
    if axes != tuple(range(len(axes))) or x.type.size < MIN_ELEMENTS:
        return n
    rows = int(np.prod(x.shape[:len(axes)], dtype=np.int64))
    # groups of whole slices of the first axis: the reshape stays plain index arithmetic
    parts = next((p for p in PARTS if x.shape[0] % p == 0 and rows // p >= MIN_ROWS_PER_PART), None)
    if parts is None:
        return n
    grouped = ops.reshape(x, (parts, x.shape[0] // parts) + x.shape[1:], where=n.where)
    # float32 partial sums stay float32 (float64 partials cost a third more time on a 4096x4096 column
    # sum): each runs over 1/PARTS of the rows, so they are at least as accurate as numpy's row-after-row
    # float32 sum; full reductions accumulate each part in float64 anyway (row style)
    partial = ops.reduce(grouped, n.attr("kind"), tuple(a + 1 for a in axes), n.dtype, where=n.where)
    total = ops.reduce(partial, n.attr("kind"), (0,), n.dtype, where=n.where)
    return ops.reshape(total, n.shape, where=n.where)


def _split_arg(n: Node) -> Node:
    """A full argmax/argmin (the frontend flattens the array: a 1-d reduction) as PARTS row argmaxes of
    `reshape(x, (PARTS, L))`, in parallel, then the argmax of the PARTS winning values: ties and NaN go to
    the earliest part, and within it to the first index, so the answer is numpy's first index."""
    x = n.inputs[0]
    if x.ndim != 1 or x.type.size < MIN_ELEMENTS:
        return n
    size = x.shape[0]
    parts = next((p for p in PARTS if size % p == 0 and size // p >= MIN_ROWS_PER_PART), None)
    if parts is None:
        return n
    kind, w, i64 = n.attr("kind"), n.where, np.dtype(np.int64)
    length = size // parts
    best = ops.reduce(ops.reshape(x, (parts, length), where=w), kind, (1,), i64, where=w)  # (parts, 1)
    starts = ops.const(np.arange(parts, dtype=np.int64).reshape(parts, 1) * length)
    flat = ops.reshape(ops.binary("add", best, starts, i64, where=w), (parts,), where=w)  # indices into x
    winner = ops.reduce(ops.gather(x, flat, 0, where=w), kind, (0,), i64, where=w)       # (1,): which part
    out = ops.gather(flat, winner, 0, where=w)
    return out if n.dtype == i64 else ops.cast(out, n.dtype, where=w)
