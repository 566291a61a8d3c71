"""Proof layer: where firmware and Keras part ways — the first layer whose C-simulation output differs.

``localize(dep, x)`` builds a scratch copy of the firmware with hls4ml's trace enabled on every layer
(the delivered project is left untouched), runs it on ``x`` (give it the mismatching samples), and compares
each traced layer with the output of the same layer of the Keras model that went to firmware. A layer
hls4ml removed or fused (an absorbed input quantizer, a merged linear activation, a dropped Dropout)
has no trace of its own: a firmware layer is compared with the *last* Keras layer of the chain it stands for.

Keras computes in float32, the firmware in exact fixed point: a wide accumulator may differ from Keras by
float32 rounding without anything being wrong, so a layer "differs" when some value is off by more than
``1e-6 × (1 + |value|)``; exact equality is reported too. The first differing layer is named with its
fixed-point type, max |Δ| there, whether its values overflow the type, and a concrete suggested fix.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from trigflow.quantize.fixed import FixedType

RTOL = 1e-6


def _absorbable(layer) -> bool:
    """Layers hls4ml may remove by folding them into the layer before, keeping that layer's name: a linear
    activation or ``quantized_bits`` quantizer (merged into the output type), a normalisation (fused into
    the weights), Dropout (dropped)."""
    kind = layer.__class__.__name__
    if kind in ("Dropout", "GaussianNoise", "GaussianDropout", "BatchNormalization", "QBatchNormalization"):
        return True
    if kind == "Activation":
        return str(layer.get_config().get("activation")) == "linear"
    if kind == "QActivation":
        quantizer = getattr(layer, "quantizer", None)
        return (
            quantizer.__class__.__name__ == "quantized_bits"
            or layer.get_config().get("activation") == "linear"
        )
    return False


def keras_counterparts(hls_names: list[str], keras_model) -> dict[str, str]:
    """Firmware layer name → the Keras layer whose output it holds.

    A firmware layer stands for its namesake, followed by the layers hls4ml folded into it (see
    ``_absorbable``). hls4ml's ``bnbt_<bn>`` (a BatchNormalization merged with the binary/ternary activation
    after it) stands for that activation.
    """
    from trigflow.firmware.autoconfig import graph_of

    input_name, nodes = graph_of(keras_model)
    layers = {n.layer.name: n.layer for n in nodes}
    inbound = {n.layer.name: n.inbound for n in nodes}
    consumers: dict[str, list[str]] = {input_name: []}
    for n in nodes:
        consumers.setdefault(n.layer.name, [])
        for src in n.inbound:
            consumers.setdefault(src, []).append(n.layer.name)
    present = set(hls_names)
    mapping = {}
    for name in hls_names:
        bn = name[len("bnbt_") :] if name.startswith("bnbt_") else None
        if bn is not None and bn.endswith("_scale") and bn[: -len("_scale")] in layers:
            mapping[name] = bn[: -len("_scale")]  # hls4ml's own scale in front of a ternary activation
            present.add(mapping[name])
        elif bn in consumers and len(consumers[bn]) == 1:
            mapping[name] = consumers[bn][0]
            present |= {bn, consumers[bn][0]}
        if name in mapping:  # the normalisations it merged are its own, not the layer before it
            back = inbound.get(mapping[name], [])
            while (
                len(back) == 1
                and back[0] in layers
                and "BatchNormalization" in type(layers[back[0]]).__name__
            ):
                present.add(back[0])
                back = inbound.get(back[0], [])
    for name in hls_names:
        if name not in consumers or name in mapping:
            continue
        target = name
        while len(consumers.get(target, [])) == 1:
            nxt = consumers[target][0]
            if nxt in present or len(inbound[nxt]) != 1 or not _absorbable(layers[nxt]):
                break
            target = nxt
        mapping[name] = target
    return mapping


def trace_firmware(
    dep, x: np.ndarray, workdir: str | Path | None = None
) -> tuple[dict[str, np.ndarray], Any]:
    """Per-layer C-simulation outputs of a scratch copy of ``dep``'s firmware (deleted afterwards)."""
    from trigflow.firmware.autoconfig import _quiet, build_firmware

    root = Path(tempfile.mkdtemp(prefix="trigflow-trace-", dir=workdir))
    try:
        hls_model = build_firmware(dep, root / "project", force=True, compile=False)
        for layer in hls_model.get_layers():
            layer.set_attr("trace", True)
        with _quiet():
            _, traces = hls_model.trace(np.ascontiguousarray(x, dtype=np.float64))
        return {k: np.asarray(v) for k, v in traces.items()}, hls_model
    finally:
        shutil.rmtree(root, ignore_errors=True)


def localize(
    dep, x: np.ndarray, *, workdir: str | Path | None = None, max_samples: int = 100
) -> dict[str, Any]:
    """Compare every traced firmware layer with Keras on ``x``; name the first that differs and a fix."""
    from trigflow.firmware.autoconfig import layer_values

    x = np.asarray(x[:max_samples], np.float32)
    traces, hls_model = trace_firmware(dep, x, workdir)
    keras_values = layer_values(dep.model, x)
    hls_layers = list(hls_model.get_layers())
    mapping = keras_counterparts([layer.name for layer in hls_layers], dep.model)
    rows, first = [], None
    for layer in hls_layers:
        if layer.name not in traces or layer.name not in mapping:
            continue
        ref = keras_values[mapping[layer.name]].reshape(len(x), -1).astype(np.float64)
        fw = traces[layer.name].reshape(len(x), -1).astype(np.float64)
        if ref.shape != fw.shape:
            continue
        delta = np.abs(fw - ref)
        off = delta > RTOL * (1.0 + np.abs(ref))
        precision = layer.get_output_variable().type.precision
        t = FixedType.from_hls(precision)
        outside = int(np.sum((ref < t.lo) | (ref > t.hi))) if t else 0
        row = {
            "layer": layer.name,
            "keras_layer": mapping[layer.name],
            "class": layer.class_name,
            "precision": str(precision),
            "max_abs_diff": float(delta.max(initial=0.0)),
            "exact": bool(np.all(delta == 0)),
            "differs": bool(off.any()),
            "differing_fraction": float(off.mean()) if off.size else 0.0,
            "values_outside_type": outside,
        }
        rows.append(row)
        if first is None and row["differs"]:
            first = row
            row["suggestion"] = suggest(layer, precision, ref, t, dep)
    result: dict[str, Any] = {"compared_samples": int(len(x)), "layers": rows}
    if first is None:
        result.update(
            first_differing_layer=None,
            summary="every traced layer agrees with Keras within float32 rounding on these samples",
        )
        return result
    result.update(
        first_differing_layer=first["layer"],
        keras_layer=first["keras_layer"],
        precision=first["precision"],
        max_abs_diff=first["max_abs_diff"],
        suggestion=first["suggestion"],
        summary=(
            f"first differing layer: '{first['layer']}' ({first['class']}, {first['precision']}), "
            f"max |Δ| {first['max_abs_diff']:.3g}; {first['suggestion']}"
        ),
    )
    return result


def suggest(layer, precision, ref: np.ndarray, t: FixedType | None, dep) -> str:
    """A concrete fix for the first differing layer (``t``: its type, None when not fixed-point)."""
    name = layer.name
    overridden = name in getattr(dep, "overrides", {})
    if layer.class_name == "Input":
        return (
            f"the input type {precision} does not hold the inputs as the input quantizer rounds them; use "
            "the "
            "quantizer's own format (RND_CONV,SAT), or put the data on the input grid"
        )
    if layer.class_name in ("Softmax",) or getattr(layer, "get_attr", lambda *_: None)("activation") in (
        "softmax",
        "sigmoid",
        "tanh",
    ):
        return "a lookup table in firmware; compare the logits before it (trigflow verify does)"
    if name.startswith("bnbt_"):
        return (
            "hls4ml turned this binary/ternary activation (with the normalisation or scale before it) into "
            "a threshold layer that does not round like QKeras; put a quantized_bits QActivation before "
            "the activation, or fold the normalisation into the layer before it"
        )
    exact = FixedType.exact(ref)
    if t is not None and (ref.min() < t.lo or ref.max() > t.hi):
        need = FixedType.covering(ref.min(), ref.max(), t.frac, signed=t.signed or bool(np.any(ref < 0)))
        fix = (
            f"values overflow {precision} (need {need.integer} integer bits, it has {t.integer}): set "
            f"layer_precisions['{name}']['result'] = '{exact or need}'"
        )
    else:
        fix = (
            f"rounding/truncation in {precision} loses bits Keras keeps: set "
            f"layer_precisions['{name}']['result'] = '{exact or 'a type with more fractional bits'}'"
        )
    if overridden:
        fix += f" — or drop the override {dep.overrides[name]} and let the bit-exact flow choose"
    return fix
