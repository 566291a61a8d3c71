"""Data layer: loaders for public files, on small fakes written in the public layouts.

Assumed layouts (see trigflow/data/public.py): OpenML 42468 table (16 HLF columns + ``class`` in g/q/t/w/z),
Zenodo 3602260 HDF5 (``jets`` N x 59 + ``jetFeatureNames``, ``jetConstituentList``, ``particleFeatureNames``
with one name more than features, ``jetImage``), ADC2021 HDF5 (``Particles`` N x 19 x 4).
"""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest

from trigflow.data import HLF_NAMES, JET_CLASSES
from trigflow.data.anomaly import FEATURE_NAMES
from trigflow.data.public import (
    load_adc2021,
    load_adc2021_folder,
    load_hls4ml_hlf_table,
    load_hls4ml_jets,
    load_hls4ml_jets_h5,
)
from trigflow.errors import TrigflowError

# Zenodo 3602260 `jetFeatureNames` (59 columns)
ZENODO_JET_FEATURES = (
    "j_ptfrac j_pt j_eta j_mass j_tau1_b1 j_tau2_b1 j_tau3_b1 j_tau1_b2 j_tau2_b2 j_tau3_b2 j_tau32_b1 "
    "j_tau32_b2 j_zlogz j_c1_b0 j_c1_b1 j_c1_b2 j_c2_b1 j_c2_b2 j_d2_b1 j_d2_b2 j_d2_a1_b1 j_d2_a1_b2 "
    "j_m2_b1 j_m2_b2 j_n2_b1 j_n2_b2 j_tau1_b1_mmdt j_tau2_b1_mmdt j_tau3_b1_mmdt j_tau1_b2_mmdt "
    "j_tau2_b2_mmdt j_tau3_b2_mmdt "
    "j_tau32_b1_mmdt j_tau32_b2_mmdt j_c1_b0_mmdt j_c1_b1_mmdt j_c1_b2_mmdt j_c2_b1_mmdt j_c2_b2_mmdt "
    "j_d2_b1_mmdt j_d2_b2_mmdt j_d2_a1_b1_mmdt j_d2_a1_b2_mmdt j_m2_b1_mmdt j_m2_b2_mmdt j_n2_b1_mmdt "
    "j_n2_b2_mmdt j_mass_trim j_mass_mmdt j_mass_prun j_mass_sdb2 j_mass_sdm1 j_multiplicity "
    "j_g j_q j_w j_z j_t j_undef"
).split()
ZENODO_PARTICLE_FEATURES = (
    "j1_px j1_py j1_pz j1_e j1_erel j1_pt j1_ptrel j1_eta j1_etarel j1_etarot j1_phi j1_phirel j1_phirot "
    "j1_deltaR j1_costheta j1_costhetarel j1_pdgid"
).split()
OPENML_ORDER = ("g", "q", "t", "w", "z")  # the ARFF nominal order differs from JET_CLASSES


def _hlf_values(n: int, rng: np.random.Generator) -> np.ndarray:
    # column k holds values near 100*k, so a column mix-up cannot go unnoticed
    return (100.0 * np.arange(16) + rng.uniform(0, 1, (n, 16))).astype(np.float32)


def test_csv_table_maps_columns_and_classes_by_name(tmp_path):
    rng = np.random.default_rng(0)
    hlf = _hlf_values(10, rng)
    classes = [OPENML_ORDER[i % 5] for i in range(10)]
    order = list(rng.permutation(16))  # columns shuffled in the file
    path = tmp_path / "hls4ml_lhc_jets_hlf.csv"
    lines = [",".join(["class"] + [HLF_NAMES[i] for i in order])]
    lines += [",".join([c] + [f"{hlf[r, i]:.6f}" for i in order]) for r, c in enumerate(classes)]
    path.write_text("\n".join(lines) + "\n")

    jets = load_hls4ml_hlf_table(path)
    np.testing.assert_allclose(jets.hlf, hlf, atol=1e-5)
    assert [JET_CLASSES[i] for i in jets.label] == classes
    assert jets.label.dtype == np.int8 and jets.hlf.dtype == np.float32
    assert np.isnan(jets.pt).all() and jets.constituents is None and jets.image is None
    assert len(jets) == 10


def test_arff_table_gzipped_with_quoted_nominal_class(tmp_path):
    rng = np.random.default_rng(1)
    hlf = _hlf_values(7, rng)
    classes = ["t", "w", "z", "g", "q", "t", "gluon"]
    header = ["% hls4ml_lhc_jets_hlf (OpenML 42468)", "@RELATION 'hls4ml_lhc_jets_hlf'", ""]
    header += [f"@ATTRIBUTE {n} NUMERIC" for n in HLF_NAMES]
    header += ["@ATTRIBUTE class {'g','q','t','w','z','gluon'}", "", "@DATA"]
    rows = [",".join([f"{v:.6f}" for v in hlf[r]] + [f"'{c}'"]) for r, c in enumerate(classes)]
    path = tmp_path / "hlf.arff.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(header + rows) + "\n")

    jets = load_hls4ml_jets(path)  # dispatch by file type
    np.testing.assert_allclose(jets.hlf, hlf, atol=1e-5)
    assert [JET_CLASSES[i] for i in jets.label] == ["t", "w", "z", "g", "q", "t", "g"]


def test_table_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("zlogz,class\n1.0,g\n")
    with pytest.raises(TrigflowError, match="no column 'c1_b0_mmdt'"):
        load_hls4ml_hlf_table(bad)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(",".join([*HLF_NAMES, "class"]) + "\n" + ",".join(["1"] * 16 + ["b"]) + "\n")
    with pytest.raises(TrigflowError, match="unknown jet class 'b'"):
        load_hls4ml_hlf_table(unknown)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join([*HLF_NAMES, "class"]) + "\n" + ",".join(["1"] * 16 + ["g"]) + "\n1,2,3\n")
    with pytest.raises(TrigflowError, match="corrupt or truncated"):
        load_hls4ml_hlf_table(ragged)
    with pytest.raises(TrigflowError, match="not found"):
        load_hls4ml_hlf_table(tmp_path / "missing.csv")


def _zenodo_file(path, n: int, n_particles: int, rng: np.random.Generator, undef_rows=()) -> tuple:
    jets = rng.uniform(0, 1, (n, len(ZENODO_JET_FEATURES))).astype(np.float32)
    names = list(ZENODO_JET_FEATURES)
    for k, name in enumerate(HLF_NAMES):
        jets[:, names.index(f"j_{name}")] = 100.0 * k + rng.uniform(0, 1, n)
    jets[:, names.index("j_pt")] = rng.uniform(500, 1500, n)
    labels = rng.integers(0, 5, n)
    onehot_cols = [names.index(f"j_{c}") for c in ("g", "q", "w", "z", "t", "undef")]
    jets[:, onehot_cols] = 0
    jets[np.arange(n), np.array(onehot_cols)[labels]] = 1
    for r in undef_rows:
        jets[r, onehot_cols] = 0
        jets[r, onehot_cols[-1]] = 1
    const = rng.normal(size=(n, n_particles, 16)).astype(np.float32)
    image = rng.uniform(size=(n, 100, 100)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["jets"] = jets
        f["jetFeatureNames"] = np.array([s.encode() for s in ZENODO_JET_FEATURES])
        f["jetConstituentList"] = const
        f["particleFeatureNames"] = np.array([s.encode() for s in ZENODO_PARTICLE_FEATURES])
        f["jetImage"] = image
    keep = np.setdiff1d(np.arange(n), undef_rows)
    hlf = jets[:, [names.index(f"j_{n}") for n in HLF_NAMES]]
    return hlf[keep], labels[keep], jets[keep, names.index("j_pt")], const[keep]


def test_zenodo_h5_labels_from_one_hot_columns(tmp_path):
    rng = np.random.default_rng(2)
    hlf, labels, pt, const = _zenodo_file(tmp_path / "jetImage_0_30p.h5", 12, 30, rng, undef_rows=(3,))
    jets = load_hls4ml_jets_h5(tmp_path / "jetImage_0_30p.h5")
    assert len(jets) == 11 and jets.attrs["dropped_unlabelled"] == 1
    np.testing.assert_array_equal(jets.label, labels)  # j_g..j_t columns are JET_CLASSES order already
    np.testing.assert_allclose(jets.hlf, hlf)
    np.testing.assert_allclose(jets.pt, pt)
    np.testing.assert_array_equal(jets.constituents, const)
    assert jets.constituents.shape == (11, 30, 16) and jets.image.shape == (11, 100, 100)
    assert jets.constituent_features == tuple(ZENODO_PARTICLE_FEATURES[:16])


def test_zenodo_folder_concatenates_in_name_order_and_caps(tmp_path):
    rng = np.random.default_rng(3)
    a = _zenodo_file(tmp_path / "jetImage_0_150p.h5", 6, 150, rng)
    b = _zenodo_file(tmp_path / "jetImage_1_150p.h5", 5, 150, rng)
    jets = load_hls4ml_jets(tmp_path)
    np.testing.assert_array_equal(jets.label, np.concatenate([a[1], b[1]]))
    assert jets.constituents.shape == (11, 150, 16)
    capped = load_hls4ml_jets(tmp_path, max_jets=8)
    assert len(capped) == 8
    np.testing.assert_array_equal(capped.label, jets.label[:8])


def test_zenodo_corrupt_or_foreign_files(tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(TrigflowError, match="not a readable HDF5"):
        load_hls4ml_jets_h5(broken)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["jets"] = np.zeros((2, 3), np.float32)
        f["jetFeatureNames"] = np.array([b"a", b"b", b"c"])
    with pytest.raises(TrigflowError, match="not an hls4ml jet file"):
        load_hls4ml_jets_h5(foreign)


def _adc_file(path, n: int, rng: np.random.Generator) -> np.ndarray:
    particles = np.zeros((n, 19, 4), np.float32)
    particles[:, :, 0] = rng.uniform(1, 100, (n, 19))
    particles[:, :, 1] = rng.uniform(-3, 3, (n, 19))
    particles[:, :, 2] = rng.uniform(-3.1, 3.1, (n, 19))
    particles[:, :, 3] = np.array([1] + [2] * 4 + [3] * 4 + [4] * 10)
    particles[:, 0, 1] = 0  # MET has no eta
    particles[:, 3:5] = 0  # zero-padded electrons
    with h5py.File(path, "w") as f:
        f["Particles"] = particles
        f["Particles_Names"] = np.array([b"Pt", b"Eta", b"Phi", b"Class"])
        classes = [b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"]
        f["Particles_Classes"] = np.array(classes)
    return particles


def test_adc2021_flattens_to_the_57_columns(tmp_path):
    rng = np.random.default_rng(4)
    bkg_path = tmp_path / "background_for_training.h5"
    sig_path = tmp_path / "Ato4l_lepFilter_13TeV_filtered.h5"
    bkg = _adc_file(bkg_path, 9, rng)
    sig = _adc_file(sig_path, 4, rng)
    data = load_adc2021(bkg_path, {"ato4l": sig_path})
    assert data.x.shape == (13, 57) and data.x.dtype == np.float32
    assert data.names == FEATURE_NAMES and data.processes == ("background", "ato4l")
    np.testing.assert_array_equal(data.process, [0] * 9 + [1] * 4)
    x = data.x.reshape(13, 19, 3)
    np.testing.assert_array_equal(x, np.concatenate([bkg, sig])[:, :, :3])
    col = FEATURE_NAMES.index
    np.testing.assert_array_equal(data.x[:, col("mu0_pt")], np.concatenate([bkg, sig])[:, 5, 0])
    np.testing.assert_array_equal(data.x[:, col("j9_phi")], np.concatenate([bkg, sig])[:, 18, 2])
    assert (data.x[:, col("e2_pt")] == 0).all() and (data.x[:, col("MET_eta")] == 0).all()

    listed = load_adc2021(bkg_path, [sig_path])
    assert listed.processes == ("background", "Ato4l_lepFilter_13TeV_filtered")
    assert len(load_adc2021(bkg_path, max_events=5)) == 5


def test_adc2021_wrong_shape_and_truncated(tmp_path):
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f["Particles"] = np.zeros((3, 19, 3), np.float32)
    with pytest.raises(TrigflowError, match=r"expected \(N, 19, 4\)"):
        load_adc2021(wrong)
    good = tmp_path / "good.h5"
    _adc_file(good, 500, np.random.default_rng(5))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(TrigflowError, match="corrupt or truncated|not a readable HDF5"):
        load_adc2021(truncated)


def test_adc2021_folder_names_the_signals_as_trigflow_does(tmp_path):
    rng = np.random.default_rng(6)
    _adc_file(tmp_path / "background_for_training.h5", 7, rng)
    _adc_file(tmp_path / "Ato4l_lepFilter_13TeV_filtered.h5", 3, rng)
    _adc_file(tmp_path / "hChToTauNu_13TeV_PU20_filtered.h5", 2, rng)
    _adc_file(tmp_path / "my_signal.h5", 1, rng)
    data = load_adc2021_folder(tmp_path)
    assert data.processes == ("background", "a_4l", "hpm_taunu", "my_signal")
    np.testing.assert_array_equal(data.process, [0] * 7 + [1] * 3 + [2] * 2 + [3])
    assert len(load_adc2021_folder(tmp_path, max_events=2)) == 2 + 2 + 2 + 1


def test_adc2021_folder_without_background_is_refused(tmp_path):
    _adc_file(tmp_path / "Ato4l_lepFilter_13TeV_filtered.h5", 3, np.random.default_rng(7))
    with pytest.raises(TrigflowError, match="expected one background"):
        load_adc2021_folder(tmp_path)


def test_run_ae_reads_an_adc2021_folder(tmp_path):
    from trigflow.config import load_config
    from trigflow.kinds.ae import load

    rng = np.random.default_rng(8)
    _adc_file(tmp_path / "background_for_training.h5", 6, rng)
    _adc_file(tmp_path / "leptoquark_LOWMASS_lepFilter_13TeV_filtered.h5", 4, rng)
    config = load_config("ae", overrides={"data": {"path": str(tmp_path), "max_samples": 5}})
    arrays = load(config)
    assert arrays.class_names == ("background", "lq_btau") and arrays.x.shape == (9, 57)
    np.testing.assert_array_equal(arrays.y, [0] * 5 + [1] * 4)


def test_raw_constituents_picks_pt_etarel_phirel_by_name():
    from trigflow.data.public import raw_constituents

    rng = np.random.default_rng(5)
    const = rng.normal(size=(3, 7, 16)).astype(np.float32)
    names = ZENODO_PARTICLE_FEATURES  # 17 names (j1_pdgid has no column): the leading 16 are used
    expected = const[..., [names.index("j1_pt"), names.index("j1_etarel"), names.index("j1_phirel")]]
    np.testing.assert_array_equal(raw_constituents(const, names), expected)
    np.testing.assert_array_equal(raw_constituents(const), expected)  # unnamed 16 features: Zenodo order
    np.testing.assert_array_equal(raw_constituents(expected), expected)  # already (pT, eta_rel, phi_rel)
    other = ["phi_rel", "e", "pt", "eta_rel"]
    mixed = rng.normal(size=(2, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(raw_constituents(mixed, other), mixed[..., [2, 3, 0]])
    with pytest.raises(TrigflowError, match="no eta_rel column"):
        raw_constituents(mixed, ["phi_rel", "e", "pt", "eta"])
    with pytest.raises(TrigflowError, match="no names"):
        raw_constituents(mixed)
