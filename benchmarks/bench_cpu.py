"""CPU benchmarks: jitensor against numpy, numexpr, numba and jax, side by side in one process.

    python benchmarks/bench_cpu.py              # full run, writes section `cpu` of RESULTS.md
    python benchmarks/bench_cpu.py --quick      # small sizes (smoke run), writes section `cpu-quick`
    python benchmarks/bench_cpu.py --only gelu,softmax --no-write

Workloads (float32): gelu, softmax, layernorm, sgemm, mbr (matmul + bias + ReLU), colsum (column sums
`x.sum(axis=0)`, square and tall-skinny), blackscholes (call and put prices, two outputs), overhead
(cached-call overhead of `x + y` on 1000 elements), firstcall (first call of gelu in a fresh process).
jitensor compiles the plain numpy function, unchanged; numexpr, numba and jax get their own idiomatic
versions below. See README.md for what every column means.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no accelerator probing (and no warning about it)
# OpenBLAS's worker threads spin for ~0.1 s after each call: the peer timed right after numpy's matmul would
# share both cores with them. Let them sleep at once (numpy's own sgemm speed is unchanged by this, measured).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the same for numba's OpenMP workers

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Case  # noqa: E402

F32 = np.float32


# ============================================================================ the numpy functions
# (the reference, timed as the numpy peer, and compiled unchanged by jitensor)

def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x, g, b):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def matmul(a, b):
    return a @ b


def matmul_bias_relu(x, w, b):
    return np.maximum(x @ w + b, 0)


def add(x, y):
    return x + y


def colsum(x):
    return x.sum(axis=0)


def _ncdf(x):  # the tanh approximation of the normal CDF
    return 0.5 * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def black_scholes(s, k, t):
    r, sigma = F32(0.02), F32(0.3)
    sqrt_t = np.sqrt(t)
    d1 = (np.log(s / k) + (r + F32(0.5) * sigma * sigma) * t) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    disc = k * np.exp(-r * t)
    call = s * _ncdf(d1) - disc * _ncdf(d2)
    put = disc * _ncdf(-d2) - s * _ncdf(-d1)
    return call, put


# ============================================================================ numexpr (one expression; or steps)

GELU_CONSTS = {"c_half": F32(0.5), "c_one": F32(1.0), "c_k": F32(0.7978845608), "c_a": F32(0.044715)}
BS_R, BS_SIGMA = F32(0.02), F32(0.3)
BS_CONSTS = dict(GELU_CONSTS, c_r=BS_R, c_sig=BS_SIGMA, c_mu=BS_R + F32(0.5) * BS_SIGMA * BS_SIGMA)
_NE_NCDF = "c_half * (c_one + tanh(c_k * ({x} + c_a * {x} * {x} * {x})))"
NUMEXPR = {
    # (expression, input names, constants). float32 constants are passed as variables: a literal like 0.5 is
    # float64 to numexpr and would make the whole expression (and its output) float64
    "gelu": ("c_half * x * (c_one + tanh(c_k * (x + c_a * x * x * x)))", ("x",), GELU_CONSTS),
    "add": ("x + y", ("x", "y"), {}),
    # several outputs: (steps, input names, constants, output names); the steps `(name, expression)` run
    # in turn, each result an input of the later ones (numexpr has no temporaries inside one expression:
    # inlining d1 and d2 would compute each log, sqrt and exp several times per output)
    "blackscholes": (
        (("d1", "(log(s / k) + c_mu * t) / (c_sig * sqrt(t))"),
         ("d2", "d1 - c_sig * sqrt(t)"),
         ("disc", "k * exp(-c_r * t)"),
         ("call", f"s * {_NE_NCDF.format(x='d1')} - disc * {_NE_NCDF.format(x='d2')}"),
         ("put", f"disc * {_NE_NCDF.format(x='(-d2)')} - s * {_NE_NCDF.format(x='(-d1)')}")),
        ("s", "k", "t"), BS_CONSTS, ("call", "put")),
}


# ============================================================================ numba (explicit prange loops)

def numba_impls() -> dict:
    import numba
    from numba import prange

    # module-level float32 constants, so that the arithmetic stays in float32
    c_half, c_one, c_k, c_a = F32(0.5), F32(1.0), F32(0.7978845608), F32(0.044715)
    zero, eps = F32(0.0), F32(1e-5)
    par = dict(parallel=True, fastmath=True)

    @numba.njit(**par)
    def gelu_nb(x):
        out = np.empty_like(x)
        for i in prange(x.size):
            v = x[i]
            out[i] = c_half * v * (c_one + np.tanh(c_k * (v + c_a * v * v * v)))
        return out

    @numba.njit(**par)
    def softmax_nb(x):
        n, m = x.shape
        out = np.empty_like(x)
        for i in prange(n):
            mx = x[i, 0]
            for j in range(1, m):
                mx = max(mx, x[i, j])
            s = zero
            for j in range(m):
                e = np.exp(x[i, j] - mx)
                out[i, j] = e
                s += e
            inv = c_one / s
            for j in range(m):
                out[i, j] *= inv
        return out

    @numba.njit(**par)
    def layernorm_nb(x, g, b):
        n, m = x.shape
        out = np.empty_like(x)
        fm = F32(m)
        for i in prange(n):
            s = zero
            for j in range(m):
                s += x[i, j]
            mu = s / fm
            v = zero
            for j in range(m):
                d = x[i, j] - mu
                v += d * d
            r = c_one / np.sqrt(v / fm + eps)
            for j in range(m):
                out[i, j] = (x[i, j] - mu) * r * g[j] + b[j]
        return out

    @numba.njit(**par)
    def matmul_nb(a, b):  # a simple parallel i-k-j loop nest (the inner loop vectorizes)
        n, k = a.shape
        m = b.shape[1]
        c = np.zeros((n, m), dtype=np.float32)
        for i in prange(n):
            for p in range(k):
                aip = a[i, p]
                for j in range(m):
                    c[i, j] += aip * b[p, j]
        return c

    @numba.njit(**par)
    def matmul_bias_relu_nb(x, w, bias):
        n, k = x.shape
        m = w.shape[1]
        c = np.zeros((n, m), dtype=np.float32)
        for i in prange(n):
            for p in range(k):
                xip = x[i, p]
                for j in range(m):
                    c[i, j] += xip * w[p, j]
            for j in range(m):
                v = c[i, j] + bias[j]
                c[i, j] = v if v > zero else zero
        return c

    @numba.njit(fastmath=True)  # 1000 elements: a parallel launch would only add overhead
    def add_nb(x, y):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = x[i] + y[i]
        return out

    @numba.njit(**par)
    def colsum_nb(x):  # one block of rows per thread, summed into its own row of partial column sums
        n, m = x.shape
        nb = min(numba.get_num_threads(), n)
        part = np.zeros((nb, m), dtype=np.float32)
        for b in prange(nb):
            for i in range(b * n // nb, (b + 1) * n // nb):
                for j in range(m):  # contiguous: vectorizes
                    part[b, j] += x[i, j]
        out = np.zeros(m, dtype=np.float32)
        for b in range(nb):
            for j in range(m):
                out[j] += part[b, j]
        return out

    bs_r, bs_sig = BS_R, BS_SIGMA
    bs_mu = BS_CONSTS["c_mu"]

    @numba.njit(fastmath=True)
    def ncdf_nb(v):
        return c_half * (c_one + math.tanh(c_k * (v + c_a * v * v * v)))

    @numba.njit(**par)
    def black_scholes_nb(s, k, t):  # both outputs per element; math.* on float32 stays float32
        call = np.empty_like(s)
        put = np.empty_like(s)
        for i in prange(s.size):
            sq = math.sqrt(t[i])
            d1 = (math.log(s[i] / k[i]) + bs_mu * t[i]) / (bs_sig * sq)
            d2 = d1 - bs_sig * sq
            disc = k[i] * math.exp(-bs_r * t[i])
            call[i] = s[i] * ncdf_nb(d1) - disc * ncdf_nb(d2)
            put[i] = disc * ncdf_nb(-d2) - s[i] * ncdf_nb(-d1)
        return call, put

    return {"gelu": gelu_nb, "softmax": softmax_nb, "layernorm": layernorm_nb, "sgemm": matmul_nb,
            "mbr": matmul_bias_relu_nb, "add": add_nb, "colsum": colsum_nb, "blackscholes": black_scholes_nb}


# ============================================================================ jax (jax.numpy versions, jax.jit)

def jax_impls() -> dict:
    import jax
    import jax.numpy as jnp

    def gelu_jx(x):
        return 0.5 * x * (1 + jnp.tanh(0.7978845608 * (x + 0.044715 * x**3)))

    def softmax_jx(x):
        e = jnp.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def layernorm_jx(x, g, b):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * g + b

    def matmul_jx(a, b):
        return a @ b

    def matmul_bias_relu_jx(x, w, b):
        return jnp.maximum(x @ w + b, 0)

    def add_jx(x, y):
        return x + y

    def colsum_jx(x):
        return x.sum(axis=0)

    def ncdf_jx(x):
        return 0.5 * (1.0 + jnp.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))

    def black_scholes_jx(s, k, t):
        r, sigma = 0.02, 0.3  # weakly typed: the arithmetic stays float32
        sqrt_t = jnp.sqrt(t)
        d1 = (jnp.log(s / k) + (r + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t)
        d2 = d1 - sigma * sqrt_t
        disc = k * jnp.exp(-r * t)
        call = s * ncdf_jx(d1) - disc * ncdf_jx(d2)
        put = disc * ncdf_jx(-d2) - s * ncdf_jx(-d1)
        return call, put

    fns = {"gelu": gelu_jx, "softmax": softmax_jx, "layernorm": layernorm_jx, "sgemm": matmul_jx,
           "mbr": matmul_bias_relu_jx, "add": add_jx, "colsum": colsum_jx, "blackscholes": black_scholes_jx}
    return {k: jax.jit(f) for k, f in fns.items()}


# ============================================================================ peers (factories)

def _impl_key(case: Case) -> str:
    for family in ("sgemm", "colsum"):  # several sizes of one workload: one key per case, one implementation
        if case.key.startswith(family):
            return family
    return case.key


def numpy_peer(case: Case):
    return functools.partial(case.fn, *case.args)


def jitensor_peer(case: Case):
    import jitensor
    return functools.partial(jitensor.jit(case.fn), *case.args)


def numexpr_peer(case: Case):
    spec = NUMEXPR.get(_impl_key(case))
    if spec is None:
        return None
    import numexpr as ne
    expr, names, consts, *outputs = spec
    local = dict(zip(names, case.args), **consts)
    if not outputs:
        return functools.partial(ne.evaluate, expr, local_dict=local)

    def steps():
        env = dict(local)
        for name, e in expr:
            env[name] = ne.evaluate(e, local_dict=env)
        return tuple(env[name] for name in outputs[0])
    return steps


@functools.lru_cache(maxsize=None)
def _numba():
    return numba_impls()


@functools.lru_cache(maxsize=None)
def _jax():
    return jax_impls()


def numba_peer(case: Case):
    fn = _numba().get(_impl_key(case))
    return None if fn is None else functools.partial(fn, *case.args)


def jax_peer(case: Case):
    fn = _jax().get(_impl_key(case))
    if fn is None:
        return None
    import jax
    jargs = [jax.device_put(a) for a in case.args]
    for a in jargs:
        a.block_until_ready()
    if isinstance(jax.eval_shape(fn, *jargs), tuple):  # several outputs: wait for all of them
        return lambda: jax.block_until_ready(fn(*jargs))
    return lambda: fn(*jargs).block_until_ready()


PEERS = {"numpy": numpy_peer, "jitensor": jitensor_peer, "numexpr": numexpr_peer, "numba": numba_peer,
         "jax": jax_peer}


# ============================================================================ cases

def make_cases(quick: bool, only: set) -> list:
    rng = np.random.default_rng(0)
    rnd = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    cases = []
    if "gelu" in only:
        n = (1 << 20) if quick else (1 << 24)
        x = rnd(n)
        cases.append(Case("gelu", f"gelu {n >> 20}M", gelu, (x,), rtol=1e-3, atol=1e-5, bytes=2 * x.nbytes,
                          budget_s=14.0))
    if "softmax" in only:
        n = 1024 if quick else 4096
        x = rnd(n, n)
        cases.append(Case("softmax", f"softmax {n}x{n}", softmax, (x,), rtol=1e-3, atol=1e-7, bytes=2 * x.nbytes))
    if "layernorm" in only:
        n, m = (2048, 1024) if quick else (8192, 1024)
        x, g, b = rnd(n, m), rnd(m), rnd(m)
        cases.append(Case("layernorm", f"layernorm {n}x{m}", layernorm, (x, g, b), rtol=1e-3, atol=1e-4,
                          bytes=2 * x.nbytes))
    if "sgemm" in only:
        for n in ((256, 512) if quick else (1024, 2048)):
            a, b = rnd(n, n), rnd(n, n)
            cases.append(Case(f"sgemm{n}", f"sgemm {n}^3", matmul, (a, b), rtol=1e-3, atol=2e-3 * np.sqrt(n),
                              flops=2.0 * n**3, budget_s=8.0 if n >= 2048 else 5.0))
    if "mbr" in only:
        m, k, n = 256, 512, 512
        x, w, b = rnd(m, k), rnd(k, n), rnd(n)
        cases.append(Case("mbr", f"matmul+bias+relu {m}x{k}x{n}", matmul_bias_relu, (x, w, b), rtol=1e-3,
                          atol=2e-3 * np.sqrt(k), flops=2.0 * m * k * n, budget_s=5.0))
    if "colsum" in only:
        # float32 sums in any order (numpy adds the rows one by one): measured errors against float64 sums are
        # 5e-4 for 4096 rows and 0.05-0.07 for 1M rows (sums up to ~3000); a missing row moves some column by 2-4
        for (n, m), atol in (((1024, 1024) if quick else (4096, 4096), 1e-2),
                             ((1 << 16, 16) if quick else (1 << 20, 16), 0.5)):
            x = rnd(n, m)
            cases.append(Case(f"colsum{n}x{m}", f"colsum {n}x{m}", colsum, (x,), rtol=1e-3, atol=atol,
                              bytes=x.nbytes))
    if "blackscholes" in only:
        n = (1 << 18) if quick else (1 << 22)
        s, k = (rng.uniform(10, 100, n).astype(np.float32) for _ in range(2))
        t = rng.uniform(0.25, 2, n).astype(np.float32)
        # prices up to ~90; float32 implementations differ by ~3e-5 (near-zero prices included)
        cases.append(Case("blackscholes", f"blackscholes {n >> 20}M" if n >= 1 << 20 else f"blackscholes {n >> 10}K",
                          black_scholes, (s, k, t), rtol=1e-3, atol=1e-3, bytes=5 * s.nbytes))
    if "overhead" in only:
        x, y = rnd(1000), rnd(1000)
        cases.append(Case("add", "x + y, 1000 (per call)", add, (x, y), rtol=1e-6, atol=0,
                          inner=500 if quick else 2000, budget_s=2.0 if quick else 6.0))
    return cases


# ============================================================================ first call in a fresh process

FIRSTCALL_N = 4096  # small, so that the first call measures compiling (or loading), not the kernel

_FC_PRE = f"""
import sys, time
import numpy as np
sys.path.insert(0, {str(harness.HERE)!r})
x = np.random.default_rng(0).standard_normal({FIRSTCALL_N}, dtype=np.float32)
"""
_FC_POST = """
t = time.perf_counter() - t0
from bench_cpu import gelu as ref
ok = np.allclose(np.asarray(r), ref(x), rtol=1e-3, atol=1e-5)
print(f"RESULT first_call={t}")
print(f"RESULT correct={int(ok)}")
"""
FIRSTCALL_CODE = {
    "numpy": "from bench_cpu import gelu as f\nt0 = time.perf_counter()\nr = f(x)\n",
    "jitensor": ("import jitensor\nfrom bench_cpu import gelu\nf = jitensor.jit(gelu)\n"
                 "t0 = time.perf_counter()\nr = f(x)\n"),
    "numexpr": ("import numexpr as ne\nfrom bench_cpu import NUMEXPR\nexpr, _, c = NUMEXPR['gelu']\n"
                "t0 = time.perf_counter()\nr = ne.evaluate(expr, local_dict=dict(x=x, **c))\n"),
    "numba": ("from bench_cpu import numba_impls\nf = numba_impls()['gelu']\n"
              "t0 = time.perf_counter()\nr = f(x)\n"),
    # jax arrays are created (and the backend started) before the timing: the first call traces + compiles
    "jax": ("from bench_cpu import jax_impls\nimport jax\nf = jax_impls()['gelu']\n"
            "xj = jax.device_put(x).block_until_ready()\n"
            "t0 = time.perf_counter()\nr = f(xj).block_until_ready()\n"),
}
_FC_JIT_EXTRA = """
ci = f.cache_info()
print(f"RESULT disk_hits={ci.disk_hits}")
"""


def first_calls(peers) -> list[dict]:
    rows = []
    cache_dir = tempfile.mkdtemp(prefix="jitensor-bench-cache-")
    for peer in peers:
        runs = [("jitensor (cold cache)", "cold"), ("jitensor (disk cache)", "disk")] if peer == "jitensor" \
            else [(peer, None)]
        for label, mode in runs:
            code = _FC_PRE + FIRSTCALL_CODE[peer] + _FC_POST + (_FC_JIT_EXTRA if peer == "jitensor" else "")
            env = {"JITENSOR_CACHE_DIR": cache_dir, "JITENSOR_DISABLE_CACHE": None}
            if mode != "disk":  # a discarded run first: fills the bytecode cache (and the OS file cache)
                harness.run_fresh(code, env=dict(env, JITENSOR_CACHE_DIR=tempfile.mkdtemp(prefix="jitensor-bench-")))
            t0 = time.perf_counter()
            res = harness.run_fresh(code, env=env)
            wall = time.perf_counter() - t0
            note = ""
            if "error" in res:
                status, note = "ERROR", str(res["error"])
            elif not res.get("correct"):
                status = "WRONG"
            else:
                status = "ok"
            if mode == "disk" and status == "ok":
                note = "loaded from the disk cache" if res.get("disk_hits", 0) >= 1 else "NOT a disk-cache hit"
            if mode == "cold" and status == "ok" and res.get("disk_hits", 0):
                note = "unexpected disk-cache hit"
            rows.append({"peer": label, "mode": mode, "status": status, "first_call": res.get("first_call"),
                         "process": wall, "note": note})
            print(f"  first call {label}: {harness.fmt_time(res.get('first_call'))} {status} {note}".rstrip(),
                  flush=True)
    return rows


def firstcall_rows(fc) -> list[list[str]]:
    return [[r["peer"], harness.fmt_time(r["first_call"]) if r["status"] == "ok" else "", f"{r['process']:.2f} s",
             r["status"] + (f": {r['note']}" if r["note"] else "")] for r in fc]


FC_HEADER = ["peer", "first call", "whole process", "status"]


# ============================================================================ targets

def targets(res: harness.Results, memcpy_bps: float, fc) -> list[list[str]]:
    """Pass/miss of each target. A target whose jitensor run failed (ERROR/WRONG) is a miss; one whose
    peer failed cannot be judged (n/a)."""
    rows = []

    def judge(key, other, value, goal, higher_is_better=True):
        o = res.get(key, "jitensor")
        if not o.ok:
            return f"miss (jitensor {o.status})"
        if other is not None:
            p = res.get(key, other)
            if p is None or not p.ok:
                return f"n/a ({other} {p.status if p else 'not run'})"
        if value is None:
            return "n/a"
        return "pass" if (value >= goal if higher_is_better else value <= goal) else "miss"

    def speed_row(label, key, over, goal):
        if res.get(key, "jitensor") is None:
            return
        v = res.speedup(key, over)
        rows.append([label, f"≥ {goal:g}x", "" if v is None else f"{v:.2f}x", judge(key, over, v, goal)])

    g = res.get("gelu", "jitensor")
    if g is not None:
        frac = g.gbps * 1e9 / memcpy_bps if g.ok and memcpy_bps else None
        rows.append(["GELU effective bandwidth vs memcpy", "≥ 70%",
                     (f"{frac:.0%} ({g.gbps:.1f} of {memcpy_bps / 1e9:.1f} GB/s)" if frac is not None else ""),
                     judge("gelu", None, frac, 0.70)])
    speed_row("GELU vs jax", "gelu", "jax", 5)
    speed_row("softmax vs numpy", "softmax", "numpy", 8)
    speed_row("softmax vs jax", "softmax", "jax", 3)
    speed_row("layernorm vs numpy", "layernorm", "numpy", 12)
    speed_row("layernorm vs numba", "layernorm", "numba", 1.2)
    for key in sorted({r.case.key for r in res if r.case.key.startswith("sgemm")}, key=lambda k: int(k[5:])):
        speed_row(f"sgemm {key[5:]}^3 vs numpy", key, "numpy", 0.9)
    speed_row("matmul+bias+relu vs numpy", "mbr", "numpy", 1.2)
    j, n = res.get("add", "jitensor"), res.get("add", "numpy")
    if j is not None:
        d = (j.median - n.median) * 1e6 if j.ok and n is not None and n.ok else None
        rows.append(["call overhead (jitensor − numpy, 1000-element add)", "≤ 5 µs",
                     f"{d:.2f} µs" if d is not None else "", judge("add", "numpy", d, 5.0, False)])
    disk = next((r for r in fc if r["mode"] == "disk"), None)
    if disk is not None:
        if disk["status"] != "ok":
            result = f"miss (jitensor {disk['status']})"
        elif "NOT" in disk["note"]:
            result = "miss (not loaded from the disk cache)"
        else:
            result = "pass" if disk["first_call"] < 0.030 else "miss"
        rows.append(["first call from the disk cache", "< 30 ms", harness.fmt_time(disk["first_call"]), result])
    return rows


TARGET_HEADER = ["target", "goal", "measured", "result"]


# ============================================================================ main

ALL = ("gelu", "softmax", "layernorm", "sgemm", "mbr", "colsum", "blackscholes", "overhead", "firstcall")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run of ~20 s")
    ap.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(ALL))
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds per case (default 9, quick 3)")
    ap.add_argument("--section", default=None,
                    help="RESULTS.md section to write (default: cpu; cpu-quick with --quick; cpu-partial with --only)")
    args = ap.parse_args(argv)
    only = set(ALL) if not args.only else {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(ALL)
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    reps = args.reps or (3 if args.quick else 9)
    section = args.section or ("cpu-quick" if args.quick else "cpu-partial" if args.only else "cpu")

    t_start = time.perf_counter()
    stamp = harness.source_stamp()
    info = harness.machine_info()
    for k, v in info.items():
        print(f"{k}: {v}")
    memcpy_bps = harness.memcpy_bandwidth(runs=5 if args.quick else 9)
    print(f"memcpy: {memcpy_bps / 1e9:.1f} GB/s (np.copyto of 256 MiB, bytes read + written / median time)")

    cases = make_cases(args.quick, only)
    print(f"\nbenchmarks ({'quick' if args.quick else 'full'} sizes, up to {reps} interleaved rounds):")
    res = harness.bench(cases, PEERS, reps=reps)

    fc = []
    if "firstcall" in only:
        print("\nfirst call of gelu in a fresh process:")
        fc = first_calls(list(PEERS))

    try:
        import numba
        numba_layer = numba.threading_layer()
    except Exception:  # noqa: BLE001
        numba_layer = "n/a"

    rows = harness.table_rows(res, memcpy_bps)
    print()
    print(harness.text_table(harness.TABLE_HEADER, rows))
    g = res.get("gelu", "jitensor")
    if g is not None and g.ok:
        print(f"\nGELU jitensor effective bandwidth: {g.gbps:.1f} GB/s = {g.gbps * 1e9 / memcpy_bps:.0%} of memcpy "
              f"({memcpy_bps / 1e9:.1f} GB/s)")
    j, n = res.get("add", "jitensor"), res.get("add", "numpy")
    overhead_line = ""
    if j is not None and j.ok and n is not None and n.ok:
        overhead_line = (f"cached-call overhead: jitensor {j.median * 1e6:.2f} µs − numpy {n.median * 1e6:.2f} µs "
                         f"= {(j.median - n.median) * 1e6:.2f} µs per call")
        print(overhead_line)
    if fc:
        print()
        print(harness.text_table(FC_HEADER, firstcall_rows(fc), group=False))
    trows = targets(res, memcpy_bps, fc)
    if trows:
        print()
        print(harness.text_table(TARGET_HEADER, trows, group=False))
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    edited = harness.edited_note(stamp)
    if edited:
        print(f"WARNING: {edited}")

    if not args.no_write:
        extra = {"memcpy bandwidth": f"{memcpy_bps / 1e9:.1f} GB/s (np.copyto of 256 MiB; bytes read + written)",
                 "numba threading layer": numba_layer,
                 "run": f"{'quick' if args.quick else 'full'} sizes, workloads {','.join(a for a in ALL if a in only)},"
                        f" up to {reps} interleaved rounds per case, {total:.0f} s"}
        parts = [f"## CPU: jitensor vs numpy, numexpr, numba, jax (`bench_cpu.py`{' --quick' if args.quick else ''})",
                 "", harness.machine_info_markdown(info, extra), ""]
        if edited:
            parts += [f"**Warning**: {edited}.", ""]
        parts += [
                 "Times are per call (median and min over the interleaved rounds); `vs numpy` = t_numpy / t_peer; "
                 "`jitensor vs` = t_peer / t_jitensor (how many times faster jitensor is than that peer). "
                 "`-` = the peer has no implementation of the workload.", "",
                 harness.markdown_table(harness.TABLE_HEADER, rows)]
        if overhead_line:
            parts += ["", overhead_line + "."]
        if fc:
            parts += ["", f"### First call of gelu in a fresh process ({FIRSTCALL_N} float32 elements; "
                      "measured inside the process, imports excluded)", "",
                      harness.markdown_table(FC_HEADER, firstcall_rows(fc))]
        if trows:
            parts += ["", "### Targets", "", harness.markdown_table(TARGET_HEADER, trows)]
        harness.write_section(section, "\n".join(parts))
        print(f"wrote section '{section}' of {harness.RESULTS_MD}")


if __name__ == "__main__":
    main()
