"""End-to-end: the `trigflow run mlp` command on a small data file, and its refusals."""

import json
import subprocess
import sys

import numpy as np


def trigflow(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", "from trigflow.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_run_proves_the_firmware(small_run):
    root, _, result = small_run
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["bit_exact_fraction"] == 1.0
    assert report["samples"] == 1500
    assert report["onnx_max_abs_diff"] <= 1e-5
    assert report["accuracy"]["firmware"] == report["accuracy"]["qkeras"]
    for key in ("kind", "max_abs_diff_vs_qkeras", "max_abs_diff_vs_float", "project_dir", "versions", "timings_s"):
        assert key in report
    assert {"tensorflow", "qkeras", "hls4ml", "onnxruntime"} <= set(report["versions"])
    assert (root / "prj" / "firmware" / "myproject.cpp").exists()
    assert (root / "out" / "junit.xml").read_text().count("<testcase") == 3
    assert (root / "out" / "roc.png").stat().st_size > 0
    assert report["source"] == "estimate" and report["latency_cycles"] > 0 and report["resources"]["lut"] > 0
    assert report["pruning"]["target"] == 0.5 and abs(report["pruning"]["reached"] - 0.5) < 0.01  # MLP default
    assert "verdict_note" not in report and "pruned weights" in result.stdout


def test_pruning_short_of_its_target_is_on_the_verdict_line():
    import tensorflow as tf

    from trigflow.config import load_config
    from trigflow.pipeline import pruning_sections
    from trigflow.quantize.train import Trained

    dense = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    dense.set_weights([np.array([[0, 1], [2, 3], [4, 5], [6, 7]], "float32"), np.zeros(2, "float32")])
    trained = Trained(qmodel=dense, float_model=dense)
    assert pruning_sections(trained, load_config("mlp", overrides={"quant": {"sparsity": 0.0}})) == {}
    sections = pruning_sections(trained, load_config("mlp"))
    assert sections["pruning"] == {"target": 0.5, "reached": 0.125}
    assert sections["verdict_note"].startswith("pruning reached 12.5% zero weights, not the 50% target")


def test_estimate_command_reads_the_run(small_run):
    root, _, _ = small_run
    result = trigflow("estimate", str(root / "out"))
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "logits" in result.stdout


def test_synth_without_vendor_tools_exits_3(small_run):
    root, _, _ = small_run
    result = trigflow("synth", str(root / "prj"))
    assert result.returncode == 3
    assert "not found on PATH" in result.stderr and "Traceback" not in result.stderr


def test_rerun_refuses_to_overwrite(small_run):
    root, args, _ = small_run
    before = (root / "out" / "report.json").read_text()
    result = trigflow(*args)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "out" / "report.json").read_text() == before


def test_failed_threshold_exits_nonzero(fake_jets, tmp_path):
    args = ["run", "mlp", "--data", str(fake_jets), "--out", str(tmp_path / "o"), "--project-dir", str(tmp_path / "p")]
    result = trigflow(
        *args, "--epochs", "1", "--set", "model.hidden=8", "--set", "verify.min_samples=1000",
        "--set", "verify.max_onnx_abs_diff=-1",
    )
    assert result.returncode == 1
    assert "FAIL onnx_max_abs_diff" in result.stdout + result.stderr
    assert json.loads((tmp_path / "o" / "report.json").read_text())["passed"] is False


def test_bad_option_is_one_line(tmp_path):
    result = trigflow("run", "mlp", "--set", "quant.bitz=3", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "did you mean 'bits'" in result.stderr
    assert "Traceback" not in result.stderr


def test_same_seed_gives_identical_weights_project_and_report(small_run, tmp_path):
    """Determinism: a second run with the same config reproduces every weight, firmware file and figure."""
    import h5py

    root, args, _ = small_run
    second = [a.replace(str(root), str(tmp_path)) for a in args]
    result = trigflow(*second)
    assert result.returncode == 0, result.stderr[-2000:]

    def report(base):
        r = json.loads((base / "out" / "report.json").read_text())
        return {k: v for k, v in r.items() if k not in ("timings_s", "run_dir", "project_dir")}

    assert report(root) == report(tmp_path)
    with h5py.File(root / "out" / "qkeras_model.h5") as a, h5py.File(tmp_path / "out" / "qkeras_model.h5") as b:
        names = []
        a["model_weights"].visit(names.append)
        for name in names:
            if isinstance(a["model_weights"][name], h5py.Dataset):
                assert a["model_weights"][name][()].tobytes() == b["model_weights"][name][()].tobytes(), name
    firmware = sorted(p.relative_to(root / "prj") for p in (root / "prj" / "firmware").rglob("*") if p.is_file())
    assert firmware  # sources, weight headers and the content-stamped library
    for rel in firmware:
        assert (root / "prj" / rel).read_bytes() == (tmp_path / "prj" / rel).read_bytes(), rel


def test_concurrent_run_on_same_project_is_refused(fake_jets, tmp_path):
    from trigflow.fsio import exclusive

    args = ["run", "mlp", "--data", str(fake_jets), "--out", str(tmp_path / "o"), "--project-dir", str(tmp_path / "p")]
    with exclusive(tmp_path / "p"):
        result = trigflow(*args, "--epochs", "1", "--set", "verify.min_samples=1000")
    assert result.returncode == 2
    assert "being written by another trigflow run" in result.stderr
    assert not (tmp_path / "p").exists() and not (tmp_path / "o").exists()
