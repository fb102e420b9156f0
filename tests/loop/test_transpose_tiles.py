"""Tiled transposes (loop/schedule.py `transpose_tiles`): kernels that store in one layout and load in another
are tiled with a replayable `Tile` step when a tile side divides both extents, and keep their values; other
kernels are left alone."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import jitensor
from jitensor.loop import interp as loop_interp
from jitensor.graph.passes.fuse import plan_fusion
from jitensor.loop.ir import For
from jitensor.loop.lower import NotRowLocal, lower, plan_buffers
from jitensor.loop.primitives import Tile, apply
from jitensor.loop.schedule import collapse, default_schedule, transpose_tiles
from jitensor.target import host

from helpers import check

rng = np.random.default_rng(11)


def kernels_of(fn, *args):
    """The program's kernels before scheduling, plus buffers for the interpreter (inputs filled in)."""
    g = jitensor.jit(fn, cache=False).lower(*args).optimized
    layouts = [tuple(s // a.itemsize for s in a.strides) for a in args]
    force = frozenset()
    while True:
        plan = plan_fusion(g, force)
        bufs = plan_buffers(g, plan, layouts)
        try:
            ks = lower(g, plan, bufs)
            break
        except NotRowLocal as e:
            force = force | {id(e.node)}
    by_slot = {b.slot: b for b in bufs.slots.values()}
    init = {b.name: np.full(b.size, 7, b.dtype) for b in by_slot.values()}
    for i, slot in enumerate(bufs.inputs):  # (contiguous inputs only)
        init[by_slot[slot].name] = args[i].ravel().copy()
    return ks, init


def steps_of(fn, *args):
    ks, _ = kernels_of(fn, *args)
    return [transpose_tiles(collapse(k.body)) for k in ks]


def test_tiles_a_transposing_kernel():
    x = rng.standard_normal((64, 96))
    (steps,) = steps_of(lambda x: x.T * 2, x)
    assert steps == [Tile(("i0", "i1"), (32, 32))]
    (steps,) = steps_of(lambda x: x + x.T, rng.standard_normal((48, 48)))
    assert steps == [Tile(("i0", "i1"), (16, 16))]
    (steps,) = steps_of(lambda x: x.swapaxes(1, 2) + 1, rng.standard_normal((3, 40, 24)))
    assert steps == [Tile(("i1", "i2"), (8, 8))]


def test_leaves_other_kernels_alone():
    x = rng.standard_normal((64, 64))
    assert steps_of(lambda x: x * 2 + 1, x) == [[]]  # contiguous: one collapsed loop
    assert steps_of(lambda x, y: x[:, None] * y[None, :], x[0], x[1]) == [[]]  # broadcasts, no transpose
    assert steps_of(lambda x: x.T * 2, rng.standard_normal((65, 64))) == [[]]  # no tile divides 65
    assert steps_of(lambda x: x.T * 2, rng.standard_normal((8, 64))) == [[]]  # a single tile: nothing to gain
    assert all(s == [] for s in steps_of(lambda x: (x.T * x.T).sum(axis=1), x))  # a row reduction


@pytest.mark.parametrize("shape", [(64, 96), (48, 48), (3, 40, 24)], ids=str)
def test_tiled_kernel_gives_identical_buffers(shape):
    """The loop-IR interpreter: the tiled kernel writes exactly what the untiled one does."""
    x = rng.standard_normal(shape)
    fn = (lambda x: x.T + x.T * 0.5) if len(shape) == 2 else (lambda x: x.swapaxes(1, 2) - 1)
    (k,), init = kernels_of(fn, x)
    body = collapse(k.body)
    tiled = apply(replace(k, body=body), transpose_tiles(body))
    assert tiled.body != body
    want = {n: a.copy() for n, a in init.items()}
    got = {n: a.copy() for n, a in init.items()}
    loop_interp.run(k, want)
    loop_interp.run(tiled, got)
    for name in want:
        assert np.array_equal(want[name], got[name]), name
    sched = default_schedule(k, host())
    assert isinstance(sched.body, For) and sched.body.kind == "parallel"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int8])
@pytest.mark.parametrize("n", [31, 32, 64, 96, 130, 256], ids=str)
def test_values_on_both_sides_of_the_tile_sizes(n, dtype):
    x = (rng.standard_normal((n, n)) * 50).astype(dtype)
    check(lambda x: x + x.T, x)
    check(lambda x: x.T.copy(), x)
    check(lambda x: (x - x.T, x * 2 + x.T), x)  # two outputs from one loop
    check(lambda x: x[::-1].T * 3, x)  # negative strides
    check(lambda x: x.T[::2] + x[::2], x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swapaxes_and_large(dtype):
    x = rng.standard_normal((4, 64, 96)).astype(dtype)
    check(lambda x: x.swapaxes(1, 2).copy(), x)
    check(lambda x: np.transpose(x, (2, 1, 0)) + 1, x)
    check(lambda x: x.swapaxes(-1, -2) * x.swapaxes(-1, -2), x[:, :, :64])
    big = rng.standard_normal((1024, 512)).astype(dtype)
    check(lambda x: x.T + 1, big)
    check(lambda x, y: x + y.T, big[:512], big[:512].T.copy())
