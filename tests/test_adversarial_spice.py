"""Adversarial netlists (issue 26, part 2): a name from a network file never runs in ngspice.

A network or layer ``name:`` (from a YAML, or from a NIR file through ``xbarsim import``) used to
be written into the netlist's title line, so a name holding ``"\\n.control\\nshell …\\n.endc"``
ran a program under ``xbarsim spice … --run`` and travelled in a netlist written with ``--out``.
These tests send such names through the command (the netlist written, printed and run), check the
netlist checker directly with hostile netlist text (each refusal its exact line), and check how
ngspice is started (batch mode, no init files, a private folder removed afterwards, a timeout).
Tests marked ``spice`` run ngspice (skipped when it is not installed); a positive control in each
shows the payload does run when the guards are bypassed, so a pass means the guard held.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xbarsim import DeviceCard
from xbarsim.cli import main
from xbarsim.spice import column_netlist, tile_netlist
from xbarsim.spice import ngspice as ngspice_mod
from xbarsim.spice.ngspice import NgspiceError, run_ngspice
from xbarsim.spice.safety import (NAME_LIMIT, UnsafeNetlistError, check_netlist, safe_identifier,
                                  safe_title)

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None,
                                   reason="ngspice is not installed (apt-get install ngspice)")


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(capsys, *argv) -> str:
    """Run the CLI, check exit 2 / no stdout / exactly one stderr line; return that line."""
    rc, out, err = cli(capsys, *argv)
    assert (rc, out) == (2, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


def payload(marker: Path, include=True) -> str:
    """Netlist lines that run ``touch`` two ways, a control block and a ``*#`` comment (ngspice
    runs it as a command, lower-cased), and (``include``) read a file outside the netlist."""
    assert str(marker) == str(marker).lower(), marker  # ngspice lower-cases '*#' lines
    return (f"\n.control\nshell touch {marker}\n.endc\n*# shell touch {marker}_star\n"
            + (".include /etc/passwd\n" if include else "") + "*")


NET = """name: {name}
dataset: synthetic
input: {{shape: [1, 4, 4]}}
bits: {{signal: 4, weight: 4}}
weights: random
seed: 0
layers:
  - {{name: {layer}, type: fc, out_features: 3}}
"""


def yaml_str(text: str) -> str:
    """``text`` as a YAML double-quoted scalar (``\\n`` escapes, as a hand-edited file has it)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def hostile_net(tmp_path, marker_dir: Path, include=True):
    """A network YAML whose ``name:`` and layer ``name:`` both carry :func:`payload`; returns
    (path, layer name, the markers the payload would create)."""
    net_name = "evil" + payload(marker_dir / "net_marker", include)
    layer = "fc1" + payload(marker_dir / "layer_marker", include)
    path = tmp_path / "evil.yaml"
    path.write_text(NET.format(name=yaml_str(net_name), layer=yaml_str(layer)))
    markers = [marker_dir / m for m in ("net_marker", "net_marker_star", "layer_marker",
                                        "layer_marker_star")]
    return path, layer, markers


def clean_net(tmp_path):
    path = tmp_path / "clean.yaml"
    path.write_text(NET.format(name="clean", layer="fc1"))
    return path


def assert_no_payload(text: str, clean: str):
    """``text`` is the clean network's netlist but for its (sanitised) title line."""
    lines = text.splitlines()
    assert lines[1:] == clean.splitlines()[1:]
    assert lines[0].startswith("* xbarsim evil_control_shell_touch_") and "\r" not in lines[0]
    assert check_netlist(text) == text
    assert sum(ln == ".control" for ln in lines) == 1
    assert not any(ln.lstrip().lower().startswith(("shell", "*#", ".include")) for ln in lines)


# ------------------------------------------------------------------------------------------------
# the command: hostile names are written, printed and run as data
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("what", [[], ["--column", "1"]], ids=["tile", "column"])
def test_hostile_names_never_leave_the_title_comment_of_a_written_netlist(tmp_path, capsys,
                                                                          what):
    path, layer, markers = hostile_net(tmp_path, tmp_path)
    assert main(["spice", str(clean_net(tmp_path)), "--layer", "fc1", *what,
                 "--out", str(tmp_path / "clean.cir")]) == 0
    capsys.readouterr()
    assert main(["spice", str(path), "--layer", layer, *what,
                 "--out", str(tmp_path / "net.cir")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'net.cir'}\n"
    assert_no_payload((tmp_path / "net.cir").read_text(), (tmp_path / "clean.cir").read_text())
    # the netlist printed to stdout (no --out) is the same text
    assert main(["spice", str(path), "--layer", layer, *what]) == 0
    assert capsys.readouterr().out == (tmp_path / "net.cir").read_text()
    assert not any(m.exists() for m in markers)


@pytest.mark.spice
@needs_ngspice
@pytest.mark.parametrize("what", [[], ["--column", "1"]], ids=["tile", "column"])
def test_hostile_names_do_not_run_under_spice_run(tmp_path, capsys, what):
    # without the .include, on which ngspice would give up before running the payload
    path, layer, markers = hostile_net(tmp_path, tmp_path, include=False)
    rc, out, err = cli(capsys, "spice", path, "--layer", layer, *what, "--run")
    assert (rc, err) == (0, ""), err
    assert "ngspice" in out  # the comparison table: ngspice ran the netlist
    assert not any(m.exists() for m in markers)
    assert sorted(os.listdir(tmp_path)) == ["evil.yaml"]


@pytest.mark.spice
@needs_ngspice
def test_the_payload_runs_when_the_guards_are_bypassed(tmp_path):
    """Positive control: the old title line (the name as written) runs every ``touch`` of the
    payload under ``ngspice -b``; through :func:`run_ngspice` the same text is refused and
    nothing runs."""
    marker = tmp_path / "control_marker"
    text = tile_netlist(np.full((2, 2), 1e-5), 0, 0, 0, [0.2, 0.0])
    # (without the .include, which makes ngspice give up on the deck before running anything)
    raw = "* xbarsim " + "evil" + payload(marker, include=False) + "\n" + text.split("\n", 1)[1]
    with pytest.raises(UnsafeNetlistError):
        run_ngspice(raw)
    assert not marker.exists()
    (tmp_path / "raw.cir").write_text(raw)
    subprocess.run(["ngspice", "-n", "-b", "raw.cir"], cwd=tmp_path, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=120)
    assert marker.exists() and Path(f"{marker}_star").exists()


@pytest.mark.nir
def test_hostile_network_name_from_a_nir_file_stays_data(tmp_path, capsys):
    """A NIR file whose xbarsim metadata names the network with the payload: ``xbarsim import``
    either refuses it (one line) or the name reaches the YAML, and then the netlist holds it
    only as a safe identifier."""
    pytest.importorskip("nir")
    h5py = pytest.importorskip("h5py")
    import json

    nir_path = tmp_path / "net.nir"
    assert main(["export", str(clean_net(tmp_path)), "--nir", str(nir_path)]) == 0
    with h5py.File(nir_path, "r+") as f:
        key = "node/metadata/xbarsim.network"
        desc = json.loads(f[key][()])
        desc["name"] = "evil" + payload(tmp_path / "nir_marker")
        del f[key]
        f[key] = json.dumps(desc)
    capsys.readouterr()
    rc, out, err = cli(capsys, "import", nir_path, "--out", tmp_path / "imp.yaml")
    if rc == 2:  # the importer refuses such a name: also no netlist can carry it
        assert out == "" and err.count("\n") == 1, err
        return
    assert rc == 0, err
    assert main(["spice", str(tmp_path / "imp.yaml"), "--layer", "fc1",
                 "--out", str(tmp_path / "imp.cir")]) == 0
    text = (tmp_path / "imp.cir").read_text()
    assert text.splitlines()[0].startswith("* xbarsim evil_control_shell_touch_")
    assert check_netlist(text) == text and text.count("\n.control\n") == 1
    assert "\nshell" not in text and "\n*#" not in text and ".include" not in text


def test_a_netlist_the_checker_refuses_is_neither_written_nor_run(tmp_path, capsys, monkeypatch):
    """With the sanitiser bypassed (as a future bug would), the check before --out still stops
    the netlist: one line, exit 2, no file."""
    import xbarsim.spice
    import xbarsim.spice.netlist

    monkeypatch.setattr(xbarsim.spice, "safe_identifier", lambda text: text)
    monkeypatch.setattr(xbarsim.spice.netlist, "safe_title", lambda text: text)
    net = tmp_path / "evil.yaml"
    net.write_text(NET.format(name=yaml_str("evil\n.control\nshell touch pwned\n.endc\n*"),
                              layer="fc1"))
    line = one_line(capsys, "spice", net, "--layer", "fc1", "--out", tmp_path / "net.cir")
    assert line == ("xbarsim: error: internal error: refusing to run or write a netlist whose "
                    "line 3 is not a command of xbarsim's control block (got 'shell touch pwned')")
    assert sorted(os.listdir(tmp_path)) == ["evil.yaml"]
    line = one_line(capsys, "spice", net, "--layer", "fc1", "--run")
    assert line.startswith("xbarsim: error: internal error: refusing to run or write")


# ------------------------------------------------------------------------------------------------
# the sanitiser
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, safe", [
    ("fc1", "fc1"),
    ("conv_2b", "conv_2b"),
    ("a\n.control\nshell rm -rf ~\n.endc", "a_control_shell_rm_rf_endc"),
    ("*# shell x", "_shell_x"),
    ("x\r\n.include /etc/passwd", "x_include_etc_passwd"),
    ("naïve ; $HOME `id` \"q\" {p}", "na_ve_HOME_id_q_p_"),
    ("١٢٣", "_"),  # non-ASCII digits
    ("", "_"),
    ("x" * 1000, "x" * NAME_LIMIT),
    (12, "12"),
])
def test_safe_identifier_keeps_letters_digits_underscore_within_the_limit(text, safe):
    assert safe_identifier(text) == safe


def test_netlist_titles_are_one_bounded_line_of_safe_words():
    hostile = "net\n.control\nshell touch x\n.endc\n" + "y" * 10_000
    assert safe_title(hostile) == "net _control shell touch x _endc " + "y" * NAME_LIMIT
    spk = np.zeros((4, 3), np.uint8)
    for text in (tile_netlist(np.full((2, 2), 1e-5), 0, 0, 0, [0.2, 0.0], title=hostile),
                 column_netlist([dict(g_pos=[2e-6], g_neg=[1e-6], x=[3], q0=1.5, theta=4,
                                      g_unit=1e-7)], spk, DeviceCard(), 3, title=hostile)):
        first = text.split("\n", 1)[0]
        assert first.startswith("* xbarsim net _control shell touch x _endc yyy")
        assert len(first) < 400
        assert check_netlist(text) == text


# ------------------------------------------------------------------------------------------------
# the checker, directly
# ------------------------------------------------------------------------------------------------
TINY = tile_netlist(np.full((1, 1), 1e-5), 0, 0, 0, [0.2])
#  1 * xbarsim tile: ...   2 Vd0 ...   3 Rx0_0 ...   4 Ve0 ...   5 .control   6 set numdgt=15
#  7 op   8 print i(ve0)   9 .endc   10 .end


def _insert(at, *new):
    lines = TINY.splitlines()
    return "\n".join(lines[:at] + list(new) + lines[at:]) + "\n"


def _why(n, why, got):
    return (f"internal error: refusing to run or write a netlist whose line {n} {why} "
            f"(got {got!r})")


CTRL = "is not a command of xbarsim's control block"
DOT = "is not a dot-command xbarsim writes"
CARD = "is not an element card xbarsim writes"
COMMENT = "is a comment after the title (ngspice runs a '*#' line as a command)"


@pytest.mark.parametrize("text, message", [
    # a control block of its own, before ours or after it
    (_insert(1, ".control", "shell touch /tmp/x", ".endc"), _why(3, CTRL, "shell touch /tmp/x")),
    (_insert(1, ".control", "run", ".endc"), _why(8, "opens a second control block", ".control")),
    # a command slipped into ours
    (_insert(7, "shell touch /tmp/x"), _why(8, CTRL, "shell touch /tmp/x")),
    (_insert(7, "source /tmp/evil.cir"), _why(8, CTRL, "source /tmp/evil.cir")),
    (_insert(7, "print i(ve0) ; shell id"), _why(8, CTRL, "print i(ve0) ; shell id")),
    (_insert(7, "*# shell id"), _why(8, CTRL, "*# shell id")),
    # dot-commands xbarsim never writes, in any spelling
    (_insert(1, ".include /etc/passwd"), _why(2, DOT, ".include /etc/passwd")),
    (_insert(1, ".lib /home/u/models.lib tt"), _why(2, DOT, ".lib /home/u/models.lib tt")),
    (_insert(1, ".inc evil.sp"), _why(2, DOT, ".inc evil.sp")),
    (_insert(1, ".CONTROL"), _why(2, DOT, ".CONTROL")),
    (_insert(1, ".exec"), _why(2, DOT, ".exec")),
    (_insert(1, ".param p={1}"), _why(2, DOT, ".param p={1}")),
    (_insert(1, ".options method=gear reltol=1 abstol=1 vntol=1 chgtol=1 ; x"),
     _why(2, DOT, ".options method=gear reltol=1 abstol=1 vntol=1 chgtol=1 ; x")),
    # comment lines: ngspice runs '*#' lines as commands
    (_insert(1, "*# shell touch /tmp/x"), _why(2, COMMENT, "*# shell touch /tmp/x")),
    (_insert(1, "* harmless?"), _why(2, COMMENT, "* harmless?")),
    # lines that only look like ours
    (_insert(1, " .control"), _why(2, CARD, " .control")),
    (_insert(1, "+ .control"), _why(2, CARD, "+ .control")),
    (_insert(1, "R1 a 0 1\r"), _why(2, CARD, "R1 a 0 1\r")),
    (_insert(1, "R1 a 0 1\x00"), _why(2, CARD, "R1 a 0 1\x00")),
    (_insert(1, "R1 a 0 \u0661"), _why(2, CARD, "R1 a 0 \u0661")),
    (_insert(1, "R1 a 0 1 ; x"), _why(2, CARD, "R1 a 0 1 ; x")),
    (_insert(1, "X1 a b evil"), _why(2, CARD, "X1 a b evil")),
    (_insert(1, "A1 a b filesrc"), _why(2, CARD, "A1 a b filesrc")),
    (_insert(1, "V9 a 0 PWL file=/etc/passwd"), _why(2, CARD, "V9 a 0 PWL file=/etc/passwd")),
    (_insert(1, "B1 a 0 V = 1"), _why(2, CARD, "B1 a 0 V = 1")),
    (_insert(1, "B1 a 0 I = exp(V(a))"),
     _why(2, "holds a behavioural expression xbarsim does not write", "B1 a 0 I = exp(V(a))")),
    # the frame: title, end, an open block, text after the end
    ("*ng_script\n" + TINY.split("\n", 1)[1], _why(1, "is not xbarsim's title comment",
                                                   "*ng_script")),
    ("*# shell id\n" + TINY.split("\n", 1)[1], _why(1, "is not xbarsim's title comment",
                                                    "*# shell id")),
    (TINY.replace(".endc\n", ""), _why(5, "opens a control block that is never closed",
                                       ".control")),
    (TINY + ".control\nshell id\n.endc\n", _why(13, "is not the final .end", ".endc")),
    (TINY[:-1], "internal error: refusing a netlist that does not end with a newline"),
])
def test_checker_refuses_every_line_xbarsim_does_not_write(text, message):
    with pytest.raises(UnsafeNetlistError) as exc:
        check_netlist(text)
    assert str(exc.value) == message


def test_checker_refusal_stops_run_ngspice_before_ngspice_starts(monkeypatch):
    def no_run(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("ngspice started")

    monkeypatch.setattr(ngspice_mod.subprocess, "run", no_run)
    with pytest.raises(UnsafeNetlistError):
        run_ngspice(_insert(7, "shell touch /tmp/x"))


def _devices():
    yield DeviceCard()
    yield DeviceCard(r_driver_ohm=1000.0)
    yield DeviceCard(ifc_front_end="opamp", opamp_gain=100.0, r_driver_ohm=1000.0)
    yield DeviceCard(ifc_front_end="capacitor", c_ifc_f=20e-12)


@pytest.mark.parametrize("device", list(_devices()), ids=["ideal", "rd", "opamp-rd", "cap"])
def test_checker_accepts_every_netlist_the_writers_emit(device):
    """No false alarm: every element, dot-command and control line the writers can emit (wires,
    floating rows, front ends, bias currents, groups sharing drivers) passes."""
    rng = np.random.default_rng(0)
    g = rng.uniform(1e-6, 2e-5, (4, 3))
    for rr, rc, rd, driven in ((0, 0, 0, None), (2.5, 0, 0, None), (0, 2.5, 50.0, None),
                               (10.0, 10.0, 1000.0, [True, False, True, False])):
        text = tile_netlist(g, rr, rc, rd, [0.2, 0, 0.2, 0.2], driven=driven,
                            v_end=rng.uniform(-1e-3, 1e-3, 3), title="lenet conv1 tile 0_0")
        assert check_netlist(text) == text
    spk = np.zeros((8, 5), np.uint8)
    spk[3, :3] = spk[7, :] = 1
    base = dict(g_pos=[2e-6, 3e-6, 1e-6], g_neg=[1e-6, 1e-6, 4e-6], x=[3, 0, 7], q0=1.5,
                theta=4, g_unit=1e-7, load_pos=[1e-6, 0, 2e-6], load_neg=[0, 1e-6, 1e-6])
    for cases in ([base], [dict(base, bias=np.array([1.0, 0, -2.0, 0, 0.5]))],
                  [dict(base, group=0), dict(base, group=0, q0=0.0)]):
        text = column_netlist(cases, spk, device, 5, title="net fc1 column 0")
        assert check_netlist(text) == text


# ------------------------------------------------------------------------------------------------
# how ngspice is started
# ------------------------------------------------------------------------------------------------
def test_ngspice_runs_in_batch_without_init_files_in_a_private_folder(monkeypatch):
    seen = {}

    def fake_run(argv, **kw):
        cwd = Path(kw["cwd"])
        seen.update(kw, argv=argv, cwd=cwd, mode=stat.S_IMODE(cwd.stat().st_mode),
                    files=sorted(os.listdir(cwd)), netlist=(cwd / "circuit.cir").read_text())
        return subprocess.CompletedProcess(argv, 1, stdout="i(ve0) = 1.5e-06\n", stderr="")

    monkeypatch.setattr(ngspice_mod.shutil, "which", lambda name: "/opt/ng/bin/ngspice")
    monkeypatch.setattr(ngspice_mod.subprocess, "run", fake_run)
    monkeypatch.setenv("HOME", "/home/someone")
    assert run_ngspice(TINY, timeout_s=7.0) == {"i(ve0)": 1.5e-06}
    assert seen["argv"] == ["/opt/ng/bin/ngspice", "-n", "-b", "circuit.cir"]
    assert seen["cwd"] != Path.cwd() and seen["cwd"].name.startswith("xbarsim-spice-")
    assert seen["mode"] == 0o700 and seen["files"] == ["circuit.cir"] and seen["netlist"] == TINY
    assert seen["env"]["HOME"] == str(seen["cwd"])
    assert seen["stdin"] is subprocess.DEVNULL and seen["timeout"] == 7.0
    assert not seen["cwd"].exists()  # removed afterwards


def test_ngspice_timeout_is_one_line_and_the_folder_is_removed(monkeypatch):
    seen = {}

    def slow(argv, **kw):
        seen["cwd"] = Path(kw["cwd"])
        raise subprocess.TimeoutExpired(argv, kw["timeout"])

    monkeypatch.setattr(ngspice_mod.shutil, "which", lambda name: "/usr/bin/ngspice")
    monkeypatch.setattr(ngspice_mod.subprocess, "run", slow)
    with pytest.raises(NgspiceError) as exc:
        run_ngspice(TINY, timeout_s=5)
    assert str(exc.value) == "ngspice did not finish within 5 s"
    assert not seen["cwd"].exists()


@pytest.mark.spice
@needs_ngspice
def test_a_hostile_spiceinit_in_the_working_or_home_folder_is_not_read(tmp_path, monkeypatch):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (work / ".spiceinit").write_text(f"shell touch {tmp_path / 'cwd_marker'}\n")
    (home / ".spiceinit").write_text(f"shell touch {tmp_path / 'home_marker'}\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    out = run_ngspice(tile_netlist(np.full((2, 2), 1e-5), 0, 0, 0, [0.2, 0.0]))
    assert out["i(ve0)"] == pytest.approx(-2e-6) or out["i(ve0)"] == pytest.approx(2e-6)
    assert sorted(os.listdir(tmp_path)) == ["home", "work"]
    # positive control: a plain `ngspice -b` here reads them (working folder first, then HOME)
    (work / "t.cir").write_text(TINY)
    subprocess.run(["ngspice", "-b", "t.cir"], capture_output=True, stdin=subprocess.DEVNULL,
                   timeout=120, env={**os.environ, "HOME": str(home)})
    assert (tmp_path / "cwd_marker").exists()
    os.remove(work / ".spiceinit")
    subprocess.run(["ngspice", "-b", "t.cir"], capture_output=True, stdin=subprocess.DEVNULL,
                   timeout=120, env={**os.environ, "HOME": str(home)})
    assert (tmp_path / "home_marker").exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
