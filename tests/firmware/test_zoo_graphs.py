"""The graph-network zoo (tests/firmware/zoo_graphs.py) through ``trigflow.verify`` on raw-unit constituents:
every model converts — through the fallback chain where hls4ml's bit-exact flow raises — and its firmware is
bit-exact against the model on trigflow's embedded jets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import zoo_graphs  # noqa: E402

N_PROOF = 3000  # jets proven (the first of the embedded file); the next ones train


def _prove(tmp_path: Path, model, n_particles: int, n_jets: int = N_PROOF, epochs: int = 1, **kwargs):
    import trigflow

    x, y = zoo_graphs.raw_jets(n_particles)
    zoo_graphs.train(model, x[n_jets : n_jets + 8000], y[n_jets : n_jets + 8000], epochs=epochs)
    path = zoo_graphs.save(model, tmp_path)
    data = tmp_path / "jets.npz"
    np.savez(data, x=x[:n_jets], y=y[:n_jets])
    return trigflow.verify(path, data, out=tmp_path / "out", project_dir=tmp_path / "prj", **kwargs)


def _assert_proven(result, path: str) -> None:
    report = result.report
    assert result.failures == []
    assert report["configuration"]["conversion"]["path"] == path
    assert report["bit_exact_fraction"] == 1.0
    assert report["mismatched_samples"] == 0
    assert report["accuracy"]["firmware"] == report["accuracy"]["qkeras"]


def test_tiny_interaction_network_crash_is_rewritten_and_proven(tmp_path):
    """hls4ml's bit-exact flow raises "could not broadcast input array" on the item-axis Concatenate; the
    ConcatenateLastAxis rewrite converts and the firmware is bit-exact (4 particles, 1,000 jets); hls4ml-style
    LayerName keys from the config file land on top. Measured: ~30 s of CPU, 60-89 s wall on the shared
    2-core machine."""
    import yaml

    config = tmp_path / "layers.yml"  # hls4ml-style per-layer keys on top of the bit-exact configuration
    config.write_text("LayerName:\n  head:\n    Precision: {accum: 'fixed<40,20>'}\n    ReuseFactor: 2\n")
    model = zoo_graphs.interaction_network(4, 6, hidden=4, effects=4)
    result = _prove(tmp_path, model, 4, n_jets=1000, config=config)
    _assert_proven(result, "rewritten")
    conversion = result.report["configuration"]["conversion"]
    assert conversion["passes"] == ["ConcatenateLastAxis"]
    assert "could not broadcast input array" in conversion["errors"][0]
    assert result.report["configuration"]["firmware_types"]["head"]["accum"].startswith("fixed<40,20")
    class Loader(yaml.SafeLoader):  # hls4ml's file tags the Keras model (!keras_model); not needed here
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    hls_config = yaml.load((tmp_path / "prj" / "hls4ml_config.yml").read_text(), Loader=Loader)
    assert hls_config["HLSConfig"]["LayerName"]["head"]["ReuseFactor"] == 2


@pytest.mark.slow
def test_tiny_interaction_network_explicit_types_fallback(tmp_path, monkeypatch):
    """Without the rewrite, the last step — hls4ml's bit-exact flow off, every type from exact_types — is
    bit-exact too, and the report says which path was taken (measured: ~62 s wall, 2 cores shared)."""
    from trigflow.firmware import fallback

    monkeypatch.setattr(fallback, "rewrites", lambda: [])
    model = zoo_graphs.interaction_network(4, 6, hidden=4, effects=4)
    result = _prove(tmp_path, model, 4, n_jets=1000)
    _assert_proven(result, "explicit_types")
    types = result.report["configuration"]["firmware_types"]
    assert types  # the final per-layer types are in the report


CASES = [
    pytest.param(arch, n, bits, marks=pytest.mark.slow, id=f"{arch}-{n}p-{bits}b")
    for arch in ("in_conv1d", "in_dense", "graphconv")
    for n in (8, 16)
    for bits in (4, 8)
]
# GraphConv: hls4ml 1.3's bit-exact flow has no produce_kif for Resize (UpSampling1D) → explicit types
EXPECTED_PATH = {"in_conv1d": "rewritten", "in_dense": "rewritten", "graphconv": "explicit_types"}


@pytest.mark.parametrize("arch, n, bits", CASES)
def test_zoo_graph_is_proven_on_raw_jets(tmp_path, arch, n, bits):
    """3,000 raw-unit jets. Measured as this test runs (training included), shared 2-core machine:
    in_conv1d-8p-4b 115 s, in_conv1d-16p-4b 99 s, in_dense-8p-8b 106 s, in_dense-16p-4b 84 s,
    graphconv-8p-8b 27 s, graphconv-16p-4b 56 s; `trigflow verify` alone: in_conv1d-8p-8b 124 s,
    in_conv1d-16p-8b 152 s. Not run: in_dense-8p-4b, in_dense-16p-8b, graphconv-8p-4b, graphconv-16p-8b."""
    model = zoo_graphs.BUILDERS[arch](n, bits)
    result = _prove(tmp_path, model, n)
    _assert_proven(result, EXPECTED_PATH[arch])


@pytest.mark.slow
@pytest.mark.parametrize(
    "n, bits, epochs",
    [pytest.param(n, b, 1, id=f"{n}p-{b}b") for n in (16, 8) for b in (8, 4)]
    + [pytest.param(16, 8, 20, id="16p-8b-20epochs")],
)
def test_garnet_firmware_equals_the_mirror_and_is_measured_against_the_model(tmp_path, n, bits, epochs):
    """hls4ml's own GarNet layer (two inputs; 8/16 particles, 4/8-bit head, 3,000 raw-unit jets, 1 epoch): the
    firmware equals trigflow's mirror of the user's weights bit for bit (checked here again on the linked
    C-simulation with assert_array_equal), and the user's float GarNet model vs the firmware is reported —
    layer named, differing samples, max |Δ|, accuracies side by side, on the verdict line — and recomputed
    here from the user's model, at or above the 99.9 % floor for a model with a float layer. The vertex
    count comes from the data file's ``n_vertices``. The firmware uses the mirror's wider distance type,
    weight grids and data·edge-weight type (``hls4ml_patches.garnet_widths``), checked in the written
    parameters.h. Measured on the shared 2-core machine (test call, training included): 16p-8b 41 s, 16p-4b
    31 s, 8p-8b 34 s, 8p-4b 32 s. Firmware vs model: 0, 0, 0, 0 of 3,000 jets differ (with hls4ml's
    fixed<12,4> distance and 10-bit weights: 20, 2, 0, 0). The 16p-8b GarNet trained 20 epochs (accuracy
    0.277, its outputs move more): 2 of 3,000 (558 with hls4ml's widths, 67 with trigflow's earlier
    fixed<15,3,TRN> / 14; ``docs/verify_graphs.md``), at the floor; test call 37 s."""
    import ctypes

    import hls4ml
    import tensorflow as tf

    import trigflow
    from trigflow.firmware.csim import predict
    from trigflow.firmware.fifo import library_path
    from trigflow.firmware.loaders import load_model
    from trigflow.firmware.passes.garnet_mirror import GarNetMirror
    from trigflow.kinds.gnn import n_valid
    from trigflow.proof.reference import exact_predict
    from trigflow.quantize.fixed import FixedType

    x, y = zoo_graphs.raw_jets(n)
    tf.keras.utils.set_random_seed(0)  # the initial weights too
    model = zoo_graphs.garnet(n, bits)
    train_x = x[N_PROOF : N_PROOF + 8000]
    zoo_graphs.train(model, [train_x, n_valid(train_x)], y[N_PROOF : N_PROOF + 8000], epochs=epochs)
    path = zoo_graphs.save(model, tmp_path)
    x, y = x[:N_PROOF], y[:N_PROOF]
    counts = n_valid(x)
    np.savez(tmp_path / "jets.npz", x=x, y=y, n_vertices=counts.astype(np.int64))
    result = trigflow.verify(path, tmp_path / "jets.npz", out=tmp_path / "out", project_dir=tmp_path / "prj")
    report = result.report
    assert result.failures == [] and report["bit_exact_fraction"] == 1.0 and report["samples"] == N_PROOF
    garnet = report["garnet"]
    assert garnet["not_exact_in_float"] == ["garnet"] and report["configuration"]["firmware_types"]
    assert garnet["second_input"] == {"name": "n_vertices", "source": "data file array 'n_vertices'"}
    assert garnet["layer_differences"]["garnet"]["max_abs_diff"] > 0  # the float layer is not the firmware's
    assert set(garnet["accuracy"]) == {"firmware", "mirror", "model"}
    assert garnet["accuracy"]["firmware"] == garnet["accuracy"]["mirror"]
    # data·edge-weight products: aggr's fractional bits - log2 N
    feature = "fixed<24,12,RND_CONV,SAT>" if n == 16 else "fixed<26,12,RND_CONV,SAT>"
    assert garnet["widths"] == {"garnet": {"distance": "fixed<19,3,RND,SAT>", "weight_frac": "16",
                                           "distance_weight_frac": "20", "weighted_feature": feature}}
    assert {k: garnet["types"]["garnet"][k] for k in garnet["widths"]["garnet"]} == garnet["widths"]["garnet"]
    assert "rounding boundaries" in garnet["why"] and "fixed<19,3,RND,SAT>" in garnet["why"]
    params = (tmp_path / "prj" / "firmware" / "parameters.h").read_text()
    assert "typedef ap_fixed<19, 3, AP_RND, AP_SAT> distance_t;" in params
    assert f"typedef {FixedType.parse(feature).ap} weighted_feature_t;" in params

    # independent of verify: the published project's C-simulation vs the mirror of the saved weights, and the
    # report's firmware-vs-model figures recomputed from the user's model
    hls_model = hls4ml.converters.link_existing_project(str(tmp_path / "prj"))
    hls_model._top_function_lib = ctypes.CDLL(str(library_path(tmp_path / "prj", "myproject")))
    loaded = load_model(path)
    logits = tf.keras.Model(loaded.inputs, loaded.get_layer("head").output)
    mirror, changed = GarNetMirror().apply(logits)
    assert changed
    names = [v.name for v in hls_model.get_input_variables()]
    if sorted(names) == ["n_vertices", "particles"]:  # YAML sorted the linked inputs by name
        order = ["particles", "n_vertices"]
        hls_model.in_vars = sorted(hls_model.get_input_variables(), key=lambda v: order.index(v.name))
    y_fw = predict(hls_model, [x, counts])
    np.testing.assert_array_equal(y_fw, exact_predict(mirror, [x, counts]))
    y_model = logits.predict([x, counts], verbose=0).astype(np.float64)
    versus = garnet["firmware_vs_model"]
    assert versus["differing_samples"] == int(np.any(y_fw != y_model, axis=1).sum())
    assert versus["max_abs_diff"] == float(np.max(np.abs(y_fw - y_model)))
    assert versus["argmax_agreement"] == float(np.mean(np.argmax(y_fw, 1) == np.argmax(y_model, 1)))
    assert "GarNet garnet not exact in float" in report["verdict_note"]
    assert f"{versus['differing_samples']:,} of {N_PROOF:,} samples differ" in report["verdict_note"]
    assert garnet["exp_table"] == {"garnet": {"entries": 2**19, "entry_bits": 16, "kbit": 8192, "hls4ml_kbit": 64}}
    assert versus["bit_exact_fraction"] >= 0.999 and report["warnings"] == [  # the floor holds; the cost is named
        "GarNet garnet: its exp(-d²) table has 524,288 entries of 16 bits = 8,192 kbit per copy (hls4ml's own: "
        "64 kbit); the estimate does not count it: check memory after HLS synthesis"
    ]
