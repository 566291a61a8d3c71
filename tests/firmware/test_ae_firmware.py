"""The anomaly trigger: score computed in firmware bit-equal to QKeras (AE and VAE), the background-only split,
the metrics and the trigger threshold (its rate on independent background within binomial errors)."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
from scipy.stats import binomtest

from trigflow.config import load_config
from trigflow.data.anomaly import FEATURE_NAMES, PROCESSES
from trigflow.firmware.convert import FirmwareSpec, convert
from trigflow.firmware.csim import predict
from trigflow.kinds import Arrays
from trigflow.kinds import ae as recipe
from trigflow.models.autoencoder import build_autoencoder, build_deployed, deployed_score_format
from trigflow.quantize.fixed import FixedType
from trigflow.quantize.presets import QuantSpec


def fake_anomaly_events(n_background: int, n_signal: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Events in the 57-column layout (MET, 4 e, 4 μ, 10 jets × pT, η, φ; pT-sorted, zero-padded).

    Signals differ from background in object multiplicities and pT scales (learnable, not physics).
    """
    rng = np.random.default_rng(seed)
    process = np.concatenate(
        [np.zeros(n_background, np.int8)] + [np.full(n_signal, k, np.int8) for k in range(1, len(PROCESSES))]
    )
    n = len(process)
    x = np.zeros((n, len(FEATURE_NAMES)), np.float32)
    x[:, 0] = rng.exponential(np.where(process == 2, 80.0, 20.0))
    x[:, 2] = rng.uniform(-np.pi, np.pi, n)

    def objects(start, n_max, mean_count, pt_min, pt_scale, eta_max):
        count = np.minimum(rng.poisson(mean_count), n_max)
        pt = -np.sort(-(pt_min + rng.exponential(pt_scale[:, None], (n, n_max))), axis=1)
        for j in range(n_max):
            present, c = j < count, start + 3 * j
            x[:, c] = np.where(present, pt[:, j], 0)
            x[:, c + 1] = np.where(present, rng.uniform(-eta_max, eta_max, n), 0)
            x[:, c + 2] = np.where(present, rng.uniform(-np.pi, np.pi, n), 0)

    leptons = np.where(process == 1, 3.0, 0.4)
    objects(3, 4, leptons, 3.0, np.full(n, 15.0), 3.0)
    objects(15, 4, leptons, 3.0, np.full(n, 15.0), 2.1)
    objects(27, 10, np.where(process == 3, 6.0, 3.0), 15.0, np.where(process == 3, 60.0, 30.0), 4.0)
    order = rng.permutation(n)
    return x[order], process[order]


def write_fake_anomaly(path, n_background: int, n_signal: int, seed: int = 0):
    x, process = fake_anomaly_events(n_background, n_signal, seed)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x).attrs["names"] = list(FEATURE_NAMES)
        f.create_dataset("process", data=process).attrs["processes"] = list(PROCESSES)
        f.attrs["generator"] = "test fixture"
    return path


def _config(**overrides):
    return load_config("ae", overrides={"verify": {"min_samples": 100}, **overrides})


@pytest.fixture(scope="module")
def prepared():
    x, y = fake_anomaly_events(6000, 500)
    arrays = Arrays(x, y.astype(np.int64), FEATURE_NAMES, PROCESSES, "fake")
    return recipe.prepare(arrays, _config())


# --- score on chip -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def firmware(prepared, tmp_path_factory):
    """Small AE and VAE, briefly trained on fake background, deployed with their score and compiled (in parallel)."""
    spec = QuantSpec()
    root = tmp_path_factory.mktemp("ae_fw")
    deployed = {}
    for arch in ("ae", "vae"):
        model = build_autoencoder(57, (8, 4), 3, arch=arch, quantized=True, spec=spec, beta=0.05, seed=1)
        model.compile("adam", "mse")
        model.fit(prepared.x_train, prepared.x_train, epochs=2, batch_size=256, verbose=0)
        deployed[arch] = (model, build_deployed(model, quantized=True, spec=spec))
    with ThreadPoolExecutor(2) as pool:
        hls = dict(zip(deployed, pool.map(
            lambda a: convert(deployed[a][1], root / a, FirmwareSpec(input_type=spec.input_type)), deployed
        )))  # fmt: skip
    return {arch: (model, dep, hls[arch], root / arch) for arch, (model, dep) in deployed.items()}


@pytest.mark.parametrize("arch", ["ae", "vae"])
def test_score_computed_in_firmware_is_bit_equal_to_qkeras(firmware, prepared, arch):
    _, deployed, hls_model, _ = firmware[arch]
    x = prepared.x_test
    y_fw = predict(hls_model, x)
    assert y_fw.shape == (len(x), 1)
    np.testing.assert_array_equal(y_fw, deployed.predict(x, verbose=0).astype(np.float64))
    assert len(np.unique(y_fw)) > len(x) // 10  # a real score, not a constant


@pytest.mark.parametrize("arch", ["ae", "vae"])
def test_firmware_output_type_is_the_declared_score_format(firmware, arch):
    model, _, _, project = firmware[arch]
    fw_type = recipe.firmware_output_type(project, "myproject")
    assert fw_type is not None and fw_type.startswith("ap_fixed<")
    assert FixedType.parse(fw_type).frac == deployed_score_format(model).score.frac


def test_threshold_reproduces_the_rate_on_independent_background(firmware, prepared):
    """Calibrate on fresh background, count passing events on more fresh background: binomial at the target FPR."""
    _, _, hls_model, _ = firmware["ae"]
    x, _ = fake_anomaly_events(16000, 0, seed=11)
    stats = prepared.preprocessing["standardize"]
    z = (recipe.transform(x, recipe.pt_columns(FEATURE_NAMES)) - np.array(stats["mean"])) / np.array(stats["scale"])
    scores = predict(hls_model, QuantSpec().quantize_input(z))[:, 0]
    calibration, check = scores[:8000], scores[8000:]
    for fpr in (0.01, 0.05):
        threshold = recipe.trigger_threshold(calibration, fpr * 40e6, fractional_bits=8)
        assert threshold["fpr"] == pytest.approx(fpr)
        assert threshold["background_passing"] <= fpr * len(calibration)
        passing = int(np.sum(check > threshold["threshold"]))
        assert binomtest(passing, len(check), fpr).pvalue > 1e-3, (passing, len(check) * fpr)
        assert threshold["threshold_int"] == threshold["threshold"] * 256
        assert threshold["resolved"]


# --- recipe pieces ----------------------------------------------------------------------------------------------
def test_training_is_background_only_and_test_holds_every_signal(prepared):
    n_bg_test = int(round(0.25 * 6000))
    assert len(prepared.x_train) == 6000 - n_bg_test - int(round(0.1 * 6000))
    assert not prepared.y_train.any() and not prepared.y_val.any()
    assert np.sum(prepared.y_test == 0) == n_bg_test
    assert [int(np.sum(prepared.y_test == k)) for k in range(1, 5)] == [500] * 4
    assert prepared.class_names == PROCESSES
    spec = QuantSpec()
    np.testing.assert_array_equal(spec.quantize_input(prepared.x_test), prepared.x_test)  # on the input grid
    pt = prepared.preprocessing["pt_transform"]["columns"]
    assert len(pt) == 19 and pt[0] == "MET_pt"


def test_threshold_at_fpr_counts_strictly_above():
    bg = np.arange(1000, dtype=np.float64)  # 0 … 999
    assert recipe.threshold_at_fpr(bg, 0.01) == 989  # 10 events (990 … 999) pass
    assert recipe.threshold_at_fpr(bg, 1e-5) == 999  # unresolved: nothing passes
    point = recipe.rate_point(bg, 1e-5)
    assert point["background_passing"] == 0 and not point["resolved"]
    assert point["fpr_upper_95"] == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-6)


def test_evaluate_reports_auc_and_tpr_per_signal(prepared):
    y = prepared.y_test
    rng = np.random.default_rng(0)
    score = rng.exponential(1.0, len(y)) + 3.0 * (y == 2)
    outputs = {m: score[:, None] for m in ("float", "qkeras", "firmware")}
    metrics = recipe.evaluate(outputs, prepared)
    assert set(metrics["auc"]) == set(PROCESSES[1:])
    assert metrics["auc"]["a_4l"]["firmware"] > 0.9 > metrics["auc"]["lq_btau"]["firmware"]
    assert set(metrics["tpr_at_fpr"]["a_4l"]) == {"1e-5", "2.5e-5"}
    assert metrics["firmware_auc_equals_qkeras"]
    assert "1500 background test events" in metrics["statistical_limit"]


def test_unknown_arch_is_a_one_line_error():
    from trigflow.errors import TrigflowError

    with pytest.raises(TrigflowError, match="model.arch"):
        recipe.load(_config(model={"arch": "garnet"}))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ae", "vae"])
def test_run_ae_end_to_end(tmp_path, arch):
    data = write_fake_anomaly(tmp_path / "fake.h5", 8000, 1000)
    out, prj = tmp_path / "out", tmp_path / "prj"
    args = ["run", "ae", "--data", str(data), "--out", str(out), "--project-dir", str(prj), "--epochs", "3"]
    args += ["--set", "verify.min_samples=1000", "--set", f"model.arch={arch}"]
    result = subprocess.run([sys.executable, "-c", "from trigflow.cli import main; main()", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["bit_exact_fraction"] == 1.0 and report["samples"] == 6000
    assert all(a["firmware"] == a["qkeras"] for a in report["auc"].values())
    threshold = json.loads((prj / "trigger_threshold.json").read_text())
    assert threshold == json.loads((out / "trigger_threshold.json").read_text())
    assert threshold["threshold"]["threshold_int"] == threshold["threshold"]["threshold"] * 2 ** threshold["threshold"]["fractional_bits"]
    assert (out / "score_distributions.png").stat().st_size > 0 and (out / "roc.png").stat().st_size > 0



# --- weighted metrics (synthetic weighted events; no model) -------------------------------------------------
def test_weighted_auc_matches_sklearn_sample_weight():
    from sklearn.metrics import roc_auc_score

    from trigflow.proof.compare import weighted_auc

    rng = np.random.default_rng(7)
    n = 4000
    positive = rng.uniform(size=n) < 0.3
    scores = np.round(rng.normal(positive * 0.8, 1.0), 2)  # rounded: many ties
    weights = rng.exponential(1.0, n) * np.where(positive, 1.0, 50.0)
    assert weighted_auc(positive, scores, weights) == pytest.approx(
        roc_auc_score(positive, scores, sample_weight=weights), abs=1e-12
    )
    assert weighted_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    # an event of weight w counts as w copies of it
    copies = np.repeat(np.arange(200), 3)
    assert weighted_auc(positive[:200], scores[:200], np.full(200, 3.0)) == pytest.approx(
        weighted_auc(positive[:200][copies], scores[:200][copies]), abs=1e-12
    )


def test_weighted_threshold_and_efficiencies_by_hand():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    weights = np.array([10.0, 10.0, 10.0, 60.0, 10.0])  # total 100
    # FPR 0.1: only score 5 (weight 10) may pass -> threshold 4; FPR 0.7: 4 and 5 pass (70) -> threshold 3
    assert recipe.threshold_at_fpr(scores, 0.1, weights) == 4.0
    assert recipe.threshold_at_fpr(scores, 0.69, weights) == 4.0
    assert recipe.threshold_at_fpr(scores, 0.7, weights) == 3.0
    assert recipe.threshold_at_fpr(scores, 0.05, weights) == 5.0  # nothing may pass
    # unit weights reproduce the unweighted rule exactly
    bg = np.random.default_rng(1).normal(size=999)
    for fpr in (1e-5, 0.003, 0.01, 0.5):
        assert recipe.threshold_at_fpr(bg, fpr, np.ones(999)) == recipe.threshold_at_fpr(bg, fpr)
        assert recipe.rate_point(bg, fpr, np.ones(999)) == recipe.rate_point(bg, fpr)
    point = recipe.rate_point(scores, 0.7, weights)
    assert point["fpr_measured"] == pytest.approx(0.7) and point["weighted"]
    assert point["effective_background_events"] == pytest.approx(100**2 / (4 * 100 + 3600))
    # weighted efficiency and its uncertainty: sqrt((1-e)^2 sum_pass w^2 + e^2 sum_fail w^2) / sum w
    eff, err = recipe.efficiency(scores, 3.0, weights)
    assert eff == pytest.approx(0.7)
    assert err == pytest.approx(np.sqrt(0.3**2 * (3600 + 100) + 0.7**2 * 300) / 100)
    eff, err = recipe.efficiency(np.arange(100.0), 79.5)  # unit weights: binomial
    assert (eff, err) == (pytest.approx(0.2), pytest.approx(np.sqrt(0.2 * 0.8 / 100)))
    with pytest.raises(recipe.TrigflowError, match="non-negative|≥ 0"):
        recipe.rate_point(scores, 0.1, -weights)
    threshold = recipe.trigger_threshold(scores, 0.7 * 40e6, 0, weights=weights)
    assert threshold["threshold"] == 3.0 and threshold["threshold_int"] == 3
    assert threshold["rate_hz"] == 0.7 * 40e6


def test_evaluate_uses_event_weights(prepared):
    """Weights 1 change nothing; weights that make the high-scoring background heavy lower the AUC and TPR."""
    from dataclasses import replace

    y = prepared.y_test
    rng = np.random.default_rng(0)
    score = rng.exponential(1.0, len(y)) + 3.0 * (y == 2)
    outputs = {m: score[:, None] for m in ("float", "qkeras", "firmware")}
    plain = recipe.evaluate(outputs, prepared)
    ones = recipe.evaluate(outputs, replace(prepared, extra={"w_test": np.ones(len(y))}))
    assert ones == plain and not plain["weighted"]
    weights = np.where((y == 0) & (score > 2.0), 20.0, 1.0)
    weighted = recipe.evaluate(outputs, replace(prepared, extra={"w_test": weights}))
    from sklearn.metrics import roc_auc_score

    sel = (y == 0) | (y == 2)
    assert weighted["auc"]["a_4l"]["firmware"] == pytest.approx(
        roc_auc_score(y[sel] == 2, score[sel], sample_weight=weights[sel]), abs=1e-12
    )
    assert weighted["auc"]["a_4l"]["firmware"] < plain["auc"]["a_4l"]["firmware"]
    assert weighted["weighted"] and weighted["rate_points"]["1e-5"]["weighted"]
    assert set(weighted["tpr_at_fpr_uncertainty"]["a_4l"]) == {"1e-5", "2.5e-5"}
    assert weighted["rate_points"]["2.5e-5"]["rate_hz"] == pytest.approx(1000.0)
