"""Firmware layer: bit-exact hls4ml conversion of the graph networks in ``trigflow.models.gnn``.

The GNN path is the rewrite passes of ``trigflow.firmware.passes`` + exact types + the one converter
(``trigflow.firmware.convert.convert``) + a check of what hls4ml built, before the project is written.

``convert_graph_network(model, project_dir, spec, *, force=False, compile=True) -> (hls_model, overrides)``
    What ``trigflow run gnn`` runs (through ``trigflow.kinds.gnn``). ``model``: a QKeras Interaction Network /
    DeepSets (``prepare_gnn_for_hls``) or a two-input ``build_garnet(quantized=True)`` model
    (``prepare_garnet_for_hls``). ``spec`` gives backend, part, reuse and ``parallelization_factor`` (items
    per cycle of the per-edge / per-node MLPs); the input type, the per-layer types and ``bit_exact=False``
    come from the preparation. Only ``io_parallel``. Predict with ``firmware.csim.predict(hls_model, x)``
    (GarNet: ``[x, n_valid]``) and compare with the *original* model.

``prepare_gnn_for_hls(model, *, input_precision=None, check=True) -> (hls_ready_model, overrides)``
    ``model``: InputLayer, QActivation(quantized_bits|quantized_relu), QDense/QConv1D(kernel_size=1) with
    quantized_bits(alpha=1) weights, plain ``Dense`` layers whose fixed weights are exact small numbers (the
    0/1 gather/scatter matrices), Permute, Reshape, Flatten, Concatenate, GlobalAveragePooling1D. Not
    modified. Returns the model after ``DenseToPointwiseConv`` (numerically identical, checked on random
    inputs when ``check``) and::

        {"input_type": "fixed<W,I,RND_CONV,SAT>",        # hls4ml type of the model input
         "layer_precisions": {layer: {"result": ..., "accum": ..., "weight": ..., "bias": ...}},
         "layer_parallelization": {layer: items},          # fixed 0/1 structure layers: fully parallel
         "bit_exact": False,                               # do NOT enable hls4ml's bit_exact flow
         "warnings": [...]}                                # e.g. QKeras float32 itself not exact

    By default the input type is the input quantizer's own type (with its rounding and saturation), so the
    float→fixed conversion of the C-simulation *is* the QKeras input quantization.

``prepare_garnet_for_hls(model) -> (model_for_hls, overrides, garnet_weights)``
    ``GarNetWeights`` (hls4ml's GarNet with the mirror's weights on its grids) + the mirror's internal types +
    exact types elsewhere; ``overrides`` also holds ``garnet_input_types``.

Why the naive conversion is wrong (hls4ml 1.3): (1) the default input type ``fixed<16,6>`` truncates the
data before the input quantizer rounds it (double rounding); (2) hls4ml's ``ReplaceMultidimensionalDense
WithConv`` pass turns a Dense on an (N, F) tensor into a pointwise Conv1D but copies only the float
weights, dropping ``weight_quantizer``/``bias_quantizer`` — the firmware then uses the *unquantized*
weights truncated to the config's type; (3) ``GlobalPooling1D`` is not handled by precision inference and
falls back to the default ``fixed<16,6>``; (4) 'auto' types of the 0/1 structure layers multiply by
``fixed<16,6>`` weights (exact but 2-3x wider than needed).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.convert import FirmwareSpec, convert
from trigflow.firmware.hls4ml_patches import garnet_distance_typedef, garnet_widths
from trigflow.firmware.passes.dense_to_pointwise_conv import DenseToPointwiseConv
from trigflow.firmware.passes.exact_types import inbound, propagate
from trigflow.firmware.passes.garnet_weights import GarNetWeights
from trigflow.quantize.fixed import FixedType

__all__ = [
    "check_converted",
    "check_garnet_conversion",
    "convert_graph_network",
    "prepare_garnet_for_hls",
    "prepare_gnn_for_hls",
]


def _garnet_layers(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ in ("GarNet", "GarNetHLS")]


def _structure_parallelization(model) -> dict[str, int]:
    """Fixed 0/1 structure layers (plain Dense on an (items, features) tensor) are fully parallel: their
    products are constants (wires/adders)."""
    return {
        layer.name: int(layer.input_shape[1])
        for layer in model.layers
        if type(layer).__name__ == "Dense" and len(layer.input_shape) == 3
    }


def _random_inputs(model, t: FixedType, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    span = max(abs(t.lo), abs(t.hi))
    return rng.uniform(-1.25 * span, 1.25 * span, size=(n, *model.input_shape[1:])).astype(np.float32)


def prepare_gnn_for_hls(model, *, input_precision: str | None = None, check: bool = True):
    """``(hls_ready_model, overrides)``; see the module docstring."""
    if isinstance(model.input, (list, tuple)) and len(model.inputs) != 1:
        raise TrigflowError("prepare_gnn_for_hls handles single-input models; use prepare_garnet_for_hls")
    if not any(type(layer).__name__.startswith("Q") for layer in model.layers):
        raise TrigflowError(
            f"model '{model.name}' has no QKeras layers (float twin?); bit-exact firmware needs the QKeras "
            "model"
        )
    new, _ = DenseToPointwiseConv().apply(model)
    spans, prec, notes = propagate(new, input_precision)
    input_name = new.layers[0].name
    if check:
        x = _random_inputs(new, spans[input_name].type, 64, seed=1)
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
        "layer_parallelization": _structure_parallelization(new),
        "bit_exact": False,
        "warnings": notes,
    }
    return new, overrides


def prepare_garnet_for_hls(model):
    """``(model_for_hls, overrides, garnet_weights)``: ``GarNetWeights`` plus exact types for every layer (the
    GarNet layer gets the mirror's internal types, the rest as in ``prepare_gnn_for_hls``)."""
    layers = _garnet_layers(model)
    if not layers:
        raise TrigflowError(f"model '{model.name}' has no GarNet layer; use prepare_gnn_for_hls")
    plain = [layer.name for layer in layers if type(layer).__name__ == "GarNet"]
    if plain:
        raise TrigflowError(
            f"layer(s) {plain} are hls4ml's float GarNet, which its firmware only approximates (LUT exp, "
            "12-bit distance, contracted 10-bit transforms); build the model with "
            "build_garnet(quantized=True) (GarNetHLS, the bit-exact mirror)"
        )
    surgery = GarNetWeights()
    ready, _ = surgery.apply(model)
    results = {p["result"] for p in surgery.precisions.values()}
    if len(results) != 1:
        raise TrigflowError("all GarNet layers of a model must have the same result type")
    _, prec, notes = propagate(ready, None, garnet_result=results.pop())
    input_types = {}
    for name, p in surgery.precisions.items():
        prec[name] = {**prec.get(name, {}), **p}
        input_types[name] = prec[inbound(ready.get_layer(name))[0].name]["result"]
        data = model.get_layer(name).types["data"]
        if FixedType.parse(input_types[name]) != FixedType.parse(data):
            raise TrigflowError(f"GarNet '{name}' gets {input_types[name]} but mirrors data type {data}")
    overrides = {
        "input_type": None,
        "layer_precisions": prec,
        "layer_parallelization": _structure_parallelization(ready),
        "warnings": notes,
        "bit_exact": False,
        "garnet_input_types": input_types,
        "garnet_widths": surgery.widths,
    }
    return ready, overrides, surgery.weights


def convert_graph_network(
    model, project_dir: str | Path, spec: FirmwareSpec, *, force: bool = False, compile: bool = True
) -> tuple[Any, dict[str, Any]]:
    """The GNN firmware: passes + exact types + ``convert``; hls4ml's result is checked before writing."""
    if spec.io_type != "io_parallel":
        raise TrigflowError(
            f"gnn firmware is implemented for io_type=io_parallel only, got {spec.io_type}; "
            "use --set firmware.io_type=io_parallel"
        )
    if _garnet_layers(model):
        ready, overrides, weights = prepare_garnet_for_hls(model)

        def check(hls_model) -> None:
            check_garnet_conversion(hls_model, ready, overrides, weights)
    else:
        ready, overrides = prepare_gnn_for_hls(model)

        def check(hls_model) -> None:
            check_converted(hls_model, ready, overrides)

    fw_spec = dataclasses.replace(
        spec,
        input_type=overrides["input_type"],
        layer_precisions=overrides["layer_precisions"],
        layer_parallelization=overrides["layer_parallelization"],
        bit_exact=False,
    )
    with garnet_widths(overrides.get("garnet_widths", {})):  # the mirror's distance type and weight grid
        hls_model = convert(ready, project_dir, fw_spec, force=force, compile=compile, check=check)
    return hls_model, {**overrides, "converted_model": ready.name, "converted_input": ready.input_names[0]}


def _same_format(got, want: FixedType) -> bool:
    return (getattr(got, "width", None), getattr(got, "integer", None), getattr(got, "signed", None)) == (
        want.width, want.integer, want.signed
    )


def check_converted(hls_model, keras_model, overrides: dict[str, Any]) -> None:
    """Every converted layer must carry the intended result type and exactly the quantized weights."""
    from hls4ml.model.types import FixedPrecisionType

    prec = overrides["layer_precisions"]
    for layer in hls_model.get_layers():
        want = prec.get(layer.name, {}).get("result")
        got = layer.get_output_variable().type.precision
        if want is not None and "fixed" in want:
            t = FixedType.parse(want)
            same = _same_format(got, t)
            if same and t.rounding == "RND_CONV":
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


def check_garnet_conversion(hls_model, ready, overrides: dict[str, Any], weights) -> None:
    """Types and weights of the converted GarNet project are the ones the mirror computes with: hls4ml's
    GarNet must hold exactly the mirror's weights (on their types' grids) and get the mirror's input type;
    otherwise the C simulation would not compute what GarNetHLS computes."""
    from hls4ml.model.types import FixedPrecisionType

    check_converted(hls_model, ready, overrides)
    expect_names = {"input_transform_weights": "W", "input_transform_biases": "B",
                    "aggregator_distance_weights": "S_kernel", "aggregator_distance_biases": "S_bias",
                    "output_transform_biases": "Fout_bias"}
    for name, fw in weights.items():
        layer = hls_model.graph[name]
        data_type = layer.get_input_variable(layer.inputs[0]).type.precision
        want = FixedType.parse(overrides["garnet_input_types"][name])
        modes = "RND_CONV" in str(data_type) and "SAT" in str(data_type)
        if not _same_format(data_type, want) or not modes:
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
            if not FixedType(bool(wt.signed), int(wt.width), int(wt.integer)).holds(got):
                raise TrigflowError(f"GarNet '{name}': {hname} type {wt} does not hold the weights exactly")
        widths = overrides["garnet_widths"][name]
        config_cpp = layer.get_attr("config_cpp") or ""
        if garnet_distance_typedef(widths["distance"]) not in config_cpp:
            raise TrigflowError(
                f"GarNet '{name}': hls4ml's distance type is not the mirror's {widths['distance']}"
            )
        feature = FixedType.parse(widths["weighted_feature"]).ap
        if f"typedef {feature} weighted_feature_t;" not in config_cpp:
            raise TrigflowError(
                f"GarNet '{name}': hls4ml's data·edge-weight type is not the mirror's {feature}"
            )
        got_res = layer.get_output_variable().type.precision
        res = FixedType.parse(overrides["layer_precisions"][name]["result"])
        if not _same_format(got_res, res):
            raise TrigflowError(f"GarNet '{name}': hls4ml output type {got_res}, the mirror assumes {res}")
