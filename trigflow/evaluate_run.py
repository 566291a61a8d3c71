"""Spine layer: score a finished run on raw arrays from elsewhere (``trigflow evaluate RUN_DIR``).

A run folder holds everything needed: ``config.json`` (kind, architecture), ``preprocessing.json`` (how raw
data became model inputs: the gnn raw → feature transform, the per-feature standardisation and the input
quantizer), the trained models (``qkeras_model.h5``, ``float_model.h5``; ``*_deployed.h5`` when the deployed
model differs) and ``report.json``, whose ``project_dir`` names the compiled hls4ml project. This module
applies the recorded preprocessing to the raw arrays, runs float, QKeras and the firmware C-simulation, and
writes the run's accuracy / AUC fields — plus the bit comparison firmware vs QKeras on the new inputs — to
``<RUN_DIR>/evaluate.json`` (or ``out``).

Raw inputs per kind:

* ``gnn``: ``(jets, particles, 3)`` = (pT in GeV, η − η_jet, φ − φ_jet) per constituent, zero rows = padding,
  any number of particles (8, 16, 32, 150, ...) and any order, plus the jet pT per jet (default: the scalar pT
  sum of the supplied constituents). The constituents are sorted by pT, truncated or zero-padded to the run's
  count and transformed as the run recorded (``trigflow.kinds.gnn.features_from_raw``); ``report["input"]``
  states what was done. Public-format arrays are accepted too: the Zenodo hls4ml jet ``.h5`` files (data,
  labels and jet pT from the same file), an ``.npz`` with ``constituents`` and ``particleFeatureNames``, or a
  16-feature array in the Zenodo order (``trigflow.data.public.raw_constituents``). Units are checked:
  constituent pT and jet pT must share a unit (GeV, MeV or fractions of the jet pT alike), η/φ must be
  relative to the jet axis.
* ``mlp``: ``(jets, 16)`` high-level features in the order of ``preprocessing.json["features"]``.

Labels: class indices in the run's class order (``preprocessing.json["classes"]``), one-hot rows, or class
names.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

SUPPORTED_KINDS = ("mlp", "gnn")


@dataclass
class EvaluateResult:
    report: dict[str, Any]
    path: Path


# --- inputs ------------------------------------------------------------------------------------------------
_FEATURE_NAME_KEYS = ("particleFeatureNames", "feature_names", "features")


def _load_public_h5(path: Path, what: str) -> np.ndarray:
    """data (raw constituents), labels (class names) or jet pT from a public hls4ml jet ``.h5`` file."""
    from trigflow.data import JET_CLASSES
    from trigflow.data.public import load_hls4ml_jets_h5, raw_constituents

    jets = load_hls4ml_jets_h5(path)
    if what == "labels":
        return np.array(JET_CLASSES)[jets.label]
    if what == "jet pT":
        return np.asarray(jets.pt, np.float32)
    if jets.constituents is None:
        raise TrigflowError(f"{path} holds no jetConstituentList; use a file with constituents")
    return raw_constituents(jets.constituents, jets.constituent_features or None)


def load_array(path: str | Path, what: str = "data") -> np.ndarray:
    """One array from ``.npy``, or from ``.npz`` (its only array, or the one named ``x``/``constituents`` for
    data, ``y`` for labels, ``jet_pt`` for jet pT), or from a public hls4ml jet ``.h5`` file (constituents as
    (pT, η_rel, φ_rel), labels as class names, ``j_pt``). An ``.npz`` whose data has named features
    (``particleFeatureNames``) yields its (pT, η_rel, φ_rel) columns."""
    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"{what} file {path} not found")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _load_public_h5(path, what)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrigflowError(
            f"{what} file {path} cannot be read as .npy/.npz ({exc.__class__.__name__})"
        ) from None
    if isinstance(loaded, np.ndarray):
        return loaded
    names = {"data": ("x", "constituents"), "labels": ("y", "labels", "label"), "jet pT": ("jet_pt",)}[what]
    with loaded:
        keys = list(loaded.keys())
        name_key = next((k for k in _FEATURE_NAME_KEYS if k in keys), None) if what == "data" else None
        candidates = [k for k in keys if k != name_key]
        key = next((k for k in names if k in keys), candidates[0] if len(candidates) == 1 else None)
        if key is None:
            raise TrigflowError(
                f"{what} file {path} holds arrays {keys}; name the one to use {' or '.join(names)}"
            )
        if name_key is not None:
            from trigflow.data.public import raw_constituents

            return raw_constituents(loaded[key], [str(n) for n in loaded[name_key].tolist()])
        return loaded[key]


def load_jet_pt(data: str | Path, jet_pt: str | Path | None) -> np.ndarray | None:
    """The jet pT: from ``jet_pt`` if given, else the ``jet_pt`` array of an ``.npz`` data file, else None."""
    if jet_pt is not None:
        return load_array(jet_pt, "jet pT")
    if Path(data).suffix.lower() in (".h5", ".hdf5"):
        return load_array(data, "jet pT")
    if Path(data).suffix == ".npz":
        with np.load(data, allow_pickle=False) as loaded:
            if "jet_pt" in loaded:
                return loaded["jet_pt"]
    return None


def labels_to_indices(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """Class indices from indices, one-hot rows or class names (checked against the run's classes)."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "USO":
        lookup = {c.lower(): i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in labels.ravel() if str(v).lower() not in lookup})
        if unknown:
            raise TrigflowError(
                f"unknown class name(s) {unknown[:5]} in labels; the run's classes are {classes}"
            )
        return np.array([lookup[str(v).lower()] for v in labels.ravel()], np.int64)
    if labels.ndim == 2 and labels.shape[1] == len(classes):
        if not np.all(np.isin(labels, (0, 1))) or not np.all(labels.sum(axis=1) == 1):
            raise TrigflowError("2-D labels must be one-hot rows (exactly one 1 per row)")
        return np.argmax(labels, axis=1).astype(np.int64)
    labels = labels.reshape(-1)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise TrigflowError("labels must be class indices (integers), one-hot rows or class names")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise TrigflowError(
            f"labels must lie in 0..{len(classes) - 1} (classes {classes}); "
            f"got {labels.min()}..{labels.max()}"
        )
    return labels


def check_constituents(raw: np.ndarray, jet_pt: np.ndarray | None, n_particles: int) -> dict[str, Any]:
    """Check the physics units of raw (pT, η_rel, φ_rel) constituents and say what the run's transform will do
    with them (sorted by pT, truncated or zero-padded to ``n_particles``). One-line errors on a mismatch."""
    if raw.ndim != 3 or raw.shape[-1] != 3 or not np.all(np.isfinite(raw)):
        return {}  # shape and NaN errors come from the transform itself
    pt = raw[..., 0]
    negative = np.any(pt < 0, axis=1)
    if negative.any():
        raise TrigflowError(
            f"constituent pT (column 0) is negative in {int(negative.sum())} jet(s): raw columns must be "
            "(pT, eta - eta_jet, phi - phi_jet); check the column order"
        )
    real = pt > 0
    angles = np.abs(raw[..., 1:][real]) if real.any() else np.zeros((0, 2))
    if angles.size and angles.max() > np.pi + 1e-3:
        raise TrigflowError(
            f"constituent eta/phi (columns 1, 2) reach |{angles.max():.3g}|: they must be relative to the "
            "jet axis (|eta_rel|, |phi_rel| <= pi), not absolute, and pT must be column 0"
        )
    n_real = real.sum(axis=1)
    pt_sum = pt.sum(axis=1, dtype=np.float64)
    fractions = real.any() and bool(np.all(pt <= 1 + 1e-6) and np.median(pt_sum[n_real > 0]) <= 1.05)
    info: dict[str, Any] = {
        "constituents_supplied": int(raw.shape[1]),
        "real_constituents": {
            "min": int(n_real.min()), "median": float(np.median(n_real)), "max": int(n_real.max())
        },
        "n_particles": int(n_particles),
        "order": "sorted by pT, highest first (supplied order ignored)",
        "jets_truncated": int((n_real > n_particles).sum()),
        "jets_zero_padded": int((n_real < n_particles).sum()),
        "pt_unit": "fraction of the jet pT" if fractions else "absolute (GeV or any one unit)",
    }
    if jet_pt is not None:
        jet_pt = np.asarray(jet_pt, np.float64).reshape(-1)
        if jet_pt.shape == pt_sum.shape:
            both = (jet_pt > 0) & (pt_sum > 0)
            ratio = float(np.median(pt_sum[both] / jet_pt[both])) if both.any() else 1.0
            info["median_sum_pt_over_jet_pt"] = ratio
            if not 0.05 <= ratio <= 20:
                raise TrigflowError(
                    f"constituent pT and jet pT are in different units (median sum of constituent pT / jet "
                    f"pT = {ratio:.3g}): give both in GeV (pT fractions need no --jet-pt)"
                )
    return info


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise TrigflowError(f"{path} not found: is {path.parent} a finished trigflow run folder ({what})?")
    return json.loads(path.read_text())


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(config, preprocessing, report)`` of a finished run folder; one-line errors for anything missing."""
    if not run_dir.is_dir():
        raise TrigflowError(f"run folder {run_dir} not found")
    return tuple(_read_json(run_dir / f"{name}.json", f"{name}.json") for name in ("config", "preprocessing", "report"))


def model_inputs(
    raw: np.ndarray, kind: str, preprocessing: dict[str, Any], jet_pt: np.ndarray | None = None
) -> np.ndarray:
    """Apply a run's recorded preprocessing to raw arrays: the model inputs on the firmware input grid."""
    from trigflow.data.prepare import Standardizer
    from trigflow.quantize.presets import QuantSpec

    raw = np.asarray(raw)
    if raw.dtype.kind not in "fiu":
        raise TrigflowError(f"raw data must be numeric, got dtype {raw.dtype}")
    transform = preprocessing.get("raw", {}).get("transform")
    if transform is not None:
        from trigflow.kinds import gnn

        if transform != gnn.RAW_TRANSFORM:
            raise TrigflowError(f"run uses raw transform '{transform}', unknown to this trigflow version")
        features = gnn.features_from_raw(raw, int(preprocessing["raw"]["n_particles"]), jet_pt)
    else:
        if jet_pt is not None:
            raise TrigflowError(f"a jet pT applies to gnn runs only; this is a {kind} run")
        names = preprocessing.get("features", [])
        if raw.ndim != 2 or raw.shape[1] != len(names):
            raise TrigflowError(
                f"{kind} raw inputs must have shape (samples, {len(names)}) with columns {', '.join(names)}; "
                f"got {raw.shape}"
            )
        features = raw.astype(np.float32)
    if not np.all(np.isfinite(features)):
        rows = np.unique(np.nonzero(~np.isfinite(features))[0])
        raise TrigflowError(f"raw data contain NaN/inf in {len(rows)} sample(s) (first at index {rows[0]})")
    standardize = Standardizer.from_dict(preprocessing["standardize"])
    iq = preprocessing["input_quantizer"]
    spec = QuantSpec(input_bits=int(iq["bits"]), input_integer=int(iq["integer"]))
    return spec.quantize_input(standardize(features))


# --- models ------------------------------------------------------------------------------------------------
def load_models(run_dir: Path, kind: str, x: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The trained float twin and QKeras model of a run: rebuilt by the kind's recipe from the run's
    ``config.json``, then the saved weights loaded. (Rebuilding rather than ``load_qmodel``: the graph
    networks' fixed 0/1 structure layers carry numpy Constant initializers that Keras cannot deserialise.)"""
    import warnings

    from trigflow.config import load_config
    from trigflow.kinds import Prepared, recipe_for

    config = load_config(kind, run_dir / "config.json")
    recipe = recipe_for(kind)
    y = np.zeros(1, np.int64)
    stub = Prepared(x[:1], y, x[:1], y, x[:1], y, {}, tuple(classes))  # shapes and classes for the builder
    models = {}
    for name, quantized in (("float", False), ("qkeras", True)):
        path = run_dir / f"{name}_deployed.h5"
        path = path if path.is_file() else run_dir / f"{name}_model.h5"
        if not path.is_file():
            raise TrigflowError(f"{path} not found; the run folder is incomplete")
        model = recipe.build(stub, config, quantized)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.load_weights(str(path))
        except (ValueError, OSError) as exc:
            raise TrigflowError(
                f"{path} does not fit the {kind} model of {run_dir / 'config.json'} "
                f"({exc.__class__.__name__}: {str(exc)[:200]}); was the run made by another trigflow version?"
            ) from None
        models[name] = model
    return models


def link_firmware(project: Path, run_dir: Path, arch: str):
    """The compiled C-simulation of ``project``, checked to be the firmware this run proved."""
    import ctypes

    import hls4ml

    from trigflow.firmware.fifo import library_path

    proof = project / "trigflow_report.json"
    if not project.is_dir():
        raise TrigflowError(f"firmware project {project} not found; pass --project-dir, or --no-firmware")
    if not proof.is_file() or proof.read_bytes() != (run_dir / "report.json").read_bytes():
        raise TrigflowError(
            f"project {project} does not hold the firmware proven by {run_dir} (its trigflow_report.json "
            "differs: rebuilt by another run?); pass the right --project-dir, or --no-firmware"
        )
    hls_model = hls4ml.converters.link_existing_project(str(project))
    library = library_path(project, hls_model.config.get_project_name())
    if not library.is_file():
        raise TrigflowError(f"C-simulation library {library} not found; the project was not compiled")
    hls_model._top_function_lib = ctypes.CDLL(str(library))
    if arch == "garnet":
        from trigflow.kinds.gnn import GarNetFirmware

        return GarNetFirmware(hls_model)
    return hls_model


# --- the evaluation ----------------------------------------------------------------------------------------
def evaluate_run(
    run_dir: str | Path,
    raw: np.ndarray,
    labels: np.ndarray,
    *,
    out: str | Path | None = None,
    project_dir: str | Path | None = None,
    firmware: bool = True,
    jet_pt: np.ndarray | None = None,
    sources: dict[str, str] | None = None,
    ui=None,
) -> EvaluateResult:
    """Score the run at ``run_dir`` on ``raw`` inputs with ``labels``; write and return the metrics.

    ``jet_pt`` (gnn): the jet pT per jet, in the unit of the constituent pT; None: the scalar pT sum of the
    supplied constituents."""
    from trigflow.proof import compare
    from trigflow.firmware.csim import predict
    from trigflow.fsio import write_text
    from trigflow.ui import StageUI

    ui = ui or StageUI(quiet=True)
    run_dir = Path(run_dir).resolve()
    config, preprocessing, run_report = read_run(run_dir)
    kind, arch = config["kind"], config.get("model", {}).get("arch", "default")
    if kind not in SUPPORTED_KINDS:
        raise TrigflowError(
            f"trigflow evaluate supports {', '.join(SUPPORTED_KINDS)} runs; {run_dir} is a {kind} run"
        )
    classes = list(preprocessing["classes"])
    y = labels_to_indices(labels, classes)
    if len(y) != len(raw):
        raise TrigflowError(f"data has {len(raw)} samples but labels have {len(y)}; they must match")
    if len(y) == 0:
        raise TrigflowError("no samples to evaluate")

    input_info: dict[str, Any] = {}
    if kind == "gnn":
        raw = np.asarray(raw)
        if raw.ndim == 3 and raw.shape[-1] == 16:  # public 16-feature constituents (Zenodo order)
            from trigflow.data.public import raw_constituents

            raw = raw_constituents(raw)
            input_info["columns"] = "j1_pt, j1_etarel, j1_phirel of the 16 Zenodo particle features"
        n_particles = int(preprocessing.get("raw", {}).get("n_particles", 0))
        input_info |= check_constituents(raw, jet_pt, n_particles)
    with ui.stage("preprocess raw data"):
        x = model_inputs(raw, kind, preprocessing, jet_pt)
    with ui.stage("load models"):
        models = load_models(run_dir, kind, x, classes)
    outputs: dict[str, np.ndarray] = {}
    with ui.stage("QKeras and float inference"):
        for name, model in models.items():
            y_model = model.predict(x, batch_size=4096, verbose=0)
            outputs[name] = y_model.reshape(len(x), -1).astype(np.float64)
    project = Path(project_dir or run_report["project_dir"]).resolve()
    if firmware:
        hls_model = link_firmware(project, run_dir, arch)
        with ui.stage("C-simulation"):
            outputs["firmware"] = predict(hls_model, x)

    names = tuple(outputs)
    report: dict[str, Any] = {
        "kind": kind,
        "arch": arch,
        "run_dir": str(run_dir),
        "project_dir": str(project) if firmware else None,
        "data": {**(sources or {}), "samples": int(len(x)), "jet_pt": "given" if jet_pt is not None else (
            "sum of supplied constituents" if kind == "gnn" else None)},
        "samples": int(len(x)),
        "accuracy": {name: compare.accuracy(outputs[name], y) for name in names},
        "auc": {name: compare.auc_per_class(outputs[name], y, tuple(classes)) for name in names},
        "preprocessing": preprocessing.get("raw", {"features": preprocessing.get("features")}),
    }
    if input_info:
        report["input"] = input_info
    if firmware:
        from trigflow.proof.reference import exact_predict

        bits = compare.compare_bits(exact_predict(models["qkeras"], x), outputs["firmware"])
        report |= {
            "bit_exact_fraction": bits.bit_exact_fraction,
            "mismatched_samples": int(len(bits.mismatched)),
            "max_abs_diff_vs_qkeras": bits.max_abs_diff,
            "softmax_max_abs_diff_vs_qkeras": compare.max_abs_diff(
                compare.softmax(outputs["firmware"]), compare.softmax(outputs["qkeras"])
            ),
            "argmax_agreement_vs_qkeras": compare.argmax_agreement(outputs["firmware"], outputs["qkeras"]),
            "argmax_agreement_vs_float": compare.argmax_agreement(outputs["firmware"], outputs["float"]),
        }
    report["run_reference"] = {
        "samples": run_report.get("samples"),
        "accuracy": run_report.get("accuracy"),
        "bit_exact_fraction": run_report.get("bit_exact_fraction"),
    }
    report["timings_s"] = {k: round(v, 3) for k, v in ui.timings.items()}
    report["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = Path(out) if out is not None else run_dir / "evaluate.json"
    write_text(path, json.dumps(report, indent=2) + "\n")
    if path.resolve().parent == run_dir and (run_dir / "report.json").is_file():
        from trigflow.report_html import load_report, write_page

        write_page(load_report(run_dir), run_dir)  # the run's index.html gains the evaluation section
    return EvaluateResult(report=report, path=path)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    acc = report["accuracy"]
    rows = [("samples", f"{report['samples']:,}")]
    given = report.get("input") or {}
    if "n_particles" in given:
        rows.append((
            "constituents (sorted by pT)",
            f"{given['constituents_supplied']} supplied -> {given['n_particles']} kept; "
            f"{given['jets_truncated']:,} jets truncated, {given['jets_zero_padded']:,} zero-padded",
        ))
    rows.append(("accuracy " + " / ".join(acc), " / ".join(f"{v:.4f}" for v in acc.values())))
    ref = (report.get("run_reference") or {}).get("accuracy") or {}
    if ref:
        rows.append(("run's test accuracy " + " / ".join(ref), " / ".join(f"{v:.4f}" for v in ref.values())))
    if "bit_exact_fraction" in report:
        rows.append(("bit-exact fraction (firmware vs QKeras)", f"{report['bit_exact_fraction']:.6f}"))
        rows.append(("argmax agreement vs QKeras", f"{report['argmax_agreement_vs_qkeras']:.6f}"))
    return rows
