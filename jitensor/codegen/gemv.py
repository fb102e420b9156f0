"""The matrix-vector template: skinny matmuls that stream the matrix once, emitted as vector LLVM IR.

A matmul is skinny when one side has at most `GEMV_MAX` vectors (M or N; `DOT_MAX` for the dot form). Viewed from the matrix:
out[v, s] = sum_k mat[v, k] * vec[s, k], for the long output dimension v and the S skinny ones.
The GEMM template would pack the whole matrix into panels (one extra pass over the largest operand) and
waste most of its MR x NR register tile; here the matrix is read once, in its own layout:

- "dot" (mat contiguous along k: `A @ x` with row-major A, `x @ D.T`): R rows at a time, each row's dot
  products with the S vectors in independent vector accumulators (U per pair, so that an FMA never waits
  for the previous one), summed across lanes at the end. Vectors strided along k are first copied into a
  contiguous zero-padded scratch; contiguous ones are read in place.
- "axpy" (mat contiguous along v, output contiguous along v: `x @ A`, `A.T @ y`): each thread's contiguous
  part of the output, in chunks that stay in L2, accumulates the matrix's rows: out[s, chunk] +=
  vec[s, k] * mat[k, chunk], four k at a time (one load and store of the output per four FMAs), so that
  the matrix is read row by row.

The kernel's range [begin, end) counts row groups ("dot") or output blocks ("axpy") over all batches, so
the runtime splits it across threads. The fused elementwise epilogue (bias, activation) is applied to each
finished value (dot: scalars, axpy: vectors of the block) as the GEMM template does.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from .gemm import _Loop, _c, _min, lane_mask, masked_load, masked_store, template_function
from ..loop.templates import units
from .types import F32, I32, PTR, VOID, ty

# largest skinny side (M or N) given to this template, per form. Measured single-threaded against the GEMM
# template (which packs the matrix first) on 512^2 float64 and 2048^2 float32: axpy ran 1.5-9x faster for 2 to
# 8 vectors; dot 1.1-3.5x faster for 2 to 4, even at 6, and from 0.4x to 2.8x at 8 (one row per group).
GEMV_MAX = 8
DOT_MAX = 4


def gemv_params(gemm: dict) -> dict | None:
    """Parameters of the matrix-vector template for a matmul given the GEMM template's parameters, or None
    when neither side is skinny or no layout lets the matrix be streamed with vector loads."""
    M, N = gemm["M"], gemm["N"]
    a_buf, a_off, sa_i, sa_k = gemm["A"]
    b_buf, b_off, sb_k, sb_j = gemm["B"]
    options = []
    if N <= GEMV_MAX:  # A @ (a few columns): v = i, s = j
        options.append(dict(V=M, S=N, vvar="i", svar="j", mat=(a_buf, a_off, sa_i, sa_k),
                            vec=(b_buf, b_off, sb_j, sb_k), cv=N, cs=1,
                            batch=tuple((e, sa, sb, sc) for e, sa, sb, sc in gemm["batch"])))
    if M <= GEMV_MAX:  # (a few rows) @ B: v = j, s = i
        options.append(dict(V=N, S=M, vvar="j", svar="i", mat=(b_buf, b_off, sb_j, sb_k),
                            vec=(a_buf, a_off, sa_i, sa_k), cv=1, cs=N,
                            batch=tuple((e, sb, sa, sc) for e, sa, sb, sc in gemm["batch"])))
    for o in sorted(options, key=lambda o: -o["V"]):  # stream the larger side
        _, _, mv, mk = o["mat"]
        if (mk == 1 or o["V"] == 1) and o["S"] <= DOT_MAX:
            form = "dot"
        elif mv == 1 and o["cv"] == 1:  # (cv == 1 whenever S == 1)
            form = "axpy"
        else:
            continue
        return dict(o, form=form, K=gemm["K"], dtype=gemm["dtype"], C=gemm["C"])
    return None


def emit_gemv(m: ir.Module, kernel, target) -> ir.Function:
    p = dict(kernel.template[1])
    dt = np.dtype(p["dtype"])
    T = ty(dt)
    item = dt.itemsize
    W = (target.vector_bits // 8) // item
    V = ir.VectorType(T, W)
    fn, ptr, begin, end, b = template_function(m, kernel)
    em = None
    if p.get("epilogue") is not None:
        from .llvm import FnEmitter
        em = FnEmitter.attach(m, kernel, fn, b, ptr)
    g = _Gen(m, fn, b, p, T, V, W, item, ptr, em)
    unit = units(kernel.template, target.vector_bits) // max(1, int(np.prod([bt[0] for bt in p["batch"]],
                                                                           dtype=np.int64)))
    first_bt = b.udiv(begin, _c(unit))
    last_bt = b.add(b.udiv(b.sub(end, _c(1)), _c(unit)), _c(1))
    g.setup()
    with _Loop(b, fn, first_bt, last_bt, name="bt") as bt:
        offs = g.batch_offsets(bt)
        base = b.mul(bt, _c(unit))
        u0 = b.sub(b.select(b.icmp_signed(">", begin, base), begin, base), base)
        u1 = b.sub(_min(b, end, b.add(base, _c(unit))), base)
        if p["form"] == "dot":
            g.dot(u0, u1, offs)
        else:
            g.axpy(u0, u1, offs)
    g.finish()
    b.ret_void()
    return fn


class _Gen:
    def __init__(self, m, fn, b, p, T, V, W, item, ptr, em):
        self.m, self.fn, self.b, self.p, self.T, self.V, self.W, self.item, self.ptr, self.em = (
            m, fn, b, p, T, V, W, item, ptr, em)
        self.zero = ir.Constant(V, [0.0] * W)
        self.fma = self._intr(f"llvm.fma.v{W}{self._sfx}", ir.FunctionType(V, [V, V, V]))
        self.mload, self.mstore = masked_load(m, V, W, T), masked_store(m, V, W, T)

    @property
    def _sfx(self):
        return "f32" if self.T == F32 else "f64"

    def _intr(self, name, fty):
        return self.m.globals.get(name) or ir.Function(self.m, fty, name=name)

    def gep(self, base, idx):
        return self.b.gep(base, [idx], inbounds=True, source_etype=self.T)

    def splat(self, x):
        b, W = self.b, self.W
        u = ir.Constant(self.V, ir.Undefined)
        return b.shuffle_vector(b.insert_element(u, x, ir.Constant(I32, 0)), u, ir.Constant(ir.VectorType(I32, W), [0] * W))

    def setup(self):
        p, b = self.p, self.b
        self.scratch = None
        if p["form"] == "dot" and p["vec"][3] != 1:  # strided vectors: copied contiguous, zero-padded
            self.kp = -(-p["K"] // self.W) * self.W
            malloc = self.m.globals.get("malloc") or ir.Function(self.m, ir.FunctionType(PTR, [ir.IntType(64)]), name="malloc")
            self.scratch = b.call(malloc, [_c(p["S"] * self.kp * self.item + 64)])

    def finish(self):
        if self.scratch is not None:
            free = self.m.globals.get("free") or ir.Function(self.m, ir.FunctionType(VOID, [PTR]), name="free")
            self.b.call(free, [self.scratch])

    def batch_offsets(self, bt):
        """(mat, vec, C) element offsets of batch `bt`; binds the batch loop variables for the epilogue."""
        b = self.b
        offs = [_c(0), _c(0), _c(0)]
        rem = bt
        batch = self.p["batch"]
        bvars = self.p.get("bvars", ())
        for d in range(len(batch) - 1, -1, -1):
            ext, sm, sx, sc = batch[d]
            i = b.urem(rem, _c(ext)) if d else rem
            rem = b.udiv(rem, _c(ext)) if d else rem
            if self.em is not None and d < len(bvars):
                self.em.vars[bvars[d]] = i
            offs = [b.add(o, b.mul(i, _c(s))) for o, s in zip(offs, (sm, sx, sc))]
        return offs

    def epilogue(self, val, v, s, vec_lanes=None, clamp=None):
        """Apply the fused elementwise epilogue to `val` (C at v, s; a vector along v when vec_lanes)."""
        em = self.em
        if em is None:
            return val
        p, b = self.p, self.b
        expr = p["epilogue"]
        if clamp is not None:  # lanes past the edge read in bounds (their results are masked off)
            expr = _clamp(expr, p["vvar"], clamp)
        em.vars[p["svar"]] = s
        em.vars[p["vvar"]] = v
        em.bound["mm"] = val
        em.vec = None if vec_lanes is None else (p["vvar"], vec_lanes, v)
        try:
            out = em.expr(expr, {})
        finally:
            em.vec = None
        if vec_lanes is not None:
            (out,) = em.same_lanes([out, val])[:1]
        return out

    # -- dot: rows of the matrix against the packed vectors
    def dot(self, u0, u1, offs):
        p, b, W, fn = self.p, self.b, self.W, self.fn
        S, K, Vn = p["S"], p["K"], p["V"]
        R, U = p["rows"], p["accs"]  # the schedule's knobs (loop/templates.py)
        om, ox, oc = offs
        m_buf, m_off, mv, mk = p["mat"]
        x_buf, x_off, xs, xk = p["vec"]
        M, X, C = self.ptr[m_buf], self.ptr[x_buf], self.ptr[p["C"]]
        if self.scratch is None:  # contiguous vectors are read in place (the k tail masked on both sides)
            xbase, xrow = X, [b.add(b.add(_c(x_off), ox), _c(s * xs)) for s in range(S)]
        else:  # pack the vectors of this batch (once per batch and range)
            kp = self.kp
            xbase, xrow = self.scratch, [_c(s * kp) for s in range(S)]
            with _Loop(b, fn, _c(0), _c(S), name="ps") as s:
                src0 = b.add(b.add(_c(x_off), ox), b.mul(s, _c(xs)))
                dst0 = b.mul(s, _c(kp))
                with _Loop(b, fn, _c(0), _c(kp), name="pk") as k:
                    inb = b.icmp_signed("<", k, _c(K))
                    v = b.load(self.gep(X, b.add(src0, b.mul(b.select(inb, k, _c(0)), _c(xk)))), typ=self.T,
                               align=self.item)
                    b.store(b.select(inb, v, ir.Constant(self.T, 0.0)), self.gep(self.scratch, b.add(dst0, k)),
                            align=self.item)
        kfull = K // W * W
        kmain = K // (U * W) * (U * W)
        with _Loop(b, fn, u0, u1, name="rg") as g:
            r0 = b.mul(g, _c(R))
            nr = _min(b, _c(R), b.sub(_c(Vn), r0))
            # rows past the edge re-read the group's first row (in bounds); their results are dropped
            rows = [b.add(b.add(_c(m_off), om), b.mul(
                r0 if r == 0 else b.select(b.icmp_signed("<", _c(r), nr), b.add(r0, _c(r)), r0), _c(mv)))
                for r in range(R)]
            accs = [[[self.zero] * U for _ in range(S)] for _ in range(R)]

            def step(k, accs, uu, mask=None):
                xmask = mask if self.scratch is None else None  # (the scratch is zero-padded)
                xv = [[self._vload(xbase, b.add(xrow[s], b.add(k, _c(u * W))), xmask) for u in range(uu)]
                      for s in range(S)]
                out = [[list(a) for a in ra] for ra in accs]
                for r in range(R):
                    for u in range(uu):
                        kk = b.add(k, _c(u * W))
                        if mk == 1:
                            mvv = self._vload(M, b.add(rows[r], kk), mask)
                        else:  # V == 1 with a strided row: gather (a single dot product)
                            mvv = self._gather(M, rows[r], kk, mk, mask)
                        for s in range(S):
                            out[r][s][u] = b.call(self.fma, [mvv, xv[s][u], accs[r][s][u]])
                return out

            accs = self._kloop(_c(0), _c(kmain), U * W, accs, lambda k, a: step(k, a, U))
            accs = self._kloop(_c(kmain), _c(kfull), W, accs, lambda k, a: step(k, a, 1))
            if kfull < K:
                accs = step(_c(kfull), accs, 1, mask=lane_mask(b, W, _c(K - kfull)))
            for r in range(R):
                for s in range(S):
                    acc = accs[r][s][0]
                    for u in range(1, U):
                        acc = b.fadd(acc, accs[r][s][u])
                    val = self._hsum(acc)
                    i = b.add(r0, _c(r))
                    with b.if_then(b.icmp_signed("<", _c(r), nr)):
                        val = self.epilogue(val, i, _c(s))
                        dst = b.add(oc, b.add(b.mul(i, _c(p["cv"])), _c(s * p["cs"])))
                        b.store(val, self.gep(C, dst), align=self.item)

    def _kloop(self, start, stop, step, accs, body):
        """for k in [start, stop) step `step` (constant bounds) carrying the accumulators in phis."""
        b, fn = self.b, self.fn
        if stop.constant <= start.constant:
            return accs
        pre = b.block
        blk = fn.append_basic_block("dk.body")
        done = fn.append_basic_block("dk.done")
        b.branch(blk)
        b.position_at_end(blk)
        k = b.phi(ir.IntType(64), name="dk")
        k.add_incoming(start, pre)
        phis = [[[b.phi(self.V) for _ in ru] for ru in ra] for ra in accs]
        for pr, ar in zip(phis, accs):
            for ps, as_ in zip(pr, ar):
                for ph, a in zip(ps, as_):
                    ph.add_incoming(a, pre)
        new = body(k, phis)
        k1 = b.add(k, _c(step))
        k.add_incoming(k1, b.block)
        for pr, nr in zip(phis, new):
            for ps, ns in zip(pr, nr):
                for ph, n in zip(ps, ns):
                    ph.add_incoming(n, b.block)
        b.cbranch(b.icmp_signed("<", k1, stop), blk, done)
        b.position_at_end(done)
        return new

    def _vload(self, base, idx, mask):
        if mask is None:
            return self.b.load(self.b.gep(base, [idx], inbounds=True, source_etype=self.T), typ=self.V, align=self.item)
        return self.b.call(self.mload, [self.b.gep(base, [idx], source_etype=self.T), ir.Constant(I32, self.item), mask,
                                        self.zero])

    def _gather(self, base, row, k, stride, mask):
        b = self.b
        out = self.zero
        for l in range(self.W):
            kl = b.add(k, _c(l))
            if mask is not None:  # lanes past K read element 0 of the row (in bounds) and are zeroed
                ok = b.extract_element(mask, ir.Constant(I32, l))
                kl = b.select(ok, kl, _c(0))
            v = b.load(self.gep(base, b.add(row, b.mul(kl, _c(stride)))), typ=self.T, align=self.item)
            if mask is not None:
                v = b.select(ok, v, ir.Constant(self.T, 0.0))
            out = b.insert_element(out, v, ir.Constant(I32, l))
        return out

    def _hsum(self, v):
        """Sum of a vector's lanes by halving (a tree, like the template's accumulators)."""
        b, n = self.b, self.W
        while n > 1:
            h = n // 2
            lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, h), list(range(h))))
            hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, h), list(range(h, n))))
            v, n = b.fadd(lo, hi), h
        return b.extract_element(v, ir.Constant(I32, 0))

    # -- axpy: blocks of the output accumulate rows of the matrix
    def axpy(self, u0, u1, offs):
        p, b, W, fn = self.p, self.b, self.W, self.fn
        S, K, Vn = p["S"], p["K"], p["V"]
        NB = p["block"] * W  # the schedule's knobs (loop/templates.py)
        # a thread's units are one contiguous range of the output: stream each row of the matrix over it
        # (a block per pass over all rows would touch a new page per row), in chunks whose output stays in L2
        CB = p["chunk"] * NB
        KU = p["ku"]
        om, ox, oc = offs
        m_buf, m_off, mv, mk = p["mat"]
        x_buf, x_off, xs, xk = p["vec"]
        M, X, C = self.ptr[m_buf], self.ptr[x_buf], self.ptr[p["C"]]
        cs = p["cs"]
        kmain = K // KU * KU
        vend = _min(b, b.mul(u1, _c(NB)), _c(Vn))
        with _Loop(b, fn, b.mul(u0, _c(NB)), vend, CB, name="blk") as v0:
            nv = _min(b, _c(CB), b.sub(vend, v0))
            nfull = b.udiv(nv, _c(W))
            tail = b.sub(nv, b.mul(nfull, _c(W)))
            tmask = lane_mask(b, W, tail)
            crow = [b.add(b.add(oc, v0), _c(s * cs)) for s in range(S)]
            mrow0 = b.add(b.add(_c(m_off), om), v0)
            xrow = [b.add(b.add(_c(x_off), ox), _c(s * xs)) for s in range(S)]

            def vectors(body):
                """body(offset in block, mask or None) for every whole vector, then the masked tail."""
                with _Loop(b, fn, _c(0), nfull, name="vv") as u:
                    body(b.mul(u, _c(W)), None)
                with b.if_then(b.icmp_signed(">", tail, _c(0))):
                    body(b.mul(nfull, _c(W)), tmask)

            def ld(base, idx, mask):
                return self._vload(base, idx, mask)

            def st(val, base, idx, mask):
                if mask is None:
                    b.store(val, b.gep(base, [idx], inbounds=True, source_etype=self.T), align=self.item)
                else:
                    b.call(self.mstore, [val, b.gep(base, [idx], source_etype=self.T), ir.Constant(I32, self.item), mask])

            vectors(lambda off, mask: [st(self.zero, C, b.add(crow[s], off), mask) for s in range(S)])

            def update(k, nk):
                xsv = [[self.splat(b.load(self.gep(X, b.add(xrow[s], b.mul(b.add(k, _c(t)), _c(xk)))), typ=self.T,
                                          align=self.item)) for t in range(nk)] for s in range(S)]
                mrows = [b.add(mrow0, b.mul(b.add(k, _c(t)), _c(mk))) for t in range(nk)]

                def body(off, mask):
                    a = [ld(M, b.add(mrows[t], off), mask) for t in range(nk)]
                    for s in range(S):
                        c = ld(C, b.add(crow[s], off), mask)
                        # the k steps summed in pairs before they meet the running sum: it takes a quarter
                        # of the roundings at its (large) magnitude (a chain of FMAs into it: 3x numpy's
                        # error on 4096^2 float32)
                        part = [b.fmul(xsv[s][t], a[t]) for t in range(0, nk, 2)]
                        part = [b.call(self.fma, [xsv[s][t + 1], a[t + 1], part[t // 2]]) if t + 1 < nk
                                else part[t // 2] for t in range(0, nk, 2)]
                        while len(part) > 1:
                            part = [b.fadd(part[i], part[i + 1]) if i + 1 < len(part) else part[i]
                                    for i in range(0, len(part), 2)]
                        st(b.fadd(c, part[0]), C, b.add(crow[s], off), mask)
                vectors(body)

            if kmain:
                with _Loop(b, fn, _c(0), _c(kmain), KU, name="kk") as k:
                    update(k, KU)
            if kmain < K:
                with _Loop(b, fn, _c(kmain), _c(K), name="kr") as k:
                    update(k, 1)
            if self.em is not None:
                def epi(off, mask):
                    for s in range(S):
                        c = ld(C, b.add(crow[s], off), mask)
                        v = b.add(v0, off)
                        out = self.epilogue(c, v, _c(s), W, clamp=None if mask is None else Vn - 1)
                        st(out, C, b.add(crow[s], off), mask)
                vectors(epi)


def _clamp(e, var, hi):
    from ..loop import ir as L
    if isinstance(e, L.Var) and e.name == var:
        return L.Idx("min", e, L.c64(hi))
    if isinstance(e, L.Load):
        return L.Load(e.buf, _clamp(e.index, var, hi), e.dtype)
    if isinstance(e, L.Idx):
        return L.Idx(e.op, _clamp(e.a, var, hi), _clamp(e.b, var, hi))
    if isinstance(e, L.Call):
        return L.Call(e.op, tuple(_clamp(a, var, hi) for a in e.args), e.dtype)
    if isinstance(e, L.Cast):
        return L.Cast(_clamp(e.x, var, hi), e.dtype)
    return e
