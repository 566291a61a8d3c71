"""Firmware layer: ONNX pass — ``pads``, ``strides``, ``dilations`` and ``group`` written out on Conv and
pooling nodes. qonnx's channels-last conversion (and hls4ml's Conv handler) need them; ONNX lets exporters
leave them at their defaults."""

from __future__ import annotations

from typing import Any

from trigflow.firmware.passes.onnx_graph import attr, copy

__all__ = ["ExplicitPads"]


class ExplicitPads:
    """``apply(proto) -> (proto, changed)``: a copy with the default attributes added where missing."""

    def apply(self, proto: Any) -> tuple[Any, bool]:
        from onnx import helper

        model = copy(proto)
        changed = False
        for node in model.graph.node:
            kernel = attr(node, "kernel_shape")
            if node.op_type not in ("Conv", "MaxPool", "AveragePool") or kernel is None:
                continue
            defaults = {"strides": [1] * len(kernel), "dilations": [1] * len(kernel)}
            if attr(node, "auto_pad", "NOTSET") in ("NOTSET", "VALID"):
                defaults["pads"] = [0] * (2 * len(kernel))
            if node.op_type == "Conv":
                defaults["group"] = 1  # hls4ml's Conv handler reads it without a default
            if node.op_type == "AveragePool":
                defaults.pop("dilations")  # not an AveragePool attribute before opset 19
            for name, value in defaults.items():
                if attr(node, name) is None:
                    node.attribute.append(helper.make_attribute(name, value))
                    changed = True
        return (model, True) if changed else (proto, False)
