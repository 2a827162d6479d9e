"""``xbarsim map network.yaml``: the tiler's table (paper Eq. 1)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("map", help="map a network onto crossbars (paper Eq. 1) and print the table")
    p.add_argument("network", help="network YAML file")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..mapping import format_mapping, map_network
    from ..spec import load_network_spec
    from ..weights import load_weights

    spec = load_network_spec(args.network)
    if spec.weights != "random":
        load_weights(spec.weights, spec)  # validate the weights file too (shapes, ranges, NaN)
    mapping = map_network(spec)
    if args.json:
        out = {"network": spec.name, "weights": spec.n_weights, **mapping.to_dict()}
        print(json.dumps(out, indent=2))
    else:
        print(format_mapping(spec, mapping))
    return 0
