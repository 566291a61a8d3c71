"""trigflow verify of a user's QKeras QGRU model (firmware/recurrent_verify.py): the firmware bit-exact against
the model's mirror (hls4ml's tables), the user's model itself beside firmware and mirror in the report and on
the verdict line; recurrent options hls4ml cannot build get a one-line refusal and leave nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trigflow.errors import TrigflowError

T, F, UNITS = 4, 3, 4


def user_model(
    path: Path, *, arch: str = "gru", seed: int = 0, activations: str = "float", input_bits: tuple = (10, 3),
    **recurrent,
) -> Path:
    """A QKeras model as a user writes it: input quantizer → QGRU (quantized weights; float or quantized
    sigmoid/tanh) → QDense/quantized_relu → QDense → softmax; random weights large enough to saturate gates."""
    import tensorflow as tf
    from qkeras import (QActivation, QDense, QGRU, QLSTM, quantized_bits, quantized_relu, quantized_sigmoid,
                        quantized_tanh)

    from trigflow.models.rnn import qkeras_recurrent_fix

    qkeras_recurrent_fix()

    def q():
        return quantized_bits(8, 0, alpha=1)

    acts = {"activation": "tanh", "recurrent_activation": "sigmoid"}
    if activations == "quantized":
        acts = {"activation": quantized_tanh(8, use_real_tanh=True),
                "recurrent_activation": quantized_sigmoid(8, use_real_sigmoid=True)}
    elif activations == "qkeras_default":
        acts = {}
    options = {**({"reset_after": True} if arch == "gru" else {}), **acts, **recurrent}
    x_in = tf.keras.Input((T, F))
    x = QActivation(quantized_bits(*input_bits, alpha=1), name="inq")(x_in)
    x = (QGRU if arch == "gru" else QLSTM)(
        UNITS, kernel_quantizer=q(), recurrent_quantizer=q(), bias_quantizer=q(), name=arch, **options
    )(x)
    if recurrent.get("return_sequences"):
        x = tf.keras.layers.Flatten(name="flat")(x)
    x = QDense(6, kernel_quantizer=q(), bias_quantizer=q(), name="d1")(x)
    x = QActivation(quantized_relu(8, 2), name="r1")(x)
    x = QDense(5, kernel_quantizer=q(), bias_quantizer=q(), name="out")(x)
    model = tf.keras.Model(x_in, tf.keras.layers.Activation("softmax", name="prob")(x))
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.4, w.shape) for w in model.get_weights()])
    model.save(path)
    return path


def user_data(path: Path, n: int = 160, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (n, T, F)).astype(np.float32)  # raw floats: the model's input quantizer rounds
    np.savez(path, x=x, y=rng.integers(0, 5, n))
    return path


def _verify(tmp_path: Path, model: Path, data: Path, **options):
    import trigflow

    return trigflow.verify(model, data, out=str(tmp_path / "out"), project_dir=str(tmp_path / "prj"),
                           verify={"min_samples": 100}, **options)


@pytest.mark.parametrize(
    ("arch", "activations"),
    [
        ("gru", "float"),  # 74 s on this shared 2-core machine (load ≈ 6)
        pytest.param("gru", "quantized", marks=pytest.mark.slow),  # quantized_tanh/sigmoid(use_real_*): 78 s
        pytest.param("lstm", "float", marks=pytest.mark.slow),  # 69 s
    ],
)
def test_verify_proves_a_user_recurrent_model_against_its_mirror_and_reports_the_model(
    tmp_path, arch, activations
):
    from trigflow.evaluate_run import link_firmware
    from trigflow.firmware.autoconfig import rebuild
    from trigflow.firmware.csim import predict
    from trigflow.firmware.loaders import load_model
    from trigflow.firmware.passes.recurrent_mirror import RecurrentMirror
    from trigflow.proof.reference import exact_predict

    model_path = user_model(tmp_path / f"user_{arch}.h5", arch=arch, activations=activations)
    data_path = user_data(tmp_path / "jets.npz")
    result = _verify(tmp_path, model_path, data_path)
    report = result.report
    assert result.failures == [] and report["passed"]
    assert report["bit_exact_fraction"] == 1.0 and report["samples"] == 160

    # firmware == the mirror of the user's model, bit for bit (the compiled project, re-linked)
    with np.load(data_path) as f:
        x, y = f["x"], f["y"]
    logits_model = rebuild(load_model(model_path), "reference")[0]  # the user's model up to its logits
    mirror, changed = RecurrentMirror().apply(logits_model)
    assert changed
    firmware = predict(link_firmware(tmp_path / "prj", tmp_path / "out", arch), x)
    np.testing.assert_array_equal(firmware, exact_predict(mirror, x))

    # ... and the user's model itself beside it: named layer, tables stated, the figures are the model's
    model = exact_predict(logits_model, x)
    rec = report["recurrent"]
    kind = f"Q{arch.upper()}"
    assert rec["layers"] == {arch: kind} and "lookup tables" in rec["activations"]
    versus = rec["firmware_vs_model"]
    differ = int(np.sum(np.any(firmware != model, axis=1)))
    assert versus["differing_samples"] == differ > 0  # the tables do change the logits: not hidden
    assert versus["max_abs_diff_logits"] == float(np.max(np.abs(firmware - model))) > 0
    assert versus["argmax_agreement"] == float(np.mean(np.argmax(firmware, 1) == np.argmax(model, 1)))
    accuracy = {"firmware": float(np.mean(np.argmax(firmware, 1) == y)),
                "model": float(np.mean(np.argmax(model, 1) == y)),
                "mirror": float(np.mean(np.argmax(exact_predict(mirror, x), 1) == y))}
    assert rec["accuracy"] == accuracy
    assert report["accuracy"]["model_on_raw_data"] == accuracy["model"]
    assert report["accuracy"]["mirror"] == accuracy["mirror"] == report["accuracy"]["firmware"]
    assert report["argmax_agreement"]["firmware_vs_model_on_raw_data"] == versus["argmax_agreement"]
    note = report["verdict_note"]
    assert f"'{arch}' ({kind})" in note and "lookup tables" in note and f"{differ:,} of 160" in note
    assert f"mirror of recurrent layer '{arch}'" in report["checks"]["bit_exact"]["detail"]
    assert report["configuration"]["conversion"]["path"] == "recurrent_mirror"
    assert report["configuration"]["firmware_types"][arch]["table"].startswith("fixed<18,8")
    assert rec["types"][arch]["accum"] == ("fixed<32,10>" if arch == "gru" else "fixed<16,6,RND,SAT>")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"return_sequences": True}, "layer 'gru' (QGRU): return_sequences=True cannot be proven"),
        ({"reset_after": False}, "reset_after=False"),
        ({"activations": "qkeras_default"}, "activation=quantized_tanh without use_real_tanh=True is a hard"),
        ({"io_type": "io_stream"}, "io_type=io_stream is not proven"),
        ({"arch": "lstm", "input_bits": (16, 8)}, "layer 'lstm' (QLSTM): hls4ml's nnet::lstm reads its input as"),
    ],
)
def test_recurrent_options_hls4ml_cannot_build_are_refused_in_one_line(tmp_path, options, match):
    options = dict(options)
    io_type = options.pop("io_type", None)
    model_path = user_model(tmp_path / "m.h5", **options)
    extra = {"io_type": io_type} if io_type else {}
    with pytest.raises(TrigflowError, match=re.escape(match)) as info:
        _verify(tmp_path, model_path, user_data(tmp_path / "d.npz", n=120), **extra)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "prj").exists()


def test_gru_accum_is_widened_so_no_gate_sum_wraps_on_the_input_grid(tmp_path):
    """No compile: the mirror's accum_t covers max Σ|x|·|W| + Σ|U| + |b| over the input grid (raw GeV-like
    inputs, quantized_bits(16, 11), need more than the default fixed<32,10>; the small grid of the test above
    keeps the default) and is what hls4ml is given."""
    from trigflow.firmware.autoconfig import choose_configuration
    from trigflow.firmware.convert import FirmwareSpec
    from trigflow.firmware.loaders import load_model
    from trigflow.firmware.recurrent_verify import mirror_recurrent
    from trigflow.quantize.fixed import FixedType

    model = load_model(user_model(tmp_path / "m.h5", input_bits=(16, 11)))
    dep, check = mirror_recurrent(choose_configuration(model, np.zeros((4, T, F), np.float32), FirmwareSpec()))
    accum = check.types["gru"].accum
    assert dep.reference.get_layer("gru").hls_types.accum == accum == dep.spec.layer_precisions["gru"]["accum"]
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in dep.reference.get_layer("gru").firmware_weights())
    bound = 2.0**11 * np.abs(kernel).sum(0) + np.abs(recurrent).sum(0) + np.abs(bias).sum(0)
    t = FixedType.parse(accum)
    assert t.hi >= bound.max() and t.integer > 10 and t.frac >= 22


def test_simplernn_is_refused_in_one_line_float_or_quantized(tmp_path):
    """hls4ml 1.3's Vivado/Vitis backend registers its recurrent templates for LSTM and GRU only."""
    import tensorflow as tf

    x_in = tf.keras.Input((T, F))
    x = tf.keras.layers.SimpleRNN(UNITS, name="rnn")(x_in)
    tf.keras.Model(x_in, tf.keras.layers.Dense(5, name="out")(x)).save(tmp_path / "float_rnn.h5")
    with pytest.raises(TrigflowError, match=re.escape("layer 'rnn' (SimpleRNN): hls4ml 1.3's Vivado/Vitis")) as info:
        _verify(tmp_path, tmp_path / "float_rnn.h5", user_data(tmp_path / "d.npz", n=120))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "prj").exists()
