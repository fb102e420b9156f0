"""Schedules: loop-nest transformations expressed as data (a list of steps) and applied to kernels.

A step is replayable: templates, the tuner and tuning records all speak this language.
Primitives here: `fuse` (collapse two perfectly nested loops when every index is affine and
contiguous across them), `mark` (set a loop's kind: vectorize / unroll / parallel).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .ir import (Assign, Call, Cast, Check, Const, Decl, Expr, For, Idx, Kernel, Load, LocalRef, Prefetch, Seq, Stmt,
                 Store, Var, c64, iadd, imul, nodes, walk)


@dataclass(frozen=True)
class Step:
    kind: str        # "fuse" | "mark"
    loop: str        # the loop variable it applies to (the outer one for fuse)
    arg: object = None


# -- affine analysis of index expressions

def affine(e: Expr):
    """{var: coef, None: const} if e is affine in loop vars, else None."""
    if isinstance(e, Const):
        return {None: int(e.value)}
    if isinstance(e, Var):
        return {e.name: 1}
    if isinstance(e, Idx) and e.op in ("add", "sub", "mul"):
        a, b = affine(e.a), affine(e.b)
        if a is None or b is None:
            return None
        if e.op == "mul":
            if set(a) <= {None}:
                a, b = b, a
            if not set(b) <= {None}:
                return None
            k = b.get(None, 0)
            return {v: c * k for v, c in a.items()}
        sign = 1 if e.op == "add" else -1
        out = dict(a)
        for v, c in b.items():
            out[v] = out.get(v, 0) + sign * c
        return out
    return None


def from_affine(f: dict) -> Expr:
    out: Expr = c64(f.get(None, 0))
    for v, c in sorted((k, c) for k, c in f.items() if k is not None):
        out = iadd(out, imul(Var(v), c))
    return out


def _uses(e, name) -> bool:
    return any(isinstance(x, Var) and x.name == name for x in nodes(e))


class _NotAffine(Exception):
    pass


def _subst_fuse(node, outer: str, inner: str, inner_extent: int, fused: str):
    """Rewrite indices for fusing outer*inner_extent+inner -> fused; raise if a use is not an affine index."""
    def idx(e):
        f = affine(e)
        if f is None:
            if _uses(e, outer) or _uses(e, inner):
                raise _NotAffine
            return e
        co, ci = f.pop(outer, 0), f.pop(inner, 0)
        if co == 0 and ci == 0:
            return e
        if co != ci * inner_extent:
            raise _NotAffine
        f[fused] = f.get(fused, 0) + ci
        return from_affine(f)

    memo: dict = {}

    def ex(e):  # memoized by object: expressions are DAGs, rebuilding them as trees would copy shared parts
        hit = memo.get(id(e))
        if hit is None or hit[0] is not e:
            hit = memo[id(e)] = (e, _ex(e))
        return hit[1]

    def _ex(e):
        if isinstance(e, Load):
            return replace(e, index=idx(e.index))
        if isinstance(e, Var):
            if e.name in (outer, inner):
                raise _NotAffine
            return e
        if isinstance(e, Idx):
            return Idx(e.op, ex(e.a), ex(e.b))
        if isinstance(e, Call):
            return replace(e, args=tuple(ex(a) for a in e.args))
        if isinstance(e, Cast):
            return replace(e, x=ex(e.x))
        return e

    def st(s):
        if isinstance(s, Store):
            return replace(s, index=idx(s.index), value=ex(s.value))
        if isinstance(s, Seq):
            return Seq(tuple(st(x) for x in s.body))
        if isinstance(s, For):
            return replace(s, body=st(s.body))
        if isinstance(s, (Decl,)):
            return replace(s, init=ex(s.init))
        if isinstance(s, Assign):
            return replace(s, value=ex(s.value))
        if isinstance(s, Check):
            return replace(s, cond=ex(s.cond))
        return s
    return st(node)


def fuse(loop: For) -> For | None:
    """Fuse `loop` with the loop directly (and only) inside it, or None when that is not legal."""
    inner = loop.body
    if not isinstance(inner, For) or loop.kind != "serial" or inner.kind != "serial":
        return None
    try:
        body = _subst_fuse(inner.body, loop.var, inner.var, inner.extent, loop.var)
    except _NotAffine:
        return None
    return For(loop.var, loop.extent * inner.extent, body)


def collapse(s: Stmt) -> Stmt:
    """Fuse every legal perfectly-nested pair, outermost first (fewer, longer loops vectorize better)."""
    if isinstance(s, Seq):
        return Seq(tuple(collapse(x) for x in s.body))
    if isinstance(s, For):
        while True:
            f = fuse(s)
            if f is None:
                break
            s = f
        return replace(s, body=collapse(s.body))
    return s


def _stores_and_loads(s, bufs_out: set, acc: list, extents: dict):
    if isinstance(s, Seq):
        for x in s.body:
            _stores_and_loads(x, bufs_out, acc, extents)
    elif isinstance(s, For):
        extents[s.var] = s.extent
        _stores_and_loads(s.body, bufs_out, acc, extents)
    elif isinstance(s, Store):
        bufs_out.add(s.buf)
        acc.append((s.buf, s.index))
        _loads(s.value, acc)
    elif isinstance(s, (Decl, Assign)):
        _loads(s.init if isinstance(s, Decl) else s.value, acc)
    elif isinstance(s, Check):
        _loads(s.cond, acc)


def _loads(e, acc):
    acc.extend((x.buf, x.index) for x in walk(e) if isinstance(x, Load))


def parallel_legal(loop: For) -> bool:
    """Iterations of `loop` touch disjoint blocks of every buffer the loop writes: every access to such a
    buffer is v*c + rest (one c per buffer), and the rests over the inner loops span fewer than c elements."""
    written: set = set()
    acc: list = []
    extents: dict = {}
    _stores_and_loads(loop.body, written, acc, extents)
    if not written:
        return False
    window: dict = {}  # written buffer -> (c, lowest offset, highest offset) over all its accesses
    for buf, index in acc:
        if buf not in written:
            continue
        f = affine(index)
        if f is None:
            return False
        c = f.pop(loop.var, 0)
        lo = f.pop(None, 0)
        hi = lo
        for v, k in f.items():
            if v not in extents or k < 0:
                return False
            hi += k * (extents[v] - 1)
        c0, lo0, hi0 = window.get(buf, (c, lo, hi))
        window[buf] = (c, min(lo, lo0), max(hi, hi0))
        # iteration v touches [v*c + lo, v*c + hi]: disjoint from the others when that window is shorter than
        # c (a constant offset is fine: the second piece of a concatenation writes after the first)
        if c <= 0 or c != c0 or max(hi, hi0) - min(lo, lo0) >= c:
            return False
    return True


# ops that cost tens of instructions per vector (the vector math library)
COSTLY_CALLS = frozenset(("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "sinh", "cosh", "sin",
                          "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "arcsinh", "arccosh", "arctanh",
                          "power", "float_power", "erf", "sigmoid", "divide", "sqrt"))


def work(s) -> int:
    """Rough cost of a statement in scalar ops: loop iterations times (loads + ops, a math-library call
    counting as 8). The runtime compares it with the cost of handing a loop to other threads."""
    if isinstance(s, For):
        return s.extent * work(s.body)
    if isinstance(s, Seq):
        return sum(work(x) for x in s.body)
    return 1 + _size(getattr(s, "value", None) or getattr(s, "init", None) or getattr(s, "cond", None))


def _size(e) -> int:
    """Loads and ops of an expression, each shared subexpression once (the code computes it once)."""
    if e is None:
        return 0
    return sum((8 if x.op in COSTLY_CALLS else 1) if isinstance(x, Call) else int(isinstance(x, Load))
               for x in walk(e))


COMBINE_OPS = ("reduce_add", "reduce_mul", "maximum", "minimum", "logical_or", "logical_and")


def _refs(e, name) -> bool:
    return any(isinstance(x, LocalRef) and x.name == name for x in nodes(e))


def vector_lanes(loop: For, vector_bits: int) -> int:
    """Lanes for vectorizing `loop` (an innermost loop), or 1 when it cannot be: every store must be contiguous
    in the loop variable and every local update a reduction `acc = combine(acc, x)` (vector accumulators)."""
    body = loop.body
    stmts = list(body.body) if isinstance(body, Seq) else [body]
    sizes = []
    for st in stmts:
        if isinstance(st, (For, Decl)):
            return 1
        if isinstance(st, Store):
            f = affine(st.index)
            if f is None or f.get(loop.var, 0) != 1:
                return 1
            sizes.append(st.value.dtype.itemsize)
        elif isinstance(st, Assign):
            v = st.value
            if not (isinstance(v, Call) and v.op in COMBINE_OPS and isinstance(v.args[0], LocalRef)
                    and v.args[0].name == st.name and _refs(v.args[1], st.name) == 0):
                return 1
            if any(_refs(o, st.name) for o in stmts if o is not st):
                return 1
    sizes += [e.dtype.itemsize for e in _load_exprs(stmts)]
    lanes = max(1, vector_bits // 8 // max(1, min(sizes or [4])))
    lanes = min(lanes, 16)
    return lanes if loop.extent >= lanes and lanes > 1 else 1


def _load_exprs(x):
    return [e for e in nodes(x) if isinstance(e, Load)]


def _has_loop(s) -> bool:
    if isinstance(s, For):
        return True
    if isinstance(s, Seq):
        return any(_has_loop(x) for x in s.body)
    return False


PREFETCH_MIN_ROW_BYTES = 2048  # shorter rows: the hardware prefetcher keeps up on its own


class NotApplicable(Exception):
    """A transformation whose pattern the kernel does not have (the primitive turns it into a ScheduleError)."""


def prefetch_next_rows(loop: For, distance: int = 1) -> For:
    """A row kernel (a parallel loop over rows whose body makes several passes over each row) reads each
    row from memory in its first pass, with the cores waiting, then computes from cache with memory
    idle. Prefetching a later row (`distance` rows ahead) during the second pass overlaps the two: one
    prefetch per vector of the pass, at the same column of row + distance."""
    passes = loop.body.body if isinstance(loop.body, Seq) else ()
    loops = [(i, p) for i, p in enumerate(passes) if isinstance(p, For) and p.lanes > 1 and not _has_loop(p.body)]
    if loop.kind != "parallel" or len(loops) < 2:
        raise NotApplicable(f"loop {loop.var} is not a parallel loop over rows with two vectorized passes")
    first, (i2, second) = loops[0][1], loops[1]
    hints = []
    for buf, index in dict.fromkeys((ld.buf, ld.index) for ld in _load_exprs(first.body)):
        f = affine(index)
        if f is None or f.get(first.var) != 1 or set(f) - {None, first.var, loop.var}:
            continue
        stride = f.get(loop.var, 0)
        itemsize = next(ld.dtype.itemsize for ld in _load_exprs(first.body) if ld.buf == buf)
        if stride < first.extent or first.extent * itemsize < PREFETCH_MIN_ROW_BYTES or second.extent != first.extent:
            continue
        g = {k: v for k, v in f.items() if k != first.var}
        g[second.var] = 1
        g[None] = g.get(None, 0) + stride * distance
        hints.append(Prefetch(buf, from_affine(g)))
    if not hints:
        raise NotApplicable(f"the first pass of loop {loop.var} reads no row of at least {PREFETCH_MIN_ROW_BYTES} "
                            "bytes that the second pass could prefetch")
    body2 = second.body.body if isinstance(second.body, Seq) else (second.body,)
    new2 = replace(second, body=Seq(tuple(hints) + tuple(body2)))
    return replace(loop, body=Seq(passes[:i2] + (new2,) + passes[i2 + 1:]))


def _column_block(extent: int) -> int | None:
    """Columns per block: a divisor of `extent` in [64, 1024] leaving at least 2 blocks, a multiple of 16
    (whole vectors) when there is one; the largest such (long contiguous runs per row)."""
    ok = [b for b in range(64, min(1024, extent // 2) + 1) if extent % b == 0]
    whole = [b for b in ok if b % 16 == 0]
    return max(whole or ok, default=None)


def block_columns(body: Stmt, B: int) -> Stmt:
    """A column reduction (`for r: for c: t[c] = combine(t[c], x[r, c])`, after loops over the same
    columns that initialize `t`) runs its reduction loop outermost, so it cannot run in parallel.
    Blocking the columns makes a parallel loop over column blocks, each block making its own pass
    over the rows: `for cb: [init t[cb*B : cb*B+B]]; for r: for c in 0..B: ...`. Raises NotApplicable
    unless the body has that form, B divides the columns, and the result passes `parallel_legal`
    (blocks write disjoint parts of every buffer)."""
    from .primitives import _subst
    stmts = body.body if isinstance(body, Seq) else (body,)
    shape = NotApplicable("the kernel is not a column reduction (loops over the columns, then a loop over rows "
                          "around one over the same columns)")
    if not stmts or not all(isinstance(x, For) and x.kind == "serial" for x in stmts):
        raise shape
    red = stmts[-1]
    inner = red.body
    if not isinstance(inner, For) or _has_loop(inner.body):
        raise shape
    C = inner.extent
    if any(x.extent != C or _has_loop(x.body) for x in stmts[:-1]):
        raise shape
    if C % B or B >= C:
        raise NotApplicable(f"a block of {B} columns does not divide {C} columns into several blocks")
    cb = "cb"
    while any(cb == f.var for f in _all_loops(body)):
        cb += "_"

    def blocked(loop: For) -> For:
        at = iadd(imul(Var(cb), B), Var(loop.var))
        return For(loop.var, B, _subst(loop.body, {loop.var: at}))
    new = [blocked(x) for x in stmts[:-1]] + [replace(red, body=blocked(inner))]
    out = For(cb, C // B, Seq(tuple(new)))
    if not parallel_legal(out):
        raise NotApplicable("column blocks would write overlapping parts of a buffer")
    return out


def _all_loops(s: Stmt):
    if isinstance(s, For):
        yield s
        yield from _all_loops(s.body)
    elif isinstance(s, Seq):
        for x in s.body:
            yield from _all_loops(x)


TRANSPOSE_TILES = (32, 16, 8)  # tile sides tried, largest first: a 32 x 32 float64 tile reads 32 lines (8 KiB)


def transpose_tiles(body: Stmt) -> list:
    """Schedule steps tiling a transposing copy: an innermost pair of perfectly nested loops `for i: for j:`
    that stores contiguously in j but loads some buffer contiguously in i (`x + x.T`, `x.T.copy()`, a
    swapaxes of a 3-d array). Untiled, each row of the output reads a column of the input: one cache line
    and one page per element, reused only if a whole column's lines and pages stay cached. Tiles of T x T
    read T lines of the input and write T lines of the output, both in cache and in the TLB. Only tiles that
    divide both extents (a guard on every element would cost more than it saves); [] when nothing fits."""
    from .primitives import Tile
    nest = []
    s = body
    while isinstance(s, For) and s.kind == "serial" and s.lanes == 1:
        nest.append(s)
        s = s.body
    if len(nest) < 2 or _has_loop(s) or not isinstance(s, (Store, Seq)):
        return []
    outer, inner = nest[-2], nest[-1]
    leaves = list(s.body) if isinstance(s, Seq) else [s]
    if not all(isinstance(x, Store) for x in leaves):
        return []
    i, j = outer.var, inner.var
    for st in leaves:
        f = affine(st.index)
        if f is None or f.get(j, 0) != 1:
            return []
    strided = False
    for ld in _load_exprs(leaves):
        f = affine(ld.index)
        if f is not None and abs(f.get(i, 0)) == 1 and abs(f.get(j, 0)) > 1:
            strided = True
    if not strided:
        return []
    t = next((t for t in TRANSPOSE_TILES if outer.extent % t == 0 and inner.extent % t == 0
              and outer.extent > t and inner.extent > t), None)
    return [] if t is None else [Tile((i, j), (t, t))]


def default_steps(k: Kernel, target) -> list:
    """The default schedule of a lowered kernel as replayable steps, decided one at a time on the kernel as
    scheduled so far (a step the primitives refuse is left out):
      template kernels: TemplateKnobs with the blocking of loop/templates.py;
      loop kernels: Fuse every perfectly nested pair whose indices stay affine (outermost first: fewer,
      longer loops vectorize better), BlockColumns for a column reduction, Tile a transposing copy,
      Vectorize every innermost loop (4 copies for a reduction: one accumulator chain would wait on each
      combine's latency), Parallel the outermost loop, PrefetchRows for a row kernel."""
    from . import templates
    from .primitives import (BlockColumns, Fuse, Parallel, PrefetchRows, ScheduleError, TemplateKnobs, Vectorize,
                             apply)
    if k.template is not None:
        return [TemplateKnobs(templates.default_knobs(k.template, target, work(k.body)))]
    steps: list = []
    k = apply(k, [])  # loop names as the primitives see them

    def attempt(step) -> bool:
        nonlocal k
        try:
            k = apply(k, [step])
        except ScheduleError:
            return False
        steps.append(step)
        return True

    stack = [k.body]
    while stack:  # collapse, outermost first: a fused loop is tried again with its new inner loop
        s = stack.pop()
        if isinstance(s, Seq):
            stack.extend(reversed(s.body))
        elif isinstance(s, For):
            if fuse(s) is not None and attempt(Fuse(s.var, s.body.var)):
                stack.append(_find_loop(k.body, s.var))
            else:
                stack.append(s.body)
    if not isinstance(k.body, For):
        B = _column_block_of(k.body)
        if B is not None:
            attempt(BlockColumns(B))
    for st in transpose_tiles(k.body):
        attempt(st)
    if target is not None:
        for loop in [f for f in _all_loops(k.body) if not _has_loop(f.body)]:
            lanes = vector_lanes(loop, target.vector_bits)
            if lanes > 1:
                copies = REDUCTION_COPIES if _has_reduction(loop) else 1
                attempt(Vectorize(loop.var, lanes, copies))
    body = k.body
    if isinstance(body, For) and body.extent > 1 and parallel_legal(body):
        from .templates import default_grain
        attempt(Parallel(body.var, default_grain(body.extent, work(body), body.lanes)))
        if target is not None:
            attempt(PrefetchRows(body.var, 1))
    return steps


REDUCTION_COPIES = 4  # independent vector accumulators of a vectorized reduction (latency ~4 cycles per combine)


def _has_reduction(loop: For) -> bool:
    stmts = loop.body.body if isinstance(loop.body, Seq) else (loop.body,)
    return any(isinstance(x, Assign) for x in stmts)


def _find_loop(s: Stmt, name: str) -> For:
    return next(f for f in _all_loops(s) if f.var == name)


def _column_block_of(body: Stmt) -> int | None:
    stmts = body.body if isinstance(body, Seq) else (body,)
    red = stmts[-1] if stmts else None
    if not isinstance(red, For) or not isinstance(red.body, For):
        return None
    return _column_block(red.body.extent)


def default_schedule(k: Kernel, target=None) -> Kernel:
    """The kernel scheduled by its default steps (see default_steps)."""
    from .primitives import apply
    return replace(apply(k, default_steps(k, target)), origin="default")
