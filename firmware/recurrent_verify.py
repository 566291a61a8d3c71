"""Firmware layer: ``trigflow verify`` of a user's QGRU/QLSTM model — proven through its firmware mirror, and
compared with the model itself.

hls4ml builds a QKeras ``QGRU``/``QLSTM`` as ``nnet::gru``/``nnet::lstm`` (io_parallel), whose sigmoid and tanh
are **lookup tables**; the user's model computes them in float (``'tanh'``/``'sigmoid'``, or QKeras
``quantized_tanh``/``quantized_sigmoid`` with ``use_real_*``, whose rounding hls4ml never applies). No
configuration makes that firmware equal to the model bit for bit. So a verification of such a model has two
parts, both in the report:

1. **Bits**: the firmware against the *mirror* of the user's model (``passes.recurrent_mirror``: the same
   layers and weights, the recurrent layer computing hls4ml's arithmetic and tables, as ``trigflow run rnn``
   does), held to the usual bit-exact threshold. The firmware is converted from the plain QGRU/QLSTM twin of
   the mirror (``passes.recurrent_plain``) with the mirror's types written into the project and checked after
   conversion; every baked Dense/Conv gets a weight type that holds its weights exactly.
2. **The user's model**: firmware, model and mirror side by side — accuracy on labelled data, argmax
   agreement, max |Δ| on the logits, how many samples differ — in the report's ``recurrent`` section, in the
   ``bit_exact`` detail, and on the verdict line (``verdict_note``), naming the layer. ``accuracy`` and
   ``argmax_agreement`` keep their meaning: ``model_on_raw_data`` is the user's own model there.

``mirror_recurrent(dep) -> (dep, RecurrentCheck | None)`` (None: no recurrent layer, or a float model, which is
verified as any float model; nothing changes);
``RecurrentCheck.update(sections, options, hls_model, outputs, x_raw, labels)`` after the C-simulation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

__all__ = ["RecurrentCheck", "mirror_recurrent"]

KERNEL_LAYERS = ("Dense", "Conv1D", "Conv2D")
PLAIN = {"QGRU": "GRU", "QLSTM": "LSTM"}


@dataclass
class RecurrentCheck:
    """What ``mirror_recurrent`` changed: the recurrent layers (name → class), their mirror types, and the
    user's own model up to its logits (float sigmoid/tanh), which the report compares with the firmware."""

    layers: dict[str, str]
    types: dict[str, Any]  # name -> RecurrentTypes
    user_reference: Any

    def describe_layers(self) -> str:
        return ", ".join(f"'{name}' ({kind})" for name, kind in self.layers.items())

    def check_types(self, hls_model) -> None:
        """hls4ml must hold exactly the mirror's accum/table/result types (else the proof would be void)."""
        from trigflow.quantize.fixed import FixedType

        nodes = {node.name: node for node in hls_model.get_layers()}
        for name, types in self.types.items():
            node = nodes.get(name)
            if node is None:
                raise TrigflowError(f"hls4ml dropped the recurrent layer '{name}'; it cannot be proven")
            for key in ("accum", "table", "result"):
                got = FixedType.from_hls(node.get_attr(f"{key}_t").precision)
                if got != types.fixed(key):
                    raise TrigflowError(
                        f"hls4ml gave recurrent layer '{name}' {key}_t={got}, its mirror computes with "
                        f"{types.fixed(key)}; remove that layer's {key} type from --config LayerName"
                    )

    def update(
        self,
        sections: dict[str, Any],
        options: dict[str, Any],
        hls_model,
        outputs: dict[str, np.ndarray],
        x_raw: np.ndarray,
        labels: np.ndarray | None,
    ) -> None:
        """The user's model beside firmware and mirror (``recurrent`` section, accuracy, argmax agreement,
        the bit_exact detail, the verdict line)."""
        from trigflow.proof.reference import exact_predict

        self.check_types(hls_model)
        n = len(x_raw)
        firmware = outputs["firmware"].reshape(n, -1)
        mirror = outputs["reference"].reshape(n, -1)
        model_raw = exact_predict(self.user_reference, np.asarray(x_raw, np.float32)).reshape(n, -1)
        differ = np.any(firmware != model_raw, axis=1)
        fw_class, model_class = _argmax(firmware), _argmax(model_raw)
        agreement = float(np.mean(fw_class == model_class)) if n else 0.0
        max_diff = float(np.max(np.abs(firmware - model_raw), initial=0.0))
        types = {name: t.to_dict() for name, t in self.types.items()}
        section: dict[str, Any] = {
            "layers": dict(self.layers),
            "activations": "lookup tables (hls4ml nnet::gru/lstm: sigmoid over [-8, 8), tanh over [-4, 4), "
            "table_size entries of table_t), not the model's float sigmoid/tanh",
            "types": types,
            "bit_exact_against": "the mirror of the model (same weights, the firmware's tables and types)",
            "firmware_bit_exact_fraction_vs_mirror": sections["bit_exact_fraction"],
            "samples": int(n),
            "firmware_vs_model": {
                "argmax_agreement": agreement,
                "max_abs_diff_logits": max_diff,
                "differing_samples": int(differ.sum()),
                "argmax_differing_samples": int(np.sum(fw_class != model_class)),
            },
            "mirror_vs_model_max_abs_diff_logits": float(np.max(np.abs(mirror - model_raw), initial=0.0)),
            "accuracy": None,
        }
        accuracy_note = ""
        if labels is not None:
            y = labels.reshape(n)
            acc = {
                "firmware": float(np.mean(fw_class == y)),
                "model": float(np.mean(model_class == y)),
                "mirror": float(np.mean(_argmax(mirror) == y)),
            }
            section["accuracy"] = acc
            accuracy_note = (
                f"; accuracy firmware {acc['firmware']:.4f} / model {acc['model']:.4f} / mirror "
                f"{acc['mirror']:.4f}"
            )
            if isinstance(sections.get("accuracy"), dict):
                sections["accuracy"]["model_on_raw_data"] = acc["model"]
                sections["accuracy"]["mirror"] = acc["mirror"]
        raw = sections.get("model_on_raw_data")
        if isinstance(raw, dict):  # the lossless check stays on the mirror (the input grid); the figures name
            raw["reference_is_mirror_of"] = self.describe_layers()  # the user's model
            if section["accuracy"] is not None:
                raw["accuracy"] = section["accuracy"]["model"]
        if isinstance(sections.get("argmax_agreement"), dict):
            sections["argmax_agreement"]["firmware_vs_model_on_raw_data"] = agreement
            sections["argmax_agreement"]["firmware_vs_mirror"] = sections["argmax_agreement"].pop(
                "firmware_vs_reference", None
            )
        sections["recurrent"] = section
        note = (
            f"recurrent layer {self.describe_layers()}: sigmoid/tanh are hls4ml lookup tables, bits proven "
            f"against the model's mirror; firmware vs your model: argmax agreement {agreement:.4f}, "
            f"{int(differ.sum()):,} of {n:,} samples' logits differ (max |Δ| {max_diff:.3g})"
            f"{accuracy_note}"
        )
        sections["verdict_note"] = "; ".join(p for p in (note, sections.get("verdict_note")) if p)
        options["versus"] = (
            f"{options.get('versus', '')} (vs the mirror of recurrent layer {self.describe_layers()}: hls4ml's "
            "sigmoid/tanh tables; vs the model itself see the recurrent section)"
        )
        configuration = sections.get("configuration")
        if isinstance(configuration, dict) and isinstance(configuration.get("conversion"), dict):
            configuration["conversion"]["path"] = "recurrent_mirror"
            configuration["conversion"]["passes"] = ["RecurrentMirror", "RecurrentPlain"]


def _argmax(values: np.ndarray) -> np.ndarray:
    return (values[:, 0] > 0).astype(int) if values.shape[1] == 1 else np.argmax(values, axis=1)


def mirror_recurrent(dep) -> tuple[Any, RecurrentCheck | None]:
    """``dep`` (an ``autoconfig.Deployment``) with every QGRU/QLSTM proven through its mirror (see the module
    docstring); a recurrent layer or option the mirror does not cover gets a one-line refusal naming it."""
    from trigflow.firmware.passes.recurrent_mirror import RECURRENT, RecurrentMirror, check_recurrent

    found = [layer for layer in dep.reference.layers if type(layer).__name__ in RECURRENT]
    for layer in found:  # no SimpleRNN template in hls4ml's Vivado/Vitis backend, float model or not
        if "SimpleRNN" in type(layer).__name__ and dep.spec.backend in ("Vivado", "Vitis"):
            check_recurrent(layer)
    if not found or not dep.quantized:  # a float model: profiled types and float_agreement, as any float model
        return dep, None
    archs = {layer.name: check_recurrent(layer) for layer in found}  # one line per unsupported option
    where = ", ".join(f"'{layer.name}' ({type(layer).__name__})" for layer in found)
    if dep.spec.io_type != "io_parallel":
        raise TrigflowError(
            f"recurrent layer {where}: io_type={dep.spec.io_type} is not proven (the mirror is hls4ml's "
            "io_parallel nnet::gru/lstm); use io_type=io_parallel"
        )
    if "lstm" in archs.values():
        _check_lstm_input(dep.model, [name for name, arch in archs.items() if arch == "lstm"])
    from trigflow.firmware.passes.recurrent_plain import RecurrentPlain

    mirror_pass = RecurrentMirror(_gru_types(dep, [name for name, arch in archs.items() if arch == "gru"]))
    reference, _ = mirror_pass.apply(dep.reference)
    mirror_deploy, _ = mirror_pass.apply(dep.model)
    plain_pass = RecurrentPlain()
    deploy, _ = plain_pass.apply(mirror_deploy)
    precisions = {**dep.spec.layer_precisions, **_exact_weight_types(deploy), **plain_pass.precisions}
    spec = dataclasses.replace(dep.spec, bit_exact=False, layer_precisions=precisions)
    types = {name: reference.get_layer(name).hls_types for name in archs}
    note = (
        f"recurrent layer {where}: hls4ml computes sigmoid/tanh as lookup tables, so the bits are proven "
        "against the model's mirror (same weights, the firmware's tables and accum/table/result types "
        + ", ".join(f"{t.accum}/{t.table}/{t.result}" for t in types.values())
        + "); the model itself is compared in the recurrent section"
    )
    changed = dataclasses.replace(
        dep, reference=reference, model=deploy, spec=spec, float_model=_float_twin(dep.float_model),
        notes=[*dep.notes, note],
    )
    check = RecurrentCheck({layer.name: type(layer).__name__ for layer in found}, types, dep.reference)
    return changed, check


def _check_lstm_input(model, names: list[str]) -> None:
    """``nnet::lstm`` reads its input as its result type (the mirror's LSTM: result = accum =
    ``fixed<16,6,RND,SAT>``): ``RecurrentPlain`` gives the layer feeding it that result type, which is exact only
    when that layer is a ``quantized_bits`` quantizer whose grid the result type holds."""
    from trigflow.models.rnn import RecurrentTypes
    from trigflow.quantize.fixed import FixedType

    result = FixedType.parse(RecurrentTypes().result)
    for name in names:
        source = model.get_layer(name).inbound_nodes[0].inbound_layers
        quantizer = getattr(source, "quantizer", None)
        grid = None
        if type(source).__name__ == "QActivation" and type(quantizer).__name__ == "quantized_bits":
            try:
                grid = FixedType.from_quantizer(quantizer, source.name)
            except TrigflowError:
                grid = None
        if grid is None or grid.frac > result.frac or grid.integer > result.integer:
            raise TrigflowError(
                f"recurrent layer '{name}' (QLSTM): hls4ml's nnet::lstm reads its input as its result type "
                f"{result}, so its input must come from a quantized_bits QActivation with ≤ {result.frac} "
                f"fractional and ≤ {result.integer - 1} integer bits (got {grid or type(source).__name__}); "
                "quantize the LSTM's input so"
            )


MAX_ACCUM_WIDTH = 52  # the mirror computes in float64: every accum_t value must be exact there


def _gru_types(dep, names: list[str]) -> dict[str, Any]:
    """Per GRU: ``accum_t`` wide enough that no gate sum wraps and every product is exact, for any input on
    the layer's input grid (a ``quantized_bits`` QActivation, or the input type chosen for the data): integer
    bits for max Σ|x|·|W| + Σ|U| + |b| (the state stays in [-1, 1]), fractional bits of the products; at least
    the default ``fixed<32,10>``. Without a known input grid (or wider than the float64 mirror holds), the
    default."""
    from trigflow.firmware.passes.recurrent_mirror import RecurrentMirror
    from trigflow.models.rnn import RecurrentTypes
    from trigflow.quantize.fixed import FixedType, grid_frac_bits

    default = RecurrentTypes()
    if not names:
        return {}
    mirror, _ = RecurrentMirror().apply(dep.reference)  # the firmware weights (on their quantizers' grids)
    acc, result = default.fixed("accum"), default.fixed("result")
    out = {}
    for name in names:
        grid = _input_grid(dep, name)
        if grid is None:
            continue
        kernel, recurrent, bias = (np.asarray(w, np.float64) for w in mirror.get_layer(name).firmware_weights())
        x_max = max(abs(grid.lo), abs(grid.hi))
        bound = x_max * np.abs(kernel).sum(0) + np.abs(recurrent).sum(0) + np.abs(bias).sum(0)
        integer = FixedType.covering(-float(bound.max()), float(bound.max()), 0).integer
        fracs = [grid_frac_bits(w, 0, 40) for w in (kernel, recurrent, bias)]
        if None in fracs:
            continue
        frac = max(acc.frac, grid.frac + fracs[0], result.frac + fracs[1], fracs[2])
        integer = max(acc.integer, integer)
        if integer + frac <= MAX_ACCUM_WIDTH:
            out[name] = dataclasses.replace(default, accum=f"fixed<{integer + frac},{integer}>")
    return out


def _input_grid(dep, name: str):
    """The fixed-point type of what enters recurrent layer ``name`` (None when not known)."""
    from trigflow.firmware.autoconfig import input_format_of

    source = dep.reference.get_layer(name).inbound_nodes[0].inbound_layers
    if type(source).__name__ == "QActivation":
        fmt = input_format_of(getattr(source, "quantizer", None), source.name)
        return fmt.type if fmt else None
    if type(source).__name__ == "InputLayer" and dep.input_format is not None:
        return dep.input_format.type
    return None


def _exact_weight_types(model) -> dict[str, dict[str, str]]:
    """A weight/bias type holding each baked Dense/Conv's values exactly (hls4ml's default fixed<16,6> would
    round finer weights); accumulators and results stay hls4ml's (inferred from these)."""
    from trigflow.quantize.fixed import FixedType, grid_frac_bits

    out: dict[str, dict[str, str]] = {}
    for layer in model.layers:
        if type(layer).__name__ not in KERNEL_LAYERS:
            continue
        types = {}
        for key, w in zip(("weight", "bias"), layer.get_weights()):
            w = np.asarray(w, np.float64)
            frac = grid_frac_bits(w, 0, 40)
            if frac is None:
                raise TrigflowError(
                    f"layer '{layer.name}' after a recurrent layer has {key}s on no fixed-point grid of ≤ 40 "
                    "fractional bits; quantize it (QDense with quantized_bits)"
                )
            t = FixedType.covering(min(float(w.min(initial=0.0)), 0.0), float(w.max(initial=0.0)), frac,
                                   signed=True)
            types[key] = str(t)
        out[layer.name] = types
    return out


def _float_twin(model):
    """The float twin with the recurrent layers as Keras GRU/LSTM (float weights, float sigmoid/tanh)."""
    import tensorflow as tf

    from trigflow.firmware.loaders import custom_objects

    if not any(type(layer).__name__ in PLAIN for layer in model.layers):
        return model

    def clone(layer):
        kind = type(layer).__name__
        config = layer.get_config()
        if kind in PLAIN:
            plain = {k: v for k, v in config.items() if "quantizer" not in k and not k.endswith("_range")}
            plain.update(activation="tanh", recurrent_activation="sigmoid")
            return getattr(tf.keras.layers, PLAIN[kind]).from_config(plain)
        return layer.__class__.from_config(config)

    with tf.keras.utils.custom_object_scope(custom_objects()):
        twin = tf.keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
