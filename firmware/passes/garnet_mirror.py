"""Firmware layer: pass — every hls4ml ``GarNet`` layer of a user's model becomes ``GarNetHLS``, the Keras
layer that computes step by step what hls4ml's ``nnet::garnet`` template computes (``trigflow.models.gnn``).

Why: hls4ml's GarNet firmware does not compute the float Keras layer. Its template truncates the distances to
``ap_fixed<12,4>``, takes exp(-d²) from a table, contracts the input and output transforms into 10-bit
weights and keeps its aggregates in its own fixed-point types; the float layer computes none of that, so no
configuration makes the firmware equal the user's float GarNet (measured: 0 of 3,000 jets bit-exact, max |Δ|
0.011 on the logits). The mirror, with the user's weights and the types of ``garnet_types`` (from the input
quantizer feeding the layer), is what the firmware must equal bit for bit; the user's model vs the firmware
is then reported as a measured difference, not a proof.

What the mirror holds: the same sublayer weights; ``types = garnet_types(N, bits, integer)`` with the
``quantized_bits(bits, integer)`` of the ``QActivation`` feeding the GarNet's data input; the GarNet output
rounded to ``result`` (default ``fixed<24,8,RND,SAT>``, exact in float32).

Widths wider than hls4ml's hard-coded ones (``DISTANCE``, ``WEIGHT_FRAC``, ``DISTANCE_WEIGHT_FRAC`` and the
data·edge-weight products' ``weighted_feature``; the firmware gets them through
``hls4ml_patches.garnet_widths``), measured on the L1 jet-ID GarNet zoo trained 20 epochs (16 particles, 8-bit
head, raw-unit inputs, 3,000 jets; ``docs/verify_graphs.md``, ``scripts/garnet_widths.py``): with hls4ml's
widths 558 jets differ from the float model (the 12-bit truncated distance alone 550, the 10-bit distance
weights alone 130, the other weights 93), with trigflow's earlier ``fixed<15,3,TRN>`` / 14 bits 67, with these
2. The distance rounds (RND: no truncation bias summed over the features) to 16 fractional bits; 3 integer
bits lose nothing (exp(-d²) < 2^-17 for |d| ≥ 4, 0 in the 16-bit edge weight), so the exp(-d²) table has
2^19 entries. The distance weights S take 20 fractional bits (they multiply raw GeV), the contracted
transforms 16; the products take as many fractional bits as ``aggr`` keeps exact after the vertex mean
(12 for 16 particles, 14 for 8, against the input's 8). Each is capped where the float64 mirror could not
hold the products exactly (``_weight_frac``, ``_distance_weight_frac``; the products through ``_aggr_frac``).
Only what the mirror reproduces:
``simplified=True``, ``collapse='mean'``, ``input_format='xn'``, no output activation,
``mean_by_nvert=False``, ``quantize_transforms=False``, N a power of two, ``n_propagate ≥ features + 1``;
anything else is refused in one line.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from trigflow.errors import TrigflowError

__all__ = ["GarNetMirror", "garnet_layers"]

EDGE_WEIGHT_FRAC = 16  # garnet_types' default edge_weight fraction bits
DISTANCE = "fixed<19,3,RND,SAT>"  # the template's distance_t (hls4ml: fixed<12,4,TRN>): 16 fractional bits
WEIGHT_FRAC = 16  # fractional bits of the stored contracted transforms and output bias (hls4ml: 10)
DISTANCE_WEIGHT_FRAC = 20  # fractional bits of the stored distance weights S and biases (hls4ml: 10)

MIRRORED = {
    "simplified": True, "collapse": "mean", "input_format": "xn", "output_activation": None,
    "mean_by_nvert": False, "quantize_transforms": False,
}


def garnet_layers(model: Any) -> list[Any]:
    """hls4ml's float ``GarNet``/``GarNetStack`` layers of ``model``."""
    return [layer for layer in model.layers if type(layer).__name__ in ("GarNet", "GarNetStack")]


def _data_quantizer(layer) -> tuple[int, int]:
    """``(bits, integer)`` of the ``quantized_bits`` in the QActivation feeding the GarNet's data input."""
    from trigflow.firmware.autoconfig import _quantizer_of, input_format_of
    from trigflow.firmware.passes.exact_types import inbound

    source = inbound(layer)[0]
    quantizer = _quantizer_of(source)
    if input_format_of(quantizer, "quantizer") is None or not quantizer.keep_negative:
        raise TrigflowError(
            f"GarNet '{layer.name}' reads '{source.name}' ({type(source).__name__}); its firmware needs a "
            "signed fixed-point input: put QActivation(quantized_bits(bits, integer, alpha=1)) right before "
            "the GarNet"
        )
    return int(quantizer.bits), int(quantizer.integer)


def _aggr_frac(n_vertices: int, integer: int) -> int:
    """Fractional bits of the ``aggr`` type: 18 (``garnet_types``' default), fewer for wide-range inputs so
    that aggr × edge_weight products stay within float64's 52 fraction bits (the mirror's exactness bound)."""
    from trigflow.models.gnn import GARNET_FLOAT64_BITS

    k = int(round(math.log2(n_vertices)))
    aggr_integer = (integer + 1) + k + 4  # garnet_types: data integer bits (with sign) + log2 N + 4
    return min(18, GARNET_FLOAT64_BITS - aggr_integer - EDGE_WEIGHT_FRAC)


def _weight_frac(types: dict[str, str], wanted: int = WEIGHT_FRAC) -> int:
    """``wanted``, fewer where the float64 mirror's data × weight products or aggr + product sums would
    pass 53 significant bits (``models.gnn._garnet_check_types``' bounds)."""
    from trigflow.models.gnn import GARNET_FLOAT64_BITS
    from trigflow.quantize.fixed import FixedType

    data, aggr = FixedType.parse(types["data"]), FixedType.parse(types["aggr"])
    bits = GARNET_FLOAT64_BITS
    return min(wanted, bits - 16 - data.width, bits - aggr.width, aggr.frac)


def _distance_weight_frac(types: dict[str, str], wanted: int = DISTANCE_WEIGHT_FRAC) -> int:
    """``wanted``, fewer where the float64 mirror's data × S products would pass 53 significant bits."""
    from trigflow.models.gnn import GARNET_FLOAT64_BITS
    from trigflow.quantize.fixed import FixedType

    return min(wanted, GARNET_FLOAT64_BITS - 9 - FixedType.parse(types["data"]).width)


def _weighted_feature_frac(types: dict[str, str], n_vertices: int) -> int:
    """Fractional bits of the data·edge-weight products: as many as ``aggr`` holds exactly after summing N of
    them and dividing by N (hls4ml's template: the input type's)."""
    from trigflow.quantize.fixed import FixedType

    k = int(round(math.log2(n_vertices)))
    return max(FixedType.parse(types["data"]).frac, FixedType.parse(types["aggr"]).frac - k)


class GarNetMirror:
    """``apply(model) -> (model, changed)``: a copy of ``model`` with each hls4ml ``GarNet`` replaced by a
    ``GarNetHLS`` of the same name and weights. After a change ``types`` holds {layer: garnet_types(...)}.
    ``distance``/``weight_frac``/``distance_weight_frac``/``wide_features``: the widths the mirror and the
    firmware compute with (module docstring); ``wide_features=False`` rounds the data·edge-weight products
    to the input type, as hls4ml's template does."""

    def __init__(
        self, result: str = "fixed<24,8,RND,SAT>", distance: str = DISTANCE, weight_frac: int = WEIGHT_FRAC,
        distance_weight_frac: int = DISTANCE_WEIGHT_FRAC, wide_features: bool = True,
    ) -> None:
        self.result, self.distance, self.weight_frac = result, distance, weight_frac
        self.distance_weight_frac, self.wide_features = distance_weight_frac, wide_features
        self.types: dict[str, dict[str, str]] = {}

    def apply(self, model: Any) -> tuple[Any, bool]:
        if not garnet_layers(model):
            return model, False
        import tensorflow as tf

        from trigflow.models.gnn import garnet_hls_layer

        self.types = self.plan(model)
        hls_class = garnet_hls_layer()

        def clone(layer):
            if layer.name in self.types:
                config = {k: v for k, v in layer.get_config().items() if k not in MIRRORED}
                n = (config.pop("n_aggregators"), config.pop("n_filters"), config.pop("n_propagate"))
                return hls_class(*n, types=self.types[layer.name], **config)
            return layer.__class__.from_config(layer.get_config())

        with warnings.catch_warnings():  # keras warns about serializing QKeras quantizers as constraints
            warnings.simplefilter("ignore", UserWarning)
            new = tf.keras.models.clone_model(model, clone_function=clone)
        new.set_weights(model.get_weights())
        return new, True

    def plan(self, model: Any) -> dict[str, dict[str, str]]:
        """{GarNet layer: the mirror's types}; a one-line refusal for what the mirror does not cover."""
        from trigflow.models.gnn import garnet_types

        types: dict[str, dict[str, str]] = {}
        for layer in garnet_layers(model):
            if type(layer).__name__ == "GarNetStack":
                raise TrigflowError(
                    f"layer '{layer.name}' is hls4ml's GarNetStack, which trigflow's bit-exact GarNet mirror "
                    "does not cover; use single GarNet layers (hls4ml.contrib.garnet.GarNet)"
                )
            config = layer.get_config()
            wrong = {k: config.get(k) for k, v in MIRRORED.items() if config.get(k) != v
                     and not (k == "output_activation" and config.get(k) == "linear")}
            if wrong:
                raise TrigflowError(
                    f"GarNet '{layer.name}' has {', '.join(f'{k}={v!r}' for k, v in wrong.items())}; "
                    f"hls4ml's GarNet firmware (and trigflow's mirror of it) implements "
                    f"{', '.join(f'{k}={v!r}' for k, v in MIRRORED.items())}"
                )
            n_vertices = int(layer.input_shape[0][1])
            bits, integer = _data_quantizer(layer)
            common = {"aggr_frac": _aggr_frac(n_vertices, integer), "result": self.result,
                      "distance": self.distance}
            first = garnet_types(n_vertices, bits, integer, **common)
            types[layer.name] = garnet_types(
                n_vertices, bits, integer, **common, weight_frac=_weight_frac(first, self.weight_frac),
                distance_weight_frac=_distance_weight_frac(first, self.distance_weight_frac),
                weighted_feature_frac=(_weighted_feature_frac(first, n_vertices) if self.wide_features
                                       else None),
            )
        return types
