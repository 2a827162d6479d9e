"""Issue 30, a researcher's first day: readable figures (log-spaced sweeps, human labels with
units, one seed without error bars, energy charts whose dynamic components can be read, a raster
drawn once with visible fc markers), ``xbarsim spice`` at an active position by default, the
CPU-only torch install documented, ``table5 --out`` without the user's folders, and summary
reprs of RunResult and LayerStats."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import xbarsim
from xbarsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "networks" / "lenet-mnist-4b.yaml")
R_DRIVER = [0.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0]  # examples/sweep-r-driver.yaml

# the tiny synthetic network of the sweep tests (tests do not import each other)
TINY = """\
name: tiny
dataset: synthetic
input: {shape: [1, 8, 8]}
bits: {signal: 4, weight: 4}
crossbar: {size: 8}
weights: random
seed: 3
layers:
  - {name: conv1, type: conv, out_channels: 4, kernel: 3}
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 10}
"""

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None,
                                   reason="ngspice is not installed (apt-get install ngspice)")


def _rows(param, values, seeds=(0,)):
    """Rows shaped like xbarsim.sweep(..., as_frame=False), accuracy falling with the value."""
    rows = []
    for k, v in enumerate(values):
        for seed in seeds:
            acc = 0.98 - 0.05 * k - 0.01 * seed
            rows.append({param: v, "seed": seed, "samples": 16, "accuracy": acc,
                         "ideal_accuracy": 0.98, "agreement": acc, "spikes_per_image": 100.0,
                         "mismatch.conv1": 0.01 * k, "mismatch.fc1": 0.02 * k,
                         "spikes.conv1": 60.0, "spikes.fc1": 40.0})
    return rows


# ------------------------------------------------------------------------------------------------
# item 6: sweep plots
# ------------------------------------------------------------------------------------------------
def test_a_log_spaced_grid_with_zero_is_drawn_on_a_symlog_axis_with_a_human_label(tmp_path):
    from xbarsim.sweep.plot import plot_rows

    written = plot_rows(_rows("device.r_driver_ohm", R_DRIVER), ["device.r_driver_ohm"],
                        tmp_path, "t")
    for fig in written.figures:  # accuracy and mismatch
        ax = fig.axes[0]
        assert ax.get_xscale() == "symlog"
        assert ax.xaxis.get_transform().linthresh == 100.0  # the smallest positive value
        assert ax.get_xlabel() == "driver resistance (Ω)"
        assert list(ax.get_xticks()) == R_DRIVER
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "0", "100", "300", "1k", "3k", "10k", "30k"]
        lo, hi = ax.get_xlim()
        assert lo < 0 < 100 and hi > 30000  # no point on the frame


def test_a_log_spaced_positive_grid_gets_a_log_axis_and_a_linear_one_stays_linear(tmp_path):
    from xbarsim.sweep.plot import grid_scale, plot_rows

    written = plot_rows(_rows("device.drift_t_s", [1.0, 10.0, 100.0, 1000.0]),
                        ["device.drift_t_s"], tmp_path / "a", "t")
    assert written.figures[0].axes[0].get_xscale() == "log"
    assert written.figures[0].axes[0].get_xlabel() == "time since programming (s)"
    written = plot_rows(_rows("device.variation_rel", [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]),
                        ["device.variation_rel"], tmp_path / "b", "t")
    assert written.figures[0].axes[0].get_xscale() == "linear"
    assert grid_scale([1, 2, 5, 10, 20, 50, 100]) == ("log", None)     # 1-2-5 decades
    assert grid_scale([0, 1e-4, 1e-3, 1e-2, 1e-1]) == ("symlog", 1e-4)
    assert grid_scale([1, 11, 21, 31, 41]) == ("linear", None)       # evenly spaced
    assert grid_scale([0, 1, 2, 3]) == ("linear", None)
    assert grid_scale([-10, 0, 10, 100, 1000]) == ("linear", None)   # negative values
    assert grid_scale([0.1, 1, 10]) == ("log", None)
    assert grid_scale(["uniform", "bernoulli"]) == ("linear", None)


def test_every_sweepable_parameter_has_a_human_label_with_its_declared_unit():
    from xbarsim.sweep.params import _fields, parameter_names
    from xbarsim.sweep.plot import axis_label

    prefixes = {1: "", 1e-3: "k", 1e9: "n", 1e12: "p"}
    for path in parameter_names():
        label, scale = axis_label(path)
        assert label != path and "_" not in label.replace("R_on", "").replace(
            "R_off", "").replace("V_read", "").replace("G_max", "").replace("G_min", ""), path
        unit = _fields()[path].metadata.get("unit", "")
        if unit and unit != "LSB":
            assert label.endswith(f" ({prefixes[scale]}{unit})"), (path, label)
    assert axis_label("device.r_driver_ohm") == ("driver resistance (Ω)", 1)
    assert axis_label("device.c_ifc_f") == ("IFC integration capacitance (pF)", 1e12)
    assert axis_label("device.read_noise_rel") == ("read noise, σ of G / G per read (%)", 100)


def test_one_seed_says_seed_and_draws_no_error_bars(tmp_path):
    net = tmp_path / "tiny.yaml"
    net.write_text(TINY)
    out = tmp_path / "res"
    xbarsim.sweep(net, {"engine.encoding": ["uniform", "burst"]}, seeds=1, samples=4, out=out,
                  as_frame=False)
    written = xbarsim.sweep.plot_dir(out, tmp_path / "png")
    for fig in written.figures:
        ax = fig.axes[0]
        assert "1 seed\n" in ax.get_title() and "1 seeds" not in ax.get_title()
        assert all(not c.has_yerr for c in ax.containers)  # no "± 0.00" bars


def test_several_seeds_keep_their_error_bars(tmp_path):
    from xbarsim.sweep.plot import plot_rows

    written = plot_rows(_rows("device.read_noise_rel", [0.0, 0.1, 0.2], seeds=(0, 1)),
                        ["device.read_noise_rel"], tmp_path, "t")
    assert all(c.has_yerr for c in written.figures[0].axes[0].containers)


def test_sweep_summary_with_one_seed_prints_no_plus_minus(tmp_path, capsys):
    net = tmp_path / "tiny.yaml"
    net.write_text(TINY)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"network: {net}\nsamples: 4\nseeds: 1\n"
                     "grid:\n  engine.encoding: [uniform, burst]\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 points x 1 seed = 2 runs" in out
    assert "±" not in out and re.search(r"\d+\.\d\d %", out)


# ------------------------------------------------------------------------------------------------
# item 6: cost charts
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_cost(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", LENET, "--out", str(out), "--no-charts", "--json"]) == 0
    return json.loads((out / "cost.json").read_text())


def test_energy_chart_shows_every_component_on_a_log_panel_with_headroom(lenet_cost, tmp_path,
                                                                         capsys):
    from xbarsim.cost.charts import draw_cost_charts

    capsys.readouterr()
    energy = draw_cost_charts(lenet_cost, tmp_path).figure("cost-energy.png")
    stacked, each = energy.axes[:2]
    tallest = max(p.get_y() + p.get_height() for p in stacked.patches)
    assert stacked.get_ylim()[1] >= 1.05 * tallest  # headroom: no bar touches the frame
    assert each.get_yscale() == "log"
    lo, hi = each.get_ylim()
    # every layer's every non-zero component has a bar of its own (nJ) inside the panel
    names = [lay["name"] for lay in lenet_cost["layers"] if lay["type"] != "flatten"]
    heights = {}
    for p in each.patches:
        if np.isfinite(p.get_height()):
            heights.setdefault(round(p.get_x() + p.get_width() / 2), []).append(p.get_height())
    for i, name in enumerate(names):
        layer = next(lay for lay in lenet_cost["layers"] if lay["name"] == name)
        values = sorted(v * 1e9 for v in layer["energy_per_image_j"].values() if v > 0)
        assert sorted(heights.get(i, [])) == pytest.approx(values, rel=1e-9), name
        assert all(v >= lo for v in values if v >= hi * 1e-6)
    statics = [lay["energy_per_image_j"]["static"] / sum(lay["energy_per_image_j"].values())
               for lay in lenet_cost["layers"] if lay["energy_per_image_j"].get("static")]
    assert f"static energy is {100 * min(statics):.0f}-{100 * max(statics):.0f} %" in \
        each.get_title()


def test_time_chart_legend_is_narrower_than_the_plot(lenet_cost, tmp_path):
    from xbarsim.cost.charts import draw_cost_charts

    time = draw_cost_charts(lenet_cost, tmp_path).figure("cost-time.png")
    ax = time.axes[0]
    renderer = time.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.width < 0.6 * ax.get_window_extent(renderer).width
    top = max(p.get_height() for p in ax.patches)
    assert ax.get_ylim()[1] >= 1.05 * top


# ------------------------------------------------------------------------------------------------
# item 6: trace plot
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_trace(tmp_path):
    from xbarsim.engine.trace import TraceWriter

    (tmp_path / "tiny.yaml").write_text(TINY)
    net = xbarsim.load_network(tmp_path / "tiny.yaml")
    images, _ = xbarsim.datasets.synthetic(net.spec.input_shape, 4, seed=1)
    writer = TraceWriter(tmp_path / "tr", net.spec)
    xbarsim.Simulator(net).run(images, trace=writer)
    writer.close()
    return tmp_path / "tr"


def test_trace_plot_draws_each_figure_once(tiny_trace, tmp_path, monkeypatch):
    """Axes shared across subfigures redrew the whole raster on every set_xlim/set_ylim (about
    50 draws of a 4 x 4 raster, ~28 s of CPU); now each figure is drawn once, when saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from xbarsim.engine.trace import plot_trace

    draws = []
    original = FigureCanvasAgg.draw

    def counting(self, *a, **k):
        draws.append(self.figure)
        return original(self, *a, **k)

    monkeypatch.setattr(FigureCanvasAgg, "draw", counting)
    written = plot_trace(tiny_trace, tmp_path / "png", max_images=4)
    # savefig's dry run (it stops at the first artist, to lay out the figure) and the draw
    assert [draws.count(f) for f in written.figures] == [2, 2]
    raster = written.figures[0]
    assert len(raster.axes) == 4 * 2
    # the same limits in every row of a column, as shared axes gave
    assert len({ax.get_ylim() for ax in raster.axes[1::2]}) == 1


def test_trace_plot_fc_markers_are_visible(tiny_trace, tmp_path):
    from xbarsim.engine.trace import plot_trace
    from xbarsim.engine.trace_plot import raster_marker

    raster = plot_trace(tiny_trace, tmp_path / "png", max_images=2).figures[0]
    conv, fc = raster.axes[0], raster.axes[1]  # conv1 (144 neurons), fc1 (10 neurons)
    size = fc.collections[0].get_sizes()[0]
    assert size >= 5 ** 2  # a tick at least 5 points tall (it was 1.2)
    assert fc.collections[0].get_linewidths()[0] >= 1
    assert conv.collections[0].get_sizes()[0] < size
    assert raster_marker(4608) == (pytest.approx(1.44), 0.6)  # a dense layer as before


# ------------------------------------------------------------------------------------------------
# item 7: xbarsim spice at an active position by default
# ------------------------------------------------------------------------------------------------
def _driven_rows(text: str) -> int:
    return sum(1 for ln in text.splitlines()
               if ln.startswith("Vd") and float(ln.split()[-1]) != 0)


def test_spice_tile_defaults_to_the_most_active_position(tmp_path, capsys):
    argv = ["spice", LENET, "--layer", "conv2", "--tile", "1,0", "--cycle", "3"]
    assert main(argv + ["--out", str(tmp_path / "d.cir")]) == 0
    out = capsys.readouterr().out.splitlines()
    m = re.fullmatch(r"conv2: position (\d+) \(oy (\d+), ox (\d+)\) of 64: the most rows of tile "
                     r"1,0 spiking in cycle 3 for image 0 \(--position to choose another\)",
                     out[0])
    assert m, out
    pos = int(m[1])
    assert pos != 0 and (int(m[2]), int(m[3])) == divmod(pos, 8)
    chosen = (tmp_path / "d.cir").read_text()
    assert f" position {pos} cycle 3" in chosen.splitlines()[0]
    assert _driven_rows(chosen) > 0
    assert main(argv + ["--position", "0", "--out", str(tmp_path / "p0.cir")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'p0.cir'}\n"  # asked for: no note
    assert _driven_rows((tmp_path / "p0.cir").read_text()) == 0  # the corner: nothing spikes
    # the netlist on stdout stays a netlist: the note goes to stderr
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert cap.out == chosen and cap.err.startswith(f"conv2: position {pos} ")


def test_most_active_breaks_ties_by_the_second_measure_then_the_lower_index():
    from xbarsim.spice.cases import most_active

    assert most_active(np.array([0, 3, 3, 1], np.uint64), np.array([9, 1, 2, 0])) == 2
    assert most_active(np.zeros(4, np.uint8), np.array([0, 5, 5, 1])) == 1
    assert most_active(np.zeros(3), np.zeros(3)) == 0


@pytest.mark.spice
@needs_ngspice
def test_spice_run_hints_when_the_position_is_idle(capsys):
    argv = ["spice", LENET, "--layer", "conv2", "--tile", "1,0", "--cycle", "3", "--run"]
    assert main(argv + ["--position", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("0 of 32 rows spike in cycle 3")
    assert re.fullmatch(r"hint: no row of tile 1,0 spikes in cycle 3, so every current is 0 "
                        r"\(position 0, image 0\); to compare an active case choose --cycle \d+ "
                        r"\(\d+ rows spike in it here\) or another --position", lines[-1])
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("conv2: position ")
    assert lines[2].endswith("rows spike in cycle 3; IFC input currents (A) of the pos "
                             "array's tile 1,0:") and int(lines[2].split()[0]) > 0
    assert not lines[-1].startswith("hint:")


@pytest.mark.spice
@needs_ngspice
def test_spice_column_defaults_to_where_its_ifc_fires_most(capsys):
    assert main(["spice", LENET, "--layer", "conv1", "--column", "0", "--run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"conv1: position \d+ \(oy \d+, ox \d+\) of 576: the most IFC spikes of "
                    r"column 0 for image 0", lines[0])
    n_xb, n_sp = (int(v) for v in lines[-1].split()[:2])
    assert n_xb > 0 and n_xb == n_sp
    assert main(["spice", LENET, "--layer", "conv1", "--column", "0", "--position", "0",
                 "--run"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("hint: column 0's IFC never fires here, so both counts are 0 "
                           "(position 0, image 0)")


# ------------------------------------------------------------------------------------------------
# item 3: the CPU-only torch install
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", ["README.md", "docs/training.md", "docs/interop.md"])
def test_cpu_only_torch_install_is_documented(doc):
    text = (ROOT / doc).read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in text
    # before the extras, so pip finds torch installed and does not fetch the CUDA build
    cpu = text.index("download.pytorch.org/whl/cpu")
    assert re.search(r"pip install [^\n]*\.\[[a-z,]*train", text[cpu:]), doc


# ------------------------------------------------------------------------------------------------
# item 9: table5 --out, reprs
# ------------------------------------------------------------------------------------------------
def test_table5_header_never_names_the_users_folders(tmp_path, monkeypatch):
    from xbarsim.commands.table5 import _command

    monkeypatch.chdir(tmp_path)
    inside = tmp_path / "docs" / "t.md"
    monkeypatch.setattr(sys, "argv", ["xbarsim", "table5", "--ideal", "--out", str(inside)])
    assert _command() == "xbarsim table5 --ideal --out docs/t.md"
    elsewhere = tmp_path.parent / "other" / "t5.md"
    monkeypatch.setattr(sys, "argv", ["xbarsim", "table5", f"--out={elsewhere}"])
    assert _command() == "xbarsim table5 --out=t5.md"
    monkeypatch.setattr(sys, "argv", ["xbarsim", "table5", "--out", "docs/table5.md"])
    assert _command() == "xbarsim table5 --out docs/table5.md"  # as typed


@pytest.mark.slow
def test_table5_out_file_holds_no_absolute_path(tmp_path, monkeypatch, capsys):
    out = tmp_path / "t5.md"
    argv = ["table5", "--ideal", "--lenet-images", "1", "--alexnet-images", "1",
            "--resnet-images", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["xbarsim"] + argv)
    monkeypatch.chdir(tmp_path.parent)
    assert main(argv) == 0
    text = out.read_text()
    assert str(tmp_path) not in text and f"--out {tmp_path.name}/t5.md" in text


def test_run_result_and_layer_stats_print_a_summary(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    net = xbarsim.load_network(tmp_path / "tiny.yaml")
    images, _ = xbarsim.datasets.synthetic(net.spec.input_shape, 40, seed=1)
    res = xbarsim.Simulator(net).run(images, keep="all")
    text = repr(res)
    assert "array(" not in text and len(text.splitlines()) <= 3 + len(res.stats) + 1
    lines = text.splitlines()
    assert lines[0].startswith("RunResult: 40 images, predictions [")
    assert lines[0].endswith(" …]")
    same = int(np.sum(res.predictions == res.ideal_predictions))
    assert f"equal to the ideal integer network's: {same} of 40" in lines[1]
    assert "counts kept: conv1 int32 (40, 4, 6, 6)" in text
    assert re.search(r"^  conv1 +conv +[\d,.]+ +[\d,.]+ +[\d.]+ % +\w+$", text, re.M), text
    stats = res.stats["conv1"]
    line = repr(stats)
    assert "\n" not in line and "array(" not in line
    assert line.startswith(f"LayerStats(conv1, conv: 40 images, {stats.neurons} neurons, ")
    assert f"spikes_out {stats.spikes_out:,}" in line
    assert f"row_pulses int64 {stats.row_pulses.shape} sum {int(stats.row_pulses.sum()):,}" \
        in line
