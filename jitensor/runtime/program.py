"""A compiled program: machine code plus the pointer table that feeds it.

A call fills a table (slot 0: the error word; then inputs, constants, fresh outputs and
temporaries) and calls `jit_entry` once through cffi (~0.3 us, GIL released). Programs with a
large parallel kernel instead call each kernel's `jit_kN(table, begin, end)` and split parallel
loops across the thread pool.
"""
from __future__ import annotations

import numpy as np

from ..errors import ERR_INDEX, ERROR_MESSAGES, IndexOutOfBoundsError, RuntimeCheckError
from .ffi import NULL, address, as_int, entry_function, from_buffer, kernel_function, new_table
from .buffers import MIN_BYTES, pool as buffers
from .manifest import Manifest
from .threads import min_work, num_threads, ready_pool


def _allocator(shape, dtype):
    """np.empty for small arrays; the recycling pool (`buffers.py`) for large ones."""
    n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return buffers().empty if n >= MIN_BYTES else np.empty


def _pointer(a: np.ndarray):
    if a.flags.c_contiguous:
        return from_buffer(a)
    return address(a.ctypes.data)  # strided views: numpy's data pointer, strides are in the code


class Program:
    """Built from machine code (entry addresses: a `sharedlib.SharedProgramCode` on a disk hit, a
    `loader.LoadedCode` when compiled) and a Manifest (`manifest.py`) alone, so that a program loaded from the
    disk cache needs none of the compiler's objects."""

    def __init__(self, code, manifest: Manifest, *, where: str | None = None):
        self.code = code  # keeps the engine (and the machine code) alive
        self.manifest = manifest
        self._entry = entry_function(code.entry)
        self._nslots = manifest.n_slots
        self._inputs = manifest.inputs
        arrays = manifest.arrays
        self._outputs = []
        for slot, src, shape, dtype in manifest.outputs:
            if slot is None:  # the function returns an input or a constant unchanged
                self._outputs.append((None, src if src[0] == "in" else ("const", arrays[src[1]]), shape, dtype))
            else:
                self._outputs.append((slot, _allocator(shape, dtype), shape, dtype))
        self._temps = [(slot, _allocator(shape, dtype), shape, dtype) for slot, shape, dtype in manifest.temps]
        self._consts = [(slot, arrays[j], _pointer(arrays[j])) for slot, j in manifest.consts]
        self.where = where
        self.sites = {code: where for code, where, _ in manifest.sites}  # error code -> the op's source line
        self._parts = []
        big = False
        for addr, k in zip(code.kernels, manifest.kernels):
            par = k.extent is not None and k.work >= min_work()
            big |= par
            self._parts.append((kernel_function(addr), addr, k.extent or 0, par, k.grain, 1 if k.template else 4))
        self._parallel = big and num_threads() > 1

    def run(self, arrays) -> list[np.ndarray]:
        tb, outs, seen, dups, temps = self._fill(arrays)
        p = ready_pool() if self._parallel else None
        if p is not None:
            for fn, addr, ext, par, grain, per_thread in self._parts:
                if par:
                    p.parallel_for(fn, addr, tb, ext, grain, per_thread)
                else:
                    fn(tb, 0, ext)
        else:
            self._entry(tb)
        return self._finish(tb, outs, seen, dups)

    def run_stepwise(self, arrays, before) -> list[np.ndarray]:
        """`run`, calling before(i, slot -> address) ahead of kernel i (the tuner copies each kernel's
        buffers as the real program leaves them for it)."""
        tb, outs, seen, dups, temps = self._fill(arrays)
        p = ready_pool() if self._parallel else None
        for i, (fn, addr, ext, par, grain, per_thread) in enumerate(self._parts):
            before(i, lambda slot: as_int(tb[slot]))
            if par and p is not None:
                p.parallel_for(fn, addr, tb, ext, grain, per_thread)
            else:
                fn(tb, 0, ext)
        return self._finish(tb, outs, seen, dups)

    def _fill(self, arrays):
        """A fresh pointer table for one call: inputs, constants, new outputs and temporaries."""
        tb = new_table(self._nslots)
        fb = from_buffer
        for slot, a in zip(self._inputs, arrays):
            tb[slot] = fb(a) if a.flags.c_contiguous else address(a.ctypes.data)
        for slot, _, p in self._consts:
            tb[slot] = p
        outs = []
        seen = {}
        dups = []
        for slot, how, shape, dtype in self._outputs:  # how: where a passed-through value comes from, or an allocator
            if slot is None:
                outs.append(np.array(arrays[how[1]] if how[0] == "in" else how[1], dtype=dtype, copy=True))
            elif slot in seen:  # the same value returned twice: numpy would give two arrays
                dups.append((len(outs), slot))
                outs.append(None)
            else:
                o = seen[slot] = how(shape, dtype)
                tb[slot] = fb(o)
                outs.append(o)
        temps = []
        for slot, alloc, shape, dtype in self._temps:
            t = alloc(shape, dtype)
            temps.append(t)
            tb[slot] = fb(t)
        return tb, outs, seen, dups, temps  # (temps: alive until the call ends)

    def _finish(self, tb, outs, seen, dups) -> list[np.ndarray]:
        for pos, slot in dups:
            outs[pos] = seen[slot].copy()
        if tb[0] != NULL:
            code = as_int(tb[0]) & 0xFFFFFFFF
            cls = IndexOutOfBoundsError if code == ERR_INDEX else RuntimeCheckError
            raise cls(ERROR_MESSAGES.get(code, f"runtime check {code} failed"), where=self.sites.get(code, self.where))
        return outs
