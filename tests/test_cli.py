"""The `jitensor` command line: `cache info|list|clear`, `records list|show|export|import|prune`, registry of
subcommands, light imports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jitensor.cli as cli
from jitensor.cli import main
from jitensor.runtime.diskcache import DiskCache, key_hash

REPO_ROOT = Path(cli.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("JITENSOR_CACHE_DIR", "JITENSOR_DISABLE_CACHE", "JITENSOR_CACHE_MAX_BYTES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def filled(tmp_path):
    """A cache directory with two entries, model.f used most recently."""
    d = tmp_path / "cache"
    c = DiskCache(str(d))
    keys = []
    for fn, size in (("model.g", 3000), ("model.f", 100)):
        comps = {"function": fn, "shapes": [[3, 4]]}
        keys.append(key_hash(comps))
        c.store(keys[-1], bytes(size), {"name": fn, "components": comps})
    c.load(keys[0])
    c.load(keys[1])
    c.load("0" * 64)  # a miss
    c.info()  # persist the counters
    return d, keys


def test_cache_info(filled, capsys):
    d, _ = filled
    assert main(["cache", "info", "--dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert f"cache directory: {d}" in out
    assert "status:          enabled" in out
    assert "entries:         2 (" in out and "512.0 MiB limit" in out
    assert "2 hits, 1 misses, 2 stores, 0 evictions, 0 corrupt" in out


def test_cache_info_json(filled, capsys):
    d, _ = filled
    assert main(["cache", "info", "--json", "--dir", str(d)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(d) and info["entries"] == 2 and info["totals"]["hits"] == 2


def test_cache_list(filled, capsys):
    d, keys = filled
    assert main(["cache", "list", "--dir", str(d)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KEY", "SIZE", "LAST", "USED", "CREATED", "NAME"]
    assert lines[1].startswith(keys[1][:16]) and lines[1].endswith("model.f")  # most recently used first
    assert lines[2].startswith(keys[0][:16]) and lines[2].endswith("model.g") and "KiB" in lines[2]
    assert lines[3].startswith("2 entries, ") and lines[3].endswith(f"in {d}")


def test_cache_list_json(filled, capsys):
    d, keys = filled
    main(["cache", "list", "--json", "--dir", str(d)])
    entries = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in entries] == [keys[1], keys[0]]
    assert {"key", "size", "created", "last_used", "age", "name"} <= set(entries[0])


def test_cache_clear(filled, capsys):
    d, _ = filled
    assert main(["cache", "clear", "--dir", str(d)]) == 0
    assert capsys.readouterr().out.strip() == f"removed 2 entries from {d}"
    main(["cache", "list", "--dir", str(d)])
    assert capsys.readouterr().out.strip() == f"no entries in {d}"
    main(["cache", "clear", "--dir", str(d)])
    assert capsys.readouterr().out.strip() == f"removed 0 entries from {d}"


def test_cache_dir_from_environment(filled, capsys, monkeypatch):
    d, _ = filled
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(d))
    main(["cache", "info"])
    assert f"cache directory: {d}" in capsys.readouterr().out


def test_info_on_missing_dir_does_not_create_it(tmp_path, capsys):
    d = tmp_path / "nothing-here"
    assert main(["cache", "info", "--dir", str(d)]) == 0
    assert "entries:         0 (0 B" in capsys.readouterr().out
    assert not d.exists()


def test_info_on_unsafe_dir_says_why(filled, capsys):
    d, _ = filled
    os.chmod(d, 0o777)
    assert main(["cache", "info", "--dir", str(d)]) == 0
    out, err = capsys.readouterr()
    assert f"status:          disabled (cache dir {d} is writable by others" in out
    assert err.startswith("jitensor: warning: ") and "writable by others" in err


def test_info_when_disabled_by_env(filled, capsys, monkeypatch):
    d, _ = filled
    monkeypatch.setenv("JITENSOR_DISABLE_CACHE", "1")
    main(["cache", "info", "--dir", str(d)])
    assert "disabled (disabled by JITENSOR_DISABLE_CACHE=1)" in capsys.readouterr().out


def test_usage_errors(capsys):
    assert main([]) == 2
    assert "cache" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["cache"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["cache", "explode"])


def test_subcommands_are_a_registry(monkeypatch, capsys):
    def add(p):
        p.add_argument("--n", type=int, default=1)

    def run(args):
        print("hello " * args.n)
        return 3

    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", (add, run, "say hello"))
    assert main(["hello", "--n", "2"]) == 3
    assert capsys.readouterr().out.strip() == "hello hello"


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def test_runnable_as_module(filled):
    d, _ = filled
    r = subprocess.run([sys.executable, "-m", "jitensor.cli", "cache", "info", "--dir", str(d)],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"cache directory: {d}" in r.stdout


def test_cli_and_diskcache_import_no_heavy_modules():
    # Stub the package __init__s so that this checks these two modules' own imports only.
    code = textwrap.dedent(f"""
        import sys, types
        for name, path in (("jitensor", {str(REPO_ROOT / "jitensor")!r}),
                           ("jitensor.runtime", {str(REPO_ROOT / "jitensor" / "runtime")!r})):
            m = types.ModuleType(name); m.__path__ = [path]; sys.modules[name] = m
        import jitensor.cli, jitensor.runtime.diskcache
        heavy = [m for m in ("llvmlite", "numpy") if m in sys.modules]
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr


def test_version(capsys):
    import jitensor
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"jitensor {jitensor.__version__}"


@pytest.mark.parametrize("args", [["cache", "list"], ["cache", "list", "--json"], ["cache", "info"]])
def test_output_into_a_closed_pipe_ends_quietly(filled, args):
    """`jitensor cache list | head`: the reader closes the pipe early; no traceback, SIGPIPE's exit status."""
    d, _ = filled
    p = subprocess.Popen([sys.executable, "-m", "jitensor.cli", *args, "--dir", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
    p.stdout.close()  # before the program writes anything: its first write meets a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


def test_head_of_a_long_listing(tmp_path):
    d = tmp_path / "cache"
    c = DiskCache(str(d))
    for i in range(300):  # more output than a pipe holds
        comps = {"function": f"model.f{i}", "shapes": [[i]]}
        c.store(key_hash(comps), b"x", {"name": f"model.f{i}" + "_" * 200, "components": comps})
    r = subprocess.run(f"{sys.executable} -m jitensor.cli cache list --dir {d} | head -3", shell=True,
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert len(r.stdout.splitlines()) == 3 and r.stdout.startswith("KEY"), r.stdout
    assert r.stderr == "", r.stderr


# ----------------------------------------------------------------------------- jitensor records

W_GEMM, W_SUM = "ab" * 32, "c0" * 32
TGT = "llvm-testcpu-0123456789abcdef"


@pytest.fixture
def tuned(tmp_path):
    """A records store with a tuned GEMM (default 4 ms, best 1 ms) and a reduction with one failed trial."""
    from jitensor.autotune.records import Record, RecordStore
    d = tmp_path / "cache"
    s = RecordStore(str(d / "records.sqlite"))
    split = {"step": "split", "loop": "i", "factor": 8, "tail": "guard"}
    ids = s.add_many([
        Record(W_GEMM, TGT, [], costs=(4e-3, 4e-3), default=True, kind="gemm", timestamp=1.0),
        Record(W_GEMM, TGT, [split, {"step": "parallel", "loop": "i_o"}], costs=(1e-3, 1.1e-3, 0.9e-3),
               kind="gemm", timestamp=2.0),
        Record(W_GEMM, TGT, [{**split, "factor": 64}], costs=(2e-3,), kind="gemm", timestamp=3.0),
        Record(W_SUM, TGT, [split], error="timeout", kind="loops:reduce", timestamp=4.0),
    ])
    s.close()
    return d, ids


def test_records_list(tuned, capsys):
    d, _ = tuned
    assert main(["records", "list", "--dir", str(d)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["WORKLOAD", "TARGET", "KIND", "RECORDS", "DEFAULT", "ms", "BEST", "ms", "SPEEDUP"]
    assert lines[1].split() == [W_GEMM[:16], TGT, "gemm", "3", "4", "1", "4.00x"]
    assert lines[2].split() == [W_SUM[:16], TGT, "loops:reduce", "1", "-", "-", "-"]
    assert lines[3] == f"4 records of 2 workloads in {d / 'records.sqlite'}"


def test_records_list_json(tuned, capsys):
    d, _ = tuned
    assert main(["records", "list", "--json", "--dir", str(d)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["workload"] for r in rows] == [W_GEMM, W_SUM]
    assert rows[0]["speedup"] == pytest.approx(4.0) and rows[0]["target"] == TGT and rows[1]["speedup"] is None


def test_records_list_on_a_missing_dir_does_not_create_it(tmp_path, capsys):
    d = tmp_path / "nothing-here"
    assert main(["records", "list", "--dir", str(d)]) == 0
    assert capsys.readouterr().out.strip() == f"no records in {d / 'records.sqlite'}"
    assert not d.exists()


def test_records_show_by_id_and_by_workload_prefix(tuned, capsys):
    d, ids = tuned
    assert main(["records", "show", str(ids[1]), "--dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"#{ids[1]}  1 ms (median of 3)")
    assert f"workload {W_GEMM}" in out and f"target   {TGT}" in out
    assert 'split(loop="i", factor=8, tail="guard")' in out and 'parallel(loop="i_o")' in out
    assert main(["records", "show", W_GEMM[:6], "--dir", str(d)]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("#")]
    assert heads == [f"#{ids[1]}  1 ms (median of 3)", f"#{ids[2]}  2 ms (median of 1)",
                     f"#{ids[0]}  4 ms (median of 2) [default]"]  # best first
    assert main(["records", "show", W_SUM[:4], "--json", "--dir", str(d)]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["error"] == "timeout" and r["id"] == ids[3] and r["steps"][0]["factor"] == 8


@pytest.mark.parametrize("what", ["999", "ffff", ""])
def test_records_show_unknown_fails_with_one_line(tuned, capsys, what):
    d, _ = tuned
    assert main(["records", "show", what, "--dir", str(d)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("jitensor: no record with id or workload")


def test_records_show_ambiguous_prefix(tmp_path, capsys):
    from jitensor.autotune.records import Record, RecordStore
    d = tmp_path / "cache"
    RecordStore(str(d / "records.sqlite")).add_many([Record("ab" + "0" * 62, TGT, [], costs=(1.0,)),
                                                     Record("ab" + "1" * 62, TGT, [], costs=(1.0,))])
    assert main(["records", "show", "ab", "--dir", str(d)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches 2 workloads" in err


def test_records_export_import(tuned, tmp_path, capsys):
    d, _ = tuned
    f = tmp_path / "out.jsonl"
    assert main(["records", "export", str(f), "--dir", str(d)]) == 0
    assert capsys.readouterr().out.strip() == f"exported 4 records from {d / 'records.sqlite'} to {f}"
    assert len(f.read_text().splitlines()) == 4
    other = tmp_path / "other"
    assert main(["records", "import", str(f), "--dir", str(other)]) == 0
    assert capsys.readouterr().out.strip() == f"imported 4 records into {other / 'records.sqlite'}"
    with f.open("a") as fh:
        fh.write("garbage\n")
    assert main(["records", "import", str(f), "--dir", str(other)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"imported 0 records into {other / 'records.sqlite'} (skipped 4 duplicates and 1 bad line)"
    assert err.strip() == f"jitensor: warning: {f}, line 5: not a tuning record, skipped " \
                          f"(Expecting value: line 1 column 1 (char 0))"
    main(["records", "list", "--dir", str(other)])
    assert "4.00x" in capsys.readouterr().out


def test_records_export_to_stdout(tuned, capsys):
    d, _ = tuned
    assert main(["records", "export", "-", "--ok-only", "--dir", str(d)]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["workload"] for line in out.splitlines()] == [W_GEMM] * 3
    assert err.strip() == f"exported 3 records from {d / 'records.sqlite'}"


def test_records_import_of_a_missing_file(tmp_path, capsys):
    assert main(["records", "import", str(tmp_path / "nope.jsonl"), "--dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"jitensor: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory\n"
    assert not (tmp_path / "records.sqlite").exists()


def test_records_prune(tuned, capsys):
    d, _ = tuned
    assert main(["records", "prune", "--dir", str(d)]) == 0
    assert capsys.readouterr().out.strip() == f"removed 2 records from {d / 'records.sqlite'}"  # 2 ms, the failure
    main(["records", "list", "--dir", str(d)])
    out = capsys.readouterr().out
    assert "4.00x" in out and W_SUM[:16] not in out
    assert main(["records", "prune", "--keep", "-1", "--dir", str(d)]) == 1


def test_records_on_a_corrupt_store_warn_in_one_line(tmp_path, capsys):
    d = tmp_path / "cache"
    d.mkdir()
    (d / "records.sqlite").write_bytes(b"\x00not a database" * 100)
    assert main(["records", "list", "--dir", str(d)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("no records in")
    assert err.count("\n") == 1 and err.startswith("jitensor: warning: the tuning-record store") and "corrupt" in err


def test_records_dir_from_environment(tuned, capsys, monkeypatch):
    d, _ = tuned
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(d))
    main(["records", "list"])
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"in {d / 'records.sqlite'}")


@pytest.mark.parametrize("args", [["records", "list"], ["records", "list", "--json"], ["records", "export", "-"]])
def test_records_output_into_a_closed_pipe_ends_quietly(tuned, args):
    d, _ = tuned
    p = subprocess.Popen([sys.executable, "-m", "jitensor.cli", *args, "--dir", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


def test_head_of_a_long_records_listing(tmp_path):
    from jitensor.autotune.records import Record, RecordStore
    d = tmp_path / "cache"
    RecordStore(str(d / "records.sqlite")).add_many(
        [Record(f"{i:064x}", TGT, [], costs=(1e-3,), kind="gemm" + "_" * 200) for i in range(300)])
    r = subprocess.run(f"{sys.executable} -m jitensor.cli records list --dir {d} | head -3", shell=True,
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert len(r.stdout.splitlines()) == 3 and r.stdout.startswith("WORKLOAD"), r.stdout
    assert r.stderr == "", r.stderr
