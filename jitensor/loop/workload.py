"""Workload keys: what a lowered kernel computes, independent of how it is scheduled or named.

A tuning record is keyed by (workload key, target): the same key means the same loop nest before
scheduling (every index, stride and constant: shapes and layouts are folded into it), the same template
problem, and buffers of the same dtypes and sizes in the same order; buffer names and the kernel's name
do not count, so the same product in another function, or in another step of an unrolled loop, finds
the same records.
"""
from __future__ import annotations

import hashlib
import json


def workload_key(k) -> str:
    """A 20-byte hex digest of the unscheduled kernel (call it before any schedule step)."""
    from .ir import canonical  # (here: a disk hit imports this module for steps_digest, never the IR)
    pos = {b.name: f"@{i}" for i, b in enumerate(k.buffers)}
    desc = (tuple((b.dtype.str, b.size) for b in k.buffers), canonical((k.body, k.template), pos))
    return hashlib.blake2b(repr(desc).encode(), digest_size=20).hexdigest()


def steps_digest(steps_json) -> str:
    """A short digest of a step list in `primitives.to_json` form (what the disk cache compares)."""
    text = json.dumps(steps_json, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
