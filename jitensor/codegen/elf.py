"""Link object code into an ELF shared library, in Python: what lets a disk hit run without LLVM.

A program's object code (an x86-64 ELF relocatable file from `codegen/llvm.py`) cannot be
`dlopen`ed; loading it takes a JIT linker (LLVM's MCJIT, ~45 ms to import and start in a fresh
process). This module turns it into a shared library once, when the program is compiled, so that
a process that finds the program in the disk cache loads it with the system's dynamic loader
(`runtime/sharedlib.py`) and never imports llvmlite. It writes the file itself (~1 ms) instead of
running a linker: `cc -shared` takes 20-40 ms and is missing on many machines a wheel installs on.

The objects LLVM emits for jitensor are simple (one `.text`, constant pools, no TLS, no
constructors, position-independent), and so is what this writes:

* one read+execute segment: ELF and program headers, `.hash`, `.dynsym`, `.dynstr`, `.rela.dyn`,
  the object's `.text` and read-only sections copied unchanged, and a stub `jmp *GOT[i](%rip)` per
  external function; one read+write segment: `.dynamic`, `.got` and writable sections (`.data`,
  `.bss`, and sections holding absolute addresses, which get `R_X86_64_RELATIVE` relocations);
  `PT_GNU_STACK` (non-executable stack), no `DT_NEEDED`, no `DT_SONAME`;
* the object's relocations resolved here: `PC32`/`PLT32`/`PC64` (calls and rip-relative constants),
  `GOTPCREL[X]` (through the GOT) and `64` (absolute, in writable sections only); anything else
  raises `LinkError` and the program keeps the object-code path;
* external functions (libm's `sinf`, libc's `malloc`/`free`/`syscall`, ...) are *not* bound by the
  dynamic loader: without symbol versions it would bind the oldest version of a versioned symbol
  (`exp@GLIBC_2.2.5`), while LLVM's JIT binds what `dlsym` returns (the default version). The
  library instead exports `jit_imports` (their names, NUL-separated, ending with an empty name)
  and `jit_got` (one pointer per name), and the loader fills the GOT with `dlsym` results before
  anything runs: exactly the functions the object-code path would call;
* every global symbol of the object (`jit_entry`, `jit_kN`, `jtp_run`...) is exported; `.symtab`
  also names the local functions (the kernels), for `perf` and `gdb`.

Only the standard library is imported here.
"""
from __future__ import annotations

import struct

__all__ = ["LinkError", "link", "IMPORTS_SYMBOL", "GOT_SYMBOL"]

IMPORTS_SYMBOL, GOT_SYMBOL = "jit_imports", "jit_got"
PAGE = 0x1000

# ELF constants (the subset used here)
_ET_REL, _ET_DYN, _EM_X86_64 = 1, 3, 62
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_HASH, _SHT_DYNAMIC = 1, 2, 3, 4, 5, 6
_SHT_NOBITS, _SHT_REL, _SHT_DYNSYM, _SHT_X86_64_UNWIND = 8, 9, 11, 0x70000001
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR, _SHF_TLS = 0x1, 0x2, 0x4, 0x400
_SHN_UNDEF, _SHN_ABS, _SHN_COMMON = 0, 0xFFF1, 0xFFF2
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK = 0, 1, 2
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_SECTION, _STT_FILE = 0, 1, 2, 3, 4
_STV_HIDDEN, _STV_INTERNAL = 2, 1
_PT_LOAD, _PT_DYNAMIC, _PT_GNU_STACK = 1, 2, 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4
_DT_NULL, _DT_HASH, _DT_STRTAB, _DT_SYMTAB, _DT_RELA, _DT_RELASZ, _DT_RELAENT = 0, 4, 5, 6, 7, 8, 9
_DT_STRSZ, _DT_SYMENT, _DT_RELACOUNT = 10, 11, 0x6FFFFFF9
_R_NONE, _R_64, _R_PC32, _R_PLT32, _R_RELATIVE, _R_GOTPCREL = 0, 1, 2, 4, 8, 9
_R_PC64, _R_GOTPCRELX, _R_REX_GOTPCRELX = 24, 41, 42

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
_DYN = struct.Struct("<qQ")
_STUB = b"\xff\x25\0\0\0\0\xcc\xcc"  # jmp *disp32(%rip); int3 padding to 8 bytes


class LinkError(Exception):
    """The object uses something this linker does not handle; the program keeps its object code."""


class _Sec:
    __slots__ = ("index", "name", "type", "flags", "offset", "size", "link", "info", "align", "entsize",
                 "kind", "addr", "out_index", "data")

    def __init__(self, index, name, fields):
        self.index, self.name = index, name
        (_, self.type, self.flags, _, self.offset, self.size, self.link, self.info, self.align,
         self.entsize) = fields
        self.align = max(1, self.align)
        self.kind = None  # "text" | "rodata" | "data" | "bss" | None (not loaded)
        self.addr = 0
        self.out_index = 0
        self.data = None


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def _sysv_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


class _Strtab:
    def __init__(self):
        self.data = bytearray(b"\0")
        self.at = {b"": 0}

    def add(self, s) -> int:
        b = s.encode() if isinstance(s, str) else s
        if b not in self.at:
            self.at[b] = len(self.data)
            self.data += b + b"\0"
        return self.at[b]


def _cstr(data: bytes, start: int) -> bytes:
    end = data.index(b"\0", start)
    return data[start:end]


def _parse(obj: bytes):
    if len(obj) < _EHDR.size or obj[:4] != b"\x7fELF":
        raise LinkError("not an ELF file")
    (ident, etype, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = _EHDR.unpack_from(obj)
    if ident[4] != 2 or ident[5] != 1:
        raise LinkError("not a 64-bit little-endian ELF file")
    if etype != _ET_REL or machine != _EM_X86_64:
        raise LinkError(f"not an x86-64 relocatable object (type {etype}, machine {machine})")
    if shnum == 0 or shstrndx >= shnum or shentsize != _SHDR.size or shoff + shnum * _SHDR.size > len(obj):
        raise LinkError("unsupported section header table")
    raw = [_SHDR.unpack_from(obj, shoff + i * _SHDR.size) for i in range(shnum)]
    strtab_off = raw[shstrndx][4]
    secs = [_Sec(i, _cstr(obj, strtab_off + f[0]).decode(), f) for i, f in enumerate(raw)]
    for s in secs:
        if s.type != _SHT_NOBITS and s.offset + s.size > len(obj):
            raise LinkError(f"section {s.name} lies outside the file")
    return secs


def link(obj: bytes) -> bytes:
    """The shared library for x86-64 ELF object code `obj` (LinkError if it uses what is not handled)."""
    try:
        return _link(obj)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
        raise LinkError(f"malformed object ({type(e).__name__}: {e})") from None


def _link(obj: bytes) -> bytes:
    secs = _parse(obj)
    symtabs = [s for s in secs if s.type == _SHT_SYMTAB]
    if len(symtabs) != 1:
        raise LinkError("expected one symbol table")
    symsec = symtabs[0]
    strsec = secs[symsec.link]
    syms = []
    for i in range(symsec.size // _SYM.size):
        name, info, other, shndx, value, size = _SYM.unpack_from(obj, symsec.offset + i * _SYM.size)
        syms.append((_cstr(obj, strsec.offset + name).decode(), info >> 4, info & 0xF, other & 3, shndx, value, size))

    # -- which sections are loaded, and where their relocations go
    relas = []
    for s in secs:
        if s.type == _SHT_REL and secs[s.info].flags & _SHF_ALLOC:
            raise LinkError("REL relocations")
        if s.type == _SHT_RELA:
            if s.link != symsec.index:
                raise LinkError("relocations against another symbol table")
            relas.append(s)
    absolute = {s.info for s in relas if any(
        struct.unpack_from("<Q", obj, s.offset + j * _RELA.size + 8)[0] & 0xFFFFFFFF == _R_64
        for j in range(s.size // _RELA.size))}
    for s in secs:
        if not s.flags & _SHF_ALLOC or s.type == _SHT_X86_64_UNWIND or s.name == ".eh_frame":
            continue  # unwind tables: nothing unwinds through jitted code (LLVM's JIT registers them, unused)
        if s.flags & _SHF_TLS:
            raise LinkError(f"thread-local section {s.name}")
        if s.type not in (_SHT_PROGBITS, _SHT_NOBITS):
            raise LinkError(f"section {s.name} of type {s.type:#x}")
        if s.flags & _SHF_EXECINSTR:
            if s.index in absolute:
                raise LinkError(f"absolute relocations in code section {s.name}")
            s.kind = "text"
        elif s.type == _SHT_NOBITS:
            s.kind = "bss" if s.flags & _SHF_WRITE else "rodata"
        elif s.flags & _SHF_WRITE or s.index in absolute:
            s.kind = "data"
        else:
            s.kind = "rodata"
        if s.align > PAGE:
            raise LinkError(f"section {s.name} is aligned to {s.align} bytes")
        s.data = bytes(s.size) if s.type == _SHT_NOBITS else obj[s.offset:s.offset + s.size]
    loaded = [s for s in secs if s.kind]
    relas = [r for r in relas if secs[r.info].kind]

    # -- symbols: exports, imports (external functions) and local GOT entries
    exports = []
    for name, bind, typ, vis, shndx, value, size in syms:
        if bind in (_STB_GLOBAL, _STB_WEAK) and shndx not in (_SHN_UNDEF, _SHN_ABS, _SHN_COMMON) \
                and vis not in (_STV_HIDDEN, _STV_INTERNAL) and typ in (_STT_FUNC, _STT_OBJECT, _STT_NOTYPE):
            if not secs[shndx].kind:
                raise LinkError(f"symbol {name} is defined in section {secs[shndx].name}, which is not loaded")
            if name in (IMPORTS_SYMBOL, GOT_SYMBOL):
                raise LinkError(f"the object defines {name}")
            exports.append((name, typ, shndx, value, size))
    imports: list[str] = []   # external functions, in first-use order: GOT slots 0..n-1 and stubs
    local_got: list = []      # (shndx, value) of defined symbols reached through the GOT: slots n..
    n_relative = 0
    for r in relas:
        for j in range(r.size // _RELA.size):
            _, rinfo, _ = _RELA.unpack_from(obj, r.offset + j * _RELA.size)
            typ, si = rinfo & 0xFFFFFFFF, rinfo >> 32
            name, bind, styp, _, shndx, value, _ = syms[si]
            if typ == _R_NONE:
                continue
            if shndx == _SHN_UNDEF:
                if typ not in (_R_PC32, _R_PLT32, _R_GOTPCREL, _R_GOTPCRELX, _R_REX_GOTPCRELX):
                    raise LinkError(f"relocation type {typ} against external symbol {name}")
                if not name:
                    raise LinkError("relocation against an unnamed external symbol")
                if name not in imports:
                    imports.append(name)
            elif shndx in (_SHN_ABS, _SHN_COMMON) or not secs[shndx].kind:
                raise LinkError(f"relocation against symbol {name!r} in section {shndx}")
            elif typ in (_R_GOTPCREL, _R_GOTPCRELX, _R_REX_GOTPCRELX):
                if (shndx, value) not in local_got:
                    local_got.append((shndx, value))
                    n_relative += 1
            elif typ == _R_64:
                n_relative += 1
            elif typ not in (_R_PC32, _R_PLT32, _R_PC64):
                raise LinkError(f"relocation type {typ}")

    # -- dynamic symbols and strings
    dynstr = _Strtab()
    dynsyms = [(b"", 0, 0, 0, 0, 0)]  # (name, info, shndx placeholder, value placeholder...) filled below
    dyn_exports = list(exports)
    if imports:
        dyn_exports += [(IMPORTS_SYMBOL, _STT_OBJECT, "imports", 0, 0), (GOT_SYMBOL, _STT_OBJECT, "got", 0, 0)]
    for name, *_ in dyn_exports:
        dynstr.add(name)
    nsyms = 1 + len(dyn_exports)
    nbucket = max(1, nsyms // 2)
    hash_size = 4 * (2 + nbucket + nsyms)
    imports_blob = b"".join(n.encode() + b"\0" for n in imports) + b"\0" if imports else b""
    n_got = len(imports) + len(local_got)

    # -- layout of the read+execute segment (file offset == address)
    n_ph = 4
    pos = _EHDR.size + n_ph * _PHDR.size
    layout = {}

    def place(name, size, align):
        nonlocal pos
        pos = _align(pos, align)
        layout[name] = pos
        pos += size

    place(".hash", hash_size, 8)
    place(".dynsym", nsyms * _SYM.size, 8)
    place(".dynstr", len(dynstr.data), 1)
    place(".rela.dyn", n_relative * _RELA.size, 8)
    if imports:
        place(".jit_imports", len(imports_blob), 1)
    for s in loaded:
        if s.kind == "text":
            pos = _align(pos, s.align)
            s.addr = pos
            pos += s.size
    if imports:
        place(".jit_stubs", len(imports) * len(_STUB), 16)
    for s in loaded:
        if s.kind == "rodata":
            pos = _align(pos, s.align)
            s.addr = pos
            pos += s.size
    rx_end = pos
    # -- the read+write segment: the next page in memory, the same offset modulo the page in the file
    n_dyn = 6 + (4 if n_relative else 0)
    rw_off = _align(rx_end, 16)
    delta = PAGE  # address - file offset in this segment
    pos = rw_off
    place(".dynamic", n_dyn * _DYN.size, 8)
    if n_got:
        place(".got", 8 * n_got, 8)
    for s in loaded:
        if s.kind == "data":
            pos = _align(pos, s.align)
            s.addr = pos + delta
            pos += s.size
    rw_file_end = pos
    for s in loaded:
        if s.kind == "bss":
            pos = _align(pos, s.align)
            s.addr = pos + delta
            pos += s.size
    rw_mem_end = pos
    dynamic_addr = layout[".dynamic"] + delta
    got_addr = layout[".got"] + delta if n_got else 0
    stubs_addr = layout.get(".jit_stubs", 0)

    image = bytearray(rw_file_end)
    for s in loaded:
        if s.kind in ("text", "rodata"):
            image[s.addr:s.addr + s.size] = s.data
        elif s.kind == "data":
            image[s.addr - delta:s.addr - delta + s.size] = s.data

    def addr_of(shndx, value):
        return secs[shndx].addr + value

    def write_at(addr, fmt, v):
        off = addr - delta if addr >= dynamic_addr else addr
        struct.pack_into(fmt, image, off, v)

    # -- relocations
    relative = []  # (where, value) for .rela.dyn
    for i, (shndx, value) in enumerate(local_got):
        slot = got_addr + 8 * (len(imports) + i)
        relative.append((slot, addr_of(shndx, value)))
    for r in relas:
        tgt = secs[r.info]
        for j in range(r.size // _RELA.size):
            off, rinfo, addend = _RELA.unpack_from(obj, r.offset + j * _RELA.size)
            typ, si = rinfo & 0xFFFFFFFF, rinfo >> 32
            if typ == _R_NONE:
                continue
            if off + (8 if typ in (_R_64, _R_PC64) else 4) > tgt.size:
                raise LinkError(f"relocation at {off:#x} outside section {tgt.name}")
            name, _, _, _, shndx, value, _ = syms[si]
            p = tgt.addr + off
            if typ in (_R_GOTPCREL, _R_GOTPCRELX, _R_REX_GOTPCRELX):
                slot = imports.index(name) if shndx == _SHN_UNDEF else len(imports) + local_got.index((shndx, value))
                v = got_addr + 8 * slot + addend - p
            elif typ == _R_64:
                if tgt.kind not in ("data", "bss"):
                    raise LinkError("absolute relocation in a read-only section")
                relative.append((p, addr_of(shndx, value) + addend))
                write_at(p, "<Q", addr_of(shndx, value) + addend)
                continue
            else:
                s = stubs_addr + len(_STUB) * imports.index(name) if shndx == _SHN_UNDEF else addr_of(shndx, value)
                v = s + addend - p
                if typ == _R_PC64:
                    write_at(p, "<q", v)
                    continue
            if not -(1 << 31) <= v < (1 << 31):
                raise LinkError(f"relocation out of range at {p:#x}")
            write_at(p, "<i", v)

    # -- stubs, GOT, imports
    for i in range(len(imports)):
        at = stubs_addr + len(_STUB) * i
        image[at:at + len(_STUB)] = _STUB
        struct.pack_into("<i", image, at + 2, got_addr + 8 * i - (at + 6))
    if imports:
        image[layout[".jit_imports"]:layout[".jit_imports"] + len(imports_blob)] = imports_blob

    # -- output section headers (for tools; the loader reads only program headers and .dynamic)
    shstr = _Strtab()
    shdrs = [(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]

    def shdr(name, typ, flags, addr, offset, size, link=0, info=0, align=1, entsize=0) -> int:
        shdrs.append((shstr.add(name), typ, flags, addr, offset, size, link, info, align, entsize))
        return len(shdrs) - 1

    i_hash = shdr(".hash", _SHT_HASH, _SHF_ALLOC, layout[".hash"], layout[".hash"], hash_size, 0, 0, 8, 4)
    i_dynsym = shdr(".dynsym", _SHT_DYNSYM, _SHF_ALLOC, layout[".dynsym"], layout[".dynsym"], nsyms * _SYM.size,
                    0, 1, 8, _SYM.size)
    i_dynstr = shdr(".dynstr", _SHT_STRTAB, _SHF_ALLOC, layout[".dynstr"], layout[".dynstr"], len(dynstr.data))
    shdrs[i_hash] = shdrs[i_hash][:6] + (i_dynsym,) + shdrs[i_hash][7:]
    shdrs[i_dynsym] = shdrs[i_dynsym][:6] + (i_dynstr,) + shdrs[i_dynsym][7:]
    if n_relative:
        shdr(".rela.dyn", _SHT_RELA, _SHF_ALLOC, layout[".rela.dyn"], layout[".rela.dyn"], n_relative * _RELA.size,
             i_dynsym, 0, 8, _RELA.size)
    i_imports = 0
    if imports:
        i_imports = shdr(".jit_imports", _SHT_PROGBITS, _SHF_ALLOC, layout[".jit_imports"], layout[".jit_imports"],
                         len(imports_blob))
    for kind in ("text", "stubs", "rodata", "dynamic", "got", "data", "bss"):
        if kind == "stubs" and imports:
            shdr(".jit_stubs", _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, stubs_addr, stubs_addr,
                 len(imports) * len(_STUB), align=16)
        elif kind == "dynamic":
            shdr(".dynamic", _SHT_DYNAMIC, _SHF_ALLOC | _SHF_WRITE, dynamic_addr, layout[".dynamic"],
                 n_dyn * _DYN.size, i_dynstr, 0, 8, _DYN.size)
        elif kind == "got" and n_got:
            i_got = shdr(".got", _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE, got_addr, layout[".got"], 8 * n_got, align=8)
        for s in loaded:
            if s.kind == kind:
                off = s.addr if kind in ("text", "rodata") else s.addr - delta if kind == "data" else rw_file_end
                s.out_index = shdr(s.name, _SHT_NOBITS if kind == "bss" else _SHT_PROGBITS,
                                   s.flags & (_SHF_ALLOC | _SHF_WRITE | _SHF_EXECINSTR), s.addr, off,
                                   s.size, align=s.align, entsize=s.entsize)

    # -- .dynsym and .hash
    dyn_entries = []
    for name, typ, shndx, value, size in dyn_exports:
        if shndx == "imports":
            a, idx, size = layout[".jit_imports"], i_imports, len(imports_blob)
        elif shndx == "got":
            a, idx, size = got_addr, i_got, 8 * len(imports)
        else:
            a, idx = addr_of(shndx, value), secs[shndx].out_index
        dyn_entries.append((dynstr.at[name.encode()], (_STB_GLOBAL << 4) | typ, 0, idx, a, size))
    at = layout[".dynsym"] + _SYM.size
    for e in dyn_entries:
        _SYM.pack_into(image, at, *e)
        at += _SYM.size
    buckets, chains = [0] * nbucket, [0] * nsyms
    for i, (name, *_) in enumerate(dyn_exports, start=1):
        b = _sysv_hash(name.encode()) % nbucket
        chains[i], buckets[b] = buckets[b], i
    struct.pack_into(f"<II{nbucket}I{nsyms}I", image, layout[".hash"], nbucket, nsyms, *buckets, *chains)
    image[layout[".dynstr"]:layout[".dynstr"] + len(dynstr.data)] = dynstr.data
    at = layout[".rela.dyn"]
    for where, v in relative:
        _RELA.pack_into(image, at, where, _R_RELATIVE, v)
        at += _RELA.size

    # -- .dynamic
    dyn = [(_DT_HASH, layout[".hash"]), (_DT_STRTAB, layout[".dynstr"]), (_DT_SYMTAB, layout[".dynsym"]),
           (_DT_STRSZ, len(dynstr.data)), (_DT_SYMENT, _SYM.size)]
    if n_relative:
        dyn += [(_DT_RELA, layout[".rela.dyn"]), (_DT_RELASZ, n_relative * _RELA.size), (_DT_RELAENT, _RELA.size),
                (_DT_RELACOUNT, n_relative)]
    dyn.append((_DT_NULL, 0))
    assert len(dyn) == n_dyn
    at = layout[".dynamic"]
    for tag, v in dyn:
        _DYN.pack_into(image, at, tag, v)
        at += _DYN.size

    # -- .symtab (every named function and object, locals first) and the section name table
    strtab = _Strtab()
    local, glob = [], []
    for name, bind, typ, _, shndx, value, size in syms:
        if not name or shndx in (_SHN_UNDEF, _SHN_ABS, _SHN_COMMON) or not secs[shndx].kind \
                or typ not in ((_STT_FUNC, _STT_OBJECT) if bind == _STB_LOCAL else (_STT_FUNC, _STT_OBJECT, _STT_NOTYPE)):
            continue
        e = (strtab.add(name), (bind << 4) | typ, 0, secs[shndx].out_index, addr_of(shndx, value), size)
        (local if bind == _STB_LOCAL else glob).append(e)
    symtab = b"".join(_SYM.pack(*e) for e in [(0, 0, 0, 0, 0, 0)] + local + glob)
    out = bytearray(image)
    out += bytes(_align(len(out), 8) - len(out))
    symtab_off = len(out)
    out += symtab
    strtab_off = len(out)
    out += strtab.data
    i_symtab = shdr(".symtab", _SHT_SYMTAB, 0, 0, symtab_off, len(symtab), len(shdrs) + 1, 1 + len(local), 8, _SYM.size)
    shdr(".strtab", _SHT_STRTAB, 0, 0, strtab_off, len(strtab.data))
    assert shdrs[i_symtab][6] == len(shdrs) - 1
    i_shstr = len(shdrs)
    shstr.add(".shstrtab")
    shdr(".shstrtab", _SHT_STRTAB, 0, 0, len(out), 0)
    shstr_off = len(out)
    out += shstr.data
    shdrs[i_shstr] = shdrs[i_shstr][:5] + (len(shstr.data),) + shdrs[i_shstr][6:]
    out += bytes(_align(len(out), 8) - len(out))
    shoff = len(out)
    for h in shdrs:
        out += _SHDR.pack(*h)

    # -- ELF and program headers
    phdrs = [
        (_PT_LOAD, _PF_R | _PF_X, 0, 0, 0, rx_end, rx_end, PAGE),
        (_PT_LOAD, _PF_R | _PF_W, rw_off, rw_off + delta, rw_off + delta, rw_file_end - rw_off,
         rw_mem_end - rw_off, PAGE),
        (_PT_DYNAMIC, _PF_R | _PF_W, layout[".dynamic"], dynamic_addr, dynamic_addr, n_dyn * _DYN.size,
         n_dyn * _DYN.size, 8),
        (_PT_GNU_STACK, _PF_R | _PF_W, 0, 0, 0, 0, 0, 16),
    ]
    assert len(phdrs) == n_ph
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    _EHDR.pack_into(out, 0, ident, _ET_DYN, _EM_X86_64, 1, 0, _EHDR.size, shoff, 0, _EHDR.size, _PHDR.size, n_ph,
                    _SHDR.size, len(shdrs), i_shstr)
    for i, ph in enumerate(phdrs):
        _PHDR.pack_into(out, _EHDR.size + i * _PHDR.size, *ph)
    return bytes(out)
