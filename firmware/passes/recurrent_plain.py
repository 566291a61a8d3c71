"""Firmware layer: pass — every ``QGRUHLS``/``QLSTMHLS`` layer (the Keras mirror of hls4ml's ``nnet::gru`` /
``nnet::lstm``, ``trigflow.models.rnn``) becomes the plain QKeras ``QGRU``/``QLSTM`` hls4ml converts, with
every weight already on its quantizer's grid, and the mirror's types recorded for the hls4ml configuration.

hls4ml quantizes kernel, recurrent kernel and input bias with their quantizers but takes a GRU's recurrent
bias raw, so the weights handed over are the quantized ones (quantizing a grid value changes nothing). The
returned model is only for hls4ml; compare the firmware with the original (mirror) model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MIRRORS", "RecurrentPlain"]

MIRRORS = ("QGRUHLS", "QLSTMHLS")


class RecurrentPlain:
    """``apply(model) -> (model, changed)``. After a change, ``precisions`` holds {layer: hls4ml
    Precision dict}: the mirror's accum/table/result types, and for an LSTM its input layer's result type
    (``nnet::lstm`` needs input type == result type)."""

    def __init__(self) -> None:
        self.precisions: dict[str, dict[str, str]] = {}

    def apply(self, model: Any) -> tuple[Any, bool]:
        mirrors = [layer for layer in model.layers if type(layer).__name__ in MIRRORS]
        if not mirrors:
            return model, False
        import tensorflow as tf
        from qkeras import QGRU, QLSTM

        from trigflow.models.rnn import custom_objects, qkeras_recurrent_fix

        qkeras_recurrent_fix()

        def clone(layer):
            name = type(layer).__name__
            if name in MIRRORS:
                config = layer.get_config()
                config.pop("hls_types")
                return (QGRU if name == "QGRUHLS" else QLSTM).from_config(config)
            return layer.__class__.from_config(layer.get_config())

        with tf.keras.utils.custom_object_scope(custom_objects()):  # QKeras quantizers, initializers
            plain = tf.keras.models.clone_model(model, clone_function=clone)
        plain.set_weights(model.get_weights())
        for layer in mirrors:
            weights = [np.asarray(w.numpy(), np.float32) for w in layer.firmware_weights()]
            plain.get_layer(layer.name).set_weights(weights)
            t = layer.hls_types
            self.precisions[layer.name] = {"accum": t.accum, "table": t.table, "result": t.result}
            if type(layer).__name__ == "QLSTMHLS":
                source = layer.inbound_nodes[0].inbound_layers
                self.precisions[getattr(source, "name", "")] = {"result": t.result}
        return plain, True
