"""Firmware layer: exact fixed-point types for the graph networks — an analysis the GNN conversion runs after
the rewrite passes (it computes hls4ml precisions; it does not change the graph).

``propagate(model, input_precision, garnet_result)`` walks the graph in topological order and gives every
layer an explicit type (nothing left 'auto') that holds its outputs exactly, from the value interval each
layer can produce: quantizer outputs their own type (RND_CONV, SAT), affine layers the interval of
``x @ kernel + bias`` over the input interval, with products and partial sums in ``accum_t`` as in hls4ml's
latency kernels. Why not hls4ml's own inference: ``GlobalPooling1D`` falls back to ``fixed<16,6>``, and 'auto'
types of the 0/1 structure layers multiply by ``fixed<16,6>`` weights (exact but 2-3x wider than needed).
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.quantize.fixed import FixedType, frac_bits

__all__ = ["FLOAT32_EXACT_BITS", "Span", "inbound", "propagate", "span_of", "type_for"]

FLOAT32_EXACT_BITS = 24  # QKeras computes in float32: exact only while every sum fits 24 significant bits


class Span(NamedTuple):
    """A layer's output type and the value interval [lo, hi] it must hold (inside the type's range)."""

    type: FixedType
    lo: float
    hi: float

    @property
    def frac(self) -> int:
        return self.type.frac


def span_of(t: FixedType) -> Span:
    """The whole range of ``t``."""
    return Span(t, t.lo, t.hi)


def type_for(lo: float, hi: float, frac: int) -> Span:
    """The narrowest type with ``frac`` fractional bits holding [lo, hi], with at least the sign bit (signed)
    or no negative integer bits (unsigned), as hls4ml configs are written here."""
    t = FixedType.covering(lo, hi, frac)
    floor = 1 if t.signed else 0
    if t.integer < floor:
        t = FixedType(t.signed, t.width + floor - t.integer, floor)
    return Span(t, float(lo), float(hi))


def quantizer_span(quantizer: Any, where: str) -> Span:
    """Type of a QKeras activation quantizer, as hls4ml implements it (RND_CONV, SAT)."""
    if type(quantizer).__name__ == "quantized_bits":
        if quantizer.alpha not in (None, 1, 1.0) or quantizer.symmetric or not quantizer.keep_negative:
            raise TrigflowError(
                f"{where}: only quantized_bits(bits, integer, alpha=1) (signed, non-symmetric) maps exactly "
                f"to an ap_fixed type; got {quantizer}"
            )
        if quantizer.use_stochastic_rounding or int(quantizer.bits) < 2:
            raise TrigflowError(f"{where}: stochastic rounding / 1-bit quantizers cannot be bit-exact here")
    elif type(quantizer).__name__ != "quantized_relu":
        raise TrigflowError(f"{where}: activation {quantizer!r} is not supported for bit-exact GNN firmware")
    return span_of(FixedType.from_quantizer(quantizer, where))


def _weight_quantizer_ok(quantizer: Any, where: str) -> None:
    if quantizer is None:
        raise TrigflowError(f"{where}: QDense/QConv1D needs kernel and bias quantizers for bit-exactness")
    if type(quantizer).__name__ != "quantized_bits" or quantizer.alpha not in (None, 1, 1.0):
        raise TrigflowError(f"{where}: weight quantizer must be quantized_bits(.., alpha=1), got {quantizer}")


def affine(x: Span, kernel: np.ndarray, bias: np.ndarray | None, f_w: int, f_b: int) -> tuple[Span, Span]:
    """(accumulator, result) of y = x @ kernel + bias for x in [x.lo, x.hi] — exact, per hls4ml's latency
    kernels (products and partial sums live in ``accum_t``)."""
    kernel = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    bias = np.zeros(kernel.shape[1]) if bias is None else np.asarray(bias, np.float64)
    pos = np.maximum(kernel * x.hi, kernel * x.lo).sum(axis=0)
    neg = np.minimum(kernel * x.hi, kernel * x.lo).sum(axis=0)
    lo, hi = float((neg + bias).min()), float((pos + bias).max())
    frac = max(x.frac + f_w, f_b)
    acc = type_for(min(lo, float(neg.min()), 0.0), max(hi, float(pos.max()), 0.0), frac)
    return acc, type_for(lo, hi, frac)


def inbound(layer) -> list:
    node = layer.inbound_nodes[0]
    layers = node.inbound_layers
    return list(layers) if isinstance(layers, (list, tuple)) else [layers]


def _inbound_safe(layer) -> list:
    try:
        return inbound(layer)
    except (IndexError, AttributeError):
        return []


def _consumers(model, layer) -> list:
    return [other for other in model.layers if other is not layer and layer in _inbound_safe(other)]


def propagate(
    model, input_precision: str | None, garnet_result: str | None = None, *, max_weight_frac: int = 8
) -> tuple[dict[str, Span], dict[str, dict[str, str]], list[str]]:
    """Each layer's output span, the hls4ml precision overrides and warnings. ``garnet_result`` is the output
    type given to GarNet layers (their arithmetic is the mirror's, not derived here). Plain Dense/Conv1D(k=1)
    layers must hold weights with at most ``max_weight_frac`` fractional bits (fixed structure matrices, or
    the quantized weights trigflow baked into a deployment model)."""
    out: dict[str, Span] = {}
    prec: dict[str, dict[str, str]] = {}
    notes: list[str] = []

    def note_width(name: str, acc: Span) -> None:
        if acc.type.width > FLOAT32_EXACT_BITS:
            notes.append(
                f"layer '{name}': accumulator needs {acc.type.width} bits (> {FLOAT32_EXACT_BITS}); QKeras' "
                "float32 arithmetic may itself round here: bit-exactness not guaranteed for extreme inputs"
            )

    for layer in model.layers:
        cls, name = type(layer).__name__, layer.name
        ins = [out[inb.name] for inb in _inbound_safe(layer)]
        int_dtype = re.fullmatch(r"(u?)int(\d+)", str(layer.dtype))
        if cls == "InputLayer" and int_dtype:  # e.g. GarNet's vertex count
            unsigned, width = int_dtype.group(1) == "u", int(int_dtype.group(2))
            lo = 0.0 if unsigned else -(2.0 ** (width - 1))
            out[name] = Span(FixedType(not unsigned, width, width), lo, 2.0**width - 1)
            prec[name] = {"result": f"{int_dtype.group(1)}int<{width}>"}
        elif cls == "GarNet" and garnet_result is not None:
            out[name] = span_of(FixedType.parse(garnet_result))
            prec[name] = {"result": garnet_result}
        elif cls == "InputLayer":
            if input_precision is not None:
                span = span_of(FixedType.parse(input_precision))
            else:
                consumers = _consumers(model, layer)
                if len(consumers) != 1 or type(consumers[0]).__name__ != "QActivation":
                    raise TrigflowError(
                        f"input '{name}' must feed exactly one QActivation(quantized_bits) (the input "
                        "quantizer), or pass input_precision= with a type that holds the input data exactly"
                    )
                span = quantizer_span(consumers[0].quantizer, consumers[0].name)
            out[name] = span
            prec[name] = {"result": str(span.type)}
        elif cls == "QActivation":
            out[name] = quantizer_span(layer.quantizer, name)
            prec[name] = {"result": str(out[name].type)}
        elif cls in ("Permute", "Reshape", "Flatten"):
            out[name] = ins[0]._replace(type=ins[0].type.with_modes())
            prec[name] = {"result": str(out[name].type)}
        elif cls == "Concatenate":
            out[name] = type_for(min(i.lo for i in ins), max(i.hi for i in ins), max(i.frac for i in ins))
            prec[name] = {"result": str(out[name].type)}
        elif cls in ("QDense", "QConv1D"):
            acc, res = _quantized_affine(layer, ins[0])
            note_width(name, acc)
            out[name] = res
            prec[name] = {"accum": str(acc.type), "result": str(res.type)}
            prec[f"{name}_linear"] = {"result": str(res.type)}
        elif cls in ("Dense", "Conv1D"):  # fixed structure matrix, or weights baked from their quantizers
            weight, bias, acc, res = _structure_affine(layer, ins[0], max_weight_frac)
            note_width(name, acc)
            out[name] = res
            prec[name] = {"weight": weight, "bias": bias, "accum": str(acc.type), "result": str(res.type)}
            prec[f"{name}_linear"] = {"result": str(res.type)}
        elif cls == "Add":
            frac = max(i.frac for i in ins)
            out[name] = type_for(sum(i.lo for i in ins), sum(i.hi for i in ins), frac)
            prec[name] = {"result": str(out[name].type)}
        elif cls == "UpSampling1D":
            out[name] = ins[0]._replace(type=ins[0].type.with_modes())
            prec[name] = {"result": str(out[name].type)}
        elif cls in ("GlobalAveragePooling1D", "AveragePooling1D"):
            n = int(layer.input_shape[1]) if cls == "GlobalAveragePooling1D" else int(layer.pool_size[0])
            shift = int(round(math.log2(n)))
            if 2**shift != n:
                raise TrigflowError(
                    f"layer '{name}': the mean over {n} items is not exact in fixed point (only power-of-two "
                    "counts are); build the model with pooling='sum'"
                )
            x = ins[0]
            acc = type_for(min(n * x.lo, 0.0), max(n * x.hi, 0.0), x.frac + shift)
            out[name] = type_for(x.lo, x.hi, x.frac + shift)
            prec[name] = {"accum": str(acc.type), "result": str(out[name].type)}
        else:
            raise TrigflowError(
                f"layer '{name}' ({cls}) is not supported by the bit-exact GNN conversion; supported: "
                "InputLayer, QActivation, QDense, QConv1D(k=1), fixed Dense/Conv1D(k=1), Permute, Reshape, "
                "Flatten, Concatenate, Add, UpSampling1D, (Global)AveragePooling1D"
            )
    return out, prec, notes


def _quantized_affine(layer, x: Span) -> tuple[Span, Span]:
    name = layer.name
    if type(layer).__name__ == "QConv1D" and (layer.kernel_size != (1,) or layer.strides != (1,)):
        raise TrigflowError(f"layer '{name}': only kernel_size=1, stride 1 QConv1D is supported")
    if layer.get_config().get("activation") not in (None, "linear"):
        raise TrigflowError(f"layer '{name}': put the activation in a separate QActivation layer")
    kq, bq = layer.get_quantizers()[:2] if layer.use_bias else (layer.get_quantizers()[0], None)
    _weight_quantizer_ok(kq, name)
    weights = layer.get_weights()
    kernel = np.asarray(kq(weights[0].astype(np.float32)))
    bias, f_b = None, 0
    if layer.use_bias:
        _weight_quantizer_ok(bq, name)
        bias = np.asarray(bq(weights[1].astype(np.float32)))
        f_b = int(bq.bits) - int(bq.integer) - 1
    f_w = int(kq.bits) - int(kq.integer) - 1
    return affine(x, kernel, bias, f_w, f_b)


def _structure_affine(layer, x: Span, max_frac: int = 8) -> tuple[str, str, Span, Span]:
    """(weight type, bias type, accumulator, result) of a plain Dense/Conv1D(k=1) holding exact small
    numbers (at most ``max_frac`` fractional bits)."""
    name = layer.name
    if layer.get_config().get("activation") not in (None, "linear"):
        raise TrigflowError(f"layer '{name}': a plain Dense must be linear")
    if type(layer).__name__ == "Conv1D" and (layer.kernel_size != (1,) or layer.strides != (1,)):
        raise TrigflowError(f"layer '{name}': only kernel_size=1, stride 1 Conv1D is supported")
    weights = layer.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
    try:
        f_w, f_b = frac_bits(kernel, max_frac), frac_bits(bias, max_frac)
    except TrigflowError:
        raise TrigflowError(
            f"layer '{name}' is a float Dense with unquantized weights — bit-exact firmware needs a "
            "QKeras model (QDense) or a fixed structure matrix; build the model with quantized=True"
        ) from None
    w_type = type_for(kernel.min(), kernel.max(), f_w).type
    b_type = type_for(min(bias.min(), 0.0), max(bias.max(), 0.0), f_b).type
    acc, res = affine(x, kernel, bias if layer.use_bias else None, f_w, f_b)
    return str(w_type), str(b_type), acc, res
