"""End-to-end: `trigflow run gnn` (Interaction Network) through pipeline.run on a small synthetic jet file.

The run is shared with ``test_evaluate.py`` through ``make_gnn_run`` (one training + one compile per session).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from trigflow.data import HLF_NAMES, JET_CLASSES

N_PARTICLES = 8  # model slots
N_STORED = 10  # constituents in the file: more than the slots, some jets padded, stored in random order
N_JETS = 2400
_RUNS: dict[str, dict] = {}


def write_fake_constituent_jets(path: Path, n: int = N_JETS, seed: int = 3) -> Path:
    """A jet file in the generator's layout; classes differ in constituent count, pT sharing and width."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(JET_CLASSES), n).astype(np.int8)
    width = np.array([0.30, 0.20, 0.10, 0.12, 0.25])[label]
    alpha = np.array([0.5, 1.0, 3.0, 2.0, 1.5])[label]
    count = np.clip(np.array([10, 7, 5, 6, 9])[label] + rng.integers(-1, 2, n), 3, N_STORED)
    constituents = np.zeros((n, N_STORED, 5), np.float32)
    for i in range(n):
        k = count[i]
        z = rng.dirichlet(np.full(k, alpha[i]))
        deta, dphi = rng.normal(0, width[i], (2, k))
        slots = rng.permutation(N_STORED)[:k]  # unsorted, padding anywhere
        constituents[i, slots] = np.stack([z, deta, dphi, z * 1000.0, np.hypot(deta, dphi)], axis=1)
    with h5py.File(path, "w") as f:
        hlf = rng.normal(size=(n, len(HLF_NAMES))).astype(np.float32)
        f.create_dataset("hlf", data=hlf).attrs["names"] = list(HLF_NAMES)
        f.create_dataset("label", data=label).attrs["classes"] = list(JET_CLASSES)
        f.create_dataset("pt", data=rng.uniform(800, 1200, n).astype(np.float32))
        f.create_dataset("eta", data=rng.uniform(-2, 2, n).astype(np.float32))
        f.create_dataset("mass", data=rng.uniform(10, 200, n).astype(np.float32))
        f.create_dataset("constituents", data=constituents).attrs["features"] = [
            "pt_fraction", "deta", "dphi", "energy", "delta_r"
        ]
        f.attrs["generator"] = "test fixture"
    return path


def make_gnn_run(tmp_path_factory, arch: str = "in") -> dict:
    """Run the gnn pipeline once per session and architecture; returns paths, the report and the data file."""
    if arch not in _RUNS:
        from trigflow.config import load_config
        from trigflow.pipeline import run

        root = tmp_path_factory.mktemp(f"gnn_{arch}")
        data = write_fake_constituent_jets(root / "jets.h5")
        overrides = {
            "out": str(root / "out"),
            "project_dir": str(root / "prj"),
            "data": {"path": str(data)},
            "model": {"arch": arch, "n_particles": N_PARTICLES, "hidden": (16,)},
            "quant": {"epochs": 3, "batch_size": 64},
            "verify": {"min_samples": 500},
        }
        config = load_config("gnn", overrides=overrides)
        result = run(config)
        _RUNS[arch] = {"root": root, "out": root / "out", "project": root / "prj", "data": data,
                       "config": config, "report": result.report, "failures": result.failures}
    return _RUNS[arch]


@pytest.fixture(scope="module")
def gnn_run(tmp_path_factory):
    return make_gnn_run(tmp_path_factory)


def test_run_proves_the_interaction_network_firmware(gnn_run):
    report = gnn_run["report"]
    assert gnn_run["failures"] == []
    assert report["bit_exact_fraction"] == 1.0
    assert report["samples"] == 600 and report["mismatched_samples"] == 0
    assert report["accuracy"]["firmware"] == report["accuracy"]["qkeras"]
    assert report["accuracy"]["qkeras"] > 0.4  # learnable toy classes (chance 0.2)
    assert report["gnn"]["arch"] == "in" and report["gnn"]["edges"] == N_PARTICLES * (N_PARTICLES - 1)
    assert report["gnn"]["pooling"] == "mean"
    assert (gnn_run["project"] / "trigflow_gnn.json").is_file()
    assert (gnn_run["out"] / "report.json").is_file() and (gnn_run["out"] / "roc.png").is_file()


def test_csim_equals_qkeras_bit_for_bit(gnn_run):
    """Re-link the compiled project and the saved QKeras model, and compare every output bit."""
    from trigflow.evaluate_run import link_firmware, load_models
    from trigflow.firmware.csim import predict

    test = np.load(gnn_run["out"] / "test_data.npz")
    x, y = test["x"], test["y"]
    assert x.shape == (600, N_PARTICLES, 3)
    models = load_models(gnn_run["out"], "gnn", x, list(JET_CLASSES))
    reference = models["qkeras"].predict(x, verbose=0).astype(np.float64)
    firmware = predict(link_firmware(gnn_run["project"], gnn_run["out"], "in"), x)
    assert len(np.unique(reference)) > 100  # non-trivial outputs
    np.testing.assert_array_equal(firmware, reference)
    assert np.mean(np.argmax(reference, 1) == y) == gnn_run["report"]["accuracy"]["qkeras"]


def test_permuting_particles_leaves_qkeras_output_unchanged(gnn_run):
    from trigflow.evaluate_run import load_models

    x = np.load(gnn_run["out"] / "test_data.npz")["x"][:200]
    qmodel = load_models(gnn_run["out"], "gnn", x, list(JET_CLASSES))["qkeras"]
    reference = qmodel.predict(x, verbose=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        permuted = x[:, rng.permutation(N_PARTICLES)]
        np.testing.assert_array_equal(qmodel.predict(permuted, verbose=0), reference)
    per_jet = np.stack([xi[rng.permutation(N_PARTICLES)] for xi in x])  # a different order in every jet
    np.testing.assert_array_equal(qmodel.predict(per_jet, verbose=0), reference)


def test_preprocessing_keeps_padding_zero_and_is_recorded(gnn_run):
    pre = json.loads((gnn_run["out"] / "preprocessing.json").read_text())
    assert pre["raw"]["n_particles"] == N_PARTICLES and pre["raw"]["features"] == ["pt", "eta_rel", "phi_rel"]
    assert pre["features"] == ["pt_fraction", "deta", "dphi"]
    assert pre["standardize"]["mean"] == [0.0, 0.0, 0.0]
    x = np.load(gnn_run["out"] / "test_data.npz")["x"]
    real = np.any(x != 0, axis=-1)
    assert 0 < real.mean() < 1  # padded slots stay exact zeros (a mean shift would make them -mean/scale)
    assert np.all(real[:, :-1] >= real[:, 1:])  # sorted: real particles first (highest pT first)
    assert np.all(np.diff(x[..., 0], axis=1)[real[:, 1:]] <= 0)  # z descending


def test_features_from_raw_sorts_truncates_and_is_scale_free():
    from trigflow.errors import TrigflowError
    from trigflow.kinds.gnn import features_from_raw

    raw = np.array([[[10.0, 0.1, 0.2], [0.0, 0.0, 0.0], [30.0, -0.1, 0.0], [20.0, 0.3, -0.3]]], np.float32)
    x = features_from_raw(raw, 2, jet_pt=np.array([100.0]))  # z relative to the whole jet
    np.testing.assert_allclose(x[0], [[0.3, -0.1, 0.0], [0.2, 0.3, -0.3]], rtol=1e-6)
    summed = features_from_raw(raw, 2)  # no jet pT: the scalar sum of all supplied constituents (60)
    np.testing.assert_allclose(summed[0, :, 0], [0.5, 1 / 3], rtol=1e-6)
    padded = features_from_raw(raw, 6)
    assert padded.shape == (1, 6, 3) and np.all(padded[0, 3:] == 0)
    np.testing.assert_array_equal(features_from_raw(raw * [1000, 1, 1], 6), padded)  # GeV or MeV: same z
    with pytest.raises(TrigflowError, match="shape"):
        features_from_raw(raw[..., :2], 4)
    with pytest.raises(TrigflowError, match="one value per jet"):
        features_from_raw(raw, 4, jet_pt=np.array([1.0, 2.0]))


@pytest.mark.slow
def test_garnet_run_is_bit_exact(tmp_path_factory):
    """GarNet: the QKeras model's GarNetHLS mirrors hls4ml's nnet::garnet arithmetic → every check passes."""
    run = make_gnn_run(tmp_path_factory, "garnet")
    report = run["report"]
    assert report["bit_exact_fraction"] == 1.0 and report["passed"], report["failures"]
    assert report["max_abs_diff_vs_qkeras"] == 0.0 and report["onnx_max_abs_diff"] == 0.0
    assert "GarNetHLS" in report["gnn"]["exactness"]
    record = json.loads((Path(report["project_dir"]) / "trigflow_gnn.json").read_text())
    assert record["bit_exact_by_construction"] is True
    assert record["layer_precisions"]["garnet"]["edge_weight"] == "ufixed<16,0,RND,SAT>"


@pytest.mark.slow
def test_deepsets_run_is_bit_exact(tmp_path_factory):
    report = make_gnn_run(tmp_path_factory, "deepsets")["report"]
    assert report["bit_exact_fraction"] == 1.0 and report["passed"]



def test_phi_hidden_sets_the_deepsets_phi_layers():
    from trigflow.config import load_config
    from trigflow.kinds import Prepared, recipe_for

    deepsets = {"arch": "deepsets", "phi_hidden": (8, 4), "hidden": (4,)}
    config = load_config("gnn", overrides={"model": deepsets})
    x = np.zeros((1, N_PARTICLES, 3), np.float32)
    y = np.zeros(1, np.int64)
    stub = Prepared(x, y, x, y, x, y, {}, tuple(JET_CLASSES))
    for quantized in (False, True):
        model = recipe_for("gnn").build(stub, config, quantized)
        widths = [model.get_layer(f"phi_dense_{k}").get_weights()[0].shape for k in range(2)]
        assert widths == [(3, 8), (8, 4)]
