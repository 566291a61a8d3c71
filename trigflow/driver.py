"""Spine layer: the one run driver — locks, refusals, atomic output, proof verdict, report — for every start.

A ``StartingPoint`` (a kind's recipe run in ``pipeline``, a user model file in ``verify``, an ONNX file in
``verify_onnx``) supplies only what differs: how it gets the deployed models, inputs and firmware, and the
report sections that describe them (``Evidence``). ``drive`` does the rest the same way for all:

lock the run and project folders → refuse existing ones (unless ``force``) → build into a temporary run
folder → thresholds and verdicts (``proof.checks.check_thresholds``) → report skeleton (thresholds, checks,
passed, failures, versions, timings) → ``report.write_report`` → publish both folders, or neither on any
failure → ``trigflow_report.json`` beside the firmware it proves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trigflow.fsio import atomic_dir, exclusive, published_on_success, refuse_existing, write_text
from trigflow.proof.checks import Thresholds
from trigflow.ui import StageUI

__all__ = ["Evidence", "RunResult", "StartingPoint", "drive", "simulate"]


@dataclass
class RunResult:
    report: dict[str, Any]
    out_dir: Path
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Evidence:
    """What a starting point built: report sections (before ``project_dir``), the proof to judge and how."""

    sections: dict[str, Any]  # report keys after ``kind``: proof keys, metrics, model/data descriptions, cost
    proof: dict[str, Any]  # bit_exact_fraction, samples, mismatched_samples, first_mismatch, ...
    limits: Thresholds
    firmware: dict[str, Any]  # the report's ``firmware`` section
    thresholds: dict[str, Any]  # the report's ``thresholds`` section
    check_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of check_thresholds
    extra_versions: tuple[str, ...] = ()  # optional packages listed in ``versions`` when installed


class StartingPoint(Protocol):
    kind: str
    out_dir: Path
    project: Path
    force: bool
    out_label: str  # how refusals name the output folder ("run folder", "report folder")

    def build(self, tmp: Path, ui: StageUI) -> Evidence:
        """Models, inputs, firmware and outputs; files go to ``tmp`` (the run folder before publishing)."""
        ...

    def finish(self, report: dict[str, Any], tmp: Path, ui: StageUI) -> None:
        """Plots and extras that read the finished report (may add keys to it)."""
        ...


def drive(start: StartingPoint, ui: StageUI | None = None) -> RunResult:
    """Run ``start`` under the locks and refusals, judge its proof, write and publish its report."""
    ui = ui or StageUI(quiet=True)
    out_dir, project = start.out_dir.resolve(), start.project.resolve()
    with exclusive(out_dir), exclusive(project):
        refuse_existing(out_dir, start.force, start.out_label)
        refuse_existing(project, start.force, "project folder")
        with published_on_success(out_dir, project):  # a failed or interrupted run leaves no project behind
            return _drive(start, out_dir, project, ui)


def _drive(start: StartingPoint, out_dir: Path, project: Path, ui: StageUI) -> RunResult:
    from trigflow.proof.checks import check_thresholds, failures_of, versions
    from trigflow.report import write_report

    with atomic_dir(out_dir, force=start.force) as tmp:
        evidence = start.build(tmp, ui)
        checks = check_thresholds(evidence.proof, evidence.limits, **evidence.check_options)
        failures = failures_of(checks)
        report: dict[str, Any] = {
            "kind": start.kind,
            **evidence.sections,
            "project_dir": str(project),
            "run_dir": str(out_dir),
            "firmware": evidence.firmware,
            "thresholds": evidence.thresholds,
            "checks": checks,
            "passed": not failures,
            "failures": failures,
            "versions": versions(*evidence.extra_versions),
        }
        start.finish(report, tmp, ui)
        failures = report["failures"]  # finish may add some (verify's RTL proof)
        report["timings_s"] = {k: round(v, 3) for k, v in ui.timings.items()}
        write_report(report, tmp)
    write_text(project / "trigflow_report.json", (out_dir / "report.json").read_text())  # proof beside firmware
    return RunResult(report=report, out_dir=out_dir, failures=failures)


def simulate(trained: Any, hls_model: Any, x: np.ndarray, ui: StageUI, out: Path) -> dict[str, np.ndarray]:
    """Outputs of every implementation of the deployed model on ``x``: firmware, QKeras, float, ONNX, and
    ``reference``, the QKeras model in exact fixed point (float64) that the firmware must equal bit for bit
    (Keras' float32 ``qkeras`` outputs round > 24-bit sums; see ``trigflow.proof.reference``)."""
    from trigflow.firmware.csim import predict
    from trigflow.onnx import export_onnx, run_onnx
    from trigflow.proof.reference import exact_predict

    with ui.stage("C-simulation"):
        y_fw = predict(hls_model, x)
    with ui.stage("QKeras and float inference"):
        y_q = trained.deploy_qmodel.predict(x, batch_size=4096, verbose=0).reshape(len(x), -1).astype(np.float64)
        y_f = trained.deploy_float_model.predict(x, batch_size=4096, verbose=0).reshape(len(x), -1).astype(np.float64)
        y_ref = exact_predict(trained.deploy_qmodel, x)
    with ui.stage("ONNX export + onnxruntime"):
        onnx_path = export_onnx(trained.deploy_qmodel, out / "qkeras_model.onnx")
        export_onnx(trained.deploy_float_model, out / "float_model.onnx")
        y_onnx = run_onnx(onnx_path, x).reshape(len(x), -1).astype(np.float64)
    return {"firmware": y_fw, "qkeras": y_q, "reference": y_ref, "float": y_f, "onnx": y_onnx}


def firmware_cost(hls_model: Any) -> dict[str, Any]:
    """Resources and latency: from the estimate (vendor synthesis, when run, reports the same keys)."""
    from trigflow.firmware.estimate import estimate

    return estimate(hls_model).to_report()
