"""Proof layer: the QKeras reference outputs the bit-exact proof compares the firmware with.

Keras evaluates a QKeras model in float32, the firmware in exact fixed point. With ≤ 8-bit quantizers every
intermediate fits float32's 24-bit significand, so both agree. With wider formats they do not: a 16-bit
weight × 16-bit activation product has ~32 significant bits, a sum of 16–64 of them ~38, and float32 rounds
the accumulator where the firmware keeps it exact. Two things then differ from the fixed-point model:

1. the matmul/bias accumulation in float32 (fixed by evaluating the model in float64: 53 bits hold
   every accumulator of a ≤ 16-bit model exactly);
2. ``quantized_relu`` casts its input to float32 *inside the quantizer* (``K.cast(x, "float32")``, also in a
   float64 model), so the exact accumulator is rounded to 24 bits before it is rounded onto the relu's grid —
   a double rounding that moves values lying within 2⁻²⁴ relative of a grid midpoint onto the midpoint,
   where round-half-to-even then picks the other neighbour than the firmware's single rounding. With a
   float64 model this was the remaining ~3 % of mismatching samples of the 16-bit MLP.

``exact_predict`` therefore clones the model in float64 (same architecture and weights) and replaces each
plain ``quantized_relu`` by the same function evaluated in float64 (``_Float64Relu``); every other quantizer
already computes in Keras' float type. It is the reference for the proof; Keras' own float32 outputs stay
what ONNX parity and accuracies are measured on. A model that cannot be cloned in float64 falls back to its
float32 outputs, with a warning. At ≤ 8 bits the two references agree (checked on every trigflow builder).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np


class _Float64Relu:
    """``quantized_relu(bits, integer)`` in float64 (no negative slope, sigmoid, stochastic rounding, qnoise).

    Same formula as QKeras: ``m_i · clip(round(x · m / m_i) / m, 0, 1 − 1/m)`` with ``m = 2**bits``,
    ``m_i = 2**integer`` and round-half-to-even (``tf.round``), without the cast to float32.
    """

    def __init__(self, quantizer) -> None:
        self.quantizer = quantizer
        self.bits = int(quantizer.bits)
        self.integer = int(quantizer.integer)
        self.__name__ = "quantized_relu"

    @staticmethod
    def supports(quantizer) -> bool:
        if quantizer.__class__.__name__ != "quantized_relu":
            return False
        qnoise = quantizer.qnoise_factor
        qnoise = float(qnoise.numpy() if hasattr(qnoise, "numpy") else qnoise)
        clip_at_top = quantizer.is_quantized_clip or quantizer.relu_upper_bound is None
        return (
            float(quantizer.negative_slope) == 0.0
            and not quantizer.use_sigmoid
            and not quantizer.use_stochastic_rounding
            and qnoise == 1.0
            and clip_at_top
        )

    def __call__(self, x):
        import tensorflow as tf

        x = tf.cast(x, tf.float64)
        m = tf.constant(2.0**self.bits, tf.float64)
        m_i = tf.constant(2.0**self.integer, tf.float64)
        return m_i * tf.clip_by_value(tf.round(x * m / m_i) / m, 0.0, 1.0 - 1.0 / m)


@contextlib.contextmanager
def _floatx(dtype: str):
    import tensorflow as tf

    previous = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx(dtype)
    try:
        yield
    finally:
        tf.keras.backend.set_floatx(previous)


def _exact_relu_layer(relu: _Float64Relu, name: str):
    import tensorflow as tf

    class ExactRelu(tf.keras.layers.Layer):
        def call(self, inputs):
            return relu(inputs)

    return ExactRelu(name=name, dtype="float64")


def _clone_float64(layer):
    quantizer = getattr(layer, "quantizer", None)
    is_relu = quantizer is not None and _Float64Relu.supports(quantizer)
    if layer.__class__.__name__ == "QActivation" and is_relu:
        return _exact_relu_layer(_Float64Relu(quantizer), layer.name)
    config = layer.get_config()
    config["dtype"] = "float64"
    clone = layer.__class__.from_config(config)
    activation = getattr(clone, "activation", None)
    if activation is not None and _Float64Relu.supports(activation):  # e.g. QDense(activation=quantized_relu)
        clone.activation = _Float64Relu(activation)
    return clone


def _float64_if_floating(dtype):
    return "float64" if dtype.is_floating else dtype


def float64_twin(model):
    """The same model (architecture + weights) with every layer in float64 and exact ``quantized_relu``'s.

    Build and call (predict) it inside ``_floatx("float64")``: QKeras quantizers read Keras' float type when
    they are traced.
    """
    import tensorflow as tf

    inputs = [
        tf.keras.Input(t.shape[1:], dtype=_float64_if_floating(t.dtype), name=t.name.split(":")[0])
        for t in model.inputs
    ]
    twin = tf.keras.models.clone_model(model, input_tensors=inputs, clone_function=_clone_float64)
    twin.set_weights([np.asarray(w, dtype=np.float64) for w in model.get_weights()])
    return twin


def _as_float64(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def exact_predict(model, x, batch_size: int = 4096) -> np.ndarray:
    """QKeras outputs without float32 rounding (float64 model), one flattened row per sample, as float64.

    ``x``: an array, or a list of arrays for a model with several inputs.
    """
    many = isinstance(x, (list, tuple))
    x64 = [_as_float64(a) for a in x] if many else _as_float64(x)
    n = len(x64[0]) if many else len(x64)
    try:
        with _floatx("float64"):
            twin = float64_twin(model)
            y = twin.predict(x64, batch_size=batch_size, verbose=0)
    except Exception as exc:  # a model that cannot be cloned in float64 (custom layers): keep Keras' outputs
        warnings.warn(
            f"float64 QKeras reference unavailable ({exc.__class__.__name__}: {exc}); using float32 outputs",
            stacklevel=2,
        )
        y = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(y, dtype=np.float64).reshape(n, -1)
