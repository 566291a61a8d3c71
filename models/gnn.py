"""Models layer: graph networks on jet constituents — Interaction Network, DeepSets, GarNet.

Every builder takes the particle cloud ``(n_particles, n_features)`` (e.g. pT/pT_jet, Δη, Δφ, ...) and ends
in class logits (no softmax). ``quantized=True`` gives the QKeras model, ``quantized=False`` the float twin
with the same layers, names and weights layout (only the quantizers differ; the float twin has no input
quantizer layer).

Quantization (QKeras side; see ``docs/gnn.md``):

* input:        ``QActivation(quantized_bits(input_bits, input_integer, alpha=1))`` — first layer;
* weights/bias: ``quantized_bits(bits, integer, alpha=1)``;
* activations:  ``QActivation(quantized_relu(bits, relu_integer))`` after every hidden affine layer.
  Sums (edge aggregation, pooling, concatenation) are left exact: their fixed-point types are derived
  exactly by ``trigflow.firmware.gnn``.

Interaction Network (fully connected graph, ``E = N(N-1)`` directed edges, receiver-major order, see
:func:`edge_index`) is written with stock Keras layers only, so hls4ml converts it without custom code:

* gather:    ``Permute`` → ``Dense(2E)`` with the fixed 0/1 matrix ``[R_r | R_s]`` (non-trainable, no bias)
  → ``Reshape`` → ``Permute``, giving the edge tensor ``(E, 2F)`` with columns
  ``[x_recv_0, x_send_0, x_recv_1, x_send_1, ...]`` (interleaved — the edge MLP is dense, order is free);
* edge MLP:  ``QDense`` applied per edge (rank-3 input);
* aggregate: ``Permute`` → ``Dense(N)`` with ``R_r^T`` (sum of incoming edge messages) → ``Permute``;
* node MLP:  ``QDense`` per node on ``concat(x, aggregated)``;
* pooling:   ``'mean'`` (``GlobalAveragePooling1D``; exact in firmware only for power-of-two N) or
  ``'sum'`` (``Permute`` → ``Dense(1)`` of ones → ``Reshape``);
* classifier ``QDense`` → ``QActivation(relu)`` ... → ``QDense(n_classes)`` logits.

GarNet uses hls4ml's own contrib layer (``hls4ml.contrib.garnet.GarNet``); see :func:`build_garnet`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Names the firmware layer relies on: fixed 0/1 "structure" Dense layers are plain (non-Q) Dense layers.
STRUCTURE_LAYERS = ("edge_gather", "edge_aggregate", "pool_sum")


# ---------------------------------------------------------------------------------------------------------
# graph structure
# ---------------------------------------------------------------------------------------------------------
def edge_index(n_particles: int) -> tuple[np.ndarray, np.ndarray]:
    """Receivers and senders of the fully connected directed graph without self loops.

    Edge ``e = i*(N-1) + k`` goes from sender ``j`` (the k-th particle other than ``i``) to receiver ``i``.
    """
    n = int(n_particles)
    if n < 2:
        raise ValueError(f"an interaction network needs at least 2 particles, got {n}")
    recv = np.repeat(np.arange(n), n - 1)
    send = np.array([j for i in range(n) for j in range(n) if j != i])
    return recv, send


def interaction_matrices(n_particles: int) -> tuple[np.ndarray, np.ndarray]:
    """The receiving and sending matrices ``R_r, R_s`` of shape ``(N, E)`` (0/1, one 1 per column)."""
    recv, send = edge_index(n_particles)
    e = np.arange(len(recv))
    rr = np.zeros((n_particles, len(recv)), np.float32)
    rs = np.zeros((n_particles, len(recv)), np.float32)
    rr[recv, e] = 1.0
    rs[send, e] = 1.0
    return rr, rs


# ---------------------------------------------------------------------------------------------------------
# quantization helpers
# ---------------------------------------------------------------------------------------------------------
class _Q:
    """Layer factory for one twin: QKeras layers when quantized, plain Keras layers otherwise."""

    def __init__(self, quantized: bool, bits: int, integer: int, relu_integer: int, input_bits: int,
                 input_integer: int, seed: int):
        self.quantized = quantized
        self.bits, self.integer, self.relu_integer = bits, integer, relu_integer
        self.input_bits, self.input_integer = input_bits, input_integer
        self.seed = seed
        self._n = 0

    def _init(self):
        import tensorflow as tf

        self._n += 1
        return tf.keras.initializers.GlorotUniform(self.seed + self._n)

    def weight_quantizer(self):
        from qkeras import quantized_bits

        return quantized_bits(self.bits, self.integer, alpha=1)

    def input(self, x, name="input_quant"):
        from qkeras import QActivation, quantized_bits

        if not self.quantized:
            return x
        return QActivation(quantized_bits(self.input_bits, self.input_integer, alpha=1), name=name)(x)

    def dense(self, x, units: int, name: str):
        import tensorflow as tf
        from qkeras import QDense

        if self.quantized:
            wq = self.weight_quantizer
            return QDense(units, kernel_quantizer=wq(), bias_quantizer=wq(), kernel_initializer=self._init(),
                          name=name)(x)
        return tf.keras.layers.Dense(units, kernel_initializer=self._init(), name=name)(x)

    def relu(self, x, name: str):
        import tensorflow as tf
        from qkeras import QActivation, quantized_relu

        if self.quantized:
            return QActivation(quantized_relu(self.bits, self.relu_integer), name=name)(x)
        return tf.keras.layers.ReLU(name=name)(x)

    def mlp(self, x, widths: tuple[int, ...], prefix: str, *, last_relu: bool = True):
        for k, width in enumerate(widths):
            x = self.dense(x, width, f"{prefix}_dense_{k}")
            if last_relu or k < len(widths) - 1:
                x = self.relu(x, f"{prefix}_relu_{k}")
        return x


def _resolve(bits, integer, relu_integer, input_bits, input_integer, spec) -> tuple[int, int, int, int, int]:
    if spec is not None:  # trigflow.quantize.presets.QuantSpec (duck-typed)
        bits, integer = spec.bits, spec.integer
        input_bits, input_integer = spec.input_bits, spec.input_integer
        relu_integer = spec.integer if relu_integer is None else relu_integer
    relu_integer = 2 if relu_integer is None else relu_integer
    input_bits = 12 if input_bits is None else input_bits
    input_integer = 2 if input_integer is None else input_integer
    return int(bits), int(integer), int(relu_integer), int(input_bits), int(input_integer)


def _constant_dense(x, matrix: np.ndarray, name: str):
    """A fixed, non-trainable, bias-free Dense (0/1 structure matrix); converts as an exact matrix product."""
    import tensorflow as tf

    layer = tf.keras.layers.Dense(
        matrix.shape[1], use_bias=False, trainable=False,
        kernel_initializer=tf.keras.initializers.Constant(matrix.astype(np.float32)), name=name,
    )
    y = layer(x)
    layer.set_weights([matrix.astype(np.float32)])
    return y


def _pool(x, n_items: int, width: int, pooling: str):
    import tensorflow as tf

    if pooling == "mean":
        return tf.keras.layers.GlobalAveragePooling1D(name="pool_mean")(x)
    if pooling == "sum":
        x = tf.keras.layers.Permute((2, 1), name="pool_T")(x)  # (D, N)
        x = _constant_dense(x, np.ones((n_items, 1), np.float32), "pool_sum")  # (D, 1)
        return tf.keras.layers.Reshape((width,), name="pool_flat")(x)
    raise ValueError(f"pooling must be 'mean' or 'sum', got {pooling!r}")


# ---------------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------------
def build_interaction_network(
    n_particles: int = 8,
    n_features: int = 3,
    n_classes: int = 5,
    *,
    quantized: bool = True,
    bits: int = 8,
    integer: int = 0,
    relu_integer: int | None = None,
    input_bits: int | None = None,
    input_integer: int | None = None,
    edge_hidden: tuple[int, ...] = (16,),
    edge_dim: int = 8,
    node_hidden: tuple[int, ...] = (16,),
    node_dim: int = 8,
    head_hidden: tuple[int, ...] = (16,),
    pooling: str = "mean",
    spec: Any = None,
    seed: int = 0,
):
    """Interaction Network (Battaglia et al. 2016; JEDI-net layout) on a fully connected particle graph.

    Shapes: x (N, F) → edges (E, 2F) → edge MLP (E, edge_dim) → summed into receivers (N, edge_dim)
    → node MLP on [x, aggregated] (N, node_dim) → pooling (node_dim) → head → logits (n_classes).
    ``relu_integer`` defaults to 2 (``spec.integer`` when a QuantSpec is given), inputs to
    ``quantized_bits(12, 2)``.
    """
    import tensorflow as tf

    bits, integer, relu_integer, input_bits, input_integer = _resolve(
        bits, integer, relu_integer, input_bits, input_integer, spec)
    q = _Q(quantized, bits, integer, relu_integer, input_bits, input_integer, seed)
    n, f = int(n_particles), int(n_features)
    n_edges = n * (n - 1)
    rr, rs = interaction_matrices(n)

    inputs = tf.keras.Input((n, f), name="particles")
    x = q.input(inputs)
    # gather sender/receiver features onto edges: (N,F) -> (F,N) -> (F,2E) -> (2F,E) -> (E,2F)
    h = tf.keras.layers.Permute((2, 1), name="edge_gather_T")(x)
    h = _constant_dense(h, np.concatenate([rr, rs], axis=1), "edge_gather")
    h = tf.keras.layers.Reshape((2 * f, n_edges), name="edge_gather_reshape")(h)
    h = tf.keras.layers.Permute((2, 1), name="edges")(h)
    # edge function
    h = q.mlp(h, (*edge_hidden, edge_dim), "edge")
    # aggregate messages to receivers: (E,D) -> (D,E) -> (D,N) -> (N,D)
    h = tf.keras.layers.Permute((2, 1), name="edge_aggregate_T")(h)
    h = _constant_dense(h, rr.T.copy(), "edge_aggregate")
    h = tf.keras.layers.Permute((2, 1), name="aggregated")(h)
    # node function
    h = tf.keras.layers.Concatenate(axis=-1, name="node_inputs")([x, h])
    h = q.mlp(h, (*node_hidden, node_dim), "node")
    # graph readout
    h = _pool(h, n, node_dim, pooling)
    h = q.mlp(h, tuple(head_hidden), "head")
    out = q.dense(h, n_classes, "logits")
    return tf.keras.Model(inputs, out, name=("q" if quantized else "float") + "_interaction_network")


def build_deepsets(
    n_particles: int = 8,
    n_features: int = 3,
    n_classes: int = 5,
    *,
    quantized: bool = True,
    bits: int = 8,
    integer: int = 0,
    relu_integer: int | None = None,
    input_bits: int | None = None,
    input_integer: int | None = None,
    phi_hidden: tuple[int, ...] = (16, 16),
    rho_hidden: tuple[int, ...] = (16,),
    pooling: str = "mean",
    spec: Any = None,
    seed: int = 0,
):
    """DeepSets baseline: per-particle MLP φ (QDense on (N, F)), permutation-invariant pooling, MLP ρ."""
    import tensorflow as tf

    bits, integer, relu_integer, input_bits, input_integer = _resolve(
        bits, integer, relu_integer, input_bits, input_integer, spec)
    q = _Q(quantized, bits, integer, relu_integer, input_bits, input_integer, seed)
    inputs = tf.keras.Input((int(n_particles), int(n_features)), name="particles")
    x = q.input(inputs)
    h = q.mlp(x, tuple(phi_hidden), "phi")
    h = _pool(h, int(n_particles), int(phi_hidden[-1]), pooling)
    h = q.mlp(h, tuple(rho_hidden), "rho")
    out = q.dense(h, n_classes, "logits")
    return tf.keras.Model(inputs, out, name=("q" if quantized else "float") + "_deepsets")


def build_garnet(
    n_particles: int = 8,
    n_features: int = 3,
    n_classes: int = 5,
    *,
    quantized: bool = True,
    bits: int = 8,
    integer: int = 0,
    relu_integer: int | None = None,
    input_bits: int | None = None,
    input_integer: int | None = None,
    n_aggregators: int = 4,
    n_filters: int = 8,
    n_propagate: int = 8,
    head_hidden: tuple[int, ...] = (16,),
    spec: Any = None,
    seed: int = 0,
):
    """GarNet (Qasim et al. 2019) through hls4ml's contrib layer, then a classifier head.

    hls4ml 1.3 converts only ``GarNet(simplified=True, input_format='xn', output_activation=None|'linear')``,
    so the model has two inputs: ``particles`` (N, F) and ``n_valid`` (1,) — the number of real particles
    (vertices ≥ n_valid are masked; pass ``n_particles`` for fully populated clouds). The GarNet layer
    collapses the vertices with a mean (``collapse='mean'``).

    The GarNet block itself is float in both twins: hls4ml maps ``quantize_transforms=True`` to *ternary*
    weights, which does not match the Keras layer's ``quantized_bits`` transforms, so it is not used. With
    ``quantized=True`` the input and the classifier head are QKeras-quantized. The firmware is therefore
    not bit-exact (the HLS layer evaluates exp(-d²) from a lookup table in its own fixed-point formats);
    ``docs/gnn.md`` reports the measured deviation.
    """
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet

    bits, integer, relu_integer, input_bits, input_integer = _resolve(
        bits, integer, relu_integer, input_bits, input_integer, spec)
    q = _Q(quantized, bits, integer, relu_integer, input_bits, input_integer, seed)
    inputs = tf.keras.Input((int(n_particles), int(n_features)), name="particles")
    n_valid = tf.keras.Input((1,), name="n_valid", dtype="uint16")
    x = q.input(inputs)
    h = GarNet(n_aggregators, n_filters, n_propagate, simplified=True, collapse="mean", input_format="xn",
               output_activation=None, name="garnet", quantize_transforms=False)([x, n_valid])
    h = q.relu(h, "garnet_relu")
    h = q.mlp(h, tuple(head_hidden), "head")
    out = q.dense(h, n_classes, "logits")
    return tf.keras.Model([inputs, n_valid], out, name=("q" if quantized else "float") + "_garnet")


def custom_objects() -> dict[str, Any]:
    """Objects needed by ``tf.keras.models.load_model`` for models built here (QKeras + hls4ml GarNet)."""
    from hls4ml.contrib.garnet import GarNet
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    objects["GarNet"] = GarNet
    return objects
