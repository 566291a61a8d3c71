"""Quantize layer: per-layer bit widths from a cheap sensitivity measure (``quant.per_layer=sensitivity``).

1. **Short QAT** of the uniform model (every layer at ``bits``) for ``max(1, epochs // 5)`` epochs, with the
   run's pruning target.
2. **Profile**: for each Dense layer alone and each width ``b`` from ``bits − 1`` down to ``min_bits``, the
   same trained weights are re-quantized with that layer (weights, bias, activation after it) at ``b`` bits,
   and the validation accuracy drop against the uniform model is measured (no retraining: one evaluation).
   A layer's *safe* width is the lowest ``b`` such that every width from ``bits`` down to ``b`` drops at most
   ``tolerance``.
3. **Combine**: all layers at their safe widths; while the combined model drops more than ``tolerance``, the
   layer with the largest single-layer drop at its current width gets one bit back.

The chosen widths (``quant.layer_bits``) then go through the normal QAT from scratch, conversion and proof.
Evaluating re-quantized weights without retraining is pessimistic (QAT at the chosen widths recovers some of
the drop), so the tolerance is a safe bound on the validation accuracy given up by the assignment itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerBitsChoice:
    layer_bits: tuple[int, ...]
    base_accuracy: float  # validation accuracy of the uniform model after the short QAT
    accuracy: float  # the same trained weights re-quantized at ``layer_bits``
    profile: dict[str, dict[int, float]] = field(default_factory=dict)  # layer → {bits: accuracy drop}
    evaluations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer_bits": list(self.layer_bits),
            "base_accuracy": self.base_accuracy,
            "accuracy": self.accuracy,
            "profile": {name: {str(b): d for b, d in drops.items()} for name, drops in self.profile.items()},
            "evaluations": self.evaluations,
        }


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=4096, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def choose_layer_bits(
    build: Callable[[tuple[int, ...]], Any],
    weights: list[np.ndarray],
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    bits: int,
    n_layers: int,
    min_bits: int,
    tolerance: float,
    layer_names: tuple[str, ...] | None = None,
) -> LayerBitsChoice:
    """Steps 2–3 above on trained ``weights`` of the uniform model; ``build(layer_bits)`` → QKeras model."""
    names = layer_names or tuple(f"layer_{i}" for i in range(n_layers))
    evaluations = 0

    def accuracy_at(layer_bits: tuple[int, ...]) -> float:
        nonlocal evaluations
        model = build(layer_bits)
        model.set_weights(weights)
        evaluations += 1
        return _accuracy(model, x_val, y_val)

    uniform = (bits,) * n_layers
    base = accuracy_at(uniform)
    profile: dict[str, dict[int, float]] = {}
    safe = list(uniform)
    for i in range(n_layers):
        drops: dict[int, float] = {}
        for b in range(bits - 1, min_bits - 1, -1):
            layer_bits = tuple(b if j == i else bits for j in range(n_layers))
            drops[b] = round(base - accuracy_at(layer_bits), 6)
            if drops[b] > tolerance:
                break  # lower widths of this layer are not safe either (checked monotonically from the top)
            safe[i] = b
        profile[names[i]] = drops

    def single_drop(i: int, b: int) -> float:
        return profile[names[i]].get(b, 0.0)

    chosen = list(safe)
    accuracy = accuracy_at(tuple(chosen))
    while base - accuracy > tolerance and tuple(chosen) != uniform:
        raisable = [i for i in range(n_layers) if chosen[i] < bits]
        worst = max(raisable, key=lambda i: (single_drop(i, chosen[i]), -i))
        chosen[worst] += 1
        accuracy = accuracy_at(tuple(chosen))
    return LayerBitsChoice(tuple(chosen), base, accuracy, profile, evaluations)


def sensitivity_layer_bits(build, prepared, quant, seed: int) -> LayerBitsChoice:
    """The whole procedure for a classifier: short QAT of the uniform model, then ``choose_layer_bits``.

    ``build(layer_bits)`` returns an uncompiled QKeras model; ``quant`` is the run's ``QuantConfig``.
    """
    from trigflow.quantize.train import set_seed, train

    probe = build(())
    dense = [layer.name for layer in probe.layers if layer.__class__.__name__ == "QDense"]
    set_seed(seed)
    model, _ = train(
        probe,
        prepared.x_train,
        prepared.y_train,
        prepared.x_val,
        prepared.y_val,
        epochs=max(1, quant.epochs // 5),
        batch_size=quant.batch_size,
        learning_rate=quant.learning_rate,
        patience=quant.patience,
        sparsity=quant.sparsity,
    )
    return choose_layer_bits(
        build,
        model.get_weights(),
        prepared.x_val,
        prepared.y_val,
        bits=quant.bits,
        n_layers=len(dense),
        min_bits=quant.per_layer_min_bits,
        tolerance=quant.per_layer_tolerance,
        layer_names=tuple(dense),
    )
