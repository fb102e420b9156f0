"""A concatenation evaluated at its kernel's own index lowers to one kernel per piece (affine loads, contiguous
stores, each piece's own parallel loop); np.stack along an inner axis (pieces one element wide) keeps one
interleaving loop. Sizes on both sides of the parallel threshold (~64K elements), leading and inner axes,
concatenations inlined under elementwise ops, zero-width pieces, views, gathers, mixed dtypes."""
from __future__ import annotations

import numpy as np
import pytest

import jitensor
from jitensor.errors import JitensorError
from helpers import check, check_raises

ROWS = [3, 300]  # x 1000 columns: 3K elements per piece (one thread), 300K (parallel)


def _x(shape, dt=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


def cat0(x, y):
    return np.concatenate([x, y])


def cat1(x, y):
    return np.concatenate([x, y], axis=1)


def cat1_three(x, y):
    return np.concatenate([y, x[:, ::-1], y[:, :5]], axis=-1)


def cat_under_ops(x, y):
    return np.sqrt(np.abs(np.concatenate([x, y * 2], axis=1))) + 1, np.concatenate([x, -y]) * x.sum()


def cat_mixed_dtypes(x, i):
    return np.concatenate([x, i], axis=1), np.concatenate([i, i * 3], axis=0)


def cat_and_piece_outputs(x, y):
    c = np.concatenate([x, y], axis=1)
    return c, c.sum(axis=1), y + 1


def stack_inner(x, y):
    return np.stack([x, y, x], axis=-1)


def stack_outer(x, y):
    return np.stack([x, y])


def hstack_narrow(x, y):
    return np.hstack([x[:, :2], y[:, :1], x[:, 5:7]])


def cat_gather(x, idx):
    return np.concatenate([x[idx], x[:2]])


def cat_softmax(x, y):
    c = np.concatenate([x, y], axis=1)
    e = np.exp(c - c.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("rows", ROWS)
def test_leading_and_inner_axes(rows):
    x, y = _x((rows, 1000)), _x((rows, 1000), seed=1)
    check(cat0, x, y)
    check(cat1, x, y)
    check(cat1_three, x, _x((rows, 37), seed=2))
    check(cat0, x[::-1], y[:, ::-1])  # negative strides
    check(cat1, x.T[:, :rows], y.T[:, :rows])  # transposed views


@pytest.mark.parametrize("rows", ROWS)
def test_inlined_under_elementwise_ops_and_outputs(rows):
    x, y = _x((rows, 1000)), _x((rows, 1000), seed=1)
    check(cat_under_ops, x, y, rtol="trans")
    check(cat_and_piece_outputs, x, y, rtol=1e-5, atol=1e-4)  # float32 row sums of 2000 values near 0
    check(cat_softmax, x, y, rtol="trans", atol=1e-9)


@pytest.mark.parametrize("rows", ROWS)
def test_mixed_dtypes(rows):
    x = _x((rows, 1000), np.float64)
    i = np.random.default_rng(3).integers(-50, 50, (rows, 1000)).astype(np.int16)
    check(cat_mixed_dtypes, x, i)


@pytest.mark.parametrize("rows", ROWS)
def test_zero_width_and_stacks(rows):
    x, y = _x((rows, 1000)), _x((rows, 1000), seed=1)
    check(cat1, x, y[:, :0])
    check(cat0, x[:0], y)
    check(stack_inner, x, y)   # pieces one element wide: one interleaving loop
    check(stack_outer, x, y)
    check(hstack_narrow, x, y)  # pieces two and one elements wide: split


@pytest.mark.parametrize("n", [10, 100_000])
def test_gathered_piece_checks_its_indices(n):
    x = _x((n, 4))
    idx = np.array([0, n - 1, -n, 5 % n])
    check(cat_gather, x, idx)
    check_raises(cat_gather, x, np.array([0, n]), exc=JitensorError, match="out of bounds")


def test_pieces_are_separate_parallel_kernels():
    """The lowering itself: one kernel per piece, each parallel, the leading-axis pieces contiguous."""
    x, y = _x((300, 1000)), _x((300, 1000), seed=1)
    text = jitensor.explain(jitensor.jit(cat0, cache=False), x, y, what=("loop",))
    assert "k0_concat_0" in text and "k0_concat_1" in text, text
    assert text.count("# parallel") == 2 and "where" not in text, text
    text = jitensor.explain(jitensor.jit(stack_inner, cache=False), x, y, what=("loop",))
    assert "concat_1" not in text, text


def test_parallel_legal_offsets_and_windows():
    """Iterations are disjoint when every access to a written buffer is v*c + rest, one c per buffer, the
    rests spanning fewer than c elements; a constant offset (a concatenation's second piece) is fine."""
    from jitensor.loop.ir import Load, Store, c64, iadd, imul, Var, For
    from jitensor.loop.schedule import parallel_legal
    f32 = np.dtype(np.float32)
    i, j = Var("i"), Var("j")
    row = lambda off, c=10: iadd(c64(off), iadd(imul(i, c), j))  # noqa: E731
    ld = Load("x", row(0), f32)
    assert parallel_legal(For("i", 5, For("j", 10, Store("o", row(0), ld))))
    assert parallel_legal(For("i", 5, For("j", 10, Store("o", row(5000), ld))))          # offset piece
    assert parallel_legal(For("i", 5, For("j", 4, Store("o", row(3), ld))))              # rests 3..6 < 10
    assert parallel_legal(For("i", 5, For("j", 10, Store("o", row(3, c=12), ld))))      # [12i+3, 12i+12]
    assert not parallel_legal(For("i", 5, For("j", 10, Store("o", row(3, c=9), ld))))  # 9i+12 = 9(i+1)+3
    # reading the written buffer at another iteration's block: a race
    assert not parallel_legal(For("i", 5, For("j", 10, Store("o", row(0), Load("o", row(10), f32)))))
    # the same buffer with two different block sizes overlaps across iterations
    assert not parallel_legal(For("i", 5, For("j", 2, Store("o", row(0, c=4), Load("o", imul(i, 2), f32)))))
    assert parallel_legal(For("i", 5, For("j", 2, Store("o", row(0, c=4), Load("o", imul(i, 4), f32)))))
