"""Memory for large outputs and temporaries, recycled across calls.

A large fresh numpy array is often fresh pages from the OS (the C allocator maps big blocks and
unmaps them on free): the first write to each page faults and the OS zeroes it, which costs as much
as the kernel's own pass over the data (a third of a softmax call's time on 4096x4096 float32, a
fifth of a 256x512x512 matmul's). The pool keeps the blocks it hands out and reuses one as soon as
no array refers to it any more: every view of a block has the block as its `.base` (numpy
collapses base chains), so a block whose reference count is back to the pool's own references is
free. Blocks are 64-byte aligned, so vector stores never straddle cache lines.

The pool holds at most `JITENSOR_POOL_BYTES` (default 1/16 of memory, up to 2 GiB; 0 disables
it, and so does an invalid value, with a warning): to make room it drops idle blocks, and when every block is in use a
new array is a plain numpy one. `release()` drops all idle blocks. Arrays from the pool own no
data (`.base` is the block), like any view; `ndarray.resize` refuses them.
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 17  # below this numpy's allocator (glibc's heap) reuses memory well enough
ALIGN = 64


def _default_limit() -> int:
    env = os.environ.get("JITENSOR_POOL_BYTES")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            import warnings
            warnings.warn(f"JITENSOR_POOL_BYTES={env!r} is not a number of bytes: the output pool is off",
                          RuntimeWarning, stacklevel=2)
            return 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = 8 << 30
    return min(2 << 30, mem // 16)


class BufferPool:
    def __init__(self, limit: int | None = None):
        self.limit = _default_limit() if limit is None else limit
        self._blocks: dict[int, list] = {}  # nbytes -> [(block, offset of the aligned start)], most recently used last
        self._held = 0
        self._lock = threading.Lock()

    def empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = dtype.itemsize
        for d in shape:
            n *= d
        if n < MIN_BYTES or self.limit <= 0:
            return np.empty(shape, dtype)
        with self._lock:
            blocks = self._blocks.get(n, ())
            for i in range(len(blocks) - 1, -1, -1):
                if self._is_free(blocks, i):
                    raw, off = blocks.pop(i)
                    blocks.append((raw, off))
                    return raw[off:off + n].view(dtype).reshape(shape)
            if self._held + n > self.limit and not self._evict(n):
                return np.empty(shape, dtype)  # over the cap with nothing idle to drop: not pooled
            raw = np.empty(n + ALIGN, np.uint8)
            off = -raw.ctypes.data % ALIGN
            self._blocks.setdefault(n, []).append((raw, off))  # eviction may have dropped the empty list
            self._held += n
            return raw[off:off + n].view(dtype).reshape(shape)

    def _is_free(self, blocks, i) -> bool:
        # references while idle: the (block, offset) pair and getrefcount's argument
        return sys.getrefcount(blocks[i][0]) <= 2

    def _drop_idle(self, done) -> None:
        for size in list(self._blocks):  # sizes in the order first seen
            blocks = self._blocks[size]
            i = 0
            while i < len(blocks) and not done():
                if self._is_free(blocks, i):
                    blocks.pop(i)
                    self._held -= size
                else:
                    i += 1
            if not blocks:
                del self._blocks[size]

    def _evict(self, need: int) -> bool:
        """Drop idle blocks until `need` more bytes fit under the cap."""
        fits = lambda: self._held + need <= self.limit  # noqa: E731
        self._drop_idle(fits)
        return fits()

    def release(self) -> int:
        """Drop every idle block; returns the bytes given back. Blocks still in use stay pooled."""
        with self._lock:
            before = self._held
            self._drop_idle(lambda: False)
            return before - self._held

    def stats(self) -> dict:
        with self._lock:
            n = sum(len(b) for b in self._blocks.values())
            idle = sum(size for size, bl in self._blocks.items() for j in range(len(bl)) if self._is_free(bl, j))
            return {"blocks": n, "bytes": self._held, "idle_bytes": idle, "limit": self.limit}


_pool: BufferPool | None = None


def pool() -> BufferPool:
    global _pool
    if _pool is None:
        _pool = BufferPool()
    return _pool
