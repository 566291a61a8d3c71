"""Spine layer: the public Python API — ``trigflow.run``, ``verify``, ``evaluate``, ``export_onnx``, ``estimate``.

Each function wraps the stage function the CLI command of the same name calls and returns a typed result
(report dict, paths, and the models loaded on first access). Config overrides are keywords:

* a top-level key: ``seed=1``, ``out="runs/a"``, ``project_dir="prj/a"``, ``force=True``;
* a section as a dict: ``quant={"epochs": 2, "bits": 8}``, ``firmware={"io_type": "io_stream"}``;
* a dotted key, as on the command line (``--set quant.epochs=2``): ``**{"quant.epochs": 2}``.

They apply after the kind's defaults and the ``config`` file, like ``--set``; unknown keys are one-line
``TrigflowError``s naming the nearest valid key. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trigflow.errors import TrigflowError

if TYPE_CHECKING:
    import numpy as np

    from trigflow.config import RunConfig
    from trigflow.firmware.estimate import Estimate
    from trigflow.ui import StageUI

__all__ = [
    "Backend",
    "EstimateResult",
    "EvaluateResult",
    "ExportResult",
    "IoType",
    "RtlResult",
    "Kind",
    "RunResult",
    "Strategy",
    "VerifyResult",
    "estimate",
    "evaluate",
    "export_onnx",
    "rtl",
    "run",
    "verify",
]

Kind = Literal["mlp", "cnn", "gnn", "ae", "rnn"]  # = trigflow.config.KINDS
Backend = Literal["Vitis", "Vivado", "Quartus"]  # = trigflow.config.BACKENDS
IoType = Literal["io_parallel", "io_stream"]  # = trigflow.config.IO_TYPES
Strategy = Literal["Latency", "Resource", "distributed_arithmetic"]  # = trigflow.config.STRATEGIES
PathLike = str | os.PathLike[str]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ notices, as in the CLI; set it to see them


# --- results -----------------------------------------------------------------------------------------------
def _files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


@dataclass(frozen=True)
class VerifyResult:
    """A finished ``trigflow.verify``: the report dict, the report folder and the hls4ml project."""

    report: dict[str, Any]
    run_dir: Path
    project_dir: Path
    config: RunConfig
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def files(self) -> dict[str, Path]:
        """The report folder's files by name (report.json, junit.xml, index.html, roc.png, ...)."""
        return _files(self.run_dir)

    def raise_for_failures(self) -> VerifyResult:
        """``ThresholdFailed`` (exit code 1) naming every failed criterion, for CI scripts; else ``self``."""
        from trigflow.errors import ThresholdFailed

        if self.failures:
            raise ThresholdFailed("proof failed: " + "; ".join(self.failures))
        return self


@dataclass(frozen=True)
class RunResult(VerifyResult):
    """A finished ``trigflow.run``: ``report.json`` as a dict, the folders, and the trained twins on access."""

    @cached_property
    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The test inputs (on the firmware input grid) and labels the proof used."""
        import numpy as np

        with np.load(self.run_dir / "test_data.npz") as arrays:
            return arrays["x"], arrays["y"]

    @cached_property
    def models(self) -> dict[str, Any]:
        """``{"float": ..., "qkeras": ...}``: the trained Keras models (the deployed ones where they differ)."""
        from trigflow.evaluate_run import load_models

        classes = json.loads((self.run_dir / "preprocessing.json").read_text())["classes"]
        return load_models(self.run_dir, self.config.kind, self.test_data[0], classes)


@dataclass(frozen=True)
class EvaluateResult:
    """A finished ``trigflow.evaluate``: the metrics dict and the file they were written to."""

    report: dict[str, Any]
    path: Path
    run_dir: Path
    project_dir: Path | None


@dataclass(frozen=True)
class ExportResult:
    """A finished ``trigflow.export_onnx``: ``export_report.json`` as a dict, the folder and the ONNX files."""

    report: dict[str, Any]
    out_dir: Path
    files: dict[str, Path]  # role ("qkeras", "float") -> .onnx file
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class EstimateResult:
    """``trigflow.estimate``: resources and latency per layer of a project, without vendor tools."""

    estimate: Estimate
    project_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        """The report.json keys: resources, latency_cycles, latency_ns, ii, source."""
        return self.estimate.to_report()

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per layer plus a ``total`` row."""
        return self.estimate.table()


# --- overrides ---------------------------------------------------------------------------------------------
def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def nested_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"quant.epochs": 2, "firmware": {"backend": "Vivado"}, "seed": 1}`` as one nested mapping.

    A keyword left at None means "not given", as an unset CLI flag. A bare key that belongs to a section
    (``epochs=2``) is refused with the dotted name to use; the rest is validated by ``load_config``."""
    from trigflow.config import RunConfig

    top = {f.name: f for f in dataclasses.fields(RunConfig)}
    defaults = RunConfig()
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *sections, last = key.split(".")
        if not sections and key not in top:
            owners = [
                name
                for name in top
                if dataclasses.is_dataclass(section := getattr(defaults, name))
                and key in {f.name for f in dataclasses.fields(section)}
            ]
            if owners:
                raise TrigflowError(
                    f"unknown config key '{key}': did you mean '{owners[0]}.{key}'? "
                    f"(a key of section '{owners[0]}'; valid top-level keys: {', '.join(top)})"
                )
        wrapped: dict[str, Any] = {last: value}
        for section in reversed(sections):
            wrapped = {section: wrapped}
        nested = _merge(nested, wrapped)
    return nested


def _ui(progress: bool | StageUI) -> StageUI:
    from rich.console import Console

    from trigflow.ui import StageUI

    if isinstance(progress, StageUI):
        return progress
    return StageUI(Console(stderr=True), quiet=not progress)


# --- the five operations -----------------------------------------------------------------------------------
def run(
    kind: Kind = "mlp", /, *, config: PathLike | None = None, progress: bool | StageUI = False, **overrides: Any
) -> RunResult:
    """Train the QKeras model and its float twin, build and compile the hls4ml project, prove it bit-exact
    against QKeras and estimate its cost: ``trigflow run KIND``. With ``firmware.rtl`` true, a passed run
    then goes through ``rtl`` (its failures join the run's; its proof is ``rtl_report.json``).

    ``config``: a YAML/TOML/JSON run config; ``overrides``: config keys (module docstring), e.g.
    ``quant={"epochs": 2}``; ``data`` may also be a file path (= ``data={"path": ...}``). ``progress``: show
    the stages on stderr. A failed threshold is not an exception: check ``result.passed``/``failures``."""
    from trigflow.config import load_config
    from trigflow.pipeline import run as run_pipeline

    if "kind" in overrides:
        raise TrigflowError(f"the kind is run's first argument, not a config key: give '{overrides['kind']}' there")
    if isinstance(overrides.get("data"), str | os.PathLike):
        overrides["data"] = {"path": str(overrides["data"])}
    cfg = load_config(kind, config, nested_overrides(overrides))
    ui = _ui(progress)
    result = run_pipeline(cfg, ui)
    failures = list(result.failures)
    if cfg.firmware.rtl and not failures:  # firmware.rtl: also the RTL backend, proven on the same test set
        failures += rtl(result.out_dir, force=cfg.force, progress=ui).failures
    return RunResult(
        report=result.report,
        run_dir=result.out_dir,
        project_dir=Path(result.report["project_dir"]),
        config=cfg,
        failures=failures,
    )


def verify(
    model: PathLike,
    data: PathLike | None = None,
    *,
    weights: PathLike | None = None,
    n: int | None = None,
    config: PathLike | None = None,
    backend: Backend | None = None,
    io_type: IoType | None = None,
    strategy: Strategy | None = None,
    max_float_rel_diff: float = 0.01,
    layer_precisions: dict[str, dict[str, str]] | None = None,
    custom_objects: list[str] | tuple[str, ...] = (),
    reshape: bool = False,
    progress: bool | StageUI = False,
    **overrides: Any,
) -> VerifyResult:
    """Prove the firmware of a Keras/QKeras model file: ``trigflow verify MODEL``.

    ``data``: inputs (and labels) as .h5/.npy/.npz, else ``n`` (default 10,000) inputs drawn over the input
    range; ``weights``: a weights .h5 beside an architecture .json; ``backend``/``io_type``/``strategy``: the
    ``firmware.*`` keys; ``custom_objects``: ``"module:Class"`` of the model's own layers (the module may
    register their hls4ml converter); ``reshape``: fit data of another shape (flattened ↔ (N, F); constituents
    sorted by pT, truncated or zero-padded; recorded in ``report["data"]["reshape"]``); ``overrides``: other config keys (``verify={"min_samples": 500}``,
    ``out=...``)."""
    from trigflow.verify_model import layer_config, verify_config, verify_model

    if Path(model).suffix.lower() == ".onnx":
        raise TrigflowError(
            f"{model} is an ONNX model; prove it with `trigflow firmware {model}` (hls4ml's ONNX frontend)"
        )
    firmware = {"backend": backend, "io_type": io_type, "strategy": strategy}
    cfg = verify_config(config, nested_overrides({**{f"firmware.{k}": v for k, v in firmware.items()}, **overrides}))
    file_precisions, layer_reuse = layer_config(config)  # the config file's hls4ml-style LayerName keys
    result = verify_model(
        model,
        cfg,
        weights=weights,
        data=data,
        n=n,
        layer_precisions={**file_precisions, **(layer_precisions or {})},
        layer_reuse=layer_reuse,
        max_float_rel_diff=max_float_rel_diff,
        ui=_ui(progress),
        custom_objects=custom_objects,
        reshape=reshape,
    )
    return VerifyResult(
        report=result.report,
        run_dir=result.out_dir,
        project_dir=Path(result.report["project_dir"]),
        config=cfg,
        failures=list(result.failures),
    )


def evaluate(
    run_dir: PathLike,
    data: PathLike | np.ndarray,
    labels: PathLike | np.ndarray,
    *,
    jet_pt: PathLike | np.ndarray | None = None,
    out: PathLike | None = None,
    project_dir: PathLike | None = None,
    firmware: bool = True,
    progress: bool | StageUI = False,
) -> EvaluateResult:
    """Score a finished mlp/gnn run on raw arrays (or .npy/.npz files) with the run's recorded preprocessing:
    ``trigflow evaluate RUN_DIR``. ``firmware=False`` skips the C-simulation."""
    from trigflow.evaluate_run import evaluate_run, load_array, load_jet_pt

    sources: dict[str, str] = {}
    if isinstance(data, str | os.PathLike):
        sources["path"] = str(data)
        if jet_pt is None or isinstance(jet_pt, str | os.PathLike):  # the file's 'jet_pt', or the given file
            jet_pt = load_jet_pt(data, jet_pt)
        data = load_array(data, "data")
    elif isinstance(jet_pt, str | os.PathLike):
        jet_pt = load_array(jet_pt, "jet_pt")
    if isinstance(labels, str | os.PathLike):
        sources["labels"] = str(labels)
        labels = load_array(labels, "labels")
    result = evaluate_run(
        run_dir,
        data,
        labels,
        out=out,
        project_dir=project_dir,
        firmware=firmware,
        jet_pt=jet_pt,
        sources=sources or None,
        ui=_ui(progress),
    )
    project = result.report.get("project_dir")
    return EvaluateResult(
        report=result.report,
        path=Path(result.path),
        run_dir=Path(result.report["run_dir"]),
        project_dir=Path(project) if project else None,
    )


def export_onnx(
    source: PathLike,
    out: PathLike | None = None,
    *,
    opset: int = 13,
    n: int | None = None,
    force: bool = False,
    max_abs_diff: float = 1e-5,
) -> ExportResult:
    """Write a run's QKeras and float models (or one model file) as ONNX with a dynamic batch, checked in
    onnxruntime against Keras: ``trigflow export onnx SOURCE``."""
    from trigflow.onnx import export

    report = export(source, out, opset=opset, n=n, force=force, max_abs_diff_allowed=max_abs_diff)
    return ExportResult(
        report=report,
        out_dir=Path(report["out_dir"]),
        files={role: Path(m["onnx"]) for role, m in report["models"].items()},
        failures=list(report["failures"]),
    )


def project_dir_of(path: PathLike) -> Path:
    """A project folder, or a run folder whose report.json names its project."""
    path = Path(path)
    report = path / "report.json"
    if report.is_file():
        return Path(json.loads(report.read_text())["project_dir"])
    return path


def estimate(path: PathLike) -> EstimateResult:
    """Resources (DSP/LUT/FF/BRAM) and latency per layer of an hls4ml project or a run's project, without
    vendor tools: ``trigflow estimate PATH``."""
    from trigflow.firmware.estimate import estimate_project

    project = project_dir_of(path)
    return EstimateResult(estimate=estimate_project(project), project_dir=project)


@dataclass(frozen=True)
class RtlResult:
    """A finished ``trigflow.rtl``: the RTL proof report, the RTL project folder and its manifest."""

    report: dict[str, Any]
    rtl_dir: Path
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def rtl(
    run_dir: PathLike, *, force: bool = False, max_lut: float | None = None, progress: StageUI | None = None
) -> RtlResult:
    """Trace a finished run's proven QKeras model into pipelined Verilog (da4ml) in ``<project>/rtl/``, compile
    it with Verilator and prove the RTL simulation bit-exact against the exact QKeras reference on the run's
    whole test set: ``trigflow rtl RUN_DIR``. The proof (C-sim proof keys plus ``source: "rtl"``) is written
    as ``rtl_report.json`` into the run folder. A design above ``max_lut`` LUTs (default: the part's) is
    refused before anything is written."""
    from trigflow.rtl_run import prove_rtl
    from trigflow.ui import StageUI

    report = prove_rtl(run_dir, force=force, max_lut=max_lut, ui=progress or StageUI(quiet=True))
    return RtlResult(report=report, rtl_dir=Path(report["rtl_dir"]), failures=list(report["failures"]))
