"""numpy names that behave differently while a function is traced, and the check on random state.

Two things cannot reach a Tracer through numpy's protocols:
- `np.asarray(x)` / `np.array(x)` on a traced value: numpy calls `x.__array__`, which must return a real
  array. While tracing, `np.asarray`, `np.asanyarray`, `np.array`, `np.ascontiguousarray` are replaced by
  versions that trace these calls (and hand every other argument to numpy's own function).
- randomness: `np.random.standard_normal(x.shape)` runs once, at trace time, so its numbers would be
  frozen into the compiled code and repeat on every call. While tracing, np.random's module-level
  functions raise (naming the call and the user's line); and random generators the function can reach
  (numpy's global RandomState, Generators in static arguments, globals and closures) must not have
  changed state when the trace ends.

The replacements are installed while any thread traces (counted under a lock) and act only for the
thread that traces: other threads calling np.random meanwhile get numpy's own functions' results.

numpy imports `numpy.random` lazily, and importing it costs ~5-10 ms: a process that has not imported it
does not pay for it here either. Its functions are hooked, and its generators checked, only once it is
imported; a function whose trace imports it (the first `np.random` use of the process) raises the same error.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import pickle
import sys
import threading
import types

import numpy as np

from ..errors import TracingError
from .trace import Tracer, user_frame

_lock = threading.Lock()
_installs = 0
_saved: list = []               # (module, name, original)
_tls = threading.local()        # .depth: how many traces this thread is inside

_RANDOM_HINT = ("numpy's random functions run once, while jitensor traces, so the compiled function would return "
                "the same \"random\" numbers on every call. Draw them outside and pass the random array as an "
                "argument: f(x, rng.standard_normal(x.shape)).")


def _tracing_here() -> bool:
    return getattr(_tls, "depth", 0) > 0


# -- np.asarray and friends on traced values

def _convert(x, dtype, copy: bool):
    """np.array(x, dtype) for a Tracer, or a list/tuple holding some; None when numpy should do it."""
    from . import numpy_api
    if isinstance(x, Tracer):
        t = x
    elif isinstance(x, (list, tuple)) and any(isinstance(v, Tracer) for v in x):
        t = numpy_api.wrap(numpy_api.node_of(list(x)))
    else:
        return None
    if dtype is not None and np.dtype(dtype) != t.dtype:
        return numpy_api.astype(t, dtype)
    if copy or t._py is not None:  # a Python number becomes a (strongly typed) 0-d array
        return numpy_api.wrap(t.node)
    return t


def _like(f, orig):
    """functools.wraps, reduced to what shows (name, docs, the original): ~5x cheaper, and the first trace of a
    process wraps some 50 functions."""
    f.__name__ = getattr(orig, "__name__", f.__name__)
    f.__qualname__ = getattr(orig, "__qualname__", f.__qualname__)
    f.__doc__ = getattr(orig, "__doc__", None)
    f.__module__ = getattr(orig, "__module__", f.__module__)
    f.__wrapped__ = orig
    return f


def _asarray_hook(orig, copies):
    def f(a, dtype=None, *args, **kwargs):
        r = _convert(a, dtype, copies and kwargs.get("copy", True) is not False) if _tracing_here() else None
        return orig(a, dtype, *args, **kwargs) if r is None else r
    return _like(f, orig)


# -- randomness

def _random_hook(orig, name):
    def f(*args, **kwargs):
        if _tracing_here():
            raise TracingError(f"np.random.{name}() called inside a jitted function. {_RANDOM_HINT}",
                               where=user_frame())
        return orig(*args, **kwargs)
    return _like(f, orig)


_replacements: list = []        # (module, name, replacement) of np.asarray & co, built on first use
_random_replacements: list = []  # the same for np.random's functions, built once numpy.random is imported
_random_installed = False


def _random_loaded() -> bool:
    return "numpy.random" in sys.modules


def _install():
    """Under _lock. np.random's functions only if numpy.random is imported (see the module docstring)."""
    global _random_installed
    if not _replacements:
        for name in ("asarray", "asanyarray", "ascontiguousarray", "array"):
            _replacements.append((np, name, _asarray_hook(getattr(np, name), copies=name == "array")))
    for mod, name, repl in _replacements:
        _saved.append((mod, name, getattr(mod, name)))
        setattr(mod, name, repl)
    _random_installed = False
    _install_random()


def _install_random():
    """Under _lock, with the other hooks installed: add np.random's, once numpy.random is imported."""
    global _random_installed
    if _random_installed or not _random_loaded():
        return
    if not _random_replacements:
        for name in np.random.__all__:
            orig = getattr(np.random, name, None)
            if callable(orig) and not isinstance(orig, type):
                _random_replacements.append((np.random, name, _random_hook(orig, name)))
    for mod, name, repl in _random_replacements:
        _saved.append((mod, name, getattr(mod, name)))
        setattr(mod, name, repl)
    _random_installed = True


def _uninstall():
    global _random_installed
    _random_installed = False
    while _saved:
        mod, name, orig = _saved.pop()
        setattr(mod, name, orig)


_ITEMS = 64  # items looked at in each container: a generator sits near the top, not in a list of a million numbers


def _generators(fun, statics) -> list:
    """(label, generator) for every numpy random generator the traced function can reach (none before
    numpy.random is imported: there is no generator then)."""
    if not _random_loaded():
        return []
    rng_types = (np.random.Generator, np.random.RandomState, np.random.BitGenerator)
    found: dict = {id(np.random.mtrand._rand): ("numpy's global random state (np.random.*)", np.random.mtrand._rand)}
    seen: set = set()

    def visit(kind, path, v, depth):  # the label reads `kind `path`` ("global `cfg['rng']`")
        if id(v) in seen or depth > 3 or len(seen) > 10_000:
            return
        seen.add(id(v))
        try:
            look(kind, path, v, depth)
        except Exception:  # noqa: BLE001 - an object that resists inspection holds no generator we can see
            pass

    def look(kind, path, v, depth):
        if isinstance(v, rng_types):
            found.setdefault(id(v), (f"{kind}`{path}`", v))
        elif isinstance(v, types.FunctionType):
            for kind2, name, val in _names_of(v):
                visit(kind2, name, val, depth + 1)
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(itertools.islice(v, _ITEMS)):
                visit(kind, f"{path}[{i}]", item, depth + 1)
        elif isinstance(v, dict):
            for k, item in list(itertools.islice(v.items(), _ITEMS)):
                visit(kind, f"{path}[{k!r}]", item, depth + 1)
        elif not isinstance(v, (types.ModuleType, type, np.ndarray, np.generic, str, bytes, int, float)) \
                and isinstance(getattr(v, "__dict__", None), dict):
            for k, item in list(itertools.islice(vars(v).items(), _ITEMS)):
                visit(kind, f"{path}.{k}", item, depth + 1)

    for name, v in statics:
        visit("argument ", name, v, 1)
    visit("", getattr(fun, "__name__", "function"), fun, 0)
    return list(found.values())


def _names_of(fn):
    """The globals and closure variables a function's code refers to, with their values."""
    code = fn.__code__
    out = []
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            out.append((f"variable of {fn.__name__}'s closure ", name, cell.cell_contents))
        except ValueError:  # an empty cell
            pass
    codes = [code]
    while codes:
        c = codes.pop()
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        for name in c.co_names:
            if name in fn.__globals__:
                out.append(("global ", name, fn.__globals__[name]))
    return out


def _state(g) -> bytes:
    bg = g._bit_generator if isinstance(g, np.random.RandomState) else \
        g.bit_generator if isinstance(g, np.random.Generator) else g
    if isinstance(bg, np.random.MT19937):
        # its `.state` copies 2.5 KB into a new dict and array (~0.5 ms); the raw struct {key[624]; pos} is the same
        # information. (A legacy RandomState's cached second gaussian lives outside it and is not compared.)
        return ctypes.string_at(bg.ctypes.state_address, 624 * 4 + 4)
    return pickle.dumps(bg.state)


@contextlib.contextmanager
def tracing(fun, statics=()):
    """Trace `fun` with the hooks above installed; raise if a reachable random generator was drawn from."""
    global _installs
    gens = []
    random_before = _random_loaded()
    for label, g in _generators(fun, statics):
        try:
            gens.append((label, g, _state(g)))
        except Exception:  # noqa: BLE001 - a generator whose state cannot be read is not checked
            pass
    with _lock:
        if _installs == 0:
            _install()
        else:
            _install_random()  # numpy.random imported since another thread's trace installed the hooks
        _installs += 1
    _tls.depth = getattr(_tls, "depth", 0) + 1
    try:
        yield
        drawn = [label for label, g, before in gens if _state(g) != before]
        if not random_before and _random_loaded():  # the function used np.random: nothing else imports it here
            drawn.append("np.random (numpy.random was first imported while tracing it)")
    finally:
        _tls.depth -= 1
        with _lock:
            _installs -= 1
            if _installs == 0:
                _uninstall()
    if drawn:
        raise TracingError(f"{getattr(fun, '__qualname__', fun)} drew random numbers from {', '.join(drawn)} "
                           f"while jitensor traced it. {_RANDOM_HINT}", where=_def_line(fun))


def _def_line(fun):
    from .trace import Where
    code = getattr(fun, "__code__", None)
    return Where(code.co_filename, code.co_firstlineno) if code is not None else None
