"""Compile-time and call-overhead benchmarks of jitensor.

    python benchmarks/bench_compile.py            # writes section `jit` of RESULTS.md
    python benchmarks/bench_compile.py --no-write

1. First call of a 10-op elementwise function in a fresh process (`python -c`), with an empty cache
   directory (cold compile), each followed by a fresh process with the directory it filled (first call
   loaded from the disk cache); `--runs` pairs (default 5), median of each. The time is measured inside
   the process around the first call only (imports excluded).
2. Cached-call overhead: per-call time of jitensor and of numpy on 1000-element float32 arrays for
   functions of 1, 2 and 4 array arguments (median over batches of back-to-back calls), and the
   difference jitensor − numpy.
"""
from __future__ import annotations

import argparse
import functools
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
import numpy as np
sys.path.insert(0, {str(harness.HERE)!r})
from bench_compile import ten_ops
import jitensor
rng = np.random.default_rng(0)
x = rng.standard_normal({FIRSTCALL_N}, dtype=np.float32)
y = rng.standard_normal({FIRSTCALL_N}, dtype=np.float32)
td = time.perf_counter()
f = jitensor.jit(ten_ops)  # the first decoration starts LLVM and loads the compiler, once per process
td = time.perf_counter() - td
t0 = time.perf_counter()
r = f(x, y)
t = time.perf_counter() - t0
t1 = time.perf_counter()
f(x, y)
t2 = time.perf_counter() - t1
ci = f.cache_info()
print(f"RESULT first_call={{t}}")
print(f"RESULT decorate={{td}}")
print(f"RESULT second_call={{t2}}")
print(f"RESULT disk_hits={{ci.disk_hits}}")
print(f"RESULT correct={{int(np.allclose(r, ten_ops(x, y), rtol=1e-4, atol=1e-6))}}")
"""

IMPORT_CODE = """
import time
t0 = time.perf_counter()
import jitensor
print(f"RESULT import={time.perf_counter() - t0}")
"""


def first_call_runs(runs: int):
    """Per run: a fresh process with a fresh, empty cache directory (cold), then a fresh process with the
    directory it filled (disk). Back to back, so that an edit of jitensor in between spoils one pair only."""
    out = {"cold": ([], []), "disk": ([], []), "decorate": ([], [])}
    # a discarded run first: fills the bytecode cache (and the OS file cache)
    harness.run_fresh(FIRSTCALL_CODE, env={"JITENSOR_CACHE_DIR": tempfile.mkdtemp(prefix="jitensor-bench-cache-")})
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="jitensor-bench-cache-")
        for mode in ("cold", "disk"):
            vals, notes = out[mode]
            res = harness.run_fresh(FIRSTCALL_CODE, env={"JITENSOR_CACHE_DIR": d, "JITENSOR_DISABLE_CACHE": None})
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
                if "decorate" in res:
                    out["decorate"][0].append(res["decorate"])
            if note:
                notes.append(note)
            print(f"  {mode}: {harness.fmt_time(res.get('first_call'))} {note}".rstrip(), flush=True)
    out = {k: (v, sorted(set(n))) for k, (v, n) in out.items()}
    imports = []
    harness.run_fresh(IMPORT_CODE)
    for _ in range(3):
        res = harness.run_fresh(IMPORT_CODE)
        if "import" in res:
            imports.append(res["import"])
    return out, imports


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per first-call measurement (default 5)")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    stamp = harness.source_stamp()
    info = harness.machine_info()
    for k, v in info.items():
        print(f"{k}: {v}")

    print(f"\nfirst call of a 10-op elementwise function ({FIRSTCALL_N} float32), fresh processes:")
    fc, imports = first_call_runs(args.runs)
    fc_rows = []
    for mode, label in (("cold", "cold compile (empty cache dir)"), ("disk", "load from the disk cache"),
                        ("decorate", "first `@jitensor.jit` in the process (LLVM start-up, once)")):
        vals, notes = fc[mode]
        status = "; ".join(notes) if notes else "ok"
        if vals:
            fc_rows.append([label, harness.fmt_time(statistics.median(vals)), harness.fmt_time(min(vals)),
                            harness.fmt_time(max(vals)), str(len(vals)), status])
        else:
            fc_rows.append([label, "", "", "", "0", status])
    if imports:
        fc_rows.append(["`import jitensor` (for reference)", harness.fmt_time(statistics.median(imports)),
                        harness.fmt_time(min(imports)), harness.fmt_time(max(imports)), str(len(imports)), "ok"])
    fc_header = ["first call", "median", "min", "max", "runs", "status"]

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
    print(harness.text_table(fc_header, fc_rows, group=False))
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
                 "", "Measured inside the process around the first call only (imports and the one-time start-up at the "
                 "first decoration excluded, shown separately); cold = empty `JITENSOR_CACHE_DIR`, disk = the "
                 "directory a cold run filled.", "",
                 harness.markdown_table(fc_header, fc_rows), "",
                 "### Cached-call overhead vs numpy (1000-element float32 arrays)", "",
                 "Per-call time, median over batches of back-to-back calls (interleaved numpy, jitensor).", "",
                 harness.markdown_table(ov_header, ov_rows)]
        harness.write_section("jit", "\n".join(parts))
        print(f"wrote section 'jit' of {harness.RESULTS_MD}")


if __name__ == "__main__":
    main()
