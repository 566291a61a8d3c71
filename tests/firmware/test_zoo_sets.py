"""The public L1 jet-ID MLP and Deep Sets (float BatchNormalization on raw inputs) proven by trigflow verify.

Each model is built as published (``tests/firmware/zoo_sets.py``), trained for 3 epochs on 44,000 of
trigflow's embedded jets in raw units (pT in GeV up to ~1.2 TeV, η_rel, φ_rel), saved to .h5 and verified on
3,000 held-out jets with labels. What must hold (issue #18):

* the input type covers the data: nothing saturates at the input, and the input grid changes the model's
  logits on no sample (``lossless_inputs``);
* the firmware equals the model *on the raw data* on ≥ 99.9 % of the jets (the float BatchNormalization is
  the only source of difference: a value on a rounding boundary of the next quantizer), and is bit-exact
  with the reference it is compared with;
* accuracy of the firmware = accuracy of the model on the raw data (within the differing jets).
"""

from __future__ import annotations

import json

import pytest

from zoo_sets import train_and_save

N_TEST = 3000


def _prove(tmp_path, arch: str, n_constituents: int, bits: int) -> dict:
    from trigflow import api

    model_path, data_path = train_and_save(arch, n_constituents, bits, tmp_path / "zoo", n_test=N_TEST)
    result = api.verify(model_path, data_path, out=str(tmp_path / "run"), project_dir=str(tmp_path / "prj"))
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert result.passed, result.failures
    return report


def _assert_proven(report: dict) -> None:
    raw = report["model_on_raw_data"]
    assert report["samples"] == N_TEST and report["passed"] is True
    assert report["checks"]["lossless_inputs"]["passed"]
    assert raw["input_saturated_samples"] == 0 and raw["changed_samples"] == 0
    t = report["configuration"]["input"]
    assert t["range"][0] <= raw["observed"][0] and raw["observed"][1] <= t["range"][1]
    assert raw["observed"][1] > 500  # raw GeV: far beyond the old default fixed<16,6> (max 32)
    assert next(r for r in report["overflow"]["layers"] if r["class"] == "Input")["saturated"] == 0
    assert report["configuration"]["float_layers"] == ["batchnorm"]
    assert report["bit_exact_fraction"] >= 0.999 and raw["firmware_bit_exact_fraction"] >= 0.999
    acc = report["accuracy"]
    assert abs(acc["firmware"] - acc["model_on_raw_data"]) <= 1 - raw["firmware_bit_exact_fraction"]
    assert acc["model_on_raw_data"] > 0.3  # trained: 5 classes, chance 0.2
    assert report["argmax_agreement"]["firmware_vs_model_on_raw_data"] >= 0.999


def test_sets_mlp_8_constituents_8_bits(tmp_path):
    """The family's representative in the default run: 24 s (train + verify) on 2 idle cores; 209-371 s when
    the cores were shared (load average ~11)."""
    _assert_proven(_prove(tmp_path, "mlp", 8, 8))


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, n_constituents, bits",
    [
        ("deepsets", 8, 8),
        ("mlp", 8, 4),
        ("deepsets", 8, 4),
        ("mlp", 16, 8),
        ("mlp", 16, 4),
        ("deepsets", 16, 8),
        ("deepsets", 16, 4),
    ],
)
def test_sets_model_zoo(tmp_path, arch, n_constituents, bits):
    """The rest of the family. Measured (train + verify): Deep Sets 8c 8b 69 s on 2 idle cores; on the loaded
    machine 1.9 min (MLP 8c 4b), 2.5 min (Deep Sets 8c 4b), 2.3 min (MLP 16c 8b), 4.1 min (Deep Sets 16c 8b),
    1.5 min (MLP 16c 4b), 3.0 min (Deep Sets 16c 4b); see docs/verify.md."""
    _assert_proven(_prove(tmp_path, arch, n_constituents, bits))
