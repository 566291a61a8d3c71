"""Overflow counting per layer: none for the chosen bit-exact types, counted and warned for a narrow type."""

from __future__ import annotations

import numpy as np
import pytest
from trigflow.firmware.autoconfig import build_firmware, choose_configuration
from trigflow.firmware.convert import FirmwareSpec
from trigflow.proof.overflow import overflow_report, plot_ranges
from tiny_models import qmlp_8_10_3, randomize


@pytest.fixture(scope="module")
def model_and_x():
    rng = np.random.default_rng(0)
    model = randomize(qmlp_8_10_3(batchnorm=False), rng)
    data = rng.uniform(-9, 9, size=(500, 8)).astype(np.float32)  # beyond the input quantizer's ±8
    return model, data


def _report(model, data, tmp_path, overrides=None):
    dep = choose_configuration(model, data, FirmwareSpec(layer_precisions=overrides or {}))
    hls_model = build_firmware(dep, tmp_path / "prj", compile=False)  # types only: no C-sim needed
    return overflow_report(dep, hls_model, dep.x)


def test_bit_exact_types_never_overflow(model_and_x, tmp_path):
    model, data = model_and_x
    report = _report(model, data, tmp_path)
    assert report["total_overflows"] == 0 and report["warnings"] == []
    rows = {row["layer"]: row for row in report["layers"]}
    assert set(rows) >= {"x", "dense_0", "relu_0", "dense_1"}
    assert rows["x"]["saturated"] > 0  # inputs beyond ±8 are clipped by the input type, as QKeras clips them
    assert rows["relu_0"]["saturated"] > 0  # quantized_relu(6, 2) clips at 3.9375
    for row in rows.values():
        assert row["integer_bits_needed"] <= row["integer_bits"]
    assert plot_ranges(report, tmp_path / "ranges.png").stat().st_size > 0


def test_narrow_type_is_counted_and_warned(model_and_x, tmp_path):
    model, data = model_and_x
    report = _report(model, data, tmp_path, {"dense_1": {"result": "fixed<8,2>"}})
    row = next(r for r in report["layers"] if r["layer"] == "dense_1")
    assert row["overflows"] > 0 and row["representable"] == [-2.0, 2 - 2**-6]
    assert row["integer_bits"] == 2 and row["integer_bits_needed"] > 2
    (warning,) = report["warnings"]
    assert (
        warning.startswith("overflow in layer 'dense_1'")
        and f"needs {row['integer_bits_needed']} integer bits" in warning
    )
    assert report["total_overflows"] == row["overflows"]
    assert plot_ranges(report, tmp_path / "ranges.png").stat().st_size > 0
