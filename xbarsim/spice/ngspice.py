"""Running ngspice in batch mode and reading the ``name = value`` lines its ``print`` writes."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import XbarsimError


class NgspiceError(XbarsimError):
    """ngspice is missing or failed (one line)."""


def have_ngspice() -> bool:
    return shutil.which("ngspice") is not None


_LINE = re.compile(r"^\s*([A-Za-z_][\w()\[\].:#-]*)\s*=\s*([-+0-9.eE]+)\s*$")


def run_ngspice(netlist: str, timeout_s: float = 600.0) -> dict:
    """Run ``netlist`` (``ngspice -b``) and return ``{name: value}`` of every ``name = value``
    line it prints (``print``/``meas`` output; names lower-case)."""
    exe = shutil.which("ngspice")
    if exe is None:
        raise NgspiceError("ngspice is not installed (Debian/Ubuntu: apt-get install ngspice)")
    with tempfile.TemporaryDirectory(prefix="xbarsim-spice-") as tmp:
        path = Path(tmp) / "circuit.cir"
        path.write_text(netlist)
        try:
            proc = subprocess.run([exe, "-b", str(path)], capture_output=True, text=True,
                                  timeout=timeout_s, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise NgspiceError(f"ngspice did not finish within {timeout_s:g} s") from None
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
