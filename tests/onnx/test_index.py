"""The model index: a model compiled before is served from the disk cache without parsing it again."""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import jitensor.onnx as jo  # noqa: E402
from jitensor.errors import OnnxError  # noqa: E402
from jitensor.runtime.diskcache import default_cache  # noqa: E402

rng = np.random.default_rng(5)


def two_output_model(seed):
    w = np.random.default_rng(seed).standard_normal((6, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("ReduceSum", ["r"], ["s"], keepdims=0)]
    g = helper.make_graph(nodes, f"idx{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["n", 5]),
                           helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_second_load_is_served_without_decoding_the_model():
    data = two_output_model(1)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    r1, s1 = jo.compile(data)(x)
    f = jo.compile(data)  # a new function for the same bytes, as in a fresh process
    r2, s2 = f(x)
    assert f._graph is None and f.cache_info().disk_hits == 1
    np.testing.assert_array_equal(r1, r2)
    assert type(s1) is type(s2) and s1 == s2
    assert [s.name for s in f.inputs] == ["x"] and f.inputs[0].shape == (None, 6)
    x5 = rng.standard_normal((5, 6)).astype(np.float32)  # a new shape: decoded and compiled, then indexed too
    r5, _ = f(x5)
    assert f._graph is not None and r5.shape == (5, 5)
    assert jo.compile(data)(x5)[0].tolist() == r5.tolist()


def test_missing_entry_or_bad_index_falls_back():
    data = two_output_model(2)
    x = rng.standard_normal((2, 6)).astype(np.float32)
    want = jo.compile(data)(x)[0]
    index = glob.glob(os.path.join(default_cache().path, f"onnx-{jo.read_source(data).sha256}*.json"))
    assert len(index) == 1
    with open(index[0]) as fh:
        text = fh.read()
    for key in [k for k in os.listdir(default_cache().path) if k.endswith(".jtk")]:
        os.unlink(os.path.join(default_cache().path, key))  # the index names a program that is gone
    np.testing.assert_array_equal(jo.compile(data)(x)[0], want)
    with open(index[0], "w") as fh:
        fh.write(text[: len(text) // 2])  # a torn index
    np.testing.assert_array_equal(jo.compile(data)(x)[0], want)
    with pytest.raises(OnnxError, match="does not accept"):
        jo.compile(data)(x.astype(np.float64))  # specs from the index still check inputs


def test_sub_graph_cut_has_its_own_index():
    data = two_output_model(3)
    x = rng.standard_normal((2, 6)).astype(np.float32)
    full = jo.compile(data)(x)
    sub = jo.compile(data, outputs=["r"])
    np.testing.assert_array_equal(sub(x), full[0])
    again = jo.compile(data, outputs=["r"])
    assert [s.name for s in again.outputs] == ["r"]
    np.testing.assert_array_equal(again(x), full[0])


def test_fresh_process_does_not_import_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(two_output_model(4))
    env = dict(os.environ, JITENSOR_CACHE_DIR=str(tmp_path / "cache"))
    code = ("import sys, numpy as np, jitensor.onnx as jo; f = jo.compile(sys.argv[1]); "
            "r, s = f(np.ones((2, 6), np.float32)); print(float(s), 'onnx' in sys.modules, f.cache_info().disk_hits)")
    first = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    s1, imported1, _ = first.stdout.split()
    s2, imported2, hits = second.stdout.split()
    assert s1 == s2 and imported1 == "True" and imported2 == "False" and hits == "1"


def test_index_of_another_build_is_ignored(monkeypatch):
    data = two_output_model(6)
    x = rng.standard_normal((2, 6)).astype(np.float32)
    want = jo.compile(data)(x)[0]
    import jitensor.compiler
    monkeypatch.setattr(jitensor.compiler, "compiler_fingerprint", lambda: "another-build")
    f = jo.compile(data)  # the index names programs of another compiler build: decoded and compiled again
    assert f._graph is not None
    np.testing.assert_array_equal(f(x)[0], want)
    assert f.cache_info().disk_hits == 0
