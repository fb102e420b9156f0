"""The thread pool for parallel loops.

On x86-64 Linux the scheduling runs in machine code (`nativepool.py`): workers never return to
Python, so a parallel loop costs a few microseconds to hand out. Elsewhere, or if that code cannot
be built, Python workers call kernel chunks through cffi (which releases the GIL); waking them and
passing the GIL around costs ~50 us per loop.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading

import numpy as np

from .ffi import address, pool_run_function, pool_worker_function

log = logging.getLogger("jitensor")


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
        threading.Thread(target=self._loop, daemon=True, name="jitensor-worker").start()

    def _loop(self):
        while True:
            self.go.acquire()
            try:
                self.task()
            except BaseException:  # pragma: no cover - machine code does not raise; never lose the worker
                pass
            self.done.release()


_LIVE: list = []  # every native pool ever started (they have no shutdown)


class _Native:
    """Workers parked in `jtp_worker`; `run` publishes one parallel loop through `jtp_run`."""

    def __init__(self, n: int):
        from ..target import host
        from . import nativepool as NP
        target = host()
        if not NP.supported(target):
            raise OSError(f"no native pool for {target.triple}")
        self.engine, (run, worker) = _pool_code(target)
        raw = np.zeros(NP.STATE_WORDS + 8, np.int64)
        off = (-raw.ctypes.data % 64) // 8
        self.state = raw[off:off + NP.STATE_WORDS]  # kept alive with the pool: workers read it forever
        self._ptr = address(self.state.ctypes.data)
        self._run = pool_run_function(run)
        work = pool_worker_function(worker)
        for _ in range(n - 1):
            threading.Thread(target=work, args=(self._ptr,), daemon=True, name="jitensor-worker").start()
        _LIVE.append(self)  # workers run its code and read its state until the process ends: never free them

    def run(self, addr: int, table, extent: int, step: int, pieces: int):
        self._run(self._ptr, address(addr), table, extent, step, pieces)


# A loop goes to the pool when its work (schedule.work units, ~25-30 per ns on one core) clearly
# outweighs the hand-off: ~3 us for the native pool (break-even measured at 32K-element adds, 8K-element
# GELUs, both ~1<<17 units), ~50 us for Python workers.
MIN_WORK_NATIVE, MIN_WORK_PYTHON = 1 << 18, 1 << 21


_POOL_NAMES = ["jtp_run", "jtp_worker"]


def _pool_code(target) -> tuple:
    """(what keeps the code alive, [address of jtp_run, of jtp_worker]): the scheduler's shared library from
    the disk cache when it is there (no LLVM at all), else its object code from the cache loaded with LLVM's
    JIT, else compiled now (~25 ms, which would otherwise land on the first call of the first parallel
    program of every process) and stored for the next process."""
    import hashlib

    from .. import __version__
    from ..target import toolchain
    from . import nativepool as NP
    from . import sharedlib
    from .diskcache import default_cache, key_hash
    disk = default_cache()
    key = ""
    if disk.enabled:
        try:
            with open(NP.__file__, "rb") as f:
                source = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            from ..compiler import compiler_fingerprint
            source = compiler_fingerprint()
        tools = toolchain()
        key = key_hash({"function": "jitensor thread pool", "source": source, "jitensor": __version__,
                        "llvmlite": tools["llvmlite"], "llvm": tools["llvm"], "target": target.key()})
    entry = disk.load(key) if key else None
    obj = lib = None
    if entry is not None:
        try:
            sizes = entry.meta["library"]
            n_obj, n_lib = int(sizes["object_size"]), int(sizes["library_size"])
            if n_obj <= 0 or n_lib < 0 or n_obj + n_lib != len(entry.payload):
                raise ValueError("sizes do not match the payload")
            obj, lib = entry.payload[:n_obj], entry.payload[n_obj:]
        except (KeyError, TypeError, ValueError) as e:
            disk.discard(key, f"it does not describe the scheduler ({e})")
    if obj is not None and lib and sharedlib.usable():
        path = disk.side_file(key, lib)
        if path is not None:
            try:
                code = sharedlib.SharedCode(path, _POOL_NAMES, permanent=True, image=lib)  # run until exit
                return code, code.addresses
            except sharedlib.SharedLibError as e:
                log.debug("jitensor: scheduler library %s not loaded (%s); loading its object code", path, e)
    from .loader import load_object
    if obj is None:
        from ..codegen.llvm import compile_object  # the code generator, only when the disk cache lacks the pool
        from ..compiler import link_library
        obj, _ = compile_object(NP.build_module(target.triple), target)
        lib = link_library(obj) if key else b""
        engine, addrs = load_object(obj, target, _POOL_NAMES)
        if key:
            disk.store(key, obj + lib, {"name": "jitensor thread pool",
                                        "library": {"object_size": len(obj), "library_size": len(lib)}}, side=lib)
        return engine, addrs
    return load_object(obj, target, _POOL_NAMES)


def min_work() -> int:
    """Work below which a parallel loop runs on the calling thread (without building the pool)."""
    from ..target import host
    if _pool is not None:
        return _pool.min_work
    triple = host().triple  # nativepool.supported, without importing that module before the pool is built
    native = num_threads() > 1 and os.environ.get("JITENSOR_NATIVE_POOL", "1") != "0" and \
        triple.startswith("x86_64") and "linux" in triple
    return MIN_WORK_NATIVE if native else MIN_WORK_PYTHON


class Pool:
    def __init__(self, n: int, native: bool = True):
        self.n = n
        self.lock = threading.Lock()
        self.native = None
        self.workers = []
        if n > 1 and native and os.environ.get("JITENSOR_NATIVE_POOL", "1") != "0":
            try:
                self.native = _Native(n)
            except Exception as e:  # noqa: BLE001 - any failure leaves the portable pool
                log.debug("jitensor: native thread pool unavailable (%s); using Python workers", e)
        if self.native is None:
            self.workers = [_Worker() for _ in range(n - 1)]
        self.min_work = MIN_WORK_NATIVE if self.native is not None else MIN_WORK_PYTHON

    def parallel_for(self, fn, addr: int, table, extent: int, grain: int = 1, per_thread: int = 4):
        """Run the kernel (`fn` through cffi, or its address `addr`) as fn(table, begin, end) over
        [0, extent) on all threads. The range is cut into a few chunks per thread (aligned to `grain`)
        that threads take in turn, so a core slowed by other work takes fewer."""
        n = min(self.n, max(1, extent // max(grain, 1)))
        if n <= 1 or not self.lock.acquire(blocking=False):  # busy (another thread's call): run inline
            fn(table, 0, extent)
            return
        try:
            pieces = min(per_thread * n, max(1, extent // max(grain, 1)), 0xFFFF)
            step = -(-extent // pieces)
            step = -(-step // grain) * grain
            pieces = -(-extent // step)
            if self.native is not None:
                self.native.run(addr, table, extent, step, pieces)
                return
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
_pool_lock = threading.Lock()
_start_lock = threading.Lock()
_building: threading.Thread | None = None


def pool() -> Pool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = Pool(num_threads())
    return _pool


def ready_pool() -> Pool | None:
    """The pool, or None while it is being built: the first parallel run of a process starts building
    it in the background and runs on the calling thread, so no first call waits for the scheduler's
    code (~25 ms to compile, ~3 ms from the disk cache)."""
    global _building
    if _pool is not None:
        return _pool
    if _building is not None:  # (never wait on _pool_lock: the builder holds it while compiling)
        return None
    with _start_lock:
        if _building is None:
            _building = threading.Thread(target=pool, daemon=True, name="jitensor-pool-build")
            _building.start()
            atexit.register(_building.join, 30)  # never tear LLVM down under a compile in progress
    return None


def _forget_pool():  # a forked child has none of the parent's threads
    global _pool, _pool_lock, _start_lock, _building
    _pool, _pool_lock, _start_lock, _building = None, threading.Lock(), threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
