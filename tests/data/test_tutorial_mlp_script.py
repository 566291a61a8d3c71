"""scripts/tutorial_mlp.py and scripts/multiplicity_probe.py: their pure helpers (step count of the tutorial
recipe, confusion matrix, per-class means, the marked section, the count summary). Training and generation are
not run here: the scripts are measurements."""

from __future__ import annotations

import numpy as np

from tests.script_loader import load_script


def _load():
    return load_script("tutorial_mlp")


def test_recipe_steps_follow_the_tutorial_split():
    t = _load()
    # 830,000 jets: 166,000 test, 664,000 train+val, 498,000 train -> 487 batches of 1024 per epoch
    assert t.n_train(830_000) == 498_000
    assert t.recipe_steps(830_000) == 30 * 487
    assert t.n_train(50_000) == 30_000 and t.recipe_steps(50_000, epochs=1) == 30


def test_confusion_rows_are_true_classes():
    t = _load()
    m = t.confusion(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert m.sum() == 6


def test_per_class_means():
    t = _load()
    x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    means = t.per_class_means(x, np.array([0, 0, 1]), ("a", "b"), ("g", "q"))
    assert means == {"a": {"g": 2.0, "q": 5.0}, "b": {"g": 20.0, "q": 50.0}}


def test_overall_shape():
    t = _load()
    mass, pt = np.array([10.0, 20.0, 90.0]), np.array([900.0, 1000.0, 1100.0])
    shape = t.overall_shape(np.arange(1.0, 101.0), mass, pt)
    assert shape["multiplicity_mean"] == 50.5 and shape["multiplicity_percentiles_5_25_50_75_95"][2] == 50.5
    assert shape["jet_mass_median"] == 20.0 and shape["jet_pt_min_median_max"] == [900.0, 1000.0, 1100.0]


def test_section_is_marked_and_holds_every_run():
    t = _load()
    classes = ("g", "q", "w", "z", "t")
    run = {"epochs": 30, "steps": 900, "n_test": 10, "accuracy": 0.5, "accuracy_per_class": [0.5] * 5,
           "auc_per_class": [0.8] * 5, "confusion": np.eye(5, dtype=int).tolist()}
    means = {c: 1.0 for c in classes}
    res = {"runs": {"recipe": run, "steps_matched": run}, "hlf_means": {"mass_mmdt": means, "zlogz": means},
           "jet_mass_means": means, "jet_pt_means": means,
           "all_classes": {"multiplicity_mean": 49.4,
                           "multiplicity_percentiles_5_25_50_75_95": [22, 34, 46, 61, 89],
                           "jet_mass_median": 86.9, "jet_pt_min_median_max": [159.3, 1022.1, 3156.7]}}
    text = t.render_section({"sets": {"a": res}})
    assert text.startswith("<!-- tutorial-mlp:start -->")
    assert text.rstrip().endswith("<!-- tutorial-mlp:end -->")
    assert "| a | recipe | 30 | 900 | 10 | 0.5000 |" in text and "| a | steps_matched |" in text
    assert text.count("Confusion matrix") == 2 and "| a | mass_mmdt | 1.0 |" in text
    assert "| a | 49.4 | 22/34/46/61/89 | 86.9 | 159/1022/3157 |" in text
    other = t.render_section({"sets": {"a": res}}, section="cells", json_name="cells.json")
    assert other.startswith("<!-- cells:start -->") and "<!-- cells:end -->" in other
    assert "tutorial-mlp" not in other and "scripts/results/cells.json" in other


def test_multiplicity_probe_summary():
    probe = load_script("multiplicity_probe")
    summary = probe.summarise(np.arange(1, 102))
    assert summary["mean"] == 51.0 and summary["n_jets"] == 101
    assert summary["percentiles_5_25_50_75_95"] == [6.0, 26.0, 51.0, 76.0, 96.0]
    assert 22 in probe.PHOTON and 22 not in probe.CHARGED and probe.THRESHOLDS_GEV[0] == 0.0
