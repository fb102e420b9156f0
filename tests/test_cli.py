"""The `jitensor` command line: `cache info|list|clear`, registry of subcommands, light imports."""
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
