"""The tiler: how each conv/fc layer lands on ``t×t`` crossbars (paper Eq. 1).

Pure functions of the network description; no weights or devices needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import ceil

from ..config.layers import NetworkSpec


@dataclass(frozen=True)
class LayerMapping:
    """How one conv/fc layer is tiled.

    ``rows``: crossbar rows used (``k·k·C_in``, plus one always-on row when ``bias: row``);
    ``cols``: columns (output channels); ``eq1_crossbars``: the paper's Eq. 1,
    ``ceil(J/t)·ceil(s·s·J_prev/t)``; ``row_tiles``/``col_tiles``: tiles actually needed for
    ``rows``×``cols``; ``physical_crossbars``: tiles × 2 for differential pairs (``G+`` and ``G−``
    arrays); ``devices``: programmed devices (2 per weight); ``utilization``: used cells / cells in
    the tiles; ``positions``: input vectors per image (conv output positions, 1 for fc).
    """

    name: str
    type: str
    rows: int
    cols: int
    positions: int
    eq1_crossbars: int
    row_tiles: int
    col_tiles: int
    physical_crossbars: int
    devices: int
    utilization: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Mapping:
    crossbar_size: int
    bias_mode: str
    layers: tuple

    @property
    def total_eq1_crossbars(self) -> int:
        return sum(m.eq1_crossbars for m in self.layers)

    @property
    def total_physical_crossbars(self) -> int:
        return sum(m.physical_crossbars for m in self.layers)

    @property
    def total_devices(self) -> int:
        return sum(m.devices for m in self.layers)

    def layer(self, name: str) -> LayerMapping:
        for m in self.layers:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "crossbar_size": self.crossbar_size,
            "bias_mode": self.bias_mode,
            "layers": [m.to_dict() for m in self.layers],
            "total_eq1_crossbars": self.total_eq1_crossbars,
            "total_physical_crossbars": self.total_physical_crossbars,
            "total_devices": self.total_devices,
        }


def eq1(filters: int, kernel: int, in_channels: int, t: int) -> int:
    """Paper Eq. 1: ``ceil(J_i/t) · ceil(s_i·s_i·J_{i−1}/t)``."""
    return ceil(filters / t) * ceil(kernel * kernel * in_channels / t)


def map_network(spec: NetworkSpec, cells_per_weight: int = 2) -> Mapping:
    """Tile every conv/fc layer of ``spec``. ``cells_per_weight`` is 2 for differential pairs."""
    t = spec.crossbar_size
    out = []
    for layer in spec.compute_layers:
        k = layer.kernel if layer.im2col else 1
        rows = layer.rows + (1 if spec.bias_mode == "row" else 0)
        cols = layer.cols
        rt, ct = ceil(rows / t), ceil(cols / t)
        out.append(LayerMapping(
            name=layer.name, type=layer.kind, rows=rows, cols=cols, positions=layer.positions,
            eq1_crossbars=eq1(cols, k, layer.in_channels, t),
            row_tiles=rt, col_tiles=ct,
            physical_crossbars=rt * ct * cells_per_weight,
            devices=rows * cols * cells_per_weight,
            utilization=(rows * cols) / (rt * ct * t * t),
        ))
    return Mapping(crossbar_size=t, bias_mode=spec.bias_mode, layers=tuple(out))


def format_mapping(spec: NetworkSpec, mapping: Mapping) -> str:
    head = (f"{spec.name}: {len(mapping.layers)} conv/fc layers, {spec.n_weights:,} weights, "
            f"{mapping.crossbar_size}x{mapping.crossbar_size} crossbars, bias: {mapping.bias_mode}")
    cols = ("layer", "type", "rows", "cols", "positions", "eq1", "physical", "devices", "util")
    rows = [(m.name, m.type, m.rows, m.cols, m.positions, m.eq1_crossbars, m.physical_crossbars,
             m.devices, f"{100 * m.utilization:.1f}%") for m in mapping.layers]
    rows.append(("total", "", "", "", "", mapping.total_eq1_crossbars,
                 mapping.total_physical_crossbars, mapping.total_devices, ""))
    return head + "\n" + format_table(cols, rows)


def format_table(header, rows) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(_fmt(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c) -> str:
    if isinstance(c, int) and not isinstance(c, bool):
        return f"{c:,}"
    return str(c)
