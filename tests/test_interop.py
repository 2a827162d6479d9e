"""Bring your own network (issue 12): ``Network.save``, PyTorch import (``xbarsim.from_torch``,
``xbarsim import MODEL.pt2``), NIR export/import, NIRData traces, and the one-line errors of
unsupported modules, ops and NIR nodes (docs/interop.md)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import xbarsim as xs
from xbarsim.cli import main
from xbarsim.errors import XbarsimError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "networks").glob("*.yaml"))
FAST = [p for p in SHIPPED if p.name.startswith("lenet")]
SLOW = [p for p in SHIPPED if not p.name.startswith("lenet")]  # alexnet, resnet18: big


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def same_network(a, b) -> bool:
    if tuple(replace(l, line=0) for l in a.spec.layers) != \
            tuple(replace(l, line=0) for l in b.spec.layers):
        return False
    sa, sb = a.spec, b.spec
    keys = ("name", "input_shape", "signal_bits", "weight_bits", "input_bits", "crossbar_size",
            "bias_mode", "dataset", "seed")
    if any(getattr(sa, k) != getattr(sb, k) for k in keys):
        return False
    if replace(sa.device, file="") != replace(sb.device, file=""):
        return False
    return all(np.array_equal(a.weights[k].levels, b.weights[k].levels)
               and np.array_equal(a.weights[k].bias, b.weights[k].bias)
               and a.weights[k].theta == b.weights[k].theta
               and a.weights[k].step == b.weights[k].step for k in a.weights) \
        and set(a.weights) == set(b.weights)


def images_for(spec, n):
    from xbarsim.io import datasets

    return datasets.load_dataset(spec.dataset, split="test", limit=n, download=False)[0]


# -- Network.save (core install) ------------------------------------------------------------------
@pytest.mark.parametrize("path", FAST + [pytest.param(p, marks=pytest.mark.slow) for p in SLOW],
                         ids=lambda p: p.stem)
def test_save_loads_back_the_same_network(path, tmp_path):
    net = xs.load_network(path)
    saved = net.save(tmp_path / "sub" / "copy.yaml")
    assert saved.with_suffix(".npz").is_file()
    back = xs.load_network(saved)
    assert same_network(net, back)


def test_core_import_needs_neither_torch_nor_nir():
    code = ("import sys, xbarsim; assert callable(xbarsim.__getattr__); "
            "print(sorted(m for m in ('torch', 'nir', 'h5py') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- NIR export → import ------------------------------------------------------------------------------
def _round_trip(path, tmp_path, capsys, n_images):
    pytest.importorskip("nir")
    out = tmp_path / "net.nir"
    rc, text, err = run_cli(capsys, "export", path, "--nir", out)
    assert (rc, err) == (0, "")
    rc, text, err = run_cli(capsys, "import", out, "--out", tmp_path / "back.yaml")
    assert (rc, err) == (0, ""), err
    assert "exact (xbarsim graph)" in text
    net, back = xs.load_network(path), xs.load_network(tmp_path / "back.yaml")
    assert same_network(net, back)
    images = images_for(net.spec, n_images)
    a = xs.Simulator(net).run(images, keep="all")
    b = xs.Simulator(back).run(images, keep="all")
    assert set(a.counts) == set(b.counts)
    for name in a.counts:
        assert np.array_equal(a.counts[name], b.counts[name]), name
    assert np.array_equal(a.predictions, b.predictions)


@pytest.mark.nir
@pytest.mark.parametrize("path", FAST, ids=lambda p: p.stem)
def test_nir_round_trip_gives_identical_counts(path, tmp_path, capsys):
    _round_trip(path, tmp_path, capsys, 256)


@pytest.mark.nir
@pytest.mark.slow
@pytest.mark.parametrize("path", SLOW, ids=lambda p: p.stem)
def test_nir_round_trip_gives_identical_counts_big_networks(path, tmp_path, capsys):
    # ResNet-18 runs ≈30 images/s at 4 bits and far fewer at 8: 16 images cover every layer
    _round_trip(path, tmp_path, capsys, 16 if path.name.startswith("resnet18") else 256)


@pytest.mark.nir
def test_exported_graph_says_what_nir_cannot(tmp_path):
    nir = pytest.importorskip("nir")
    from xbarsim.interop.nir_io import META_KEYS, write_nir

    net = xs.load_network(ROOT / "networks" / "lenet-mnist-4b.yaml")
    write_nir(net, tmp_path / "n.nir")
    g = nir.read(str(tmp_path / "n.nir"))  # type-checked read: the graph is valid NIR
    assert set(META_KEYS) <= set(g.metadata)
    assert g.metadata["xbarsim.reset"] == "subtract"
    assert int(g.metadata["xbarsim.window_cycles"]) == 15
    assert type(g.nodes["conv1"]).__name__ == "Conv2d"
    assert type(g.nodes["pool1"]).__name__ == "SumPool2d"
    assert g.nodes["pool1"].metadata["xbarsim.op"] == "maxpool"
    assert np.all(g.nodes["fc2.if"].v_threshold == net.weights["fc2"].theta)
    assert np.array_equal(g.nodes["fc1"].weight, net.weights["fc1"].levels)


# -- NIRData traces ---------------------------------------------------------------------------------------
@pytest.mark.nir
def test_nirdata_trace_counts_equal_saved_counts(tmp_path, capsys):
    nir = pytest.importorskip("nir")
    net = ROOT / "networks" / "lenet-mnist-4b.yaml"
    rc, out, err = run_cli(capsys, "run", net, "--samples", 12, "--batch", 5, "--trace",
                           tmp_path / "tr", "--trace-format", "nir", "--trace-images", "1-3,7,11",
                           "--save-counts", tmp_path / "c.npz", "--no-progress")
    assert rc == 0, err
    data = nir.read_data(str(tmp_path / "tr" / "trace.nir"))
    counts = np.load(tmp_path / "c.npz")
    spec = xs.load_network_spec(net)
    assert set(data.nodes) == {f"{l.name}.if" for l in spec.compute_layers}
    for layer in spec.compute_layers:
        ev = data.nodes[f"{layer.name}.if"].observables["spikes"]
        assert ev.n_neurons == layer.n_outputs and ev.t_max == 15.0
        assert ev.idx.shape[0] == 5
        per = np.stack([np.bincount(r[r >= 0], minlength=ev.n_neurons) for r in ev.idx])
        want = counts[layer.name][[1, 2, 3, 7, 11]].reshape(5, -1)
        assert np.array_equal(per, want), layer.name
        t = ev.time[ev.idx >= 0]
        assert t.min() >= 0 and t.max() < 15
    rc, out, err = run_cli(capsys, "trace", "plot", tmp_path / "tr")
    assert rc == 0 and (tmp_path / "tr" / "raster.png").is_file()
    from xbarsim.engine import trace_nir
    from xbarsim.engine.trace import TRACE_DTYPE, read_trace
    assert trace_nir.TRACE_DTYPE == TRACE_DTYPE
    tr = read_trace(tmp_path / "tr")
    assert tr["_manifest"]["images"] == [1, 2, 3, 7, 11]
    assert sorted(set(tr["fc2"]["image"].tolist())) <= [1, 2, 3, 7, 11]


# -- PyTorch import: the CNN of the issue -----------------------------------------------------------------
def _cnn_class():
    import torch.nn.functional as F
    from torch import nn

    class SmallCNN(nn.Module):
        """conv + batch norm, a residual add, max- and average-pool, two Linear layers."""

        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.pool1 = nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
            self.pool2 = nn.AvgPool2d(2)
            self.drop = nn.Dropout(0.1)
            self.fc1, self.fc2 = nn.Linear(16 * 7 * 7, 32), nn.Linear(32, 10)

        def forward(self, x):
            a = F.relu(self.bn1(self.conv1(x)))
            b = F.relu(self.bn2(self.conv2(a)))
            x = self.pool1(a + b)
            x = self.pool2(F.relu(self.conv3(x)))
            x = x.view(x.size(0), -1)
            return self.fc2(self.drop(F.relu(self.fc1(x))))

    return SmallCNN


@pytest.fixture(scope="module")
def trained_cnn():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from xbarsim.io import datasets

    torch.manual_seed(0)
    torch.set_num_threads(1)
    tr_x, tr_y = datasets.load_dataset("mnist", split="train", limit=4000, download=False)
    model = _cnn_class()()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x = torch.from_numpy(tr_x).float() / 255
    y = torch.from_numpy(tr_y.astype(np.int64))
    model.train()
    for lo in range(0, len(x), 64):  # one epoch
        opt.zero_grad()
        F.cross_entropy(model(x[lo:lo + 64]), y[lo:lo + 64]).backward()
        opt.step()
    model.eval()
    return model, tr_x


@pytest.mark.train
@pytest.mark.slow  # about a minute on two busy cores: 1,000 images cycle by cycle at M = 8
def test_torch_cnn_imports_at_8_bits(trained_cnn):
    import torch
    from xbarsim.io import datasets

    model, tr_x = trained_cnn
    te_x, te_y = datasets.load_dataset("mnist", split="test", limit=1000, download=False)
    with torch.no_grad():
        float_pred = model(torch.from_numpy(te_x).float() / 255).argmax(1).numpy()
    float_acc = float(np.mean(float_pred == te_y))
    assert float_acc > 0.8  # one epoch on 4,000 images
    net = xs.from_torch(model, torch.zeros(1, 1, 28, 28), signal_bits=8, weight_bits=8,
                        calibration=tr_x[:1000], name="small-cnn")
    assert [l.kind for l in net.layers] == ["conv", "conv", "add", "maxpool", "conv", "avgpool",
                                            "flatten", "fc", "fc"]
    ideal = xs.run_ideal(net, net.quantize_input(te_x)).predictions
    assert np.mean(ideal == float_pred) >= 0.97
    cycle = xs.Simulator(net).run(te_x).accuracy(te_y)
    assert abs(cycle - float_acc) <= 0.01
    assert model.training is False


@pytest.mark.train
def test_pt2_file_imports_from_the_command_line(trained_cnn, tmp_path, capsys):
    import torch

    model, _ = trained_cnn
    ep = torch.export.export(model, (torch.zeros(4, 1, 28, 28),))  # a fixed batch of 4
    torch.export.save(ep, str(tmp_path / "cnn.pt2"))
    rc, out, err = run_cli(capsys, "import", tmp_path / "cnn.pt2", "--bits", "6,6",
                           "--calibrate", "mnist", "--samples", 300,
                           "--out", tmp_path / "cnn.yaml")
    assert (rc, err) == (0, ""), err
    assert "batch norm bn1 folded in" in out and "agrees with the float model on" in out
    net = xs.load_network(tmp_path / "cnn.yaml")
    assert (net.signal_bits, net.weight_bits, net.name) == (6, 6, "cnn")
    agree = float(out.split("agrees with the float model on ")[1].split("%")[0])
    assert agree >= 95.0


@pytest.mark.train
def test_unsupported_torch_model_is_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from torch import nn

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(72, 3))
    torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, 1, 8, 8),)),
                      str(tmp_path / "m.pt2"))
    np.save(tmp_path / "cal.npy", np.zeros((3, 1, 8, 8), np.uint8))
    rc, out, err = run_cli(capsys, "import", tmp_path / "m.pt2", "--bits", "4,4", "--calibrate",
                           tmp_path / "cal.npy", "--out", tmp_path / "m.yaml")
    assert (rc, out) == (2, "")
    assert err == (f"{tmp_path / 'm.pt2'}: 1 (Tanh): activation not supported: an IFC with its "
                   "counter is a ReLU, nothing else (got aten.tanh)\n")
    assert not (tmp_path / "m.yaml").exists()


# -- NIR graphs of other tools -----------------------------------------------------------------------------
def _mlp(tr_x, tr_y, hidden=64):
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x = torch.from_numpy(tr_x).float() / 255
    y = torch.from_numpy(tr_y.astype(np.int64))
    for lo in range(0, len(x), 64):
        opt.zero_grad()
        F.cross_entropy(model(x[lo:lo + 64]), y[lo:lo + 64]).backward()
        opt.step()
    return model.eval()


@pytest.mark.nir
@pytest.mark.train
def test_snntorch_graph_imports_and_runs(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    nir = pytest.importorskip("nir")
    snn = pytest.importorskip("snntorch")
    export_to_nir = pytest.importorskip("snntorch.export_nir").export_to_nir
    from torch import nn
    from xbarsim.io import datasets

    torch.set_num_threads(1)
    tr_x, tr_y = datasets.load_dataset("mnist", split="train", limit=3000, download=False)
    te_x, te_y = datasets.load_dataset("mnist", split="test", limit=500, download=False)
    mlp = _mlp(tr_x, tr_y)
    with torch.no_grad():
        float_pred = mlp(torch.from_numpy(te_x).float() / 255).argmax(1).numpy()
    # the same weights in snnTorch, leak-free neurons (beta = 1), exported by snnTorch itself
    ones = torch.ones
    snet = nn.Sequential(mlp[1], snn.Leaky(beta=ones(64), threshold=ones(64), init_hidden=True),
                         mlp[3], snn.Leaky(beta=ones(10), threshold=ones(10), init_hidden=True,
                                           output=True))
    with np.errstate(divide="ignore"):
        graph = export_to_nir(snet, torch.zeros(784))
    nir.write(str(tmp_path / "snn.nir"), graph)
    rc, out, err = run_cli(capsys, "import", tmp_path / "snn.nir", "--bits", "8,8",
                           "--calibrate", "mnist", "--samples", 1000, "--out",
                           tmp_path / "snn.yaml")
    assert (rc, err) == (0, ""), err
    net = xs.load_network(tmp_path / "snn.yaml")
    assert [l.kind for l in net.layers] == ["fc", "fc"] and net.input_shape == (1, 28, 28)
    res = xs.Simulator(net).run(te_x)
    assert np.mean(res.ideal_predictions == float_pred) >= 0.95
    assert res.accuracy(te_y) >= np.mean(float_pred == te_y) - 0.03


@pytest.mark.nir
@pytest.mark.train
def test_hand_built_if_graph_with_conv_and_pools_imports(tmp_path):
    nir = pytest.importorskip("nir")
    pytest.importorskip("torch")
    from xbarsim.interop.nir_io import read_nir

    rng = np.random.default_rng(0)
    nodes = {
        "in": nir.Input(input_type={"input": np.array([1, 28, 28])}),
        "c": nir.Conv2d(input_shape=np.array([28, 28]), weight=rng.normal(0, .3, (4, 1, 5, 5)),
                        stride=np.array([1, 1]), padding=np.array([0, 0]),
                        dilation=np.array([1, 1]), groups=1, bias=np.zeros(4)),
        "n": nir.IF(r=np.ones((4, 24, 24)), v_threshold=np.full((4, 24, 24), 2.0)),
        "p": nir.SumPool2d(kernel_size=np.array([4, 4]), stride=np.array([4, 4]),
                           padding=np.array([0, 0])),
        "f": nir.Flatten(input_type={"input": np.array([4, 6, 6])}, start_dim=0),
        "a": nir.Affine(weight=rng.normal(0, .1, (10, 144)), bias=np.zeros(10)),
        "o": nir.IF(r=np.ones(10), v_threshold=np.ones(10)),
        "out": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("in", "c"), ("c", "n"), ("n", "p"), ("p", "f"), ("f", "a"), ("a", "o"),
             ("o", "out")]
    nir.write(str(tmp_path / "g.nir"), nir.NIRGraph(nodes=nodes, edges=edges))
    images = images_for(xs.load_network_spec(ROOT / "networks" / "lenet-mnist-4b.yaml"), 200)
    res = read_nir(tmp_path / "g.nir", images, signal_bits=6, weight_bits=6)
    assert [l.kind for l in res.network.layers] == ["conv", "avgpool", "flatten", "fc"]
    assert res.agreement >= 0.9
    run = xs.Simulator(res.network).run(images[:50])
    assert run.images == 50


# -- unsupported modules, ops and NIR nodes: one exact line each -----------------------------------------------
TORCH_CASES = {
    # name: (model factory, expected message after "<Class>: ")
    "gelu": ("M", "body.1 (GELU): activation not supported: an IFC with its counter is a ReLU, "
                  "nothing else (got aten.gelu)"),
    "sigmoid": ("M", "body.1 (Sigmoid): activation not supported: an IFC with its counter is a "
                     "ReLU, nothing else (got aten.sigmoid)"),
    "cat": ("Sequential", "0 (Cat): op not supported (xbarsim maps Conv2d, Linear, ReLU, "
                          "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (exact), Flatten, BatchNorm2d "
                          "after Conv2d, Dropout, Identity and x + y) (got aten.cat)"),
    "groups": ("M", "body.2 (Conv2d): grouped/depthwise convolution is not supported (groups "
                    "must be 1) (got 2)"),
    "dilation": ("M", "body.0 (Conv2d): dilated convolution is not supported (dilation must be "
                      "1) (got 2)"),
    "mul": ("M", "body (Mul): op not supported (xbarsim maps Conv2d, Linear, ReLU, MaxPool2d, "
                 "AvgPool2d, AdaptiveAvgPool2d (exact), Flatten, BatchNorm2d after Conv2d, "
                 "Dropout, Identity and x + y) (got aten.mul)"),
    "maxpool_padding": ("M", "body.2 (MaxPool2d): pooling with padding is not supported "
                             "(got aten.max_pool2d)"),
    "adaptive_inexact": ("M", "body.2 (AdaptiveAvgPool2d): AdaptiveAvgPool2d to 3x3 from 8x8 is "
                              "not a plain square average pool (only exact cases map) "
                              "(got [3, 3])"),
    "linear_on_map": ("NoFlat", "fc (Linear): Linear on a 4x8x8 feature map: flatten it first "
                                "(x.flatten(1)) (got [4, 8, 8])"),
    "batchnorm_after_linear": ("BN1", "bn (BatchNorm1d): BatchNorm2d must follow a Conv2d "
                                      "directly, as its only user (it is folded into the conv's "
                                      "weights) (got aten.batch_norm)"),
    "rectangular_kernel": ("M", "body.0 (Conv2d): kernel must be square for a crossbar layer "
                                "(got [3, 1])"),
}


def _torch_case(name):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class M(nn.Module):
        def __init__(self, body, head_in=4 * 8 * 8):
            super().__init__()
            self.body, self.fc = body, nn.Linear(head_in, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.body(x), 1))

    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return torch.cat([F.relu(self.c(x)), F.relu(self.c(x))], 1)

    class Mul(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return F.relu(self.c(x)) * 2

    class NoFlat(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(F.relu(self.c(x)))

    class BN1(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.bn, self.out = nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)

        def forward(self, x):
            return self.out(F.relu(self.bn(self.fc(torch.flatten(x, 1)))))

    conv = lambda **kw: nn.Conv2d(1, 4, 3, padding=1, **kw)  # noqa: E731
    return {
        "gelu": lambda: M(nn.Sequential(conv(), nn.GELU())),
        "sigmoid": lambda: M(nn.Sequential(conv(), nn.Sigmoid())),
        "cat": lambda: nn.Sequential(Cat(), nn.Flatten(), nn.Linear(4 * 64, 3)),
        "groups": lambda: M(nn.Sequential(conv(), nn.ReLU(),
                                          nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU())),
        "dilation": lambda: M(nn.Sequential(nn.Conv2d(1, 4, 3, padding=2, dilation=2), nn.ReLU())),
        "mul": lambda: M(Mul()),
        "maxpool_padding": lambda: M(nn.Sequential(conv(), nn.ReLU(), nn.MaxPool2d(3, 1, 1))),
        "adaptive_inexact": lambda: M(nn.Sequential(conv(), nn.ReLU(), nn.AdaptiveAvgPool2d(3)),
                                      4 * 9),
        "linear_on_map": NoFlat,
        "batchnorm_after_linear": BN1,
        "rectangular_kernel": lambda: M(nn.Sequential(nn.Conv2d(1, 4, (3, 1), padding=(1, 0)),
                                                      nn.ReLU())),
    }[name]()


@pytest.mark.train
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_error_corpus(case):
    torch = pytest.importorskip("torch")
    from xbarsim.errors import ConfigError

    cls, message = TORCH_CASES[case]
    with pytest.raises(ConfigError) as info:
        xs.from_torch(_torch_case(case), torch.zeros(1, 1, 8, 8), 4, 4,
                      np.zeros((4, 1, 8, 8), np.uint8))
    assert str(info.value) == f"<{cls}>: {message}"


def _nir_graph(case):
    import nir

    one = np.ones(4)
    aff = lambda: nir.Affine(weight=np.eye(4), bias=np.zeros(4))  # noqa: E731
    neurons = {
        "lif_with_leak": nir.LIF(tau=np.full(4, 0.01), r=one, v_leak=0 * one, v_threshold=one),
        "cuba_lif": nir.CubaLIF(tau_syn=one, tau_mem=one, r=one, v_leak=0 * one, v_threshold=one),
        "leaky_integrator": nir.LI(tau=one, r=one, v_leak=0 * one),
        "delay": nir.Delay(delay=one),
        "nonzero_reset": nir.IF(r=one, v_threshold=one, v_reset=one),
        "if_threshold_zero": nir.IF(r=one, v_threshold=0 * one),
    }
    inp = nir.Input(input_type={"input": np.array([4])})
    out = nir.Output(output_type={"output": np.array([4])})
    if case in neurons:
        nodes = {"input": inp, "w": aff(), "n": neurons[case], "w2": aff(),
                 "n2": nir.IF(r=one, v_threshold=one), "output": out}
        edges = [("input", "w"), ("w", "n"), ("n", "w2"), ("w2", "n2"), ("n2", "output")]
    elif case == "recurrent":
        nodes = {"input": inp, "w": aff(), "n": nir.IF(r=one, v_threshold=one), "rec": aff(),
                 "output": out}
        edges = [("input", "w"), ("w", "n"), ("n", "rec"), ("rec", "n"), ("n", "output")]
    elif case == "if_without_weights":
        nodes = {"input": inp, "n": nir.IF(r=one, v_threshold=one), "w": aff(),
                 "n2": nir.IF(r=one, v_threshold=one), "output": out}
        edges = [("input", "n"), ("n", "w"), ("w", "n2"), ("n2", "output")]
    elif case == "weights_into_weights":
        nodes = {"input": inp, "w": aff(), "w2": aff(), "n2": nir.IF(r=one, v_threshold=one),
                 "output": out}
        edges = [("input", "w"), ("w", "w2"), ("w2", "n2"), ("n2", "output")]
    else:
        raise KeyError(case)
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


NIR_CASES = {
    "lif_with_leak": "n: LIF with leak is not supported: xbarsim's IFCs do not leak (only IF, or "
                     "LIF with tau = inf, map) (got tau = 0.01)",
    "cuba_lif": "n: current-based LIF (CubaLIF) is not supported: xbarsim's IFCs integrate the "
                "column current directly, with no synaptic filter and no leak (got CubaLIF)",
    "leaky_integrator": "n: leaky integrator (LI) is not supported: xbarsim reads out spike "
                        "counts; end the graph with an Affine (+ IF) (got LI)",
    "delay": "n: delay is not supported: xbarsim layers run one window after another, with no "
             "synaptic delays (got Delay)",
    "recurrent": "n: recurrent connection (a cycle of edges) is not supported: xbarsim networks "
                 "are feed-forward (got [n, output, rec])",
    "if_without_weights": "n: neuron without weights before it: xbarsim's neurons sit behind a "
                          "Conv2d/Affine (got [input])",
    "weights_into_weights": "w: weights feed w2 directly: xbarsim needs an IF neuron after every "
                            "Conv2d/Affine (got Affine)",
    "nonzero_reset": "n: v_reset != 0 is not supported (xbarsim resets by subtraction from a "
                     "membrane that starts near 0)",
    "if_threshold_zero": "n: needs positive finite r / v_threshold (a neuron that never fires, "
                         "or fires on negative input, does not map)",
}


@pytest.mark.nir
@pytest.mark.parametrize("case", sorted(NIR_CASES))
def test_nir_error_corpus(case, tmp_path, capsys):
    nir = pytest.importorskip("nir")
    path = tmp_path / f"{case}.nir"
    nir.write(str(path), _nir_graph(case))
    np.save(tmp_path / "cal.npy", np.zeros((2, 1, 2, 2), np.uint8))
    rc, out, err = run_cli(capsys, "import", path, "--bits", "4,4", "--calibrate",
                           tmp_path / "cal.npy", "--input-shape", "1,2,2", "--out",
                           tmp_path / "x.yaml")
    assert (rc, out) == (2, "")
    assert err == f"{path}: {NIR_CASES[case]}\n"


CLI_CASES = {
    ("model.onnx", "--bits", "4,4"): "xbarsim: error: model.onnx: expected a .pt2 "
                                     "(torch.export.save) or .nir file (got .onnx)\n",
    ("m.nir", "--bits", "4"): "xbarsim: error: --bits: expected M,N, e.g. 8,8 (got 4)\n",
    ("m.nir", "--bits", "4,1"): "xbarsim: error: --bits: M must be 1..16 and N 2..16 (got 4,1)\n",
}


@pytest.mark.parametrize("argv", sorted(CLI_CASES), ids=lambda a: "_".join(a))
def test_import_command_errors(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "import", *argv, "--out", "x.yaml")
    assert (rc, out, err) == (2, "", CLI_CASES[argv])


def test_nir_file_that_is_not_hdf5(tmp_path, capsys):
    pytest.importorskip("nir")
    path = tmp_path / "bad.nir"
    path.write_text("not hdf5")
    rc, out, err = run_cli(capsys, "import", path, "--out", tmp_path / "x.yaml")
    assert (rc, out) == (2, "")
    assert err.startswith(f"{path}: not a readable NIR file (") and err.count("\n") == 1


def test_from_torch_is_exposed_lazily():
    pytest.importorskip("torch")
    from xbarsim.interop.torch_import import from_torch

    assert xs.from_torch is from_torch
    with pytest.raises(AttributeError):
        xs.no_such_thing  # noqa: B018
    assert issubclass(type(XbarsimError("x")), Exception)


@pytest.mark.slow
@pytest.mark.nir
@pytest.mark.train
def test_docs_interop_python_blocks_run(tmp_path, monkeypatch, capsys):
    """docs/interop.md's Python examples run as written (in a scratch folder), and the figures
    it quotes for the CNN are the ones the example produces."""
    import re

    pytest.importorskip("torch")
    pytest.importorskip("nir")
    pytest.importorskip("snntorch.export_nir")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "interop.md").read_text(), re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, "run", ROOT / "networks" / "lenet-mnist-4b.yaml", "--samples", 3,
                         "--trace", "DIR", "--trace-format", "nir", "--no-progress")
    assert rc == 0, err
    env: dict = {}
    for code in blocks:
        with np.errstate(divide="ignore"):
            exec(compile(code, "docs/interop.md", "exec"), env)  # noqa: S102 - our own docs
    import torch

    res, model = env["res"], env["model"].eval()
    with torch.no_grad():
        float_pred = model(torch.from_numpy(env["test_x"]).float() / 255).argmax(1).numpy()
    # torch's CPU kernels differ between machines (the same seed trained 90.7 % on one of ours
    # and 91.7 % on another), so the float figure is checked as the docs state it: about 91 %
    float_acc = 100 * np.mean(float_pred == env["test_y"])
    assert 89.0 <= float_acc <= 93.0, float_acc
    assert np.mean(res.ideal_predictions == float_pred) >= 0.99
    assert abs(100 * res.accuracy(env["test_y"]) - float_acc) <= 1.0, res.accuracy(env["test_y"])
    assert (tmp_path / "small-cnn.yaml").is_file() and (tmp_path / "snn.nir").is_file()
    assert env["counts"].shape == (3, env["ev"].n_neurons)


@pytest.mark.nir
def test_xbarsim_graph_with_a_path_for_a_layer_name_is_refused(tmp_path, capsys):
    nir = pytest.importorskip("nir")
    import json

    from xbarsim.interop.nir_io import to_nir

    graph = to_nir(xs.load_network(ROOT / "networks" / "lenet-mnist-4b.yaml"))
    desc = json.loads(graph.metadata["xbarsim.network"])
    desc["layers"][0]["name"] = "../../escape"
    graph.metadata["xbarsim.network"] = json.dumps(desc)
    nir.write(str(tmp_path / "g.nir"), graph)
    rc, out, err = run_cli(capsys, "import", tmp_path / "g.nir", "--out", tmp_path / "x.yaml")
    assert (rc, out) == (2, "")
    assert err == (f"{tmp_path / 'g.nir'}: xbarsim.network: layer names must be letters, digits, "
                   "'_', '.' or '-' (got ../../escape)\n")


@pytest.mark.train
def test_core_aten_program_imports_like_the_training_ir():
    """A .pt2 saved after run_decompositions() (convolution, addmm, native batch norm, max-pool
    with indices) gives the same network as the default export."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from xbarsim.interop.torch_import import import_exported

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 13 * 13, 10)).eval()
    model[1].running_mean.uniform_(-0.1, 0.1)
    model[1].running_var.uniform_(0.5, 2.0)
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    ep = torch.export.export(model, (torch.zeros(2, 1, 28, 28),))
    a = import_exported(ep, images, signal_bits=6, weight_bits=6, name="t")
    b = import_exported(ep.run_decompositions(), images, signal_bits=6, weight_bits=6, name="t")
    assert [l.kind for l in a.network.layers] == ["conv", "maxpool", "flatten", "fc"]
    assert same_network(a.network, b.network)
    assert a.agreement == b.agreement and a.agreement >= 0.9
