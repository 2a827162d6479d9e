"""The w/o baseline of the CIFAR-10 networks (issue 11): direct quantization of a float network as
an integer file — the same rounding as loading the float-form file where the network has no
residual adds, and one count scale per add group where it has (ResNet-18)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train
pytest.importorskip("torch")

PLAIN = """\
name: tinyconv
dataset: cifar10
input: {shape: [3, 8, 8]}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: c1, type: conv, out_channels: 4, kernel: 3, padding: 1}
  - {name: p1, type: maxpool, kernel: 2}
  - {name: flat, type: flatten}
  - {name: f1, type: fc, out_features: 10}
"""

RESIDUAL = """\
name: tinyres
dataset: cifar10
input: {shape: [3, 8, 8]}
bits: {signal: 3, weight: 3}
weights: random
layers:
  - {name: c1, type: conv, out_channels: 4, kernel: 3, padding: 1}
  - {name: a1, type: conv, input: c1, out_channels: 4, kernel: 3, padding: 1}
  - {name: a2, type: conv, out_channels: 4, kernel: 3, padding: 1}
  - {name: add1, type: add, inputs: [a2, c1]}
  - {name: b1, type: conv, input: add1, out_channels: 8, kernel: 3, stride: 2, padding: 1}
  - {name: sc, type: conv, input: add1, out_channels: 8, kernel: 1, stride: 2}
  - {name: add2, type: add, inputs: [b1, sc]}
  - {name: pool, type: avgpool, input: add2, kernel: 4}
  - {name: fc, type: fc, out_features: 10}
"""


def _spec(tmp_path, text):
    from xbarsim.config.spec import load_network_spec

    path = tmp_path / "n.yaml"
    path.write_text(text)
    return load_network_spec(path)


def _calibrated(spec, seed=0):
    torch = pytest.importorskip("torch")
    from xbarsim.train.loop import calibrate
    from xbarsim.train.model import QNet

    model = QNet(spec, seed=seed)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (64, *spec.input_shape), generator=g).to(torch.uint8).numpy()
    return model, calibrate(model, images, len(images)), images


def test_direct_quantization_equals_loading_the_float_form_file(tmp_path):
    from xbarsim.network.weights import load_weights
    from xbarsim.train.loop import direct_quantization, save_float_form
    from xbarsim.train.model import float_state

    spec = _spec(tmp_path, PLAIN)
    model, scales, _ = _calibrated(spec)
    save_float_form(tmp_path / "f.npz", model, scales, 1.0 / model.top_in, {"method": "plain"})
    loaded = load_weights(tmp_path / "f.npz", spec)
    direct = direct_quantization(spec, float_state(model), scales, 1.0 / model.top_in)
    for name, lw in loaded.items():
        d = direct[name]
        assert np.array_equal(lw.levels, d.levels) and np.array_equal(lw.bias, d.bias)
        assert (lw.theta, lw.step) == (d.theta, d.step)


def test_residual_adds_get_one_count_scale_per_group_and_the_integer_network_runs(tmp_path):
    from xbarsim.network import build_network
    from xbarsim.network.reference import run_ideal
    from xbarsim.network.weights import save_weights, load_weights
    from xbarsim.train.loop import direct_quantization
    from xbarsim.train.model import float_state

    spec = _spec(tmp_path, RESIDUAL)
    model, scales, images = _calibrated(spec, seed=2)
    assert scales["c1"] == scales["a2"]            # add1 joins c1 and a2
    assert scales["b1"] == scales["sc"]            # add2 joins b1 and sc
    assert scales["a1"] != scales["c1"] and scales["b1"] != scales["c1"]
    peaks = model.activation_max(model.prepare(__import__("torch").from_numpy(images)))
    assert scales["c1"] == max(peaks["c1"], peaks["a2"]) / model.top   # the group's larger one
    weights = direct_quantization(spec, float_state(model), scales, 1.0 / model.top_in)
    save_weights(tmp_path / "w.npz", weights, 3, 3)
    net = build_network(spec, load_weights(tmp_path / "w.npz", spec))
    res = run_ideal(net, net.quantize_input(images))
    assert res.predictions.shape == (len(images),)
