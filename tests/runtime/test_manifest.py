"""The manifest (runtime/manifest.py) and disk hits built from it alone.

A disk hit must not run the graph passes, fusion, lowering, scheduling or code generation: the tests
make those raise and check that a second JitFunction (empty in-memory cache, warm disk cache) still
returns numpy's result, for programs with several outputs, temporaries, constants, outputs that are
inputs or constants, duplicated outputs, scalar reductions, views, mixed dtypes, parallel kernels
(both sides of the parallel threshold), GEMM templates and runtime index errors. A manifest that is
damaged or does not fit (another kernel count, other outputs, an old entry without one) is discarded
with a CacheWarning and the program recompiled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import jitensor
import jitensor.runtime.diskcache as dc
from helpers import assert_same
from jitensor.errors import CacheWarning, IndexOutOfBoundsError
from jitensor.runtime import manifest as M
from jitensor.runtime.diskcache import DiskCache
from jitensor.runtime.threads import min_work

# float32 transcendental code with cancellation (GELU near -3): an absolute part, as in test_everyday.py
RTOL = {np.dtype(np.float32): 3e-5, np.dtype(np.float64): 1e-10}
ATOL = {np.dtype(np.float32): 3e-6, np.dtype(np.float64): 1e-12}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

W = np.arange(12.0).reshape(3, 4) - 5.5       # a constant buffer (closure array)
K = np.array([1, -2, 3], dtype=np.int32)      # returned unchanged: an output that is a constant


def several(x, y):
    m = x.sum(axis=0)                          # column sums: a temporary read by two outputs
    return x * W + m, (y - m) * 2.0, x.max()


def passthrough(x, y):
    return x, K, x + y, y.T


def duplicated(x):
    a = np.exp(x) - 1.0
    return a, a, (a, x)


def mixed(i, f):
    return i * f + 1, (i // 3).astype(np.int8), np.sqrt(np.abs(f))


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def mm_bias(a, b, c):
    return np.maximum(a @ b + c, 0.0)


def take(x, idx):
    return np.take(x, idx) * 2.0  # the line a runtime index error must name


def _rng():
    return np.random.default_rng(7)


CASES = {
    "several": (several, lambda: (_rng().standard_normal((3, 4)), _rng().standard_normal((3, 4)))),
    "several-views": (several, lambda: (_rng().standard_normal((4, 3)).T, _rng().standard_normal((3, 8))[:, ::-2])),
    "passthrough": (passthrough, lambda: (np.arange(6.0).reshape(2, 3), np.ones((2, 3)))),
    "duplicated": (duplicated, lambda: (np.linspace(-2, 2, 10, dtype=np.float32),)),
    "mixed": (mixed, lambda: (np.arange(-6, 6, dtype=np.int32), np.linspace(-3, 3, 12, dtype=np.float32))),
    "gelu-small": (gelu, lambda: (_rng().standard_normal(4096, dtype=np.float32),)),
    "gelu-parallel": (gelu, lambda: (_rng().standard_normal(1 << 20, dtype=np.float32),)),
    "gemm": (mm_bias, lambda: (_rng().standard_normal((96, 80), dtype=np.float32),
                               _rng().standard_normal((80, 72), dtype=np.float32),
                               _rng().standard_normal(72, dtype=np.float32))),
}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    for var in (dc.ENV_DISABLE, dc.ENV_MAX_BYTES):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "cache"
    monkeypatch.setenv(dc.ENV_DIR, str(d))
    return d


def _compile_stages_raise(monkeypatch):
    """Every compile-time stage raises from now on: only a disk hit can produce a program."""
    import jitensor.codegen.llvm as cg
    import jitensor.graph.passes as gp
    import jitensor.graph.passes.fuse as fuse
    import jitensor.loop.lower as lower
    import jitensor.loop.schedule as sched

    def boom(*a, **k):
        raise AssertionError("a compile-time stage ran on a disk hit")
    for mod, name in ((gp, "optimize"), (fuse, "plan_fusion"), (lower, "plan_buffers"), (lower, "lower"),
                      (sched, "default_schedule"), (cg, "build_module"), (cg, "compile_object")):
        monkeypatch.setattr(mod, name, boom)


def _compiled(jf):
    (c,) = jf._compiled.values()
    return c


def _same_manifest(a: M.Manifest, b: M.Manifest):
    assert M.pack(a, b"obj") == M.pack(b, b"obj")


@pytest.mark.parametrize("case", list(CASES))
def test_disk_hit_runs_no_compile_stage(cache_dir, monkeypatch, case):
    fn, make = CASES[case]
    args = make()
    want = fn(*args)
    first = jitensor.jit(fn)
    before = first(*args)
    assert_same(want, before, RTOL, ATOL)
    compiled = _compiled(first)
    assert compiled.source == "compiled" and first.cache_info().disk_hits == 0
    _compile_stages_raise(monkeypatch)
    second = jitensor.jit(fn)  # a new in-memory cache, as in a new process
    got = second(*args)
    assert second.cache_info().disk_hits == 1
    assert_same(want, got, RTOL, ATOL)
    assert_same(before, got, rtol=0.0)  # the same machine code: the same bits
    assert_same(want, second(*args), RTOL, ATOL)  # and again, from the in-memory cache
    loaded = _compiled(second)
    assert loaded.source == "disk" and loaded.kernels is None
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":  # loaded from its shared library
        assert type(loaded.program.code).__name__ == "SharedProgramCode"
    _same_manifest(compiled.program.manifest, loaded.program.manifest)
    assert loaded.program._parallel == compiled.program._parallel
    assert [p[2:] for p in loaded.program._parts] == [p[2:] for p in compiled.program._parts]


def test_cases_cover_what_the_manifest_describes(cache_dir):
    """The programs above really have temporaries, constants, pass-through and duplicated outputs, parallel
    kernels on both sides of the threshold and a GEMM template (else the tests above prove less)."""
    def manifest(case):
        fn, make = CASES[case]
        jf = jitensor.jit(fn, cache=False)
        jf(*make())
        return _compiled(jf).program.manifest
    m = manifest("several")
    assert m.temps and m.consts and len(m.outputs) == 3 and m.outputs[2][2] == ()
    m = manifest("passthrough")
    assert [o[1][0] for o in m.outputs if o[0] is None] == ["in", "const"]
    m = manifest("duplicated")
    slots = [o[0] for o in m.outputs]
    assert len(set(slots)) < len(slots)
    assert not any(k.extent is not None and k.work >= min_work() for k in manifest("gelu-small").kernels)
    assert any(k.extent is not None and k.work >= min_work() for k in manifest("gelu-parallel").kernels)
    assert any(k.template for k in manifest("gemm").kernels)


def test_runtime_error_on_a_disk_hit_names_the_source_line(cache_dir, monkeypatch):
    x = np.arange(5.0)
    ok, bad = np.array([0, 4, 2]), np.array([0, 5, 1])
    first = jitensor.jit(take)
    with pytest.raises(IndexOutOfBoundsError) as e1:
        first(x, bad)
    _compile_stages_raise(monkeypatch)
    second = jitensor.jit(take)
    with pytest.raises(IndexOutOfBoundsError) as e2:
        second(x, bad)
    assert second.cache_info().disk_hits == 1
    assert e2.value.where == e1.value.where and "np.take(x, idx) * 2.0" in e2.value.where
    assert_same(take(x, ok), second(x, ok))


MOVED_SRC = """\
import numpy as np
{pad}

def take_moved(x, idx):
    return np.take(x, idx) + 1.0
"""


def test_runtime_error_on_a_disk_hit_names_the_line_of_todays_source(cache_dir, tmp_path, monkeypatch):
    """Source locations are not in the key (moved code still hits): the error names where the op is now."""
    import importlib
    import linecache
    moddir = tmp_path / "mod"
    moddir.mkdir()
    path = moddir / "jtk_moved_mod.py"
    monkeypatch.syspath_prepend(str(moddir))
    x, bad = np.arange(4.0), np.array([7])

    def error_of(pad):
        path.write_text(MOVED_SRC.format(pad=pad))
        linecache.checkcache(str(path))
        sys.modules.pop("jtk_moved_mod", None)
        jf = jitensor.jit(importlib.import_module("jtk_moved_mod").take_moved)
        with pytest.raises(IndexOutOfBoundsError) as e:
            jf(x, bad)
        return jf, e.value.where
    try:
        first, where1 = error_of("")
        assert first.cache_info().disk_hits == 0 and "jtk_moved_mod.py:5: return np.take" in where1, where1
        _compile_stages_raise(monkeypatch)
        second, where2 = error_of("# a comment\n# and another")
        assert second.cache_info().disk_hits == 1
        assert "jtk_moved_mod.py:6: return np.take(x, idx) + 1.0" in where2, where2
    finally:
        sys.modules.pop("jtk_moved_mod", None)


def test_dump_on_a_disk_hit_recomputes_the_stages(cache_dir, capsys, monkeypatch):
    x = np.linspace(0, 1, 7)
    jitensor.jit(gelu)(x)
    monkeypatch.setenv("JITENSOR_DUMP", "graph,fused,loop")
    second = jitensor.jit(gelu)
    second(x)
    out = capsys.readouterr().out
    assert second.cache_info().disk_hits == 1
    assert "== traced graph" in out and "# group 0" in out and "== loop IR" in out
    assert "tanh" in jitensor.explain(gelu, x)


# -- damaged and mismatched manifests


def _entry(cache_dir):
    (key,) = [p[:-4] for p in os.listdir(cache_dir) if p.endswith(".jtk")]
    return key, DiskCache(str(cache_dir)).load(key)


def _rewrite(cache_dir, edit):
    """Store the single entry again, checksummed, with `edit(meta, payload) -> payload` applied."""
    key, entry = _entry(cache_dir)
    meta = json.loads(json.dumps(entry.meta))
    payload = edit(meta, entry.payload)
    os.unlink(os.path.join(cache_dir, key + ".jtk"))
    c = DiskCache(str(cache_dir))
    c.store(key, payload, meta)
    assert c.load(key) is not None


def _drop_kernel(meta, p):
    meta["manifest"]["kernels"].pop()
    return p


def _add_kernel(meta, p):
    ks = meta["manifest"]["kernels"]
    ks.append(dict(ks[-1], entry=f"jit_k{len(ks)}"))
    return p


def _set(path, value):
    def edit(meta, p):
        d = meta["manifest"]
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return p
    return edit


def _no_manifest(meta, p):
    del meta["manifest"]
    return p


def _truncate_constants(meta, p):
    return p[:-8]


MISMATCHES = {
    "fewer kernels": _drop_kernel,
    "more kernels": _add_kernel,
    "no manifest (older entry)": _no_manifest,
    "another version": _set(["version"], 99),
    "slot out of range": _set(["inputs", 0], 10 ** 6),
    "error word as slot": _set(["temps", 0, 0], 0),
    "object dtype": _set(["outputs", 0, 3], "|O"),
    "another output shape": _set(["outputs", 0, 2], [4, 3]),
    "another output dtype": _set(["outputs", 1, 3], "<f4"),
    "negative grain": _set(["kernels", 0, "grain"], -1),
    "kernel entry name": _set(["kernels", 0, "entry"], "jit_entry"),
    "constant beyond the payload": _set(["arrays", 0, "offset"], 1 << 40),
    "constant inside the object code": _set(["arrays", 0, "offset"], 0),
    "constant of another size": _set(["arrays", 0, "shape"], [4, 4]),
    "truncated constants": _truncate_constants,
    "object size": _set(["object_size"], 10 ** 9),
    "not a dict": lambda meta, p: (meta.__setitem__("manifest", [1, 2]), p)[1],
    "garbage kernel": _set(["kernels", 0], "jit_k0"),
}


@pytest.mark.parametrize("how", list(MISMATCHES))
def test_mismatched_manifest_is_discarded_and_recompiled(cache_dir, how):
    args = CASES["several"][1]()
    want = several(*args)
    jitensor.jit(several)(*args)
    _rewrite(cache_dir, MISMATCHES[how])
    second = jitensor.jit(several)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = second(*args)
    assert_same(want, got)
    assert second.cache_info().disk_hits == 0
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(msgs) == 1 and "recompiling" in msgs[0], msgs
    third = jitensor.jit(several)  # the entry was replaced by a good one
    assert_same(want, third(*args))
    assert third.cache_info().disk_hits == 1


def test_manifest_round_trip_and_validation():
    jf = jitensor.jit(several, cache=False)
    jf(*CASES["several"][1]())
    m = _compiled(jf).program.manifest
    meta, payload = M.pack(m, b"\x7fELF-object", b"\x7fELF-library")
    meta = json.loads(json.dumps(meta))  # as the header stores it
    m2, obj, lib = M.unpack(meta, payload)
    assert obj == b"\x7fELF-object" and lib == b"\x7fELF-library"
    _same_manifest(m, m2)
    assert M.unpack(*M.pack(m, b"\x7fELF-object"))[2] == b""  # no library (no linker for this target)
    with pytest.raises(M.ManifestError):
        M.unpack(dict(meta, library_size=len(payload)), payload)
    with pytest.raises(M.ManifestError):
        M.unpack(dict(meta, library_size=-1), payload)
    assert all(not a.flags.writeable and a.flags.c_contiguous for a in m2.arrays)
    with pytest.raises(M.ManifestError):
        M.unpack(meta, payload[:-1])
    with pytest.raises(M.ManifestError):
        M.unpack(dict(meta, consts=[[1, 7]]), payload)
    with pytest.raises(M.ManifestError):
        M.unpack(dict(meta, outputs=[[None, ["file", 0], [3], "<f8"]]), payload)
    with pytest.raises(M.ManifestError):
        M.unpack(dict(meta, sites=[[1, 2, None]]), payload)


# -- a fresh process


CHILD = textwrap.dedent("""\
    import json, os, sys
    import numpy as np
    import jitensor

    @jitensor.jit
    def f(x, y):
        return np.sqrt(np.abs(x * y)) + np.float32(0.5), (x - y).sum()

    x = np.linspace(-1, 1, 4096, dtype=np.float32)
    y = np.cos(x)
    r = f(x, y)
    ok = np.allclose(r[0], np.sqrt(np.abs(x * y)) + np.float32(0.5)) and np.allclose(r[1], (x - y).sum(), rtol=1e-5)
    heavy = ("jitensor.graph.passes.fuse", "jitensor.loop.lower", "jitensor.loop.schedule", "jitensor.codegen.llvm")
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":  # shared libraries: no LLVM at all
        heavy += ("llvmlite",)
    print(json.dumps({"ok": bool(ok), "disk_hits": f.cache_info().disk_hits,
                      "imported": [m for m in heavy if m in sys.modules]}))
""")


def test_fresh_process_disk_hit_imports_no_compiler(cache_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITENSOR_")}
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])
    env[dc.ENV_DIR] = str(cache_dir)
    outs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cold, hit = outs
    assert cold["ok"] and cold["disk_hits"] == 0 and cold["imported"]
    assert hit["ok"] and hit["disk_hits"] == 1 and hit["imported"] == [], hit
