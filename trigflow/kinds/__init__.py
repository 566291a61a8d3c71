"""Spine layer: what differs between model kinds, as a ``Recipe`` of stage functions the pipeline calls.

A recipe names how to load and prepare its data, how to build a model (one builder with a ``quantized``
switch for the float twin), how to train it, which model goes into firmware, and how to score outputs.
The defaults are the classifier's; a kind overrides only what it does differently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


from trigflow.data.prepare import Arrays, Prepared
from trigflow.errors import TrigflowError
from trigflow.quantize.train import Trained

__all__ = ["Arrays", "Prepared", "Recipe", "Trained", "recipe_for"]


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


_MODULES = {"mlp": "trigflow.kinds.mlp", "cnn": "trigflow.kinds.cnn", "gnn": "trigflow.kinds.gnn", "ae": "trigflow.kinds.ae", "rnn": "trigflow.kinds.rnn"}


def checked_arch(config: Any, kind: str, archs: tuple[str, ...]) -> str:
    """``config.model.arch``, or a one-line error naming the kind's architectures."""
    arch = config.model.arch
    if arch not in archs:
        raise TrigflowError(f"unknown model.arch '{arch}' for {kind}: choose one of {', '.join(archs)}")
    return arch


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
