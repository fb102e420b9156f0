"""Schedule primitives as replayable data: a schedule is a list of steps applied to a Kernel.

Templates, the autotuner and saved tuning records all speak this language: `apply(kernel, steps)` replays
a record, `to_json`/`from_json` store one, `loops(kernel)` lists what a search space can name. A step either
keeps the kernel's results (the same values; every element accumulated in the same order, except where the
code generator's vector loops reassociate reductions, as default_schedule's do) or raises `ScheduleError`
naming the step and the reason. Applying steps to a kernel that carries a code-generator template drops the
template: the scheduled loops implement the kernel from then on.

Loops are named by their variable. `apply` and `loops` first rename repeated names deterministically in
pre-order (a matmul kernel has two loops `j`: the second is `j_1`), so a record made against
`loops(kernel)` replays exactly. New loops: `v_o`/`v_i` (split), `v_t` (tail loop; loops copied into the
tail get the suffix `_t`, or `_t2`... when taken). A loop is vectorized when lanes > 1 (as default_schedule
marks them).

Steps
  Split(loop, factor, tail="guard")  v -> v_o (outer) x v_i (inner, extent factor), v = v_o*factor + v_i.
      When factor does not divide the extent:
        tail="guard" (default): ceil(extent/factor) blocks and the nest stays perfect, so Reorder, Tile and
          Parallel still apply. The IR has no `if`: the guard is predication. Inside the loop v becomes
          min(v_o*f + v_i, extent-1) (every load stays in bounds) and each Store, each Check and each Assign
          to a local declared outside the loop is predicated on v_o*f + v_i < extent (a store writes back
          the element's current value, an assign keeps the local, a check is and-ed): masked iterations
          are no-ops. Decls and assigns to locals declared inside the loop are dead after the iteration
          and stay as they are, so an inner reduction keeps its `acc = combine(acc, x)` form.
        tail="loop": extent//factor blocks, then a loop `v_t` over the remainder: no predication (the form
          to vectorize a split reduction), but the nest is no longer perfect, and a parallel loop cannot
          take it (it would no longer be the whole kernel body).
  Reorder(order)  permute loops of one perfect nest (loops of the chain that are not named keep their
      place). Legal when, for every buffer written in the nest, all its accesses there use one affine
      index that is injective over its loops (a guard clamp counts as a variable over its real range),
      and the loops the index does not use (its reduction loops) keep their relative order; a local
      accumulated across the nest forbids any change. So no element's accumulation order ever changes.
  Fuse(outer, inner)  collapse a perfect pair into one loop named `outer`: schedule.fuse's affine rewrite
      when every index is affine and contiguous across the pair, else v_outer = f // n, v_inner = f % n.
  Tile(loops, factors)  Split both (guarded), Reorder to (o1, o2, i1, i2); loops[1] must be nested in
      loops[0] with only perfectly nested loops between.
  Vectorize(loop, lanes)  lanes (a power of two) on an innermost loop; kind="vectorize" (a parallel loop
      stays parallel). The code generator emits an explicit vector loop plus a scalar tail, so the extent
      need not be a multiple of lanes; what it needs is checked: no Decl in the body, stores contiguous in
      the loop variable (a clamp that does not involve it is uniform across lanes), locals updated only as
      reductions `acc = combine(acc, x)`, and a written buffer read only at the index it is written.
      A guarded split of the loop itself makes its stores non-contiguous: split with tail="loop" (or a
      dividing factor) to vectorize the inner loop.
  Unroll(loop)  kind="unroll" (drops vector lanes).
  Parallel(loop)  kind="parallel": only a loop that is the whole kernel body (the runtime splits exactly
      that loop), when schedule.parallel_legal holds. Guard clamps are accepted when every clamped access
      stays inside its own iteration's block: a clamp that does not involve the loop is analysed as a
      variable over [0, C]; min(v*k + R, C) with 0 <= R < k and C >= k*(extent-1) only bites in the last
      iteration and lands inside it.
  CacheWrite(loop, buffer=None)  register accumulation: inside `loop`, every Load/Store of `buffer` (the one
      buffer `loop` writes when omitted) becomes a fresh local `<buffer>_acc`, loaded before the loop and
      stored once after it. Legal when all those accesses use one index that does not depend on `loop` or
      on a loop inside it (nor read a buffer written there). After Reorder(("i1", "i0")) this turns the
      column reduction `t[i1] += x[i0, i1]` into `acc = t[i1]; for i0: acc += x[i0, i1]; t[i1] = acc`, and
      the matmul update (after Inline("aik"), Reorder(("j_1", "k"))) into a dot product in a register.
  Inline(local)  substitute a local's Decl expression into its uses and drop the Decl (e.g. the matmul's
      `aik`, which makes the k/j nest perfect). Legal when the local is declared once, never assigned, used
      only after its Decl in the same block, and nothing it reads (buffers, locals) is written there.
  ComputeAt(local, loop)  move the statements computing a local (its Decl and the following loops/assigns
      that only update it, e.g. a row-local reduction) to the start of `loop`'s body, recomputing it per
      iteration (to make an outer nest perfect). Legal when `loop` follows it in the same block and holds
      every use, and nothing the computation reads is written from its old place through `loop`.
      Producers in other kernels cannot move: kernel boundaries are the fusion planner's decision.
  BlockColumns(factor)  a column reduction (loops initializing t over the columns, then `for r: for c:
      t[c] = combine(t[c], x[r, c])`) becomes `for cb: [init t[cb*B:(cb+1)*B]]; for r: for c in 0..B` (B =
      factor, dividing the columns into several blocks), so that blocks can run in parallel.
  PrefetchRows(loop, distance=1)  in a parallel loop over rows making several vectorized passes over each
      row, the second pass prefetches the same columns `distance` rows ahead (memory works while the cores
      compute from cache).
  TemplateKnobs(knobs)  set the knobs of a code-generator template kernel (loop/templates.py: GEMM blocking
      and register tile, matrix-vector rows and accumulators, the thread grain); every knob of the template
      must end up set. The only step that keeps a template.
  Vectorize(loop, lanes, copies) emits `copies` vector bodies per main-loop iteration (independent
  accumulators of a reduction); Parallel(loop, grain) hands the runtime chunks of `grain` iterations (0: its
  own rule).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Union

import numpy as np

from ..errors import JitensorError
from . import schedule as _schedule
from .ir import (Assign, Call, Cast, Check, Const, Decl, Expr, For, Idx, Kernel, Load, LocalRef, Seq, Stmt, Store,
                 Var, c64, count_refs, iadd, idiv, imod, imul, isub, walk)


class ScheduleError(JitensorError):
    """A schedule step that is illegal on the kernel it is applied to (or a malformed record)."""

    def __init__(self, msg: str, *, step=None, index: int | None = None):
        self.step, self.index = step, index
        super().__init__(msg)


class _Illegal(Exception):
    """Raised inside primitives; `apply` turns it into a ScheduleError naming the step."""


# ---------------------------------------------------------------------------------------------
# steps


def _coerce(obj, name, conv):
    v = getattr(obj, name)
    object.__setattr__(obj, name, (v,) if isinstance(v, str) else conv(v))  # lists from JSON -> tuples


@dataclass(frozen=True)
class Split:
    loop: str
    factor: int
    tail: str = "guard"  # guard | loop


@dataclass(frozen=True)
class Reorder:
    order: tuple[str, ...]

    def __post_init__(self):
        _coerce(self, "order", tuple)


@dataclass(frozen=True)
class Fuse:
    outer: str
    inner: str


@dataclass(frozen=True)
class Tile:
    loops: tuple[str, str]
    factors: tuple[int, int]

    def __post_init__(self):
        _coerce(self, "loops", tuple)
        _coerce(self, "factors", tuple)


@dataclass(frozen=True)
class Vectorize:
    loop: str
    lanes: int
    copies: int = 1


@dataclass(frozen=True)
class Unroll:
    loop: str


@dataclass(frozen=True)
class Parallel:
    loop: str
    grain: int = 0


@dataclass(frozen=True)
class CacheWrite:
    loop: str
    buffer: str | None = None


@dataclass(frozen=True)
class Inline:
    local: str


@dataclass(frozen=True)
class ComputeAt:
    local: str
    loop: str


@dataclass(frozen=True)
class BlockColumns:
    factor: int


@dataclass(frozen=True)
class PrefetchRows:
    loop: str
    distance: int = 1


@dataclass(frozen=True)
class TemplateKnobs:
    knobs: tuple[tuple[str, object], ...]

    def __post_init__(self):
        items = self.knobs.items() if isinstance(self.knobs, dict) else self.knobs
        object.__setattr__(self, "knobs", tuple((str(n), v) for n, v in items))


Step = Union[Split, Reorder, Fuse, Tile, Vectorize, Unroll, Parallel, CacheWrite, Inline, ComputeAt, BlockColumns,
             PrefetchRows, TemplateKnobs]
STEPS = {"split": Split, "reorder": Reorder, "fuse": Fuse, "tile": Tile, "vectorize": Vectorize, "unroll": Unroll,
         "parallel": Parallel, "cache_write": CacheWrite, "inline": Inline, "compute_at": ComputeAt,
         "block_columns": BlockColumns, "prefetch_rows": PrefetchRows, "template_knobs": TemplateKnobs}
_NAMES = {c: n for n, c in STEPS.items()}


def to_json(steps) -> list[dict]:
    """[{"step": "split", "loop": "i0", "factor": 4, "tail": "guard"}, ...] (tuples become lists)."""
    out = []
    for s in steps:
        if type(s) not in _NAMES:
            raise ScheduleError(f"not a schedule step: {s!r}")
        d = {"step": _NAMES[type(s)]}
        for f in fields(s):
            v = getattr(s, f.name)
            d[f.name] = _plain(v)
        out.append(d)
    return out


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return int(v) if isinstance(v, np.integer) else v


def from_json(data) -> list[Step]:
    out = []
    for i, d in enumerate(data):
        try:
            cls = STEPS[d["step"]]
            kw = {k: v for k, v in d.items() if k != "step"}
            out.append(cls(**kw))
        except (KeyError, TypeError, AttributeError) as e:
            raise ScheduleError(f"record entry {i} is not a schedule step: {d!r} ({e})", index=i) from None
    return out


# ---------------------------------------------------------------------------------------------
# traversal and rewriting


def _exprs_of(s: Stmt) -> tuple:
    if isinstance(s, Store):
        return (s.index, s.value)
    if isinstance(s, Decl):
        return (s.init,)
    if isinstance(s, Assign):
        return (s.value,)
    if isinstance(s, Check):
        return (s.cond,)
    return ()


def _map_exprs(s: Stmt, fe) -> Stmt:
    """Rebuild `s` with fe applied to every expression it holds."""
    if isinstance(s, For):
        return replace(s, body=_map_exprs(s.body, fe))
    if isinstance(s, Seq):
        return Seq(tuple(_map_exprs(x, fe) for x in s.body))
    if isinstance(s, Store):
        return Store(s.buf, fe(s.index), fe(s.value))
    if isinstance(s, Decl):
        return Decl(s.name, fe(s.init))
    if isinstance(s, Assign):
        return Assign(s.name, fe(s.value))
    if isinstance(s, Check):
        return Check(fe(s.cond), s.code)
    return s


def _leaves(s: Stmt):
    """Every non-loop statement under s."""
    if isinstance(s, For):
        yield from _leaves(s.body)
    elif isinstance(s, Seq):
        for x in s.body:
            yield from _leaves(x)
    else:
        yield s


def _all_exprs(s: Stmt):
    for leaf in _leaves(s):
        for e in _exprs_of(leaf):
            yield from walk(e)


def _rebuild_idx(op, a, b):
    if op == "add":
        return iadd(a, b)
    if op == "sub":
        return isub(a, b)
    if op == "mul":
        return imul(a, b)
    if op == "div" and isinstance(b, Const):
        return idiv(a, int(b.value))
    if op == "mod" and isinstance(b, Const):
        return imod(a, int(b.value))
    return Idx(op, a, b)


def _rewrite(e: Expr, fn, memo: dict) -> Expr:
    """Bottom-up rewrite: fn(node with rewritten children) -> replacement (or the node)."""
    key = id(e)
    hit = memo.get(key)
    if hit is not None and hit[0] is e:
        return hit[1]
    if isinstance(e, Load):
        r = replace(e, index=_rewrite(e.index, fn, memo))
    elif isinstance(e, Idx):
        a, b = _rewrite(e.a, fn, memo), _rewrite(e.b, fn, memo)
        r = e if (a is e.a and b is e.b) else _rebuild_idx(e.op, a, b)
    elif isinstance(e, Call):
        args = tuple(_rewrite(x, fn, memo) for x in e.args)
        r = e if all(x is y for x, y in zip(args, e.args)) else replace(e, args=args)
    elif isinstance(e, Cast):
        x = _rewrite(e.x, fn, memo)
        r = e if x is e.x else replace(e, x=x)
    else:
        r = e
    r = fn(r)
    memo[key] = (e, r)
    return r


def _subst(s: Stmt, env: dict) -> Stmt:
    """Replace Var(name) by env[name] everywhere in s."""
    memo: dict = {}

    def fn(e):
        return env.get(e.name, e) if isinstance(e, Var) else e
    return _map_exprs(s, lambda e: _rewrite(e, fn, memo))


def _iter_loops(s: Stmt, depth=0):
    if isinstance(s, For):
        yield s, depth
        yield from _iter_loops(s.body, depth + 1)
    elif isinstance(s, Seq):
        for x in s.body:
            yield from _iter_loops(x, depth)


def _has_loop(s: Stmt) -> bool:
    return next(_iter_loops(s), None) is not None


def _only_loop(body: Stmt) -> For | None:
    """The loop that is the whole of `body` (perfect nesting), else None."""
    if isinstance(body, Seq) and len(body.body) == 1:
        body = body.body[0]
    return body if isinstance(body, For) else None


def _seq(stmts) -> Stmt:
    flat = []
    for x in stmts:
        flat.extend(x.body if isinstance(x, Seq) else (x,))
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))  # Seq(()) when empty


def _uniquify(s: Stmt) -> Stmt:
    """Rename repeated loop variables (second `j` -> `j_1`), scoping each rename to its loop's body."""
    names = [f.var for f, _ in _iter_loops(s)]
    if len(set(names)) == len(names):
        return s
    taken, seen = set(names), set()

    def fresh(v):
        n = 1
        while f"{v}_{n}" in taken:
            n += 1
        taken.add(f"{v}_{n}")
        return f"{v}_{n}"

    def go(s, env):
        if isinstance(s, For):
            env = {k: x for k, x in env.items() if k != s.var}
            var = s.var
            if var in seen:
                var = fresh(s.var)
                env[s.var] = Var(var)
            seen.add(var)
            return replace(s, var=var, body=go(s.body, env))
        if isinstance(s, Seq):
            return Seq(tuple(go(x, env) for x in s.body))
        return _subst(s, env) if env else s
    return go(s, {})


def _loop_names(s: Stmt) -> set:
    return {f.var for f, _ in _iter_loops(s)}


def _find(s: Stmt, name: str):
    """(loop, [enclosing loops outermost first]) or None."""
    if isinstance(s, For):
        if s.var == name:
            return s, []
        r = _find(s.body, name)
        if r is not None:
            return r[0], [s] + r[1]
    elif isinstance(s, Seq):
        for x in s.body:
            r = _find(x, name)
            if r is not None:
                return r
    return None


def _replace_node(s: Stmt, old: Stmt, new: Stmt) -> Stmt:
    if s is old:
        return new
    if isinstance(s, For):
        b = _replace_node(s.body, old, new)
        return s if b is s.body else replace(s, body=b)
    if isinstance(s, Seq):
        body = tuple(_replace_node(x, old, new) for x in s.body)
        return s if all(a is b for a, b in zip(body, s.body)) else Seq(body)
    return s


def _loop(k: Kernel, name) -> tuple[For, list]:
    if not isinstance(name, str):
        raise _Illegal(f"loop names are strings, got {name!r}")
    r = _find(k.body, name)
    if r is None:
        raise _Illegal(f"no loop named {name!r} in kernel {k.name} (loops: {', '.join(v for v, _, _ in loops(k))})")
    return r


def _check_new_names(k: Kernel, *names):
    clash = set(names) & _loop_names(k.body)
    if clash:
        raise _Illegal(f"new loop name(s) {sorted(clash)} already exist in kernel {k.name}")


def _locals(s: Stmt) -> dict:
    """local name -> dtype (from its Decls)."""
    return {x.name: x.init.dtype for x in _leaves(s) if isinstance(x, Decl)}


def _written(s: Stmt) -> set:
    return {x.buf for x in _leaves(s) if isinstance(x, Store)}


def _read_bufs(e_or_s) -> set:
    exprs = _all_exprs(e_or_s) if isinstance(e_or_s, Stmt) else walk(e_or_s)
    return {e.buf for e in exprs if isinstance(e, Load)}


def _vars(e) -> set:
    return {x.name for x in walk(e) if isinstance(x, Var)}


# ---------------------------------------------------------------------------------------------
# guards (predicated tails) and their recognition in analyses


def _and_terms(c: Expr):
    if isinstance(c, Idx) and c.op == "and":
        yield from _and_terms(c.a)
        yield from _and_terms(c.b)
    else:
        yield c


def _predicate(s: Stmt, cond: Expr, bufdt: dict, localdt: dict, private: set) -> Stmt:
    """Make every effect of s conditional on `cond` (see Split's docstring). Assigns to `private` locals
    (declared inside the guarded loop, so dead after a masked iteration) stay as they are: a reduction loop
    inside keeps its `acc = combine(acc, x)` form and can still be vectorized."""
    if isinstance(s, For):
        return replace(s, body=_predicate(s.body, cond, bufdt, localdt, private))
    if isinstance(s, Seq):
        return Seq(tuple(_predicate(x, cond, bufdt, localdt, private) for x in s.body))
    if isinstance(s, Store) or (isinstance(s, Assign) and s.name not in private):
        if isinstance(s, Store):
            dt = bufdt.get(s.buf, s.value.dtype)
            old = Load(s.buf, s.index, dt)
        else:
            dt = localdt.get(s.name, s.value.dtype)
            old = LocalRef(s.name, dt)
        v, c = s.value, cond
        if isinstance(v, Call) and v.op == "where" and v.args[2] == old:  # already guarded: one where
            v, c = v.args[1], Idx("and", cond, v.args[0])
        new = Call("where", (c, v, old), dt)
        return Store(s.buf, s.index, new) if isinstance(s, Store) else Assign(s.name, new)
    if isinstance(s, Check):
        return Check(Idx("and", cond, s.cond), s.code)
    return s  # Decl, private Assign: dead after the iteration (see Split)


def _guards(s: Stmt) -> set:
    """{(X, E)}: the guards `X < E` predicating statements under s (from Split tail='guard')."""
    out = set()
    for leaf in _leaves(s):
        conds = []
        if isinstance(leaf, (Store, Assign)) and isinstance(leaf.value, Call) and leaf.value.op == "where":
            conds.append(leaf.value.args[0])
        elif isinstance(leaf, Check):
            conds.append(leaf.cond)
        for c in conds:
            for t in _and_terms(c):
                if isinstance(t, Idx) and t.op == "lt" and isinstance(t.b, Const):
                    out.add((t.a, int(t.b.value)))
    return out


def _injective(f: dict, ext: dict) -> bool:
    """An affine form takes distinct values at distinct points of its loop variables (mixed radix);
    variables without an extent here are bound outside and constant."""
    span = 0
    for c, e in sorted((abs(c), ext[v]) for v, c in f.items() if v is not None and c and v in ext):
        if c <= span:
            return False
        span += c * (e - 1)
    return True


def _atomize_guards(e: Expr, guards: set, ext: dict, atoms: dict) -> Expr:
    """Replace each guard clamp min(X, E-1) (X < E predicates the statement) by a pseudo-variable with
    extent E (atoms[name] = (E, vars of X)). Masked iterations are no-ops and may be ignored, and in the
    others the atom equals X; X must be affine and injective so the atom determines X's variables."""
    def fn(x):
        if isinstance(x, Idx) and x.op == "min" and isinstance(x.b, Const) and (x.a, int(x.b.value) + 1) in guards:
            f = _schedule.affine(x.a)
            if f is None or not _injective(f, ext) or any(v is not None and v not in ext for v in f):
                return x
            name = next((n for n, (k, _, _) in atoms.items() if k == (x.a, x.b)), None)
            if name is None:
                name = f"\0atom{len(atoms)}"
                atoms[name] = ((x.a, x.b), int(x.b.value) + 1, {v for v in f if v is not None})
            return Var(name)
        return x
    return _rewrite(e, fn, {})


def _parallel_ok(loop: For) -> bool:
    """schedule.parallel_legal, accepting clamps min(X, C) (from guarded splits): if X does not involve the
    loop's variable the clamp is analysed as a variable over [0, C]; if X = v*k + R with 0 <= R < k and
    C >= k*(extent-1), the clamp only bites in the last iteration and lands inside its block, so X stands."""
    p, n = loop.var, loop.extent
    ext = {f.var: f.extent for f, _ in _iter_loops(loop.body)}
    atoms: dict = {}

    def fn(x):
        if not (isinstance(x, Idx) and x.op == "min" and isinstance(x.b, Const)):
            return x
        f = _schedule.affine(x.a)
        c = int(x.b.value)
        if f is None or c < 0 or any(v is not None and v != p and v not in ext for v in f):
            return x
        k = f.pop(p, 0)
        lo = f.pop(None, 0)
        if any(co < 0 for co in f.values()) or lo < 0:
            return x
        if k == 0:
            name = atoms.setdefault((x.a, c), f"\0atom{len(atoms)}")
            return Var(name)
        hi = lo + sum(co * (ext[v] - 1) for v, co in f.items())
        return x.a if (k > 0 and hi < k and c >= k * (n - 1)) else x

    memo: dict = {}

    def idx(e):
        return _rewrite(e, fn, memo)

    def fix_loads(e):
        return _rewrite(e, lambda x: replace(x, index=idx(x.index)) if isinstance(x, Load) else x, {})

    def st(s):
        if isinstance(s, Store):
            return Store(s.buf, idx(s.index), fix_loads(s.value))
        return _map_exprs(s, fix_loads)

    body = _map_leaves(loop.body, st)
    for (_, c), name in atoms.items():  # parallel_legal reads extents from loops: give each atom one
        body = For(name, c + 1, body)
    return _schedule.parallel_legal(replace(loop, body=body))


def _map_leaves(s: Stmt, fn) -> Stmt:
    if isinstance(s, For):
        return replace(s, body=_map_leaves(s.body, fn))
    if isinstance(s, Seq):
        return Seq(tuple(_map_leaves(x, fn) for x in s.body))
    return fn(s)


# ---------------------------------------------------------------------------------------------
# primitives: each takes (kernel, step) -> kernel, raising _Illegal


def _split(k: Kernel, st: Split) -> Kernel:
    f = st.factor
    if not isinstance(f, (int, np.integer)) or isinstance(f, bool) or f < 1:
        raise _Illegal(f"factor must be a positive int, got {f!r}")
    f = int(f)
    if st.tail not in ("guard", "loop"):
        raise _Illegal(f"tail must be 'guard' or 'loop', got {st.tail!r}")
    loop, _ = _loop(k, st.loop)
    if loop.kind in ("vectorize", "unroll") or loop.lanes > 1:
        raise _Illegal(f"loop {loop.var} is marked {loop.kind} x{loop.lanes}: split it before marking")
    v, n = loop.var, loop.extent
    vo, vi = f"{v}_o", f"{v}_i"
    _check_new_names(k, vo, vi)
    outer_kind = "parallel" if loop.kind == "parallel" else "serial"
    x = iadd(imul(Var(vo), f), Var(vi))
    if n % f == 0:
        new: Stmt = For(vo, n // f, For(vi, f, _subst(loop.body, {v: x})), outer_kind)
    elif st.tail == "guard":
        body = _subst(loop.body, {v: Idx("min", x, c64(n - 1))})
        body = _predicate(body, Idx("lt", x, c64(n)), {b.name: b.dtype for b in k.buffers}, _locals(k.body),
                          set(_locals(loop.body)))
        new = For(vo, -(-n // f), For(vi, f, body), outer_kind)
    else:
        if loop.kind == "parallel":
            raise _Illegal(f"a tail loop would leave parallel loop {v} not the whole kernel body; use tail='guard'")
        vt = f"{v}_t"
        _check_new_names(k, vt)
        taken = _loop_names(k.body) | {vt}
        ren = {}
        for u in sorted(_loop_names(loop.body)):  # copies of inner loops: u_t (u_t2... if taken)
            name, m = f"{u}_t", 2
            while name in taken:
                name, m = f"{u}_t{m}", m + 1
            ren[u] = name
            taken.add(name)
        tail_body = _subst(_rename_loops(loop.body, ren), {v: iadd(c64((n // f) * f), Var(vt))})
        parts = []
        if n // f:
            parts.append(For(vo, n // f, For(vi, f, _subst(loop.body, {v: x}))))
        parts.append(For(vt, n % f, tail_body))
        new = _seq(parts)
    return replace(k, body=_replace_node(k.body, loop, new))


def _rename_loops(s: Stmt, ren: dict) -> Stmt:
    if isinstance(s, For):
        body = _rename_loops(s.body, ren)
        if s.var in ren:
            body = _subst(body, {s.var: Var(ren[s.var])})
            return replace(s, var=ren[s.var], body=body)
        return replace(s, body=body)
    if isinstance(s, Seq):
        return Seq(tuple(_rename_loops(x, ren) for x in s.body))
    return s


def _chain(k: Kernel, names) -> list[For]:
    """The perfect nest from the outermost to the innermost of `names` (all of them on it)."""
    found = {n: _loop(k, n) for n in names}
    top = [n for n in names if all(n in {a.var for a in found[o][1]} for o in names if o != n)]
    if not top:
        raise _Illegal(f"loops {list(names)} are not nested in one another")
    chain = [found[top[0]][0]]
    want = set(names) - {top[0]}
    while want:
        nxt = _only_loop(chain[-1].body)
        if nxt is None:
            raise _Illegal(f"loops {list(names)} are not perfectly nested: the body of {chain[-1].var} is not a "
                           "single loop")
        chain.append(nxt)
        want.discard(nxt.var)
    return chain


def _nest_reason(chain: list[For], new: list[For], body: Stmt) -> str | None:
    """Why permuting the perfect nest `chain` into `new` could change results (None: it cannot)."""
    nest = [f.var for f in chain]
    order = [f.var for f in new]
    ext = {f.var: f.extent for f in chain}
    ext.update({f.var: f.extent for f, _ in _iter_loops(body)})

    def kept(vs) -> bool:
        return [v for v in nest if v in vs] == [v for v in order if v in vs]

    declared = {x.name for x in _leaves(body) if isinstance(x, Decl)}
    carried = sorted({x.name for x in _leaves(body) if isinstance(x, Assign)} - declared)
    if carried and not kept(set(nest)):
        return f"local {carried[0]} accumulates across the nest: its order would change"
    guards = _guards(body)
    access: dict = {}
    written = _written(body)
    for leaf in _leaves(body):
        if isinstance(leaf, Store):
            access.setdefault(leaf.buf, set()).add(leaf.index)
        for e in _exprs_of(leaf):
            for x in walk(e):
                if isinstance(x, Load) and x.buf in written:
                    access.setdefault(x.buf, set()).add(x.index)
    for buf, idxs in sorted(access.items()):
        if len(idxs) != 1:
            return f"buffer {buf} is accessed at different indices in the nest"
        atoms: dict = {}
        f = _schedule.affine(_atomize_guards(next(iter(idxs)), guards, ext, atoms))
        if f is None:
            return f"the index of buffer {buf} is not affine"
        aext = dict(ext)
        used = set()
        for name, (_, e, vs) in atoms.items():
            aext[name] = e
            used |= vs
        if used & set(f):
            return f"the index of buffer {buf} uses a guarded variable outside its guard"
        if not _injective(f, aext):
            return f"the index of buffer {buf} is not injective over its loops"
        red = {v for v in nest if f.get(v, 0) == 0 and v not in used}
        if not kept(red):
            return f"loops {sorted(red)} reduce into buffer {buf}: their order would change"
    return None


def _reorder(k: Kernel, st: Reorder) -> Kernel:
    names = st.order
    if not names or len(set(names)) != len(names):
        raise _Illegal("order must name distinct loops")
    chain = _chain(k, names)
    slots = [i for i, f in enumerate(chain) if f.var in set(names)]
    by_name = {f.var: f for f in chain}
    new = list(chain)
    for i, n in zip(slots, names):
        new[i] = by_name[n]
    body = chain[-1].body
    why = _nest_reason(chain, new, body)
    if why:
        raise _Illegal(why)
    for f in reversed(new):
        body = replace(f, body=body)
    return replace(k, body=_replace_node(k.body, chain[0], body))


def _fuse(k: Kernel, st: Fuse) -> Kernel:
    outer, _ = _loop(k, st.outer)
    inner = _only_loop(outer.body)
    if inner is None or inner.var != st.inner:
        raise _Illegal(f"loop {st.inner} is not the whole body of loop {st.outer}")
    if inner.kind != "serial" or outer.kind not in ("serial", "parallel"):
        raise _Illegal(f"fuse needs an unmarked inner loop and a serial or parallel outer loop "
                       f"(got {outer.kind}, {inner.kind})")
    new = _schedule.fuse(For(outer.var, outer.extent, inner))
    if new is None:  # not affine+contiguous: div/mod
        n = inner.extent
        body = _subst(inner.body, {outer.var: idiv(Var(outer.var), n), inner.var: imod(Var(outer.var), n)})
        new = For(outer.var, outer.extent * n, body)
    return replace(k, body=_replace_node(k.body, outer, replace(new, kind=outer.kind)))


def _tile(k: Kernel, st: Tile) -> Kernel:
    if len(st.loops) != 2 or len(st.factors) != 2:
        raise _Illegal("tile takes two loops and two factors")
    (a, b), (fa, fb) = st.loops, st.factors
    if a == b:
        raise _Illegal("tile needs two different loops")
    _chain(k, (a, b))
    _, anc = _loop(k, b)
    if a not in {x.var for x in anc}:
        raise _Illegal(f"loop {b} is not inside loop {a}")
    k = _split(k, Split(a, fa))
    k = _split(k, Split(b, fb))
    return _reorder(k, Reorder((f"{a}_o", f"{b}_o", f"{a}_i", f"{b}_i")))


def _vector_reason(loop: For) -> str | None:
    """Why the code generator's vector loop (codegen/llvm.py `vector_for`: lanes run one statement at a
    time, locals become vector accumulators folded after the loop, a scalar tail) could change results.
    Mirrors schedule.vector_lanes, plus: a buffer the loop writes is read only at the stored index."""
    v = loop.var
    body = loop.body
    stmts = list(body.body) if isinstance(body, Seq) else [body]
    written = {x.buf for x in stmts if isinstance(x, Store)}
    idx: dict = {}
    for st in stmts:
        if isinstance(st, For):
            return f"loop {v} is not innermost"
        if isinstance(st, Decl):
            return f"loop {v} declares local {st.name} (a vector loop only updates accumulators)"
        if isinstance(st, Store):
            f = _schedule.affine(_unclamp_invariant(st.index, v))
            if f is None or f.get(v, 0) != 1:
                return f"the store to {st.buf} is not contiguous in {v}"
            idx.setdefault(st.buf, set()).add(st.index)
        elif isinstance(st, Assign):
            val = st.value
            if not (isinstance(val, Call) and val.op in _COMBINE and isinstance(val.args[0], LocalRef)
                    and val.args[0].name == st.name and _uses(val.args[1], st.name) == 0):
                hint = (" (a guarded split tail predicates it: split with tail='loop' or a dividing factor)"
                        if isinstance(val, Call) and val.op == "where" else "")
                return f"local {st.name} is not updated as a reduction acc = combine(acc, x){hint}"
            if any(_uses(o, st.name) for o in stmts if o is not st):
                return f"local {st.name} is read inside loop {v}"
        for e in _exprs_of(st):
            for x in walk(e):
                if isinstance(x, Load) and x.buf in written:
                    idx.setdefault(x.buf, set()).add(x.index)
    bad = sorted(b for b, s in idx.items() if len(s) > 1)
    if bad:
        return f"buffer {bad[0]} is read at another index than it is written in loop {v}"
    return None


_COMBINE = ("reduce_add", "reduce_mul", "maximum", "minimum", "logical_or", "logical_and")


def _unclamp_invariant(e: Expr, v: str) -> Expr:
    """min(X, C) -> X when X does not involve v: the clamp is the same in every lane."""
    def fn(x):
        if isinstance(x, Idx) and x.op == "min" and isinstance(x.b, Const) and v not in _vars(x.a):
            return x.a
        return x
    return _rewrite(e, fn, {})


def _int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _mark(k: Kernel, name: str, kind: str, lanes: int = 1, copies: int = 1, grain: int = 0) -> Kernel:
    loop, _ = _loop(k, name)
    if kind == "vectorize":
        if not _int(lanes) or lanes < 2 or lanes & (lanes - 1):
            raise _Illegal(f"lanes must be a power of two >= 2, got {lanes!r}")
        if not _int(copies) or not 1 <= copies <= 16:
            raise _Illegal(f"copies must be an int in 1..16, got {copies!r}")
        if _has_loop(loop.body):
            raise _Illegal(f"loop {name} is not innermost")
        why = _vector_reason(replace(loop, lanes=int(lanes)))
        if why:
            raise _Illegal(why)
        # a parallel loop stays parallel (the vector loop then runs over the thread's range)
        new = replace(loop, kind="parallel" if loop.kind == "parallel" else "vectorize", lanes=int(lanes),
                      copies=int(copies))
    elif kind == "unroll":
        if loop.kind == "parallel":
            raise _Illegal(f"loop {name} is parallel")
        new = replace(loop, kind="unroll", lanes=1, copies=1)
    else:
        if loop.kind == "unroll":
            raise _Illegal(f"loop {name} is marked unroll")
        if k.body is not loop:
            raise _Illegal(f"loop {name} is not the kernel's outermost loop (only a loop that is the whole kernel "
                           "body runs in parallel)")
        if not _parallel_ok(loop):
            raise _Illegal(f"iterations of loop {name} write overlapping parts of a buffer")
        if not _int(grain) or grain < 0:
            raise _Illegal(f"grain must be an int >= 0 (0: the runtime's rule), got {grain!r}")
        new = replace(loop, kind="parallel", grain=int(grain))
    return replace(k, body=_replace_node(k.body, loop, new))


def _cache_write(k: Kernel, st: CacheWrite) -> Kernel:
    loop, _ = _loop(k, st.loop)
    written = _written(loop.body)
    buf = st.buffer
    if buf is None:
        if len(written) != 1:
            raise _Illegal(f"loop {loop.var} writes {len(written)} buffers {sorted(written)}: name one")
        buf = next(iter(written))
    if buf not in written:
        raise _Illegal(f"loop {loop.var} does not write buffer {buf}")
    idxs = {x.index for x in _leaves(loop.body) if isinstance(x, Store) and x.buf == buf}
    idxs |= {x.index for x in _all_exprs(loop.body) if isinstance(x, Load) and x.buf == buf}
    if len(idxs) != 1:
        raise _Illegal(f"buffer {buf} is accessed at different indices inside loop {loop.var}")
    g = next(iter(idxs))
    inside = _loop_names(loop)
    dep = _vars(g) & inside
    if dep:
        raise _Illegal(f"the index of buffer {buf} depends on loop(s) {sorted(dep)} inside {loop.var}: "
                       "reorder them outside first")
    if _read_bufs(g) & written:
        raise _Illegal(f"the index of buffer {buf} reads a buffer written in loop {loop.var}")
    dt = {b.name: b.dtype for b in k.buffers}.get(buf) or next(x.value.dtype for x in _leaves(loop.body)
                                                                if isinstance(x, Store) and x.buf == buf)
    taken = set(_locals(k.body)) | {x.name for x in _leaves(k.body) if isinstance(x, Assign)}
    name, n = f"{buf}_acc", 1
    while name in taken:
        name, n = f"{buf}_acc{n}", n + 1
    acc = LocalRef(name, dt)
    memo: dict = {}

    def ex(e):
        return _rewrite(e, lambda x: acc if isinstance(x, Load) and x.buf == buf else x, memo)

    def leaf(s):
        s = _map_exprs(s, ex)
        return Assign(name, s.value) if isinstance(s, Store) and s.buf == buf else s

    body = _map_leaves(loop.body, leaf)
    new = Seq((Decl(name, Load(buf, g, dt)), replace(loop, body=body), Store(buf, g, acc)))
    return replace(k, body=_replace_node(k.body, loop, new))


def _seq_of_decl(s: Stmt, name: str):
    """(Seq, position) holding Decl(name)."""
    if isinstance(s, Seq):
        for i, x in enumerate(s.body):
            if isinstance(x, Decl) and x.name == name:
                return s, i
            r = _seq_of_decl(x, name)
            if r:
                return r
    elif isinstance(s, For):
        return _seq_of_decl(s.body, name)
    return None


def _uses(s, name) -> int:
    """References to local `name` under s, every path counted."""
    return count_refs(s, lambda x: isinstance(x, LocalRef) and x.name == name)


def _assigned(s: Stmt) -> set:
    return {x.name for x in _leaves(s) if isinstance(x, (Assign, Decl))}


def _decl_site(k: Kernel, name: str):
    decls = [x for x in _leaves(k.body) if isinstance(x, Decl) and x.name == name]
    if len(decls) != 1:
        raise _Illegal(f"local {name} is declared {len(decls)} times (need exactly one Decl)")
    site = _seq_of_decl(k.body, name)
    if site is None:
        raise _Illegal(f"local {name} is not declared inside a block")
    return site


def _inline(k: Kernel, st: Inline) -> Kernel:
    name = st.local
    seq, i = _decl_site(k, name)
    if name in {x.name for x in _leaves(k.body) if isinstance(x, Assign)}:
        raise _Illegal(f"local {name} is assigned after its Decl")
    init = seq.body[i].init
    rest = Seq(seq.body[i + 1:])
    if _uses(rest, name) != _uses(k.body, name):
        raise _Illegal(f"local {name} is used outside the block that declares it")
    if _read_bufs(init) & _written(rest):
        raise _Illegal(f"local {name} reads buffer(s) {sorted(_read_bufs(init) & _written(rest))} written after "
                       "its Decl")
    reads = {x.name for x in walk(init) if isinstance(x, LocalRef)}
    if reads & _assigned(rest):
        raise _Illegal(f"local {name} reads local(s) {sorted(reads & _assigned(rest))} changed after its Decl")
    memo: dict = {}
    rest = _map_exprs(rest, lambda e: _rewrite(
        e, lambda x: init if isinstance(x, LocalRef) and x.name == name else x, memo))
    new = _seq(seq.body[:i] + rest.body)
    return replace(k, body=_replace_node(k.body, seq, new))


def _compute_at(k: Kernel, st: ComputeAt) -> Kernel:
    name = st.local
    seq, i = _decl_site(k, name)
    j = i + 1
    while j < len(seq.body):  # the run of statements that only update `name` (a reduction loop)
        s = seq.body[j]
        if _written(s) or _assigned(s) - {name} or name not in _assigned(s) or isinstance(s, Decl):
            break
        j += 1
    comp = seq.body[i:j]
    rest = Seq(seq.body[j:])
    target, _ = _loop(k, st.loop)
    if _find(rest, st.loop) is None:
        raise _Illegal(f"loop {st.loop} does not follow the computation of {name} in its block")
    if target.extent < 1:
        raise _Illegal(f"loop {st.loop} is empty")
    if _uses(target.body, name) != _uses(k.body, name) - sum(_uses(c, name) for c in comp):
        raise _Illegal(f"local {name} is used outside loop {st.loop}")
    if name in _assigned(rest):
        raise _Illegal(f"local {name} is changed outside its computation")
    reads = set().union(*(_read_bufs(c) for c in comp))
    if reads & _written(rest):
        raise _Illegal(f"the computation of {name} reads buffer(s) {sorted(reads & _written(rest))} written before "
                       f"or in loop {st.loop}")
    lreads = {x.name for c in comp for x in _all_exprs(c) if isinstance(x, LocalRef)} - {name}
    if lreads & _assigned(rest):
        raise _Illegal(f"the computation of {name} reads local(s) {sorted(lreads & _assigned(rest))} changed "
                       f"before or in loop {st.loop}")
    moved = replace(target, body=_seq(list(comp) + [target.body]))
    rest = _replace_node(rest, target, moved)
    new = _seq(seq.body[:i] + rest.body)
    return replace(k, body=_replace_node(k.body, seq, new))


def _block_columns(k: Kernel, st: BlockColumns) -> Kernel:
    if not _int(st.factor) or st.factor < 1:
        raise _Illegal(f"factor must be an int >= 1, got {st.factor!r}")
    try:
        return replace(k, body=_schedule.block_columns(k.body, int(st.factor)))
    except _schedule.NotApplicable as e:
        raise _Illegal(str(e)) from None


def _prefetch_rows(k: Kernel, st: PrefetchRows) -> Kernel:
    if not _int(st.distance) or st.distance < 1:
        raise _Illegal(f"distance must be an int >= 1, got {st.distance!r}")
    loop, _ = _loop(k, st.loop)
    if k.body is not loop:
        raise _Illegal(f"loop {st.loop} is not the kernel's outermost loop")
    try:
        return replace(k, body=_schedule.prefetch_next_rows(loop, int(st.distance)))
    except _schedule.NotApplicable as e:
        raise _Illegal(str(e)) from None


def _template_knobs(k: Kernel, st: TemplateKnobs) -> Kernel:
    from . import templates
    if k.template is None:
        raise _Illegal(f"kernel {k.name} has no code-generator template (or a loop step replaced it)")
    why = templates.check(k.template, dict(st.knobs))
    if why:
        raise _Illegal(why)
    t = templates.with_knobs(k.template, dict(st.knobs))
    missing = [n for n in templates.KNOBS[templates.kind(t)] if n not in templates.knobs_of(t)]
    if missing:
        raise _Illegal(f"knob(s) {', '.join(missing)} of {templates.kind(t)} are not set")
    return replace(k, template=t)


_APPLY = {Split: _split, Reorder: _reorder, Fuse: _fuse, Tile: _tile, CacheWrite: _cache_write, Inline: _inline,
          ComputeAt: _compute_at,
          Vectorize: lambda k, s: _mark(k, s.loop, "vectorize", s.lanes, copies=s.copies),
          Unroll: lambda k, s: _mark(k, s.loop, "unroll"),
          Parallel: lambda k, s: _mark(k, s.loop, "parallel", grain=s.grain),
          BlockColumns: lambda k, s: _block_columns(k, s),
          PrefetchRows: lambda k, s: _prefetch_rows(k, s),
          TemplateKnobs: lambda k, s: _template_knobs(k, s)}


def _violations(k: Kernel) -> set:
    """Placement rules every schedule keeps: parallel only as the whole body (and legal), vector loops
    (lanes > 1) only where the code generator's vector loop keeps results."""
    out = set()
    for f, _ in _iter_loops(k.body):
        if f.kind == "parallel":
            if k.body is not f:
                out.add(f"parallel loop {f.var} is no longer the kernel's outermost loop")
            elif not _parallel_ok(f):
                out.add(f"parallel loop {f.var} is no longer legal")
        if f.lanes > 1:
            why = _vector_reason(f)
            if why:
                out.add(f"vectorized loop {f.var}: {why}")
    return out


def apply(kernel: Kernel, steps) -> Kernel:
    """Apply `steps` in order; raise ScheduleError (with .step, .index) at the first illegal one."""
    steps = list(steps)
    k = replace(kernel, body=_uniquify(kernel.body))
    bad = _violations(k)
    for i, st in enumerate(steps):
        fn = _APPLY.get(type(st))
        if fn is None:
            raise ScheduleError(f"step {i}: not a schedule step: {st!r}", step=st, index=i)
        if k.template is not None and type(st) is not TemplateKnobs:
            k = replace(k, template=None)  # the scheduled loops, not the template, implement the kernel now
        try:
            k2 = fn(k, st)
            new_bad = _violations(k2) - bad
            if new_bad:
                raise _Illegal("; ".join(sorted(new_bad)))
        except _Illegal as e:
            raise ScheduleError(f"step {i} {st!r} is illegal on kernel {kernel.name}: {e}", step=st, index=i) from None
        k = k2
        bad = _violations(k)
    return replace(k, steps=tuple(kernel.steps) + tuple(steps))


def loops(kernel: Kernel) -> list[tuple[str, int, int]]:
    """(var, extent, depth) of every loop in pre-order, with the names `apply` uses."""
    return [(f.var, f.extent, d) for f, d in _iter_loops(_uniquify(kernel.body))]
