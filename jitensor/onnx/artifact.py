"""Compiled ONNX models as files: compile once, run anywhere the same CPU is, without compiling again.

    m = jitensor.onnx.artifact.compile_model("resnet50.onnx", {"data": x})   # or shapes={"data": (1, 3, 224, 224)}
    jitensor.onnx.artifact.save(m, None, "resnet50.tar")
    net = jitensor.onnx.artifact.load("resnet50.tar")                        # no LLVM compilation
    probs = net.run({"data": x})["prob"]

An artifact is an uncompressed tar file of exactly these members, in this order:

    metadata.json   what the program is: format, jitensor version, model (name, sha256, opset), the traced
                    graph's fingerprint (`Graph.fingerprint`), the target (triple, CPU name, features, cache
                    sizes: `Target.key()`, what the disk cache keys on) and toolchain, input and output names,
                    dtypes and shapes, one line per kernel (name, schedule), compile time, and the size and
                    sha256 of every other part
    manifest.json   the program's manifest (`runtime/manifest.py`'s `pack`: buffer plan, launches), canonical JSON
    program.o       the object code
    program.so      the same code as a shared library (`codegen/elf.py`); absent where none could be linked
    constants.bin   the constant arrays (weights), raw, located by the manifest
    SHA256SUMS      "<sha256>  <name>" for every part above, in order

`load` reads it strictly and refuses, with an `OnnxError` of one line, anything that is not such a file
(not a tar, truncated, a member missing, extra, repeated or not a regular file, a checksum that differs,
SHA256SUMS not in its canonical form, metadata that does not parse), an artifact written by another
jitensor version, and one whose code this machine cannot run (another triple, or a CPU feature the code
was compiled with that the host lacks). Then the program is built from the manifest and the shared library
(`dlopen`, as a disk-cache hit does; the object code with LLVM's loader where that fails): nothing is
compiled, and neither the graph passes nor the code generator are imported.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time

import numpy as np

from ..errors import OnnxError

FORMAT = "jitensor-onnx-artifact"
FORMAT_VERSION = 1
METADATA, MANIFEST, OBJECT, LIBRARY, CONSTANTS, SUMS = (
    "metadata.json", "manifest.json", "program.o", "program.so", "constants.bin", "SHA256SUMS")
PARTS = (METADATA, MANIFEST, OBJECT, LIBRARY, CONSTANTS)  # SUMS covers these
OPTIONAL = frozenset({LIBRARY})
_SUM_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9_.]+)\n")
_MAX_METADATA = 16 << 20


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _canon_json(d) -> bytes:
    return (json.dumps(d, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def _dt(dtype) -> str:
    return np.dtype(dtype).name


# ----------------------------------------------------------------------------- the runnable


class CompiledModel:
    """A compiled ONNX model: a Program with the model's input and output names (what `compile_model` returns
    and `load` gives back). Call it with arrays (positional in input order, or by name), or `run(feeds)` for
    a dict of named outputs; inputs must have exactly the recorded shapes and dtypes."""

    def __init__(self, program, metadata: dict, parts: dict | None = None, source: str = "compiled"):
        self.program = program
        self.metadata = metadata
        self.parts = parts            # name -> bytes of the artifact's parts (None once loaded: not kept)
        self.source = source          # "compiled" | the artifact's path
        self.inputs = [(d["name"], np.dtype(d["dtype"]), tuple(d["shape"])) for d in metadata["inputs"]]
        self.outputs = [d["name"] for d in metadata["outputs"]]
        self.name = metadata["model"]["name"]

    def __repr__(self):
        ins = ", ".join(f"{n}: {dt.name}[{','.join(map(str, s))}]" for n, dt, s in self.inputs)
        return f"<jitensor compiled ONNX model {self.name}({ins}) -> {', '.join(self.outputs)}; {self.source}>"

    @property
    def kernels(self) -> list:
        return self.metadata.get("kernels", [])

    def check(self, feeds: dict) -> list:
        """The arrays of `feeds` (name -> array) in input order, each checked against its recorded name, shape and
        dtype; OnnxError (one line, naming the array) for a missing, extra, misshapen or wrongly typed one."""
        names = [n for n, _, _ in self.inputs]
        extra = [k for k in feeds if k not in names]
        if extra:
            raise OnnxError(f"{self.name}: unexpected input '{extra[0]}' (the model's inputs: {', '.join(names)})")
        out = []
        for name, dt, shape in self.inputs:
            if name not in feeds:
                raise OnnxError(f"{self.name}: missing input '{name}' ({dt.name}[{','.join(map(str, shape))}])")
            v = feeds[name]
            if not isinstance(v, np.ndarray):
                v = np.asarray(v)
            if v.dtype != dt:
                raise OnnxError(f"{self.name}: input '{name}' has dtype {v.dtype.name}, the compiled model takes "
                                f"{dt.name}")
            if v.shape != shape:
                raise OnnxError(f"{self.name}: input '{name}' has shape ({','.join(map(str, v.shape))}), the "
                                f"compiled model takes ({','.join(map(str, shape))})")
            out.append(np.ascontiguousarray(v))
        return out

    def _feeds(self, args, kwargs) -> dict:
        if len(args) > len(self.inputs):
            raise OnnxError(f"{self.name}: {len(args)} inputs given, the model takes {len(self.inputs)}")
        feeds = {n: a for (n, _, _), a in zip(self.inputs, args)}
        for k, v in kwargs.items():
            if k in feeds:
                raise OnnxError(f"{self.name}: input '{k}' given twice")
            feeds[k] = v
        return feeds

    def run(self, feeds: dict) -> dict:
        """A dict of named inputs in, a dict of named outputs out (arrays, 0-d ones included)."""
        outs = self.program.run(self.check(feeds))
        return dict(zip(self.outputs, outs))

    def __call__(self, *args, **kwargs):
        outs = self.program.run(self.check(self._feeds(args, kwargs)))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def profile(self, feeds: dict, repeat: int = 10) -> list[dict]:
        """Time each kernel: the program run kernel by kernel (`Program.run_stepwise`, the parallel kernels on
        the thread pool as in a normal run), `repeat` times after one warm-up run. One dict per kernel, in
        program order: index, name, schedule, the median and minimum seconds."""
        arrays = self.check(feeds)
        n = len(self.program.manifest.kernels)
        samples = [[] for _ in range(n)]
        clock = time.perf_counter
        for r in range(max(1, repeat) + 1):
            stamps = []
            self.program.run_stepwise(arrays, lambda i, _slot: stamps.append(clock()))
            end = clock()
            if r == 0:
                continue  # warm-up: first touches of buffers and code
            stamps.append(end)
            for i in range(n):
                samples[i].append(stamps[i + 1] - stamps[i])
        info = self.kernels if len(self.kernels) == n else [{} for _ in range(n)]
        rows = []
        for i, (s, k, launch) in enumerate(zip(samples, info, self.program.manifest.kernels)):
            rows.append({"index": i, "name": k.get("name", launch.entry),
                         "schedule": k.get("schedule", launch.schedule),
                         "parallel": launch.extent is not None, "median": float(np.median(s)), "min": float(min(s))})
        return rows


# ----------------------------------------------------------------------------- compiling


def input_specs(fn, shapes: dict | None = None) -> list[tuple]:
    """(name, dtype, shape) of each input of OnnxFunction `fn`: the model's declared static shapes, with the
    dimensions of `shapes` (name -> tuple of ints) overriding them or filling its symbolic ones. OnnxError for
    a symbolic dimension left unfilled, an unknown name, a rank or fixed dimension that differs."""
    shapes = dict(shapes or {})
    names = [s.name for s in fn.inputs]
    for k in shapes:
        if k not in names:
            raise OnnxError(f"--input-shapes names '{k}', which is not an input of the model (inputs: "
                            f"{', '.join(names) or 'none'})")
    out = []
    for spec in fn.inputs:
        if spec.dtype is None:
            raise OnnxError(f"input '{spec.name}' has no declared element type")
        given = shapes.get(spec.name)
        declared = spec.shape
        if given is None:
            if declared is None:
                raise OnnxError(f"input '{spec.name}' has no declared shape; give it with --input-shapes "
                                f"\"{spec.name}:2x3\"")
            if any(d is None for d in declared):
                dims = "x".join("?" if d is None else str(d) for d in declared)
                hint = "x".join("N" if d is None else str(d) for d in declared)
                raise OnnxError(f"input '{spec.name}' has symbolic dimensions ({dims}); give them with "
                                f"--input-shapes \"{spec.name}:{hint}\"")
            out.append((spec.name, spec.dtype, tuple(declared)))
            continue
        given = tuple(int(d) for d in given)
        if declared is not None:
            if len(declared) != len(given):
                raise OnnxError(f"--input-shapes gives '{spec.name}' {len(given)} dimensions, the model declares "
                                f"{len(declared)} ({'x'.join('?' if d is None else str(d) for d in declared)})")
            for i, (d, g) in enumerate(zip(declared, given)):
                if d is not None and d != g:
                    raise OnnxError(f"--input-shapes gives '{spec.name}' dimension {i} = {g}, the model fixes it "
                                    f"at {d}")
        out.append((spec.name, spec.dtype, given))
    return out


def parse_shapes(text: str | None) -> dict:
    """"name:1x3x224x224,other:1x10" -> {"name": (1, 3, 224, 224), "other": (1, 10)} ("name:" is a scalar)."""
    out: dict = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, dims = item.rpartition(":")
        if not sep or not name:
            raise OnnxError(f"--input-shapes: '{item}' is not NAME:DIMS (e.g. data:1x3x224x224)")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if dims.strip() else ()
        except ValueError:
            raise OnnxError(f"--input-shapes: '{dims}' (for '{name}') is not dimensions like 1x3x224x224") from None
        if any(d < 0 for d in shape):
            raise OnnxError(f"--input-shapes: negative dimension for '{name}'")
        if name in out:
            raise OnnxError(f"--input-shapes names '{name}' twice")
        out[name] = shape
    return out


def example_inputs(specs, seed: int = 0) -> dict:
    """Inputs of these (name, dtype, shape): floats standard normal, booleans random, integers zero (a valid
    index for any gather)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, dt, shape in specs:
        dt = np.dtype(dt)
        if dt.kind == "f":
            out[name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            out[name] = rng.random(shape) < 0.5
        else:
            out[name] = np.zeros(shape, dt)
    return out


def _as_function(model):
    from . import OnnxFunction, compile as onnx_compile
    return model if isinstance(model, OnnxFunction) else onnx_compile(model)


def _feeds_for(fn, inputs, shapes=None) -> dict:
    if inputs is None:
        return example_inputs(input_specs(fn, shapes))
    if isinstance(inputs, dict):
        return dict(inputs)
    inputs = list(inputs)
    return {s.name: a for s, a in zip(fn.inputs, inputs)}


def compile_model(model, inputs=None, *, shapes: dict | None = None, records=None,
                  target: str = "llvm") -> CompiledModel:
    """Compile an ONNX model (path, bytes, ModelProto or OnnxFunction) for the shapes and dtypes of `inputs`
    (a dict by name or a list in input order; None: the declared shapes, with `shapes` filling or overriding
    dimensions) into a CompiledModel that `save` writes. `records`: a tuning-record store (RecordStore or its
    path) to schedule the kernels with (default: the user's store, as `@jit` does)."""
    from .. import __version__
    from ..codegen.llvm import LoadedCode, build_module, compile_object
    from ..compiler import front_end, link_library, manifest_of
    from ..runtime.manifest import pack
    from ..runtime.program import Program
    from ..target import host, save_host, toolchain, verify_host
    parse_target(target)
    fn = _as_function(model)
    feeds = _feeds_for(fn, inputs, shapes)
    arrays = fn.check_inputs(fn._bind((), feeds))
    store = None
    if records is not None:
        from ..autotune.records import RecordStore
        store = records if isinstance(records, RecordStore) else RecordStore(records)
    t0 = time.perf_counter()
    graph, layouts, arrays = fn._jit._traced(tuple(arrays), {})
    verify_host()  # the target below is LLVM's view of this CPU, not a stored record's
    tgt = host()
    g, plan, bufs, kernels = front_end(graph, layouts, tgt, store)
    t1 = time.perf_counter()
    obj, _ = compile_object(build_module(kernels, tgt, name=fn._fn.__name__), tgt)
    manifest = manifest_of(bufs, kernels, graph, tgt)
    library = link_library(obj)
    save_host()  # the host record of the disk cache, so that loading an artifact here need not start LLVM
    t2 = time.perf_counter()
    program = Program(LoadedCode(obj, tgt, len(kernels)), manifest, where=fn.graph.source)
    meta_manifest, payload = pack(manifest, obj, library)
    consts = payload[len(obj) + len(library):]
    outs = [(n.shape, n.dtype) for n in graph.outputs]
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jitensor": __version__,
        "model": {"name": fn.graph.name, "sha256": fn.sha256, "source": os.path.basename(fn.graph.source),
                  "opset": fn.graph.opset},
        "graph": graph.fingerprint(),
        "target": tgt.key(),
        "toolchain": dict(toolchain()),
        "inputs": [{"name": s.name, "dtype": _dt(a.dtype), "shape": [int(d) for d in a.shape]}
                   for s, a in zip(fn.inputs, arrays)],
        "outputs": [{"name": s.name, "dtype": _dt(dt), "shape": [int(d) for d in shape]}
                    for s, (shape, dt) in zip(fn.outputs, outs)],
        "kernels": [{"name": k.name, "schedule": k.origin or "default"} for k in kernels],
        "compile_seconds": {"front end": round(t1 - t0, 4), "llvm": round(t2 - t1, 4)},
        "created": int(time.time()),
    }
    parts = {MANIFEST: _canon_json(meta_manifest), OBJECT: obj, CONSTANTS: consts}
    if library:
        parts[LIBRARY] = library
    return CompiledModel(program, metadata, parts)


def parse_target(text: str):
    """Check a --target string: "llvm", or "llvm -mcpu=<this host's CPU>" / "-mcpu=native" (compiling for another
    CPU is not supported yet). OnnxError otherwise."""
    words = (text or "llvm").split()
    if not words or words[0] != "llvm":
        raise OnnxError(f"target '{text}' is not supported: only 'llvm' (this machine's CPU) for now")
    for w in words[1:]:
        if w.startswith("-mcpu="):
            cpu = w[len("-mcpu="):]
            from ..target import host
            if cpu not in ("native", host().cpu):
                raise OnnxError(f"target '{text}': compiling for another CPU than this one ({host().cpu}) is not "
                                "supported yet")
        else:
            raise OnnxError(f"target '{text}': unknown option '{w}' (only -mcpu= is understood)")
    return words


# ----------------------------------------------------------------------------- writing


def save(compiled, inputs, path, **compile_kwargs) -> CompiledModel:
    """Write a compiled model artifact to `path` (a tar file; see the module docstring). `compiled`: a
    CompiledModel, or anything `compile_model` takes (then compiled here for `inputs`, as there). Returns the
    CompiledModel written."""
    if not isinstance(compiled, CompiledModel):
        compiled = compile_model(compiled, inputs, **compile_kwargs)
    elif compiled.parts is None:
        raise OnnxError("this compiled model was loaded from an artifact; copy that file instead")
    parts = dict(compiled.parts)
    meta = dict(compiled.metadata)
    meta["parts"] = {name: {"size": len(parts[name]), "sha256": _sha(parts[name])} for name in PARTS if name in parts}
    parts[METADATA] = _canon_json(meta)
    order = [n for n in PARTS if n in parts]
    parts[SUMS] = "".join(f"{_sha(parts[n])}  {n}\n" for n in order).encode("ascii")
    order.append(SUMS)
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in order:
                info = tarfile.TarInfo(name)
                info.size = len(parts[name])
                info.mtime = meta["created"]
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(parts[name]))
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OnnxError(f"cannot write {path}: {e.strerror or e}") from None
    compiled.metadata = meta
    return compiled


# ----------------------------------------------------------------------------- reading


_CODE_PARTS = (OBJECT, LIBRARY, CONSTANTS)  # read into one buffer, in this order: the manifest's payload


def read_parts(path) -> tuple[dict, dict, np.ndarray]:
    """(name -> contents, name -> sha256, payload) of an artifact, every part checked against SHA256SUMS;
    OnnxError (one line) otherwise. The code and constants are read straight into `payload` (object code,
    library, constants: what `manifest.unpack` takes), their entries in the first dict being views of it;
    each part is hashed once (a large model's load time is mostly reading and hashing its weights)."""
    path = os.fspath(path)
    where = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        tar = tarfile.open(path, "r:")
    except OSError as e:
        raise OnnxError(f"cannot read artifact {path}: {e.strerror or e}") from None
    except (tarfile.TarError, EOFError, ValueError) as e:
        raise OnnxError(f"{where} is not a jitensor model artifact (not a tar file, or truncated: {e})") from None
    infos: dict = {}
    try:
        with tar:
            for info in tar:  # headers only: the data is skipped over (an uncompressed tar seeks)
                if info.name in infos:
                    raise OnnxError(f"{where} is damaged: member '{info.name}' appears twice")
                if info.name not in PARTS and info.name != SUMS:
                    raise OnnxError(f"{where} is damaged or not a jitensor model artifact: unexpected member "
                                    f"'{info.name}'")
                if not info.isreg():
                    raise OnnxError(f"{where} is damaged: member '{info.name}' is not a regular file")
                if info.offset_data + info.size > size:
                    raise OnnxError(f"{where} is truncated (member '{info.name}' is cut short)")
                if info.name not in _CODE_PARTS and info.size > _MAX_METADATA:
                    raise OnnxError(f"{where} is damaged: member '{info.name}' is implausibly large")
                infos[info.name] = info
    except OnnxError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise OnnxError(f"{where} is not a readable jitensor model artifact (damaged or truncated: {e})") from None
    if not infos:
        raise OnnxError(f"{where} is not a jitensor model artifact (an empty tar file)")
    missing = [n for n in (METADATA, MANIFEST, OBJECT, CONSTANTS, SUMS) if n not in infos]
    if missing:
        raise OnnxError(f"{where} is damaged or not a jitensor model artifact: part '{missing[0]}' is missing")
    code = [n for n in _CODE_PARTS if n in infos]
    payload = np.empty(sum(infos[n].size for n in code), np.uint8)  # not zeroed: every byte is read below
    view = memoryview(payload)
    parts: dict = {}
    try:
        with open(path, "rb") as f:
            for name, info in infos.items():
                f.seek(info.offset_data)
                if name in code:
                    at = sum(infos[n].size for n in code[:code.index(name)])
                    part = view[at:at + info.size]
                    got = f.readinto(part)
                else:
                    part = f.read(info.size)
                    got = len(part)
                if got != info.size:
                    raise OnnxError(f"{where} is truncated (member '{name}' is cut short)")
                parts[name] = part
    except OSError as e:
        raise OnnxError(f"cannot read artifact {path}: {e.strerror or e}") from None
    try:
        text = parts[SUMS].decode("ascii")
    except UnicodeDecodeError:
        text = ""
    lines = _SUM_LINE.findall(text)
    if not lines or "".join(f"{h}  {n}\n" for h, n in lines) != text:
        raise OnnxError(f"{where} is damaged: {SUMS} is not a list of checksums")
    listed = {}
    for h, n in lines:
        if n in listed or n not in PARTS:
            raise OnnxError(f"{where} is damaged: {SUMS} lists '{n}' {'twice' if n in listed else 'unexpectedly'}")
        listed[n] = h
    for n in parts:
        if n != SUMS and n not in listed:
            raise OnnxError(f"{where} is damaged: part '{n}' has no checksum (added after it was written?)")
    hashes = {}
    for n, h in listed.items():
        if n not in parts:
            raise OnnxError(f"{where} is damaged: part '{n}' is missing")
        hashes[n] = _sha(parts[n])
        if hashes[n] != h:
            raise OnnxError(f"{where} is damaged: the checksum of part '{n}' does not match (modified after it "
                            "was written)")
    return parts, hashes, payload


def _metadata(parts: dict, hashes: dict, where: str) -> dict:
    raw = parts[METADATA]
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise OnnxError(f"{where} is damaged: {METADATA} is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise OnnxError(f"{where} is not a jitensor model artifact (metadata of another format)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise OnnxError(f"{where} has artifact format {meta.get('format_version')!r}; this jitensor reads format "
                        f"{FORMAT_VERSION}")
    try:
        recorded = meta["parts"]
        for n, p in parts.items():
            if n in (METADATA, SUMS):
                continue
            if n not in recorded or recorded[n]["size"] != len(p) or recorded[n]["sha256"] != hashes[n]:
                raise OnnxError(f"{where} is damaged: part '{n}' is not the one its metadata describes")
        for n in recorded:
            if n not in parts:
                raise OnnxError(f"{where} is damaged: part '{n}' is missing")
        for key in ("inputs", "outputs"):
            for d in meta[key]:
                if not isinstance(d["name"], str) or not all(isinstance(s, int) and s >= 0 for s in d["shape"]):
                    raise ValueError(key)
                np.dtype(d["dtype"])
        meta["target"]["triple"], meta["target"]["features"], meta["model"]["name"]  # noqa: B018 (present)
    except OnnxError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise OnnxError(f"{where} is damaged: its metadata lacks or mistypes a field") from None
    return meta


def check_runnable(meta: dict, where: str) -> None:
    """OnnxError unless this jitensor and this machine can run the artifact's code: the same jitensor version,
    target kind and triple, and every CPU feature the code was compiled with present here."""
    from .. import __version__
    from ..target import host
    if meta.get("jitensor") != __version__:
        raise OnnxError(f"{where} was compiled by jitensor {meta.get('jitensor')}; this is jitensor {__version__} "
                        "(compile the model again)")
    t, here = meta["target"], host()
    if t.get("kind") != here.kind or t.get("triple") != here.triple:
        raise OnnxError(f"{where} was compiled for {t.get('kind')} {t.get('triple')}; this machine is "
                        f"{here.kind} {here.triple}")
    have = {f[1:] for f in here.features.split(",") if f.startswith("+")}
    need = [f[1:] for f in str(t.get("features", "")).split(",") if f.startswith("+")]
    lacking = [f for f in need if f not in have]
    if lacking:
        more = f" and {len(lacking) - 3} more" if len(lacking) > 3 else ""
        raise OnnxError(f"{where} was compiled for CPU {t.get('cpu')} with features this CPU ({here.cpu}) lacks: "
                        f"{', '.join(lacking[:3])}{more}")


def load(path) -> CompiledModel:
    """The compiled model of an artifact written by `save`, checked (see the module docstring); no compilation."""
    from ..runtime.manifest import ManifestError, unpack
    from ..runtime.program import Program
    where = os.path.basename(os.fspath(path))
    parts, hashes, payload = read_parts(path)
    meta = _metadata(parts, hashes, where)
    check_runnable(meta, where)
    try:
        d = json.loads(parts[MANIFEST].decode("utf-8"))
        if not isinstance(d, dict) or d.get("object_size") != len(parts[OBJECT]) \
                or d.get("library_size") != len(parts.get(LIBRARY, b"")):
            raise ManifestError("its sizes are not those of the code parts")
        m, obj, library = unpack(d, payload)
    except (ManifestError, ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise OnnxError(f"{where} is damaged: its manifest does not describe a program ({e})") from None
    if len(m.inputs) != len(meta["inputs"]) or len(m.outputs) != len(meta["outputs"]):
        raise OnnxError(f"{where} is damaged: the manifest and the metadata disagree on the inputs or outputs")
    for (_, _, shape, dtype), d in zip(m.outputs, meta["outputs"]):
        if tuple(shape) != tuple(d["shape"]) or np.dtype(dtype) != np.dtype(d["dtype"]):
            raise OnnxError(f"{where} is damaged: the manifest and the metadata disagree on output '{d['name']}'")
    code = _load_code(obj, library, len(m.kernels), where)
    return CompiledModel(Program(code, m, where=meta["model"].get("source")), meta, None, source=os.fspath(path))


def _load_code(obj: bytes, library: bytes, n_kernels: int, where: str):
    """Entry points from the shared library (written to a private temporary file for `dlopen`, removed once
    mapped), else from the object code with LLVM's loader; no compilation either way."""
    from ..runtime import sharedlib
    if library and sharedlib.usable():
        d = tempfile.mkdtemp(prefix="jitensor-artifact-")
        lib_path = os.path.join(d, "program.so")
        try:
            fd = os.open(lib_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "wb") as f:
                f.write(library)
            return sharedlib.SharedProgramCode(lib_path, n_kernels, image=library)
        except (OSError, sharedlib.SharedLibError):
            pass  # e.g. a noexec temporary directory: the object code below
        finally:
            for rm in (os.unlink, os.rmdir):
                try:
                    rm(lib_path if rm is os.unlink else d)
                except OSError:
                    pass
    from ..errors import CompileError
    from ..target import host
    from ..runtime.loader import LoadedCode
    try:
        return LoadedCode(obj, host(), n_kernels)
    except CompileError as e:
        raise OnnxError(f"{where}: its object code does not load ({e.msg})") from None
