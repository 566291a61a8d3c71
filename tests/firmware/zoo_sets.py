"""Test zoo: the L1 jet-ID MLP and Deep Sets of the "Sets are all you need" family, on raw constituents.

Architectures as published in sznajder/JetID-L1 (``JetTagging_MLP_QKeras_HLS_jetconstit.ipynb``,
``JetTagging_DeepSets_PermutationInv_QKeras_HLS.ipynb``): a float ``BatchNormalization`` on the raw inputs
(pT in GeV, η_rel, φ_rel per constituent), ``QDense`` + ``QActivation(quantized_relu(bits, 0))`` blocks with
``quantized_bits(bits, 0, alpha=1)`` weights, a softmax head. Trained briefly on trigflow's own constituents
in raw units (pT = pT fraction × jet pT, up to ~1.2 TeV): the inputs such a model sees in the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["build_deepsets", "build_mlp", "raw_constituents", "train_and_save"]


def raw_constituents(n_constituents: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, labels)``: (jets, n_constituents, 3) = (pT/GeV, η_rel, φ_rel), highest pT first, from the
    embedded jet file (stored as pT fractions: converted to GeV with the jet pT)."""
    from trigflow.data.jets import load_jets
    from trigflow.kinds.gnn import raw_from_jets

    jets = load_jets(parts=("constituents",))
    raw, _ = raw_from_jets(jets)
    order = np.argsort(-raw[..., 0], axis=1, kind="stable")
    raw = np.take_along_axis(raw, order[..., None], axis=1)[:, :n_constituents]
    labels = np.asarray(jets.label, np.int64)
    if n is not None:
        raw, labels = raw[:n], labels[:n]
    return raw.astype(np.float32), labels


def _quantizers(bits: int):
    from qkeras import quantized_bits, quantized_relu

    return quantized_bits(bits, 0, alpha=1), quantized_relu(bits, 0)


def build_mlp(n_constituents: int, bits: int, n_classes: int = 5):
    """The published QMLP: float BN on the flattened inputs, 3 × (QDense + quantized_relu), QDense, softmax.
    Hidden width int(1.75 × inputs) for 8 constituents, int(0.8 × inputs) for 16 (as in the notebook)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense

    L = tf.keras.layers
    n_in = 3 * n_constituents
    hidden = int(n_in * 1.75) if n_constituents <= 8 else int(n_in * 0.8)
    qbits, qact = _quantizers(bits)
    inp = L.Input(shape=(n_in,), name="inp")
    h = L.BatchNormalization(name="batchnorm")(inp)
    for k, name in enumerate(("activation1", "activation2", "activation_dense3"), start=1):
        h = QDense(hidden, name=f"hidden{k}", kernel_quantizer=qbits, bias_quantizer=qbits)(h)
        h = QActivation(qact, name=name)(h)
    out = QDense(n_classes, name="denseout", kernel_quantizer=qbits, bias_quantizer=qbits)(h)
    out = L.Activation("softmax", name="activationOut")(out)
    return tf.keras.Model(inp, out, name=f"qmlp_{n_constituents}c_{bits}b")


def build_deepsets(n_constituents: int, bits: int, n_classes: int = 5, nodes: int = 32):
    """The published permutation-invariant Deep Sets: float BN on the raw (N, 3) inputs, φ = 3 × (QDense +
    quantized_relu) per constituent, GlobalAveragePooling1D, ρ = 2 × (QDense + quantized_relu), QDense,
    softmax."""
    import tensorflow as tf
    from qkeras import QActivation, QDense

    L = tf.keras.layers
    qbits, qact = _quantizers(bits)
    inp = L.Input(shape=(n_constituents, 3), name="inp")
    h = L.BatchNormalization(name="batchnorm")(inp)
    for k in (1, 2, 3):
        h = QDense(nodes, kernel_quantizer=qbits, bias_quantizer=qbits, name=f"qdense_phi{k}")(h)
        h = QActivation(qact, name=f"qrelu_phi{k}")(h)
    h = L.GlobalAveragePooling1D(name="avgpool")(h)
    for k in (1, 2):
        h = QDense(nodes, kernel_quantizer=qbits, bias_quantizer=qbits, name=f"qdense_rho{k}")(h)
        h = QActivation(qact, name=f"qrelu_rho{k}")(h)
    h = QDense(n_classes, kernel_quantizer=qbits, bias_quantizer=qbits, name="qdense_rho3")(h)
    out = L.Activation("softmax", name="softmax")(h)
    return tf.keras.Model(inp, out, name=f"qdeepsets_{n_constituents}c_{bits}b")


def train_and_save(
    arch: str, n_constituents: int, bits: int, out: Path, *, n_train: int = 44000, n_test: int = 3000,
    epochs: int = 3, seed: int = 0,
) -> tuple[Path, Path]:
    """Train ``arch`` ('mlp' or 'deepsets') briefly on raw constituents; save the model (.h5) and the
    ``n_test`` held-out jets (.npz: x in raw units, y labels). Returns ``(model path, data path)``."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    x, y = raw_constituents(n_constituents, n_train + n_test)
    if arch == "mlp":
        x = x.reshape(len(x), -1)
        model = build_mlp(n_constituents, bits)
    else:
        model = build_deepsets(n_constituents, bits)
    rate = 1e-2 if arch == "mlp" else 3e-3  # 3 epochs of 44k jets: test accuracy ≈ 0.5 (8 bits)
    model.compile(optimizer=tf.keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:n_train], y[:n_train], epochs=epochs, batch_size=256, verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    model_path, data_path = out / f"{model.name}.h5", out / f"{model.name}_test.npz"
    model.save(model_path)
    np.savez(data_path, x=x[n_train:], y=y[n_train:])
    return model_path, data_path
