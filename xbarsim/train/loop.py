"""Seeded training loops and the recipes behind ``xbarsim train``: ``plain``, ``nc``, ``nc+wc``.

Reproducibility: ``torch.manual_seed``, ``torch.use_deterministic_algorithms(True)``, a fixed thread
count, and every random draw (initial weights, shuffling, shifts) from generators seeded by
``seed``. Same inputs, seed and thread count ⇒ the same weights bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, XbarsimError
from ..network.weights import FORMAT, atomic_savez, save_weights
from . import quant
from .model import (
    QNet,
    exact_forward,
    export_integer,
    float_state,
    load_float_state,
    to_count_units,
)

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
    weight_decay: float = 0.0      # λ·R(W) of Eq. 2 (L2, through Adam's weight_decay)
    lam: float = 1e-4              # λ_i of Eq. 2 for every conv/fc layer (per image, summed R_g)
    lambdas: dict = field(default_factory=dict)   # per-layer overrides
    alpha: float = quant.ALPHA
    grid: str = "pow2"             # Weight Clustering steps: pow2 (2^-k) or unit (1/θ)
    max_theta: int = 4096
    shift: int = 2                 # random shifts (pixels) for augmentation; 0 = none
    calib_images: int = 2000
    quantile: float = 1.0          # w/o: data-chosen scale = this quantile of the activations
    seed: int = 0
    threads: int = 1
    train_limit: int | None = None  # use only the first N training images (tests)
    test_limit: int | None = None


def setup_torch(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, int(threads)))


def load_mnist_arrays(split: str, limit=None):
    from ..io import datasets

    try:
        images, labels = datasets.load_mnist(split, download=False)
    except TypeError:
        images, labels = datasets.load_mnist(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images), np.asarray(labels, np.int64)


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
    for lo in range(0, len(images), batch):
        x = model.prepare(torch.from_numpy(images[lo:lo + batch]))
        z = model(x)
        correct += int((z.argmax(1).numpy() == labels[lo:lo + batch]).sum())
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


def fit(model: QNet, images, labels, epochs: int, lr: float, cfg: TrainConfig, log=print,
        progress: bool = True, test=None, tag: str = "") -> list:
    """Adam with a cosine learning-rate schedule; loss = CE + λ_i·R_g (count mode). One log line
    per epoch; returns the per-epoch records."""
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    n = len(images)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch))
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + len(tag))
    u_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels)
    history = []
    for epoch in range(epochs):
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
            u = shift_batch(u_all[idx], cfg.shift, gen)
            x = model.prepare(u)
            z = model(x)
            ce = F.cross_entropy(z, y_all[idx])
            loss = ce + model.reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_ce += float(ce.detach()) * len(idx)
            tot_reg += float(model.reg.detach()) * len(idx)
            correct += int((z.argmax(1) == y_all[idx]).sum())
        if bar is not None:
            bar.close()
        rec = {"epoch": epoch + 1, "ce": tot_ce / n, "reg": tot_reg / n, "train_acc": correct / n,
               "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
        if test is not None:
            rec["test_acc"] = accuracy(model, *test)
        history.append(rec)
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
    x = model.prepare(torch.from_numpy(images[:n]))
    peaks = model.activation_max(x, quantile)
    model.mode = mode
    return {k: max(v, 1e-12) / model.top for k, v in peaks.items()}


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


def train(spec, cfg: TrainConfig, init=None, log=print, progress=True) -> TrainResult:
    """Run one recipe on MNIST. ``init``: a float-form weights file to start from (else random)."""
    if cfg.method not in METHODS:
        raise XbarsimError(f"--method: must be one of {', '.join(METHODS)} (got {cfg.method})")
    if spec.dataset != "mnist":
        raise XbarsimError(f"{spec.source}: training supports dataset: mnist only (got {spec.dataset})")
    setup_torch(cfg.seed, cfg.threads)
    tr = load_mnist_arrays("train", cfg.train_limit)
    te = load_mnist_arrays("test", cfg.test_limit)
    model = QNet(spec, seed=cfg.seed)
    model.alpha = cfg.alpha
    figures, clustering = {}, {}
    in_count = 1.0 / model.top_in
    if cfg.method == "plain":
        if init is not None:
            state, _, _ = read_float_form(init, spec)
            load_float_state(model, state)
        model.mode = "float"
        hist = fit(model, *tr, cfg.epochs, cfg.lr, cfg, log, progress, te, "plain")
        figures["float"] = accuracy(model, *te)
        scales = calibrate(model, tr[0], cfg.calib_images, cfg.quantile)
        model.scales = scales
        model.mode = "scale"
        figures["signals_wo"] = accuracy(model, *te)
        model.mode = "float"
        return TrainResult(model, hist, None, scales, in_count, figures, clustering)

    # nc / nc+wc: count units
    if init is not None:
        state, scales, in_scale = read_float_form(init, spec)
        if _file_method(init) == "plain":
            # a float network: choose this width's count scale from data (as the w/o baseline)
            load_float_state(model, state)
            scales, in_scale = calibrate(model, tr[0], cfg.calib_images, cfg.quantile), in_count
            log("init: float network rescaled to counter units (largest activation of each "
                f"layer over {cfg.calib_images} training images = {model.top} counts)")
        load_float_state(model, to_count_units(spec, state, scales, in_scale))
    model.mode = "count"
    model.lambdas = {l.name: cfg.lambdas.get(l.name, cfg.lam) for l in spec.compute_layers}
    hist = fit(model, *tr, cfg.epochs, cfg.lr, cfg, log, progress, te, "nc")
    figures["nc_float_weights"] = accuracy(model, *te)
    ones = {l.name: 1.0 for l in spec.compute_layers}
    if cfg.method == "nc":
        return TrainResult(model, hist, None, ones, 1.0, figures, clustering)

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
    figures["wc_before_finetune"] = float(np.mean(integer_predictions(spec, ints, te[0]) == te[1]))
    log(f"nc+wc before fine-tuning: integer test acc {100 * figures['wc_before_finetune']:.2f}%")
    if cfg.finetune_epochs > 0:
        hist += fit(model, *tr, cfg.finetune_epochs, cfg.finetune_lr, cfg, log, progress, te,
                    "finetune")
    if cfg.cycle_epochs > 0:
        # hardware-aware fine-tuning (beyond the paper): forward values are the cycle-level
        # engine's counts (uniform encoding, ideal devices), gradients those of the ideal network
        model.cycle = True
        figures["cycle_before_finetune"] = accuracy(model, *te)
        log(f"cycle-level (torch twin of the engine) before hardware-aware fine-tuning: test acc "
            f"{100 * figures['cycle_before_finetune']:.2f}%")
        hist += fit(model, *tr, cfg.cycle_epochs, cfg.finetune_lr, cfg, log, progress, te,
                    "cycle-finetune")
        figures["cycle_level"] = accuracy(model, *te)
        model.cycle = False
    ints = export_integer(model)
    figures["integer"] = float(np.mean(integer_predictions(spec, ints, te[0]) == te[1]))
    return TrainResult(model, hist, ints, ones, 1.0, figures, clustering)


def save_result(path, res: TrainResult, cfg: TrainConfig) -> None:
    meta = {"method": cfg.method, "seed": cfg.seed, "epochs": cfg.epochs,
            "finetune_epochs": cfg.finetune_epochs, "cycle_epochs": cfg.cycle_epochs}
    meta.update({f"test_acc_{k}": v for k, v in res.figures.items()})
    if res.weights is not None:
        save_weights(path, res.weights, res.model.bits, res.model.weight_bits,
                     extra={f"meta.{k}": np.array(v) for k, v in meta.items()})
    else:
        save_float_form(path, res.model, res.act_scale, res.in_scale, meta)
