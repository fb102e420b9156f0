"""argmax/argmin along the last axis run in blocks of ARG_BLOCK elements (a vector max/min pass, then a vector
first-index pass, then an in-order update of the row's best): rows on both sides of the vector width and of
the block size, the winner or a tie or a NaN in any block, every dtype, views and inlined producers. Leading axes: several
columns per pass, for every column-group width."""
from __future__ import annotations

import numpy as np
import pytest

from jitensor.loop.lower import ARG_BLOCK
from helpers import ALL_DTYPES, FLOAT_DTYPES, check

B = ARG_BLOCK
# lengths around the vector widths (8, 16, 32 lanes), one block, several blocks with and without a tail
LENGTHS = [1, 7, 8, 9, 17, 1000, B - 1, B, B + 1, 3 * B + 17]


def argmax_last(x):
    return x.argmax(axis=-1)


def argmin_last(x):
    return np.argmin(x, axis=-1)


def argmax_all(x):
    return np.argmax(x)


def argmin_all(x):
    return x.argmin()


def argmax_keep(x):
    return np.argmax(x, axis=-1, keepdims=True)


def argmax_expr(x):
    return (x * 2 - 1).argmax(axis=-1), np.abs(x).argmin(axis=-1)


def argmax_several(x):
    return x.argmax(axis=-1), x.argmin(axis=-1), x.argmax(), x.max(axis=-1)


def all_four(x):  # one compilation per input signature for the four forms
    return argmax_last(x), argmin_last(x), argmax_all(x), argmin_all(x)




def _data(shape, dt, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dt)
    if dt == np.bool_:
        return rng.random(shape) < 0.3
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True).astype(dt)
    return rng.standard_normal(shape).astype(dt)


@pytest.mark.parametrize("n", LENGTHS)
def test_lengths_float32(n):
    check(all_four, _data((3, n), np.float32, seed=n))
    check(all_four, _data((n,), np.float32, seed=n + 1))


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [9, 2 * B + 3])
def test_dtypes(dt, n):
    x = _data((4, n), dt, seed=7)
    check(all_four, x)


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [17, 3 * B])
def test_ties_keep_the_first_index(dt, n):
    """Every row holds its extreme several times, in different blocks and lanes: the first one wins."""
    dt = np.dtype(dt)
    if dt == np.bool_:
        x = np.zeros((4, n), dt)
        x[0, [3, n - 1]] = True
        x[1, [n // 2, n // 2 + 1]] = True
        x[2, :] = True
        x[3, [B % n, n - 2]] = True
    else:
        hi = np.iinfo(dt).max if dt.kind in "iu" else dt.type(7)
        lo = np.iinfo(dt).min if dt.kind in "iu" else dt.type(-7)
        x = np.zeros((4, n), dt)
        x[0, [3, n - 1]] = hi
        x[0, [5, n - 3]] = lo
        x[1, [n // 2, n // 2 + 1]] = hi
        x[1, [1, n - 1]] = lo
        x[2, :] = hi  # all equal: index 0
        x[3, [min(B, n - 1), n - 2]] = hi  # first in a later block
        x[3, [min(B + 1, n - 1), n - 1]] = lo
    check(all_four, x)


@pytest.mark.parametrize("dt", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [13, B, 3 * B + 17])
def test_nan_inf(dt, n):
    x = _data((8, n), dt, seed=3)
    x[0, n // 2] = np.nan                       # one NaN
    x[1, [n - 1, n // 3]] = np.nan              # two NaNs: the first wins
    x[2, 0] = np.nan                            # NaN first, larger values later
    x[2, n - 1] = 1e30
    x[3, :] = -np.inf                           # all -inf
    x[4, :] = np.inf                            # all +inf
    x[5, n - 1] = np.inf                        # inf last, NaN nowhere
    x[6, :] = np.nan                            # all NaN
    x[7, [0, n - 1]] = [-0.0, 0.0]              # signed zeros compare equal: the first wins
    x[7, 1:n - 1] = -1
    check(all_four, x)
    if n > B:  # a NaN in a later block than a larger value
        y = _data((2, n), dt, seed=4)
        y[0, 3] = 100
        y[0, B + 7] = np.nan
        y[1, B + 7] = 100
        y[1, n - 1] = np.nan
        check(all_four, y)


@pytest.mark.parametrize("n", [40, B + 9])
def test_views(n):
    x = _data((6, 2 * n), np.float32, seed=5)
    check(argmax_last, x[:, ::-2])              # negative stride along the reduced axis
    check(argmin_last, x[::-1, 1:n + 1])        # reversed rows, offset slice
    check(argmax_last, x.T[: n // 2].T)         # a transposed view
    check(argmax_all, x[1:5, ::3])              # full reduction of a strided view
    check(argmax_last, _data((3, 4, n), np.float64, seed=6))  # 3-d, last axis


@pytest.mark.parametrize("n", [30, B + 30])
def test_keepdims_expressions_and_several_outputs(n):
    x = _data((5, n), np.float32, seed=8)
    x[2, n - 4] = np.nan
    check(argmax_keep, x)
    check(argmax_expr, x)
    check(argmax_several, x)


def argmax_leading(x):
    return x.argmax(axis=0), np.argmin(x, axis=0)


def argmax_middle(x):
    return x.argmax(axis=1), x.argmin(axis=-2), np.argmax(x, axis=0)


# leading axes go W adjacent columns at a time, W the largest of 16, 8, 4, 2, 1 dividing the last axis
# (64 bytes of columns at most): columns counts for each W, per itemsize
@pytest.mark.parametrize("cols", [1, 5, 6, 12, 24, 32, 1000])
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int8, np.uint16, np.int64, np.bool_],
                         ids=lambda d: np.dtype(d).name)
def test_leading_axes(dt, cols):
    x = _data((37, cols), dt, seed=cols)
    if np.dtype(dt) != np.bool_:
        x[30, :] = x.max()   # ties with earlier rows: the first stays
        x[5, ::2] = x.min()
    check(argmax_leading, x)


@pytest.mark.parametrize("dt", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_leading_axes_nan_views_3d(dt):
    x = _data((50, 16), dt, seed=10)
    x[7, 3] = np.nan
    x[9, 3] = np.nan       # the first NaN of column 3
    x[40, 4] = np.nan      # a NaN after the column's maximum
    x[:, 5] = np.inf
    x[:, 6] = np.nan
    x[0, 7] = np.nan       # NaN in the first row
    check(argmax_leading, x)
    check(argmax_leading, x[::-1, ::-1])   # negative strides
    check(argmax_leading, x.T)             # a transposed view (columns of 50: W = 2)
    check(argmax_leading, x[3:, 1:15])     # offset slices, 14 columns
    y = _data((6, 20, 24), dt, seed=11)
    y[2, 5, 7] = np.nan
    check(argmax_middle, y)
    check(argmax_middle, y[:, ::-1, 3:])


# full reductions of at least MIN_ELEMENTS elements split into parts (graph/passes/split.py): row argmaxes of
# the parts, then the argmax of their winners
def argmax_full_both(x):
    return x.argmax(), np.argmin(x)


@pytest.mark.parametrize("size", [(1 << 16) - 8, 1 << 16, (1 << 16) + 8, 3 * (1 << 16), 65537 * 2])
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int16, np.uint8, np.bool_], ids=lambda d: np.dtype(d).name)
def test_full_split_sizes(dt, size):
    check(argmax_full_both, _data((size,), dt, seed=size))


@pytest.mark.parametrize("dt", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_full_split_ties_nan_views(dt):
    n = 1 << 17
    part = n // 8
    x = _data((n,), dt, seed=12)
    x[[part - 1, 3 * part + 5, n - 1]] = 50       # ties in different parts: the first
    x[[part + 2, 5 * part]] = -50
    check(argmax_full_both, x)
    y = x.copy()
    y[[6 * part + 3, 2 * part + 9]] = np.nan      # NaNs in later parts than the maximum: the first NaN
    check(argmax_full_both, y)
    y[:] = np.inf                                  # all equal
    check(argmax_full_both, y)
    m = x.reshape(512, 256)
    check(argmax_full_both, m)                     # 2-d
    check(argmax_full_both, m[::-1, 1:])           # a reversed, offset view
    check(argmax_full_both, m.T[::2])              # a transposed, strided view
    check(lambda a: (a * 2 - 1).argmax(), m)       # an inlined producer


def test_flat_index_round_trip_is_affine():
    """linear([e // c, e % c], (c * s, s)) is e * s (what a reshape and a reshape back produce); nothing else."""
    from jitensor.loop.ir import Var, iadd, idiv, imod, imul, linear
    e = iadd(imul(Var("i"), 32768), Var("j"))
    assert linear([idiv(e, 512), imod(e, 512)], (512, 1)) == e
    assert linear([idiv(e, 512), imod(e, 512)], (1024, 2)) == imul(e, 2)
    assert linear([Var("b"), idiv(idiv(e, 8), 64), imod(idiv(e, 8), 64), imod(e, 8)], (7, 512, 8, 1)) == \
        iadd(imul(Var("b"), 7), e)  # three levels fold one after the other
    assert linear([idiv(e, 512), imod(e, 512)], (256, 1)) != e
    assert linear([idiv(e, 256), imod(e, 512)], (512, 1)) != e
    assert linear([idiv(e, 512), imod(Var("j"), 512)], (512, 1)) != e
    assert linear([imod(e, 512), idiv(e, 512)], (1, 512)) != e  # only (div, mod) in layout order
