"""A model file (a PyTorch ``.pt2`` from ``torch.export.save``, or a ``.nir`` graph) imported as
a quantized network, with its calibration images: what ``xbarsim import`` does (docs/interop.md).

>>> res, source = import_model_file("model.pt2", bits=(8, 8), calibrate="mnist")  # doctest: +SKIP
>>> res.network.save("model.yaml")                                                 # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError, XbarsimError


def calibration_images(text, samples: int):
    """``(images, labels or None, description)`` for ``--calibrate``: ``mnist``/``cifar10`` (the
    first ``samples`` training images) or uint8 images ``(K, C, H, W)`` in a ``.npy`` file."""
    if text is None:
        return None, None, None
    if text in ("mnist", "cifar10"):
        from ..io import datasets

        images, labels = datasets.load_dataset(text, split="train", limit=samples,
                                               download=False)
        return images, labels, f"{len(images)} {text} training images"
    path = Path(text)
    if path.suffix != ".npy":
        raise XbarsimError(f"--calibrate: expected mnist, cifar10 or a .npy file (got {text})")
    from ..io.files import load_npy_file

    def fail(why):
        return InputFileError(path, "--calibrate", why)

    # the hardened reader (a regular file, header checked); only the first --samples images
    # are read, so a file of any declared size costs what those images take
    images = load_npy_file(path, fail, rows=samples)
    if images.dtype != np.uint8:
        raise fail(f"images must be uint8 (got {images.dtype})")
    images = images[:samples]  # (a Fortran-order array is read whole, within the budget)
    return images, None, f"{len(images)} images from {path}"


def import_model_file(model, *, bits=(None, None), calibrate=None, samples=1000, quantile=1.0,
                      name=None, input_shape=None, trust_pickle=False):
    """``(result, calibration source or None)``: the model file imported at ``bits`` = ``(M,
    N)`` (``(None, None)``: a ``.nir`` written by xbarsim keeps its own), each layer's output
    unit θ chosen on ``calibrate``'s images (:func:`calibration_images`); ``input_shape``: the
    image shape ``(C, H, W)`` a NIR graph with a vector input flattens. ``trust_pickle``: read a
    ``.pt2`` with ``torch.export.load`` (runs code from the file)."""
    model = Path(model)
    m, n = bits
    name = name or model.stem
    if model.suffix == ".nir":
        from .nir_io import is_xbarsim_graph, load_graph, read_nir

        exact = is_xbarsim_graph(load_graph(model))
        images, labels, source = (None, None, None) if exact and not calibrate else \
            calibration_images(calibrate, samples)
        opts = {} if exact else {"quantile": quantile, "input_shape": input_shape,
                                 "labels": labels}
        return read_nir(model, images, signal_bits=m, weight_bits=n, name=name, **opts), source
    if model.suffix == ".pt2":
        if m is None:
            raise XbarsimError("--bits: required for a .pt2 model (e.g. --bits 8,8)")
        images, labels, source = calibration_images(calibrate, samples)
        if images is None:
            raise XbarsimError("--calibrate: required for a .pt2 model (mnist, cifar10 or "
                               "FILE.npy): it chooses each layer's output unit θ")
        try:
            import torch  # noqa: F401
        except ImportError:
            raise XbarsimError("importing .pt2 needs the train extra (torch): pip install "
                               "'xbarsim[train]'") from None
        from .torch_import import import_exported, load_pt2

        program = load_pt2(model, trust_pickle=trust_pickle)
        return import_exported(program, images, signal_bits=m, weight_bits=n, name=name,
                               where=str(model), labels=labels, quantile=quantile), source
    raise XbarsimError(f"{model}: expected a .pt2 (torch.export.save) or .nir file "
                       f"(got {model.suffix or 'no suffix'})")
