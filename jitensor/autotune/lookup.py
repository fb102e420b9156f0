"""The records a disk hit needs, read without the record store's machinery.

A disk-cache hit checks that each stored kernel still has the schedule the tuning records choose (see
`compiler._schedules_current`). That check runs in a fresh process's first call, so it imports only sqlite3
(~2.5 ms) and asks one query per kernel, the same as `RecordStore.best`. Anything unreadable reads as "no
records": the check then expects default schedules, and a miss recompiles through the store, which warns.
"""
from __future__ import annotations

import json
import os
import re

FILENAME = "records.sqlite"
# The best record of a workload (records.RecordStore.best reads the same rows): per schedule (steps), its latest
# ok measurement, which supersedes earlier ones (the tuner re-measures its finalists); among those the lowest
# cost, the default schedule's among equal costs, else the oldest.
LATEST_OK = ("FROM records AS r WHERE workload = ?1 AND target = ?2 AND cost IS NOT NULL AND NOT EXISTS "
             "(SELECT 1 FROM records AS q WHERE q.workload = ?1 AND q.target = ?2 AND q.steps = r.steps "
             "AND q.cost IS NOT NULL AND q.id > r.id)")
BEST_ORDER = "ORDER BY cost, is_default DESC, timestamp, id LIMIT 1"
BEST_SQL = f"SELECT steps, is_default {LATEST_OK} {BEST_ORDER}"


def target_key(target) -> str:
    """The key records are stored under for a `Target` (or its `key()` dict; a string is taken as a key
    already): ``"llvm-skylake-avx512-3f0c9a1b2d4e5f60"``, kind and CPU for people, then 16 hex digits
    of the sha256 of the whole `Target.key()` (triple, CPU, features, cache sizes) for isolation."""
    from ..runtime.diskcache import key_hash
    if isinstance(target, str):
        return target
    key = target if isinstance(target, dict) else target.key()
    cpu = re.sub(r"[^0-9A-Za-z_.+-]", "_", str(key.get("cpu") or "generic"))
    return f"{key.get('kind') or 'llvm'}-{cpu}-{key_hash(key)[:16]}"


def store_path(cache_dir: str) -> str:
    return os.path.join(cache_dir, FILENAME)


def best_steps(path: str, workloads, target: str) -> dict | None:
    """{workload: (steps as JSON data, is_default) or None} for the best record of each, or None when the
    store is missing or unreadable."""
    if not os.path.exists(path):
        return None
    import sqlite3
    p = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        out = {}
        for w in workloads:
            row = conn.execute(BEST_SQL, (w, target)).fetchone()
            out[w] = None if row is None else (json.loads(row[0]), bool(row[1]))
        return out
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()
