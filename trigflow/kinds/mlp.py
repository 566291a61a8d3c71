"""Spine layer: the MLP jet tagger recipe — 16 high-level jet features → 5 class logits."""

from __future__ import annotations

import numpy as np

from trigflow.config import RunConfig
from trigflow.kinds import Arrays, Prepared, Recipe


def load(config: RunConfig) -> Arrays:
    from trigflow.data import HLF_NAMES, JET_CLASSES
    from trigflow.data.jets import load_jets

    jets = load_jets(config.data.path, parts=("hlf",))
    x, y = jets.hlf, jets.label.astype(np.int64)
    if config.data.max_samples is not None:
        x, y = x[: config.data.max_samples], y[: config.data.max_samples]
    source = config.data.path or "embedded jets (Pythia8 + FastJet)"
    return Arrays(x, y, HLF_NAMES, JET_CLASSES, str(source))


def build(prepared: Prepared, config: RunConfig, quantized: bool):
    from trigflow.models.mlp import build_mlp
    from trigflow.quantize.presets import QuantSpec

    return build_mlp(
        prepared.x_train.shape[1],
        len(prepared.class_names),
        config.model.hidden,
        quantized=quantized,
        spec=QuantSpec.from_config(config.quant),
        seed=config.seed,
    )


RECIPE = Recipe(kind="mlp", load=load, build=build)
