"""A non-editable install runs (issue 14): the wheel carries every shipped network YAML, trained
weights file, device card and circuit card, and from an empty folder, in a fresh virtual
environment, ``xbarsim run lenet-mnist-4b``, ``xbarsim report lenet-mnist-4b --out r`` and
``xbarsim table5 --out t.md`` work.

The wheel is built offline (``python -m build --wheel --no-isolation``, else ``pip wheel
--no-build-isolation``) from a copy of the source tree, so the checkout stays clean. The fresh
venv sees this interpreter's packages (numpy, numba, ...) through a ``.pth`` file, so nothing is
downloaded. Slow (table5 runs the engine on three networks: about two minutes); `.ci/run` runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("networks", "devices", "circuits")
TREE = ("xbarsim", *SHIPPED, "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")

pytestmark = pytest.mark.slow


def _build_wheel(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    for name in TREE:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    out = dest / "dist"
    try:
        import build  # noqa: F401
        cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
               str(src)]
    except ImportError:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--no-index", "-w", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [wheel] = out.glob("xbarsim-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv holding the wheel (not editable); our site-packages seen through a .pth."""
    where = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    py = where / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_xbarsim_test_parent.pth").write_text("\n".join(sorted(ours)) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--target", str(purelib), str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return where


def _xbarsim(venv: Path, cwd: Path, *argv):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XBARSIM_DATA")}
    env.update(MPLBACKEND="Agg", XDG_CACHE_HOME=str(cwd / ".cache"))
    script = venv / "bin" / "xbarsim"
    cmd = [str(script), *argv] if script.exists() else \
        [str(venv / "bin" / "python"), "-m", "xbarsim", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def test_wheel_carries_every_shipped_yaml_and_npz(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    files = [p for folder in SHIPPED for p in (ROOT / folder).iterdir()
             if p.suffix in (".yaml", ".npz")]
    # the float stages are the start of `xbarsim paper` in a source checkout, not for the wheel
    floats = {f"xbarsim/shipped/{p.relative_to(ROOT)}" for p in files
              if p.name.endswith("-float.npz")}
    want = {f"xbarsim/shipped/{p.relative_to(ROOT)}" for p in files} - floats
    assert len(want) >= 15 and want <= names, sorted(want - names)
    assert floats and not floats & names, sorted(floats & names)
    assert "xbarsim/data/mnist-sample.npz" in names


def test_installed_wheel_runs_from_an_empty_folder(venv, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _xbarsim(venv, empty, "networks", "--paths")
    assert where.returncode == 0, where.stderr
    lines = where.stdout.split("\n\n")[0].splitlines()  # the networks; then the cards
    assert [ln.split()[0] for ln in lines] == sorted(
        p.stem for p in (ROOT / "networks").glob("*.yaml"))
    assert all(str(venv) in ln for ln in lines)  # the installed copies, not the source tree
    assert "paper-50k-1m" in where.stdout and "paper-130nm" in where.stdout  # the cards too

    run = _xbarsim(venv, empty, "run", "lenet-mnist-4b", "--no-progress")
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0].startswith("note: XBARSIM_DATA is not set and no MNIST in ")
    assert out[1].startswith("lenet-mnist-4b: M=4 signal bits, N=4 weight bits")
    assert any(ln.startswith("accuracy: cycle-level ") for ln in out)

    report = _xbarsim(venv, empty, "report", "lenet-mnist-4b", "--out", "r")
    assert report.returncode == 0, report.stderr
    assert sorted(p.name for p in (empty / "r").iterdir()) == [
        "cost-area.png", "cost-components.png", "cost-energy.png", "cost-time.png", "cost.json"]

    table = _xbarsim(venv, empty, "table5", "--out", "t.md")
    assert table.returncode == 0, table.stderr
    text = (empty / "t.md").read_text()
    assert text.startswith("# Table 5 on the xbarsim cost model")
    assert "| Lenet 4-bit | 4 |" in text and "| Resnet 3-bit | 18 |" in text
    assert sorted(p.name for p in empty.iterdir() if not p.name.startswith(".")) == ["r", "t.md"]
