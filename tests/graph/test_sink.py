"""sink_views: elementwise work after a matmul's layout change moves onto the product, so it becomes the GEMM
template's epilogue; values stay numpy's."""
import numpy as np
import pytest

import jitensor
from jitensor.graph.passes.sink import sink_views
from tests.helpers import check

rng = np.random.default_rng(3)
TOL = {"rtol": {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10},
       "atol": {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}}  # products reassociate


def _kernels(fn, *args):
    return jitensor.jit(fn, cache=False).lower(*args).kernels


def _epilogue_gemms(kernels):
    return [k for k in kernels if k.template and k.template[0] in ("gemm", "gemv") and dict(k.template[1]).get("epilogue")]


def conv_like(w, cols, b, res):
    y = w @ cols + b                                    # (OH, M, OW): the GEMM's layout
    y = np.moveaxis(y, 1, 0).reshape(1, *res.shape[1:])  # to NCHW
    return np.maximum(y + res, 0)                       # residual add and activation in NCHW


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("oh, m, ow, k", [(3, 8, 16, 5), (12, 16, 40, 24)])
def test_conv_layout_epilogue(dt, oh, m, ow, k):
    w = rng.standard_normal((m, k)).astype(dt)
    cols = rng.standard_normal((oh, k, ow)).astype(dt)
    b = rng.standard_normal((m, 1)).astype(dt)
    res = rng.standard_normal((1, m, oh, ow)).astype(dt)
    check(conv_like, w, cols, b, res, **TOL)
    assert len(_epilogue_gemms(_kernels(conv_like, w, cols, b, res))) == 1


def test_transpose_then_activation_is_an_epilogue():
    f = lambda a, b: np.tanh((a @ b).T) * 2  # noqa: E731
    a, b = rng.standard_normal((2, 40, 24)).astype(np.float32)[0], rng.standard_normal((24, 32)).astype(np.float32)
    check(f, a, b, **TOL)
    assert len(_epilogue_gemms(_kernels(f, a, b))) == 1


def test_view_read_twice_stays():
    def f(a, b):
        t = (a @ b).T
        return np.exp(t), t.sum()  # the view is read by two kernels: the product keeps its buffer
    a, b = rng.standard_normal((40, 24)), rng.standard_normal((24, 32))
    check(f, a, b, **TOL)


def test_pass_rewrites_the_graph():
    a, b = rng.standard_normal((16, 8)), rng.standard_normal((8, 12))
    g = jitensor.trace(lambda a, b: np.maximum((a @ b).T, 0), a, b)
    out = sink_views(g).outputs[0]
    assert out.op == "transpose" and out.inputs[0].op == "maximum" and out.inputs[0].shape == (16, 12)


def test_concatenated_operand_gets_a_buffer_and_the_template():
    # a matmul operand built by concatenation is computed into a buffer first: the product uses the GEMM template
    f = lambda a, b, w: np.concatenate([a, b], axis=0) @ w  # noqa: E731
    a, b, w = (rng.standard_normal(s).astype(np.float32) for s in ((20, 16), (12, 16), (16, 40)))
    check(f, a, b, w, **TOL)
    assert any(k.template and k.template[0] == "gemm" for k in _kernels(f, a, b, w))
