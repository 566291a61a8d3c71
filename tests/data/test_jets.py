"""Data layer tests: Pythia8 + FastJet jet generator (layout, physics, determinism, errors)."""

from __future__ import annotations

import itertools
from pathlib import Path

import h5py
import numpy as np
import pytest

from trigflow import __version__
from trigflow.data import HLF_NAMES, JET_CLASSES
from trigflow.data.jet_substructure import (
    energy_correlation_ratios,
    mmdt_groom,
    pt_eta_phi,
    rapidity,
    wrap_phi,
    zlogz,
)
from trigflow.data.jets import (
    CONSTITUENT_FEATURES,
    ECAL_CELL,
    HCAL_CELL,
    JET_RADIUS,
    JetOptions,
    _Chunk,
    _generate_chunk,
    _jet_image,
    _pythia_seed,
    cached_jets,
    cached_jets_path,
    detector_particles,
    embedded_jets_path,
    generate_jets,
    load_jets,
)
from trigflow.errors import TrigflowError

PER_CLASS = 100
N_CONSTITUENTS = 128  # large enough to hold (almost) every constituent, so images can be checked exactly
HLF = {name: i for i, name in enumerate(HLF_NAMES)}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jets") / "jets.h5"
    return generate_jets(
        out, 5 * PER_CLASS, seed=7, workers=2, n_constituents=N_CONSTITUENTS, image_size=16, jets_per_chunk=50
    )


@pytest.fixture(scope="module")
def small(small_file):
    return load_jets(small_file, parts=("hlf", "constituents", "image"))


@pytest.fixture(scope="module")
def embedded():
    return load_jets(parts=("hlf",))


# ------------------------------------------------------------------------------------------------ layout


def test_layout_and_attributes(small_file):
    n = 5 * PER_CLASS
    with h5py.File(small_file, "r") as f:
        expected = {
            "hlf": ((n, 16), np.float32),
            "label": ((n,), np.int8),
            "pt": ((n,), np.float32),
            "eta": ((n,), np.float32),
            "mass": ((n,), np.float32),
            "constituents": ((n, N_CONSTITUENTS, len(CONSTITUENT_FEATURES)), np.float32),
            "image": ((n, 16, 16), np.float32),
        }
        assert set(f.keys()) == set(expected)
        for name, (shape, dtype) in expected.items():
            assert f[name].shape == shape and f[name].dtype == dtype, name
            assert f[name].compression == "gzip" and f[name].shuffle, name
            assert f[name].maxshape[0] is None, name  # streamed: resizable along jets
        assert tuple(f["hlf"].attrs["names"]) == HLF_NAMES
        assert tuple(f["label"].attrs["classes"]) == JET_CLASSES
        assert tuple(f["constituents"].attrs["features"]) == CONSTITUENT_FEATURES
        assert "Pythia" in f.attrs["generator"] and "FastJet" in f.attrs["generator"]
        assert f.attrs["seed"] == 7
        assert f.attrs["trigflow_version"] == __version__
        assert f.attrs["n_constituents"] == N_CONSTITUENTS and f.attrs["image_size"] == 16
        assert not f.attrs["preprocess_images"]
        assert f.attrs["format_version"] == 3 and "E_i / E_jet" in f.attrs["zlogz"]
        assert list(f.attrs["class_counts"]) == [PER_CLASS] * 5
    assert np.bincount(load_jets(small_file).label, minlength=5).tolist() == [PER_CLASS] * 5


def test_classes_interleaved(small):
    first_round = small.label[: 5 * 50]  # one chunk of 50 jets per class, shuffled together
    assert set(first_round.tolist()) == set(range(5))
    assert len(np.unique(small.label[:20])) > 1


def test_load_parts(small_file):
    jets = load_jets(small_file)
    assert jets.constituents is None and jets.image is None
    assert jets.hlf.shape == (5 * PER_CLASS, 16)
    assert jets.constituent_features == CONSTITUENT_FEATURES
    assert jets.attrs["seed"] == 7
    with pytest.raises(TrigflowError, match="unknown jet part"):
        load_jets(small_file, parts=("pixels",))


# ------------------------------------------------------------------------------------------ jet contents


def test_kinematic_selection(small):
    assert np.all((small.pt > 800) & (small.pt < 1200))
    assert np.all(np.abs(small.eta) < 2)
    assert np.all(np.isfinite(small.hlf))
    assert np.all(small.hlf[:, HLF["mass_mmdt"]] <= small.mass + 1e-2)
    assert np.all(small.hlf[:, HLF["zlogz"]] <= 0)
    assert np.all((small.hlf[:, HLF["c1_b0_mmdt"]] >= 0) & (small.hlf[:, HLF["c1_b0_mmdt"]] < 0.5))
    multiplicity = small.hlf[:, HLF["multiplicity"]]
    assert np.all(multiplicity >= 1) and np.all(multiplicity == np.round(multiplicity))


def test_constituents(small):
    fraction = small.constituents[..., CONSTITUENT_FEATURES.index("pt_fraction")]
    assert np.all(fraction.sum(axis=1) <= 1 + 1e-5)
    assert np.all(np.diff(fraction, axis=1) <= 0)  # sorted by pT, zero padding last
    stored = np.minimum(small.hlf[:, HLF["multiplicity"]], N_CONSTITUENTS).astype(int)
    assert np.array_equal((fraction > 0).sum(axis=1), stored)
    full = small.hlf[:, HLF["multiplicity"]] <= N_CONSTITUENTS
    np.testing.assert_allclose(fraction[full].sum(axis=1), 1.0, atol=1e-5)
    deta, dphi, dr = (
        small.constituents[..., CONSTITUENT_FEATURES.index(k)] for k in ("deta", "dphi", "delta_r")
    )
    np.testing.assert_allclose(dr, np.hypot(deta, dphi), atol=1e-5)
    assert np.all(np.abs(dphi) <= np.pi)
    # anti-kt jets are circular of radius R in (y, φ); in (η, φ) only soft, slow hadrons (η ≠ y) stick out
    outside = (fraction > 0) & (dr > JET_RADIUS)
    assert np.all(fraction[outside] < 0.01)
    assert np.all(np.where(outside, fraction, 0).sum(axis=1) < 0.02)


def test_image_sums_match_constituents_in_window(small):
    fraction = small.constituents[..., CONSTITUENT_FEATURES.index("pt_fraction")]
    deta = small.constituents[..., CONSTITUENT_FEATURES.index("deta")]
    dphi = small.constituents[..., CONSTITUENT_FEATURES.index("dphi")]
    inside = (np.abs(deta) <= JET_RADIUS) & (np.abs(dphi) <= JET_RADIUS)
    in_window = np.where(inside, fraction, 0).sum(axis=1)
    pixel_sum = small.image.sum(axis=(1, 2))
    assert np.all(pixel_sum <= 1 + 1e-5) and np.all(small.image >= 0)
    full = small.hlf[:, HLF["multiplicity"]] <= N_CONSTITUENTS  # every constituent stored
    assert full.mean() > 0.9
    np.testing.assert_allclose(pixel_sum[full], in_window[full], atol=1e-5)
    assert np.all(pixel_sum >= in_window - 1e-5)  # truncated jets: the image still sees every constituent


def test_image_centred_on_jet_axis(small):
    centre = small.image[:, 6:10, 6:10].sum(axis=(1, 2))
    assert np.median(centre) > 0.5


def test_image_preprocessing_rotates_principal_axis():
    t = np.linspace(-0.5, 0.5, 21)
    deta, dphi = t * np.cos(0.7), t * np.sin(0.7)  # a line at 40° in the (Δη, Δφ) plane
    weight = np.full_like(t, 1 / len(t))
    plain = _jet_image(deta, dphi, weight, 16, preprocess=False)
    rotated = _jet_image(deta, dphi, weight, 16, preprocess=True)
    assert plain.sum() == pytest.approx(1) and rotated.sum() == pytest.approx(1)
    assert np.count_nonzero(rotated.sum(axis=0)) <= 2  # all along the Δη axis: one or two Δφ columns
    assert np.count_nonzero(plain.sum(axis=0)) > 5


# ------------------------------------------------------------------------------------------ substructure


def _random_jet(rng, n: int) -> np.ndarray:
    pt = rng.exponential(30, n) + 1
    eta, phi = rng.normal(0.5, 0.2, n), rng.normal(3.0, 0.2, n)  # straddles φ = π: checks wrapping
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], axis=1)


def test_energy_correlation_ratios_match_brute_force():
    momenta = _random_jet(np.random.default_rng(1), 25)
    pt = np.hypot(momenta[:, 0], momenta[:, 1])
    z, y, phi = pt / pt.sum(), rapidity(momenta), np.arctan2(momenta[:, 1], momenta[:, 0])

    def angle(a: int, b: int) -> float:
        return float(np.hypot(y[a] - y[b], wrap_phi(phi[a] - phi[b])))

    pairs, triplets = list(itertools.combinations(range(25), 2)), list(itertools.combinations(range(25), 3))
    e2 = {b: sum(z[i] * z[j] * angle(i, j) ** b for i, j in pairs) for b in (0, 1, 2)}
    sides = {t: sorted([angle(t[0], t[1]), angle(t[0], t[2]), angle(t[1], t[2])]) for t in triplets}
    weight = {t: z[t[0]] * z[t[1]] * z[t[2]] for t in triplets}
    e3 = {b: sum(weight[t] * np.prod(sides[t]) ** b for t in triplets) for b in (1, 2)}
    e3_min = {b: sum(weight[t] * sides[t][0] ** b for t in triplets) for b in (1, 2)}
    e3_two = {b: sum(weight[t] * (sides[t][0] * sides[t][1]) ** b for t in triplets) for b in (1, 2)}
    expected = {
        "c1_b0": e2[0], "c1_b1": e2[1], "c1_b2": e2[2],
        "c2_b1": e3[1] / e2[1] ** 2, "c2_b2": e3[2] / e2[2] ** 2,
        "d2_b1": e3[1] / e2[1] ** 3, "d2_b2": e3[2] / e2[2] ** 3,
        "d2_a1_b1": e3[1] / e2[1] ** 3, "d2_a1_b2": e3[1] / e2[2] ** 1.5,
        "m2_b1": e3_min[1] / e2[1], "m2_b2": e3_min[2] / e2[2],
        "n2_b1": e3_two[1] / e2[1] ** 2, "n2_b2": e3_two[2] / e2[2] ** 2,
    }  # fmt: skip
    got = energy_correlation_ratios(momenta)
    assert set(got) == {name.removesuffix("_mmdt") for name in HLF_NAMES[1:14]}
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name


def test_ratios_of_a_single_particle_are_zero():
    assert set(energy_correlation_ratios(_random_jet(np.random.default_rng(2), 1)).values()) == {0.0}


def test_mmdt_keeps_balanced_prongs_and_drops_soft_ones():
    import fastjet

    def particle(pt: float, eta: float, phi: float) -> fastjet.PseudoJet:
        return fastjet.PseudoJet(pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta))

    prongs = [particle(500, 0.0, 0.0), particle(400, 0.1, 0.1)]
    groomed, mass = mmdt_groom(prongs + [particle(20, 0.5, 0.5)])  # z = 20/920 < 0.1: groomed away
    assert len(groomed) == 2 and mass > 0
    groomed, _ = mmdt_groom(prongs + [particle(200, 0.5, 0.5)])  # z = 200/1100 > 0.1: kept
    assert len(groomed) == 3
    groomed, mass = mmdt_groom([particle(900, 0.0, 0.0), particle(50, 0.1, 0.1)])  # asymmetric: one particle
    assert len(groomed) == 1 and mass == pytest.approx(0, abs=1e-3)


def test_zlogz():
    assert zlogz(np.array([5.0])) == 0
    assert zlogz(np.array([1.0, 1.0])) == pytest.approx(np.log(0.5))


# ------------------------------------------------------------------------------------ physics (embedded)


def _mode(values: np.ndarray, low: float = 0, high: float = 300, width: float = 5) -> float:
    counts, edges = np.histogram(values, bins=int((high - low) / width), range=(low, high))
    return float(edges[np.argmax(counts)] + width / 2)


def test_embedded_file(embedded):
    assert len(embedded) == 50_000
    assert np.bincount(embedded.label, minlength=5).tolist() == [10_000] * 5
    assert embedded.attrs["n_constituents"] == 16 and embedded.attrs["image_size"] == 16
    assert embedded_jets_path().stat().st_size < 40e6
    full = load_jets(parts=("constituents", "image"))
    assert full.constituents.shape == (50_000, 16, 5) and full.image.shape == (50_000, 16, 16)


@pytest.mark.parametrize(("jet_class", "low", "high"), [("w", 65, 95), ("z", 75, 105), ("t", 140, 200)])
def test_groomed_mass_peaks(embedded, jet_class, low, high):
    mass = embedded.hlf[embedded.label == JET_CLASSES.index(jet_class), HLF["mass_mmdt"]]
    assert low <= _mode(mass) <= high
    assert low <= np.median(mass) <= high


def test_boson_peaks_ordered(embedded):
    def mode(jet_class: str) -> float:
        return _mode(embedded.hlf[embedded.label == JET_CLASSES.index(jet_class), HLF["mass_mmdt"]], width=2)

    assert mode("w") < mode("z") < mode("t")


def test_quark_and_gluon_groomed_mass_much_lower(embedded):
    mass = embedded.hlf[:, HLF["mass_mmdt"]]
    of = {c: mass[embedded.label == JET_CLASSES.index(c)] for c in JET_CLASSES}

    def in_w_window(values: np.ndarray) -> float:
        return float(np.mean((values > 65) & (values < 95)))

    for jet_class in ("q", "g"):
        assert _mode(of[jet_class]) < 30, jet_class  # Sudakov peak at low mass, not at m_W
        assert in_w_window(of[jet_class]) < in_w_window(of["w"]) / 3, jet_class
    # quark jets stay light after grooming; gluon jets (C_A > C_F) spread higher but stay below the W
    assert np.median(of["q"]) < 0.5 * np.median(of["w"])
    assert np.median(of["q"]) < np.median(of["g"]) < np.median(of["w"])
    multiplicity = embedded.hlf[:, HLF["multiplicity"]]
    g, q = (np.median(multiplicity[embedded.label == JET_CLASSES.index(c)]) for c in ("g", "q"))
    assert g > q  # gluons radiate more


# ---------------------------------------------------------------------------------- determinism & errors


def test_same_seed_identical_for_any_worker_count(tmp_path):
    options = {"n_constituents": 8, "image_size": 8, "jets_per_chunk": 2}  # 5 chunks over 1 or 2 workers
    one = generate_jets(tmp_path / "a.h5", 10, seed=3, workers=1, **options)
    two = generate_jets(tmp_path / "b.h5", 10, seed=3, workers=2, **options)
    one, two = (load_jets(path, parts=("constituents", "image")) for path in (one, two))
    for name in ("hlf", "label", "pt", "eta", "mass", "constituents", "image"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name


def test_chunk_seeds_differ():
    seeds = {_pythia_seed(seed, c, r) for seed in (0, 1) for c in range(5) for r in range(20)}
    assert len(seeds) == 2 * 5 * 20 and all(1 <= s <= 900_000_000 for s in seeds)
    first, second = (_generate_chunk(_Chunk(2, 0, 1, seed, JetOptions())) for seed in (11, 12))
    assert not np.array_equal(first.arrays["hlf"], second.arrays["hlf"])


def test_truncated_file_is_a_trigflow_error(small_file, tmp_path):
    data = small_file.read_bytes()
    for size in (len(data) // 2, len(data) - 1000, 100):
        broken = tmp_path / f"broken-{size}.h5"
        broken.write_bytes(data[:size])
        with pytest.raises(TrigflowError) as info:
            load_jets(broken, parts=("hlf", "constituents", "image"))
        assert "\n" not in str(info.value)
    with pytest.raises(TrigflowError, match="not found"):
        load_jets(tmp_path / "missing.h5")


@pytest.mark.parametrize("n", [0, -5, 2.5])
def test_bad_jet_count(tmp_path, n):
    with pytest.raises(TrigflowError, match="positive integer"):
        generate_jets(tmp_path / "x.h5", n)


def test_refuses_to_overwrite(small_file):
    with pytest.raises(TrigflowError, match="already exists"):
        generate_jets(small_file, 5)


def test_cache_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIGFLOW_CACHE", str(tmp_path / "cache"))
    options = {"n_constituents": 4, "image_size": 4}
    path = cached_jets(5, 1, workers=1, **options)
    assert path == cached_jets_path(5, 1, **options) and path.is_relative_to(tmp_path / "cache")
    stamp = path.stat().st_mtime_ns
    assert cached_jets(5, 1, workers=1, **options) == path
    assert path.stat().st_mtime_ns == stamp  # a hit: not regenerated
    assert load_jets(path, parts=("image",)).image.shape == (5, 4, 4)
    others = {cached_jets_path(5, 2, **options), cached_jets_path(6, 1, **options), cached_jets_path(5, 1)}
    assert path not in others and len(others) == 3
    with pytest.raises(TrigflowError, match="unknown jet option"):
        cached_jets(5, 1, colour="red")


# ----------------------------------------------------------------------------- optional calorimeter cells


def _p4(pt: float, eta: float, phi: float, mass: float = 0.0) -> list[float]:
    return [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), float(np.hypot(pt * np.cosh(eta), mass))]


def test_detector_cells_merge_neutral_hadrons_and_photons_only():
    momenta = np.array(
        [_p4(10, 0.5001, 1.0001, 0.94), _p4(5, 0.5002, 1.0002, 0.94), _p4(7, -1.2, 4.0, 0.94),
         _p4(20, 0.1, 0.1, 0.14), _p4(3, 0.3, 0.3), _p4(4, 0.3001, 0.3001), _p4(6, 3.5, 0.2, 0.94)]
    )
    ids = np.array([2112, -2112, 130, 211, 22, 22, 2112])
    assert detector_particles(ids, momenta, "none") is momenta
    hcal = detector_particles(ids, momenta, "hcal")
    # the two nearby neutrons share one cell; K0L its own; the neutron at eta 3.5 is outside the cells
    assert len(hcal) == 3 + 2
    np.testing.assert_array_equal(hcal[:3], momenta[3:6])  # pion and photons untouched
    np.testing.assert_allclose(hcal[:, 3].sum(), momenta[:6, 3].sum())
    both = detector_particles(ids, momenta, "hcal_ecal")
    assert len(both) == 1 + 2 + 1  # pion, two HCAL cells, the photon pair in one ECAL cell
    np.testing.assert_allclose(both[:, 3].sum(), momenta[:6, 3].sum())
    pt, eta, phi = pt_eta_phi(both[1:])
    mass2 = both[1:, 3] ** 2 - (both[1:, :3] ** 2).sum(1)
    np.testing.assert_allclose(mass2, 0, atol=1e-9)  # cells are massless
    assert np.all(np.abs(eta - np.array([-1.2, 0.5, 0.3])) < HCAL_CELL)  # cell centres, in cell order
    assert abs(wrap_phi(phi[2] - 0.3)) < ECAL_CELL


def test_detector_option_is_checked_recorded_and_keeps_default_cache_keys(tmp_path):
    with pytest.raises(TrigflowError, match="unknown detector"):
        generate_jets(tmp_path / "x.h5", 5, detector="cms")
    assert cached_jets_path(5, 1, detector="none") == cached_jets_path(5, 1)
    assert cached_jets_path(5, 1, detector="hcal") != cached_jets_path(5, 1)
    plain, cells = (
        _generate_chunk(_Chunk(2, 0, 2, 11, JetOptions(detector=d))) for d in ("none", "hcal_ecal")
    )
    # same Pythia events; cells only merge particles: never more constituents
    multiplicity = HLF["multiplicity"]
    assert cells.arrays["hlf"][:, multiplicity].sum() <= plain.arrays["hlf"][:, multiplicity].sum()


def test_min_particle_pt_leaves_soft_particles_out(tmp_path):
    with pytest.raises(TrigflowError, match="min_particle_pt_gev"):
        generate_jets(tmp_path / "x.h5", 5, min_particle_pt_gev=-1)
    assert cached_jets_path(5, 1, min_particle_pt_gev=0.0) == cached_jets_path(5, 1)
    assert cached_jets_path(5, 1, min_particle_pt_gev=1.0) != cached_jets_path(5, 1)
    options = {"n_constituents": 128}
    plain, cut = (
        _generate_chunk(_Chunk(2, 0, 2, 11, JetOptions(**options, min_particle_pt_gev=t))) for t in (0.0, 1.0)
    )
    multiplicity = HLF["multiplicity"]
    assert cut.arrays["hlf"][:, multiplicity].sum() < plain.arrays["hlf"][:, multiplicity].sum()
    energy = cut.arrays["constituents"][..., CONSTITUENT_FEATURES.index("energy")]
    assert np.all(energy[energy > 0] > 1.0)  # E ≥ pT > 1 GeV for every clustered particle
