"""Data layer: deterministic train/validation/test split, feature standardisation, the prepared data set.

The ``Standardizer`` is saved with a run so the same preprocessing can be applied to data from elsewhere.
``prepare`` is the classifiers' data stage: split (with a test part large enough for the proof),
standardise on the training part, and put every input on the firmware input grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trigflow.errors import TrigflowError

if TYPE_CHECKING:
    from trigflow.config import RunConfig

__all__ = [
    "Arrays",
    "InputGrid",
    "Prepared",
    "Split",
    "Standardizer",
    "check_finite",
    "grid_summary",
    "prepare",
    "split",
    "split_for_proof",
]


@dataclass(frozen=True)
class Arrays:
    """A labelled data set as the models see it (``x`` of any rank, one row per sample)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific arrays (e.g. anomaly process ids)


class InputGrid(Protocol):
    """The firmware input format (``quantize.presets.QuantSpec`` is one)."""

    input_bits: int
    input_integer: int
    input_type: str

    def quantize_input(self, x: np.ndarray) -> np.ndarray: ...


def grid_summary(grid: InputGrid) -> dict[str, Any]:
    """The input grid as a run's ``preprocessing.json`` records it."""
    return {"bits": grid.input_bits, "integer": grid.input_integer, "type": grid.input_type}


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def map_x(self, f: Callable[[np.ndarray], np.ndarray]) -> Split:
        """The same split with ``f`` applied to the inputs of each part."""
        return replace(self, x_train=f(self.x_train), x_val=f(self.x_val), x_test=f(self.x_test))


@dataclass(frozen=True)
class Prepared(Split):
    """The split as the models see it, with the preprocessing that made it (saved with the run)."""

    preprocessing: dict[str, Any]
    class_names: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, split: Split, preprocessing: dict[str, Any], class_names: tuple[str, ...]) -> Prepared:
        parts = {f.name: getattr(split, f.name) for f in fields(Split)}
        return cls(**parts, preprocessing=preprocessing, class_names=tuple(class_names))


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


def split_for_proof(x: np.ndarray, y: np.ndarray, config: RunConfig) -> Split:
    """The configured train/val/test split; fails early when the test part is too small for the proof."""
    d = config.data
    parts = split(x, y, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=d.seed)
    if len(parts.x_test) < config.verify.min_samples:
        raise TrigflowError(
            f"only {len(parts.x_test)} test samples, the proof needs ≥ {config.verify.min_samples}; "
            "use more data or lower verify.min_samples"
        )
    return parts


def prepare(arrays: Arrays, config: RunConfig, grid: InputGrid) -> Prepared:
    """Split, standardise each feature on the training part, and put every input on the firmware input grid."""
    check_finite(arrays.x, f"data ({arrays.source})")
    parts = split_for_proof(arrays.x, arrays.y, config)
    standardize = Standardizer.fit(parts.x_train)

    def to_grid(x: np.ndarray) -> np.ndarray:
        return grid.quantize_input(standardize(x))

    preprocessing = {
        "features": list(arrays.feature_names),
        "classes": list(arrays.class_names),
        "standardize": standardize.to_dict(),
        "input_quantizer": grid_summary(grid),
    }
    return Prepared.of(parts.map_x(to_grid), preprocessing, arrays.class_names)
