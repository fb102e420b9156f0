"""A kernel's search space: named knobs, each with a tuple of choices; a point picks one choice per knob.

The space turns a point into the replayable schedule steps it stands for (`steps`), so that every
candidate the tuner measures, and every record it stores, is a plain step list that `loop.primitives.apply`
replays. `legal` rejects points before anything is built (the primitives' own checks still have the last
word: a point whose steps raise ScheduleError is a failed trial, never a crash).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple  # the values the knob can take (ints, strings, None)

    def __post_init__(self):
        if not self.choices:
            raise ValueError(f"knob {self.name} has no choices")


Point = tuple  # one index into each knob's choices, in knob order


class Space:
    """`knobs` in a fixed order; `to_steps(values: dict) -> list[Step]` builds the steps of a point;
    `is_legal(values: dict) -> bool` (optional) rejects points whose knobs contradict each other."""

    def __init__(self, knobs, to_steps: Callable[[dict], list], is_legal: Callable[[dict], bool] | None = None,
                 default: Point | None = None):
        self.knobs = tuple(knobs)
        self._to_steps, self._is_legal = to_steps, is_legal
        self.default = tuple(default) if default is not None else (0,) * len(self.knobs)

    def __len__(self) -> int:
        return int(np.prod([len(k.choices) for k in self.knobs], dtype=np.int64))

    def values(self, point: Point) -> dict:
        return {k.name: k.choices[i] for k, i in zip(self.knobs, point)}

    def steps(self, point: Point) -> list:
        return self._to_steps(self.values(point))

    def legal(self, point: Point) -> bool:
        if len(point) != len(self.knobs) or any(not 0 <= i < len(k.choices) for k, i in zip(self.knobs, point)):
            return False
        return self._is_legal is None or bool(self._is_legal(self.values(point)))

    def random_point(self, rng: np.random.Generator) -> Point:
        return tuple(int(rng.integers(len(k.choices))) for k in self.knobs)

    def mutate(self, point: Point, rng: np.random.Generator) -> Point:
        """`point` with one knob moved to another choice (a neighbour for local search)."""
        free = [i for i, k in enumerate(self.knobs) if len(k.choices) > 1]
        if not free:
            return tuple(point)
        i = free[int(rng.integers(len(free)))]
        j = int(rng.integers(len(self.knobs[i].choices) - 1))
        p = list(point)
        p[i] = j + (j >= point[i])
        return tuple(p)

    def encode(self, point: Point) -> np.ndarray:
        """The point's knob values as numbers (log2 of positive ints, choice index otherwise): the part of
        a candidate's features that does not come from its loop IR."""
        out = []
        for k, i in zip(self.knobs, point):
            v = k.choices[i]
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v <= 0:
                out.append(float(i))
            else:
                out.append(float(np.log2(v)))
        return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------------------- spaces of kernels


def _around(default, choices, lo=1, hi=None) -> tuple:
    """`choices` within [lo, hi] plus the default, sorted, the default kept even when out of range."""
    out = {c for c in choices if c >= lo and (hi is None or c <= hi)}
    out.add(default)
    return tuple(sorted(out))


def _registers(target) -> int:
    return 32 if target.vector_bits >= 512 else 16


def space_for(kernel, target) -> Space:
    """The search space of a lowered (unscheduled) kernel: the knobs of its default steps and their
    alternatives. Its default point is the default schedule (steps equal to `default_steps`)."""
    from ..loop.primitives import TemplateKnobs
    from ..loop.schedule import default_steps
    steps = default_steps(kernel, target)
    if kernel.template is not None:
        (st,) = steps
        assert isinstance(st, TemplateKnobs)
        space = _template_space(kernel.template, dict(st.knobs), target)
    else:
        space = _loop_space(kernel, steps, target)
    return _checked(space, kernel)


def _checked(space: Space, kernel) -> Space:
    """`space` whose legality also asks the primitives (apply the point's steps, pure Python, memoized), so
    that an illegal point is rejected before anything is built and never costs a trial."""
    from ..loop.primitives import ScheduleError, apply
    memo: dict = {}
    rule = space._is_legal

    def legal(v: dict) -> bool:
        key = tuple(v.items())
        ok = memo.get(key)
        if ok is None:
            ok = rule is None or bool(rule(v))
            if ok:
                try:
                    apply(kernel, space._to_steps(v))
                except ScheduleError:
                    ok = False
            memo[key] = ok
        return ok
    space._is_legal = legal
    return space


def _template_space(template, d: dict, target) -> Space:
    from ..loop import templates
    from ..loop.primitives import TemplateKnobs
    p = dict(template[1])
    kind = templates.kind(template)
    regs = _registers(target)
    grains = _around(d["grain"], (1, 2, 4, 8, 16, 32))
    if kind == "gemm":
        K, N = p["K"], p["N"]
        W = templates.lanes(p, target.vector_bits)
        knobs = [Knob("mr", _around(d["mr"], range(2, 9))), Knob("nv", _around(d["nv"], (1, 2, 3, 4))),
                 Knob("kc", _around(d["kc"], (32, 64, 128, 192, 256, 384, 512, 768, 1024), hi=max(32, K))),
                 Knob("nc", _around(d["nc"], (1, 2, 4, 8, 16, 32, 64, 128), hi=max(1, -(-N // W)))),
                 Knob("split", ("rows", "cols")), Knob("grain", grains)]

        def legal(v):  # mr x nv accumulators, nv vectors of B and a broadcast of A in registers
            return v["mr"] * v["nv"] + v["nv"] + 1 <= regs
    elif kind == "gemv:dot":
        S = p["S"]
        knobs = [Knob("rows", _around(d["rows"], range(1, 9))), Knob("accs", _around(d["accs"], (1, 2, 3, 4))),
                 Knob("grain", grains)]

        def legal(v):
            return v["rows"] * S * v["accs"] + S <= regs
    else:
        knobs = [Knob("block", _around(d["block"], (1, 2, 4, 8, 16, 32, 64))),
                 Knob("chunk", _around(d["chunk"], (1, 2, 4, 8, 16, 32, 64, 128, 256))),
                 Knob("ku", _around(d["ku"], (1, 2, 4, 8))), Knob("grain", grains)]
        legal = None
    default = tuple(k.choices.index(d[k.name] if k.name in d else k.choices[0]) for k in knobs)
    return Space(knobs, lambda v: [TemplateKnobs(tuple(v.items()))], legal, default)


def _prefetch_applies(kernel, steps) -> bool:
    from ..loop.primitives import Parallel, PrefetchRows, ScheduleError, apply
    par = [s for s in steps if isinstance(s, Parallel)]
    if not par:
        return False
    try:
        apply(kernel, steps + [PrefetchRows(par[0].loop, 1)])
    except ScheduleError:
        return False
    return True


def _loop_space(kernel, steps: list, target) -> Space:
    """Knobs of a loop kernel's default steps: each vectorized loop's lanes (0: scalar) and body copies, the
    parallel loop (on or off) and its grain, a transpose's tile, a column reduction's block, the row
    prefetch distance (0: none). Other steps (Fuse) are kept as they are."""
    from ..loop.primitives import BlockColumns, Parallel, PrefetchRows, Tile, Vectorize
    knobs, default = [], []

    def knob(name, choices, d):
        knobs.append(Knob(name, choices))
        default.append(choices.index(d))
    has_prefetch = any(isinstance(s, PrefetchRows) for s in steps)
    can_prefetch = has_prefetch or _prefetch_applies(kernel, steps)
    for i, s in enumerate(steps):
        if isinstance(s, Vectorize):
            knob(f"lanes:{s.loop}", _around(s.lanes, (0, s.lanes // 2, s.lanes * 2), lo=0, hi=32), s.lanes)
            knob(f"copies:{s.loop}", _around(s.copies, (1, 2, 4, 8)), s.copies)
        elif isinstance(s, Parallel):
            knob("parallel", (True, False), True)
            knob("grain", _around(s.grain, (1, 2, 4, 8, 16, 64, 256)), s.grain)
            if can_prefetch and not has_prefetch:
                knob("prefetch", (0, 1, 2), 0)
        elif isinstance(s, PrefetchRows):
            knob("prefetch", (0, 1, 2, 4), s.distance)
        elif isinstance(s, Tile):
            knob(f"tile:{i}", _around(s.factors[0], (0, 8, 16, 32, 64), lo=0), s.factors[0])
        elif isinstance(s, BlockColumns):
            knob("block", _around(s.factor, (16, 32, 64, 128, 256, 512, 1024)), s.factor)

    def to_steps(v: dict) -> list:
        out = []
        for i, s in enumerate(steps):
            if isinstance(s, Vectorize):
                lanes = v[f"lanes:{s.loop}"]
                if lanes:
                    out.append(Vectorize(s.loop, lanes, v[f"copies:{s.loop}"]))
            elif isinstance(s, Parallel):
                if v["parallel"]:
                    out.append(Parallel(s.loop, v["grain"]))
                    if v.get("prefetch") and not has_prefetch:
                        out.append(PrefetchRows(s.loop, v["prefetch"]))
            elif isinstance(s, PrefetchRows):
                if v["parallel"] and v["prefetch"]:
                    out.append(PrefetchRows(s.loop, v["prefetch"]))
            elif isinstance(s, Tile):
                t = v[f"tile:{i}"]
                if t:
                    out.append(Tile(s.loops, (t, t)))
            elif isinstance(s, BlockColumns):
                out.append(BlockColumns(v["block"]))
            else:
                out.append(s)
        return out

    dv = {k.name: k.choices[i] for k, i in zip(knobs, default)}

    def legal(v: dict) -> bool:  # no copies of a scalar loop, no grain or prefetch of a serial one (duplicates)
        if any(n.startswith("lanes:") and x == 0 and v["copies:" + n[6:]] != 1 for n, x in v.items()):
            return False
        return v.get("parallel", True) or (v["grain"] == dv["grain"] and v.get("prefetch") == dv.get("prefetch"))
    return Space(knobs, to_steps, legal, tuple(default))
