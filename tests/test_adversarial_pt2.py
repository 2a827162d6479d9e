"""Adversarial ``.pt2`` models and training checkpoints (issue 26): no code from either file, and
bounded work before anything is read.

Every malicious file is made for real: a ``torch.export.save`` archive of a small model with one
member swapped for a pickle whose ``__reduce__`` writes a marker file (a weight, the sample inputs,
a constant, a custom object), its JSON graph carrying Python in the guards or in a shape
expression, a checkpoint whose pickle calls ``exec``. Each test asserts the exact line and exit 2
(or a clean import that read nothing of the planted member) and that the marker does not exist;
where ``torch.export.load`` / ``torch.load`` would run the payload, a test shows it does (the
attack is real, and ``--trust-pickle`` is the only way to it).

Bombs (a 2 GiB deflate member, a stride-0 tensor of a trillion values, sizes past the memory
budget, zip directories listing millions of members), special files and a checkpoint bomb run in
one ``python`` subprocess under a 1 GiB address-space limit (``RLIMIT_AS``), so a blow-up fails
the tests instead of the machine; the rest run in-process through :func:`xbarsim.cli.main`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from xbarsim.cli import main

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
#: What one array may take under the subprocess's 1 GiB limit: half of it.
LIMITED_BUDGET = GIB // 2
TRUST = "only --trust-pickle reads it, and that runs code from the file: only for files you trust"


# -- helpers (copied, not imported: tests do not import each other) ------------------------------
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


class Payload:
    """Unpickling this writes ``marker``: code run from a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def evil(marker) -> bytes:
    return pickle.dumps(Payload(marker), protocol=2)


def members(data: bytes) -> tuple:
    """``(root folder, {name under it: bytes})`` of a ``.pt2``."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        root = names[0].split("/", 1)[0]
        return root, {n[len(root) + 1:]: z.read(n) for n in names}


def pack(root: str, files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(f"{root}/{name}", data)
    return buf.getvalue()


def variant(src: bytes, *, model=None, weights=None, constants=None, put=None, drop=()) -> bytes:
    """``src`` with its graph JSON, weights or constants config changed by the given functions
    (each edits the parsed JSON in place), members replaced or added (``put``) or removed."""
    root, files = members(src)
    for name, edit in (("models/model.json", model),
                       ("data/weights/model_weights_config.json", weights),
                       ("data/constants/model_constants_config.json", constants)):
        if edit is not None:
            doc = json.loads(files[name])
            edit(doc)
            files[name] = json.dumps(doc).encode()
    files.update(put or {})
    for name in drop:
        del files[name]
    return pack(root, files)


def deflated(name: str, stream: bytes, crc: int, size: int) -> tuple:
    return name, stream, 8, crc, size


def write_zip(entries) -> bytes:
    """A zip written by hand: ``(name, payload, method, crc, declared size)`` per member, so a
    member can be an already-deflated bomb."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, payload, method, crc, size in entries:
        raw = name.encode()
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                              len(payload), size, len(raw), 0) + raw + payload)
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0,
                                  crc, len(payload), size, len(raw), 0, 0, 0, 0, 0, offset) + raw)
    cd = central.getvalue()
    start = out.tell()
    out.write(cd)
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd),
                          start, 0))
    return out.getvalue()


def stored(files: dict, root: str) -> list:
    return [(f"{root}/{n}", d, 0, zlib.crc32(d), len(d)) for n, d in files.items()]


#: zlib.crc32 of 2 GiB of zeros (``crc = zlib.crc32(bytes(1 << 20), crc)`` 2,048 times)
CRC_2_GIB_OF_ZEROS = 0x4DBDF21C


def zero_bomb() -> tuple:
    """``(raw deflate stream, crc32, size)`` of 2 GiB of zeros in about 2 MB: one compressed MiB
    repeated (a full flush makes each block independent of the ones before)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * 2048 + c.flush(), CRC_2_GIB_OF_ZEROS, 2 * GIB


# -- the model every file starts from ---------------------------------------------------------
@pytest.fixture(scope="module")
def pt2(tmp_path_factory) -> bytes:
    """A clean ``torch.export.save`` of conv → ReLU → flatten → linear, dynamic batch."""
    from torch import nn

    torch.manual_seed(0)
    # .eval() is nn.Module's inference mode (no dropout/batch-norm updates), not Python's eval
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3)).eval()
    ep = torch.export.export(model, (torch.zeros(2, 1, 8, 8),),
                             dynamic_shapes=({0: torch.export.Dim.AUTO},))
    path = tmp_path_factory.mktemp("pt2") / "m.pt2"
    torch.export.save(ep, str(path))
    return path.read_bytes()


def weight_file(data: bytes, fqn: str = "0.weight") -> str:
    _, files = members(data)
    config = json.loads(files["data/weights/model_weights_config.json"])["config"]
    return "data/weights/" + config[fqn]["path_name"]


def setup(tmp_path, data: bytes, name="m.pt2") -> list:
    """Writes the model and calibration images; returns the import command's arguments."""
    (tmp_path / name).write_bytes(data)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "cal.npy", rng.integers(0, 256, (8, 1, 8, 8), dtype=np.uint8))
    return ["import", tmp_path / name, "--bits", "4,4", "--calibrate", tmp_path / "cal.npy",
            "--out", tmp_path / "x.yaml"]


def imports_cleanly(capsys, argv):
    rc, out, err = cli(capsys, *argv)
    assert (rc, err) == (0, ""), err
    assert "agrees with the float model" in out
    return out


# =================================================================================================
# 1. no code from a .pt2
# =================================================================================================
def test_clean_pt2_imports_the_same_with_and_without_trust_pickle(pt2, tmp_path, capsys):
    """The safe reader (graph JSON + raw tensor bytes) gives what torch.export.load gives."""
    argv = setup(tmp_path, pt2)
    safe = imports_cleanly(capsys, argv)
    yaml, npz = (tmp_path / "x.yaml").read_text(), (tmp_path / "x.npz").read_bytes()
    trusted = imports_cleanly(capsys, argv + ["--trust-pickle"])
    assert safe == trusted
    assert (tmp_path / "x.yaml").read_text() == yaml
    with np.load(tmp_path / "x.npz") as a, np.load(io.BytesIO(npz)) as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


def _pickled_weight(pt2, marker) -> bytes:
    member = weight_file(pt2)

    def use_pickle(doc):
        doc["config"]["0.weight"]["use_pickle"] = True
    return variant(pt2, weights=use_pickle, put={member: evil(marker)})


def test_pickled_weight_is_refused_and_never_run(pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    argv = setup(tmp_path, _pickled_weight(pt2, marker))
    assert one_line(capsys, *argv) == (
        f"{tmp_path / 'm.pt2'}: weight '0.weight' is stored as a pickle (a tensor subclass or a "
        f"custom object), which xbarsim does not load; {TRUST}")
    assert not marker.exists()
    assert not (tmp_path / "x.yaml").exists()


def test_trust_pickle_is_the_only_way_to_torch_export_load(pt2, tmp_path, capsys):
    """The same file with --trust-pickle: torch.export.load unpickles the weight and the payload
    runs (the attack is real, and the flag says what it does)."""
    marker = tmp_path / "MARKER"
    argv = setup(tmp_path, _pickled_weight(pt2, marker))
    cli(capsys, *argv, "--trust-pickle")
    assert marker.exists()


def test_weight_bytes_swapped_for_a_pickle_are_only_numbers(pt2, tmp_path, capsys):
    """A raw weight member replaced by a pickle (not marked as one) is read as float32 values:
    71 bytes are no whole number of them."""
    marker = tmp_path / "MARKER"
    member = weight_file(pt2)
    payload = evil(marker)
    payload += b" " * (71 - len(payload)) if len(payload) < 71 else b""
    argv = setup(tmp_path, variant(pt2, put={member: payload[:71]}))
    assert one_line(capsys, *argv) == (
        f"{tmp_path / 'm.pt2'}: {member}: 71 bytes is not a whole number of float32 values")
    assert not marker.exists()


def test_pickled_sample_inputs_and_extra_files_are_never_read(pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    data = variant(pt2, put={"data/sample_inputs/model.pt": evil(marker),
                             "extra/notes.pkl": evil(marker)})
    imports_cleanly(capsys, setup(tmp_path, data))
    assert not marker.exists()


def test_pickled_constant_named_by_the_graph_is_refused(pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"

    def add_constant(doc):
        doc["config"]["evil"] = {"path_name": "tensor_0", "is_param": False, "use_pickle": True,
                                 "tensor_meta": None}

    def use_constant(doc):
        doc["graph_module"]["signature"]["input_specs"].insert(0, {"tensor_constant": {
            "arg": {"name": "c_evil"}, "tensor_constant_name": "evil"}})

    data = variant(pt2, constants=add_constant, model=use_constant,
                   put={"data/constants/tensor_0": evil(marker)})
    assert one_line(capsys, *setup(tmp_path, data)) == (
        f"{tmp_path / 'm.pt2'}: constant 'evil' is stored as a pickle (a tensor subclass or a "
        f"custom object), which xbarsim does not load; {TRUST}")
    assert not marker.exists()


def test_custom_object_input_is_refused(pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"

    def add_object(doc):
        doc["config"]["obj"] = {"path_name": "custom_obj_0", "is_param": False,
                                "use_pickle": True, "tensor_meta": None}

    def use_object(doc):
        doc["graph_module"]["signature"]["input_specs"].insert(0, {"custom_obj": {
            "arg": {"name": "obj0", "class_fqn": "__torch__.torch.classes.x.Y"},
            "custom_obj_name": "obj"}})

    data = variant(pt2, constants=add_object, model=use_object,
                   put={"data/constants/custom_obj_0": evil(marker)})
    assert one_line(capsys, *setup(tmp_path, data)) == (
        f"{tmp_path / 'm.pt2'}: holds a custom object (a torchbind class), which only pickle "
        f"restores; {TRUST}")
    assert not marker.exists()


def test_unused_pickled_constants_are_never_read(pt2, tmp_path, capsys):
    """Opaque and custom objects the graph does not name: torch.export.load unpickles them all;
    xbarsim reads only what the graph's signature names."""
    marker = tmp_path / "MARKER"

    def add(doc):
        for name in ("opaque_obj_0", "custom_obj_0", "tensor_0"):
            doc["config"][name] = {"path_name": name, "is_param": False, "use_pickle": True,
                                   "tensor_meta": None}

    data = variant(pt2, constants=add, put={f"data/constants/{n}": evil(marker)
                                            for n in ("opaque_obj_0", "custom_obj_0", "tensor_0")})
    imports_cleanly(capsys, setup(tmp_path, data))
    assert not marker.exists()


def _with_guards(pt2, marker) -> bytes:
    def guards(doc):  # single quotes only: torch pastes the guard into a string of its own
        doc["guards_code"] = [f"__import__('pathlib').Path('{marker}').touch() is None"]
    return variant(pt2, model=guards)


def test_guards_code_is_never_run(pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    argv = setup(tmp_path, _with_guards(pt2, marker))
    imports_cleanly(capsys, argv)
    assert not marker.exists()
    cli(capsys, *argv, "--trust-pickle")  # torch compiles the guards into the module it runs
    assert marker.exists()


def _with_expression(pt2, marker) -> bytes:
    # the attacker's payload, written into the crafted file as text; it only ever touches a marker
    # file in the test's tmp_path, and the test asserts xbarsim never runs it
    code = f"__import__('builtins').exec(\"open({str(marker)!r}, 'w').close()\")"

    def expression(doc):
        g = doc["graph_module"]["graph"]
        for value in list(g["tensor_values"].values()) + list(g["sym_int_values"].values()):
            for size in value.get("sizes", [value]):
                if "as_expr" in size:
                    size["as_expr"]["expr_str"] = code
    return variant(pt2, model=expression)


def test_shape_expression_is_never_parsed(pt2, tmp_path, capsys):
    """The dynamic batch axis is a sympy string that torch.export.load sympifies (an eval)."""
    marker = tmp_path / "MARKER"
    argv = setup(tmp_path, _with_expression(pt2, marker))
    imports_cleanly(capsys, argv)
    assert not marker.exists()
    cli(capsys, *argv, "--trust-pickle")
    assert marker.exists()


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "torch.ops.aten.__class__.x",
                                    "torch.load"])
def test_op_names_are_never_resolved_to_python(pt2, tmp_path, capsys, target):
    from xbarsim.interop.torch_import import SUPPORTED

    def retarget(doc):
        doc["graph_module"]["graph"]["nodes"][0]["target"] = target

    argv = setup(tmp_path, variant(pt2, model=retarget))
    assert one_line(capsys, *argv) == (
        f"{tmp_path / 'm.pt2'}: 0 (Conv2d): op not supported (xbarsim maps {SUPPORTED}) "
        f"(got {target})")


def test_torch_2_7_pickled_format_is_refused(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("version", "8.0")
        z.writestr("serialized_exported_program.json", "{}")
        z.writestr("serialized_state_dict.pt", evil(marker))
        z.writestr("serialized_constants.pt", evil(marker))
        z.writestr("serialized_example_inputs.pt", evil(marker))
    assert one_line(capsys, *setup(tmp_path, buf.getvalue())) == (
        f"{tmp_path / 'm.pt2'}: written by torch 2.7 or earlier, whose format keeps the weights "
        f"in a pickle: re-save it with a newer torch.export.save; {TRUST}")
    assert not marker.exists()


# =================================================================================================
# 2. broken archives: one line each
# =================================================================================================
def _flip(data: bytes, member: str, skip: int = 2) -> bytes:
    """``data`` with one byte of ``member``'s stored bytes inverted (its CRC no longer holds)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                    info.header_offset + 30])
    at = info.header_offset + 30 + name_len + extra_len + skip
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _edit_weight(**meta):
    def edit(doc):
        doc["config"]["0.weight"]["tensor_meta"].update(meta)
    return edit


def _dangling(doc):
    node = doc["graph_module"]["graph"]["nodes"][0]
    node["inputs"][0]["arg"] = {"as_tensor": {"name": "nope"}}


def _two_folders(data: bytes) -> bytes:
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("other/x", b"")
    return buf.getvalue()


def _deep_arguments(doc):
    arg = {"as_none": None}
    for _ in range(100):
        arg = {"as_optional_tensors": [arg]}
    doc["graph_module"]["graph"]["nodes"][0]["inputs"][0]["arg"] = arg


def _path_name(doc):
    doc["config"]["0.weight"]["path_name"] = "../../etc/passwd"


BROKEN = {
    "not_a_zip": (lambda d: b"hello, " * 100, "not a torch.export.save file (not a zip archive, "
                                              "or cut short)"),
    "empty": (lambda d: b"", "not a torch.export.save file (not a zip archive: 0 bytes)"),
    "truncated": (lambda d: d[:len(d) // 2], "not a torch.export.save file (not a zip archive, "
                                             "or cut short)"),
    "bad_crc": (lambda d: _flip(d, weight_file(d)),
                "{w}: corrupt zip member (Bad CRC-32 for file 'm/{w}')"),
    "bad_json": (lambda d: variant(d, put={"models/model.json": b"{nope"}),
                 "models/model.json: not valid JSON (Expecting property name enclosed in double "
                 "quotes: line 1 column 2 (char 1))"),
    "deep_json": (lambda d: variant(d, put={"models/model.json": b"[" * 200_000}),
                  "models/model.json: JSON nested too deeply"),
    "no_graph": (lambda d: variant(d, drop=["models/model.json"]),
                 "not a torch.export.save file (models/model.json is missing)"),
    "no_format": (lambda d: variant(d, drop=["archive_format"]),
                  "not a torch.export.save file (no archive_format: pt2 inside)"),
    "no_weight_member": (lambda d: variant(d, drop=[weight_file(d)]),
                         "not a torch.export.save file ({w} is missing)"),
    "dangling_input": (lambda d: variant(d, model=_dangling),
                       "models/model.json: node conv2d: input: refers to 'nope', which no earlier "
                       "node produces"),
    "deep_arguments": (lambda d: variant(d, model=_deep_arguments),
                       "models/model.json: node conv2d: input: arguments nested too deeply"),
    "complex_dtype": (lambda d: variant(d, weights=_edit_weight(dtype=10)),
                      "weight '0.weight': dtype 10 is not supported (real numbers only)"),
    "offset_past_storage": (lambda d: variant(d, weights=_edit_weight(
        storage_offset={"as_int": 1000})), "weight '0.weight': sizes [2, 1, 3, 3], strides [9, 9, "
                                           "3, 1] and offset 1000 reach value 1,018 of the 18 "
                                           "that {w} holds"),
    "negative_size": (lambda d: variant(d, weights=_edit_weight(sizes=[{"as_int": -1}],
                                                                strides=[{"as_int": 1}])),
                      "weight '0.weight': sizes: -1 is out of range"),
    "path_outside": (lambda d: variant(d, weights=_path_name),
                     "data/weights/: weight '0.weight': bad file name '../../etc/passwd'"),
    "big_endian": (lambda d: variant(d, put={"byteorder": b"big"}),
                   "written on a big-endian machine; this one is little-endian"),
    "two_folders": (lambda d: _two_folders(d), "not a torch.export.save file (its zip members "
                                               "are not all in one folder)"),
    "long_name": (lambda d: variant(d, put={"a" * 5000: b""}),
                  "not a torch.export.save file: a zip member name of 5,002 bytes (at most "
                  "1,024)"),
    "directory_past_the_file": (lambda d: bytes(1 << 20) + struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, 0xFFFFFFF0, 0, 0),
        "not a torch.export.save file: its zip directory declares 4,294,967,280 bytes (at most "
        "1,048,598)"),
}


@pytest.mark.skipif(sys.byteorder != "little", reason="the lines name this machine's byte order")
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_pt2_is_one_line(pt2, tmp_path, capsys, case):
    make, message = BROKEN[case]
    argv = setup(tmp_path, make(pt2))
    assert one_line(capsys, *argv) == \
        f"{tmp_path / 'm.pt2'}: " + message.format(w=weight_file(pt2))


# =================================================================================================
# 3. checkpoints: weights_only, checked
# =================================================================================================
class _Model(torch.nn.Linear):
    """What Checkpoint.save and restore_model touch of a QNet."""

    def __init__(self, out=3):
        super().__init__(4, out)
        self.bn, self.wsteps, self.lambdas = None, {"fc": np.float64(0.25)}, {}
        self.scales, self.mode, self.cycle = {"fc": np.float64(1.5)}, "count", False


FINGERPRINT = {"method": "nc", "epochs": 2, "layers": [("fc", "fc", (3, 4))], "threads": 1}


def _loop(model):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched, torch.Generator().manual_seed(0)


def write_checkpoint(path) -> None:
    from xbarsim.train.checkpoint import Checkpoint

    model = _Model()
    ck = Checkpoint(path, dict(FINGERPRINT))
    ck.history.append({"stage": "nc", "epoch": 1, "ce": np.float64(0.5), "train_acc": 0.25})
    ck.figures["nc_float_weights"] = np.float64(0.75)
    ck.clustering["fc"] = {"step": np.float64(0.25), "theta": np.int64(4),
                           "levels": np.arange(3)}
    ck.save("nc", 1, model, *_loop(model))


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    """NumPy numbers and arrays in what the loop records are saved as Python numbers and
    tensors, so the file loads with weights_only=True and resumes."""
    from xbarsim.train.checkpoint import Checkpoint

    path = tmp_path / "c.pt"
    write_checkpoint(path)
    torch.load(path, weights_only=True)
    lines = []
    ck = Checkpoint(path, dict(FINGERPRINT, threads=4), resume=True, log=lines.append)
    assert lines == [f"resume: nc epoch 1 done ({path})"]
    assert ck.figures == {"nc_float_weights": 0.75}
    assert type(ck.figures["nc_float_weights"]) is float
    assert torch.equal(ck.clustering["fc"]["levels"], torch.arange(3))
    model = _Model()
    ck.restore_model(model)
    assert model.wsteps == {"fc": 0.25} and model.scales == {"fc": 1.5}
    ck.restore_loop(*_loop(_Model()))


def test_malicious_checkpoint_is_refused_and_never_run(tmp_path):
    from xbarsim.errors import XbarsimError
    from xbarsim.train.checkpoint import Checkpoint

    marker, path = tmp_path / "MARKER", tmp_path / "evil.pt"
    torch.save({"fingerprint": Payload(marker), "stage": "nc"}, path)
    with pytest.raises(XbarsimError) as info:
        Checkpoint(path, dict(FINGERPRINT), resume=True, log=lambda _: None)
    assert str(info.value) == (
        f"{path}: --resume: holds a Python object other than tensors and plain values (global "
        "exec); xbarsim reads checkpoints as data and never runs code from them")
    assert not marker.exists()
    # safe: the test's own crafted file, whose payload only creates a marker in tmp_path; this
    # proves the payload is live (what xbarsim used to do), so the refusal above is meaningful
    torch.load(path, weights_only=False)
    assert marker.exists()


def _mnist_or_skip():
    from xbarsim import datasets

    if datasets.find_dataset("mnist", "train") is None or \
            datasets.find_dataset("mnist", "test") is None:
        pytest.skip("MNIST not found (set XBARSIM_DATA)")


TINY = """\
name: tiny
dataset: mnist
input: {shape: [1, 28, 28]}
bits: {signal: 3, weight: 3}
weights: random
layers:
  - {name: conv1, type: conv, out_channels: 4, kernel: 5, stride: 2}
  - {name: pool1, type: maxpool, kernel: 2}
  - {name: fc1, type: fc, out_features: 10}
"""


def test_train_resume_from_a_malicious_checkpoint_is_one_line(tmp_path, capsys):
    _mnist_or_skip()
    marker, path = tmp_path / "MARKER", tmp_path / "evil.pt"
    torch.save({"fingerprint": Payload(marker)}, path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert one_line(capsys, "train", tmp_path / "tiny.yaml", "--bits", "3,3", "--method",
                    "plain", "--epochs", "1", "--train-limit", "100", "--test-limit", "50",
                    "--batch", "50", "--no-progress", "--out", tmp_path / "p.npz",
                    "--checkpoint", path, "--resume") == (
        f"xbarsim: error: {path}: --resume: holds a Python object other than tensors and plain "
        "values (global exec); xbarsim reads checkpoints as data and never runs code "
        "from them")
    assert not marker.exists()


def _garbage(path):
    path.write_bytes(b"\x80\x02garbage" * 50)


def _truncated(path):
    write_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _corrupt_member(path):
    """One byte of the model's first tensor inverted: torch's reader does not check CRCs; the
    resumed run would silently start from other weights."""
    write_checkpoint(path)
    path.write_bytes(_flip(path.read_bytes(), "data/0", skip=0))


def _not_a_dict(path):
    torch.save([1, 2, 3], path)


def _missing_entry(path):
    write_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    del saved["opt"]
    torch.save(saved, path)


def _wrong_type(path):
    write_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    saved["epoch"] = "1"
    torch.save(saved, path)


def _stride_0(path):
    """A tensor claiming 2^40 values over one stored byte (what --resume would copy in)."""
    write_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    saved["gen"] = torch.zeros(1, dtype=torch.uint8).expand(1 << 40)
    torch.save(saved, path)


def _string_figure(path):
    write_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    saved["figures"]["nc_float_weights"] = "75%"
    torch.save(saved, path)


CHECKPOINTS = {
    "string_figure": (_string_figure, "figures.nc_float_weights: expected a number (got str)"),
    "garbage": (_garbage, "not a checkpoint written by xbarsim train (not a zip archive, or cut "
                          "short)"),
    "truncated": (_truncated, "not a checkpoint written by xbarsim train (not a zip archive, or "
                              "cut short)"),
    "not_a_dict": (_not_a_dict, "not a checkpoint written by xbarsim train (holds a list)"),
    "missing_entry": (_missing_entry, "not a checkpoint written by xbarsim train (no 'opt' "
                                      "entry)"),
    "wrong_type": (_wrong_type, "epoch: expected int (got str)"),
    "stride_0": (_stride_0, "checkpoint.gen: a tensor of shape [1099511627776] needs "
                            "1,099,511,627,776 bytes but its storage holds 1"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_broken_checkpoint_is_one_line(tmp_path, case):
    from xbarsim.errors import XbarsimError
    from xbarsim.train.checkpoint import Checkpoint

    make, message = CHECKPOINTS[case]
    path = tmp_path / "c.pt"
    make(path)
    with pytest.raises(XbarsimError) as info:
        Checkpoint(path, dict(FINGERPRINT), resume=True, log=lambda _: None)
    assert str(info.value) == f"{path}: --resume: {message}"


def test_corrupt_checkpoint_member_is_one_line(tmp_path):
    from xbarsim.errors import XbarsimError
    from xbarsim.train.checkpoint import Checkpoint

    path = tmp_path / "c.pt"
    _corrupt_member(path)
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data/0"))
    with pytest.raises(XbarsimError) as info:
        Checkpoint(path, dict(FINGERPRINT), resume=True, log=lambda _: None)
    assert str(info.value) == (f"{path}: --resume: {name}: corrupt zip member (Bad CRC-32 for "
                               f"file '{name}')")


def test_checkpoint_with_a_string_learning_rate_does_not_fit(tmp_path):
    """Loaded into the optimizer, it would fail at the first step with a traceback."""
    from xbarsim.errors import XbarsimError
    from xbarsim.train.checkpoint import Checkpoint

    path = tmp_path / "c.pt"
    write_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    saved["opt"]["param_groups"][0]["lr"] = "0.1; rm -rf /"
    torch.save(saved, path)
    ck = Checkpoint(path, dict(FINGERPRINT), resume=True, log=lambda _: None)
    with pytest.raises(XbarsimError) as info:
        ck.restore_loop(*_loop(_Model()))
    assert str(info.value) == (f"{path}: --resume: the checkpoint does not fit this run "
                               "(optimizer setting lr is '0.1; rm -rf /')")


def test_checkpoint_of_another_shape_does_not_fit(tmp_path):
    from xbarsim.errors import XbarsimError
    from xbarsim.train.checkpoint import Checkpoint

    path = tmp_path / "c.pt"
    write_checkpoint(path)
    ck = Checkpoint(path, dict(FINGERPRINT), resume=True, log=lambda _: None)
    with pytest.raises(XbarsimError) as info:
        ck.restore_model(_Model(out=5))
    assert str(info.value).startswith(
        f"{path}: --resume: the checkpoint does not fit this run (Error(s) in loading state_dict "
        "for _Model: size mismatch for weight")


# =================================================================================================
# 4. bombs and special files, under a 1 GiB address-space limit
# =================================================================================================
RUNNER = """
import contextlib, io, json, sys
from xbarsim.cli import main
from xbarsim.errors import XbarsimError
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if argv[0] == "checkpoint":
            from xbarsim.train.checkpoint import load
            try:
                load(argv[1])
                rc = 0
            except XbarsimError as exc:
                print(exc, file=sys.stderr)
                rc = 2
        else:
            rc = main(argv)
    results[name] = [rc, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def _limit_memory():  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (GIB, GIB))


def _fixed_batch(doc):
    """The program declares a fixed batch of ten million images (the float model's runs would
    pad every chunk to it)."""
    values = doc["graph_module"]["graph"]["tensor_values"]
    spec = next(s for s in doc["graph_module"]["signature"]["input_specs"] if "user_input" in s)
    values[spec["user_input"]["arg"]["as_tensor"]["name"]]["sizes"][0] = {"as_int": 10_000_000}


@pytest.fixture(scope="module")
def bombs(pt2, tmp_path_factory):
    """Every case below, run once in one subprocess under RLIMIT_AS = 1 GiB: ``{case: line}``."""
    tmp = tmp_path_factory.mktemp("bombs")
    rng = np.random.default_rng(0)
    np.save(tmp / "cal.npy", rng.integers(0, 256, (8, 1, 8, 8), dtype=np.uint8))
    root, files = members(pt2)
    stream, crc, size = zero_bomb()
    member = weight_file(pt2)

    def bomb_in(name):
        rest = {n: d for n, d in files.items() if n != name}
        return write_zip(stored(rest, root) + [deflated(f"{root}/{name}", stream, crc, size)])

    cases = {
        "deflate_bomb_weight": bomb_in(member),
        "deflate_bomb_graph": bomb_in("models/model.json"),
        "stride_0": variant(pt2, weights=_edit_weight(sizes=[{"as_int": 1 << 40}],
                                                      strides=[{"as_int": 0}])),
        "past_budget": variant(pt2, weights=_edit_weight(
            sizes=[{"as_int": 16384}, {"as_int": 16384}], strides=[{"as_int": 16384},
                                                                   {"as_int": 1}])),
        "fixed_batch": variant(pt2, model=_fixed_batch),
        "ten_million_members": struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0,
                                           10_000_000, 10_000_000, 1 << 30, 0)
        + struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1)
        + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF,
                      0),
    }
    argv = {}
    for name, data in cases.items():
        (tmp / f"{name}.pt2").write_bytes(data)
        argv[name] = ["import", f"{name}.pt2", "--bits", "4,4", "--calibrate", "cal.npy",
                      "--out", "x.yaml"]
    os.mkfifo(tmp / "fifo.pt2")
    (tmp / "zero.pt2").symlink_to("/dev/zero")
    for name in ("fifo", "zero"):
        argv[name] = ["import", f"{name}.pt2", "--bits", "4,4", "--calibrate", "cal.npy",
                      "--out", "x.yaml"]
        argv[f"{name}_trusted"] = argv[name] + ["--trust-pickle"]
    write_checkpoint(tmp / "c.pt")
    with zipfile.ZipFile(tmp / "c.pt") as z:
        ck_root = z.namelist()[0].split("/", 1)[0]
        ck_files = {n[len(ck_root) + 1:]: z.read(n) for n in z.namelist()}
    (tmp / "bomb.pt").write_bytes(write_zip(stored(ck_files, ck_root)
                                            + [deflated(f"{ck_root}/data/99", stream, crc, size)]))
    argv["checkpoint_bomb"] = ["checkpoint", "bomb.pt"]
    os.mkfifo(tmp / "fifo.pt")
    argv["checkpoint_fifo"] = ["checkpoint", "fifo.pt"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argv)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_memory)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = {}
    for name, (rc, out, err) in results.items():
        assert (rc, out) == (2, ""), (name, err)
        assert err.count("\n") == 1, (name, err)
        lines[name] = err[:-1]
    return lines, weight_file(pt2), sum(len(d) for d in ck_files.values()) + size


def test_deflate_bomb_weight_is_refused_unread(bombs):
    lines, member, _ = bombs
    assert lines["deflate_bomb_weight"] == (
        f"deflate_bomb_weight.pt2: {member}: declares 2,147,483,648 bytes, more than the "
        f"{LIMITED_BUDGET:,} xbarsim reads there")


def test_deflate_bomb_graph_is_refused_unread(bombs):
    assert bombs[0]["deflate_bomb_graph"] == (
        "deflate_bomb_graph.pt2: models/model.json: declares 2,147,483,648 bytes, more than the "
        f"{LIMITED_BUDGET // 32:,} xbarsim reads there")


def test_stride_0_tensor_of_a_trillion_values_is_refused(bombs):
    assert bombs[0]["stride_0"] == (
        "stride_0.pt2: weight '0.weight': declared shape [1099511627776] holds "
        "1,099,511,627,776 values (8,796,093,022,208 bytes as float64), more than the "
        f"{LIMITED_BUDGET:,} bytes of memory available")


def test_declared_size_past_the_memory_budget_is_refused(bombs):
    assert bombs[0]["past_budget"] == (
        "past_budget.pt2: weight '0.weight': declared shape [16384, 16384] holds 268,435,456 "
        f"values (2,147,483,648 bytes as float64), more than the {LIMITED_BUDGET:,} bytes of "
        "memory available")


def test_fixed_batch_of_ten_million_images_is_refused(bombs):
    assert bombs[0]["fixed_batch"] == (
        "fixed_batch.pt2: forward: a batch of 10,000,000 image(s) takes 5,760,000,000 bytes at its "
        f"largest activation, more than the {LIMITED_BUDGET:,} bytes of memory available (got "
        "[10000000, 1, 8, 8])")


def test_zip_listing_ten_million_members_is_refused(bombs):
    assert bombs[0]["ten_million_members"] == (
        "ten_million_members.pt2: not a torch.export.save file: its zip directory lists "
        "10,000,000 members (at most 100,000)")


@pytest.mark.parametrize("trusted", ["", "_trusted"])
def test_fifo_as_pt2_does_not_hang(bombs, trusted):
    assert bombs[0][f"fifo{trusted}"] == "fifo.pt2: not a regular file: a FIFO (named pipe)"


@pytest.mark.parametrize("trusted", ["", "_trusted"])
def test_dev_zero_as_pt2_reads_nothing(bombs, trusted):
    assert bombs[0][f"zero{trusted}"] == "zero.pt2: not a regular file: a character device"


def test_checkpoint_bomb_is_refused_unread(bombs):
    lines, _, total = bombs
    assert lines["checkpoint_bomb"] == (
        f"bomb.pt: --resume: its members declare {total:,} bytes, more than the "
        f"{LIMITED_BUDGET:,} bytes of memory available")


def test_fifo_as_checkpoint_does_not_hang(bombs):
    assert bombs[0]["checkpoint_fifo"] == (
        "fifo.pt: --resume: not a regular file: a FIFO (named pipe)")
