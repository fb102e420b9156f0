"""jitensor demo: compile a handful of everyday numpy functions, check them against numpy, time both.

    python examples/demo.py
"""
import time

import numpy as np

import jitensor


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x, g, b):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def mlp_layer(x, w, b):
    return np.maximum(x @ w + b, 0)


def pairwise_dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def best_of(f, *args, reps=5):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    rng = np.random.default_rng(0)
    f32 = np.float32
    cases = [
        ("gelu 4M", gelu, (rng.standard_normal(1 << 22).astype(f32),)),
        ("softmax 2048x1024", softmax, (rng.standard_normal((2048, 1024)).astype(f32),)),
        ("layernorm 4096x1024", layernorm, (rng.standard_normal((4096, 1024)).astype(f32),
                                            rng.standard_normal(1024).astype(f32), rng.standard_normal(1024).astype(f32))),
        ("mlp layer 256x512x512", mlp_layer, (rng.standard_normal((256, 512)).astype(f32),
                                              rng.standard_normal((512, 512)).astype(f32), rng.standard_normal(512).astype(f32))),
        ("pairwise dist 256x128x32", pairwise_dist, (rng.standard_normal((256, 32)).astype(f32),
                                                     rng.standard_normal((128, 32)).astype(f32))),
    ]
    print(f"{'function':28s} {'compile':>9s} {'numpy':>10s} {'jitensor':>10s} {'speed-up':>9s}  max error")
    for name, fn, args in cases:
        jf = jitensor.jit(fn)
        t = time.perf_counter()
        out = jf(*args)
        compile_s = time.perf_counter() - t
        ref = fn(*args)
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))  # relative to the result's scale
        tn, tj = best_of(fn, *args), best_of(jf, *args)
        print(f"{name:28s} {compile_s * 1e3:7.0f}ms {tn * 1e3:8.2f}ms {tj * 1e3:8.2f}ms {tn / tj:8.1f}x  {err:.1e}")


if __name__ == "__main__":
    main()
