"""The on-disk kernel cache: format verification, safety checks, failure handling, LRU, concurrency."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import jitensor.runtime.diskcache as dc
from jitensor.errors import CacheWarning
from jitensor.runtime.diskcache import FORMAT_VERSION, DiskCache, Entry, default_cache, key_hash

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
REPO_ROOT = Path(dc.__file__).resolve().parents[2]

COMPONENTS = {"function": "model.f", "shapes": [[3, 4]], "dtypes": ["float32"], "llvm_version": "15.0.7"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (dc.ENV_DIR, dc.ENV_DISABLE, dc.ENV_MAX_BYTES):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(dc.ENV_DIR, str(d))
    return d


@pytest.fixture
def cache(cache_dir):
    return DiskCache()


@contextmanager
def no_cache_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    bad = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert not bad, bad


@contextmanager
def one_cache_warning(match: str):
    """Exactly one CacheWarning, matching `match`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(msgs) == 1, msgs
    assert re.search(match, msgs[0]), msgs[0]


def meta_for(components=COMPONENTS, **extra):
    return {"name": components["function"], "components": dict(components), **extra}


def store_one(cache, components=COMPONENTS, payload=b"\x7fELF" + bytes(range(256)) * 4, **extra):
    key = key_hash(components)
    cache.store(key, payload, meta_for(components, **extra))
    return key, payload


def tmp_files(d: Path):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- keys


def test_key_hash_is_canonical_sha256_of_compact_sorted_json():
    a = {"function": "m.f", "shapes": [[3, 4]], "opts": {"x": 1, "y": [1, 2]}}
    b = {"opts": {"y": [1, 2], "x": 1}, "shapes": [[3, 4]], "function": "m.f"}
    assert key_hash(a) == key_hash(b)
    expected = hashlib.sha256(b'{"function":"m.f","opts":{"x":1,"y":[1,2]},"shapes":[[3,4]]}').hexdigest()
    assert key_hash(a) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash(a))
    assert key_hash({"shapes": ((3, 4),)}) == key_hash({"shapes": [[3, 4]]})
    assert key_hash({"shapes": [[3, 4]]}) != key_hash({"shapes": [[4, 3]]})


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                     max_leaves=8)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=6))
def test_key_hash_independent_of_dict_order(d):
    assert key_hash(d) == key_hash(dict(reversed(list(d.items()))))


@pytest.mark.parametrize("bad", ["", ".hidden", "../x", "a/b", "a\\b", "x" * 200, 12])
def test_unsafe_keys_are_rejected(cache, bad):
    with pytest.raises(ValueError):
        cache.load(bad)
    with pytest.raises(ValueError):
        cache.store(bad, b"x", {})


# ----------------------------------------------------------------------------- round trip


def test_round_trip(cache, cache_dir):
    with no_cache_warnings():
        assert cache.load(key_hash(COMPONENTS)) is None  # nothing yet, and no directory created
        assert not cache_dir.exists()
        key, payload = store_one(cache, jitensor_version="0.1")
        e = cache.load(key)
    assert isinstance(e, Entry)
    assert (e.payload, e.key) == (payload, key)
    assert e.meta == meta_for(jitensor_version="0.1")
    assert e.path == str(cache_dir / f"{key}.jtk")
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in cache_dir.iterdir() if p.suffix == ".jtk") == [f"{key}.jtk"]
    assert tmp_files(cache_dir) == []
    with pytest.raises(AttributeError):  # frozen
        e.payload = b""
    # The file is self-describing: the header names the key, components, version and checksums.
    data = Path(e.path).read_bytes()
    assert data.startswith(dc.MAGIC)
    _, version, hlen = dc._PRELUDE.unpack_from(data)
    header = json.loads(data[dc._PRELUDE.size:dc._PRELUDE.size + hlen])
    assert version == header["format"] == FORMAT_VERSION
    assert header["key"] == key and header["components"] == COMPONENTS
    assert header["jitensor_version"] == "0.1" and header["payload_size"] == len(payload)
    assert header["payload_sha256"] == hashlib.sha256(payload).hexdigest()


@settings(max_examples=30, deadline=None)
@given(payload=st.binary(max_size=2000), meta=st.dictionaries(st.text(max_size=5), _json, max_size=4))
def test_round_trip_any_payload_and_meta(tmp_path_factory, payload, meta):
    c = DiskCache(str(tmp_path_factory.mktemp("c")))
    key = hashlib.sha256(payload).hexdigest()
    c.store(key, payload, meta)
    e = c.load(key)
    assert e is not None and e.payload == payload and e.meta == meta


def test_store_is_write_once(cache):
    key = key_hash(COMPONENTS)
    with no_cache_warnings():
        cache.store(key, b"first", meta_for())
        cache.store(key, b"second", meta_for())
        assert cache.load(key).payload == b"first"
    assert cache.stats["stores"] == 1


def test_store_replaces_a_bad_existing_entry(cache, cache_dir):
    key = key_hash(COMPONENTS)
    cache_dir.mkdir(mode=0o700)
    (cache_dir / f"{key}.jtk").write_bytes(b"garbage")
    with no_cache_warnings():
        cache.store(key, b"good", meta_for())
        assert cache.load(key).payload == b"good"


def test_non_json_meta_is_not_cached_but_does_not_disable(cache):
    key = key_hash(COMPONENTS)
    with one_cache_warning("not JSON-serializable"):
        cache.store(key, b"x", {"obj": object()})
    assert cache.enabled and cache.load(key) is None
    cache.store(key, b"x", {"ok": 1})
    assert cache.load(key).payload == b"x"


# ----------------------------------------------------------------------------- corruption


def _rewrite(path: Path, fn):
    path.write_bytes(fn(path.read_bytes()))


def _flip(i):
    return lambda d: d[:i] + bytes([d[i] ^ 0x5A]) + d[i + 1:]


FAULTS = {
    "truncated_payload": (lambda d: d[:-7], "payload is"),
    "truncated_header": (lambda d: d[:40], "truncated"),
    "truncated_prelude": (lambda d: d[:5], "truncated"),
    "appended_bytes": (lambda d: d + b"\0", "payload is"),
    "flipped_payload_byte": (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "payload checksum"),
    "flipped_header_byte": (_flip(dc._PRELUDE.size + 10), "header checksum"),
    "flipped_header_digest": (lambda d: _flip(dc._PRELUDE.size + dc._PRELUDE.unpack_from(d)[2])(d), "header checksum"),
    "wrong_magic": (_flip(0), "magic"),
    "zero_length": (lambda d: b"", "empty"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_corrupt_entry_is_dropped_with_warning_then_store_works(cache, fault):
    corrupt, reason = FAULTS[fault]
    key, payload = store_one(cache)
    path = Path(cache.path) / f"{key}.jtk"
    _rewrite(path, corrupt)
    with one_cache_warning(re.escape(str(path)) + ".*" + reason):
        assert cache.load(key) is None
    assert not path.exists()
    assert cache.stats["corrupt"] == 1
    with no_cache_warnings():
        cache.store(key, payload, meta_for())
        assert cache.load(key).payload == payload


def test_foreign_format_version_is_dropped(cache, monkeypatch):
    monkeypatch.setattr(dc, "FORMAT_VERSION", FORMAT_VERSION + 1)
    key, payload = store_one(cache)  # a well-formed entry written by a future jitensor
    monkeypatch.setattr(dc, "FORMAT_VERSION", FORMAT_VERSION)
    path = Path(cache.path) / f"{key}.jtk"
    assert path.exists()
    with one_cache_warning(f"{re.escape(str(path))}.*format version {FORMAT_VERSION + 1}"):
        assert cache.load(key) is None
    assert not path.exists()
    store_one(cache)
    assert cache.load(key).payload == payload


def test_entry_under_another_keys_name_is_dropped(cache):
    key, _ = store_one(cache)
    other = key_hash({**COMPONENTS, "shapes": [[5, 4]]})
    d = Path(cache.path)
    shutil.copy(d / f"{key}.jtk", d / f"{other}.jtk")
    with one_cache_warning(f"{other}.jtk.*not for the file's name"):
        assert cache.load(other) is None
    assert not (d / f"{other}.jtk").exists()
    assert cache.load(key) is not None


def test_every_single_byte_flip_and_truncation_is_detected(cache):
    key, payload = store_one(cache, payload=b"0123456789abcdef")
    path = Path(cache.path) / f"{key}.jtk"
    good = path.read_bytes()
    cases = [_flip(i)(good) for i in range(len(good))] + [good[:n] for n in range(len(good))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for data in cases:
            path.write_bytes(data)
            assert cache.load(key) is None
            assert not path.exists()
    assert sum(issubclass(w.category, CacheWarning) for w in caught) == len(cases)
    path.write_bytes(good)
    assert cache.load(key).payload == payload


def test_symlinked_entry_is_refused(cache, tmp_path):
    key, _ = store_one(cache)
    path = Path(cache.path) / f"{key}.jtk"
    target = tmp_path / "elsewhere.jtk"
    path.rename(target)
    path.symlink_to(target)
    with one_cache_warning("symbolic link"):
        assert cache.load(key) is None
    assert not path.is_symlink() and target.exists()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to chown a file to another user")
def test_entry_owned_by_another_user_is_refused(cache):
    key, _ = store_one(cache)
    path = Path(cache.path) / f"{key}.jtk"
    os.chown(path, 4242, 4242)
    with one_cache_warning("owned by uid 4242"):
        assert cache.load(key) is None
    assert not path.exists()


def test_read_error_is_a_miss_not_an_exception(cache, monkeypatch):
    key, _ = store_one(cache)

    def eio(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "read", eio)
    with one_cache_warning("cannot read cache entry"):
        assert cache.load(key) is None
        assert cache.load(key) is None  # warned once
    monkeypatch.undo()
    assert cache.load(key) is not None


# ----------------------------------------------------------------------------- unsafe directory


@pytest.mark.parametrize("mode, who", [(0o777, "others"), (0o770, "its group"), (0o1777, "others")])
def test_writable_dir_disables_cache(cache_dir, mode, who):
    cache_dir.mkdir()
    os.chmod(cache_dir, mode)
    with one_cache_warning(f"cache dir {re.escape(str(cache_dir))} is writable by {who}; not loading machine code"):
        c = DiskCache()
        key, _ = store_one(c)
        assert c.load(key) is None
    assert not c.enabled and "writable" in c.disabled_reason
    assert list(cache_dir.iterdir()) == []
    assert c.info()["enabled"] is False


def test_dir_owned_by_another_user_disables_cache(cache_dir, monkeypatch):
    cache_dir.mkdir(mode=0o700)
    good = DiskCache()
    key, _ = store_one(good)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # we now are someone else than the owner
    with one_cache_warning("is owned by uid .*not the current user .*uid 4242"):
        c = DiskCache()
        assert c.load(key) is None
    assert not c.enabled


def test_dir_made_unsafe_later_is_caught_before_loading(cache):
    key, _ = store_one(cache)
    os.chmod(cache.path, 0o777)
    with one_cache_warning("writable by others"):
        assert cache.load(key) is None
        assert cache.load(key) is None
    assert not cache.enabled


def test_cache_path_that_is_a_file_disables(cache_dir):
    cache_dir.write_text("not a dir")
    with one_cache_warning("not a directory"):
        c = DiskCache()
        c.store("k", b"x", {})
    assert not c.enabled


# ----------------------------------------------------------------------------- unwritable / full disk


def _raiser(err):
    def f(*a, **k):
        raise OSError(err, os.strerror(err))
    return f


@pytest.mark.parametrize("err, target", [(errno.EROFS, "replace"), (errno.ENOSPC, "write"),
                                         (errno.EACCES, "open"), (errno.EDQUOT, "fsync")])
def test_unwritable_or_full_disk_warns_once_and_disables(cache, monkeypatch, err, target):
    key0, _ = store_one(cache, {**COMPONENTS, "shapes": [[1]]})  # the directory exists and works
    real_open = os.open

    def failing_open(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(err, os.strerror(err))
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, target, failing_open if target == "open" else _raiser(err))
    with one_cache_warning(f"cannot write to cache dir .*{errno.errorcode[err]}.*disk cache disabled"):
        key, _ = store_one(cache)
        store_one(cache, {**COMPONENTS, "shapes": [[2]]})
    monkeypatch.undo()
    assert not cache.enabled
    assert cache.load(key) is None and cache.load(key0) is None  # in-memory only from now on
    assert tmp_files(Path(cache.path)) == []
    assert not (Path(cache.path) / f"{key}.jtk").exists()


def test_cannot_create_dir_warns_once(cache, monkeypatch):
    monkeypatch.setattr(os, "makedirs", _raiser(errno.EACCES))
    with one_cache_warning("cannot create cache dir"):
        store_one(cache)
        store_one(cache)
    assert not cache.enabled


@pytest.mark.skipif(IS_ROOT, reason="root ignores directory permissions")
def test_read_only_dir_for_real(cache_dir):
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o500)
    try:
        with one_cache_warning("cannot write"):
            c = DiskCache()
            store_one(c)
            store_one(c)
        assert not c.enabled
    finally:
        os.chmod(cache_dir, 0o700)


def test_transient_write_error_skips_without_disabling(cache, monkeypatch):
    monkeypatch.setattr(os, "replace", _raiser(errno.EIO))
    with one_cache_warning("not cached, the program continues"):
        key, _ = store_one(cache)
    monkeypatch.undo()
    assert cache.enabled and tmp_files(Path(cache.path)) == []
    store_one(cache)
    assert cache.load(key) is not None


def test_dir_removed_while_running_is_recreated(cache, cache_dir):
    store_one(cache)
    shutil.rmtree(cache_dir)
    with no_cache_warnings():
        key, _ = store_one(cache, {**COMPONENTS, "shapes": [[9]]})
        assert cache.load(key) is not None
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


# ----------------------------------------------------------------------------- LRU eviction


def test_lru_eviction_order(cache_dir):
    payload = bytes(10_000)
    keys = [key_hash({**COMPONENTS, "i": i}) for i in range(5)]
    probe = DiskCache(str(cache_dir))
    probe.store(keys[0], payload, {})
    size = os.path.getsize(probe.load(keys[0]).path)
    probe.clear()

    c = DiskCache(max_bytes=int(3.5 * size))  # room for 3 entries; evicts down to 90 % = 3.15
    for k in keys[:3]:
        c.store(k, payload, {})
    now = time.time()
    for age, k in zip((300, 200, 100), keys[:3]):  # k0 oldest, k2 newest
        os.utime(cache_dir / f"{k}.jtk", (now - age, now - age))
    assert c.load(keys[0]) is not None  # a hit makes k0 the most recently used

    def present():
        return {k for k in keys if (cache_dir / f"{k}.jtk").exists()}

    c.store(keys[3], payload, {})
    assert present() == {keys[0], keys[2], keys[3]}  # k1 was least recently used
    c.store(keys[4], payload, {})
    assert present() == {keys[0], keys[3], keys[4]}  # then k2
    assert c.stats["evictions"] == 2
    assert c.info()["total_bytes"] <= c.max_bytes


def test_entry_larger_than_limit_is_not_stored(cache_dir):
    c = DiskCache(max_bytes=1000)
    with no_cache_warnings():
        c.store("big", bytes(5000), {})
        c.store("small", bytes(10), {})
    assert c.load("big") is None and c.load("small") is not None


# ----------------------------------------------------------------------------- stats, listing, clear


def test_stats_counters_and_persisted_totals(cache, cache_dir):
    key, _ = store_one(cache)
    assert cache.load(key) is not None
    assert cache.load(key) is not None
    assert cache.load("absent") is None
    (cache_dir / "bad.jtk").write_bytes(b"x")
    with pytest.warns(CacheWarning):
        assert cache.load("bad") is None
    info = cache.info()
    expected = {"hits": 2, "misses": 2, "stores": 1, "evictions": 0, "corrupt": 1}
    assert {k: info[k] for k in expected} == expected == cache.stats
    assert info["totals"] == expected
    assert json.loads((cache_dir / "stats.json").read_text()) == expected

    other = DiskCache()  # another process, later: sees the persisted totals, its own counters start at 0
    assert other.load(key) is not None
    info2 = other.info()
    assert info2["hits"] == 1 and info2["stores"] == 0
    assert info2["totals"] == {**expected, "hits": 3}


@pytest.mark.parametrize("content", [b"{not json", b"[1,2]", b'{"hits": "many", "stores": -3}', b""])
def test_corrupt_stats_file_is_rebuilt(cache, cache_dir, content):
    key, _ = store_one(cache)
    (cache_dir / "stats.json").write_bytes(content)
    with no_cache_warnings():
        assert cache.load(key) is not None
        info = cache.info()
    assert info["totals"]["hits"] == 1
    assert json.loads((cache_dir / "stats.json").read_text())["hits"] == 1


def test_entries_info_clear_and_stray_files(cache, cache_dir):
    k1, p1 = store_one(cache)
    k2, _ = store_one(cache, {**COMPONENTS, "function": "model.g"}, payload=b"g")
    (cache_dir / "README").write_text("stray files are not entries")
    (cache_dir / "index.json").write_text("{broken")  # not an index we rely on
    stale = cache_dir / f".{k1}.jtk.999.abcd.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200,) * 2)
    fresh = cache_dir / f".{k2}.jtk.998.abcd.tmp"  # a writer in progress: left alone
    fresh.write_bytes(b"half")
    cache.load(k1)

    entries = cache.entries()
    assert [e["key"] for e in entries] == [k1, k2]  # most recently used first
    e = entries[0]
    assert e["name"] == "model.f" and e["size"] == os.path.getsize(e["path"]) and e["valid_header"]
    assert abs(e["created"] - time.time()) < 60 and 0 <= e["age"] < 60 and e["last_used"] <= time.time()
    assert not stale.exists() and fresh.exists()

    info = cache.info()
    assert info["path"] == str(cache_dir) and info["enabled"] and info["disabled_reason"] is None
    assert info["entries"] == 2 and info["total_bytes"] == sum(e["size"] for e in entries)
    assert info["max_bytes"] == dc.DEFAULT_MAX_BYTES and info["format_version"] == FORMAT_VERSION

    assert cache.clear() == 2
    assert cache.entries() == [] and cache.load(k1) is None
    assert (cache_dir / "README").exists()


# ----------------------------------------------------------------------------- side files and records


LIB = b"\x7fELF-library" + bytes(range(256)) * 8


def _side(cache_dir: Path, key: str) -> list[Path]:
    return sorted(cache_dir.glob(f"{key}.*.so"))


def test_side_file_is_written_with_its_entry_and_checked_before_use(cache, cache_dir):
    key = key_hash(COMPONENTS)
    with no_cache_warnings():
        cache.store(key, b"payload" + LIB, meta_for(), side=LIB)
    [side] = _side(cache_dir, key)
    assert side.name == f"{key}.{hashlib.sha256(LIB).hexdigest()[:16]}.so"
    assert side.read_bytes() == LIB and stat.S_IMODE(side.stat().st_mode) == 0o600
    with no_cache_warnings():
        assert cache.side_file(key, LIB) == str(side)
    ino = side.stat().st_ino
    with no_cache_warnings():
        assert cache.side_file(key, LIB) == str(side) and side.stat().st_ino == ino  # intact: not rewritten
    [e] = cache.entries()
    assert e["size"] == os.path.getsize(e["path"]) + len(LIB)
    assert cache.info()["total_bytes"] == e["size"]


SIDE_DAMAGE = {
    "flipped": lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\0"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:10]),
    "empty": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("damage", list(SIDE_DAMAGE))
def test_damaged_side_file_warns_and_is_replaced(cache, cache_dir, damage):
    key = key_hash(COMPONENTS)
    cache.store(key, b"payload", meta_for(), side=LIB)
    [side] = _side(cache_dir, key)
    SIDE_DAMAGE[damage](side)
    with one_cache_warning(re.escape(str(side)) + ".*damaged"):
        assert cache.side_file(key, LIB) == str(side)
    assert side.read_bytes() == LIB and cache.stats["corrupt"] == 1


def test_symlinked_side_file_is_replaced_not_followed(cache, cache_dir, tmp_path):
    key = key_hash(COMPONENTS)
    cache.store(key, b"payload", meta_for(), side=LIB)
    [side] = _side(cache_dir, key)
    target = tmp_path / "elsewhere.so"
    target.write_bytes(LIB)  # even with the right bytes: a link may change under us
    side.unlink()
    side.symlink_to(target)
    with one_cache_warning("symbolic link"):
        assert cache.side_file(key, LIB) == str(side)
    assert not side.is_symlink() and side.read_bytes() == LIB and target.read_bytes() == LIB


def test_side_files_go_with_their_entry(cache, cache_dir):
    k1 = key_hash(COMPONENTS)
    k2 = key_hash({**COMPONENTS, "function": "model.g"})
    cache.store(k1, b"one", meta_for(), side=LIB)
    cache.store(k2, b"two", meta_for({**COMPONENTS, "function": "model.g"}), side=LIB + b"2")
    with one_cache_warning("does not load"):
        cache.discard(k1, "it does not load (test)")
    assert _side(cache_dir, k1) == [] and len(_side(cache_dir, k2)) == 1
    (cache_dir / f"{k2}.jtk").write_bytes(b"garbage" * 10)  # a damaged entry is dropped with its side files
    with one_cache_warning("bad magic"):
        assert cache.load(k2) is None
    assert _side(cache_dir, k2) == []
    cache.store(k1, b"one", meta_for(), side=LIB)
    assert cache.clear() == 1 and list(cache_dir.glob("*.so")) == []


def test_orphan_side_files_are_removed_when_old(cache, cache_dir):
    key = key_hash(COMPONENTS)
    cache.store(key, b"payload", meta_for(), side=LIB)
    old = cache_dir / f"{'a' * 64}.{'0' * 16}.so"  # an entry evicted by a process that died
    fresh = cache_dir / f"{'b' * 64}.{'1' * 16}.so"  # a store in progress: side file first, then the entry
    for p in (old, fresh):
        p.write_bytes(LIB)
    os.utime(old, (time.time() - 7200,) * 2)
    cache.entries()
    assert not old.exists() and fresh.exists() and len(_side(cache_dir, key)) == 1


def test_eviction_removes_side_files_and_counts_them(cache_dir):
    lib = bytes(20_000)
    keys = [key_hash({**COMPONENTS, "i": i}) for i in range(4)]
    c = DiskCache(max_bytes=50_000)  # two entries with their libraries fit, not three
    for i, k in enumerate(keys):
        c.store(k, b"x", {}, side=lib + bytes([i]))
        os.utime(cache_dir / f"{k}.jtk", (time.time() - 100 + i,) * 2)
    present = [k for k in keys if (cache_dir / f"{k}.jtk").exists()]
    assert present == keys[-2:] and c.stats["evictions"] == 2
    assert sorted(p.name.split(".")[0] for p in cache_dir.glob("*.so")) == sorted(present)
    assert c.info()["total_bytes"] <= c.max_bytes


def test_records_are_verified_and_not_entries(cache, cache_dir):
    assert cache.load_record("host-abc") is None
    cache.store_record("host-abc", {"target": {"cpu": "x"}, "n": 1})
    assert cache.load_record("host-abc") == {"target": {"cpu": "x"}, "n": 1}
    assert cache.entries() == [] and cache.info()["entries"] == 0
    assert cache.stats == dict.fromkeys(("hits", "misses", "stores", "evictions", "corrupt"), 0)
    path = cache_dir / "host-abc.jtr"
    path.write_bytes(path.read_bytes()[:-3] + b"}}}")
    with no_cache_warnings():  # damaged: removed quietly (it is recomputed by whoever needs it)
        assert cache.load_record("host-abc") is None
    assert not path.exists()
    cache.store_record("host-abc", {"n": 2})
    os.utime(path, (time.time() - 40 * 86400,) * 2)
    cache.entries()  # unused for over a month: removed
    assert not path.exists()
    cache.store_record("host-abc", {"n": 3})
    store_one(cache)
    assert cache.clear() == 1 and not path.exists()


# ----------------------------------------------------------------------------- explain_miss


def test_explain_miss(cache):
    store_one(cache)
    wanted = {**COMPONENTS, "shapes": [[5, 4]], "llvm_version": "16.0.0", "fastmath": True}
    text = cache.explain_miss(wanted)
    assert "1 cached entry for function model.f" in text
    assert "differs in" in text and "shapes: [[3,4]] vs [[5,4]]" in text
    assert 'llvm_version: "15.0.7" vs "16.0.0"' in text
    assert "fastmath: <absent> vs true" in text
    assert "dtypes" not in text

    assert cache.explain_miss({**COMPONENTS, "function": "model.h"}).startswith("no entry for function model.h")
    assert "identical components" in cache.explain_miss(COMPONENTS)
    assert "no 'function'" in cache.explain_miss({"shapes": []})


# ----------------------------------------------------------------------------- configuration


def test_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert DiskCache().path == str(tmp_path / "home" / ".cache" / "jitensor")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert DiskCache().path == str(tmp_path / "xdg" / "jitensor")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert DiskCache().path == str(tmp_path / "home" / ".cache" / "jitensor")
    monkeypatch.setenv(dc.ENV_DIR, str(tmp_path / "mine"))
    assert DiskCache().path == str(tmp_path / "mine")
    assert DiskCache(str(tmp_path / "explicit")).path == str(tmp_path / "explicit")
    assert not (tmp_path / "home").exists()  # nothing is created before the first store


def test_disable_env(cache_dir, monkeypatch):
    monkeypatch.setenv(dc.ENV_DISABLE, "1")
    with no_cache_warnings():
        c = DiskCache()
        key, _ = store_one(c)
        assert c.load(key) is None
    assert not c.enabled and dc.ENV_DISABLE in c.disabled_reason
    assert not cache_dir.exists()
    monkeypatch.setenv(dc.ENV_DISABLE, "0")
    assert DiskCache().enabled


@pytest.mark.parametrize("raw, expected", [("1000", 1000), ("64k", 65536), ("512MiB", 512 << 20), ("2G", 2 << 30)])
def test_max_bytes_env(cache_dir, monkeypatch, raw, expected):
    monkeypatch.setenv(dc.ENV_MAX_BYTES, raw)
    assert DiskCache().max_bytes == expected
    assert DiskCache(max_bytes=7).max_bytes == 7


def test_bad_max_bytes_env_warns_and_uses_default(cache_dir, monkeypatch):
    monkeypatch.setenv(dc.ENV_MAX_BYTES, "lots")
    with pytest.warns(CacheWarning, match="JITENSOR_CACHE_MAX_BYTES"):
        assert DiskCache().max_bytes == dc.DEFAULT_MAX_BYTES


def test_default_cache_is_a_singleton_following_the_env(tmp_path, monkeypatch):
    monkeypatch.setenv(dc.ENV_DIR, str(tmp_path / "a"))
    a = default_cache()
    assert default_cache() is a and a.path == str(tmp_path / "a")
    monkeypatch.setenv(dc.ENV_DIR, str(tmp_path / "b"))
    b = default_cache()
    assert b is not a and b.path == str(tmp_path / "b")
    monkeypatch.setenv(dc.ENV_DISABLE, "1")
    assert not default_cache().enabled


# ----------------------------------------------------------------------------- concurrency

CHILD = textwrap.dedent(r"""
    import hashlib, json, os, random, sys, time, warnings
    from jitensor.runtime.diskcache import DiskCache

    d, idx, nkeys, max_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sync = os.path.dirname(d)

    def payload(writer, key):  # sizes differ per writer, so a mixed-up file fails its checksum
        return hashlib.sha256(f"{writer}/{key}".encode()).digest() * (300 + 200 * writer)

    errors = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = DiskCache(d, max_bytes=max_bytes)
        open(os.path.join(sync, f"ready{idx}"), "w").close()
        while not os.path.exists(os.path.join(sync, "go")):
            time.sleep(0.001)
        rnd = random.Random(idx)
        keys = [f"shared{k:02d}" for k in range(nkeys)] + [f"own{idx}-{k:02d}" for k in range(nkeys)]
        rnd.shuffle(keys)
        for key in keys:
            c.store(key, payload(idx, key), {"name": key, "writer": idx})
            for k in (key, rnd.choice(keys)):
                e = c.load(k)
                if e is not None and (e.meta["name"] != k or e.payload != payload(e.meta["writer"], k)):
                    errors.append(f"bad entry {k}")
        c.info()  # flushes the counters to stats.json
    errors += [str(w.message) for w in caught]
    print(json.dumps({"errors": errors, "stats": c.stats, "enabled": c.enabled}))
""")


def _run_children(tmp_path, n, nkeys, max_bytes):
    d = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(d), str(i), str(nkeys), str(max_bytes)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(n)]
    try:
        deadline = time.time() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(n)):
            assert time.time() < deadline, "children did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.005)
        (tmp_path / "go").touch()  # everyone starts storing at the same moment
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        results.append(json.loads(out))
    for r in results:
        assert r["errors"] == [] and r["enabled"], r
    return d, results


def _check_all_valid(d: Path):
    c = DiskCache(str(d))
    with no_cache_warnings():
        loaded = {e["key"]: c.load(e["key"]) for e in c.entries()}
    assert all(v is not None for v in loaded.values())
    assert tmp_files(d) == []
    return c, loaded


def test_concurrent_processes_store_same_and_different_keys(tmp_path):
    n, nkeys = 6, 6
    d, results = _run_children(tmp_path, n, nkeys, max_bytes=1 << 30)
    c, loaded = _check_all_valid(d)
    expected = {f"shared{k:02d}" for k in range(nkeys)} | {f"own{i}-{k:02d}" for i in range(n) for k in range(nkeys)}
    assert set(loaded) == expected
    totals = c.info()["totals"]
    for name in ("hits", "misses", "stores"):  # the locked stats file lost no update
        assert totals[name] - c.stats[name] == sum(r["stats"][name] for r in results)
    assert totals["stores"] >= len(expected)


def test_concurrent_processes_with_evictions(tmp_path):
    d, results = _run_children(tmp_path, 6, 6, max_bytes=200_000)
    c, loaded = _check_all_valid(d)
    assert sum(r["stats"]["evictions"] for r in results) > 0
    assert c.info()["total_bytes"] <= 200_000
