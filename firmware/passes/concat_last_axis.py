"""Firmware layer: pass — a Concatenate of (items, features) tensors along the item axis becomes transposes
around a Concatenate along the last axis.

Why: hls4ml 1.3's ``bit_exact`` precision flow propagates the value ranges of a Concatenate as if it were on
the last axis; a Concatenate on axis 1 of (P, E) tensors (receiver and sender features stacked while features
come first, as in the published Interaction Networks) then hands the next layer ranges of the wrong shape, and
conversion stops with "could not broadcast input array from shape (3,) into shape (6,)". Moving data is
exact, so ``Permute`` each input, ``Concatenate(axis=-1)``, ``Permute`` back computes the same tensor. The
last Permute keeps the Concatenate's name, so its consumers and the localisation still see that name.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["ConcatenateLastAxis"]


def _item_axis_concat(layer) -> bool:
    """A Concatenate of rank-2 (per sample) tensors along their first axis."""
    if type(layer).__name__ != "Concatenate":
        return False
    shape = layer.output_shape
    rank = len(shape) if isinstance(shape, tuple) else 0
    return rank == 3 and int(layer.axis) % rank == 1


class ConcatenateLastAxis:
    """``apply(model) -> (model, changed)``: a functional copy with every item-axis Concatenate rewritten; the
    model itself when it has none."""

    def apply(self, model: Any) -> tuple[Any, bool]:
        if not any(_item_axis_concat(layer) for layer in model.layers):
            return model, False
        import tensorflow as tf

        from trigflow.firmware.autoconfig import _deserialize, graph_of

        layers = tf.keras.layers
        input_name, nodes = graph_of(model)
        x_in = tf.keras.Input(shape=tuple(model.input_shape[1:]), name=input_name)
        tensors: dict[str, Any] = {input_name: x_in}
        with warnings.catch_warnings():  # keras warns about serializing QKeras quantizers as constraints
            warnings.simplefilter("ignore", UserWarning)
            for node in nodes:
                layer, inputs = node.layer, [tensors[name] for name in node.inbound]
                if _item_axis_concat(layer):
                    moved = [
                        layers.Permute((2, 1), name=f"{layer.name}_in{k}_t")(t) for k, t in enumerate(inputs)
                    ]
                    joined = layers.Concatenate(axis=-1, name=f"{layer.name}_last")(moved)
                    tensors[layer.name] = layers.Permute((2, 1), name=layer.name)(joined)
                    continue
                new = _deserialize(type(layer).__name__, layer.get_config())
                tensors[layer.name] = new(inputs[0] if len(inputs) == 1 else inputs)
                new.set_weights(layer.get_weights())
        output = model.outputs[0]._keras_history.layer.name
        return tf.keras.Model(x_in, tensors[output], name=model.name), True
