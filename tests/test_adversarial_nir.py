"""Adversarial NIR (HDF5) files (issue 26): nothing read from outside the file, every read bounded,
every write atomic.

Each case is a file a colleague could send, built with h5py in ``tmp_path``, and asserts the exact
line on stderr, nothing on stdout and exit status 2. Memory attacks run ``python -m xbarsim`` in a
subprocess under a 1 GiB address-space limit (``RLIMIT_AS``), where the memory budget is half the
limit, so a blow-up fails the test instead of the machine. The subprocess timeout only guards
against a hang; no test asserts a duration.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, limit_memory as _limit_memory, one_line

pytestmark = pytest.mark.nir
nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
#: The memory budget under the subprocesses' 1 GiB limit: half of it.
LIMITED_BUDGET = GIB // 2
LENET = ROOT / "networks" / "lenet-mnist-4b.yaml"
#: What a colleague's file must never get at: 16 float64 weights (a valid 4 x 4 matrix).
SECRET = (np.arange(16, dtype="<f8") * 0.37 + 1.0).tobytes()


# -- helpers (copied from tests/test_adversarial_inputs.py: tests do not import each other) ------
def sub(cwd, *argv):
    """``python -m xbarsim ARGV`` in ``cwd`` under a 1 GiB address-space limit; returns the one
    stderr line after checking exit 2 and no stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "xbarsim", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    return proc.stderr[:-1]


# -- files ----------------------------------------------------------------------------------------
def foreign_graph(path: Path) -> Path:
    """A small foreign NIR graph (input 4 → Affine → IF → output) that imports cleanly."""
    one = np.ones(4)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "w": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
             "n": nir.IF(r=one, v_threshold=one),
             "output": nir.Output(output_type={"output": np.array([4])})}
    edges = [("input", "w"), ("w", "n"), ("n", "output")]
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


def import_args(tmp_path, model):
    np.save(tmp_path / "cal.npy", np.zeros((2, 1, 2, 2), np.uint8))
    return ("import", model, "--bits", "4,4", "--calibrate", tmp_path / "cal.npy",
            "--input-shape", "1,2,2", "--out", tmp_path / "x.yaml")


def replace_dataset(path, name, **create):
    with h5py.File(path, "a") as f:
        del f[name]
        f.create_dataset(name, **create)


def zero_bomb(mib: int) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros, built without compressing them all (one 1 MiB
    block repeated: full flushes make each block the same bytes)."""
    c = zlib.compressobj(9)
    block = bytes(1 << 20)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    adler = (((mib << 20) % 65521) << 16) | 1  # adler32 of that many zeros
    return first + again * (mib - 1) + b"\x03\x00" + adler.to_bytes(4, "big")


def nir_trace(path: Path, n_neurons=4, t_max=15.0, images=(0, 1)) -> Path:
    """A small NIRData trace as ``run --trace-format nir`` writes it (one layer, fc1)."""
    idx = np.array([[0, 2, -1], [1, -1, -1]], np.int64)[:len(images)]
    time = np.where(idx >= 0, np.array([[0, 3, 0], [5, 0, 0]])[:len(images)], np.inf)
    ev = nir.EventData(idx=idx, time=time, n_neurons=n_neurons, t_max=t_max)
    nir.write_data(str(path), nir.NIRGraphData(nodes={"fc1.if": nir.NIRNodeData(
        observables={"spikes": ev})}))
    with h5py.File(path, "a") as f:
        f.attrs["xbarsim.format"] = "xbarsim-trace-nir-1"
        f.attrs["xbarsim.images"] = np.array(images, np.int64)
    return path


SPIKES = "nodes/fc1.if/observables/spikes"


# -- a clean file still imports (so each refusal below is the attack's doing) ---------------------
def test_clean_foreign_graph_and_trace_still_read(tmp_path, capsys):
    rc, out, err = cli(capsys, *import_args(tmp_path, foreign_graph(tmp_path / "g.nir")))
    assert rc == 0, err
    assert (tmp_path / "x.npz").is_file()
    path = nir_trace(tmp_path / "t.nir")
    rc, out, err = cli(capsys, "trace", "plot", path, "--out", tmp_path / "plots")
    assert rc == 0, err
    from xbarsim.engine.trace import read_trace
    tr = read_trace(path)
    assert tr["fc1"].tolist() == [(0, 0, 0), (0, 2, 3), (1, 1, 5)]
    assert tr["_manifest"]["layers"]["fc1"]["cycles"] == 15


# -- reads outside the file ----------------------------------------------------------------------
def _assert_secret_nowhere(tmp_path, *texts):
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path / "x.npz").exists()
    for text in texts:
        assert SECRET.hex() not in text and "1.37" not in text
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.name != "secret.bin":
            assert SECRET not in p.read_bytes(), p


def test_external_storage_dataset_is_refused(tmp_path, capsys):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    path = foreign_graph(tmp_path / "evil.nir")
    replace_dataset(path, "node/nodes/w/weight", shape=(4, 4), dtype="<f8",
                    external=[(str(secret), 0, len(SECRET))])
    line = one_line(capsys, *import_args(tmp_path, path))
    assert line == (f"{path}: node/nodes/w/weight: external storage (the data kept in another "
                    "file) is refused: xbarsim reads only data stored in the file itself (got "
                    f"{secret})")
    _assert_secret_nowhere(tmp_path, line)


def test_virtual_dataset_is_refused(tmp_path, capsys):
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f["data"] = np.frombuffer(SECRET, "<f8").reshape(4, 4)
    path = foreign_graph(tmp_path / "evil.nir")
    layout = h5py.VirtualLayout(shape=(4, 4), dtype="<f8")
    layout[:] = h5py.VirtualSource(str(src), "data", shape=(4, 4))
    with h5py.File(path, "a") as f:
        del f["node/nodes/w/weight"]
        f.create_virtual_dataset("node/nodes/w/weight", layout)
    line = one_line(capsys, *import_args(tmp_path, path))
    assert line == (f"{path}: node/nodes/w/weight: a virtual dataset (data mapped from other "
                    "files or datasets) is refused: xbarsim reads only data stored in the file "
                    f"itself (got source {src})")
    assert not (tmp_path / "x.npz").exists()


def test_external_link_is_refused_and_never_followed(tmp_path, capsys):
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f["data"] = np.frombuffer(SECRET, "<f8").reshape(4, 4)
    path = foreign_graph(tmp_path / "evil.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/w/weight"]
        f["node/nodes/w/weight"] = h5py.ExternalLink(str(src), "/data")
    line = one_line(capsys, *import_args(tmp_path, path))
    assert line == (f"{path}: node/nodes/w/weight: an external link (to an object in another "
                    "file) is refused: xbarsim reads only what is inside the file (got "
                    f"{src}:/data)")
    assert not (tmp_path / "x.npz").exists()


def test_soft_link_is_refused(tmp_path, capsys):
    path = foreign_graph(tmp_path / "evil.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/w/bias"]
        f["node/nodes/w/bias"] = h5py.SoftLink("/node/nodes/n/r")
    assert one_line(capsys, *import_args(tmp_path, path)) == (
        f"{path}: node/nodes/w/bias: a soft link is refused: xbarsim reads plain groups and "
        "datasets only (got /node/nodes/n/r)")


def test_external_storage_in_a_nir_trace_is_refused(tmp_path, capsys):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype="<i8").tobytes())
    path = nir_trace(tmp_path / "t.nir")
    replace_dataset(path, f"{SPIKES}/idx", shape=(2, 3), dtype="<i8",
                    external=[(str(secret), 0, 48)])
    assert one_line(capsys, "trace", "plot", path, "--out", tmp_path / "plots") == (
        f"xbarsim: error: {path}: {SPIKES}/idx: external storage (the data kept in another file) "
        f"is refused: xbarsim reads only data stored in the file itself (got {secret})")
    assert not (tmp_path / "plots").exists()


# -- shapes: loops, counts, nesting --------------------------------------------------------------
def test_hard_link_cycle_ends_at_the_depth_limit(tmp_path, capsys):
    path = foreign_graph(tmp_path / "loop.nir")
    with h5py.File(path, "a") as f:
        f["node/nodes/w/loop"] = f["node/nodes"]  # a group inside itself
    line = one_line(capsys, *import_args(tmp_path, path))
    assert line.startswith(f"{path}: node/nodes/w/loop/w/loop/")
    assert line.endswith("...: groups nested more than 32 deep (a link cycle?)")


def test_too_many_objects_is_one_line(tmp_path, capsys, monkeypatch):
    from xbarsim.io import hdf5
    monkeypatch.setattr(hdf5, "MAX_OBJECTS", 40)
    path = foreign_graph(tmp_path / "many.nir")
    with h5py.File(path, "a") as f:
        for i in range(40):
            f.create_group(f"node/junk/g{i}")
    line = one_line(capsys, *import_args(tmp_path, path))
    assert line.startswith(f"{path}: more than 40 groups and datasets (got ")


@pytest.mark.parametrize("kind", ["lzf", "compound"])
def test_unsupported_filter_or_type_is_refused(tmp_path, capsys, kind):
    path = foreign_graph(tmp_path / "g.nir")
    if kind == "lzf":  # a filter with no bound on its output (and others load plugins)
        replace_dataset(path, "node/nodes/w/bias", data=np.zeros(4), chunks=(4,),
                        compression="lzf")
        want = ("filter lzf (id 32000) is not supported: xbarsim reads gzip, shuffle and "
                "fletcher32 only")
    else:
        replace_dataset(path, "node/nodes/w/bias", data=np.zeros(4, [("a", "<f8")]))
        want = ("data type [('a', '<f8')] is not supported: NIR files hold numbers and "
                "strings")
    assert one_line(capsys, *import_args(tmp_path, path)) == \
        f"{path}: node/nodes/w/bias: {want}"


# -- memory: declared sizes and decompression (1 GiB subprocesses) -------------------------------
def test_huge_unallocated_dataset_is_refused_before_reading(tmp_path):
    path = foreign_graph(tmp_path / "huge.nir")
    replace_dataset(path, "node/nodes/w/weight", shape=(10**12,), dtype="<f8",
                    chunks=(1 << 16,), compression="gzip")  # never written: sparse
    assert path.stat().st_size < 1 << 20
    assert sub(tmp_path, *import_args(tmp_path, path)) == (
        f"{path}: node/nodes/w/weight: declared shape (1000000000000,) of float64 needs "
        f"8,000,000,000,000 bytes, more than the {LIMITED_BUDGET:,} bytes of memory available")


def test_gzip_bomb_over_the_budget_is_refused(tmp_path):
    """640 MiB of zeros in 1 MiB gzip chunks (a file well under 1 MiB): declared honestly, over
    the 512 MiB budget."""
    path = foreign_graph(tmp_path / "bomb.nir")
    n = 640
    with h5py.File(path, "a") as f:
        del f["node/nodes/w/weight"]
        d = f.create_dataset("node/nodes/w/weight", shape=(n << 17,), dtype="<f8",
                             chunks=(1 << 17,), compression="gzip")
        block = zero_bomb(1)
        for i in range(n):
            d.id.write_direct_chunk((i << 17,), block)
    assert path.stat().st_size < 1 << 20
    assert sub(tmp_path, *import_args(tmp_path, path)) == (
        f"{path}: node/nodes/w/weight: declared shape ({n << 17},) of float64 needs "
        f"{n << 20:,} bytes, more than the {LIMITED_BUDGET:,} bytes of memory available")


def test_gzip_chunk_expanding_past_its_chunk_is_refused(tmp_path):
    """A 512 KiB chunk (well within the budget) whose stream inflates to 500 MiB: HDF5 would
    keep doubling its buffer; the chunk is inflated here first, stopping at 512 KiB + 1."""
    path = foreign_graph(tmp_path / "bomb.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/w/weight"]
        d = f.create_dataset("node/nodes/w/weight", shape=(256, 256), dtype="<f8",
                             chunks=(256, 256), compression="gzip")
        d.id.write_direct_chunk((0, 0), zero_bomb(500))
    assert sub(tmp_path, *import_args(tmp_path, path)) == (
        f"{path}: node/nodes/w/weight: the gzip chunk at (0, 0) expands past its declared size "
        "of 524,288 bytes (a decompression bomb)")


def test_chunk_storing_more_than_its_chunk_can_compress_to_is_refused(tmp_path, capsys):
    path = foreign_graph(tmp_path / "bomb.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/w/weight"]
        d = f.create_dataset("node/nodes/w/weight", shape=(4, 4), dtype="<f8", chunks=(4, 4),
                             compression="gzip")
        d.id.write_direct_chunk((0, 0), zero_bomb(2))
    assert one_line(capsys, *import_args(tmp_path, path)) == (
        f"{path}: node/nodes/w/weight: the chunk at (0, 0) stores {len(zero_bomb(2)):,} bytes, "
        "more than its 128-byte chunk can be written as (a corrupt or crafted file)")


def test_broadcast_bomb_in_a_cuba_lif_node_is_refused(tmp_path):
    """nir builds a CubaLIF's ``w_in * ones_like(v_threshold)``: (1, n) against (n, 1) would be
    n² values (7.2 GB here) from two 240 kB arrays."""
    n = 30_000
    col = np.ones((n, 1))
    node = nir.CubaLIF(tau_syn=col, tau_mem=col, r=col, v_leak=0 * col, v_threshold=col)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n, 1])}),
                                "c": node,
                                "output": nir.Output(output_type={"output": np.array([n, 1])})},
                         edges=[("input", "c"), ("c", "output")], type_check=False)
    path = tmp_path / "cuba.nir"
    nir.write(str(path), graph)
    replace_dataset(path, "node/nodes/c/w_in", data=np.ones((1, n)))
    assert sub(tmp_path, *import_args(tmp_path, path)) == (
        f"{path}: node/nodes/c/w_in: shape (1, {n}) does not fit v_threshold's ({n}, 1)")


def test_neuron_parameters_never_broadcast_to_a_square(tmp_path):
    """r as (n, 1) and v_threshold as (1, n) (nir's own check can be off, ``python -O``) map
    as n values each, not n² values."""
    from xbarsim.errors import ConfigError
    from xbarsim.interop.nir_io import float_network, load_graph

    graph = load_graph(foreign_graph(tmp_path / "g.nir"))
    want = float_network(graph, "g", (1, 2, 2)).state
    graph.nodes["n"].r = np.ones((4, 1))
    graph.nodes["n"].v_threshold = np.ones((1, 4))
    got = float_network(graph, "g", (1, 2, 2)).state
    assert all(np.array_equal(want[k][i], got[k][i]) for k in want for i in (0, 1))
    graph.nodes["n"].r = np.ones(3)
    with pytest.raises(ConfigError) as e:
        float_network(graph, "g.nir", (1, 2, 2))
    assert str(e.value) == "g.nir: n: r must hold one value or one per neuron (4) (got [3])"


# -- traces: `trace plot` of a crafted NIRData file ----------------------------------------------
def test_trace_plot_of_a_huge_dataset_is_refused(tmp_path):
    path = nir_trace(tmp_path / "t.nir")
    replace_dataset(path, f"{SPIKES}/idx", shape=(10**6, 10**7), dtype="<i8",
                    chunks=(1, 1 << 16), compression="gzip")
    assert sub(tmp_path, "trace", "plot", path, "--out", tmp_path / "plots") == (
        f"xbarsim: error: {path}: {SPIKES}/idx: declared shape (1000000, 10000000) of int64 "
        f"needs 80,000,000,000,000 bytes, more than the {LIMITED_BUDGET:,} bytes of memory "
        "available")


@pytest.mark.parametrize("case", ["n_neurons", "t_max", "idx_range", "rows", "time"])
def test_trace_values_are_checked(tmp_path, case):
    """Run under the memory limit: ``trace plot`` allocates counts per (image, neuron) and one
    histogram bin per cycle, so a huge n_neurons or t_max was a memory bomb."""
    kw = {"n_neurons": {"n_neurons": 10**12}, "t_max": {"t_max": 1e9}}.get(case, {})
    path = nir_trace(tmp_path / "t.nir", **kw)
    with h5py.File(path, "a") as f:
        if case == "idx_range":
            f[f"{SPIKES}/idx"][0, 0] = 7
        elif case == "rows":
            f.attrs["xbarsim.images"] = np.array([0, 1, 2], np.int64)
        elif case == "time":
            f[f"{SPIKES}/time"][0, 0] = np.nan
    want = {
        "n_neurons": f"{SPIKES}@n_neurons: must be an integer in [1, 2147483647] (got "
                     "1000000000000)",
        "t_max": f"{SPIKES}@t_max: must be a number of cycles in [0, 131070] (got 1000000000.0)",
        "idx_range": f"{SPIKES}/idx: neuron indices must be in [-1, 4) (-1: padding) (got -1..7)",
        "rows": f"{SPIKES}: 2 rows for 3 images (xbarsim.images)",
        "time": f"{SPIKES}/time: spike times must be finite, in [0, t_max = 15]",
    }[case]
    assert sub(tmp_path, "trace", "plot", path, "--out", tmp_path / "plots") == \
        f"xbarsim: error: {path}: {want}"


# -- special files --------------------------------------------------------------------------------
def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "g.nir"
    os.mkfifo(fifo)
    assert sub(tmp_path, *import_args(tmp_path, fifo)) == \
        f"{fifo}: not a regular file: a FIFO (named pipe)"
    assert sub(tmp_path, "trace", "plot", fifo, "--out", tmp_path / "plots") == \
        f"xbarsim: error: {fifo}: not a regular file: a FIFO (named pipe)"


# -- writes: a full disk ---------------------------------------------------------------------------
FULL = ("could not write the file (no space left on device); an earlier file of that name, if "
        "any, is left as it was")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_export_on_a_full_disk_keeps_the_earlier_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "net.nir"
    out.write_bytes(b"an earlier good export")
    monkeypatch.setattr(os, "fsync", _enospc)  # the write's last step fails, as ENOSPC at close
    assert one_line(capsys, "export", LENET, "--nir", out) == f"xbarsim: error: {out}: {FULL}"
    assert out.read_bytes() == b"an earlier good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nir"]


def test_nir_trace_on_a_full_disk_keeps_the_earlier_trace(tmp_path, monkeypatch):
    import xbarsim as xs
    from xbarsim.engine.trace_nir import NirTraceWriter
    from xbarsim.errors import XbarsimError

    spec = xs.load_network_spec(LENET)
    raster = np.zeros((1, 10, 15), np.uint8)
    raster[0, 3, 4] = 1

    def trace():
        w = NirTraceWriter(tmp_path / "tr", spec, layers=["fc2"])
        w.write("fc2", 0, raster)
        return w

    good = trace().close()
    before = good.read_bytes()
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(XbarsimError) as e:
        trace().close()
    assert str(e.value) == f"{good}: {FULL}"
    assert good.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "tr").iterdir()) == ["trace.nir"]


def test_export_on_a_real_full_tmpfs(tmp_path, capsys):
    """The same on a 200 kB tmpfs (root only): the temporary file fills the disk."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs",
                                            str(mnt)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        out = mnt / "net.nir"
        rc, _, err = cli(capsys, "export", LENET, "--nir", out)
        assert rc == 0, err
        before = out.read_bytes()
        assert len(before) > 100_000  # a second copy does not fit beside it
        assert one_line(capsys, "export", LENET, "--nir", out) == \
            f"xbarsim: error: {out}: {FULL}"
        assert out.read_bytes() == before
        assert sorted(p.name for p in mnt.iterdir()) == ["net.nir"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
