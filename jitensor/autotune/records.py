"""Tuning records: measured schedules of kernels, in one SQLite database beside the kernel cache.

A record says: on target T, kernel W (its workload key) scheduled with these steps ran in these
seconds, or failed for this reason. The tuner writes records; the compiler asks `best(W, T)` for
every kernel it builds and replays the steps (`loop.primitives.from_json` + `apply`) when there is
one. The store is ``<default_cache_dir()>/records.sqlite`` (so ``$JITENSOR_CACHE_DIR`` moves it
along with the kernel cache); ``jitensor records list|show|export|import|prune`` inspects it.

Schema (format ``FORMAT`` = 1, kept in ``PRAGMA user_version``; ``PRAGMA application_id`` is
0x4A54524B, "JTRK", so that another program's SQLite file is never taken for a store)::

    records(id INTEGER PRIMARY KEY, workload TEXT, target TEXT, kind TEXT,
            steps TEXT    -- canonical JSON (sorted keys, compact) of primitives.to_json output
            costs TEXT    -- JSON array of seconds, one per repeat; [] when the trial failed
            cost REAL     -- median of costs for an ok record, NULL for a failed one
            error TEXT, is_default INTEGER, timestamp REAL, versions TEXT -- JSON)
    index (workload, target, cost)                        best(): a min() seek, then the ties
    index (workload, target, timestamp) WHERE is_default  default_record()
    index (kind)                                          a cost model's records of one kind

Design rules:

* Why SQLite: the standard library has it, a lookup is an index seek instead of a scan of every
  record, and many processes (parallel tuners, compiling programs) may read and write one file at
  once without a lock protocol of our own. The database runs in WAL mode (readers never block the
  writer and are never blocked by it), with ``synchronous=NORMAL`` (a power cut may lose the last
  records, never corrupts the file), a busy timeout of ``BUSY_TIMEOUT_S`` and short write
  transactions (``BEGIN IMMEDIATE``, one per `add`/`add_many`, imports in batches of
  ``IMPORT_BATCH``), so concurrent writers wait for each other instead of failing.
* Fast in a fresh process: opening is lazy; a read first stats the file, and when there is none it
  returns None/empty without creating anything (not even the directory). Only the standard library
  is imported (no numpy, no llvmlite), and the versions recorded with a record are read from the
  modules already loaded.
* Target isolation: records are keyed by `target_key(target)`, ``<kind>-<cpu>-<16 hex digits of the
  sha256 of Target.key()>``; `best` and `default_record` only ever return records of exactly that
  key, so a store shared between machines (a network home directory, an imported export) never
  hands one CPU the schedule measured on another. `records`, `workloads` and `prune` take a target
  filter and otherwise span all targets; `summary` and ``jitensor records list`` show the target.
* Reads never raise into a compile: a file that is not a database, a malformed page (SQLite's
  CORRUPT/NOTADB), a file of another FORMAT or application, or an I/O error gives one
  ``RecordWarning`` per store and reason, and the store reads as empty. Such a verdict sticks to
  the file's (device, inode, size, mtime): the next read that finds a different file tries again.
* Writes to a corrupt file move it aside: under an flock on ``records.sqlite.lock`` the file at the
  path is checked again (``PRAGMA quick_check``; another process may have replaced it already),
  then renamed to ``records.sqlite.corrupt`` (its ``-wal`` to ``records.sqlite.corrupt-wal``, its
  ``-shm`` removed; an older ``.corrupt`` is replaced), and a fresh store takes its place, with a
  ``RecordWarning`` naming both paths. A file of another format is never moved or written (it is
  a newer jitensor's data): writes to it warn and are dropped (`add` returns None). Other write
  failures (read-only or full disk) warn and drop likewise; only a bad `Record` (a programming
  error) raises.
* Records are plain data: they choose among schedules the primitives check and replay, they never
  hold code, so the store is not subject to the kernel cache's ownership checks.
* A connection is never used across fork (SQLite forbids it): a child opens its own, and the
  parent's is kept alive but unused, so that closing it cannot disturb the parent's locks.

Measured on a 2-core VM shared with other jobs (load ~3.5; Python 3.11, SQLite 3.40), see
tests/autotune/test_records.py:

* ``import jitensor.autotune.records``: 3-5 ms on top of the ``jitensor`` package, which a compile has
  loaded anyway (``sqlite3`` 1.5-2.5 ms of it), with bytecode cached; standalone (package ``__init__``s
  stubbed) 20-55 ms, mostly ``dataclasses`` (13 ms), ``hashlib`` via diskcache (10 ms) and ``sqlite3``
  (5 ms). Without cached bytecode (PYTHONDONTWRITEBYTECODE) compiling this file adds about 15 ms.
* Opening a store and one `best` in a fresh process: 0.75-1.4 ms with 2,000 records (the lookup is an
  index seek, so the store's size hardly matters: 0.3 ms within a process for a workload of 20,000
  records, 0.06 ms for a second lookup); 0.04-0.12 ms when there is no file.
* Two processes adding 200 records each, one transaction per record: 0.1-0.25 s, no record lost.
"""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

from jitensor.errors import RecordWarning
from jitensor.autotune.lookup import BEST_ORDER, FILENAME, LATEST_OK, target_key  # noqa: F401 (part of this module's API)
from jitensor.runtime.diskcache import default_cache_dir

try:  # POSIX only; without it moving a corrupt file aside is unlocked (a concurrent mover may drop a batch)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FORMAT", "FILENAME", "Record", "RecordStore", "RecordWarning", "default_store", "target_key"]

FORMAT = 1
APPLICATION_ID = 0x4A54524B  # "JTRK"
BUSY_TIMEOUT_S = 30.0
IMPORT_BATCH = 500
_PAGE = 1000  # rows per query when exporting

_SCHEMA = (
    """CREATE TABLE records (
        id         INTEGER PRIMARY KEY,
        workload   TEXT    NOT NULL,
        target     TEXT    NOT NULL,
        kind       TEXT    NOT NULL DEFAULT '',
        steps      TEXT    NOT NULL,
        costs      TEXT    NOT NULL,
        cost       REAL,
        error      TEXT,
        is_default INTEGER NOT NULL DEFAULT 0,
        timestamp  REAL    NOT NULL,
        versions   TEXT    NOT NULL DEFAULT '{}',
        features   TEXT    NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX records_by_cost ON records (workload, target, cost)",
    "CREATE INDEX records_by_steps ON records (workload, target, steps, id)",
    "CREATE INDEX records_defaults ON records (workload, target, timestamp) WHERE is_default = 1",
    "CREATE INDEX records_by_kind ON records (kind)",
)
_COLUMNS = "id, workload, target, kind, steps, costs, error, is_default, timestamp, versions, features"
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_ABANDONED: list = []  # connections inherited over fork: kept referenced so that they are never closed


# ----------------------------------------------------------------------------- records


def _canon(v) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _median(xs) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


@dataclass(frozen=True)
class Record:
    """One measurement of one schedule of one kernel on one target (see the module docstring).

    Normalized on construction: a `Target` (or its `key()` dict) as `target` becomes its `target_key`;
    `steps` a tuple of dicts (schedule Step objects are turned into dicts with `loop.primitives.to_json`);
    `costs` a tuple of floats (each finite and >= 0, else ValueError). A record is ok when it has no
    error and at least one cost; `cost` is then the median. `steps` and `versions` are left out of the
    hash (dicts are unhashable).
    """

    workload: str
    target: str
    steps: tuple = field(hash=False)
    costs: tuple = ()
    error: str | None = None
    default: bool = False
    kind: str = ""
    timestamp: float = 0.0
    versions: dict = field(default_factory=dict, hash=False)
    id: int | None = None
    features: tuple = field(default=(), hash=False)  # the cost model's input row for this schedule (transfer)

    def __post_init__(self):
        set_ = object.__setattr__
        if self.target is not None and not isinstance(self.target, str):
            set_(self, "target", target_key(self.target))  # a Target or its key() dict
        for name in ("workload", "target"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"Record.{name} must be a non-empty string, got {v!r}")
        if isinstance(self.steps, (str, bytes, dict)):
            raise TypeError(f"Record.steps must be a sequence of steps, got {type(self.steps).__name__}")
        steps = tuple(self.steps)
        if not all(isinstance(s, dict) for s in steps):
            from jitensor.loop.primitives import to_json  # only for Step objects (imports numpy)
            steps = tuple(to_json(steps))
        set_(self, "steps", steps)
        if isinstance(self.costs, (str, bytes)):
            raise TypeError(f"Record.costs must be a sequence of seconds, got {self.costs!r}")
        costs = tuple(float(c) for c in self.costs)
        if not all(math.isfinite(c) and c >= 0 for c in costs):
            raise ValueError(f"Record.costs must be finite non-negative seconds, got {costs!r}")
        set_(self, "costs", costs)
        if self.error is not None and not isinstance(self.error, str):
            raise TypeError(f"Record.error must be a string or None, got {self.error!r}")
        set_(self, "default", bool(self.default))
        if not isinstance(self.kind, str):
            raise TypeError(f"Record.kind must be a string, got {self.kind!r}")
        set_(self, "timestamp", float(self.timestamp))
        set_(self, "versions", dict(self.versions or {}))
        if self.id is not None:
            set_(self, "id", int(self.id))
        feats = tuple(float(x) for x in self.features)
        if not all(math.isfinite(x) for x in feats):
            raise ValueError("Record.features must be finite numbers")
        set_(self, "features", feats)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.costs)

    @property
    def cost(self) -> float | None:
        """Median of `costs` in seconds; None for a failed trial."""
        return _median(self.costs) if self.ok else None

    def to_json(self) -> dict:
        """All fields as a JSON-able dict (the export format)."""
        return {"workload": self.workload, "target": self.target, "kind": self.kind, "steps": list(self.steps),
                "costs": list(self.costs), "error": self.error, "default": self.default,
                "timestamp": self.timestamp, "versions": self.versions, "id": self.id,
                "features": list(self.features)}

    @classmethod
    def from_json(cls, d) -> Record:
        """The inverse of `to_json` (its `id` is dropped: ids belong to one store); ValueError/TypeError
        when `d` is not a record."""
        if not isinstance(d, dict):
            raise TypeError(f"a record is a JSON object, got {type(d).__name__}")
        missing = [k for k in ("workload", "target", "steps") if k not in d]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        steps, costs, versions = d["steps"], d.get("costs", []), d.get("versions") or {}
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise TypeError("steps must be a list of objects")
        if not isinstance(costs, list) or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                  for c in costs):
            raise TypeError("costs must be a list of numbers")
        if not isinstance(versions, dict):
            raise TypeError("versions must be an object")
        ts = d.get("timestamp", 0.0)
        if not isinstance(ts, (int, float)) or isinstance(ts, bool):
            raise TypeError("timestamp must be a number")
        default = d.get("default", False)
        if not isinstance(default, bool):
            raise TypeError("default must be true or false")
        feats = d.get("features") or []
        if not isinstance(feats, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  for x in feats):
            raise TypeError("features must be a list of numbers")
        return cls(d["workload"], d["target"], tuple(steps), tuple(costs), d.get("error"), default,
                   d.get("kind") or "", ts, versions, None, tuple(feats))


def _versions() -> dict:
    # From the modules already loaded: importing llvmlite here would cost 100 ms in a fresh process.
    v = {"jitensor": getattr(sys.modules.get("jitensor"), "__version__", None), "llvm": None, "format": FORMAT}
    binding = sys.modules.get("llvmlite.binding")
    if binding is not None:
        try:
            v["llvm"] = ".".join(map(str, binding.llvm_version_info))
        except Exception:  # pragma: no cover - a broken llvmlite
            pass
    return v


def _row_record(row) -> Record:
    rid, workload, target, kind, steps, costs, error, is_default, ts, versions, features = row
    return Record(workload, target, tuple(json.loads(steps)), tuple(json.loads(costs)), error, bool(is_default),
                  kind, ts, json.loads(versions), rid, tuple(json.loads(features)))


# ----------------------------------------------------------------------------- sqlite helpers


class _Unusable(Exception):
    """Internal: the file is not a store this jitensor may read (another format or application)."""


def _is_corrupt(e: BaseException) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    msg = str(e).lower()
    return "malformed" in msg or "not a database" in msg


def _uri(path: str, mode: str) -> str:
    p = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{p}?mode={mode}"


def _connect(path: str, mode: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; we BEGIN IMMEDIATE ourselves (a deferred
    # transaction that later writes can fail with SQLITE_BUSY without waiting, in WAL mode).
    return sqlite3.connect(_uri(path, mode), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)


def _sig(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _format_of(conn) -> str | None:
    """None when `conn` holds a store of this FORMAT, "" when it is an empty database (no schema yet);
    raises _Unusable for anything else, sqlite3.DatabaseError for a file that is no database."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    if version == FORMAT and app == APPLICATION_ID:
        return None
    if app == APPLICATION_ID:
        raise _Unusable(f"has record format {version}, this jitensor reads format {FORMAT} "
                        f"(written by {'a newer' if version > FORMAT else 'another'} jitensor)")
    if version == 0 and app == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        return ""
    raise _Unusable(f"is not a jitensor record store (SQLite application id {app:#x}, user version {version})")


def _probe(path: str) -> str | None:
    """Why the database at `path` is corrupt, or None (healthy, missing, or of another format)."""
    try:
        conn = _connect(path, "rw")
    except sqlite3.Error:
        return None
    try:
        try:
            _format_of(conn)
        except _Unusable:
            return None
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
        if rows != [("ok",)]:
            return "; ".join(str(r[0]) for r in rows)
        return None
    except sqlite3.DatabaseError as e:
        return str(e) if _is_corrupt(e) else None
    finally:
        conn.close()


class _FileLock:
    def __init__(self, path: str):
        self.path, self.fd = path, None

    def __enter__(self):
        if fcntl is not None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError:
                pass  # no locking here (some network filesystems): proceed unlocked
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


# ----------------------------------------------------------------------------- the store


class RecordStore:
    """The records in one SQLite file (see the module docstring for the guarantees).

    Wherever a target is asked for, a `Target` (or its `key()` dict) may stand for its `target_key`.

    `path` is the database file, or a directory to hold ``records.sqlite``; None means
    ``<default_cache_dir()>/records.sqlite``. Nothing is opened or created until first used.
    """

    def __init__(self, path: str | None = None):
        if path is None:
            path = os.path.join(default_cache_dir(), FILENAME)
        else:
            path = os.path.abspath(os.path.expanduser(os.fspath(path)))
            if os.path.isdir(path):
                path = os.path.join(path, FILENAME)
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._file: tuple | None = None  # (st_dev, st_ino) of the file self._conn has open
        self._ready = False  # the schema on self._conn is ours and of this FORMAT
        self._wal = False  # self._conn is set up for writing (WAL mode checked, synchronous=NORMAL)
        self._bad: tuple | None = None  # ("corrupt" | "unusable", file signature, reason) of a file judged bad
        self._warned: set = set()

    def __repr__(self) -> str:
        return f"RecordStore({self.path!r})"

    # -- connection management ---------------------------------------------------------------

    def _warn(self, tag, msg: str) -> None:
        if tag in self._warned:
            return
        self._warned.add(tag)
        warnings.warn(f"jitensor: {msg}", RecordWarning, stacklevel=4)

    def close(self) -> None:
        """Close the connection (the next use opens it again)."""
        with self._lock:
            self._drop_conn()

    def _drop_conn(self) -> None:
        conn, self._conn, self._file, self._ready, self._wal = self._conn, None, None, False, False
        if conn is not None:
            if self._pid != os.getpid():
                _ABANDONED.append(conn)
            else:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._pid = os.getpid()

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None

    def _open(self, write: bool) -> sqlite3.Connection | None:
        """The connection, or None when there is nothing to read (no file, no schema yet, a bad file).

        For a write, creates the directory, the file and the schema as needed, and moves a corrupt file
        aside. Raises sqlite3.Error/OSError/_Unusable for the caller to report.
        """
        if self._pid != os.getpid():
            self._drop_conn()  # inherited over fork
        st = self._stat()
        if st is None:
            self._drop_conn()
            if not write:
                return None
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
            st = os.stat(self.path)
        if self._conn is not None and (st.st_dev, st.st_ino) != self._file:
            self._drop_conn()  # moved aside or removed and recreated by another process
        if self._bad is not None:
            kind, sig, reason = self._bad
            if sig != _sig(st):
                self._bad = None  # another file now: judge it afresh
            elif kind == "unusable" or not write:
                if write:
                    self._warn(("drop", reason), f"not writing tuning records to {self.path}: it {reason}")
                return None
            else:
                self._move_aside(reason)
                return self._open(write)
        if self._conn is None:
            self._conn = _connect(self.path, "rw")
            self._file = (st.st_dev, st.st_ino)
        conn = self._conn
        if not self._ready:
            try:
                state = _format_of(conn)
            except _Unusable as e:
                self._bad = ("unusable", _sig(st), str(e))
                self._drop_conn()
                raise
            if state == "":
                if not write:
                    return None
                self._create_schema(conn)
            self._ready = True
        if write and not self._wal:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._wal = True
        return conn

    def _create_schema(self, conn) -> None:
        conn.execute("PRAGMA journal_mode=WAL")  # persistent, and not allowed inside a transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _format_of(conn) == "":  # still empty: no other process created it meanwhile
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {FORMAT}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _move_aside(self, reason: str) -> None:
        """Rename a corrupt file to ``.corrupt`` (after checking again, under a lock, that the file now at
        the path is the corrupt one) so that the next open starts a fresh store."""
        self._drop_conn()
        self._bad = None
        with _FileLock(self.path + ".lock"):
            problem = _probe(self.path)
            if problem is None:
                return  # healthy now (another process moved it) or gone
            bad = self.path + ".corrupt"
            os.replace(self.path, bad)
            for suffix, action in (("-wal", "move"), ("-shm", "remove")):
                try:
                    if action == "move":
                        os.replace(self.path + suffix, bad + suffix)
                    else:
                        os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
        warnings.warn(f"jitensor: the tuning-record store {self.path} is corrupt ({reason}); moved it to {bad} "
                      f"and started a new one", RecordWarning, stacklevel=5)

    def _judge(self, e: BaseException, what: str) -> None:
        """Report a failed read or write (warning once per reason); remember a corrupt file."""
        if isinstance(e, _Unusable):
            self._warn(("unusable", str(e)), f"ignoring the tuning records in {self.path}: it {e}")
            return
        if isinstance(e, sqlite3.DatabaseError) and _is_corrupt(e):
            st = self._stat()
            self._drop_conn()
            if st is not None:
                self._bad = ("corrupt", _sig(st), str(e))
            self._warn(("corrupt", str(e)), f"the tuning-record store {self.path} is corrupt ({e}); "
                                             f"ignoring its records")
            return
        self._warn((what, type(e), str(e)), f"cannot {what} the tuning-record store {self.path} ({e})")

    def _read(self, fn, default):
        """fn(conn) on the store, or `default` when there is nothing to read or the read failed."""
        with self._lock:
            try:
                conn = self._open(write=False)
                return default if conn is None else fn(conn)
            except (sqlite3.Error, OSError, _Unusable, ValueError) as e:  # ValueError: a row of bad JSON
                self._judge(e, "read")
                return default

    def _write(self, fn):
        """fn(conn) inside one BEGIN IMMEDIATE transaction; None (with a warning) when it cannot be written."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    conn = self._open(write=True)
                    if conn is None:
                        return None
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        _rollback(conn)
                        raise
                    return result
                except (sqlite3.Error, OSError, _Unusable) as e:
                    if attempt == 0 and isinstance(e, sqlite3.DatabaseError) and _is_corrupt(e):
                        try:
                            self._move_aside(str(e))
                        except OSError as e2:
                            self._judge(e2, "write")
                            return None
                        continue
                    self._judge(e, "write")
                    if isinstance(e, _Unusable):
                        self._warn(("drop", str(e)), f"not writing tuning records to {self.path}: it {e}")
                    return None
        return None

    # -- writing -----------------------------------------------------------------------------

    @staticmethod
    def _row(rec: Record, fill: bool) -> tuple:
        if not isinstance(rec, Record):
            raise TypeError(f"not a Record: {rec!r}")
        versions = rec.versions or (_versions() if fill else {})
        ts = rec.timestamp or (time.time() if fill else 0.0)
        try:
            steps = _canon(list(rec.steps))
            versions = _canon(versions)
        except (TypeError, ValueError) as e:
            raise TypeError(f"record of workload {rec.workload[:16]} is not JSON-serializable: {e}") from None
        return (rec.workload, rec.target, rec.kind, steps, _canon(list(rec.costs)), rec.cost, rec.error,
                int(rec.default), ts, versions, _canon(list(rec.features)))

    _INSERT = ("INSERT INTO records (workload, target, kind, steps, costs, cost, error, is_default, timestamp, "
               "versions, features) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

    def add(self, rec: Record) -> int | None:
        """Store `rec` (timestamp and versions filled in when unset); its id, or None when the store
        cannot be written (a RecordWarning says why)."""
        row = self._row(rec, fill=True)
        return self._write(lambda conn: conn.execute(self._INSERT, row).lastrowid)

    def add_many(self, recs) -> list:
        """Store `recs` in one transaction; their ids, or a None for each when the store cannot be written."""
        rows = [self._row(r, fill=True) for r in recs]
        if not rows:
            return []
        ids = self._write(lambda conn: [conn.execute(self._INSERT, r).lastrowid for r in rows])
        return ids if ids is not None else [None] * len(rows)

    # -- reading -----------------------------------------------------------------------------

    def best(self, workload: str, target: str) -> Record | None:
        """The ok record of `workload` on exactly `target` with the lowest median cost, counting for each
        schedule (steps) only its latest ok measurement (a re-measurement supersedes a lucky earlier one);
        among equal costs the default schedule's, else the oldest. None when there is none (or no readable
        store)."""
        sql = f"SELECT {_COLUMNS} {LATEST_OK} {BEST_ORDER}"
        target = target_key(target)
        return self._read(lambda conn: _first(conn.execute(sql, (workload, target))), None)

    def default_record(self, workload: str, target: str) -> Record | None:
        """The latest ok measurement of the compiler's default schedule of `workload` on `target`."""
        sql = (f"SELECT {_COLUMNS} FROM records WHERE workload = ? AND target = ? AND is_default = 1 "
               f"AND cost IS NOT NULL ORDER BY timestamp DESC, id DESC LIMIT 1")
        target = target_key(target)
        return self._read(lambda conn: _first(conn.execute(sql, (workload, target))), None)

    def get(self, id: int) -> Record | None:
        return self._read(lambda conn: _first(conn.execute(f"SELECT {_COLUMNS} FROM records WHERE id = ?",
                                                           (int(id),))), None)

    @staticmethod
    def _where(workload=None, target=None, kind=None, ok_only=False) -> tuple[list, list]:
        where, params = [], []
        if target is not None:
            target = target_key(target)
        for col, v in (("workload", workload), ("target", target), ("kind", kind)):
            if v is not None:
                where.append(f"{col} = ?")
                params.append(v)
        if ok_only:
            where.append("cost IS NOT NULL")
        return where, params

    def records(self, workload=None, target=None, kind=None, ok_only=False, limit=None) -> list[Record]:
        """Records matching every given filter, oldest first (by id); at most `limit`."""
        return list(self._iter(workload, target, kind, ok_only, limit))

    def _iter(self, workload=None, target=None, kind=None, ok_only=False, limit=None):
        """Like `records`, a page of rows per query (no read snapshot is held between pages)."""
        where, params = self._where(workload, target, kind, ok_only)
        last, left = 0, limit
        while left is None or left > 0:
            n = _PAGE if left is None else min(_PAGE, left)
            sql = (f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where + ['id > ?'])} "
                   f"ORDER BY id LIMIT {int(n)}")
            page = self._read(lambda conn: [_row_record(r) for r in conn.execute(sql, (*params, last))], [])
            yield from page
            if len(page) < n:
                return
            last = page[-1].id
            if left is not None:
                left -= len(page)

    def summary(self, target=None) -> list[dict]:
        """One dict per (workload, target): workload, target, kind, records, ok, default_cost, best_cost
        (seconds or None), last (timestamp of the newest record); sorted by workload then target."""
        if target is not None:
            target = target_key(target)
        where = "WHERE r.target = ?" if target is not None else ""
        sql = (f"SELECT r.workload, r.target, max(r.kind), count(*), count(r.cost), "
               f"(SELECT d.cost FROM records d WHERE d.workload = r.workload AND d.target = r.target "
               f"AND d.is_default = 1 AND d.cost IS NOT NULL ORDER BY d.timestamp DESC, d.id DESC LIMIT 1), "
               f"min(r.cost), max(r.timestamp) FROM records r {where} "
               f"GROUP BY r.workload, r.target ORDER BY r.workload, r.target")
        keys = ("workload", "target", "kind", "records", "ok", "default_cost", "best_cost", "last")
        return self._read(lambda conn: [dict(zip(keys, row))
                                        for row in conn.execute(sql, () if target is None else (target,))], [])

    def workloads(self, target=None) -> list[tuple]:
        """(workload, kind, number of records, default cost, best cost) per workload of `target`. With
        target None, one row per (workload, target) pair (a workload measured on two machines appears
        twice: costs of different machines are never mixed); `summary` also names the target."""
        return [(s["workload"], s["kind"], s["records"], s["default_cost"], s["best_cost"])
                for s in self.summary(target)]

    def empty(self) -> bool:
        """True when there is no file or no record (or no readable store); one stat when there is no file."""
        st = self._stat()
        if st is None or st.st_size == 0:
            return True
        return self._read(lambda conn: conn.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None, True)

    # -- export / import / prune ---------------------------------------------------------------

    def export_jsonl(self, fh, **filters) -> int:
        """Write the records matching `filters` (those of `records`) to the text file `fh`, one JSON
        object per line with every field (`Record.to_json`); returns how many."""
        n = 0
        for rec in self._iter(**filters):
            fh.write(json.dumps(rec.to_json(), sort_keys=True, separators=(",", ":")) + "\n")
            n += 1
        return n

    def import_jsonl(self, fh) -> int:
        """Add the records of a JSON-lines file (text or bytes lines); returns how many were added.

        Lines that repeat a stored record (same workload, target, steps, costs and timestamp) are
        skipped, and so are blank lines; a line that is not a record gives a RecordWarning naming its
        number. Records keep their timestamp and versions; ids are new.
        """
        return self._import(fh)[0]

    def _import(self, fh) -> tuple[int, int, int]:
        """(added, duplicates skipped, bad lines skipped)."""
        name = getattr(fh, "name", "<input>")
        added = dups = bad = 0
        batch: list = []

        def flush():
            nonlocal added, dups
            if batch:
                r = self._write(lambda conn: _insert_new(conn, batch))
                if r is not None:
                    added += r[0]
                    dups += r[1]
                batch.clear()

        for lineno, line in enumerate(fh, 1):
            try:
                if isinstance(line, bytes):
                    line = line.decode("utf-8")
                if not line.strip():
                    continue
                batch.append(self._row(Record.from_json(json.loads(line)), fill=False))
            except (ValueError, TypeError) as e:  # includes JSONDecodeError, UnicodeDecodeError
                bad += 1
                warnings.warn(f"jitensor: {name}, line {lineno}: not a tuning record, skipped ({e})",
                              RecordWarning, stacklevel=3)
                continue
            if len(batch) >= IMPORT_BATCH:
                flush()
        flush()
        return added, dups, bad

    def prune(self, keep: int = 1, target=None) -> int:
        """Per (workload, target), keep the `keep` best ok records (ordered as `best` orders them) and
        the latest ok default measurement; remove the rest, failed records included. Returns how many
        were removed (0 when the store cannot be written)."""
        if not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an integer >= 0, got {keep!r}")
        if self.empty():
            return 0

        if target is not None:
            target = target_key(target)

        def run(conn):
            tw, params = ("AND target = ?", (target,)) if target is not None else ("", ())
            removed = conn.execute(f"DELETE FROM records WHERE cost IS NULL {tw}", params).rowcount
            rows = conn.execute(f"SELECT id, workload, target, is_default, timestamp FROM records "
                                f"WHERE cost IS NOT NULL {tw} "
                                f"ORDER BY workload, target, cost, is_default DESC, timestamp, id", params)
            ranks: dict = {}
            latest_default: dict = {}
            drop = []
            for rid, workload, tgt, is_default, ts in rows:
                pair = (workload, tgt)
                rank = ranks[pair] = ranks.get(pair, 0) + 1
                if is_default and (ts, rid) > latest_default.get(pair, (-math.inf, -1)):
                    latest_default[pair] = (ts, rid)
                if rank > keep:
                    drop.append((rid, pair))
            keep_ids = {rid for _, rid in latest_default.values()}
            drop = [rid for rid, _ in drop if rid not in keep_ids]
            for i in range(0, len(drop), 500):
                chunk = drop[i:i + 500]
                removed += conn.execute(f"DELETE FROM records WHERE id IN ({','.join('?' * len(chunk))})",
                                        chunk).rowcount
            return removed

        return self._write(run) or 0


def _rollback(conn) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction (BEGIN failed) or already rolled back by SQLite


def _first(cursor) -> Record | None:
    row = cursor.fetchone()
    return None if row is None else _row_record(row)


def _insert_new(conn, rows) -> tuple[int, int]:
    added = dups = 0
    for row in rows:
        workload, target, _, steps, costs, cost, _, _, ts, _, _ = row
        if conn.execute("SELECT 1 FROM records WHERE workload = ? AND target = ? AND cost IS ? AND timestamp = ? "
                        "AND steps = ? AND costs = ? LIMIT 1", (workload, target, cost, ts, steps, costs)).fetchone():
            dups += 1
        else:
            conn.execute(RecordStore._INSERT, row)
            added += 1
    return added, dups


# ----------------------------------------------------------------------------- process-wide store

_default: RecordStore | None = None
_default_dir: str | None = None
_default_lock = threading.Lock()


def default_store() -> RecordStore:
    """The process-wide store at ``<default_cache_dir()>/records.sqlite``; a new one when
    $JITENSOR_CACHE_DIR (or what else decides the cache directory) has changed."""
    global _default, _default_dir
    d = default_cache_dir()
    with _default_lock:
        if _default is None or d != _default_dir:
            _default, _default_dir = RecordStore(), d
        return _default
