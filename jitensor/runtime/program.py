"""A compiled program: machine code plus the pointer table that feeds it.

A call fills a table (slot 0: the error word; then inputs, constants, fresh outputs and
temporaries) and calls `jit_entry` once through cffi (~0.3 us, GIL released). Programs with a
large parallel kernel instead call each kernel's `jit_kN(table, begin, end)` and split parallel
loops across the thread pool.
"""
from __future__ import annotations

import numpy as np
from cffi import FFI

from ..errors import IndexOutOfBoundsError, RuntimeCheckError
from ..loop.lower import ERR_INDEX, ERROR_MESSAGES, BufferPlan
from ..loop.schedule import work
from .threads import pool

ffi = FFI()
_from_buffer = ffi.from_buffer
PARALLEL_MIN_WORK = 1 << 17  # below this a kernel runs on one thread: handing off costs ~10-30 us


def _pointer(a: np.ndarray):
    if a.flags.c_contiguous:
        return _from_buffer(a)
    return ffi.cast("void *", a.ctypes.data)  # strided views: numpy's data pointer, strides are in the code


class Program:
    def __init__(self, code, bufs: BufferPlan, kernels, *, where: str | None = None):
        from ..codegen.llvm import parallel_extent
        self.code = code  # keeps the engine (and the machine code) alive
        self._entry = ffi.cast("void(*)(void **)", code.entry)
        self._ctype = f"void *[{bufs.n_slots}]"
        self._inputs = bufs.inputs
        self._outputs = []
        for slot, node in bufs.outputs:
            if slot is None:  # the function returns an input or a constant unchanged
                src = ("in", node.attr("index")) if node.op == "input" else ("const", node.attr("value").array)
                self._outputs.append((None, src, node.shape, node.dtype))
            else:
                self._outputs.append((slot, None, node.shape, node.dtype))
        self._temps = bufs.temps
        self._consts = [(slot, arr, _pointer(arr)) for slot, arr in bufs.consts]
        self.where = where
        self._parts = []
        big = False
        for addr, k in zip(code.kernels, kernels):
            ext = parallel_extent(k)
            w = work(k.body)
            par = ext is not None and w >= PARALLEL_MIN_WORK
            big |= par
            grain = max(1, ext // 64) if ext and w // max(ext, 1) < 64 else 1  # tiny rows: chunk by many rows
            grain = -(-grain // k.body.lanes) * k.body.lanes if ext and not k.template else grain
            self._parts.append((ffi.cast("void(*)(void **, int64_t, int64_t)", addr), ext or 0, par, grain))
        self._parallel = big and pool().n > 1

    def run(self, arrays) -> list[np.ndarray]:
        tb = ffi.new(self._ctype)
        fb = _from_buffer
        for slot, a in zip(self._inputs, arrays):
            tb[slot] = fb(a) if a.flags.c_contiguous else ffi.cast("void *", a.ctypes.data)
        for slot, _, p in self._consts:
            tb[slot] = p
        outs = []
        for slot, src, shape, dtype in self._outputs:
            if slot is None:
                outs.append(np.array(arrays[src[1]] if src[0] == "in" else src[1], dtype=dtype, copy=True))
                continue
            o = np.empty(shape, dtype)
            tb[slot] = _from_buffer(o)
            outs.append(o)
        temps = []
        for slot, shape, dtype in self._temps:
            t = np.empty(shape, dtype)
            temps.append(t)
            tb[slot] = _from_buffer(t)
        if self._parallel:
            p = pool()
            for fn, ext, par, grain in self._parts:
                if par:
                    p.parallel_for(fn, tb, ext, grain)
                else:
                    fn(tb, 0, ext)
        else:
            self._entry(tb)
        if tb[0] != ffi.NULL:
            code = int(ffi.cast("intptr_t", tb[0])) & 0xFFFFFFFF
            cls = IndexOutOfBoundsError if code == ERR_INDEX else RuntimeCheckError
            raise cls(ERROR_MESSAGES.get(code, f"runtime check {code} failed"), where=self.where)
        return outs
