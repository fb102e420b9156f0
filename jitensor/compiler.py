"""The pipeline from a traced graph to a runnable Program, in order:
optimize (graph passes) -> plan fusion -> plan buffers -> lower -> schedule -> LLVM -> machine code.

The disk cache sits in front of the LLVM step: its key is a canonical hash of everything that
determines the machine code (see `cache_components`), so a new process reuses object code.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

from .graph.ir import Graph, format_graph
from .graph.passes import optimize
from .graph.passes.fuse import plan_fusion
from .graph.passes.split import split_leading_reductions
from .loop.ir import format_kernel
from .loop.lower import NotRowLocal, lower, plan_buffers
from .loop.schedule import default_schedule
from .runtime.program import Program

log = logging.getLogger("jitensor")
SCHEDULE_VERSION = "default-4"


@dataclass
class Compiled:
    program: Program
    graph: Graph                      # as traced
    optimized: Graph
    groups: dict
    kernels: list
    llvm_ir: str | None = None
    optimized_ir: str | None = None
    key: str = ""
    source: str = "compiled"          # compiled | disk
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    def dump(self, what=("graph", "fused", "loop", "llvm")) -> str:
        parts = []
        if "graph" in what:
            parts += ["== traced graph", format_graph(self.graph)]
        if "fused" in what:
            parts += ["== optimized graph (# group = kernel index)", format_graph(self.optimized, self.groups)]
        if "loop" in what:
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
    from .codegen.llvm import binding
    return {
        "function": name,
        "graph": graph.fingerprint(),
        "layouts": [list(s) for s in layouts],
        "schedule": SCHEDULE_VERSION,
        "jitensor": __version__,
        "compiler": compiler_fingerprint(),
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(map(str, binding().llvm_version_info)),
        "target": target.key(),
    }


def compile_graph(graph: Graph, layouts, *, name="fn", use_disk=True, where=None, keep_ir=False) -> Compiled:
    from .codegen.llvm import LoadedCode, build_module, compile_object
    from .target import host
    t0 = time.perf_counter()
    target = host()
    g = split_leading_reductions(optimize(graph))
    force: frozenset = frozenset()
    while True:  # a row-local reduction that cannot nest in its consumer gets a buffer instead
        plan = plan_fusion(g, force)
        bufs = plan_buffers(g, plan, layouts)
        try:
            kernels = [default_schedule(k, target) for k in lower(g, plan, bufs)]
            break
        except NotRowLocal as e:
            force = force | {id(n) for n in e.nodes}
    t1 = time.perf_counter()
    disk = None
    key = ""
    comps = None
    if use_disk:
        from .runtime.diskcache import default_cache, key_hash
        disk = default_cache()
        if disk.enabled:
            comps = cache_components(graph, layouts, target, name)
            key = key_hash(comps)
    code, source, ir_text, opt_ir = None, "compiled", None, None
    if key and not keep_ir:
        entry = disk.load(key)
        if entry is not None:
            try:
                code = LoadedCode(entry.payload, target, len(kernels))
                source = "disk"
            except Exception as e:  # an entry that verifies but does not load: drop it, recompile, never fail
                disk.discard(key, f"its object code does not load ({e})")
    if code is None:
        module = build_module(kernels, target, name=name)
        ir_text = str(module)
        obj, opt_ir = compile_object(module, target)
        code = LoadedCode(obj, target, len(kernels))
        if key:
            disk.store(key, obj, {"name": name, "components": comps})
    t2 = time.perf_counter()
    prog = Program(code, bufs, kernels, where=where)
    c = Compiled(prog, graph, g, plan.groups(g), kernels, ir_text, opt_ir, key, source, t2 - t0,
                 {"passes+lower": t1 - t0, "llvm" if source == "compiled" else "disk load": t2 - t1})
    dump = os.environ.get("JITENSOR_DUMP")
    if dump:
        print(c.dump(tuple(dump.split(","))))
    return c
