"""A numpy reference interpreter for graph nodes: constant folding uses it, and tests check
the compiled code against it op by op."""
from __future__ import annotations

import numpy as np

from .ir import Node


def _slices(starts, steps, lens):
    out = []
    for s, st, n in zip(starts, steps, lens):
        stop = s + n * st
        out.append(slice(s, None if stop < 0 else stop, st))
    return tuple(out)


def evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    op, a = node.op, node.attr
    with np.errstate(all="ignore"):
        if op == "const":
            return a("value").array
        if op == "cast":
            return args[0].astype(node.dtype)
        if op == "where":
            return np.where(*args)
        if op == "sigmoid":
            return (1 / (1 + np.exp(-args[0]))).astype(node.dtype)
        if op in ("broadcast",):
            return np.broadcast_to(args[0], node.shape)
        if op == "reshape":
            return args[0].reshape(node.shape)
        if op == "transpose":
            return args[0].transpose(a("perm"))
        if op == "slice":
            return args[0][_slices(a("starts"), a("steps"), node.shape)]
        if op == "concat":
            return np.concatenate(args, axis=a("axis"))
        if op == "gather":
            x, idx = args
            n = x.shape[a("axis")]
            idx = np.where(idx < 0, idx + n, idx)
            return np.take(x, idx, axis=a("axis"))
        if op == "set_slice":
            out = args[0].copy()
            out[_slices(a("starts"), a("steps"), args[1].shape)] = args[1]
            return out
        if op == "reduce":
            k, axes = a("kind"), a("axes")
            x = args[0]
            if k in ("argmax", "argmin"):
                (ax,) = axes
                return getattr(np, k)(x, axis=ax, keepdims=True).astype(node.dtype)
            fn = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "any": np.any, "all": np.all}[k]
            return np.asarray(fn(x, axis=axes, keepdims=True)).astype(node.dtype)
        if op == "cumsum":
            return np.cumsum(args[0], axis=a("axis"), dtype=node.dtype)
        if op == "matmul":
            return np.matmul(*args)
        return np.asarray(getattr(np, op)(*args)).astype(node.dtype, copy=False)


def run_graph(graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    vals: dict[int, np.ndarray] = {}
    for n in graph.toposort():
        if n.op == "input":
            vals[id(n)] = np.asarray(inputs[n.attr("index")])
        else:
            vals[id(n)] = evaluate(n, [vals[id(i)] for i in n.inputs])
    return [vals[id(o)] for o in graph.outputs]
