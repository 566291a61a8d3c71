"""ONNX → hls4ml: a float Keras MLP exported with tf2onnx and a QONNX MLP built with onnx.helper go to
firmware; the C-sim is compared with onnxruntime (float: a stated tolerance; QONNX: bit for bit)."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from trigflow.firmware import onnx_frontend as fe
from typer.testing import CliRunner

from trigflow.errors import TrigflowError
from trigflow.verify_onnx import verify_onnx

FLOAT_TOLERANCE = 1e-4  # profiled fixed<32,I,RND_CONV,SAT> types; measured ≈ 5e-7 on these models
QDOMAIN = "qonnx.custom_op.general"


def _qonnx_model(nodes, inits, x: tuple[str, int], y: tuple[str, int]):
    """A one-input one-output graph with a dynamic batch, opset 13 plus the QONNX domain."""
    graph = helper.make_graph(
        nodes,
        "qonnx_test",
        [helper.make_tensor_value_info(x[0], TensorProto.FLOAT, ["N", x[1]])],
        [helper.make_tensor_value_info(y[0], TensorProto.FLOAT, ["N", y[1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)])


def _quant(name, x, scale, bits, *, signed=1, narrow=0, mode="ROUND"):
    node = helper.make_node(
        "Quant",
        [x, f"{name}_s", f"{name}_z", f"{name}_b"],
        [f"{name}_out"],
        name=name,
        domain=QDOMAIN,
        signed=signed,
        narrow=narrow,
        rounding_mode=mode,
    )
    params = [
        numpy_helper.from_array(np.array(v, np.float32), f"{name}_{k}")
        for k, v in (("s", scale), ("z", 0.0), ("b", bits))
    ]
    return node, params


def qonnx_mlp(path, seed=0):
    """x → Quant(16 b, 2⁻¹⁰) → MatMul(Quant(W, 6 b, 2⁻⁵)) + Quant(b) → Relu → Quant(unsigned 6 b, 2⁻⁴)
    → MatMul + b."""
    rng = np.random.default_rng(seed)
    w0, b0 = 0.5 * rng.standard_normal((10, 12)), 0.3 * rng.standard_normal(12)
    w1, b1 = 0.5 * rng.standard_normal((12, 3)), 0.3 * rng.standard_normal(3)
    inits = [
        numpy_helper.from_array(np.asarray(a, np.float32), n)
        for a, n in ((w0, "w0"), (b0, "b0"), (w1, "w1"), (b1, "b1"))
    ]
    nodes = []
    for spec in (
        ("q_in", "x", 2.0**-10, 16),
        ("q_w0", "w0", 2.0**-5, 6),
        ("q_b0", "b0", 2.0**-5, 6),
        ("q_w1", "w1", 2.0**-5, 6),
        ("q_b1", "b1", 2.0**-5, 6),
    ):
        node, params = _quant(*spec)
        nodes.append(node)
        inits += params
    nodes += [
        helper.make_node("MatMul", ["q_in_out", "q_w0_out"], ["mm0"], name="mm0"),
        helper.make_node("Add", ["mm0", "q_b0_out"], ["a0"], name="a0"),
        helper.make_node("Relu", ["a0"], ["r0"], name="r0"),
    ]
    node, params = _quant("q_r0", "r0", 2.0**-4, 6, signed=0)
    nodes.append(node)
    inits += params
    nodes += [
        helper.make_node("MatMul", ["q_r0_out", "q_w1_out"], ["mm1"], name="mm1"),
        helper.make_node("Add", ["mm1", "q_b1_out"], ["y"], name="a1"),
    ]
    onnx.save(_qonnx_model(nodes, inits, ("x", 10), ("y", 3)), str(path))
    return path


def torch_like_gemm(path, seed=0):
    """What torch.onnx.export writes for Linear → ReLU → Linear: Gemm with transB=1, dotted names."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((0.4 * rng.standard_normal(s)).astype(np.float32), n)
        for n, s in (
            ("fc1.weight", (12, 10)),
            ("fc1.bias", (12,)),
            ("fc2.weight", (3, 12)),
            ("fc2.bias", (3,)),
        )
    ]
    nodes = [
        helper.make_node(
            "Gemm", ["input.1", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"], name="/fc1/Gemm", transB=1
        ),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/act/Relu_output_0"], name="/act/Relu"),
        helper.make_node(
            "Gemm",
            ["/act/Relu_output_0", "fc2.weight", "fc2.bias"],
            ["/fc2/Gemm_output_0"],
            name="/fc2/Gemm",
            transB=1,
            alpha=0.5,
            beta=2.0,
        ),
        helper.make_node("Identity", ["/fc2/Gemm_output_0"], ["output"], name="/out/Identity"),
    ]
    graph = helper.make_graph(
        nodes,
        "torch_like",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture(scope="module")
def float_keras_onnx(tmp_path_factory):
    import tensorflow as tf

    from trigflow.onnx import export_onnx

    rng = np.random.default_rng(3)
    inputs = tf.keras.Input((10,), name="features")
    h = tf.keras.layers.Dense(16, activation="relu", name="dense_0")(inputs)
    h = tf.keras.layers.Dense(8, activation="relu", name="dense_1")(h)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(h))
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights(
                [(0.4 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()]
            )
    return export_onnx(model, tmp_path_factory.mktemp("keras") / "float_mlp.onnx")


def test_float_keras_mlp_through_the_cli(float_keras_onnx, tmp_path):
    from trigflow.cli import app

    x = np.random.default_rng(4).standard_normal((1200, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out, project = tmp_path / "out", tmp_path / "prj"
    args = [
        "firmware",
        str(float_keras_onnx),
        "--data",
        str(tmp_path / "x.npy"),
        "--out",
        str(out),
        "--project-dir",
        str(project),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    saved = np.load(out / "outputs.npz")
    np.testing.assert_array_equal(
        saved["onnxruntime"], fe.run_reference(onnx.load(str(float_keras_onnx)), x)["logits"]
    )
    np.testing.assert_allclose(saved["firmware"], saved["onnxruntime"], rtol=0, atol=FLOAT_TOLERANCE)
    assert report["max_abs_diff_vs_onnxruntime"] <= FLOAT_TOLERANCE
    assert report["onnx_max_abs_diff"] == 0.0  # cleaning did not change the numbers
    assert report["samples"] == 1200 and report["passed"] and not report["model"]["quantized"]
    assert set(report["checks"]) == {"float_agreement", "samples", "onnx_parity"}
    for key in (
        "bit_exact_fraction",
        "project_dir",
        "versions",
        "timings_s",
        "failures",
        "precision",
        "cleaning",
    ):
        assert key in report
    assert (project / "firmware" / "myproject.cpp").is_file() and (project / "trigflow_report.json").is_file()
    assert "PASS" in result.output
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, TrigflowError) and "--force" in str(again.exception)


def test_qonnx_mlp_is_bit_exact(tmp_path):
    path = qonnx_mlp(tmp_path / "q.onnx")
    report = verify_onnx(path, None, 2000, tmp_path / "out", tmp_path / "prj", False)
    saved = np.load(tmp_path / "out" / "outputs.npz")
    np.testing.assert_array_equal(saved["firmware"], saved["onnxruntime"])
    assert report["bit_exact_fraction"] == 1.0 and report["passed"] and report["model"]["quantized"]
    x = saved["x"]
    assert x.min() < -32 and x.max() > 32  # drawn beyond the 16-bit input range: saturation is covered
    assert "bit_exact" in report["checks"] and "float_agreement" not in report["checks"]


def test_quant_lowering_follows_the_qonnx_definition():
    x = np.linspace(-5, 5, 401, dtype=np.float32)[:, None]
    for signed, narrow, mode, bits, scale in (
        (1, 0, "ROUND", 4, 0.25),
        (1, 1, "FLOOR", 3, 0.5),
        (0, 0, "ROUND", 3, 0.5),
    ):
        node, params = _quant("q", "x", scale, bits, signed=signed, narrow=narrow, mode=mode)
        model = _qonnx_model([node], params, ("x", 1), ("q_out", 1))
        low = -(2 ** (bits - 1)) + narrow if signed else 0
        high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        rounded = np.round(x / scale) if mode == "ROUND" else np.floor(x / scale)  # np.round: half to even
        expected = np.clip(rounded, low, high) * scale
        np.testing.assert_array_equal(fe.run_reference(model, x)["q_out"], expected)


def test_builtin_cleaning_keeps_the_numbers(tmp_path):
    """Gemm (transB, alpha, beta) → MatMul + Add, Identity dropped, dotted/slashed names made C++-safe."""
    proto = fe.load_onnx(torch_like_gemm(tmp_path / "g.onnx"))
    cleaned, by = fe.clean(proto, use_qonnx=False)
    assert by == "trigflow (built-in)"
    assert [n.op_type for n in cleaned.graph.node] == ["MatMul", "Add", "Relu", "MatMul", "Add"]
    names = [n.name for n in cleaned.graph.node] + [
        t for n in cleaned.graph.node for t in (*n.input, *n.output)
    ]
    assert all(name.isidentifier() for name in names)
    fe.check_ops(cleaned)
    x = np.random.default_rng(0).standard_normal((50, 10)).astype(np.float32)
    before = fe.run_reference(proto, x)["output"]
    after = next(iter(fe.run_reference(cleaned, x).values()))
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path, float_keras_onnx):
    with pytest.raises(TrigflowError, match="not found"):
        fe.load_onnx(tmp_path / "nope.onnx")
    with pytest.raises(TrigflowError, match="not an .onnx file"):
        fe.load_onnx(_write(tmp_path, "m.h5", b"x"))
    with pytest.raises(TrigflowError, match="re-export it"):
        fe.load_onnx(_write(tmp_path, "garbage.onnx", b"\x00\xff" * 100))
    truncated = float_keras_onnx.read_bytes()
    with pytest.raises(TrigflowError, match="re-export it") as info:
        fe.load_onnx(_write(tmp_path, "truncated.onnx", truncated[: len(truncated) // 2]))
    assert "\n" not in str(info.value)


def test_unsupported_op_names_the_op_and_the_alternative(tmp_path):
    """A QKeras model exported for inference (fake-quant as Round/Clip/...) is not a firmware input."""
    from trigflow.models.mlp import build_mlp

    from trigflow.onnx import export_onnx

    path = export_onnx(build_mlp(16, 5, (8,)), tmp_path / "q.onnx")
    proto = fe.load_onnx(path)
    cleaned, _ = fe.clean(proto, use_qonnx=False)
    with pytest.raises(TrigflowError) as info:
        fe.check_ops(cleaned)
    message = str(info.value)
    assert "not supported by hls4ml's ONNX frontend" in message and "trigflow verify" in message
    assert "Supported: " in message and "MatMul" in message and "\n" not in message


def test_convolutions_need_qonnx_or_say_so(tmp_path):
    weight = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3, 3])],
        [weight],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(TrigflowError, match=r"Conv.*channels-last.*trigflow\[qonnx\]"):
        fe.clean(proto, use_qonnx=False)


def torch_like_cnn(path, seed=0):
    """As torch.onnx.export writes Conv2d(2→3, 3×3) → ReLU → MaxPool2d(2) → Flatten → Linear: NCHW, defaults
    implicit."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((0.4 * rng.standard_normal(s)).astype(np.float32), n)
        for n, s in (
            ("conv.weight", (3, 2, 3, 3)),
            ("conv.bias", (3,)),
            ("fc.weight", (4, 12)),
            ("fc.bias", (4,)),
        )
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", kernel_shape=[3, 3]
        ),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["output"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "torch_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_channels_first_cnn_with_qonnx_cleaning(tmp_path):
    """With trigflow[qonnx]: qonnx converts the NCHW convolution to channels-last; measured max |Δ| ≈ 1e-6."""
    pytest.importorskip("qonnx.util.cleanup")
    report = verify_onnx(
        torch_like_cnn(tmp_path / "cnn.onnx"), None, 1000, tmp_path / "out", tmp_path / "prj", False
    )
    saved = np.load(tmp_path / "out" / "outputs.npz")
    np.testing.assert_allclose(saved["firmware"], saved["onnxruntime"], rtol=0, atol=FLOAT_TOLERANCE)
    assert report["passed"] and report["cleaning"]["by"].startswith("qonnx")


def test_a_run_that_fails_after_publishing_leaves_no_project(tmp_path, monkeypatch):
    """The project is in place after convert; a failure in the C-simulation removes it with the report folder."""
    path = qonnx_mlp(tmp_path / "q.onnx")

    def broken_predict(*_args, **_kwargs):
        raise TrigflowError("C-simulation broke")

    monkeypatch.setattr("trigflow.firmware.csim.predict", broken_predict)
    with pytest.raises(TrigflowError, match="C-simulation broke"):
        verify_onnx(path, None, 200, tmp_path / "out", tmp_path / "prj", False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]
