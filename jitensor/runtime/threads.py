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
            try:
                self.task()
            except BaseException as ex:  # pragma: no cover - machine code does not raise
                self.error = ex
            self.done.release()


class Pool:
    def __init__(self, n: int):
        self.n = n
        self.workers = [_Worker() for _ in range(n - 1)]
        self.lock = threading.Lock()

    def parallel_for(self, fn, table, extent: int, grain: int = 1, per_thread: int = 4):
        """Run fn(table, begin, end) over [0, extent) on all threads. The range is cut into a few chunks per
        thread (aligned to `grain`) that threads take in turn, so a core slowed by other work takes fewer."""
        n = min(self.n, max(1, extent // max(grain, 1)))
        if n <= 1 or not self.lock.acquire(blocking=False):  # busy (another thread's call): run inline
            fn(table, 0, extent)
            return
        try:
            pieces = min(per_thread * n, max(1, extent // max(grain, 1)))
            step = -(-extent // pieces)
            step = -(-step // grain) * grain
            chunks = iter([(b, min(extent, b + step)) for b in range(0, extent, step)])

            def drain(fn=fn, table=table, chunks=chunks):
                for b, e in chunks:  # next() on a list iterator is atomic under the GIL
                    fn(table, b, e)
            used = self.workers[:n - 1]
            for w in used:
                w.task = drain
                w.go.release()
            drain()
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
