"""Running ngspice in batch mode and reading the ``name = value`` lines its ``print`` writes.

Only netlists that pass :func:`xbarsim.spice.safety.check_netlist` run, in batch mode, without
init files, in a private temporary folder, under a timeout (:func:`run_ngspice`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import XbarsimError
from .safety import check_netlist


class NgspiceError(XbarsimError):
    """ngspice is missing or failed (one line)."""


def have_ngspice() -> bool:
    return shutil.which("ngspice") is not None


_LINE = re.compile(r"^\s*([A-Za-z_][\w()\[\].:#-]*)\s*=\s*([-+0-9.eE]+)\s*$")


def ngspice_env(home: str) -> dict:
    """The environment ngspice runs in: the caller's, with ``HOME`` moved to the private folder
    ``home`` (ngspice reads ``~/.spiceinit`` when the working folder has none; ``-n`` already
    skips both, this is a second lock)."""
    return {**os.environ, "HOME": home}


def run_ngspice(netlist: str, timeout_s: float = 600.0) -> dict:
    """Run ``netlist`` (``ngspice -b``) and return ``{name: value}`` of every ``name = value``
    line it prints (``print``/``meas`` output; names lower-case).

    The netlist must pass :func:`~xbarsim.spice.safety.check_netlist` (only what xbarsim's
    writers emit: no control block but theirs, no ``shell``, no ``.include``). ngspice runs in
    batch mode (``-b``) without init files (``-n``: no ``.spiceinit`` from the working folder or
    the home folder), with its working folder and ``HOME`` a fresh private temporary folder that
    is removed afterwards, no standard input, and at most ``timeout_s`` seconds."""
    check_netlist(netlist)
    exe = shutil.which("ngspice")
    if exe is None:
        raise NgspiceError("ngspice is not installed (Debian/Ubuntu: apt-get install ngspice)")
    tmp = tempfile.mkdtemp(prefix="xbarsim-spice-")  # mode 0700, a fresh name
    try:
        path = Path(tmp) / "circuit.cir"
        path.write_text(netlist)
        try:
            proc = subprocess.run([exe, "-n", "-b", path.name], capture_output=True, text=True,
                                  timeout=timeout_s, cwd=tmp, env=ngspice_env(tmp),
                                  stdin=subprocess.DEVNULL, errors="replace")
        except subprocess.TimeoutExpired:
            raise NgspiceError(f"ngspice did not finish within {timeout_s:g} s") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {}
    for line in proc.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            try:
                out[m.group(1).lower()] = float(m.group(2))
            except ValueError:
                pass
    if not out:  # ngspice -b exits 1 after a .control block even when it succeeded
        err = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "rror" in ln]
        raise NgspiceError(f"ngspice failed (exit {proc.returncode}): "
                           f"{err[0].strip() if err else 'no values printed'}")
    return out
