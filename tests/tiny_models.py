"""Small Keras/QKeras models the tests share (built on demand; TensorFlow is imported inside)."""

from __future__ import annotations

import numpy as np


def randomize(model, seed: int | np.random.Generator = 0):
    """Random weights N(0, 0.5); BatchNormalization gets non-trivial statistics. ``seed`` may be a Generator
    whose stream the caller goes on drawing from."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.__class__.__name__ == "BatchNormalization":
            g, b, m, v = weights
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, g.shape),
                    rng.normal(0, 0.5, b.shape),
                    rng.normal(0, 0.5, m.shape),
                    rng.uniform(0.5, 2, v.shape),
                ]
            )
        elif weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in weights])
    return model


def qmlp_8_10_3(*, batchnorm: bool):
    """Input quantizer → QDense(10) → [BatchNormalization →] quantized_relu → QDense(3), 6-bit weights."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    q = quantized_bits(6, 0, alpha=1)
    L = tf.keras.layers
    x = L.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 3, alpha=1), name="inq")(x)
    h = QDense(10, kernel_quantizer=q, bias_quantizer=q, name="dense_0")(h)
    if batchnorm:
        h = L.BatchNormalization(name="bn")(h)
    h = QActivation(quantized_relu(6, 2), name="relu_0")(h)
    y = QDense(3, kernel_quantizer=q, bias_quantizer=q, name="dense_1")(h)
    return tf.keras.Model(x, y)


def float_mlp(n_in: int, hidden: int, n_out: int, *, seed: int):
    """A plain Keras Sequential MLP with a softmax head and random weights (no quantizers)."""
    import tensorflow as tf

    L = tf.keras.layers
    layers = [
        L.InputLayer(input_shape=(n_in,)),
        L.Dense(hidden, activation="relu", name="d0"),
        L.Dense(n_out, activation="softmax", name="d1"),
    ]
    return randomize(tf.keras.Sequential(layers), seed=seed)
