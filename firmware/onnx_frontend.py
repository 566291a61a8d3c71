"""Firmware layer: an ONNX / QONNX model → hls4ml project (ONNX frontend) → C-sim, and its onnxruntime reference.

The proof that drives these steps is ``trigflow.verify_onnx.verify_onnx`` (``trigflow firmware model.onnx``
and the ONNX branch of ``trigflow verify``). In order:

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

from trigflow.errors import TrigflowError, first_line
from trigflow.firmware.convert import FirmwareSpec, build_project, from_onnx
from trigflow.firmware.passes import apply_passes
from trigflow.firmware.passes.onnx_as_double import AsDouble
from trigflow.firmware.passes.onnx_builtin_clean import SKIPPED_OPS, BuiltinClean
from trigflow.firmware.passes.onnx_explicit_pads import ExplicitPads
from trigflow.firmware.passes.onnx_gemm_to_matmul import GemmToMatMul
from trigflow.firmware.passes.onnx_graph import LOWERED, constants
from trigflow.firmware.passes.onnx_lower_quant import LowerQuant
from trigflow.firmware.passes.onnx_qonnx_clean import QonnxClean, qonnx_version

LAYOUT_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad", "Resize")
REWRITTEN_OPS = ("Gemm", "Constant")  # rewritten by the cleaning
PROFILE_WIDTH = 32
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
            f"ONNX file {path} is not a valid ONNX model ({first_line(exc)}); re-export it"
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
        raise TrigflowError(f"onnxruntime cannot run the model: {first_line(exc)}") from None
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
    for value in constants(proto).values():
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


def convert_onnx(
    cleaned, project_dir: str | Path, spec: FirmwareSpec, precision: str, *, force: bool = False
):
    """hls4ml project of the cleaned ONNX graph in ``project_dir`` (``precision``: the default type),
    C-simulation compiled and loaded: ``firmware.convert.build_project`` with hls4ml's ONNX frontend."""
    spec = replace(spec, default_precision=precision)
    return build_project(from_onnx(cleaned), project_dir, spec, force=force)


def to_firmware_layout(x: np.ndarray, given: tuple[int, ...], cleaned_shape: tuple[int, ...]) -> np.ndarray:
    """Inputs in the layout of the cleaned graph (channels-first → channels-last after qonnx's conversion)."""
    if tuple(given) == tuple(cleaned_shape):
        return x
    moved = np.moveaxis(x, 1, -1)
    if tuple(moved.shape[1:]) == tuple(cleaned_shape):
        return np.ascontiguousarray(moved)
    if int(np.prod(given)) == int(np.prod(cleaned_shape)):
        return x.reshape((len(x), *cleaned_shape))
    raise TrigflowError(f"the cleaned graph expects inputs {cleaned_shape}, the model {given}")
