"""A compiled program: machine code plus the pointer table that feeds it.

A call fills a table (slot 0: the error word; then inputs, constants, fresh outputs and
temporaries) and calls `jit_entry` once through cffi (~0.3 us, GIL released). Programs with a
large parallel kernel instead call each kernel's `jit_kN(table, begin, end)` and split parallel
loops across the thread pool.
"""
from __future__ import annotations

import numpy as np

from ..errors import IndexOutOfBoundsError, RuntimeCheckError
from ..loop.lower import ERR_INDEX, ERROR_MESSAGES, BufferPlan
from ..loop.schedule import work
from .ffi import NULL, address, as_int, entry_function, from_buffer, kernel_function, new_table
from .buffers import MIN_BYTES, pool as buffers
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
    def __init__(self, code, bufs: BufferPlan, kernels, *, where: str | None = None):
        from ..codegen.llvm import parallel_extent
        self.code = code  # keeps the engine (and the machine code) alive
        self._entry = entry_function(code.entry)
        self._nslots = bufs.n_slots
        self._inputs = bufs.inputs
        self._outputs = []
        for slot, node in bufs.outputs:
            if slot is None:  # the function returns an input or a constant unchanged
                src = ("in", node.attr("index")) if node.op == "input" else ("const", node.attr("value").array)
                self._outputs.append((None, src, node.shape, node.dtype))
            else:
                self._outputs.append((slot, _allocator(node.shape, node.dtype), node.shape, node.dtype))
        self._temps = [(slot, _allocator(shape, dtype), shape, dtype) for slot, shape, dtype in bufs.temps]
        self._consts = [(slot, arr, _pointer(arr)) for slot, arr in bufs.consts]
        self.where = where
        self.sites = {}  # error code -> source line of the op that checks it
        for k in kernels:
            self.sites.update(getattr(k, "sites", ()) or ())
        self._parts = []
        big = False
        for addr, k in zip(code.kernels, kernels):
            ext = parallel_extent(k)
            w = work(k.body)
            par = ext is not None and w >= min_work()
            big |= par
            grain = max(1, ext // 64) if ext and w // max(ext, 1) < 64 else 1  # tiny rows: chunk by many rows
            grain = -(-grain // k.body.lanes) * k.body.lanes if ext and not k.template else grain
            # templates redo per-chunk set-up (packing B): one chunk per thread
            self._parts.append((kernel_function(addr), addr, ext or 0, par, grain, 1 if k.template else 4))
        self._parallel = big and num_threads() > 1

    def run(self, arrays) -> list[np.ndarray]:
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
        p = ready_pool() if self._parallel else None
        if p is not None:
            for fn, addr, ext, par, grain, per_thread in self._parts:
                if par:
                    p.parallel_for(fn, addr, tb, ext, grain, per_thread)
                else:
                    fn(tb, 0, ext)
        else:
            self._entry(tb)
        for pos, slot in dups:
            outs[pos] = seen[slot].copy()
        if tb[0] != NULL:
            code = as_int(tb[0]) & 0xFFFFFFFF
            cls = IndexOutOfBoundsError if code == ERR_INDEX else RuntimeCheckError
            raise cls(ERROR_MESSAGES.get(code, f"runtime check {code} failed"), where=self.sites.get(code, self.where))
        return outs
