"""A PyTorch model of a :class:`~xbarsim.config.layers.NetworkSpec` with the paper's quantizers.

Signal modes (``QNet.mode``):

* ``float`` - ReLU signals, input ``p = u/255``: the ideal float network (Table 1) and the
  baselines' source.
* ``scale`` - w/o baseline of Table 2: the float network with each layer's signal clipped and
  rounded to ``M`` bits at a scale chosen from data (``scales[name]`` = float value of one count);
  the input is ``rint(p·(2^M_in−1))`` counts.
* ``count`` - Neuron Convergence: every signal is measured in counter units and quantized to
  ``clip(floor(a + 1/2), 0, 2^M−1)`` with a straight-through gradient; the Eq. 3 regularizer is
  collected in ``model.reg``. The input is the integer image ``rint(u/255·(2^M_in−1))``.

Weights are float parameters; ``model.wsteps[name] = s`` makes the forward use
``s·clip(rint(W/s), −lim, lim)`` (straight-through) and the bias ``s·rint(b/s)`` - the fine-tuning
after Weight Clustering. In ``count`` mode with ``s = 1/θ`` the exported integer network
(:func:`export_integer`) computes exactly what :func:`exact_forward` computes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.kinds import kind_of
from ..config.layers import INPUT
from ..errors import XbarsimError
from ..network.weights import LayerWeights
from . import quant



class TorchContext:
    """What a digital layer's torch op (config/kinds.py) reads: ``mode`` (``float``, ``scale``,
    ``count``, or ``exact`` for the integer network in float64), the counter's top, the count
    scales and the feeder lookup of scale mode, and torch itself."""

    torch = torch
    F = F
    round_half_up = staticmethod(quant.ste_round_half_up)

    def __init__(self, mode, top, scales=None, feeder=None):
        self.mode, self.top, self.scales, self.feeder = mode, top, scales or {}, feeder


class QNet(nn.Module):
    def __init__(self, spec, seed: int = 0, batch_norm: bool = False):
        super().__init__()
        for layer in spec.layers:
            kind = kind_of(layer)
            if (kind.torch_linear if kind.compute else kind.torch) is None:
                raise XbarsimError(f"{spec.source}: training does not support {layer.kind} layers")
        self.spec = spec
        self.bits = spec.signal_bits
        self.weight_bits = spec.weight_bits
        self.top = (1 << spec.signal_bits) - 1
        self.top_in = (1 << spec.input_bits) - 1
        self.mode = "float"
        self.cycle = False   # count mode + wsteps: forward values from the cycle-level hardware
        self.scales: dict = {}
        self.wsteps: dict = {}
        self.lambdas: dict = {}
        self.alpha = quant.ALPHA
        self.reg = torch.zeros(())
        g = torch.Generator().manual_seed(int(seed))
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        for layer in spec.compute_layers:
            fan_in = layer.rows
            w = torch.randn(layer.weight_shape, generator=g) * math.sqrt(2.0 / fan_in)
            self.weight[layer.name] = nn.Parameter(w)
            self.bias[layer.name] = nn.Parameter(torch.zeros(layer.cols))
        # batch norm after every conv layer (float training only): folded into the conv's weights
        # and bias by fold_batch_norm before anything is quantized (DESIGN.md section 2)
        self.bn = (nn.ModuleDict({l.name: nn.BatchNorm2d(l.cols) for l in spec.compute_layers
                                  if l.im2col}) if batch_norm else None)

    # -- inputs ----------------------------------------------------------------------------------
    def prepare(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 images → the model's input (float tensor) for the current mode."""
        u = images_u8.to(torch.int64)
        counts = (u * (2 * self.top_in) + 255) // 510  # rint(u/255·top_in), exact (network.py)
        if self.mode == "float":
            return u.to(torch.float32) / 255.0
        if self.mode == "scale":
            return counts.to(torch.float32) / self.top_in
        return counts.to(torch.float32)

    # -- forward ---------------------------------------------------------------------------------
    def layer_params(self, name):
        w, b = self.weight[name], self.bias[name]
        s = self.wsteps.get(name)
        if s is not None:
            lim = quant.max_level(self.weight_bits)
            w = quant.ste_quantize_weight(w, s, lim)
            b = b + (torch.round(b / s) * s - b).detach()
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the last layer's pre-activation (class scores); ``self.reg`` holds Σ λ_i R_g."""
        values = {INPUT: x}
        reg = x.new_zeros(())
        last = self.spec.layers[-1].name
        for layer in self.spec.layers:
            h = values[layer.inputs[0]]
            if layer.is_compute:
                w, b = self.layer_params(layer.name)
                a = kind_of(layer).torch_linear(F, layer, h, w, b)
                if self.bn is not None and layer.name in self.bn:
                    if self.mode != "float":
                        raise XbarsimError("batch norm is for float training: fold it first "
                                           "(fold_batch_norm)")
                    a = self.bn[layer.name](a)
                if self.mode == "count":
                    lam = self.lambdas.get(layer.name, 0.0)
                    if lam and self.training:
                        reg = reg + lam * quant.nc_penalty(a, self.bits, self.alpha)
                hw = None
                if self.cycle and self.mode == "count" and layer.name in self.wsteps:
                    window = self.top_in if self.spec.reads_input(layer) else self.top
                    hw = cycle_counts(layer, h, w, b, self.wsteps[layer.name], window,
                                      spread_bias=self.spec.bias_mode in ("current", "row"))
                if layer.name == last:
                    y = a
                    if hw is not None:  # the hardware's class order: count, then residual
                        fired, resid, theta = hw
                        # float64: a residual's order must survive even far from the threshold
                        score = (torch.clamp(fired.double(), 0, self.top)
                                 + (0.98 / math.pi) * torch.atan(resid.double() / theta))
                        y = a.double() + (score - a.double()).detach()
                elif hw is not None:
                    q = quant.ste_quantize_signal(a, self.top)
                    y = q + (torch.clamp(hw[0].float(), 0, self.top) - q).detach()
                elif self.mode == "float":
                    y = F.relu(a)
                elif self.mode == "scale":
                    s = self.scales[layer.name]
                    y = torch.clamp(torch.floor(a / s + 0.5), 0, self.top) * s
                else:
                    y = quant.ste_quantize_signal(a, self.top)
            else:  # a digital layer: its kind's torch op (config/kinds.py)
                y = kind_of(layer).torch(layer, [values[s] for s in layer.inputs],
                                         TorchContext(self.mode, self.top, self.scales,
                                                      self._feeder))
            values[layer.name] = y
        self.reg = reg
        return values[last]

    def _feeder(self, name):
        """The compute layer whose counts (and count scale) the value ``name`` carries."""
        by_name = {l.name: l for l in self.spec.layers}
        while not by_name[name].is_compute:
            name = by_name[name].inputs[0]
        return name

    # -- activations for calibration ---------------------------------------------------------------
    @torch.no_grad()
    def activation_max(self, x: torch.Tensor, quantile: float = 1.0) -> dict:
        """Per compute layer, the largest (or ``quantile``) post-ReLU output over ``x`` (float mode)."""
        out = {}
        hooks = {}
        values = {INPUT: x}
        for layer in self.spec.layers:
            h = values[layer.inputs[0]]
            if layer.is_compute:
                w, b = self.layer_params(layer.name)
                a = kind_of(layer).torch_linear(F, layer, h, w, b)
                if self.bn is not None and layer.name in self.bn:
                    a = self.bn[layer.name](a)
                y = F.relu(a)
                flat = y.flatten()
                if quantile >= 1:
                    out[layer.name] = float(flat.max())
                else:  # an even subsample of at most 10^6 positive values (torch.quantile's limit)
                    pos = flat[flat > 0]
                    pos = pos[::len(pos) // 1_000_000 + 1]
                    out[layer.name] = float(torch.quantile(pos, quantile)) if len(pos) else 0.0
            else:
                y = kind_of(layer).torch(layer, [values[s] for s in layer.inputs],
                                         TorchContext("float", self.top))
            values[layer.name] = y
        del hooks
        return out


# -- the cycle-level hardware in torch (hardware-aware fine-tuning) -------------------------------
@torch.no_grad()
def cycle_counts(layer, h, w, b, step: float, window: int, chunk: int = 16,
                 spread_bias: bool = False):
    """What the cycle-level engine computes for one conv/fc layer with ideal devices and its
    default options (``uniform`` encoding, membrane starting at ``⌊θ/2⌋ + bias``, reset by
    subtraction, at most one spike per cycle, no drain cycles): ``(fired, residual, θ)``, the IFC
    spike counts (before counter saturation) and final membranes in LSB, as float tensors.
    ``spread_bias`` (bias modes ``current`` and ``row``): the membrane starts at ``⌊θ/2⌋`` and the
    bias arrives split evenly over the window (``engine.simulator.bias_schedule``).

    ``h``: the layer's integer input counts; ``w``, ``b``: weights and bias on the step ``s = 1/θ``
    (``D = w/s`` integer levels). A row holding ``x`` has sent ``floor(((t+1)·x + ⌊T/2⌋)/T)``
    spikes by the end of cycle ``t`` (the uniform schedule), so the column's cumulative input is one
    convolution of those cumulative spike counts; the IFC then steps through the ``T`` cycles.
    """
    theta = float(round(1.0 / step))
    d = torch.round(w.detach() / step)
    bias = torch.round(b.detach() / step)
    x = torch.round(h.detach()).to(torch.int64)
    if not layer.im2col:
        x = x.flatten(1)
    bound = (float(d.abs().sum(dim=tuple(range(1, d.dim()))).max()) * window
             + float(bias.abs().max()) + theta)
    dtype = torch.float32 if bound < 2 ** 24 else torch.float64  # integer sums stay exact
    d = d.to(dtype)

    def cumulative(c):  # (tc, B, ...) cumulative spike counts -> (tc, B, outputs...) LSB sums
        flat = c.reshape(-1, *c.shape[2:]).to(dtype)
        out = kind_of(layer).torch_linear(F, layer, flat, d, None)
        return out.reshape(c.shape[0], c.shape[1], *out.shape[1:])

    half = window // 2
    shape = (1, -1) + (1,) * (len(layer.out_shape) - 1)
    v = None
    prev = fired = None
    for t0 in range(0, window, chunk):
        ts = torch.arange(t0 + 1, min(window, t0 + chunk) + 1, dtype=torch.int64, device=x.device)
        c = torch.div(ts.view(-1, *([1] * x.dim())) * x.unsqueeze(0) + half, window,
                      rounding_mode="floor")
        p = cumulative(c)
        if spread_bias:  # cumulative bias current through each cycle, whole LSBs
            cb = torch.div(ts.view(-1, 1) * bias.to(torch.int64).view(1, -1) + half, window,
                           rounding_mode="floor").to(dtype)
            p = p + cb.view(cb.shape[0], 1, *shape[1:])
        if v is None:
            v = torch.zeros_like(p[0]) + float(int(theta) // 2)
            if not spread_bias:
                v = v + bias.to(dtype).view(shape)
            prev = torch.zeros_like(p[0])
            fired = torch.zeros_like(p[0])
        for i in range(p.shape[0]):
            v = v + (p[i] - prev)
            prev = p[i]
            f = (v >= theta).to(dtype)
            v = v - theta * f
            fired = fired + f
    return fired, v, theta


@torch.no_grad()
def fold_batch_norm(model: QNet) -> None:
    """Fold each conv layer's batch norm (its running statistics, i.e. inference behaviour) into
    the conv's weights and bias and remove it: ``W' = W·γ/√(σ²+ε)``, ``b' = (b−μ)·γ/√(σ²+ε) + β``.
    The folded float network computes what the network with batch norm computes in eval mode."""
    if model.bn is None:
        return
    for name, bn in model.bn.items():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = model.weight[name].double() * scale.view(-1, *([1] * (model.weight[name].dim() - 1)))
        b = (model.bias[name].double() - bn.running_mean.double()) * scale + bn.bias.double()
        model.weight[name].copy_(w.float())
        model.bias[name].copy_(b.float())
    model.bn = None


class _Moments(nn.Module):
    """Stands in for a batch norm: records the per-channel mean and variance of what it is given
    and passes it on unchanged."""

    def forward(self, a):
        self.mean = a.double().mean((0, 2, 3))
        self.var = a.double().var((0, 2, 3), unbiased=False)
        return a


@torch.no_grad()
def unfold_batch_norm(model: QNet, x: torch.Tensor) -> None:
    """The inverse of :func:`fold_batch_norm` for a network whose batch norm was folded away:
    set every batch norm to what it sees on ``x`` (float mode) so that it passes its input on
    unchanged, ``γ = √(σ²+ε)``, ``β = μ``, running statistics ``μ, σ²``. Training can then go on
    with batch norm from a folded float network (``xbarsim train --method plain --batch-norm
    --init FILE``) starting from the function the file computes (exactly in eval mode; in train
    mode up to the batch's own statistics), not from freshly normalised layers."""
    if model.bn is None:
        return
    bns, mode = model.bn, model.mode
    model.bn = nn.ModuleDict({name: _Moments() for name in bns})
    model.mode = "float"
    try:
        model.eval()
        model(x)
        moments = model.bn
    finally:
        model.bn, model.mode = bns, mode
    for name, bn in bns.items():
        mean, var = moments[name].mean, moments[name].var
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.copy_(mean.float())
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())


# -- float <-> count units ---------------------------------------------------------------------------
def float_state(model: QNet) -> dict:
    """``{name: (W, b)}`` as float64 numpy arrays."""
    return {n: (model.weight[n].detach().double().cpu().numpy().copy(),
                model.bias[n].detach().double().cpu().numpy().copy()) for n in model.weight}


def load_float_state(model: QNet, state: dict) -> None:
    with torch.no_grad():
        for n, (w, b) in state.items():
            model.weight[n].copy_(torch.as_tensor(w, dtype=torch.float32))
            model.bias[n].copy_(torch.as_tensor(b, dtype=torch.float32))


def to_count_units(spec, state: dict, act_scale: dict, in_scale: float) -> dict:
    """Rescale a float network whose layer outputs have float value ``act_scale[name]`` per count
    (input: ``in_scale`` per count) into counter units: ``W' = W·S_in/S_out``, ``b' = b/S_out``."""
    out = {}
    scale_of = {INPUT: in_scale}
    for layer in spec.layers:
        if layer.is_compute:
            s_in, s_out = scale_of[layer.inputs[0]], act_scale[layer.name]
            w, b = state[layer.name]
            out[layer.name] = (w * s_in / s_out, b / s_out)
            scale_of[layer.name] = s_out
        else:
            scale_of[layer.name] = scale_of[layer.inputs[0]]
    return out


# -- integer export and exact evaluation ---------------------------------------------------------------
def export_integer(model: QNet) -> dict:
    """``{name: LayerWeights}`` of a count-mode model whose every layer has ``wsteps[name] = 1/θ``."""
    lim = quant.max_level(model.weight_bits)
    out = {}
    for layer in model.spec.compute_layers:
        s = model.wsteps[layer.name]
        theta = int(round(1.0 / s))
        if theta < 1 or abs(theta * s - 1.0) > 1e-12:
            raise XbarsimError(f"layer {layer.name}: step {s} is not 1/θ for an integer θ >= 1")
        w = model.weight[layer.name].detach().double().cpu().numpy()
        b = model.bias[layer.name].detach().double().cpu().numpy()
        levels = quant.assign(w, s, lim).astype(np.int32)
        bias = np.rint(b / s).astype(np.int64)
        out[layer.name] = LayerWeights(levels, bias, theta, float(s))
    return out


@torch.no_grad()
def exact_forward(spec, weights: dict, signals: torch.Tensor):
    """The integer network in torch float64 (exact below 2^53): returns ``(counts, preact)`` of the
    last layer and the prediction ``argmax(preact)`` (first index on ties).

    Why argmax of the pre-activation: ``count = clip(floor(pre/θ), 0, top)`` is non-decreasing in
    ``pre``, so the image's largest count always belongs to the class with the largest ``pre``, and
    the simulator's tie-break (larger pre-activation, then lower index) picks exactly that class.
    """
    top = (1 << spec.signal_bits) - 1
    values = {INPUT: signals.to(torch.float64)}
    last = spec.layers[-1].name
    pre = None
    for layer in spec.layers:
        h = values[layer.inputs[0]]
        if layer.is_compute:
            lw = weights[layer.name]
            d = torch.as_tensor(lw.levels, dtype=torch.float64)
            b = torch.as_tensor(lw.bias, dtype=torch.float64) + float(lw.theta // 2)
            a = kind_of(layer).torch_linear(F, layer, h, d, b)
            y = torch.clamp(torch.floor(a / lw.theta), 0, top)
            # a/θ in float64 is exact enough for floor: a is an integer < 2^53, θ an integer; the
            # quotient's rounding cannot cross an integer boundary (checked in tests).
            if layer.name == last:
                pre = a
        else:
            y = kind_of(layer).torch(layer, [values[s] for s in layer.inputs],
                                     TorchContext("exact", top))
        values[layer.name] = y
    counts = values[last]
    return counts, pre, torch.argmax(pre.flatten(1), dim=1)
