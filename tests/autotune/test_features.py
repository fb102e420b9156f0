"""Cost-model features of loop IR (jitensor/autotune/features.py).

Kernels come from the real pipeline: lowered but not yet scheduled (so that schedule steps apply, as the
tuner applies them) or through compiler.front_end (default schedules, templates). The features must be
finite, of fixed length, deterministic, blind to buffer and loop names, linear in the size of an
expression DAG, and move the way a schedule step moves the kernel.
"""
from __future__ import annotations

import functools
import time
from dataclasses import replace

import numpy as np
import pytest

import jitensor
from jitensor.compiler import front_end
from jitensor.graph.passes.fuse import plan_fusion
from jitensor.loop.ir import Assign, Buffer, Call, Decl, For, Idx, Kernel, Load, Seq, Store, Var, c64
from jitensor.loop.lower import NotRowLocal, lower, plan_buffers
from jitensor.loop.primitives import (CacheWrite, Parallel, Reorder, Split, Tile, Unroll, Vectorize, apply,
                                      loops)
from jitensor.loop.schedule import work
from jitensor.autotune.features import FEATURE_NAMES, NBUFFERS, NLEVELS, feature_dict, features, kind_of

F32 = np.dtype(np.float32)
_rng = np.random.default_rng(3)


def _f32(*shape):
    return _rng.standard_normal(shape).astype(np.float32)


CASES = {
    "ew": (lambda a, b: np.sin(a) * b + 1, (_f32(24, 40), _f32(40))),
    "copy": (lambda a: a * 2, (_f32(32, 48),)),
    "transpose": (lambda a: a.T * 2, (_f32(32, 48),)),
    "rowsum": (lambda a: a.sum(axis=1), (_f32(24, 40),)),
    "colsum": (lambda a: a.sum(axis=0), (_f32(24, 40),)),
    "argmax": (lambda a: a.argmax(axis=1), (_f32(24, 40),)),
    "softmax": (lambda a: np.exp(a - a.max(axis=1, keepdims=True)), (_f32(24, 40),)),
    "gather": (lambda a, i: a[i] * 2, (_f32(6, 40), np.array([0, -1, 2, 5]))),
    "imatmul": (lambda a, b: a @ b, (_rng.integers(-9, 9, (12, 20)).astype(np.int32),
                                     _rng.integers(-9, 9, (20, 16)).astype(np.int32))),
    "matmul": (lambda a, b: a @ b, (_f32(64, 64), _f32(64, 64))),
    "matvec": (lambda a, v: a @ v, (_f32(64, 64), _f32(64))),
}


def _main(kernels):
    return max(kernels, key=lambda k: (len(loops(k)), work(k.body)))


@functools.cache
def lowered(case: str) -> Kernel:
    """The case's main kernel, lowered and not scheduled (as test_primitives builds them)."""
    fn, args = CASES[case]
    c = jitensor.jit(fn, cache=False).lower(*args)
    g = c.optimized
    force: frozenset = frozenset()
    while True:
        plan = plan_fusion(g, force)
        bufs = plan_buffers(g, plan, c.layouts)
        try:
            return _main(lower(g, plan, bufs))
        except NotRowLocal as e:
            force = force | {id(e.node)}


@functools.cache
def scheduled(case: str) -> Kernel:
    """The case's main kernel as the compiler schedules it."""
    fn, args = CASES[case]
    c = jitensor.jit(fn, cache=False).lower(*args)
    return _main(front_end(c.graph, c.layouts)[3])


def fd(k) -> dict:
    return feature_dict(k)


def f(k, name) -> float:
    return float(features(k)[FEATURE_NAMES.index(name)])


def lg(x) -> float:
    return float(np.float32(np.log2(1 + x)))


def test_names():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert sum(n.startswith("L0_") for n in FEATURE_NAMES) * NLEVELS == sum(n[0] == "L" and n[1].isdigit()
                                                                           for n in FEATURE_NAMES)
    assert sum(n.startswith("B0_") for n in FEATURE_NAMES) * NBUFFERS == sum(n[0] == "B" and n[1].isdigit()
                                                                            for n in FEATURE_NAMES)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("build", [lowered, scheduled])
def test_finite_fixed_length_deterministic(case, build):
    k = build(case)
    x = features(k)
    assert x.dtype == np.float32 and x.shape == (len(FEATURE_NAMES),)
    assert np.isfinite(x).all() and (x >= 0).all()
    assert np.array_equal(x, features(k))
    build.cache_clear()  # a fresh lowering: equal kernel, other objects
    assert np.array_equal(x, features(build(case)))
    d = fd(k)
    assert list(d) == list(FEATURE_NAMES)
    assert d["k_work"] > 0 and d["k_bytes_touched"] > 0 and d["nest_depth"] >= 1


@pytest.mark.parametrize("case", ["ew", "copy", "transpose", "rowsum", "colsum", "argmax", "softmax", "imatmul"])
def test_work_is_schedule_work(case):
    for k in (lowered(case), scheduled(case)):
        assert fd(k)["k_work"] == work(k.body)


def test_vectorize_raises_lanes():
    k = lowered("ew")
    inner = loops(k)[-1][0]
    v = apply(k, [Vectorize(inner, 8)])
    assert f(v, "L0_lanes") == lg(8) > f(k, "L0_lanes") == 0
    assert f(v, "nest_vector_loops") > f(k, "nest_vector_loops")
    # nothing else about the work changes
    assert fd(v)["k_work"] == fd(k)["k_work"] and fd(v)["k_bytes_touched"] == fd(k)["k_bytes_touched"]


def test_split_changes_extents():
    k = lowered("ew")
    inner, n, _ = loops(k)[-1]
    s = apply(k, [Split(inner, 4, "loop")])
    ds, dk = fd(s), fd(k)
    assert dk["L0_extent"] == n and ds["L0_extent"] == 4 and ds["L1_extent"] == n // 4
    assert ds["nest_depth"] == dk["nest_depth"] + 1
    t = apply(k, [Split(inner, 8)])  # guarded: 40 = 5 x 8
    assert fd(t)["L0_extent"] == 8 and fd(t)["L1_extent"] == 5
    assert ds["k_bytes_touched"] == dk["k_bytes_touched"]
    # the footprint of the innermost loop shrinks with its extent
    assert ds["L0_bytes"] < dk["L0_bytes"]


def test_parallel_and_unroll_flags():
    k = lowered("ew")
    (outer, n, _), (inner, m, _) = loops(k)[0], loops(k)[-1]
    p = apply(k, [Parallel(outer)])
    assert fd(k)["nest_parallel_extent"] == 0 and fd(p)["nest_parallel_extent"] == n
    assert fd(p)["L1_parallel"] == 1 and fd(k)["L1_parallel"] == 0
    assert 0 < fd(p)["nest_work_per_parallel_iter"] < fd(p)["k_work"]
    u = apply(k, [Unroll(inner)])
    assert fd(u)["L0_unroll"] == 1 and fd(u)["nest_unroll_loops"] == 1 and fd(u)["nest_unrolled_iters"] == m


def _buffers(d) -> list[dict]:
    return [{n[3:]: v for n, v in d.items() if n.startswith(f"B{b}_")} for b in range(NBUFFERS)
            if d[f"B{b}_bytes"]]


def test_transposed_load_is_strided():
    t = _buffers(fd(lowered("transpose")))
    c = _buffers(fd(lowered("copy")))
    assert all(b["contiguous"] == 1 and b["stride_bytes"] == 4 for b in c)
    read = [b for b in t if not b["written"]]
    assert len(read) == 1 and read[0]["strided"] == 1 and read[0]["contiguous"] == 0
    assert read[0]["stride_bytes"] == 48 * 4  # a.T's step along an output row: one row of the (32, 48) input
    # one run of the innermost loop (32 elements) touches a line per element instead of two lines
    dt, dc = fd(lowered("transpose")), fd(lowered("copy"))
    assert dt["L0_extent"] == 32 and dt["L0_lines"] == 32 + 2 and dc["L0_lines"] == 3 + 3
    assert dt["L0_bytes"] == dc["L0_bytes"] * 32 / 48
    # a broadcast operand (b[j] over rows) is reused across the rows loop
    ew = _buffers(fd(lowered("ew")))
    vec = [b for b in ew if b["bytes"] == 40 * 4]
    assert vec and vec[0]["reuse"] == 24 and vec[0]["contiguous"] == 1
    # the row-sum's output element is invariant along its reduction loop: reuse distance 1 (a register)
    out = [b for b in _buffers(fd(lowered("colsum"))) if b["written"]][0]
    assert out["reuse"] == 24 and out["reuse_dist"] == 40


def test_larger_shape_raises_bytes():
    fn = CASES["ew"][0]
    small = jitensor.jit(fn, cache=False).lower(_f32(24, 40), _f32(40))
    big = jitensor.jit(fn, cache=False).lower(_f32(96, 40), _f32(40))
    ks, kb = (_main(front_end(c.graph, c.layouts)[3]) for c in (small, big))
    for name in ("k_bytes_touched", "k_bytes_accessed", "k_work", "k_flops", "B0_bytes", "nest_trip"):
        assert f(kb, name) > f(ks, name), name


def _rename(k: Kernel, bufs: dict, loop_vars: dict) -> Kernel:
    """k with buffers and loop variables renamed (a fresh, equal-up-to-names kernel)."""
    memo: dict = {}

    def ex(e):
        hit = memo.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            r = Load(bufs.get(e.buf, e.buf), ex(e.index), e.dtype)
        elif isinstance(e, Var):
            r = Var(loop_vars.get(e.name, e.name), e.dtype)
        elif isinstance(e, Idx):
            r = Idx(e.op, ex(e.a), ex(e.b))
        elif isinstance(e, Call):
            r = Call(e.op, tuple(ex(a) for a in e.args), e.dtype)
        elif hasattr(e, "x"):
            r = replace(e, x=ex(e.x))
        else:
            r = e
        memo[id(e)] = r
        return r

    def st(s):
        if isinstance(s, For):
            return replace(s, var=loop_vars.get(s.var, s.var), body=st(s.body))
        if isinstance(s, Seq):
            return Seq(tuple(st(x) for x in s.body))
        if isinstance(s, Store):
            return Store(bufs.get(s.buf, s.buf), ex(s.index), ex(s.value))
        if isinstance(s, Decl):
            return Decl(s.name, ex(s.init))
        if isinstance(s, Assign):
            return Assign(s.name, ex(s.value))
        return s

    return replace(k, buffers=tuple(replace(b, name=bufs.get(b.name, b.name)) for b in k.buffers), body=st(k.body),
                   outputs=tuple(bufs.get(o, o) for o in k.outputs))


@pytest.mark.parametrize("case", ["ew", "transpose", "colsum", "imatmul", "softmax"])
def test_names_do_not_matter(case):
    for k in (lowered(case), scheduled(case)):
        names = [b.name for b in k.buffers]
        bufs = dict(zip(names, reversed(names)))  # swapped: the sort of buffers must not follow names
        lv = {v: f"zz{i}" for i, (v, _, _) in enumerate(loops(k))}
        r = _rename(k, bufs, lv)
        assert [b.name for b in r.buffers] != names
        assert np.array_equal(features(r), features(k))
        assert kind_of(r) == kind_of(k)


def _deep(levels: int) -> Kernel:
    """for i in 0..64: y[i] = e_200 where e_{n+1} = e_n + e_n (2**200 paths, 200 nodes), at an index that
    is itself a 200-level shared DAG (i + i + ... = i * 2**200, clamped into the buffer)."""
    e = Load("x", Var("i"), F32)
    idx = Var("i")
    for _ in range(levels):
        e = Call("add", (e, e), F32)
        idx = Idx("add", idx, idx)
    idx = Idx("min", idx, c64(63))
    bufs = (Buffer("x", F32, 64, 1), Buffer("y", F32, 64, 2))
    return Kernel("deep", bufs, For("i", 64, Seq((Store("y", idx, e), Store("y", Var("i"), e)))), ("y",))


def test_linear_on_a_deep_dag(monkeypatch):
    # (asserts compare plain numbers: pytest's report of a failed assert would print the 2**200-path tree)
    import jitensor.autotune.features as F
    k = _deep(200)
    calls = [0]
    info = F._info

    def counted(e, memo):
        calls[0] += 1
        return info(e, memo)
    monkeypatch.setattr(F, "_info", counted)
    x = features(k)
    d = fd(k)
    kind = kind_of(k)
    assert 0 < calls[0] < 10_000  # each of the ~400 distinct nodes analysed a few times, not once per path (2**200)
    assert bool(np.isfinite(x).all())
    assert (d["hot_add"], d["hot_load"], d["hot_store"], d["hot_idx"]) == (200, 1, 2, 201)
    # the two stores share their value: counted once per iteration of the loop body (as the code computes it),
    # where schedule.work counts it for each statement
    sw = work(k.body)
    assert d["k_work"] == 64 * (1 + 200 + 1) + 64 and sw == 64 * 2 * (1 + 200 + 1)
    assert kind == "loops:elementwise"


def test_template_section():
    mm = scheduled("matmul")
    assert mm.template is not None and mm.template[0] == "gemm"
    d = fd(mm)
    assert d["kind_gemm"] == 1 and d["kind_loops"] == 0
    assert (d["tpl_M"], d["tpl_N"], d["tpl_K"], d["tpl_itemsize"], d["tpl_batch"]) == (64, 64, 64, 4, 1)
    assert d["tpl_flops"] == 2 * 64 ** 3 and d["tpl_a_trans"] == 0 == d["tpl_b_trans"]
    # the knobs the schedule set land in their slots
    params = dict(mm.template[1])
    assert d["tpl_kc"] == params["kc"] > 0 and d["tpl_mr"] == params["mr"] > 0
    params.update(kc=params["kc"] // 2, mr=4)
    knobbed = replace(mm, template=("gemm", tuple(params.items())))
    assert fd(knobbed)["tpl_kc"] == params["kc"] and fd(knobbed)["tpl_mr"] == 4
    # a transposed operand
    c = jitensor.jit(lambda a, b: a.T @ b, cache=False).lower(_f32(64, 64), _f32(64, 64))
    t = _main(front_end(c.graph, c.layouts)[3])
    assert t.template[0] == "gemm" and fd(t)["tpl_a_trans"] == 1
    # matrix-vector
    mv = scheduled("matvec")
    dv = fd(mv)
    assert mv.template[0] == "gemv" and dv["kind_gemv"] == 1
    assert (dv["tpl_M"], dv["tpl_N"], dv["tpl_K"], dv["tpl_gemv_V"], dv["tpl_gemv_S"]) == (64, 1, 64, 64, 1)
    assert dv["tpl_gemv_dot"] + dv["tpl_gemv_axpy"] == 1
    # loop kernels: the section is zeros; a scheduled template kernel is a loop kernel
    for k in (scheduled("ew"), lowered("imatmul"), apply(lowered("matmul"), [Split("i", 8)])):
        dk = fd(k)
        assert dk["kind_loops"] == 1 and all(v == 0 for n, v in dk.items() if n.startswith("tpl_")), k.name


def test_kind_of():
    want = {"ew": "loops:elementwise", "copy": "loops:elementwise", "transpose": "loops:transpose",
            "rowsum": "loops:row-reduce", "colsum": "loops:column-reduce", "argmax": "loops:row-reduce",
            "softmax": "loops:row-reduce", "gather": "loops:gather", "imatmul": "loops:contraction"}
    for case, kind in want.items():
        assert kind_of(lowered(case)) == kind, case
        assert kind_of(scheduled(case)) == kind, case
    assert kind_of(scheduled("matmul")) == "gemm" and kind_of(scheduled("matvec")) == "gemv"
    assert fd(lowered("colsum"))["shape_column-reduce"] == 1


def test_kind_of_is_stable_under_schedules():
    cs = lowered("colsum")
    (o, _, _), (i, _, _) = loops(cs)[-2:]
    for steps in ([Reorder((i, o))], [Reorder((i, o)), CacheWrite(o)], [Split(o, 4), Split(i, 8)],
                  [Tile((o, i), (4, 8))], [Vectorize(i, 8)]):
        assert kind_of(apply(cs, steps)) == "loops:column-reduce", steps
    rs = lowered("rowsum")
    r = loops(rs)[-1][0]
    for steps in ([Split(r, 8, "loop")], [Split(r, 8)], [Vectorize(r, 8)]):
        assert kind_of(apply(rs, steps)) == "loops:row-reduce", steps
    tr = lowered("transpose")
    (o, _, _), (i, _, _) = loops(tr)
    assert kind_of(apply(tr, [Tile((o, i), (8, 8))])) == "loops:transpose"


def test_schedule_moves_reuse_distance():
    # colsum t[i1] += x[i0, i1]: with i1 innermost the output element comes back once per row (distance 40);
    # after Reorder it is reused on the very next iteration (distance 1)
    cs = lowered("colsum")
    (o, _, _), (i, _, _) = loops(cs)[-2:]
    before = [b for b in _buffers(fd(cs)) if b["written"]][0]
    after = [b for b in _buffers(fd(apply(cs, [Reorder((i, o))]))) if b["written"]][0]
    assert before["reuse_dist"] == 40 and after["reuse_dist"] == 1 and before["reuse"] == after["reuse"] == 24
    assert after["invariant"] == 1 and before["contiguous"] == 1


