"""Schedule primitives (jitensor/loop/primitives.py) preserve results.

Kernels come from the real pipeline (trace -> optimize -> fuse -> lower, before default_schedule, so the
nests are not yet collapsed) and run in a reference interpreter of the loop IR (loop_interp.py): each
primitive, and random sequences of them, must give bit-identical buffers (a legal step never changes an
element's accumulation order). Illegal steps raise ScheduleError, records round-trip through JSON, and
scheduled kernels still compile and run through the LLVM code generator.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jitensor
from jitensor.loop import interp as loop_interp
from jitensor.errors import JitensorError
from jitensor.graph.passes.fuse import plan_fusion
from jitensor.loop.ir import Buffer, Decl, For, Kernel, Load, Seq, Store, Var, format_kernel, iadd, imul
from jitensor.loop.lower import NotRowLocal, lower, plan_buffers
from jitensor.loop.primitives import (CacheWrite, ComputeAt, Fuse, Inline, Parallel, Reorder, ScheduleError, Split,
                                      Tile, Unroll, Vectorize, apply, from_json, loops, to_json)

_rng = np.random.default_rng(7)


def _f32(*shape):
    return _rng.standard_normal(shape).astype(np.float32)


def _rownorm(a):
    # two row-local reductions read only by the final loop (softmax itself now keeps exp's values in the
    # output row during the sum, which gives a different nest)
    e = a - a.max(axis=1, keepdims=True)
    return e / np.abs(e).sum(axis=1, keepdims=True)


_nan = _f32(5, 7)
_nan[1, 3] = np.nan

# name -> (fn, args): elementwise, transpose, row/column reductions (2-D and 3-D), matmul, row-local
# reductions, argmax (locals carried across a loop), gather (checks), int8 wraparound. Extents are small
# and mostly prime so that split factors leave tails.
CASES = {
    "ew": (lambda a, b: np.sin(a) * b + 1, (_f32(5, 7), _f32(7))),
    "ew2": (lambda a: np.sqrt(np.abs(a)) - a, (_f32(5, 7),)),
    "transpose": (lambda a: a.T * 2, (_rng.standard_normal((5, 7)),)),
    "rowsum": (lambda a: a.sum(axis=1), (_f32(5, 7),)),
    "rowsum2": (lambda a: a.sum(axis=(1, 2)), (_rng.integers(-9, 9, (3, 4, 5)).astype(np.int32),)),
    "colsum": (lambda a: a.sum(axis=0), (_rng.standard_normal((7, 5)),)),
    "colsum3": (lambda a: a.sum(axis=(0, 1)), (_rng.standard_normal((4, 3, 5)),)),
    "matmul": (lambda a, b: a @ b, (_f32(5, 7), _f32(7, 6))),
    "rownorm": (_rownorm, (_f32(5, 7),)),
    "argmax": (lambda a: a.argmax(axis=1), (_nan,)),
    "gather": (lambda a, i: a[i] * 2, (_f32(6, 5), np.array([0, -1, 2, 5]))),
    "int8": (lambda a, b: np.where(a > 0, a, b * 3), (_rng.integers(-50, 50, (5, 6)).astype(np.int8),
                                                     _rng.integers(-50, 50, (6,)).astype(np.int8))),
}


@dataclass
class Prog:
    kernels: list
    init: dict      # buffer name -> flat array (inputs, constants; outputs/temps hold garbage)
    outs: list      # (buffer name, shape) per output
    main: int       # index of the kernel with the most loops: the one schedules are applied to


@functools.cache
def prog(case: str) -> Prog:
    fn, args = CASES[case]
    c = jitensor.jit(fn, cache=False).lower(*args)
    g = c.optimized
    layouts = [tuple(s // a.itemsize for s in a.strides) for a in args]
    force: frozenset = frozenset()
    while True:  # as compiler.compile_graph does, minus default_schedule
        plan = plan_fusion(g, force)
        bufs = plan_buffers(g, plan, layouts)
        try:
            kernels = lower(g, plan, bufs)
            break
        except NotRowLocal as e:
            force = force | {id(e.node)}
    by_slot = {b.slot: b for b in bufs.slots.values()}
    init = {b.name: (np.random.default_rng(b.slot).standard_normal(b.size) * 100).astype(b.dtype)
            for b in by_slot.values()}  # garbage: a schedule must not read what the kernel did not write
    for i, slot in enumerate(bufs.inputs):
        init[by_slot[slot].name] = np.ascontiguousarray(args[i]).ravel().copy()
    for slot, arr in bufs.consts:
        init[by_slot[slot].name] = np.ascontiguousarray(arr).ravel().copy()
    outs = [(by_slot[slot].name, node.shape) for slot, node in bufs.outputs]
    main = max(range(len(kernels)), key=lambda i: len(loops(kernels[i])))
    return Prog(kernels, init, outs, main)


def interpret(kernels, init) -> tuple[dict, set]:
    bufs = {n: a.copy() for n, a in init.items()}
    err: set = set()
    for k in kernels:
        err |= loop_interp.run(k, bufs)
    return bufs, err


@functools.cache
def reference(case: str):
    p = prog(case)
    return interpret(p.kernels, p.init)


def check(case: str, steps, expect_error=None) -> Kernel:
    """Apply steps to the case's main kernel; the interpreter must give identical buffers and errors."""
    p = prog(case)
    k = apply(p.kernels[p.main], steps)
    ks = list(p.kernels)
    ks[p.main] = k
    got, err = interpret(ks, p.init)
    want, werr = reference(case)
    assert err == werr
    for name in want:
        assert np.array_equal(got[name], want[name], equal_nan=True), \
            f"{case} {steps}: buffer {name} differs\n{format_kernel(k)}"
    return k


def main_kernel(case):
    p = prog(case)
    return p.kernels[p.main]


def all_stmts(s):
    yield s
    for c in (s.body if isinstance(s, Seq) else (s.body,) if isinstance(s, For) else ()):
        yield from all_stmts(c)


# ---------------------------------------------------------------------------------------------
# the interpreter itself against numpy


@pytest.mark.parametrize("case", sorted(CASES))
def test_interpreter_matches_numpy(case):
    fn, args = CASES[case]
    p = prog(case)
    bufs, err = reference(case)
    assert not err
    want = fn(*args)
    (name, shape), = p.outs
    got = bufs[name].reshape(shape)
    assert got.dtype == want.dtype
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def test_interpreter_reports_checks():
    # an out-of-range gather index: the same check the compiled code reports
    p = prog("gather")
    init = dict(p.init, in1=np.array([0, 9, 2, 5]))
    _, err = interpret(p.kernels, init)
    assert err == {1}
    # and a guarded split keeps reporting it (the check is and-ed with the guard, not dropped)
    k = apply(p.kernels[p.main], [Split("i0", 3), Split("i1", 2)])
    assert interpret([k], init)[1] == {1}


# ---------------------------------------------------------------------------------------------
# each primitive preserves results


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_every_loop(case):
    for var, extent, _ in loops(main_kernel(case)):
        for factor in sorted({3, 4, extent}):
            for tail in ("guard", "loop"):
                k = check(case, [Split(var, factor, tail)])
                names = [v for v, _, _ in loops(k)]
                assert var not in names
                # a tail loop replaces the main loops entirely when the extent is below the factor
                assert (f"{var}_o" in names and f"{var}_i" in names) == (tail == "guard" or extent >= factor)
                assert (f"{var}_t" in names) == (tail == "loop" and extent % factor != 0)


def test_split_guard_keeps_the_nest_perfect():
    k = check("ew", [Split("i0", 2)])
    assert [(v, e) for v, e, _ in loops(k)] == [("i0_o", 3), ("i0_i", 2), ("i1", 7)]
    k = check("ew", [Split("i0", 2, "loop")])
    assert [(v, e) for v, e, _ in loops(k)] == [("i0_o", 2), ("i0_i", 2), ("i1", 7), ("i0_t", 1), ("i1_t", 7)]


def test_split_twice():
    # tail copies of inner loops get fresh names (i1_t, then i1_t2)
    k = check("ew", [Split("i0", 3, "loop"), Split("i0_o", 1, "loop"), Split("i0_i", 2, "loop")])
    names = [v for v, _, _ in loops(k)]
    assert len(set(names)) == len(names) and {"i1_t", "i1_t2"} <= set(names)
    check("colsum", [Split("i0", 3), Split("i0_i", 2), Split("i1", 2, "loop"), Split("i1_i", 3)])


def test_reorder_around_guards():
    # a guarded spatial loop may move; the split halves of a guarded reduction loop may not swap
    check("colsum", [Split("i1", 3), Reorder(("i1_o", "i1_i", "i0"))])
    with pytest.raises(ScheduleError, match="reduce into"):
        apply(main_kernel("colsum"), [Split("i0", 3), Reorder(("i0_i", "i0_o", "i1"))])


def _perfect_pairs(k):
    """(outer, inner) loop pairs where inner is the whole body of outer."""
    for s in all_stmts(k.body):
        if isinstance(s, For):
            b = s.body.body[0] if isinstance(s.body, Seq) and len(s.body.body) == 1 else s.body
            if isinstance(b, For):
                yield s.var, b.var


@pytest.mark.parametrize("case", sorted(CASES))
def test_fuse_every_perfect_pair(case):
    for outer, inner in _perfect_pairs(main_kernel(case)):
        k = check(case, [Fuse(outer, inner)])
        assert inner not in [v for v, _, _ in loops(k)]


def test_fuse_affine_and_general():
    # contiguous elementwise: affine fusion, no div/mod; a transpose or a broadcast row: div/mod
    assert "//" not in format_kernel(check("ew2", [Fuse("i0", "i1")]))
    assert "//" in format_kernel(check("transpose", [Fuse("i0", "i1")]))
    assert "//" in format_kernel(check("ew", [Fuse("i0", "i1")]))
    # fusing after a guarded split goes through div/mod too
    check("ew", [Split("i1", 3), Fuse("i1_o", "i1_i")])


@pytest.mark.parametrize("case,order", [
    ("ew", ("i1", "i0")), ("transpose", ("i1", "i0")), ("int8", ("i1", "i0")), ("gather", ("i1", "i0")),
    ("colsum", ("i1", "i0")),                       # the column reduction's reduction loop moves inward
    ("colsum3", ("i2", "i0", "i1")), ("colsum3", ("i0", "i2", "i1")),
])
def test_reorder(case, order):
    k = check(case, [Reorder(order)])
    nest = [v for v, _, _ in loops(k) if v in order]
    assert nest == list(order)


def test_reorder_of_split_loops():
    check("ew", [Split("i1", 4), Reorder(("i1_i", "i0", "i1_o"))])
    check("colsum", [Split("i0", 3), Reorder(("i1", "i0_o", "i0_i"))])
    check("matmul", [Inline("aik"), Split("k", 3), Reorder(("j_1", "k_o", "k_i"))])


@pytest.mark.parametrize("case,pair,factors", [
    ("ew", ("i0", "i1"), (2, 3)), ("ew", ("i0", "i1"), (4, 4)), ("transpose", ("i0", "i1"), (3, 2)),
    ("colsum", ("i0", "i1"), (3, 2)), ("int8", ("i0", "i1"), (5, 6)), ("colsum3", ("i1", "i2"), (2, 2)),
])
def test_tile(case, pair, factors):
    k = check(case, [Tile(pair, factors)])
    a, b = pair
    names = [v for v, _, _ in loops(k)]
    assert names.index(f"{a}_o") < names.index(f"{b}_o") < names.index(f"{a}_i") < names.index(f"{b}_i")


def test_tile_matmul():
    check("matmul", [Inline("aik"), Tile(("k", "j_1"), (4, 4))])
    check("matmul", [Inline("aik"), Reorder(("j_1", "k")), Tile(("j_1", "k"), (4, 3))])


def test_cache_write_column_reduction():
    # t[i1] += x[i0, i1] with i0 innermost: a register accumulator, one load and one store per column
    k = check("colsum", [Reorder(("i1", "i0")), CacheWrite("i0")])
    i0 = next(s for s in all_stmts(k.body) if isinstance(s, For) and s.var == "i0")
    assert not any(isinstance(s, Store) for s in all_stmts(i0))
    assert any(isinstance(s, Decl) and s.name == "t0_acc" for s in all_stmts(k.body))
    check("colsum3", [Reorder(("i2", "i0", "i1")), CacheWrite("i0")])
    check("colsum3", [Reorder(("i2", "i0", "i1")), CacheWrite("i1")])
    check("colsum", [Reorder(("i1", "i0")), Split("i0", 3), CacheWrite("i0_o")])


def test_cache_write_matmul():
    # inline aik to make k/j perfect, move k inside: a dot product accumulated in a local
    k = check("matmul", [Inline("aik"), Reorder(("j_1", "k")), CacheWrite("k")])
    assert "out0_acc = fma(" in format_kernel(k)
    check("matmul", [Inline("aik"), Reorder(("j_1", "k")), CacheWrite("k"), Split("k", 4), Unroll("k_i")])


def test_inline():
    k = check("matmul", [Inline("aik")])
    assert "aik" not in format_kernel(k)


def test_compute_at_makes_the_row_nest_perfect():
    # row normalization: moving both row reductions into the i1 loop recomputes them per element but leaves a
    # perfect i0/i1 nest, which can then be interchanged
    k = check("rownorm", [ComputeAt("red1", "i1"), ComputeAt("red0", "i1")])
    assert [v for v, _, _ in loops(k)][:2] == ["i0", "i1"]
    check("rownorm", [ComputeAt("red1", "i1"), ComputeAt("red0", "i1"), Reorder(("i1", "i0"))])
    check("rownorm", [ComputeAt("red1", "i1"), ComputeAt("red0", "i1"), Fuse("i0", "i1")])


def test_marks():
    k = check("ew", [Vectorize("i1", 4)])
    i1 = next(s for s in all_stmts(k.body) if isinstance(s, For) and s.var == "i1")
    assert (i1.kind, i1.lanes) == ("vectorize", 4)
    k = check("ew", [Unroll("i1"), Parallel("i0")])
    assert k.body.kind == "parallel" and k.body.body.kind == "unroll"
    check("rowsum", [Vectorize("red0_r0", 4), Parallel("i0")])  # a reduction: vector accumulators
    check("colsum", [Vectorize("i1", 4)])                        # t[i1] read and written at one index
    # split the vector loop first when a tail-free loop is wanted
    k = check("ew", [Split("i1", 4, "loop"), Vectorize("i1_i", 4), Split("i0", 2), Parallel("i0_o")])
    assert k.body.kind == "parallel"


def test_parallel_after_guarded_split():
    # the guard's clamp keeps each block's accesses inside the block: still parallel
    check("ew", [Split("i0", 2), Parallel("i0_o")])
    check("ew", [Tile(("i0", "i1"), (2, 3)), Parallel("i0_o")])
    check("matmul", [Split("i", 2), Parallel("i_o")])


def test_loops_and_unique_names():
    # the matmul kernel has two loops named j: loops() and apply() call the second one j_1
    k = main_kernel("matmul")
    assert loops(k) == [("i", 5, 0), ("j", 6, 1), ("k", 7, 1), ("j_1", 6, 2)]
    assert [v for v, _, _ in loops(apply(k, []))] == ["i", "j", "k", "j_1"]
    check("matmul", [Split("j", 4), Split("j_1", 4)])


def test_hand_built_kernel():
    # for i in 0..10: out[i] = in[i] * 2 (float64), built without the frontend
    bufs = (Buffer("x", np.dtype(np.float64), 10, 1), Buffer("y", np.dtype(np.float64), 10, 2))
    from jitensor.loop.ir import Call, Const
    body = For("i", 10, Store("y", Var("i"), Call("multiply", (Load("x", Var("i"), np.dtype(np.float64)),
                                                               Const(2.0, np.dtype(np.float64))),
                                                  np.dtype(np.float64))))
    k = Kernel("hand", bufs, body, ("y",))
    init = {"x": np.arange(10.0), "y": np.zeros(10)}
    # (a vector loop needs no multiple of its lanes: the code generator adds a scalar tail)
    for steps in ([Split("i", 3)], [Split("i", 3, "loop")], [Split("i", 4, "loop"), Vectorize("i_i", 4)],
                  [Vectorize("i", 4)],
                  [Split("i", 4), Parallel("i_o"), Unroll("i_i")]):
        out, _ = interpret([apply(k, steps)], init)
        np.testing.assert_array_equal(out["y"], np.arange(10.0) * 2)


def test_template_is_dropped_when_scheduled():
    # a kernel carrying a code-generator template is implemented by its scheduled loops instead
    k = main_kernel("matmul")
    assert k.template is not None and k.template[0] == "gemv"  # 5 x 7 @ 7 x 6: five rows, a skinny product
    assert apply(k, [Inline("aik")]).template is None
    assert apply(k, []).template == k.template


# ---------------------------------------------------------------------------------------------
# illegal steps


def _hand_column_sum():
    """for i0: for i1: t[i1] += x[i0*7 + i1]: every i0 iteration writes all of t."""
    f64 = np.dtype(np.float64)
    from jitensor.loop.ir import Call
    idx = iadd(imul(Var("i0"), 7), Var("i1"))
    body = For("i0", 5, For("i1", 7, Store("t", Var("i1"), Call("reduce_add", (
        Load("t", Var("i1"), f64), Load("x", idx, f64)), f64))))
    return Kernel("hand_colsum", (Buffer("x", f64, 35, 1), Buffer("t", f64, 7, 2)), body, ("t",))


ILLEGAL = [
    ("matmul", [], Reorder(("j_1", "k")), "not perfectly nested"),      # Decl aik between k and j
    ("rownorm", [], Reorder(("i1", "i0")), "not perfectly nested"),     # row reductions before the i1 loop
    ("rowsum2", [], Reorder(("red0_r1", "red0_r0")), "accumulates"),   # reorders the terms of the row's sum
    ("colsum3", [], Reorder(("i1", "i0")), "reduce into"),             # changes each column's summation order
    ("ew", [], Parallel("i1"), "outermost"),
    ("colsum", [], Parallel("i0"), "outermost"),                        # body is init loop + reduction loop
    ("ew", [], Vectorize("i0", 4), "not innermost"),
    ("ew", [], Vectorize("i1", 3), "power of two"),
    ("colsum", [Reorder(("i1", "i0"))], Vectorize("i0", 4), "not contiguous"),
    ("rowsum", [Split("red0_r0", 4)], Vectorize("red0_r0_i", 4), "reduction"),
    ("ew", [Vectorize("i1", 4)], Reorder(("i1", "i0")), "not innermost"),
    ("ew", [Vectorize("i1", 4)], Split("i1", 2), "split it before marking"),
    ("ew", [Split("i0", 4), Reorder(("i0_i", "i0_o"))], Parallel("i0_i"), "overlapping"),  # clamp would race
    ("ew", [], Split("nope", 2), "no loop named"),
    ("ew", [], Split("i0", 0), "positive"),
    ("ew", [], Split("i0", 2, "sideways"), "tail"),
    ("ew", [], Reorder(("i0", "i0")), "distinct"),
    ("colsum", [], Fuse("o1", "i0"), "not the whole body"),
    ("colsum", [], CacheWrite("i0"), "depends on"),                    # t[i1] moves with i1 inside i0
    ("matmul", [], CacheWrite("i"), "different indices"),
    ("argmax", [], Inline("better"), "changed after"),                 # best is reassigned after better
    ("argmax", [], Inline("bidx"), "assigned"),
    ("rownorm", [], ComputeAt("red0", "i1"), "used outside"),          # red1 reads red0 before i1
    ("rownorm", [], ComputeAt("red1", "red0_r0"), "follow"),
    ("ew", [], Tile(("i1", "i0"), (2, 2)), "not inside"),
]


@pytest.mark.parametrize("case,prelude,step,msg", ILLEGAL,
                         ids=[f"{c}-{type(s).__name__}-{m}" for c, _, s, m in ILLEGAL])
def test_illegal(case, prelude, step, msg):
    k = apply(main_kernel(case), prelude)
    with pytest.raises(ScheduleError, match=msg) as ei:
        apply(k, [step])
    assert ei.value.step == step and ei.value.index == 0
    assert isinstance(ei.value, JitensorError) and type(step).__name__ in str(ei.value)


def test_illegal_parallel_and_step_index():
    k = _hand_column_sum()
    with pytest.raises(ScheduleError, match="overlapping"):
        apply(k, [Parallel("i0")])
    apply(k, [Reorder(("i1", "i0")), Parallel("i1")])  # columns are independent
    with pytest.raises(ScheduleError) as ei:
        apply(k, [Split("i1", 2), Unroll("i0"), Vectorize("i0", 4)])
    assert ei.value.index == 2


# ---------------------------------------------------------------------------------------------
# records


ALL_STEPS = [Split("i0", 4), Split("i1", 3, "loop"), Reorder(("i1", "i0")), Fuse("i0", "i1"),
             Tile(("i0", "i1"), (2, 8)), Vectorize("i1", 8), Unroll("k"), Parallel("i0"), CacheWrite("k"),
             CacheWrite("k", "out0"), Inline("aik"), ComputeAt("red0", "i1")]


def test_json_round_trip():
    data = json.loads(json.dumps(to_json(ALL_STEPS)))
    assert data[0] == {"step": "split", "loop": "i0", "factor": 4, "tail": "guard"}
    assert data[2] == {"step": "reorder", "order": ["i1", "i0"]}
    assert from_json(data) == ALL_STEPS
    # and a replayed record gives the same kernel
    steps = [Inline("aik"), Reorder(("j_1", "k")), Tile(("j_1", "k"), (4, 3)), CacheWrite("k_i"), Split("i", 2),
             Parallel("i_o")]
    k = main_kernel("matmul")
    assert format_kernel(apply(k, from_json(json.loads(json.dumps(to_json(steps)))))) == \
        format_kernel(apply(k, steps))


@pytest.mark.parametrize("bad", [[{"step": "spin", "loop": "i0"}], [{"loop": "i0"}],
                                 [{"step": "split", "loop": "i0"}], [{"step": "unroll", "loop": "i0", "x": 1}], ["x"]])
def test_from_json_rejects_garbage(bad):
    with pytest.raises(ScheduleError):
        from_json(bad)


# ---------------------------------------------------------------------------------------------
# random sequences


def _candidates(k: Kernel, draw):
    """One random step over the kernel's current loops and locals (not necessarily legal)."""
    ls = loops(k)
    names = [v for v, _, _ in ls]
    pairs = list(_perfect_pairs(apply(k, [])))
    local_names = sorted({s.name for s in all_stmts(k.body) if isinstance(s, Decl)})
    kind = draw(st.sampled_from(["split", "split", "reorder", "fuse", "tile", "vectorize", "unroll", "parallel",
                                 "cache_write", "inline", "compute_at"]))
    loop = draw(st.sampled_from(names))
    if kind == "split":
        return Split(loop, draw(st.sampled_from([2, 3, 4, 8])), draw(st.sampled_from(["guard", "loop"])))
    if kind in ("reorder", "fuse", "tile") and pairs:
        a, b = draw(st.sampled_from(pairs))
        if kind == "reorder":
            return Reorder((b, a))
        if kind == "fuse":
            return Fuse(a, b)
        return Tile((a, b), (draw(st.sampled_from([2, 3, 4])), draw(st.sampled_from([2, 3, 4]))))
    if kind == "vectorize":
        return Vectorize(loop, draw(st.sampled_from([2, 4, 8])))
    if kind == "unroll":
        return Unroll(loop)
    if kind == "parallel":
        return Parallel(names[0])
    if kind == "cache_write":  # mostly legal on an innermost loop whose store index does not use it
        innermost = [s.var for s in all_stmts(k.body) if isinstance(s, For) and not any(
            isinstance(x, For) for x in all_stmts(s.body))]
        return CacheWrite(draw(st.sampled_from(innermost)))
    if kind in ("inline", "compute_at") and local_names:
        name = draw(st.sampled_from(local_names))
        return Inline(name) if kind == "inline" else ComputeAt(name, loop)
    return Unroll(loop)


# known-legal openings that random steps rarely find (they unlock CacheWrite and reorders)
PRELUDES = {"colsum": [Reorder(("i1", "i0"))], "colsum3": [Reorder(("i2", "i0", "i1"))],
            "matmul": [Inline("aik"), Reorder(("j_1", "k"))],
            "rownorm": [ComputeAt("red1", "i1"), ComputeAt("red0", "i1")]}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_sequences(data):
    case = data.draw(st.sampled_from(sorted(CASES)))
    k0 = main_kernel(case)
    accepted = list(PRELUDES.get(case, [])) if data.draw(st.booleans()) else []
    k = apply(k0, accepted)
    for _ in range(data.draw(st.integers(1, 5))):
        step = _candidates(k, data.draw)
        try:
            k = apply(k, [step])
        except ScheduleError:
            continue  # illegal here: fine, but nothing else may be raised
        accepted.append(step)
    check(case, accepted)
    # a record replays to the same kernel, also through JSON
    assert format_kernel(apply(k0, accepted)) == format_kernel(k)
    assert format_kernel(apply(k0, from_json(json.loads(json.dumps(to_json(accepted)))))) == format_kernel(k)


# ---------------------------------------------------------------------------------------------
# through the real code generator


def run_native(kernels, init) -> dict:
    """Compile `kernels` as one program (jit_entry runs them in order) and run it on copies of init."""
    import ctypes

    from jitensor.codegen.llvm import LoadedCode, build_module, compile_object
    from jitensor.target import host
    t = host()
    obj, _ = compile_object(build_module(kernels, t, name="prim_test"), t)
    code = LoadedCode(obj, t, len(kernels))
    bufs = {n: a.copy() for n, a in init.items()}
    slots = {b.slot: b.name for k in kernels for b in k.buffers}
    table = (ctypes.c_void_p * (max(slots) + 1))()
    err = np.zeros(2, np.int32)
    table[0] = err.ctypes.data
    for slot, name in slots.items():
        table[slot] = bufs[name].ctypes.data
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(code.entry)(ctypes.addressof(table))
    return bufs


NATIVE = [
    ("ew", [Tile(("i0", "i1"), (2, 3)), Parallel("i0_o")]),
    ("ew", [Split("i1", 4, "loop"), Vectorize("i1_i", 4), Split("i0", 2), Parallel("i0_o")]),
    ("transpose", [Fuse("i0", "i1"), Split("i0", 8), Unroll("i0_i")]),
    ("colsum", [Reorder(("i1", "i0")), CacheWrite("i0"), Vectorize("i0", 4)]),
    ("colsum3", [Reorder(("i2", "i0", "i1")), Fuse("i0", "i1"), CacheWrite("i0")]),
    ("rowsum", [Split("red0_r0", 4, "loop"), Vectorize("red0_r0_i", 4), Split("i0", 2), Parallel("i0_o")]),
    ("matmul", [Inline("aik"), Reorder(("j_1", "k")), CacheWrite("k"), Split("i", 2), Parallel("i_o"),
                Split("j_1", 4, "loop")]),
    ("rownorm", [ComputeAt("red1", "i1"), ComputeAt("red0", "i1"), Reorder(("i1", "i0")), Vectorize("red1_r0", 4)]),
    ("int8", [Tile(("i0", "i1"), (2, 2)), Vectorize("i1_i", 2)]),
    ("argmax", [Split("i0", 2), Parallel("i0_o"), Unroll("r0")]),
]


@pytest.mark.parametrize("case,steps", NATIVE, ids=[c for c, _ in NATIVE])
def test_compiles_and_runs_natively(case, steps):
    k = check(case, steps)
    p = prog(case)
    ks = list(p.kernels)
    ks[p.main] = k
    got = run_native(ks, p.init)
    want, _ = reference(case)
    for name, shape in p.outs:
        g, w = got[name], want[name]
        if w.dtype.kind == "f":  # vector loops reassociate reductions
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, w)
