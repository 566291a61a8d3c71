"""Proof layer: overflow and saturation — values outside the range of each layer's fixed-point type.

For every firmware layer, the values the layer should hold (the Keras model that went to firmware, on the
data) are compared with the representable range of the layer's result type:

* ``overflows``: values outside the range — the firmware wraps or clips them where Keras does not. Each is a
  warning naming the layer and the integer bits the type would need.
* ``saturated``: for layers that clip by design (a quantizer's ``SAT`` type, the input type), how many of
  their *incoming* values were clipped — QKeras clips the same way, so this is information, not an error.
  The input type's row counts the *raw* data (``raw_x``) outside it: a grid the engine chose that clips the
  user's data shows there. Each saturation is one line in ``saturations``; ``saturation_summary`` is the
  short form the verdict line carries.

``plot_ranges`` draws the profiling plot: per layer, the observed |values| (box: quartiles, whiskers: min
and max, log2 scale) on the grey band a type represents (from its LSB to its maximum); red = overflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from trigflow.proof.localize import keras_counterparts
from trigflow.quantize.fixed import FixedType


def _log2_stats(v: np.ndarray) -> dict[str, float] | None:
    a = np.abs(v[v != 0])
    if a.size == 0:
        return None
    q = np.log2(np.percentile(a, [0, 25, 50, 75, 100], overwrite_input=True))  # ``a`` is a copy already
    return dict(zip(("whislo", "q1", "med", "q3", "whishi"), map(float, q), strict=True))


def overflow_report(
    dep, hls_model, x: np.ndarray, *, raw_x: np.ndarray | None = None, max_samples: int = 20000
) -> dict[str, Any]:
    """Per firmware layer: its type, observed range, overflows (and saturations), integer bits needed.

    ``raw_x``: the data as the user gave them (``x`` may be on the input grid already): the input layer's
    saturations count the raw values outside the input type, so a grid that clips the data shows here."""
    from trigflow.firmware.autoconfig import graph_of, layer_values

    x = np.asarray(x[:max_samples], np.float32)
    raw = x if raw_x is None else np.asarray(raw_x[:max_samples], np.float32)
    values = layer_values(dep.model, x)
    input_name, nodes = graph_of(dep.model)
    inbound = {n.layer.name: n.inbound for n in nodes}
    hls_layers = list(hls_model.get_layers())
    mapping = keras_counterparts([layer.name for layer in hls_layers], dep.model)
    rows, warnings, saturations = [], [], []
    for layer in hls_layers:
        precision = layer.get_output_variable().type.precision
        t = FixedType.from_hls(precision)
        if t is None or layer.name not in mapping:
            continue
        ref = values[mapping[layer.name]].astype(np.float64)
        lo, hi, signed = t.lo, t.hi, t.signed
        outside = (ref < lo) | (ref > hi)
        row: dict[str, Any] = {
            "layer": layer.name,
            "class": layer.class_name,
            "type": str(precision),
            "representable": [lo, hi],
            "lsb": t.lsb,
            "observed": [float(ref.min()), float(ref.max())] if ref.size else [0.0, 0.0],
            "values": int(ref.size),
            "overflows": int(outside.sum()),
            "overflow_fraction": float(outside.mean()) if ref.size else 0.0,
            "integer_bits": t.integer,
            "integer_bits_needed": _integer_bits_needed(ref, t),
            "log2_abs": _log2_stats(ref.ravel()),
        }
        incoming = _incoming(layer, mapping, inbound, values, raw, input_name)
        if incoming is not None and "SAT" in str(getattr(precision, "saturation_mode", "")):
            # an unsigned activation (relu) maps negatives to 0 by its function: only the top end clips
            below = (
                incoming < lo if (signed or layer.class_name == "Input") else np.zeros(incoming.shape, bool)
            )
            clipped = below | (incoming > hi)
            row["saturated"] = int(clipped.sum())
            row["saturated_fraction"] = float(clipped.mean()) if clipped.size else 0.0
        if layer.class_name == "Input":  # the input type clips whatever the data hold beyond it
            row["saturated_samples"] = int(np.sum(np.any(clipped.reshape(len(raw), -1), axis=1)))
            row["observed_raw"] = [float(raw.min(initial=0.0)), float(raw.max(initial=0.0))]
        rows.append(row)
        if row.get("saturated"):
            where = "at the input" if layer.class_name == "Input" else f"at layer '{layer.name}'"
            saturations.append(
                f"saturation {where}: {row['saturated']:,} of {incoming.size:,} values "
                f"({100 * row['saturated_fraction']:.2g} %) clipped to {precision} [{lo:g}, {hi:g}]"
            )
        if row["overflows"]:
            warnings.append(
                f"overflow in layer '{layer.name}': {row['overflows']} of {row['values']} values "
                f"({100 * row['overflow_fraction']:.2g} %) outside {precision} [{lo:g}, {hi:g}] "
                f"(observed [{row['observed'][0]:.4g}, {row['observed'][1]:.4g}]); "
                f"needs {row['integer_bits_needed']} integer bits, has {row['integer_bits']}"
            )
    return {
        "samples": int(len(x)),
        "layers": rows,
        "warnings": warnings,
        "total_overflows": int(sum(r["overflows"] for r in rows)),
        "total_saturations": int(sum(r.get("saturated", 0) for r in rows)),
        "saturations": saturations,
    }


def saturation_summary(report: dict[str, Any]) -> str:
    """One line naming every saturation and overflow (empty when there is none), for the verdict line."""
    parts = [
        f"{'input' if r['class'] == 'Input' else r['layer']} {r['saturated']:,} clipped"
        for r in report["layers"]
        if r.get("saturated")
    ]
    parts += [f"{r['layer']} {r['overflows']:,} overflow" for r in report["layers"] if r["overflows"]]
    return f"saturation: {', '.join(parts)} (of {report['samples']:,} samples)" if parts else ""


def _integer_bits_needed(values: np.ndarray, t: FixedType) -> int:
    """Integer bits (sign included) a type with the fractional bits of ``t`` needs to hold ``values``."""
    if values.size == 0:
        return t.integer
    signed = t.signed or bool(np.any(values < 0))
    return FixedType.covering(values.min(), values.max(), t.frac, signed=signed).integer


def _incoming(layer, mapping, inbound, values, x, input_name) -> np.ndarray | None:
    """Values entering a clipping layer: the raw data for the input, the previous layer for an activation."""
    if layer.class_name == "Input":
        return np.asarray(x, np.float64)
    if layer.class_name not in ("Activation", "QActivation"):
        return None
    sources = inbound.get(mapping[layer.name], [])
    if len(sources) != 1 or sources[0] == input_name or sources[0] not in values:
        return None
    return values[sources[0]].astype(np.float64)


def plot_ranges(report: dict[str, Any], path: str | Path) -> Path:
    """Profiling plot: observed |values| per layer on the range each layer's type represents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["layers"]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    stats, positions = [], []
    for k, row in enumerate(rows):
        y = len(rows) - k
        lo, hi = row["representable"]
        top = np.log2(max(abs(lo), abs(hi), row["lsb"]))
        bottom = np.log2(row["lsb"])
        color = "#f4a6a6" if row["overflows"] else "#d9d9d9"
        ax.barh(y, top - bottom, left=bottom, height=0.8, color=color, zorder=1)
        if row["log2_abs"] is not None:
            stats.append({**row["log2_abs"], "label": row["layer"]})
            positions.append(y)
    if stats:
        ax.bxp(stats, positions=positions, vert=False, showfliers=False, widths=0.5, zorder=2)
    ax.set_yticks([len(rows) - k for k in range(len(rows))])
    ax.set_yticklabels([f"{r['layer']}  {r['type']}" for r in rows], fontsize=7)
    ax.set_xlabel("log2 |value|   (grey: LSB … max of the layer's type; red: overflow)")
    ax.set_title(f"per-layer values vs fixed-point range ({report['samples']} samples)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
