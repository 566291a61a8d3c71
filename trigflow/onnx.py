"""Spine layer: ONNX export of Keras/QKeras models and their check in onnxruntime.

tf2onnx traces the QKeras fake-quantisation arithmetic (scale, round, clip) into plain ONNX ops (Mul, Round,
Min/Max, ...), so the exported QKeras model computes the quantized outputs on any ONNX runtime, CPU or GPU:
onnxruntime gives the QKeras numbers (measured max |Δ| 0 on trigflow's models). It is *not* QONNX (no
``Quant`` nodes): it is for inference services, not for hls4ml (see ``docs/onnx.md``).

Every exported file states what it is: ``doc_string`` and ``metadata_props`` (``trigflow.*`` keys: version,
opset, role, source, whether the fake-quant arithmetic is included). Inputs and outputs keep the Keras names
and dtypes; the first dimension is dynamic (``batch``).

``export(source, out)`` is ``trigflow export onnx``: a run folder (its QKeras and float twins, checked on the
run's ``test_data.npz``) or one model file (checked on drawn inputs) → ``.onnx`` files and
``export_report.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError, first_line
from trigflow.fsio import atomic_dir, atomic_file, exclusive, refuse_existing, write_text

OPSET = 13
MIN_OPSET, MAX_OPSET = 13, 18  # tf2onnx 1.17 converts opsets ≤ 18; below 13 it is deprecated
BATCH = "batch"
DEFAULT_MAX_ABS_DIFF = 1e-5  # the run's verify.max_onnx_abs_diff
DEFAULT_EXPORT_SAMPLES = 10_000
MODEL_SUFFIXES = (".h5", ".hdf5", ".keras")
FAKE_QUANT_NOTE = (
    "QKeras fake quantization (scale, round, clip of weights and activations) is included as plain ONNX ops, "
    "so onnxruntime reproduces the QKeras outputs; this is not QONNX (no Quant nodes)"
)


# --- export of one model ------------------------------------------------------------------------------
def is_quantized(model) -> bool:
    """A model with any QKeras layer (its fake-quant arithmetic is what the ONNX graph then computes)."""
    return any(type(layer).__module__.startswith("qkeras") for layer in model.layers)


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise TrigflowError(
            f"--opset {opset}: tf2onnx exports opsets {MIN_OPSET}–{MAX_OPSET}; choose one of those"
        )
    return int(opset)


def export_onnx(
    model,
    path: str | Path,
    *,
    opset: int = OPSET,
    role: str | None = None,
    source: str | None = None,
) -> Path:
    """Write ``model`` as ONNX at ``path``: dynamic batch, Keras input/output names and dtypes, metadata.

    ``role`` (``"qkeras"``/``"float"``, default from the layers) and ``source`` (the Keras file) go to the
    metadata; the file is written atomically.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    opset = check_opset(opset)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    signature = [
        tf.TensorSpec((None, *inp.shape[1:]), inp.dtype, name=name)
        for inp, name in zip(model.inputs, model.input_names, strict=True)
    ]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    except Exception as exc:
        raise TrigflowError(
            f"tf2onnx could not export model '{model.name}' at opset {opset}: {exc.__class__.__name__}: "
            f"{first_line(exc)}"
        ) from None
    quantized = is_quantized(model)
    _name_batch_dimension(proto)
    _describe_in_file(
        proto,
        model,
        opset=opset,
        role=role or ("qkeras" if quantized else "float"),
        quantized=quantized,
        source=source,
    )
    path = Path(path)
    with atomic_file(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def _name_batch_dimension(proto) -> None:
    """tf2onnx names the dynamic first dimension ``unk__N``; call it ``batch`` on every input and output."""
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].dim_value:
            dims[0].dim_param = BATCH


def _describe_in_file(proto, model, *, opset: int, role: str, quantized: bool, source: str | None) -> None:
    import trigflow

    kind = "QKeras (quantization-aware)" if quantized else "float Keras"
    arithmetic = FAKE_QUANT_NOTE if quantized else "float32 arithmetic as in Keras"
    proto.doc_string = (
        f"trigflow {trigflow.__version__}: {kind} model '{model.name}' exported with tf2onnx at opset "
        f"{opset}. "
        f"{arithmetic}. Inputs: {', '.join(v.name for v in proto.graph.input)}; outputs: "
        f"{', '.join(v.name for v in proto.graph.output)}; first dimension dynamic ('{BATCH}')."
    )
    props = {
        "trigflow.version": trigflow.__version__,
        "trigflow.opset": str(opset),
        "trigflow.role": role,
        "trigflow.keras_model": model.name,
        "trigflow.quantized": str(quantized).lower(),
        "trigflow.fake_quant_included": str(quantized).lower(),
        "trigflow.arithmetic": arithmetic,
        "trigflow.batch_dimension": BATCH,
    }
    if source:
        props["trigflow.source"] = str(source)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


# --- running ---------------------------------------------------------------------------------------------
def session(path: str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TrigflowError(f"onnxruntime cannot load {path}: {first_line(exc)}") from None


def feeds(sess, x: Any) -> dict[str, np.ndarray]:
    """Map ``x`` (one array, a list in input order, or a dict by name) to the session's inputs and dtypes."""
    inputs = sess.get_inputs()
    if isinstance(x, dict):
        arrays = [x[i.name] for i in inputs]
    elif isinstance(x, (list, tuple)):
        arrays = list(x)
    else:
        arrays = [x]
    if len(arrays) != len(inputs):
        raise TrigflowError(f"the ONNX model has {len(inputs)} inputs, {len(arrays)} arrays were given")
    return {i.name: np.asarray(a, dtype=_numpy_dtype(i.type)) for i, a in zip(inputs, arrays, strict=True)}


def _numpy_dtype(ort_type: str):
    name = ort_type[len("tensor(") : -1] if ort_type.startswith("tensor(") else "float"
    return {"float": np.float32, "double": np.float64}.get(
        name, np.dtype(name) if name != "bool" else np.bool_
    )


def run_onnx(path: str | Path, x: Any) -> np.ndarray:
    """The first output of the ONNX model at ``path`` for ``x`` (see :func:`feeds`)."""
    sess = session(path)
    return sess.run(None, feeds(sess, x))[0]


def describe(path: str | Path) -> dict[str, Any]:
    """Inputs/outputs (name, shape with ``batch``, dtype), opset and trigflow metadata of an ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)

    def tensors(values) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
            }
            for v in values
        ]

    initializers = {t.name for t in proto.graph.initializer}
    return {
        "inputs": tensors([v for v in proto.graph.input if v.name not in initializers]),
        "outputs": tensors(proto.graph.output),
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }


# --- trigflow export onnx --------------------------------------------------------------------------------
def custom_objects() -> dict[str, Any]:
    """QKeras layers/quantizers (``loaders``' QActivation fix included) and hls4ml's GarNet, for loading."""
    from trigflow.firmware.loaders import custom_objects as qkeras_objects

    objects = qkeras_objects()
    with contextlib.suppress(ImportError):
        from hls4ml.contrib.garnet import GarNet

        objects["GarNet"] = GarNet
    return objects


def load_keras(path: str | Path):
    """A full Keras/QKeras model saved with ``model.save`` (``.h5``/``.keras``), with one-line errors."""
    import tensorflow as tf

    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"model file {path} not found; check the path")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise TrigflowError(
            f"model file {path}: unsupported type '{path.suffix}'; give a Keras/QKeras model saved with "
            "model.save('model.h5') or model.save('model.keras'), or a trigflow run folder"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except Exception as exc:
        raise TrigflowError(
            f"model file {path} cannot be loaded ({exc.__class__.__name__}: {first_line(exc)}); re-save it "
            "with model.save() (full model, not weights only)"
        ) from None


def _run_models(run: Path) -> dict[str, Path]:
    """The twins of a run folder: the deployed models where the kind has them (AE score), else the trained."""
    found = {}
    for role, names in (
        ("qkeras", ("qkeras_deployed.h5", "qkeras_model.h5")),
        ("float", ("float_deployed.h5", "float_model.h5")),
    ):
        path = next((run / n for n in names if (run / n).is_file()), None)
        if path is not None:
            found[role] = path
    if not found:
        raise TrigflowError(
            f"{run} is not a trigflow run folder (no qkeras_model.h5 or float_model.h5); give a run folder "
            "(trigflow run ... --out DIR) or a model file"
        )
    return found


def draw_inputs(model, n: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Inputs for a bare model: float inputs from N(0, 1) (standardised features), integer inputs in 1..16."""
    rng = np.random.default_rng(seed)
    arrays = []
    for inp in model.inputs:
        shape = (n, *inp.shape[1:])
        if inp.dtype.is_integer:
            arrays.append(rng.integers(1, 17, size=shape).astype(inp.dtype.as_numpy_dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays, f"{n} inputs drawn: float inputs N(0, 1), integer inputs uniform in 1..16 (seed {seed})"


def _run_data(run: Path, model, n: int | None) -> tuple[list[np.ndarray], str] | None:
    path = run / "test_data.npz"
    if not path.is_file() or len(model.inputs) != 1:
        return None
    with np.load(path, allow_pickle=False) as f:
        x = f["x"]
    x = x[:n] if n else x
    if tuple(x.shape[1:]) != tuple(model.input_shape[1:]):
        raise TrigflowError(
            f"{path}: inputs of shape {x.shape[1:]}, the model expects {tuple(model.input_shape[1:])}; "
            "the run folder is inconsistent — rerun trigflow run"
        )
    return [np.asarray(x, np.float32)], f"{len(x)} test samples of the run ({path}, on the input grid)"


def max_abs_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise TrigflowError(f"ONNX and Keras outputs differ in shape: {a.shape} vs {b.shape}")
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    diff = np.abs(a - b)
    return float(np.nanmax(diff)) if diff.size else 0.0


def export(
    source: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = OPSET,
    n: int | None = None,
    force: bool = False,
    max_abs_diff_allowed: float = DEFAULT_MAX_ABS_DIFF,
    seed: int = 0,
) -> dict[str, Any]:
    """``trigflow export onnx``: write the ONNX files and ``export_report.json`` into ``out``; return it.

    ``source``: a run folder (both twins, checked on ``test_data.npz``) or one ``.h5``/``.keras`` model file
    (checked on drawn inputs). ``out`` defaults to ``<run>/onnx`` or ``<model stem>_onnx`` beside the model.
    """
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    opset = check_opset(opset)
    if n is not None and n < 1:
        raise TrigflowError(f"--n {n}: give a positive number of samples")
    source = Path(source)
    if not source.exists():
        raise TrigflowError(f"{source} not found; give a trigflow run folder or a Keras/QKeras model file")
    if source.is_dir():
        out = Path(out) if out is not None else source / "onnx"
    else:
        out = Path(out) if out is not None else source.with_name(f"{source.stem}_onnx")
    out = out.resolve()
    with exclusive(out):
        refuse_existing(out, force, "export folder")
        return _export(source, out, opset, n, force, max_abs_diff_allowed, seed)


def _export(source: Path, out: Path, opset: int, n, force: bool, allowed: float, seed: int) -> dict[str, Any]:
    from trigflow.proof.checks import versions

    timings: dict[str, float] = {}
    start = time.perf_counter()
    if source.is_dir():
        files = _run_models(source)
    else:
        probe = load_keras(source)
        files = {"qkeras" if is_quantized(probe) else "float": source}
    timings["load"] = time.perf_counter() - start
    models: dict[str, dict[str, Any]] = {}
    data_note = None
    with atomic_dir(out, force=force) as tmp:
        for role, path in files.items():
            t0 = time.perf_counter()
            model = load_keras(path)
            data = _run_data(source, model, n) if source.is_dir() else None
            x, note = data or draw_inputs(model, n or DEFAULT_EXPORT_SAMPLES, seed)
            data_note = data_note or note
            name = f"{role}_model.onnx" if source.is_dir() else f"{path.stem}.onnx"
            export_onnx(model, tmp / name, opset=opset, role=role, source=str(path.resolve()))
            y_keras = model.predict(x if len(x) > 1 else x[0], batch_size=4096, verbose=0)
            y_onnx = run_onnx(tmp / name, x)
            info = describe(tmp / name)
            models[role] = {
                "keras": str(path.resolve()),
                "onnx": str(out / name),
                "quantized": is_quantized(model),
                "fake_quant_included": is_quantized(model),
                "inputs": info["inputs"],
                "outputs": info["outputs"],
                "samples": int(len(x[0])),
                "data": note,
                "max_abs_diff_vs_keras": max_abs_diff(y_onnx, y_keras),
                "output_scale": max(1.0, float(np.max(np.abs(y_keras), initial=0.0))),
            }
            timings[f"export + check {role}"] = time.perf_counter() - t0
        worst = max(m["max_abs_diff_vs_keras"] for m in models.values())
        checks = {
            f"onnx_parity_{role}": {
                "passed": bool(m["max_abs_diff_vs_keras"] <= allowed * m["output_scale"]),
                "detail": f"{role}: onnxruntime vs Keras max |Δ| {m['max_abs_diff_vs_keras']:.3g} "
                f"(need ≤ {allowed:g}"
                + (f" × max |output| {m['output_scale']:.3g}" if m["output_scale"] > 1 else "")
                + ")",
            }
            for role, m in models.items()
        }
        failures = [c["detail"] for c in checks.values() if not c["passed"]]
        report = {
            "kind": "export_onnx",
            "source": str(source.resolve()),
            "out_dir": str(out),
            "opset": opset,
            "dynamic_batch": BATCH,
            "fake_quant": FAKE_QUANT_NOTE,
            "models": models,
            "samples": min(m["samples"] for m in models.values()),
            "data": data_note,
            "onnx_max_abs_diff": worst,
            "thresholds": {
                "max_onnx_abs_diff": allowed,
                "rule": "max |Δ| ≤ max_onnx_abs_diff × max(1, max |Keras output|)",
            },
            "checks": checks,
            "passed": not failures,
            "failures": failures,
            "versions": versions(),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }

        write_text(tmp / "export_report.json", json.dumps(report, indent=2) + "\n")
    return report


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("opset", str(report["opset"])), ("samples", f"{report['samples']:,}")]
    for role, m in report["models"].items():
        names = ", ".join(i["name"] for i in m["inputs"]) + " → " + ", ".join(o["name"] for o in m["outputs"])
        rows.append((f"{role}: {Path(m['onnx']).name}", names))
        rows.append((f"{role}: max |Δ| onnxruntime vs Keras", f"{m['max_abs_diff_vs_keras']:.3g}"))
    rows.append(("folder", report["out_dir"]))
    return rows
