"""Models layer: the convolutional jet-image tagger (H×W×1 jet image → 5 class logits).

One builder for both twins: ``quantized=True`` gives the QKeras model (quantized input, a quantizer after
every op), ``quantized=False`` the float model with the same layers, shapes and names.

Each block is Conv2D(3×3, 'valid') → ReLU → MaxPooling2D(2×2); then Flatten → Dense → ReLU … → Dense logits.
Max pooling and flatten only move values, so they keep the QKeras grid and need no quantizer of their own.
Softmax is applied outside the firmware (the proof compares logits).
"""

from __future__ import annotations

from trigflow.errors import TrigflowError
from trigflow.quantize.presets import QuantSpec


def build_cnn(
    input_shape: tuple[int, int, int] = (16, 16, 1),
    n_classes: int = 5,
    filters: tuple[int, ...] = (8, 16),
    hidden: tuple[int, ...] = (32,),
    *,
    quantized: bool = True,
    spec: QuantSpec | None = None,
    seed: int = 0,
    kernel_size: int = 3,
    pool_size: int = 2,
    batchnorm: bool = False,
):
    """Return a functional Keras model ending in logits.

    ``batchnorm=True`` adds batch normalisation to each convolution: ``QConv2DBatchnorm`` (folded into the
    quantized kernel and bias, so the firmware sees one convolution) in the QKeras model, ``Conv2D`` followed by
    ``BatchNormalization`` in the float twin.
    """
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QConv2DBatchnorm, QDense

    spec = spec or QuantSpec()
    height, width = input_shape[0], input_shape[1]
    for _ in filters:
        height, width = (height - kernel_size + 1) // pool_size, (width - kernel_size + 1) // pool_size
    if min(height, width) < 1:
        raise TrigflowError(
            f"a {input_shape[0]}×{input_shape[1]} image is too small for {len(filters)} blocks of {kernel_size}×{kernel_size} "
            f"convolution + {pool_size}×{pool_size} pooling; use fewer model.filters"
        )
    init = tf.keras.initializers.GlorotUniform
    layers = tf.keras.layers
    inputs = tf.keras.Input(tuple(input_shape), name="image")
    x = QActivation(spec.input(), name="input_quant")(inputs) if quantized else inputs
    for i, n_filters in enumerate(filters):
        name = f"conv_{i}"
        conv = dict(kernel_size=kernel_size, padding="valid", kernel_initializer=init(seed + i), name=name)
        if quantized:
            cls = QConv2DBatchnorm if batchnorm else QConv2D
            x = cls(n_filters, kernel_quantizer=spec.weight(), bias_quantizer=spec.weight(), **conv)(x)
        else:
            x = layers.Conv2D(n_filters, **conv)(x)
            if batchnorm:
                x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = QActivation(spec.relu(), name=f"conv_relu_{i}")(x) if quantized else layers.ReLU(name=f"conv_relu_{i}")(x)
        x = layers.MaxPooling2D(pool_size, name=f"pool_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    widths = (*hidden, n_classes)
    for i, width in enumerate(widths):
        name = "logits" if i == len(hidden) else f"dense_{i}"
        initializer = init(seed + len(filters) + i)
        if quantized:
            x = QDense(
                width,
                kernel_quantizer=spec.weight(),
                bias_quantizer=spec.weight(),
                kernel_initializer=initializer,
                name=name,
            )(x)
        else:
            x = layers.Dense(width, kernel_initializer=initializer, name=name)(x)
        if i < len(hidden):
            x = QActivation(spec.relu(), name=f"relu_{i}")(x) if quantized else layers.ReLU(name=f"relu_{i}")(x)
    return tf.keras.Model(inputs, x, name=("q" if quantized else "float") + "_cnn")


def unrolled_multiplications(model, reuse_factor: int = 1) -> dict[str, int]:
    """Multiplications hls4ml unrolls into one pipeline iteration of each convolution and dense layer.

    A convolution computes one output pixel per iteration (kernel_h·kernel_w·channels·filters; in io_parallel
    too, with hls4ml's default ParallelizationFactor 1); a dense layer all inputs·outputs. Divided by the reuse
    factor, which shares each multiplier over that many clock cycles.
    """
    counts: dict[str, int] = {}
    for layer in model.layers:
        kind = layer.__class__.__name__
        if "Conv2D" in kind:
            kh, kw = layer.kernel_size
            n = kh * kw * int(layer.input_shape[-1]) * layer.filters
        elif "Dense" in kind:
            n = int(layer.input_shape[-1]) * layer.units
        else:
            continue
        counts[layer.name] = -(-n // reuse_factor)
    return counts


def largest_tensor(model) -> tuple[str, tuple[int, ...], int]:
    """(layer name, shape, number of values) of the largest layer output, the input included."""
    import math

    best: tuple[str, tuple[int, ...], int] = ("", (), 0)
    for layer in model.layers:
        shape = layer.output_shape[0] if isinstance(layer.output_shape, list) else layer.output_shape
        dims = tuple(int(d) for d in shape[1:])
        if math.prod(dims) > best[2]:
            best = (layer.name, dims, math.prod(dims))
    return best


def fold_batchnorm(model):
    """The deployable twin of a QKeras model with ``QConv2DBatchnorm``: each becomes a ``QConv2D`` holding the
    batch-norm-folded kernel and bias exactly as the layer applies them at inference (quantized with its own
    quantizers), so the outputs are identical. hls4ml 1.3's bit-exact type inference does not handle
    ``QConv2DBatchnorm`` ("not supported for pad_arrs"); it handles ``QConv2D``."""
    import tensorflow as tf
    from qkeras import QConv2D, QConv2DBatchnorm

    folded: dict[str, list] = {}

    def clone(layer):
        if not isinstance(layer, QConv2DBatchnorm):
            return layer.__class__.from_config(layer.get_config())
        kernel, bias = layer.get_folded_weights()
        folded[layer.name] = [
            tf.keras.backend.get_value(layer.kernel_quantizer_internal(kernel)),
            tf.keras.backend.get_value(layer.bias_quantizer_internal(bias)),
        ]
        return QConv2D(
            layer.filters,
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            kernel_quantizer=layer.kernel_quantizer,
            bias_quantizer=layer.bias_quantizer,
            name=layer.name,
        )

    out = tf.keras.models.clone_model(model, clone_function=clone)
    for layer in out.layers:
        layer.set_weights(folded.get(layer.name) or model.get_layer(layer.name).get_weights())
    return out
