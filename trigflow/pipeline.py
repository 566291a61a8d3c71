"""Spine layer: the only place that knows the order of the stages.

``run(config)``: data → models (QKeras + float twin, trained) → firmware (hls4ml project, compiled C-sim) →
proof (bits vs QKeras, float, ONNX) → report. Each stage is a function of an earlier layer
(``data.prepare``, ``quantize.train``, ``firmware``, ``proof.checks``); what differs between model kinds
comes from the kind's ``Recipe`` (``trigflow.kinds``). The run is a ``StartingPoint`` of the one driver
(``trigflow.driver.drive``), which writes the verdict and the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.driver import Evidence, RunResult, drive, firmware_cost, simulate
from trigflow.kinds import Prepared, Recipe, Trained, recipe_for
from trigflow.ui import StageUI

__all__ = ["RunResult", "build_firmware", "pruning_sections", "run"]


def build_firmware(recipe: Recipe, trained: Trained, config: RunConfig, ui: StageUI):
    from trigflow.firmware.convert import FirmwareSpec, convert
    from trigflow.quantize.presets import QuantSpec

    spec = FirmwareSpec.from_config(config.firmware, input_type=QuantSpec.from_config(config.quant).input_type)
    with ui.stage("hls4ml convert + g++ compile"):
        return (recipe.convert or convert)(trained.deploy_qmodel, config.project_path, spec, force=config.force)


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


def pruning_sections(trained: Trained, config: RunConfig) -> dict[str, Any]:
    """``pruning`` (target and reached fraction of zero kernel weights) when the run prunes, and a verdict
    note when the target was not reached (pruning starts after ``PRUNING_BEGIN_EPOCHS`` epochs)."""
    from trigflow.quantize.train import PRUNING_BEGIN_EPOCHS, sparsity_of

    target = config.quant.sparsity
    if target <= 0:
        return {}
    reached = round(sparsity_of(trained.deploy_qmodel), 4)
    sections: dict[str, Any] = {"pruning": {"target": target, "reached": reached}}
    if reached < target - 0.01:
        sections["verdict_note"] = (
            f"pruning reached {reached:.1%} zero weights, not the {target:.0%} target: it starts after "
            f"epoch {PRUNING_BEGIN_EPOCHS}; train more epochs, or --set quant.sparsity=0"
        )
    return sections


def run(config: RunConfig, ui: StageUI | None = None) -> RunResult:
    return drive(KindRun(recipe_for(config.kind), config), ui)


@dataclass
class KindRun:
    """A kind's recipe as a starting point: data → twins → firmware → outputs of every implementation."""

    recipe: Recipe
    config: RunConfig
    out_label: str = "run folder"

    def __post_init__(self) -> None:
        self.kind = self.config.kind
        self.out_dir = self.config.out_dir.resolve()
        self.project = self.config.project_path.resolve()
        self.force = self.config.force
        self._outputs: dict[str, np.ndarray] = {}
        self._prepared: Prepared | None = None

    def build(self, tmp: Path, ui: StageUI) -> Evidence:
        from trigflow.data.prepare import prepare
        from trigflow.proof import checks
        from trigflow.quantize.presets import QuantSpec
        from trigflow.quantize.train import train_twins

        recipe, config = self.recipe, self.config
        with ui.stage("load data"):
            arrays = recipe.load(config)
            if recipe.prepare is not None:
                prepared = recipe.prepare(arrays, config)
            else:
                prepared = prepare(arrays, config, QuantSpec.from_config(config.quant))
        trained = (recipe.train or train_twins)(recipe, prepared, config, ui)
        _save_models(trained, prepared, config, tmp)
        hls_model = build_firmware(recipe, trained, config, ui)
        with ui.stage("resource/latency estimate"):
            cost = firmware_cost(hls_model)
        outputs = simulate(trained, hls_model, prepared.x_test, ui, tmp)
        proof = checks.prove(outputs)
        metrics = (recipe.evaluate or checks.evaluate_classifier)(outputs, prepared)
        self._outputs, self._prepared = outputs, prepared
        return Evidence(
            sections={
                **proof,
                **metrics,
                **pruning_sections(trained, config),
                "data": {"source": arrays.source, "train": len(prepared.x_train), "test": len(prepared.x_test)},
                "parameters": int(trained.deploy_qmodel.count_params()),
                **cost,
            },
            proof=proof,
            limits=checks.Thresholds(**config.verify.__dict__),
            firmware=dict(config.firmware.__dict__),
            thresholds=dict(config.verify.__dict__),
        )

    def finish(self, report: dict[str, Any], tmp: Path, ui: StageUI) -> None:
        from trigflow import report as reporting

        prepared = self._prepared
        assert prepared is not None
        with ui.stage("report + plots"):
            if self.recipe.write_extras is not None:
                self.recipe.write_extras(report, self._outputs, prepared, self.config, tmp)
            else:
                reporting.write_plots({**self._outputs, "labels": prepared.y_test}, prepared.class_names, tmp)
