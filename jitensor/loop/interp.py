"""The reference interpreter of the loop IR: the executable spec of its semantics. It runs a Kernel over
numpy buffers without LLVM; tests check schedules and the code generator against it.

`run(kernel, bufs)` executes `kernel` over `bufs` (name -> flat numpy array, updated in place) and
returns the error codes its checks raised. The kernel is translated to a Python function once (loops
become `for ... in range`, expressions numpy scalar ops), so small kernels run in milliseconds.

Semantics: Call ops are numpy ufuncs of the same name on numpy scalars of the argument dtypes
("where", "reduce_add" = add, "reduce_mul" = multiply, "fma" = a*b+c rounded once where float64
allows, "sigmoid"); Idx ops are Python ints (div/mod floor, operands are non-negative); Cast is
numpy astype; locals are function-wide, as in the code generator. Loop kinds are ignored (a
vectorized/unrolled/parallel loop means the same iterations). Every load and store is bounds
checked, so a schedule that computes a wrong index fails loudly instead of wrapping around.
"""
from __future__ import annotations

import numpy as np

from . import ir as L

_IDX = {"add": "({} + {})", "sub": "({} - {})", "mul": "({} * {})", "div": "({} // {})", "mod": "({} % {})",
        "min": "min({}, {})", "max": "max({}, {})", "lt": "({} < {})", "le": "({} <= {})", "ge": "({} >= {})",
        "eq": "({} == {})", "and": "(bool({}) & bool({}))", "or": "(bool({}) | bool({}))"}
_ALIAS = {"reduce_add": "add", "reduce_mul": "multiply"}


def _ld(a, i):
    i = int(i)
    if not 0 <= i < a.shape[0]:
        raise IndexError(f"load at {i} outside [0, {a.shape[0]})")
    return a[i]


def _st(a, i, v):
    i = int(i)
    if not 0 <= i < a.shape[0]:
        raise IndexError(f"store at {i} outside [0, {a.shape[0]})")
    a[i] = v


def _call(op, dt, *args):
    with np.errstate(all="ignore"):
        if op == "where":
            r = args[1] if bool(args[0]) else args[2]
        elif op == "fma":
            a, b, c = args
            r = a * b + c if dt == np.float64 else (np.float64(a) * np.float64(b) + np.float64(c))
        elif op == "sigmoid":
            one = dt.type(1)
            r = one / (one + np.exp(-args[0]))
        elif op == "power" and dt.kind in "iu" and args[1] < 0:
            r = 0
        else:
            r = getattr(np, _ALIAS.get(op, op))(*args)
    r = np.asarray(r)
    return (r if r.dtype == dt else r.astype(dt))[()]


def _cast(x, dt):
    with np.errstate(all="ignore"):
        return np.asarray(x).astype(dt)[()]


class _Gen:
    def __init__(self, kernel: L.Kernel):
        self.k = kernel
        self.consts: list = []
        self.names: dict = {}
        self.lines: list[str] = []

    def name(self, kind, n):
        key = (kind, n)
        if key not in self.names:
            self.names[key] = f"{kind}{len(self.names)}"
        return self.names[key]

    def const(self, v):
        self.consts.append(v)
        return f"K[{len(self.consts) - 1}]"

    def expr(self, e) -> str:
        if isinstance(e, L.Const):
            return self.const(np.asarray(e.value).astype(e.dtype)[()] if e.dtype != L.I64 else int(e.value))
        if isinstance(e, L.Var):
            return self.name("v", e.name)
        if isinstance(e, L.LocalRef):
            return self.name("l", e.name)
        if isinstance(e, L.Load):
            return f"_ld({self.name('b', e.buf)}, {self.expr(e.index)})"
        if isinstance(e, L.Idx):
            return _IDX[e.op].format(self.expr(e.a), self.expr(e.b))
        if isinstance(e, L.Call):
            # every argument becomes a numpy scalar of its own dtype (Vars/Idx are Python ints)
            args = ", ".join(f"{self.const(np.dtype(a.dtype).type)}({self.expr(a)})" for a in e.args)
            return f"_call({e.op!r}, {self.const(np.dtype(e.dtype))}, {args})"
        if isinstance(e, L.Cast):
            return f"_cast({self.expr(e.x)}, {self.const(np.dtype(e.dtype))})"
        raise TypeError(f"unknown expression {e!r}")

    def stmt(self, s, ind):
        p = "    " * ind
        if isinstance(s, L.For):
            self.lines.append(f"{p}for {self.name('v', s.var)} in range({s.extent}):")
            n = len(self.lines)
            self.stmt(s.body, ind + 1)
            if len(self.lines) == n:
                self.lines.append(f"{p}    pass")
        elif isinstance(s, L.Seq):
            for x in s.body:
                self.stmt(x, ind)
        elif isinstance(s, L.Store):
            self.lines.append(f"{p}_st({self.name('b', s.buf)}, {self.expr(s.index)}, {self.expr(s.value)})")
        elif isinstance(s, (L.Decl, L.Assign)):
            v = s.init if isinstance(s, L.Decl) else s.value
            self.lines.append(f"{p}{self.name('l', s.name)} = {self.expr(v)}")
        elif isinstance(s, L.Check):
            self.lines.append(f"{p}if {self.expr(s.cond)}: _err.add({int(s.code)})")
        elif isinstance(s, L.Prefetch):
            self.lines.append(f"{p}pass  # prefetch")
        else:
            raise TypeError(f"unknown statement {s!r}")

    def build(self):
        self.stmt(self.k.body, 1)
        bufs = [b.name for b in self.k.buffers]
        params = ", ".join(self.name("b", b) for b in bufs)
        src = f"def _kernel({params}{', ' if params else ''}_err):\n" + "\n".join(self.lines or ["    pass"]) + "\n"
        env = {"K": self.consts, "_ld": _ld, "_st": _st, "_call": _call, "_cast": _cast, "np": np}
        exec(compile(src, f"<kernel {self.k.name}>", "exec"), env)
        return env["_kernel"], bufs, src


def compile_kernel(kernel: L.Kernel):
    fn, names, _ = _Gen(kernel).build()

    def run(bufs: dict) -> set:
        err: set = set()
        fn(*[bufs[n] for n in names], err)
        return err
    return run


def source(kernel: L.Kernel) -> str:
    """The Python translation of a kernel (for debugging a failing test)."""
    return _Gen(kernel).build()[2]


def run(kernel: L.Kernel, bufs: dict) -> set:
    return compile_kernel(kernel)(bufs)
