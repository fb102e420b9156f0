"""Building and timing one kernel; measuring candidate schedules in a worker process.

One kernel is built alone (`build`: a one-kernel module whose pointer table holds just its buffers) and
run by the same runtime as a whole program (`Program`: the thread pool, the grain, the error word), so a
candidate is timed as the program would run it. Its inputs are the real ones: `capture` runs the program
on the user's example arguments and copies each kernel's buffers as the program leaves them for it
(indices stay in bounds, data-dependent branches go the usual way).

Candidates run in a worker process (`Measurer`, `python -m jitensor.autotune.measure`): a step list that
crashes LLVM or the kernel, or hangs, costs one trial and a worker restart, never the user's process.
The worker checks each candidate's buffers against the default schedule's on the same inputs (exactly for
integers and bools, within a reassociation tolerance for floats, NaN where NaN): a wrong candidate is a
failed trial ("wrong result: ..."), never a best record.

Timing: a warm-up run, then `repeats` samples, each the fastest of as many runs as fill `sample_seconds`, on
buffers that stay at one address for all candidates of a task, each sample paired with a run of the default
schedule's program just before it: a candidate's time is its ratio to the default's times the default's time
measured when the task was loaded. The caller takes the median. (On this 2-core virtual machine the same
program's time drifted by 10-50% over seconds; paired ratios moved by a few %.) Measured on this 2-core machine: a worker starts in
~0.4 s; an elementwise candidate builds in ~20-40 ms and a GEMM one in ~60-120 ms.
"""
from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import pickle
import select
import struct
import subprocess
import sys
import time

import numpy as np

# float tolerance of the correctness check: max |candidate - default| over max |default| (schedules may
# reassociate reductions: vector lanes, accumulator copies, blocking of a matmul's k)
TOLERANCE = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


def standalone(k):
    """`k` with its buffers in slots 1..n (the pointer table of a one-kernel program)."""
    return dataclasses.replace(k, buffers=tuple(dataclasses.replace(b, slot=i + 1) for i, b in enumerate(k.buffers)))


def build(k, target):
    """A Program running the scheduled kernel `k` (from `standalone`) over its buffers, passed in order."""
    from ..codegen.llvm import build_module, compile_object
    from ..compiler import launch_of
    from ..runtime.loader import LoadedCode
    from ..runtime.manifest import Manifest
    from ..runtime.program import Program
    obj, _ = compile_object(build_module([k], target, name="tune"), target)
    m = Manifest(len(k.buffers) + 1, tuple(range(1, len(k.buffers) + 1)), (), (), (), (), (launch_of(k, 0, target),),
                 ())
    return Program(LoadedCode(obj, target, 1), m)


def capture(program, arrays, kernels) -> list[dict]:
    """Per kernel of `program` (scheduled `kernels`, in order): {buffer name: a copy of its elements} as the
    program leaves them for that kernel, on a run with `arrays`."""
    out = []

    def before(i, address):
        k = kernels[i]
        out.append({b.name: _copy_at(address(b.slot), b.size, b.dtype) for b in k.buffers})
    program.run_stepwise(arrays, before)
    return out


def _copy_at(addr: int, size: int, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if size == 0:
        return np.empty(0, dt)
    raw = (ctypes.c_char * (size * dt.itemsize)).from_address(addr)
    return np.frombuffer(raw, dt, size).copy()


def run_once(prog, k, buffers: dict) -> dict:
    """Fresh copies of `buffers` after one run of `prog` (the kernel `k` built by `build`)."""
    arrays = {n: a.copy() for n, a in buffers.items()}
    prog.run([arrays[b.name] for b in k.buffers])
    return arrays


def time_program(prog, k, buffers, repeats: int = 5, sample_seconds: float = 0.01, reference=None) -> list[float]:
    """Seconds per run of `prog`: `repeats` samples, each the fastest of as many runs as fill sample_seconds.
    `buffers` is {name: array} or, to time every candidate of a task on the same memory, the list of arrays
    in the kernel's buffer order (fresh copies per candidate put the buffers at other addresses, and cache
    set conflicts then move a kernel's time by up to 30%).

    With `reference=(program, seconds)`, each sample also times the reference program right before the
    candidate, and the candidate's time is reported as its ratio to the reference's times `seconds`: on a
    shared machine a kernel's speed drifts by 10-50% over seconds (other tenants, clocks), and a ratio of
    two runs a few milliseconds apart cancels the drift."""
    arrays = buffers if isinstance(buffers, list) else [buffers[b.name].copy() for b in k.buffers]
    run = prog.run
    clock = time.perf_counter
    t0 = clock()
    run(arrays)
    first = max(clock() - t0, 1e-7)
    n = max(1, min(10000, int(sample_seconds / first)))
    out = []
    for _ in range(repeats):
        t = _fastest(run, arrays, n)
        if reference is not None:
            ref, seconds = reference
            t = t / _fastest(ref.run, arrays, n) * seconds
        out.append(t)
    return out


def _fastest(run, arrays, n: int) -> float:
    """The fastest of n runs: another process's time slice only adds to a run."""
    clock = time.perf_counter
    best = math.inf
    for _ in range(n):
        t0 = clock()
        run(arrays)
        best = min(best, clock() - t0)
    return best


def compare(got: dict, want: dict) -> str | None:
    """Why candidate buffers differ from the default's, or None when they agree."""
    for name, w in want.items():
        g = got[name]
        if w.dtype.kind != "f":
            if not np.array_equal(g, w):
                bad = int(np.flatnonzero(g != w)[0])
                return f"buffer {name}[{bad}] = {g[bad]!r}, the default schedule gives {w[bad]!r}"
            continue
        nan_w, nan_g = np.isnan(w), np.isnan(g)
        if not np.array_equal(nan_w, nan_g):
            bad = int(np.flatnonzero(nan_w != nan_g)[0])
            return f"buffer {name}[{bad}] = {g[bad]!r}, the default schedule gives {w[bad]!r}"
        fin = ~nan_w
        wf, gf = w[fin], g[fin]
        inf = np.isinf(wf)
        if not np.array_equal(wf[inf], gf[inf]):
            return f"buffer {name}: infinities differ from the default schedule's"
        wf, gf = wf[~inf].astype(np.float64), gf[~inf].astype(np.float64)
        if wf.size:
            scale = max(float(np.max(np.abs(wf))), np.finfo(w.dtype).tiny)
            err = float(np.max(np.abs(gf - wf))) / scale
            if not err <= TOLERANCE[w.dtype]:
                return f"buffer {name}: max error {err:.2e} of its largest value against the default schedule"
    return None


# ---------------------------------------------------------------------------------------------- the worker


@dataclasses.dataclass
class Task:
    """One kernel to tune: unscheduled (`standalone` slots), its captured buffers, the default steps."""
    kernel: object
    buffers: dict
    default_steps: list
    target: object


class Measurer:
    """A worker process measuring step lists for tasks; restarted after a crash or a timeout."""

    def __init__(self, timeout: float = 20.0, repeats: int = 5, sample_seconds: float = 0.01, command=None):
        self.timeout, self.repeats, self.sample_seconds = timeout, repeats, sample_seconds
        self.command = command or [sys.executable, "-m", "jitensor.autotune.measure"]  # (tests: a faulty worker)
        self.proc = None
        self.tasks: dict = {}
        self.sent: set = set()

    def add(self, tid, task: Task) -> None:
        self.tasks[tid] = task

    def measure(self, tid, steps) -> tuple[list[float] | None, str | None]:
        """(costs, None) or (None, why the trial failed)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            if tid not in self.sent:
                reply = self._call(("task", tid, self.tasks[tid]), self.timeout * 3)
                if reply[0] != "ok":
                    return None, f"default schedule: {reply[1]}"
                self.sent.add(tid)
            reply = self._call(("run", tid, steps, self.repeats, self.sample_seconds), self.timeout)
        except _Lost as e:
            self.close()
            return None, str(e)
        return (reply[1], None) if reply[0] == "ok" else (None, reply[1])

    def _start(self):
        env = dict(os.environ, JITENSOR_TUNE="")  # the worker never tunes itself
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.sent = set()

    def _call(self, msg, timeout: float):
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _Lost(self._why("crash")) from None
        head = self._read(8, timeout)
        return pickle.loads(self._read(struct.unpack("<Q", head)[0], timeout))

    def _read(self, n: int, timeout: float) -> bytes:
        out = b""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _Lost(f"timeout: no result within {timeout:.0f} s")
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise _Lost(self._why("crash"))
            out += chunk
        return out

    def _why(self, what: str) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        return f"{what}: the worker exited with status {code}"

    def close(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:
                pass
            self.proc = None
            self.sent = set()

    def __del__(self):
        self.close()


class _Lost(Exception):
    pass


def _serve(inp, out):
    """The worker's loop: ("task", id, Task) -> default run kept as the reference; ("run", id, steps, repeats,
    sample_seconds) -> ("ok", costs) | ("error", why)."""
    from ..errors import JitensorError
    from ..loop.primitives import ScheduleError, apply, from_json
    from ..runtime.threads import pool
    # the thread pool, built now: a process's first parallel runs go on one thread while it is built in the
    # background, and the first candidate measured (the default) would look up to n_threads times slower
    pool()
    tasks: dict = {}

    def reply(msg):
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(struct.pack("<Q", len(data)) + data)
        out.flush()
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        msg = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
        try:
            if msg[0] == "task":
                _, tid, task = msg
                k = apply(task.kernel, from_json(task.default_steps))
                dprog = build(k, task.target)
                want = run_once(dprog, k, task.buffers)
                timing = [task.buffers[b.name].copy() for b in task.kernel.buffers]  # one place for all candidates
                base = sorted(time_program(dprog, k, timing, 9, 0.01))[4]
                tasks[tid] = (task, want, timing, (dprog, base))
                reply(("ok",))
            else:
                _, tid, steps, repeats, sample = msg
                task, want, timing, reference = tasks[tid]
                try:
                    k = apply(task.kernel, from_json(steps))
                except ScheduleError as e:
                    reply(("error", f"illegal: {e}"))
                    continue
                prog = build(k, task.target)
                why = compare(run_once(prog, k, task.buffers), want)
                if why is not None:
                    reply(("error", f"wrong result: {why}"))
                    continue
                reply(("ok", time_program(prog, k, timing, repeats, sample, reference)))
        except JitensorError as e:
            reply(("error", f"crash: {type(e).__name__}: {e}"))
        except Exception as e:  # a bug in a candidate's build is a failed trial, reported with its cause
            reply(("error", f"crash: {type(e).__name__}: {e}"))


def main():
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the compiler prints goes to stderr, never into the reply stream
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
