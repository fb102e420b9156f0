"""Profile the jitted code of one bench_cpu.py workload with perf: where the time goes, down to loops and instructions.

    python benchmarks/profile.py softmax [--calls 200] [--top 25]

CASE is gelu, softmax, layernorm, sgemm (1024^3) or mbr, with bench_cpu.py's functions and input sizes.
The script re-runs itself under `perf record -e cpu-clock` with JITENSOR_PERF_MAP=1. That child compiles
and warms up the workload, times `--calls` calls with sampling off, then samples `--calls` more calls (perf's
events are enabled around that loop only, so imports, input creation and compiling are not in the profile),
and saves every object jitensor loaded with its load address. The parent then prints:
  - the time per call;
  - the share of samples in jitted code, in the OS kernel, in Python/numpy and in other libraries, and the
    hottest symbols outside jitted code;
  - per jitted function and per loop, the share of the jitted samples: a loop is the range from a backward
    jump's target to the jump; `self` counts the samples for which it is the innermost loop;
  - the hottest instructions, disassembled (`objdump`).
cpu-clock samples are timer interrupts: a sample names the instruction the interrupt arrived at, which is
often just after the slow one. Exit status 2 when perf (or objdump) is missing or cannot record.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("gelu", "softmax", "layernorm", "sgemm", "mbr")
FREQ = 5000  # samples per second and thread asked of perf (it may sample less often)
MIN_SHARE = 0.005  # loops with less of the jitted samples (and no hotter inner loop) are not listed


def fail(msg: str, status: int = 2):
    print(f"profile.py: {msg}", file=sys.stderr)
    sys.exit(status)


# ============================================================================ child: run the workload under perf

def child(key: str, calls: int, out: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_cpu
    import jitensor
    from jitensor.codegen import perfmap

    case = bench_cpu.make_cases(quick=False, only={key})[0]  # sgemm: the first size (1024^3)
    run = functools.partial(jitensor.jit(case.fn), *case.args)
    for _ in range(3):  # compiles, then warms caches and the thread pool
        run()
    t0 = time.perf_counter()
    for _ in range(calls):
        run()
    per_call = (time.perf_counter() - t0) / calls
    with open(out / "ctl", "w") as ctl, open(out / "ack") as ack:
        def perf_command(cmd):
            ctl.write(cmd + "\n")
            ctl.flush()
            ack.readline()  # perf acknowledges once the events are switched

        perf_command("enable")
        for _ in range(calls):
            run()
        perf_command("disable")
    objects = []
    for i, (base, obj, syms) in enumerate(perfmap.registered()):
        (out / f"obj{i}.o").write_bytes(obj)
        objects.append({"base": base, "file": f"obj{i}.o", "symbols": [list(s) for s in syms]})
    (out / "meta.json").write_text(json.dumps({"name": case.name, "pid": os.getpid(), "per_call": per_call,
                                               "calls": calls, "objects": objects}))


# ============================================================================ parent: record, then report

def pct(n: int, of: int) -> str:
    return f"{100 * n / of:6.1f}%"


def record(case: str, calls: int, tmp: Path) -> dict:
    perf = shutil.which("perf")
    if perf is None:
        fail("perf not found; install it (linux-tools / linux-perf) to profile jitted kernels")
    if shutil.which("objdump") is None:
        fail("objdump not found; install binutils")
    os.mkfifo(tmp / "ctl")
    os.mkfifo(tmp / "ack")
    cmd = [perf, "record", "-e", "cpu-clock", "-F", str(FREQ), "-o", str(tmp / "perf.data"),
           "-D", "-1", "--control", f"fifo:{tmp / 'ctl'},{tmp / 'ack'}",  # events off until the child enables them
           "--", sys.executable, __file__, case, "--calls", str(calls), "--child", str(tmp)]
    r = subprocess.run(cmd, env=dict(os.environ, JITENSOR_PERF_MAP="1"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if "Traceback" in r.stderr:
        fail(f"the profiled workload failed:\n{r.stderr}", status=1)
    if r.returncode != 0 or not (tmp / "meta.json").exists():
        fail(f"`perf record` failed (exit status {r.returncode}); profiling may need a lower "
             f"/proc/sys/kernel/perf_event_paranoid or CAP_PERFMON:\n{r.stderr.strip()}")
    # pass on the child's warnings, not perf's progress lines
    sys.stderr.writelines(line for line in r.stderr.splitlines(True)
                          if not re.match(r"\[ perf record:|Events (en|dis)abled", line))
    return json.loads((tmp / "meta.json").read_text())


def samples(data: Path) -> list[tuple[int, str, str]]:
    """(address, symbol, dso) of every sample."""
    out = subprocess.run([shutil.which("perf"), "script", "-i", str(data), "-F", "ip,sym,dso"], capture_output=True,
                         text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+)\s*(.*?)\s*\(([^()]*)\)\s*$", line)
        if m:
            rows.append((int(m.group(1), 16), m.group(2) or "[unknown]", m.group(3)))
    return rows


def category(dso: str) -> str:
    if dso.startswith("[kernel"):
        return "OS kernel"
    if "python" in os.path.basename(dso) or "numpy" in dso:  # numpy's own libraries (OpenBLAS too) included
        return "Python / numpy"
    return "other libraries"


class Code:
    """One loaded object: its functions, loops and instructions (offsets within .text)."""

    def __init__(self, base: int, path: Path, symbols: list):
        self.base = base
        self.funcs = sorted((off, off + size, name) for name, off, size in symbols)
        self.insns = {}  # offset -> (mnemonic, operands)
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True,
                             text=True).stdout
        for m in re.finditer(r"^\s*([0-9a-f]+):\s+(\S+)[ \t]*([^#\n]*)", asm, re.M):
            self.insns[int(m.group(1), 16)] = (m.group(2), m.group(3).strip())
        self.offsets = sorted(self.insns)
        self.loops = self._loops()
        self.loop_of = {}  # instruction offset -> its innermost loop (the smallest range holding it)
        for loop in sorted(self.loops, key=lambda lp: lp[0] - lp[1]):  # largest first, smaller ones overwrite
            self.loop_of.update((off, loop) for off in self.offsets[bisect.bisect_left(self.offsets, loop[0]):
                                                                      bisect.bisect_left(self.offsets, loop[1])])

    def func(self, off: int):
        i = bisect.bisect_right(self.funcs, (off, float("inf"))) - 1
        return self.funcs[i] if i >= 0 and off < self.funcs[i][1] else None

    def _loops(self) -> list[tuple[int, int]]:
        ends = {}  # loop head -> end (exclusive) of its furthest backward jump
        for i, off in enumerate(self.offsets):
            mnem, ops = self.insns[off]
            m = re.match(r"([0-9a-f]+) <", ops)
            if mnem.startswith("j") and m and int(m.group(1), 16) <= off:
                head = int(m.group(1), 16)
                end = self.offsets[i + 1] if i + 1 < len(self.offsets) else off + 1
                if self.func(head) is not None and self.func(head) == self.func(off):
                    ends[head] = max(ends.get(head, 0), end)
        return sorted(ends.items(), key=lambda loop: (loop[0], -loop[1]))

    def ops(self, loop) -> str:
        """The vector/mask mnemonics of a loop's own body (inner loops excluded), most frequent first: what
        the loop computes at a glance (vcmpleps: a max, vfmadd/vscalef: an exp...)."""
        count = collections.Counter(
            mnem for off, (mnem, _) in self.insns.items()
            if self.loop_of.get(off) == loop and mnem[0] in "vk" and not mnem.startswith(("vmov", "vzeroupper")))
        return ", ".join(f"{m} x{n}" for m, n in count.most_common(4))


def print_loops(code: Code, hits: dict, jit: int):
    """Each sampled function with its loops, nested by indentation. Loops with less than MIN_SHARE of the
    samples for themselves, and no such loop inside, are only counted: cold paths (edge cases, masked tails)
    can hold dozens of backward jumps."""
    inner = collections.Counter()
    for off, n in hits.items():
        inner[code.loop_of.get(off)] += n
    for lo, hi, name in code.funcs:
        incl = sum(n for off, n in hits.items() if lo <= off < hi)
        if not incl:
            continue
        flat = sum(n for off, n in hits.items() if lo <= off < hi and off not in code.loop_of)
        print(f"  {pct(incl, jit)}  {pct(flat, jit)}  {name} [{lo:#x}, {hi:#x})")
        loops = [lp for lp in code.loops if lo <= lp[0] < hi]
        hot = [lp for lp in loops if inner[lp] >= MIN_SHARE * jit]
        shown = [lp for lp in loops if any(lp[0] <= h[0] and h[1] <= lp[1] for h in hot)]
        for loop in shown:
            incl = sum(n for off, n in hits.items() if loop[0] <= off < loop[1])
            depth = sum(1 for lp in shown if lp != loop and lp[0] <= loop[0] and loop[1] <= lp[1])
            print(f"  {pct(incl, jit)}  {pct(inner[loop], jit)}  {'  ' * depth}  loop [{loop[0]:#x}, {loop[1]:#x})  "
                  f"{code.ops(loop)}")
        if len(shown) < len(loops):
            print(f"  ({len(loops) - len(shown)} more loops in {name}, each under {MIN_SHARE:.1%} of the samples)")


def report(meta: dict, rows: list, tmp: Path, top: int):
    codes = [Code(o["base"], tmp / o["file"], o["symbols"]) for o in meta["objects"]]
    ranges = sorted((c.base + lo, c.base + hi, c) for c in codes for lo, hi, _ in c.funcs)
    hits = collections.Counter()  # (code, offset) -> samples
    cats, others = collections.Counter(), collections.Counter()
    for ip, sym, dso in rows:
        i = bisect.bisect_right(ranges, (ip, float("inf"))) - 1
        if i >= 0 and ip < ranges[i][1]:
            code = ranges[i][2]
            hits[code, ip - code.base] += 1
            cats["jitted code"] += 1
        else:
            cats[category(dso)] += 1
            others[sym, os.path.basename(dso)] += 1
    total, jit = len(rows), cats["jitted code"]
    print(f"{meta['name']}: {meta['per_call'] * 1e3:.3f} ms per call ({meta['calls']} calls, not sampled)")
    print(f"{total} samples over {meta['calls']} more calls")
    if not total:
        return
    print("\nwhere the samples are")
    for name in ("jitted code", "OS kernel", "Python / numpy", "other libraries"):
        print(f"  {pct(cats[name], total)}  {name}")
    print("\nhottest symbols outside jitted code")
    for (sym, dso), n in others.most_common(8):
        print(f"  {pct(n, total)}  {sym}  ({dso})")
    if not jit:
        return
    print("\njitted code by function and loop (% of the jitted samples; self: not in an inner loop)")
    print("     incl     self")
    for code in codes:
        print_loops(code, {off: n for (c, off), n in hits.items() if c is code}, jit)
    print(f"\nhottest {top} instructions (% of the jitted samples)")
    for (code, off), n in hits.most_common(top):
        lo, _, name = code.func(off)
        mnem, ops = code.insns.get(off, ("?", ""))
        loop = code.loop_of.get(off)
        where = f"loop {loop[0]:#x}" if loop else ""
        print(f"  {pct(n, jit)}  {name}+{off - lo:#x}  {off:5x}:  {mnem:<12} {ops:<44} {where}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", choices=CASES)
    ap.add_argument("--calls", type=int, default=200, help="calls timed, then as many sampled (default 200)")
    ap.add_argument("--top", type=int, default=25, help="hottest instructions shown (default 25)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: the process perf records
    args = ap.parse_args()
    if args.child:
        return child(args.case, args.calls, args.child)
    with tempfile.TemporaryDirectory(prefix="jitensor-profile-") as tmp:
        tmp = Path(tmp)
        meta = record(args.case, args.calls, tmp)
        try:
            report(meta, samples(tmp / "perf.data"), tmp, args.top)
        finally:  # the child's map file is only needed by `perf script` above
            Path(f"/tmp/perf-{meta['pid']}.map").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
