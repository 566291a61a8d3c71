"""Test zoo: the graph-network jet taggers of the L1 jet-ID studies, built with standard Keras/QKeras layers.

Architectures as published with the hls4ml jet-tagging studies (sznajder/JetID-L1 notebooks, "Sets are all you
need", Odagiu et al. 2024), written here from their description:

* ``interaction_network(n, bits, form="conv1d")``: Permute, ``QConv1D(kernel_size=1)`` along the particle
  axis holding the fixed 0/1 receiver/sender matrices, Concatenate of receiver and sender features, a QConv1D
  edge MLP, the receiver matrix (transposed) aggregating edges onto nodes, Concatenate of node and edge
  features, a QConv1D node MLP, Flatten, QDense head (softmax).
* ``form="dense"``: the same with ``Dense``/``QDense`` applied to rank-3 tensors and a
  ``GlobalAveragePooling1D`` before the head.
* ``garnet(n, bits)``: hls4ml's own Keras ``GarNet`` layer (``hls4ml.contrib.garnet``; simplified,
  collapse='mean', input_format='xn': a second input with the vertex count) after the input quantizer, then
  QDense + quantized_relu and a QDense head (softmax). Not exact in float: its firmware is proven against
  trigflow's mirror of hls4ml's GarNet template (``trigflow.verify_garnet``).
* ``graph_conv(n, bits)``: QConv1D node transforms, the graph mean (``GlobalAveragePooling1D`` → ``Reshape`` →
  ``UpSampling1D``) added back to every node (``Add``), ``AveragePooling1D`` over the nodes, ``Flatten``,
  QDense head.

Inputs are raw-unit constituents (pT in GeV, η_rel, φ_rel; pT up to ~1.2 TeV in trigflow's embedded jets) put
on a fixed-point grid by a leading ``QActivation(quantized_bits)`` — every operation is quantized, so the
firmware must be bit-exact. ``raw_jets(n)`` reads trigflow's embedded constituents in that layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BUILDERS", "INPUT_QUANTIZER", "garnet", "graph_conv", "interaction_network", "raw_jets", "train", "save"]

# pT < 2048 GeV needs 12 integer bits (sign included); 8 fractional bits keep η/φ to 0.004
INPUT_QUANTIZER = "quantized_bits(20,11,alpha=1)"
FEATURES = 3  # pT/GeV, η_rel, φ_rel


def raw_jets(n_particles: int, n_jets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, labels)``: (jets, n_particles, 3) raw constituents (highest pT first, zero padding) and class
    ids."""
    from trigflow.data.jets import embedded_jets_path, load_jets
    from trigflow.kinds.gnn import raw_from_jets

    jets = load_jets(embedded_jets_path(), parts=("constituents",))
    raw, _ = raw_from_jets(jets)
    order = np.argsort(-raw[..., 0], axis=1, kind="stable")
    raw = np.take_along_axis(raw, order[..., None], axis=1)[:, :n_particles]
    labels = np.asarray(jets.label).astype(np.int64)
    if n_jets is not None:
        raw, labels = raw[:n_jets], labels[:n_jets]
    return np.ascontiguousarray(raw, np.float32), labels


def _q(bits: int, integer: int = 0) -> Any:
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def _relu(bits: int) -> Any:
    from qkeras import quantized_relu

    return quantized_relu(bits, bits // 2)


def _incidence(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Receiver and sender matrices (n × n(n-1)): edge e = (i → j), i ≠ j."""
    edges = [(i, j) for i in range(n) for j in range(n) if i != j]
    rr = np.zeros((n, len(edges)), np.float32)
    rs = np.zeros((n, len(edges)), np.float32)
    for e, (i, j) in enumerate(edges):
        rr[j, e] = 1.0
        rs[i, e] = 1.0
    return rr, rs


def _fixed_pointwise(name: str, matrix: np.ndarray):
    """A non-trainable ``QConv1D(kernel_size=1)`` holding a fixed 0/1 matrix (``quantized_bits(2, 1)`` holds
    0 and 1 exactly)."""
    from qkeras import QConv1D

    layer = QConv1D(matrix.shape[1], 1, use_bias=False, kernel_quantizer=_q(2, 1), trainable=False, name=name)
    return layer, [matrix[None, ...]]


def _affine(kind: str, units: int, bits: int, name: str, **kw):
    """QConv1D(kernel_size=1) (``conv1d`` form) or QDense (``dense`` form) with ``bits``-bit weights."""
    from qkeras import QConv1D, QDense

    q = dict(kernel_quantizer=_q(bits), bias_quantizer=_q(bits), name=name, **kw)
    return QConv1D(units, 1, **q) if kind == "conv1d" else QDense(units, **q)


def interaction_network(
    n: int,
    bits: int,
    form: str = "conv1d",
    hidden: int = 16,
    effects: int = 8,
    input_bn: bool = False,
    input_quantizer: bool = True,
):
    """The Interaction Network (see the module docstring); ``form`` is ``"conv1d"`` or ``"dense"``;
    ``input_bn``: the published float ``BatchNormalization`` on the inputs (after the input quantizer, if
    ``input_quantizer``; without it, on the raw inputs as published)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense

    layers = tf.keras.layers
    rr, rs = _incidence(n)
    x_in = tf.keras.Input((n, FEATURES), name="constituents")
    x = QActivation(INPUT_QUANTIZER, name="in_q")(x_in) if input_quantizer else x_in
    if input_bn:
        x = layers.BatchNormalization(name="input_bn")(x)
    xt = layers.Permute((2, 1), name="to_features_first")(x)  # (P, N)
    fixed = {}
    if form == "conv1d":
        recv, fixed["receivers"] = _fixed_pointwise("receivers", rr)
        send, fixed["senders"] = _fixed_pointwise("senders", rs)
    else:
        fixed_01 = dict(use_bias=False, kernel_quantizer=_q(2, 1), trainable=False)
        recv = QDense(rr.shape[1], name="receivers", **fixed_01)
        send = QDense(rs.shape[1], name="senders", **fixed_01)
        fixed["receivers"], fixed["senders"] = [rr], [rs]
    # receiver and sender features stacked along the feature axis while features come first: (2P, E)
    e = layers.Concatenate(axis=1, name="edge_inputs")([recv(xt), send(xt)])
    e = layers.Permute((2, 1), name="edges_first")(e)  # (E, 2P)
    e = _affine(form, hidden, bits, "edge_1")(e)
    e = QActivation(_relu(bits), name="edge_1_act")(e)
    e = _affine(form, effects, bits, "edge_2")(e)
    e = QActivation(_relu(bits), name="edge_2_act")(e)  # (E, De)
    et = layers.Permute((2, 1), name="effects_first")(e)  # (De, E)
    if form == "conv1d":
        agg, fixed["aggregate"] = _fixed_pointwise("aggregate", rr.T.copy())
    else:
        agg = QDense(n, use_bias=False, kernel_quantizer=_q(2, 1), trainable=False, name="aggregate")
        fixed["aggregate"] = [rr.T.copy()]
    ebar = layers.Permute((2, 1), name="node_effects")(agg(et))  # (N, De)
    c = layers.Concatenate(axis=-1, name="node_inputs")([x, ebar])  # (N, P + De)
    h = _affine(form, hidden, bits, "node_1")(c)
    h = QActivation(_relu(bits), name="node_1_act")(h)
    h = _affine(form, effects, bits, "node_2")(h)
    h = QActivation(_relu(bits), name="node_2_act")(h)
    if form == "conv1d":
        h = layers.Flatten(name="flatten")(h)
    else:
        h = layers.GlobalAveragePooling1D(name="pool")(h)
    logits = QDense(5, kernel_quantizer=_q(bits), bias_quantizer=_q(bits), name="head")(h)
    out = layers.Activation("softmax", name="softmax")(logits)
    tag = ("_bn" if input_bn else "") + ("" if input_quantizer else "_raw")
    model = tf.keras.Model(x_in, out, name=f"in_{form}{tag}_{n}p_{bits}b")
    for name, weights in fixed.items():
        model.get_layer(name).set_weights(weights)
    return model


def graph_conv(n: int, bits: int, hidden: int = 16):
    """GraphConv-style tagger: node transform + graph mean broadcast back to the nodes (see the docstring)."""
    import tensorflow as tf
    from qkeras import QActivation, QConv1D, QDense

    layers = tf.keras.layers
    x_in = tf.keras.Input((n, FEATURES), name="constituents")
    h = QActivation(INPUT_QUANTIZER, name="in_q")(x_in)
    for k in (1, 2):
        h = QConv1D(hidden, 1, kernel_quantizer=_q(bits), bias_quantizer=_q(bits), name=f"conv_{k}")(h)
        h = QActivation(_relu(bits), name=f"conv_{k}_act")(h)
        g = layers.GlobalAveragePooling1D(name=f"mean_{k}")(h)
        g = layers.Reshape((1, hidden), name=f"mean_{k}_row")(g)
        g = layers.UpSampling1D(n, name=f"mean_{k}_nodes")(g)
        h = layers.Add(name=f"with_mean_{k}")([h, g])
    h = layers.AveragePooling1D(n, name="pool")(h)
    h = layers.Flatten(name="flatten")(h)
    logits = QDense(5, kernel_quantizer=_q(bits), bias_quantizer=_q(bits), name="head")(h)
    out = layers.Activation("softmax", name="softmax")(logits)
    return tf.keras.Model(x_in, out, name=f"graphconv_{n}p_{bits}b")


BUILDERS = {
    "in_conv1d": lambda n, bits: interaction_network(n, bits, "conv1d"),
    "in_dense": lambda n, bits: interaction_network(n, bits, "dense"),
    "in_conv1d_bn": lambda n, bits: interaction_network(n, bits, "conv1d", input_bn=True),
    "in_conv1d_bn_raw": lambda n, bits: interaction_network(
        n, bits, "conv1d", input_bn=True, input_quantizer=False
    ),
    "graphconv": graph_conv,
}


def garnet(n: int, bits: int, aggregators: int = 4, filters: int = 8, propagate: int = 8, hidden: int = 16):
    """The L1 jet-ID GarNet: input quantizer → hls4ml ``GarNet([particles, n_vertices])`` → QDense +
    quantized_relu → QDense(5) → softmax. Two inputs: (n, 3) particles and (1,) vertex count."""
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet
    from qkeras import QActivation, QDense

    particles = tf.keras.Input((n, FEATURES), name="particles")
    count = tf.keras.Input((1,), name="n_vertices", dtype="uint16")
    h = QActivation(INPUT_QUANTIZER, name="input_q")(particles)
    h = GarNet(aggregators, filters, propagate, simplified=True, collapse="mean", input_format="xn",
               output_activation=None, quantize_transforms=False, name="garnet")([h, count])
    h = QDense(hidden, kernel_quantizer=_q(bits), bias_quantizer=_q(bits), name="dense1")(h)
    h = QActivation(_relu(bits), name="relu1")(h)
    h = QDense(5, kernel_quantizer=_q(bits), bias_quantizer=_q(bits), name="head")(h)
    out = tf.keras.layers.Activation("softmax", name="softmax")(h)
    return tf.keras.Model([particles, count], out, name=f"garnet_{n}p_{bits}b")


def train(model, x: np.ndarray, y: np.ndarray, epochs: int = 2, seed: int = 0):
    """A brief training (Adam, categorical cross-entropy) so the weights are not the initial ones."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=256, verbose=0)
    return model


def save(model, folder: Path) -> Path:
    path = Path(folder) / f"{model.name}.h5"
    model.save(path)
    return path
