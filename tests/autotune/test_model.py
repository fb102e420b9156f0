"""The cost model: it ranks held-out points of a synthetic space, pools workloads by group, is seeded."""
import time

import numpy as np
import pytest

from jitensor.autotune.model import CostModel, Ensemble
from jitensor.autotune.search import random_points
from jitensor.autotune.synthetic import make_space


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def records(syn, n, rng, exclude=()):
    pts = [p for p in random_points(syn.space, n, rng, exclude=exclude) if syn.cost(p) is not None]
    return pts, syn.featurize(pts), np.array(syn.measure_fn(int(rng.integers(1 << 30)))(pts))


@pytest.fixture(scope="module")
def data():
    syn = make_space((6, 6, 6, 6, 6), seed=0)
    rng = np.random.default_rng(0)
    train, X, y = records(syn, 200, rng)
    held, Xh, _ = records(syn, 400, rng, exclude=train)
    truth = np.array([syn.cost(p) for p in held])
    return syn, X, y, Xh, truth


@pytest.mark.parametrize("objective", ["rank", "reg"])
def test_ranks_held_out_points_better_than_chance(data, objective):
    _, X, y, Xh, truth = data
    scores = CostModel(objective).fit(X, y).predict(Xh)
    assert spearman(scores, -truth) > 0.5


def test_ensemble_mean_ranks_and_members_disagree(data):
    _, X, y, Xh, truth = data
    ens = Ensemble(8, seed=0).fit(X, y)
    assert spearman(ens.mean(Xh), -truth) > 0.5
    assert ens.std(Xh).shape == (len(Xh),) and ens.std(Xh).max() > 0
    rng = np.random.default_rng(0)
    drawn = {id(ens.sample(rng)) for _ in range(64)}
    assert drawn <= {id(m) for m in ens.members} and len(drawn) > 1


def test_seeded_fits_repeat_exactly(data):
    _, X, y, Xh, _ = data
    a, b = Ensemble(4, seed=3).fit(X, y), Ensemble(4, seed=3).fit(X, y)
    np.testing.assert_array_equal(a.mean(Xh), b.mean(Xh))
    assert not np.array_equal(a.mean(Xh), Ensemble(4, seed=4).fit(X, y).mean(Xh))


def test_groups_pool_workloads_of_other_scales(data):
    """Many records of another workload of the same kind, 1000x slower, pooled as their own group, help a
    model that has few records of the target workload (pairs stay inside groups, so scale is moot)."""
    syn, X, y, Xh, truth = data
    other = make_space((6, 6, 6, 6, 6), seed=0)  # same kind: the same hidden structure
    rng = np.random.default_rng(5)
    _, Xo, yo = records(other, 300, rng)
    few = slice(0, 24)
    Xp = np.concatenate([Xo, X[few]])
    yp = np.concatenate([yo * 1000.0, y[few]])
    groups = np.array(["other"] * len(yo) + ["target"] * len(y[few]))
    pooled = CostModel().fit(Xp, yp, groups).predict(Xh)
    alone = CostModel().fit(X[few], y[few]).predict(Xh)
    assert spearman(pooled, -truth) > 0.5
    assert spearman(pooled, -truth) > spearman(alone, -truth)


def test_nothing_to_learn_scores_zero_and_bad_costs_raise(data):
    _, X, _, Xh, _ = data
    m = CostModel().fit(X, np.full(len(X), 1e-3))
    assert not m.fitted and np.all(m.predict(Xh) == 0)
    assert np.all(CostModel().predict(Xh) == 0)  # unfitted
    with pytest.raises(ValueError):
        CostModel().fit(X, np.r_[np.nan, np.ones(len(X) - 1)])
    with pytest.raises(ValueError):
        CostModel().fit(X, np.ones(len(X) + 1))
    with pytest.raises(ValueError):
        CostModel("ndcg")
    fitted = CostModel().fit(X, np.linspace(1, 2, len(X)))
    with pytest.raises(ValueError):
        fitted.predict(Xh[:, :-1])


def test_scores_are_centred(data):
    _, X, y, _, _ = data
    m = CostModel().fit(X, y)
    assert abs(m.predict(X).mean()) < 1e-6


