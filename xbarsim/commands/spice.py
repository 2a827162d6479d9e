"""``xbarsim spice network.yaml --layer NAME``: an ngspice netlist of one tile (DC) or one column
with its IFC (transient) of a layer, for a chosen image; ``--run`` runs ngspice and prints
xbarsim's values beside SPICE's (docs/fidelity.md)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..errors import XbarsimError


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


def _tile_index(text):
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise XbarsimError(f"--tile: must be two integers R,C (got {text!r})") from None
    return r, c


def most_active(primary, secondary) -> int:
    """The position with the largest ``primary`` activity, ties broken by ``secondary`` and then
    by the lower index."""
    return int(np.lexsort((-np.asarray(secondary, np.int64),
                           -np.asarray(primary, np.int64)))[0])


def _idle_hint(layer, args, what: str, other: str) -> str:
    """The line printed under a comparison of zeros: which option picks an active case."""
    if layer.im2col:
        case, where = f"position {args.position}, image {args.image}", "another --position"
    else:
        case, where = f"image {args.image}", "another --image"
    return (f"hint: {what} ({case}); to compare an active case choose {other} or {where}")


def sim_bias(hw, name, plan):
    """The bias current per cycle (cycles, cols) in LSBs, as the ideal front end receives it."""
    from ..engine.simulator import bias_schedule

    return bias_schedule(hw[name].bias, plan.window)


def run(args) -> int:
    from ..engine import EngineOptions, Simulator
    from ..engine.encoding import schedule
    from ..hardware.irdrop import solve_tile
    from ..hardware.program import FRAC_BITS, build_hardware
    from ..io.atomic import atomic_write_text
    from ..network.network import load_network
    from ..network.reference import im2col
    from ..spice import check_netlist, column_netlist, run_ngspice, safe_identifier, tile_netlist
    from ..spice.compare import engine_currents, group_load, row_load
    from .run import load_inputs

    net = load_network(args.network)
    spec = net.spec
    try:
        layer = spec.layer(args.layer)
    except (KeyError, XbarsimError):
        layer = None
    if layer is None or not layer.is_compute:
        names = ", ".join(lay.name for lay in spec.layers if lay.is_compute)
        raise XbarsimError(f"--layer: no conv/fc layer {args.layer!r} (layers: {names})")
    seed = spec.seed if args.seed is None else args.seed
    card = None
    if args.device:
        from ..config.device import load_device
        card = load_device(args.device)
    hw = build_hardware(net, card, seed=seed)
    sim = Simulator(net, hw, options=EngineOptions(seed=seed))
    ns = argparse.Namespace(inputs=args.inputs, labels=None, samples=args.image + 1,
                            split=args.split, download=False)
    images, _, _ = load_inputs(ns, spec)
    if not 0 <= args.image < len(images):
        raise XbarsimError(f"--image: must be in 0..{len(images) - 1} (got {args.image})")
    img = images[args.image:args.image + 1]
    res = sim.run(img, keep="all", compare_ideal=False)
    src = layer.inputs[0]
    xin = net.quantize_input(img) if src == "input" else res.counts[src]
    lh = hw[layer.name]
    dev = hw.device
    plan = sim.plan(layer.name)
    window = plan.window
    spk = schedule(sim.options.encoding, window, plan.cycles)
    tile = spec.crossbar_size
    if args.column is None:
        rt, ct = _tile_index(args.tile)
        r0, c0 = rt * tile, ct * tile
        if not (0 <= r0 < lh.rows and 0 <= c0 < lh.cols):
            raise XbarsimError(f"--tile: {layer.name} has {-(-lh.rows // tile)}x"
                               f"{-(-lh.cols // tile)} tiles (got {args.tile})")
        if not 0 <= args.cycle < plan.cycles:
            raise XbarsimError(f"--cycle: must be in 0..{plan.cycles - 1} (got {args.cycle})")
    elif not 0 <= args.column < lh.cols:
        raise XbarsimError(f"--column: must be in 0..{lh.cols - 1} (got {args.column})")
    chosen = None  # (position, what made it the most active) when --position was not given
    if layer.im2col:
        patches = im2col(np.asarray(xin, np.int64), layer.kernel, layer.stride, layer.padding)
        npos = patches.shape[1] * patches.shape[2]
        xs = patches.reshape(npos, -1)
        if args.position is None:
            if args.column is None:
                rows = xs[:, r0:r0 + tile]
                chosen = most_active(spk[rows, args.cycle].sum(axis=1), rows.sum(axis=1))
            else:
                out = np.asarray(res.counts[layer.name]).reshape(lh.cols, -1)[args.column]
                chosen = most_active(out, xs.sum(axis=1))
            args.position = chosen
        if not 0 <= args.position < npos:
            raise XbarsimError(f"--position: must be in 0..{npos - 1} (got {args.position})")
        x = xs[args.position]
    else:
        if args.position:
            raise XbarsimError(f"--position: an fc layer has one position (got {args.position})")
        args.position = 0
        x = np.asarray(xin, np.int64).reshape(-1)
    if chosen is not None:
        w_out = patches.shape[2]
        what = (f"the most rows of tile {args.tile} spiking in cycle {args.cycle}"
                if args.column is None else f"the most IFC spikes of column {args.column}")
        # on stdout with the comparison or beside --out; on stderr when stdout is the netlist
        print(f"{layer.name}: position {args.position} (oy {args.position // w_out}, ox "
              f"{args.position % w_out}) of {npos}: {what} for image {args.image} "
              f"(--position to choose another)",
              file=sys.stdout if args.run or args.out else sys.stderr)
    # names come from the network file (or a NIR file it was imported from): into the netlist
    # only as safe identifiers
    names = f"{safe_identifier(spec.name)} {safe_identifier(layer.name)}"
    if args.column is None:
        g = (lh.g_pos_s if args.array == "pos" else lh.g_neg_s)[r0:r0 + tile, c0:c0 + tile]
        geff = (lh.g_eff_pos_s if args.array == "pos" else lh.g_eff_neg_s)
        geff = g if geff is None else geff[r0:r0 + tile, c0:c0 + tile]
        act = spk[x[r0:r0 + g.shape[0]], args.cycle].astype(bool)
        vd = np.where(act, dev.v_read_v, 0.0)
        driven = act | (dev.idle_rows == "driven")
        text = tile_netlist(g, dev.r_wire_row_ohm, dev.r_wire_col_ohm, dev.r_driver_ohm, vd,
                            driven, title=f"{names} tile {rt}_{ct} {args.array} image "
                            f"{args.image}" + (f" position {args.position}"
                                               if layer.im2col else "")
                            + f" cycle {args.cycle}")
    else:
        j = args.column
        if sim.options.encoding == "bernoulli":
            raise XbarsimError("--column: the transient netlist needs a deterministic encoding")
        bias = (np.asarray(sim_bias(hw, layer.name, plan), np.float64) if plan.bsched.shape[0]
                else np.zeros(0))
        def case(jj, **extra):
            return dict(g_pos=lh.g_pos_s[:, jj], g_neg=lh.g_neg_s[:, jj], x=x,
                        q0=plan.v0[jj] / float(1 << FRAC_BITS), theta=lh.theta,
                        g_unit=lh.g_unit_s, bias=bias[:, jj] if bias.size else bias, **extra)

        if dev.has_front_end and dev.r_driver_ohm > 0:
            # the sense nodes couple through the drivers: every column of j's tile, sharing them
            c0 = (j // tile) * tile
            js = list(range(c0, min(lh.cols, c0 + tile)))
            cases = [case(jj, group=0, load_pos=group_load(lh.g_pos_s, js, tile),
                          load_neg=group_load(lh.g_neg_s, js, tile)) for jj in js]
            k_col = js.index(j)
        else:
            cases = [case(j, load_pos=row_load(lh.g_pos_s, j, tile),
                          load_neg=row_load(lh.g_neg_s, j, tile))]
            k_col = 0
        text = column_netlist(cases, spk, dev, plan.cycles,
                              title=f"{names} column {j} image {args.image} "
                              f"position {args.position}")
    check_netlist(text)  # before it is written, printed or run
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    elif not args.run:
        print(text, end="")
    if not args.run:
        return 0
    print(f"{spec.name} {layer.name}, image {args.image} "
          f"({'--inputs' if args.inputs else spec.dataset + ' ' + args.split}), device {dev.name}")
    if args.column is None:
        out = run_ngspice(text)
        sp = np.array([out[f"i(ve{c})"] for c in range(g.shape[1])])
        nodal = solve_tile(g, dev.r_wire_row_ohm, dev.r_wire_col_ohm, dev.r_driver_ohm,
                           vd[:, None], driven)[:, 0]
        eng = (engine_currents(g, dev, act, np.zeros(g.shape[1]))
               if dev.idle_rows == "floating" and dev.has_wires else vd @ geff)
        print(f"{int(act.sum())} of {len(act)} rows spike in cycle {args.cycle}; IFC input "
              f"currents (A) of the {args.array} array's tile {args.tile}:")
        print(f"{'column':>6}  {'xbarsim engine':>15}  {'xbarsim nodal':>15}  {'ngspice':>15}  "
              f"{'rel. error engine':>17}  {'rel. error nodal':>16}")
        def rel(a, ref):
            return abs(a / ref - 1) if ref else abs(a)

        for c in range(len(sp)):
            print(f"{c0 + c:>6}  {eng[c]:>15.6e}  {nodal[c]:>15.6e}  {sp[c]:>15.6e}  "
                  f"{rel(eng[c], sp[c]):>17.2e}  {rel(nodal[c], sp[c]):>16.2e}")
        if not act.any():
            per_cycle = spk[x[r0:r0 + g.shape[0]]].sum(axis=0)
            busiest = int(np.argmax(per_cycle))
            there = (f"--cycle {busiest} ({int(per_cycle[busiest])} rows spike in it here)"
                     if per_cycle[busiest] else "another --image (no row of the tile spikes "
                     "in any cycle here)")
            print(_idle_hint(layer, args, f"no row of tile {args.tile} spikes in cycle "
                             f"{args.cycle}, so every current is 0", there))
        return 0
    out = run_ngspice(text)
    h = np.array([out[f"h{k_col}_{t}"] for t in range(plan.cycles)])
    n_sp = int(np.sum(h > 0.5))
    _, fired, _, _ = sim.simulate_layer(layer.name, xin)
    n_xb = int(np.asarray(fired).reshape(1, lh.cols, -1)[0, j, args.position])
    rel = abs(n_xb - n_sp) / n_sp if n_sp else float(n_xb != 0)
    print(f"column {j}, position {args.position}: IFC spikes over {plan.cycles} cycles "
          f"(front end {dev.ifc_front_end}, r_driver {dev.r_driver_ohm:g} ohm)")
    print(f"{'xbarsim':>8}  {'ngspice':>8}  {'rel. error':>10}")
    print(f"{n_xb:>8}  {n_sp:>8}  {rel:>10.2e}")
    if n_xb == 0 and n_sp == 0:
        print(_idle_hint(layer, args, f"column {j}'s IFC never fires here, so both counts are 0",
                         "another --column"))
    if dev.has_wires:
        print("note: the transient netlist leaves out wire resistance (xbarsim's count includes "
              "it); use the DC tile netlist to check wires")
    return 0
