"""Targets are values: the triple, CPU and features that machine code depends on (caches key on them)."""
from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    kind: str = "llvm"          # "llvm" (host CPU); "cuda" arrives with the GPU backend
    triple: str = ""
    cpu: str = ""
    features: str = ""

    @property
    def vector_bits(self) -> int:
        f = self.features
        if "+avx512f" in f:
            return 512
        if "+avx2" in f or "+avx" in f:
            return 256
        return 128

    def key(self) -> dict:
        return {"kind": self.kind, "triple": self.triple, "cpu": self.cpu, "features": self.features}

    def __str__(self):
        return f"{self.kind} -mtriple={self.triple} -mcpu={self.cpu}"


@functools.cache
def host() -> Target:
    from .codegen.llvm import binding
    llvm = binding()
    feats = llvm.get_host_cpu_features().flatten()
    if "+avx512f" in feats:
        feats += ",-prefer-256-bit"  # the host prefers ymm by default; our loops want zmm
    return Target("llvm", llvm.get_process_triple(), llvm.get_host_cpu_name(), feats)
