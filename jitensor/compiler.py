"""The pipeline from a traced graph to a runnable Program, in order:
optimize (graph passes) -> plan fusion -> plan buffers -> lower -> schedule -> LLVM -> machine code.

The disk cache sits in front of all of it: its key is a canonical hash of everything that
determines the machine code (see `cache_components`), and an entry holds the object code plus the
program's manifest (`runtime/manifest.py`), so a new process builds the Program from the entry
alone. The compile-time stages are imported only when something has to be compiled (or dumped).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

from .graph.ir import Graph, format_graph
from .runtime.manifest import Launch, Manifest, ManifestError, pack, unpack
from .runtime.program import Program

log = logging.getLogger("jitensor")


@dataclass
class Compiled:
    program: Program
    graph: Graph                      # as traced
    optimized: Graph | None           # None until needed when the program came from the disk cache
    groups: dict | None
    kernels: list | None
    llvm_ir: str | None = None
    optimized_ir: str | None = None
    key: str = ""
    source: str = "compiled"          # compiled | disk
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    layouts: tuple = ()

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
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def cache_components(graph: Graph, layouts, target, name: str) -> dict:
    import llvmlite
    from . import __version__
    from .runtime.loader import binding
    return {
        "function": name,
        "graph": graph.fingerprint(),
        "layouts": [list(s) for s in layouts],
        "jitensor": __version__,
        "compiler": compiler_fingerprint(),
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(map(str, binding().llvm_version_info)),
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
    from .loop.schedule import default_schedule
    from .loop.workload import workload_key
    store = _records(store)
    out = []
    for k in kernels:
        wk = workload_key(k)
        rec = store.best(wk, _target_key(target)) if store is not None else None
        sk = _apply_record(k, rec) if rec is not None and not rec.default else None
        out.append(dataclasses.replace(sk or default_schedule(k, target), workload=wk))
    return out


def _records(store=None):
    """The tuning-record store to consult, or None when there is none (no file: nothing is opened)."""
    if store is not None:
        return None if store.empty() else store
    from .tune.records import default_store
    store = default_store()
    return None if store.empty() else store


@functools.lru_cache(maxsize=8)
def _target_key(target) -> str:
    from .tune.records import target_key
    return target_key(target)


def _apply_record(k, rec):
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
    default = _records().default_record(rec.workload, rec.target) if _records() is not None else None
    if default is not None and default.cost and rec.cost:
        return f"record {rec.id}, {default.cost / rec.cost:.2f}x over default"
    return f"record {rec.id}"


def schedule_tag(k) -> str:
    """What the disk cache compares on a hit: "default", or the digest of the record's steps."""
    from .loop.primitives import to_json
    from .loop.workload import steps_digest
    return "default" if k.origin in ("", "default") else steps_digest(to_json(k.steps))


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
    return dataclasses.replace(m, sites=sites)


def _from_disk(disk, key, graph: Graph, target, where) -> Program | None:
    """The program stored under `key`, built from its manifest alone; None on a miss. An entry whose
    manifest does not describe this graph's program, or whose code does not load, is discarded (the
    caller recompiles and stores a fresh one); nothing here raises into a call."""
    from .runtime.loader import LoadedCode
    entry = disk.load(key)
    if entry is None:
        return None
    try:
        if "manifest" not in entry.meta:
            raise ManifestError("it has no manifest")
        m, obj = unpack(entry.meta["manifest"], entry.payload)
        if len(m.inputs) != len(graph.inputs):
            raise ManifestError(f"its manifest has {len(m.inputs)} inputs, the function {len(graph.inputs)}")
        want = [(tuple(n.shape), n.dtype) for n in graph.outputs]
        if [(shape, dtype) for _, _, shape, dtype in m.outputs] != want:
            raise ManifestError("its manifest's outputs are not the function's")
        if not _schedules_current(m, target):
            disk.remove(key)  # compiled with other schedules than the records now choose: recompile, replace it
            return None
        return Program(LoadedCode(obj, target, len(m.kernels)), _resolve_sites(m, graph), where=where)
    except Exception as e:  # a bad manifest or object code: drop the entry, recompile, never fail the call
        disk.discard(key, f"it does not load ({e})")
        return None


def _schedules_current(m: Manifest, target) -> bool:
    """Whether each kernel of a stored program has the schedule the tuning records choose today (the entry's
    key covers the graph, the compiler and the target; records can change under it)."""
    store = _records()
    if store is None:
        return all(k.schedule == "default" for k in m.kernels)
    from .loop.workload import steps_digest
    tk = _target_key(target)
    for k in m.kernels:
        rec = store.best(k.workload, tk)
        if k.schedule != ("default" if rec is None or rec.default else steps_digest(list(rec.steps))):
            return False
    return True


def compile_graph(graph: Graph, layouts, *, name="fn", use_disk=True, where=None, keep_ir=False) -> Compiled:
    """Stages 3-7 for a traced graph, or only a disk-cache load when the entry exists (then the Compiled
    record has no optimized graph or kernels; `dump` recomputes them)."""
    from .target import host
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
            c = Compiled(prog, graph, None, None, None, key=key, source="disk", seconds=time.perf_counter() - t0,
                         timings={"disk load": time.perf_counter() - t0}, layouts=tuple(layouts))
            _dump(c)
            return c
    from .codegen.llvm import LoadedCode, build_module, compile_object
    g, plan, bufs, kernels = front_end(graph, layouts, target)
    t1 = time.perf_counter()
    module = build_module(kernels, target, name=name)
    ir_text = str(module)
    obj, opt_ir = compile_object(module, target)
    manifest = manifest_of(bufs, kernels, graph, target)
    prog = Program(LoadedCode(obj, target, len(kernels)), manifest, where=where)
    if key:
        meta, payload = pack(manifest, obj)
        disk.store(key, payload, {"name": name, "components": comps, "manifest": meta})
    t2 = time.perf_counter()
    c = Compiled(prog, graph, g, plan.groups(g), kernels, ir_text, opt_ir, key, "compiled", t2 - t0,
                 {"passes+lower": t1 - t0, "llvm": t2 - t1}, tuple(layouts))
    _dump(c)
    return c


def _dump(c: Compiled) -> None:
    dump = os.environ.get("JITENSOR_DUMP")
    if dump:
        print(c.dump(tuple(dump.split(","))))
