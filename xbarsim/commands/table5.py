"""``xbarsim table5``: the paper's Table 5 (LeNet, AlexNet, ResNet at 8, 4, 3 bits) on the cost
model, in the paper's layout with speedup and savings against the 8-bit row."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from ..errors import XbarsimError


def register(sub) -> None:
    p = sub.add_parser("table5", help="the paper's Table 5: speed, energy and area of LeNet, "
                       "AlexNet and ResNet at 8, 4 and 3 bits, with speedup and savings vs 8-bit")
    p.add_argument("--lenet-images", type=int, default=100,
                   help="MNIST test images for LeNet (default 100)")
    p.add_argument("--alexnet-images", type=int, default=100,
                   help="CIFAR-10 test images for AlexNet (default 100; seeded synthetic ones "
                        "where no width has trained weights)")
    p.add_argument("--resnet-images", type=int, default=4,
                   help="CIFAR-10 test images for ResNet (default 4; seeded synthetic ones where "
                        "no width has trained weights)")
    p.add_argument("--ideal", action="store_true", help="count events on the ideal integer "
                   "network instead of the cycle-level engine (faster)")
    p.add_argument("--circuit", default=None, help="circuit card (default paper-130nm)")
    p.add_argument("--networks", default=None, metavar="DIR",
                   help="folder with lenet-mnist.yaml, alexnet-cifar10.yaml, resnet18-cifar10.yaml "
                   "(default: the source tree's networks/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--out", metavar="FILE.md", help="write the table (markdown, with the command "
                   "that made it) to FILE.md")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config.section import check_seed

    check_seed(args.seed, "--seed")
    from ..cost import load_circuit
    from ..cost import table5 as t5
    from ..io.atomic import atomic_write_text
    from ..io.paths import check_out_file

    if args.out:
        check_out_file(args.out, "--out")
    counts = {"Lenet": args.lenet_images, "Alexnet": args.alexnet_images,
              "Resnet": args.resnet_images}
    for model, n in counts.items():
        if n < 1:
            raise XbarsimError(f"--{model.lower()}-images: must be >= 1 (got {n})")
    card = load_circuit(args.circuit) if args.circuit else None

    def progress(row):
        print(f"  {row.model} {row.bits}-bit: {row.speed_mhz:.4g} MHz, {row.energy_uj:.4g} uJ, "
              f"{row.area_mm2:.4g} mm²", file=sys.stderr, flush=True)

    kw = {} if args.networks is None else {"networks_dir": Path(args.networks)}
    table = t5.table5(images=counts, engine=not args.ideal, circuit=card, seed=args.seed,
                      progress=progress, notes=_Notes(), **kw)
    if args.json:
        print(json.dumps(table.to_dict(), indent=1))
        return 0
    text = table.markdown(_command())
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text + "\n")
        print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


class _Notes(list):
    """Notes from the data choice, printed on stderr as they arrive (before the compute)."""

    def append(self, line) -> None:
        print(line, file=sys.stderr, flush=True)
        super().append(line)


def _command() -> str:
    """The command line as the table's header names it, with the ``--out`` file as
    :func:`portable_path` writes it (the user's own folders are not written into the table)."""
    args = sys.argv[2:] if sys.argv[1:2] == ["table5"] else []
    argv, after_out = ["xbarsim", "table5"], False
    for a in args:
        if after_out:
            a, after_out = portable_path(a), False
        elif a == "--out":
            after_out = True
        elif a.startswith("--out="):
            a = "--out=" + portable_path(a[len("--out="):])
        argv.append(a)
    return " ".join(shlex.quote(a) for a in argv)


def portable_path(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it (``docs/table5.md``),
    else its file name alone: never an absolute path, which names the user's own folders."""
    p = Path(path)
    if not p.is_absolute():
        return path
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return p.name
