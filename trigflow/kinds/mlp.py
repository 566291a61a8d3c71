"""Spine layer: the MLP jet tagger recipe — 16 high-level jet features → 5 class logits."""

from __future__ import annotations

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.kinds import Arrays, Prepared, Recipe, Trained


def load(config: RunConfig) -> Arrays:
    from trigflow.data import HLF_NAMES, JET_CLASSES
    from trigflow.data.jets import load_jets

    jets = load_jets(config.data.path, parts=("hlf",))
    x, y = jets.hlf, jets.label.astype(np.int64)
    if config.data.max_samples is not None:
        x, y = x[: config.data.max_samples], y[: config.data.max_samples]
    source = config.data.path or "embedded jets (Pythia8 + FastJet)"
    return Arrays(x, y, HLF_NAMES, JET_CLASSES, str(source))


def build(prepared: Prepared, config: RunConfig, quantized: bool, layer_bits: tuple[int, ...] | None = None):
    """The MLP; ``layer_bits`` (default ``quant.layer_bits``) gives each Dense layer its own width."""
    from dataclasses import replace

    from trigflow.models.mlp import build_mlp
    from trigflow.quantize.presets import QuantSpec

    spec = QuantSpec.from_config(config.quant)
    if layer_bits is not None:
        spec = replace(spec, layer_bits=tuple(layer_bits))
    return build_mlp(
        prepared.x_train.shape[1],
        len(prepared.class_names),
        config.model.hidden,
        quantized=quantized,
        spec=spec,
        seed=config.seed,
    )


def train(recipe: Recipe, prepared: Prepared, config: RunConfig, ui) -> Trained:
    """The standard twins; with ``quant.per_layer=sensitivity`` the per-layer widths are chosen first.

    The choice is written into ``config.quant.layer_bits`` (so the run's ``config.json`` records it and the
    builder uses it) and its sensitivity profile into ``history.json`` under ``per_layer``.
    """
    from trigflow.quantize.train import train_twins

    q = config.quant
    choice = None
    if q.per_layer == "sensitivity":
        from trigflow.quantize.sensitivity import sensitivity_layer_bits

        if len(prepared.x_val) == 0:
            raise TrigflowError(
                "quant.per_layer=sensitivity measures on the validation split; set data.val_fraction > 0"
            )
        with ui.stage("per-layer bits (sensitivity)"):
            choice = sensitivity_layer_bits(
                lambda layer_bits: build(prepared, config, True, tuple(layer_bits)), prepared, q, config.seed
            )
        q.layer_bits = choice.layer_bits
    trained = train_twins(recipe, prepared, config, ui)
    if choice is not None:
        trained.history["per_layer"] = choice.to_dict()  # type: ignore[assignment]
    return trained


RECIPE = Recipe(kind="mlp", load=load, build=build, train=train)
