"""Fixed-length features of a (scheduled) kernel's loop IR, for the tuner's cost model.

`features(kernel)` is a float32 vector of `len(FEATURE_NAMES)` values, every one log-scaled as
log2(1 + |x|), so that sizes spanning decades become comparable steps for the tree model. It reads the
kernel as the code generator will run it: loop kinds, vector lanes, the accesses of every statement and
the loops around it. In the spirit of AutoTVM's itervar features and Ansor's per-store features,
regrouped for this IR. The groups, and why each is there:

  kind_*      one-hot loops / gemm / gemv: a template kernel runs the code generator's own blocked code,
              not its loops, so the same numbers mean different things.
  shape_*     one-hot of `kind_of`'s loop class (elementwise, row-reduce, ...): the coarse computation,
              which decides what a schedule can win (vectors, blocking, threads).
  k_*         kernel totals: work (schedule.work's units, what the runtime compares with the thread
              hand-off; a subexpression that statements of one loop body share counts once), flops,
              loads/stores executed, bytes touched (distinct elements: the compulsory traffic) and
              accessed (every load and store), arithmetic intensity (flops per byte touched / accessed:
              compute- or bandwidth-bound), counts of loops, statements, buffers, locals, checks,
              prefetches.
  ops_* / hot_*  arithmetic by class (add-like, mul, fma, div, math-library calls as in
              schedule.COSTLY_CALLS, compares/selects, casts, bitwise, index arithmetic, index div/mod,
              loads, stores): `ops_` over the whole run, `hot_` per iteration of the hot innermost loop
              (the innermost loop whose statements run most often). Per-iteration cost is what vector
              lanes and unrolling divide; divisions and math calls dominate wherever they appear.
  nest_*      the hot loop nest: depth, trip count, the parallel loop's extent and the work per parallel
              iteration (thread hand-off vs work), vector / unroll counts, and whether the hot
              statement reduces into a register (a local) or into memory (a store whose index ignores a
              loop: a read-modify-write per iteration).
  L{l}_*      per level of the hot nest, innermost first (level 0 is the innermost loop), padded with
              zeros: extent, vector lanes, unroll and parallel flags, and the bytes and cache lines
              touched by one whole run of that loop (its footprint: a level whose lines fit a cache
              level reuses what it reads from that cache; strided accesses touch a line per element).
  B{b}_*      the few buffers touching the most bytes, sorted (by values, never names), padded: bytes
              and cache lines touched, accesses executed, element size, the stride of the hottest
              access along its innermost loop (bytes; and contiguous / invariant / strided / irregular
              flags: vector loads, broadcasts, gathers), reuse (how many iterations touch each element:
              the extents of the loops its index ignores) and reuse distance (iterations between two
              uses of an element: small means it stays in registers or L1), written or not.
  tpl_*       template parameters (zeros for loop kernels): M, N, K, element size, batch, flops,
              transposed operands, the thread split, a fused epilogue and its ops, the matrix-vector
              form, and any blocking knobs the template parameters carry (TEMPLATE_KNOBS).

Cost: one pass over the statements and one over each loop body's expression DAG (a shared
subexpression is visited once per loop body, as the code generator computes it once per iteration), so
featurizing is linear in the kernel's size; a typical kernel takes well under a millisecond.

`kind_of(kernel)` names the kind of kernel ("gemm", "gemv", "loops:<class>") so that tuning records of the
same kind at other shapes can be pooled. Take it on the task's kernel (before a candidate's steps): it is
a property of the computation, stable under Split, Tile, Reorder, CacheWrite and the marks.
"""
from __future__ import annotations

import numpy as np

from ..loop.ir import Assign, Call, Cast, Check, Const, Decl, Expr, For, Idx, Kernel, Load, Prefetch, Seq, Store, \
    Var, walk
from ..loop.schedule import COSTLY_CALLS

NLEVELS = 6      # levels of the hot nest described, innermost first
NBUFFERS = 5     # buffers described, most bytes first
LINE = 64        # cache line bytes (lines touched)

KINDS = ("loops", "gemm", "gemv")
SHAPES = ("elementwise", "row-reduce", "column-reduce", "contraction", "transpose", "gather", "other")
OP_CLASSES = ("add", "mul", "fma", "div", "math", "cmp", "cast", "bit", "idx", "idx_divmod", "load", "store")
# the integer knobs a template's parameters carry once scheduled (loop/templates.py: the TemplateKnobs step)
TEMPLATE_KNOBS = ("mr", "nv", "kc", "nc", "grain", "rows", "accs", "block", "chunk", "ku")

_KERNEL = ("work", "flops", "loads", "stores", "bytes_touched", "bytes_written", "bytes_accessed", "intensity",
           "intensity_accessed", "loops", "max_depth", "statements", "buffers", "locals", "checks", "prefetches")
_NEST = ("depth", "trip", "parallel_extent", "work_per_parallel_iter", "vector_loops", "unroll_loops",
         "unrolled_iters", "reduce_local", "reduce_memory", "reduce_trip", "parallel_grain", "parallel_chunks")
_LEVEL = ("extent", "lanes", "unroll", "parallel", "bytes", "lines", "copies")
_BUFFER = ("bytes", "lines", "accesses", "itemsize", "stride_bytes", "contiguous", "invariant", "strided",
           "irregular", "reuse", "reuse_dist", "written")
_TEMPLATE = ("M", "N", "K", "itemsize", "batch", "flops", "a_trans", "b_trans", "split_cols", "epilogue",
             "epilogue_ops", "gemv_S", "gemv_V", "gemv_dot", "gemv_axpy") + TEMPLATE_KNOBS

FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"kind_{k}" for k in KINDS)
    + tuple(f"shape_{s}" for s in SHAPES)
    + tuple(f"k_{n}" for n in _KERNEL)
    + tuple(f"ops_{c}" for c in OP_CLASSES)
    + tuple(f"hot_{c}" for c in OP_CLASSES)
    + tuple(f"nest_{n}" for n in _NEST)
    + tuple(f"L{lv}_{n}" for lv in range(NLEVELS) for n in _LEVEL)
    + tuple(f"B{b}_{n}" for b in range(NBUFFERS) for n in _BUFFER)
    + tuple(f"tpl_{n}" for n in _TEMPLATE)
)
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}

# -- op classes

_ADD = frozenset(("add", "subtract", "negative", "positive", "absolute", "reduce_add", "maximum", "minimum", "fmax",
                  "fmin", "copysign", "floor", "ceil", "rint", "trunc", "sign"))
_MUL = frozenset(("multiply", "reduce_mul", "square"))
_DIV = frozenset(("divide", "true_divide", "floor_divide", "remainder", "fmod", "reciprocal"))
_MATH = (COSTLY_CALLS - _DIV) | frozenset(("cbrt", "hypot"))
_CMP = frozenset(("where", "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
                  "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite", "signbit"))


def _call_class(op: str) -> str:
    if op in _ADD:
        return "add"
    if op in _MUL:
        return "mul"
    if op == "fma":
        return "fma"
    if op in _DIV:
        return "div"
    if op in _MATH:
        return "math"
    if op in _CMP:
        return "cmp"
    return "bit"


_CLASS_OF: dict = {}  # op -> class, filled lazily


# -- index analysis: (vars, affine form or None, reads memory), memoized over the DAG

_EMPTY = frozenset()


def _kids(e) -> tuple:
    t = type(e)
    if t is Idx:
        return (e.a, e.b)
    if t is Load:
        return (e.index,)
    if t is Call:
        return e.args
    if t is Cast:
        return (e.x,)
    return ()


def _const_aff(v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        return None
    return {None: int(v)}


def _is_const(f) -> bool:
    return len(f) == 1 and None in f


def _combine(e, ks):
    """The info of e from its children's infos `ks`. Guard clamps min/max(x, const) read as x (the range
    they cut is a split's tail, which is small); div/mod and compares are not affine."""
    t = type(e)
    if t is Load:
        return ks[0][0], None, True
    if t is Idx:
        (va, a, ma), (vb, b, mb) = ks
        vs = (va | vb) if va and vb else (va or vb)
        aff = None
        if a is not None and b is not None:
            op = e.op
            if op == "add" or op == "sub":
                aff = dict(a)
                s = 1 if op == "add" else -1
                for v, c in b.items():
                    aff[v] = aff.get(v, 0) + s * c
            elif op == "mul":
                if _is_const(a):
                    a, b = b, a
                if _is_const(b):
                    k = b[None]
                    aff = {v: c * k for v, c in a.items()}
            elif op == "min" or op == "max":
                if _is_const(b):
                    aff = a
                elif _is_const(a):
                    aff = b
        return vs, aff, ma or mb
    vs = _EMPTY
    mem = False
    for k in ks:
        if k[0]:
            vs = (vs | k[0]) if vs else k[0]
        mem = mem or k[2]
    if t is Cast and e.dtype.kind in "iu" and ks:
        return vs, ks[0][1], mem
    return vs, None, mem


def _info(e, memo: dict):
    """(loop vars used, affine form {var: coef, None: const} or None, reads memory) of an index: a
    post-order pass over the DAG under e, each node once (memoized by identity across the kernel)."""
    hit = memo.get(id(e))
    if hit is not None:
        return hit
    stack = [e]
    while stack:
        x = stack[-1]
        ix = id(x)
        if ix in memo:
            stack.pop()
            continue
        t = type(x)
        if t is Var:
            memo[ix] = (frozenset((x.name,)), {x.name: 1}, False)
            stack.pop()
            continue
        if t is Const:
            memo[ix] = (_EMPTY, _const_aff(x.value), False)
            stack.pop()
            continue
        kids = _kids(x)
        todo = [c for c in kids if id(c) not in memo]
        if todo:
            stack.extend(todo)
            continue
        stack.pop()
        memo[ix] = _combine(x, [memo[id(c)] for c in kids])
    return memo[id(e)]


# -- the analysis shared by features and kind_of

class _Access:
    __slots__ = ("buf", "info", "itemsize", "chain", "trip", "write", "leaf", "deps")

    def __init__(self, buf, info, itemsize, chain, trip, write, leaf):
        self.buf, self.info, self.itemsize, self.chain, self.trip, self.write, self.leaf = \
            buf, info, itemsize, chain, trip, write, leaf
        vs, aff, _ = info
        # (position in the chain, |coefficient| (None: not affine), extent) of each loop the index uses
        if aff is None:
            self.deps = tuple((q, None, f.extent) for q, f in enumerate(chain) if f.var in vs)
        else:
            self.deps = tuple((q, abs(aff[f.var]), f.extent) for q, f in enumerate(chain) if aff.get(f.var, 0))


class _Leaf:
    __slots__ = ("stmt", "chain", "trip", "ops", "work", "reduce", "accesses")

    def __init__(self, stmt, chain, trip):
        self.stmt, self.chain, self.trip = stmt, chain, trip
        self.ops = dict.fromkeys(OP_CLASSES, 0)
        self.work = 1
        self.reduce = ()  # loop vars this statement reduces over (into a local or a buffer)
        self.accesses = []


class _Analysis:
    def __init__(self, k: Kernel):
        self.k = k
        self.memo: dict = {}
        self.leaves: list[_Leaf] = []
        self.loops: list[For] = []
        self.decl_depth: dict = {}
        self.scopes: dict = {}  # id(innermost loop) -> ids of the expressions seen in that loop body
        self.locals = 0
        self.bufs = {b.name: b for b in k.buffers}
        self._stmt(k.body, (), 1)

    def _stmt(self, s, chain, trip):
        if isinstance(s, For):
            self.loops.append(s)
            self._stmt(s.body, chain + (s,), trip * s.extent)
        elif isinstance(s, Seq):
            for x in s.body:
                self._stmt(x, chain, trip)
        else:
            self._leaf(s, chain, trip)

    def _leaf(self, s, chain, trip):
        leaf = _Leaf(s, chain, trip)
        self.leaves.append(leaf)
        seen = self.scopes.setdefault(id(chain[-1]) if chain else None, set())
        ops = leaf.ops
        if isinstance(s, Store):
            values, index = (s.value,), s.index
        elif isinstance(s, Decl):
            values, index = (s.init,), None
            self.locals += 1
            self.decl_depth[s.name] = len(chain)
        elif isinstance(s, Assign):
            values, index = (s.value,), None
            d = self.decl_depth.get(s.name, 0)
            if d < len(chain):
                leaf.reduce = tuple(f.var for f in chain[d:])
        elif isinstance(s, Check):
            values, index = (s.cond,), None
        elif isinstance(s, Prefetch):
            values, index = (), s.index
        else:
            values, index = (), None
        # the statement's values (ops, loads, schedule.work's units), then its index (ops, loads)
        work = 1 + self._scan(values, seen, leaf, ops)
        if index is not None:
            self._scan((index,), seen, leaf, ops)
        leaf.work = work
        if isinstance(s, Store):
            ops["store"] += 1
            b = self.bufs.get(s.buf)
            a = self._access(leaf, s.buf, s.index, (b.dtype if b is not None else s.value.dtype).itemsize, True)
            vs, aff, _ = a.info
            ignored = tuple(f.var for f in chain if f.var not in vs or (aff is not None and aff.get(f.var, 0) == 0))
            if ignored and any(x.buf == s.buf and not x.write for x in leaf.accesses):
                leaf.reduce = ignored  # a read-modify-write of elements the ignored loops revisit

    def _scan(self, roots, seen, leaf, ops) -> int:
        """Count the ops and record the loads of the expressions under `roots` not yet seen in this loop
        body (iteratively, each shared node once); returns their schedule.work units."""
        work = 0
        classes = _CLASS_OF
        stack = list(roots)
        while stack:
            e = stack.pop()
            if id(e) in seen:
                continue
            seen.add(id(e))
            t = type(e)
            if t is Idx:
                ops["idx_divmod" if e.op == "div" or e.op == "mod" else "idx"] += 1
                stack.append(e.a)
                stack.append(e.b)
            elif t is Load:
                ops["load"] += 1
                work += 1
                self._access(leaf, e.buf, e.index, e.dtype.itemsize, False)
                stack.append(e.index)
            elif t is Call:
                c = classes.get(e.op)
                if c is None:
                    c = classes[e.op] = _call_class(e.op)
                ops[c] += 1
                work += 8 if e.op in COSTLY_CALLS else 1
                stack.extend(e.args)
            elif t is Cast:
                ops["cast"] += 1
                stack.append(e.x)
        return work

    def _access(self, leaf, buf, index, itemsize, write):
        a = _Access(buf, _info(index, self.memo), itemsize, leaf.chain, leaf.trip, write, leaf)
        leaf.accesses.append(a)
        return a


# -- footprints

def _distinct(a: _Access, start: int):
    """(distinct elements, distinct cache lines) one run of the access's loops from chain position `start`
    inward touches, and a key naming that set of elements (equal keys: the same elements, whatever the
    loops are called)."""
    dep = [(c, e) for q, c, e in a.deps if q >= start] if start else [(c, e) for _, c, e in a.deps]
    prod = 1
    for _, e in dep:
        prod *= e
    aff = a.info[1]
    if aff is None:
        return prod, prod, ("i", id(a.info))
    if not dep:
        return 1, 1, aff.get(None, 0)
    span = 1
    for c, e in dep:
        span += c * (e - 1)
    n = prod if prod < span else span
    c0, e0 = min(dep)
    isz = a.itemsize
    lines = -(-(e0 * c0 * isz) // LINE) * (prod // e0) if c0 * isz < LINE and e0 else n
    lines = min(lines, n, -(-(span * isz) // LINE) + 1)
    return n, lines, (aff.get(None, 0), tuple(sorted(dep)))


def _footprint(accesses, start: int, bufs) -> dict:
    """buffer -> (elements, lines, itemsize) touched by one run of the loops from chain position `start`
    inward: distinct element sets summed (accesses naming the same set counted once), capped at the
    buffer's size."""
    per: dict = {}
    for a in accesses:
        n, lines, key = _distinct(a, start)
        sets = per.get(a.buf)
        if sets is None:
            sets = per[a.buf] = {}
        old = sets.get(key)
        if old is None or old[0] < n:
            sets[key] = (n, lines, a.itemsize)
    out = {}
    for buf, sets in per.items():
        n = lines = isz = 0
        for v in sets.values():
            n += v[0]
            lines += v[1]
            if v[2] > isz:
                isz = v[2]
        b = bufs.get(buf)
        if b is not None and b.size > 0:
            if n > b.size:
                n = b.size
            cap = -(-(b.size * b.dtype.itemsize) // LINE) + 1
            if lines > cap:
                lines = cap
        out[buf] = (n, lines, isz)
    return out


# -- kind_of

def _shape(an: _Analysis) -> str:
    leaves = an.leaves
    if not any(isinstance(lf.stmt, Store) for lf in leaves):
        return "other"
    red = set()
    for lf in leaves:
        red.update(lf.reduce)
    loads = [a for lf in leaves for a in lf.accesses if not a.write]
    if red:
        written = {a.buf for lf in leaves for a in lf.accesses if a.write}
        under = [a for a in loads if a.buf not in written and any(f.var in red for f in a.chain)
                 and any(v in red for v in a.info[0])]
        frees = {a.info[0] - red for a in under}
        frees.discard(_EMPTY)
        if len(frees) >= 2:
            return "contraction"
        for a in under:
            aff = a.info[1]
            if aff is not None and any(abs(aff.get(v, 0)) == 1 for v in red):
                return "row-reduce"
        return "column-reduce" if under else "other"
    if any(a.info[2] for lf in leaves for a in lf.accesses):
        return "gather"
    transpose = False
    for lf in leaves:
        st = [a for a in lf.accesses if a.write]
        if not st:
            continue
        saff = st[0].info[1]
        if saff is None:
            return "other"
        loop_vars = {f.var for f in lf.chain}
        unit_s = {v for v, c in saff.items() if v is not None and abs(c) == 1}
        for a in lf.accesses:
            aff = a.info[1]
            if a.write or aff is None:
                continue
            unit_l = {v for v, c in aff.items() if v in loop_vars and abs(c) == 1}
            if unit_l and unit_s and not unit_l & unit_s and any(abs(saff.get(v, 0)) > 1 for v in unit_l):
                transpose = True
    return "transpose" if transpose else "elementwise"


def kind_of(kernel: Kernel) -> str:
    """"gemm", "gemv", or "loops:<class>" with class one of SHAPES: elementwise (maps and broadcasts),
    row-reduce (reduces along memory-contiguous elements), column-reduce (across rows), contraction (two
    operands indexed by different free loops, as a matmul in loops), transpose (reads contiguous along a
    loop the output is strided in), gather (indices read from memory), other."""
    if kernel.template is not None:
        return str(kernel.template[0])
    return "loops:" + _shape(_Analysis(kernel))


# -- features

def _template(k: Kernel) -> dict:
    out: dict = {}
    kind, params = k.template
    p = dict(params)
    dt = np.dtype(p.get("dtype", "float32"))
    batch = 1
    for bt in p.get("batch", ()):
        batch *= int(bt[0])
    if kind == "gemv":
        V, S = int(p["V"]), int(p["S"])
        M, N = (V, S) if p.get("vvar") == "i" else (S, V)
        mat, vec = p.get("mat", (None, 0, 0, 1)), p.get("vec", (None, 0, 0, 1))
        out.update(tpl_gemv_S=S, tpl_gemv_V=V, tpl_gemv_dot=int(p.get("form") == "dot"),
                   tpl_gemv_axpy=int(p.get("form") == "axpy"), tpl_a_trans=int(mat[3] != 1),
                   tpl_b_trans=int(vec[3] != 1))
    else:
        M, N = int(p["M"]), int(p["N"])
        A, B = p.get("A", (None, 0, 0, 1)), p.get("B", (None, 0, 0, 1))
        out.update(tpl_a_trans=int(A[3] != 1), tpl_b_trans=int(B[3] != 1),
                   tpl_split_cols=int(p.get("split", "rows") == "cols"))
    K = int(p["K"])
    out.update(tpl_M=M, tpl_N=N, tpl_K=K, tpl_itemsize=dt.itemsize, tpl_batch=batch, tpl_flops=2 * M * N * K * batch)
    epi = p.get("epilogue")
    if isinstance(epi, Expr):
        out["tpl_epilogue"] = 1
        out["tpl_epilogue_ops"] = sum(1 for e in walk(epi) if isinstance(e, (Call, Cast)))
    for name in TEMPLATE_KNOBS:
        v = p.get(name)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out[f"tpl_{name}"] = int(v)
    return out


_I = _INDEX
_OPS_AT = [(c, _I[f"ops_{c}"], _I[f"hot_{c}"]) for c in OP_CLASSES]
_LEVEL_AT = [tuple(_I[f"L{lv}_{n}"] for n in _LEVEL) for lv in range(NLEVELS)]
_BUFFER_AT = [tuple(_I[f"B{b}_{n}"] for n in _BUFFER) for b in range(NBUFFERS)]


def _raw(kernel: Kernel) -> list:
    """The features before log-scaling, in FEATURE_NAMES order."""
    an = _Analysis(kernel)
    k = kernel
    out = [0] * len(FEATURE_NAMES)
    I = _I
    out[I["kind_" + (k.template[0] if k.template is not None else "loops")]] = 1
    out[I["shape_" + _shape(an)]] = 1
    leaves = an.leaves
    accesses = [a for lf in leaves for a in lf.accesses]

    # kernel totals
    tot = dict.fromkeys(OP_CLASSES, 0)
    work = checks = prefetches = max_depth = 0
    for lf in leaves:
        t = lf.trip
        work += t * lf.work
        for c, n in lf.ops.items():
            if n:
                tot[c] += t * n
        if len(lf.chain) > max_depth:
            max_depth = len(lf.chain)
        st = type(lf.stmt)
        if st is Check:
            checks += 1
        elif st is Prefetch:
            prefetches += t
    flops = tot["add"] + tot["mul"] + 2 * tot["fma"] + tot["div"] + tot["math"] + tot["cmp"]
    written = set()
    accessed = 0
    for a in accesses:
        accessed += a.trip * a.itemsize
        if a.write:
            written.add(a.buf)
    whole = _footprint(accesses, 0, an.bufs)
    touched = touched_w = 0
    for b, (n, _, isz) in whole.items():
        touched += n * isz
        if b in written:
            touched_w += n * isz
    out[I["k_work"]], out[I["k_flops"]], out[I["k_loads"]], out[I["k_stores"]] = \
        work, flops, tot["load"], tot["store"]
    out[I["k_bytes_touched"]], out[I["k_bytes_written"]], out[I["k_bytes_accessed"]] = touched, touched_w, accessed
    out[I["k_intensity"]] = flops / touched if touched else 0.0
    out[I["k_intensity_accessed"]] = flops / accessed if accessed else 0.0
    out[I["k_loops"]], out[I["k_max_depth"]], out[I["k_statements"]], out[I["k_buffers"]] = \
        len(an.loops), max_depth, len(leaves), len(whole)
    out[I["k_locals"]], out[I["k_checks"]], out[I["k_prefetches"]] = an.locals, checks, prefetches

    # the hot nest: the innermost loop whose statements run most often
    hot = max(leaves, key=_hotness, default=None)
    chain = hot.chain if hot is not None else ()
    inner = chain[-1] if chain else None
    hot_ops = dict.fromkeys(OP_CLASSES, 0)
    for lf in leaves:
        if (lf.chain[-1] if lf.chain else None) is inner:
            for c, n in lf.ops.items():
                hot_ops[c] += n
    for c, i_tot, i_hot in _OPS_AT:
        out[i_tot] = tot[c]
        out[i_hot] = hot_ops[c]
    par = k.body if type(k.body) is For and k.body.kind == "parallel" else None
    red = hot.reduce if hot is not None else ()
    rtrip = 1
    for f in chain:
        if f.var in red:
            rtrip *= f.extent
    vec = unr = unr_iters = 0
    for f in an.loops:
        if f.lanes > 1:
            vec += 1
        if f.kind == "unroll":
            unr += 1
            unr_iters += f.extent
    out[I["nest_depth"]], out[I["nest_trip"]] = len(chain), hot.trip if hot is not None else 0
    if par is not None:
        out[I["nest_parallel_extent"]] = par.extent
        out[I["nest_work_per_parallel_iter"]] = work / par.extent if par.extent else 0.0
        out[I["nest_parallel_grain"]] = par.grain  # (0: the runtime's rule)
        out[I["nest_parallel_chunks"]] = -(-par.extent // par.grain) if par.grain else 0
    out[I["nest_vector_loops"]], out[I["nest_unroll_loops"]], out[I["nest_unrolled_iters"]] = vec, unr, unr_iters
    if red:
        out[I["nest_reduce_local"]] = int(type(hot.stmt) is Assign)
        out[I["nest_reduce_memory"]] = int(type(hot.stmt) is Store)
        out[I["nest_reduce_trip"]] = rtrip
    for lv in range(min(NLEVELS, len(chain))):
        q = len(chain) - 1 - lv
        f = chain[q]
        # the accesses under f: their chains run through f at the same depth (by identity: For compares by value)
        under = [a for a in accesses if len(a.chain) > q and a.chain[q] is f]
        nbytes = nlines = 0
        for n, lines, isz in _footprint(under, q, an.bufs).values():
            nbytes += n * isz
            nlines += lines
        at = _LEVEL_AT[lv]
        out[at[0]], out[at[1]], out[at[2]], out[at[3]], out[at[4]], out[at[5]], out[at[6]] = \
            f.extent, f.lanes if f.lanes > 1 else 0, int(f.kind == "unroll"), int(f.kind == "parallel"), nbytes, \
            nlines, f.copies if f.lanes > 1 else 0

    # buffers, most bytes first (ties broken by the other values: never by names)
    rows = []
    by_buf: dict = {}
    for a in accesses:
        by_buf.setdefault(a.buf, []).append(a)
    for buf, (n, lines, isz) in whole.items():
        mine = by_buf[buf]
        a = max(mine, key=_trip)  # the hottest access (first of equals)
        count = 0
        for x in mine:
            count += x.trip
        vs, aff, _ = a.info
        inner = a.chain[-1] if a.chain else None
        stride = cont = inv = strided = irregular = 0
        if inner is None or inner.var not in vs or (aff is not None and aff.get(inner.var, 0) == 0):
            inv = 1
        elif aff is None:
            irregular = strided = 1
        else:
            c = abs(aff[inner.var])
            stride = c * a.itemsize
            cont, strided = int(c == 1), int(c != 1)
        reuse, dist, below = 1, 0, 1
        for f in reversed(a.chain):
            if f.var not in vs or (aff is not None and aff.get(f.var, 0) == 0):
                reuse *= f.extent
                if not dist:
                    dist = below
            below *= f.extent
        rows.append((n * isz, lines, count, isz, stride, cont, inv, strided, irregular, reuse,
                     dist, int(buf in written)))
    rows.sort(reverse=True)
    for at, row in zip(_BUFFER_AT, rows):
        for i, v in zip(at, row):
            out[i] = v

    if k.template is not None:
        for name, v in _template(k).items():
            out[I[name]] = v
    return out


def _trip(a):
    return a.trip


def _hotness(lf):
    return lf.trip, len(lf.chain)


def feature_dict(kernel: Kernel) -> dict:
    """The features by name before log-scaling (for reading and debugging)."""
    return dict(zip(FEATURE_NAMES, _raw(kernel)))


_BIG = 2.0 ** 1000


def features(kernel: Kernel) -> np.ndarray:
    """The kernel's features: float32, len(FEATURE_NAMES), each log2(1 + |x|)."""
    raw = _raw(kernel)
    try:
        x = np.array(raw, dtype=np.float64)
    except OverflowError:  # products of extents in a degenerate kernel can be huge ints
        x = np.array([v if abs(v) < _BIG else _BIG for v in raw], dtype=np.float64)
    return np.log2(np.abs(x) + 1.0).astype(np.float32)
