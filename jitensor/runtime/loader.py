"""Loading object code into an MCJIT engine: what running a freshly compiled program needs of LLVM, and the
fallback for a cached one that has no shared library or whose library cannot be loaded (a disk hit
normally loads the library with `dlopen`, `sharedlib.py`, and imports no llvmlite at all).

Kept apart from code generation (`codegen/llvm.py`, which needs `llvmlite.ir`, the loop IR and the math
library) so that a program loaded from the disk cache imports none of the compiler.
"""
from __future__ import annotations

import functools
import os
import threading

from ..errors import CompileError

_lock = threading.Lock()  # LLVM's global state is not ours to share across threads


@functools.cache
def binding():
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def target_machine(target, opt: int = 3):
    llvm = binding()
    t = llvm.Target.from_triple(target.triple)
    return t.create_target_machine(cpu=target.cpu, features=target.features, opt=opt, reloc="pic",
                                   codemodel="default", jit=False)


_OBJECT_MAGIC = {"linux": (b"\x7fELF",), "darwin": (b"\xcf\xfa\xed\xfe",), "windows": (b"\x64\x86",)}


def _check_object(obj: bytes, target, names):
    """LLVM's object loader trusts its input (garbage crashes the process): check the container and that the
    entry points are named in it before handing bytes over."""
    kinds = [v for k, v in _OBJECT_MAGIC.items() if k in target.triple] or [sum(_OBJECT_MAGIC.values(), ())]
    if not any(obj.startswith(m) for m in kinds[0]) or not all(n.encode() in obj for n in names):
        raise CompileError("not an object file produced by jitensor for this target")


def load_object(obj: bytes, target, names, absent=()) -> tuple:
    """Load object code into a new MCJIT engine: (engine, [address of each name]); the engine owns the
    code, keep it alive while the code may run. Names in `absent` must not be defined (a program with more
    kernels than its caller expects is not the program it expects)."""
    llvm = binding()
    _check_object(obj, target, names)
    with _lock:
        # The engine owns its TargetMachine (never share one). It only compiles the empty backing module, at
        # finalize: -O0 sets up a cheaper pipeline; the object code itself is loaded as it is.
        tm = target_machine(target, opt=0)
        backing = llvm.parse_assembly("")
        backing.triple = target.triple
        engine = llvm.create_mcjit_compiler(backing, tm)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        addrs = [engine.get_function_address(n) for n in names]
        extra = [n for n in absent if engine.get_function_address(n)]
    if not all(addrs):
        raise CompileError("compiled object lacks its entry points")
    if extra:
        raise CompileError(f"compiled object has more entry points than expected ({', '.join(extra)})")
    return engine, addrs


class LoadedCode:
    """An MCJIT engine holding one program's object code; keeps it alive while callable."""

    def __init__(self, obj: bytes, target, n_kernels: int):
        self.engine, addrs = load_object(obj, target, ["jit_entry"] + [f"jit_k{i}" for i in range(n_kernels)],
                                         absent=(f"jit_k{n_kernels}",))
        self.entry, self.kernels = addrs[0], addrs[1:]
        if os.environ.get("JITENSOR_PERF_MAP", "") not in ("", "0"):  # name the code for `perf report`
            from ..codegen import perfmap
            perfmap.register(obj, self)
