"""Building, timing and checking one kernel's candidates in a worker process: a crashing, hanging or wrong
candidate costs one failed trial (and a worker restart), never the caller."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import jitensor
from jitensor.compiler import lower_graph, manifest_of
from jitensor.loop.primitives import Parallel, TemplateKnobs, to_json
from jitensor.loop.schedule import default_schedule, default_steps
from jitensor.target import host
from jitensor.autotune import measure as M

FAULTY = [sys.executable, os.path.join(os.path.dirname(__file__), "fault_worker.py")]


def tasks_of(fn, *args):
    from jitensor.codegen.llvm import build_module, compile_object
    from jitensor.runtime.loader import LoadedCode
    from jitensor.runtime.program import Program
    t = host()
    graph, layouts, arrays = jitensor.jit(fn, cache=False)._traced(args, {})
    _, _, bufs, ks = lower_graph(graph, layouts)
    sk = [default_schedule(k, t) for k in ks]
    obj, _ = compile_object(build_module(sk, t), t)
    prog = Program(LoadedCode(obj, t, len(sk)), manifest_of(bufs, sk, graph, t))
    caps = M.capture(prog, arrays, sk)
    return [(k, M.Task(M.standalone(k), cap, to_json(default_steps(k, t)), t)) for k, cap in zip(ks, caps)]


def with_grain(steps, g):
    out = []
    for s in steps:
        if isinstance(s, Parallel):
            s = Parallel(s.loop, g)
        elif isinstance(s, TemplateKnobs):
            s = TemplateKnobs(tuple(dict(s.knobs, grain=g).items()))
        out.append(s)
    return out


def test_capture_gives_each_kernel_its_real_inputs():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    (k0, t0), (k1, t1) = tasks_of(lambda x: (x @ x.T).sum(axis=1), x)[:2]
    mm = next(v for v in t1.buffers.values() if v.size == 9)
    np.testing.assert_allclose(mm, (x @ x.T).ravel())  # the product as the second kernel reads it


def test_candidates_are_timed_and_checked():
    (k, task), = tasks_of(lambda x: np.tanh(x) * 2, np.linspace(-3, 3, 300_000, dtype=np.float32))
    m = M.Measurer(timeout=60, repeats=3, sample_seconds=0.002)
    m.add(0, task)
    try:
        costs, err = m.measure(0, task.default_steps)
        assert err is None and len(costs) == 3 and all(c > 0 for c in costs)
        costs, err = m.measure(0, [{"step": "vectorize", "loop": "nope", "lanes": 8}])
        assert costs is None and err.startswith("illegal:") and "nope" in err
    finally:
        m.close()


@pytest.mark.parametrize("fn,args", [
    (lambda x: np.tanh(x) * 2, (np.linspace(-3, 3, 300_000, dtype=np.float32),)),
    (lambda a, b: a @ b, (np.ones((40, 30)), np.ones((30, 50)))),
], ids=["loops", "gemm"])
def test_a_crash_a_hang_and_a_wrong_result_cost_one_trial_each(fn, args):
    (k, task), = tasks_of(fn, *args)[:1]
    steps = default_steps(task.kernel, host())
    m = M.Measurer(timeout=3, repeats=2, sample_seconds=0.001, command=FAULTY)
    m.add(0, task)
    try:
        costs, err = m.measure(0, to_json(with_grain(steps, 7771)))
        assert costs is None and err.startswith("crash:"), err
        costs, err = m.measure(0, to_json(with_grain(steps, 7772)))
        assert costs is None and err.startswith("timeout:"), err
        costs, err = m.measure(0, to_json(with_grain(steps, 7773)))
        assert costs is None and err.startswith("wrong result:"), err
        costs, err = m.measure(0, to_json(with_grain(steps, 2)))  # the worker was restarted: business as usual
        assert err is None and costs
    finally:
        m.close()


def test_compare_tolerates_reassociation_not_errors():
    want = {"a": np.array([1.0, 2.0, np.nan, np.inf], np.float32), "i": np.array([1, 2], np.int32)}
    same = {"a": np.array([1.0, 2.0001, np.nan, np.inf], np.float32), "i": np.array([1, 2], np.int32)}
    assert M.compare(same, want) is None
    assert "max error" in M.compare({"a": np.array([1.0, 2.1, np.nan, np.inf], np.float32), "i": want["i"]}, want)
    assert "a[2] = " in M.compare({"a": np.array([1.0, 2.0, 0.0, np.inf], np.float32), "i": want["i"]}, want)
    assert "default schedule gives" in M.compare({"a": want["a"], "i": np.array([1, 3], np.int32)}, want)
