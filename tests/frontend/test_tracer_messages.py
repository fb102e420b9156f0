"""What a user sees of a traced value: Python-number arguments used as sizes name the argument; printing a
traced value says what it is; globals are read once, when the function is traced."""
from __future__ import annotations

import numpy as np
import pytest

import jitensor
from jitensor.errors import ConcretizationError
from helpers import check

X = np.arange(12, dtype=np.float64).reshape(3, 4)


def jit(f, **kw):
    return jitensor.jit(f, cache=False, **kw)


SIZE_USES = {
    "np.zeros((n, n))": lambda x, n: np.zeros((n, n)) + x.sum(),
    "x[:n]": lambda x, n: x[:n],
    "range(n)": lambda x, n: sum(x[i] for i in range(n)),
    "x.reshape(n, -1)": lambda x, n: x.reshape(n, -1),
    "np.ones(n + 1)": lambda x, n: np.ones(n + 1),
    "if n > 1": lambda x, n: x * 2 if n > 1 else x,
}


@pytest.mark.parametrize("use", list(SIZE_USES))
def test_python_int_argument_used_as_size_names_it(use):
    fn = SIZE_USES[use]
    with pytest.raises(ConcretizationError) as info:
        jit(fn)(X, 2)
    msg = str(info.value)
    assert "argument `n`" in msg, msg
    assert 'static_argnames=("n",)' in msg, msg
    assert "test_tracer_messages.py" in msg, msg
    # and the suggestion works: numpy's result with n static
    check(fn, X, n=2, static_argnames=("n",))


def test_python_int_in_a_tuple_argument_names_the_parameter():
    with pytest.raises(ConcretizationError, match=r'argument `shape\[0\]`.*static_argnames=\("shape",\)'):
        jit(lambda x, shape: x.reshape(shape))(X, (2, 6))


@pytest.mark.parametrize("show", [repr, str, lambda t: f"{t}", lambda t: f"{t:.3f}", lambda t: "%s" % (t,)],
                         ids=["repr", "str", "fstring", "fstring-spec", "percent"])
def test_printing_a_traced_value_says_what_it_is(show):
    seen = []

    def f(x, r):
        seen.append((show(x), show(x.sum(axis=0)), show(r), show(r * 2)))
        return x * r
    x32 = X.astype(np.float32)
    np.testing.assert_array_equal(jit(f)(x32, 1.5), x32 * 1.5)  # (numpy itself refuses f"{array:.3f}")
    xs, s, rs, r2 = seen[-1]
    assert xs.startswith("Traced float32[3,4] (jitensor: values are not known while tracing"), xs
    assert s.startswith("Traced float32[4] ("), s
    assert rs.startswith("Traced Python float (argument `r`)"), rs
    assert r2.startswith("Traced Python float (argument `r`)"), r2


def test_print_inside_does_not_break(capsys):
    def f(x):
        print("x is", x)
        return x + 1
    check(f, X, jit_fn=jit(f))
    assert "x is Traced float64[3,4]" in capsys.readouterr().out


SCALE = 2.0


def _scaled(x):
    return x * SCALE


def test_globals_are_frozen_at_trace_time():
    """A global is read while tracing, and its value is compiled in: changing it later does not recompile."""
    global SCALE
    f = jit(_scaled)
    try:
        SCALE = 2.0
        np.testing.assert_array_equal(f(X), X * 2.0)
        SCALE = 3.0
        np.testing.assert_array_equal(f(X), X * 2.0)  # the program compiled with SCALE = 2.0 runs again
        np.testing.assert_array_equal(f(X[:2]), X[:2] * 3.0)  # a new signature traces again, reading 3.0
        f.cache_clear()
        np.testing.assert_array_equal(f(X), X * 3.0)
    finally:
        SCALE = 2.0
