"""Rewrite passes (trigflow.firmware.passes): each reports whether it changed the model, and a second apply
changes nothing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trigflow.firmware.passes import apply_passes
from trigflow.firmware.passes.exact_types import type_for
from trigflow.firmware.passes.onnx_as_double import AsDouble
from trigflow.firmware.passes.onnx_builtin_clean import BuiltinClean
from trigflow.firmware.passes.onnx_explicit_pads import ExplicitPads
from trigflow.firmware.passes.onnx_gemm_to_matmul import GemmToMatMul
from trigflow.firmware.passes.onnx_lower_quant import LowerQuant

QDOMAIN = "qonnx.custom_op.general"


def _model(nodes, inits, x_shape=("N", 4), y_shape=("N", 3), extra_opsets=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), *extra_opsets])


def gemm_model():
    """x → Identity → Gemm(W' from a Constant node, transB=1, alpha, beta·b) → y."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w")),
        helper.make_node("Identity", ["x"], ["x1"], name="id"),
        helper.make_node("Gemm", ["x1", "w", "b"], ["y"], name="gemm/0", transB=1, alpha=0.5, beta=2.0),
    ]
    return _model(nodes, [numpy_helper.from_array(b, "b")])


def quant_model():
    nodes = [
        helper.make_node(
            "Quant", ["x", "s", "z", "bits"], ["y"], name="q", domain=QDOMAIN, signed=1, narrow=0,
            rounding_mode="ROUND",
        ),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("s", 2.0**-4), ("z", 0.0),
                                                                              ("bits", 6.0))]
    return _model(nodes, inits, y_shape=("N", 4), extra_opsets=[helper.make_opsetid(QDOMAIN, 1)])


def conv_model():
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("MaxPool", ["c"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    return _model(nodes, [w], x_shape=(1, 1, 6, 6), y_shape=(1, 2, 2, 2))


def _run(proto, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _idempotent(p, proto):
    once, changed = p.apply(proto)
    assert changed
    again, changed_again = p.apply(once)
    assert not changed_again
    assert again.SerializeToString() == once.SerializeToString()
    return once


def test_gemm_to_matmul_keeps_the_numbers_and_runs_once():
    proto = gemm_model()
    out = _idempotent(GemmToMatMul(), proto)
    assert [n.op_type for n in out.graph.node] == ["Constant", "Identity", "MatMul", "Add"]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(proto, x), rtol=1e-6)


def test_builtin_clean_then_nothing_left_to_clean():
    proto, _ = GemmToMatMul().apply(gemm_model())
    out = _idempotent(BuiltinClean(), proto)
    assert [n.op_type for n in out.graph.node] == ["MatMul", "Add"]
    assert all(n.name.isidentifier() for n in out.graph.node)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(gemm_model(), x), rtol=1e-6)


def test_explicit_pads_once():
    out = _idempotent(ExplicitPads(), conv_model())
    conv = out.graph.node[0]
    assert {a.name for a in conv.attribute} >= {"pads", "strides", "dilations", "group"}
    assert ExplicitPads().apply(gemm_model())[1] is False  # no conv or pooling: nothing to do


def test_lower_quant_once_and_as_double_once():
    lowered = _idempotent(LowerQuant(), quant_model())
    assert not any(n.op_type == "Quant" for n in lowered.graph.node)
    x = np.array([[0.03, -0.5, 1.97, 9.0]], np.float32)
    np.testing.assert_array_equal(_run(lowered, x), [[0.0625 * np.round(0.03 * 16), -0.5, 1.9375, 1.9375]])
    double = _idempotent(AsDouble(), lowered)
    assert double.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    assert LowerQuant().apply(gemm_model())[1] is False


def test_runner_applies_in_order_and_reports_any_change():
    proto, changed = apply_passes(gemm_model(), [GemmToMatMul(), BuiltinClean()])
    assert changed and [n.op_type for n in proto.graph.node] == ["MatMul", "Add"]
    same, changed = apply_passes(proto, [GemmToMatMul(), BuiltinClean()])
    assert not changed and same is proto


def test_qonnx_clean_once():
    pytest.importorskip("qonnx.util.cleanup")
    from trigflow.firmware.passes.onnx_qonnx_clean import QonnxClean

    proto, _ = ExplicitPads().apply(conv_model())
    _idempotent(QonnxClean(), proto)


def test_type_for_keeps_a_sign_bit_and_no_negative_integer_bits():
    """The precision strings the GNN conversion writes: a signed type has ≥ 1 integer bit, an unsigned ≥ 0."""
    assert str(type_for(0.0, 0.25, 4).type) == "ufixed<4,0>"
    assert str(type_for(-0.25, 0.2, 4).type) == "fixed<5,1>"
    assert str(type_for(0.0, 0.0, 3).type) == "ufixed<3,0>"
    assert str(type_for(0.0, 0.0, 0).type) == "ufixed<1,1>"
    assert str(type_for(-1.5, 3.0, 2).type) == "fixed<5,3>"
    assert type_for(-1.5, 3.0, 2)[1:] == (-1.5, 3.0)


# --- Keras passes -------------------------------------------------------------------------------------------
tf = pytest.importorskip("tensorflow")


def test_dense_to_pointwise_conv_once():
    from trigflow.firmware.passes.dense_to_pointwise_conv import DenseToPointwiseConv
    from trigflow.models.gnn import build_deepsets
    from trigflow.models.mlp import build_mlp

    model = build_deepsets(8, 3, 5, quantized=True)
    once, changed = DenseToPointwiseConv().apply(model)
    assert changed and type(once.get_layer("phi_dense_0")).__name__ == "QConv1D"
    again, changed = DenseToPointwiseConv().apply(once)
    assert not changed and again is once
    x = np.random.default_rng(3).normal(size=(20, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(once.predict(x, verbose=0), model.predict(x, verbose=0))
    mlp = build_mlp(4, 3, (8,), quantized=True)
    assert DenseToPointwiseConv().apply(mlp) == (mlp, False)


def test_garnet_weights_once():
    pytest.importorskip("hls4ml")
    from trigflow.firmware.passes.garnet_weights import GarNetWeights
    from trigflow.models.gnn import build_garnet

    model = build_garnet(8, 3, 5, quantized=True)
    surgery = GarNetWeights()
    once, changed = surgery.apply(model)
    assert changed and set(surgery.weights) == set(surgery.precisions) and surgery.weights
    assert all(type(layer).__name__ != "GarNetHLS" for layer in once.layers)
    again, changed = GarNetWeights().apply(once)
    assert not changed and again is once


# --- Keras passes -------------------------------------------------------------------------------------------
def test_concatenate_last_axis_moves_an_item_axis_concatenate_exactly():
    """Concatenate(axis=1) of (P, E) tensors → Permute, Concatenate(axis=-1), Permute: same outputs, the
    Concatenate's name kept for its consumer; a second apply changes nothing."""
    import tensorflow as tf

    from trigflow.firmware.passes.concat_last_axis import ConcatenateLastAxis

    layers = tf.keras.layers
    x_in = tf.keras.Input((3, 6), name="x")
    a = layers.Dense(6, name="a")(x_in)
    b = layers.Dense(6, name="b")(x_in)
    joined = layers.Concatenate(axis=1, name="joined")([a, b])  # (6, 6)
    y = layers.Conv1D(2, 1, name="after")(layers.Permute((2, 1), name="t")(joined))
    model = tf.keras.Model(x_in, y)
    new, changed = ConcatenateLastAxis().apply(model)
    assert changed
    assert type(new.get_layer("joined")).__name__ == "Permute"
    assert new.get_layer("joined_last").get_config()["axis"] == -1
    x = np.random.default_rng(0).normal(size=(16, 3, 6)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), new.predict(x, verbose=0))
    again, changed = ConcatenateLastAxis().apply(new)
    assert not changed and again is new


def test_concatenate_last_axis_leaves_last_axis_concatenate_alone():
    import tensorflow as tf

    from trigflow.firmware.passes.concat_last_axis import ConcatenateLastAxis

    x_in = tf.keras.Input((3, 2))
    y = tf.keras.layers.Concatenate(axis=-1)([x_in, x_in])
    model = tf.keras.Model(x_in, y)
    assert ConcatenateLastAxis().apply(model) == (model, False)
