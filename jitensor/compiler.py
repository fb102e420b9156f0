"""The pipeline from a traced graph to a runnable Program, in order:
optimize (graph passes) -> plan fusion -> plan buffers -> lower -> schedule -> LLVM -> machine code.

The disk cache sits in front of all of it: its key is a canonical hash of everything that
determines the machine code (see `cache_components`), and an entry holds the object code, the same
code linked into a shared library (`codegen/elf.py`) and the program's manifest
(`runtime/manifest.py`), so a new process builds the Program from the entry alone, loading the
library with `dlopen` (`runtime/sharedlib.py`): neither the compile-time stages nor llvmlite are
imported on a disk hit. They are imported only when something has to be compiled (or dumped).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import time

from .graph.ir import Graph, format_graph
from .runtime.manifest import Launch, Manifest, ManifestError, pack, unpack
from .runtime.program import Program

log = logging.getLogger("jitensor")


class Compiled:
    """A compiled (or loaded) program and what produced it (a plain class: a dataclass costs ~1 ms to create,
    at the start of every process)."""

    def __init__(self, program: Program, graph: Graph, optimized: Graph | None, groups: dict | None,
                 kernels: list | None, llvm_ir: str | None = None, optimized_ir: str | None = None, key: str = "",
                 source: str = "compiled", seconds: float = 0.0, timings: dict | None = None, layouts: tuple = ()):
        self.program = program
        self.graph = graph                # as traced
        self.optimized = optimized        # None until needed when the program came from the disk cache
        self.groups = groups
        self.kernels = kernels
        self.llvm_ir = llvm_ir
        self.optimized_ir = optimized_ir
        self.key = key
        self.source = source              # compiled | disk
        self.seconds = seconds
        self.timings = {} if timings is None else timings
        self.layouts = layouts

    def dump(self, what=("graph", "fused", "loop", "llvm")) -> str:
        if self.kernels is None and ("fused" in what or "loop" in what):  # a disk hit: redo the front half
            self.optimized, plan, _, self.kernels = front_end(self.graph, self.layouts)
            self.groups = plan.groups(self.optimized)
        parts = []
        if "graph" in what:
            parts += ["== traced graph", format_graph(self.graph)]
        if "fused" in what:
            parts += ["== optimized graph (# group = kernel index)", format_graph(self.optimized, self.groups)]
        if "loop" in what:
            from .loop.ir import format_kernel
            parts += ["== loop IR"] + [format_kernel(k) for k in self.kernels]
        if "llvm" in what and self.optimized_ir:
            parts += ["== LLVM IR (optimized)", self.optimized_ir]
        if "asm" in what and self.optimized_ir:
            from .codegen.llvm import assembly
            from .target import host
            parts += ["== assembly", assembly(self.optimized_ir, host())]
        return "\n".join(parts)


@functools.cache
def compiler_fingerprint() -> str:
    """Identifies this build of jitensor's own code (file sizes and mtimes): a changed compiler never
    reuses machine code made by another, even without a version bump (editable installs)."""
    root = os.path.dirname(os.path.abspath(__file__))
    items: list = []

    def walk(path, rel):  # os.scandir: one stat per file, ~0.3 ms for the package (os.walk + relpath took ~1.5)
        with os.scandir(path) as it:
            for e in it:
                name = e.name
                if name.endswith(".py"):
                    if e.is_file():
                        st = e.stat()
                        items.append(f"{rel}{name}:{st.st_size}:{st.st_mtime_ns}")
                elif name != "__pycache__" and not name.startswith(".") and e.is_dir():
                    walk(e.path, f"{rel}{name}/")
    walk(root, "")
    items.sort()
    return hashlib.sha256(";".join(items).encode()).hexdigest()[:16]


def cache_components(graph: Graph, layouts, target, name: str) -> dict:
    from . import __version__
    from .target import toolchain
    tools = toolchain()  # from the host record when there is one: no LLVM start-up on a disk hit
    return {
        "function": name,
        "graph": graph.fingerprint(),
        "layouts": [list(s) for s in layouts],
        "jitensor": __version__,
        "compiler": compiler_fingerprint(),
        "llvmlite": tools["llvmlite"],
        "llvm": tools["llvm"],
        "target": target.key(),
    }


def front_end(graph: Graph, layouts, target=None, store=None):
    """Stages 3-6: graph passes, fusion plan, buffer plan, lowering and schedules ->
    (optimized graph, fusion plan, buffer plan, scheduled kernels)."""
    from .target import host
    g, plan, bufs, kernels = lower_graph(graph, layouts)
    return g, plan, bufs, schedule_kernels(kernels, target or host(), store)


def lower_graph(graph: Graph, layouts):
    """Stages 3-5: graph passes, fusion plan, buffer plan, lowering -> (optimized graph, fusion plan,
    buffer plan, kernels before scheduling)."""
    from .graph.passes import optimize
    from .graph.passes.fuse import plan_fusion
    from .graph.passes.split import split_leading_reductions
    from .loop.lower import NotRowLocal, lower, plan_buffers
    g = split_leading_reductions(optimize(graph))
    force: frozenset = frozenset()
    while True:  # a row-local reduction that cannot nest in its consumer gets a buffer instead
        plan = plan_fusion(g, force)
        bufs = plan_buffers(g, plan, layouts)
        try:
            return g, plan, bufs, lower(g, plan, bufs)
        except NotRowLocal as e:
            force = force | {id(n) for n in e.nodes}


def schedule_kernels(kernels, target, store=None) -> list:
    """Stage 6: each lowered kernel gets the steps of its best tuning record for this target, else its
    default steps (loop/schedule.py). A record that no longer applies (the compiler changed) is skipped
    with a warning, never an error."""
    import dataclasses
    from .loop.schedule import default_schedule
    from .loop.workload import workload_key
    store = _records(store)
    out = []
    for k in kernels:
        wk = workload_key(k)
        rec = store.best(wk, _target_key(target)) if store is not None else None
        sk = _apply_record(k, rec) if rec is not None and not rec.default else None
        if sk is None and rec is not None and not rec.default:  # the best record does not apply
            sk = dataclasses.replace(default_schedule(k, target), origin=_not_applied(rec))
        out.append(dataclasses.replace(sk or default_schedule(k, target), workload=wk))
    return out


def _records(store=None):
    """The tuning-record store to consult, or None when there is none (no file: nothing is opened)."""
    if store is not None:
        return None if store.empty() else store
    from .runtime.diskcache import default_cache_dir
    if not os.path.exists(os.path.join(default_cache_dir(), "records.sqlite")):  # (the usual case: no import)
        return None
    from .autotune.records import default_store
    store = default_store()
    return None if store.empty() else store


@functools.lru_cache(maxsize=8)
def _target_key(target) -> str:
    from .autotune.lookup import target_key
    return target_key(target)


def _apply_record(k, rec):
    import dataclasses
    import warnings
    from .errors import RecordWarning
    from .loop.primitives import ScheduleError, apply, from_json
    try:
        sk = apply(k, from_json(rec.steps))
    except ScheduleError as e:
        warnings.warn(f"tuning record {rec.id} does not apply to kernel {k.name} any more ({e}); using the "
                      "default schedule", RecordWarning, stacklevel=2)
        return None
    return dataclasses.replace(sk, origin=_origin(rec))


def _origin(rec) -> str:
    store = _records()
    default = store.default_record(rec.workload, rec.target) if store is not None else None
    if default is not None and default.cost and rec.cost:
        return f"record {rec.id}, {default.cost / rec.cost:.2f}x over default"
    return f"record {rec.id}"


def _not_applied(rec) -> str:
    """The origin of a default schedule taken because the best record, `rec`, does not apply: `schedule_tag`
    makes it "default/<digest of rec's steps>", which `_schedules_current` takes as current while `rec` is
    still the best (else every process would recompile the program, its disk entry never current)."""
    from .loop.workload import steps_digest
    return f"default, record {rec.id} does not apply [{steps_digest(list(rec.steps))}]"


def schedule_tag(k) -> str:
    """What the disk cache compares on a hit: "default", the digest of the record's steps, or "default/<digest>"
    for the default taken in place of a record that does not apply (`_not_applied`)."""
    from .loop.primitives import to_json
    from .loop.workload import steps_digest
    if k.origin in ("", "default"):
        return "default"
    if k.origin.startswith("default, record"):
        return "default/" + k.origin[k.origin.rindex("[") + 1:-1]
    return steps_digest(to_json(k.steps))


def launch_of(k, i: int, target) -> Launch:
    """How the runtime calls scheduled kernel `k`, the i-th of its program."""
    from .loop.schedule import work
    from .loop.templates import default_grain, parallel_extent
    ext = parallel_extent(k, target.vector_bits)
    ext = None if ext is None else int(ext)
    w = int(work(k.body))
    if k.template is not None:
        grain = dict(k.template[1]).get("grain") or default_grain(ext, w)
    else:  # a parallel loop's grain is a schedule step's (Parallel(loop, grain)); 0 leaves it to this rule
        grain = (k.body.grain or default_grain(ext, w, k.body.lanes)) if ext else 1
    return Launch(f"jit_k{i}", ext, w, int(grain), bool(k.template), k.workload, schedule_tag(k))


def manifest_of(bufs, kernels, graph: Graph, target) -> Manifest:
    """What the runtime needs of a buffer plan and its scheduled kernels, as plain data (`runtime/manifest.py`)."""
    arrays: list = []

    def const(arr) -> int:
        arrays.append(arr)
        return len(arrays) - 1

    consts = tuple((slot, const(arr)) for slot, arr in bufs.consts)
    outputs = []
    for slot, node in bufs.outputs:
        shape, dtype = tuple(int(d) for d in node.shape), node.dtype
        if slot is not None:
            outputs.append((slot, None, shape, dtype))
        elif node.op == "input":  # the function returns an input or a constant unchanged
            outputs.append((None, ("in", int(node.attr("index"))), shape, dtype))
        else:
            outputs.append((None, ("const", const(node.attr("value").array)), shape, dtype))
    launches, sites = [], {}
    for i, k in enumerate(kernels):
        launches.append(launch_of(k, i, target))
        sites.update(k.sites or ())
    temps = tuple((slot, tuple(int(d) for d in shape), dtype) for slot, shape, dtype in bufs.temps)
    return Manifest(bufs.n_slots, tuple(bufs.inputs), tuple(outputs), temps, consts, tuple(arrays),
                    tuple(launches), _sites(sites, graph))


def _sites(sites: dict, graph: Graph) -> tuple:
    """(code, source line, node) per runtime check: `node` is the position in the traced graph's toposort of
    the op the line belongs to, so that a disk hit reports the line of its own trace (the key ignores source
    locations: moving code around still hits)."""
    if not sites:
        return ()
    lines = {}
    for i, n in enumerate(graph.toposort()):
        if n.where is not None:
            lines.setdefault(str(n.where), i)
    return tuple((code, where, lines.get(where)) for code, where in sites.items())


def _resolve_sites(m: Manifest, graph: Graph) -> Manifest:
    if not m.sites:
        return m
    nodes = graph.toposort()
    sites = tuple((code, nodes[i].where if i is not None and i < len(nodes) and nodes[i].where is not None
                   else where, i) for code, where, i in m.sites)
    return m.replace(sites=sites)


def load_code(disk, key: str, obj: bytes, library: bytes, target, n_kernels: int):
    """The entry points of a program: from its shared library when it has one (`dlopen`, no LLVM), else (or
    when the library cannot be loaded here) from its object code with LLVM's JIT (`runtime/loader.py`)."""
    from .runtime import sharedlib
    code = None
    if library and sharedlib.usable():
        path = disk.side_file(key, library) if disk is not None and key else None
        if path is not None:
            try:
                code = sharedlib.SharedProgramCode(path, n_kernels, image=library)
            except sharedlib.SharedLibError as e:
                log.info("jitensor: shared library %s not loaded (%s); loading the object code", path, e)
    if code is None:
        from .runtime.loader import LoadedCode
        return LoadedCode(obj, target, n_kernels)
    if os.environ.get("JITENSOR_PERF_MAP", "") not in ("", "0"):  # name the code for `perf report`
        from .codegen import perfmap
        perfmap.register(obj, code)
    return code


def load_stored(key: str, n_inputs: int, outputs, *, where=None) -> Program | None:
    """The program stored in the disk cache under `key` (a key a compilation reported), for a function of
    `n_inputs` inputs whose outputs are [(shape, dtype)]; None when it is not there or does not fit. For
    callers that know which program they want without tracing (the ONNX frontend's model index)."""
    from .runtime.diskcache import default_cache
    from .target import host
    disk = default_cache()
    if not disk.enabled or not key:
        return None
    return _from_disk(disk, key, None, host(), where, expect=(n_inputs, [(tuple(s), d) for s, d in outputs]))


def _from_disk(disk, key, graph: Graph | None, target, where, expect=None) -> Program | None:
    """The program stored under `key`, built from its manifest alone; None on a miss. An entry whose
    manifest does not describe this graph's program (or `expect`: inputs, [(shape, dtype)] of the outputs),
    or whose code does not load, is discarded (the caller recompiles and stores a fresh one); nothing here
    raises into a call."""
    entry = disk.load(key)
    if entry is None:
        return None
    try:
        if "manifest" not in entry.meta:
            raise ManifestError("it has no manifest")
        m, obj, library = unpack(entry.meta["manifest"], entry.payload)
        n_in, want = expect if graph is None else (len(graph.inputs), [(tuple(n.shape), n.dtype) for n in graph.outputs])
        if len(m.inputs) != n_in:
            raise ManifestError(f"its manifest has {len(m.inputs)} inputs, the function {n_in}")
        if [(shape, dtype) for _, _, shape, dtype in m.outputs] != want:
            raise ManifestError("its manifest's outputs are not the function's")
        if not _schedules_current(m, target):
            disk.remove(key)  # compiled with other schedules than the records now choose: recompile, replace it
            return None
        return Program(load_code(disk, key, obj, library, target, len(m.kernels)),
                       m if graph is None else _resolve_sites(m, graph), where=where)
    except Exception as e:  # a bad manifest or object code: drop the entry, recompile, never fail the call
        disk.discard(key, f"it does not load ({e})")
        return None


def _schedules_current(m: Manifest, target) -> bool:
    """Whether each kernel of a stored program has the schedule the tuning records choose today (the entry's
    key covers the graph, the compiler and the target; records can change under it). Reads the store with
    `autotune.lookup` (sqlite3 alone): a first call from disk pays ~3 ms for it when a store exists."""
    from .autotune.lookup import best_steps, store_path
    from .runtime.diskcache import default_cache_dir
    best = best_steps(store_path(default_cache_dir()), [k.workload for k in m.kernels], _target_key(target))
    if best is None:
        return all(k.schedule.split("/")[0] == "default" for k in m.kernels)
    from .loop.workload import steps_digest
    for k in m.kernels:
        rec = best.get(k.workload)
        want = "default" if rec is None or rec[1] else steps_digest(rec[0])
        if k.schedule != want and not (k.schedule.startswith("default/") and  # the default, for a record that
                                       (want == "default" or k.schedule == "default/" + want)):  # did not apply
            return False
    return True


def compile_graph(graph: Graph, layouts, *, name="fn", use_disk=True, where=None, keep_ir=False) -> Compiled:
    """Stages 3-7 for a traced graph, or only a disk-cache load when the entry exists (then the Compiled
    record has no optimized graph or kernels; `dump` recomputes them)."""
    from .target import host, save_host, verify_host
    t0 = time.perf_counter()
    target = host()
    disk, key, comps = None, "", None
    if use_disk:
        from .runtime.diskcache import default_cache, key_hash
        disk = default_cache()
        if disk.enabled:
            comps = cache_components(graph, layouts, target, name)
            key = key_hash(comps)
    if key and not keep_ir:
        prog = _from_disk(disk, key, graph, target, where)
        if prog is not None:
            save_host()  # a no-op unless LLVM described the host (no record yet): then the next process need not
            c = Compiled(prog, graph, None, None, None, key=key, source="disk", seconds=time.perf_counter() - t0,
                         timings={"disk load": time.perf_counter() - t0}, layouts=tuple(layouts))
            _dump(c)
            return c
    from .codegen.llvm import LoadedCode, build_module, compile_object
    from .runtime import sharedlib
    if verify_host():  # the host record this process keyed on disagrees with LLVM: key again, on LLVM's values
        target = host()
        if key:
            comps = cache_components(graph, layouts, target, name)
            key = key_hash(comps)
    g, plan, bufs, kernels = front_end(graph, layouts, target)
    t1 = time.perf_counter()
    module = build_module(kernels, target, name=name)
    ir_text = str(module)
    obj, opt_ir = compile_object(module, target)
    manifest = manifest_of(bufs, kernels, graph, target)
    library = link_library(obj) if key else b""
    if library and sharedlib.mode() == "all":  # load what a disk hit would (tests exercise the library this way)
        code = load_code(disk, key, obj, library, target, len(kernels))
    else:
        code = LoadedCode(obj, target, len(kernels))
    prog = Program(code, manifest, where=where)
    if key:
        meta, payload = pack(manifest, obj, library)
        disk.store(key, payload, {"name": name, "components": comps, "manifest": meta}, side=library)
        save_host()  # so that the next process's disk hits key without starting LLVM
    t2 = time.perf_counter()
    c = Compiled(prog, graph, g, plan.groups(g), kernels, ir_text, opt_ir, key, "compiled", t2 - t0,
                 {"passes+lower": t1 - t0, "llvm": t2 - t1}, tuple(layouts))
    _dump(c)
    return c


def link_library(obj: bytes) -> bytes:
    """The shared library of object code `obj` (`codegen/elf.py`), or b"" where none can be made (not x86-64
    Linux, JITENSOR_SHARED_LIBS=0, an object the linker does not handle): then disk hits load the object code."""
    from .runtime import sharedlib
    if not sharedlib.supported():
        return b""
    from .codegen.elf import LinkError, link
    try:
        return link(obj)
    except LinkError as e:
        log.info("jitensor: no shared library for this program (%s); disk hits will load its object code", e)
        return b""


def _dump(c: Compiled) -> None:
    dump = os.environ.get("JITENSOR_DUMP")
    if dump:
        print(c.dump(tuple(dump.split(","))))
