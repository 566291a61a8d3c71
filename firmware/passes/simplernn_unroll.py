"""Firmware layer: pass — every ``QSimpleRNNHLS`` layer (``trigflow.models.rnn``: a QKeras ``QSimpleRNN`` that
predicts its firmware's arithmetic) becomes the fixed-length unrolled graph hls4ml 1.3 converts for
Vivado/Vitis, whose backend has no SimpleRNN template.

Per step t of T (h_0 = 0, the last state returned): ``Cropping1D`` + ``Reshape`` take x_t, ``QDense`` computes
x_t·W + b and (from step 1) ``QDense(use_bias=False)`` h_{t-1}·U, each on ``accum_t`` (every product and the
bias assigned to it, as ``nnet::dense`` does), ``Add`` sums them on ``accum_t``, and a tanh ``Activation``
(hls4ml's lookup table: ``table_t`` values, index truncated) writes h_t on ``result_t``. Every step has its
own layers (hls4ml converts no shared layers); their weights are the mirror's, already on their quantizers'
grids. The returned model is only for hls4ml: compare the firmware with the original (mirror) model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

__all__ = ["MIRROR", "SimpleRNNUnroll", "step_names"]

MIRROR = "QSimpleRNNHLS"


def step_names(name: str, step: int) -> dict[str, str]:
    """The names of the unrolled layers of step ``step`` of the recurrent layer ``name``."""
    return {key: f"{name}_{key}{step}" for key in ("crop", "x", "xw", "hu", "sum", "h")}


class SimpleRNNUnroll:
    """``apply(model) -> (model, changed)``. After a change, ``precisions`` holds {layer: hls4ml Precision
    dict} for every unrolled layer (the mirror's accum/table/result types) and ``tanh_layers`` {mirror name:
    its per-step tanh layer names} (for the table-size check after conversion)."""

    def __init__(self) -> None:
        self.precisions: dict[str, dict[str, str]] = {}
        self.tanh_layers: dict[str, list[str]] = {}

    def apply(self, model: Any) -> tuple[Any, bool]:
        if not any(type(layer).__name__ == MIRROR for layer in model.layers):
            return model, False
        import tensorflow as tf

        from trigflow.models.rnn import custom_objects

        tensors: dict[str, Any] = {}
        weights: list[tuple[str, list[np.ndarray]]] = []
        with tf.keras.utils.custom_object_scope(custom_objects()):
            for layer in model.layers:
                if isinstance(layer, tf.keras.layers.InputLayer):
                    tensors[layer.name] = tf.keras.Input(layer.input_shape[0][1:], name=layer.name)
                    continue
                inbound = layer.inbound_nodes[0].inbound_layers
                if isinstance(inbound, list):
                    raise TrigflowError(
                        f"layer '{layer.name}' has {len(inbound)} inputs; the SimpleRNN unrolling rebuilds "
                        "chains of single-input layers only"
                    )
                x = tensors[inbound.name]
                if type(layer).__name__ == MIRROR:
                    tensors[layer.name] = self._unroll(layer, x, weights)
                else:
                    clone = layer.__class__.from_config(layer.get_config())
                    tensors[layer.name] = clone(x)
                    weights.append((layer.name, layer.get_weights()))
            unrolled = tf.keras.Model(tensors[model.input_names[0]], tensors[model.layers[-1].name],
                                      name=model.name)
        for name, values in weights:
            unrolled.get_layer(name).set_weights(values)
        return unrolled, True

    def _unroll(self, layer: Any, x: Any, weights: list) -> Any:
        import tensorflow as tf
        from qkeras import QDense

        if layer.return_sequences or layer.return_state or layer.go_backwards or layer.stateful:
            raise TrigflowError(
                f"layer '{layer.name}': only the last state of a forward SimpleRNN is unrolled; set "
                "return_sequences/return_state/go_backwards/stateful to False"
            )
        cell = layer.cell
        steps, units = int(x.shape[1]), layer.units
        kernel, recurrent, bias = (np.asarray(w.numpy(), np.float32) for w in layer.firmware_weights())
        t = layer.hls_types
        on_accum = {"accum": t.accum, "result": t.accum}
        self.tanh_layers[layer.name] = []
        h = None
        for step in range(steps):
            names = step_names(layer.name, step)
            xt = tf.keras.layers.Cropping1D((step, steps - 1 - step), name=names["crop"])(x)
            xt = tf.keras.layers.Reshape((int(x.shape[2]),), name=names["x"])(xt)
            s = QDense(units, kernel_quantizer=cell.kernel_quantizer, bias_quantizer=cell.bias_quantizer,
                       name=names["xw"])(xt)
            weights.append((names["xw"], [kernel, bias]))
            # QDense's hls4ml node has a linear activation after it: keep it on accum_t too
            self.precisions[names["xw"]] = dict(on_accum)
            self.precisions[f"{names['xw']}_linear"] = {"result": t.accum}
            if h is not None:
                hu = QDense(units, use_bias=False, kernel_quantizer=cell.recurrent_quantizer,
                            name=names["hu"])(h)
                weights.append((names["hu"], [recurrent]))
                self.precisions[names["hu"]] = dict(on_accum)
                self.precisions[f"{names['hu']}_linear"] = {"result": t.accum}
                s = tf.keras.layers.Add(name=names["sum"])([s, hu])
                self.precisions[names["sum"]] = {"result": t.accum}
            h = tf.keras.layers.Activation("tanh", name=names["h"])(s)
            self.precisions[names["h"]] = {"table": t.table, "result": t.result}
            self.tanh_layers[layer.name].append(names["h"])
        return h
