"""Per-epoch training checkpoints and ``--resume`` (bit-for-bit continuation).

A checkpoint holds everything the rest of a run depends on: the model's parameters and buffers
(batch-norm statistics included), the optimizer's and the learning-rate schedule's state, the state
of the generator that draws shuffles and augmentation, torch's global generator, the stage and
epoch reached, the per-epoch history, the figures measured so far, the Weight Clustering result and
the weight steps. A run resumed from it makes the same draws and the same updates as one that was
never interrupted, so (same seed, same thread count) it ends with the same weights bit for bit.

Stages of one ``xbarsim train`` run, in order: ``plain`` (float training), ``nc`` (Neuron
Convergence), ``finetune`` (with clustered weights), ``cycle-finetune`` (hardware in the loop).
Checkpoints are written atomically (temporary file, then rename) after every epoch.

A checkpoint is data, never code: it holds only tensors and plain values (numbers, strings,
lists, tuples, dicts; :func:`_plain` makes xbarsim's own entries so) and is read back with
``torch.load(..., weights_only=True)``, which refuses any other Python object instead of running
it. Before that the file must be a regular file and a zip archive whose directory, member names
and declared member sizes are bounded (:mod:`xbarsim.io.zipcheck`, the memory budget); after it,
every entry must have the type this module wrote, and every tensor must fit in its own storage
(no stride-0 view claiming more values than the file holds).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import XbarsimError
from ..io.atomic import atomic_write
from ..io.files import memory_budget, open_regular
from ..io.zipcheck import ERRORS as ZIP_ERRORS
from ..io.zipcheck import member_size, open_zip

STAGES = ("plain", "nc", "finetune", "cycle-finetune")
# TrainConfig fields that may differ between the interrupted run and its resumption
FREE = ("threads", "resume", "checkpoint")
#: Largest pickle inside a checkpoint (it holds the structure; the tensors' bytes are beside it).
MAX_PICKLE = 64 << 20
#: Entries of a checkpoint and their types (``tensor``: a torch tensor).
FIELDS = {"fingerprint": dict, "stage": str, "epoch": int, "model": dict, "bn": bool,
          "wsteps": dict, "scales": dict, "lambdas": dict, "mode": str, "cycle": bool,
          "opt": dict, "sched": dict, "gen": torch.Tensor, "torch_rng": torch.Tensor,
          "history": list, "figures": dict, "clustering": dict}


def default_path(out) -> Path:
    """The checkpoint of a run writing ``out``: in the user cache (never in the repository),
    named after the output file and a hash of its absolute path."""
    from ..io.datasets import cache_dir

    out = Path(out).resolve()
    tag = hashlib.sha1(str(out).encode()).hexdigest()[:10]
    return cache_dir() / "checkpoints" / f"{out.stem}-{tag}.pt"


class Checkpoint:
    """The run's resumable state. ``fingerprint``: what must match for ``--resume`` to continue
    a checkpoint (the recipe, the network, the bits, the init file)."""

    def __init__(self, path, fingerprint: dict, resume: bool = False, log=print):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.history: list = []
        self.figures: dict = {}
        self.clustering: dict = {}
        self.saved = None          # the loaded checkpoint (resume) or None
        if resume and self.path is not None and self.path.exists():
            saved = load(self.path)
            old, now = saved["fingerprint"], _plain(fingerprint)
            for key in sorted(set(old) | set(now)):
                if key in FREE:
                    continue
                if old.get(key) != now.get(key):
                    raise XbarsimError(
                        f"{self.path}: --resume: the checkpoint is of a different run ({key}: "
                        f"{_brief(old.get(key))} there, {_brief(now.get(key))} now); drop "
                        f"--resume to start again")
            self.saved = saved
            self.history = list(saved["history"])
            self.figures = dict(saved["figures"])
            self.clustering = dict(saved["clustering"])
            log(f"resume: {saved['stage']} epoch {saved['epoch']} done ({self.path})")
        elif resume:
            log(f"resume: no checkpoint at {self.path}; starting from the beginning")

    # -- where the saved run stands ------------------------------------------------------------
    def past(self, stage: str) -> bool:
        """The saved run has finished ``stage`` and moved on (so everything up to the next
        stage's training is in the checkpoint)."""
        return self.saved is not None and STAGES.index(self.saved["stage"]) > STAGES.index(stage)

    def started(self) -> bool:
        return self.saved is not None

    def epoch_in(self, stage: str) -> int:
        """Epochs of ``stage`` already done (0 when the saved run has not reached it)."""
        if self.saved is None or self.saved["stage"] != stage:
            return 0
        return int(self.saved["epoch"])

    def restore_model(self, model) -> None:
        """Parameters, buffers and the model's quantizer settings as saved."""
        s = self.saved
        if s["bn"] is False and model.bn is not None:
            model.bn = None
        try:
            model.load_state_dict(s["model"])
            torch.set_rng_state(s["torch_rng"])
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise self._misfit(exc) from None
        model.wsteps = dict(s["wsteps"])
        model.scales = dict(s["scales"])
        model.lambdas = dict(s["lambdas"])
        model.mode = s["mode"]
        model.cycle = bool(s["cycle"])

    def restore_loop(self, opt, sched, gen) -> None:
        s = self.saved
        groups = s["opt"].get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
            raise self._misfit("the optimizer's parameter groups differ")
        for now, old in zip(opt.param_groups, groups):  # its settings as this run has them
            for key, value in now.items():
                if key != "params" and isinstance(old, dict) and key in old and \
                        not _same_kind(old[key], value):
                    raise self._misfit(f"optimizer setting {key} is {_brief(old[key])}")
        try:
            opt.load_state_dict(s["opt"])
            sched.load_state_dict(s["sched"])
            gen.set_state(s["gen"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise self._misfit(exc) from None
        for group in opt.param_groups:  # the optimizer's running averages: one per weight
            for p in group["params"]:
                for key, value in opt.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() and \
                            value.shape != p.shape:
                        raise self._misfit(f"optimizer state {key} has shape "
                                           f"{list(value.shape)}, its weight {list(p.shape)}")

    def _misfit(self, exc) -> XbarsimError:
        first = " ".join(str(exc).split())[:160] or type(exc).__name__
        return XbarsimError(f"{self.path}: --resume: the checkpoint does not fit this run "
                            f"({first})")

    def save(self, stage: str, epoch: int, model, opt, sched, gen) -> None:
        if self.path is None:
            return
        state = {"fingerprint": self.fingerprint, "stage": stage, "epoch": epoch,
                 "bn": model.bn is not None, "wsteps": dict(model.wsteps),
                 "scales": dict(model.scales), "lambdas": dict(model.lambdas), "mode": model.mode,
                 "cycle": model.cycle, "history": self.history, "figures": self.figures,
                 "clustering": self.clustering}
        state = _plain(state)  # numbers, strings and containers only: loads with weights_only
        state.update({"model": model.state_dict(), "opt": opt.state_dict(),
                      "sched": sched.state_dict(), "gen": gen.get_state(),
                      "torch_rng": torch.get_rng_state()})
        atomic_write(self.path, lambda fh: torch.save(state, fh), mode="wb")


def _same_kind(a, b) -> bool:
    """``a`` may stand where the optimizer has ``b``: a number for a number (the learning rate,
    momentum, ...), a sequence of as many numbers for one (Adam's betas); other settings (flags,
    None for a default) are left to torch."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) or \
            isinstance(v, torch.Tensor) and v.dim() == 0
    if number(b):
        return number(a)
    if isinstance(b, (list, tuple)) and all(number(v) for v in b):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(number(v) for v in a)
    return True


def _short(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(obj):
    """``obj`` with NumPy numbers as Python numbers, arrays as tensors, paths (and anything else
    that is not a number, string, tensor or container) as strings: what ``torch.load`` reads
    back with ``weights_only=True``."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)) and \
            not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return str(obj)


def load(path) -> dict:
    """A checkpoint read as data (module docstring); every problem is one line naming the file,
    ``FILE: --resume: ...``."""
    def fail(message):
        return XbarsimError(f"{path}: --resume: {message}")

    what = "checkpoint written by xbarsim train"
    budget = memory_budget()
    with open_regular(path, fail) as fh:
        archive = open_zip(fh, fail, what)
        total = 0
        for info in archive.infolist():
            def member_fail(message, name=info.filename):
                return fail(f"{name[:80]}: {message}")

            size = member_size(info, member_fail)
            if info.filename.endswith(".pkl") and size > MAX_PICKLE:
                raise member_fail(f"declares {size:,} bytes (at most {MAX_PICKLE:,})")
            total += size
        if total > budget:
            raise fail(f"its members declare {total:,} bytes, more than the {budget:,} bytes of "
                       "memory available")
        for info in archive.infolist():  # torch's reader checks no CRC: a flipped bit would load
            try:
                with archive.open(info) as member:
                    while member.read(1 << 20):
                        pass
            except (zlib.error, *ZIP_ERRORS) as exc:
                raise fail(f"{info.filename[:80]}: corrupt zip member ({_short(exc)})") from None
        fh.seek(0)
        try:
            saved = torch.load(fh, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            text = " ".join(str(exc).split())
            found = re.search(r"GLOBAL ([A-Za-z0-9_.]{1,80})", text)
            other = re.search(r"(Unsupported [^.]{1,80})", text)
            detail = f"global {found.group(1)}" if found else \
                other.group(1) if other else "an object torch's safe loader refuses"
            raise fail(f"holds a Python object other than tensors and plain values ({detail}); "
                       "xbarsim reads checkpoints as data and never runs code from them") \
                from None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            first = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise fail(f"not a readable checkpoint ({first})") from None
    _check(saved, fail)
    return saved


def _check(saved, fail) -> None:
    """Every entry of the type :meth:`Checkpoint.save` wrote; every tensor within its storage."""
    if not isinstance(saved, dict):
        raise fail(f"not a checkpoint written by xbarsim train (holds a {type(saved).__name__})")
    for key, kind in FIELDS.items():
        if key not in saved:
            raise fail(f"not a checkpoint written by xbarsim train (no {key!r} entry)")
        value = saved[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise fail(f"{key}: expected {kind.__name__} (got {type(value).__name__})")
    if saved["stage"] not in STAGES:
        raise fail(f"stage: expected one of {', '.join(STAGES)} (got {saved['stage'][:40]!r})")
    if saved["epoch"] < 0:
        raise fail(f"epoch: must be >= 0 (got {saved['epoch']})")
    if not all(isinstance(r, dict) for r in saved["history"]):
        raise fail("history: expected a list of records")
    if not all(isinstance(k, str) for k in saved["fingerprint"]):
        raise fail("fingerprint: expected names for keys")
    for key in ("wsteps", "scales", "lambdas", "figures"):  # numbers the run computes with
        for name, value in saved[key].items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise fail(f"{key}.{str(name)[:40]}: expected a number (got "
                           f"{type(value).__name__})")
    budget, total = memory_budget(), 0
    for name, t in _tensors(saved):
        need = t.numel() * t.element_size()
        have = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
        if need > have:
            raise fail(f"{name}: a tensor of shape {list(t.shape)} needs {need:,} bytes but its "
                       f"storage holds {max(have, 0):,}")
        total += need
        if total > budget:
            raise fail(f"its tensors need more than the {budget:,} bytes of memory available")


def _tensors(obj, name="checkpoint", depth=0):
    """``(where, tensor)`` for every tensor in the loaded structure."""
    if depth > 32:
        return
    if isinstance(obj, torch.Tensor):
        yield name, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{name}.{str(k)[:40]}", depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{name}[{i}]", depth + 1)
