"""Compile-time and call-overhead benchmarks of jitensor.

    python benchmarks/bench_compile.py            # writes section `jit` of RESULTS.md
    python benchmarks/bench_compile.py --no-write

1. First call of a 10-op elementwise function in a fresh process (`python -c`, this checkout's jitensor),
   with an empty cache directory (cold compile), each followed by a fresh process with the directory it
   filled (first call loaded from the disk cache); `--runs` pairs (default 5), median of each, with
   Python's bytecode cache on and off. Reported separately: `import numpy`, `import jitensor`, the first
   decoration, the first call, decoration + first call (the disk-hit targets: <= 10 ms, >= 10x faster than
   the same in the cold process) also in CPU time (robust to a busy machine), the totals with the imports,
   and whether the disk-hit process imported llvmlite (it should not: shared libraries, `docs/cache.md`).
2. Cached-call overhead: per-call time of jitensor and of numpy on 1000-element float32 arrays for
   functions of 1, 2 and 4 array arguments (median over batches of back-to-back calls), and the
   difference jitensor − numpy.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Case  # noqa: E402


def ten_ops(x, y):
    a = x * y              # 1
    b = a + 1.0            # 2
    c = np.sin(b)          # 3
    d = c - x              # 4
    e = d * d              # 5
    f = np.exp(-e)         # 6, 7
    g = np.maximum(f, y)   # 8
    return np.sqrt(g + 2.0)  # 9, 10


def one_arg(x):
    return x * 2.0


def two_args(x, y):
    return x + y


def four_args(a, b, c, d):
    return a * b + c * d


FIRSTCALL_N = 4096

FIRSTCALL_CODE = f"""
import sys, time
tn = time.perf_counter()
import numpy as np
tn = time.perf_counter() - tn
sys.path.insert(0, {str(harness.HERE)!r})
from bench_compile import ten_ops
ti = time.perf_counter()
import jitensor
ti = time.perf_counter() - ti
rng = np.random.default_rng(0)
x = rng.standard_normal({FIRSTCALL_N}, dtype=np.float32)
y = rng.standard_normal({FIRSTCALL_N}, dtype=np.float32)
c0 = time.process_time()
td = time.perf_counter()
f = jitensor.jit(ten_ops)  # the first decoration loads the runtime and the host target, once per process
td = time.perf_counter() - td
t0 = time.perf_counter()
r = f(x, y)
t = time.perf_counter() - t0
cpu = time.process_time() - c0
t1 = time.perf_counter()
f(x, y)
t2 = time.perf_counter() - t1
ci = f.cache_info()
print(f"RESULT import_numpy={{tn}}")
print(f"RESULT import={{ti}}")
print(f"RESULT first_call={{t}}")
print(f"RESULT decorate={{td}}")
print(f"RESULT cpu={{cpu}}")
print(f"RESULT second_call={{t2}}")
print(f"RESULT disk_hits={{ci.disk_hits}}")
print(f"RESULT llvmlite={{int('llvmlite' in sys.modules)}}")
print(f"RESULT correct={{int(np.allclose(r, ten_ops(x, y), rtol=1e-4, atol=1e-6))}}")
"""

# The jitensor of this checkout, whatever is installed.
_SRC_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(harness.HERE.parent), os.environ.get("PYTHONPATH")) if p)}


def _bytecode_env(on: bool) -> dict:
    """Bytecode cache on: the harness's shared prefix (filled by a discarded run). Off: like `python -B` with
    an empty `PYTHONPYCACHEPREFIX`, so every module (jitensor's own, and numpy's) is compiled from source."""
    if on:
        return dict(harness.bytecode_env())
    return {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": tempfile.mkdtemp(prefix="bench-nopyc-")}


def first_call_runs(runs: int, bytecode: bool):
    """Per run: a fresh process with a fresh, empty cache directory (cold), then a fresh process with the
    directory it filled (disk). Back to back, so that an edit of jitensor in between spoils one pair only.
    Returns {measure: (values, notes)} for cold/disk first calls, the disk process's import and decoration
    times, decoration + first call of both (wall and CPU time) and the totals with the imports."""
    out = {k: ([], []) for k in ("cold", "disk", "import_numpy", "import", "decorate", "total", "total_cpu",
                                 "with_import", "with_numpy", "cold_total", "cold_cpu", "llvmlite")}
    # a discarded run first: fills the bytecode cache (and the OS file cache)
    harness.run_fresh(FIRSTCALL_CODE, env={"JITENSOR_CACHE_DIR": tempfile.mkdtemp(prefix="jitensor-bench-cache-"),
                                           "JITENSOR_DISABLE_CACHE": None, **_SRC_ENV, **_bytecode_env(bytecode)},
                      bytecode_cache=False)
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="jitensor-bench-cache-")
        for mode in ("cold", "disk"):
            vals, notes = out[mode]
            res = harness.run_fresh(FIRSTCALL_CODE, env={"JITENSOR_CACHE_DIR": d, "JITENSOR_DISABLE_CACHE": None,
                                                         **_SRC_ENV, **_bytecode_env(bytecode)},
                                    bytecode_cache=False)
            note = ""
            if "error" in res:
                note = f"ERROR: {res['error']}"
            elif not res.get("correct"):
                note = "WRONG result"
            else:
                hit = res.get("disk_hits", 0) >= 1
                if hit != (mode == "disk"):
                    note = "unexpected disk-cache hit" if hit else "NOT loaded from the disk cache"
                if mode == "cold" or hit:
                    vals.append(res["first_call"])
                if mode == "cold":
                    out["cold_total"][0].append(res["decorate"] + res["first_call"])
                    out["cold_cpu"][0].append(res["cpu"])
                if mode == "disk" and hit:
                    total = res["decorate"] + res["first_call"]
                    out["import_numpy"][0].append(res["import_numpy"])
                    out["import"][0].append(res["import"])
                    out["decorate"][0].append(res["decorate"])
                    out["total"][0].append(total)
                    out["total_cpu"][0].append(res["cpu"])
                    out["with_import"][0].append(res["import"] + total)
                    out["with_numpy"][0].append(res["import_numpy"] + res["import"] + total)
                    out["llvmlite"][0].append(res["llvmlite"])
            if note:
                notes.append(note)
            print(f"  {mode}: {harness.fmt_time(res.get('first_call'))} {note}".rstrip(), flush=True)
    return {k: (v, sorted(set(n))) for k, (v, n) in out.items()}


def first_call_rows(runs: int) -> list:
    rows = []
    for bytecode in (True, False):
        cache = "bytecode cache on" if bytecode else "bytecode cache off (`-B`, empty PYTHONPYCACHEPREFIX)"
        print(f"  -- {cache}", flush=True)
        fc = first_call_runs(runs, bytecode)
        for mode, label in (("import_numpy", "`import numpy`"),
                            ("import", "`import jitensor`"),
                            ("decorate", "first `@jitensor.jit` (runtime and host target, once per process)"),
                            ("disk", "first call, loaded from the disk cache"),
                            ("total", "**decoration + first call from disk** (target <= 10 ms)"),
                            ("total_cpu", "decoration + first call from disk, CPU time"),
                            ("with_import", "`import jitensor` + decoration + first call from disk"),
                            ("with_numpy", "`import numpy` + `import jitensor` + decoration + first call from disk"),
                            ("cold", "first call, cold compile (empty cache dir)"),
                            ("cold_total", "decoration + first call, cold compile"),
                            ("cold_cpu", "decoration + first call, cold compile, CPU time")):
            vals, notes = fc[mode]
            status = "; ".join(notes) if notes else "ok"
            if mode == "total" and vals and statistics.median(vals) > 0.010:
                status = "over 10 ms" if status == "ok" else status
            if vals:
                rows.append([cache, label, harness.fmt_time(statistics.median(vals)), harness.fmt_time(min(vals)),
                             harness.fmt_time(max(vals)), str(len(vals)), status])
            else:
                rows.append([cache, label, "", "", "", "0", status])
        llvm = fc["llvmlite"][0]
        if llvm:
            rows.append([cache, "disk-hit processes that imported llvmlite", f"{int(sum(llvm))} of {len(llvm)}", "",
                         "", "", "ok" if not any(llvm) else "llvmlite imported"])
        for num, den, label in (("cold", "disk", "cold compile / from disk: first call (medians)"),
                                ("cold_total", "total", "cold compile / from disk: decoration + first call (medians; "
                                                        "target >= 10x)")):
            a, b = fc[num][0], fc[den][0]
            if a and b:
                r = statistics.median(a) / statistics.median(b)
                rows.append([cache, label, f"{r:.1f}x", "", "", "", "ok" if r >= 10 or num == "cold" else "under 10x"])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per first-call measurement (default 5)")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--first-call-only", action="store_true", help="skip the cached-call overhead (implies --no-write)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    stamp = harness.source_stamp()
    info = harness.machine_info()
    for k, v in info.items():
        print(f"{k}: {v}")

    print(f"\nfirst call of a 10-op elementwise function ({FIRSTCALL_N} float32), fresh processes:")
    fc_rows = first_call_rows(args.runs)
    fc_header = ["python", "measure", "median", "min", "max", "runs", "status"]

    if args.first_call_only:
        print()
        print(harness.text_table(fc_header, fc_rows))
        return
    print("\ncached-call overhead (1000-element float32 arrays):")
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal(1000, dtype=np.float32) for _ in range(4)]
    cases = [Case("1arg", "1 argument: x * 2.0", one_arg, tuple(arrs[:1]), rtol=1e-6, atol=0, inner=2000, budget_s=4),
             Case("2arg", "2 arguments: x + y", two_args, tuple(arrs[:2]), rtol=1e-6, atol=0, inner=2000, budget_s=4),
             Case("4arg", "4 arguments: a * b + c * d", four_args, tuple(arrs), rtol=1e-5, atol=1e-6, inner=2000,
                  budget_s=4)]

    def numpy_peer(case):
        return functools.partial(case.fn, *case.args)

    def jitensor_peer(case):
        import jitensor
        return functools.partial(jitensor.jit(case.fn), *case.args)

    res = harness.bench(cases, {"numpy": numpy_peer, "jitensor": jitensor_peer}, reps=15)
    ov_rows = []
    for c in cases:
        n, j = res.get(c.key, "numpy"), res.get(c.key, "jitensor")
        d = (j.median - n.median) if n.ok and j.ok else None
        ov_rows.append([c.name, harness.fmt_time(n.median) if n.ok else n.status,
                        (harness.fmt_time(j.median) if j.ok else f"{j.status}: {j.message}"),
                        f"{d * 1e6:.2f} µs" if d is not None else "",
                        f"{len(j.times)} × {c.inner} calls" if j.ok else ""])
    ov_header = ["function", "numpy per call", "jitensor per call", "jitensor − numpy", "samples"]

    print()
    print(harness.text_table(fc_header, fc_rows))
    print()
    print(harness.text_table(ov_header, ov_rows, group=False))
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    edited = harness.edited_note(stamp)
    if edited:
        print(f"WARNING: {edited}")

    if not args.no_write:
        parts = ["## jitensor compile time and call overhead (`bench_compile.py`)", "",
                 harness.machine_info_markdown(info, {"run": f"{args.runs} fresh processes per first-call figure, "
                                                             f"{total:.0f} s"}), "",
                 *([f"**Warning**: {edited}.", ""] if edited else []),
                 f"### First call of a 10-op elementwise function in a fresh process ({FIRSTCALL_N} float32 elements)",
                 "", "Measured inside each fresh process: `import numpy`, `import jitensor`, the first decoration "
                 "(one-time start-up) and the first call, separately, and decoration + first call together (wall "
                 "and CPU time: CPU time does not count waiting for a busy machine's cores); cold = empty "
                 "`JITENSOR_CACHE_DIR`, disk = the directory a cold run filled. A disk hit loads the program's "
                 "shared library with `dlopen` and does not import llvmlite (`docs/cache.md`). With the bytecode "
                 "cache off every module is compiled from source, as on the first run after an install.", "",
                 harness.markdown_table(fc_header, fc_rows), "",
                 "### Cached-call overhead vs numpy (1000-element float32 arrays)", "",
                 "Per-call time, median over batches of back-to-back calls (interleaved numpy, jitensor).", "",
                 harness.markdown_table(ov_header, ov_rows)]
        harness.write_section("jit", "\n".join(parts))
        print(f"wrote section 'jit' of {harness.RESULTS_MD}")


if __name__ == "__main__":
    main()
