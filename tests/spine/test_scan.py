"""Design-space scan: a 2-trial Ray Tune scan end to end (tiny MLP), and the Pareto logic on made-up rows."""

import csv
import json
import subprocess
import sys

import pytest

from trigflow.errors import TrigflowError
from trigflow.scan import dominates, error_row, mark_front, parse_list, summarize


def trigflow(*args):
    return subprocess.run(
        [sys.executable, "-c", "from trigflow.cli import main; main()", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def small_scan(fake_jets, tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "s"
    args = ["scan", "mlp", "--bits", "4,6", "--sparsity", "0.5", "--reuse", "1", "--epochs", "1"]
    args += ["--data", str(fake_jets), "--out", str(out), "--cpus", "2"]
    args += ["--set", "model.hidden=8", "--set", "verify.min_samples=1000"]
    return out, args, trigflow(*args)


def test_scan_writes_table_front_and_plot(small_scan):
    out, _, result = small_scan
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "scan.csv").open()))
    assert sorted(r["id"] for r in rows) == ["b4_s0.5_r1", "b6_s0.5_r1"]
    doc = json.loads((out / "scan.json").read_text())
    assert len(doc["rows"]) == 2 and doc["front"]
    for row in doc["rows"]:
        assert row["status"] == "passed" and row["bit_exact_fraction"] == 1.0
        assert row["accuracy_firmware"] == row["accuracy_qkeras"]
        assert row["lut"] > 0 and row["latency_cycles"] > 0 and row["cost"] >= row["lut"]
        assert (out / "trials" / row["id"] / "run" / "report.json").is_file()
    front = [r for r in doc["rows"] if r["pareto"]]
    assert {r["id"] for r in front} == set(doc["front"])
    assert not any(dominates(a, b) for a in doc["rows"] for b in front)  # nothing dominates a front member
    assert all(any(dominates(a, b) for a in front) for b in doc["rows"] if not b["pareto"])
    assert (out / "pareto.png").stat().st_size > 0
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_scan_refuses_existing_folder_then_resumes_without_rerunning(small_scan):
    out, args, _ = small_scan
    refused = trigflow(*args)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    before = (out / "trials" / "b4_s0.5_r1" / "run" / "report.json").stat().st_mtime_ns
    resumed = trigflow(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(0 run now)" in resumed.stdout
    assert (out / "trials" / "b4_s0.5_r1" / "run" / "report.json").stat().st_mtime_ns == before


def _row(i, acc, cost, lat, passed=True):
    return {
        "id": f"t{i}",
        "bits": 6,
        "sparsity": 0.5,
        "reuse": 1,
        "status": "passed" if passed else "failed",
        "passed": passed,
        "pareto": False,
        "accuracy_float": 0.8,
        "accuracy_firmware": acc,
        "cost": cost,
        "latency_cycles": lat,
    }


def test_front_is_non_dominated_and_excludes_unproven_trials():
    rows = [
        _row(0, 0.80, 1000, 5),
        _row(1, 0.75, 500, 5),
        _row(2, 0.74, 600, 5),  # dominated by t1
        _row(3, 0.90, 100, 1, passed=False),  # would dominate all, but not bit-exact
        _row(4, 0.70, 900, 2),  # best latency
        error_row({"id": "t5", "bits": 4, "sparsity": 0.0, "reuse": 1}, "RuntimeError: boom"),
    ]
    assert mark_front(rows) == ["t0", "t1", "t4"]
    assert rows[5]["status"] == "error" and not rows[5]["pareto"] and "boom" in rows[5]["error"]


def test_summary_compares_small_pruned_model_with_unpruned_reference():
    ref = {**_row(0, 0.80, 5000, 6), "bits": 16, "sparsity": 0.0, "accuracy_float": 0.805}
    small = {**_row(1, 0.797, 800, 5), "bits": 6, "sparsity": 0.75}
    rows = [ref, small]
    mark_front(rows)
    s = summarize(rows)
    assert s["best_small_pruned"]["id"] == "t1"
    assert s["within_1_point_of_float"] and s["cheaper_than_reference"]


def test_parse_list():
    assert parse_list("4, 6,8", int, "bits") == (4, 6, 8)
    with pytest.raises(TrigflowError, match="--bits"):
        parse_list("4,x", int, "bits")


def test_per_layer_option_adds_sensitivity_trials_and_a_layer_bits_column(tmp_path):
    from trigflow.scan import ScanSpec, row_from_report, table_rows, trial_config

    grid = {"bits": (6,), "sparsity": (0.5,), "reuse": (1,), "per_layer": ("none", "sensitivity")}
    spec = ScanSpec(**grid, out=str(tmp_path))
    trials = spec.trials()
    assert [t["id"] for t in trials] == ["b6_s0.5_r1", "b6_s0.5_r1_pl"]
    assert [trial_config(spec, t).quant.per_layer for t in trials] == ["none", "sensitivity"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"quant": {"layer_bits": [6, 4, 3, 6]}}))
    row = row_from_report(trials[1], {"passed": True, "run_dir": str(run_dir)}, 100)
    assert (row["per_layer"], row["layer_bits"]) == ("sensitivity", "6/4/3/6")
    headers, cells = table_rows([row])
    assert headers[1] == "layer bits" and cells[0][1] == "6/4/3/6"
    with pytest.raises(TrigflowError, match="per_layer"):
        trial_config(spec, {**trials[1], "per_layer": "hessian"})


def test_summary_counts_per_layer_trials_by_their_widest_layer():
    ref = {**_row(0, 0.80, 5000, 6), "bits": 16, "sparsity": 0.0, "accuracy_float": 0.805}
    per_layer_ref = {**_row(1, 0.80, 1500, 6), "bits": 16, "sparsity": 0.0, "layer_bits": "8/6/4/4"}
    started_wide = {**_row(2, 0.798, 700, 5), "bits": 16, "sparsity": 0.75, "layer_bits": "6/5/4/3"}
    rows = [ref, per_layer_ref, started_wide]
    mark_front(rows)
    s = summarize(rows)
    assert s["reference"]["id"] == "t0"  # the uniform 16-bit model, not the per-layer one started at 16
    assert s["best_small_pruned"]["id"] == "t2" and s["best_small_pruned"]["layer_bits"] == "6/5/4/3"
    assert s["within_1_point_of_float"] and s["cheaper_than_reference"]
