"""``xbarsim map network.yaml``: the tiler's table (paper Eq. 1)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("map", help="map a network onto crossbars (paper Eq. 1) and print the table")
    p.add_argument("network", nargs="+", help="network YAML file(s)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON object instead of a table (a JSON list of objects, one per "
                   "network, when several files are given)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config.spec import load_network_spec
    from ..network.mapping import format_mapping, map_network
    from ..network.weights import load_weights

    outs, tables = [], []
    for path in args.network:
        spec = load_network_spec(path)
        if spec.weights != "random":
            load_weights(spec.weights, spec)  # validate the weights file too (shapes, ranges, NaN)
        mapping = map_network(spec)
        outs.append({"network": spec.name, "weights": spec.n_weights, **mapping.to_dict()})
        tables.append(format_mapping(spec, mapping))
    if args.json:
        print(json.dumps(outs[0] if len(outs) == 1 else outs, indent=2))
    else:
        print("\n\n".join(tables))
    return 0
