"""Spine layer: the page people look at — ``index.html`` in every run, verify, firmware and scan folder.

``render_page(report, folder)`` turns a report dict (the content of ``report.json``, or of a scan's
``scan.json``) into one self-contained HTML page: the images are the PNGs beside it (relative links), the
styles and the table-sorting script are inline, nothing is fetched from the network, so the page works from
``file://``. Every section is optional: a report without accuracies, overflow, localisation or resources
simply has no such section. ``write_index(folder)`` (re)builds the page from what a folder holds
(``trigflow report RUN_DIR``); ``trigflow.report.write_report`` calls ``write_page`` for every run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.fsio import write_text

__all__ = [
    "INDEX",
    "REPORT_FILES",
    "render_page",
    "write_page",
    "write_index",
    "fallback_page",
    "load_report",
]

INDEX = "index.html"
REPORT_FILES = ("report.json", "scan.json")  # a run/verify/firmware folder, a scan folder

# Known plots, in page order, with a caption; any other PNG in the folder is shown after them (full width).
HALF_WIDTH = {"roc.png"}  # the others are wide figures (several panels) and take the page width
PLOTS = {
    "roc.png": "ROC curves, float vs QKeras vs firmware",
    "score_distributions.png": "Score distributions",
    "confusion.png": "Confusion matrices (row-normalised, true class vs predicted)",
    "ranges.png": "Observed value ranges per layer vs the representable range of its type",
    "pareto.png": "Pareto front: firmware accuracy vs estimated cost and latency",
}
# Files linked from the page when present in the folder.
LINKED_FILES = (
    ("report.json", "the full report"),
    ("junit.xml", "one JUnit test case per proof criterion"),
    ("config.json", "the configuration used"),
    ("preprocessing.json", "how raw data became model inputs"),
    ("trigger_threshold.json", "trigger threshold for the configured rate"),
    ("evaluate.json", "scores on external data (trigflow evaluate)"),
    ("scan.json", "every trial of the scan"),
    ("scan.csv", "the trial table as CSV"),
    ("outputs.npz", "the compared output arrays"),
    ("history.json", "training history"),
)
CHECK_THRESHOLDS = {  # proof criterion -> the threshold it is judged by
    "bit_exact": "min_bit_exact_fraction",
    "samples": "min_samples",
    "onnx_parity": "max_onnx_abs_diff",
    "float_agreement": "max_float_rel_diff",
}
MODELS = ("float", "qkeras", "onnx", "onnxruntime", "firmware", "rtl")


# --- formatting helpers (Jinja filters) ---------------------------------------------------------------------
def fmt(value: Any, digits: int = 4) -> str:
    """A compact, readable cell: thousands separators for ints, ``digits`` decimals for floats (significant
    figures when tiny or huge), lists and mappings inline."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0:
            return "0"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items())
    return str(value)


def sort_key(value: Any) -> str:
    """The ``data-sort`` attribute of a table cell: numbers as numbers, the rest as text."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(float(value))
    return "" if value is None else str(value)


# --- what the page shows ------------------------------------------------------------------------------------
def _is_scan(report: dict[str, Any]) -> bool:
    return isinstance(report.get("rows"), list) and "front" in report


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """PASS/FAIL and the one line under it: bit-exact fraction, samples, each criterion with its threshold."""
    if _is_scan(report):
        summary = report.get("summary", {})
        bad = int(summary.get("failed", 0)) + int(summary.get("error", 0))
        parts = [f"{summary.get('trials', len(report['rows']))} trials"]
        parts += [f"{summary.get(k, 0)} {k}" for k in ("passed", "failed", "error")]
        parts.append(f"Pareto front: {', '.join(report['front']) or 'empty'}")
        return {"passed": bad == 0, "parts": parts, "failed": []}
    checks = report.get("checks") or {}
    passed = bool(report.get("passed", all(c.get("passed") for c in checks.values()) if checks else False))
    parts = []
    bits = report.get("bit_exact_fraction")
    if isinstance(bits, (int, float)) and (not checks or "bit_exact" in checks):  # float models: not required
        parts.append(f"bit-exact {bits:.6f}")
    if report.get("samples") is not None:
        parts.append(f"{fmt(report['samples'])} samples")
    failed = [name for name, c in checks.items() if not c.get("passed")]
    thresholds = dict(report.get("thresholds") or {})
    for name, check in checks.items():  # each criterion with its threshold: "samples ✓ ≥ 1,000"
        key = CHECK_THRESHOLDS.get(name)
        bound = (
            f" {'≥' if key.startswith('min') else '≤'} {fmt(thresholds.pop(key))}"
            if key in thresholds
            else ""
        )
        parts.append(f"{name} {'✓' if check.get('passed') else '✗'}{bound}")
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if report.get("verdict_note"):  # any saturation, anywhere (verify)
        parts.append(str(report["verdict_note"]))
    return {"passed": passed, "parts": parts, "failed": failed}


def metrics(report: dict[str, Any]) -> dict[str, Any] | None:
    """Accuracy and AUC per implementation, as rows × implementation columns."""
    acc = report.get("accuracy") if isinstance(report.get("accuracy"), dict) else {}
    auc = report.get("auc") if isinstance(report.get("auc"), dict) else {}
    models = [m for m in MODELS if m in acc]
    rows: list[tuple[str, dict[str, Any]]] = []
    if acc:
        rows.append(("accuracy", acc))
    if auc:
        first = next(iter(auc.values()))
        if set(auc) <= set(MODELS):  # {model: {class: auc}} (classifiers)
            for cls in first if isinstance(first, dict) else ():
                rows.append((f"AUC {cls}", {m: auc[m].get(cls) for m in auc}))
        else:  # {signal: {model: auc}} (anomaly detection)
            for sig, per_model in auc.items():
                rows.append((f"AUC {sig}", per_model))
        models += [m for m in MODELS if m not in models and any(m in r for _, r in rows)]
    if not rows:
        return None
    return {"models": models, "rows": rows}


def operating_points(report: dict[str, Any]) -> dict[str, Any] | None:
    """Anomaly trigger: signal efficiency (TPR) per implementation at each background rate."""
    by_model = report.get("tpr_at_fpr_by_model")
    if not isinstance(by_model, dict) or not by_model:
        return None
    points = report.get("rate_points") or {}
    models = list(by_model)
    signals = list(dict.fromkeys(sig for per_signal in by_model.values() for sig in per_signal))
    keys = list(points) or list(dict.fromkeys(k for ps in by_model.values() for t in ps.values() for k in t))
    rows = [  # one row per signal: TPR of each implementation at each rate point
        {"signal": sig, "tpr": [by_model[m].get(sig, {}).get(k) for k in keys for m in models]}
        for sig in signals
    ]
    return {
        "keys": keys,
        "models": models,
        "rows": rows,
        "points": points,
        "limit": report.get("statistical_limit"),
    }


def cost(report: dict[str, Any]) -> dict[str, Any] | None:
    """Total resources, latency, II and clock; per-layer rows when the report or the project yields them."""
    res = report.get("resources")
    if not isinstance(res, dict):
        if report.get("estimate_error"):
            return {"error": report["estimate_error"], "totals": {}, "layers": []}
        return None
    totals = cost_totals(report, report.get("firmware") or {})
    return {"totals": totals, "layers": report.get("resources_per_layer") or [], "error": None}


def measured_cost(project_dir: str | None, firmware: dict[str, Any]) -> dict[str, Any] | None:
    """Vendor C-synthesis totals when ``trigflow synth`` left a ``*_csynth.xml`` in the project."""
    if not project_dir or not Path(project_dir).is_dir():
        return None
    found = sorted(Path(project_dir).glob("*_prj/solution*/syn/report/*_csynth.xml"))
    if not found:
        return None
    try:
        from trigflow.firmware.synth import parse_vendor_report

        report = parse_vendor_report(found[0])
    except Exception:  # noqa: BLE001 - an unreadable vendor report leaves the estimate alone on the page
        return None
    return cost_totals(report, firmware)


def cost_totals(report: dict[str, Any], firmware: dict[str, Any]) -> dict[str, Any]:
    totals = {
        "source": report.get("source"),
        **{k.upper(): v for k, v in (report.get("resources") or {}).items()},
        "latency (cycles)": report.get("latency_cycles"),
        "latency (ns)": report.get("latency_ns"),
        "II (cycles)": report.get("ii"),
        "clock period (ns)": firmware.get("clock_period"),
        "part": firmware.get("part"),
    }
    return {k: v for k, v in totals.items() if v is not None}


def layer_costs(project_dir: str | None) -> list[dict[str, Any]]:
    """Per-layer estimate of the project (serialized hls4ml graph); empty when it cannot be read."""
    if not project_dir or not (Path(project_dir) / "model.fml").is_file():
        return []
    try:
        from trigflow.firmware.estimate import estimate_project

        return estimate_project(project_dir).table()
    except Exception:  # noqa: BLE001 - the per-layer table is an add-on to the page, never a reason to fail
        return []


def links(report: dict[str, Any], folder: Path) -> list[dict[str, str]]:
    """Files of the folder and the hls4ml project, as links that work from ``file://``."""
    out = []
    for name, what in LINKED_FILES:
        if (folder / name).is_file():
            out.append({"href": name, "label": name, "what": what})
    for path in sorted(folder.glob("*.onnx")):
        out.append({"href": path.name, "label": path.name, "what": "ONNX model"})
    if report.get("project_dir"):  # run_dir is not linked: it is the folder of this page
        project = Path(report["project_dir"]).resolve()
        out.append({"href": project.as_uri(), "label": str(project), "what": "the hls4ml project"})
    model = report.get("model") if isinstance(report.get("model"), dict) else {}
    if model.get("path"):
        out.append(
            {"href": Path(model["path"]).resolve().as_uri(), "label": model["path"], "what": "model given"}
        )
    return out


def plots(folder: Path) -> list[dict[str, str]]:
    known = [(n, c) for n, c in PLOTS.items() if (folder / n).is_file()]
    known += [(p.name, p.stem.replace("_", " ")) for p in sorted(folder.glob("*.png")) if p.name not in PLOTS]
    return [{"src": n, "caption": c, "wide": n not in HALF_WIDTH} for n, c in known]


# Trial table: short headers; "passed"/"pareto" are shown by the status and the ★, the paths by the links;
# FF, BRAM, ns and parameters stay in scan.csv so that the table fits a laptop screen.
SCAN_HEADERS = {
    "layer_bits": "layer bits",
    "accuracy_float": "acc float",
    "accuracy_qkeras": "acc QKeras",
    "accuracy_firmware": "acc firmware",
    "bit_exact_fraction": "bit-exact",
    "dsp": "DSP",
    "lut": "LUT",
    "ff": "FF",
    "bram": "BRAM",
    "latency_cycles": "latency (cycles)",
    "latency_ns": "latency (ns)",
    "parameters": "params",
    "wall_s": "wall (s)",
}


def scan_table(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    from trigflow.scan import COLUMNS

    rows = report["rows"]
    hidden = {"run_dir", "error", "passed", "pareto", "ff", "bram", "latency_ns", "parameters"}
    columns = [c for c in COLUMNS if c not in hidden and any(r.get(c) not in (None, "none") for r in rows)]
    if "id" not in columns:
        columns.insert(0, "id")
    columns.append("error")
    table = []
    for row in rows:
        run = Path(row["run_dir"]) if row.get("run_dir") else folder / "trials" / str(row.get("id")) / "run"
        page = run / INDEX
        href = os.path.relpath(page, folder) if page.is_file() else None
        table.append({"row": row, "href": href})
    headers = [SCAN_HEADERS.get(c, c.replace("_", " ")) for c in columns]
    return {"columns": columns, "headers": headers, "rows": table}


def _beside(folder: Path, name: str) -> dict[str, Any] | None:
    """A JSON report another command left beside the run's (None when absent or unreadable)."""
    path = folder / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def evaluation(folder: Path) -> dict[str, Any] | None:
    data = _beside(folder, "evaluate.json")
    return None if data is None else {"report": data, "metrics": metrics(data)}


def rtl_proof(folder: Path) -> dict[str, Any] | None:
    """The RTL backend's proof beside the run (``rtl_report.json``, written by ``trigflow rtl``)."""
    data = _beside(folder, "rtl_report.json")
    if data is None:
        return None
    proof = data.get("proof") if isinstance(data.get("proof"), dict) else {}
    manifest = data.get("rtl") if isinstance(data.get("rtl"), dict) else {}
    shown = (*PROOF_KEYS, "engine", "interpreter_bit_exact_fraction", "verilator_bit_exact_fraction")
    rows = [(k, proof[k]) for k in shown if k in proof]
    keys = ("top", "part", "clock_period_ns", "latency_cycles", "ii", "da4ml_cost_lut", "reg_bits")
    return {
        "passed": bool(data.get("passed")),
        "failures": [str(f) for f in data.get("failures") or []],
        "rows": rows,
        "design": [(k, manifest[k]) for k in keys if k in manifest],
        "dir": data.get("rtl_dir"),
    }


# The proof's numbers, in page order.
PROOF_KEYS = (
    "samples",
    "bit_exact_fraction",
    "mismatched_samples",
    "first_mismatch",
    "max_abs_diff_vs_qkeras",
    "max_abs_diff_vs_onnxruntime",
    "max_abs_diff_vs_float",
    "onnx_max_abs_diff",
    "argmax_agreement_vs_qkeras",
    "argmax_agreement_vs_float",
    "argmax_agreement_vs_onnxruntime",
    "softmax_max_abs_diff_vs_qkeras",
    "parameters",
)
# Report keys the page shows in its own sections; every other key is listed under "More from report.json".
SHOWN = {
    *PROOF_KEYS,
    *("kind", "reference", "accuracy", "auc", "tpr_at_fpr", "tpr_at_fpr_by_model", "rate_points"),
    *("statistical_limit", "trigger_threshold", "score", "overflow", "localization", "configuration"),
    *("resources", "estimate_error", "latency_cycles", "latency_ns", "ii", "source", "firmware", "data"),
    *("model", "warnings", "project_dir", "run_dir", "thresholds", "checks", "passed", "failures"),
    *("versions", "timings_s", "resources_per_layer"),
}


def extra_sections(report: dict[str, Any]) -> dict[str, Any]:
    """Report keys without a section of their own (per kind: gnn, fifo_depths, cleaning, precision...)."""
    return {k: v for k, v in report.items() if k not in SHOWN and v not in (None, {}, [])}


def context(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Everything the template needs, each section None/empty when the report lacks it."""
    folder = Path(folder)
    scan = _is_scan(report)
    cost_info = None if scan else cost(report)
    if cost_info is None and not scan and report.get("project_dir"):  # no totals in the report: estimate
        cost_info = {"totals": {}, "layers": [], "error": None}
    if cost_info is not None:
        measured = measured_cost(report.get("project_dir"), report.get("firmware") or {})
        rows = [cost_info["totals"], measured if measured != cost_info["totals"] else None]
        cost_info["rows"] = [r for r in rows if r]  # the report's totals, then measured synthesis if present
        cost_info["layers_source"] = cost_info["totals"].get("source") or "estimate"
        if not cost_info["layers"]:  # the report holds totals; the per-layer split comes from the estimator
            cost_info["layers"] = layer_costs(report.get("project_dir"))
            cost_info["layers_source"] = "estimate"
        if not (cost_info["rows"] or cost_info["layers"] or cost_info["error"]):
            cost_info = None
    overflow = report.get("overflow") if isinstance(report.get("overflow"), dict) else None
    localization = report.get("localization") if isinstance(report.get("localization"), dict) else None
    configuration = report.get("configuration") if isinstance(report.get("configuration"), dict) else None
    kind = report.get("kind", "run")
    title = (
        f"trigflow scan {kind}"
        if scan
        else f"trigflow {kind}" + (" run" if kind in ("mlp", "cnn", "gnn", "ae") else "")
    )
    proof_rows = [(k, report[k]) for k in PROOF_KEYS if k in report]
    return {
        "title": title,
        "folder": str(report.get("run_dir") or folder.resolve()),  # a run renders in its temporary folder
        "scan": scan,
        "report": report,
        "verdict": verdict(report),
        "checks": report.get("checks") or {},
        "proof_rows": proof_rows,
        "reference": report.get("reference"),
        "metrics": None if scan else metrics(report),
        "operating_points": operating_points(report),
        "trigger": report.get("trigger_threshold")
        if isinstance(report.get("trigger_threshold"), dict)
        else None,
        "score": report.get("score") if isinstance(report.get("score"), dict) else None,
        "evaluation": evaluation(folder),
        "rtl": None if scan else rtl_proof(folder),
        "plots": plots(folder),
        "overflow": overflow,
        "localization": localization,
        "configuration": configuration,
        "cost": cost_info,
        "firmware": report.get("firmware") if isinstance(report.get("firmware"), dict) else None,
        "data": report.get("data") if isinstance(report.get("data"), dict) else None,
        "model": report.get("model") if isinstance(report.get("model"), dict) else None,
        "warnings": [str(w) for w in report.get("warnings") or []],
        "scan_table": scan_table(report, folder) if scan else None,
        "links": links(report, folder),
        "extra": {} if scan else extra_sections(report),
        "versions": report.get("versions") if isinstance(report.get("versions"), dict) else None,
        "timings": report.get("timings_s") if isinstance(report.get("timings_s"), dict) else None,
    }


# --- rendering ----------------------------------------------------------------------------------------------
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trigflow", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["sort_key"] = sort_key
    return env


def render_page(report: dict[str, Any], folder: str | os.PathLike) -> str:
    """The HTML of ``index.html`` for ``report`` in ``folder`` (the plots are looked up there)."""
    from trigflow.report import jsonable

    report = json.loads(json.dumps(report, default=jsonable))  # the same values report.json holds
    return _environment().get_template("report.html.j2").render(**context(report, Path(folder)))


def fallback_page(report: dict[str, Any], error: BaseException) -> str:
    """A minimal page (no template) when the full one cannot be rendered: the verdict and how to rebuild."""
    from html import escape

    try:
        passed = bool(verdict(report)["passed"])
    except Exception:  # noqa: BLE001 - the fallback must always render
        passed = bool(report.get("passed"))
    failures = "".join(f"<li>{escape(str(f))}</li>" for f in report.get("failures") or [])
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>trigflow report</title></head>'
        "<body>"
        f'<h1 id="verdict">{"PASS" if passed else "FAIL"}</h1><ul>{failures}</ul>'
        f"<p>The full page could not be rendered ({escape(type(error).__name__)}: {escape(str(error))}); "
        'the proof is in <a href="report.json">report.json</a>. Rebuild with <code>trigflow report '
        "FOLDER</code>.</p></body></html>\n"
    )


def write_page(report: dict[str, Any], folder: str | os.PathLike) -> Path:
    """Write ``index.html`` into ``folder``. A rendering bug writes the fallback page and a warning instead of
    failing: the page is a view of ``report.json``, and a finished proof must not be discarded for it."""
    import warnings

    folder = Path(folder)
    try:
        text = render_page(report, folder)
    except Exception as exc:  # noqa: BLE001 - any template/data bug; disk errors surface in write_text below
        warnings.warn(f"index.html: full page not rendered ({type(exc).__name__}: {exc})", stacklevel=2)
        text = fallback_page(report, exc)
    return write_text(folder / INDEX, text)


def load_report(folder: str | os.PathLike) -> dict[str, Any]:
    """The report of a run/verify/firmware folder (``report.json``) or a scan folder (``scan.json``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrigflowError(f"{folder} is not a folder; pass a run, verify, firmware or scan folder")
    for name in REPORT_FILES:
        path = folder / name
        if path.is_file():
            try:
                report = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise TrigflowError(
                    f"{path} is not readable JSON ({exc}); rerun the command that wrote it"
                ) from None
            if not isinstance(report, dict):
                raise TrigflowError(f"{path} is not a trigflow report (not a JSON object); rerun the command")
            return report
    raise TrigflowError(
        f"no report.json (or scan.json) in {folder}; pass a folder written by trigflow run, verify, "
        "firmware or scan"
    )


def write_index(folder: str | os.PathLike) -> Path:
    """(Re)build ``index.html`` of an existing folder from its report; errors are raised (nothing to lose)."""
    folder = Path(folder)
    return write_text(folder / INDEX, render_page(load_report(folder), folder))
