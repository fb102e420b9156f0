"""ONNX models: jitensor (`jitensor.onnx.compile`) against onnxruntime, side by side in one process.

    python benchmarks/bench_onnx.py                 # every workload; writes section `onnx` of RESULTS.md
    python benchmarks/bench_onnx.py --quick         # fewer rounds and compile runs; writes section `onnx-quick`
    python benchmarks/bench_onnx.py --only mlp1,bert_encoder --quick --no-write

Workloads (float32, batch 1 unless said, models built by `onnx_models.py` with seeded random weights and
saved to a temporary directory): conv_block (conv 3x3 64->64 on 56x56 + bias + relu), mlp1 and mlp64
(784-512-512-10, batch 1 and 64), resnet50 (v1.5), mobilenetv2, bert_encoder (4 layers, hidden 256,
4 heads, seq 128, ffn 1024).

For every workload:

1. Compile time, in fresh processes (`python -c`, this checkout's jitensor): `jitensor.onnx.compile(path)`
   (read, check, shape inference, converters set up) and the first call (trace, compile, run once), with
   `JITENSOR_CACHE_DIR` set to a fresh empty directory (cold compile), then in a second fresh process
   with the directory the first one filled (loaded from the disk cache; the status says whether it was a
   disk hit). One discarded process (mlp, batch 1, its own cache directory) first fills Python's bytecode
   cache, as in `bench_compile.py`.
2. Correctness: jitensor's output against onnxruntime's on the same inputs (standard normal),
   `np.allclose(rtol=1e-3, atol=1e-4)`, and the largest absolute error.
3. Steady-state latency: jitensor and onnxruntime (CPU provider, intra_op_num_threads=2, inter_op 1,
   sequential execution, idle threads sleeping rather than spinning) timed interleaved in this process (`harness.bench`), median and min; the ratio
   is the latency t_jitensor / t_onnxruntime (< 1: jitensor faster).

A model jitensor cannot compile (an unsupported op, a converter error...) is reported as ERROR with the
error's first line, and the run goes on.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Let OpenBLAS's worker threads sleep at once (see README.md: interleaving and spinning threads).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's jitensor, whatever is installed
sys.path.insert(1, str(HERE))
import harness  # noqa: E402
import onnx_models  # noqa: E402
from harness import Case  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4
ORT_THREADS = 2

# key: (display name, builder, builder kwargs, calls per timed sample, time budget (s) of the timed rounds)
WORKLOADS = {
    "conv_block": ("conv 3x3 64->64 56x56 + bias + relu", onnx_models.conv_block, {}, 4, 10.0),
    "mlp1": ("mlp 784-512-512-10, batch 1", onnx_models.mlp, {"batch": 1}, 50, 6.0),
    "mlp64": ("mlp 784-512-512-10, batch 64", onnx_models.mlp, {"batch": 64}, 10, 6.0),
    "resnet50": ("resnet50 v1.5, 1x3x224x224", onnx_models.resnet50, {}, 1, 20.0),
    "mobilenetv2": ("mobilenetv2 1.0, 1x3x224x224", onnx_models.mobilenetv2, {}, 1, 15.0),
    "bert_encoder": ("encoder 4 layers, hidden 256, seq 128", onnx_models.bert_encoder, {}, 1, 15.0),
}
ALL = tuple(WORKLOADS)
ALIASES = {"mlp": ("mlp1", "mlp64"), "bert": ("bert_encoder",), "resnet": ("resnet50",)}

# The jitensor of this checkout, whatever is installed.
_SRC_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(harness.HERE.parent), os.environ.get("PYTHONPATH")) if p)}

COMPILE_CODE = """
import sys, time
sys.path.insert(0, {here!r})
import numpy as np
ti = time.perf_counter()
import jitensor, jitensor.onnx
ti = time.perf_counter() - ti
feeds = dict(np.load({inputs!r}))
to = time.perf_counter()
import onnx  # jitensor.onnx imports it on the first compile(); timed apart
to = time.perf_counter() - to
try:
    t0 = time.perf_counter()
    f = jitensor.onnx.compile({path!r})
    t1 = time.perf_counter()
    y = f(**feeds)
    t2 = time.perf_counter()
except Exception as e:
    text = str(e).strip().splitlines()
    print("RESULT error=" + (type(e).__name__ + ": " + (text[0] if text else "")).replace(chr(10), " ")[:300])
    raise SystemExit(0)
print(f"RESULT import={{ti}}")
print(f"RESULT import_onnx={{to}}")
print(f"RESULT jitensor_file={{jitensor.__file__}}")
print(f"RESULT compile={{t1 - t0}}")
print(f"RESULT first_call={{t2 - t1}}")
print(f"RESULT disk_hits={{f.cache_info().disk_hits}}")
print(f"RESULT finite={{int(np.isfinite(np.asarray(y)).all())}}")
"""


MODEL_DIR: Path | None = None  # the temporary directory of this run's .onnx files


def _clean(msg: str) -> str:
    """A message without this run's temporary directory (models are named by their file name)."""
    return msg.replace(f"{MODEL_DIR}{os.sep}", "") if MODEL_DIR is not None else msg


def _fresh(path: Path, inputs: Path, cache_dir: str, timeout: float) -> dict:
    code = COMPILE_CODE.format(here=str(harness.HERE), path=str(path), inputs=str(inputs))
    return harness.run_fresh(code, env={"JITENSOR_CACHE_DIR": cache_dir, "JITENSOR_DISABLE_CACHE": None, **_SRC_ENV},
                             timeout=timeout)


def _merge_cache(src: str, dst: str) -> None:
    """Copy the entries (and side files, records) of cache directory `src` into `dst`: every entry is a
    self-describing file and the listing is the index, so this process then loads them as disk hits."""
    for p in Path(src).iterdir():
        if p.is_file() and p.suffix in (".jtk", ".so", ".jtr") and not (Path(dst) / p.name).exists():
            shutil.copy2(p, Path(dst) / p.name)


def compile_runs(keys, files, runs: int, merged_cache: str, timeout: float) -> dict:
    """Per workload, `runs` pairs of fresh processes: cold (empty cache dir), then disk (the same dir).
    Returns {key: {"cold": [...], "disk": [...], "notes": [...], "error": str}}; each value a dict of the
    process's RESULT lines."""
    out = {}
    # a discarded process first: fills the bytecode cache (and the OS file cache)
    path, inputs = files["mlp1"] if "mlp1" in files else next(iter(files.values()))
    _fresh(path, inputs, tempfile.mkdtemp(prefix="jitensor-bench-cache-"), timeout)
    for key in keys:
        path, inputs = files[key]
        rec = out[key] = {"cold": [], "disk": [], "notes": [], "error": ""}
        for _ in range(runs):
            d = tempfile.mkdtemp(prefix="jitensor-bench-cache-")
            for mode in ("cold", "disk"):
                res = _fresh(path, inputs, d, timeout)
                if "error" in res:
                    rec["error"] = _clean(str(res["error"]))
                    print(f"  {key} {mode}: ERROR {rec['error']}", flush=True)
                    break
                hit = res.get("disk_hits", 0) >= 1
                if hit != (mode == "disk"):
                    rec["notes"].append("unexpected disk-cache hit" if hit else "NOT loaded from the disk cache")
                if not str(res.get("jitensor_file", "")).startswith(str(HERE.parent)):
                    rec["notes"].append(f"jitensor imported from {res.get('jitensor_file')}")
                if not res.get("finite"):
                    rec["notes"].append("non-finite output")
                rec[mode].append(res)
                note = "" if hit == (mode == "disk") else f" ({rec['notes'][-1]})"
                print(f"  {key} {mode}: compile() {harness.fmt_time(res['compile'])}, first call "
                      f"{harness.fmt_time(res['first_call'])}{note}", flush=True)
            if rec["error"]:
                break
            _merge_cache(d, merged_cache)
    return out


def compile_rows(keys, comp) -> list:
    rows = []
    for key in keys:
        rec = comp.get(key)
        if rec is None:
            continue
        name = WORKLOADS[key][0]
        if rec["error"] and not rec["cold"]:
            rows.append([name, "", "", "", "", "", "", f"ERROR: {rec['error']}"])
            continue
        status = "; ".join(sorted(set(rec["notes"]))) or "ok"
        if rec["error"]:
            status = f"ERROR: {rec['error']}"

        def med(mode, field):
            vals = [r[field] for r in rec[mode]]
            return statistics.median(vals) if vals else None

        def total(mode):
            vals = [r["compile"] + r["first_call"] for r in rec[mode]]
            return (statistics.median(vals), min(vals)) if vals else (None, None)

        ct, cmin = total("cold")
        dt, dmin = total("disk")
        rows.append([name, harness.fmt_time(med("cold", "import_onnx")), harness.fmt_time(med("cold", "compile")),
                     harness.fmt_time(med("cold", "first_call")),
                     f"{harness.fmt_time(ct)} (min {harness.fmt_time(cmin)})" if ct is not None else "",
                     f"{harness.fmt_time(dt)} (min {harness.fmt_time(dmin)})" if dt is not None else "",
                     str(len(rec["cold"])), status])
    return rows


COMPILE_HEADER = ["model", "import onnx", "compile() cold", "first call cold", "compile() + first call, cold",
                  "compile() + first call, from disk", "runs", "status"]


# ============================================================================ latency

def make_cases(keys, files, models) -> list:
    cases = []
    for key in keys:
        name, _, _, inner, budget = WORKLOADS[key]
        path, _ = files[key]
        feeds = onnx_models.example_inputs(models[key])
        sess = onnx_models.ort_session(str(path), threads=ORT_THREADS)

        def reference(sess=sess, feeds=feeds):
            return sess.run(None, feeds)[0]
        cases.append(Case(key, name, reference, (), rtol=RTOL, atol=ATOL, inner=inner, budget_s=budget,
                          impls={"path": path, "feeds": feeds, "sess": sess}))
    return cases


FIRST_CALL_IN_PROCESS: dict = {}


def ort_peer(case):
    sess, feeds = case.impls["sess"], case.impls["feeds"]
    return lambda: sess.run(None, feeds)[0]


def jitensor_peer(case):
    import jitensor.onnx
    f = jitensor.onnx.compile(str(case.impls["path"]))
    args = [case.impls["feeds"][spec.name] for spec in f.inputs]
    t0 = time.perf_counter()
    f(*args)  # compiles (or loads from the disk cache filled by the compile runs)
    FIRST_CALL_IN_PROCESS[case.key] = (time.perf_counter() - t0, f.cache_info().disk_hits)
    return lambda: f(*args)


PEERS = {"onnxruntime": ort_peer, "jitensor": jitensor_peer}


class OnnxResults(harness.Results):
    baseline = "onnxruntime"


def ratio(res, key) -> float | None:
    """Latency ratio t_jitensor / t_onnxruntime (medians): < 1 means jitensor is faster."""
    j, o = res.get(key, "jitensor"), res.get(key, "onnxruntime")
    return j.median / o.median if j is not None and o is not None and j.ok and o.ok else None


LATENCY_HEADER = ["model", "peer", "median", "min", "jitensor / onnxruntime (latency)", "max abs err vs onnxruntime",
                  "status"]


def latency_rows(res) -> list:
    rows = []
    for r in res:
        status = r.status if r.status != "ok" else f"ok ({len(r.times)} runs × {r.case.inner} calls)"
        if r.message:
            status += f": {_clean(r.message)}"
        err = f"{r.max_err:.2g}" if r.peer == "jitensor" and r.max_err is not None else ""
        rows.append([r.case.name, r.peer, harness.fmt_time(r.median), harness.fmt_time(r.min),
                     harness.fmt_ratio(ratio(res, r.case.key)) if r.peer == "jitensor" else "", err, status])
    return rows


# ============================================================================ targets

def targets(res, comp) -> list:
    rows = []

    def latency(label, key, goal):
        j = res.get(key, "jitensor")
        if j is None:
            return
        o = res.get(key, "onnxruntime")
        v = ratio(res, key)
        if not j.ok:
            result = f"miss (jitensor {j.status})"
        elif o is None or not o.ok:
            result = f"n/a (onnxruntime {o.status if o else 'not run'})"
        else:
            result = "pass" if v <= goal else "miss"
        rows.append([label, f"≤ {goal:g}", "" if v is None else f"{v:.2f}", result])

    latency("conv_block latency jitensor / onnxruntime", "conv_block", 1.0)
    latency("ResNet-50 latency jitensor / onnxruntime (first)", "resnet50", 1.5)
    latency("ResNet-50 latency jitensor / onnxruntime (eventually)", "resnet50", 1.0)
    latency("MLP batch 1 latency jitensor / onnxruntime", "mlp1", 1.0)
    latency("MLP batch 64 latency jitensor / onnxruntime", "mlp64", 1.0)
    rec = comp.get("resnet50")
    if rec is not None:
        for mode, goal, label in (("cold", 30.0, "ResNet-50 cold compile (compile() + first call, empty cache)"),
                                  ("disk", 2.0, "ResNet-50 from the disk cache (compile() + first call)")):
            vals = [r["compile"] + r["first_call"] for r in rec[mode]]
            if not vals:
                rows.append([label, f"< {goal:g} s", "", "miss (jitensor ERROR)" if rec["error"] else "n/a"])
                continue
            v = statistics.median(vals)
            result = "pass" if v < goal else "miss"
            if mode == "disk" and "NOT loaded from the disk cache" in rec["notes"]:
                result = "miss (not loaded from the disk cache)"
            rows.append([label, f"< {goal:g} s", harness.fmt_time(v), result])
    return rows


TARGET_HEADER = ["target", "goal", "measured", "result"]


# ============================================================================ main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, one compile run per model")
    ap.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(ALL) + " (mlp = mlp1,mlp64)")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds per model (default 30, quick 5)")
    ap.add_argument("--compile-runs", type=int, default=None,
                    help="cold + disk fresh-process pairs per model (default 3, quick 1)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed to one fresh process")
    ap.add_argument("--section", default=None,
                    help="RESULTS.md section (default: onnx; onnx-quick with --quick; onnx-partial with --only)")
    args = ap.parse_args(argv)
    only = []
    for s in (s.strip() for s in args.only.split(",")):
        for k in ALIASES.get(s, (s,) if s else ()):
            if k not in WORKLOADS:
                ap.error(f"unknown workload {k}; choose from {', '.join(ALL)}")
            only.append(k)
    keys = [k for k in ALL if k in only] if only else list(ALL)
    reps = args.reps or (5 if args.quick else 30)
    runs = args.compile_runs or (1 if args.quick else 3)
    section = args.section or ("onnx-quick" if args.quick else "onnx-partial" if args.only else "onnx")

    t_start = time.perf_counter()
    # This process loads the programs the compile runs stored (a merged copy of their cache directories),
    # and leaves the user's own cache alone.
    merged_cache = tempfile.mkdtemp(prefix="jitensor-bench-cache-")
    os.environ["JITENSOR_CACHE_DIR"] = merged_cache
    os.environ.pop("JITENSOR_DISABLE_CACHE", None)
    stamp = harness.source_stamp()
    info = harness.machine_info()
    for k in ("numexpr", "numba", "jax"):
        info.pop(k, None)
    import jitensor
    info["jitensor"] += f", imported from {Path(jitensor.__file__).parent}"
    info["onnx"] = harness._version("onnx")
    info["onnxruntime"] = harness._version("onnxruntime")
    for k, v in info.items():
        print(f"{k}: {v}")

    global MODEL_DIR
    tmp = MODEL_DIR = Path(tempfile.mkdtemp(prefix="jitensor-bench-onnx-"))
    print(f"\nbuilding models in {tmp}:", flush=True)
    models, files = {}, {}
    for key in keys:
        _, build, kw, _, _ = WORKLOADS[key]
        t0 = time.perf_counter()
        m = models[key] = build(**kw)
        path, inputs = tmp / f"{key}.onnx", tmp / f"{key}.inputs.npz"
        path.write_bytes(m.SerializeToString())
        np.savez(inputs, **onnx_models.example_inputs(m))
        files[key] = (path, inputs)
        print(f"  {key}: {len(m.graph.node)} nodes, {path.stat().st_size / 1e6:.1f} MB "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)

    print(f"\ncompile time, fresh processes ({runs} cold + disk pair{'s' * (runs > 1)} per model):", flush=True)
    comp = compile_runs(keys, files, runs, merged_cache, args.timeout)

    print(f"\nlatency, jitensor vs onnxruntime interleaved (up to {reps} rounds):", flush=True)
    cases = make_cases(keys, files, models)
    res = OnnxResults(harness.bench(cases, PEERS, reps=reps))

    crows, lrows, trows = compile_rows(keys, comp), latency_rows(res), targets(res, comp)
    fc_lines = [f"{WORKLOADS[k][0]}: {harness.fmt_time(t)} ({'disk hit' if hits else 'compiled: NOT a disk hit'})"
                for k, (t, hits) in FIRST_CALL_IN_PROCESS.items()]
    print()
    print(harness.text_table(COMPILE_HEADER, crows, group=False))
    print()
    print(harness.text_table(LATENCY_HEADER, lrows))
    if fc_lines:
        print("\nfirst call in this process (the programs the compile runs stored):\n  " + "\n  ".join(fc_lines))
    if trows:
        print()
        print(harness.text_table(TARGET_HEADER, trows, group=False))
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    edited = harness.edited_note(stamp)
    if edited:
        print(f"WARNING: {edited}")
    shutil.rmtree(tmp, ignore_errors=True)

    if not args.no_write:
        extra = {"onnxruntime session": f"CPUExecutionProvider, intra_op_num_threads={ORT_THREADS}, "
                                        "inter_op_num_threads=1, sequential execution, idle threads sleep "
                                        "(allow_spinning=0: spinning ones take the cores from the peer run "
                                        "next to them)",
                 "run": f"{'quick' if args.quick else 'full'}, workloads {','.join(keys)}, up to {reps} interleaved "
                        f"rounds per model, {runs} cold + disk compile pair{'s' * (runs > 1)}, {total:.0f} s"}
        parts = [f"## ONNX models: jitensor vs onnxruntime (`bench_onnx.py`{' --quick' if args.quick else ''})", "",
                 harness.machine_info_markdown(info, extra), ""]
        if edited:
            parts += [f"**Warning**: {edited}.", ""]
        parts += ["Models built by `onnx_models.py` (seeded random weights, opset 17, float32, batch 1 unless said); "
                  "inputs standard normal.", "",
                  "### Compile time (fresh processes)", "",
                  "`import onnx` = the import jitensor.onnx's first `compile()` needs, timed apart; "
                  "`compile()` = `jitensor.onnx.compile(path)` (read, check, shape inference); first call = trace, "
                  "compile and run once. Cold: `JITENSOR_CACHE_DIR` empty; from disk: a second fresh process with "
                  "the directory the cold one filled. Medians over the runs.", "",
                  harness.markdown_table(COMPILE_HEADER, crows), "",
                  "### Steady-state latency (interleaved in one process)", "",
                  f"Per call, median and min over the interleaved rounds. Ratio = t_jitensor / t_onnxruntime "
                  f"(< 1: jitensor faster). jitensor's output is checked against onnxruntime's "
                  f"(`np.allclose(rtol={RTOL:g}, atol={ATOL:g})`) before timing.", "",
                  harness.markdown_table(LATENCY_HEADER, lrows)]
        if trows:
            parts += ["", "### Targets", "", harness.markdown_table(TARGET_HEADER, trows)]
        harness.write_section(section, "\n".join(parts))
        print(f"wrote section '{section}' of {harness.RESULTS_MD}")


if __name__ == "__main__":
    main()
