"""GNN firmware: hls4ml C-simulation bit-exact with QKeras (Interaction Network, DeepSets) and with the
GarNet mirror (GarNetHLS), through the path `trigflow run gnn` uses (firmware.gnn.convert_graph_network)."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
hls4ml = pytest.importorskip("hls4ml")

from trigflow.errors import TrigflowError  # noqa: E402
from trigflow.firmware.convert import FirmwareSpec  # noqa: E402
from trigflow.firmware.csim import predict  # noqa: E402
from trigflow.firmware.gnn import (  # noqa: E402
    convert_graph_network,
    prepare_garnet_for_hls,
    prepare_gnn_for_hls,
)
from trigflow.firmware.passes.garnet_weights import GarNetWeights  # noqa: E402
from trigflow.models.gnn import (  # noqa: E402
    build_deepsets,
    build_garnet,
    build_interaction_network,
    garnet_hls_layer,
    garnet_types,
)

def convert_gnn(model, project_dir, **spec):
    hls_model, _ = convert_graph_network(model, project_dir, FirmwareSpec(**spec))
    return hls_model


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


@pytest.mark.slow  # 12-14 s; the default run proves an IN end to end (tests/spine/test_run_gnn.py)
@needs_gxx
def test_interaction_network_csim_is_bit_exact(tmp_path):
    model = build_interaction_network(N, F, 5, quantized=True, pooling="mean")
    hls_model = convert_gnn(model, tmp_path / "in")
    x = _samples(model, 1000)
    reference = model.predict(x, verbose=0).astype(np.float64)
    assert len(np.unique(reference)) > 500  # non-trivial outputs
    np.testing.assert_array_equal(predict(hls_model, x), reference)


@needs_gxx
def test_deepsets_csim_is_bit_exact(tmp_path):
    model = build_deepsets(N, F, 5, quantized=True, pooling="sum")
    hls_model = convert_gnn(model, tmp_path / "ds")
    x = _samples(model, 600, seed=1)
    reference = model.predict(x, verbose=0).astype(np.float64)
    assert len(np.unique(reference)) > 300
    np.testing.assert_array_equal(predict(hls_model, x), reference)


def _garnet_only(n: int, input_bits: int = 12, input_integer: int = 2, seed: int = 0, **widths):
    """input quantizer → GarNetHLS, nothing after it: the GarNet output itself (fixed<24,8>, 16 fractional
    bits) is compared, not logits behind a coarse quantizer. Spread random weights."""
    from qkeras import QActivation, quantized_bits

    particles = tf.keras.Input((n, F), name="particles")
    n_valid = tf.keras.Input((1,), name="n_valid", dtype="uint16")
    x = QActivation(quantized_bits(input_bits, input_integer, alpha=1), name="input_quant")(particles)
    types = garnet_types(n, input_bits, input_integer, **widths)
    layer = garnet_hls_layer()(4, 8, 8, types=types, name="garnet")
    model = tf.keras.Model([particles, n_valid], layer([x, n_valid]))
    rng = np.random.default_rng(seed)
    scales = [1.0, 1.0, 0.7, 0.5, 1.0, 1.0]  # FLR k/b, S k/b, Fout k/b
    layer.set_weights([(s * rng.standard_normal(w.shape)).astype(np.float32)
                       for s, w in zip(scales, layer.get_weights(), strict=True)])
    return model


def _garnet_samples(n: int, count: int, seed: int) -> list[np.ndarray]:
    """Inputs on and off the grid, inside and far outside the input range (saturation), every n_valid 0..N."""
    rng = np.random.default_rng(seed)
    k = count // 3
    x = np.concatenate([rng.uniform(-4, 4, size=(k, n, F)), rng.normal(0, 1, size=(k, n, F)),
                        rng.normal(0, 20, size=(count - 2 * k, n, F))]).astype(np.float32)
    return [x, rng.integers(0, n + 1, size=(count, 1)).astype(np.uint16)]


@needs_gxx
def test_garnet_csim_is_bit_exact_with_the_mirror(tmp_path):
    """hls4ml's nnet::garnet (12-bit truncated distance, exp(-d²) table, contracted 10-bit transforms,
    internal types) == GarNetHLS, bit for bit, at the GarNet output."""
    model = _garnet_only(N)
    hls_model = convert_gnn(model, tmp_path / "garnet")
    x = _garnet_samples(N, 1500, seed=2)
    reference = model.predict(x, verbose=0).astype(np.float64)
    assert len(np.unique(reference)) > 5000  # non-trivial outputs
    assert np.any(x[1] == 0) and np.any(x[1] == N)
    np.testing.assert_array_equal(predict(hls_model, x), reference)


@pytest.mark.slow  # 10 s; verify compiles these widths in the default run (test_verify_engine.py, GarNet)
@needs_gxx
def test_garnet_csim_with_wider_distance_and_weights_is_bit_exact(tmp_path):
    """hls4ml_patches.garnet_widths: a rounding fixed<19,3> distance (2^19-entry exp(-d²) table from a
    32-fractional-bit exp, saturating at ±4), distance weights with 20 and the other weights with 16
    fractional bits, and the data·edge-weight products rounded to 14 instead of the input's 9 fractional bits
    (the project's nnet_garnet.h uses weighted_feature_t), instead of hls4ml's hard-coded fixed<12,4,TRN>, 10
    and input type — the firmware follows the mirror's types, still bit for bit at the GarNet output."""
    model = _garnet_only(N, distance="fixed<19,3,RND,SAT>", weight_frac=16, distance_weight_frac=20,
                         weighted_feature_frac=14)
    hls_model = convert_gnn(model, tmp_path / "garnet")
    params = (tmp_path / "garnet" / "firmware" / "parameters.h").read_text()
    assert "distance_width = 19;" in params and "ap_fixed<19, 3, AP_RND, AP_SAT> distance_t;" in params
    assert "typedef ap_fixed<17,3,AP_RND_CONV,AP_SAT> weighted_feature_t;" in params
    header = (tmp_path / "garnet" / "firmware" / "nnet_utils" / "nnet_garnet.h").read_text()
    assert "typename CONFIG_T::weighted_feature_t incr = data_getter.get(iv, ix) * edge_weight;" in header
    x = _garnet_samples(N, 1500, seed=2)
    reference = model.predict(x, verbose=0).astype(np.float64)
    assert len(np.unique(reference)) > 5000
    np.testing.assert_array_equal(predict(hls_model, x), reference)
    default = _garnet_only(N).predict(x, verbose=0).astype(np.float64)
    assert np.any(default != reference)  # the widths change what is computed


@needs_gxx
@pytest.mark.slow
def test_garnet_classifier_16_vertices_reuse_4_is_bit_exact(tmp_path):
    """The build_garnet classifier (GarNetHLS + QKeras head), N=16 as in `trigflow run gnn`, the vertex loop
    folded 4× (reuse_factor=4): still bit-exact (≈1 min to compile)."""
    n = 16
    model = build_garnet(n, F, 5, quantized=True, input_bits=16, input_integer=5)
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([(0.7 * rng.standard_normal(w.shape)).astype(np.float32)
                               for w in layer.get_weights()])
    hls_model = convert_gnn(model, tmp_path / "garnet16", reuse_factor=4)
    x = _garnet_samples(n, 1500, seed=6)
    reference = model.predict(x, verbose=0).astype(np.float64)
    np.testing.assert_array_equal(predict(hls_model, x), reference)


def test_garnet_for_hls_hands_hls4ml_the_mirrors_weights():
    """The converted model's float GarNet holds FLR = [I | 0] (bias e_F) and Fout = the contracted transform,
    so hls4ml's own contraction gives back exactly the mirror's W, B (checked again after conversion)."""
    model = _garnet_only(N)
    surgery = GarNetWeights()
    ready, changed = surgery.apply(model)
    precisions, weights = surgery.precisions, surgery.weights
    assert changed
    assert type(ready.get_layer("garnet")).__name__ == "GarNet"
    flr_k, flr_b, _, _, fout_k, _ = (w.astype(np.float64) for w in ready.get_layer("garnet").get_weights())
    fw = weights["garnet"]
    contracted = np.einsum("xp,apo->oax", flr_k, fout_k.reshape(4, 8, 8))
    np.testing.assert_array_equal(contracted, fw["W"])
    np.testing.assert_array_equal(np.einsum("p,apo->oa", flr_b, fout_k.reshape(4, 8, 8)), fw["B"])
    for v in fw.values():
        np.testing.assert_array_equal(v * 1024, np.round(v * 1024))  # 10 fractional bits: hls4ml keeps them
    assert precisions["garnet"]["result"] == "fixed<24,8,RND,SAT>"


def test_convert_garnet_refuses_hls4mls_float_garnet():
    with pytest.raises(TrigflowError, match="GarNetHLS"):
        prepare_garnet_for_hls(build_garnet(N, F, 5, quantized=False))
    with pytest.raises(TrigflowError, match="GarNetHLS"):
        convert_gnn(build_garnet(N, F, 5, quantized=False), "unused")


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
    np.testing.assert_array_equal(predict(hls_model, x), model.predict(x, verbose=0).astype(np.float64))
