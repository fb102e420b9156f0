"""Loop IR -> LLVM IR (llvmlite.ir) -> object code for the host, loaded into an MCJIT engine.

Every elementwise `Call` is emitted with numpy's semantics for its dtype: integer division by
zero gives 0, shifts past the bit width give 0 (or -1), float->int casts of NaN/overflow give
the x86 "integer indefinite" value as numpy does, max/min propagate NaN. Nothing relies on
fast-math assumptions; only reductions carry `reassoc` so LLVM may vectorize them.

A program is one module: one internal function per kernel (buffers as `noalias` arguments) and
an exported `jit_entry(ptr table)` that loads the buffer pointers and calls the kernels in
order. Compilation always goes through object code, so the disk cache can store exactly what
runs.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ..errors import CompileError
from ..loop import ir as L
# loading object code lives with the runtime (a disk hit needs it without the code generator)
from ..runtime.loader import LoadedCode, _lock, binding, load_object, target_machine  # noqa: F401
from ..loop.templates import parallel_extent
from .semantics import emit_call, emit_cast
from .types import F32, I1, I8, I32, I64, PTR, VOID, _suffix, mem_ty, ty


class FnEmitter:
    """Emits one kernel function."""

    def __init__(self, module: ir.Module, kernel: L.Kernel):
        self.m = module
        self.k = kernel
        # (err, buffers..., begin, end): [begin, end) bounds the outermost loop when it is parallel
        args = [PTR] * (len(kernel.buffers) + 1) + [I64, I64]
        self.fn = ir.Function(module, ir.FunctionType(VOID, args), name=kernel.name)
        self.fn.linkage = "internal"
        for a in self.fn.args[:-2]:
            a.add_attribute("noalias")
        self.entry = self.fn.append_basic_block("entry")
        self._setup(ir.IRBuilder(self.entry), dict(zip([b.name for b in kernel.buffers], self.fn.args[1:])))

    @classmethod
    def attach(cls, module, kernel, fn, builder, ptr):
        """An emitter for expressions inside a function built elsewhere (templates' epilogues)."""
        self = cls.__new__(cls)
        self.m, self.k, self.fn = module, kernel, fn
        self.entry = fn.entry_basic_block
        self._setup(builder, ptr)
        return self

    def _setup(self, builder, ptr):
        kernel = self.k
        self.b = builder
        self.ptr = ptr
        self.bufdt = {b.name: b.dtype for b in kernel.buffers}
        self.errptr = self.fn.args[0]
        self.range = self.fn.args[-2:]
        self.bound: dict[str, ir.Value] = {}  # LocalRefs bound to values (a template's accumulator)
        self.vars: dict[str, ir.Value] = {}
        self.locals: dict[str, tuple] = {}
        self.vec = None          # (var, lanes, scalar iv) while emitting a vectorized loop body
        self.vlocals: dict[str, tuple] = {}  # vector accumulators of that loop
        self.scalar_index = False
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            self.err = self.b.alloca(I32, name="err")
            self.b.store(ir.Constant(I32, 0), self.err)

    def emit(self):
        self.stmt(self.k.body)
        b = self.b
        e = b.load(self.err)
        with b.if_then(b.icmp_unsigned("!=", e, ir.Constant(I32, 0)), likely=False):
            b.store(e, self.errptr)
        b.ret_void()
        return self.fn

    # -- statements
    def stmt(self, s: L.Stmt):
        b = self.b
        if isinstance(s, L.Seq):
            for x in s.body:
                self.stmt(x)
        elif isinstance(s, L.For):
            if s.extent <= 0:
                return
            if s.lanes > 1 and self.vec is None:
                self.vector_for(s)
                return
            if s.kind == "parallel":  # runs [begin, end) of its range; the runtime splits it across threads
                start, stop = self.range
                pre = b.block
                body = self.fn.append_basic_block(f"{s.var}.body")
                done = self.fn.append_basic_block(f"{s.var}.exit")
                b.cbranch(b.icmp_signed("<", start, stop), body, done)
            else:
                start, stop = ir.Constant(I64, 0), ir.Constant(I64, s.extent)
                pre = b.block
                body = self.fn.append_basic_block(f"{s.var}.body")
                done = None
                b.branch(body)
            b.position_at_end(body)
            iv = b.phi(I64, name=s.var)
            iv.add_incoming(start, pre)
            saved = self.vars.get(s.var)
            self.vars[s.var] = iv
            self.stmt(s.body)
            nxt = b.add(iv, ir.Constant(I64, 1), name=f"{s.var}.next", flags=("nuw", "nsw"))
            iv.add_incoming(nxt, b.block)
            done = done or self.fn.append_basic_block(f"{s.var}.exit")
            b.cbranch(b.icmp_signed("<", nxt, stop), body, done)
            b.position_at_end(done)
            self.vars[s.var] = saved
        elif isinstance(s, L.Store):
            memo = {}
            v = self.expr(s.value, memo)
            if self.vec is not None:
                self.vstore(s.buf, s.index, v)
            else:
                self.store(s.buf, self.expr(s.index, memo), v)
        elif isinstance(s, L.Decl):
            v = self.expr(s.init, {})
            slot = self.locals.get(s.name)
            if slot is None:
                with b.goto_block(self.entry):
                    b.position_at_start(self.entry)
                    ptr = b.alloca(ty(s.init.dtype), name=s.name)
                self.locals[s.name] = slot = (ptr, s.init.dtype)
            b.store(v, slot[0])
        elif isinstance(s, L.Assign):
            ptr, _ = self.vlocals.get(s.name) or self.locals[s.name]
            b.store(self.expr(s.value, {}), ptr)
        elif isinstance(s, L.Check):
            c = self.expr(s.cond, {})
            if isinstance(c.type, ir.VectorType):
                c = self.intrinsic("llvm.vector.reduce.or", I1, [c])
            old = b.load(self.err)
            b.store(b.select(c, ir.Constant(I32, s.code), old), self.err)
        elif isinstance(s, L.Prefetch):  # lane 0's address: one line per vector of 64 bytes
            idx = self.scalar_expr(s.index) if self.vec is not None else self.expr(s.index, {})
            addr = b.gep(self.ptr[s.buf], [idx], source_etype=mem_ty(self.bufdt[s.buf]))  # not inbounds: may point past
            fn = self.m.globals.get("llvm.prefetch.p0") or ir.Function(
                self.m, ir.FunctionType(VOID, [PTR, I32, I32, I32]), name="llvm.prefetch.p0")
            b.call(fn, [addr, ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])  # read, keep, data
        else:
            raise CompileError(f"cannot generate code for statement {s!r}")

    def addr(self, buf, index):
        return self.b.gep(self.ptr[buf], [index], inbounds=True, source_etype=mem_ty(self.bufdt[buf]))

    def store(self, buf, index, v):
        dt = self.bufdt[buf]
        if dt.kind == "b":
            v = self.b.zext(v, I8)
        self.b.store(v, self.addr(buf, index), align=np.dtype(dt).itemsize)

    # -- expressions
    def expr(self, e: L.Expr, memo: dict):
        v = memo.get(id(e))
        if v is None:
            v = memo[id(e)] = self._expr(e, memo)
        return v

    def _expr(self, e, memo):
        b = self.b
        if isinstance(e, L.Const):
            t = ty(e.dtype)
            if e.dtype.kind == "b":
                return ir.Constant(I1, int(bool(e.value)))
            if e.dtype.kind in "iu":
                return ir.Constant(t, int(e.value) & ((1 << t.width) - 1))
            return ir.Constant(t, float(e.value))
        if isinstance(e, L.Var):
            if self.vec is not None and e.name == self.vec[0] and not self.scalar_index:
                return self.iota()
            return self.vars[e.name]
        if isinstance(e, L.LocalRef):
            if e.name in self.bound:
                return self.bound[e.name]
            if e.name in self.vlocals:
                ptr, t = self.vlocals[e.name]
                return b.load(ptr, typ=t)
            ptr, dt = self.locals[e.name]
            return b.load(ptr, typ=ty(dt))
        if isinstance(e, L.Load):
            if self.vec is not None and not self.scalar_index:
                return self.vload(e, memo)
            dt = self.bufdt[e.buf]
            v = b.load(self.addr(e.buf, self.expr(e.index, memo)), typ=mem_ty(dt), align=np.dtype(dt).itemsize)
            return b.trunc(v, I1) if dt.kind == "b" else v
        if isinstance(e, L.Idx):
            x, y = self.same_lanes([self.expr(e.a, memo), self.expr(e.b, memo)])
            op = e.op
            if op == "add":
                return b.add(x, y)
            if op == "sub":
                return b.sub(x, y)
            if op == "mul":
                return b.mul(x, y)
            if op == "div":
                return b.udiv(x, y)
            if op == "mod":
                return b.urem(x, y)
            if op in ("min", "max"):
                return b.select(b.icmp_signed("<" if op == "min" else ">", x, y), x, y)
            if op in ("lt", "le", "ge", "eq"):
                return b.icmp_signed({"lt": "<", "le": "<=", "ge": ">=", "eq": "=="}[op], x, y)
            if op == "and":
                return b.and_(x, y)
            if op == "or":
                return b.or_(x, y)
        if isinstance(e, L.Cast):
            return emit_cast(self, self.expr(e.x, memo), e.x.dtype, e.dtype)
        if isinstance(e, L.Call):
            args = self.same_lanes([self.expr(a, memo) for a in e.args])
            r = emit_call(self, e.op, args, [a.dtype for a in e.args], e.dtype)
            return self.same_lanes([r, args[0]])[0] if args else r
        raise CompileError(f"cannot generate code for expression {e!r}")

    # -- vector mode
    def splat(self, v, n):
        b = self.b
        vt = ir.VectorType(v.type, n)
        if isinstance(v, ir.Constant):
            return ir.Constant(vt, v.constant)
        z = ir.Constant(ir.VectorType(I32, n), [0] * n)
        return b.shuffle_vector(b.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(I32, 0)),
                                ir.Constant(vt, ir.Undefined), z)

    def same_lanes(self, vals):
        n = max((v.type.count for v in vals if isinstance(v.type, ir.VectorType)), default=0)
        if not n:
            return vals
        return [v if isinstance(v.type, ir.VectorType) else self.splat(v, n) for v in vals]

    def iota(self):
        name, n, iv = self.vec
        return self.b.add(self.splat(iv, n), ir.Constant(ir.VectorType(I64, n), list(range(n))))

    def scalar_expr(self, e):
        """An index expression with the vector variable at its first lane (scalar)."""
        saved, self.scalar_index = self.scalar_index, True
        try:
            return self.expr(e, {})
        finally:
            self.scalar_index = saved

    def _coef(self, index):
        from ..loop.schedule import affine
        f = affine(index)
        return None if f is None else f.get(self.vec[0], 0)

    def vload(self, e: L.Load, memo):
        b = self.b
        dt = self.bufdt[e.buf]
        n = self.vec[1]
        c = self._coef(e.index)
        if c == 0:  # invariant in the vector loop: one scalar load
            v = b.load(self.addr(e.buf, self.scalar_expr(e.index)), typ=mem_ty(dt), align=dt.itemsize)
            return b.trunc(v, I1) if dt.kind == "b" else v
        if c == 1:  # contiguous: one vector load
            v = b.load(self.addr(e.buf, self.scalar_expr(e.index)), typ=ir.VectorType(mem_ty(dt), n),
                       align=dt.itemsize)
            return b.trunc(v, ir.VectorType(I1, n)) if dt.kind == "b" else v
        idx = self.expr(e.index, memo)  # gather, lane by lane
        if not isinstance(idx.type, ir.VectorType):  # non-affine but invariant in the vector loop
            v = b.load(self.addr(e.buf, idx), typ=mem_ty(dt), align=dt.itemsize)
            return b.trunc(v, I1) if dt.kind == "b" else v
        out = ir.Constant(ir.VectorType(mem_ty(dt), n), ir.Undefined)
        for i in range(n):
            li = b.extract_element(idx, ir.Constant(I32, i))
            out = b.insert_element(out, b.load(self.addr(e.buf, li), typ=mem_ty(dt), align=dt.itemsize),
                                   ir.Constant(I32, i))
        return b.trunc(out, ir.VectorType(I1, n)) if dt.kind == "b" else out

    def vstore(self, buf, index, v):
        b = self.b
        dt = self.bufdt[buf]
        n = self.vec[1]
        (v,) = self.same_lanes([v, ir.Constant(ir.VectorType(I1, n), [0] * n)])[:1]
        if dt.kind == "b":
            v = b.zext(v, ir.VectorType(I8, n))
        if self._coef(index) == 1:
            b.store(v, self.addr(buf, self.scalar_expr(index)), align=dt.itemsize)
            return
        idx = self.expr(index, {})
        if not isinstance(idx.type, ir.VectorType):
            idx = self.splat(idx, n)
        for i in range(n):
            b.store(b.extract_element(v, ir.Constant(I32, i)), self.addr(buf, b.extract_element(idx, ir.Constant(I32, i))),
                    align=dt.itemsize)

    def vector_for(self, s: L.For):
        """A loop marked with lanes > 1: a vector main loop, horizontal reductions of the accumulators it
        updates, then a scalar tail; `parallel` loops take their bounds from the kernel's range."""
        b = self.b
        n = s.lanes
        if s.kind == "parallel":
            start, stop = self.range
        else:
            start, stop = ir.Constant(I64, 0), ir.Constant(I64, s.extent)
        count = b.sub(stop, start)
        main_end = b.add(start, b.mul(b.udiv(count, ir.Constant(I64, n)), ir.Constant(I64, n)))
        accs = _accumulators(s.body)
        # `copies` body copies per main-loop iteration, each with its own vector accumulators (the schedule's
        # latency of each combine (about 4 cycles for a NaN-aware max) instead of issuing at throughput
        unroll = s.copies
        vptrs = {}
        for name, op in accs.items():  # vector accumulators start at the combine op's identity
            ptr, dt = self.locals[name]
            t = ir.VectorType(ty(dt), n)
            with b.goto_block(self.entry):
                b.position_at_start(self.entry)
                vptrs[name] = [b.alloca(t, name=f"{name}.v{u}") for u in range(unroll)]
            for vp in vptrs[name]:
                b.store(ir.Constant(t, _identity(op, dt)), vp)
        saved = self.vars.get(s.var)
        if unroll > 1:  # main loop: `unroll` vectors per iteration, accumulator u takes the u-th
            big_end = b.add(start, b.mul(b.udiv(count, ir.Constant(I64, n * unroll)), ir.Constant(I64, n * unroll)))
            start = self._vector_loop(s, start, big_end, n, unroll, vptrs, "u")
        self._vector_loop(s, start, main_end, n, 1, vptrs, "v")
        for name, op in accs.items():  # fold the accumulators, then the lanes, into the scalar accumulator
            ptr, dt = self.locals[name]
            t = ir.VectorType(ty(dt), n)
            v = b.load(vptrs[name][0], typ=t)
            for vp in vptrs[name][1:]:
                v = emit_call(self, op, [v, b.load(vp, typ=t)], [dt, dt], dt)
            while v.type.count > 1:
                h = v.type.count // 2
                lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, h), list(range(h))))
                hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, h), list(range(h, 2 * h))))
                v = emit_call(self, op, [lo, hi], [dt, dt], dt)
            v = b.extract_element(v, ir.Constant(I32, 0))
            b.store(emit_call(self, op, [b.load(ptr, typ=ty(dt)), v], [dt, dt], dt), ptr)
        # scalar tail
        tail = self.fn.append_basic_block(f"{s.var}.tail")
        done = self.fn.append_basic_block(f"{s.var}.exit")
        pre = b.block
        b.cbranch(b.icmp_signed("<", main_end, stop), tail, done)
        b.position_at_end(tail)
        tv = b.phi(I64, name=s.var)
        tv.add_incoming(main_end, pre)
        self.vars[s.var] = tv
        self.stmt(s.body)
        tn = b.add(tv, ir.Constant(I64, 1))
        tv.add_incoming(tn, b.block)
        b.cbranch(b.icmp_signed("<", tn, stop), tail, done)
        b.position_at_end(done)
        self.vars[s.var] = saved

    def _vector_loop(self, s: L.For, start, end, n, unroll, vptrs, tag):
        """[start, end) in steps of n*unroll, the body emitted `unroll` times at offsets 0, n, ...;
        copy u updates accumulator u. Returns `end`, where the next loop starts."""
        b = self.b
        pre = b.block
        body = self.fn.append_basic_block(f"{s.var}.{tag}body")
        after = self.fn.append_basic_block(f"{s.var}.{tag}exit")
        b.cbranch(b.icmp_signed("<", start, end), body, after)
        b.position_at_end(body)
        iv = b.phi(I64, name=f"{s.var}.{tag}")
        iv.add_incoming(start, pre)
        for u in range(unroll):
            ivu = iv if u == 0 else b.add(iv, ir.Constant(I64, u * n))
            self.vec = (s.var, n, ivu)
            self.vars[s.var] = ivu
            for name, vps in vptrs.items():
                self.vlocals[name] = (vps[u], ir.VectorType(ty(self.locals[name][1]), n))
            self.stmt(s.body)
        self.vec = None
        self.vlocals.clear()
        nxt = b.add(iv, ir.Constant(I64, n * unroll))
        iv.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, end), body, after)
        b.position_at_end(after)
        return end

    # -- helpers for op emission
    def intrinsic(self, name, ret, args):
        full = f"{name}.{_suffix(args[0].type)}"
        fn = self.m.globals.get(full)
        if fn is None:
            fn = ir.Function(self.m, ir.FunctionType(ret or args[0].type, [a.type for a in args]), name=full)
        return self.b.call(fn, args)

    def libm(self, name, args):
        t = args[0].type
        if isinstance(t, ir.VectorType):  # no vector variant: call per lane
            out = ir.Constant(t, ir.Undefined)
            for i in range(t.count):
                lane = [self.b.extract_element(a, ir.Constant(I32, i)) for a in args]
                out = self.b.insert_element(out, self.libm(name, lane), ir.Constant(I32, i))
            return out
        full = name + ("f" if t == F32 else "")
        fn = self.m.globals.get(full)
        if fn is None:
            fn = ir.Function(self.m, ir.FunctionType(t, [t] * len(args)), name=full)
            fn.attributes.add("nounwind")
        return self.b.call(fn, args)


COMBINE_OPS = ("reduce_add", "reduce_mul", "maximum", "minimum", "logical_or", "logical_and")


def _accumulators(body) -> dict:
    """Locals a vectorizable loop body updates as `acc = combine(acc, x)`: name -> combine op."""
    out = {}
    stack = [body]
    while stack:
        s = stack.pop()
        if isinstance(s, L.Seq):
            stack.extend(s.body)
        elif isinstance(s, L.Assign):
            out[s.name] = s.value.op
    return out


def _identity(op, dt):
    dt = np.dtype(dt)
    if op == "reduce_add":
        return 0 if dt.kind != "f" else 0.0
    if op == "reduce_mul":
        return 1 if dt.kind != "f" else 1.0
    if op in ("logical_or",):
        return 0
    if op in ("logical_and",):
        return 1
    if dt.kind == "f":
        return float("-inf") if op == "maximum" else float("inf")
    if dt.kind == "b":
        return int(op == "minimum")
    info = np.iinfo(dt)
    v = info.min if op == "maximum" else info.max
    return v & ((1 << (8 * dt.itemsize)) - 1)


def code_key(k: L.Kernel) -> tuple:
    """What a kernel's machine code depends on, with its buffers named by position: two steps of an
    unrolled loop (the same loops over other buffers) get one key and so one LLVM function. A loop
    variable or local that happens to share a buffer's name is renamed alike, so keys stay exact."""
    pos = {b.name: f"@{i}" for i, b in enumerate(k.buffers)}
    return tuple((b.dtype.str, b.size) for b in k.buffers), L.canonical((k.body, k.template), pos)


def build_module(kernels: list[L.Kernel], target, name="jitensor") -> ir.Module:
    """Kernels plus two kinds of exported entry points over one pointer table (slot 0 is the error word):
    `jit_entry(table)` runs every kernel in order; `jit_kN(table, begin, end)` runs kernel N over a part of its
    parallel loop (the runtime's threads call these)."""
    m = ir.Module(name=name)
    m.triple = target.triple
    m.jitensor_features = target.features  # what the emitters may use beyond portable IR (mathlib: vscalef)
    from .gemm import emit_gemm
    from .gemv import emit_gemv
    templates = {"gemm": emit_gemm, "gemv": emit_gemv}
    fns, emitted = [], {}
    for k in kernels:  # kernels that differ only in their buffers share one function (unrolled loops)
        key = code_key(k)
        fn = emitted.get(key)
        if fn is None:
            fn = emitted[key] = templates[k.template[0]](m, k, target) if k.template else FnEmitter(m, k).emit()
            # the entry points call each kernel: inlined there, every call site would be optimized again,
            # which made compile time grow with steps x kernel size in unrolled programs
            fn.attributes.add("noinline")
        fns.append(fn)

    def loader(b, table):
        def slot(i):
            return b.load(b.gep(table, [ir.Constant(I64, i)], inbounds=True, source_etype=PTR), typ=PTR)
        return slot

    def plain(fn):  # the entry points only load pointers and call: optimizing them costs more than it
        fn.attributes.add("noinline")  # gains (hundreds of them in an unrolled program took most of LLVM's time)
        fn.attributes.add("optnone")
        return fn

    entry = plain(ir.Function(m, ir.FunctionType(VOID, [PTR]), name="jit_entry"))
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    slot = loader(b, entry.args[0])
    for k, fn in zip(kernels, fns):
        ext = parallel_extent(k, target.vector_bits) or 0
        b.call(fn, [entry.args[0]] + [slot(buf.slot) for buf in k.buffers] + [ir.Constant(I64, 0), ir.Constant(I64, ext)])
    b.ret_void()
    for i, (k, fn) in enumerate(zip(kernels, fns)):
        part = plain(ir.Function(m, ir.FunctionType(VOID, [PTR, I64, I64]), name=f"jit_k{i}"))
        b = ir.IRBuilder(part.append_basic_block("entry"))
        slot = loader(b, part.args[0])
        b.call(fn, [part.args[0]] + [slot(buf.slot) for buf in k.buffers] + list(part.args[1:]))
        b.ret_void()
    return m


def compile_object(module: ir.Module, target) -> tuple[bytes, str]:
    """LLVM IR -> optimized module -> object code. Returns (object bytes, optimized IR text)."""
    llvm = binding()
    text = str(module)
    with _lock:  # LLVM's global state is not ours to share across threads during compilation
        try:
            mod = llvm.parse_assembly(text)
            mod.verify()
        except RuntimeError as e:
            raise CompileError(f"generated LLVM IR is invalid (a jitensor bug): {e}\n{text[:4000]}") from None
        tm = target_machine(target)
        pto = llvm.PipelineTuningOptions(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pb = llvm.PassBuilder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        obj = tm.emit_object(mod)
        return obj, str(mod)


def assembly(obj_ir_text: str, target) -> str:
    llvm = binding()
    with _lock:
        mod = llvm.parse_assembly(obj_ir_text)
        return target_machine(target).emit_assembly(mod)
