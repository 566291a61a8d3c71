"""Spine layer: what differs between model kinds, as a ``Recipe`` of stage functions the pipeline calls.

A recipe names how to load and prepare its data, how to build a model (one builder with a ``quantized``
switch for the float twin), how to train it, which model goes into firmware, and how to score outputs.
The defaults are the classifier's; a kind overrides only what it does differently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError


@dataclass(frozen=True)
class Arrays:
    """A labelled data set as the models see it (``x`` of any rank, one row per sample)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific arrays (e.g. anomaly process ids)


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any]
    class_names: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trained:
    """Trained twins; ``deploy_*`` are the models that go to firmware (default: the trained models)."""

    qmodel: Any
    float_model: Any
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    deploy_qmodel: Any = None
    deploy_float_model: Any = None

    def __post_init__(self) -> None:
        self.deploy_qmodel = self.deploy_qmodel or self.qmodel
        self.deploy_float_model = self.deploy_float_model or self.float_model


@dataclass(frozen=True)
class Recipe:
    kind: str
    load: Callable[..., Arrays]  # (config) -> Arrays
    build: Callable[..., Any]  # (prepared, config, quantized: bool) -> keras.Model
    prepare: Callable[..., Prepared] | None = None  # (arrays, config) -> Prepared; None: the standard one
    train: Callable[..., Trained] | None = None  # (recipe, prepared, config, ui) -> Trained; None: classifier
    evaluate: Callable[..., dict] | None = None  # (outputs, prepared) -> metrics; None: accuracy + AUC
    convert: Callable[..., Any] | None = None  # (model, project_dir, spec, force=) -> hls_model; None: standard
    write_extras: Callable[..., None] | None = None  # (report, outputs, prepared, config, out) -> None


_MODULES = {"mlp": "trigflow.kinds.mlp", "cnn": "trigflow.kinds.cnn", "gnn": "trigflow.kinds.gnn", "ae": "trigflow.kinds.ae"}


def recipe_for(kind: str) -> Recipe:
    if kind not in _MODULES:
        raise TrigflowError(f"unknown kind '{kind}': choose one of {', '.join(_MODULES)}")
    try:
        module = importlib.import_module(_MODULES[kind])
    except ModuleNotFoundError as exc:
        if exc.name == _MODULES[kind]:
            raise TrigflowError(f"`trigflow run {kind}` is not available in this version") from None
        raise
    return module.RECIPE
