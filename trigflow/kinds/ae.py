"""Spine layer: the autoencoder anomaly trigger recipe — 57 L1 object features → one anomaly score on chip.

* data: the anomaly set (MET, 4 e, 4 μ, 10 jets × (pT, η, φ)); training and validation use background only, the
  test set is held-out background plus every signal event (``Prepared.y_test`` = process id, 0 = background).
* preprocessing: every feature (pT linear in GeV, η, φ) is standardised on the training background and put on
  the firmware input grid of ``QuantSpec``; the pT tails saturate at the grid's ±2^input_integer (docs/ae.md
  compares this with log(1 + pT)).
* models: ``model.arch = "ae"`` (dense autoencoder, score = reconstruction error Σ(x − x̂)²) or ``"vae"``
  (variational, score = Σ μ² of the latent means, as CMS AXOL1TL); the deployed QKeras model computes the score,
  so the firmware outputs one number per event and the proof compares that number bit for bit.
* report: AUC per signal for float / QKeras / firmware, signal efficiency at trigger rates (FPR 1e-5 and
  2.5e-5 = 1 kHz of 40 MHz), score distributions and the trigger threshold file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.kinds import Arrays, Prepared, Recipe, Trained, checked_arch

BUNCH_CROSSING_HZ = 40e6  # LHC collision rate seen by the Level-1 trigger
DEFAULT_RATE_HZ = 1e3  # a typical anomaly-trigger budget: 1 kHz of 40 MHz
FPR_POINTS = {"1e-5": 1e-5, "2.5e-5": 2.5e-5}  # background efficiencies a trigger can afford
RESOLVED_MIN_PASSING = 10  # a rate is measured (±32 %) when ≥ 10 background test events are expected to pass
VAE_BETA = 0.05  # KL weight relative to the per-feature mean squared error (see docs/ae.md)
LATENCY_BUDGET_NS = 100.0  # 4 bunch crossings; see docs/ae.md for the AE score choice
PT_TRANSFORM = "linear"  # "log": log(1 + pT/GeV); linear scored better on the embedded data (docs/ae.md)


# --- configuration helpers (keys that config.py may grow; defaults here) ----------------------------------------
def trigger_rates(config: RunConfig) -> tuple[float, float]:
    """(trigger rate, collision rate) in Hz: ``config.trigger.rate_hz`` / ``collision_rate_hz`` when present."""
    trigger = getattr(config, "trigger", None)
    return float(getattr(trigger, "rate_hz", DEFAULT_RATE_HZ)), float(
        getattr(trigger, "collision_rate_hz", BUNCH_CROSSING_HZ)
    )


def vae_beta(config: RunConfig) -> float:
    return float(getattr(config.model, "beta", VAE_BETA))


def _arch(config: RunConfig) -> str:
    from trigflow.models.autoencoder import ARCHS

    return checked_arch(config, "ae", ARCHS)


# --- stage 1: data -------------------------------------------------------------------------------------------
def load(config: RunConfig) -> Arrays:
    from trigflow.data.anomaly import load_anomaly
    from trigflow.data.public import load_adc2021_folder

    _arch(config)  # fail before reading data
    limit = config.data.max_samples
    if config.data.path is not None and Path(config.data.path).is_dir():  # the public ADC2021 files
        data = load_adc2021_folder(config.data.path, max_events=limit)  # max_samples caps each file
        x, y = data.x, data.process.astype(np.int64)
    else:
        data = load_anomaly(config.data.path)
        x, y = data.x, data.process.astype(np.int64)
        if limit is not None:  # the file is mixed in blocks: a leading slice keeps its composition
            x, y = x[:limit], y[:limit]
    source = config.data.path or "embedded anomaly events (Pythia8 + FastJet, ADC2021 layout)"
    extra = {"attrs": data.attrs}
    weight = getattr(data, "weight", None)  # per-event weights of a weighted sample; none: weight 1
    if weight is not None:
        extra["weight"] = np.asarray(weight, np.float64)[: len(x)]
    return Arrays(x, y, tuple(data.names), tuple(data.processes), str(source), extra=extra)


def pt_columns(feature_names: tuple[str, ...]) -> np.ndarray:
    return np.array([name.endswith("_pt") for name in feature_names])


def transform(x: np.ndarray, pt_mask: np.ndarray, how: str | None = None) -> np.ndarray:
    """The per-feature transform before standardisation: ``"linear"`` (pT in GeV as is) or ``"log"``
    (pT → log(1 + pT/GeV), zero-padded objects stay 0); η, φ unchanged. See docs/ae.md for the choice."""
    how = how or PT_TRANSFORM
    out = np.array(x, dtype=np.float32, copy=True)
    if how == "log":
        out[:, pt_mask] = np.log1p(np.maximum(out[:, pt_mask], 0.0))
    elif how != "linear":
        raise TrigflowError(f"unknown pT transform {how!r}: choose linear or log")
    return out


def split_background(y: np.ndarray, *, test_fraction: float, val_fraction: float, seed: int):
    """Indices (train, val, test): train/val are background only; test = held-out background + every signal."""
    background = np.flatnonzero(y == 0)
    order = np.random.default_rng(seed).permutation(background)
    n_test = int(round(test_fraction * len(background)))
    n_val = int(round(val_fraction * len(background)))
    test_bg, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    test = np.sort(np.concatenate([test_bg, np.flatnonzero(y != 0)]))
    return np.sort(train), np.sort(val), test


def prepare(arrays: Arrays, config: RunConfig) -> Prepared:
    from trigflow.data.prepare import Standardizer, check_finite
    from trigflow.quantize.presets import QuantSpec

    check_finite(arrays.x, f"data ({arrays.source})")
    y = np.asarray(arrays.y)
    n_bg = int(np.sum(y == 0))
    if n_bg == 0 or n_bg == len(y):
        raise TrigflowError(
            f"data ({arrays.source}) has {n_bg} background and {len(y) - n_bg} signal events; "
            "the anomaly trigger needs both (process 0 = background)"
        )
    d = config.data
    train, val, test = split_background(y, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=d.seed)
    if len(test) < config.verify.min_samples:
        raise TrigflowError(
            f"only {len(test)} test events, the proof needs ≥ {config.verify.min_samples}; "
            "use more data or lower verify.min_samples"
        )
    if len(train) == 0 or len(val) == 0:
        raise TrigflowError(f"{len(train)} training / {len(val)} validation background events: use more data")
    pt_mask = pt_columns(arrays.feature_names)
    standardize = Standardizer.fit(transform(arrays.x[train], pt_mask))
    spec = QuantSpec.from_config(config.quant)

    def to_grid(idx: np.ndarray) -> np.ndarray:
        return spec.quantize_input(standardize(transform(arrays.x[idx], pt_mask)))

    counts = {name: int(np.sum(y[test] == i)) for i, name in enumerate(arrays.class_names)}
    preprocessing = {
        "features": list(arrays.feature_names),
        "classes": list(arrays.class_names),
        "pt_transform": {"function": PT_TRANSFORM, "columns": [n for n, m in zip(arrays.feature_names, pt_mask) if m]},
        "order": "transform pT, then standardise (x − mean) / scale, then the input quantizer",
        "standardize": standardize.to_dict(),
        "input_quantizer": {"bits": spec.input_bits, "integer": spec.input_integer, "type": spec.input_type},
        "split": {"train_background": len(train), "val_background": len(val), "test": counts},
    }
    if arrays.extra.get("weight") is not None:
        preprocessing["training_weights"] = "the file's per-event weights, scaled to mean 1 per split"
    zeros = np.zeros
    return Prepared(
        to_grid(train),
        zeros(len(train), np.int64),
        to_grid(val),
        zeros(len(val), np.int64),
        to_grid(test),
        y[test],
        preprocessing,
        tuple(arrays.class_names),
        extra=_split_weights(arrays.extra.get("weight"), train, val, test),
    )


def _split_weights(weight: np.ndarray | None, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> dict:
    """A weighted file's weights per split: ``w_test`` for every figure; ``w_train`` / ``w_val`` (scaled to
    mean 1, so the loss scale and learning rate stay those of an unweighted run) for the reconstruction loss,
    so the AE learns the weighted background mix. The VAE's KL term stays unweighted."""
    if weight is None:
        return {}
    w = np.asarray(weight, np.float64)
    train_w, val_w = w[train], w[val]
    if not (train_w.sum() > 0 and val_w.sum() > 0):
        raise TrigflowError("the training or validation background has weight sum 0; check the file's weights")
    return {"w_test": w[test], "w_train": train_w / train_w.mean(), "w_val": val_w / val_w.mean()}


# --- stage 2: models -----------------------------------------------------------------------------------------
def build(prepared: Prepared, config: RunConfig, quantized: bool):
    from trigflow.models.autoencoder import build_autoencoder
    from trigflow.quantize.presets import QuantSpec

    return build_autoencoder(
        prepared.x_train.shape[1],
        config.model.hidden,
        config.model.latent,
        arch=_arch(config),
        quantized=quantized,
        spec=QuantSpec.from_config(config.quant),
        beta=vae_beta(config),
        seed=config.seed,
    )


def train(recipe: Recipe, prepared: Prepared, config: RunConfig, ui) -> Trained:
    """Both twins learn to reconstruct background (MSE, + β·KL for the VAE); the score models go to firmware."""
    from trigflow.models.autoencoder import build_deployed
    from trigflow.quantize.train import train_twins
    from trigflow.quantize.presets import QuantSpec

    trained = train_twins(recipe, prepared, config, ui, targets="inputs")
    spec = QuantSpec.from_config(config.quant)
    trained.deploy_qmodel = build_deployed(trained.qmodel, quantized=True, spec=spec)
    trained.deploy_float_model = build_deployed(trained.float_model, quantized=False, spec=spec)
    return trained


# --- stage 4: metrics ----------------------------------------------------------------------------------------
# Every figure takes per-event weights (cross-section × filter efficiency of a weighted sample); None means
# weight 1 (the public ADC2021 files carry none) and reproduces the unweighted figures exactly.
def _weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """Checked float64 weights, or None when absent or all exactly 1 (the unweighted fast path)."""
    if weights is None:
        return None
    w = np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n:
        raise TrigflowError(f"{len(w)} event weights for {n} events; give one weight per event")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise TrigflowError("event weights must be finite and ≥ 0 (negative-weight events are not supported)")
    if w.sum() <= 0:
        raise TrigflowError("event weights sum to 0; nothing to measure a rate with")
    return None if np.all(w == 1) else w


def effective_count(weights: np.ndarray | None, n: int) -> float:
    """Kish effective number of events: ``n`` unweighted, (Σw)² / Σw² weighted (0 when every weight is 0)."""
    if weights is None:
        return float(n)
    w = np.asarray(weights, np.float64)
    sum_w2 = float(np.sum(w**2))
    return float(w.sum() ** 2 / sum_w2) if sum_w2 > 0 else 0.0


def threshold_at_fpr(background: np.ndarray, fpr: float, weights: np.ndarray | None = None) -> float:
    """The lowest score threshold whose background pass fraction (score > threshold) is at most ``fpr``.

    Unweighted, with ``k = ⌊fpr·N⌋`` this is the (k+1)-th highest background score; when ``fpr·N < 1`` it is
    the highest background score (no background event passes), i.e. the rate is not resolved by ``N`` events.
    Weighted, the pass fraction is the weight above the threshold over the total weight.
    """
    s = np.asarray(background, np.float64).reshape(-1)
    if len(s) == 0:
        raise ValueError("no background scores")
    w = _weights(weights, len(s))
    if w is None:
        s = np.sort(s)[::-1]
        k = int(np.floor(fpr * len(s) + 1e-9))
        return float(s[min(k, len(s) - 1)])
    values, group = np.unique(s, return_inverse=True)
    w_value = np.bincount(group, weights=w, minlength=len(values))[::-1]  # descending score values
    above = np.cumsum(w_value) - w_value  # weight strictly above each value
    allowed = fpr * w.sum() * (1 + 1e-12)
    last = int(np.searchsorted(above, allowed, side="right")) - 1  # `above` is non-decreasing
    return float(values[::-1][max(last, 0)])


def fpr_upper_limit(passing: float, n: float, cl: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper limit on a background efficiency with ``passing`` of ``n`` events
    (effective counts for weighted events)."""
    from scipy.stats import beta

    return 1.0 if passing >= n else float(beta.ppf(cl, passing + 1, n - passing))


def efficiency(
    scores: np.ndarray, threshold: float, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """(fraction of the weight with score > threshold, its statistical uncertainty): binomial √(ε(1−ε)/N)
    unweighted; weighted √((1−ε)² Σ_pass w² + ε² Σ_fail w²) / Σ w (which is the binomial one for w = 1)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(s) == 0:
        return float("nan"), float("nan")
    w = np.ones(len(s)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    passed = s > threshold
    total = w.sum()
    eff = float(w[passed].sum() / total)
    variance = ((1 - eff) ** 2 * np.sum(w[passed] ** 2) + eff**2 * np.sum(w[~passed] ** 2)) / total**2
    return eff, float(np.sqrt(variance))


def rate_point(
    background: np.ndarray,
    fpr: float,
    weights: np.ndarray | None = None,
    *,
    collision_hz: float = BUNCH_CROSSING_HZ,
) -> dict[str, Any]:
    """Threshold at ``fpr`` and what the background events (weighted: their effective number) can say."""
    background = np.asarray(background, np.float64).reshape(-1)
    n = len(background)
    w = _weights(weights, n)
    threshold = threshold_at_fpr(background, fpr, w)
    passing = int(np.sum(background > threshold))
    measured, error = efficiency(background, threshold, w)
    n_eff = effective_count(w, n)
    upper = fpr_upper_limit(passing, n) if w is None else fpr_upper_limit(measured * n_eff, n_eff)
    point = {
        "fpr": fpr,
        "rate_hz": fpr * collision_hz,
        "threshold": threshold,
        "background_events": n,
        "background_passing": passing,
        "expected_background_passing": fpr * n_eff,
        "fpr_measured": measured,
        "fpr_uncertainty": error,
        "fpr_upper_95": upper,
        "resolved": fpr * n_eff >= RESOLVED_MIN_PASSING,
        "background_needed": int(np.ceil(RESOLVED_MIN_PASSING / fpr)),
        "weighted": w is not None,
    }
    if w is not None:
        point |= {"background_weight_sum": float(w.sum()), "effective_background_events": n_eff}
    return point


def _scores(outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(outputs[name], np.float64).reshape(len(outputs[name]), -1)[:, 0]


def _auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is None:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(positive, scores))
    from trigflow.proof.compare import weighted_auc

    return weighted_auc(positive, scores, weights)


def weights_of_test_events(prepared: Prepared) -> np.ndarray | None:
    """Per-event weights of the test events (``prepared.extra["w_test"]``), None when all are 1."""
    return _weights(prepared.extra.get("w_test"), len(prepared.y_test))


def evaluate(outputs: dict[str, np.ndarray], prepared: Prepared) -> dict[str, Any]:
    """AUC (background vs each signal) for float / QKeras / firmware; signal efficiency at trigger rates; all
    with the events' weights when the data carry them."""
    y = np.asarray(prepared.y_test)
    w = weights_of_test_events(prepared)
    w_of = (lambda sel: None) if w is None else (lambda sel: w[sel])
    bg = y == 0
    n_bg = int(bg.sum())
    models = ("float", "qkeras", "firmware")
    scores = {m: _scores(outputs, m) for m in models}
    signals = [(i, name) for i, name in enumerate(prepared.class_names) if i > 0 and np.any(y == i)]
    auc: dict[str, dict[str, float]] = {}
    for i, name in signals:
        sel = bg | (y == i)
        auc[name] = {m: _auc(y[sel] == i, scores[m][sel], w_of(sel)) for m in models}
    points = {key: rate_point(scores["firmware"][bg], fpr, w_of(bg)) for key, fpr in FPR_POINTS.items()}
    tpr_err = {
        name: {
            key: efficiency(scores["firmware"][y == i], p["threshold"], w_of(y == i))
            for key, p in points.items()
        }
        for i, name in signals
    }
    tpr = {name: {key: v[0] for key, v in by_key.items()} for name, by_key in tpr_err.items()}
    tpr_all = {
        m: {
            name: {
                key: efficiency(
                    scores[m][y == i], threshold_at_fpr(scores[m][bg], fpr, w_of(bg)), w_of(y == i)
                )[0]
                for key, fpr in FPR_POINTS.items()
            }
            for i, name in signals
        }
        for m in models
    }
    n_eff = points[next(iter(points))].get("effective_background_events", n_bg)
    unresolved = [key for key, p in points.items() if not p["resolved"]]
    smallest = f"1/{n_bg} = {1 / n_bg:.2g}" if w is None else f"1/{n_eff:,.0f} = {1 / n_eff:.2g}"
    limit = (
        f"{n_bg} background test events"
        + (f" (weighted: {n_eff:,.0f} effective)" if w is not None else "")
        + f": a background efficiency of {smallest} is the smallest that "
        f"one event can measure; FPR {', '.join(FPR_POINTS)} need 1/FPR = "
        f"{', '.join(f'{1 / f:,.0f}' for f in FPR_POINTS.values())} events for one expected passing event and "
        f"{RESOLVED_MIN_PASSING}× that for a ±{100 / np.sqrt(RESOLVED_MIN_PASSING):.0f} % rate. "
    )
    if unresolved:
        limit += (
            f"At FPR {', '.join(unresolved)} the threshold is the highest background score (no background test "
            "event passes): the signal efficiency there is that of a threshold whose true FPR is only bounded "
            f"(95 % CL upper limit {points[unresolved[0]]['fpr_upper_95']:.2g}), i.e. an optimistic estimate."
        )
    return {
        "auc": auc,
        "tpr_at_fpr": tpr,
        "tpr_at_fpr_uncertainty": {
            name: {key: v[1] for key, v in by_key.items()} for name, by_key in tpr_err.items()
        },
        "tpr_at_fpr_by_model": tpr_all,
        "rate_points": points,
        "background_test_events": n_bg,
        "signal_test_events": {name: int(np.sum(y == i)) for i, name in signals},
        "weighted": w is not None,
        "statistical_limit": limit,
        "firmware_auc_equals_qkeras": all(a["firmware"] == a["qkeras"] for a in auc.values()),
    }


# --- firmware score type and the trigger threshold file ---------------------------------------------------------
def firmware_output_type(project: Path, project_name: str) -> str | None:
    """The ap_fixed type of the firmware output, read from the written project (None if not found)."""
    try:
        header = (project / "firmware" / f"{project_name}.h").read_text()
        defines = (project / "firmware" / "defines.h").read_text()
    except OSError:
        return None
    outs = re.findall(r"(\w+)\s+\w+\[\s*1\s*\]", header)
    if not outs:
        return None
    match = re.search(rf"typedef\s+(.+?)\s+{re.escape(outs[-1])}\s*;", defines)
    return match.group(1) if match else None


def trigger_threshold(
    background: np.ndarray,
    rate_hz: float,
    fractional_bits: int,
    *,
    collision_hz: float = BUNCH_CROSSING_HZ,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Threshold for ``rate_hz`` (fire when score > threshold), as a value and as the firmware's integer; the
    rate is the weighted background efficiency × ``collision_hz`` when ``weights`` are given."""
    fpr = rate_hz / collision_hz
    point = rate_point(background, fpr, weights, collision_hz=collision_hz)
    scaled = point["threshold"] * 2.0**fractional_bits
    if scaled != np.round(scaled):
        raise ValueError(f"threshold {point['threshold']} is not on the firmware grid 2^-{fractional_bits}")
    return {
        "rate_hz": rate_hz,
        "collision_rate_hz": collision_hz,
        **{k: v for k, v in point.items() if k != "rate_hz"},
        "threshold_int": int(np.round(scaled)),
        "fractional_bits": fractional_bits,
        "condition": "fire when score > threshold (equivalently score_int > threshold_int, "
        f"score_int = score · 2^{fractional_bits})",
    }


def latency_verdict(latency_ns: float | None, score: str) -> dict[str, Any]:
    """Does the deployed score fit the algorithm latency budget? (the AE's reconstruction error is the larger)"""
    out: dict[str, Any] = {"latency_budget_ns": LATENCY_BUDGET_NS}
    if latency_ns is None:
        return out
    fits = latency_ns <= LATENCY_BUDGET_NS
    out["fits_latency_budget"] = bool(fits)
    if score == "reconstruction":
        out["why"] = (
            f"AE score = reconstruction error: encoder + decoder + Σ(x − x̂)² is estimated at {latency_ns:g} ns, "
            + (f"within the {LATENCY_BUDGET_NS:g} ns budget" if fits else f"over the {LATENCY_BUDGET_NS:g} ns budget: "
               "deploy the encoder-only latent score instead (model.arch=vae)")
        )
    else:
        out["why"] = f"VAE score = Σμ² of the encoder means (no decoder on chip), estimated at {latency_ns:g} ns"
    return out


def write_extras(report: dict, outputs: dict[str, np.ndarray], prepared: Prepared, config: RunConfig, out: Path) -> None:
    from trigflow.fsio import write_text
    from trigflow.models.autoencoder import default_score, format_summary, score_format
    from trigflow.quantize.fixed import FixedType
    from trigflow.quantize.presets import QuantSpec

    arch = _arch(config)
    spec = QuantSpec.from_config(config.quant)
    score = default_score(arch)
    fmt = score_format(prepared.x_test.shape[1], config.model.latent, spec, score)
    project = config.project_path.resolve()
    fw_type = firmware_output_type(project, config.firmware.project_name)
    is_fixed = bool(fw_type) and re.match(r"\s*ap_u?fixed<", fw_type) is not None
    frac = FixedType.parse(fw_type).frac if is_fixed else fmt.score.frac
    y = np.asarray(prepared.y_test)
    fw = _scores(outputs, "firmware")
    rate_hz, collision_hz = trigger_rates(config)
    w = weights_of_test_events(prepared)
    w_of = (lambda sel: None) if w is None else (lambda sel: w[sel])
    threshold = trigger_threshold(fw[y == 0], rate_hz, frac, collision_hz=collision_hz, weights=w_of(y == 0))
    tpr = {
        name: efficiency(fw[y == i], threshold["threshold"], w_of(y == i))
        for i, name in enumerate(prepared.class_names)
        if i > 0 and np.any(y == i)
    }
    threshold["tpr"] = {name: v[0] for name, v in tpr.items()}
    threshold["tpr_uncertainty"] = {name: v[1] for name, v in tpr.items()}
    score_info = {
        "arch": arch,
        "score": "sum of squared latent means Σμ²" if score == "latent" else "reconstruction error Σ(x − x̂)²",
        "qkeras_format": format_summary(fmt.score),
        "term_format": format_summary(fmt.term),
        "firmware_output_type": fw_type,
        **latency_verdict(report.get("latency_ns"), score),
    }
    content = {
        "kind": "ae",
        **score_info,
        "threshold": threshold,
        "preprocessing": f"see preprocessing.json in the run folder: pT {PT_TRANSFORM}, standardise on background, "
        f"input grid {spec.input_type}",
        "project_dir": str(project),
        "run_dir": report.get("run_dir"),
    }
    text = json.dumps(content, indent=2) + "\n"
    write_text(out / "trigger_threshold.json", text)
    write_text(project / "trigger_threshold.json", text)
    report["score"] = score_info
    report["trigger_threshold"] = threshold
    write_plots(outputs, prepared, threshold, out)


def write_plots(outputs: dict[str, np.ndarray], prepared: Prepared, threshold: dict, out: Path) -> list[Path]:
    """Score distributions per process and ROC curves per signal, in the HEP style of the other run plots."""
    from trigflow.report import hep_style

    with hep_style():
        return _draw_plots(outputs, prepared, threshold, out)


def _draw_plots(outputs: dict[str, np.ndarray], prepared: Prepared, threshold: dict, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from trigflow.report import save_figure

    y = np.asarray(prepared.y_test)
    w = weights_of_test_events(prepared)
    names = prepared.class_names
    fw = _scores(outputs, "firmware")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paths = []

    fig, ax = plt.subplots(figsize=(10, 7))
    positive = fw[fw > 0]
    lo = max(positive.min(), 1e-3) if len(positive) else 1e-3
    bins = np.geomspace(lo, max(fw.max(), lo * 10), 80)
    for i, name in enumerate(names):
        s = fw[y == i]
        if len(s):  # weighted files: each process's histogram with its events' weights
            ax.hist(np.clip(s, lo, None), bins=bins, density=True, histtype="step", lw=1.5, color=colors[i % len(colors)],
                    label=f"{name} ({len(s)})", weights=None if w is None else w[y == i])
    ax.axvline(threshold["threshold"], color="k", ls="--", lw=1, label=f"threshold {threshold['rate_hz']:.0f} Hz")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly score (firmware)")
    ax.set_ylabel("density (normalised per process)")
    ax.legend(fontsize=13)
    paths.append(save_figure(fig, out / "score_distributions.png", dpi=120))

    fig, ax = plt.subplots(figsize=(10, 7))
    styles = {"float": ":", "qkeras": "--", "firmware": "-"}
    bg = y == 0
    for i, name in enumerate(names):
        if i == 0 or not np.any(y == i):
            continue
        sel = bg | (y == i)
        for model, style in styles.items():
            fpr, tpr, _ = roc_curve(
                y[sel] == i, _scores(outputs, model)[sel], sample_weight=None if w is None else w[sel]
            )
            ax.plot(np.maximum(fpr, 1e-6), tpr, style, color=colors[i % len(colors)],
                    label=f"{name}" if model == "firmware" else None)
    for fpr in FPR_POINTS.values():
        ax.axvline(fpr, color="grey", lw=0.8)
    n_bg = effective_count(None if w is None else w[bg], int(bg.sum()))
    label = "1 / N background" if w is None else "1 / N effective background"
    ax.axvline(1 / max(n_bg, 1.0), color="r", lw=0.8, ls="--", label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-6, 1)
    ax.set_xlabel("background efficiency (FPR)")
    ax.set_ylabel("signal efficiency (TPR)")
    ax.set_title("ROC: float (:), QKeras (--), firmware (—)")
    ax.legend(fontsize=13)
    paths.append(save_figure(fig, out / "roc.png", dpi=120))
    return paths


RECIPE = Recipe(kind="ae", load=load, build=build, prepare=prepare, train=train, evaluate=evaluate, write_extras=write_extras)
