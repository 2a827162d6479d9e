"""The float recipe's options (issue 27): weight decay kept off batch-norm parameters and biases,
label smoothing, and their one-line errors.

Torch tests are marked ``train`` and skip without PyTorch.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

NET = """\
name: tiny
dataset: cifar10
input: {shape: [3, 8, 8]}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: conv1, type: conv, out_channels: 4, kernel: 3, padding: 1}
  - {name: conv2, type: conv, out_channels: 4, kernel: 3, padding: 1}
  - {name: add, type: add, inputs: [conv2, conv1]}
  - {name: fc, type: fc, input: add, out_features: 10}
"""


def _model():
    pytest.importorskip("torch")
    from xbarsim.config.spec import load_network_spec
    from xbarsim.train.model import QNet

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "net.yaml"
        path.write_text(NET)
        spec = load_network_spec(path)
    return QNet(spec, seed=0, batch_norm=True)


@pytest.mark.train
def test_no_decay_norm_bias_decays_only_the_conv_and_fc_weights():
    pytest.importorskip("torch")
    from xbarsim.train.loop import param_groups

    model = _model()
    decay, rest = param_groups(model, 5e-4, decay_norm_bias=False)
    assert decay["weight_decay"] == 5e-4 and rest["weight_decay"] == 0.0
    weights = {id(p) for p in model.weight.values()}
    assert {id(p) for p in decay["params"]} == weights
    others = [p for p in model.parameters() if id(p) not in weights]
    assert [id(p) for p in rest["params"]] == [id(p) for p in others]
    # biases and every batch-norm scale/shift are in the undecayed group
    assert len(rest["params"]) == len(model.bias) + 2 * len(model.bn)


@pytest.mark.train
def test_default_decays_everything_as_before():
    torch = pytest.importorskip("torch")

    from xbarsim.train.loop import param_groups

    model = _model()
    (group,) = param_groups(model, 5e-4)
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
    assert group["weight_decay"] == 5e-4
    # an SGD step with the group's decay equals one with the optimizer-wide decay
    a, b = _model(), _model()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for m, groups in ((a, param_groups(a, 0.1)), (b, None)):
        opt = (torch.optim.SGD(groups, lr=0.5, momentum=0.9, nesterov=True) if groups else
               torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9, nesterov=True,
                               weight_decay=0.1))
        m(x).sum().backward()
        opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_label_smoothing_out_of_range_is_one_line(value, tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text(NET)
    r = subprocess.run([sys.executable, "-m", "xbarsim", "train", str(net), "--bits", "4,4",
                        "--label-smoothing", value, "--out", str(tmp_path / "x.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"xbarsim: error: --label-smoothing: must be in "
                                             f"[0, 1) (got {float(value)})"]


@pytest.mark.train
def test_unfolded_batch_norm_computes_the_folded_network():
    torch = pytest.importorskip("torch")

    from xbarsim.train.model import fold_batch_norm, unfold_batch_norm

    model = _model()
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    fold_batch_norm(model)             # a float-form file's network: no batch norm
    model.eval()  # nn.Module inference mode, not Python's eval
    folded = model(x)
    again = _model()                   # batch norm, fresh (γ = 1, β = 0)
    with torch.no_grad():
        for n in model.weight:
            again.weight[n].copy_(model.weight[n])
            again.bias[n].copy_(model.bias[n])
    again.train()                      # fresh batch norm normalises each layer: another net
    assert not torch.allclose(again(x), folded, atol=1e-3)
    unfold_batch_norm(again, x)
    again.eval()                       # the running statistics pass the file's network on
    assert torch.allclose(again(x), folded, atol=1e-4)
    trained = copy.deepcopy(again)     # and so do the batch's own, on the images it saw
    trained.train()
    assert torch.allclose(trained(x), folded, atol=1e-4)
    fold_batch_norm(again)             # and folding it back gives the same network
    assert torch.allclose(again(x), folded, atol=1e-4)
