"""End-to-end: `trigflow verify MODEL` on user model files, and its one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tiny_models import float_mlp, randomize


def trigflow(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "400"}  # rich wraps long lines at the terminal width; keep them whole
    return subprocess.run(
        [sys.executable, "-c", "from trigflow.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    root = tmp_path_factory.mktemp("verify")
    q = quantized_bits(6, 0, alpha=1)
    L = tf.keras.layers
    qmodel = randomize(
        tf.keras.Sequential(
            [
                L.InputLayer(input_shape=(8,)),
                QActivation(quantized_bits(12, 3, alpha=1), name="inq"),
                QDense(12, kernel_quantizer=q, bias_quantizer=q, name="dense_0"),
                QActivation(quantized_relu(6, 2), name="relu_0"),
                QDense(4, kernel_quantizer=q, bias_quantizer=q, name="dense_1"),
                L.Activation("softmax", name="softmax"),
            ]
        )
    )
    qmodel.save(root / "model.h5")
    fmodel = float_mlp(6, 8, 3, seed=1)
    fmodel.save(root / "float.h5")
    (root / "arch.json").write_text(fmodel.to_json())
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1500, 6)).astype(np.float32)
    y = np.argmax(fmodel.predict(x, verbose=0) + rng.normal(0, 0.1, (1500, 3)), axis=1)
    np.savez(root / "data.npz", x=x, y=y)
    (root / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(64))
    return root


@pytest.fixture(scope="module")
def quantized_run(files):
    out, prj = files / "out", files / "prj"
    result = trigflow(
        "verify", str(files / "model.h5"), "--n", "2000", "--out", str(out), "--project-dir", str(prj)
    )
    return out, prj, result


def test_verify_proves_a_qkeras_model(quantized_run):
    out, prj, result = quantized_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PASS" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "verify" and report["passed"] is True
    assert report["samples"] == 2000 and report["bit_exact_fraction"] == 1.0
    assert report["max_abs_diff_vs_qkeras"] == 0.0 and report["onnx_max_abs_diff"] <= 1e-5
    for key in (
        "max_abs_diff_vs_float",
        "project_dir",
        "versions",
        "timings_s",
        "checks",
        "failures",
        "localization",
        "overflow",
        "configuration",
    ):
        assert key in report
    assert report["head"]["activation"] == "softmax" and report["head"]["decision_agreement_vs_model"] == 1.0
    assert report["localization"]["first_differing_layer"] is None
    assert report["overflow"]["total_overflows"] == 0
    assert report["configuration"]["input"]["type"] == "fixed<12,4,RND_CONV,SAT>"
    assert set(report["checks"]) == {"bit_exact", "samples", "onnx_parity", "lossless_inputs"}
    assert (out / "junit.xml").read_text().count("<testcase") == 4
    raw = report["model_on_raw_data"]  # drawn inputs: the model's own quantizer is the input grid
    assert raw["changed_samples"] == 0 and raw["input_grid_by"] == "model" and raw["accuracy"] is None
    assert raw["firmware_bit_exact_fraction"] == 1.0
    assert report["argmax_agreement"]["firmware_vs_model_on_raw_data"] == 1.0
    assert (out / "ranges.png").stat().st_size > 0
    assert (prj / "firmware" / "myproject.cpp").exists()
    assert json.loads((prj / "trigflow_report.json").read_text())["bit_exact_fraction"] == 1.0


def test_rerun_refuses_to_overwrite(quantized_run, files):
    out, prj, _ = quantized_run
    result = trigflow("verify", str(files / "model.h5"), "--out", str(out), "--project-dir", str(prj))
    assert result.returncode == 2 and "--force" in result.stderr and "Traceback" not in result.stderr


def test_float_model_with_data_reports_difference_and_fails_a_tight_threshold(files):
    out = files / "fout"
    result = trigflow(
        "verify",
        str(files / "float.h5"),
        "--data",
        str(files / "data.npz"),
        "--out",
        str(out),
        "--project-dir",
        str(files / "fprj"),
        "--max-float-diff",
        "1e-9",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "FAIL float model" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert (
        report["passed"] is False
        and "float_agreement" in report["checks"]
        and "bit_exact" not in report["checks"]
    )
    assert report["configuration"]["quantized"] is False and report["samples"] == 1500
    assert 0 < report["max_abs_diff_vs_float"] < 0.05
    assert set(report["accuracy"]) == {"float", "qkeras", "firmware", "model_on_raw_data"}
    assert report["accuracy"]["model_on_raw_data"] == report["model_on_raw_data"]["accuracy"]
    assert (out / "roc.png").stat().st_size > 0 and (out / "ranges.png").stat().st_size > 0


def test_corrupt_model_is_a_one_line_error(files, tmp_path):
    result = trigflow("verify", str(files / "corrupt.h5"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        len(lines) == 1
        and lines[0].startswith("error: model file")
        and "not a readable HDF5 file" in lines[0]
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["arch.json"], "--weights"),
        (["missing.h5"], "not found"),
        (["model.h5", "--data", "data.npz"], "the model expects (8,)"),
        (["model.h5", "--n", "0"], "positive number"),
    ],
)
def test_bad_inputs_are_one_line_errors(files, tmp_path, args, message, monkeypatch, capsys):
    """In-process (same entry point as the console script, no interpreter start-up per case)."""
    from trigflow.cli import main

    args = [str(files / a) if a.endswith((".h5", ".json", ".npz")) else a for a in args]
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(
        sys,
        "argv",
        ["trigflow", "verify", *args, "--out", str(tmp_path / "o"), "--project-dir", str(tmp_path / "p")],
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


def test_firmware_rtl_of_a_float_model_is_refused_before_any_firmware(files, tmp_path):
    out, prj = tmp_path / "o", tmp_path / "p"
    result = trigflow("verify", str(files / "float.h5"), "--out", str(out), "--project-dir", str(prj),
                      "--set", "firmware.rtl=true")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: firmware.rtl needs a fully quantized (QKeras) model: a float model has no exact RTL; "
                      "quantize it, or verify without firmware.rtl"]
    assert not out.exists() and not prj.exists()


@pytest.mark.slow  # 60-90 s: the HLS proof, then da4ml trace + Verilator build of the 8-12-4 model
def test_verify_with_firmware_rtl_proves_the_rtl_on_the_same_inputs(files, tmp_path):
    out, prj = tmp_path / "out", tmp_path / "prj"
    result = trigflow(
        "verify", str(files / "model.h5"), "--n", "1200", "--out", str(out), "--project-dir", str(prj),
        "--set", "verify.min_samples=1000", "--set", "firmware.rtl=true",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rtl = json.loads((out / "rtl_report.json").read_text())
    assert rtl["kind"] == "verify" and rtl["rtl_dir"] == str((prj / "rtl").resolve()) and rtl["passed"]
    proof = rtl["proof"]
    assert proof["source"] == "rtl" and proof["samples"] == 1200 and proof["bit_exact_fraction"] == 1.0
    assert proof["interpreter_bit_exact_fraction"] == 1.0 and proof["verilator_bit_exact_fraction"] == 1.0
    assert proof["engine"] == "emulator" and rtl["checks"]["engines_agree"]["passed"]
    assert json.loads((out / "report.json").read_text())["passed"]
    assert "RTL (da4ml Verilog, Verilator)" in (out / "index.html").read_text()


def test_load_data_formats(tmp_path):
    import h5py

    from trigflow.errors import TrigflowError
    from trigflow.verify_model import load_data

    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    y = np.eye(3)[[0, 1, 2, 0, 1, 2]]  # one-hot labels become class ids
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["features"] = x
        f["labels"] = y
    with pytest.raises(TrigflowError, match=r"shape \(4,\) per sample, the model expects \(2, 2\); pass"):
        load_data(tmp_path / "d.h5", (2, 2), n=5)  # another shape: only with the opt-in reshape rule
    xs, ys = load_data(tmp_path / "d.h5", (2, 2), n=5, reshape=True)
    assert xs.shape == (5, 2, 2) and ys.tolist() == [0, 1, 2, 0, 1]
    np.save(tmp_path / "d.npy", x)
    xs, ys = load_data(tmp_path / "d.npy", (4,))
    assert xs.shape == (6, 4) and ys is None
    with pytest.raises(TrigflowError, match="no input array found"):
        with h5py.File(tmp_path / "e.h5", "w") as f:
            f["a"], f["b"] = x, x
        load_data(tmp_path / "e.h5", (4,))


def test_thresholds_from_defaults_file_and_flags(tmp_path):
    from trigflow.verify_model import verify_config

    assert verify_config().verify.min_samples == 1000  # verify's own default (runs need 10,000)
    path = tmp_path / "c.yaml"
    path.write_text(
        "verify:\n  min_samples: 50\n  min_bit_exact_fraction: 0.5\nfirmware:\n  io_type: io_stream\n"
    )
    cfg = verify_config(path)
    assert (cfg.verify.min_samples, cfg.verify.min_bit_exact_fraction, cfg.firmware.io_type) == (
        50,
        0.5,
        "io_stream",
    )
    cfg = verify_config(path, {"verify": {"min_samples": 7}})  # flags win over the file
    assert cfg.verify.min_samples == 7 and cfg.verify.min_bit_exact_fraction == 0.5


def test_grid_that_changes_the_model_fails_with_the_reason(tmp_path):
    """Float data no QKeras input grid holds (|x| beyond 2**30 beside 1e-3 detail) feeding a QDense without
    an input quantizer: the firmware could only implement the model on clipped, rounded inputs — FAIL, one
    line naming the clipping."""
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    model = randomize(
        tf.keras.Sequential(
            [QDense(3, input_shape=(2,), kernel_quantizer=quantized_bits(6, 0, alpha=1), name="d")]
        )
    )
    model.save(tmp_path / "m.h5")
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1e9, 1000), rng.normal(0, 1e-3, 1000)], axis=1).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    out = tmp_path / "out"
    result = trigflow(
        "verify", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz"), "--out", str(out),
        "--project-dir", str(tmp_path / "prj"),
    )
    assert result.returncode == 1, result.stderr[-3000:]
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("FAIL")]
    raw_clipped = int(np.sum(np.abs(x[:, 0]) >= 2.0**30))
    assert line.startswith("FAIL input grid fixed<") and f"clips {raw_clipped:,} of 1,000 samples" in line
    assert "changing the model's logits on" in line
    report = json.loads((out / "report.json").read_text())
    assert report["checks"]["bit_exact"]["passed"] and not report["checks"]["lossless_inputs"]["passed"]
    assert report["model_on_raw_data"]["changed_samples"] > 900
    (row,) = [r for r in report["overflow"]["layers"] if r["class"] == "Input"]
    assert row["saturated_samples"] == raw_clipped  # counted at the input, on the raw data
    assert "saturation: input" in report["verdict_note"] and "saturation: input" in result.stderr


def test_lossless_check_names_clipping_and_float_layer_boundaries():
    """The one-line reasons: a grid that clips the data (the issue's fixed<16,6> on raw GeV) fails; a few
    rounding-boundary cases after a float BatchNormalization pass, named."""
    from trigflow.proof.checks import check_lossless

    clipped = {
        "samples": 3000, "changed_samples": 2970, "input_type": "fixed<16,6,RND_CONV,SAT>",
        "input_saturated_samples": 2970, "input_saturated_values": 9100, "observed": [-0.8, 1310.0],
        "float_layers": ["batchnorm"],
    }
    ok, detail = check_lossless(clipped)
    assert not ok and detail.startswith("input grid fixed<16,6,RND_CONV,SAT> clips 2,970 of 3,000 samples")
    assert "1310" in detail
    boundary = {**clipped, "input_type": "fixed<35,12>", "changed_samples": 2, "input_saturated_samples": 0,
                "input_saturated_values": 0}
    ok, detail = check_lossless(boundary)
    assert ok and "2 of 3,000 samples" in detail and "float layer batchnorm" in detail
    ok, _ = check_lossless({**boundary, "changed_samples": 4})  # > 0.1 %
    assert not ok
    ok, _ = check_lossless({**boundary, "float_layers": []})  # no float layer: any change fails
    assert not ok


def test_reshape_rule_flattens_sorts_truncates_and_pads():
    """``--reshape``: flattened ↔ (N, F) in C order; (P, F) constituents sorted by the first feature (pT),
    highest first, truncated or zero-padded to the model's N (the rule of ``trigflow evaluate``)."""
    from trigflow.errors import TrigflowError
    from trigflow.verify_model import fit_shape

    x = np.array([[[1.0, 0.1, 0.2], [5.0, 0.3, 0.4], [0.0, 0.0, 0.0], [3.0, 0.5, 0.6]]], np.float64)
    same, record = fit_shape(x, (4, 3), False, "d")
    assert same is x and record is None
    flat, record = fit_shape(x, (12,), True, "d")
    np.testing.assert_array_equal(flat, x.reshape(1, 12))
    assert record == {"from": [4, 3], "to": [12], "rule": "flatten", "order": "C"}
    top2, record = fit_shape(x, (2, 3), True, "d")
    np.testing.assert_array_equal(top2, [[[5.0, 0.3, 0.4], [3.0, 0.5, 0.6]]])
    assert record["rule"] == "constituents" and record["samples_truncated"] == 1
    assert (record["constituents_supplied"], record["constituents_expected"], record["features"]) == (4, 2, 3)
    padded, record = fit_shape(x.reshape(1, 12), (6, 3), True, "d")  # flattened data, the model gives F
    np.testing.assert_array_equal(padded[0, :3], [[5.0, 0.3, 0.4], [3.0, 0.5, 0.6], [1.0, 0.1, 0.2]])
    np.testing.assert_array_equal(padded[0, 3:], np.zeros((3, 3)))
    assert record["samples_zero_padded"] == 1 and record["samples_truncated"] == 0
    flat2, record = fit_shape(x, (6,), True, "d")  # a flattened model of 2 constituents, F from the data
    np.testing.assert_array_equal(flat2, [[5.0, 0.3, 0.4, 3.0, 0.5, 0.6]])
    with pytest.raises(TrigflowError, match="no reshape rule applies"):
        fit_shape(x, (5, 2), True, "d")  # F differs: ambiguous


@pytest.mark.slow  # 20-30 s (trains a 16-constituent model); the rule itself: test_reshape_rule_flattens_...
def test_reshape_pads_constituents_and_is_recorded(tmp_path):
    """8 constituents for a 16-constituent model: exit 2 without --reshape (nothing written); with it the
    rows are sorted by pT and zero-padded, the proof runs on the padded data and the report says so."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    x_in = tf.keras.Input((16, 3))
    h = tf.keras.layers.Flatten(name="flat")(QActivation(quantized_bits(10, 6, alpha=1), name="inq")(x_in))
    model = randomize(tf.keras.Model(x_in, QDense(3, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                                  name="head")(h)))
    model.save(tmp_path / "m.h5")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 60, (1000, 8, 1)), rng.normal(0, 0.3, (1000, 8, 2))], axis=2)
    np.savez(tmp_path / "d.npz", x=x.astype(np.float32), y=rng.integers(0, 3, 1000))
    out, prj = tmp_path / "out", tmp_path / "prj"
    args = ("verify", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz"), "--out", str(out),
            "--project-dir", str(prj))
    refused = trigflow(*args)
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "inputs of shape (8, 3) per sample, the model expects (16, 3)" in lines[0]
    assert "--reshape" in lines[0] and not out.exists() and not prj.exists()
    result = trigflow(*args, "--reshape")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data reshaped (--reshape)" in result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["reshape"] == {
        "from": [8, 3], "to": [16, 3], "rule": "constituents", "constituents_supplied": 8,
        "constituents_expected": 16, "features": 3,
        "order": "sorted by the first feature (pT), highest first",
        "samples_truncated": 0, "samples_zero_padded": 1000,
    }
    assert report["bit_exact_fraction"] == 1.0 and report["samples"] == 1000


def test_public_jet_formats_are_read_as_evaluate_reads_them(tmp_path):
    """A hls4ml jet .h5 (jetConstituentList, 16 Zenodo features) and an .npz with particleFeatureNames give
    their (pT, η_rel, φ_rel) columns (``trigflow.data.public.raw_constituents``), labels from the file, and
    the report says which format was read."""
    import h5py

    from trigflow.data.public import ZENODO_PARTICLE_FEATURES
    from trigflow.verify_model import fit_shape, read_data

    rng = np.random.default_rng(0)
    const = rng.normal(size=(6, 5, 16)).astype(np.float32)
    names = list(ZENODO_PARTICLE_FEATURES)
    want = const[..., [names.index("j1_pt"), names.index("j1_etarel"), names.index("j1_phirel")]]
    np.savez(tmp_path / "c.npz", constituents=const, particleFeatureNames=np.array(names), y=np.arange(6) % 5)
    x, y, public = read_data(tmp_path / "c.npz")
    np.testing.assert_array_equal(x, want)
    assert y.tolist() == [0, 1, 2, 3, 4, 0] and public.startswith("npz with named constituent features")
    from trigflow.data import HLF_NAMES

    jet_names = [f"j_{n}" for n in (*HLF_NAMES, "pt", "eta", "mass", "g", "q", "w", "z", "t")]
    jets = np.zeros((6, len(jet_names)), np.float32)
    for k, c in enumerate(("g", "q", "w", "z", "t", "g")):
        jets[k, jet_names.index(f"j_{c}")] = 1
    with h5py.File(tmp_path / "j.h5", "w") as f:
        f["jets"] = jets
        f["jetFeatureNames"] = np.array([s.encode() for s in jet_names])
        f["jetConstituentList"] = const
        f["particleFeatureNames"] = np.array([s.encode() for s in names])
    x, y, public = read_data(tmp_path / "j.h5", n=4)
    np.testing.assert_array_equal(x, want[:4])
    assert y.tolist() == [0, 1, 2, 3] and public.startswith("hls4ml jet h5")
    top, record = fit_shape(x, (8, 3), True, "d")  # 5 constituents for an 8-constituent model: zero-padded
    assert top.shape == (4, 8, 3) and record["rule"] == "constituents"
