"""Quantize layer: quantizer presets — the one source of truth for a model's fixed-point formats.

A ``QuantSpec`` names the bit widths; it makes both the QKeras quantizers the model trains with and the
fixed-point type strings hls4ml uses for the same tensors, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class QuantSpec:
    bits: int = 6
    integer: int = 0
    input_bits: int = 16
    input_integer: int = 5
    layer_bits: tuple[int, ...] = ()  # one width per Dense layer (MLP); (): `bits` everywhere

    @classmethod
    def from_config(cls, quant: object) -> QuantSpec:
        return cls(
            bits=quant.bits,  # type: ignore[attr-defined]
            integer=quant.integer,  # type: ignore[attr-defined]
            input_bits=quant.input_bits,  # type: ignore[attr-defined]
            input_integer=quant.input_integer,  # type: ignore[attr-defined]
            layer_bits=tuple(getattr(quant, "layer_bits", ())),
        )

    def for_layer(self, index: int, n_layers: int) -> QuantSpec:
        """The spec of layer ``index`` of ``n_layers`` (weights, bias and the activation after it)."""
        if not self.layer_bits:
            return self
        if len(self.layer_bits) != n_layers:
            from trigflow.errors import TrigflowError

            example = ",".join([str(self.bits)] * n_layers)
            raise TrigflowError(
                f"quant.layer_bits has {len(self.layer_bits)} widths but the model has {n_layers} Dense "
                f"layers; give one width per layer, e.g. --set quant.layer_bits={example}"
            )
        return replace(self, bits=int(self.layer_bits[index]), layer_bits=())

    # QKeras side -------------------------------------------------------------------------------------------
    def weight(self):
        from qkeras import quantized_bits

        return quantized_bits(self.bits, self.integer, alpha=1)

    def activation(self):
        from qkeras import quantized_bits

        return quantized_bits(self.bits, self.integer, alpha=1)

    def relu(self):
        from qkeras import quantized_relu

        return quantized_relu(self.bits, self.integer)

    def input(self):
        from qkeras import quantized_bits

        return quantized_bits(self.input_bits, self.input_integer, alpha=1)

    # hls4ml side -------------------------------------------------------------------------------------------
    @property
    def input_type(self) -> str:
        """The firmware input format; holds every value of ``quantize_input`` exactly."""
        return f"fixed<{self.input_bits},{self.input_integer + 1},RND_CONV,SAT>"

    @property
    def input_lsb(self) -> float:
        return 2.0 ** -(self.input_bits - self.input_integer - 1)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Put data on the input grid with the QKeras quantizer itself (as upstream firmware would deliver it)."""
        return np.asarray(self.input()(np.asarray(x, dtype=np.float32)), dtype=np.float32)
