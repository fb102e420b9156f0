"""Matrix-vector products, skinny matmuls and transposes: jitensor against numpy (OpenBLAS), interleaved.

    python benchmarks/bench_gemv.py                       # all cases, float32 and float64
    python benchmarks/bench_gemv.py --only Ax,xA --dtypes float32 --reps 5

Cases: `A @ x`, `x @ A`, `A.T @ (A @ x)`, `relu(A @ x + b)` (epilogue), `X @ A` with 4 rows (skinny),
batched matvec `(b, m, k) @ (b, k, 1)`, cosine-similarity top-1 (`argmax(Qn @ Dn.T, axis=1)`), and
`x + x.T` / `x.T.copy()` (transposes). Ratios are t_numpy / t_jitensor (> 1: faster).
Writes section `gemv` of RESULTS.md (`gemv-partial` for a subset; `--no-write`: print only).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # see bench_cpu.py: idle BLAS threads must sleep

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Case  # noqa: E402


def ax(A, x):
    return A @ x


def xa(A, y):
    return y @ A


def atax(A, x):
    return A.T @ (A @ x)


def mv_bias_relu(A, x, b):
    return np.maximum(A @ x + b, 0)


def skinny(A, X):
    return X @ A


def bmv(A, x):
    return (A @ x[..., None])[..., 0]


def top1(Q, D):
    qn = Q / np.sqrt((Q * Q).sum(axis=1, keepdims=True))
    dn = D / np.sqrt((D * D).sum(axis=1, keepdims=True))
    return np.argmax(qn @ dn.T, axis=1)


def xpxt(x):
    return x + x.T


def tcopy(x):
    return x.T.copy()


SQUARE = (512, 2048, 4096)
ALL = ("Ax", "xA", "ATAx", "epilogue", "skinny", "batched", "top1", "transpose")


def make_cases(only, dtypes):
    rng = np.random.default_rng(0)
    cases = []
    for dt in dtypes:
        d = np.dtype(dt)
        rnd = lambda *s: rng.standard_normal(s).astype(d)  # noqa: E731
        tag = "f32" if d == np.float32 else "f64"
        shapes = [(n, n) for n in SQUARE] + [(100000, 64), (64, 100000)]
        for m, k in shapes:
            A = rnd(m, k)
            by = A.nbytes
            if "Ax" in only:
                cases.append(Case(f"Ax{m}x{k}{tag}", f"A@x {m}x{k} {tag}", ax, (A, rnd(k)), bytes=by, flops=2 * m * k))
            if "xA" in only:
                cases.append(Case(f"xA{m}x{k}{tag}", f"x@A {m}x{k} {tag}", xa, (A, rnd(m)), bytes=by, flops=2 * m * k))
            if "ATAx" in only and m == k:
                cases.append(Case(f"ATAx{m}{tag}", f"A.T@(A@x) {m}x{k} {tag}", atax, (A, rnd(k)), bytes=2 * by))
            if "epilogue" in only and m == k:
                cases.append(Case(f"mbr{m}{tag}", f"relu(A@x+b) {m}x{k} {tag}", mv_bias_relu, (A, rnd(k), rnd(m)),
                                  bytes=by))
            if "skinny" in only and m == k:
                cases.append(Case(f"sk{m}{tag}", f"X(4x{m})@A {m}x{k} {tag}", skinny, (A, rnd(4, m)), bytes=by))
        if "batched" in only:
            A = rnd(64, 256, 256)
            cases.append(Case(f"bmv{tag}", f"(64,256,256)@(64,256) {tag}", bmv, (A, rnd(64, 256)), bytes=A.nbytes))
        if "top1" in only:
            for nq in (1, 4, 256):
                cases.append(Case(f"top1_{nq}{tag}", f"top1 Q {nq}x256, D 20000x256 {tag}", top1,
                                  (rnd(nq, 256), rnd(20000, 256)), rtol=0, atol=0))
        if "transpose" in only:
            x = rnd(2048, 2048)
            cases.append(Case(f"xpxt{tag}", f"x + x.T 2048^2 {tag}", xpxt, (x,), bytes=2 * x.nbytes))
            cases.append(Case(f"tcopy{tag}", f"x.T.copy() 2048^2 {tag}", tcopy, (x,), bytes=2 * x.nbytes))
    return cases


def numpy_peer(case: Case):
    return functools.partial(case.fn, *case.args)


def jitensor_peer(case: Case):
    import jitensor
    return functools.partial(jitensor.jit(case.fn), *case.args)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated case groups: " + ",".join(ALL))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)
    only = set(ALL) if not args.only else {s.strip() for s in args.only.split(",")}
    cases = make_cases(only, [s.strip() for s in args.dtypes.split(",")])
    for c in cases:
        if c.key.startswith("tcopy") or c.key.startswith("xpxt"):
            c.rtol, c.atol = 1e-6, 1e-6
        elif c.args[0].dtype == np.float64 and c.rtol:
            c.rtol, c.atol = 1e-9, 1e-9
        elif c.rtol:  # float32 sums of thousands of products: both sides round differently, by up to
            # ~K * eps of the largest result near cancellations
            c.rtol, c.atol = 1e-3, 1e-5 * float(np.abs(c.fn(*c.args)).max())
    stamp = harness.source_stamp()
    info = harness.machine_info()
    t0 = time.perf_counter()
    res = harness.bench(cases, {"numpy": numpy_peer, "jitensor": jitensor_peer}, reps=args.reps)
    print()
    harness.print_table(res)
    if args.no_write:
        return
    edited = harness.edited_note(stamp)
    header = ["case", "peer", "median", "min", "vs numpy", "jitensor vs", "throughput", "status"]
    section = "gemv" if not args.only and args.dtypes == "float32,float64" else "gemv-partial"
    parts = ["## Matrix-vector products, skinny matmuls, transposes (`bench_gemv.py`)", "",
             harness.machine_info_markdown(info, {"run": f"{args.reps} interleaved rounds, "
                                                         f"{time.perf_counter() - t0:.0f} s"}), "",
             *([f"**Warning**: {edited}.", ""] if edited else []),
             "`vs numpy` = t_numpy / t_jitensor (> 1: jitensor is faster); numpy's matrix-vector products are "
             "OpenBLAS's.", "", harness.markdown_table(header, harness.table_rows(res))]
    harness.write_section(section, "\n".join(parts))
    print(f"wrote section {section!r} of {harness.RESULTS_MD}")


if __name__ == "__main__":
    main()
