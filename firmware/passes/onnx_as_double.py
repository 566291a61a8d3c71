"""Firmware layer: ONNX pass — compute in float64 (float initializers, constants, inputs, outputs, casts), so
fixed-point sums wider than float32's 24-bit significand stay exact in the onnxruntime reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from trigflow.firmware.passes.onnx_graph import copy

__all__ = ["AsDouble"]


class AsDouble:
    """``apply(proto) -> (proto, changed)``: a float64 copy; the model itself when nothing is float32."""

    def apply(self, proto: Any) -> tuple[Any, bool]:
        import onnx
        from onnx import numpy_helper

        model = copy(proto)
        f32, f64 = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE
        changed = False
        for k, t in enumerate(model.graph.initializer):
            if t.data_type == f32:
                model.graph.initializer[k].CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)
                )
                changed = True
        for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
            if value.type.tensor_type.elem_type == f32:
                value.type.tensor_type.elem_type = f64
                changed = True
        for node in model.graph.node:
            for a in node.attribute:
                if node.op_type == "Cast" and a.name == "to" and a.i == f32:
                    a.i = f64
                    changed = True
                if node.op_type == "Constant" and a.name == "value" and a.t.data_type == f32:
                    value64 = numpy_helper.to_array(a.t).astype(np.float64)
                    a.t.CopyFrom(numpy_helper.from_array(value64, a.t.name))
                    changed = True
        return (model, True) if changed else (proto, False)
