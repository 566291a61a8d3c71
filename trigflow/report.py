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
    write_text(out / "report.json", json.dumps(report, indent=2, default=jsonable) + "\n")
    write_text(out / "junit.xml", junit_xml(report))
    write_index_page(report, out)


def write_index_page(report: dict[str, Any], out: Path) -> Path:
    """``index.html``, the page people look at, written into the folder before it is published."""
    from trigflow.report_html import write_page

    return write_page(report, out)


def jsonable(value: Any) -> Any:
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


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Lay out, save and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


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
        path = save_figure(fig, out / "roc.png")
    return [path, *write_outcome_plots(outputs, class_names, out)]


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    acc = report.get("accuracy", {})
    ref, other = ("GarNet mirror", "your model") if report.get("garnet") else ("QKeras", "float")
    rows = [
        ("samples", f"{report['samples']:,}"),
        (f"bit-exact fraction (firmware vs {ref})", f"{report['bit_exact_fraction']:.6f}"),
        (f"max |Δ| firmware vs {ref}", f"{report['max_abs_diff_vs_qkeras']:.3g}"),
        (f"max |Δ| firmware vs {other}", f"{report['max_abs_diff_vs_float']:.3g}"),
    ]
    if "argmax_agreement_vs_qkeras" in report:
        rows.append(("argmax agreement vs QKeras", f"{report['argmax_agreement_vs_qkeras']:.6f}"))
    if acc:
        rows.append(
            ("accuracy float / QKeras / firmware", " / ".join(f"{acc[k]:.4f}" for k in ("float", "qkeras", "firmware")))
        )
    reshaped = (report.get("data") or {}).get("reshape")
    if reshaped:  # verify --reshape: what was done to the data before anything else
        how = (
            "C-order reshape" if reshaped["rule"] == "flatten"
            else f"{reshaped['order']}; {reshaped['samples_truncated']:,} truncated, "
            f"{reshaped['samples_zero_padded']:,} zero-padded"
        )
        rows.append(("data reshaped (--reshape)", f"{tuple(reshaped['from'])} → {tuple(reshaped['to'])}: {how}"))
    raw = report.get("model_on_raw_data")
    if raw:
        if raw.get("accuracy") is not None:
            rows.append(("accuracy model on raw data", f"{raw['accuracy']:.4f}"))
        rows.append(
            (
                "model on raw data vs reference",
                f"{raw['changed_samples']:,} of {raw['samples']:,} samples changed by the input grid "
                f"{raw['input_type']}; firmware bit-exact {raw['firmware_bit_exact_fraction']:.6f}",
            )
        )
    agreement = report.get("argmax_agreement")
    if isinstance(agreement, dict):
        rows.append(
            (
                "argmax agreement firmware vs model on raw / float",
                f"{agreement['firmware_vs_model_on_raw_data']:.6f} / {agreement['firmware_vs_float']:.6f}",
            )
        )
    garnet = report.get("garnet")
    if garnet:  # hls4ml's GarNet: firmware = the mirror; your float model measured against it
        vs = garnet["firmware_vs_model"]
        rows.append(("GarNet layers not exact in float", ", ".join(garnet["not_exact_in_float"])))
        rows.append((
            "firmware vs your model",
            f"{vs['differing_samples']:,} of {vs['samples']:,} samples differ, max |Δ| {vs['max_abs_diff']:.3g}, "
            f"argmax agreement {vs['argmax_agreement']:.6f}",
        ))
        if garnet.get("accuracy"):
            acc = garnet["accuracy"]
            rows.append(("accuracy firmware / mirror / your model",
                         " / ".join(f"{acc[k]:.4f}" for k in ("firmware", "mirror", "model"))))
        rows.append(("GarNet vertex count", garnet["second_input"]["source"]))
        for name, w in garnet.get("widths", {}).items():  # wider than hls4ml's hard-coded fixed<12,4> / 10
            s_frac = w.get("distance_weight_frac", w["weight_frac"])
            products = f", data·edge weight {w['weighted_feature']}" if "weighted_feature" in w else ""
            rows.append((f"GarNet {name} widths", f"distance {w['distance']}, weights {w['weight_frac']} "
                         f"(distance weights {s_frac}) fractional bits{products}"))
    elif report.get("verdict_note"):
        rows.append(("verdict note", report["verdict_note"]))  # saturations; recurrent tables
    if "pruning" in report:
        rows.append(("pruned weights", f"{report['pruning']['reached']:.1%} (target {report['pruning']['target']:.0%})"))
    if report.get("onnx_max_abs_diff") is not None:  # None: no ONNX model was run (GarNet)
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


def write_outcome_plots(
    outputs: dict[str, np.ndarray], class_names: tuple[str, ...], out: Path
) -> list[Path]:
    """Confusion matrices (float, QKeras, firmware) and per-class softmax score distributions."""
    import matplotlib.pyplot as plt
    import mplhep as hep

    from trigflow.proof.compare import softmax

    labels = np.asarray(outputs["labels"]).astype(int)
    n = len(class_names)
    models = [m for m in ("float", "qkeras", "firmware") if m in outputs]
    paths = []
    with hep_style():
        fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 5.2), squeeze=False)
        for ax, model in zip(axes[0], models):
            predicted = np.argmax(outputs[model], axis=1)
            counts = np.zeros((n, n))
            np.add.at(counts, (labels, predicted), 1)
            fraction = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
            for i in range(n):
                for j in range(n):
                    color = "white" if fraction[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{fraction[i, j]:.2f}", ha="center", va="center", fontsize=12, color=color)
            ax.set_xticks(range(n), class_names)
            ax.set_yticks(range(n), class_names)
            ax.minorticks_off()
            ax.tick_params(length=0)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.set_title(f"{model}: accuracy {np.mean(predicted == labels):.4f}", fontsize=16)
        paths.append(save_figure(fig, out / "confusion.png"))

        cols = min(n, 3)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.6 * rows), squeeze=False)
        bins = np.linspace(0, 1, 41)
        for i, ax in enumerate(axes.ravel()):
            if i >= n:
                ax.set_visible(False)
                continue
            for model, style in (("firmware", "-"), ("float", ":")):
                if model not in outputs:
                    continue
                prob = softmax(outputs[model])[:, i]
                samples = ((labels == i, f"true {class_names[i]}", "C0"), (labels != i, "other", "C1"))
                for selection, name, color in samples:
                    hist, _ = np.histogram(prob[selection], bins=bins)
                    density = hist / max(hist.sum(), 1)
                    hep.histplot(density, bins, ax=ax, ls=style, color=color, label=f"{name} {model}")
            ax.set_yscale("log")
            ax.set_ylim(top=ax.get_ylim()[1] * 30)  # room for the legend
            ax.set_xlabel(f"softmax score {class_names[i]}")
            ax.set_ylabel("fraction / 0.025")
            ax.legend(fontsize=11, loc="upper center", ncol=2)
        paths.append(save_figure(fig, out / "score_distributions.png"))
    return paths
