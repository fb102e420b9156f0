"""The thread pool's scheduler in machine code, so that handing a loop to other cores costs
microseconds, not the ~50 us of waking Python threads and passing the GIL between them.

Worker threads are started by Python but spend their whole life in `jtp_worker` (a cffi call,
GIL released). A parallel loop is one call of `jtp_run` from the calling thread, which takes
chunks itself alongside the workers. Shared state, one 64-byte line per hot word:

  gen       i32  bumped for every job; workers spin on it for ~SPIN_CYCLES, then futex-wait
  next      i64  tag(32) | n(16) | idx(16): the job's chunk counter; claimed by compare-and-swap
  finished  i64  chunks of the current job done
  sleepers  i64  workers in futex_wait (the caller only makes the wake syscall when there are any)
  job       fn, table, extent, step: written by the caller before it publishes `next`

Why it is safe: a worker reads the job only after claiming a chunk of it (acquire on `next`,
which the caller published with release after writing the job), and the caller publishes the
next job only after every chunk of this one has finished, so a claimed job's fields never change
under a worker. A worker that wakes late finds `next` exhausted or tagged with a later job, whose
chunks it may then legitimately take. Lost wake-ups are excluded by the sleepers/gen handshake
(both seq_cst) and by futex_wait re-checking `gen`.
"""
from __future__ import annotations

SPIN_CYCLES = 200_000      # about 70-100 us of spinning before a worker sleeps (timestamp counter ticks)
SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129  # x86-64 Linux
W_GEN, W_NEXT, W_FINISHED, W_SLEEPERS, W_QUIT = 0, 8, 16, 24, 32   # word (i64) indexes: own cache lines
W_FN, W_TABLE, W_EXTENT, W_STEP = 40, 41, 42, 43
STATE_WORDS = 48


def supported(target) -> bool:
    return target.triple.startswith("x86_64") and "linux" in target.triple


def build_module(triple: str):
    """The scheduler as an llvmlite IR module (llvmlite is imported here only: a process that loads the
    scheduler from the disk cache never imports it)."""
    from llvmlite import ir
    I32, I64 = ir.IntType(32), ir.IntType(64)
    PTR = ir.PointerType()
    VOID = ir.VoidType()
    m = ir.Module(name="jitensor_pool")
    m.triple = triple
    kty = ir.FunctionType(VOID, [PTR, I64, I64])
    syscall = ir.Function(m, ir.FunctionType(I64, [I64], var_arg=True), name="syscall")
    pause = ir.Function(m, ir.FunctionType(VOID, []), name="llvm.x86.sse2.pause")
    rdtsc = ir.Function(m, ir.FunctionType(I64, []), name="llvm.readcyclecounter")

    def word(b, st, i):
        return b.gep(st, [ir.Constant(I64, i)], inbounds=True, source_etype=I64)

    def c(v, t=I64):
        return ir.Constant(t, v)

    # -- take chunks of whatever job `next` holds until it has none left
    take = ir.Function(m, ir.FunctionType(VOID, [PTR]), name="jtp_take")
    take.linkage = "internal"
    st = take.args[0]
    b = ir.IRBuilder(take.append_basic_block("entry"))
    loop, claim, run, done = (take.append_basic_block(n) for n in ("loop", "claim", "run", "done"))
    b.branch(loop)
    b.position_at_end(loop)
    v = b.load_atomic(word(b, st, W_NEXT), "acquire", 8, typ=I64)
    n = b.and_(b.lshr(v, c(16)), c(0xFFFF))
    idx = b.and_(v, c(0xFFFF))
    b.cbranch(b.icmp_unsigned("<", idx, n), claim, done)
    b.position_at_end(claim)
    res = b.cmpxchg(word(b, st, W_NEXT), v, b.add(v, c(1)), "acq_rel", "acquire")
    b.cbranch(b.extract_value(res, 1), run, loop)
    b.position_at_end(run)
    fn = b.inttoptr(b.load(word(b, st, W_FN), typ=I64), kty.as_pointer())
    table = b.inttoptr(b.load(word(b, st, W_TABLE), typ=I64), PTR)
    extent = b.load(word(b, st, W_EXTENT), typ=I64)
    step = b.load(word(b, st, W_STEP), typ=I64)
    lo = b.mul(idx, step)
    hi = b.add(lo, step)
    hi = b.select(b.icmp_signed("<", hi, extent), hi, extent)
    b.call(fn, [table, lo, hi])
    b.atomic_rmw("add", word(b, st, W_FINISHED), c(1), "release")
    b.branch(loop)
    b.position_at_end(done)
    b.ret_void()

    # -- worker: wait for a new generation (spin, then futex), take chunks, repeat until quit
    worker = ir.Function(m, ir.FunctionType(VOID, [PTR]), name="jtp_worker")
    st = worker.args[0]
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    gen = word(b, st, W_GEN)  # the futex word is the low half (little-endian)
    seen0 = b.load_atomic(gen, "acquire", 4, typ=I32)
    poll, check, idle, work_, quit_ = (worker.append_basic_block(n) for n in ("poll", "check", "idle", "work", "quit"))
    entry = b.block
    t0 = b.call(rdtsc, [])
    b.branch(poll)
    b.position_at_end(poll)
    seen = b.phi(I32, name="seen")
    start = b.phi(I64, name="start")
    seen.add_incoming(seen0, entry)
    start.add_incoming(t0, entry)
    g = b.load_atomic(gen, "acquire", 4, typ=I32)
    q = b.load_atomic(word(b, st, W_QUIT), "monotonic", 8, typ=I64)
    b.cbranch(b.icmp_unsigned("!=", q, c(0)), quit_, check)
    b.position_at_end(check)
    b.cbranch(b.icmp_unsigned("!=", g, seen), work_, idle)
    b.position_at_end(idle)  # nothing new: spin a while longer, or sleep until woken
    now = b.call(rdtsc, [])
    keep = b.icmp_unsigned("<", b.sub(now, start), c(SPIN_CYCLES))
    spin_more, go_sleep = worker.append_basic_block("spin_more"), worker.append_basic_block("go_sleep")
    b.cbranch(keep, spin_more, go_sleep)
    b.position_at_end(spin_more)
    b.call(pause, [])
    seen.add_incoming(seen, spin_more)
    start.add_incoming(start, spin_more)
    b.branch(poll)
    b.position_at_end(go_sleep)
    b.atomic_rmw("add", word(b, st, W_SLEEPERS), c(1), "seq_cst")
    g2 = b.load_atomic(gen, "seq_cst", 4, typ=I32)
    q2 = b.load_atomic(word(b, st, W_QUIT), "seq_cst", 8, typ=I64)
    same = b.and_(b.icmp_unsigned("==", g2, seen), b.icmp_unsigned("==", q2, c(0)))
    with b.if_then(same):
        b.call(syscall, [c(SYS_FUTEX), b.ptrtoint(gen, I64), c(FUTEX_WAIT_PRIVATE), b.zext(seen, I64), c(0), c(0), c(0)])
    b.atomic_rmw("sub", word(b, st, W_SLEEPERS), c(1), "seq_cst")
    t1 = b.call(rdtsc, [])
    seen.add_incoming(seen, b.block)
    start.add_incoming(t1, b.block)
    b.branch(poll)
    b.position_at_end(work_)
    b.call(take, [st])
    t2 = b.call(rdtsc, [])
    seen.add_incoming(g, b.block)
    start.add_incoming(t2, b.block)
    b.branch(poll)
    b.position_at_end(quit_)
    b.ret_void()

    # -- caller: publish a job, wake sleepers, take chunks, wait for the rest
    runf = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR, PTR, I64, I64, I64]), name="jtp_run")
    st, fnp, tbl, extent, step, nch = runf.args
    b = ir.IRBuilder(runf.append_basic_block("entry"))
    b.store(b.ptrtoint(fnp, I64), word(b, st, W_FN))
    b.store(b.ptrtoint(tbl, I64), word(b, st, W_TABLE))
    b.store(extent, word(b, st, W_EXTENT))
    b.store(step, word(b, st, W_STEP))
    b.store(c(0), word(b, st, W_FINISHED))
    old = b.load(word(b, st, W_NEXT), typ=I64)  # only callers (one at a time) write a new job
    tag = b.add(b.lshr(old, c(32)), c(1))
    b.atomic_rmw("xchg", word(b, st, W_NEXT), b.or_(b.shl(tag, c(32)), b.shl(nch, c(16))), "release")  # a release store
    gen = word(b, st, W_GEN)
    b.atomic_rmw("add", gen, c(1, I32), "seq_cst")
    sl = b.load_atomic(word(b, st, W_SLEEPERS), "seq_cst", 8, typ=I64)
    with b.if_then(b.icmp_signed(">", sl, c(0)), likely=False):
        b.call(syscall, [c(SYS_FUTEX), b.ptrtoint(gen, I64), c(FUTEX_WAKE_PRIVATE), c(0x7FFFFFFF), c(0), c(0), c(0)])
    b.call(take, [st])
    wait, back, out = (runf.append_basic_block(n) for n in ("wait", "back", "out"))
    b.branch(wait)
    b.position_at_end(wait)
    f = b.load_atomic(word(b, st, W_FINISHED), "acquire", 8, typ=I64)
    b.cbranch(b.icmp_signed("<", f, nch), back, out)
    b.position_at_end(back)
    b.call(pause, [])
    b.branch(wait)
    b.position_at_end(out)
    b.ret_void()
    return m
