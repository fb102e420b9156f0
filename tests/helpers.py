"""Shared test helpers: numpy is the spec.

`check(fn, *args)` runs `fn` through numpy and through `jitensor.jit(fn)` and asserts that the
results have the same structure, dtype, shape and values (exactly for integers and bools, NaN
and infinity positions equal, a dtype-appropriate tolerance for floats), and that the jitted
call did not modify its inputs.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import jitensor
from jitensor.errors import JitensorError

# relative tolerances per float dtype: plain arithmetic, and transcendental functions / reductions
ARITH = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}
TRANS = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}

INT_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.uint32]
FLOAT_DTYPES = [np.float32, np.float64]
ALL_DTYPES = [np.bool_] + INT_DTYPES + FLOAT_DTYPES

_JITTED: dict = {}


def jitted(fn, **jit_kw):
    """One JitFunction per (fn, options), shared across parametrized cases (each signature compiles once)."""
    key = (fn, tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in jit_kw.items())))
    jf = _JITTED.get(key)
    if jf is None:
        jf = _JITTED[key] = jitensor.jit(fn, cache=False, **jit_kw)
    return jf


def _tol(spec, dtype, table):
    if spec is None:
        return table.get(dtype, 0.0)
    if spec == "trans":
        return TRANS.get(dtype, 0.0)
    if spec == "arith":
        return ARITH.get(dtype, 0.0)
    if isinstance(spec, dict):
        return spec.get(dtype, spec.get(np.dtype(dtype).type, 0.0))
    return float(spec)


def assert_values(expected, got, rtol=None, atol=None, path="result"):
    """Same dtype, shape and values (see module docstring); rtol may be a number, 'arith', 'trans' or a dict."""
    e = np.asarray(expected)
    g = np.asarray(got)
    assert g.dtype == e.dtype, f"{path}: dtype {g.dtype} != numpy's {e.dtype}"
    assert g.shape == e.shape, f"{path}: shape {g.shape} != numpy's {e.shape}"
    if e.dtype.kind in "biu":
        if not np.array_equal(e, g):
            bad = np.argwhere(e != g)[:5]
            detail = ", ".join(f"{tuple(i)}: got {g[tuple(i)]!r} want {e[tuple(i)]!r}" for i in bad)
            raise AssertionError(f"{path}: integer/bool values differ ({np.count_nonzero(e != g)} of {e.size}): "
                                 f"{detail}")
        return
    assert e.dtype.kind == "f", e.dtype
    en, gn = np.isnan(e), np.isnan(g)
    if not np.array_equal(en, gn):
        bad = np.argwhere(en != gn)[:5]
        detail = ", ".join(f"{tuple(i)}: got {g[tuple(i)]!r} want {e[tuple(i)]!r}" for i in bad)
        raise AssertionError(f"{path}: NaN positions differ: {detail}")
    ei, gi = np.isinf(e), np.isinf(g)
    if not (np.array_equal(ei, gi) and np.array_equal(e[ei], g[gi])):
        bad = np.argwhere((ei != gi) | (ei & (e != g)))[:5]
        detail = ", ".join(f"{tuple(i)}: got {g[tuple(i)]!r} want {e[tuple(i)]!r}" for i in bad)
        raise AssertionError(f"{path}: infinities differ: {detail}")
    fin = ~(en | ei)
    r = _tol(rtol, e.dtype, ARITH)
    a = _tol(atol, e.dtype, {}) if atol is not None else 0.0
    ef, gf = e[fin].astype(np.float64), g[fin].astype(np.float64)
    with np.errstate(all="ignore"):
        err = np.abs(ef - gf)
        ok = err <= a + r * np.abs(ef)
    if not ok.all():
        idx = np.flatnonzero(~ok)[:5]
        detail = ", ".join(f"got {gf[i]!r} want {ef[i]!r}" for i in idx)
        raise AssertionError(f"{path}: {np.count_nonzero(~ok)} of {ef.size} values outside rtol={r}, atol={a}: "
                             f"{detail}")


def assert_same(expected, got, rtol=None, atol=None, path="result"):
    """Recursive comparison of returned structures (tuple/list/dict of arrays and scalars)."""
    if isinstance(expected, (tuple, list)):
        assert type(got) is type(expected), f"{path}: got a {type(got).__name__}, numpy gives a " \
                                             f"{type(expected).__name__}"
        assert len(got) == len(expected), f"{path}: length {len(got)} != {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_same(e, g, rtol, atol, f"{path}[{i}]")
        return
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{path}: got {type(got).__name__}, numpy gives a dict"
        assert set(got) == set(expected), f"{path}: keys {sorted(got)} != {sorted(expected)}"
        for k in expected:
            assert_same(expected[k], got[k], rtol, atol, f"{path}[{k!r}]")
        return
    if expected is None:
        assert got is None, f"{path}: got {got!r}, numpy gives None"
        return
    if isinstance(expected, (bool, int, float)) and not isinstance(expected, np.generic):
        # a Python number: a constant comes back as the same Python type; a value computed from a Python scalar
        # argument may come back as the numpy scalar of numpy's default dtype for it (bool, int64, float64)
        if type(got) is type(expected):
            assert got == expected or (got != got and expected != expected), f"{path}: {got!r} != {expected!r}"
            return
        assert isinstance(got, (np.generic, np.ndarray)), f"{path}: got {type(got).__name__}, want " \
                                                          f"{type(expected).__name__}"
        assert_values(np.asarray(expected), got, rtol, atol, path)
        return
    assert isinstance(got, (np.ndarray, np.generic)), f"{path}: got a {type(got).__name__}"
    assert_values(expected, got, rtol, atol, path)


def _snapshot(args):
    return copy.deepcopy(args)


def _assert_unchanged(before, after, path="args"):
    if isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray)
        assert before.dtype == after.dtype and before.shape == after.shape, f"{path}: input changed its type"
        assert np.array_equal(before, after, equal_nan=before.dtype.kind == "f"), f"{path}: input was modified"
        return
    if isinstance(before, (tuple, list)):
        for i, (b, a) in enumerate(zip(before, after)):
            _assert_unchanged(b, a, f"{path}[{i}]")
        return
    if isinstance(before, dict):
        for k in before:
            _assert_unchanged(before[k], after[k], f"{path}[{k!r}]")


def run_numpy(fn, *args, **kw):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice", "Degrees of freedom <= 0"
        return fn(*args, **kw)


def check(fn, *args, rtol=None, atol=None, static_argnames=(), jit_fn=None, **kw):
    """Compare fn(*args, **kw) under numpy and under jitensor.jit; returns (numpy result, jitensor result).

    rtol/atol: None (float32 2e-6, float64 1e-12), 'trans' (1e-5 / 1e-10), a number, or {dtype: tol}.
    static_argnames: passed to jit (those keyword arguments are static); jit_fn: an existing JitFunction.
    """
    before = _snapshot((args, kw))
    expected = run_numpy(fn, *copy.deepcopy(args), **copy.deepcopy(kw))
    jf = jit_fn if jit_fn is not None else jitted(fn, static_argnames=tuple(static_argnames))
    with np.errstate(all="ignore"):
        got = jf(*args, **kw)
    _assert_unchanged(before, (args, kw))
    assert_same(expected, got, rtol, atol)
    return expected, got


def check_raises(fn, *args, exc=JitensorError, match=None, static_argnames=(), jit_fn=None, **kw):
    """numpy raises (any exception) for these arguments, and jitensor raises `exc` (a JitensorError)."""
    assert issubclass(exc, JitensorError)
    with pytest.raises(Exception):
        run_numpy(fn, *args, **kw)
    jf = jit_fn if jit_fn is not None else jitted(fn, static_argnames=tuple(static_argnames))
    with pytest.raises(exc, match=match) as info:
        with np.errstate(all="ignore"):
            jf(*args, **kw)
    return info.value


def xfail_bug(reason):
    return pytest.mark.xfail(strict=True, reason=f"BUG: {reason}")
