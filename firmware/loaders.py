"""Firmware layer: loading a user's Keras/QKeras model from disk, with one-line errors a user can act on.

Accepted: a full model saved by Keras (``model.save("m.h5")`` or ``model.save("m.keras")``), or an
architecture ``.json`` (``model.to_json()``) with its weights ``.h5`` (``model.save_weights("w.h5")``);
Sequential or functional; QKeras layers and quantizers, and hls4ml's own Keras layers (``GarNet``,
``GarNetStack``), are registered as custom objects; a user adds classes with
``custom_objects=["module:Class"]`` (``--custom-objects``). The model is loaded without its training
configuration (``compile=False``). Every layer is checked against what ``trigflow verify`` can convert —
hls4ml 1.3's own Keras 2 handler registry (``supported_layers``): a layer outside it is named, with what to
use instead; an unknown custom class is named with how to register it.
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

# Listed first in messages (what people use most); the rest of the accepted set follows alphabetically.
COMMON_LAYERS = ("InputLayer", "Dense", "QDense", "Conv1D", "QConv1D", "Conv2D", "QConv2D", "Activation",
                 "QActivation", "BatchNormalization")
# In hls4ml's registry but not a layer of a flat model: nested models, and HGQ's own quantizer layers
# (HGQ models are not Keras 2 / QKeras files).
NOT_LAYERS = ("Functional", "Sequential", "Model")
# Keras layers hls4ml's Keras 2 frontend drops (inference no-ops).
SKIPPED_BY_HLS4ML = ("Dropout",)
# hls4ml's Keras objects: its files load without the user registering them.
HLS4ML_OBJECTS = {
    "GarNet": "hls4ml.contrib.garnet:GarNet",
    "GarNetStack": "hls4ml.contrib.garnet:GarNetStack",
}

# What to use instead, for layers people commonly reach for that hls4ml 1.3 cannot convert.
INSTEAD = {
    "Lambda": "built-in layers (Activation, Reshape, Add, ...) — arbitrary Python cannot become firmware",
    "Conv1DTranspose": "UpSampling1D followed by Conv1D",
    "Conv2DTranspose": "UpSampling2D followed by Conv2D",
    "LocallyConnected1D": "Conv1D (shared weights)",
    "LocallyConnected2D": "Conv2D (shared weights)",
    "RepeatVector": "UpSampling1D on a (1, F) tensor (Reshape first)",
    "GaussianNoise": "nothing — remove training-only noise layers before saving",
}

# User classes added with ``--custom-objects module:Class`` (``register_custom_objects``).
_USER_OBJECTS: dict[str, Any] = {}


def supported_layers() -> tuple[str, ...]:
    """Layer classes trigflow verify accepts: hls4ml 1.3's Keras 2 handler registry (which includes handlers a
    user's ``--custom-objects`` module registered), minus nested models and HGQ entries, plus the layers
    hls4ml drops (Dropout)."""
    from hls4ml.converters import get_supported_keras_layers

    registry = {
        name for name in get_supported_keras_layers() if name not in NOT_LAYERS and ">" not in name
    } | set(SKIPPED_BY_HLS4ML)
    common = tuple(name for name in COMMON_LAYERS if name in registry)
    return common + tuple(sorted(registry - set(common)))


def register_custom_objects(specs: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """Import each ``module:Class`` (the module may also register an hls4ml handler for it) and make the
    classes loadable by name, replacing those of an earlier call; returns ``{name: class}``."""
    import importlib

    added: dict[str, Any] = {}
    for spec in specs or ():
        module_name, _, class_name = str(spec).partition(":")
        if not module_name or not class_name:
            raise TrigflowError(
                f"--custom-objects {spec}: give module:Class (e.g. mylayers:MyLayer), importable from here"
            )
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise TrigflowError(
                f"--custom-objects {spec}: cannot import module '{module_name}' ({first_line(exc)}); put "
                "it on PYTHONPATH"
            ) from None
        cls = getattr(module, class_name, None)
        if cls is None:
            raise TrigflowError(f"--custom-objects {spec}: module '{module_name}' has no '{class_name}'")
        added[class_name] = cls
    _USER_OBJECTS.clear()  # the classes of this model only: one verification does not leak into the next
    _USER_OBJECTS.update(added)
    return added


def custom_objects() -> dict[str, Any]:
    from qkeras.utils import _add_supported_quantized_objects

    from trigflow.models.rnn import qkeras_recurrent_fix

    qkeras_recurrent_fix()  # QKeras 0.9's QGRU/QSimpleRNN on TF 2.14 (else they fail on their first call)

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    objects["QActivation"] = _qactivation_class()
    objects.update(_hls4ml_objects())
    objects.update(_USER_OBJECTS)
    return objects


def _hls4ml_objects() -> dict[str, Any]:
    import importlib

    out = {}
    for name, where in HLS4ML_OBJECTS.items():
        module, _, cls = where.partition(":")
        out[name] = getattr(importlib.import_module(module), cls)
    return out


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


def load_model(
    path: str | Path, weights: str | Path | None = None, custom_objects: list[str] | tuple[str, ...] = ()
):
    """The Keras model at ``path``: ``.h5``/``.keras`` full model, or ``.json`` architecture + ``weights``;
    ``custom_objects``: ``module:Class`` of the user's own layers."""
    register_custom_objects(custom_objects)
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
    """Before Keras builds anything: name an unsupported (or unregistered custom, or Lambda) layer in a saved
    config."""
    supported = supported_layers()
    for name, kind in _layer_entries(config):
        if kind not in supported:
            _unsupported(name, kind, supported)


def _is_known_class(kind: str) -> bool:
    """A class Keras, QKeras, hls4ml's Keras objects or the user's ``--custom-objects`` define."""
    import tensorflow as tf

    return hasattr(tf.keras.layers, kind) or kind in custom_objects() or kind in NOT_LAYERS


def _unsupported(name: str, kind: str, supported: tuple[str, ...]) -> None:
    """One line: the layer, what to use instead, and what trigflow verify converts."""
    if not _is_known_class(kind):
        raise TrigflowError(
            f"layer '{name}' ({kind}) is a custom layer trigflow does not know; register its class with "
            f"--custom-objects MODULE:{kind} (trigflow.verify(..., custom_objects=['MODULE:{kind}'])), "
            "and an hls4ml converter for it with hls4ml.converters.register_keras_v2_layer_handler in that "
            "module"
        )
    if kind in _USER_OBJECTS:
        raise TrigflowError(
            f"layer '{name}' ({kind}) has no hls4ml converter; register one in its module with "
            f"hls4ml.converters.register_keras_v2_layer_handler('{kind}', handler) (hls4ml's extension "
            "API)"
        )
    if kind in NOT_LAYERS:
        hint = "rebuild it as one flat model (nested models are not supported)"
    elif kind in INSTEAD:
        hint = f"use {INSTEAD[kind]}"
    else:
        hint = "rebuild that part from the supported layers"
    raise TrigflowError(
        f"layer '{name}' ({kind}) is not supported by trigflow verify; {hint} "
        f"(supported: {', '.join(supported)})"
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
            f"model file {path} uses '{name}', which is neither a Keras nor a QKeras layer; register its "
            f"class with --custom-objects MODULE:{name} "
            f"(trigflow.verify(..., custom_objects=['MODULE:{name}']))"
        )
    if "GarNet" in message and "%i format" in message:  # hls4ml 1.3's GarNet.get_config drops the bits
        return TrigflowError(
            f"model file {path} holds hls4ml's GarNet with quantize_transforms=True, which hls4ml 1.3 saves "
            "without its total_bits/int_bits, so it cannot be rebuilt; save the model with "
            "quantize_transforms=False, or build it with trigflow's GarNetHLS (trigflow run gnn)"
        )
    return TrigflowError(f"model file {path} cannot be loaded ({exc.__class__.__name__}: {first_line(exc)})")


def check_supported(model) -> None:
    """Every layer must be one ``trigflow verify`` converts; otherwise name it and say what to use."""
    supported = supported_layers()
    for layer in model.layers:
        kind = layer.__class__.__name__
        if kind in supported:
            continue
        _unsupported(layer.name, kind, supported)
    garnet = any(type(layer).__name__ in ("GarNet", "GarNetStack") for layer in model.layers)  # + vertex count
    if len(model.inputs) != (2 if garnet else 1) or len(model.outputs) != 1:
        raise TrigflowError(
            f"model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; trigflow verify "
            "supports "
            "single-input, single-output models (concatenate inputs into one tensor)"
        )
