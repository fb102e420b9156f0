"""Cost of the numpy hooks around a trace (np.asarray/np.random replacements, random-state check).

Traces layernorm repeatedly with the hooks and with a no-op in their place, interleaved in one
process, and prints the medians and their ratio:

    python benchmarks/trace_hooks.py
"""
import contextlib
import time

import numpy as np

import jitensor
from jitensor.frontend import numpy_hooks


def layernorm(x, g, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def main(reps=9, n=100):
    jf = jitensor.jit(layernorm, cache=False)
    x, g, b = np.ones((64, 128), np.float32), np.ones(128, np.float32), np.zeros(128, np.float32)
    leaves, tree, statics = jf._bind((x, g, b, 1e-5), {})
    real = numpy_hooks.tracing
    variants = {"hooks": real, "none": lambda fun, statics=(): contextlib.nullcontext()}
    times = {k: [] for k in variants}
    try:
        for _ in range(reps):
            for name, ctx in variants.items():
                numpy_hooks.tracing = ctx
                t0 = time.perf_counter()
                for _ in range(n):
                    jf._trace(leaves, tree, statics)
                times[name].append((time.perf_counter() - t0) / n)
    finally:
        numpy_hooks.tracing = real
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:6s} median trace of layernorm: {v * 1e6:.0f} us")
    print(f"ratio hooks/none: {med['hooks'] / med['none']:.2f}")


if __name__ == "__main__":
    main()
