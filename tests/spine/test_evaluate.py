"""`trigflow evaluate RUN_DIR`: a trained run scored on raw arrays, with the run's recorded preprocessing.

Uses the gnn run of ``test_run_gnn.py`` (shared per session) and the raw form of that run's own test jets: the
evaluation must reproduce the run's test accuracy exactly and the firmware must stay bit-exact.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_run_gnn import make_gnn_run

from trigflow.errors import TrigflowError


def trigflow(*args):
    return subprocess.run(
        [sys.executable, "-c", "from trigflow.cli import main; main()", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def gnn_run(tmp_path_factory):
    return make_gnn_run(tmp_path_factory)


@pytest.fixture(scope="module")
def raw_test(gnn_run):
    """The run's test jets in raw form ((pT/GeV, η_rel, φ_rel) per constituent, jet pT), rebuilt from the
    data file and the run's split."""
    from trigflow.data.jets import load_jets
    from trigflow.data.prepare import split
    from trigflow.kinds.gnn import raw_from_jets

    d = gnn_run["config"].data
    jets = load_jets(gnn_run["data"], parts=("constituents",))
    raw, jet_pt = raw_from_jets(jets)
    index = np.arange(len(raw))
    labels = jets.label.astype(np.int64)
    parts = split(index, labels, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=d.seed)
    return raw[parts.x_test], jet_pt[parts.x_test], parts.y_test


def test_raw_inputs_give_exactly_the_runs_model_inputs(gnn_run, raw_test):
    from trigflow.evaluate_run import model_inputs

    raw, jet_pt, _ = raw_test
    pre = json.loads((gnn_run["out"] / "preprocessing.json").read_text())
    x_run = np.load(gnn_run["out"] / "test_data.npz")["x"]
    np.testing.assert_array_equal(model_inputs(raw, "gnn", pre, jet_pt), x_run)
    swapped = raw[..., [0, 2, 1]]  # η and φ exchanged: the check must notice
    assert not np.array_equal(model_inputs(swapped, "gnn", pre, jet_pt), x_run)


def test_evaluate_reproduces_the_runs_test_accuracy(gnn_run, raw_test, tmp_path):
    raw, jet_pt, y = raw_test
    rng = np.random.default_rng(1)
    shuffled = np.stack([jet[rng.permutation(len(jet))] for jet in raw])  # any constituent order
    mev = np.float32(1000)  # pT in MeV: z is scale free
    np.savez(tmp_path / "x.npz", constituents=shuffled * [mev, 1, 1], jet_pt=jet_pt * mev)
    np.save(tmp_path / "y.npy", np.eye(5, dtype=np.int64)[y])  # one-hot labels
    result = trigflow("evaluate", str(gnn_run["out"]), "--data", str(tmp_path / "x.npz"), "--labels",
                      str(tmp_path / "y.npy"), "--out", str(tmp_path / "eval.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    report = gnn_run["report"]
    assert evaluation["samples"] == report["samples"]
    assert evaluation["accuracy"] == report["accuracy"]
    assert evaluation["auc"] == report["auc"]
    assert evaluation["bit_exact_fraction"] == 1.0
    assert "metrics:" in result.stdout


def test_evaluate_refuses_inconsistent_inputs(gnn_run, raw_test, tmp_path):
    from trigflow.evaluate_run import evaluate_run

    raw, jet_pt, y = raw_test
    with pytest.raises(TrigflowError, match="labels have"):
        evaluate_run(gnn_run["out"], raw, y[:-1], firmware=False)
    with pytest.raises(TrigflowError, match=r"\(jets, particles, 3\)"):
        evaluate_run(gnn_run["out"], raw[..., :2], y, firmware=False)
    with pytest.raises(TrigflowError, match="0..4"):
        evaluate_run(gnn_run["out"], raw, y + 5, firmware=False)
    with pytest.raises(TrigflowError, match="one value per jet"):
        evaluate_run(gnn_run["out"], raw, y, jet_pt=jet_pt[:-1], firmware=False)
    other = tmp_path / "prj"
    shutil.copytree(gnn_run["project"], other)
    (other / "trigflow_report.json").write_text("{}")  # a project rebuilt by another run
    with pytest.raises(TrigflowError, match="does not hold the firmware"):
        evaluate_run(gnn_run["out"], raw, y, jet_pt=jet_pt, project_dir=other)


def test_evaluate_without_firmware_writes_into_the_run(gnn_run, raw_test):
    from trigflow.evaluate_run import evaluate_run

    raw, jet_pt, y = raw_test
    result = evaluate_run(gnn_run["out"], raw[:100], y[:100], jet_pt=jet_pt[:100], firmware=False)
    assert result.path == gnn_run["out"].resolve() / "evaluate.json"
    assert set(result.report["accuracy"]) == {"float", "qkeras"}
    result.path.unlink()  # leave the shared run as it was


def test_evaluate_scores_an_mlp_run_on_raw_features(small_run, fake_jets):
    """mlp runs (the shared small run): the raw input is the 16 HLF in the run's order; labels may be class
    names."""
    from trigflow.data.jets import load_jets
    from trigflow.data.prepare import split
    from trigflow.evaluate_run import evaluate_run

    root, _, completed = small_run
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads((root / "out" / "report.json").read_text())
    config = json.loads((root / "out" / "config.json").read_text())["data"]
    jets = load_jets(fake_jets)
    parts = split(jets.hlf, jets.label.astype(np.int64), test_fraction=config["test_fraction"],
                  val_fraction=config["val_fraction"], seed=config["seed"])
    names = np.array(["g", "q", "w", "z", "t"])[parts.y_test]
    result = evaluate_run(root / "out", parts.x_test, names)
    try:
        assert result.report["accuracy"] == report["accuracy"]
        assert result.report["bit_exact_fraction"] == 1.0
        with pytest.raises(TrigflowError, match="gnn runs only"):
            evaluate_run(root / "out", parts.x_test, names, jet_pt=np.ones(len(names)), firmware=False)
    finally:
        result.path.unlink()  # leave the shared run as it was


# --- public-format constituent arrays: no trained run needed ------------------------------------------------
def _public_jets(n_jets: int, n_const: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(jets, n_const, 3) = (pT/GeV, η_rel, φ_rel) in random order, a few zero rows, and the jet pT (GeV)."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(40.0, (n_jets, n_const)).astype(np.float32) + 1
    pt[:, -2:] = 0  # padding
    raw = np.stack([pt, rng.uniform(-0.8, 0.8, pt.shape), rng.uniform(-0.8, 0.8, pt.shape)], axis=-1)
    raw = (raw * (pt > 0)[..., None]).astype(np.float32)
    return raw, pt.sum(axis=1) * np.float32(1.05)


def test_check_constituents_states_sorting_truncation_and_padding():
    from trigflow.evaluate_run import check_constituents

    raw, jet_pt = _public_jets(6, 10)
    info = check_constituents(raw, jet_pt, 16)  # 8 real constituents per jet, run takes 16
    assert info["constituents_supplied"] == 10 and info["n_particles"] == 16
    assert info["real_constituents"] == {"min": 8, "median": 8.0, "max": 8}
    assert info["jets_zero_padded"] == 6 and info["jets_truncated"] == 0
    assert info["pt_unit"].startswith("absolute") and "sorted by pT" in info["order"]
    assert check_constituents(raw, jet_pt, 4)["jets_truncated"] == 6
    # pT fractions with no jet pT are fine (z is scale free) and named as such
    z = raw.copy()
    z[..., 0] = raw[..., 0] / raw[..., 0].sum(axis=1, keepdims=True)
    assert check_constituents(z, None, 8)["pt_unit"] == "fraction of the jet pT"


def test_check_constituents_refuses_unit_mismatches():
    from trigflow.evaluate_run import check_constituents

    raw, jet_pt = _public_jets(5, 12)
    z = raw.copy()
    z[..., 0] = raw[..., 0] / jet_pt[:, None]
    with pytest.raises(TrigflowError, match="different units"):
        check_constituents(z, jet_pt, 8)  # fractions beside a jet pT in GeV
    with pytest.raises(TrigflowError, match="different units"):
        check_constituents(raw, jet_pt / 1000, 8)  # GeV beside TeV
    check_constituents(raw * [1000, 1, 1], jet_pt * 1000, 8)  # MeV beside MeV: one unit, accepted
    with pytest.raises(TrigflowError, match="column order"):
        check_constituents(raw[..., [1, 0, 2]], None, 8)  # η first: negative "pT"
    absolute = raw.copy()
    absolute[..., 2] += 2.5 * (raw[..., 0] > 0)  # absolute φ instead of φ − φ_jet
    with pytest.raises(TrigflowError, match="relative to the jet"):
        check_constituents(absolute, None, 8)


def test_public_constituent_files_load_as_raw_columns(tmp_path):
    """Zenodo-style 16-feature constituents: .h5 (data, labels, jet pT from one file) and named .npz."""
    import h5py

    from trigflow.data.public import ZENODO_PARTICLE_FEATURES
    from trigflow.evaluate_run import load_array, load_jet_pt

    raw, jet_pt = _public_jets(4, 8, seed=3)
    full = np.zeros((4, 8, 16), np.float32)
    for column, name in zip(range(3), ("j1_pt", "j1_etarel", "j1_phirel")):
        full[..., ZENODO_PARTICLE_FEATURES.index(name)] = raw[..., column]
    names = [*ZENODO_PARTICLE_FEATURES, "j1_pdgid"]
    np.savez(tmp_path / "c.npz", constituents=full, particleFeatureNames=np.array(names))
    np.testing.assert_array_equal(load_array(tmp_path / "c.npz"), raw)

    jet_names = ["j_pt", "j_eta", "j_mass", "j_g", "j_q", "j_w", "j_z", "j_t", "j_undef"]
    from trigflow.data import HLF_NAMES

    jet_names += [f"j_{n}" for n in HLF_NAMES]
    jets = np.zeros((4, len(jet_names)), np.float32)
    jets[:, 0] = jet_pt
    labels = np.array([0, 4, 2, 1])
    jets[np.arange(4), 3 + labels] = 1
    with h5py.File(tmp_path / "jets.h5", "w") as f:
        f["jets"] = jets
        f["jetFeatureNames"] = np.array([n.encode() for n in jet_names])
        f["jetConstituentList"] = full
        f["particleFeatureNames"] = np.array([n.encode() for n in names])
    path = tmp_path / "jets.h5"
    np.testing.assert_array_equal(load_array(path, "data"), raw)
    assert load_array(path, "labels").tolist() == ["g", "t", "w", "q"]
    np.testing.assert_array_equal(load_jet_pt(path, None), jet_pt)
