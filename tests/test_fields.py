"""Card and option fields are declared once (issue 28): each field's default, unit, bounds and
meaning live in its ``spec(...)`` declaration, and the dataclass check, the YAML reader, the sweep
coercion and the docs tables all read that one place. These tests hold the four to it."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from xbarsim.config.device import NONIDEAL, DeviceCard, docs_tables, parse_device
from xbarsim.config.section import (
    Section,
    check_fields,
    declared,
    field_kind,
    field_table,
    read_fields,
    spec,
)
from xbarsim.config.yamlio import loads_yaml
from xbarsim.cost.circuit import Area, CircuitCard, Energy, Options, Timing
from xbarsim.engine import EngineOptions
from xbarsim.engine.ifc import IFCParams
from xbarsim.errors import ConfigError, XbarsimError
from xbarsim.sweep import params as P

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def card_text(text: str, name: str = "d.yaml"):
    return parse_device(Section(loads_yaml(text, name), name))


# -- (d) the docs tables are the declarations --------------------------------------------------------
def doc_table(doc: str, marker: str) -> str:
    text = (DOCS / doc).read_text()
    found = re.search(rf"<!-- fields: {marker} -->\n(.*?)<!-- end fields -->\n", text, re.S)
    assert found, f"docs/{doc} has no '<!-- fields: {marker} -->' ... '<!-- end fields -->' table"
    return found.group(1)


@pytest.mark.parametrize("marker, group", [("DeviceCard", None), (f"DeviceCard {NONIDEAL}", NONIDEAL)])
def test_network_yaml_doc_tables_are_the_declared_fields(marker, group):
    expected = field_table(DeviceCard, group)
    assert doc_table("network-yaml.md", marker) == expected, (
        "docs/network-yaml.md's device-card table differs from the fields' declarations; "
        f"replace the table between the markers with:\n{expected}")


def test_every_card_key_is_in_a_doc_table_with_its_default():
    text = (DOCS / "network-yaml.md").read_text().split("\n## Device card\n", 1)[1]
    keys = [f for f in declared(DeviceCard) if f.metadata["key"]]
    assert {f.name for f in keys} == {f.name for f in dataclasses.fields(DeviceCard)} - {"file"}
    for f in keys:
        row = re.search(rf"^\| `{f.name}` \| (\w+) \| ([^|]+) \|", text, re.M)
        assert row, f"docs/network-yaml.md lists no row for {f.name}"
        shown = f.metadata["shown_default"] or f"`{_yaml(f.default)}`"
        assert row.group(2).strip() == shown
        if isinstance(f.default, float):  # the default as written reads back as the value
            assert float(shown.strip("`")) == f.default
    assert docs_tables().count("\n| `") == len(keys)


def _yaml(value):
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda g: "e" + g[1].strip("+") + g[2], f"{value:g}")
    return str(value) if value != "" else '""'


def test_sweeps_doc_lists_every_parameter():
    text = (DOCS / "sweeps.md").read_text()
    block = text.split("`xbarsim.sweep.parameter_names()` lists every path:", 1)[1]
    listed = re.search(r"```\n(.*?)```", block, re.S).group(1).split()
    assert listed == P.parameter_names()


def test_cost_model_doc_names_every_circuit_card_number():
    text = (DOCS / "cost-model.md").read_text().split("## Circuit cards", 1)[1]
    text = text.split("## The model", 1)[0]
    for cls in (Timing, Energy, Area, Options):
        for f in declared(cls):
            assert f"`{f.name}`" in text or f".{f.name}`" in text, f"{cls.__name__}.{f.name}"


# -- (a) + (b) + (c): one rule, three readers --------------------------------------------------------
def _edges(f, card=DeviceCard()):
    """Values at and just past each numeric bound of ``f`` (bounds naming a field: its value)."""
    m = f.metadata
    out = []
    for bound in (m["lo"], m["hi"], *(m["gap"][:1] if m["gap"] else ())):
        if bound is None:
            continue
        b = getattr(card, bound) if isinstance(bound, str) else bound
        if m["kind"] is int:
            out += [b - 1, b, b + 1]
        else:
            out += [math.nextafter(b, -math.inf), float(b), math.nextafter(b, math.inf)]
    return sorted({v for v in out if math.isfinite(v)} | {0 if m["kind"] is int else 0.0})


NUMERIC = [f for f in declared(DeviceCard) if f.metadata["kind"] in (int, float)]


def _accepts(fn) -> bool:
    try:
        fn()
    except (XbarsimError, ValueError):
        return False
    return True


@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
def test_card_file_dataclass_and_sweep_share_each_bound(f):
    """At and just past each bound, a card file, the dataclass and a sweep point agree."""
    base = DeviceCard()
    for v in _edges(f):
        text = f"{f.name}: {v!r}\n"
        by_file = _accepts(lambda: card_text(text))
        by_class = _accepts(lambda: dataclasses.replace(base, **{f.name: v}))
        by_sweep = _accepts(lambda: P.resolve({f"device.{f.name}": P.normalize_value(
            f"device.{f.name}", v)}, base, 0))
        assert by_file == by_class == by_sweep, (f.name, v, by_file, by_class, by_sweep)


def test_every_field_of_the_option_dataclasses_is_declared():
    for cls in (DeviceCard, EngineOptions, IFCParams, Timing, Energy, Area, Options):
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == {f.name for f in declared(cls)}, cls.__name__
    assert {f.name for f in dataclasses.fields(CircuitCard)} - {f.name for f in
                                                                 declared(CircuitCard)} == {
        "sources", "file"}


def test_sweep_coercion_reads_the_declared_type():
    assert field_kind(EngineOptions.__dataclass_fields__["counter_bits"]) == (int, True)
    assert P.normalize_value("engine.counter_bits", 4.0) == 4
    assert type(P.normalize_value("engine.counter_bits", 4.0)) is int
    assert P.normalize_value("engine.counter_bits", None) is None
    with pytest.raises(P.ParamError, match=r"^engine.counter_bits: must be an integer \(got 'x'\)"):
        P.normalize_value("engine.counter_bits", "x")
    assert P.normalize_value("device.levels", 4.0) == 4
    assert P.normalize_value("device.r_on_ohm", 50000) == 50000.0
    assert "engine.seed" not in P.parameter_names()  # declared sweepable=False
    assert "device.file" not in P.parameter_names() and "device.source" not in P.parameter_names()


def test_dataclass_check_wording_from_the_declaration():
    with pytest.raises(XbarsimError, match=r"^v_read_v: must be > 0 and <= 10 \(got 0\)$"):
        DeviceCard(v_read_v=0)
    with pytest.raises(XbarsimError, match=r"^t_cycle_s: must be >= t_pulse_s = 1e-09 \(got 5e-10\)$"):
        DeviceCard(t_cycle_s=5e-10)
    with pytest.raises(XbarsimError, match=r"^levels: must be 0 or >= 2 \(got -1\)$"):
        DeviceCard(levels=-1)
    with pytest.raises(XbarsimError, match=r"^r_wire_col_ohm: must be 0 \(ideal wires\) or >= 1e-06"):
        DeviceCard(r_wire_col_ohm=1e-9)
    with pytest.raises(XbarsimError, match=r"^r_on_ohm: need 0 < r_on_ohm < r_off_ohm \(got -1, "):
        DeviceCard(r_on_ohm=-1)
    with pytest.raises(XbarsimError, match=r"^counter_bits: must be in 1..16 \(got 17\)$"):
        EngineOptions(counter_bits=17)
    with pytest.raises(XbarsimError, match=r"^drain_cycles: must be an integer in 0..65535 \(got 1.5\)$"):
        EngineOptions(drain_cycles=1.5)
    with pytest.raises(XbarsimError, match=r"^seed: must be in 0..9223372036854775807 \(got -1\)$"):
        EngineOptions(seed=-1)
    with pytest.raises(XbarsimError, match=r"^ifc.comparator_sigma_lsb: must be >= 0 \(got -1.0\)$"):
        IFCParams(comparator_sigma_lsb=-1.0)


def test_python_values_of_the_wrong_type_are_one_line_errors():
    """Built in Python (a notebook, an NIR file's description), a wrong type names its field."""
    with pytest.raises(XbarsimError, match=r"^r_off_ohm: must be a finite number \(got 'big'\)$"):
        DeviceCard(r_off_ohm="big")
    with pytest.raises(XbarsimError, match=r"^variation_rel: must be a finite number \(got True\)$"):
        DeviceCard(variation_rel=True)
    with pytest.raises(XbarsimError, match=r"^counter_bits: must be an integer \(got 4.0\)$"):
        EngineOptions(counter_bits=4.0)


def test_circuit_card_groups_check_their_declared_bounds():
    with pytest.raises(XbarsimError, match=r"^timing.cycle_s: must be > 0 \(got 0.0\)$"):
        Timing(cycle_s=0.0)
    with pytest.raises(XbarsimError, match=r"^energy.tile_static_w: must be <= 1000 \(got 2000.0\)$"):
        Energy(tile_static_w=2000.0)
    with pytest.raises(XbarsimError, match=r"^options.positions: must be one of paper, parallel"):
        Options(positions="diagonal")
    with pytest.raises(XbarsimError, match=r"^technology_nm: must be >= 1 \(got 0.5\)$"):
        CircuitCard(technology_nm=0.5)
    assert Timing(latch_cycles=0).latch_cycles == 0


def test_a_default_that_breaks_a_bound_is_blamed_on_the_written_key():
    with pytest.raises(ConfigError) as err:
        card_text("name: d\nt_pulse_s: 5.0e-9\n")
    assert str(err.value) == ("d.yaml:2: t_pulse_s: must be <= t_cycle_s = 2e-09 (the default; "
                              "write a t_cycle_s at least as long) (got 5e-09)")
    assert card_text("t_pulse_s: 5.0e-9\nt_cycle_s: 5.0e-9\n").t_cycle_s == 5e-9


# -- adding a field: one declaration, every reader follows -------------------------------------------
@dataclasses.dataclass(frozen=True)
class Toy:
    """A card with one field of each shape, as a new card field would be added."""

    gain_db: float = spec(0.0, unit="dB", lo=-20, hi=20, doc="amplifier gain")
    taps: int = spec(0, lo=0, hi=64, gap=(3, "no filter"), doc="filter taps")
    duty: float = spec(0.5, lo=0, hi=1, hi_open=True, say="interval", doc="duty cycle")
    mode: str = spec("fast", choices=("fast", "slow"), doc="speed grade")
    window_s: float = spec(1e-6, unit="s", lo="settle_s", hi=1.0, doc="window")
    settle_s: float = spec(1e-7, unit="s", lo=0, lo_open=True, hi=1.0, doc="settling time")

    def __post_init__(self):
        def bad(key, message, got):
            raise XbarsimError(f"{key}: {message} (got {got!r})")
        check_fields(self, bad)


def toy_file(text):
    return read_fields(Section(loads_yaml(text, "t.yaml"), "t.yaml"), Toy)


@pytest.mark.parametrize("text, message", [
    ("gain_db: 30", "t.yaml:1: gain_db: must be <= 20 (got 30.0)"),
    ("gain_db: loud", "t.yaml:1: gain_db: must be a number (got loud)"),
    ("taps: 2", "t.yaml:1: taps: must be 0 (no filter) or >= 3 (got 2)"),
    ("taps: 2.5", "t.yaml:1: taps: must be an integer (got 2.5)"),
    ("duty: 1", "t.yaml:1: duty: must be < 1 (got 1.0)"),
    ("mode: fats", "t.yaml:1: mode: must be one of fast, slow; did you mean 'fast'? (got fats)"),
    ("gian_db: 1", "t.yaml:1: gian_db: unknown key; did you mean 'gain_db'?"),
    ("settle_s: 0.5\nwindow_s: 0.1", "t.yaml:2: window_s: must be >= 0.5 (got 0.1)"),
    ("settle_s: 0.5", "t.yaml:1: settle_s: must be <= window_s = 1e-06 (the default; write a "
                      "window_s at least as long) (got 0.5)"),
])
def test_a_new_field_is_read_from_yaml_by_its_declaration(text, message):
    with pytest.raises(ConfigError) as err:
        toy_file(text + "\n")
    assert str(err.value) == message


@pytest.mark.parametrize("changes, message", [
    ({"gain_db": -21}, "gain_db: must be >= -20 (got -21)"),
    ({"taps": 1}, "taps: must be 0 (no filter) or >= 3 (got 1)"),
    ({"duty": 1.0}, "duty: must be in [0, 1) (got 1.0)"),
    ({"mode": "turbo"}, "mode: must be one of fast, slow (got 'turbo')"),
    ({"window_s": 1e-8}, "window_s: must be >= settle_s = 1e-07 (got 1e-08)"),
    ({"gain_db": math.inf}, "gain_db: must be a finite number (got inf)"),
])
def test_a_new_field_is_checked_by_its_declaration(changes, message):
    with pytest.raises(XbarsimError) as err:
        Toy(**changes)
    assert str(err.value) == message


def test_a_new_field_gets_its_docs_row_and_sweep_type():
    assert toy_file("gain_db: 3\ntaps: 0\n") == {"gain_db": 3.0, "taps": 0, "duty": 0.5,
                                                 "mode": "fast", "window_s": 1e-6,
                                                 "settle_s": 1e-7}
    table = field_table(Toy).splitlines()
    assert table[2] == "| `gain_db` | number | `0` | `-20 … 20` dB, amplifier gain |"
    assert table[3] == "| `taps` | integer | `0` | `0` (no filter) or `3 … 64`, filter taps |"
    assert table[4] == "| `duty` | number | `0.5` | `[0, 1)`, duty cycle |"
    assert table[5] == "| `mode` | string | `fast` | `fast` or `slow`: speed grade |"
    assert table[6] == "| `window_s` | number | `1e-6` | `settle_s … 1` s, window |"
    assert field_kind(Toy.__dataclass_fields__["taps"]) == (int, False)
