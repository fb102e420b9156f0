"""Tuning a jitted function: its kernels' schedules searched, measured and stored as records.

`tune(fn, *args)` traces and lowers `fn` for these arguments, runs the default program once to capture each
kernel's real inputs, and gives each distinct kernel (by workload key: the steps of an unrolled loop are one
task) a search space (space.py). The trial budget is spent in rounds of `batch` trials on the task with the
largest expected gain: its default time (times its repeats in the program) scaled by how much its best has
improved lately (meta-schedule's task scheduler has the same aim), so a 20 us kernel does not take the trials
a 20 ms one needs. Every trial is stored as a record at once (an interrupted run keeps them all); the default
schedule is always measured, wins ties, and a record only replaces it by being strictly faster. Later
compiles, in this process or any other, take the best record of each kernel (compiler.schedule_kernels).
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class KernelResult:
    name: str
    kind: str
    workload: str
    repeats: int                     # kernels of the program with this workload (unrolled loops)
    default: float | None            # seconds (median)
    best: float | None
    trials: int = 0
    failed: int = 0
    seconds: float = 0.0
    best_steps: list | None = None   # primitives.to_json form
    curve: list = field(default_factory=list)  # best cost after each trial
    skipped: str = ""                # why it was not searched

    @property
    def speedup(self) -> float | None:
        return self.default / self.best if self.default and self.best else None


@dataclass
class Report:
    function: str
    kernels: list
    seconds: float
    trials: int
    interrupted: bool = False

    def __str__(self):
        head = f"tuned {self.function}: {self.trials} trials in {self.seconds:.1f} s"
        rows = [("kernel", "kind", "default", "best", "speedup", "trials", "failed", "seconds")]
        for r in self.kernels:
            rows.append((r.name + (f" x{r.repeats}" if r.repeats > 1 else ""), r.kind, _fmt(r.default),
                         _fmt(r.best), f"{r.speedup:.2f}x" if r.speedup else "-", str(r.trials), str(r.failed),
                         f"{r.seconds:.1f}" if not r.skipped else r.skipped))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 for row in rows]
        return "\n".join([head] + lines)

    @property
    def speedup(self) -> float | None:
        """Whole-program estimate: the sum of default times over the sum of best times."""
        d = sum((r.default or 0) * r.repeats for r in self.kernels)
        b = sum((r.best or r.default or 0) * r.repeats for r in self.kernels)
        return d / b if d and b else None


def _fmt(s) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.3f} ms" if s >= 1e-4 else f"{s * 1e6:.1f} us"


class _Task:
    def __init__(self, kernel, name, repeats, buffers, target):
        from ..loop.primitives import to_json
        from ..loop.schedule import default_steps
        from ..loop.workload import workload_key
        from .features import kind_of
        from .measure import Task, standalone
        from .space import space_for
        self.name, self.repeats = name, repeats
        self.kernel = standalone(kernel)
        self.workload = workload_key(kernel)
        self.kind = kind_of(kernel)
        self.space = space_for(self.kernel, target)
        self.default_json = to_json(default_steps(self.kernel, target))
        self.task = Task(self.kernel, buffers, self.default_json, target)
        self.history: list = []      # (point, cost) in trial order
        self.result = KernelResult(name, self.kind, self.workload, repeats, None, None)
        self.stale = 0               # rounds since the best last improved by more than 1%

    def gain(self) -> float:
        r = self.result
        if r.default is None:
            return 0.0
        return r.default * self.repeats * (r.best or r.default) / r.default * 0.7 ** self.stale


def tune(fn, *args, trials: int = 256, timeout: float | None = None, seed: int = 0, records=None,
         strategy: str = "thompson", early_stop: int | None = 64, batch: int = 8, progress=None,
         min_share: float = 0.01, measurer: dict | None = None, **kwargs) -> Report:
    """Search schedules for the kernels of `fn(*args, **kwargs)` and store the measurements as tuning records.

    trials: the budget over all kernels (each kernel's default measurement counts as one); timeout: seconds,
    checked between rounds; seed: the search's random choices (a kernel's first batch of candidates is
    random, so the same seed, function and arguments try the same schedules first; later batches follow
    the cost model fitted to the measured times, and the budget goes to the kernels whose measured gains
    are largest, so these need not repeat); records: a RecordStore or a path (default: the store beside
    the kernel cache); strategy: "thompson" (default), "greedy", "epsilon" or "random"; early_stop: a
    kernel is dropped after this many trials without a 1% gain; progress: a bar on stderr (default: when
    stderr is a terminal); min_share: kernels below this share of the program's default time keep their
    default schedule; measurer (for tests and tools): keyword arguments of the worker's `measure.Measurer`
    (timeout=, repeats=, sample_seconds=, command= to run another worker program).
    Returns a Report (print it for a table). Ctrl-C stops the search; every trial measured so far is kept.
    """
    from ..api import JitFunction, jit
    jf = fn if isinstance(fn, JitFunction) else jit(fn)
    graph, layouts, arrays = jf._traced(args, kwargs)
    report = tune_traced(_name(jf), graph, layouts, arrays, trials=trials, timeout=timeout, seed=seed, records=records,
                         strategy=strategy, early_stop=early_stop, batch=batch, progress=progress,
                         min_share=min_share, measurer=measurer)
    jf.cache_clear()  # this process's next call compiles with the records
    return report


def _name(jf) -> str:
    return getattr(jf.fun, "__qualname__", str(jf.fun))


def tune_traced(name, graph, layouts, arrays, *, trials=256, timeout=None, seed=0, records=None, strategy="thompson",
                early_stop=64, batch=8, progress=None, min_share=0.01, measurer=None) -> Report:
    """`tune` of a function (named `name` in reports) already traced for its arguments (lazy tuning)."""
    from ..target import host
    from .measure import Measurer
    t_start = time.perf_counter()
    store = _store(records)
    target = host()
    tasks = _tasks(graph, layouts, arrays, target)
    bar = _Progress(name, trials, progress)
    measurer = Measurer(**(measurer or {}))
    report = Report(name, [t.result for t in tasks], 0.0, 0)
    interrupted = False
    try:
        _search(tasks, measurer, store, target, trials, timeout, seed, strategy, early_stop, batch, min_share,
                bar, t_start)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        measurer.close()
    report.trials = sum(t.result.trials for t in tasks)
    report.seconds = time.perf_counter() - t_start
    report.interrupted = interrupted
    bar.close(report)
    if interrupted:
        raise KeyboardInterrupt
    return report


def _store(records):
    from .records import RecordStore, default_store
    return records if isinstance(records, RecordStore) else RecordStore(records) if records else default_store()


def tuned_before(graph, layouts, records=None) -> bool:
    """Whether every kernel of this program has a measured default schedule in the records (it was tuned)."""
    from ..compiler import lower_graph
    from ..loop.workload import workload_key
    from ..target import host
    from .records import target_key
    store = _store(records)
    if store.empty():
        return False
    tkey = target_key(host())
    return all(store.default_record(workload_key(k), tkey) is not None for k in lower_graph(graph, layouts)[3])


def _tasks(graph, layouts, arrays, target) -> list:
    """One task per distinct kernel of the program, with its buffers as the default program leaves them."""
    from ..codegen.llvm import build_module, compile_object
    from ..compiler import lower_graph, manifest_of
    from ..loop.schedule import default_schedule
    from ..loop.workload import workload_key
    from ..runtime.loader import LoadedCode
    from ..runtime.program import Program
    from .measure import capture
    g, plan, bufs, kernels = lower_graph(graph, layouts)
    sched = [default_schedule(k, target) for k in kernels]
    obj, _ = compile_object(build_module(sched, target, name="tune"), target)
    prog = Program(LoadedCode(obj, target, len(sched)), manifest_of(bufs, sched, graph, target))
    caps = capture(prog, arrays, sched)
    tasks, seen = [], {}
    for k, cap in zip(kernels, caps):
        wk = workload_key(k)
        if wk in seen:
            seen[wk].repeats += 1
            continue
        t = seen[wk] = _Task(k, k.name, 1, cap, target)
        tasks.append(t)
    return tasks


def _search(tasks, measurer, store, target, trials, timeout, seed, strategy, early_stop, batch, min_share, bar,
            t_start):
    from .records import Record, target_key
    from .search import tune_space
    tkey = target_key(target)
    used = 0
    past = {}  # (workload, steps) -> cost of a record already in the store: resumed, not measured again
    for i, t in enumerate(tasks):
        measurer.add(i, t.task)
        for r in store.records(workload=t.workload, target=tkey):
            past[(t.workload, _key(r.steps))] = r.cost

    def measure_fn(t, i):
        def measure(points):
            nonlocal used
            out = []
            for p in points:
                steps = _json(t.space.steps(p))
                c = past.get((t.workload, _key(steps)), ...)
                if c is ...:
                    costs, err = measurer.measure(i, steps)
                    is_default = p == tuple(t.space.default)
                    best = t.result.best
                    if costs and (is_default or best is None or float(np.median(costs)) < best):
                        # the default, or a new best: a second set of samples, so that one lucky (or unlucky)
                        # set does not decide what every later compile uses
                        more, err2 = measurer.measure(i, steps)
                        costs, err = (costs + more, None) if more else (None, err2)
                    feats = tuple(float(x) for x in featurizers[i]([p])[0])
                    store.add(Record(t.workload, tkey, tuple(steps), tuple(costs or ()), err, is_default, t.kind,
                                     features=feats))
                    c = float(np.median(costs)) if costs else None
                    past[(t.workload, _key(steps))] = c
                    if err:
                        t.result.failed += 1
                    elif best is None or c < best:
                        t.result.best = c
                out.append(c)
                used += 1
                bar.trial(t.name, c, t.result)
            return out
        return measure

    featurizers = {i: _featurizer(t, target) for i, t in enumerate(tasks)}
    # every task's default first: the weights of the budget split
    for i, t in enumerate(tasks):
        if used >= trials:
            break
        t0 = time.perf_counter()
        res = tune_space(t.space, measure_fn(t, i), featurizers[i], 1, batch=1, seed=seed, strategy=strategy)
        _take(t, res, time.perf_counter() - t0)
    total = sum((t.result.default or 0) * t.repeats for t in tasks) or 1.0
    for t in tasks:
        if t.result.default is None:  # (not measured: the budget ran out on the defaults of the kernels before)
            t.result.skipped = "default failed" if t.result.trials else "no trials left"
        elif t.result.default * t.repeats < min_share * total:
            t.result.skipped = "small"
        elif len(t.space) <= 1:
            t.result.skipped = "no choices"
    priors = {i: _prior(store, t, tkey, len(featurizers[i]([tuple(t.space.default)])[0]))
              for i, t in enumerate(tasks) if not t.result.skipped}
    rnd = 0
    while used < trials and (timeout is None or time.perf_counter() - t_start < timeout):
        live = [t for t in tasks if not t.result.skipped]
        if not live:
            break
        t = max(live, key=lambda t: t.gain())
        i = tasks.index(t)
        rnd += 1
        t0 = time.perf_counter()
        before = t.result.best
        want = len(t.history) + min(batch, trials - used)
        res = tune_space(t.space, measure_fn(t, i), featurizers[i], want, batch=batch, seed=seed + 7919 * rnd,
                         strategy=strategy, history=list(t.history), prior=priors.get(i))
        _take(t, res, time.perf_counter() - t0)
        gained = before is not None and t.result.best is not None and t.result.best < before * 0.99
        t.stale = 0 if gained else t.stale + 1
        if len(res.trials) < want:
            t.result.skipped = "space exhausted"
        elif early_stop is not None and t.stale * batch >= early_stop:
            t.result.skipped = "converged"
    for i, t in enumerate(tasks):
        if t.result.trials > 1:
            _confirm(t, i, measurer, store, tkey)


CONFIRM_ROUNDS = 3  # measurements (of 5 paired samples each) of a finalist


def _confirm(t, i, measurer, store, tkey, tries: int = 5):
    """Re-measure the best record until it is the default or a schedule already re-measured: of many noisy
    trials, the fastest-looking one is often fast by luck (the winner's curse), and a later measurement of a
    schedule supersedes its earlier ones in the store (records.RecordStore.best)."""
    from .records import Record
    seen: set = set()
    for _ in range(tries):
        b = store.best(t.workload, tkey)
        if b is None or b.default or _key(b.steps) in seen:
            break
        seen.add(_key(b.steps))
        costs, err = [], None
        for _ in range(CONFIRM_ROUNDS):
            c, err = measurer.measure(i, list(b.steps))
            costs += c or []
        store.add(Record(t.workload, tkey, b.steps, tuple(costs), None if costs else err, False, t.kind,
                         features=b.features))
    b, d = store.best(t.workload, tkey), store.default_record(t.workload, tkey)
    r = t.result
    if d is not None:
        r.default = d.cost
    if b is not None:
        r.best, r.best_steps = b.cost, list(b.steps)


PRIOR_ROWS = 4000  # most recent records of other workloads of the same kind given to the model (transfer)


def _prior(store, t, tkey, width):
    """(X, y, groups) of this kind of kernel measured at other shapes on this target, or None: the cost model
    starts from them, so a new workload is guided from its first batch (transfer learning)."""
    rows = [r for r in store.records(target=tkey, kind=t.kind, ok_only=True)[-PRIOR_ROWS:]
            if r.workload != t.workload and len(r.features) == width]
    if len({r.workload for r in rows}) < 1 or len(rows) < 16:
        return None
    X = np.asarray([r.features for r in rows], dtype=np.float32)
    return X, np.asarray([r.cost for r in rows]), [r.workload for r in rows]


def _take(t, res, seconds):
    t.history = [(tuple(p), c) for p, c in res.trials]
    r = t.result
    r.trials = len(t.history)
    r.seconds += seconds
    r.default = res.default_cost
    r.curve = list(res.curve)
    if res.best is not None and res.best_cost is not None:
        r.best = res.best_cost
        r.best_steps = _json(t.space.steps(res.best))


def _featurizer(t, target):
    """Features of a point: the scheduled kernel's loop-IR features and the machine's figures."""
    from ..loop.primitives import apply
    from .features import features
    from .hardware import hardware_features
    hw = np.nan_to_num(hardware_features(target))  # (a figure that could not be measured: 0)
    memo: dict = {}  # point -> row, kept across rounds (each round proposes from a pool of ~2000 points)

    def featurize(points):
        rows = []
        for p in points:
            row = memo.get(p)
            if row is None:
                if len(memo) > 50_000:
                    memo.clear()
                k = apply(t.kernel, t.space.steps(p))
                # (fixed width for every kernel: the knobs show in the loop IR's features, so that records of
                # other shapes train the same model)
                row = memo[p] = np.concatenate([features(k), hw]).astype(np.float32)
            rows.append(row)
        return np.asarray(rows, dtype=np.float32)
    return featurize


def _json(steps) -> list:
    from ..loop.primitives import to_json
    return to_json(steps)


def _key(steps) -> str:
    import json
    return json.dumps(list(steps), sort_keys=True, separators=(",", ":"))


class _Progress:
    """One line on stderr, rewritten per trial: trials done, the kernel, its best vs default, time left."""

    def __init__(self, name, total, enabled):
        self.name, self.total = name, total
        self.on = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.n, self.t0, self.last = 0, time.perf_counter(), 0.0

    def trial(self, kernel, cost, result):
        self.n += 1
        if not self.on:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and self.n < self.total:
            return
        self.last = now
        rate = (now - self.t0) / self.n
        left = max(0.0, (self.total - self.n) * rate)
        sp = f"{result.speedup:.2f}x" if result.speedup else "-"
        width = 24
        done = int(width * min(1.0, self.n / max(self.total, 1)))
        sys.stderr.write(f"\r{self.name} [{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                         f"{kernel}: best {sp} over default, ~{_clock(left)} left   ")
        sys.stderr.flush()

    def close(self, report=None):
        if self.on:
            sys.stderr.write("\n" + (f"{report}\n" if report is not None else ""))  # the summary table
            sys.stderr.flush()


def _clock(s: float) -> str:
    s = int(math.ceil(s))
    return f"{s // 60}:{s % 60:02d}"


def env_budget() -> dict | None:
    """JITENSOR_TUNE: unset, "" or "0": off; "1": on with the defaults; an int: that many trials; or
    comma-separated key=value (trials=, timeout=, background=) e.g. "trials=64,background=1".
    A value it cannot read raises ValueError (`jit` turns it into an ArgumentError naming the variable)."""
    v = os.environ.get("JITENSOR_TUNE", "").strip()
    if v in ("", "0", "off", "false", "no"):
        return None
    return parse_budget(v)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_budget(v) -> dict:
    """A `jit(tune=...)` value or JITENSOR_TUNE string -> {"trials", "timeout", "background"}; ValueError
    for anything else (an unknown option, trials not an integer >= 0, timeout not a number > 0)."""
    out = {"trials": 256, "timeout": None, "background": False}
    if v is True or v in _TRUE:
        return out
    if isinstance(v, bool) or v is None:
        raise ValueError(f"tune must be True, a trial count, or a dict, got {v!r}")
    if isinstance(v, int):
        return _checked_budget(dict(out, trials=v))
    if isinstance(v, dict):
        bad = set(v) - set(out)
        if bad:
            raise ValueError(f"unknown tuning option(s) {sorted(bad)} (options: trials, timeout, background)")
        return _checked_budget(dict(out, **v))
    if isinstance(v, str):
        if v.strip().isdigit():
            return dict(out, trials=int(v))
        d = {}
        for part in v.split(","):
            k, _, x = part.partition("=")
            k, x = k.strip(), x.strip().lower()
            if k not in out or not x:
                raise ValueError(f"cannot read {part!r} (e.g. 64, or trials=64,timeout=60,background=1)")
            try:
                if k == "background":
                    if x not in _TRUE + _FALSE:
                        raise ValueError
                    d[k] = x in _TRUE
                else:
                    d[k] = float(x) if k == "timeout" else int(x)
            except ValueError:
                raise ValueError(f"cannot read {part!r}: {k} must be "
                                 f"{dict(trials='an integer', timeout='seconds', background='0 or 1')[k]}") from None
        return _checked_budget(dict(out, **d))
    raise ValueError(f"tune must be True, a trial count, or a dict, got {v!r}")


def _checked_budget(b: dict) -> dict:
    t, s = b["trials"], b["timeout"]
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"trials must be an integer >= 0, got {t!r}")
    if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {s!r}")
    if not isinstance(b["background"], bool):
        raise ValueError(f"background must be True or False, got {b['background']!r}")
    return b


def tune_in_process(name, graph, layouts, arrays, **opts) -> Report:
    """`tune_traced` in a fresh process (background tuning: the search and the model fits never take this
    process's GIL or its threads). The child shares the record store (JITENSOR_CACHE_DIR). Raises
    RuntimeError with the child's last line of output when it fails."""
    import pickle
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory(prefix="jitensor-tune-") as d:
        inp, out = os.path.join(d, "task.pkl"), os.path.join(d, "report.pkl")
        with open(inp, "wb") as fh:
            pickle.dump((name, graph, layouts, arrays, opts), fh, protocol=pickle.HIGHEST_PROTOCOL)
        env = dict(os.environ, JITENSOR_TUNE="")
        p = subprocess.run([sys.executable, "-m", "jitensor.autotune.tuner", inp, out], capture_output=True,
                           text=True, env=env)
        if p.returncode != 0 or not os.path.exists(out):
            lines = [ln for ln in (p.stderr or p.stdout or "").splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"the tuning process exited with status {p.returncode}")
        with open(out, "rb") as fh:
            return pickle.load(fh)


def _main(argv) -> int:
    import pickle
    inp, out = argv
    with open(inp, "rb") as fh:
        name, graph, layouts, arrays, opts = pickle.load(fh)
    report = tune_traced(name, graph, layouts, arrays, **opts)
    with open(out + ".tmp", "wb") as fh:
        pickle.dump(report, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(out + ".tmp", out)
    return 0


if __name__ == "__main__":  # (through the module's own name, so that the pickled Report names its real class)
    from jitensor.autotune import tuner as _tuner
    sys.exit(_tuner._main(sys.argv[1:]))
