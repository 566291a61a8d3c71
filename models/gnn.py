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

GarNet: hls4ml's contrib layer in the float twin; in the QKeras model ``GarNetHLS``, the same layer computing
exactly the firmware's fixed-point arithmetic (see :func:`build_garnet`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.quantize.fixed import FixedType

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
        raise TrigflowError(f"an interaction network needs at least 2 particles, got {n}")
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
    raise TrigflowError(f"pooling must be 'mean' or 'sum', got {pooling!r}")


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
    garnet_result: str = "fixed<24,8,RND,SAT>",
    spec: Any = None,
    seed: int = 0,
):
    """GarNet (Qasim et al. 2019), then a classifier head; two inputs: ``particles`` (N, F) and ``n_valid``
    (1,), the number of real particles (vertices ≥ n_valid are masked; pass ``n_particles`` for fully
    populated clouds). Only what hls4ml 1.3 converts: ``simplified=True``, ``collapse='mean'`` (over N),
    ``input_format='xn'``, no output activation.

    ``quantized=True``: the input quantizer, ``GarNetHLS`` (a GarNet that computes exactly the fixed-point
    arithmetic of hls4ml's ``nnet::garnet``: truncated 12-bit distances, the exp(-d²) table, the contracted
    transforms with 10 fractional bits, ``garnet_types`` for the internal arrays) and a QKeras head, so the
    firmware is bit-exact (``trigflow.firmware.gnn.convert_graph_network``). ``quantized=False``: hls4ml's float
    ``GarNet`` with the same sublayers and weight shapes. N must be a power of two (the firmware divides by
    shifting). ``garnet_result``: the GarNet output type (≤ 24 bits).
    """
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet

    bits, integer, relu_integer, input_bits, input_integer = _resolve(
        bits, integer, relu_integer, input_bits, input_integer, spec)
    q = _Q(quantized, bits, integer, relu_integer, input_bits, input_integer, seed)
    inputs = tf.keras.Input((int(n_particles), int(n_features)), name="particles")
    n_valid = tf.keras.Input((1,), name="n_valid", dtype="uint16")
    x = q.input(inputs)
    common = {"simplified": True, "collapse": "mean", "input_format": "xn", "output_activation": None,
              "name": "garnet", "quantize_transforms": False}
    if quantized:
        types = garnet_types(int(n_particles), input_bits, input_integer, result=garnet_result)
        h = garnet_hls_layer()(n_aggregators, n_filters, n_propagate, types=types, **common)([x, n_valid])
    else:
        h = GarNet(n_aggregators, n_filters, n_propagate, **common)([x, n_valid])
    h = q.relu(h, "garnet_relu")
    h = q.mlp(h, tuple(head_hidden), "head")
    out = q.dense(h, n_classes, "logits")
    return tf.keras.Model([inputs, n_valid], out, name=("q" if quantized else "float") + "_garnet")


# ---------------------------------------------------------------------------------------------------------
# GarNet: a Keras layer that computes exactly what hls4ml's nnet_garnet.h computes
# ---------------------------------------------------------------------------------------------------------
# Fixed by hls4ml 1.3 (backends/vivado/passes/garnet_templates.py, nnet_utils/nnet_garnet.h, model/layers.py):
GARNET_DISTANCE = "fixed<12,4,TRN,SAT>"  # distance_t: ap_fixed<12, 4, AP_TRN, AP_SAT>, hard-coded
GARNET_EXP_FRAC = 16  # hls::exp(-d*d) returns the type of -d*d, ap_fixed_base<25,9> (AP_TRN): 16 frac bits
GARNET_WEIGHT_FRAC = 10  # GarNet weights are stored with 10 fractional bits (AP_RND, AP_SAT)
# (hls4ml's defaults; other garnet_types(distance=, weight_frac=) need hls4ml_patches.garnet_widths)
GARNET_FLOAT64_BITS = 52  # the mirror computes in float64: every product/sum must fit 53 significant bits
# widths hls4ml hard-codes that trigflow sets per layer (hls4ml_patches.garnet_widths); garnet_types keys
GARNET_WIDTH_KEYS = ("distance", "weight_frac", "distance_weight_frac", "weighted_feature")


def garnet_type(text: str) -> FixedType:
    """A GarNet precision: a fixed-point type the mirror reproduces (TRN, RND or RND_CONV; SAT)."""
    t = FixedType.parse(text)
    if t.rounding not in ("TRN", "RND", "RND_CONV"):
        raise TrigflowError(f"{text}: rounding must be TRN, RND or RND_CONV for the GarNet mirror")
    if t.overflow != "SAT":
        raise TrigflowError(f"{text}: the GarNet mirror needs saturating types (…,SAT>)")
    return t


GARNET_DISTANCE_T = garnet_type(GARNET_DISTANCE)
GARNET_GRID = FixedType(True, 25, 9, "RND", "SAT")  # FLR/Fout before contraction: 2^-16 grid, |w| < 256


def garnet_types(n_vertices: int, input_bits: int, input_integer: int, *, edge_weight_frac: int = 16,
                 aggr_frac: int = 18, result: str = "fixed<24,8,RND,SAT>", distance: str = GARNET_DISTANCE,
                 weight_frac: int = GARNET_WEIGHT_FRAC, distance_weight_frac: int | None = None,
                 weighted_feature_frac: int | None = None) -> dict[str, str]:
    """hls4ml precisions for a GarNet layer that the mirror (``GarNetHLS``) reproduces exactly.

    ``data``: the layer's input type (the input quantizer's). ``edge_weight``: exp(-d²) table entries and
    the vertex mean of the edge weights; ``edge_weight_aggr``: per-vertex sums of edge weights, wide enough
    that the sum and its division by N are exact; ``aggr``: weighted feature means (exact) and the output
    transform accumulator; ``result``: the layer output (≤ 24 bits: float32 holds it exactly).
    ``distance`` (the template's ``distance_t``) and ``weight_frac`` (fractional bits of the stored GarNet
    weights): hls4ml's hard-coded ``ap_fixed<12,4,AP_TRN,AP_SAT>`` and 10 by default; other values need
    ``firmware.hls4ml_patches.garnet_widths`` at conversion (``firmware.gnn`` applies it), as do the two
    optional widths: ``distance_weight_frac`` (fractional bits of the distance weights S and their biases;
    default ``weight_frac``) and ``weighted_feature_frac`` (the type the data·edge-weight products are rounded
    to, ``weighted_feature``; default the input type, as hls4ml's template does).
    """
    k = int(round(math.log2(n_vertices)))
    if 2**k != n_vertices:
        raise TrigflowError(f"GarNet firmware normalises by shifting: n_vertices must be a power of two, "
                         f"got {n_vertices}")
    data = FixedType(True, input_bits, input_integer + 1, "RND_CONV", "SAT")
    fa = max(aggr_frac, data.frac + k)
    ia = data.integer + k + 4
    widths = {}
    if distance_weight_frac is not None:
        widths["distance_weight_frac"] = str(int(distance_weight_frac))
    if weighted_feature_frac is not None:
        feature_width = data.integer + int(weighted_feature_frac)
        widths["weighted_feature"] = str(FixedType(True, feature_width, data.integer, "RND_CONV", "SAT"))
    return {
        "data": str(data),
        "edge_weight": str(FixedType(False, edge_weight_frac, 0, "RND", "SAT")),
        "edge_weight_aggr": str(FixedType(False, edge_weight_frac + 2 * k, k, "RND", "SAT")),
        "aggr": str(FixedType(True, ia + fa, ia, "RND", "SAT")),
        "result": result,
        "distance": str(garnet_distance_type(distance)),
        "weight_frac": str(int(weight_frac)),
        **widths,
    }


def garnet_distance_type(text: str) -> FixedType:
    """The template's ``distance_t``: signed, truncating (hls4ml's) or rounding half up, saturating, ≥ 1
    fractional bit, ≤ 20 bits (its exp(-d²) table has 2^width entries, indexed by the distance's bits, so the
    rounding mode only changes how data·weight products become distances)."""
    t = FixedType.parse(text)
    if not t.signed or t.rounding not in ("TRN", "RND") or t.overflow != "SAT" or t.frac < 1 or t.width > 20:
        raise TrigflowError(
            f"GarNet distance type {text}: hls4ml's template needs a signed fixed<W,I,TRN or RND,SAT> with "
            "W - I ≥ 1 and W ≤ 20 (its exp(-d²) table has 2^W entries), e.g. fixed<19,3,RND,SAT>"
        )
    return t


def garnet_edge_weight_table(edge_weight: FixedType, distance: FixedType = GARNET_DISTANCE_T) -> np.ndarray:
    """exp(-d²) as the template's table holds it, for every d of ``distance`` in increasing order (default
    ap_fixed<12,4>: d = -8, -8 + 1/256, ..., 8 - 1/256, index d·256 + 2048):
    ``edge_weight_t(ap_fixed_base<2W+1,2I+1,AP_TRN>(std::exp(-d*d)))`` (hls::exp returns the type of -d·d:
    2·(W-I) fractional bits); at d = 0 the template stores ``ap_ufixed<W,0,AP_TRN,AP_SAT>(1.)`` = 1 - 2^-W.
    (Checked against g++ with hls4ml's ap_types.)"""
    dist = distance
    exp_frac = 2 * dist.frac
    d = np.arange(-(2 ** (dist.width - 1)), 2 ** (dist.width - 1)) / 2.0**dist.frac
    e = np.array([math.exp(-v * v) for v in d])  # libm, as std::exp
    e = np.floor(e * 2.0**exp_frac) / 2.0**exp_frac
    table = edge_weight.cast(e)
    table[d == 0] = FixedType(False, edge_weight.width, 0, "TRN", "SAT").hi
    return edge_weight.cast(table)


def _garnet_check_types(types: dict[str, str], n_vertices: int, n_in: int) -> dict[str, Any]:
    """The parsed types (``distance``/``weight_frac`` default to hls4ml's, for models saved before them;
    ``distance_weight_frac`` to ``weight_frac``, ``weighted_feature`` to ``data``, as hls4ml's template);
    a one-line refusal for types the float64 mirror cannot reproduce exactly."""
    widths = {"distance": GARNET_DISTANCE, "weight_frac": str(GARNET_WEIGHT_FRAC), "distance_weight_frac": "",
              "weighted_feature": ""}
    widths.update({k: v for k, v in types.items() if k in widths})
    widths["distance_weight_frac"] = widths["distance_weight_frac"] or widths["weight_frac"]
    widths["weighted_feature"] = widths["weighted_feature"] or types["data"]
    t: dict[str, Any] = {name: garnet_type(text) for name, text in types.items() if name not in widths}
    t["distance"] = garnet_distance_type(widths["distance"])
    t["weight_frac"] = wf = int(widths["weight_frac"])
    t["weight"] = FixedType(True, 64, 64 - wf, "RND", "SAT")  # the stored weights' grid (hls4ml's AP_RND)
    t["distance_weight_frac"] = dwf = int(widths["distance_weight_frac"])
    t["distance_weight"] = FixedType(True, 64, 64 - dwf, "RND", "SAT")  # S kernel and bias
    t["weighted_feature"] = wft = garnet_type(widths["weighted_feature"])
    k = int(round(math.log2(n_vertices)))
    ew, ewa, aggr, data, res = t["edge_weight"], t["edge_weight_aggr"], t["aggr"], t["data"], t["result"]
    problems = []
    if 2**k != n_vertices:
        problems.append(f"n_vertices {n_vertices} is not a power of two")
    if ew.signed or ew.integer != 0:
        problems.append("edge_weight must be ufixed<W,0> (the template saturates 1.0 into it)")
    if ewa.frac < max(ew.frac, GARNET_EXP_FRAC) + k or ewa.integer < k or ewa.signed:
        problems.append("edge_weight_aggr must hold the sum of N edge weights and its division by N exactly")
    if not wft.signed or wft.integer < data.integer or wft.frac < data.frac:
        problems.append("weighted_feature must hold every input value (signed, ≥ the input type's bits)")
    if aggr.frac < wft.frac + k or aggr.integer < wft.integer + k or not aggr.signed:
        problems.append("aggr must hold the sum of N weighted_feature values and its division by N exactly")
    if not 1 <= wf <= 16:
        problems.append("weight_frac must be 1..16 (the transforms are contracted on a 2^-16 grid)")
    if not 1 <= dwf <= 24 or data.width + dwf + 9 > GARNET_FLOAT64_BITS:
        problems.append("distance_weight_frac must be 1..24 with input bits + it + 9 ≤ 52 (exact data·S)")
    if aggr.frac < wf:
        problems.append(f"aggr needs ≥ {wf} fractional bits (the GarNet biases have weight_frac = {wf})")
    if aggr.integer + ew.frac + aggr.frac > GARNET_FLOAT64_BITS:
        problems.append("aggr × edge_weight products exceed float64's 53 bits")
    if res.width > 24:
        problems.append("result wider than 24 bits cannot be passed on exactly in float32")
    if aggr.width + wf > GARNET_FLOAT64_BITS:
        problems.append("aggr + data-mean × weight sums exceed float64's 53 bits")
    if data.width + wf + 16 > GARNET_FLOAT64_BITS:
        problems.append("data type too wide for the float64 mirror")
    if problems:
        raise TrigflowError("GarNet types cannot be mirrored exactly: " + "; ".join(problems))
    return t


_GARNET_HLS = None


def garnet_hls_layer():
    """The ``GarNetHLS`` Keras layer class (created on first use, so importing this module needs no TF)."""
    global _GARNET_HLS
    if _GARNET_HLS is None:
        _GARNET_HLS = _garnet_hls_class()
    return _GARNET_HLS


def _garnet_hls_class():
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet

    def ste(x, fn):
        """fn(x) forward (exactly), identity gradient (straight-through)."""

        @tf.custom_gradient
        def op(v):
            return fn(v), lambda dy: dy

        return op(x)

    class GarNetHLS(GarNet):
        """hls4ml's GarNet (simplified, collapse='mean', input_format='xn', no output activation) computing
        step by step what ``nnet::garnet`` computes in firmware, in float64, so C-sim == Keras bit for bit.

        Same sublayers and weights as ``hls4ml.contrib.garnet.GarNet`` (FLR, S, Fout); the forward pass uses
        them as the firmware holds them:

        * S kernel/bias rounded (half up) to ``distance_weight_frac``, Fout bias to ``weight_frac`` fractional
          bits (hls4ml's weight types; 10 unless the types say otherwise);
        * the input transform contracted into the output transform, W[o,a,x] = Σ_p FLR[x,p]·Fout[a,p,o] and
          B[o,a] = Σ_p b_FLR[p]·Fout[a,p,o], from FLR and Fout first put on a 2^-16 grid (exact in float64),
          then rounded to ``weight_frac`` bits (``trigflow.firmware.gnn`` writes exactly these into hls4ml);
        * distance: the ``distance`` type (hls4ml's ap_fixed<12,4,TRN,SAT> by default), started at the
          bias and rounded (its TRN or RND)/saturated after every product and addition; edge weight: the
          exp(-d²) table (``garnet_edge_weight_table``);
        * per vertex v < n_valid: data·edge_weight rounded to ``weighted_feature`` (hls4ml: the input type
          ``data``; wider under ``hls4ml_patches.garnet_widths``); means over N (not
          n_valid) in ``edge_weight_aggr``/``aggr`` (exact), the edge-weight mean cast to ``edge_weight``;
        * output bias·n_valid/N (aggr, then ``weight_frac`` fractional bits, half up), then per aggregator
          aggr = ew_mean·B + Σ_x wf_mean·W (aggr after every term), acc += ew_mean·aggr (``result`` after
          every term).

        Training: every rounding passes the gradient straight through; the table lookup has the gradient of
        exp(-d²). ``types``: ``garnet_types(...)``.
        """

        def __init__(self, n_aggregators, n_filters, n_propagate, types=None, **kwargs):
            for key, value in (("simplified", True), ("collapse", "mean"), ("input_format", "xn"),
                               ("output_activation", None), ("mean_by_nvert", False),
                               ("quantize_transforms", False)):
                if kwargs.setdefault(key, value) != value:
                    raise TrigflowError(f"GarNetHLS mirrors only {key}={value!r}, got {kwargs[key]!r}")
            super().__init__(n_aggregators, n_filters, n_propagate, **kwargs)
            if types is None:
                raise TrigflowError("GarNetHLS needs types=garnet_types(n_vertices, input_bits, input_integer)")
            self.types = dict(types)

        def build(self, input_shape):
            # deserialised models pass lists, which the parent's shape arithmetic cannot concatenate
            input_shape = [tuple(tf.TensorShape(shape).as_list()) for shape in input_shape]
            data_shape = input_shape[0]
            self.n_vertices, self.n_in = int(data_shape[1]), int(data_shape[2])
            if self._input_feature_transform.units < self.n_in + 1:
                raise TrigflowError(f"GarNetHLS needs n_propagate ≥ n_features + 1 = {self.n_in + 1} "
                                 "(the firmware receives the contracted transform through FLR)")
            self.t = _garnet_check_types(self.types, self.n_vertices, self.n_in)
            self.table = tf.constant(
                garnet_edge_weight_table(self.t["edge_weight"], self.t["distance"]), tf.float64
            )
            super().build(input_shape)

        def get_config(self):
            return {**super().get_config(), "types": dict(self.types)}

        # --- the weights as the firmware holds them (float64) -----------------------------------------------
        def firmware_weights(self, weights=None, xp=np, q=None):
            """{'W': (O, A, X), 'B': (O, A), 'S_kernel': (X, A), 'S_bias': (A,), 'Fout_bias': (O,)}:
            the values the firmware holds (numpy by default; ``xp=tf`` and ``q`` are the forward pass's)."""
            q = q or (lambda v, fn: fn(v))
            if weights is None:
                weights = [np.asarray(w.numpy(), np.float64) for w in self._weight_vars()]
            wi, bi, ws, bs, wo, bo = weights
            a, p, o = (self._aggregator_distance.units, self._input_feature_transform.units,
                       self._output_feature_transform.units)
            wi, bi, wo = (q(w, lambda u: GARNET_GRID.cast(u, xp)) for w in (wi, bi, wo))
            wo = xp.transpose(xp.reshape(wo, (a, p, o)), (2, 0, 1))  # (O, A, P)
            kernel = xp.reduce_sum(wi[None, None] * wo[:, :, None], -1) if xp is not np else \
                (wi[None, None] * wo[:, :, None]).sum(-1)  # (O, A, X): exact (products on 2^-32, < 2^19)
            bias = xp.reduce_sum(bi[None, None] * wo, -1) if xp is not np else (bi[None, None] * wo).sum(-1)

            grid, s_grid = self.t["weight"], self.t["distance_weight"]  # half up (hls4ml's AP_RND)

            def w10(v, g=grid):
                return q(v, lambda u: g.cast(u, xp))

            return {"W": w10(kernel), "B": w10(bias), "S_kernel": w10(ws, s_grid), "S_bias": w10(bs, s_grid),
                    "Fout_bias": w10(bo)}

        def _weight_vars(self):
            flr, s, fout = (self._input_feature_transform, self._aggregator_distance,
                            self._output_feature_transform)
            return [flr.kernel, flr.bias, s.kernel, s.bias, fout.kernel, fout.bias]

        # --- forward ---------------------------------------------------------------------------------------
        def call(self, x, training=None):
            t, n, nx = self.t, self.n_vertices, self.n_in
            q = (lambda v, fn: ste(v, fn)) if training else (lambda v, fn: fn(v))

            def cast(v, fx):
                return q(v, lambda u: fx.cast(u, tf))

            data, nvtx = x
            data = tf.cast(data, tf.float64)
            nvtx = tf.reshape(tf.cast(nvtx, tf.float64), (-1, 1))  # (B, 1)
            mask = tf.cast(tf.range(n, dtype=tf.float64)[None, :] < nvtx, tf.float64)  # (B, N)
            fw = self.firmware_weights([tf.cast(w, tf.float64) for w in self._weight_vars()], tf, q)

            # distances (B, N, A): the bias, then + data·w per feature, truncated and saturated at every step
            dt = t["distance"]
            dist = cast(fw["S_bias"], dt)[None, None, :] * tf.ones_like(data[:, :, :1])
            for ix in range(nx):
                incr = cast(data[:, :, ix:ix + 1] * fw["S_kernel"][ix][None, None, :], dt)
                dist = cast(dist + incr, dt)
            ew = self._lookup(dist, training) * mask[:, :, None]  # (B, N, A); vertices ≥ n_valid: skipped
            # means over N (sums and shifts exact in edge_weight_aggr / aggr), then cast to the stored types
            ew_mean = cast(tf.reduce_sum(ew, axis=1) / n, t["edge_weight"])  # (B, A)
            incr = cast(data[:, :, None, :] * ew[:, :, :, None], t["weighted_feature"])
            incr = incr * mask[:, :, None, None]
            wf_mean = cast(tf.reduce_sum(incr, axis=1) / n, t["aggr"])  # (B, A, X)
            # output bias · n_valid / N: aggr, >> log2 N (truncating), then the 10-fraction-bit bias type
            bias = cast(cast(fw["Fout_bias"], t["aggr"])[None, :] * nvtx, t["aggr"])  # (B, O)
            bias = cast(bias / n, FixedType(True, 64, 64 - t["aggr"].frac, "TRN", "SAT"))
            acc = cast(cast(bias, t["weight"]), t["result"])
            for ia in range(self._aggregator_distance.units):
                aggr = cast(ew_mean[:, ia:ia + 1] * fw["B"][:, ia][None, :], t["aggr"])  # (B, O)
                for ix in range(nx):
                    aggr = cast(aggr + wf_mean[:, ia, ix:ix + 1] * fw["W"][:, ia, ix][None, :], t["aggr"])
                acc = cast(acc + ew_mean[:, ia:ia + 1] * aggr, t["result"])
            return tf.cast(acc, tf.float32)

        def _lookup(self, dist, training):
            dt = self.t["distance"]
            offset = 2 ** (dt.width - 1)

            def forward(d):
                idx = tf.cast(tf.round(d * 2.0**dt.frac), tf.int32) + offset
                return tf.gather(self.table, idx)

            if not training:
                return forward(dist)

            @tf.custom_gradient
            def op(d):
                return forward(d), lambda dy: dy * (-2.0 * d * tf.exp(-d * d))

            return op(dist)

    return GarNetHLS


def custom_objects() -> dict[str, Any]:
    """Objects needed by ``tf.keras.models.load_model`` for models built here (QKeras + hls4ml GarNet)."""
    from hls4ml.contrib.garnet import GarNet
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    objects["GarNet"] = GarNet
    objects["GarNetHLS"] = garnet_hls_layer()
    return objects
