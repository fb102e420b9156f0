"""The fusion plan's invariant: every kernel runs after every kernel whose values it reads, directly or
through inlined producers, row-local reductions and GEMM epilogues. Merged sibling outputs broke it
once: two scalar means over split reductions (65,536 elements and up) were finished in one kernel
that ran before the second reduction, and two matrix-vector products' exps in one kernel that ran
between the products. The sizes here sit on both sides of the split-reduction threshold."""
import numpy as np
import pytest

import jitensor
from helpers import check
from jitensor.errors import CompileError
from jitensor.graph.passes import fuse
from jitensor.graph.passes.split import MIN_ELEMENTS

rng = np.random.default_rng(11)
SIZES = [MIN_ELEMENTS // 2, MIN_ELEMENTS, 100_000, 3 * MIN_ELEMENTS + 8]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_two_scalar_means(n, dtype):
    x = (rng.random(n) * 10).astype(dtype)
    y = (rng.random(n) * 10 + 5).astype(dtype)
    check(lambda x, y: (x.mean(), y.mean()), x, y, rtol="trans")
    check(lambda x: (x.mean(), x.std(), x.var()), x, rtol="trans")


@pytest.mark.parametrize("n", SIZES)
def test_dict_of_scalar_reductions(n):
    x = rng.standard_normal(n)
    check(lambda X: {"mu": X.mean(), "sd": X.std(), "hi": X.max(), "n": (X > 0).sum()}, x, rtol="trans")


@pytest.mark.parametrize("rows", [1000, 200_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standard_scaler_pattern(rows, dtype):
    X = rng.standard_normal((rows, 8)).astype(dtype) * 3 + 1
    # numpy sums float32 columns row after row (error growing with the rows); jitensor's split partial
    # sums are more accurate, so float32 is held to the float64 truth at numpy's own error, not to numpy
    f32 = dtype == np.float32
    check(lambda X: (X.mean(axis=0), X.std(axis=0)), X, rtol=1e-4 if f32 else "trans")
    if f32:
        got = jitensor.jit(lambda X: X.mean(axis=0))(X)
        truth = X.astype(np.float64).mean(axis=0)
        assert np.abs(got - truth).max() <= max(np.abs(X.mean(axis=0) - truth).max(), 1e-6)
    check(lambda X: (X - X.mean(axis=0)) / X.std(axis=0), X, rtol=1e-3 if f32 else 1e-9, atol=1e-3 if f32 else 1e-12)  # x - mean cancels


@pytest.mark.parametrize("n", [4, 5, 64, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_of_two_matvecs(n, dtype):
    A = rng.standard_normal((n, n)).astype(dtype) / np.sqrt(n)
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    u, w = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    check(lambda A, x, y: (np.exp(A @ x), np.exp(A @ y)), A, x, y, rtol=tol, atol=tol)
    check(lambda A, x, y, u, w: (u + A @ x, w + y @ A), A, x, y, u, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [1000, 4 * MIN_ELEMENTS])
def test_sibling_groups_that_would_form_a_cycle(n):
    """a1 and a2 could share a kernel, and b1 and b2 could: but b1 needs a reduction of a1 and a2 one
    of b2, so merging both pairs would make each merged kernel wait on the other."""
    def f(x, y):
        a1 = x * 2.0
        b2 = y * 3.0
        b1 = y + a1.sum()
        a2 = x - b2.sum()
        return a1, a2, b1, b2
    x, y = rng.random(n), rng.random(n)
    check(f, x, y, rtol=1e-9)


def test_siblings_after_their_inputs_still_share_a_kernel():
    """The ordering fix keeps the sibling merge where it is legal: call and put of Black-Scholes-like
    outputs computed from one split reduction are one kernel after it."""
    def f(x):
        m = x.mean()
        return np.exp(x - m), np.log1p(np.abs(x - m))
    x = rng.random(4 * MIN_ELEMENTS)
    check(f, x, rtol="trans", atol=1e-12)  # x - m cancels near the mean
    plan = jitensor.explain(f, x, what=("fused",))
    assert plan.count("exp(") == 1 and "log1p(" in plan
    groups = {line.split("# group ")[1] for line in plan.splitlines() if ("exp(" in line or "log1p(" in line)}
    assert len(groups) == 1, plan


def test_check_order_rejects_a_kernel_before_its_input():
    from jitensor.graph import ops
    from jitensor.graph.ir import Graph, Node, TensorType, make_attrs
    x = Node("input", (), make_attrs(index=0), TensorType((8,), np.dtype(np.float64)))
    s = ops.reduce(x, "sum", (0,), np.dtype(np.float64))
    y = ops.reshape(s, ())
    g = Graph((x,), (y, s))
    plan = fuse.plan_fusion(g)
    fuse.check_order(plan, g)  # the real plan is fine
    bad = fuse.FusionPlan(plan.materialized, tuple(reversed(plan.order)), plan.row_local, plan.epilogue, plan.siblings)
    with pytest.raises(CompileError, match="computed later"):
        fuse.check_order(bad, g)
    lost = fuse.FusionPlan(plan.materialized, plan.order[1:], plan.row_local, plan.epilogue, plan.siblings)
    with pytest.raises(CompileError):
        fuse.check_order(lost, g)
