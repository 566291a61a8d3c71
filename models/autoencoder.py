"""Models layer: the dense autoencoder (AE) and variational autoencoder (VAE) anomaly triggers.

Two kinds of model per architecture, each from one builder with a ``quantized`` switch (``quantized=False`` is
the float twin: the same layers, names and weight shapes, with the quantizers replaced by ReLU / identity):

* the **training model** ``build_autoencoder``: 57 inputs → encoder (``hidden``) → latent → mirrored decoder →
  57 reconstructed inputs. The VAE's encoder ends in ``z_mean`` and ``z_log_var``; a ``Sampling`` layer draws
  ``z = μ + σ·ε`` (only while training) and adds ``beta × KL(q(z|x) ‖ N(0, 1))`` to the loss.
* the **deployed model** ``build_deployed``: what goes to the FPGA, with one output per event, the anomaly
  score, computed in fixed point on chip. It shares the trained layers (and so the weights) and appends

  - AE, score ``"reconstruction"``: ``d = x − x̂`` (``Subtract``), quantized to ``diff_quant``;
  - VAE (or AE with score ``"latent"``): ``d = μ`` quantized to ``z_mean_quant`` / ``latent_quant``;

  then ``d²`` (``Multiply`` of the tensor with itself) → ``square_quant`` → ``score_sum`` (a ``QDense`` with a
  fixed all-ones kernel and no bias) → ``score`` (a ``quantized_bits`` wide enough to be exact).

Every tensor of the deployed QKeras model is a fixed-point number with a known type, and each type is chosen
so the float32 arithmetic of TensorFlow is exact (≤ 24 significant bits): then hls4ml's bit-exact precision
propagation gives the same bits in the C-simulation as QKeras (``ScoreFormat`` states the formats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trigflow.errors import TrigflowError
from trigflow.quantize.fixed import FixedType
from trigflow.quantize.presets import QuantSpec

ARCHS = ("ae", "vae")
SCORES = ("reconstruction", "latent")
DIFF_INTEGER = 4  # per-feature reconstruction difference saturates at ±16 (standardised units)
DIFF_FRACTIONAL = 4  # ... with a step of 1/16
LATENT_INTEGER = 4  # latent coordinates (AE z, VAE μ) span ±16
FLOAT32_EXACT_BITS = 24  # float32 significand: integers up to 2**24 are exact


def signed_format(integer: int, fractional: int) -> FixedType:
    """The ap_fixed type of a signed QKeras ``quantized_bits(1 + integer + fractional, integer, alpha=1)``
    (``integer`` without the sign bit, the QKeras convention); ``.quantizer()`` gives that quantizer back.

    Always signed: hls4ml 1.3 maps ``quantized_bits`` to a signed type whatever its ``keep_negative``, so an
    unsigned QKeras quantizer would lose its last fractional bit in the firmware.
    """
    return FixedType(True, 1 + integer + fractional, integer + 1)


def format_summary(t: FixedType) -> dict:
    """The report's description of a signed format: QKeras ``bits``/``integer`` and the ap_fixed type."""
    return {"bits": t.width, "integer": t.integer - 1, "fractional": t.frac, "lsb": t.lsb, "type": t.ap}


@dataclass(frozen=True)
class ScoreFormat:
    """Fixed-point formats of the on-chip score ``Σ d²`` over ``terms`` values ``d`` of format ``term``.

    ``d`` (I integer and F fractional bits) squares to at most 2^(2I) with step 2^(-2F): the square needs
    2I + 1 integer bits, the sum of n squares ⌊log2(n·2^(2I))⌋ + 1, and both keep all 2F fractional bits, so
    nothing is rounded or saturated after ``d`` (both types carry a sign bit that is always 0).
    """

    term: FixedType  # signed: see signed_format
    terms: int

    @property
    def square(self) -> FixedType:
        return signed_format(2 * (self.term.integer - 1) + 1, 2 * self.term.frac)

    @property
    def score(self) -> FixedType:
        max_sum = self.terms * 2.0 ** (2 * (self.term.integer - 1))
        return signed_format(math.floor(math.log2(max_sum)) + 1, 2 * self.term.frac)

    def check_float32_exact(self) -> None:
        if self.score.width - 1 > FLOAT32_EXACT_BITS:
            raise TrigflowError(
                f"score format {self.score.ap} needs {self.score.width} bits: QKeras (float32) would round it; "
                "use fewer fractional/integer bits for the score term"
            )


def diff_format() -> FixedType:
    return signed_format(DIFF_INTEGER, DIFF_FRACTIONAL)


def latent_format(spec: QuantSpec) -> FixedType:
    """Latent coordinates: the activation step of ``spec`` with a range of ±2^LATENT_INTEGER."""
    return signed_format(LATENT_INTEGER, spec.bits - spec.integer - 1)


def score_format(n_inputs: int, latent: int, spec: QuantSpec, score: str) -> ScoreFormat:
    if score == "reconstruction":
        return ScoreFormat(diff_format(), n_inputs)
    if score == "latent":
        return ScoreFormat(latent_format(spec), latent)
    raise TrigflowError(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")


def default_score(arch: str) -> str:
    return "latent" if arch == "vae" else "reconstruction"


def _sampling_layer():
    import tensorflow as tf

    class Sampling(tf.keras.layers.Layer):
        """z = μ + exp(log σ² / 2)·ε while training (μ otherwise); adds ``beta`` × the mean KL to the loss."""

        def __init__(self, beta: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            self.beta = float(beta)

        def call(self, inputs, training=None):
            z_mean, z_log_var = inputs
            z_log_var = tf.clip_by_value(z_log_var, -10.0, 10.0)
            kl = -0.5 * tf.reduce_sum(1.0 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1)
            self.add_loss(self.beta * tf.reduce_mean(kl))
            if not training:
                return z_mean
            eps = tf.random.normal(tf.shape(z_mean))
            return z_mean + tf.exp(0.5 * z_log_var) * eps

        def get_config(self):
            return {**super().get_config(), "beta": self.beta}

    return Sampling


def build_autoencoder(
    n_inputs: int = 57,
    hidden: tuple[int, ...] = (32, 16),
    latent: int = 3,
    *,
    arch: str = "ae",
    quantized: bool = True,
    spec: QuantSpec | None = None,
    beta: float = 1.0,
    seed: int = 0,
):
    """The training model: inputs → reconstruction (the VAE adds its KL term through ``Sampling``)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense

    if arch not in ARCHS:
        raise TrigflowError(f"unknown autoencoder arch {arch!r}: choose one of {', '.join(ARCHS)}")
    spec = spec or QuantSpec()
    counter = iter(range(1000))

    def dense(width: int, name: str):
        init = tf.keras.initializers.GlorotUniform(seed + next(counter))
        if quantized:
            return QDense(
                width, kernel_quantizer=spec.weight(), bias_quantizer=spec.weight(), kernel_initializer=init, name=name
            )
        return tf.keras.layers.Dense(width, kernel_initializer=init, name=name)

    def relu(name: str):
        return QActivation(spec.relu(), name=name) if quantized else tf.keras.layers.ReLU(name=name)

    def quant(fmt: FixedType, name: str):
        return QActivation(fmt.quantizer(), name=name) if quantized else tf.keras.layers.Activation("linear", name=name)

    inputs = tf.keras.Input((n_inputs,), name="features")
    x = QActivation(spec.input(), name="input_quant")(inputs) if quantized else tf.keras.layers.Activation(
        "linear", name="input_quant"
    )(inputs)
    h = x
    for i, width in enumerate(hidden):
        h = relu(f"enc_relu_{i}")(dense(width, f"enc_{i}")(h))
    zfmt = latent_format(spec)
    if arch == "vae":
        z_mean = quant(zfmt, "z_mean_quant")(dense(latent, "z_mean")(h))
        z_log_var = dense(latent, "z_log_var")(h)
        z = _sampling_layer()(beta=beta, name="sampling")([z_mean, z_log_var])
    else:
        z = quant(zfmt, "latent_quant")(dense(latent, "latent")(h))
    h = z
    for i, width in enumerate(reversed(hidden)):
        h = relu(f"dec_relu_{i}")(dense(width, f"dec_{i}")(h))
    reconstruction = dense(n_inputs, "reconstruction")(h)
    prefix = "q" if quantized else "float"
    return tf.keras.Model(inputs, reconstruction, name=f"{prefix}_{arch}")


def build_deployed(model, *, quantized: bool, spec: QuantSpec | None = None, score: str | None = None):
    """The firmware model: ``model``'s layers (shared weights) up to the score, one output per event."""
    import numpy as np
    import tensorflow as tf
    from qkeras import QActivation, QDense

    spec = spec or QuantSpec()
    arch = "vae" if "z_mean" in [layer.name for layer in model.layers] else "ae"
    score = score or default_score(arch)
    n_inputs = model.input_shape[-1]
    if arch == "vae" and score != "latent":
        raise TrigflowError("the VAE's deployed score is the latent mean μ² (score='latent')")

    def quant(fmt: FixedType, name: str):
        return QActivation(fmt.quantizer(), name=name) if quantized else tf.keras.layers.Activation("linear", name=name)

    if score == "reconstruction":
        x = model.get_layer("input_quant").output
        x_hat = model.get_layer("reconstruction").output
        d = quant(diff_format(), "diff_quant")(tf.keras.layers.Subtract(name="diff")([x, x_hat]))
        terms = n_inputs
    else:
        d = model.get_layer("z_mean_quant" if arch == "vae" else "latent_quant").output
        terms = d.shape[-1]
    fmt = score_format(n_inputs, terms, spec, score)
    fmt.check_float32_exact()
    squares = quant(fmt.square, "square_quant")(tf.keras.layers.Multiply(name="square")([d, d]))
    ones = tf.keras.initializers.Ones()
    if quantized:
        from qkeras import quantized_bits

        summed = QDense(
            1,
            use_bias=False,
            kernel_quantizer=quantized_bits(2, 1, alpha=1),  # holds 1.0 exactly
            kernel_initializer=ones,
            trainable=False,
            name="score_sum",
        )(squares)
    else:
        summed = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer=ones, trainable=False, name="score_sum")(
            squares
        )
    out = quant(fmt.score, "score")(summed)
    deployed = tf.keras.Model(model.input, out, name=f"{model.name}_score")
    kernel = deployed.get_layer("score_sum").kernel
    kernel.assign(np.ones(kernel.shape, np.float32))
    return deployed


def deployed_score_format(model, spec: QuantSpec | None = None, score: str | None = None) -> ScoreFormat:
    """The ``ScoreFormat`` of ``build_deployed(model, ...)`` (without building it)."""
    spec = spec or QuantSpec()
    names = [layer.name for layer in model.layers]
    arch = "vae" if "z_mean" in names else "ae"
    score = score or default_score(arch)
    latent = model.get_layer("z_mean" if arch == "vae" else "latent").output_shape[-1]
    return score_format(model.input_shape[-1], latent, spec, score)
