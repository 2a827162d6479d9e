"""``xbarsim spice network.yaml --layer NAME``: an ngspice netlist of one tile (DC) or one column
with its IFC (transient) of a layer, for a chosen image; ``--run`` runs ngspice and prints
xbarsim's values beside SPICE's (docs/fidelity.md). The library: :mod:`xbarsim.spice.cases`."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("spice", help="write an ngspice netlist of one tile or one column + IFC "
                       "of a layer; --run compares xbarsim with ngspice")
    p.add_argument("network", help="network YAML file")
    p.add_argument("--layer", required=True, help="conv/fc layer name")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--tile", metavar="R,C", default="0,0",
                      help="DC: row-tile and column-tile index of the tile (default 0,0)")
    what.add_argument("--column", type=int, metavar="J",
                      help="transient: output column J with its IFC over the window")
    p.add_argument("--array", choices=("pos", "neg"), default="pos",
                   help="DC: the G+ or the G- array of the pair (default pos)")
    p.add_argument("--cycle", type=int, default=0, help="DC: the cycle whose spiking rows are "
                   "driven (default 0)")
    p.add_argument("--image", type=int, default=0, help="image index (default 0)")
    p.add_argument("--position", type=int, default=None,
                   help="conv output position oy·W_out + ox (default: the most active one: "
                   "DC, the position with the most rows of the tile spiking in --cycle; "
                   "transient, the one where column J's IFC fires most)")
    p.add_argument("--device", metavar="CARD.yaml", help="device card overriding the network's "
                   "(e.g. one with r_driver_ohm, idle_rows or ifc_front_end)")
    p.add_argument("--seed", type=int, default=None, help="engine seed (default: the YAML's)")
    p.add_argument("--inputs", help="uint8 images .npy shaped like the network input")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="data set split the image comes from (default test)")
    p.add_argument("--out", metavar="FILE.cir", help="write the netlist here (default: stdout "
                   "unless --run)")
    p.add_argument("--run", action="store_true", help="run ngspice and compare with xbarsim")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io.atomic import atomic_write_text
    from ..spice.cases import layer_netlist

    case = layer_netlist(args.network, args.layer, tile=args.tile, column=args.column,
                         array=args.array, cycle=args.cycle, image=args.image,
                         position=args.position, device=args.device, seed=args.seed,
                         inputs=args.inputs, split=args.split)
    if case.chosen:  # on stdout with the comparison or beside --out; on stderr when stdout is
        print(case.chosen, file=sys.stdout if args.run or args.out else sys.stderr)  # the netlist
    if args.out:
        atomic_write_text(args.out, case.text)
        print(f"wrote {args.out}")
    elif not args.run:
        print(case.text, end="")
    if args.run:
        print(case.header)
        print("\n".join(case.compare()))
    return 0
