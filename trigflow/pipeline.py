"""Spine layer: the only place that knows the order of the stages.

``run(config)``: data → models (QKeras + float twin, trained) → firmware (hls4ml project, compiled C-sim) →
proof (bits vs QKeras, float, ONNX) → report. Each stage is a plain function of what the previous one returned.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_dir, refuse_existing
from trigflow.ui import StageUI


@dataclass(frozen=True)
class Arrays:
    """A labelled data set as the models see it."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    source: str


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any]
    class_names: tuple[str, ...]


@dataclass
class Trained:
    qmodel: Any
    float_model: Any
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)


@dataclass
class RunResult:
    report: dict[str, Any]
    out_dir: Path
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


# --- stage 1: data ------------------------------------------------------------------------------------------
def load_data(config: RunConfig) -> Arrays:
    from trigflow.data import JET_CLASSES, HLF_NAMES
    from trigflow.data.jets import load_jets

    jets = load_jets(config.data.path, parts=("hlf",))
    x, y = jets.hlf, jets.label.astype(np.int64)
    if config.data.max_samples is not None:
        x, y = x[: config.data.max_samples], y[: config.data.max_samples]
    source = config.data.path or "embedded jets (Pythia8 + FastJet)"
    return Arrays(x, y, HLF_NAMES, JET_CLASSES, str(source))


def prepare(arrays: Arrays, config: RunConfig) -> Prepared:
    """Split, standardise on the training part, and put every input on the firmware input grid."""
    from trigflow.data.prepare import Standardizer, check_finite, split
    from trigflow.quantize.presets import QuantSpec

    check_finite(arrays.x, f"data ({arrays.source})")
    parts = split(
        arrays.x,
        arrays.y,
        test_fraction=config.data.test_fraction,
        val_fraction=config.data.val_fraction,
        seed=config.data.seed,
    )
    if len(parts.x_test) < config.verify.min_samples:
        raise TrigflowError(
            f"only {len(parts.x_test)} test samples, the proof needs ≥ {config.verify.min_samples}; "
            "use more data or lower verify.min_samples"
        )
    standardize = Standardizer.fit(parts.x_train)
    spec = QuantSpec.from_config(config.quant)

    def to_grid(x: np.ndarray) -> np.ndarray:
        return spec.quantize_input(standardize(x))

    preprocessing = {
        "features": list(arrays.feature_names),
        "standardize": standardize.to_dict(),
        "input_quantizer": {"bits": spec.input_bits, "integer": spec.input_integer, "type": spec.input_type},
    }
    return Prepared(
        to_grid(parts.x_train),
        parts.y_train,
        to_grid(parts.x_val),
        parts.y_val,
        to_grid(parts.x_test),
        parts.y_test,
        preprocessing,
        arrays.class_names,
    )


# --- stage 2: models and quantization-aware training ---------------------------------------------------------
def build_and_train(prepared: Prepared, config: RunConfig, ui: StageUI) -> Trained:
    from trigflow.models.mlp import build_mlp
    from trigflow.quantize.presets import QuantSpec
    from trigflow.quantize.train import set_seed, train

    spec = QuantSpec.from_config(config.quant)
    q = config.quant
    n_in, n_classes = prepared.x_train.shape[1], len(prepared.class_names)
    trained = Trained(qmodel=None, float_model=None)
    for quantized in (False, True):
        label = "QKeras (QAT)" if quantized else "float twin"
        set_seed(config.seed)
        model = build_mlp(n_in, n_classes, config.model.hidden, quantized=quantized, spec=spec, seed=config.seed)
        with ui.stage(f"train {label}", total=q.epochs) as advance:
            model, history = train(
                model,
                prepared.x_train,
                prepared.y_train,
                prepared.x_val,
                prepared.y_val,
                epochs=q.epochs,
                batch_size=q.batch_size,
                learning_rate=q.learning_rate,
                patience=q.patience,
                sparsity=q.sparsity,
                on_epoch=lambda epoch, logs, a=advance, lb=label: a(
                    1, f"train {lb} · epoch {epoch + 1} · val acc {logs.get('val_accuracy', 0):.3f}"
                ),
            )
        trained.history["qkeras" if quantized else "float"] = {k: [float(v) for v in vs] for k, vs in history.items()}
        if quantized:
            trained.qmodel = model
        else:
            trained.float_model = model
    return trained


# --- stage 3: firmware ---------------------------------------------------------------------------------------
def build_firmware(trained: Trained, config: RunConfig, ui: StageUI):
    from trigflow.firmware.convert import FirmwareSpec, convert
    from trigflow.quantize.presets import QuantSpec

    spec = FirmwareSpec.from_config(config.firmware, input_type=QuantSpec.from_config(config.quant).input_type)
    with ui.stage("hls4ml convert + g++ compile"):
        return convert(trained.qmodel, config.project_path, spec, force=config.force)


# --- stage 4: proof ------------------------------------------------------------------------------------------
def prove(trained: Trained, hls_model, prepared: Prepared, config: RunConfig, ui: StageUI, out: Path) -> dict:
    from trigflow.firmware import verify
    from trigflow.firmware.csim import predict
    from trigflow.onnx import export_onnx, run_onnx

    x, y = prepared.x_test, prepared.y_test
    with ui.stage("C-simulation"):
        y_fw = predict(hls_model, x)
    with ui.stage("QKeras and float inference"):
        y_q = trained.qmodel.predict(x, batch_size=4096, verbose=0).astype(np.float64)
        y_f = trained.float_model.predict(x, batch_size=4096, verbose=0).astype(np.float64)
    with ui.stage("ONNX export + onnxruntime"):
        onnx_path = export_onnx(trained.qmodel, out / "qkeras_model.onnx")
        export_onnx(trained.float_model, out / "float_model.onnx")
        y_onnx = run_onnx(onnx_path, x).astype(np.float64)
    bits = verify.compare_bits(y_q, y_fw)
    return {
        "samples": bits.samples,
        "bit_exact_fraction": bits.bit_exact_fraction,
        "mismatched_samples": int(len(bits.mismatched)),
        "first_mismatch": bits.first_mismatch,
        "max_abs_diff_vs_qkeras": bits.max_abs_diff,
        "max_abs_diff_vs_float": verify.max_abs_diff(y_fw, y_f),
        "softmax_max_abs_diff_vs_qkeras": verify.max_abs_diff(verify.softmax(y_fw), verify.softmax(y_q)),
        "argmax_agreement_vs_qkeras": verify.argmax_agreement(y_fw, y_q),
        "argmax_agreement_vs_float": verify.argmax_agreement(y_fw, y_f),
        "accuracy": {
            "float": verify.accuracy(y_f, y),
            "qkeras": verify.accuracy(y_q, y),
            "firmware": verify.accuracy(y_fw, y),
        },
        "auc": {
            "float": verify.auc_per_class(y_f, y, prepared.class_names),
            "qkeras": verify.auc_per_class(y_q, y, prepared.class_names),
            "firmware": verify.auc_per_class(y_fw, y, prepared.class_names),
        },
        "onnx_max_abs_diff": verify.max_abs_diff(y_onnx, y_q),
        "_outputs": {"firmware": y_fw, "qkeras": y_q, "float": y_f, "labels": y},
    }


def check_thresholds(proof: dict, config: RunConfig) -> dict[str, dict[str, Any]]:
    """Each proof criterion with its verdict and a one-line detail (JUnit shows one test case per criterion)."""
    v = config.verify
    bits, n = proof["bit_exact_fraction"], proof["samples"]
    checks = {
        "bit_exact": (
            bits >= v.min_bit_exact_fraction,
            f"bit_exact_fraction {bits:.6f} (need ≥ {v.min_bit_exact_fraction}; "
            f"{proof['mismatched_samples']} of {n} samples differ, first: {proof['first_mismatch']})",
        ),
        "samples": (n >= v.min_samples, f"samples {n} (need ≥ {v.min_samples})"),
    }
    if "onnx_max_abs_diff" in proof:
        diff = proof["onnx_max_abs_diff"]
        checks["onnx_parity"] = (diff <= v.max_onnx_abs_diff, f"onnx_max_abs_diff {diff:.3g} (need ≤ {v.max_onnx_abs_diff})")
    return {name: {"passed": bool(ok), "detail": detail} for name, (ok, detail) in checks.items()}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import trigflow

    names = ("tensorflow", "qkeras", "hls4ml", "onnxruntime", "tf2onnx", "onnx", "numpy")
    return {"trigflow": trigflow.__version__, **{n: version(n) for n in names}}


# --- the run -------------------------------------------------------------------------------------------------
def _save_models(trained: Trained, prepared: Prepared, config: RunConfig, out: Path) -> None:
    trained.qmodel.save(out / "qkeras_model.h5")
    trained.float_model.save(out / "float_model.h5")
    np.savez_compressed(out / "test_data.npz", x=prepared.x_test, y=prepared.y_test)
    (out / "preprocessing.json").write_text(json.dumps(prepared.preprocessing, indent=2))
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (out / "history.json").write_text(json.dumps(trained.history))


def run(config: RunConfig, ui: StageUI | None = None) -> RunResult:
    from trigflow import report as reporting

    ui = ui or StageUI(quiet=True)
    if config.kind != "mlp":
        raise TrigflowError(f"`trigflow run {config.kind}` is not available yet; `trigflow run mlp` is")
    out_dir = config.out_dir.resolve()
    refuse_existing(out_dir, config.force, "run folder")
    refuse_existing(config.project_path.resolve(), config.force, "project folder")

    with ui.stage("load data"):
        arrays = load_data(config)
        prepared = prepare(arrays, config)
    trained = build_and_train(prepared, config, ui)
    with atomic_dir(out_dir, force=config.force) as tmp:
        _save_models(trained, prepared, config, tmp)
        hls_model = build_firmware(trained, config, ui)
        proof = prove(trained, hls_model, prepared, config, ui, tmp)
        checks = check_thresholds(proof, config)
        failures = [c["detail"] for c in checks.values() if not c["passed"]]
        outputs = proof.pop("_outputs")
        report = {
            "kind": config.kind,
            **proof,
            "data": {"source": arrays.source, "train": len(prepared.x_train), "test": len(prepared.x_test)},
            "project_dir": str(config.project_path.resolve()),
            "run_dir": str(out_dir),
            "firmware": {k: v for k, v in config.firmware.__dict__.items()},
            "thresholds": config.verify.__dict__,
            "checks": checks,
            "passed": not failures,
            "failures": failures,
            "versions": versions(),
        }
        with ui.stage("report + plots"):
            reporting.write_plots(outputs, prepared.class_names, tmp)
        report["timings_s"] = {k: round(v, 3) for k, v in ui.timings.items()}
        reporting.write_report(report, tmp)
    _copy_into_project(out_dir / "report.json", config.project_path.resolve())
    return RunResult(report=report, out_dir=out_dir, failures=failures)


def _copy_into_project(report: Path, project: Path) -> None:
    """Keep the proof beside the firmware it proves."""
    tmp = project / f".report.json.{os.getpid()}"
    shutil.copyfile(report, tmp)
    os.replace(tmp, project / "trigflow_report.json")
