"""The options of ``xbarsim train`` checked (one line per mistake) and turned into a network spec
and a :class:`~xbarsim.train.loop.TrainConfig`; the run's log file. Importing this module does not
import PyTorch: the checks come before it."""

from __future__ import annotations

import json
from dataclasses import replace

from ..errors import XbarsimError


def parse_bits(text: str) -> tuple:
    """``"M,N"`` → ``(M, N)``: signal bits 1..16 and weight bits 2..16."""
    parts = text.split(",")
    try:
        m, n = (int(p) for p in parts)
    except ValueError:
        raise XbarsimError(f"--bits: must be M,N, two integers (got {text})") from None
    if not 1 <= m <= 16 or not 2 <= n <= 16:
        raise XbarsimError(f"--bits: M must be in 1..16 and N in 2..16 (got {text})")
    return m, n


def check_outputs(*, seed, bits, label_smoothing, out, log=None) -> tuple:
    """What can be checked before PyTorch is imported: the seed, the bits (returned as ``(M,
    N)``), the label smoothing and the output paths; then that PyTorch is installed."""
    from ..config.section import check_seed
    from ..io.paths import check_out_file

    check_seed(seed, "--seed")
    m, n = parse_bits(bits)
    if not 0 <= label_smoothing < 1:
        raise XbarsimError(f"--label-smoothing: must be in [0, 1) (got {label_smoothing})")
    check_out_file(out, "--out")
    if log:
        check_out_file(log, "--log")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise XbarsimError("xbarsim train needs PyTorch: pip install -e '.[train]'") from None
    return m, n


def train_spec(network, m: int, n: int, bias_mode=None):
    """The network YAML's spec at ``M`` signal and ``N`` weight bits (input bits follow ``M``
    where they followed the signal bits), with ``bias_mode`` when given."""
    from ..config.spec import load_network_spec

    spec = load_network_spec(network)
    in_bits = m if spec.input_bits == spec.signal_bits else spec.input_bits
    spec = replace(spec, signal_bits=m, weight_bits=n, input_bits=in_bits)
    return spec if bias_mode is None else replace(spec, bias_mode=bias_mode)


def train_config(spec, *, out, method, epochs, finetune_epochs, cycle_epochs, batch, lr,
                 finetune_lr, weight_decay, lam, layer_lambda, alpha, grid, shift, flip,
                 batch_norm, channels_last, optimizer, label_smoothing, decay_norm_bias,
                 schedule, calib_quantile, seed, threads, train_limit, test_limit, checkpoint,
                 resume, init, torch_device, **_):
    """The :class:`~xbarsim.train.loop.TrainConfig` of ``xbarsim train``'s options (named as
    the command names them; others are ignored), each checked: ``layer_lambda`` as
    ``["NAME=VALUE", ...]`` over ``spec``'s conv/fc layers; ``lr`` None: 3e-3 from scratch,
    1e-3 with ``init``; ``checkpoint`` None: in the user cache, named after ``out``."""
    from .checkpoint import default_path
    from .loop import TrainConfig

    lambdas = {}
    names = [l.name for l in spec.compute_layers]
    for item in layer_lambda:
        name, _, value = item.partition("=")
        if name not in names:
            raise XbarsimError(f"--layer-lambda: no conv/fc layer '{name}' (have {', '.join(names)})")
        try:
            lambdas[name] = float(value)
        except ValueError:
            raise XbarsimError(f"--layer-lambda: {item}: value must be a number") from None
    if not 0 < calib_quantile <= 1:
        raise XbarsimError(f"--calib-quantile: must be in (0, 1] (got {calib_quantile})")
    if shift is not None and shift < 0:
        raise XbarsimError(f"--shift: must be >= 0 (got {shift})")
    counts = {"epochs": epochs, "finetune_epochs": finetune_epochs, "cycle_epochs": cycle_epochs,
              "batch": batch, "threads": threads}
    for key, v in counts.items():
        low = 1 if key in ("batch", "threads") else 0
        if v < low:
            raise XbarsimError(f"--{key.replace('_', '-')}: must be >= {low} (got {v})")
    return TrainConfig(method=method, epochs=epochs, finetune_epochs=finetune_epochs,
                       cycle_epochs=cycle_epochs, batch=batch,
                       lr=lr if lr is not None else (1e-3 if init else 3e-3),
                       finetune_lr=finetune_lr, weight_decay=weight_decay, lam=lam,
                       lambdas=lambdas, alpha=alpha, grid=grid, shift=shift, flip=flip,
                       batch_norm=batch_norm, channels_last=channels_last, optimizer=optimizer,
                       label_smoothing=label_smoothing, decay_norm_bias=decay_norm_bias,
                       schedule=schedule, quantile=calib_quantile, seed=seed, threads=threads,
                       train_limit=train_limit, test_limit=test_limit,
                       checkpoint=str(checkpoint or default_path(out)), resume=resume,
                       device=torch_device)


def write_log(path, options: dict, result) -> None:
    """``--log FILE.json``: the options, the per-epoch history, the figures and the clustering."""
    from ..io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps({"config": options, "history": result.history,
                                        "figures": result.figures,
                                        "clustering": result.clustering}, indent=1, default=str))
