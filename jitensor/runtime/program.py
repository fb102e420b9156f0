"""A compiled program: machine code plus the buffer table that feeds it.

One call fills a pointer table (error flag, inputs, constants, fresh outputs and temporaries)
and makes one ctypes call into `jit_entry`, which releases the GIL while kernels run.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..errors import IndexOutOfBoundsError, RuntimeCheckError
from ..loop.lower import ERR_INDEX, ERROR_MESSAGES, BufferPlan

_ENTRY_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class Program:
    def __init__(self, code, bufs: BufferPlan, *, where: str | None = None):
        self.code = code  # keeps the engine (and the machine code) alive
        self._fn = _ENTRY_T(code.entry)
        self._n = bufs.n_slots
        self._table_t = ctypes.c_void_p * bufs.n_slots
        self._inputs = bufs.inputs
        self._outputs = []
        for slot, node in bufs.outputs:
            if slot is None:  # the function returns an input or a constant unchanged
                src = ("in", node.attr("index")) if node.op == "input" else ("const", node.attr("value").array)
                self._outputs.append((None, src, node.shape, node.dtype))
            else:
                self._outputs.append((slot, None, node.shape, node.dtype))
        self._temps = bufs.temps
        self._consts = [(slot, arr) for slot, arr in bufs.consts]
        self.where = where

    def run(self, arrays: list) -> list[np.ndarray]:
        table = self._table_t()
        err = np.zeros(1, np.int32)
        table[0] = err.ctypes.data
        for slot, a in zip(self._inputs, arrays):
            table[slot] = a.ctypes.data
        for slot, a in self._consts:
            table[slot] = a.ctypes.data
        outs = []
        for slot, src, shape, dtype in self._outputs:
            if slot is None:
                outs.append(np.array(arrays[src[1]] if src[0] == "in" else src[1], dtype=dtype, copy=True))
                continue
            o = np.empty(shape, dtype)
            table[slot] = o.ctypes.data
            outs.append(o)
        temps = []
        for slot, shape, dtype in self._temps:
            t = np.empty(shape, dtype)
            temps.append(t)
            table[slot] = t.ctypes.data
        self._fn(table)
        if err[0]:
            cls = IndexOutOfBoundsError if err[0] == ERR_INDEX else RuntimeCheckError
            raise cls(ERROR_MESSAGES.get(int(err[0]), f"runtime check {err[0]} failed"), where=self.where)
        return outs
