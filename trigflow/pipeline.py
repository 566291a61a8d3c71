"""Spine layer: the only place that knows the order of the stages.

``run(config)``: data → models (QKeras + float twin, trained) → firmware (hls4ml project, compiled C-sim) →
proof (bits vs QKeras, float, ONNX) → report. Each stage is a plain function of what the previous one
returned; what differs between model kinds comes from the kind's ``Recipe`` (``trigflow.kinds``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_dir, exclusive, published_on_success, refuse_existing, write_text
from trigflow.kinds import Arrays, Prepared, Recipe, Trained, recipe_for
from trigflow.ui import StageUI


@dataclass
class RunResult:
    report: dict[str, Any]
    out_dir: Path
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


# --- stage 1: data ------------------------------------------------------------------------------------------
def split_for_proof(x: np.ndarray, y: np.ndarray, config: RunConfig):
    """The configured train/val/test split; fails early when the test part is too small for the proof."""
    from trigflow.data.prepare import split

    d = config.data
    parts = split(x, y, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=d.seed)
    if len(parts.x_test) < config.verify.min_samples:
        raise TrigflowError(
            f"only {len(parts.x_test)} test samples, the proof needs ≥ {config.verify.min_samples}; "
            "use more data or lower verify.min_samples"
        )
    return parts


def prepare(arrays: Arrays, config: RunConfig) -> Prepared:
    """Split, standardise each feature on the training part, and put every input on the firmware input grid."""
    from trigflow.data.prepare import Standardizer, check_finite
    from trigflow.quantize.presets import QuantSpec

    check_finite(arrays.x, f"data ({arrays.source})")
    parts = split_for_proof(arrays.x, arrays.y, config)
    standardize = Standardizer.fit(parts.x_train)
    spec = QuantSpec.from_config(config.quant)

    def to_grid(x: np.ndarray) -> np.ndarray:
        return spec.quantize_input(standardize(x))

    preprocessing = {
        "features": list(arrays.feature_names),
        "classes": list(arrays.class_names),
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
def train_twins(
    recipe: Recipe, prepared: Prepared, config: RunConfig, ui: StageUI, *, targets: str = "labels"
) -> Trained:
    """Train the float twin and the QKeras model with the same data, seed and schedule.

    ``targets="labels"``: classification on logits; ``targets="inputs"``: reconstruction (autoencoders).
    """
    from trigflow.quantize.train import set_seed, train

    q = config.quant
    autoencoder = targets == "inputs"
    y_train = prepared.x_train if autoencoder else prepared.y_train
    y_val = prepared.x_val if autoencoder else prepared.y_val
    models: dict[bool, Any] = {}
    history: dict[str, dict[str, list[float]]] = {}
    for quantized in (False, True):
        label = "QKeras (QAT)" if quantized else "float twin"
        set_seed(config.seed)
        model = recipe.build(prepared, config, quantized)
        metric = "val_loss" if autoencoder else "val_accuracy"
        with ui.stage(f"train {label}", total=q.epochs) as advance:
            model, hist = train(
                model,
                prepared.x_train,
                y_train,
                prepared.x_val,
                y_val,
                epochs=q.epochs,
                batch_size=q.batch_size,
                learning_rate=q.learning_rate,
                patience=q.patience,
                sparsity=q.sparsity,
                loss="mse" if autoencoder else "sparse_categorical_crossentropy_logits",
                on_epoch=lambda epoch, logs, a=advance, lb=label: a(
                    1, f"train {lb} · epoch {epoch + 1} · {metric} {logs.get(metric, 0):.4f}"
                ),
            )
        models[quantized] = model
        history["qkeras" if quantized else "float"] = {k: [float(v) for v in vs] for k, vs in hist.items()}
    return Trained(qmodel=models[True], float_model=models[False], history=history)


# --- stage 3: firmware ---------------------------------------------------------------------------------------
def build_firmware(recipe: Recipe, trained: Trained, config: RunConfig, ui: StageUI):
    from trigflow.firmware.convert import FirmwareSpec, convert
    from trigflow.quantize.presets import QuantSpec

    spec = FirmwareSpec.from_config(config.firmware, input_type=QuantSpec.from_config(config.quant).input_type)
    with ui.stage("hls4ml convert + g++ compile"):
        return (recipe.convert or convert)(trained.deploy_qmodel, config.project_path, spec, force=config.force)


def firmware_cost(hls_model) -> dict[str, Any]:
    """Resources and latency: from the estimate (vendor synthesis, when run, reports the same keys)."""
    from trigflow.firmware.estimate import estimate

    return estimate(hls_model).to_report()


# --- stage 4: proof ------------------------------------------------------------------------------------------
def simulate(trained: Trained, hls_model, x: np.ndarray, ui: StageUI, out: Path) -> dict[str, np.ndarray]:
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
        "onnx_max_abs_diff": compare.max_abs_diff(outputs["onnx"], y_q),
    }


def evaluate_classifier(outputs: dict[str, np.ndarray], prepared: Prepared) -> dict[str, Any]:
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
    if trained.deploy_qmodel is not trained.qmodel:
        trained.deploy_qmodel.save(out / "qkeras_deployed.h5")
        trained.deploy_float_model.save(out / "float_deployed.h5")
    np.savez_compressed(out / "test_data.npz", x=prepared.x_test, y=prepared.y_test)
    (out / "preprocessing.json").write_text(json.dumps(prepared.preprocessing, indent=2))
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (out / "history.json").write_text(json.dumps(trained.history))


def run(config: RunConfig, ui: StageUI | None = None) -> RunResult:
    ui = ui or StageUI(quiet=True)
    recipe = recipe_for(config.kind)
    out_dir, project = config.out_dir.resolve(), config.project_path.resolve()
    with exclusive(out_dir), exclusive(project):
        refuse_existing(out_dir, config.force, "run folder")
        refuse_existing(project, config.force, "project folder")
        with published_on_success(out_dir, project):  # a failed or interrupted run leaves no project behind
            return _run(recipe, config, out_dir, ui)


def _run(recipe: Recipe, config: RunConfig, out_dir: Path, ui: StageUI) -> RunResult:
    from trigflow import report as reporting

    with ui.stage("load data"):
        arrays = recipe.load(config)
        prepared = (recipe.prepare or prepare)(arrays, config)
    trained = (recipe.train or train_twins)(recipe, prepared, config, ui)
    with atomic_dir(out_dir, force=config.force) as tmp:
        _save_models(trained, prepared, config, tmp)
        hls_model = build_firmware(recipe, trained, config, ui)
        with ui.stage("resource/latency estimate"):
            cost = firmware_cost(hls_model)
        outputs = simulate(trained, hls_model, prepared.x_test, ui, tmp)
        proof = prove(outputs)
        metrics = (recipe.evaluate or evaluate_classifier)(outputs, prepared)
        checks = check_thresholds(proof, config)
        failures = [c["detail"] for c in checks.values() if not c["passed"]]
        report = {
            "kind": config.kind,
            **proof,
            **metrics,
            "data": {"source": arrays.source, "train": len(prepared.x_train), "test": len(prepared.x_test)},
            "parameters": int(trained.deploy_qmodel.count_params()),
            **cost,
            "project_dir": str(config.project_path.resolve()),
            "run_dir": str(out_dir),
            "firmware": dict(config.firmware.__dict__),
            "thresholds": dict(config.verify.__dict__),
            "checks": checks,
            "passed": not failures,
            "failures": failures,
            "versions": versions(),
        }
        with ui.stage("report + plots"):
            if recipe.write_extras is not None:
                recipe.write_extras(report, outputs, prepared, config, tmp)
            else:
                reporting.write_plots({**outputs, "labels": prepared.y_test}, prepared.class_names, tmp)
        report["timings_s"] = {k: round(v, 3) for k, v in ui.timings.items()}
        reporting.write_report(report, tmp)
    _copy_into_project(out_dir / "report.json", config.project_path.resolve())
    return RunResult(report=report, out_dir=out_dir, failures=failures)


def _copy_into_project(report: Path, project: Path) -> None:
    """Keep the proof beside the firmware it proves."""
    write_text(project / "trigflow_report.json", report.read_text())
