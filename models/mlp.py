"""Models layer: the fully connected jet tagger (16 high-level features → 5 class logits).

One builder for both twins: ``quantized=True`` gives the QKeras model (quantized input, a quantizer after
every op), ``quantized=False`` the float model with the same layers and names.
"""

from __future__ import annotations

from trigflow.quantize.presets import QuantSpec


def build_mlp(
    n_inputs: int = 16,
    n_classes: int = 5,
    hidden: tuple[int, ...] = (64, 32, 32),
    *,
    quantized: bool = True,
    spec: QuantSpec | None = None,
    seed: int = 0,
):
    """Return a functional Keras model ending in logits (softmax is applied outside the firmware)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense

    spec = spec or QuantSpec()
    init = tf.keras.initializers.GlorotUniform
    inputs = tf.keras.Input((n_inputs,), name="features")
    x = QActivation(spec.input(), name="input_quant")(inputs) if quantized else inputs
    widths = (*hidden, n_classes)
    for i, width in enumerate(widths):
        name = "logits" if i == len(hidden) else f"dense_{i}"
        layer_spec = spec.for_layer(i, len(widths))  # its own width (quant.layer_bits), else the uniform one
        if quantized:
            x = QDense(
                width,
                kernel_quantizer=layer_spec.weight(),
                bias_quantizer=layer_spec.weight(),
                kernel_initializer=init(seed + i),
                name=name,
            )(x)
        else:
            x = tf.keras.layers.Dense(width, kernel_initializer=init(seed + i), name=name)(x)
        if i < len(hidden):
            x = QActivation(layer_spec.relu(), name=f"relu_{i}")(x) if quantized else tf.keras.layers.ReLU(
                name=f"relu_{i}"
            )(x)
    return tf.keras.Model(inputs, x, name=("q" if quantized else "float") + "_mlp")
