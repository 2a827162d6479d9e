"""A :class:`~xbarsim.config.layers.NetworkSpec` back to network YAML text (the inverse of
:func:`~xbarsim.config.spec.parse_network`): what ``Network.save`` and ``xbarsim import`` write.

Strings are written as JSON strings (valid YAML, so a name with ``:`` or ``#`` survives); the
device card is written inline, field by field, so the file needs nothing beside it but its
weights.
"""

from __future__ import annotations

import json
from dataclasses import fields

from .device import DEVICE_KEYS, DeviceCard
from .kinds import kind_of

_DEFAULT_DEVICE = DeviceCard(name="ideal-default", source="xbarsim default (50 kOhm - 1 MOhm)")


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(str(value))


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in mapping.items()) + "}"


def device_mapping(card: DeviceCard) -> dict | None:
    """The card's keys that differ from a default card (``None`` for the default card itself)."""
    if card == _DEFAULT_DEVICE or (card.name == _DEFAULT_DEVICE.name and not card.file
                                   and _same_fields(card, _DEFAULT_DEVICE)):
        return None
    base = DeviceCard()
    out = {"name": card.name, "source": card.source}
    for f in fields(DeviceCard):
        if f.name in ("name", "source") or f.name not in DEVICE_KEYS:
            continue
        value = getattr(card, f.name)
        if value != getattr(base, f.name):
            out[f.name] = value
    return out


def _same_fields(a: DeviceCard, b: DeviceCard) -> bool:
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(DeviceCard)
               if f.name != "file")


def layer_mapping(layer) -> dict:
    """One layer as the YAML keys that rebuild it (inputs always named, shapes re-inferred)."""
    out = {"name": layer.name, "type": layer.kind}
    kind = kind_of(layer)
    if kind.inputs_key == "inputs":
        out["inputs"] = list(layer.inputs)
    else:
        out["input"] = layer.inputs[0]
    out.update(kind.dump(layer))
    return out


def spec_to_yaml(spec, weights: str, description: str = "", header: str = "") -> str:
    """Network YAML text for ``spec`` whose weights file is ``weights`` (a path relative to the
    YAML, or ``"random"``). ``header``: comment lines put first (without ``#``)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    lines.append(f"name: {_scalar(spec.name)}")
    if description:
        lines.append(f"description: {_scalar(description)}")
    lines.append(f"dataset: {spec.dataset}")
    inp = {"shape": None, "bits": spec.input_bits}
    shape = "[" + ", ".join(str(int(s)) for s in spec.input_shape) + "]"
    lines.append(f"input: {{shape: {shape}, bits: {inp['bits']}}}")
    lines.append(f"bits: {{signal: {spec.signal_bits}, weight: {spec.weight_bits}}}")
    lines.append(f"crossbar: {{size: {spec.crossbar_size}, bias: {spec.bias_mode}}}")
    dev = device_mapping(spec.device)
    if dev is not None:
        lines.append(f"device: {_flow(dev)}")
    lines.append(f"weights: {_scalar(weights)}")
    lines.append(f"seed: {spec.seed}")
    lines.append("layers:")
    for layer in spec.layers:
        m = layer_mapping(layer)
        items = []
        for k, v in m.items():
            if isinstance(v, list):
                items.append(f"{k}: [" + ", ".join(_scalar(x) for x in v) + "]")
            else:
                items.append(f"{k}: {_scalar(v)}")
        lines.append("  - {" + ", ".join(items) + "}")
    return "\n".join(lines) + "\n"


__all__ = ["device_mapping", "layer_mapping", "spec_to_yaml"]
