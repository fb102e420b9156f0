"""``jitensor compile | tune | run``: ONNX models compiled ahead of time into an artifact, tuned, and run.

    jitensor compile --target llvm --output resnet50.tar resnet50.onnx
    jitensor tune    --target llvm --trials 200 --output resnet50-records.json resnet50.onnx
    jitensor compile --target llvm --tuning-records resnet50-records.json --output resnet50.tar resnet50.onnx
    jitensor run     --device cpu --inputs input.npz --output predictions.npz --print-time resnet50.tar

Registered in `jitensor/cli.py`'s SUBCOMMANDS. Exit status: 0 on success, 1 on a jitensor error (one line on
stderr, "jitensor: error: ...", or the traceback with --verbose), 2 for usage errors (argparse). The
artifact's format is described in `artifact.py`. Heavy modules are imported inside the run functions.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
import warnings


class _Fail(Exception):
    """A one-line error for the user that is not a JitensorError (a file that cannot be read or written)."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", "-v", action="store_true", help="on an error, print the traceback")


def _shapes_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shapes", metavar="NAME:DIMS,...",
                   help='input shapes, e.g. "data:1x3x224x224,mask:1x10": fill the model\'s symbolic dimensions '
                        "(required for those) or restate its static ones")


def _target_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="llvm", metavar="TARGET",
                   help="code generator: 'llvm' (this machine's CPU; 'llvm -mcpu=native' is the same); others are "
                        "not supported yet")


def _one_line(e: BaseException) -> str:
    from ..errors import JitensorError
    msg = e.msg if isinstance(e, JitensorError) else str(e)
    lines = [ln.strip() for ln in str(msg).strip().splitlines() if ln.strip()]
    return " ".join(lines) if len(lines) <= 3 else lines[0]


def _guard(run):
    """Run a subcommand: its warnings as one line each, a jitensor error as one line and status 1."""
    def wrapped(args) -> int:
        from ..errors import JitensorError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rc = run(args)
            except (JitensorError, _Fail) as e:
                _flush_warnings(caught)
                if args.verbose:
                    traceback.print_exc()
                print(f"jitensor: error: {_one_line(e)}", file=sys.stderr)
                return 1
        _flush_warnings(caught)
        return rc
    return wrapped


def _flush_warnings(caught) -> None:
    from ..errors import CacheWarning, RecordWarning, TuningWarning
    for w in caught:
        if issubclass(w.category, (CacheWarning, RecordWarning, TuningWarning, UserWarning)):
            print(f"jitensor: warning: {str(w.message).removeprefix('jitensor: ')}", file=sys.stderr)
    caught.clear()


def _human_bytes(n: float) -> str:
    from ..cli import _human_bytes as hb
    return hb(n)


def _function(model_path: str):
    from . import compile as onnx_compile
    return onnx_compile(model_path)


def _check_device(device: str) -> None:
    if device.strip().lower() != "cpu":
        from ..errors import OnnxError
        raise OnnxError(f"device '{device}' is not supported: only cpu for now")


# ----------------------------------------------------------------------------- jitensor compile


def compile_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="the ONNX model (.onnx)")
    p.add_argument("--output", "-o", required=True, metavar="ARTIFACT",
                   help="the compiled model artifact to write (a tar file)")
    _target_argument(p)
    p.add_argument("--tuning-records", metavar="FILE",
                   help="tuning records (JSON lines, as `jitensor tune` or `jitensor records export` write them) "
                        "to schedule the kernels with; without it, the records in the user's store apply")
    _shapes_argument(p)
    _common(p)


@_guard
def compile_run(args) -> int:
    import numpy as np

    from . import artifact
    artifact.parse_target(args.target)
    shapes = artifact.parse_shapes(args.input_shapes)
    t0 = time.perf_counter()
    fn = _function(args.model)
    specs = artifact.input_specs(fn, shapes)
    feeds = {n: np.zeros(s, dt) for n, dt, s in specs}  # (tracing needs shapes and dtypes, not values)
    with tempfile.TemporaryDirectory(prefix="jitensor-records-") as tmp:
        store = None
        if args.tuning_records:
            store = _import_records(args.tuning_records, tmp)
        try:
            m = artifact.compile_model(fn, feeds, records=store, target=args.target)
        finally:
            if store is not None:
                store.close()
    m = artifact.save(m, None, args.output)
    seconds = time.perf_counter() - t0
    kernels = m.metadata["kernels"]
    tuned = sum(1 for k in kernels if k["schedule"].startswith("record"))
    size = os.path.getsize(args.output)
    print(f"compiled {os.path.basename(args.model)} -> {args.output}: {len(kernels)} kernel"
          f"{'' if len(kernels) == 1 else 's'}" + (f" ({tuned} from tuning records)" if args.tuning_records else "")
          + f", {seconds:.2f} s, {_human_bytes(size)}")
    return 0


def _import_records(path: str, tmp: str):
    from ..autotune.records import RecordStore
    store = RecordStore(os.path.join(tmp, "records.sqlite"))
    try:
        with warnings.catch_warnings(record=True) as caught, \
                open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
            warnings.simplefilter("always")
            added, dups, bad = store._import(fh)
    except OSError as e:
        store.close()
        raise _Fail(f"cannot read tuning records {path}: {e.strerror or e}") from None
    if not added and bad:  # (then the skipped lines' warnings say nothing more)
        store.close()
        raise _Fail(f"{path} holds no tuning records ({bad} line{'s' * (bad > 1)} not records)")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return store


# ----------------------------------------------------------------------------- jitensor tune


def tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="the ONNX model (.onnx)")
    p.add_argument("--output", "-o", required=True, metavar="RECORDS",
                   help="file to write the tuning records to (JSON lines, for `jitensor compile --tuning-records` "
                        "or `jitensor records import`)")
    p.add_argument("--trials", type=int, default=256, metavar="N",
                   help="schedules to measure, over all kernels (default 256)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="stop searching after this long")
    p.add_argument("--seed", type=int, default=0, help="the search's random seed (default 0)")
    _target_argument(p)
    _shapes_argument(p)
    _common(p)


@_guard
def tune_run(args) -> int:
    from .. import tune
    from ..autotune.records import RecordStore
    from . import artifact
    artifact.parse_target(args.target)
    if args.trials < 1:
        raise _Fail(f"--trials must be at least 1, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise _Fail(f"--timeout must be positive, got {args.timeout}")
    shapes = artifact.parse_shapes(args.input_shapes)
    fn = _function(args.model)
    feeds = artifact.example_inputs(artifact.input_specs(fn, shapes), seed=args.seed)
    arrays = fn.check_inputs(fn._bind((), feeds))
    with tempfile.TemporaryDirectory(prefix="jitensor-tune-") as tmp:
        store = RecordStore(os.path.join(tmp, "records.sqlite"))
        interrupted = False
        try:
            try:
                report = tune(fn._jit, *arrays, trials=args.trials, timeout=args.timeout, seed=args.seed,
                              records=store)
                print(report)
            except KeyboardInterrupt:  # the tuner kept every trial measured so far: write them
                interrupted = True
            try:
                with open(args.output, "w", encoding="utf-8") as fh:
                    n = store.export_jsonl(fh)
            except OSError as e:
                raise _Fail(f"cannot write {args.output}: {e.strerror or e}") from None
        finally:
            store.close()
    print(f"wrote {n} record{'' if n == 1 else 's'} to {args.output}" + (" (interrupted)" if interrupted else ""))
    return 130 if interrupted else 0


# ----------------------------------------------------------------------------- jitensor run


def run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT", help="a compiled model artifact (`jitensor compile --output`)")
    p.add_argument("--inputs", "-i", metavar="NPZ",
                   help="the inputs, one array per model input named as it (np.savez); default: random arrays of "
                        "the recorded shapes and dtypes")
    p.add_argument("--output", "-o", metavar="NPZ", help="write the outputs here, one array per ONNX output name")
    p.add_argument("--print-time", action="store_true",
                   help="print latency statistics over --repeat runs (after one warm-up run)")
    p.add_argument("--repeat", type=int, default=10, metavar="N",
                   help="timed runs for --print-time and --profile (default 10)")
    p.add_argument("--profile", action="store_true",
                   help="print each kernel's time (the program run kernel by kernel)")
    p.add_argument("--device", default="cpu", help="where to run: cpu (the only one for now)")
    _common(p)


def _read_npz(path: str) -> dict:
    import zipfile

    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise _Fail(f"{path} is a single .npy array, not an .npz file of named arrays (np.savez)")
            out = {}
            for name in z.files:
                try:
                    out[name] = z[name]
                except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
                    raise _Fail(f"{path}: array '{name}' cannot be read ({_one_line(e)})") from None
            return out
    except _Fail:
        raise
    except OSError as e:
        raise _Fail(f"cannot read inputs {path}: {e.strerror or e}") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as e:
        raise _Fail(f"{path} is not an .npz file of arrays ({_one_line(e)})") from None


def _stats(samples) -> str:
    import numpy as np
    ms = np.asarray(samples) * 1e3
    return (f"mean {ms.mean():.4f} ms, median {np.median(ms):.4f} ms, min {ms.min():.4f} ms, "
            f"max {ms.max():.4f} ms, std {ms.std():.4f} ms")


@_guard
def run_run(args) -> int:
    import numpy as np

    from . import artifact
    _check_device(args.device)
    if args.repeat < 1:
        raise _Fail(f"--repeat must be at least 1, got {args.repeat}")
    t0 = time.perf_counter()
    model = artifact.load(args.artifact)
    t_load = time.perf_counter() - t0
    feeds = _read_npz(args.inputs) if args.inputs else artifact.example_inputs(model.inputs)
    arrays = model.check(feeds)
    t1 = time.perf_counter()
    outs = model.program.run(arrays)
    first = time.perf_counter() - t1
    outputs = dict(zip(model.outputs, outs))
    if args.output:
        try:
            np.savez(args.output, **outputs)
        except OSError as e:
            raise _Fail(f"cannot write {args.output}: {e.strerror or e}") from None
    if args.print_time:
        samples = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            model.program.run(arrays)
            samples.append(time.perf_counter() - t)
        print(f"loaded {args.artifact} in {t_load * 1e3:.1f} ms; first run {first * 1e3:.3f} ms")
        print(f"latency over {args.repeat} run{'s' * (args.repeat > 1)}: {_stats(samples)}")
    if args.profile:
        rows = model.profile(feeds, repeat=args.repeat)
        total = sum(r["median"] for r in rows) or 1.0
        head = ("#", "KERNEL", "SCHEDULE", "MEDIAN ms", "MIN ms", "SHARE")
        table = [(str(r["index"]), r["name"] + (" (parallel)" if r["parallel"] else ""), r["schedule"],
                  f"{r['median'] * 1e3:.4f}", f"{r['min'] * 1e3:.4f}", f"{r['median'] / total:.1%}") for r in rows]
        widths = [max(len(r[i]) for r in table + [head]) for i in range(len(head))]
        right = {0, 3, 4, 5}
        print(f"per-kernel times, median of {args.repeat} stepwise run{'s' * (args.repeat > 1)}:")
        for r in [head] + table:
            print("  ".join(c.rjust(w) if i in right else c.ljust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        print(f"sum of kernel medians: {total * 1e3:.4f} ms over {len(rows)} kernel{'s' * (len(rows) != 1)}")
    if not args.output:
        for name, a in outputs.items():
            print(f"{name}: {a.dtype.name}[{','.join(map(str, a.shape))}]"
                  + (f" = {np.array2string(a.ravel()[:6], precision=4, separator=', ')}"
                     + ("..." if a.size > 6 else "") if a.size else ""))
    elif not (args.print_time or args.profile):
        print(f"wrote {len(outputs)} output{'s' * (len(outputs) != 1)} to {args.output}")
    return 0
