"""A minimal thread pool for parallel loops: workers call kernel chunks through cffi, which
releases the GIL, so N threads run N chunks of machine code at once."""
from __future__ import annotations

import os
import threading


def num_threads() -> int:
    env = os.environ.get("JITENSOR_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Worker:
    def __init__(self):
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.task = None
        self.error = None
        threading.Thread(target=self._loop, daemon=True, name="jitensor-worker").start()

    def _loop(self):
        while True:
            self.go.acquire()
            fn, table, b, e = self.task
            try:
                fn(table, b, e)
            except BaseException as ex:  # pragma: no cover - machine code does not raise
                self.error = ex
            self.done.release()


class Pool:
    def __init__(self, n: int):
        self.n = n
        self.workers = [_Worker() for _ in range(n - 1)]
        self.lock = threading.Lock()

    def parallel_for(self, fn, table, extent: int, grain: int = 1):
        """Run fn(table, begin, end) over [0, extent) split across the threads (chunks aligned to `grain`)."""
        n = min(self.n, max(1, extent // max(grain, 1)))
        if n <= 1 or not self.lock.acquire(blocking=False):  # busy (another thread's call): run inline
            fn(table, 0, extent)
            return
        try:
            step = -(-extent // n)
            step = -(-step // grain) * grain
            bounds = [(i * step, min(extent, (i + 1) * step)) for i in range(n)]
            bounds = [(b, e) for b, e in bounds if b < e]
            used = self.workers[:len(bounds) - 1]
            for w, (b, e) in zip(used, bounds[1:]):
                w.task = (fn, table, b, e)
                w.go.release()
            fn(table, *bounds[0])
            for w in used:
                w.done.acquire()
        finally:
            self.lock.release()


_pool: Pool | None = None


def pool() -> Pool:
    global _pool
    if _pool is None:
        _pool = Pool(num_threads())
    return _pool
