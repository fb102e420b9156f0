"""Fusion decisions (graph/passes/fuse.py) and the kernels they produce: results match numpy on odd
shapes, dtypes, views and NaN/inf, and the fused groups are what the plan promises (one kernel each)."""
import numpy as np
import pytest

import jitensor
from helpers import check
from test_everyday import black_scholes

rng = np.random.default_rng(7)


def kernels(fn, *args):
    """The number of kernels jitensor compiles fn into, read from its loop-IR dump."""
    return jitensor.explain(fn, *args, what=("loop",)).count("\nkernel ")


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x, g, b):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def mlp(x, w, b):
    return np.maximum(x @ w + b, 0)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (5, 1000), (2, 3, 33)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_one_kernel(shape, dtype):
    x = rng.standard_normal(shape).astype(dtype) * 10
    check(softmax, x, rtol="trans")
    assert kernels(softmax, x) == 1


def test_softmax_nan_inf_rows_and_views():
    x = rng.standard_normal((6, 40)).astype(np.float32)
    x[1, 3] = np.nan
    x[2, :] = -np.inf          # a row of -inf: numpy gives NaN (inf - inf)
    x[3, 5] = np.inf
    check(softmax, x, rtol="trans")
    check(softmax, x[::-2, 3:], rtol="trans")   # negative strides and an offset view
    check(softmax, x.T.copy()[::3], rtol="trans")


@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 129)], ids=str)
def test_layernorm_one_kernel(shape):
    x = rng.standard_normal(shape).astype(np.float32)
    g, b = rng.standard_normal(shape[-1:]).astype(np.float32), rng.standard_normal(shape[-1:]).astype(np.float32)
    check(layernorm, x, g, b, rtol="trans")
    assert kernels(layernorm, x, g, b) == 1


def test_full_reduction_epilogue_in_one_kernel():
    f = lambda x: x / x.sum()  # noqa: E731  (the sum is computed before the loop that divides)
    x = rng.random((31, 9)).astype(np.float64)
    check(f, x, rtol="trans")
    assert kernels(f, x) == 1


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 5, 3), (13, 40, 37), (6, 300, 32), (70, 33, 65)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_epilogue_odd_shapes(m, k, n, dtype):
    x, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    check(mlp, x, w, b, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4 if dtype == np.float32 else 1e-10)
    assert kernels(mlp, x, w, b) == 1


def test_matmul_epilogue_transposed_batched_and_transcendental():
    f = lambda x, w, s: np.tanh(np.matmul(x, w.swapaxes(-1, -2)) * s[:, None])  # noqa: E731
    x = rng.standard_normal((3, 11, 20)).astype(np.float32)
    w = rng.standard_normal((3, 9, 20)).astype(np.float32)
    s = rng.standard_normal(11).astype(np.float32)
    check(f, x, w, s, rtol=1e-4, atol=1e-5)
    assert kernels(f, x, w, s) == 1


def test_matmul_epilogue_nan_propagates():
    x = rng.standard_normal((8, 8)).astype(np.float32)
    x[2, 3] = np.nan
    w = rng.standard_normal((8, 40)).astype(np.float32)
    check(mlp, x, w, np.zeros(40, np.float32), rtol=1e-5, atol=1e-5)


def test_matmul_used_twice_gets_a_buffer():
    f = lambda x, w: (x @ w) * 2 + (x @ w).sum(axis=1, keepdims=True)  # noqa: E731
    x, w = rng.standard_normal((9, 5)), rng.standard_normal((5, 7))
    check(f, x, w, rtol=1e-10, atol=1e-10)


def test_shared_expensive_node_across_kernels():
    # exp(x) feeds a column reduction and the output: two kernels, so it is computed once into a buffer
    f = lambda x: np.exp(x) / np.exp(x).sum(axis=0)  # noqa: E731
    x = rng.standard_normal((17, 6)).astype(np.float32)
    check(f, x, rtol="trans")


@pytest.mark.parametrize("shape", [(3, 1000), (7, 1021), (4, 2, 600)], ids=str)
def test_row_kernels_prefetch_the_next_row(shape):
    """Long rows get a prefetch of row + 1 in their second pass (the last row's points past the data,
    which a prefetch may); short rows get none. Results are unchanged either way."""
    x = rng.standard_normal(shape).astype(np.float32)
    loop = jitensor.explain(softmax, x, what=("loop",))
    assert ("prefetch in0" in loop) == (shape[-1] * 4 >= 2048)
    check(softmax, x, rtol="trans")
    check(softmax, x[::-1], rtol="trans")
    g, b = np.ones(shape[-1], np.float32), np.zeros(shape[-1], np.float32)
    check(layernorm, x, g, b, rtol="trans", atol=1e-5)  # values near the mean: cancellation in numpy's mean


@pytest.mark.parametrize("shape,axis", [((300, 1024), 0), ((257, 1000), 0), ((64, 100), 0), ((5, 64, 640), 1),
                                        ((33, 4, 1536), (0, 1)), ((40, 2048), 0)], ids=str)
@pytest.mark.parametrize("op", ["sum", "max", "min", "mean", "sumsq"])
def test_column_reductions_in_parallel_blocks(shape, axis, op):
    """Reductions over leading axes run as a parallel loop over blocks of columns when the columns split
    into blocks (results, NaN and -0.0 included, as numpy's)."""
    fns = {"sum": lambda x: x.sum(axis=axis), "max": lambda x: x.max(axis=axis), "min": lambda x: x.min(axis=axis),
           "mean": lambda x: x.mean(axis=axis), "sumsq": lambda x: (x * x).sum(axis=axis)}
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::97] = np.nan if op in ("max", "min") else 0.0
    # float32 sums: numpy accumulates row after row in float32 (errors ~4e-5 here); ours are split in
    # parallel parts of fewer rows each, so they differ from numpy's by numpy's own error
    atol = 1e-4 if op in ("sum", "mean", "sumsq") else 0.0
    check(fns[op], x, rtol=1e-5, atol=atol)
    check(fns[op], x[..., ::-1], rtol=1e-5, atol=atol)
    if atol and shape == (300, 1024):  # (split into parallel parts: at least as accurate as numpy)
        exact = fns[op](x.astype(np.float64))
        assert np.abs(jitensor.jit(fns[op])(x) - exact).max() <= np.abs(fns[op](x) - exact).max() + 1e-7
    if shape == (300, 1024):
        assert "for cb in 0..2:  # parallel" in jitensor.explain(fns[op], x, what=("loop",))


def unrolled16(x):
    for _ in range(16):
        x = x * 0.5 + np.sin(x) * 0.25
    return x


ONE_KERNEL = {
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3))),
    "black_scholes": lambda x: black_scholes(x + 1.0, x * 1.1 + 1.0, x * 0.3 + 0.1, 0.02, 0.3),  # call and put
    "unrolled16": unrolled16,
    "mse": lambda x: np.mean((x - 0.5) ** 2),
    "huber": lambda x: np.where(np.abs(x) < 1.0, 0.5 * x ** 2, np.abs(x) - 0.5).mean(),
    "norm": lambda x: np.linalg.norm(x),
}


def test_concat_fuses_into_one_kernel_per_piece():
    """A concatenation under elementwise ops: each piece's kernel computes its producers and the ops above the
    concatenation, and stores straight into the output (no temporaries)."""
    fn = lambda x: np.concatenate([x * 2, np.exp(x)]) + 1  # noqa: E731
    x = rng.random(1003).astype(np.float32)
    check(fn, x, rtol="trans")
    text = jitensor.explain(fn, x, what=("loop",))
    assert kernels(fn, x) == 2, text
    assert "k0_add_0(" in text and "k0_add_1(" in text and " t0" not in text, text


@pytest.mark.parametrize("name", sorted(ONE_KERNEL))
def test_one_kernel_each(name):
    x = rng.random(1003).astype(np.float32)
    check(ONE_KERNEL[name], x, rtol="trans")
    assert kernels(ONE_KERNEL[name], x) == 1


@pytest.mark.parametrize("fn,n", [
    (lambda x: (x * 2, x + 1), 1),                       # independent: one loop, two stores
    (lambda x: (x * 2, x * 2 + 1), 2),                   # the second reads the first: kept apart
    (lambda x: (x * 2, x * 2), 1),                       # the same value twice: two arrays
    (lambda x: (np.exp(x), x.astype(np.float64) * 3, x > 0.5), 1),  # dtypes differ
    (lambda x: (x[:, None] * x, x * 3), 2),              # shapes differ
    (lambda x: (x / x.sum(), x * 2), 2),                 # a reduction between them
], ids=["independent", "dependent", "same", "dtypes", "shapes", "reduction"])
def test_sibling_outputs(fn, n):
    x = rng.random(37).astype(np.float32) + 0.1
    x[[3, 20]] = np.nan, np.inf
    check(fn, x, rtol="trans")
    check(fn, x[::-2], rtol="trans")
    assert kernels(fn, x) == n


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int64, np.bool_])
@pytest.mark.parametrize("axis", [None, 0, (0, 1)], ids=["all", "0", "01"])
def test_leading_reductions_split_in_parts(dtype, axis):
    """Reductions over leading axes of large arrays run as parallel partial reductions plus a final one
    (graph/passes/split.py): every kind, dtype and NaN placement as numpy."""
    x = rng.standard_normal((512, 8, 33)) * 3
    x = (x > 0) if dtype == np.bool_ else x.astype(dtype)
    if dtype in (np.float32, np.float64):
        x[5, 3, 7] = np.nan
    fns = [lambda x: x.sum(axis=axis), lambda x: x.max(axis=axis), lambda x: x.min(axis=axis),
           lambda x: np.any(x, axis=axis), lambda x: np.all(x, axis=axis)]
    if dtype != np.bool_:
        fns.append(lambda x: (x * x).mean(axis=axis))
    # (float sums: the order differs from numpy's, so results differ by numpy's own rounding error)
    tol = {np.float32: (1e-5, 5e-4), np.float64: (1e-12, 1e-10)}.get(dtype, (0, 0))
    for fn in fns:
        check(fn, x, rtol=tol[0], atol=tol[1])
    assert "reshape" in jitensor.explain(fns[0], x, what=("fused",)).split("return")[0]


@pytest.mark.parametrize("first", [True, False])
def test_matmul_epilogue_is_never_a_sibling(first):
    """An output computed as a GEMM epilogue keeps its own kernel next to an elementwise output of its shape."""
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((8, 16), (16, 16), (16,)))
    outs = lambda x, w, b: (np.maximum(x @ w + b, 0), x * 2 + 1)  # noqa: E731
    fn = outs if first else (lambda x, w, b: outs(x, w, b)[::-1])
    check(fn, x, w, b, rtol=1e-5, atol=1e-5)
    assert kernels(fn, x, w, b) == 2
