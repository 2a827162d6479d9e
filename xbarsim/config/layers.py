"""Layer descriptions with inferred shapes. No weights, no hardware: pure description."""

from __future__ import annotations

from dataclasses import dataclass, field

COMPUTE_KINDS = ("conv", "fc")
POOL_KINDS = ("maxpool", "avgpool")
LAYER_KINDS = ("conv", "fc", "maxpool", "avgpool", "flatten", "add")

#: Name of the network input as a layer input.
INPUT = "input"
#: Layers whose outputs keep the values (and so the bit width) of their input signal.
PASS_THROUGH = ("flatten", "maxpool", "avgpool")


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
        return self.kind in COMPUTE_KINDS

    @property
    def in_channels(self) -> int:
        return self.in_shape[0] if self.kind == "conv" else _numel(self.in_shape)

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def rows(self) -> int:
        """Crossbar rows of the unrolled kernel: ``k·k·C_in`` (conv) or ``in_features`` (fc)."""
        if self.kind == "conv":
            return self.kernel * self.kernel * self.in_shape[0]
        if self.kind == "fc":
            return _numel(self.in_shape)
        return 0

    @property
    def cols(self) -> int:
        return self.out_shape[0] if self.is_compute else 0

    @property
    def positions(self) -> int:
        """Output positions: each is one input vector applied to the crossbar (1 for fc)."""
        if self.kind == "conv":
            return self.out_shape[1] * self.out_shape[2]
        return 1

    @property
    def weight_shape(self) -> tuple:
        if self.kind == "conv":
            return (self.out_shape[0], self.in_shape[0], self.kernel, self.kernel)
        if self.kind == "fc":
            return (self.out_shape[0], _numel(self.in_shape))
        return ()

    @property
    def n_weights(self) -> int:
        return self.rows * self.cols

    @property
    def n_outputs(self) -> int:
        return _numel(self.out_shape)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


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
            if layer.kind not in PASS_THROUGH:
                return False

    def in_bits(self, layer) -> int:
        """Bit width of the signal ``layer`` reads: ``input_bits`` for a layer fed by the image
        (through flatten/pool layers too), else ``signal_bits``."""
        return self.input_bits if self.reads_input(layer) else self.signal_bits
