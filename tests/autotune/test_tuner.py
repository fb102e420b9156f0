"""What tuning promises, end to end: `jitensor.tune` measures and stores every trial and the next compile takes
the best record; an interrupt, a bad candidate, a bad store, a second tuner or another CPU's records never
cost a result or a record; `jit(tune=...)` tunes once per program (in the foreground, or in the background
with a program swap). Budgets are tiny (a few trials, short timings): these tests check behaviour, not speed.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import jitensor
from jitensor.autotune import measure
from jitensor.autotune.records import FILENAME, Record, RecordStore, target_key
from jitensor.autotune.space import space_for
from jitensor.autotune.tuner import Report
from jitensor.compiler import compile_graph, lower_graph
from jitensor.errors import ArgumentError, RecordWarning, TuningWarning
from jitensor.loop.primitives import to_json
from jitensor.loop.workload import steps_digest, workload_key
from jitensor.target import host

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # the checkout whose jitensor subprocesses must import
FAULTY = [sys.executable, os.path.join(HERE, "fault_worker.py")]
FAST = dict(repeats=2, sample_seconds=0.002)  # Measurer options: short timings

_rng = np.random.default_rng(11)


def _f(*shape):
    return _rng.standard_normal(shape).astype(np.float32)


def mlp_softmax(a, b, bias, x):
    """Two kernels: a GEMM with a bias-and-relu epilogue, and a row softmax."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return np.maximum(a @ b + bias, 0), e / e.sum(axis=1, keepdims=True)


def dense(a, b, bias):
    return np.maximum(a @ b + bias, 0)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


A, B, BIAS, X = _f(64, 128), _f(128, 96), _f(96), _f(64, 100)
ARGS = (A, B, BIAS, X)


def close(got, want):
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4 * float(np.max(np.abs(w))))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh default store (and kernel cache) for this test: what the compiler consults."""
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("JITENSOR_TUNE", raising=False)
    return RecordStore(tmp_path)


@pytest.fixture
def plan(tmp_path, monkeypatch):
    """plan("ok,crash,...") makes fault_worker.py do these actions, in order, on the candidates it checks."""
    def set_plan(actions: str) -> str:
        path = str(tmp_path / "fault-plan")
        with open(path, "w") as f:
            f.write(actions)
        monkeypatch.setenv("FAULT_WORKER_PLAN", path)
        return path
    return set_plan


def tkey() -> str:
    return target_key(host())


def kernels_of(fn, args) -> list:
    graph, layouts, _ = jitensor.jit(fn, cache=False)._traced(args, {})
    return lower_graph(graph, layouts)[3]


def schedule_lines(fn, args) -> list[str]:
    """The `# schedule (...)` line of each kernel in `explain`'s loop IR, in kernel order."""
    text = jitensor.explain(fn, *args, what=("loop",))
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("# schedule (")]


def origins(fn, args) -> list[str]:
    """Where explain says each kernel's schedule came from: "default" or "record <id>" (details dropped)."""
    return [origin(ln[len("# schedule ("):ln.index(")")]) for ln in schedule_lines(fn, args)]


def origin(text: str) -> str:
    return text.split(",")[0]  # "record 3, 1.25x over default" -> "record 3"


def expected_origin(store, workload) -> str:
    """What the compiler should take for `workload`: "record <id>" when the best record is not the default."""
    best = store.best(workload, tkey())
    return f"record {best.id}" if best is not None and not best.default else "default"


def assert_follows_the_records(store, fn, args, compiled=None):
    """explain (and a compiled program's launches) use each kernel's best record, else the default."""
    ks = kernels_of(fn, args)
    assert origins(fn, args) == [expected_origin(store, workload_key(k)) for k in ks]
    if compiled is not None:
        for k, launch in zip(ks, compiled.program.manifest.kernels):
            best = store.best(workload_key(k), tkey())
            assert launch.workload == workload_key(k)
            assert launch.schedule == ("default" if best is None or best.default else steps_digest(list(best.steps)))


def _points(space):
    """The legal points of a search space, in order."""
    return (p for p in itertools.product(*[range(len(k.choices)) for k in space.knobs]) if space.legal(p))


def only_compiled(jf):
    (c,) = jf._compiled.values()
    return c


def run_py(script: str, env: dict, timeout=180) -> subprocess.CompletedProcess:
    """`python -c script` importing this checkout's jitensor."""
    env = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


# -- 1. tune(): the report, the records, the next compile


@pytest.mark.parametrize("variant", ["measured", "slow_default"])
def test_tune_reports_stores_every_trial_and_the_compiler_takes_the_best(store, plan, variant):
    """The report has a row per kernel; the store a record per trial and a default per workload; the best is
    never slower than the default; the function then computes numpy's results with the records' schedules.
    `slow_default`: the worker reports the first default measured 1000x slower, so that a record surely wins
    and the compiler must take it."""
    opts = dict(FAST)
    if variant == "slow_default":
        plan("slow")
        opts["command"] = FAULTY
    jf = jitensor.jit(mlp_softmax)
    report = jitensor.tune(jf, *ARGS, trials=8, progress=False, measurer=opts)
    assert isinstance(report, Report) and not report.interrupted
    assert len(report.kernels) == 2 and report.trials == 8 == sum(r.trials for r in report.kernels)

    text = str(report).splitlines()
    assert text[0].startswith("tuned mlp_softmax: 8 trials")
    assert text[1].split()[:6] == ["kernel", "kind", "default", "best", "speedup", "trials"]
    assert len(text) == 2 + len(report.kernels)
    for r, row in zip(report.kernels, text[2:]):
        cells = row.split()
        assert cells[0] == r.name and cells[1] == r.kind
        assert f"{r.speedup:.2f}x" in cells and str(r.trials) in cells

    records = store.records()
    schedules = lambda recs: {(r.workload, json.dumps(r.steps, sort_keys=True)) for r in recs}  # noqa: E731
    # one record per trial, failures included (and re-measurements of finalists, which repeat a schedule)
    assert len(schedules(records)) == report.trials
    assert all(r.steps in [x.steps for x in records[:i]] for i, r in enumerate(records) if i >= report.trials)
    assert {rec.target for rec in records} == {tkey()}
    assert sum(rec.error is not None for rec in records) == sum(r.failed for r in report.kernels)
    for r in report.kernels:
        mine = store.records(workload=r.workload)
        assert len(schedules(mine)) == r.trials
        assert sum(rec.default for rec in mine) == 1 and store.default_record(r.workload, tkey()) is not None
        assert r.best is not None and r.best <= r.default  # the default is always a candidate
        best = store.best(r.workload, tkey())
        assert best.cost == r.best
        assert best.default == (r.best == r.default)  # the default wins ties
        if not best.default:
            assert list(best.steps) == r.best_steps
    if variant == "slow_default":  # (the first trial is the first kernel's default)
        slowed = next(r for r in report.kernels if r.workload == records[0].workload)
        assert records[0].default and slowed.speedup > 10 and not store.best(slowed.workload, tkey()).default

    close(jf(*ARGS), mlp_softmax(*ARGS))  # tune() cleared jf's programs: this compiles with the records
    assert_follows_the_records(store, mlp_softmax, ARGS, only_compiled(jf))
    if variant == "slow_default":
        assert any(o.startswith("record ") for o in origins(mlp_softmax, ARGS))


def test_a_kernel_the_budget_did_not_reach_is_reported_as_such(tmp_path):
    report = jitensor.tune(mlp_softmax, *ARGS, trials=1, records=str(tmp_path / "r"), progress=False,
                           measurer=FAST)
    first, second = report.kernels
    assert first.trials == 1 and first.default is not None and not first.skipped
    assert second.trials == 0 and second.default is None and second.skipped == "no trials left"
    assert str(report).splitlines()[-1].endswith("no trials left")


def test_the_same_seed_tries_the_same_schedules_in_the_same_order(tmp_path):
    """One kernel, a budget within the first (random) batch: the step lists tried depend on the seed alone.
    (Later batches follow the cost model fitted to measured times, and with several kernels the budget goes
    where the measured gains are: only the random choices are the seed's.)"""
    def tried(name, seed):
        path = tmp_path / name
        r = jitensor.tune(softmax, X, trials=7, seed=seed, records=str(path), progress=False, measurer=FAST)
        assert r.trials == 7
        return [rec.steps for rec in RecordStore(path).records()[:7]]  # (then re-measurements of finalists)

    first, again, other = tried("a", 3), tried("b", 3), tried("c", 4)
    assert len(first) == 7 and len({json.dumps(s, sort_keys=True) for s in first}) == 7
    assert first == again
    assert first[1:] != other[1:]  # (the default comes first either way)


def tried(store_or_records) -> int:
    """Trials stored: distinct (workload, schedule) pairs (the tuner re-measures its finalists at the end,
    which repeats a schedule)."""
    recs = store_or_records.records() if hasattr(store_or_records, "records") else store_or_records
    return len({(r.workload, json.dumps(r.steps, sort_keys=True)) for r in recs})


# -- 2. Ctrl-C


_LONG_TUNE = """
import numpy as np, jitensor
rng = np.random.default_rng(0)
a = rng.standard_normal((64, 128)).astype(np.float32)
b = rng.standard_normal((128, 96)).astype(np.float32)
x = rng.standard_normal((64, 100)).astype(np.float32)
def f(a, b, x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return np.maximum(a @ b, 0), e / e.sum(axis=1, keepdims=True)
try:
    jitensor.tune(f, a, b, x, trials=100000, progress=False, measurer=dict(repeats=2, sample_seconds=0.002))
except KeyboardInterrupt:  # tune() has returned control: its worker must be gone (killed and reaped) by now
    import os
    def child(d):  # running or an unreaped zombie
        try:
            with open(f"/proc/{d}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
        except (OSError, ValueError, IndexError):
            return False
    print("children:", [int(d) for d in os.listdir("/proc") if d.isdigit() and child(d)], flush=True)
    raise
print("finished")
"""


def _children(pid: int) -> dict:
    """{pid: command line} of the processes whose parent is `pid` (from /proc)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    out[int(d)] = f.read().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("to", ["process", "group"])
def test_ctrl_c_keeps_every_record_and_leaves_no_worker(tmp_path, to):
    """SIGINT to the tuning process (or, as a terminal's Ctrl-C does, to its whole process group, worker
    included): it ends with KeyboardInterrupt, every record stored before is there and readable, and the
    measuring worker is gone."""
    env = dict(os.environ, PYTHONPATH=ROOT, JITENSOR_CACHE_DIR=str(tmp_path))
    env.pop("JITENSOR_TUNE", None)
    proc = subprocess.Popen([sys.executable, "-c", _LONG_TUNE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    store = RecordStore(tmp_path)
    try:
        deadline = time.monotonic() + 120
        workers: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if len(store.records()) >= 4:
                workers = {p: c for p, c in _children(proc.pid).items() if "jitensor.autotune.measure" in c}
                if workers:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert workers, "no measuring worker found"
        before = {r.id: r for r in store.records()}
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the tuning process did not end after SIGINT")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err, out = err.decode(), out.decode()
    assert proc.returncode != 0 and "finished" not in out
    assert "children: []" in out, out  # no worker (nor an unreaped one) once tune() has raised
    assert "KeyboardInterrupt" in err, err[-2000:]

    after = {r.id: r for r in RecordStore(tmp_path).records()}
    assert len(after) >= len(before) >= 4
    for rid, rec in before.items():
        assert after[rid] == rec and after[rid].steps == rec.steps and after[rid].costs == rec.costs
    for rec in after.values():
        assert rec.steps and (rec.ok or rec.error)
    with sqlite3.connect(str(tmp_path / FILENAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    end = time.monotonic() + 10
    while any(_running(p) for p in workers) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(_running(p) for p in workers), f"worker(s) left running: {workers}"


# -- 3. bad candidates


def test_a_crashing_hanging_or_wrong_candidate_is_a_failed_trial_and_tuning_goes_on(tmp_path, plan):
    plan("ok,ok,crash,hang,wrong")  # the default (measured twice), then three bad candidates, then good ones
    path = str(tmp_path / "records")
    report = jitensor.tune(softmax, X, trials=7, records=path, progress=False,
                           measurer=dict(command=FAULTY, timeout=3, **FAST))
    (r,) = report.kernels
    assert r.trials == 7 and r.failed == 3
    recs = RecordStore(path).records()
    assert tried(recs) == 7
    assert recs[0].default and recs[0].ok
    assert recs[1].error.startswith("crash:") and recs[1].cost is None
    assert recs[2].error.startswith("timeout:") and recs[2].cost is None
    assert recs[3].error.startswith("wrong result:") and recs[3].cost is None
    assert all(rec.ok for rec in recs[4:])  # the worker was restarted and tuning went on
    best = RecordStore(path).best(r.workload, tkey())
    assert best.ok and best.id not in {rec.id for rec in recs[1:4]}
    assert r.best == best.cost and r.best_steps not in [list(rec.steps) for rec in recs[1:4]]


# -- 4. a corrupt store, a store of a newer format


@pytest.mark.parametrize("kind", ["corrupt", "newer"])
def test_a_bad_store_warns_and_compiles_with_the_defaults(store, tmp_path, kind):
    path = tmp_path / FILENAME
    if kind == "corrupt":
        original = os.urandom(8192)
        path.write_bytes(original)
    else:
        k = kernels_of(dense, (A, B, BIAS))[0]
        sp = space_for(k, host())
        other = next(p for p in _points(sp) if p != sp.default)
        RecordStore(path).add(Record(workload_key(k), tkey(), tuple(to_json(sp.steps(other))), (1e-9,)))
        with sqlite3.connect(str(path)) as conn:
            conn.execute("PRAGMA user_version = 2")
        # (a record this jitensor would take if it read the file: it must not)

    jf = jitensor.jit(dense)
    with pytest.warns(RecordWarning, match="corrupt" if kind == "corrupt" else "format 2"):
        got = jf(A, B, BIAS)
    close(got, dense(A, B, BIAS))
    assert all(launch.schedule == "default" for launch in only_compiled(jf).program.manifest.kernels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)
        assert origins(dense, (A, B, BIAS)) == ["default"]

    with pytest.warns(RecordWarning):
        report = jitensor.tune(jf, A, B, BIAS, trials=4, progress=False, measurer=FAST)
    assert report.trials == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)
        close(jf(A, B, BIAS), dense(A, B, BIAS))
    if kind == "corrupt":  # moved aside; the trials went to a fresh store
        assert (tmp_path / (FILENAME + ".corrupt")).read_bytes() == original
        assert tried(RecordStore(path)) == 4
    else:  # a newer jitensor's file is never written
        with sqlite3.connect(str(path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
            assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 1


# -- 5. two tuners, one store


_TUNE_AND_COUNT = """
import sys, numpy as np, jitensor
from jitensor.autotune import records
added = [0]
_add = records.RecordStore.add
def add(self, rec):
    rid = _add(self, rec)
    added[0] += rid is not None
    return rid
records.RecordStore.add = add
rng = np.random.default_rng(0)
which, seed = sys.argv[1], int(sys.argv[2])
if which == "dense":
    a = rng.standard_normal((64, 128)).astype(np.float32)
    b = rng.standard_normal((128, 96)).astype(np.float32)
    f, args = (lambda a, b: np.maximum(a @ b, 0)), (a, b)
else:
    x = rng.standard_normal((64, 100)).astype(np.float32)
    f, args = (lambda x: np.exp(x - x.max(axis=1, keepdims=True))), (x,)
r = jitensor.tune(f, *args, trials=8, seed=seed, progress=False, measurer=dict(repeats=2, sample_seconds=0.002))
print(r.trials, added[0])
"""


@pytest.mark.parametrize("funcs", [("dense", "rows"), pytest.param(("dense", "dense"), marks=pytest.mark.slow)],
                         ids=["different", "same"])
def test_two_processes_tuning_into_one_store_keep_all_records(tmp_path, funcs):
    env = dict(os.environ, PYTHONPATH=ROOT, JITENSOR_CACHE_DIR=str(tmp_path))
    env.pop("JITENSOR_TUNE", None)
    procs = [subprocess.Popen([sys.executable, "-c", _TUNE_AND_COUNT, which, str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, which in enumerate(funcs)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        outs.append(tuple(map(int, out.split())))
    store = RecordStore(tmp_path)
    assert len(store.records()) == sum(added for _, added in outs)
    assert all(trials == 8 for trials, _ in outs)
    if funcs[0] != funcs[1]:  # (8 trials, plus re-measurements of the finalists)
        assert all(8 <= added <= 8 + 5 for _, added in outs) and tried(store) == 16
    else:  # (a trial the other process had already stored is taken from the store, not measured again)
        assert all(1 <= added <= 8 + 5 for _, added in outs)
    assert len(store.summary()) == len(set(funcs))


# -- 6. records of another CPU


def test_records_of_another_cpu_are_ignored(store):
    args = (A, B, BIAS)
    k = kernels_of(dense, args)[0]
    wk = workload_key(k)
    sp = space_for(k, host())
    fast = tuple(to_json(sp.steps(next(p for p in _points(sp) if p != sp.default))))
    default = tuple(to_json(sp.steps(sp.default)))
    other = target_key(dict(host().key(), cpu="some-other-cpu"))
    assert other != tkey()
    store.add(Record(wk, other, default, (1.0,), default=True, kind="gemm"))
    store.add(Record(wk, other, fast, (1e-9,), kind="gemm"))

    jf = jitensor.jit(dense)
    close(jf(*args), dense(*args))
    assert only_compiled(jf).program.manifest.kernels[0].schedule == "default"
    assert origins(dense, args) == ["default"]

    store.add(Record(wk, tkey(), default, (1.0,), default=True, kind="gemm"))
    rid = store.add(Record(wk, tkey(), fast, (1e-9,), kind="gemm"))
    assert origins(dense, args) == [f"record {rid}"]
    jf = jitensor.jit(dense)  # (a disk-cache entry compiled with the default is not reused now)
    close(jf(*args), dense(*args))
    assert only_compiled(jf).program.manifest.kernels[0].schedule == steps_digest(list(fast))


def test_a_record_that_does_not_apply_leaves_a_disk_entry_that_stays_current(store):
    """The default schedule taken in place of a best record that does not apply (the compiler changed) is what
    the records choose: the next compile loads the disk entry (it recompiled in every process before)."""
    k = kernels_of(softmax, (X,))[0]
    wk = workload_key(k)
    stale = store.add(Record(wk, tkey(), ({"step": "vectorize", "loop": "gone", "lanes": 8, "copies": 1},),
                             (1e-9,)))
    graph, layouts, _ = jitensor.jit(softmax)._traced((X,), {})
    with pytest.warns(RecordWarning, match="does not apply"):
        c1 = compile_graph(graph, layouts, name="t")
    assert c1.source == "compiled" and c1.kernels[0].origin.startswith(f"default, record {stale} does not apply")
    assert c1.program.manifest.kernels[0].schedule.startswith("default/")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordWarning)
        c2 = compile_graph(graph, layouts, name="t")
    assert c2.source == "disk"
    close(c2.program.run([X])[0], softmax(X))

    sp = space_for(k, host())  # a record that applies and is faster still replaces it
    steps = tuple(to_json(sp.steps(next(p for p in _points(sp) if p != sp.default))))
    store.add(Record(wk, tkey(), steps, (1e-10,)))
    c3 = compile_graph(graph, layouts, name="t")
    assert c3.source == "compiled" and c3.program.manifest.kernels[0].schedule == steps_digest(list(steps))
    close(c3.program.run([X])[0], softmax(X))


# -- 7. lazy tuning: jit(tune=...) and JITENSOR_TUNE


_CALL_AGAIN = """
import os, numpy as np, jitensor
rng = np.random.default_rng(11)
a, b, bias = (rng.standard_normal(s).astype(np.float32) for s in ((64, 128), (128, 96), (96,)))
def dense(a, b, bias):
    return np.maximum(a @ b + bias, 0)
from jitensor.autotune import tuner
calls = []
_tune_traced = tuner.tune_traced
def tune_traced(*args, **kwargs):
    calls.append(1)
    return _tune_traced(*args, **kwargs)
tuner.tune_traced = tune_traced
for where, tune in ((os.environ["DIR_TUNE_ARG"], 6), (os.environ["DIR_TUNE_ENV"], None)):
    os.environ["JITENSOR_CACHE_DIR"] = where
    if tune is None:
        os.environ["JITENSOR_TUNE"] = "6"
    f = jitensor.jit(dense, tune=tune)
    assert f._tune is not None and f._tune["trials"] == 6
    np.testing.assert_allclose(f(a, b, bias), dense(a, b, bias), rtol=1e-3, atol=1e-3)
print("tuned", len(calls))
"""


@pytest.fixture
def fast_measurer(monkeypatch):
    """Lazy tuning builds its own Measurer: make its timings short."""
    monkeypatch.setattr(measure, "Measurer", functools.partial(measure.Measurer, **FAST))


def test_lazy_tuning_tunes_once_per_program(store, tmp_path, monkeypatch, fast_measurer):
    args = (A, B, BIAS)
    f = jitensor.jit(dense, tune=6)
    close(f(*args), dense(*args))  # tuned on the first call, then compiled with the records
    assert tried(store) == 6
    assert_follows_the_records(store, dense, args, only_compiled(f))
    close(f(*args), dense(*args))
    n = len(store.records())
    close(f(*args), dense(*args))
    assert tried(store) == 6 and len(store.records()) == n  # (a signature is tuned once)

    env_dir = tmp_path / "env"
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(env_dir))
    monkeypatch.setenv("JITENSOR_TUNE", "6")
    g = jitensor.jit(dense)  # no code change: the environment asks for tuning
    close(g(*args), dense(*args))
    env_store = RecordStore(env_dir)
    assert tried(env_store) == 6

    # a fresh process, the same function, both ways: the records cover its kernels, nothing is tuned again
    res = run_py(_CALL_AGAIN, {"DIR_TUNE_ARG": str(tmp_path), "DIR_TUNE_ENV": str(env_dir), "JITENSOR_TUNE": ""})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "tuned 0"  # (re-tuning would add no records either: its trials are stored)
    assert len(store.records()) == n and tried(env_store) == 6


def test_unreadable_tune_values_are_argument_errors(monkeypatch):
    monkeypatch.delenv("JITENSOR_TUNE", raising=False)
    for bad in ("x", "trials=abc", -1, 2.5, {"trials": "abc"}, {"trials": 6, "bogus": 1}, {"timeout": 0}):
        with pytest.raises(ArgumentError, match=r"jitensor.jit\(tune=...\)"):
            jitensor.jit(dense, tune=bad)
    for bad in ("trials=abc", "x", "background=maybe", "timeout=-1"):
        monkeypatch.setenv("JITENSOR_TUNE", bad)
        with pytest.raises(ArgumentError, match="JITENSOR_TUNE"):
            jitensor.jit(dense)
    for off in ("0", "", "off"):
        monkeypatch.setenv("JITENSOR_TUNE", off)
        assert jitensor.jit(dense)._tune is None
    monkeypatch.setenv("JITENSOR_TUNE", "trials=5,timeout=2.5,background=1")
    assert jitensor.jit(dense)._tune == {"trials": 5, "timeout": 2.5, "background": True}


def test_a_function_that_does_not_trace_fails_its_call_as_without_tuning(store):
    def bad(x):
        return "not an array"
    f = jitensor.jit(bad, tune=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningWarning)  # no "tuning failed" before the error
        with pytest.raises(ArgumentError, match="returned a value of type str"):
            f(X)
    assert store.empty()


# -- 8. background tuning


def test_background_tuning_answers_at_once_and_swaps_in_the_tuned_program(store, plan, monkeypatch):
    """The worker reports the default 1000x slower, so that a record surely wins: the swapped-in program must
    carry it (the first call's program has the default)."""
    plan("slow")
    monkeypatch.setattr(measure, "Measurer", functools.partial(measure.Measurer, command=FAULTY, **FAST))
    args = (A, B, BIAS)
    f = jitensor.jit(dense, tune={"trials": 6, "background": True})
    close(f(*args), dense(*args))
    tuners = [t for t in threading.enumerate() if t.name == "jitensor-tune-dense"]
    assert len(tuners) == 1 and tuners[0].is_alive()  # the call did not wait for tuning
    first = only_compiled(f)
    assert [launch.schedule for launch in first.program.manifest.kernels] == ["default"]
    close(f(*args), dense(*args))  # calls go on meanwhile

    tuners[0].join(timeout=120)
    assert not tuners[0].is_alive()
    assert tried(store) == 6
    c = only_compiled(f)
    assert c is not first and c.program is not first.program
    (k,) = kernels_of(dense, args)
    best = store.best(workload_key(k), tkey())
    assert not best.default
    assert c.program.manifest.kernels[0].schedule == steps_digest(list(best.steps))
    if c.kernels is not None:
        assert origin(c.kernels[0].origin) == f"record {best.id}"
    (prog,) = f._programs.values()
    assert prog[0] is c.program
    close(f(*args), dense(*args))
