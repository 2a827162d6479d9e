"""``xbarsim networks``: the shipped networks, one line each (name them directly:
``xbarsim run lenet-mnist-4b``); with ``--paths`` each file's place and the shipped device and
circuit cards (named the same way: ``device: paper-50k-1m``, ``--circuit paper-130nm``)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("networks", help="list the shipped networks (run one by name: "
                       "`xbarsim run lenet-mnist-4b`)")
    p.add_argument("--paths", action="store_true", help="also print where each YAML file is, and "
                   "the shipped device and circuit cards")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config.spec import load_network_spec
    from ..errors import XbarsimError
    from ..io.shipped import shipped_dir, shipped_names

    names = shipped_names("networks")
    if not names:
        raise XbarsimError(f"no shipped networks found in {shipped_dir('networks')} "
                           f"(reinstall xbarsim)")
    width = max(len(n) for n in names)
    for name in names:
        path = shipped_dir("networks") / f"{name}.yaml"
        spec = load_network_spec(path)
        weights = "random weights" if spec.weights == "random" else "trained weights"
        line = (f"{name:<{width}}  {spec.dataset:<9} M={spec.signal_bits} N={spec.weight_bits}  "
                f"{len(spec.compute_layers)} conv/fc layers, {weights}")
        print(line + (f"  {path}" if args.paths else ""))
    if args.paths:
        for kind, use in (("devices", "device cards (device: NAME in a network YAML, "
                                      "--device NAME)"),
                          ("circuits", "circuit cards (--circuit NAME)")):
            cards = shipped_names(kind)
            print(f"\n{use}:")
            for name in cards:
                print(f"{name:<{width}}  {shipped_dir(kind) / (name + '.yaml')}")
    return 0
