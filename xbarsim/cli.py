"""``xbarsim`` command line. Each subcommand lives in ``xbarsim/commands/<name>.py`` and exposes
``register(subparsers)``; add new ones to :data:`COMMANDS`.

Errors a user can act on print one line and exit with status 2 (``--traceback`` shows the stack).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import XbarsimError

COMMANDS = ("networks", "map", "run", "trace", "report", "table5", "train", "paper", "sweep",
            "spice", "import_model", "export", "warmup")


class _Parser(argparse.ArgumentParser):
    """argparse with a usage mistake on one line (``xbarsim map: error: …``), exit 2: the usage
    text is what ``--help`` is for. Subcommand parsers inherit the class."""

    def error(self, message):
        message = " ".join(str(message).split())
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xbarsim",
        description="Cycle-level simulator of spiking memristor-crossbar neuromorphic hardware.")
    parser.add_argument("--version", action="version", version=f"xbarsim {_version()}",
                        help="print the version and exit")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback on errors (for debugging); may also "
                        "follow the subcommand")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"xbarsim.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    _thread_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, traceback = _take_traceback(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.traceback = args.traceback or traceback
    previous = _terminate_as_interrupt()
    _announce_compiles()
    try:
        return _dispatch(args)
    finally:
        if previous is not None:
            import signal
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args) -> int:
    try:
        return int(args.func(args) or 0)
    except XbarsimError as exc:
        if args.traceback:
            raise
        text = one_line(str(exc))
        print(f"xbarsim: error: {text}" if not _located(exc) else text, file=sys.stderr)
        return 2
    except MemoryError:
        if args.traceback:
            raise
        print("xbarsim: error: out of memory (try fewer --samples or a smaller --batch)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xbarsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file system refusal found late (disk full, permissions)
        if args.traceback:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xbarsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def _thread_defaults() -> None:
    """The command line's process defaults, set before any thread pool starts (importing the
    library sets none). numba's OpenMP threading layer: threads waiting for work sleep instead of
    spinning. Spinning threads took the cores from the thread still computing whenever the
    machine had other work: LeNet 4-bit, batch 256, 2 threads on 2 busy cores ran at 2,477 img/s
    spinning, 4,158 passive (docs/performance.md). A value the user set is kept; counts never
    depend on threads."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _announce_compiles() -> None:
    """One line on a terminal's stderr when numba starts compiling a kernel that is not cached
    yet (a fresh install's first run waits about 30 s for it): xbarsim/engine/warm.py."""
    from .engine.warm import announce_compiles

    announce_compiles()


def _take_traceback(argv: list) -> tuple:
    """``--traceback`` anywhere before a ``--``: removed from ``argv`` and returned as a flag."""
    stop = argv.index("--") if "--" in argv else len(argv)
    found = "--traceback" in argv[:stop]
    head = [a for a in argv[:stop] if a != "--traceback"]
    return head + argv[stop:], found


def _terminate_as_interrupt() -> None:
    """SIGTERM (``kill``, a batch scheduler's time limit) unwinds like Ctrl-C, so that cleanup
    runs: temporary files and trace folders are removed, finished files are left whole."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


def _version() -> str:
    from .version import __version__
    return __version__


def one_line(text: str) -> str:
    """The message on one line: a newline or control character read from a file (a YAML key,
    a file name) is shown escaped, as Python writes it in a string."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _located(exc) -> bool:
    return hasattr(exc, "file")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
