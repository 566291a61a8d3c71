"""Graph-network builders: structure, float/QKeras twins, permutation invariance (no firmware here)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trigflow.models.gnn import (  # noqa: E402
    build_deepsets,
    build_garnet,
    build_interaction_network,
    edge_index,
    interaction_matrices,
)

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
