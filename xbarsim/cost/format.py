"""Text tables of a cost report (works on a :class:`CostReport` or its ``to_dict()``)."""

from __future__ import annotations

from ..network.mapping import format_table


def _as_dict(report) -> dict:
    return report if isinstance(report, dict) else report.to_dict()


def format_cost(report) -> str:
    """Summary lines, a per-layer table and the per-component totals."""
    d = _as_dict(report)
    opts = d["options"]
    lines = [
        f"cost ({d['circuit']} card, {d['images']} image(s), positions {opts['positions']}, "
        f"{opts['schedule']}):",
        f"  speed {d['speed_mhz']:.4g} MHz ({d['throughput_images_s']:.4g} images/s), latency "
        f"{d['latency_s'] * 1e9:.4g} ns (overhead {d['overhead_s'] * 1e9:.4g} ns from "
        f"{d['overhead_from']})",
        f"  energy {d['energy_per_image_j'] * 1e6:.4g} uJ/image, area {d['area_mm2']:.4g} mm²",
    ]
    header = ("layer", "type", "tiles", "time ns", "energy uJ/img", "static %", "area mm²")
    rows = []
    for lay in d["layers"]:
        e = lay["energy_per_image_j"]
        tot = lay["energy_per_image_total_j"]
        if lay["type"] == "flatten":
            continue
        rows.append((lay["name"] + ("*" if lay["critical"] else ""), lay["type"],
                     lay["tiles"] * lay["replicas"], f"{lay['time_s'] * 1e9:.4g}",
                     f"{tot * 1e6:.4g}", f"{100 * e.get('static', 0.0) / tot:.1f}" if tot else "-",
                     f"{lay['area_total_mm2']:.4g}"))
    lines.append(format_table(header, rows))
    lines.append("  (* = on the critical path; time per image)")
    comp = d["energy_per_image_by_component_j"]
    total = d["energy_per_image_j"] or 1.0
    lines.append("  energy/image: " + ", ".join(
        f"{k} {v * 1e6:.3g} uJ ({100 * v / total:.1f}%)" for k, v in comp.items() if v))
    area = d["area_by_component_mm2"]
    atot = d["area_mm2"] or 1.0
    lines.append("  area: " + ", ".join(
        f"{k} {v:.3g} mm² ({100 * v / atot:.1f}%)" for k, v in area.items() if v))
    for note in d.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
