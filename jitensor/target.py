"""Targets are values: the triple, CPU and features that machine code depends on (caches key on them)."""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    kind: str = "llvm"          # "llvm" (host CPU); "cuda" arrives with the GPU backend
    triple: str = ""
    cpu: str = ""
    features: str = ""
    l1d: int = 32 << 10         # data cache sizes per core, bytes (templates size their blocks by them)
    l2: int = 1 << 20

    @property
    def vector_bits(self) -> int:
        f = self.features
        if "+avx512f" in f:
            return 512
        if "+avx2" in f or "+avx" in f:
            return 256
        return 128

    def key(self) -> dict:
        return {"kind": self.kind, "triple": self.triple, "cpu": self.cpu, "features": self.features,
                "l1d": self.l1d, "l2": self.l2}

    def __str__(self):
        return f"{self.kind} -mtriple={self.triple} -mcpu={self.cpu}"


def host() -> Target:
    """The host's target (triple, CPU name and features as LLVM reports them, cache sizes)."""
    return _host_info()[0]


def toolchain() -> dict:
    """{"llvmlite": version, "llvm": version} of the code generator (cache keys include them)."""
    return _host_info()[1]


# What LLVM says about the host costs starting LLVM (~45 ms: importing llvmlite.binding, initializing the
# target), which a process served by the disk cache would otherwise pay only to compute its cache keys.
# So it is also kept in the disk cache, as a record named by a fingerprint of everything it depends on:
# the CPU (/proc/cpuinfo's first processor: vendor, family, model, stepping, microcode, flags), the kernel
# (which enables CPU state such as AVX-512's), llvmlite's library and version files, jitensor's build.
# Reading it never writes anything; a process that compiles for the disk cache (LLVM is started then
# anyway) checks it against LLVM (`verify_host`) and writes it when it was missing or wrong (`save_host`).
HOST_RECORD_VERSION = 1
_VOLATILE = ("processor", "cpu mhz", "bogomips", "core id", "apicid", "initial apicid", "siblings", "cpu cores",
             "physical id", "power management")
_lock = threading.Lock()
_info: tuple | None = None   # (Target, toolchain)
_source = ""                 # "record" (not yet checked against LLVM) | "llvm" | "saved" (the record is LLVM's)


def _host_info() -> tuple:
    global _info, _source
    if _info is None:
        with _lock:
            if _info is None:
                name = _record_name()
                rec = _from_record(name) if name else None
                if rec is not None:
                    _info, _source = rec, "record"
                else:
                    _info, _source = _detect(), "llvm"
    return _info


def _detect() -> tuple:
    """(Target, toolchain) from LLVM."""
    import llvmlite

    from .runtime.loader import binding
    llvm = binding()
    feats = llvm.get_host_cpu_features().flatten()
    if "+avx512f" in feats:
        feats += ",-prefer-256-bit"  # the host prefers ymm by default; our loops want zmm
    l1d, l2 = _cache_sizes()
    t = Target("llvm", llvm.get_process_triple(), llvm.get_host_cpu_name(), feats, l1d, l2)
    return t, {"llvmlite": llvmlite.__version__, "llvm": ".".join(map(str, llvm.llvm_version_info))}


def verify_host() -> bool:
    """Check the host's description against LLVM, once per process (call it where LLVM is started anyway: a
    compile). True if it differed from the record this process used: `host()` and `toolchain()` now answer
    LLVM's values, and cache keys computed before are stale (`save_host` corrects the record)."""
    global _info, _source
    _host_info()
    if _source != "record":
        return False
    with _lock:
        if _source != "record":
            return False
        new = _detect()
        same = new == _info
        _info, _source = new, "saved" if same else "llvm"
        return not same


def save_host() -> None:
    """Write the host record if this process's description came from LLVM (no record, or a wrong one found by
    `verify_host`). Called where a process uses the disk cache, so that a process that keeps off it
    (`jit(cache=False)`) writes nothing there; cheap otherwise (it never starts LLVM)."""
    global _source
    if _source != "llvm":
        return
    with _lock:
        if _source != "llvm":
            return
        _source = "saved"
        name = _record_name()
        if name:
            from .runtime.diskcache import default_cache
            disk = default_cache()
            if disk.enabled:
                t, tools = _info
                disk.store_record(name, {"name": "jitensor host target", "target": t.key(), "toolchain": tools})


def _from_record(name: str) -> tuple | None:
    from .runtime.diskcache import default_cache
    disk = default_cache()
    if not disk.enabled:
        return None
    meta = disk.load_record(name)
    try:
        k, tools = meta["target"], meta["toolchain"]
        t = Target(str(k["kind"]), str(k["triple"]), str(k["cpu"]), str(k["features"]), int(k["l1d"]), int(k["l2"]))
        tools = {"llvmlite": str(tools["llvmlite"]), "llvm": str(tools["llvm"])}
    except (TypeError, KeyError, ValueError):
        return None
    return t, tools


def _record_name() -> str | None:
    """The record's name for this machine and installation (None where there is no fingerprint to trust:
    no /proc/cpuinfo, llvmlite not found, or the disk cache off)."""
    import hashlib
    import importlib.util

    from .runtime.diskcache import ENV_DISABLE, _env_flag
    if _env_flag(ENV_DISABLE):
        return None
    try:
        with open("/proc/cpuinfo", "rb") as f:
            text = f.read(8192).decode("ascii", "replace")  # the first processor's block
        first = text.split("\n\n", 1)[0]
        cpu = sorted({ln.strip() for ln in first.splitlines()
                      if ":" in ln and ln.split(":", 1)[0].strip().lower() not in _VOLATILE})
        spec = importlib.util.find_spec("llvmlite")
        base = spec.submodule_search_locations[0]
        files = []
        for rel in ("_version.py", os.path.join("binding", "libllvmlite.so")):
            st = os.stat(os.path.join(base, rel))
            files.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
        from .compiler import compiler_fingerprint
        u = os.uname()
        parts = [str(HOST_RECORD_VERSION), sys.platform, u.machine, u.release, *cpu, base, *files,
                 compiler_fingerprint()]
    except (OSError, AttributeError, TypeError, IndexError, ValueError, ImportError):
        return None
    return "host-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _cache_sizes() -> tuple[int, int]:
    """L1 data and L2 sizes of cpu0 from sysfs (Linux); the defaults elsewhere."""
    sizes = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in os.listdir(base):
            if not d.startswith("index"):
                continue
            with open(f"{base}/{d}/level") as f:
                level = int(f.read())
            with open(f"{base}/{d}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{d}/size") as f:
                txt = f.read().strip()
            n = int(txt.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(txt[-1:], 0)
            if kind in ("Data", "Unified"):
                sizes[level] = n
    except (OSError, ValueError):
        pass
    return sizes.get(1, 32 << 10), sizes.get(2, 1 << 20)
