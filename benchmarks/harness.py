"""A small benchmark harness: peers side by side, interleaved, in one process.

    from harness import Case, bench, print_table, markdown_table, write_section, machine_info

    cases = [Case("gelu", "gelu 16M", gelu, (x,), rtol=1e-3, atol=1e-5, bytes=2 * x.nbytes)]
    peers = {"numpy": numpy_peer, "jitensor": jitensor_peer, "numba": numba_peer}
    results = bench(cases, peers, reps=9)
    print_table(results)

A *peer* is a factory: ``factory(case) -> thunk | None``. The thunk takes no arguments, runs the
peer's implementation of the case once on inputs prepared by the factory (outside the timing), and
returns the result; for asynchronous libraries it must also wait for the result (e.g. jax's
``.block_until_ready()``). A factory returns None when the peer has no implementation of the case
(reported as "-").

For every case, `bench`:
  1. computes the expected result with the case's numpy function (`case.fn(*case.args)`);
  2. builds every peer's thunk and warms it up (`warmup` calls; the first call of a compiling peer
     compiles); the result of the last warm-up call is converted with `np.asarray` and checked
     against the expected result with `np.allclose(rtol=case.rtol, atol=case.atol)`. A peer that
     raises is reported as ERROR (the exception's first line), a peer whose result is wrong is
     reported as WRONG (with the largest absolute error); neither is timed;
  3. times the remaining peers *interleaved* (A B C A B C ...), `reps` rounds (fewer when the
     case's time budget would be exceeded, never fewer than `min_reps`), each sample being
     `case.inner` back-to-back calls timed with `time.perf_counter` and divided by `case.inner`;
     the garbage collector is disabled while timing;
  4. reports the median and min of the samples, and the ratios against the baseline peer
     (numpy: `t_numpy / t_peer`, > 1 means faster than numpy) and against jitensor
     (`t_peer / t_jitensor`, > 1 means jitensor is that many times faster than the peer).
"""
from __future__ import annotations

import datetime as _dt
import gc
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"


# ----------------------------------------------------------------------------- cases and results

@dataclass
class Case:
    key: str                      # workload id, used by peer factories to look up their implementation
    name: str                     # display name (with the size)
    fn: Callable                  # the plain numpy function: the reference (and what jitensor compiles)
    args: tuple                   # numpy inputs
    rtol: float = 1e-3
    atol: float = 1e-5
    inner: int = 1                # calls per timed sample (tiny kernels); times are reported per call
    bytes: int | None = None      # bytes read + written by one call, for GB/s
    flops: float | None = None    # floating point operations of one call, for GFLOP/s
    budget_s: float = 10.0        # time budget of the timed rounds (all peers together)
    impls: dict = field(default_factory=dict)  # peer name -> that peer's implementation (peer-specific)


@dataclass
class Result:
    case: Case
    peer: str
    status: str                   # "ok", "WRONG", "ERROR" or "-" (no implementation)
    times: list = field(default_factory=list)   # seconds per call, one per timed sample
    message: str = ""
    max_err: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.times)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.ok else None

    @property
    def min(self) -> float | None:
        return min(self.times) if self.ok else None

    @property
    def gbps(self) -> float | None:
        return self.case.bytes / self.median / 1e9 if self.ok and self.case.bytes else None

    @property
    def gflops(self) -> float | None:
        return self.case.flops / self.median / 1e9 if self.ok and self.case.flops else None


class Results(list):
    """A list of Result with look-ups by (case key, peer) and the ratios."""

    baseline = "numpy"
    ours = "jitensor"

    def get(self, key: str, peer: str) -> Result | None:
        for r in self:
            if r.case.key == key and r.peer == peer:
                return r
        return None

    def vs_baseline(self, r: Result) -> float | None:
        """t_baseline / t_peer: > 1 means the peer is faster than numpy."""
        b = self.get(r.case.key, self.baseline)
        return b.median / r.median if r.ok and b is not None and b.ok else None

    def ours_vs(self, r: Result) -> float | None:
        """t_peer / t_jitensor: > 1 means jitensor is that many times faster than the peer."""
        o = self.get(r.case.key, self.ours)
        return r.median / o.median if r.ok and o is not None and o.ok else None

    def speedup(self, key: str, over: str) -> float | None:
        """t_over / t_jitensor for case `key`."""
        a, o = self.get(key, over), self.get(key, self.ours)
        return a.median / o.median if a is not None and o is not None and a.ok and o.ok else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")[:160]


def check(expected, got, rtol: float, atol: float) -> tuple[bool, float | None, str]:
    """np.allclose with a shape check; returns (ok, max abs error, why-not)."""
    try:
        got = np.asarray(got)
    except Exception as e:  # noqa: BLE001
        return False, None, f"result not convertible to an array ({_first_line(e)})"
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        return False, None, f"shape {got.shape}, expected {expected.shape}"
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        err = float(np.nanmax(diff)) if diff.size else 0.0
        ok = bool(np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True))
    return ok, err, "" if ok else f"max abs err {err:.3g} (rtol={rtol:g}, atol={atol:g})"


# ----------------------------------------------------------------------------- the runner

def bench(cases, peers, reps: int = 9, *, warmup: int = 2, min_reps: int = 3, verbose: bool = True) -> Results:
    """Run every case with every peer, interleaved; see the module docstring."""
    peers = list(peers.items()) if isinstance(peers, dict) else list(peers)
    out = Results()
    for case in cases:
        out.extend(_bench_case(case, peers, reps, warmup, min_reps, verbose))
    return out


def _bench_case(case: Case, peers, reps, warmup, min_reps, verbose) -> list:
    if verbose:
        print(f"  {case.name} ...", end="", flush=True)
    t_case = time.perf_counter()
    try:
        expected = case.fn(*case.args)
    except Exception as e:  # noqa: BLE001
        if verbose:
            print(" reference failed", flush=True)
        return [Result(case, n, "ERROR", message=f"numpy reference failed: {_first_line(e)}") for n, _ in peers]
    results: dict[str, Result] = {}
    thunks: dict[str, Callable] = {}
    est: dict[str, float] = {}
    for name, factory in peers:
        res = results[name] = Result(case, name, "ok")
        try:
            thunk = factory(case)
        except Exception as e:  # noqa: BLE001
            res.status, res.message = "ERROR", _first_line(e)
            continue
        if thunk is None:
            res.status = "-"
            continue
        try:
            got = None
            for _ in range(max(1, warmup)):
                got = None
                t0 = time.perf_counter()
                got = thunk()
                est[name] = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001
            res.status, res.message = "ERROR", _first_line(e)
            continue
        ok, err, why = check(expected, got, case.rtol, case.atol)
        res.max_err = err
        if not ok:
            res.status, res.message = "WRONG", why
            continue
        thunks[name] = thunk
        del got
        if case.inner > 1:  # one call is a noisy estimate of a tiny kernel: time a small batch
            k = min(case.inner, 100)
            try:
                t0 = time.perf_counter()
                for _ in range(k):
                    thunk()
                est[name] = (time.perf_counter() - t0) / k
            except Exception as e:  # noqa: BLE001
                res.status, res.message = "ERROR", _first_line(e)
                del thunks[name]
    # rounds: as many as fit in the budget, between min_reps and reps
    per_round = sum(est[n] for n in thunks) * case.inner
    n_rounds = reps if per_round <= 0 else max(min_reps, min(reps, int(case.budget_s / per_round)))
    gc.collect()
    gc.disable()
    try:
        for _ in range(n_rounds):
            for name in list(thunks):
                thunk, inner = thunks[name], case.inner
                try:
                    r = None
                    t0 = time.perf_counter()
                    for _ in range(inner):
                        r = thunk()
                    dt = time.perf_counter() - t0
                    del r
                except Exception as e:  # noqa: BLE001
                    results[name].status, results[name].message = "ERROR", _first_line(e)
                    results[name].times.clear()
                    del thunks[name]
                    continue
                results[name].times.append(dt / inner)
    finally:
        gc.enable()
    if verbose:
        print(f" {n_rounds} rounds, {time.perf_counter() - t_case:.1f} s", flush=True)
    return [results[n] for n, _ in peers]


# ----------------------------------------------------------------------------- small timers

def memcpy_bandwidth(nbytes: int = 256 << 20, runs: int = 7) -> float:
    """Bytes read + written per second by a numpy copy of a `nbytes` array into a preallocated one
    (np.copyto; pages touched beforehand), median of `runs`."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return 2 * src.nbytes / statistics.median(times)


def per_call(fn: Callable, calls: int = 1000, batches: int = 15) -> float:
    """Median over `batches` of the per-call time (seconds) of `calls` back-to-back calls of fn()."""
    fn()
    samples = []
    gc.disable()
    try:
        for _ in range(batches):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            samples.append((time.perf_counter() - t0) / calls)
    finally:
        gc.enable()
    return statistics.median(samples)


_PYCACHE_DIR: str | None = None


def bytecode_env() -> dict:
    """Environment for fresh processes that cache bytecode like a normal install does (the .pyc files go
    to a temporary directory shared by this run, so nothing is written next to the sources), even where
    PYTHONDONTWRITEBYTECODE is set; without it every fresh process would recompile every imported module
    from source, including the modules a first call imports lazily."""
    global _PYCACHE_DIR
    if _PYCACHE_DIR is None:
        import tempfile
        _PYCACHE_DIR = tempfile.mkdtemp(prefix="bench-pycache-")
    return {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": _PYCACHE_DIR}


def run_fresh(code: str, env: dict | None = None, timeout: float = 120.0, bytecode_cache: bool = True) -> dict:
    """Run `python -c code` in a fresh process. The code prints lines `RESULT key=value`; returns them
    as a dict of floats/strings, or {"error": first line of the failure}. `env` updates the environment
    (a value of None removes the variable); with `bytecode_cache`, see bytecode_env(). Call it once
    with the same code before measuring, so that the bytecode cache is filled."""
    full_env = dict(os.environ)
    changes = dict(bytecode_env()) if bytecode_cache else {}
    changes.update(env or {})
    for k, v in changes.items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = str(v)
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                           timeout=timeout, cwd=str(HERE))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    vals: dict = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            k, _, v = line[7:].partition("=")
            try:
                vals[k.strip()] = float(v)
            except ValueError:
                vals[k.strip()] = v.strip()
    if p.returncode != 0 or "error" in vals or not vals:
        if "error" not in vals:
            lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
            vals["error"] = (lines[-1] if lines else f"exit status {p.returncode}")[:160]
    return vals


# ----------------------------------------------------------------------------- machine info

def _version(mod: str) -> str:
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:  # noqa: BLE001
        try:
            return __import__(mod).__version__
        except Exception:  # noqa: BLE001
            return "not installed"


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            cpu = m.group(1).strip()
        m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        if m:
            fl = set(m.group(1).split())
            flags = " ".join(f for f in ("avx2", "fma", "avx512f") if f in fl)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    blas = ""
    try:
        b = np.__config__.CONFIG["Build Dependencies"]["blas"]
        blas = f"{b.get('name', '')} {b.get('version', '')}".strip()
    except Exception:  # noqa: BLE001
        pass
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=str(HERE), timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "n/a"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu + (f" ({flags})" if flags else ""),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "load average at start (1, 5, 15 min)": load,
        "python": platform.python_version(),
        "numpy": np.__version__ + (f" ({blas})" if blas else ""),
        "jitensor": _version("jitensor") + (f" (commit {commit})" if commit else ""),
        "llvmlite": _version("llvmlite"),
        "numexpr": _version("numexpr"),
        "numba": _version("numba"),
        "jax": _version("jax") + (f", jaxlib {_version('jaxlib')}" if _version("jaxlib") != "not installed" else ""),
    }


def source_stamp() -> str:
    """A stamp of jitensor's source files (names, sizes, mtimes): compare the stamps taken at the start and
    the end of a run to tell whether the package was edited while the run went on."""
    import hashlib
    try:
        import importlib.util
        spec = importlib.util.find_spec("jitensor")
        root = Path(spec.origin).parent
    except Exception:  # noqa: BLE001
        return ""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def edited_note(stamp_start: str) -> str:
    """A warning when jitensor's sources changed since `stamp_start` (empty otherwise)."""
    if stamp_start and source_stamp() != stamp_start:
        return ("jitensor's source files changed while this run went on: figures may mix two versions, "
                "and disk-cache entries of the older version are not reused")
    return ""


def machine_info_markdown(info: dict, extra: dict | None = None) -> str:
    rows = dict(info)
    rows.update(extra or {})
    return "\n".join(f"- **{k}**: {v}" for k, v in rows.items())


# ----------------------------------------------------------------------------- formatting

def fmt_time(t: float | None) -> str:
    if t is None:
        return ""
    if t < 1e-3:
        return f"{t * 1e6:.2f} µs"
    if t < 1.0:
        return f"{t * 1e3:.3g} ms" if t * 1e3 < 100 else f"{t * 1e3:.1f} ms"
    return f"{t:.3g} s"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


TABLE_HEADER = ["case", "peer", "median", "min", "vs numpy", "jitensor vs", "throughput", "status"]


def table_rows(results: Results, memcpy_bps: float | None = None) -> list[list[str]]:
    rows = []
    for r in results:
        thr = ""
        if r.gbps is not None:
            thr = f"{r.gbps:.1f} GB/s"
            if memcpy_bps:
                thr += f" ({r.gbps * 1e9 / memcpy_bps:.0%} of memcpy)"
        elif r.gflops is not None:
            thr = f"{r.gflops:.1f} GFLOP/s"
        status = r.status if r.status != "ok" else f"ok ({len(r.times)} runs)"
        if r.message:
            status += f": {r.message}"
        rows.append([r.case.name, r.peer, fmt_time(r.median), fmt_time(r.min), fmt_ratio(results.vs_baseline(r)),
                     fmt_ratio(results.ours_vs(r)), thr, status])
    return rows


def text_table(header, rows, group: bool = True) -> str:
    """A plain-text table; with `group`, a repeated first cell is blanked and groups are separated."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths])]
    prev = None
    for row in rows:
        if not group:
            out.append(line(row))
            continue
        if prev is not None and row[0] != prev and row[0]:
            out.append("")
        out.append(line([row[0] if row[0] != prev else ""] + list(row[1:])))
        prev = row[0]
    return "\n".join(out)


def markdown_table(header, rows) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    prev = None
    for row in rows:
        first = row[0] if row[0] != prev else ""
        out.append("| " + " | ".join(esc(c) for c in [first] + list(row[1:])) + " |")
        prev = row[0]
    return "\n".join(out)


def print_table(results: Results, memcpy_bps: float | None = None) -> None:
    print(text_table(TABLE_HEADER, table_rows(results, memcpy_bps)))


# ----------------------------------------------------------------------------- RESULTS.md

def write_section(name: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replace (or append) the section delimited by `<!-- section: NAME -->` ... `<!-- end: NAME -->`
    in RESULTS.md, keeping every other section."""
    begin, end = f"<!-- section: {name} -->", f"<!-- end: {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else (
        "# jitensor benchmark results\n\n"
        "Written by the scripts in this folder (see README.md); each script owns one section.\n")
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def pass_miss(value: float | None, target: float, higher_is_better: bool = True, why: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"n/a ({why})" if why else "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "pass" if ok else "miss"
