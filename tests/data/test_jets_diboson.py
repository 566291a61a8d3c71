"""Data layer tests: the jet generator's ``boson_processes`` option (W and Z jets from WW / ZZ production)."""

from __future__ import annotations

import numpy as np
import pytest

from trigflow.data import JET_CLASSES
from trigflow.data.jets import (
    PYTHIA_PROCESSES,
    JetOptions,
    _Chunk,
    _generate_chunk,
    cached_jets_path,
    generate_jets,
    pythia_settings,
)
from trigflow.errors import TrigflowError


def test_default_settings_are_the_boson_parton_processes():
    for jet_class in JET_CLASSES:
        assert pythia_settings(jet_class, 7) == pythia_settings(jet_class, 7, "boson_parton")
        assert set(PYTHIA_PROCESSES[jet_class]) <= set(pythia_settings(jet_class, 7))


def test_diboson_changes_only_the_w_and_z_processes():
    for jet_class in ("g", "q", "t"):
        assert pythia_settings(jet_class, 7, "diboson") == pythia_settings(jet_class, 7)
    w, z = (pythia_settings(c, 7, "diboson") for c in ("w", "z"))
    assert "WeakDoubleBoson:ffbar2WW = on" in w and "24:onIfAny = 1 2 3 4 5" in w
    assert "WeakDoubleBoson:ffbar2gmZgmZ = on" in z and "WeakZ0:gmZmode = 2" in z
    assert "23:onIfAny = 1 2 3 4 5" in z
    assert not any(s.startswith("WeakBosonAndParton") for s in w + z)
    for settings in (w, z):  # the same pT-hat window as every other class
        assert "PhaseSpace:pTHatMin = 995.0" in settings and "PhaseSpace:pTHatMax = 1005.0" in settings


def test_bad_boson_processes_is_refused_and_default_cache_key_kept(tmp_path):
    with pytest.raises(TrigflowError, match="unknown boson_processes 'WZ'; choose from"):
        generate_jets(tmp_path / "x.h5", 5, boson_processes="WZ")
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(TrigflowError, match="unknown boson_processes"):
        pythia_settings("w", 7, "WZ")
    assert cached_jets_path(5, 1, boson_processes="boson_parton") == cached_jets_path(5, 1)
    assert cached_jets_path(5, 1, boson_processes="diboson") != cached_jets_path(5, 1)


def test_diboson_w_chunk_gives_labelled_w_jets():
    result = _generate_chunk(_Chunk(2, 0, 2, 11, JetOptions(boson_processes="diboson")))
    assert result.n_jets == 2 and set(result.arrays["label"].tolist()) == {2}


def test_leading_labelling_is_checked_and_keeps_default_cache_key(tmp_path):
    with pytest.raises(TrigflowError, match="unknown boson_labelling 'first'; choose from"):
        generate_jets(tmp_path / "x.h5", 5, boson_processes="diboson", boson_labelling="first")
    with pytest.raises(TrigflowError, match="needs boson_processes='diboson'"):
        generate_jets(tmp_path / "x.h5", 5, boson_labelling="leading")
    assert not (tmp_path / "x.h5").exists()
    assert cached_jets_path(5, 1, boson_labelling="matched") == cached_jets_path(5, 1)
    leading = cached_jets_path(5, 1, boson_processes="diboson", boson_labelling="leading")
    assert leading != cached_jets_path(5, 1, boson_processes="diboson")


def test_leading_labelling_takes_one_jet_per_event_for_w_only():
    options = JetOptions(boson_processes="diboson", boson_labelling="leading")
    w = _generate_chunk(_Chunk(2, 0, 3, 11, options))
    assert w.n_jets == 3 and set(w.arrays["label"].tolist()) == {2} and w.n_events >= 3
    # g is untouched by the option: the same jets as the default
    g, g_default = (_generate_chunk(_Chunk(0, 0, 1, 11, o)) for o in (options, JetOptions()))
    np.testing.assert_array_equal(g.arrays["hlf"], g_default.arrays["hlf"])
