"""The ``jitensor`` command line (also ``python -m jitensor.cli``).

Each subcommand is registered in SUBCOMMANDS as name -> (add_arguments, run): `add_arguments`
receives its argparse sub-parser, `run(args)` returns the exit status. To add ``compile``,
``tune`` or ``run``, write those two functions and add a line to the dict.

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


# ----------------------------------------------------------------------------- main

SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "cache": (_cache_arguments, _cache_run, "inspect or clear the on-disk kernel cache"),
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
