"""``xbarsim export NET.yaml --nir OUT.nir``: the network as a NIR graph (docs/interop.md)."""

from __future__ import annotations

from pathlib import Path

from ..errors import XbarsimError


def register(sub) -> None:
    p = sub.add_parser("export", help="write a network as a NIR graph (Neuromorphic "
                       "Intermediate Representation)")
    p.add_argument("network", help="network YAML file")
    p.add_argument("--nir", required=True, metavar="OUT.nir", help="NIR file to write")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..interop.nir_io import write_nir
    from ..network.network import load_network

    out = Path(args.nir)
    if out.suffix != ".nir":
        raise XbarsimError(f"--nir: must name a .nir file (got {args.nir})")
    net = load_network(args.network)
    write_nir(net, out)
    print(f"wrote {out}: {len(net.spec.layers)} layers of {net.name} as NIR (weights = integer "
          f"levels, IF thresholds = θ; M, N, window, reset and device in the graph metadata)")
    return 0
