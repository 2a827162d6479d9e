"""``xbarsim paper lenet``: the paper's Tables 2, 3 and 4 for LeNet on MNIST.

Trains what is missing in ``--workdir`` (a float network, then Neuron Convergence and NC+WC for
each width) or reuses what is there, then measures on all 10,000 MNIST test images:

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
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import XbarsimError

PAPER = {  # the paper's LeNet rows (Tables 1-4), for the side-by-side columns
    "ideal": 98.16,
    2: {"wo": {5: 97.74, 4: 97.0, 3: 92.9}, "w": {5: 98.16, 4: 98.15, 3: 98.13}},
    3: {"wo": {5: 98.16, 4: 97.86, 3: 94.52}, "w": {5: 98.16, 4: 98.1, 3: 97.79}},
    4: {"wo": {5: 97.74, 4: 96.38, 3: 93.43}, "w": {5: 98.16, 4: 98.14, 3: 97.46}},
}


def register(sub) -> None:
    p = sub.add_parser("paper", help="reproduce the paper's Tables 2-4 for LeNet/MNIST "
                       "(trains what is missing; needs the train extra)")
    p.add_argument("which", choices=("lenet",), help="which network's tables")
    p.add_argument("--network", default="networks/lenet-mnist.yaml", help="base network YAML")
    p.add_argument("--workdir", default="results/paper-lenet",
                   help="where trained files are kept and reused (default results/paper-lenet)")
    p.add_argument("--ship", default="networks",
                   help="folder of the shipped lenet-mnist-<M>b.npz used for Table 4 w/ when "
                   "present (default networks; '' to always use the workdir's)")
    p.add_argument("--bits", default="5,4,3", help="widths M = N for the tables (default 5,4,3)")
    p.add_argument("--epochs", type=int, default=30, help="float training epochs (default 30)")
    p.add_argument("--nc-epochs", type=int, default=8, help="Neuron Convergence epochs (default 8)")
    p.add_argument("--finetune-epochs", type=int, default=3, help="NC+WC fine-tuning epochs (default 3)")
    p.add_argument("--t3-finetune-epochs", type=int, default=2,
                   help="Table 3 w/: epochs of fine-tuning with the clustered weights and float "
                   "signals after Weight Clustering (default 2; 0 = clustering alone)")
    p.add_argument("--cycle-epochs", type=int, default=2,
                   help="hardware-aware fine-tuning epochs after NC+WC (cycle-level engine in the "
                   "forward pass), for the last Table 4 row (default 2; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--no-engine", action="store_true", help="skip the cycle-level column")
    p.add_argument("--samples", type=int, default=None, help="test images (default all 10,000)")
    p.add_argument("--out", default=None, metavar="FILE.md", help="write the tables (markdown)")
    p.add_argument("--json", metavar="FILE.json", help="write every figure as JSON")
    p.set_defaults(func=run)


def _train(network, bits, method, out, extra, log):
    cmd = [sys.executable, "-m", "xbarsim", "train", str(network), "--bits", f"{bits},{bits}",
           "--method", method, "--out", str(out), "--no-progress"] + [str(e) for e in extra]
    log("$ " + " ".join(["xbarsim"] + cmd[3:]))
    rc = subprocess.call(cmd)
    if rc != 0:
        raise XbarsimError(f"training failed ({' '.join(cmd[3:])}), exit status {rc}")


def run(args) -> int:
    from ..config.section import check_seed

    check_seed(args.seed, "--seed")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise XbarsimError("xbarsim paper needs PyTorch: pip install -e '.[train]'") from None
    from ..config.spec import load_network_spec
    from ..network.network import build_network
    from ..network.reference import run_ideal
    from ..network.weights import load_weights
    from ..train import quant
    from ..train.loop import (
        TrainConfig,
        accuracy,
        calibrate,
        fit,
        integer_predictions,
        load_mnist_arrays,
        read_float_form,
        save_float_form,
        setup_torch,
    )
    from ..train.model import QNet, load_float_state

    from ..io.paths import check_out_dir, check_out_file

    widths = [int(b) for b in args.bits.split(",")]
    check_out_dir(args.workdir, "--workdir")
    if args.out:
        check_out_file(args.out, "--out")
    if args.json:
        check_out_file(args.json, "--json")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    base = load_network_spec(args.network)
    lines_log = []

    def log(line):
        print(line, flush=True)
        lines_log.append(line)

    seed = ["--seed", args.seed]
    plain = work / "plain.npz"
    if not plain.exists():
        _train(args.network, 4, "plain", plain, ["--epochs", args.epochs] + seed, log)
    for m in widths:
        nc = work / f"nc-{m}b.npz"
        if not nc.exists():
            _train(args.network, m, "nc", nc,
                   ["--init", plain, "--epochs", args.nc_epochs] + seed, log)
        shipped = Path(args.ship) / f"lenet-mnist-{m}b.npz" if args.ship else None
        ncwc = work / f"ncwc-{m}b.npz"
        if not ncwc.exists() and not (shipped and shipped.exists()):
            _train(args.network, m, "nc+wc", ncwc,
                   ["--init", nc, "--epochs", 0, "--finetune-epochs", args.finetune_epochs] + seed,
                   log)
        hwft = work / f"ncwc-cycle-{m}b.npz"
        if args.cycle_epochs > 0 and not hwft.exists():
            _train(args.network, m, "nc+wc", hwft,
                   ["--init", nc, "--epochs", 0, "--finetune-epochs", args.finetune_epochs,
                    "--cycle-epochs", args.cycle_epochs] + seed, log)

    setup_torch(args.seed, 1)
    images, labels = load_mnist_arrays("test", args.samples)
    train_set = load_mnist_arrays("train")
    calib = train_set[0][:2000]
    figs = {"samples": int(len(images)), "tables": {2: {}, 3: {}, 4: {}}}

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
        if args.t3_finetune_epochs > 0:
            ft = QNet(spec)
            load_float_state(ft, state)
            ft.mode = "float"
            ft.wsteps = w_steps
            cfg = TrainConfig(seed=args.seed, threads=1)
            fit(ft, *train_set, args.t3_finetune_epochs, cfg.finetune_lr, cfg, log, False, None,
                f"wc-finetune {m}b")
            t3_w = 100 * accuracy(ft, images, labels)
        figs["tables"][3][m] = {"wo": t3_wo, "w": t3_w, "w_clustering_only": t3_wc}
        log(f"Table 3, {m} bits: w/o {t3_wo:.2f}%  w/ {t3_w:.2f}% (clustering alone {t3_wc:.2f}%, "
            f"levels ±{lim})")
        # Table 4 -------------------------------------------------------------------------
        model.wsteps = {}
        wo_file = work / f"wo-{m}b.npz"
        save_float_form(wo_file, model, model.scales, 1.0 / model.top_in,
                        {"method": "plain (w/o)", "seed": args.seed})
        shipped = Path(args.ship) / f"lenet-mnist-{m}b.npz" if args.ship else None
        w_file = shipped if shipped and shipped.exists() else work / f"ncwc-{m}b.npz"
        hw_file = work / f"ncwc-cycle-{m}b.npz"
        row = {"w_file": str(w_file), "hw_file": str(hw_file)}
        files = [("wo", wo_file), ("w", w_file)]
        if args.cycle_epochs > 0 and hw_file.exists():
            files.append(("hw", hw_file))
        for key, path in files:
            net = build_network(spec, load_weights(path, spec))
            sig = net.quantize_input(images)
            ideal_pred = run_ideal(net, sig).predictions
            row[f"{key}_ideal"] = 100 * float(np.mean(ideal_pred == labels))
            if key == "w":
                soft = integer_predictions(spec, net.weights, images)
                row["w_software"] = 100 * float(np.mean(soft == labels))
                row["w_software_vs_ideal_differ"] = int(np.sum(soft != ideal_pred))
            if engine is not None:
                t0 = time.time()
                res = engine(net).run(sig)
                row[f"{key}_cycle"] = 100 * float(np.mean(res.predictions == labels))
                row[f"{key}_cycle_vs_ideal_differ"] = int(np.sum(res.predictions != ideal_pred))
                row[f"{key}_cycle_seconds"] = time.time() - t0
        figs["tables"][4][m] = row
        log(f"Table 4, {m} bits: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in row.items() if not k.endswith("_file")))
    text = format_tables(figs, widths, args)
    print(text)
    if args.out:
        from ..engine.trace import atomic_write_text
        atomic_write_text(args.out, text)
    if args.json:
        from ..engine.trace import atomic_write_text
        atomic_write_text(args.json, json.dumps(figs, indent=1, default=str))
    return 0


def _pct(v):
    return "—" if v is None else f"{v:.2f}%"


def _table(title, rows, widths):
    out = [f"**{title}**", "", "| | " + " | ".join(f"{m}-bit" for m in widths) + " |",
           "|---|" + "---:|" * len(widths)]
    for name, vals in rows:
        out.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def format_tables(figs, widths, args) -> str:
    ideal = figs["ideal"]
    t = figs["tables"]
    import shlex

    cmd = " ".join(shlex.quote(a) for a in ["xbarsim"] + sys.argv[1:]) if args is not None else ""
    parts = ["# LeNet on MNIST: the paper's Tables 2, 3 and 4\n",
             f"Made by `{cmd}` with `XBARSIM_DATA` naming the folder that holds `mnist/` "
             f"(docs/datasets.md); it trains what is missing under "
             f"`{getattr(args, 'workdir', '')}` (see docs/training.md for the recipes).\n"]
    parts.append(
        "What the rows are (docs/training.md): **w/o** in Table 2 is the float network with every "
        "signal clipped and rounded to M bits at a data-chosen scale (largest activation over "
        "2,000 training images = 2^M−1); in Table 3 plain rounding of the float weights to N-bit "
        "fixed point (the largest power-of-two step that holds max|W|); in Table 4 both. **w/** is "
        "Neuron Convergence (Eq. 2-3) in Table 2, Weight Clustering (Eq. 6) followed by "
        "fine-tuning with the clustered weights in Table 3, and NC + WC + fine-tuning in Table 4 "
        "(the shipped weights). Tables 2-3 come from the quantized software model, Table 4 from the "
        "exported integer network (`run_ideal`) and from the cycle-level engine with the network "
        "YAML's hardware (`crossbar.bias` of the base network; uniform encoding, ideal devices). "
        "The last Table 4 row adds hardware-aware fine-tuning (`--cycle-epochs`), which goes "
        "beyond the paper.\n")
    parts += [f"Ideal (float) LeNet accuracy: **{ideal:.2f}%** on {figs['samples']} MNIST test "
             f"images (paper Table 1: {PAPER['ideal']}%).\n"]

    def block(num, title, wo, w, extra=()):
        rows = [("LeNet (w/o)", [_pct(wo[m]) for m in widths]),
                ("LeNet (w/)", [_pct(w[m]) for m in widths]),
                ("Recovered Acc.", [_pct(None if w[m] is None or wo[m] is None else w[m] - wo[m])
                                    for m in widths]),
                ("Acc. Drop", [_pct(None if w[m] is None else w[m] - ideal) for m in widths]),
            ] + list(extra) + [
                ("paper w/o", [_pct(PAPER[num]["wo"].get(m)) for m in widths]),
                ("paper w/", [_pct(PAPER[num]["w"].get(m)) for m in widths])]
        return _table(title, rows, widths)

    parts.append(block(2, "Table 2: signals quantized to M bits, float weights (software model)",
                       {m: t[2][m]["wo"] for m in widths}, {m: t[2][m]["w"] for m in widths}))
    parts.append(block(3, "Table 3: weights quantized to N bits, float signals (software model)",
                       {m: t[3][m]["wo"] for m in widths}, {m: t[3][m]["w"] for m in widths},
                       [("WC alone, no fine-tuning", [_pct(t[3][m]["w_clustering_only"])
                                                      for m in widths])]))
    def hw_row(kind):
        if not all(f"hw_{kind}" in t[4][m] for m in widths):
            return []
        return [("w/ + hardware-aware fine-tuning",
                 [_pct(t[4][m][f"hw_{kind}"]) for m in widths])]

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
            if all(f"{key}_cycle_vs_ideal_differ" in t[4][m] for m in widths):
                checks.append(f"| {name}: images where cycle-level ≠ run_ideal | "
                              + " | ".join(str(t[4][m][f"{key}_cycle_vs_ideal_differ"])
                                           for m in widths) + " |")
    parts.append("**Consistency checks**\n\n" + "\n".join(checks) + "\n")
    hw = (("; w/ + hardware-aware fine-tuning: "
           + ", ".join(f"`{t[4][m]['hw_file']}`" for m in widths))
          if all("hw_ideal" in t[4][m] for m in widths) else "")
    parts.append("Weights used for Table 4 w/ (NC+WC, the paper's method): "
                 + ", ".join(f"`{t[4][m]['w_file']}`" for m in widths) + hw + ".\n")
    return "\n".join(parts)
