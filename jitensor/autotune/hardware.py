"""Measured figures of this machine, the cost model's view of the hardware a record was measured on.

Kernel features say what a candidate does; these say what the machine does with it: where memory
traffic stops fitting a cache and how fast each level streams, how fast one core computes, and what
handing a loop to the thread pool costs. Records pooled from other machines (or this one after an
upgrade) then differ in these inputs rather than contradicting each other.

Figures (`hardware()` keys; `HARDWARE_NAMES` is the order of `hardware_features()`):
  l1d_kib, l2_kib, l3_kib   cache sizes: the Target's l1d and l2; L3 from sysfs for the host, else a guess
  threads                   threads the runtime runs parallel loops on (runtime.threads.num_threads)
  vector_bits               the Target's vector width
  bw_l1_gbs ... bw_mem_gbs  read bandwidth of one core, GB/s, at a working set inside L1, L2, L3 and
                            main memory: a jitensor-compiled int32 max-reduction over the data (a stride-0 view
                            re-reads the same cache-sized row), run on the calling thread
  fma_gflops                one core's FMA throughput, GFLOP/s: the GEMM template (vector FMAs from
                            registers) on a 96x256 @ 256x96 float32 product held in cache, run inline
  handoff_us                the thread hand-off, µs: a kernel just big enough for the pool
                            (threads.min_work) run through the pool vs on the calling thread,
                            t_pool - t_inline / threads (NaN with a single thread)

The microbenchmark runs once per machine (about a second; BUDGET_S at most) and is cached as JSON in
the cache directory (`hardware.json` beside the kernel cache), keyed by the Target's key and
HARDWARE_VERSION, so another CPU, or a changed benchmark, measures again. `JITENSOR_HARDWARE=skip`
(or `measure=False`) returns nominal figures flagged `"measured": False` without measuring or storing
anything (tests, CI).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import time

import numpy as np

HARDWARE_VERSION = 1
FILE = "hardware.json"
ENV = "JITENSOR_HARDWARE"
BUDGET_S = 2.0
HARDWARE_NAMES = ("l1d_kib", "l2_kib", "l3_kib", "threads", "vector_bits", "bw_l1_gbs", "bw_l2_gbs", "bw_l3_gbs",
                  "bw_mem_gbs", "fma_gflops", "handoff_us")
# nominal figures (a recent x86 core) for `measure=False`: plausible, never NaN
NOMINAL = {"bw_l1_gbs": 100.0, "bw_l2_gbs": 50.0, "bw_l3_gbs": 25.0, "bw_mem_gbs": 10.0, "fma_gflops": 60.0,
           "handoff_us": 5.0}
_MEASURED = ("bw_l1_gbs", "bw_l2_gbs", "bw_l3_gbs", "bw_mem_gbs", "fma_gflops", "handoff_us")

log = logging.getLogger("jitensor")
_memo: dict = {}  # key -> figures, for this process
_lock = threading.RLock()


def hardware(target=None, refresh: bool = False, *, measure: bool | None = None) -> dict:
    """The figures of the machine `target` names (the host by default): from this process's memo, else
    from hardware.json, else measured here now and stored. `refresh` measures again (and overwrites);
    `measure=False`, or JITENSOR_HARDWARE=skip, returns the nominal figures. The figures are measured on
    the machine running this call: pass the host's target (another target only names the entry)."""
    from ..target import host
    target = target or host()
    if measure is None:
        measure = os.environ.get(ENV, "").strip().lower() not in ("skip", "nominal", "0", "off", "no")
    if not measure:
        return nominal(target)
    key = machine_key(target)
    with _lock:
        figs = None if refresh else (_memo.get(key) or _load(key))
        if figs is None:
            figs = _measure(target)
            if not figs.get("failed"):
                _store(key, figs)
        _memo[key] = figs
        return copy.deepcopy(figs)


def hardware_features(target=None, *, measure: bool | None = None) -> np.ndarray:
    """HARDWARE_NAMES of `hardware(target)`, each log2(1 + x), float32 (NaN stays NaN: a missing value)."""
    h = hardware(target, measure=measure)
    return np.asarray([math.log2(1.0 + h[n]) if h[n] == h[n] else math.nan for n in HARDWARE_NAMES],
                      dtype=np.float32)


def machine_key(target) -> str:
    from ..runtime.diskcache import key_hash
    return key_hash({"target": target.key(), "hardware": HARDWARE_VERSION})


def path() -> str:
    from ..runtime.diskcache import default_cache_dir
    return os.path.join(default_cache_dir(), FILE)


def nominal(target) -> dict:
    figs = _static(target)
    figs.update(NOMINAL)
    figs.update(measured=False, seconds=0.0)
    return figs


# -- the file

def _load(key: str) -> dict | None:
    try:
        with open(path(), encoding="utf-8") as f:
            data = json.load(f)
        figs = data["machines"][key]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(figs, dict) or not all(isinstance(figs.get(n), (int, float)) for n in HARDWARE_NAMES):
        return None
    return figs


def _store(key: str, figs: dict) -> None:
    """Merge the entry into hardware.json (read, update, atomic replace); a cache directory that cannot be
    written only loses the entry (the memo keeps it for this process)."""
    p = path()
    try:
        os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
        try:
            with open(p, encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
                raise ValueError
        except (OSError, ValueError):
            data = {"format": 1, "machines": {}}
        data["machines"][key] = figs
        tmp = f"{p}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, p)
    except OSError:
        pass


# -- measuring

def _static(target) -> dict:
    from ..runtime.threads import num_threads
    return {"target": target.key(), "version": HARDWARE_VERSION, "l1d_kib": target.l1d / 1024,
            "l2_kib": target.l2 / 1024, "l3_kib": _l3_bytes(target) / 1024, "threads": num_threads(),
            "vector_bits": target.vector_bits}


def _l3_bytes(target) -> int:
    """The host's L3 from sysfs (Linux); elsewhere, or for another target, a guess from its L2."""
    from ..target import host
    guess = max(8 << 20, 4 * target.l2)
    if target.key() != host().key():
        return guess
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue
            with open(f"{base}/{d}/level") as f:
                if int(f.read()) != 3:
                    continue
            with open(f"{base}/{d}/size") as f:
                txt = f.read().strip()
            return int(txt.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(txt[-1:], 0)
    except (OSError, ValueError):
        pass
    return guess


def _best(fn, until: float, min_reps: int = 2, max_reps: int = 50) -> float:
    """The fastest of repeated calls of fn (after one warm-up call), until `until` or max_reps."""
    fn()
    best = math.inf
    for i in range(max_reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        if i + 1 >= min_reps and time.perf_counter() >= until:
            break
    return best


def _inline(fn, *args):
    """The compiled program of jitensor.jit(fn) for these arguments, set to run on the calling thread."""
    import jitensor
    prog = jitensor.jit(fn, cache=False).lower(*args).program
    prog._parallel = False  # every kernel over its whole range, on this thread (jit_entry)
    return prog


def _row_max(v):
    return v.max(axis=1)


def _bandwidth(nbytes: int, until: float) -> float:
    """GB/s of one core reading `nbytes` of int32 over and over (rows of a stride-0 view) or once. An int32
    max (one-cycle latency) keeps the loop load-bound where a float reduction would wait on its adds."""
    from numpy.lib.stride_tricks import as_strided
    n = max(256, nbytes // 4)
    x = np.ones(n, np.int32)
    rows = max(1, (16 << 20) // (n * 4))  # about 16 MB read per call: long enough to time
    v = as_strided(x, shape=(rows, n), strides=(0, 4), writeable=False)
    prog = _inline(_row_max, v)
    t = _best(lambda: prog.run([v]), until)
    return rows * n * 4 / t / 1e9


def _matmul(a, b):
    return a @ b


def _fma(until: float) -> float:
    M, K, N = 96, 256, 96
    a, b = np.ones((M, K), np.float32), np.ones((K, N), np.float32)
    prog = _inline(_matmul, a, b)
    t = _best(lambda: prog.run([a, b]), until)
    return 2 * M * N * K / t / 1e9


def _plus_one(x):
    return x + 1.0


def _handoff(until: float) -> float:
    """µs a parallel loop just above the pool's threshold loses to the hand-off: t_pool - t_inline / threads."""
    from ..runtime import threads
    n_threads = threads.num_threads()
    if n_threads < 2:
        return math.nan
    pool = threads.pool()  # built now (blocking), not in the background on the first parallel call
    n = -(-threads.min_work() // 3 // 1024) * 1024 + 1024  # x + 1: 3 work units per element
    x = np.ones(n, np.float32)
    prog = _inline(_plus_one, x)
    if prog.manifest.kernels[0].work < pool.min_work or prog.manifest.kernels[0].extent is None:
        return math.nan  # (the schedule changed: this kernel would not go to the pool)
    t_in = t_pool = math.inf
    for i in range(40):  # interleaved, so that both see the same machine
        prog._parallel = False
        t0 = time.perf_counter()
        prog.run([x])
        t1 = time.perf_counter()
        prog._parallel = True
        prog.run([x])
        t2 = time.perf_counter()
        if i:  # (the first round warms both paths)
            t_in, t_pool = min(t_in, t1 - t0), min(t_pool, t2 - t1)
        if i >= 4 and t2 >= until:
            break
    return max(0.0, t_pool - t_in / min(n_threads, pool.n)) * 1e6


def _measure(target) -> dict:
    t0 = time.perf_counter()
    figs = _static(target)
    l1, l2, l3 = target.l1d, target.l2, int(figs["l3_kib"] * 1024)
    sizes = (("bw_l1_gbs", l1 // 2), ("bw_l2_gbs", max(l2 // 2, 2 * l1)), ("bw_l3_gbs", max(l3 // 2, 2 * l2)),
             ("bw_mem_gbs", min(max(2 * l3, 32 << 20), 128 << 20)))
    # when each stage stops repeating (past its first few runs), as fractions of BUDGET_S: a compile takes
    # ~50 ms and the first of a process also loads LLVM (~0.3 s); ~1.3 s in all, under BUDGET_S when busy
    ends = [t0 + BUDGET_S * x for x in (0.25, 0.3, 0.35, 0.475, 0.55, 0.65)]
    stages = [(name, _bandwidth, (nbytes, end)) for (name, nbytes), end in zip(sizes, ends)]
    stages += [("fma_gflops", _fma, (ends[4],)), ("handoff_us", _handoff, (ends[5],))]
    failed = []
    for name, fn, args in stages:
        try:
            figs[name] = float(fn(*args))
        except Exception as e:  # noqa: BLE001 - a figure that cannot be measured is missing, not fatal
            log.warning("jitensor: could not measure %s (%s: %s)", name, type(e).__name__, e)
            figs[name] = math.nan
            failed.append(name)
    figs.update(measured=True, seconds=time.perf_counter() - t0)
    if failed:
        figs["failed"] = failed  # (such figures are kept for this process only, never stored)
    return figs
