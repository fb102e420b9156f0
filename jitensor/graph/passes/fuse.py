"""Fusion: choose which nodes get a buffer; every other node is inlined into its consumers' loops.

A *group* is one materialized node (its kernel's output) plus the tree of elementwise and
injective producers inlined into it as index arithmetic, so chains like GELU become one loop
with no temporaries, and a reduction absorbs its elementwise prologue (sum((x - mu)**2) reads x
once). A node is materialized when inlining would repeat real work:
  - graph outputs, and ops that need whole-array loops: reduce, matmul, cumsum;
  - nodes read by several consumers, or stretched by a broadcast, unless they are cheap to
    recompute (a few arithmetic ops over buffers);
  - operands of matmul that compute anything, not only view a buffer (the GEMM template reads plain
    strided loads, and reads each element many times).
A reduction over trailing axes that feeds a single kernel is *row-local*: it is computed inside
that kernel's outer loops (per row, while the row is in cache), so softmax and layernorm are one
kernel that reads each row from memory once and writes the output once.
Elementwise outputs of one shape that do not read each other are *siblings*: one kernel computes
them all in the same loop (Black-Scholes' call and put), so the values they share are computed
once per element instead of being materialized.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from .. import ops
from ..ir import Graph, Node

ANCHORS = frozenset({"reduce", "matmul", "cumsum"})
EXPENSIVE = frozenset({"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin",
                       "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
                       "power", "hypot", "cbrt", "sigmoid", "divide", "floor_divide", "remainder", "fmod", "sqrt"})
RECOMPUTE_LIMIT = 6  # inline a shared node if its inlined tree costs at most this many simple ops
# Inlined expressions stay within about 2 MAX_DEPTH levels (`_cut_levels`, `_bound_depth`): lowering and
# code generation recurse on expression depth (a 200-step chain exhausted Python's recursion limit).
# Expressions are DAGs (a value read twice at one index is one object), and every IR visitor walks
# each shared expression once, so their size needs no bound of its own.
MAX_DEPTH = 50
MAX_INSTANCES = 8  # a node read at more distinct indices than this in its kernels gets a buffer
# ops whose inputs are read at another index than their own (a node inlined under two of them, or under
# one at two input positions, is computed once per index: real repeated work, unlike elementwise sharing)
REINDEX = frozenset({"broadcast", "transpose", "slice", "reshape", "concat", "gather", "set_slice",
                     "reduce", "matmul", "cumsum"})


@dataclass(frozen=True)
class FusionPlan:
    materialized: frozenset[int]  # ids of nodes that own a buffer
    order: tuple[Node, ...]       # materialized non-source nodes in execution order (one kernel each)
    row_local: frozenset[int] = frozenset()  # reductions computed inside their consumer's outer loops
    epilogue: tuple = ()  # (root id, matmul node): matmuls computed in their elementwise consumer's kernel
    siblings: tuple = ()  # (root id, (other roots...)): outputs the root's kernel also stores

    @functools.cached_property
    def _sibling_map(self) -> dict:
        return dict(self.siblings)

    def roots(self, n: Node) -> tuple[Node, ...]:
        """The nodes kernel `n` stores: n and its siblings."""
        return (n,) + self._sibling_map.get(id(n), ())

    def groups(self, graph: Graph) -> dict[int, int]:
        """node id -> index of the kernel it is computed in (for dumps)."""
        out: dict[int, int] = {}
        for k, root in enumerate(self.order):
            stack = list(self.roots(root))
            while stack:
                n = stack.pop()
                if id(n) in out:
                    continue
                out[id(n)] = k
                stack.extend(i for i in n.inputs if id(i) not in self.materialized and i.op not in ("input", "const"))
        return out


def _own_cost(n: Node) -> int:
    if n.op in ("broadcast", "transpose", "slice", "reshape"):
        return 0  # pure index arithmetic
    return 10 if n.op in EXPENSIVE else (2 if n.op in ("gather", "concat", "set_slice") else 1)


def inline_cost(n: Node, materialized, memo=None, cap: int = 4 * RECOMPUTE_LIMIT) -> int:
    """The work of inlining `n` (its tree down to buffers, each shared node counted once), up to `cap`:
    callers only compare it with small limits, and a capped walk keeps planning linear in graph size."""
    total, seen, stack = 0, set(), [n]
    while stack:
        m = stack.pop()
        if id(m) in seen or id(m) in materialized or m.op in ("input", "const"):
            continue
        seen.add(id(m))
        total += _own_cost(m)
        if total >= cap or len(seen) > 4 * cap:
            return cap
        stack.extend(m.inputs)
    return total


def plan_fusion(graph: Graph, force: frozenset = frozenset()) -> FusionPlan:
    """`force`: node ids that must be materialized (lowering found a row-local reduction it cannot nest)."""
    order = graph.toposort()
    users = graph.users()
    outs = {id(o) for o in graph.outputs}
    mat: set[int] = outs | set(force)
    for n in order:
        if n.op in ANCHORS:
            mat.add(id(n))
    _bound_repeats(order, users, mat)
    cuts = _cut_levels(order, mat)
    row_local: set[int] = set()
    # a reduction over trailing axes whose result feeds exactly one kernel is computed inside that kernel's
    # outer loops (softmax, layernorm: each row is reduced then consumed while it is in cache)
    for n in reversed(order):
        if (n.op == "reduce" and id(n) not in force and id(n) not in outs
                and n.attr("kind") not in ("argmax", "argmin") and _trailing(n)):
            ks = _consumer_kernels(n, users, mat)
            if len(ks) == 1 and ks[0].op not in ("matmul", "cumsum") and not (ks[0].op == "reduce" and not _trailing(ks[0])):
                mat.discard(id(n))
                row_local.add(id(n))
    # arithmetic feeding a matmul gets a buffer (the template reads each element many times); decided before
    # epilogues, so that the matmul before an activation that feeds the next matmul (an MLP's
    # matmul -> bias -> relu -> matmul) sees that kernel as its consumer and takes bias and relu as epilogue
    for n in order:
        if n.op == "matmul":
            for o in n.inputs:
                if (o.op not in ("input", "const", "matmul") and id(o) not in mat and id(o) not in row_local
                        and _computes(o, mat)):
                    # below its reshapes: the kernel then loops over the value's own shape (a conv's NCHW,
                    # not H*W flattened, whose index division defeats vectorization), and the product reads
                    # the contiguous buffer through the reshape, which stays affine
                    while o.op == "reshape" and o.inputs[0].op not in ("input", "const") and id(o.inputs[0]) not in mat:
                        o = o.inputs[0]
                    mat.add(id(o))
    # elementwise work on a product in its own shape whose kernel would have another shape (the work was
    # sunk below a layout change, sink.py, or feeds a reduction) gets a buffer: it becomes the product's
    # epilogue, and its readers read it through their views as they would have read the product
    for n in order:
        if n.op != "matmul" or id(n) in outs:
            continue
        top, us = n, users.get(id(n), [])
        while (len({id(u) for u in us}) == 1 and ops.kind(us[0]) == "elementwise" and us[0].shape == n.shape
               and us[0].dtype == n.dtype and id(us[0]) not in mat):
            top = us[0]  # the last of a chain of elementwise work in the product's shape (bias, residual, relu)
            us = users.get(id(top), [])
        if top is not n and n.dtype.kind == "f":
            ks = _consumer_kernels(top, users, mat)
            if ks and all(k.shape != n.shape for k in ks):
                mat.add(id(top))
    # a matmul read by one elementwise kernel of its own shape and dtype is computed there: the kernel's
    # elementwise work (bias, activation) runs on each finished tile while it is in registers
    epilogue = []
    for n in order:
        if n.op == "matmul" and id(n) not in outs and id(n) not in force:
            ks = _consumer_kernels(n, users, mat)
            if (len(ks) == 1 and ops.kind(ks[0]) == "elementwise" and ks[0].shape in (n.shape, squeeze_mn(n.shape))
                    and ks[0].dtype == n.dtype and n.dtype.kind == "f"
                    and not any(rid == id(ks[0]) for rid, _ in epilogue)):
                mat.discard(id(n))
                epilogue.append((id(ks[0]), n))
    rep = _sibling_groups(graph, {rid for rid, _ in epilogue} | {id(m) for _, m in epilogue}, force, cuts)
    for n in reversed(order):
        if n.op in ("input", "const") or id(n) in mat or id(n) in row_local or n.op == "matmul":
            continue
        us = users.get(id(n), [])
        cost = inline_cost(n, mat)
        stretched = any(u.op == "broadcast" and _stretches_outer(n, u) for u in us)
        to_matmul = any(u.op == "matmul" for u in us) and _computes(n, mat)
        shared = len({id(u) for u in us}) > 1 and len({rep.get(id(k), id(k)) for k in _consumer_kernels(n, users, mat)}) > 1
        if to_matmul or (shared and cost > RECOMPUTE_LIMIT) or (stretched and cost > 2):
            mat.add(id(n))
    _bound_depth(order, mat, row_local, epilogue)  # row-local reductions and epilogues deepened some
    # siblings share a kernel only if their trees stay plain elementwise work (no row-local reduction)
    cands: dict[int, list] = {}
    for o in list(graph.outputs) + [c for level in cuts for c in level]:
        if id(o) in rep and id(o) in mat and not any(id(m) in row_local for m in _inlined_tree(o, mat)):
            grp = cands.setdefault(rep[id(o)], [])
            if all(g is not o for g in grp):
                grp.append(o)
    roots = [n for n in order if id(n) in mat and n.op not in ("input", "const")]
    deps = {id(r): _kernel_inputs(r, mat) for r in roots}
    kernels, sib = _merge_and_order(roots, deps, [g for g in cands.values() if len(g) > 1])
    plan = FusionPlan(frozenset(mat), kernels, frozenset(row_local), tuple(epilogue), sib)
    check_order(plan, graph)
    return plan


def _bound_repeats(order: list[Node], users, mat: set) -> None:
    """Give a buffer to each node that one kernel would compute at several different indices (a stencil
    step read through four shifted slices by the next step) when that repeats real work. Consumers are
    decided first (reverse topological order), so each node sees its final readers. An instance is a
    (kernel, path) pair, the path naming the re-indexing ops (and input positions) between the node and
    its kernel's root; reads from different kernels are the shared-node rule's business, not this one's."""
    inst: dict[int, set] = {}
    for n in reversed(order):
        if n.op in ("input", "const") or id(n) in mat:
            continue
        cost = inline_cost(n, mat)
        if cost == 0:  # index arithmetic over buffers all the way down: nothing to repeat
            inst[id(n)] = set()
            continue
        seen: set = set()
        for u in users.get(id(n), []):
            base = {(id(u), 0)} if id(u) in mat else inst[id(u)]
            if u.op in REINDEX:
                seen |= {(kn, hash((p, id(u), k))) for kn, p in base for k, i in enumerate(u.inputs) if i is n}
            else:
                seen |= base
        per_kernel: dict[int, int] = {}
        for kn, _ in seen:
            per_kernel[kn] = per_kernel.get(kn, 0) + 1
        most = max(per_kernel.values(), default=0)
        if (most > 1 and cost > RECOMPUTE_LIMIT) or most > MAX_INSTANCES or len(seen) > 8 * MAX_INSTANCES:
            mat.add(id(n))
        else:
            inst[id(n)] = seen


def _cut_levels(order: list[Node], mat: set) -> list[list[Node]]:
    """Give a buffer to every inlined value at level MAX_DEPTH, 2 MAX_DEPTH, ... (a value's level is one
    more than its inputs', counted from the buffers below), so no kernel inlines more than about twice
    MAX_DEPTH levels. Cutting whole levels, not single deep values, cuts every variable of an unrolled
    recurrence at one step: the values of one level become siblings of one kernel, and the values below
    them are not read by several kernels (which would give them buffers too). Returns the levels."""
    level: dict[int, int] = {}
    cuts: dict[int, list] = {}
    for n in order:
        if n.op in ("input", "const") or id(n) in mat:
            continue
        lv = level[id(n)] = 1 + max((level[id(i)] for i in n.inputs if id(i) in level), default=0)
        if lv % MAX_DEPTH == 0:
            mat.add(id(n))
            cuts.setdefault(lv, []).append(n)
    return list(cuts.values())


def _bound_depth(order: list[Node], mat: set, row_local: set, epilogue: list) -> None:
    """Give a buffer to each node whose inlined expression would be deeper than 2 MAX_DEPTH (after the
    level cuts, only where a row-local reduction or an epilogue joined two trees). A row-local reduction
    or an epilogue matmul that needs one is materialized as a plain kernel instead."""
    depth: dict[int, int] = {}
    for n in order:
        if n.op in ("input", "const") or id(n) in mat:
            continue
        d = 1 + max((depth[id(i)] for i in n.inputs if id(i) in depth), default=0)
        if d > 2 * MAX_DEPTH:
            mat.add(id(n))
            row_local.discard(id(n))
            epilogue[:] = [(r, m) for r, m in epilogue if m is not n]
            continue
        depth[id(n)] = d


def squeeze_mn(shape: tuple) -> tuple:
    """A matmul's shape without unit rows or columns: the shape of `A @ x` for a vector x (numpy's
    result), which the frontend computes as an (m, 1) matmul and reshapes."""
    return tuple(shape[:-2]) + tuple(d for d in shape[-2:] if d != 1)


def _kernel_inputs(root: Node, mat) -> set[int]:
    """Ids of the materialized values kernel `root` reads (through its inlined tree, row-local
    reductions and epilogue matmuls included: they are computed inside it)."""
    return {id(i) for m in _inlined_tree(root, mat) for i in m.inputs
            if id(i) in mat and i.op not in ("input", "const")}


def _merge_and_order(roots: list[Node], deps: dict, candidates: list[list[Node]]):
    """Merge sibling candidates into one kernel each where that keeps the kernel graph acyclic, then
    order kernels so that every kernel runs after all kernels whose values it reads.

    Two outputs that do not read each other can still not share a kernel when one needs a value that
    is computed, through other kernels, from the other (or from another merged group: cycles can pass
    through several groups), so merging is checked on the kernel graph, not on the node graph."""
    unit = {id(r): id(r) for r in roots}          # root id -> id of its kernel's first root
    members = {id(r): [r] for r in roots}
    pos = {id(r): k for k, r in enumerate(roots)}

    def preds(u):
        return {unit[d] for m in members[u] for d in deps[id(m)]} - {u}

    def reaches(src, dst):  # is there a path src -> ... -> dst along "is read by" edges?
        stack, seen = [dst], {dst}  # walk dst's predecessors back towards src
        while stack:
            u = stack.pop()
            for p in preds(u):
                if p == src:
                    return True
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return False

    for grp in candidates:
        head = unit[id(grp[0])]
        for o in grp[1:]:
            u = unit[id(o)]
            if u != head and not reaches(head, u) and not reaches(u, head):
                for m in members.pop(u):
                    unit[id(m)] = head
                    members[head].append(m)
    # depth-first post-order over kernels, visited in the graph's order: the original order when
    # nothing merged, and every merged kernel after all of its members' inputs
    done, out = set(), []
    for r in roots:
        u = unit[id(r)]
        if u in done:
            continue
        stack = [(u, False)]
        while stack:
            v, ready = stack.pop()
            if ready:
                if v not in done:
                    done.add(v)
                    out.append(v)
                continue
            if v in done:
                continue
            stack.append((v, True))
            stack.extend((p, False) for p in sorted(preds(v), key=pos.get, reverse=True) if p not in done)
    kernels = tuple(members[u][0] for u in out)
    sib = tuple((u, tuple(members[u][1:])) for u in out if len(members[u]) > 1)
    return kernels, sib


def check_order(plan: FusionPlan, graph: Graph) -> None:
    """The plan's invariant: each kernel reads only values computed by kernels before it, and every
    materialized value is computed by exactly one kernel. A violation is a compiler bug (a kernel
    would read a buffer before it is written), so it fails compilation instead of running."""
    from ...errors import CompileError
    done: set[int] = set()
    for k, root in enumerate(plan.order):
        rs = plan.roots(root)
        for r in rs:
            missing = [d for d in _kernel_inputs(r, plan.materialized) if d not in done]
            if missing:
                raise CompileError(f"fusion plan: kernel {k} ({r.op}) reads a value computed later or never "
                                   f"(node ids {missing[:4]})", where=r.where)
        for r in rs:
            if id(r) in done:
                raise CompileError(f"fusion plan: a value is computed by two kernels ({r.op})", where=r.where)
            done.add(id(r))
    lost = [n for n in graph.toposort() if id(n) in plan.materialized and n.op not in ("input", "const")
            and id(n) not in done]
    if lost:
        raise CompileError(f"fusion plan: {len(lost)} materialized values are never computed")


def _sibling_groups(graph: Graph, excluded: set, force, cuts=()) -> dict[int, int]:
    """Values that can share one kernel: elementwise, of one shape, none reading another. Candidates are
    the graph's outputs, and each level of values that `_cut_levels` gave buffers (one level's values do
    not read each other through inlined values; a path through another kernel, such as a reduction, is
    refused later by `_merge_and_order`). Returns value id -> id of its group's first value."""
    rep: dict[int, int] = {}
    families = [(list(graph.outputs), True)] + [(level, False) for level in cuts]
    for members, check in families:
        cand = []
        for o in members:
            if ops.kind(o) == "elementwise" and id(o) not in excluded and id(o) not in force and o.type.size > 0 \
                    and all(o is not x for x in cand):
                cand.append(o)
        if len(cand) < 2:
            continue
        anc = {id(o): _ancestors(o) for o in cand} if check else None
        groups: list[list[Node]] = []
        for o in cand:
            for g in groups:
                if g[0].shape == o.shape and (not check or all(
                        id(x) not in anc[id(o)] and id(o) not in anc[id(x)] for x in g)):
                    g.append(o)
                    break
            else:
                groups.append([o])
        for g in groups:
            if len(g) > 1:
                for o in g:
                    rep[id(o)] = id(g[0])
    return rep


def _ancestors(n: Node) -> set[int]:
    out, stack = set(), list(n.inputs)
    while stack:
        m = stack.pop()
        if id(m) not in out:
            out.add(id(m))
            stack.extend(m.inputs)
    return out


def _stretches_outer(n: Node, b: Node) -> bool:
    """Does broadcast `b` repeat `n` along a dim outside a dim where `n` varies? Then inlining `n` recomputes
    it per outer iteration; repeats along inner dims only are loop-invariant and hoisted by LLVM."""
    if n.ndim != b.ndim:
        return b.type.size > n.type.size
    for d in range(n.ndim):
        if n.shape[d] == 1 and b.shape[d] > 1 and any(n.shape[e] > 1 for e in range(d + 1, n.ndim)):
            return True
    return False


def _trailing(n: Node) -> bool:
    axes = n.attr("axes")
    return all(a >= n.ndim - len(axes) for a in axes)


def _consumer_kernels(n: Node, users, mat) -> list[Node]:
    """The materialized nodes that read `n` through inlined (non-materialized) paths."""
    out, seen, stack = {}, set(), list(users.get(id(n), []))
    while stack:
        u = stack.pop()
        if id(u) in seen:
            continue
        seen.add(id(u))
        if id(u) in mat:
            out[id(u)] = u
        else:
            stack.extend(users.get(id(u), []))
    return list(out.values())


_VIEWS = frozenset({"reshape", "transpose", "slice", "broadcast"})


def _computes(n: Node, mat: set) -> bool:
    """Whether inlining n computes anything (arithmetic, a concatenation's selects, a gather) or reads a buffer
    through views that are not one strided access (a reshape of a transpose): a matmul operand that does needs
    a buffer, since the GEMM template reads plain strided loads (an operand inlined into the product's loops
    leaves it a naive loop nest) and reads each element many times."""
    return any(m.op not in _VIEWS for m in _inlined_tree(n, mat)) or _view_strides(n, mat) is None


def _view_strides(n: Node, mat: set):
    """The element strides of a chain of views over a buffer (assumed C-contiguous), or None when a reshape in
    it cannot be done without a copy (numpy's rule)."""
    if id(n) in mat or n.op in ("input", "const"):
        out, acc = [], 1
        for d in reversed(n.shape):
            out.append(acc)
            acc *= d
        return out[::-1]
    below = _view_strides(n.inputs[0], mat) if n.op in _VIEWS else None
    if below is None:
        return None
    src = n.inputs[0].shape
    if n.op == "transpose":
        return [below[p] for p in n.attr("perm")]
    if n.op == "slice":
        return [s * k for s, k in zip(below, n.attr("steps"))]
    if n.op == "broadcast":
        lead = len(n.shape) - len(src)
        return [0] * lead + [0 if d == 1 and e != 1 else s for d, e, s in zip(src, n.shape[lead:], below)]
    return _reshape_strides(src, below, n.shape)


def _reshape_strides(shape, strides, new):
    """numpy's no-copy reshape: the strides of `new` over an array of (shape, strides), or None."""
    if 0 in shape:
        return [0] * len(new)
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    od, ost = [d for d, _ in old], [s for _, s in old]
    out = [0] * len(new)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(new) and oi < len(od):
        np_, op = new[ni], od[oi]
        while np_ != op:
            if np_ < op:
                np_ *= new[nj]
                nj += 1
            else:
                op *= od[oj]
                oj += 1
        if any(ost[k] != od[k + 1] * ost[k + 1] for k in range(oi, oj - 1)):
            return None
        out[nj - 1] = ost[oj - 1]
        for k in range(nj - 1, ni, -1):
            out[k - 1] = out[k] * new[k]
        ni, oi = nj, oj
        nj, oj = nj + 1, oj + 1
    return out


def _inlined_tree(n: Node, mat: set):
    stack, seen = [n], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield m
        stack.extend(i for i in m.inputs if id(i) not in mat and i.op not in ("input", "const"))
