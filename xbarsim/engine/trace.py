"""Spike traces: per-layer output spike events streamed to disk in an open format.

Format ``xbarsim-trace-1`` (docs/traces.md): a directory with ``trace.json`` and one raw file
``<layer>.events`` per traced layer holding little-endian records
``(image int32, neuron int32, cycle int32)`` — ``numpy.fromfile(path, dtype=TRACE_DTYPE)`` reads
it (the manifest records the dtype; traces written before cycles became int32 used int16 and are
read with the dtype their manifest names). ``neuron`` is the flat index in (C, H, W) order;
``image`` the global index of the image in the run; ``cycle`` counts from 0 within the layer's
window. Records are written batch by batch, sorted by (image, neuron, cycle), so memory stays
bounded however many images are traced.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import XbarsimError
from ..io.atomic import atomic_write_text

FORMAT = "xbarsim-trace-1"
TRACE_DTYPE = np.dtype([("image", "<i4"), ("neuron", "<i4"), ("cycle", "<i4")])  # M = 16: 65,535 cycles


#: Most images one ``--trace-images`` selection may name (the work is bounded before it starts).
MAX_SELECTED = 1_000_000
#: Largest image index (trace records hold it as int32).
MAX_INDEX = 2**31 - 1


def parse_selection(text: str | None, limit: int | None = None):
    """``"0-9,15"`` → sorted array of indices (None for 'all'). At most :data:`MAX_SELECTED`
    indices (``limit``, when given, instead), each in ``0 … 2^31−1``; the count is worked out from
    the ranges before any index is listed."""
    if text is None or text in ("", "all"):
        return None
    ranges = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
            else:
                lo = hi = int(part)
            if hi < lo or lo < 0:
                raise ValueError
        except ValueError:
            raise XbarsimError(f"--trace-images: expected indices like 0-9,15 (got {text})") from None
        if hi > MAX_INDEX:
            raise XbarsimError(f"--trace-images: image indices must be <= {MAX_INDEX} (got {hi})")
        ranges.append((lo, hi))
    ranges.sort()
    merged = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    total = sum(hi - lo + 1 for lo, hi in merged)
    most = MAX_SELECTED if limit is None else limit
    if total > most:
        raise XbarsimError(f"--trace-images: selects {total:,} images, more than the {most:,} "
                           f"one trace may hold; name fewer (got {text})")
    return np.concatenate([np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in merged])


class TraceWriter:
    """Receives spike rasters from the engine and appends them as event records.

    layers: names to trace (None: every conv/fc layer). images: global image indices (None: all).

    Nothing in ``directory`` is touched until :meth:`close`: the events go to a hidden temporary
    folder inside it (``.tmp-trace-<pid>``); ``close`` moves them in and writes ``trace.json``
    last, so a run that fails or is killed leaves the previous trace (if any) as it was, plus at
    most that temporary folder, which the next writer removes. :meth:`abort` removes it at once.
    A non-empty ``directory`` that holds no ``trace.json`` is refused (it is not a trace).
    """

    def __init__(self, directory, spec, layers=None, images=None, cycles=None):
        from ..io.paths import safe_name

        self.dir = Path(directory)
        check_trace_dir(self.dir)
        compute = [l.name for l in spec.compute_layers]
        if layers is not None:
            for name in layers:
                if name not in compute:
                    raise XbarsimError(f"--trace-layers: no conv/fc layer named {name} "
                                       f"(layers: {', '.join(compute)})")
        self.layers = list(compute if layers is None else layers)
        self.images = None if images is None else np.asarray(images, np.int64)
        self.dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(self.dir)
        self.tmp = self.dir / f"{_TMP_PREFIX}{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.meta = {}
        taken = {"trace.json"}
        for name in self.layers:
            layer = spec.layer(name)
            file = safe_name(name, taken) + ".events"
            (self.tmp / file).write_bytes(b"")
            self.meta[name] = {"file": file, "shape": list(layer.out_shape),
                               "neurons": layer.n_outputs, "cycles": None, "events": 0}
        self.traced_images = set()
        self.classes = {}
        self.closed = False

    def set_classes(self, predictions, labels=None, image0: int = 0) -> None:
        """Record each traced image's predicted class (and label) in the manifest (the raster
        titles its rows with them)."""
        for k, pred in enumerate(np.asarray(predictions).reshape(-1)):
            i = image0 + k
            if i in self.traced_images:
                self.classes[str(i)] = {"predicted": int(pred), "label": None if labels is None
                                        else int(np.asarray(labels).reshape(-1)[k])}

    def wants(self, name: str) -> bool:
        return name in self.meta

    def write(self, name: str, image0: int, raster: np.ndarray) -> None:
        """``raster``: uint8 ``(B, neurons, cycles)`` for images ``image0 … image0+B−1``."""
        b = raster.shape[0]
        idx = np.arange(image0, image0 + b)
        if self.images is not None:
            sel = np.isin(idx, self.images)
            raster, idx = raster[sel], idx[sel]
        img, neuron, cyc = np.nonzero(raster)
        rec = np.empty(len(img), TRACE_DTYPE)
        rec["image"] = idx[img]
        rec["neuron"] = neuron
        rec["cycle"] = cyc
        with open(self.tmp / self.meta[name]["file"], "ab") as fh:
            rec.tofile(fh)
        self.meta[name]["events"] += int(len(rec))
        self.meta[name]["cycles"] = int(raster.shape[2])
        self.traced_images.update(int(i) for i in idx)

    def close(self) -> None:
        """Move the finished trace into place (replacing a previous one), manifest last."""
        if self.closed:
            return
        old = self.dir / "trace.json"
        previous = _previous_files(self.dir)
        if old.exists():
            old.unlink()  # from here until the new manifest lands, readers see no trace
        for stale in previous | {p.name for p in self.dir.glob("raster.*")} \
                | {p.name for p in self.dir.glob("spike_counts.*")}:
            target = self.dir / stale
            if target.is_file() and not target.is_symlink():
                target.unlink()
        for meta in self.meta.values():
            os.replace(self.tmp / meta["file"], self.dir / meta["file"])
        self._write_manifest()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.closed = True

    def abort(self) -> None:
        """Drop what was written; the directory keeps what it held before."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.closed = True

    def _write_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "complete": True,
            "dtype": [[n, TRACE_DTYPE.fields[n][0].str] for n in TRACE_DTYPE.names],
            "neuron_order": "flat index in (C, H, W) order",
            "images": sorted(self.traced_images),
            "classes": self.classes,
            "layers": self.meta,
        }
        atomic_write_text(self.dir / "trace.json", json.dumps(manifest, indent=1))


_TMP_PREFIX = ".tmp-trace-"


def check_trace_dir(directory, flag: str = "--trace") -> Path:
    """``directory`` can take a trace: new, empty, or holding a trace (which a finished run
    replaces). Checked before any compute starts."""
    from ..io.paths import check_out_dir

    directory = check_out_dir(directory, flag)
    if directory.is_dir() and not (directory / "trace.json").exists():
        others = [p.name for p in directory.iterdir() if not p.name.startswith(_TMP_PREFIX)]
        if others:
            raise XbarsimError(f"{flag}: {directory} holds files but no trace.json (not a "
                               f"trace folder); give a new or empty folder (got {directory})")
    return directory


def _previous_files(directory: Path) -> set:
    """The ``.events`` files the trace now in ``directory`` names (plain names only)."""
    try:
        manifest = json.loads((directory / "trace.json").read_text())
        files = {m["file"] for m in manifest["layers"].values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str) and _plain_events_name(f)}


def _remove_stale_temps(directory: Path) -> None:
    """Temporary folders of writers that are no longer running (killed runs)."""
    for p in directory.glob(f"{_TMP_PREFIX}*"):
        pid = p.name[len(_TMP_PREFIX):]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover from an earlier writer in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _plain_events_name(name: str) -> bool:
    from ..io.paths import inside
    return inside(".", name) and name.endswith(".events") and not name.startswith(".")


def read_trace(directory) -> dict:
    """``{layer: structured array of events}`` plus ``"_manifest"``. Refuses a folder whose
    manifest is not an ``xbarsim-trace-1`` one, names files outside the folder, or does not match
    its ``.events`` files (a torn or interrupted write). Also reads a NIRData trace
    (``--trace-format nir``): a ``.nir`` file, or a directory holding ``trace.nir`` and no
    ``trace.json`` (:mod:`xbarsim.engine.trace_nir`)."""
    directory = Path(directory)
    if directory.suffix == ".nir" and directory.is_file() or (
            not (directory / "trace.json").exists() and (directory / "trace.nir").is_file()):
        from .trace_nir import read_nir_trace

        return read_nir_trace(directory if directory.is_file() else directory / "trace.nir")
    where = directory / "trace.json"
    try:
        manifest = json.loads(where.read_text())
    except FileNotFoundError:
        raise XbarsimError(f"{directory}: no trace.json here (not a trace directory, or a run "
                           f"that did not finish)") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise XbarsimError(f"{where}: not a readable trace manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise XbarsimError(f"{where}: format: expected {FORMAT} (got {got})")
    out = {"_manifest": manifest}
    try:
        dtype = np.dtype([(str(n), str(t)) for n, t in manifest.get("dtype", [])]) \
            if manifest.get("dtype") else TRACE_DTYPE
        if set(dtype.names or ()) != {"image", "neuron", "cycle"} or \
                any(dtype[n].kind not in "iu" for n in dtype.names):
            raise TypeError
    except (TypeError, ValueError):
        raise XbarsimError(f"{where}: dtype: not a record dtype of integer image, neuron and "
                           f"cycle fields (got {manifest.get('dtype')})") from None
    layers = manifest.get("layers")
    images = manifest.get("images")
    if not isinstance(layers, dict) or not isinstance(images, list) or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in images):
        raise XbarsimError(f"{where}: layers/images: missing or malformed")
    for name, meta in layers.items():
        out[name] = _read_events(directory, where, name, meta, dtype)
    return out


def _read_events(directory: Path, where: Path, name: str, meta, dtype) -> np.ndarray:
    def is_int(v, lo=0):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    if not isinstance(meta, dict):
        raise XbarsimError(f"{where}: layers.{name}: not a mapping (got {meta})")
    file = meta.get("file")
    if not isinstance(file, str) or not _plain_events_name(file):
        raise XbarsimError(f"{where}: layers.{name}.file: must be a <name>.events file inside "
                           f"the trace folder (got {file})")
    for key in ("neurons", "events"):
        if not is_int(meta.get(key), 1 if key == "neurons" else 0):
            raise XbarsimError(f"{where}: layers.{name}.{key}: must be an integer >= "
                               f"{1 if key == 'neurons' else 0} (got {meta.get(key)})")
    if meta.get("cycles") is not None and not is_int(meta["cycles"], 1):
        raise XbarsimError(f"{where}: layers.{name}.cycles: must be an integer >= 1 "
                           f"(got {meta['cycles']})")
    path = directory / file
    if path.is_symlink() or not path.is_file():
        raise XbarsimError(f"{path}: layers.{name}: events file missing (or not a regular "
                           f"file)")
    size = path.stat().st_size
    if size != meta["events"] * dtype.itemsize:
        torn = " (a torn last record)" if size % dtype.itemsize else ""
        raise XbarsimError(f"{path}: holds {size} bytes but trace.json says "
                           f"{meta['events']} events of {dtype.itemsize} bytes{torn}: an "
                           f"interrupted or altered trace; run again")
    return np.fromfile(path, dtype=dtype)


def plot_trace(directory, out_dir=None, max_images: int = 4, fmt: str = "png") -> list:
    """Raster (neuron vs cycle: one row of small panels per image, one column per layer, each
    row titled with the image's label and predicted class when the trace records them) and
    per-layer histograms of spikes per (neuron, image): writes ``raster.<fmt>`` and
    ``spike_counts.<fmt>`` (png, pdf or svg) into ``out_dir`` (default: the trace directory)
    and returns their paths, a list whose ``figures`` attribute holds the two
    :class:`matplotlib.figure.Figure` objects. Drawn without pyplot, so the active matplotlib
    backend is left as it is (:mod:`xbarsim.io.plotting`)."""
    from ..io.plotting import Plots, new_figure, save_figure

    data = read_trace(directory)
    manifest = data.pop("_manifest")
    out_dir = Path(out_dir or directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = list(manifest["layers"])
    written = Plots()
    if not layers:
        raise XbarsimError(f"{directory}: the trace holds no layers")
    if max_images < 1:
        raise XbarsimError(f"--images: must be >= 1 (got {max_images})")
    images = manifest["images"][:max_images] or [0]
    classes = manifest.get("classes") if isinstance(manifest.get("classes"), dict) else {}
    n_img, n_lay = len(images), len(layers)
    fig = new_figure(figsize=(2.6 * n_lay + 0.6, 1.7 * n_img + 0.8), layout="constrained")
    rows = fig.subfigures(n_img, 1, squeeze=False)[:, 0]
    first_axes = {}
    for i, (row, img) in enumerate(zip(rows, images)):
        row.suptitle(_image_label(img, classes), fontsize=8, x=0.01, ha="left")
        axes = row.subplots(1, n_lay, squeeze=False)[0]
        for j, name in enumerate(layers):
            ev = data[name]
            meta = manifest["layers"][name]
            ax = axes[j]
            if j in first_axes:
                ax.sharex(first_axes[j])
                ax.sharey(first_axes[j])
            else:
                first_axes[j] = ax
            e = ev[ev["image"] == img]
            ax.scatter(e["cycle"], e["neuron"], s=1.5, marker="|", color="k", linewidths=0.6)
            ax.set_xlim(-0.5, (meta["cycles"] or 1) - 0.5)
            ax.set_ylim(-0.5, meta["neurons"] - 0.5)
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(f"{name} ({meta['neurons']} neurons)", fontsize=8)
            if j == 0:
                ax.set_ylabel("neuron (flat index)", fontsize=7)
            if i == n_img - 1:
                ax.set_xlabel("cycle in the window", fontsize=7)
            else:
                ax.tick_params(labelbottom=False)
    path = out_dir / f"raster.{fmt}"
    save_figure(fig, path, fmt, dpi=110)
    written.add(path, fig)

    fig = new_figure(figsize=(3.2 * n_lay, 2.8))
    axes = fig.subplots(1, n_lay, squeeze=False)
    n_all = max(1, len(manifest["images"]))
    for i, name in enumerate(layers):
        ev = data[name]
        meta = manifest["layers"][name]
        key = ev["image"].astype(np.int64) * meta["neurons"] + ev["neuron"]
        _, per_neuron = np.unique(key, return_counts=True)
        silent = n_all * meta["neurons"] - len(per_neuron)
        counts = np.concatenate([per_neuron, np.zeros(max(silent, 0), np.int64)])
        ax = axes[0, i]
        ax.hist(counts, bins=np.arange(0, (meta["cycles"] or 1) + 2) - 0.5, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({n_all} images)", fontsize=9)
        ax.set_xlabel("spikes of one neuron for one image")
        if i == 0:
            ax.set_ylabel("(neuron, image) pairs, log scale")
    fig.tight_layout()
    path = out_dir / f"spike_counts.{fmt}"
    save_figure(fig, path, fmt, dpi=110)
    written.add(path, fig)
    return written


def _image_label(img: int, classes: dict) -> str:
    c = classes.get(str(img))
    if not isinstance(c, dict):
        return f"image {img}"
    label, pred = c.get("label"), c.get("predicted")
    if label is None:
        return f"image {img}: predicted {pred}"
    return f"image {img}: label {label}, predicted {pred}"
