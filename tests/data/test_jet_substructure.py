"""Tests: every high-level jet feature against the reference implementation, fastjet-contrib.

200 real jets (40 per class) come from the project's own generator at a fixed seed; each jet's
constituents and trigflow's 16 features are captured where ``_jet_arrays`` computes them. The reference for
each jet: contrib ``SoftDrop`` (β = 0, z_cut = 0.1, R0 = 0.8, scalar_z, larger_pt, C/A reclustering) for the
grooming and ``mass_mmdt``, contrib ``EnergyCorrelator`` classes (default measure pt_R) on the groomed
constituents for the 13 ratios, as the public data set's recipe calls them, and that recipe's zlogz (energy
fractions E_i / E_jet) and multiplicity. Measured on these jets: the ECF ratios agree to at most 9.9e-12
relative (m2_b1, float64 rounding), mass_mmdt, zlogz and multiplicity are
bit-identical. The tolerance 1e-9 leaves two orders of magnitude for rounding and none for a definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from trigflow.data import HLF_NAMES, JET_CLASSES
from trigflow.data import jets as jets_module
from trigflow.data.jet_substructure import mmdt_groom
from trigflow.data.jets import JetOptions, _Chunk, _generate_chunk

JETS_PER_CLASS = 40
RELATIVE_TOLERANCE = 1e-9

# contrib function (scikit-hep fastjet's exclusive_jets_energy_correlator) for each ECF ratio, as in the
# recipe: EnergyCorrelatorDoubleRatio (C series), EnergyCorrelatorD2, EnergyCorrelatorGeneralizedD2,
# EnergyCorrelatorMseries and EnergyCorrelatorNseries.
CONTRIB_RATIOS: dict[str, dict] = {
    "c1_b0_mmdt": {"func": "cseries", "npoint": 1, "beta": 0},
    "c1_b1_mmdt": {"func": "cseries", "npoint": 1, "beta": 1},
    "c1_b2_mmdt": {"func": "cseries", "npoint": 1, "beta": 2},
    "c2_b1_mmdt": {"func": "cseries", "npoint": 2, "beta": 1},
    "c2_b2_mmdt": {"func": "cseries", "npoint": 2, "beta": 2},
    "d2_b1_mmdt": {"func": "d2", "beta": 1},
    "d2_b2_mmdt": {"func": "d2", "beta": 2},
    "d2_a1_b1_mmdt": {"func": "generalizedd2", "alpha": 1, "beta": 1},
    "d2_a1_b2_mmdt": {"func": "generalizedd2", "alpha": 1, "beta": 2},
    "m2_b1_mmdt": {"func": "mseries", "npoint": 2, "beta": 1},
    "m2_b2_mmdt": {"func": "mseries", "npoint": 2, "beta": 2},
    "n2_b1_mmdt": {"func": "nseries", "npoint": 2, "beta": 1},
    "n2_b2_mmdt": {"func": "nseries", "npoint": 2, "beta": 2},
}


@pytest.fixture(scope="module")
def generated() -> tuple[list[np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(constituent momenta per jet, trigflow's float64 features by name, float32 HLF rows as stored)."""
    captured: list[tuple[np.ndarray, dict[str, float]]] = []
    original = jets_module.high_level_features

    def capture(constituents, momenta=None, **kwargs):
        features = original(constituents, momenta, **kwargs)
        captured.append((np.array(momenta, dtype=np.float64), features))
        return features

    stored = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jets_module, "high_level_features", capture)
        for class_index in range(len(JET_CLASSES)):
            chunk = _Chunk(class_index, 0, JETS_PER_CLASS, 4242 + class_index, JetOptions())
            stored.append(_generate_chunk(chunk).arrays["hlf"])
    assert len(captured) == JETS_PER_CLASS * len(JET_CLASSES)
    momenta = [m for m, _ in captured]
    features = {name: np.array([f[name] for _, f in captured]) for name in HLF_NAMES}
    return momenta, features, np.concatenate(stored)


def _events(momenta: list[np.ndarray]):
    """One awkward event (px, py, pz, E records) per jet."""
    import awkward as ak

    flat = np.concatenate(momenta)
    counts = [len(m) for m in momenta]
    fields = {name: ak.unflatten(flat[:, i], counts) for i, name in enumerate(("px", "py", "pz", "E"))}
    return ak.zip(fields)


@pytest.fixture(scope="module")
def contrib(generated) -> dict[str, np.ndarray]:
    """The 16 features of every jet computed by fastjet-contrib (and the public recipe for zlogz)."""
    import awkward as ak
    import fastjet

    momenta, _, _ = generated
    reclustering = fastjet.JetDefinition(fastjet.cambridge_algorithm, fastjet.JetDefinition.max_allowable_R)
    groomed = fastjet.ClusterSequence(_events(momenta), reclustering).exclusive_jets_softdrop_grooming(
        njets=1, beta=0.0, symmetry_cut=0.1, symmetry_measure="scalar_z", R0=0.8, recursion_choice="larger_pt"
    )
    groomed_sequence = fastjet.ClusterSequence(groomed.constituents, reclustering)
    reference = {
        name: np.asarray(groomed_sequence.exclusive_jets_energy_correlator(njets=1, **arguments), np.float64)
        for name, arguments in CONTRIB_RATIOS.items()
    }
    reference["mass_mmdt"] = np.asarray(groomed.msoftdrop, dtype=np.float64)
    reference["groomed_multiplicity"] = ak.to_numpy(ak.num(groomed.constituents, axis=-1))
    # recipe: for c in curjet.constituents(): z = c.e() / curjet.e(); zlogz += z log z
    fractions = [m[:, 3] / m[:, 3].sum() for m in momenta]
    reference["zlogz"] = np.array([np.sum(z * np.log(z)) for z in fractions])
    reference["multiplicity"] = np.array([len(m) for m in momenta], dtype=np.float64)
    return reference


def test_every_feature_is_cross_checked():
    assert set(CONTRIB_RATIOS) | {"zlogz", "mass_mmdt", "multiplicity"} == set(HLF_NAMES)


@pytest.mark.parametrize("name", list(CONTRIB_RATIOS))
def test_energy_correlation_ratios_match_contrib(generated, contrib, name):
    _, features, _ = generated
    assert np.all(np.isfinite(contrib[name]))
    assert np.mean(contrib[name] > 0) > 0.9  # mostly 3+ groomed particles: the ratios are not trivially 0
    np.testing.assert_allclose(features[name], contrib[name], rtol=RELATIVE_TOLERANCE, atol=0)


def test_groomed_mass_and_constituents_match_contrib_soft_drop(generated, contrib):
    momenta, features, _ = generated
    np.testing.assert_allclose(features["mass_mmdt"], contrib["mass_mmdt"], rtol=RELATIVE_TOLERANCE, atol=0)
    ours = np.array([len(mmdt_groom(_pseudojets(m))[0]) for m in momenta])
    np.testing.assert_array_equal(ours, contrib["groomed_multiplicity"])
    assert np.any(ours < contrib["multiplicity"])  # grooming removed something on real jets


def _pseudojets(momenta: np.ndarray) -> list:
    import fastjet

    return [fastjet.PseudoJet(*p) for p in momenta.tolist()]


def test_zlogz_and_multiplicity_match_public_recipe(generated, contrib):
    _, features, _ = generated
    np.testing.assert_allclose(features["zlogz"], contrib["zlogz"], rtol=RELATIVE_TOLERANCE, atol=0)
    np.testing.assert_array_equal(features["multiplicity"], contrib["multiplicity"])


def test_stored_rows_are_the_checked_features(generated):
    _, features, stored = generated
    expected = np.stack([features[name] for name in HLF_NAMES], axis=1).astype(np.float32)
    np.testing.assert_array_equal(stored, expected)


def test_one_particle_groomed_jet_convention():
    """contrib returns 0/0 = NaN for the ratios of a one-particle jet, trigflow stores 0; both give C1 = 0."""
    import awkward as ak
    import fastjet

    from trigflow.data.jet_substructure import energy_correlation_ratios

    particle = np.array([[100.0, 1.0, 3.0, 105.0]])
    reclustering = fastjet.JetDefinition(fastjet.cambridge_algorithm, fastjet.JetDefinition.max_allowable_R)
    sequence = fastjet.ClusterSequence(_events([particle]), reclustering)
    ours = energy_correlation_ratios(particle)
    for name, arguments in CONTRIB_RATIOS.items():
        reference = float(ak.to_numpy(sequence.exclusive_jets_energy_correlator(njets=1, **arguments))[0])
        key = name.removesuffix("_mmdt")
        if key.startswith("c1_"):
            assert reference == 0 and ours[key] == 0, name
        else:
            assert np.isnan(reference) and ours[key] == 0, name
