"""Data layer: jet substructure math for the jet generator — mMDT grooming and energy-correlation ratios.

Definitions (the 16 high-level features of the hls4ml LHC jet data set, Duarte et al., JINST 13 (2018) P07027,
arXiv:1804.06913; computed here the way fastjet-contrib's ``RecursiveTools``/``EnergyCorrelator`` do):

* Grooming: modified mass-drop tagger (mMDT) = soft drop with β = 0, z_cut = 0.1 (Dasgupta, Fregoso, Marzani,
  Salam, arXiv:1307.0007; Larkoski, Marzani, Soyez, Thaler, arXiv:1402.2657). The jet's constituents are
  reclustered with Cambridge/Aachen; the last clustering is undone while min(pT1, pT2)/(pT1 + pT2) ≤ z_cut,
  following the harder (higher-pT) branch. ``mass_mmdt`` is the mass of what is left (GeV).
* Energy correlators, pT and ΔR measure (contrib ``pt_R``): z_i = pT_i / Σ_j pT_j over the groomed
  constituents, R_ij = sqrt(Δy² + Δφ²) (rapidity y). Normalised ECFs (Larkoski, Salam, Thaler,
  arXiv:1305.0007):
  e2^β = Σ_{i<j} z_i z_j R_ij^β,   e3^β = Σ_{i<j<k} z_i z_j z_k (R_ij R_ik R_jk)^β.
  Generalised ECFs (Moult, Necib, Thaler, arXiv:1609.07483): ᵥe_3^β keeps only the v smallest of the three
  pairwise angles, 1e3^β = Σ z_i z_j z_k min(R)^β and 2e3^β = Σ z_i z_j z_k (R_(1) R_(2))^β; 1e2^β = e2^β.
* Ratios: C1^β = e2^β (so C1^0 = Σ_{i<j} z_i z_j); C2^β = e3^β / (e2^β)²; D2^β = e3^β / (e2^β)³
  (arXiv:1409.6298); generalised D2^(α,β) = e3^α / (e2^β)^(3α/β) (Larkoski, Moult, Neill, arXiv:1409.6298,
  contrib ``EnergyCorrelatorGeneralizedD2``) — note D2^(1,1) equals D2^1 by this definition;
  M2^β = 1e3^β / 1e2^β; N2^β = 2e3^β / (1e2^β)². A ratio whose denominator vanishes (a groomed jet of one
  particle) is set to 0.
* ``zlogz`` = Σ z_i log z_i over all (ungroomed) constituents with energy fractions z_i = E_i / E_jet
  (E_jet = Σ_j E_j, the E-scheme jet energy), as the public data set's recipe computes it
  (``PushBackJetInformation`` in nhanvtran/trackObservables ``processing/anaSubstructure.cpp``);
  ``multiplicity`` is the number of (ungroomed) constituents.

The ECF ratios agree with fastjet-contrib (EnergyCorrelator, through the installed ``fastjet`` package) to
< 1e-11 relative on real jets and the mMDT grooming (contrib SoftDrop) exactly; contrib gives NaN (0/0) where
this module returns 0. ``tests/data/test_jet_substructure.py`` checks every feature against contrib;
``docs/jet_features.md`` has the numbers and why this numpy code is kept (it is faster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MMDT_Z_CUT = 0.1
MMDT_BETA = 0.0


def pt_eta_phi(momenta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT, pseudorapidity, φ) of an (n, 4) array of (px, py, pz, E)."""
    px, py, pz = momenta[:, 0], momenta[:, 1], momenta[:, 2]
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def rapidity(momenta: np.ndarray) -> np.ndarray:
    """Rapidity y = ½ ln((E + pz)/(E − pz)) of an (n, 4) array of (px, py, pz, E)."""
    e, pz = momenta[:, 3], momenta[:, 2]
    return 0.5 * np.log(np.maximum(e + pz, 1e-300) / np.maximum(e - pz, 1e-300))


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Wrap an azimuthal difference into [-π, π)."""
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def momenta_of(jets: list) -> np.ndarray:
    """(n, 4) array of (px, py, pz, E) of a list of fastjet PseudoJets."""
    return np.array([(j.px(), j.py(), j.pz(), j.E()) for j in jets], dtype=np.float64).reshape(-1, 4)


def mmdt_groom(
    constituents: list, *, z_cut: float = MMDT_Z_CUT, beta: float = MMDT_BETA, jet_radius: float = 0.8
) -> tuple[np.ndarray, float]:
    """Soft-drop groom a jet given its constituents (PseudoJets); returns (groomed momenta (n, 4), mass)."""
    import fastjet

    reclustering = fastjet.JetDefinition(fastjet.cambridge_algorithm, fastjet.JetDefinition.max_allowable_R)
    sequence = fastjet.ClusterSequence(list(constituents), reclustering)
    branch = sequence.exclusive_jets(1)[0]
    parent1, parent2 = fastjet.PseudoJet(), fastjet.PseudoJet()
    while branch.has_parents(parent1, parent2):
        pt1, pt2 = parent1.pt(), parent2.pt()
        threshold = z_cut * (parent1.delta_R(parent2) / jet_radius) ** beta if beta else z_cut
        if min(pt1, pt2) / (pt1 + pt2) > threshold:
            break
        branch = parent1 if pt1 >= pt2 else parent2
        parent1, parent2 = fastjet.PseudoJet(), fastjet.PseudoJet()
    groomed = momenta_of(branch.constituents())
    mass = float(np.sqrt(max(branch.m2(), 0.0)))
    del sequence  # the branch pointed into it; read everything first
    return groomed, mass


@dataclass(frozen=True)
class _IndexTables:
    """Pairs (i < j) and triplets (i < j < k) of up to ``size`` items in colex order, so the first C(n, 2)
    pairs and C(n, 3) triplets are exactly those of n items; a triplet names its three sides by pair index."""

    size: int
    pair_i: np.ndarray
    pair_j: np.ndarray
    side_ij: np.ndarray
    side_ik: np.ndarray
    side_jk: np.ndarray
    third: np.ndarray


_tables = _IndexTables(0, *(np.zeros(0, dtype=np.int32),) * 6)


def _index_tables(n: int) -> _IndexTables:
    """Index tables for at least n items (built once per process, grown in steps of 64 items)."""
    global _tables
    if n > _tables.size:
        size = max(192, 64 * -(-n // 64))
        below = np.tril(np.ones((size, size), dtype=bool), -1)
        pair_j, pair_i = np.nonzero(below)
        k, j, i = np.nonzero(below[:, :, None] & below[None, :, :])  # [k, j, i] with i < j < k
        pair = lambda lower, upper: (upper * (upper - 1) // 2 + lower).astype(np.int32)  # noqa: E731
        _tables = _IndexTables(
            size,
            pair_i.astype(np.int32),
            pair_j.astype(np.int32),
            pair(i, j),
            pair(i, k),
            pair(j, k),
            k.astype(np.int32),
        )
    return _tables


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def energy_correlation_ratios(momenta: np.ndarray) -> dict[str, float]:
    """The 13 ECF ratios (c1..n2, names as in HLF_NAMES without the ``_mmdt`` suffix) of a groomed jet."""
    pt = np.hypot(momenta[:, 0], momenta[:, 1])
    z = pt / pt.sum()
    y, phi = rapidity(momenta), np.arctan2(momenta[:, 1], momenta[:, 0])
    angle = np.hypot(y[:, None] - y[None, :], wrap_phi(phi[:, None] - phi[None, :]))

    e2 = {0: 0.5 * (1.0 - float(np.sum(z * z)))}
    for beta in (1, 2):
        e2[beta] = 0.5 * float(z @ angle**beta @ z)

    # Triplet sums over i < j < k: gather the three sides and the weights z_i z_j z_k through pair indices.
    n = len(z)
    tables, n_pairs, n_triplets = _index_tables(n), n * (n - 1) // 2, n * (n - 1) * (n - 2) // 6
    pair_angle = angle[tables.pair_j[:n_pairs], tables.pair_i[:n_pairs]]
    pair_weight = z[tables.pair_j[:n_pairs]] * z[tables.pair_i[:n_pairs]]
    side_ij = pair_angle[tables.side_ij[:n_triplets]]
    side_ik = pair_angle[tables.side_ik[:n_triplets]]
    side_jk = pair_angle[tables.side_jk[:n_triplets]]
    weight = pair_weight[tables.side_ij[:n_triplets]] * z[tables.third[:n_triplets]]
    smallest = np.minimum(np.minimum(side_ij, side_ik), side_jk)
    largest = np.maximum(np.maximum(side_ij, side_ik), side_jk)
    product = side_ij * side_ik * side_jk
    two_smallest = np.divide(product, largest, out=np.zeros_like(product), where=largest > 0)
    e3 = {1: float(weight @ product), 2: float(weight @ product**2)}
    e3_min = {1: float(weight @ smallest), 2: float(weight @ smallest**2)}
    e3_two = {1: float(weight @ two_smallest), 2: float(weight @ two_smallest**2)}

    ratios = {f"c1_b{b}": e2[b] for b in (0, 1, 2)}
    for b in (1, 2):
        ratios[f"c2_b{b}"] = _ratio(e3[b], e2[b] ** 2)
    for b in (1, 2):
        ratios[f"d2_b{b}"] = _ratio(e3[b], e2[b] ** 3)
    alpha = 1
    for b in (1, 2):
        ratios[f"d2_a{alpha}_b{b}"] = _ratio(e3[alpha], e2[b] ** (3 * alpha / b))
    for b in (1, 2):
        ratios[f"m2_b{b}"] = _ratio(e3_min[b], e2[b])
    for b in (1, 2):
        ratios[f"n2_b{b}"] = _ratio(e3_two[b], e2[b] ** 2)
    return ratios


def zlogz(energy: np.ndarray) -> float:
    """Σ z log z with energy fractions z = E_i / Σ E over the given constituents."""
    z = energy[energy > 0] / energy.sum()
    return float(np.sum(z * np.log(z)))


def high_level_features(
    constituents: list, momenta: np.ndarray | None = None, *, jet_radius: float = 0.8
) -> dict[str, float]:
    """All 16 HLF (keys = HLF_NAMES) of one jet, given its constituents as PseudoJets (and their momenta)."""
    momenta = momenta_of(constituents) if momenta is None else momenta
    groomed, groomed_mass = mmdt_groom(constituents, jet_radius=jet_radius)
    features = {"zlogz": zlogz(momenta[:, 3])}
    features.update({f"{name}_mmdt": value for name, value in energy_correlation_ratios(groomed).items()})
    features["mass_mmdt"] = groomed_mass
    features["multiplicity"] = float(len(constituents))
    return features
