"""Proof layer: the proof section of a report, its thresholds and verdicts, and the versions that made it.

``prove`` turns the outputs of every implementation (firmware, exact reference, QKeras, float, ONNX) into the
proof keys; ``check_thresholds`` gives each criterion its verdict and one-line detail, the same for every
starting point (a kind's run, a user model, an ONNX file): ``bit_exact`` (or ``float_agreement`` for a
float model, which has no bit-exact reference), ``samples`` and ``onnx_parity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Thresholds",
    "FLOAT_LAYER_FLOOR",
    "check_lossless",
    "check_thresholds",
    "evaluate_classifier",
    "failures_of",
    "float_scale",
    "prove",
    "versions",
]


@dataclass(frozen=True)
class Thresholds:
    """What a proof must reach; ``max_float_rel_diff`` only matters for float models."""

    min_samples: int
    min_bit_exact_fraction: float = 1.0
    max_onnx_abs_diff: float = 1e-5
    max_float_rel_diff: float = 0.01


def prove(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Firmware vs the exact QKeras reference (bits), vs the float twin; ONNX vs Keras (both float32)."""
    from trigflow.proof import compare

    y_fw, y_q, y_f = outputs["firmware"], outputs["qkeras"], outputs["float"]
    bits = compare.compare_bits(outputs["reference"], y_fw)
    return {
        "samples": bits.samples,
        "reference": "QKeras model evaluated in float64 (exact fixed point)",
        "bit_exact_fraction": bits.bit_exact_fraction,
        "mismatched_samples": int(len(bits.mismatched)),
        "first_mismatch": bits.first_mismatch,
        "max_abs_diff_vs_qkeras": bits.max_abs_diff,
        "max_abs_diff_vs_float": compare.max_abs_diff(y_fw, y_f),
        "onnx_max_abs_diff": _onnx_diff(outputs, y_q),
    }


def _onnx_diff(outputs: dict[str, np.ndarray], y_q: np.ndarray) -> float | None:
    """ONNX vs Keras; None where no ONNX model was run (an RTL proof of an already proven model)."""
    from trigflow.proof import compare

    return None if outputs.get("onnx") is None else compare.max_abs_diff(outputs["onnx"], y_q)


def evaluate_classifier(outputs: dict[str, np.ndarray], prepared: Any) -> dict[str, Any]:
    """Accuracy and per-class AUC of each implementation; softmax/argmax agreement of firmware vs QKeras."""
    from trigflow.proof import compare

    y = prepared.y_test
    y_fw, y_q, y_f = outputs["firmware"], outputs["qkeras"], outputs["float"]
    names = ("float", "qkeras", "firmware")
    return {
        "softmax_max_abs_diff_vs_qkeras": compare.max_abs_diff(compare.softmax(y_fw), compare.softmax(y_q)),
        "argmax_agreement_vs_qkeras": compare.argmax_agreement(y_fw, y_q),
        "argmax_agreement_vs_float": compare.argmax_agreement(y_fw, y_f),
        "accuracy": {name: compare.accuracy(outputs[name], y) for name in names},
        "auc": {name: compare.auc_per_class(outputs[name], y, prepared.class_names) for name in names},
    }


def float_scale(y: np.ndarray) -> float:
    """The scale a float model's allowed difference is relative to: max(1, max |output|)."""
    return max(1.0, float(np.max(np.abs(y), initial=0.0)))


def check_thresholds(
    proof: dict[str, Any],
    limits: Thresholds,
    *,
    quantized: bool = True,
    scale: float = 1.0,
    versus: str = "",
    float_diff: str = "max_abs_diff_vs_float",
    float_pair: str = "firmware vs model",
    parity_note: str = "",
    lossless: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each proof criterion with its verdict and a one-line detail (JUnit shows one test case per criterion).

    ``quantized=False``: ``float_agreement`` (``proof[float_diff]`` ≤ ``max_float_rel_diff`` × ``scale``)
    replaces ``bit_exact``. ``onnx_parity`` is checked where the proof has an ``onnx_max_abs_diff``.
    ``versus``, ``float_pair`` and ``parity_note`` name what was compared in the details. ``lossless`` (the
    ``model_on_raw_data`` section of a user model) adds ``lossless_inputs``: see :func:`check_lossless`.
    """
    bits, n = proof["bit_exact_fraction"], proof["samples"]
    checks: dict[str, tuple[bool, str]] = {}
    if quantized:
        checks["bit_exact"] = (
            bits >= limits.min_bit_exact_fraction,
            f"bit_exact_fraction {bits:.6f}{versus} (need ≥ {limits.min_bit_exact_fraction}; "
            f"{proof['mismatched_samples']} of {n} samples differ, first: {proof['first_mismatch']})",
        )
    else:
        diff, tolerance = proof[float_diff], limits.max_float_rel_diff
        checks["float_agreement"] = (
            diff <= tolerance * scale,
            f"float model: max |Δ| {float_pair} {diff:.3g} (need ≤ {tolerance} × {scale:.3g}; "
            f"bit_exact_fraction {bits:.6f} is not required of a float model)",
        )
    checks["samples"] = (n >= limits.min_samples, f"samples {n} (need ≥ {limits.min_samples})")
    if proof.get("onnx_max_abs_diff") is not None:
        diff = proof["onnx_max_abs_diff"]
        checks["onnx_parity"] = (
            diff <= limits.max_onnx_abs_diff,
            f"onnx_max_abs_diff {diff:.3g}{parity_note} (need ≤ {limits.max_onnx_abs_diff})",
        )
    if lossless is not None:
        checks["lossless_inputs"] = check_lossless(lossless)
    return {name: {"passed": bool(ok), "detail": detail} for name, (ok, detail) in checks.items()}


FLOAT_LAYER_FLOOR = 0.999  # bit-exact floor where a float layer feeds a quantizer (rounding-boundary cases)


def check_lossless(raw: dict[str, Any]) -> tuple[bool, str]:
    """Whatever the engine did to the inputs (the input grid) must not change the user's model on the data.

    ``raw``: ``samples``, ``changed_samples`` (logits of the model on the raw data ≠ the reference the
    firmware is compared with), ``input_type``, ``input_saturated_samples``, ``input_saturated_values``,
    ``observed`` ([min, max] of the raw data), ``float_layers``. Passes when no sample changed, or when the
    only changes are rounding-boundary cases after a float layer (no input saturates, ≤ 0.1 % of samples).
    """
    n, changed, sat = raw["samples"], raw["changed_samples"], raw["input_saturated_samples"]
    t, (lo, hi) = raw["input_type"], raw["observed"]
    if changed == 0 and sat == 0:
        return True, (
            f"input grid {t} holds the data (observed [{lo:.4g}, {hi:.4g}]): model unchanged on all {n:,} "
            "samples"
        )
    if sat:
        return False, (
            f"input grid {t} clips {sat:,} of {n:,} samples ({raw['input_saturated_values']:,} values; data "
            f"observed [{lo:.4g}, {hi:.4g}]), changing the model's logits on {changed:,} samples: the "
            "firmware does not implement the model on these data; give an input quantizer or data in the "
            "firmware's units"
        )
    floats = raw.get("float_layers") or []
    if floats and changed <= (1 - FLOAT_LAYER_FLOOR) * n:
        return True, (
            f"input grid {t}: model unchanged except {changed:,} of {n:,} samples where the float layer "
            f"{', '.join(floats)} puts a value on a rounding boundary of the next quantizer "
            f"(allowed ≤ {100 * (1 - FLOAT_LAYER_FLOOR):.1f} %)"
        )
    return False, (
        f"input grid {t} changes the model's logits on {changed:,} of {n:,} samples (data observed "
        f"[{lo:.4g}, {hi:.4g}]): the firmware does not implement the model on these data; give an input "
        "quantizer or data on a fixed-point grid"
    )


def failures_of(checks: dict[str, dict[str, Any]]) -> list[str]:
    return [c["detail"] for c in checks.values() if not c["passed"]]


def versions(*extra: str) -> dict[str, str]:
    """trigflow and the packages a proof depends on (``extra``: optional ones, listed when installed)."""
    from importlib.metadata import PackageNotFoundError, version

    import trigflow

    names = ("tensorflow", "qkeras", "hls4ml", "onnxruntime", "tf2onnx", "onnx", "numpy")
    found = {"trigflow": trigflow.__version__, **{n: version(n) for n in names}}
    for name in extra:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
