"""Loop-level tensor IR: buffers, loop nests and scalar expressions.

Buffers are flat arrays indexed by element offsets (strides are folded into index
expressions at lowering time). Expressions carry numpy dtypes; `Call` applies an elementwise
op with numpy's semantics for its dtype (the code generator knows them), while `Idx` ops are
plain int64 index arithmetic on non-negative values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

I64 = np.dtype(np.int64)
BOOL = np.dtype(bool)


class Expr:
    dtype: np.dtype


@dataclass(frozen=True)
class Const(Expr):
    value: object
    dtype: np.dtype

    def __str__(self):
        return repr(self.value.item() if hasattr(self.value, "item") else self.value)


@dataclass(frozen=True)
class Var(Expr):
    name: str
    dtype: np.dtype = I64

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Load(Expr):
    buf: str
    index: Expr
    dtype: np.dtype

    def __str__(self):
        return f"{self.buf}[{self.index}]"


@dataclass(frozen=True)
class Idx(Expr):
    """int64 index arithmetic: add, sub, mul, div, mod (operands >= 0), min, max, lt, le, ge, eq, and, or."""
    op: str
    a: Expr
    b: Expr

    @property
    def dtype(self):
        return BOOL if self.op in ("lt", "le", "ge", "eq", "and", "or") else I64

    def __str__(self):
        sym = {"add": "+", "sub": "-", "mul": "*", "div": "//", "mod": "%", "lt": "<", "le": "<=", "ge": ">=",
               "eq": "==", "and": "&&", "or": "||"}.get(self.op)
        return f"({self.a} {sym} {self.b})" if sym else f"{self.op}({self.a}, {self.b})"


@dataclass(frozen=True)
class Call(Expr):
    """An elementwise op (numpy ufunc name, or 'where') with numpy semantics for `dtype`."""
    op: str
    args: tuple[Expr, ...]
    dtype: np.dtype

    def __str__(self):
        return f"{self.op}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Cast(Expr):
    x: Expr
    dtype: np.dtype

    def __str__(self):
        return f"{self.dtype.name}({self.x})"


@dataclass(frozen=True)
class LocalRef(Expr):
    name: str
    dtype: np.dtype

    def __str__(self):
        return self.name


def nodes(x):
    """Every distinct IR object under x (a statement, an expression, or a tuple/list of them), parents
    first, each shared object once: expressions are DAGs (a value read twice is one object), and a walk
    that expanded them into trees would take time exponential in the depth of an unrolled loop."""
    seen, stack = set(), [x]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (tuple, list)):
            stack.extend(reversed(e))
            continue
        fields = getattr(e, "__dataclass_fields__", None)
        if fields is None:
            continue
        yield e
        if isinstance(e, (Const, Var, LocalRef)):
            continue
        stack.extend(reversed([getattr(e, f) for f in fields if f != "dtype"]))


def walk(e: Expr):
    """e and every distinct expression under it, parents first (see `nodes`)."""
    return (x for x in nodes(e) if isinstance(x, Expr))


def _children(e) -> list:
    if isinstance(e, (Const, Var, LocalRef)):
        return []
    out = []
    for f in e.__dataclass_fields__:
        v = getattr(e, f) if f != "dtype" else None
        for c in (v if isinstance(v, (tuple, list)) else (v,)):
            if hasattr(c, "__dataclass_fields__"):
                out.append(c)
    return out


def count_refs(x, pred) -> int:
    """How many times expressions satisfying `pred` are referenced under x, counting every path (a local
    read twice through one shared expression counts twice), in time linear in the DAG."""
    memo: dict[int, int] = {}
    roots = list(x) if isinstance(x, (tuple, list)) else [x]
    for r in roots:
        stack = [(r, False)]
        while stack:  # post-order: every child's count is known before its parent's
            e, ready = stack.pop()
            if id(e) in memo:
                continue
            kids = _children(e)
            if not ready:
                stack.append((e, True))
                stack.extend((c, False) for c in kids if id(c) not in memo)
                continue
            memo[id(e)] = (1 if isinstance(e, Expr) and pred(e) else 0) + sum(memo[id(c)] for c in kids)
    return sum(memo[id(r)] for r in roots)


def canonical(x, rename=None) -> tuple:
    """A hashable description of x's structure and every field (dtypes included), linear in its DAG size:
    each distinct object is described once and referred to by number. `rename` maps strings (buffer
    names) to others, so kernels that differ only in their buffers compare equal."""
    index: dict[int, int] = {}
    table: list = []
    rename = rename or {}

    def ref(v):
        if isinstance(v, (tuple, list)):
            return ("t",) + tuple(ref(y) for y in v)
        if isinstance(v, str):
            return rename.get(v, v)
        if isinstance(v, np.dtype):
            return v.str
        if not hasattr(v, "__dataclass_fields__"):
            return (type(v).__name__, repr(v))  # (repr: -0.0 and 0.0 are equal as floats)
        k = index.get(id(v))
        if k is None:
            desc = (type(v).__name__,) + tuple(ref(getattr(v, f)) for f in v.__dataclass_fields__)
            k = index[id(v)] = len(table)
            table.append(desc)
        return ("#", k)

    root = ref(x)
    return root, tuple(table)


class Stmt:
    pass


@dataclass(frozen=True)
class For(Stmt):
    var: str
    extent: int
    body: Stmt
    kind: str = "serial"  # serial | vectorize | unroll | parallel
    lanes: int = 1        # vector width when kind == "vectorize"
    copies: int = 1       # vector loops: body copies per main-loop iteration (a reduction's independent accumulators)
    grain: int = 0        # parallel loops: iterations per chunk handed to a thread (0: the runtime's rule)


@dataclass(frozen=True)
class Seq(Stmt):
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Store(Stmt):
    buf: str
    index: Expr
    value: Expr


@dataclass(frozen=True)
class Decl(Stmt):
    """Declare a scalar local (accumulator) with an initial value."""
    name: str
    init: Expr


@dataclass(frozen=True)
class Assign(Stmt):
    name: str
    value: Expr


@dataclass(frozen=True)
class Check(Stmt):
    """If `cond` holds for any element, the program reports error `code` after the run."""
    cond: Expr
    code: int


@dataclass(frozen=True)
class Prefetch(Stmt):
    """A hint: bring the cache line of buf[index] closer. No effect on results, never faults; `index` may
    lie past the buffer (the next row of the last row)."""
    buf: str
    index: Expr


@dataclass(frozen=True)
class Buffer:
    name: str
    dtype: np.dtype
    size: int            # elements reachable from the base pointer's offset 0 (for docs and checks)
    slot: int            # position in the program's pointer table


@dataclass(frozen=True)
class Kernel:
    name: str
    buffers: tuple[Buffer, ...]
    body: Stmt
    outputs: tuple[str, ...] = field(default=())
    # a code-generator template that implements `body` better than its loops (("gemm", params)); the body
    # stays the reference semantics (dumps, interpreters)
    template: tuple | None = None
    sites: tuple = ()  # (error code, source line) of the ops whose checks this kernel runs
    # how it was scheduled: the steps applied to the lowered kernel (primitives.to_json form) and where
    # they came from ("default" or "record N, 1.4x over default"); empty before scheduling
    steps: tuple = ()
    origin: str = ""
    workload: str = ""  # its workload key (loop/workload.py), set when it is scheduled

    def __str__(self):
        return format_kernel(self)


def format_stmt(s: Stmt, ind: int = 1) -> list[str]:
    p = "  " * ind
    if isinstance(s, For):
        tags = ([s.kind] if s.kind != "serial" else []) + ([f"vector x{s.lanes}"] if s.lanes > 1 else [])
        tags += ([f"copies {s.copies}"] if s.copies > 1 else []) + ([f"grain {s.grain}"] if s.grain else [])
        tag = f"  # {', '.join(tags)}" if tags else ""
        return [f"{p}for {s.var} in 0..{s.extent}:{tag}"] + format_stmt(s.body, ind + 1)
    if isinstance(s, Seq):
        return [line for b in s.body for line in format_stmt(b, ind)]
    if isinstance(s, Store):
        return [f"{p}{s.buf}[{s.index}] = {s.value}"]
    if isinstance(s, Decl):
        return [f"{p}{s.name} = {s.init}"]
    if isinstance(s, Assign):
        return [f"{p}{s.name} = {s.value}"]
    if isinstance(s, Check):
        return [f"{p}check not {s.cond} (error {s.code})"]
    if isinstance(s, Prefetch):
        return [f"{p}prefetch {s.buf}[{s.index}]"]
    return [f"{p}{s!r}"]


def format_kernel(k: Kernel) -> str:
    params = ", ".join(f"{b.name}: {b.dtype.name}[{b.size}]" for b in k.buffers)
    head = f"kernel {k.name}({params}):"
    if k.template:
        params = {n: (str(v) if isinstance(v, Expr) else v) for n, v in k.template[1]}
        head += f"  # template {k.template[0]} {params}"
    lines = [head]
    if k.origin:
        lines.append(f"  # schedule ({k.origin}): " + ("; ".join(map(_step_text, k.steps)) or "no steps"))
    return "\n".join(lines + format_stmt(k.body))


def _step_text(st) -> str:
    """Split(loop='i', factor=4) -> split i 4 (a schedule step, compactly)."""
    args = []
    for f in st.__dataclass_fields__:
        v = getattr(st, f)
        if f == "knobs":
            args += [f"{n}={x}" for n, x in v]
        else:
            args.append(" ".join(map(str, v)) if isinstance(v, tuple) else str(v))
    return " ".join([type(st).__name__] + args)


# -- smart constructors for index arithmetic (keep the IR small and readable)

def c64(v: int) -> Const:
    return Const(int(v), I64)


def _cv(e):
    return e.value if isinstance(e, Const) else None


def iadd(a: Expr, b: Expr) -> Expr:
    if _cv(a) == 0:
        return b
    if _cv(b) == 0:
        return a
    if _cv(a) is not None and _cv(b) is not None:
        return c64(a.value + b.value)
    return Idx("add", a, b)


def isub(a: Expr, b: Expr) -> Expr:
    if _cv(b) == 0:
        return a
    if _cv(a) is not None and _cv(b) is not None:
        return c64(a.value - b.value)
    return Idx("sub", a, b)


def imul(a: Expr, b) -> Expr:
    b = b if isinstance(b, Expr) else c64(b)
    if _cv(a) == 0 or _cv(b) == 0:
        return c64(0)
    if _cv(b) == 1:
        return a
    if _cv(a) == 1:
        return b
    if _cv(a) is not None and _cv(b) is not None:
        return c64(a.value * b.value)
    return Idx("mul", a, b)


def idiv(a: Expr, d: int) -> Expr:
    if d == 0:  # only in code over an empty extent, which never runs
        return c64(0)
    if d == 1:
        return a
    if _cv(a) is not None:
        return c64(a.value // d)
    return Idx("div", a, c64(d))


def imod(a: Expr, d: int) -> Expr:
    if d in (0, 1):  # (0: only in code over an empty extent, which never runs)
        return c64(0)
    if _cv(a) is not None:
        return c64(a.value % d)
    return Idx("mod", a, c64(d))


def iclamp(a: Expr, lo: int, hi: int) -> Expr:
    if _cv(a) is not None:
        return c64(min(max(a.value, lo), hi))
    return Idx("min", Idx("max", a, c64(lo)), c64(hi))


def linear(idx: list[Expr], strides) -> Expr:
    idx, strides = list(idx), [int(s) for s in strides]
    k = 0
    while k + 1 < len(idx):  # [e // c, e % c] with strides (c * s, s) is e * s (indices are never negative): a
        # flat index split by one reshape and merged again by the next, or by a contiguous layout, stays affine
        a, b = idx[k], idx[k + 1]
        if (isinstance(a, Idx) and a.op == "div" and isinstance(b, Idx) and b.op == "mod" and a.a == b.a
                and _cv(a.b) is not None and _cv(a.b) == _cv(b.b) and strides[k] == _cv(a.b) * strides[k + 1]):
            idx[k:k + 2], strides[k:k + 2] = [a.a], [strides[k + 1]]
            k = max(k - 1, 0)  # the merged index may pair with the one before it
        else:
            k += 1
    out: Expr = c64(0)
    for i, s in zip(idx, strides):
        out = iadd(out, imul(i, s))
    return out
