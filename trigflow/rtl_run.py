"""Spine layer: ``trigflow rtl RUN_DIR`` — a finished run's proven QKeras model as pipelined Verilog, proven.

The run folder is the starting point: its deployed QKeras model is traced with da4ml into Verilog under
``<project>/rtl/`` (``firmware.rtl``), compiled with Verilator, and the RTL simulation is compared bit for bit with
the exact QKeras reference on the run's whole test set, judged by the run's thresholds. Three exact engines run
the same logic: da4ml's logic compiled to native code (``firmware.logic_emulator``, the fastest) on every
sample, and the Verilator simulation and da4ml's interpreter on the first ``VERILATOR_SAMPLES``, which must
agree with it. The proof (the C-sim proof's keys plus ``source: "rtl"``) is ``rtl_report.json`` in the run
folder (one copy: the run page reads it there; it names the RTL folder as ``rtl_dir``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.ui import StageUI

__all__ = ["RTL_REPORT", "prove_rtl", "prove_rtl_of"]

RTL_REPORT = "rtl_report.json"
VERILATOR_SAMPLES = 200_000  # Verilator's share of a proof; the compiled emulator runs every sample


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

    from trigflow.firmware.logic_emulator import EmulatorUnsupported
    from trigflow.firmware.rtl import RtlProject, build_rtl
    from trigflow.proof.checks import Thresholds, check_thresholds, failures_of, prove, versions

    limits = Thresholds(
        min_samples=int(thresholds["min_samples"]),
        min_bit_exact_fraction=float(thresholds["min_bit_exact_fraction"]),
    )
    report: dict[str, Any] = {}

    def check(built: RtlProject) -> None:
        rows = np.asarray(x)
        y_emulator, unsupported = None, None
        with ui.stage("compiled logic emulator"):
            try:
                y_emulator = built.emulator().predict(rows)
            except EmulatorUnsupported as exc:
                unsupported = str(exc)
            except RuntimeError:  # g++ failed: Verilator proves every sample instead, and the report says why
                unsupported = "g++ could not compile it (log: emulator/emulator.log in the RTL folder)"
        simulated = len(rows) if y_emulator is None else min(len(rows), VERILATOR_SAMPLES)
        with ui.stage("RTL simulation (Verilator)"):
            y_rtl = built.predict(rows[:simulated])
        with ui.stage("da4ml interpreter"):
            y_interp = built.interpret(rows[:simulated])
        judged = y_rtl if y_emulator is None else y_emulator
        proof = {
            "source": "rtl",
            "engine": "verilator" if y_emulator is None else "emulator",
            **prove({**outputs, "firmware": judged}),
            "engine_samples": {
                "emulator": 0 if y_emulator is None else len(rows), "verilator": simulated, "interpreter": simulated,
            },
            "interpreter_bit_exact_fraction": _agreement(y_interp, judged[:simulated]),
        }
        if y_emulator is not None:
            proof["verilator_bit_exact_fraction"] = _agreement(y_rtl, y_emulator[:simulated])
        else:
            proof["emulator_unsupported"] = unsupported
        versus = " (RTL logic, compiled emulator vs exact QKeras)" if y_emulator is not None else (
            " (RTL simulation vs exact QKeras)")
        checks = check_thresholds(proof, limits, versus=versus)
        checks["engines_agree"] = _engines_agree(proof)
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


def _agreement(a, b) -> float:
    import numpy as np

    return float(np.mean(np.all(np.asarray(a) == np.asarray(b), axis=1))) if len(a) else 1.0


def _engines_agree(proof: dict[str, Any]) -> dict[str, Any]:
    """Verilator and da4ml's interpreter must give the judged engine's outputs on every sample they ran."""
    pairs = {
        "Verilator": proof.get("verilator_bit_exact_fraction"),
        "da4ml interpreter": proof["interpreter_bit_exact_fraction"],
    }
    counts = proof["engine_samples"]
    detail = ", ".join(f"{name} = {proof['engine']} on {v:.6f}" for name, v in pairs.items() if v is not None)
    detail += f" of the first {counts['verilator']:,} samples"
    if proof["engine"] == "emulator" and counts["verilator"] < counts["emulator"]:
        detail += f"; the compiled emulator alone ran all {counts['emulator']:,}"
    if proof.get("emulator_unsupported"):
        detail += f"; compiled emulator not used ({proof['emulator_unsupported']})"
    return {"passed": all(v == 1.0 for v in pairs.values() if v is not None), "detail": detail}


def _proven_models(run_dir: Path, kind: str, x, classes: list[str]) -> dict[str, Any]:
    """The models the run's firmware was proven against: the deployed twins where the kind deploys more than
    it trains (the AE's on-chip score, ``*_deployed.h5``), else the trained twins rebuilt by the recipe."""
    from trigflow.evaluate_run import load_models
    from trigflow.onnx import load_keras

    deployed = {name: run_dir / f"{name}_deployed.h5" for name in ("qkeras", "float")}
    if all(path.is_file() for path in deployed.values()):
        return {name: load_keras(path) for name, path in deployed.items()}
    return load_models(run_dir, kind, x, classes)
