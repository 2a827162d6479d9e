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
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..io.atomic import atomic_write
from ..errors import XbarsimError

STAGES = ("plain", "nc", "finetune", "cycle-finetune")
# TrainConfig fields that may differ between the interrupted run and its resumption
FREE = ("threads", "resume", "checkpoint")


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
            try:
                saved = torch.load(self.path, map_location="cpu", weights_only=False)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
                raise XbarsimError(f"{self.path}: --resume: not a readable checkpoint ({exc})") \
                    from None
            old = saved.get("fingerprint", {})
            for key in sorted(set(old) | set(fingerprint)):
                if key in FREE:
                    continue
                if old.get(key) != fingerprint.get(key):
                    raise XbarsimError(
                        f"{self.path}: --resume: the checkpoint is of a different run ({key}: "
                        f"{old.get(key)!r} there, {fingerprint.get(key)!r} now); drop --resume to "
                        f"start again")
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
        model.load_state_dict(s["model"])
        model.wsteps = dict(s["wsteps"])
        model.scales = dict(s["scales"])
        model.lambdas = dict(s["lambdas"])
        model.mode = s["mode"]
        model.cycle = bool(s["cycle"])
        torch.set_rng_state(s["torch_rng"])

    def restore_loop(self, opt, sched, gen) -> None:
        s = self.saved
        opt.load_state_dict(s["opt"])
        sched.load_state_dict(s["sched"])
        gen.set_state(s["gen"])

    def save(self, stage: str, epoch: int, model, opt, sched, gen) -> None:
        if self.path is None:
            return
        state = {"fingerprint": self.fingerprint, "stage": stage, "epoch": epoch,
                 "model": model.state_dict(), "bn": model.bn is not None,
                 "wsteps": dict(model.wsteps), "scales": dict(model.scales),
                 "lambdas": dict(model.lambdas), "mode": model.mode, "cycle": model.cycle,
                 "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state(),
                 "torch_rng": torch.get_rng_state(), "history": self.history,
                 "figures": self.figures, "clustering": self.clustering}
        atomic_write(self.path, lambda fh: torch.save(state, fh), mode="wb")
