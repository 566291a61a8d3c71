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
    np.testing.assert_array_equal(project.emulator().predict(x), reference)
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
    np.testing.assert_array_equal(again.interpret(x), exact_predict(_mlp((8,)), x))


def test_a_layer_the_tracer_cannot_express_is_refused_by_name():
    import tensorflow as tf

    inputs = tf.keras.Input((4,), name="x")
    out = tf.keras.layers.BatchNormalization(name="bn")(inputs)
    model = tf.keras.Model(inputs, out)
    with pytest.raises(TrigflowError, match=r"layer 'bn' \(BatchNormalization\) cannot be traced"):
        trace_model(model, INPUT_KIF)


def test_a_design_larger_than_its_part_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(rtl_mod, "DEVICE_LUTS", ((r"xcvu13p", 10),))
    with pytest.raises(TrigflowError, match=r"needs about [\d,]+ LUTs .*more than the 10 LUTs of xcvu13p.*--max-lut"):
        build_rtl(_mlp((4,)), INPUT_KIF, tmp_path / "rtl", part="xcvu13p-flga2577-2-e")
    with pytest.raises(TrigflowError, match=r"more than --max-lut 1;"):
        build_rtl(_mlp((4,)), INPUT_KIF, tmp_path / "rtl", max_lut=1)
    assert not (tmp_path / "rtl").exists()


def test_device_luts_of_known_and_unknown_parts():
    assert rtl_mod.device_luts("xcvu13p-flga2577-2-e") == 1_728_000
    assert rtl_mod.device_luts("xcu250-figd2104-2L-e") == 1_728_000
    assert rtl_mod.device_luts("xc7z020clg400-1") is None


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
    assert report["rtl_dir"] == str((prj / "rtl").resolve()) and not (prj / "rtl" / "rtl_report.json").exists()
    proof = report["proof"]
    assert proof["source"] == "rtl" and proof["bit_exact_fraction"] == 1.0 and proof["samples"] == 1500
    assert proof["interpreter_bit_exact_fraction"] == 1.0 and report["passed"]
    assert proof["engine"] == "emulator" and proof["verilator_bit_exact_fraction"] == 1.0
    assert proof["engine_samples"] == {"emulator": 1500, "verilator": 1500, "interpreter": 1500}
    c_sim = json.loads((out / "report.json").read_text())
    assert {k for k in c_sim if k in proof} >= {"samples", "bit_exact_fraction", "mismatched_samples",
                                                "first_mismatch", "max_abs_diff_vs_qkeras", "max_abs_diff_vs_float"}
    page = (out / "index.html").read_text()
    assert "RTL (da4ml Verilog, Verilator)" in page and "interpreter bit exact fraction" in page
    again = _trigflow("rtl", str(out))  # the RTL folder exists: refused without --force, left as it was
    assert again.returncode == 2 and "--force" in again.stderr


GNN_SPEC = QuantSpec(bits=6, integer=0, input_bits=10, input_integer=3)
GNN_KIF = (1, GNN_SPEC.input_integer, GNN_SPEC.input_bits - 1 - GNN_SPEC.input_integer)


def _randomized(model, seed: int = 1):
    """Laplace weights on the trainable layers; the graph networks' fixed 0/1 structure layers stay."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(rng.laplace(0, 0.5, weight.shape).astype(np.float32))
    return model


def _particles(n: int, n_particles: int, seed: int = 0) -> np.ndarray:
    """Particle clouds on the input grid, saturating at both ends, some slots zero-padded."""
    rng = np.random.default_rng(seed)
    x = np.array(GNN_SPEC.quantize_input(rng.normal(0, 3, (n, n_particles, 3))))
    x[::3, -1] = 0.0
    return x


def _assert_gnn_rtl_exact(model, folder, n_particles: int, n: int = 400) -> dict:
    from trigflow.proof.reference import exact_predict

    x = _particles(n, n_particles)
    project = build_rtl(model, GNN_KIF, folder)
    reference = exact_predict(model, x)
    np.testing.assert_array_equal(project.predict(x), reference)
    np.testing.assert_array_equal(project.interpret(x), reference)
    np.testing.assert_array_equal(project.emulator().predict(x), reference)
    return project.manifest


def test_tiny_deepsets_rtl_is_bit_exact(tmp_path):
    """Deep Sets, 4 particles: rank-3 QDense per particle, mean pooling (adder tree + shift), ρ head."""
    from trigflow.models.gnn import build_deepsets

    model = _randomized(build_deepsets(4, 3, 5, spec=GNN_SPEC, phi_hidden=(4, 4), rho_hidden=(4,)))
    manifest = _assert_gnn_rtl_exact(model, tmp_path / "rtl", 4)
    assert manifest["inputs"]["shape"] == [4, 3] and manifest["outputs"]["shape"] == [5]


@pytest.mark.slow
def test_tiny_interaction_network_rtl_is_bit_exact(tmp_path):
    """Interaction Network, 4 particles (12 edges): the fixed gather/aggregate matrices, Permute, Concatenate,
    rank-3 edge and node QDense, sum pooling (Dense of ones). 89 s here (Verilator build; machine loaded)."""
    from trigflow.models.gnn import build_interaction_network

    model = build_interaction_network(4, 3, 5, spec=GNN_SPEC, edge_hidden=(4,), edge_dim=2, node_hidden=(4,),
                                      node_dim=2, head_hidden=(4,), pooling="sum")
    _assert_gnn_rtl_exact(_randomized(model), tmp_path / "rtl", 4)


def test_the_firmware_graphs_pointwise_conv_form_traces_to_the_same_exact_outputs():
    """`prepare_gnn_for_hls` proves the graph with rank-3 QDense rewritten to QConv1D(k=1): both forms trace to
    logic equal to the exact reference (da4ml's interpreter; no Verilator build)."""
    from da4ml.trace import comb_trace

    from trigflow.firmware.passes.dense_to_pointwise_conv import DenseToPointwiseConv
    from trigflow.models.gnn import build_deepsets
    from trigflow.proof.reference import exact_predict

    model = _randomized(build_deepsets(4, 3, 5, spec=GNN_SPEC, phi_hidden=(4, 4), rho_hidden=(4,)))
    conv, changed = DenseToPointwiseConv().apply(model)
    assert changed and "QConv1D" in {type(layer).__name__ for layer in conv.layers}
    x = _particles(300, 4)
    reference = exact_predict(model, x)
    for form in (model, conv):
        inp, out = trace_model(form, GNN_KIF)
        logic = comb_trace(inp, out)
        np.testing.assert_array_equal(np.asarray(logic.predict(x.reshape(len(x), -1))), reference)


def test_mean_pooling_over_a_count_that_is_no_power_of_two_is_refused():
    from trigflow.models.gnn import build_deepsets

    model = build_deepsets(3, 3, 5, spec=GNN_SPEC, phi_hidden=(2,), rho_hidden=(2,), pooling="mean")
    with pytest.raises(TrigflowError, match=r"layer 'pool_mean' \(GlobalAveragePooling1D\) averages 3 items"):
        trace_model(model, GNN_KIF)


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


def _rtl_of_run(run, kind: str) -> dict:
    """``trigflow rtl`` on a passed run: its report, asserted exact on the run's whole test set."""
    from trigflow import api

    assert run.passed, run.failures
    result = api.rtl(run.run_dir)
    report = json.loads((run.run_dir / "rtl_report.json").read_text())
    proof = report["proof"]
    samples = len(np.load(run.run_dir / "test_data.npz")["x"])
    assert result.failures == [] and report["passed"] and report["kind"] == kind
    assert proof["source"] == "rtl" and proof["samples"] == samples and proof["bit_exact_fraction"] == 1.0
    return report


@pytest.mark.slow
def test_deepsets_run_then_trigflow_rtl_proves_the_rtl(tmp_path, monkeypatch):
    """`trigflow run gnn` (Deep Sets, 8 particles, φ 8-8 for a small design) then `trigflow rtl` on its folder:
    the RTL simulation equals the exact reference on the run's whole test set."""
    from trigflow import api, rtl_run
    from trigflow.kinds import gnn

    monkeypatch.setattr(gnn, "DEEPSETS_WIDTHS", {"phi_hidden": (8, 8)})
    monkeypatch.setattr(rtl_run, "VERILATOR_SAMPLES", 200)  # the compiled emulator alone runs the rest
    run = api.run(
        "gnn", out=str(tmp_path / "out"), project_dir=str(tmp_path / "prj"),
        model={"arch": "deepsets", "n_particles": 8, "hidden": (8,)}, data={"max_samples": 3000},
        quant={"epochs": 2, "bits": 6}, verify={"min_samples": 500},
    )
    report = _rtl_of_run(run, "gnn")
    proof = report["proof"]
    assert proof["interpreter_bit_exact_fraction"] == 1.0 and proof["verilator_bit_exact_fraction"] == 1.0
    assert proof["engine_samples"] == {"emulator": proof["samples"], "verilator": 200, "interpreter": 200}
    assert "the compiled emulator alone ran all" in report["checks"]["engines_agree"]["detail"]
    assert report["rtl"]["inputs"]["shape"] == [8, 3]


@pytest.mark.slow
def test_autoencoder_run_then_trigflow_rtl_proves_the_score_firmware(tmp_path):
    """`trigflow run ae` (57-8-3-8-57, 6 bits) then `trigflow rtl`: the traced model is the deployed one (the
    reconstruction score Σ (x − x̂)² on chip, from qkeras_deployed.h5), exact on the run's whole test set."""
    from trigflow import api

    run = api.run(
        "ae", out=str(tmp_path / "out"), project_dir=str(tmp_path / "prj"), model={"hidden": (8,), "latent": 3},
        data={"max_samples": 8000}, quant={"epochs": 1}, verify={"min_samples": 1000},
    )
    report = _rtl_of_run(run, "ae")
    assert report["rtl"]["outputs"]["shape"] == [1]  # one score per event, not the 57 reconstructions


def test_engines_that_disagree_fail_the_rtl_proof():
    from trigflow.rtl_run import _engines_agree

    proof = {
        "engine": "emulator", "engine_samples": {"emulator": 5000, "verilator": 1000, "interpreter": 1000},
        "interpreter_bit_exact_fraction": 1.0, "verilator_bit_exact_fraction": 0.999,
    }
    verdict = _engines_agree(proof)
    assert not verdict["passed"]
    assert verdict["detail"] == (
        "Verilator = emulator on 0.999000, da4ml interpreter = emulator on 1.000000 of the first 1,000 samples; "
        "the compiled emulator alone ran all 5,000"
    )
    assert _engines_agree({**proof, "verilator_bit_exact_fraction": 1.0})["passed"]
    fallback = {"engine": "verilator", "engine_samples": {"emulator": 0, "verilator": 5000, "interpreter": 5000},
                "interpreter_bit_exact_fraction": 1.0, "emulator_unsupported": "op 7 multiplies beyond 62 bits"}
    assert _engines_agree(fallback) == {"passed": True, "detail": (
        "da4ml interpreter = verilator on 1.000000 of the first 5,000 samples; compiled emulator not used "
        "(op 7 multiplies beyond 62 bits)")}


@pytest.mark.slow  # ~30 s: a Verilator build of the 16-4-5 MLP
def test_when_g_plus_plus_fails_verilator_proves_every_sample_and_the_report_says_why(tmp_path, monkeypatch):
    from trigflow.firmware import logic_emulator
    from trigflow.proof.reference import exact_predict
    from trigflow.rtl_run import prove_rtl_of
    from trigflow.ui import StageUI

    def broken(logic, folder):
        raise RuntimeError("g++ could not compile the logic emulator")

    monkeypatch.setattr(logic_emulator, "compile_logic", broken)
    model, x = _mlp((4,)), _inputs(600)
    reference = exact_predict(model, x)
    report = prove_rtl_of(
        model, {"reference": reference, "qkeras": reference, "float": reference}, x, INPUT_KIF, tmp_path / "rtl",
        firmware={"clock_period": 5.0, "part": "xcvu13p-flga2577-2-e"},
        thresholds={"min_samples": 500, "min_bit_exact_fraction": 1.0}, ui=StageUI(quiet=True),
    )
    proof = report["proof"]
    assert report["passed"] and proof["engine"] == "verilator" and proof["bit_exact_fraction"] == 1.0
    assert proof["engine_samples"] == {"emulator": 0, "verilator": 600, "interpreter": 600}
    assert "g++ could not compile it" in report["checks"]["engines_agree"]["detail"]
