"""Firmware layer: small helpers the ONNX passes share (constants, attributes, copies, shape inference)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

__all__ = [
    "LOWERED", "QONNX_DOMAIN", "QUANT_OPS", "attr", "constants", "copy", "infer_shapes", "is_quantized"
]

QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant")
QONNX_DOMAIN = "qonnx.custom_op.general"
LOWERED = "trigflow_lower_"  # prefix of the tensors that stand in for a Quant node in the reference


def is_quantized(proto) -> bool:
    return any(node.op_type in QUANT_OPS for node in proto.graph.node)


def constants(proto) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs by tensor name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values


def attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def copy(message):
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def infer_shapes(model):
    """ONNX shape inference, with QONNX quantizers (elementwise) standing in as Identity while it runs."""
    import onnx
    from onnx import helper

    from trigflow.firmware.convert import first_line

    hidden = {}
    work = copy(model)
    for k, node in enumerate(work.graph.node):
        if node.op_type in QUANT_OPS:
            hidden[k] = copy(node)
            work.graph.node[k].CopyFrom(
                helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)
            )
    try:
        work = onnx.shape_inference.infer_shapes(work, strict_mode=True)
    except Exception as exc:
        raise TrigflowError(f"ONNX shape inference failed on the model: {first_line(exc)}") from None
    for k, node in hidden.items():
        work.graph.node[k].CopyFrom(node)
    return work
