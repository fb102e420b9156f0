"""Schedules are data end to end: default steps replay exactly, template knobs and step arguments change the
code but never the results, tuning records reach the compiler, and the disk cache follows the records."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import jitensor
from helpers import TRANS, assert_values
from jitensor.codegen.llvm import code_key
from jitensor.compiler import lower_graph
from jitensor.errors import RecordWarning
from jitensor.loop.primitives import (BlockColumns, Parallel, ScheduleError, TemplateKnobs, Vectorize, apply,
                                      from_json, to_json)
from jitensor.loop.schedule import default_schedule, default_steps
from jitensor.loop.workload import workload_key
from jitensor.target import host
from jitensor.autotune.records import Record, default_store, target_key

_rng = np.random.default_rng(7)


def _f(*shape, dt=np.float32):
    return _rng.standard_normal(shape).astype(dt)


CORPUS = {
    "elementwise": (lambda x: np.tanh(x) * 2 + 1, (_f(37, 129),)),
    "row_softmax": (lambda x: np.exp(x - x.max(axis=1, keepdims=True)) / np.exp(x).sum(axis=1, keepdims=True),
                    (_f(64, 300),)),
    "column_sum": (lambda x: x.sum(axis=0), (_f(2000, 256, dt=np.float64),)),
    "transpose": (lambda x: x + x.T, (_f(64, 64),)),
    "matmul": (lambda a, b: a @ b + 1, (_f(40, 30), _f(30, 50))),
    "gemv_dot": (lambda a, x: a @ x, (_f(100, 70), _f(70))),
    "gemv_axpy": (lambda x, a: x @ a, (_f(3, 90), _f(90, 200))),
    "argmax": (lambda x: x.argmax(axis=1), (_f(30, 5000),)),
    "scalar_sum": (lambda x: (x * x).sum(), (_f(100_000),)),
}


def close(got, want, n=1):
    """Equal up to n roundings at the scale of the largest value (schedules reassociate sums)."""
    w = np.asarray(want)
    if w.dtype.kind != "f":
        return assert_values(want, got)
    tol = TRANS[w.dtype] * n
    assert_values(want, got, rtol=tol, atol=tol * float(np.max(np.abs(w), initial=1.0)))


def lowered(fn, args):
    graph, layouts, _ = jitensor.jit(fn, cache=False)._traced(args, {})
    return lower_graph(graph, layouts)[3]


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_default_steps_replay_exactly(case):
    """The default schedule is its steps: replayed from JSON they give the same kernel (same machine code)."""
    t = host()
    for k in lowered(*CORPUS[case]):
        steps = default_steps(k, t)
        replay = apply(k, from_json(to_json(steps)))
        assert code_key(replay) == code_key(default_schedule(k, t))
        assert default_schedule(k, t).origin == "default"


def test_explain_shows_each_kernels_steps():
    fn, args = CORPUS["matmul"]
    text = jitensor.explain(fn, *args, what=("loop",))
    assert "# schedule (default): TemplateKnobs mr=" in text


def test_template_knobs_are_checked():
    k = next(k for k in lowered(*CORPUS["matmul"]) if k.template)
    with pytest.raises(ScheduleError, match="no knob 'mc'"):
        apply(k, [TemplateKnobs((("mc", 4),))])
    with pytest.raises(ScheduleError, match="out of range"):
        apply(k, [TemplateKnobs((("mr", 0),))])
    with pytest.raises(ScheduleError, match="out of range"):
        apply(k, [TemplateKnobs((("split", "diagonal"),))])
    with pytest.raises(ScheduleError, match="are not set"):
        apply(k, [TemplateKnobs((("mr", 4),))])
    loop_k = lowered(*CORPUS["elementwise"])[0]
    with pytest.raises(ScheduleError, match="no code-generator template"):
        apply(loop_k, [TemplateKnobs((("mr", 4),))])


def test_workload_key_ignores_names_not_shapes():
    a = lowered(lambda x: np.exp(x) + 1, (_f(50, 60),))[0]
    b = lowered(lambda y: np.exp(y) + 1, (_f(50, 60),))[0]
    c = lowered(lambda x: np.exp(x) + 1, (_f(60, 50),))[0]
    d = lowered(lambda x: np.exp(x) + 1, (_f(50, 60, dt=np.float64),))[0]
    assert workload_key(a) == workload_key(b)
    assert len({workload_key(a), workload_key(c), workload_key(d)}) == 3


# -- records reach the compiler


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(tmp_path))
    return default_store()


def add_record(store, kernel, steps, cost=1e-6):
    tk = target_key(host())
    wk = workload_key(kernel)
    store.add(Record(wk, tk, tuple(to_json(default_steps(kernel, host()))), (1.0,), None, True, "test"))
    store.add(Record(wk, tk, tuple(to_json(steps)), (cost,), None, False, "test"))


def run_with(store, fn, args, pick, steps):
    """fn(*args) compiled after a record gives `steps` to the kernel `pick` chooses; -> (result, explain text)."""
    k = pick(lowered(fn, args))
    add_record(store, k, steps)
    f = jitensor.jit(fn, cache=False)
    return f(*args), jitensor.explain(fn, *args, what=("loop",))


def _template(ks):
    return next(k for k in ks if k.template)


GEMM_KNOBS = [dict(mr=4, nv=1, kc=32, nc=1, split="rows", grain=1), dict(mr=3, nv=3, kc=7, nc=2, split="cols", grain=2),
              dict(mr=8, nv=1, kc=512, nc=64, split="cols", grain=1), dict(mr=1, nv=4, kc=1, nc=1, split="rows", grain=5)]


@pytest.mark.parametrize("knobs", GEMM_KNOBS, ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items()))
@pytest.mark.parametrize("shape", [(13, 37, 29), (64, 64, 64), (9, 130, 3), (11, 19, 200)], ids=str)
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemm_knobs_keep_results(store, knobs, shape, dt):
    M, N, K = shape
    a, b, bias = _f(M, K, dt=dt), _f(K, N, dt=dt), _f(N, dt=dt)
    fn = lambda a, b, bias: np.maximum(a @ b + bias, 0)  # noqa: E731 (with the fused epilogue)
    got, text = run_with(store, fn, (a, b, bias), _template, [TemplateKnobs(tuple(knobs.items()))])
    if "template gemv" not in text:  # (the skinny shapes get the matrix-vector template and its own knobs)
        assert "record" in text
    close(got, fn(a, b, bias), K)


GEMV_KNOBS = {"dot": [dict(rows=1, accs=1, grain=1), dict(rows=3, accs=4, grain=3), dict(rows=8, accs=2, grain=1)],
              "axpy": [dict(block=1, chunk=1, ku=1, grain=1), dict(block=3, chunk=5, ku=3, grain=2),
                       dict(block=64, chunk=256, ku=8, grain=1)]}


@pytest.mark.parametrize("form,knobs", [(f, k) for f, ks in GEMV_KNOBS.items() for k in ks], ids=str)
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemv_knobs_keep_results(store, form, knobs, dt):
    if form == "dot":
        args = (_f(101, 67, dt=dt), _f(67, 2, dt=dt))
        fn = lambda a, x: np.tanh(a @ x)  # noqa: E731
    else:
        args = (_f(3, 77, dt=dt), _f(77, 333, dt=dt))
        fn = lambda x, a: x @ a + 1  # noqa: E731
    got, text = run_with(store, fn, args, _template, [TemplateKnobs(tuple(knobs.items()))])
    assert f"'form': '{form}'" in text and "record" in text
    close(got, fn(*args), 100)


def _steps_with(ks, pick, change):
    """(the kernel `pick` selects, its default steps with `change` applied to each)."""
    k = pick(ks)
    return k, [change(s) for s in default_steps(k, host())]


@pytest.mark.parametrize("copies,grain", [(1, 1000), (2, 3), (3, 1), (8, 7)])  # (both sides of the tail and the
@pytest.mark.parametrize("case", ["row_softmax", "scalar_sum", "argmax"])    # range; grains that split unevenly)
def test_loop_step_arguments_keep_results(store, case, copies, grain):
    fn, args = CORPUS[case]

    def change(s):
        if isinstance(s, Vectorize):
            return Vectorize(s.loop, s.lanes, copies)
        if isinstance(s, Parallel):
            return Parallel(s.loop, grain)
        return s
    ks = lowered(fn, args)
    k, steps = _steps_with(ks, lambda ks: max(ks, key=lambda k: len(default_steps(k, host()))), change)
    add_record(store, k, steps)
    got = jitensor.jit(fn, cache=False)(*args)
    close(got, fn(*args), 10)


@pytest.mark.parametrize("factor", [16, 64, 128])
def test_column_blocks_keep_results(store, factor):
    fn, args = CORPUS["column_sum"]
    ks = lowered(fn, args)
    k, steps = _steps_with(ks, lambda ks: next(k for k in ks if any(isinstance(s, BlockColumns)
                                                                    for s in default_steps(k, host()))),
                           lambda s: BlockColumns(factor) if isinstance(s, BlockColumns) else s)
    add_record(store, k, steps)
    text = jitensor.explain(fn, *args, what=("loop",))
    assert f"BlockColumns {factor}" in text
    close(jitensor.jit(fn, cache=False)(*args), fn(*args), 100)


def test_a_record_that_no_longer_applies_warns_and_keeps_the_default(store):
    fn, args = CORPUS["elementwise"]
    k = lowered(fn, args)[0]
    add_record(store, k, [Vectorize("no_such_loop", 8)])
    with pytest.warns(RecordWarning, match="does not apply"):
        got = jitensor.jit(fn, cache=False)(*args)
    close(got, fn(*args))


def test_explain_names_the_record_and_its_speedup(store):
    fn, args = CORPUS["matmul"]
    k = _template(lowered(fn, args))
    knobs = dict(default_steps(k, host())[0].knobs, mr=4)
    add_record(store, k, [TemplateKnobs(tuple(knobs.items()))], cost=0.5)
    assert "(record 2, 2.00x over default)" in jitensor.explain(fn, *args, what=("loop",))


def test_disk_cache_follows_the_records(store):
    """A disk entry compiled with the defaults is not reused once a record schedules one of its kernels
    differently; the recompiled entry (with the record) is then reused."""
    def fn(a, b):
        return a @ b * 2
    args = (_f(20, 30), _f(30, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = jitensor.jit(fn).lower(*args)
        c1 = jitensor.compiler.compile_graph(first.graph, first.layouts, name="t")
        assert c1.source == "compiled"
        assert jitensor.compiler.compile_graph(first.graph, first.layouts, name="t").source == "disk"
        k = _template(lowered(fn, args))
        knobs = dict(default_steps(k, host())[0].knobs, mr=2, nv=1)
        add_record(store, k, [TemplateKnobs(tuple(knobs.items()))])
        c2 = jitensor.compiler.compile_graph(first.graph, first.layouts, name="t")
        assert c2.source == "compiled" and any(k.origin.startswith("record") for k in c2.kernels)
        c3 = jitensor.compiler.compile_graph(first.graph, first.layouts, name="t")
        assert c3.source == "disk"
        close(c3.program.run(list(args))[0], fn(*args), 30)
