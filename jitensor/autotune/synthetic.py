"""Synthetic search spaces with a hidden cost function, for testing and benchmarking the search loop.

A real kernel is too slow and too noisy to tell a good search from a lucky one over many seeds; a
synthetic space is measured in microseconds and its optimum is known by enumeration. The hidden cost is
built to look like a schedule's: power-of-two knobs (tile sizes, unroll factors) with a sweet spot each,
categorical knobs (loop orders) with per-choice effects that also move a tile's sweet spot, pairwise
interactions (two tiles whose product should fit a cache: a diagonal valley that changing one knob at a
time climbs out of), an illegal corner rejected by `legal`, a region that fails when measured (None, as
a compile error would), and multiplicative noise.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .space import Knob, Point, Space


@dataclass
class Synthetic:
    space: Space
    log_cost: Callable[[np.ndarray], np.ndarray] = field(repr=False)  # (m, knobs) indices -> log cost, nan = fails
    noise: float
    optimum: float              # the lowest noise-free cost of a legal point that does not fail
    optimum_point: Point
    near_fraction: float        # the fraction of legal points within 5% of the optimum (random search's odds)

    def cost(self, point: Point) -> float | None:
        """The noise-free cost of `point` in seconds, None where measuring it fails."""
        lc = float(self.log_cost(np.asarray([point]))[0])
        return None if np.isnan(lc) else 1e-3 * float(np.exp(lc))

    def measure_fn(self, seed: int = 0, noise: float | None = None):
        """`measure(points) -> list[float | None]`: costs with multiplicative lognormal noise, seeded."""
        rng = np.random.default_rng(seed)
        sigma = self.noise if noise is None else noise

        def measure(points):
            out = []
            for p in points:
                c = self.cost(p)
                out.append(None if c is None else c * float(np.exp(sigma * rng.normal())))
            return out
        return measure

    def featurize(self, points) -> np.ndarray:
        """The knob encoding alone (`space.encode`): the features a knob-only cost model sees."""
        if not len(points):
            return np.zeros((0, len(self.space.knobs)), np.float32)
        return np.stack([self.space.encode(p) for p in points])


def make_space(sizes=(6, 6, 6, 6, 6), seed: int = 0, *, n_categorical: int = 1, n_interactions: int = 2,
               noise: float = 0.02, spread: float = 20.0, fail: bool = True,
               illegal: bool = True) -> Synthetic:
    """A space with one knob per entry of `sizes` (that many choices each); the last `n_categorical`
    knobs are categorical ("order0", ...), the others powers of two (1, 2, 4, ...). At least two numeric
    knobs. The default point (all zeros) is legal and does not fail."""
    rng = np.random.default_rng(seed)
    sizes = tuple(int(s) for s in sizes)
    n_num = len(sizes) - n_categorical
    if n_num < 2 or n_categorical < 0:
        raise ValueError("make_space needs at least two numeric knobs")
    knobs = [Knob(f"t{i}", tuple(2 ** j for j in range(s))) for i, s in enumerate(sizes[:n_num])]
    knobs += [Knob(f"c{i}", tuple(f"order{j}" for j in range(s))) for i, s in enumerate(sizes[n_num:])]
    centre = np.array([rng.uniform(0.3, 0.9) * (s - 1) for s in sizes[:n_num]])
    curv = np.exp(rng.uniform(np.log(0.01), np.log(0.3), size=n_num))  # some knobs barely matter
    cat = [rng.uniform(0, 0.6, size=s) for s in sizes[n_num:]]
    shift = [(int(rng.integers(n_num)), rng.uniform(-1.5, 1.5, size=s)) for s in sizes[n_num:]]
    pairs = []
    for _ in range(n_interactions):
        i, j = (int(v) for v in rng.choice(n_num, size=2, replace=False))
        pairs.append((i, j, rng.uniform(0.4, 0.8) * (sizes[i] + sizes[j] - 2), rng.uniform(0.1, 0.3)))
    ill_limit = sizes[0] + sizes[1] - 3  # both of the first two tiles near their largest: illegal
    fail_knob = n_num - 1                 # the largest choice of the last tile with t0 = 1: fails

    def log_cost(P: np.ndarray) -> np.ndarray:
        P = np.asarray(P, dtype=np.int64).reshape(-1, len(sizes))
        x = P.astype(np.float64)
        lc = (curv * (x[:, :n_num] - centre) ** 2).sum(axis=1)
        for c, (eff, (t, sh)) in enumerate(zip(cat, shift)):
            v = P[:, n_num + c]
            lc += eff[v] + 0.1 * ((x[:, t] - centre[t] - sh[v]) ** 2 - (x[:, t] - centre[t]) ** 2)
        for i, j, target, w in pairs:
            lc += w * (x[:, i] + x[:, j] - target) ** 2
        if fail:
            lc = np.where((P[:, fail_knob] == sizes[fail_knob] - 1) & (P[:, 0] == 0), np.nan, lc)
        return lc

    def is_legal(values):
        if not illegal:
            return True
        return knobs[0].choices.index(values["t0"]) + knobs[1].choices.index(values["t1"]) <= ill_limit

    space = Space(knobs, to_steps=lambda values: [("synthetic", dict(values))], is_legal=is_legal)
    grid = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.int64)
    if illegal:
        grid = grid[grid[:, 0] + grid[:, 1] <= ill_limit]
    raw = log_cost(grid)
    ok = ~np.isnan(raw)
    lo, hi = np.nanmin(raw), np.nanmax(raw)
    scale = np.log(spread) / (hi - lo)  # the slowest legal point is `spread` times the fastest

    def scaled(P):
        return (log_cost(P) - lo) * scale
    lc = scaled(grid)
    best = int(np.argmin(np.where(ok, lc, np.inf)))
    optimum = 1e-3 * float(np.exp(lc[best]))
    near = float(np.mean(ok & (1e-3 * np.exp(np.where(ok, lc, np.inf)) <= optimum * 1.05)))
    return Synthetic(space, scaled, noise, optimum, tuple(int(v) for v in grid[best]), near)
