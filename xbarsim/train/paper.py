"""The paper's Tables 2, 3 and 4 for LeNet on MNIST, AlexNet and ResNet-18 on CIFAR-10, as a
library a notebook can call (``xbarsim paper`` is a thin command over it).

* :func:`reproduce` trains what ``options.workdir`` lacks (a float network, then Neuron Convergence
  and NC+WC for each width; every stage resumable, checkpoints in the workdir) and measures on the
  test images; needs PyTorch (the ``train`` extra).
* :func:`merge_json` measures nothing: the tables from the figures (``--json``) of earlier runs,
  their widths merged; no PyTorch needed.
* :func:`train_missing` only trains; :func:`format_tables` turns figures into the markdown.

What the tables hold:

* Table 2 (signals quantized, float weights), from the quantized software model: w/o = the float
  network with every signal clipped and rounded to M bits at a data-chosen scale; w/ = Neuron
  Convergence.
* Table 3 (weights quantized, float signals), software model: w/o = plain rounding to N-bit
  fixed point (max-based power-of-two step); w/ = Weight Clustering (Eq. 6) on the same network.
* Table 4 (both quantized): the ideal integer network (``run_ideal``) and the cycle-level engine,
  w/o = the float network quantized directly (weights file in float form, rounded on load),
  w/ = NC + WC + fine-tuning (the paper's method; the shipped ``networks/lenet-mnist-<M>b.npz``
  when present), and a last row with NC + WC followed by hardware-aware fine-tuning
  (``cycle_epochs``: the cycle-level engine in the forward pass).

This module imports PyTorch only inside :func:`reproduce`, so the merge runs without it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config.section import check_seed
from ..errors import XbarsimError

PAPER_LENET = {  # the paper's LeNet rows (Tables 1-4), for the side-by-side columns
    "ideal": 98.16,
    2: {"wo": {5: 97.74, 4: 97.0, 3: 92.9}, "w": {5: 98.16, 4: 98.15, 3: 98.13}},
    3: {"wo": {5: 98.16, 4: 97.86, 3: 94.52}, "w": {5: 98.16, 4: 98.1, 3: 97.79}},
    4: {"wo": {5: 97.74, 4: 96.38, 3: 93.43}, "w": {5: 98.16, 4: 98.14, 3: 97.46}},
}
PAPER_ALEXNET = {
    "ideal": 85.35,
    2: {"wo": {5: 82.51, 4: 77.8, 3: 67.83}, "w": {5: 85.2, 4: 83.15, 3: 82.1}},
    3: {"wo": {5: 83.02, 4: 79.19, 3: 75.33}, "w": {5: 85.26, 4: 83.59, 3: 82.92}},
    4: {"wo": {5: 81.8, 4: 76.16, 3: 69.7}, "w": {5: 84.47, 4: 83.05, 3: 81.53}},
}
PAPER_RESNET = {
    "ideal": 93.05,
    2: {"wo": {5: 91.37, 4: 75.72, 3: 26.57}, "w": {5: 92.5, 4: 91.33, 3: 88.95}},
    3: {"wo": {5: 91.0, 4: 77.12, 3: 29.0}, "w": {5: 92.8, 4: 91.0, 3: 88.1}},
    4: {"wo": {5: 91.03, 4: 75.16, 3: 22.18}, "w": {5: 91.48, 4: 90.33, 3: 87.71}},
}


@dataclass(frozen=True)
class Recipe:
    """How ``xbarsim paper NAME`` trains and names one network's files (docs/training.md)."""
    label: str                  # as the paper's tables print it
    dataset: str                # as the tables print it
    network: str                # base network YAML
    ship: str                   # shipped files networks/<ship>-<M>b.{yaml,npz}
    paper: dict
    epochs: int                 # float training
    nc_epochs: int
    finetune_epochs: int
    t3_finetune_epochs: int
    cycle_epochs: int
    plain_args: tuple = ()      # extra options of the float stage
    nc_args: tuple = ()         # extra options of the nc stage
    ncwc_args: tuple = ()       # extra options of the nc+wc stage
    # Eq. 3's penalty is summed in counter units, which grow as 2^M: above this width the
    # --lambda of the nc and nc+wc stages is divided by 2^(M - lambda_bits), keeping the penalty's
    # weight against the cross-entropy what it is at lambda_bits (None: the same λ at every width)
    lambda_bits: int | None = None

    def stage_args(self, args: tuple, m: int) -> list:
        """``args`` (nc_args or ncwc_args) for width ``m``: --lambda rescaled above lambda_bits."""
        out = list(args)
        if self.lambda_bits is not None and m > self.lambda_bits and "--lambda" in out:
            i = out.index("--lambda") + 1
            out[i] = f"{float(out[i]) / 2 ** (m - self.lambda_bits):.6g}"
        return out


# AlexNet and ResNet-18 train with batch norm after every conv (folded before quantization), SGD
# with a one-cycle schedule; Neuron Convergence starts from the folded float network with the
# count scale at the 99.9th percentile of each layer's activations (docs/networks.md)
CIFAR_PLAIN = ("--batch-norm", "--optimizer", "sgd", "--schedule", "onecycle", "--lr", "0.05",
               "--weight-decay", "5e-4")
CIFAR_NC = ("--lr", "5e-4", "--lambda", "3e-5", "--calib-quantile", "0.999")
CIFAR_NCWC = ("--finetune-lr", "2e-4", "--lambda", "3e-5")
# ResNet-18 (17 conv layers, no batch norm once folded) needs a tenth of AlexNet's learning rate:
# one NC epoch at 5e-4 took the count-mode network from 83.9 % (its start, first 1,000 test images)
# to 61.5 % on the whole training set (14.4 % on 4,000 images); 5e-5 gave 84.7 %. The same for
# the NC+WC fine-tuning: from 73.4 % after clustering, 2e-4 gave 44.9 %, 2e-5 83.0 % (4,000
# training images; docs/training.md). λ = 3e-5 is for 3 and 4 bits; at 8 bits it took the
# network from the count-mode start to 73.96 % in one NC epoch (penalty 11.95 against a
# cross-entropy of 0.92), so above 4 bits it is divided by 2^(M-4) (Recipe.lambda_bits)
RESNET_NC = ("--lr", "5e-5", "--lambda", "3e-5", "--calib-quantile", "0.999", "--channels-last")
RESNET_NCWC = ("--finetune-lr", "2e-5", "--lambda", "3e-5", "--channels-last")
RECIPES = {
    "lenet": Recipe("LeNet", "MNIST", "networks/lenet-mnist.yaml", "lenet-mnist", PAPER_LENET,
                    30, 8, 3, 2, 2),
    "alexnet": Recipe("AlexNet", "CIFAR-10", "networks/alexnet-cifar10.yaml", "alexnet-cifar10",
                      PAPER_ALEXNET, 15, 2, 3, 1, 0, CIFAR_PLAIN, CIFAR_NC, CIFAR_NCWC),
    "resnet18": Recipe("ResNet-18", "CIFAR-10", "networks/resnet18-cifar10.yaml",
                       "resnet18-cifar10", PAPER_RESNET, 6, 1, 1, 0, 0,
                       CIFAR_PLAIN + ("--channels-last",), RESNET_NC, RESNET_NCWC, 4),
}
TORCH_DEVICES = ("cpu", "cuda", "auto")
#: Largest ``--from-json`` file read (the shipped ones are a few kB).
MAX_FIGURES_BYTES = 16 << 20


def parse_widths(bits) -> tuple:
    """``"5,4,3"`` or ``(5, 4, 3)`` → ``(5, 4, 3)``: widths M = N, each in 2..16."""
    if isinstance(bits, str):
        text, parts = bits, bits.split(",")
    else:
        parts = list(bits) if isinstance(bits, (list, tuple)) else [bits]
        text = ",".join(map(str, parts))
    try:
        widths = tuple(int(b) if isinstance(b, str) else _integer(b) for b in parts)
    except (TypeError, ValueError):
        widths = ()
    if not widths:
        raise XbarsimError(f"--bits: must be widths M separated by commas, e.g. 5,4,3 "
                           f"(got {text})")
    if not all(2 <= b <= 16 for b in widths):
        raise XbarsimError(f"--bits: each width must be in 2..16 (got {text})")
    return widths


def _integer(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(value)
    return int(value)


def _check_count(value, flag: str, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise XbarsimError(f"{flag}: must be an integer >= {low} (got {value!r})")
    if value < low:
        raise XbarsimError(f"{flag}: must be >= {low} (got {value})")


@dataclass(frozen=True)
class PaperOptions:
    """What ``xbarsim paper`` takes besides the network's name (each field is its option of the
    same name; ``None`` = the recipe's default). Checked here: a mistake is one line naming the
    option, as the command prints it."""
    network: str | None = None          # base network YAML (default the recipe's)
    workdir: str | None = None          # trained files and checkpoints (default results/paper-NAME)
    ship: str = "networks"              # folder of the shipped <network>-<M>b.npz ('' = none)
    bits: tuple = (5, 4, 3)             # widths M = N ("5,4,3" is read too); training order
    epochs: int | None = None           # float training epochs
    nc_epochs: int | None = None        # Neuron Convergence epochs
    finetune_epochs: int | None = None  # NC+WC fine-tuning epochs
    t3_finetune_epochs: int | None = None  # Table 3 w/ fine-tuning epochs (0: clustering alone)
    cycle_epochs: int | None = None     # hardware-aware fine-tuning epochs (0: none)
    seed: int = 0
    threads: int = 1                    # torch threads of training
    torch_device: str = "cpu"           # where the training stages run
    train_limit: int | None = None      # the first N training images only (smoke runs)
    samples: int | None = None          # test images (default all)
    engine: bool = True                 # measure the cycle-level column
    #: the command written into the tables ("Made by `...`"); None: the Python call
    command: str | None = field(default=None, compare=False)

    def __post_init__(self):
        check_seed(self.seed, "--seed")
        object.__setattr__(self, "bits", parse_widths(self.bits))
        for name, low in (("epochs", 0), ("nc_epochs", 0), ("finetune_epochs", 0),
                          ("t3_finetune_epochs", 0), ("cycle_epochs", 0), ("threads", 1),
                          ("train_limit", 1), ("samples", 1)):
            _check_count(getattr(self, name), "--" + name.replace("_", "-"), low)
        if self.torch_device not in TORCH_DEVICES:
            raise XbarsimError(f"--torch-device: must be one of {', '.join(TORCH_DEVICES)} "
                               f"(got {self.torch_device})")

    def work(self, name: str) -> Path:
        return Path(self.workdir or f"results/paper-{name}")

    def pick(self, key: str, recipe: Recipe) -> int:
        """The option ``key`` (an epoch count), else ``recipe``'s."""
        value = getattr(self, key)
        return getattr(recipe, key) if value is None else value


@dataclass
class PaperResult:
    """One network's tables: ``figures`` (what ``--json`` writes; tables keyed by table number
    and width) and ``markdown`` (what ``--out`` writes)."""
    network: str
    figures: dict
    markdown: str

    def save(self, out_md=None, out_json=None) -> None:
        """Write the markdown and/or the figures (each atomically)."""
        from ..io.atomic import atomic_write_text

        if out_md:
            atomic_write_text(out_md, self.markdown)
        if out_json:
            atomic_write_text(out_json, json.dumps(self.figures, indent=1, default=str))


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise XbarsimError(f"paper: no recipe for {name!r} (have {', '.join(RECIPES)})")
    return RECIPES[name]


def require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise XbarsimError("xbarsim paper needs PyTorch: pip install -e '.[train]'") from None


def _api_command(what: str, name: str, options: PaperOptions) -> str:
    return f"xbarsim.paper.{what}({name!r}, bits={options.bits})"


def _say(line: str) -> None:
    print(line, flush=True)


def _train(network, bits, method, out, extra, log, threads=1, train_limit=None, test_limit=None,
           device="cpu"):
    """One ``xbarsim train`` stage in a subprocess, resumable: its checkpoint sits next to ``out``
    (``--resume`` continues an interrupted stage) and its history goes to ``out`` .json."""
    out = Path(out)
    cmd = [sys.executable, "-m", "xbarsim", "train", str(network), "--bits", f"{bits},{bits}",
           "--method", method, "--out", str(out), "--no-progress", "--threads", str(threads),
           "--checkpoint", str(out.with_suffix(".pt")), "--resume",
           "--log", str(out.with_suffix(".json"))] + [str(e) for e in extra]
    if device != "cpu":
        cmd += ["--torch-device", device]
    if train_limit is not None:
        cmd += ["--train-limit", str(train_limit)]
    if test_limit is not None:
        cmd += ["--test-limit", str(test_limit)]
    log("$ " + " ".join(["xbarsim"] + cmd[3:]))
    t0 = time.time()
    rc = subprocess.call(cmd)
    if rc != 0:
        raise XbarsimError(f"training failed ({' '.join(cmd[3:])}), exit status {rc}")
    log(f"  ({time.time() - t0:.0f} s)")


def train_missing(name: str, options: PaperOptions | None = None, log=_say) -> Path:
    """Train (or resume) every file of ``name``'s pipeline that the workdir lacks; returns the
    workdir. Float → NC at each width of ``options.bits`` → NC+WC (+ fine-tuning), in that
    order."""
    from ..config.spec import load_network_spec
    from ..io.paths import check_out_dir

    opts = options or PaperOptions()
    r = recipe(name)
    require_torch()
    if opts.workdir:
        check_out_dir(opts.workdir, "--workdir")
    network = opts.network or r.network
    work = opts.work(name)
    work.mkdir(parents=True, exist_ok=True)
    common = dict(log=log, threads=opts.threads, train_limit=opts.train_limit,
                  test_limit=opts.samples, device=opts.torch_device)
    seed = ["--seed", opts.seed]
    plain = work / "plain.npz"
    shipped_float = Path(opts.ship) / f"{r.ship}-float.npz" if opts.ship else None
    if not plain.exists() and shipped_float is not None and shipped_float.exists():
        import shutil

        shutil.copyfile(shipped_float, plain)  # the shipped float network: the tables' own
        log(f"float network: {shipped_float} (shipped; delete {plain} and it is not retrained "
            f"unless --ship names a folder without it)")
    if not plain.exists():
        _train(network, 4, "plain", plain,
               ["--epochs", opts.pick("epochs", r)] + list(r.plain_args) + seed, **common)
    cycle_epochs = opts.pick("cycle_epochs", r)
    ft = opts.pick("finetune_epochs", r)
    for m in opts.bits:
        nc = work / f"nc-{m}b.npz"
        if not nc.exists():
            _train(network, m, "nc", nc, ["--init", plain, "--epochs", opts.pick("nc_epochs", r)]
                   + r.stage_args(r.nc_args, m) + seed, **common)
        shipped = Path(opts.ship) / f"{r.ship}-{m}b.npz" if opts.ship else None
        ncwc = work / f"ncwc-{m}b.npz"
        if not ncwc.exists() and not (shipped and shipped.exists()):
            _train(network, m, "nc+wc", ncwc, ["--init", nc, "--epochs", 0,
                                               "--finetune-epochs", ft]
                   + r.stage_args(r.ncwc_args, m) + seed, **common)
        hwft = work / f"ncwc-cycle-{m}b.npz"
        if cycle_epochs > 0 and not hwft.exists():
            # the cycle-level forward pass uses the hardware the tables measure: the shipped
            # network's crossbar.bias where it exists, else the base network's
            ship_yaml = Path(opts.ship) / f"{r.ship}-{m}b.yaml" if opts.ship else None
            bias = (["--bias-mode", load_network_spec(ship_yaml).bias_mode]
                    if ship_yaml is not None and ship_yaml.exists() else [])
            _train(network, m, "nc+wc", hwft,
                   ["--init", nc, "--epochs", 0, "--finetune-epochs", ft,
                    "--cycle-epochs", cycle_epochs] + bias + r.stage_args(r.ncwc_args, m) + seed,
                   **common)
    return work


def reproduce(name: str, options: PaperOptions | None = None, log=_say) -> PaperResult:
    """Train what is missing (:func:`train_missing`), then measure Tables 2-4 of ``name``
    (``lenet``, ``alexnet`` or ``resnet18``) on the test images. ``log`` receives each progress
    line (default: printed)."""
    opts = options or PaperOptions()
    r = recipe(name)
    t_start = time.time()
    work = train_missing(name, opts, log)
    t_trained = time.time()
    figs = _measure(name, opts, r, work, log)
    figs["training"] = training_record(work, opts.bits)
    figs["seconds"]["total"] = time.time() - t_start
    figs["seconds"]["training"] = t_trained - t_start  # the stages missing from the workdir
    return PaperResult(name, figs, format_tables(figs, opts.bits, r, work, figs["command"]))


def _measure(name, opts, r, work, log) -> dict:
    """Tables 2-4's figures from the trained files of ``work``."""
    from ..network import build_network
    from ..network.reference import run_ideal
    from ..config.spec import load_network_spec
    from ..train import quant
    from ..train.loop import (TrainConfig, accuracy, augmentation, calibrate,
                              direct_quantization, fit, integer_predictions, load_arrays,
                              read_float_form, setup_torch)
    from ..train.model import QNet, load_float_state
    from ..network.weights import load_weights, save_weights

    widths = opts.bits
    base = load_network_spec(opts.network or r.network)
    plain = work / "plain.npz"
    cycle_epochs = opts.pick("cycle_epochs", r)
    t3_epochs = opts.pick("t3_finetune_epochs", r)
    setup_torch(opts.seed, opts.threads)
    images, labels = load_arrays(base.dataset, "test", opts.samples)
    train_set = load_arrays(base.dataset, "train", opts.train_limit)
    calib = train_set[0][:2000]
    command = opts.command if opts.command is not None else _api_command("reproduce", name, opts)
    figs = {"network": name, "samples": int(len(images)), "tables": {2: {}, 3: {}, 4: {}},
            "seconds": {}, "command": command, "t3_finetune_epochs": t3_epochs}

    # ideal float network
    spec8 = replace(base, signal_bits=8, weight_bits=8, input_bits=8)
    state, _, _ = read_float_form(plain, spec8)
    model = QNet(spec8)
    load_float_state(model, state)
    model.mode = "float"
    ideal = 100 * accuracy(model, images, labels)
    figs["ideal"] = ideal
    log(f"ideal float network: {ideal:.2f}%")
    engine = None
    if opts.engine:
        try:
            from ..engine import Simulator
            engine = Simulator
        except ImportError:
            log("cycle-level engine not available: Table 4 cycle-level column left empty")

    for m in widths:
        spec = replace(base, signal_bits=m, weight_bits=m, input_bits=m)
        # Table 2 -------------------------------------------------------------------------
        model = QNet(spec)
        load_float_state(model, state)
        model.scales = calibrate(model, calib, len(calib))
        model.mode = "scale"
        t2_wo = 100 * accuracy(model, images, labels)
        nc_state, _, _ = read_float_form(work / f"nc-{m}b.npz", spec)
        nc_model = QNet(spec)
        load_float_state(nc_model, nc_state)
        nc_model.mode = "count"
        t2_w = 100 * accuracy(nc_model, images, labels)
        figs["tables"][2][m] = {"wo": t2_wo, "w": t2_w}
        log(f"Table 2, {m} bits: w/o {t2_wo:.2f}%  w/ {t2_w:.2f}%")
        # Table 3 -------------------------------------------------------------------------
        model.mode = "float"
        lim = quant.max_level(m)
        wo_steps, w_steps = {}, {}
        for layer in spec.compute_layers:
            w = state[layer.name][0]
            wo_steps[layer.name] = quant.round_step(w, m)
            w_steps[layer.name] = quant.cluster(w, m, "pow2")[0]
        model.wsteps = wo_steps
        t3_wo = 100 * accuracy(model, images, labels)
        model.wsteps = w_steps
        t3_wc = 100 * accuracy(model, images, labels)
        t3_w = t3_wc
        if t3_epochs > 0:
            t0 = time.time()
            ft = QNet(spec)
            load_float_state(ft, state)
            ft.mode = "float"
            ft.wsteps = w_steps
            cfg = TrainConfig(seed=opts.seed, threads=opts.threads)
            fit(ft, *train_set, t3_epochs, cfg.finetune_lr, cfg, log, False, None,
                f"wc-finetune {m}b", augment=augmentation(cfg, base.dataset))
            t3_w = 100 * accuracy(ft, images, labels)
            figs["seconds"][f"t3_finetune_{m}"] = time.time() - t0
        figs["tables"][3][m] = {"wo": t3_wo, "w": t3_w, "w_clustering_only": t3_wc}
        log(f"Table 3, {m} bits: w/o {t3_wo:.2f}%  w/ {t3_w:.2f}% (clustering alone {t3_wc:.2f}%, "
            f"levels ±{lim})")
        # Table 4 -------------------------------------------------------------------------
        model.wsteps = {}
        wo_file = work / f"wo-{m}b.npz"
        save_weights(wo_file, direct_quantization(spec, state, model.scales, 1.0 / model.top_in),
                     m, m, extra={"meta.method": np.array("plain (w/o)"),
                                  "meta.seed": np.array(opts.seed)})
        shipped = Path(opts.ship) / f"{r.ship}-{m}b.npz" if opts.ship else None
        w_file = shipped if shipped and shipped.exists() else work / f"ncwc-{m}b.npz"
        hw_file = work / f"ncwc-cycle-{m}b.npz"
        row = {"w_file": str(w_file), "hw_file": str(hw_file)}
        files = [("wo", wo_file), ("w", w_file)]
        if cycle_epochs > 0 and hw_file.exists():
            files.append(("hw", hw_file))
        hw_spec = spec
        ship_yaml = Path(opts.ship) / f"{r.ship}-{m}b.yaml" if opts.ship else None
        if ship_yaml is not None and ship_yaml.exists():  # the shipped network's hardware
            hw_spec = replace(spec, bias_mode=load_network_spec(ship_yaml).bias_mode)
        row["bias_mode"] = hw_spec.bias_mode
        for key, path in files:
            net = build_network(hw_spec, load_weights(path, hw_spec))
            sig = net.quantize_input(images)
            t0 = time.time()
            # 256 images a call, no counts kept: one call on 10,000 ResNet-18 images would hold
            # every layer's counts and pre-activations at once (tens of GB)
            ideal_pred = np.concatenate([run_ideal(net, sig[lo:lo + 256], keep=()).predictions
                                         for lo in range(0, len(sig), 256)] or [np.zeros(0, int)])
            row[f"{key}_ideal_seconds"] = time.time() - t0
            row[f"{key}_ideal"] = 100 * float(np.mean(ideal_pred == labels))
            if key == "w":
                soft = integer_predictions(spec, net.weights, images)
                row["w_software"] = 100 * float(np.mean(soft == labels))
                row["w_software_vs_ideal_differ"] = int(np.sum(soft != ideal_pred))
            if engine is not None:
                t0 = time.time()
                res = engine(net).run(sig, compare_ideal=False)  # the ideal ran just above
                row[f"{key}_cycle"] = 100 * float(np.mean(res.predictions == labels))
                row[f"{key}_cycle_vs_ideal_differ"] = int(np.sum(res.predictions != ideal_pred))
                row[f"{key}_cycle_seconds"] = time.time() - t0
        figs["tables"][4][m] = row
        log(f"Table 4, {m} bits: "
            + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items() if not k.endswith("_file")))
    return figs


# -- merging earlier runs' figures (no PyTorch) --------------------------------------------------

def _measured_by(figs) -> list:
    """The commands that measured a --json file's figures: its own, or, for a file that is itself
    a --from-json merge (docs/tables-<network>.json), the commands of the runs it merged."""
    return list(figs.get("commands") or [figs.get("command", "?")])


def _number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


#: Keys of a table row that name something (file names, the bias mode).
_TEXT_KEYS = ("w_file", "hw_file", "bias_mode")
#: What each table's rows must hold.
_ROW_KEYS = {2: ("wo", "w"), 3: ("wo", "w", "w_clustering_only"), 4: ("wo_ideal", "w_ideal",
                                                                     "w_file")}


def _is_figure(key: str) -> bool:
    """A key of a table row that the tables print as a number (others are kept, unread)."""
    return key in ("wo", "w", "w_clustering_only", "w_software") or key.endswith(
        ("_ideal", "_cycle", "_seconds", "_differ"))


def _check_figures(path, figs, name: str) -> dict:
    """``figs`` (one ``--json`` file's content) checked for everything the tables read; returns
    its tables keyed by integers. Each mistake is one line naming the file and the key."""
    def bad(key, what, got=...):
        if got is ...:
            return XbarsimError(f"--from-json: {path}: {key}: {what}")
        try:
            shown = json.dumps(got, default=str)
        except (RecursionError, ValueError):
            shown = f"a deeply nested {type(got).__name__}"
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return XbarsimError(f"--from-json: {path}: {key}: {what} (got {shown})")

    if not isinstance(figs, dict):
        raise XbarsimError(f"--from-json: {path}: not the figures of xbarsim paper --json "
                           f"(got a JSON {type(figs).__name__})")
    if figs.get("network") != name:
        raise XbarsimError(f"--from-json: {path}: figures of {figs.get('network')}, not {name}")
    if not _number(figs.get("ideal")):
        raise bad("ideal", "must be a number", figs.get("ideal"))
    samples = figs.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise bad("samples", "must be an integer >= 0", samples)
    seconds = figs.get("seconds", {})
    if not isinstance(seconds, dict) or not all(_number(v) for v in seconds.values()):
        raise bad("seconds", "must map names to numbers of seconds", seconds)
    if not isinstance(figs.get("command", ""), str):
        raise bad("command", "must be a string", figs["command"])
    t3 = figs.get("t3_finetune_epochs", 0)
    if isinstance(t3, bool) or not isinstance(t3, int):
        raise bad("t3_finetune_epochs", "must be an integer", t3)
    commands = figs.get("commands", [])
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise bad("commands", "must be a list of strings", commands)
    _check_training(figs.get("training", []), bad)
    tables = figs.get("tables")
    if not isinstance(tables, dict) or sorted(tables) != ["2", "3", "4"]:
        raise bad("tables", "must hold tables 2, 3 and 4", tables)
    out = {}
    for k, table in tables.items():
        if not isinstance(table, dict):
            raise bad(f"tables.{k}", "must map widths to rows", table)
        out[int(k)] = {}
        for m, row in table.items():
            where = f"tables.{k}.{m}"
            if not (m.isascii() and m.isdigit()) or not 2 <= int(m) <= 16:
                raise bad(f"tables.{k}", "widths must be integers in 2..16", m)
            if not isinstance(row, dict):
                raise bad(where, "must be an object of figures", row)
            for key in _ROW_KEYS[int(k)]:
                if key not in row:
                    raise bad(f"{where}.{key}", "missing")
            for key, value in row.items():
                if key in _TEXT_KEYS and not isinstance(value, str):
                    raise bad(f"{where}.{key}", "must be a string", value)
                if _is_figure(key) and not _number(value):
                    raise bad(f"{where}.{key}", "must be a finite number", value)
            out[int(k)][int(m)] = row
    return out


def _check_training(rows, bad) -> None:
    if not isinstance(rows, list):
        raise bad("training", "must be a list of per-file rows", rows)
    for i, row in enumerate(rows):
        where = f"training[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("file"), str):
            raise bad(where, "must be an object with a file name", row)
        for key in ("stages", "figures", "test_images"):
            if key not in row:
                raise bad(f"{where}.{key}", "missing")
        stages = row["stages"]
        if not isinstance(stages, dict) or not all(
                isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v)
                for v in stages.values()):
            raise bad(f"{where}.stages", "must map stages to [epochs, seconds]", stages)
        if not isinstance(row["figures"], dict):
            raise bad(f"{where}.figures", "must be an object", row["figures"])
        images = row["test_images"]
        if images is not None and (isinstance(images, bool) or not isinstance(images, int)):
            raise bad(f"{where}.test_images", "must be an integer or null", images)


def read_figures(path, name: str) -> tuple:
    """One ``--json`` file of ``name``'s figures, bounded and checked: ``(figures, tables)``
    (tables keyed by integers)."""
    from ..io.files import read_limited

    def fail(why):
        return XbarsimError(f"--from-json: {path}: not a readable JSON file ({why})")

    try:
        figs = json.loads(read_limited(path, MAX_FIGURES_BYTES, fail, "figures file"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise fail(str(exc) if not isinstance(exc, RecursionError)
                   else "nested too deeply") from None
    return figs, _check_figures(path, figs, name)


def merge_json(name: str, paths, options: PaperOptions | None = None) -> PaperResult:
    """The tables of ``name`` from the ``--json`` files of earlier runs (their widths merged;
    each run's command is listed in the text). Measures nothing; needs no PyTorch."""
    opts = options or PaperOptions()
    r = recipe(name)
    paths = paths.split(",") if isinstance(paths, str) else list(paths)
    merged = None
    for path in paths:
        figs, tables = read_figures(path, name)
        if merged is None:
            merged = dict(figs, tables=tables, commands=_measured_by(figs),
                          seconds={k: figs["seconds"][k] for k in ("total", "training")
                                   if k in figs.get("seconds", {})})
            continue
        for key in ("ideal", "samples"):
            if figs[key] != merged[key]:
                raise XbarsimError(f"--from-json: {path}: {key} {figs[key]} differs from the "
                                   f"first file's {merged[key]} (not the same float network)")
        for k, t in tables.items():
            merged["tables"][k].update(t)
        merged["commands"] += [c for c in _measured_by(figs) if c not in merged["commands"]]
        seconds = figs.get("seconds", {})
        merged["seconds"]["total"] = merged["seconds"].get("total", 0.0) \
            + seconds.get("total", 0.0)
        if "training" in merged["seconds"] and "training" in seconds:
            merged["seconds"]["training"] += seconds["training"]
        else:  # a run that did not record its training time: the sum is not known
            merged["seconds"].pop("training", None)
        names = {row["file"] for row in merged.get("training", [])}
        merged["training"] = merged.get("training", []) + [
            row for row in figs.get("training", []) if row["file"] not in names]
    if merged is None:
        raise XbarsimError("--from-json: no files given")
    widths = opts.bits
    missing = [m for m in widths if m not in merged["tables"][4]]
    if missing:
        raise XbarsimError(f"--bits: no figures for {', '.join(map(str, missing))} bits in "
                           f"--from-json (have {', '.join(map(str, sorted(merged['tables'][4])))})")
    command = opts.command if opts.command is not None else _api_command("merge_json", name, opts)
    text = format_tables(merged, widths, r, opts.work(name), command)
    return PaperResult(name, merged, text)


def training_record(work, widths) -> list:
    """Per trained file of the workdir (its ``--log`` JSON): stages, epochs, seconds, figures."""
    rows = []
    names = ["plain"] + [f"{kind}-{m}b" for m in widths for kind in ("nc", "ncwc")]
    for name in names:
        path = Path(work) / f"{name}.json"
        if not path.exists():
            continue
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        stages = {}
        for h in d.get("history", []):
            st = stages.setdefault(h.get("stage", "?"), [0, 0.0])
            st[0] += 1
            st[1] += float(h.get("seconds", 0.0))
        last = d.get("history", [{}])[-1] if d.get("history") else {}
        rows.append({"file": f"{name}.npz", "stages": stages, "figures": d.get("figures", {}),
                     "test_images": (d.get("config") or {}).get("test_limit"),
                     "last_test_acc": last.get("test_acc")})
    return rows


# -- the markdown --------------------------------------------------------------------------------

def _pct(v):
    return "—" if v is None else f"{v:.2f}%"


def _table(title, rows, widths):
    out = [f"**{title}**", "", "| | " + " | ".join(f"{m}-bit" for m in widths) + " |",
           "|---|" + "---:|" * len(widths)]
    for name, vals in rows:
        out.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def format_tables(figs, widths, r=None, work=None, command: str = "") -> str:
    """The markdown of Tables 2-4 (and the consistency checks, wall times, training record) from
    ``figs``; ``command`` is named as what made it."""
    r = r or RECIPES["lenet"]
    P = r.paper
    ideal = figs["ideal"]
    t = figs["tables"]
    measured = ("" if not figs.get("commands") else
                " from the figures measured by " + " and ".join(f"`{c}`" for c in figs["commands"]))
    total = figs.get("seconds", {}).get("total")
    training = figs.get("seconds", {}).get("training")
    took = ("" if total is None else
            f", {total / 60:.1f} min in all, training of any missing stage included"
            if training is None else
            f", {total / 60:.1f} min in all: {training / 60:.1f} min training the missing stages, "
            f"{(total - training) / 60:.1f} min measuring")
    parts = [f"# {r.label} on {r.dataset}: the paper's Tables 2, 3 and 4\n",
             f"Made by `{command}`{measured} with `XBARSIM_DATA` naming the folder that holds "
             f"`{'mnist' if r.dataset == 'MNIST' else 'cifar10'}/` (docs/datasets.md); it trains "
             f"what is missing under "
             f"`{work if work is not None else ''}`{took} (see "
             f"docs/training.md for the recipes).\n"]
    parts.append(
        "What the rows are (docs/training.md): **w/o** in Table 2 is the float network with every "
        "signal clipped and rounded to M bits at a data-chosen scale (largest activation over "
        "2,000 training images = 2^M−1); in Table 3 plain rounding of the float weights to N-bit "
        "fixed point (the largest power-of-two step that holds max|W|); in Table 4 both. **w/** is "
        "Neuron Convergence (Eq. 2-3) in Table 2, Weight Clustering (Eq. 6) "
        + ("followed by fine-tuning with the clustered weights" if figs.get("t3_finetune_epochs", 1)
           else "alone (no fine-tuning, `--t3-finetune-epochs 0`)")
        + " in Table 3, and NC + WC + fine-tuning in Table 4 "
        "(the shipped weights). Tables 2-3 come from the quantized software model, Table 4 from "
        "the exported integer network (`run_ideal`) and from the cycle-level engine with the network "
        "YAML's hardware (`crossbar.bias` of the shipped `<network>-<M>b.yaml`, else of the base "
        "network: " + ", ".join(f"{m}-bit {t[4][m].get('bias_mode', '?')}" for m in widths)
        + "; uniform encoding, ideal devices). "
        "The last Table 4 row adds hardware-aware fine-tuning (`--cycle-epochs`), which goes "
        "beyond the paper.\n")
    parts += [f"Ideal (float) {r.label} accuracy: **{ideal:.2f}%** on {figs['samples']} "
              f"{r.dataset} test images (paper Table 1: {P['ideal']}%).\n"]

    def block(num, title, wo, w, extra=()):
        rows = [(f"{r.label} (w/o)", [_pct(wo[m]) for m in widths]),
                (f"{r.label} (w/)", [_pct(w[m]) for m in widths]),
                ("Recovered Acc.", [_pct(None if w[m] is None or wo[m] is None else w[m] - wo[m])
                                    for m in widths]),
                ("Acc. Drop", [_pct(None if w[m] is None else w[m] - ideal) for m in widths]),
            ] + list(extra) + [
                ("paper w/o", [_pct(P[num]["wo"].get(m)) for m in widths]),
                ("paper w/", [_pct(P[num]["w"].get(m)) for m in widths]),
                ("paper Acc. Drop", [_pct(None if P[num]["w"].get(m) is None
                                          else P[num]["w"][m] - P["ideal"]) for m in widths])]
        return _table(title, rows, widths)

    parts.append(block(2, "Table 2: signals quantized to M bits, float weights (software model)",
                       {m: t[2][m]["wo"] for m in widths}, {m: t[2][m]["w"] for m in widths}))
    parts.append(block(3, "Table 3: weights quantized to N bits, float signals (software model)",
                       {m: t[3][m]["wo"] for m in widths}, {m: t[3][m]["w"] for m in widths},
                       [("WC alone, no fine-tuning", [_pct(t[3][m]["w_clustering_only"])
                                                      for m in widths])]))

    def cells(key, fmt=str):
        """Table 4's ``key`` for each width, "—" where a width lacks it (one measured without
        --cycle-epochs, say); None where every width does."""
        if not any(key in t[4][m] for m in widths):
            return None
        return [fmt(t[4][m][key]) if key in t[4][m] else "—" for m in widths]

    def hw_row(kind):
        vals = cells(f"hw_{kind}", _pct)
        return [] if vals is None else [("w/ + hardware-aware fine-tuning", vals)]

    parts.append(block(4, "Table 4 (ideal integer network, run_ideal): signals and weights "
                       "quantized, M = N",
                       {m: t[4][m]["wo_ideal"] for m in widths},
                       {m: t[4][m]["w_ideal"] for m in widths}, hw_row("ideal")))
    if all("w_cycle" in t[4][m] for m in widths):
        parts.append(block(4, "Table 4 (cycle-level engine, xbarsim.engine.Simulator defaults): "
                           "signals and weights quantized, M = N",
                           {m: t[4][m]["wo_cycle"] for m in widths},
                           {m: t[4][m]["w_cycle"] for m in widths}, hw_row("cycle")))
    else:
        parts.append("Table 4 (cycle-level engine): not run (engine unavailable or --no-engine).\n")
    checks = ["| | " + " | ".join(f"{m}-bit" for m in widths) + " |",
              "|---|" + "---:|" * len(widths),
              "| w/ software quantized model (torch, exact) | "
              + " | ".join(_pct(t[4][m].get("w_software")) for m in widths) + " |",
              "| images where software model ≠ run_ideal | "
              + " | ".join(str(t[4][m].get("w_software_vs_ideal_differ", "—")) for m in widths)
              + " |"]
    if all("w_cycle" in t[4][m] for m in widths):
        for key, name in (("w", "w/"), ("wo", "w/o"), ("hw", "w/ + hardware-aware")):
            vals = cells(f"{key}_cycle_vs_ideal_differ")
            if vals is not None:
                checks.append(f"| {name}: images where cycle-level ≠ run_ideal | "
                              + " | ".join(vals) + " |")
    parts.append("**Consistency checks**\n\n" + "\n".join(checks) + "\n")
    hw = (("; w/ + hardware-aware fine-tuning: "
           + ", ".join(f"`{t[4][m]['hw_file']}`" for m in widths if "hw_ideal" in t[4][m]))
          if any("hw_ideal" in t[4][m] for m in widths) else "")
    timing = ["| | " + " | ".join(f"{m}-bit" for m in widths) + " |",
              "|---|" + "---:|" * len(widths)]
    for key, name in (("wo", "w/o"), ("w", "w/"), ("hw", "w/ + hardware-aware")):
        for kind, what in (("ideal", "run_ideal"), ("cycle", "cycle-level engine")):
            vals = cells(f"{key}_{kind}_seconds", lambda v: f"{v:.1f}")
            if vals is not None:
                timing.append(f"| {name}: {what}, s | " + " | ".join(vals) + " |")
    if len(timing) > 2:
        parts.append(f"**Wall time of the Table 4 runs** ({figs['samples']} images each; what "
                     "else ran on the machine is not controlled, see the notes)\n\n"
                     + "\n".join(timing) + "\n")
    if figs.get("training"):
        lines = ["| file | stage: epochs, wall time | test accuracy at the end of training |",
                 "|---|---|---|"]
        for row in figs["training"]:
            st = "; ".join(f"{k}: {n} epoch{'s' if n != 1 else ''}, {sec / 60:.1f} min"
                           for k, (n, sec) in row["stages"].items()) or "—"
            fig = ", ".join(f"{k} {100 * v:.2f}%" for k, v in row["figures"].items()
                            if isinstance(v, (int, float)))
            imgs = row["test_images"] or "all"
            lines.append(f"| `{row['file']}` | {st} | {fig} ({imgs} test images) |")
        parts.append("**Training** (from the workdir's per-stage logs; wall times on a shared "
                     "2-core machine, other jobs running alongside)\n\n" + "\n".join(lines) + "\n")
    parts.append("Weights used for Table 4 w/ (NC+WC, the paper's method): "
                 + ", ".join(f"`{t[4][m]['w_file']}`" for m in widths) + hw + ".\n")
    return "\n".join(parts)
