"""Firmware layer: pass — every ``GarNetHLS`` layer (the Keras mirror of ``nnet::garnet``) becomes hls4ml's
own ``GarNet`` layer, with weights that make hls4ml's conversion land exactly on the values the mirror
computes with.

FLR = [I | 0] with bias e_F (feature x → latent x, constant 1 → latent F), and Fout holding the contracted
transform, Fout[a, x, o] = W[o, a, x], Fout[a, F, o] = B[o, a]. hls4ml contracts FLR·Fout back to exactly W
and B (one non-zero product per sum), and W, B, the S kernel/bias and the Fout bias are on the grid hls4ml
stores them with (10 fractional bits, or the mirror's ``weight_frac``/``distance_weight_frac`` under
``hls4ml_patches.garnet_widths``),
so its rounding (AP_RND) is a no-op and the printed weights are exact. The returned Keras model is only for
hls4ml (its float GarNet is not the reference); compare the firmware with the original model.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

__all__ = ["GarNetWeights"]


class GarNetWeights:
    """``apply(model) -> (model, changed)``. After a change, ``precisions`` holds {layer: hls4ml Precision
    dict} from each mirror's ``types``, ``widths`` {layer: the mirror's ``GARNET_WIDTH_KEYS``, for
    ``hls4ml_patches.garnet_widths``} and ``weights`` {layer: the mirror's ``firmware_weights()``}."""

    def __init__(self) -> None:
        self.precisions: dict[str, dict[str, str]] = {}
        self.widths: dict[str, dict[str, str]] = {}
        self.weights: dict[str, dict[str, np.ndarray]] = {}

    def apply(self, model: Any) -> tuple[Any, bool]:
        if not any(type(layer).__name__ == "GarNetHLS" for layer in model.layers):
            return model, False
        import tensorflow as tf
        from hls4ml.contrib.garnet import GarNet

        from trigflow.models.gnn import GARNET_WIDTH_KEYS

        def clone(layer):
            if type(layer).__name__ == "GarNetHLS":
                return GarNet.from_config({k: v for k, v in layer.get_config().items() if k != "types"})
            return layer.__class__.from_config(layer.get_config())

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            new = tf.keras.models.clone_model(model, clone_function=clone)
        self.precisions, self.widths, self.weights = {}, {}, {}
        for old in model.layers:
            if type(old).__name__ != "GarNetHLS":
                if old.get_weights():
                    new.get_layer(old.name).set_weights(old.get_weights())
                continue
            new.get_layer(old.name).set_weights(_contracted(old))
            t = old.types
            self.precisions[old.name] = {
                "edge_weight": t["edge_weight"], "edge_weight_aggr": t["edge_weight_aggr"],
                "aggr": t["aggr"], "result": t["result"],
            }
            self.widths[old.name] = {k: str(old.t[k]) for k in GARNET_WIDTH_KEYS}
            self.weights[old.name] = old.firmware_weights()
        return new, True


def _contracted(layer) -> list[np.ndarray]:
    """hls4ml GarNet weights [FLR kernel, FLR bias, S kernel, S bias, Fout kernel, Fout bias] of a mirror."""
    fw = layer.firmware_weights()
    n_out, n_agg, n_in = fw["W"].shape
    n_prop = layer._input_feature_transform.units
    flr_k = np.zeros((n_in, n_prop))
    flr_k[np.arange(n_in), np.arange(n_in)] = 1.0
    flr_b = np.zeros(n_prop)
    flr_b[n_in] = 1.0
    fout = np.zeros((n_agg, n_prop, n_out))
    fout[:, :n_in, :] = np.transpose(fw["W"], (1, 2, 0))
    fout[:, n_in, :] = fw["B"].T
    fout_k = fout.reshape(n_agg * n_prop, n_out)
    values = [flr_k, flr_b, fw["S_kernel"], fw["S_bias"], fout_k, fw["Fout_bias"]]
    for v in values:
        if not np.array_equal(v.astype(np.float32).astype(np.float64), v):
            raise TrigflowError(f"layer '{layer.name}': a GarNet weight is not exact in float32")
    return [v.astype(np.float32) for v in values]
