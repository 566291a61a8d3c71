"""Firmware layer: pass — a user's QKeras ``QGRU``/``QLSTM`` becomes its firmware mirror
``QGRUHLS``/``QLSTMHLS`` (``trigflow.models.rnn``: hls4ml's ``nnet::gru``/``lstm`` arithmetic with its lookup
tables), same config and weights, so the mirror model is the exact reference of the firmware
``RecurrentPlain`` + hls4ml build from it.

The mirror differs from the user's model by the tables and ``accum_t`` (that is what the firmware computes); a
proof reports both: firmware vs mirror (bits) and mirror vs the user's model (|Δ|). Layers or options the
mirror does not cover are refused with one line naming them (``check_recurrent``).
"""

from __future__ import annotations

from typing import Any

from trigflow.errors import TrigflowError

__all__ = ["RECURRENT", "RecurrentMirror", "activation_name", "check_recurrent"]

RECURRENT = ("QGRU", "QLSTM", "QSimpleRNN", "GRU", "LSTM", "SimpleRNN")


def check_recurrent(layer: Any) -> str:
    """The mirror arch ('gru' | 'lstm') of a recurrent Keras layer, or a one-line ``TrigflowError``."""
    name, where = type(layer).__name__, f"layer '{layer.name}'"
    config = layer.get_config()
    if "SimpleRNN" in name:
        raise TrigflowError(
            f"{where} ({name}): hls4ml 1.3's Vivado/Vitis backend has no SimpleRNN template; use QGRU"
        )
    if not name.startswith("Q"):
        raise TrigflowError(f"{where} ({name}): a float {name[:4]} has no exact firmware; use QKeras Q{name}")
    for option, why in (("return_sequences", "the mirror covers the last state only"),
                        ("return_state", "hls4ml 1.3 does not support it"), ("go_backwards", "not mirrored"),
                        ("stateful", "not mirrored"), ("time_major", "hls4ml 1.3 does not support it")):
        if config.get(option):
            raise TrigflowError(
                f"{where} ({name}): {option}=True cannot be proven ({why}); set {option}=False"
            )
    if name == "QGRU" and not config.get("reset_after"):
        raise TrigflowError(
            f"{where} (QGRU): reset_after=False (QKeras' default) is not what hls4ml's nnet::gru computes; "
            "build it with reset_after=True"
        )
    for key, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        given = activation_name(config.get(key))
        if given == f"quantized_{want}":
            raise TrigflowError(
                f"{where} ({name}): {key}=quantized_{want} without use_real_{want}=True is a hard {want} "
                f"(QKeras' default), which hls4ml 1.3 rejects in recurrent layers ('Hard activation not "
                f"supported'); use {key}='{want}' or quantized_{want}(bits, use_real_{want}=True)"
            )
        if given != want:
            raise TrigflowError(
                f"{where} ({name}): {key}={given!r}; hls4ml's recurrent tables are {want}, use "
                f"{key}='{want}' (or quantized_{want}(bits, use_real_{want}=True))"
            )
    if not config.get("use_bias", True):
        raise TrigflowError(f"{where} ({name}): use_bias=False is not mirrored; use use_bias=True")
    for key in ("kernel_quantizer", "recurrent_quantizer", "bias_quantizer"):
        if not config.get(key):
            raise TrigflowError(f"{where} ({name}): no {key}; give quantized_bits(bits, integer, alpha=1)")
    return "gru" if name == "QGRU" else "lstm"


def activation_name(activation: Any) -> str:
    """'tanh' / 'sigmoid' for the float activation or a QKeras ``quantized_tanh``/``quantized_sigmoid`` with
    ``use_real_tanh``/``use_real_sigmoid`` (hls4ml maps both to its lookup table and never applies the
    activation quantizer's rounding in ``nnet::gru``/``lstm``); else the activation's name."""
    if isinstance(activation, str) or activation is None:
        return str(activation)
    if isinstance(activation, dict):
        cls, conf = str(activation.get("class_name", "?")), activation.get("config") or {}
    else:
        cls, conf = type(activation).__name__, getattr(activation, "get_config", dict)()
    for want in ("tanh", "sigmoid"):
        if cls == f"quantized_{want}":
            return want if conf.get(f"use_real_{want}") else cls
    return cls


class RecurrentMirror:
    """``apply(model) -> (model, changed)``: every QGRU/QLSTM (checked by ``check_recurrent``) → its
    mirror with ``types`` (one ``RecurrentTypes`` for all, or {layer name: types}; default:
    ``RecurrentTypes()``; an LSTM gets accum = result, as ``nnet::lstm`` needs)."""

    def __init__(self, types: Any = None) -> None:
        self.types = types

    def apply(self, model: Any) -> tuple[Any, bool]:
        found = [layer for layer in model.layers if type(layer).__name__ in RECURRENT]
        if not found:
            return model, False
        import tensorflow as tf

        from trigflow.models.rnn import RecurrentTypes, custom_objects, recurrent_hls_layer

        archs = {layer.name: check_recurrent(layer) for layer in found}

        def clone(layer):
            if layer.name in archs:
                types = self.types.get(layer.name) if isinstance(self.types, dict) else self.types
                types = types or RecurrentTypes()
                if archs[layer.name] == "lstm":
                    types = RecurrentTypes(**{**types.to_dict(), "accum": types.result})
                return recurrent_hls_layer(archs[layer.name]).from_config(
                    {**layer.get_config(), "hls_types": types.to_dict()}
                )
            return layer.__class__.from_config(layer.get_config())

        with tf.keras.utils.custom_object_scope(custom_objects()):  # QKeras quantizers, initializers
            mirror = tf.keras.models.clone_model(model, clone_function=clone)
        mirror.set_weights(model.get_weights())
        return mirror, True
