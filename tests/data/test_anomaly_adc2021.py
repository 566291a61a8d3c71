"""Data layer: the ADC2021-like weighted anomaly file (``generate_anomaly(..., selection="adc2021")``): the
selection on synthetic events, event counts, weight normalisation, the loader and the AE recipe reading the
weights; one slow end-to-end generation."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import awkward as ak
import h5py
import numpy as np
import pytest

from trigflow.data import anomaly
from trigflow.data.anomaly import (
    ADC2021,
    FEATURE_NAMES,
    PROCESSES,
    SIGNALS,
    TRIGFLOW,
    component_counts,
    component_weights,
    generate_anomaly,
    generator_lepton,
    load_anomaly,
    options,
    reconstruct,
)
from trigflow.errors import TrigflowError

E0, MU0 = FEATURE_NAMES.index("e0_pt"), FEATURE_NAMES.index("mu0_pt")
FRACTIONS = {"w_lnu": 0.592, "qcd": 0.338, "z_ll": 0.067, "ttbar": 0.003}  # ADC2021, after the filter


def _events(*events: list[tuple[int, int, float, float, float]]) -> ak.Array:
    """Pythia-like particle records from (id, status, pT, eta, phi) tuples, one list per event."""
    out = []
    for parts in events:
        rows = []
        for pid, status, pt, eta, phi in parts:
            px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
            e = float(np.sqrt(px**2 + py**2 + pz**2 + 0.14**2))
            rows.append({"id": pid, "status": status, "p": {"px": px, "py": py, "pz": pz, "e": e}})
        out.append(rows)
    return ak.Array(out)


# mu of 30 GeV with 9 GeV of hadrons in its cone (relative isolation 0.3); a 80 GeV jet and no lepton;
# an isolated 40 GeV electron
SYNTHETIC = _events(
    [(13, 1, 30.0, 0.0, 0.0), (211, 1, 9.0, 0.1, 0.0), (211, 1, 1.0, -2.0, 2.0)],
    [(211, 1, 25.0, 1.0, 1.0), (211, 1, 25.0, 1.02, 1.01), (211, 1, 30.0, 0.98, 0.99), (211, 1, 1.0, -1, -2)],
    [(11, 1, 40.0, 0.5, -1.0), (211, 1, 2.0, -1.0, 2.0)],
)


def test_trigflow_selection_is_the_embedded_files():
    """Default selection: options and cuts as the embedded file was made with; no weights in it."""
    embedded = load_anomaly()
    assert options() == options("trigflow") == json.loads(embedded.attrs["options"])
    assert (TRIGFLOW.iso_max, TRIGFLOW.lepton_trigger_pt, TRIGFLOW.jet_trigger_pt) == (0.15, 23.0, 50.0)
    assert TRIGFLOW.background == anomaly.BACKGROUND and embedded.weight is None
    assert "selection" not in embedded.attrs and "weight" not in embedded.attrs["generation_stats"]
    assert embedded.components == tuple(c.name for c in anomaly.COMPONENTS)
    # the fixed-fraction split, by hand: 150 x (0.592, 0.338, 0.067, 0.003) = 88.8, 50.7, 10.05, 0.45
    assert component_counts(150, 15) == [89, 51, 10, 0] + [15] * len(SIGNALS)


def test_jet_leg_and_isolation_on_synthetic_events():
    _, trigflow = reconstruct(SYNTHETIC, np.random.default_rng(0))
    x, adc = reconstruct(SYNTHETIC, np.random.default_rng(0), ADC2021)
    np.testing.assert_array_equal(trigflow, [False, True, True])  # jet leg passes; mu not isolated at 0.15
    np.testing.assert_array_equal(adc, [True, False, True])  # no jet leg; the mu is isolated at 0.45
    assert x[0, MU0] > 23 and x[1, E0] == x[1, MU0] == 0 and x[1, FEATURE_NAMES.index("j0_pt")] > 50
    # the isolation alone turns the first event: ADC2021's filter with trigflow's 0.15 drops the mu
    _, tight = reconstruct(SYNTHETIC, np.random.default_rng(0), replace(ADC2021, iso_max=0.15))
    np.testing.assert_array_equal(tight, [False, False, True])
    assert ADC2021.iso_max == 0.45 and ADC2021.jet_trigger_pt is None


def test_generator_lepton_veto():
    events = _events(
        [(13, 1, 19.0, 0.0, 0.0), (211, 1, 50.0, 1.0, 1.0)],  # mu below 20 GeV, a hard pion: vetoed
        [(-11, 1, 21.0, 2.5, 0.0)],  # e above 20 GeV (the veto has no eta cut)
        [(13, -62, 30.0, 0.0, 0.0), (211, 1, 30.0, 0.0, 1.0)],  # the mu is not final-state
    )
    np.testing.assert_array_equal(generator_lepton(events, 20.0), [False, True, False])
    assert all(c.gen_lepton_pt == 20.0 for c in anomaly.QCD_HF)
    assert all(c.gen_lepton_pt is None for c in ADC2021.components if c.weight_group != "qcd")


def test_adc2021_components_and_counts():
    names = [c.name for c in ADC2021.background]
    assert names == ["w_lnu", "qcd_hf_20_40", "qcd_hf_40_80", "qcd_hf_80", "z_ll", "ttbar"]
    assert all("HardQCD:hardbbbar = on" in c.settings for c in anomaly.QCD_HF)
    assert "PhaseSpace:pTHatMax = 40.0" in anomaly.QCD_HF[0].settings
    assert not any("pTHatMax" in s for s in anomaly.QCD_HF[2].settings)
    counts = component_counts(1000, 3, "adc2021")
    assert sum(counts[:6]) == 1000 and counts[6:] == [3] * len(SIGNALS) and min(counts[:6]) >= 1
    # QCD: 33.8 % of the events, split n_b ~ s_b / sqrt(c_b) (0.192, 0.731, 0.078 of it)
    assert sum(counts[1:4]) in (337, 338, 339) and counts[1:4] == [65, 246, 27]
    assert component_counts(6, 0, "adc2021") == [1] * 6 + [0] * len(SIGNALS)
    assert component_counts(0, 2, "adc2021") == [0] * 6 + [2] * len(SIGNALS)
    with pytest.raises(TrigflowError, match="needs n_background >= 6"):
        component_counts(4, 1, "adc2021")
    with pytest.raises(TrigflowError, match="unknown selection 'cms'; choose from trigflow, adc2021"):
        component_counts(10, 1, "cms")
    opts = options("adc2021")
    assert opts["isolation"] == {"dr": 0.3, "max_rel": 0.45, "trigflow_max_rel": 0.15}
    assert opts["selection"] == "adc2021" and "no jet leg" in opts["preselection"]
    assert opts["weights"]["background_fractions"] == pytest.approx(FRACTIONS)


def test_slow_qcd_bins_are_cut_into_chunks_with_their_own_seeds():
    plan = anomaly._plan(90_000, 5_000, 0, "adc2021")
    counts = component_counts(90_000, 5_000, "adc2021")
    for c, comp in enumerate(ADC2021.components):
        mine = [chunk for chunk in plan if chunk.component == c]
        assert sum(chunk.n for chunk in mine) == counts[c]
        if comp.chunk_events:  # ~10 core-minutes each: 23, 314, 403 events
            assert max(chunk.n for chunk in mine) <= comp.chunk_events and len(mine) >= 19
        else:
            assert len(mine) == 19  # one per block of 6,000 events, as before
    assert [c.chunk_events for c in anomaly.QCD_HF] == [23, 314, 403]
    assert [sum(c.component == i for c in plan) for i in (1, 2, 3)] == [266, 76, 19]  # 5,828 / 23 per block...
    seeds = {anomaly._seeds(0, c.component, c.block, c.part)[0] for c in plan}
    assert len(seeds) == len(plan)
    # the default selection keeps one chunk per component and block, with the seeds it always had
    assert all(c.part == 0 for c in anomaly._plan(60_000, 5_000, 0))
    (a, rng_a), (b, rng_b) = anomaly._seeds(1, 2, 3), anomaly._seeds(1, 2, 3, 0)
    assert a == b and rng_a.random() == rng_b.random()


def test_weights_sum_to_the_adc2021_fractions():
    stats = {
        "w_lnu": {"kept": 590, "generated": 680, "sigma_gen_pb": 4.6e4},
        "qcd_hf_20_40": {"kept": 60, "generated": 200_000, "sigma_gen_pb": 2.5e6},
        "qcd_hf_40_80": {"kept": 250, "generated": 60_000, "sigma_gen_pb": 2.0e5},
        "qcd_hf_80": {"kept": 30, "generated": 5_000, "sigma_gen_pb": 1.3e4},
        "z_ll": {"kept": 66, "generated": 74, "sigma_gen_pb": 2.0e3},
        "ttbar": {"kept": 4, "generated": 15, "sigma_gen_pb": 700.0},
    }
    w = component_weights(ADC2021.background, stats)
    total = {
        g: sum(v["weight"] * stats[k]["kept"] for k, v in w.items() if v["weight_group"] == g)
        for g in FRACTIONS
    }
    assert total == pytest.approx(FRACTIONS, rel=1e-12)
    sigma_pass = {k: stats[k]["sigma_gen_pb"] * stats[k]["kept"] / stats[k]["generated"] for k in stats}
    qcd = ("qcd_hf_20_40", "qcd_hf_40_80", "qcd_hf_80")
    for k in qcd:  # the QCD share of each bin follows sigma_gen x efficiency
        share = sigma_pass[k] / sum(sigma_pass[b] for b in qcd)
        assert w[k]["weight_fraction"] == pytest.approx(0.338 * share)
        assert w[k]["sigma_pass_pb"] == pytest.approx(sigma_pass[k])
        assert w[k]["efficiency"] == stats[k]["kept"] / stats[k]["generated"]
    assert w["w_lnu"]["weight"] == pytest.approx(0.592 / 590)
    # a given efficiency (the chunk-corrected one) replaces kept / generated
    stats["qcd_hf_80"]["efficiency"] = 2 * 30 / 5_000
    doubled = component_weights(ADC2021.background, stats)["qcd_hf_80"]
    assert doubled["sigma_pass_pb"] == pytest.approx(2 * sigma_pass["qcd_hf_80"])
    assert doubled["efficiency"] == 0.012
    # a component without events gets no weight; its group's fraction goes to the members that have events
    del stats["qcd_hf_80"]
    w = component_weights(ADC2021.background, stats)
    assert "qcd_hf_80" not in w
    assert w["qcd_hf_20_40"]["weight_fraction"] + w["qcd_hf_40_80"]["weight_fraction"] == pytest.approx(0.338)


def test_efficiency_is_unbiased_for_generation_stopped_at_the_kth_pass():
    from trigflow.data.anomaly import preselection_efficiency

    eff, how = preselection_efficiency(3, 101)
    assert eff == 0.02 and how.startswith("(K-1)/(N-1)")
    eff, how = preselection_efficiency(1, 40)
    assert eff == 1 / 40 and how.startswith("K/N with K = 1")
    # 20,000 components of K = 3 passes at p = 0.01: (K-1)/(N-1) averages to p, K/N to about p K/(K-1)
    rng = np.random.default_rng(0)
    n = rng.negative_binomial(3, 0.01, 20_000) + 3  # Pythia events up to and including the 3rd pass
    unbiased = np.mean([preselection_efficiency(3, int(v))[0] for v in n])
    assert unbiased == pytest.approx(0.01, rel=0.02) and np.mean(3 / n) > 0.014


def _write(path, weight=None, n_bg=300, n_sig=20):
    rng = np.random.default_rng(1)
    process = np.concatenate([np.zeros(n_bg, np.int8)] + [np.full(n_sig, k, np.int8) for k in range(1, 5)])
    with h5py.File(path, "w") as f:
        x = rng.exponential(10.0, (len(process), 57)).astype(np.float32)
        f.create_dataset("x", data=x).attrs["names"] = list(FEATURE_NAMES)
        f.create_dataset("process", data=process).attrs["processes"] = list(PROCESSES)
        if weight is not None:
            f.create_dataset("weight", data=weight(process))
    return path


def test_loader_and_the_ae_recipe_read_weights(tmp_path):
    from trigflow.config import load_config
    from trigflow.kinds import ae as recipe

    path = _write(tmp_path / "w.h5", lambda p: np.where(p == 0, 0.5, 1.0) + np.arange(len(p)) * 1e-3)
    data = load_anomaly(path)
    assert data.weight.dtype == np.float64 and data.weight[0] == 0.5
    assert data.weight[-1] == pytest.approx(1.379)
    config = load_config("ae", overrides={"data": {"path": str(path)}, "verify": {"min_samples": 10}})
    arrays = recipe.load(config)
    np.testing.assert_array_equal(arrays.extra["weight"], data.weight)
    prepared = recipe.prepare(arrays, config)
    w_test = recipe.weights_of_test_events(prepared)
    assert w_test is not None and len(w_test) == len(prepared.y_test)
    assert set(np.round(w_test[prepared.y_test == 0] - 0.5, 6)) <= set(np.round(np.arange(300) * 1e-3, 6))
    # the reconstruction loss is weighted too: the file's weights of each split, scaled to mean 1
    d = config.data
    train, val, _ = recipe.split_background(
        arrays.y, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=d.seed
    )
    for split, idx in (("w_train", train), ("w_val", val)):
        expected = data.weight[idx] / data.weight[idx].mean()
        np.testing.assert_allclose(prepared.extra[split], expected, rtol=1e-12)
        assert np.ptp(expected) > 0  # the weights differ between events, so the check means something
    assert "training_weights" in prepared.preprocessing
    # no dataset: weight 1 everywhere, the unweighted path
    plain = _write(tmp_path / "plain.h5")
    assert load_anomaly(plain).weight is None
    plain_config = load_config("ae", overrides={"data": {"path": str(plain)}, "verify": {"min_samples": 10}})
    plain_arrays = recipe.load(plain_config)
    assert "weight" not in plain_arrays.extra
    plain_prepared = recipe.prepare(plain_arrays, plain_config)
    assert plain_prepared.extra == {} and "training_weights" not in plain_prepared.preprocessing
    for bad in (lambda p: -np.ones(len(p)), lambda p: np.ones(len(p) - 1), lambda p: np.full(len(p), np.nan)):
        with pytest.raises(TrigflowError, match="`weight` is not one finite weight >= 0 per event"):
            load_anomaly(_write(tmp_path / "bad.h5", bad))


def test_cli_refuses_unknown_selection_and_too_few_events(monkeypatch, capsys, tmp_path):
    from trigflow.cli import main

    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.chdir(tmp_path)
    for args, message in (
        (["--selection", "cms"], "unknown selection 'cms'; choose from trigflow, adc2021"),
        (["--selection", "adc2021", "--n", "3"], "needs n_background >= 6"),
    ):
        monkeypatch.setattr(sys, "argv", ["trigflow", "data", "anomaly", "--out", "a.h5", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and message in err and len(err.splitlines()) == 1, err
        assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_generate_a_tiny_adc2021_file(tmp_path):
    """6 background events (one per component: the minimum) and 2 per signal, on 2 workers, then again on 1.
    Measured here (2 cores shared with another job, load 1.5): the 2-worker file in 28-30 s, of which the
    20-40 GeV QCD bin's one event took 21 worker-s (1,260 Pythia events); 57-61 s for the whole test."""
    start = time.perf_counter()
    path = generate_anomaly(tmp_path / "adc.h5", 6, 2, seed=3, workers=2, selection="adc2021")
    seconds = time.perf_counter() - start
    data = load_anomaly(path)
    assert data.attrs["selection"] == "adc2021" and len(data) == 6 + 2 * len(SIGNALS)
    assert data.components == tuple(c.name for c in ADC2021.components)
    # every event passes the ADC2021 filter: an e or mu above 23 GeV
    assert (np.maximum(data.x[:, E0], data.x[:, MU0]) > 23.0).all()
    stats = json.loads(data.attrs["generation_stats"])
    for group, fraction in FRACTIONS.items():
        members = [i for i, c in enumerate(ADC2021.background) if c.weight_group == group]
        assert data.weight[np.isin(data.component, members)].sum() == pytest.approx(fraction, rel=1e-12)
    np.testing.assert_array_equal(data.weight[data.process > 0], 1.0)
    for c in anomaly.QCD_HF:  # sigma_gen from Pythia, efficiency from the counts, weight = share / kept
        s = stats[c.name]
        assert s["sigma_gen_pb"] > 0 and s["efficiency"] == 1 / s["generated"] and s["kept"] == 1
        assert s["weight"] == pytest.approx(s["weight_fraction"])
    # same seed, another number of workers: the same events and weights
    again = load_anomaly(generate_anomaly(tmp_path / "again.h5", 6, 2, seed=3, workers=1, selection="adc2021"))
    np.testing.assert_array_equal(again.x, data.x)
    np.testing.assert_array_equal(again.weight, data.weight)
    qcd = [stats[c.name]["sigma_gen_pb"] for c in anomaly.QCD_HF]
    assert qcd[0] > qcd[1] > qcd[2]  # the bins' cross-sections fall with pT-hat
    print(f"tiny adc2021 file: {seconds:.1f} s; stats {json.dumps(stats)}")
