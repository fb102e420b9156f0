"""Time jitensor.codegen.mathlib (float32, 16-lane vectors, one thread) against numpy.

    python benchmarks/bench_mathlib.py [name ...] [--n 16777216] [--repeat 5]

Each function is compiled into a simple streaming loop `out[i] = f(in[i])` over 16M
elements; the table lists the best time of `--repeat` runs for the kernel and for the
numpy ufunc (erf: scipy.special.erf when installed), and numpy_ms / jit_ms.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import numpy as np
import llvmlite.binding as llvm
from llvmlite import ir

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jitensor.codegen import mathlib  # noqa: E402

LANES = 16
BINARY = {"arctan2", "power"}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _numpy_fn(name):
    if name == "sigmoid":
        return _sigmoid
    if name == "erf":
        try:
            from scipy.special import erf
            return erf
        except ImportError:
            return None
    return getattr(np, name)


def _inputs(name, n, rng):
    f = np.float32
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(f)  # noqa: E731
    domain = {
        "log": (0, 100), "log2": (0, 100), "log10": (0, 100), "log1p": (-0.9, 100),
        "arcsin": (-1, 1), "arccos": (-1, 1), "arctanh": (-0.99, 0.99), "arccosh": (1, 100),
        "exp": (-80, 80), "exp2": (-120, 120), "expm1": (-10, 10), "sinh": (-20, 20), "cosh": (-20, 20),
        "sin": (-100, 100), "cos": (-100, 100), "tan": (-100, 100), "cbrt": (-1000, 1000),
    }
    if name == "power":
        return u(0, 10), u(-5, 5)
    if name == "arctan2":
        return u(-10, 10), u(-10, 10)
    return (u(*domain.get(name, (-10, 10))),)


def _compile(names):
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = ir.Module(name="bench_mathlib")
    module.triple = llvm.get_default_triple()
    st = ir.FloatType()
    vt = ir.VectorType(st, LANES)
    i64 = ir.IntType(64)
    for name in names:
        nin = 2 if name in BINARY else 1
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [st.as_pointer()] * (nin + 1) + [i64]), f"k_{name}")
        entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)
        n = fn.args[-1]
        b.cbranch(b.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
        b.position_at_end(loop)
        i = b.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), entry)
        ins = [b.load(b.bitcast(b.gep(p, [i]), vt.as_pointer()), align=64) for p in fn.args[:nin]]
        res = mathlib.emit(b, name, ins)
        b.store(res, b.bitcast(b.gep(fn.args[nin], [i]), vt.as_pointer()), align=64)
        nxt = b.add(i, ir.Constant(i64, LANES))
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
        b.position_at_end(done)
        b.ret_void()
    mod = llvm.parse_assembly(str(module))
    mod.verify()

    def tm():
        feats = llvm.get_host_cpu_features().flatten()
        if "+avx512f" in feats:
            feats += ",-prefer-256-bit"
        return llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=feats, opt=3, jit=True)

    pb = llvm.PassBuilder(tm(), llvm.PipelineTuningOptions(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, tm())
    engine.finalize_object()
    fns = {}
    for name in names:
        nin = 2 if name in BINARY else 1
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (nin + 1)), ctypes.c_int64)
        fns[name] = proto(engine.get_function_address(f"k_{name}"))
    return engine, fns


def _best(f, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def _aligned(n):
    buf = np.empty(n + 16, dtype=np.float32)
    off = (-buf.ctypes.data % 64) // 4
    return buf[off:off + n]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=sorted(mathlib.SUPPORTED))
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    n = args.n - args.n % LANES
    engine, fns = _compile(args.names)
    rng = np.random.default_rng(0)
    copy_in, copy_out = _aligned(n), _aligned(n)
    copy_in[:] = 1.0
    copy_ms = _best(lambda: np.copyto(copy_out, copy_in), args.repeat)
    print(f"{n} float32 elements, {LANES} lanes; numpy copy (memory bound reference): {copy_ms:.1f} ms")
    print(f"{'function':<10}{'jit ms':>10}{'numpy ms':>10}{'ratio':>8}")
    for name in args.names:
        xs = []
        for x in _inputs(name, n, rng):
            a = _aligned(n)
            a[:] = x
            xs.append(a)
        out = _aligned(n)
        fn = fns[name]
        ptrs = [a.ctypes.data for a in xs]
        jit_ms = _best(lambda: fn(*ptrs, out.ctypes.data, n), args.repeat)
        ref = _numpy_fn(name)
        if ref is None:
            print(f"{name:<10}{jit_ms:>10.1f}{'-':>10}{'-':>8}")
            continue
        with np.errstate(all="ignore"):
            np_ms = _best(lambda: ref(*xs), args.repeat)
        print(f"{name:<10}{jit_ms:>10.1f}{np_ms:>10.1f}{np_ms / jit_ms:>8.2f}")
    del engine


if __name__ == "__main__":
    main()
