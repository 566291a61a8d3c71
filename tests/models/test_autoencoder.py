import numpy as np
import pytest

from trigflow.errors import TrigflowError

from trigflow.models.autoencoder import (
    ScoreFormat,
    build_autoencoder,
    build_deployed,
    deployed_score_format,
    diff_format,
    latent_format,
)
from trigflow.quantize.presets import QuantSpec


def _weights_shapes(model):
    return [w.shape for w in model.get_weights()]


@pytest.mark.parametrize("arch", ["ae", "vae"])
def test_float_twin_has_the_same_architecture(arch):
    q = build_autoencoder(57, (32, 16), 3, arch=arch, quantized=True)
    f = build_autoencoder(57, (32, 16), 3, arch=arch, quantized=False)
    dense = 57 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3 + 3 * 16 + 16 + 16 * 32 + 32 + 32 * 57 + 57
    assert q.count_params() == f.count_params() == dense + (16 * 3 + 3 if arch == "vae" else 0)
    assert _weights_shapes(q) == _weights_shapes(f)
    assert [layer.name for layer in q.layers] == [layer.name for layer in f.layers]
    assert q.output_shape == f.output_shape == (None, 57)
    assert "input" not in [layer.name for layer in q.layers]


@pytest.mark.parametrize("arch", ["ae", "vae"])
def test_deployed_twins_share_layers_and_output_one_score(arch):
    q = build_autoencoder(57, (8, 4), 2, arch=arch, quantized=True)
    f = build_autoencoder(57, (8, 4), 2, arch=arch, quantized=False)
    dq, df = build_deployed(q, quantized=True), build_deployed(f, quantized=False)
    assert dq.output_shape == df.output_shape == (None, 1)
    assert [layer.name for layer in dq.layers] == [layer.name for layer in df.layers]
    assert dq.get_layer("enc_0") is q.get_layer("enc_0")  # same weights as the trained model
    np.testing.assert_array_equal(dq.get_layer("score_sum").get_weights()[0], np.ones((dq.layers[-3].output_shape[-1], 1)))
    names = [layer.name for layer in dq.layers]
    if arch == "vae":
        assert "z_log_var" not in names and "sampling" not in names and "dec_0" not in names  # encoder only
    else:
        assert "reconstruction" in names and "diff" in names


def test_quantizer_after_every_op_in_the_deployed_model():
    q = build_autoencoder(57, (8, 4), 2, arch="ae", quantized=True)
    kinds = [layer.__class__.__name__ for layer in build_deployed(q, quantized=True).layers]
    assert kinds == [
        "InputLayer", "QActivation",  # input grid
        "QDense", "QActivation", "QDense", "QActivation", "QDense", "QActivation",  # encoder → latent
        "QDense", "QActivation", "QDense", "QActivation", "QDense",  # decoder → x̂ (exact fixed point)
        "Subtract", "QActivation", "Multiply", "QActivation", "QDense", "QActivation",  # Σ (x − x̂)²
    ]  # fmt: skip


def test_score_formats_are_exact_in_float32():
    spec = QuantSpec()
    recon = ScoreFormat(diff_format(), 57)
    assert recon.score.frac == 2 * diff_format().frac
    # no saturation (QKeras integer bits: the sign bit not counted)
    assert 57 * 2.0 ** (2 * (diff_format().integer - 1)) < 2.0 ** (recon.score.integer - 1)
    assert recon.score.width - 1 <= 24  # magnitude bits fit the float32 significand
    latent = ScoreFormat(latent_format(spec), 3)
    assert latent.score.width - 1 <= 24
    with pytest.raises(TrigflowError, match="float32"):
        ScoreFormat(latent_format(QuantSpec(bits=12)), 64).check_float32_exact()


@pytest.mark.parametrize("arch", ["ae", "vae"])
def test_deployed_qkeras_score_is_the_fixed_point_sum_of_squares(arch):
    """The QKeras score equals Σ d² computed exactly in numpy from the quantized terms d."""
    import tensorflow as tf

    spec = QuantSpec()
    q = build_autoencoder(57, (8, 4), 3, arch=arch, quantized=True, spec=spec, seed=3)
    deployed = build_deployed(q, quantized=True, spec=spec)
    x = spec.quantize_input(np.random.default_rng(0).normal(scale=2.0, size=(500, 57)))
    term_layer = "diff_quant" if arch == "ae" else "z_mean_quant"
    d = tf.keras.Model(deployed.input, deployed.get_layer(term_layer).output).predict(x, verbose=0).astype(np.float64)
    fmt = deployed_score_format(q, spec)
    assert np.all(np.round(d / fmt.term.lsb) == d / fmt.term.lsb)
    expected = np.sum(d * d, axis=1, keepdims=True)
    np.testing.assert_array_equal(deployed.predict(x, verbose=0).astype(np.float64), expected)


def test_vae_adds_the_kl_term_only_to_the_loss():
    f = build_autoencoder(57, (8, 4), 2, arch="vae", quantized=False, beta=0.5)
    x = np.random.default_rng(0).normal(size=(64, 57)).astype(np.float32)
    f(x, training=False)
    assert len(f.losses) == 1 and float(f.losses[0]) >= 0
    np.testing.assert_array_equal(f(x, training=False).numpy(), f(x, training=False).numpy())  # μ, no sampling
