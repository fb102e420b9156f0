"""The manifest: everything `Program` needs besides the machine code, as plain data.

A compiled program is object code plus this description of how to call it: the buffer plan (which
pointer-table slot holds each input, output, constant and temporary, with the shapes and dtypes
the runtime allocates), one launch record per kernel (its exported entry point, the extent of its
parallel loop, its work estimate and chunk grain, whether it is a template, its workload key and which
schedule it was compiled with), and the source line of
each runtime check. The compiler builds it from the buffer plan and the scheduled kernels
(`compiler.manifest_of`); the disk cache stores it beside the object code, so that a disk hit
builds the program from it alone, without graph passes, fusion, lowering or scheduling.

On disk (`pack`/`unpack`) it is canonical JSON in the entry's (checksummed) header. The payload is
the object code, then the program's shared library (`codegen/elf.py`; empty when none could be
written), then the constant arrays as raw C-order bytes, described by dtype, shape, offset and
size. Nothing is ever unpickled. `unpack` validates every field and raises
`ManifestError` on anything unexpected; the caller discards the entry and recompiles.

Only numpy and the standard library are imported here: a disk hit must not load the compiler.
"""
from __future__ import annotations

import numpy as np

MANIFEST_VERSION = 3  # 2: the shared library after the object code; 3: workload and schedule per kernel
_DTYPES = frozenset(np.dtype(t).str for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                              np.uint16, np.uint32, np.uint64, np.float32, np.float64))


class ManifestError(ValueError):
    """A stored manifest that does not describe a program this process can run (corrupt, foreign, stale)."""


class Launch:
    """How the runtime calls one kernel: `jit_kN(table, begin, end)` over [0, extent) split into chunks."""
    __slots__ = ("entry", "extent", "work", "grain", "template", "workload", "schedule")
    # (plain classes, not dataclasses: creating a dataclass costs ~1 ms, at the start of every process)

    def __init__(self, entry: str, extent: int | None, work: int, grain: int, template: bool, workload: str = "",
                 schedule: str = "default"):
        self.entry = entry        # exported symbol, jit_k<N>
        self.extent = extent      # parallel loop extent (None: the kernel has no parallel loop)
        self.work = work          # work estimate (schedule.work units): parallel only above threads.min_work()
        self.grain = grain        # chunk size in iterations of the parallel loop
        self.template = template  # templates redo per-chunk set-up (GEMM packs B): one chunk per thread
        self.workload = workload  # the kernel's workload key (loop/workload.py)
        self.schedule = schedule  # "default", or the digest of the tuning record's steps it was compiled with

    def _key(self):
        return (self.entry, self.extent, self.work, self.grain, self.template, self.workload, self.schedule)

    def __eq__(self, other):
        return isinstance(other, Launch) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return ("Launch(entry=%r, extent=%r, work=%r, grain=%r, template=%r, workload=%r, schedule=%r)"
                % self._key())


class Manifest:
    """Everything the runtime needs besides the machine code (see the module docstring)."""
    __slots__ = ("n_slots", "inputs", "outputs", "temps", "consts", "arrays", "kernels", "sites")

    def __init__(self, n_slots: int, inputs: tuple, outputs: tuple, temps: tuple, consts: tuple, arrays: tuple,
                 kernels: tuple, sites: tuple):
        self.n_slots = n_slots
        self.inputs = inputs      # slot per graph input
        self.outputs = outputs    # (slot, None, shape, dtype) per output, or (None, ("in", i) | ("const", j), shape,
                                  # dtype) for an input or a constant returned unchanged (the runtime copies it)
        self.temps = temps        # (slot, shape, dtype) allocated per call
        self.consts = consts      # (slot, j): constant j is passed in this slot
        self.arrays = arrays      # constant arrays (read-only, C order), indexed by j above
        self.kernels = kernels    # Launch per kernel, in program order
        self.sites = sites        # (error code, source line, position of its node in the traced graph's toposort
                                  # or None) of the ops whose runtime checks can fail: a disk hit names the line
                                  # of today's trace

    def replace(self, **changes) -> "Manifest":
        """A copy with some fields changed."""
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return Manifest(**fields)

    def __repr__(self):
        return f"Manifest(n_slots={self.n_slots}, inputs={self.inputs}, kernels={len(self.kernels)})"


def pack(m: Manifest, obj: bytes, library: bytes = b"") -> tuple[dict, bytes]:
    """(JSON-able dict for the entry's header, payload): the payload is the object code, the shared library
    (possibly empty) and the constants' raw bytes, which the dict locates (offset, size) along with their
    dtypes and shapes."""
    blobs, descr, pos = [obj, library], [], len(obj) + len(library)
    for a in m.arrays:
        b = np.ascontiguousarray(a).tobytes()
        descr.append({"dtype": a.dtype.str, "shape": [int(s) for s in a.shape], "offset": pos, "nbytes": len(b)})
        blobs.append(b)
        pos += len(b)
    d = {
        "version": MANIFEST_VERSION,
        "object_size": len(obj),
        "library_size": len(library),
        "n_slots": m.n_slots,
        "inputs": list(m.inputs),
        "outputs": [[slot, list(src) if src else None, list(shape), np.dtype(dt).str]
                    for slot, src, shape, dt in m.outputs],
        "temps": [[slot, list(shape), np.dtype(dt).str] for slot, shape, dt in m.temps],
        "consts": [list(c) for c in m.consts],
        "arrays": descr,
        "kernels": [{"entry": k.entry, "extent": k.extent, "work": k.work, "grain": k.grain,
                     "template": k.template, "workload": k.workload, "schedule": k.schedule} for k in m.kernels],
        "sites": [[code, str(where), node] for code, where, node in m.sites],
    }
    return d, b"".join(blobs)


def unpack(d, payload: bytes) -> tuple[Manifest, bytes, bytes]:
    """(manifest, object code, shared library or b"") from what `pack` wrote; ManifestError if anything is
    missing, mistyped or out of range."""
    try:
        return _decode(d, payload)
    except ManifestError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ManifestError(f"malformed manifest ({type(e).__name__}: {e})") from None


def _int(v, lo=0, hi=None, what="value") -> int:
    if type(v) is not int or v < lo or (hi is not None and v >= hi):
        raise ManifestError(f"{what} {v!r} is out of range")
    return v


def _shape(v) -> tuple:
    if not isinstance(v, list) or len(v) > 64:
        raise ManifestError(f"shape {v!r} is not a list of sizes")
    return tuple(_int(s, what="size") for s in v)


def _dtype(v) -> np.dtype:
    if v not in _DTYPES:
        raise ManifestError(f"dtype {v!r} is not one jitensor compiles")
    return np.dtype(v)


def _decode(d, payload) -> tuple[Manifest, bytes, bytes]:
    if not isinstance(d, dict) or d.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"manifest version {d.get('version') if isinstance(d, dict) else None!r}, "
                            f"this jitensor reads version {MANIFEST_VERSION}")
    size = _int(d["object_size"], 1, len(payload) + 1, "object size")
    lib = _int(d["library_size"], 0, len(payload) - size + 1, "library size")
    n = _int(d["n_slots"], 1, 1 << 20, "slot count")
    slot = lambda v: _int(v, 1, n, "slot")  # noqa: E731 - slot 0 is the error word
    arrays = []
    for a in d["arrays"]:
        dt, shape = _dtype(a["dtype"]), _shape(a["shape"])
        off, nb = _int(a["offset"], what="offset"), _int(a["nbytes"], what="size")
        if nb != dt.itemsize * int(np.prod(shape, dtype=np.int64)) or off < size + lib or off + nb > len(payload):
            raise ManifestError(f"constant of {nb} bytes at {off} does not fit {dt.name}{list(shape)} or the payload")
        arr = np.frombuffer(payload, dt, nb // dt.itemsize, off).reshape(shape).copy()  # aligned, owned
        arr.setflags(write=False)
        arrays.append(arr)
    outputs = []
    for s, src, shape, dt in d["outputs"]:
        if s is None:
            kind, i = src
            if kind not in ("in", "const"):
                raise ManifestError(f"output source {src!r}")
            i = _int(i, 0, len(d["inputs"]) if kind == "in" else len(arrays), "output source")
            outputs.append((None, (kind, i), _shape(shape), _dtype(dt)))
        else:
            outputs.append((slot(s), None, _shape(shape), _dtype(dt)))
    kernels = []
    for i, k in enumerate(d["kernels"]):
        if (k["entry"] != f"jit_k{i}" or type(k["template"]) is not bool or type(k["workload"]) is not str
                or type(k["schedule"]) is not str):
            raise ManifestError(f"kernel {i} is {k!r}")
        ext = None if k["extent"] is None else _int(k["extent"], what="extent")
        kernels.append(Launch(k["entry"], ext, _int(k["work"], what="work"), _int(k["grain"], 1, what="grain"),
                              k["template"], k["workload"], k["schedule"]))
    sites = []
    for code, where, node in d["sites"]:
        if not isinstance(where, str):
            raise ManifestError(f"source line {where!r}")
        sites.append((_int(code, 1, what="error code"), where, None if node is None else _int(node, what="node")))
    m = Manifest(n, tuple(slot(s) for s in d["inputs"]), tuple(outputs),
                 tuple((slot(s), _shape(sh), _dtype(dt)) for s, sh, dt in d["temps"]),
                 tuple((slot(s), _int(j, 0, len(arrays), "constant")) for s, j in d["consts"]),
                 tuple(arrays), tuple(kernels), tuple(sites))
    return m, bytes(payload[:size]), bytes(payload[size:size + lib])
