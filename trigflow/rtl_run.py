"""Spine layer: ``trigflow rtl RUN_DIR`` — a finished run's proven QKeras model as pipelined Verilog, proven.

The run folder is the starting point: its deployed QKeras model is traced with da4ml into Verilog under
``<project>/rtl/`` (``firmware.rtl``), compiled with Verilator, and the RTL simulation is compared bit for bit with
the exact QKeras reference on the run's whole test set, judged by the run's thresholds. The proof (the C-sim
proof's keys plus ``source: "rtl"``) is ``rtl_report.json`` in the run folder (one copy: the run page reads it
there; it names the RTL folder as ``rtl_dir``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.ui import StageUI

__all__ = ["RTL_REPORT", "prove_rtl", "prove_rtl_of"]

RTL_REPORT = "rtl_report.json"


def prove_rtl(
    run_dir: str | Path, *, force: bool = False, max_lut: float | None = None, ui: StageUI
) -> dict[str, Any]:
    """Trace, build and prove the RTL of the run in ``run_dir``; return the written report. ``max_lut``: the
    largest design built (default: the part's LUTs, ``firmware.rtl.build_rtl``)."""
    import numpy as np

    from trigflow.evaluate_run import read_run
    from trigflow.fsio import write_text
    from trigflow.proof.reference import exact_predict

    run_dir = Path(run_dir).resolve()
    config, preprocessing, run_report = read_run(run_dir)
    project = Path(run_report["project_dir"])
    if not project.is_dir():
        raise TrigflowError(f"project folder {project} named by {run_dir / 'report.json'} not found")
    data = run_dir / "test_data.npz"
    if not data.is_file():
        raise TrigflowError(f"{data} not found; the run folder is incomplete")
    with np.load(data) as arrays:
        x = np.asarray(arrays["x"])
    iq = preprocessing["input_quantizer"]
    input_kif = (1, int(iq["integer"]), int(iq["bits"]) - 1 - int(iq["integer"]))
    with ui.stage("load models"):
        models = _proven_models(run_dir, config["kind"], x, list(preprocessing["classes"]))
    with ui.stage("QKeras reference"):
        outputs = {
            "reference": exact_predict(models["qkeras"], x),
            **{name: model.predict(x, batch_size=4096, verbose=0).reshape(len(x), -1).astype(np.float64)
               for name, model in models.items()},
        }
    report = {"kind": config["kind"], "run_dir": str(run_dir), **prove_rtl_of(
        models["qkeras"], outputs, x, input_kif, project / "rtl", firmware=config["firmware"],
        thresholds=config["verify"], force=force, max_lut=max_lut, ui=ui,
    )}
    write_text(run_dir / RTL_REPORT, json.dumps(report, indent=2, default=float))
    from trigflow.report_html import load_report, write_page

    write_page(load_report(run_dir), run_dir)  # the run's index.html gains the RTL section
    return report


def prove_rtl_of(
    qmodel: Any,
    outputs: dict[str, Any],
    x: Any,
    input_kif: tuple[int, int, int],
    rtl_dir: Path,
    *,
    firmware: dict[str, Any],
    thresholds: dict[str, Any],
    force: bool = False,
    max_lut: float | None = None,
    ui: StageUI,
) -> dict[str, Any]:
    """The RTL proof of ``qmodel`` on ``x`` (input grid ``input_kif``): trace, Verilog in ``rtl_dir``, Verilator,
    then the RTL simulation against ``outputs`` (``reference`` = exact QKeras, ``qkeras``, ``float``) judged by
    the ``min_samples`` and ``min_bit_exact_fraction`` of ``thresholds`` (a run's ``verify`` config, a report's
    ``thresholds``). Returns the report keys after ``kind``/``run_dir``."""
    import numpy as np

    from trigflow.firmware.rtl import RtlProject, build_rtl
    from trigflow.proof.checks import Thresholds, check_thresholds, failures_of, prove, versions

    limits = Thresholds(
        min_samples=int(thresholds["min_samples"]),
        min_bit_exact_fraction=float(thresholds["min_bit_exact_fraction"]),
    )
    report: dict[str, Any] = {}

    def check(built: RtlProject) -> None:
        with ui.stage("RTL simulation (Verilator)"):
            y_rtl = built.predict(x)
        with ui.stage("da4ml interpreter"):
            y_interp = built.interpret(x)
        proof = {"source": "rtl", "engine": "verilator", **prove({**outputs, "firmware": y_rtl})}
        proof["interpreter_bit_exact_fraction"] = float(np.mean(np.all(y_interp == y_rtl, axis=1)))
        checks = check_thresholds(proof, limits, versus=" (RTL simulation vs exact QKeras)")
        failures = failures_of(checks)
        report.update(
            rtl_dir=str(rtl_dir), proof=proof, rtl=built.manifest, checks=checks, passed=not failures,
            failures=failures, versions=versions("da4ml", "verilator"),
        )

    with ui.stage("trace + Verilog + Verilator build"):
        build_rtl(
            qmodel, input_kif, rtl_dir, clock_period=float(firmware["clock_period"]), part=str(firmware["part"]),
            force=force, max_lut=max_lut, check=check,
        )
    report["timings_s"] = {k: round(v, 3) for k, v in ui.timings.items()}
    return report


def _proven_models(run_dir: Path, kind: str, x, classes: list[str]) -> dict[str, Any]:
    """The models the run's firmware was proven against: the deployed twins where the kind deploys more than
    it trains (the AE's on-chip score, ``*_deployed.h5``), else the trained twins rebuilt by the recipe."""
    from trigflow.evaluate_run import load_models
    from trigflow.onnx import load_keras

    deployed = {name: run_dir / f"{name}_deployed.h5" for name in ("qkeras", "float")}
    if all(path.is_file() for path in deployed.values()):
        return {name: load_keras(path) for name, path in deployed.items()}
    return load_models(run_dir, kind, x, classes)
