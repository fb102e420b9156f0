"""The differential fuzzer (tests/fuzzgen.py) on a fixed seed: random numpy programs at sizes around every
threshold of the compiler, compared with numpy. Any mismatch prints a self-contained reproducer.

The budget runs in every test run (about a minute on two cores; compilation dominates). The long mode:
    JITENSOR_FUZZ_PROGRAMS=10000 python -m pytest -q tests/test_fuzz.py -m slow
or  python tests/fuzzgen.py --programs 10000 --seed 1
"""
from __future__ import annotations

import os

import pytest

import fuzzgen

BUDGET = 160  # programs: ~55 s of CPU (80 took 26 s user time, provisional: measured on a busy machine)


def _run(programs: int, seed: int):
    res = fuzzgen.fuzz(programs, seed)
    counts = res["counts"]
    print("fuzz summary:", counts)
    for u in res["unsupported"]:
        print("unsupported:", u)
    assert not res["mismatches"], f"{counts['mismatch']} of {counts['programs']} programs differ from numpy:\n\n" \
                                  + "\n\n".join(res["mismatches"])
    assert counts["programs"] == programs


def test_fuzz_budget():
    _run(BUDGET, seed=20_000)


@pytest.mark.parametrize("size", ["small", "threshold", "large"])
def test_generator_reads_and_straddles_thresholds(size):
    """The generator builds valid programs of each size class, and its sizes move with the compiler's constants."""
    from jitensor.graph.passes import split
    th = fuzzgen.thresholds()
    assert {split.MIN_ELEMENTS - 1, split.MIN_ELEMENTS, split.MIN_ELEMENTS + 1} <= set(th["split.MIN_ELEMENTS"])
    prog = fuzzgen.generate(7, size)
    assert prog.body and prog.ret
    text = prog.reproducer()
    assert "def f(" in text and "default_rng(7)" in text
    assert fuzzgen.Program.from_reproducer(text).source() == prog.source()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("JITENSOR_FUZZ_PROGRAMS"), reason="long mode: set JITENSOR_FUZZ_PROGRAMS")
def test_fuzz_long():
    _run(int(os.environ["JITENSOR_FUZZ_PROGRAMS"]), seed=int(os.environ.get("JITENSOR_FUZZ_SEED", "1")))
