"""The RTL backend: QKeras → da4ml logic → Verilog → Verilator, bit for bit against the exact QKeras reference."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware import rtl as rtl_mod
from trigflow.firmware.rtl import MANIFEST, MANIFEST_KEYS, build_rtl, load_rtl, trace_model
from trigflow.quantize.presets import QuantSpec

SPEC = QuantSpec(bits=6, integer=0)
INPUT_KIF = (1, SPEC.input_integer, SPEC.input_bits - 1 - SPEC.input_integer)


def _mlp(hidden: tuple[int, ...], seed: int = 1):
    from trigflow.models.mlp import build_mlp

    model = build_mlp(16, 5, hidden, spec=SPEC, seed=seed)
    rng = np.random.default_rng(seed)  # Laplace weights: many non-zero, some large (saturating relus)
    model.set_weights([rng.laplace(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    """Inputs on the firmware grid, wide enough to saturate the input quantizer at both ends."""
    rng = np.random.default_rng(seed)
    return SPEC.quantize_input(rng.normal(0, 3, (n, 16)))


def _assert_rtl_exact(model, folder, n: int) -> dict:
    from trigflow.proof.reference import exact_predict

    x = _inputs(n)
    project = build_rtl(model, INPUT_KIF, folder, clock_period=5.0)
    reference = exact_predict(model, x)
    np.testing.assert_array_equal(project.predict(x), reference)
    np.testing.assert_array_equal(project.interpret(x), reference)
    return project.manifest


def test_small_mlp_rtl_is_bit_exact(tmp_path):
    """16-8-5, 6 bits: ~45 s here (trace 5 s once numba has compiled da4ml, Verilator build ~35 s)."""
    manifest = _assert_rtl_exact(_mlp((8,)), tmp_path / "rtl", 5000)
    on_disk = json.loads((tmp_path / "rtl" / MANIFEST).read_text())
    assert on_disk == manifest and set(MANIFEST_KEYS) <= set(manifest)
    assert manifest["top"] == "trigflow_top_wrapper" and manifest["ii"] == 1 and manifest["latency_cycles"] >= 1
    assert all((tmp_path / "rtl" / src).is_file() for src in manifest["sources"])
    assert (tmp_path / "rtl" / "build_vivado_prj.tcl").is_file()
    assert (tmp_path / "rtl" / "src" / "trigflow_top.xdc").is_file()
    again = load_rtl(tmp_path / "rtl")  # a written project loads back with its emulator
    x = _inputs(100, seed=3)
    from trigflow.proof.reference import exact_predict

    np.testing.assert_array_equal(again.predict(x), exact_predict(_mlp((8,)), x))


def test_a_layer_the_tracer_cannot_express_is_refused_by_name():
    import tensorflow as tf

    inputs = tf.keras.Input((4,), name="x")
    out = tf.keras.layers.BatchNormalization(name="bn")(inputs)
    model = tf.keras.Model(inputs, out)
    with pytest.raises(TrigflowError, match=r"layer 'bn' \(BatchNormalization\) cannot be traced"):
        trace_model(model, INPUT_KIF)


def test_a_folder_without_rtl_is_refused(tmp_path):
    with pytest.raises(TrigflowError, match="no RTL project.*trigflow rtl"):
        load_rtl(tmp_path)


def test_a_verilator_failure_names_its_log_and_leaves_nothing(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "verilator"
    script.write_text("#!/bin/sh\necho '%Error: broken verilator' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(rtl_mod, "verilator_bin", lambda: fake)
    with pytest.raises(TrigflowError, match=r"Verilator build of the RTL failed: .*\(log: .*\.log\)") as info:
        build_rtl(_mlp((4,)), INPUT_KIF, tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()
    log = str(info.value).rsplit("(log: ", 1)[1].rstrip(")")
    assert "broken verilator" in open(log).read()


@pytest.mark.slow
def test_default_mlp_rtl_is_bit_exact(tmp_path):
    """The default jet MLP, 16-64-32-32-5 at 6 bits."""
    _assert_rtl_exact(_mlp((64, 32, 32)), tmp_path / "rtl", 20000)


def _trigflow(*args):
    import subprocess
    import sys

    command = [sys.executable, "-c", "from trigflow.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True)


def test_rtl_command_on_a_folder_that_is_no_run(tmp_path):
    result = _trigflow("rtl", str(tmp_path))
    assert result.returncode == 2
    assert "config.json not found" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_run_with_firmware_rtl_proves_the_rtl_too(fake_jets, tmp_path):
    """`trigflow run mlp --set firmware.rtl=true` on a 16-8-5 MLP: the C-sim and the RTL proofs pass."""
    out, prj = tmp_path / "out", tmp_path / "prj"
    result = _trigflow(
        "run", "mlp", "--data", str(fake_jets), "--out", str(out), "--project-dir", str(prj), "--epochs", "2",
        "--set", "verify.min_samples=1000", "--set", "model.hidden=8", "--set", "firmware.rtl=true",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "rtl_report.json").read_text())
    assert report == json.loads((prj / "rtl" / "rtl_report.json").read_text())
    proof = report["proof"]
    assert proof["source"] == "rtl" and proof["bit_exact_fraction"] == 1.0 and proof["samples"] == 1500
    assert proof["interpreter_bit_exact_fraction"] == 1.0 and report["passed"]
    c_sim = json.loads((out / "report.json").read_text())
    assert {k for k in c_sim if k in proof} >= {"samples", "bit_exact_fraction", "mismatched_samples",
                                                "first_mismatch", "max_abs_diff_vs_qkeras", "max_abs_diff_vs_float"}
    page = (out / "index.html").read_text()
    assert "RTL (da4ml Verilog, Verilator)" in page and "interpreter bit exact fraction" in page
    again = _trigflow("rtl", str(out))  # the RTL folder exists: refused without --force, left as it was
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
def test_autoencoder_with_its_on_chip_score_rtl_is_bit_exact(tmp_path):
    """The default AE (57-32-16-3-16-32-57, 6 bits) with the reconstruction score Σ (x − x̂)² on chip."""
    from trigflow.models.autoencoder import build_autoencoder, build_deployed
    from trigflow.proof.reference import exact_predict

    model = build_autoencoder(57, (32, 16), 3, spec=SPEC, seed=1)
    rng = np.random.default_rng(1)
    model.set_weights([rng.laplace(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    deployed = build_deployed(model, quantized=True, spec=SPEC)
    x = SPEC.quantize_input(np.random.default_rng(0).normal(0, 3, (5000, 57)))
    project = build_rtl(deployed, INPUT_KIF, tmp_path / "rtl")
    reference = exact_predict(deployed, x)
    np.testing.assert_array_equal(project.predict(x), reference)
    np.testing.assert_array_equal(project.interpret(x), reference)
