"""`jitensor.jit`: the decorator and its dispatcher.

A call computes a signature key from its arguments (shape, dtype and strides of each array;
the Python type of each scalar; the value of each static argument), looks the compiled Program
up in a dict, and compiles on a miss: trace -> graph -> compile (see compiler.py). Arguments may
be arrays, Python/numpy scalars, or tuples/lists/dicts of them (flattened as leaves).
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import ArgumentError, DTypeError
from .frontend.trace import Tracer
from .graph import ops
from .graph.ir import SUPPORTED_DTYPES, Graph

log = logging.getLogger("jitensor")
if os.environ.get("JITENSOR_LOG_COMPILES"):
    logging.basicConfig()
    log.setLevel(logging.INFO)

_SCALARS = (bool, int, float)


# -- argument flattening (leaves: arrays and scalars; containers: tuple, list, dict)

def _flatten(x, leaves: list):
    if isinstance(x, np.ndarray):
        leaves.append(x)
        return "A"
    if isinstance(x, _SCALARS) or isinstance(x, np.generic):
        leaves.append(x)
        return "S"
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_flatten(v, leaves) for v in x))
    if isinstance(x, dict):
        keys = tuple(sorted(x))
        return ("dict", keys, tuple(_flatten(x[k], leaves) for k in keys))
    if x is None:
        return None
    raise ArgumentError(f"jitensor.jit cannot take an argument of type {type(x).__name__}; pass arrays, numbers, "
                        "or tuples/lists/dicts of them, or mark the argument static (static_argnames=...)")


def _leaf_names(tree, names) -> list[str]:
    """The user's name for each leaf of a flattened call: `x`, `pair[1]`, `cfg['lr']` (for messages)."""
    out: list = []

    def walk(t, path):
        if t in ("A", "S"):
            out.append(path)
        elif t is not None:
            for k, sub in (zip(t[1], t[2]) if t[0] == "dict" else enumerate(t[1])):
                walk(sub, f"{path}[{k!r}]")
    for name, t in zip(names, tree[1]):
        walk(t, name)
    return out


def _unflatten(tree, it):
    if tree in ("A", "S"):
        return next(it)
    if tree is None:
        return None
    if tree[0] == "dict":
        return {k: _unflatten(t, it) for k, t in zip(tree[1], tree[2])}
    vals = [_unflatten(t, it) for t in tree[1]]
    return tuple(vals) if tree[0] == "tuple" else vals


def _leaf_spec(a):
    if isinstance(a, np.ndarray):  # subclasses too (memmap, views): their shape must key the program
        return (a.dtype, a.shape, a.strides)
    if isinstance(a, np.generic):
        return (a.dtype, (), ())
    return type(a)


@dataclass
class CacheInfo:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    signatures: list = field(default_factory=list)
    compile_seconds: list = field(default_factory=list)

    def __str__(self):
        return (f"CacheInfo(hits={self.hits}, misses={self.misses}, disk_hits={self.disk_hits}, "
                f"signatures={len(self.signatures)})")


_warmed = False


def _warm_up():
    """Load what every first call needs (the tracer's numpy table, the runtime, the host target, the
    compiler's fingerprint) once, when the first function is decorated (usually at import of the user's
    module), so that a first call pays only for tracing and loading (or compiling) its own code. The host
    target comes from its disk-cache record when there is one (`target.py`), else from LLVM, which is then
    started here. The compile-time stages (and LLVM) are imported on the first miss: a process served by the
    disk cache never loads them."""
    global _warmed
    if _warmed or os.environ.get("JITENSOR_LAZY_INIT"):
        return
    _warmed = True
    from . import compiler
    from .frontend import numpy_api  # noqa: F401
    from .runtime import program, sharedlib  # noqa: F401
    from .target import host
    compiler.compiler_fingerprint()
    host()


class _Ref:
    """Where a bound parameter comes from in a call (see JitFunction._plan)."""
    __slots__ = ("how", "ref")

    def __init__(self, how, ref):
        self.how, self.ref = how, ref


class JitFunction:
    def __init__(self, fun, *, static_argnums=(), static_argnames=(), cache=True, tune=None):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.sig = inspect.signature(fun)
        params = list(self.sig.parameters.values())
        if any(p.kind == p.VAR_KEYWORD for p in params):
            raise ArgumentError("jitensor.jit does not support functions with **kwargs")
        self._names = [p.name for p in params if p.kind != p.VAR_POSITIONAL]
        self._varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
        nums = {static_argnums} if isinstance(static_argnums, int) else set(static_argnums)
        names = {static_argnames} if isinstance(static_argnames, str) else set(static_argnames)
        for n in names:
            if n not in self.sig.parameters:
                raise ArgumentError(f"static_argnames names '{n}', which is not a parameter of {fun.__qualname__}")
        for i in nums:
            if i < len(self._names):
                names.add(self._names[i])
        self._static = frozenset(names)
        self._simple = not self._static and not self._varargs and all(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self._nparams = len(params)
        self.use_disk_cache = cache and os.environ.get("JITENSOR_DISABLE_CACHE", "").strip().lower() in (
            "", "0", "false", "no", "off")
        self._programs: dict = {}
        self._plans: dict = {}  # (number of positional arguments, keyword names...) -> binding plan
        self._compiled: dict = {}
        self._info = CacheInfo()
        self._lock = threading.Lock()
        if tune is None and os.environ.get("JITENSOR_TUNE", "").strip() not in ("", "0"):
            from .autotune.tuner import env_budget
            try:
                self._tune = env_budget()
            except ValueError as e:
                raise ArgumentError(f"JITENSOR_TUNE={os.environ['JITENSOR_TUNE']!r}: {e}") from None
        elif tune is None or tune is False:
            self._tune = None
        else:
            from .autotune.tuner import parse_budget
            try:
                self._tune = parse_budget(tune)
            except ValueError as e:
                raise ArgumentError(f"jitensor.jit(tune=...): {e}") from None
        self._tuned: set = set()  # signatures tuned (or being tuned) in this process
        self.__wrapped__ = fun
        _warm_up()


    def __repr__(self):
        return f"<jitensor.jit {self.fun.__qualname__}>"

    def __get__(self, obj, objtype=None):  # methods: bind like a function
        return self if obj is None else functools.partial(self, obj)

    # -- the hot path
    def __call__(self, *args, **kwargs):
        if self._simple and not kwargs:
            try:  # arrays and numpy scalars: the key is their (dtype, shape, strides)
                key = tuple([(a.dtype, a.shape, a.strides) for a in args])
            except AttributeError:
                pass
            else:
                prog = self._programs.get(key)
                if prog is not None:
                    self._info.hits += 1
                    return prog[1](prog[0].run(args))
                if len(args) == self._nparams:
                    return self._compile_and_run(key, list(args), ("tuple", ("A",) * len(args)), ())
        if any(isinstance(a, Tracer) for a in args) or any(isinstance(v, Tracer) for v in kwargs.values()):
            return self.fun(*args, **kwargs)  # called while tracing another jitted function: inline it
        leaves, tree, statics = self._bind(args, kwargs)
        for a in leaves:
            if type(a) is int and not -(1 << 63) <= a < (1 << 63):
                raise ArgumentError(f"{self.fun.__qualname__}(): Python integer {a} does not fit in int64")
        key = (tree, statics, tuple(_leaf_spec(a) for a in leaves))
        prog = self._programs.get(key)
        if prog is not None:
            self._info.hits += 1
            return prog[1](prog[0].run([a if type(a) is np.ndarray else np.asarray(a) for a in leaves]))
        return self._compile_and_run(key, leaves, tree, statics)

    def _bind(self, args, kwargs):
        plan = self._plans.get((len(args), *kwargs)) if not self._varargs else None
        if plan is None:
            try:
                ba = self.sig.bind(*args, **kwargs)
            except TypeError as e:
                raise ArgumentError(f"{self.fun.__qualname__}(): {e}") from None
            ba.apply_defaults()
            bound = ba.arguments.items()
            if not self._varargs:
                self._plans[(len(args), *kwargs)] = self._plan(len(args), tuple(kwargs))
        else:  # inspect's binding costs ~10 us a call: a call with the same shape replays its plan
            bound = [(name, args[ref] if how == 0 else kwargs[ref] if how == 1 else ref) for name, how, ref in plan]
        dyn, statics = [], []
        for name, v in bound:
            if name in self._static:
                try:
                    hash(v)
                except TypeError:
                    raise ArgumentError(f"static argument '{name}' of {self.fun.__qualname__} must be hashable, got "
                                        f"{type(v).__name__} (use a tuple instead of a list/array)") from None
                statics.append((name, v))
            else:
                dyn.append(v)
        leaves: list = []
        try:
            tree = ("tuple", tuple(_flatten(v, leaves) for v in dyn))
        except ArgumentError as e:
            raise ArgumentError(f"{self.fun.__qualname__}(): {e.msg}") from None
        return leaves, tree, tuple(statics)

    def _plan(self, nargs: int, names: tuple) -> list:
        """How a call with `nargs` positional arguments and these keyword names binds: per parameter, in
        order, (name, 0, position) | (name, 1, keyword) | (name, 2, default value)."""
        ba = self.sig.bind(*[_Ref(0, i) for i in range(nargs)], **{k: _Ref(1, k) for k in names})
        ba.apply_defaults()
        return [(name, v.how, v.ref) if isinstance(v, _Ref) else (name, 2, v) for name, v in ba.arguments.items()]

    # -- the slow path: trace and compile
    def _compile_and_run(self, key, leaves, tree, statics):
        from .compiler import compile_graph
        if self._tune is not None and key not in self._tuned:
            self._tuned.add(key)
            if not self._tune["background"]:
                self._tune_signature(key, leaves, tree, statics, swap=False)
            else:
                out = self._compile_and_run(key, leaves, tree, statics)
                threading.Thread(target=self._tune_signature, args=(key, leaves, tree, statics, True),
                                 name=f"jitensor-tune-{self.fun.__qualname__}", daemon=True).start()
                return out
        with self._lock:
            prog = self._programs.get(key)
            if prog is None:
                self._info.misses += 1
                reason = self._miss_reason(key)
                t0 = time.perf_counter()
                graph, layouts, finish = self._trace(leaves, tree, statics)
                c = compile_graph(graph, layouts, name=f"{self.fun.__module__}.{self.fun.__qualname__}",
                                  use_disk=self.use_disk_cache)
                dt = time.perf_counter() - t0
                if c.source == "disk":
                    self._info.disk_hits += 1
                self._info.signatures.append(_describe(key))
                self._info.compile_seconds.append(dt)
                log.info("jitensor: compiled %s for %s (%s) in %.1f ms [%s]", self.fun.__qualname__,
                         _describe(key), reason, dt * 1e3, c.source)
                prog = (c.program, finish)
                self._programs[key] = prog
                self._compiled[key] = c
        arrays = [a if type(a) is np.ndarray else np.asarray(a) for a in leaves]
        return prog[1](prog[0].run(arrays))

    def _tune_signature(self, key, leaves, tree, statics, swap: bool):
        """Lazy tuning (`jit(tune=...)`, JITENSOR_TUNE) of one signature, unless the records already cover its
        kernels. A failure warns and leaves the default schedules; with `swap` (background mode) the program
        is recompiled with the records and replaces the one calls are using."""
        from .compiler import compile_graph
        from .errors import TuningWarning
        from .autotune.tuner import tune_in_process, tune_traced, tuned_before
        # in the foreground, a function that does not trace fails its call with its own error, as it would
        # without tuning (not with a TuningWarning first, then the error of a second trace)
        traced = None if swap else self._trace(leaves, tree, statics)
        try:
            graph, layouts, finish = traced or self._trace(leaves, tree, statics)
            if tuned_before(graph, layouts):
                return
            arrays = [a if type(a) is np.ndarray else np.asarray(a) for a in leaves]
            opts = self._tune
            # background: another process searches, this one keeps running the default program meanwhile
            run = tune_in_process if swap else tune_traced
            report = run(self.fun.__qualname__, graph, layouts, arrays, trials=opts["trials"],
                         timeout=opts["timeout"], progress=False if swap else None)
            log.info("jitensor: %s", report)
            if swap:
                c = compile_graph(graph, layouts, name=f"{self.fun.__module__}.{self.fun.__qualname__}",
                                  use_disk=self.use_disk_cache)
                with self._lock:
                    self._programs[key] = (c.program, finish)
                    self._compiled[key] = c
        except KeyboardInterrupt:
            raise
        except Exception as e:  # tuning is an optimization: never the reason a call fails
            warnings.warn(f"tuning {self.fun.__qualname__} failed ({type(e).__name__}: {e}); it keeps its default "
                          "schedules", TuningWarning, stacklevel=3)

    def _miss_reason(self, key) -> str:
        """Why `key` compiles: the differences from the closest signature compiled before."""
        if not self._programs:
            return "first call"

        def diffs(old):  # -> (how many aspects differ, descriptions)
            a, b = _specs(old), _specs(key)
            if len(a) != len(b):
                return 99, ["a different number of arguments"]
            names = self._leaf_names_of(key, len(b))
            out, n = [], 0
            for i, (x, y) in enumerate(zip(a, b)):
                if x == y:
                    continue
                if isinstance(x, tuple) and isinstance(y, tuple):
                    what = [w for w, u, v in (("dtype", x[0], y[0]), ("shape", x[1], y[1]),
                                              ("strides", x[2], y[2])) if u != v]
                    n += len(what)
                    st = "strides" in what  # a new layout: show the strides (in bytes, as ndarray.strides)
                    out.append(f"new {' and '.join(what)} for argument `{names[i]}`: {_fmt(y, st)} "
                               f"(before: {_fmt(x, st)})")
                else:
                    n += 3
                    out.append(f"a different kind of argument `{names[i]}`: {_fmt(y)} (before: {_fmt(x)})")
            if not out and old != key:
                n, out = 1, ["new static argument values or argument structure"]
            return n, out
        try:
            return "; ".join(min((diffs(old) for old in self._programs), key=lambda d: d[0])[1])
        except Exception:
            return "new signature"

    def _leaf_names_of(self, key, n) -> list:
        """Argument names for the leaves of a signature key (positions when the key's structure is unknown)."""
        try:
            if len(key) == 3 and isinstance(key[0], tuple) and key[0][:1] == ("tuple",):
                statics = dict(key[1])
                names = _leaf_names(key[0], [p for p in self.sig.parameters if p not in statics])
            else:  # the plain path's key: one array per positional parameter
                names = _leaf_names(("tuple", ("A",) * n), self._names)
        except Exception:
            names = []
        return names if len(names) == n else [str(i) for i in range(n)]

    def _trace(self, leaves, tree, statics):
        from .frontend import numpy_api, numpy_hooks
        tracers, inputs, layouts = [], [], []
        names = _leaf_names(tree, [n for n in self.sig.parameters if n not in dict(statics)])
        for i, a in enumerate(leaves):
            if type(a) in _SCALARS:  # np.float64 subclasses float but is a strongly typed numpy scalar
                dt = np.dtype(bool) if isinstance(a, bool) else np.dtype(np.int64) if isinstance(a, int) \
                    else np.dtype(np.float64)
                n = ops.input_node(i, (), dt)
                tracers.append(Tracer(n, owner=False, py=type(a), args=(names[i] if i < len(names) else str(i),)))
                layouts.append(())
            else:
                arr = np.asarray(a)
                if arr.dtype not in SUPPORTED_DTYPES:
                    raise DTypeError(f"{self.fun.__qualname__}(): argument {i} has dtype {arr.dtype}, which jitensor "
                                     "does not support (bool, integers, float32, float64)")
                if any(s % arr.itemsize for s in arr.strides):
                    raise ArgumentError(f"{self.fun.__qualname__}(): argument {i} has strides {arr.strides} that "
                                        "are not a multiple of its item size; pass np.ascontiguousarray(x)")
                n = ops.input_node(i, arr.shape, arr.dtype)
                tracers.append(Tracer(n, owner=False))
                layouts.append(tuple(s // arr.itemsize for s in arr.strides))
            inputs.append(n)
        dyn = _unflatten(tree, iter(tracers))
        values = dict(statics)
        names = [n for n in self.sig.parameters if n not in values]
        values.update(zip(names, dyn))
        args, kwargs = [], {}
        for p in self.sig.parameters.values():  # rebuild the call in the signature's own shape
            if p.name not in values:
                continue
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and not kwargs:
                args.append(values[p.name])
            elif p.kind == p.VAR_POSITIONAL:
                args.extend(values[p.name])
            else:
                kwargs[p.name] = values[p.name]
        with numpy_hooks.tracing(self.fun, statics):
            res = self.fun(*args, **kwargs)
        out_leaves: list = []
        out_tree = _out_flatten(res, out_leaves)
        outs = []
        for v in out_leaves:
            if isinstance(v, Tracer):
                outs.append(v.node)
            else:
                outs.append(numpy_api.node_of(v))
        graph = Graph(tuple(inputs), tuple(outs))
        return graph, layouts, finisher(out_tree, outs[0].ndim if outs else 0)

    # -- introspection
    def cache_info(self) -> CacheInfo:
        return self._info

    def cache_clear(self):
        with self._lock:
            self._programs.clear()
            self._compiled.clear()

    def _install(self, key, program, finish, seconds: float):
        """Serve calls of signature `key` with a program loaded from the disk cache by a caller that knew its
        cache key without tracing (`jitensor.onnx`'s model index); counted as a disk hit."""
        with self._lock:
            if key not in self._programs:
                self._info.misses += 1
                self._info.disk_hits += 1
                self._info.signatures.append(_describe(key))
                self._info.compile_seconds.append(seconds)
                self._programs[key] = (program, finish)

    def _traced(self, args, kwargs):
        """(graph, layouts, argument arrays) of a call with these arguments (the tuner's view of it)."""
        leaves, tree, statics = self._bind(args, kwargs)
        graph, layouts, _ = self._trace(leaves, tree, statics)
        return graph, layouts, [a if type(a) is np.ndarray else np.asarray(a) for a in leaves]

    def lower(self, *args, **kwargs):
        """Trace and compile for these arguments without running; returns the Compiled record."""
        from .compiler import compile_graph
        leaves, tree, statics = self._bind(args, kwargs)
        graph, layouts, _ = self._trace(leaves, tree, statics)
        return compile_graph(graph, layouts, name=self.fun.__qualname__, use_disk=False, keep_ir=True)


def _first(arrays):
    return arrays[0]


def finisher(out_tree, first_ndim: int):
    """The function that turns a program's output arrays into the traced function's return value."""
    if out_tree == ("leaf", None) and first_ndim > 0:
        return _first  # the common case, kept cheap: one array out

    def finish(arrays):
        vals = [a[()] if a.ndim == 0 else a for a in arrays]
        return _out_unflatten(out_tree, iter(vals))
    return finish


def _out_flatten(x, leaves):
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_out_flatten(v, leaves) for v in x))
    if isinstance(x, dict):
        keys = tuple(x)
        return ("dict", keys, tuple(_out_flatten(x[k], leaves) for k in keys))
    if isinstance(x, (Tracer, np.ndarray, np.generic)) or isinstance(x, _SCALARS):
        leaves.append(x)
        if isinstance(x, Tracer) and x._py is not None:  # r * 2 of a Python-number argument: a Python number
            return ("leaf", x._py.__name__)
        return ("leaf", type(x).__name__ if type(x) in _SCALARS else None)
    if x is None:
        return None
    raise ArgumentError(f"jitted function returned a value of type {type(x).__name__}; return arrays, numbers, "
                        "or tuples/lists/dicts of them")


def _out_unflatten(tree, it):
    if tree is None:
        return None
    if tree[0] == "leaf":
        v = next(it)
        if tree[1] is not None:  # a Python number the function returned unchanged
            return {"bool": bool, "int": int, "float": float}[tree[1]](v)
        return v
    if tree[0] == "dict":
        return {k: _out_unflatten(t, it) for k, t in zip(tree[1], tree[2])}
    vals = [_out_unflatten(t, it) for t in tree[1]]
    return tuple(vals) if tree[0] == "tuple" else vals


def _specs(key):
    if len(key) == 3 and isinstance(key[0], tuple) and key[0] and key[0][0] in ("tuple",):
        return list(key[2])
    return list(key)


def _fmt(spec, strides=False):
    if isinstance(spec, tuple) and len(spec) == 3:
        return f"{np.dtype(spec[0]).name}{list(spec[1])}" + (f" strides {spec[2]}" if strides else "")
    return getattr(spec, "__name__", str(spec))


def _describe(key) -> str:
    return "(" + ", ".join(_fmt(s) for s in _specs(key)) + ")"


def jit(fun=None, *, static_argnums=(), static_argnames=(), cache=True, tune=None):
    """Compile a numpy function just in time (per argument shapes/dtypes/static values).

    `@jitensor.jit` or `@jitensor.jit(static_argnames=("axis",), cache=True)`.
    tune: autotune each new signature on its first call, unless tuning records already cover its kernels:
    True (256 trials), a trial count, or {"trials": n, "timeout": seconds, "background": bool}; background
    returns at once with the default schedules and swaps in the tuned program when tuning ends. Default:
    the JITENSOR_TUNE environment variable (unset: off). A tune value, or a JITENSOR_TUNE, that cannot be
    read raises ArgumentError here, when the function is decorated.
    """
    if fun is None:
        return lambda f: jit(f, static_argnums=static_argnums, static_argnames=static_argnames, cache=cache,
                             tune=tune)
    if isinstance(fun, JitFunction):
        return fun
    if isinstance(fun, np.ufunc):  # its keyword defaults (out=, where=...) are not arguments to trace
        uf = fun
        fun = {1: lambda x: uf(x), 2: lambda x, y: uf(x, y), 3: lambda x, y, z: uf(x, y, z)}[uf.nin]
        fun.__name__ = fun.__qualname__ = uf.__name__
    if not callable(fun):
        raise ArgumentError(f"jitensor.jit expects a function, got {type(fun).__name__}")
    return JitFunction(fun, static_argnums=static_argnums, static_argnames=static_argnames, cache=cache, tune=tune)


def trace(fun, *args, **kwargs):
    """The graph IR of `fun(*args, **kwargs)`: the tracing entry point both frontends share (a `@jit`
    function, a plain function, or an ONNX model from `jitensor.onnx.load`). Arguments are arrays or
    Python scalars as for a call; nothing is compiled. `print(graph)` shows it."""
    f = getattr(fun, "_jit", fun)  # an OnnxFunction traces through its jitted graph runner
    if hasattr(fun, "check_inputs"):
        args = fun.check_inputs(fun._bind(args, kwargs))
        kwargs = {}
    f = f if isinstance(f, JitFunction) else JitFunction(f, cache=False)
    graph, _, _ = f._traced(args, kwargs)
    return graph


def explain(fun, *args, what=("graph", "fused", "loop", "llvm"), **kwargs) -> str:
    """Every stage of compiling `fun` for these arguments, as text (graph, fused groups, loop IR, LLVM IR)."""
    if hasattr(fun, "check_inputs"):  # an ONNX model: its inputs bind by ONNX name and are checked
        return fun.lower(*args, **kwargs).dump(tuple(what))
    jf = fun if isinstance(fun, JitFunction) else JitFunction(fun)
    return jf.lower(*args, **kwargs).dump(tuple(what))
