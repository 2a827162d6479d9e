"""``xbarsim paper {lenet,alexnet,resnet18,all}``: the paper's Tables 2, 3 and 4 for LeNet on
MNIST, AlexNet and ResNet-18 on CIFAR-10.

Trains what is missing in ``--workdir`` (a float network, then Neuron Convergence and NC+WC for
each width; every stage resumable, checkpoints in the workdir) or reuses what is there, then
measures on all 10,000 test images:

* Table 2 (signals quantized, float weights), from the quantized software model: w/o = the float
  network with every signal clipped and rounded to M bits at a data-chosen scale; w/ = Neuron
  Convergence.
* Table 3 (weights quantized, float signals), software model: w/o = plain rounding to N-bit
  fixed point (max-based power-of-two step); w/ = Weight Clustering (Eq. 6) on the same network.
* Table 4 (both quantized): the ideal integer network (``run_ideal``) and the cycle-level engine,
  w/o = the float network quantized directly (weights file in float form, rounded on load),
  w/ = NC + WC + fine-tuning (the paper's method; the shipped ``networks/lenet-mnist-<M>b.npz``
  when present), and a last row with NC + WC followed by hardware-aware fine-tuning
  (``--cycle-epochs``: the cycle-level engine in the forward pass).

Needs the ``train`` extra (PyTorch) for training and for the Tables 2-3 software model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import XbarsimError

PAPER_LENET = {  # the paper's LeNet rows (Tables 1-4), for the side-by-side columns
    "ideal": 98.16,
    2: {"wo": {5: 97.74, 4: 97.0, 3: 92.9}, "w": {5: 98.16, 4: 98.15, 3: 98.13}},
    3: {"wo": {5: 98.16, 4: 97.86, 3: 94.52}, "w": {5: 98.16, 4: 98.1, 3: 97.79}},
    4: {"wo": {5: 97.74, 4: 96.38, 3: 93.43}, "w": {5: 98.16, 4: 98.14, 3: 97.46}},
}
PAPER = PAPER_LENET
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


def register(sub) -> None:
    p = sub.add_parser("paper", help="reproduce the paper's Tables 2-4 for LeNet/MNIST, "
                       "AlexNet/CIFAR-10 and ResNet-18/CIFAR-10 (trains what is missing; needs "
                       "the train extra)")
    p.add_argument("which", choices=tuple(RECIPES) + ("all",), help="which network's tables")
    p.add_argument("--network", default=None,
                   help="base network YAML (default networks/<the network>.yaml)")
    p.add_argument("--workdir", default=None,
                   help="where trained files and checkpoints are kept and reused (default "
                   "results/paper-<which>)")
    p.add_argument("--ship", default="networks",
                   help="folder of the shipped <network>-<M>b.npz used for Table 4 w/ when "
                   "present (default networks; '' to always use the workdir's)")
    p.add_argument("--bits", default="5,4,3", help="widths M = N for the tables (default 5,4,3); "
                   "training follows this order")
    p.add_argument("--epochs", type=int, default=None,
                   help="float training epochs (default: LeNet 30, AlexNet 15, ResNet-18 6)")
    p.add_argument("--nc-epochs", type=int, default=None,
                   help="Neuron Convergence epochs (default: LeNet 8, AlexNet 2, ResNet-18 1)")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="NC+WC fine-tuning epochs (default: LeNet 3, AlexNet 3, ResNet-18 1)")
    p.add_argument("--t3-finetune-epochs", type=int, default=None,
                   help="Table 3 w/: epochs of fine-tuning with the clustered weights and float "
                   "signals after Weight Clustering (default: LeNet 2, AlexNet 1, ResNet-18 0; "
                   "0 = clustering alone)")
    p.add_argument("--cycle-epochs", type=int, default=None,
                   help="hardware-aware fine-tuning epochs after NC+WC (cycle-level engine in the "
                   "forward pass), for the last Table 4 row (default: LeNet 2, else 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of training (default 1)")
    p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where the training stages run (default cpu; the tables are measured on "
                        "the CPU)")
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on the first N training images only (smoke runs)")
    p.add_argument("--train-only", action="store_true",
                   help="train what is missing and stop (no tables)")
    p.add_argument("--from-json", metavar="A.json,B.json", default=None,
                   help="measure nothing: write the tables from the --json files of earlier runs "
                   "(e.g. one per width, run as each width's training finished)")
    p.add_argument("--no-engine", action="store_true", help="skip the cycle-level column")
    p.add_argument("--samples", type=int, default=None,
                   help="test images (default all 10,000; also what training reports on)")
    p.add_argument("--out", default=None, metavar="FILE.md",
                   help="write the tables (markdown); with 'all', a folder for tables-<name>.md")
    p.add_argument("--json", metavar="FILE.json",
                   help="write every figure as JSON; with 'all', a folder for tables-<name>.json")
    p.set_defaults(func=run)


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


def _pick(value, default):
    return default if value is None else value


def run(args) -> int:
    from ..config.section import check_seed

    check_seed(args.seed, "--seed")
    if not args.from_json:  # merging earlier runs' figures trains and measures nothing
        try:
            import torch  # noqa: F401
        except ImportError:
            raise XbarsimError("xbarsim paper needs PyTorch: pip install -e '.[train]'") from None
    from ..io.paths import check_out_dir, check_out_file

    names = list(RECIPES) if args.which == "all" else [args.which]
    if args.workdir:
        check_out_dir(args.workdir, "--workdir")
    for flag, value in (("--out", args.out), ("--json", args.json)):
        if value:
            (check_out_dir if args.which == "all" else check_out_file)(value, flag)
    if args.which == "all" and args.network:
        raise XbarsimError("--network: give one network's name, not 'all', with --network")
    for name in names:
        out = args.out
        js = args.json
        if args.which == "all":
            out = str(Path(args.out) / f"tables-{name}.md") if args.out else None
            js = str(Path(args.json) / f"tables-{name}.json") if args.json else None
        run_one(name, args, out, js)
    return 0


def train_missing(name, args, log) -> Path:
    """Train (or resume) every file of ``name``'s pipeline that ``--workdir`` lacks; returns the
    workdir. Float → NC at each width of ``--bits`` → NC+WC (+ fine-tuning), in that order."""
    from ..config.spec import load_network_spec

    r = RECIPES[name]
    network = args.network or r.network
    work = Path(args.workdir or f"results/paper-{name}")
    work.mkdir(parents=True, exist_ok=True)
    widths = [int(b) for b in args.bits.split(",")]
    common = dict(log=log, threads=args.threads, train_limit=args.train_limit,
                  test_limit=args.samples, device=args.torch_device)
    seed = ["--seed", args.seed]
    plain = work / "plain.npz"
    shipped_float = Path(args.ship) / f"{r.ship}-float.npz" if args.ship else None
    if not plain.exists() and shipped_float is not None and shipped_float.exists():
        import shutil

        shutil.copyfile(shipped_float, plain)  # the shipped float network: the tables' own
        log(f"float network: {shipped_float} (shipped; delete {plain} and it is not retrained "
            f"unless --ship names a folder without it)")
    if not plain.exists():
        _train(network, 4, "plain", plain,
               ["--epochs", _pick(args.epochs, r.epochs)] + list(r.plain_args) + seed, **common)
    cycle_epochs = _pick(args.cycle_epochs, r.cycle_epochs)
    ft = _pick(args.finetune_epochs, r.finetune_epochs)
    for m in widths:
        nc = work / f"nc-{m}b.npz"
        if not nc.exists():
            _train(network, m, "nc", nc, ["--init", plain, "--epochs",
                                          _pick(args.nc_epochs, r.nc_epochs)]
                   + r.stage_args(r.nc_args, m) + seed, **common)
        shipped = Path(args.ship) / f"{r.ship}-{m}b.npz" if args.ship else None
        ncwc = work / f"ncwc-{m}b.npz"
        if not ncwc.exists() and not (shipped and shipped.exists()):
            _train(network, m, "nc+wc", ncwc, ["--init", nc, "--epochs", 0,
                                               "--finetune-epochs", ft]
                   + r.stage_args(r.ncwc_args, m) + seed, **common)
        hwft = work / f"ncwc-cycle-{m}b.npz"
        if cycle_epochs > 0 and not hwft.exists():
            # the cycle-level forward pass uses the hardware the tables measure: the shipped
            # network's crossbar.bias where it exists, else the base network's
            ship_yaml = Path(args.ship) / f"{r.ship}-{m}b.yaml" if args.ship else None
            bias = (["--bias-mode", load_network_spec(ship_yaml).bias_mode]
                    if ship_yaml is not None and ship_yaml.exists() else [])
            _train(network, m, "nc+wc", hwft,
                   ["--init", nc, "--epochs", 0, "--finetune-epochs", ft,
                    "--cycle-epochs", cycle_epochs] + bias + r.stage_args(r.ncwc_args, m) + seed,
                   **common)
    return work


def run_one(name, args, out_md, out_json) -> None:
    if args.from_json:
        return tables_from_json(name, args, out_md, out_json)
    from ..network import build_network
    from ..network.reference import run_ideal
    from ..config.spec import load_network_spec
    from ..train import quant
    from ..train.loop import (TrainConfig, accuracy, augmentation, calibrate,
                              direct_quantization, fit, integer_predictions, load_arrays,
                              read_float_form, setup_torch)
    from ..train.model import QNet, load_float_state
    from ..network.weights import load_weights, save_weights

    r = RECIPES[name]
    t_start = time.time()
    widths = [int(b) for b in args.bits.split(",")]
    lines_log = []

    def log(line):
        print(line, flush=True)
        lines_log.append(line)

    work = train_missing(name, args, log)
    if args.train_only:
        return
    t_trained = time.time()
    base = load_network_spec(args.network or r.network)
    plain = work / "plain.npz"
    cycle_epochs = _pick(args.cycle_epochs, r.cycle_epochs)
    t3_epochs = _pick(args.t3_finetune_epochs, r.t3_finetune_epochs)
    setup_torch(args.seed, args.threads)
    images, labels = load_arrays(base.dataset, "test", args.samples)
    train_set = load_arrays(base.dataset, "train", args.train_limit)
    calib = train_set[0][:2000]
    figs = {"network": name, "samples": int(len(images)), "tables": {2: {}, 3: {}, 4: {}},
            "seconds": {}, "command": _command(), "t3_finetune_epochs": t3_epochs}

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
    if not args.no_engine:
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
            cfg = TrainConfig(seed=args.seed, threads=args.threads)
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
                                  "meta.seed": np.array(args.seed)})
        shipped = Path(args.ship) / f"{r.ship}-{m}b.npz" if args.ship else None
        w_file = shipped if shipped and shipped.exists() else work / f"ncwc-{m}b.npz"
        hw_file = work / f"ncwc-cycle-{m}b.npz"
        row = {"w_file": str(w_file), "hw_file": str(hw_file)}
        files = [("wo", wo_file), ("w", w_file)]
        if cycle_epochs > 0 and hw_file.exists():
            files.append(("hw", hw_file))
        hw_spec = spec
        ship_yaml = Path(args.ship) / f"{r.ship}-{m}b.yaml" if args.ship else None
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
        log(f"Table 4, {m} bits: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in row.items() if not k.endswith("_file")))
    figs["training"] = training_record(work, widths)
    figs["seconds"]["total"] = time.time() - t_start
    figs["seconds"]["training"] = t_trained - t_start  # the stages missing from the workdir
    text = format_tables(figs, widths, args, r, work)
    print(text)
    from ..io.atomic import atomic_write_text
    if out_md:
        atomic_write_text(out_md, text)
    if out_json:
        atomic_write_text(out_json, json.dumps(figs, indent=1, default=str))


def _command() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["xbarsim"] + sys.argv[1:])


def _measured_by(figs) -> list:
    """The commands that measured a --json file's figures: its own, or, for a file that is itself
    a --from-json merge (docs/tables-<network>.json), the commands of the runs it merged."""
    return list(figs.get("commands") or [figs.get("command", "?")])


def tables_from_json(name, args, out_md, out_json) -> None:
    """The tables of ``name`` from the JSON of earlier runs (their widths merged; each run's
    command is listed in the text)."""
    from ..io.atomic import atomic_write_text

    r = RECIPES[name]
    merged = None
    for path in args.from_json.split(","):
        try:
            figs = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise XbarsimError(f"--from-json: {path}: not a readable JSON file ({exc})") from None
        if figs.get("network") != name:
            raise XbarsimError(f"--from-json: {path}: figures of {figs.get('network')}, not {name}")
        tables = {int(k): {int(m): v for m, v in t.items()} for k, t in figs["tables"].items()}
        if merged is None:
            merged = dict(figs, tables=tables, commands=_measured_by(figs),
                          seconds={k: figs["seconds"][k] for k in ("total", "training")
                                   if k in figs["seconds"]})
            continue
        for key in ("ideal", "samples"):
            if figs[key] != merged[key]:
                raise XbarsimError(f"--from-json: {path}: {key} {figs[key]} differs from the "
                                   f"first file's {merged[key]} (not the same float network)")
        for k, t in tables.items():
            merged["tables"][k].update(t)
        merged["commands"] += [c for c in _measured_by(figs) if c not in merged["commands"]]
        merged["seconds"]["total"] = merged["seconds"].get("total", 0.0) \
            + figs["seconds"].get("total", 0.0)
        if "training" in merged["seconds"] and "training" in figs["seconds"]:
            merged["seconds"]["training"] += figs["seconds"]["training"]
        else:  # a run that did not record its training time: the sum is not known
            merged["seconds"].pop("training", None)
        names = {row["file"] for row in merged.get("training", [])}
        merged["training"] = merged.get("training", []) + [
            row for row in figs.get("training", []) if row["file"] not in names]
    widths = [int(b) for b in args.bits.split(",")]
    missing = [m for m in widths if m not in merged["tables"][4]]
    if missing:
        raise XbarsimError(f"--bits: no figures for {', '.join(map(str, missing))} bits in "
                           f"--from-json (have {', '.join(map(str, sorted(merged['tables'][4])))})")
    text = format_tables(merged, widths, args, r, Path(args.workdir or f"results/paper-{name}"))
    print(text)
    if out_md:
        atomic_write_text(out_md, text)
    if out_json:
        atomic_write_text(out_json, json.dumps(merged, indent=1, default=str))


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


def _pct(v):
    return "—" if v is None else f"{v:.2f}%"


def _table(title, rows, widths):
    out = [f"**{title}**", "", "| | " + " | ".join(f"{m}-bit" for m in widths) + " |",
           "|---|" + "---:|" * len(widths)]
    for name, vals in rows:
        out.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def format_tables(figs, widths, args, r=None, work=None) -> str:
    r = r or RECIPES["lenet"]
    P = r.paper
    ideal = figs["ideal"]
    t = figs["tables"]
    import shlex

    cmd = " ".join(shlex.quote(a) for a in ["xbarsim"] + sys.argv[1:]) if args is not None else ""
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
             f"Made by `{cmd}`{measured} with `XBARSIM_DATA` naming the folder that holds "
             f"`{'mnist' if r.dataset == 'MNIST' else 'cifar10'}/` (docs/datasets.md); it trains "
             f"what is missing under "
             f"`{work if work is not None else getattr(args, 'workdir', '')}`{took} (see "
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
        "(the shipped weights). Tables 2-3 come from the quantized software model, Table 4 from the "
        "exported integer network (`run_ideal`) and from the cycle-level engine with the network "
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
