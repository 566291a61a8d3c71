"""Spine layer: the graph-network jet tagger recipe — N jet constituents → 5 class logits.

``model.arch``: ``"deepsets"`` (per-particle network φ, mean pooling, then ``model.hidden``: the default, the
one that fits a Level-1 budget), ``"in"`` (Interaction Network on the fully connected graph of the N particles:
its edge network is replicated N(N−1) times) or ``"garnet"`` (hls4ml's GarNet layer;
the QKeras model mirrors its fixed-point firmware arithmetic, see below and ``docs/gnn.md``).

Raw format and input features (``features_from_raw``, recorded in ``preprocessing.json`` so
``trigflow evaluate`` can score raw arrays from elsewhere):

* raw: per jet, P constituents × (pT in GeV, η − η_jet, φ − φ_jet), zero rows for padding — the layout of the
  public hls4ml constituent files (``j1_pt``, ``j1_etarel``, ``j1_phirel``) and of the L1 jet-ID samples —
  plus the jet pT (GeV) per jet. Without a jet pT, the scalar sum of the pT of *all supplied* constituents
  stands in for it (exact when the source lists every constituent). The embedded trigflow file stores
  pT fractions; its raw pT is ``pt_fraction × jet pT``.
* features: the N highest-pT constituents (sorted here; fewer are zero-padded), each as
  ``(z = pT / jet pT, Δη, Δφ)``. z is dimensionless (GeV or MeV alike) and, normalised to the whole jet
  rather than to the N kept particles, it tells how much of the jet lies outside them — a multiplicity
  proxy worth +1.7 points of accuracy over z normalised to the kept particles, and +1.7 over raw pT in GeV
  (DeepSets, float, embedded jets; see docs/gnn.md).
* scaling: each feature is divided by its standard deviation over the *real* training particles — no mean
  shift, so padded slots stay exactly 0 in the QKeras model and in the firmware (a zero word on an empty
  slot), instead of becoming a made-up particle at −mean/scale. Then the input quantizer puts them on the
  grid.
  Padded slots are not masked in IN/DeepSets (fully connected graph over N slots); the model sees a
  zero particle, which it learns to ignore. GarNet gets the count of non-zero particles as its ``n_valid``.

Firmware: IN and DeepSets go through ``trigflow.firmware.gnn.prepare_gnn_for_hls`` (rank-3 QDense →
QConv1D, an exact type for every layer) and the standard converter: bit-exact. Mean pooling is exact only
over a power-of-two N; other N use sum pooling. GarNet: the Keras side is a one-input model that counts the
valid particles itself (``CountValid``) and calls the two-input GarNet model, whose GarNet layer is
``GarNetHLS`` (the step-by-step mirror of hls4ml's ``nnet::garnet``: 12-bit truncated distance, exp(−d²)
table, contracted transforms); the firmware is hls4ml's GarNet with the mirror's weights and types
(``trigflow.firmware.gnn.prepare_garnet_for_hls``): bit-exact too. N must be a power of two for GarNet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.kinds import Arrays, Prepared, Recipe, checked_arch

ARCHS = ("in", "deepsets", "garnet")
RAW_FEATURES: tuple[str, ...] = ("pt", "eta_rel", "phi_rel")  # per constituent: GeV, rad, rad
FEATURES: tuple[str, ...] = ("pt_fraction", "deta", "dphi")  # z = pT / jet pT, Δη, Δφ
RAW_TRANSFORM = "gnn_constituents_v2"  # names the raw → feature function below in preprocessing.json

# Widths of the per-edge / per-node / per-particle networks (the head after pooling is ``model.hidden``).
IN_WIDTHS: dict[str, Any] = {"edge_hidden": (32,), "edge_dim": 16, "node_hidden": (32,), "node_dim": 16}
# φ is replicated on every particle, so a one-layer φ and the capacity after the pooling (model.hidden) is what
# fits Level 1: 231k LUT for φ 64 + ρ 64-32-32 against 1.0M for φ 64-64 + ρ 32-32 (docs/rtl.md)
DEEPSETS_WIDTHS: dict[str, Any] = {"phi_hidden": (64,)}  # model.phi_hidden replaces it when given
GARNET_WIDTHS: dict[str, Any] = {"n_aggregators": 8, "n_filters": 64, "n_propagate": 32}
PRECISION_FILE = "trigflow_gnn.json"  # written into the project: per-layer types and warnings

GARNET_EXACTNESS = (
    "bit-exact by construction: the QKeras model's GarNet layer is GarNetHLS (trigflow.models.gnn), which "
    "computes hls4ml's nnet::garnet arithmetic step by step in float64 — the truncated, saturated "
    "ap_fixed<12,4> distance, the exp(-d²) lookup table, data·edge-weight rounded to the input type, the "
    "means over N, the contracted input/output transform with 10 fractional bits and the declared "
    "edge_weight/aggr/result types; the firmware gets hls4ml's GarNet with weights on exactly those grids "
    "and those types (trigflow.firmware.gnn.prepare_garnet_for_hls, checked after conversion). The float twin is "
    "hls4ml's float GarNet."
)


def arch_of(config: RunConfig) -> str:
    return checked_arch(config, "gnn", ARCHS)


def deepsets_widths(config: RunConfig) -> dict[str, Any]:
    """The Deep Sets φ widths: ``model.phi_hidden`` when given, else the arch's ``DEEPSETS_WIDTHS``."""
    phi = tuple(config.model.phi_hidden)
    return {**DEEPSETS_WIDTHS, "phi_hidden": phi} if phi else dict(DEEPSETS_WIDTHS)


def pooling_for(n_particles: int) -> str:
    """Mean pooling where it is exact in fixed point (power-of-two N), sum pooling otherwise."""
    return "mean" if n_particles & (n_particles - 1) == 0 else "sum"


# --- raw format → features --------------------------------------------------------------------------------
def raw_from_jets(jets) -> tuple[np.ndarray, np.ndarray]:
    """``(constituents, jet_pt)`` of a ``JetSet`` in the raw format: (jets, P, 3) = (pT/GeV, η_rel, φ_rel)
    with zero rows for padding, and the jet pT in GeV (trigflow jet file or public hls4ml constituents)."""
    c, names = jets.constituents, tuple(jets.constituent_features)
    if c is None:
        raise TrigflowError("the jet set has no constituents; load it with parts=('constituents',)")
    lower = [n.lower() for n in names]
    jet_pt = np.asarray(jets.pt, np.float32)
    if {"pt_fraction", "deta", "dphi"} <= set(lower):  # trigflow jet file: pT fractions of the jet pT
        z, deta, dphi = (c[..., lower.index(n)] for n in ("pt_fraction", "deta", "dphi"))
        pt = z * jet_pt[:, None]
    elif {"j1_pt", "j1_etarel", "j1_phirel"} <= set(lower):  # public hls4ml constituent list
        pt, deta, dphi = (c[..., lower.index(n)] for n in ("j1_pt", "j1_etarel", "j1_phirel"))
    else:
        raise TrigflowError(
            f"constituent features {names} hold neither (pt_fraction, deta, dphi) nor (j1_pt, j1_etarel, "
            "j1_phirel); cannot build the raw (pT, η_rel, φ_rel) constituents"
        )
    raw = np.stack([pt, deta, dphi], axis=-1).astype(np.float32)
    return raw * (pt > 0)[..., None], jet_pt


def features_from_raw(raw: np.ndarray, n_particles: int, jet_pt: np.ndarray | None = None) -> np.ndarray:
    """(jets, P, 3) raw constituents → (jets, N, 3) features (z = pT/jet pT, Δη, Δφ) of the N highest-pT ones.

    ``jet_pt``: (jets,) in the unit of the constituent pT; None: the scalar pT sum of all P supplied
    constituents. Rows with pT ≤ 0 are padding: they sort last and come out as exact zeros.
    """
    raw = np.asarray(raw, np.float32)
    if raw.ndim != 3 or raw.shape[-1] != len(RAW_FEATURES):
        raise TrigflowError(
            f"gnn raw inputs must have shape (jets, particles, 3) = (pT/GeV, η_rel, φ_rel) per constituent; "
            f"got {raw.shape}"
        )
    if not np.all(np.isfinite(raw)):
        rows = np.unique(np.nonzero(~np.isfinite(raw))[0])
        raise TrigflowError(
            f"raw constituents contain NaN/inf in {len(rows)} jet(s) (first at index {rows[0]})"
        )
    pt_all = np.where(raw[..., 0] > 0, raw[..., 0], 0.0).astype(np.float32)
    if jet_pt is None:
        jet_pt = pt_all.sum(axis=1, dtype=np.float32)
    jet_pt = np.asarray(jet_pt, np.float32).reshape(-1)
    if jet_pt.shape != (len(raw),):
        raise TrigflowError(f"jet pT must hold one value per jet ({len(raw)}); got shape {jet_pt.shape}")
    if not np.all(np.isfinite(jet_pt)) or np.any(jet_pt < 0):
        raise TrigflowError("jet pT must be finite and ≥ 0")
    from trigflow.data.public import leading_constituents

    top = leading_constituents(raw, int(n_particles))  # sorted by pT, truncated or zero-padded
    pt = np.where(top[..., 0] > 0, top[..., 0], 0.0).astype(np.float32)
    scale = jet_pt[:, None]
    z = np.divide(pt, scale, out=np.zeros_like(pt), where=scale > 0)
    x = np.stack([z, top[..., 1], top[..., 2]], axis=-1) * (pt > 0)[..., None]
    return np.ascontiguousarray(x, dtype=np.float32)


def fit_scale(x_train: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation over real (non-padded) particles; padding stays 0 after dividing."""
    real = np.any(x_train != 0, axis=-1)
    values = x_train[real] if real.any() else x_train.reshape(-1, x_train.shape[-1])
    scale = values.std(axis=0)
    return np.where(scale > 0, scale, 1).astype(np.float32)


# --- stage 1: data -----------------------------------------------------------------------------------------
def load(config: RunConfig) -> Arrays:
    from trigflow.data import JET_CLASSES
    from trigflow.data.jets import load_jets

    arch_of(config)  # fail before reading data
    if config.model.n_particles < 2:
        raise TrigflowError(
            f"model.n_particles must be ≥ 2 for a graph network, got {config.model.n_particles}"
        )
    jets = load_jets(config.data.path, parts=("constituents",))
    (raw, jet_pt), y = raw_from_jets(jets), jets.label.astype(np.int64)
    if config.data.max_samples is not None:
        keep = slice(config.data.max_samples)
        raw, jet_pt, y = raw[keep], jet_pt[keep], y[keep]
    source = config.data.path or "embedded jets (Pythia8 + FastJet)"
    return Arrays(raw, y, RAW_FEATURES, JET_CLASSES, str(source), extra={"jet_pt": jet_pt})


def prepare(arrays: Arrays, config: RunConfig) -> Prepared:
    """Raw constituents → features → split → per-feature scale (no shift) → input grid; all recorded."""
    from trigflow.data.prepare import Standardizer, grid_summary, split_for_proof
    from trigflow.quantize.presets import QuantSpec

    n = config.model.n_particles
    x = features_from_raw(arrays.x, n, arrays.extra.get("jet_pt"))
    parts = split_for_proof(x, arrays.y, config)
    standardize = Standardizer(np.zeros(x.shape[-1], np.float32), fit_scale(parts.x_train))
    spec = QuantSpec.from_config(config.quant)

    def to_grid(a: np.ndarray) -> np.ndarray:
        return spec.quantize_input(standardize(a))

    real = np.any(parts.x_train != 0, axis=-1)
    preprocessing = {
        "features": list(FEATURES),
        "classes": list(arrays.class_names),
        "raw": {
            "transform": RAW_TRANSFORM,
            "format": "(jets, particles, 3): pT [GeV], eta - eta_jet, phi - phi_jet; zero rows = padding; "
            "plus jet_pt (jets,) [GeV], default: scalar pT sum of all supplied constituents",
            "features": list(RAW_FEATURES),
            "jet_pt": "given" if "jet_pt" in arrays.extra else "sum of supplied constituents",
            "n_particles": n,
            "selection": "the n_particles highest-pT constituents (pT > 0), zero-padded",
            "feature_definition": "z = pT / jet pT, deta, dphi; padding = 0",
        },
        "standardize": standardize.to_dict(),
        "scaling": "x / scale per feature (scale = std over real training particles; no mean shift: padding "
        "stays 0), then input_quantizer",
        "padded_fraction_train": float(1 - real.mean()),
        "input_quantizer": grid_summary(spec),
    }
    return Prepared.of(parts.map_x(to_grid), preprocessing, arrays.class_names)


# --- stage 2: models ---------------------------------------------------------------------------------------
def _count_valid_class():
    import tensorflow as tf

    class CountValid(tf.keras.layers.Layer):
        """Number of particles with any non-zero feature, shape (batch, 1): GarNet's ``n_valid`` input."""

        def call(self, x):
            nonzero = tf.reduce_any(tf.not_equal(x, 0.0), axis=-1)
            return tf.reduce_sum(tf.cast(nonzero, tf.float32), axis=-1, keepdims=True)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 1)

    return CountValid


_COUNT_VALID = None


def count_valid_layer():
    """The ``CountValid`` layer class (created on first use so importing this module needs no TensorFlow)."""
    global _COUNT_VALID
    if _COUNT_VALID is None:
        _COUNT_VALID = _count_valid_class()
    return _COUNT_VALID


def n_valid(x: np.ndarray) -> np.ndarray:
    """What ``CountValid`` computes, for the firmware's second input."""
    return np.any(np.asarray(x) != 0, axis=-1).sum(axis=-1, keepdims=True).astype(np.float64)


def custom_objects() -> dict[str, Any]:
    """Everything needed to reload a gnn run's models (QKeras, hls4ml GarNet, ``CountValid``)."""
    from trigflow.models.gnn import custom_objects as model_objects

    return {**model_objects(), "CountValid": count_valid_layer()}


def build(prepared: Prepared, config: RunConfig, quantized: bool):
    import tensorflow as tf

    from trigflow.models.gnn import build_deepsets, build_garnet, build_interaction_network
    from trigflow.quantize.presets import QuantSpec

    arch = arch_of(config)
    n, f = prepared.x_train.shape[1:]
    common = {
        "quantized": quantized, "spec": QuantSpec.from_config(config.quant), "seed": config.seed,
    }
    classes = len(prepared.class_names)
    head = tuple(config.model.hidden)
    if arch == "in":
        return build_interaction_network(n, f, classes, head_hidden=head, pooling=pooling_for(n), **IN_WIDTHS,
                                         **common)
    if arch == "deepsets":
        return build_deepsets(
            n, f, classes, rho_hidden=head, pooling=pooling_for(n), **deepsets_widths(config), **common
        )
    if n & (n - 1):
        raise TrigflowError(
            f"GarNet firmware divides by the vertex count N with shifts: model.n_particles must be a power "
            f"of two for arch=garnet, got {n}; use e.g. --set model.n_particles=16"
        )
    inner = build_garnet(n, f, classes, head_hidden=head, **GARNET_WIDTHS, **common)
    particles = tf.keras.Input((n, f), name="particles")
    valid = count_valid_layer()(name="count_valid")(particles)
    return tf.keras.Model(particles, inner([particles, valid]), name=inner.name + "_counted")


def garnet_core(model):
    """The two-input GarNet model inside the one-input training model."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            return layer
    raise TrigflowError(f"model '{model.name}' holds no inner GarNet model")


# --- stage 3: firmware -------------------------------------------------------------------------------------
class GarNetFirmware:
    """The compiled GarNet project behind the one-input interface: ``predict(x)`` adds ``n_valid(x)``."""

    INPUTS = ("particles", "n_valid")  # the order of the C top function's arguments (build_garnet's inputs)

    def __init__(self, hls_model):
        self.hls_model = hls_model
        # hls4ml's link_existing_project reads the inputs from hls4ml_config.yml, where YAML sorted them by
        # name (n_valid before particles): restore the argument order, or predict() swaps the two arrays.
        linked = getattr(hls_model, "in_vars", None)
        if linked is not None and sorted(v.name for v in linked) == sorted(self.INPUTS):
            hls_model.in_vars = sorted(linked, key=lambda v: self.INPUTS.index(v.name))

    def predict(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        return self.hls_model.predict([x, np.ascontiguousarray(n_valid(x))])

    def __getattr__(self, name):
        return getattr(self.hls_model, name)


def convert(model, project_dir, spec, *, force: bool = False):
    """``firmware.gnn.convert_graph_network`` (GarNet: on the inner two-input model), plus the record of the
    per-layer types in the project."""
    from trigflow.firmware.gnn import convert_graph_network

    garnet = any(hasattr(layer, "layers") for layer in model.layers)  # the wrapped two-input GarNet model
    core = garnet_core(model) if garnet else model
    hls_model, o = convert_graph_network(core, project_dir, spec, force=force)
    record = {
        "converted_model": o["converted_model"],
        "input_type": o["input_type"] or o["layer_precisions"][o["converted_input"]]["result"],
        "layer_precisions": o["layer_precisions"],
        "warnings": o["warnings"],
        "bit_exact_by_construction": True,
    }
    (Path(project_dir) / PRECISION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return GarNetFirmware(hls_model) if garnet else hls_model


# --- report ------------------------------------------------------------------------------------------------
def write_extras(report: dict, outputs: dict, prepared: Prepared, config: RunConfig, out: Path) -> None:
    """ROC plots, and what the firmware is: architecture, graph size, exactness (GarNet: why not)."""
    from trigflow import report as reporting

    reporting.write_plots({**outputs, "labels": prepared.y_test}, prepared.class_names, out)
    arch = arch_of(config)
    n, f = prepared.x_test.shape[1:]
    record_path = config.project_path.resolve() / PRECISION_FILE
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    info: dict[str, Any] = {
        "arch": arch,
        "n_particles": int(n),
        "features": list(FEATURES),
        "edges": int(n * (n - 1)) if arch == "in" else 0,
        "pooling": pooling_for(int(n)) if arch != "garnet" else "garnet mean collapse",
        "widths": {"in": IN_WIDTHS, "deepsets": deepsets_widths(config), "garnet": GARNET_WIDTHS}[arch]
        | {"head": list(config.model.hidden)},
        "input_type": record.get("input_type"),
        "precision_warnings": record.get("warnings", []),
    }
    info["exactness"] = GARNET_EXACTNESS if arch == "garnet" else (
        "bit-exact by construction: rank-3 QDense rewritten to QConv1D(k=1) with its quantizers, "
        "exact fixed-point type for every layer, input type = the input quantizer's type "
        "(trigflow.firmware.gnn)"
    )
    report["gnn"] = info


RECIPE = Recipe(
    kind="gnn", load=load, build=build, prepare=prepare, convert=convert, write_extras=write_extras
)
