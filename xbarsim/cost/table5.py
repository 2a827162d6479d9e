"""The paper's Table 5: LeNet, AlexNet and ResNet at 8, 4 and 3 bits on the cost model.

Each row is one network at ``M = N = bits`` (signals, weights and the input image at ``bits``),
costed from the event counts of a run on a few images (the cycle-level engine, or the ideal
integer network for speed), and compared with the 8-bit row as the paper does: speedup, energy
saving, area saving. The paper's printed values are kept beside ours for comparison only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config.spec import load_network_spec
from ..io.shipped import shipped_dir
from ..network.network import build_network
from .ideal import stats_from_ideal
from .model import estimate, row_conductance_sums

NETWORKS_DIR = shipped_dir("networks")
TABLE5_NETWORKS = (("Lenet", "lenet-mnist.yaml"), ("Alexnet", "alexnet-cifar10.yaml"),
                   ("Resnet", "resnet18-cifar10.yaml"))
TABLE5_BITS = (8, 4, 3)

#: Table 5 of the paper as printed: (layers, MHz, uJ, mm2) per (model, bits).
PAPER = {
    ("Lenet", 8): (4, 0.64, 4.7, 1.48), ("Lenet", 4): (4, 8.93, 0.57, 1.04),
    ("Lenet", 3): (4, 15.63, 0.27, 0.93),
    ("Alexnet", 8): (8, 0.27, 337.0, 34.3), ("Alexnet", 4): (8, 2.66, 36.9, 24.0),
    ("Alexnet", 3): (8, 3.79, 26.3, 21.4),
    ("Resnet", 8): (18, 0.11, 19200.0, 937.3), ("Resnet", 4): (18, 1.38, 1500.0, 656.2),
    ("Resnet", 3): (18, 2.20, 935.0, 585.9),
}
#: The paper's printed ratios against its 8-bit row: (speedup, energy saving %, area saving %).
PAPER_RATIOS = {
    ("Lenet", 4): (13.9, 87.9, 29.7), ("Lenet", 3): (24.4, 94.3, 37.2),
    ("Alexnet", 4): (9.8, 89.1, 30.0), ("Alexnet", 3): (11.8, 92.2, 37.6),
    ("Resnet", 4): (12.5, 92.2, 30.0), ("Resnet", 3): (20.0, 95.0, 37.5),
}


@dataclass
class Row:
    model: str
    bits: int
    network: str
    layers: int            # conv/fc layers on the critical path (the paper's "Layer Num.")
    tiles: int
    speed_mhz: float
    energy_uj: float
    area_mm2: float
    inputs: str
    stats_from: str
    report: object = None
    speedup: float | None = None
    energy_saving: float | None = None
    area_saving: float | None = None


def variant(spec, bits: int):
    """The network description at ``M = N = input bits = bits``."""
    return replace(spec, signal_bits=bits, weight_bits=bits, input_bits=bits)


def mnist_images(n: int, notes: list | None = None):
    """The first ``n`` MNIST test images (uint8, (n, 1, 28, 28)) and where they came from, by the
    rule of :func:`xbarsim.io.datasets.select_images`: the full test set when found; the shipped
    200-image sample only when ``$XBARSIM_DATA`` is not set (its note is appended to ``notes``);
    otherwise a :class:`~xbarsim.errors.DataError` naming what to put where."""
    from ..io import datasets

    chosen = datasets.select_images("mnist", "test", n, flag="--lenet-images/--samples")
    if chosen.note and notes is not None:
        notes.append(chosen.note)
    images, _, source = chosen
    if source.startswith("mnist test set"):
        source = "MNIST test set"  # not the user's folder: tables are shared
    return np.asarray(images, np.uint8).reshape(-1, 1, 28, 28), source


def dataset_images(spec, n: int, seed: int, notes: list | None, flag: str):
    """The first ``n`` test images of ``spec``'s data set by the rule of
    :func:`xbarsim.io.datasets.select_images` (seeded synthetic ones, with a note, only when the data
    set is not found and ``$XBARSIM_DATA`` is not set) and where they came from."""
    from ..io import datasets

    chosen = datasets.select_images(spec.dataset, "test", n, shape=spec.input_shape, seed=seed,
                                    flag=flag)
    if chosen.note and notes is not None:
        notes.append(chosen.note)
    images, _, source = chosen
    if source.startswith(f"{spec.dataset} test set"):
        source = f"{DATASET_LABEL.get(spec.dataset, spec.dataset)} test set"  # not the user's folder
    return np.asarray(images, np.uint8).reshape(-1, *spec.input_shape), source


DATASET_LABEL = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


def synthetic_images(shape, n: int, seed: int):
    """Seeded synthetic uint8 images: smooth random blobs (not uniform noise), so that activity is
    spatially correlated like a natural image's."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    low = rng.random((n, c, max(2, h // 4), max(2, w // 4)))
    img = np.kron(low, np.ones((1, 1, 4, 4)))[:, :, :h, :w]
    img = 0.7 * img + 0.3 * rng.random((n, c, h, w))
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def evaluate(models=TABLE5_NETWORKS, bits=TABLE5_BITS, images: dict | None = None,
             engine: bool = False, circuit=None, seed: int = 0, networks_dir=NETWORKS_DIR,
             progress=None, notes: list | None = None) -> list:
    """Cost every (model, bits) pair. ``images``: ``{model: count}`` of images per model.
    ``notes`` (a list) receives a line when the shipped MNIST sample stands in for the test set."""
    images = images or {}
    rows = []
    for model, fname in models:
        spec0 = load_network_spec(Path(networks_dir) / fname)
        n = images.get(model, 4)
        stem = Path(fname).stem
        trained_any = any((Path(networks_dir) / f"{stem}-{b}b.yaml").is_file() for b in bits)
        if spec0.dataset == "mnist":
            imgs, src = mnist_images(n, notes)
        elif trained_any:  # trained weights: the activity of real test images
            imgs, src = dataset_images(spec0, n, seed, notes, f"--{model.lower()}-images")
        else:  # random weights: real CIFAR-10 images would add no meaning to the activity
            imgs = synthetic_images(spec0.input_shape, n, seed)
            src = (f"synthetic images (seed {seed}; the {spec0.dataset} networks have random "
                   f"weights, so table5 does not read {spec0.dataset})")
        src = f"{src}, {len(imgs)} images"
        for b in bits:
            trained = Path(networks_dir) / f"{Path(fname).stem}-{b}b.yaml"
            if trained.is_file():  # weights trained at this width (networks/lenet-mnist-4b.yaml)
                spec = variant(load_network_spec(trained), b)
            else:
                spec = variant(spec0, b)
            network = build_network(spec)
            wsrc = "random" if spec.weights == "random" else Path(spec.weights).name
            if engine:
                from ..engine import Simulator
                result = Simulator(network).run(imgs, batch=max(1, len(imgs)))
                stats, how = result.stats, "cycle-level engine"
            else:
                stats, how = stats_from_ideal(network, network.quantize_input(imgs)), "ideal network"
            rep = estimate(network, stats, circuit=circuit, images=len(imgs),
                           gsums=row_conductance_sums(network))
            crit = sum(1 for lc in rep.layers if lc.critical and lc.kind in ("conv", "fc"))
            rows.append(Row(model=model, bits=b, network=spec.name, layers=crit,
                            tiles=sum(lc.tiles * lc.replicas for lc in rep.layers),
                            speed_mhz=rep.speed_mhz, energy_uj=rep.energy_per_image_j * 1e6,
                            area_mm2=rep.area_mm2, inputs=f"{src}; weights {wsrc}",
                            stats_from=how, report=rep))
            if progress:
                progress(rows[-1])
    base = {}
    for r in rows:
        if r.bits == max(bits):
            base[r.model] = r
    for r in rows:
        b0 = base.get(r.model)
        if b0 is None or r is b0:
            continue
        r.speedup = r.speed_mhz / b0.speed_mhz
        r.energy_saving = 100 * (1 - r.energy_uj / b0.energy_uj)
        r.area_saving = 100 * (1 - r.area_mm2 / b0.area_mm2)
    return rows


def _g(x, digits=3) -> str:
    if x >= 10 ** digits:
        return f"{x:,.0f}"
    text = f"{x:#.{digits}g}"
    return text[:-1] if text.endswith(".") else text


def format_markdown(rows, paper: bool = True) -> str:
    """Table 5's layout (one line per model and bit width), then the paper's ratios beside ours."""
    lines = ["| model | Layer Num. | Speed (MHz) | Speedup | Energy (uJ) | Energy Saving | "
             "Area (mm²) | Area Saving |", "|---|---|---|---|---|---|---|---|"]
    top = max(r.bits for r in rows)
    for r in rows:
        name = f"{r.model} {r.bits}-bit" + (" (baseline)" if r.bits == top else "")
        lines.append(
            f"| {name} | {r.layers} | {_g(r.speed_mhz, 4)} | "
            f"{'-' if r.speedup is None else f'{r.speedup:.1f}x'} | {_g(r.energy_uj)} | "
            f"{'-' if r.energy_saving is None else f'{r.energy_saving:.1f}%'} | "
            f"{_g(r.area_mm2)} | {'-' if r.area_saving is None else f'{r.area_saving:.1f}%'} |")
    if not paper:
        return "\n".join(lines)
    lines += ["", "Against the paper's printed Table 5 (ours / paper):", "",
              "| model | Speed (MHz) | Speedup | Energy (uJ) | Energy Saving | Area (mm²) | "
              "Area Saving |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        p = PAPER.get((r.model, r.bits))
        pr = PAPER_RATIOS.get((r.model, r.bits))
        if p is None:
            continue
        sp = "-" if r.speedup is None else f"{r.speedup:.1f}x / {pr[0]}x"
        es = "-" if r.energy_saving is None else f"{r.energy_saving:.1f} / {pr[1]}%"
        ars = "-" if r.area_saving is None else f"{r.area_saving:.1f} / {pr[2]}%"
        lines.append(f"| {r.model} {r.bits}-bit | {_g(r.speed_mhz, 4)} / {p[1]} | {sp} | "
                     f"{_g(r.energy_uj)} / {p[2]} | {es} | {_g(r.area_mm2)} / {p[3]} | {ars} |")
    return "\n".join(lines)


def check_tolerances(rows) -> list:
    """Checks against the paper: ``(label, ours, paper, tolerance, ok)`` per ratio."""
    out = []
    for r in rows:
        pr = PAPER_RATIOS.get((r.model, r.bits))
        if pr is None or r.speedup is None:
            continue
        out.append((f"{r.model} 8->{r.bits} speedup", r.speedup, pr[0], "10%",
                    abs(r.speedup / pr[0] - 1) <= 0.10))
        out.append((f"{r.model} 8->{r.bits} energy saving", r.energy_saving, pr[1], "5 pt",
                    abs(r.energy_saving - pr[1]) <= 5.0))
        out.append((f"{r.model} 8->{r.bits} area saving", r.area_saving, pr[2], "3 pt",
                    abs(r.area_saving - pr[2]) <= 3.0))
    return out
