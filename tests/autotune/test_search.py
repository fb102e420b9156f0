"""The search loop on synthetic spaces: proposals are legal, new and diverse; the loop measures the default
first, never measures a point twice, repeats under a seed, survives failed trials, stops early, resumes,
and finds a near-optimal point in fewer trials than random search."""
import itertools

import numpy as np
import pytest

from jitensor.autotune.search import Result, diverse, knob_features, propose, random_points, tune_space
from jitensor.autotune.space import Knob, Space
from jitensor.autotune.synthetic import make_space

FAST = dict(ensemble=4, pool=512)  # smaller models and pools keep the loop tests quick


@pytest.fixture(scope="module")
def syn():
    return make_space((6, 6, 6, 6, 6), seed=1)


@pytest.fixture(scope="module")
def big():
    return make_space((8, 8, 8, 8, 8, 8), seed=0)


def truth_score(s):
    return lambda pts: -s.log_cost(np.asarray(pts))  # nan (failing points) scores as the worst


def counting(fn):
    calls = []

    def score(pts):
        calls.extend(pts)
        return fn(pts)
    return score, calls


# --- propose -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["syn", "big"])  # exhaustive (7776 <= pool 8192) and annealed (8**6)
def test_propose_returns_new_legal_distinct_points(which, request):
    s = request.getfixturevalue(which)
    rng = np.random.default_rng(0)
    exclude = set(random_points(s.space, 300, rng))
    score, calls = counting(truth_score(s))
    pts = propose(s.space, score, 16, rng, exclude=exclude, pool=8192)
    assert len(pts) == 16 and len(set(pts)) == 16
    assert all(s.space.legal(p) and p not in exclude for p in pts)
    assert len(calls) == len(set(calls))  # each point scored once


def test_annealing_beats_random_sampling_of_the_same_size(big):
    """Scoring 512 of the 8**6 points, annealing on the scores ends nearer the optimum than 512 random
    points do (true log cost as the score, so the model is perfect and only the search is tested)."""
    annealed, sampled = [], []
    for seed in range(4):
        pts = propose(big.space, truth_score(big), 8, np.random.default_rng(seed), pool=512)
        annealed.append(min(big.cost(p) or np.inf for p in pts) / big.optimum)
        pts = random_points(big.space, 512, np.random.default_rng(seed))
        sampled.append(min(big.cost(p) or np.inf for p in pts) / big.optimum)
    assert np.mean(annealed) < np.mean(sampled) and np.mean(annealed) < 1.04, (annealed, sampled)


def test_annealing_starts_from_given_points(big):
    rng = np.random.default_rng(2)
    near = [big.space.mutate(big.optimum_point, rng) for _ in range(4)]
    pts = propose(big.space, truth_score(big), 4, rng, exclude={big.optimum_point}, pool=256, starts=near)
    assert min(big.cost(p) or np.inf for p in pts) <= 1.1 * big.optimum


def test_diversity_filter_skips_neighbours_while_it_can():
    ranked = [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 2)]
    assert diverse(ranked, 2) == [(0, 0, 0), (0, 1, 1)]
    assert diverse(ranked, 3) == [(0, 0, 0), (0, 1, 1), (0, 0, 1)]  # filled in, best first
    assert diverse(ranked, 9) == ranked


def test_proposals_are_diverse(big):
    pts = propose(big.space, truth_score(big), 8, np.random.default_rng(3), pool=2048)
    for a, b in itertools.combinations(pts, 2):
        assert sum(x != y for x, y in zip(a, b)) >= 2


def test_propose_from_an_exhausted_space_returns_what_is_left():
    space = Space([Knob("a", (1, 2)), Knob("b", (1, 2))], to_steps=lambda v: [])
    left = propose(space, lambda pts: np.zeros(len(pts)), 3, np.random.default_rng(0),
                   exclude={(0, 0), (0, 1)})
    assert sorted(left) == [(1, 0), (1, 1)]


# --- tune_space ----------------------------------------------------------------------------------------

def run(s, trials=40, seed=0, **kw):
    measured = []
    measure = s.measure_fn(seed)

    def m(points):
        measured.extend(points)
        return measure(points)
    res = tune_space(s.space, m, s.featurize, trials, seed=seed, **{**FAST, **kw})
    return res, measured


@pytest.mark.parametrize("strategy", ["thompson", "greedy", "epsilon", "random"])
def test_loop_measures_default_first_and_nothing_twice(syn, strategy):
    res, measured = run(syn, trials=36, strategy=strategy)
    assert isinstance(res, Result)
    assert measured[0] == syn.space.default and res.trials[0][0] == syn.space.default
    assert len(measured) == len(set(measured)) == 36
    assert all(syn.space.legal(p) for p in measured)
    assert [p for p, _ in res.trials] == measured
    assert res.default_cost == res.trials[0][1]
    assert res.best_cost == min(c for _, c in res.trials if c is not None)
    assert len(res.curve) == 36 and all(a >= b for a, b in zip(res.curve, res.curve[1:]))
    assert res.speedup > 1 and res.seconds > 0


def test_seeded_runs_repeat_exactly(syn):
    a, _ = run(syn, trials=32, seed=7)
    b, _ = run(syn, trials=32, seed=7)
    c, _ = run(syn, trials=32, seed=8)
    assert a.trials == b.trials
    assert [p for p, _ in a.trials] != [p for p, _ in c.trials]


def test_failed_trials_are_recorded_and_never_retried(syn):
    rng = np.random.default_rng(0)
    flaky = set()

    def measure(points):
        out = []
        for i, p in enumerate(points):
            if p != syn.space.default and rng.random() < 0.3:
                flaky.add(p)
                out.append([None, float("nan"), float("inf"), -1.0][i % 4])
            else:
                out.append(syn.cost(p))
        return out
    res = tune_space(syn.space, measure, syn.featurize, 40, seed=0, **FAST)
    points = [p for p, _ in res.trials]
    assert len(points) == len(set(points)) == 40
    assert flaky and all(c is None for p, c in res.trials if p in flaky)
    assert res.best not in flaky and res.best_cost is not None


def test_all_failed_gives_no_best(syn):
    res = tune_space(syn.space, lambda pts: [None] * len(pts), syn.featurize, 12, **FAST)
    assert res.best is None and res.best_cost is None and res.default_cost is None
    assert len(res.trials) == 12 and res.curve == [np.inf] * 12 and res.speedup is None


def test_default_wins_ties(syn):
    res = tune_space(syn.space, lambda pts: [1e-3] * len(pts), syn.featurize, 16, **FAST)
    assert res.best == syn.space.default and res.speedup == 1.0


def test_early_stop(syn):
    res = tune_space(syn.space, lambda pts: [1e-3] * len(pts), syn.featurize, 200, early_stop=20, **FAST)
    assert res.stopped_early and 20 <= len(res.trials) < 20 + 8  # stops at the first batch boundary
    res, _ = run(syn, trials=24, early_stop=1000)
    assert not res.stopped_early and len(res.trials) == 24


def test_history_resumes_without_remeasuring(syn):
    first, _ = run(syn, trials=24, seed=3)
    res, measured = run(syn, trials=48, seed=4, history=first.trials)
    assert res.trials[:24] == first.trials
    assert len(measured) == 24 and not set(measured) & {p for p, _ in first.trials}
    assert syn.space.default not in measured  # already in the history
    assert res.best_cost == min(c for _, c in res.trials if c is not None)
    done, measured = run(syn, trials=24, history=first.trials)
    assert measured == [] and done.best == first.best


def test_on_trial_reports_every_new_trial(syn):
    first, _ = run(syn, trials=8, seed=3)
    seen = []
    res, _ = run(syn, trials=20, history=first.trials, on_trial=lambda *a: seen.append(a))
    assert [i for i, *_ in seen] == list(range(8, 20))
    assert [(p, c) for _, p, c, _ in seen] == res.trials[8:]
    assert [b for *_, b in seen] == res.curve[8:]


def test_prior_records_guide_the_first_batch(syn):
    """With records of the same kind of workload (another seed's noise, 5x slower), the model guides from the
    first batch after the default: it should beat a random first batch."""
    rng = np.random.default_rng(0)
    pts = [p for p in random_points(syn.space, 300, rng) if syn.cost(p) is not None]
    prior = (syn.featurize(pts), 5 * np.array(syn.measure_fn(9)(pts)), np.zeros(len(pts)))
    guided, _ = run(syn, trials=8, prior=prior)
    blind, _ = run(syn, trials=8, strategy="random")
    assert guided.best_cost < blind.best_cost and guided.best_cost < 1.15 * syn.optimum
    with pytest.raises(ValueError):
        run(syn, trials=16, prior=(prior[0][:, :-1], prior[1], prior[2]))


def test_bad_arguments_raise(syn):
    with pytest.raises(ValueError):
        run(syn, strategy="annealing")
    with pytest.raises(ValueError):
        tune_space(syn.space, lambda pts: [1.0], syn.featurize, 16, batch=4)  # one cost for four points
    bad = Space(syn.space.knobs, to_steps=lambda v: [], is_legal=lambda v: v["t0"] != 1, default=None)
    with pytest.raises(ValueError):
        tune_space(bad, lambda pts: [1.0] * len(pts), knob_features(bad), 8)


def test_small_space_is_exhausted_not_looped():
    space = Space([Knob("a", (1, 2, 4)), Knob("b", ("x", "y"))], to_steps=lambda v: [])
    res = tune_space(space, lambda pts: [1.0 + sum(p) for p in pts], knob_features(space), 50)
    assert len(res.trials) == 6 and len({p for p, _ in res.trials}) == 6


# --- the statistical test ------------------------------------------------------------------------------

def trials_to_near(s, res, within=0.05):
    for i, (p, c) in enumerate(res.trials):
        t = s.cost(p)
        if c is not None and t is not None and t <= s.optimum * (1 + within):
            return i + 1
    return len(res.trials) + 1


def test_thompson_gets_near_the_optimum_sooner_than_random():
    """Over several seeds, model-guided search reaches within 5% of the optimum in fewer than half the
    trials random search needs on average (random's odds: 1 in ~1300 and 1 in ~210 points here)."""
    guided, blind = [], []
    for space_seed in (0, 2):
        s = make_space((5, 6, 7, 8, 4), seed=space_seed)
        for seed in range(3):
            res = tune_space(s.space, s.measure_fn(seed), s.featurize, 96, seed=seed, **FAST)
            guided.append(trials_to_near(s, res))
            res = tune_space(s.space, s.measure_fn(seed), s.featurize, 400, seed=seed, strategy="random")
            blind.append(trials_to_near(s, res))
    assert max(guided) <= 96, guided  # every guided run got there
    assert np.mean(guided) < 0.5 * np.mean(blind), (guided, blind)


@pytest.mark.slow
def test_thompson_beats_random_across_spaces():
    hits = {"thompson": [], "random": []}
    for sizes in [(6, 6, 6, 6, 6), (4, 4, 4, 4, 4, 4), (5, 6, 7, 8, 4)]:
        for seed in range(4):
            s = make_space(sizes, seed=seed)
            for strategy, trials in [("thompson", 200), ("random", 1000)]:
                res = tune_space(s.space, s.measure_fn(seed), s.featurize, trials, seed=seed, strategy=strategy)
                hits[strategy].append(trials_to_near(s, res))
    assert np.mean(hits["thompson"]) < 0.5 * np.mean(hits["random"]), hits
