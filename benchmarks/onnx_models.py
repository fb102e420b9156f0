"""ONNX models for the benchmarks, built in code with random (seeded) weights: nothing is downloaded.

    import onnx_models
    m = onnx_models.resnet50()            # an onnx.ModelProto (opset 17, float32)
    onnx_models.MODELS["mlp"](batch=64)

Every builder returns a checked `onnx.ModelProto` (opset 17, IR version 8, float32 everywhere) whose
weights are drawn from `np.random.default_rng(seed)`:

- `resnet50(batch=1)`: ResNet-50, torchvision layout, **v1.5** (the stride of a downsampling bottleneck is on
  its 3x3 conv, not its first 1x1): conv 7x7/2 + BN + ReLU, max pool 3x3/2 pad 1, bottlenecks [3, 4, 6, 3]
  (1x1, 3x3, 1x1 convs, each followed by BatchNormalization), a projection shortcut (conv 1x1 + BN) on
  the first block of each stage, Add + Relu, GlobalAveragePool, Flatten, Gemm 2048 -> 1000.
  Input `data` [batch,3,224,224], output `logits` [batch,1000].
- `mobilenetv2(batch=1)`: MobileNetV2 (width 1.0): conv 3x3/2 to 32 + BN + ReLU6, inverted residuals of the
  standard (t, c, n, s) table (expand 1x1 + BN + ReLU6 when t > 1, depthwise 3x3 (group = channels) + BN +
  ReLU6, project 1x1 + BN, Add when the stride is 1 and the channels match), conv 1x1 to 1280 + BN + ReLU6,
  GlobalAveragePool, Flatten, Gemm 1280 -> 1000. ReLU6 is Clip(0, 6). Input `data` [batch,3,224,224],
  output `logits`.
- `bert_encoder(layers=4, hidden=256, heads=4, seq=128, ffn=1024)`: post-LN transformer encoder layers on
  embeddings already computed: Q/K/V MatMul + Add, Reshape + Transpose to heads, MatMul Q K^T, Div by
  sqrt(head dim), Softmax, MatMul V, Transpose + Reshape back, output projection MatMul + Add, residual Add,
  LayerNormalization, FFN MatMul + Add, GELU in its erf form (Div by sqrt 2, Erf, Add 1, Mul x, Mul 0.5),
  MatMul + Add, residual Add, LayerNormalization. Input `x` [1,seq,hidden], output `y`.
- `mlp(batch=1)`: 784-512-512-10, Gemm (transB=1, weights stored [out, in] like an exported linear layer)
  + Relu, Gemm, Relu, Gemm. Input `x` [batch,784], output `logits`.
- `conv_block(batch=1, channels=64, size=56)`: Conv 3x3 pad 1 with bias, 64 -> 64 channels, + Relu. Input
  `x` [1,64,56,56], output `y`.

Weights are scaled so that activations stay of order 1 through the whole network: convs and linear
layers use He initialization (std sqrt(2 / fan_in)) before a ReLU, sqrt(1 / fan_in) otherwise; the
BatchNormalizations have running statistics near (0, 1) and gammas near 1, except the last BN of each
residual branch (ResNet bottleneck, MobileNet inverted residual with a skip), whose gammas are small
(0.2-0.3), so that the residual sums do not double the variance at every block.

`python benchmarks/onnx_models.py` checks every model (onnx.checker), runs it with onnxruntime (and the
small ones with onnx.reference.ReferenceEvaluator, compared with onnxruntime) and prints output statistics.
"""
from __future__ import annotations

import math

import numpy as np

OPSET = 17
IR_VERSION = 8
F32 = np.float32


class _Builder:
    """Nodes and initializers with unique names."""

    def __init__(self, name: str, seed: int):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self._count: dict[str, int] = {}

    def fresh(self, prefix: str) -> str:
        n = self._count.get(prefix, 0)
        self._count[prefix] = n + 1
        return f"{prefix}_{n}"

    def const(self, value, prefix: str = "c") -> str:
        from onnx import numpy_helper
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs, n_out: int = 1, out=None, **attrs):
        from onnx import helper
        outs = [out] if out is not None else [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.fresh(f"{op}_node"), **attrs))
        return outs[0] if n_out == 1 else outs

    # --- weights
    def normal(self, shape, std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(F32)

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, bias: bool = False,
             relu_after: bool = True, out=None) -> str:
        fan_in = cin // group * k * k
        w = self.const(self.normal((cout, cin // group, k, k), math.sqrt((2.0 if relu_after else 1.0) / fan_in)),
                       "conv_w")
        ins = [x, w]
        if bias:
            ins.append(self.const(self.normal((cout,), 0.05), "conv_b"))
        p = k // 2
        return self.node("Conv", ins, out=out, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[p, p, p, p], dilations=[1, 1], group=group)

    def bn(self, x: str, c: int, gamma: float = 1.0) -> str:
        r = self.rng
        scale = self.const((gamma * r.uniform(0.8, 1.2, c)).astype(F32), "bn_scale")
        b = self.const((r.standard_normal(c) * 0.05).astype(F32), "bn_bias")
        mean = self.const((r.standard_normal(c) * 0.05).astype(F32), "bn_mean")
        var = self.const(r.uniform(0.8, 1.2, c).astype(F32), "bn_var")
        return self.node("BatchNormalization", [x, scale, b, mean, var], epsilon=1e-5, momentum=0.9)

    def gemm(self, x: str, cin: int, cout: int, relu_after: bool) -> str:
        w = self.const(self.normal((cout, cin), math.sqrt((2.0 if relu_after else 1.0) / cin)), "fc_w")
        b = self.const(self.normal((cout,), 0.05), "fc_b")
        return self.node("Gemm", [x, w, b], alpha=1.0, beta=1.0, transB=1)

    def model(self, inputs, outputs, doc: str = ""):
        import onnx
        from onnx import helper
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="jitensor-bench",
                              doc_string=doc)
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m


def _value(name: str, shape):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


# ============================================================================ the models

def conv_block(batch: int = 1, channels: int = 64, size: int = 56, seed: int = 0):
    """Conv 3x3 pad 1 + bias + Relu, channels -> channels. Input `x` [batch,C,size,size], output `y`."""
    b = _Builder("conv_block", seed)
    h = b.conv("x", channels, channels, 3, bias=True)
    b.node("Relu", [h], out="y")
    return b.model([_value("x", (batch, channels, size, size))], [_value("y", (batch, channels, size, size))],
                   "conv 3x3 + bias + relu")


def mlp(batch: int = 1, sizes=(784, 512, 512, 10), seed: int = 0):
    """784-512-512-10: Gemm (transB=1) + Relu, ..., Gemm. Input `x` [batch,784], output `logits`."""
    b = _Builder(f"mlp_b{batch}", seed)
    h = "x"
    for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        h = b.gemm(h, cin, cout, relu_after=not last)
        if not last:
            h = b.node("Relu", [h])
    b.node("Identity", [h], out="logits")
    return b.model([_value("x", (batch, sizes[0]))], [_value("logits", (batch, sizes[-1]))], "mlp")


def resnet50(batch: int = 1, num_classes: int = 1000, seed: int = 0):
    """ResNet-50 v1.5 (torchvision layout, stride on the 3x3 conv). Input `data` [batch,3,224,224],
    output `logits` [batch,num_classes]."""
    b = _Builder("resnet50_v1_5", seed)
    h = b.node("Relu", [b.bn(b.conv("data", 3, 64, 7, stride=2), 64)])
    h = b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        cout = width * 4
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            y = b.node("Relu", [b.bn(b.conv(h, cin, width, 1), width)])
            y = b.node("Relu", [b.bn(b.conv(y, width, width, 3, stride=stride), width)])
            y = b.bn(b.conv(y, width, cout, 1, relu_after=False), cout, gamma=0.2)
            if i == 0:  # projection shortcut (channels change in every stage's first block)
                sc = b.bn(b.conv(h, cin, cout, 1, stride=stride, relu_after=False), cout)
            else:
                sc = h
            h = b.node("Relu", [b.node("Add", [sc, y])])
            cin = cout
    h = b.node("GlobalAveragePool", [h])
    h = b.node("Flatten", [h], axis=1)
    h = b.gemm(h, 2048, num_classes, relu_after=False)
    b.node("Identity", [h], out="logits")
    return b.model([_value("data", (batch, 3, 224, 224))], [_value("logits", (batch, num_classes))],
                   "ResNet-50 v1.5 (torchvision layout), random weights")


MOBILENETV2_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                     (6, 320, 1, 1))  # (expansion t, output channels c, repeats n, first stride s)


def mobilenetv2(batch: int = 1, num_classes: int = 1000, seed: int = 0):
    """MobileNetV2 1.0 (standard (t, c, n, s) table, ReLU6 = Clip(0, 6)). Input `data` [batch,3,224,224],
    output `logits`."""
    b = _Builder("mobilenetv2_1_0", seed)
    lo, hi = b.const(np.array(0.0, F32), "relu6_min"), b.const(np.array(6.0, F32), "relu6_max")

    def relu6(x):
        return b.node("Clip", [x, lo, hi])

    h = relu6(b.bn(b.conv("data", 3, 32, 3, stride=2), 32))
    cin = 32
    for t, c, n, s in MOBILENETV2_TABLE:
        for i in range(n):
            stride = s if i == 0 else 1
            skip = stride == 1 and cin == c
            hidden = cin * t
            y = h
            if t != 1:
                y = relu6(b.bn(b.conv(y, cin, hidden, 1), hidden))
            y = relu6(b.bn(b.conv(y, hidden, hidden, 3, stride=stride, group=hidden), hidden))
            y = b.bn(b.conv(y, hidden, c, 1, relu_after=False), c, gamma=0.3 if skip else 1.0)
            h = b.node("Add", [h, y]) if skip else y
            cin = c
    h = relu6(b.bn(b.conv(h, cin, 1280, 1), 1280))
    h = b.node("GlobalAveragePool", [h])
    h = b.node("Flatten", [h], axis=1)
    h = b.gemm(h, 1280, num_classes, relu_after=False)
    b.node("Identity", [h], out="logits")
    return b.model([_value("data", (batch, 3, 224, 224))], [_value("logits", (batch, num_classes))],
                   "MobileNetV2 1.0, random weights")


def bert_encoder(layers: int = 4, hidden: int = 256, heads: int = 4, seq: int = 128, ffn: int = 1024,
                 batch: int = 1, seed: int = 0):
    """Post-LN transformer encoder layers (BERT style, GELU in the erf form). Input `x` [batch,seq,hidden]
    (embeddings), output `y` of the same shape."""
    assert hidden % heads == 0
    hd = hidden // heads
    b = _Builder(f"bert_encoder_l{layers}_h{hidden}", seed)
    to_heads = b.const(np.array([batch, seq, heads, hd], np.int64), "shape_heads")
    from_heads = b.const(np.array([batch, seq, hidden], np.int64), "shape_hidden")
    scale = b.const(np.array(math.sqrt(hd), F32), "attn_scale")
    sqrt2 = b.const(np.array(math.sqrt(2.0), F32), "sqrt2")
    one = b.const(np.array(1.0, F32), "one")
    half = b.const(np.array(0.5, F32), "half")

    def linear(x, cin, cout, std=None):
        w = b.const(b.normal((cin, cout), std if std is not None else math.sqrt(1.0 / cin)), "w")
        bias = b.const(b.normal((cout,), 0.02), "b")
        return b.node("Add", [b.node("MatMul", [x, w]), bias])

    def layernorm(x):
        g = b.const((1.0 + b.rng.standard_normal(hidden) * 0.05).astype(F32), "ln_scale")
        beta = b.const((b.rng.standard_normal(hidden) * 0.02).astype(F32), "ln_bias")
        return b.node("LayerNormalization", [x, g, beta], axis=-1, epsilon=1e-12)

    h = "x"
    for _ in range(layers):
        q = b.node("Transpose", [b.node("Reshape", [linear(h, hidden, hidden), to_heads])], perm=[0, 2, 1, 3])
        k = b.node("Transpose", [b.node("Reshape", [linear(h, hidden, hidden), to_heads])], perm=[0, 2, 3, 1])
        v = b.node("Transpose", [b.node("Reshape", [linear(h, hidden, hidden), to_heads])], perm=[0, 2, 1, 3])
        scores = b.node("Div", [b.node("MatMul", [q, k]), scale])           # [b, heads, seq, seq]
        probs = b.node("Softmax", [scores], axis=-1)
        ctx = b.node("MatMul", [probs, v])                                  # [b, heads, seq, hd]
        ctx = b.node("Reshape", [b.node("Transpose", [ctx], perm=[0, 2, 1, 3]), from_heads])
        h = layernorm(b.node("Add", [h, linear(ctx, hidden, hidden)]))
        f = linear(h, hidden, ffn)
        gelu = b.node("Mul", [b.node("Mul", [f, b.node("Add", [b.node("Erf", [b.node("Div", [f, sqrt2])]), one])]),
                              half])
        h = layernorm(b.node("Add", [h, linear(gelu, ffn, hidden)]))
    b.node("Identity", [h], out="y")
    return b.model([_value("x", (batch, seq, hidden))], [_value("y", (batch, seq, hidden))],
                   f"transformer encoder, {layers} layers, hidden {hidden}, {heads} heads, ffn {ffn}")


MODELS = {"conv_block": conv_block, "mlp": mlp, "resnet50": resnet50, "mobilenetv2": mobilenetv2,
          "bert_encoder": bert_encoder}


def example_inputs(model, seed: int = 1) -> dict:
    """Random float32 inputs (standard normal) for every graph input of `model`, by name."""
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rng.standard_normal(shape, dtype=F32)
    return out


def ort_session(model, threads: int = 2, spin: bool = False):
    """An onnxruntime CPU session: intra_op_num_threads=threads, inter_op 1, sequential execution, and its
    worker threads sleeping when idle unless `spin`: by default they spin for a while after each run, which
    on this 2-core machine takes the cores from whatever runs next (measured: MobileNetV2 in jitensor
    13-16 ms alone, 25 ms interleaved with a spinning session), and costs onnxruntime itself ~0-10%."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def _selfcheck():
    """Check every model, run it with onnxruntime (and the small ones with the reference evaluator)."""
    import time
    from onnx.reference import ReferenceEvaluator
    cases = [("conv_block", conv_block, {}, True), ("mlp b1", mlp, {"batch": 1}, True),
             ("mlp b64", mlp, {"batch": 64}, True), ("bert_encoder", bert_encoder, {}, True),
             ("mobilenetv2", mobilenetv2, {}, False), ("resnet50", resnet50, {}, False)]
    for label, fn, kw, small in cases:
        t0 = time.perf_counter()
        m = fn(**kw)
        feeds = example_inputs(m)
        (y,) = ort_session(m).run(None, feeds)
        weights = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
        line = (f"{label:13s} {len(m.graph.node):4d} nodes, {weights / 1e6:6.2f}M weights; out {list(y.shape)} "
                f"finite={bool(np.isfinite(y).all())} std={y.std():.3g} absmax={np.abs(y).max():.3g}")
        if small:
            (r,) = ReferenceEvaluator(m).run(None, feeds)
            line += f"; reference vs onnxruntime max abs err {np.abs(r.astype(np.float64) - y).max():.2g}"
        print(line + f" ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    _selfcheck()
