"""Loading a program's shared library (written by `codegen/elf.py`) with the system's dynamic loader.

This is how a disk hit runs without LLVM: `dlopen` (through cffi's backend, already loaded for
calls) maps the library the disk cache keeps beside the entry (`DiskCache.side_file`: a file
named by the key and the library's hash, whose bytes are compared with the verified entry before
every load), this module fills the library's table of external functions (`jit_got`) with what
`dlsym` finds for each name in `jit_imports` (the functions LLVM's JIT would bind), and the entry
points are looked up by name. Nothing here imports llvmlite or the compiler.

A library that cannot be loaded (no `dlopen` of files in the cache directory, e.g. a `noexec`
mount; a missing function) raises `SharedLibError`; the caller then loads the object code stored
beside it with LLVM's JIT (`loader.py`). After one failure of `dlopen` itself this process stops
trying (`usable()`), so that every program does not pay for a failing attempt.

`JITENSOR_SHARED_LIBS=0` turns shared libraries off (nothing linked, every program loads its
object code with LLVM); `JITENSOR_SHARED_LIBS=all` also loads freshly compiled programs through
their library (the default loads those with LLVM, which a compiling process has started anyway).
"""
from __future__ import annotations

import logging
import os
import sys
import threading

import _cffi_backend as _B

from .ffi import VOIDP, as_int

log = logging.getLogger("jitensor")

IMPORTS_SYMBOL, GOT_SYMBOL = "jit_imports", "jit_got"  # as codegen/elf.py writes them
_VOIDPP = _B.new_pointer_type(VOIDP)
_CHARP = _B.new_pointer_type(_B.new_primitive_type("char"))
_RTLD = getattr(os, "RTLD_NOW", 2) | getattr(os, "RTLD_LOCAL", 0)
_MAX_IMPORTS = 4096

_lock = threading.Lock()
_scopes: list = []          # handles searched for external functions: the process, then libm, libc
_disabled: str | None = None


class SharedLibError(Exception):
    """The shared library cannot be loaded or is not the program expected; use the object code."""


def mode() -> str:
    """'off', 'on' (disk hits load libraries) or 'all' (compiled programs too), from JITENSOR_SHARED_LIBS."""
    v = os.environ.get("JITENSOR_SHARED_LIBS", "1").strip().lower()
    if v in ("0", "off", "false", "no"):
        return "off"
    return "all" if v == "all" else "on"


def supported() -> bool:
    """Whether programs compiled here get a shared library (codegen/elf.py writes x86-64 ELF)."""
    return sys.platform.startswith("linux") and os.uname().machine == "x86_64" and mode() != "off"


def usable() -> bool:
    """Whether this process loads shared libraries (off after one `dlopen` failed, or by JITENSOR_SHARED_LIBS)."""
    return _disabled is None and mode() != "off"


def disabled_reason() -> str | None:
    return _disabled if mode() != "off" else "JITENSOR_SHARED_LIBS=0"


def _disable(reason: str) -> None:
    global _disabled
    if _disabled is None:
        _disabled = reason
        log.info("jitensor: shared libraries unusable in this process (%s); loading object code with LLVM", reason)


def _resolve(name: str) -> int:
    """The address `dlsym` gives for an external function: the process's global scope, then libm and libc."""
    with _lock:
        if not _scopes:
            for lib in (None, "libm.so.6", "libc.so.6"):
                try:
                    _scopes.append(_B.load_library(lib, _RTLD))
                except OSError:
                    pass
    for scope in _scopes:
        try:
            return as_int(scope.load_function(VOIDP, name))
        except AttributeError:
            continue
    raise SharedLibError(f"external function {name!r} not found")


def check_image(data: bytes, names=()) -> None:
    """What `dlopen` will map, checked before it does (the bytes come from a verified entry; this catches a
    library that is not one jitensor wrote for this machine): an x86-64 ELF shared object whose program
    headers and segments lie inside the file and that names the entry points."""
    import struct
    try:
        if data[:7] != b"\x7fELF\x02\x01\x01":
            raise SharedLibError("not a 64-bit little-endian ELF file")
        etype, machine = struct.unpack_from("<HH", data, 16)
        phoff, = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
        if etype != 3 or machine != 62 or phentsize != 56 or not 0 < phnum < 64 or phoff + 56 * phnum > len(data):
            raise SharedLibError("not an x86-64 shared object with sane program headers")
        for i in range(phnum):
            ptype, _, off, _, _, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i)
            if ptype in (1, 2) and (off + filesz > len(data) or filesz > memsz):
                raise SharedLibError("a segment lies outside the file")
    except struct.error:
        raise SharedLibError("truncated ELF file") from None
    missing = [n for n in names if n.encode() + b"\0" not in data]
    if missing:
        raise SharedLibError(f"the library does not name {', '.join(missing)}")


class SharedCode:
    """A loaded shared library: `addresses` of the requested `names`; keeps the library mapped while alive
    (cffi closes it when this object is collected), or for the life of the process with `permanent` (code
    that threads run until the process ends: the pool's scheduler). Names in `absent` must not be defined."""

    def __init__(self, path: str, names, absent=(), permanent: bool = False, image: bytes | None = None):
        if _disabled is not None:
            raise SharedLibError(_disabled)
        if image is not None:  # the bytes at `path` (the caller compared them): checked before dlopen maps them
            check_image(image, names)
        try:
            lib = _B.load_library(path, _RTLD | (getattr(os, "RTLD_NODELETE", 0x1000) if permanent else 0))
        except OSError as e:  # the loader refused it: likely the same for every library in this process
            _disable(f"dlopen failed: {e}")
            raise SharedLibError(str(e)) from None
        self.lib, self.path = lib, path
        try:
            self.addresses = [as_int(lib.load_function(VOIDP, n)) for n in names]
        except AttributeError as e:
            raise SharedLibError(f"the library lacks an entry point ({e})") from None
        for n in absent:
            try:
                lib.load_function(VOIDP, n)
            except AttributeError:
                continue
            raise SharedLibError(f"the library has more entry points than expected ({n})")
        self._bind()

    def _bind(self):
        """Fill the GOT: one `dlsym` result per name of `jit_imports`, before any code runs."""
        try:
            names = self.lib.load_function(_CHARP, IMPORTS_SYMBOL)
        except AttributeError:
            return  # no external functions
        try:
            got = self.lib.load_function(_VOIDPP, GOT_SYMBOL)
        except AttributeError:
            raise SharedLibError(f"the library has {IMPORTS_SYMBOL} but no {GOT_SYMBOL}") from None
        at = 0
        for i in range(_MAX_IMPORTS + 1):
            name = _B.string(names + at)
            if not name:
                return
            if i == _MAX_IMPORTS:
                break
            got[i] = _B.cast(VOIDP, _resolve(name.decode("ascii", "replace")))
            at += len(name) + 1
        raise SharedLibError("malformed import table")


class SharedProgramCode:
    """What `Program` needs of a program loaded from its shared library: `entry` and `kernels` addresses."""

    def __init__(self, path: str, n_kernels: int, image: bytes | None = None):
        self.shared = SharedCode(path, ["jit_entry"] + [f"jit_k{i}" for i in range(n_kernels)],
                                 absent=(f"jit_k{n_kernels}",), image=image)
        self.entry, self.kernels = self.shared.addresses[0], self.shared.addresses[1:]
