"""Mismatch localisation: a deliberately broken precision on an exact model is found at the right layer."""

from __future__ import annotations

import numpy as np
import pytest
from trigflow.firmware.autoconfig import choose_configuration
from trigflow.firmware.convert import FirmwareSpec
from trigflow.proof.localize import keras_counterparts, localize
from tiny_models import qmlp_8_10_3, randomize


def exact_model():
    """Input quantizer → QDense → BatchNormalization → quantized_relu → QDense (bit-exact as chosen)."""
    return randomize(qmlp_8_10_3(batchnorm=True))


@pytest.fixture(scope="module")
def model_and_x():
    model = exact_model()
    x = np.random.default_rng(1).uniform(-8, 8, size=(60, 8)).astype(np.float32)
    return model, x


def test_overflowing_output_layer_is_named(model_and_x, tmp_path):
    model, x = model_and_x
    dep = choose_configuration(model, x, FirmwareSpec(layer_precisions={"dense_1": {"result": "fixed<8,2>"}}))
    result = localize(dep, x, workdir=tmp_path)
    assert result["first_differing_layer"] == "dense_1"
    assert result["precision"].startswith("fixed<8,2")
    assert result["max_abs_diff"] > 1.0
    assert "dense_1" in result["suggestion"] and "integer bits" in result["suggestion"]
    assert "drop the override" in result["suggestion"]
    agree = {row["layer"]: row["differs"] for row in result["layers"]}
    assert agree["dense_0"] is False and agree["relu_0"] is False  # everything before it agrees
    assert not list(tmp_path.iterdir())  # the scratch trace project is gone


def test_first_of_several_differing_layers(model_and_x, tmp_path):
    """Truncating the first Dense makes every later layer differ too; the first one is named."""
    model, x = model_and_x
    dep = choose_configuration(
        model, x, FirmwareSpec(layer_precisions={"dense_0": {"result": "fixed<12,7>"}})
    )
    result = localize(dep, x, workdir=tmp_path)
    assert result["first_differing_layer"] == "dense_0"
    assert "rounding/truncation" in result["suggestion"]
    differing = [row["layer"] for row in result["layers"] if row["differs"]]
    assert differing[0] == "dense_0" and "dense_1" in differing


def test_counterparts_follow_removed_layers():
    model = exact_model()
    # hls4ml absorbs the input quantizer into the input and keeps the rest: x holds what 'inq' outputs
    mapping = keras_counterparts(["x", "dense_0", "bn", "relu_0", "dense_1"], model)
    assert mapping == {"x": "inq", "dense_0": "dense_0", "bn": "bn", "relu_0": "relu_0", "dense_1": "dense_1"}
    # a float model's normalisation fused into the Dense: the Dense holds the normalised values
    assert keras_counterparts(["x", "dense_0", "relu_0", "dense_1"], model)["dense_0"] == "bn"


def test_counterparts_of_merged_threshold_layer():
    """hls4ml's bnbt_* (normalisation + ternary activation) stands for the activation; the Dense before it
    keeps its own output (the normalisation is not folded into it)."""
    import tensorflow as tf
    from qkeras import QActivation, QBatchNormalization, QDense

    L = tf.keras.layers
    x = L.Input((4,), name="x")
    h = QDense(3, name="dense_0")(x)
    h = QBatchNormalization(name="qbn")(h)
    h = QActivation("ternary", name="tern")(h)
    y = QDense(2, name="dense_1")(h)
    mapping = keras_counterparts(["x", "dense_0", "bnbt_tern_scale", "dense_1"], tf.keras.Model(x, y))
    assert mapping["dense_0"] == "dense_0" and mapping["bnbt_tern_scale"] == "tern"

