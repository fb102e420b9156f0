"""A speed floor against numpy: every supported numpy function, method and operator, jitted alone.

    python benchmarks/bench_floor.py                 # mid + large sizes, float32 + float64; writes section `floor`
    python benchmarks/bench_floor.py --quick         # mid size, float32, 3 rounds; writes section `floor-quick`
    python benchmarks/bench_floor.py -k argmax -k concat --no-write    # a subset (regular expressions)

Each case is one numpy function (or operator, or method) of one or two arrays, compiled unchanged by
jitensor, at a mid size (512x512 = 256K elements) and a large size (2048x2048 = 4M elements), in float32 and
float64 (bitwise cases in int32/int64, logical cases on bools). Every result is checked against numpy
first (values, shape and dtype), then numpy and jitensor are timed interleaved (benchmarks/harness.py),
and the table gives the medians and `ratio` = t_numpy / t_jitensor (> 1: jitensor is faster). Cases below
FLOOR (0.9x) are listed with the reason known for them (REASONS), in the printed report and in the
section of RESULTS.md this script writes. A case jitensor cannot compile is an ERROR row; a wrong result
is WRONG and never timed.

Shape functions that return a view in numpy (reshape, transpose, flip, slicing...) are timed followed by
`* 2`, so that both sides produce a new array (jitensor always returns new arrays): a bare view costs
numpy nothing, and that ratio would say nothing about jitensor's code.

The script imports jitensor from the checkout it lives in (not an installed copy elsewhere).
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# numpy's BLAS threads sleep at once after a matmul, so that they do not steal the cores of the next call
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's jitensor
sys.path.insert(1, str(HERE))
import harness  # noqa: E402
from harness import Case  # noqa: E402

FLOOR = 0.9
SIZES = {"mid": (512, 512), "large": (2048, 2048)}
DTYPES = (np.float32, np.float64)
INT_OF = {np.dtype(np.float32): np.dtype(np.int32), np.dtype(np.float64): np.dtype(np.int64)}


# ============================================================================ inputs

@dataclass(frozen=True)
class Inputs:
    """Builds a case's arguments for one size and float dtype (rng seeded per case: reruns see the same data)."""
    kinds: tuple  # one kind per argument, see `make`

    def make(self, shape, dt, seed):
        rng = np.random.default_rng(seed)
        dt = np.dtype(dt)
        n, m = shape
        out = []
        for kind in self.kinds:
            if kind == "x":          # standard normal
                a = rng.standard_normal(shape).astype(dt)
            elif kind == "pos":      # (0.5, 2): logs, roots, powers
                a = rng.uniform(0.5, 2.0, shape).astype(dt)
            elif kind == "unit":     # (-0.9, 0.9): arcsin, arccos, arctanh
                a = rng.uniform(-0.9, 0.9, shape).astype(dt)
            elif kind == "ge1":      # (1.1, 3): arccosh
                a = rng.uniform(1.1, 3.0, shape).astype(dt)
            elif kind == "small":    # (-3, 3): exp, sinh, cosh without overflow
                a = rng.uniform(-3.0, 3.0, shape).astype(dt)
            elif kind == "near1":    # products of many values stay finite
                a = rng.uniform(0.9995, 1.0005, shape).astype(dt)
            elif kind == "nonzero":  # divisors away from 0
                a = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(dt)
            elif kind == "int":      # bitwise operands
                a = rng.integers(-1000, 1000, shape).astype(INT_OF[dt])
            elif kind == "shift":    # shift counts
                a = rng.integers(0, 8, shape).astype(INT_OF[dt])
            elif kind == "bool":
                a = rng.random(shape) < 0.5
            elif kind == "row":      # broadcast along rows
                a = rng.standard_normal(m).astype(dt)
            elif kind == "col":      # broadcast along columns
                a = rng.standard_normal((n, 1)).astype(dt)
            elif kind == "vec":      # a vector of the matrix's width (matvec)
                a = rng.standard_normal(m).astype(dt)
            elif kind == "flat":     # the same number of elements as one vector
                a = rng.standard_normal(n * m).astype(dt)
            elif kind == "outer_a":  # outer(a, b) of n x m
                a = rng.standard_normal(n).astype(dt)
            elif kind == "rows_idx":  # a permutation of the rows
                a = rng.permutation(n).astype(np.int64)
            elif kind == "cols_idx":
                a = rng.permutation(m).astype(np.int64)
            elif kind == "along_idx":  # take_along_axis indices, one per element
                a = rng.integers(0, m, shape).astype(np.int64)
            else:
                raise ValueError(kind)
            out.append(a)
        return tuple(out)


X, XY = Inputs(("x",)), Inputs(("x", "x"))


# ============================================================================ the cases

@dataclass(frozen=True)
class Spec:
    name: str           # the numpy expression, as shown in the table
    group: str
    fn: object
    inputs: Inputs = X
    tol: str = "arith"  # arith | trans | sum | exact | matmul
    sizes: tuple = ("mid", "large")


def _u(name):
    f = getattr(np, name)
    g = lambda x: f(x)  # noqa: E731
    g.__name__ = name
    return g


def _b(name):
    f = getattr(np, name)
    g = lambda x, y: f(x, y)  # noqa: E731
    g.__name__ = name
    return g


UNARY_INPUT = {"log": "pos", "log2": "pos", "log10": "pos", "log1p": "pos", "sqrt": "pos", "reciprocal": "nonzero",
               "arcsin": "unit", "arccos": "unit", "arctanh": "unit", "arccosh": "ge1", "exp": "small",
               "exp2": "small", "expm1": "small", "sinh": "small", "cosh": "small", "logical_not": "bool",
               "invert": "int"}
UNARY_EXACT = {"negative", "positive", "absolute", "sign", "floor", "ceil", "trunc", "rint", "logical_not", "invert",
               "isnan", "isinf", "isfinite", "signbit", "square"}
UNARY = ("negative positive absolute sign exp exp2 expm1 log log2 log10 log1p sqrt cbrt square reciprocal sin cos "
         "tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh floor ceil trunc rint logical_not invert "
         "isnan isinf isfinite signbit deg2rad rad2deg").split()
BINARY_INPUT = {"divide": ("x", "nonzero"), "floor_divide": ("x", "nonzero"), "remainder": ("x", "nonzero"),
                "fmod": ("x", "nonzero"), "power": ("pos", "x"), "logical_and": ("bool", "bool"),
                "logical_or": ("bool", "bool"), "logical_xor": ("bool", "bool"), "bitwise_and": ("int", "int"),
                "bitwise_or": ("int", "int"), "bitwise_xor": ("int", "int"), "left_shift": ("int", "shift"),
                "right_shift": ("int", "shift")}
BINARY_EXACT = {"maximum", "minimum", "fmax", "fmin", "copysign", "equal", "not_equal", "less", "less_equal",
                "greater", "greater_equal", "logical_and", "logical_or", "logical_xor", "bitwise_and", "bitwise_or",
                "bitwise_xor", "left_shift", "right_shift", "floor_divide", "remainder", "fmod"}
BINARY = ("add subtract multiply divide floor_divide remainder fmod power maximum minimum fmax fmin arctan2 hypot "
          "copysign equal not_equal less less_equal greater greater_equal logical_and logical_or logical_xor "
          "bitwise_and bitwise_or bitwise_xor left_shift right_shift logaddexp logaddexp2").split()
TRANS_BINARY = {"power", "arctan2", "hypot", "logaddexp", "logaddexp2"}


def _reductions():
    out = []
    for kind in ("sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin", "any", "all"):
        inp = Inputs(("bool",)) if kind in ("any", "all") else Inputs(("near1",)) if kind == "prod" else X
        tol = "exact" if kind in ("max", "min", "argmax", "argmin", "any", "all") else "sum"
        for axis, label in ((None, "x.{k}()"), (0, "x.{k}(axis=0)"), (-1, "x.{k}(axis=-1)")):
            f = (lambda k, a: lambda x: getattr(x, k)(axis=a))(kind, axis)
            out.append(Spec(label.format(k=kind), "reduction", f, inp, tol))
    return out


def _functional_write(x, y):
    out = x.copy()
    out[1:-1, 1:-1] = 0.25 * (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:])
    return out


def _masked_write(x):
    out = x.copy()
    out[x > 1] = 0
    return out


def make_specs():
    s = []
    for name in UNARY:
        tol = "exact" if name in UNARY_EXACT else "arith" if name in ("cbrt", "deg2rad", "rad2deg") else "trans"
        if name == "cbrt":
            tol = "trans"
        s.append(Spec(f"np.{name}(x)", "ufunc (unary)", _u(name), Inputs((UNARY_INPUT.get(name, "x"),)), tol))
    for name in BINARY:
        tol = "exact" if name in BINARY_EXACT else "trans" if name in TRANS_BINARY else "arith"
        s.append(Spec(f"np.{name}(x, y)", "ufunc (binary)", _b(name), Inputs(BINARY_INPUT.get(name, ("x", "x"))),
                      tol))
    ops = [
        ("x + y", lambda x, y: x + y, XY, "arith"),
        ("x - y", lambda x, y: x - y, XY, "arith"),
        ("x * y", lambda x, y: x * y, XY, "arith"),
        ("x / y", lambda x, y: x / y, Inputs(("x", "nonzero")), "arith"),
        ("x // y", lambda x, y: x // y, Inputs(("x", "nonzero")), "exact"),
        ("x % y", lambda x, y: x % y, Inputs(("x", "nonzero")), "exact"),
        ("x ** y", lambda x, y: x ** y, Inputs(("pos", "x")), "trans"),
        ("x ** 2", lambda x: x ** 2, X, "arith"),
        ("x ** 3", lambda x: x ** 3, X, "arith"),
        ("x ** 0.5", lambda x: x ** 0.5, Inputs(("pos",)), "arith"),
        ("-x", lambda x: -x, X, "exact"),
        ("abs(x)", lambda x: abs(x), X, "exact"),
        ("x + 1.5 (scalar)", lambda x: x + 1.5, X, "arith"),
        ("2 * x - 1 (scalars)", lambda x: 2 * x - 1, X, "arith"),
        ("x + row (broadcast)", lambda x, r: x + r, Inputs(("x", "row")), "arith"),
        ("x * col (broadcast)", lambda x, c: x * c, Inputs(("x", "col")), "arith"),
        ("x < y", lambda x, y: x < y, XY, "exact"),
        ("x == y", lambda x, y: x == y, XY, "exact"),
        ("a & b (bool)", lambda a, b: a & b, Inputs(("bool", "bool")), "exact"),
        ("i | j (int)", lambda i, j: i | j, Inputs(("int", "int")), "exact"),
        ("~i (int)", lambda i: ~i, Inputs(("int",)), "exact"),
        ("i << j (int)", lambda i, j: i << j, Inputs(("int", "shift")), "exact"),
    ]
    s += [Spec(n, "operator", f, i, t) for n, f, i, t in ops]
    s += _reductions()
    s += [Spec("np.cumsum(x, axis=-1)", "cumsum", lambda x: np.cumsum(x, axis=-1), X, "sum"),
          Spec("np.cumsum(x, axis=0)", "cumsum", lambda x: np.cumsum(x, axis=0), X, "sum"),
          Spec("x.cumsum() (flattened)", "cumsum", lambda x: x.cumsum(), X, "sum")]
    la = [
        ("x @ y (matmul)", lambda x, y: x @ y, XY),
        ("np.dot(x, y)", lambda x, y: np.dot(x, y), XY),
        ("np.matmul(x, y.T)", lambda x, y: np.matmul(x, y.T), XY),
        ("x @ v (matvec)", lambda x, v: x @ v, Inputs(("x", "vec"))),
        ("np.tensordot(x, y, 1)", lambda x, y: np.tensordot(x, y, axes=1), XY),
        ("np.einsum('ij,jk->ik')", lambda x, y: np.einsum("ij,jk->ik", x, y), XY),
        ("np.einsum('ij,ij->i')", lambda x, y: np.einsum("ij,ij->i", x, y), XY),
        ("np.outer(a, b)", lambda a, b: np.outer(a, b), Inputs(("outer_a", "row"))),
        ("np.linalg.norm(x)", lambda x: np.linalg.norm(x), X),
        ("np.linalg.norm(x, axis=-1)", lambda x: np.linalg.norm(x, axis=-1), X),
    ]
    for n, f, i in la:
        mm = "matmul" in n or "dot" in n or "ik" in n
        s.append(Spec(n, "linalg", f, i, "matmul" if mm and "matvec" not in n else "sum",
                      sizes=("mid",) if mm and "matvec" not in n and "ij->i" not in n else ("mid", "large")))
    # the matmul family at the large size: 2048^3 (17 GFLOP), once per dtype
    s.append(Spec("x @ y (matmul)", "linalg", lambda x, y: x @ y, XY, "matmul", sizes=("large",)))
    shape = [
        ("x.reshape(-1, 64) * 2", lambda x: x.reshape(-1, 64) * 2),
        ("x.T * 2 (transpose)", lambda x: x.T * 2),
        ("np.swapaxes(x, 0, 1) * 2", lambda x: np.swapaxes(x, 0, 1) * 2),
        ("np.moveaxis(x3, 0, -1) * 2", lambda x: np.moveaxis(x.reshape(8, -1, x.shape[1]), 0, -1) * 2),
        ("np.expand_dims(x, 1) * 2", lambda x: np.expand_dims(x, 1) * 2),
        ("np.squeeze(x[:, None]) * 2", lambda x: np.squeeze(x[:, None]) * 2),
        ("x.ravel() * 2", lambda x: x.ravel() * 2),
        ("x.T.ravel() (copying ravel)", lambda x: x.T.ravel()),
        ("np.broadcast_to(row, x.shape) * 2", lambda x: np.broadcast_to(x[0], x.shape) * 2),
        ("np.flip(x) * 2", lambda x: np.flip(x) * 2),
        ("np.flip(x, axis=-1) * 2", lambda x: np.flip(x, axis=-1) * 2),
        ("np.diff(x, axis=-1)", lambda x: np.diff(x, axis=-1)),
        ("np.diff(x, axis=0)", lambda x: np.diff(x, axis=0)),
    ]
    s += [Spec(n, "shape", f, X, "arith") for n, f in shape]
    cat = [
        ("np.concatenate([x, y]) (outer axis)", lambda x, y: np.concatenate([x, y])),
        ("np.concatenate([x, y], axis=1) (inner axis)", lambda x, y: np.concatenate([x, y], axis=1)),
        ("np.stack([x, y]) (outer axis)", lambda x, y: np.stack([x, y])),
        ("np.stack([x, y], axis=-1) (inner axis)", lambda x, y: np.stack([x, y], axis=-1)),
        ("np.hstack([x, y])", lambda x, y: np.hstack([x, y])),
        ("np.vstack([x, y])", lambda x, y: np.vstack([x, y])),
    ]
    s += [Spec(n, "concatenate", f, XY, "exact") for n, f in cat]
    misc = [
        ("np.where(x > 0, x, y)", lambda x, y: np.where(x > 0, x, y), XY, "exact"),
        ("np.clip(x, -0.5, 0.5)", lambda x: np.clip(x, -0.5, 0.5), X, "exact"),
        ("x.clip(-0.5, 0.5) (method)", lambda x: x.clip(-0.5, 0.5), X, "exact"),
        ("np.round(x, 2)", lambda x: np.round(x, 2), X, "arith"),
        ("np.round(x)", lambda x: np.round(x), X, "exact"),
        ("np.take(x, rows, axis=0)", lambda x, i: np.take(x, i, axis=0), Inputs(("x", "rows_idx")), "exact"),
        ("np.take(x, cols, axis=1)", lambda x, i: np.take(x, i, axis=1), Inputs(("x", "cols_idx")), "exact"),
        ("np.take_along_axis(x, idx, axis=1)", lambda x, i: np.take_along_axis(x, i, axis=1),
         Inputs(("x", "along_idx")), "exact"),
        ("x[rows] (integer-array index)", lambda x, i: x[i], Inputs(("x", "rows_idx")), "exact"),
        ("x[:, cols] (integer-array index)", lambda x, i: x[:, i], Inputs(("x", "cols_idx")), "exact"),
        ("x[1:-1, 1:-1] - x[:-2, 1:-1] (slices)", lambda x: x[1:-1, 1:-1] - x[:-2, 1:-1], X, "arith"),
        ("x[::2, ::-3] * 2 (strided slice)", lambda x: x[::2, ::-3] * 2, X, "arith"),
        ("x.astype(other float)", lambda x: x.astype(np.float64 if x.dtype == np.float32 else np.float32), X,
         "arith"),
        ("x.astype(int)", lambda x: (x * 100).astype(INT_OF[x.dtype]), X, "exact"),
        ("x.copy()", lambda x: x.copy(), X, "exact"),
        ("np.zeros_like(x) + x", lambda x: np.zeros_like(x) + x, X, "exact"),
        ("out = x.copy(); out[1:-1, 1:-1] = stencil(y)", _functional_write, XY, "arith"),
        ("out = x.copy(); out[x > 1] = 0", _masked_write, X, "exact"),
    ]
    s += [Spec(n, "other", f, i, t) for n, f, i, t in misc]
    return s


def tolerances(spec: Spec, dt, shape) -> tuple[float, float]:
    dt = np.dtype(dt)
    f32 = dt == np.float32
    n = shape[0] * shape[1]
    if spec.tol == "exact":
        return 0.0, 0.0
    if spec.tol == "arith":
        return (2e-6, 1e-7) if f32 else (1e-12, 1e-14)
    if spec.tol == "trans":
        return (1e-4, 1e-6) if f32 else (1e-9, 1e-12)
    if spec.tol == "matmul":
        k = shape[1]
        return (1e-3, 2e-3 * np.sqrt(k)) if f32 else (1e-9, 1e-9 * np.sqrt(k))
    # sums in another order: float32 loses ~1e-7 per addition of the numbers' magnitude
    return (1e-3, 1e-5 * np.sqrt(n)) if f32 else (1e-9, 1e-12 * np.sqrt(n))


# ============================================================================ why a case is below the floor

# (pattern on "case size dtype", reason): the first match explains a case below FLOOR. Reasons are what
# was measured; "not analysed" marks a case nobody has looked at yet.
REASONS = [
    (r"\.(any|all)\(\)", "numpy stops at the first True (any) / False (all) of bool data, which random data "
                         "meets at once; jitensor reads the whole array (on all-False data it is 3.7x faster "
                         "than numpy at 2048x2048); an early exit per chunk is not built yet"),
    (r"matvec", "matrix-vector template (codegen/gemv.py) below OpenBLAS's GEMV while the matrix is in cache "
                "(512x512, 2048x2048); at or above it from 4096x4096 and on tall/wide shapes (section gemv)"),
    (r"\.T \* 2|swapaxes|moveaxis|T\.ravel", "tiled transpose (loop tiles of 32/16/8, the transposed side read "
                                             "element by element, no in-register shuffle)"),
    (r"arg(max|min)\(axis=-1\)", "row argmax: two vector passes per block of 2048 (extreme, then its first "
                                   "index) against numpy's one-pass SIMD argmax; one pass needs a paired "
                                   "(value, index) vector accumulator in codegen"),
    (r"arg(max|min)\(\)", "full argmax: 8 parallel row argmaxes (two vector passes each) against numpy's "
                           "one-pass SIMD argmax on one core"),
    (r"arg(max|min)\(axis=0\)", "column argmax: a scalar (best, index) pair per column, 16 columns per pass "
                                 "(64 bytes); numpy copies to rows and runs its SIMD argmax"),
    (r"mid", "mid size (1-2 MB, in cache, tens of µs per call): jitensor's dispatch costs ~7 µs more than "
             "numpy's per call on this host, and its main vector loop stores one vector per iteration (not "
             "unrolled), slower than numpy's unrolled SIMD loops on in-cache data (one thread, -x on 512x512 "
             "float32: 68 µs vs 41 µs); not fixed yet"),
]


def reason_for(label: str) -> str:
    for pat, why in REASONS:
        if re.search(pat, label):
            return why
    return "not analysed yet"


# ============================================================================ peers

def numpy_peer(case: Case):
    return functools.partial(case.fn, *case.args)


def jitensor_peer(case: Case):
    """The jitted function; its first call (compiling) also checks the dtype and shape against numpy's, which
    the harness's value check (np.allclose) does not."""
    import jitensor
    jf = jitensor.jit(case.fn)
    got, want = np.asarray(jf(*case.args)), np.asarray(case.fn(*case.args))
    if got.dtype != want.dtype or got.shape != want.shape:
        raise AssertionError(f"result {got.dtype}{list(got.shape)}, numpy's {want.dtype}{list(want.shape)}")
    return functools.partial(jf, *case.args)


PEERS = {"numpy": numpy_peer, "jitensor": jitensor_peer}


# ============================================================================ main

def make_cases(sizes, dtypes, patterns) -> list[Case]:
    cases = []
    for i, spec in enumerate(make_specs()):
        for size in sizes:
            if size not in spec.sizes:
                continue
            shape = SIZES[size]
            for dt in dtypes:
                label = f"{spec.name} {size} {np.dtype(dt).name}"
                if patterns and not any(re.search(p, label) for p in patterns):
                    continue
                args = spec.inputs.make(shape, dt, seed=i)
                rtol, atol = tolerances(spec, dt, shape)
                c = Case(label, label, spec.fn, args, rtol=rtol, atol=atol, budget_s=2.0)
                c.impls = {"spec": spec, "size": size, "dtype": np.dtype(dt).name,
                           "elements": int(sum(a.size for a in args) // len(args))}
                cases.append(c)
    return cases


HEADER = ["case", "size", "dtype", "numpy", "jitensor", "ratio", "status"]


def rows_of(res: harness.Results) -> list[list[str]]:
    rows = []
    for key in dict.fromkeys(r.case.key for r in res):
        n, j = res.get(key, "numpy"), res.get(key, "jitensor")
        c = j.case
        ratio = n.median / j.median if n.ok and j.ok else None
        status = j.status if j.status != "ok" else f"ok ({len(j.times)} runs)"
        if n.status != "ok":
            status = f"numpy {n.status}"
        if j.message or n.message:
            status += f": {j.message or n.message}"
        rows.append([c.impls["spec"].name, c.impls["size"], c.impls["dtype"], harness.fmt_time(n.median),
                     harness.fmt_time(j.median), harness.fmt_ratio(ratio), status, ratio])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="mid size, float32 only, 3 rounds")
    ap.add_argument("-k", action="append", default=[], metavar="PATTERN",
                    help="run only the cases whose 'case size dtype' label matches this regular expression "
                         "(repeatable: any of them)")
    ap.add_argument("--sizes", default=None, help="comma-separated: mid,large (default both; mid with --quick)")
    ap.add_argument("--dtypes", default=None, help="comma-separated: float32,float64 (default both; float32 with "
                                                   "--quick)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved rounds per case (default 7; 3 with --quick)")
    ap.add_argument("--list", action="store_true", help="list the selected cases and exit")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--section", default=None,
                    help="RESULTS.md section (default floor; floor-quick with --quick; floor-partial with -k)")
    args = ap.parse_args(argv)
    sizes = args.sizes.split(",") if args.sizes else (["mid"] if args.quick else list(SIZES))
    dtypes = [np.dtype(d) for d in args.dtypes.split(",")] if args.dtypes else (
        [np.dtype(np.float32)] if args.quick else [np.dtype(d) for d in DTYPES])
    bad = set(sizes) - set(SIZES)
    if bad:
        ap.error(f"unknown size(s) {sorted(bad)}; choose from {list(SIZES)}")
    reps = args.reps or (3 if args.quick else 7)
    section = args.section or ("floor-partial" if args.k else "floor-quick" if args.quick else "floor")
    np.seterr(all="ignore")
    cases = make_cases(sizes, dtypes, args.k)
    if args.list or not cases:
        for c in cases:
            print(c.name)
        print(f"{len(cases)} cases")
        return
    t_start = time.perf_counter()
    stamp = harness.source_stamp()
    info = harness.machine_info()
    for k, v in info.items():
        print(f"{k}: {v}")
    print(f"\n{len(cases)} cases, up to {reps} interleaved rounds each:")
    res = harness.bench(cases, PEERS, reps=reps)
    rows = rows_of(res)
    below = [r for r in rows if r[-1] is not None and r[-1] < FLOOR]
    failed = [r for r in rows if r[-1] is None]
    table = [r[:-1] for r in rows]
    print()
    print(harness.text_table(HEADER, table, group=False))
    total = time.perf_counter() - t_start
    summary = (f"{len(rows)} cases: {len(rows) - len(below) - len(failed)} at or above {FLOOR}x numpy, "
               f"{len(below)} below, {len(failed)} not timed (ERROR/WRONG); {total:.0f} s")
    below_rows = [[r[0], r[1], r[2], r[5], reason_for(f"{r[0]} {r[1]} {r[2]}")]
                  for r in sorted(below, key=lambda r: r[-1])]
    below_header = ["case", "size", "dtype", "ratio", "reason"]
    print(f"\n{summary}")
    if below_rows:
        print(f"\nbelow {FLOOR}x numpy:")
        print(harness.text_table(below_header, below_rows, group=False))
    if failed:
        print("\nnot timed:")
        print(harness.text_table(["case", "size", "dtype", "status"], [[r[0], r[1], r[2], r[6]] for r in failed],
                                 group=False))
    edited = harness.edited_note(stamp)
    if edited:
        print(f"WARNING: {edited}")
    if not args.no_write:
        extra = {"run": f"sizes {','.join(f'{s} {SIZES[s][0]}x{SIZES[s][1]}' for s in sizes)}, dtypes "
                        f"{','.join(d.name for d in dtypes)}, up to {reps} interleaved rounds per case"
                        + (f", cases matching {args.k}" if args.k else "") + f", {total:.0f} s"}
        parts = [f"## Speed floor: every supported numpy function against numpy (`bench_floor.py"
                 f"{' --quick' if args.quick else ''}`)", "", harness.machine_info_markdown(info, extra), ""]
        if edited:
            parts += [f"**Warning**: {edited}.", ""]
        parts += [f"`ratio` = t_numpy / t_jitensor on the medians of interleaved rounds (> 1: jitensor is faster); "
                  f"the floor is {FLOOR}x. Sizes: mid = 512x512 (256K elements), large = 2048x2048 (4M elements) "
                  "per array; bitwise cases run on int32/int64 in the float32/float64 rows, logical ones on bools. "
                  "Shape functions that are views in numpy are timed followed by `* 2`.", "",
                  f"**{summary}.**", ""]
        if below_rows:
            parts += [f"### Below {FLOOR}x numpy, with the reason", "", harness.markdown_table(below_header,
                                                                                                below_rows), ""]
        if failed:
            parts += ["### Not timed", "", harness.markdown_table(["case", "size", "dtype", "status"],
                                                                  [[r[0], r[1], r[2], r[6]] for r in failed]), ""]
        parts += ["### All cases", "", harness.markdown_table(HEADER, table)]
        harness.write_section(section, "\n".join(parts))
        print(f"wrote section '{section}' of {harness.RESULTS_MD}")


if __name__ == "__main__":
    main()
