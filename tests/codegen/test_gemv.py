"""The matrix-vector template: skinny matmuls (one side of at most GEMV_MAX / DOT_MAX vectors) on both sides of every
switch: GEMV vs GEMM, "dot" vs "axpy" layouts, below/above the parallel threshold, with epilogues, views
and several outputs. numpy is the spec."""
import numpy as np
import pytest

import jitensor
from jitensor.codegen.gemv import DOT_MAX, GEMV_MAX
from jitensor.runtime import threads

from helpers import check

rng = np.random.default_rng(7)
TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-11}
DTYPES = [np.float32, np.float64]


def rnd(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def chk(fn, *args):
    dt = np.result_type(*args)
    check(fn, *args, rtol=TOL[dt], atol=TOL[dt])


def templates(fn, *args):
    """The templates of fn's kernels, with their form ("gemv:dot", "gemv:axpy", "gemm")."""
    out = []
    for line in jitensor.explain(fn, *args, what=("loop",)).splitlines():
        if "# template gemv" in line:
            out.append("gemv:" + ("dot" if "'form': 'dot'" in line else "axpy") + (":epi" if "'epilogue'" in line else ""))
        elif "# template gemm" in line:
            out.append("gemm" + (":epi" if "'epilogue'" in line else ""))
    return out


def ax(a, x):
    return a @ x


def xa(a, y):
    return y @ a


# sizes: tiny (below the parallel threshold), odd, K below/above a vector and the unrolled step, and large
# enough to be split across threads; K=1, M=1, N=1
SHAPES = [(1, 1), (1, 9), (9, 1), (3, 5), (7, 17), (31, 64), (33, 257), (513, 129), (700, 300), (130, 1025)]


@pytest.mark.parametrize("m,k", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_vector_both_sides(m, k, dtype):
    a, x, y = rnd(m, k, dtype=dtype), rnd(k, dtype=dtype), rnd(m, dtype=dtype)
    chk(ax, a, x)
    chk(xa, a, y)
    chk(lambda a, x: a.T @ (a @ x), a, x)
    assert templates(ax, a, x)[0].startswith("gemv")
    assert templates(xa, a, y)[0].startswith("gemv")


@pytest.mark.parametrize("dtype", DTYPES)
def test_forms_follow_the_layout(dtype):
    a = rnd(70, 40, dtype=dtype)
    x, y = rnd(40, dtype=dtype), rnd(70, dtype=dtype)
    assert templates(ax, a, x) == ["gemv:dot"]  # rows of A are contiguous along k
    assert templates(xa, a, y) == ["gemv:axpy"]  # rows of A are contiguous along the output
    at = np.asfortranarray(a)
    assert templates(ax, at, x) == ["gemv:axpy"]
    assert templates(xa, at, y) == ["gemv:dot"]
    for arr in (a, at):
        chk(ax, arr, x)
        chk(xa, arr, y)
    # neither side contiguous: the GEMM template (which packs) takes it
    s = rnd(140, 80, dtype=dtype)[::2, ::2]
    assert templates(ax, s, x) == ["gemm"]
    chk(ax, s, x)
    chk(xa, s, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_switch_to_gemm_past_the_limits(dtype):
    a = rnd(37, 29, dtype=dtype)
    for s in sorted({2, DOT_MAX, DOT_MAX + 1, GEMV_MAX, GEMV_MAX + 1}):
        xs, ys = rnd(29, s, dtype=dtype), rnd(s, 37, dtype=dtype)
        assert templates(ax, a, xs) == (["gemv:dot"] if s <= DOT_MAX else ["gemm"])
        assert templates(xa, a, ys) == (["gemv:axpy"] if s <= GEMV_MAX else ["gemm"])
        # the matrix transposed: the forms swap; axpy into a strided output is left to GEMM
        assert templates(xa, np.asfortranarray(a), ys) == (["gemv:dot"] if s <= DOT_MAX else ["gemm"])
        assert templates(ax, np.asfortranarray(a), xs) == ["gemm"]
        chk(ax, a, xs)
        chk(xa, a, ys)
        chk(xa, np.asfortranarray(a), ys)
        chk(ax, np.asfortranarray(a), xs)
        chk(ax, a, np.asfortranarray(xs))  # the vectors strided along k
        chk(ax, a, rnd(s, 29, dtype=dtype).T)  # the vectors as a transposed view
        chk(lambda a, y: y.T @ a, a, rnd(37, s, dtype=dtype)[:, ::-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_views_strides_and_negative_strides(dtype):
    base = rnd(91, 67, dtype=dtype)
    x, y = rnd(134, dtype=dtype), rnd(200, dtype=dtype)
    chk(lambda a, x: a[::-1, 1:] @ x[::-2][1:], base, x)
    chk(lambda a, y: y[3:94] @ a[:, ::-1], base, y)
    chk(lambda a, x: a.T[::-1] @ x[:91], base, x)
    chk(lambda a, y: y[:67][::-1] @ a.T, base, y)
    chk(lambda a, x: a[::3] @ x[:67], base, x)
    chk(lambda x, y: x[::2] @ y[1::3][:67], x, y)  # 1 x 1: a dot product of two strided vectors
    chk(lambda x, y: x[:67] @ y[:67], x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_epilogues(dtype):
    a = rnd(45, 38, dtype=dtype)
    x, b = rnd(38, dtype=dtype), rnd(45, dtype=dtype)
    xs, bs = rnd(38, 3, dtype=dtype), rnd(3, dtype=dtype)
    ys, cs = rnd(2, 45, dtype=dtype), rnd(38, dtype=dtype)
    f = lambda a, xs, bs: np.maximum(a @ xs + bs, 0)  # noqa: E731
    g = lambda a, ys, cs: np.tanh(ys @ a * 2 - cs)  # noqa: E731
    assert templates(f, a, xs, bs) == ["gemv:dot:epi"]
    assert templates(g, a, ys, cs) == ["gemv:axpy:epi"]
    chk(f, a, xs, bs)
    chk(g, a, ys, cs)
    chk(lambda a, x, b: np.maximum(a @ x + b, 0), a, x, b)
    chk(lambda a, x, b: np.exp(x @ a.T[:, :45] - b), a, x, b)
    # 1-D results (numpy's shape of a matrix-vector product) take the epilogue too: one kernel
    f1 = lambda a, x, b: np.maximum(a @ x + b, 0)  # noqa: E731
    g1 = lambda a, y, c: np.tanh(y @ a * 2 - c)  # noqa: E731
    assert templates(f1, a, x, b) == ["gemv:dot:epi"]
    assert templates(g1, a, ys[0], cs) == ["gemv:axpy:epi"]
    chk(g1, a, ys[0], cs)
    h1 = lambda A, X: np.exp(np.matmul(A, X[..., None])[..., 0] * 0.1)  # noqa: E731
    A3, X3 = rnd(3, 45, 38, dtype=dtype), rnd(3, 38, dtype=dtype)
    assert templates(h1, A3, X3) == ["gemv:dot:epi"]
    chk(h1, A3, X3)
    # large, odd, split across threads
    a2, ys2, cs2 = rnd(300, 1001, dtype=dtype), rnd(3, 300, dtype=dtype), rnd(1001, dtype=dtype)
    chk(g, a2, ys2, cs2)
    chk(f, a2.T, rnd(300, 4, dtype=dtype), rnd(4, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_matvec(dtype):
    a = rnd(5, 33, 20, dtype=dtype)
    x = rnd(5, 20, dtype=dtype)
    f = lambda a, x: (a @ x[..., None])[..., 0]  # noqa: E731
    assert templates(f, a, x)[0].startswith("gemv")
    chk(f, a, x)
    chk(lambda a, x: x[:, None, :] @ a.swapaxes(1, 2), a, x)
    chk(lambda a, x: np.exp(a @ x[0][:, None]) + 1, a, x)  # the vector broadcast over the batch
    big = rnd(3, 400, 300, dtype=dtype)
    chk(f, big, rnd(3, 300, dtype=dtype))
    chk(lambda a, x: a[:, ::-1] @ x[::-1, :, None], big, rnd(3, 300, dtype=dtype))


def test_several_outputs_each_reading_a_matvec():
    a = rnd(300, 200)
    x, y, u, w = rnd(200), rnd(300), rnd(300), rnd(200)
    chk(lambda a, x, y: (np.exp(a @ x), np.exp(a @ y[:200])), a, x, y)
    check(lambda a, x, y, u, w: (u + a @ x, w + y @ a), a, x, y, u, w, rtol=1e-11, atol=1e-11)
    check(lambda a, x, y: (a @ x, y @ a, a.T @ (a @ x)), a, x, y, rtol=1e-11, atol=1e-11)


def test_nan_and_inf_propagate():
    a = rnd(50, 41)  # K = 41: a masked tail in float32 and float64
    a[3, 7] = np.nan
    a[10, 40] = np.inf  # the last column: in the masked tail of the row
    x, y = rnd(41), rnd(50)
    chk(ax, a, x)
    chk(xa, a, y)
    chk(ax, a, np.zeros(41))  # inf * 0 and nan * 0 give NaN, in those rows only
    x2 = x.copy()
    x2[40] = np.inf
    chk(ax, rnd(50, 41), x2)
    chk(ax, a.astype(np.float32), x2.astype(np.float32))


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_any_split_of_the_range(monkeypatch, native):
    """Three threads on odd sizes: each thread's part starts and ends inside a row group / output block."""
    monkeypatch.setattr(threads, "_pool", threads.Pool(3, native=native))
    for dtype in DTYPES:
        a = rnd(1027, 301, dtype=dtype)
        chk(ax, a, rnd(301, dtype=dtype))
        chk(xa, a.T, rnd(1027, dtype=dtype)[:301])
        chk(xa, rnd(257, 1031, dtype=dtype), rnd(257, dtype=dtype))
        chk(lambda a, ys: ys @ a, rnd(257, 1031, dtype=dtype), rnd(3, 257, dtype=dtype))


def test_integer_and_mixed_dtypes_keep_numpy_types():
    a = rng.integers(-5, 5, (20, 13)).astype(np.int32)
    x = rng.integers(-5, 5, 13).astype(np.int64)
    check(ax, a, x)
    chk(ax, a.astype(np.float32), x.astype(np.float64))
    chk(xa, a.astype(np.float32), rnd(20, dtype=np.float32))
