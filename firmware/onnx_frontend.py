"""Firmware layer: an ONNX / QONNX model → hls4ml project (ONNX frontend) → C-sim proven against onnxruntime.

``verify_onnx(path, data, n, out, project_dir, force)`` is ``trigflow firmware model.onnx`` (and the ONNX
branch of ``trigflow verify``). In order:

1. **load**: the file is read and checked (``onnx.checker``); one input and one output, static shape apart
   from the batch dimension.
2. **reference**: onnxruntime on the model *as given*. QONNX ``Quant``/``BipolarQuant`` nodes are custom ops
   onnxruntime cannot run; for the reference they are *lowered* to standard ops with the QONNX semantics
   (``y = (clip(round(x / scale + zeropt), min, max) − zeropt) · scale``; ROUND is half-to-even, as ONNX
   ``Round`` and hls4ml's ``AP_RND_CONV``), tensor names unchanged.
3. **clean**: hls4ml's ONNX frontend reads *cleaned* graphs (constants folded, shapes inferred, C++-safe
   names, ``Gemm`` → ``MatMul`` + ``Add``, convolutions in channels-last form). With the ``qonnx`` package
   installed (``trigflow[qonnx]``) its own cleaning is used (``cleanup_model``,
   ``ConvertToChannelsLastAndClean``, ``GemmToMatMul``, ``RemoveIdentityOps``); without it a built-in
   preparation covers graphs that need no layout change (MatMul, Gemm, Add, activations, Quant, Reshape,
   Flatten, ...) and a convolutional graph is refused with the install hint. An op hls4ml does not read is
   named, with what to use instead.
4. **precision**: every float tensor of the reference run is profiled; the default type has integer bits for
   the largest value with ≥ 2× headroom, 32 bits in all, rounding and saturation
   (``fixed<32,I,RND_CONV,SAT>``). QONNX ``Quant`` nodes set their own types (hls4ml derives them from the
   scale and bit width), so a quantized model is computed on the grid QONNX defines.
5. **firmware**: hls4ml project, weights compiled in, content stamp, g++ C-simulation (``firmware.convert``).
6. **proof**: C-sim vs onnxruntime on the same inputs. Quantized (QONNX) models: bit for bit
   (``bit_exact_fraction``). Float models: ``max_abs_diff_vs_onnxruntime`` ≤ ``max_float_rel_diff`` ×
   max(1, max |output|) (``float_agreement``). ``onnx_max_abs_diff``: the cleaned graph hls4ml read vs the
   model as given, both in onnxruntime (the cleaning must not change the numbers).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.convert import FirmwareSpec, build_project, from_onnx
from trigflow.firmware.passes import apply_passes
from trigflow.firmware.passes.onnx_as_double import AsDouble
from trigflow.firmware.passes.onnx_builtin_clean import SKIPPED_OPS, BuiltinClean
from trigflow.firmware.passes.onnx_explicit_pads import ExplicitPads
from trigflow.firmware.passes.onnx_gemm_to_matmul import GemmToMatMul
from trigflow.firmware.passes.onnx_graph import LOWERED, is_quantized
from trigflow.firmware.passes.onnx_graph import attr as _attr
from trigflow.firmware.passes.onnx_graph import constants as _constants
from trigflow.firmware.passes.onnx_lower_quant import LowerQuant
from trigflow.firmware.passes.onnx_qonnx_clean import QonnxClean, qonnx_version
from trigflow.fsio import atomic_dir, exclusive, published_on_success, refuse_existing, write_text

LAYOUT_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad", "Resize")
REWRITTEN_OPS = ("Gemm", "Constant")  # rewritten by the cleaning
PROFILE_WIDTH = 32
DEFAULT_SAMPLES = 10_000
DEFAULT_MIN_SAMPLES = 1000
DEFAULT_FLOAT_REL_DIFF = 0.01
DEFAULT_MAX_ONNX_DIFF = 1e-5
QONNX_HINT = "pip install 'trigflow[qonnx]'"

FAKE_QUANT_HINT = (
    "this looks like fake quantization traced into plain ONNX ops (e.g. `trigflow export onnx` or tf2onnx of "
    "a QKeras model, meant for CPU/GPU inference): for firmware give the QKeras .h5 to `trigflow verify`, or "
    "a QONNX model with Quant nodes"
)
INSTEAD = {
    **{
        op: FAKE_QUANT_HINT
        for op in (
            "Round",
            "Floor",
            "Ceil",
            "Clip",
            "Cast",
            "Not",
            "LessOrEqual",
            "Less",
            "Greater",
            "GreaterOrEqual",
            "Equal",
            "Where",
            "ConstantOfShape",
            "Shape",
        )
    },
    **{
        op: "use QONNX Quant nodes (hls4ml reads Quant/BipolarQuant, not QCDQ or QOperator ONNX)"
        for op in (
            "QuantizeLinear",
            "DequantizeLinear",
            "QLinearMatMul",
            "QLinearConv",
            "MatMulInteger",
            "ConvInteger",
            "DynamicQuantizeLinear",
        )
    },
    **{
        op: "use a Conv1D/Dense network (hls4ml's ONNX frontend reads no recurrent ops; the Keras model goes "
        "through `trigflow verify`)"
        for op in ("LSTM", "GRU", "RNN")
    },
    "ReduceMean": "use GlobalAveragePool on a (N, C, ...) tensor, or the Keras model (trigflow verify)",
    "ReduceSum": "use a MatMul with a constant ones matrix",
    "Gather": "use static Reshape/Transpose (fold shape arithmetic first, e.g. with qonnx cleanup)",
    "Slice": "use static Reshape/Transpose, or split the model before the slice",
    "Split": "use separate MatMuls per part, or the Keras model via `trigflow verify`",
    "Squeeze": "use Reshape with a constant shape",
    "Unsqueeze": "use Reshape with a constant shape",
    "Exp": "use a Softmax/Sigmoid op (hls4ml implements those with lookup tables)",
    "Erf": "use Relu, Tanh or Sigmoid (no GELU in hls4ml)",
    "LayerNormalization": "use BatchNormalization (folded into the preceding layer in firmware)",
    "ConvTranspose": "use Resize (upsampling) followed by Conv",
}


# ---------------------------------------------------------------------------------------------------------
# loading and checks
# ---------------------------------------------------------------------------------------------------------
def load_onnx(path: str | Path):
    """The ONNX model at ``path``, checked; one-line errors for a missing, corrupt or unusable file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"ONNX file {path} not found; check the path")
    if path.suffix.lower() != ".onnx":
        raise TrigflowError(
            f"{path} is not an .onnx file; give an ONNX model (e.g. exported with tf2onnx or torch.onnx)"
        )
    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise TrigflowError(
            f"ONNX file {path} cannot be read (corrupt or truncated: {exc.__class__.__name__}); re-export it"
        ) from None
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise TrigflowError(
            f"ONNX file {path} is not a valid ONNX model ({_first_line(exc)}); re-export it"
        ) from None
    if not len(proto.graph.node):
        raise TrigflowError(f"ONNX file {path} holds no graph (0 nodes); re-export it")
    graph_inputs(proto, path)
    return proto


def graph_inputs(proto, path: Any = "the model") -> tuple[str, tuple[int, ...]]:
    """Name and per-sample shape of the single graph input (initializers listed as inputs are skipped)."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise TrigflowError(
            f"{path}: {len(inputs)} inputs and {len(proto.graph.output)} outputs; trigflow firmware supports "
            "single-input, single-output models (concatenate inputs into one tensor)"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    if not len(dims) or any(s <= 0 for s in shape):
        described = [d.dim_param or d.dim_value for d in dims]
        raise TrigflowError(
            f"{path}: input '{inputs[0].name}' has shape {described}; firmware needs a fixed shape after the "
            "batch dimension (export with a static input shape)"
        )
    return inputs[0].name, shape


def supported_ops() -> tuple[str, ...]:
    """ONNX ops hls4ml 1.3's frontend reads, plus those the cleaning rewrites or drops."""
    import hls4ml.converters  # noqa: F401  (registers the ONNX handlers)
    from hls4ml.converters.onnx_to_hls import get_supported_onnx_layers

    return tuple(sorted({*get_supported_onnx_layers(), *SKIPPED_OPS, *REWRITTEN_OPS}))


def check_ops(proto) -> None:
    """Every op must be one hls4ml reads; otherwise name it, the node, what is supported and what to use."""
    supported = set(supported_ops())
    for node in proto.graph.node:
        if node.op_type in supported:
            continue
        hint = INSTEAD.get(node.op_type, "rewrite that part of the model with supported ops")
        raise TrigflowError(
            f"ONNX op '{node.op_type}' (node '{node.name or node.output[0]}') is not supported by hls4ml's "
            f"ONNX frontend; {hint}. Supported: {', '.join(sorted(supported))}"
        )


# ---------------------------------------------------------------------------------------------------------
# reference: QONNX Quant nodes as standard ops, for onnxruntime
# ---------------------------------------------------------------------------------------------------------
def run_reference(
    proto, x: np.ndarray, *, all_tensors: bool = False, double: bool = False
) -> dict[str, np.ndarray]:
    """onnxruntime outputs of ``proto`` (Quant lowered) for ``x``; ``all_tensors``: every float tensor too.

    ``double``: computed in float64, so fixed-point sums wider than float32's 24-bit significand stay exact.
    """
    import onnxruntime as ort

    model, _ = LowerQuant().apply(proto)
    if all_tensors:
        model = _expose_tensors(model)
    if double:
        model, _ = AsDouble().apply(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compute as written
    try:
        sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TrigflowError(f"onnxruntime cannot run the model: {_first_line(exc)}") from None
    name = sess.get_inputs()[0].name
    outputs = sess.run(None, {name: np.asarray(x, np.float64 if double else np.float32)})
    return {o.name: np.asarray(v) for o, v in zip(sess.get_outputs(), outputs, strict=True)}


def _expose_tensors(proto):
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)
    }
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if (
                out
                and out not in present
                and types.get(out) == onnx.TensorProto.FLOAT
                and not out.startswith(LOWERED)
            ):
                model.graph.output.append(
                    onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)
                )
                present.add(out)
    return model


# ---------------------------------------------------------------------------------------------------------
# cleaning for hls4ml's ONNX frontend
# ---------------------------------------------------------------------------------------------------------
def qonnx_available() -> bool:
    try:
        import qonnx.util.cleanup  # noqa: F401
    except Exception:  # ImportError, or a qonnx that does not import with this environment
        return False
    return True


def clean(proto, *, use_qonnx: bool | None = None) -> tuple[Any, str]:
    """The graph hls4ml reads, and what cleaned it (``"qonnx <version>"`` or ``"trigflow (built-in)"``): the
    cleaning passes of ``trigflow.firmware.passes`` in order."""
    if use_qonnx is None:
        use_qonnx = qonnx_available()
    if use_qonnx:
        cleaned, _ = apply_passes(proto, [ExplicitPads(), QonnxClean()])
        return cleaned, f"qonnx {qonnx_version()}"
    layout = sorted({n.op_type for n in proto.graph.node if n.op_type in LAYOUT_OPS})
    if layout:
        raise TrigflowError(
            f"the model has {', '.join(layout)}: hls4ml needs it converted to channels-last by the qonnx "
            f"package, which is not installed; {QONNX_HINT}"
        )
    cleaned, _ = apply_passes(proto, [GemmToMatMul(), BuiltinClean()])
    return cleaned, "trigflow (built-in)"


# ---------------------------------------------------------------------------------------------------------
# precision, conversion
# ---------------------------------------------------------------------------------------------------------
def profile_precision(
    tensors: dict[str, np.ndarray], proto, x: np.ndarray, width: int = PROFILE_WIDTH
) -> dict[str, Any]:
    """The default fixed-point type: integer bits for the largest |value| (inputs, every float tensor,
    weights) with ≥ 2× headroom, ``width`` bits in all, rounding and saturation."""
    largest = float(np.max(np.abs(x), initial=0.0))
    for value in tensors.values():
        if value.dtype.kind == "f" and value.size:
            largest = max(largest, float(np.nanmax(np.abs(value))))
    for value in _constants(proto).values():
        if value.dtype.kind == "f" and value.size:
            largest = max(largest, float(np.max(np.abs(value))))
    integer = max(2, math.ceil(math.log2(largest)) + 2) if largest > 0 else 2
    if integer > width - 8:
        width = integer + 16
    return {
        "default": f"fixed<{width},{integer},RND_CONV,SAT>",
        "largest_abs_value": largest,
        "rule": f"integer bits for max |value| {largest:.4g} with ≥ 2× headroom, {width} bits, RND_CONV, SAT",
    }


OnnxFirmwareSpec = FirmwareSpec  # the name verify_onnx and the CLI use (the proof driver moves out of here)


def convert_onnx(
    cleaned, project_dir: str | Path, spec: FirmwareSpec, precision: str, *, force: bool = False
):
    """hls4ml project of the cleaned ONNX graph in ``project_dir`` (``precision``: the default type),
    C-simulation compiled and loaded: ``firmware.convert.build_project`` with hls4ml's ONNX frontend."""
    spec = replace(spec, default_precision=precision)
    return build_project(from_onnx(cleaned), project_dir, spec, force=force)


def _to_firmware_layout(x: np.ndarray, given: tuple[int, ...], cleaned_shape: tuple[int, ...]) -> np.ndarray:
    """Inputs in the layout of the cleaned graph (channels-first → channels-last after qonnx's conversion)."""
    if tuple(given) == tuple(cleaned_shape):
        return x
    moved = np.moveaxis(x, 1, -1)
    if tuple(moved.shape[1:]) == tuple(cleaned_shape):
        return np.ascontiguousarray(moved)
    if int(np.prod(given)) == int(np.prod(cleaned_shape)):
        return x.reshape((len(x), *cleaned_shape))
    raise TrigflowError(f"the cleaned graph expects inputs {cleaned_shape}, the model {given}")


# ---------------------------------------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------------------------------------
def draw_inputs(proto, shape: tuple[int, ...], n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Inputs without a data file: over the input quantizer's range (2 % beyond each end) when a Quant node
    reads the graph input; else N(0, 1) (inputs are usually standardised features)."""
    rng = np.random.default_rng(seed)
    name, _ = graph_inputs(proto)
    consts = _constants(proto)
    quant = next((nd for nd in proto.graph.node if nd.op_type == "Quant" and nd.input[0] == name), None)
    if quant is not None and all(i in consts for i in quant.input[1:4]):
        scale = float(np.max(consts[quant.input[1]]))
        zero = float(np.max(consts[quant.input[2]]))
        bits = float(np.asarray(consts[quant.input[3]]).reshape(-1)[0])
        signed = bool(_attr(quant, "signed", 1))
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
    spec: OnnxFirmwareSpec | None = None,
    precision: str | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    min_bit_exact_fraction: float = 1.0,
    max_float_rel_diff: float = DEFAULT_FLOAT_REL_DIFF,
    max_onnx_abs_diff: float = DEFAULT_MAX_ONNX_DIFF,
    use_qonnx: bool | None = None,
    seed: int = 0,
    ui=None,
) -> dict[str, Any]:
    """``trigflow firmware model.onnx``: project + C-sim proven against onnxruntime; writes report.json.

    ``out`` (default ``runs/onnx``) gets ``report.json``, ``junit.xml``, ``model_clean.onnx`` (the graph
    hls4ml read) and ``outputs.npz`` (``x``, ``onnxruntime``, ``firmware``: the compared arrays);
    ``project_dir`` (default ``hls_projects/onnx``) the hls4ml project with ``trigflow_report.json``.
    """
    from trigflow.ui import StageUI

    ui = ui or StageUI(quiet=True)
    if n is not None and n < 1:
        raise TrigflowError(f"--n {n}: give a positive number of samples")
    out_dir = Path(out or "runs/onnx").resolve()
    project = Path(project_dir or "hls_projects/onnx").resolve()
    with exclusive(out_dir), exclusive(project):
        refuse_existing(out_dir, force, "report folder")
        refuse_existing(project, force, "project folder")
        with published_on_success(out_dir, project):  # a failed or interrupted run leaves no project behind
            return _verify(
                Path(path),
                data,
                n,
                out_dir,
                project,
                force,
                spec or OnnxFirmwareSpec(),
                precision,
                min_samples,
                min_bit_exact_fraction,
                max_float_rel_diff,
                max_onnx_abs_diff,
                use_qonnx,
                seed,
                ui,
            )


def _verify(
    path,
    data,
    n,
    out_dir,
    project,
    force,
    spec,
    precision,
    min_samples,
    min_bits,
    max_float_rel,
    max_onnx,
    use_qonnx,
    seed,
    ui,
) -> dict[str, Any]:
    import onnx
    from trigflow.proof import compare
    from trigflow.firmware.csim import predict

    from trigflow import report as reporting
    from trigflow.pipeline import versions

    with ui.stage("load ONNX model + inputs"):
        proto = load_onnx(path)
        input_name, shape = graph_inputs(proto, path)
        quantized = is_quantized(proto)
        if data is not None:
            from trigflow.verify import load_data

            x, labels = load_data(data, shape, n)
            source = str(Path(data).resolve())
        else:
            x, source = draw_inputs(proto, shape, n or DEFAULT_SAMPLES, seed)
            labels = None
    with ui.stage("onnxruntime reference"):
        tensors = run_reference(proto, x, all_tensors=True, double=quantized)
        y_ref = tensors[proto.graph.output[0].name].reshape(len(x), -1).astype(np.float64)
    with ui.stage("clean for hls4ml"):
        cleaned, cleaner = clean(proto, use_qonnx=use_qonnx)
        check_ops(cleaned)
        parity = _cleaning_parity(cleaned, x, y_ref, shape)
        types = profile_precision(tensors, proto, x)
        if precision:
            types = {**types, "default": precision, "rule": "given with --precision"}
    with atomic_dir(out_dir, force=force) as tmp:
        onnx.save(cleaned, str(tmp / "model_clean.onnx"))
        with ui.stage("hls4ml convert + g++ compile"):
            hls_model = convert_onnx(cleaned, project, spec, types["default"], force=force)
        with ui.stage("C-simulation"):
            _, fw_shape = graph_inputs(cleaned)
            y_fw = predict(hls_model, _to_firmware_layout(x, shape, fw_shape))
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
        checks = _checks(proof, y_ref, quantized, min_samples, min_bits, max_float_rel, max_onnx)
        failures = [c["detail"] for c in checks.values() if not c["passed"]]
        report: dict[str, Any] = {"kind": "onnx", **proof}
        if labels is not None and y_ref.shape[1] > 1 and labels.dtype.kind in "iub":
            report["accuracy"] = {
                "onnxruntime": compare.accuracy(y_ref, labels),
                "firmware": compare.accuracy(y_fw, labels),
            }
            report["argmax_agreement_vs_onnxruntime"] = compare.argmax_agreement(y_fw, y_ref)
        report.update(
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
                "model": str(out_dir / "model_clean.onnx"),
            },
            precision=types,
            reference=(
                "onnxruntime on the model as given, float64, QONNX Quant nodes lowered to standard ops "
                "(exact for fixed-point values up to 53 bits)"
                if quantized
                else "onnxruntime on the model as given (float32)"
            ),
            data={"source": source, "samples": int(len(x)), "labels": labels is not None},
            project_dir=str(project),
            run_dir=str(out_dir),
            firmware=dict(spec.__dict__),
            thresholds={
                "min_samples": min_samples,
                "min_bit_exact_fraction": min_bits,
                "max_float_rel_diff": max_float_rel,
                "max_onnx_abs_diff": max_onnx,
            },
            checks=checks,
            passed=not failures,
            failures=failures,
            versions={**versions(), **_qonnx_version()},
        )
        report["timings_s"] = {k: round(v, 3) for k, v in ui.timings.items()}
        reporting.write_report(report, tmp)
    write_text(project / "trigflow_report.json", (out_dir / "report.json").read_text())
    return report


def _cleaning_parity(cleaned, x: np.ndarray, y_ref: np.ndarray, shape: tuple[int, ...]) -> float | None:
    """max |Δ| of the cleaned graph vs the model as given in onnxruntime (None where qonnx's channels-last
    custom ops leave a graph onnxruntime cannot run)."""
    if any(nd.domain.startswith("qonnx.custom_op.channels_last") for nd in cleaned.graph.node):
        return None
    _, clean_shape = graph_inputs(cleaned)
    out = run_reference(cleaned, _to_firmware_layout(x, shape, clean_shape), double=is_quantized(cleaned))
    y = next(iter(out.values())).reshape(len(x), -1).astype(np.float64)
    return float(np.max(np.abs(y - y_ref))) if y.size else 0.0


def _checks(
    proof, y_ref, quantized, min_samples, min_bits, max_float_rel, max_onnx
) -> dict[str, dict[str, Any]]:
    n, frac = proof["samples"], proof["bit_exact_fraction"]
    checks: dict[str, tuple[bool, str]] = {}
    if quantized:
        checks["bit_exact"] = (
            frac >= min_bits,
            f"bit_exact_fraction {frac:.6f} vs onnxruntime (need ≥ {min_bits}; {proof['mismatched_samples']} "
            f"of {n} samples differ, first: {proof['first_mismatch']})",
        )
    else:
        scale = max(1.0, float(np.max(np.abs(y_ref), initial=0.0)))
        diff = proof["max_abs_diff_vs_onnxruntime"]
        checks["float_agreement"] = (
            diff <= max_float_rel * scale,
            f"float model: max |Δ| C-sim vs onnxruntime {diff:.3g} (need ≤ {max_float_rel} × {scale:.3g}; "
            f"bit_exact_fraction {frac:.6f} is not required of a float model)",
        )
    checks["samples"] = (n >= min_samples, f"samples {n} (need ≥ {min_samples})")
    parity = proof["onnx_max_abs_diff"]
    if parity is not None:
        checks["onnx_parity"] = (
            parity <= max_onnx,
            f"onnx_max_abs_diff {parity:.3g}: cleaned graph vs model as given (need ≤ {max_onnx})",
        )
    return {name: {"passed": bool(ok), "detail": detail} for name, (ok, detail) in checks.items()}


def _qonnx_version() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"qonnx": version("qonnx")}
    except PackageNotFoundError:
        return {}


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]
