"""Firmware layer: choosing an hls4ml configuration that makes the C-simulation bit-exact for a user model.

``choose_configuration(model, x, base)`` returns a :class:`Deployment`: the models to compare and the
model + :class:`FirmwareSpec` that go to firmware. What it does, in order:

* **graph**: a Sequential model becomes a functional graph (one Input layer; a layer named ``input``, which
  hls4ml reserves, is renamed ``input_0``).
* **head**: a final softmax/sigmoid (a separate layer, or the activation of the last layer) is cut off. The
  *logits* model goes to firmware and is compared bit for bit; the head is applied in Python and its
  agreement (softmax values, argmax) is reported apart — in firmware it would be a lookup table.
* **quantized (QKeras) models** — bit-exact by construction:

  - weights are *baked*: every QDense/QConv/QDepthwiseConv becomes the plain Keras layer holding exactly
    the quantized weights QKeras computes with (``quantized_po2``, ``binary``, ``ternary``,
    ``alpha="auto_po2"`` scales included), so hls4ml sees exact numbers instead of quantizers it handles
    partially (po2 weights do not compile with ``bit_exact``; binary kernels are turned into XNOR products
    that assume binary inputs). An inline activation becomes its own layer; a Dense applied to an
    ``(N, F)`` tensor becomes the identical ``Conv1D(kernel_size=1)`` (hls4ml's bit-exact flow rejects
    rank-3 Dense);
  - the input: a leading ``QActivation(quantized_bits)`` is the input format (hls4ml absorbs it into the
    input type, with its rounding and saturation, so any float input gives the QKeras result). Without one,
    a ``quantized_bits`` input quantizer is inserted in the firmware model with the format the data are
    on (smallest exact fixed-point format, ≤ 24 bits), or — float data not on such a grid — a format
    chosen from the data (``covering_format``): integer bits for their observed range (raw GeV needs ~11,
    so nothing saturates), fractional bits widened until the model's logits on the gridded data equal those
    on the raw data (≤ ``MAX_DATA_INPUT_BITS``). The data are put on that grid first (as upstream firmware
    would deliver them); the report says so, and the proof checks the grid is lossless on the data;
  - float layers (a plain BatchNormalization on raw inputs before the first QDense) are named: hls4ml gives
    them wide types derived from the input type and the layer's scale, so outputs are exact except where a
    value lands on a rounding boundary of the next quantizer;
  - precisions: hls4ml's ``bit_exact`` flow derives every type from the quantizers and weights by interval
    arithmetic. A Dense/Conv feeding a BatchNormalization is given an explicit (placeholder) type so
    hls4ml keeps the normalisation a separate layer, as Keras computes it (fusion reorders float sums);
  - the rewritten Keras model is checked to give the same logits as the user's model on the data.
* **float (Keras) models**: no bit-exact reference exists; every layer gets a type from profiling its
  values on the data (integer bits for the observed range with 2× headroom; 18-bit results, 16-bit weights,
  24-bit accumulators, rounding and saturation on results), and the difference to the float model is
  reported.

User overrides (``base.layer_precisions``) are applied *after* hls4ml's precision flow, so they are what the
firmware uses even with ``bit_exact`` (which otherwise overwrites configured types); see
:func:`build_firmware`.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from trigflow.firmware.convert import FirmwareSpec
from trigflow.quantize.fixed import FixedType, grid_frac_bits

from trigflow.errors import TrigflowError

HEADS = ("softmax", "sigmoid")
DEFAULT_INPUT_BITS, DEFAULT_INPUT_INTEGER = 16, 5  # quantized_bits(16, 5) == fixed<16,6,RND_CONV,SAT>
MAX_EXACT_INPUT_BITS = 24  # float32 mantissa: wider grids are not exact in Keras
MAX_QKERAS_INTEGER = 30  # quantized_bits(bits, integer) gives NaN for integer ≥ 31 (float32 internals)
MAX_DATA_INPUT_BITS = 40  # widest input type chosen for float data (float32 data on the grid stay exact)
PROFILE_RESULT_BITS, PROFILE_WEIGHT_BITS, PROFILE_ACCUM_BITS = 18, 16, 24
PLACEHOLDER_TYPE = "fixed<32,16>"  # overwritten by bit_exact; only keeps BatchNormalization unfused

Predict = Callable[[Any, np.ndarray], np.ndarray]  # (model, inputs) -> outputs
KERNEL_LAYERS = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D")
Q_KERNEL_LAYERS = tuple(f"Q{name}" for name in KERNEL_LAYERS)


# ---------------------------------------------------------------------------------------------------------
# input formats
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputFormat:
    """The firmware input type (a QKeras ``quantized_bits(bits, integer, keep_negative, alpha=1)`` grid:
    RND_CONV, SAT or SAT_SYM) and where it came from: ``"quantizer '<layer>'"``, ``"data"``, ``"default"``."""

    type: FixedType
    source: str = "default"

    def describe(self) -> dict[str, Any]:
        t = self.type
        return {
            "quantizer": (
                f"quantized_bits({t.width}, {t.integer - t.signed}, keep_negative={t.signed}, alpha=1)"
            ),
            "type": str(t),
            "range": [t.lo, t.hi],
            "lsb": t.lsb,
            "source": self.source,
        }


def quantize_inputs(t: FixedType, x: np.ndarray) -> np.ndarray:
    """``x`` on the input grid, as the input quantizer rounds and clips it (float32). A type's maximum that
    float32 cannot hold (wide grids) becomes the largest float32 below it, which is still on the grid."""
    q = np.asarray(t.cast(np.asarray(x, np.float32).astype(np.float64)), np.float32)
    over = q.astype(np.float64) > t.hi
    if np.any(over):
        q[over] = np.nextafter(q[over], np.float32(-np.inf))
    return q


def sample_inputs(
    t: FixedType, shape: tuple[int, ...], n: int, seed: int = 0, *, on_grid: bool
) -> np.ndarray:
    """``n`` inputs spanning the range of ``t`` (2 % beyond each end, to exercise saturation); the first three
    samples are all-minimum, zero and all-maximum."""
    rng = np.random.default_rng(seed)
    span = t.hi - t.lo
    x = rng.uniform(t.lo - 0.02 * span, t.hi + 0.02 * span, size=(n, *shape)).astype(np.float32)
    for row, value in enumerate((t.lo, 0.0, t.hi)[:n]):
        x[row] = value
    return quantize_inputs(t, x) if on_grid else x


def _quantizer_of(layer):
    return getattr(layer, "quantizer", None) if layer.__class__.__name__ == "QActivation" else None


def input_format_of(quantizer, source: str) -> InputFormat | None:
    """The input format of a ``quantized_bits`` quantizer with unit scale, else None."""
    if quantizer is None or quantizer.__class__.__name__ != "quantized_bits":
        return None
    try:
        t = FixedType.from_quantizer(quantizer)
    except TrigflowError:
        return None
    return InputFormat(t, source) if t.width - t.signed >= 1 else None


def data_format(x: np.ndarray, *, source: str = "data") -> InputFormat | None:
    """The smallest ``quantized_bits`` grid holding every value of ``x`` exactly (≤ 24 bits), else None."""
    x = np.asarray(x, np.float64)
    if not np.all(np.isfinite(x)):
        raise TrigflowError("input data contain NaN or infinite values; clean the data file")
    frac = grid_frac_bits(x, -8, MAX_EXACT_INPUT_BITS)
    if frac is None:
        return None
    t = FixedType.covering(x.min(initial=0.0), x.max(initial=0.0), frac).with_modes("RND_CONV", "SAT")
    if t.width - t.signed < 1:  # quantized_bits needs a magnitude bit
        t = replace(t, width=t.width + 1, integer=t.integer + 1)
    return InputFormat(t, source) if t.width <= MAX_EXACT_INPUT_BITS else None


def covering_format(
    reference, x: np.ndarray, *, predict: Predict | None = None, source: str = "data range"
) -> tuple[InputFormat, int]:
    """A ``quantized_bits`` grid for float data: integer bits covering the observed range of ``x`` (nothing
    saturates), and the fewest fractional bits (from 16 bits in all up to ``MAX_DATA_INPUT_BITS``, by
    bisection) for which the model's logits on the gridded data equal its logits on the raw data.
    ``predict(model, x)`` computes the logits (the
    proof's exact reference; default Keras). Returns ``(format, samples still changed)``."""
    predict = predict or _keras_predict
    x = np.asarray(x, np.float32)
    if not np.all(np.isfinite(x)):
        raise TrigflowError("input data contain NaN or infinite values; clean the data file")
    sample = x[: min(len(x), 20000)]
    lo, hi = float(sample.min(initial=0.0)), float(sample.max(initial=0.0))
    lo, hi = min(lo, float(x.min(initial=0.0))), max(hi, float(x.max(initial=0.0)))
    y_raw = np.asarray(predict(reference, sample), np.float64)

    def changed(t: FixedType) -> int:
        y = np.asarray(predict(reference, quantize_inputs(t, sample)), np.float64)
        return int(np.sum(np.any((y != y_raw).reshape(len(y), -1), axis=1)))

    first = DEFAULT_INPUT_BITS - 1 - FixedType.covering(lo, hi, 0).integer  # 16 bits in all
    last = first
    while _covering_grid(lo, hi, last + 1).width <= MAX_DATA_INPUT_BITS:
        last += 1
    widest = _covering_grid(lo, hi, last)
    if widest.width > MAX_DATA_INPUT_BITS:  # the range alone needs more than the cap: cover it anyway
        return InputFormat(_covering_grid(lo, hi, 0), source), -1
    n_widest = changed(widest)
    if n_widest:  # not even the widest grid keeps the model: the proof's lossless check reports it
        return InputFormat(widest, source), n_widest
    while first < last:  # bisect for the narrowest grid that keeps every logit (checked, not assumed)
        mid = (first + last) // 2
        if changed(_covering_grid(lo, hi, mid)) == 0:
            last = mid
        else:
            first = mid + 1
    return InputFormat(_covering_grid(lo, hi, last), source), 0


def _covering_grid(lo: float, hi: float, frac: int) -> FixedType:
    """The narrowest RND_CONV/SAT grid with ``frac`` fractional bits holding [lo, hi] — at most
    ``MAX_QKERAS_INTEGER`` integer bits (QKeras' quantized_bits returns NaN beyond): wider data saturate."""
    t = _with_magnitude_bit(FixedType.covering(lo, hi, frac).with_modes("RND_CONV", "SAT"))
    excess = t.integer - t.signed - MAX_QKERAS_INTEGER
    return replace(t, width=t.width - excess, integer=t.integer - excess) if excess > 0 else t


def _keras_predict(model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, batch_size=4096, verbose=0)


def _with_magnitude_bit(t: FixedType) -> FixedType:
    return replace(t, width=t.width + 1, integer=t.integer + 1) if t.width - t.signed < 1 else t


def default_format() -> InputFormat:
    t = FixedType(True, DEFAULT_INPUT_BITS, DEFAULT_INPUT_INTEGER + 1, "RND_CONV", "SAT")
    return InputFormat(t, "default")


# ---------------------------------------------------------------------------------------------------------
# the model graph
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Node:
    layer: Any
    inbound: list[str]


def graph_of(model) -> tuple[str, list[Node]]:
    """``(input layer name, nodes in topological order)`` of a Sequential or functional model."""
    import tensorflow as tf

    if isinstance(model, tf.keras.Sequential):
        name = model.input_names[0] if getattr(model, "input_names", None) else "x_in"
        nodes, prev = [], name
        for layer in model.layers:
            nodes.append(Node(layer, [prev]))
            prev = layer.name
        return name, nodes
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    input_name, nodes = None, []
    for entry in config["layers"]:
        layer = by_name[entry["name"]]
        if entry["class_name"] == "InputLayer":
            input_name = entry["name"]
            continue
        calls = entry.get("inbound_nodes") or []
        if len(calls) != 1:
            raise TrigflowError(
                f"layer '{layer.name}' is called {len(calls)} times (shared layer); trigflow verify needs "
                "each "
                "layer used once — give each use its own layer"
            )
        inbound = [item[0] for item in calls[0]] if isinstance(calls[0], list) else _inbound_v3(calls[0])
        nodes.append(Node(layer, inbound))
    if input_name is None:
        raise TrigflowError("model has no Input layer; build it with tf.keras.Input(shape=...)")
    return input_name, nodes


def _inbound_v3(call: dict) -> list[str]:  # Keras 3 style config (not expected with TF 2.14, kept for safety)
    names = []

    def walk(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                names.append(obj["config"]["keras_history"][0])
            else:
                for value in obj.values():
                    walk(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value)

    walk(call.get("args", []))
    return names


def _activation_name(activation) -> str:
    """'linear', 'relu', 'softmax', ... or the QKeras quantizer class name."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    if isinstance(activation, dict):
        return str(activation.get("class_name", "unknown"))
    name = getattr(activation, "__name__", None)
    return name if name else activation.__class__.__name__


def _layer_head(layer) -> str | None:
    """'softmax'/'sigmoid' if this layer's (only or inline) activation is one, else None."""
    kind = layer.__class__.__name__
    if kind == "Softmax":
        return "softmax"
    if kind == "Activation":
        name = _activation_name(layer.get_config()["activation"])
        return name if name in HEADS else None
    if kind in KERNEL_LAYERS + Q_KERNEL_LAYERS:
        name = _activation_name(layer.get_config().get("activation"))
        return name if name in HEADS else None
    return None


def is_quantized(model) -> bool:
    return any(layer.__class__.__name__.startswith("Q") for layer in model.layers)


# Float stand-ins for QKeras activation quantizers (the float twin of a QKeras model).
_FLOAT_ACTIVATION = {
    "quantized_relu": "relu",
    "quantized_relu_po2": "relu",
    "quantized_bits": "linear",
    "quantized_po2": "linear",
    "quantized_ulaw": "linear",
    "quantized_tanh": "tanh",
    "binary": "tanh",
    "ternary": "tanh",
    "stochastic_binary": "tanh",
    "stochastic_ternary": "tanh",
    "quantized_sigmoid": "sigmoid",
    "bernoulli": "sigmoid",
}


def _float_activation(activation) -> str:
    name = _activation_name(activation)
    return _FLOAT_ACTIVATION.get(name, name)


def _plain_config(config: dict) -> dict:
    """A QKeras layer config without its quantizer keys (the matching Keras layer's config)."""
    return {k: v for k, v in config.items() if "quantizer" not in k and not k.endswith("_range")}


def _deserialize(class_name: str, config: dict):
    import tensorflow as tf
    from trigflow.firmware.loaders import custom_objects

    return tf.keras.layers.deserialize(
        {"class_name": class_name, "config": config}, custom_objects=custom_objects()
    )


def quantized_weights(layer) -> list[np.ndarray]:
    """The weights a QKeras layer computes with (its quantizers applied, as in its ``call``)."""
    import tensorflow as tf

    weights = layer.get_weights()
    quantizers = layer.get_quantizers() if hasattr(layer, "get_quantizers") else []
    out = []
    for k, w in enumerate(weights):
        q = quantizers[k] if k < len(quantizers) else None
        if q is not None and getattr(q, "use_stochastic_rounding", False):
            raise TrigflowError(
                f"layer '{layer.name}' uses a stochastic quantizer ({q}); firmware weights must be "
                "deterministic"
            )
        out.append(np.asarray(q(tf.constant(w)), np.float32) if q is not None else w)
    return out


# ---------------------------------------------------------------------------------------------------------
# rebuilding a model
# ---------------------------------------------------------------------------------------------------------
def rebuild(model, mode: str, *, drop_head: bool = True, input_quantizer: InputFormat | None = None):
    """A functional copy of ``model`` in one of three forms.

    ``mode="reference"``: the same layers and weights (QKeras semantics untouched), head cut off.
    ``mode="deploy"``: what goes to firmware — baked quantized weights, activations as their own layers,
    rank-3 Dense as Conv1D(kernel_size=1), Dropout dropped, ``input_quantizer`` inserted after the input.
    ``mode="float"``: quantizers removed (float weights, float stand-ins for activation quantizers).
    Returns ``(model, head)`` where head is 'softmax'/'sigmoid'/None.
    """
    import tensorflow as tf

    assert mode in ("reference", "deploy", "float")
    input_name, nodes = graph_of(model)
    used = {node.layer.name for node in nodes}
    output_name = nodes[-1].layer.name if nodes else input_name
    if model.outputs and hasattr(model.outputs[0], "_keras_history"):
        output_name = model.outputs[0]._keras_history.layer.name
    head = None
    out_node = next((n for n in nodes if n.layer.name == output_name), None)
    if drop_head and out_node is not None:
        head = _layer_head(out_node.layer)

    def fresh(name: str) -> str:
        base, k = name, 0
        while name in used or name == "input":
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    safe_input = input_name if input_name != "input" else fresh("input_0")
    shape = tuple(model.input_shape[1:])
    x_in = tf.keras.Input(shape=shape, name=safe_input)
    tensors: dict[str, Any] = {input_name: x_in}
    if mode == "deploy" and input_quantizer is not None:
        from qkeras import QActivation

        tensors[input_name] = QActivation(input_quantizer.type.quantizer(), name=fresh(f"{safe_input}_quant"))(
            x_in
        )

    for node in nodes:
        layer, kind = node.layer, node.layer.__class__.__name__
        inputs = [tensors[name] for name in node.inbound]
        arg = inputs[0] if len(inputs) == 1 else inputs
        is_head = drop_head and layer.name == output_name and head is not None
        if is_head and kind in ("Activation", "Softmax"):
            tensors[layer.name] = arg  # the head is applied in Python
            continue
        config = layer.get_config()
        if is_head:
            config = {**config, "activation": "linear"}
        if mode == "reference":
            new = _deserialize(kind, config)
            out = new(arg)
            new.set_weights(layer.get_weights())
        elif kind in ("Dropout", "GaussianNoise", "GaussianDropout") and mode != "reference":
            out = arg
        elif mode == "float":
            out = _float_layer(layer, kind, config, arg)
        else:
            out = _deploy_layer(layer, kind, config, arg, fresh)
        tensors[layer.name] = out
    return tf.keras.Model(x_in, tensors[output_name], name=f"{model.name}_{mode}"), head


def _float_layer(layer, kind: str, config: dict, arg):
    if kind == "QActivation":
        act = _float_activation(layer.quantizer if hasattr(layer, "quantizer") else config["activation"])
        if act == "linear":
            return arg
        return _deserialize("Activation", {"name": layer.name, "activation": act})(arg)
    if kind.startswith("Q") and kind[1:] in (*KERNEL_LAYERS, "BatchNormalization"):
        plain = _plain_config(config)
        if "activation" in plain:
            plain["activation"] = _float_activation(layer.activation)
        new = _deserialize(kind[1:], plain)
        out = new(arg)
        new.set_weights(layer.get_weights())
        return out
    new = _deserialize(kind, config)
    out = new(arg)
    new.set_weights(layer.get_weights())
    return out


def _deploy_layer(layer, kind: str, config: dict, arg, fresh):
    import tensorflow as tf

    base = kind[1:] if kind in Q_KERNEL_LAYERS else kind
    if base not in KERNEL_LAYERS:
        new = _deserialize(kind, config)
        out = new(arg)
        new.set_weights(layer.get_weights())
        return out
    weights = quantized_weights(layer) if kind in Q_KERNEL_LAYERS else layer.get_weights()
    plain = {**_plain_config(config), "activation": "linear"}
    if base == "Dense" and len(arg.shape) == 3:  # Dense on (N, F) == pointwise Conv1D
        plain = {
            "name": layer.name,
            "filters": config["units"],
            "kernel_size": 1,
            "use_bias": config["use_bias"],
            "activation": "linear",
        }
        base, weights = "Conv1D", [weights[0][None, ...], *weights[1:]]
    elif base == "Dense" and len(arg.shape) > 3:
        raise TrigflowError(
            f"layer '{layer.name}' is a Dense applied to a rank-{len(arg.shape) - 1} tensor; flatten or "
            "reshape "
            "its input to (N, F) first"
        )
    new = _deserialize(base, plain)
    out = new(arg)
    new.set_weights(weights)
    activation = config.get("activation")
    name = _activation_name(activation)
    if name != "linear":
        act_name = fresh(f"{layer.name}_{name}")
        if isinstance(activation, str):
            out = tf.keras.layers.Activation(activation, name=act_name)(out)
        else:  # a QKeras quantizer: the layer's own object (its config form is a dict QActivation can't call)
            from qkeras import QActivation

            out = QActivation(layer.activation, name=act_name)(out)
    return out


# ---------------------------------------------------------------------------------------------------------
# the configuration
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Deployment:
    """Everything the verification compares and builds, for one user model."""

    full: Any  # the user's model as loaded (with its head)
    reference: Any  # the user's model up to its logits: the reference the firmware must equal bit for bit
    float_model: Any  # reference without quantizers (for a float model: the reference itself)
    model: Any  # the Keras model that goes to firmware (rewritten, numerically identical to ``reference``)
    spec: FirmwareSpec  # what hls4ml is configured with
    overrides: dict[str, dict[str, str]]  # user precisions, applied after hls4ml's precision flow
    head: str | None
    quantized: bool
    input_format: InputFormat | None
    x: np.ndarray  # the inputs (on the input grid when the firmware needs it)
    notes: list[str] = field(default_factory=list)
    rewrite_max_abs_diff: float = 0.0
    float_layers: list[str] = field(default_factory=list)  # unquantized arithmetic in a quantized model

    def describe(self) -> dict[str, Any]:
        return {
            "quantized": self.quantized,
            "bit_exact_flow": self.spec.bit_exact,
            "head": self.head,
            "input": self.input_format.describe() if self.input_format else {"type": self.spec.input_type},
            "overrides": self.overrides,
            "rewrite_max_abs_diff": self.rewrite_max_abs_diff,
            "float_layers": list(self.float_layers),
            "notes": list(self.notes),
        }


def leading_input_format(model) -> InputFormat | None:
    """The format of a ``QActivation(quantized_bits)`` that is the only consumer of the model input."""
    input_name, nodes = graph_of(model)
    consumers = [n for n in nodes if input_name in n.inbound]
    if len(consumers) != 1:
        return None
    layer = consumers[0].layer
    return input_format_of(_quantizer_of(layer), f"quantizer '{layer.name}'")


def choose_configuration(
    model, x: np.ndarray, base: FirmwareSpec | None = None, *, predict: Predict | None = None
) -> Deployment:
    """A bit-exact firmware configuration for ``model`` on inputs ``x`` (see the module docstring);
    ``predict(model, x)``: how the reference is evaluated when an input grid is chosen from float data."""
    base = base or FirmwareSpec()
    overrides = {name: dict(p) for name, p in base.layer_precisions.items()}
    x = np.asarray(x, np.float32)
    quantized = is_quantized(model)
    with _quiet():
        reference, head = rebuild(model, "reference")
    notes = (
        [f"{head} head cut off: bits are compared on the logits, the {head} is compared apart"]
        if head
        else []
    )
    if not quantized:
        return _float_deployment(model, reference, head, x, base, overrides, notes)

    fmt = leading_input_format(reference)
    insert = None
    if fmt is None:
        fmt = data_format(x)
        if fmt is None:
            with _quiet():
                fmt, changed = covering_format(reference, x, predict=predict)
            gridded = quantize_inputs(fmt.type, x)
            notes.append(
                f"inputs are not on a fixed-point grid of ≤ {MAX_EXACT_INPUT_BITS} bits: put on the grid "
                f"{fmt.type}, which covers their range [{float(x.min()):.4g}, {float(x.max()):.4g}] with "
                f"{fmt.type.frac} fractional bits "
                f"(max |Δ| {float(np.max(np.abs(gridded - x), initial=0)):.3g}; "
                + (
                    "the model's logits are unchanged on every sample)"
                    if changed == 0
                    else f"{changed} samples' logits still change at {MAX_DATA_INPUT_BITS} bits)"
                )
            )
            x = gridded
        insert = fmt
        notes.append(
            f"no input quantizer: inserted {fmt.describe()['quantizer']} ({fmt.type}, from {fmt.source})"
        )
    with _quiet():
        float_model, _ = rebuild(model, "float")
        deploy, _ = rebuild(model, "deploy", input_quantizer=insert)
    notes.append("weights baked from their quantizers; activations as separate layers")
    precisions = {}
    nodes = graph_of(deploy)[1]
    for node in nodes:
        consumers = [n for n in nodes if node.layer.name in n.inbound]
        if (
            node.layer.__class__.__name__ in KERNEL_LAYERS
            and len(consumers) == 1
            and consumers[0].layer.__class__.__name__ in ("BatchNormalization", "QBatchNormalization")
        ):
            precisions[node.layer.name] = {"result": PLACEHOLDER_TYPE}
    spec = replace(base, input_type=str(fmt.type), bit_exact=True, layer_precisions=precisions)
    diff = _rewrite_check(reference, deploy, x)
    if diff:
        notes.append(
            f"the rewritten Keras model differs from the model by up to {diff:.3g} (float32 rounding)"
        )
    floats = float_layers(reference)
    if floats:
        notes.append(
            f"float layer(s) {', '.join(floats)} in a quantized model: hls4ml computes them with wide "
            "fixed-point types; a value that lands on a rounding boundary of the next quantizer may round the "
            "other way"
        )
    return Deployment(
        model, reference, float_model, deploy, spec, overrides, head, True, fmt, x, notes, diff, floats
    )


FLOAT_ARITHMETIC = ("BatchNormalization", *KERNEL_LAYERS)


def float_layers(model) -> list[str]:
    """Layers of a quantized model that compute in float (no quantizer): plain BatchNormalization,
    Dense, Conv. Their firmware types are wide fixed point, not the float32 arithmetic of Keras."""
    return [layer.name for layer in model.layers if layer.__class__.__name__ in FLOAT_ARITHMETIC]


def _rewrite_check(reference, deploy, x: np.ndarray) -> float:
    sample = x[: min(len(x), 5000)]
    a = reference.predict(sample, batch_size=4096, verbose=0)
    b = deploy.predict(sample, batch_size=4096, verbose=0)
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))


# --- float models: precisions from profiling -------------------------------------------------------------
def integer_bits(lo: float, hi: float, *, headroom: float = 2.0) -> int:
    """Integer bits (sign included) of a signed fixed type holding [lo, hi] × headroom."""
    m = max(abs(lo), abs(hi)) * headroom
    if m <= 0:
        return 1
    return int(math.floor(math.log2(m))) + 2


def fixed(width: int, integer: int, modes: str = "") -> str:
    return f"fixed<{width},{integer}{',' + modes if modes else ''}>"


def layer_values(model, x: np.ndarray, *, max_samples: int = 20000) -> dict[str, np.ndarray]:
    """Output of every layer of a functional model on ``x`` (input layer included)."""
    import tensorflow as tf

    layers = [layer for layer in model.layers]
    probe = tf.keras.Model(model.inputs, [layer.output for layer in layers])
    outs = probe.predict(np.asarray(x[:max_samples], np.float32), batch_size=2048, verbose=0)
    if not isinstance(outs, list):
        outs = [outs]
    return {layer.name: np.asarray(out) for layer, out in zip(layers, outs, strict=True)}


def profile_precisions(model, x: np.ndarray) -> tuple[str, dict[str, dict[str, str]]]:
    """``(input type, per-layer precisions)`` for a float model, from its values on ``x``."""
    values = layer_values(model, x)
    input_name = model.layers[0].name
    v = values[input_name]
    i_in = integer_bits(float(v.min()), float(v.max()), headroom=1.0)
    input_type = fixed(PROFILE_RESULT_BITS, i_in, "RND_CONV,SAT")
    precisions: dict[str, dict[str, str]] = {}
    for layer in model.layers[1:]:
        v = values[layer.name]
        i = integer_bits(float(v.min()), float(v.max()))
        p = {"result": fixed(PROFILE_RESULT_BITS, i, "RND_CONV,SAT")}
        kind = layer.__class__.__name__
        weights = layer.get_weights()
        if kind in KERNEL_LAYERS and weights:
            w = weights[0]
            p["weight"] = fixed(
                PROFILE_WEIGHT_BITS,
                integer_bits(float(w.min()), float(w.max()), headroom=1.0),
                "RND_CONV,SAT",
            )
            if len(weights) > 1:
                b = weights[1]
                p["bias"] = fixed(
                    PROFILE_WEIGHT_BITS,
                    integer_bits(float(b.min()), float(b.max()), headroom=1.0),
                    "RND_CONV,SAT",
                )
            p["accum"] = fixed(PROFILE_ACCUM_BITS, i + 1)
            precisions[f"{layer.name}_linear"] = {
                "result": p["result"]
            }  # hls4ml's split-off linear activation
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = (weights + [None] * 4)[:4] if len(weights) == 4 else (None,) * 4
            if gamma is not None:
                scale = gamma / np.sqrt(var + layer.epsilon)
                bias = beta - mean * scale
                p["scale"] = fixed(
                    PROFILE_WEIGHT_BITS,
                    integer_bits(float(scale.min()), float(scale.max()), headroom=1.0),
                    "RND_CONV,SAT",
                )
                p["bias"] = fixed(
                    PROFILE_WEIGHT_BITS,
                    integer_bits(float(bias.min()), float(bias.max()), headroom=1.0),
                    "RND_CONV,SAT",
                )
        elif kind in (
            "AveragePooling1D",
            "AveragePooling2D",
            "GlobalAveragePooling1D",
            "GlobalAveragePooling2D",
        ):
            p["accum"] = fixed(PROFILE_ACCUM_BITS, i + 4)
        precisions[layer.name] = p
    return input_type, precisions


def _float_deployment(model, reference, head, x, base, overrides, notes) -> Deployment:
    with _quiet():
        deploy, _ = rebuild(model, "deploy")
    input_type, precisions = profile_precisions(deploy, x)
    spec = replace(base, input_type=input_type, bit_exact=False, layer_precisions=precisions)
    notes.append(
        "float model: no bit-exact reference; precisions from profiling the data "
        f"({PROFILE_RESULT_BITS}-bit results, {PROFILE_WEIGHT_BITS}-bit weights, 2× range headroom)"
    )
    diff = _rewrite_check(reference, deploy, x)
    return Deployment(model, reference, reference, deploy, spec, overrides, head, False, None, x, notes, diff)


# ---------------------------------------------------------------------------------------------------------
# firmware
# ---------------------------------------------------------------------------------------------------------
def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def apply_overrides(hls_model, overrides: dict[str, dict[str, str]]) -> None:
    """Set the given types on the converted graph (after hls4ml's precision flow)."""
    layers = {layer.name: layer for layer in hls_model.get_layers()}
    for name, precisions in overrides.items():
        if name not in layers:
            raise TrigflowError(
                f"layer_precisions names layer '{name}', which is not in the firmware model; layers: "
                f"{', '.join(layers)}"
            )
        layer = layers[name]
        for key, text in precisions.items():
            try:
                new = hls_model.config.backend.convert_precision_string(str(text))
            except Exception:
                raise TrigflowError(
                    f"layer_precisions['{name}']['{key}']: '{text}' is not a fixed-point type"
                ) from None
            if key == "result":
                target = layer.get_output_variable().type.precision
            elif key in getattr(layer, "weights", {}):
                target = layer.weights[key].type.precision
            elif layer.get_attr(f"{key}_t") is not None:
                target = layer.get_attr(f"{key}_t").precision
            else:
                raise TrigflowError(
                    f"layer '{name}' has no '{key}' type to override; give result, accum, weight or bias"
                )
            for attr in ("width", "integer", "signed", "rounding_mode", "saturation_mode", "saturation_bits"):
                if hasattr(new, attr) and hasattr(target, attr):
                    setattr(target, attr, getattr(new, attr))
            if key in getattr(layer, "weights", {}):
                layer.weights[key].update_precision(target)


def build_firmware(dep: Deployment, project_dir: str | Path, *, force: bool = False, compile: bool = True):
    """Convert ``dep.model`` into ``project_dir`` with ``dep.spec``, then the user overrides, then compile."""
    from trigflow.firmware.convert import compile_project, convert, load_library

    if not dep.overrides:
        return convert(dep.model, project_dir, dep.spec, force=force, compile=compile)
    if not dep.spec.bit_exact:
        merged = {name: dict(p) for name, p in dep.spec.layer_precisions.items()}
        for name, p in dep.overrides.items():
            merged.setdefault(name, {}).update(p)
        return convert(
            dep.model, project_dir, replace(dep.spec, layer_precisions=merged), force=force, compile=compile
        )
    hls_model = convert(dep.model, project_dir, dep.spec, force=force, compile=False)
    project = Path(hls_model.config.get_output_dir())
    try:
        apply_overrides(hls_model, dep.overrides)
        with _quiet():
            hls_model.write()  # a fresh stamp: the library gets a new name (no stale dlopen handle)
        if compile:
            load_library(hls_model, compile_project(hls_model))
    except BaseException:
        shutil.rmtree(project, ignore_errors=True)  # the folder convert() just created: no half-built project
        raise
    return hls_model


def firmware_types(hls_model) -> dict[str, dict[str, str]]:
    """The fixed-point types of every layer of a converted model (result, accum, weights, ...)."""
    out: dict[str, dict[str, str]] = {}
    for layer in hls_model.get_layers():
        types = {"result": str(layer.get_output_variable().type.precision)}
        for key in ("accum", "weight", "bias", "scale", "table"):
            t = layer.get_attr(f"{key}_t")
            if t is not None and hasattr(t, "precision"):
                types[key] = str(t.precision)
        out[layer.name] = types
    return out
