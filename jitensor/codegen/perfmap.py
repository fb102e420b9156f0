"""Name jitted code for `perf` (enabled by JITENSOR_PERF_MAP=1).

The object code is loaded into anonymous memory, so a profiler sees samples at bare addresses that
belong to no file. perf resolves such addresses through `/tmp/perf-<pid>.map`, one line
`<start hex> <size hex> <name>` per function; `register` appends the lines of every loaded object. It
also keeps the object and its load address in memory (`registered()`), so that a tool can disassemble
the object and map sampled addresses to instructions and loops (see `benchmarks/profile.py`).

The function offsets come from the object's own symbol table (a small ELF64 reader below): the entry
point is not at the start of `.text`, and kernels are laid out in whatever order LLVM chose.
"""
from __future__ import annotations

import os
import struct
import threading
import warnings
from typing import NamedTuple

MAP_DIR = "/tmp"  # where perf looks for the map; a module variable so that tests can redirect it


class Symbol(NamedTuple):
    name: str
    offset: int  # from the start of .text
    size: int


class Loaded(NamedTuple):
    text_base: int  # address of .text in this process
    obj: bytes
    symbols: list


_SHT_SYMTAB = 2
_STT_NOTYPE, _STT_FUNC = 0, 2
_lock = threading.Lock()
_loaded: list[Loaded] = []
_warned = False


def text_symbols(obj: bytes) -> list[Symbol]:
    """The sized function symbols of `.text` in an ELF64 little-endian object, by offset."""
    if obj[:4] != b"\x7fELF":
        raise ValueError("not an ELF object")
    if obj[4:6] != b"\x02\x01":
        raise ValueError("not a 64-bit little-endian ELF object")
    try:
        shoff, = struct.unpack_from("<Q", obj, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
        # (name, type, flags, addr, offset, size, link, info, addralign, entsize) of each section
        sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]

        def cstr(table: int, at: int) -> str:
            start = sections[table][4] + at
            return obj[start:obj.index(b"\0", start)].decode()

        names = [cstr(shstrndx, s[0]) for s in sections]
        text = names.index(".text")
        symtab = next(i for i, s in enumerate(sections) if s[1] == _SHT_SYMTAB)
        _, _, _, _, off, size, strtab, _, _, entsize = sections[symtab]
        syms = []
        for at in range(off, off + size, entsize):
            name, info, _, shndx, value, sz = struct.unpack_from("<IBBHQQ", obj, at)
            if shndx == text and info & 0xF in (_STT_FUNC, _STT_NOTYPE) and sz > 0:
                syms.append(Symbol(cstr(strtab, name), value, sz))
    except (struct.error, IndexError, ValueError, StopIteration, UnicodeDecodeError) as e:
        raise ValueError(f"malformed ELF object ({type(e).__name__}: {e})") from None
    return sorted(syms, key=lambda s: s.offset)


def register(obj: bytes, code) -> None:
    """Name the functions of `obj`, loaded as `code` (a LoadedCode), in this process's perf map.
    Profiling is a side channel: problems are warned about once and never raised to the caller."""
    try:
        syms = text_symbols(obj)
        base = code.entry - next(s.offset for s in syms if s.name == "jit_entry")
    except (ValueError, StopIteration) as e:
        _warn(f"cannot name jitted code for perf: {e or 'no jit_entry symbol'}")
        return
    path = os.path.join(MAP_DIR, f"perf-{os.getpid()}.map")
    with _lock:
        _loaded.append(Loaded(base, obj, syms))
        try:
            with open(path, "a") as f:
                f.writelines(f"{base + s.offset:x} {s.size:x} jitensor:{s.name}\n" for s in syms)
        except OSError as e:
            _warn(f"cannot write {path}: {e}")


def registered() -> list[Loaded]:
    """Every object registered so far in this process, oldest first."""
    with _lock:
        return list(_loaded)


def _warn(msg: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"jitensor: {msg} (JITENSOR_PERF_MAP)", RuntimeWarning, stacklevel=3)
