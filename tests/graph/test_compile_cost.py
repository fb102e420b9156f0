"""Compile cost grows linearly with program size: unrolled loops (stencils with copies, recurrences that
read their state several times per step, long dependent chains) compile to loop IR whose size is
proportional to the number of steps, without recursion on graph depth, and with the same numbers as
numpy. Sizes, not seconds, are asserted (no timing in unit tests): `benchmarks/bench_unroll.py` times
the same programs from 10 to 1,000 steps."""
import numpy as np
import pytest

import jitensor
from helpers import assert_same, check, run_numpy
from jitensor.codegen.llvm import code_key
from jitensor.graph.passes.fuse import MAX_DEPTH
from jitensor.loop.ir import Expr, nodes

rng = np.random.default_rng(5)


def stencil(u, steps):
    for _ in range(steps):
        v = u.copy()
        v[1:-1, 1:-1] = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
        u = v
    return u


def recurrence(x, y, steps):
    for _ in range(steps):
        x, y = 0.5 * x + 0.25 * y * y, 0.3 * y - 0.1 * x * y + 0.01
    return x, y


def sine_iteration(x, steps):
    for _ in range(steps):
        x = x * 0.5 + np.sin(x) * 0.25
    return x


def chain(x, steps):
    s = x[0]
    for i in range(steps):
        s = s + x[i % x.shape[0]]
    return s


def reductions_in_loop(x, steps):
    for _ in range(steps):
        x = x - x.mean(axis=-1, keepdims=True) * 0.5 + x.std() * 0.01
    return x


def compiled(fn, *args, **statics):
    jf = jitensor.jit(fn, static_argnames=tuple(statics), cache=False)
    out = jf(*args, **statics)
    return out, list(jf._compiled.values())[-1]


def ir_size(c) -> int:
    """Distinct expression objects over all kernels: what lowering, schedules and codegen walk."""
    return sum(1 for k in c.kernels for x in nodes(k.body) if isinstance(x, Expr))


def depth(e) -> int:
    best, stack = 0, [(e, 1)]
    seen = set()
    while stack:
        x, d = stack.pop()
        if (id(x), d) in seen:
            continue
        seen.add((id(x), d))
        best = max(best, d)
        stack.extend((c, d + 1) for c in getattr(x, "args", ()) if isinstance(c, Expr))
        if hasattr(x, "x") and isinstance(x.x, Expr):
            stack.append((x.x, d + 1))
    return best


CASES = {
    "stencil": (stencil, lambda: (rng.random((40, 48)),)),
    "recurrence": (recurrence, lambda: (rng.random(3000), rng.random(3000) * 0.5)),
    "sine": (sine_iteration, lambda: (rng.random(1003).astype(np.float32),)),
    "chain": (chain, lambda: (rng.random((64, 40)),)),
    "reductions": (reductions_in_loop, lambda: (rng.random((30, 70)),)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ir_grows_linearly_with_steps(name):
    fn, make = CASES[name]
    args = make()
    sizes = {}
    for steps in (32, 64, 128):
        out, c = compiled(fn, *args, steps=steps)
        assert_same(run_numpy(fn, *args, steps=steps), out, rtol=1e-5 if args[0].dtype == np.float32 else 1e-9,
                    atol=1e-12)
        sizes[steps] = ir_size(c)
        # every value stays within the depth bound of the fusion plan, so no visitor recurses deeper
        assert max(depth(x) for k in c.kernels for x in nodes(k.body) if isinstance(x, Expr)) <= 2 * MAX_DEPTH + 8
    # linear: doubling the steps at most doubles the IR once kernels are cut (a short program can fit in
    # one or two kernels, so the first doubling may add the cuts' buffers too)
    assert sizes[128] <= 2.3 * sizes[64] and sizes[128] <= 8 * sizes[32], sizes


@pytest.mark.parametrize("name", ["stencil", "recurrence", "chain"])
def test_steps_share_machine_code(name):
    """Kernels of an unrolled loop that differ only in their buffers compile to one function."""
    fn, make = CASES[name]
    _, c = compiled(fn, *make(), steps=48)
    distinct = len({code_key(k) for k in c.kernels})
    assert distinct <= 24 and (len(c.kernels) < 4 or distinct < len(c.kernels)), (distinct, len(c.kernels))


def test_stencil_steps_get_buffers():
    """Each stencil step reads the previous one through four shifted slices: inlined, every step would
    compute its predecessor four times (4**steps work); with a buffer per step the work is linear."""
    u = rng.random((34, 35))
    _, c = compiled(stencil, u, steps=12)
    assert 6 <= len(c.kernels) <= 13


def test_long_dependent_chain_has_no_recursion_error():
    x = rng.random((50, 33))
    check(chain, x, steps=400, static_argnames=("steps",), rtol=1e-9)
    check(lambda x: sine_iteration(x, 200), x.astype(np.float32), rtol=1e-5, atol=1e-6)


def test_shared_values_at_one_index_stay_in_one_kernel():
    """A value read twice at the same index is one expression (computed once per element), so a short
    unrolled iteration remains one loop."""
    x = rng.random(1003).astype(np.float32)
    _, c = compiled(sine_iteration, x, steps=12)
    assert len(c.kernels) == 1
