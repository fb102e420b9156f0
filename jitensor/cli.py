"""The ``jitensor`` command line (also ``python -m jitensor.cli``).

Each subcommand is registered in SUBCOMMANDS as name -> (add_arguments, run): `add_arguments`
receives its argparse sub-parser, `run(args)` returns the exit status. ``compile``, ``tune`` and ``run``
(ONNX models; jitensor/onnx/cli.py) are registered through `_onnx`, which imports their module only when
one of them is chosen.

Keep this module's imports to the standard library: heavy modules (llvmlite, the compiler) are
imported inside the `run` functions that need them, so that ``jitensor cache info`` starts fast.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import warnings
from typing import Callable


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def _human_age(seconds: float) -> str:
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit} ago"
    return f"{seconds / 86400:.0f} d ago"


def _human_time(ts) -> str:
    if not isinstance(ts, (int, float)):
        return "?"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


# ----------------------------------------------------------------------------- jitensor cache


def _cache_arguments(p: argparse.ArgumentParser) -> None:
    # --dir on each action (not on `cache`) so that `jitensor cache list --dir X` works.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="PATH",
                        help="cache directory (default: $JITENSOR_CACHE_DIR, else $XDG_CACHE_HOME/jitensor "
                             "or ~/.cache/jitensor)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("info", parents=[common], help="location, size, limit and hit/miss statistics")
    a.add_argument("--json", action="store_true", help="print machine-readable JSON")
    a = actions.add_parser("list", parents=[common], help="one line per cached kernel, most recently used first")
    a.add_argument("--json", action="store_true", help="print machine-readable JSON")
    actions.add_parser("clear", parents=[common], help="remove every cached kernel")


def _cache_info(cache, args) -> int:
    info = cache.info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    t = info["totals"]
    status = "enabled" if info["enabled"] else f"disabled ({info['disabled_reason']})"
    print(f"cache directory: {info['path']}")
    print(f"status:          {status}")
    print(f"entries:         {info['entries']} ({_human_bytes(info['total_bytes'])} "
          f"of {_human_bytes(info['max_bytes'])} limit)")
    print(f"format version:  {info['format_version']}")
    print(f"all-time:        {t['hits']} hits, {t['misses']} misses, {t['stores']} stores, "
          f"{t['evictions']} evictions, {t['corrupt']} corrupt entries dropped")
    return 0


def _cache_list(cache, args) -> int:
    entries = cache.entries()
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return 0
    if not entries:
        print(f"no entries in {cache.path}")
        return 0
    rows = [(e["key"][:16], _human_bytes(e["size"]), _human_age(e["age"]), _human_time(e["created"]),
             e["name"] if e["valid_header"] else "(unreadable header)") for e in entries]
    head = ("KEY", "SIZE", "LAST USED", "CREATED", "NAME")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[4] or "-"))
    total = sum(e["size"] for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {_human_bytes(total)} in {cache.path}")
    return 0


def _cache_clear(cache, args) -> int:
    n = cache.clear()
    print(f"removed {n} entr{'y' if n == 1 else 'ies'} from {cache.path}")
    return 0


_CACHE_ACTIONS = {"info": _cache_info, "list": _cache_list, "clear": _cache_clear}


def _cache_run(args) -> int:
    from jitensor.errors import CacheWarning
    from jitensor.runtime.diskcache import DiskCache

    # Show the cache's warnings (unsafe directory...) as one plain line each, not a Python warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CacheWarning)
        cache = DiskCache(args.dir)
        rc = _CACHE_ACTIONS[args.action](cache, args)
    for w in caught:
        print(f"jitensor: warning: {w.message}", file=sys.stderr)
    return rc


# ----------------------------------------------------------------------------- jitensor records


class _Fail(Exception):
    """A one-line error for the user (a missing file, an unknown id): printed, exit status 1."""


def _records_arguments(p: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="PATH",
                        help="directory of records.sqlite (default: the cache directory, $JITENSOR_CACHE_DIR, else "
                             "$XDG_CACHE_HOME/jitensor or ~/.cache/jitensor)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("list", parents=[common],
                           help="one line per tuned workload and target: records, default and best time, speedup")
    a.add_argument("--json", action="store_true", help="print machine-readable JSON")
    a = actions.add_parser("show", parents=[common], help="the record with this id, or the records of a workload")
    a.add_argument("what", metavar="ID_OR_WORKLOAD_PREFIX",
                   help="a record id, or the start of a workload key (a number that is a record's id means that "
                        "record)")
    a.add_argument("--json", action="store_true", help="print machine-readable JSON")
    a = actions.add_parser("export", parents=[common], help="write the records as JSON lines")
    a.add_argument("file", metavar="FILE", help="output file, - for standard output")
    a.add_argument("--ok-only", action="store_true", help="leave out failed trials")
    a = actions.add_parser("import", parents=[common], help="add the records of a JSON-lines file (duplicates skipped)")
    a.add_argument("file", metavar="FILE", help="input file, - for standard input")
    a = actions.add_parser("prune", parents=[common],
                           help="keep the best records and the latest default measurement of each workload; "
                                "drop the rest and every failed trial")
    a.add_argument("--keep", type=int, default=1, metavar="N", help="best records to keep per workload (default 1)")


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g}"


def _speedup(default, best) -> str:
    return f"{default / best:.2f}x" if default and best else "-"


def _records_list(store, args) -> int:
    rows = store.summary()
    if args.json:
        for r in rows:
            r["speedup"] = r["default_cost"] / r["best_cost"] if r["default_cost"] and r["best_cost"] else None
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print(f"no records in {store.path}")
        return 0
    table = [(r["workload"][:16], r["target"], r["kind"] or "-", str(r["records"]), _ms(r["default_cost"]),
              _ms(r["best_cost"]), _speedup(r["default_cost"], r["best_cost"])) for r in rows]
    head = ("WORKLOAD", "TARGET", "KIND", "RECORDS", "DEFAULT ms", "BEST ms", "SPEEDUP")
    widths = [max(len(r[i]) for r in table + [head]) for i in range(len(head))]
    right = {3, 4, 5, 6}
    for r in [head] + table:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    n = sum(r["records"] for r in rows)
    nw = len({r["workload"] for r in rows})
    print(f"{n} record{'' if n == 1 else 's'} of {nw} workload{'' if nw == 1 else 's'} in {store.path}")
    return 0


def _format_step(d: dict) -> str:
    """split(loop="i", factor=8, tail="guard"): the step's fields in its class's order (records store them sorted)."""
    from dataclasses import fields
    from jitensor.loop.primitives import STEPS  # the package (numpy) is loaded anyway: this costs little

    cls = STEPS.get(d.get("step"))
    order = [f.name for f in fields(cls)] if cls is not None else []
    keys = [k for k in order if k in d] + sorted(k for k in d if k not in order and k != "step")
    return f"{d.get('step', '?')}({', '.join(f'{k}={json.dumps(d[k])}' for k in keys)})"


def _print_record(rec) -> None:
    status = f"{_ms(rec.cost)} ms (median of {len(rec.costs)})" if rec.ok else f"failed: {rec.error or 'no costs'}"
    tags = " [default]" if rec.default else ""
    print(f"#{rec.id}  {status}{tags}")
    print(f"  workload {rec.workload}  kind {rec.kind or '-'}")
    print(f"  target   {rec.target}")
    v = ", ".join(f"{k} {val}" for k, val in sorted(rec.versions.items()) if val is not None)
    print(f"  measured {_human_time(rec.timestamp)}" + (f"  ({v})" if v else ""))
    if not rec.steps:
        print("  steps    (none: the compiler's schedule as is)")
    for i, s in enumerate(rec.steps):
        print(f"  {'steps' if i == 0 else '':8} {_format_step(s)}")


def _records_show(store, args) -> int:
    what = args.what.strip()
    recs = []
    if what.isdigit():
        rec = store.get(int(what))
        recs = [rec] if rec is not None else []
    if not recs:
        prefix = what.lower()
        matches = sorted({w for w, *_ in store.workloads() if w.lower().startswith(prefix)}) if prefix else []
        if len(matches) > 1:
            shown = ", ".join(m[:16] for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise _Fail(f"{what!r} matches {len(matches)} workloads ({shown}); give more of the key")
        if matches:
            recs = store.records(workload=matches[0])
            recs.sort(key=lambda r: (r.target, r.cost is None, r.cost or 0.0, not r.default, r.timestamp, r.id))
    if not recs:
        raise _Fail(f"no record with id or workload {what!r} in {store.path}")
    if args.json:
        print(json.dumps([r.to_json() for r in recs], indent=2, sort_keys=True))
        return 0
    for i, rec in enumerate(recs):
        if i:
            print()
        _print_record(rec)
    return 0


def _records_export(store, args) -> int:
    filters = {"ok_only": True} if args.ok_only else {}
    if args.file == "-":
        n = store.export_jsonl(sys.stdout, **filters)
        sys.stdout.flush()
        print(f"exported {n} record{'' if n == 1 else 's'} from {store.path}", file=sys.stderr)
        return 0
    try:
        with open(args.file, "w", encoding="utf-8") as fh:
            n = store.export_jsonl(fh, **filters)
    except OSError as e:
        raise _Fail(f"cannot write {args.file}: {e.strerror or e}") from None
    print(f"exported {n} record{'' if n == 1 else 's'} from {store.path} to {args.file}")
    return 0


def _records_import(store, args) -> int:
    if args.file == "-":
        added, dups, bad = store._import(sys.stdin)
    else:
        try:
            with open(args.file, "r", encoding="utf-8", errors="surrogateescape") as fh:
                added, dups, bad = store._import(fh)
        except OSError as e:
            raise _Fail(f"cannot read {args.file}: {e.strerror or e}") from None
    skipped = [f"{n} {what}{'' if n == 1 else 's'}" for n, what in ((dups, "duplicate"), (bad, "bad line")) if n]
    print(f"imported {added} record{'' if added == 1 else 's'} into {store.path}"
          + (f" (skipped {' and '.join(skipped)})" if skipped else ""))
    return 0


def _records_prune(store, args) -> int:
    if args.keep < 0:
        raise _Fail(f"--keep must be >= 0, got {args.keep}")
    n = store.prune(keep=args.keep)
    print(f"removed {n} record{'' if n == 1 else 's'} from {store.path}")
    return 0


_RECORDS_ACTIONS = {"list": _records_list, "show": _records_show, "export": _records_export,
                    "import": _records_import, "prune": _records_prune}


def _records_run(args) -> int:
    from jitensor.errors import RecordWarning
    from jitensor.autotune.records import FILENAME, RecordStore

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        store = RecordStore(os.path.join(os.path.abspath(os.path.expanduser(args.dir)), FILENAME) if args.dir else None)
        try:
            rc = _RECORDS_ACTIONS[args.action](store, args)
        except _Fail as e:
            print(f"jitensor: {e}", file=sys.stderr)
            rc = 1
        finally:
            store.close()
    for w in caught:
        print(f"jitensor: warning: {str(w.message).removeprefix('jitensor: ')}", file=sys.stderr)
    return rc


# ----------------------------------------------------------------------------- jitensor compile | tune | run


def _onnx(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """The ONNX subcommands live in jitensor/onnx/cli.py; importing it loads jitensor.onnx, so it is imported
    only when one of them is chosen: their arguments are added when their sub-parser first parses."""
    def add_arguments(p: argparse.ArgumentParser) -> None:
        parse = p.parse_known_args

        def parse_known_args(args=None, namespace=None):
            if not getattr(p, "_jitensor_loaded", False):
                p._jitensor_loaded = True
                from jitensor.onnx import cli as onnx_cli
                getattr(onnx_cli, f"{name}_arguments")(p)
            return parse(args, namespace)
        p.parse_known_args = parse_known_args

    def run(args: argparse.Namespace) -> int:
        from jitensor.onnx import cli as onnx_cli
        return getattr(onnx_cli, f"{name}_run")(args)
    return add_arguments, run


# ----------------------------------------------------------------------------- main

SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "cache": (_cache_arguments, _cache_run, "inspect or clear the on-disk kernel cache"),
    "records": (_records_arguments, _records_run, "list, show, export, import or prune tuning records"),
    "compile": (*_onnx("compile"), "compile an ONNX model into an artifact that `jitensor run` loads as is"),
    "tune": (*_onnx("tune"), "tune an ONNX model's kernels and write the tuning records (JSON lines)"),
    "run": (*_onnx("run"), "run a compiled ONNX model artifact on inputs from an .npz file"),
}


def _version() -> str:
    pkg = sys.modules.get("jitensor")  # importing jitensor.cli imported the package: no extra import here
    return getattr(pkg, "__version__", None) or "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jitensor", description="jitensor: a just-in-time tensor compiler for numpy code")
    parser.add_argument("--version", action="version", version=f"jitensor {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_arguments, run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        rc = run(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe must end up in the handler below
    except BrokenPipeError:
        # `jitensor cache list | head`: the reader is gone. Point stdout at devnull so that Python's final flush
        # does not fail again, and exit as a program killed by SIGPIPE would, without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    return rc


if __name__ == "__main__":
    sys.exit(main())
