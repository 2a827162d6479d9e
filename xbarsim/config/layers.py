"""Layer descriptions with inferred shapes. No weights, no hardware: pure description."""

from __future__ import annotations

from dataclasses import dataclass, field

from .kinds import INPUT, KINDS, conv_out, kind_of, numel as _numel

__all__ = ["INPUT", "LayerSpec", "NetworkSpec", "conv_out", "layer_kinds"]


def layer_kinds() -> tuple:
    """Names of the registered layer kinds (config/kinds.py), in declaration order."""
    return tuple(KINDS)


@dataclass(frozen=True)
class LayerSpec:
    """One layer. Shapes are ``(C, H, W)`` for feature maps, ``(F,)`` for vectors.

    ``inputs`` names the producing layers (``"input"`` is the network input). A ``fc`` layer fed a
    feature map flattens it in (C, H, W) order, as PyTorch's ``flatten`` does.
    """

    name: str
    kind: str
    inputs: tuple
    in_shape: tuple
    out_shape: tuple
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    line: int = 0  # line of the layer in its YAML file (for messages)

    @property
    def is_compute(self) -> bool:
        return kind_of(self).compute

    @property
    def im2col(self) -> bool:
        """A crossbar layer that reads ``k×k×C`` windows of a feature map (conv), not the flattened
        input (fc)."""
        return kind_of(self).im2col

    @property
    def in_channels(self) -> int:
        return self.in_shape[0] if self.im2col else _numel(self.in_shape)

    @property
    def rows(self) -> int:
        """Crossbar rows of the unrolled kernel: ``k·k·C_in`` (conv) or ``in_features`` (fc)."""
        if not self.is_compute:
            return 0
        if self.im2col:
            return self.kernel * self.kernel * self.in_shape[0]
        return _numel(self.in_shape)

    @property
    def cols(self) -> int:
        return self.out_shape[0] if self.is_compute else 0

    @property
    def positions(self) -> int:
        """Output positions: each is one input vector applied to the crossbar (1 for fc)."""
        if self.im2col:
            return self.out_shape[1] * self.out_shape[2]
        return 1

    @property
    def weight_shape(self) -> tuple:
        if not self.is_compute:
            return ()
        if self.im2col:
            return (self.out_shape[0], self.in_shape[0], self.kernel, self.kernel)
        return (self.out_shape[0], _numel(self.in_shape))

    @property
    def n_weights(self) -> int:
        return self.rows * self.cols

    @property
    def n_outputs(self) -> int:
        return _numel(self.out_shape)


@dataclass(frozen=True)
class NetworkSpec:
    """A validated network description (from YAML), before weights are attached."""

    name: str
    input_shape: tuple
    signal_bits: int          # M: counters and inter-layer signals
    weight_bits: int          # N: weight levels in [-(2^(N-1)-1), 2^(N-1)-1]
    input_bits: int           # bits of the quantized input image
    crossbar_size: int        # t (square t x t tiles)
    bias_mode: str            # "membrane" (preset IFC membrane) or "row" (always-on bias row)
    layers: tuple
    dataset: str
    weights: object           # Path to .npz, or "random"
    device: object            # DeviceCard
    seed: int = 0
    source: str = ""
    lines: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def compute_layers(self) -> tuple:
        return tuple(layer for layer in self.layers if layer.is_compute)

    @property
    def output(self) -> LayerSpec:
        return self.layers[-1]

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def n_weights(self) -> int:
        return sum(layer.n_weights for layer in self.compute_layers)

    def reads_input(self, layer) -> bool:
        """Whether ``layer`` (a :class:`LayerSpec` or a name) reads the quantized input image,
        directly or through flatten / pool layers, which keep the input's values and so its bit
        width (``input.bits``): its window is ``2^input.bits − 1`` cycles (docs/engine.md)."""
        if isinstance(layer, str):
            layer = self.layer(layer)
        while True:
            if layer.inputs == (INPUT,):
                return True
            if len(layer.inputs) != 1:
                return False
            layer = self.layer(layer.inputs[0])
            if not kind_of(layer).pass_through:
                return False

    def in_bits(self, layer) -> int:
        """Bit width of the signal ``layer`` reads: ``input_bits`` for a layer fed by the image
        (through flatten/pool layers too), else ``signal_bits``."""
        return self.input_bits if self.reads_input(layer) else self.signal_bits
