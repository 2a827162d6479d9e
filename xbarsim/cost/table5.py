"""The paper's Table 5: LeNet, AlexNet and ResNet at 8, 4 and 3 bits on the cost model.

Each row is one network at ``M = N = bits`` (signals, weights and the input image at ``bits``),
costed from the event counts of a run on a few images (the cycle-level engine, or the ideal
integer network for speed), and compared with the 8-bit row as the paper does: speedup, energy
saving, area saving. The paper's printed values are kept beside ours for comparison only.

:func:`table5` returns a :class:`Table5` (rows, checks, and where each model's images and weights
came from as data, not text); its :meth:`~Table5.markdown` is what ``xbarsim table5 --out``
writes and :meth:`~Table5.to_dict` what ``--json`` prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..config.kinds import kind_of
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


@dataclass(frozen=True)
class ImageSource:
    """Where one model's images came from. ``text`` is how the table words it (``"MNIST test set,
    100 images"``); ``kind`` is ``"test set"``, ``"shipped sample"`` (the 200-image MNIST sample,
    ``$XBARSIM_DATA`` unset) or ``"synthetic"``; for synthetic images ``why`` is ``"random
    weights"`` (no width of the network is trained, so real images would add no meaning) or
    ``"no data"`` (trained weights, but the data set is not found)."""
    text: str
    kind: str
    why: str = ""


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
    source: ImageSource | None = None    # the images, as data (``inputs`` words it)
    weights_file: str | None = None      # the trained weights' file name; None: random weights

    def to_dict(self) -> dict:
        """The row as ``xbarsim table5 --json`` prints it (the cost report under ``cost``)."""
        skip = ("report", "source", "weights_file")
        return ({k: v for k, v in vars(self).items() if k not in skip}
                | {"cost": self.report.to_dict()})


class Check(NamedTuple):
    """One ratio against the paper's (a tuple: ``label, ours, paper, tolerance, ok``)."""
    ratio: str
    ours: float
    paper: float
    tolerance: str
    ok: bool


def variant(spec, bits: int):
    """The network description at ``M = N = input bits = bits``."""
    return replace(spec, signal_bits=bits, weight_bits=bits, input_bits=bits)


def mnist_images(n: int, notes: list | None = None):
    """The first ``n`` MNIST test images (uint8, (n, 1, 28, 28)) and where they came from, by the
    rule of :func:`xbarsim.io.datasets.select_images`: the full test set when found; the shipped
    200-image sample only when ``$XBARSIM_DATA`` is not set (its note is appended to ``notes``);
    otherwise a :class:`~xbarsim.errors.DataError` naming what to put where."""
    images, source, _ = _select("mnist", (1, 28, 28), n, 0, notes, "--lenet-images/--samples")
    return images, source


def _select(dataset: str, shape, n: int, seed: int, notes: list | None, flag: str) -> tuple:
    """``(images, source, kind)``: kind ``"test set"``, ``"shipped sample"`` or ``"synthetic"``
    (see :class:`ImageSource`), told by what :func:`~xbarsim.io.datasets.select_images` returned
    (no labels: synthetic; a note: a stand-in for the data set)."""
    from ..io import datasets

    chosen = datasets.select_images(dataset, "test", n, shape=shape, seed=seed, flag=flag)
    if chosen.note and notes is not None:
        notes.append(chosen.note)
    images, labels, source = chosen
    kind = "synthetic" if labels is None else "shipped sample" if chosen.note else "test set"
    if kind == "test set":
        source = f"{DATASET_LABEL.get(dataset, dataset)} test set"  # not the user's folder
    return np.asarray(images, np.uint8).reshape(-1, *shape), source, kind


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


def network_cost(network, samples: int = 8, engine: bool = False, circuit=None,
                 positions: str | None = None, notes: list | None = None) -> dict:
    """The cost report of ``network`` (a dict, as ``xbarsim report NETWORK.yaml --json`` prints
    it) from its events on ``samples`` images: MNIST test images for an MNIST network (the shipped
    sample when ``$XBARSIM_DATA`` is not set, its note appended to ``notes``), else seeded
    synthetic ones; events from the ideal integer network or, with ``engine``, the cycle-level
    engine. ``cost["inputs"]`` says which."""
    from ..errors import XbarsimError

    if samples < 1:
        raise XbarsimError(f"--samples: must be >= 1 (got {samples})")
    spec = network.spec
    if spec.dataset == "mnist":
        images, src = mnist_images(samples, notes)
    else:
        images = synthetic_images(spec.input_shape, samples, spec.seed)
        src = f"synthetic images (seed {spec.seed})"
    if engine:
        from ..engine import Simulator
        stats = Simulator(network).run(images, batch=max(1, len(images))).stats
    else:
        stats = stats_from_ideal(network, network.quantize_input(np.asarray(images)))
    report = estimate(network, stats, circuit=circuit, images=len(images), positions=positions)
    cost = report.to_dict()
    cost["inputs"] = f"{src}, {len(images)} images; events from " + (
        "the cycle-level engine" if engine else "the ideal integer network")
    return cost


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
            imgs, src, kind = _select("mnist", (1, 28, 28), n, 0, notes,
                                      "--lenet-images/--samples")
            why = ""
        elif trained_any:  # trained weights: the activity of real test images
            imgs, src, kind = _select(spec0.dataset, spec0.input_shape, n, seed, notes,
                                      f"--{model.lower()}-images")
            why = "no data" if kind == "synthetic" else ""
        else:  # random weights: real CIFAR-10 images would add no meaning to the activity
            imgs = synthetic_images(spec0.input_shape, n, seed)
            src = (f"synthetic images (seed {seed}; the {spec0.dataset} networks have random "
                   f"weights, so table5 does not read {spec0.dataset})")
            kind, why = "synthetic", "random weights"
        source = ImageSource(f"{src}, {len(imgs)} images", kind, why)
        for b in bits:
            trained = Path(networks_dir) / f"{Path(fname).stem}-{b}b.yaml"
            if trained.is_file():  # weights trained at this width (networks/lenet-mnist-4b.yaml)
                spec = variant(load_network_spec(trained), b)
            else:
                spec = variant(spec0, b)
            network = build_network(spec)
            wfile = None if spec.weights == "random" else Path(spec.weights).name
            if engine:
                from ..engine import Simulator
                result = Simulator(network).run(imgs, batch=max(1, len(imgs)))
                stats, how = result.stats, "cycle-level engine"
            else:
                stats, how = stats_from_ideal(network, network.quantize_input(imgs)), "ideal network"
            rep = estimate(network, stats, circuit=circuit, images=len(imgs),
                           gsums=row_conductance_sums(network))
            crit = sum(1 for lc in rep.layers if lc.critical and kind_of(lc.kind).compute)
            rows.append(Row(model=model, bits=b, network=spec.name, layers=crit,
                            tiles=sum(lc.tiles * lc.replicas for lc in rep.layers),
                            speed_mhz=rep.speed_mhz, energy_uj=rep.energy_per_image_j * 1e6,
                            area_mm2=rep.area_mm2, inputs=f"{source.text}; weights "
                            f"{wfile or 'random'}", stats_from=how, report=rep, source=source,
                            weights_file=wfile))
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
    """Checks against the paper: a :class:`Check` ``(label, ours, paper, tolerance, ok)`` per
    ratio."""
    out = []
    for r in rows:
        pr = PAPER_RATIOS.get((r.model, r.bits))
        if pr is None or r.speedup is None:
            continue
        out.append(Check(f"{r.model} 8->{r.bits} speedup", r.speedup, pr[0], "10%",
                         abs(r.speedup / pr[0] - 1) <= 0.10))
        out.append(Check(f"{r.model} 8->{r.bits} energy saving", r.energy_saving, pr[1], "5 pt",
                         abs(r.energy_saving - pr[1]) <= 5.0))
        out.append(Check(f"{r.model} 8->{r.bits} area saving", r.area_saving, pr[2], "3 pt",
                         abs(r.area_saving - pr[2]) <= 3.0))
    return out


#: Checks the paper cannot pass, with why (the table says so when one fails).
EXPLAINED = {
    "Alexnet 8->3 speedup": "The AlexNet 8->3 speedup cannot match: the paper prints 11.8x, but "
                            "its own speeds give 3.79 / 0.27 = 14.0x. The model reproduces the "
                            "printed speeds (3.79 and 0.268 MHz) and so their ratio.",
}


@dataclass
class Table5:
    """Table 5 as data: the rows (each with its images and weights as data), the checks against
    the paper and the circuit card they were costed with (None: the default)."""
    rows: list
    checks: list
    circuit: object = None

    def to_dict(self) -> dict:
        """What ``xbarsim table5 --json`` prints."""
        return {"rows": [r.to_dict() for r in self.rows],
                "checks": [c._asdict() for c in self.checks]}

    def markdown(self, command: str = "xbarsim table5", data_dir: bool | None = None) -> str:
        """The table as ``xbarsim table5 --out`` writes it, made by ``command``; ``data_dir``:
        whether ``$XBARSIM_DATA`` named the data (default: whether it is set), which the header
        says as ``XBARSIM_DATA=DIR`` (the user's own folder is not written into the table)."""
        return format_document(self, command, data_dir)


def table5(models=TABLE5_NETWORKS, bits=TABLE5_BITS, images: dict | None = None,
           engine: bool = False, circuit=None, seed: int = 0, networks_dir=NETWORKS_DIR,
           progress=None, notes: list | None = None) -> Table5:
    """:func:`evaluate` and :func:`check_tolerances` in one :class:`Table5`."""
    rows = evaluate(models, bits, images, engine, circuit, seed, networks_dir, progress, notes)
    return Table5(rows, check_tolerances(rows), circuit)


def _by_model(rows) -> dict:
    """Per model (in row order): its image source, how events were counted, its networks and
    which widths are trained or random."""
    out = {}
    for r in rows:
        entry = out.setdefault(r.model, {"source": r.source, "how": r.stats_from, "nets": [],
                                         "random": [], "trained": []})
        entry["nets"].append(f"{r.bits}-bit `networks/{r.network}.yaml` (weights "
                             f"{r.weights_file or 'random'})")
        entry["random" if r.weights_file is None else "trained"].append(r.bits)
    return out


def data_notes(rows) -> list:
    """The table's notes on its data: random weights, synthetic images (and why), models mixing
    trained and random widths, the shipped MNIST sample standing in for the test set."""
    models = _by_model(rows)
    notes = []
    if any(r.weights_file is None for r in rows):
        notes.append("**weights are random** where no trained file exists for a width (a network "
                     "`<name>-<M>b.yaml` beside the base YAML is used when it exists)")
    # seeded synthetic images stand in for two reasons: no width has trained weights (real images
    # would add no meaning), or a trained network's data set is not found (activity estimated)
    for why, text in (
            ("random weights", "random weights at every width, so real images would add no "
                               "meaning"),
            ("no data", "their data set is not found: energies from synthetic activity, accuracy "
                        "not scored")):
        names = sorted(m for m, e in models.items()
                       if e["source"].kind == "synthetic" and e["source"].why == why)
        if names:
            notes.append(f"**{' and '.join(names)} run{'s' if len(names) == 1 else ''} on "
                         f"seeded synthetic inputs** ({text})")
    for model, e in models.items():  # a model with trained and random widths: its savings mix both
        if e["random"] and e["trained"]:
            notes.append(f"**{model} mixes trained and random widths** (trained at "
                         f"{', '.join(map(str, e['trained']))} bits, random at "
                         f"{', '.join(map(str, e['random']))}), so its energy savings compare "
                         f"networks with different weights; its speeds and areas do not depend on "
                         f"them")
    if any(r.source.kind == "shipped sample" for r in rows):
        notes.append("**LeNet runs on the 200-image MNIST sample shipped with xbarsim** "
                     "(XBARSIM_DATA is not set)")
    return notes


def format_document(table: Table5, command: str = "xbarsim table5",
                    data_dir: bool | None = None) -> str:
    """:meth:`Table5.markdown`: the header naming the command and the card, where each model's
    events came from, the notes, the table, the checks and the energy per component."""
    from .circuit import default_circuit

    rows, checks = table.rows, table.checks
    card = table.circuit or default_circuit()
    if data_dir is None:
        data_dir = bool(os.environ.get("XBARSIM_DATA"))
    env = "XBARSIM_DATA=DIR " if data_dir else ""
    file = card.file
    if file:
        try:
            file = os.path.relpath(file)
        except ValueError:
            pass
    lines = [
        "# Table 5 on the xbarsim cost model",
        "",
        f"Made by `{env}{command}` (circuit card `{card.name}`, `{file or 'built in'}`)"
        + (", DIR holding `mnist/` and `cifar10/` (docs/datasets.md)." if env else "."),
        "",
        "Each row: the network at M = N = input bits = the row's bits, its events counted on:",
        "",
    ]
    for model, e in _by_model(rows).items():
        lines.append(f"- {model}: {e['source'].text}; events from the {e['how']}; "
                     + ", ".join(e["nets"]) + ".")
    notes = data_notes(rows)
    lines += [
        "",
        ("Note: " + "; ".join(notes) + ". Energies depend on activity, so absolute energies are "
         "estimates; speed and area do not depend on the data.") if notes else
        "Energies depend on activity; speed and area do not depend on the data.",
        "",
        format_markdown(rows),
        "",
        "Checks against the paper (ours within 10 % of its speedup, 5 points of its energy "
        "saving, 3 points of its area saving):",
        "",
        "| ratio | ours | paper | tolerance | within |",
        "|---|---|---|---|---|",
    ]
    for label, ours, paper, tol, ok in checks:
        lines.append(f"| {label} | {ours:.2f} | {paper} | {tol} | {'yes' if ok else 'NO'} |")
    for c in checks:
        if not c.ok and c.ratio in EXPLAINED:
            lines += ["", EXPLAINED[c.ratio]]
    components = _components(rows)
    lines += ["", "Per-component energy per image (uJ):", "",
              "| row | " + " | ".join(components) + " |",
              "|---|" + "---|" * len(components)]
    for r in rows:
        per = {k: v * 1e6 / r.report.images for k, v in r.report.energy_j.items()}
        lines.append(f"| {r.model} {r.bits}-bit | " + " | ".join(
            f"{per[k]:.3g}" for k in components) + " |")
    lines += ["", "See docs/cost-model.md for the model and which parameters the paper pins."]
    return "\n".join(lines)


def _components(rows) -> list:
    """The energy components that are non-zero in some row, in first-seen order."""
    keys = []
    for r in rows:
        for k, v in r.report.energy_j.items():
            if v and k not in keys:
                keys.append(k)
    return keys
