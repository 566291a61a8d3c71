"""Data layer: boosted-jet data set (g, q, W, Z, t) generated with Pythia8 + FastJet, stored as HDF5.

Physics (after the public hls4ml LHC jet data set, Duarte et al., JINST 13 (2018) P07027, arXiv:1804.06913):
pp at 13 TeV, one set of Pythia8 hard processes per class with the hard-process pT in the recipe's
window 995 < pT-hat < 1005 GeV (its MadGraph run card: ΔpT/pT = 0.01 around 1 TeV for partons, W, Z and t),
default tune (Monash) with ISR/FSR, MPI and hadronisation on. docs/jets.md compares the recipe point by
point. Visible final-state particles (all but neutrinos) are
clustered with anti-kt R = 0.8; jets with |η| < 2 and 800 < pT < 1200 GeV are kept when they match the
class's truth object within ΔR < R: the outgoing hard gluon (g) or light u/d/s quark (q), or the W, Z or top
whose decay quarks (for t: b, q, q') all lie within ΔR < R of the jet axis. At most one jet per truth object.
Options, off by default: W and Z from WW / ZZ production, labelled by matching or, as the public set, as each
event's leading jet (``BOSON_PROCESSES``, ``BOSON_LABELLINGS``).

Features: the 16 high-level features (``HLF_NAMES``, definitions in ``jet_substructure``), jet pT/η/mass
(ungroomed), the ``n_constituents`` highest-pT constituents (pT fraction, Δη, Δφ, E, ΔR relative to the jet
axis; zero-padded) and a jet image (Δη rows × Δφ columns over [-R, R], pixel = summed pT fraction).
pT fractions are z_i = pT_i / Σ_j pT_j over all jet constituents (the scalar pT sum, equal to the jet pT up
to O(m²/pT²)), so they sum to 1.

Reproducibility and order: jets are generated in chunks of ``jets_per_chunk`` jets of one class; each chunk
seeds Pythia from (seed, class, chunk index), so a file depends only on the seed and options, never on the
worker count. Chunks are grouped in rounds (one chunk per class); the jets of a round are shuffled (seeded)
and streamed to the file: classes are interleaved, but the order is only shuffled within rounds — shuffle
again for training.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trigflow.data import HLF_NAMES, JET_CLASSES
from trigflow.data.h5 import create_h5, open_h5
from trigflow.data.jet_substructure import high_level_features, momenta_of, pt_eta_phi, wrap_phi
from trigflow.errors import TrigflowError

CONSTITUENT_FEATURES: tuple[str, ...] = ("pt_fraction", "deta", "dphi", "energy", "delta_r")
JET_PARTS: tuple[str, ...] = ("hlf", "constituents", "image")
FORMAT_VERSION = 3  # 3: pT-hat window 995-1005 GeV (2: pT-hat > 1 TeV); 2: zlogz from E_i / E_jet (1: pT)

ECM_GEV = 13000.0
PT_HAT_RANGE_GEV = (995.0, 1005.0)  # the recipe's parton / W / Z / t pT window (ptj, pt_min_pdg, pt_max_pdg)
JET_RADIUS = 0.8
JET_PT_RANGE_GEV = (800.0, 1200.0)
JET_ABS_ETA_MAX = 2.0
JETS_PER_CHUNK = 250
_NEUTRINOS = (12, 14, 16)
_LIGHT_QUARKS = (1, 2, 3)
_HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")

# Optional detector treatments after the recipe's processing code (anaSubstructure.cpp ``discretizeEvent`` and
# ``smearJetPt``, commit 0ac4c97 read; docs/jets.md point 11). "hcal" / "hcal_ecal" (tags ``h`` / ``he``):
# neutral hadrons are summed (energy) into HCAL cells of 0.087/sqrt(12) in eta and phi, with ``hcal_ecal``
# also photons into ECAL cells of 0.017, over |eta| < 3; each cell becomes a massless particle at the cell
# centre with pT = E / cosh(eta); everything else is kept as generated. "public" is the public files' tag
# ``r1.0:h0.022:e0.0175:t220.0`` as that code reads it (the numbers are not parsed there; the cell sizes are
# the hard-coded ones above): "hcal_ecal" on the recipe's particle classes (``t``: charged hadrons above
# PUBLIC_MAX_TRACK_PT_GEV go into HCAL cells, leptons stay tracks; particles in no class are dropped), then
# (``r``) every particle and cell is smeared: 4-momentum × max(1e-10, Gauss(1, σ)), σ by class
# (``smearing_resolution``). "public_tag" is the same tag as another stored version of that code reads it
# (``findOption``): HCAL cells of 0.022, ECAL cells of 0.0175 and tracks up to 220 GeV (PUBLIC_TAG).
DETECTORS: tuple[str, ...] = ("none", "hcal", "hcal_ecal", "public", "public_tag")
HCAL_CELL = 0.087 / np.sqrt(12.0)
ECAL_CELL = 0.017
CELL_ABS_ETA_MAX = 3.0
_NEUTRAL_HADRONS = (3122, 130, 310, 2112, 3322)  # |PDG id|: Λ, K0L, K0S, n, Ξ0 (the recipe's "n" list)
_PHOTON = 22
# The recipe's other particle classes by |PDG id| ("c", "p", "l"); "public" drops ids in no class, as
# discretizeEvent does.
_CHARGED_HADRONS = (211, 321, 2212, 3112, 3222, 3312)  # π±, K±, p, Σ-, Σ+, Ξ-
_PHOTONS = (22, 111)  # γ, π0 (an ECAL cell counts as a π0 in the smearing)
_LEPTONS = (11, 13, 15)
PUBLIC_MAX_TRACK_PT_GEV = 110.0  # tag t: "maxChargedPt = 110" (charged hadrons above it are not tracks)
# (HCAL cell, ECAL cell, max track pT in GeV) per public detector: hard-coded (commit 0ac4c97) or parsed
PUBLIC_TAG = {"public": (HCAL_CELL, ECAL_CELL, PUBLIC_MAX_TRACK_PT_GEV), "public_tag": (0.022, 0.0175, 220.0)}
SMEAR_TRACK, SMEAR_PHOTON, SMEAR_NEUTRAL = 0, 1, 2  # smearing classes: tracks and leptons, photons, neutrals

# Pythia8 settings per class (hard processes chosen so the class's truth object is produced).
PYTHIA_PROCESSES: dict[str, tuple[str, ...]] = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qg2qg = on", "HardQCD:qqbar2gg = on"),
    "q": ("HardQCD:qg2qg = on", "HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on", "HardQCD:gg2qqbar = on"),
    "w": ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", *_HADRONIC_W),
    "z": (
        "WeakBosonAndParton:qqbar2gmZg = on",
        "WeakBosonAndParton:qg2gmZq = on",
        "WeakZ0:gmZmode = 2",
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
    ),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_HADRONIC_W),
}
# Optional W and Z processes: "diboson" makes the W and Z classes from WW and ZZ pair production, as the
# recipe's sample names suggest (pythia82-lhc13-WW-pt1-50k, -ZZ-: docs/jets.md point 7); both bosons decay
# to quarks and each may give a matched jet. "boson_parton" (the default) keeps PYTHIA_PROCESSES.
BOSON_PROCESSES: tuple[str, ...] = ("boson_parton", "diboson")
# How W and Z jets are labelled: "matched" (the default, as every class: the jet matched to a boson whose
# decay quarks it contains) or, with "diboson" only, "leading": the event's leading jet, labelled by the
# process without truth matching, as the public set's labelling (keras-training convert/addTruth.py).
BOSON_LABELLINGS: tuple[str, ...] = ("matched", "leading")
DIBOSON_PROCESSES: dict[str, tuple[str, ...]] = {
    "w": ("WeakDoubleBoson:ffbar2WW = on", *_HADRONIC_W),
    "z": (
        "WeakDoubleBoson:ffbar2gmZgmZ = on",
        "WeakZ0:gmZmode = 2",
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
    ),
}
_TRUTH_ID = {"w": 24, "z": 23, "t": 6}


@dataclass(frozen=True)
class JetSet:
    """Jets read from a trigflow jet file; ``constituents``/``image`` are None unless requested."""

    hlf: np.ndarray
    label: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    mass: np.ndarray
    constituents: np.ndarray | None
    image: np.ndarray | None
    constituent_features: tuple[str, ...] = CONSTITUENT_FEATURES
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class JetOptions:
    """Generation options that change the file's content (and so are part of the cache key)."""

    n_constituents: int = 32
    image_size: int = 16
    preprocess_images: bool = False
    jets_per_chunk: int = JETS_PER_CHUNK
    detector: str = "none"  # one of DETECTORS; "none" = stable generator-level particles
    min_particle_pt_gev: float = 0.0  # particles (or cells) with a lower pT are not clustered; 0 = all
    boson_processes: str = "boson_parton"  # one of BOSON_PROCESSES: the W and Z classes' hard processes
    boson_labelling: str = "matched"  # one of BOSON_LABELLINGS: how W and Z jets are chosen


@dataclass(frozen=True)
class _Chunk:
    class_index: int
    round_index: int
    n_jets: int
    pythia_seed: int
    options: JetOptions


@dataclass
class _ChunkResult:
    round_index: int
    n_events: int
    arrays: dict[str, np.ndarray]

    @property
    def n_jets(self) -> int:
        return len(self.arrays["label"])


# ------------------------------------------------------------------------------------------------- generation


def class_processes(jet_class: str, boson_processes: str = "boson_parton") -> tuple[str, ...]:
    """The Pythia8 process (and decay) settings of one class; ``boson_processes`` as in BOSON_PROCESSES."""
    if boson_processes not in BOSON_PROCESSES:
        raise TrigflowError(
            f"unknown boson_processes {boson_processes!r}; choose from {', '.join(BOSON_PROCESSES)}"
        )
    if boson_processes == "diboson" and jet_class in DIBOSON_PROCESSES:
        return DIBOSON_PROCESSES[jet_class]
    return PYTHIA_PROCESSES[jet_class]


def pythia_settings(jet_class: str, pythia_seed: int, boson_processes: str = "boson_parton") -> list[str]:
    """All Pythia8 settings for one chunk of one class."""
    return [
        f"Beams:eCM = {ECM_GEV}",
        f"PhaseSpace:pTHatMin = {PT_HAT_RANGE_GEV[0]}",
        f"PhaseSpace:pTHatMax = {PT_HAT_RANGE_GEV[1]}",
        *class_processes(jet_class, boson_processes),
        "Random:setSeed = on",
        f"Random:seed = {pythia_seed}",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ]


def _pythia_seed(seed: int, class_index: int, round_index: int) -> int:
    state = np.random.SeedSequence(seed, spawn_key=(class_index, round_index)).generate_state(1)[0]
    return int(state) % 900_000_000 + 1  # Pythia accepts 1..900000000 (0 would mean "seed from the clock")


def _bottom_copy(index: int, ids: np.ndarray, daughter1: np.ndarray, daughter2: np.ndarray) -> int:
    """Follow Pythia's carbon copies (single daughter with the same id) down to the decaying particle."""
    while (
        daughter1[index] > 0 and daughter1[index] == daughter2[index] and ids[daughter1[index]] == ids[index]
    ):
        index = int(daughter1[index])
    return index


def _decay_quarks(index: int, ids: np.ndarray, daughter1: np.ndarray, daughter2: np.ndarray) -> list[int]:
    """Quarks from the decay of the resonance at ``index`` (through t → W b → q q' b)."""
    index = _bottom_copy(index, ids, daughter1, daughter2)
    first, last = int(daughter1[index]), int(daughter2[index])
    quarks: list[int] = []
    for daughter in range(first, max(first, last) + 1):
        if abs(ids[daughter]) == 24:
            quarks += _decay_quarks(daughter, ids, daughter1, daughter2)
        elif 1 <= abs(ids[daughter]) <= 6:
            quarks.append(daughter)
    return quarks


def _truth_objects(jet_class: str, event: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(momentum of the truth object, momenta of the quarks that must be inside the jet) for each object."""
    ids, status, momenta = event["id"], event["status"], event["p"]
    daughter1, daughter2 = event["daughter1"], event["daughter2"]
    objects = []
    for index in (5, 6):  # the hard process's outgoing particles in Pythia's event record
        particle = abs(ids[index])
        if jet_class in ("g", "q"):
            wanted = particle == 21 if jet_class == "g" else particle in _LIGHT_QUARKS
            if wanted and abs(status[index]) == 23:
                objects.append((momenta[index], momenta[:0]))
        elif particle == _TRUTH_ID[jet_class]:
            decaying = _bottom_copy(index, ids, daughter1, daughter2)
            quarks = _decay_quarks(decaying, ids, daughter1, daughter2)
            if len(quarks) < (3 if jet_class == "t" else 2):
                continue  # decay not found in the record: cannot check containment
            objects.append((momenta[decaying], momenta[quarks]))
    return objects


def _delta_r(eta: float, phi: float, momenta: np.ndarray) -> np.ndarray:
    _, eta2, phi2 = pt_eta_phi(momenta.reshape(-1, 4))
    return np.hypot(eta2 - eta, wrap_phi(phi2 - phi))


def _cells(momenta: np.ndarray, size: float) -> np.ndarray:
    """(n, 4) px py pz E summed in energy into eta × phi cells of ``size`` over |eta| < CELL_ABS_ETA_MAX
    (phi in [0, 2π)); one massless 4-vector per non-empty cell at its centre. Outside |eta|: dropped."""
    if len(momenta) == 0:
        return np.zeros((0, 4))
    _, eta, phi = pt_eta_phi(momenta)
    n_eta = int(np.floor(2 * CELL_ABS_ETA_MAX / size))
    n_phi = int(np.floor(2 * np.pi / size))
    i_eta = np.floor((eta + CELL_ABS_ETA_MAX) / (2 * CELL_ABS_ETA_MAX) * n_eta).astype(np.int64)
    i_phi = np.floor(np.mod(phi, 2 * np.pi) / (2 * np.pi) * n_phi).astype(np.int64)
    inside = (i_eta >= 0) & (i_eta < n_eta)
    cell, where = np.unique(i_eta[inside] * n_phi + np.minimum(i_phi[inside], n_phi - 1), return_inverse=True)
    energy = np.bincount(where, weights=momenta[inside, 3], minlength=len(cell))
    c_eta = -CELL_ABS_ETA_MAX + (cell // n_phi + 0.5) * (2 * CELL_ABS_ETA_MAX / n_eta)
    c_phi = (cell % n_phi + 0.5) * (2 * np.pi / n_phi)
    pt = energy / np.cosh(c_eta)
    return np.stack([pt * np.cos(c_phi), pt * np.sin(c_phi), pt * np.sinh(c_eta), energy], axis=1)


def smearing_resolution(kind: np.ndarray, momenta: np.ndarray) -> np.ndarray:
    """Relative resolution σ per particle of the recipe's ``smearJetPt`` by smearing class ``kind``:
    tracks and leptons sqrt((2.5e-4 pT)² + 0.015²), photons and ECAL cells
    sqrt((0.027 / sqrt(E / 1.6))² + (0.15 · 1.6 / E)² + 0.005²), neutral hadrons and HCAL cells
    sqrt((1.2 / sqrt(E / 7))² + 0.05²); pT and E in GeV."""
    pt, energy = np.hypot(momenta[:, 0], momenta[:, 1]), momenta[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        track = np.sqrt((2.5e-4 * pt) ** 2 + 0.015**2)
        photon = np.sqrt((0.027 / np.sqrt(energy / 1.6)) ** 2 + (0.15 * 1.6 / energy) ** 2 + 0.005**2)
        neutral = np.sqrt((1.2 / np.sqrt(energy / 7.0)) ** 2 + 0.05**2)
    return np.select([kind == SMEAR_TRACK, kind == SMEAR_PHOTON], [track, photon], neutral)


def _public_particles(
    ids: np.ndarray, momenta: np.ndarray, rng: np.random.Generator, detector: str = "public"
) -> np.ndarray:
    """The recipe's tag ``r1.0:h0.022:e0.0175:t220.0``: cells (``h``, ``e``), no tracks above the maximum pT
    (``t``), then every particle and cell smeared (``r``); particles in none of its classes are dropped.
    Cell sizes and the track pT maximum are ``PUBLIC_TAG[detector]``."""
    hcal_size, ecal_size, max_track_pt = PUBLIC_TAG[detector]
    pid = np.abs(ids)
    charged, lepton = np.isin(pid, _CHARGED_HADRONS), np.isin(pid, _LEPTONS)
    ecal = np.isin(pid, _PHOTONS)
    pt = np.hypot(momenta[:, 0], momenta[:, 1])
    hcal = np.isin(pid, _NEUTRAL_HADRONS) | (charged & (pt > max_track_pt))
    tracks = (charged & ~hcal) | lepton
    hcal_cells, ecal_cells = _cells(momenta[hcal], hcal_size), _cells(momenta[ecal], ecal_size)
    # as discretizeEvent, only cells with energy > 0 (Pythia writes some zero-momentum photons)
    hcal_cells, ecal_cells = hcal_cells[hcal_cells[:, 3] > 0], ecal_cells[ecal_cells[:, 3] > 0]
    particles = np.concatenate([momenta[tracks], hcal_cells, ecal_cells])
    kind = np.repeat(
        [SMEAR_TRACK, SMEAR_NEUTRAL, SMEAR_PHOTON], [int(tracks.sum()), len(hcal_cells), len(ecal_cells)]
    )
    factor = np.maximum(1e-10, rng.normal(1.0, smearing_resolution(kind, particles)))
    return particles * factor[:, None]


def _smearing_rng(pythia_seed: int, event_index: int) -> np.random.Generator:
    """The smearing generator of one event of one chunk ("public", "public_tag"; independent of workers)."""
    return np.random.default_rng(np.random.SeedSequence(pythia_seed, spawn_key=(event_index,)))


def detector_particles(
    ids: np.ndarray, momenta: np.ndarray, detector: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The particles clustered into jets: ``momenta`` (n, 4) as generated for ``detector="none"``, else
    with neutral hadrons (and for ``hcal_ecal`` photons) replaced by calorimeter cells (see ``DETECTORS``);
    ``"public"`` / ``"public_tag"`` also smear them, drawing from ``rng`` (required for them)."""
    if detector == "none":
        return momenta
    if detector in PUBLIC_TAG:
        if rng is None:
            raise TrigflowError(
                f"detector {detector!r} smears momenta: pass rng=numpy.random.default_rng(seed)"
            )
        return _public_particles(ids, momenta, rng, detector)
    hcal = np.isin(np.abs(ids), _NEUTRAL_HADRONS)
    ecal = (np.abs(ids) == _PHOTON) if detector == "hcal_ecal" else np.zeros(len(ids), dtype=bool)
    kept = momenta[~hcal & ~ecal]
    return np.concatenate([kept, _cells(momenta[hcal], HCAL_CELL), _cells(momenta[ecal], ECAL_CELL)])


def _jet_image(
    deta: np.ndarray, dphi: np.ndarray, weight: np.ndarray, size: int, preprocess: bool
) -> np.ndarray:
    """Δη × Δφ histogram of pT fractions over [-R, R]²; optionally rotated and flipped (jet-image style)."""
    if preprocess and len(weight) > 1:
        # Rotate the pT-weighted principal axis onto the Δη axis, then flip so the pT centroid is in (+, +).
        cov = np.cov(np.stack([deta, dphi]), aweights=weight)
        axis = np.linalg.eigh(cov)[1][:, -1]
        angle = np.arctan2(axis[1], axis[0])
        cos, sin = np.cos(angle), np.sin(angle)
        deta, dphi = cos * deta + sin * dphi, -sin * deta + cos * dphi
        deta = deta if weight @ deta >= 0 else -deta
        dphi = dphi if weight @ dphi >= 0 else -dphi
    extent = (-JET_RADIUS, JET_RADIUS)
    image, _, _ = np.histogram2d(deta, dphi, bins=size, range=(extent, extent), weights=weight)
    return image


def _jet_arrays(jet, options: JetOptions) -> dict[str, np.ndarray]:
    """Features of one jet (a fastjet PseudoJet with constituents)."""
    constituents = list(jet.constituents())
    momenta = momenta_of(constituents)
    pt, eta, phi = pt_eta_phi(momenta)
    order = np.argsort(-pt, kind="stable")
    momenta, pt, eta, phi = momenta[order], pt[order], eta[order], phi[order]
    fraction = pt / pt.sum()
    deta, dphi = eta - jet.eta(), wrap_phi(phi - jet.phi())

    features = np.stack([fraction, deta, dphi, momenta[:, 3], np.hypot(deta, dphi)], axis=1)
    padded = np.zeros((options.n_constituents, len(CONSTITUENT_FEATURES)), dtype=np.float32)
    kept = features[: options.n_constituents]
    padded[: len(kept)] = kept

    hlf = high_level_features(constituents, momenta, jet_radius=JET_RADIUS)
    return {
        "hlf": np.array([hlf[name] for name in HLF_NAMES], dtype=np.float32),
        "pt": np.float32(jet.pt()),
        "eta": np.float32(jet.eta()),
        "mass": np.float32(np.sqrt(max(jet.m2(), 0.0))),
        "constituents": padded,
        "image": _jet_image(deta, dphi, fraction, options.image_size, options.preprocess_images).astype(
            np.float32
        ),
    }


def _events(pythia, batch_size: int = 25) -> Iterable[dict[str, np.ndarray]]:
    """Endless stream of Pythia events as numpy arrays (id, status, daughter1/2, p = (n, 4) px py pz E)."""
    import awkward as ak

    while True:
        batch = pythia.nextBatch(batch_size)
        particles = batch.prt
        offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(particles.id)))])
        columns = {
            name: ak.to_numpy(ak.flatten(particles[name]))
            for name in ("id", "status", "daughter1", "daughter2")
        }
        columns["p"] = np.stack(
            [ak.to_numpy(ak.flatten(particles.p[c])) for c in ("px", "py", "pz", "e")], axis=1
        )
        for start, stop in zip(offsets[:-1], offsets[1:], strict=True):
            yield {name: column[start:stop] for name, column in columns.items()}


def _generate_chunk(chunk: _Chunk) -> _ChunkResult:
    """Generate ``chunk.n_jets`` matched jets of one class (runs in a worker process)."""
    import fastjet
    import fastjet._swig
    import pythia8mc

    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # no banner on stdout

    jet_class = JET_CLASSES[chunk.class_index]
    pythia = pythia8mc.Pythia("", False)
    for setting in pythia_settings(jet_class, chunk.pythia_seed, chunk.options.boson_processes):
        if not pythia.readString(setting):
            raise TrigflowError(f"Pythia8 rejected setting {setting!r}; check the pythia8mc version")
    if not pythia.init():
        raise TrigflowError(f"Pythia8 failed to initialise for class {jet_class!r}")

    jet_definition = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_RADIUS)
    pt_min, pt_max = JET_PT_RANGE_GEV
    rows: list[dict[str, np.ndarray]] = []
    n_events = 0
    max_events = 200 * chunk.n_jets + 1000
    leading = chunk.options.boson_labelling == "leading" and jet_class in DIBOSON_PROCESSES
    for event in _events(pythia):
        n_events += 1
        if n_events > max_events:
            raise TrigflowError(
                f"only {len(rows)} {jet_class} jets in {max_events} events; selection too tight"
            )
        objects = [] if leading else _truth_objects(jet_class, event)
        if not leading and not objects:
            continue
        visible = (event["status"] > 0) & ~np.isin(np.abs(event["id"]), _NEUTRINOS)
        rng = _smearing_rng(chunk.pythia_seed, n_events) if chunk.options.detector in PUBLIC_TAG else None
        momenta = detector_particles(event["id"][visible], event["p"][visible], chunk.options.detector, rng)
        if chunk.options.min_particle_pt_gev > 0:
            momenta = momenta[np.hypot(momenta[:, 0], momenta[:, 1]) > chunk.options.min_particle_pt_gev]
        particles = [fastjet.PseudoJet(*p) for p in momenta.tolist()]
        sequence = fastjet.ClusterSequence(particles, jet_definition)
        all_jets = fastjet.sorted_by_pt(sequence.inclusive_jets(pt_min))
        jets = [jet for jet in all_jets if jet.pt() <= pt_max and abs(jet.eta()) < JET_ABS_ETA_MAX]
        if leading and jets and jets[0] is all_jets[0]:  # the event's leading jet, labelled by the process
            rows.append(_jet_arrays(jets[0], chunk.options))
        for target, quarks in objects:
            if not jets or len(rows) == chunk.n_jets:
                break
            distances = np.array([_delta_r(jet.eta(), jet.phi(), target)[0] for jet in jets])
            nearest = int(np.argmin(distances))
            jet = jets[nearest]
            if distances[nearest] >= JET_RADIUS or np.any(
                _delta_r(jet.eta(), jet.phi(), quarks) >= JET_RADIUS
            ):
                continue
            rows.append(_jet_arrays(jet, chunk.options))
            jets.pop(nearest)
        del sequence
        if len(rows) == chunk.n_jets:
            break

    arrays = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    arrays["label"] = np.full(len(rows), chunk.class_index, dtype=np.int8)
    return _ChunkResult(chunk.round_index, n_events, arrays)


def _chunks(n: int, seed: int, options: JetOptions) -> list[_Chunk]:
    """Chunks in round order: round r holds chunk r of every class that still needs jets."""
    per_class = [
        n // len(JET_CLASSES) + (1 if c < n % len(JET_CLASSES) else 0) for c in range(len(JET_CLASSES))
    ]
    size = options.jets_per_chunk
    rounds = -(-max(per_class) // size)
    return [
        _Chunk(c, r, min(size, per_class[c] - r * size), _pythia_seed(seed, c, r), options)
        for r in range(rounds)
        for c in range(len(JET_CLASSES))
        if per_class[c] > r * size
    ]


def generator_description() -> str:
    """One-line summary of the generator settings, stored as the file attribute ``generator``."""
    import fastjet
    import pythia8mc

    version = pythia8mc.Pythia("", False).parm("Pythia:versionNumber")
    return (
        f"Pythia {version:.3f} (pythia8mc) pp at {ECM_GEV / 1000:g} TeV, "
        f"{PT_HAT_RANGE_GEV[0]:g} < pT-hat < {PT_HAT_RANGE_GEV[1]:g} GeV, default tune (Monash 2013) with "
        "ISR/FSR, MPI and hadronisation on; processes per class in attribute 'processes'. "
        f"FastJet {fastjet.__version__} anti-kt R = {JET_RADIUS} on visible final-state particles; "
        f"jets |eta| < {JET_ABS_ETA_MAX:g}, {JET_PT_RANGE_GEV[0]:g} < pT < {JET_PT_RANGE_GEV[1]:g} GeV, "
        f"matched within dR < {JET_RADIUS} to the hard gluon / light quark / W / Z / top (decay quarks "
        "inside the jet); mMDT grooming (soft drop beta = 0, z_cut = 0.1, C/A) for the *_mmdt features."
    )


def _check_options(n: int, seed: int, options: JetOptions) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise TrigflowError(f"number of jets must be a positive integer, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrigflowError(f"seed must be a non-negative integer, got {seed!r}")
    for name in ("n_constituents", "image_size", "jets_per_chunk"):
        value = getattr(options, name)
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise TrigflowError(f"{name} must be a positive integer, got {value!r}")
    if options.detector not in DETECTORS:
        raise TrigflowError(f"unknown detector {options.detector!r}; choose from {', '.join(DETECTORS)}")
    threshold = options.min_particle_pt_gev
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 100:
        raise TrigflowError(f"min_particle_pt_gev must be a number of GeV in [0, 100), got {threshold!r}")
    class_processes("w", options.boson_processes)  # raises on an unknown value
    if options.boson_labelling not in BOSON_LABELLINGS:
        raise TrigflowError(
            f"unknown boson_labelling {options.boson_labelling!r}; choose from {', '.join(BOSON_LABELLINGS)}"
        )
    if options.boson_labelling == "leading" and options.boson_processes != "diboson":
        raise TrigflowError(
            "boson_labelling='leading' needs boson_processes='diboson' (a W/Z + parton event's leading jet "
            "may be the parton); set both or neither"
        )


class _JetWriter:
    """Resizable, compressed datasets that grow as chunks of jets arrive."""

    def __init__(self, f, options: JetOptions) -> None:
        compression = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        p, nf, s = options.n_constituents, len(CONSTITUENT_FEATURES), options.image_size
        shapes = {
            "hlf": ((len(HLF_NAMES),), np.float32, 4096),
            "label": ((), np.int8, 16384),
            "pt": ((), np.float32, 16384),
            "eta": ((), np.float32, 16384),
            "mass": ((), np.float32, 16384),
            "constituents": ((p, nf), np.float32, 512),
            "image": ((s, s), np.float32, 512),
        }
        self.datasets = {
            name: f.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(rows, *shape),
                **compression,
            )
            for name, (shape, dtype, rows) in shapes.items()
        }
        self.datasets["hlf"].attrs["names"] = list(HLF_NAMES)
        self.datasets["label"].attrs["classes"] = list(JET_CLASSES)
        self.datasets["constituents"].attrs["features"] = list(CONSTITUENT_FEATURES)
        self.datasets["image"].attrs["axes"] = ["deta", "dphi"]
        self.datasets["image"].attrs["extent"] = [-JET_RADIUS, JET_RADIUS, -JET_RADIUS, JET_RADIUS]
        self.size = 0

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        count = len(arrays["label"])
        for name, dataset in self.datasets.items():
            dataset.resize(self.size + count, axis=0)
            dataset[self.size :] = arrays[name]
        self.size += count


def _write_round(writer: _JetWriter, results: list[_ChunkResult], seed: int) -> None:
    arrays = {name: np.concatenate([r.arrays[name] for r in results]) for name in results[0].arrays}
    key = (len(JET_CLASSES), results[0].round_index)  # spawn key distinct from the chunks' (class, round)
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key)).permutation(
        len(arrays["label"])
    )
    writer.append({name: array[order] for name, array in arrays.items()})


def generate_jets(
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    workers: int | None = None,
    n_constituents: int = 32,
    image_size: int = 16,
    force: bool = False,
    preprocess_images: bool = False,
    jets_per_chunk: int = JETS_PER_CHUNK,
    detector: str = "none",
    min_particle_pt_gev: float = 0.0,
    boson_processes: str = "boson_parton",
    boson_labelling: str = "matched",
) -> Path:
    """Generate ``n`` jets (balanced over g, q, W, Z, t) into the HDF5 file ``out``; returns its path.

    ``detector`` (``DETECTORS``): "none" clusters the stable generator-level particles; "hcal" / "hcal_ecal"
    first put neutral hadrons (/ and photons) into calorimeter cells as the recipe's processing code can;
    "public" is the public files' tag ``r1.0:h0.022:e0.0175:t220.0`` as read in anaSubstructure.cpp: the
    "hcal_ecal" cells, charged hadrons above 110 GeV into HCAL cells, then every particle and cell smeared
    by its class's resolution (seeded per chunk and event); "public_tag" the same with the tag's numbers
    parsed, as another stored version of that code does (cells of 0.022 / 0.0175, tracks up to 220 GeV).
    ``min_particle_pt_gev`` > 0 leaves particles (cells) of lower pT out of the clustering.
    ``boson_processes="diboson"``: W and Z jets from WW and ZZ pair production (``BOSON_PROCESSES``);
    with it, ``boson_labelling="leading"`` takes each event's leading jet without truth matching."""
    from trigflow import __version__
    from trigflow.data.parallel import ChunkStore, map_chunks

    options = JetOptions(
        n_constituents,
        image_size,
        bool(preprocess_images),
        jets_per_chunk,
        detector,
        min_particle_pt_gev,
        boson_processes,
        boson_labelling,
    )
    _check_options(n, seed, options)
    out = Path(out)
    chunks = _chunks(int(n), int(seed), options)
    class_counts = np.zeros(len(JET_CLASSES), dtype=np.int64)
    n_events = 0
    store = ChunkStore.beside(out, f"jets-{FORMAT_VERSION}")
    with create_h5(out, force=force) as f:
        writer = _JetWriter(f, options)
        pending: list[_ChunkResult] = []
        results = map_chunks(
            _generate_chunk,
            chunks,
            workers=workers,
            description="jets",
            total=int(n),
            size_of=lambda r: r.n_jets,
            checkpoint=store,
        )
        for result in results:
            if pending and result.round_index != pending[0].round_index:
                _write_round(writer, pending, seed)
                pending = []
            pending.append(result)
            class_counts += np.bincount(result.arrays["label"], minlength=len(JET_CLASSES))
            n_events += result.n_events
        _write_round(writer, pending, seed)

        f.attrs.update(
            {
                "kind": "jets",
                "format_version": FORMAT_VERSION,
                "generator": generator_description(),
                "processes": json.dumps(
                    {c: list(class_processes(c, options.boson_processes)) for c in JET_CLASSES}
                ),
                "seed": int(seed),
                "trigflow_version": __version__,
                "n_jets": int(n),
                "n_events": int(n_events),
                "class_counts": class_counts,
                "n_constituents": options.n_constituents,
                "image_size": options.image_size,
                "preprocess_images": options.preprocess_images,
                "jets_per_chunk": options.jets_per_chunk,
                "detector": options.detector,
                "min_particle_pt_gev": float(options.min_particle_pt_gev),
                "boson_processes": options.boson_processes,
                "boson_labelling": options.boson_labelling,
                "jet_radius": JET_RADIUS,
                "jet_pt_range_gev": list(JET_PT_RANGE_GEV),
                "jet_abs_eta_max": JET_ABS_ETA_MAX,
                "pt_hat_min_gev": PT_HAT_RANGE_GEV[0],
                "pt_hat_max_gev": PT_HAT_RANGE_GEV[1],
                "ecm_gev": ECM_GEV,
                "mmdt": "soft drop beta=0, z_cut=0.1, C/A reclustering",
                "pt_fraction": "pT_i / sum_j pT_j over all jet constituents",
                "zlogz": "sum_i z_i log z_i, z_i = E_i / E_jet over all jet constituents",
                "order": "classes interleaved: shuffled (seeded) within rounds of one chunk per class; "
                "shuffle again before training",
            }
        )
    store.remove()
    return out


# --------------------------------------------------------------------------------------------------- reading


def embedded_jets_path() -> Path:
    """The jet file shipped with trigflow (50k jets, 16 constituents, 16×16 images)."""
    return Path(__file__).resolve().parent / "embedded" / "jets.h5"


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_attr(v) for v in value.tolist()] if value.dtype.kind in "OSU" else value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def load_jets(path: str | os.PathLike | None = None, *, parts: Iterable[str] = ("hlf",)) -> JetSet:
    """Read a jet file (default: the embedded one). ``hlf``, labels, pt, eta and mass are always read;
    ``parts`` adds ``constituents`` and/or ``image``."""
    parts = tuple(parts)
    unknown = sorted(set(parts) - set(JET_PARTS))
    if unknown:
        raise TrigflowError(f"unknown jet part(s) {', '.join(unknown)}; choose from {', '.join(JET_PARTS)}")
    path = Path(path) if path is not None else embedded_jets_path()
    base = ("hlf", "label", "pt", "eta", "mass")
    with open_h5(path, required=base + tuple(p for p in parts if p != "hlf")) as f:
        try:
            names = tuple(_attr(f["hlf"].attrs.get("names", [])))
            if names != HLF_NAMES:
                raise TrigflowError(
                    f"data file {path} has HLF columns {names}, expected {HLF_NAMES}; regenerate it"
                )
            arrays = {name: f[name][()] for name in base}
            constituents = f["constituents"][()] if "constituents" in parts else None
            image = f["image"][()] if "image" in parts else None
            features = tuple(_attr(f["constituents"].attrs["features"])) if "constituents" in f else ()
            attrs = {key: _attr(value) for key, value in f.attrs.items()}
        except (OSError, KeyError, ValueError) as exc:
            raise TrigflowError(
                f"data file {path} could not be read ({exc.__class__.__name__}: corrupt or truncated); "
                "regenerate it"
            ) from None
    attrs["path"] = str(path)
    return JetSet(
        hlf=arrays["hlf"],
        label=arrays["label"],
        pt=arrays["pt"],
        eta=arrays["eta"],
        mass=arrays["mass"],
        constituents=constituents,
        image=image,
        constituent_features=features,
        attrs=attrs,
    )


# ----------------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$TRIGFLOW_CACHE`` or ``~/.cache/trigflow``."""
    return Path(os.environ.get("TRIGFLOW_CACHE") or Path.home() / ".cache" / "trigflow").expanduser()


def cached_jets_path(n: int, seed: int = 0, **options) -> Path:
    """Where ``cached_jets`` keeps the file for (n, seed, options); options as in ``JetOptions``."""
    known = tuple(JetOptions.__dataclass_fields__)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TrigflowError(f"unknown jet option(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    settings = {**JetOptions().__dict__, **options}
    defaults = {
        "detector": "none",
        "min_particle_pt_gev": 0.0,
        "boson_processes": "boson_parton",
        "boson_labelling": "matched",
    }
    for name, default in defaults.items():
        if settings[name] == default:
            del settings[name]  # the default: the key (and cached files) of files made before the option
    key = {"kind": "jets", "format": FORMAT_VERSION, "n": int(n), "seed": int(seed), "options": settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "jets" / f"jets-n{n}-seed{seed}-{digest}.h5"


def cached_jets(n: int, seed: int = 0, *, workers: int | None = None, **options) -> Path:
    """Path of a cached jet file for (n, seed, options) under ``cache_dir()``, generating it on a miss."""
    path = cached_jets_path(n, seed, **options)
    if path.is_file():
        try:
            with open_h5(path, required=("hlf", "label", "pt", "eta", "mass", "constituents", "image")):
                return path
        except TrigflowError:
            pass  # corrupt cache entry: regenerate below
    return generate_jets(path, n, seed, workers=workers, force=True, **options)
