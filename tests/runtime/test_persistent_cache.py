"""The JIT and the disk cache end to end: fresh processes load kernels from disk, edits that change the
graph miss, corrupt or unloadable entries are recompiled with a warning, concurrent cold starts, and
the Python API (`jitensor.cache`) and CLI over a cache the JIT wrote.

Functions live in a small module written into a temp dir and run in subprocesses (`CHILD`), so that
every "second process" really starts with an empty in-memory cache.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import jitensor
import jitensor.cache as jcache
import jitensor.runtime.diskcache as dc
from jitensor.errors import CacheWarning
from jitensor.runtime.diskcache import DiskCache

REPO_ROOT = Path(dc.__file__).resolve().parents[2]
MOD = "jtk_cached_mod"  # the module the children import; entry names are f"{MOD}.<qualname>"

MODULE_SRC = textwrap.dedent("""\
    import numpy as np
    import jitensor

    SCALE = 2.0


    def helper(t):
        return t * 3.0 - 1.0


    @jitensor.jit
    def f(x, y):
        t = np.exp(x) + y
        return helper(t) * SCALE


    def make(c):
        @jitensor.jit
        def g(x, y):
            return np.sqrt(np.abs(x)) * c + y
        return g


    g = make(0.5)


    @jitensor.jit(cache=False)
    def f_nocache(x, y):
        return x * y + 1.0
""")

# Runs in a fresh interpreter: import the module, call each (function, shape) with float64 arrays,
# compare with numpy (the function's __wrapped__), report cache_info and every warning as JSON.
CHILD = textwrap.dedent("""\
    import importlib, json, os, sys, time, warnings
    import numpy as np
    from jitensor.errors import CacheWarning
    moddir, modname, calls, barrier = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    pin = os.environ.get("JTK_TEST_BUILD")
    if pin:  # see BUILD below
        import jitensor.compiler
        if hasattr(jitensor.compiler, "compiler_fingerprint"):
            jitensor.compiler.compiler_fingerprint = lambda: pin
    sys.path.insert(0, moddir)
    out = {"calls": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(modname)
        if barrier:  # start barrier: everyone is imported, then all call at once
            open(barrier + ".ready" + str(os.getpid()), "w").close()
            while not os.path.exists(barrier + ".go"):
                time.sleep(0.002)
        for fname, shape in calls:
            fn = getattr(mod, fname)
            n = int(np.prod(shape))
            x = np.linspace(-1.5, 1.5, n).reshape(shape)
            y = np.cos(np.arange(n, dtype=np.float64)).reshape(shape)
            got = fn(x, y)
            want = fn.__wrapped__(x, y)
            info = fn.cache_info()
            out["calls"].append({"ok": bool(got.shape == want.shape and np.allclose(got, want, rtol=1e-12)),
                                 "disk_hits": info.disk_hits, "misses": info.misses})
    out["cache_warnings"] = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    out["other_jitensor_warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught
                                      if not issubclass(w.category, CacheWarning) and "jitensor" in str(w.message)]
    print(json.dumps(out))
""")


# The `compiler` key component fingerprints jitensor's own .py files (sizes, mtimes). Pin it, here and
# in the children, so that someone editing jitensor while these tests run does not turn hits into
# misses; test_other_jitensor_build_misses checks that the component is in the key.
BUILD = "jitensor-build-under-test"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (dc.ENV_DIR, dc.ENV_DISABLE, dc.ENV_MAX_BYTES):
        monkeypatch.delenv(var, raising=False)
    from jitensor import compiler
    if hasattr(compiler, "compiler_fingerprint"):
        monkeypatch.setattr(compiler, "compiler_fingerprint", lambda: BUILD)


def _child_env(cache_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITENSOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env[dc.ENV_DIR] = str(cache_dir)
    env["JTK_TEST_BUILD"] = BUILD
    env.update(extra)
    return env


def _child_cmd(moddir, calls, barrier=""):
    # -B: no __pycache__, so an edited module file is never shadowed by a stale .pyc of the same size/mtime
    return [sys.executable, "-B", "-c", CHILD, str(moddir), MOD, json.dumps(calls), str(barrier)]


def run_child(moddir, cache_dir, calls, **env) -> dict:
    r = subprocess.run(_child_cmd(moddir, calls), capture_output=True, text=True, timeout=120,
                       env=_child_env(cache_dir, **env))
    assert r.returncode == 0, f"child exited with {r.returncode}:\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(c["ok"] for c in out["calls"]), out
    return out


def write_module(moddir: Path, src: str = MODULE_SRC) -> Path:
    moddir.mkdir(parents=True, exist_ok=True)
    (moddir / f"{MOD}.py").write_text(src)
    return moddir


def jtk_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.suffix == ".jtk") if d.exists() else []


def entry_of(cache_dir: Path, name: str) -> dict:
    es = [e for e in DiskCache(str(cache_dir)).entries() if e["name"] == f"{MOD}.{name}"]
    assert len(es) == 1, es
    return es[0]


def copy_cache(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # copies the 0o700 mode too
    return dst


SHAPE = [3, 4]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A module dir and a cache dir in which one process stored f and g for float64[3,4] (read-only: copy it)."""
    base = tmp_path_factory.mktemp("stored")
    moddir = write_module(base / "mod")
    cache_dir = base / "cache"
    out = run_child(moddir, cache_dir, [["f", SHAPE], ["g", SHAPE]])
    assert [c["disk_hits"] for c in out["calls"]] == [0, 0]
    assert out["cache_warnings"] == [] and out["other_jitensor_warnings"] == []
    assert len(jtk_files(cache_dir)) == 2
    return moddir, cache_dir


# ----------------------------------------------------------------------------- hits and misses


def test_second_process_loads_from_disk_and_new_shape_misses(stored, tmp_path):
    moddir, src = stored
    d = copy_cache(src, tmp_path / "cache")
    out = run_child(moddir, d, [["f", SHAPE], ["f", [5, 4]]])
    assert out["calls"][0] == {"ok": True, "disk_hits": 1, "misses": 1}  # loaded, not compiled
    assert out["calls"][1] == {"ok": True, "disk_hits": 1, "misses": 2}  # the new shape compiled
    assert out["cache_warnings"] == [] and out["other_jitensor_warnings"] == []
    assert len(jtk_files(d)) == 3
    # and a third process hits both
    out = run_child(moddir, d, [["f", SHAPE], ["f", [5, 4]]])
    assert [c["disk_hits"] for c in out["calls"]] == [1, 2]


EDITS = {
    # same graph: a renamed local, comments and blank lines (every line number below moves)
    "rename-local-and-comments": ("f", True, "    t = np.exp(x) + y\n    return helper(t) * SCALE",
                                  "    # a comment\n\n    tmp = np.exp(x) + y  # renamed\n"
                                  "    return helper(tmp) * SCALE"),
    "unrelated-code-added": ("f", True, "SCALE = 2.0\n", "SCALE = 2.0\nUNUSED = 7.0\n\n\ndef unused():\n"
                                                        "    return UNUSED\n"),
    # other graphs
    "helper-arithmetic": ("f", False, "return t * 3.0 - 1.0", "return t * 3.0 - 2.0"),
    "global-constant": ("f", False, "SCALE = 2.0", "SCALE = 2.5"),
    "closure-constant": ("g", False, "g = make(0.5)", "g = make(0.25)"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_source_hits_only_if_the_graph_is_the_same(stored, tmp_path, edit):
    moddir, src = stored
    fname, hit, old, new = EDITS[edit]
    assert MODULE_SRC.count(old) == 1
    d = copy_cache(src, tmp_path / "cache")
    edited = write_module(tmp_path / "mod", MODULE_SRC.replace(old, new))
    out = run_child(edited, d, [[fname, SHAPE]])  # the result is checked against the edited numpy code
    assert out["calls"][0]["disk_hits"] == (1 if hit else 0), out
    assert out["cache_warnings"] == []
    assert len(jtk_files(d)) == (2 if hit else 3)


def test_other_jitensor_build_misses(stored, tmp_path):
    moddir, src = stored
    d = copy_cache(src, tmp_path / "cache")
    out = run_child(moddir, d, [["f", SHAPE]], JTK_TEST_BUILD="an-edited-jitensor")
    assert out["calls"][0]["disk_hits"] == 0
    assert len(jtk_files(d)) == 3


# ----------------------------------------------------------------------------- opting out


@pytest.mark.parametrize("how", ["jit(cache=False)", "JITENSOR_DISABLE_CACHE=1"])
def test_disabled_cache_writes_nothing(tmp_path, how):
    moddir = write_module(tmp_path / "mod")
    d = tmp_path / "cache"
    if how == "jit(cache=False)":
        out = run_child(moddir, d, [["f_nocache", SHAPE], ["f_nocache", SHAPE]])
    else:
        out = run_child(moddir, d, [["f", SHAPE], ["g", SHAPE]], JITENSOR_DISABLE_CACHE="1")
    assert [c["disk_hits"] for c in out["calls"]] == [0, 0]
    assert out["cache_warnings"] == []
    assert not d.exists()  # not even the directory or stats.json


def test_disable_cache_zero_means_enabled(tmp_path):
    moddir = write_module(tmp_path / "mod")
    d = tmp_path / "cache"
    run_child(moddir, d, [["f", SHAPE]], JITENSOR_DISABLE_CACHE="0")
    assert DiskCache(str(d)).enabled
    assert len(jtk_files(d)) == 1


# ----------------------------------------------------------------------------- damaged entries


def _truncate(b: bytes) -> bytes:
    return b[:len(b) // 2]


def _flip(i):
    def flip(b: bytes) -> bytes:
        j = i % len(b)
        return b[:j] + bytes([b[j] ^ 0x40]) + b[j + 1:]
    return flip


FAULTS = {
    "truncated": _truncate,
    "empty": lambda b: b"",
    "flipped-header-byte": _flip(30),
    "flipped-payload-byte": _flip(-100),
    "garbage": lambda b: np.random.default_rng(0).bytes(len(b)),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_entry_warns_recompiles_and_is_replaced(stored, tmp_path, fault):
    moddir, src = stored
    d = copy_cache(src, tmp_path / "cache")
    e = entry_of(d, "f")
    path = Path(e["path"])
    path.write_bytes(FAULTS[fault](path.read_bytes()))
    out = run_child(moddir, d, [["f", SHAPE]])
    assert out["calls"][0] == {"ok": True, "disk_hits": 0, "misses": 1}
    assert len(out["cache_warnings"]) == 1, out
    assert str(path) in out["cache_warnings"][0] and "recompiling" in out["cache_warnings"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        entry = DiskCache(str(d)).load(e["key"])  # a valid entry again, under the same key
    assert entry is not None
    if sys.platform.startswith("linux"):
        assert entry.payload[:4] == b"\x7fELF"
    out = run_child(moddir, d, [["f", SHAPE]])
    assert out["calls"][0]["disk_hits"] == 1 and out["cache_warnings"] == []


def _object_without_entry_points() -> bytes:
    """A well-formed object file for this host that lacks jit_entry/jit_k*: it loads, but is not a program."""
    from jitensor.codegen.llvm import binding, target_machine
    from jitensor.target import host
    llvm = binding()
    m = llvm.parse_assembly("define i32 @unrelated() {\n  ret i32 1\n}\n")
    m.triple = host().triple
    return target_machine(host()).emit_object(m)


def _replace_entry(d: Path, key: str, payload: bytes):
    """Store `payload` under `key` as a valid (checksummed) entry, replacing the one there."""
    old = DiskCache(str(d)).load(key)
    (d / f"{key}.jtk").unlink()
    c = DiskCache(str(d))
    c.store(key, payload, dict(old.meta))
    assert c.load(key).payload == payload


@pytest.fixture(scope="module")
def unloadable(stored, tmp_path_factory):
    """Two processes in turn, on a cache whose entry for f verifies but holds an object without entry points."""
    moddir, src = stored
    d = copy_cache(src, tmp_path_factory.mktemp("unloadable") / "cache")
    key = entry_of(d, "f")["key"]
    _replace_entry(d, key, _object_without_entry_points())
    first = run_child(moddir, d, [["f", SHAPE]])  # run_child asserts exit status 0 and a correct result
    second = run_child(moddir, d, [["f", SHAPE]])
    return d, key, first, second


def _all_warnings(out):
    return out["cache_warnings"] + out["other_jitensor_warnings"]


def test_unloadable_entry_warns_and_recompiles(unloadable):
    d, key, first, _ = unloadable
    assert first["calls"][0] == {"ok": True, "disk_hits": 0, "misses": 1}
    msgs = _all_warnings(first)
    assert len(msgs) == 1 and str(d / f"{key}.jtk") in msgs[0] and "recompil" in msgs[0], msgs


def test_unloadable_entry_warning_is_a_cache_warning(unloadable):
    _, _, first, _ = unloadable
    assert len(first["cache_warnings"]) == 1, first


def test_unloadable_entry_is_replaced_for_the_next_process(unloadable):
    _, _, _, second = unloadable
    assert second["calls"][0]["disk_hits"] == 1 and _all_warnings(second) == [], second


def test_entry_that_is_not_an_object_file_does_not_crash(stored, tmp_path):
    moddir, src = stored
    d = copy_cache(src, tmp_path / "cache")
    # The exact key the JIT computes for f(float64[3,4], float64[3,4]), through the public API.
    sys.path.insert(0, str(moddir))
    try:
        import importlib
        mod = importlib.import_module(MOD)
        x = np.ones(SHAPE)
        _, key = jcache.components(mod.f, x, x)
    finally:
        sys.path.remove(str(moddir))
        sys.modules.pop(MOD, None)
    assert key == entry_of(d, "f")["key"]
    _replace_entry(d, key, b"not an object file")
    out = run_child(moddir, d, [["f", SHAPE]])  # asserts exit status 0: today it dies with -11
    assert out["calls"][0] == {"ok": True, "disk_hits": 0, "misses": 1}
    assert len(_all_warnings(out)) == 1


def test_unsafe_cache_dir_compiles_in_memory_with_one_warning(tmp_path):
    moddir = write_module(tmp_path / "mod")
    d = tmp_path / "cache"
    d.mkdir()
    d.chmod(0o777)
    out = run_child(moddir, d, [["f", SHAPE], ["g", SHAPE], ["f", [2, 2]]])
    assert [c["disk_hits"] for c in out["calls"]] == [0, 0, 0]
    assert len(out["cache_warnings"]) == 1, out
    assert "writable by others" in out["cache_warnings"][0] and str(d) in out["cache_warnings"][0]
    assert jtk_files(d) == [] and stat.S_IMODE(d.stat().st_mode) == 0o777


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_cold_start(tmp_path):
    n = 4
    moddir = write_module(tmp_path / "mod")
    d = tmp_path / "cache"
    barrier = tmp_path / "barrier"
    env = _child_env(d)
    procs = [subprocess.Popen(_child_cmd(moddir, [["f", SHAPE]], barrier), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    try:
        deadline = time.time() + 60
        while len(list(tmp_path.glob("barrier.ready*"))) < n:
            assert time.time() < deadline, "children did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.005)
        Path(f"{barrier}.go").touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr
        out = json.loads(stdout.strip().splitlines()[-1])
        assert out["calls"][0]["ok"] and out["cache_warnings"] == [], out
    assert len(jtk_files(d)) == 1
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []
    key = entry_of(d, "f")["key"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert DiskCache(str(d)).load(key) is not None
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        # every writer linked the same bytes (the linker is deterministic): one library file, named by its hash
        assert len(list(d.glob(f"{key}.*.so"))) == 1
    assert run_child(moddir, d, [["f", SHAPE]])["calls"][0]["disk_hits"] == 1


# ----------------------------------------------------------------------------- Python API and CLI


def test_python_api_info_entries_clear_explain_miss(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(dc.ENV_DIR, str(d))

    def scaled_sum(x, y):
        return np.tanh(x) * 2.0 + y

    fn = jitensor.jit(scaled_sum)
    name = f"{scaled_sum.__module__}.{scaled_sum.__qualname__}"
    a = np.linspace(0, 1, 12).reshape(3, 4)
    assert jcache.directory() == str(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert jcache.explain_miss(fn, a, a).startswith("miss")
        assert jcache.info()["entries"] == 0 and jcache.entries() == []
        np.testing.assert_allclose(fn(a, a), scaled_sum(a, a), rtol=1e-12)
        _, key = jcache.components(fn, a, a)
        assert jcache.explain_miss(fn, a, a) == f"hit: entry {key} exists"

        info = jcache.info()
        assert info["path"] == str(d) and info["enabled"] and info["entries"] == 1
        assert info["stores"] >= 1 and info["total_bytes"] > 0
        [e] = jcache.entries()
        assert e["key"] == key and e["name"] == name and e["valid_header"]
        assert jcache.info(str(d))["entries"] == 1 and jcache.entries(str(d))[0]["key"] == key

        b = np.linspace(0, 1, 10).reshape(5, 2)
        why = jcache.explain_miss(fn, b, b)  # new shapes: the graph (shapes are in it) differs
        assert why.startswith("miss") and "graph" in why, why
        why = jcache.explain_miss(fn, np.asfortranarray(a), a)  # same shapes, new strides
        assert why.startswith("miss") and "layouts" in why and "graph" not in why.split("differs in", 1)[1], why

        # a plain (not yet jitted) function has the same name, hence the same key
        assert jcache.explain_miss(scaled_sum, a, a) == f"hit: entry {key} exists"
        assert "cache=False" in jcache.explain_miss(jitensor.jit(scaled_sum, cache=False), a, a)

        assert jcache.clear() == 1
        assert jcache.entries() == [] and jcache.info()["entries"] == 0
        assert jcache.explain_miss(fn, a, a).startswith("miss")
        assert jcache.clear(str(d)) == 0


def test_explain_miss_when_disabled(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    d.mkdir()
    d.chmod(0o777)
    monkeypatch.setenv(dc.ENV_DIR, str(d))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        why = jcache.explain_miss(lambda x: x + 1.0, np.ones(3))
    assert why.startswith("miss: disk cache disabled") and "writable by others" in why, why


def test_cli_lists_the_functions_the_jit_stored(stored):
    _, d = stored
    r = subprocess.run([sys.executable, "-m", "jitensor.cli", "cache", "list", "--dir", str(d)],
                       capture_output=True, text=True, timeout=60, env=_child_env(d))
    assert r.returncode == 0, r.stderr
    assert f"{MOD}.f" in r.stdout and f"{MOD}.make.<locals>.g" in r.stdout
    assert "2 entries" in r.stdout
