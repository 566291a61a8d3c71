"""Firmware layer: ONNX pass — trigflow's own cleaning for hls4ml's ONNX frontend (without the qonnx package):
constants folded into initializers, Identity/Dropout removed, unused initializers dropped, C++-safe unique
names, shapes inferred (also of initializers, which hls4ml looks up in ``value_info``). Run
``GemmToMatMul`` before it; graphs that need a channels-last conversion need ``QonnxClean`` instead."""

from __future__ import annotations

import re
from typing import Any

from trigflow.firmware.passes.onnx_graph import constants, copy, infer_shapes

__all__ = ["BuiltinClean", "SKIPPED_OPS"]

SKIPPED_OPS = ("Identity", "Dropout")  # hls4ml passes them through


class BuiltinClean:
    """``apply(proto) -> (proto, changed)``; ``changed``: the cleaned graph differs from the given one."""

    def apply(self, proto: Any) -> tuple[Any, bool]:
        cleaned = _clean(proto)
        if cleaned.SerializeToString(deterministic=True) == proto.SerializeToString(deterministic=True):
            return proto, False
        return cleaned, True


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name).strip("_") or "t"
    if base[0].isdigit():
        base = f"t_{base}"
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


def _clean(proto):
    from onnx import helper, numpy_helper

    model = copy(proto)
    graph = model.graph
    consts = constants(model)
    # protobuf ``extend`` copies: every edit is made on these copies; the graph is rebuilt from them
    initializers = {t.name: copy(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in initializers:
            initializers[node.output[0]] = numpy_helper.from_array(consts[node.output[0]], node.output[0])
    initializer_names = set(initializers)
    inputs = [copy(v) for v in graph.input if v.name not in initializer_names]
    outputs = [copy(v) for v in graph.output]
    output_names = {o.name for o in outputs}
    nodes: list = []
    alias: dict[str, str] = {}
    for node in (copy(nd) for nd in graph.node):
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
