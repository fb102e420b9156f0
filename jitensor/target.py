"""Targets are values: the triple, CPU and features that machine code depends on (caches key on them)."""
from __future__ import annotations

import functools
import os
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


@functools.cache
def host() -> Target:
    from .runtime.loader import binding
    llvm = binding()
    feats = llvm.get_host_cpu_features().flatten()
    if "+avx512f" in feats:
        feats += ",-prefer-256-bit"  # the host prefers ymm by default; our loops want zmm
    l1d, l2 = _cache_sizes()
    return Target("llvm", llvm.get_process_triple(), llvm.get_host_cpu_name(), feats, l1d, l2)


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
