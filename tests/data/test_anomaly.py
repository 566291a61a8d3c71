"""Data layer: the L1 anomaly-detection generator (small file in tmp_path) and the embedded data set."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from trigflow.data import anomaly
from trigflow.data.anomaly import (
    FEATURE_NAMES,
    PROCESSES,
    SIGNALS,
    cached_anomaly,
    component_counts,
    embedded_anomaly_path,
    generate_anomaly,
    load_anomaly,
)
from trigflow.errors import TrigflowError

N_BKG, N_SIG, SEED = 150, 15, 7
# object slots [lo, hi), pT threshold, |eta| limit
OBJECT_BLOCKS = {"e": (1, 5, 3.0, 3.0), "mu": (5, 9, 3.0, 2.1), "j": (9, 19, 15.0, 4.0)}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small file made through the cache (default workers), so the cache path is exercised too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIGFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))
        path = cached_anomaly(N_BKG, N_SIG, SEED)
        yield path


@pytest.fixture(scope="module")
def embedded():
    return load_anomaly()


def _objects(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), 19, 3)


def _multiplicities(x: np.ndarray) -> dict[str, np.ndarray]:
    obj = _objects(x)
    return {
        "met": x[:, 0],
        "n_lep": (obj[:, 1:9, 0] > 0).sum(axis=1),
        "n_jet": (obj[:, 9:19, 0] > 0).sum(axis=1),
    }


def test_layout(small):
    assert small.name.startswith(anomaly.GENERATOR_TAG)
    with h5py.File(small, "r") as f:
        assert f["x"].shape == (N_BKG + len(SIGNALS) * N_SIG, 57) and f["x"].dtype == np.float32
        assert f["x"].compression == "gzip" and f["x"].shuffle and f["x"].maxshape == (None, 57)
        assert tuple(f["x"].attrs["names"]) == FEATURE_NAMES
        assert f["process"].dtype == np.int8 and tuple(f["process"].attrs["processes"]) == PROCESSES
        assert f.attrs["seed"] == SEED and f.attrs["trigflow_version"] and f.attrs["generator"]
        opts = json.loads(f.attrs["options"])
        assert opts["jet"]["r"] == 0.4 and set(opts["signals"]) == {s.name for s in SIGNALS}
    data = load_anomaly(small)
    assert PROCESSES[0] == "background" and data.processes == PROCESSES
    assert FEATURE_NAMES[:4] == ("MET_pt", "MET_eta", "MET_phi", "e0_pt") and FEATURE_NAMES[-1] == "j9_phi"
    np.testing.assert_array_equal(np.bincount(data.process, minlength=5), [N_BKG] + [N_SIG] * len(SIGNALS))
    np.testing.assert_array_equal(np.bincount(data.component, minlength=8), component_counts(N_BKG, N_SIG))
    assert np.isfinite(data.x).all()


def test_objects_sorted_padded_and_selected(small):
    x = load_anomaly(small).x
    obj = _objects(x)
    assert (obj[:, 0, 1] == 0).all() and (obj[:, 0, 0] >= 0).all()  # MET: eta = 0
    assert (np.abs(obj[..., 2]) <= np.pi + 1e-6).all()
    passed = np.zeros(len(x), bool)
    for kind, (lo, hi, pt_min, eta_max) in OBJECT_BLOCKS.items():
        pt, eta, phi = obj[:, lo:hi, 0], obj[:, lo:hi, 1], obj[:, lo:hi, 2]
        assert (np.diff(pt, axis=1) <= 0).all(), f"{kind} not sorted by pT"
        empty = pt == 0
        assert ((eta == 0) & (phi == 0))[empty].all(), f"{kind} padding not zero"
        assert (pt[~empty] >= pt_min).all() and (np.abs(eta[~empty]) <= eta_max).all()
        passed |= (pt > (50.0 if kind == "j" else 23.0)).any(axis=1)
    assert passed.all(), "an event fails the L1 preselection"
    assert (obj[:, 9, 0] > 0).any() and (obj[:, 1:9, 0] > 0).any()


def test_same_seed_same_file_whatever_the_workers(small, tmp_path):
    again = generate_anomaly(tmp_path / "again.h5", N_BKG, N_SIG, SEED, workers=1)
    a, b = load_anomaly(small), load_anomaly(again)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.process, b.process)


def test_seed_changes_events():
    a = anomaly.generate_chunk(anomaly._Chunk(component=2, n=5, seed=1, block=0))
    b = anomaly.generate_chunk(anomaly._Chunk(component=2, n=5, seed=2, block=0))
    assert a.x.shape == b.x.shape == (5, 57) and not np.array_equal(a.x, b.x)


def test_cache_hit_and_overwrite_refusal(small, monkeypatch):
    monkeypatch.setenv("TRIGFLOW_CACHE", str(small.parent.parent))

    def fail(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(anomaly, "generate_anomaly", fail)
    assert cached_anomaly(N_BKG, N_SIG, SEED) == small
    with pytest.raises(TrigflowError, match="already exists"):
        generate_anomaly(small, N_BKG, N_SIG, SEED)


@pytest.mark.parametrize("args", [(-1, 5, 0), (0, 0, 0), (10, 2, -3), (1.5, 2, 0)])
def test_bad_arguments(tmp_path, args):
    with pytest.raises(TrigflowError, match="non-negative integer|nothing to generate"):
        generate_anomaly(tmp_path / "x.h5", *args)


def test_truncated_corrupt_or_foreign_files(small, tmp_path):
    data = small.read_bytes()
    for name, content in (("truncated.h5", data[: len(data) // 2]), ("garbage.h5", b"not hdf5" * 100)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(TrigflowError, match="corrupt or truncated"):
            load_anomaly(tmp_path / name)
    with pytest.raises(TrigflowError, match="not found"):
        load_anomaly(tmp_path / "missing.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros((3, 10), np.float32)
        f["process"] = np.zeros(3, np.int8)
    with pytest.raises(TrigflowError, match=r"not \(N, 57\)"):
        load_anomaly(foreign)
    with h5py.File(foreign, "w") as f:
        f["y"] = np.zeros(3)
    with pytest.raises(TrigflowError, match="lacks dataset"):
        load_anomaly(foreign)


def test_embedded_composition(embedded):
    assert embedded_anomaly_path().stat().st_size <= 15e6
    assert embedded.processes == PROCESSES and embedded.names == FEATURE_NAMES
    counts = np.bincount(embedded.process, minlength=len(PROCESSES))
    assert counts[0] == embedded.attrs["n_background"] >= 50_000
    assert (counts[1:] == embedded.attrs["n_signal"]).all() and embedded.attrs["n_signal"] >= 4_000
    # mixed in blocks: the first and the last tenth have the composition of the whole file
    n = len(embedded)
    for part in (embedded.component[: n // 10], embedded.component[-n // 10 :]):
        share = np.bincount(part, minlength=8) / len(part)
        np.testing.assert_allclose(share, np.bincount(embedded.component, minlength=8) / n, atol=0.02)


def test_signals_differ_from_background(embedded):
    from sklearn.metrics import roc_auc_score

    feats = _multiplicities(embedded.x)
    bkg = embedded.process == 0
    med_met_bkg = np.median(feats["met"][bkg])
    mean_lep_bkg = feats["n_lep"][bkg].mean()
    for i, name in enumerate(PROCESSES[1:], start=1):
        sig = embedded.process == i
        sel = bkg | sig
        aucs = {k: roc_auc_score(sig[sel], v[sel]) for k, v in feats.items()}
        # every signal is separable from the background in at least one of MET, lepton or jet multiplicity
        assert max(abs(a - 0.5) for a in aucs.values()) > 0.15, (name, aucs)
        med_met, mean_lep = np.median(feats["met"][sig]), feats["n_lep"][sig].mean()
        if name == "a_4l":
            assert mean_lep > mean_lep_bkg + 1.0, (mean_lep, mean_lep_bkg)
        if name in ("hpm_taunu", "h_tautau"):
            assert med_met > med_met_bkg + 5.0, (med_met, med_met_bkg)
        if name == "lq_btau":
            assert feats["n_jet"][sig].mean() > feats["n_jet"][bkg].mean() + 1.5
