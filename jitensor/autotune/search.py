"""Candidate proposal (simulated annealing over a cost model) and the measure-refit loop, over any Space.

Design, and why:
  * `propose` anneals parallel chains on the model's scores, `space.mutate` as the move. Measuring is the
    expensive step and scoring is cheap, so it scores a pool of some thousand distinct points and hands
    back only the few worth measuring. Chains start from the best measured points (to refine them) and
    from random ones (to find other basins); the temperature falls linearly from 0.3 to 0, in units of
    the spread of the starting scores (a ranking model's scores have no fixed scale). 32 chains anneal
    deeper than 128 for the same pool and find better points on the synthetic spaces. Spaces no
    bigger than the pool are scored exhaustively instead: exact, and cheaper than walking them.
  * A diversity filter then takes the best-scored points but skips any within Hamming distance 1 of one
    already chosen, while enough candidates remain: a model's top few are often one knob apart, and a
    batch of near-twins measures one idea eight times.
  * Proposals never include an illegal point or an excluded (already measured) one, so no trial is
    wasted re-measuring; chains may walk through measured points, only not return them.
  * `tune_space` measures the default point first, so every result has a baseline and the default wins
    ties: a candidate replaces the best only when strictly faster. Callers pass medians of repeated
    runs, so "strictly" already means "by more than the median moved"; a tie going to the untuned
    schedule keeps a noisy equal from being reported as a gain.
  * Strategies: "thompson" ranks each batch by one bootstrap member drawn at random (explores where the
    members disagree), "greedy" by the members' mean, "epsilon" is greedy with a random fraction,
    "random" ignores the model (the baseline every other must beat). Until `init` costs are known the
    model has nothing to learn from and batches are random; with a `prior` (records of other workloads
    of the same kind, pooled as separate ranking groups) the model guides from the first batch.
  * Features: `featurize(points)` returns the model's whole feature row per point and is used as given
    (no `space.encode` appended): the caller owns the layout, which must match `prior`'s records.
    `knob_features(space)` is the featurizer for a caller with nothing but the knobs.
  * Everything random draws from one generator seeded by `seed` (XGBoost runs single-threaded and
    seeded), so the same seed, space and measurements give the same sequence of points.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .model import Ensemble, group_codes
from .space import Point, Space

STRATEGIES = ("thompson", "greedy", "epsilon", "random")
_ENUMERATE_LIMIT = 1 << 20  # spaces up to this size may be listed when random sampling runs dry


def knob_features(space: Space) -> Callable[[Sequence[Point]], np.ndarray]:
    """A featurizer of the knob values alone (`space.encode` per point)."""
    width = len(space.knobs)

    def featurize(points):
        if not len(points):
            return np.zeros((0, width), np.float32)
        return np.stack([space.encode(p) for p in points])
    return featurize


# --- proposal ------------------------------------------------------------------------------------------

def _random_legal(space: Space, rng: np.random.Generator, tries: int = 100) -> Point | None:
    for _ in range(tries):
        p = space.random_point(rng)
        if space.legal(p):
            return p
    return None


def _legal_neighbour(space: Space, p: Point, rng: np.random.Generator, tries: int = 8) -> Point:
    for _ in range(tries):
        q = space.mutate(p, rng)
        if space.legal(q):
            return q
    return p


def random_points(space: Space, k: int, rng: np.random.Generator, exclude: Iterable[Point] = ()) -> list[Point]:
    """Up to `k` distinct legal points not in `exclude`, uniformly at random; fewer only when the space
    has fewer left (small spaces are listed once rejection sampling stops finding new points)."""
    seen = set(exclude)
    out: list[Point] = []
    tries = 0
    while len(out) < k and tries < 64 * k + 256:
        tries += 1
        p = space.random_point(rng)
        if p not in seen and space.legal(p):
            out.append(p)
            seen.add(p)
    if len(out) < k and len(space) <= _ENUMERATE_LIMIT:
        rest = [p for p in itertools.product(*[range(len(kn.choices)) for kn in space.knobs])
                if p not in seen and space.legal(p)]
        if rest:
            pick = rng.choice(len(rest), size=min(k - len(out), len(rest)), replace=False)
            out += [rest[int(i)] for i in pick]
    return out


def diverse(ranked: Sequence[Point], n: int, min_distance: int = 2) -> list[Point]:
    """The first `n` of `ranked` (best first), skipping points closer than `min_distance` (Hamming) to
    one already taken; skipped points fill in, best first, when too few far-apart ones remain."""
    if n <= 0 or not ranked:
        return []
    if min_distance <= 1 or len(ranked) <= n:
        return list(ranked[:n])
    arr = np.asarray(ranked, dtype=np.int64)
    taken: list[int] = []
    for i in range(len(arr)):
        if not taken or int((arr[taken] != arr[i]).sum(axis=1).min()) >= min_distance:
            taken.append(i)
            if len(taken) == n:
                break
    if len(taken) < n:
        chosen = set(taken)
        taken += [i for i in range(len(arr)) if i not in chosen][: n - len(taken)]
    return [ranked[i] for i in taken]


def propose(space: Space, score_fn: Callable[[list[Point]], Sequence[float]], n: int, rng: np.random.Generator,
            exclude=frozenset(), pool: int = 2048, steps: int | None = None, *, chains: int = 32,
            starts: Sequence[Point] = (), temperature: tuple[float, float] = (0.3, 0.0),
            min_distance: int = 2, patience: int = 24) -> list[Point]:
    """Up to `n` distinct legal points, none in `exclude`, that `score_fn` (points -> scores, higher is
    better; called on batches, each point scored once) rates best, diversified (see `diverse`).

    Simulated annealing: `chains` parallel chains (up to half of them started from `starts`, e.g. the
    best measured points, the rest from random points) each take up to `steps` moves (default: enough
    for `pool` moves in all), stopping once `pool` distinct points are scored or the best 2n have not
    changed for `patience` steps. A space of at most `pool` points is scored exhaustively instead."""
    if n <= 0:
        return []
    scores: dict[Point, float] = {}

    def score(points: list[Point]) -> np.ndarray:
        new = [p for p in dict.fromkeys(points) if p not in scores]
        if new:
            s = np.asarray(score_fn(new), dtype=np.float64).reshape(-1)
            if s.shape[0] != len(new):
                raise ValueError(f"score_fn returned {s.shape[0]} scores for {len(new)} points")
            scores.update(zip(new, np.where(np.isnan(s), -np.inf, s)))
        return np.array([scores[p] for p in points], dtype=np.float64)

    if len(space) <= pool:
        every = [p for p in itertools.product(*[range(len(k.choices)) for k in space.knobs])
                 if p not in exclude and space.legal(p)]
        if every:
            score(every)
    else:
        _anneal(space, score, scores, n, rng, exclude, pool, steps, chains, starts, temperature, patience)
    ranked = [p for p in scores if p not in exclude]
    order = np.argsort(-np.array([scores[p] for p in ranked]), kind="stable")
    return diverse([ranked[i] for i in order], n, min_distance)


def _anneal(space, score, scores, n, rng, exclude, pool, steps, chains, starts, temperature, patience):
    seeds = [p for p in dict.fromkeys(tuple(int(v) for v in p) for p in starts) if space.legal(p)]
    cur = seeds[: chains // 2]
    while len(cur) < chains:
        p = _random_legal(space, rng)
        if p is None:
            break
        cur.append(p)
    if not cur:
        return
    s_cur = score(cur)
    finite = s_cur[np.isfinite(s_cur)]
    scale = float(finite.std()) if finite.size > 1 and finite.std() > 0 else 1.0
    steps = steps if steps is not None else max(1, math.ceil(pool / len(cur)))
    t_hi, t_lo = temperature
    top: list[float] = []  # the best 2n scores of returnable points (a min-heap)
    keep = 2 * n
    quiet = 0

    def note(points) -> bool:
        changed = False
        for p in points:
            if p in exclude:
                continue
            s = scores[p]
            if len(top) < keep:
                heapq.heappush(top, s)
                changed = True
            elif s > top[0]:
                heapq.heapreplace(top, s)
                changed = True
        return changed

    note(dict.fromkeys(cur))
    for step in range(steps):
        if len(scores) >= pool:
            break
        temp = (t_hi + (t_lo - t_hi) * step / steps) * scale
        before = len(scores)
        nxt = [_legal_neighbour(space, p, rng) for p in cur]
        s_nxt = score(nxt)
        u = rng.random(len(cur))
        with np.errstate(over="ignore", invalid="ignore"):
            gain = np.nan_to_num(s_nxt - s_cur, nan=0.0)  # -inf to -inf: a neutral move
            accept = (gain >= 0) | (u < np.exp(gain / temp)) if temp > 0 else gain >= 0
        cur = [q if a else p for p, q, a in zip(cur, nxt, accept)]
        s_cur = np.where(accept, s_nxt, s_cur)
        fresh = list(scores)[before:]
        quiet = 0 if note(fresh) else quiet + 1
        if quiet >= patience:
            break


# --- the loop ------------------------------------------------------------------------------------------

@dataclass
class Result:
    best: Point | None                  # None only when every trial failed
    best_cost: float | None             # seconds
    default_cost: float | None          # None when the default failed
    trials: list = field(default_factory=list)   # (point, cost or None) in trial order, history first
    curve: list = field(default_factory=list)    # best cost after each trial (inf before any success)
    seconds: float = 0.0                # wall time of this call (search, fitting and measuring)
    stopped_early: bool = False

    @property
    def speedup(self) -> float | None:
        if self.best_cost is None or self.default_cost is None:
            return None
        return self.default_cost / self.best_cost


def _clean(c) -> float | None:
    """A measured cost, or None for a failed trial (None, nan, inf or not positive)."""
    if c is None:
        return None
    c = float(c)
    return c if math.isfinite(c) and c > 0 else None


def tune_space(space: Space, measure: Callable[[list[Point]], Sequence[float | None]],
               featurize: Callable[[list[Point]], np.ndarray], trials: int, *, batch: int = 8, seed: int = 0,
               strategy: str = "thompson", early_stop: int | None = None, history=None, on_trial=None,
               prior=None, epsilon: float = 0.1, ensemble: int = 8, pool: int = 2048, init: int | None = None,
               model_params: dict | None = None) -> Result:
    """Search `space` for the fastest point with at most `trials` trials in all (`history` included).

    measure(points) -> costs in seconds, None for a failed trial (nan, inf and costs <= 0 count as failed).
    featurize(points) -> (len(points), features) array: the model's input, used as given.
    history: (point, cost) pairs already measured: they count as trials, are never measured again, and
        seed the model and the best (resuming an interrupted run with the same budget).
    prior: (X, y, groups) records of other workloads of the same kind (features as featurize makes
        them, costs, one group label per row), pooled into every fit as groups of their own (transfer).
    on_trial(trial_index, point, cost, best_cost): after each new trial (index counts history too).
    early_stop: stop once this many trials in a row have not improved the best by more than 1%.
    init: successful trials before the model guides (default `batch`; 0 with a prior).
    model_params: passed to `Ensemble` (e.g. {"objective": "reg"}).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    default = tuple(int(v) for v in space.default)
    if not space.legal(default):
        raise ValueError(f"the space's default point {default} is not legal")
    init = (0 if prior is not None else batch) if init is None else init
    prior_data = _prior(prior)

    res = Result(None, None, None)
    measured: dict[Point, float | None] = {}
    anchor = {"cost": None, "at": 0}  # the best at its last >1% improvement, and the trial count then
    feats: dict[Point, np.ndarray] = {}      # rows of measured points (kept)
    scratch: dict[Point, np.ndarray] = {}    # rows of scored candidates (a bounded cache)
    width = [None]

    def record(p: Point, c: float | None, callback: bool):
        measured[p] = c
        res.trials.append((p, c))
        if p == default and res.default_cost is None:
            res.default_cost = c
        if c is not None and (res.best_cost is None or c < res.best_cost):
            res.best, res.best_cost = p, c
        if c is not None and (anchor["cost"] is None or c < anchor["cost"] * 0.99):
            anchor["cost"], anchor["at"] = c, len(res.trials)
        res.curve.append(res.best_cost if res.best_cost is not None else math.inf)
        if callback and on_trial is not None:
            on_trial(len(res.trials) - 1, p, c, res.best_cost)

    def rows(points: list[Point]) -> np.ndarray:
        missing = [p for p in dict.fromkeys(points) if p not in feats and p not in scratch]
        if missing:
            F = np.asarray(featurize(missing), dtype=np.float32)
            if F.ndim != 2 or F.shape[0] != len(missing):
                raise ValueError(f"featurize returned shape {F.shape} for {len(missing)} points")
            if width[0] is None:
                width[0] = F.shape[1]
            elif F.shape[1] != width[0]:
                raise ValueError(f"featurize returned {F.shape[1]} features, earlier {width[0]}")
            if len(scratch) + len(missing) > 50_000:  # bound the cache; keep what this call returns
                keep = {p: scratch[p] for p in points if p in scratch}
                scratch.clear()
                scratch.update(keep)
            scratch.update(zip(missing, F))
        for p in points:
            if p in measured and p not in feats and p in scratch:
                feats[p] = scratch[p]
        return np.stack([feats[p] if p in feats else scratch[p] for p in points])

    for p, c in history or ():
        p = tuple(int(v) for v in p)
        if p not in measured:
            record(p, _clean(c), callback=False)

    while len(res.trials) < trials:
        if early_stop is not None and res.trials and len(res.trials) - anchor["at"] >= early_stop:
            res.stopped_early = True
            break
        k = min(batch, trials - len(res.trials))
        first = [default] if default not in measured else []
        cands = first + _choose(space, k - len(first), rng, strategy, measured, set(measured) | set(first), rows,
                                prior_data, init, epsilon, ensemble, pool, model_params)
        if not cands:
            break  # every legal point has been measured
        costs = list(measure(list(cands)))
        if len(costs) != len(cands):
            raise ValueError(f"measure returned {len(costs)} costs for {len(cands)} points")
        for p, c in zip(cands, costs):
            record(p, _clean(c), callback=True)
    res.seconds = time.perf_counter() - t_start
    return res


def _prior(prior):
    if prior is None:
        return None
    X, y, groups = prior
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    codes = group_codes(groups, len(y))
    ok = np.isfinite(y) & (y > 0)
    return X[ok], y[ok], codes[ok]


def _choose(space, k, rng, strategy, measured, done, rows, prior, init, epsilon, ensemble, pool, model_params):
    """`k` new points to measure, none in `done`: random until the model has data, else proposed."""
    if k <= 0:
        return []
    good = sorted(((c, i, p) for i, (p, c) in enumerate(measured.items()) if c is not None))
    if strategy == "random" or len(good) < init or (prior is None and len({c for c, _, _ in good}) < 2):
        return random_points(space, k, rng, exclude=done)
    X = rows([p for _, _, p in good]) if good else None
    y = np.array([c for c, _, _ in good])
    groups = np.zeros(len(good), dtype=np.int64)
    if prior is not None:
        Xp, yp, gp = prior
        if X is not None and Xp.shape[1] != X.shape[1]:
            raise ValueError(f"prior records have {Xp.shape[1]} features, featurize makes {X.shape[1]}")
        X = Xp if X is None else np.concatenate([Xp, X])
        y = np.concatenate([yp, y])
        groups = np.concatenate([gp, np.full(len(good), gp.max() + 1 if len(gp) else 0)])
    ens = Ensemble(ensemble, seed=int(rng.integers(2**31)), **(model_params or {})).fit(X, y, groups)
    model = ens.sample(rng).predict if strategy == "thompson" else ens.mean
    n_random = int(rng.binomial(k, epsilon)) if strategy == "epsilon" else 0
    starts = [p for _, _, p in good[:16]]
    picks = propose(space, lambda pts: model(rows(pts)), k - n_random, rng, exclude=done, pool=pool,
                    starts=starts)
    return picks + random_points(space, k - len(picks), rng, exclude=done | set(picks))
