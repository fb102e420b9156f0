"""The tuning-record store: contract, ordering, target isolation, corruption, concurrency, start-up cost."""
from __future__ import annotations

import io
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from jitensor.errors import RecordWarning
from jitensor.target import Target
from jitensor.autotune import records as R
from jitensor.autotune.records import FORMAT, Record, RecordStore, default_store, target_key

REPO_ROOT = Path(R.__file__).resolve().parents[2]
W1, W2 = "a1" * 32, "b2" * 32
T = "llvm-testcpu-0123456789abcdef"
T_OTHER = "llvm-othercpu-fedcba9876543210"
SPLIT = {"step": "split", "loop": "i", "factor": 8, "tail": "guard"}


def rec(workload=W1, target=T, costs=(1e-3,), **kw) -> Record:
    kw.setdefault("steps", [SPLIT])
    kw.setdefault("kind", "gemm")
    return Record(workload, target, costs=costs, **kw)


@pytest.fixture
def store(tmp_path):
    s = RecordStore(str(tmp_path / "records.sqlite"))
    yield s
    s.close()


def _caught(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, [x for x in w if issubclass(x.category, RecordWarning)]


# ----------------------------------------------------------------------------- records


def test_record_normalizes_and_costs_are_medians():
    r = Record(W1, T, [SPLIT], costs=[3, 1, 2])
    assert r.steps == (SPLIT,) and r.costs == (3.0, 1.0, 2.0) and r.cost == 2.0 and r.ok
    assert Record(W1, T, [], costs=(1.0, 4.0)).cost == 2.5
    failed = Record(W1, T, [SPLIT], error="timeout")
    assert failed.cost is None and not failed.ok
    assert Record(W1, T, [SPLIT], costs=(1.0,), error="wrong result: max abs err 3").cost is None
    assert Record(W1, T, []).versions == {} and hash(r) == hash(Record(W1, T, [], costs=[3, 1, 2]))
    for bad in ((float("nan"),), (-1.0,), (float("inf"),)):
        with pytest.raises(ValueError):
            Record(W1, T, [], costs=bad)
    with pytest.raises(ValueError):
        Record("", T, [])
    with pytest.raises(TypeError):
        Record(W1, T, "split i 8")


def test_record_accepts_schedule_steps():
    from jitensor.loop.primitives import Reorder, Split, from_json
    r = Record(W1, T, [Split("i", 8), Reorder(("j", "i"))], costs=(1e-3,))
    assert r.steps == ({"step": "split", "loop": "i", "factor": 8, "tail": "guard"},
                       {"step": "reorder", "order": ["j", "i"]})
    assert from_json(r.steps) == [Split("i", 8), Reorder(("j", "i"))]


def test_target_key_isolates_every_part_of_the_target():
    t = Target("llvm", "x86_64-unknown-linux-gnu", "skylake-avx512", "+avx2,+avx512f")
    k = target_key(t)
    assert k.startswith("llvm-skylake-avx512-") and len(k.rsplit("-", 1)[1]) == 16
    assert target_key(t.key()) == k == target_key(k)
    others = [Target("llvm", t.triple, t.cpu, "+avx2"), Target("llvm", t.triple, "znver3", t.features),
              Target("llvm", t.triple, t.cpu, t.features, l2=2 << 20)]
    assert len({k, *map(target_key, others)}) == 4


def test_targets_may_be_given_as_target_objects(store):
    t = Target("llvm", "x86_64-unknown-linux-gnu", "znver3", "+avx2")
    store.add(Record(W1, t, [], costs=(1e-3,)))
    assert store.best(W1, t).target == target_key(t) == store.records(target=t)[0].target
    assert store.best(W1, target_key(t)) is not None and store.best(W1, Target("llvm", t.triple, "znver4")) is None


# ----------------------------------------------------------------------------- storing and reading


def test_add_get_and_filled_fields(store):
    i = store.add(rec(costs=(2e-3, 1e-3, 3e-3)))
    assert isinstance(i, int)
    got = store.get(i)
    assert got.id == i and got.steps == (SPLIT,) and got.costs == (2e-3, 1e-3, 3e-3) and got.cost == 2e-3
    assert abs(got.timestamp - time.time()) < 60
    assert got.versions["format"] == FORMAT and set(got.versions) == {"jitensor", "llvm", "format"}
    assert store.get(i + 1) is None
    explicit = store.get(store.add(rec(timestamp=123.5, versions={"jitensor": "0.0.1"})))
    assert explicit.timestamp == 123.5 and explicit.versions == {"jitensor": "0.0.1"}
    assert store.add_many([rec(), rec(error="crash: SIGSEGV", costs=())]) == [i + 2, i + 3]
    assert store.add_many([]) == []


def test_best_is_lowest_median_and_ignores_failures(store):
    store.add_many([rec(costs=(5e-3, 1e-3, 5e-3)),  # median 5 ms despite one fast repeat
                    rec(costs=(2e-3,), steps=[{**SPLIT, "factor": 16}]),
                    rec(costs=(), error="timeout", steps=[{**SPLIT, "factor": 32}]),
                    rec(costs=(1e-6,), error="wrong result: max abs err 1.0")])
    b = store.best(W1, T)
    assert b.cost == 2e-3 and b.steps[0]["factor"] == 16
    assert store.best(W2, T) is None


def test_best_ties_prefer_the_default_then_the_oldest(store):
    store.add(rec(costs=(1e-3,), timestamp=300.0, steps=[{**SPLIT, "factor": 2}]))
    store.add(rec(costs=(1e-3,), timestamp=100.0, steps=[{**SPLIT, "factor": 4}]))
    assert store.best(W1, T).timestamp == 100.0  # oldest among equals
    store.add(rec(costs=(1e-3,), timestamp=500.0, default=True, steps=[]))
    assert store.best(W1, T).default  # the compiler's own schedule wins a tie
    store.add(rec(costs=(0.9e-3,), timestamp=600.0))
    assert store.best(W1, T).timestamp == 600.0


def test_best_never_returns_another_targets_records(store):
    store.add(rec(target=T_OTHER, costs=(1e-6,)))
    assert store.best(W1, T) is None and store.default_record(W1, T) is None
    store.add(rec(costs=(1.0,)))
    assert store.best(W1, T).target == T and store.best(W1, T).cost == 1.0
    assert store.best(W1, T_OTHER).cost == 1e-6


def test_default_record_is_the_latest_ok_default(store):
    store.add(rec(default=True, costs=(2e-3,), timestamp=10.0, steps=[]))
    store.add(rec(default=True, costs=(3e-3,), timestamp=20.0, steps=[]))
    store.add(rec(default=True, costs=(), error="timeout", timestamp=30.0, steps=[]))
    store.add(rec(costs=(1e-3,), timestamp=40.0))
    d = store.default_record(W1, T)
    assert d.default and d.cost == 3e-3 and d.timestamp == 20.0


def test_records_filters_and_workloads(store):
    store.add_many([rec(costs=(4e-3,), default=True, steps=[]), rec(costs=(1e-3,)), rec(error="timeout", costs=()),
                    rec(W2, kind="loops:reduce", costs=(1e-4,)), rec(target=T_OTHER, costs=(9e-3,))])
    assert len(store.records()) == 5
    assert [r.id for r in store.records()] == sorted(r.id for r in store.records())  # oldest first
    assert len(store.records(workload=W1, target=T)) == 3
    assert len(store.records(workload=W1, target=T, ok_only=True)) == 2
    assert [r.workload for r in store.records(kind="loops:reduce")] == [W2]
    assert len(store.records(limit=2)) == 2
    assert store.workloads(T) == [(W1, "gemm", 3, 4e-3, 1e-3), (W2, "loops:reduce", 1, None, 1e-4)]
    # Without a target: one row per (workload, target); costs of different machines are never mixed.
    assert store.workloads() == [(W1, "gemm", 1, None, 9e-3), (W1, "gemm", 3, 4e-3, 1e-3),  # T_OTHER < T
                                 (W2, "loops:reduce", 1, None, 1e-4)]
    s = store.summary(T)[0]
    assert s["target"] == T and s["records"] == 3 and s["ok"] == 2 and s["last"] > 0


def test_records_pages_through_large_stores(store, monkeypatch):
    monkeypatch.setattr(R, "_PAGE", 7)
    store.add_many([rec(costs=(i * 1e-3 + 1e-3,)) for i in range(30)])
    assert [r.cost for r in store.records()] == [i * 1e-3 + 1e-3 for i in range(30)]
    assert len(store.records(limit=15)) == 15 and len(store.records(limit=7)) == 7


def test_a_missing_store_reads_as_empty_and_is_not_created(tmp_path):
    d = tmp_path / "no" / "such" / "dir"
    s = RecordStore(str(d / "records.sqlite"))
    (out, caught) = _caught(lambda: (s.best(W1, T), s.default_record(W1, T), s.records(), s.workloads(),
                                     s.get(1), s.empty(), s.prune()))
    assert out == (None, None, [], [], None, True, 0) and not caught
    assert not (tmp_path / "no").exists()
    s.add(rec())
    assert (d / "records.sqlite").exists() and not s.empty()


def test_store_path_may_be_a_directory(tmp_path):
    s = RecordStore(str(tmp_path))
    assert s.path == str(tmp_path / "records.sqlite")


def test_default_store_lives_in_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(tmp_path / "one"))
    a = default_store()
    assert a is default_store() and a.path == str(tmp_path / "one" / "records.sqlite")
    a.add(rec())
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(tmp_path / "two"))
    b = default_store()
    assert b is not a and b.path == str(tmp_path / "two" / "records.sqlite") and b.empty()


# ----------------------------------------------------------------------------- export / import


def test_export_import_round_trip_skips_duplicates(store, tmp_path):
    store.add_many([rec(costs=(1e-3, 2e-3)), rec(error="crash: SIGBUS", costs=()),
                    rec(W2, target=T_OTHER, default=True, steps=[], kind="gemv")])
    buf = io.StringIO()
    assert store.export_jsonl(buf) == 3
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert set(first) == {"workload", "target", "kind", "steps", "costs", "error", "default", "timestamp",
                          "versions", "id", "features"}
    other = RecordStore(str(tmp_path / "other.sqlite"))
    assert other.import_jsonl(io.StringIO(buf.getvalue())) == 3
    assert other.import_jsonl(io.StringIO(buf.getvalue())) == 0  # all duplicates
    assert store.import_jsonl(io.StringIO(buf.getvalue())) == 0
    strip = lambda r: {**r.to_json(), "id": None}  # noqa: E731
    assert [strip(r) for r in other.records()] == [strip(r) for r in store.records()]
    ok = io.StringIO()
    assert store.export_jsonl(ok, ok_only=True, target=T) == 1


def test_import_warns_about_bad_lines_by_number(store):
    good = json.dumps(rec(timestamp=1.0).to_json())
    text = "\n".join([good, "{not json", "", json.dumps({"workload": W1}), json.dumps([1, 2]),
                      json.dumps({**rec(timestamp=2.0).to_json(), "costs": [-1]}),
                      json.dumps({**rec(timestamp=3.0).to_json(), "steps": "split"}), good]) + "\n"
    n, caught = _caught(lambda: store.import_jsonl(io.StringIO(text)))
    assert n == 1
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 5
    for lineno, msg in zip((2, 4, 5, 6, 7), msgs):
        assert f"line {lineno}:" in msg, msg
    assert "missing target, steps" in msgs[1]
    # bytes lines work too (a file opened in binary mode)
    data = json.dumps(rec(timestamp=9.0).to_json()).encode() + b"\n\xff\n"
    n, caught = _caught(lambda: store.import_jsonl(io.BytesIO(data)))
    assert n == 1 and len(caught) == 1 and "line 2:" in str(caught[0].message)


# ----------------------------------------------------------------------------- prune


def test_prune_keeps_the_best_and_the_latest_default(store):
    store.add_many([rec(costs=(c,), timestamp=float(i)) for i, c in enumerate((5e-3, 1e-3, 3e-3, 2e-3))])
    store.add_many([rec(costs=(), error="timeout"), rec(default=True, costs=(9e-3,), timestamp=1.0, steps=[]),
                    rec(default=True, costs=(8e-3,), timestamp=2.0, steps=[]),
                    rec(W2, costs=(1e-3,)), rec(W2, costs=(2e-3,)), rec(target=T_OTHER, costs=(1.0,)),
                    rec(target=T_OTHER, costs=(2.0,))])
    assert store.prune(keep=2, target=T) == 4  # W1: 3 and 5 ms, the failure, the older default; W2: nothing
    assert sorted(r.cost for r in store.records(workload=W1, target=T)) == [1e-3, 2e-3, 8e-3]
    assert store.default_record(W1, T).cost == 8e-3
    assert len(store.records(target=T_OTHER)) == 2  # another target: untouched
    assert store.prune() == 3  # keep=1 everywhere: W1's 2 ms, W2's 2 ms, T_OTHER's 2.0 s
    assert sorted(r.cost for r in store.records(workload=W1, target=T)) == [1e-3, 8e-3]
    assert store.prune(keep=0) == 3 and [r.default for r in store.records(workload=W1, target=T)] == [True]
    assert store.records(workload=W2) == [] and store.records(target=T_OTHER) == []
    with pytest.raises(ValueError):
        store.prune(keep=-1)


# ----------------------------------------------------------------------------- bad files


def test_a_corrupt_file_reads_as_empty_with_a_warning(tmp_path):
    path = tmp_path / "records.sqlite"
    path.write_bytes(os.urandom(8192))
    s = RecordStore(str(path))
    out, caught = _caught(lambda: (s.best(W1, T), s.records(), s.workloads(), s.empty(), s.get(1)))
    assert out == (None, [], [], True, None)
    assert len(caught) == 1 and "corrupt" in str(caught[0].message) and str(path) in str(caught[0].message)
    _, again = _caught(lambda: s.best(W1, T))
    assert not again  # once per store and reason


def test_writing_to_a_corrupt_file_moves_it_aside(tmp_path):
    path = tmp_path / "records.sqlite"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    s = RecordStore(str(path))
    i, caught = _caught(lambda: s.add(rec()))
    assert isinstance(i, int) and s.best(W1, T).id == i
    assert (tmp_path / "records.sqlite.corrupt").read_bytes() == junk
    assert any("moved it to" in str(w.message) and ".corrupt" in str(w.message) for w in caught)
    # another store object that had judged the old file corrupt picks up the new one
    assert RecordStore(str(path)).best(W1, T).id == i


def test_a_truncated_database_is_corrupt_too(tmp_path):
    path = tmp_path / "records.sqlite"
    s = RecordStore(str(path))
    s.add_many([rec(costs=(i * 1e-3 + 1e-3,)) for i in range(2000)])
    s.close()
    con = sqlite3.connect(str(path))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])
    out, caught = _caught(lambda: RecordStore(str(path)).records())
    assert out == [] or len(out) < 2000  # whatever SQLite can still read, never an exception
    assert caught


def _set_header(path, user_version=None, application_id=None):
    con = sqlite3.connect(str(path))
    if user_version is not None:
        con.execute(f"PRAGMA user_version = {user_version}")
    if application_id is not None:
        con.execute(f"PRAGMA application_id = {application_id}")
    con.commit()
    con.close()


def test_a_newer_format_is_ignored_and_never_written(tmp_path):
    path = tmp_path / "records.sqlite"
    s = RecordStore(str(path))
    s.add(rec())
    s.close()
    _set_header(path, user_version=FORMAT + 1)
    s = RecordStore(str(path))
    out, caught = _caught(lambda: (s.best(W1, T), s.records(), s.empty()))
    assert out == (None, [], True)
    assert len(caught) == 1 and f"format {FORMAT + 1}" in str(caught[0].message) and "newer" in str(caught[0].message)
    size = path.stat().st_size
    i, caught = _caught(lambda: (s.add(rec()), s.add_many([rec()]), s.prune()))
    assert i == (None, [None], 0)
    assert any("not writing" in str(w.message) for w in caught)
    assert path.stat().st_size == size and not (tmp_path / "records.sqlite.corrupt").exists()
    _set_header(path, user_version=FORMAT)  # the file changed: judged afresh
    assert s.best(W1, T) is not None


def test_another_programs_database_is_not_a_store(tmp_path):
    path = tmp_path / "records.sqlite"
    con = sqlite3.connect(str(path))
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    s = RecordStore(str(path))
    (out, added), caught = _caught(lambda: (s.best(W1, T), s.add(rec())))
    assert out is None and added is None
    assert any("not a jitensor record store" in str(w.message) for w in caught)


def test_an_empty_file_is_an_empty_store(tmp_path):
    path = tmp_path / "records.sqlite"
    path.write_bytes(b"")
    s = RecordStore(str(path))
    (out, caught) = _caught(lambda: (s.best(W1, T), s.empty()))
    assert out == (None, True) and not caught
    assert s.add(rec()) == 1


# ----------------------------------------------------------------------------- concurrency


def _writer(path_or_store, tag, n, start):
    start.wait()
    s = RecordStore(path_or_store) if isinstance(path_or_store, str) else path_or_store
    for i in range(n):
        assert s.add(Record(W1, T, [{**SPLIT, "factor": i}], costs=(1e-3 + i * 1e-6,), kind=tag)) is not None


def test_two_writing_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "records.sqlite")
    parent = RecordStore(path)
    parent.add(rec(kind="parent"))  # a connection open across the fork: the children must not use it
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    start = ctx.Event()
    # With fork, writer one goes on with the parent's store object (its connection must be reopened).
    where = parent if ctx.get_start_method() == "fork" else path
    procs = [ctx.Process(target=_writer, args=(w, tag, 200, start)) for w, tag in ((where, "one"), (path, "two"))]
    for p in procs:
        p.start()
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join(120)
    elapsed = time.perf_counter() - t0
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(parent.records(kind="one")) == 200 and len(parent.records(kind="two")) == 200
    assert len(parent.records()) == 401
    parent.add(rec(kind="parent"))
    assert len(RecordStore(path).records(kind="parent")) == 2
    print(f"2 processes x 200 add(): {elapsed:.2f} s")


# ----------------------------------------------------------------------------- start-up cost

_STUBS = textwrap.dedent(f"""
    import sys, types
    # Stub the package __init__s: measure this module and its own imports, not the compiler's.
    for name, sub in (("jitensor", ""), ("jitensor.runtime", "runtime"), ("jitensor.tune", "tune")):
        m = types.ModuleType(name); m.__path__ = [{str(REPO_ROOT / "jitensor")!r} + ("/" + sub if sub else "")]
        sys.modules[name] = m
""")


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", _STUBS + textwrap.dedent(code)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_records_imports_no_heavy_modules():
    out = _run("""
        import jitensor.autotune.records
        print([m for m in ("numpy", "llvmlite") if m in sys.modules])
    """)
    assert out.strip() == "[]"


def test_open_and_best_in_a_fresh_process(tmp_path):
    """A fresh process finds the best of 2000 records, and a missing store creates nothing (the times are
    printed, not asserted: ~1 ms with a store, ~0.1 ms without, on the 2-core development machine)."""
    path = str(tmp_path / "records.sqlite")
    s = RecordStore(path)
    s.add_many([rec(w, costs=(i * 1e-6 + 1e-3,), steps=[{**SPLIT, "factor": i}])
                for w in (W1, W2) for i in range(1000)])
    s.close()
    code = f"""
        import os, time
        from jitensor.autotune.records import RecordStore
        t0 = time.perf_counter()
        r = RecordStore({path!r}).best({W1!r}, {T!r})
        t1 = time.perf_counter()
        missing = {str(tmp_path / "missing" / "records.sqlite")!r}
        assert RecordStore(missing).best({W1!r}, {T!r}) is None
        t2 = time.perf_counter()
        assert r.cost == 1e-3 and not os.path.exists(os.path.dirname(missing))
        print((t1 - t0) * 1e3, (t2 - t1) * 1e3)
    """
    runs = [tuple(map(float, _run(code).split())) for _ in range(3)]
    hit, miss = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"fresh process: open + best() {hit:.3f} ms with 2000 records; without a file {miss:.3f} ms")


def test_a_later_measurement_of_a_schedule_supersedes_an_earlier_one(tmp_path):
    """The tuner re-measures its finalists: a schedule's latest ok measurement is the one that counts."""
    s = RecordStore(str(tmp_path / "records.sqlite"))
    lucky = [{**SPLIT, "factor": 4}]
    s.add(rec(W1, costs=(2e-3,), steps=[{**SPLIT, "factor": 2}], default=True))
    s.add(rec(W1, costs=(1e-3,), steps=lucky))
    assert s.best(W1, T).steps == tuple(lucky)
    s.add(rec(W1, costs=(3e-3,), steps=lucky))  # confirmed slower than the default after all
    assert s.best(W1, T).default
    s.add(rec(W1, costs=(9e-3,), steps=lucky, error="timeout"))  # a failed re-measurement changes nothing
    assert s.best(W1, T).default
