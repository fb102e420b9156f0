"""Regressions found by the differential fuzzer (tests/fuzzgen.py), minimized: one named test per wrong
result or wrong error, each on both sides of the threshold it was found at when one was involved."""
from __future__ import annotations

import numpy as np
import pytest

import fuzzgen
from helpers import check


def _clip_wide_python_int_bounds(a):
    return np.clip(a, -1, 2), np.clip(a, 1, 300), np.clip(a, -5, 1000), np.clip(a, -1000, 1000)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.int8, np.uint64])
def test_clip_with_python_int_bounds_beyond_the_dtype(dtype):
    # numpy drops a Python int bound beyond the integer dtype's range instead of raising OverflowError
    a = np.array([0, 1, 5, 100, np.iinfo(dtype).max], dtype=dtype)
    check(_clip_wide_python_int_bounds, a)


def _sibling_reads_gathered_output(x, i, b):
    flat = x.reshape(-1)
    g = np.take(flat, i, axis=0)
    w = np.where(i > 0, i, g)      # reads g, an output of its own kernel
    t = np.where(i > 0, i, b)      # w's sibling: same shape, elementwise, neither reads the other
    return t, g, w


def test_sibling_outputs_read_a_gathered_output():
    # the merged sibling kernel ran before the gather's kernel and read its buffer unwritten (NaN on a first
    # call, the previous call's values after)
    rng = np.random.default_rng(135)
    x = rng.uniform(0.1, 3, size=(1, 2, 128)).astype(np.float32)[:, :, ::2]
    i = rng.integers(-128, 128, size=(7,))
    b = rng.integers(-60, 60, size=(1,), dtype=np.int64)
    for k in range(2):
        check(_sibling_reads_gathered_output, x, i, b)
        x = x + 1  # new values, same signature: a stale buffer shows as the previous call's values


def _compare_with_out_of_range_python_ints(a):
    return a != -1, a < -1, a >= -1, a == 2 ** 64, a <= 300, a > -129, -1 < a, 2 ** 64 != a, 300 <= a


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64, np.int8])
def test_comparison_with_python_int_beyond_the_dtype(dtype):
    # NumPy 2 compares an integer array with any Python int exactly (no OverflowError): a uint array is
    # never equal to -1, an int8 one is always > -129
    a = np.array([0, 1, 5, 100, np.iinfo(dtype).max], dtype=dtype)
    check(_compare_with_out_of_range_python_ints, a)


def _numpy_functions_of_a_python_float(r, x):
    return np.sqrt(np.abs(r)) + x, np.exp(r) * x, np.float64(2.5) * x


def test_numpy_functions_of_a_python_float_argument_are_strong_float64():
    # np.abs/np.sqrt/np.exp of a Python float give np.float64 scalars, which are not weak: float32 arrays
    # combined with them promote to float64
    x = np.linspace(-2, 2, 7, dtype=np.float32)
    check(_numpy_functions_of_a_python_float, 0.75, x, rtol="trans")


def _power_of_a_reduced_bool(x):
    v = x.all()
    return v ** 2, (x > 0) ** 2


def test_power_of_a_bool_scalar_from_a_reduction():
    # x.all() is a numpy bool scalar; numpy's scalar power with a Python int gives int64 (a bool array's
    # power gives int8)
    check(_power_of_a_reduced_bool, np.arange(1, 15, dtype=np.int8).reshape(2, 7)[:, ::2])


def _scalar_min_over_split_threshold_with_a_scalar_sibling(a0, a1, a2, a3):
    eq = a0 == a1
    both = np.stack([eq, np.invert(eq)], axis=2)
    return np.reciprocal(a3), a2 + both.min()


@pytest.mark.parametrize("rows", [4095, 8192])  # 65520 / 131072 stacked elements: either side of a split
def test_scalar_min_over_split_threshold_with_a_scalar_sibling(rows):
    rng = np.random.default_rng(185)
    a0 = rng.uniform(-2, 2, size=(rows, 8))
    a1 = rng.integers(0, 60, size=(1, rows), dtype=np.uint64).T
    a3 = rng.uniform(0.1, 3, size=())
    check(_scalar_min_over_split_threshold_with_a_scalar_sibling, a0, a1, np.int16(2), a3)


def _sum_of_an_output_with_a_sibling(a1, a2, a3):
    w = np.where(a3, np.logical_not(a1), a3)
    return np.sum(w), np.ones_like(a2) + a2, w


def test_sum_of_an_output_that_has_a_sibling():
    # the merged kernel of the two same-shape outputs ran after the sum that reads one of them
    rng = np.random.default_rng(207)
    a1 = rng.random(size=(1, 3, 8)) < 0.5
    a2 = rng.uniform(0.1, 3, size=(1, 6, 8))[:, ::2, :]
    a3 = (rng.random(size=(1, 6, 8)) < 0.5)[:, ::2, :]
    check(_sum_of_an_output_with_a_sibling, a1, a2, a3)


def _uint64_int64_comparisons(a, b):
    return a >= b, a < b, a == b, a != b, a > b, a <= b, b >= a, b < a, b == a, b != a, b > a, b <= a


@pytest.mark.parametrize("n", [3, 37, 1000])  # scalar tail only, and vector lanes
def test_uint64_int64_comparison_is_exact(n):
    # numpy has exact uint64/int64 comparison loops: a negative int64 is below every uint64, and a uint64
    # above 2**63 is above every int64 (neither operand may be reinterpreted in the other's type)
    rng = np.random.default_rng(40078)
    a = rng.integers(0, 2 ** 64, size=n, dtype=np.uint64)
    b = rng.integers(-2 ** 63, 2 ** 63, size=n, dtype=np.int64)
    a[:3], b[:3] = [5, 2 ** 63 + 1, 0], [-3, -1, 0]
    b[n // 2:] = a[n // 2:].astype(np.int64)  # equal values where they fit, wrapped ones elsewhere
    check(_uint64_int64_comparisons, a, b)
    check(_uint64_int64_comparisons, a[::-2], b[::-2])  # strided views


def _row_reduction_of_a_costly_value_and_its_sibling(x, d):
    v = x % d  # costly enough (inline cost >= 10) for softmax's row cache
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e + 1, v + 1


def _row_reduction_of_a_cheap_value_and_its_sibling(x, d):
    v = x * d  # cheap: no row cache
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e + 1, v + 1


@pytest.mark.parametrize("fn", [_row_reduction_of_a_costly_value_and_its_sibling,
                                _row_reduction_of_a_cheap_value_and_its_sibling])
@pytest.mark.parametrize("shape", [(4, 100), (68, 511), (300, 1000)])  # below/above the thread pool's work
def test_row_cache_is_used_only_by_the_kernel_that_computes_the_reduction(fn, shape):
    # the kernel of `v + 1` (which does not compute the row max) read v back from its own output row, as if
    # the row cache of the softmax kernel had stored it there: it got uninitialized memory
    rng = np.random.default_rng(402)
    x = rng.uniform(-2, 2, size=shape)
    d = rng.uniform(0.1, 3, size=(shape[0], 1))
    # on memory poisoned after numpy's run: numpy's freed temporary x % d would otherwise hide the bug
    out = fuzzgen.compare(fn, (x, d), "trans")
    assert out.status == "ok", out.detail
