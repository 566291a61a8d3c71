"""The run page (index.html): rendered from report dicts of every shape, and a real run's page checked in
headless Chromium the way a person sees it (verdict, every image loaded, no console error, no horizontal
scrolling at 1280 px). The screenshots are kept: the folder is printed at the end of the session."""

from __future__ import annotations

import html as html_module
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from trigflow.report_html import INDEX, render_page, write_index, write_page

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH = 1280

# Runs first in the page: records console errors, uncaught exceptions and failed resource loads; after the
# load event it writes what a person would see into <pre id="probe"> for --dump-dom.
PROBE = """<script>
window.__errors = [];
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.from(arguments).join(" "));
    original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    var what = t && t !== window ? "failed to load " + (t.src || t.href) : "uncaught: " + e.message;
    window.__errors.push(what);
  }, true);
  window.addEventListener("load", function () {
    setTimeout(function () {
      var probe = {
        verdict: (document.getElementById("verdict") || {}).innerText || null,
        title: document.title,
        images: Array.from(document.images).map(function (i) {
          return {src: i.getAttribute("src"), width: i.naturalWidth, complete: i.complete};
        }),
        innerWidth: window.innerWidth,
        scrollWidth: document.documentElement.scrollWidth,
        scrollHeight: document.documentElement.scrollHeight,
        errors: window.__errors
      };
      var trials = document.getElementById("trials");
      if (trials) {  // sort by firmware accuracy: ascending, then descending
        var th = Array.from(trials.tHead.rows[0].cells).find(function (c) {
          return c.textContent.trim() === "acc firmware";
        });
        var ids = function () {
          return Array.from(trials.tBodies[0].rows).map(function (r) {
            return r.cells[0].textContent.replace("★", "").trim();
          });
        };
        th.click(); var up = ids(); th.click();
        probe.sorted = [up, ids()];
      }
      var pre = document.createElement("pre");
      pre.id = "probe";
      pre.textContent = JSON.stringify(probe);
      document.body.appendChild(pre);
    }, 0);
  });
})();
</script>"""


# --- synthetic reports (fast) -------------------------------------------------------------------------------
def run_report(**changes) -> dict:
    report = {
        "kind": "mlp",
        "samples": 1500,
        "reference": "QKeras model evaluated in float64 (exact fixed point)",
        "bit_exact_fraction": 1.0,
        "mismatched_samples": 0,
        "first_mismatch": None,
        "max_abs_diff_vs_qkeras": 0.0,
        "max_abs_diff_vs_float": 0.31,
        "onnx_max_abs_diff": 2.4e-7,
        "accuracy": {"float": 0.7512, "qkeras": 0.7433, "firmware": 0.7433},
        "auc": {m: {"g": 0.91, "q": 0.85, "t": 0.97} for m in ("float", "qkeras", "firmware")},
        "resources": {"dsp": 12, "lut": 5321, "ff": 2100, "bram": 0},
        "latency_cycles": 9,
        "latency_ns": 45.0,
        "ii": 1,
        "source": "estimate",
        "firmware": {"part": "xcvu9p-flgb2104-2-e", "clock_period": 5.0, "io_type": "io_parallel"},
        "thresholds": {"min_bit_exact_fraction": 1.0, "min_samples": 1000, "max_onnx_abs_diff": 1e-5},
        "checks": {
            "bit_exact": {"passed": True, "detail": "bit_exact_fraction 1.000000 (need ≥ 1.0)"},
            "samples": {"passed": True, "detail": "samples 1500 (need ≥ 1000)"},
            "onnx_parity": {"passed": True, "detail": "onnx_max_abs_diff 2.4e-07 (need ≤ 1e-05)"},
        },
        "passed": True,
        "failures": [],
        "project_dir": "/nonexistent/prj",
        "versions": {"trigflow": "0.1.0", "hls4ml": "1.3.0"},
        "timings_s": {"C-simulation": 1.5},
    }
    report.update(changes)
    return report


def failed_verify_report() -> dict:
    detail = "bit_exact_fraction 0.250000 (need ≥ 1.0; 3 of 4 samples differ, first: 1)"
    return {
        "kind": "verify",
        "samples": 4,
        "bit_exact_fraction": 0.25,
        "mismatched_samples": 3,
        "checks": {
            "bit_exact": {"passed": False, "detail": detail},
            "samples": {"passed": True, "detail": "ok"},
        },
        "thresholds": {"min_bit_exact_fraction": 1.0, "min_samples": 1},
        "passed": False,
        "failures": [detail],
        "warnings": ["layer 'dense': 7 of 40 values (18 %) outside fixed<6,2>"],
        "overflow": {
            "samples": 4,
            "total_overflows": 7,
            "warnings": [],
            "layers": [
                {
                    "layer": "dense",
                    "class": "Dense",
                    "type": "fixed<6,2>",
                    "representable": [-2.0, 1.9375],
                    "lsb": 0.0625,
                    "observed": [-3.1, 2.2],
                    "values": 40,
                    "overflows": 7,
                    "overflow_fraction": 0.175,
                    "integer_bits": 2,
                    "integer_bits_needed": 3,
                    "saturated": 0,
                },
                {
                    "layer": "relu",
                    "class": "Activation",
                    "type": "ufixed<6,0>",
                    "representable": [0.0, 0.984375],
                    "lsb": 0.015625,
                    "observed": [0.0, 0.9],
                    "values": 40,
                    "overflows": 0,
                    "overflow_fraction": 0.0,
                    "integer_bits": 0,
                    "integer_bits_needed": 0,
                },
            ],
        },
        "localization": {
            "compared_samples": 3,
            "first_differing_layer": "dense",
            "suggestion": "widen the accumulator of 'dense' to fixed<7,3> (--set ...)",
            "summary": "first differing layer: 'dense' (Dense, fixed<6,2>), max |Δ| 4",
            "layers": [
                {
                    "layer": "dense",
                    "keras_layer": "dense",
                    "class": "Dense",
                    "precision": "fixed<6,2>",
                    "max_abs_diff": 4.0,
                    "exact": False,
                    "differs": True,
                    "differing_fraction": 0.2,
                    "values_outside_type": 7,
                    "suggestion": "widen",
                },
            ],
        },
        "configuration": {
            "quantized": True,
            "input": {"type": "fixed<8,3>"},
            "overrides": {},
            "notes": ["n1"],
            "firmware_types": {"dense": {"result": "fixed<6,2>"}},
        },
        "resources": None,
        "estimate_error": "ValueError: unsupported layer",
    }


def scan_document(folder: Path) -> dict:
    trial = folder / "trials" / "b4_s0.5_r1" / "run"
    trial.mkdir(parents=True)
    write_page(run_report(), trial)
    base = {
        "sparsity": 0.5,
        "reuse": 1,
        "per_layer": "none",
        "layer_bits": None,
        "accuracy_float": 0.75,
        "ff": 100,
        "bram": 0,
        "latency_ns": 40.0,
        "parameters": 900,
        "wall_s": 20.0,
    }
    rows = [
        {
            **base,
            "id": "b4_s0.5_r1",
            "bits": 4,
            "status": "passed",
            "passed": True,
            "pareto": True,
            "accuracy_qkeras": 0.70,
            "accuracy_firmware": 0.70,
            "bit_exact_fraction": 1.0,
            "dsp": 0,
            "lut": 900,
            "cost": 900,
            "latency_cycles": 8,
            "error": None,
            "run_dir": str(trial),
        },
        {
            **base,
            "id": "b6_s0.5_r1",
            "bits": 6,
            "status": "passed",
            "passed": True,
            "pareto": True,
            "accuracy_qkeras": 0.74,
            "accuracy_firmware": 0.74,
            "bit_exact_fraction": 1.0,
            "dsp": 2,
            "lut": 1900,
            "cost": 2100,
            "latency_cycles": 9,
            "error": None,
            "run_dir": str(folder / "trials/b6_s0.5_r1/run"),
        },
        {
            **base,
            "id": "b8_s0.5_r1",
            "bits": 8,
            "status": "error",
            "passed": False,
            "pareto": False,
            "accuracy_qkeras": None,
            "accuracy_firmware": None,
            "bit_exact_fraction": None,
            "dsp": None,
            "lut": None,
            "cost": None,
            "latency_cycles": None,
            "error": "TrigflowError: <g++> failed",
            "run_dir": None,
        },
    ]
    return {
        "kind": "mlp",
        "grid": {"bits": [4, 6, 8], "sparsity": [0.5], "reuse": [1], "per_layer": ["none"]},
        "overrides": {},
        "cost": "lut + 100 * dsp",
        "objectives": {"accuracy_firmware": "max", "cost": "min", "latency_cycles": "min"},
        "front": ["b4_s0.5_r1", "b6_s0.5_r1"],
        "summary": {"trials": 3, "passed": 2, "failed": 0, "error": 1},
        "wall_s": 61.0,
        "trials_run": 3,
        "rows": rows,
    }


def text_of(html: str) -> str:
    return html_module.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_run_page_leads_with_the_verdict_and_shows_metrics_resources_and_links(tmp_path):
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "qkeras_model.onnx").write_bytes(b"")
    (tmp_path / "roc.png").write_bytes(b"")
    html = render_page(run_report(), tmp_path)
    text = text_of(html)
    verdict = text[text.index("PASS") : text.index("Proof")]
    for fragment in (
        "bit-exact 1.000000",
        "1,500 samples",
        "bit_exact ✓ ≥ 1",
        "samples ✓ ≥ 1,000",
        "onnx_parity ✓ ≤ 1e-05",
    ):
        assert fragment in verdict
    assert text.index("PASS") < text.index("Accuracy and AUC") < text.index("Resources and latency")
    assert "AUC t" in text and "0.7433" in text and "5,321" in text and "clock period (ns)" in text
    assert 'src="roc.png"' in html and 'href="qkeras_model.onnx"' in html and 'href="report.json"' in html
    assert "file:///nonexistent/prj" in html
    assert not re.search(r'(src|href)="https?:', html)  # nothing fetched from the network


def test_measured_synthesis_is_shown_beside_the_estimate(tmp_path):
    fixtures = Path(__file__).parents[1] / "firmware" / "fixtures"
    report_dir = tmp_path / "prj" / "myproject_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    shutil.copy(fixtures / "vitis_myproject_csynth.xml", report_dir / "myproject_csynth.xml")
    text = text_of(render_page(run_report(project_dir=str(tmp_path / "prj")), tmp_path))
    section = text[text.index("Resources and latency") :]
    assert "estimate 12" in section and "vitis_hls" in section


def test_failed_verify_page_names_the_failed_threshold_the_layer_and_the_fix(tmp_path):
    html = render_page(failed_verify_report(), tmp_path)
    text = text_of(html)
    assert text.index("FAIL") < text.index("Proof")
    assert "failed: bit_exact" in text and "bit_exact ✗ ≥ 1 · samples ✓ ≥ 1 ·" in text
    assert "Localisation" in text and "Suggestion: widen the accumulator of 'dense'" in text
    assert re.search(r'<tr class="first">\s*<td>dense</td>', html)
    assert "Per-layer types and ranges" in text and "3 / 2" in text and "17.50 %" in text
    assert "Firmware configuration chosen" in text and "estimate failed: ValueError" in text
    assert "Accuracy and AUC" not in text  # no labels, no accuracy section
    noted = text_of(render_page({**failed_verify_report(), "verdict_note": "input saturated in 3 samples"}, tmp_path))
    assert noted.index("input saturated in 3 samples") < noted.index("Proof")  # saturation on the verdict line


def test_page_tolerates_any_report_shape(tmp_path):
    for report in ({}, {"kind": "onnx"}, {"passed": True, "checks": {}}, {"accuracy": {"onnxruntime": 0.5}}):
        html = render_page(report, tmp_path)
        assert 'id="verdict"' in html
    assert "FAIL" in text_of(render_page({}, tmp_path))
    float_model = {"bit_exact_fraction": 0.0, "passed": True, "checks": {"float_agreement": {"passed": True}}}
    verdict = text_of(render_page(float_model, tmp_path)).split("PASS")[2]  # [title, verdict word, line]
    assert "float_agreement ✓" in verdict and "bit-exact" not in verdict.split("Proof")[0]
    ae = run_report(
        kind="ae",
        auc={"haa4b": {"float": 0.9, "qkeras": 0.89, "firmware": 0.89}},
        tpr_at_fpr_by_model={"firmware": {"haa4b": {"1e-5": 0.01, "1e-4": 0.1}}},
        rate_points={
            "1e-5": {"threshold": 3.5, "resolved": False},
            "1e-4": {"threshold": 2.0, "resolved": True},
        },
    )
    ae.pop("accuracy")
    ae["gnn"] = {"arch": "garnet", "n_particles": 16}  # a kind's own section is listed, not dropped
    text = text_of(render_page(ae, tmp_path))
    assert (
        "TPR @ FPR 1e-5" in text
        and "AUC haa4b 0.9000 0.8900 0.8900" in text
        and "haa4b 0.0100 0.1000" in text
    )
    assert "More from report.json" in text and "n particles 16" in text


def test_scan_page_has_the_front_a_sortable_table_and_links_to_trial_pages(tmp_path):
    (tmp_path / "pareto.png").write_bytes(b"")
    html = render_page(scan_document(tmp_path), tmp_path)
    text = text_of(html)
    assert text.index("FAIL") < text.index("Pareto front")  # one trial errored
    assert "3 trials · 2 passed · 0 failed · 1 error" in text
    assert 'src="pareto.png"' in html and '<table id="trials" class="sortable">' in html
    assert 'href="trials/b4_s0.5_r1/run/index.html"' in html
    assert "&lt;g++&gt; failed" in html  # escaped
    assert "addEventListener" in html and "<script src" not in html


def test_scan_writes_its_page_beside_the_table(tmp_path):
    from trigflow.scan import ScanSpec, write_results

    document = scan_document(tmp_path)
    spec = ScanSpec(bits=(4, 6, 8), sparsity=(0.5,), reuse=(1,), out=str(tmp_path))
    write_results(spec, document["rows"], document["front"], document["summary"], wall=61.0, ran=3)
    html = (tmp_path / INDEX).read_text()
    assert 'src="pareto.png"' in html and 'href="trials/b4_s0.5_r1/run/index.html"' in html


def test_evaluation_beside_the_run_is_on_its_page(tmp_path):
    evaluation = {
        "samples": 2000,
        "accuracy": {"float": 0.7, "qkeras": 0.69, "firmware": 0.69},
        "bit_exact_fraction": 1.0,
        "evaluated_at": "2026-12-07T02:00:00+0000",
    }
    (tmp_path / "evaluate.json").write_text(json.dumps(evaluation))
    text = text_of(render_page(run_report(), tmp_path))
    assert "Evaluation on external data" in text and "2,000 samples" in text and "0.6900" in text


def test_write_report_writes_the_page_and_a_render_bug_keeps_the_proof(tmp_path, monkeypatch):
    from trigflow import report_html
    from trigflow.report import write_report

    write_report(run_report(samples=np.int64(1500)), tmp_path)
    assert "PASS" in (tmp_path / INDEX).read_text()

    def broken(*args, **kwargs):
        raise KeyError("a template bug")

    monkeypatch.setattr(report_html, "render_page", broken)
    out = tmp_path / "second"
    with pytest.warns(UserWarning, match="a template bug"):
        write_report(run_report(), out)
    page = (out / INDEX).read_text()
    assert "PASS" in page and "trigflow report" in page and (out / "report.json").is_file()


def test_report_command_rebuilds_the_page(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trigflow.cli import app

    (tmp_path / "report.json").write_text(json.dumps(failed_verify_report()))
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--open"])
    assert result.exit_code == 0, result.output
    assert "Localisation" in (tmp_path / INDEX).read_text()
    assert opened == [(tmp_path / INDEX).resolve().as_uri()]


# --- a real run's page in headless Chromium --------------------------------------------------------------
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail(
        "chromium not found; install it: apt-get update && apt-get install -y chromium (README set-up)"
    )


def browse(page: Path, *args: str, height: int = 900) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="trigflow_chromium_") as profile:
        command = [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{height}",
        ]
        return subprocess.run(
            [*command, *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=120
        )


def probe(folder: Path, artefacts: Path) -> dict:
    """What Chromium shows of ``folder/index.html``: the page runs with the probe script, from a copy whose
    <base> points at the folder (so the folder itself is left as the run wrote it)."""
    html = (folder / INDEX).read_text()
    base = f'<base href="{folder.resolve().as_uri()}/">'
    test_page = artefacts / f"{folder.name}.probe.html"
    test_page.write_text(html.replace("<head>", "<head>" + base + PROBE, 1))
    result = browse(test_page, "--dump-dom", "--virtual-time-budget=10000")
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"probe did not run: {result.stderr[-2000:]}"
    return json.loads(
        found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, request) -> Path:
    folder = Path(
        os.environ.get("TRIGFLOW_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "html_artifacts"
    )
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    plugins = request.config.pluginmanager
    reporter, capture = plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nrun page screenshots: {folder}")


def test_real_run_page_in_chromium(small_run, artefacts):
    root, _, result = small_run
    assert result.returncode == 0, result.stderr[-2000:]
    folder = root / "out"
    assert (folder / INDEX).is_file()  # written by the run itself, through write_report
    seen = probe(folder, artefacts)
    report = json.loads((folder / "report.json").read_text())
    assert seen["verdict"].startswith("PASS")
    assert f"bit-exact {report['bit_exact_fraction']:.6f}" in seen["verdict"]
    assert f"{report['samples']:,} samples" in seen["verdict"]
    srcs = {i["src"] for i in seen["images"]}
    assert {"roc.png", "confusion.png", "score_distributions.png"} <= srcs
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen["images"]
    assert seen["errors"] == []
    assert seen["innerWidth"] == WIDTH and seen["scrollWidth"] <= WIDTH, seen

    shot = artefacts / f"run_{report['kind']}.png"
    browse(folder / INDEX, f"--screenshot={shot}", height=min(int(seen["scrollHeight"]), 16000))
    assert shot.stat().st_size > 0


def test_failed_verify_and_scan_pages_in_chromium(tmp_path, artefacts):
    """Synthetic pages with the widest tables (per-layer, localisation, trials) fit 1280 px too."""
    verify = tmp_path / "verify"
    verify.mkdir()
    write_page(failed_verify_report(), verify)
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "scan.json").write_text(json.dumps(scan_document(scan)))
    write_index(scan)
    for folder in (verify, scan):
        seen = probe(folder, artefacts)
        assert seen["errors"] == [] and seen["scrollWidth"] <= WIDTH, seen
        browse(
            folder / INDEX,
            f"--screenshot={artefacts / (folder.name + '.png')}",
            height=int(seen["scrollHeight"]),
        )
    assert seen["verdict"].startswith("FAIL")
    ascending, descending = seen["sorted"]  # the scan page's table sorts; empty cells stay last
    assert ascending == ["b4_s0.5_r1", "b6_s0.5_r1", "b8_s0.5_r1"]
    assert descending == ["b6_s0.5_r1", "b4_s0.5_r1", "b8_s0.5_r1"]


def test_evaluate_adds_its_section_to_the_run_page(small_run, fake_jets):
    """``trigflow evaluate`` writes evaluate.json into the run folder and refreshes the run's page."""
    from trigflow.data.jets import load_jets
    from trigflow.evaluate_run import evaluate_run

    root, _, result = small_run
    assert result.returncode == 0, result.stderr[-2000:]
    jets = load_jets(fake_jets)
    evaluate_run(root / "out", jets.hlf[:300], jets.label[:300].astype(np.int64))
    text = text_of((root / "out" / INDEX).read_text())
    (root / "out" / "evaluate.json").unlink()  # leave the shared run as it was
    write_index(root / "out")
    assert text.index("PASS") < text.index("Evaluation on external data") and "300 samples" in text


def test_rtl_proof_beside_the_run_is_on_its_page(tmp_path):
    """`trigflow rtl` writes rtl_report.json into the run folder; the page shows its verdict and design."""
    rtl = {
        "passed": False,
        "failures": ["bit_exact_fraction 0.5 (need ≥ 1.0)"],
        "rtl_dir": str(tmp_path / "prj" / "rtl"),
        "proof": {"source": "rtl", "samples": 1500, "bit_exact_fraction": 0.5, "interpreter_bit_exact_fraction": 1.0},
        "rtl": {"top": "mlp", "part": "xcu250-figd2104-2L-e", "clock_period_ns": 5.0, "latency_cycles": 7, "ii": 1},
    }
    (tmp_path / "rtl_report.json").write_text(json.dumps(rtl))
    text = text_of(render_page(run_report(), tmp_path))
    section = text.split("RTL (da4ml Verilog, Verilator)")[1]
    assert section.lstrip().startswith("FAIL") and "bit_exact_fraction 0.5 (need ≥ 1.0)" in section
    assert "interpreter bit exact fraction" in section and "latency cycles" in section
    assert "RTL (da4ml" not in text_of(render_page(run_report(), tmp_path / "elsewhere"))
