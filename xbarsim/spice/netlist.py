"""Self-contained ngspice netlists of the circuits xbarsim models (docs/fidelity.md).

:func:`tile_netlist` is one crossbar tile (one array of a pair) at a DC operating point: drivers
with their output resistance (idle rows at 0 V or left floating), the wire segments of
:class:`xbarsim.hardware.irdrop.TileCircuit`, the devices, and each column's sense node held at a
given voltage; ``.op`` prints the current into every sense node.

:func:`column_netlist` is a set of independent columns, each with its ``G+`` and ``G−`` devices
(``G−`` rows driven with ``−V_read``), the row drivers' output resistance, the IFC front end
(ideal virtual ground, finite-gain op-amp integrator, or a passive capacitor), an ideal clocked
comparator that samples the membrane at the end of each cycle, reset by subtraction of the
threshold charge, and a counter; ``.tran`` over the window prints each column's spike count and
final membrane. Wires are not in the transient netlist (the DC netlist checks them).
One column per netlist runs fastest (the columns of one netlist share its time steps).

Both take a ``title`` for their first (comment) line; it passes word by word through
:func:`xbarsim.spice.safety.safe_identifier`, so a name from a network file never starts a line
of its own (docs/fidelity.md, "Netlists hold data, never code").
"""

from __future__ import annotations

import numpy as np

from .safety import safe_title

FRONT_END_NODES = ("ideal", "opamp", "capacitor")


def _num(x) -> str:
    return f"{float(x):.17g}"


def tile_netlist(g, r_row, r_col, r_driver, vdrive, driven=None, v_end=None, title="tile"):
    """ngspice netlist of one tile ``g`` (R, C) siemens with row sources ``vdrive`` (R,) volts;
    ``driven[i] = False`` leaves row ``i`` floating; ``v_end`` (C,) holds the sense nodes.
    Prints ``i(ve<j>)`` — the current from the tile into sense node ``j`` — in amperes."""
    g = np.asarray(g, np.float64)
    R, C = g.shape
    vdrive = np.asarray(vdrive, np.float64).reshape(R)
    driven = np.ones(R, bool) if driven is None else np.asarray(driven, bool)
    v_end = np.zeros(C) if v_end is None else np.asarray(v_end, np.float64).reshape(C)
    row = (lambda i, j: f"r{i}_{j}") if r_row > 0 else (lambda i, j: f"r{i}")
    col = (lambda i, j: f"c{i}_{j}") if r_col > 0 else (lambda i, j: f"e{j}")
    lines = [f"* xbarsim {safe_title(title)}: {R}x{C} tile, r_row={r_row:g} "
             f"r_col={r_col:g} ohm, r_driver={r_driver:g} ohm, {int(driven.sum())} of {R} rows "
             "driven",
             ]
    r_in = r_driver + r_row
    for i in range(R):
        if not driven[i]:
            continue
        if r_in > 0:
            lines.append(f"Vd{i} d{i} 0 DC {_num(vdrive[i])}")
            lines.append(f"Rd{i} d{i} {row(i, 0)} {_num(r_in)}")
        else:
            lines.append(f"Vd{i} {row(i, 0)} 0 DC {_num(vdrive[i])}")
    if r_row > 0:
        for i in range(R):
            for j in range(1, C):
                lines.append(f"Rw{i}_{j} {row(i, j - 1)} {row(i, j)} {_num(r_row)}")
    if r_col > 0:
        for j in range(C):
            for i in range(1, R):
                lines.append(f"Rb{i}_{j} {col(i - 1, j)} {col(i, j)} {_num(r_col)}")
            lines.append(f"Rb{R}_{j} {col(R - 1, j)} e{j} {_num(r_col)}")
    for i in range(R):
        for j in range(C):
            lines.append(f"Rx{i}_{j} {row(i, j)} {col(i, j)} {_num(1.0 / g[i, j])}")
    for j in range(C):
        lines.append(f"Ve{j} e{j} 0 DC {_num(v_end[j])}")
    lines += [".control", "set numdgt=15", "op"] + [f"print i(ve{j})" for j in range(C)] + [".endc", ".end"]
    return "\n".join(lines) + "\n"


def column_netlist(cases, spk, device, cycles: int, title="columns", rise_frac=0.02,
                   reltol=1e-6):
    """ngspice netlist of independent columns over a window of ``cycles`` cycles.

    ``cases``: a list of dicts with ``g_pos``, ``g_neg`` (R,) siemens, ``x`` (R,) input counts,
    ``q0`` the initial membrane and ``theta`` the threshold, both in weight LSBs (charge
    ``V_read·ΔG·t_pulse``), ``g_unit`` (ΔG, siemens) and optionally ``bias`` (cycles,): a bias
    current delivering ``bias[t]`` LSBs during the read pulse of cycle ``t``; ``load_pos``,
    ``load_neg`` (R,), siemens: the conductance of the row's other columns in its tile, which load
    its driver (to a sense node at 0 V) when ``r_driver_ohm > 0``; ``group`` (optional): cases
    with the same group are columns of one tile under one input (their ``x`` must be equal) and
    share each row's driver node, so their sense nodes couple through ``r_driver_ohm`` as in the
    circuit (their ``load_*`` should then leave out the group's columns). ``spk[x, t]`` is the encoding's
    schedule (row with count ``x`` spikes in cycle ``t``). ``device`` gives ``v_read_v``,
    ``t_pulse_s``, ``t_cycle_s``, ``r_driver_ohm``, ``ifc_front_end``, ``opamp_gain``,
    ``c_ifc_f``. Prints ``h<k>_<t>`` (the comparator decision of cycle ``t``, 0 or 1) and ``q<k>`` (the comparator's input at the end:
    the membrane node of the ideal integrator, the op-amp output ``−A·V_x``, or the column
    voltage of the capacitor) for case ``k``.
    """
    fe = device.ifc_front_end
    if fe not in FRONT_END_NODES:
        raise ValueError(f"ifc_front_end: unknown {fe!r}")
    v, tp, tc = device.v_read_v, device.t_pulse_s, device.t_cycle_s
    cap, gain, rd = device.c_ifc_f, device.opamp_gain, device.r_driver_ohm
    tr = rise_frac * tp
    dl = 1e-12 if tc - tp > 5e-12 else (tc - tp) / 5  # comparator/reset slot width
    t0 = 4 * dl  # the window starts after the initial membrane is preset
    tend = t0 + cycles * tc + 2 * dl
    lines = [f"* xbarsim {safe_title(title)}: {len(cases)} column(s), front end {fe}, "
             f"r_driver={rd:g} ohm, {cycles} cycles of {tc:g} s, read pulse {v:g} V x {tp:g} s",
             f".options method=gear reltol={reltol:g} abstol=1e-18 vntol=1e-12 chgtol=1e-22",
             ]
    values = sorted({int(x) for c in cases for x in np.asarray(c["x"]) if x > 0})
    for val in values:
        pts = []
        for t in np.flatnonzero(spk[val, :cycles]):
            a = t0 + t * tc
            pts += [(a, 0.0), (a + tr, v), (a + tp, v), (a + tp + tr, 0.0)]
        body = " ".join(f"{_num(t)} {_num(y)}" for t, y in [(0.0, 0.0)] + pts)
        lines.append(f"Vp{val} p{val} 0 PWL({body})")
        lines.append(f"Ep{val} m{val} 0 p{val} 0 -1")
    # clock: preset [0, dl); per cycle k: track [t_k − 3dl, t_k − dl], reset [t_k, t_k + dl]
    # where t_k = t0 + (k+1)·tc is the end of cycle k
    e = dl / 20
    lines.append(f"Vpre pre 0 PWL(0 0 {_num(e)} 1 {_num(dl - e)} 1 {_num(dl)} 0)")
    lines.append(f"Vtrk trk 0 PULSE(0 1 {_num(t0 + tc - 3 * dl)} {_num(e)} {_num(e)} "
                 f"{_num(2 * dl - e)} {_num(tc)})")
    lines.append(f"Vrst rst 0 PULSE(0 1 {_num(t0 + tc)} {_num(e)} {_num(e)} {_num(dl - e)} "
                 f"{_num(tc)})")
    shared = set()  # driver nodes already written
    for k, c in enumerate(cases):
        q_unit = v * c["g_unit"] * tp
        qth = c["theta"] * q_unit
        vth = qth / cap
        x = np.asarray(c["x"])
        xn = f"x{k}"
        for i, (gp, gn, xi) in enumerate(zip(c["g_pos"], c["g_neg"], x)):
            for sgn, gg, src in (("p", gp, f"p{int(xi)}" if xi > 0 else "0"),
                                 ("n", gn, f"m{int(xi)}" if xi > 0 else "0")):
                if rd > 0:
                    grp = c.get("group")
                    owner = k if grp is None else f"g{grp}"
                    node = f"w{sgn}{owner}_{i}"
                    if grp is None or node not in shared:
                        shared.add(node)
                        lines.append(f"Rd{sgn}{owner}_{i} {src} {node} {_num(rd)}")
                        load = c.get(f"load_{'pos' if sgn == 'p' else 'neg'}")
                        if load is not None and load[i] > 0:  # the row's other columns (at 0 V)
                            lines.append(f"Rl{sgn}{owner}_{i} {node} 0 {_num(1.0 / load[i])}")
                    lines.append(f"R{sgn}{k}_{i} {node} {xn} {_num(1.0 / gg)}")
                else:
                    lines.append(f"R{sgn}{k}_{i} {src} {xn} {_num(1.0 / gg)}")
        if fe == "ideal":  # virtual ground: a 0 V source whose current charges the membrane
            lines.append(f"Vs{k} {xn} 0 DC 0")
            lines.append(f"F{k} 0 i{k} Vs{k} 1")
            lines.append(f"Cm{k} i{k} 0 {_num(cap)}")
            integ, mem = f"i{k}", f"V(i{k})"
        elif fe == "opamp":
            lines.append(f"E{k} o{k} 0 0 {xn} {_num(gain)}")
            lines.append(f"Cm{k} {xn} o{k} {_num(cap)}")
            integ, mem = xn, f"(-V(o{k}))"
        else:
            lines.append(f"Cm{k} {xn} 0 {_num(cap)}")
            integ, mem = xn, f"V({xn})"
        # initial membrane, the threshold charge removal, the comparator and the counter
        lines.append(f"Bq{k} 0 {integ} I = {_num(c['q0'] * q_unit / (dl - e))} * V(pre)")
        bias = np.asarray(c.get("bias", ()), np.float64)
        if bias.size and np.any(bias):  # a bias current: bias[t] LSBs in the pulse of cycle t
            pts = [(0.0, 0.0)]
            for t in np.flatnonzero(bias[:cycles]):
                a, amp = t0 + t * tc, bias[t] * q_unit / tp
                pts += [(a, 0.0), (a + tr, amp), (a + tp, amp), (a + tp + tr, 0.0)]
            body = " ".join(f"{_num(t)} {_num(y)}" for t, y in pts)
            lines.append(f"Ib{k} 0 {integ} PWL({body})")
        lines.append(f"Br{k} {integ} 0 I = {_num(qth / dl)} * V(h{k}) * V(rst)")
        # track and hold: h follows the comparator (time constant dl/50) while trk is high
        # (the comparator: a ramp 1e-7·V_th wide, continuous so that Newton converges)
        lines.append(f"Bh{k} 0 h{k} I = {_num(50e-12 / dl)} * V(trk) * "
                     f"(min(max(({mem} - {_num(vth)}) / {_num(1e-7 * vth)} + 0.5, 0), 1)"
                     f" - V(h{k}))")
        lines.append(f"Ch{k} h{k} 0 1e-12")
        lines.append(f"Rh{k} h{k} 0 1e18")
    lines.append(f".tran {_num(tc / 20)} {_num(tend)} 0 {_num(tp / 8)} uic")
    lines.append(".control")
    lines.append("set numdgt=15")
    lines.append("run")
    for k in range(len(cases)):
        mem = {"ideal": f"v(i{k})", "opamp": f"v(o{k})", "capacitor": f"v(x{k})"}[fe]
        for t in range(cycles):  # the comparator's held decision of cycle t
            lines.append(f"meas tran h{k}_{t} FIND v(h{k}) AT={_num(t0 + (t + 1) * tc + dl / 2)}")
        lines.append(f"meas tran q{k} FIND {mem} AT={_num(tend - dl / 2)}")
    lines += [".endc", ".end"]
    return "\n".join(lines) + "\n"
