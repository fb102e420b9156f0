"""Knobs of the code-generator templates: every decision a template makes, as schedule data.

Lowering gives a template kernel its *problem* (Kernel.template = (kind, params): shapes, strides, buffers,
the fused epilogue). How the code generator blocks and splits that problem is set by a `TemplateKnobs` step
(loop/primitives.py), so that the default schedule, the tuner and tuning records all name it the same way
and `explain` shows it. The code generator reads the knobs and decides nothing itself.

gemm (codegen/gemm.py: packed B panels, an mr x nr register tile, nr = nv vectors)
  mr     rows of the register tile (mr * nv accumulators, nv vectors of B and one broadcast of A live at once)
  nv     vectors per panel of B
  kc     depth of a packed block of B (a kc x nr panel stays in L1 across a tile's rows)
  nc     panels per packed block (kc x nc*nr elements of B, filling part of L2)
  split  what the kernel's parallel range counts: "rows" (row tiles) or "cols" (column panels: each thread
         packs only its own share of B)
  grain  range units per chunk handed to a thread
gemv (codegen/gemv.py), form "dot" (rows of the matrix against the vectors)
  rows   matrix rows per group (rows * S * accs vector accumulators)
  accs   accumulators per (row, vector) pair (independent FMA chains)
  grain
gemv, form "axpy" (blocks of the output accumulate rows of the matrix)
  block  output vectors per parallel unit
  chunk  units per pass over the matrix rows (the chunk's output stays in L2)
  ku     k steps per load and store of the output chunk
  grain
"""
from __future__ import annotations

import numpy as np

KNOBS = {
    "gemm": {"mr": range(1, 9), "nv": range(1, 5), "kc": range(1, 1 << 16), "nc": range(1, 1 << 16),
             "split": ("rows", "cols"), "grain": range(1, 1 << 30)},
    "gemv:dot": {"rows": range(1, 9), "accs": range(1, 5), "grain": range(1, 1 << 30)},
    "gemv:axpy": {"block": range(1, 1 << 16), "chunk": range(1, 1 << 16), "ku": range(1, 9),
                  "grain": range(1, 1 << 30)},
}


def kind(template) -> str:
    """The knob table a template uses: "gemm", "gemv:dot" or "gemv:axpy"."""
    name, params = template
    return f"gemv:{dict(params)['form']}" if name == "gemv" else name


def check(template, knobs: dict) -> str | None:
    """Why `knobs` cannot be set on `template` (unknown, missing or out of range), or None."""
    table = KNOBS[kind(template)]
    for n, v in knobs.items():
        if n not in table:
            return f"{kind(template)} has no knob {n!r} (knobs: {', '.join(table)})"
        ok = table[n]
        if isinstance(ok, range) and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            return f"knob {n} must be an int, got {v!r}"
        if v not in ok:
            lo_hi = f"{ok.start}..{ok.stop - 1}" if isinstance(ok, range) else ", ".join(map(repr, ok))
            return f"knob {n}={v!r} is out of range ({lo_hi})"
    return None


def lanes(params: dict, vector_bits: int) -> int:
    return max(1, (vector_bits // 8) // np.dtype(params["dtype"]).itemsize)


def units(template, vector_bits: int) -> int:
    """Size of the template's parallel range (over all batches) with its knobs set."""
    name, params = template
    p = dict(params)
    nb = int(np.prod([bt[0] for bt in p["batch"]], dtype=np.int64))
    if name == "gemm":
        if p["split"] == "rows":
            return nb * -(-p["M"] // p["mr"])
        return nb * -(-p["N"] // (p["nv"] * lanes(p, vector_bits)))
    per = p["rows"] if p["form"] == "dot" else p["block"] * lanes(p, vector_bits)
    return nb * -(-p["V"] // per)


def default_knobs(template, target, work: int) -> dict:
    """The knobs the default schedule sets: the blocking measured best on the machines we had (comments)."""
    name, params = template
    p = dict(params)
    item = np.dtype(p["dtype"]).itemsize
    W = lanes(p, target.vector_bits)
    if name == "gemm":
        nv = 2
        NR = nv * W
        # a KC x NR panel of B stays in L1 across a tile's rows; the packed KC x NC block fills half of L2
        kc = max(64, min(512, target.l1d // (NR * item) // 8 * 8))
        nc = max(1, min(-(-p["N"] // NR), (target.l2 // 2 // (kc * item)) // NR))
        # threads take row tiles: "cols" (each packs only its share of B) measured slower on 256x512x512 and
        # no faster on square shapes (A's re-reads cost more than B's packing)
        knobs = {"mr": 6, "nv": nv, "kc": kc, "nc": nc, "split": "rows"}
    elif p["form"] == "dot":
        accs = 2 if p["S"] == 1 else 1
        knobs = {"rows": max(1, min(4, 8 // (p["S"] * accs))), "accs": accs}  # rows*S*accs <= 8 accumulators
    else:
        block = max(1, (2048 // item // p["S"]) // W)  # S rows of the output block in 2 KiB
        knobs = {"block": block, "chunk": max(1, (target.l2 // 4 // (p["S"] * item)) // (block * W)), "ku": 4}
    ext = units((name, tuple(params) + tuple(knobs.items())), target.vector_bits)
    knobs["grain"] = default_grain(ext, work)
    return knobs


def default_grain(extent: int, work: int, lanes: int = 1) -> int:
    """Iterations of a parallel loop per chunk handed to a thread: one, unless iterations are tiny (then
    1/64 of the range, so a hand-off carries enough work), rounded to whole vectors."""
    grain = max(1, extent // 64) if extent and work // max(extent, 1) < 64 else 1
    return -(-grain // lanes) * lanes


def with_knobs(template, knobs: dict):
    """The template with `knobs` set (replacing earlier values)."""
    name, params = template
    kept = tuple((n, v) for n, v in params if n not in knobs)
    return name, kept + tuple(knobs.items())


def knobs_of(template) -> dict:
    table = KNOBS[kind(template)]
    return {n: v for n, v in template[1] if n in table}


def parallel_extent(k, vector_bits: int) -> int | None:
    """The range the runtime splits across threads: a template's units, or the extent of a kernel's outermost
    loop when it is parallel; None when the kernel runs whole."""
    if k.template is not None:
        return units(k.template, vector_bits)
    s = k.body
    return s.extent if getattr(s, "kind", None) == "parallel" else None
