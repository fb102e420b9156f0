"""The thread pool: every chunk of a parallel loop runs exactly once, on the native scheduler and on
the Python fallback, under back-to-back calls, after workers fall asleep, from several Python threads
at once, and in a forked child."""
import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import pytest

import jitensor
from jitensor.runtime import threads
from jitensor.target import host

native_host = host().triple.startswith("x86_64") and sys.platform == "linux"


def _big_add():
    f = jitensor.jit(lambda x, c: x * 2.0 + c)
    return f


@pytest.mark.skipif(not native_host, reason="the native scheduler is built for x86-64 Linux")
def test_native_scheduler_is_used_here(monkeypatch):
    # a pool of 2 threads on any machine: building the native scheduler must not fall back to Python workers
    wanted = os.environ.get("JITENSOR_NATIVE_POOL", "1") != "0"
    monkeypatch.delenv("JITENSOR_NATIVE_POOL", raising=False)
    p = threads.Pool(2)
    assert p.native is not None and p.min_work == threads.MIN_WORK_NATIVE and p.workers == []
    # and the process's own pool is native exactly when it has more than one thread (and it is not turned off)
    g = threads.pool()
    assert (g.native is not None) == (g.n > 1 and wanted), (g.n, g.native, wanted)


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_every_chunk_runs_once(monkeypatch, native):
    p = threads.Pool(3, native=native)  # 3 threads even on a 2-core machine: more chunks than cores
    monkeypatch.setattr(threads, "_pool", p)
    f = jitensor.jit(lambda x: x + 1.0)
    for n in (1 << 17, (1 << 18) + 17, 3 * 5 * 7 * 1031):
        x = np.arange(n, dtype=np.float64)
        for _ in range(20):
            np.testing.assert_array_equal(f(x), x + 1.0)


def test_sleeping_workers_wake_up():
    f = _big_add()
    x = np.ones(1 << 19, np.float32)
    for i in range(4):
        time.sleep(0.01)  # longer than the workers spin: they are in futex_wait now
        np.testing.assert_array_equal(f(x, float(i)), 2.0 + i)


def test_calls_from_many_python_threads():
    f = _big_add()
    x = np.ones(1 << 18, np.float32)

    def run(c):
        return all((f(x, float(c)) == 2.0 + c).all() for _ in range(10))
    with cf.ThreadPoolExecutor(4) as ex:
        assert all(ex.map(run, range(16)))


def _child(q):
    f = jitensor.jit(lambda x: x * 3.0)
    x = np.ones(1 << 19, np.float32)
    q.put(bool((f(x) == 3.0).all()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_pool():
    f = _big_add()
    f(np.ones(1 << 19, np.float32), 1.0)  # the parent's pool exists and has run
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, "the child hung or died"
    assert q.get(timeout=5)


@pytest.mark.skipif(not native_host, reason="the native scheduler is built for x86-64 Linux")
def test_dropped_native_pools_keep_their_code():
    """Workers stay parked in a native pool's machine code and read its state until the process ends: a
    pool that its owner drops must not free them (this crashed a later test before)."""
    code = """if 1:
        import gc
        import numpy as np
        from jitensor.runtime import threads
        f = None
        for i in range(6):
            p = threads.Pool(3)
            assert p.native is not None
            del p
            gc.collect()
            junk = [np.ones(1 << 16) for _ in range(64)]  # reuse freed memory, if any was freed
        import jitensor
        x = np.arange(1 << 19, dtype=np.float64)
        assert (jitensor.jit(lambda x: x + 1.0)(x) == x + 1.0).all()
        print("ok")
    """
    import subprocess
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "JITENSOR_NATIVE_POOL": "1"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])
