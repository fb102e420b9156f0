"""The persistent kernel cache, from Python: where it is, what is in it, and why a call missed.

Every kernel that `jitensor.jit` compiles is stored on disk (see `jitensor.runtime.diskcache`)
under a key that is the sha256 of these components (`jitensor.compiler.cache_components`):

``function``
    ``module.qualname`` of the jitted function. Keeps entries of different functions apart in
    listings and in `explain_miss`; two functions never share an entry.
``graph``
    The fingerprint of the traced graph: its ops, structure, shapes, dtypes and constant values,
    independent of node ids and source locations. Editing a helper the function calls, or the
    value of a closure variable or global it reads, changes the graph: a miss. Source edits that
    trace to the same graph (renaming a local, a comment, moving code) keep the key: a hit, and
    the stored code is exactly what the new source would compile to.
``layouts``
    The strides of each array argument, in elements (shapes and dtypes are in the graph). A new
    memory layout (a transposed or sliced argument) misses.
``jitensor``, ``llvmlite``, ``llvm``
    The versions that generated the code: upgrading any of them misses (code generation or the
    object format may have changed).
``compiler``
    A fingerprint of jitensor's own source files (path, size and mtime of each ``.py`` file,
    ``compiler.compiler_fingerprint``): a changed or reinstalled jitensor misses even without a
    version bump (editable installs, local patches).
``target``
    The host's triple, CPU name and CPU features: a cache directory shared with another machine
    (a network home directory) never runs code built for a CPU with other instructions.

Schedules are not in the key, but checked on a hit: the entry's manifest records, per kernel, its
workload key and whether it was compiled with the default schedule or a tuning record's steps (their
digest). A hit whose kernels the tuning records would now schedule differently is recompiled and
replaced. (The default schedule is code: the ``compiler`` fingerprint covers it.)

What is *not* in the key: argument values (compiled code is generic over them, except static
arguments, which are traced in as constants and so are in the graph), file names and line numbers.

Functions here are thin wrappers over `jitensor.runtime.diskcache`: with ``path=None`` they use the
process-wide cache the JIT uses (``$JITENSOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/jitensor`` or
``~/.cache/jitensor``); with a path they open that directory.
"""
from __future__ import annotations

from .runtime.diskcache import DiskCache, default_cache, key_hash

__all__ = ["info", "entries", "clear", "explain_miss", "directory", "components"]


def _cache(path) -> DiskCache:
    return default_cache() if path is None else DiskCache(path)


def directory() -> str:
    """The cache directory the JIT uses in this process (it may not exist yet)."""
    return default_cache().path


def info(path=None) -> dict:
    """Location, whether enabled (and if not, why), entry count, size, limit and hit/miss counters.

    Keys: path, enabled, disabled_reason, format_version, entries, total_bytes, max_bytes, this
    process's hits/misses/stores/evictions/corrupt, and ``totals`` over all processes.
    """
    return _cache(path).info()


def entries(path=None) -> list[dict]:
    """One dict per cached kernel, most recently used first.

    Keys: key, path, size, created, last_used, age (seconds since last use), name (the jitted
    function's ``module.qualname``), valid_header.
    """
    return _cache(path).entries()


def clear(path=None) -> int:
    """Remove every cached kernel; returns how many were removed."""
    return _cache(path).clear()


def components(fn, *args, **kwargs) -> tuple[dict, str]:
    """(key components, key) that a call ``fn(*args, **kwargs)`` looks up in the disk cache.

    Traces `fn` (a `jitensor.jit` function, or a plain function, jitted on the fly) without
    compiling or running it.
    """
    from .api import JitFunction
    from .compiler import cache_components
    from .target import host

    jf = fn if isinstance(fn, JitFunction) else JitFunction(fn)
    leaves, tree, statics = jf._bind(args, kwargs)
    graph, layouts, _ = jf._trace(leaves, tree, statics)
    # The same name as JitFunction._compile_and_run passes to compile_graph.
    comps = cache_components(graph, layouts, host(), f"{jf.fun.__module__}.{jf.fun.__qualname__}")
    return comps, key_hash(comps)


def explain_miss(fn, *args, **kwargs) -> str:
    """Whether ``fn(*args, **kwargs)`` in a fresh process would load its kernel from disk, and if not, why.

    Returns ``"hit: entry <key> exists"`` when a valid entry is stored under the call's key.
    Otherwise a text starting with ``"miss: "`` that, for each stored entry of the same function,
    names the key components that differ (``graph``: the traced computation changed, or a new shape
    or dtype; ``layouts``: new strides; ``jitensor``/``llvmlite``/``llvm``: an upgrade;
    ``target``: another CPU), or says why the disk cache is not used at all.
    """
    from .api import JitFunction

    jf = fn if isinstance(fn, JitFunction) else JitFunction(fn)
    comps, key = components(jf, *args, **kwargs)
    disk = default_cache()
    if not jf.use_disk_cache:
        return (f"miss: {jf.fun.__qualname__} does not use the disk cache (jit(cache=False), or "
                f"JITENSOR_DISABLE_CACHE was set when it was decorated)")
    exists = any(e["key"] == key for e in disk.entries())
    valid = exists and disk._valid_entry_exists(disk._entry_path(key), key)  # full check, no side effects
    if valid and disk.enabled:
        return f"hit: entry {key} exists"
    if not disk.enabled:
        return f"miss: disk cache disabled: {disk.disabled_reason}"
    if exists:
        return (f"miss: entry {key} exists but does not verify (corrupt); the next call drops it "
                f"and recompiles")
    return f"miss: no entry {key} in {disk.path}\n" + disk.explain_miss(comps)
