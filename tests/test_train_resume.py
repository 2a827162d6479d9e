"""Resumable training (issue 11): a run stopped after an epoch and resumed with ``--resume`` ends
with the same weights, bit for bit, as the run never interrupted; batch norm is folded exactly;
CIFAR-10 augmentation draws from the run's generator.

Needs PyTorch (marked ``train``); the runs on MNIST skip when it is not found (set XBARSIM_DATA).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import TRAIN_TINY, mnist_or_skip, train_config

pytestmark = pytest.mark.train


class Killed(Exception):
    """Stands for the process being killed right after an epoch's checkpoint was written."""


def _killer(after: str):
    def log(line):
        if line.startswith(after):
            raise Killed(line)
    return log


@pytest.fixture
def tiny(tmp_path):
    from xbarsim.config.spec import load_network_spec

    path = tmp_path / "tiny.yaml"
    path.write_text(TRAIN_TINY)
    return path, load_network_spec(path)


def _same_state(a, b):
    for name in a:
        assert np.array_equal(a[name][0], b[name][0]), name
        assert np.array_equal(a[name][1], b[name][1]), name


@pytest.mark.parametrize("method,kill_after,kw", [
    ("plain", "plain epoch 1/", dict(epochs=2, batch_norm=True, optimizer="sgd",
                                     schedule="onecycle", lr=0.05, weight_decay=5e-4)),
    ("nc", "nc epoch 1/", dict(epochs=2)),
    ("nc+wc", "finetune epoch 1/", dict(epochs=1, finetune_epochs=2)),
])
def test_resume_after_a_kill_ends_bit_for_bit_like_an_uninterrupted_run(tiny, tmp_path, method,
                                                                       kill_after, kw):
    pytest.importorskip("torch")
    mnist_or_skip()
    from xbarsim.train.loop import train
    from xbarsim.train.model import float_state

    _, spec = tiny
    quiet = lambda _: None  # noqa: E731
    whole = train(spec, train_config(method=method, checkpoint=str(tmp_path / "a.pt"), **kw),
                  log=quiet, progress=False)
    ck = str(tmp_path / "b.pt")
    with pytest.raises(Killed):
        train(spec, train_config(method=method, checkpoint=ck, **kw), log=_killer(kill_after),
              progress=False)
    lines = []
    resumed = train(spec, train_config(method=method, checkpoint=ck, resume=True, **kw),
                    log=lines.append, progress=False)
    assert lines[0].startswith("resume: ") and kill_after.split()[0] in lines[0]
    assert not any(line.startswith(kill_after) for line in lines)  # that epoch was not redone
    _same_state(float_state(whole.model), float_state(resumed.model))
    assert [dict(h, seconds=0) for h in whole.history] == \
        [dict(h, seconds=0) for h in resumed.history]
    assert whole.figures == resumed.figures
    if method == "nc+wc":
        for name, lw in whole.weights.items():
            assert np.array_equal(lw.levels, resumed.weights[name].levels)
            assert np.array_equal(lw.bias, resumed.weights[name].bias)
            assert lw.theta == resumed.weights[name].theta


def test_resume_refuses_a_checkpoint_of_another_run(tiny, tmp_path):
    pytest.importorskip("torch")
    mnist_or_skip()
    from xbarsim.errors import XbarsimError
    from xbarsim.train.loop import train

    _, spec = tiny
    ck = str(tmp_path / "c.pt")
    train(spec, train_config(method="nc", checkpoint=ck), log=lambda _: None, progress=False)
    with pytest.raises(XbarsimError, match=r"c\.pt: --resume: the checkpoint is of a different "
                                           r"run \(epochs: 1 there, 2 now\)"):
        train(spec, train_config(method="nc", epochs=2, checkpoint=ck, resume=True),
              log=lambda _: None, progress=False)


def test_folded_batch_norm_computes_the_eval_mode_network():
    torch = pytest.importorskip("torch")
    from xbarsim.config.spec import load_network_spec
    from xbarsim.train.model import QNet, fold_batch_norm

    import pathlib
    spec = load_network_spec(pathlib.Path(__file__).parents[1] / "networks/alexnet-cifar10.yaml")
    model = QNet(spec, seed=1, batch_norm=True)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-trivial statistics and affine parameters
        for bn in model.bn.values():
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.2)
            bn.weight.copy_(torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    x = model.prepare(torch.randint(0, 256, (6, 3, 32, 32), generator=g).to(torch.uint8))
    model.eval()  # nn.Module inference mode, not Python's eval
    with torch.no_grad():
        before = model(x)
        fold_batch_norm(model)
        after = model(x)
    assert model.bn is None
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4 * float(before.abs().max()))
    model.mode = "count"  # batch norm gone: the count-mode network runs
    with torch.no_grad():
        model(model.prepare(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)))


def test_flip_and_shift_draw_from_the_generator():
    torch = pytest.importorskip("torch")
    from xbarsim.train.loop import flip_batch, shift_batch

    u = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5).repeat(20, 1, 1, 1)
    a = flip_batch(shift_batch(u, 4, torch.Generator().manual_seed(5)),
                   torch.Generator().manual_seed(6))
    b = flip_batch(shift_batch(u, 4, torch.Generator().manual_seed(5)),
                   torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    flipped = flip_batch(u, torch.Generator().manual_seed(0))
    same = [torch.equal(flipped[i], u[i]) for i in range(len(u))]
    mirrored = [torch.equal(flipped[i], torch.flip(u[i], dims=(2,))) for i in range(len(u))]
    assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < len(u)


def test_nc_penalty_and_signal_ste_match_eq3_composed():
    torch = pytest.importorskip("torch")
    from xbarsim.train import quant

    g = torch.Generator().manual_seed(0)
    for bits in (2, 3, 4, 8):
        a = (torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64) * 2 ** bits)
        a = a.requires_grad_()
        ref = quant.r_g(torch.relu(a) * quant.count_to_o(bits), bits).flatten(1).sum(1).mean()
        new = quant.nc_penalty(a, bits)
        (g_ref,), (g_new,) = torch.autograd.grad(ref, a), torch.autograd.grad(new, a)
        assert torch.allclose(ref, new) and torch.allclose(g_ref, g_new)
        top = (1 << bits) - 1
        q = quant.ste_quantize_signal(a, top)
        assert torch.equal(q.detach(), torch.clamp(torch.floor(a.detach() + 0.5), 0, top))
        (gq,) = torch.autograd.grad(q.sum(), a)
        assert torch.equal(gq, ((a >= 0) & (a <= top)).to(a.dtype))


def test_train_cli_resume_flag(tiny, tmp_path):
    pytest.importorskip("torch")
    mnist_or_skip()
    yaml_path, _ = tiny
    common = [sys.executable, "-m", "xbarsim", "train", str(yaml_path), "--bits", "3,3",
              "--method", "plain", "--epochs", "1", "--train-limit", "200", "--test-limit", "100",
              "--batch", "50", "--no-progress", "--out", str(tmp_path / "p.npz"),
              "--checkpoint", str(tmp_path / "p.pt")]
    r = subprocess.run(common, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(common + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resume: plain epoch 1 done" in r.stdout and "plain epoch 1/1:" not in r.stdout


def test_torch_device_auto_on_a_cpu_machine_trains_what_cpu_trains(tiny, tmp_path):
    """``--torch-device auto`` falls back to the CPU where PyTorch sees no GPU and then gives the
    CPU run's weights bit for bit; a checkpoint resumes whatever device it was written on."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto would train there")
    mnist_or_skip()
    from xbarsim.train.loop import train
    from xbarsim.train.model import float_state

    _, spec = tiny
    quiet = lambda _: None  # noqa: E731
    cpu = train(spec, train_config(method="nc", epochs=2, checkpoint=str(tmp_path / "a.pt")),
                log=quiet, progress=False)
    ck = str(tmp_path / "b.pt")
    with pytest.raises(Killed):
        train(spec, train_config(method="nc", epochs=2, checkpoint=ck, device="auto"),
              log=_killer("nc epoch 1/"), progress=False)
    auto = train(spec, train_config(method="nc", epochs=2, checkpoint=ck, resume=True, device="cpu"),
                 log=quiet, progress=False)
    _same_state(float_state(cpu.model), float_state(auto.model))


def test_torch_device_cuda_without_a_gpu_is_one_line(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    yaml_path, _ = tiny
    r = subprocess.run([sys.executable, "-m", "xbarsim", "train", str(yaml_path), "--bits", "3,3",
                        "--method", "plain", "--epochs", "1", "--torch-device", "cuda",
                        "--no-progress", "--out", str(tmp_path / "p.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("xbarsim: error: --torch-device: PyTorch sees no CUDA device (got "
                                "cuda; a CPU build of torch, or no GPU on this machine)")
