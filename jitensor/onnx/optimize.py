"""Graph rewrites on the ONNX model, applied before conversion.

`optimize(proto)` returns a rewritten copy (the input is not modified). Today it does one thing:
a BatchNormalization (inference mode) that follows a Conv is folded into the Conv's weights and bias
when all the parameters are initializers and the Conv's output has no other reader:

    k = scale / sqrt(var + eps);  W' = W * k (per output channel);  b' = (b - mean) * k + beta

computed in float64 and stored in the weights' dtype. New initializers get fresh names (the old ones
may be shared with other nodes; those no longer read are dropped).
"""
from __future__ import annotations

import numpy as np


def _consumers(graph) -> dict:
    out: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                out.setdefault(i, []).append(n)
    return out


def _fresh(name: str, taken: set) -> str:
    i, cand = 0, f"{name}_bnfold"
    while cand in taken:
        i += 1
        cand = f"{name}_bnfold{i}"
    taken.add(cand)
    return cand


def fold_batchnorm(graph) -> int:
    """Fold Conv -> BatchNormalization pairs of `graph` (a GraphProto, changed in place); returns how many."""
    from onnx import helper, numpy_helper
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {v.name for v in graph.input}
    graph_outputs = {v.name for v in graph.output}
    producers = {o: n for n in graph.node for o in n.output if o}
    taken = set(inits) | {o for n in graph.node for o in n.output} | graph_inputs
    consumers = _consumers(graph)
    folded, drop = 0, []

    def const(name):
        # an initializer that is also a graph input can be fed at run time: not a constant
        return numpy_helper.to_array(inits[name]) if name in inits and name not in graph_inputs else None

    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.input) < 5:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
        if attrs.get("training_mode", 0) or len([o for o in bn.output if o]) != 1 or not bn.output[0]:
            continue
        if attrs.get("spatial", 1) != 1:  # opset < 9 per-activation statistics
            continue
        conv = producers.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
            continue
        y = conv.output[0]
        if y in graph_outputs or len(consumers.get(y, [])) != 1:
            continue
        scale, beta, mean, var = (const(n) for n in bn.input[1:5])
        w = const(conv.input[1]) if len(conv.input) > 1 else None
        b = const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(0)
        if any(v is None for v in (scale, beta, mean, var, w, b)) or w.dtype.kind != "f":
            continue
        M = w.shape[0]
        if any(v.shape != (M,) for v in (scale, beta, mean, var)) or b.shape not in ((0,), (M,)):
            continue
        eps = float(attrs.get("epsilon", 1e-5))
        k = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        w2 = (w.astype(np.float64) * k.reshape((M,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        b0 = b.astype(np.float64) if b.size else np.zeros(M)
        b2 = ((b0 - mean.astype(np.float64)) * k + beta.astype(np.float64)).astype(w.dtype)
        wn, bn_name = _fresh(conv.input[1], taken), _fresh(conv.input[2] if b.size else f"{conv.input[1]}_bias", taken)
        graph.initializer.extend([numpy_helper.from_array(w2, wn), numpy_helper.from_array(b2, bn_name)])
        ins = list(conv.input)
        ins[1] = wn
        if len(ins) > 2:
            ins[2] = bn_name
        else:
            ins.append(bn_name)
        del conv.input[:]
        conv.input.extend(ins)
        conv.output[0] = bn.output[0]
        drop.append(bn)
        folded += 1
    if not folded:
        return 0
    for bn in drop:
        graph.node.remove(bn)
    used = {i for n in graph.node for i in n.input} | graph_outputs
    keep = [t for t in graph.initializer if t.name in used or t.name in graph_inputs]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    produced = {o for n in graph.node for o in n.output}
    vi = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(vi)
    return folded


def optimize(proto):
    """A rewritten copy of the ModelProto `proto` (see the module docstring)."""
    import onnx
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    fold_batchnorm(out.graph)
    return out
