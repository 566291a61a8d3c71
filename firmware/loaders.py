"""Firmware layer: loading a user's Keras/QKeras model from disk, with one-line errors a user can act on.

Accepted: a full model saved by Keras (``model.save("m.h5")`` or ``model.save("m.keras")``), or an
architecture ``.json`` (``model.to_json()``) with its weights ``.h5`` (``model.save_weights("w.h5")``);
Sequential or functional; QKeras layers and quantizers are registered as custom objects. The model is
loaded without its training configuration (``compile=False``). After loading, every layer is checked
against what ``trigflow verify`` can convert: an unsupported layer is named, with what to use instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError, first_line

SUFFIXES = (".h5", ".hdf5", ".keras", ".json")

# Keras merge layers (elementwise or concatenation of several inputs); hls4ml's Merge layer.
MERGE_LAYERS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")

# Layer classes trigflow verify converts (hls4ml 1.3 + trigflow's rewrite in ``autoconfig``).
SUPPORTED_LAYERS = (
    "InputLayer",
    "Dense",
    "QDense",
    "Conv1D",
    "Conv2D",
    "QConv1D",
    "QConv2D",
    "DepthwiseConv2D",
    "QDepthwiseConv2D",
    "Activation",
    "QActivation",
    "ReLU",
    "LeakyReLU",
    "Softmax",
    "BatchNormalization",
    "QBatchNormalization",
    "Flatten",
    "Reshape",
    "Permute",
    "Dropout",
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    *MERGE_LAYERS,
)

# What to use instead, for layers people commonly reach for.
_RNN = "a Conv1D/Dense network over the sequence (recurrent layers are not bit-exact in hls4ml 1.3)"
_QRNN = "a QConv1D/QDense network over the sequence (recurrent layers are not bit-exact in hls4ml 1.3)"
INSTEAD = {
    "Lambda": "built-in layers (Activation, Reshape, Add, ...) — arbitrary Python cannot become firmware",
    "LSTM": _RNN,
    "GRU": _RNN,
    "SimpleRNN": _RNN,
    "QLSTM": _QRNN,
    "QGRU": _QRNN,
    "QSimpleRNN": _QRNN,
    "SeparableConv1D": "DepthwiseConv + pointwise Conv1D(kernel_size=1)",
    "SeparableConv2D": "DepthwiseConv2D followed by Conv2D(kernel_size=1)",
    "QSeparableConv1D": "QDepthwiseConv followed by QConv1D(kernel_size=1)",
    "QSeparableConv2D": "QDepthwiseConv2D followed by QConv2D(kernel_size=1)",
    "QConv2DBatchnorm": "QConv2D followed by BatchNormalization (hls4ml fuses them)",
    "QDepthwiseConv2DBatchnorm": "QDepthwiseConv2D followed by BatchNormalization",
    "Embedding": "a one-hot input and a Dense layer",
    "LayerNormalization": "BatchNormalization (folded into the preceding layer in firmware)",
    "TimeDistributed": "Conv1D(kernel_size=1) or Dense on the (steps, features) tensor",
    "UpSampling2D": "Conv2DTranspose-free designs, or UpSampling done outside the firmware",
    "GaussianNoise": "nothing — remove training-only noise layers before saving",
}


def custom_objects() -> dict[str, Any]:
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    objects["QActivation"] = _qactivation_class()
    return objects


_QACTIVATION: list[Any] = []


def _qactivation_class():
    """QKeras' QActivation, also loadable from ``.keras`` files.

    QKeras 0.9 keeps a quantizer given as a config dict (what the ``.keras`` format stores) as a dict and
    fails when called; this subclass (same class name, so hls4ml and Keras see a QActivation) deserializes it.
    """
    if not _QACTIVATION:
        import qkeras
        from qkeras.quantizers import get_quantizer

        class QActivation(qkeras.QActivation):
            def __init__(self, activation, **kwargs):
                if isinstance(activation, dict):
                    config = {k: activation[k] for k in ("class_name", "config") if k in activation}
                    activation = get_quantizer(config)
                super().__init__(activation, **kwargs)

        _QACTIVATION.append(QActivation)
    return _QACTIVATION[0]


def load_model(path: str | Path, weights: str | Path | None = None):
    """The Keras model at ``path``: ``.h5``/``.keras`` full model, or ``.json`` architecture + ``weights``."""
    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"model file {path} not found; check the path")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TrigflowError(
            f"model file {path} has an unsupported type '{path.suffix}'; give a Keras/QKeras .h5 or .keras "
            "file, "
            "or an architecture .json with --weights W.h5"
        )
    if weights is not None and not Path(weights).is_file():
        raise TrigflowError(f"weights file {weights} not found; check the path given to --weights")
    if suffix == ".json":
        model = _load_json(path, weights)
    else:
        model = _load_saved(path, suffix)
        if weights is not None:
            _load_weights(model, Path(weights))
    check_supported(model)
    return model


def _layer_entries(config: Any) -> list[tuple[str, str]]:
    """``(layer name, class name)`` of every layer in a saved model config (Sequential or functional)."""
    if not isinstance(config, dict):
        return []
    inner = config.get("config", {})
    layers = inner.get("layers", []) if isinstance(inner, dict) else []
    out = []
    for entry in layers if isinstance(layers, list) else []:
        if isinstance(entry, dict) and "class_name" in entry:
            conf = entry.get("config", {}) if isinstance(entry.get("config"), dict) else {}
            out.append((str(entry.get("name") or conf.get("name", "?")), str(entry["class_name"])))
    return out


def check_config(config: Any) -> None:
    """Before Keras builds anything: name an unsupported (or custom, or Lambda) layer in a saved config."""
    for name, kind in _layer_entries(config):
        if kind not in SUPPORTED_LAYERS:
            _unsupported(name, kind)


def _unsupported(name: str, kind: str) -> None:
    """One line: the layer, what to use instead, and what trigflow verify converts."""
    if kind in ("Functional", "Sequential", "Model"):
        hint = "rebuild it as one flat model (nested models are not supported)"
    elif kind in INSTEAD:
        hint = f"use {INSTEAD[kind]}"
    else:
        hint = "rebuild that part from the supported layers"
    raise TrigflowError(
        f"layer '{name}' ({kind}) is not supported by trigflow verify; {hint} "
        f"(supported: {', '.join(SUPPORTED_LAYERS)})"
    )


def _saved_config(path: Path, suffix: str) -> Any:
    """The architecture stored in a model file, without building it (None if it cannot be read)."""
    try:
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            raw = raw.decode() if isinstance(raw, bytes) else raw
            return json.loads(raw) if raw else None
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    except Exception:
        return None


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def _load_saved(path: Path, suffix: str):
    import tensorflow as tf

    if suffix in (".h5", ".hdf5"):
        _check_h5(path, need_model=True)
    elif not zipfile.is_zipfile(path):
        raise TrigflowError(
            f"model file {path} is not a readable .keras archive (corrupt or truncated); re-save it with "
            "model.save('model.keras')"
        )
    check_config(_saved_config(path, suffix))
    try:
        with _quiet():
            return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except TrigflowError:
        raise
    except Exception as exc:  # Keras raises ValueError/TypeError/KeyError/OSError for bad files
        raise _load_error(path, exc) from None


def _load_json(path: Path, weights: str | Path | None):
    import tensorflow as tf

    try:
        text = path.read_text()
        architecture = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TrigflowError(
            f"model file {path} is not valid JSON; give the architecture saved with model.to_json()"
        ) from None
    check_config(architecture)
    if weights is None:
        raise TrigflowError(
            f"model file {path} holds the architecture only; pass its weights with --weights W.h5 "
            "(saved with model.save_weights)"
        )
    try:
        with _quiet():
            model = tf.keras.models.model_from_json(text, custom_objects=custom_objects())
    except Exception as exc:
        raise _load_error(path, exc) from None
    _load_weights(model, Path(weights))
    return model


def _load_weights(model, weights: Path) -> None:
    _check_h5(weights, need_model=False)
    try:
        with _quiet():
            model.load_weights(weights)
    except Exception as exc:
        raise TrigflowError(
            f"weights file {weights} does not fit the model architecture ({first_line(exc)}); give the "
            "weights "
            "saved from this same model"
        ) from None


def _check_h5(path: Path, *, need_model: bool) -> None:
    what = "model file" if need_model else "weights file"
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has_model = "model_config" in f.attrs
    except OSError as exc:
        raise TrigflowError(
            f"{what} {path} is not a readable HDF5 file (corrupt or truncated: {exc.__class__.__name__}); "
            "re-save it from Keras"
        ) from None
    if need_model and not has_model:
        raise TrigflowError(
            f"model file {path} holds weights only (no architecture); pass the architecture .json as MODEL "
            f"and this file with --weights {path.name}"
        )


def _load_error(path: Path, exc: Exception) -> TrigflowError:
    message = str(exc)
    unknown = re.search(r"Unknown (?:layer|object|class)[^'\"]*['\"]([^'\"]+)['\"]", message)
    if unknown:
        name = unknown.group(1)
        return TrigflowError(
            f"model file {path} uses '{name}', which is neither a Keras nor a QKeras layer; rebuild that part "
            f"from the layers trigflow verify supports: {', '.join(SUPPORTED_LAYERS)}"
        )
    return TrigflowError(f"model file {path} cannot be loaded ({exc.__class__.__name__}: {first_line(exc)})")


def check_supported(model) -> None:
    """Every layer must be one ``trigflow verify`` converts; otherwise name it and say what to use."""
    for layer in model.layers:
        kind = layer.__class__.__name__
        if kind in SUPPORTED_LAYERS:
            continue
        _unsupported(layer.name, kind)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TrigflowError(
            f"model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; trigflow verify "
            "supports "
            "single-input, single-output models (concatenate inputs into one tensor)"
        )
