"""``xbarsim train network.yaml --bits M,N --method {plain,nc,nc+wc}``: quantization-aware training
(paper Sec. 3) on MNIST or CIFAR-10, writing a weights file the simulator reads. Needs the ``train`` extra."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("train", help="train a network with Neuron Convergence / Weight Clustering "
                       "(needs the train extra: PyTorch)")
    p.add_argument("network", help="network YAML file (its layers; bits from --bits)")
    p.add_argument("--bits", required=True, metavar="M,N",
                   help="signal bits M and weight bits N, e.g. 4,4")
    p.add_argument("--method", choices=("plain", "nc", "nc+wc"), default="nc+wc",
                   help="plain: float training (file in float form: the simulator rounds it, the "
                   "w/o baseline); nc: Neuron Convergence (float weights, rounded on load); "
                   "nc+wc: NC, Weight Clustering and fine-tuning (integer file)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--finetune-epochs", type=int, default=3,
                   help="nc+wc: epochs with clustered weights (default 3)")
    p.add_argument("--cycle-epochs", type=int, default=0,
                   help="nc+wc: then epochs of hardware-aware fine-tuning, the forward pass taking "
                   "the cycle-level engine's counts (uniform encoding, ideal devices; default 0)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default 3e-3 from scratch, 1e-3 with --init)")
    p.add_argument("--finetune-lr", type=float, default=3e-4,
                   help="learning rate of the fine-tuning epochs (default 3e-4)")
    p.add_argument("--batch", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--lambda", dest="lam", type=float, default=1e-4,
                   help="λ_i of Eq. 2 for every layer (R_g summed per image; default 1e-4)")
    p.add_argument("--layer-lambda", action="append", default=[], metavar="NAME=VALUE",
                   help="per-layer λ_i override (repeatable)")
    p.add_argument("--alpha", type=float, default=0.1, help="α of Eq. 3 (default 0.1)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="λ·R(W) of Eq. 2 (L2)")
    p.add_argument("--grid", choices=("pow2", "unit"), default="pow2",
                   help="Weight Clustering steps: pow2 = 2^-k fixed point (default), "
                   "unit = 1/θ for any integer θ")
    p.add_argument("--shift", type=int, default=None,
                   help="random-shift augmentation in pixels, zero fill (default 2 for MNIST; 4 "
                   "for CIFAR-10, i.e. random crops of the image padded by 4)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on for CIFAR-10, off for MNIST)")
    p.add_argument("--batch-norm", action="store_true",
                   help="plain: batch norm after every conv layer during training, folded into "
                   "the conv weights and biases before the file is written")
    p.add_argument("--channels-last", action="store_true",
                   help="keep conv tensors channels-last (NHWC) in training: faster conv steps on "
                   "the CPU; the result differs in the last bits from the default layout")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="cross-entropy against (1-EPS)·one-hot + EPS/classes (default 0)")
    p.add_argument("--decay-norm-bias", action=argparse.BooleanOptionalAction, default=True,
                   help="--weight-decay on batch-norm parameters and biases too (default); "
                   "--no-decay-norm-bias decays the conv/fc weights only")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="adam (default) or sgd (Nesterov momentum 0.9)")
    p.add_argument("--schedule", choices=("cosine", "onecycle"), default="cosine",
                   help="learning rate: cosine decay (default) or onecycle (linear warm-up over "
                   "the first quarter of the steps, then cosine decay)")
    p.add_argument("--calib-quantile", type=float, default=1.0,
                   help="count scale from data (w/o figures; nc from a float file): this "
                   "quantile of each layer's positive activations over 2,000 training images "
                   "maps to 2^M-1 (default 1 = the largest)")
    p.add_argument("--checkpoint", metavar="FILE.pt", default=None,
                   help="per-epoch checkpoint (default: in the user cache, named after --out)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint's last finished epoch (same weights, bit for "
                   "bit, as a run never interrupted); starts afresh when there is none")
    p.add_argument("--init", metavar="FILE.npz",
                   help="start from a float-form file written by --method plain or nc")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of initialisation, shuffling and augmentation (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--bias-mode", choices=("membrane", "current", "row"), default=None,
                   help="the hardware's bias mode for --cycle-epochs (default: the network "
                        "YAML's crossbar.bias)")
    p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where torch trains: cpu (default, bit-for-bit repeatable), cuda, or auto "
                        "(cuda when PyTorch sees a GPU); docs/training.md")
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="use the first N test images")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="weights file to write")
    p.add_argument("--log", metavar="FILE.json", help="write the per-epoch history and figures")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.options import check_outputs, train_config, train_spec, write_log

    m, n = check_outputs(seed=args.seed, bits=args.bits, label_smoothing=args.label_smoothing,
                         out=args.out, log=args.log)
    from ..train.loop import save_result, train

    spec = train_spec(args.network, m, n, args.bias_mode)
    cfg = train_config(spec, **vars(args))

    def log(line):
        print(line, flush=True)

    res = train(spec, cfg, init=args.init, log=log,
                progress=not args.no_progress and sys.stderr.isatty())
    save_result(args.out, res, cfg)
    for k, v in res.figures.items():
        print(f"test accuracy ({k}): {100 * v:.2f}%")
    print(f"weights written to {args.out} (M={m}, N={n}, method {args.method}, seed {args.seed})")
    if args.log:
        write_log(args.log, vars(args) | {"func": None}, res)
    return 0
