"""Spine layer: design-space scans (bits × sparsity × reuse factor) run as Ray Tune trials.

Each trial is one full ``pipeline.run`` (QAT + pruning → hls4ml → C-sim → bit-exact proof → estimate) with
its own run and project folders under ``<scan>/trials/<id>/``. The trial folders are the source of truth: a
trial whose ``run/report.json`` exists is done (``resume`` skips it), a trial that raised leaves
``error.json`` (retried on resume). After the trials, the scan writes one table of all of them
(``scan.csv``, ``scan.json``), marks the Pareto front of accuracy vs estimated cost and latency, and plots it
(``pareto.png``). A trial whose firmware is not proven bit-exact stays in the table as failed and is never on
the front.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_file, write_text

DSP_LUT_WEIGHT = 100  # one DSP counted as this many LUTs in the scalar cost (≈ LUT/DSP ratio, UltraScale+)

COLUMNS = (
    "id",
    "bits",
    "sparsity",
    "reuse",
    "per_layer",
    "layer_bits",
    "status",
    "passed",
    "pareto",
    "accuracy_float",
    "accuracy_qkeras",
    "accuracy_firmware",
    "bit_exact_fraction",
    "dsp",
    "lut",
    "ff",
    "bram",
    "cost",
    "latency_cycles",
    "latency_ns",
    "parameters",
    "wall_s",
    "error",
    "run_dir",
)

PROGRESS_COLUMNS = ("proof", "accuracy_firmware", "bit_exact_fraction", "cost", "latency_cycles")


@dataclass
class ScanSpec:
    kind: str = "mlp"
    bits: tuple[int, ...] = (4, 6, 8)
    sparsity: tuple[float, ...] = (0.0, 0.5, 0.75)
    reuse: tuple[int, ...] = (1, 2, 4)
    per_layer: tuple[str, ...] = ("none",)  # "none": uniform `bits`; "sensitivity": per layer, `bits` down
    out: str | None = None  # default scans/<kind>
    config_path: str | None = None  # a RunConfig file applied to every trial
    overrides: dict[str, Any] = field(default_factory=dict)  # nested RunConfig overrides for every trial
    resume: bool = False
    force: bool = False
    address: str | None = None  # Ray cluster to join; None: local Ray
    num_cpus: int | None = None  # local Ray only; None: all cores
    cpus_per_trial: float = 1.0
    dsp_weight: float = DSP_LUT_WEIGHT

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"scans/{self.kind}").resolve()

    def trials(self) -> list[dict[str, Any]]:
        return [
            {"id": trial_id(b, s, r, p), "bits": b, "sparsity": float(s), "reuse": r, "per_layer": p}
            for b in self.bits
            for s in self.sparsity
            for r in self.reuse
            for p in self.per_layer
        ]


@dataclass
class ScanResult:
    rows: list[dict[str, Any]]
    front: list[str]
    out_dir: Path
    summary: dict[str, Any]
    ran: int  # trials run now (the rest were resumed from earlier reports)
    wall_s: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["passed"]]


def trial_id(bits: int, sparsity: float, reuse: int, per_layer: str = "none") -> str:
    """``b6_s0.75_r1``; ``…_pl`` when per-layer widths are chosen by sensitivity (``bits`` is the start)."""
    suffix = "" if per_layer == "none" else "_pl"
    return f"b{int(bits)}_s{float(sparsity):g}_r{int(reuse)}{suffix}"


def parse_list(text: str | Sequence[Any], kind: type, name: str) -> tuple[Any, ...]:
    """``"4,6,8"`` → ``(4, 6, 8)``; one-line error naming the option on a bad item."""
    items = [i.strip() for i in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = tuple(kind(i) for i in items if i != "")
    except ValueError:
        hint = f"give comma-separated {kind.__name__} values, e.g. 4,6,8"
        raise TrigflowError(f"--{name} {text!r}: {hint}") from None
    if not values:
        raise TrigflowError(f"--{name} is empty: give at least one value")
    if len(set(values)) != len(values):
        raise TrigflowError(f"--{name} {text!r} repeats a value")
    return values


# --- one trial ---------------------------------------------------------------------------------------------
def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def trial_config(spec: ScanSpec, trial: dict[str, Any]):
    """The RunConfig of one trial: the scan's base config + its bits/sparsity/reuse + its own folders."""
    from trigflow.config import load_config

    folder = spec.out_dir / "trials" / trial["id"]
    quant: dict[str, Any] = {"bits": trial["bits"], "sparsity": trial["sparsity"]}
    if trial.get("per_layer", "none") != "none":
        quant["per_layer"] = trial["per_layer"]
    point = {
        "quant": quant,
        "firmware": {"reuse_factor": trial["reuse"]},
        "out": str(folder / "run"),
        "project_dir": str(folder / "project"),
        "force": True,  # a leftover of an interrupted trial is replaced; finished trials are never rerun
    }
    return load_config(spec.kind, spec.config_path, _merge(spec.overrides, point))


def _layer_bits(report: dict[str, Any]) -> str | None:
    """The per-layer widths the run used (``6/4/4/6``), from its ``config.json``; None when uniform."""
    config = Path(report.get("run_dir") or "") / "config.json"
    try:
        bits = json.loads(config.read_text())["quant"].get("layer_bits") or []
    except (OSError, ValueError, KeyError):
        return None
    return "/".join(str(b) for b in bits) or None


def row_from_report(trial: dict[str, Any], report: dict[str, Any], dsp_weight: float) -> dict[str, Any]:
    res = report.get("resources", {})
    acc = report.get("accuracy", {})
    return {
        **{k: trial[k] for k in ("id", "bits", "sparsity", "reuse")},
        "per_layer": trial.get("per_layer", "none"),
        "layer_bits": _layer_bits(report),
        "status": "passed" if report.get("passed") else "failed",
        "passed": bool(report.get("passed")),
        "pareto": False,
        "accuracy_float": acc.get("float"),
        "accuracy_qkeras": acc.get("qkeras"),
        "accuracy_firmware": acc.get("firmware"),
        "bit_exact_fraction": report.get("bit_exact_fraction"),
        **{k: res.get(k) for k in ("dsp", "lut", "ff", "bram")},
        "cost": cost_of(res, dsp_weight),
        "latency_cycles": report.get("latency_cycles"),
        "latency_ns": report.get("latency_ns"),
        "parameters": report.get("parameters"),
        "wall_s": round(sum(report.get("timings_s", {}).values()), 1) or None,
        "error": "; ".join(report.get("failures", [])),
        "run_dir": report.get("run_dir"),
    }


def error_row(trial: dict[str, Any], message: str) -> dict[str, Any]:
    row = {c: None for c in COLUMNS}
    row.update({k: trial[k] for k in ("id", "bits", "sparsity", "reuse")})
    row["per_layer"] = trial.get("per_layer", "none")
    row.update({"status": "error", "passed": False, "pareto": False, "error": message})
    return row


def cost_of(resources: dict[str, Any], dsp_weight: float) -> float | None:
    if resources.get("lut") is None or resources.get("dsp") is None:
        return None
    return float(resources["lut"] + dsp_weight * resources["dsp"])


def run_trial(spec: ScanSpec, trial: dict[str, Any]) -> dict[str, Any]:
    """Run one trial to its table row; never raises (an exception becomes an ``error`` row + error.json)."""
    from trigflow.pipeline import run

    folder = spec.out_dir / "trials" / trial["id"]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        result = run(trial_config(spec, trial))
    except Exception as exc:  # every failure of a trial is data for the table, not the end of the scan
        message = f"{exc.__class__.__name__}: {exc}"
        write_text(
            folder / "error.json",
            json.dumps({"trial": trial, "error": message, "traceback": traceback.format_exc()}, indent=2),
        )
        return error_row(trial, message)
    (folder / "error.json").unlink(missing_ok=True)
    row = row_from_report(trial, result.report, spec.dsp_weight)
    row["wall_s"] = round(time.perf_counter() - start, 1)
    return row


def _tune_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one scan point → one reported row."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ray import tune

    spec = ScanSpec(**config["spec"])
    trial = config.get("trial") or next(t for t in spec.trials() if t["id"] == config["id"])
    row = run_trial(spec, trial)
    # Only what the progress view shows; the table is built from the trial folders, not from Tune's results.
    tune.report({"proof": row["status"], **{k: row[k] for k in PROGRESS_COLUMNS[1:]}})


# --- the scan -----------------------------------------------------------------------------------------------
def completed_row(spec: ScanSpec, trial: dict[str, Any]) -> dict[str, Any] | None:
    report = spec.out_dir / "trials" / trial["id"] / "run" / "report.json"
    if not report.is_file():
        return None
    row = row_from_report(trial, json.loads(report.read_text()), spec.dsp_weight)
    return row


def _spec_payload(spec: ScanSpec) -> dict[str, Any]:
    from dataclasses import asdict

    payload = asdict(spec)
    payload["out"] = str(spec.out_dir)  # absolute: Tune workers run in their own folders
    if spec.config_path is not None:
        payload["config_path"] = str(Path(spec.config_path).resolve())
    return payload


def _run_on_ray(spec: ScanSpec, todo: list[dict[str, Any]], verbose: int) -> dict[str, str]:
    """Run ``todo`` as Tune trials; returns {trial id: error} for trials Ray itself lost (worker died)."""
    import ray
    from ray import tune

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose > 1}
        if spec.address:
            kwargs["address"] = spec.address
        else:
            kwargs["num_cpus"] = spec.num_cpus or os.cpu_count()
        try:
            ray.init(**kwargs)
        except Exception as exc:  # a wrong address or a cluster that is down: say which
            raise TrigflowError(f"cannot start/join Ray ({spec.address or 'local'}): {exc}") from None
        started = True
    try:
        payload = _spec_payload(spec)
        trainable = tune.with_resources(_tune_trainable, {"cpu": spec.cpus_per_trial})
        # Tune's classic output uses this reporter; its default engine shows the reported metrics anyway.
        reporter = tune.CLIReporter(
            metric_columns=list(PROGRESS_COLUMNS),
            parameter_columns=["id"],
            max_report_frequency=30,
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"spec": payload, "id": tune.grid_search([t["id"] for t in todo])},
            tune_config=tune.TuneConfig(max_concurrent_trials=None),
            run_config=tune.RunConfig(
                name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(spec.out_dir / "ray"),
                progress_reporter=reporter,
                verbose=verbose,
                log_to_file=True,
            ),
        )
        grid = tuner.fit()
        lost: dict[str, str] = {}
        for result in grid:
            if result.error is not None:
                message = f"Ray trial error: {result.error.__class__.__name__}: {result.error}"
                lost[(result.config or {}).get("id", "?")] = message
        return lost
    finally:
        if started:
            ray.shutdown()


def scan(spec: ScanSpec, verbose: int = 1) -> ScanResult:
    """Run (or resume) the scan; write ``scan.csv``, ``scan.json`` and ``pareto.png`` in ``spec.out_dir``."""
    start = time.perf_counter()
    out = spec.out_dir
    trials = spec.trials()
    for trial in trials:
        trial_config(spec, trial)  # every point's config is valid before any trial starts
    if out.exists() and any(out.iterdir()) and not (spec.resume or spec.force):
        raise TrigflowError(
            f"scan folder {out} already exists; pass --resume to continue it or --force to redo it"
        )
    out.mkdir(parents=True, exist_ok=True)
    done = {} if spec.force else {t["id"]: completed_row(spec, t) for t in trials}
    todo = [t for t in trials if done.get(t["id"]) is None]
    lost = _run_on_ray(spec, todo, verbose) if todo else {}
    rows = []
    for trial in trials:
        row = completed_row(spec, trial)
        if row is None:
            err = spec.out_dir / "trials" / trial["id"] / "error.json"
            unfinished = lost.get(trial["id"], "did not finish (scan interrupted?); --resume reruns it")
            message = json.loads(err.read_text())["error"] if err.is_file() else unfinished
            row = error_row(trial, message)
        rows.append(row)
    front = mark_front(rows)
    summary = summarize(rows)
    wall = round(time.perf_counter() - start, 1)
    write_results(spec, rows, front, summary, wall, ran=len(todo))
    return ScanResult(rows=rows, front=front, out_dir=out, summary=summary, ran=len(todo), wall_s=wall)


# --- Pareto front, summary, outputs ------------------------------------------------------------------------
def _objectives(row: dict[str, Any]) -> tuple[float, float, float]:
    """All minimised: (−accuracy, cost, latency)."""
    return (-float(row["accuracy_firmware"]), float(row["cost"]), float(row["latency_cycles"]))


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    oa, ob = _objectives(a), _objectives(b)
    return all(x <= y for x, y in zip(oa, ob)) and any(x < y for x, y in zip(oa, ob))


def eligible(row: dict[str, Any]) -> bool:
    return bool(row["passed"]) and None not in (row["accuracy_firmware"], row["cost"], row["latency_cycles"])


def mark_front(rows: list[dict[str, Any]]) -> list[str]:
    """Set ``pareto`` on the proven trials no other proven trial dominates; returns their ids."""
    candidates = [r for r in rows if eligible(r)]
    for row in rows:
        row["pareto"] = eligible(row) and not any(dominates(o, row) for o in candidates if o is not row)
    return [r["id"] for r in rows if r["pareto"]]


def widest_bits(row: dict[str, Any]) -> int:
    """The widest layer of a trial: ``bits``, or the largest of its per-layer widths (``6/4/3/3``)."""
    if row.get("layer_bits"):
        return max(int(b) for b in str(row["layer_bits"]).split("/"))
    return int(row["bits"])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Best ≤6-bit pruned model on the front vs the float twin and the unpruned widest uniform model.

    "≤ 6-bit" is the widest layer (per-layer trials count by their chosen widths, not their starting width);
    the reference is the unpruned uniform-width trial with the most bits (lowest reuse).
    """
    proven = [r for r in rows if eligible(r)]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("passed", "failed", "error")}
    out: dict[str, Any] = {"trials": len(rows), **counts}
    unpruned = [r for r in proven if r["sparsity"] == 0]
    if not unpruned:
        return out
    uniform = [r for r in unpruned if not r.get("layer_bits")] or unpruned
    reference = max(uniform, key=lambda r: (widest_bits(r), -r["reuse"]))
    float_acc = max(r["accuracy_float"] for r in unpruned if r["accuracy_float"] is not None)
    out["float_accuracy"] = float_acc
    keys = ("id", "bits", "accuracy_firmware", "cost", "latency_cycles")
    out["reference"] = {k: reference[k] for k in keys}
    small = [r for r in proven if r["pareto"] and widest_bits(r) <= 6 and r["sparsity"] > 0]
    if small:
        best = max(small, key=lambda r: (r["accuracy_firmware"], -r["cost"]))
        best_keys = ("id", "layer_bits", "accuracy_firmware", "cost", "latency_cycles")
        out["best_small_pruned"] = {k: best.get(k) for k in best_keys}
        out["within_1_point_of_float"] = bool(best["accuracy_firmware"] >= float_acc - 0.01)
        out["cheaper_than_reference"] = bool(best["cost"] < reference["cost"])
    return out


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Short headers and formatted cells for the terminal table."""
    headers = ["trial", "status", "front", "acc fw", "bit-exact", "DSP", "cost", "cycles"]
    keys: tuple[str, ...] = ("id", "status", "pareto", "accuracy_firmware", "bit_exact_fraction", "dsp")
    keys += ("cost", "latency_cycles")
    if any(row.get("layer_bits") for row in rows):
        headers.insert(1, "layer bits")
        keys = (keys[0], "layer_bits", *keys[1:])

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "–"
        if key == "pareto":
            return "★" if value else ""
        if key in ("accuracy_firmware", "bit_exact_fraction"):
            return f"{value:.4f}"
        return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)

    return headers, [[cell(k, row.get(k)) for k in keys] for row in rows]


def _csv_text(rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return buffer.getvalue()


def write_results(
    spec: ScanSpec,
    rows: list[dict[str, Any]],
    front: list[str],
    summary: dict[str, Any],
    wall: float,
    ran: int,
) -> None:
    out = spec.out_dir
    write_text(out / "scan.csv", _csv_text(rows))
    document = {
        "kind": spec.kind,
        "grid": {
            "bits": list(spec.bits),
            "sparsity": list(spec.sparsity),
            "reuse": list(spec.reuse),
            "per_layer": list(spec.per_layer),
        },
        "overrides": spec.overrides,
        "cost": f"lut + {spec.dsp_weight:g} * dsp",
        "objectives": {"accuracy_firmware": "max", "cost": "min", "latency_cycles": "min"},
        "front": front,
        "summary": summary,
        "wall_s": wall,
        "trials_run": ran,
        "rows": rows,
    }
    write_text(out / "scan.json", json.dumps(document, indent=2))
    plot_front(rows, out / "pareto.png", spec.dsp_weight)
    from trigflow.report_html import write_page

    write_page(document, out)  # index.html: the front, the plot and a sortable table linking every trial's page


def plot_front(rows: list[dict[str, Any]], path: Path, dsp_weight: float = DSP_LUT_WEIGHT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    proven = [r for r in rows if eligible(r)]
    failed = [r for r in rows if r["status"] == "failed" and r["cost"] is not None]
    for ax, key, label in (
        (axes[0], "cost", f"estimated cost (LUT + {dsp_weight:g}·DSP)"),
        (axes[1], "latency_cycles", "estimated latency (cycles)"),
    ):
        if proven:
            sc = ax.scatter(
                [r[key] for r in proven],
                [r["accuracy_firmware"] for r in proven],
                c=[r["bits"] for r in proven],
                s=[30 + 60 * r["sparsity"] for r in proven],
                cmap="viridis",
                vmin=min(r["bits"] for r in rows),
                vmax=max(r["bits"] for r in rows) + 1e-9,
                edgecolors="none",
                label="proven bit-exact",
            )
            front = sorted((r for r in proven if r["pareto"]), key=lambda r: r[key])
            ax.scatter(
                [r[key] for r in front],
                [r["accuracy_firmware"] for r in front],
                facecolors="none",
                edgecolors="red",
                s=140,
                label="Pareto front",
            )
            for r in front:
                point = (r[key], r["accuracy_firmware"])
                ax.annotate(r["id"], point, fontsize=7, xytext=(4, 4), textcoords="offset points")
            if ax is axes[1]:
                fig.colorbar(sc, ax=ax, label="bits")
        if failed:
            ax.scatter(
                [r[key] for r in failed],
                [r["accuracy_firmware"] or 0 for r in failed],
                marker="x",
                color="black",
                label="not bit-exact (failed)",
            )
        ax.set_xscale("log" if key == "cost" and proven else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel("firmware accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    errors = sum(r["status"] == "error" for r in rows)
    counts = f"{len(rows)} trials, {len(proven)} proven, {errors} errors"
    fig.suptitle(f"trigflow scan: {counts} (marker size ∝ sparsity)")
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
