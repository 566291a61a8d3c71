"""ONNX export: every model kind trigflow trains (QKeras and float twins) runs in onnxruntime as in Keras."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from trigflow.errors import TrigflowError
from trigflow.onnx import describe, export, export_onnx, max_abs_diff, run_onnx

TOLERANCE = (
    1e-5  # the run's verify.max_onnx_abs_diff; float twins: relative to max(1, max |output|) (float32 ulps)
)


def _mlp(quantized):
    from trigflow.models.mlp import build_mlp

    return build_mlp(16, 5, (16, 8), quantized=quantized)


def _cnn(quantized):
    from trigflow.models.cnn import build_cnn

    return build_cnn((10, 10, 1), 5, (4,), (8,), quantized=quantized)


def _interaction_network(quantized):
    from trigflow.models.gnn import build_interaction_network

    return build_interaction_network(
        4,
        3,
        5,
        quantized=quantized,
        edge_hidden=(8,),
        edge_dim=4,
        node_hidden=(8,),
        node_dim=4,
        head_hidden=(8,),
    )


def _garnet(quantized):
    from trigflow.models.gnn import build_garnet

    return build_garnet(
        4, 3, 5, quantized=quantized, n_aggregators=2, n_filters=4, n_propagate=4, head_hidden=(8,)
    )


def _ae_score(quantized):
    from trigflow.models.autoencoder import build_autoencoder, build_deployed

    return build_deployed(build_autoencoder(12, (8,), 2, quantized=quantized), quantized=quantized)


BUILDERS = {
    "mlp": _mlp,
    "cnn": _cnn,
    "gnn_interaction_network": _interaction_network,
    "gnn_garnet": _garnet,
    "ae_score": _ae_score,
}


def _inputs(model, n=256, seed=0):
    """Wide inputs (σ = 3): beyond the input quantizer's range too, so saturation is exercised."""
    rng = np.random.default_rng(seed)
    arrays = []
    for inp in model.inputs:
        shape = (n, *inp.shape[1:])
        if inp.dtype.is_integer:
            arrays.append(
                rng.integers(1, inp.shape[1] + 4 if len(inp.shape) > 1 else 5, size=shape).astype(
                    inp.dtype.as_numpy_dtype
                )
            )
        else:
            arrays.append((3 * rng.standard_normal(shape)).astype(np.float32))
    return arrays


def _randomise(model, seed=1):
    """Non-zero biases and spread weights, so every op (bias adds included) is in the exported graph."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.trainable and layer.get_weights():
            layer.set_weights(
                [(0.5 * rng.standard_normal(w.shape)).astype(w.dtype) for w in layer.get_weights()]
            )


@pytest.mark.parametrize("quantized", [True, False], ids=["qkeras", "float"])
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_every_model_kind_matches_keras_in_onnxruntime(kind, quantized, tmp_path):
    model = BUILDERS[kind](quantized)
    _randomise(model)
    x = _inputs(model)
    path = export_onnx(model, tmp_path / f"{kind}.onnx")
    y_keras = model.predict(x if len(x) > 1 else x[0], verbose=0)
    y_onnx = run_onnx(path, x)
    if quantized:
        np.testing.assert_array_equal(y_onnx, y_keras)  # fake-quant arithmetic included: the same numbers
    assert max_abs_diff(y_onnx, y_keras) <= TOLERANCE * max(1.0, float(np.max(np.abs(y_keras))))
    info = describe(path)
    assert [i["name"] for i in info["inputs"]] == list(model.input_names)
    assert [o["name"] for o in info["outputs"]] == list(model.output_names)
    assert all(i["shape"][0] == "batch" for i in info["inputs"] + info["outputs"])
    assert info["opset"] == 13
    assert info["metadata"]["trigflow.opset"] == "13"
    assert info["metadata"]["trigflow.fake_quant_included"] == str(quantized).lower()


def test_dynamic_batch_and_metadata(tmp_path):
    model = _mlp(True)
    path = export_onnx(model, tmp_path / "m.onnx", opset=15)
    proto = onnx.load(str(path))
    assert "fake quantization" in proto.doc_string and "opset 15" in proto.doc_string
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["trigflow.role"] == "qkeras" and props["trigflow.opset"] == "15"
    x = _inputs(model, 7)[0]
    for batch in (1, 7):
        assert run_onnx(path, x[:batch]).shape == (batch, 5)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as `trigflow run mlp` leaves it (twins, test data on the input grid), without training."""
    from trigflow.quantize.presets import QuantSpec

    root = tmp_path_factory.mktemp("run")
    for quantized, name in ((True, "qkeras_model.h5"), (False, "float_model.h5")):
        model = _mlp(quantized)
        _randomise(model)
        model.save(root / name)
    x = QuantSpec().quantize_input(np.random.default_rng(2).normal(size=(300, 16)))
    np.savez_compressed(root / "test_data.npz", x=x, y=np.zeros(300, np.int64))
    return root


def test_export_command_on_a_run_folder(run_folder, tmp_path):
    from trigflow.cli import app

    out = tmp_path / "onnx"
    result = CliRunner().invoke(app, ["export", "onnx", str(run_folder), "--out", str(out), "--opset", "14"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] and report["opset"] == 14 and report["samples"] == 300
    assert set(report["models"]) == {"qkeras", "float"}
    assert report["models"]["qkeras"]["max_abs_diff_vs_keras"] == 0.0
    assert report["models"]["float"]["max_abs_diff_vs_keras"] <= TOLERANCE
    assert report["models"]["qkeras"]["inputs"] == [
        {"name": "features", "shape": ["batch", 16], "dtype": "float32"}
    ]
    for name in ("qkeras_model.onnx", "float_model.onnx"):
        assert describe(out / name)["metadata"]["trigflow.opset"] == "14"
    assert "PASS" in result.output
    again = CliRunner().invoke(app, ["export", "onnx", str(run_folder), "--out", str(out)])
    assert isinstance(again.exception, TrigflowError) and "--force" in str(again.exception)


def test_export_of_a_model_file_draws_inputs(run_folder, tmp_path):
    report = export(run_folder / "qkeras_model.h5", tmp_path / "x", n=200)
    assert report["passed"] and list(report["models"]) == ["qkeras"]
    assert "drawn" in report["data"] and report["samples"] == 200
    assert (tmp_path / "x" / "qkeras_model.onnx").is_file()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.h5", "not found"),
        (lambda p: (p / "m.txt").write_text("x") and p / "m.txt", "unsupported type"),
        (lambda p: (p / "bad.h5").write_bytes(b"\x89HDF\r\n garbage") and p / "bad.h5", "cannot be loaded"),
        (lambda p: p, "not a trigflow run folder"),
    ],
    ids=["missing", "suffix", "corrupt", "empty-folder"],
)
def test_export_errors_are_one_line(make, message, tmp_path):
    with pytest.raises(TrigflowError, match=message) as info:
        export(make(tmp_path), tmp_path / "out")
    assert "\n" not in str(info.value)


def test_bad_opset_is_refused(tmp_path):
    with pytest.raises(TrigflowError, match="opsets 13–18"):
        export_onnx(_mlp(False), tmp_path / "m.onnx", opset=9)
