"""jitensor.onnx.artifact: a compiled model saved to a tar file and loaded back without compiling; damaged,
foreign and mismatched artifacts refused with one-line OnnxErrors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jitensor
import jitensor.onnx
from jitensor.errors import OnnxError
from jitensor.onnx import artifact

from onnx_models import members, mlp, reference, rewrite_metadata, write_tar

REPO_ROOT = Path(jitensor.__file__).resolve().parents[1]
X = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(artifact path, model proto, W, B): the MLP compiled for x[4, 8]."""
    model, w, b = mlp()
    path = tmp_path_factory.mktemp("art") / "mlp.tar"
    m = artifact.save(jitensor.onnx.compile(model), {"x": X}, path)
    assert isinstance(m, artifact.CompiledModel)
    return path, model, w, b


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_round_trip_equals_the_onnx_function(saved):
    path, model, w, b = saved
    net = artifact.load(path)
    got = net.run({"x": X})
    want = jitensor.onnx.compile(model).run({"x": X})
    assert list(got) == ["y", "s"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    y, s = reference(X, w, b)
    np.testing.assert_allclose(got["y"], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net(X)[1], s, rtol=1e-5, atol=1e-4)
    assert net(x=X)[0].shape == (4, 16)


def test_metadata(saved):
    path, model, *_ = saved
    meta = artifact.load(path).metadata
    fn = jitensor.onnx.compile(model)
    graph, _, _ = fn._jit._traced((X,), {})
    assert meta["jitensor"] == jitensor.__version__
    assert meta["model"]["sha256"] == fn.sha256
    assert meta["graph"] == graph.fingerprint()
    assert meta["inputs"] == [{"name": "x", "dtype": "float32", "shape": [4, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["y", "s"]
    from jitensor.target import host
    assert meta["target"] == host().key()
    assert set(meta["parts"]) <= set(artifact.PARTS)
    assert list(members(path))[-1] == "SHA256SUMS"


def test_load_does_not_compile(saved, monkeypatch):
    import jitensor.codegen.llvm as cg
    import jitensor.compiler as comp

    def boom(*a, **k):
        raise AssertionError("compiled while loading an artifact")
    for mod, name in ((cg, "compile_object"), (cg, "build_module"), (comp, "front_end"), (comp, "compile_graph")):
        monkeypatch.setattr(mod, name, boom)
    path, _, w, b = saved
    net = artifact.load(path)
    np.testing.assert_allclose(net.run({"x": X})["y"], reference(X, w, b)[0], rtol=1e-5, atol=1e-5)


def test_load_in_a_new_process_imports_no_compiler(saved):
    path, _, w, b = saved
    code = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from jitensor.onnx import artifact
        t = time.perf_counter()
        net = artifact.load({str(path)!r})
        t = time.perf_counter() - t
        y = net.run({{"x": np.ones((4, 8), np.float32)}})["y"]
        heavy = [m for m in ("jitensor.codegen.llvm", "jitensor.loop.lower", "jitensor.graph.passes")
                 if m in sys.modules]
        assert not heavy, heavy
        print(type(net.program.code).__name__, f"{{t:.3f}}", float(y.sum()))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert r.returncode == 0, r.stderr
    kind, seconds, total = r.stdout.split()
    want = reference(np.ones((4, 8), np.float32), w, b)[0].sum()
    assert abs(float(total) - want) < 1e-3 * max(1.0, abs(want))


@pytest.mark.parametrize("part", ["metadata.json", "manifest.json", "program.o", "program.so", "constants.bin",
                                  "SHA256SUMS"])
def test_a_changed_byte_in_any_part_is_refused(saved, tmp_path, part):
    src = saved[0]
    dst = tmp_path / "bad.tar"
    shutil.copy(src, dst)
    with tarfile.open(dst, "r:") as t:
        info = t.getmember(part)
    with open(dst, "r+b") as f:
        f.seek(info.offset_data + info.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(OnnxError) as e:
        artifact.load(dst)
    assert "damaged" in _one_line(e)


@pytest.mark.parametrize("part", ["metadata.json", "program.o", "program.so", "SHA256SUMS"])
def test_a_missing_part_is_refused(saved, tmp_path, part):
    parts = members(saved[0])
    del parts[part]
    write_tar(tmp_path / "bad.tar", parts)
    with pytest.raises(OnnxError) as e:
        artifact.load(tmp_path / "bad.tar")
    assert "missing" in _one_line(e) or "damaged" in str(e.value)


@pytest.mark.parametrize("extra", ["extra.bin", "program.o"])
def test_an_added_part_is_refused(saved, tmp_path, extra):
    path = tmp_path / "bad.tar"
    shutil.copy(saved[0], path)
    with tarfile.open(path, "a") as t:
        import io
        info = tarfile.TarInfo(extra)
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(OnnxError) as e:
        artifact.load(path)
    assert "damaged" in _one_line(e)


def test_not_an_artifact(tmp_path, saved):
    cases = {"text.tar": b"hello, not a tar file\n" * 50, "empty.tar": b""}
    data = saved[0].read_bytes()
    cases["truncated.tar"] = data[:len(data) // 2]
    cases["head.tar"] = data[:700]
    plain = tmp_path / "plain.tar"
    write_tar(plain, {"README": b"just a tar"})
    cases["plain.tar"] = plain.read_bytes()
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(OnnxError) as e:
            artifact.load(p)
        _one_line(e)
    with pytest.raises(OnnxError):
        artifact.load(tmp_path / "absent.tar")


def test_another_version_is_refused(saved, tmp_path):
    rewrite_metadata(saved[0], tmp_path / "old.tar", lambda m: m.update(jitensor="0.0.1"))
    with pytest.raises(OnnxError) as e:
        artifact.load(tmp_path / "old.tar")
    assert "jitensor 0.0.1" in _one_line(e)


def test_another_cpu_is_refused(saved, tmp_path):
    def other_cpu(m):
        m["target"]["cpu"] = "future-cpu"
        m["target"]["features"] += ",+not-a-real-feature"
    rewrite_metadata(saved[0], tmp_path / "cpu.tar", other_cpu)
    with pytest.raises(OnnxError) as e:
        artifact.load(tmp_path / "cpu.tar")
    assert "not-a-real-feature" in _one_line(e)
    rewrite_metadata(saved[0], tmp_path / "arm.tar", lambda m: m["target"].update(triple="aarch64-unknown-linux-gnu"))
    with pytest.raises(OnnxError) as e:
        artifact.load(tmp_path / "arm.tar")
    assert "aarch64" in _one_line(e)


def test_consistent_rewrite_of_metadata_alone_still_loads(saved, tmp_path):
    """The rewrite helper itself is sound: a harmless change passes every check."""
    rewrite_metadata(saved[0], tmp_path / "ok.tar", lambda m: m.update(created=0))
    assert artifact.load(tmp_path / "ok.tar").run({"x": X})["y"].shape == (4, 16)


def test_inputs_are_checked(saved):
    net = artifact.load(saved[0])
    bad = {"missing input 'x'": {}, "unexpected input 'z'": {"x": X, "z": X},
           "'x' has shape (4,9)": {"x": np.zeros((4, 9), np.float32)},
           "'x' has dtype float64": {"x": X.astype(np.float64)}}
    for what, feeds in bad.items():
        with pytest.raises(OnnxError) as e:
            net.run(feeds)
        assert what in _one_line(e)


def test_input_shapes():
    fn = jitensor.onnx.compile(mlp()[0])
    with pytest.raises(OnnxError, match="--input-shapes"):
        artifact.input_specs(fn)
    assert artifact.input_specs(fn, artifact.parse_shapes("x:3x8")) == [("x", np.dtype(np.float32), (3, 8))]
    for text, msg in (("x:3x9", "fixes it at 8"), ("x:3", "1 dimensions"), ("q:3x8", "not an input"),
                      ("x:3xz", "not dimensions"), ("3x8", "NAME:DIMS")):
        with pytest.raises(OnnxError, match=msg):
            artifact.input_specs(fn, artifact.parse_shapes(text))
