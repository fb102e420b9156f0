"""The dispatcher: signature cache (hits/misses), static arguments, keywords and defaults, nesting, methods,
threads, explain() and JITENSOR_DUMP, the disk cache in a temporary directory."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import jitensor
from jitensor.errors import ArgumentError, JitensorError
from helpers import check

REPO_ROOT = Path(jitensor.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Never touch the user's kernel cache: every test gets an empty cache directory."""
    monkeypatch.setenv("JITENSOR_CACHE_DIR", str(tmp_path / "jitcache"))
    monkeypatch.delenv("JITENSOR_DISABLE_CACHE", raising=False)
    monkeypatch.delenv("JITENSOR_DUMP", raising=False)


def jit(f=None, **kw):
    kw.setdefault("cache", False)
    return jitensor.jit(f, **kw) if f is not None else jitensor.jit(**kw)


def info(f):
    i = f.cache_info()
    return i.hits, i.misses, len(i.signatures)


# ---------------------------------------------------------------------------------------------
# the signature cache


def test_same_signature_never_recompiles():
    f = jit(lambda x, y: x * y + 1)
    a, b = np.ones((3, 4)), np.full((3, 4), 2.0)
    for _ in range(5):
        np.testing.assert_array_equal(f(a, b), a * b + 1)
    assert info(f) == (4, 1, 1)
    # new arrays with the same signature hit too
    f(np.zeros((3, 4)), np.zeros((3, 4)))
    assert info(f) == (5, 1, 1)


def test_new_shape_dtype_strides_compile_once_more():
    f = jit(lambda x: x * 2)
    x = np.arange(12.0).reshape(3, 4)
    f(x)
    assert info(f)[1:] == (1, 1)
    f(np.arange(8.0).reshape(2, 4))          # new shape
    assert info(f)[1:] == (2, 2)
    f(np.arange(12, dtype=np.float32).reshape(3, 4))  # new dtype
    assert info(f)[1:] == (3, 3)
    np.testing.assert_array_equal(f(x.T), x.T * 2)  # same dtype, new shape and strides
    assert info(f)[1:] == (4, 4)
    v = np.arange(24.0).reshape(3, 8)[:, ::2]  # shape (3, 4) like x, but non-contiguous
    np.testing.assert_array_equal(f(v), v * 2)
    assert info(f)[1:] == (5, 5)
    # and each of them hits from now on
    hits = info(f)[0]
    for arr in (x, np.arange(8.0).reshape(2, 4), x.T, v):
        f(arr)
    assert info(f) == (hits + 4, 5, 5)


def test_python_scalar_values_do_not_recompile():
    f = jit(lambda x, s: x * s)
    x = np.arange(4.0)
    for s in (1.0, 2.5, -3.0):
        np.testing.assert_array_equal(f(x, s), x * s)
    assert info(f)[1] == 1
    f(x, 2)  # int: a new signature (the result dtype can differ)
    f(x, True)
    assert info(f)[1] == 3
    np.testing.assert_array_equal(f(x, 7), x * 7)
    assert info(f)[1] == 3


def test_numpy_scalar_dtypes_are_part_of_the_signature():
    f = jit(lambda x, s: x * s)
    x = np.arange(4, dtype=np.int8)
    r1 = f(x, np.int8(3))
    r2 = f(x, np.int32(3))
    assert r1.dtype == np.int8 and r2.dtype == np.int32
    assert info(f)[1] == 2


def test_container_structure_is_part_of_the_signature():
    f = jit(lambda p: p["a"] + p["b"])
    a, b = np.ones(3), np.arange(3.0)
    f({"a": a, "b": b})
    f({"b": b, "a": a})  # same keys: same signature
    assert info(f)[1] == 1
    g = jit(lambda t: t[0] - t[1])
    g((a, b))
    g([a, b])  # list vs tuple: new signature
    assert info(g)[1] == 2
    np.testing.assert_array_equal(g([a, b]), a - b)


def test_cache_clear_and_signatures_text():
    f = jit(lambda x: x + 1)
    f(np.ones((2, 3), np.float32))
    sig = f.cache_info().signatures[0]
    assert "float32" in sig and "2" in sig and "3" in sig
    assert "misses=1" in str(f.cache_info())
    f.cache_clear()
    f(np.ones((2, 3), np.float32))
    assert f.cache_info().misses == 2


def test_compile_seconds_recorded():
    f = jit(lambda x: x + 1)
    f(np.ones(3))
    assert len(f.cache_info().compile_seconds) == 1 and f.cache_info().compile_seconds[0] > 0


# ---------------------------------------------------------------------------------------------
# static arguments


def _reduce(x, axis, keepdims=False):
    return x.sum(axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("how", ["argnames", "argnums"])
def test_static_axis(how):
    kw = {"static_argnames": ("axis", "keepdims")} if how == "argnames" else {"static_argnums": (1, 2)}
    f = jit(_reduce, **kw)
    x = np.arange(24.0).reshape(2, 3, 4)
    for axis in (0, 1, -1, (0, 2), None):
        np.testing.assert_allclose(f(x, axis), x.sum(axis=axis))
    assert info(f)[1] == 5
    np.testing.assert_allclose(f(x, 1), x.sum(axis=1))
    np.testing.assert_allclose(f(x, axis=1), x.sum(axis=1))
    assert info(f)[1] == 5  # same static value: no recompile, positional or keyword
    np.testing.assert_allclose(f(x, 1, True), x.sum(axis=1, keepdims=True))
    assert info(f)[1] == 6


def test_static_argnums_int_and_string_forms():
    f = jit(lambda x, n: x[:n], static_argnums=1)
    np.testing.assert_array_equal(f(np.arange(5), 3), np.arange(3))
    g = jit(lambda x, n: x.reshape(n), static_argnames="n")
    np.testing.assert_array_equal(g(np.arange(6), (2, 3)), np.arange(6).reshape(2, 3))


def test_static_argument_controls_python_flow():
    @jit(static_argnames=("mode",))
    def f(x, mode):
        if mode == "relu":
            return np.maximum(x, 0)
        return np.tanh(x)
    x = np.linspace(-2, 2, 5)
    np.testing.assert_array_equal(f(x, "relu"), np.maximum(x, 0))
    np.testing.assert_allclose(f(x, mode="tanh"), np.tanh(x), rtol=1e-12)
    assert info(f)[1] == 2


def test_static_argument_with_default():
    @jit(static_argnames=("axis",))
    def f(x, axis=-1):
        return x.max(axis=axis)
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(f(x), x.max(axis=-1))
    np.testing.assert_array_equal(f(x, axis=0), x.max(axis=0))


# ---------------------------------------------------------------------------------------------
# keyword arguments and defaults


def test_keywords_and_defaults():
    def g(x, scale=2.0, *, shift=1):
        return x * scale + shift
    f = jit(g)
    x = np.arange(3.0)
    for args, kwargs in [((x,), {}), ((x, 3.0), {}), ((x,), {"shift": 5}), ((), {"x": x, "scale": 1.5}),
                         ((x,), {"scale": 0.5, "shift": -2})]:
        np.testing.assert_array_equal(f(*args, **kwargs), g(*args, **kwargs))
    assert info(f)[1] == 1  # all calls share types: (float64[3], float, int)


def test_array_defaults():
    def g(x, w=np.ones(3)):
        return x @ w
    f = jit(g)
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(f(x), g(x))
    np.testing.assert_array_equal(f(x, np.arange(3.0)), g(x, np.arange(3.0)))


def test_positional_only_parameters():
    def g(x, /, w=np.ones(3)):
        return x @ w
    f = jit(g)
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(f(x), g(x))
    np.testing.assert_array_equal(f(x, np.arange(3.0)), g(x, np.arange(3.0)))


def test_kwargs_function_rejected():
    with pytest.raises(ArgumentError):
        jitensor.jit(lambda x, **kw: x)



def test_varargs():
    def g(x, *rest):
        return x + sum(rest)
    check(g, np.ones(3), np.arange(3.0), np.full(3, 2.0))


def test_varargs_einsum_forwarding():
    def g(*ops):
        return np.einsum("ij,jk->ik", *ops)
    check(g, np.ones((2, 3)), np.ones((3, 4)))


# ---------------------------------------------------------------------------------------------
# composition: jitted calling jitted, methods, decorators


def test_jit_calls_jit():
    inner = jit(lambda v: v * 2)
    outer = jit(lambda v: inner(v) + 1)
    x = np.arange(4.0)
    np.testing.assert_array_equal(outer(x), x * 2 + 1)
    np.testing.assert_array_equal(inner(x), x * 2)


def test_plain_function_called_from_jit():
    def helper(v, k):
        return v ** k
    f = jit(lambda v: helper(v, 2) + helper(v, 3))
    x = np.arange(4.0)
    np.testing.assert_array_equal(f(x), x ** 2 + x ** 3)


class Model:
    def __init__(self, scale):
        self.scale = scale

    @jitensor.jit(static_argnames=("self",), cache=False)
    def forward(self, x):
        return x * self.scale

    @staticmethod
    @jitensor.jit(cache=False)
    def act(x):
        return np.maximum(x, 0)

    @jitensor.jit(cache=False)
    def plain(self, x):
        return x * self.scale

    def __hash__(self):
        return hash(self.scale)

    def __eq__(self, other):
        return isinstance(other, Model) and other.scale == self.scale


def test_methods():
    x = np.linspace(-1, 1, 5)
    m2, m3 = Model(2.0), Model(3.0)
    np.testing.assert_array_equal(m2.forward(x), x * 2)
    np.testing.assert_array_equal(m3.forward(x), x * 3)  # a different static self: recompiles
    np.testing.assert_array_equal(Model.act(x), np.maximum(x, 0))
    np.testing.assert_array_equal(m2.act(x), np.maximum(x, 0))
    # a non-static self cannot be traced: a clear ArgumentError that suggests static_argnames
    with pytest.raises(ArgumentError, match="static"):
        m2.plain(x)


def test_jit_of_numpy_function_directly():
    x = np.linspace(0, 1, 4)
    np.testing.assert_allclose(jit(np.exp)(x), np.exp(x), rtol=1e-12)
    np.testing.assert_allclose(jit(np.add)(x, x), x + x)


def test_decorator_forms_and_metadata():
    @jitensor.jit
    def a(x):
        """doc"""
        return x + 1

    @jitensor.jit()
    def b(x):
        return x + 2

    assert a.__name__ == "a" and a.__doc__ == "doc" and a.__wrapped__ is not None
    assert jitensor.jit(a) is a
    assert "a" in repr(a)
    x = np.zeros(2)
    np.testing.assert_array_equal(a(x), x + 1)
    np.testing.assert_array_equal(b(x), x + 2)


def test_lower_gives_compiled_record():
    f = jit(lambda x: np.exp(x) * 2)
    c = f.lower(np.ones((2, 2)))
    assert c.program is not None and c.kernels
    assert "define" in (c.optimized_ir or "")


# ---------------------------------------------------------------------------------------------
# threads


def test_threads_calling_at_once():
    f = jit(lambda x, y: np.tanh(x) * y + x.sum(axis=-1, keepdims=True))
    rng = np.random.default_rng(0)
    shapes = [(64, 33), (8, 5), (64, 33), (1, 7), (8, 5), (300, 41)]
    inputs = [(rng.standard_normal(s), rng.standard_normal(s)) for s in shapes]
    expected = [np.tanh(x) * y + x.sum(axis=-1, keepdims=True) for x, y in inputs]
    errors = []
    barrier = threading.Barrier(8)

    def worker(k):
        try:
            barrier.wait()
            for it in range(30):
                i = (k + it) % len(inputs)
                r = f(*inputs[i])
                np.testing.assert_allclose(r, expected[i], rtol=1e-10, atol=1e-12)
        except BaseException as e:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert info(f)[1] == len(set(shapes))  # each signature compiled exactly once despite the race


def test_threads_distinct_functions_compile_concurrently():
    fs = [jit(_make_scaler(k)) for k in range(6)]
    x = np.arange(10.0)
    out = [None] * len(fs)

    def worker(i):
        out[i] = fs[i](x)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(fs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, r in enumerate(out):
        np.testing.assert_array_equal(r, x * k)


def _make_scaler(k):
    return lambda x: x * k


# ---------------------------------------------------------------------------------------------
# explain and JITENSOR_DUMP


def test_explain_contains_every_stage():
    def f(x, y):
        return np.exp(x) @ y + 1

    text = jitensor.explain(f, np.ones((3, 4)), np.ones((4, 2)))
    assert isinstance(text, str)
    assert "traced graph" in text and "exp" in text and "matmul" in text
    assert "loop IR" in text
    assert "define" in text  # LLVM IR


def test_explain_accepts_jitted_function_and_selection():
    f = jit(lambda x: x.sum(axis=0))
    text = jitensor.explain(f, np.ones((3, 4)), what=("graph",))
    assert "graph" in text and "define" not in text
    assert info(f)[1] == 0  # explaining does not fill the call cache


def test_explain_raises_tracing_errors():
    def f(x):
        if x.sum() > 0:
            return x
        return x
    with pytest.raises(JitensorError):
        jitensor.explain(f, np.ones(3))


def _run_py(code: str, env_extra: dict, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(env_extra)
    env["JITENSOR_CACHE_DIR"] = str(tmp_path / "sub-cache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                             if p])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=str(tmp_path))


def test_jitensor_dump_env(tmp_path):
    code = """
        import numpy as np, jitensor
        f = jitensor.jit(lambda x: np.exp(x) + 1, cache=False)
        print("RESULT", f(np.zeros(3))[0])
        print("SECOND", f(np.zeros(3))[0])
    """
    p = _run_py(code, {"JITENSOR_DUMP": "graph,loop"}, tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "RESULT 2.0" in out
    assert "traced graph" in out and "exp" in out and "loop IR" in out
    assert "define" not in out  # only what was asked for
    # printed at compile time only: once, before the first result
    assert out.count("traced graph") == 1 and out.index("traced graph") < out.index("RESULT")


def test_no_dump_by_default(tmp_path):
    code = """
        import numpy as np, jitensor
        f = jitensor.jit(lambda x: np.exp(x) + 1, cache=False)
        print("RESULT", f(np.zeros(3))[0])
    """
    p = _run_py(code, {"JITENSOR_DUMP": ""}, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "traced graph" not in p.stdout


# ---------------------------------------------------------------------------------------------
# disk cache (in a temporary directory)


def _disk_fn(x):
    return np.sqrt(np.abs(x)) * 3 + x.sum()


def test_disk_cache_reused_by_a_new_jit_function(tmp_path):
    x = np.linspace(-2, 2, 7)
    f1 = jitensor.jit(_disk_fn)
    r1 = f1(x)
    assert f1.cache_info().disk_hits == 0
    assert any((tmp_path / "jitcache").rglob("*")), "nothing written to JITENSOR_CACHE_DIR"
    f2 = jitensor.jit(_disk_fn)
    r2 = f2(x)
    assert f2.cache_info().disk_hits == 1
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(r2, _disk_fn(x), rtol=1e-12)


def test_cache_false_writes_nothing(tmp_path):
    f = jitensor.jit(_disk_fn, cache=False)
    f(np.ones(3))
    assert not any(p.is_file() for p in (tmp_path / "jitcache").rglob("*")) if (tmp_path / "jitcache").exists() \
        else True


def test_disk_cache_across_processes(tmp_path):
    code = """
        import numpy as np, jitensor
        def g(x):
            return np.tanh(x) * 2
        f = jitensor.jit(g)
        r = f(np.linspace(-1, 1, 5))
        print("DISK", f.cache_info().disk_hits, float(r.sum()))
    """
    p1 = _run_py(code, {}, tmp_path)
    p2 = _run_py(code, {}, tmp_path)
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stderr
    assert "DISK 0" in p1.stdout and "DISK 1" in p2.stdout


def test_disable_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("JITENSOR_DISABLE_CACHE", "1")
    f1 = jitensor.jit(_disk_fn)
    f1(np.ones(4))
    f2 = jitensor.jit(_disk_fn)
    f2(np.ones(4))
    assert f2.cache_info().disk_hits == 0


# ---------------------------------------------------------------------------------------------
# argument kinds that must not be confused by the cache


def _sub_script(body: str) -> str:
    return "import numpy as np, jitensor\n" + textwrap.dedent(body)


@pytest.mark.parametrize("order", ["big-first", "small-first"])
def test_ndarray_subclass_arguments_in_subprocess(tmp_path, order):
    body = f"""
        class Sub(np.ndarray):
            pass
        f = jitensor.jit(lambda x, s=2.0: x * s, cache=False)   # a default: the general dispatch path
        small = np.arange(3.0).view(Sub)
        big = np.arange(10_000_000.0).view(Sub)
        first, second = (big, small) if "{order}" == "big-first" else (small, big)
        for arr in (first, second):
            r = f(arr)
            assert r.shape == arr.shape, (r.shape, arr.shape)
            assert np.array_equal(np.asarray(r), np.asarray(arr) * 2)
            del r
        r = f(np.arange(5, dtype=np.int32).view(Sub))
        assert r.dtype == np.float64 and r.shape == (5,), (r.dtype, r.shape)
        print("OK")
    """
    p = _run_py(_sub_script(body), {}, tmp_path)
    assert p.returncode == 0 and "OK" in p.stdout, f"rc={p.returncode} (negative: killed by a signal)\n{p.stderr}"


def test_ndarray_subclass_simple_function():
    class Sub(np.ndarray):
        pass
    f = jit(lambda x: x * 2)
    for n in (3, 1000, 5):
        a = np.arange(float(n)).view(Sub)
        r = f(a)
        assert r.shape == (n,)
        np.testing.assert_array_equal(np.asarray(r), np.arange(float(n)) * 2)


def test_numpy_scalar_and_0d_array_signatures():
    f = jit(lambda a, b: a * b)
    x = np.ones(3, np.float32)
    assert f(x, np.float64(2.0)).dtype == (x * np.float64(2.0)).dtype
    assert f(x, np.array(2.0)).dtype == (x * np.array(2.0)).dtype


def test_memmap_argument(tmp_path):
    path = tmp_path / "m.dat"
    m = np.memmap(path, dtype=np.float32, mode="w+", shape=(4, 3))
    m[:] = np.arange(12, dtype=np.float32).reshape(4, 3)
    f = jit(lambda x: x.sum(axis=1))
    np.testing.assert_array_equal(np.asarray(f(m)), np.asarray(m).sum(axis=1))


def test_python_int_argument_out_of_int64_range():
    f = jit(lambda x, s: x * s)
    x = np.arange(3)
    with pytest.raises(OverflowError):
        x * 2 ** 70
    with pytest.raises((OverflowError, JitensorError)):
        f(x, 2 ** 70)


def test_readonly_and_unaligned_inputs():
    x = np.arange(10.0)
    x.setflags(write=False)
    check(lambda v: v * 2, x)
    buf = np.zeros(8 * 1001 + 1, np.uint8)
    u = np.frombuffer(buf.data, dtype=np.float64, count=1000, offset=1)
    assert not u.flags.aligned
    check(lambda v: v + 1, u)
    check(lambda v: v.sum(), u, rtol=1e-12)


def test_big_endian_input_rejected_or_correct():
    x = np.arange(4, dtype=">f8")
    try:
        r = jit(lambda v: v * 2)(x)
    except JitensorError as e:  # refused: the message must say which argument and why
        assert "argument 0" in str(e) and ">f8" in str(e), str(e)
        return
    np.testing.assert_array_equal(r, x * 2)


def test_compile_log_names_the_argument_and_its_strides(caplog):
    """The compile log says why a call compiled; for a new layout: which argument, and old vs new strides."""
    import logging
    f = jitensor.jit(lambda a, b: a * 2 + b, cache=False)
    x = np.ones((4, 6), dtype=np.float32)
    y = np.ones((4, 6), dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="jitensor"):
        f(x, y)
        f(x, np.asfortranarray(y))
        f(x[:, ::-1], y)
        f(x.astype(np.float64), y)
    msgs = [r.getMessage() for r in caplog.records if r.name == "jitensor"]
    assert len(msgs) == 4, msgs
    assert "first call" in msgs[0]
    assert "new strides for argument `b`: float32[4, 6] strides (4, 16) (before: float32[4, 6] strides (24, 4))" \
        in msgs[1], msgs[1]
    assert "new strides for argument `a`" in msgs[2] and "(24, -4)" in msgs[2], msgs[2]
    assert "new dtype and strides for argument `a`" in msgs[3] and "(48, 8)" in msgs[3], msgs[3]

    g = jitensor.jit(lambda x, pair, k=1.5: x * k + pair[1], cache=False)
    with caplog.at_level(logging.INFO, logger="jitensor"):
        g(x, (x, y), k=2.0)
        g(x, (x, y.T.copy().T))
        g(x, (x, y[::-1]), k=2)
    msgs = [r.getMessage() for r in caplog.records if r.name == "jitensor"][4:]
    assert "new strides for argument `pair[1]`" in msgs[1], msgs[1]
    assert "argument `k`" in msgs[2] and "argument `pair[1]`" in msgs[2], msgs[2]


def test_bindings_replayed_from_plans_match_inspect():
    """Calls bind through a cached plan per (positional count, keyword names): every way of passing the
    same arguments gives numpy's result, defaults apply, and a bad call still names the problem."""
    def f(x, y=2.0, *, scale=1, axis=0):
        return (x * y).sum(axis=axis) * scale
    jf = jitensor.jit(f, static_argnames=("axis",), cache=False)
    x = np.arange(12.0).reshape(3, 4)
    for _ in range(2):  # the second round replays the plans
        np.testing.assert_allclose(jf(x), f(x))
        np.testing.assert_allclose(jf(x, 3.0), f(x, 3.0))
        np.testing.assert_allclose(jf(x, y=3.0, axis=1), f(x, y=3.0, axis=1))
        np.testing.assert_allclose(jf(x, axis=1, y=3.0), f(x, axis=1, y=3.0))
        np.testing.assert_allclose(jf(y=0.5, x=x, scale=4), f(y=0.5, x=x, scale=4))
        with pytest.raises(jitensor.errors.ArgumentError, match="missing"):
            jf(y=1.0)
        with pytest.raises(jitensor.errors.ArgumentError, match="unexpected|got an"):
            jf(x, z=1)
