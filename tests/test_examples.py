"""The example notebooks run from a clean kernel of this environment (needs the notebook extra:
pip install 'xbarsim[notebook]')."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "sweep-variation-read-noise.ipynb"
KERNEL = "xbarsim-examples-test"

REASON = "{} is not installed (pip install 'xbarsim[notebook]')"

# Appended to the notebook (in memory only): report what the notebook computed.
CHECK = """\
import json as _json, sys as _sys
print(_json.dumps({
    "prefix": _sys.prefix, "cwd": os.getcwd(), "root": str(ROOT),
    "samples": [r["samples"] for r in variation + noise], "seeds": SEEDS,
    "variation": [[r["device.variation_rel"], r["seed"]] for r in variation],
    "noise": [[r["device.read_noise_rel"], r["seed"]] for r in noise],
    "metrics": [{k: r[k] for k in r if k in ("accuracy", "ideal_accuracy", "agreement")
                 or k.startswith("mismatch.")} for r in variation + noise],
    "figures": [str(p) for p in (acc_variation, acc_noise, mis_variation, mis_noise)],
}))
"""


def _kernelspec(tmp_path) -> Path:
    """A kernelspec that starts this interpreter (not whatever 'python3' resolves to)."""
    folder = tmp_path / "jupyter"
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "xbarsim tests", "language": "python"}))
    return folder


def test_sweep_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason=REASON.format("nbformat"))
    nbclient = pytest.importorskip("nbclient", reason=REASON.format("nbclient"))
    pytest.importorskip("ipykernel", reason=REASON.format("ipykernel"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        "store the notebook without outputs (clear them before committing)"

    monkeypatch.setenv("JUPYTER_PATH", str(_kernelspec(tmp_path)))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("XBARSIM_NB_SAMPLES", "64")   # the override a user would use, small
    monkeypatch.setenv("XBARSIM_NB_SEEDS", "2")
    monkeypatch.setenv("XBARSIM_NB_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("XBARSIM_ROOT", raising=False)   # found from the working directory
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600, startup_timeout=120,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()   # raises CellExecutionError on the first failing cell

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
    out = json.loads("".join(o.text for o in nb.cells[-1].outputs if o.output_type == "stream"))
    assert out["prefix"] == sys.prefix   # the kernel ran in this environment
    assert Path(out["cwd"]) == NOTEBOOK.parent and Path(out["root"]) == ROOT

    # every value of each sweep once per seed, on the requested number of images
    assert out["seeds"] == [0, 1]
    assert [v for v, _ in out["variation"]] == [v for v, _ in out["noise"]] == \
        [v for v in (0.0, 0.05, 0.1, 0.2, 0.3) for _ in (0, 1)]
    assert set(out["samples"]) == {64}
    for m in out["metrics"]:
        assert set(m) >= {"accuracy", "ideal_accuracy", "agreement", "mismatch.conv1",
                          "mismatch.fc2"}
        assert all(0.0 <= v <= 1.0 for v in m.values()), m   # fractions, not percent
    # the 0 point of both sweeps is the same ideal-device run; the largest values add mismatch
    n = len(out["variation"])
    ideal_v, ideal_n = out["metrics"][0], out["metrics"][n]
    assert ideal_v == ideal_n
    for worst in (out["metrics"][n - 1], out["metrics"][2 * n - 1]):
        assert worst["mismatch.conv1"] > ideal_v["mismatch.conv1"]

    # the tables were printed and the four figures written and displayed
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "device.variation_rel" in text and "device.read_noise_rel" in text
    assert "agreement %" in text
    for path in out["figures"]:
        assert Path(path).parent == tmp_path / "figures"
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = [o for c in nb.cells for o in c.get("outputs", [])
              if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 4
