"""The one run driver (trigflow.driver.drive) and the one threshold check (proof.checks), without TensorFlow:
a fake starting point stands for a kind's run, a model file or an ONNX file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trigflow.driver import Evidence, RunResult, drive
from trigflow.errors import ThresholdFailed, TrigflowError
from trigflow.proof.checks import Thresholds, check_thresholds, float_scale

PROOF = {
    "samples": 2000,
    "bit_exact_fraction": 1.0,
    "mismatched_samples": 0,
    "first_mismatch": None,
    "max_abs_diff_vs_float": 0.02,
    "onnx_max_abs_diff": 1e-7,
}
OUTPUTS = np.array([[0.5, -3.0]])


def test_checks_of_a_quantized_proof():
    checks = check_thresholds(PROOF, Thresholds(min_samples=1000))
    assert list(checks) == ["bit_exact", "samples", "onnx_parity"]
    assert all(c["passed"] for c in checks.values())
    assert checks["bit_exact"]["detail"] == (
        "bit_exact_fraction 1.000000 (need ≥ 1.0; 0 of 2000 samples differ, first: None)"
    )
    failed = check_thresholds({**PROOF, "samples": 999}, Thresholds(min_samples=1000))
    assert not failed["samples"]["passed"] and failed["samples"]["detail"] == "samples 999 (need ≥ 1000)"


def test_a_float_model_is_judged_on_agreement_not_bits():
    proof = {**PROOF, "bit_exact_fraction": 0.25}
    limits = Thresholds(min_samples=1000, max_float_rel_diff=0.01)
    checks = check_thresholds(proof, limits, quantized=False, scale=float_scale(OUTPUTS))
    assert list(checks) == ["float_agreement", "samples", "onnx_parity"]
    assert checks["float_agreement"]["passed"]  # 0.02 ≤ 0.01 × max(1, 3)
    tight = check_thresholds(proof, limits, quantized=False, scale=1.0)
    assert not tight["float_agreement"]["passed"]
    assert tight["float_agreement"]["detail"].startswith("float model: max |Δ| firmware vs model 0.02")


def test_onnx_parity_is_checked_only_where_measured():
    checks = check_thresholds({**PROOF, "onnx_max_abs_diff": None}, Thresholds(min_samples=1))
    assert "onnx_parity" not in checks


def test_a_failed_result_raises_threshold_failed_with_exit_code_1(tmp_path):
    from trigflow.api import VerifyResult

    assert VerifyResult({}, tmp_path, tmp_path, None, []).raise_for_failures().passed  # type: ignore[arg-type]
    failed = VerifyResult({}, tmp_path, tmp_path, None, ["samples 3 (need ≥ 1000)"])  # type: ignore[arg-type]
    with pytest.raises(ThresholdFailed, match="samples 3") as info:
        failed.raise_for_failures()
    assert info.value.exit_code == 1


@dataclass
class FakeStart:
    out_dir: Path
    project: Path
    proof: dict[str, Any]
    force: bool = False
    broken: bool = False
    kind: str = "fake"
    out_label: str = "report folder"

    def build(self, tmp: Path, ui) -> Evidence:
        self.project.mkdir(parents=True)  # the firmware is published before the proof ends
        (tmp / "outputs.txt").write_text("x")
        if self.broken:
            raise TrigflowError("C-simulation broke")
        return Evidence(
            sections={**self.proof, "data": {"samples": self.proof["samples"]}},
            proof=self.proof,
            limits=Thresholds(min_samples=1000),
            firmware={"backend": "Vitis"},
            thresholds={"min_samples": 1000},
        )

    def finish(self, report: dict[str, Any], tmp: Path, ui) -> None:
        report["finished"] = True


def test_drive_writes_one_report_beside_the_firmware(tmp_path):
    start = FakeStart(tmp_path / "out", tmp_path / "prj", PROOF)
    result = drive(start)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == json.loads((tmp_path / "prj" / "trigflow_report.json").read_text())
    assert report["kind"] == "fake" and report["passed"] and report["failures"] == [] and report["finished"]
    assert report["project_dir"] == str(tmp_path / "prj") and report["run_dir"] == str(tmp_path / "out")
    assert set(report) >= {"thresholds", "checks", "versions", "timings_s", "firmware", "data", "samples"}
    assert (tmp_path / "out" / "junit.xml").is_file() and (tmp_path / "out" / "outputs.txt").is_file()
    assert result.passed and result.report == report

    with pytest.raises(TrigflowError, match="report folder"):
        drive(FakeStart(tmp_path / "out", tmp_path / "prj2", PROOF))

    failed = drive(FakeStart(tmp_path / "o2", tmp_path / "p2", {**PROOF, "bit_exact_fraction": 0.5}))
    assert not failed.passed and failed.failures[0].startswith("bit_exact_fraction 0.500000")


def test_a_failure_after_publishing_leaves_neither_folder(tmp_path):
    with pytest.raises(TrigflowError, match="C-simulation broke"):
        drive(FakeStart(tmp_path / "out", tmp_path / "prj", PROOF, broken=True))
    assert list(tmp_path.iterdir()) == []
