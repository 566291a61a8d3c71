"""Quantize layer: ``trigflow.quantize.train.train`` with per-sample loss weights (weighted samples)."""

import numpy as np


def _fit(w_train, w_val):
    import tensorflow as tf

    from trigflow.quantize.train import set_seed, train

    set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 1)).astype(np.float32)
    y = np.where(np.arange(512)[:, None] < 256, 2.0 * x, -2.0 * x).astype(np.float32)  # half the targets wrong
    model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1, use_bias=False)])
    model, _ = train(
        model, x, y, x, y, epochs=40, batch_size=64, learning_rate=0.05, patience=100, loss="mse",
        w_train=w_train, w_val=w_val,
    )
    return float(model.layers[-1].get_weights()[0].ravel()[0])


def test_sample_weights_decide_what_the_loss_fits():
    keep_first_half = np.r_[np.ones(256), np.zeros(256)]
    assert abs(_fit(keep_first_half, keep_first_half) - 2.0) < 0.05  # only the weighted samples count
    assert abs(_fit(None, None)) < 0.5  # unweighted: the two halves cancel
