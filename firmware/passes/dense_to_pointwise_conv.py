"""Firmware layer: pass — every QDense on a rank-3 tensor becomes an equivalent QConv1D(kernel_size=1).

Why: hls4ml 1.3's ``ReplaceMultidimensionalDenseWithConv`` makes the same change but copies only the float
weights, dropping ``kernel_quantizer``/``bias_quantizer``; the firmware would then hold unquantized weights.
Doing the rewrite in Keras first keeps the quantizers (and the weights, with a leading kernel axis).
"""

from __future__ import annotations

import warnings
from typing import Any

from trigflow.errors import TrigflowError

__all__ = ["DenseToPointwiseConv"]


def _is_qdense_rank3(layer) -> bool:
    return type(layer).__name__ == "QDense" and len(layer.input_shape) == 3


class DenseToPointwiseConv:
    """``apply(model) -> (model, changed)``: a clone with every rank-3 QDense as QConv1D(1); the model itself
    (unchanged) when it has none."""

    def apply(self, model: Any) -> tuple[Any, bool]:
        if not any(_is_qdense_rank3(layer) for layer in model.layers):
            return model, False
        import tensorflow as tf
        from qkeras import QConv1D

        def clone(layer):
            if _is_qdense_rank3(layer):
                cfg = layer.get_config()
                if cfg.get("activation") not in (None, "linear"):
                    raise TrigflowError(
                        f"layer '{layer.name}': put the activation in its own QActivation layer"
                    )
                return QConv1D(
                    cfg["units"], 1, name=layer.name, use_bias=cfg["use_bias"],
                    kernel_quantizer=cfg["kernel_quantizer"], bias_quantizer=cfg["bias_quantizer"],
                )
            return layer.__class__.from_config(layer.get_config())

        with warnings.catch_warnings():  # keras warns about serializing QKeras quantizers as constraints
            warnings.simplefilter("ignore", UserWarning)
            new = tf.keras.models.clone_model(model, clone_function=clone)
        for old in model.layers:
            weights = old.get_weights()
            if not weights:
                continue
            if _is_qdense_rank3(old):
                weights = [weights[0][None, ...], *weights[1:]]
            new.get_layer(old.name).set_weights(weights)
        return new, True
