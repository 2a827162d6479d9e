"""Plotting never changes matplotlib's global backend (a notebook's inline backend, a GUI
session's) and returns the figures it drew along with the PNG paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from conftest import SWEEP_TINY  # the same tiny synthetic network as the sweep tests

import xbarsim

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def _rows():
    """Rows shaped like xbarsim.sweep(..., as_frame=False): 2 x 2 points x 2 seeds."""
    rows = []
    for noise in (0.0, 0.1):
        for enc in ("uniform", "bernoulli"):
            for seed in (0, 1):
                acc = 0.9 - noise - 0.01 * seed
                rows.append({"device.read_noise_rel": noise, "engine.encoding": enc,
                             "seed": seed, "samples": 16, "accuracy": acc,
                             "ideal_accuracy": 0.9, "agreement": acc + 0.05,
                             "spikes_per_image": 100.0 + seed, "mismatch.conv1": noise / 2,
                             "mismatch.fc1": noise, "spikes.conv1": 60.0, "spikes.fc1": 40.0})
    return rows


@pytest.fixture
def svg_backend():
    """Another backend than the Agg the plots draw with, non-interactive so it works headless;
    the previous one is restored afterwards."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    assert matplotlib.get_backend().lower() == "svg"
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = pyplot.get_fignums() if pyplot else None
    yield
    assert matplotlib.get_backend().lower() == "svg", "a plot function switched the backend"
    if pyplot is not None:
        assert pyplot.get_fignums() == figures, "a plot function went through pyplot"
    matplotlib.use(before)


def test_sweep_plot_rows_keeps_backend_and_returns_figures(svg_backend, tmp_path):
    from xbarsim.sweep.plot import plot_rows
    written = plot_rows(_rows(), ["device.read_noise_rel", "engine.encoding"], tmp_path / "p",
                        "title")
    assert matplotlib.get_backend().lower() == "svg"
    assert [p.name for p in written] == [
        "accuracy_vs_device_read_noise_rel.png", "mismatch_vs_device_read_noise_rel.png",
        "accuracy_vs_engine_encoding.png", "mismatch_vs_engine_encoding.png"]
    assert len(written.figures) == len(written)
    assert all(isinstance(f, Figure) for f in written.figures)
    assert written.figure("accuracy_vs_engine_encoding.png") is written.figures[2]
    for path, fig in zip(written, written.figures):
        assert path.read_bytes()[:8] == PNG
        # issue 14: human names with units, not the raw keys
        assert fig.axes and fig.axes[0].get_xlabel() in ("read noise, σ of G / G per read (%)",
                                                         "spike encoding")
    # as before, the result unpacks into paths (the example notebook does this)
    acc, mis = plot_rows(_rows(), ["device.read_noise_rel"], tmp_path / "q")[:2]
    assert Path(acc).name.startswith("accuracy_vs") and Path(mis).name.startswith("mismatch_vs")


def test_sweep_plot_dir_returns_figures(svg_backend, tmp_path):
    (tmp_path / "tiny.yaml").write_text(SWEEP_TINY)
    out = tmp_path / "res"
    xbarsim.sweep(tmp_path / "tiny.yaml", {"engine.encoding": ["uniform", "bernoulli"]},
                  seeds=2, samples=8, out=out, as_frame=False)
    written = xbarsim.sweep.plot_dir(out, tmp_path / "png")
    assert sorted(p.name for p in written) == ["accuracy_vs_engine_encoding.png",
                                               "mismatch_vs_engine_encoding.png"]
    assert [type(f) for f in written.figures] == [Figure, Figure]


def test_trace_plot_keeps_backend_and_returns_figures(svg_backend, tmp_path):
    from xbarsim.engine.trace import TraceWriter, plot_trace
    (tmp_path / "tiny.yaml").write_text(SWEEP_TINY)
    net = xbarsim.load_network(tmp_path / "tiny.yaml")
    images, _ = xbarsim.datasets.synthetic(net.spec.input_shape, 3, seed=1)
    writer = TraceWriter(tmp_path / "tr", net.spec)
    xbarsim.Simulator(net).run(images, trace=writer)
    writer.close()
    written = plot_trace(tmp_path / "tr", tmp_path / "png", max_images=2)
    assert [p.name for p in written] == ["raster.png", "spike_counts.png"]
    assert all(isinstance(f, Figure) for f in written.figures) and len(written.figures) == 2
    assert all(p.read_bytes()[:8] == PNG for p in written)
    assert np.shape(written.figures[0].axes) == (2 * 2,)   # 2 layers x 2 images


def test_importing_and_plotting_never_touches_pyplot(tmp_path):
    """In a fresh interpreter: with the svg backend active, importing xbarsim's plotting modules
    and drawing leaves the backend alone and never imports pyplot."""
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
import xbarsim, xbarsim.io.plotting, xbarsim.sweep.plot, xbarsim.engine.trace
sys.path.insert(0, {str(ROOT / "tests")!r})
from test_plotting import _rows
from pathlib import Path
written = xbarsim.sweep.plot.plot_rows(_rows(), ["engine.encoding"], Path({str(tmp_path)!r}))
assert len(written.figures) == 2, written
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


def test_cost_charts_keep_backend_and_return_figures(svg_backend, tmp_path):
    from xbarsim.cost import estimate
    from xbarsim.cost.charts import draw_cost_charts
    (tmp_path / "tiny.yaml").write_text(SWEEP_TINY)
    net = xbarsim.load_network(tmp_path / "tiny.yaml")
    images, _ = xbarsim.datasets.synthetic(net.spec.input_shape, 3, seed=1)
    res = xbarsim.Simulator(net).run(images)
    cost = estimate(net, res.stats, images=len(images)).to_dict()
    written = draw_cost_charts(cost, tmp_path / "png")
    assert [p.name for p in written] == ["cost-energy.png", "cost-area.png", "cost-time.png",
                                         "cost-components.png"]
    assert all(isinstance(f, Figure) for f in written.figures) and len(written.figures) == 4
    assert all(p.read_bytes()[:8] == PNG for p in written)


def test_cost_charts_account_for_every_component_and_the_overhead(svg_backend, tmp_path):
    """Issue 14: cost-energy's bars (per-image component included) sum to the title's total,
    cost-time's bars (overhead included) to the latency; legends sit outside the axes; the
    charts can be written as svg or pdf."""
    import json

    from xbarsim.cli import main
    from xbarsim.cost.charts import draw_cost_charts

    net = ROOT / "networks" / "lenet-mnist-4b.yaml"
    assert main(["report", str(net), "--out", str(tmp_path / "r"), "--no-charts", "--json"]) == 0
    cost = json.loads((tmp_path / "r" / "cost.json").read_text())
    written = draw_cost_charts(cost, tmp_path / "png")
    energy, _, time, _ = written.figures
    ax = energy.axes[0]
    total = sum(p.get_height() for p in ax.patches)
    assert total == pytest.approx(cost["energy_per_image_j"] * 1e6, rel=1e-9)
    assert cost["energy_per_image_by_component_j"]["image"] > 0
    legend = ax.get_legend().get_window_extent(energy.canvas.get_renderer())
    assert legend.x0 >= ax.get_window_extent(energy.canvas.get_renderer()).x1  # beside, not on
    ax = time.axes[0]
    assert sum(p.get_height() for p in ax.patches) == pytest.approx(cost["latency_s"] * 1e9,
                                                                     rel=1e-9)
    assert [t.get_xlabel() for t in (energy.axes[0], time.axes[0])] == ["layer", "layer"]
    for fmt, magic in (("svg", b"<?xml"), ("pdf", b"%PDF")):
        paths = draw_cost_charts(cost, tmp_path / fmt, fmt=fmt)
        assert [p.suffix for p in paths] == [f".{fmt}"] * 4
        assert all(p.read_bytes()[:5].startswith(magic[:4]) for p in paths)
