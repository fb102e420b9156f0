"""numpy's scalar rules for Python numbers, traced (arguments) or literal.

Python operators between Python numbers give a Python number (weak in numpy's promotion: `r * 2 * x`
stays float32), while a numpy function of a Python number gives a numpy scalar, strongly typed
(`np.exp(r) * x` is float64 for a float32 x). Every case is compared with numpy: values and dtypes.
"""
from __future__ import annotations

import numpy as np
import pytest

import jitensor
from jitensor.errors import ConcretizationError, DTypeError, JitensorError
from helpers import check, jitted, xfail_bug

XS = {
    "float32": np.linspace(-2, 3, 7, dtype=np.float32),
    "float64": np.linspace(-2, 3, 7, dtype=np.float64),
    "int32": np.arange(-3, 4, dtype=np.int32),
    "uint8": np.arange(0, 7, dtype=np.uint8),
}
RS = {"float": 0.75, "int": 3, "bool": True}

FNS = {
    # numpy functions of Python numbers: strong numpy scalars
    "np.exp(r)*x": lambda x, r: np.exp(r) * x,
    "np.sqrt(r)+x": lambda x, r: np.sqrt(r) + x,
    "np.multiply(r,2)*x": lambda x, r: np.multiply(r, 2) * x,
    "np.maximum(r,1)*x": lambda x, r: np.maximum(r, 1) * x,
    "np.negative(r)+x": lambda x, r: np.negative(r) + x,
    "np.sqrt(2)*x": lambda x, r: np.sqrt(2) * x,
    "np.asarray(r)*x": lambda x, r: np.asarray(r) * x,
    "np.array(r)*x": lambda x, r: np.array(r) * x,
    "np.asarray(r,f32)*x": lambda x, r: np.asarray(r, dtype=np.float32) * x,
    "np.sum(r)*x": lambda x, r: np.sum(r) * x,
    "np.where(x>1,r,x)": lambda x, r: np.where(x > 1, r, x),
    "np.where(x>1,np.exp(r),x)": lambda x, r: np.where(x > 1, np.exp(r), x),
    "x.max()*np.exp(r)": lambda x, r: x.max() * np.exp(r),
    "(r*x).sum()": lambda x, r: (r * x).sum(),
    # Python operators between Python numbers: Python numbers, weak
    "r*2*x": lambda x, r: r * 2 * x,
    "-r*x": lambda x, r: -r * x,
    "abs(r)*x": lambda x, r: abs(r) * x,
    "r**2*x": lambda x, r: r ** 2 * x,
    "(r/2)*x": lambda x, r: (r / 2) * x,
    "(r//2)*x": lambda x, r: (r // 2) * x,
    "(r+r)*x": lambda x, r: (r + r) * x,
    "(r>0)*x": lambda x, r: (r > 0) * x,
    "r+=1": lambda x, r: _iadd(r) * x,
    "r**-1*x": lambda x, r: (r ** -1) * x,
    "(2**r)*x": lambda x, r: (2 ** r) * x,
    "(r%2)*x": lambda x, r: (r % 2) * x,
}


def _iadd(r):
    r += 1
    return r


def _cases():
    for name in FNS:
        for xk in XS:
            for rk in RS:
                marks = ()
                if name == "-r*x" and xk == "uint8" and rk != "float":
                    marks = xfail_bug("a negative Python int computed from an argument is cast to uint8 without the "
                                      "OverflowError numpy raises (see test_python_int_argument_out_of_range_raises)")
                yield pytest.param(name, xk, rk, marks=marks, id=f"{name}-{xk}-{rk}")


@pytest.mark.parametrize("name, xk, rk", list(_cases()))
def test_python_scalar_rules(name, xk, rk):
    x, r = XS[xk], RS[rk]
    fn = FNS[name]
    try:
        with np.errstate(all="ignore"):
            expected = fn(x, r)
    except (TypeError, OverflowError):  # e.g. np.negative(True): numpy refuses, and so must jitensor
        with pytest.raises((TypeError, OverflowError, JitensorError)):
            jitted(fn)(x, r)
        return
    if rk == "bool" and ("np.exp(r)" in name or "np.sqrt(r)" in name):
        # np.exp(True) is a float16 (numpy's loop for bool), a dtype jitensor refuses rather than computes otherwise
        assert type(np.exp(r)) is np.float16
        with pytest.raises(DTypeError, match="float16"):
            jitted(fn)(x, r)
        return
    _, got = check(fn, x, r, rtol="trans")
    assert np.asarray(got).dtype == np.asarray(expected).dtype


@pytest.mark.parametrize("name", ["np.exp(r)*x", "r*2*x", "np.where(x>1,r,x)"])
def test_python_scalar_rules_parallel_size(name):
    # above the size from which loops are split across threads
    x = np.linspace(-2, 3, 300_001, dtype=np.float32)
    check(FNS[name], x, 0.75, rtol="trans")
    check(FNS[name], x[::-3], 2, rtol="trans")


@pytest.mark.parametrize("fn", [lambda r: np.exp(r), lambda r: r * 2, lambda r: np.float64(2) * r,
                                lambda r: (r / 3, np.add(r, 1), -r)],
                         ids=["np.exp(r)", "r*2", "np.float64(2)*r", "several"])
@pytest.mark.parametrize("r", [0.5, 7, False])
def test_scalar_results(fn, r):
    if r is False and fn(r) is not None and np.asarray(fn(r)[0] if isinstance(fn(r), tuple) else fn(r)).dtype == np.float16:
        with pytest.raises(DTypeError):
            jitted(fn)(r)
        return
    check(fn, r, rtol="trans")


def test_literal_python_scalars_in_numpy_functions():
    x = XS["float32"]
    assert check(lambda x: np.sqrt(2) * x, x)[1].dtype == np.float64
    assert check(lambda x: np.float32(np.sqrt(2)) * x, x)[1].dtype == np.float32
    assert check(lambda x: 2.0 ** 0.5 * x, x)[1].dtype == np.float32
    assert check(lambda x: np.add(1.5, 2) * x, x)[1].dtype == np.float64


def test_numpy_scalar_type_of_a_traced_number_says_what_to_write():
    f = jitensor.jit(lambda x, r: np.float32(r) * x, cache=False)
    with pytest.raises(ConcretizationError, match=r"np.asarray\(x, dtype=np.float32\)") as info:
        f(XS["float32"], 0.5)
    assert "test_python_scalars.py" in str(info.value)
    # and the suggested spelling gives numpy's np.float32(r) result
    check(lambda x, r: np.asarray(r, dtype=np.float32) * x, XS["float64"], 0.5)
    assert jitted(lambda x, r: np.asarray(r, dtype=np.float32) * x)(XS["float32"], 0.5).dtype == np.float32


def test_python_division_by_a_literal_zero_raises_as_in_python():
    f = jitensor.jit(lambda x, r: x * (r / 0), cache=False)
    with pytest.raises(ZeroDivisionError):
        f(XS["float32"], 3)


@pytest.mark.parametrize("r", [0.5, 7, True])
def test_python_operators_return_python_numbers(r):
    f = jitensor.jit(lambda r: (r * 2, -r, r / 4, r > 0, np.exp(r * 1.0)), cache=False)
    got, want = f(r), (r * 2, -r, r / 4, r > 0, np.exp(r * 1.0))
    assert [type(v) for v in got] == [type(v) for v in want], (got, want)
    assert got[:4] == want[:4] and abs(got[4] - want[4]) <= 1e-15 * want[4]  # exp: within 2 ulp
