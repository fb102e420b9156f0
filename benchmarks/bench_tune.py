"""Autotuning: model-guided search against random search at equal trials, tuned against default schedules.

    python benchmarks/bench_tune.py                        # every case, 32 trials per strategy (~10-15 min)
    python benchmarks/bench_tune.py --only mlp1,colsum --trials 32 --no-write
    python benchmarks/bench_tune.py --long sgemm           # also time 256 trials of one case (target: < 3 min)

Per case, `jitensor.tune` runs once per strategy with the same budget and seed, each into its own empty record
store: "thompson" (an ensemble of XGBoost models, one drawn per batch, over annealing proposals), "greedy"
(the ensemble's mean), "epsilon" (greedy with 10% random points) and "random". Reported:
- the default and best kernel times, and trials to reach 95% of the best speedup over the default found by
  any strategy (each run's speedups are its own: candidates are timed against the default); the
  target is a median (over cases) ratio model/random <= 1/3 (a strategy that never gets there counts as
  trials + 1, so a random search that never gets there makes the ratio an upper bound);
- the whole function timed end to end in this process, compiled with the records against compiled with
  the default schedules, interleaved (tuned must never be slower; >= 1.2x on at least three cases);
- the first call of a fresh process from the disk cache with records against without (target: < 5 ms more).
Writes section `tune` of RESULTS.md and `benchmarks/tune_curves.png` (best-so-far speedup vs trials).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import jitensor  # noqa: E402

HERE = Path(__file__).resolve().parent
_rng = np.random.default_rng(0)


def _f32(*shape):
    return _rng.standard_normal(shape, dtype=np.float32)


def sgemm(a, b):
    return a @ b


def mlp(x, w, b):
    return np.maximum(x @ w + b, 0)


def bmm(a, b):
    return a @ b


def colsum(x):
    return x.sum(axis=0)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def gemm_t(a, b):
    return a.T @ b


CASES = {  # name -> (function, arguments, what it exercises)
    "sgemm": (sgemm, (_f32(1024, 1024), _f32(1024, 1024)), "sgemm 1024^3"),
    "mlp64": (mlp, (_f32(64, 512), _f32(512, 1024), _f32(1024)), "relu(x @ w + b), batch 64"),
    "mlp1": (mlp, (_f32(1, 1024), _f32(1024, 4096), _f32(4096)), "relu(x @ w + b), batch 1 (matrix-vector)"),
    "bmm": (bmm, (_f32(32, 96, 64), _f32(32, 64, 96)), "batched matmul 32 x 96x64x96"),
    "colsum": (colsum, (_rng.standard_normal((4096, 1000)),), "column sum 4096x1000 float64"),
    "softmax": (softmax, (_f32(2048, 1000),), "row softmax 2048x1000"),
    "prime": (sgemm, (_f32(509, 257), _f32(257, 383)), "matmul of prime sizes 509x257x383"),
    "gemm_t": (gemm_t, (_f32(512, 384), _f32(512, 640)), "a.T @ b (transposed operand)"),
}


def tune_into(name, strategy, trials, seed, cache_dir):
    fn, args, _ = CASES[name]
    os.environ["JITENSOR_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    rep = jitensor.tune(fn, *args, trials=trials, seed=seed, strategy=strategy, progress=False, early_stop=None)
    return rep, time.perf_counter() - t0


def main_kernel(rep):
    return max(rep.kernels, key=lambda r: (r.default or 0) * r.repeats)


def speedups(k):
    """Best-so-far speedup over the default after each trial of a tuning run, both measured in that run (the
    tuner times candidates against the default in paired samples: across runs the machine's speed drifts)."""
    d = k.default or (k.curve[0] if k.curve else None)
    return [d / c if d and np.isfinite(c) and c > 0 else 0.0 for c in k.curve]


def to_95(curve, best):
    """Trials until the best-so-far speedup is within 5% of `best` (len + 1 when never)."""
    for i, c in enumerate(curve):
        if c >= 0.95 * best:
            return i + 1
    return len(curve) + 1


def end_to_end(name, tuned_dir, empty_dir, reps=15):
    """(default seconds, tuned seconds) per call of the whole function, interleaved."""
    fn, args, _ = CASES[name]
    os.environ["JITENSOR_CACHE_DIR"] = empty_dir
    f_def = jitensor.jit(fn, cache=False)
    want = f_def(*args)
    os.environ["JITENSOR_CACHE_DIR"] = tuned_dir
    f_tun = jitensor.jit(fn, cache=False)
    got = f_tun(*args)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * float(np.max(np.abs(want))))
    calls = max(1, int(0.05 / max(harness.per_call(lambda: f_def(*args), calls=1, batches=3), 1e-7)))
    td, tt = [], []
    for _ in range(reps):
        td.append(harness.per_call(lambda: f_def(*args), calls=calls, batches=1))
        tt.append(harness.per_call(lambda: f_tun(*args), calls=calls, batches=1))
    return statistics.median(td), statistics.median(tt)


FIRST_CALL = """
import time, numpy as np
import jitensor
from benchmarks_tune_case import fn, args
t0 = time.perf_counter()
f = jitensor.jit(fn)
f(*args)
print("RESULT ms=%.3f" % ((time.perf_counter() - t0) * 1e3))
"""


def first_call_with_records(name, tuned_dir, runs=11):
    """Fresh-process decoration + first call from a warm disk cache, with the case's records in the store
    and with the store removed (ms medians): what applying records adds to a first call."""
    import inspect
    import shutil
    fn, args, _ = CASES[name]
    mod = Path(tempfile.mkdtemp(prefix="bench-tune-")) / "benchmarks_tune_case.py"
    np.savez(mod.with_suffix(".npz"), *args)
    mod.write_text(f"import numpy as np\n\n{inspect.getsource(fn)}\nfn = {fn.__name__}\n"
                   f"_z = np.load({str(mod.with_suffix('.npz'))!r})\nargs = [_z[k] for k in sorted(_z.files, "
                   "key=lambda s: int(s.split('_')[1]))]\n")
    no_rec = tempfile.mkdtemp(prefix="bench-tune-norec-")
    shutil.copytree(tuned_dir, no_rec, dirs_exist_ok=True, ignore=shutil.ignore_patterns("records.sqlite*"))
    env_base = {"PYTHONPATH": str(mod.parent)}
    out = {"records": [], "none": []}
    envs = {label: dict(env_base, JITENSOR_CACHE_DIR=d) for label, d in (("records", tuned_dir), ("none", no_rec))}
    for env in envs.values():
        harness.run_fresh(FIRST_CALL, env)  # compile into the disk cache, fill the bytecode cache
    for _ in range(runs):  # alternating: the machine's speed drifts
        for label, env in envs.items():
            out[label].append(harness.run_fresh(FIRST_CALL, env).get("ms"))
    return {k: statistics.median([v for v in vs if isinstance(v, float)] or [float("nan")]) for k, vs in out.items()}


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(curves)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, by) in zip(axes.flat, curves.items()):
        for strategy, curve in by.items():
            ax.plot(range(1, len(curve) + 1), curve, label=strategy)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("trials", fontsize=8)
        ax.set_ylabel("best speedup over default", fontsize=8)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated cases: " + ", ".join(CASES))
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--strategies", default="thompson,greedy,epsilon,random",
                    help="strategies to compare (thompson and random are always run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--long", default="", help="a case to tune with 256 trials (timed)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CASES)
    strategies = list(dict.fromkeys(["thompson"] + [s for s in args.strategies.split(",") if s] + ["random"]))
    others = [s for s in strategies if s not in ("thompson", "random")]
    stamp = harness.source_stamp()
    rows, curves, ratios, gains, notes = [], {}, [], [], []
    empty = tempfile.mkdtemp(prefix="bench-tune-empty-")
    for name in names:
        dirs = {s: tempfile.mkdtemp(prefix=f"bench-tune-{name}-{s}-") for s in strategies}
        reps = {}
        for s in strategies:
            rep, secs = tune_into(name, s, args.trials, args.seed, dirs[s])
            reps[s] = (rep, secs)
            print(f"{name} {s}: {secs:.0f} s\n{rep}", flush=True)
        ks = {s: main_kernel(reps[s][0]) for s in strategies}
        km, kr = ks["thompson"], ks["random"]
        sp = {s: speedups(k) for s, k in ks.items()}
        best = max(max(c, default=0.0) for c in sp.values())
        to = {s: to_95(sp[s], best) for s in ks}
        tm, tr = to["thompson"], to["random"]
        ratios.append(tm / tr)
        curves[name] = {("model (thompson)" if s == "thompson" else s): sp[s] for s in ks}
        d, t = end_to_end(name, dirs["thompson"], empty)
        gains.append(d / t)
        rows.append([name, CASES[name][2], harness.fmt_time(km.default), harness.fmt_time(km.best),
                     harness.fmt_time(kr.best), f"{tm}{'+' if tm > len(km.curve) else ''}",
                     f"{tr}{'+' if tr > len(kr.curve) else ''}", f"{tm / tr:.2f}"]
                    + [f"{to[s]}{'+' if to[s] > len(ks[s].curve) else ''}" for s in others]
                    + [harness.fmt_time(d), harness.fmt_time(t), f"{d / t:.2f}x",
                     f"{reps['thompson'][1]:.0f} s"])
        header = HEADER[:8] + [f"to 95% ({s})" for s in others] + HEADER[8:]
        print(harness.text_table(header, rows[-1:], group=False), flush=True)
        if name == ("mlp1" if "mlp1" in names else names[0]):  # (a small kernel: the first call is mostly ours)
            fc = first_call_with_records(name, dirs["thompson"])
            notes.append(f"First call of a fresh process from the disk cache ({name}), decoration included, "
                         f"medians of 11, alternating: {fc['records']:.1f} ms with its tuning records in the store, "
                         f"{fc['none']:.1f} ms with no store: records add {fc['records'] - fc['none']:+.1f} ms "
                         f"(target < 5 ms: {harness.pass_miss(fc['records'] - fc['none'], 5, False)}).")
    if args.long:
        d = tempfile.mkdtemp(prefix="bench-tune-long-")
        rep, secs = tune_into(args.long, "thompson", 256, args.seed, d)
        notes.append(f"256 trials of {args.long} took {secs:.0f} s (target < 180 s: "
                     f"{harness.pass_miss(secs, 180, False)}); best {main_kernel(rep).speedup:.2f}x over default.")
    med = statistics.median(ratios)
    notes.insert(0, f"Median over cases of (trials to 95% of the best, model / random): {med:.2f} "
                    f"(target <= 0.33: {harness.pass_miss(med, 0.34, False)}). Cases where tuning gained >= 1.2x end "
                    f"to end: {sum(g >= 1.2 for g in gains)} (target >= 3); slower than default (< 0.97x, "
                    f"beyond timing noise): {sum(g < 0.97 for g in gains)} (target 0).")
    header = HEADER[:8] + [f"to 95% ({s})" for s in others] + HEADER[8:]
    print(harness.text_table(header, rows, group=False))
    print("\n".join(notes))
    png = HERE / "tune_curves.png"
    plot(curves, png)
    if args.no_write:
        return
    section = "tune" if not args.only and args.trials == 32 else "tune-partial"
    parts = [f"## Autotuning ({args.trials} trials per strategy, seed {args.seed})", "",
             "`python benchmarks/bench_tune.py" + (f" --only {args.only}" if args.only else "")
             + (f" --trials {args.trials}" if args.trials != 32 else "") + (f" --long {args.long}" if args.long
                                                                            else "") + "`", "",
             harness.machine_info_markdown(harness.machine_info()), "",
             "Kernel times are the tuner's medians of the main kernel; trials to 95% count the default as trial 1 "
             "('+': never reached within the budget). End to end: the whole function per call, compiled with the "
             "records vs with the default schedules, interleaved medians. Curves: "
             f"[`{png.name}`]({png.name}).", "", harness.markdown_table(header, rows), ""] + notes
    note = harness.edited_note(stamp)
    if note:
        parts += ["", note]
    harness.write_section(section, "\n".join(parts))
    print(f"wrote section {section!r} of {harness.RESULTS_MD} and {png}")


HEADER = ["case", "what", "default", "best (model)", "best (random)", "to 95% (model)", "to 95% (random)",
          "ratio", "e2e default", "e2e tuned", "e2e gain", "tuning time"]

if __name__ == "__main__":
    main()
