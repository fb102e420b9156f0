"""The matmul template: packed-B, register-blocked GEMM emitted directly as vector LLVM IR.

C[b] = A[b] @ B[b] for float32/float64. The kernel's range [begin, end) counts row tiles of MR
rows (or column panels) over all batches, so the runtime can split it across threads. Per batch and per
(NC columns x KC depth) block, B is packed into zero-padded panels of NR = NV vectors, then each
MR x NR tile of C is computed in MR*NV vector registers with FMAs and added to (or stored into) C.
MR, NV, KC, NC and the split are knobs the schedule sets (loop/templates.py), not decided here.
All strides are compile-time constants (shapes and layouts are specialized), so A and B may be
transposed or strided views without a copy.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from .types import F32, I32, I64, PTR, VOID, ty

def _c(v):
    return ir.Constant(I64, int(v))


class _Loop:
    """for iv in [start, stop) step `step` with a bottom test; `with` yields the induction variable."""

    def __init__(self, b: ir.IRBuilder, fn, start, stop, step=1, name="l"):
        self.b, self.fn, self.start, self.stop, self.step, self.name = b, fn, start, stop, step, name

    def __enter__(self):
        b = self.b
        self.pre = b.block
        self.body = self.fn.append_basic_block(f"{self.name}.body")
        self.exit = self.fn.append_basic_block(f"{self.name}.exit")
        b.cbranch(b.icmp_signed("<", self.start, self.stop), self.body, self.exit)
        b.position_at_end(self.body)
        self.iv = b.phi(I64, name=self.name)
        self.iv.add_incoming(self.start, self.pre)
        return self.iv

    def __exit__(self, *exc):
        b = self.b
        nxt = b.add(self.iv, _c(self.step))
        self.iv.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, self.stop), self.body, self.exit)
        b.position_at_end(self.exit)


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def template_function(m: ir.Module, kernel):
    """A template kernel's function, with the signature of every kernel: (error word, buffers..., begin,
    end), buffers `noalias`. Returns (function, buffer name -> pointer, begin, end, builder at its entry)."""
    names = [bf.name for bf in kernel.buffers]
    fn = ir.Function(m, ir.FunctionType(VOID, [PTR] * (len(names) + 1) + [I64, I64]), name=kernel.name)
    fn.linkage = "internal"
    for a in fn.args[:-2]:
        a.add_attribute("noalias")
    ptr = dict(zip(names, fn.args[1:]))
    begin, end = fn.args[-2:]
    return fn, ptr, begin, end, ir.IRBuilder(fn.append_basic_block("entry"))


def emit_gemm(m: ir.Module, kernel, target) -> ir.Function:
    p = dict(kernel.template[1])
    dt = np.dtype(p["dtype"])
    T = ty(dt)
    W = (target.vector_bits // 8) // dt.itemsize
    V = ir.VectorType(T, W)
    # the blocking is the schedule's (loop/templates.py knobs): an MR x NV-vector register tile, KC x NC blocks of B
    MR, NV, KC, split_ = p["mr"], p["nv"], p["kc"], p["split"]
    NR = NV * W
    NC = p["nc"] * NR
    M, N, K = p["M"], p["N"], p["K"]
    TM = -(-M // MR)
    a_buf, a_off, sa_i, sa_k = p["A"]
    b_buf, b_off, sb_k, sb_j = p["B"]
    c_buf = p["C"]
    batch = p["batch"]  # [(extent, sa, sb, sc)]

    fn, ptr, begin, end, b = template_function(m, kernel)

    malloc = m.globals.get("malloc") or ir.Function(m, ir.FunctionType(PTR, [I64]), name="malloc")
    free = m.globals.get("free") or ir.Function(m, ir.FunctionType(VOID, [PTR]), name="free")
    fma = m.globals.get(f"llvm.fma.v{W}{'f32' if T == F32 else 'f64'}") or ir.Function(
        m, ir.FunctionType(V, [V, V, V]), name=f"llvm.fma.v{W}{'f32' if T == F32 else 'f64'}")
    item = dt.itemsize
    bp = b.call(malloc, [_c(KC * NC * item + 64)])

    def gep(base, idx):
        return b.gep(base, [idx], inbounds=True, source_etype=T)

    def batch_offsets(bt):
        offs = [_c(0), _c(0), _c(0)]
        rem = bt
        idx = [None] * len(batch)
        for d in range(len(batch) - 1, -1, -1):
            ext, sa, sb, sc = batch[d]
            i = b.urem(rem, _c(ext)) if d else rem
            rem = b.udiv(rem, _c(ext)) if d else rem
            idx[d] = i
            offs = [b.add(o, b.mul(i, _c(s))) for o, s in zip(offs, (sa, sb, sc))]
        return offs, idx

    epilogue = p.get("epilogue")
    em = None
    if epilogue is not None:
        from .llvm import FnEmitter
        em = FnEmitter.attach(m, kernel, fn, b, ptr)
        bvar_names = p["bvars"]

    zero = ir.Constant(V, [0.0] * W)
    undef = ir.Constant(V, ir.Undefined)
    splat_mask = ir.Constant(ir.VectorType(I32, W), [0] * W)
    # the kernel's range counts units over all batches (templates.units): row tiles (split "rows") or column
    # panels ("cols", so that each thread packs only its own part of B)
    NP = -(-N // NR)
    unit = TM if split_ == "rows" else NP
    first_bt = b.udiv(begin, _c(unit))
    last_bt = b.add(b.udiv(b.sub(end, _c(1)), _c(unit)), _c(1))
    with _Loop(b, fn, first_bt, last_bt, name="bt") as bt:
        (oa, ob, oc), bidx = batch_offsets(bt)
        if em is not None:
            for name, v in zip(bvar_names, bidx):
                em.vars[name] = v
        u0 = b.select(b.icmp_signed(">", begin, b.mul(bt, _c(unit))), begin, b.mul(bt, _c(unit)))
        u1 = _min(b, end, b.mul(b.add(bt, _c(1)), _c(unit)))
        u0, u1 = b.sub(u0, b.mul(bt, _c(unit))), b.sub(u1, b.mul(bt, _c(unit)))
        if split_ == "rows":
            t0, t1, jlo, jhi = u0, u1, _c(0), _c(N)
        else:
            t0, t1 = _c(0), _c(TM)
            jlo, jhi = b.mul(u0, _c(NR)), _min(b, b.mul(u1, _c(NR)), _c(N))
        with _Loop(b, fn, jlo, jhi, NC, name="jc") as jc:
            nc = _min(b, _c(NC), b.sub(jhi, jc))
            npan = b.udiv(b.add(nc, _c(NR - 1)), _c(NR))
            with _Loop(b, fn, _c(0), _c(K), KC, name="pc") as pc:
                kc = _min(b, _c(KC), b.sub(_c(K), pc))
                # pack B[pc:pc+kc, jc:jc+nc] into panels [p][k][NR], zero-padding columns past N
                with _Loop(b, fn, _c(0), npan, name="pp") as pp:
                    if sb_j == 1:  # contiguous rows of B: masked vector loads (lanes past N read nothing)
                        js = [b.add(b.add(jc, b.mul(pp, _c(NR))), _c(v * W)) for v in range(NV)]
                        masks = [lane_mask(b, W, b.sub(_c(N), j)) for j in js]  # per panel, not per row
                    with _Loop(b, fn, _c(0), kc, name="pk") as pk:
                        row = b.add(b.add(_c(b_off), ob), b.mul(b.add(pc, pk), _c(sb_k)))
                        dst = b.mul(b.add(b.mul(pp, kc), pk), _c(NR))
                        if sb_j == 1:
                            for v in range(NV):
                                val = b.call(masked_load(fn.module, V, W, T),
                                             [b.gep(ptr[b_buf], [b.add(row, js[v])], source_etype=T),
                                              ir.Constant(I32, item), masks[v], zero])
                                b.store(val, gep(bp, b.add(dst, _c(v * W))), align=item)
                        else:
                            with _Loop(b, fn, _c(0), _c(NR), name="pcol") as col:
                                j = b.add(b.add(jc, b.mul(pp, _c(NR))), col)
                                inb = b.icmp_signed("<", j, _c(N))
                                src = b.add(row, b.mul(b.select(inb, j, _c(0)), _c(sb_j)))
                                v = b.load(gep(ptr[b_buf], src), typ=T, align=item)
                                b.store(b.select(inb, v, ir.Constant(T, 0.0)), gep(bp, b.add(dst, col)), align=item)
                first = b.icmp_signed("==", pc, _c(0))
                last = b.icmp_signed(">=", b.add(pc, _c(KC)), _c(K))
                with _Loop(b, fn, t0, t1, name="t") as t:
                    i0 = b.mul(t, _c(MR))
                    mr = _min(b, _c(MR), b.sub(_c(M), i0))
                    with _Loop(b, fn, _c(0), npan, name="jp") as jp:
                        j0 = b.add(jc, b.mul(jp, _c(NR)))
                        ncols = _min(b, _c(NR), b.sub(_c(N), j0))
                        panel = b.mul(b.mul(jp, kc), _c(NR))
                        _micro(b, fn, fma, V, W, T, item, ptr[a_buf], bp, ptr[c_buf], splat_mask, undef, zero,
                               a_row=lambda r: b.add(b.add(_c(a_off), oa), b.mul(b.add(i0, _c(r)), _c(sa_i))),
                               a_k=lambda k: b.mul(b.add(pc, k), _c(sa_k)), kc=kc, panel=panel, mr=mr,
                               c0=b.add(b.add(oc, b.mul(i0, _c(N))), j0), ldc=N,
                               ncols=ncols, first=first, NR=NR, MR=MR, NV=NV,
                               epi=None if em is None else (em, epilogue, last, i0, j0, M, N))
    b.call(free, [bp])
    b.ret_void()
    return fn


def _micro(b, fn, fma, V, W, T, item, A, bp, C, splat_mask, undef, zero, *, a_row, a_k, kc, panel, mr, c0,
           ldc, ncols, first, NR, MR, NV, epi):
    """One MR x NR tile: MR*NV vector accumulators over kc steps; rows past `mr` are computed but not written."""
    # rows past the matrix edge re-read row 0 of the tile (always in bounds); their results are dropped
    arow = [a_row(0)] + [b.select(b.icmp_signed("<", _c(r), mr), a_row(r), a_row(0)) for r in range(1, MR)]

    def c_at(r):
        return b.add(c0, _c(r * ldc))
    pre = b.block
    body = fn.append_basic_block("uk.body")
    done = fn.append_basic_block("uk.done")
    b.cbranch(b.icmp_signed("<", _c(0), kc), body, done)
    b.position_at_end(body)
    k = b.phi(I64, name="uk")
    k.add_incoming(_c(0), pre)
    accs = []
    for r in range(MR):
        row = []
        for v in range(NV):
            ph = b.phi(V)
            ph.add_incoming(zero, pre)
            row.append(ph)
        accs.append(row)
    boff = b.add(panel, b.mul(k, _c(NR)))
    bv = [b.load(b.gep(bp, [b.add(boff, _c(v * W))], inbounds=True, source_etype=T), typ=V, align=item)
          for v in range(NV)]
    ak = a_k(k)
    new = []
    for r in range(MR):
        a = b.load(b.gep(A, [b.add(arow[r], ak)], inbounds=True, source_etype=T), typ=T, align=item)
        av = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(I32, 0)), undef, splat_mask)
        new.append([b.call(fma, [av, bv[v], accs[r][v]]) for v in range(NV)])
    k1 = b.add(k, _c(1))
    k.add_incoming(k1, b.block)
    for r in range(MR):
        for v in range(NV):
            accs[r][v].add_incoming(new[r][v], b.block)
    b.cbranch(b.icmp_signed("<", k1, kc), body, done)
    b.position_at_end(done)
    res = []
    for r in range(MR):
        row = []
        for v in range(NV):
            ph = b.phi(V)
            ph.add_incoming(zero, pre)
            ph.add_incoming(new[r][v], body)
            row.append(ph)
        res.append(row)
    # write back: full tiles with vector ops, edge tiles through the spill area
    full = b.and_(b.icmp_signed("==", ncols, _c(NR)), b.icmp_signed("==", mr, _c(MR)))
    with b.if_else(full) as (then, other):
        with then:
            for r in range(MR):
                for v in range(NV):
                    addr = b.gep(C, [b.add(c_at(r), _c(v * W))], inbounds=True, source_etype=T)
                    old = b.load(addr, typ=V, align=item)
                    val = b.select(first, res[r][v], b.fadd(old, res[r][v]))
                    b.store(_epilogue(b, epi, val, r, v, W, edge=False), addr, align=item)
        with other:  # edge tile: masked vector loads/stores (masked-off lanes are never touched)
            mt = ir.VectorType(ir.IntType(1), W)
            mload, mstore = masked_load(fn.module, V, W, T), masked_store(fn.module, V, W, T)
            for r in range(MR):
                for v in range(NV):
                    mask = lane_mask(b, W, b.sub(ncols, _c(v * W)))
                    mask = b.select(b.icmp_signed("<", _c(r), mr), mask, ir.Constant(mt, [0] * W))
                    addr = b.gep(C, [b.add(c_at(r), _c(v * W))], source_etype=T)
                    old = b.call(mload, [addr, ir.Constant(I32, item), mask, zero])
                    val = b.select(first, res[r][v], b.fadd(old, res[r][v]))
                    val = _epilogue(b, epi, val, r, v, W, edge=True)
                    b.call(mstore, [val, addr, ir.Constant(I32, item), mask])


def _intrinsic(m, name, fty):
    return m.globals.get(name) or ir.Function(m, fty, name=name)


def masked_load(m, V, W, T):
    mt = ir.VectorType(ir.IntType(1), W)
    return _intrinsic(m, f"llvm.masked.load.v{W}{'f32' if T == F32 else 'f64'}.p0", ir.FunctionType(V, [PTR, I32, mt, V]))


def masked_store(m, V, W, T):
    mt = ir.VectorType(ir.IntType(1), W)
    return _intrinsic(m, f"llvm.masked.store.v{W}{'f32' if T == F32 else 'f64'}.p0",
                      ir.FunctionType(VOID, [V, PTR, I32, mt]))


def lane_mask(b, W, lim):
    """Lanes 0..W-1 that are below `lim` (an i64, may be <= 0 or >= W)."""
    vt = ir.VectorType(I64, W)
    limv = b.shuffle_vector(b.insert_element(ir.Constant(vt, ir.Undefined), lim, ir.Constant(I32, 0)),
                            ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, W), [0] * W))
    return b.icmp_signed("<", ir.Constant(vt, list(range(W))), limv)


def _epilogue(b, epi, val, r, v, W, edge):
    """Apply the fused elementwise epilogue to a finished vector of C (rows i0+r, columns j0+v*W...): the
    kernel's loop-IR expression, emitted in vector mode with its matmul operand bound to `val`. Edge tiles
    clamp indices so that lanes past the matrix read in bounds (their results are masked off)."""
    if epi is None:
        return val
    em, expr, last, i0, j0, M, N = epi
    i = b.add(i0, _c(r))
    if edge:
        i = _min(b, i, _c(M - 1))
        expr = _clamp_j(expr, N - 1)
    em.vars["i"] = i
    em.vars["j"] = b.add(j0, _c(v * W))
    em.bound["mm"] = val
    em.vec = ("j", W, em.vars["j"])
    try:
        out = em.expr(expr, {})
    finally:
        em.vec = None
    (out,) = em.same_lanes([out, val])[:1]
    return b.select(last, out, val)


def _clamp_j(e, hi):
    from ..loop import ir as L
    if isinstance(e, L.Var) and e.name == "j":
        return L.Idx("min", e, L.c64(hi))
    if isinstance(e, L.Load):
        return L.Load(e.buf, _clamp_j(e.index, hi), e.dtype)
    if isinstance(e, L.Idx):
        return L.Idx(e.op, _clamp_j(e.a, hi), _clamp_j(e.b, hi))
    if isinstance(e, L.Call):
        return L.Call(e.op, tuple(_clamp_j(a, hi) for a in e.args), e.dtype)
    if isinstance(e, L.Cast):
        return L.Cast(_clamp_j(e.x, hi), e.dtype)
    return e
