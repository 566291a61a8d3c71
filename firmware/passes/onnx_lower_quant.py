"""Firmware layer: ONNX pass — QONNX quantizers as standard ops, so onnxruntime can run the reference.

``y = (clip(round(x / scale + zeropt), min, max) − zeropt) · scale``; ROUND is half-to-even, as ONNX ``Round``
and hls4ml's ``AP_RND_CONV``. Output tensor names are unchanged; helper tensors start with ``LOWERED``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.passes.onnx_graph import (
    LOWERED,
    QONNX_DOMAIN,
    QUANT_OPS,
    attr,
    constants,
    copy,
    is_quantized,
)

__all__ = ["LowerQuant"]


class LowerQuant:
    """``apply(proto) -> (proto, changed)``: a copy with each Quant/IntQuant/BipolarQuant as standard ops."""

    def apply(self, proto: Any) -> tuple[Any, bool]:
        if not is_quantized(proto):
            return proto, False
        from onnx import numpy_helper

        model = copy(proto)
        consts = constants(model)
        nodes: list = []
        extra_init: list = []

        def const(name: str, value: float) -> str:
            extra_init.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
            return name

        for k, node in enumerate(model.graph.node):
            if node.op_type not in QUANT_OPS:
                nodes.append(node)
            elif node.op_type == "BipolarQuant":
                nodes += _bipolar(node, f"{LOWERED}{k}", const)
            else:
                nodes += _quant(node, f"{LOWERED}{k}", const, consts)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(extra_init)
        qonnx_domains = (QONNX_DOMAIN, "qonnx.custom_op.channels_last")
        keep = [o for o in model.opset_import if o.domain not in qonnx_domains]
        del model.opset_import[:]
        model.opset_import.extend(keep)
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx") and entry.version < 13:
                # Round needs ≥ 11; QONNX models are usually 11–13 and use no op changed since
                entry.version = 13
        return model, True


def _bipolar(node, p: str, const) -> list:
    import onnx
    from onnx import helper

    x, out, scale = node.input[0], node.output[0], node.input[1]
    return [
        helper.make_node("GreaterOrEqual", [x, const(f"{p}_zero", 0.0)], [f"{p}_ge"]),
        helper.make_node("Cast", [f"{p}_ge"], [f"{p}_ge_f"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", [f"{p}_ge_f", const(f"{p}_two", 2.0)], [f"{p}_twice"]),
        helper.make_node("Sub", [f"{p}_twice", const(f"{p}_one", 1.0)], [f"{p}_sign"]),
        helper.make_node("Mul", [f"{p}_sign", scale], [out]),
    ]


def _quant(node, p: str, const, consts: dict[str, np.ndarray]) -> list:
    from onnx import helper

    x, out = node.input[0], node.output[0]
    scale, zeropt, bitwidth = node.input[1], node.input[2], node.input[3]
    if bitwidth not in consts:
        raise TrigflowError(
            f"Quant node '{node.name}': the bit width must be a constant (hls4ml needs it too)"
        )
    bits = float(np.asarray(consts[bitwidth]).reshape(-1)[0])
    signed, narrow = bool(attr(node, "signed", 1)), bool(attr(node, "narrow", 0))
    mode = str(attr(node, "rounding_mode", "ROUND")).upper()
    low = -(2 ** (bits - 1)) + narrow if signed else 0.0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - narrow
    rounding = {"ROUND": "Round", "FLOOR": "Floor", "CEIL": "Ceil"}.get(mode)
    if rounding is None:
        raise TrigflowError(
            f"Quant node '{node.name}': rounding_mode {mode}; hls4ml supports ROUND and FLOOR, re-export "
            "with one of those"
        )
    return [
        helper.make_node("Div", [x, scale], [f"{p}_scaled"]),
        helper.make_node("Add", [f"{p}_scaled", zeropt], [f"{p}_shifted"]),
        helper.make_node(rounding, [f"{p}_shifted"], [f"{p}_rounded"]),
        helper.make_node("Min", [f"{p}_rounded", const(f"{p}_high", high)], [f"{p}_below"]),
        helper.make_node("Max", [f"{p}_below", const(f"{p}_low", low)], [f"{p}_int"]),
        helper.make_node("Sub", [f"{p}_int", zeropt], [f"{p}_centred"]),
        helper.make_node("Mul", [f"{p}_centred", scale], [out]),
    ]
