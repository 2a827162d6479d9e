"""Data sets: IDX and CIFAR-batch parsing, the search path, md5-verified downloads (against a local
HTTP server), the missing-data message, synthetic images and the shipped MNIST sample."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import pickletools
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from xbarsim import datasets
from xbarsim.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
TEST_HISTOGRAM = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _real_mnist_root() -> Path | None:
    cands = [os.environ.get("XBARSIM_DATA"), str(ROOT.parent / "shared" / "data")]
    for c in cands:
        if c and (Path(c) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(c).resolve()
    return None


REAL = _real_mnist_root()
needs_real = pytest.mark.skipif(
    REAL is None, reason="real MNIST not found: set XBARSIM_DATA to a folder with mnist/*.gz "
                         "(../shared/data in this project)")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An isolated search path: XBARSIM_DATA and XDG_CACHE_HOME are empty folders under tmp."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    monkeypatch.setenv("XBARSIM_DATA", str(data))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("XBARSIM_MNIST_URL", raising=False)
    monkeypatch.delenv("XBARSIM_CIFAR10_URL", raising=False)
    return data, cache / "xbarsim"


# ------------------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.asarray(array).astype(dtype).tobytes()


def write(path: Path, data: bytes, gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_mnist(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.uint8))


def write_fake_mnist(folder: Path, split: str = "test", n: int = 5, seed: int = 0, gz=True):
    images, labels = fake_mnist(n, seed)
    img_name, lbl_name = datasets.MNIST_FILES[split]
    if not gz:
        img_name, lbl_name = img_name[:-3], lbl_name[:-3]
    write(folder / img_name, idx_bytes(images), gz)
    write(folder / lbl_name, idx_bytes(labels), gz)
    return images, labels


def cifar_batch(n: int, seed: int, **override) -> dict:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"fake batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    batch.update(override)
    return batch


def write_cifar(folder: Path, n: int = 3) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate(datasets.CIFAR10_BATCHES["train"] + datasets.CIFAR10_BATCHES["test"]):
        batches[name] = cifar_batch(n, seed=i)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    return batches


def make_cifar_tar(path: Path, batches_dir: Path, extra: dict | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(batches_dir.iterdir()):
            tar.add(f, arcname=f"cifar-10-batches-py/{f.name}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server (127.0.0.1, a free port) serving tmp_path/www; counts requests."""
    www = tmp_path / "www"
    www.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", www, hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------------------ real MNIST


@needs_real
def test_real_mnist_test_set(monkeypatch, tmp_path):
    monkeypatch.setenv("XBARSIM_DATA", str(REAL))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images, labels = datasets.load_mnist("test", download=False)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == TEST_HISTOGRAM
    assert images.max() == 255 and images.min() == 0
    assert datasets.find_dataset("mnist") == REAL / "mnist"
    first, first_labels = datasets.load_dataset("mnist", limit=50, download=False)
    assert np.array_equal(first, images[:50]) and np.array_equal(first_labels, labels[:50])


@needs_real
def test_real_mnist_train_set(monkeypatch, tmp_path):
    monkeypatch.setenv("XBARSIM_DATA", str(REAL))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images, labels = datasets.load_dataset("mnist", split="train", download=False)
    assert images.shape == (60000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9 and np.bincount(labels).min() > 5000


@needs_real
def test_real_mnist_md5_table_matches_the_files():
    for name, want in datasets.MNIST_MD5.items():
        assert md5(REAL / "mnist" / name) == want, name


@needs_real
def test_shipped_sample_is_first_200_real_test_images(monkeypatch):
    monkeypatch.setenv("XBARSIM_DATA", str(REAL))
    images, labels = datasets.load_mnist("test", download=False)
    s_images, s_labels = datasets.mnist_sample()
    assert s_images.shape == (200, 1, 28, 28) and s_images.dtype == np.uint8
    assert s_labels.shape == (200,) and s_labels.dtype == np.int64
    assert np.array_equal(s_images, images[:200]) and np.array_equal(s_labels, labels[:200])


def test_shipped_sample_standalone():
    images, labels = datasets.mnist_sample()
    assert images.shape == (200, 1, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # MNIST's first test labels
    # digits: mostly background, a few hundred ink pixels each
    ink = (images > 128).reshape(200, -1).sum(axis=1)
    assert 10 < ink.min() and ink.max() < 400


@needs_real
def test_download_real_files_from_local_server(env, server, monkeypatch):
    """The md5 table and the download path, end to end: the real t10k files, served locally."""
    url, www, hits = server
    for name in datasets.MNIST_FILES["test"]:
        (www / name).write_bytes((REAL / "mnist" / name).read_bytes())
    monkeypatch.setenv("XBARSIM_MNIST_URL", url)
    _, cache = env
    images, labels = datasets.load_mnist("test")
    assert np.bincount(labels).tolist() == TEST_HISTOGRAM
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(
        datasets.MNIST_FILES["test"])
    monkeypatch.setenv("XBARSIM_DATA", str(REAL))
    ref_images, _ = datasets.load_mnist("test", download=False)
    assert np.array_equal(images, ref_images)


# ------------------------------------------------------------------------------ IDX parsing


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_good(tmp_path, gz):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = datasets.read_idx(write(tmp_path / "a.idx", idx_bytes(a), gz))
    assert out.dtype == np.uint8 and np.array_equal(out, a)


@pytest.mark.parametrize("code,dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                        (0x0D, np.float32), (0x0E, np.float64)])
def test_read_idx_types_big_endian(tmp_path, code, dtype):
    a = np.array([[-3, 0, 7], [100, -100, 1]], dtype=dtype)
    out = datasets.read_idx(write(tmp_path / "a.idx.gz", idx_bytes(a, code)))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and np.array_equal(out, a)


def test_read_idx_empty_array(tmp_path):
    out = datasets.read_idx(write(tmp_path / "e.gz", idx_bytes(np.zeros((0, 28, 28), np.uint8))))
    assert out.shape == (0, 28, 28)


GOOD = idx_bytes(np.zeros((2, 3), np.uint8))  # 00 00 08 02 | 2 | 3 | 6 bytes


@pytest.mark.parametrize("data,message", [
    (b"\x00\x00", "not an IDX file: shorter than the 4-byte magic number (got 2 bytes)"),
    (b"\x1f\x00\x08\x01" + b"\x00" * 8,
     "not an IDX file: the magic number must start with two zero bytes (got 0x1f000801)"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00",
     "IDX type code must be one of 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e (got 0x07)"),
    (b"\x00\x00\x08\x00", "IDX header must declare at least one dimension (got 0)"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00",
     "IDX header truncated: 3 dimensions need 12 bytes (got 6)"),
    (GOOD[:-1], "IDX data truncated: dims [2, 3] need 6 bytes (got 5)"),
    (GOOD + b"\x00", "IDX file has data beyond the 6 bytes its dims [2, 3] declare"),
    (b"\x00\x00\x0c\x02\xff\xff\xff\xff\xff\xff\xff\xff",
     "IDX header declares 73786976260478468100 data bytes, more than the 4 GiB this reader "
     "accepts (got dims [4294967295, 4294967295])"),
])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_malformed(tmp_path, data, message, gz):
    path = write(tmp_path / "bad.idx", data, gz)
    with pytest.raises(DataError) as err:
        datasets.read_idx(path)
    assert str(err.value) == f"{path}: {message}"


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(GOOD)[:-12])  # stream cut short
    with pytest.raises(DataError, match=r"bad\.gz: corrupt gzip stream \(Compressed file ended"):
        datasets.read_idx(path)
    path.write_bytes(b"\x1f\x8b" + b"garbage!" * 4)
    with pytest.raises(DataError, match=r"bad\.gz: corrupt gzip stream"):
        datasets.read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError) as err:
        datasets.read_idx(tmp_path / "nope.gz")
    assert str(err.value) == f"{tmp_path / 'nope.gz'}: cannot read (No such file or directory)"


def test_mnist_structure_errors(env):
    data, _ = env
    folder = data / "mnist"
    img, lbl = datasets.MNIST_FILES["test"]
    images, labels = fake_mnist(4, 0)
    cases = [
        (np.zeros((4, 27, 28), np.uint8), labels, img,
         "MNIST images must be unsigned-byte IDX of shape (N, 28, 28) (got uint8 (4, 27, 28))"),
        (images, labels.reshape(2, 2), lbl,
         "MNIST labels must be unsigned-byte IDX of shape (N,) (got uint8 (2, 2))"),
        (images, labels[:3], lbl, f"3 labels for the 4 images in {img}"),
        (images, np.array([1, 2, 10, 3], np.uint8), lbl, "MNIST labels must be 0..9 (got 10)"),
    ]
    for imgs, lbls, culprit, message in cases:
        write(folder / img, idx_bytes(imgs))
        write(folder / lbl, idx_bytes(lbls))
        with pytest.raises(DataError) as err:
            datasets.load_mnist("test", download=False)
        assert str(err.value) == f"{folder / culprit}: {message}"


# ------------------------------------------------------------------------------ search path


@pytest.mark.parametrize("layout", ["mnist", ".", "MNIST/raw", "uncompressed"])
def test_mnist_layouts_in_xbarsim_data(env, layout):
    data, _ = env
    folder = data / ("mnist" if layout == "uncompressed" else layout)
    images, labels = write_fake_mnist(folder, "train", n=7, seed=3, gz=layout != "uncompressed")
    got_images, got_labels = datasets.load_mnist("train", download=False)
    assert np.array_equal(got_images, images.reshape(7, 1, 28, 28))
    assert np.array_equal(got_labels, labels) and got_labels.dtype == np.int64
    assert datasets.find_dataset("mnist", split="train") == folder.resolve() or \
        datasets.find_dataset("mnist", split="train") == folder
    assert datasets.find_dataset("mnist", split="test") is None


def test_search_order_xbarsim_data_then_cache(env, monkeypatch):
    data, cache = env
    in_cache, _ = write_fake_mnist(cache / "mnist", n=3, seed=1)
    assert np.array_equal(datasets.load_mnist(download=False)[0][:, 0], in_cache)
    assert datasets.find_dataset("mnist") == cache / "mnist"
    in_data, _ = write_fake_mnist(data / "mnist", n=3, seed=2)
    assert np.array_equal(datasets.load_mnist(download=False)[0][:, 0], in_data)
    assert datasets.find_dataset("mnist") == data / "mnist"
    monkeypatch.delenv("XBARSIM_DATA")  # unset: the cache alone
    assert np.array_equal(datasets.load_mnist(download=False)[0][:, 0], in_cache)


def test_root_argument_replaces_search_path(env, tmp_path):
    data, _ = env
    write_fake_mnist(data / "mnist", n=3, seed=1)
    other = tmp_path / "other"
    mine, _ = write_fake_mnist(other, n=4, seed=9)
    got, _ = datasets.load_dataset("mnist", root=other, download=False)
    assert np.array_equal(got[:, 0], mine)


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / "xbarsim"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.cache_dir() == Path.home() / ".cache" / "xbarsim"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/not/allowed")  # XDG: ignore relative paths
    assert datasets.cache_dir() == Path.home() / ".cache" / "xbarsim"


# ------------------------------------------------------------------------------ missing data


def test_missing_mnist_message(env, monkeypatch):
    data, cache = env
    with pytest.raises(DataError) as err:
        datasets.load_mnist("test", download=False)
    assert str(err.value) == (
        f"mnist test set not found: put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"(from {MNIST_URL}) in $XBARSIM_DATA/mnist/ (XBARSIM_DATA={data}) or in "
        f"{cache}/mnist/ (download disabled)")
    assert "\n" not in str(err.value)
    monkeypatch.delenv("XBARSIM_DATA")
    with pytest.raises(DataError) as err:
        datasets.load_dataset("mnist", split="train", download=False)
    assert str(err.value) == (
        f"mnist train set not found: put train-images-idx3-ubyte.gz and "
        f"train-labels-idx1-ubyte.gz (from {MNIST_URL}) in $XBARSIM_DATA/mnist/ "
        f"(XBARSIM_DATA is not set) or in {cache}/mnist/ (download disabled)")
    assert datasets.find_dataset("mnist") is None


def test_missing_with_root(env, tmp_path):
    with pytest.raises(DataError) as err:
        datasets.load_mnist("test", root=tmp_path / "r", download=False)
    assert str(err.value) == (
        f"mnist test set not found: put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"(from {MNIST_URL}) in {tmp_path / 'r' / 'mnist'}/ (download disabled)")


def test_missing_cifar_message(env):
    data, cache = env
    with pytest.raises(DataError) as err:
        datasets.load_dataset("cifar10", download=False)
    assert str(err.value) == (
        f"cifar10 test set not found: put cifar-10-python.tar.gz or its extracted "
        f"cifar-10-batches-py/ folder (from {CIFAR_URL}) in $XBARSIM_DATA/cifar10/ "
        f"(XBARSIM_DATA={data}) or in {cache}/cifar10/ (download disabled)")
    assert datasets.find_dataset("cifar10") is None


def test_no_network_message(env, monkeypatch):
    data, cache = env
    url = closed_port_url()
    monkeypatch.setenv("XBARSIM_MNIST_URL", url)
    with pytest.raises(DataError) as err:
        datasets.load_mnist("test")
    assert str(err.value) == (
        f"mnist test set not found: put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"(from {url}) in $XBARSIM_DATA/mnist/ (XBARSIM_DATA={data}) or in {cache}/mnist/ "
        f"(download of t10k-images-idx3-ubyte.gz failed: [Errno 111] Connection refused)")
    assert list((cache / "mnist").iterdir()) == []  # no partial files left behind


def test_http_404_message(env, server, monkeypatch):
    url, _, hits = server
    monkeypatch.setenv("XBARSIM_MNIST_URL", url.rstrip("/"))  # a missing slash is added
    with pytest.raises(DataError) as err:
        datasets.load_mnist("test")
    assert str(err.value).endswith(
        "(download of t10k-images-idx3-ubyte.gz failed: HTTP Error 404: File not found)")
    assert hits == ["/t10k-images-idx3-ubyte.gz"]


# ------------------------------------------------------------------------------ downloads


def test_download_fake_mnist(env, server, monkeypatch):
    url, www, hits = server
    images, labels = write_fake_mnist(www, "test", n=6, seed=5)
    for name in datasets.MNIST_FILES["test"]:
        monkeypatch.setitem(datasets.MNIST_MD5, name, md5(www / name))
    monkeypatch.setenv("XBARSIM_MNIST_URL", url)
    _, cache = env
    got_images, got_labels = datasets.load_mnist("test")
    assert np.array_equal(got_images[:, 0], images) and np.array_equal(got_labels, labels)
    assert sorted(hits) == ["/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
    assert sorted(os.listdir(cache / "mnist")) == sorted(datasets.MNIST_FILES["test"])
    assert datasets.find_dataset("mnist") == cache / "mnist"
    datasets.load_dataset("mnist")  # now cached: no second download
    assert len(hits) == 2


def test_download_md5_mismatch(env, server, monkeypatch):
    url, www, hits = server
    write_fake_mnist(www, "test", n=2)
    monkeypatch.setenv("XBARSIM_MNIST_URL", url)
    _, cache = env
    name = "t10k-images-idx3-ubyte.gz"
    with pytest.raises(DataError) as err:
        datasets.load_mnist("test")
    assert str(err.value) == (f"{url}{name}: md5 mismatch for {name}: expected "
                              f"9fb629c4189551a2d022fa330f9573f3, got {md5(www / name)} "
                              f"(file not saved)")
    assert list((cache / "mnist").iterdir()) == []


def test_download_only_missing_files(env, server, monkeypatch):
    url, www, hits = server
    _, cache = env
    images, labels = write_fake_mnist(www, "train", n=3, seed=7)
    (cache / "mnist").mkdir(parents=True)
    lbl = datasets.MNIST_FILES["train"][1]
    (cache / "mnist" / lbl).write_bytes((www / lbl).read_bytes())
    for name in datasets.MNIST_FILES["train"]:
        monkeypatch.setitem(datasets.MNIST_MD5, name, md5(www / name))
    monkeypatch.setenv("XBARSIM_MNIST_URL", url)
    got, _ = datasets.load_mnist("train")
    assert np.array_equal(got[:, 0], images) and hits == ["/train-images-idx3-ubyte.gz"]


def test_download_cifar10(env, server, monkeypatch, tmp_path):
    url, www, hits = server
    batches = write_cifar(tmp_path / "src", n=2)
    make_cifar_tar(www / "cifar.tgz", tmp_path / "src")
    monkeypatch.setattr(datasets, "CIFAR10_MD5", md5(www / "cifar.tgz"))
    monkeypatch.setenv("XBARSIM_CIFAR10_URL", url + "cifar.tgz")
    _, cache = env
    images, labels = datasets.load_cifar10("test")
    assert labels.tolist() == batches["test_batch"][b"labels"]
    folder = cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(os.listdir(cache / "cifar10")) == ["cifar-10-batches-py"]  # archive removed
    assert datasets.find_dataset("cifar10", split="train") == folder
    images, labels = datasets.load_cifar10("train")
    assert images.shape == (10, 3, 32, 32) and hits == ["/cifar.tgz"]


def test_download_cifar10_md5_mismatch(env, server, monkeypatch, tmp_path):
    url, www, _ = server
    write_cifar(tmp_path / "src", n=1)
    make_cifar_tar(www / "c.tgz", tmp_path / "src")
    monkeypatch.setenv("XBARSIM_CIFAR10_URL", url + "c.tgz")
    with pytest.raises(DataError) as err:
        datasets.load_cifar10("test")
    assert str(err.value) == (f"{url}c.tgz: md5 mismatch for cifar-10-python.tar.gz: expected "
                              f"c58f30108f718f92721af3b95e74349a, got {md5(www / 'c.tgz')} "
                              f"(file not saved)")


# ------------------------------------------------------------------------------ CIFAR-10


def test_cifar_batch_layout(tmp_path):
    batch = cifar_batch(3, seed=0)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    images, labels = datasets.read_cifar_batch(path)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == batch[b"labels"]
    row = batch[b"data"][1]  # 1024 red, 1024 green, 1024 blue; each row-major 32x32
    for c, y, x in [(0, 0, 0), (0, 0, 31), (1, 5, 7), (2, 31, 31), (2, 17, 3)]:
        assert images[1, c, y, x] == row[c * 1024 + y * 32 + x]


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_str_keys_and_protocols(tmp_path, protocol):
    batch = {k.decode(): v for k, v in cifar_batch(2, seed=1).items()}
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    images, labels = datasets.read_cifar_batch(path)
    assert np.array_equal(images.reshape(2, -1), batch["data"])


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING opcodes), as cPickle did when the
    CIFAR-10 batches were made."""

    def save_py2str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_py2str
    dispatch[str] = save_py2str


def test_cifar_python2_style_batch(tmp_path):
    """A batch as the canonical files spell it: Python 2 strings, numpy 1 module names."""
    batch = {"batch_label": "testing batch 1 of 1", "labels": [3, 1, 9],
             "data": np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8),
             "filenames": ["a.png", "b.png", "c.png"]}
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(batch)
    raw = buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    assert not any(op.name in ("BINUNICODE", "SHORT_BINUNICODE")
                   for op, _, _ in pickletools.genops(raw))
    path = tmp_path / "test_batch"
    path.write_bytes(raw)
    images, labels = datasets.read_cifar_batch(path)
    assert labels.tolist() == [3, 1, 9]
    assert np.array_equal(images.reshape(3, -1), batch["data"])


def test_cifar_folder_layouts(env):
    data, _ = env
    for i, folder in enumerate([data / "cifar10" / "cifar-10-batches-py",
                                data / "cifar-10-batches-py"]):
        batches = write_cifar(folder, n=2 + i)
        assert datasets.find_dataset("cifar10") == folder
        images, labels = datasets.load_dataset("cifar10", split="train", download=False)
        assert images.shape == (5 * (2 + i), 3, 32, 32)
        want = np.concatenate([batches[f"data_batch_{k}"][b"data"] for k in range(1, 6)])
        assert np.array_equal(images.reshape(len(images), -1), want)
        assert labels.tolist() == sum((batches[f"data_batch_{k}"][b"labels"]
                                       for k in range(1, 6)), [])
        limited, _ = datasets.load_dataset("cifar10", limit=1, download=False)
        assert np.array_equal(limited.reshape(1, -1), batches["test_batch"][b"data"][:1])
        for p in folder.iterdir():
            p.unlink()


def test_cifar_tar_in_xbarsim_data_extracted_to_cache(env, tmp_path):
    data, cache = env
    batches = write_cifar(tmp_path / "src", n=2)
    evil = pickle.dumps({"data": 1})
    tar = make_cifar_tar(data / "cifar-10-python.tar.gz", tmp_path / "src",
                         extra={"../escape": evil, "cifar-10-batches-py/../../escape2": evil,
                                "/abs": evil})
    assert datasets.find_dataset("cifar10") == tar
    images, labels = datasets.load_cifar10("test", download=False)
    assert labels.tolist() == batches["test_batch"][b"labels"]
    folder = cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(os.listdir(folder)) == sorted(datasets.CIFAR10_BATCHES["train"]
                                                + datasets.CIFAR10_BATCHES["test"])
    assert not list(tmp_path.rglob("escape*")) and tar.is_file()  # user's archive is kept
    assert datasets.find_dataset("cifar10") == folder  # extracted batches win over the archive


def test_cifar_tar_missing_batch(env, tmp_path):
    data, _ = env
    write_cifar(tmp_path / "src", n=1)
    (tmp_path / "src" / "data_batch_3").unlink()
    tar = make_cifar_tar(data / "cifar-10-python.tar.gz", tmp_path / "src")
    with pytest.raises(DataError) as err:
        datasets.load_cifar10("test", download=False)
    assert str(err.value) == (f"{tar}: archive lacks cifar-10-batches-py/data_batch_3 (got "
                              f"data_batch_1, data_batch_2, data_batch_4, data_batch_5, "
                              f"test_batch)")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj,message", [
    ({b"data": np.zeros((2, 3072), np.uint8)},
     "CIFAR-10 batch has no 'labels' entry (keys: data)"),
    ({b"fine_labels": [1], b"data": np.zeros((1, 3072), np.uint8)},
     "CIFAR-10 batch has no 'labels' entry (keys: data, fine_labels)"),
    ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [1, 2]},
     "CIFAR-10 'data' must be a uint8 array of shape (N, 3072) (got uint8 (2, 3071))"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]},
     "CIFAR-10 'data' must be a uint8 array of shape (N, 3072) (got float32 (2, 3072))"),
    ({b"data": [[0] * 3072], b"labels": [1]},
     "CIFAR-10 'data' must be a uint8 array of shape (N, 3072) (got list)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]},
     "1 CIFAR-10 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]},
     "CIFAR-10 labels must be 0..9 (got 10)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [-1, 1]},
     "CIFAR-10 labels must be 0..9 (got -1)"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]},
     "CIFAR-10 'labels' must be a list of integers (got <U3 (1,))"),
    ([1, 2, 3], "a CIFAR-10 batch must be a pickled dict (got list)"),
    ({b"data": Evil(), b"labels": [1]},
     "not a CIFAR-10 python batch (UnpicklingError: refusing to load posix.system)"),
])
def test_cifar_batch_malformed(tmp_path, obj, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError) as err:
        datasets.read_cifar_batch(path)
    assert str(err.value) == f"{path}: {message}"


def test_cifar_batch_not_a_pickle(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR-10 python batch \("):
        datasets.read_cifar_batch(path)
    path.write_bytes(pickle.dumps(cifar_batch(2, 0), protocol=2)[:-40])  # truncated
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR-10 python batch \("):
        datasets.read_cifar_batch(path)


# ------------------------------------------------------------------------------ synthetic


def test_synthetic_deterministic_and_prefix_consistent():
    a, la = datasets.synthetic((3, 32, 32), 50, seed=4)
    b, lb = datasets.synthetic((3, 32, 32), 50, seed=4)
    assert a.dtype == np.uint8 and a.shape == (50, 3, 32, 32) and la.dtype == np.int64
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    c, lc = datasets.synthetic((3, 32, 32), 7, seed=4)
    assert np.array_equal(a[:7], c) and np.array_equal(la[:7], lc)
    d, _ = datasets.synthetic((3, 32, 32), 50, seed=5)
    assert not np.array_equal(a, d)
    e, le = datasets.synthetic((3, 32, 32), 50, seed=4, split="train")
    assert not np.array_equal(a, e)
    assert 0 < a.mean() < 255 and a.std() > 20  # not blank, not saturated


def test_synthetic_prefix_across_chunks():
    a, _ = datasets.synthetic((1, 256, 256), 70, seed=1)  # several generation chunks
    b, _ = datasets.synthetic((1, 256, 256), 33, seed=1)
    assert np.array_equal(a[:33], b)


def test_synthetic_labels_are_learnable():
    """Nearest class mean on 'train' images classifies 'test' images: the labels mean something."""
    x, y = datasets.synthetic((1, 28, 28), 600, seed=0, split="train")
    xt, yt = datasets.synthetic((1, 28, 28), 300, seed=0, split="test")
    assert set(y.tolist()) == set(range(10))
    means = np.stack([x[y == k].reshape(-1, 784).mean(0) for k in range(10)])
    dist = ((xt.reshape(-1, 1, 784).astype(float) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == yt).mean() > 0.95


def test_synthetic_classes_and_small_shapes():
    x, y = datasets.synthetic((2, 1, 1), 40, seed=2, classes=3)
    assert x.shape == (40, 2, 1, 1) and set(y.tolist()) <= {0, 1, 2}
    x, y = datasets.synthetic((1, 5, 3), 0)
    assert x.shape == (0, 1, 5, 3) and y.shape == (0,)


def test_load_dataset_synthetic():
    x, y = datasets.load_dataset("synthetic", limit=12, shape=(1, 28, 28), seed=3)
    sx, sy = datasets.synthetic((1, 28, 28), 12, seed=3)
    assert np.array_equal(x, sx) and np.array_equal(y, sy)
    assert len(datasets.load_dataset("synthetic", shape=(1, 4, 4))[0]) == 1000
    assert datasets.find_dataset("synthetic") is None


@pytest.mark.parametrize("call,message", [
    (lambda: datasets.load_dataset("imagenet"),
     "data set must be one of mnist, cifar10, synthetic (got 'imagenet')"),
    (lambda: datasets.load_dataset("mnist", split="val"),
     "mnist: split must be 'train' or 'test' (got 'val')"),
    (lambda: datasets.find_dataset("cifar10", split="dev"),
     "cifar10: split must be 'train' or 'test' (got 'dev')"),
    (lambda: datasets.load_dataset("mnist", limit=-1),
     "mnist: limit must be a number of images >= 0 (got -1)"),
    (lambda: datasets.load_dataset("synthetic"),
     "synthetic: load_dataset needs shape=(channels, height, width)"),
    (lambda: datasets.synthetic((28, 28), 3),
     "synthetic: shape must be (channels, height, width), positive (got (28, 28))"),
    (lambda: datasets.synthetic((1, 0, 28), 3),
     "synthetic: shape must be (channels, height, width), positive (got (1, 0, 28))"),
    (lambda: datasets.synthetic((1, 2, 2), 3, classes=0),
     "synthetic: classes must be >= 1 (got 0)"),
])
def test_argument_errors(call, message):
    with pytest.raises(DataError) as err:
        call()
    assert str(err.value) == message


@needs_real
def test_run_download_flag_fetches_into_the_cache(env, server, monkeypatch, capsys):
    """`xbarsim run --download`: with no local data, the test split is downloaded (md5-checked)
    into the cache and scored; without the flag nothing is fetched and, XBARSIM_DATA being set
    to a folder without the data, the run is refused (issue 14: no silent fallback to the
    shipped sample)."""
    from xbarsim.cli import main

    url, www, hits = server
    for name in datasets.MNIST_FILES["test"]:
        (www / name).write_bytes((REAL / "mnist" / name).read_bytes())
    monkeypatch.setenv("XBARSIM_MNIST_URL", url)
    data, cache = env
    net = str(Path(__file__).resolve().parents[1] / "networks" / "lenet-mnist.yaml")
    assert main(["run", net, "--samples", "5", "--json", "--no-progress"]) == 2
    assert hits == [] and capsys.readouterr().err.startswith(
        f"xbarsim: error: mnist test set not found: put t10k-images-idx3-ubyte.gz and "
        f"t10k-labels-idx1-ubyte.gz (from {url}) in $XBARSIM_DATA/mnist/ (XBARSIM_DATA={data})")
    assert main(["run", net, "--samples", "5", "--json", "--no-progress", "--download"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert str(cache / "mnist") in out["inputs"] and len(hits) == 2
