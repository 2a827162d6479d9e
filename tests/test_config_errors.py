"""The malformed-input corpus: every bad network YAML, device card and weights file gives exactly one
line ``file:line: key: what is wrong (got X)`` on stderr, nothing on stdout, exit status 2.

YAML cases are files under ``tests/errors/`` (device cards under ``tests/errors/devices/``); each
starts with a comment saying what is wrong with it. Weights cases are ``.npz`` files written by the
tests. Expected lines use ``{f}`` for the network file as given on the command line and ``{d}`` for
the corpus folder (paths inside a YAML resolve relative to that YAML, and messages show them
resolved).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xbarsim.cli import main
from xbarsim.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ERR = Path(__file__).resolve().parent / "errors"

YAML_CASES = {
    # unknown keys, with "did you mean"
    "top_unknown_key": "{f}:3: datset: unknown key; did you mean 'dataset'?",
    "bits_unknown_key": "{f}:5: bits.wieght: unknown key; did you mean 'weight'?",
    "layer_unknown_key": "{f}:9: layers[0].strde: unknown key; did you mean 'stride'?",
    "layer_type_misspelt_key": "{f}:11: layers[2].tpye: unknown key; did you mean 'type'?",
    "layer_key_of_other_type": "{f}:10: layers[1].padding: maxpool layers do not take this key "
                               "(they take name, type, input, kernel, stride)",
    "device_unknown_key": "{d}/devices/unknown_key.yaml:5: r_of_ohm: unknown key; "
                          "did you mean 'r_off_ohm'?",
    "device_inline_unknown_key": "{f}:8: device.r_of_ohm: unknown key; did you mean 'r_off_ohm'?",
    # duplicate keys
    "duplicate_top_key": "{f}:14: name: duplicate key (first given on line 2)",
    "duplicate_layer_key": "{f}:13: layers[0].out_channels: duplicate key (first given on line 11)",
    "device_duplicate_key": "{d}/devices/duplicate_key.yaml:9: levels: duplicate key "
                            "(first given on line 6)",
    # wrong types
    "string_for_int": "{f}:5: bits.signal: must be an integer (got four)",
    "quoted_number_for_int": "{f}:9: layers[0].stride: must be an integer (got '2')",
    "list_for_mapping": "{f}:5: bits: must be a mapping (got [4, 4])",
    "bool_for_int": "{f}:9: layers[0].kernel: must be an integer (got true)",
    "float_for_int": "{f}:12: layers[3].out_features: must be an integer (got 10.5)",
    "null_for_int": "{f}:10: layers[1].kernel: must be an integer (got null)",
    "layers_not_list": "{f}:8: layers: must be a list (got {{conv1: {{type: conv}}}})",
    "layer_not_mapping": "{f}:11: layers[2]: must be a mapping (got flatten)",
    "weights_not_a_path": "{f}:7: weights: must be a .npz file path or 'random' (got 7)",
    "device_string_resistance": "{d}/devices/string_resistance.yaml:5: r_off_ohm: must be a number "
                                "(got one megaohm)",
    # out-of-range values
    "crossbar_size_zero": "{f}:6: crossbar.size: must be >= 1 (got 0)",
    "signal_bits_zero": "{f}:5: bits.signal: must be >= 1 (got 0)",
    "signal_bits_17": "{f}:5: bits.signal: must be <= 16 (got 17)",
    "weight_bits_one": "{f}:5: bits.weight: must be >= 2 (got 1)",
    "weight_bits_17": "{f}:5: bits.weight: must be <= 16 (got 17)",
    "negative_padding": "{f}:9: layers[0].padding: must be >= 0 (got -1)",
    "stride_zero": "{f}:9: layers[0].stride: must be >= 1 (got 0)",
    "input_shape_two_dims": "{f}:4: input.shape: must be [channels, height, width], positive "
                            "integers (got [12, 12])",
    "dataset_misspelt": "{f}:3: dataset: must be one of mnist, cifar10, synthetic; "
                        "did you mean 'mnist'? (got mnsit)",
    "bias_mode_unknown": "{f}:6: crossbar.bias: must be one of membrane, current, row; did you mean 'row'? "
                         "(got rows)",
    "device_r_on_ge_r_off": "{d}/devices/r_on_ge_r_off.yaml:4: r_on_ohm: must be smaller than "
                            "r_off_ohm = 1e+06 (got 2000000.0)",
    "device_r_on_negative": "{d}/devices/r_on_negative.yaml:4: r_on_ohm: must be > 0 (got -50000.0)",
    "device_levels_one": "{d}/devices/levels_one.yaml:6: levels: must be 0 (as many as the weights "
                         "need) or >= 2 (got 1)",
    "device_pair_unknown": "{d}/devices/pair_unknown.yaml:8: pair: must be one of differential; "
                           "did you mean 'differential'? (got diferential)",
    # shapes that do not work
    "kernel_larger_than_input": "{f}:9: layers[0].kernel: larger than the 1x12x12 input (got 13)",
    "kernel_larger_with_padding": "{f}:9: layers[0].kernel: larger than the 1x12x12 input with "
                                  "padding 1 (got 15)",
    "pool_larger_than_input": "{f}:10: layers[1].kernel: larger than the 4x10x10 input (got 11)",
    "in_channels_wrong": "{f}:9: layers[0].in_channels: does not match the 1 channels coming in "
                         "from input (got 3)",
    "in_features_wrong": "{f}:12: layers[3].in_features: does not match the 100 features coming in "
                         "from flat (got 64)",
    "in_features_wrong_featuremap": "{f}:11: layers[2].in_features: does not match the 4x5x5 = 100 "
                                    "features coming in from pool1 (got 400)",
    "add_shapes_differ": "{f}:11: layers[2].inputs: shapes differ: conv1 is 4x10x10, pool1 is "
                         "4x5x5 (got [conv1, pool1])",
    "add_three_inputs": "{f}:11: layers[2].inputs: must list exactly two earlier layer names "
                        "(got [pool1, pool1, pool1])",
    "conv_after_flatten": "{f}:12: layers[3].type: needs a CxHxW feature map but its input is a "
                          "vector of 100 (got conv)",
    # layer graph
    "unknown_layer_type": "{f}:10: layers[1].type: must be one of conv, fc, maxpool, avgpool, "
                          "flatten, add; did you mean 'maxpool'? (got maxpol)",
    "missing_layer_reference": "{f}:11: layers[2].input: no earlier layer has this name; "
                               "did you mean 'pool1'? (got pool2)",
    "forward_layer_reference": "{f}:10: layers[1].input: no earlier layer has this name (got flat)",
    "add_missing_input": "{f}:11: layers[2].inputs: no earlier layer has this name; "
                         "did you mean 'pool1'? (got pool2)",
    "duplicate_layer_name": "{f}:10: layers[1].name: duplicate layer name (first used on line 9) "
                            "(got conv1)",
    "reserved_layer_name": "{f}:11: layers[2].name: 'input' is reserved for the network input "
                           "(got input)",
    "last_layer_not_compute": "{f}:10: layers[1].type: the last layer must be conv or fc (its "
                              "counts are the class scores) (got maxpool)",
    "empty_layers": "{f}:8: layers: must list at least one layer (got [])",
    # missing keys
    "missing_top_key": "{f}:2: bits: required key is missing",
    "missing_layers": "{f}:2: layers: required key is missing",
    "missing_signal_bits": "{f}:5: bits.signal: required key is missing",
    "missing_out_channels": "{f}:9: layers[0].out_channels: required key is missing",
    "missing_type": "{f}:11: layers[2].type: required key is missing",
    # missing files (resolved relative to the YAML, not the working directory)
    "missing_device_file": "{f}:8: device: file not found: {d}/no-such-card.yaml "
                           "(got no-such-card.yaml)",
    "missing_weights_file": "{f}:7: weights: file not found: {d}/no-such-weights.npz "
                            "(got no-such-weights.npz)",
    # not YAML, or not a mapping
    "yaml_unclosed_bracket": "{f}:4: invalid YAML: expected ',' or ']', but got '}}'",
    "yaml_tab_indent": "{f}:11: invalid YAML: found character '\\t' that cannot start any token",
    "yaml_bad_indent": "{f}:11: invalid YAML: expected <block end>, but found "
                       "'<block mapping start>' (while parsing a block collection that started "
                       "on line 9)",
    "empty_file": "{f}:1: top level must be a mapping of keys to values (got empty file)",
    "comment_only": "{f}:1: top level must be a mapping of keys to values (got empty file)",
    "top_level_list": "{f}:1: top level must be a mapping of keys to values (got a list)",
    "device_empty": "{d}/devices/empty.yaml:1: top level must be a mapping of keys to values "
                    "(got empty file)",
}


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_corpus_is_complete():
    """Every file in tests/errors/ has an expected line, and every expected line has its file."""
    files = {p.stem for p in ERR.glob("*.yaml")}
    assert files == set(YAML_CASES)
    assert len(YAML_CASES) >= 35


@pytest.mark.parametrize("stem", sorted(YAML_CASES))
def test_yaml_corpus(stem, capsys):
    path = ERR / f"{stem}.yaml"
    rc, out, err = run_cli(capsys, "map", str(path))
    assert (rc, out) == (2, "")
    assert err == YAML_CASES[stem].format(f=path, d=ERR) + "\n"


def test_corpus_from_another_directory_with_relative_path(tmp_path, capsys, monkeypatch):
    """The file name in the message is the one given; paths inside resolve against the YAML."""
    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(ERR / "missing_weights_file.yaml", tmp_path)
    rc, out, err = run_cli(capsys, "map", rel)
    assert (rc, out) == (2, "")
    assert err == (f"{rel}:7: weights: file not found: {ERR}/no-such-weights.npz "
                   f"(got no-such-weights.npz)\n")
    rel_dev = os.path.relpath(ERR / "device_r_on_ge_r_off.yaml", tmp_path)
    rc, out, err = run_cli(capsys, "map", rel_dev)
    assert rc == 2
    assert err.startswith(f"{ERR}/devices/r_on_ge_r_off.yaml:4: r_on_ohm: ")


def test_relative_paths_resolve_against_the_yaml(tmp_path, capsys, monkeypatch):
    """A network in a sub-folder names its weights and device card relative to itself; it loads
    from any working directory, and a file beside the working directory is not picked up."""
    sub = tmp_path / "project" / "nets"
    sub.mkdir(parents=True)
    (tmp_path / "project" / "cards").mkdir()
    (tmp_path / "project" / "cards" / "dev.yaml").write_text(
        "name: d\nsource: test\nr_on_ohm: 1.0e4\nr_off_ohm: 1.0e5\n")
    (sub / "net.yaml").write_text(WNET.replace("weights: w.npz",
                                               "weights: w.npz\ndevice: ../cards/dev.yaml"))
    np.savez(sub / "w.npz", **good_weights())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.savez(elsewhere / "w.npz", **{"conv1.levels": np.zeros((1, 1, 1, 1))})  # decoy
    monkeypatch.chdir(elsewhere)
    rc, out, err = run_cli(capsys, "map", "../project/nets/net.yaml")
    assert (rc, err) == (0, "")
    assert "conv1" in out and "fc1" in out
    from xbarsim import load_network
    net = load_network("../project/nets/net.yaml")
    assert net.spec.device.r_on_ohm == 1.0e4 and net.spec.device.name == "d"
    assert net.spec.weights == (sub / "w.npz").resolve()


# -- weights files --------------------------------------------------------------------------------

WNET = """name: wnet
dataset: synthetic
input: {shape: [1, 6, 6]}
bits: {signal: 4, weight: 4}
weights: w.npz
layers:
  - {name: conv1, type: conv, out_channels: 2, kernel: 3}
  - {name: fc1, type: fc, out_features: 3}
"""  # conv1: 1x6x6 -> 2x4x4 (line 7); fc1: 32 -> 3 (line 8)


def good_weights() -> dict:
    return {
        "meta.format": np.array("xbarsim-weights-1"),
        "meta.signal_bits": np.array(4), "meta.weight_bits": np.array(4),
        "conv1.levels": np.arange(18, dtype=np.int32).reshape(2, 1, 3, 3) % 15 - 7,
        "conv1.bias": np.array([1, -1], np.int64), "conv1.theta": np.array(5),
        "fc1.levels": np.ones((3, 32), np.int32), "fc1.theta": np.array(8),
    }


def _with(**changes):
    def make():
        arrays = good_weights()
        for key, value in changes.items():
            key = key.replace("__", ".")
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value
        return arrays
    return make


def _float_conv(value):
    def make():
        arrays = good_weights()
        for k in ("conv1.levels", "conv1.bias", "conv1.theta"):
            arrays.pop(k)
        w = np.full((2, 1, 3, 3), 0.25)
        w[1, 0, 2, 1] = value
        arrays["conv1.weight"] = w
        return arrays
    return make


_NUMERIC_LEVELS = np.ones((2, 1, 3, 3))
_NUMERIC_LEVELS[0, 0, 1, 2] = 0.5

WEIGHT_CASES = {
    "wrong_shape": (_with(conv1__levels=np.ones((2, 1, 3, 2), np.int32)),
                    "{w}: conv1.levels: shape does not match layer conv1 ({f}:7), which needs "
                    "(2, 1, 3, 3) (got (2, 1, 3, 2))"),
    "fc_transposed": (_with(fc1__levels=np.ones((32, 3), np.int32)),
                      "{w}: fc1.levels: shape does not match layer fc1 ({f}:8), which needs "
                      "(3, 32) (got (32, 3))"),
    "bias_wrong_shape": (_with(conv1__bias=np.ones(3, np.int64)),
                         "{w}: conv1.bias: shape does not match layer conv1 ({f}:7), which needs "
                         "(2,) (got (3,))"),
    "nan_float_weight": (_float_conv(np.nan),
                         "{w}: conv1.weight: contains NaN or inf at index (1, 0, 2, 1) (got nan)"),
    "inf_float_weight": (_float_conv(-np.inf),
                         "{w}: conv1.weight: contains NaN or inf at index (1, 0, 2, 1) (got -inf)"),
    "inf_levels": (_with(fc1__levels=np.full((3, 32), np.inf)),
                   "{w}: fc1.levels: contains NaN or inf at index (0, 0) (got inf)"),
    "level_out_of_range": (_with(fc1__levels=np.where(np.arange(96).reshape(3, 32) == 40, -8, 1)),
                           "{w}: fc1.levels: level out of the 4-bit range [-7, 7] at index (1, 8) "
                           "(got -8)"),
    "non_integer_levels": (_with(conv1__levels=_NUMERIC_LEVELS),
                           "{w}: conv1.levels: must hold integers, but index (0, 0, 1, 2) does not "
                           "(got 0.5)"),
    "string_levels": (_with(conv1__levels=np.full((2, 1, 3, 3), "x")),
                      "{w}: conv1.levels: must be numeric (got dtype <U1)"),
    "missing_theta": (_with(fc1__theta=None),
                      "{w}: fc1.theta: missing: layer fc1 ({f}:8) needs its threshold theta"),
    "theta_zero": (_with(fc1__theta=np.array(0)), "{w}: fc1.theta: must be an integer >= 1 (got 0)"),
    "theta_fraction": (_with(fc1__theta=np.array(2.5)),
                       "{w}: fc1.theta: must be an integer >= 1 (got 2.5)"),
    "theta_not_scalar": (_with(conv1__theta=np.array([5, 5])),
                         "{w}: conv1.theta: must be a scalar (got shape (2,))"),
    "missing_layer": (_with(fc1__levels=None, fc1__theta=None),
                      "{w}: fc1.levels: missing: layer fc1 ({f}:8) needs integer levels "
                      "(fc1.levels) or float weights (fc1.weight)"),
    "unknown_layer": (_with(conv2__levels=np.ones((2, 1, 3, 3), np.int32)),
                      "{w}: conv2.levels: no conv/fc layer 'conv2' in the network (it has conv1, "
                      "fc1); did you mean 'conv1'?"),
    "unknown_field": (_with(conv1__lvls=np.ones((2, 1, 3, 3), np.int32)),
                      "{w}: conv1.lvls: unknown field 'lvls' (expected levels, bias, theta, step or "
                      "weight, bias_float, act_scale)"),
    "meta_weight_bits": (_with(meta__weight_bits=np.array(8)),
                         "{w}: meta.weight_bits: file was made for 8 bits but the network says 4 "
                         "(got 8)"),
    "meta_signal_bits": (_with(meta__signal_bits=np.array(3)),
                         "{w}: meta.signal_bits: file was made for 3 bits but the network says 4 "
                         "(got 3)"),
    "meta_format": (_with(meta__format=np.array("xbarsim-weights-9")),
                    "{w}: meta.format: unsupported format, expected xbarsim-weights-1 "
                    "(got xbarsim-weights-9)"),
    "negative_act_scale": (_with(input__act_scale=np.array(-1.0)),
                           "{w}: input.act_scale: must be a positive finite number (got -1.0)"),
}


@pytest.fixture
def wnet(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text(WNET)
    return net, tmp_path / "w.npz"


def test_good_weights_load(wnet, capsys):
    net, w = wnet
    np.savez(w, **good_weights())
    rc, out, err = run_cli(capsys, "map", str(net))
    assert (rc, err) == (0, "")
    from xbarsim import load_network
    lw = load_network(net).weights
    assert lw["conv1"].theta == 5 and lw["fc1"].levels.shape == (3, 32)


@pytest.mark.parametrize("case", sorted(WEIGHT_CASES))
def test_weights_corpus(case, wnet, capsys):
    net, w = wnet
    make, expected = WEIGHT_CASES[case]
    np.savez(w, **make())
    rc, out, err = run_cli(capsys, "map", str(net))
    assert (rc, out) == (2, "")
    assert err == expected.format(w=w, f=net) + "\n"


def test_weights_not_a_zip(wnet, capsys):
    net, w = wnet
    w.write_bytes(b"\x93NUMPY this is not a zip archive")
    assert run_cli(capsys, "map", str(net)) == (
        2, "", f"{w}: not a .npz file (no zip archive header)\n")


def test_weights_empty_file(wnet, capsys):
    net, w = wnet
    w.write_bytes(b"")
    assert run_cli(capsys, "map", str(net)) == (
        2, "", f"{w}: not a .npz file (no zip archive header) (got empty file)\n")


def test_weights_truncated_zip(wnet, capsys):
    net, w = wnet
    np.savez(w, **good_weights())
    w.write_bytes(w.read_bytes()[:60])
    rc, out, err = run_cli(capsys, "map", str(net))
    assert (rc, out) == (2, "")
    assert err.startswith(f"{w}: not a readable .npz file (") and err.count("\n") == 1


def test_weights_zip_member_not_an_array(wnet, capsys):
    net, w = wnet
    with zipfile.ZipFile(w, "w") as z:
        z.writestr("notes.txt", "hello")
    assert run_cli(capsys, "map", str(net)) == (
        2, "", f"{w}: notes.txt: not a .npy array inside the .npz\n")


# -- the CLI's error handling ---------------------------------------------------------------------

def test_traceback_flag_reraises():
    path = ERR / "stride_zero.yaml"
    with pytest.raises(ConfigError) as info:
        main(["--traceback", "map", str(path)])
    assert str(info.value) == f"{path}:9: layers[0].stride: must be >= 1 (got 0)"
    assert (info.value.line, info.value.key) == (9, "layers[0].stride")


def test_subprocess_one_line_no_traceback(tmp_path):
    rel = os.path.relpath(ERR / "unknown_layer_type.yaml", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "xbarsim", "map", rel], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (f"{rel}:10: layers[1].type: must be one of conv, fc, maxpool, avgpool, "
                           f"flatten, add; did you mean 'maxpool'? (got maxpol)\n")


def test_subprocess_weights_error_and_traceback_flag(tmp_path):
    (tmp_path / "net.yaml").write_text(WNET)
    np.savez(tmp_path / "w.npz", **_with(fc1__theta=np.array(0))())
    proc = subprocess.run([sys.executable, "-m", "xbarsim", "map", "net.yaml", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"{tmp_path / 'w.npz'}: fc1.theta: must be an integer >= 1 (got 0)\n"
    proc = subprocess.run([sys.executable, "-m", "xbarsim", "--traceback", "map", "net.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "xbarsim.errors.ConfigError" in proc.stderr


def test_missing_network_file(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    assert run_cli(capsys, "map", str(path)) == (2, "", f"{path}: file not found\n")
