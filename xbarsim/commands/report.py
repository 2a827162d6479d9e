"""``xbarsim report DIR | network.yaml``: speed/energy/area breakdown as text and bar charts (PNG).

``DIR`` is a results directory written by ``xbarsim run --out DIR`` (its ``results.json`` holds the
cost report under ``"cost"``); a network YAML is costed directly from the ideal integer network's
events (or the cycle-level engine's with ``--engine``) on a few images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import DataError, XbarsimError


def register(sub) -> None:
    p = sub.add_parser("report", help="cost breakdown (speed, energy, area) as text and PNG bar "
                       "charts, from a results directory or a network YAML")
    p.add_argument("source", help="results directory of `xbarsim run --out DIR` (or its "
                   "results.json), or a network YAML (or shipped network name, see `xbarsim "
                   "networks`) to cost directly")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: the results "
                   "directory; for a YAML: ./<network>-cost)")
    p.add_argument("--circuit", default=None,
                   help="circuit card YAML or shipped name (YAML source only; default paper-130nm)")
    p.add_argument("--positions", choices=("paper", "parallel", "multiplexed"), default=None,
                   help="conv positions: override the card's mapping option (YAML source only)")
    p.add_argument("--samples", type=int, default=8,
                   help="images to count events on (YAML source only; default 8)")
    p.add_argument("--engine", action="store_true",
                   help="count events with the cycle-level engine instead of the ideal network")
    p.add_argument("--json", action="store_true", help="print the cost report as JSON")
    p.add_argument("--no-charts", action="store_true", help="do not draw the charts")
    p.add_argument("--format", choices=("png", "pdf", "svg"), default="png",
                   help="chart file format (default png)")
    p.set_defaults(func=run)


def _from_results(path: Path) -> tuple:
    file = path / "results.json" if path.is_dir() else path
    from ..io.files import read_limited

    def fail(why):
        if why == "file not found":
            return DataError(f"{file}: not found (run `xbarsim run NETWORK --out "
                             f"{path}` first, or give a network YAML)")
        return DataError(f"{file}: not a readable results file ({why})")

    try:
        data = json.loads(read_limited(file, 256 << 20, fail, "results file"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: not a readable results file ({exc})") from None
    cost = data.get("cost") if isinstance(data, dict) else None
    if not isinstance(cost, dict) or "layers" not in cost:
        raise DataError(f"{file}: cost: missing (the run that wrote it had no cost model)")
    nb = data.get("neurobench")
    if nb is not None:  # its lines, checked here: a hand-edited file fails in one line
        from ..engine.record import neurobench_lines
        try:
            nb = neurobench_lines(nb)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{file}: neurobench: not the metrics of a run ({exc!r})") from None
    return cost, file.parent, nb


def _from_network(args) -> tuple:
    from ..cost import load_circuit
    from ..cost.table5 import network_cost
    from ..io.paths import safe_name
    from ..network.network import load_network

    if args.samples < 1:
        raise XbarsimError(f"--samples: must be >= 1 (got {args.samples})")
    network = load_network(args.source)
    card = load_circuit(args.circuit) if args.circuit else None
    cost = network_cost(network, args.samples, args.engine, card, args.positions,
                        _Notes(sys.stderr if args.json else sys.stdout))
    out = Path(args.out) if args.out else Path(safe_name(f"{network.spec.name}-cost"))
    return cost, out


class _Notes(list):
    """The shipped sample standing in: said on ``stream`` as it is chosen (before the compute)."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def append(self, line) -> None:
        print(line, file=self.stream, flush=True)
        super().append(line)


def run(args) -> int:
    from ..cost import format_cost
    from ..io.atomic import atomic_write_text
    from ..io.paths import check_out_dir

    if args.out:
        check_out_dir(args.out, "--out")
    src = Path(args.source)
    if not src.exists():
        from ..io.shipped import resolve_shipped
        src = resolve_shipped(src, "networks")  # `xbarsim report lenet-mnist-4b`
        args.source = str(src)
    nb = None  # the lines of the NeuroBench metrics a results file holds (docs/metrics.md)
    if src.suffix in (".yaml", ".yml"):
        cost, out_dir = _from_network(args)
        if not args.no_charts or args.out:
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out_dir / "cost.json", json.dumps(cost, indent=1))
    else:
        if args.circuit or args.positions:
            raise XbarsimError("--circuit/--positions: only for a network YAML source (a results "
                               "directory is drawn as it was costed)")
        cost, out_dir, nb = _from_results(src)
        if args.out:
            out_dir = Path(args.out)
    paths = []
    if not args.no_charts:
        from ..cost.charts import draw_cost_charts
        paths = draw_cost_charts(cost, out_dir, fmt=args.format)
    if args.json:
        print(json.dumps(cost, indent=1))
        return 0
    if "inputs" in cost:
        print(f"inputs: {cost['inputs']}")
    print(format_cost(cost))
    if nb:
        print("\n".join(nb))
    for p in paths:
        print(f"wrote {p}")
    return 0
