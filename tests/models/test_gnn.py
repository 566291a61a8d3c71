"""Graph-network builders: structure, float/QKeras twins, permutation invariance (no firmware here)."""

from __future__ import annotations

import numpy as np
import pytest

from trigflow.errors import TrigflowError

tf = pytest.importorskip("tensorflow")

from trigflow.models.gnn import (  # noqa: E402
    build_deepsets,
    build_garnet,
    build_interaction_network,
    custom_objects,
    edge_index,
    garnet_edge_weight_table,
    garnet_hls_layer,
    garnet_type,
    garnet_types,
    interaction_matrices,
)
from trigflow.quantize.fixed import FixedType  # noqa: E402

N, F = 8, 3


def _inputs(n_samples: int, n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, size=(n_samples, n, F)).astype(np.float32)


@pytest.fixture(scope="module")
def qin():
    return build_interaction_network(N, F, 5, quantized=True)


def test_edge_index_is_fully_connected_without_self_loops():
    for n in (2, 8, 16):
        recv, send = edge_index(n)
        assert len(recv) == n * (n - 1)
        assert not np.any(recv == send)
        assert len(set(zip(recv.tolist(), send.tolist()))) == n * (n - 1)
        rr, rs = interaction_matrices(n)
        assert rr.shape == rs.shape == (n, n * (n - 1))
        assert np.all(rr.sum(axis=0) == 1) and np.all(rs.sum(axis=0) == 1)
        assert np.all(rr.sum(axis=1) == n - 1) and np.all(rs.sum(axis=1) == n - 1)


@pytest.mark.parametrize("builder", [build_interaction_network, build_deepsets])
def test_float_and_quantized_twins_share_the_architecture(builder):
    q = builder(N, F, 5, quantized=True)
    f = builder(N, F, 5, quantized=False)
    q_layers = {layer.name: layer for layer in q.layers if layer.name != "input_quant"}
    f_layers = {layer.name: layer for layer in f.layers}
    assert list(q_layers) == list(f_layers)
    for name, layer in q_layers.items():
        assert [w.shape for w in layer.get_weights()] == [w.shape for w in f_layers[name].get_weights()], name
    assert q.output_shape == f.output_shape == (None, 5)


def test_interaction_network_gathers_and_aggregates_edges(qin):
    """The edge tensor is [x_recv, x_send] interleaved per feature; aggregation sums messages per receiver."""
    x = _inputs(16)
    names = ("input_quant", "edges", "edge_relu_1", "aggregated")
    probe = tf.keras.Model(qin.input, [qin.get_layer(n).output for n in names])
    xq, edges, messages, aggregated = probe.predict(x, verbose=0)
    recv, send = edge_index(N)
    expected = np.stack([xq[:, recv, :], xq[:, send, :]], axis=-1).reshape(len(x), len(recv), 2 * F)
    np.testing.assert_array_equal(edges, expected)
    expected_agg = np.zeros_like(aggregated)
    for e, i in enumerate(recv):
        expected_agg[:, i, :] += messages[:, e, :]
    np.testing.assert_array_equal(aggregated, expected_agg)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_quantized_interaction_network_is_exactly_permutation_invariant(pooling):
    model = build_interaction_network(N, F, 5, quantized=True, pooling=pooling)
    x = _inputs(64)
    ref = model.predict(x, verbose=0)
    assert np.std(ref) > 0
    rng = np.random.default_rng(1)
    for _ in range(3):
        perm = rng.permutation(N)
        np.testing.assert_array_equal(model.predict(x[:, perm, :], verbose=0), ref)


def test_float_interaction_network_is_permutation_invariant():
    model = build_interaction_network(N, F, 5, quantized=False)
    x = _inputs(64)
    ref = model.predict(x, verbose=0)
    perm = np.random.default_rng(2).permutation(N)
    np.testing.assert_allclose(model.predict(x[:, perm, :], verbose=0), ref, rtol=1e-5, atol=1e-5)


def test_quantized_deepsets_is_exactly_permutation_invariant():
    model = build_deepsets(N, F, 5, quantized=True)
    x = _inputs(64)
    ref = model.predict(x, verbose=0)
    perm = np.random.default_rng(3).permutation(N)
    np.testing.assert_array_equal(model.predict(x[:, perm, :], verbose=0), ref)


def test_garnet_builds_and_masks_vertices():
    model = build_garnet(N, F, 5, quantized=True)
    x = _inputs(8)
    full = model.predict([x, np.full((8, 1), N, np.uint16)], verbose=0)
    assert full.shape == (8, 5)
    # vertices beyond n_valid are ignored: changing them does not change the output
    x2 = x.copy()
    x2[:, 5:, :] = 0.7
    n5 = np.full((8, 1), 5, np.uint16)
    np.testing.assert_array_equal(model.predict([x, n5], verbose=0), model.predict([x2, n5], verbose=0))


def test_spec_sets_the_formats():
    class Spec:  # duck-typed trigflow.quantize.presets.QuantSpec
        bits, integer, input_bits, input_integer = 6, 0, 10, 3

    model = build_interaction_network(N, F, 5, spec=Spec())
    q = model.get_layer("input_quant").activation
    assert (q.bits, q.integer) == (10, 3)
    k = model.get_layer("edge_dense_0").get_quantizers()[0]
    assert (k.bits, k.integer) == (6, 0)


def test_garnet_twins_share_weight_layout_and_the_quantized_one_mirrors_the_firmware():
    q, f = build_garnet(N, F, 5, quantized=True), build_garnet(N, F, 5, quantized=False)
    assert type(q.get_layer("garnet")).__name__ == "GarNetHLS"
    assert type(f.get_layer("garnet")).__name__ == "GarNet"
    shapes = [[w.shape for w in m.get_layer("garnet").weights] for m in (q, f)]
    assert shapes[0] == shapes[1]
    with pytest.raises(TrigflowError, match="power of two"):
        build_garnet(6, F, 5, quantized=True)


def test_fixed_type_cast_is_the_same_in_numpy_and_tensorflow():
    values = np.array([-9.0, -2.5, -0.1249, -0.125, 0.0625, 0.1875, 0.3125, 2.5, 7.99, 100.0])
    types = ("fixed<8,4,TRN,SAT>", "fixed<8,4,RND,SAT>", "fixed<8,4,RND_CONV,SAT>", "ufixed<6,2,RND,SAT>")
    for text in types:
        t = garnet_type(text)
        ref = t.cast(values)
        np.testing.assert_array_equal(t.cast(tf.constant(values, tf.float64), tf).numpy(), ref)
        assert ref.min() >= t.lo and ref.max() <= t.hi
    t = FixedType.parse("fixed<8,4,RND,SAT>")  # 4 fractional bits; AP_RND: half toward +inf
    np.testing.assert_array_equal(t.cast(np.array([-0.03125, 0.03125, 0.09375])), [0.0, 0.0625, 0.125])
    t = FixedType.parse("fixed<8,4,RND_CONV,SAT>")  # half to even
    np.testing.assert_array_equal(t.cast(np.array([0.03125, 0.09375])), [0.0, 0.125])
    np.testing.assert_array_equal(FixedType.parse("fixed<8,4,TRN,SAT>").cast(np.array([-0.01])), [-0.0625])
    with pytest.raises(TrigflowError, match="SAT"):
        garnet_type("fixed<8,4>")
    with pytest.raises(TrigflowError, match="rounding"):
        garnet_type("fixed<8,4,RND_ZERO,SAT>")


def test_garnet_edge_weight_table_is_the_templates():
    t = FixedType.parse("ufixed<16,0,RND,SAT>")
    table = garnet_edge_weight_table(t)
    assert table.shape == (4096,)
    assert table[2048] == 1 - 2.0**-16  # d = 0: ap_ufixed<16,0,TRN,SAT>(1.)
    assert table[2049] == np.floor(np.exp(-(1 / 256) ** 2) * 2**16) / 2**16  # truncated to 16 bits
    np.testing.assert_array_equal(table[1:2048], table[2049:][::-1])  # symmetric in d
    assert table[0] == 0.0  # d = -8


def test_garnet_widths_table_defaults_and_refusals():
    """A wider distance type gives the template's 2^W-entry table (hls::exp truncated to 2·(W-I) fractional
    bits, then edge_weight); types saved before ``distance``/``weight_frac`` existed mean hls4ml's 12,4 / 10."""
    ew = FixedType.parse("ufixed<16,0,RND,SAT>")
    dist = FixedType.parse("fixed<15,3,TRN,SAT>")
    table = garnet_edge_weight_table(ew, dist)
    assert table.shape == (2**15,) and table[2**14] == 1 - 2.0**-16 and table[0] == 0.0  # d = 0; d = -4
    d = 3 * 2.0**-12  # exp truncated to 24 fractional bits, then rounded half up to 16
    assert table[2**14 + 3] == ew.cast(np.floor(np.exp(-d * d) * 2**24) / 2**24)
    np.testing.assert_array_equal(table[1 : 2**14], table[2**14 + 1 :][::-1])
    types = garnet_types(N, 12, 2, distance="fixed<15,3,TRN,SAT>", weight_frac=14)
    assert (types["distance"], types["weight_frac"]) == ("fixed<15,3,TRN,SAT>", "14")
    x = [tf.constant(_inputs(16)), tf.constant(np.full((16, 1), N, np.uint16))]
    old = {k: v for k, v in garnet_types(N, 12, 2).items() if k not in ("distance", "weight_frac")}
    outs = []
    for t in (old, garnet_types(N, 12, 2), types):
        tf.keras.utils.set_random_seed(3)
        outs.append(garnet_hls_layer()(2, 4, 4, types=t, name="garnet")(x).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.any(outs[1] != outs[2])
    for bad in ({"distance": "fixed<12,4,RND_CONV,SAT>"}, {"distance": "fixed<22,4,TRN,SAT>"}):
        with pytest.raises(TrigflowError, match="distance type"):
            garnet_types(N, 12, 2, **bad)
    with pytest.raises(TrigflowError, match="weight_frac must be 1..16"):
        garnet_hls_layer()(2, 4, 4, types=garnet_types(N, 12, 2, weight_frac=17))(x)
    with pytest.raises(TrigflowError, match="distance_weight_frac must be 1..24"):
        garnet_hls_layer()(2, 4, 4, types=garnet_types(N, 12, 2, distance_weight_frac=25))(x)
    with pytest.raises(TrigflowError, match="aggr must hold the sum of N weighted_feature"):
        garnet_hls_layer()(2, 4, 4, types=garnet_types(N, 12, 2, weighted_feature_frac=18))(x)


def test_garnet_separate_distance_weights_rounded_distance_and_wide_features():
    """``distance_weight_frac`` (S kernel/bias), a rounding (RND) distance and ``weighted_feature`` (the
    data·edge-weight products) each change what the mirror computes; left out they mean hls4ml's choices
    (S with ``weight_frac``, products in the input type)."""
    x = [tf.constant(_inputs(16)), tf.constant(np.full((16, 1), N, np.uint16))]
    base = garnet_types(N, 12, 2, distance="fixed<15,3,TRN,SAT>", weight_frac=14)
    same = {**base, "distance_weight_frac": "14", "weighted_feature": base["data"]}
    assert garnet_types(N, 12, 2, weighted_feature_frac=12)["weighted_feature"] == "fixed<15,3,RND_CONV,SAT>"
    variants = [base, same, {**base, "distance_weight_frac": "20"},
                {**base, "distance": "fixed<15,3,RND,SAT>"},
                {**base, "weighted_feature": "fixed<15,3,RND_CONV,SAT>"}]
    outs = []
    for t in variants:
        tf.keras.utils.set_random_seed(3)
        layer = garnet_hls_layer()(2, 4, 4, types=t, name="garnet")
        outs.append(layer(x).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    for out in outs[2:]:
        assert np.any(out != outs[0])
    fw = layer.firmware_weights()
    np.testing.assert_array_equal(fw["S_kernel"] * 2**14, np.round(fw["S_kernel"] * 2**14))


def test_garnet_mirror_trains_and_reloads():
    model = build_garnet(N, F, 5, quantized=True, n_aggregators=2, n_filters=4, n_propagate=4)
    x = _inputs(32)
    n_valid = np.random.default_rng(1).integers(1, N + 1, size=(32, 1)).astype(np.uint16)
    y = np.random.default_rng(2).integers(0, 5, size=32)
    with tf.GradientTape() as tape:
        logits = model([tf.constant(x), tf.constant(n_valid)], training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.get_layer("garnet").trainable_weights)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)  # straight-through
    # reload as `trigflow evaluate` does (rebuild + weights; whole-model JSON fails on QActivation anyway),
    # and the layer's own config round trip (types included)
    clone = build_garnet(N, F, 5, quantized=True, n_aggregators=2, n_filters=4, n_propagate=4)
    clone.set_weights(model.get_weights())
    reference = model.predict([x, n_valid], verbose=0)
    np.testing.assert_array_equal(clone.predict([x, n_valid], verbose=0), reference)
    layer = model.get_layer("garnet")
    again = custom_objects()["GarNetHLS"].from_config(layer.get_config())
    assert again.types == layer.types

