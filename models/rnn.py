"""Models layer: recurrent jet taggers — a QGRU (or QLSTM, or QSimpleRNN) over the pT-ordered constituents, a
small QDense head.

``build_rnn`` is the one builder (``quantized=False``: the float twin with Keras' GRU/LSTM). The quantized
model's recurrent layer is ``QGRUHLS`` / ``QLSTMHLS``: a QKeras ``QGRU``/``QLSTM`` that trains as QKeras does
(quantized weights, float sigmoid/tanh) and *predicts* what hls4ml's ``nnet::gru`` / ``nnet::lstm``
(io_parallel) compute, step by step, in float64:

* ``x·W + b`` and ``h·U + b_r`` exactly, then assigned to ``accum_t``;
* sigmoid / tanh as hls4ml's lookup tables: ``table_size`` entries over [-8, 8) (sigmoid) / [-4, 4) (tanh),
  each value assigned to ``table_t``; index = trunc(v · table_size / 16 or 8) + table_size / 2, clipped;
* every intermediate assignment to ``accum_t`` (GRU: r·(h·U_h + b_rh), the sums) and the new state assigned
  to ``result_t``.

``QSimpleRNNHLS`` (a QKeras ``QSimpleRNN``) has no hls4ml template on Vivado/Vitis; it predicts what its
unrolled firmware (``trigflow.firmware.passes.simplernn_unroll``: per step a Dense ``x_t·W + b`` and a Dense
``h·U``, each on ``accum_t``, their sum on ``accum_t``, hls4ml's tanh ``Activation`` table onto ``result_t``)
computes, with the same table as the GRU's candidate.

Types (``RecurrentTypes``) are written into the hls4ml project by the rnn kind, so the firmware holds exactly
these; the straight-through training path never sees the tables, which is what the lookup costs in accuracy
(the rnn kind reports both).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.quantize.fixed import FixedType

__all__ = [
    "ARCHS", "MIRROR_NAMES", "RecurrentTypes", "build_rnn", "custom_objects", "qkeras_recurrent_fix",
    "recurrent_hls_layer",
    "recurrent_layer", "sigmoid_table", "tanh_table",
]

ARCHS = ("gru", "lstm", "simplernn")
MIRROR_NAMES = {"gru": "QGRUHLS", "lstm": "QLSTMHLS", "simplernn": "QSimpleRNNHLS"}


@dataclass(frozen=True)
class RecurrentTypes:
    """The recurrent layer's firmware types (hls4ml ``accum``, ``table``, ``result``) and table size."""

    accum: str = "fixed<32,10>"
    table: str = "fixed<18,8>"
    result: str = "fixed<16,6,RND,SAT>"
    table_size: int = 1024

    def fixed(self, name: str) -> FixedType:
        return FixedType.parse(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sigmoid_table(size: int, table: FixedType) -> np.ndarray:
    """hls4ml's ``init_sigmoid_table``: 1/(1+exp(-x)) at x = 16·(i − size/2)/size (float) on table_t."""
    i = np.arange(size, dtype=np.float64)
    x = (2 * 8.0 * (i - size / 2.0) / size).astype(np.float32)
    e = np.exp(-x).astype(np.float32)
    value = 1.0 / (np.float32(1) + e).astype(np.float64)
    return table.cast(value)


def tanh_table(size: int, table: FixedType) -> np.ndarray:
    """hls4ml's ``init_tanh_table``: tanh(x) at x = 8·(i − size/2)/size (float), assigned to table_t."""
    i = np.arange(size, dtype=np.float64)
    x = (2 * 4.0 * (i - size / 2.0) / size).astype(np.float32)
    return table.cast(np.tanh(x).astype(np.float32).astype(np.float64))


_CLASSES: dict[str, Any] = {}


def recurrent_hls_layer(arch: str):
    """The ``QGRUHLS`` / ``QLSTMHLS`` / ``QSimpleRNNHLS`` Keras class (made on first use: importing this
    module needs no TF)."""
    if arch not in ARCHS:
        raise TrigflowError(f"unknown recurrent arch '{arch}': choose one of {', '.join(ARCHS)}")
    if arch not in _CLASSES:
        _CLASSES[arch] = _recurrent_hls_class(arch)
    return _CLASSES[arch]


def qkeras_recurrent_fix() -> None:
    """QKeras 0.9's QGRU/QSimpleRNN cells call ``nest.is_sequence`` and ``array_ops.unstack``, which
    TensorFlow 2.14 renamed/moved (``nest.is_nested``, ``tf.unstack``): without these aliases the cells fail
    on their first call."""
    import tensorflow as tf
    from tensorflow.python.ops import array_ops
    from tensorflow.python.util import nest

    if not hasattr(nest, "is_sequence"):
        nest.is_sequence = nest.is_nested
    if not hasattr(array_ops, "unstack"):
        array_ops.unstack = tf.unstack


def _recurrent_hls_class(arch: str):
    import tensorflow as tf
    from qkeras import QGRU, QLSTM, QSimpleRNN

    qkeras_recurrent_fix()

    base = {"gru": QGRU, "lstm": QLSTM, "simplernn": QSimpleRNN}[arch]

    class RecurrentHLS(base):  # type: ignore[misc, valid-type]
        """``base`` predicting with hls4ml's fixed-point recurrent arithmetic (see the module docstring)."""

        def __init__(self, *args, hls_types: dict | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.hls_types = RecurrentTypes(**(hls_types or {}))

        def get_config(self):
            return {**super().get_config(), "hls_types": self.hls_types.to_dict()}

        def call(self, inputs, mask=None, training=None, initial_state=None):
            if training:
                return super().call(inputs, mask=mask, training=training, initial_state=initial_state)
            y = self._hls_forward(tf.cast(inputs, tf.float64))
            return tf.cast(y, self.compute_dtype)

        # --- the firmware's arithmetic -------------------------------------------------------------------
        def firmware_weights(self):
            """(kernel, recurrent kernel, bias) on their quantizers' grids (float64): the firmware's."""
            return self._weights()

        def _weights(self):
            cell = self.cell
            kq = cell.kernel_quantizer_internal
            rq, bq = cell.recurrent_quantizer_internal, cell.bias_quantizer_internal

            def q(quantizer, w):
                w = tf.cast(w, tf.float64)
                return w if quantizer is None else tf.cast(quantizer(w), tf.float64)

            return q(kq, cell.kernel), q(rq, cell.recurrent_kernel), q(bq, cell.bias)

        def _lut(self, v, table: np.ndarray, span: float):
            size = self.hls_types.table_size
            index = tf.cast(v * (size / span), tf.int64) + size // 2  # C++ int(): truncation toward zero
            index = tf.clip_by_value(index, 0, size - 1)
            return tf.gather(tf.constant(table, tf.float64), index)

        def _hls_forward(self, x):
            t = self.hls_types
            acc, res = t.fixed("accum"), t.fixed("result")
            sig = sigmoid_table(t.table_size, t.fixed("table"))
            tanh = tanh_table(t.table_size, t.fixed("table"))
            n = self.units
            kernel, recurrent, bias = self._weights()

            def a(v):
                return acc.cast(v, tf)

            def dense(v, w, b):  # nnet::dense: each product and the bias assigned to accum_t, then summed
                products = a(v[:, :, None] * w[None])
                return tf.reduce_sum(products, axis=1) + a(b)

            h = tf.zeros((tf.shape(x)[0], n), tf.float64)
            s = h
            for step in range(x.shape[1]):
                xw = dense(x[:, step], kernel, bias[0] if arch == "gru" else bias)
                if arch == "simplernn":  # the unrolled firmware: two Dense layers on accum_t, Add, tanh table
                    hu = dense(h, recurrent, tf.zeros_like(bias))
                    h = res.cast(self._lut(a(a(xw) + a(hu)), tanh, 8.0), tf)
                elif arch == "gru":
                    hu = dense(h, recurrent, bias[1])
                    zr = self._lut(a(xw[:, : 2 * n] + hu[:, : 2 * n]), sig, 16.0)
                    z, r = zr[:, :n], zr[:, n:]
                    rh = a(r * hu[:, 2 * n :])
                    cand = self._lut(a(xw[:, 2 * n :] + rh), tanh, 8.0)
                    h = res.cast(cand * (1.0 - z) + h * z, tf)
                else:
                    hu = dense(h, recurrent, tf.zeros_like(bias))  # hls4ml's LSTM: zero recurrent bias
                    gates = a(xw + hu)
                    ifo = self._lut(tf.concat([gates[:, : 2 * n], gates[:, 3 * n :]], 1), sig, 16.0)
                    c = self._lut(gates[:, 2 * n : 3 * n], tanh, 8.0)
                    i, f, o = ifo[:, :n], ifo[:, n : 2 * n], ifo[:, 2 * n :]
                    s = res.cast(c * i + s * f, tf)
                    h = res.cast(o * self._lut(s, tanh, 8.0), tf)
            return h

    RecurrentHLS.__name__ = RecurrentHLS.__qualname__ = MIRROR_NAMES[arch]
    return RecurrentHLS


def _weight_quantizer(bits: int, integer: int):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def build_rnn(
    n_steps: int,
    n_features: int,
    n_classes: int,
    *,
    arch: str = "gru",
    units: int = 16,
    head_hidden: tuple[int, ...] = (16,),
    quantized: bool = True,
    spec: Any = None,
    types: RecurrentTypes | None = None,
    seed: int = 0,
):
    """(steps, features) sequence → recurrent layer (last state) → QDense/ReLU head → ``n_classes`` logits."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    if arch not in ARCHS:
        raise TrigflowError(f"unknown model.arch '{arch}' for rnn: choose one of {', '.join(ARCHS)}")
    bits, integer = (spec.bits, spec.integer) if spec is not None else (6, 0)
    input_bits, input_integer = (spec.input_bits, spec.input_integer) if spec is not None else (12, 4)
    init = iter(tf.keras.initializers.GlorotUniform(seed + k) for k in range(100))
    x_in = tf.keras.Input((n_steps, n_features), name="sequence")
    common = {"units": units, "kernel_initializer": next(init), "name": arch}
    if arch == "gru":
        common["reset_after"] = True  # the form hls4ml's nnet::gru computes
    activations = {"activation": "tanh"}
    if arch != "simplernn":
        activations["recurrent_activation"] = "sigmoid"
    if quantized:
        x = QActivation(quantized_bits(input_bits, input_integer, alpha=1), name="input_quant")(x_in)
        wq = {"kernel_quantizer": _weight_quantizer(bits, integer),
              "recurrent_quantizer": _weight_quantizer(bits, integer),
              "bias_quantizer": _weight_quantizer(bits, integer)}
        layer = recurrent_hls_layer(arch)(
            **activations,
            hls_types=(types or RecurrentTypes()).to_dict(),
            **wq, **common,
        )
        x = layer(x)
        for k, width in enumerate(head_hidden):
            x = QDense(width, kernel_quantizer=_weight_quantizer(bits, integer),
                       bias_quantizer=_weight_quantizer(bits, integer), kernel_initializer=next(init),
                       name=f"head_dense_{k}")(x)
            x = QActivation(quantized_relu(bits, integer + 2), name=f"head_relu_{k}")(x)
        out = QDense(n_classes, kernel_quantizer=_weight_quantizer(bits, integer),
                     bias_quantizer=_weight_quantizer(bits, integer), kernel_initializer=next(init),
                     name="output")(x)
    else:
        base = {"gru": tf.keras.layers.GRU, "lstm": tf.keras.layers.LSTM,
                "simplernn": tf.keras.layers.SimpleRNN}[arch]
        x = base(**activations, **common)(x_in)
        for k, width in enumerate(head_hidden):
            x = tf.keras.layers.Dense(width, kernel_initializer=next(init), name=f"head_dense_{k}")(x)
            x = tf.keras.layers.ReLU(name=f"head_relu_{k}")(x)
        out = tf.keras.layers.Dense(n_classes, kernel_initializer=next(init), name="output")(x)
    name = f"{'q' if quantized else 'float'}_{arch}"
    return tf.keras.Model(x_in, out, name=name)


def recurrent_layer(model):
    for layer in model.layers:
        if type(layer).__name__ in MIRROR_NAMES.values():
            return layer
    raise TrigflowError(f"model '{model.name}' holds no {'/'.join(MIRROR_NAMES.values())} layer")


def custom_objects() -> dict[str, Any]:
    """Objects needed by ``tf.keras.models.load_model`` for models built here (QKeras + the HLS mirrors)."""
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    for arch in ARCHS:
        cls = recurrent_hls_layer(arch)
        objects[cls.__name__] = cls
    return objects
