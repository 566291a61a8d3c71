"""Per-layer bit widths by sensitivity: the greedy choice on a fake model, and a small real run end to end."""

import json

import numpy as np
import pytest

from trigflow.quantize.sensitivity import choose_layer_bits


class _FakeModel:
    """Accuracy = 1 − Σ penalty(layer, bits): predictions are right for that fraction of the samples."""

    def __init__(self, layer_bits, penalty):
        self.drop = sum(penalty(i, b) for i, b in enumerate(layer_bits))

    def set_weights(self, weights):
        pass

    def predict(self, x, **kwargs):
        n_wrong = int(round(self.drop * len(x)))
        logits = np.zeros((len(x), 2))
        logits[:, 0] = 1.0
        logits[:n_wrong] = [0.0, 1.0]
        return logits


def _choose(penalty, bits=6, n_layers=3, min_bits=3, tolerance=0.01):
    y = np.zeros(10_000, dtype=int)
    return choose_layer_bits(
        lambda layer_bits: _FakeModel(layer_bits or (bits,) * n_layers, penalty),
        [],
        np.zeros((len(y), 1)),
        y,
        bits=bits,
        n_layers=n_layers,
        min_bits=min_bits,
        tolerance=tolerance,
    )


def test_insensitive_layers_go_to_the_floor_sensitive_ones_stay():
    # layer 0 never cares, layer 1 loses 5 points below 6 bits, layer 2 loses 0.2 points per bit below 6.
    penalties = {0: lambda b: 0.0, 1: lambda b: 0.05 * (b < 6), 2: lambda b: 0.002 * (6 - b)}
    choice = _choose(lambda i, b: penalties[i](b))
    assert choice.layer_bits == (3, 6, 3)  # layer 2 at 3 bits: 0.6 points, within the 1-point tolerance
    assert choice.base_accuracy == 1.0 and choice.base_accuracy - choice.accuracy <= 0.01
    assert choice.profile["layer_1"] == {5: 0.05}  # stops at the first unsafe width
    assert choice.profile["layer_0"] == {5: 0.0, 4: 0.0, 3: 0.0}


def test_combined_drop_is_repaired_one_bit_at_a_time():
    # Each layer alone may lose 0.8 points at 3 bits (safe); all three together lose 2.4 → bits given back.
    choice = _choose(lambda i, b: 0.008 * (b <= 3) + 0.002 * (b == 4))
    assert 1.0 - choice.accuracy <= 0.01
    assert all(3 <= b <= 6 for b in choice.layer_bits) and choice.layer_bits != (3, 3, 3)


def test_zero_tolerance_keeps_the_uniform_width():
    assert _choose(lambda i, b: 0.001 * (6 - b), tolerance=0.0).layer_bits == (6, 6, 6)


@pytest.mark.slow  # 50-62 s: a whole run with the sensitivity search; the search itself is tested above
def test_run_with_sensitivity_per_layer_bits_is_proven(fake_jets, tmp_path):
    from trigflow.config import load_config
    from trigflow.pipeline import run

    overrides = {
        "data": {"path": str(fake_jets)},
        "model": {"hidden": (16, 8)},
        "quant": {"bits": 8, "epochs": 5, "per_layer": "sensitivity", "per_layer_tolerance": 0.01},
        "verify": {"min_samples": 1000},
        "out": str(tmp_path / "run"),
        "project_dir": str(tmp_path / "project"),
    }
    result = run(load_config("mlp", overrides=overrides))
    assert result.passed, result.failures
    assert result.report["bit_exact_fraction"] == 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    layer_bits = config["quant"]["layer_bits"]
    assert len(layer_bits) == 3 and all(3 <= b <= 8 for b in layer_bits)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["per_layer"]["layer_bits"] == layer_bits
    assert set(history["per_layer"]["profile"]) == {"dense_0", "dense_1", "logits"}
