"""``xbarsim paper {lenet,alexnet,resnet18,all}``: the paper's Tables 2, 3 and 4 for LeNet on
MNIST, AlexNet and ResNet-18 on CIFAR-10.

Trains what is missing in ``--workdir`` or reuses what is there, then measures on all 10,000 test
images; ``--from-json`` merges the figures of earlier runs instead. The experiment itself is
:mod:`xbarsim.train.paper` (``xbarsim.paper`` from a notebook); this module parses the options,
calls it and prints/writes. Needs the ``train`` extra (PyTorch) except with ``--from-json``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..errors import XbarsimError
from ..train import paper


def register(sub) -> None:
    p = sub.add_parser("paper", help="reproduce the paper's Tables 2-4 for LeNet/MNIST, "
                       "AlexNet/CIFAR-10 and ResNet-18/CIFAR-10 (trains what is missing; needs "
                       "the train extra)")
    p.add_argument("which", choices=tuple(paper.RECIPES) + ("all",), help="which network's tables")
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
    p.add_argument("--torch-device", default="cpu", choices=paper.TORCH_DEVICES,
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


def options(args) -> paper.PaperOptions:
    """The library's options from the parsed command line (checked there: one line each)."""
    return paper.PaperOptions(
        network=args.network, workdir=args.workdir, ship=args.ship, bits=args.bits,
        epochs=args.epochs, nc_epochs=args.nc_epochs, finetune_epochs=args.finetune_epochs,
        t3_finetune_epochs=args.t3_finetune_epochs, cycle_epochs=args.cycle_epochs,
        seed=args.seed, threads=args.threads, torch_device=args.torch_device,
        train_limit=args.train_limit, samples=args.samples, engine=not args.no_engine,
        command=" ".join(shlex.quote(a) for a in ["xbarsim"] + sys.argv[1:]))


def run(args) -> int:
    from ..io.paths import check_out_dir, check_out_file

    opts = options(args)
    if not args.from_json:  # merging earlier runs' figures trains and measures nothing
        paper.require_torch()
    names = list(paper.RECIPES) if args.which == "all" else [args.which]
    if args.workdir:
        check_out_dir(args.workdir, "--workdir")
    for flag, value in (("--out", args.out), ("--json", args.json)):
        if value:
            (check_out_dir if args.which == "all" else check_out_file)(value, flag)
    if args.which == "all" and args.network:
        raise XbarsimError("--network: give one network's name, not 'all', with --network")
    for name in names:
        out, js = args.out, args.json
        if args.which == "all":
            out = str(Path(args.out) / f"tables-{name}.md") if args.out else None
            js = str(Path(args.json) / f"tables-{name}.json") if args.json else None
        if args.from_json:
            result = paper.merge_json(name, args.from_json, opts)
        elif args.train_only:
            paper.train_missing(name, opts)
            continue
        else:
            result = paper.reproduce(name, opts)
        print(result.markdown)
        result.save(out, js)
    return 0
