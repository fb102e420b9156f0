"""Measured machine figures (jitensor/autotune/hardware.py): structure, the nominal mode, the JSON cache keyed by
target, refresh. Nothing here depends on the values measured (the machine running the tests is shared)."""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest

import jitensor.autotune.hardware as H
from jitensor.target import host


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(d))
    monkeypatch.delenv(H.ENV, raising=False)
    monkeypatch.setattr(H, "_memo", {})
    return d


@pytest.fixture
def fake(monkeypatch):
    """_measure replaced by a counter: figures of the right shape, no timing."""
    calls = []

    def measure(target):
        calls.append(target.key())
        figs = H._static(target)
        figs.update({n: float(len(calls)) for n in H._MEASURED})
        figs.update(measured=True, seconds=0.0)
        return figs
    monkeypatch.setattr(H, "_measure", measure)
    return calls


def _check_structure(h: dict, measured: bool):
    assert set(H.HARDWARE_NAMES) <= set(h)
    assert h["measured"] is measured
    assert h["target"] == host().key() or h["target"]["kind"] == "llvm"
    for n in H.HARDWARE_NAMES:
        assert isinstance(h[n], (int, float)), n
    x = H.hardware_features(measure=measured)
    assert x.dtype == np.float32 and x.shape == (len(H.HARDWARE_NAMES),)


def test_skip_gives_nominal_figures(cache_dir, monkeypatch, fake):
    monkeypatch.setenv(H.ENV, "skip")
    h = H.hardware()
    _check_structure(h, measured=False)
    assert all(math.isfinite(h[n]) and h[n] > 0 for n in H.HARDWARE_NAMES)
    assert h["l1d_kib"] == host().l1d / 1024 and h["vector_bits"] == host().vector_bits
    assert np.isfinite(H.hardware_features()).all()
    assert not fake and not os.path.exists(H.path())  # nothing measured, nothing stored
    assert H.hardware(measure=False) == h


def test_measured_once_then_cached(cache_dir, monkeypatch, fake):
    h = H.hardware()
    assert len(fake) == 1 and h["bw_l1_gbs"] == 1.0
    _check_structure(h, measured=True)
    assert len(fake) == 1  # (hardware_features read the memo)
    with open(H.path()) as f:
        data = json.load(f)
    assert list(data["machines"]) == [H.machine_key(host())]
    assert H.hardware() == h and len(fake) == 1
    # another process: the memo is empty, the file answers
    monkeypatch.setattr(H, "_memo", {})
    assert H.hardware() == h and len(fake) == 1
    h["bw_l1_gbs"] = -5.0  # a caller's copy: never the memo's
    assert H.hardware()["bw_l1_gbs"] == 1.0


def test_refresh_measures_again(cache_dir, monkeypatch, fake):
    assert H.hardware()["fma_gflops"] == 1.0
    assert H.hardware(refresh=True)["fma_gflops"] == 2.0 and len(fake) == 2
    monkeypatch.setattr(H, "_memo", {})
    assert H.hardware()["fma_gflops"] == 2.0 and len(fake) == 2  # the file holds the new figures


def test_keyed_by_target(cache_dir, monkeypatch, fake):
    mine = H.hardware()
    other = replace(host(), cpu="some-other-cpu", l2=4 << 20)
    theirs = H.hardware(other)
    assert len(fake) == 2 and fake[1] == other.key()
    assert theirs["target"] == other.key() and theirs["l2_kib"] == 4096 and theirs["l3_kib"] >= 8192
    assert H.machine_key(other) != H.machine_key(host())
    with open(H.path()) as f:
        assert set(json.load(f)["machines"]) == {H.machine_key(host()), H.machine_key(other)}
    monkeypatch.setattr(H, "_memo", {})
    assert H.hardware() == mine and H.hardware(other) == theirs and len(fake) == 2


def test_a_bad_file_is_measured_over(cache_dir, monkeypatch, fake):
    os.makedirs(cache_dir, exist_ok=True)
    with open(H.path(), "w") as f:
        f.write("{not json")
    assert H.hardware()["bw_mem_gbs"] == 1.0 and len(fake) == 1
    with open(H.path()) as f:
        json.load(f)  # rewritten whole
    monkeypatch.setattr(H, "_memo", {})
    with open(H.path(), "w") as f:  # an entry missing figures is not trusted
        json.dump({"format": 1, "machines": {H.machine_key(host()): {"bw_l1_gbs": 3.0}}}, f)
    assert H.hardware()["bw_l1_gbs"] == 2.0 and len(fake) == 2


def test_real_measurement(cache_dir):
    """The microbenchmark itself, once: every figure present and a number (values are the machine's)."""
    h = H.hardware(refresh=True)
    _check_structure(h, measured=True)
    for n in ("bw_l1_gbs", "bw_l2_gbs", "bw_l3_gbs", "bw_mem_gbs", "fma_gflops"):
        assert math.isfinite(h[n]) and h[n] > 0, n
    assert math.isnan(h["handoff_us"]) if h["threads"] < 2 else h["handoff_us"] >= 0
    assert h["seconds"] > 0
    with open(H.path()) as f:
        stored = json.load(f)["machines"][H.machine_key(host())]
    assert stored["bw_l1_gbs"] == h["bw_l1_gbs"]
