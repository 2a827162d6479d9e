"""Data sets: MNIST (gzipped IDX), CIFAR-10 (python batches), seeded synthetic images, and the
shipped 200-image MNIST sample.

Every loader returns ``(images, labels)``: images ``uint8`` shaped ``(N, C, H, W)``, labels
``int64`` shaped ``(N,)``. Files are looked for, in order, in ``$XBARSIM_DATA``, then in the user
cache directory (``$XDG_CACHE_HOME/xbarsim`` or ``~/.cache/xbarsim``); if absent they are
downloaded from the canonical source into the cache, md5-verified, and moved into place only
once complete (temp file + ``os.replace``). With neither data nor network the error is one line
saying which files to put where. See docs/datasets.md.

This module only needs numpy and the standard library (downloads use ``urllib``).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = [
    "DATASET_NAMES", "MNIST_URL", "MNIST_MD5", "CIFAR10_URL", "CIFAR10_MD5", "cache_dir",
    "find_dataset", "load_dataset", "load_mnist", "load_cifar10", "synthetic", "mnist_sample",
    "read_idx", "read_cifar_batch", "write_mnist_sample",
]

DATASET_NAMES = ("mnist", "cifar10", "synthetic")
SPLITS = ("train", "test")

#: Base URL of the MNIST files (the mirror torchvision uses). ``$XBARSIM_MNIST_URL`` overrides it.
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: md5 of each canonical MNIST file (checked on download).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: URL of the CIFAR-10 python archive. ``$XBARSIM_CIFAR10_URL`` overrides it.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TAR = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR10_EXTRA = ("batches.meta", "readme.html")  # extracted too, never required

#: Socket timeout (seconds) of each blocking network operation during a download.
TIMEOUT_S = 10.0
_SAMPLE = "mnist-sample.npz"
_MAX_IDX_BYTES = 1 << 32  # refuse headers declaring more than 4 GiB of data


# ---------------------------------------------------------------------------------------------
# where data lives


def cache_dir() -> Path:
    """The user cache directory: ``$XDG_CACHE_HOME/xbarsim``, else ``~/.cache/xbarsim``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xbarsim"


def _env_root() -> Path | None:
    value = os.environ.get("XBARSIM_DATA")
    return Path(value) if value else None


def _roots(root) -> list[Path]:
    """Folders searched, in order: ``root`` alone when given, else $XBARSIM_DATA then the cache."""
    if root is not None:
        return [Path(root)]
    env = _env_root()
    return ([env] if env is not None else []) + [cache_dir()]


def _dest_root(root) -> Path:
    """Where downloads (and extracted archives) go."""
    return Path(root) if root is not None else cache_dir()


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{name}: split must be 'train' or 'test' (got {split!r})")


def _mnist_dirs(base: Path) -> list[Path]:
    # <base>/mnist/ (our layout), <base>/ (files directly), <base>/MNIST/raw/ (torchvision's).
    return [base / "mnist", base, base / "MNIST" / "raw"]


def _idx_file(folder: Path, gz_name: str) -> Path | None:
    """``name.gz``, or the same file already decompressed (``name`` without ``.gz``)."""
    for cand in (folder / gz_name, folder / gz_name[:-3]):
        if cand.is_file():
            return cand
    return None


def _find_mnist(split: str, root=None) -> tuple[Path, Path] | None:
    for base in _roots(root):
        for folder in _mnist_dirs(base):
            found = [_idx_file(folder, f) for f in MNIST_FILES[split]]
            if all(found):
                return found[0], found[1]
    return None


def _find_cifar10(split: str, root=None) -> Path | None:
    """A ``cifar-10-batches-py`` folder holding the split's batches; failing that, the archive."""
    roots = _roots(root)
    for base in roots:
        for folder in (base / "cifar10" / CIFAR10_DIR, base / CIFAR10_DIR):
            if all((folder / b).is_file() for b in CIFAR10_BATCHES[split]):
                return folder
    for base in roots:
        for tar in (base / "cifar10" / CIFAR10_TAR, base / CIFAR10_TAR):
            if tar.is_file():
                return tar
    return None


def find_dataset(name: str, split: str = "test", root=None) -> Path | None:
    """Where the full data set ``name`` is available locally (no download), or ``None``.

    For MNIST the folder holding the split's two IDX files; for CIFAR-10 the
    ``cifar-10-batches-py`` folder, or the ``cifar-10-python.tar.gz`` archive if only that is
    present (loading extracts it into the cache). ``synthetic`` has no files: ``None``.
    """
    _check_name(name)
    _check_split(name, split)
    if name == "mnist":
        found = _find_mnist(split, root)
        return None if found is None else found[0].parent
    if name == "cifar10":
        return _find_cifar10(split, root)
    return None


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise DataError(f"data set must be one of {', '.join(DATASET_NAMES)} (got {name!r})")


def _missing(name: str, split: str, what: str, sub: str, source: str, root, reason: str):
    """The one-line error for a data set that is neither present nor downloadable."""
    if root is not None:
        where = f"in {Path(root) / sub}{os.sep}"
    else:
        env = _env_root()
        env_note = f"XBARSIM_DATA={env}" if env is not None else "XBARSIM_DATA is not set"
        where = (f"in $XBARSIM_DATA/{sub}/ ({env_note}) or in "
                 f"{cache_dir() / sub}{os.sep}")
    return DataError(f"{name} {split} set not found: put {what} (from {source}) {where} "
                     f"({reason})")


# ---------------------------------------------------------------------------------------------
# downloads


def _url(env: str, default: str) -> str:
    return os.environ.get(env) or default


class _Unavailable(Exception):
    """A download that could not happen (no network, HTTP error, timeout): not a data error."""


def _download(url: str, dest: Path, md5: str) -> Path:
    """Fetch ``url`` to ``dest``: stream into a temp file beside it, check the md5, then
    ``os.replace``. A wrong md5 is a :class:`DataError`; network failures raise ``_Unavailable``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest.parent}: cannot create the data folder ({exc.strerror or exc})") \
            from None
    print(f"xbarsim: downloading {url} -> {dest}", file=sys.stderr)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.md5()
    try:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "xbarsim"})
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, \
                    os.fdopen(fd, "wb") as out:
                fd = None
                for block in iter(lambda: resp.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            plain_url_error = (isinstance(exc, urllib.error.URLError)
                               and not isinstance(exc, urllib.error.HTTPError))
            reason = exc.reason if plain_url_error else exc
            raise _Unavailable(f"download of {dest.name} failed: {reason}") from None
        actual = digest.hexdigest()
        if actual != md5:
            raise DataError(f"{url}: md5 mismatch for {dest.name}: expected {md5}, got {actual} "
                            f"(file not saved)")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, dest)
        tmp = None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return dest


# ---------------------------------------------------------------------------------------------
# IDX (MNIST)

_IDX_TYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def _open_maybe_gzip(path: Path):
    fh = open(path, "rb")
    if fh.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb"), fh
    return fh, fh


def _read_fully(fh, buf: memoryview) -> int:
    pos = 0
    while pos < len(buf):
        n = fh.readinto(buf[pos:])
        if not n:
            break
        pos += n
    return pos


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or not, detected from its first bytes) into an array of its
    declared shape, in native byte order.

    The header is two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int,
    0x0d float, 0x0e double), the number of dimensions, then each dimension as a big-endian
    uint32; the data follows, big-endian, and must be exactly as long as the dimensions say.
    """
    path = Path(path)
    try:
        stream, raw = _open_maybe_gzip(path)
        with raw, stream:
            head = stream.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: not an IDX file: shorter than the 4-byte magic number "
                                f"(got {len(head)} bytes)")
            if head[0] or head[1]:
                raise DataError(f"{path}: not an IDX file: the magic number must start with two "
                                f"zero bytes (got 0x{head.hex()})")
            code, ndim = head[2], head[3]
            if code not in _IDX_TYPES:
                raise DataError(f"{path}: IDX type code must be one of 0x08, 0x09, 0x0b, 0x0c, "
                                f"0x0d, 0x0e (got 0x{code:02x})")
            if ndim == 0:
                raise DataError(f"{path}: IDX header must declare at least one dimension (got 0)")
            dims_raw = stream.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: IDX header truncated: {ndim} dimensions need "
                                f"{4 * ndim} bytes (got {len(dims_raw)})")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            dtype = _IDX_TYPES[code]
            nbytes = math.prod(dims) * dtype.itemsize
            if nbytes > _MAX_IDX_BYTES:
                raise DataError(f"{path}: IDX header declares {nbytes} data bytes, more than "
                                f"the 4 GiB this reader accepts (got dims {list(dims)})")
            data = np.empty(nbytes, np.uint8)
            got = _read_fully(stream, memoryview(data))
            if got < nbytes:
                raise DataError(f"{path}: IDX data truncated: dims {list(dims)} need {nbytes} "
                                f"bytes (got {got})")
            if stream.read(1):
                raise DataError(f"{path}: IDX file has data beyond the {nbytes} bytes its "
                                f"dims {list(dims)} declare")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip stream ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    arr = data.view(dtype).reshape(dims)
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


def _mnist_arrays(img_path: Path, lbl_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(img_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{img_path}: MNIST images must be unsigned-byte IDX of shape "
                        f"(N, 28, 28) (got {images.dtype} {tuple(images.shape)})")
    labels = read_idx(lbl_path)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{lbl_path}: MNIST labels must be unsigned-byte IDX of shape (N,) "
                        f"(got {labels.dtype} {tuple(labels.shape)})")
    if len(labels) != len(images):
        raise DataError(f"{lbl_path}: {len(labels)} labels for the {len(images)} images in "
                        f"{img_path.name}")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{lbl_path}: MNIST labels must be 0..9 (got {int(labels.max())})")
    return images.reshape(-1, 1, 28, 28), labels.astype(np.int64)


def load_mnist(split: str = "test", root=None, download: bool = True):
    """MNIST ``split`` ("train": 60,000 images, "test": 10,000) as ``(images, labels)``:
    ``uint8 (N, 1, 28, 28)`` and ``int64 (N,)``.

    ``root`` replaces the search path ($XBARSIM_DATA, then the cache) with that one folder, and
    is where a download goes. ``download=False`` never touches the network.
    """
    _check_split("mnist", split)
    found = _find_mnist(split, root)
    if found is None:
        base = _url("XBARSIM_MNIST_URL", MNIST_URL)
        base = base if base.endswith("/") else base + "/"
        names = MNIST_FILES[split]
        if not download:
            raise _missing("mnist", split, " and ".join(names), "mnist", base, root,
                           "download disabled")
        folder = _dest_root(root) / "mnist"
        try:
            for name in names:
                if _idx_file(folder, name) is None:
                    _download(base + name, folder / name, MNIST_MD5[name])
        except _Unavailable as exc:
            raise _missing("mnist", split, " and ".join(names), "mnist", base, root,
                           str(exc)) from None
        found = (_idx_file(folder, names[0]), _idx_file(folder, names[1]))
    return _mnist_arrays(*found)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickles)


def _numpy_constructors() -> dict:
    """The only callables a CIFAR batch pickle may reference: numpy's array/dtype/scalar
    reconstructors (under their numpy 1 and numpy 2 module names), and ``_codecs.encode``, with
    which pickle protocol 2 spells Python 3 ``bytes``."""
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    table = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
             ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core", "numpy._core"):
        table[(f"{mod}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{mod}.multiarray", "scalar")] = scalar
        table[(f"{mod}.numeric", "_frombuffer")] = frombuffer
    return table


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers and numpy arrays: a CIFAR batch that names any
    other callable (which unpickling would run) is refused."""

    _allowed = _numpy_constructors()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a pickled dict with ``data``: uint8 ``(N, 3072)``, rows of
    1024 red, 1024 green, 1024 blue values in row-major 32x32 order, and ``labels``: N ints
    0..9) as ``uint8 (N, 3, 32, 32)`` images and ``int64 (N,)`` labels."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _BatchUnpickler(fh, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - a malformed pickle raises almost anything
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a CIFAR-10 batch must be a pickled dict "
                        f"(got {type(obj).__name__})")
    batch = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in batch:
            have = ", ".join(sorted(str(k) for k in batch)) or "none"
            raise DataError(f"{path}: CIFAR-10 batch has no '{key}' entry (keys: {have})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        got = (f"{data.dtype} {tuple(data.shape)}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DataError(f"{path}: CIFAR-10 'data' must be a uint8 array of shape (N, 3072) "
                        f"(got {got})")
    try:
        labels = np.asarray(batch["labels"])
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: CIFAR-10 'labels' must be a list of integers ({exc})") from None
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: CIFAR-10 'labels' must be a list of integers "
                        f"(got {labels.dtype} {tuple(labels.shape)})")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} CIFAR-10 labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError(f"{path}: CIFAR-10 labels must be 0..9 (got {bad})")
    return (np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels.astype(np.int64))


def _extract_cifar10(tar_path: Path, dest: Path) -> Path:
    """Extract the batches of ``cifar-10-python.tar.gz`` into ``dest/cifar-10-batches-py``, one
    file at a time (temp + ``os.replace``). Only regular files with the known batch names are
    taken; nothing in the archive can write elsewhere."""
    wanted = set(CIFAR10_BATCHES["train"] + CIFAR10_BATCHES["test"] + _CIFAR10_EXTRA)
    out = dest / CIFAR10_DIR
    taken = set()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                parts = member.name.lstrip("./").split("/")
                if not (member.isfile() and len(parts) == 2 and parts[0] == CIFAR10_DIR
                        and parts[1] in wanted):
                    continue
                src = tar.extractfile(member)
                fd, tmp = tempfile.mkstemp(prefix=f".{parts[1]}.", suffix=".part", dir=out)
                try:
                    with os.fdopen(fd, "wb") as fh:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            fh.write(block)
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, out / parts[1])
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                taken.add(parts[1])
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{tar_path}: corrupt CIFAR-10 archive ({exc})") from None
    except OSError as exc:
        raise DataError(f"{tar_path}: cannot extract into {out} ({exc.strerror or exc})") \
            from None
    missing = [b for b in CIFAR10_BATCHES["train"] + CIFAR10_BATCHES["test"] if b not in taken]
    if missing:
        raise DataError(f"{tar_path}: archive lacks {CIFAR10_DIR}/{missing[0]} "
                        f"(got {', '.join(sorted(taken)) or 'no batches'})")
    return out


def load_cifar10(split: str = "test", root=None, download: bool = True):
    """CIFAR-10 ``split`` ("train": data_batch_1..5, 50,000 images; "test": test_batch, 10,000)
    as ``(images, labels)``: ``uint8 (N, 3, 32, 32)`` and ``int64 (N,)``.

    Reads a ``cifar-10-batches-py`` folder; an archive found instead (or downloaded) is extracted
    into the cache (or into ``root``, when given) first.
    """
    _check_split("cifar10", split)
    found = _find_cifar10(split, root)
    if found is None:
        url = _url("XBARSIM_CIFAR10_URL", CIFAR10_URL)
        what = f"{CIFAR10_TAR} or its extracted {CIFAR10_DIR}/ folder"
        if not download:
            raise _missing("cifar10", split, what, "cifar10", url, root, "download disabled")
        tar = _dest_root(root) / "cifar10" / CIFAR10_TAR
        try:
            _download(url, tar, CIFAR10_MD5)
        except _Unavailable as exc:
            raise _missing("cifar10", split, what, "cifar10", url, root, str(exc)) from None
        folder = _extract_cifar10(tar, tar.parent)
        tar.unlink()  # we downloaded it; the extracted batches are all that is read
    elif found.is_file():
        folder = _extract_cifar10(found, _dest_root(root) / "cifar10")
    else:
        folder = found
    parts = [read_cifar_batch(folder / b) for b in CIFAR10_BATCHES[split]]
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# ---------------------------------------------------------------------------------------------
# synthetic images


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of ``(..., gh, gw)`` to ``(..., h, w)`` (corners aligned)."""
    gh, gw = grid.shape[-2:]
    ys = np.linspace(0.0, gh - 1, h)
    xs = np.linspace(0.0, gw - 1, w)
    y0 = np.minimum(ys.astype(np.int64), gh - 2) if gh > 1 else np.zeros(h, np.int64)
    x0 = np.minimum(xs.astype(np.int64), gw - 2) if gw > 1 else np.zeros(w, np.int64)
    fy = (ys - y0)[:, None] if gh > 1 else np.zeros((h, 1))
    fx = (xs - x0)[None, :] if gw > 1 else np.zeros((1, w))
    y1 = np.minimum(y0 + 1, gh - 1)
    x1 = np.minimum(x0 + 1, gw - 1)
    a = grid[..., y0[:, None], x0[None, :]]
    b = grid[..., y0[:, None], x1[None, :]]
    c = grid[..., y1[:, None], x0[None, :]]
    d = grid[..., y1[:, None], x1[None, :]]
    return (a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx)


def synthetic(shape, n: int, seed: int = 0, classes: int = 10, split: str = "test"):
    """``n`` seeded synthetic images of ``shape`` = (C, H, W) and their labels.

    Each class has a smooth random prototype (a coarse random grid, bilinearly upsampled); an
    image is its class's prototype plus Gaussian pixel noise (sigma 0.15 of full scale), clipped
    to 0..255. So the labels are learnable and activity is spatially correlated, like a natural
    image's. Deterministic: the same arguments give the same arrays bit for bit, and the first
    k images of a larger ``n`` equal those of ``n = k``. ``split`` selects an independent stream
    ("train" images differ from "test" ones; the class prototypes are shared).
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"synthetic: shape must be (channels, height, width), positive "
                        f"(got {shape})")
    if int(n) < 0:
        raise DataError(f"synthetic: number of images must be >= 0 (got {n})")
    if int(classes) < 1:
        raise DataError(f"synthetic: classes must be >= 1 (got {classes})")
    if split not in SPLITS:
        raise DataError(f"synthetic: split must be 'train' or 'test' (got {split!r})")
    n, classes = int(n), int(classes)
    c, h, w = shape
    from .files import memory_budget

    need = n * c * h * w * 16  # uint8 images plus the float64 noise of one block
    if need > memory_budget():
        raise DataError(f"synthetic: {n:,} images of {c}x{h}x{w} need about {need:,} bytes, more "
                        f"than the {memory_budget():,} bytes of memory available (use fewer "
                        f"--samples)")
    proto_seq, data_seq = np.random.SeedSequence(int(seed)).spawn(2)
    split_seq = data_seq.spawn(len(SPLITS))[SPLITS.index(split)]
    label_seq, noise_seq = split_seq.spawn(2)
    grid = np.random.default_rng(proto_seq).random(
        (classes, c, max(2, (h + 3) // 4), max(2, (w + 3) // 4)))
    protos = 0.1 + 0.8 * _upsample(grid, h, w)           # (classes, C, H, W) in [0.1, 0.9]
    labels = np.random.default_rng(label_seq).integers(0, classes, n, dtype=np.int64)
    noise_rng = np.random.default_rng(noise_seq)
    images = np.empty((n, c, h, w), np.uint8)
    chunk = max(1, (1 << 21) // (c * h * w))
    for start in range(0, n, chunk):                    # sequential stream: prefix-consistent
        stop = min(n, start + chunk)
        noise = noise_rng.standard_normal((stop - start, c, h, w))
        x = protos[labels[start:stop]] + 0.15 * noise
        images[start:stop] = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return images, labels


# ---------------------------------------------------------------------------------------------
# the shipped sample and the dispatcher


def mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """The shipped sample: the first 200 MNIST test images (``uint8 (200, 1, 28, 28)``) and their
    labels (``int64 (200,)``), from ``xbarsim/data/mnist-sample.npz``; no data set needed."""
    try:
        ref = resources.files("xbarsim").joinpath("data").joinpath(_SAMPLE)
        with ref.open("rb") as fh, np.load(io.BytesIO(fh.read()), allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"xbarsim/data/{_SAMPLE}: shipped MNIST sample unreadable ({exc}); "
                        f"reinstall xbarsim") from None
    return images.astype(np.uint8), labels.astype(np.int64)


def write_mnist_sample(path=None, n: int = 200, root=None) -> Path:
    """(Re)make the shipped sample from the first ``n`` MNIST test images found locally
    (``XBARSIM_DATA=DIR python -c "from xbarsim import datasets;
    datasets.write_mnist_sample()"``). Written atomically."""
    path = Path(path) if path is not None else Path(__file__).parent / "data" / _SAMPLE
    images, labels = load_mnist("test", root=root, download=False)
    from .atomic import atomic_write

    return atomic_write(path, lambda fh: np.savez_compressed(
        fh, images=images[:n], labels=labels[:n].astype(np.int64)), mode="wb", suffix=".part")


def load_dataset(name: str, split: str = "test", limit: int | None = None, root=None,
                 download: bool = True, *, shape=None, seed: int = 0, classes: int = 10):
    """``(images, labels)`` of data set ``name`` ("mnist", "cifar10" or "synthetic"), the first
    ``limit`` of them when given.

    "synthetic" needs ``shape`` = (C, H, W) and uses ``seed`` and ``classes``; it makes
    ``limit`` images (1,000 when ``limit`` is None).
    """
    _check_name(name)
    if limit is not None and (isinstance(limit, bool) or int(limit) < 0):
        raise DataError(f"{name}: limit must be a number of images >= 0 (got {limit!r})")
    if name == "synthetic":
        if shape is None:
            raise DataError("synthetic: load_dataset needs shape=(channels, height, width)")
        return synthetic(shape, 1000 if limit is None else int(limit), seed=seed,
                         classes=classes, split=split)
    loader = load_mnist if name == "mnist" else load_cifar10
    images, labels = loader(split, root=root, download=download)
    if limit is not None and int(limit) < len(images):
        images, labels = images[:int(limit)].copy(), labels[:int(limit)].copy()
    return images, labels


# ---------------------------------------------------------------------------------------------
# which images a command runs on: no silent fallback


class Selected(tuple):
    """``(images, labels, source)`` plus ``note``: a line to print first (the shipped sample or
    synthetic images stand in for the data set), or ``""``."""

    note: str = ""


def select_images(name: str, split: str = "test", samples: int | None = None, *,
                  use_sample: bool = False, download: bool = False, shape=None, seed: int = 0,
                  flag: str = "--samples") -> Selected:
    """The images a run scores, by one rule (docs/datasets.md):

    - ``use_sample``: the shipped 200-image MNIST sample (test split only);
    - the full data set when found locally (or downloaded, with ``download``);
    - not found and **no data location configured at all** (``$XBARSIM_DATA`` unset): MNIST uses
      the shipped sample, CIFAR-10 seeded synthetic images (not scored), and :attr:`note` says so
      (callers print it as the first line of output);
    - not found with ``$XBARSIM_DATA`` set, ``split='train'`` without the data, or more
      ``samples`` than the chosen source holds: a :class:`DataError` naming what to put where.
    """
    _check_name(name)
    _check_split(name, split)
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise DataError(f"{flag}: must be >= 1 (got {samples})")
    note = ""
    if use_sample:
        if name != "mnist" or split != "test":
            raise DataError(f"--sample: the shipped sample holds MNIST test images only (the "
                            f"network reads {name} {split})")
        images, labels = mnist_sample()
        source = f"shipped MNIST sample ({len(images)} test images, as asked by --sample)"
        note = f"note: using the shipped MNIST sample ({len(images)} test images), as asked"
        what = f"the shipped MNIST sample holds {len(images)} images"
    else:
        found = find_dataset(name, split)
        configured = _env_root() is not None
        if found is None and download:
            load_dataset(name, split=split, download=True)
            found = find_dataset(name, split)
        if found is not None:
            images, labels = load_dataset(name, split=split, download=False)
            source = f"{name} {split} set ({found})"
            what = f"the {name} {split} set at {found} holds {len(images)} images"
        elif configured or split != "test":
            load_dataset(name, split=split, download=False)  # raises: what to put where
            raise AssertionError("unreachable")  # pragma: no cover
        elif name == "mnist":
            images, labels = mnist_sample()
            source = (f"shipped MNIST sample ({len(images)} test images; XBARSIM_DATA is not "
                      f"set)")
            note = (f"note: XBARSIM_DATA is not set and no MNIST in {cache_dir()}: using the "
                    f"shipped MNIST sample ({len(images)} test images); for the full set see "
                    f"docs/datasets.md")
            what = (f"only the shipped {len(images)}-image MNIST sample is available "
                    f"(XBARSIM_DATA is not set; put t10k-images-idx3-ubyte.gz and "
                    f"t10k-labels-idx1-ubyte.gz in $XBARSIM_DATA/mnist/, or add --download)")
        else:
            if shape is None:
                load_dataset(name, split=split, download=False)
            n = 100 if samples is None else int(samples)
            images, _ = synthetic(shape, n, seed=seed, split=split)
            labels = None
            source = (f"synthetic inputs ({n} images, seed {seed}; {name} not found and "
                      f"XBARSIM_DATA is not set: accuracy not scored)")
            note = (f"note: XBARSIM_DATA is not set and no {name} in {cache_dir()}: running "
                    f"{n} synthetic images (accuracy not scored); see docs/datasets.md")
            what = ""
    if samples is not None and int(samples) > len(images):
        raise DataError(f"{flag}: asks for {int(samples)} images but {what} (got {samples})")
    if samples is not None:
        images = images[:int(samples)]
        labels = None if labels is None else labels[:int(samples)]
    out = Selected((images, labels, source))
    out.note = note
    return out
