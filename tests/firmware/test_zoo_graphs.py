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
