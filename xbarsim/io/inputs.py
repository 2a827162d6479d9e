"""The images a run scores: the user's ``.npy`` files (``--inputs``, ``--labels``) read through
the hardened reader and checked against the network, or the network's data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, InputFileError
from .files import load_npy_file


def load_inputs(spec, *, inputs=None, labels=None, samples=None, split="test", use_sample=False,
                download=False):
    """``(images, labels or None, source, note)`` for a network ``spec``: uint8 images ``(N, C,
    H, W)`` from the ``inputs`` file (labels from the ``labels`` file) or the spec's data set;
    ``source`` says where they came from and ``note`` what stands in for a missing data set
    ("" when nothing does)."""
    if labels and not inputs:
        raise DataError("--labels: given without --inputs (labels of a data set come with it)")
    if inputs:
        path = Path(inputs)
        images = load_npy_file(path, lambda why: InputFileError(path, "--inputs", why))
        want = tuple(spec.input_shape)
        if images.ndim == 3 and want[0] == 1:
            images = images[:, None]
        if images.dtype != np.uint8:
            raise InputFileError(path, "--inputs", f"images must be uint8 (got {images.dtype})")
        if images.shape[1:] != want:
            raise InputFileError(path, "--inputs", f"shape must be (N, {', '.join(map(str, want))}) "
                                 f"(got {images.shape})")
        if len(images) == 0:
            raise InputFileError(path, "--inputs", f"holds no images (got shape {images.shape})")
        classes = None
        if labels:
            classes = load_labels(Path(labels), len(images), spec.output.n_outputs)
        if samples is not None:
            images = images[:samples]
            classes = None if classes is None else classes[:samples]
        return images, classes, f"{path} ({len(images)} images)", ""
    from . import datasets

    if spec.dataset == "synthetic":
        n = samples or 100
        images, _ = datasets.synthetic(spec.input_shape, n, seed=spec.seed)
        return images, None, f"synthetic ({n} images, seed {spec.seed})", ""
    chosen = datasets.select_images(spec.dataset, split, samples, use_sample=use_sample,
                                    download=download, shape=spec.input_shape, seed=spec.seed)
    images, classes, source = chosen
    return images, classes, source, chosen.note


def load_labels(path: Path, n_images: int, n_classes: int) -> np.ndarray:
    """A ``--labels`` file: integers ``0 … n_classes−1``, one per image, 1-D (or ``(N, 1)``)."""
    def fail(why):
        return InputFileError(path, "--labels", why)

    labels = load_npy_file(path, fail)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise fail(f"must be a 1-D array of class indices (got shape {labels.shape})")
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(f"label {i} is not a whole number (got {float(labels[i])})")
    elif labels.dtype.kind not in "iub":
        raise fail(f"must hold integer class indices (got dtype {labels.dtype})")
    if len(labels) != n_images:
        raise fail(f"{len(labels)} labels for {n_images} images")
    out_of_range = (labels < 0) | (labels >= n_classes)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise fail(f"label {i} is outside 0..{n_classes - 1}, the network's {n_classes} classes "
                   f"(got {labels[i].item()})")
    return labels.astype(np.int64)
