"""Spine layer: ``trigflow firmware MODEL.onnx`` — an ONNX / QONNX file as a starting point of the one driver.

The conversion steps are ``firmware.onnx_frontend``'s (load, onnxruntime reference, cleaning, profiled
precision, hls4ml project + C-sim); this module draws the inputs, runs them, and hands the proof to
``driver.drive``: C-sim vs onnxruntime on the same inputs. Quantized (QONNX) models: bit for bit
(``bit_exact_fraction``). Float models: ``max_abs_diff_vs_onnxruntime`` ≤ ``max_float_rel_diff`` ×
max(1, max |output|) (``float_agreement``). ``onnx_max_abs_diff``: the cleaned graph hls4ml read vs the
model as given, both in onnxruntime (the cleaning must not change the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigflow.driver import Evidence, drive
from trigflow.errors import TrigflowError
from trigflow.proof.checks import Thresholds
from trigflow.ui import StageUI

if TYPE_CHECKING:
    from trigflow.firmware.convert import FirmwareSpec

__all__ = ["OnnxFile", "draw_inputs", "summary_rows", "verify_onnx"]

DEFAULT_SAMPLES = 10_000
DEFAULT_MIN_SAMPLES = 1000
DEFAULT_FLOAT_REL_DIFF = 0.01
DEFAULT_MAX_ONNX_DIFF = 1e-5


def draw_inputs(proto, shape: tuple[int, ...], n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Inputs without a data file: over the input quantizer's range (2 % beyond each end) when a Quant node
    reads the graph input; else N(0, 1) (inputs are usually standardised features)."""
    from trigflow.firmware.onnx_frontend import graph_inputs
    from trigflow.firmware.passes.onnx_graph import attr, constants

    rng = np.random.default_rng(seed)
    name, _ = graph_inputs(proto)
    consts = constants(proto)
    quant = next((nd for nd in proto.graph.node if nd.op_type == "Quant" and nd.input[0] == name), None)
    if quant is not None and all(i in consts for i in quant.input[1:4]):
        scale = float(np.max(consts[quant.input[1]]))
        zero = float(np.max(consts[quant.input[2]]))
        bits = float(np.asarray(consts[quant.input[3]]).reshape(-1)[0])
        signed = bool(attr(quant, "signed", 1))
        low = (-(2 ** (bits - 1)) - zero) * scale if signed else -zero * scale
        high = (2 ** (bits - 1) - 1 - zero) * scale if signed else (2**bits - 1 - zero) * scale
        pad = 0.02 * (high - low)
        x = rng.uniform(low - pad, high + pad, size=(n, *shape)).astype(np.float32)
        return (
            x,
            f"{n} inputs drawn uniformly over the input quantizer range [{low:g}, {high:g}] ± 2 % "
            f"(seed {seed})",
        )
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    return x, f"{n} inputs drawn from N(0, 1) (seed {seed}); pass --data for realistic inputs"


def verify_onnx(
    path: str | Path,
    data: str | Path | None = None,
    n: int | None = None,
    out: str | Path | None = None,
    project_dir: str | Path | None = None,
    force: bool = False,
    *,
    spec: FirmwareSpec | None = None,
    precision: str | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    min_bit_exact_fraction: float = 1.0,
    max_float_rel_diff: float = DEFAULT_FLOAT_REL_DIFF,
    max_onnx_abs_diff: float = DEFAULT_MAX_ONNX_DIFF,
    use_qonnx: bool | None = None,
    seed: int = 0,
    ui: StageUI | None = None,
) -> dict[str, Any]:
    """``trigflow firmware model.onnx``: project + C-sim proven against onnxruntime; writes report.json.

    ``out`` (default ``runs/onnx``) gets ``report.json``, ``junit.xml``, ``model_clean.onnx`` (the graph
    hls4ml read) and ``outputs.npz`` (``x``, ``onnxruntime``, ``firmware``: the compared arrays);
    ``project_dir`` (default ``hls_projects/onnx``) the hls4ml project with ``trigflow_report.json``.
    """
    if n is not None and n < 1:
        raise TrigflowError(f"--n {n}: give a positive number of samples")
    if spec is None:
        from trigflow.firmware.convert import FirmwareSpec

        spec = FirmwareSpec()
    limits = Thresholds(min_samples, min_bit_exact_fraction, max_onnx_abs_diff, max_float_rel_diff)
    start = OnnxFile(
        Path(path), data, n, Path(out or "runs/onnx").resolve(), Path(project_dir or "hls_projects/onnx").resolve(),
        force, spec, precision, limits, use_qonnx, seed,
    )
    return drive(start, ui).report


@dataclass
class OnnxFile:
    """An ONNX / QONNX file as a starting point: onnxruntime reference, cleaned graph, firmware, C-sim."""

    path: Path
    data: str | Path | None
    n: int | None
    out_dir: Path
    project: Path
    force: bool
    spec: FirmwareSpec
    precision: str | None
    limits: Thresholds
    use_qonnx: bool | None
    seed: int
    kind: str = "onnx"
    out_label: str = "report folder"

    def build(self, tmp: Path, ui: StageUI) -> Evidence:
        import onnx

        from trigflow.firmware import onnx_frontend as fe
        from trigflow.firmware.csim import predict
        from trigflow.firmware.passes.onnx_graph import is_quantized
        from trigflow.proof import compare
        from trigflow.proof.checks import float_scale
        from trigflow.verify_model import load_data

        path, data, n, limits = self.path, self.data, self.n, self.limits
        with ui.stage("load ONNX model + inputs"):
            proto = fe.load_onnx(path)
            input_name, shape = fe.graph_inputs(proto, path)
            quantized = is_quantized(proto)
            if data is not None:
                x, labels = load_data(data, shape, n)
                source = str(Path(data).resolve())
            else:
                x, source = draw_inputs(proto, shape, n or DEFAULT_SAMPLES, self.seed)
                labels = None
        with ui.stage("onnxruntime reference"):
            tensors = fe.run_reference(proto, x, all_tensors=True, double=quantized)
            y_ref = tensors[proto.graph.output[0].name].reshape(len(x), -1).astype(np.float64)
        with ui.stage("clean for hls4ml"):
            cleaned, cleaner = fe.clean(proto, use_qonnx=self.use_qonnx)
            fe.check_ops(cleaned)
            parity = _cleaning_parity(cleaned, x, y_ref, shape)
            types = fe.profile_precision(tensors, proto, x)
            if self.precision:
                types = {**types, "default": self.precision, "rule": "given with --precision"}
        onnx.save(cleaned, str(tmp / "model_clean.onnx"))
        with ui.stage("hls4ml convert + g++ compile"):
            hls_model = fe.convert_onnx(cleaned, self.project, self.spec, types["default"], force=self.force)
        with ui.stage("C-simulation"):
            _, fw_shape = fe.graph_inputs(cleaned)
            y_fw = predict(hls_model, fe.to_firmware_layout(x, shape, fw_shape))
        np.savez_compressed(tmp / "outputs.npz", x=x, onnxruntime=y_ref, firmware=y_fw)
        bits = compare.compare_bits(y_ref, y_fw)
        proof = {
            "samples": bits.samples,
            "bit_exact_fraction": bits.bit_exact_fraction,
            "mismatched_samples": int(len(bits.mismatched)),
            "first_mismatch": bits.first_mismatch,
            "max_abs_diff_vs_onnxruntime": bits.max_abs_diff,
            "onnx_max_abs_diff": parity,
        }
        sections: dict[str, Any] = dict(proof)
        if labels is not None and y_ref.shape[1] > 1 and labels.dtype.kind in "iub":
            sections["accuracy"] = {
                "onnxruntime": compare.accuracy(y_ref, labels),
                "firmware": compare.accuracy(y_fw, labels),
            }
            sections["argmax_agreement_vs_onnxruntime"] = compare.argmax_agreement(y_fw, y_ref)
        sections.update(
            model={
                "path": str(Path(path).resolve()),
                "quantized": quantized,
                "input": {"name": input_name, "shape": list(shape)},
                "output": proto.graph.output[0].name,
                "ops": sorted({nd.op_type for nd in proto.graph.node}),
                "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
            },
            cleaning={
                "by": cleaner,
                "ops": sorted({nd.op_type for nd in cleaned.graph.node}),
                "model": str(self.out_dir / "model_clean.onnx"),
            },
            precision=types,
            reference=(
                "onnxruntime on the model as given, float64, QONNX Quant nodes lowered to standard ops "
                "(exact for fixed-point values up to 53 bits)"
                if quantized
                else "onnxruntime on the model as given (float32)"
            ),
            data={"source": source, "samples": int(len(x)), "labels": labels is not None},
        )
        return Evidence(
            sections=sections,
            proof=proof,
            limits=limits,
            firmware=dict(self.spec.__dict__),
            thresholds={
                "min_samples": limits.min_samples,
                "min_bit_exact_fraction": limits.min_bit_exact_fraction,
                "max_float_rel_diff": limits.max_float_rel_diff,
                "max_onnx_abs_diff": limits.max_onnx_abs_diff,
            },
            check_options={
                "quantized": quantized,
                "scale": float_scale(y_ref),
                "versus": " vs onnxruntime",
                "float_diff": "max_abs_diff_vs_onnxruntime",
                "float_pair": "C-sim vs onnxruntime",
                "parity_note": ": cleaned graph vs model as given",
            },
            extra_versions=("qonnx",),
        )

    def finish(self, report: dict[str, Any], tmp: Path, ui: StageUI) -> None:
        """Nothing beyond the report."""


def _cleaning_parity(cleaned, x: np.ndarray, y_ref: np.ndarray, shape: tuple[int, ...]) -> float | None:
    """max |Δ| of the cleaned graph vs the model as given in onnxruntime (None where qonnx's channels-last
    custom ops leave a graph onnxruntime cannot run)."""
    from trigflow.firmware.onnx_frontend import to_firmware_layout, graph_inputs, run_reference
    from trigflow.firmware.passes.onnx_graph import is_quantized

    if any(nd.domain.startswith("qonnx.custom_op.channels_last") for nd in cleaned.graph.node):
        return None
    _, clean_shape = graph_inputs(cleaned)
    out = run_reference(cleaned, to_firmware_layout(x, shape, clean_shape), double=is_quantized(cleaned))
    y = next(iter(out.values())).reshape(len(x), -1).astype(np.float64)
    return float(np.max(np.abs(y - y_ref))) if y.size else 0.0


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the terminal table of ``trigflow firmware`` (and ``trigflow verify model.onnx``)."""
    kind = "QONNX, quantized" if report["model"]["quantized"] else "float"
    rows = [
        (
            "model",
            f"{Path(report['model']['path']).name} ({kind})",
        ),
        ("samples", f"{report['samples']:,}"),
        ("bit-exact fraction (C-sim vs onnxruntime)", f"{report['bit_exact_fraction']:.6f}"),
        ("max |Δ| C-sim vs onnxruntime", f"{report['max_abs_diff_vs_onnxruntime']:.3g}"),
    ]
    if report.get("onnx_max_abs_diff") is not None:
        rows.append(("max |Δ| cleaned graph vs given (onnxruntime)", f"{report['onnx_max_abs_diff']:.3g}"))
    rows += [
        ("cleaning", report["cleaning"]["by"]),
        ("default precision", report["precision"]["default"]),
        ("project", report["project_dir"]),
    ]
    return rows
