"""Issue 26, readers: every path argument refuses a FIFO or other special file, every reader is
bounded (``import --calibrate``, ``.npz`` members nobody reads, trace manifests and events),
outputs are replaced whole or not at all (a trace, an imported network), and the old corpus
(YAML tags, subnormal scales, float weights past float32).

Each error case asserts its exact line on stderr, nothing on stdout and exit status 2. Cases
that could hang or blow memory run ``python -m xbarsim`` in a subprocess (under a 1 GiB
address-space limit where memory is the risk, with a timeout against a hang); the rest run
in-process through :func:`xbarsim.cli.main`. Every input is generated in ``tmp_path``.
"""

from __future__ import annotations

import errno
import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import xbarsim.engine.trace
from conftest import limit_memory as _limit_memory, one_line
from xbarsim.cli import main
from xbarsim.engine.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
LIMITED_BUDGET = GIB // 2  # what one array may take under the subprocesses' 1 GiB limit
HAS_NIR = importlib.util.find_spec("nir") is not None and importlib.util.find_spec("h5py")

TINY = """name: tiny
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: WEIGHTS
seed: 0
layers:
  - {name: fc1, type: fc, out_features: 3}
"""

TWO = """name: two
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 6}
  - {name: fc2, type: fc, out_features: 3}
"""


def tiny(tmp_path, weights="random", text=TINY, name="net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("WEIGHTS", weights))
    return path


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def sub(cwd, *argv, rc=2):
    """``python -m xbarsim ARGV`` in ``cwd`` under a 1 GiB address-space limit; checks the exit
    status (and, for 2, no stdout and one stderr line) and returns ``(stdout, stderr)``."""
    proc = subprocess.run([sys.executable, "-m", "xbarsim", *map(str, argv)], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_memory)
    assert proc.returncode == rc, proc.stderr[-2000:]
    if rc == 2:
        assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def npy_header(shape, dtype="<u1") -> bytes:
    """A .npy file's magic and header declaring ``shape`` (no data follows)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# =================================================================================================
# 1. FIFOs and special files, for every path argument of every command
# =================================================================================================

#: Runs in a child: each ``argv`` through ``main``, stdout/stderr captured, SIGALRM after 20 s
#: turning a hang into a result; one JSON line per case, flushed, so a case that hangs where
#: the alarm cannot reach (inside a C library) is still named by the parent's timeout.
DRIVER = r"""
import contextlib, io, json, signal, sys
from xbarsim.cli import main

class Hang(BaseException):
    pass

def alarm(*_):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(20)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except Hang:
        rc = "hang"
    except BaseException as exc:
        rc = f"raised {type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
    print(json.dumps([rc, out.getvalue(), err.getvalue()]), flush=True)
"""

FIFO_MSG = "not a regular file: a FIFO (named pipe)"

#: ``(id, argv, the one line expected)``; ``{d}`` stands for the folder the cases run in. FIFOs:
#: ``p.yaml p.npy p.npz p.json p.pt2 p.nir``, ``wfifo.yaml`` names ``weights: p.npz``,
#: ``dfifo.yaml`` names ``device: p.yaml``, folders ``tr/`` (trace.json a FIFO) and ``te/`` (an
#: events file a FIFO).
FIFO_CASES = [
    ("map network", ["map", "p.yaml"], f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("run network", ["run", "p.yaml"], f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("run --inputs", ["run", "tiny.yaml", "--inputs", "p.npy"],
     f"xbarsim: error: p.npy: --inputs: {FIFO_MSG}"),
    ("run --labels", ["run", "tiny.yaml", "--inputs", "x.npy", "--labels", "p.npy"],
     f"xbarsim: error: p.npy: --labels: {FIFO_MSG}"),
    ("run --weights", ["run", "tiny.yaml", "--weights", "p.npz"],
     f"p.npz: cannot read weights file ({FIFO_MSG})"),
    ("network weights:", ["run", "wfifo.yaml"],
     "wfifo.yaml:5: weights: not a regular file: {d}/p.npz (got p.npz)"),
    ("network device:", ["run", "dfifo.yaml"],
     "dfifo.yaml:7: device: not a regular file: {d}/p.yaml (got p.yaml)"),
    ("spice network", ["spice", "p.yaml", "--layer", "fc1"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("spice --device", ["spice", "tiny.yaml", "--layer", "fc1", "--device", "p.yaml"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("spice --inputs", ["spice", "tiny.yaml", "--layer", "fc1", "--inputs", "p.npy"],
     f"xbarsim: error: p.npy: --inputs: {FIFO_MSG}"),
    ("export network", ["export", "p.yaml", "--nir", "o.nir"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("sweep spec", ["sweep", "p.yaml", "--out", "so"], f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("trace plot trace.json", ["trace", "plot", "tr"],
     f"xbarsim: error: tr/trace.json: not a readable trace manifest ({FIFO_MSG})"),
    ("trace plot events", ["trace", "plot", "te"],
     "xbarsim: error: te/fc1.events: layers.fc1: events file missing (or not a regular file)"),
    ("report results", ["report", "p.json"],
     f"xbarsim: error: p.json: not a readable results file ({FIFO_MSG})"),
    ("report --circuit", ["report", "tiny.yaml", "--circuit", "p.yaml"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("table5 --circuit", ["table5", "--circuit", "p.yaml"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("train network", ["train", "p.yaml", "--bits", "4,4", "--out", "o.npz"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("map a device", ["map", "/dev/zero"],
     "/dev/zero: cannot read file: not a regular file: a character device"),
    ("run --weights a device", ["run", "tiny.yaml", "--weights", "/dev/zero"],
     "/dev/zero: cannot read weights file (not a regular file: a character device)"),
    ("run --inputs a folder", ["run", "tiny.yaml", "--inputs", "tr"],
     "xbarsim: error: tr: --inputs: not a regular file: a folder"),
]
NIR_FIFO_CASES = [
    ("import --calibrate", ["import", "x.nir", "--out", "o.yaml", "--calibrate", "p.npy"],
     f"xbarsim: error: p.npy: --calibrate: {FIFO_MSG}"),
    ("import --calibrate a device", ["import", "x.nir", "--out", "o.yaml", "--calibrate",
                                     "zero.npy"],
     "xbarsim: error: zero.npy: --calibrate: not a regular file: a character device"),
    ("import .nir", ["import", "p.nir", "--out", "o.yaml"], f"p.nir: {FIFO_MSG}"),
    ("trace plot .nir", ["trace", "plot", "p.nir"], f"xbarsim: error: p.nir: {FIFO_MSG}"),
]
#: Readers of other parts of issue 26 (sweep points, .pt2, checkpoints, float-form files) and
#: of files named inside other files.
FIFO_CASES += [
    ("sweep plot", ["sweep", "plot", "sw"],
     f"xbarsim: error: sw/sweep.json: unreadable sweep manifest ({FIFO_MSG})"),
    ("sweep network:", ["sweep", "sweep.yaml", "--out", "so"],
     "sweep.yaml:1: network: not a regular file: {d}/p.yaml (got p.yaml)"),
    ("paper --from-json", ["paper", "lenet", "--from-json", "p.json"],
     f"xbarsim: error: --from-json: p.json: not a readable JSON file ({FIFO_MSG})"),
    ("table5 --networks", ["table5", "--networks", "nets"],
     f"nets/lenet-mnist.yaml: cannot read file: {FIFO_MSG}"),
]
MNIST = Path(os.environ.get("XBARSIM_DATA", "/nonexistent"), "mnist",
             "train-images-idx3-ubyte.gz").is_file()
TORCH_FIFO_CASES = [
    ("import .pt2", ["import", "p.pt2", "--bits", "4,4", "--out", "o.yaml", "--calibrate",
                     "x.npy"], f"p.pt2: {FIFO_MSG}"),
] + ([
    ("train --init", ["train", "mnist.yaml", "--bits", "4,4", "--out", "o.npz", "--init",
                      "p.npz"], f"xbarsim: error: p.npz: --init: {FIFO_MSG}"),
    ("train --resume", ["train", "mnist.yaml", "--bits", "4,4", "--out", "o.npz",
                        "--checkpoint", "p.pt", "--resume"],
     f"xbarsim: error: p.pt: --resume: {FIFO_MSG}"),
] if MNIST else [])


def _fifo_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fifo")
    for name in ("p.yaml", "p.npy", "p.npz", "p.json", "p.pt2", "p.nir", "p.pt"):
        os.mkfifo(d / name)
    tiny(d, name="tiny.yaml")
    tiny(d, text=TINY.replace("synthetic", "mnist").replace("[1, 4, 4]", "[1, 28, 28]"),
         name="mnist.yaml")
    (d / "sw").mkdir()
    os.mkfifo(d / "sw" / "sweep.json")
    (d / "sweep.yaml").write_text("network: p.yaml\nsamples: 2\nseeds: 1\n"
                                  "grid:\n  device.read_noise_rel: [0.0]\n")
    (d / "nets").mkdir()
    os.mkfifo(d / "nets" / "lenet-mnist.yaml")
    tiny(d, "p.npz", name="wfifo.yaml")
    tiny(d, text=TINY.replace("seed: 0", "seed: 0\ndevice: p.yaml"), name="dfifo.yaml")
    np.save(d / "x.npy", np.zeros((2, 1, 4, 4), np.uint8))
    os.symlink("/dev/zero", d / "zero.npy")
    (d / "tr").mkdir()
    os.mkfifo(d / "tr" / "trace.json")
    (d / "te").mkdir()
    (d / "te" / "trace.json").write_text(json.dumps({
        "format": "xbarsim-trace-1", "images": [0],
        "layers": {"fc1": {"file": "fc1.events", "neurons": 3, "events": 0, "cycles": 15}}}))
    os.mkfifo(d / "te" / "fc1.events")
    if HAS_NIR:
        assert main(["export", str(d / "tiny.yaml"), "--nir", str(d / "x.nir")]) == 0
    return d


def _drive(d: Path, cases) -> dict:
    """Every case's ``[rc, stdout, stderr]`` from one child running :data:`DRIVER` in ``d``."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([c[1] for c in cases])],
                          cwd=d, env=_env(), capture_output=True, text=True, timeout=600)
    lines = proc.stdout.splitlines()
    results = {case[0]: json.loads(line) for case, line in zip(cases, lines)}
    if len(lines) < len(cases):  # killed by the timeout inside a C call: that case hung
        results[cases[len(lines)][0]] = ["hang", "", proc.stderr[-500:]]
    return results


@pytest.fixture(scope="module")
def fifo_folder(tmp_path_factory):
    return _fifo_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def fifo_results(fifo_folder):
    return _drive(fifo_folder, FIFO_CASES + (NIR_FIFO_CASES if HAS_NIR else []))


@pytest.fixture(scope="module")
def torch_fifo_results(fifo_folder):
    return _drive(fifo_folder, TORCH_FIFO_CASES)


def _check(case, folder, results):
    name, argv, want = case
    assert name in results, f"{name}: not reached (an earlier case hung the driver)"
    rc, out, err = results[name]
    assert (rc, out) == (2, ""), err
    assert err == want.replace("{d}", str(Path(os.path.realpath(folder)))) + "\n"


@pytest.mark.parametrize("case", FIFO_CASES + NIR_FIFO_CASES, ids=lambda c: c[0])
def test_a_fifo_for_a_path_argument_is_one_line(case, fifo_folder, fifo_results):
    if case in NIR_FIFO_CASES and not HAS_NIR:
        pytest.skip("needs the nir extra")
    if case[0] == "train network" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed (xbarsim train says so before it reads the network)")
    _check(case, fifo_folder, fifo_results)


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.parametrize("case", TORCH_FIFO_CASES, ids=lambda c: c[0])
def test_a_fifo_for_a_torch_path_argument_is_one_line(case, fifo_folder, torch_fifo_results):
    pytest.importorskip("torch")
    _check(case, fifo_folder, torch_fifo_results)


def test_replacing_a_trace_whose_manifest_is_a_fifo_does_not_hang(tmp_path):
    tiny(tmp_path)
    (tmp_path / "T").mkdir()
    os.mkfifo(tmp_path / "T" / "trace.json")
    (tmp_path / "T" / "notes.txt").write_text("mine")
    sub(tmp_path, "run", "net.yaml", "--samples", "2", "--trace", "T", rc=0)
    assert read_trace(tmp_path / "T")["_manifest"]["images"] == [0, 1]
    assert (tmp_path / "T" / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["T", "net.yaml"]


# =================================================================================================
# 2. import --calibrate: the hardened reader, only the images it uses
# =================================================================================================

def _sparse_npy(path: Path, rows: int, image=(1, 4, 4)) -> None:
    """A .npy declaring ``rows`` uint8 images, its data a hole (a sparse file of that length)."""
    head = npy_header((rows, *image))
    with open(path, "wb") as fh:
        fh.write(head)
        fh.write(np.full(int(np.prod(image)) * 2, 7, np.uint8).tobytes())
        fh.truncate(len(head) + rows * int(np.prod(image)))


@pytest.fixture
def exported(tmp_path):
    pytest.importorskip("nir")
    tiny(tmp_path)
    assert main(["export", str(tmp_path / "net.yaml"), "--nir", str(tmp_path / "x.nir")]) == 0
    return tmp_path


@pytest.mark.nir
def test_calibrate_with_a_sparse_6_gib_npy_reads_only_the_samples(exported):
    _sparse_npy(exported / "big.npy", 6 * GIB // 16)
    assert (exported / "big.npy").stat().st_size > 6 * GIB
    out, _ = sub(exported, "import", "x.nir", "--out", "o.yaml", "--calibrate", "big.npy",
                 "--samples", "2", rc=0)
    assert out.splitlines()[-1] == "wrote o.yaml and o.npz"


@pytest.mark.nir
@pytest.mark.parametrize("make,why", [
    (lambda p: p.write_bytes(npy_header((10**9, 1, 4, 4)) + bytes(32)),
     "declared array shape (1000000000, 1, 4, 4) of uint8 needs 16,000,000,000 bytes but the "
     "file holds at most 160"),
    # writes (never reads) a pickled .npy: the input xbarsim must refuse without unpickling
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
     "holds Python objects (a pickle), which xbarsim does not load"),
    (lambda p: np.save(p, np.zeros((2, 1, 4, 4))), "images must be uint8 (got float64)"),
    (lambda p: p.write_bytes(b"PK\x03\x04junk"), "is an .npz archive; give a single .npy array"),
    (lambda p: p.mkdir(), "not a regular file: a folder"),
    (lambda p: None, "file not found"),
], ids=["declares-more-than-it-holds", "pickle", "float", "npz", "folder", "missing"])
def test_calibrate_file_errors_are_one_line(exported, capsys, make, why):
    cal = exported / "c.npy"
    make(cal)
    assert one_line(capsys, "import", exported / "x.nir", "--out", exported / "o.yaml",
                    "--calibrate", cal) == f"xbarsim: error: {cal}: --calibrate: {why}"
    assert not (exported / "o.yaml").exists()


def test_calibration_images_read_only_the_first_samples(tmp_path):
    from xbarsim.interop.model_file import calibration_images

    _sparse_npy(tmp_path / "big.npy", 1 << 28)  # 4 GiB declared, a few bytes on disk
    images, labels, source = calibration_images(str(tmp_path / "big.npy"), 2)
    assert images.shape == (2, 1, 4, 4) and images.dtype == np.uint8 and labels is None
    assert images.ravel().tolist() == [7] * 32
    assert source == f"2 images from {tmp_path / 'big.npy'}"
    fortran = np.asfortranarray(np.arange(5 * 16, dtype=np.uint8).reshape(5, 1, 4, 4))
    np.save(tmp_path / "f.npy", fortran)
    images, _, _ = calibration_images(str(tmp_path / "f.npy"), 2)
    assert images.shape == (2, 1, 4, 4) and (images == fortran[:2]).all()


# =================================================================================================
# 3. .npz members: one no reader asks for is never decompressed; the rest bounded by their header
# =================================================================================================

def _deflated_zeros(prefix: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, made without compressing
    them all: one 16 MiB block of zeros, compressed once from a fresh state and ending on a full
    flush (so it refers to nothing before it), is repeated."""
    chunk = 1 << 24
    assert zeros % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + block * (zeros // chunk) + b"\x03\x00"  # an empty final block


def _zip(members) -> bytes:
    """A zip archive of ``(name, method, payload, size, crc)`` members, written by hand (so a
    member's declared size can be anything)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, method, payload, size, crc in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc,
                              len(payload), size, len(raw), 0) + raw + payload)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                                  len(payload), size, len(raw), 0, 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                          len(central.getvalue()), start, 0))
    return out.getvalue()


def _stored(name, data: bytes):
    return (name, zipfile.ZIP_STORED, data, len(data), zlib.crc32(data))


def _good_members():
    buf = io.BytesIO()
    np.save(buf, np.ones((3, 16), np.int32))
    levels = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.array(4))
    return [_stored("fc1.levels.npy", levels), _stored("fc1.theta.npy", buf.getvalue())]


#: 3.75 GiB of zeros after an .npy header declaring them, deflated to about 4 MB.
BOMB_ZEROS = 240 << 24


def _bomb(name):
    head = npy_header((BOMB_ZEROS,))
    return (name, zipfile.ZIP_DEFLATED, _deflated_zeros(head, BOMB_ZEROS),
            len(head) + BOMB_ZEROS, 0)  # CRC never reached: nothing reads it


def test_a_bomb_in_an_ignored_npz_member_is_never_decompressed(tmp_path):
    (tmp_path / "w.npz").write_bytes(_zip(_good_members() + [_bomb("meta.junk.npy")]))
    tiny(tmp_path, "w.npz")
    out, _ = sub(tmp_path, "run", "net.yaml", "--samples", "2", rc=0)
    assert "accuracy" in out or "predictions agree" in out


def test_a_bomb_in_a_member_of_an_unknown_name_is_refused_unread(tmp_path):
    (tmp_path / "w.npz").write_bytes(_zip(_good_members() + [_bomb("fc1.junk.npy")]))
    tiny(tmp_path, "w.npz")
    _, err = sub(tmp_path, "map", "net.yaml")
    assert err == (f"{tmp_path / 'w.npz'}: fc1.junk: unknown field 'junk' (expected levels, "
                   f"bias, theta, step or weight, bias_float, act_scale)\n")


def test_a_used_member_bomb_is_bounded_by_the_budget(tmp_path):
    members = [m for m in _good_members() if m[0] != "fc1.levels.npy"]
    (tmp_path / "w.npz").write_bytes(_zip(members + [_bomb("fc1.levels.npy")]))
    tiny(tmp_path, "w.npz")
    _, err = sub(tmp_path, "map", "net.yaml")
    assert err == (f"{tmp_path / 'w.npz'}: fc1.levels: declared array shape ({BOMB_ZEROS},) of "
                   f"uint8 needs {BOMB_ZEROS:,} bytes, more than the {LIMITED_BUDGET:,} bytes of "
                   f"memory available\n")


def test_a_member_of_another_shape_is_refused_from_its_header(tmp_path, capsys):
    buf = io.BytesIO()
    np.save(buf, np.ones((300, 16), np.int32))
    body = buf.getvalue()
    members = [m for m in _good_members() if m[0] != "fc1.levels.npy"]
    # the data after the header is corrupt: a reader that went past the header would say so
    members.append(("fc1.levels.npy", zipfile.ZIP_STORED, body, len(body), 12345))
    (tmp_path / "w.npz").write_bytes(_zip(members))
    path = tiny(tmp_path, "w.npz")
    assert one_line(capsys, "map", path) == (
        f"{tmp_path / 'w.npz'}: fc1.levels: shape does not match layer fc1 ({path}:8), which "
        f"needs (3, 16) (got (300, 16))")


def test_a_member_named_twice_is_refused(tmp_path, capsys):
    (tmp_path / "w.npz").write_bytes(_zip(_good_members() + _good_members()[:1]))
    path = tiny(tmp_path, "w.npz")
    assert one_line(capsys, "map", path) == (
        f"{tmp_path / 'w.npz'}: fc1.levels: appears twice in the .npz (which copy is meant?)")


def test_an_npz_listing_too_many_members_is_refused_before_parsing(tmp_path, capsys):
    members = _good_members() + [_stored(f"meta.m{i}.npy", b"") for i in range(10_000)]
    (tmp_path / "w.npz").write_bytes(_zip(members))
    path = tiny(tmp_path, "w.npz")
    assert one_line(capsys, "map", path) == (
        f"{tmp_path / 'w.npz'}: holds 10,002 members, more than the 10,000 an .npz of xbarsim "
        f"may hold")


def test_npz_members_share_one_budget(tmp_path, monkeypatch):
    import xbarsim.io.files as files

    np.savez(tmp_path / "a.npz", a=np.zeros(600, np.uint8), b=np.zeros(600, np.uint8))
    monkeypatch.setattr(files, "memory_budget", lambda: 1000)
    with files.open_npz(tmp_path / "a.npz", ValueError,
                        lambda key, why: ValueError(f"{key}: {why}")) as archive:
        assert archive["a"].nbytes == 600 and archive["a"] is archive["a"]  # read once
        with pytest.raises(ValueError) as err:
            archive["b"]
    assert str(err.value) == ("b: declared array shape (600,) of uint8 needs 600 bytes, more "
                              "than the 400 bytes of memory available")


def test_a_scalar_of_huge_items_is_refused_from_its_header(tmp_path, capsys):
    head = npy_header((), "<U100000000")
    members = _good_members() + [("meta.format.npy", zipfile.ZIP_DEFLATED,
                                  _deflated_zeros(head, 25 << 24), len(head) + 400_000_000, 0)]
    (tmp_path / "w.npz").write_bytes(_zip(members))
    path = tiny(tmp_path, "w.npz")
    assert one_line(capsys, "map", path) == (
        f"{tmp_path / 'w.npz'}: meta.format: values of 400,000,000 bytes each: not a number or a "
        f"short string (got dtype <U100000000)")


# =================================================================================================
# 4. Atomic to the end: a trace is replaced whole or not at all
# =================================================================================================

def enospc_when(monkeypatch, match):
    """``os.fsync`` fails with ENOSPC (a full disk, found when the data is flushed) for the open
    files whose path ``match(path)`` accepts."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell which file is flushed")
    real = os.fsync

    def fsync(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if match(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def traced(tmp_path, monkeypatch, capsys):
    """``T``: a trace of 5 images, with figures drawn from it and a user's note and folder of
    notes beside them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.yaml").write_text(TWO)
    assert main(["run", "two.yaml", "--samples", "5", "--trace", "T"]) == 0
    for figure in ("raster.png", "spike_counts.png"):  # as `trace plot T` leaves them
        (tmp_path / "T" / figure).write_bytes(b"\x89PNG figure of this trace")
    (tmp_path / "T" / "notes.txt").write_text("mine")
    (tmp_path / "T" / "more").mkdir()
    (tmp_path / "T" / "more" / "a.txt").write_text("also mine")
    capsys.readouterr()
    return tmp_path / "T"


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


def test_a_trace_whose_manifest_cannot_be_written_leaves_the_previous_one(traced, monkeypatch,
                                                                          capsys):
    before, around = snapshot(traced), sorted(os.listdir(traced.parent))
    enospc_when(monkeypatch, lambda path: path.endswith("/trace.json"))
    assert one_line(capsys, "run", "two.yaml", "--samples", "3", "--trace", "T") == (
        "xbarsim: error: --trace: cannot write the trace to T (no space left on device); the "
        "previous trace there is left as it was (got T)")
    assert snapshot(traced) == before                   # byte for byte, figures and notes too
    assert sorted(os.listdir(traced.parent)) == around  # no temporary folder left beside it


def test_a_trace_whose_events_cannot_be_flushed_leaves_the_previous_one(traced, monkeypatch,
                                                                        capsys):
    before = snapshot(traced)
    enospc_when(monkeypatch, lambda path: path.endswith(".events"))
    assert one_line(capsys, "run", "two.yaml", "--samples", "3", "--trace", "T") == (
        "xbarsim: error: --trace: cannot write the trace to T (no space left on device); the "
        "previous trace there is left as it was (got T)")
    assert snapshot(traced) == before


def test_a_trace_that_cannot_be_renamed_into_place_leaves_the_previous_one(traced, monkeypatch,
                                                                           capsys):
    before, around = snapshot(traced), sorted(os.listdir(traced.parent))

    def busy(a, b):
        raise OSError(errno.EBUSY, "Device or resource busy", str(b))

    monkeypatch.setattr(xbarsim.engine.trace, "_exchange", busy)
    assert one_line(capsys, "run", "two.yaml", "--samples", "3", "--trace", "T") == (
        "xbarsim: error: --trace: cannot write the trace to T (device or resource busy); the "
        "previous trace there is left as it was (got T)")
    assert snapshot(traced) == before and sorted(os.listdir(traced.parent)) == around


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_new_trace_replaces_the_old_and_keeps_the_users_files(traced, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(xbarsim.engine.trace, "_exchange", lambda a, b: False)
    around = sorted(os.listdir(traced.parent))
    assert main(["run", "two.yaml", "--samples", "3", "--trace", "T"]) == 0
    assert read_trace(traced)["_manifest"]["images"] == [0, 1, 2]
    after = snapshot(traced)
    assert after["notes.txt"] == b"mine" and after["more/a.txt"] == b"also mine"
    assert not any(name.startswith(("raster.", "spike_counts.")) for name in after)  # stale
    assert sorted(os.listdir(traced.parent)) == around


def test_a_previous_trace_left_between_two_renames_is_put_back(traced, capsys):
    before = snapshot(traced)
    aside = traced.parent / f".T.old-trace-{_dead_pid()}.x1"  # killed between the renames
    os.rename(traced, aside)
    assert one_line(capsys, "run", "two.yaml", "--trace", "T", "--inputs", "missing.npy") == (
        "xbarsim: error: missing.npy: --inputs: file not found")
    assert snapshot(traced) == before and not aside.exists()


def test_a_killed_writers_folders_beside_the_trace_are_cleared(traced):
    dead = _dead_pid()
    writing = traced.parent / f".T.tmp-trace-{dead}.a1"  # killed while writing: marked
    writing.mkdir()
    (writing / ".xbarsim-trace-in-progress").write_bytes(b"")
    (writing / "fc1.events").write_bytes(b"\0" * 120)
    swapped = traced.parent / f".T.tmp-trace-{dead}.b2"  # killed after the exchange: the old
    swapped.mkdir()                                      # trace, with a user's file in it
    (swapped / "trace.json").write_text("{}")
    (swapped / "old-notes.txt").write_text("keep me")
    assert main(["run", "two.yaml", "--samples", "2", "--trace", "T"]) == 0
    assert not writing.exists() and not swapped.exists()
    assert (traced / "old-notes.txt").read_text() == "keep me"
    assert read_trace(traced)["_manifest"]["images"] == [0, 1]


def test_the_current_folder_as_a_trace_is_refused_first(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny(tmp_path)
    (tmp_path / "trace.json").write_text("{}")  # the current folder looks like a trace
    assert one_line(capsys, "run", "net.yaml", "--trace", ".") == (
        "xbarsim: error: --trace: . is the current folder or holds it; a trace is put in place "
        "by renaming its folder, so name a folder of its own (got .)")


def test_a_dropped_writer_removes_its_folder(tmp_path):
    import gc

    from xbarsim.config.spec import load_network_spec

    spec = load_network_spec(tiny(tmp_path))
    writer = xbarsim.engine.trace.TraceWriter(tmp_path / "T", spec)
    tmp = writer.tmp
    assert tmp.is_dir() and tmp.parent == tmp_path
    del writer
    gc.collect()
    assert not tmp.exists() and not (tmp_path / "T").exists()


# =================================================================================================
# 5. Atomic to the end: an import writes its YAML and .npz both or neither
# =================================================================================================

@pytest.mark.nir
def test_an_import_that_cannot_write_its_yaml_leaves_both_earlier_files(exported, monkeypatch,
                                                                        capsys):
    out = exported / "o.yaml"
    assert main(["import", str(exported / "x.nir"), "--out", str(out)]) == 0
    before = snapshot(exported)
    capsys.readouterr()
    enospc_when(monkeypatch, lambda path: ".o.yaml.p" in path)
    assert one_line(capsys, "import", exported / "x.nir", "--out", out, "--name", "other") == (
        f"xbarsim: error: --out: cannot write {out} and {exported / 'o.npz'} (no space left on "
        f"device); nothing was replaced (got {out})")
    assert snapshot(exported) == before  # o.yaml and o.npz byte for byte, no temporary left


def _saved(tmp_path):
    from xbarsim.network.network import load_network

    net = load_network(tiny(tmp_path))
    out = tmp_path / "out" / "o.yaml"
    net.save(out, header="first")
    return net, out


def test_network_save_writes_both_files_or_neither(tmp_path, monkeypatch):
    net, out = _saved(tmp_path)
    before = snapshot(out.parent)
    enospc_when(monkeypatch, lambda path: ".o.yaml.p" in path)
    with pytest.raises(OSError, match="No space left"):
        net.save(out, header="second")
    assert snapshot(out.parent) == before


def test_network_save_puts_back_the_npz_when_the_yaml_rename_fails(tmp_path, monkeypatch):
    net, out = _saved(tmp_path)
    before = snapshot(out.parent)
    real, calls = os.replace, []

    def replace(src, dst, **kw):
        calls.append(dst)
        if str(dst) == str(out):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="Input/output"):
        net.save(out, header="second")
    monkeypatch.setattr(os, "replace", real)
    assert snapshot(out.parent) == before
    assert [Path(c).name for c in calls[:2]] == ["o.npz", "o.yaml"]  # the .npz went in first


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs mounted at ``tmp_path/fs`` (root only, where mounting works)."""
    fs = tmp_path / "fs"
    fs.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            str(fs)], capture_output=True).returncode != 0:
        pytest.skip("needs root and mount -t tmpfs")

    def fill():
        with open(fs / ".filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    try:
        yield fs, fill
    finally:
        subprocess.run(["umount", str(fs)], check=False)


def test_a_really_full_disk_leaves_the_previous_trace_and_import(full_disk, monkeypatch, capsys):
    fs, fill = full_disk
    monkeypatch.chdir(fs)
    (fs / "two.yaml").write_text(TWO)
    assert main(["run", "two.yaml", "--samples", "5", "--trace", "T"]) == 0
    net, _ = _saved(fs)
    capsys.readouterr()
    fill()
    trace_before, save_before = snapshot(fs / "T"), snapshot(fs / "out")
    assert one_line(capsys, "run", "two.yaml", "--samples", "50", "--trace", "T") == (
        "xbarsim: error: --trace: cannot write the trace to T (no space left on device); the "
        "previous trace there is left as it was (got T)")
    with pytest.raises(OSError, match="No space left"):
        net.save(fs / "out" / "o.yaml", header="second")
    assert snapshot(fs / "T") == trace_before and snapshot(fs / "out") == save_before
    assert sorted(p.name for p in fs.iterdir()) == [".filler", "T", "net.yaml", "out",
                                                    "two.yaml"]


# =================================================================================================
# 6. The old corpus: YAML tags that reached PyYAML's internals
# =================================================================================================

@pytest.mark.parametrize("tagged,shown", [
    ("!!timestamp nope", "!!timestamp cannot hold this value (got nope)"),
    ("!!timestamp 2001-13-45", "!!timestamp cannot hold this value (got 2001-13-45)"),
    ("!!seq {a: 1}", "!!seq must be a list, not a mapping"),
    ("!!seq x", "!!seq must be a list, not a single value"),
    ("!!map [1, 2]", "!!map must be a mapping, not a list"),
    ("!!timestamp [1]", "!!timestamp must be a single value, not a list"),
    ("[!!seq {a: 1}]", "!!seq must be a list, not a mapping"),
])
def test_tags_on_the_wrong_kind_of_node_are_one_line(tagged, shown, tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", f"seed: {tagged}"))
    assert one_line(capsys, "map", path) == f"{path}:6: invalid YAML: {shown}"


def test_a_valid_timestamp_is_a_value_the_schema_refuses(tmp_path, capsys):
    path = tiny(tmp_path, text=TINY.replace("seed: 0", "seed: !!timestamp 2001-01-02"))
    assert one_line(capsys, "map", path) == f"{path}:6: seed: must be an integer (got 2001-01-02)"


# =================================================================================================
# 7. The old corpus: float weights and scales the integer form cannot hold
# =================================================================================================

def _float_weights(tmp_path, **arrays) -> Path:
    arrays = {"fc1.weight": np.full((3, 16), 0.1), **arrays}
    np.savez(tmp_path / "w.npz", **{k.replace("__", "."): v for k, v in arrays.items()})
    return tiny(tmp_path, "w.npz")


def _big(value, shape=(3, 16)):
    a = np.full(shape, 0.1)
    a.flat[0] = value
    return a


@pytest.mark.parametrize("arrays,key,why", [
    ({"input__act_scale": np.array(5e-324)}, "input.act_scale",
     "must be a normal positive number, at least 2.2250738585072014e-308 (got 5e-324)"),
    ({"fc1__act_scale": np.array(5e-324)}, "fc1.act_scale",
     "must be a normal positive number, at least 2.2250738585072014e-308 (got 5e-324)"),
    ({"fc1__weight": _big(1e308)}, "fc1.weight",
     "magnitude past float32's range (3.4028235e+38), which no float model holds, at index "
     "(0, 0) (got 1e+308)"),
    ({"fc1__weight": _big(-1e308)}, "fc1.weight",
     "magnitude past float32's range (3.4028235e+38), which no float model holds, at index "
     "(0, 0) (got -1e+308)"),
    ({"fc1__bias_float": _big(1e308, (3,))}, "fc1.bias_float",
     "magnitude past float32's range (3.4028235e+38), which no float model holds, at index "
     "(0,) (got 1e+308)"),
    ({"fc1__weight": np.full((3, 16), 1e-320)}, "fc1.weight",
     "largest |weight| 1e-320 is too small to quantize (its step 2^-k would leave float64's "
     "range)"),
    ({"fc1__act_scale": np.array(1e308)}, "fc1.act_scale",
     "gives θ = inf weight LSB, past the engine's fixed-point range of 2^43 LSB"),
    ({"fc1__bias_float": _big(3e38, (3,))}, "fc1.bias_float",
     "quantizes to a bias of 2.88e+41 weight LSB, past the engine's fixed-point range of 2^43 "
     "LSB"),
    ({"input__act_scale": np.array(1e-300), "fc1__weight": np.full((3, 16), 1e-20)},
     "fc1.weight", "one weight step (1.694e-21) times the input unit (1e-300) leaves float64's "
                   "normal range"),
], ids=["input-scale-subnormal", "layer-scale-subnormal", "weight-1e308", "weight-minus-1e308",
        "bias-1e308", "weight-subnormal", "scale-1e308", "bias-past-range", "unit-underflow"])
def test_float_weights_the_integer_form_cannot_hold(tmp_path, capsys, arrays, key, why):
    path = _float_weights(tmp_path, **arrays)
    assert one_line(capsys, "map", path) == f"{tmp_path / 'w.npz'}: {key}: {why}"
