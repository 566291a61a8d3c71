"""The proof's QKeras reference: a 16-bit MLP is bit-exact against the float64 reference, not float32."""

import numpy as np
import pytest

from trigflow.quantize.presets import QuantSpec
from trigflow.proof.reference import _Float64Relu, exact_predict


def test_float64_relu_is_quantized_relu_without_the_float32_cast():
    import tensorflow as tf
    from qkeras import quantized_relu

    q = quantized_relu(16, 0)
    relu = _Float64Relu(q)
    assert _Float64Relu.supports(q) and not _Float64Relu.supports(quantized_relu(8, 0, negative_slope=0.25))
    rng = np.random.default_rng(0)
    x32 = rng.normal(scale=0.7, size=10_000).astype(np.float32)  # float32 inputs: both agree exactly
    np.testing.assert_array_equal(relu(tf.constant(x32, tf.float64)).numpy(), q(tf.constant(x32)).numpy())
    # An exact accumulator just below a midpoint of the 2^-16 grid: float32 rounds it onto the midpoint first.
    lsb = 2.0**-16
    x = np.array([1001 * lsb + lsb / 2 - 2.0**-40])
    assert relu(tf.constant(x, tf.float64)).numpy()[0] == 1001 * lsb  # one rounding: down, like the firmware
    assert float(q(tf.constant(x, tf.float64)).numpy()[0]) == 1002 * lsb  # float32 tie → half-to-even: up


@pytest.fixture(scope="module")
def mlp16(tmp_path_factory):
    import tensorflow as tf

    from trigflow.firmware.convert import FirmwareSpec, convert
    from trigflow.firmware.csim import predict
    from trigflow.models.mlp import build_mlp
    from trigflow.quantize.train import set_seed

    set_seed(0)
    spec = QuantSpec(bits=16)
    rng = np.random.default_rng(0)
    x = spec.quantize_input(rng.normal(size=(3000, 16)))
    model = build_mlp(16, 5, (32, 16), spec=spec)
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 5, len(x)), epochs=1, batch_size=256, verbose=0)
    project = tmp_path_factory.mktemp("mlp16") / "project"
    hls_model = convert(model, project, FirmwareSpec(input_type=spec.input_type))
    return model, x, predict(hls_model, x)


def test_16bit_mlp_firmware_is_bit_exact_against_the_float64_reference(mlp16):
    model, x, y_firmware = mlp16
    np.testing.assert_array_equal(exact_predict(model, x), y_firmware)


def test_float32_keras_is_not_the_reference_at_16_bits(mlp16):
    model, x, y_firmware = mlp16
    y32 = model.predict(x, verbose=0).astype(np.float64)
    assert np.mean(np.all(y32 == y_firmware, axis=1)) < 0.5  # float32 accumulators round 16×16-bit sums
    np.testing.assert_allclose(y32, y_firmware, atol=1e-4)  # … by float32 rounding only


def test_exact_predict_leaves_keras_float_type_alone(mlp16):
    import tensorflow as tf

    model, x, _ = mlp16
    exact_predict(model, x[:10])
    assert tf.keras.backend.floatx() == "float32"
