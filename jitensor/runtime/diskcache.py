"""On-disk cache of compiled kernels: object code plus JSON metadata, shared by a user's processes.

One self-describing file per entry, ``<key>.jtk``, in a private directory; the directory listing is
the only index, so nothing can get out of sync with it. File layout::

    magic (8 bytes) | format version (u32 LE) | header length (u32 LE) | header (canonical JSON)
    | sha256(everything before it) (32 bytes) | payload

The header holds the format version, the key, the key components, the jitensor version, the
payload size and sha256, the creation time and the rest of the metadata.

Beside an entry there may be *side files* ``<key>.<hash>.so``: a copy of bytes of the (verified)
payload that a loader needs as a file of its own (``dlopen`` maps a path: the program's shared
library). They are derived data: compared with the entry's bytes before every use
(``side_file``), rewritten when missing or different, removed with their entry. *Records*
``<name>.jtr`` are small verified JSON documents in the same format (the host's target, so that a
disk hit does not start LLVM to compute its key); they are not entries (not listed, counted or
evicted).

What this module guarantees, because the payload is machine code that will be executed:

* Entries are loaded only from a directory owned by the current user and not writable by group or
  others, and only from regular files owned by the current user. Otherwise the cache disables
  itself with one ``CacheWarning`` and the JIT compiles in memory.
* Every load verifies magic, version, key, sizes and both checksums; a bad entry is removed with a
  ``CacheWarning`` and reported as a miss. ``load``/``store`` never raise into the JIT (except a
  ``ValueError`` for a key that is not a safe file name, which is a programming error).
* Writes are atomic (temp file in the same directory, fsync, ``os.replace``), so concurrent
  processes and readers only ever see complete entries.
* A read-only directory or a full disk disables the cache with one warning.
* The total size is bounded; least-recently-used entries (by mtime, bumped on every hit, since atime
  is often not updated) are evicted after a store.

Only the standard library is imported here: the CLI imports this module and must start fast.
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import struct
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass

from jitensor.errors import CacheWarning

try:  # POSIX only; without it the stats file is updated without a lock (lost updates are fine)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SIDE_SUFFIX",
    "RECORD_SUFFIX",
    "DEFAULT_MAX_BYTES",
    "Entry",
    "DiskCache",
    "key_hash",
    "default_cache",
    "default_cache_dir",
]

FORMAT_VERSION = 2  # 2: programs carry a shared library (runtime/manifest.py version 2)
# PNG-style magic: the high byte and CR/LF/^Z catch text-mode and 7-bit mangling as well.
MAGIC = b"\x89JTK\r\n\x1a\n"
SUFFIX = ".jtk"
SIDE_SUFFIX = ".so"
RECORD_SUFFIX = ".jtr"
STATS_FILE = "stats.json"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

ENV_DIR = "JITENSOR_CACHE_DIR"
ENV_DISABLE = "JITENSOR_DISABLE_CACHE"
ENV_MAX_BYTES = "JITENSOR_CACHE_MAX_BYTES"

_PRELUDE = struct.Struct("<8sII")  # magic, format version, header length
_DIGEST_SIZE = 32
_EVICT_TARGET = 0.9  # evict below the limit so that every following store does not evict again
_STALE_TMP_S = 3600.0  # temp files this old belong to a crashed writer (and side files this old, to no entry)
_STALE_RECORD_S = 30 * 86400.0  # records unused this long describe a past machine (a kernel or llvmlite update)
_COUNTERS = ("hits", "misses", "stores", "evictions", "corrupt")
# Keys become file names: no separators, no leading dot (temp files and stats use those).
_KEY_RE = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z_.-]{0,127}\Z")
_SIDE_RE = re.compile(r"(?P<key>[0-9A-Za-z_-][0-9A-Za-z_.-]{0,127})\.[0-9a-f]{16}\.so\Z")
# Write errors that will not go away by retrying: stop using the disk for this process.
_FATAL_WRITE_ERRNOS = frozenset(
    e for e in (errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", None)) if e
)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def key_hash(components: dict) -> str:
    """Canonical key of a kernel: sha256 (hex) of its components as compact JSON with sorted keys.

    Tuples and lists hash alike (both are JSON arrays); a non-JSON-able value raises TypeError.
    """
    text = json.dumps(components, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Entry:
    payload: bytes
    meta: dict
    key: str
    path: str


class _Corrupt(Exception):
    """Internal: an entry file failed verification (reason, and the fstat of the file we judged)."""

    def __init__(self, reason: str, st: os.stat_result | None = None):
        super().__init__(reason)
        self.reason = reason
        self.st = st


# ----------------------------------------------------------------------------- environment


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def default_cache_dir() -> str:
    """$JITENSOR_CACHE_DIR, else $XDG_CACHE_HOME/jitensor, else ~/.cache/jitensor (absolute)."""
    d = os.environ.get(ENV_DIR)
    if d:
        return os.path.abspath(os.path.expanduser(d))
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        base = xdg
    elif os.name == "nt" and os.environ.get("LOCALAPPDATA"):  # pragma: no cover
        base = os.environ["LOCALAPPDATA"]
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jitensor")


def _parse_bytes(text: str) -> int:
    """'1000', '64k', '512M', '2G' (binary multiples) -> bytes."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = 1
    if t and t[-1] in "kmg":
        mult = 1024 ** ("kmg".index(t[-1]) + 1)
        t = t[:-1]
    n = int(float(t) * mult)
    if n < 0:
        raise ValueError(text)
    return n


def _env_max_bytes() -> int:
    raw = os.environ.get(ENV_MAX_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return _parse_bytes(raw)
    except ValueError:
        warnings.warn(f"jitensor: ignoring {ENV_MAX_BYTES}={raw!r} (not a size); using {DEFAULT_MAX_BYTES}",
                      CacheWarning, stacklevel=3)
        return DEFAULT_MAX_BYTES


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def _jitensor_version() -> str | None:
    # Read it only if the package is already imported: importing it here could pull in llvmlite.
    return getattr(sys.modules.get("jitensor"), "__version__", None)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"jitensor cache key must be a file-name-safe string such as key_hash() returns, got {key!r}")


# ----------------------------------------------------------------------------- file format


def _encode(key: str, payload: bytes, meta: dict) -> bytes:
    meta = dict(meta)
    components = meta.pop("components", None)
    header = {
        "format": FORMAT_VERSION,
        "key": key,
        "created": round(time.time(), 3),
        "jitensor_version": meta.get("jitensor_version") or _jitensor_version(),
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "components": components,
        "meta": meta,
    }
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    head = _PRELUDE.pack(MAGIC, FORMAT_VERSION, len(hbytes)) + hbytes
    return head + hashlib.sha256(head).digest() + payload


def _decode_head(data: bytes, nbytes: int) -> tuple[dict, int]:
    """Verify magic, version and header checksum; return (header, payload offset).

    `data` holds at least the prelude, header and digest when the file is intact; `nbytes` is the
    file size (only used in messages).
    """
    if nbytes == 0:
        raise _Corrupt("empty file")
    if len(data) < _PRELUDE.size:
        raise _Corrupt(f"truncated ({nbytes} bytes)")
    magic, version, hlen = _PRELUDE.unpack_from(data)
    if magic != MAGIC:
        raise _Corrupt("bad magic bytes (not a jitensor cache entry)")
    if version != FORMAT_VERSION:
        raise _Corrupt(f"format version {version}, this jitensor reads version {FORMAT_VERSION}")
    hend = _PRELUDE.size + hlen
    if len(data) < hend + _DIGEST_SIZE:
        raise _Corrupt(f"truncated ({nbytes} bytes, the header alone needs {hend + _DIGEST_SIZE})")
    if hashlib.sha256(data[:hend]).digest() != data[hend:hend + _DIGEST_SIZE]:
        raise _Corrupt("header checksum mismatch")
    try:
        header = json.loads(data[_PRELUDE.size:hend].decode("ascii"))
    except ValueError:  # includes UnicodeDecodeError; only reachable with a forged checksum
        raise _Corrupt("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise _Corrupt("header does not match the format version")
    return header, hend + _DIGEST_SIZE


def _decode(data: bytes, key: str) -> tuple[bytes, dict]:
    header, off = _decode_head(data, len(data))
    if header.get("key") != key:
        raise _Corrupt(f"header is for key {str(header.get('key'))[:16]!r}, not for the file's name")
    payload = data[off:]
    size = header.get("payload_size")
    if len(payload) != size:
        raise _Corrupt(f"payload is {len(payload)} bytes, header says {size} (truncated or appended to)")
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise _Corrupt("payload checksum mismatch")
    meta, components = header.get("meta"), header.get("components")
    if not isinstance(meta, dict):
        raise _Corrupt("header has no metadata")
    meta = dict(meta)
    if components is not None:
        meta["components"] = components
    return payload, meta


def _open_entry(path: str) -> tuple[int, os.stat_result]:
    """Open an entry for reading; refuse symlinks, non-regular files and other users' files."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _Corrupt("is a symbolic link; refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Corrupt("not a regular file", st)
        euid = _euid()
        if euid is not None and st.st_uid != euid:
            raise _Corrupt(f"owned by uid {st.st_uid}, not the current user; refusing to load machine code from it", st)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _read_header(path: str) -> dict | None:
    """Header of an entry (checksum-verified), without reading the payload; None if unreadable."""
    try:
        fd, st = _open_entry(path)
    except (OSError, _Corrupt):
        return None
    try:
        head = os.read(fd, _PRELUDE.size)
        if len(head) == _PRELUDE.size:
            hlen = _PRELUDE.unpack_from(head)[2]
            if hlen <= st.st_size:  # a corrupt length must not make us allocate gigabytes
                head += os.read(fd, hlen + _DIGEST_SIZE)
        return _decode_head(head, st.st_size)[0]
    except (OSError, _Corrupt):
        return None
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    # Makes the rename durable; not possible on every OS/filesystem, and only best effort.
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _StatsLock:
    """Exclusive flock on a lock file next to stats.json, so that concurrent flushes do not lose counts."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def __enter__(self):
        if fcntl is not None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError:
                pass  # locking unsupported (some network filesystems): proceed unlocked
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock


def _read_stats(path: str) -> dict:
    """Persisted totals; a missing or corrupt file reads as all zeros (it is rebuilt on the next flush)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        return dict.fromkeys(_COUNTERS, 0)
    if not isinstance(data, dict):
        data = {}
    return {k: v if isinstance(v := data.get(k), int) and not isinstance(v, bool) and v >= 0 else 0
            for k in _COUNTERS}


def _flush_at_exit(ref: weakref.ref) -> None:
    cache = ref()
    if cache is not None:
        try:
            cache._flush_stats()
        except Exception:  # interpreter shutdown: never print a traceback for a statistic
            pass


# ----------------------------------------------------------------------------- the cache


class DiskCache:
    """A directory of ``<key>.jtk`` entries; see the module docstring for the guarantees.

    `enabled` turns False (for the life of this object) when the directory is unsafe, unwritable or
    full, or when $JITENSOR_DISABLE_CACHE is set; `disabled_reason` then says why. While disabled,
    `load` returns None and `store` does nothing. `entries`, `info` and `clear` work regardless,
    since they never execute anything from the directory (the CLI uses them on any directory).
    """

    def __init__(self, path: str | None = None, max_bytes: int | None = None):
        self.path = os.path.abspath(os.path.expanduser(path)) if path else default_cache_dir()
        self.max_bytes = _env_max_bytes() if max_bytes is None else max(0, int(max_bytes))
        self.enabled = True
        self.disabled_reason: str | None = None
        self._lock = threading.RLock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._pending = dict.fromkeys(_COUNTERS, 0)  # not yet added to stats.json
        self._warned: set = set()
        if _env_flag(ENV_DISABLE):
            self._disable(f"disabled by {ENV_DISABLE}={os.environ.get(ENV_DISABLE)}", warn=False)
        else:
            # Check now (without creating the directory) so that `enabled` is meaningful at once.
            self._check_dir(create=False)
        # Persist the counters of processes that only ever load (no store triggers a flush).
        atexit.register(_flush_at_exit, weakref.ref(self))

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else f"disabled: {self.disabled_reason}"
        return f"DiskCache({self.path!r}, {state})"

    # -- state -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        """This process's counters: hits, misses, stores, evictions, corrupt."""
        with self._lock:
            return dict(self._counts)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n
            self._pending[name] += n

    def _warn_once(self, tag, msg: str) -> None:
        with self._lock:
            if tag in self._warned:
                return
            self._warned.add(tag)
        warnings.warn(msg, CacheWarning, stacklevel=4)

    def _disable(self, reason: str, warn: bool = True) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
            self.disabled_reason = reason
        if warn:
            warnings.warn(f"jitensor: {reason}; disk cache disabled, compiling in memory",
                          CacheWarning, stacklevel=4)

    def _check_dir(self, create: bool) -> bool:
        """True if entries may be read/written now. Re-checked on every load/store (one stat) so that
        a directory made unsafe after start-up is still caught before machine code is loaded."""
        if not self.enabled:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if not create:
                return False  # nothing cached yet; the first store creates the directory
            try:
                # 0o700: only this user may plant machine code here.
                os.makedirs(self.path, mode=0o700, exist_ok=True)
                st = os.stat(self.path)
            except OSError as e:
                self._write_failed(e, f"cannot create cache dir {self.path}")
                return False
        except OSError as e:
            self._disable(f"cannot access cache dir {self.path} ({e.strerror or e})")
            return False
        problem = self._dir_problem(st)
        if problem:
            self._disable(problem)
            return False
        return True

    def _dir_problem(self, st: os.stat_result) -> str | None:
        p = self.path
        if not stat.S_ISDIR(st.st_mode):
            return f"cache path {p} is not a directory"
        euid = _euid()
        if euid is None:  # pragma: no cover - no POSIX ownership/modes (Windows): rely on the profile ACLs
            return None
        if st.st_uid != euid:
            return (f"cache dir {p} is owned by uid {st.st_uid}, not the current user (uid {euid}); "
                    f"not loading machine code from it")
        for bit, who in ((stat.S_IWOTH, "others"), (stat.S_IWGRP, "its group")):
            if st.st_mode & bit:
                return (f"cache dir {p} is writable by {who}; not loading machine code from it "
                        f"(mode {stat.S_IMODE(st.st_mode):o}; `chmod go-w` it to use it)")
        return None

    def _write_failed(self, e: OSError, what: str | None = None) -> None:
        what = what or f"cannot write to cache dir {self.path}"
        if e.errno in _FATAL_WRITE_ERRNOS:
            if os.name == "nt" and isinstance(e, PermissionError):  # pragma: no cover
                return  # replacing a file another process has open: transient on Windows
            name = errno.errorcode.get(e.errno, str(e.errno))
            self._disable(f"{what} ({e.strerror or e}, {name})")
        else:
            self._warn_once(("write", e.errno),
                            f"jitensor: {what} ({e}); this kernel is not cached, the program continues")

    def _entry_path(self, key: str) -> str:
        return os.path.join(self.path, key + SUFFIX)

    # -- load / store ----------------------------------------------------------------------

    def load(self, key: str) -> Entry | None:
        """The verified entry for `key`, or None (miss, bad entry removed, or cache disabled)."""
        _check_key(key)
        try:
            return self._load(key)
        except Exception as e:  # a cache must never break a call: report and recompile
            self._warn_once(("load-internal", type(e)), f"jitensor: disk cache load failed ({e!r}); recompiling")
            return None

    def _load(self, key: str) -> Entry | None:
        if not self.enabled:
            return None
        if not self._check_dir(create=False):
            if self.enabled:
                self._count("misses")
            return None
        path = self._entry_path(key)
        try:
            fd, st = _open_entry(path)
            try:
                data = _read_all(fd)
            finally:
                os.close(fd)
            try:
                payload, meta = _decode(data, key)
            except _Corrupt as c:
                c.st = st
                raise
        except FileNotFoundError:
            self._count("misses")
            return None
        except _Corrupt as c:
            self._drop(path, c)
            self._count("misses")
            return None
        except OSError as e:
            self._warn_once(("read", e.errno), f"jitensor: cannot read cache entry {path} ({e}); recompiling")
            self._count("misses")
            return None
        try:
            os.utime(path)  # LRU clock: mtime = last use
        except OSError:
            pass
        self._count("hits")
        return Entry(payload=payload, meta=meta, key=key, path=path)

    def _drop(self, path: str, c: _Corrupt) -> None:
        """Remove a bad entry (and its side files), unless another process has already replaced it with a new file."""
        self._count("corrupt")
        try:
            now = os.lstat(path)
            if c.st is None or (now.st_ino, now.st_dev) == (c.st.st_ino, c.st.st_dev):
                os.unlink(path)
                removed = "removed"
                self._remove_sides(os.path.basename(path)[:-len(SUFFIX)])
            else:
                removed = "another process has replaced it meanwhile"
        except FileNotFoundError:
            removed = "removed"
        except OSError as e:
            removed = f"could not remove it: {e.strerror or e}"
        warnings.warn(f"jitensor: dropped cache entry {path}: {c.reason} ({removed}); recompiling",
                      CacheWarning, stacklevel=4)

    def store(self, key: str, payload: bytes, meta: dict, side: bytes | None = None) -> None:
        """Write an entry atomically; never raises (failures warn and disable or skip). `side`: bytes of the
        payload that a loader will need as a file of their own (see `side_file`), written first."""
        _check_key(key)
        try:
            self._store(key, payload, meta, side)
        except Exception as e:
            self._warn_once(("store-internal", type(e)), f"jitensor: disk cache store failed ({e!r}); not cached")

    def _store(self, key: str, payload: bytes, meta: dict, side: bytes | None = None) -> None:
        if not self.enabled:
            return
        try:
            data = _encode(key, bytes(payload), meta)
        except (TypeError, ValueError) as e:
            self._warn_once(("meta", key), f"jitensor: metadata of kernel {key[:16]} is not JSON-serializable "
                                           f"({e}); not cached")
            return
        if len(data) > self.max_bytes:
            return  # it would be the first thing evicted
        if not self._check_dir(create=True):
            return
        path = self._entry_path(key)
        if self._valid_entry_exists(path, key):
            return  # write-once: another process (or call) already stored it
        if side:
            self._side_file(key, bytes(side))  # before the entry: readers that find the entry find the file
        for attempt in (0, 1):
            try:
                self._write_atomic(path, data)
                break
            except FileNotFoundError as e:
                # The directory was removed under us (rm -rf ~/.cache): recreate it once.
                if attempt == 0 and self._check_dir(create=True):
                    continue
                self._write_failed(e)
                return
            except OSError as e:
                self._write_failed(e)
                return
        self._count("stores")
        try:
            self._evict(keep=path)
        except OSError:
            pass  # eviction is housekeeping; the next store tries again
        self._flush_stats()

    def _valid_entry_exists(self, path: str, key: str) -> bool:
        try:
            fd, _ = _open_entry(path)
            try:
                _decode(_read_all(fd), key)
            finally:
                os.close(fd)
            return True
        except (OSError, _Corrupt):
            return False  # absent or bad: overwrite it (os.replace also replaces a bad file)

    def _write_atomic(self, path: str, data: bytes) -> None:
        # Unique temp name (pid + random) in the same directory, so os.replace is an atomic rename;
        # the leading dot keeps it out of the entry listing.
        tmp = os.path.join(self.path, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)  # the data must be on disk before the name points at it
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(self.path)

    # -- side files and records ------------------------------------------------------------

    def side_file(self, key: str, data: bytes) -> str | None:
        """Path of a regular file ``<key>.<sha256(data)[:16]>.so`` in the directory holding exactly `data`,
        for a loader that needs a path (``dlopen``). `data` comes from the verified entry `key`. An existing
        file is read back and compared with it first (a damaged or foreign one warns and is replaced, never
        handed out); a missing one is written atomically. None when the cache is disabled or the file
        cannot be written; never raises."""
        _check_key(key)
        try:
            return self._side_file(key, bytes(data))
        except Exception as e:
            self._warn_once(("side-internal", type(e)), f"jitensor: cache side file failed ({e!r}); not used")
            return None

    def _side_file(self, key: str, data: bytes) -> str | None:
        if not self.enabled or not self._check_dir(create=True):
            return None
        path = os.path.join(self.path, f"{key}.{hashlib.sha256(data).hexdigest()[:16]}{SIDE_SUFFIX}")
        problem = None
        try:
            fd, st = _open_entry(path)
            try:
                if st.st_size == len(data) and _read_all(fd) == data:
                    return path
            finally:
                os.close(fd)
            problem = "does not match its cache entry (damaged)"
        except FileNotFoundError:
            pass
        except _Corrupt as c:
            problem = c.reason
        except OSError as e:
            self._warn_once(("side-read", e.errno), f"jitensor: cannot read {path} ({e}); not used")
            return None
        if problem:
            self._count("corrupt")
            warnings.warn(f"jitensor: cache file {path} {problem}; replacing it from its verified entry",
                          CacheWarning, stacklevel=4)
        try:
            self._write_atomic(path, data)  # os.replace also replaces a symlink itself, never its target
        except OSError as e:
            self._warn_once(("side-write", e.errno), f"jitensor: cannot write {path} ({e}); not used")
            return None
        return path

    def _remove_sides(self, key: str) -> None:
        try:
            names = os.listdir(self.path)
        except OSError:
            return
        for name in names:
            m = _SIDE_RE.match(name)
            if m and m.group("key") == key:
                try:
                    os.unlink(os.path.join(self.path, name))
                except OSError:
                    pass

    def load_record(self, name: str) -> dict | None:
        """The metadata of record ``<name>.jtr`` (verified like an entry; not counted in the statistics), or
        None. A damaged record is removed silently: records are recomputed by whoever asks for them."""
        _check_key(name)
        if not self.enabled or not self._check_dir(create=False):
            return None
        path = os.path.join(self.path, name + RECORD_SUFFIX)
        try:
            fd, st = _open_entry(path)
            try:
                data = _read_all(fd)
            finally:
                os.close(fd)
            _, meta = _decode(data, name)
        except _Corrupt:
            try:
                os.unlink(path)
            except OSError:
                pass
            return None
        except OSError:
            return None
        if time.time() - st.st_mtime > 86400:  # records unused for long are removed by _scan
            try:
                os.utime(path)
            except OSError:
                pass
        return meta

    def store_record(self, name: str, meta: dict) -> None:
        """Write record ``<name>.jtr`` atomically; failures are silent (the record is an optimization)."""
        _check_key(name)
        try:
            data = _encode(name, b"", meta)
            if self._check_dir(create=True):
                self._write_atomic(os.path.join(self.path, name + RECORD_SUFFIX), data)
        except (OSError, TypeError, ValueError):
            pass

    # -- eviction / listing ----------------------------------------------------------------

    def _scan(self) -> list[tuple[str, str, os.stat_result]]:
        """(key, path, lstat) of every entry file; also removes temp files of crashed writers."""
        return self._scan_all()[0]

    def _scan_all(self) -> tuple[list, dict]:
        """(entries as (key, path, lstat), side files as {key: [(path, lstat)]}); also removes temp files of
        crashed writers, side files of no entry and records unused for a month, once they are old."""
        out, sides = [], {}
        now = time.time()
        try:
            it = os.scandir(self.path)
        except OSError:
            return out, sides
        with it:
            for de in it:
                name = de.name
                try:
                    if name.startswith("."):
                        if name.endswith(".tmp") and now - de.stat(follow_symlinks=False).st_mtime > _STALE_TMP_S:
                            os.unlink(de.path)
                        continue
                    if name.endswith(SIDE_SUFFIX):
                        m = _SIDE_RE.match(name)
                        if m:
                            sides.setdefault(m.group("key"), []).append((de.path, de.stat(follow_symlinks=False)))
                        continue
                    if name.endswith(RECORD_SUFFIX):
                        if now - de.stat(follow_symlinks=False).st_mtime > _STALE_RECORD_S:
                            os.unlink(de.path)
                        continue
                    if not name.endswith(SUFFIX) or not _KEY_RE.match(name[:-len(SUFFIX)]):
                        continue
                    out.append((name[:-len(SUFFIX)], de.path, de.stat(follow_symlinks=False)))
                except OSError:
                    continue  # vanished meanwhile (another process evicted it)
        keys = {k for k, _, _ in out}
        for k in [k for k in sides if k not in keys]:  # an entry dropped or evicted by a process that died
            fresh = []
            for path, st in sides[k]:
                if now - st.st_mtime > _STALE_TMP_S:
                    try:
                        os.unlink(path)
                        continue
                    except OSError:
                        pass
                fresh.append((path, st))
            sides[k] = fresh
        return out, sides

    def _evict(self, keep: str) -> None:
        items, sides = self._scan_all()
        total = sum(st.st_size for _, _, st in items) + sum(st.st_size for v in sides.values() for _, st in v)
        if total <= self.max_bytes:
            return
        target = int(self.max_bytes * _EVICT_TARGET)
        items.sort(key=lambda t: (t[2].st_mtime_ns, t[1]))  # least recently used first
        n = 0
        for key, path, st in items:
            if total <= target:
                break
            if path == keep:
                continue
            try:
                os.unlink(path)
                n += 1
            except FileNotFoundError:
                pass  # a concurrent process evicted it: it no longer counts either way
            except OSError:
                continue
            total -= st.st_size
            for spath, sst in sides.get(key, ()):
                try:
                    os.unlink(spath)
                except OSError:
                    pass
                total -= sst.st_size
        if n:
            self._count("evictions", n)

    def entries(self) -> list[dict]:
        """One dict per entry, most recently used first: key, path, size (with its side files), created,
        last_used, age, name."""
        now = time.time()
        out = []
        items, sides = self._scan_all()
        for key, path, st in items:
            header = _read_header(path)
            meta = (header or {}).get("meta") or {}
            comps = (header or {}).get("components") or {}
            name = meta.get("name") if isinstance(meta, dict) else None
            if name is None and isinstance(comps, dict):
                name = comps.get("function")
            out.append({
                "key": key,
                "path": path,
                "size": st.st_size + sum(sst.st_size for _, sst in sides.get(key, ())),
                "created": (header or {}).get("created"),
                "last_used": st.st_mtime,
                "age": max(0.0, now - st.st_mtime),
                "name": name,
                "valid_header": header is not None,
            })
        out.sort(key=lambda e: e["last_used"], reverse=True)
        return out

    def info(self) -> dict:
        """Location, state, size and counters (this process's, and persisted totals over all processes)."""
        self._flush_stats()
        items, sides = self._scan_all()
        with self._lock:
            counts = dict(self._counts)
            pending = dict(self._pending)
        totals = _read_stats(os.path.join(self.path, STATS_FILE))
        for k in _COUNTERS:
            totals[k] += pending[k]  # not yet flushed (e.g. when the cache is disabled)
        return {
            "path": self.path,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "format_version": FORMAT_VERSION,
            "entries": len(items),
            "total_bytes": sum(st.st_size for _, _, st in items) + sum(st.st_size for v in sides.values()
                                                                          for _, st in v),
            "max_bytes": self.max_bytes,
            **counts,
            "totals": totals,
        }

    def discard(self, key: str, reason: str) -> None:
        """Remove an entry that verified but proved unusable (e.g. object code that does not load), with a
        CacheWarning; the next store writes a fresh one."""
        _check_key(key)
        self._drop(self._entry_path(key), _Corrupt(reason))

    def remove(self, key: str) -> None:
        """Remove a valid entry that is out of date (its kernels' schedules are not the ones the tuning
        records choose now), silently: the next store writes the new one."""
        _check_key(key)
        try:
            os.unlink(self._entry_path(key))
        except OSError:
            pass

    def clear(self) -> int:
        """Remove every entry (and side files and records); returns how many entries were removed. Statistics
        are kept."""
        n = 0
        items, sides = self._scan_all()
        for _, path, _ in items:
            try:
                os.unlink(path)
                n += 1
            except OSError:
                pass
        try:
            names = os.listdir(self.path)
        except OSError:
            names = []
        for name in names:
            if _SIDE_RE.match(name) or (name.endswith(RECORD_SUFFIX) and _KEY_RE.match(name[:-len(RECORD_SUFFIX)])) \
                    or (name.startswith("onnx-") and name.endswith(".json")):  # ONNX model indexes (onnx/index.py)
                try:
                    os.unlink(os.path.join(self.path, name))
                except OSError:
                    pass
        return n

    # -- statistics ------------------------------------------------------------------------

    def _flush_stats(self) -> None:
        """Add this process's unsaved counters to stats.json (locked read-modify-atomic-replace).

        Best effort: any failure keeps the counts pending for the next try and is never reported.
        """
        with self._lock:
            if not self.enabled or not any(self._pending.values()):
                return
            pending = dict(self._pending)
            path = os.path.join(self.path, STATS_FILE)
            try:
                if not os.path.isdir(self.path):
                    return
                with _StatsLock(os.path.join(self.path, ".stats.lock")):
                    totals = _read_stats(path)
                    for k in _COUNTERS:
                        totals[k] += pending[k]
                    tmp = os.path.join(self.path, f".{STATS_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
                    try:
                        with open(tmp, "w", encoding="ascii") as f:
                            json.dump(totals, f, sort_keys=True)
                        os.replace(tmp, path)
                    except BaseException:
                        try:
                            os.unlink(tmp)
                        except OSError:
                            pass
                        raise
            except OSError:
                return
            for k in _COUNTERS:
                self._pending[k] -= pending[k]

    # -- diagnostics -----------------------------------------------------------------------

    def explain_miss(self, components: dict) -> str:
        """Why `components` missed: how each cached entry of the same function differs from them."""
        fn = components.get("function") if isinstance(components, dict) else None
        if fn is None:
            return "the key components have no 'function'; cannot look for related entries"
        prefix = "" if self.enabled else f"disk cache disabled: {self.disabled_reason}\n"
        found = []
        for key, path, st in self._scan():
            comps = (_read_header(path) or {}).get("components")
            if isinstance(comps, dict) and comps.get("function") == fn:
                found.append((st.st_mtime, key, comps))
        if not found:
            return prefix + f"no entry for function {fn} in {self.path}"
        found.sort(key=lambda t: t[0], reverse=True)
        try:
            want = key_hash(components)
        except (TypeError, ValueError):
            want = None
        n = len(found)
        lines = [f"{n} cached {'entry' if n == 1 else 'entries'} for function {fn} (cached vs requested):"]
        for _, key, comps in found[:10]:
            diffs = [f"{k}: {_show(comps.get(k, _ABSENT))} vs {_show(components.get(k, _ABSENT))}"
                     for k in sorted(set(comps) | set(components), key=str)
                     if k != "function" and _canon(comps.get(k, _ABSENT)) != _canon(components.get(k, _ABSENT))]
            if diffs:
                lines.append(f"  entry {key[:12]}..: differs in " + "; ".join(diffs))
            elif key == want:
                lines.append(f"  entry {key[:12]}..: identical components (it was stored after the miss)")
            else:
                lines.append(f"  entry {key[:12]}..: identical components but stored under another key "
                             f"(the requested components hash to {str(want)[:12]}..)")
        if n > 10:
            lines.append(f"  ... and {n - 10} more")
        return prefix + "\n".join(lines)


_ABSENT = object()


def _canon(v) -> str:
    if v is _ABSENT:
        return "\0absent"
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=repr)


def _show(v, width: int = 80) -> str:
    s = "<absent>" if v is _ABSENT else _canon(v)
    return s if len(s) <= width else s[:width - 3] + "..."


# ----------------------------------------------------------------------------- process-wide cache

_default: DiskCache | None = None
_default_sig: tuple | None = None
_default_lock = threading.Lock()


def default_cache() -> DiskCache:
    """The process-wide cache; re-created when the environment variables that configure it change."""
    global _default, _default_sig
    sig = (default_cache_dir(), _env_flag(ENV_DISABLE), os.environ.get(ENV_MAX_BYTES))
    with _default_lock:
        if _default is None or sig != _default_sig:
            if _default is not None:
                _default._flush_stats()
            _default, _default_sig = DiskCache(), sig
        return _default
