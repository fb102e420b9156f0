"""The neural-network op family (Conv, ConvTranspose, pooling, Pad, Resize, normalizations, DepthToSpace...)
against onnx's reference evaluator, and BatchNormalization folding (jitensor.onnx.optimize)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import jitensor.onnx  # noqa: E402
from jitensor.errors import OnnxError  # noqa: E402
from jitensor.onnx.optimize import optimize  # noqa: E402

F32, F64 = np.float32, np.float64
TOL = {F32: dict(rtol=1e-4, atol=1e-5), F64: dict(rtol=1e-10, atol=1e-12)}


def _tt(dt):
    return TensorProto.FLOAT if dt == F32 else TensorProto.DOUBLE


def model(op, x, consts=(), opset=17, n_out=1, **attrs):
    """One node `op` on graph input x and constant inputs (name, array or None for omitted)."""
    inits, names = [], ["x"]
    for i, c in enumerate(consts):
        if c is None:
            names.append("")
            continue
        names.append(f"c{i}")
        inits.append(numpy_helper.from_array(np.asarray(c), f"c{i}"))
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", _tt(x.dtype.type), list(x.shape))],
                          [helper.make_tensor_value_info(o, _tt(x.dtype.type), None) for o in outs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def with_output_shapes(m, outs):
    """The model with its outputs' shapes set from the reference's results (the checker wants shapes)."""
    for vi, o in zip(m.graph.output, outs):
        vi.type.tensor_type.ClearField("shape")
        for d in o.shape:
            vi.type.tensor_type.shape.dim.add().dim_value = d
    return m


def check(m, *xs, tol=None, ort=False):
    """jitensor's result against the reference evaluator's, or onnxruntime's (`ort=True`: the reference lacks
    the op or variant, or disagrees with the specification and onnxruntime there)."""
    if ort:
        rt = pytest.importorskip("onnxruntime")
        m.graph.output[0].type.tensor_type.ClearField("shape")
        m = helper.make_model(m.graph, opset_imports=m.opset_import)
        sess = rt.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, {"x": xs[0]})[0]
    else:
        want = ReferenceEvaluator(m).run(None, {"x": xs[0]})[0]
    with_output_shapes(m, [want])
    got = jitensor.onnx.compile(m)(*xs)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **(tol or TOL[xs[0].dtype.type]))
    return got


def rnd(*shape, dt=F32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


# -- Conv -----------------------------------------------------------------------------------------------------

CONV_2D = [
    # (C, M, H, W, kernel, attrs, bias)
    (3, 8, 8, 8, 3, dict(pads=[1, 1, 1, 1]), True),
    (5, 6, 7, 9, 3, dict(), False),                                   # no padding, odd sizes
    (4, 8, 9, 9, 3, dict(strides=[2, 2], pads=[1, 1, 1, 1]), True),
    (8, 16, 6, 6, 1, dict(), True),                                   # 1x1 stride 1: a plain matmul
    (8, 12, 7, 7, 1, dict(strides=[2, 2]), False),                    # 1x1 strided
    (6, 10, 5, 5, 1, dict(pads=[1, 0, 0, 1]), True),                  # 1x1 padded
    (4, 6, 9, 8, 3, dict(dilations=[2, 1], pads=[2, 1, 2, 1]), True),
    (4, 6, 10, 10, [2, 3], dict(auto_pad="SAME_UPPER", strides=[2, 3]), True),
    (4, 6, 10, 9, [2, 3], dict(auto_pad="SAME_LOWER", strides=[3, 2]), False),
    (4, 6, 9, 9, 3, dict(auto_pad="VALID", strides=[2, 2]), True),
    (8, 8, 6, 6, 3, dict(group=8, pads=[1, 1, 1, 1]), True),         # depthwise
    (8, 16, 9, 9, 3, dict(group=8, strides=[2, 2], pads=[1, 1, 1, 1]), True),  # depthwise, multiplier 2
    (8, 12, 6, 7, 3, dict(group=4, pads=[0, 1, 2, 1]), True),         # grouped
    (12, 9, 5, 5, 1, dict(group=3), False),                           # grouped 1x1
    (3, 16, 30, 30, 3, dict(pads=[1, 1, 1, 1]), True),                # rows of the output >= ROW_MIN: row GEMMs
    (16, 24, 32, 30, 3, dict(strides=[1, 1], pads=[0, 1, 0, 1], dilations=[1, 2]), False),
    (16, 16, 28, 28, 3, dict(group=16, pads=[1, 1, 1, 1]), True),     # larger depthwise
    (3, 8, 20, 21, 7, dict(strides=[2, 2], pads=[3, 3, 3, 3]), True),  # a stem: 7x7 stride 2
    (6, 8, 49, 50, 1, dict(strides=[2, 2]), True),                    # 1x1 strided, wide: row GEMMs on a view
    (2, 3, 1, 2, 3, dict(pads=[1, 1, 1, 1], strides=[2, 2]), True),   # offsets that see only padding
    (4, 4, 2, 1, 3, dict(group=4, pads=[1, 2, 1, 2], strides=[2, 2]), False),
]


@pytest.mark.parametrize("C,M,H,W,k,attrs,bias", CONV_2D)
def test_conv2d(C, M, H, W, k, attrs, bias):
    k = [k, k] if isinstance(k, int) else k
    g = attrs.get("group", 1)
    dt = F64 if (C + M) % 3 == 0 else F32  # both dtypes, spread over the cases
    w = rnd(M, C // g, *k, dt=dt, seed=1)
    consts = [w] + ([rnd(M, dt=dt, seed=2)] if bias else [])
    check(model("Conv", rnd(2, C, H, W, dt=dt), consts, kernel_shape=k, **attrs), rnd(2, C, H, W, dt=dt))


@pytest.mark.parametrize("dims,attrs", [
    ((10,), dict(pads=[1, 2], strides=[2])),
    ((9,), dict(dilations=[2], group=2)),
    ((5, 6, 4), dict(pads=[1, 0, 1, 1, 0, 1], strides=[1, 2, 1])),
    ((4, 5, 6), dict(group=4, auto_pad="SAME_UPPER")),
])
def test_conv_1d_3d(dims, attrs):
    C, M, g = 4, 8, attrs.get("group", 1)
    x = rnd(1, C, *dims)
    w = rnd(M, C // g, *[3] * len(dims), seed=1)
    check(model("Conv", x, [w, rnd(M, seed=2)], **attrs), x)


def test_depthwise_then_pointwise():
    """A 1x1 conv reading a depthwise conv's (fused, shifted-slice) output takes the row layout."""
    x = rnd(1, 8, 26, 26)
    nodes = [helper.make_node("Conv", ["x", "Wd", "Bd"], ["d"], group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["d", "lo", "hi"], ["r"]),
             helper.make_node("Conv", ["r", "Wp"], ["y"])]
    inits = [numpy_helper.from_array(rnd(8, 1, 3, 3, seed=1), "Wd"), numpy_helper.from_array(rnd(8, seed=2), "Bd"),
             numpy_helper.from_array(np.array(0, F32), "lo"), numpy_helper.from_array(np.array(1, F32), "hi"),
             numpy_helper.from_array(rnd(12, 8, 1, 1, seed=3), "Wp")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12, 26, 26])], inits)
    check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), x)


def test_conv_without_kernel_shape_and_traced_weight():
    x, w = rnd(1, 3, 6, 6), rnd(4, 3, 3, 3, seed=1)
    check(model("Conv", x, [w]), x)
    # a weight that is a graph input (traced, not a constant)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6]),
                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    want = ReferenceEvaluator(m).run(None, {"x": x, "w": w})[0]
    with_output_shapes(m, [want])
    np.testing.assert_allclose(jitensor.onnx.compile(m)(x, w), want, rtol=1e-4, atol=1e-5)


def test_conv_bad_group():
    x = rnd(1, 6, 5, 5)
    m = model("Conv", x, [rnd(4, 3, 3, 3)], group=2)
    m.graph.node[0].attribute[0].i = 4  # C=6 is not a multiple of group=4 (the checker does not look)
    with pytest.raises(OnnxError, match="Conv"):
        jitensor.onnx.compile(m, check=False)(x)


# -- ConvTranspose --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("C,M,H,k,attrs", [
    (4, 6, 5, 3, dict()),
    (4, 6, 5, 3, dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    (4, 6, 5, 3, dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    (4, 6, 4, 2, dict(strides=[2, 2])),                                   # upsampling 2x
    (4, 4, 5, 3, dict(group=2, strides=[3, 2], dilations=[1, 2])),    # the reference fails on groups
    (4, 6, 5, 3, dict(strides=[2, 2], output_shape=[10, 11])),          # and on output_shape
    (4, 6, 5, 3, dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    (4, 6, 5, 3, dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    (6, 6, 5, 3, dict(group=6, strides=[2, 2], pads=[0, 1, 1, 0])),      # depthwise
])
def test_conv_transpose(C, M, H, k, attrs):
    g = attrs.get("group", 1)
    x = rnd(2, C, H, H + 1)
    w = rnd(C, M // g, k, k, seed=1)
    ort = g > 1 or "output_shape" in attrs
    check(model("ConvTranspose", x, [w, rnd(M, seed=2)], kernel_shape=[k, k], **attrs), x, ort=ort)


def test_conv_transpose_1d_f64():
    x = rnd(1, 3, 7, dt=F64)
    check(model("ConvTranspose", x, [rnd(3, 2, 4, dt=F64, seed=1)], strides=[3], pads=[1, 2]), x)


# -- pooling --------------------------------------------------------------------------------------------------

POOL = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1),
    dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(kernel_shape=[2, 3], auto_pad="SAME_LOWER", strides=[2, 1]),
    dict(kernel_shape=[3, 3], auto_pad="VALID", strides=[1, 2]),
    dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1]),
]


@pytest.mark.parametrize("attrs", POOL)
@pytest.mark.parametrize("dt", [F32, F64])
def test_max_pool(attrs, dt):
    x = rnd(2, 3, 9, 8, dt=dt)
    # the reference's SAME_LOWER output is one row short (out = ceil(in / stride) per the specification)
    check(model("MaxPool", x, storage_order=0, **attrs), x, ort=attrs.get("auto_pad") == "SAME_LOWER")


def test_max_pool_1d_3d_and_int():
    x = rnd(1, 2, 11)
    check(model("MaxPool", x, kernel_shape=[3], strides=[2], pads=[1, 1]), x)
    x = rnd(1, 2, 5, 6, 4)
    check(model("MaxPool", x, kernel_shape=[2, 2, 2], strides=[2, 2, 1], ceil_mode=1), x, ort=True)
    xi = np.random.default_rng(0).integers(-100, 100, (1, 2, 6, 6)).astype(np.int8)
    g = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 2, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rt = pytest.importorskip("onnxruntime")  # the reference pads integers with NaN
    want = rt.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": xi})[0]
    np.testing.assert_array_equal(jitensor.onnx.compile(with_output_shapes(m, [want]))(xi), want)


def test_max_pool_larger():
    x = rnd(1, 16, 40, 40)
    check(model("MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), x)


def test_max_pool_indices_unsupported():
    x = rnd(1, 2, 4, 4)
    m = model("MaxPool", x, n_out=2, kernel_shape=[2, 2])
    m.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64
    with_output_shapes(m, [np.zeros((1, 2, 3, 3))] * 2)
    with pytest.raises(OnnxError, match="Indices output is not supported"):
        jitensor.onnx.compile(m)(x)


@pytest.mark.parametrize("attrs", POOL[:6] + [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    dict(kernel_shape=[3, 3], pads=[2, 1, 0, 1], count_include_pad=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
])
@pytest.mark.parametrize("dt", [F32, F64])
def test_average_pool(attrs, dt):
    x = rnd(2, 3, 9, 8, dt=dt)
    check(model("AveragePool", x, opset=19 if "dilations" in attrs else 17, **attrs), x)


def test_average_pool_dilated_1d():
    x = rnd(1, 2, 12)
    check(model("AveragePool", x, opset=19, kernel_shape=[3], dilations=[2], pads=[1, 2]), x)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    x = rnd(1, 3, 7, 7)
    check(model("LpPool", x, opset=18, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], p=p), x)
    check(model("GlobalLpPool", x, p=p), x, ort=True)  # not in the reference


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 7), (1, 4, 9), (1, 3, 2, 3, 4)])
def test_global_pool(op, shape):
    x = rnd(*shape, dt=F64 if len(shape) == 3 and op == "GlobalAveragePool" else F32)
    check(model(op, x), x, ort=op == "GlobalMaxPool")  # the reference's GlobalMaxPool is 4D only


# -- Pad --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 2, 1], [0, 1, 0, 3, 0, 0, 4, 0], [0, 0, -1, 2, 0, 0, 1, -2]])
def test_pad(mode, pads):
    x = rnd(2, 3, 5, 6)
    consts = [np.array(pads, np.int64)] + ([np.array(1.5, F32)] if mode == "constant" else [])
    check(model("Pad", x, consts, opset=19, mode=mode), x, ort=min(pads) < 0)  # the reference: no cropping


def test_pad_int():
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    for mode, value in (("constant", 7), ("reflect", None), ("edge", None)):
        consts = [np.array([0, 2, 1, 0, 1, 3], np.int64)] + ([np.array(value, np.int32)] if value else [])
        m = model("Pad", x.astype(F32), consts, opset=19, mode=mode)
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT32
        m.graph.output[0].type.tensor_type.elem_type = TensorProto.INT32
        want = ReferenceEvaluator(m).run(None, {"x": x})[0]
        got = jitensor.onnx.compile(with_output_shapes(m, [want]))(x)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)


def test_pad_axes_and_old_opset():
    x = rnd(2, 3, 5, 6, dt=F64)
    check(model("Pad", x, [np.array([1, 2, 3, 0], np.int64), None, np.array([-1, 1], np.int64)], opset=18,
                mode="reflect"), x)
    check(model("Pad", x, opset=10, pads=[0, 0, 1, 1, 0, 0, 1, 1], value=-2.0), x)
    check(model("Pad", x, [np.array([0, 0, 7, 1, 0, 0, 6, 2], np.int64)], opset=19, mode="wrap"), x)  # > size


# -- Resize ------------------------------------------------------------------------------------------------------

RESIZE = [
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 1.5, 0.6], None),
    ("nearest", "align_corners", "round_prefer_ceil", None, [2, 3, 7, 4]),
    ("nearest", "tf_half_pixel_for_nn", "ceil", [1, 1, 3, 2], None),
    ("nearest", "pytorch_half_pixel", "round_prefer_floor", None, [2, 3, 1, 9]),
    ("linear", "half_pixel", None, [1, 1, 2, 2], None),
    ("linear", "align_corners", None, None, [2, 3, 9, 5]),
    ("linear", "asymmetric", None, [1, 1, 0.5, 1.7], None),
    ("linear", "pytorch_half_pixel", None, None, [2, 3, 1, 12]),
    ("linear", "half_pixel_symmetric", None, [1, 1, 1.5, 0.75], None),
    ("cubic", "half_pixel", None, [1, 1, 2, 1.5], None),
    ("cubic", "align_corners", None, None, [2, 3, 4, 7]),
]


@pytest.mark.parametrize("mode,ctm,nearest,scales,sizes", RESIZE)
@pytest.mark.parametrize("dt", [F32, F64])
def test_resize(mode, ctm, nearest, scales, sizes, dt):
    if ctm == "tf_half_pixel_for_nn" and dt == F64:
        pytest.skip("the reference lacks tf_half_pixel_for_nn and onnxruntime float64 Resize")
    x = rnd(2, 3, 5, 6, dt=dt)
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
    if nearest:
        attrs["nearest_mode"] = nearest
    consts = [None, None if scales is None else np.array(scales, F32),
              None if sizes is None else np.array(sizes, np.int64)]
    tol = dict(rtol=1e-6, atol=1e-5) if mode == "cubic" and dt == F64 else None  # the reference: float32 weights
    check(model("Resize", x, consts, opset=19, **attrs), x, tol=tol, ort=ctm == "tf_half_pixel_for_nn")


def test_resize_more():
    x = rnd(1, 2, 6, 8)
    # cubic with exclude_outside and another coefficient
    check(model("Resize", x, [None, np.array([1, 1, 0.7, 1.6], F32)], opset=19, mode="cubic",
                cubic_coeff_a=-0.5, exclude_outside=1), x)
    # axes and keep_aspect_ratio_policy (opset 18)
    check(model("Resize", x, [None, None, np.array([9, 9], np.int64)], opset=18, mode="linear", axes=[2, 3],
                keep_aspect_ratio_policy="not_larger"), x)
    check(model("Resize", x, [None, None, np.array([9, 9], np.int64)], opset=18, mode="nearest", axes=[2, 3],
                keep_aspect_ratio_policy="not_smaller"), x)
    # tf_crop_and_resize with an roi and extrapolation
    check(model("Resize", x, [np.array([0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2], F32), None,
                              np.array([1, 2, 5, 7], np.int64)], opset=13, mode="linear",
                coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=3.0), x)
    # opset 11 signature with an empty scales input, and a larger integer upsampling
    check(model("Resize", x, [np.zeros(0, F32), np.zeros(0, F32), np.array([1, 2, 12, 24], np.int64)],
                opset=11, mode="nearest"), x)
    x = rnd(1, 8, 20, 20)
    check(model("Resize", x, [None, np.array([1, 1, 2, 2], F32)], opset=13, mode="linear"), x)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10_and_upsample(mode):
    x = rnd(1, 2, 5, 6)
    check(model("Resize", x, [np.array([1, 1, 2, 1.5], F32)], opset=10, mode=mode), x, ort=True)  # (reference: no)
    check(model("Upsample", x, [np.array([1, 1, 2, 3], F32)], opset=9, mode=mode), x, ort=mode == "linear")
    check(model("Upsample", x, opset=7, mode=mode, scales=[1.0, 1.0, 3.0, 2.0]), x, ort=True)


def test_resize_antialias_downscale_unsupported():
    x = rnd(1, 1, 8, 8)
    m = model("Resize", x, [None, np.array([1, 1, 0.5, 0.5], F32)], opset=18, mode="linear", antialias=1)
    with_output_shapes(m, [np.zeros((1, 1, 4, 4))])
    with pytest.raises(OnnxError, match="antialias"):
        jitensor.onnx.compile(m)(x)


# -- normalizations and rearrangements -------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [F32, F64])
def test_instance_norm(dt):
    x = rnd(2, 3, 5, 4, dt=dt)
    check(model("InstanceNormalization", x, [rnd(3, dt=dt, seed=1), rnd(3, dt=dt, seed=2)], epsilon=1e-3), x)


def test_lrn():
    x = rnd(2, 7, 4, 5)  # the reference evaluator's LRN loops over the batch instead of the channels
    check(model("LRN", x, size=3, alpha=1e-3, beta=0.75, bias=2.0), x, ort=True)
    check(model("LRN", x, size=5, alpha=1e-2, beta=0.6), x, ort=True)
    # an even size (onnxruntime refuses): channels c - 1 .. c + 2, by the specification's formula
    sq = np.pad(x * x, [(0, 0), (1, 2), (0, 0), (0, 0)])
    want = x / (1.0 + 1e-2 / 4 * sum(sq[:, j:j + 7] for j in range(4))) ** 0.6
    m = with_output_shapes(model("LRN", x, size=4, alpha=1e-2, beta=0.6), [want])
    np.testing.assert_allclose(jitensor.onnx.compile(m)(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    x = rnd(2, 12, 3, 4)
    check(model("DepthToSpace", x, blocksize=2, mode=mode), x)


def test_space_to_depth():
    x = rnd(2, 3, 6, 9, dt=F64)
    check(model("SpaceToDepth", x, blocksize=3), x)


def test_batch_norm_and_softmax():
    x = rnd(2, 4, 3, 3)
    bn = [rnd(4, seed=1), rnd(4, seed=2), rnd(4, seed=3), np.abs(rnd(4, seed=4)) + 0.5]
    check(model("BatchNormalization", x, bn, epsilon=1e-3), x)
    check(model("Softmax", x, axis=1), x)
    check(model("LogSoftmax", x, opset=11, axis=2), x, ort=True)  # the reference: not flattened before 13


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_norm(axis):
    x = rnd(2, 3, 4, dt=F64)
    shape = x.shape[axis:]
    check(model("LayerNormalization", x, [rnd(*shape, dt=F64, seed=1), rnd(*shape, dt=F64, seed=2)], axis=axis,
                epsilon=1e-3), x)


# -- BatchNormalization folding --------------------------------------------------------------------------------

def _conv_bn_model(bias: bool, shared_output: bool = False):
    rng = np.random.default_rng(0)
    C, M = 3, 5
    inits = [numpy_helper.from_array(rng.standard_normal((M, C, 3, 3)).astype(F32), "W")]
    conv_in = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(M).astype(F32), "B"))
        conv_in.append("B")
    for n, v in (("s", rng.standard_normal(M)), ("b", rng.standard_normal(M)), ("m", rng.standard_normal(M)),
                 ("v", rng.random(M) + 0.5)):
        inits.append(numpy_helper.from_array(v.astype(F32), n))
    nodes = [helper.make_node("Conv", conv_in, ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if shared_output:
        nodes.append(helper.make_node("Neg", ["c"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 6, 6])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("bias", [True, False])
def test_fold_batchnorm(bias):
    m = _conv_bn_model(bias)
    x = rnd(1, 3, 6, 6)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    with_output_shapes(m, [want])
    opt = optimize(m)
    assert [n.op_type for n in opt.graph.node] == ["Conv", "Relu"]
    assert [n.op_type for n in m.graph.node] == ["Conv", "BatchNormalization", "Relu"]  # the input is untouched
    assert {t.name for t in opt.graph.initializer} == {"W_bnfold", "B_bnfold" if bias else "W_bias_bnfold"}
    onnx.checker.check_model(opt)
    np.testing.assert_allclose(jitensor.onnx.compile(opt)(x), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jitensor.onnx.compile(m)(x), want, rtol=1e-4, atol=1e-5)


def test_fold_batchnorm_skips_shared_conv_output():
    m = _conv_bn_model(True, shared_output=True)
    assert [n.op_type for n in optimize(m).graph.node] == [n.op_type for n in m.graph.node]
