"""Firmware layer: ONNX pass — ``Gemm(A, B, C)`` = alpha·A·B' + beta·C as MatMul (+ Add), with alpha·B' and
beta·C folded into new constants (hls4ml's ONNX frontend reads MatMul and Add, not Gemm)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.passes.onnx_graph import attr, constants, copy

__all__ = ["GemmToMatMul"]


class GemmToMatMul:
    """``apply(proto) -> (proto, changed)``: a copy with every Gemm rewritten; the model itself if none."""

    def apply(self, proto: Any) -> tuple[Any, bool]:
        if not any(node.op_type == "Gemm" for node in proto.graph.node):
            return proto, False
        model = copy(proto)
        consts = constants(model)
        added: dict[str, Any] = {}
        nodes: list = []
        for k, node in enumerate(model.graph.node):
            nodes.extend(_rewrite(node, k, added, consts) if node.op_type == "Gemm" else [copy(node)])
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(added.values())
        return model, True


def _rewrite(node, k: int, initializers: dict, consts: dict) -> list:
    from onnx import helper, numpy_helper

    if attr(node, "transA", 0):
        raise TrigflowError(
            f"Gemm node '{node.name}' with transA=1: export the model without transposing the input"
        )
    b_name = node.input[1]
    if b_name not in consts:
        raise TrigflowError(f"Gemm node '{node.name}': the weight matrix must be a constant")
    weight = np.asarray(consts[b_name], np.float32)
    weight = weight.T if attr(node, "transB", 0) else weight
    weight = weight * np.float32(attr(node, "alpha", 1.0))
    w_name = f"{b_name}_trigflow_matmul_{k}"
    initializers[w_name] = numpy_helper.from_array(np.ascontiguousarray(weight), w_name)
    out = node.output[0]
    if len(node.input) < 3 or not node.input[2]:
        return [helper.make_node("MatMul", [node.input[0], w_name], [out], name=node.name)]
    c_name = node.input[2]
    if c_name not in consts:
        raise TrigflowError(f"Gemm node '{node.name}': the bias must be a constant")
    bias = np.asarray(consts[c_name], np.float32) * np.float32(attr(node, "beta", 1.0))
    bias_name = f"{c_name}_trigflow_bias_{k}"
    initializers[bias_name] = numpy_helper.from_array(bias, bias_name)
    mid = f"{out}_trigflow_matmul"
    return [
        helper.make_node("MatMul", [node.input[0], w_name], [mid], name=f"{node.name}_matmul"),
        helper.make_node("Add", [mid, bias_name], [out], name=f"{node.name}_bias"),
    ]
