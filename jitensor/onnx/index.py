"""Which stored program serves a model: one small JSON file per model in the disk cache directory.

`onnx-<sha256 of the model bytes>[-<cut>].json` holds the model's input and output specs and, per input
signature (dtype, shape and strides of each input), the disk-cache key of the program compiled for it.
A fresh process's first call of a model compiled before then loads that program directly: it does not
import onnx (~1.5 s with its dependencies), parse, check or shape-infer the model, nor trace and hash
its weights. The index records the compiler build, toolchain and target it was made under and is
ignored under others; the program entry itself is checked as on any disk hit (stale schedules are
recompiled); a missing or unreadable index
or entry falls back to parsing and compiling. Writes go through a temporary file and a rename, so a
reader never sees half a file; two processes adding signatures at once may lose one (it is re-added
on its next compile).
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .. import __version__

FORMAT = 1
PREFIX = "onnx-"


def _build() -> dict:
    """What a program key was made under besides the model: the compiler's build, the toolchain and the
    target (the program keys cover them too; an index made under others names programs this process would
    not have compiled, so it is ignored)."""
    from ..compiler import compiler_fingerprint
    from ..target import host, toolchain
    tools = toolchain()
    return {"compiler": compiler_fingerprint(), "llvm": str(tools["llvm"]), "llvmlite": str(tools["llvmlite"]),
            "target": str(host().key())}


def signature(arrays) -> str:
    return json.dumps([[a.dtype.str, list(a.shape), list(a.strides)] for a in arrays])


class ModelIndex:
    def __init__(self, path: str):
        self.path = path
        self.data = self._read()

    @classmethod
    def of(cls, sha256: str, cut) -> "ModelIndex | None":
        """The index of this model (and sub-graph cut), or None when the disk cache is off."""
        from ..runtime.diskcache import default_cache
        disk = default_cache()
        if not disk.enabled:
            return None
        tag = "" if cut == (None, None) else "-" + hashlib.sha256(repr(cut).encode()).hexdigest()[:16]
        return cls(os.path.join(disk.path, f"{PREFIX}{sha256}{tag}.json"))

    def _read(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != __version__ \
                or not isinstance(d.get("programs"), dict) or d.get("build") != _build():
            return None
        return d

    def specs(self):
        """(name, inputs, outputs) as recorded, or None: specs are (name, dtype or None, shape or None)."""
        if self.data is None:
            return None
        try:
            def spec(v):
                return (str(v[0]), None if v[1] is None else np.dtype(v[1]),
                        None if v[2] is None else tuple(None if d is None else int(d) for d in v[2]))
            return str(self.data["name"]), [spec(v) for v in self.data["inputs"]], \
                [spec(v) for v in self.data["outputs"]]
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    def program(self, sig: str):
        """(disk-cache key, [(shape, dtype)] of the outputs) of the program for this signature, or None."""
        if self.data is None:
            return None
        try:
            key, outs = self.data["programs"][sig]
            return str(key), [(tuple(int(d) for d in shape), np.dtype(dt)) for shape, dt in outs]
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, name: str, inputs, outputs, sig: str, key: str, out_types) -> None:
        """Add (or replace) the program of one signature; never raises (the index is only a shortcut)."""
        def spec(s):
            return [s.name, None if s.dtype is None else s.dtype.str, None if s.shape is None else list(s.shape)]
        fresh = self._read()
        d = fresh if fresh is not None else {"format": FORMAT, "version": __version__, "build": _build(),
                                             "programs": {}}
        d.update(name=name, inputs=[spec(s) for s in inputs], outputs=[spec(s) for s in outputs])
        d["programs"][sig] = [key, [[list(shape), np.dtype(dt).str] for shape, dt in out_types]]
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(d, f)
            os.replace(tmp, self.path)
            self.data = d
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
