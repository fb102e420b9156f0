"""JITENSOR_PERF_MAP: loaded code is named in /tmp/perf-<pid>.map (here: a temporary directory) and kept
for annotation; the ELF reader behind it."""
import os

import numpy as np
import pytest

import jitensor
from jitensor.codegen import llvm, perfmap


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def perf_env(monkeypatch, tmp_path):
    """Perf map on, into tmp_path; the disk cache off (a load from disk would register too, but compiling
    is what users profile first). Returns the LoadedCode objects created during the test."""
    monkeypatch.setenv("JITENSOR_PERF_MAP", "1")
    monkeypatch.setenv("JITENSOR_DISABLE_CACHE", "1")
    monkeypatch.setattr(perfmap, "MAP_DIR", str(tmp_path))
    loaded = []
    init = llvm.LoadedCode.__init__

    def spy(self, *args):
        init(self, *args)
        loaded.append(self)

    monkeypatch.setattr(llvm.LoadedCode, "__init__", spy)
    return loaded


def map_lines(tmp_path):
    lines = (tmp_path / f"perf-{os.getpid()}.map").read_text().splitlines()
    return [(int(a, 16), int(s, 16), name) for a, s, name in (line.split() for line in lines)]


def test_map_names_entry_and_kernels(perf_env, tmp_path):
    before = len(perfmap.registered())
    x = np.random.default_rng(0).standard_normal((37, 53), dtype=np.float32)
    np.testing.assert_allclose(jitensor.jit(softmax)(x), softmax(x), rtol=1e-5, atol=1e-7)

    (code,) = perf_env
    lines = map_lines(tmp_path)
    assert all(name.startswith("jitensor:") and size > 0 for _, size, name in lines)

    def covering(addr):
        return [name for start, size, name in lines if start <= addr < start + size]

    assert covering(code.entry) == ["jitensor:jit_entry"]
    for i, k in enumerate(code.kernels):
        assert covering(k) == [f"jitensor:jit_k{i}"]

    (new,) = perfmap.registered()[before:]
    assert new.text_base + next(s.offset for s in new.symbols if s.name == "jit_entry") == code.entry
    assert [(new.text_base + s.offset, s.size, f"jitensor:{s.name}") for s in new.symbols] == lines


def test_elf_reader(perf_env):
    jitensor.jit(softmax)(np.ones((3, 5), np.float32))
    obj = perfmap.registered()[-1].obj
    syms = perfmap.text_symbols(obj)
    names = [s.name for s in syms]
    assert "jit_entry" in names and "jit_k0" in names
    assert all(s.size > 0 for s in syms)
    for s, nxt in zip(syms, syms[1:]):  # sorted, no overlaps
        assert s.offset + s.size <= nxt.offset
    with pytest.raises(ValueError, match="malformed"):
        perfmap.text_symbols(obj[: len(obj) // 2])


@pytest.mark.parametrize("junk", [b"", b"garbage" * 20, b"\x7fELF\x01\x01" + bytes(58), b"\x7fELF\x02\x01" + bytes(10)])
def test_elf_reader_rejects_junk(junk):
    with pytest.raises(ValueError):
        perfmap.text_symbols(junk)


def test_unwritable_map_warns_and_still_runs(perf_env, monkeypatch, tmp_path):
    monkeypatch.setattr(perfmap, "MAP_DIR", str(tmp_path / "missing"))
    monkeypatch.setattr(perfmap, "_warned", False)
    x = np.ones((5, 7), np.float32)
    with pytest.warns(RuntimeWarning, match="cannot write"):
        out = jitensor.jit(softmax)(x)
    np.testing.assert_allclose(out, softmax(x), rtol=1e-6)


def test_off_by_default(perf_env, monkeypatch, tmp_path):
    monkeypatch.setenv("JITENSOR_PERF_MAP", "0")
    before = len(perfmap.registered())
    jitensor.jit(softmax)(np.ones((6, 8), np.float32))
    assert len(perfmap.registered()) == before
    assert not (tmp_path / f"perf-{os.getpid()}.map").exists()
