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
