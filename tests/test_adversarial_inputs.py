"""Adversarial inputs (issue 14, part B): bounded work for every input, every mistake one line.

Each error case asserts the exact line on stderr, nothing on stdout and exit status 2. Bombs,
special files and allocation cases run ``python -m xbarsim`` in a subprocess under a 1 GiB
address-space limit (``RLIMIT_AS``), so a blow-up fails the test instead of the machine; the rest
run in-process through :func:`xbarsim.cli.main`. Every input is generated in ``tmp_path``.
The subprocess timeout only guards against a hang; no test asserts a duration.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, limit_memory as _limit_memory, one_line
from xbarsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
#: What one array may take under the subprocesses' 1 GiB limit: half of it (the machine has more
#: than 1 GiB free, so the limit, not the free memory, sets the budget).
LIMITED_BUDGET = GIB // 2

TINY = """name: tiny
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: WEIGHTS
seed: 0
layers:
  - {name: fc1, type: fc, out_features: 3}
"""


def tiny(tmp_path, weights="random", text=TINY, name="net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("WEIGHTS", weights))
    return path


def sub(cwd, *argv):
    """``python -m xbarsim ARGV`` in ``cwd`` under a 1 GiB address-space limit; returns the one
    stderr line after checking exit 2 and no stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "xbarsim", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    return proc.stderr[:-1]


def npz_bytes(arrays: dict, compress=True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def good_weights(**changes):
    arrays = {"fc1.levels": np.ones((3, 16), np.int32), "fc1.theta": np.array(4)}
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    return arrays


def npy_header(shape, dtype="<u1") -> bytes:
    """A .npy file's magic and header declaring ``shape`` (no data follows)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


# =================================================================================================
# 1. YAML: size, nesting, aliases, tags, merges, YAML 1.1 surprises
# =================================================================================================

def test_alias_bomb_is_refused_before_expansion(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert sub(tmp_path, "map", "bomb.yaml") == (
        "bomb.yaml:5: invalid YAML: more than 50,000 values, counting each alias as the values "
        "it stands for")


def test_deep_nesting_is_one_line_not_recursion_error(tmp_path):
    (tmp_path / "deep.yaml").write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    assert sub(tmp_path, "map", "deep.yaml") == (
        "deep.yaml:1: invalid YAML: nested more than 64 levels deep")


def test_deep_block_nesting(tmp_path, capsys):
    text = "".join("  " * i + f"k{i}:\n" for i in range(80)) + "  " * 80 + "v\n"
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert one_line(capsys, "map", path) == (
        f"{path}:64: invalid YAML: nested more than 64 levels deep")


def test_50_mb_junk_list_is_refused_unread(tmp_path):
    with open(tmp_path / "junk.yaml", "w") as fh:
        fh.write("name: [")
        fh.write("x," * 25_000_000)
        fh.write("x]\n")
    size = (tmp_path / "junk.yaml").stat().st_size
    assert sub(tmp_path, "map", "junk.yaml") == (
        f"junk.yaml: cannot read file: YAML file too large: {size:,} bytes "
        f"(the limit is 1,048,576)")


def test_long_flat_list_under_the_size_limit_is_bounded(tmp_path):
    (tmp_path / "list.yaml").write_text("name: [" + "0," * 400_000 + "0]\n")
    assert sub(tmp_path, "map", "list.yaml") == (
        "list.yaml:1: invalid YAML: more than 50,000 values, counting each alias as the values "
        "it stands for")


def test_recursive_alias(tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", "seed: &s [1, *s]"))
    assert one_line(capsys, "map", path) == (
        f"{path}:6: invalid YAML: alias *s refers to a node that contains it "
        f"(a recursive structure)")


@pytest.mark.parametrize("tagged,shown", [
    ("!!int abc", "!!int cannot hold this value (got abc)"),
    ("!!float ten", "!!float cannot hold this value (got ten)"),
    ("!!int 1:30", "!!int cannot hold this value (got 1:30)"),
    ("!!bool yes", "!!bool cannot hold this value (got 'yes')"),
    ("!!null zero", "!!null cannot hold this value (got zero)"),
])
def test_tags_the_constructor_cannot_build(tagged, shown, tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", f"seed: {tagged}"))
    assert one_line(capsys, "map", path) == f"{path}:6: invalid YAML: {shown}"


def test_python_tag_is_refused(tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", "seed: !!python/object:os.system ls"))
    assert one_line(capsys, "map", path) == (
        f"{path}:6: invalid YAML: could not determine a constructor for the tag "
        f"'tag:yaml.org,2002:python/object:os.system'")


def test_sexagesimal_is_not_read_as_base_60(tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", "seed: 1:30"))
    assert one_line(capsys, "map", path) == f"{path}:6: seed: must be an integer (got 1:30)"


def test_underscored_number_is_not_an_integer(tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("out_features: 3", "out_features: 1_0"))
    assert one_line(capsys, "map", path) == (
        f"{path}:8: layers[0].out_features: must be an integer (got '1_0')")


def test_yaml_1_1_surprises_read_as_written(tmp_path):
    """``017`` is 17 (not octal 15), ``name: no`` is the string ``no`` (not false), ``1e3`` is a
    number, ``2024-01-01`` stays a string."""
    from xbarsim.config.spec import load_network_spec
    from xbarsim.config.yamlio import loads_yaml

    text = (TINY.replace("name: tiny", "name: no").replace("seed: 0", "seed: 017")
            .replace("out_features: 3", "out_features: 1e1"))
    spec = load_network_spec(tiny(tmp_path, text=text))
    assert (spec.name, spec.seed, spec.layers[0].out_shape) == ("no", 17, (10,))
    doc = loads_yaml("a: 2024-01-01\nb: yes\nc: ~\nd: 0x1F\ne: 0o17\nf: .inf\n")
    assert (doc["a"], doc["b"], doc["c"], doc["d"], doc["e"], doc["f"]) == (
        "2024-01-01", "yes", None, 31, 15, float("inf"))


def test_merge_key_then_overriding_keys_is_accepted(tmp_path):
    from xbarsim.config.spec import load_network_spec

    text = TINY.replace("input: {shape: [1, 4, 4]}", "input: {shape: [1, 8, 8]}").replace(
        "  - {name: fc1, type: fc, out_features: 3}\n",
        "  - &c {name: c1, type: conv, out_channels: 2, kernel: 3}\n"
        "  - {<<: *c, name: c2, out_channels: 5}\n"
        "  - {name: fc1, type: fc, out_features: 3}\n")
    spec = load_network_spec(tiny(tmp_path, text=text))
    c1, c2 = spec.layers[:2]
    assert (c2.name, c2.kernel, c2.out_shape) == ("c2", 3, (5, 4, 4))
    assert c1.out_shape == (2, 6, 6)


def test_merge_does_not_hide_a_real_duplicate(tmp_path, capsys):
    text = TINY.replace("bits: {signal: 4, weight: 4}",
                        "b0: &b {signal: 4}\nbits: {<<: *b, weight: 4, weight: 3}")
    path = tiny(tmp_path, text=text)
    assert one_line(capsys, "map", path) == (
        f"{path}:5: bits.weight: duplicate key (first given on line 5)")


def test_control_character_in_a_key_stays_on_one_line(tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", 'seed: 0\n"bad\\nkey": 1'))
    assert one_line(capsys, "map", path) == (
        f"{path}:7: bad\\nkey: unknown key")


def test_yaml_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "net.yaml"
    path.write_bytes(TINY.encode() + b"# \xff\xfe\n")
    assert one_line(capsys, "map", path) == (
        f"{path}:9: not UTF-8 text (a binary file?) (got byte 0xff)")


# =================================================================================================
# 2. Files: regular files only, symlink loops, labels and inputs files, npz members
# =================================================================================================

def test_fifo_as_network_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "net.yaml")
    assert sub(tmp_path, "map", "net.yaml") == (
        "net.yaml: cannot read file: not a regular file: a FIFO (named pipe)")


def test_map_dev_zero_reads_nothing(tmp_path):
    assert sub(tmp_path, "map", "/dev/zero") == (
        "/dev/zero: cannot read file: not a regular file: a character device")


def test_fifo_as_weights_in_the_yaml(tmp_path, capsys):
    os.mkfifo(tmp_path / "w.npz")
    path = tiny(tmp_path, "w.npz")
    assert one_line(capsys, "map", path) == (
        f"{path}:5: weights: not a regular file: {tmp_path / 'w.npz'} (got w.npz)")


def test_fifo_as_weights_flag(tmp_path):
    os.mkfifo(tmp_path / "w.npz")
    tiny(tmp_path)
    assert sub(tmp_path, "run", "net.yaml", "--weights", "w.npz", "--samples", "2") == (
        "w.npz: cannot read weights file (not a regular file: a FIFO (named pipe))")


def test_fifo_as_inputs(tmp_path):
    os.mkfifo(tmp_path / "x.npy")
    tiny(tmp_path)
    assert sub(tmp_path, "run", "net.yaml", "--inputs", "x.npy") == (
        "xbarsim: error: x.npy: --inputs: not a regular file: a FIFO (named pipe)")


def test_fifo_as_labels(tmp_path):
    os.mkfifo(tmp_path / "y.npy")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 4, 4), np.uint8))
    tiny(tmp_path)
    assert sub(tmp_path, "run", "net.yaml", "--inputs", "x.npy", "--labels", "y.npy") == (
        "xbarsim: error: y.npy: --labels: not a regular file: a FIFO (named pipe)")


def test_symlink_loop_as_network(tmp_path, capsys):
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    path = tmp_path / "a.yaml"
    assert one_line(capsys, "map", path) == (
        f"{path}: cannot read file: too many levels of symbolic links (a symlink loop)")


def test_symlink_loop_as_weights_flag(tmp_path, capsys):
    os.symlink("b.npz", tmp_path / "a.npz")
    os.symlink("a.npz", tmp_path / "b.npz")
    w = tmp_path / "a.npz"
    assert one_line(capsys, "run", tiny(tmp_path), "--weights", w) == (
        f"{w}: cannot read weights file (too many levels of symbolic links (a symlink loop))")


def test_folder_as_network(tmp_path, capsys):
    assert one_line(capsys, "map", tmp_path) == (
        f"{tmp_path}: cannot read file: not a regular file: a folder")


@pytest.fixture
def inputs(tmp_path):
    """A tiny network and two images for it; returns (network path, images path)."""
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 4, 4), np.uint8))
    return tiny(tmp_path), x


def test_labels_missing(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "nope.npy"
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: file not found")


def test_labels_pickled(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "y.npy"
    np.save(y, np.array([1, "two"], dtype=object), allow_pickle=True)
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: holds Python objects (a pickle), which xbarsim does "
        f"not load")


def test_labels_strings(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "y.npy"
    np.save(y, np.array(["cat", "dog"]))
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: must hold integer class indices (got dtype <U3)")


def test_labels_out_of_range(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "y.npy"
    np.save(y, np.array([0, 3]))
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: label 1 is outside 0..2, the network's 3 classes (got 3)")


def test_labels_negative_after_uint_wrap(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "y.npy"
    np.save(y, np.array([2**64 - 1, 0], np.uint64))
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: label 0 is outside 0..2, the network's 3 classes "
        f"(got 18446744073709551615)")


def test_labels_nan(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "y.npy"
    np.save(y, np.array([0.0, np.nan]))
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: label 1 is not a whole number (got nan)")


def test_labels_two_dimensional(inputs, capsys, tmp_path):
    net, x = inputs
    y = tmp_path / "y.npy"
    np.save(y, np.zeros((2, 3), np.int64))
    assert one_line(capsys, "run", net, "--inputs", x, "--labels", y) == (
        f"xbarsim: error: {y}: --labels: must be a 1-D array of class indices (got shape (2, 3))")


def test_labels_without_inputs(inputs, capsys, tmp_path):
    net, _ = inputs
    assert one_line(capsys, "run", net, "--labels", tmp_path / "y.npy") == (
        "xbarsim: error: --labels: given without --inputs (labels of a data set come with it)")


def test_inputs_with_zero_images(capsys, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((0, 1, 4, 4), np.uint8))
    assert one_line(capsys, "run", tiny(tmp_path), "--inputs", x) == (
        f"xbarsim: error: {x}: --inputs: holds no images (got shape (0, 1, 4, 4))")


def test_inputs_npz(capsys, tmp_path):
    x = tmp_path / "x.npz"
    np.savez(x, images=np.zeros((2, 1, 4, 4), np.uint8))
    assert one_line(capsys, "run", tiny(tmp_path), "--inputs", x) == (
        f"xbarsim: error: {x}: --inputs: is an .npz archive; give a single .npy array")


def test_inputs_pickled(capsys, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert one_line(capsys, "run", tiny(tmp_path), "--inputs", x) == (
        f"xbarsim: error: {x}: --inputs: holds Python objects (a pickle), which xbarsim does "
        f"not load")


def test_inputs_truncated(capsys, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 4, 4), np.uint8))
    x.write_bytes(x.read_bytes()[:-5])
    assert one_line(capsys, "run", tiny(tmp_path), "--inputs", x) == (
        f"xbarsim: error: {x}: --inputs: truncated: the header declares 32 bytes of data, the "
        f"file has 27")


def test_inputs_declaring_a_huge_shape_is_not_allocated(tmp_path):
    (tmp_path / "x.npy").write_bytes(npy_header((1 << 36, 1, 4, 4)))
    tiny(tmp_path)
    assert sub(tmp_path, "run", "net.yaml", "--inputs", "x.npy") == (
        f"xbarsim: error: x.npy: --inputs: declared array shape (68719476736, 1, 4, 4) of "
        f"uint8 needs "
        f"1,099,511,627,776 bytes, more than the {LIMITED_BUDGET:,} bytes of memory available")


def test_inputs_shape_past_int64(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("xbarsim.io.files.memory_budget", lambda: 1 << 29)
    x = tmp_path / "x.npy"
    x.write_bytes(npy_header((1 << 70, 1, 4, 4)))
    assert one_line(capsys, "run", tiny(tmp_path), "--inputs", x) == (
        f"xbarsim: error: {x}: --inputs: declared array shape (1180591620717411303424, 1, 4, "
        f"4) of uint8 needs "
        f"18,889,465,931,478,580,854,784 bytes, more than the 536,870,912 bytes of memory "
        f"available")


def _corrupt_member(arrays, member, compress, lo, hi) -> bytes:
    """The .npz of ``arrays`` with bytes ``lo … hi`` of ``member``'s stored data flipped."""
    data = bytearray(npz_bytes(arrays, compress))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo(member)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    end = start + info.compress_size
    for i in range(start + lo if lo >= 0 else end + lo, start + hi if hi > 0 else end + hi):
        data[i] ^= 0x5A
    return bytes(data)


def test_weights_member_with_corrupt_deflate_data(tmp_path, capsys):
    """A corrupt deflate stream used to escape as ``zlib.error``."""
    w = tmp_path / "w.npz"
    w.write_bytes(_corrupt_member(good_weights(fc1__levels=np.arange(48, dtype=np.int32)
                                               .reshape(3, 16) % 15 - 7),
                                  "fc1.levels.npy", True, 5, -5))
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz")) == (
        f"{w}: fc1.levels: not a readable .npy array (Error -3 while decompressing data: "
        f"invalid stored block lengths)")


def test_weights_member_with_a_bad_crc(tmp_path, capsys):
    w = tmp_path / "w.npz"
    w.write_bytes(_corrupt_member(good_weights(), "fc1.levels.npy", False, -8, -4))
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz")) == (
        f"{w}: fc1.levels: not a readable .npy array (Bad CRC-32 for file 'fc1.levels.npy')")


def test_weights_member_declaring_a_huge_shape(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fc1.levels.npy", npy_header((3, 1 << 40), "<i4"))
        z.writestr("fc1.theta.npy", npy_header((), "<i8") + np.int64(4).tobytes())
    (tmp_path / "w.npz").write_bytes(buf.getvalue())
    tiny(tmp_path, "w.npz")
    assert sub(tmp_path, "map", "net.yaml") == (
        f"{tmp_path / 'w.npz'}: fc1.levels: declared array shape (3, 1099511627776) of int32 "
        f"needs 13,194,139,533,312 bytes, more than the {LIMITED_BUDGET:,} bytes of memory "
        f"available")


def test_weights_member_declaring_more_than_it_holds(tmp_path, capsys):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fc1.levels.npy", npy_header((3, 1 << 22), "<i4"))
        z.writestr("fc1.theta.npy", npy_header((), "<i8") + np.int64(4).tobytes())
    w = tmp_path / "w.npz"
    w.write_bytes(buf.getvalue())
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz")) == (
        f"{w}: fc1.levels: declared array shape (3, 4194304) of int32 needs 50,331,648 bytes but "
        f"the file holds at most 128")


# =================================================================================================
# 3. Integer ranges where they are loaded
# =================================================================================================

@pytest.mark.parametrize("levels,got", [
    (np.full((3, 16), 2**64 - 1, np.uint64), 18446744073709551615),
    (np.full((3, 16), -2**63, np.int64), -9223372036854775808),
    (np.full((3, 16), 1e20), 100000000000000000000),
])
def test_levels_outside_n_bits_after_a_dtype_wrap(levels, got, tmp_path, capsys):
    w = tmp_path / "w.npz"
    w.write_bytes(npz_bytes(good_weights(fc1__levels=levels)))
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz")) == (
        f"{w}: fc1.levels: level out of the 4-bit range [-7, 7] at index (0, 0) (got {got})")


def test_bias_past_the_fixed_point(tmp_path, capsys):
    """A bias of 2^43 wrapped to 0 counts (instead of 15) before the check."""
    w = tmp_path / "w.npz"
    w.write_bytes(npz_bytes(good_weights(fc1__bias=np.array([0, 2**43, 0], np.int64))))
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz")) == (
        f"{w}: fc1.bias: bias outside the engine's fixed-point range, |bias| < 2^43 weight LSB, "
        f"at index (1,) (got 8796093022208)")


def test_largest_bias_runs(tmp_path, capsys):
    """|bias| just inside the bound still gives the right answer: every count saturates."""
    w = tmp_path / "w.npz"
    w.write_bytes(npz_bytes(good_weights(fc1__levels=np.zeros((3, 16), np.int32),
                                         fc1__bias=np.full(3, 2**43 - 64, np.int64))))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 4, 4), np.uint8))
    out = tmp_path / "c.npz"
    rc, _, err = cli(capsys, "run", tiny(tmp_path, "w.npz"), "--inputs", x, "--save-counts", out,
                     "--no-progress")
    assert (rc, err) == (0, "")
    assert np.load(out)["fc1"].tolist() == [[15, 15, 15]]


@pytest.mark.parametrize("theta,got", [
    (np.array(2**64 - 1, np.uint64), "18446744073709551615"),
    (np.array(1e30), "1000000000000000019884624838656"),
    (np.array(2**43, np.int64), "8796093022208"),
])
def test_theta_past_the_fixed_point(theta, got, tmp_path, capsys):
    w = tmp_path / "w.npz"
    w.write_bytes(npz_bytes(good_weights(fc1__theta=theta)))
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz")) == (
        f"{w}: fc1.theta: must be < 2^43 weight LSB, the engine's fixed-point range (got {got})")


FC16 = """name: fc16
dataset: synthetic
input: {shape: [1, 1, 6000], bits: 16}
bits: {signal: 16, weight: 16}
weights: WEIGHTS
layers:
  - {name: fc1, type: fc, out_features: 4}
"""


def test_membrane_bound_of_a_wide_16_bit_layer(tmp_path, capsys):
    w = tmp_path / "w.npz"
    w.write_bytes(npz_bytes({"fc1.levels": np.full((4, 6000), 32767, np.int16),
                             "fc1.theta": np.array(1)}))
    assert one_line(capsys, "map", tiny(tmp_path, "w.npz", FC16)) == (
        f"{w}: fc1.levels: a membrane of column 0 can reach 1.288e+13 weight LSB "
        f"((2^16−1)·Σ|levels| + |bias| + θ), past the engine's fixed-point range of 2^43 LSB; "
        f"use fewer input rows, bits or smaller levels")


def test_membrane_bound_of_random_weights_names_the_layer_line(tmp_path, capsys):
    text = FC16.replace("6000]", "9000]")
    net = tiny(tmp_path, text=text)
    assert one_line(capsys, "run", net, "--samples", "1") == (
        f"{net}:7: layers[0]: a membrane of column 0 can reach 9.73e+12 weight LSB "
        f"((2^16−1)·Σ|levels| + |bias| + θ), past the engine's fixed-point range of 2^43 LSB; "
        f"use fewer input rows, bits or smaller levels")


def test_engine_checks_the_fixed_point_with_a_non_ideal_card():
    """Weights inside the bound with ideal devices; programming variation makes the effective
    conductances larger and the engine refuses the layer instead of wrapping."""
    from xbarsim.config.section import Section
    from xbarsim.config.spec import parse_network
    from xbarsim.config.yamlio import loads_yaml
    from xbarsim.engine import Simulator
    from xbarsim.errors import XbarsimError
    from xbarsim.network.network import build_network
    from xbarsim.network.weights import LayerWeights

    text = FC16.replace("weights: WEIGHTS", "weights: random\ndevice: {variation_rel: 10}")
    spec = parse_network(Section(loads_yaml(text, "fc16.yaml"), "fc16.yaml"))
    lw = LayerWeights(np.full((4, 6000), 16000, np.int32), np.zeros(4, np.int64), 1)
    net = build_network(spec, {"fc1": lw})  # 65535·6000·16000 = 6.3e12 < 2^43: accepted
    with pytest.raises(XbarsimError) as info:
        Simulator(net)
    assert str(info.value) == ("fc1: a membrane of column 3 can reach 3.151e+13 weight LSB with "
                               "this device card and engine options, past the engine's "
                               "fixed-point range of 2^43 LSB (docs/engine.md)")


def test_input_shape_of_2_pow_70_is_refused_by_map(tmp_path, capsys):
    net = tiny(tmp_path, text=TINY.replace("[1, 4, 4]", "[1, 1180591620717411303424, 1]"))
    assert one_line(capsys, "map", net) == (
        f"{net}:3: input.shape[1]: must be <= 65536 (got 1180591620717411303424)")


def test_input_with_too_many_values(tmp_path, capsys):
    net = tiny(tmp_path, text=TINY.replace("[1, 4, 4]", "[65536, 65536, 65536]"))
    assert one_line(capsys, "map", net) == (
        f"{net}:3: input.shape: holds 281,474,976,710,656 values per image, more than "
        f"2,147,483,647 (got [65536, 65536, 65536])")


def test_layer_with_too_many_weights(tmp_path, capsys):
    net = tiny(tmp_path, text=TINY.replace("[1, 4, 4]", "[16, 4096, 16]").replace(
        "out_features: 3", "out_features: 1048576"))
    assert one_line(capsys, "map", net) == (
        f"{net}:8: layers[0].type: needs 1,048,576 x 1,048,576 = 1,099,511,627,776 weights, "
        f"more than 4,294,967,296 (got fc)")


def test_random_weights_checked_against_memory(tmp_path):
    net = tiny(tmp_path, text=TINY.replace("[1, 4, 4]", "[16, 4096, 4]").replace(
        "out_features: 3", "out_features: 16384"))
    assert sub(tmp_path, "run", net.name, "--samples", "1") == (
        f"{net.name}:8: layers[0]: weights: random needs 51,539,607,552 bytes for this layer's "
        f"4,294,967,296 weights, more than the {LIMITED_BUDGET:,} bytes of memory available")


@pytest.mark.parametrize("seed,shown", [
    ("-1", "-1"), (str(2**64 + 5), str(2**64 + 5)), (str(2**63), str(2**63)),
])
def test_seed_outside_the_63_bit_range(seed, shown, tmp_path, capsys):
    assert one_line(capsys, "run", tiny(tmp_path), "--seed", seed) == (
        f"xbarsim: error: --seed: must be in 0..9223372036854775807 (got {shown})")


def test_yaml_seed_outside_the_63_bit_range(tmp_path, capsys):
    net = tiny(tmp_path, text=TINY.replace("seed: 0", f"seed: {2**64 + 5}"))
    assert one_line(capsys, "map", net) == (
        f"{net}:6: seed: must be <= 9223372036854775807 (got {2**64 + 5})")


def test_engine_options_refuse_a_wrapping_seed():
    from xbarsim.engine import EngineOptions
    from xbarsim.errors import XbarsimError

    with pytest.raises(XbarsimError, match=r"^seed: must be in 0\.\.9223372036854775807 "
                                           r"\(got 18446744073709551621\)$"):
        EngineOptions(seed=2**64 + 5)


def test_trace_images_range_is_bounded(tmp_path):
    tiny(tmp_path)
    assert sub(tmp_path, "run", "net.yaml", "--trace", "T", "--trace-images", "0-2000000000") == (
        "xbarsim: error: --trace-images: selects 2,000,000,001 images, more than the 1,000,000 "
        "one trace may hold; name fewer (got 0-2000000000)")


def test_trace_images_index_past_int32(tmp_path, capsys):
    assert one_line(capsys, "run", tiny(tmp_path), "--trace", tmp_path / "T",
                    "--trace-images", str(2**31)) == (
        "xbarsim: error: --trace-images: image indices must be <= 2147483647 (got 2147483648)")


def test_trace_images_without_trace(tmp_path, capsys):
    assert one_line(capsys, "run", tiny(tmp_path), "--trace-images", "0-3") == (
        "xbarsim: error: --trace-images: given without --trace DIR (nothing would be traced)")


def test_drain_cycles_bounded(tmp_path, capsys):
    assert one_line(capsys, "run", tiny(tmp_path), "--drain-cycles", str(10**9)) == (
        "xbarsim: error: --drain-cycles: must be in 0..65535 (got 1000000000)")


def test_comparator_offset_past_the_fixed_point():
    from xbarsim.engine.ifc import IFCParams
    from xbarsim.errors import XbarsimError

    with pytest.raises(XbarsimError, match=r"^ifc\.comparator_offset_lsb: must be within ±2\^30 "):
        IFCParams(comparator_offset_lsb=1e30)


# =================================================================================================
# 4. Sweeps: the same rules as files; damaged point files
# =================================================================================================

def sweep_file(tmp_path, body: str) -> Path:
    tiny(tmp_path)
    path = tmp_path / "sweep.yaml"
    path.write_text("network: net.yaml\nsamples: 4\nseeds: 1\n" + body)
    return path


def test_sweep_variation_a_card_would_refuse(tmp_path, capsys):
    sw = sweep_file(tmp_path, "grid:\n  device.variation_rel: [0.0, 50]\n")
    assert one_line(capsys, "sweep", sw, "--out", tmp_path / "S") == (
        f"{sw}:5: grid.device.variation_rel[1]: must be <= 10 (got 50)")


def test_sweep_levels_a_card_would_refuse(tmp_path, capsys):
    sw = sweep_file(tmp_path, "points:\n  - {device.levels: 1099511627776}\n")
    assert one_line(capsys, "sweep", sw, "--out", tmp_path / "S") == (
        f"{sw}:5: points[0].device.levels: must be <= 1048576 (got 1099511627776)")


def test_sweep_wire_resistance_a_card_would_refuse(tmp_path, capsys):
    sw = sweep_file(tmp_path, "grid:\n  device.r_wire_row_ohm: [1.0e-320]\n")
    assert one_line(capsys, "sweep", sw, "--out", tmp_path / "S") == (
        f"{sw}:5: grid.device.r_wire_row_ohm[0]: must be 0 (ideal wires) or >= 1e-06 "
        f"(got 1e-320)")


def test_sweep_drain_cycles_bounded(tmp_path, capsys):
    sw = sweep_file(tmp_path, "grid:\n  engine.drain_cycles: [0, 1000000]\n")
    assert one_line(capsys, "sweep", sw, "--out", tmp_path / "S") == (
        f"{sw}:5: grid.engine.drain_cycles[1]: must be an integer in 0..65535 (got 1000000)")


def test_sweep_seed_past_63_bits(tmp_path, capsys):
    tiny(tmp_path)
    sw = tmp_path / "sweep.yaml"
    sw.write_text("network: net.yaml\nsamples: 4\nseeds: [0, 9223372036854775808]\n"
                  "grid:\n  device.variation_rel: [0.0]\n")
    assert one_line(capsys, "sweep", sw, "--out", tmp_path / "S") == (
        f"{sw}:3: seeds[1]: must be <= 9223372036854775807 (got 9223372036854775808)")


def test_sweep_point_values_go_through_the_card_rules_in_the_api(tmp_path):
    from xbarsim.errors import XbarsimError
    from xbarsim.network.network import load_network
    from xbarsim.sweep import params as P

    net = load_network(tiny(tmp_path))
    with pytest.raises(XbarsimError, match=r"variation_rel: must be <= 10 \(got 50\.0\)"):
        P.resolve({"device.variation_rel": 50.0}, net.spec.device, 0)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A finished two-point sweep directory (run once for the module)."""
    d = tmp_path_factory.mktemp("sweep")
    sw = sweep_file(d, "grid:\n  device.variation_rel: [0.0, 0.1]\n")
    assert main(["sweep", str(sw), "--out", str(d / "S")]) == 0
    return d / "S"


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("content,problem", [
    ("[1, 2, 3]", "a JSON list, not an object"),
    ('{"key": "x"}', "no 'params'"),
    ("ACCURACY", "'accuracy' must be a number or null (got high)"),
    ("LAYERS", "layers.fc1.mismatch must be a number (got None)"),
    ("PARAMS", "its parameters or seed differ from the plan's"),
])
def test_sweep_plot_on_a_damaged_point(content, problem, finished_sweep, tmp_path, capsys):
    d = _copy(finished_sweep, tmp_path / "S")
    point = min((d / "points").glob("*.json"))
    record = json.loads(point.read_text())
    if content == "ACCURACY":
        record["accuracy"] = "high"
        content = json.dumps(record)
    elif content == "LAYERS":
        record["layers"]["fc1"] = {"spikes_out": 3}
        content = json.dumps(record)
    elif content == "PARAMS":
        record["params"] = {"device.variation_rel": 0.5}
        content = json.dumps(record)
    point.write_text(content)
    assert one_line(capsys, "sweep", "plot", d) == (
        f"xbarsim: error: {point}: not a finished point of this sweep ({problem}); delete it "
        f"and rerun the sweep")


@pytest.mark.parametrize("content,message", [
    ("[]", "format must be xbarsim-sweep-1 (got a JSON list)"),
    ('{"format": "xbarsim-sweep-1", "runs": 5}',
     "damaged sweep manifest ('network' must be a JSON string)"),
    ('{"format": "xbarsim-sweep-1", "network": "n", "samples": 1, "seeds": [0], '
     '"parameters": [], "runs": [{"key": "../../etc/passwd", "params": {}}]}',
     "damaged sweep manifest (runs[0] has no valid key (20 hex digits))"),
])
def test_sweep_plot_on_a_damaged_manifest(content, message, finished_sweep, tmp_path, capsys):
    d = _copy(finished_sweep, tmp_path / "S")
    (d / "sweep.json").write_text(content)
    assert one_line(capsys, "sweep", "plot", d) == f"xbarsim: error: {d / 'sweep.json'}: {message}"


# =================================================================================================
# 5. IR drop: extreme card values
# =================================================================================================

def test_wire_resistance_too_small_to_solve_is_refused_at_load(tmp_path, capsys):
    net = tiny(tmp_path, text=TINY.replace("seed: 0", "seed: 0\ndevice: {r_wire_row_ohm: 1e-320, "
                                           "r_wire_col_ohm: 1e-320}"))
    assert one_line(capsys, "run", net, "--samples", "2") == (
        f"{net}:7: device.r_wire_row_ohm: must be 0 (ideal wires) or >= 1e-06 (got 1e-320)")


def test_unsolvable_tile_system_is_one_line():
    """Should a value the card accepts ever make a tile's nodal system singular, the solve says
    so in one line (here a card is forced past its own check to reach that path)."""
    from xbarsim.config.device import DeviceCard
    from xbarsim.errors import XbarsimError
    from xbarsim.hardware.irdrop import layer_transfer

    card = DeviceCard(name="forced", r_wire_row_ohm=1.0, r_wire_col_ohm=1.0)
    object.__setattr__(card, "r_wire_row_ohm", 1e-320)
    object.__setattr__(card, "r_wire_col_ohm", 1e-320)
    with pytest.raises(XbarsimError) as info:
        layer_transfer(np.full((4, 4), 1e-5), card, 4)
    assert str(info.value) == (
        "device forced: the IR-drop nodal system of the tile at row 0, column 0 cannot be solved "
        "(factor is exactly singular) with r_wire_row_ohm = 9.99989e-321, r_wire_col_ohm = "
        "9.99989e-321, iv_sinh_alpha = 0, r_on_ohm = 50000, r_off_ohm = 1e+06")


# =================================================================================================
# 6. One error path
# =================================================================================================

def test_traceback_flag_shows_the_stack_for_these_errors(tmp_path):
    from xbarsim.errors import ConfigError

    path = tiny(tmp_path, text=TINY.replace("seed: 0", "seed: !!int abc"))
    with pytest.raises(ConfigError) as info:
        main(["--traceback", "map", str(path)])
    assert (info.value.line, str(info.value)) == (
        6, f"{path}:6: invalid YAML: !!int cannot hold this value (got abc)")


# =================================================================================================
# More files other commands read
# =================================================================================================

def test_report_on_a_fifo_results_file(tmp_path):
    os.mkfifo(tmp_path / "results.json")
    assert sub(tmp_path, "report", "results.json") == (
        "xbarsim: error: results.json: not a readable results file (not a regular file: a FIFO "
        "(named pipe))")


def test_training_init_file_that_is_a_fifo(tmp_path):
    pytest.importorskip("torch")
    from xbarsim.errors import DataError
    from xbarsim.network.network import load_network
    from xbarsim.train.loop import read_float_form

    os.mkfifo(tmp_path / "init.npz")
    spec = load_network(tiny(tmp_path)).spec
    with pytest.raises(DataError) as info:
        read_float_form(tmp_path / "init.npz", spec)
    assert str(info.value) == (f"{tmp_path / 'init.npz'}: --init: not a regular file: a FIFO "
                               f"(named pipe)")


def test_synthetic_samples_checked_against_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("xbarsim.io.files.memory_budget", lambda: 1 << 29)
    assert one_line(capsys, "run", tiny(tmp_path), "--samples", str(10**11), "--no-progress") == (
        "xbarsim: error: synthetic: 100,000,000,000 images of 1x4x4 need about "
        "25,600,000,000,000 bytes, more than the 536,870,912 bytes of memory available (use "
        "fewer --samples)")


@pytest.mark.parametrize("key,target", [("weights", "w.npz"), ("device", "card.yaml")])
def test_symlink_loop_named_inside_the_yaml(key, target, tmp_path, capsys):
    os.symlink("other", tmp_path / target)
    os.symlink(target, tmp_path / "other")
    text = TINY if key == "weights" else TINY.replace("seed: 0", f"seed: 0\ndevice: {target}")
    net = tiny(tmp_path, target if key == "weights" else "random", text)
    line_no = 5 if key == "weights" else 7
    assert one_line(capsys, "map", net) == (
        f"{net}:{line_no}: {key}: too many levels of symbolic links (a symlink loop): "
        f"{tmp_path / target} (got {target})")
