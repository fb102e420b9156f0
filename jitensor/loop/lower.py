"""Lowering: each fused group (one materialized node + its inlined producers) -> one loop-nest Kernel.

`expr_at(node, idx)` computes a node's element at a multi-index: materialized nodes become
loads, elementwise ops become `Call`s, and injective ops (broadcast, reshape, transpose, slice,
concat, gather, set_slice) become index arithmetic on their input's index. Nothing here knows
about vectors or threads: schedules (schedule.py) transform the loop nests afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import ops
from ..graph.ir import Graph, Node
from ..graph.passes.fuse import FusionPlan
from .ir import (BOOL, I64, Assign, Buffer, Call, Cast, Check, Const, Decl, Expr, For, Idx, Kernel, Load, LocalRef,
                 Seq, Stmt, Store, Var, c64, iadd, iclamp, idiv, imod, imul, isub, linear, walk)

from ..errors import ERR_INDEX, ERR_NEG_POWER, ERROR_MESSAGES  # noqa: F401 - the runtime reads them too


def c_strides(shape) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= max(int(s), 1)
    return tuple(reversed(out))


@dataclass(frozen=True)
class BufferPlan:
    """Where every materialized value lives: pointer-table slot and element strides."""
    slots: dict          # node id -> Buffer
    strides: dict        # node id -> element strides
    n_slots: int
    inputs: tuple        # slot per graph input
    consts: tuple        # (slot, ndarray) for constant buffers
    outputs: tuple       # (slot or None, node) per graph output; None: the runtime copies an input/const
    temps: tuple         # (slot, shape, dtype) allocated per call


ERR_SLOT = 0


def plan_buffers(graph: Graph, plan: FusionPlan, input_strides) -> BufferPlan:
    slots, strides = {}, {}
    n = 1  # slot 0: the error flag

    def add(node, name, st):
        nonlocal n
        b = Buffer(name, node.dtype, node.type.size, n)
        slots[id(node)] = b
        strides[id(node)] = tuple(st)
        n += 1
        return b

    ins = []
    for i, node in enumerate(graph.inputs):
        ins.append(add(node, f"in{i}", input_strides[i]).slot)
    consts = []
    for node in graph.toposort():
        if node.op == "const" and node.type.size > 1 and id(node) not in slots:
            consts.append((add(node, f"c{len(consts)}", c_strides(node.shape)).slot, node.attr("value").array))
    outs = []
    for k, node in enumerate(graph.outputs):
        if node.op in ("input", "const"):
            outs.append((None, node))
        elif id(node) in slots:
            outs.append((slots[id(node)].slot, node))
        else:
            outs.append((add(node, f"out{k}", c_strides(node.shape)).slot, node))
    temps = []
    for node in (r for k in plan.order for r in plan.roots(k)):  # (siblings of a kernel get buffers too)
        if id(node) not in slots:
            temps.append((add(node, f"t{len(temps)}", c_strides(node.shape)).slot, node.shape, node.dtype))
    return BufferPlan(slots, strides, n, tuple(ins), tuple(consts), tuple(outs), tuple(temps))


def _zero(dtype):
    return Const(np.zeros((), dtype)[()], np.dtype(dtype))


def _scalar(v, dtype):
    return Const(np.array(v, dtype=dtype)[()], np.dtype(dtype))


class NotRowLocal(Exception):
    """A reduction planned as row-local is read at an index that is not a prefix of its kernel's loops."""

    def __init__(self, node: Node, more: tuple = ()):
        self.node = node
        self.nodes = (node,) + tuple(more)  # every such reduction of the program (see `lower`)


class _Nest:
    """A kernel's main loop nest; row-local reductions hang their loops at a depth of it."""

    def __init__(self, shape, prefix):
        self.idx, self.loops = [], []
        for d, s in enumerate(shape):
            if s == 1:
                self.idx.append(c64(0))
            else:
                self.idx.append(Var(f"{prefix}{d}"))
                self.loops.append((f"{prefix}{d}", int(s)))
        self.pos = {v: i for i, (v, _) in enumerate(self.loops)}
        self.pro: dict[int, list] = {}

    def build(self, leaf: Stmt) -> Stmt:
        body = leaf
        for d in reversed(range(len(self.loops))):
            if self.pro.get(d + 1):
                body = Seq(tuple(self.pro[d + 1]) + (body,))
            body = For(self.loops[d][0], self.loops[d][1], body)
        if self.pro.get(0):
            body = Seq(tuple(self.pro[0]) + (body,))
        return body


class Lowerer:
    def __init__(self, graph: Graph, plan: FusionPlan, bufs: BufferPlan):
        self.graph, self.plan, self.bufs = graph, plan, bufs
        self.epilogues = dict(plan.epilogue)
        self.checks: list[tuple[Expr, int]] = []
        self.memo: dict = {}
        self.nest: _Nest | None = None
        self.nlocal = 0
        self.template = None
        self.fused_mm = None
        self.row_cache: dict = {}
        self.row_pos = {id(n): k for k, n in enumerate(graph.toposort()) if id(n) in plan.row_local}
        self.by_name = {b.name: b for b in bufs.slots.values()}

    # -- expressions
    def expr_at(self, n: Node, idx: list[Expr]) -> Expr:
        key = (id(n), tuple(idx))
        e = self.memo.get(key)
        if e is None:
            e = self.memo[key] = self._expr_at(n, idx)
        return e

    def _expr_at(self, n: Node, idx: list[Expr], root: bool = False) -> Expr:
        b = None if root else self.bufs.slots.get(id(n))
        if b is not None:
            return Load(b.name, linear(idx, self.bufs.strides[id(n)]), n.dtype)
        op = n.op
        if op == "reduce" and id(n) in self.plan.row_local and not root:
            return self._row_local(n, idx)
        if op == "matmul" and not root:  # fused into this kernel's epilogue: only at the kernel's own index
            if self.fused_mm is None or self.fused_mm[0] is not n or list(idx) != self.fused_mm[1]:
                raise NotRowLocal(n)
            return LocalRef("mm", n.dtype)
        if op == "const":
            return Const(n.attr("value").array.reshape(())[()], n.dtype)
        if op == "cast":
            return Cast(self.expr_at(n.inputs[0], idx), n.dtype)
        if op == "where" or op in _ELEMENTWISE_CALLS:
            args = tuple(self.expr_at(i, idx) for i in n.inputs)
            if op == "power" and n.dtype.kind in "iu" and n.dtype.kind == "i":
                self.checks.append((Call("less", (args[1], _zero(args[1].dtype)), BOOL), ERR_NEG_POWER))
                if n.where is not None:
                    self.sites[ERR_NEG_POWER] = n.where
            return Call(op, args, n.dtype)
        x = n.inputs[0] if n.inputs else None
        if op == "broadcast":
            return self.expr_at(x, [c64(0) if xs == 1 and s != 1 else i for i, xs, s in zip(idx, x.shape, n.shape)])
        if op == "transpose":
            src = [None] * n.ndim
            for d, p in enumerate(n.attr("perm")):
                src[p] = idx[d]
            return self.expr_at(x, src)
        if op == "slice":
            return self.expr_at(x, [iadd(c64(s), imul(i, st)) for i, s, st in
                                    zip(idx, n.attr("starts"), n.attr("steps"))])
        if op == "reshape":
            return self.expr_at(x, reshape_index(idx, n.shape, x.shape))
        if op == "concat":
            ax = n.attr("axis")
            out, off = None, 0
            pieces = []
            for p in n.inputs:
                pieces.append((off, p))
                off += p.shape[ax]
            for off, p in reversed(pieces):
                li = list(idx)
                li[ax] = iclamp(isub(idx[ax], c64(off)), 0, p.shape[ax] - 1)
                v = self.expr_at(p, li)
                out = v if out is None else Call("where", (Idx("lt", idx[ax], c64(off + p.shape[ax])), v, out), n.dtype)
            return out
        if op == "gather":
            ax = n.attr("axis")
            data, index = n.inputs
            k = index.ndim
            i = self.expr_at(index, idx[ax:ax + k])
            size = data.shape[ax]
            wrapped = Call("where", (Call("less", (i, c64(0)), BOOL), Idx("add", i, c64(size)), i), I64)
            self.checks.append((Idx("or", Idx("lt", wrapped, c64(0)), Idx("ge", wrapped, c64(size))), ERR_INDEX))
            if n.where is not None:
                self.sites[ERR_INDEX] = n.where
            return self.expr_at(data, idx[:ax] + [iclamp(wrapped, 0, size - 1)] + idx[ax + k:])
        if op == "set_slice":
            base, val = n.inputs
            inside: Expr | None = None
            vidx = []
            for i, s, st, ln in zip(idx, n.attr("starts"), n.attr("steps"), val.shape):
                rel = isub(i, c64(s)) if st > 0 else isub(c64(s), i)
                a = abs(st)
                conds = [Idx("ge", rel, c64(0)), Idx("lt", rel, c64(a * (ln - 1) + 1))]
                if a != 1:
                    conds.append(Idx("eq", Idx("mod", iclamp(rel, 0, a * ln), c64(a)), c64(0)))
                q = iclamp(rel, 0, a * (ln - 1))
                vidx.append(idiv(q, a))
                for c in conds:
                    inside = c if inside is None else Idx("and", inside, c)
            v, bv = self.expr_at(val, vidx), self.expr_at(base, idx)
            return Call("where", (inside, v, bv), n.dtype) if inside is not None else v
        raise NotImplementedError(f"lowering of op {op} inlined")  # anchors are always materialized

    def _plan_row_cache(self, root: Node, out: Buffer, nest: _Nest):
        """softmax's exp(x - max) feeds both the row sum and the output: computing it once, storing it into the
        output row during the sum and reading it back in the final loop saves a transcendental per element.
        Applies to a row-local reduction whose input the root reads elementwise at its own index."""
        from ..graph.passes.fuse import inline_cost
        same_index, stack = set(), [root]
        while stack:  # nodes the root evaluates at exactly its own index (through elementwise ops only)
            m = stack.pop()
            if id(m) in same_index:
                continue
            same_index.add(id(m))
            if m is root or (ops.kind(m) == "elementwise" and id(m) not in self.bufs.slots):
                stack.extend(i for i in m.inputs if ops.kind(i) == "elementwise")
        evaluated, mine, stack = set(), [], [root]
        while stack:  # nodes this kernel computes: the root's expression down to materialized values
            m = stack.pop()
            if id(m) not in evaluated:
                evaluated.add(id(m))
                if id(m) in self.plan.row_local:
                    mine.append(m)
                if m is root or id(m) not in self.bufs.slots:
                    stack.extend(m.inputs)
        # (only this kernel's reductions: another kernel's has nothing here that stores x into the output row)
        for r in sorted(mine, key=lambda m: self.row_pos[id(m)]):
            x = r.inputs[0]
            # (reduced dims of size 1 have no loop: the row index would be the root's own, read before written)
            if (id(x) in same_index and x is not root and x.shape == root.shape and x.dtype == root.dtype
                    and all(x.shape[a] > 1 for a in r.attr("axes"))
                    and id(x) not in self.bufs.slots and inline_cost(x, self.bufs.slots) >= 10):
                self.row_cache[id(r)] = out
                self.memo[(id(x), tuple(nest.idx))] = Load(out.name, linear(nest.idx, c_strides(root.shape)), x.dtype)

    def _row_local(self, n: Node, idx: list[Expr]) -> Expr:
        axes = n.attr("axes")
        used = {x.name for e in idx for x in walk(e) if isinstance(x, Var)}
        nest = self.nest
        if nest is None or any(v not in nest.pos for v in used) or any(idx[a] != c64(0) for a in axes):
            raise NotRowLocal(n)
        depth = 1 + max((nest.pos[v] for v in used), default=-1)
        name = f"red{self.nlocal}"
        self.nlocal += 1
        saved = self.checks
        self.checks = []
        x = n.inputs[0]
        keep = [d for d in range(x.ndim) if d not in axes]
        ridx, rwrap = _loops([x.shape[d] for d in axes], f"{name}_r")
        acc_dt = _acc_dtype(n)
        full = _merge(keep, [idx[d] for d in keep], axes, ridx)
        v = self.expr_at(x, full)
        kind = n.attr("kind")
        stmts = [Assign(name, _combine(kind, LocalRef(name, acc_dt), _cast(v, acc_dt)))]
        cache = self.row_cache.get(id(n))
        if cache is not None:  # keep the reduced values in the output row: the final loop reads them back
            stmts.insert(0, Store(cache.name, linear(full, c_strides(x.shape)), v))
        upd = rwrap(self._with_checks(stmts))
        self.checks = saved
        nest.pro.setdefault(depth, []).extend([Decl(name, _reduce_init(kind, acc_dt)), upd])
        return _cast(LocalRef(name, acc_dt), n.dtype)

    # -- kernels
    def kernel(self, n: Node, k: int) -> Kernel:
        self.nlocal = 0  # local names are per kernel: steps of an unrolled loop then lower to equal kernels
        self.checks = []
        self.fused_mm = None
        self.memo = {}
        self.nest = None
        self.template = None
        self.sites = {}
        self.row_cache = {}
        out = self.bufs.slots[id(n)]
        if n.type.size == 0:
            body = Seq(())
        elif n.op == "reduce":
            body = self._reduce(n, out)
        elif n.op == "cumsum":
            body = self._cumsum(n, out)
        elif n.op == "matmul":
            body = self._matmul(n, out)
        elif id(n) in self.epilogues:
            body = self._matmul_epilogue(n, self.epilogues[id(n)], out)
        else:
            roots = self.plan.roots(n)  # siblings: one loop stores every output of this shape
            cat = self._concat_at_root(n) if len(roots) == 1 else None
            if cat is not None:
                return self._concat_kernels(n, k, out, cat)
            self.nest = nest = _Nest(n.shape, "i")
            if len(roots) == 1:
                self._plan_row_cache(n, out, nest)
            leaves = [Store(self.bufs.slots[id(r)].name, linear(nest.idx, c_strides(r.shape)),
                            self._expr_at(r, nest.idx, root=True)) for r in roots]
            body = nest.build(self._with_checks(leaves))
        return self._finish(n, f"k{k}_{n.op}", body)

    def _finish(self, n: Node, name: str, body: Stmt) -> Kernel:
        self.nest = None
        named = _buffer_names(body)
        used = sorted({self.by_name[x] for x in named if x in self.by_name}, key=lambda b: b.slot)
        outs = tuple(self.bufs.slots[id(r)].name for r in self.plan.roots(n))
        return Kernel(name, tuple(used), body, outs, self.template,
                      tuple((c, str(w)) for c, w in self.sites.items()))

    def _concat_at_root(self, n: Node) -> Node | None:
        """A concat that the kernel of `n` evaluates at its own index (n itself, or inlined under elementwise
        ops of n's shape): split along its axis, each piece reads its input at affine indices, where one
        loop over the whole axis would select between clamped (gathered) loads of every input."""
        stack, seen = [n], set()
        while stack:
            m = stack.pop()
            if id(m) in seen or m.shape != n.shape or (m is not n and id(m) in self.bufs.slots):
                continue
            seen.add(id(m))
            if m.op == "concat":
                ax = m.attr("axis")
                # np.stack along an inner axis (pieces one element wide): one loop interleaving the pieces
                # stores contiguously and reads each at an affine index already
                if ax > 0 and all(p.shape[ax] == 1 for p in m.inputs):
                    return None
                return m
            if m is n or ops.kind(m) == "elementwise":
                stack.extend(m.inputs)
        return None

    def _concat_kernels(self, n: Node, k: int, out: Buffer, cat: Node) -> list[Kernel]:
        """One kernel per piece of `cat`, each over its slab of the output: pieces along a leading axis are
        contiguous slabs, pieces along an inner axis strided blocks of whole inner rows; every kernel gets
        its own parallel loop and contiguous vector stores."""
        ax, off, kernels = cat.attr("axis"), 0, []
        for j, p in enumerate(cat.inputs):
            width = p.shape[ax]
            if width == 0:
                continue
            self.checks, self.memo, self.sites, self.row_cache, self.template = [], {}, {}, {}, None
            shape = list(n.shape)
            shape[ax] = width
            self.nest = nest = _Nest(shape, "i")
            full = list(nest.idx)
            full[ax] = iadd(nest.idx[ax], c64(off))
            self.memo[(id(cat), tuple(full))] = self.expr_at(p, list(nest.idx))
            value = self._expr_at(n, full, root=True) if n is not cat else self.memo[(id(cat), tuple(full))]
            body = nest.build(self._with_checks([Store(out.name, linear(full, c_strides(n.shape)), value)]))
            kernels.append(self._finish(n, f"k{k}_{n.op}_{j}", body))
            off += width
        return kernels

    def _with_checks(self, stmts: list[Stmt]) -> Stmt:
        checks = [Check(c, code) for c, code in self.checks]
        self.checks = []
        return Seq(tuple(checks + stmts)) if checks or len(stmts) != 1 else stmts[0]

    def _reduce(self, n: Node, out: Buffer) -> Stmt:
        x = n.inputs[0]
        kind, axes = n.attr("kind"), n.attr("axes")
        ostr = c_strides(n.shape)
        keep = [d for d in range(x.ndim) if d not in axes]
        if kind in ("argmax", "argmin"):
            return self._argreduce(n, out, axes[0])
        if _trailing(n):  # row reduction: a scalar accumulator per output element
            acc_dt = _acc_dtype(n)
            self.nest = nest = _Nest([n.shape[d] for d in keep], "i")
            ridx, rwrap = _loops([x.shape[d] for d in axes], "r")
            v = self.expr_at(x, _merge(keep, nest.idx, axes, ridx))
            upd = rwrap(self._with_checks([Assign("acc", _combine(kind, LocalRef("acc", acc_dt), _cast(v, acc_dt)))]))
            outi = linear(_merge(keep, nest.idx, axes, [c64(0)] * len(axes)), ostr)
            store = Store(out.name, outi, _cast(LocalRef("acc", acc_dt), n.dtype))
            return nest.build(Seq((Decl("acc", _reduce_init(kind, acc_dt)), upd, store)))
        # column reduction: accumulate into the output buffer, reading x in its own order (as numpy
        # does for non-contiguous axes, so float32 results match its summation order). Kept dims before
        # the first reduced one are independent batches: outermost, around both the init and the updates
        # (so that they can run in parallel)
        lead = axes[0]
        bidx, bwrap = _loops(x.shape[:lead], "b")
        oidx, owrap = _loops(n.shape[lead:], "o")
        init_st = owrap(Store(out.name, linear(bidx + oidx, ostr), _reduce_init(kind, n.dtype)))
        idx, wrap = _loops(x.shape[lead:], "i")
        full = bidx + idx
        oi = linear([c64(0) if d in axes else i for d, i in enumerate(full)], ostr)
        v = self.expr_at(x, full)
        body = wrap(self._with_checks([Store(out.name, oi, _combine(kind, Load(out.name, oi, n.dtype), v))]))
        return bwrap(Seq((init_st, body)))

    def _argreduce(self, n: Node, out: Buffer, ax: int) -> Stmt:
        """argmax/argmin: numpy's first index of the extreme value, the first NaN winning. One scalar
        compare-and-select chain per element would not vectorize, so each block of ARG_BLOCK elements of
        a row takes two vector reductions, the second while the block is still in cache: the block's
        extreme (NaN-propagating max/min), then the smallest index holding it (its first NaN when it is
        NaN). Blocks then update the row's (best, index) in order, replacing only on a strict
        improvement (or a first NaN), so ties keep the earliest block."""
        x = n.inputs[0]
        if ax != x.ndim - 1:  # columns: one pass over the rows, a few columns at a time
            return self._argreduce_columns(n, out, ax)
        keep = [d for d in range(x.ndim) if d != ax]
        self.nest = nest = _Nest([x.shape[d] for d in keep], "i")
        dt, size = x.dtype, x.shape[ax]
        argmax = n.attr("kind") == "argmax"
        bi = LocalRef("bidx", I64)
        nb, tail = divmod(size, ARG_BLOCK)
        blocks = []
        if nb > 1:
            blocks.append(For("rb", nb, self._arg_block(x, keep, nest.idx, ax, imul(Var("rb"), ARG_BLOCK),
                                                        ARG_BLOCK, argmax)))
        elif nb == 1:
            blocks.append(self._arg_block(x, keep, nest.idx, ax, c64(0), ARG_BLOCK, argmax))
        if tail:
            blocks.append(self._arg_block(x, keep, nest.idx, ax, c64(nb * ARG_BLOCK), tail, argmax))
        v0 = self.expr_at(x, _merge(keep, nest.idx, [ax], [c64(0)]))
        outi = linear(_merge(keep, nest.idx, [ax], [c64(0)]), c_strides(n.shape))
        return nest.build(Seq((Decl("best", v0), Decl("bidx", c64(0)), *blocks,
                               Store(out.name, outi, _cast(bi, n.dtype)))))

    def _arg_block(self, x: Node, keep, kidx, ax: int, start: Expr, size: int, argmax: bool) -> Stmt:
        dt = x.dtype
        pos = iadd(start, Var("r0"))
        v = self.expr_at(x, _merge(keep, kidx, [ax], [pos]))
        kind = "max" if argmax else "min"
        none = _scalar(ARG_NONE, I32)
        bm, bk = LocalRef("bm", dt), LocalRef("bk", I32)
        extreme = For("r0", size, self._with_checks([Assign("bm", _combine(kind, bm, v))]))
        hit = Call("equal", (v, bm), BOOL)
        if dt.kind == "f":  # a NaN extreme is the block's first NaN (no NaN in the block otherwise)
            hit = Call("logical_or", (hit, Call("isnan", (v,), BOOL)), BOOL)
        # the offset in the block as int32: twice the lanes of int64 indices per vector
        first = For("r0", size, Assign("bk", Call("minimum", (bk, Call("where", (hit, Cast(Var("r0"), I32), none),
                                                                       I32)), I32)))
        best = LocalRef("best", dt)
        better = Call("greater" if argmax else "less", (bm, best), BOOL)
        if dt.kind == "f":  # the first NaN wins, as in numpy
            better = Call("logical_or", (better, Call("logical_and", (Call("isnan", (bm,), BOOL),
                          Call("logical_not", (Call("isnan", (best,), BOOL),), BOOL)), BOOL)), BOOL)
        up = LocalRef("better", BOOL)
        return Seq((Decl("bm", _reduce_init(kind, dt)), extreme, Decl("bk", none), first,
                    Decl("better", better),
                    Assign("best", Call("where", (up, bm, best), dt)),
                    Assign("bidx", Call("where", (up, iadd(start, Cast(bk, I64)), LocalRef("bidx", I64)), I64))))

    def _argreduce_columns(self, n: Node, out: Buffer, ax: int) -> Stmt:
        """argmax/argmin over a leading axis: W adjacent columns (of the last axis) at a time, each with its own
        (best, index) pair updated in row order (strict improvement or a first NaN, as numpy), so that one
        pass over the rows reads every cache line once, where a column at a time would stride through
        all rows for each column. W divides the last axis (64 bytes of columns at most; 1 when prime)."""
        x = n.inputs[0]
        keep = [d for d in range(x.ndim) if d != ax]
        cols = x.shape[-1]
        w = next(w for w in (16, 8, 4, 2, 1) if w * x.dtype.itemsize <= 64 and cols % w == 0)
        self.nest = nest = _Nest([x.shape[d] for d in keep[:-1]] + [cols // w], "i")
        r = Var("r0")
        argmax = n.attr("kind") == "argmax"
        inits, updates, stores = [], [], []
        for k in range(w):
            kidx = nest.idx[:-1] + [iadd(imul(nest.idx[-1], w), c64(k))]
            v = self.expr_at(x, _merge(keep, kidx, [ax], [r]))
            best, bi, up = LocalRef(f"best{k}", x.dtype), LocalRef(f"bidx{k}", I64), LocalRef(f"better{k}", BOOL)
            better = Call("greater" if argmax else "less", (v, best), BOOL)
            if x.dtype.kind == "f":  # the first NaN wins, as in numpy
                better = Call("logical_or", (better, Call("logical_and", (Call("isnan", (v,), BOOL),
                              Call("logical_not", (Call("isnan", (best,), BOOL),), BOOL)), BOOL)), BOOL)
            inits += [Decl(best.name, self.expr_at(x, _merge(keep, kidx, [ax], [c64(0)]))), Decl(bi.name, c64(0))]
            updates += [Decl(up.name, better), Assign(best.name, Call("where", (up, v, best), x.dtype)),
                        Assign(bi.name, Call("where", (up, r, bi), I64))]
            outi = linear(_merge(keep, kidx, [ax], [c64(0)]), c_strides(n.shape))
            stores.append(Store(out.name, outi, _cast(bi, n.dtype)))
        loop = For("r0", x.shape[ax], self._with_checks(updates))
        return nest.build(Seq((*inits, loop, *stores)))

    def _cumsum(self, n: Node, out: Buffer) -> Stmt:
        x = n.inputs[0]
        ax = n.attr("axis")
        keep = [d for d in range(x.ndim) if d != ax]
        oidx, owrap = _loops([x.shape[d] for d in keep], "i")
        r = Var("r0")
        full = _merge(keep, oidx, [ax], [r])
        acc = LocalRef("acc", n.dtype)
        loop = For("r0", x.shape[ax], self._with_checks([
            Assign("acc", Call("add", (acc, self.expr_at(x, full)), n.dtype)),
            Store(out.name, linear(full, c_strides(n.shape)), acc)]))
        return owrap(Seq((Decl("acc", _zero(n.dtype)), loop)))

    def _matmul(self, n: Node, out: Buffer) -> Stmt:
        a, b = n.inputs
        *batch, m, nn = n.shape
        kk = a.shape[-1]
        bidx, bwrap = _loops(batch, "b")
        i, j, k = Var("i"), Var("j"), Var("k")
        ostr = c_strides(n.shape)
        oi = linear(bidx + [i, j], ostr)
        av = self.expr_at(a, bidx + [i, k])
        bv = self.expr_at(b, bidx + [k, j])
        acc = Load(out.name, oi, n.dtype)
        upd = For("j", nn, Store(out.name, oi, Call("fma" if n.dtype.kind == "f" else "add",
                                                     (LocalRef("aik", n.dtype), bv, acc) if n.dtype.kind == "f"
                                                     else (acc, Call("multiply", (LocalRef("aik", n.dtype), bv), n.dtype)),
                                                     n.dtype)))
        row = Seq((For("j", nn, Store(out.name, oi, _zero(n.dtype))),
                   For("k", kk, self._with_checks([Decl("aik", av), upd]))))
        self.template = _gemm_template(n, av, bv, out, batch, bidx) if not self.checks else None
        return bwrap(For("i", m, row))


    def _matmul_epilogue(self, n: Node, mm: Node, out: Buffer) -> Stmt:
        """out = f(a @ b, ...): the GEMM template writes tiles of `out` and applies f to each finished tile."""
        body = self._matmul(mm, out)
        if self.template is None:
            raise NotRowLocal(mm)  # operands are not plain strided loads: give the matmul its own buffer
        bidx, bwrap = _loops(mm.shape[:-2], "b")
        idx = bidx + [Var("i"), Var("j")]
        midx = idx
        if n.shape != mm.shape:  # a matrix-vector product as numpy shapes it: (m,) read from an (m, 1) matmul
            midx = bidx + [v if d != 1 else c64(0) for v, d in zip(idx[-2:], mm.shape[-2:])]
            idx = bidx + [v for v, d in zip(idx[-2:], mm.shape[-2:]) if d != 1]
        self.memo = {}
        self.fused_mm = (mm, midx)
        value = self._expr_at(n, idx, root=True)
        self.fused_mm = None
        if self.checks:
            raise NotRowLocal(mm)
        oi = linear(idx, c_strides(n.shape))
        params = dict(self.template[1])
        params["epilogue"] = value
        params["bvars"] = tuple(e.name for e in bidx if isinstance(e, Var))
        self.template = (self.template[0], tuple(params.items()))
        ref = _substitute_local(value, "mm", Load(out.name, oi, n.dtype))
        epi = bwrap(For("i", mm.shape[-2], For("j", mm.shape[-1], Store(out.name, oi, ref))))
        return Seq((body, epi))


def _gemm_template(n: Node, av: Expr, bv: Expr, out: Buffer, batch, bidx):
    """Parameters of the GEMM (or, for skinny products, matrix-vector) template when both operands are plain
    strided loads (float only)."""
    from .schedule import affine
    if (n.dtype not in (np.float32, np.float64) or not isinstance(av, Load) or not isinstance(bv, Load)
            or 0 in n.inputs[0].shape or 0 in n.inputs[1].shape):
        return None  # (K == 0: the loop nest writes the zeros the template would never store)
    fa, fb = affine(av.index), affine(bv.index)
    if fa is None or fb is None:
        return None
    bvars = [e.name if isinstance(e, Var) else None for e in bidx]
    if set(fa) - {None, "i", "k", *bvars} or set(fb) - {None, "k", "j", *bvars}:
        return None
    cstr = c_strides(n.shape)
    bat = tuple((int(ext), fa.get(v, 0), fb.get(v, 0), cstr[d]) for d, (ext, v) in enumerate(zip(batch, bvars))
                if v is not None)
    *_, m, nn = n.shape
    params = (("M", m), ("N", nn), ("K", n.inputs[0].shape[-1]), ("dtype", n.dtype.name),
              ("A", (av.buf, fa.get(None, 0), fa.get("i", 0), fa.get("k", 0))),
              ("B", (bv.buf, fb.get(None, 0), fb.get("k", 0), fb.get("j", 0))), ("C", out.name), ("batch", bat),
              # threads take row tiles ("cols", where each packs only its share of B, measured slower on
              # 256x512x512 and no faster on square shapes: A's re-reads cost more than B's packing)
              ("split", "rows"))
    from ..codegen.gemv import gemv_params  # one side of at most GEMV_MAX vectors: stream the matrix once
    gv = gemv_params(dict(params))
    return ("gemv", tuple(gv.items())) if gv is not None else ("gemm", params)


def _substitute_local(e: Expr, name: str, by: Expr) -> Expr:
    if isinstance(e, LocalRef) and e.name == name:
        return by
    if isinstance(e, Call):
        return Call(e.op, tuple(_substitute_local(a, name, by) for a in e.args), e.dtype)
    if isinstance(e, Cast):
        return Cast(_substitute_local(e.x, name, by), e.dtype)
    if isinstance(e, Idx):
        return Idx(e.op, _substitute_local(e.a, name, by), _substitute_local(e.b, name, by))
    return e


_ELEMENTWISE_CALLS = None


def _init_calls():
    global _ELEMENTWISE_CALLS
    from ..graph.ops import BINARY, UNARY
    _ELEMENTWISE_CALLS = UNARY | BINARY


_init_calls()


# argmax/argmin blocks: two passes over a block of this many elements, the second from L1
ARG_BLOCK = 2048
ARG_NONE = np.iinfo(np.int32).max  # "no hit yet" offset of a block's second pass
I32 = np.dtype(np.int32)


def _trailing(n: Node) -> bool:
    axes = n.attr("axes")
    return all(a >= n.ndim - len(axes) for a in axes)


def _acc_dtype(n: Node) -> np.dtype:
    """float32 sums/products over rows accumulate in double: at least as accurate as numpy's pairwise sum."""
    if n.attr("kind") in ("sum", "prod") and n.dtype == np.float32:
        return np.dtype(np.float64)
    return n.dtype


def _cast(e: Expr, dt) -> Expr:
    return e if e.dtype == dt else Cast(e, np.dtype(dt))


def _reduce_init(kind, dt):
    if kind == "sum":
        return _zero(dt)
    if kind == "prod":
        return _scalar(1, dt)
    if kind == "any":
        return _scalar(False, dt)
    if kind == "all":
        return _scalar(True, dt)
    if dt.kind == "f":
        return _scalar(-np.inf if kind == "max" else np.inf, dt)
    if dt.kind == "b":
        return _scalar(kind == "min", dt)
    info = np.iinfo(dt)
    return _scalar(info.min if kind == "max" else info.max, dt)


def _combine(kind, acc: Expr, v: Expr) -> Expr:
    op = {"sum": "reduce_add", "prod": "reduce_mul", "max": "maximum", "min": "minimum",
          "any": "logical_or", "all": "logical_and"}[kind]
    if acc.dtype.kind == "b" and kind in ("sum", "max"):
        op = "logical_or"
    if acc.dtype.kind == "b" and kind in ("prod", "min"):
        op = "logical_and"
    return Call(op, (acc, v), acc.dtype)


def _loops(shape, prefix):
    """Index exprs for a loop nest over `shape` (size-1 dims get no loop) and a wrapper building it."""
    idx, loops = [], []
    for d, s in enumerate(shape):
        if s == 1:
            idx.append(c64(0))
        else:
            idx.append(Var(f"{prefix}{d}"))
            loops.append((f"{prefix}{d}", int(s)))

    def wrap(body: Stmt) -> Stmt:
        for name, s in reversed(loops):
            body = For(name, s, body)
        return body
    return idx, wrap


def _merge(keep, kidx, axes, aidx):
    full = [None] * (len(keep) + len(axes))
    for d, e in zip(keep, kidx):
        full[d] = e
    for d, e in zip(axes, aidx):
        full[d] = e
    return full


def reshape_index(idx: list[Expr], out_shape, in_shape) -> list[Expr]:
    """Map an index of the reshaped array to its input: dims are grouped where products match,
    and only groups that really split or merge dims pay a div/mod."""
    res: list[Expr] = []
    i = j = 0
    no, ni = len(out_shape), len(in_shape)
    while i < no or j < ni:
        # take the smallest runs out[i:i2], in[j:j2] with equal products
        i2, j2 = i, j
        po = pi = 1
        if i < no:
            po, i2 = out_shape[i], i + 1
        if j < ni:
            pi, j2 = in_shape[j], j + 1
        while po != pi or (i2 < no and out_shape[i2] == 1 and po == pi and j2 >= ni):
            if po < pi or (po == pi and i2 < no):
                if i2 >= no:
                    break
                po *= out_shape[i2]
                i2 += 1
            else:
                if j2 >= ni:
                    break
                pi *= in_shape[j2]
                j2 += 1
        oidx, oshape, ishape = idx[i:i2], out_shape[i:i2], in_shape[j:j2]
        if list(oshape) == list(ishape):
            res.extend(oidx)
        else:
            # indices lie in [0, dim): a dim of 1 contributes 0, and the first dim of more than 1 needs no
            # mod (flat < its size x stride); x[i] of a matrix then reads a plain row, not div/mod gathers
            flat = linear([c64(0) if s == 1 else i for i, s in zip(oidx, oshape)], c_strides(oshape))
            lead = True
            for d, st in enumerate(c_strides(ishape)):
                if ishape[d] == 1:
                    res.append(c64(0))
                    continue
                res.append(idiv(flat, st) if lead else imod(idiv(flat, st), ishape[d]))
                lead = False
        i, j = i2, j2
    return res


def _buffer_names(s) -> set[str]:
    """Names of the buffers a statement loads, stores or prefetches: one walk of the IR, each shared
    expression visited once (expressions are DAGs: a value read twice is one object)."""
    names, seen, stack = set(), set(), [s]
    while stack:
        x = stack.pop()
        if id(x) in seen or isinstance(x, (Const, Var, LocalRef, str, int, float, np.dtype)):
            continue
        seen.add(id(x))
        if isinstance(x, (list, tuple)):
            stack.extend(x)
            continue
        buf = getattr(x, "buf", None)
        if buf is not None:
            names.add(buf)
        if hasattr(x, "__dataclass_fields__"):
            stack.extend(getattr(x, f) for f in x.__dataclass_fields__ if f != "dtype")
    return names


def lower(graph: Graph, plan: FusionPlan, bufs: BufferPlan) -> list[Kernel]:
    lw = Lowerer(graph, plan, bufs)
    out, failed = [], []
    for k, n in enumerate(plan.order):
        try:
            kn = lw.kernel(n, k)  # a concatenation lowers to one kernel per piece
        except NotRowLocal as e:  # collect them all: the caller re-plans once, not once per reduction
            failed.extend(e.nodes)
            continue
        out.extend(kn if isinstance(kn, list) else [kn])
    if failed:
        raise NotRowLocal(failed[0], tuple(failed[1:]))
    return out
