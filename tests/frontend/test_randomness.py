"""Randomness inside a jitted function raises instead of freezing one draw into the compiled code."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import jitensor
from jitensor.errors import TracingError
from helpers import check

X = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
GLOBAL_RNG = np.random.default_rng(0)
GLOBAL_HOLDER = {"rng": np.random.default_rng(1)}


def jit(f, **kw):
    return jitensor.jit(f, cache=False, **kw)


def _raises(f, *args, names=(), line=None):
    with pytest.raises(TracingError) as info:
        f(*args)
    msg = str(info.value)
    assert "pass the random array as an argument" in msg, msg
    for n in names:
        assert n in msg, f"{n!r} not in {msg}"
    if line is not None:
        assert "test_randomness.py" in msg and line in msg, msg
    return msg


@pytest.mark.parametrize("call", ["standard_normal", "rand", "uniform", "randint", "default_rng", "seed"])
def test_module_level_random_functions(call):
    def f(x):
        r = {"standard_normal": lambda: np.random.standard_normal(x.shape),
             "rand": lambda: np.random.rand(*x.shape),
             "uniform": lambda: np.random.uniform(size=x.shape),
             "randint": lambda: np.random.randint(0, 5, size=x.shape),
             "default_rng": lambda: np.random.default_rng().standard_normal(x.shape),
             "seed": lambda: np.random.seed(0) or 0.0}[call]()
        return x + r
    _raises(jit(f), X, names=(f"np.random.{call}()",), line="np.random")


def test_generator_created_inside():
    def f(x):
        rng = np.random.default_rng(42)
        return x + rng.standard_normal(x.shape)
    _raises(jit(f), X, names=("np.random.default_rng()",), line="rng = np.random.default_rng(42)")


def test_generator_captured_from_globals_and_closures():
    def g(x):
        return x + GLOBAL_RNG.standard_normal(x.shape)
    _raises(jit(g), X, names=("global `GLOBAL_RNG`",))

    def h(x):
        return x * GLOBAL_HOLDER["rng"].random(x.shape)
    _raises(jit(h), X, names=("global `GLOBAL_HOLDER['rng']`",))

    rng = np.random.default_rng(3)

    def c(x):
        return x - rng.integers(0, 3, size=x.shape)
    _raises(jit(c), X, names=("variable of c's closure `rng`",))

    legacy = np.random.RandomState(0)

    def d(x):
        return x + legacy.standard_normal(x.shape)
    _raises(jit(d), X, names=("`legacy`",))


def test_generator_passed_as_static_argument():
    def f(x, rng):
        return x + rng.standard_normal(x.shape)
    _raises(jit(f, static_argnames=("rng",)), X, np.random.default_rng(5), names=("argument `rng`",))


def test_global_state_drawn_through_a_captured_function():
    # a name imported before tracing is not replaced, but the draw changes numpy's global state
    draw = np.random.standard_normal

    def f(x):
        return x + draw(x.shape)
    _raises(jit(f), X, names=("numpy's global random state",))


def test_random_array_as_argument_works_and_changes():
    f = jit(lambda x, noise: x + noise)
    rng = np.random.default_rng(7)
    a = check(f.__wrapped__, X, rng.standard_normal(X.shape).astype(np.float32), jit_fn=f)[1]
    b = check(f.__wrapped__, X, rng.standard_normal(X.shape).astype(np.float32), jit_fn=f)[1]
    assert not np.array_equal(a, b)


def test_other_threads_keep_numpy_random_while_tracing():
    # the replaced np.random functions act only for the thread that traces
    started, done = threading.Event(), threading.Event()
    got = []

    def other():
        started.wait(10)
        got.append(np.random.default_rng(0).standard_normal(3))
        done.set()

    def f(x):
        started.set()
        assert done.wait(10)
        return x + 1
    t = threading.Thread(target=other)
    t.start()
    jit(f)(X)
    t.join()
    np.testing.assert_array_equal(got[0], np.random.default_rng(0).standard_normal(3))
    assert np.random.standard_normal.__module__ != "jitensor.frontend.numpy_hooks"  # restored after the trace


class _Model:
    def __init__(self):
        self.scale = 2.0
        self.rng = np.random.default_rng(11)


def test_generator_inside_a_static_object():
    def f(x, model):
        return x * model.scale + model.rng.normal(size=x.shape)
    _raises(jit(f, static_argnames=("model",)), X, _Model(), names=("argument `model.rng`",))
    # an object without randomness is fine
    check(lambda x, model: x * model.scale, X, model=_Model(), static_argnames=("model",))


FRESH = """
import sys
import numpy as np
import jitensor
from jitensor.errors import TracingError
assert "numpy.random" not in sys.modules, "numpy imported numpy.random itself"

@jitensor.jit
def plain(x):
    return np.tanh(x) * 2.0

@jitensor.jit
def noisy(x):
    return x + np.random.standard_normal(x.shape)

x = np.linspace(0, 1, 12, dtype=np.float32)
assert np.allclose(plain(x), np.tanh(x) * 2.0)
print("random imported by a trace:", "numpy.random" in sys.modules)
try:
    noisy(x)
    print("no error")
except TracingError as e:
    print("error:", "pass the random array as an argument" in str(e))
"""


def test_fresh_process_without_numpy_random():
    """numpy.random is imported lazily (~5-10 ms): tracing does not import it, and a function whose trace
    imports it (the process's first np.random use, not hooked yet) still raises."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "JITENSOR_CACHE_DIR"}
    env["JITENSOR_DISABLE_CACHE"] = "1"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines() == ["random imported by a trace: False", "error: True"], r.stdout
