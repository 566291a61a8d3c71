"""Data layer (measurement script): cost of a lepton-enriched, weighted QCD sample for the anomaly background
(issue #20), measured with small Pythia runs and trigflow's own reconstruction (docs/ae.md, "Lepton-enriched
weighted QCD: measured cost").

For each recipe (Pythia process + optional forced semileptonic decays) and pT-hat bin, Pythia runs for a fixed
wall time in this process. Every event is first vetoed at generator level (no status-1 e/mu with pT > 20 GeV
-> dropped before FastJet; lossless for a 23 GeV cut, the e/mu resolution at 20 GeV is 2-3 %;
``trigflow.data.anomaly.generator_lepton``). The survivors go through ``trigflow.data.anomaly.reconstruct``
three times, with the ``adc2021`` selection (the ADC2021 filter: the leading electron or muon, after
trigflow's object cuts |eta| < 3.0 / 2.1, has pT > 23 GeV; no jet leg) and its isolation cut set to 0.15
(trigflow), 0.45 (ADC2021's folder name, the selection's own) and no isolation. ``generate_anomaly(...,
selection="adc2021")`` makes files with the filter_b recipe.

Weight of a passing event = sigmaGen / N_generated x (for forced recipes) the product, over every forced
hadron that decayed in the event, of the branching fraction of the channels left open. That product is exact
for events in which *all* forced hadrons decay semileptonically; events where only one of them does are not
in a forced sample, so a forced recipe's weighted cross-section is a lower bound (compare with the unforced
recipes in the same bin).

Usage::

    python scripts/weighted_qcd_probe.py [--seconds 40]
        [--recipes forced_b forced_bc filter_b filter_hf filter_all w_lnu]
        [--bins 20:40 40:80 80:0] [--seed 1]        # writes scripts/results/weighted_qcd_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RECIPES", "main", "poisson_interval", "probe", "summarise"]

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "scripts" / "results" / "weighted_qcd_probe.json"

B_HADRONS = (511, 521, 531, 541, 5122, 5132, 5232, 5332)
C_HADRONS = (411, 421, 431, 4122, 4132, 4232, 4332)
LEPTONS = (11, 13)
ISOLATIONS: dict[str, float] = {"iso_0.15": 0.15, "iso_0.45": 0.45, "no_iso": math.inf}
MB_TO_PB = 1e9

RECIPES: dict[str, dict[str, Any]] = {
    "forced_b": {
        "description": "HardQCD:hardbbbar, B hadrons forced to channels with an e/mu",
        "settings": ("HardQCD:hardbbbar = on",),
        "forced": B_HADRONS,
    },
    "forced_bc": {
        "description": "HardQCD:hardbbbar + hardccbar, B and C hadrons forced to channels with an e/mu",
        "settings": ("HardQCD:hardbbbar = on", "HardQCD:hardccbar = on"),
        "forced": B_HADRONS + C_HADRONS,
    },
    "filter_b": {
        "description": "HardQCD:hardbbbar, natural decays, generator-level e/mu filter (forced_b unforced)",
        "settings": ("HardQCD:hardbbbar = on",),
        "forced": (),
    },
    "filter_hf": {
        "description": "HardQCD:hardbbbar + hardccbar, natural decays, generator-level e/mu filter",
        "settings": ("HardQCD:hardbbbar = on", "HardQCD:hardccbar = on"),
        "forced": (),
    },
    "filter_all": {
        "description": "HardQCD:all (the embedded qcd process), natural decays, generator-level e/mu filter",
        "settings": ("HardQCD:all = on",),
        "forced": (),
    },
    # reference, not QCD: the embedded w_lnu component (no pT-hat bins), to compare sigma after the filter
    "w_lnu": {
        "description": "W -> l nu as trigflow.data.anomaly's w_lnu component (reference; bins ignored)",
        "settings": ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"),
        "forced": (),
    },
}


def poisson_interval(n: int) -> tuple[float, float]:
    """Central 68 % (Garwood) interval of a Poisson mean given n observed counts."""
    from scipy.stats import chi2

    lo = 0.0 if n == 0 else float(chi2.ppf(0.16, 2 * n) / 2)
    return lo, float(chi2.ppf(0.84, 2 * n + 2) / 2)


def _open_fraction(pythia: Any, pid: int) -> float:
    """Branching fraction of the decay channels of ``pid`` with an e or mu among the products."""
    entry = pythia.particleData.particleDataEntryPtr(pid)
    total = open_br = 0.0
    for i in range(entry.sizeChannels()):
        ch = entry.channel(i)
        br = ch.bRatio()
        total += br
        if any(abs(ch.product(j)) in LEPTONS for j in range(ch.multiplicity())):
            open_br += br
    return open_br / total if total > 0 else 0.0


def _pythia(settings: tuple[str, ...], forced: tuple[int, ...], seed: int) -> tuple[Any, dict[int, float]]:
    import pythia8mc

    from trigflow.data.anomaly import COMMON_SETTINGS

    pythia = pythia8mc.Pythia("", False)
    open_br = {pid: _open_fraction(pythia, pid) for pid in forced}
    open_br = {pid: br for pid, br in open_br.items() if br > 0}  # species without e/mu channels stay natural
    lines = list(COMMON_SETTINGS) + list(settings) + [f"Random:seed = {seed}"]
    for pid in open_br:
        lines += [f"{pid}:onMode = off", f"{pid}:onIfAny = {' '.join(map(str, LEPTONS))}"]
    for line in lines:
        if not pythia.readString(line):
            raise SystemExit(f"Pythia8 rejected {line!r}")
    if not pythia.init():
        raise SystemExit(f"Pythia8 failed to initialise with {settings}")
    return pythia, open_br


def _forced_weights(prt: Any, open_br: dict[int, float]) -> np.ndarray:
    """Per event: product of the open fractions of the forced hadrons that decayed (B0 <-> B0bar mixing steps,
    a hadron 'decaying' into its own antiparticle, are not counted)."""
    import awkward as ak

    n = len(prt)
    if not open_br:
        return np.ones(n)
    ids = ak.to_numpy(ak.flatten(prt.id))
    status = ak.to_numpy(ak.flatten(prt.status))
    d1 = ak.to_numpy(ak.flatten(prt.daughter1))
    counts = ak.to_numpy(ak.num(prt.id))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    event = np.repeat(np.arange(n), counts)
    aid = np.abs(ids)
    candidate = np.isin(aid, list(open_br)) & (status < 0) & (d1 > 0)
    idx = np.flatnonzero(candidate)
    dau = np.clip(offsets[event[idx]] + d1[idx], 0, len(ids) - 1)
    decayed = idx[np.abs(ids[dau]) != aid[idx]]
    log_w = np.zeros(n)
    lut = {pid: math.log(br) for pid, br in open_br.items()}
    np.add.at(log_w, event[decayed], np.array([lut[a] for a in aid[decayed]]))
    return np.exp(log_w)


def probe(recipe: str, bin_gev: tuple[float, float], seconds: float, seed: int, batch: int = 500) -> dict:
    """Run one recipe in one pT-hat bin for ``seconds`` of wall time; counts, weights and timings."""
    from dataclasses import replace

    import trigflow.data.anomaly as anomaly

    anomaly._silence_fastjet()
    spec = RECIPES[recipe]
    lo, hi = bin_gev
    settings = tuple(spec["settings"])
    if recipe != "w_lnu":
        settings += (f"PhaseSpace:pTHatMin = {lo}", f"PhaseSpace:pTHatMax = {hi if hi else -1}")
    pythia, open_br = _pythia(settings, tuple(spec["forced"]), seed)
    rngs = {k: np.random.default_rng([seed, i]) for i, k in enumerate(ISOLATIONS)}
    weights: dict[str, list[np.ndarray]] = {k: [] for k in ISOLATIONS}
    n_gen = n_gen_lepton = 0
    t_pythia = t_reco = 0.0
    selections = {key: replace(anomaly.ADC2021, iso_max=iso) for key, iso in ISOLATIONS.items()}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        events = pythia.nextBatch(batch, "skip")
        t1 = time.perf_counter()
        t_pythia += t1 - t0
        n_gen += len(events)
        if len(events) == 0:
            continue
        prt = events.prt[anomaly.generator_lepton(events.prt, anomaly.GEN_LEPTON_VETO_PT)]
        n_gen_lepton += len(prt)
        if len(prt):
            w = _forced_weights(prt, open_br)
            for key, selection in selections.items():
                _, passed = anomaly.reconstruct(prt, rngs[key], selection)
                weights[key].append(w[passed])
        t_reco += time.perf_counter() - t1
    info = pythia.infoPython()
    sigma_pb = info.sigmaGen() * MB_TO_PB
    core_s = t_pythia + t_reco
    out: dict[str, Any] = {
        "recipe": recipe,
        "pthat_gev": [lo, hi if hi else None],
        "settings": list(settings),
        "forced_open_fraction": {str(k): round(v, 5) for k, v in open_br.items()},
        "n_generated": n_gen,
        "n_gen_lepton_pt20": n_gen_lepton,
        "sigma_gen_pb": sigma_pb,
        "sigma_gen_err_pb": info.sigmaErr() * MB_TO_PB,
        "pythia_seconds": round(t_pythia, 2),
        "veto_and_reco_seconds": round(t_reco, 2),
        "pythia_events_per_s": round(n_gen / t_pythia, 1) if t_pythia else None,
        "core_seconds": round(core_s, 2),
    }
    for key in ISOLATIONS:
        w = np.concatenate(weights[key]) if weights[key] else np.zeros(0)
        n = len(w)
        lo68, hi68 = poisson_interval(n)
        unit = sigma_pb / n_gen if n_gen else 0.0  # pb per generated event
        sum_w, sum_w2 = float(w.sum()), float((w**2).sum())
        n_eff = sum_w**2 / sum_w2 if sum_w2 > 0 else 0.0
        out[key] = {
            "n_pass": n,
            "n_pass_68cl": [round(lo68, 2), round(hi68, 2)],
            "pass_fraction": n / n_gen if n_gen else 0.0,
            # weighted cross-section after the filter; stat. error from the weights (sqrt(sum w^2))
            "sigma_pass_pb": unit * sum_w,
            "sigma_pass_err_pb": unit * math.sqrt(sum_w2) if n else None,
            "sigma_pass_68cl_upper_pb": unit * hi68 * (float(w.mean()) if n else 1.0),
            "mean_weight_pb": unit * float(w.mean()) if n else None,
            "weight_rms_over_mean": float(w.std() / w.mean()) if n else None,
            "n_eff": n_eff,
            "core_s_per_pass": core_s / n if n else None,
            "core_s_per_pass_68cl_upper": core_s / lo68 if lo68 > 0 else None,
            "core_s_per_eff_event": core_s / n_eff if n_eff else None,
        }
    return out


def summarise(runs: list[dict], n_target: int) -> dict:
    """Per recipe and isolation: bins with passing events combined with the cost-optimal allocation.

    With bin cross-sections s_b (after the filter) and costs c_b (core-s per effective event), n_b events in
    bin b give N_eff = (sum s)^2 / sum(s_b^2 / n_b); the cheapest allocation (n_b ~ s_b / sqrt(c_b)) costs
    N_eff x (sum_b f_b sqrt(c_b))^2 core-s, f_b = s_b / sum s."""
    out: dict[str, Any] = {}
    for recipe in dict.fromkeys(r["recipe"] for r in runs if r["recipe"] != "w_lnu"):
        rows = [r for r in runs if r["recipe"] == recipe]
        for key in ISOLATIONS:
            seen = [r for r in rows if r[key]["n_pass"] > 0]
            empty = [r["pthat_gev"] for r in rows if r[key]["n_pass"] == 0]
            total = sum(r[key]["sigma_pass_pb"] for r in seen)
            entry: dict[str, Any] = {"bins_without_pass": empty}
            if total > 0:
                share = {str(r["pthat_gev"]): r[key]["sigma_pass_pb"] / total for r in seen}
                cost = {str(r["pthat_gev"]): r[key]["core_s_per_eff_event"] for r in seen}
                root = sum(share[b] * math.sqrt(cost[b]) for b in share)
                entry.update({
                    "sigma_pass_pb": total,
                    "sigma_fraction_by_bin": share,
                    "core_minutes_for_n_eff": root**2 * n_target / 60,
                    "allocation_events": {
                        b: round(n_target * share[b] / math.sqrt(cost[b]) * root) for b in share
                    },
                })
            out[f"{recipe}/{key}"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument(
        "--bins", nargs="+", default=["20:40", "40:80", "80:0"], help="pT-hat bins LO:HI in GeV (HI 0 = open)"
    )
    ap.add_argument("--seconds", type=float, default=40.0, help="wall time per recipe and bin")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-target", type=int, default=20_280, help="effective QCD events (today: 20,280)")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    bins = [tuple(float(v) for v in b.split(":")) for b in args.bins]
    runs = []
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for recipe in args.recipes:
        for b in [(0.0, 0.0)] if recipe == "w_lnu" else bins:
            r = probe(recipe, b, args.seconds, args.seed)
            runs.append(r)
            print(json.dumps({k: r[k] for k in ("recipe", "pthat_gev", "n_generated", "pythia_events_per_s",
                                                 "sigma_gen_pb")} | {k: r[k]["n_pass"] for k in ISOLATIONS}),
                  flush=True)
    # keep earlier runs of other recipes / bins (the file accumulates; a rerun replaces its own rows)
    replaced = {(r["recipe"], tuple(r["pthat_gev"])) for r in runs}
    runs = [r for r in old.get("runs", []) if (r["recipe"], tuple(r["pthat_gev"])) not in replaced] + runs
    command = "python scripts/weighted_qcd_probe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "commands": old.get("commands", []) + [command],  # every run whose rows the file holds, oldest first
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"load_average_1min": round(os.getloadavg()[0], 2), "python": platform.python_version()},
        "seconds_per_run": args.seconds,
        "n_target": args.n_target,
        "runs": runs,
        "summary": summarise(runs, args.n_target),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
