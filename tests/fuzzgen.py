"""Differential fuzzer: random numpy programs, run by numpy and by jitensor.jit, compared value by value.

Each program is Python source (a function of array and scalar arguments, several statements, several
outputs: arrays, scalar reductions of intermediates, in a tuple or a dict) plus the source that builds
its arguments from a seeded generator, so every mismatch prints a self-contained reproducer.

What it covers: the README's numpy surface (ufuncs and operators, reductions with axis/keepdims,
cumsum, matmul/dot/einsum, reshape/transpose/broadcasting/concatenate/stack/where/clip, slicing and
integer-array indexing, functional writes into a copy, astype, *_like), Python and numpy scalar
arguments, every supported dtype, views (steps, transposes, negative strides, offsets), size-1 and
zero-size dims.

Sizes straddle every point where the compiler changes strategy; `thresholds()` reads them from the
compiler's own constants (split reductions, the buffer pool, the thread pool's work estimate, constant
folding, row prefetch, vector lanes of the host, column blocks, the GEMM template's register tile and
cache blocks, the matrix-vector template's skinny sides), so a changed threshold moves the fuzzer with it.

Comparison is `helpers.assert_same` (exact for ints and bools, NaN/inf positions equal, per-dtype
tolerances: 'arith' for programs of exactly rounded ops, 'trans' once a transcendental function, a
reduction or a matmul is involved; float32's for float64 results computed from float32 ones). The
jitted call must leave its inputs unchanged; it runs on memory overwritten with 0xFF bytes (so that a
buffer read before it is written cannot hold numpy's values by chance), then runs again (the cached
program), and the first call's results must still be right (no output buffer handed out twice). Ill-conditioned
programs are never generated: while the generator builds a program it evaluates it with numpy three
times, once exactly and twice with every inexact result (transcendental functions, sums, matmuls...)
moved by the error jitensor is allowed (a few ulp, or eps * log2(n) * sum|x| for sums) in opposite
directions; a statement whose result then differs beyond the tolerance (cancellation, a comparison or a
cast to int on an edge) is dropped.

When numpy raises, jitensor must raise a JitensorError or the same exception type. An UnsupportedError
where numpy succeeds is counted (summary) but is not a wrong result; any other exception is a failure.

Run by hand (long mode):   python tests/fuzzgen.py --programs 10000 --seed 1 [--size large] [-v]
In the test suite:          tests/test_fuzz.py runs a fixed-seed budget;
                            JITENSOR_FUZZ_PROGRAMS=10000 python -m pytest tests/test_fuzz.py -m slow
"""
from __future__ import annotations

import argparse
import copy
import linecache
import math
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np

_TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_TESTS, os.path.dirname(_TESTS)]  # this checkout's jitensor, and helpers.py

import jitensor  # noqa: E402
from jitensor.codegen import gemv  # noqa: E402
from jitensor.loop.schedule import REDUCTION_COPIES  # noqa: E402
from jitensor.errors import JitensorError, UnsupportedError  # noqa: E402
from jitensor.graph.passes import fold, fuse, split  # noqa: E402
from jitensor.loop import schedule, templates  # noqa: E402
from jitensor.runtime import buffers, threads  # noqa: E402
from jitensor.target import host  # noqa: E402
from helpers import TRANS, assert_same, assert_values  # noqa: E402

FLOATS = ("float32", "float64")
INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
DTYPES = ("bool",) + INTS + FLOATS


# -- thresholds, read from the compiler

def thresholds() -> dict[str, list[int]]:
    """Element counts (or row lengths, or matmul dims) just below, at and above each point where the compiler
    changes strategy. Keys name where each comes from."""
    t = host()
    th: dict[str, list[int]] = {}

    def around(*xs):
        return sorted({max(0, x + d) for x in xs for d in (-1, 0, 1)})
    th["split.MIN_ELEMENTS"] = around(split.MIN_ELEMENTS)
    th["split.rows"] = around(*(split.MIN_ROWS_PER_PART * p for p in split.PARTS[:3]))
    th["fold.MAX_FOLD_ELEMENTS"] = around(fold.MAX_FOLD_ELEMENTS)
    th["buffers.MIN_BYTES"] = around(*(buffers.MIN_BYTES // s for s in (1, 4, 8)))
    # the work estimate (schedule.work) is ~2-30 units per element: straddle MIN_WORK_NATIVE for several
    th["threads.MIN_WORK_NATIVE"] = around(*(threads.MIN_WORK_NATIVE // w for w in (2, 3, 4, 6, 10, 20)))
    lanes = sorted({min(16, t.vector_bits // 8 // s) for s in (1, 2, 4, 8)})
    th["lanes"] = around(*lanes, *(n * REDUCTION_COPIES for n in lanes))
    th["prefetch.row"] = around(*(schedule.PREFETCH_MIN_ROW_BYTES // s for s in (4, 8)))
    th["column_block"] = around(64, 128, 1024, 2048)
    # the GEMM template's blocking is the default schedule's (loop/templates.py): read it for a large product
    knobs = [templates.default_knobs(("gemm", (("M", 4096), ("N", 4096), ("K", 4096), ("dtype", dt), ("batch", ()))),
                                     t, 1 << 40) for dt in ("float32", "float64")]
    nr = [k["nv"] * (t.vector_bits // 8 // s) for k, s in zip(knobs, (4, 8))]
    th["gemm.MR"] = around(*(x for k in knobs for x in (k["mr"], 2 * k["mr"])))
    th["gemm.NR"] = around(*nr)
    th["gemm.KC"] = around(*(k["kc"] for k in knobs))
    th["gemv.MAX"] = around(gemv.DOT_MAX, gemv.GEMV_MAX)  # a skinny side streams the matrix instead
    th["gemm.NC"] = around(*(k["nc"] * n for k, n in zip(knobs, nr)))
    return th


TH = thresholds()
LARGE = (40_000, 300_000)
# float64 results computed from float32 transcendental/reduction results carry float32's error
LOWP = {np.dtype(np.float32): TRANS[np.dtype(np.float32)], np.dtype(np.float64): TRANS[np.dtype(np.float32)]}


def _factor(n: int, rng) -> tuple[int, int]:
    """(rows, cols) with rows * cols close to n, cols taken from the row-length thresholds when possible."""
    cols = int(rng.choice(TH["prefetch.row"] + TH["column_block"] + TH["lanes"] + TH["gemm.NR"] + [3, 7, 100]))
    cols = max(1, min(cols, n))
    return max(1, n // cols), cols


# -- program model

@dataclass
class Val:
    name: str
    v: np.ndarray  # numpy's exact value
    p: list        # the two perturbed values
    inexact: bool  # depends on a result jitensor may round differently
    lowp: bool = False  # ... and on a float32 one: float64 results derived from it are good to float32's tolerance


@dataclass
class Program:
    seed: int
    args_src: list[str] = field(default_factory=list)   # lines that build the arguments (rng in scope)
    params: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    ret: str = ""
    tol: str | None = None
    expect_error: bool = False

    def source(self) -> str:
        lines = [f"def f({', '.join(self.params)}):"] + ["    " + s for s in self.body] + [f"    return {self.ret}"]
        return "\n".join(lines) + "\n"

    def args_source(self) -> str:
        return "\n".join([f"rng = np.random.default_rng({self.seed})"] + self.args_src) + "\n"

    def reproducer(self) -> str:
        return ("import numpy as np\nimport jitensor\n\n" + self.source() + "\n" + self.args_source()
                + f"args = ({', '.join(self.params)},)\n"
                + "print('numpy   ', f(*args))\nprint('jitensor', jitensor.jit(f, cache=False)(*args))\n")

    @classmethod
    def from_reproducer(cls, text: str, tol: str | None = "trans") -> "Program":
        lines = text.splitlines()
        d = next(i for i, x in enumerate(lines) if x.startswith("def f("))
        params = [p.strip() for p in lines[d][6:-2].split(",") if p.strip()]
        body, k = [], d + 1
        while not lines[k].startswith("    return "):
            body.append(lines[k][4:])
            k += 1
        ret = lines[k][len("    return "):]
        r = next(i for i, x in enumerate(lines) if x.startswith("rng = np.random.default_rng("))
        seed = int(lines[r].split("(")[-1].rstrip(")"))
        args_src = []
        for x in lines[r + 1:]:
            if x.startswith("args = "):
                break
            args_src.append(x)
        return cls(seed, args_src, params, body, ret, tol)

    def build_args(self):
        ns = {"np": np}
        exec(self.args_source(), ns)
        return tuple(ns[p] for p in self.params)


def _sequential(shape, axes) -> int:
    """How many terms numpy adds one after another (not pairwise) in a reduction over `axes` (None: all)."""
    nd = len(shape)
    axes = tuple(range(nd)) if axes is None else tuple(a % nd for a in (axes if isinstance(axes, tuple) else (axes,)))
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    return n // max(1, shape[-1]) if nd - 1 in axes else n


def _eps(dt) -> float:
    dt = np.dtype(dt)
    return float(np.finfo(dt).eps) if dt.kind == "f" else 0.0


class Gen:
    """Builds one program: arguments, then statements evaluated as they are added."""

    def __init__(self, seed: int, size: str = "any"):
        self.rng = np.random.default_rng(seed)
        self.prog = Program(seed)
        self.vals: list[Val] = []
        self.nvar = 0
        self.size = size if size != "any" else self.rng.choice(["small", "threshold", "threshold", "large"])
        self.shape = self._main_shape()
        self.ns_rng = np.random.default_rng(seed)  # mirrors the reproducer's rng
        self.inexact = False

    # -- shapes and arguments

    def _main_shape(self) -> tuple[int, ...]:
        r = self.rng
        if self.size == "small":
            n = int(r.integers(0, 40)) if r.random() < 0.15 else int(r.integers(1, 80))
        elif self.size == "large":
            n = int(r.integers(*LARGE))
        else:
            key = str(r.choice(sorted(TH)))
            n = int(r.choice(TH[key]))
            if key == "split.rows":  # a split needs MIN_ELEMENTS as well as enough rows per part
                return (n, -(-split.MIN_ELEMENTS // n) + int(r.integers(0, 3)))
            if key.startswith("gemv"):  # a few rows (a skinny left side)
                return (n, int(r.choice(TH["gemm.KC"] + TH["lanes"])))
            if key.startswith("gemm"):  # rows of the length of a matmul's depth
                return (int(r.integers(1, 40)), n)
        kind = r.random()
        if kind < 0.3 or n < 2:
            return (n,)
        if kind < 0.85:
            rows, cols = _factor(n, r)
            if r.random() < 0.5:
                return (rows, cols)
            return (cols, rows)
        rows, cols = _factor(n, r)
        a = int(r.choice([2, 3, 8]))
        return (max(1, rows // a), a, cols)

    def _dtype(self, kinds="any") -> str:
        r = self.rng
        if kinds == "float" or (kinds == "any" and r.random() < 0.55):
            return str(r.choice(FLOATS))
        if kinds == "int" or r.random() < 0.85:
            return str(r.choice(INTS))
        return "bool"

    def new_arg(self, shape, dtype, view=True) -> Val:
        r = self.rng
        name = f"a{len(self.prog.params)}"
        shape = tuple(int(s) for s in shape)
        base, suffix = list(shape), ""
        how = r.choice(["plain", "plain", "neg", "step", "offset", "T"]) if view else "plain"
        if how == "neg" and shape:
            ax = int(r.integers(len(shape)))
            suffix = "[" + ", ".join(["::-1" if i == ax else ":" for i in range(len(shape))]) + "]"
        elif how == "step" and shape:
            ax = int(r.integers(len(shape)))
            base[ax] = 2 * shape[ax]
            suffix = "[" + ", ".join(["::2" if i == ax else ":" for i in range(len(shape))]) + "]"
        elif how == "offset" and shape:
            base = [s + 1 for s in shape]
            suffix = "[" + ", ".join(["1:" if i % 2 == 0 else ":-1" for i in range(len(shape))]) + "]"
        elif how == "T" and len(shape) >= 2:
            base = base[::-1]
            suffix = ".T"
        bs = tuple(base)
        dt = np.dtype(dtype)
        if dt.kind == "f":
            lo, hi = [(-2, 2), (-2, 2), (0.1, 3), (-50, 50)][int(r.integers(4))]
            src = f"rng.uniform({lo}, {hi}, size={bs}).astype(np.{dtype})"
        elif dt.kind == "b":
            src = f"(rng.random(size={bs}) < 0.5)"
        else:
            lo = 0 if dt.kind == "u" else -60
            src = f"rng.integers({lo}, 60, size={bs}, dtype=np.{dtype})"
        self.prog.args_src.append(f"{name} = {src}{suffix}")
        self.prog.params.append(name)
        ns = {"np": np, "rng": self.ns_rng}
        exec(self.prog.args_src[-1], ns)
        v = ns[name]
        val = Val(name, v, [v, v], False)
        self.vals.append(val)
        return val

    def new_scalar(self) -> Val:
        r = self.rng
        name = f"a{len(self.prog.params)}"
        kind = int(r.integers(5))
        src = ["0.75", "3", "-1.5", "np.float32(1.25)", "np.int16(2)"][kind]
        self.prog.args_src.append(f"{name} = {src}")
        self.prog.params.append(name)
        v = eval(src, {"np": np})
        val = Val(name, v, [v, v], False)
        self.vals.append(val)
        return val

    # -- statements

    def arrays(self, pred=lambda v: True):
        return [v for v in self.vals if isinstance(v.v, np.ndarray) and pred(v)]

    def scalars(self):
        return [v for v in self.vals if not isinstance(v.v, np.ndarray)]

    def pick(self, pred=lambda v: True):
        xs = self.arrays(pred)
        if not xs:
            return None
        # favour recent values: longer chains of fused work
        w = np.arange(1, len(xs) + 1, dtype=float) ** 1.5
        return xs[int(self.rng.choice(len(xs), p=w / w.sum()))]

    def add(self, expr: str, noise=None, multi: list[str] | None = None, noise_dtype=None) -> Val | None:
        """Evaluate `name = expr` (or the lines `multi`, which define name) exactly and perturbed; keep it
        when the result is well conditioned. noise(exact, args_exact) -> absolute perturbation size."""
        name = f"v{self.nvar}"
        lines = multi if multi is not None else [f"{name} = {expr}"]
        code = "\n".join(lines)
        res = []
        for k in range(3):
            ns = {"np": np}
            for v in self.vals:
                ns[v.name] = v.v if k == 0 else v.p[k - 1]
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec(code, ns)
            except Exception:  # noqa: BLE001 - numpy refuses: not a statement for this program
                return None
            res.append(ns[name])
        exact = res[0]
        if not isinstance(exact, (np.ndarray, np.generic)) or exact.dtype.kind not in "biuf":
            return None
        exact = np.asarray(exact) if isinstance(exact, np.generic) else exact
        used = [v for v in self.vals if re.search(rf"\b{v.name}\b", code)]
        inexact = any(v.inexact for v in used) or noise is not None
        lowp = (inexact and exact.dtype == np.float32) or any(v.lowp for v in used) or \
            (noise is not None and np.dtype(noise_dtype or exact.dtype) == np.float32)
        pert = []
        if noise is not None and exact.dtype.kind == "f":
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                size = np.asarray(noise(exact), dtype=np.float64)
            sign = np.where(self.rng.random(exact.shape) < 0.5, -1.0, 1.0)
            for k, p in enumerate(res[1:]):
                p = np.asarray(p)
                with np.errstate(all="ignore"):
                    moved = p.astype(np.float64) + (1 if k == 0 else -1) * sign * size
                pert.append(np.where(np.isfinite(p), moved, p).astype(p.dtype))
        else:
            pert = [np.asarray(p) for p in res[1:]]
        tol = LOWP if lowp else "trans" if (inexact or self.inexact) else None
        for p in pert:
            try:
                assert_values(exact, p, rtol=tol)
            except AssertionError:
                return None
        self.prog.body.extend(lines)
        self.nvar += 1
        val = Val(name, exact, pert, inexact, lowp)
        self.vals.append(val)
        self.inexact |= inexact
        return val

    # noise models: the error jitensor may make on top of numpy's for each inexact op
    def ulps(self, k=4, dtype=None):
        """k units in the last place of the result (absolute ones for subnormals) in `dtype` (default: its own)."""
        return lambda e: k * np.abs(np.spacing(np.abs(e).astype(dtype or e.dtype))).astype(np.float64)

    def sum_noise(self, x: Val, expr_abs: str, axes=None):
        """eps * (2 + log2 n + sequential / 4) * sum|x| over the reduced elements (expr_abs: the same reduction
        of |x|): numpy sums pairwise along the last axis only; along other axes it adds one slice at a time,
        and its float32 error there grows with the count (jitensor, accumulating in float64, is closer)."""
        seq = _sequential(x.v.shape, axes)

        def f(e):
            n = max(1, x.v.size // max(1, e.size))
            with np.errstate(all="ignore"):
                s = eval(expr_abs, {"np": np, "X": np.abs(x.v.astype(np.float64))})
            return _eps(e.dtype) * (2 + math.log2(n) + seq / 4) * np.asarray(s)
        return f

    def step(self):
        r = self.rng
        op = r.choice(["unary", "unary", "binary", "binary", "binary", "scalar", "compare", "reduce", "reduce",
                       "cumsum", "matmul", "shape", "where", "clip", "slice", "write", "astype", "concat", "like",
                       "take", "rowwise", "rowwise", "more_shapes"])
        getattr(self, "op_" + op)()

    def op_unary(self):
        x = self.pick()
        if x is None:
            return
        r = self.rng
        if x.v.dtype.kind == "f":
            fn = r.choice(["exp", "log", "sin", "cos", "tanh", "sqrt", "abs", "negative", "floor", "ceil", "rint",
                           "log1p", "expm1", "arctan", "square", "sign", "cbrt", "exp2", "log2", "sinh", "trunc",
                           "reciprocal", "isnan", "isfinite"])
        elif x.v.dtype.kind == "b":
            fn = r.choice(["logical_not", "invert"])
        elif x.v.dtype.itemsize >= 2:
            fn = r.choice(["abs", "negative", "square", "sign", "invert", "exp", "sqrt", "log1p"])
        else:  # (numpy computes float functions of 1-byte ints in float16, which jitensor does not support)
            fn = r.choice(["abs", "negative", "square", "sign", "invert"])
        exact = fn in ("sqrt", "abs", "negative", "floor", "ceil", "rint", "square", "sign", "trunc", "reciprocal",
                       "isnan", "isfinite", "logical_not", "invert")
        src = f"np.{fn}({x.name})" if fn != "abs" or r.random() < 0.5 else f"abs({x.name})"
        self.add(src, None if exact else self.ulps())

    def _partner(self, x: Val):
        """An array broadcastable with x: itself, another value of its shape, a row, a column, or a new argument."""
        r = self.rng
        same = self.arrays(lambda v: v.v.shape == x.v.shape and v is not x)
        c = r.random()
        if same and c < 0.5:
            return same[int(r.integers(len(same)))]
        shape = x.v.shape
        if shape and c < 0.75:
            sub = list(shape)
            ax = int(r.integers(len(sub)))
            sub[ax] = 1
            if r.random() < 0.5:
                sub = sub[ax + 1:] if sub[ax + 1:] else sub
            return self.new_arg(sub, self._dtype())
        return self.new_arg(shape, self._dtype())

    def op_binary(self):
        x = self.pick()
        if x is None:
            return
        y = self._partner(x)
        r = self.rng
        kinds = {x.v.dtype.kind, y.v.dtype.kind}
        ops = ["+", "-", "*", "/", "maximum", "minimum"]
        if kinds <= {"i", "u", "b"}:
            ops += ["&", "|", "^", "//", "%"]
        if "f" in kinds:
            ops += ["//", "%", "arctan2", "hypot", "fmod", "copysign", "**"]
        o = str(r.choice(ops))
        a, b = (x.name, y.name) if r.random() < 0.7 else (y.name, x.name)
        if o == "-" and kinds == {"b"}:
            o = "^"
        noise = None
        if o in ("arctan2", "hypot"):
            noise = self.ulps()
        if o == "**":
            # float powers: a positive base keeps numpy's result finite and well conditioned
            src = f"np.abs({a}) ** {b}" if r.random() < 0.5 else f"{a} ** {r.choice(['2', '3', '0.5', '-1', '2.5'])}"
            noise = self.ulps(8)
        elif o in ("maximum", "minimum", "arctan2", "hypot", "fmod", "copysign"):
            src = f"np.{o}({a}, {b})"
        else:
            src = f"{a} {o} {b}"
        self.add(src, noise)

    def op_scalar(self):
        x = self.pick()
        if x is None:
            return
        r = self.rng
        s = self.scalars()
        s = s[int(r.integers(len(s)))] if s and r.random() < 0.6 else self.new_scalar()
        forms = [f"{x.name} * {s.name}", f"{s.name} + {x.name}", f"{x.name} - 2.5", f"{x.name} * 3",
                 f"np.exp({s.name}) * {x.name}", f"np.float64(2.5) * {x.name}", f"np.float32(0.5) * {x.name} + {s.name}", f"{x.name} / 4",
                 f"np.sqrt(np.abs({s.name})) + {x.name}", f"np.maximum({x.name}, {s.name})", f"{x.name} ** 2"]
        src = str(r.choice(forms))
        if "exp" in src:  # numpy's exp of a scalar is a strong numpy scalar of exp's own result type
            dt = np.exp(s.v).dtype
            self.add(src, self.ulps(4, dt), noise_dtype=dt)
        else:
            self.add(src)

    def op_compare(self):
        x = self.pick()
        if x is None:
            return
        r = self.rng
        y = self._partner(x) if r.random() < 0.6 else None
        o = str(r.choice(["<", "<=", ">", ">=", "==", "!="]))
        rhs = y.name if y is not None else str(r.choice(["0", "0.5", "1", "-1"]))
        src = f"({x.name} {o} {rhs})"
        if r.random() < 0.3:
            z = self.pick(lambda v: v.v.dtype == bool and v.v.shape == x.v.shape)
            if z is not None:
                src = f"np.logical_{r.choice(['and', 'or', 'xor'])}({src}, {z.name})"
        self.add(src)

    def op_reduce(self):
        x = self.pick(lambda v: v.v.ndim >= 1)
        if x is None:
            return
        r = self.rng
        kind = str(r.choice(["sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin", "any", "all",
                             "sum", "mean"]))
        nd = x.v.ndim
        axis = None if r.random() < 0.4 else int(r.integers(-nd, nd))
        if kind in ("argmax", "argmin") or r.random() < 0.5:
            kw = "" if axis is None else f"axis={axis}"
        else:
            kw = ("" if axis is None else f"axis={axis}, ") + f"keepdims={bool(r.random() < 0.5)}"
        form = f"{x.name}.{kind}({kw})" if r.random() < 0.6 else f"np.{kind}({x.name}{', ' + kw if kw else ''})"
        noise = None
        if kind in ("sum", "mean"):
            noise = self.sum_noise(x, f"X.{kind}({kw})", axis)
        elif kind in ("var", "std"):
            def noise(e, x=x, q=_sequential(x.v.shape, axis), axis=axis, kind=kind):
                # relative to the spread, plus the cancellation of x - mean: eps * mean(x^2) in the variance
                # (its square root in the standard deviation, for nearly constant data)
                k = 4 * (2 + math.log2(max(2, x.v.size)) + q / 4) * _eps(e.dtype)
                ms = np.square(x.v.astype(np.float64)).mean(axis=axis)
                ms = ms.reshape(e.shape) if np.size(ms) == e.size else ms
                return k * np.abs(e) + (k * ms if kind == "var" else np.sqrt(k * ms))
        elif kind == "prod":
            noise = (lambda e, n=x.v.size: (2 + min(n, 64)) * _eps(e.dtype) * np.abs(e))
        self.add(form, noise)

    def op_cumsum(self):
        x = self.pick(lambda v: v.v.ndim >= 1)
        if x is None:
            return
        r = self.rng
        axis = None if (x.v.ndim == 1 or r.random() < 0.3) else int(r.integers(x.v.ndim))
        kw = "" if axis is None else f"axis={axis}"
        seq_axis = axis if axis is not None else 0  # a running sum is sequential along its axis
        src, absrc = f"np.cumsum({x.name}{', ' + kw if kw else ''})", f"np.cumsum(X{', ' + kw if kw else ''})"
        noise = self.sum_noise(x if axis is not None else Val(x.name, x.v.reshape(-1), [], False), absrc, seq_axis)
        self.add(src, noise)

    def op_matmul(self):
        r = self.rng
        x = self.pick(lambda v: v.v.ndim in (1, 2) and v.v.dtype.kind == "f" and 0 < v.v.shape[-1] <= 2048)
        if x is None:
            return
        K = x.v.shape[-1]
        N = int(r.choice(TH["gemm.NR"] + TH["gemm.MR"] + TH["gemm.NC"] + TH["gemv.MAX"] + [1, 3]))
        form = int(r.integers(4))
        if form == 0:
            w = self.new_arg((K, N), str(x.v.dtype))
            src = f"{x.name} @ {w.name}"
        elif form == 1:
            w = self.new_arg((N, K), str(x.v.dtype))
            src = f"np.dot({x.name}, {w.name}.T)"
        elif form == 2:
            w = self.new_arg((K,), str(x.v.dtype))
            src = f"{x.name} @ {w.name}"
        else:
            w = self.new_arg((K, N), str(x.v.dtype))
            sub = "ij,jk->ik" if x.v.ndim == 2 else "j,jk->k"
            src = f"np.einsum('{sub}', {x.name}, {w.name})"
        absrc = src.replace(x.name, "XA").replace(w.name, "WA")

        def noise(e, absrc=absrc, x=x, w=w, K=K):
            s = eval(absrc, {"np": np, "XA": np.abs(x.v.astype(np.float64)), "WA": np.abs(w.v.astype(np.float64))})
            return _eps(e.dtype) * (2 + math.sqrt(K)) * np.asarray(s)
        if self.add(src, noise) is not None and r.random() < 0.4:
            v = self.vals[-1]
            self.add(f"np.{r.choice(['exp', 'tanh'])}({v.name} * 0.1)", self.ulps())

    def op_shape(self):
        x = self.pick(lambda v: v.v.ndim >= 1)
        if x is None:
            return
        r = self.rng
        s = x.v.shape
        c = int(r.integers(6))
        if c == 0:
            self.add(f"{x.name}.reshape(-1)")
        elif c == 1 and x.v.ndim >= 2:
            self.add(f"{x.name}.T" if r.random() < 0.5 else f"np.transpose({x.name})")
        elif c == 2:
            self.add(f"{x.name}[..., None]" if r.random() < 0.5 else f"np.expand_dims({x.name}, 0)")
        elif c == 3 and x.v.ndim == 1 and s[0] % 2 == 0:
            self.add(f"{x.name}.reshape(2, -1)")
        elif c == 4 and x.v.ndim == 2:
            y = self.new_arg((s[0],), self._dtype()) if r.random() < 0.5 else self.new_arg((s[1],), self._dtype())
            self.add(f"{x.name} + {y.name}[:, None]" if y.v.shape[0] == s[0] else f"{x.name} * {y.name}[None, :]")
        elif c == 5:
            self.add(f"np.broadcast_to({x.name}, (2,) + {x.name}.shape)")

    def op_rowwise(self):
        """Row kernels: a reduction over the last axis read back by the same rows (softmax, layernorm)."""
        x = self.pick(lambda v: v.v.ndim >= 1 and v.v.dtype.kind == "f" and v.v.shape[-1] > 0)
        if x is None:
            return
        r = self.rng
        X = x.name
        ax = -1 if r.random() < 0.7 else 0
        n = x.v.shape[ax]
        c = int(r.integers(4))

        def centred(e, x=x, n=n, ax=ax):  # x - mean: the mean's error is absolute, eps * log2(n) * mean|x|
            m = np.abs(x.v.astype(np.float64)).mean(axis=ax, keepdims=True)
            return 2 * _eps(e.dtype) * ((2 + math.log2(max(n, 2)) + _sequential(x.v.shape, ax) / 4) * m + np.abs(e))
        if c == 0:
            self.add(f"{X} - {X}.mean(axis={ax}, keepdims=True)", centred)
        elif c == 1:
            self.add(f"np.exp({X} - {X}.max(axis={ax}, keepdims=True))", self.ulps(8))
        elif c == 2:
            e = self.add(f"np.exp({X} - {X}.max(axis={ax}, keepdims=True))", self.ulps(8))
            if e is not None:
                self.add(f"{e.name} / {e.name}.sum(axis={ax}, keepdims=True)",
                         self.ulps(8 + 2 * int(math.log2(n + 1)) + _sequential(x.v.shape, ax) // 4))
        else:
            self.add(f"{X} / np.sqrt(({X} * {X}).mean(axis={ax}, keepdims=True) + 1e-5)",
                     self.ulps(8 + 2 * int(math.log2(n + 1)) + _sequential(x.v.shape, ax) // 4))

    def op_more_shapes(self):
        x = self.pick(lambda v: v.v.ndim >= 1)
        if x is None:
            return
        r = self.rng
        X, nd = x.name, x.v.ndim
        c = int(r.integers(9))
        if c == 0:
            self.add(f"np.flip({X}, axis={int(r.integers(nd))})")
        elif c == 1 and x.v.dtype != bool:
            self.add(f"np.diff({X}, axis={int(r.integers(nd))})")
        elif c == 2 and nd >= 2:
            self.add(f"np.swapaxes({X}, 0, -1)" if r.random() < 0.5 else f"np.moveaxis({X}, 0, -1)")
        elif c == 3:
            self.add(f"np.squeeze(np.expand_dims({X}, 1))" if r.random() < 0.5 else f"{X}.ravel()")
        elif c == 4:
            y = self.pick(lambda v: v.v.shape == x.v.shape)
            self.add(f"np.{r.choice(['hstack', 'vstack'])}([{X}, {y.name}])")
        elif c == 5 and x.v.dtype.kind == "f":
            self.add(f"np.round({X}, {int(r.integers(0, 3))})")
        elif c == 6 and nd == 1 and x.v.size <= 4096:
            y = self.new_arg((int(r.choice(TH["lanes"])),), self._dtype())
            self.add(f"np.outer({X}, {y.name})")
        elif c == 7 and x.v.dtype.kind == "f":
            self.add(f"np.linalg.norm({X})", self.ulps(8 + 2 * int(math.log2(x.v.size + 1)) + _sequential(x.v.shape, None) // 4))
        elif c == 8 and nd >= 2:
            kind = str(r.choice(["sum", "max", "min", "any"]))
            self.add(f"{X}.{kind}(axis=(0, 1))",
                     self.sum_noise(x, "X.sum(axis=(0, 1))", (0, 1)) if kind == "sum" else None)

    def op_where(self):
        x = self.pick()
        if x is None:
            return
        y = self._partner(x)
        cond = self.pick(lambda v: v.v.dtype == bool and v.v.shape == x.v.shape)
        c = cond.name if cond is not None else f"{x.name} > 0"
        self.add(f"np.where({c}, {x.name}, {y.name})")

    def op_clip(self):
        x = self.pick(lambda v: v.v.dtype != bool)
        if x is None:
            return
        self.add(f"np.clip({x.name}, {self.rng.choice(['-1', '0'])}, {self.rng.choice(['1', '2'])})")

    def op_slice(self):
        x = self.pick(lambda v: v.v.ndim >= 1)
        if x is None:
            return
        sl = str(self.rng.choice(["1:-1", "::2", "::-1", "1:", ":-2", "::-3", "2:7"]))
        if x.v.ndim >= 2 and self.rng.random() < 0.5:
            sl = f":, {sl}"
        self.add(f"{x.name}[{sl}]")

    def op_write(self):
        x = self.pick(lambda v: v.v.ndim >= 1 and v.v.shape[0] > 2)
        if x is None:
            return
        r = self.rng
        name = f"v{self.nvar}"
        y = self.pick(lambda v: v.v.shape == x.v.shape and np.can_cast(v.v.dtype, x.v.dtype, "same_kind"))
        if r.random() < 0.5 and y is not None:
            sl = str(r.choice(["1:-1", "::2", ":1", "-2:"]))
            line = f"{name}[{sl}] = {y.name}[{sl}]"
        elif x.v.dtype.kind != "b":
            line = f"{name}[{x.name} > 1] = 0"
        else:
            line = f"{name}[1:-1] = False"
        self.add(None, multi=[f"{name} = {x.name}.copy()", line])

    def op_astype(self):
        x = self.pick()
        if x is None:
            return
        dt = self._dtype()
        if x.v.dtype.kind == "f" and np.dtype(dt).kind in "iu":
            # float -> int is only defined for values in range (numpy's result is the platform's otherwise)
            info = np.iinfo(dt)
            with np.errstate(all="ignore"):
                ok = np.isfinite(x.v).all() and (x.v.size == 0 or (x.v.min() > info.min and x.v.max() < info.max))
            if not ok:
                return
        self.add(f"{x.name}.astype(np.{dt})")

    def op_concat(self):
        x = self.pick(lambda v: v.v.ndim >= 1)
        if x is None:
            return
        y = self.pick(lambda v: v.v.shape == x.v.shape)
        r = self.rng
        if r.random() < 0.5:
            self.add(f"np.concatenate([{x.name}, {y.name}], axis={int(r.integers(x.v.ndim))})")
        else:
            self.add(f"np.stack([{x.name}, {y.name}], axis={int(r.integers(x.v.ndim + 1))})")

    def op_like(self):
        x = self.pick()
        if x is None:
            return
        self.add(f"np.{self.rng.choice(['ones_like', 'zeros_like'])}({x.name}) + {x.name}")

    def op_take(self):
        x = self.pick(lambda v: v.v.ndim >= 1 and v.v.shape[0] > 0)
        if x is None:
            return
        n = x.v.shape[0]
        i = self.new_arg((min(n, 7),), "int64", view=False)
        # valid indices (negative ones too): numpy's IndexError is data-dependent
        self.prog.args_src[-1] = f"{i.name} = rng.integers({-n}, {n}, size={(min(n, 7),)})"
        ns = {"np": np, "rng": np.random.default_rng(self.prog.seed)}
        exec(self.prog.args_source(), ns)
        i.v = ns[i.name]
        i.p = [i.v, i.v]
        self.ns_rng = ns["rng"]
        self.add(f"{x.name}[{i.name}]" if self.rng.random() < 0.5 else f"np.take({x.name}, {i.name}, axis=0)")

    # -- the whole program

    def build(self, nstmts: int) -> Program:
        r = self.rng
        for _ in range(int(r.integers(1, 4))):
            self.new_arg(self.shape, self._dtype())
        if r.random() < 0.4:
            self.new_scalar()
        tries = 0
        while self.nvar < nstmts and tries < 6 * nstmts:
            tries += 1
            self.step()
        made = [v for v in self.vals if v.name.startswith("v")]
        if not made:
            self.add(f"{self.vals[0].name} + 1")
            made = [v for v in self.vals if v.name.startswith("v")]
        outs = [made[-1].name]
        for v in made[:-1]:
            if r.random() < 0.3:
                outs.append(v.name)
        # scalar reductions of intermediates (numpy scalars among the outputs)
        for v in made:
            if v.v.ndim >= 1 and v.v.size > 0 and r.random() < 0.25 and len(outs) < 6:
                kind = str(r.choice(["mean", "sum", "max", "std", "min"]))
                if kind in ("mean", "std") and v.v.dtype == bool:
                    continue
                def std_noise(e, v=v):  # (as in op_reduce)
                    k = 4 * (2 + math.log2(max(2, v.v.size)) + _sequential(v.v.shape, None) / 4) * _eps(e.dtype)
                    return k * np.abs(e) + np.sqrt(k * np.square(v.v.astype(np.float64)).mean())
                noise = None if kind in ("max", "min") else (
                    self.sum_noise(v, f"X.{kind}()") if kind in ("sum", "mean") else std_noise)
                got = self.add(f"{v.name}.{kind}()", noise)
                if got is not None:
                    outs.append(got.name)
        if r.random() < 0.03:
            self._error_statement()
        outs = list(dict.fromkeys(outs))
        if len(outs) > 1 and r.random() < 0.25:
            self.prog.ret = "{" + ", ".join(f"'{o}': {o}" for o in outs) + "}"
        elif len(outs) > 1 and r.random() < 0.1:
            self.prog.ret = "[" + ", ".join(outs) + "]"
        else:
            self.prog.ret = "(" + ", ".join(outs) + ",)" if len(outs) > 1 or r.random() < 0.5 else outs[0]
        lowp = any(v.lowp and v.v.dtype == np.float64 for v in self.vals if v.name in outs)
        self.prog.tol = LOWP if lowp else "trans" if self.inexact else None
        return self.prog

    def _error_statement(self):
        """A statement numpy refuses at trace time (shapes, axes): jitensor must refuse it too."""
        x = self.vals[-1]
        r = self.rng
        nd = np.ndim(x.v)
        c = int(r.integers(3))
        if c == 0:
            self.prog.body.append(f"bad = {x.name}.sum(axis={nd + 1})")
        elif c == 1:
            self.prog.body.append(f"bad = {x.name}.reshape({np.size(x.v) + 1})")
        else:
            self.prog.body.append(f"bad = {x.name} + np.ones_like({x.name})[..., None, :0]"
                                  if nd >= 1 and np.shape(x.v)[-1] > 1 else f"bad = {x.name}.sum(axis={nd + 1})")
        self.prog.expect_error = True


def generate(seed: int, size: str = "any", nstmts: int | None = None) -> Program:
    g = Gen(seed, size)
    return g.build(nstmts if nstmts is not None else int(g.rng.integers(4, 12)))


# -- running one program

@dataclass
class Outcome:
    status: str  # ok, unsupported, mismatch
    detail: str = ""


def _compile_source(prog: Program, tag: str):
    src = prog.source()
    filename = f"<fuzz {tag}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns = {"np": np}
    exec(compile(src, filename, "exec"), ns)
    return ns["f"]


def _snapshot(args):
    return copy.deepcopy(args)


def run_program(prog: Program, tag: str = "") -> Outcome:
    return compare(_compile_source(prog, tag or str(prog.seed)), prog.build_args(), prog.tol, prog.params)


def _poison(result):
    """Overwrite the memory numpy's results (and their freed temporaries) leave behind with 0xFF bytes (NaN, -1),
    so that a kernel reading a buffer before it is written cannot find numpy's values there by chance."""
    sizes = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (tuple, list)):
            for v in x:
                walk(v)
        elif isinstance(x, np.ndarray):
            sizes.add(x.nbytes)
    walk(result)
    blocks = [np.full(n, 0xFF, np.uint8) for n in sorted(sizes) for _ in range(4)]
    del blocks


def compare(fn, args, tol=None, params=None) -> Outcome:
    """Run fn under numpy and under jitensor.jit and compare (see the module docstring)."""
    params = params or [f"arg{i}" for i in range(len(args))]
    before = _snapshot(args)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = fn(*copy.deepcopy(args))
        np_exc = None
    except Exception as e:  # noqa: BLE001 - numpy refusing is part of the spec
        np_exc = e
    if np_exc is None:
        _poison(expected)
    jf = jitensor.jit(fn, cache=False)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = jf(*args)
    except UnsupportedError as e:
        if np_exc is not None:
            return Outcome("ok")
        return Outcome("unsupported", f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001
        if np_exc is not None and (isinstance(e, JitensorError) or type(e) is type(np_exc)):
            return Outcome("ok")
        why = f"numpy raised {type(np_exc).__name__}: {np_exc}; " if np_exc is not None else ""
        return Outcome("mismatch", why + "jitensor raised " + "".join(traceback.format_exception(e))[-3000:])
    if np_exc is not None:
        return Outcome("mismatch", f"numpy raised {type(np_exc).__name__}: {np_exc}; jitensor returned {got!r:.300}")
    try:
        for b, a, p in zip(before, args, params):
            if isinstance(b, np.ndarray):
                assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(b, a, equal_nan=True), \
                    f"argument {p} was modified by the jitted call"
        assert_same(expected, got, rtol=tol)
        # a second call (the cached program) must not write into the first call's results, which are still held
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = jf(*args)
        assert_same(expected, got, rtol=tol, path="first call's result after a second call")
        assert_same(expected, again, rtol=tol, path="second call's result")
    except AssertionError as e:
        return Outcome("mismatch", str(e))
    return Outcome("ok")


def _kind(detail: str) -> str:
    """What went wrong, without the numbers (counts and values change as a program shrinks)."""
    head = detail.split(":")[1].split("(")[0] if ":" in detail else detail[:40]
    return re.sub(r"[-+.\de]+", "#", head).strip()


def minimize(prog: Program) -> Program:
    """Drop outputs and statements while the program still fails the same way (for regression tests)."""
    import dataclasses
    first = run_program(prog, "min")
    if first.status != "mismatch":
        return prog
    want = _kind(first.detail)

    def fails(p):
        try:
            o = run_program(p, "min")
        except Exception:  # noqa: BLE001
            return False
        return o.status == "mismatch" and _kind(o.detail) == want and "NameError" not in o.detail
    changed = True
    while changed:
        changed = False
        ret = prog.ret
        if ret.startswith(("(", "{", "[")):
            items = [x.strip() for x in ret.strip("(){}[],").split(",") if x.strip()]
            if ret.startswith("{"):
                items = [x.split(":")[1].strip() for x in items]
            for i in range(len(items)):
                rest = items[:i] + items[i + 1:]
                if not rest:
                    continue
                cand = dataclasses.replace(prog, ret="(" + ", ".join(rest) + ",)" if len(rest) > 1 else rest[0])
                if fails(cand):
                    prog, changed = cand, True
                    break
            if changed:
                continue
        for i in range(len(prog.body)):
            cand = dataclasses.replace(prog, body=prog.body[:i] + prog.body[i + 1:])
            if fails(cand):
                prog, changed = cand, True
                break
    return prog


def describe_args(prog: Program) -> str:
    out = []
    for p, a in zip(prog.params, prog.build_args()):
        if isinstance(a, np.ndarray):
            out.append(f"{p}: {a.dtype}{list(a.shape)} strides={a.strides}")
        else:
            out.append(f"{p}: {type(a).__name__} {a!r}")
    return "; ".join(out)


def report(prog: Program, out: Outcome) -> str:
    return (f"==== {out.status} (seed {prog.seed}): {out.detail}\n"
            f"arguments: {describe_args(prog)}\n"
            f"---- reproducer\n{prog.reproducer()}")


def fuzz(programs: int, seed: int, size: str = "any", verbose: bool = False, stream=None,
         deadline: float | None = None) -> dict:
    """Run `programs` programs with seeds seed, seed+1, ...; returns counts and the failures' reports."""
    stream = stream or sys.stdout
    counts = {"programs": 0, "ok": 0, "unsupported": 0, "mismatch": 0}
    reports, unsupported = [], []
    t0 = time.perf_counter()
    for k in range(programs):
        if deadline is not None and time.perf_counter() > deadline:
            break
        prog = generate(seed + k, size)
        try:
            out = run_program(prog, f"seed {seed + k}")
        except Exception as e:  # noqa: BLE001 - a fuzzer bug must not hide the other programs
            out = Outcome("mismatch", "the fuzzer itself failed: " + "".join(traceback.format_exception(e))[-2000:])
        counts["programs"] += 1
        counts[out.status] += 1
        if out.status == "mismatch":
            reports.append(report(prog, out))
            print(reports[-1], file=stream, flush=True)
        elif out.status == "unsupported":
            unsupported.append(f"seed {prog.seed}: {out.detail[:300]}")
        if verbose:
            print(f"seed {seed + k}: {out.status} ({time.perf_counter() - t0:.1f} s)", file=stream, flush=True)
    counts["seconds"] = round(time.perf_counter() - t0, 1)
    return {"counts": counts, "mismatches": reports, "unsupported": unsupported}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", choices=["any", "small", "threshold", "large"], default="any")
    ap.add_argument("--minutes", type=float, help="stop after this long (and print the summary)")
    ap.add_argument("--show", type=int, help="print the program of this seed and exit")
    ap.add_argument("--minimize", type=int, help="minimize the failing program of this seed and print it")
    ap.add_argument("--minimize-file", help="minimize the failing program of this reproducer file (tolerance 'trans')")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.minimize is not None or a.minimize_file:
        prog = generate(a.minimize, a.size) if a.minimize_file is None else \
            Program.from_reproducer(open(a.minimize_file).read())
        prog = minimize(prog)
        print(report(prog, run_program(prog, "min")))
        return 0
    if a.show is not None:
        prog = generate(a.show, a.size)
        print(prog.reproducer())
        print("arguments:", describe_args(prog))
        return 0
    deadline = time.perf_counter() + 60 * a.minutes if a.minutes else None
    res = fuzz(a.programs, a.seed, a.size, a.verbose, deadline=deadline)
    print("summary:", res["counts"])
    for u in res["unsupported"]:
        print("unsupported:", u)
    return 1 if res["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
