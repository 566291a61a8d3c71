"""Spine layer: ``trigflow verify MODEL`` — prove the firmware of any user Keras/QKeras model.

The starting point is a model file instead of training; the rest is the run's proof and report:

load model (``firmware.loaders``) → inputs (a data file, or drawn over the input range) → a bit-exact
configuration (``firmware.autoconfig``) → hls4ml project + C-sim → outputs of firmware, model, float model,
ONNX (``driver.simulate``) → proof and thresholds (``proof.checks``, judged by ``driver.drive``) → where they
part (``proof.localize``, only when some sample differs) → overflow per layer (``proof.overflow``) →
report.json + junit.xml + plots (``report``).

Inputs drawn without a data file: uniform over the input quantizer's range (2 % beyond each end, plus the
all-min, zero and all-max samples); a model without an input quantizer gets the default input format
``fixed<16,6,RND_CONV,SAT>`` (hls4ml's default width; ``quantized_bits(16, 5)``) and inputs on its grid.

With a data file the proof is against the user's model on the data *as given*: a model without an input
quantizer gets an input grid chosen from the data (``firmware.autoconfig``: their own grid, or one covering
their range, fine enough that the model's logits do not change), and ``model_on_raw_data`` compares the
model on the raw data with the reference the firmware is compared with. ``lossless_inputs`` fails when the
grid clips or changes the model (beyond rounding-boundary cases after a float layer, ≤ 0.1 %); any
saturation is named in ``verdict_note`` (printed on the verdict line). A quantized model with a float layer
(e.g. BatchNormalization on raw inputs) is held to ≥ 99.9 % bit-exact, the float layer named in the detail.

For a model ending in softmax/sigmoid the bits are compared on the logits (``bit_exact_fraction``); the
probabilities and decisions are compared apart (``head``). A float model has no bit-exact reference: its
firmware types come from profiling, the ``bit_exact`` criterion is replaced by ``float_agreement``
(max |Δ| ≤ ``max_float_rel_diff`` × max(1, max |output|)) and the difference is reported.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.driver import Evidence, RunResult, drive
from trigflow.ui import StageUI

DEFAULT_SAMPLES = 10_000
VERIFY_DEFAULTS: dict[str, Any] = {"verify": {"min_samples": 1000}}
DEFAULT_FLOAT_REL_DIFF = 0.01
X_KEYS = ("x", "X", "x_test", "X_test", "inputs", "features", "hlf", "data")
Y_KEYS = ("y", "Y", "y_test", "labels", "label", "targets")


def verify_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Run configuration for verify: verify defaults (``min_samples`` 1000), then the file, then overrides."""
    from trigflow.config import _read_file, load_config

    merged = _merge(VERIFY_DEFAULTS, _read_file(Path(path)) if path is not None else {})
    merged = _merge(merged, overrides or {})
    merged.pop("kind", None)
    merged.pop("LayerName", None)  # hls4ml-style per-layer keys: ``layer_config``
    return load_config("mlp", None, merged)


HLS4ML_PRECISION_KEYS = ("result", "weight", "bias", "accum")


def layer_config(path: str | Path | None) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    """``(layer_precisions, layer_reuse)`` from the hls4ml-style ``LayerName`` section of a config file:
    ``LayerName: {name: {Precision: "fixed<16,6>" | {result: ..., weight: ..., ...}, ReuseFactor: n}}`` —
    applied on top of the chosen bit-exact configuration."""
    from trigflow.config import _read_file

    if path is None:
        return {}, {}
    section = _read_file(Path(path)).get("LayerName") or {}
    if not isinstance(section, dict):
        raise TrigflowError(
            f"config file {path}: LayerName must map layer names to {{Precision, ReuseFactor}}"
        )
    precisions: dict[str, dict[str, str]] = {}
    reuse: dict[str, int] = {}
    for name, entry in section.items():
        unknown = sorted(set(entry or {}) - {"Precision", "ReuseFactor"}) if isinstance(entry, dict) else None
        if unknown is None or unknown:
            raise TrigflowError(
                f"config file {path}: LayerName.{name} has {unknown or entry!r}; give Precision and/or "
                "ReuseFactor"
            )
        precision = entry.get("Precision")
        if isinstance(precision, str):
            precisions[str(name)] = {"result": precision}
        elif isinstance(precision, dict):
            bad = sorted(set(precision) - set(HLS4ML_PRECISION_KEYS))
            if bad:
                raise TrigflowError(
                    f"config file {path}: LayerName.{name}.Precision has {', '.join(bad)}; use "
                    f"{', '.join(HLS4ML_PRECISION_KEYS)}"
                )
            precisions[str(name)] = {k: str(v) for k, v in precision.items()}
        if "ReuseFactor" in entry:
            reuse[str(name)] = int(entry["ReuseFactor"])
    return precisions, reuse


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


# --- inputs -------------------------------------------------------------------------------------------------
RESHAPE_HELP = (
    "flattened <-> (N, F) when the sizes match (C order); (P, F) constituents -> the model's N, F: sorted by "
    "the first feature (pT) highest first, then truncated or zero-padded"
)


def load_data(
    path: str | Path, shape: tuple[int, ...], n: int | None = None, reshape: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs (and labels if present) from ``.npy``, ``.npz`` or ``.h5``, of the model input's shape
    (``reshape``: the documented reshape rule of ``fit_shape``)."""
    x, y, _ = read_data(path, n)
    return fit_shape(x, shape, reshape, f"data file {path}")[0], y


PUBLIC_JETS_KEY = "jetConstituentList"  # a public hls4ml jet .h5 file (Zenodo 3602260)
FEATURE_NAME_KEYS = ("particleFeatureNames", "feature_names")  # named constituent features in an .npz


def read_data(
    path: str | Path, n: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """``(x, y, public format)``: inputs (float32, as stored) and labels (class ids for one-hot rows) from .npy,
    .npz or .h5. The public formats ``trigflow evaluate`` reads are read the same way
    (``trigflow.data.public``): a hls4ml jet .h5 file (``jetConstituentList``) gives its constituents as
    (pT, η_rel, φ_rel) and its labels, an .npz with ``particleFeatureNames`` its (pT, η_rel, φ_rel) columns;
    the third value names the format (None for plain arrays)."""
    from trigflow.data.prepare import check_finite

    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"data file {path} not found; check the path given to --data")
    suffix = path.suffix.lower()
    y, public = None, None
    try:
        if suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = dict(f)
            names = next((arrays.pop(k) for k in FEATURE_NAME_KEYS if k in arrays), None)
            x, y = _pick(arrays, path)
            if names is not None and x.ndim == 3:
                from trigflow.data.public import raw_constituents

                x = raw_constituents(x, [str(v) for v in names.tolist()])
                public = "npz with named constituent features: (pT, eta_rel, phi_rel) columns"
        elif suffix in (".h5", ".hdf5"):
            from trigflow.data.h5 import open_h5

            with open_h5(path) as f:
                public = "hls4ml jet h5: constituents as (pT, eta_rel, phi_rel)"
                if PUBLIC_JETS_KEY not in f:
                    public = None
                if public is None:
                    arrays = {k: f[k] for k in f.keys() if hasattr(f[k], "shape")}
                    x, y = _pick(arrays, path, n)
            if public is not None:
                from trigflow.data.public import load_hls4ml_jets_h5, raw_constituents

                jets = load_hls4ml_jets_h5(path, max_jets=n)
                x = raw_constituents(jets.constituents, jets.constituent_features or None)
                y = np.asarray(jets.label)
        else:
            raise TrigflowError(f"data file {path}: unsupported type '{path.suffix}'; give .h5, .npy or .npz")
    except TrigflowError:
        raise
    except (OSError, ValueError) as exc:
        raise TrigflowError(
            f"data file {path} cannot be read ({exc.__class__.__name__}); regenerate it"
        ) from None
    x = np.asarray(x[:n] if n else x, dtype=np.float32)
    if y is not None:
        y = np.asarray(y[:n] if n else y)
        if y.ndim == 2 and y.shape[1] > 1:
            y = np.argmax(y, axis=1)  # one-hot labels
        y = y.reshape(len(y))
        if len(y) != len(x):
            raise TrigflowError(f"data file {path}: {len(x)} inputs but {len(y)} labels")
    if x.ndim < 1 or len(x) == 0:
        raise TrigflowError(f"data file {path}: no samples (shape {x.shape}); give an array of samples")
    check_finite(x, f"data file {path}")
    return x, y, public


def fit_shape(
    x: np.ndarray, shape: tuple[int, ...], reshape: bool, where: str
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """``(x, what was done)``: ``x`` as the model input ``shape`` per sample. Data of another shape is refused
    in one line naming both shapes and the fix, unless ``reshape`` and one of the two unambiguous rules
    applies (``RESHAPE_HELP``):

    * **flatten** — the same number of values per sample (``(N, F)`` ↔ ``(N·F,)``, any ranks): a C-order
      reshape;
    * **constituents** — the model takes ``(N, F)`` (or ``N·F`` flattened values with the data giving F) and
      the data hold ``(P, F)`` per sample (or ``P·F`` flattened values, with the model giving F): rows sorted
      by the first feature (pT) highest first, the first N kept or zero rows appended
      (``trigflow.data.public.leading_constituents``, the rule of ``trigflow evaluate``), then shaped as the
      model input.

    The second value is None when nothing was done, else the record for the report (``data.reshape``)."""
    from trigflow.data.public import leading_constituents

    given, shape = tuple(int(d) for d in x.shape[1:]), tuple(int(d) for d in shape)
    if given == shape:
        return x, None
    size, want = int(np.prod(given)), int(np.prod(shape))
    rows = _constituent_view(given, shape)
    if not reshape:
        if size == want:
            fix = "pass --reshape (reshape=True) to flatten/unflatten them in C order"
        elif rows is not None:
            fix = (
                f"pass --reshape (reshape=True) to sort the rows by pT and truncate or zero-pad to {rows[1][0]}"
            )
        else:
            fix = "give inputs of that shape (or the model they belong to)"
        raise TrigflowError(
            f"{where}: inputs of shape {given} per sample, the model expects {shape}; {fix}"
            + ("" if "give inputs" in fix else "; or give inputs of that shape")
        )
    record: dict[str, Any] = {"from": list(given), "to": list(shape)}
    if size == want:
        return x.reshape((len(x), *shape)), {**record, "rule": "flatten", "order": "C"}
    if rows is None:
        raise TrigflowError(
            f"{where}: inputs of shape {given} per sample, the model expects {shape}; no reshape rule "
            f"applies (--reshape: {RESHAPE_HELP}); give inputs of that shape"
        )
    (supplied, features), (target, _) = rows
    parts = x.reshape(len(x), supplied, features)
    real = np.sum(parts[..., 0] > 0, axis=1)
    top = leading_constituents(parts, target)
    return top.reshape((len(x), *shape)), {
        **record,
        "rule": "constituents",
        "constituents_supplied": supplied,
        "constituents_expected": target,
        "features": features,
        "order": "sorted by the first feature (pT), highest first",
        "samples_truncated": int(np.sum(real > target)),
        "samples_zero_padded": int(np.sum(real < target)),
    }


def _constituent_view(
    given: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((P, F), (N, F))`` when data and model are both constituent lists of the same F (one of them may be
    flattened; F comes from the one that is not), else None."""
    size, want = int(np.prod(given)), int(np.prod(shape))
    if len(shape) == 2:
        features = shape[1]
    elif len(given) == 2 and len(shape) == 1:
        features = given[1]
    else:
        return None
    if len(given) == 2 and given[1] != features or features < 1 or size % features or want % features:
        return None
    supplied, target = size // features, want // features
    if supplied == target:
        return None
    return (supplied, features), (target, features)


def _pick(arrays: dict[str, Any], path: Path, n: int | None = None) -> tuple[Any, Any]:
    xk = next((k for k in X_KEYS if k in arrays), None)
    if xk is None:
        candidates = [k for k, v in arrays.items() if len(v.shape) >= 2]
        if len(candidates) != 1:
            raise TrigflowError(
                f"data file {path}: no input array found; name it one of {', '.join(X_KEYS[:4])} (found: "
                f"{', '.join(arrays) or 'nothing'})"
            )
        xk = candidates[0]
    yk = next((k for k in Y_KEYS if k in arrays), None)
    x = arrays[xk][:n] if n else arrays[xk][()]
    y = None if yk is None else (arrays[yk][:n] if n else arrays[yk][()])
    return np.asarray(x), None if y is None else np.asarray(y)


def draw_inputs(model, n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Inputs spanning the quantized input range (the input quantizer's, else the default format)."""
    from trigflow.firmware.autoconfig import default_format, leading_input_format, rebuild, sample_inputs

    own = leading_input_format(rebuild(model, "reference")[0])
    fmt = own or default_format()
    x = sample_inputs(fmt.type, tuple(model.input_shape[1:]), n, seed, on_grid=own is None)
    where = (
        f"the input quantizer {fmt.describe()['quantizer']}"
        if own
        else f"the default input format {fmt.type}"
    )
    return x, f"{n} inputs drawn uniformly over the range of {where} (seed {seed})"


# --- the verification ---------------------------------------------------------------------------------------
def _head(logits: np.ndarray, head: str | None) -> np.ndarray:
    from trigflow.proof.compare import softmax

    if head == "softmax":
        return softmax(logits)
    if head == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def _decisions(values: np.ndarray, head: str | None) -> np.ndarray:
    """Class decisions: argmax over several outputs; a threshold for one output or sigmoid (multi-label)."""
    if head == "sigmoid":
        return (values > 0.5).astype(int)
    if values.shape[1] == 1:
        return (values > 0.0).astype(int)
    return np.argmax(values, axis=1)


def head_metrics(outputs: dict[str, np.ndarray], y_full: np.ndarray, head: str | None) -> dict[str, Any]:
    """Probabilities and decisions of the firmware (head applied in Python) vs the user's full model."""
    from trigflow.proof.compare import max_abs_diff

    p_fw = _head(outputs["firmware"], head)
    y_full = y_full.reshape(len(y_full), -1).astype(np.float64)
    return {
        "activation": head,
        "max_abs_diff_vs_model": max_abs_diff(p_fw, y_full),
        "decision_agreement_vs_model": _agreement(_decisions(p_fw, head), _decisions(y_full, head)),
        "decision": "p > 0.5 per output" if head == "sigmoid" else "argmax",
    }


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose decisions (all outputs of a sample) agree."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(np.all(a == b, axis=1)))


def accuracy(outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Accuracy of each implementation: argmax of the logits (one output: logit > 0) against the labels."""
    return {
        name: _agreement(_decisions(outputs[name], None), labels.reshape(len(labels), -1))
        for name in ("float", "qkeras", "firmware")
    }


def verify_model(
    model_path: str | Path,
    config: RunConfig | None = None,
    *,
    weights: str | Path | None = None,
    data: str | Path | None = None,
    n: int | None = None,
    layer_precisions: dict[str, dict[str, str]] | None = None,
    max_float_rel_diff: float = DEFAULT_FLOAT_REL_DIFF,
    ui: StageUI | None = None,
    custom_objects: list[str] | tuple[str, ...] = (),
    layer_reuse: dict[str, int] | None = None,
    reshape: bool = False,
) -> RunResult:
    """Verify the firmware of the model at ``model_path``; write the report; return it with the failures."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)  # Keras retracing notices are noise here
    config = config or verify_config()
    if n is not None and n < 1:
        raise TrigflowError(f"--n {n}: give a positive number of samples")
    start = ModelFile(
        Path(model_path), config, weights, data, n, layer_precisions or {}, max_float_rel_diff,
        custom_objects=tuple(custom_objects), layer_reuse=dict(layer_reuse or {}), reshape=reshape,
    )
    return drive(start, ui)


@dataclass
class ModelFile:
    """A user's Keras/QKeras model file as a starting point: a bit-exact configuration, its firmware, and the
    outputs of every implementation (plus head, accuracy, localisation and overflow sections)."""

    model_path: Path
    config: RunConfig
    weights: str | Path | None
    data: str | Path | None
    n: int | None
    layer_precisions: dict[str, dict[str, str]]
    max_float_rel_diff: float
    custom_objects: tuple[str, ...] = ()  # module:Class of the user's own layers
    layer_reuse: dict[str, int] | None = None  # per-layer ReuseFactor (hls4ml LayerName keys)
    reshape: bool = False  # fit data of another shape by the rule of ``fit_shape`` (--reshape)
    kind: str = "verify"
    out_label: str = "report folder"

    def __post_init__(self) -> None:
        self.out_dir = Path(self.config.out or "runs/verify").resolve()
        self.project = Path(self.config.project_dir or "hls_projects/verify").resolve()
        self.force = self.config.force
        self._plot: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self._rtl: tuple[Any, dict[str, np.ndarray]] | None = None

    def build(self, tmp: Path, ui: StageUI) -> Evidence:
        from trigflow.driver import simulate
        from trigflow.firmware.autoconfig import choose_configuration, firmware_types
        from trigflow.firmware.convert import FirmwareSpec
        from trigflow.firmware.fallback import compile_firmware
        from trigflow.firmware.loaders import load_model
        from trigflow.firmware.recurrent_verify import mirror_recurrent
        from trigflow.proof.checks import float_scale, prove
        from trigflow.proof.checks import FLOAT_LAYER_FLOOR
        from trigflow.proof.reference import exact_predict
        from trigflow.proof.overflow import overflow_report, plot_ranges, saturation_summary
        from trigflow.quantize.train import Trained

        from trigflow.verify_garnet import build_garnet_evidence, garnet_inputs, has_garnet

        config, model_path, weights, data, n = self.config, self.model_path, self.weights, self.data, self.n
        with ui.stage("load model + inputs"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras/QKeras serialisation notices
            model = load_model(model_path, weights, self.custom_objects)
            garnet = garnet_inputs(self, model) if has_garnet(model) else None
            reshaped, public = None, None
            if garnet is None and data is not None:
                x, labels, public = read_data(data, n)  # the user's raw data: what the proof is against
                x, reshaped = fit_shape(x, tuple(model.input_shape[1:]), self.reshape, f"data file {data}")
                source = str(Path(data).resolve())
            elif garnet is None:
                x, source = draw_inputs(model, n or DEFAULT_SAMPLES, config.seed)
                labels = None
        if garnet is not None:  # hls4ml's float GarNet: proven against trigflow's mirror of its firmware
            return build_garnet_evidence(self, model, garnet, ui)
        with ui.stage("choose configuration"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = FirmwareSpec.from_config(
                config.firmware, layer_precisions=self.layer_precisions, layer_reuse=self.layer_reuse or {}
            )
            dep = choose_configuration(model, x, base, predict=exact_predict)
            dep, recurrent = mirror_recurrent(dep)  # QGRU/QLSTM: proven through the firmware's tables
        if config.firmware.rtl and (not dep.quantized or dep.float_layers):  # refused before any firmware
            what = f"float layer {', '.join(dep.float_layers)}" if dep.quantized else "a float model"
            raise TrigflowError(
                f"firmware.rtl needs a fully quantized (QKeras) model: {what} has no exact RTL; quantize it, or "
                "verify without firmware.rtl"
            )
        with ui.stage("hls4ml convert"):
            hls_model, dep, conversion = _convert(dep, self.project, self.force)
        with ui.stage("g++ compile"):
            compile_firmware(hls_model)
        with ui.stage("resource/latency estimate"):
            cost = _cost(hls_model)
        trained = Trained(qmodel=dep.reference, float_model=dep.float_model)
        outputs = simulate(trained, hls_model, dep.x, ui, tmp)
        proof = prove(outputs)
        if config.firmware.rtl:  # after a passed proof, ``finish`` proves the RTL of the same reference
            self._rtl = (dep, {k: outputs[k] for k in ("reference", "qkeras", "float")})
        sections: dict[str, Any] = dict(proof)
        if dep.head:
            sections["head"] = head_metrics(
                outputs, dep.full.predict(dep.x, batch_size=4096, verbose=0), dep.head
            )
        classes = labels is not None and bool(np.all(labels == np.round(labels))) and labels.min() >= 0
        with ui.stage("model on the raw data"):
            raw = model_on_raw_data(dep, x, outputs, labels if classes else None)
        sections["model_on_raw_data"] = raw
        sections["argmax_agreement"] = raw.pop("argmax_agreement")
        if classes:  # class ids (regression targets get no accuracy)
            sections["accuracy"] = {**accuracy(outputs, labels), "model_on_raw_data": raw["accuracy"]}
            if outputs["firmware"].shape[1] > 1:
                self._plot = (outputs, labels)
        with ui.stage("localise"):  # only when some sample differs
            sections["localization"] = _localization(dep, proof, outputs, tmp)
        with ui.stage("overflow"):
            overflow = overflow_report(dep, hls_model, dep.x, raw_x=x)
            plot_ranges(overflow, tmp / "ranges.png")
        sections.update(
            verdict_note=saturation_summary(overflow),
            overflow=overflow,
            warnings=list(overflow["warnings"]),
            model={
                "path": str(model_path.resolve()),
                "weights": str(Path(weights).resolve()) if weights else None,
                "class": model.__class__.__name__,
                "quantized": dep.quantized,
                "layers": len(model.layers),
                "parameters": int(model.count_params()),
            },
            data={
                "source": source, "samples": int(len(dep.x)), "labels": labels is not None,
                "reshape": reshaped,  # what verify did to the data's shape (--reshape), None: nothing
                "format": public,  # a public format read as trigflow evaluate does, None: plain arrays
            },
            parameters=int(dep.reference.count_params()),
            configuration={
                **dep.describe(), "conversion": conversion, "firmware_types": firmware_types(hls_model)
            },
            **cost,
        )
        limits = _limits(config, self.max_float_rel_diff, dep)
        options: dict[str, Any] = {"quantized": dep.quantized, "scale": float_scale(outputs["float"])}
        if dep.quantized:
            options["lossless"] = raw
        if dep.float_layers:
            options["versus"] = (
                f" (float layer {', '.join(dep.float_layers)}: rounding-boundary differences allowed to "
                f"{100 * (1 - FLOAT_LAYER_FLOOR):.1f} %)"
            )
        if recurrent is not None:  # the user's model beside firmware and mirror; named on the verdict line
            recurrent.update(sections, options, hls_model, outputs, x, labels if classes else None)
        return Evidence(
            sections=sections,
            proof=proof,
            limits=limits,
            firmware={
                k: v for k, v in dep.spec.__dict__.items() if k not in ("layer_precisions", "layer_reuse")
            },
            thresholds={
                **config.verify.__dict__,
                "min_bit_exact_fraction": limits.min_bit_exact_fraction,
                "max_float_rel_diff": self.max_float_rel_diff,
            },
            check_options=options,
        )

    def finish(self, report: dict[str, Any], tmp: Path, ui: StageUI) -> None:
        from trigflow import report as reporting

        if self._plot is not None:
            outputs, labels = self._plot
            names = tuple(str(k) for k in range(outputs["firmware"].shape[1]))
            with ui.stage("plots"):
                reporting.write_plots({**outputs, "labels": labels.astype(int)}, names, tmp)
        for warning in report["warnings"]:
            if not ui.quiet:
                ui.console.print(f"[yellow]warning[/yellow] {warning}", highlight=False)
        if self._rtl is not None and report["passed"]:
            self._prove_rtl(report, tmp, ui)

    def _prove_rtl(self, report: dict[str, Any], tmp: Path, ui: StageUI) -> None:
        """``firmware.rtl``: the reference the firmware equals, traced into Verilog in ``<project>/rtl`` and
        proven by Verilator on the same inputs (``rtl_report.json``); its failures join the verdict."""
        from trigflow.fsio import write_text
        from trigflow.quantize.fixed import FixedType
        from trigflow.rtl_run import RTL_REPORT, prove_rtl_of

        assert self._rtl is not None
        dep, outputs = self._rtl
        t = FixedType.parse(str(dep.spec.input_type))
        x_word = np.asarray(t.cast(np.asarray(dep.x, np.float64)))  # the input word, as the HLS input converts it
        rtl = {"kind": "verify", "run_dir": str(self.out_dir), **prove_rtl_of(
            dep.reference, outputs, x_word, (int(t.signed), t.integer - int(t.signed), t.frac),
            self.project / "rtl", firmware=report["firmware"], thresholds=report["thresholds"], force=self.force,
            ui=ui,
        )}
        write_text(tmp / RTL_REPORT, json.dumps(rtl, indent=2, default=float))
        report["failures"] += rtl["failures"]
        report["passed"] = not report["failures"]


def _limits(config: RunConfig, max_float_rel_diff: float, dep) -> Any:
    """The thresholds; a quantized model with a float layer feeding a quantizer is held to the bit-exact
    floor for such models (rounding-boundary cases, named in the bit_exact detail) unless set lower."""
    from trigflow.proof.checks import FLOAT_LAYER_FLOOR, Thresholds

    limits = Thresholds(**config.verify.__dict__, max_float_rel_diff=max_float_rel_diff)
    if dep.quantized and dep.float_layers and limits.min_bit_exact_fraction > FLOAT_LAYER_FLOOR:
        limits = Thresholds(**{**limits.__dict__, "min_bit_exact_fraction": FLOAT_LAYER_FLOOR})
    return limits


def model_on_raw_data(
    dep, x_raw: np.ndarray, outputs: dict[str, np.ndarray], labels: np.ndarray | None
) -> dict[str, Any]:
    """The user's model on the data *as given* next to the reference the firmware is compared with (the
    model on the inputs the engine put on its input grid): how many samples the grid changed or clipped,
    accuracy (with labels) and argmax agreement of the firmware with the model on the raw data."""
    from trigflow.proof.reference import exact_predict

    x_raw = np.asarray(x_raw, np.float32)
    n = len(x_raw)
    if dep.x.shape == x_raw.shape and np.array_equal(dep.x, x_raw):  # no grid applied: the same computation
        y_raw = outputs["reference"].reshape(n, -1)
    else:
        y_raw = exact_predict(dep.reference, x_raw).reshape(n, -1)
    reference, firmware = outputs["reference"].reshape(n, -1), outputs["firmware"].reshape(n, -1)
    changed = np.any(y_raw != reference, axis=1)
    fmt = dep.input_format
    flat = x_raw.reshape(n, -1).astype(np.float64)
    if fmt is not None:
        clipped = (flat < fmt.type.lo) | (flat > fmt.type.hi)
        input_type, engine_grid = str(fmt.type), not fmt.source.startswith("quantizer")
    else:
        clipped, input_type, engine_grid = np.zeros(flat.shape, bool), str(dep.spec.input_type), True
    decisions = {name: _decisions(v, None) for name, v in (("raw", y_raw), ("fw", firmware))}
    out: dict[str, Any] = {
        "samples": int(n),
        "changed_samples": int(changed.sum()),
        "changed_fraction": float(changed.mean()) if n else 0.0,
        "max_abs_diff_vs_reference": float(np.max(np.abs(y_raw - reference), initial=0.0)),
        "firmware_bit_exact_fraction": float(np.mean(np.all(firmware == y_raw, axis=1))) if n else 0.0,
        "input_type": input_type,
        "input_grid_by": "engine" if engine_grid else "model",
        "observed": [float(flat.min(initial=0.0)), float(flat.max(initial=0.0))],
        "input_saturated_samples": int(np.any(clipped, axis=1).sum()) if engine_grid else 0,
        "input_saturated_values": int(clipped.sum()) if engine_grid else 0,
        "float_layers": list(dep.float_layers),
        "accuracy": None,
        "argmax_agreement": {
            "firmware_vs_model_on_raw_data": _agreement(decisions["fw"], decisions["raw"]),
            "firmware_vs_reference": _agreement(decisions["fw"], _decisions(reference, None)),
            "firmware_vs_float": _agreement(
                decisions["fw"], _decisions(outputs["float"].reshape(n, -1), None)
            ),
        },
    }
    if labels is not None:
        out["accuracy"] = _agreement(decisions["raw"], labels.reshape(n, -1))
    return out


def _convert(dep, project: Path, force: bool):
    """``(hls_model, dep, conversion)``: the firmware through the fallback chain (``firmware.fallback``): the
    bit-exact flow, else graph rewrites, else explicit per-layer types; ``dep`` is what was built. Not yet
    compiled (``compile_firmware``: timed as its own stage)."""
    from trigflow.firmware.fallback import build_with_fallback

    return build_with_fallback(dep, project, force=force, compile=False)


def _cost(hls_model) -> dict[str, Any]:
    """The run's resource/latency keys; an estimate that fails does not stop the proof."""
    from trigflow.driver import firmware_cost

    try:
        return firmware_cost(hls_model)
    except Exception as exc:  # the estimator is an add-on to the proof, not part of it
        return {"resources": None, "estimate_error": f"{exc.__class__.__name__}: {exc}"}


def _localization(dep, proof: dict[str, Any], outputs: dict[str, np.ndarray], tmp: Path) -> dict[str, Any]:
    from trigflow.proof.localize import localize
    from trigflow.proof.compare import compare_bits

    if proof["mismatched_samples"] == 0:
        return {
            "first_differing_layer": None,
            "summary": "firmware bit-exact on every sample; nothing to localise",
        }
    if not dep.quantized:
        return {
            "first_differing_layer": None,
            "summary": "float model: every layer rounds to its profiled type (expected); see overflow",
        }
    mismatched = compare_bits(outputs["reference"], outputs["firmware"]).mismatched
    return localize(dep, dep.x[mismatched], workdir=tmp)
