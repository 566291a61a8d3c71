"""Data layer: deterministic train/validation/test split and feature standardisation.

The ``Standardizer`` is saved with a run so the same preprocessing can be applied to data from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trigflow.errors import TrigflowError


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        axes = tuple(range(x.ndim - 1))
        scale = x.std(axis=axes)
        return cls(mean=x.mean(axis=axes).astype(np.float32), scale=np.where(scale > 0, scale, 1).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Standardizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["scale"], np.float32))


def check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise TrigflowError(
            f"{what} contains NaN/inf in {len(rows)} sample(s) (first at index {rows[0]}); clean or drop them first"
        )


def split(x: np.ndarray, y: np.ndarray, *, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """Shuffle with ``seed`` and cut into train / validation / test."""
    if len(x) != len(y):
        raise TrigflowError(f"data has {len(x)} samples but {len(y)} labels; they must match")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Split(x[train], y[train], x[val], y[val], x[test], y[test])
