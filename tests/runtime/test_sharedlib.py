"""Disk hits through shared libraries: `codegen/elf.py` links a program's object code into an ELF shared
library when it is compiled, the disk cache keeps it beside the entry, and a fresh process loads it with
`dlopen` (`runtime/sharedlib.py`) without importing llvmlite.

Fresh processes (children) compile, then load from the cache: vector math (inline) and libm's `sinf` (an
external function bound through the library's GOT), a runtime check that raises a jitensor error, a kernel
large enough for the native thread pool (whose scheduler is loaded from its own library too) and a GEMM
template; the loading child must not import llvmlite and must give the compiled child's bits. A damaged
library file is replaced from the verified entry and never mapped; a damaged library inside an entry fails
the entry's checksum and is recompiled; without a library (no linker for the object, JITENSOR_SHARED_LIBS=0,
a dlopen that fails) programs load their object code with LLVM as before. The linker itself: well-formed
output, absolute and GOT relocations, what it refuses.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import jitensor
import jitensor.runtime.diskcache as dc
from jitensor.errors import CacheWarning
from jitensor.runtime import manifest as M
from jitensor.runtime import sharedlib
from jitensor.runtime.diskcache import DiskCache

NATIVE = sys.platform.startswith("linux") and os.uname().machine == "x86_64"
pytestmark = pytest.mark.skipif(not NATIVE, reason="jitensor writes shared libraries for x86-64 Linux")

REPO_ROOT = Path(dc.__file__).resolve().parents[2]
MOD = "jtk_shared_mod"

MODULE_SRC = textwrap.dedent("""\
    import numpy as np
    import jitensor


    @jitensor.jit
    def transcendental(x):
        # tanh and exp: jitensor's inline vector math; sin of large arguments: libm's sinf (an external function)
        return np.tanh(x) * np.exp(-x * x) + np.sin(x * 1.0e6)


    @jitensor.jit
    def take(x, idx):
        return np.take(x, idx) * 2.0


    @jitensor.jit
    def big(x):
        return np.sqrt(np.abs(x)) * 2.0 + x


    @jitensor.jit
    def mm(a, b):
        return np.maximum(a @ b, 0.0)
""")
FUNCS = ("transcendental", "take", "big", "mm")

CHILD = textwrap.dedent("""\
    import json, os, sys, warnings
    import numpy as np
    moddir, modname, outdir = sys.argv[1:4]
    sys.path.insert(0, moddir)
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        from jitensor.errors import CacheWarning, IndexOutOfBoundsError
        from jitensor.runtime import threads
        m = __import__(modname)
        x = np.linspace(-3, 3, 4096, dtype=np.float32)
        res = {"transcendental": m.transcendental(x), "take": m.take(x, np.array([0, 5, 4095]))}
        try:
            m.take(x, np.array([0, 5, 4096]))  # the same signature: the same program, an index out of range
            err = None
        except IndexOutOfBoundsError as e:
            err = str(e)
        X = np.linspace(-1, 1, 1 << 20, dtype=np.float32)
        first = m.big(X)  # the first parallel program starts building the pool and runs on this thread
        if threads._building is not None:
            threads._building.join(60)
        res["big"] = m.big(X)  # on the pool
        same_big = bool(np.array_equal(first, res["big"]))
        a = np.linspace(-1, 1, 96 * 80, dtype=np.float32).reshape(96, 80)
        b = np.cos(np.arange(80 * 72, dtype=np.float32)).reshape(80, 72)
        res["mm"] = m.mm(a, b)
        for k, v in res.items():
            np.save(os.path.join(outdir, k + ".npy"), v)
        pool = threads._pool
        maps = []
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].endswith(".so") and os.environ["JITENSOR_CACHE_DIR"] in parts[5]:
                    maps.append([parts[5], int(parts[4])])
        fns = {f: getattr(m, f) for f in ("transcendental", "take", "big", "mm")}
        out = {
            "disk_hits": {k: f.cache_info().disk_hits for k, f in fns.items()},
            "codes": {k: type(next(iter(f._compiled.values())).program.code).__name__ for k, f in fns.items()},
            "pool": type(pool.native.engine).__name__ if pool is not None and pool.native is not None else None,
            "llvmlite": "llvmlite" in sys.modules,
            "compiler": [n for n in ("jitensor.codegen.llvm", "jitensor.loop.lower") if n in sys.modules],
            "error": err,
            "same_big": same_big,
            "maps": maps,
        }
    out["cache_warnings"] = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    out["other_warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught
                             if not issubclass(w.category, CacheWarning)]
    print(json.dumps(out))
""")


def _env(cache_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITENSOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env["JITENSOR_CACHE_DIR"] = str(cache_dir)
    env["JITENSOR_NUM_THREADS"] = "2"  # a pool on any machine
    env.update(extra)
    return env


def run_child(moddir, cache_dir, outdir, **env) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-B", "-c", CHILD, str(moddir), MOD, str(outdir)], capture_output=True,
                       text=True, timeout=180, env=_env(cache_dir, **env))
    assert r.returncode == 0, f"child exited with {r.returncode}:\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["other_warnings"] == [], out
    assert out["same_big"], out
    return out


def results(outdir) -> dict:
    return {f: np.load(outdir / f"{f}.npy") for f in FUNCS}


def check_numpy(res):
    src = {}
    exec(MODULE_SRC.replace("@jitensor.jit\n", ""), src)
    x = np.linspace(-3, 3, 4096, dtype=np.float32)
    X = np.linspace(-1, 1, 1 << 20, dtype=np.float32)
    a = np.linspace(-1, 1, 96 * 80, dtype=np.float32).reshape(96, 80)
    b = np.cos(np.arange(80 * 72, dtype=np.float32)).reshape(80, 72)
    np.testing.assert_allclose(res["transcendental"], src["transcendental"](x), rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(res["take"], src["take"](x, np.array([0, 5, 4095])))
    np.testing.assert_allclose(res["big"], src["big"](X), rtol=1e-6)
    np.testing.assert_allclose(res["mm"], src["mm"](a, b), rtol=1e-4, atol=1e-4)


def assert_same_bits(a: dict, b: dict):
    for f in FUNCS:
        assert a[f].dtype == b[f].dtype and np.array_equal(a[f], b[f]), f


def key_of(cache_dir: Path, fn: str) -> str:
    [e] = [e for e in DiskCache(str(cache_dir)).entries() if e["name"] == f"{MOD}.{fn}"]
    return e["key"]


def library_of(cache_dir: Path, key: str) -> bytes:
    entry = DiskCache(str(cache_dir)).load(key)
    return M.unpack(entry.meta["manifest"], entry.payload)[2]


def side_files(cache_dir: Path, key: str) -> list[Path]:
    return sorted(cache_dir.glob(f"{key}.*.so"))


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A cache a compiling child filled, its results, and a second child's (loading) run on a copy of it."""
    base = tmp_path_factory.mktemp("shared")
    moddir = base / "mod"
    moddir.mkdir()
    (moddir / f"{MOD}.py").write_text(MODULE_SRC)
    cache = base / "cache"
    cold = run_child(moddir, cache, base / "cold")
    return moddir, cache, cold, results(base / "cold")


def copy_cache(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- fresh processes


def test_compiling_process_stores_libraries(stored):
    _, cache, cold, res = stored
    assert cold["disk_hits"] == dict.fromkeys(FUNCS, 0) and cold["cache_warnings"] == []
    assert set(cold["codes"].values()) == {"LoadedCode"}  # compiled: loaded with LLVM, which compiled them
    assert cold["error"] and "np.take(x, idx)" in cold["error"]
    check_numpy(res)
    for f in FUNCS:
        key = key_of(cache, f)
        lib = library_of(cache, key)
        assert lib[:4] == b"\x7fELF" and struct.unpack_from("<H", lib, 16)[0] == 3  # ET_DYN
        [side] = side_files(cache, key)
        assert side.read_bytes() == lib
    assert b"sinf\0" in library_of(cache, key_of(cache, "transcendental"))  # an external function, bound by us
    assert len(list(cache.glob("host-*.jtr"))) == 1
    # the scheduler's entry (and its library) too
    assert any(e["name"] == "jitensor thread pool" for e in DiskCache(str(cache)).entries())


def test_fresh_process_loads_libraries_without_llvmlite(stored, tmp_path):
    moddir, src, _, want = stored
    cache = copy_cache(src, tmp_path / "cache")
    hit = run_child(moddir, cache, tmp_path / "hit")
    assert hit["disk_hits"] == dict.fromkeys(FUNCS, 1), hit
    assert hit["llvmlite"] is False and hit["compiler"] == [], hit
    assert set(hit["codes"].values()) == {"SharedProgramCode"}, hit
    assert hit["pool"] == "SharedCode", hit  # the scheduler, from its library too
    assert hit["cache_warnings"] == []
    assert hit["error"] and "np.take(x, idx)" in hit["error"]  # the error word, through the library
    assert_same_bits(want, results(tmp_path / "hit"))  # the same machine code: the same bits
    mapped = {Path(p).name for p, _ in hit["maps"]}
    assert {side_files(cache, key_of(cache, f))[0].name for f in FUNCS} <= mapped


def _flip_middle(b: bytes) -> bytes:
    i = len(b) // 2
    return b[:i] + bytes([b[i] ^ 0xFF]) + b[i + 1:]


SIDE_FAULTS = {
    "flipped-byte": lambda p, other: p.write_bytes(_flip_middle(p.read_bytes())),
    "truncated": lambda p, other: p.write_bytes(p.read_bytes()[:100]),
    "garbage": lambda p, other: p.write_bytes(np.random.default_rng(1).bytes(p.stat().st_size)),
    "another-library": lambda p, other: p.write_bytes(other.read_bytes()),  # a valid library, of another program
    "symlink": lambda p, other: (p.unlink(), p.symlink_to(other)),
}


@pytest.mark.parametrize("fault", list(SIDE_FAULTS))
def test_damaged_library_file_is_replaced_never_loaded(stored, tmp_path, fault):
    moddir, src, _, want = stored
    cache = copy_cache(src, tmp_path / "cache")
    key = key_of(cache, "transcendental")
    [side] = side_files(cache, key)
    [other] = side_files(cache, key_of(cache, "mm"))
    SIDE_FAULTS[fault](side, other)
    damaged = side.lstat().st_ino
    hit = run_child(moddir, cache, tmp_path / "hit")
    assert hit["disk_hits"] == dict.fromkeys(FUNCS, 1) and hit["llvmlite"] is False, hit
    assert len(hit["cache_warnings"]) == 1 and str(side) in hit["cache_warnings"][0], hit
    assert_same_bits(want, results(tmp_path / "hit"))
    assert not side.is_symlink() and side.read_bytes() == library_of(cache, key)  # restored from the entry
    inodes = [ino for p, ino in hit["maps"] if p == str(side)]
    assert inodes and set(inodes) == {side.stat().st_ino} and damaged not in inodes  # the damaged file was never mapped


def test_missing_library_file_is_rewritten_silently(stored, tmp_path):
    moddir, src, _, want = stored
    cache = copy_cache(src, tmp_path / "cache")
    for f in cache.glob("*.so"):
        f.unlink()
    hit = run_child(moddir, cache, tmp_path / "hit")
    assert hit["disk_hits"] == dict.fromkeys(FUNCS, 1) and hit["llvmlite"] is False and hit["cache_warnings"] == []
    assert_same_bits(want, results(tmp_path / "hit"))
    assert all(side_files(cache, key_of(cache, f)) for f in FUNCS)


def test_damaged_library_inside_an_entry_is_recompiled(stored, tmp_path):
    moddir, src, _, want = stored
    cache = copy_cache(src, tmp_path / "cache")
    key = key_of(cache, "transcendental")
    path = cache / f"{key}.jtk"
    entry = DiskCache(str(cache)).load(key)
    m = entry.meta["manifest"]
    data = path.read_bytes()
    lib_at = len(data) - len(entry.payload) + m["object_size"]  # the library follows the object code
    i = lib_at + m["library_size"] // 2
    path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    hit = run_child(moddir, cache, tmp_path / "hit")
    assert hit["disk_hits"] == {"transcendental": 0, "take": 1, "big": 1, "mm": 1}, hit
    assert len(hit["cache_warnings"]) == 1 and "payload checksum" in hit["cache_warnings"][0]
    assert_same_bits(want, results(tmp_path / "hit"))
    again = run_child(moddir, cache, tmp_path / "again")  # stored again, with its library
    assert again["disk_hits"] == dict.fromkeys(FUNCS, 1) and again["llvmlite"] is False, again
    assert again["cache_warnings"] == []


def test_without_libraries_programs_load_their_object_code(stored, tmp_path):
    """JITENSOR_SHARED_LIBS=0 while compiling: entries without a library; a later process loads the object
    code with LLVM (the path of a machine where no library can be written), with the same bits."""
    moddir, _, _, want = stored
    cache = tmp_path / "cache"
    cold = run_child(moddir, cache, tmp_path / "cold", JITENSOR_SHARED_LIBS="0")
    assert cold["disk_hits"] == dict.fromkeys(FUNCS, 0)
    assert list(cache.glob("*.so")) == []
    assert all(library_of(cache, key_of(cache, f)) == b"" for f in FUNCS)
    hit = run_child(moddir, cache, tmp_path / "hit")
    assert hit["disk_hits"] == dict.fromkeys(FUNCS, 1) and hit["cache_warnings"] == [], hit
    assert set(hit["codes"].values()) == {"LoadedCode"} and hit["llvmlite"] is True
    assert hit["error"] and "np.take(x, idx)" in hit["error"]
    assert_same_bits(want, results(tmp_path / "hit"))
    # and a process that does not load libraries loads the object code of entries that have one
    off = run_child(moddir, copy_cache(stored[1], tmp_path / "cache2"), tmp_path / "off", JITENSOR_SHARED_LIBS="0")
    assert off["disk_hits"] == dict.fromkeys(FUNCS, 1) and set(off["codes"].values()) == {"LoadedCode"}
    assert_same_bits(want, results(tmp_path / "off"))


def test_wrong_host_record_is_corrected_by_a_compile(stored, tmp_path):
    """A host record that verifies but does not describe this machine (another CPU's features) only costs a
    miss: the compiling process checks it against LLVM, keys and compiles with LLVM's values, fixes the record."""
    import jitensor.target as T
    moddir, _, _, want = stored
    cache = tmp_path / "cache"
    name = T._record_name()
    assert name
    real, tools = T._detect()
    bogus = dict(real.key(), cpu="bogus-cpu", features="+bogus")
    DiskCache(str(cache)).store_record(name, {"name": "jitensor host target", "target": bogus, "toolchain": tools})
    cold = run_child(moddir, cache, tmp_path / "cold")
    assert cold["disk_hits"] == dict.fromkeys(FUNCS, 0)
    assert_same_bits(want, results(tmp_path / "cold"))
    assert DiskCache(str(cache)).load_record(name)["target"] == real.key()
    hit = run_child(moddir, cache, tmp_path / "hit")
    assert hit["disk_hits"] == dict.fromkeys(FUNCS, 1) and hit["llvmlite"] is False, hit


# ----------------------------------------------------------------------------- in this process


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    for var in (dc.ENV_DISABLE, dc.ENV_MAX_BYTES, "JITENSOR_SHARED_LIBS"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "cache"
    monkeypatch.setenv(dc.ENV_DIR, str(d))
    monkeypatch.setattr(sharedlib, "_disabled", None)
    return d


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def _code(jf):
    (c,) = jf._compiled.values()
    return c.program.code


def test_no_linker_falls_back_to_object_code(cache_dir, monkeypatch):
    import jitensor.codegen.elf as elf

    def no_linker(obj):
        raise elf.LinkError("no linker here")
    monkeypatch.setattr(elf, "link", no_linker)
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    want = jitensor.jit(gelu)(x)
    assert list(cache_dir.glob("*.so")) == []
    second = jitensor.jit(gelu)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        got = second(x)
    assert second.cache_info().disk_hits == 1 and type(_code(second)).__name__ == "LoadedCode"
    np.testing.assert_array_equal(got, want)


def test_dlopen_failure_falls_back_to_object_code(cache_dir, monkeypatch):
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    want = jitensor.jit(gelu)(x)
    second = jitensor.jit(gelu)
    second(x)
    assert type(_code(second)).__name__ == "SharedProgramCode"

    class NoDlopen:  # a loader that refuses files (a noexec mount, a policy), but finds the process's symbols
        def __getattr__(self, name):
            return getattr(sharedlib._B_real, name)

        @staticmethod
        def load_library(path, flags=0):
            if path is not None:
                raise OSError(f"cannot dlopen {path}: failed to map segment from shared object")
            return sharedlib._B_real.load_library(path, flags)
    monkeypatch.setattr(sharedlib, "_B_real", sharedlib._B, raising=False)
    monkeypatch.setattr(sharedlib, "_B", NoDlopen())
    third = jitensor.jit(gelu)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        got = third(x)
    assert third.cache_info().disk_hits == 1 and type(_code(third)).__name__ == "LoadedCode"
    np.testing.assert_array_equal(got, want)
    assert not sharedlib.usable() and "dlopen failed" in sharedlib.disabled_reason()


def test_entry_whose_library_is_not_a_library_loads_its_object_code(cache_dir):
    """A verified entry (say, written by a buggy jitensor) whose library bytes are not a shared library for
    this machine: checked before dlopen, never mapped; the object code loads instead."""
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    want = jitensor.jit(gelu)(x)
    disk = DiskCache(str(cache_dir))
    [e] = disk.entries()
    entry = disk.load(e["key"])
    m = entry.meta["manifest"]
    n_obj, n_lib = m["object_size"], m["library_size"]
    bad = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00" + np.random.default_rng(3).bytes(n_lib - 18)  # ET_EXEC
    payload = entry.payload[:n_obj] + bad + entry.payload[n_obj + n_lib:]
    os.unlink(e["path"])
    for f in cache_dir.glob("*.so"):
        f.unlink()
    disk.store(e["key"], payload, dict(entry.meta), side=bad)
    second = jitensor.jit(gelu)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        got = second(x)
    assert second.cache_info().disk_hits == 1 and type(_code(second)).__name__ == "LoadedCode"
    np.testing.assert_array_equal(got, want)
    assert sharedlib.usable()  # a bad library is that entry's problem, not the process's
    with pytest.raises(sharedlib.SharedLibError):
        sharedlib.check_image(bad)
    with pytest.raises(sharedlib.SharedLibError):
        sharedlib.check_image(b"\x7fELF")


def test_all_mode_loads_compiled_programs_from_their_library(cache_dir, monkeypatch):
    monkeypatch.setenv("JITENSOR_SHARED_LIBS", "all")
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    jf = jitensor.jit(gelu)
    np.testing.assert_allclose(jf(x), gelu(x), rtol=3e-5, atol=3e-6)
    assert jf.cache_info().disk_hits == 0 and type(_code(jf)).__name__ == "SharedProgramCode"


def test_pool_loads_its_scheduler_from_the_library(cache_dir, monkeypatch):
    from jitensor.runtime import threads
    threads.Pool(2)  # compiles the scheduler (or loads it), stores it
    p = threads.Pool(3)  # from the disk cache: its library
    assert type(p.native.engine).__name__ == "SharedCode"
    monkeypatch.setattr(threads, "_pool", p)
    f = jitensor.jit(lambda x: x + 1.0)
    for n in (1 << 18, (1 << 18) + 17):
        x = np.arange(n, dtype=np.float64)
        for _ in range(10):
            np.testing.assert_array_equal(f(x), x + 1.0)
    assert all(c.program._parallel for c in f._compiled.values())  # both went to the pool


# ----------------------------------------------------------------------------- the linker


def _object(ir_text: str, reloc: str = "pic") -> bytes:
    from jitensor.runtime.loader import binding
    from jitensor.target import host
    llvm = binding()
    t = host()
    m = llvm.parse_assembly(ir_text)
    m.triple = t.triple
    tm = llvm.Target.from_triple(t.triple).create_target_machine(cpu=t.cpu, features=t.features, opt=2,
                                                                  reloc=reloc, codemodel="default")
    return tm.emit_object(m)


def _elf(so: bytes) -> dict:
    """Program headers and dynamic tags of an ELF64 shared object."""
    phoff, = struct.unpack_from("<Q", so, 0x20)
    phnum, = struct.unpack_from("<H", so, 0x38)
    phs = [struct.unpack_from("<IIQQQQQQ", so, phoff + 56 * i) for i in range(phnum)]
    dyn = [p for p in phs if p[0] == 2][0]
    tags = {}
    for i in range(dyn[5] // 16):
        tag, val = struct.unpack_from("<qQ", so, dyn[2] + 16 * i)
        tags.setdefault(tag, []).append(val)
    return {"type": struct.unpack_from("<H", so, 16)[0], "phdrs": phs, "dynamic": tags}


def _pool_object() -> bytes:
    from jitensor.codegen.llvm import compile_object
    from jitensor.runtime import nativepool
    from jitensor.target import host
    return compile_object(nativepool.build_module(host().triple), host())[0]


def test_linked_library_is_well_formed(tmp_path):
    from jitensor.codegen.elf import link
    obj = _pool_object()
    so = link(obj)
    assert link(obj) == so  # deterministic: concurrent writers of one entry write the same file
    e = _elf(so)
    assert e["type"] == 3
    kinds = [p[0] for p in e["phdrs"]]
    assert kinds.count(1) == 2 and 2 in kinds and 0x6474E551 in kinds
    stack = [p for p in e["phdrs"] if p[0] == 0x6474E551][0]
    assert stack[1] & 1 == 0  # no executable stack
    for p in e["phdrs"]:
        if p[0] == 1:
            assert p[7] % 4096 == 0 and (p[3] - p[2]) % p[7] == 0
            assert p[1] & 3 != 3  # never writable and executable
    assert 1 not in e["dynamic"] and 14 not in e["dynamic"] and 22 not in e["dynamic"]  # NEEDED, SONAME, TEXTREL
    for name in (b"jtp_run\0", b"jtp_worker\0", b"jit_imports\0", b"jit_got\0", b"syscall\0"):
        assert name in so
    if shutil.which("readelf"):  # binutils' opinion, where it is installed
        path = tmp_path / "pool.so"
        path.write_bytes(so)
        r = subprocess.run(["readelf", "-W", "-a", str(path)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "warning" not in r.stderr.lower() and "error" not in r.stderr.lower(), r.stderr
        assert "jtp_run" in r.stdout and "GNU_STACK" in r.stdout


LOCAL_RELOCS_IR = """
@environ = external global ptr
@counter = global i64 5

define internal i64 @one() noinline {
  ret i64 11
}

define internal i64 @two() noinline {
  ret i64 22
}

@table = internal constant [2 x ptr] [ptr @one, ptr @two]

define i64 @pick(i64 %i) {
  %p = getelementptr [2 x ptr], ptr @table, i64 0, i64 %i
  %f = load ptr, ptr %p
  %r = call i64 %f()
  ret i64 %r
}

define ptr @env_address() {
  ret ptr @environ
}

define i64 @get_counter() {
  %v = load i64, ptr @counter
  ret i64 %v
}
"""


def test_absolute_and_got_relocations(tmp_path):
    """A table of function addresses (R_X86_64_64: RELATIVE relocations in a writable segment), an external
    variable (GOTPCREL: bound by the loader like a function) and a preemptible global (a GOT slot of our own)."""
    import _cffi_backend as B

    from jitensor.codegen.elf import link
    obj = _object(LOCAL_RELOCS_IR)
    so = link(obj)
    assert 0x6FFFFFF9 in _elf(so)["dynamic"]  # RELACOUNT: relative relocations for the table and the GOT slot
    path = tmp_path / "relocs.so"
    path.write_bytes(so)
    code = sharedlib.SharedCode(str(path), ["pick", "env_address", "get_counter"])
    i64 = B.new_primitive_type("int64_t")
    vp = B.new_pointer_type(B.new_void_type())
    pick = B.cast(B.new_function_type((i64,), i64, False), code.addresses[0])
    env = B.cast(B.new_function_type((), vp, False), code.addresses[1])
    counter = B.cast(B.new_function_type((), i64, False), code.addresses[2])
    assert pick(0) == 11 and pick(1) == 22
    assert sharedlib.as_int(env()) == sharedlib._resolve("environ")
    assert counter() == 5


def test_linker_refuses_what_it_does_not_handle():
    from jitensor.codegen.elf import LinkError, link
    with pytest.raises(LinkError):
        link(b"not an object")
    with pytest.raises(LinkError):
        link(link(_pool_object()))  # a shared object is not a relocatable object
    with pytest.raises(LinkError, match="thread-local"):
        link(_object("@t = thread_local global i64 0\ndefine i64 @f() {\n  %v = load i64, ptr @t\n  ret i64 %v\n}\n"))
    obj = bytearray(_pool_object())
    struct.pack_into("<H", obj, 18, 183)  # e_machine: AArch64
    with pytest.raises(LinkError):
        link(bytes(obj))
