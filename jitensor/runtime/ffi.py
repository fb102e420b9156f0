"""The few C types the runtime needs, built on cffi's compiled backend directly: the `cffi.FFI()`
front end imports a C parser (~25 ms) that calling machine code does not need."""
from __future__ import annotations

import _cffi_backend as _B

_void = _B.new_void_type()
VOIDP = _B.new_pointer_type(_void)
_voidpp = _B.new_pointer_type(VOIDP)
_table = _B.new_array_type(_voidpp, None)
_char_array = _B.new_array_type(_B.new_pointer_type(_B.new_primitive_type("char")), None)
_i64 = _B.new_primitive_type("int64_t")
_intptr = _B.new_primitive_type("intptr_t")
_entry_t = _B.new_function_type((_voidpp,), _void, False)
_kernel_t = _B.new_function_type((_voidpp, _i64, _i64), _void, False)
_run_t = _B.new_function_type((VOIDP, VOIDP, _voidpp, _i64, _i64, _i64), _void, False)
_worker_t = _B.new_function_type((VOIDP,), _void, False)
NULL = _B.cast(VOIDP, 0)


def new_table(n: int):
    """A zeroed `void *[n]` (slot 0 doubles as the kernels' error word)."""
    return _B.newp(_table, n)


def from_buffer(a):
    """A pointer to a contiguous buffer's first byte (the object stays alive through its owner)."""
    return _B.from_buffer(_char_array, a, False)


def address(addr: int):
    return _B.cast(VOIDP, addr)


def as_int(p) -> int:
    return int(_B.cast(_intptr, p))


def entry_function(addr: int):
    """void jit_entry(void **table); calls release the GIL."""
    return _B.cast(_entry_t, addr)


def kernel_function(addr: int):
    """void jit_kN(void **table, int64_t begin, int64_t end)."""
    return _B.cast(_kernel_t, addr)


def pool_run_function(addr: int):
    """void jtp_run(void *state, void *kernel, void **table, int64_t extent, int64_t step, int64_t pieces)."""
    return _B.cast(_run_t, addr)


def pool_worker_function(addr: int):
    """void jtp_worker(void *state): never returns while the process runs."""
    return _B.cast(_worker_t, addr)
