"""jitensor.onnx: reading, checking, binding inputs, sub-graphs, inlining inside @jit, bad models."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import jitensor  # noqa: E402
import jitensor.onnx as jo  # noqa: E402
from jitensor.errors import OnnxError  # noqa: E402
from jitensor.graph.ir import ConstValue  # noqa: E402

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def model(nodes, inputs, outputs, inits=(), opset=17, name="m"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def mlp(batch=4, hidden=16):
    w1 = rng.standard_normal((8, hidden)).astype(np.float32)
    b1 = rng.standard_normal(hidden).astype(np.float32)
    w2 = rng.standard_normal((hidden, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
             helper.make_node("MatMul", ["r", "w2"], ["logits"], name="mm2"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax")]
    return model(nodes, [("x", F, [batch, 8])], [("probs", F, [batch, 3])], [("w1", w1), ("b1", b1), ("w2", w2)])


def reference(m, **feeds):
    return ReferenceEvaluator(m).run(None, feeds)


def test_compile_positional_keyword_and_run_dict():
    m = mlp()
    f = jo.compile(m)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    want = reference(m, x=x)[0]
    np.testing.assert_allclose(f(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f(x=x), want, rtol=1e-5, atol=1e-6)
    out = f.run({"x": x})
    assert list(out) == ["probs"] and out["probs"].dtype == np.float32
    assert "x: float32[4,8]" in repr(f)


def test_path_and_bytes_sources(tmp_path):
    m = mlp()
    p = tmp_path / "mlp.onnx"
    onnx.save(m, p)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    a, b = jo.compile(str(p))(x), jo.load(m.SerializeToString())(x)
    np.testing.assert_array_equal(a, b)
    assert jo.load(p).sha256 == jo.load(m).sha256


def test_several_outputs_and_symbolic_batch():
    nodes = [helper.make_node("Mul", ["a", "b"], ["p"]), helper.make_node("Sub", ["a", "b"], ["d"])]
    m = model(nodes, [("a", F, ["n", 3]), ("b", F, ["n", 3])], [("p", F, ["n", 3]), ("d", F, ["n", 3])])
    f = jo.compile(m)
    for n in (1, 5):
        a, b = rng.standard_normal((2, n, 3)).astype(np.float32)
        p, d = f(a, b=b)
        np.testing.assert_allclose(p, a * b, rtol=1e-6)
        np.testing.assert_allclose(d, a - b, rtol=1e-6)
    assert f.cache_info().misses == 2


@pytest.mark.parametrize("call, msg", [
    (lambda f, x: f(x.astype(np.float64)), "does not accept float64[4,8]"),
    (lambda f, x: f(x[:2]), "does not accept float32[2,8]"),
    (lambda f, x: f(x[None]), "does not accept float32[1,4,8]"),
    (lambda f, x: f(), "missing input x"),
    (lambda f, x: f(y=x), "no input named 'y'"),
    (lambda f, x: f(x, x), "2 inputs given, the model takes 1"),
    (lambda f, x: f(x, x=x), "given twice"),
])
def test_input_errors_name_the_input(call, msg):
    f = jo.compile(mlp())
    with pytest.raises(OnnxError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        call(f, rng.standard_normal((4, 8)).astype(np.float32))


def test_malformed_truncated_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot a model at all" * 10)
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(mlp().SerializeToString()[:200])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for p in (bad, trunc, empty, tmp_path / "missing.onnx"):
        with pytest.raises(OnnxError) as e:
            jo.compile(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(OnnxError, match="expected a path"):
        jo.compile(42)


def test_checker_failure_is_one_line():
    n = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", F, [2])],
                          [helper.make_tensor_value_info("z", F, [2])])  # output not produced
    with pytest.raises(OnnxError, match="ONNX checker|not produced"):
        jo.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))(np.ones(2, np.float32))


def test_every_unsupported_op_in_one_error():
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("TopK", ["r", "k"], ["v", "i"], name="topk_a"),
             helper.make_node("Unique", ["r"], ["u"], name="uniq"),
             helper.make_node("TopK", ["v", "k"], ["v2", "i2"], name="topk_b")]
    m = model(nodes, [("x", F, [10])], [("v2", F, [3]), ("u", F, ["nu"])],
              [("k", np.array([3], np.int64))])
    with pytest.raises(OnnxError) as e:
        jo.compile(m)
    msg = str(e.value)
    assert "TopK (nodes topk_a, topk_b)" in msg and "Unique (node uniq)" in msg and "3 node(s)" in msg


def test_unsupported_dtype_is_named():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT16, [2])],
              [("y", TensorProto.FLOAT16, [2])])
    with pytest.raises(OnnxError, match="'x' has type float16"):
        jo.compile(m)


def test_subgraph_between_named_tensors():
    m = mlp()
    sub = jo.compile(m, inputs=["r"], outputs=["logits"])
    assert [s.name for s in sub.inputs] == ["r"] and [s.name for s in sub.outputs] == ["logits"]
    r = np.abs(rng.standard_normal((4, 16))).astype(np.float32)
    w2 = numpy_helper.to_array(m.graph.initializer[2])
    np.testing.assert_allclose(sub(r), r @ w2, rtol=1e-5, atol=1e-5)
    with pytest.raises(OnnxError, match="no tensor named 'nope'"):
        jo.compile(m, outputs=["nope"])


def test_model_inlines_inside_jit_and_fuses():
    # an elementwise model between numpy pre- and post-processing: one fused kernel in all
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Tanh", ["m"], ["y"])]
    m = model(nodes, [("x", F, [64])], [("y", F, [64])], [("s", np.full(64, 0.5, np.float32))])
    enc = jo.load(m)

    @jitensor.jit
    def pipeline(img):
        x = (img.astype(np.float32) / 255 - 0.5) / 0.25
        return np.exp(enc(x)) + 1

    img = rng.integers(0, 256, 64).astype(np.uint8)
    x = (img.astype(np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(pipeline(img), np.exp(np.tanh(x * 0.5)) + 1, rtol=1e-5)
    assert len(pipeline.lower(img).kernels) == 1


def test_shape_subgraph_folds_to_constants():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape: no shape arithmetic survives into the graph
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    m = model(nodes, [("x", F, [2, 3, 4])], [("y", F, [2, 12])],
              [("zero", np.array(0, np.int64)), ("zero1", np.array([0], np.int64)),
               ("minus1", np.array([-1], np.int64))])
    f = jo.compile(m)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(f(x), x.reshape(2, 12))
    g = jitensor.trace(f, x)
    assert {n.op for n in g.toposort()} <= {"input", "reshape"}, str(g)


def test_runtime_computed_shape_is_a_clear_error():
    nodes = [helper.make_node("Cast", ["s"], ["si"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "si"], ["y"])]
    m = model(nodes, [("x", F, [6]), ("s", F, [2])], [("y", F, ["a", "b"])])
    with pytest.raises(OnnxError, match="known at compile time"):
        jo.compile(m)(np.ones(6, np.float32), np.array([2, 3], np.float32))


def test_frozen_weights_are_hashed_once():
    w = np.arange(12.0).reshape(3, 4).copy()  # owns its data
    w.setflags(write=False)
    assert ConstValue.of(w) is ConstValue.of(w)
    v = np.arange(12.0)  # writable: copied and hashed each time, so a later change is seen
    a = ConstValue.of(v)
    v[0] = 99
    assert ConstValue.of(v) != a and a.array[0] == 0


@pytest.mark.parametrize("op, fmod, a, b, want", [
    ("Div", None, [7, -7, 7, -7], [2, 2, -2, -2], [3, -3, -3, 3]),    # truncates toward zero
    ("Mod", 0, [7, -7, 7, -7], [3, 3, -3, -3], [1, 2, -2, -1]),       # sign of the divisor
    ("Mod", 1, [7, -7, 7, -7], [3, 3, -3, -3], [1, -1, 1, -1]),       # sign of the dividend
])
def test_integer_division_semantics(op, fmod, a, b, want):
    kw = {} if fmod is None else {"fmod": fmod}
    m = model([helper.make_node(op, ["a", "b"], ["y"], **kw)], [("a", TensorProto.INT32, [4]),
              ("b", TensorProto.INT32, [4])], [("y", TensorProto.INT32, [4])])
    a, b = np.array(a, np.int32), np.array(b, np.int32)
    got = jo.compile(m)(a, b)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, reference(m, a=a, b=b)[0])
    assert got.dtype == np.int32


def test_converter_errors_name_the_node():
    m = model([helper.make_node("MatMul", ["a", "b"], ["y"], name="bad_mm")], [("a", F, [2, 3]), ("b", F, [4, 5])],
              [("y", F, None)])
    with pytest.raises(OnnxError, match="'bad_mm' \\(MatMul\\)"):
        jo.compile(m, check=False)(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))


def test_lazy_module_attribute():
    assert jitensor.onnx is jo and "compile" in jo.__all__
    assert "Conv" in jo.supported_ops() or "MatMul" in jo.supported_ops()


def test_compile_folds_batchnorm_into_conv():
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    stats = [rng.random(4).astype(np.float32) + 0.5 for _ in range(4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])]
    m = model(nodes, [("x", F, [1, 3, 8, 8])], [("y", F, [1, 4, 8, 8])],
              [("w", w)] + list(zip("sbmv", stats)))
    f = jo.compile(m)
    assert [ctx.op_type for _, ctx, _, _ in f.graph.nodes] == ["Conv"]
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(f(x), reference(m, x=x)[0], rtol=1e-4, atol=1e-5)
