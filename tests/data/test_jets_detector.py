"""Data layer tests: the jet generator's ``detector="public"`` option (the public files' tag
``r1.0:h0.022:e0.0175:t220.0``: calorimeter cells, no tracks above 110 GeV, per-class smearing)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from trigflow.data.jet_substructure import pt_eta_phi
from trigflow.data.jets import (
    CELL_ABS_ETA_MAX,
    DETECTORS,
    ECAL_CELL,
    HCAL_CELL,
    SMEAR_NEUTRAL,
    SMEAR_PHOTON,
    SMEAR_TRACK,
    JetOptions,
    _Chunk,
    _generate_chunk,
    _smearing_rng,
    cached_jets_path,
    detector_particles,
    generate_jets,
    smearing_resolution,
)
from trigflow.errors import TrigflowError


class _NoSmearing:
    """An rng whose Gaussian draws are their mean: "public" without the smearing."""

    def normal(self, loc, scale):
        return np.full(np.shape(scale), loc, dtype=float)


def _p4(pt: float, eta: float, phi: float, mass: float = 0.0) -> list[float]:
    return [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), float(np.hypot(pt * np.cosh(eta), mass))]


def _mass2(momenta: np.ndarray) -> np.ndarray:
    return momenta[:, 3] ** 2 - (momenta[:, :3] ** 2).sum(1)


def test_charged_hadrons_above_110_gev_become_hcal_cells_leptons_stay_tracks():
    momenta = np.array(
        [_p4(150, 0.5001, 1.0001, 0.1396), _p4(50, -0.7, 2.0, 0.1396), _p4(111, 1.2, 3.0, 0.4937),
         _p4(109, -1.5, 5.0, 0.4937), _p4(150, 0.3, 0.3, 0.1057), _p4(200, -0.3, 4.5, 0.000511)]
    )
    ids = np.array([211, -211, 321, -321, 13, -11])
    public = detector_particles(ids, momenta, "public", _NoSmearing())
    # tracks first, in order: the 50 GeV pion, the 109 GeV kaon, the muon and the electron, untouched
    np.testing.assert_array_equal(public[:4], momenta[[1, 3, 4, 5]])
    cells = public[4:]
    assert len(cells) == 2  # the 150 GeV pion and the 111 GeV kaon, each in its own HCAL cell
    np.testing.assert_allclose(np.sort(cells[:, 3]), np.sort(momenta[[0, 2], 3]))
    np.testing.assert_allclose(_mass2(cells), 0, atol=1e-6)
    _, eta, _ = pt_eta_phi(cells)
    assert np.all(np.abs(np.sort(eta) - np.array([0.5001, 1.2])) < HCAL_CELL)
    # hcal_ecal keeps every charged particle as generated
    np.testing.assert_array_equal(detector_particles(ids, momenta, "hcal_ecal"), momenta)


def test_public_without_smearing_is_hcal_ecal_on_listed_particles_and_drops_unlisted_ones():
    momenta = np.array(
        [_p4(10, 0.5001, 1.0001, 0.94), _p4(5, 0.5002, 1.0002, 0.94), _p4(7, -1.2, 4.0, 0.4976),
         _p4(20, 0.1, 0.1, 0.1396), _p4(3, 0.3, 0.3), _p4(4, 0.3001, 0.3001), _p4(2, 1.0, 1.0, 0.938)]
    )
    ids = np.array([2112, -2112, 130, 211, 22, 22, 2212])
    np.testing.assert_array_equal(
        detector_particles(ids, momenta, "public", _NoSmearing()),
        detector_particles(ids, momenta, "hcal_ecal"),
    )
    # an Ω- (3334) is in none of the recipe's classes: public drops it, hcal_ecal keeps it
    extra_ids, extra = np.append(ids, 3334), np.vstack([momenta, _p4(30, 0.0, 2.5, 1.672)])
    assert len(detector_particles(extra_ids, extra, "public", _NoSmearing())) == len(
        detector_particles(ids, momenta, "hcal_ecal")
    )
    assert len(detector_particles(extra_ids, extra, "hcal_ecal")) == len(
        detector_particles(ids, momenta, "hcal_ecal")
    ) + 1


def test_public_needs_an_rng_and_smearing_is_reproducible():
    momenta = np.array([_p4(50, -0.7, 2.0, 0.1396), _p4(10, 0.5, 1.0, 0.94), _p4(8, 0.2, 3.0)])
    ids = np.array([211, 2112, 22])
    with pytest.raises(TrigflowError, match="pass rng="):
        detector_particles(ids, momenta, "public")
    first = detector_particles(ids, momenta, "public", _smearing_rng(123, 7))
    np.testing.assert_array_equal(first, detector_particles(ids, momenta, "public", _smearing_rng(123, 7)))
    for other in (_smearing_rng(123, 8), _smearing_rng(124, 7)):
        assert not np.array_equal(first, detector_particles(ids, momenta, "public", other))
    # smearing scales each 4-momentum: directions are kept
    _, eta, phi = pt_eta_phi(first[:1])
    np.testing.assert_allclose([eta[0], phi[0]], [-0.7, 2.0], atol=1e-12)


def _neutral_grid(energy: float) -> tuple[np.ndarray, np.ndarray]:
    """10,000 K0L of one energy, each alone in its HCAL cell (spacing > cell size)."""
    eta, phi = np.meshgrid(np.linspace(-2.5, 2.45, 100), np.linspace(0.03, 6.0, 100))
    pt = energy / np.cosh(eta.ravel())
    momenta = np.stack([pt * np.cos(phi.ravel()), pt * np.sin(phi.ravel()), pt * np.sinh(eta.ravel()),
                        np.full(pt.size, energy)], axis=1)
    return np.full(pt.size, 130), momenta


def test_neutral_10_gev_cells_are_smeared_by_the_neutral_hadron_resolution():
    ids, momenta = _neutral_grid(10.0)
    smeared = detector_particles(ids, momenta, "public", np.random.default_rng(5))
    assert len(smeared) == len(momenta)  # one cell per particle
    ratio = smeared[:, 3] / 10.0
    sigma = np.sqrt((1.2 / np.sqrt(10.0 / 7.0)) ** 2 + 0.05**2)  # ≈ 1.005
    np.testing.assert_allclose(smearing_resolution(np.array([SMEAR_NEUTRAL]), momenta[:1]), sigma)
    # Gauss(1, σ) floored at 1e-10: a fraction Φ(-1/σ) ≈ 0.16 sits at the floor; above it, the Gaussian
    assert abs(np.mean(ratio <= 1e-9) - norm.cdf(-1 / sigma)) < 0.015
    assert abs(np.quantile(ratio, norm.cdf(1.0)) - (1 + sigma)) < 0.06 * sigma
    assert abs(np.median(ratio) - 1.0) < 0.05


@pytest.mark.parametrize(
    ("pid", "pt", "mass", "kind", "expected_sigma"),
    [
        (211, 100.0, 0.1396, SMEAR_TRACK, np.hypot(2.5e-4 * 100, 0.015)),  # a track below 110 GeV
        (13, 500.0, 0.1057, SMEAR_TRACK, np.hypot(2.5e-4 * 500, 0.015)),  # leptons: tracks at any pT
    ],
)
def test_tracks_and_leptons_are_smeared_by_the_tracking_resolution(pid, pt, mass, kind, expected_sigma):
    n = 10_000
    eta = np.linspace(-2, 2, n)
    momenta = np.array([_p4(pt, e, 1.0, mass) for e in eta])
    smeared = detector_particles(np.full(n, pid), momenta, "public", np.random.default_rng(6))
    ratio = smeared[:, 3] / momenta[:, 3]
    np.testing.assert_allclose(smearing_resolution(np.array([kind]), momenta[:1]), expected_sigma)
    assert abs(ratio.std() / expected_sigma - 1) < 0.05
    assert abs(ratio.mean() - 1) < 4 * expected_sigma / np.sqrt(n)


def test_photon_ecal_cells_are_smeared_by_the_photon_resolution():
    ids, momenta = _neutral_grid(10.0)
    smeared = detector_particles(np.full(len(ids), 22), momenta, "public", np.random.default_rng(7))
    assert len(smeared) == len(momenta)  # ECAL cells are smaller than the grid spacing
    sigma = np.sqrt((0.027 / np.sqrt(10 / 1.6)) ** 2 + (0.15 * 1.6 / 10) ** 2 + 0.005**2)  # ≈ 0.027
    np.testing.assert_allclose(smearing_resolution(np.array([SMEAR_PHOTON]), momenta[:1]), sigma)
    assert abs((smeared[:, 3] / 10.0).std() / sigma - 1) < 0.05


def test_public_option_is_accepted_recorded_and_reproducible_whatever_the_workers(tmp_path):
    assert "public" in DETECTORS
    assert cached_jets_path(5, 1, detector="public") not in (
        cached_jets_path(5, 1), cached_jets_path(5, 1, detector="hcal_ecal")
    )
    options = {"n_constituents": 8, "image_size": 4, "jets_per_chunk": 1, "detector": "public"}
    one = generate_jets(tmp_path / "one.h5", 5, 3, workers=1, **options)
    two = generate_jets(tmp_path / "two.h5", 5, 3, workers=2, **options)
    with h5py.File(one) as a, h5py.File(two) as b:
        assert a.attrs["detector"] == "public"
        for name in ("hlf", "label", "pt", "constituents", "image"):
            np.testing.assert_array_equal(a[name][()], b[name][()])


def test_public_chunk_smears_the_same_events_as_hcal_ecal():
    cells, public = (
        _generate_chunk(_Chunk(1, 0, 2, 11, JetOptions(detector=d))) for d in ("hcal_ecal", "public")
    )
    assert cells.n_events == public.n_events  # the same Pythia events give the jets ...
    assert not np.array_equal(cells.arrays["pt"], public.arrays["pt"])  # ... with smeared momenta
    np.testing.assert_allclose(cells.arrays["pt"], public.arrays["pt"], rtol=0.1)


def test_cli_accepts_the_public_detector(tmp_path):
    from trigflow.cli import app

    out = tmp_path / "cli.h5"
    args = ["data", "jets", "--n", "5", "--out", str(out), "--workers", "1", "--constituents", "4",
            "--image-size", "4", "--detector", "public"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f.attrs["detector"] == "public" and len(f["label"]) == 5


def test_public_emits_no_empty_cell_for_a_zero_momentum_photon():
    # Pythia writes some photons with a zero 4-momentum; discretizeEvent emits only cells with energy > 0
    momenta = np.array([_p4(50, -0.7, 2.0, 0.1396), [0.0, 0.0, 0.0, 0.0], _p4(8, 0.2, 3.0)])
    ids = np.array([211, 22, 22])
    with np.errstate(all="raise"):
        public = detector_particles(ids, momenta, "public", np.random.default_rng(0))
    assert len(public) == 2 and np.all(np.isfinite(public)) and np.all(public[:, 3] > 0)
    assert len(detector_particles(ids, momenta, "hcal_ecal")) == 3  # hcal_ecal keeps its empty cell


def _cell_centre(eta: float, size: float) -> float:
    n_eta = int(np.floor(2 * CELL_ABS_ETA_MAX / size))
    index = np.floor((eta + CELL_ABS_ETA_MAX) / (2 * CELL_ABS_ETA_MAX) * n_eta)
    return -CELL_ABS_ETA_MAX + (index + 0.5) * 2 * CELL_ABS_ETA_MAX / n_eta


def test_public_tag_parses_the_numbers_cells_of_0022_and_00175_and_tracks_up_to_220_gev():
    momenta = np.array(
        [_p4(150, -0.7, 2.0, 0.1396), _p4(230, 1.3, 4.0, 0.1396), _p4(10, 0.51, 1.0, 0.94), _p4(8, -0.33, 3.0)]
    )
    ids = np.array([211, -211, 2112, 22])
    tag = detector_particles(ids, momenta, "public_tag", _NoSmearing())
    np.testing.assert_array_equal(tag[:1], momenta[:1])  # 150 GeV: still a track below 220 GeV
    assert len(tag) == 4  # the pion, two HCAL cells (230 GeV pion, neutron), one ECAL cell
    _, eta, _ = pt_eta_phi(tag[1:])
    np.testing.assert_allclose(eta, [_cell_centre(0.51, 0.022), _cell_centre(1.3, 0.022),
                                     _cell_centre(-0.33, 0.0175)], atol=1e-9)
    public = detector_particles(ids, momenta, "public", _NoSmearing())
    assert len(public) == 4  # in "public" the 150 GeV pion is a cell too: three HCAL cells, one ECAL cell
    _, eta, _ = pt_eta_phi(public)
    np.testing.assert_allclose(eta, [_cell_centre(-0.7, HCAL_CELL), _cell_centre(0.51, HCAL_CELL),
                                     _cell_centre(1.3, HCAL_CELL), _cell_centre(-0.33, ECAL_CELL)], atol=1e-9)
    with pytest.raises(TrigflowError, match="'public_tag' smears momenta"):
        detector_particles(ids, momenta, "public_tag")
