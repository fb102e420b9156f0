"""Small ONNX models for the artifact and command-line tests (built with onnx.helper)."""
from __future__ import annotations

import io
import tarfile

import numpy as np

W_SEED = 0


def mlp(batch="N", features=8, hidden=16):
    """x[batch, features] -> MatMul W -> Add B -> Relu = "y"; and "s" = the sum of y over axis 1 (two outputs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(W_SEED)
    w = rng.standard_normal((features, hidden)).astype(np.float32)
    b = rng.standard_normal(hidden).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["z"]),
             helper.make_node("Relu", ["z"], ["y"]),
             helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0)]
    g = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, hidden]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [batch])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m, w, b


def reference(x, w, b):
    y = np.maximum(x @ w + b, 0)
    return y, y.sum(axis=1)


def members(path) -> dict:
    with tarfile.open(path, "r:") as t:
        return {i.name: t.extractfile(i).read() for i in t}


def write_tar(path, parts: dict) -> None:
    with tarfile.open(path, "w") as t:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def rewrite_metadata(src, dst, change) -> None:
    """Copy artifact `src` to `dst` with its metadata changed by change(dict), and SHA256SUMS made consistent,
    so that only a check of the changed field itself can refuse it."""
    import hashlib
    import json
    parts = members(src)
    meta = json.loads(parts["metadata.json"])
    change(meta)
    parts["metadata.json"] = (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode()
    lines = []
    for line in parts["SHA256SUMS"].decode().splitlines():
        h, name = line.split("  ")
        if name == "metadata.json":
            h = hashlib.sha256(parts["metadata.json"]).hexdigest()
        lines.append(f"{h}  {name}\n")
    parts["SHA256SUMS"] = "".join(lines).encode()
    write_tar(dst, parts)
