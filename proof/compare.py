"""Proof layer: the proof — firmware outputs compared bit for bit with QKeras, and against the float twin.

Bits are compared on the model outputs before any softmax (softmax in firmware is a lookup table, so a
trigger compares logits); softmax and argmax agreement are reported apart. ``weighted_auc`` is the ROC AUC
with per-event weights (weighted background samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BitComparison:
    samples: int
    bit_exact_fraction: float
    mismatched: np.ndarray  # indices of samples whose outputs differ in any bit
    max_abs_diff: float

    @property
    def first_mismatch(self) -> int | None:
        return int(self.mismatched[0]) if len(self.mismatched) else None


def compare_bits(reference: np.ndarray, firmware: np.ndarray) -> BitComparison:
    """Exact comparison per sample: a sample matches only if every output is identical."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    firmware = np.asarray(firmware, dtype=np.float64).reshape(len(firmware), -1)
    if reference.shape != firmware.shape:
        raise ValueError(f"output shapes differ: reference {reference.shape}, firmware {firmware.shape}")
    equal = np.all(reference == firmware, axis=1)
    return BitComparison(
        samples=len(reference),
        bit_exact_fraction=float(equal.mean()) if len(equal) else 0.0,
        mismatched=np.flatnonzero(~equal),
        max_abs_diff=float(np.max(np.abs(reference - firmware))) if reference.size else 0.0,
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def argmax_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def auc_per_class(logits: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """One-vs-rest ROC AUC of each class, scored by its softmax probability."""
    from sklearn.metrics import roc_auc_score

    prob = softmax(np.asarray(logits, np.float64))
    return {
        name: float(roc_auc_score(labels == i, prob[:, i]))
        for i, name in enumerate(class_names)
        if 0 < np.sum(labels == i) < len(labels)
    }


def weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC of ``scores`` separating ``positive`` from the rest, each event counted with its weight (1 when
    ``weights`` is None): the weighted probability that a positive outscores a negative, ties counting ½.
    Equals ``sklearn.metrics.roc_auc_score(positive, scores, sample_weight=weights)``."""
    positive = np.asarray(positive, bool).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if not (len(positive) == len(scores) == len(w)):
        raise ValueError("positive, scores and weights must have one entry per event")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("event weights must be finite and non-negative")
    values, group = np.unique(scores, return_inverse=True)  # ascending score groups
    w_pos = np.bincount(group, weights=w * positive, minlength=len(values))
    w_neg = np.bincount(group, weights=w * ~positive, minlength=len(values))
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        raise ValueError("AUC needs positive and negative events of non-zero weight")
    neg_below = np.cumsum(w_neg) - w_neg
    return float(np.sum(w_pos * (neg_below + 0.5 * w_neg)) / (total_pos * total_neg))
