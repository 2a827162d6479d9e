"""Seeded training loops and the recipes behind ``xbarsim train``: ``plain``, ``nc``, ``nc+wc``.

Reproducibility: ``torch.manual_seed``, ``torch.use_deterministic_algorithms(True)``, a fixed thread
count, and every random draw (initial weights, shuffling, shifts) from generators seeded by
``seed``. Same inputs, seed and thread count ⇒ the same weights bit for bit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, XbarsimError
from ..network.weights import FORMAT, atomic_savez, save_weights
from . import quant
from .model import (QNet, export_integer, exact_forward, float_state, fold_batch_norm,
                    load_float_state, to_count_units, unfold_batch_norm)

METHODS = ("plain", "nc", "nc+wc")


@dataclass
class TrainConfig:
    method: str = "nc+wc"
    epochs: int = 20               # plain / nc training epochs
    finetune_epochs: int = 3       # nc+wc: epochs with quantized weights after clustering
    cycle_epochs: int = 0          # nc+wc: then epochs with the cycle-level hardware in the loop
    batch: int = 128
    lr: float = 3e-3
    finetune_lr: float = 3e-4
    weight_decay: float = 0.0      # λ·R(W) of Eq. 2 (L2, through the optimizer's weight_decay)
    lam: float = 1e-4              # λ_i of Eq. 2 for every conv/fc layer (per image, summed R_g)
    lambdas: dict = field(default_factory=dict)   # per-layer overrides
    alpha: float = quant.ALPHA
    grid: str = "pow2"             # Weight Clustering steps: pow2 (2^-k) or unit (1/θ)
    max_theta: int = 4096
    shift: int | None = None       # random shifts (pixels, zero fill); None = the data set's default
    flip: bool | None = None       # random horizontal flips; None = the data set's default
    batch_norm: bool = False       # plain: batch norm after every conv, folded before saving
    optimizer: str = "adam"        # adam, or sgd (Nesterov momentum 0.9)
    schedule: str = "cosine"       # cosine decay, or onecycle (linear warm-up over 25 %, cosine)
    calib_images: int = 2000
    quantile: float = 1.0          # w/o: data-chosen scale = this quantile of the activations
    seed: int = 0
    threads: int = 1
    train_limit: int | None = None  # use only the first N training images (tests)
    test_limit: int | None = None
    checkpoint: str | None = None  # per-epoch checkpoint file (None: none written)
    resume: bool = False           # continue from ``checkpoint``
    device: str = "cpu"            # torch device of training: cpu, cuda or auto (cuda if present)
    channels_last: bool = False    # NHWC conv tensors (≈25 % faster ResNet-18 steps on the CPU)
    label_smoothing: float = 0.0   # cross-entropy against (1-ε)·one-hot + ε/classes
    decay_norm_bias: bool = True   # weight decay on batch-norm parameters and biases too


# augmentation defaults per data set: MNIST random shifts of up to 2 pixels; CIFAR-10 the usual
# random crop with padding 4 (a shift of up to 4 pixels with zero fill) and horizontal flip
AUGMENT = {"mnist": (2, False), "cifar10": (4, True)}
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "onecycle")


DEVICES = ("cpu", "cuda", "auto")


def setup_torch(seed: int, threads: int, device: str = "cpu") -> torch.device:
    """Seeds torch, asks for deterministic algorithms, sets the CPU thread count and returns the
    training device (``cpu``, ``cuda``, or ``auto``: cuda when PyTorch sees one). On CUDA the
    deterministic request only warns where an operation has no deterministic kernel (max-pooling's
    backward pass), so GPU runs are seeded but not bit-for-bit repeatable (docs/training.md)."""
    if device not in DEVICES:
        raise XbarsimError(f"--torch-device: must be one of {', '.join(DEVICES)} (got {device})")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise XbarsimError("--torch-device: PyTorch sees no CUDA device (got cuda; a CPU "
                               "build of torch, or no GPU on this machine)")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device == "cuda")
    torch.set_num_threads(max(1, int(threads)))
    return torch.device(device)


def model_device(model) -> torch.device:
    """The device a model's parameters live on."""
    return next(model.parameters()).device


def load_arrays(dataset: str, split: str, limit=None):
    """``(uint8 images (N, C, H, W), int64 labels)`` of ``dataset`` ("mnist" or "cifar10") from
    the data sets found locally (datasets.load_dataset; no download)."""
    from ..io import datasets

    if dataset not in AUGMENT:
        raise XbarsimError(f"training supports dataset: {' or '.join(AUGMENT)} (got {dataset})")
    images, labels = datasets.load_dataset(dataset, split, limit, download=False)
    return np.ascontiguousarray(images), np.asarray(labels, np.int64)


def load_mnist_arrays(split: str, limit=None):
    return load_arrays("mnist", split, limit)


def augmentation(cfg: "TrainConfig", dataset: str) -> tuple:
    """``(shift, flip)`` for ``dataset``: the config's, else the data set's default."""
    shift, flip = AUGMENT.get(dataset, (0, False))
    return (shift if cfg.shift is None else cfg.shift, flip if cfg.flip is None else cfg.flip)


def flip_batch(u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (one draw per image from ``gen``)."""
    m = torch.rand(u.shape[0], generator=gen) < 0.5
    if m.any():
        u = u.clone()
        u[m] = torch.flip(u[m], dims=(3,))
    return u


def lr_factor(schedule: str, total: int):
    """The learning-rate multiplier at step ``t`` of ``total``."""
    if schedule == "onecycle":
        warm = max(1, int(0.25 * total))

        def f(t):
            if t < warm:
                return 0.04 + 0.96 * t / warm
            r = min(t - warm, total - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * r))
        return f
    return lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def shift_batch(u: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels per image (zero fill), drawn from ``gen``."""
    if shift <= 0:
        return u
    b, c, h, w = u.shape
    d = torch.randint(-shift, shift + 1, (2, b), generator=gen)
    pad = F.pad(u, (shift, shift, shift, shift))
    out = torch.empty_like(u)
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            m = (d[0] == dy) & (d[1] == dx)
            if m.any():
                out[m] = pad[m, :, shift + dy:shift + dy + h, shift + dx:shift + dx + w]
    return out


@torch.no_grad()
def accuracy(model: QNet, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    dev = model_device(model)
    for lo in range(0, len(images), batch):
        x = model.prepare(torch.from_numpy(images[lo:lo + batch]).to(dev))
        z = model(x)
        correct += int((z.argmax(1).cpu().numpy() == labels[lo:lo + batch]).sum())
    return correct / max(1, len(images))


@torch.no_grad()
def integer_predictions(spec, weights: dict, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Predictions of the exported integer network by :func:`exact_forward` (torch, float64)."""
    from ..network.network import quantize_images

    out = []
    for lo in range(0, len(images), batch):
        sig = torch.from_numpy(quantize_images(images[lo:lo + batch], spec.input_bits))
        out.append(exact_forward(spec, weights, sig)[2].numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def param_groups(model: QNet, weight_decay: float, decay_norm_bias: bool = True) -> list:
    """The optimizer's parameter groups: conv/fc weights with ``weight_decay``; biases and
    batch-norm parameters with it too, or (``decay_norm_bias=False``, the usual choice for
    networks with batch norm) without: decaying a batch-norm scale only shrinks what the next
    normalisation undoes. The order of the parameters is the model's, whatever the split."""
    if decay_norm_bias or not weight_decay:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    weights = {id(p) for p in model.weight.values()}
    decay = [p for p in model.parameters() if id(p) in weights]
    rest = [p for p in model.parameters() if id(p) not in weights]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def fit(model: QNet, images, labels, epochs: int, lr: float, cfg: TrainConfig, log=print,
        progress: bool = True, test=None, tag: str = "", ck=None, augment=None) -> list:
    """One training stage: the config's optimizer and learning-rate schedule; loss = CE + λ_i·R_g
    (count mode). One log line per epoch; returns this stage's per-epoch records.

    ``augment``: ``(shift, flip)`` (default: the config's, MNIST defaults). ``ck``: a
    :class:`~.checkpoint.Checkpoint`; the stage ``tag`` is saved after every epoch and, when the
    checkpoint holds this stage, continued from the epoch it reached (bit for bit)."""
    shift, flip = augment if augment is not None else augmentation(cfg, "mnist")
    params = param_groups(model, cfg.weight_decay, cfg.decay_norm_bias)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam(params, lr=lr)
    n = len(images)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch))
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.schedule, total))
    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + len(tag))
    start = 0
    if ck is not None:
        if ck.past(tag):
            return [r for r in ck.history if r.get("stage") == tag]
        start = ck.epoch_in(tag)
        if start:
            ck.restore_loop(opt, sched, gen)
    u_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels)
    history = [r for r in ck.history if r.get("stage") == tag] if ck is not None else []
    dev = model_device(model)
    for epoch in range(start, epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(n, generator=gen)
        tot_ce = tot_reg = 0.0
        correct = 0
        batches = range(steps_per_epoch)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(batches, desc=f"{tag} epoch {epoch + 1}/{epochs}", leave=False, unit="batch")
            batches = bar
        for i in batches:
            idx = perm[i * cfg.batch:(i + 1) * cfg.batch]
            u = shift_batch(u_all[idx], shift, gen)
            if flip:
                u = flip_batch(u, gen)
            # augmentation draws stay on the CPU with the stage's generator, whatever the device
            x = model.prepare(u.to(dev))
            if cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y_all[idx].to(dev)
            z = model(x)
            ce = F.cross_entropy(z, y, label_smoothing=cfg.label_smoothing)
            loss = ce + model.reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_ce += float(ce.detach()) * len(idx)
            tot_reg += float(model.reg.detach()) * len(idx)
            correct += int((z.argmax(1) == y).sum())
        if bar is not None:
            bar.close()
        rec = {"stage": tag, "epoch": epoch + 1, "ce": tot_ce / n, "reg": tot_reg / n,
               "train_acc": correct / n, "lr": opt.param_groups[0]["lr"],
               "seconds": time.time() - t0}
        if test is not None:
            rec["test_acc"] = accuracy(model, *test)
        history.append(rec)
        if ck is not None:
            ck.history.append(rec)
            ck.save(tag, epoch + 1, model, opt, sched, gen)
        log(f"{tag} epoch {epoch + 1}/{epochs}: loss {rec['ce']:.4f} + reg {rec['reg']:.4f}, "
            f"train acc {100 * rec['train_acc']:.2f}%"
            + (f", test acc {100 * rec['test_acc']:.2f}%" if test is not None else "")
            + f", {rec['seconds']:.1f} s")
    return history


# -- calibration (w/o baseline) --------------------------------------------------------------------
def calibrate(model: QNet, images: np.ndarray, n: int, quantile: float = 1.0) -> dict:
    """Data-chosen float value of one count per compute layer: the largest (or ``quantile``)
    post-ReLU activation over the first ``n`` training images maps to ``2^M − 1``."""
    mode = model.mode
    model.mode = "float"
    x = model.prepare(torch.from_numpy(images[:n]).to(model_device(model)))
    peaks = model.activation_max(x, quantile)
    model.mode = mode
    return unify_add_scales(model.spec, {k: max(v, 1e-12) / model.top for k, v in peaks.items()})


def unify_add_scales(spec, scales: dict) -> dict:
    """Give the two inputs of every residual add one count scale (the larger): the hardware adds
    counts, so both branches must count in the same unit. Layers joined through chains of adds
    (ResNet's identity shortcuts) form one group, which takes the group's largest scale."""
    from ..config.kinds import kind_of

    parent = {name: name for name in scales}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    source = {}  # value name -> the compute layer (group member) whose counts it carries
    for layer in spec.layers:
        if layer.is_compute:
            source[layer.name] = layer.name
        elif kind_of(layer).same_scale_inputs:  # a residual add (config/kinds.py)
            members = [m for m in (source.get(i) for i in layer.inputs) if m is not None]
            for a in members[:-1]:
                parent[find(a)] = find(members[-1])
            source[layer.name] = members[0] if members else None
        else:
            source[layer.name] = source.get(layer.inputs[0])
    top = {}
    for name, v in scales.items():
        r = find(name)
        top[r] = max(top.get(r, 0.0), v)
    return {name: top[find(name)] for name in scales}


def direct_quantization(spec, state: dict, act_scale: dict, in_scale: float) -> dict:
    """The w/o baseline as an integer network: every layer of the float network ``state``
    rounded by the simulator's float-form rule (``weights.quantize_layer``: N-bit power-of-two
    step, ``θ = rint(S_out/(S_in·s))``), each layer's input unit the effective output unit of the
    layer before. What loading the float-form file does, except at residual adds: the two
    branches' effective units differ slightly after rounding θ, the hardware adds their counts
    anyway, and the sum carries on in the first branch's unit (that error is part of direct
    quantization)."""
    from ..config.layers import INPUT
    from ..network.weights import quantize_layer

    unit = {INPUT: in_scale}
    out = {}
    for layer in spec.layers:
        if layer.is_compute:
            w, b = state[layer.name]
            out[layer.name], unit[layer.name] = quantize_layer(
                np.asarray(w, np.float64), np.asarray(b, np.float64), spec.weight_bits,
                unit[layer.inputs[0]], act_scale[layer.name])
        else:
            unit[layer.name] = unit[layer.inputs[0]]
    return out


# -- files ----------------------------------------------------------------------------------------------
def save_float_form(path, model: QNet, act_scale: dict, in_scale: float, meta: dict) -> None:
    """Float-form weights file (``L.weight``, ``L.bias_float``, ``L.act_scale``,
    ``input.act_scale``): the simulator quantizes it on load by plain rounding (weights.quantize_layer)."""
    arrays = {"meta.format": np.array(FORMAT),
              "meta.signal_bits": np.array(model.bits),
              "meta.weight_bits": np.array(model.weight_bits),
              "input.act_scale": np.array(float(in_scale))}
    for name, (w, b) in float_state(model).items():
        arrays[f"{name}.weight"] = w.astype(np.float32)
        arrays[f"{name}.bias_float"] = b.astype(np.float32)
        arrays[f"{name}.act_scale"] = np.array(float(act_scale[name]))
    arrays.update({f"meta.{k}": np.array(v) for k, v in meta.items()})
    atomic_savez(path, arrays)


def halve_float_form(src, dst) -> float:
    """Copy the float-form file ``src`` to ``dst`` with every ``L.weight`` stored as float16
    (biases and scales as they are): half the size, for shipping a float network that would be
    over the repository's file limit in float32 (ResNet-18: 41 MB). Readers cast to float64 as
    before. Returns the largest relative rounding error of a weight tensor (its largest change
    over its largest magnitude); refuses a weight outside float16's range."""
    from ..io.files import load_npz_file

    z = load_npz_file(src, lambda why: DataError(f"{src}: {why}"),
                      lambda key, why: DataError(f"{src}: {key}: {why}"))
    arrays, worst = {}, 0.0
    for key, a in z.items():
        if key.endswith(".weight") and a.dtype.kind == "f":
            top = float(np.abs(a).max(initial=0.0))
            if top >= float(np.finfo(np.float16).max):
                raise DataError(f"{src}: {key}: a weight of magnitude {top:.4g} does not fit "
                                f"float16")
            h = a.astype(np.float16)
            if top > 0:
                worst = max(worst, float(np.abs(h.astype(np.float64) - a).max()) / top)
            a = h
        arrays[key] = a
    arrays["meta.weights_dtype"] = np.array("float16")
    atomic_savez(dst, arrays)
    return worst


def read_float_form(path, spec) -> tuple:
    """``(state in count units, state as stored, act_scale, in_scale)`` from a float-form file."""
    from ..io.files import load_npz_file

    z = load_npz_file(path, lambda why: DataError(f"{path}: --init: {why}"),
                      lambda key, why: DataError(f"{path}: --init: {key}: {why}"))
    state, scales = {}, {}
    for layer in spec.compute_layers:
        if f"{layer.name}.weight" not in z:
            raise DataError(f"{path}: --init: no float weights {layer.name}.weight (only files "
                            f"written by 'xbarsim train --method plain|nc' can seed training)")
        w = z[f"{layer.name}.weight"].astype(np.float64)
        if w.shape != tuple(layer.weight_shape):
            raise DataError(f"{path}: --init: {layer.name}.weight has shape {w.shape}, the "
                            f"network needs {tuple(layer.weight_shape)}")
        b = (z[f"{layer.name}.bias_float"].astype(np.float64)
             if f"{layer.name}.bias_float" in z else np.zeros(layer.cols))
        state[layer.name] = (w, b)
        scales[layer.name] = float(z[f"{layer.name}.act_scale"]) \
            if f"{layer.name}.act_scale" in z else 1.0
    in_scale = float(z["input.act_scale"]) if "input.act_scale" in z \
        else 1.0 / ((1 << spec.input_bits) - 1)
    return state, scales, in_scale


def _file_method(path) -> str:
    from ..io.files import load_npz_file

    z = load_npz_file(path, lambda why: DataError(f"{path}: {why}"),
                      lambda key, why: DataError(f"{path}: {key}: {why}"))
    return str(z["meta.method"]) if "meta.method" in z else ""


# -- recipes ------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: QNet
    history: list
    weights: dict | None          # integer LayerWeights (nc+wc) or None
    act_scale: dict               # float value of one count per layer (float-form files)
    in_scale: float
    figures: dict                 # accuracies measured on the test set
    clustering: dict              # per layer: step, θ, squared error vs rounding


def fingerprint(spec, cfg: TrainConfig, init) -> dict:
    """What a checkpoint must share with a run to be resumed by it."""
    fp = {k: v for k, v in vars(cfg).items() if k != "device"}  # resumable on another device
    fp.update({"network": spec.name, "signal_bits": spec.signal_bits,
               "weight_bits": spec.weight_bits, "input_bits": spec.input_bits,
               "layers": [(l.name, l.kind, tuple(l.weight_shape) if l.is_compute else None)
                          for l in spec.layers],
               "init": str(Path(init).resolve()) if init else None})
    return fp


def train(spec, cfg: TrainConfig, init=None, log=print, progress=True) -> TrainResult:
    """Run one recipe on the network's data set (MNIST or CIFAR-10). ``init``: a float-form
    weights file to start from (else random). With ``cfg.checkpoint`` every epoch is saved there;
    ``cfg.resume`` continues from it."""
    from .checkpoint import Checkpoint

    if cfg.method not in METHODS:
        raise XbarsimError(f"--method: must be one of {', '.join(METHODS)} (got {cfg.method})")
    if spec.dataset not in AUGMENT:
        raise XbarsimError(f"{spec.source}: training supports dataset: mnist or cifar10 "
                           f"(got {spec.dataset})")
    if cfg.optimizer not in OPTIMIZERS:
        raise XbarsimError(f"--optimizer: must be one of {', '.join(OPTIMIZERS)} (got {cfg.optimizer})")
    if cfg.schedule not in SCHEDULES:
        raise XbarsimError(f"--schedule: must be one of {', '.join(SCHEDULES)} (got {cfg.schedule})")
    if cfg.batch_norm and cfg.method != "plain":
        raise XbarsimError("--batch-norm: only for --method plain (it is folded into the weights "
                           "before quantization; nc and nc+wc start from the folded file)")
    dev = setup_torch(cfg.seed, cfg.threads, cfg.device)
    tr = load_arrays(spec.dataset, "train", cfg.train_limit)
    te = load_arrays(spec.dataset, "test", cfg.test_limit)
    aug = augmentation(cfg, spec.dataset)
    model = QNet(spec, seed=cfg.seed, batch_norm=cfg.batch_norm)
    model.alpha = cfg.alpha
    ck = Checkpoint(cfg.checkpoint, fingerprint(spec, cfg, init), cfg.resume, log)
    figures, clustering = ck.figures, ck.clustering
    if ck.started():
        ck.restore_model(model)
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    in_count = 1.0 / model.top_in
    stage = dict(cfg=cfg, log=log, progress=progress, test=te, ck=ck, augment=aug)
    if cfg.method == "plain":
        if init is not None and not ck.started():
            state, _, _ = read_float_form(init, spec)
            load_float_state(model, state)
            if model.bn is not None:  # batch norm set to pass the file's network on unchanged
                n = min(cfg.calib_images, 500)
                unfold_batch_norm(model, model.prepare(torch.from_numpy(tr[0][:n]).to(dev)))
                log(f"init: batch norm set to pass {init}'s folded network on unchanged "
                    f"(statistics of {n} training images)")
        model.mode = "float"
        fit(model, *tr, cfg.epochs, cfg.lr, tag="plain", **stage)
        if model.bn is not None:
            figures["float_batch_norm"] = accuracy(model, *te)
            fold_batch_norm(model)
            log(f"batch norm folded into the conv weights and biases (test acc with batch norm "
                f"{100 * figures['float_batch_norm']:.2f}%)")
        figures["float"] = accuracy(model, *te)
        scales = calibrate(model, tr[0], cfg.calib_images, cfg.quantile)
        model.scales = scales
        model.mode = "scale"
        figures["signals_wo"] = accuracy(model, *te)
        model.mode = "float"
        return TrainResult(model, ck.history, None, scales, in_count, figures, clustering)

    # nc / nc+wc: count units
    if init is not None and not ck.started():
        state, scales, in_scale = read_float_form(init, spec)
        if _file_method(init) == "plain":
            # a float network: choose this width's count scale from data (as the w/o baseline)
            load_float_state(model, state)
            scales, in_scale = calibrate(model, tr[0], cfg.calib_images, cfg.quantile), in_count
            what = ("largest activation" if cfg.quantile >= 1 else
                    f"{100 * cfg.quantile:g}th percentile of the positive activations")
            log(f"init: float network rescaled to counter units ({what} of each layer over "
                f"{cfg.calib_images} training images = {model.top} counts)")
        load_float_state(model, to_count_units(spec, state, scales, in_scale))
    model.mode = "count"
    model.lambdas = {l.name: cfg.lambdas.get(l.name, cfg.lam) for l in spec.compute_layers}
    fit(model, *tr, cfg.epochs, cfg.lr, tag="nc", **stage)
    ones = {l.name: 1.0 for l in spec.compute_layers}
    if not ck.past("nc"):
        figures["nc_float_weights"] = accuracy(model, *te)
    if cfg.method == "nc":
        return TrainResult(model, ck.history, None, ones, 1.0, figures, clustering)

    if not ck.past("nc"):
        state = float_state(model)
        for layer in spec.compute_layers:
            w = state[layer.name][0]
            s, d, e = quant.cluster(w, spec.weight_bits, cfg.grid, cfg.max_theta)
            rs = quant.round_step(w, spec.weight_bits)
            e_round = quant.sq_error(w, rs, quant.assign(w, rs, quant.max_level(spec.weight_bits)))
            cs, _, ce = quant.continuous_step(w, spec.weight_bits)
            clustering[layer.name] = {"step": s, "theta": int(round(1 / s)), "sq_error": e,
                                      "round_step": rs, "round_sq_error": e_round,
                                      "continuous_step": cs, "continuous_sq_error": ce}
            log(f"cluster {layer.name}: step 1/{int(round(1 / s))}, ||sD-W||^2 {e:.4g} "
                f"(rounding at step {rs:g}: {e_round:.4g}; free step {cs:.4g}: {ce:.4g})")
            model.wsteps[layer.name] = s
        ints = export_integer(model)
        figures["wc_before_finetune"] = float(np.mean(integer_predictions(spec, ints, te[0])
                                                      == te[1]))
        log(f"nc+wc before fine-tuning: integer test acc {100 * figures['wc_before_finetune']:.2f}%")
    if cfg.finetune_epochs > 0:
        fit(model, *tr, cfg.finetune_epochs, cfg.finetune_lr, tag="finetune", **stage)
    if cfg.cycle_epochs > 0:
        # hardware-aware fine-tuning (beyond the paper): forward values are the cycle-level
        # engine's counts (uniform encoding, ideal devices), gradients those of the ideal network
        model.cycle = True
        if not ck.past("finetune"):
            figures["cycle_before_finetune"] = accuracy(model, *te)
            log(f"cycle-level (torch twin of the engine) before hardware-aware fine-tuning: test "
                f"acc {100 * figures['cycle_before_finetune']:.2f}%")
        fit(model, *tr, cfg.cycle_epochs, cfg.finetune_lr, tag="cycle-finetune", **stage)
        figures["cycle_level"] = accuracy(model, *te)
        model.cycle = False
    ints = export_integer(model)
    figures["integer"] = float(np.mean(integer_predictions(spec, ints, te[0]) == te[1]))
    return TrainResult(model, ck.history, ints, ones, 1.0, figures, clustering)


def save_result(path, res: TrainResult, cfg: TrainConfig) -> None:
    meta = {"method": cfg.method, "seed": cfg.seed, "epochs": cfg.epochs,
            "finetune_epochs": cfg.finetune_epochs, "cycle_epochs": cfg.cycle_epochs}
    meta.update({f"test_acc_{k}": v for k, v in res.figures.items()})
    if res.weights is not None:
        save_weights(path, res.weights, res.model.bits, res.model.weight_bits,
                     extra={f"meta.{k}": np.array(v) for k, v in meta.items()})
    else:
        save_float_form(path, res.model, res.act_scale, res.in_scale, meta)
