"""Data layer (measurement script): the hls4ml tutorial's jet MLP recipe, trained on trigflow jet files.

The recipe is the one of ``part1_getting_started.ipynb`` in fastmachinelearning/hls4ml-tutorial (read in
the stored copy, commit 6789601): the 16 HLF, ``train_test_split(test_size=0.2, random_state=42)``,
``StandardScaler`` fitted on the train+validation part, Dense 64-32-32-5 (``lecun_uniform``, L1 1e-4 on every
kernel) with ReLU and softmax, Adam lr 1e-4, categorical cross-entropy, batch 1024, 30 epochs,
``validation_split=0.25`` of train+validation (20 % of all jets), shuffled, the tutorial's
``ReduceLROnPlateau(val_loss, factor 0.5, patience 10, min_delta 1e-6, cooldown 2, min_lr 1e-7)``; the model
of the last epoch is scored, as in the notebook. Seeds: numpy 0, TensorFlow 0.

``--steps-matched`` also trains the same recipe for as many optimiser steps as the tutorial takes on its
830,000 jets (30 epochs × ceil(830,000 × 0.6 / 1024) steps), because 30 epochs over a 50k-jet file are
only ~900 steps.

Usage::

    python scripts/tutorial_mlp.py --data embedded_v3=EMBEDDED --data v1=/tmp/jets_wt/jets_v1.h5 --steps-matched
    python scripts/tutorial_mlp.py --data plain_10k=EMBEDDED:10000 --data cells_10k=FILE --steps-matched \
        --out-json scripts/results/tutorial_mlp_cells.json --section detector-cells

Writes per-set results (accuracy, per-class accuracy, 5×5 confusion matrix, one-vs-rest AUC per class, and
per-class HLF means) into ``scripts/results/tutorial_mlp.json`` (merged by set name) and renders them between
``<!-- tutorial-mlp:start -->`` / ``<!-- tutorial-mlp:end -->`` in docs/jets.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

__all__ = [
    "confusion", "main", "n_train", "overall_shape", "per_class_means", "recipe_steps", "render_section"
]

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = {
    "source": "fastmachinelearning/hls4ml-tutorial part1_getting_started.ipynb (stored copy, commit 6789601)",
    "test_size": 0.2,
    "split_random_state": 42,
    "validation_split": 0.25,
    "hidden": (64, 32, 32),
    "l1": 1e-4,
    "learning_rate": 1e-4,
    "batch_size": 1024,
    "epochs": 30,
    "public_jets": 830_000,
}
# Features whose per-class means the doc shows (all 16 are in the JSON).
SHOWN_MEANS = ("zlogz", "c2_b1_mmdt", "d2_b1_mmdt", "n2_b1_mmdt", "mass_mmdt", "multiplicity")


def n_train(n_jets: int) -> int:
    """Jets the recipe trains on: sklearn's test split takes ceil(20 %) of them, Keras's validation_split
    the last 25 % of the rest."""
    n_train_val = n_jets - math.ceil(n_jets * TUTORIAL["test_size"])
    return int(n_train_val * (1 - TUTORIAL["validation_split"]))


def recipe_steps(n_jets: int, *, epochs: int = 30) -> int:
    """Optimiser steps the tutorial recipe takes on ``n_jets`` jets (about 60 % of them train)."""
    return epochs * math.ceil(n_train(n_jets) / TUTORIAL["batch_size"])


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def per_class_means(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], classes: tuple[str, ...]) -> dict:
    """{feature: {class: mean}} over the jets of each class."""
    return {
        name: {cls: float(x[y == i, j].mean()) for i, cls in enumerate(classes)}
        for j, name in enumerate(names)
    }


def overall_shape(multiplicity: np.ndarray, mass: np.ndarray, pt: np.ndarray) -> dict:
    """Class-blind figures comparable with published ones: multiplicity mean and 5/25/50/75/95 percentiles,
    jet mass median, jet pT min / median / max (GeV)."""
    return {
        "multiplicity_mean": float(multiplicity.mean()),
        "multiplicity_percentiles_5_25_50_75_95": np.percentile(multiplicity, [5, 25, 50, 75, 95]).tolist(),
        "jet_mass_median": float(np.median(mass)),
        "jet_pt_min_median_max": [float(pt.min()), float(np.median(pt)), float(pt.max())],
    }


def _train(x: np.ndarray, y: np.ndarray, n_classes: int, *, epochs: int, seed: int) -> dict:
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    np.random.seed(seed)
    tf.random.set_seed(seed)
    onehot = np.eye(n_classes)[y]
    x_tv, x_test, y_tv, y_test = train_test_split(
        x, onehot, test_size=TUTORIAL["test_size"], random_state=TUTORIAL["split_random_state"]
    )
    scaler = StandardScaler()
    x_tv = scaler.fit_transform(x_tv)
    x_test = scaler.transform(x_test)

    l1 = tf.keras.regularizers.l1(TUTORIAL["l1"])
    model = tf.keras.Sequential([tf.keras.Input(shape=(x.shape[1],))])
    for width in (*TUTORIAL["hidden"], n_classes):
        model.add(tf.keras.layers.Dense(width, kernel_initializer="lecun_uniform", kernel_regularizer=l1))
        model.add(tf.keras.layers.Activation("relu" if width != n_classes else "softmax"))
    model.compile(optimizer=tf.keras.optimizers.Adam(TUTORIAL["learning_rate"]),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    reduce_lr = tf.keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=10, mode="min", min_delta=1e-6, cooldown=2, min_lr=1e-7
    )
    start = time.perf_counter()
    history = model.fit(x_tv, y_tv, batch_size=TUTORIAL["batch_size"], epochs=epochs,
                        validation_split=TUTORIAL["validation_split"], shuffle=True, callbacks=[reduce_lr],
                        verbose=0)
    seconds = time.perf_counter() - start
    prob = model.predict(x_test, batch_size=4096, verbose=0)
    truth, pred = y_test.argmax(1), prob.argmax(1)
    matrix = confusion(truth, pred, n_classes)
    return {
        "epochs": epochs,
        "steps": recipe_steps(len(x), epochs=epochs),
        "n_train": n_train(len(x)),
        "n_test": int(len(x_test)),
        "accuracy": float((truth == pred).mean()),
        "accuracy_per_class": (np.diag(matrix) / matrix.sum(1)).tolist(),
        "auc_per_class": [float(roc_auc_score(y_test[:, i], prob[:, i])) for i in range(n_classes)],
        "confusion": matrix.tolist(),
        "final_val_accuracy": float(history.history["val_accuracy"][-1]),
        "final_learning_rate": float(tf.keras.backend.get_value(model.optimizer.learning_rate)),
        "train_seconds": round(seconds, 1),
    }


def measure(name: str, path: str, *, steps_matched: bool, seed: int, max_jets: int | None = None) -> dict:
    from trigflow.data import HLF_NAMES, JET_CLASSES
    from trigflow.data.jets import embedded_jets_path, load_jets

    file = embedded_jets_path() if path == "EMBEDDED" else Path(path)
    jets = load_jets(file)
    x, y = jets.hlf.astype(np.float64)[:max_jets], jets.label.astype(np.int64)[:max_jets]
    mass, pt = jets.mass[:max_jets], jets.pt[:max_jets]
    pt_hat_min, pt_hat_max = jets.attrs.get("pt_hat_min_gev"), jets.attrs.get("pt_hat_max_gev")
    result = {
        "file": str(path),
        "detector": str(jets.attrs.get("detector", "none")),
        "n_jets": int(len(y)),
        "format_version": int(jets.attrs.get("format_version", 0)),
        "pt_hat_gev": [None if v is None else float(v) for v in (pt_hat_min, pt_hat_max)],
        "hlf_means": per_class_means(x, y, HLF_NAMES, JET_CLASSES),
        "jet_mass_means": {c: float(mass[y == i].mean()) for i, c in enumerate(JET_CLASSES)},
        "jet_pt_means": {c: float(pt[y == i].mean()) for i, c in enumerate(JET_CLASSES)},
        "all_classes": overall_shape(x[:, HLF_NAMES.index("multiplicity")], mass, pt),
        "runs": {"recipe": _train(x, y, len(JET_CLASSES), epochs=TUTORIAL["epochs"], seed=seed)},
    }
    if steps_matched:
        per_epoch = recipe_steps(len(y), epochs=1)
        epochs = math.ceil(recipe_steps(TUTORIAL["public_jets"]) / per_epoch)
        result["runs"]["steps_matched"] = _train(x, y, len(JET_CLASSES), epochs=epochs, seed=seed)
    return result


def _fmt(values, digits: int = 3) -> str:
    return " | ".join(f"{v:.{digits}f}" for v in values)


def render_section(
    results: dict,
    classes: tuple[str, ...] = ("g", "q", "w", "z", "t"),
    *,
    section: str = "tutorial-mlp",
    json_name: str = "tutorial_mlp.json",
) -> str:
    """The markdown section ``section`` (between its markers) for the sets in ``results`` (the JSON's)."""
    lines = [
        f"<!-- {section}:start -->",
        f"Written by `scripts/tutorial_mlp.py` (results in `scripts/results/{json_name}`). Recipe: "
        f"{TUTORIAL['source']}; test 20 % (`random_state=42`), validation 25 % of the rest, StandardScaler, "
        "16-64-32-32-5 ReLU/softmax, lecun_uniform, L1 1e-4, Adam 1e-4, batch 1024, ReduceLROnPlateau as in "
        "the tutorial; last-epoch model scored. `recipe` = 30 epochs; `steps_matched` = as many optimiser "
        f"steps as 30 epochs on the public {TUTORIAL['public_jets']:,} jets "
        f"({recipe_steps(TUTORIAL['public_jets']):,}).",
        "",
        "| set | run | epochs | steps | test jets | accuracy | " + " | ".join(f"acc {c}" for c in classes)
        + " | " + " | ".join(f"AUC {c}" for c in classes) + " |",
        "|---" * (6 + 2 * len(classes)) + "|",
    ]
    for name, res in results["sets"].items():
        for run, r in res["runs"].items():
            lines.append(
                f"| {name} | {run} | {r['epochs']} | {r['steps']:,} | {r['n_test']:,} | "
                f"{r['accuracy']:.4f} | "
                f"{_fmt(r['accuracy_per_class'])} | {_fmt(r['auc_per_class'])} |"
            )
    for name, res in results["sets"].items():
        for run, r in res["runs"].items():
            title = f"Confusion matrix, {name} / {run} (rows: true class, columns: predicted; counts):"
            lines += ["", title, "",
                      "| true \\ pred | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
            lines += [
                f"| {c} | " + " | ".join(str(v) for v in row) + " |"
                for c, row in zip(classes, r["confusion"], strict=True)
            ]
    means_title = "Per-class means of HLF (all 16 in the JSON) and of the ungroomed jet mass / pT (GeV):"
    lines += ["", means_title, "",
              "| set | feature | " + " | ".join(classes) + " |", "|---" * (len(classes) + 2) + "|"]
    for name, res in results["sets"].items():
        rows = [(f, res["hlf_means"][f]) for f in SHOWN_MEANS if f in res["hlf_means"]]
        rows += [("jet mass", res["jet_mass_means"]), ("jet pT", res["jet_pt_means"])]
        for feature, means in rows:
            digits = 1 if feature in ("mass_mmdt", "multiplicity", "jet mass", "jet pT") else 3
            lines.append(f"| {name} | {feature} | " + _fmt([means[c] for c in classes], digits) + " |")
    lines += ["", "All classes together (multiplicity = constituents per jet; jet mass / pT in GeV):", "",
              "| set | multiplicity mean | percentiles 5/25/50/75/95 | jet mass median "
              "| jet pT min/median/max |",
              "|---|---|---|---|---|"]
    for name, res in results["sets"].items():
        a = res.get("all_classes")
        if a:
            pcts = "/".join(f"{v:.0f}" for v in a["multiplicity_percentiles_5_25_50_75_95"])
            pts = "/".join(f"{v:.0f}" for v in a["jet_pt_min_median_max"])
            mean, median = a["multiplicity_mean"], a["jet_mass_median"]
            lines.append(f"| {name} | {mean:.1f} | {pcts} | {median:.1f} | {pts} |")
    lines.append(f"<!-- {section}:end -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True,
                        help="NAME=FILE[:N] (a trigflow jet .h5 or EMBEDDED; N = first N jets); repeatable")
    parser.add_argument("--steps-matched", action="store_true",
                        help="also train for the tutorial's step count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", default=str(ROOT / "scripts/results/tutorial_mlp.json"))
    parser.add_argument("--out-md", default=str(ROOT / "docs/jets.md"))
    parser.add_argument("--section", default="tutorial-mlp", help="name of the marked section in --out-md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_csim import write_section

    out_json = Path(args.out_json)
    results = json.loads(out_json.read_text()) if out_json.is_file() else {"sets": {}}
    for item in args.data:
        name, _, path = item.partition("=")
        path, _, count = path.partition(":")
        if not path or (count and not count.isdigit()):
            parser.error(f"--data takes NAME=FILE[:N], got {item!r}")
        t0 = time.perf_counter()
        max_jets = int(count) if count else None
        results["sets"][name] = measure(
            name, path, steps_matched=args.steps_matched, seed=args.seed, max_jets=max_jets
        )
        results["sets"][name]["command"] = "python scripts/tutorial_mlp.py " + " ".join(argv or sys.argv[1:])
        results["sets"][name]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps({k: v["accuracy"] for k, v in results["sets"][name]["runs"].items()}))
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1) + "\n")
    write_section(Path(args.out_md), render_section(results, section=args.section, json_name=out_json.name))
    return results


if __name__ == "__main__":
    main()
