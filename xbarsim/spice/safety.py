"""Netlists hold data, never code (issue 26).

ngspice executes commands from a netlist: a ``.control`` … ``.endc`` block (``shell`` runs any
program), a comment line starting with ``*#``, ``.include``/``.lib`` of any file, a first line
``*ng_script``. A name read from a network YAML or a NIR file must therefore never reach a netlist
as written. Two guards:

* :func:`safe_identifier` is the one function through which every user- or file-derived string
  passes on its way into a netlist (network and layer names in the title comment): letters,
  digits and ``_`` only, at most :data:`NAME_LIMIT` characters. It cannot hold a newline, so it
  cannot start a netlist line.
* :func:`check_netlist` reads a netlist back before it is run or written and accepts only the
  lines xbarsim's netlist writers emit: the title comment, the element cards (``R V E F C B I``
  with plain node names and numbers), ``.options`` / ``.tran`` of known form, one
  ``.control`` … ``.endc`` holding only ``set numdgt``, ``op``, ``run``, ``print i(…)`` and
  ``meas tran … FIND v(…) AT=…``, and a final ``.end``. Anything else is an internal error
  (sanitising should make it impossible), reported as one line.
"""

from __future__ import annotations

import re

from ..errors import XbarsimError

#: The longest name :func:`safe_identifier` keeps.
NAME_LIMIT = 40

_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def safe_identifier(text, limit: int = NAME_LIMIT) -> str:
    """``text`` reduced to a netlist-safe identifier: every run of characters other than ASCII
    letters, digits and ``_`` becomes one ``_`` (a newline, ``.``, ``*``, ``;``, a quote, a
    non-ASCII letter), cut to ``limit`` characters; ``_`` when nothing is left."""
    return _UNSAFE.sub("_", str(text))[:max(1, int(limit))] or "_"


def safe_title(title, limit: int = 160) -> str:
    """A netlist title: each whitespace-separated word of ``title`` through
    :func:`safe_identifier`, joined by single spaces, at most ``limit`` characters."""
    return " ".join(safe_identifier(w) for w in str(title).split())[:limit] or "_"


class UnsafeNetlistError(XbarsimError):
    """A netlist holds a line xbarsim does not write (one line; an internal error)."""


# ---- the grammar of the netlists xbarsim writes (ASCII only, whole-line matches) ---------------
_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?|inf|nan)"
_NODE = r"[A-Za-z0-9_]+"
_NAME = r"[A-Za-z0-9_]+"
_NUMS = rf"{_NUM}(?: {_NUM})*"
_A = re.ASCII
_TITLE = re.compile(r"\* xbarsim [A-Za-z0-9_ ,.:=()+-]*", _A)
_ELEMENTS = [re.compile(p, _A) for p in (
    rf"R{_NAME} {_NODE} {_NODE} {_NUM}",
    rf"C{_NAME} {_NODE} {_NODE} {_NUM}",
    rf"V{_NAME} {_NODE} {_NODE} (?:DC {_NUM}|PWL\({_NUMS}\)|PULSE\({_NUMS}\))",
    rf"I{_NAME} {_NODE} {_NODE} PWL\({_NUMS}\)",
    rf"E{_NAME} {_NODE} {_NODE} {_NODE} {_NODE} {_NUM}",
    rf"F{_NAME} {_NODE} {_NODE} V{_NAME} {_NUM}",
    rf"B{_NAME} {_NODE} {_NODE} I = (?P<expr>[A-Za-z0-9_ ().,*/+-]+)",
)]
#: what a behavioural source's expression may hold once its ``V(node)``, ``min(`` and ``max(``
#: are taken out: numbers, arithmetic and parentheses
_EXPR_REST = re.compile(r"[0-9e.,*/+() -]*", _A)
_EXPR_WORDS = re.compile(rf"V\({_NODE}\)|\b(?:min|max)\(", _A)
_DOTS = [re.compile(p, _A) for p in (
    rf"\.options method=gear reltol={_NUM} abstol={_NUM} vntol={_NUM} chgtol={_NUM}",
    rf"\.tran {_NUM} {_NUM} {_NUM} {_NUM} uic",
)]
_CONTROL = [re.compile(p, _A) for p in (
    r"set numdgt=15",
    r"op",
    r"run",
    rf"print i\({_NODE}\)",
    rf"meas tran {_NAME} FIND v\({_NODE}\) AT={_NUM}",
)]


def check_netlist(text: str) -> str:
    """Return ``text`` when every line is one xbarsim's netlist writers emit; else raise
    :class:`UnsafeNetlistError` naming the first line that is not (an internal error: the
    writers sanitise every name, so only a bug or a hand-made netlist gets here)."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise UnsafeNetlistError("internal error: refusing a netlist that does not end with a "
                                 "newline")
    lines = text[:-1].split("\n")

    def refuse(n, why):
        got = lines[n]
        got = got if len(got) <= 60 else got[:57] + "..."
        raise UnsafeNetlistError(f"internal error: refusing to run or write a netlist whose "
                                 f"line {n + 1} {why} (got {got!r})")

    if not _TITLE.fullmatch(lines[0]):
        refuse(0, "is not xbarsim's title comment")
    if lines[-1] != ".end" or len(lines) < 2:
        refuse(len(lines) - 1, "is not the final .end")
    control = None  # line of the .control, while inside the block
    blocks = 0
    for n in range(1, len(lines) - 1):
        line = lines[n]
        if control is not None:
            if line == ".endc":
                control = None
            elif not any(p.fullmatch(line) for p in _CONTROL):
                refuse(n, "is not a command of xbarsim's control block")
            continue
        if line == ".control":
            blocks += 1
            if blocks > 1:
                refuse(n, "opens a second control block")
            control = n
            continue
        if line.startswith("*"):
            refuse(n, "is a comment after the title (ngspice runs a '*#' line as a command)")
        if line.startswith("."):
            if not any(p.fullmatch(line) for p in _DOTS):
                refuse(n, "is not a dot-command xbarsim writes")
            continue
        for p in _ELEMENTS:
            m = p.fullmatch(line)
            if m:
                if "expr" in m.groupdict() and not _EXPR_REST.fullmatch(
                        _EXPR_WORDS.sub("", m.group("expr"))):
                    refuse(n, "holds a behavioural expression xbarsim does not write")
                break
        else:
            refuse(n, "is not an element card xbarsim writes")
    if control is not None:
        refuse(control, "opens a control block that is never closed")
    return text
