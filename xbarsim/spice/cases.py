"""The netlist of one tile (DC) or one column with its IFC (transient) of a network's layer for a
chosen image, and xbarsim's values beside ngspice's for it (``xbarsim spice``; docs/fidelity.md).

>>> case = layer_netlist("networks/lenet-mnist-4b.yaml", "conv2", tile=(1, 0), cycle=3)  # doctest: +SKIP
>>> print(case.text); print("\\n".join(case.compare()))                               # doctest: +SKIP

Every netlist passes :func:`~xbarsim.spice.safety.check_netlist` before it is returned, and every
name from the network file enters it through :func:`~xbarsim.spice.safety.safe_identifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import XbarsimError
from .netlist import column_netlist, tile_netlist
from .ngspice import run_ngspice


def most_active(primary, secondary) -> int:
    """The position with the largest ``primary`` activity, ties broken by ``secondary`` and then
    by the lower index."""
    return int(np.lexsort((-np.asarray(secondary, np.int64),
                           -np.asarray(primary, np.int64)))[0])


@dataclass
class LayerNetlist:
    """A checked netlist (``text``) and what :meth:`compare` needs to hold xbarsim against it.
    ``header``: the line that names the network, layer, image and device; ``chosen``: the line saying which position was picked as the most active one (None when the
    position was given or the layer is fc)."""

    text: str
    header: str
    chosen: str | None
    image: int
    position: int
    im2col: bool
    _compare: object = field(repr=False, default=None)

    def compare(self) -> list:
        """Run ngspice on the netlist; the lines of xbarsim's values beside ngspice's."""
        return self._compare(run_ngspice(self.text))

    def idle_hint(self, what: str, other: str) -> str:
        """The line printed under a comparison of zeros: which option picks an active case."""
        if self.im2col:
            case, where = f"position {self.position}, image {self.image}", "another --position"
        else:
            case, where = f"image {self.image}", "another --image"
        return f"hint: {what} ({case}); to compare an active case choose {other} or {where}"


def layer_netlist(network, layer_name: str, *, tile="0,0", column=None, array="pos", cycle=0,
                  image=0, position=None, device=None, seed=None, inputs=None,
                  split="test") -> LayerNetlist:
    """The netlist of tile ``tile`` (``"R,C"`` or ``(R, C)``: row-tile, column-tile; DC, the spiking rows of ``cycle``
    driven, the ``array`` ``"pos"`` or ``"neg"`` of the pair) or, with ``column``, of that output
    column with its IFC over the window, of layer ``layer_name`` of ``network`` (a YAML path or
    shipped name) for image ``image`` of ``inputs`` (a ``.npy`` path) or the data set's
    ``split``, at conv output ``position`` (None: the most active one). ``device``: a card path
    overriding the network's; ``seed``: the engine seed (None: the YAML's)."""
    from ..engine import EngineOptions, Simulator
    from ..engine.encoding import schedule
    from ..hardware.program import build_hardware
    from ..io.inputs import load_inputs
    from ..network.network import load_network
    from ..network.reference import im2col
    from . import check_netlist, safe_identifier  # through the package, as callers patch it

    net = load_network(network)
    spec = net.spec
    try:
        layer = spec.layer(layer_name)
    except (KeyError, XbarsimError):
        layer = None
    if layer is None or not layer.is_compute:
        names = ", ".join(lay.name for lay in spec.layers if lay.is_compute)
        raise XbarsimError(f"--layer: no conv/fc layer {layer_name!r} (layers: {names})")
    seed = spec.seed if seed is None else seed
    card = None
    if device:
        from ..config.device import load_device
        card = load_device(device)
    hw = build_hardware(net, card, seed=seed)
    sim = Simulator(net, hw, options=EngineOptions(seed=seed))
    images, _, _, _ = load_inputs(spec, inputs=inputs, samples=image + 1, split=split)
    if not 0 <= image < len(images):
        raise XbarsimError(f"--image: must be in 0..{len(images) - 1} (got {image})")
    img = images[image:image + 1]
    res = sim.run(img, keep="all", compare_ideal=False)
    src = layer.inputs[0]
    xin = net.quantize_input(img) if src == "input" else res.counts[src]
    lh = hw[layer.name]
    plan = sim.plan(layer.name)
    spk = schedule(sim.options.encoding, plan.window, plan.cycles)
    size = spec.crossbar_size
    tile_text = tile if isinstance(tile, str) else ",".join(str(v) for v in tile)
    r0 = c0 = 0
    if column is None:
        rt, ct = _tile_index(tile_text)
        r0, c0 = rt * size, ct * size
        if not (0 <= r0 < lh.rows and 0 <= c0 < lh.cols):
            raise XbarsimError(f"--tile: {layer.name} has {-(-lh.rows // size)}x"
                               f"{-(-lh.cols // size)} tiles (got {tile_text})")
        if not 0 <= cycle < plan.cycles:
            raise XbarsimError(f"--cycle: must be in 0..{plan.cycles - 1} (got {cycle})")
    elif not 0 <= column < lh.cols:
        raise XbarsimError(f"--column: must be in 0..{lh.cols - 1} (got {column})")
    chosen = None
    if layer.im2col:
        patches = im2col(np.asarray(xin, np.int64), layer.kernel, layer.stride, layer.padding)
        npos = patches.shape[1] * patches.shape[2]
        xs = patches.reshape(npos, -1)
        if position is None:
            if column is None:
                rows = xs[:, r0:r0 + size]
                position = most_active(spk[rows, cycle].sum(axis=1), rows.sum(axis=1))
            else:
                out = np.asarray(res.counts[layer.name]).reshape(lh.cols, -1)[column]
                position = most_active(out, xs.sum(axis=1))
            w_out = patches.shape[2]
            what = (f"the most rows of tile {tile_text} spiking in cycle {cycle}"
                    if column is None else f"the most IFC spikes of column {column}")
            chosen = (f"{layer.name}: position {position} (oy {position // w_out}, ox "
                      f"{position % w_out}) of {npos}: {what} for image {image} "
                      f"(--position to choose another)")
        if not 0 <= position < npos:
            raise XbarsimError(f"--position: must be in 0..{npos - 1} (got {position})")
        x = xs[position]
    else:
        if position:
            raise XbarsimError(f"--position: an fc layer has one position (got {position})")
        position = 0
        x = np.asarray(xin, np.int64).reshape(-1)
    where = "--inputs" if inputs else f"{spec.dataset} {split}"
    header = (f"{spec.name} {layer.name}, image {image} ({where}), device {hw.device.name}")
    # names come from the network file (or a NIR file it was imported from): into the netlist
    # only as safe identifiers
    names = f"{safe_identifier(spec.name)} {safe_identifier(layer.name)}"
    case = LayerNetlist("", header, chosen, image, position, bool(layer.im2col))
    if column is None:
        text, compare = _tile(case, lh, hw.device, spk, x, r0, c0, size, array, cycle,
                              tile_text, f"{names} tile {rt}_{ct} {array} image {image}"
                              + (f" position {position}" if layer.im2col else "")
                              + f" cycle {cycle}")
    else:
        text, compare = _column(case, sim, hw, lh, layer, spk, x, xin, plan, column, size,
                                f"{names} column {column} image {image} position {position}")
    check_netlist(text)  # before it is written, printed or run
    case.text, case._compare = text, compare
    return case


def _tile_index(text: str):
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise XbarsimError(f"--tile: must be two integers R,C (got {text!r})") from None
    return r, c


def _tile(case, lh, dev, spk, x, r0, c0, size, array, cycle, tile_text, title):
    """The DC netlist of a tile and the comparison of its column currents."""
    from ..hardware.irdrop import solve_tile
    from .compare import engine_currents

    g = (lh.g_pos_s if array == "pos" else lh.g_neg_s)[r0:r0 + size, c0:c0 + size]
    geff = (lh.g_eff_pos_s if array == "pos" else lh.g_eff_neg_s)
    geff = g if geff is None else geff[r0:r0 + size, c0:c0 + size]
    act = spk[x[r0:r0 + g.shape[0]], cycle].astype(bool)
    vd = np.where(act, dev.v_read_v, 0.0)
    driven = act | (dev.idle_rows == "driven")
    text = tile_netlist(g, dev.r_wire_row_ohm, dev.r_wire_col_ohm, dev.r_driver_ohm, vd, driven,
                        title=title)

    def compare(out) -> list:
        sp = np.array([out[f"i(ve{c})"] for c in range(g.shape[1])])
        nodal = solve_tile(g, dev.r_wire_row_ohm, dev.r_wire_col_ohm, dev.r_driver_ohm,
                           vd[:, None], driven)[:, 0]
        eng = (engine_currents(g, dev, act, np.zeros(g.shape[1]))
               if dev.idle_rows == "floating" and dev.has_wires else vd @ geff)
        lines = [f"{int(act.sum())} of {len(act)} rows spike in cycle {cycle}; IFC input "
                 f"currents (A) of the {array} array's tile {tile_text}:",
                 f"{'column':>6}  {'xbarsim engine':>15}  {'xbarsim nodal':>15}  "
                 f"{'ngspice':>15}  {'rel. error engine':>17}  {'rel. error nodal':>16}"]

        def rel(a, ref):
            return abs(a / ref - 1) if ref else abs(a)

        for c in range(len(sp)):
            lines.append(f"{c0 + c:>6}  {eng[c]:>15.6e}  {nodal[c]:>15.6e}  {sp[c]:>15.6e}  "
                         f"{rel(eng[c], sp[c]):>17.2e}  {rel(nodal[c], sp[c]):>16.2e}")
        if not act.any():
            per_cycle = spk[x[r0:r0 + g.shape[0]]].sum(axis=0)
            busiest = int(np.argmax(per_cycle))
            there = (f"--cycle {busiest} ({int(per_cycle[busiest])} rows spike in it here)"
                     if per_cycle[busiest] else "another --image (no row of the tile spikes "
                     "in any cycle here)")
            lines.append(case.idle_hint(f"no row of tile {tile_text} spikes in cycle {cycle}, "
                                        f"so every current is 0", there))
        return lines

    return text, compare


def _column(case, sim, hw, lh, layer, spk, x, xin, plan, j, size, title):
    """The transient netlist of column ``j`` with its IFC and the comparison of spike counts."""
    from ..engine.simulator import bias_schedule
    from ..hardware.program import FRAC_BITS
    from .compare import group_load, row_load

    dev = hw.device
    if sim.options.encoding == "bernoulli":
        raise XbarsimError("--column: the transient netlist needs a deterministic encoding")
    # the bias current per cycle (cycles, cols) in LSBs, as the ideal front end receives it
    bias = (np.asarray(bias_schedule(hw[layer.name].bias, plan.window), np.float64)
            if plan.bsched.shape[0] else np.zeros(0))

    def column_case(jj, **extra):
        return dict(g_pos=lh.g_pos_s[:, jj], g_neg=lh.g_neg_s[:, jj], x=x,
                    q0=plan.v0[jj] / float(1 << FRAC_BITS), theta=lh.theta,
                    g_unit=lh.g_unit_s, bias=bias[:, jj] if bias.size else bias, **extra)

    if dev.has_front_end and dev.r_driver_ohm > 0:
        # the sense nodes couple through the drivers: every column of j's tile, sharing them
        c0 = (j // size) * size
        js = list(range(c0, min(lh.cols, c0 + size)))
        cases = [column_case(jj, group=0, load_pos=group_load(lh.g_pos_s, js, size),
                             load_neg=group_load(lh.g_neg_s, js, size)) for jj in js]
        k_col = js.index(j)
    else:
        cases = [column_case(j, load_pos=row_load(lh.g_pos_s, j, size),
                             load_neg=row_load(lh.g_neg_s, j, size))]
        k_col = 0
    text = column_netlist(cases, spk, dev, plan.cycles, title=title)

    def compare(out) -> list:
        h = np.array([out[f"h{k_col}_{t}"] for t in range(plan.cycles)])
        n_sp = int(np.sum(h > 0.5))
        _, fired, _, _ = sim.simulate_layer(layer.name, xin)
        n_xb = int(np.asarray(fired).reshape(1, lh.cols, -1)[0, j, case.position])
        rel = abs(n_xb - n_sp) / n_sp if n_sp else float(n_xb != 0)
        lines = [f"column {j}, position {case.position}: IFC spikes over {plan.cycles} cycles "
                 f"(front end {dev.ifc_front_end}, r_driver {dev.r_driver_ohm:g} ohm)",
                 f"{'xbarsim':>8}  {'ngspice':>8}  {'rel. error':>10}",
                 f"{n_xb:>8}  {n_sp:>8}  {rel:>10.2e}"]
        if n_xb == 0 and n_sp == 0:
            lines.append(case.idle_hint(f"column {j}'s IFC never fires here, so both counts "
                                        f"are 0", "another --column"))
        if dev.has_wires:
            lines.append("note: the transient netlist leaves out wire resistance (xbarsim's "
                         "count includes it); use the DC tile netlist to check wires")
        return lines

    return text, compare
