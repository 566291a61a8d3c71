"""Data layer (measurement script): constituents per matched jet under the public recipe's particle sets and
under constituent pT thresholds, to compare with the public files' constituent counts (docs/jets.md).

Runs ``trigflow.data.jets._generate_chunk`` in this process (one chunk per class, Pythia seed 4242 + class
index, default options) and, for the duration of a probe, wraps two of its module functions:

* particle sets (the recipe's trees t_allpar / t_tragam / t_tracks): ``detector_particles`` keeps only
  particles of the listed |PDG id|s before clustering;
* pT thresholds: ``_jet_arrays`` records, for every matched jet, how many constituents lie above each
  threshold (the jet itself is clustered from every particle).

Usage::

    python scripts/multiplicity_probe.py [--jets 100]   # writes scripts/results/multiplicity_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["CHARGED", "PHOTON", "THRESHOLDS_GEV", "main", "summarise"]

ROOT = Path(__file__).resolve().parents[1]
# The recipe's "c" (charged hadron) and "l" (lepton) lists, plus Ω− (absent there), and photons (its "p").
CHARGED = (211, 321, 2212, 3112, 3222, 3312, 3334, 11, 13, 15)
PHOTON = (22,)
PARTICLE_SETS: dict[str, tuple[int, ...] | None] = {
    "all": None,
    "charged+photons": CHARGED + PHOTON,
    "charged": CHARGED,
}
THRESHOLDS_GEV = (0.0, 0.5, 1.0, 2.0)


def summarise(counts: np.ndarray) -> dict:
    """Mean and 5/25/50/75/95 percentiles of constituent counts."""
    counts = np.asarray(counts, dtype=float)
    return {"mean": float(counts.mean()), "percentiles_5_25_50_75_95": np.percentile(
        counts, [5, 25, 50, 75, 95]).tolist(), "n_jets": int(len(counts))}


def _chunk(jets, class_index: int, n: int):
    return jets._generate_chunk(jets._Chunk(class_index, 0, n, 4242 + class_index, jets.JetOptions()))


def particle_sets(n: int, classes: tuple[int, ...] = (0, 2)) -> dict:
    import trigflow.data.jets as jets

    original = jets.detector_particles
    out: dict[str, dict] = {}
    try:
        for name, keep in PARTICLE_SETS.items():

            def kept(ids, momenta, detector, keep=keep):
                momenta = original(ids, momenta, detector)
                return momenta if keep is None else momenta[np.isin(np.abs(ids), keep)]

            jets.detector_particles = kept
            for c in classes:
                hlf = _chunk(jets, c, n).arrays["hlf"]
                out[f"{name} {jets.JET_CLASSES[c]}"] = summarise(hlf[:, jets.HLF_NAMES.index("multiplicity")])
    finally:
        jets.detector_particles = original
    return out


def pt_thresholds(n: int) -> dict:
    import trigflow.data.jets as jets

    original = jets._jet_arrays
    rows: dict[str, list[list[int]]] = {}
    current = ""

    def recorded(jet, options):
        pts = np.array([c.pt() for c in jet.constituents()])
        rows.setdefault(current, []).append([int((pts > t).sum()) for t in THRESHOLDS_GEV])
        return original(jet, options)

    jets._jet_arrays = recorded
    try:
        for c, name in enumerate(jets.JET_CLASSES):
            current = name
            _chunk(jets, c, n)
    finally:
        jets._jet_arrays = original
    every = np.concatenate([np.array(r) for r in rows.values()])
    return {
        f"pT > {t:g} GeV": {
            "all classes": summarise(every[:, i]),
            **{name: float(np.mean(np.array(r)[:, i])) for name, r in rows.items()},
        }
        for i, t in enumerate(THRESHOLDS_GEV)
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=100, help="matched jets per class and probe")
    parser.add_argument("--out-json", default=str(ROOT / "scripts/results/multiplicity_probe.json"))
    args = parser.parse_args(argv)
    result = {"jets_per_class": args.jets, "particle_sets": particle_sets(args.jets),
              "pt_thresholds": pt_thresholds(args.jets)}
    Path(args.out_json).write_text(json.dumps(result, indent=1) + "\n")
    for section in ("particle_sets", "pt_thresholds"):
        for key, value in result[section].items():
            print(section, key, json.dumps(value))
    return result


if __name__ == "__main__":
    main()
