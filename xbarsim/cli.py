"""``xbarsim`` command line. Each subcommand lives in ``xbarsim/commands/<name>.py`` and exposes
``register(subparsers)``; add new ones to :data:`COMMANDS`.

Errors a user can act on print one line and exit with status 2 (``--traceback`` shows the stack).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import XbarsimError

COMMANDS = ("map", "run", "trace", "report", "table5", "train", "paper", "sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xbarsim",
        description="Cycle-level simulator of spiking memristor-crossbar neuromorphic hardware.")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback on errors (for debugging)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"xbarsim.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XbarsimError as exc:
        if args.traceback:
            raise
        print(f"xbarsim: error: {exc}" if not _located(exc) else str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xbarsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _located(exc) -> bool:
    return hasattr(exc, "file")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
