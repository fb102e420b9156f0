"""The cost model: boosted trees (XGBoost) that score candidate schedules, higher = predicted faster.

Design, and why:
  * Ranking, not regression (objective "rank", XGBoost `rank:pairwise`): the search only needs the order
    of candidates, and a kernel's absolute time depends on its shape and the machine. Pairs are formed
    only inside a group (one workload), so records of other shapes of the same kind pool into one fit
    without normalising their times: that is the transfer. Labels are -log(cost) rescaled to [0, 1]
    within each group (monotone, so only the order inside a group matters). "reg" (squared error on
    -log cost minus its group mean) is kept for comparison.
  * Trees: features mix log sizes, counts and flags; trees need no scaling and capture interactions.
  * Cheap fits (16 rounds, depth 4, 32 histogram bins; pairs formed from the 32 best-predicted points of
    a group, the end the search acts on, instead of all pairs): the model is refit after every measured
    batch, so a fit must cost far less than measuring. The 8-member ensemble refits on 500 rows x 100
    features in about 0.2-0.25 s on one thread (`benchmarks/bench_search_synthetic.py --timing`). Fewer
    pairs (8) fit faster but order held-out points much worse (Spearman ~0.6 against ~0.83).
  * `Ensemble`: members fit on bootstrap resamples (within groups, so every group keeps its size).
    They agree where data are dense and disagree where they are thin; ranking a batch by one member
    drawn at random (Thompson sampling) explores in proportion to that disagreement, with no
    exploration constant to tune.
  * Scores are centred (each fitted member's mean score over its training rows is subtracted), so the
    members' `mean` and `std` compare like with like; a ranking model's raw margin has no fixed offset.
  * A model with nothing to learn from (fewer than two distinct costs in every group) scores every
    point 0: callers fall back to random order rather than special-casing.
"""
from __future__ import annotations

import numpy as np
import xgboost as xgb

OBJECTIVES = ("rank", "reg")


def group_codes(groups, n: int) -> np.ndarray:
    """Per-row group labels (any hashable values) as integer codes 0..g-1; None: one group."""
    if groups is None:
        return np.zeros(n, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must give one label per row ({n}), got shape {groups.shape}")
    return np.unique(groups, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _check_xy(X, y):
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (rows, features) with one cost per row: X {X.shape}, y {y.shape}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("costs must be finite and positive (exclude failed trials before fitting)")
    return X, y


class CostModel:
    """One boosted-tree model. `fit(X, y, groups)`: y are measured costs in seconds (lower is better),
    groups one label per row (the workload each record belongs to; None: all one workload).
    `predict(X)`: scores, higher = predicted faster; only their order is meaningful."""

    def __init__(self, objective: str = "rank", seed: int = 0, nthread: int = 1, *, rounds: int = 16,
                 depth: int = 4, eta: float = 0.3, max_bin: int = 32, pair_method: str = "topk",
                 pairs: int = 32):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective, self.seed, self.nthread, self.rounds = objective, int(seed), int(nthread), int(rounds)
        self.params = {
            "objective": "rank:pairwise" if objective == "rank" else "reg:squarederror",
            "max_depth": int(depth), "eta": float(eta), "max_bin": int(max_bin), "tree_method": "hist",
            "min_child_weight": 1.0, "nthread": self.nthread, "seed": self.seed % 2**31, "verbosity": 0,
        }
        if objective == "rank":
            # topk: each of the `pairs` best-predicted points is paired with every other point of its group
            self.params["lambdarank_pair_method"] = pair_method
            self.params["lambdarank_num_pair_per_sample"] = int(pairs)
        self.booster: xgb.Booster | None = None
        self.n_features: int | None = None
        self._offset = 0.0

    @property
    def fitted(self) -> bool:
        return self.booster is not None

    def labels(self, y: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The training targets: per group, -log(cost) rescaled to [0, 1] ("rank") or centred ("reg")."""
        s = -np.log(y)
        out = np.zeros_like(s)
        for g in np.unique(codes):
            m = codes == g
            sg = s[m]
            if self.objective == "rank":
                span = sg.max() - sg.min()
                out[m] = (sg - sg.min()) / span if span > 0 else 0.0
            else:
                out[m] = sg - sg.mean()
        return out

    def fit(self, X, y, groups=None) -> "CostModel":
        X, y = _check_xy(X, y)
        codes = group_codes(groups, len(y))
        self.n_features = X.shape[1]
        self.booster, self._offset = None, 0.0
        order = np.argsort(codes, kind="stable")  # XGBoost wants each group's rows contiguous
        X, y, codes = X[order], y[order], codes[order]
        lab = self.labels(y, codes)
        informative = [g for g in np.unique(codes) if np.ptp(lab[codes == g]) > 0]
        if not informative:
            return self  # nothing to order: predict() scores everything 0
        dm = xgb.DMatrix(X, label=lab.astype(np.float32), nthread=self.nthread)
        if self.objective == "rank":
            dm.set_group(np.bincount(codes))
        self.booster = xgb.train(self.params, dm, num_boost_round=self.rounds)
        self._offset = float(np.mean(self._raw(X)))
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(X), dtype=np.float64).reshape(-1)

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"X must be (rows, features), got shape {X.shape}")
        if self.booster is None:
            return np.zeros(X.shape[0])
        if X.shape[1] != self.n_features:
            raise ValueError(f"model was fit on {self.n_features} features, got {X.shape[1]}")
        if X.shape[0] == 0:
            return np.zeros(0)
        return self._raw(X) - self._offset


class Ensemble:
    """`n` CostModels fit on bootstrap resamples of the records (drawn within each group).
    `sample(rng)`: one member at random (Thompson sampling); `mean(X)`, `std(X)`: over the members."""

    def __init__(self, n: int = 8, seed: int = 0, objective: str = "rank", nthread: int = 1, **params):
        if n < 1:
            raise ValueError("an ensemble needs at least one member")
        self.n, self.seed = int(n), int(seed)
        self.members = [CostModel(objective, seed=self.seed * 1009 + i, nthread=nthread, **params)
                        for i in range(self.n)]

    @property
    def fitted(self) -> bool:
        return any(m.fitted for m in self.members)

    def fit(self, X, y, groups=None) -> "Ensemble":
        X, y = _check_xy(X, y)
        codes = group_codes(groups, len(y))
        rows = [np.flatnonzero(codes == g) for g in np.unique(codes)]
        rng = np.random.default_rng([self.seed, 0x5EED])
        for m in self.members:
            idx = np.concatenate([r[rng.integers(len(r), size=len(r))] for r in rows]) if rows else np.zeros(0, int)
            m.fit(X[idx], y[idx], codes[idx])
        return self

    def sample(self, rng: np.random.Generator) -> CostModel:
        return self.members[int(rng.integers(self.n))]

    def _all(self, X) -> np.ndarray:
        return np.stack([m.predict(X) for m in self.members])

    def mean(self, X) -> np.ndarray:
        return self._all(X).mean(axis=0)

    def std(self, X) -> np.ndarray:
        return self._all(X).std(axis=0)
