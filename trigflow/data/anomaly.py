"""Data layer: L1 anomaly-detection events in the layout of the public ADC2021 challenge data set.

Govorkova et al., "LHC physics dataset for unsupervised New Physics detection at 40 MHz" (Sci. Data 9, 118
(2022)): per event the missing transverse energy, up to 4 electrons, 4 muons and 10 jets, each as
(pT [GeV], eta, phi), i.e. 19 objects x 3 = 57 inputs, every object type sorted by pT and zero-padded
(MET eta is always 0).

Events are generated with Pythia8 (pp at 13 TeV, default tune with multi-parton interactions, no pile-up) and
reconstructed with a simple L1-like detector model:

* electrons / muons: final-state e / mu that are isolated (scalar pT sum of the other visible particles within
  dR < 0.3 below 15 % of the lepton pT); pT smeared with sigma/pT = 2 % (+) 10 %/sqrt(pT) for electrons and
  2 % (+) 0.02 % * pT for muons; kept if pT > 3 GeV and |eta| < 3.0 (e) / 2.1 (mu), the ADC2021 cuts.
* jets: anti-kt R = 0.4 (FastJet) over the visible final state within |eta| < 5, without muons and the
  isolated electrons; pT smeared with sigma/pT = 2 GeV/pT (+) 80 %/sqrt(pT) (+) 5 %; kept if pT > 15 GeV and
  |eta| < 4.0 (ADC2021).
* MET: minus the vector sum of the visible final state within |eta| < 5, plus the smearing of the jets and
  leptons propagated, plus a Gaussian soft term of 0.5 * sqrt(sum ET of the unclustered particles) per axis.
* L1-like preselection (a small trigger menu): one electron or muon with pT > 23 GeV (the ADC2021 filter) OR a
  jet with pT > 50 GeV (without it QCD, a third of the ADC2021 background, could not pass).

The background mixes Standard-Model processes in the ADC2021 proportions after preselection (W -> l nu 59.2 %,
QCD dijets 33.8 %, Z/gamma* -> ll 6.7 %, ttbar 0.3 %). Signals (Pythia8 built-in, see ``SIGNALS``): leptoquark
pairs LQ -> b tau (80 GeV) and A -> Z*Z* -> 4l (50 GeV) as in ADC2021; H -> tau tau and H+- -> tau nu at
200 GeV instead of ADC2021's 60 GeV, where they hardly pass the preselection and look like W -> tau nu.

Known differences from ADC2021; docs/ae.md, "The data versus ADC2021", gives the details and measurements.
(1) The jet leg of the preselection: ADC2021 requires the e/mu for the background and for every signal. In
the embedded file, no QCD event and only 20-35 % of the lq_btau, h_tautau and hpm_taunu events have an e/mu
above 23 GeV. (2) The H / H+- masses. (3) No pile-up (the ADC2021 signal files are PU20). (4) A parametric
detector model instead of ADC2021's simulation. This generator cannot match (1): of Pythia QCD events with
pTHat > 40 GeV, 0 of 2,000 pass the lepton filter with our isolation and 2 of 4,000 with isolation < 0.45,
so the 20,280 QCD events would need >= 4e7 Pythia events. H+- (60 GeV) -> tau nu passes the lepton filter in
0.6 % of events.
Events are mixed in blocks of a few thousand, so any contiguous slice of the file has the same composition.
Same seed -> same arrays, whatever the number of workers (only the timing attribute differs).

``selection="adc2021"`` (``trigflow data anomaly --selection adc2021``) makes an ADC2021-like weighted file
instead: the preselection is the ADC2021 filter alone (an e or mu above 23 GeV, no jet leg, for background and
signals), the lepton isolation is 0.45 (ADC2021's folder name ``IsoLep_lt_45``) instead of 0.15, and the QCD
component becomes lepton-enriched bbbar in three pT-hat bins (``QCD_HF_BINS``; natural decays, events without
a final-state e/mu above 20 GeV dropped before reconstruction). Each event carries a ``weight``: every
background component's weights sum to its ADC2021 fraction, QCD's 33.8 % shared over the bins by
sigma_gen x efficiency; signals weigh 1. docs/ae.md, "An ADC2021-like weighted file", gives the cost.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.data.h5 import create_h5, open_h5
from trigflow.data.parallel import ChunkStore, map_chunks
from trigflow.errors import TrigflowError

GENERATOR_TAG = "trigflow-anomaly-v1"  # bump when the physics changes: invalidates cached files

OBJECTS: tuple[tuple[str, int], ...] = (("MET", 1), ("e", 4), ("mu", 4), ("j", 10))
N_OBJECTS = sum(n for _, n in OBJECTS)
FEATURE_NAMES: tuple[str, ...] = tuple(
    f"{kind}_{var}" if n == 1 else f"{kind}{i}_{var}"
    for kind, n in OBJECTS
    for i in range(n)
    for var in ("pt", "eta", "phi")
)
N_FEATURES = len(FEATURE_NAMES)  # 57

# Object selection (GeV), after smearing
E_PT_MIN, E_ETA_MAX = 3.0, 3.0
MU_PT_MIN, MU_ETA_MAX = 3.0, 2.1
JET_PT_MIN, JET_ETA_MAX = 15.0, 4.0
JET_R, JET_SEED_PT = 0.4, 10.0  # clustered jets above 10 GeV (true pT) are smeared and enter MET
LEPTON_SEED_PT = 2.0  # true-pT floor for lepton candidates
ISO_DR, ISO_MAX = 0.3, 0.15
VISIBLE_ETA_MAX = 5.0
MET_SOFT_RESOLUTION = 0.5  # sigma per axis = 0.5 * sqrt(sum ET_soft / GeV) GeV

# L1-like preselection
LEPTON_TRIGGER_PT = 23.0
JET_TRIGGER_PT = 50.0

# selection "adc2021": ADC2021's isolation (folder name IsoLep_lt_45) and the generator-level e/mu veto of the
# lepton-enriched QCD bins (20 GeV: a 23 GeV e/mu after 2-3 % smearing is a > 5 sigma fluctuation away)
ADC2021_ISO_MAX = 0.45
GEN_LEPTON_VETO_PT = 20.0

INVISIBLE_IDS = (12, 14, 16, 1000022, 1000039)
MB_TO_PB = 1e9

ECM_GEV = 13000.0
COMMON_SETTINGS: tuple[str, ...] = (
    f"Beams:eCM = {ECM_GEV:.0f}",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Random:setSeed = on",
)


@dataclass(frozen=True)
class Component:
    """One Pythia8 process: background part (with its fraction) or signal (with its ``process`` index)."""

    name: str
    description: str
    settings: tuple[str, ...]
    fraction: float = 0.0  # background only: share of the background events
    group: str = ""  # weighted files: components of one group share its weight (default: the name alone)
    gen_lepton_pt: float | None = None  # events without a final-state e/mu above this: not reconstructed
    max_generated_per_event: int = 1000  # Pythia events per kept event before the settings count as broken
    chunk_events: int | None = None  # at most this many events per chunk (slow components: work to share)

    @property
    def weight_group(self) -> str:
        return self.group or self.name


BACKGROUND: tuple[Component, ...] = (
    Component(
        "w_lnu",
        "inclusive W -> l nu (l = e, mu, tau)",
        ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"),
        0.592,
    ),
    Component(
        "qcd",
        "QCD 2 -> 2, pTHat > 40 GeV",
        ("HardQCD:all = on", "PhaseSpace:pTHatMin = 40."),
        0.338,
    ),
    Component(
        "z_ll",
        "Z/gamma* -> ll (l = e, mu, tau), mHat > 40 GeV",
        (
            "WeakSingleBoson:ffbar2gmZ = on",
            "PhaseSpace:mHatMin = 40.",
            "23:onMode = off",
            "23:onIfAny = 11 13 15",
        ),
        0.067,
    ),
    Component("ttbar", "ttbar, inclusive decays", ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"), 0.003),
)

SIGNALS: tuple[Component, ...] = (
    Component(
        "lq_btau",
        "scalar leptoquark pairs (gg, qqbar -> LQ LQbar), m = 80 GeV, LQ -> b tau",
        (
            "LeptoQuark:gg2LQLQbar = on",
            "LeptoQuark:qqbar2LQLQbar = on",
            "42:m0 = 80.",
            "42:chargeType = 2",  # charge +2/3 so that LQ -> b tau+ conserves charge
            "42:0:products = 5 -15",
        ),
    ),
    Component(
        "a_4l",
        "neutral scalar A (gg -> A), m = 50 GeV, A -> Z* Z* -> 4l (l = e, mu)",
        (
            "Higgs:useBSM = on",
            "HiggsBSM:gg2A3 = on",
            "36:m0 = 50.",
            "HiggsA3:coup2Z = 1.",  # A -> ZZ is zero by default for the CP-odd state
            "36:onMode = off",
            "36:onIfMatch = 23 23",
            "23:onMode = off",
            "23:onIfAny = 11 13",
        ),
    ),
    Component(
        "h_tautau",
        "heavy neutral Higgs H (gg -> H), m = 200 GeV, H -> tau tau",
        (
            "Higgs:useBSM = on",
            "HiggsBSM:gg2H2 = on",
            "35:m0 = 200.",
            "35:onMode = off",
            "35:onIfMatch = 15 -15",
        ),
    ),
    Component(
        "hpm_taunu",
        "charged Higgs H+- (q qbar' -> H+-), m = 200 GeV, H+- -> tau nu",
        (
            "Higgs:useBSM = on",
            "HiggsBSM:ffbar2H+- = on",
            "37:m0 = 200.",
            "37:onMode = off",
            "37:onIfAny = 15 16",
        ),
    ),
)

COMPONENTS: tuple[Component, ...] = BACKGROUND + SIGNALS

# ---- selection "adc2021": lepton-enriched QCD (HardQCD:hardbbbar, natural decays) in pT-hat bins.
# Events per bin: one each, the rest in the cost-optimal shares n_b ~ s_b / sqrt(c_b) with s_b the bin's
# cross-section after the filter (pb) and c_b its core-seconds per passing event, both measured by
# scripts/weighted_qcd_probe.py (recipe filter_b, isolation < 0.45; docs/ae.md). The weights do not depend on
# this choice, only the statistical power per core-second does.
QCD_HF_BINS: tuple[tuple[float, float | None], ...] = ((20.0, 40.0), (40.0, 80.0), (80.0, None))
QCD_HF_SIGMA_PASS_PB = (838.3, 863.2, 81.3)
QCD_HF_CORE_S_PER_EVENT = (26.2, 1.91, 1.49)
QCD_FRACTION = 0.338
CHUNK_CORE_S = 600.0  # the QCD bins are cut into chunks of ~10 core-minutes, so a cluster's cores share them


def _qcd_hf_shares() -> tuple[float, ...]:
    raw = [s / math.sqrt(c) for s, c in zip(QCD_HF_SIGMA_PASS_PB, QCD_HF_CORE_S_PER_EVENT)]
    return tuple(r / sum(raw) for r in raw)


def _qcd_hf_bin(lo: float, hi: float | None, share: float, core_s: float) -> Component:
    name = f"qcd_hf_{lo:.0f}_{hi:.0f}" if hi is not None else f"qcd_hf_{lo:.0f}"
    window = f"{lo:.0f} < pTHat < {hi:.0f} GeV" if hi is not None else f"pTHat > {lo:.0f} GeV"
    settings = ("HardQCD:hardbbbar = on", f"PhaseSpace:pTHatMin = {lo:.1f}")
    if hi is not None:
        settings += (f"PhaseSpace:pTHatMax = {hi:.1f}",)
    return Component(
        name,
        f"lepton-enriched QCD: bbbar (HardQCD:hardbbbar), {window}, natural decays, events without a "
        f"final-state e/mu above {GEN_LEPTON_VETO_PT:.0f} GeV dropped before reconstruction",
        settings,
        QCD_FRACTION * share,
        group="qcd",
        gen_lepton_pt=GEN_LEPTON_VETO_PT,
        max_generated_per_event=30_000,  # 20-40 GeV: ~3,000 Pythia events per passing event (probe)
        chunk_events=max(1, round(CHUNK_CORE_S / core_s)),
    )


QCD_HF: tuple[Component, ...] = tuple(
    _qcd_hf_bin(lo, hi, share, core_s)
    for (lo, hi), share, core_s in zip(QCD_HF_BINS, _qcd_hf_shares(), QCD_HF_CORE_S_PER_EVENT)
)
ADC2021_BACKGROUND: tuple[Component, ...] = (BACKGROUND[0],) + QCD_HF + BACKGROUND[2:]


@dataclass(frozen=True)
class Selection:
    """What a generated file keeps: lepton isolation, the L1-like preselection, the background processes."""

    name: str
    iso_max: float  # an e/mu is kept if the other visible pT within ISO_DR is below iso_max x its pT
    lepton_trigger_pt: float
    jet_trigger_pt: float | None  # None: no jet leg
    background: tuple[Component, ...]
    weighted: bool  # a per-event `weight` dataset (background weights sum to the ADC2021 fractions)

    @property
    def components(self) -> tuple[Component, ...]:
        return self.background + SIGNALS

    @property
    def preselection(self) -> str:
        text = f"e or mu pT > {self.lepton_trigger_pt} GeV"
        if self.jet_trigger_pt is not None:
            return f"{text} OR jet pT > {self.jet_trigger_pt} GeV"
        return f"{text} (the ADC2021 filter; no jet leg)"


TRIGFLOW = Selection("trigflow", ISO_MAX, LEPTON_TRIGGER_PT, JET_TRIGGER_PT, BACKGROUND, weighted=False)
ADC2021 = Selection("adc2021", ADC2021_ISO_MAX, LEPTON_TRIGGER_PT, None, ADC2021_BACKGROUND, weighted=True)
SELECTIONS: dict[str, Selection] = {s.name: s for s in (TRIGFLOW, ADC2021)}


def selection_of(name: str) -> Selection:
    """The selection called ``name`` (one-line error for an unknown one)."""
    if name not in SELECTIONS:
        raise TrigflowError(f"unknown selection {name!r}; choose from {', '.join(SELECTIONS)}")
    return SELECTIONS[name]
PROCESSES: tuple[str, ...] = ("background",) + tuple(s.name for s in SIGNALS)

BLOCK_EVENTS = 6000  # events per mixing block (all components, in proportion)
MAX_BATCH = 500  # Pythia events reconstructed at once (memory: ~1500 particles each)


@dataclass(frozen=True)
class AnomalySet:
    """Events as the models see them: ``x`` N x 57 float32, ``process`` N int8 indexing ``processes``."""

    x: np.ndarray
    process: np.ndarray
    names: tuple[str, ...]
    processes: tuple[str, ...]
    attrs: dict
    component: np.ndarray | None = None  # finer label (background part); None for files without it
    components: tuple[str, ...] = ()
    weight: np.ndarray | None = None  # float64, one per event, in weighted files; None: every event weighs 1

    def __len__(self) -> int:
        return len(self.x)

    def of(self, name: str) -> np.ndarray:
        """Events of one process (``"background"`` or a signal name)."""
        if name not in self.processes:
            raise TrigflowError(f"unknown process {name!r}; this file has {', '.join(self.processes)}")
        return self.x[self.process == self.processes.index(name)]


# ---------------------------------------------------------------- reconstruction (vectorised with awkward)


def _kinematics(px: Any, py: Any, pz: Any) -> tuple[Any, Any, Any]:
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    return pt, eta, np.arctan2(py, px)


def _smear(pt: Any, rel_sigma: Any, rng: np.random.Generator) -> Any:
    """Multiply each pT by 1 + sigma * N(0, 1) (floored at 0); jagged in, jagged out."""
    import awkward as ak

    counts = ak.num(pt)
    flat = np.asarray(ak.flatten(pt), dtype=np.float64)
    sigma = np.asarray(ak.flatten(rel_sigma), dtype=np.float64)
    smeared = flat * np.maximum(1.0 + sigma * rng.standard_normal(len(flat)), 0.0)
    return ak.unflatten(smeared, counts)


def _jet_resolution(pt: Any) -> Any:
    pt = np.maximum(pt, 1.0)
    return np.sqrt((2.0 / pt) ** 2 + 0.8**2 / pt + 0.05**2)


def _electron_resolution(pt: Any) -> Any:
    pt = np.maximum(pt, 1.0)
    return np.sqrt(0.02**2 + 0.1**2 / pt)


def _muon_resolution(pt: Any) -> Any:
    return np.sqrt(0.02**2 + (2e-4 * pt) ** 2)


def _padded(pt: Any, eta: Any, phi: Any, n: int) -> np.ndarray:
    """Sort objects by pT (descending), keep ``n``, zero-pad: (events, n*3) as (pt, eta, phi) triples."""
    import awkward as ak

    order = ak.argsort(pt, ascending=False)
    cols = []
    for a in (pt, eta, phi):
        a = ak.pad_none(a[order], n, clip=True)
        cols.append(np.asarray(ak.fill_none(a, 0.0), dtype=np.float64))
    return np.stack(cols, axis=-1).reshape(len(cols[0]), n * 3)


def generator_lepton(particles: Any, pt_min: float) -> np.ndarray:
    """Per event: is there a final-state (status > 0) e or mu with true pT > ``pt_min`` GeV?"""
    import awkward as ak

    fin = particles[(particles.status > 0) & ((abs(particles.id) == 11) | (abs(particles.id) == 13))]
    return ak.to_numpy(ak.any(np.hypot(fin.p.px, fin.p.py) > pt_min, axis=1))


def reconstruct(
    particles: Any, rng: np.random.Generator, selection: Selection = TRIGFLOW
) -> tuple[np.ndarray, np.ndarray]:
    """Pythia events (awkward ``prt`` of ``Pythia.nextBatch``) -> (x: N x 57 float32, passed: N bool), with
    the lepton isolation and the preselection of ``selection``."""
    import awkward as ak
    import fastjet

    fin = particles[particles.status > 0]
    aid = abs(fin.id)
    pt, eta, phi = _kinematics(fin.p.px, fin.p.py, fin.p.pz)
    invisible = aid == INVISIBLE_IDS[0]
    for pid in INVISIBLE_IDS[1:]:
        invisible = invisible | (aid == pid)
    vis_mask = ~invisible & (abs(eta) < VISIBLE_ETA_MAX)
    p = fin.p
    vis = ak.zip({"px": p.px, "py": p.py, "pz": p.pz, "E": p.e, "pt": pt, "eta": eta, "phi": phi, "aid": aid})
    vis = vis[vis_mask]

    # Lepton candidates and their isolation (scalar pT sum within dR < 0.3, itself subtracted)
    is_cand = (
        ((vis.aid == 11) & (abs(vis.eta) < E_ETA_MAX)) | ((vis.aid == 13) & (abs(vis.eta) < MU_ETA_MAX))
    ) & (vis.pt > LEPTON_SEED_PT)
    cand = vis[is_cand]
    pairs = ak.cartesian({"c": cand, "v": vis}, axis=1, nested=True)
    dphi = (pairs.c.phi - pairs.v.phi + np.pi) % (2 * np.pi) - np.pi
    dr2 = (pairs.c.eta - pairs.v.eta) ** 2 + dphi**2
    iso = ak.sum(ak.where(dr2 < ISO_DR**2, pairs.v.pt, 0.0), axis=-1) - cand.pt
    isolated = iso < selection.iso_max * cand.pt
    # scatter the isolated flag back onto the visible particles (to drop isolated electrons from the jets)
    flat_iso = np.zeros(int(ak.sum(ak.num(vis))), dtype=bool)
    flat_iso[np.flatnonzero(np.asarray(ak.flatten(is_cand)))] = np.asarray(ak.flatten(isolated))
    vis_isolated = ak.unflatten(flat_iso, ak.num(vis))
    leptons = cand[isolated]

    # Jets: anti-kt R = 0.4 over visible particles without muons and isolated electrons
    jet_in = vis[(vis.aid != 13) & ~vis_isolated]
    jet_in = ak.zip({"px": jet_in.px, "py": jet_in.py, "pz": jet_in.pz, "E": jet_in.E})
    jets = fastjet.ClusterSequence(jet_in, fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R))
    jets = jets.inclusive_jets(min_pt=JET_SEED_PT)
    j_pt, j_eta, j_phi = _kinematics(jets.px, jets.py, jets.pz)

    # Smearing, always in the same order (reproducible): jets, leptons, MET soft term
    j_pts = _smear(j_pt, _jet_resolution(j_pt), rng)
    is_e = leptons.aid == 11
    l_res = ak.where(is_e, _electron_resolution(leptons.pt), _muon_resolution(leptons.pt))
    l_pts = _smear(leptons.pt, l_res, rng)

    # MET: visible recoil, object mismeasurement propagated, Gaussian soft term
    n = len(fin)
    met_x = -np.asarray(ak.sum(vis.px, axis=1), dtype=np.float64)
    met_y = -np.asarray(ak.sum(vis.py, axis=1), dtype=np.float64)
    for d_pt, ph in ((j_pts - j_pt, j_phi), (l_pts - leptons.pt, leptons.phi)):
        met_x -= np.asarray(ak.sum(d_pt * np.cos(ph), axis=1), dtype=np.float64)
        met_y -= np.asarray(ak.sum(d_pt * np.sin(ph), axis=1), dtype=np.float64)
    sum_et_soft = np.asarray(ak.sum(vis.pt, axis=1) - ak.sum(j_pt, axis=1) - ak.sum(leptons.pt, axis=1))
    sigma = MET_SOFT_RESOLUTION * np.sqrt(np.maximum(sum_et_soft, 0.0))
    met_x += sigma * rng.standard_normal(n)
    met_y += sigma * rng.standard_normal(n)

    # Object selection after smearing
    e_sel = is_e & (l_pts > E_PT_MIN)
    mu_sel = ~is_e & (l_pts > MU_PT_MIN) & (abs(leptons.eta) < MU_ETA_MAX)
    j_sel = (j_pts > JET_PT_MIN) & (abs(j_eta) < JET_ETA_MAX)
    met = np.stack([np.hypot(met_x, met_y), np.zeros(n), np.arctan2(met_y, met_x)], axis=-1)
    x = np.concatenate(
        [
            met,
            _padded(l_pts[e_sel], leptons.eta[e_sel], leptons.phi[e_sel], 4),
            _padded(l_pts[mu_sel], leptons.eta[mu_sel], leptons.phi[mu_sel], 4),
            _padded(j_pts[j_sel], j_eta[j_sel], j_phi[j_sel], 10),
        ],
        axis=1,
    ).astype(np.float32)

    lep_pt = ak.concatenate([l_pts[e_sel], l_pts[mu_sel]], axis=1)
    passed = np.asarray(ak.any(lep_pt > selection.lepton_trigger_pt, axis=1))
    if selection.jet_trigger_pt is not None:
        passed = passed | np.asarray(ak.any(j_pts[j_sel] > selection.jet_trigger_pt, axis=1))
    return x, passed


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Chunk:
    component: int  # index into the selection's components (COMPONENTS for "trigflow")
    n: int  # events to keep (after preselection)
    seed: int
    block: int
    selection: str = "trigflow"
    part: int = 0  # a component's share of a block in parts of at most Component.chunk_events events


@dataclass(frozen=True)
class ChunkResult:
    component: int
    block: int
    x: np.ndarray
    n_generated: int
    seconds: float
    sigma_gen_pb: float = math.nan  # Pythia's sigmaGen() after this chunk (weighted selections)


def _seeds(seed: int, component: int, block: int, part: int = 0) -> tuple[int, np.random.Generator]:
    """Pythia seed (1..900,000,000) and smearing generator derived only from (seed, component, block, part)."""
    key = [seed, component, block] if part == 0 else [seed, component, block, 2, part]
    ss = np.random.SeedSequence(key)
    pythia_seed = int(ss.generate_state(1, np.uint64)[0] % 900_000_000) + 1
    return pythia_seed, np.random.default_rng(np.random.SeedSequence(key + [1]))


def _pythia(settings: tuple[str, ...], seed: int) -> Any:
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in COMMON_SETTINGS + settings + (f"Random:seed = {seed}",):
        if not pythia.readString(line):
            raise TrigflowError(f"Pythia8 rejected the setting {line!r}; check the pythia8mc version (8.317)")
    if not pythia.init():
        raise TrigflowError(f"Pythia8 failed to initialise with {'; '.join(settings)}")
    return pythia


def _silence_fastjet() -> None:
    import fastjet._swig

    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)


def generate_chunk(chunk: _Chunk) -> ChunkResult:
    """Generate ``chunk.n`` preselected events of one component (module level: runs in worker processes)."""
    start = time.perf_counter()
    _silence_fastjet()
    selection = selection_of(chunk.selection)
    comp = selection.components[chunk.component]
    pythia_seed, rng = _seeds(chunk.seed, chunk.component, chunk.block, chunk.part)
    pythia = _pythia(comp.settings, pythia_seed)
    kept: list[np.ndarray] = []
    n_kept = n_generated = 0
    per_event = comp.max_generated_per_event
    max_generated = max(20 * per_event, per_event * chunk.n)
    while n_kept < chunk.n:
        efficiency = (n_kept + 1) / (n_generated + 2)
        size = int(np.clip(math.ceil(1.2 * (chunk.n - n_kept) / efficiency), 50, MAX_BATCH))
        events = pythia.nextBatch(size, "skip")
        if len(events) == 0:
            n_generated += size
            continue
        prt, rows = events.prt, None
        if comp.gen_lepton_pt is not None:  # generator-level veto: only events with an e/mu are reconstructed
            rows = np.flatnonzero(generator_lepton(prt, comp.gen_lepton_pt))
            prt = prt[rows]
        if len(prt) == 0:
            n_generated += size
            continue
        x, passed = reconstruct(prt, rng, selection)
        take = np.flatnonzero(passed)[: chunk.n - n_kept]
        kept.append(x[take])
        n_kept += len(take)
        if rows is not None:
            take = rows[take]  # indices in the Pythia batch
        # count the events used (not the unused tail of the last batch), so kept / generated is the efficiency
        n_generated += size if n_kept < chunk.n else int(take[-1]) + 1
        if n_kept < chunk.n and n_generated >= max_generated:
            raise TrigflowError(
                f"{comp.name}: only {n_kept} of {n_generated} Pythia events pass the L1 preselection; "
                "the process settings are broken"
            )
    x = np.concatenate(kept) if kept else np.zeros((0, N_FEATURES), np.float32)
    sigma_gen_pb = pythia.infoPython().sigmaGen() * MB_TO_PB if selection.weighted else math.nan
    seconds = time.perf_counter() - start
    return ChunkResult(chunk.component, chunk.block, x, n_generated, seconds, sigma_gen_pb)


def _largest_remainder(n: int, fractions: np.ndarray) -> np.ndarray:
    raw = n * fractions / fractions.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts


def component_counts(n_background: int, n_signal: int, selection: str = "trigflow") -> list[int]:
    """Events per component: background split by the fixed fractions (largest remainder), n_signal each.
    Weighted selections first give every background component one event (each needs one for its weight)."""
    sel = selection_of(selection)
    fractions = np.array([c.fraction for c in sel.background])
    if not sel.weighted or n_background == 0:
        counts = _largest_remainder(n_background, fractions)
    elif n_background < len(sel.background):
        raise TrigflowError(
            f"selection {selection!r} needs n_background >= {len(sel.background)} (one event per background "
            f"component), got {n_background}; raise n_background or set it to 0"
        )
    else:
        counts = 1 + _largest_remainder(n_background - len(sel.background), fractions)
    return [int(c) for c in counts] + [n_signal] * len(SIGNALS)


def _plan(n_background: int, n_signal: int, seed: int, selection: str = "trigflow") -> list[_Chunk]:
    counts = component_counts(n_background, n_signal, selection)
    blocks = max(1, math.ceil(sum(counts) / BLOCK_EVENTS))
    chunks = []
    components = selection_of(selection).components
    for b in range(blocks):
        for c, n in enumerate(counts):
            n_block = n // blocks + (b < n % blocks)
            size = components[c].chunk_events or n_block
            parts = math.ceil(n_block / size) if n_block else 0
            for part in range(parts):  # n_block split as evenly as possible into parts of at most `size`
                n_part = n_block // parts + (part < n_block % parts)
                chunks.append(_Chunk(c, n_part, seed, b, selection, part))
    return chunks


def _process_of(component: int, n_background_components: int = len(BACKGROUND)) -> int:
    return 0 if component < n_background_components else component - n_background_components + 1


def preselection_efficiency(kept: int, generated: int) -> tuple[float, str]:
    """Preselection efficiency of a component from its kept and generated counts (all chunks), and the
    estimator used.

    Each chunk stops at its n-th passing event, so the component's Pythia events, chunks concatenated, are
    Bernoulli trials stopped at the K-th success (K = kept): K/N overestimates the efficiency by about
    K/(K - 1), (K - 1)/(N - 1) is unbiased. With K = 1 that would be 0, so K/N is kept (and flagged)."""
    if kept >= 2:
        return (kept - 1) / (generated - 1), "(K-1)/(N-1): unbiased for generation stopped at the K-th pass"
    return kept / generated, "K/N with K = 1: biased high (generation stopped at the first pass)"


def component_weights(background: tuple[Component, ...], stats: dict[str, dict[str, Any]]) -> dict[str, dict]:
    """Per background component with kept events: sigma_gen (pb), efficiency (kept / generated), sigma_pass
    (pb), its share of the background weight and the weight of each of its events.

    Every weight group (a component, or the QCD pT-hat bins together) gets its fraction (the sum of its
    members' ``fraction``: the ADC2021 proportions), shared over the members in proportion to sigma_gen x
    efficiency; within a component every event weighs the same. ``stats[name]`` holds ``kept``,
    ``generated``, ``sigma_gen_pb`` and, optionally, ``efficiency`` (default kept / generated)."""
    out: dict[str, dict] = {}
    for group in dict.fromkeys(c.weight_group for c in background):
        members = [c for c in background if c.weight_group == group]
        present = [c for c in members if stats.get(c.name, {}).get("kept", 0) > 0]
        if not present:
            continue
        fraction = sum(c.fraction for c in members)
        sigma_pass = {}
        eff = {}
        for c in present:
            s = stats[c.name]
            eff[c.name] = s.get("efficiency", s["kept"] / s["generated"])
            sigma_pass[c.name] = s["sigma_gen_pb"] * eff[c.name]
        total = sum(sigma_pass.values())
        for c in present:
            s = stats[c.name]
            share = sigma_pass[c.name] / total if len(present) > 1 else 1.0
            out[c.name] = {
                "weight_group": group,
                "sigma_gen_pb": s["sigma_gen_pb"],
                "efficiency": eff[c.name],
                "sigma_pass_pb": sigma_pass[c.name],
                "weight_fraction": fraction * share,
                "weight": fraction * share / s["kept"],
            }
    return out


def _check_counts(n_background: int, n_signal: int, seed: int) -> None:
    for name, v in (("n_background", n_background), ("n_signal", n_signal), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise TrigflowError(f"{name} must be a non-negative integer, got {v!r}")
    if n_background + n_signal == 0:
        raise TrigflowError("nothing to generate: n_background and n_signal are both 0")


def options(selection: str = "trigflow") -> dict[str, Any]:
    """The generator configuration, stored as JSON in the file attribute ``options``."""
    sel = selection_of(selection)
    base = {
        "tag": GENERATOR_TAG,
        "ecm_gev": ECM_GEV,
        "pileup": 0,
        "electron": {"pt_min": E_PT_MIN, "abs_eta_max": E_ETA_MAX, "resolution": "2% (+) 10%/sqrt(pT)"},
        "muon": {"pt_min": MU_PT_MIN, "abs_eta_max": MU_ETA_MAX, "resolution": "2% (+) 0.02%*pT"},
        "isolation": {"dr": ISO_DR, "max_rel": ISO_MAX},
        "jet": {
            "algorithm": "anti-kt",
            "r": JET_R,
            "pt_min": JET_PT_MIN,
            "abs_eta_max": JET_ETA_MAX,
            "resolution": "2GeV/pT (+) 80%/sqrt(pT) (+) 5%",
        },
        "met": {"visible_abs_eta_max": VISIBLE_ETA_MAX, "soft_term_sigma": "0.5*sqrt(sumET_soft) per axis"},
        "preselection": f"e or mu pT > {LEPTON_TRIGGER_PT} GeV OR jet pT > {JET_TRIGGER_PT} GeV",
        "background": {c.name: {"fraction": c.fraction, "settings": list(c.settings)} for c in BACKGROUND},
        "signals": {c.name: {"description": c.description, "settings": list(c.settings)} for c in SIGNALS},
        "block_events": BLOCK_EVENTS,
    }
    if sel is TRIGFLOW:
        return base
    background: dict[str, Any] = {}
    for c in sel.background:
        entry: dict[str, Any] = {"fraction_of_events": c.fraction, "weight_group": c.weight_group}
        entry |= {"description": c.description, "settings": list(c.settings)}
        if c.gen_lepton_pt is not None:
            entry["generator_lepton_veto_pt"] = c.gen_lepton_pt
        background[c.name] = entry
    groups = {g: sum(c.fraction for c in sel.background if c.weight_group == g) for g in
              dict.fromkeys(c.weight_group for c in sel.background)}
    return base | {
        "selection": sel.name,
        "isolation": {"dr": ISO_DR, "max_rel": sel.iso_max, "trigflow_max_rel": ISO_MAX},
        "preselection": sel.preselection + ", background and signals",
        "background": background,
        "weights": {
            "dataset": "weight (float64, one per event)",
            "background_fractions": groups,
            "rule": "each weight group's weights sum to its fraction (ADC2021, after the filter); the QCD "
            "bins share theirs in proportion to sigma_gen x efficiency; equal weights within a component; "
            "signals weigh 1",
            "qcd_events_per_bin": "one each, the rest n_b ~ s_b/sqrt(c_b) (probe: filter_b, iso < 0.45)",
            "qcd_probe_sigma_pass_pb": list(QCD_HF_SIGMA_PASS_PB),
            "qcd_probe_core_s_per_event": list(QCD_HF_CORE_S_PER_EVENT),
        },
    }


def generate_anomaly(
    out: str | os.PathLike,
    n_background: int,
    n_signal: int,
    seed: int = 0,
    *,
    workers: int | None = None,
    force: bool = False,
    selection: str = "trigflow",
) -> Path:
    """Generate ``n_background`` SM events and ``n_signal`` events per signal process into ``out`` (HDF5).

    ``selection="adc2021"``: ADC2021's filter and isolation, lepton-enriched QCD in pT-hat bins and a
    ``weight`` per event (module docstring)."""
    import trigflow
    from trigflow.fsio import refuse_existing

    _check_counts(n_background, n_signal, seed)
    sel = selection_of(selection)
    components = sel.components
    component_counts(n_background, n_signal, selection)  # refuses impossible counts before any file exists
    out = Path(out)
    refuse_existing(out, force, "file")
    chunks = _plan(n_background, n_signal, seed, selection)
    total = sum(c.n for c in chunks)
    n_blocks = chunks[-1].block + 1
    per_block = [sum(1 for c in chunks if c.block == b) for b in range(n_blocks)]
    store = ChunkStore.beside(out, GENERATOR_TAG)
    with create_h5(out, force=force) as f:
        f.attrs["generator"] = f"pythia8mc 8.317 + fastjet anti-kt R=0.4, L1 smearing ({GENERATOR_TAG})"
        f.attrs["seed"] = seed
        f.attrs["trigflow_version"] = trigflow.__version__
        f.attrs["n_background"] = n_background
        f.attrs["n_signal"] = n_signal
        f.attrs["options"] = json.dumps(options(selection))
        if sel is not TRIGFLOW:
            f.attrs["selection"] = sel.name
        gz = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        rows = max(1, min(4096, total))
        dx = f.create_dataset(
            "x", (0, N_FEATURES), np.float32, maxshape=(None, N_FEATURES), chunks=(rows, N_FEATURES), **gz
        )
        dx.attrs["names"] = list(FEATURE_NAMES)
        dp = f.create_dataset("process", (0,), np.int8, maxshape=(None,), chunks=(rows,), **gz)
        dp.attrs["processes"] = list(PROCESSES)
        dc = f.create_dataset("component", (0,), np.int8, maxshape=(None,), chunks=(rows,), **gz)
        dc.attrs["components"] = [c.name for c in components]
        stats = {c.name: [0, 0, 0.0, 0.0] for c in components}  # kept, generated, worker seconds, Σ σ_gen·N
        pending: list[ChunkResult] = []
        results = map_chunks(
            generate_chunk,
            chunks,
            workers=workers,
            description="anomaly events",
            total=total,
            size_of=lambda r: len(r.x),
            checkpoint=store,
        )
        for res in results:
            s = stats[components[res.component].name]
            s[0], s[1], s[2] = s[0] + len(res.x), s[1] + res.n_generated, s[2] + res.seconds
            if sel.weighted:
                s[3] += res.sigma_gen_pb * res.n_generated  # chunks combined by their generated counts
            pending.append(res)
            if len(pending) < per_block[res.block]:
                continue
            # block complete: shuffle it (seeded) and append
            x = np.concatenate([r.x for r in pending])
            comp = np.concatenate([np.full(len(r.x), r.component, np.int8) for r in pending])
            shuffle = np.random.default_rng(np.random.SeedSequence([seed, 10**6 + res.block]))
            perm = shuffle.permutation(len(x))
            x, comp = x[perm], comp[perm]
            n_bg = len(sel.background)
            proc = np.array([_process_of(c, n_bg) for c in range(len(components))], np.int8)[comp]
            start = len(dx)
            for d, a in ((dx, x), (dp, proc), (dc, comp)):
                d.resize(start + len(a), axis=0)
                d[start:] = a
            pending = []
        summary = {k: {"kept": v[0], "generated": v[1], "seconds": round(v[2], 2)} for k, v in stats.items()}
        if sel.weighted:
            for k, v in stats.items():
                summary[k]["sigma_gen_pb"] = v[3] / v[1] if v[1] else None
                if v[0]:
                    eff, estimator = preselection_efficiency(v[0], v[1])
                    summary[k] |= {"efficiency": eff, "efficiency_estimator": estimator}
            weights = component_weights(sel.background, summary)
            table = np.array([weights[c.name]["weight"] if c.name in weights else 1.0 for c in components])
            for k, w in weights.items():
                summary[k] |= {key: w[key] for key in ("sigma_pass_pb", "weight_fraction", "weight")}
            for c in SIGNALS:
                summary[c.name]["weight"] = 1.0
            f.create_dataset("weight", data=table[dc[...]].astype(np.float64), chunks=(rows,), **gz)
        f.attrs["generation_stats"] = json.dumps(summary)
    store.remove()
    return out


# ---------------------------------------------------------------- reading


def embedded_anomaly_path() -> Path:
    return Path(__file__).resolve().parent / "embedded" / "anomaly.h5"


def _attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return [_attr(a) for a in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def load_anomaly(path: str | os.PathLike | None = None) -> AnomalySet:
    """Read an anomaly file written by ``generate_anomaly`` (default: the embedded one)."""
    if path is None:
        path = embedded_anomaly_path()
        if not path.is_file():
            raise TrigflowError(
                f"embedded anomaly data {path} is missing; reinstall trigflow or pass a generated file"
            )
    path = Path(path)
    with open_h5(path, required=("x", "process")) as f:
        try:
            names = tuple(_attr(f["x"].attrs.get("names", [])))
            processes = tuple(_attr(f["process"].attrs.get("processes", [])))
            x = np.asarray(f["x"][...], dtype=np.float32)
            process = np.asarray(f["process"][...], dtype=np.int8)
            component, components = None, ()
            if "component" in f:
                component = np.asarray(f["component"][...], dtype=np.int8)
                components = tuple(_attr(f["component"].attrs.get("components", [])))
            weight = np.asarray(f["weight"][...], dtype=np.float64) if "weight" in f else None
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise TrigflowError(
                f"data file {path} is corrupt or truncated ({exc.__class__.__name__} on read); regenerate it"
            ) from None
    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(names) != N_FEATURES:
        raise TrigflowError(f"data file {path}: `x` has shape {x.shape}, not (N, {N_FEATURES}); regenerate")
    bad_labels = process.min(initial=0) < 0 or process.max(initial=0) >= len(processes)
    if process.shape != (len(x),) or not processes or bad_labels:
        raise TrigflowError(f"data file {path}: `process` does not match `x` or `processes`; regenerate it")
    if component is not None and (component.shape != (len(x),) or not components):
        component, components = None, ()
    bad_weight = weight is not None and (
        weight.shape != (len(x),) or not np.all(np.isfinite(weight)) or np.any(weight < 0)
    )
    if bad_weight:
        raise TrigflowError(f"data file {path}: `weight` is not one finite weight >= 0 per event; regenerate")
    return AnomalySet(x, process, names, processes, attrs, component, components, weight)


def cache_dir() -> Path:
    return Path(os.environ.get("TRIGFLOW_CACHE") or Path.home() / ".cache" / "trigflow").expanduser()


def cached_anomaly(n_background: int, n_signal: int, seed: int, *, workers: int | None = None) -> Path:
    """Path of an anomaly file with these parameters: the embedded one if it matches, else a cached one under
    ``$TRIGFLOW_CACHE`` (default ``~/.cache/trigflow``), generated on a miss."""
    _check_counts(n_background, n_signal, seed)
    want = {"n_background": n_background, "n_signal": n_signal, "seed": seed}
    cached = cache_dir() / "anomaly" / f"{GENERATOR_TAG}_b{n_background}_s{n_signal}_seed{seed}.h5"
    for path in (embedded_anomaly_path(), cached):
        if not path.is_file():
            continue
        try:
            with open_h5(path, required=("x", "process")) as f:
                attrs = {k: _attr(f.attrs.get(k)) for k in want}
                tag_ok = GENERATOR_TAG in str(_attr(f.attrs.get("generator", "")))
                complete = len(f["x"]) == len(f["process"]) == n_background + n_signal * len(SIGNALS)
        except TrigflowError:
            continue
        if attrs == want and tag_ok and complete:
            return path
    return generate_anomaly(cached, n_background, n_signal, seed, workers=workers, force=True)
