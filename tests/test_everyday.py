"""Everyday numpy functions, compiled unchanged and compared with numpy (float32 and float64, a few shapes)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import check

# compositions of transcendental functions and reductions: a little looser than single ufuncs
RTOL = {np.dtype(np.float32): 3e-5, np.dtype(np.float64): 1e-10}
ATOL = {np.dtype(np.float32): 3e-6, np.dtype(np.float64): 1e-12}
DTYPES = [np.float32, np.float64]
DT_IDS = ["float32", "float64"]


def rnd(shape, dt, seed=0, scale=1.0, positive=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    if positive:
        x = np.abs(x) + 0.1
    return x.astype(dt)


# ---------------------------------------------------------------------------------------------
# the functions (plain numpy, as a user writes them)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def layernorm(x, gamma, beta):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * gamma + beta


def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_sigmoid(x):
    return x / (1.0 + np.exp(-1.702 * x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def swish(x):
    return x * sigmoid(x)


def softplus(x):
    return np.logaddexp(0.0, x)


def mlp_layer(x, w, b):
    return np.maximum(x @ w + b, 0)


def mlp2(x, w1, b1, w2, b2):
    h = np.maximum(0, np.dot(x, w1) + b1)
    return h @ w2 + b2


def pairwise_distances(x, y):
    sq = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.maximum(sq, 0))


def pairwise_distances_broadcast(x, y):
    d = x[:, None, :] - y[None, :, :]
    return np.sqrt((d ** 2).sum(-1))


def cosine_similarity(a, b):
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return an @ bn.T


def stencil_1d(u):
    out = u.copy()
    out[1:-1] = 0.25 * u[:-2] + 0.5 * u[1:-1] + 0.25 * u[2:]
    return out


def heat_2d(u, alpha):
    lap = np.zeros_like(u)
    lap[1:-1, 1:-1] = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * u[1:-1, 1:-1]
    return u + alpha * lap


def cross_entropy(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), labels].mean()


def _ncdf(x):
    # tanh approximation of the normal CDF (there is no erf ufunc)
    return 0.5 * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def black_scholes(s, k, t, r, sigma):
    sqrt_t = np.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    call = s * _ncdf(d1) - k * np.exp(-r * t) * _ncdf(d2)
    put = k * np.exp(-r * t) * _ncdf(-d2) - s * _ncdf(-d1)
    return call, put


def _ncdf_poly(x):
    # Abramowitz-Stegun 26.2.17 polynomial approximation
    a1, a2, a3, a4, a5 = 0.319381530, -0.356563782, 1.781477937, -1.821255978, 1.330274429
    kk = 1.0 / (1.0 + 0.2316419 * np.abs(x))
    poly = kk * (a1 + kk * (a2 + kk * (a3 + kk * (a4 + kk * a5))))
    w = 1.0 - 1.0 / np.sqrt(2 * np.pi) * np.exp(-x * x / 2.0) * poly
    return np.where(x < 0, 1.0 - w, w)


def black_scholes_poly(s, k, t, r, sigma):
    d1 = (np.log(s / k) + (r + sigma ** 2 / 2) * t) / (sigma * np.sqrt(t))
    d2 = d1 - sigma * np.sqrt(t)
    return s * _ncdf_poly(d1) - k * np.exp(-r * t) * _ncdf_poly(d2)


def mse(pred, target):
    return np.mean((pred - target) ** 2)


def huber(pred, target):
    d = np.abs(pred - target)
    return np.where(d < 1.0, 0.5 * d ** 2, d - 0.5).mean()


def smooth_l1_per_row(pred, target):
    d = pred - target
    ad = np.abs(d)
    return np.sum(np.where(ad < 0.5, d * d, ad - 0.25), axis=-1)


def bce_with_logits(x, y):
    return np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))


def attention(q, k, v):
    s = q @ k.T / np.sqrt(q.shape[-1])
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(axis=-1, keepdims=True)
    return p @ v


def attention_batched(q, k, v):
    d = q.shape[-1]
    s = np.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(d)
    p = softmax(s)
    return p @ v


def batchnorm_inference(x, mean, var, gamma, beta):
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def adam_step(p, g, m, v, lr, t):
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v


def polyval_horner(x):
    coeffs = [0.5, -1.25, 2.0, 0.75, -0.1]
    y = np.zeros_like(x)
    for c in coeffs:
        y = y * x + c
    return y


def logsumexp(x):
    m = np.max(x, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def one_hot(labels, x):
    oh = (labels[:, None] == np.arange(x.shape[1])).astype(x.dtype)
    return oh * x


def cumulative_returns(r):
    return np.exp(np.cumsum(np.log1p(r), axis=-1)) - 1


def normalize_rows(x):
    return x / np.sqrt((x ** 2).sum(axis=1, keepdims=True))


def gram(x):
    return x @ x.T


def leaky_relu(x):
    return np.where(x > 0, x, 0.01 * x)


def clip_by_norm(g, max_norm):
    n = np.sqrt(np.sum(g * g))
    return g * np.minimum(1.0, max_norm / (n + 1e-6))


def minmax_scale(x):
    lo = x.min(axis=0)
    hi = x.max(axis=0)
    return (x - lo) / (hi - lo)


def kmeans_step(x, c):
    d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1)
    assign = np.argmin(d, axis=1)
    onehot = (assign[:, None] == np.arange(c.shape[0])[None, :]).astype(x.dtype)
    counts = onehot.sum(axis=0)
    new_c = (onehot.T @ x) / np.maximum(counts, 1)[:, None]
    return assign, np.where(counts[:, None] > 0, new_c, c)


def conv1d_valid(x, w):
    k = w.shape[0]
    n = x.shape[-1] - k + 1
    out = np.zeros(x.shape[:-1] + (n,), dtype=x.dtype)
    for i in range(k):
        out = out + w[i] * x[..., i:i + n]
    return out


def box_blur(img):
    h, w = img.shape
    out = img.copy()
    acc = np.zeros_like(img[1:-1, 1:-1])
    for di in range(3):
        for dj in range(3):
            acc = acc + img[di:di + h - 2, dj:dj + w - 2]
    out[1:-1, 1:-1] = acc / 9
    return out


def interp_linear(table, pos):
    n = table.shape[0]
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    w = pos - i0
    return (1 - w) * table[i0] + w * table[i0 + 1]


def bilinear(img, ys, xs):
    h, w = img.shape
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, h - 2)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, w - 2)
    dy = ys - y0
    dx = xs - x0
    top = img[y0, x0] * (1 - dx) + img[y0, x0 + 1] * dx
    bot = img[y0 + 1, x0] * (1 - dx) + img[y0 + 1, x0 + 1] * dx
    return top * (1 - dy) + bot * dy


def zscore(x):
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)


def discounted_returns(r):
    out = np.zeros_like(r)
    acc = np.zeros_like(r[..., 0])
    for t in range(r.shape[-1] - 1, -1, -1):
        acc = r[..., t] + 0.99 * acc
        out[..., t] = acc
    return out


def rotate_points(p, theta):
    c, s = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([c, -s]), np.stack([s, c])])
    return p @ rot.T


def relu_grad_step(w, x, y, lr):
    h = x @ w
    err = np.maximum(h, 0) - y
    grad = x.T @ (err * (h > 0)) / x.shape[0]
    return w - lr * grad


def ema_weights(x):
    w = 0.9 ** np.arange(x.shape[-1])[::-1]
    return (x * w).sum(axis=-1) / w.sum()


def accuracy(logits, labels):
    return (np.argmax(logits, axis=1) == labels).mean()


def topk_mask(x):
    # keep values at or above the row's 3rd largest (via two max passes without sort)
    m1 = x.max(axis=1, keepdims=True)
    x2 = np.where(x >= m1, -np.inf, x)
    m2 = x2.max(axis=1, keepdims=True)
    return np.where(x >= m2, x, 0.0)


# ---------------------------------------------------------------------------------------------
# cases: (function, argument factory(shape-case, dtype), rtol/atol override)


def _args_x(shape):
    return lambda dt: (rnd(shape, dt, 1),)


CASES = {
    "softmax": (softmax, [_args_x((4, 16)), _args_x((2, 3, 33))]),
    "log_softmax": (log_softmax, [_args_x((4, 16)), _args_x((7,))]),
    "layernorm": (layernorm, [lambda dt: (rnd((4, 32), dt, 1), rnd((32,), dt, 2), rnd((32,), dt, 3)),
                              lambda dt: (rnd((2, 3, 8), dt, 1, scale=5), rnd((8,), dt, 2), rnd((8,), dt, 3))]),
    "rmsnorm": (rmsnorm, [lambda dt: (rnd((4, 32), dt, 1), rnd((32,), dt, 2))]),
    "gelu_tanh": (gelu_tanh, [_args_x((5, 9)), _args_x((100,))]),
    "gelu_sigmoid": (gelu_sigmoid, [_args_x((5, 9))]),
    "sigmoid": (sigmoid, [lambda dt: (rnd((50,), dt, 1, scale=10),)]),
    "swish": (swish, [_args_x((3, 7))]),
    "softplus": (softplus, [lambda dt: (rnd((40,), dt, 1, scale=20),)]),
    "mlp_layer": (mlp_layer, [lambda dt: (rnd((8, 5), dt, 1), rnd((5, 6), dt, 2), rnd((6,), dt, 3))]),
    "mlp2": (mlp2, [lambda dt: (rnd((8, 5), dt, 1), rnd((5, 16), dt, 2), rnd((16,), dt, 3), rnd((16, 3), dt, 4),
                                rnd((3,), dt, 5))]),
    "pairwise_distances": (pairwise_distances, [lambda dt: (rnd((6, 3), dt, 1), rnd((5, 3), dt, 2))]),
    "pairwise_distances_broadcast": (pairwise_distances_broadcast,
                                     [lambda dt: (rnd((6, 3), dt, 1), rnd((5, 3), dt, 2))]),
    "cosine_similarity": (cosine_similarity, [lambda dt: (rnd((6, 4), dt, 1), rnd((5, 4), dt, 2))]),
    "stencil_1d": (stencil_1d, [_args_x((20,)), _args_x((3,))]),
    "heat_2d": (heat_2d, [lambda dt: (rnd((8, 9), dt, 1), 0.1), lambda dt: (rnd((3, 3), dt, 1), 0.25)]),
    "cross_entropy": (cross_entropy, [lambda dt: (rnd((6, 5), dt, 1, scale=3), np.array([0, 4, 2, 2, 1, 3]))]),
    "black_scholes": (black_scholes, [lambda dt: (rnd((32,), dt, 1, positive=True, scale=50),
                                                  rnd((32,), dt, 2, positive=True, scale=50),
                                                  rnd((32,), dt, 3, positive=True), 0.02, 0.3)]),
    "black_scholes_poly": (black_scholes_poly, [lambda dt: (rnd((32,), dt, 1, positive=True, scale=50),
                                                            rnd((32,), dt, 2, positive=True, scale=50),
                                                            rnd((32,), dt, 3, positive=True), 0.02, 0.3)]),
    "mse": (mse, [lambda dt: (rnd((10, 3), dt, 1), rnd((10, 3), dt, 2))]),
    "huber": (huber, [lambda dt: (rnd((10, 3), dt, 1, scale=2), rnd((10, 3), dt, 2))]),
    "smooth_l1": (smooth_l1_per_row, [lambda dt: (rnd((4, 6), dt, 1), rnd((4, 6), dt, 2))]),
    "bce_with_logits": (bce_with_logits, [lambda dt: (rnd((20,), dt, 1, scale=4),
                                                      (rnd((20,), dt, 2) > 0).astype(dt))]),
    "attention": (attention, [lambda dt: (rnd((5, 8), dt, 1), rnd((7, 8), dt, 2), rnd((7, 4), dt, 3))]),
    "attention_batched": (attention_batched, [lambda dt: (rnd((2, 3, 4, 8), dt, 1), rnd((2, 3, 5, 8), dt, 2),
                                                          rnd((2, 3, 5, 8), dt, 3))]),
    "batchnorm_inference": (batchnorm_inference, [lambda dt: (rnd((4, 3, 5, 5), dt, 1),
                                                              rnd((3, 1, 1), dt, 2), rnd((3, 1, 1), dt, 3,
                                                                                        positive=True),
                                                              rnd((3, 1, 1), dt, 4), rnd((3, 1, 1), dt, 5))]),
    "adam_step": (adam_step, [lambda dt: (rnd((6, 4), dt, 1), rnd((6, 4), dt, 2), rnd((6, 4), dt, 3) * 0.1,
                                          rnd((6, 4), dt, 4, positive=True) * 0.01, 1e-3, 3)]),
    "polyval_horner": (polyval_horner, [_args_x((50,))]),
    "logsumexp": (logsumexp, [lambda dt: (rnd((4, 10), dt, 1, scale=30),)]),
    "one_hot": (one_hot, [lambda dt: (np.array([0, 3, 1, 3]), rnd((4, 5), dt, 1))]),
    "cumulative_returns": (cumulative_returns, [lambda dt: (rnd((3, 12), dt, 1, scale=0.01),)]),
    "normalize_rows": (normalize_rows, [_args_x((5, 7))]),
    "gram": (gram, [_args_x((5, 7))]),
    "leaky_relu": (leaky_relu, [_args_x((5, 7))]),
    "clip_by_norm": (clip_by_norm, [lambda dt: (rnd((5, 7), dt, 1, scale=3), 1.0),
                                    lambda dt: (rnd((5, 7), dt, 1, scale=0.01), 1.0)]),
    "minmax_scale": (minmax_scale, [_args_x((6, 3))]),
    "kmeans_step": (kmeans_step, [lambda dt: (rnd((12, 2), dt, 1), rnd((3, 2), dt, 2))]),
    "conv1d": (conv1d_valid, [lambda dt: (rnd((30,), dt, 1), rnd((5,), dt, 2)),
                              lambda dt: (rnd((2, 16), dt, 1), rnd((3,), dt, 2))]),
    "box_blur": (box_blur, [_args_x((6, 7))]),
    "interp_linear": (interp_linear, [lambda dt: (rnd((10,), dt, 1), np.linspace(0, 9, 23).astype(dt))]),
    "bilinear": (bilinear, [lambda dt: (rnd((5, 6), dt, 1), np.linspace(0, 4, 7).astype(dt),
                                        np.linspace(0.2, 5, 7).astype(dt))]),
    "zscore": (zscore, [_args_x((8, 3))]),
    "discounted_returns": (discounted_returns, [_args_x((2, 6))]),
    "rotate_points": (rotate_points, [lambda dt: (rnd((5, 2), dt, 1), 0.3)]),
    "relu_grad_step": (relu_grad_step, [lambda dt: (rnd((4, 3), dt, 1), rnd((10, 4), dt, 2), rnd((10, 3), dt, 3),
                                                    0.1)]),
    "ema_weights": (ema_weights, [_args_x((3, 8))]),
    "accuracy": (accuracy, [lambda dt: (rnd((6, 4), dt, 1), np.array([0, 1, 2, 3, 0, 1]))]),
    "topk_mask": (topk_mask, [_args_x((4, 6))]),
}

# looser tolerances where the computation amplifies rounding (cancellation, exp of large values)
TOL = {
    "pairwise_distances": ({np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9},
                           {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}),
    "black_scholes": ({np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-9},
                      {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}),
    "black_scholes_poly": ({np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-9},
                           {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}),
    "cumulative_returns": ({np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}, ATOL),
    "zscore": ({np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}, ATOL),
    "relu_grad_step": ({np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}, ATOL),
}


XFAIL: dict = {}  # (name, dtype name) -> an xfail mark for a known bug


def _params():
    out = []
    for name, (fn, factories) in CASES.items():
        for i, _ in enumerate(factories):
            for dt, dname in zip(DTYPES, DT_IDS):
                mark = XFAIL.get((name, dname))
                out.append(pytest.param(name, i, dt, id=f"{name}-{i}-{dname}", marks=[mark] if mark else []))
    return out


@pytest.mark.parametrize("name,case,dt", _params())
def test_everyday(name, case, dt):
    fn, factories = CASES[name]
    args = factories[case](dt)
    rtol, atol = TOL.get(name, (RTOL, ATOL))
    if dt == np.float32:  # float64 results computed from float32 inputs carry float32 rounding
        rtol = {k: rtol[np.dtype(np.float32)] for k in rtol}
        atol = {k: atol[np.dtype(np.float32)] for k in atol}
    check(fn, *args, rtol=rtol, atol=atol)


def test_every_everyday_function_has_a_case():
    """Each workload defined in this file is compared with numpy by a case (a new one without a case fails)."""
    import inspect
    import sys
    here = sys.modules[__name__]
    defined = {name for name, f in vars(here).items() if inspect.isfunction(f) and f.__module__ == __name__
               and not name.startswith(("_", "test_")) and name != "rnd"}
    used = {fn.__name__ for fn, _ in CASES.values()}
    assert defined - used == set(), f"workloads without a case: {sorted(defined - used)}"
    assert all(factories for _, factories in CASES.values())
    stale = [k for k in XFAIL if k[0] not in CASES or k[1] not in DT_IDS]
    assert not stale, f"xfail marks for cases that do not exist: {stale}"


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_everyday_on_strided_views(dt):
    x = rnd((8, 32), dt, 7)
    check(softmax, x[::2, ::-2], rtol=RTOL, atol=ATOL)
    check(layernorm, x.T[:, :5], rnd((5,), dt, 8), rnd((5,), dt, 9), rtol=RTOL, atol=ATOL)
    check(gelu_tanh, x[:, 3], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_black_scholes_constants_inline(dt):
    """The same formulas with the scalars as literals (weakly typed: float32 stays float32)."""
    s, k, t = (rnd((32,), dt, i, positive=True, scale=50 if i < 3 else 1) for i in (1, 2, 3))
    check(lambda a, b, c: black_scholes(a, b, c, 0.02, 0.3), s, k, t, rtol=TOL["black_scholes"][0],
          atol=TOL["black_scholes"][1])


def test_softmax_extreme_values():
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, 0.0, 1.0], [3.0, 3.0, 3.0]])
    check(softmax, x, rtol=RTOL, atol=ATOL)
    check(log_softmax, x, rtol=RTOL, atol=ATOL)
    check(logsumexp, x, rtol=RTOL, atol=ATOL)
    check(softmax, x.astype(np.float32), rtol=RTOL, atol=ATOL)
