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

import contextlib
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_dir

QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant")
QONNX_DOMAIN = "qonnx.custom_op.general"
LAYOUT_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad", "Resize")
SKIPPED_OPS = ("Identity", "Dropout")  # hls4ml passes them through
REWRITTEN_OPS = ("Gemm", "Constant")  # rewritten by the cleaning
PROFILE_WIDTH = 32
LOWERED = "trigflow_lower_"  # prefix of the tensors that stand in for a Quant node in the reference
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


def is_quantized(proto) -> bool:
    return any(node.op_type in QUANT_OPS for node in proto.graph.node)


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
def _constants(proto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def lower_quant(proto):
    """A copy of ``proto`` onnxruntime runs: each QONNX quantizer becomes standard ops (same output name)."""
    import onnx
    from onnx import helper, numpy_helper

    if not is_quantized(proto):
        return proto
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    consts = _constants(model)
    nodes = []
    extra_init = []

    def const(name: str, value: float) -> str:
        extra_init.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    for k, node in enumerate(model.graph.node):
        if node.op_type not in QUANT_OPS:
            nodes.append(node)
            continue
        p = f"{LOWERED}{k}"
        x, out = node.input[0], node.output[0]
        if node.op_type == "BipolarQuant":
            scale = node.input[1]
            nodes += [
                helper.make_node("GreaterOrEqual", [x, const(f"{p}_zero", 0.0)], [f"{p}_ge"]),
                helper.make_node("Cast", [f"{p}_ge"], [f"{p}_ge_f"], to=onnx.TensorProto.FLOAT),
                helper.make_node("Mul", [f"{p}_ge_f", const(f"{p}_two", 2.0)], [f"{p}_twice"]),
                helper.make_node("Sub", [f"{p}_twice", const(f"{p}_one", 1.0)], [f"{p}_sign"]),
                helper.make_node("Mul", [f"{p}_sign", scale], [out]),
            ]
            continue
        scale, zeropt, bitwidth = node.input[1], node.input[2], node.input[3]
        if bitwidth not in consts:
            raise TrigflowError(
                f"Quant node '{node.name}': the bit width must be a constant (hls4ml needs it too)"
            )
        bits = float(np.asarray(consts[bitwidth]).reshape(-1)[0])
        signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
        mode = str(_attr(node, "rounding_mode", "ROUND")).upper()
        low = -(2 ** (bits - 1)) + narrow if signed else 0.0
        high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - narrow
        rounding = {"ROUND": ["Round"], "FLOOR": ["Floor"], "CEIL": ["Ceil"]}.get(mode)
        if rounding is None:
            raise TrigflowError(
                f"Quant node '{node.name}': rounding_mode {mode}; hls4ml supports ROUND and FLOOR, re-export "
                "with one of those"
            )
        nodes += [
            helper.make_node("Div", [x, scale], [f"{p}_scaled"]),
            helper.make_node("Add", [f"{p}_scaled", zeropt], [f"{p}_shifted"]),
            helper.make_node(rounding[0], [f"{p}_shifted"], [f"{p}_rounded"]),
            helper.make_node("Min", [f"{p}_rounded", const(f"{p}_high", high)], [f"{p}_below"]),
            helper.make_node("Max", [f"{p}_below", const(f"{p}_low", low)], [f"{p}_int"]),
            helper.make_node("Sub", [f"{p}_int", zeropt], [f"{p}_centred"]),
            helper.make_node("Mul", [f"{p}_centred", scale], [out]),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(extra_init)
    keep = [o for o in model.opset_import if o.domain not in (QONNX_DOMAIN, "qonnx.custom_op.channels_last")]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < 13:
            entry.version = 13  # Round needs ≥ 11; QONNX models are usually 11–13 and use no op changed since
    return model


def as_double(proto):
    """A copy of ``proto`` computing in float64 (float initializers, constants, inputs, outputs, casts)."""
    import onnx
    from onnx import numpy_helper

    model = _copy(proto)
    f32, f64 = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE
    for k, t in enumerate(model.graph.initializer):
        if t.data_type == f32:
            model.graph.initializer[k].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)
            )
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        if value.type.tensor_type.elem_type == f32:
            value.type.tensor_type.elem_type = f64
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == f32:
                attr.i = f64
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == f32:
                attr.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64), attr.t.name)
                )
    return model


def run_reference(
    proto, x: np.ndarray, *, all_tensors: bool = False, double: bool = False
) -> dict[str, np.ndarray]:
    """onnxruntime outputs of ``proto`` (Quant lowered) for ``x``; ``all_tensors``: every float tensor too.

    ``double``: computed in float64, so fixed-point sums wider than float32's 24-bit significand stay exact.
    """
    import onnxruntime as ort

    model = lower_quant(proto)
    if all_tensors:
        model = _expose_tensors(model)
    if double:
        model = as_double(model)
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
    """The graph hls4ml reads, and what cleaned it (``"qonnx <version>"`` or ``"trigflow (built-in)"``)."""
    if use_qonnx is None:
        use_qonnx = qonnx_available()
    if use_qonnx:
        return _clean_qonnx(proto)
    layout = sorted({n.op_type for n in proto.graph.node if n.op_type in LAYOUT_OPS})
    if layout:
        raise TrigflowError(
            f"the model has {', '.join(layout)}: hls4ml needs it converted to channels-last by the qonnx "
            f"package, which is not installed; {QONNX_HINT}"
        )
    return _clean_builtin(proto), "trigflow (built-in)"


def _clean_qonnx(proto) -> tuple[Any, str]:
    from importlib.metadata import version

    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.transformation.remove import RemoveIdentityOps
    from qonnx.util.cleanup import cleanup_model

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    _explicit_pads(model)
    try:
        wrapper = cleanup_model(ModelWrapper(model))
        wrapper = wrapper.transform(ConvertToChannelsLastAndClean())
        wrapper = wrapper.transform(GemmToMatMul())
        wrapper = wrapper.transform(RemoveIdentityOps())
        wrapper = cleanup_model(wrapper)
    except TrigflowError:
        raise
    except Exception as exc:
        raise TrigflowError(
            f"qonnx could not clean the model: {exc.__class__.__name__}: {_first_line(exc)}"
        ) from None
    return wrapper.model, f"qonnx {version('qonnx')}"


def _explicit_pads(model) -> None:
    """qonnx's channels-last conversion (and hls4ml's Conv handler) need ``pads``, ``strides``,
    ``dilations`` and ``group`` written out on Conv and pooling nodes; ONNX lets exporters leave them at
    their defaults."""
    from onnx import helper

    for node in model.graph.node:
        kernel = _attr(node, "kernel_shape")
        if node.op_type not in ("Conv", "MaxPool", "AveragePool") or kernel is None:
            continue
        defaults = {"strides": [1] * len(kernel), "dilations": [1] * len(kernel)}
        if _attr(node, "auto_pad", "NOTSET") in ("NOTSET", "VALID"):
            defaults["pads"] = [0] * (2 * len(kernel))
        if node.op_type == "Conv":
            defaults["group"] = 1  # hls4ml's Conv handler reads it without a default
        if node.op_type == "AveragePool":
            defaults.pop("dilations")  # not an AveragePool attribute before opset 19
        for name, value in defaults.items():
            if _attr(node, name) is None:
                node.attribute.append(helper.make_attribute(name, value))


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name).strip("_") or "t"
    if base[0].isdigit():
        base = f"t_{base}"
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


def _clean_builtin(proto):
    """Constants folded in, Gemm → MatMul + Add, Identity/Dropout removed, unused initializers dropped,
    C++-safe unique names, shapes inferred (also of initializers, which hls4ml looks up in ``value_info``)."""
    from onnx import helper, numpy_helper

    model = _copy(proto)
    graph = model.graph
    consts = _constants(model)
    # protobuf ``extend`` copies: every edit is made on these copies; the graph is rebuilt from them
    initializers = {t.name: _copy(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in initializers:
            initializers[node.output[0]] = numpy_helper.from_array(consts[node.output[0]], node.output[0])
    initializer_names = set(initializers)
    inputs = [_copy(v) for v in graph.input if v.name not in initializer_names]
    outputs = [_copy(v) for v in graph.output]
    output_names = {o.name for o in outputs}
    nodes: list = []
    alias: dict[str, str] = {}
    for k, node in enumerate(_copy(nd) for nd in graph.node):
        node.input[:] = [alias.get(i, i) for i in node.input]
        if node.op_type == "Constant":
            continue
        if node.op_type in SKIPPED_OPS:
            source = node.input[0]
            if node.output[0] in output_names:  # keep the graph output name: the producer writes it directly
                for prev in nodes:
                    prev.output[:] = [node.output[0] if o == source else o for o in prev.output]
                    prev.input[:] = [node.output[0] if i == source else i for i in prev.input]
            else:
                alias[node.output[0]] = source
            continue
        if node.op_type == "Gemm":
            nodes.extend(_gemm_to_matmul(node, k, initializers, consts))
            continue
        nodes.append(node)
    used = {i for n in nodes for i in n.input}
    kept = [t for name, t in initializers.items() if name in used]
    # unique, C++-safe names for nodes and tensors (hls4ml turns them into C++ identifiers)
    taken: set[str] = set()
    rename: dict[str, str] = {}
    for value in (*inputs, *outputs):
        rename[value.name] = _identifier(value.name, taken)
    for t in kept:
        rename[t.name] = _identifier(t.name, taken)
    for k, node in enumerate(nodes):
        node.name = _identifier(f"{node.op_type}_{k}", taken)
        for out in node.output:
            if out not in rename:
                rename[out] = _identifier(f"{node.name}_out", taken)
    for node in nodes:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    for value in (*inputs, *outputs, *kept):
        value.name = rename[value.name]
    for field, values in (
        (graph.node, nodes),
        (graph.initializer, kept),
        (graph.input, inputs),
        (graph.output, outputs),
    ):
        del field[:]
        field.extend(values)
    del graph.value_info[:]
    model = infer_shapes(model)
    model.graph.value_info.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer
    )
    return model


def _copy(message):
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def infer_shapes(model):
    """ONNX shape inference, with QONNX quantizers (elementwise) standing in as Identity while it runs."""
    import onnx
    from onnx import helper

    hidden = {}
    work = _copy(model)
    for k, node in enumerate(work.graph.node):
        if node.op_type in QUANT_OPS:
            hidden[k] = _copy(node)
            work.graph.node[k].CopyFrom(
                helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)
            )
    try:
        work = onnx.shape_inference.infer_shapes(work, strict_mode=True)
    except Exception as exc:
        raise TrigflowError(f"ONNX shape inference failed on the model: {_first_line(exc)}") from None
    for k, node in hidden.items():
        work.graph.node[k].CopyFrom(node)
    return work


def _gemm_to_matmul(node, k: int, initializers: dict, consts: dict) -> list:
    """``Gemm(A, B, C)`` = alpha·A·B' + beta·C as MatMul (+ Add); alpha·B', beta·C folded into constants."""
    from onnx import helper, numpy_helper

    if _attr(node, "transA", 0):
        raise TrigflowError(
            f"Gemm node '{node.name}' with transA=1: export the model without transposing the input"
        )
    b_name = node.input[1]
    if b_name not in consts:
        raise TrigflowError(f"Gemm node '{node.name}': the weight matrix must be a constant")
    weight = np.asarray(consts[b_name], np.float32)
    weight = weight.T if _attr(node, "transB", 0) else weight
    weight = weight * np.float32(_attr(node, "alpha", 1.0))
    w_name = f"{b_name}_trigflow_matmul_{k}"
    initializers[w_name] = numpy_helper.from_array(np.ascontiguousarray(weight), w_name)
    out = node.output[0]
    if len(node.input) < 3 or not node.input[2]:
        return [helper.make_node("MatMul", [node.input[0], w_name], [out], name=node.name)]
    c_name = node.input[2]
    if c_name not in consts:
        raise TrigflowError(f"Gemm node '{node.name}': the bias must be a constant")
    bias = np.asarray(consts[c_name], np.float32) * np.float32(_attr(node, "beta", 1.0))
    bias_name = f"{c_name}_trigflow_bias_{k}"
    initializers[bias_name] = numpy_helper.from_array(bias, bias_name)
    mid = f"{out}_trigflow_matmul"
    return [
        helper.make_node("MatMul", [node.input[0], w_name], [mid], name=f"{node.name}_matmul"),
        helper.make_node("Add", [mid, bias_name], [out], name=f"{node.name}_bias"),
    ]


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


@dataclass(frozen=True)
class OnnxFirmwareSpec:
    backend: str = "Vitis"
    part: str = "xcu250-figd2104-2L-e"
    clock_period: float = 5.0
    io_type: str = "io_parallel"
    project_name: str = "myproject"


def convert_onnx(
    cleaned, project_dir: str | Path, spec: OnnxFirmwareSpec, precision: str, *, force: bool = False
):
    """hls4ml project of the cleaned ONNX graph in ``project_dir``, C-simulation compiled and loaded."""
    import hls4ml
    from trigflow.firmware.convert import _fixed_stamp, _relocate, compile_project, load_library

    project_dir = Path(project_dir).resolve()
    log = io.StringIO()
    with atomic_dir(project_dir, force=force) as tmp:
        try:
            with contextlib.redirect_stdout(log):
                config = hls4ml.utils.config_from_onnx_model(
                    cleaned, granularity="name", backend=spec.backend, default_precision=precision
                )
                hls_model = hls4ml.converters.convert_from_onnx_model(
                    cleaned,
                    output_dir=str(tmp),
                    project_name=spec.project_name,
                    backend=spec.backend,
                    part=spec.part,
                    clock_period=spec.clock_period,
                    io_type=spec.io_type,
                    hls_config=config,
                    write_weights_txt=False,
                )
                digest = hashlib.sha256(cleaned.SerializeToString())
                digest.update(json.dumps([config, spec.__dict__], sort_keys=True, default=str).encode())
                with _fixed_stamp(digest.hexdigest()[:8]):
                    hls_model.write()
        except TrigflowError:
            raise
        except Exception as exc:
            raise TrigflowError(
                f"hls4ml could not convert the ONNX model: {exc.__class__.__name__}: {_first_line(exc)}"
            ) from None
        (tmp / "convert.log").write_text(log.getvalue())
        library = compile_project(hls_model)
    _relocate(project_dir, tmp, hls_model)
    load_library(hls_model, project_dir / library.relative_to(tmp))
    return hls_model


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]
