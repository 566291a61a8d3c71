"""Spine layer: what a run leaves for people and CI — report.json, JUnit XML, plots and the terminal table."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from trigflow.fsio import write_text


def write_report(report: dict[str, Any], out: Path) -> None:
    write_text(out / "report.json", json.dumps(report, indent=2, default=_jsonable) + "\n")
    write_text(out / "junit.xml", junit_xml(report))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def junit_xml(report: dict[str, Any]) -> str:
    """One test case per proof criterion, so CI dashboards show which one failed."""
    kind = report["kind"]
    checks = report.get("checks", {})
    cases = []
    for name, check in checks.items():
        detail = escape(check["detail"])
        failure = "" if check["passed"] else f"<failure message={quoteattr(check['detail'])}/>"
        cases.append(f'  <testcase classname="trigflow.{kind}" name="{name}">{failure}<system-out>{detail}</system-out></testcase>')
    failed = sum(not c["passed"] for c in checks.values())
    head = f'<testsuite name="trigflow.{kind}" tests="{len(cases)}" failures="{failed}">'
    return '<?xml version="1.0" encoding="utf-8"?>\n' + head + "\n" + "\n".join(cases) + "\n</testsuite>\n"


def hep_style() -> contextlib.AbstractContextManager[None]:
    """``with hep_style(): ...``: plots in the HEP style (mplhep's CMS style); the rcParams are restored after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    return plt.style.context(mplhep.style.CMS)


def write_plots(outputs: dict[str, np.ndarray], class_names: tuple[str, ...], out: Path) -> list[Path]:
    """ROC curves per class for float, QKeras and firmware (one-vs-rest on softmax probabilities)."""
    import matplotlib.pyplot as plt
    import mplhep
    from sklearn.metrics import roc_curve

    from trigflow.proof.compare import softmax

    labels = outputs["labels"]
    styles = {"float": ":", "qkeras": "--", "firmware": "-"}
    with hep_style():
        fig, ax = plt.subplots(figsize=(9, 8))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, name in enumerate(class_names):
            for model, style in styles.items():
                prob = softmax(outputs[model])[:, i]
                fpr, tpr, _ = roc_curve(labels == i, prob)
                ax.plot(tpr, np.maximum(fpr, 1e-5), style, color=colors[i % len(colors)], label=f"{name} {model}")
        ax.set_yscale("log")
        ax.set_xlabel("Signal efficiency (TPR)")
        ax.set_ylabel("Background efficiency (FPR)")
        mplhep.label.exp_label(exp="trigflow", llabel="Simulation", rlabel="ROC one-vs-rest", ax=ax)
        ax.legend(fontsize=11, ncol=3, loc="lower right", title="float (:), QKeras (--), firmware (—)",
                  title_fontsize=11)
        fig.tight_layout()
        path = out / "roc.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return [path]


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    acc = report.get("accuracy", {})
    rows = [
        ("samples", f"{report['samples']:,}"),
        ("bit-exact fraction (firmware vs QKeras)", f"{report['bit_exact_fraction']:.6f}"),
        ("max |Δ| firmware vs QKeras", f"{report['max_abs_diff_vs_qkeras']:.3g}"),
        ("max |Δ| firmware vs float", f"{report['max_abs_diff_vs_float']:.3g}"),
    ]
    if "argmax_agreement_vs_qkeras" in report:
        rows.append(("argmax agreement vs QKeras", f"{report['argmax_agreement_vs_qkeras']:.6f}"))
    if acc:
        rows.append(
            ("accuracy float / QKeras / firmware", " / ".join(f"{acc[k]:.4f}" for k in ("float", "qkeras", "firmware")))
        )
    if "onnx_max_abs_diff" in report:
        rows.append(("ONNX max |Δ| vs QKeras", f"{report['onnx_max_abs_diff']:.3g}"))
    if "resources" in report:
        res = report["resources"]
        rows.append(
            (
                f"resources ({report['source']})",
                f"DSP {res['dsp']:,} · LUT {res['lut']:,} · FF {res['ff']:,} · BRAM {res['bram']:,}",
            )
        )
        rows.append(("latency", f"{report['latency_cycles']} cycles = {report['latency_ns']} ns, II {report['ii']}"))
    rows.append(("project", report["project_dir"]))
    return rows
