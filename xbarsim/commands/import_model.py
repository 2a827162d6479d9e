"""``xbarsim import MODEL --bits M,N --out NET.yaml``: a PyTorch ``.pt2`` (``torch.export.save``)
or a ``.nir`` graph → a network YAML + ``.npz`` (docs/interop.md)."""

from __future__ import annotations

from pathlib import Path

from ..errors import XbarsimError


def register(sub) -> None:
    p = sub.add_parser("import", help="import a PyTorch (.pt2 from torch.export.save) or NIR "
                       "(.nir) model as a quantized network YAML + .npz")
    p.add_argument("model", help="MODEL.pt2 or MODEL.nir")
    p.add_argument("--bits", metavar="M,N",
                   help="signal and weight bits (needed unless the .nir was written by xbarsim)")
    p.add_argument("--out", required=True, metavar="NET.yaml",
                   help="network YAML to write (weights go to NET.npz beside it)")
    p.add_argument("--calibrate", metavar="mnist|cifar10|FILE.npy",
                   help="images that choose each layer's output unit θ: the training split of a "
                   "data set, or uint8 images (K, C, H, W) in a .npy")
    p.add_argument("--samples", type=int, default=1000,
                   help="calibration images to use (default 1000)")
    p.add_argument("--quantile", type=float, default=1.0,
                   help="activation quantile mapped to 2^M - 1 counts (default 1.0 = the largest)")
    p.add_argument("--name", help="network name (default: the --out file's stem)")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="NIR graphs with a vector input: the image shape it flattens")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read a .pt2 with torch.export.load, which unpickles and so runs code "
                   "from the file: only for files you trust (by default a .pt2 is read as data, "
                   "and one that needs pickle is refused)")
    p.set_defaults(func=run)


def parse_bits(text):
    if text is None:
        return None, None
    parts = text.split(",")
    try:
        m, n = (int(v) for v in parts)
    except ValueError:
        raise XbarsimError(f"--bits: expected M,N, e.g. 8,8 (got {text})") from None
    if not (1 <= m <= 16 and 2 <= n <= 16):
        raise XbarsimError(f"--bits: M must be 1..16 and N 2..16 (got {text})")
    return m, n


def run(args) -> int:
    model = Path(args.model)
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise XbarsimError(f"--out: must name a .yaml file (got {args.out})")
    from ..io.paths import check_out_file

    check_out_file(out, "--out")  # a writable place, before any work
    if args.samples < 1:
        raise XbarsimError(f"--samples: must be >= 1 (got {args.samples})")
    if not 0.0 < args.quantile <= 1.0:
        raise XbarsimError(f"--quantile: must be in (0, 1] (got {args.quantile})")
    m, n = parse_bits(args.bits)
    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
            assert len(shape) == 3 and min(shape) >= 1
        except (ValueError, AssertionError):
            raise XbarsimError(f"--input-shape: expected C,H,W (got {args.input_shape})") from None
    from ..interop.model_file import import_model_file

    res, source = import_model_file(model, bits=(m, n), calibrate=args.calibrate,
                                    samples=args.samples, quantile=args.quantile,
                                    name=args.name or out.stem, input_shape=shape,
                                    trust_pickle=args.trust_pickle)
    from ..interop.quantize import format_rows

    net = res.network
    # written before anything is printed: a failure (a full disk) is then the one line shown
    path = write_network(net, out, f"imported from {model.name} by xbarsim import")
    print(f"{model} -> {out}: {net.name}, M={net.signal_bits} signal bits, "
          f"N={net.weight_bits} weight bits")
    print("\n".join(format_rows(res.rows)))
    for w in res.warnings:
        print(f"warning: {w.replace('!', '', 1)}")
    if res.agreement is not None:
        line = (f"calibration ({source}, quantile {res.quantile:g}): the ideal integer network "
                f"agrees with the float model on {100 * res.agreement:.2f}% of the images")
        if res.float_accuracy is not None:
            line += (f"; accuracy float {100 * res.float_accuracy:.2f}%, ideal integer "
                     f"{100 * res.ideal_accuracy:.2f}%")
        print(line)
    print(f"wrote {path} and {path.with_suffix('.npz')}")
    return 0


def write_network(net, out: Path, header: str) -> Path:
    """``out`` (YAML) and the ``.npz`` beside it, both or neither: a failure (a full disk) is
    one line and leaves any earlier pair byte for byte (:meth:`Network.save`)."""
    from ..io.files import os_reason

    try:
        return net.save(out, header=header)
    except OSError as exc:
        raise XbarsimError(f"--out: cannot write {out} and {out.with_suffix('.npz')} "
                           f"({os_reason(exc)}); nothing was replaced (got {out})") from None
