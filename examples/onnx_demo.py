"""ONNX models with jitensor: compile a model, call it, and use it inside a jitted numpy pipeline.

    python examples/onnx_demo.py

The model (a small MLP classifier with random weights) is built here with onnx.helper, so the demo needs no
download; `jitensor.onnx.compile("model.onnx")` takes a file the same way.
"""
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import jitensor
import jitensor.onnx

rng = np.random.default_rng(0)


def mlp_model(sizes=(64, 128, 10)):
    inits, nodes, x = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"], name=f"fc{i}")]
        x = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=-1))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", sizes[-1]])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


m = mlp_model()
onnx.checker.check_model(m)
model = jitensor.onnx.compile(m)                  # a path, bytes or a ModelProto
print(model)

x = rng.standard_normal((32, 64)).astype(np.float32)
t0 = time.perf_counter()
probs = model(x=x)                                # first call: trace, fuse, compile
t1 = time.perf_counter()
probs = model(x=x)                                # later calls: the compiled program
t2 = time.perf_counter()
ref = ReferenceEvaluator(m).run(None, {"x": x})[0]
print(f"max |jitensor - onnx reference| = {np.abs(probs - ref).max():.2e}  "
      f"(first call {1e3 * (t1 - t0):.0f} ms, then {1e6 * (t2 - t1):.0f} us)")

MEAN, STD = np.float32(127.5), np.float32(64.0)
enc = jitensor.onnx.load(m)                       # usable inside @jit: traced inline


@jitensor.jit
def classify(pixels):
    x = (pixels.astype(np.float32) - MEAN) / STD  # numpy pre-processing fuses into the model's first kernel
    return np.argmax(enc(x), axis=-1)             # and the argmax into its last


pixels = rng.integers(0, 256, (32, 64)).astype(np.uint8)
labels = classify(pixels)
want = np.argmax(ReferenceEvaluator(m).run(None, {"x": (pixels.astype(np.float32) - MEAN) / STD})[0], axis=-1)
print("classify:", labels[:8], "matches the reference:", bool((labels == want).all()))
print(f"kernels in the fused pipeline: {len(classify.lower(pixels).kernels)}")
