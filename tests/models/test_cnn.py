import h5py
import numpy as np
import pytest

from trigflow.config import load_config
from trigflow.errors import TrigflowError
from trigflow.kinds import Arrays
from trigflow.models.cnn import build_cnn, fold_batchnorm, largest_tensor, unrolled_multiplications
from trigflow.quantize.presets import QuantSpec


def test_float_twin_has_the_same_architecture():
    q = build_cnn((16, 16, 1), 5, (8, 16), (32,), quantized=True)
    f = build_cnn((16, 16, 1), 5, (8, 16), (32,), quantized=False)
    convs = (3 * 3 * 1 * 8 + 8) + (3 * 3 * 8 * 16 + 16)
    dense = (2 * 2 * 16) * 32 + 32 + 32 * 5 + 5  # 16 → 14 → 7 → 5 → 2 pixels per side
    assert q.count_params() == f.count_params() == convs + dense == 3493
    assert [w.shape for w in q.get_weights()] == [w.shape for w in f.get_weights()]
    assert q.output_shape == f.output_shape == (None, 5)
    assert [layer.name for layer in q.layers if layer.weights] == [layer.name for layer in f.layers if layer.weights]


def test_quantized_model_has_a_quantizer_after_every_op():
    q = build_cnn((10, 10, 1), 3, (2, 4), (8,), quantized=True)
    kinds = [layer.__class__.__name__ for layer in q.layers]
    assert kinds == [
        "InputLayer",
        "QActivation",  # the input grid
        "QConv2D",
        "QActivation",
        "MaxPooling2D",  # moves values only: stays on the grid
        "QConv2D",
        "QActivation",
        "MaxPooling2D",
        "Flatten",
        "QDense",
        "QActivation",
        "QDense",  # logits: softmax is applied outside the firmware
    ]
    assert "input" not in [layer.name for layer in q.layers]


def test_batchnorm_variant_folds_into_a_plain_quantized_convolution():
    """hls4ml 1.3 cannot convert QConv2DBatchnorm bit-exactly; the folded QConv2D twin gives identical outputs."""
    import tensorflow as tf

    q = build_cnn((8, 8, 1), 3, (2,), (4,), quantized=True, batchnorm=True)
    f = build_cnn((8, 8, 1), 3, (2,), (4,), quantized=False, batchnorm=True)
    assert "QConv2DBatchnorm" in [layer.__class__.__name__ for layer in q.layers]
    assert "BatchNormalization" in [layer.__class__.__name__ for layer in f.layers]
    x = QuantSpec().quantize_input(np.random.default_rng(0).exponential(1.0, (256, 8, 8, 1)))
    q.compile(tf.keras.optimizers.Adam(1e-2), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    q.fit(x, np.arange(256) % 3, epochs=1, batch_size=32, verbose=0)  # moves the batch-norm statistics
    folded = fold_batchnorm(q)
    assert [layer.__class__.__name__ for layer in folded.layers].count("QConv2D") == 1
    assert "QConv2DBatchnorm" not in [layer.__class__.__name__ for layer in folded.layers]
    np.testing.assert_array_equal(folded.predict(x, verbose=0), q.predict(x, verbose=0))


def test_too_small_image_is_a_clear_error():
    with pytest.raises(TrigflowError, match="too small"):
        build_cnn((8, 8, 1), 3, (2, 4), (8,), quantized=False)


def test_unroll_and_tensor_sizes():
    model = build_cnn((16, 16, 1), 5, (8, 16), (32,), quantized=False)
    assert unrolled_multiplications(model) == {"conv_0": 72, "conv_1": 1152, "dense_0": 2048, "logits": 160}
    assert unrolled_multiplications(model, reuse_factor=4)["conv_1"] == 288
    assert largest_tensor(model) == ("conv_0", (14, 14, 8), 1568)


# --- the recipe's data stages ---------------------------------------------------------------------------------
def jet_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images like the jet files': non-negative pT fractions summing to 1, a class-dependent hot spot."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    x = rng.exponential(0.01, (n, 16, 16)) * (rng.random((n, 16, 16)) < 0.15)
    x[np.arange(n), 4 + 2 * y, 8] += rng.uniform(0.3, 0.8, n)
    return (x / x.sum(axis=(1, 2), keepdims=True)).astype(np.float32), y


def test_prepare_scales_by_a_power_of_two_and_keeps_empty_pixels_empty():
    from trigflow.kinds.cnn import prepare

    x, y = jet_images(400)
    config = load_config("cnn", overrides={"verify": {"min_samples": 50}})
    prepared = prepare(Arrays(x[..., None], y, ("pt_fraction",), tuple("gqwzt"), "test"), config)
    spec = QuantSpec.from_config(config.quant)
    assert prepared.preprocessing["pixel_scale"] == 16.0  # 2**(input_integer - 1)
    assert prepared.x_train.shape[1:] == (16, 16, 1)
    for part in (prepared.x_train, prepared.x_val, prepared.x_test):
        np.testing.assert_array_equal(part, spec.quantize_input(part))  # on the input grid
        assert part.min() == 0.0 and part.max() <= 16.0
    assert np.mean(prepared.x_train == 0) > 0.8  # no per-pixel shift: empty pixels stay zero
    assert prepared.preprocessing["nonzero_pixels_below_lsb"] < 0.05
    assert len(prepared.x_test) == 100


def test_prepare_refuses_too_few_test_images():
    from trigflow.kinds.cnn import prepare

    x, y = jet_images(100)
    with pytest.raises(TrigflowError, match="min_samples"):
        prepare(Arrays(x[..., None], y, ("pt_fraction",), tuple("gqwzt"), "test"), load_config("cnn"))


def test_load_adds_a_channel_axis(fake_jets, tmp_path):
    from trigflow.kinds.cnn import load

    path = tmp_path / "jets.h5"
    path.write_bytes(fake_jets.read_bytes())
    with h5py.File(path, "a") as f:
        f.create_dataset("image", data=jet_images(len(f["label"]))[0])
    config = load_config("cnn", overrides={"data": {"path": str(path), "max_samples": 300}})
    arrays = load(config)
    assert arrays.x.shape == (300, 16, 16, 1) and arrays.y.shape == (300,)
    assert arrays.class_names == ("g", "q", "w", "z", "t")
