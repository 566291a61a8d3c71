"""GNN firmware: hls4ml C-simulation bit-exact with QKeras (Interaction Network, DeepSets); GarNet
measured."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
hls4ml = pytest.importorskip("hls4ml")

from trigflow.errors import TrigflowError  # noqa: E402
from trigflow.firmware.gnn import (  # noqa: E402
    convert_garnet,
    convert_gnn,
    predict_csim,
    prepare_gnn_for_hls,
)
from trigflow.models.gnn import build_deepsets, build_garnet, build_interaction_network  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for the C-simulation")
N, F = 8, 3


def _samples(model, n: int, seed: int = 0) -> np.ndarray:
    """Half on the input quantizer's grid, half arbitrary float32 (incl. out-of-range values, saturating)."""
    q = model.get_layer("input_quant").activation
    lsb = 2.0 ** -(q.bits - q.integer - 1)
    rng = np.random.default_rng(seed)
    span = 2.0**q.integer
    grid = np.round(rng.uniform(-span, span, size=(n // 2, N, F)) / lsb) * lsb
    floats = rng.normal(0.0, span / 2, size=(n - n // 2, N, F))
    return np.concatenate([grid, floats]).astype(np.float32)


@needs_gxx
def test_interaction_network_csim_is_bit_exact(tmp_path):
    model = build_interaction_network(N, F, 5, quantized=True, pooling="mean")
    hls_model = convert_gnn(model, tmp_path / "in")
    x = _samples(model, 1000)
    reference = model.predict(x, verbose=0).astype(np.float64)
    assert len(np.unique(reference)) > 500  # non-trivial outputs
    np.testing.assert_array_equal(predict_csim(hls_model, x), reference)


@needs_gxx
def test_deepsets_csim_is_bit_exact(tmp_path):
    model = build_deepsets(N, F, 5, quantized=True, pooling="sum")
    hls_model = convert_gnn(model, tmp_path / "ds")
    x = _samples(model, 600, seed=1)
    reference = model.predict(x, verbose=0).astype(np.float64)
    assert len(np.unique(reference)) > 300
    np.testing.assert_array_equal(predict_csim(hls_model, x), reference)


@needs_gxx
def test_garnet_csim_deviation_is_measured(tmp_path):
    """hls4ml's GarNet is an approximation (hard-coded ap_fixed<12,4> distance, exp(-d²) lookup table,
    contracted transforms): not bit-exact. Check it tracks QKeras; the figures are recorded in docs/gnn.md."""
    model = build_garnet(N, F, 5, quantized=True)
    hls_model = convert_garnet(model, tmp_path / "garnet")
    rng = np.random.default_rng(2)
    x = rng.uniform(-4, 4, size=(500, N, F)).astype(np.float32)
    n_valid = rng.integers(1, N + 1, size=(500, 1)).astype(np.uint16)
    reference = model.predict([x, n_valid], verbose=0).astype(np.float64)
    firmware = predict_csim(hls_model, [x, n_valid])
    deviation = np.abs(firmware - reference)
    agree = np.mean(np.argmax(firmware, axis=1) == np.argmax(reference, axis=1))
    print(f"GarNet: max|Δ| {deviation.max():.4g}, mean|Δ| {deviation.mean():.3g}, argmax agree {agree:.3f}")
    assert deviation.max() < 0.1 and agree > 0.8


def test_naive_conversion_drops_the_weight_quantizer_of_rank3_dense():
    """Root cause, pinned: hls4ml 1.3 turns a QDense on (N, F) into a pointwise Conv1D without its
    quantizers, so the firmware holds unquantized weights; after prepare_gnn_for_hls it holds the
    quantized ones. (If this starts failing, hls4ml fixed its pass; the rewrite is then harmless.)"""
    model = build_deepsets(N, F, 5, quantized=True)
    prepared, _ = prepare_gnn_for_hls(model)
    layer = model.get_layer("phi_dense_0")
    quantized = np.asarray(layer.get_quantizers()[0](layer.get_weights()[0])).ravel()

    def converted_weights(m):
        with contextlib.redirect_stdout(io.StringIO()):
            cfg = hls4ml.utils.config_from_keras_model(m, granularity="name", backend="Vitis")
            hm = hls4ml.converters.convert_from_keras_model(m, hls_config=cfg, backend="Vitis",
                                                            output_dir="unused", io_type="io_parallel")
        return np.asarray(hm.graph["phi_dense_0"].weights["weight"].data, np.float64).ravel()

    assert not np.array_equal(converted_weights(model), quantized)
    np.testing.assert_array_equal(converted_weights(prepared), quantized)


def test_prepare_gives_every_layer_an_explicit_exact_type():
    model = build_interaction_network(N, F, 5, quantized=True)
    prepared, overrides = prepare_gnn_for_hls(model)
    assert overrides["bit_exact"] is False
    assert overrides["input_type"] == "fixed<12,3,RND_CONV,SAT>"  # = quantized_bits(12, 2)
    for layer in prepared.layers:
        assert "result" in overrides["layer_precisions"][layer.name], layer.name
    assert all("auto" not in v for p in overrides["layer_precisions"].values() for v in p.values())
    assert type(prepared.get_layer("edge_dense_0")).__name__ == "QConv1D"
    assert type(prepared.get_layer("logits")).__name__ == "QDense"  # rank-2 QDense left alone
    x = _samples(model, 200, seed=3)
    np.testing.assert_array_equal(prepared.predict(x, verbose=0), model.predict(x, verbose=0))


def test_prepare_refuses_what_cannot_be_exact():
    with pytest.raises(TrigflowError, match="float twin"):
        prepare_gnn_for_hls(build_interaction_network(N, F, 5, quantized=False))
    with pytest.raises(TrigflowError, match="pooling='sum'"):
        prepare_gnn_for_hls(build_deepsets(6, F, 5, quantized=True, pooling="mean"))
    prepare_gnn_for_hls(build_deepsets(6, F, 5, quantized=True, pooling="sum"))  # fine
    with pytest.raises(TrigflowError, match="io_parallel"):
        convert_gnn(build_deepsets(N, F, 5), "unused", io_type="io_stream")


@needs_gxx
@pytest.mark.slow
def test_interaction_network_16_particles_sum_pooling_is_bit_exact(tmp_path):
    """N=16 (240 edges), sum pooling, edge MLP 4-way parallel: still bit-exact (≈0.5 min to compile)."""
    n = 16
    model = build_interaction_network(n, F, 5, quantized=True, pooling="sum")
    hls_model = convert_gnn(model, tmp_path / "in16", parallelization_factor=4)
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.5, size=(500, n, F)).astype(np.float32)
    np.testing.assert_array_equal(predict_csim(hls_model, x), model.predict(x, verbose=0).astype(np.float64))
