"""Compile cost of unrolled loops: time and memory of the first call grow linearly with the steps.

    python benchmarks/bench_unroll.py                 # writes section `unroll` of RESULTS.md
    python benchmarks/bench_unroll.py --steps 10,100  # fewer step counts; --no-write leaves RESULTS.md alone

Python loops in a traced function are unrolled: each step adds its operations to the graph. Each
program below runs in a fresh process per step count, with the disk cache off, and reports:
the first call (trace, passes, fusion, lowering, LLVM, run), the peak resident memory it added,
the number of kernels and of distinct machine-code functions (steps that differ only in their
buffers share one), and the warm call against numpy's (interleaved, median). Targets: time and
memory linear in the steps, a 100-step stencil under 5 s, warm calls not slower than numpy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import harness

PROGRAMS = {
    "stencil": ("5-point stencil with a copy per step, 512x512 float64", """
def prog(u, steps):
    for _ in range(steps):
        v = u.copy()
        v[1:-1, 1:-1] = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
        u = v
    return u
args = (rng.random((512, 512)),)
"""),
    "recurrence": ("two-variable recurrence reading its state 5 times a step, 256x256 float64", """
def prog(x, y, steps):
    for _ in range(steps):
        x, y = 0.5 * x + 0.25 * y * y, 0.3 * y - 0.1 * x * y + 0.01
    return x, y
args = (rng.random((256, 256)), rng.random((256, 256)) * 0.5)
"""),
    "chain": ("dependent chain s = s + x[i] over rows, 512x512 float64", """
def prog(x, steps):
    s = x[0]
    for i in range(steps):
        s = s + x[i % x.shape[0]]
    return s
args = (rng.random((512, 512)),)
"""),
    "reductions": ("reductions in the loop (row means, a global std), 256x256 float64", """
def prog(x, steps):
    for _ in range(steps):
        x = x - x.mean(axis=-1, keepdims=True) * 0.5 + x.std() * 0.01
    return x
args = (rng.random((256, 256)),)
"""),
}

CHILD = """
import gc, json, resource, statistics, time
import numpy as np
rng = np.random.default_rng(0)
{program}
steps = {steps}
import jitensor
from jitensor.codegen.llvm import code_key
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
f = jitensor.jit(prog, static_argnames=("steps",), cache=False)
t0 = time.perf_counter()
got = f(*args, steps=steps)
first = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
c = list(f._compiled.values())[-1]
want = prog(*args, steps=steps)
ok = all(np.allclose(g, w, rtol=1e-9, atol=1e-12) for g, w in zip(got if isinstance(got, tuple) else (got,),
                                                                   want if isinstance(want, tuple) else (want,)))
tj, tn = [], []
gc.disable()
for _ in range(7):
    t = time.perf_counter(); f(*args, steps=steps); tj.append(time.perf_counter() - t)
    t = time.perf_counter(); prog(*args, steps=steps); tn.append(time.perf_counter() - t)
print("RESULT data=" + json.dumps(dict(first=first, peak_kib=peak, kernels=len(c.kernels),
      functions=len({{code_key(k) for k in c.kernels}}), passes=c.timings.get("passes+lower", 0.0),
      ok=bool(ok), warm=statistics.median(tj), numpy=statistics.median(tn))))
"""


def run(name: str, steps: int, timeout: float) -> dict:
    vals = harness.run_fresh(CHILD.format(program=PROGRAMS[name][1], steps=steps), timeout=timeout,
                             env={"JITENSOR_DISABLE_CACHE": "1"})
    if "data" not in vals:
        return {"error": vals.get("error", "no result")}
    return json.loads(vals["data"]) if isinstance(vals["data"], str) else {"error": str(vals["data"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="10,30,100,300,1000", help="comma-separated step counts")
    ap.add_argument("--programs", default=",".join(PROGRAMS), help="comma-separated subset of " + ",".join(PROGRAMS))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per fresh process")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    a = ap.parse_args(argv)
    steps = [int(s) for s in a.steps.split(",")]
    t_start = time.perf_counter()
    stamp = harness.source_stamp()
    info = harness.machine_info()
    harness.run_fresh("print('RESULT warm=1')")  # fill the bytecode cache so the first program is not charged
    header = ["program", "steps", "first call", "per step", "passes+lower", "peak memory", "kernels", "functions",
              "warm", "numpy", "vs numpy", "result"]
    rows, verdicts = [], []
    for name in a.programs.split(","):
        res = {}
        for n in steps:
            r = res[n] = run(name, n, a.timeout)
            if "error" in r:
                rows.append([name, str(n), "", "", "", "", "", "", "", "", "", f"ERROR: {r['error']}"])
            else:
                rows.append([name, str(n), harness.fmt_time(r["first"]), harness.fmt_time(r["first"] / n),
                             harness.fmt_time(r["passes"]), f"{r['peak_kib'] / 1024:.0f} MiB", str(r["kernels"]),
                             str(r["functions"]), harness.fmt_time(r["warm"]), harness.fmt_time(r["numpy"]),
                             harness.fmt_ratio(r["numpy"] / r["warm"]), "ok" if r["ok"] else "WRONG"])
            print(" | ".join(rows[-1]), flush=True)
        good = [n for n in steps if "error" not in res[n]]
        if len(good) >= 2:
            lo, hi = good[0], good[-1]
            growth = (res[hi]["first"] / res[lo]["first"]) / (hi / lo)
            verdicts.append(f"- **{name}**: first call x{res[hi]['first'] / res[lo]['first']:.1f} for x{hi / lo:.0f} "
                            f"steps ({lo} -> {hi}): {'linear or better' if growth <= 1.5 else 'SUPERLINEAR'}; "
                            f"slowest warm ratio vs numpy {min(res[n]['numpy'] / res[n]['warm'] for n in good):.2f}x")
    st = run("stencil", 100, a.timeout) if "stencil" in a.programs and 100 not in steps else None
    total = time.perf_counter() - t_start
    print(harness.text_table(header, rows, group=False))
    print("\n".join(verdicts))
    if a.no_write:
        return
    edited = harness.edited_note(stamp)
    target = ""
    s100 = (st if st is not None else None)
    for r in rows:
        if r[0] == "stencil" and r[1] == "100":
            target = f"100-step stencil first call: {r[2]} (target < 5 s)"
    if s100 and "error" not in s100:
        target = f"100-step stencil first call: {harness.fmt_time(s100['first'])} (target < 5 s)"
    parts = ["## Compile cost of unrolled loops (`bench_unroll.py`)", "",
             harness.machine_info_markdown(info, {"run": f"{total:.0f} s, one fresh process per row, disk cache off"}),
             "", *([f"**Warning**: {edited}.", ""] if edited else []),
             "First call = trace + passes + fusion + lowering + LLVM + the run; peak memory = the growth of the "
             "process's peak resident set during it; functions = distinct machine-code functions (steps that "
             "differ only in their buffers share one); warm and numpy = medians of 7 interleaved calls.", "",
             harness.markdown_table(header, rows), "", *verdicts, "", f"- {target}" if target else ""]
    harness.write_section("unroll", "\n".join(parts))
    print(f"wrote section 'unroll' of {harness.RESULTS_MD}")


if __name__ == "__main__":
    sys.exit(main())
