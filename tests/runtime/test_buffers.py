"""The pool that recycles large outputs: a block is reused only when no array refers to it."""
import gc

import numpy as np
import pytest

import jitensor
from jitensor.runtime.buffers import ALIGN, MIN_BYTES, BufferPool

N = MIN_BYTES // 4 + 1000  # float32 elements: just over the pooling threshold


def test_reuses_a_block_once_its_array_is_gone():
    p = BufferPool(limit=1 << 30)
    a = p.empty((N,), np.float32)
    addr = a.ctypes.data
    del a
    b = p.empty((N,), np.float32)
    assert b.ctypes.data == addr
    assert p.stats()["blocks"] == 1


def test_never_hands_out_memory_still_referenced():
    p = BufferPool(limit=1 << 30)
    a = p.empty((N,), np.float32)
    v = a[10:20]  # a view keeps the block busy after `a` is gone
    del a
    b = p.empty((N,), np.float32)
    assert not np.shares_memory(b, v)
    del v
    c = p.empty((N,), np.float32)  # now the first block is free again
    assert p.stats()["blocks"] == 2
    assert not np.shares_memory(b, c)


def test_blocks_are_aligned_and_shaped():
    p = BufferPool(limit=1 << 30)
    for shape, dt in [((N,), np.float32), ((512, 1024), np.float64), ((3, 700, 700), np.int16)]:
        a = p.empty(shape, dt)
        assert a.shape == shape and a.dtype == dt and a.flags.c_contiguous and a.flags.writeable
        assert a.ctypes.data % ALIGN == 0


def test_small_arrays_and_a_zero_limit_bypass_the_pool():
    p = BufferPool(limit=1 << 30)
    p.empty((10,), np.float32)
    assert p.stats()["blocks"] == 0
    off = BufferPool(limit=0)
    off.empty((N,), np.float32)
    assert off.stats()["blocks"] == 0


def test_limit_evicts_idle_blocks_and_never_grows_past_it():
    size = N * 4
    p = BufferPool(limit=2 * size + 100)
    a, b = p.empty((N,), np.float32), p.empty((N,), np.float32)
    c = p.empty((N,), np.float32)  # over the cap, nothing idle: a plain array outside the pool
    assert p.stats()["bytes"] <= p.limit and c.base is None
    del a
    d = p.empty((N + 16,), np.float32)  # another size: the idle block is dropped to make room
    assert p.stats()["bytes"] <= p.limit
    del b, c, d
    assert p.release() > 0
    assert p.stats()["bytes"] == 0


def test_jit_outputs_survive_later_calls():
    f = jitensor.jit(lambda x: x * 2.0)
    x = np.arange(N, dtype=np.float32)
    r1 = f(x)
    r2 = f(x + 1)
    assert not np.shares_memory(r1, r2)
    np.testing.assert_array_equal(r1, x * 2)
    np.testing.assert_array_equal(r2, (x + 1) * 2)
    tail = r2[-5:]
    del r1, r2
    gc.collect()
    r3 = f(x + 7)
    np.testing.assert_array_equal(tail, ((x + 1) * 2)[-5:])
    np.testing.assert_array_equal(r3, (x + 7) * 2)


@pytest.mark.parametrize("threads", [4])
def test_concurrent_calls_get_distinct_outputs(threads):
    import concurrent.futures as cf
    f = jitensor.jit(lambda x, c: x + c)
    x = np.zeros(N, np.float32)
    f(x, 0.0)

    def run(c):
        outs = [f(x, float(c)) for _ in range(5)]
        return all((o == c).all() for o in outs)

    with cf.ThreadPoolExecutor(threads) as ex:
        assert all(ex.map(run, range(threads * 3)))


def test_invalid_pool_size_warns_and_disables(monkeypatch):
    monkeypatch.setenv("JITENSOR_POOL_BYTES", "lots")
    with pytest.warns(RuntimeWarning, match="JITENSOR_POOL_BYTES='lots'"):
        assert BufferPool().limit == 0
