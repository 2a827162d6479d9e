"""xbarsim against ngspice: the agreement tables of docs/fidelity.md.

    PYTHONPATH=. python benchmarks/fidelity.py [--dc-tiles 4] [--cases 200] [--bits 5] > out.md

DC: random 32×32 tiles (rows active with probability ½, sense nodes at the front end's voltage
for a random membrane), column currents of xbarsim's nodal solve and of its engine model against
ngspice ``.op``. Transient: random columns of a one-layer network (32 rows, ``2^bits − 1``
cycles), engine spike counts against an ngspice transient of the column and its IFC; also the
agreement when the engine ignores the effect (runs with the ideal front end / no driver
resistance), to show what the model buys. Needs ngspice (Debian: apt-get install ngspice).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from xbarsim.config.device import DeviceCard
from xbarsim.spice.compare import dc_agreement, transient_agreement


def dc_table(tiles):
    print("| wires (Ω/segment) | r_driver (Ω) | idle rows | front end | sense node | "
          "nodal solve max / mean rel. error | engine model max / mean rel. error |")
    print("|---|---|---|---|---|---|---|")
    for fe, extra, label in (("ideal", {}, "0 V"),
                             ("opamp", dict(opamp_gain=1000.0), "A = 1000, C = 1 pF"),
                             ("capacitor", dict(c_ifc_f=20e-12), "C = 20 pF")):
        for wire in (0.0, 2.5, 10.0):
            for rd in (0.0, 100.0, 1000.0):
                for idle in (("driven", "floating") if fe == "ideal" else ("driven",)):
                    card = DeviceCard(r_wire_row_ohm=wire, r_wire_col_ohm=wire, r_driver_ohm=rd,
                                      idle_rows=idle, ifc_front_end=fe, **extra)
                    r = dc_agreement(card, cases=tiles, seed=int(wire * 10 + rd))
                    print(f"| {wire:g} | {rd:g} | {idle} | {fe} | {label} | "
                          f"{r.nodal.max():.1e} / {r.nodal.mean():.1e} | "
                          f"{r.engine.max():.1e} / {r.engine.mean():.1e} |", flush=True)


def transient_table(cases, bits):
    print("| configuration | cases | ties | equal (all) | equal (non-tie) | "
          "equal if xbarsim ignored the effect |")
    print("|---|---|---|---|---|---|")
    configs = [
        ("ideal virtual ground", DeviceCard(), None),
        ("ideal, r_driver 1 kΩ", DeviceCard(r_driver_ohm=1000.0), DeviceCard()),
        ("op-amp A = 1000, C = 1 pF", DeviceCard(ifc_front_end="opamp"), DeviceCard()),
        ("op-amp A = 100, C = 1 pF", DeviceCard(ifc_front_end="opamp", opamp_gain=100.0),
         DeviceCard()),
        ("capacitor C = 20 pF", DeviceCard(ifc_front_end="capacitor", c_ifc_f=20e-12),
         DeviceCard()),
        ("capacitor C = 20 pF, r_driver 1 kΩ",
         DeviceCard(ifc_front_end="capacitor", c_ifc_f=20e-12, r_driver_ohm=1000.0),
         DeviceCard()),
        ("op-amp A = 100, C = 1 pF, r_driver 1 kΩ",
         DeviceCard(ifc_front_end="opamp", opamp_gain=100.0, r_driver_ohm=1000.0),
         DeviceCard()),
    ]
    for name, card, ignored in configs:
        t = time.time()
        r = transient_agreement(card, cases=cases, bits=bits, engine_device=None)
        alt = "–"
        if ignored is not None:
            r0 = transient_agreement(card, cases=cases, bits=bits, engine_device=ignored,
                                     spice_counts=r.spice)
            alt = f"{100 * r0.agreement:.1f} %"
        print(f"| {name} | {len(r.spice)} | {int(r.tie.sum())} | {100 * r.agreement:.1f} % | "
              f"{100 * r.non_tie_agreement:.1f} % | {alt} |", flush=True)
        print(f"  ({name}: {time.time() - t:.0f} s, SPICE decisions not clean: "
              f"{int(r.unclean.sum())})", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dc-tiles", type=int, default=4)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--bits", type=int, default=5)
    ap.add_argument("--skip-dc", action="store_true")
    ap.add_argument("--skip-transient", action="store_true")
    a = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)\n")
    if not a.skip_dc:
        dc_table(a.dc_tiles)
        print()
    if not a.skip_transient:
        transient_table(a.cases, a.bits)


if __name__ == "__main__":
    main()
