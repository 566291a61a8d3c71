"""Firmware layer: bit-exact hls4ml conversion of the graph networks in ``trigflow.models.gnn``.

Contract
--------
``prepare_gnn_for_hls(model, *, input_precision=None, check=True) -> (hls_ready_model, overrides)``
    ``model``: a QKeras functional model from ``build_interaction_network`` / ``build_deepsets`` (or any
    model made of the same layer vocabulary: InputLayer, QActivation(quantized_bits|quantized_relu),
    QDense/QConv1D(kernel_size=1) with quantized_bits(alpha=1) weights, plain ``Dense`` layers whose fixed
    weights are exact small numbers (the 0/1 gather/scatter matrices), Permute, Reshape, Flatten,
    Concatenate, GlobalAveragePooling1D). The model is not modified.

    Returns a *new* Keras model, numerically identical to ``model`` (checked on random inputs when
    ``check``), in which every ``QDense`` applied to a rank-3 tensor is replaced by the equivalent
    ``QConv1D(kernel_size=1)`` with the same quantizers and weights, and a dict::

        {"input_type": "fixed<W,I,RND_CONV,SAT>",        # hls4ml type of the model input
         "layer_precisions": {layer: {"result": ..., "accum": ..., "weight": ..., "bias": ...}},
         "bit_exact": False,                               # do NOT enable hls4ml's bit_exact flow
         "warnings": [...]}                                # e.g. QKeras float32 itself not exact

    ``layer_precisions`` gives every layer an explicit, exact fixed-point type (nothing left 'auto'); it
    has the shape of ``trigflow.firmware.convert.FirmwareSpec.layer_precisions``, so the pipeline may use
    ``FirmwareSpec(input_type=o["input_type"], layer_precisions=o["layer_precisions"], bit_exact=False)``
    with the returned model. By default the input type is the input quantizer's own type (with its
    rounding and saturation), so the float→fixed conversion of the C-simulation *is* the QKeras input
    quantization: any float input gives bit-exact logits. On hardware the input port carries that word.

``convert_gnn(model, output_dir, *, backend="Vitis", part=..., clock_period=5, io_type="io_parallel",
reuse_factor=1, strategy="Latency", parallelization_factor=1, project_name="myproject",
input_precision=None, compile=True)``
    ``prepare_gnn_for_hls`` + ``hls4ml.converters.convert_from_keras_model`` (weights compiled into the
    headers) + a check that every converted layer carries the intended type and exactly the quantized
    weights + ``hls_model.compile()``. Returns the hls4ml ``ModelGraph``; run it with ``predict_csim``
    (float64 in/out; float32 would round wide logits) and compare with ``model.predict`` of the *original*
    model. ``parallelization_factor``: items (edges / nodes) processed per cycle by the per-item MLPs
    (see ``hls_config_for``). Raises ``TrigflowError`` for models it cannot make exact (float twin,
    unsupported layer or quantizer, mean pooling over a non-power-of-two count, io_stream).

``convert_garnet(model, output_dir, **same)``
    A ``build_garnet(quantized=True)`` model, whose GarNet layer is ``GarNetHLS`` (``trigflow.models.gnn``: a
    Keras GarNet computing hls4ml's ``nnet::garnet`` fixed-point arithmetic step by step), through hls4ml's
    own GarNet layer: ``prepare_garnet_for_hls`` (``garnet_for_hls``: the mirror's contracted weights handed
    to hls4ml so that its conversion is exact; the mirror's internal types; exact types elsewhere) +
    conversion + ``check_garnet_conversion``. Bit-exact; predict with ``predict_csim(hls, [x, n_valid])``.

Why the naive conversion is wrong (hls4ml 1.3): (1) the default input type ``fixed<16,6>`` truncates the
data before the input quantizer rounds it (double rounding); (2) hls4ml's ``ReplaceMultidimensionalDense
WithConv`` pass turns a Dense on an (N, F) tensor into a pointwise Conv1D but copies only the float
weights, dropping ``weight_quantizer``/``bias_quantizer`` — the firmware then uses the *unquantized*
weights truncated to the config's type; (3) ``GlobalPooling1D`` is not handled by precision inference and
falls back to the default ``fixed<16,6>``; (4) 'auto' types of the 0/1 structure layers multiply by
``fixed<16,6>`` weights (exact but 2-3x wider than needed).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.autoconfig import grid_frac_bits
from trigflow.firmware.convert import use_fast_build_flags

DEFAULT_PART = "xcvu13p-flga2577-2-e"
FLOAT32_EXACT_BITS = 24  # QKeras computes in float32: exact only while every sum fits 24 significant bits


# ---------------------------------------------------------------------------------------------------------
# fixed-point bookkeeping
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fx:
    """A fixed-point format plus the value interval it must hold (``lo``, ``hi``)."""

    signed: bool
    integer: int  # integer bits, including the sign bit (hls4ml / ap_fixed convention)
    frac: int
    lo: float
    hi: float
    mode: str = ""  # ",RND_CONV,SAT" for quantizer outputs

    @property
    def width(self) -> int:
        return self.integer + self.frac

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fixed<{self.width},{self.integer}{self.mode}>"

    def with_mode(self, mode: str) -> Fx:
        return Fx(self.signed, self.integer, self.frac, self.lo, self.hi, mode)


def fx_for(lo: float, hi: float, frac: int) -> Fx:
    """Smallest fixed-point format with ``frac`` fractional bits holding the multiples of 2^-frac in
    [lo, hi]."""
    lo, hi, frac = float(lo), float(hi), int(frac)
    lsb = 2.0**-frac
    if lo >= 0:
        integer = math.ceil(math.log2(hi + lsb)) if hi > 0 else 0
        integer = max(integer, 0 if frac > 0 else 1)
        return Fx(False, integer, frac, lo, hi)
    need = math.ceil(math.log2(-lo))
    if hi > 0:
        need = max(need, math.ceil(math.log2(hi + lsb)))
    return Fx(True, max(need, 0) + 1, frac, lo, hi)


def frac_bits(values: np.ndarray, limit: int = 32) -> int:
    """Fractional bits needed to hold ``values`` exactly (raises if more than ``limit``)."""
    frac = grid_frac_bits(np.asarray(values, np.float64), 0, limit)
    if frac is not None:
        return frac
    raise TrigflowError(f"weights are not on a fixed-point grid with ≤ {limit} fractional bits")


def _quantizer_fx(quantizer, where: str) -> Fx:
    """Fixed-point format of a QKeras activation quantizer, as hls4ml implements it (RND_CONV, SAT)."""
    name = type(quantizer).__name__
    if name == "quantized_bits":
        bits, integer = int(quantizer.bits), int(quantizer.integer)
        if quantizer.alpha not in (None, 1, 1.0) or quantizer.symmetric or not quantizer.keep_negative:
            raise TrigflowError(
                f"{where}: only quantized_bits(bits, integer, alpha=1) (signed, non-symmetric) maps exactly "
                f"to an ap_fixed type; got {quantizer}"
            )
        if quantizer.use_stochastic_rounding or bits < 2:
            raise TrigflowError(f"{where}: stochastic rounding / 1-bit quantizers cannot be bit-exact here")
        frac = bits - integer - 1
        return Fx(True, integer + 1, frac, -(2.0**integer), 2.0**integer - 2.0**-frac, ",RND_CONV,SAT")
    if name == "quantized_relu":
        bits, integer = int(quantizer.bits), int(quantizer.integer)
        if quantizer.negative_slope or quantizer.use_sigmoid or quantizer.relu_upper_bound is not None:
            raise TrigflowError(f"{where}: only plain quantized_relu(bits, integer) is supported, "
                                f"got {quantizer}")
        if quantizer.use_stochastic_rounding:
            raise TrigflowError(f"{where}: stochastic rounding cannot be bit-exact")
        frac = bits - integer
        return Fx(False, integer, frac, 0.0, 2.0**integer - 2.0**-frac, ",RND_CONV,SAT")
    raise TrigflowError(f"{where}: activation {quantizer!r} is not supported for bit-exact GNN firmware")


def _weight_quantizer_ok(quantizer, where: str) -> None:
    if quantizer is None:
        raise TrigflowError(f"{where}: QDense/QConv1D needs kernel and bias quantizers for bit-exactness")
    if type(quantizer).__name__ != "quantized_bits" or quantizer.alpha not in (None, 1, 1.0):
        raise TrigflowError(f"{where}: weight quantizer must be quantized_bits(.., alpha=1), got {quantizer}")


def _affine_fx(x: Fx, kernel: np.ndarray, bias: np.ndarray | None, f_w: int, f_b: int) -> tuple[Fx, Fx]:
    """(accumulator, result) formats of y = x @ kernel + bias for x in [x.lo, x.hi] — exact, per hls4ml's
    latency kernels (products and partial sums live in ``accum_t``)."""
    kernel = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    bias = np.zeros(kernel.shape[1]) if bias is None else np.asarray(bias, np.float64)
    pos = np.maximum(kernel * x.hi, kernel * x.lo).sum(axis=0)
    neg = np.minimum(kernel * x.hi, kernel * x.lo).sum(axis=0)
    lo, hi = float((neg + bias).min()), float((pos + bias).max())
    frac = max(x.frac + f_w, f_b)
    acc = fx_for(min(lo, float(neg.min()), 0.0), max(hi, float(pos.max()), 0.0), frac)
    return acc, fx_for(lo, hi, frac)


# ---------------------------------------------------------------------------------------------------------
# graph rewrite
# ---------------------------------------------------------------------------------------------------------
def _is_qdense_rank3(layer) -> bool:
    return type(layer).__name__ == "QDense" and len(layer.input_shape) == 3


def _rewrite(model):
    """Clone ``model`` with every rank-3 QDense replaced by an equivalent QConv1D(kernel_size=1)."""
    import tensorflow as tf
    from qkeras import QConv1D

    def clone(layer):
        if _is_qdense_rank3(layer):
            cfg = layer.get_config()
            act = cfg.get("activation")
            if act not in (None, "linear"):
                raise TrigflowError(f"layer '{layer.name}': put the activation in its own QActivation layer")
            return QConv1D(
                cfg["units"], 1, name=layer.name, use_bias=cfg["use_bias"],
                kernel_quantizer=cfg["kernel_quantizer"], bias_quantizer=cfg["bias_quantizer"],
            )
        return layer.__class__.from_config(layer.get_config())

    with warnings.catch_warnings():  # keras warns about serializing QKeras quantizers as constraints
        warnings.simplefilter("ignore", UserWarning)
        new = tf.keras.models.clone_model(model, clone_function=clone)
    for old_layer in model.layers:
        weights = old_layer.get_weights()
        if not weights:
            continue
        if _is_qdense_rank3(old_layer):
            weights = [weights[0][None, ...], *weights[1:]]
        new.get_layer(old_layer.name).set_weights(weights)
    return new


# ---------------------------------------------------------------------------------------------------------
# precision propagation
# ---------------------------------------------------------------------------------------------------------
def _inbound(layer) -> list:
    node = layer.inbound_nodes[0]
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _consumers(model, layer) -> list:
    return [other for other in model.layers if other is not layer and layer in _inbound_safe(other)]


def _inbound_safe(layer) -> list:
    try:
        return _inbound(layer)
    except (IndexError, AttributeError):
        return []


def _propagate(
    model, input_precision: str | None, garnet_result: str | None = None
) -> tuple[dict[str, Fx], dict[str, dict[str, str]], list[str]]:
    """Walk the graph in topological order; return each layer's output format, the hls4ml precision
    overrides and warnings. ``garnet_result`` is the output type given to GarNet layers (not exact)."""
    out: dict[str, Fx] = {}
    prec: dict[str, dict[str, str]] = {}
    notes: list[str] = []

    def note_width(name: str, fx: Fx) -> None:
        if fx.width > FLOAT32_EXACT_BITS:
            notes.append(
                f"layer '{name}': accumulator needs {fx.width} bits (> {FLOAT32_EXACT_BITS}); QKeras' "
                "float32 arithmetic may itself round here: bit-exactness not guaranteed for extreme inputs"
            )

    for layer in model.layers:
        cls, name = type(layer).__name__, layer.name
        ins = [out[inb.name] for inb in _inbound_safe(layer)]
        int_dtype = re.fullmatch(r"(u?)int(\d+)", str(layer.dtype))
        if cls == "InputLayer" and int_dtype:  # e.g. GarNet's vertex count
            unsigned, width = int_dtype.group(1) == "u", int(int_dtype.group(2))
            out[name] = Fx(not unsigned, width, 0, 0.0 if unsigned else -(2.0 ** (width - 1)), 2.0**width - 1)
            prec[name] = {"result": f"{int_dtype.group(1)}int<{width}>"}
        elif cls == "GarNet" and garnet_result is not None:
            out[name] = _parse_fx(garnet_result)
            prec[name] = {"result": garnet_result}
        elif cls == "InputLayer":
            if input_precision is not None:
                fx = _parse_fx(input_precision)
            else:
                consumers = _consumers(model, layer)
                if len(consumers) != 1 or type(consumers[0]).__name__ != "QActivation":
                    raise TrigflowError(
                        f"input '{name}' must feed exactly one QActivation(quantized_bits) (the input "
                        "quantizer), or pass input_precision= with a type that holds the input data exactly"
                    )
                fx = _quantizer_fx(consumers[0].activation, consumers[0].name)
            out[name] = fx
            prec[name] = {"result": str(fx)}
        elif cls == "QActivation":
            fx = _quantizer_fx(layer.activation, name)
            out[name] = fx
            prec[name] = {"result": str(fx)}
        elif cls in ("Permute", "Reshape", "Flatten"):
            out[name] = ins[0].with_mode("")
            prec[name] = {"result": str(out[name])}
        elif cls == "Concatenate":
            fx = fx_for(min(i.lo for i in ins), max(i.hi for i in ins), max(i.frac for i in ins))
            out[name] = fx
            prec[name] = {"result": str(fx)}
        elif cls in ("QDense", "QConv1D"):
            if cls == "QConv1D" and (layer.kernel_size != (1,) or layer.strides != (1,)):
                raise TrigflowError(f"layer '{name}': only kernel_size=1, stride 1 QConv1D is supported")
            act = layer.get_config().get("activation")
            if act not in (None, "linear"):
                raise TrigflowError(f"layer '{name}': put the activation in a separate QActivation layer")
            kq, bq = layer.get_quantizers()[:2] if layer.use_bias else (layer.get_quantizers()[0], None)
            _weight_quantizer_ok(kq, name)
            weights = layer.get_weights()
            kernel = np.asarray(kq(weights[0].astype(np.float32)))
            bias = None
            f_b = 0
            if layer.use_bias:
                _weight_quantizer_ok(bq, name)
                bias = np.asarray(bq(weights[1].astype(np.float32)))
                f_b = int(bq.bits) - int(bq.integer) - 1
            f_w = int(kq.bits) - int(kq.integer) - 1
            acc, res = _affine_fx(ins[0], kernel, bias, f_w, f_b)
            note_width(name, acc)
            out[name] = res
            prec[name] = {"accum": str(acc), "result": str(res)}
            prec[f"{name}_linear"] = {"result": str(res)}
        elif cls == "Dense":  # fixed structure matrix (gather / scatter / sum), not trained
            cfg = layer.get_config()
            if cfg.get("activation") not in (None, "linear"):
                raise TrigflowError(f"layer '{name}': a plain Dense must be linear")
            weights = layer.get_weights()
            kernel = weights[0].astype(np.float64)
            bias = weights[1].astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
            try:
                f_w, f_b = frac_bits(kernel, 8), frac_bits(bias, 8)
            except TrigflowError:
                raise TrigflowError(
                    f"layer '{name}' is a float Dense with unquantized weights — bit-exact firmware needs a "
                    "QKeras model (QDense) or a fixed structure matrix; build the model with quantized=True"
                ) from None
            w_fx = fx_for(kernel.min(), kernel.max(), f_w)
            b_fx = fx_for(min(bias.min(), 0.0), max(bias.max(), 0.0), f_b)
            acc, res = _affine_fx(ins[0], kernel, bias if layer.use_bias else None, f_w, f_b)
            note_width(name, acc)
            out[name] = res
            prec[name] = {"weight": str(w_fx), "bias": str(b_fx), "accum": str(acc), "result": str(res)}
            prec[f"{name}_linear"] = {"result": str(res)}
        elif cls == "GlobalAveragePooling1D":
            n = int(layer.input_shape[1])
            shift = int(round(math.log2(n)))
            if 2**shift != n:
                raise TrigflowError(
                    f"layer '{name}': the mean over {n} items is not exact in fixed point (only power-of-two "
                    "counts are); build the model with pooling='sum'"
                )
            x = ins[0]
            acc = fx_for(min(n * x.lo, 0.0), max(n * x.hi, 0.0), x.frac + shift)
            res = fx_for(x.lo, x.hi, x.frac + shift)
            out[name] = res
            prec[name] = {"accum": str(acc), "result": str(res)}
        else:
            raise TrigflowError(
                f"layer '{name}' ({cls}) is not supported by the bit-exact GNN conversion; supported: "
                "InputLayer, QActivation, QDense, QConv1D(k=1), fixed Dense, Permute, Reshape, Flatten, "
                "Concatenate, GlobalAveragePooling1D"
            )
    return out, prec, notes


def _parse_fx(text: str) -> Fx:
    m = re.fullmatch(r"\s*(?:ap_)?(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(,.*)?>\s*", text)
    if not m:
        raise TrigflowError(f"a precision must look like 'fixed<W,I>' or 'ufixed<W,I,RND_CONV,SAT>': {text}")
    unsigned, width, integer = m.group(1) == "u", int(m.group(2)), int(m.group(3))
    frac, mode = width - integer, (m.group(4) or "").replace(" ", "")
    if unsigned:
        return Fx(False, integer, frac, 0.0, 2.0**integer - 2.0**-frac, mode)
    return Fx(True, integer, frac, -(2.0 ** (integer - 1)), 2.0 ** (integer - 1) - 2.0**-frac, mode)


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------
def _random_inputs(model, fx: Fx, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *model.input_shape[1:])
    span = max(abs(fx.lo), abs(fx.hi))
    x = rng.uniform(-1.25 * span, 1.25 * span, size=shape)
    return x.astype(np.float32)


def prepare_gnn_for_hls(model, *, input_precision: str | None = None, check: bool = True):
    """Return ``(hls_ready_model, overrides)``; see the module docstring for the contract."""
    if isinstance(model.input, (list, tuple)) and len(model.inputs) != 1:
        raise TrigflowError("prepare_gnn_for_hls handles single-input models; use convert_garnet for GarNet")
    if not any(type(layer).__name__.startswith("Q") for layer in model.layers):
        raise TrigflowError(
            f"model '{model.name}' has no QKeras layers (float twin?); bit-exact firmware needs the QKeras "
            "model"
        )
    new = _rewrite(model)
    formats, prec, notes = _propagate(new, input_precision)
    input_name = new.layers[0].name
    if check:
        x = _random_inputs(new, formats[input_name], 64, seed=1)
        a = model.predict(x, verbose=0)
        b = new.predict(x, verbose=0)
        if not np.array_equal(a, b):
            raise TrigflowError(
                "the rewritten model (rank-3 QDense → QConv1D) differs from the original; "
                f"max |Δ| = {np.abs(a - b).max():g}"
            )
    overrides = {
        "input_type": prec[input_name]["result"],
        "layer_precisions": prec,
        "bit_exact": False,
        "warnings": notes,
    }
    return new, overrides


def hls_config_for(model, overrides: dict[str, Any], *, backend: str = "Vitis", reuse_factor: int = 1,
                   strategy: str = "Latency", parallelization_factor: int = 1) -> dict[str, Any]:
    """The full hls4ml config (granularity 'name') with every precision override applied.

    Per-item layers (edge / node MLPs: affine layers on rank-3 tensors, converted to pointwise Conv1D) get
    ``ParallelizationFactor = parallelization_factor`` (hls4ml snaps it to a divisor of the item count):
    1 = one multiplier set shared by all E edges (≈E cycles), E = fully parallel (E× the multipliers).
    Fixed 0/1 structure layers are always fully parallel: their products are constants (wires/adders).
    """
    import hls4ml

    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend,
                                                      default_reuse_factor=reuse_factor)
    config["Model"]["Strategy"] = strategy
    config["Model"]["ReuseFactor"] = reuse_factor
    for name, precisions in overrides["layer_precisions"].items():
        if name in config["LayerName"] or not name.endswith("_linear"):
            config["LayerName"].setdefault(name, {}).setdefault("Precision", {}).update(precisions)
    for layer in model.layers:
        if type(layer).__name__ in ("QConv1D", "Dense", "QDense") and len(layer.input_shape) == 3:
            width = int(layer.input_shape[1])
            pf = width if type(layer).__name__ == "Dense" else min(int(parallelization_factor), width)
            config["LayerName"][layer.name]["ParallelizationFactor"] = pf
    return config


def _check_converted(hls_model, keras_model, overrides: dict[str, Any]) -> None:
    """Every converted layer must carry the intended result type and exactly the quantized weights."""
    from hls4ml.model.types import FixedPrecisionType

    prec = overrides["layer_precisions"]
    for layer in hls_model.get_layers():
        want = prec.get(layer.name, {}).get("result")
        got = layer.get_output_variable().type.precision
        if want is not None and "fixed" in want:
            fx = _parse_fx(want)
            fmt = (getattr(got, "width", None), getattr(got, "integer", None), getattr(got, "signed", None))
            same = fmt == (fx.width, fx.integer, fx.signed)
            if same and "RND_CONV" in fx.mode:
                same = "RND_CONV" in str(got) and ",SAT" in str(got)
            if not same:
                raise TrigflowError(f"hls4ml changed the type of layer '{layer.name}': {got}, not {want}")
        if "weight" not in layer.weights:
            continue
        try:
            klayer = keras_model.get_layer(layer.name)
        except ValueError:
            continue
        if type(klayer).__name__ in ("QDense", "QConv1D"):
            kq = klayer.get_quantizers()[0]
            expected = np.asarray(kq(klayer.get_weights()[0].astype(np.float32)), np.float64)
        else:
            expected = klayer.get_weights()[0].astype(np.float64)
        got_w = np.asarray(layer.weights["weight"].data, np.float64)
        wt = layer.weights["weight"].type.precision
        if got_w.size != expected.size or not np.array_equal(got_w.ravel(), expected.ravel()):
            raise TrigflowError(f"layer '{layer.name}': hls4ml weights differ from the quantized weights")
        if isinstance(wt, FixedPrecisionType):
            scaled = got_w * 2.0**wt.fractional
            if not np.array_equal(scaled, np.round(scaled)):
                raise TrigflowError(f"layer '{layer.name}': weight type {wt} cannot hold the weights exactly")


def convert_gnn(
    model,
    output_dir: str | Path,
    *,
    backend: str = "Vitis",
    part: str = DEFAULT_PART,
    clock_period: float = 5,
    io_type: str = "io_parallel",
    reuse_factor: int = 1,
    strategy: str = "Latency",
    parallelization_factor: int = 1,
    project_name: str = "myproject",
    input_precision: str | None = None,
    compile: bool = True,
):
    """Convert a QKeras GNN (Interaction Network / DeepSets) into a bit-exact hls4ml project."""
    import hls4ml

    if io_type != "io_parallel":
        raise TrigflowError(f"GNN firmware is implemented for io_type='io_parallel' only, got {io_type!r}")
    prepared, overrides = prepare_gnn_for_hls(model, input_precision=input_precision)
    for text in overrides["warnings"]:
        warnings.warn(text, stacklevel=2)
    config = hls_config_for(prepared, overrides, backend=backend, reuse_factor=reuse_factor,
                            strategy=strategy, parallelization_factor=parallelization_factor)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            hls_model = hls4ml.converters.convert_from_keras_model(
                prepared, hls_config=config, output_dir=str(output_dir), project_name=project_name,
                backend=backend, part=part, clock_period=clock_period, io_type=io_type, bit_exact=False,
                write_weights_txt=False,
            )
    except TrigflowError:
        raise
    except Exception as exc:  # noqa: BLE001 - hls4ml raises bare Exceptions
        raise TrigflowError(f"hls4ml could not convert the GNN: {exc.__class__.__name__}: {exc}") from exc
    _check_converted(hls_model, prepared, overrides)
    if compile:
        with contextlib.redirect_stdout(log):
            hls_model.write()
            use_fast_build_flags(Path(hls_model.config.get_output_dir()))
            hls_model._compile()
    return hls_model


def _garnet_layers(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ in ("GarNet", "GarNetHLS")]


def garnet_for_hls(model):
    """``(model_for_hls, garnet_precisions, firmware_weights)`` for a ``build_garnet(quantized=True)`` model.

    Every ``GarNetHLS`` layer (the Keras mirror of ``nnet::garnet``) becomes hls4ml's own ``GarNet`` layer
    whose weights make hls4ml's conversion land exactly on the values the mirror computes with:
    FLR = [I | 0] with bias e_F (feature x → latent x, constant 1 → latent F), and Fout holding the
    contracted transform, Fout[a, x, o] = W[o, a, x], Fout[a, F, o] = B[o, a]. hls4ml contracts FLR·Fout
    back to exactly W and B (one non-zero product per sum), and W, B, the S kernel/bias and the Fout bias
    are on the 10-fractional-bit grid hls4ml stores them with, so its rounding (AP_RND) is a no-op and the
    printed weights are exact. ``garnet_precisions``: {layer: hls4ml Precision dict} from the layer's
    ``types``. The returned Keras model is only for hls4ml (its float GarNet is not the reference); compare
    the firmware with ``model`` itself.
    """
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet

    layers = _garnet_layers(model)
    if not layers:
        raise TrigflowError(f"model '{model.name}' has no GarNet layer; use convert_gnn")
    plain = [layer.name for layer in layers if type(layer).__name__ == "GarNet"]
    if plain:
        raise TrigflowError(
            f"layer(s) {plain} are hls4ml's float GarNet, which its firmware only approximates (LUT exp, "
            "12-bit distance, contracted 10-bit transforms); build the model with "
            "build_garnet(quantized=True) (GarNetHLS, the bit-exact mirror)"
        )

    def clone(layer):
        if type(layer).__name__ == "GarNetHLS":
            cfg = {k: v for k, v in layer.get_config().items() if k not in ("types",)}
            return GarNet.from_config(cfg)
        return layer.__class__.from_config(layer.get_config())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        new = tf.keras.models.clone_model(model, clone_function=clone)
    precisions: dict[str, dict[str, str]] = {}
    weights: dict[str, dict[str, np.ndarray]] = {}
    for old in model.layers:
        if type(old).__name__ != "GarNetHLS":
            if old.get_weights():
                new.get_layer(old.name).set_weights(old.get_weights())
            continue
        fw = old.firmware_weights()
        n_out, n_agg, n_in = fw["W"].shape
        n_prop = old._input_feature_transform.units
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
                raise TrigflowError(f"layer '{old.name}': a GarNet weight is not exact in float32")
        new.get_layer(old.name).set_weights([v.astype(np.float32) for v in values])
        t = old.types
        precisions[old.name] = {"edge_weight": t["edge_weight"], "edge_weight_aggr": t["edge_weight_aggr"],
                                "aggr": t["aggr"], "result": t["result"]}
        weights[old.name] = fw
    return new, precisions, weights


def _check_garnet(hls_model, precisions, weights, input_types: dict[str, str]) -> None:
    """hls4ml's GarNet must hold exactly the mirror's weights (on their types' grids) and get the mirror's
    input type; otherwise the C simulation would not compute what GarNetHLS computes."""
    from hls4ml.model.types import FixedPrecisionType

    expect_names = {"input_transform_weights": "W", "input_transform_biases": "B",
                    "aggregator_distance_weights": "S_kernel", "aggregator_distance_biases": "S_bias",
                    "output_transform_biases": "Fout_bias"}
    for name, fw in weights.items():
        layer = hls_model.graph[name]
        data_type = layer.get_input_variable(layer.inputs[0]).type.precision
        want = _parse_fx(input_types[name])
        if (data_type.width, data_type.integer, data_type.signed) != (want.width, want.integer, want.signed) \
                or "RND_CONV" not in str(data_type) or "SAT" not in str(data_type):
            raise TrigflowError(f"GarNet '{name}': input type {data_type}, the mirror assumes {want}")
        for hname, key in expect_names.items():
            var = layer.weights[hname]
            got = np.asarray(var.data, np.float64)
            ref = np.asarray(fw[key], np.float64)
            if key == "S_kernel":
                ref = ref.T
            if got.shape != ref.shape or not np.array_equal(got, ref):
                raise TrigflowError(f"GarNet '{name}': hls4ml's {hname} differ from the mirror's weights")
            wt = var.type.precision
            if not isinstance(wt, FixedPrecisionType):
                raise TrigflowError(f"GarNet '{name}': {hname} has type {wt}, expected a fixed-point type")
            fx = _parse_fx(f"{'' if wt.signed else 'u'}fixed<{wt.width},{wt.integer}>")
            scaled = got * 2.0**fx.frac
            if not np.array_equal(scaled, np.round(scaled)) or got.min() < fx.lo or got.max() > fx.hi:
                raise TrigflowError(f"GarNet '{name}': {hname} type {wt} does not hold the weights exactly")
        got_res = layer.get_output_variable().type.precision
        res = _parse_fx(precisions[name]["result"])
        if (got_res.width, got_res.integer, got_res.signed) != (res.width, res.integer, res.signed):
            raise TrigflowError(f"GarNet '{name}': hls4ml output type {got_res}, the mirror assumes {res}")


def prepare_garnet_for_hls(model):
    """``(model_for_hls, overrides, garnet_weights)``: ``garnet_for_hls`` plus exact types for every layer
    (``layer_precisions``: the GarNet layer gets the mirror's internal types, the rest as in
    ``convert_gnn``)."""
    ready, garnet_prec, weights = garnet_for_hls(model)
    results = {p["result"] for p in garnet_prec.values()}
    if len(results) != 1:
        raise TrigflowError("all GarNet layers of a model must have the same result type")
    _, prec, notes = _propagate(ready, None, garnet_result=results.pop())
    input_types = {}
    for name, p in garnet_prec.items():
        prec[name] = {**prec.get(name, {}), **p}
        layer = ready.get_layer(name)
        input_types[name] = prec[_inbound(layer)[0].name]["result"]
        data = model.get_layer(name).types["data"]
        if _parse_fx(input_types[name]) != _parse_fx(data):
            raise TrigflowError(f"GarNet '{name}' gets {input_types[name]} but mirrors data type {data}")
    overrides = {"input_type": None, "layer_precisions": prec, "warnings": notes, "bit_exact": False,
                 "garnet_input_types": input_types}
    return ready, overrides, weights


def convert_garnet(
    model,
    output_dir: str | Path,
    *,
    backend: str = "Vitis",
    part: str = DEFAULT_PART,
    clock_period: float = 5,
    io_type: str = "io_parallel",
    reuse_factor: int = 1,
    strategy: str = "Latency",
    project_name: str = "myproject",
    compile: bool = True,
):
    """Convert a ``build_garnet(quantized=True)`` model (GarNetHLS + QKeras) into a bit-exact hls4ml project:
    ``prepare_garnet_for_hls`` + conversion + ``check_garnet_conversion``. Predict with
    ``predict_csim(hls_model, [x, n_valid])``."""
    import hls4ml

    if io_type != "io_parallel":
        raise TrigflowError(f"GarNet firmware is implemented for io_type='io_parallel' only, got {io_type!r}")
    ready, overrides, weights = prepare_garnet_for_hls(model)
    config = hls_config_for(ready, overrides, backend=backend, reuse_factor=reuse_factor, strategy=strategy)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings(), python_bool_signedness():
            warnings.simplefilter("ignore")
            hls_model = hls4ml.converters.convert_from_keras_model(
                ready, hls_config=config, output_dir=str(output_dir), project_name=project_name,
                backend=backend, part=part, clock_period=clock_period, io_type=io_type, bit_exact=False,
                write_weights_txt=False,
            )
    except Exception as exc:  # noqa: BLE001 - hls4ml raises bare Exceptions
        raise TrigflowError(f"hls4ml could not convert the GarNet: {exc.__class__.__name__}: {exc}") from exc
    check_garnet_conversion(hls_model, ready, overrides, weights)
    if compile:
        with contextlib.redirect_stdout(log):
            hls_model.write()
            use_fast_build_flags(Path(hls_model.config.get_output_dir()))
            hls_model._compile()
    return hls_model


def check_garnet_conversion(hls_model, ready, overrides, weights) -> None:
    """Types and weights of the converted GarNet project are the ones the mirror computes with."""
    _check_converted(hls_model, ready, overrides)
    garnet_prec = {name: overrides["layer_precisions"][name] for name in weights}
    _check_garnet(hls_model, garnet_prec, weights, overrides["garnet_input_types"])


@contextlib.contextmanager
def python_bool_signedness():
    """hls4ml 1.3's GarNet layer stores ``signed = np.amin(data) < 0`` (a ``numpy.bool_``) in its weight
    types, which ``ModelGraph.save`` cannot serialise to JSON. For one conversion, wrap
    ``GarNet._add_variable`` so the types hold a Python bool; restored afterwards."""
    from hls4ml.model import layers

    real = layers.GarNet._add_variable

    def add_variable(self, name, var_name, data, frac_width=10, quantize=False):
        real(self, name, var_name, data, frac_width=frac_width, quantize=quantize)
        precision = self.weights[name].type.precision
        precision.signed = bool(precision.signed)

    layers.GarNet._add_variable = add_variable
    try:
        yield
    finally:
        layers.GarNet._add_variable = real


def predict_csim(hls_model, x) -> np.ndarray:
    """C-simulation outputs as float64 (no bit lost), one row per sample. ``x``: array or list of arrays."""
    if isinstance(x, (list, tuple)):
        x = [np.ascontiguousarray(a, dtype=np.float64) for a in x]
        n = len(x[0])
        with contextlib.redirect_stdout(io.StringIO()):
            y = hls_model.predict(x)
        return np.asarray(y, np.float64).reshape(n, -1)
    x = np.ascontiguousarray(x, dtype=np.float64)
    with contextlib.redirect_stdout(io.StringIO()):
        y = hls_model.predict(x)
    return np.asarray(y, np.float64).reshape(len(x), -1)
