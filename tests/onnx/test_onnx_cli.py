"""`jitensor compile | tune | run` on ONNX models: round trips, no recompilation on run, one-line errors with
exit status 1 (damaged or foreign artifacts, bad models, bad inputs), usage errors with 2, --help."""
from __future__ import annotations

import json
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
from jitensor.cli import main

from onnx_models import members, mlp, rewrite_metadata, write_tar

REPO_ROOT = Path(jitensor.__file__).resolve().parents[1]
X = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The MLP (symbolic batch) as a file, its inputs as an .npz, and an artifact compiled for x[3, 8]."""
    import onnx
    d = tmp_path_factory.mktemp("cli")
    model, *_ = mlp()
    onnx.save(model, d / "mlp.onnx")
    np.savez(d / "in.npz", x=X)
    assert main(["compile", "--target", "llvm", "--input-shapes", "x:3x8", "--output", str(d / "mlp.tar"),
                 str(d / "mlp.onnx")]) == 0
    return d


def _error(capsys, rc, *, expect=1) -> str:
    out, err = capsys.readouterr()
    assert rc == expect, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jitensor: error: "), err
    return lines[0]


def test_compile_run_round_trip(files, tmp_path, capsys):
    capsys.readouterr()
    assert main(["run", "--device", "cpu", "--inputs", str(files / "in.npz"), "--output", str(tmp_path / "out.npz"),
                 str(files / "mlp.tar")]) == 0
    want = jitensor.onnx.compile(str(files / "mlp.onnx")).run({"x": X})
    with np.load(tmp_path / "out.npz") as got:
        assert sorted(got.files) == ["s", "y"]
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_compile_prints_a_summary(files, tmp_path, capsys):
    rc = main(["compile", "--input-shapes", "x:2x8", "-o", str(tmp_path / "a.tar"), str(files / "mlp.onnx")])
    out = capsys.readouterr().out.strip()
    assert rc == 0 and out.count("\n") == 0
    assert "kernel" in out and " s, " in out and "KiB" in out


def test_run_does_not_compile(files, monkeypatch, capsys):
    import jitensor.codegen.llvm as cg
    import jitensor.compiler as comp

    def boom(*a, **k):
        raise AssertionError("compiled during `jitensor run`")
    for mod, name in ((cg, "compile_object"), (comp, "front_end"), (comp, "compile_graph")):
        monkeypatch.setattr(mod, name, boom)
    assert main(["run", "--print-time", "--repeat", "3", "--profile", str(files / "mlp.tar")]) == 0
    out = capsys.readouterr().out
    assert "latency over 3 runs: mean" in out and "median" in out and "std" in out
    assert "per-kernel times" in out and "k0_" in out and "SHARE" in out
    assert "y: float32[3,16]" in out  # no --output, no --inputs: random inputs, outputs summarized


def _flip(path, part):
    with tarfile.open(path, "r:") as t:
        info = t.getmember(part)
    with open(path, "r+b") as f:
        f.seek(info.offset_data + info.size // 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x80]))


@pytest.mark.parametrize("how", ["flip metadata.json", "flip manifest.json", "flip program.o", "flip program.so",
                                 "flip constants.bin", "flip SHA256SUMS", "remove program.o", "remove SHA256SUMS",
                                 "add extra.txt", "truncate", "version", "cpu"])
def test_damaged_or_foreign_artifact(files, tmp_path, capsys, how):
    art = tmp_path / "x.tar"
    verb, _, part = how.partition(" ")
    if verb == "flip":
        shutil.copy(files / "mlp.tar", art)
        _flip(art, part)
    elif verb in ("remove", "add"):
        parts = members(files / "mlp.tar")
        if verb == "remove":
            del parts[part]
        else:
            parts[part] = b"hello"
        write_tar(art, parts)
    elif verb == "truncate":
        art.write_bytes((files / "mlp.tar").read_bytes()[:3000])
    elif verb == "version":
        rewrite_metadata(files / "mlp.tar", art, lambda m: m.update(jitensor="9.9.9"))
    else:
        rewrite_metadata(files / "mlp.tar", art, lambda m: m["target"].update(
            cpu="other", features=m["target"]["features"] + ",+imaginary-isa"))
    msg = _error(capsys, main(["run", str(art)]))
    assert {"version": "jitensor 9.9.9", "cpu": "imaginary-isa"}.get(verb, "x.tar") in msg


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 10, "truncated"])
def test_malformed_model(files, tmp_path, capsys, content):
    if content == "truncated":
        content = (files / "mlp.onnx").read_bytes()[:150]
    (tmp_path / "bad.onnx").write_bytes(content)
    msg = _error(capsys, main(["compile", "-o", str(tmp_path / "a.tar"), str(tmp_path / "bad.onnx")]))
    assert "bad.onnx" in msg
    assert not (tmp_path / "a.tar").exists()


def test_symbolic_dimension_needs_input_shapes(files, tmp_path, capsys):
    msg = _error(capsys, main(["compile", "-o", str(tmp_path / "a.tar"), str(files / "mlp.onnx")]))
    assert "symbolic" in msg and "--input-shapes" in msg


@pytest.mark.parametrize("feeds,what", [({}, "missing input 'x'"), ({"x": X, "extra": X}, "unexpected input 'extra'"),
                                        ({"x": X[:2]}, "'x' has shape (2,8)"),
                                        ({"x": X.astype(np.float64)}, "'x' has dtype float64")])
def test_bad_inputs(files, tmp_path, capsys, feeds, what):
    np.savez(tmp_path / "bad.npz", **feeds)
    assert what in _error(capsys, main(["run", "--inputs", str(tmp_path / "bad.npz"), str(files / "mlp.tar")]))


def test_not_an_npz(files, tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert "bad.npz" in _error(capsys, main(["run", "-i", str(tmp_path / "bad.npz"), str(files / "mlp.tar")]))


def test_unsupported_target_and_device(files, tmp_path, capsys):
    assert "cuda" in _error(capsys, main(["compile", "--target", "cuda", "--input-shapes", "x:3x8",
                                          "-o", str(tmp_path / "a.tar"), str(files / "mlp.onnx")]))
    assert "another CPU" in _error(capsys, main(["compile", "--target", "llvm -mcpu=no-such-cpu", "--input-shapes",
                                                 "x:3x8", "-o", str(tmp_path / "a.tar"), str(files / "mlp.onnx")]))
    assert "cuda" in _error(capsys, main(["run", "--device", "cuda", str(files / "mlp.tar")]))


@pytest.mark.parametrize("command", ["compile", "tune", "run"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "--verbose" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    for argv in (["compile", "model.onnx"], ["run"], ["tune", "--trials", "x", "-o", "r.json", "m.onnx"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2


def test_verbose_prints_the_traceback(files, tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"")
    assert main(["compile", "--verbose", "-o", str(tmp_path / "a.tar"), str(tmp_path / "bad.onnx")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("jitensor: error: ")


def test_tune_then_compile_with_the_records(files, tmp_path, capsys):
    records = tmp_path / "records.json"
    assert main(["tune", "--trials", "4", "--input-shapes", "x:3x8", "-o", str(records), str(files / "mlp.onnx")]) == 0
    out = capsys.readouterr().out
    assert "tuned" in out and "wrote" in out
    lines = [json.loads(ln) for ln in records.read_text().splitlines()]
    assert lines and all("workload" in r and "steps" in r for r in lines)
    # Make the tried schedules win, so that compiling must use them (a 4-trial search rarely beats the default).
    tried = [r for r in lines if not r["default"] and r["error"] is None]
    assert tried
    for r in tried:
        r["costs"] = [1e-9] * len(r["costs"])
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    art = tmp_path / "tuned.tar"
    assert main(["compile", "--tuning-records", str(records), "--input-shapes", "x:3x8", "-o", str(art),
                 str(files / "mlp.onnx")]) == 0
    assert "from tuning records" in capsys.readouterr().out
    meta = json.loads(members(art)["metadata.json"])
    assert any(k["schedule"].startswith("record") for k in meta["kernels"])
    assert main(["run", "-i", str(files / "in.npz"), "-o", str(tmp_path / "o.npz"), str(art)]) == 0
    want = jitensor.onnx.compile(str(files / "mlp.onnx")).run({"x": X})
    with np.load(tmp_path / "o.npz") as got:
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
    (tmp_path / "junk.json").write_text("not records\n")
    _error(capsys, main(["compile", "--tuning-records", str(tmp_path / "junk.json"), "--input-shapes", "x:3x8",
                         "-o", str(art), str(files / "mlp.onnx")]))


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def test_subprocess_run_and_exit_codes(files, tmp_path):
    r = subprocess.run([sys.executable, "-m", "jitensor.cli", "run", "--print-time", "--repeat", "5", "-i",
                        str(files / "in.npz"), "-o", str(tmp_path / "o.npz"), str(files / "mlp.tar")],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "latency over 5 runs" in r.stdout and (tmp_path / "o.npz").exists()
    r = subprocess.run([sys.executable, "-m", "jitensor.cli", "run", str(tmp_path / "absent.tar")],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_other_commands_do_not_import_the_onnx_frontend():
    code = textwrap.dedent("""
        import sys
        import jitensor.cli
        p = jitensor.cli.build_parser()
        p.parse_args(["cache", "info"])
        assert "jitensor.onnx" not in sys.modules
        p.parse_args(["run", "a.tar"])
        assert "jitensor.onnx.cli" in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
