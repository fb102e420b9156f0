"""The tuner's search strategies on synthetic spaces: how many trials each needs to get near the optimum.

    python benchmarks/bench_search_synthetic.py                 # 4 spaces x 8 seeds, all strategies (~7 min)
    python benchmarks/bench_search_synthetic.py --seeds 3 --trials 150 --only thompson,random
    python benchmarks/bench_search_synthetic.py --model '{"objective": "reg"}'
    python benchmarks/bench_search_synthetic.py --timing        # only the model-fit and proposal timings

Each space (`jitensor.autotune.synthetic.make_space`: tile-like and order-like knobs, interactions, an
illegal corner, failing points, 2% noise) has a known optimum. A run measures up to `--trials` points;
its score is the first trial whose noise-free cost is within 5% of the optimum (a miss counts as
`--trials` + 1, so medians stay honest). The table shows, per strategy, the median over seeds for each
space and how many seeds missed, then the mean over every run (it weighs the long tail that medians
hide). The `1/near` row is random search's expectation: 1 / the fraction of near-optimal points.
`--timing` instead times an 8-member ensemble refit on 500 rows x 100 features and one proposal over a
pool of 2048 points of an 8**6 space, single-threaded. Prints only; writes nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jitensor.autotune.model import Ensemble  # noqa: E402
from jitensor.autotune.search import STRATEGIES, knob_features, propose, tune_space  # noqa: E402
from jitensor.autotune.synthetic import make_space  # noqa: E402

SPACES = {
    "6x5": (6, 6, 6, 6, 6),
    "8x4": (8, 8, 8, 8),
    "4x6": (4, 4, 4, 4, 4, 4),
    "mixed": (5, 6, 7, 8, 4),
}


def trials_to_near(syn, result, within: float = 0.05) -> int | None:
    for i, (p, c) in enumerate(result.trials):
        true = syn.cost(p)
        if c is not None and true is not None and true <= syn.optimum * (1 + within):
            return i + 1
    return None


def timing(reps: int = 5) -> None:
    """Median wall time of an ensemble refit (500 x 100) and of one proposal (pool 2048)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 100)).astype(np.float32)
    X[:, 50:] = np.round(X[:, 50:] * 2)  # half the columns few-valued, as counts and log sizes are
    y = np.exp(X[:, 0] * X[:, 1] + 0.5 * X[:, 2] + 0.05 * rng.normal(size=500))
    fits = []
    for r in range(reps):
        t = time.perf_counter()
        ens = Ensemble(8, seed=r).fit(X, y)
        fits.append(time.perf_counter() - t)
    syn = make_space((8,) * 6, seed=0)
    feat = knob_features(syn.space)
    pts = [syn.space.random_point(rng) for _ in range(500)]
    pts = [p for p in pts if syn.space.legal(p) and syn.cost(p) is not None]
    model = Ensemble(8, seed=0).fit(feat(pts), [syn.cost(p) for p in pts]).members[0]
    props, scored = [], []
    for r in range(reps):
        count = [0]

        def score(points):
            count[0] += len(points)
            return model.predict(feat(points))
        t = time.perf_counter()
        propose(syn.space, score, 8, np.random.default_rng(r), exclude=set(pts), pool=2048, starts=pts[:16])
        props.append(time.perf_counter() - t)
        scored.append(count[0])
    print(f"ensemble of 8, refit on 500 rows x 100 features: median {np.median(fits) * 1e3:.0f} ms "
          f"(min {min(fits) * 1e3:.0f}, max {max(fits) * 1e3:.0f}) over {reps}")
    print(f"propose 8 from a pool of {int(np.median(scored))} scored points (8**6 space, knob features, one "
          f"member): median {np.median(props) * 1e3:.0f} ms (min {min(props) * 1e3:.0f}, max {max(props) * 1e3:.0f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--only", default=",".join(STRATEGIES), help="strategies, comma-separated")
    ap.add_argument("--spaces", default=",".join(SPACES), help="spaces, comma-separated")
    ap.add_argument("--model", default=None, help="JSON dict of Ensemble parameters")
    ap.add_argument("--timing", action="store_true", help="only time a model refit and a proposal")
    args = ap.parse_args(argv)
    if args.timing:
        timing()
        return 0
    strategies = args.only.split(",")
    spaces = args.spaces.split(",")
    model_params = json.loads(args.model) if args.model else None

    table: dict[str, dict[str, list[int]]] = {s: {} for s in strategies}
    seconds: dict[str, float] = {s: 0.0 for s in strategies}
    expect = {}
    for name in spaces:
        for seed in range(args.seeds):
            syn = make_space(SPACES[name], seed=seed)
            expect.setdefault(name, []).append(1 / syn.near_fraction)
            for strategy in strategies:
                t = time.perf_counter()
                res = tune_space(syn.space, syn.measure_fn(seed), syn.featurize, args.trials, batch=args.batch,
                                 seed=seed, strategy=strategy, model_params=model_params)
                seconds[strategy] += time.perf_counter() - t
                hit = trials_to_near(syn, res)
                table[strategy].setdefault(name, []).append(hit if hit is not None else args.trials + 1)
                print(f"  {name:6s} seed {seed} {strategy:9s} {hit if hit else 'miss':>5}", file=sys.stderr)

    print(f"\ntrials to within 5% of the optimum: median over {args.seeds} seeds (misses: seeds that did "
          f"not get there in {args.trials} trials; a miss counts as {args.trials + 1})\n")
    head = (f"| {'strategy':9s} | " + " | ".join(f"{n:>13s}" for n in spaces)
            + " | mean of medians | mean of all runs | s/run |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for s in strategies:
        cells, meds = [], []
        for n in spaces:
            v = table[s][n]
            med = float(np.median(v))
            meds.append(med)
            miss = sum(x > args.trials for x in v)
            cells.append(f"{med:.0f}" + (f" ({miss} miss)" if miss else ""))
        runs = args.seeds * len(spaces)
        print(f"| {s:9s} | " + " | ".join(f"{c:>13s}" for c in cells)
              + f" | {np.mean(meds):15.1f} | {np.mean([x for n in spaces for x in table[s][n]]):16.1f} |"
              f" {seconds[s] / runs:5.2f} |")
    print(f"| {'1/near':9s} | " + " | ".join(f"{np.median(expect[n]):>13.0f}" for n in spaces)
          + " | random's expectation (median over seeds) | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
