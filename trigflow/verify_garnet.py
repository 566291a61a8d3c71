"""Spine layer: ``trigflow verify`` on a model holding hls4ml's own Keras ``GarNet`` layer (two inputs).

hls4ml's GarNet firmware (``nnet::garnet``) does not compute the float Keras layer (truncated fixed-point
distances, an exp(-d²) table, transforms contracted into fixed-point weights, its own aggregate types), so no
configuration makes the firmware equal the user's model bit for bit. What can be proven, and is:

1. the user's GarNet layers become trigflow's mirror of the template (``firmware.passes.garnet_mirror``:
   ``GarNetHLS`` with the user's weights and types from the input quantizer); the firmware is built from the
   mirror (``firmware.gnn.convert_graph_network``) and must equal it bit for bit (``bit_exact``, the usual
   thresholds) — the proof's reference is the mirror in float64;
2. the user's model vs that firmware is measured and reported, not hidden: the GarNet layers named as not
   exact in float, the differing samples, max |Δ| of the logits and of each GarNet layer's output, argmax
   agreement and, with labels, the accuracies of firmware, mirror and the user's model side by side
   (``report["garnet"]``, its ``accuracy``); the verdict line says it (``verdict_note``), and a warning
   when fewer than ``FLOAT_LAYER_FLOOR`` (99.9 %) of the samples are bit-exact. The mirror's distance type,
   weight fraction bits and data·edge-weight type are wider than hls4ml's hard-coded ones
   (``garnet_mirror.DISTANCE``, ``WEIGHT_FRAC``, ``DISTANCE_WEIGHT_FRAC``, ``weighted_feature``;
   ``report["garnet"]["widths"]``), which brings the zoo's 16-particle GarNet from 20 to 0 of 3,000 differing
   jets after 1 epoch (near chance) and from 558 to 2 after 20 epochs (``docs/verify_graphs.md``). No ONNX
   export (``onnx_max_abs_diff`` None), overflow table or localisation: the mirror is exact by construction.

The second input (the vertex count ``n_vertices`` of ``input_format='xn'``): from the data file when it holds
an array named one of ``N_KEYS`` (one value per sample), else the number of particles with any non-zero
feature — what ``trigflow run gnn``'s ``CountValid`` computes (``trigflow.kinds.gnn.n_valid``), right for
zero-padded particle lists (with ``--reshape`` truncating the particles to N, the file's counts are capped at
N). Without a data file, samples are drawn over the input quantizer's range with a uniform vertex count 1..N
per sample (rows beyond it zero). The report's ``garnet.second_input`` says which.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.passes.garnet_mirror import GarNetMirror, garnet_layers
from trigflow.models.gnn import GARNET_WIDTH_KEYS

__all__ = ["N_KEYS", "GarNetInputs", "build_garnet_evidence", "garnet_inputs", "has_garnet"]

N_KEYS = ("n_vertices", "n_valid", "nvertices", "n_particles", "nparticles", "n_constituents")


def has_garnet(model: Any) -> bool:
    """Whether ``model`` holds hls4ml's float GarNet/GarNetStack layer."""
    return bool(garnet_layers(model))


def _inputs(model: Any) -> tuple[int, int]:
    """``(data index, count index)`` in ``model.inputs``: the count is the GarNet's second inbound."""
    from trigflow.firmware.passes.exact_types import inbound

    count = inbound(garnet_layers(model)[0])[1].name
    names = list(model.input_names)
    if count not in names or len(names) != 2:
        raise TrigflowError(
            f"the GarNet's vertex count comes from '{count}', not a model input; give the model two inputs "
            "(particles, n_vertices), as hls4ml's input_format='xn' expects"
        )
    k = names.index(count)
    return 1 - k, k


def _logits(model: Any) -> tuple[Any, str | None]:
    """The model up to its logits (a last softmax/sigmoid Activation dropped) and the head's name."""
    import tensorflow as tf

    from trigflow.firmware.autoconfig import _layer_head

    last = model.layers[-1]
    head = _layer_head(last)
    if head is None:
        return model, None
    if type(last).__name__ not in ("Activation", "Softmax"):
        raise TrigflowError(
            f"layer '{last.name}' ends in an inline {head}; give the GarNet model a separate "
            f"Activation('{head}') head, or none"
        )
    return tf.keras.Model(model.inputs, last.input, name=model.name), head


def _second_input(
    data: str | Path | None, x: np.ndarray, n: int | None, *, cap: bool = False
) -> tuple[np.ndarray, str]:
    """The vertex count per sample: the data file's ``N_KEYS`` array, else the count of non-zero particles.
    ``cap``: the particles were truncated to N (``--reshape``): the file's counts are capped at N too."""
    from trigflow.kinds.gnn import n_valid

    if data is not None:
        found = _read_count(Path(data), n)
        if found is not None:
            key, counts = found
            if counts.size != len(x):
                raise TrigflowError(
                    f"data file {data}: '{key}' holds {counts.size} values for {len(x)} samples; give one "
                    "vertex count per sample"
                )
            counts = counts.reshape(len(x), 1).astype(np.float64)
            if cap:
                counts = np.minimum(counts, x.shape[1])
            if np.any(counts < 0) or np.any(counts > x.shape[1]) or np.any(counts != np.round(counts)):
                raise TrigflowError(
                    f"data file {data}: '{key}' must hold whole vertex counts 0..{x.shape[1]} per sample"
                )
            capped = f" (capped at {x.shape[1]}, --reshape)" if cap else ""
            return counts, f"data file array '{key}'{capped}"
    return n_valid(x), "count of particles with any non-zero feature (trigflow run gnn's CountValid)"


def _read_count(path: Path, n: int | None) -> tuple[str, np.ndarray] | None:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as f:
            key = next((k for k in N_KEYS if k in f.files), None)
            return None if key is None else (key, np.asarray(f[key][:n] if n else f[key]).reshape(-1))
    if path.suffix.lower() in (".h5", ".hdf5"):
        from trigflow.data.h5 import open_h5

        with open_h5(path) as f:
            key = next((k for k in N_KEYS if k in f), None)
            return None if key is None else (key, np.asarray(f[key][:n] if n else f[key][()]).reshape(-1))
    return None


def _drawn(model: Any, shape: tuple[int, ...], n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Samples over the input quantizer's range, a uniform vertex count 1..N each (rows beyond it zero)."""
    from trigflow.firmware.autoconfig import InputFormat, _quantizer_of, input_format_of, sample_inputs
    from trigflow.firmware.passes.exact_types import inbound

    quantizer = inbound(garnet_layers(model)[0])[0]
    fmt: InputFormat | None = input_format_of(_quantizer_of(quantizer), "quantizer")
    if fmt is None:
        raise TrigflowError(
            "a GarNet model needs QActivation(quantized_bits) before the GarNet; or give --data"
        )
    x = sample_inputs(fmt.type, shape, n, seed, on_grid=False)
    counts = np.random.default_rng(seed).integers(1, shape[0] + 1, size=(n, 1))
    x[np.arange(shape[0])[None, :] >= counts] = 0.0
    return x, counts.astype(np.float64), f"{n} samples drawn over {fmt.describe()['quantizer']} (seed {seed})"


def exp_table(distance: str, edge_weight: str) -> dict[str, int]:
    """Size of hls4ml's exp(-d²) lookup table: 2^(distance width) entries of the edge-weight type, against
    the table of hls4ml's own distance type (``models.gnn.GARNET_DISTANCE_T``)."""
    from trigflow.models.gnn import GARNET_DISTANCE_T
    from trigflow.quantize.fixed import FixedType

    bits = FixedType.parse(edge_weight).width
    entries = 2 ** FixedType.parse(distance).width
    return {"entries": entries, "entry_bits": bits, "kbit": entries * bits // 1024,
            "hls4ml_kbit": 2**GARNET_DISTANCE_T.width * bits // 1024}


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))) if a.shape[1] > 1 else float(
        np.mean((a > 0) == (b > 0))
    )


def _layer_differences(user: Any, mirror: Any, inputs: list[np.ndarray], names: list[str]) -> dict[str, Any]:
    """max |Δ| and the fraction of exactly equal values of each GarNet layer's output, user's vs mirror."""
    import tensorflow as tf

    out: dict[str, Any] = {}
    for name in names:
        a, b = (
            np.asarray(tf.keras.Model(m.inputs, m.get_layer(name).output).predict(inputs, verbose=0), float)
            for m in (user, mirror)
        )
        out[name] = {
            "max_abs_diff": float(np.max(np.abs(a - b))), "exact_value_fraction": float(np.mean(a == b))
        }
    return out


@dataclass
class GarNetInputs:
    """The inputs of a GarNet model: arrays in ``model.inputs`` order, labels and where they came from."""

    inputs: list[np.ndarray]
    data_index: int
    count_index: int
    labels: np.ndarray | None
    source: str
    count_source: str
    reshaped: dict[str, Any] | None


def garnet_inputs(start: Any, model: Any) -> GarNetInputs:
    """The particles (data file or drawn; ``--reshape`` applies) and the vertex count (``_second_input``)."""
    from trigflow.verify_model import DEFAULT_SAMPLES, fit_shape, read_data

    if start.layer_precisions:
        raise TrigflowError(
            "per-layer precisions do not apply to a GarNet model: its types are those of hls4ml's GarNet "
            "template, which trigflow mirrors; drop LayerName Precision / layer_precisions"
        )
    GarNetMirror().plan(model)  # refuse what the mirror does not cover before reading any data
    data_k, count_k = _inputs(model)
    shape = tuple(int(d) for d in model.inputs[data_k].shape[1:])
    reshaped, labels = None, None
    if start.data is not None:
        x, labels, _ = read_data(start.data, start.n)
        x, reshaped = fit_shape(x, shape, start.reshape, f"data file {start.data}")
        capped = reshaped is not None and reshaped["rule"] == "constituents"
        counts, count_source = _second_input(start.data, x, start.n, cap=capped)
        source = str(Path(start.data).resolve())
    else:
        x, counts, source = _drawn(model, shape, start.n or DEFAULT_SAMPLES, start.config.seed)
        count_source = "drawn uniformly 1..N per sample, rows beyond it zero"
    inputs: list[np.ndarray] = [x, x]
    inputs[data_k], inputs[count_k] = x, counts
    return GarNetInputs(inputs, data_k, count_k, labels, source, count_source, reshaped)


def build_garnet_evidence(start: Any, model: Any, given: GarNetInputs, ui: Any) -> Any:
    """``Evidence`` for ``verify_model.ModelFile`` when its model holds a GarNet (module docstring)."""
    from trigflow.driver import Evidence
    from trigflow.firmware.autoconfig import firmware_types
    from trigflow.firmware.convert import FirmwareSpec
    from trigflow.firmware.csim import predict
    from trigflow.firmware.fallback import compile_firmware
    from trigflow.firmware.gnn import convert_graph_network
    from trigflow.proof.checks import FLOAT_LAYER_FLOOR, Thresholds, float_scale, prove
    from trigflow.proof.reference import exact_predict
    from trigflow.verify_model import _cost, accuracy

    config = start.config
    names = [layer.name for layer in garnet_layers(model)]
    inputs, labels, count_k = given.inputs, given.labels, given.count_index
    x = inputs[given.data_index]
    with ui.stage("GarNet mirror"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        user, head = _logits(model)
        surgery = GarNetMirror()
        mirror, _ = surgery.apply(user)
    with ui.stage("hls4ml convert"):
        spec = FirmwareSpec.from_config(config.firmware, layer_reuse=start.layer_reuse or {})
        hls_model, record = convert_graph_network(
            mirror, start.project, spec, force=start.force, compile=False
        )
    with ui.stage("g++ compile"):
        compile_firmware(hls_model)
        order = [v.name for v in hls_model.get_input_variables()]  # the C function's argument order
        if sorted(order) != sorted(mirror.input_names):
            raise TrigflowError(f"hls4ml built inputs {order} for the model's {mirror.input_names}")
        fw_inputs = [inputs[list(mirror.input_names).index(name)] for name in order]
    with ui.stage("resource/latency estimate"):
        cost = _cost(hls_model)
    with ui.stage("C-simulation"):
        y_fw = predict(hls_model, fw_inputs)
    with ui.stage("mirror and your model"):
        y_mirror = exact_predict(mirror, inputs)
        y_mirror32 = mirror.predict(inputs, batch_size=4096, verbose=0).reshape(len(x), -1).astype(np.float64)
        y_user = user.predict(inputs, batch_size=4096, verbose=0).reshape(len(x), -1).astype(np.float64)
        layers = _layer_differences(user, mirror, inputs, names)
    outputs = {"firmware": y_fw, "reference": y_mirror, "qkeras": y_mirror32, "float": y_user, "onnx": None}
    proof = prove(outputs)
    proof["reference"] = "trigflow's fixed-point mirror of the model's GarNet (GarNetHLS) in float64"
    differ = np.any(y_fw != y_user, axis=1)
    versus_model = {
        "samples": int(len(x)),
        "differing_samples": int(differ.sum()),
        "bit_exact_fraction": float(np.mean(~differ)),
        "max_abs_diff": float(np.max(np.abs(y_fw - y_user))),
        "argmax_agreement": _agreement(y_fw, y_user),
        "floor": FLOAT_LAYER_FLOOR,
    }
    widths = {name: {k: surgery.types[name].get(k, surgery.types[name]["data"]) for k in GARNET_WIDTH_KEYS}
              for name in names}
    shown = "; ".join(
        f"{name}: distance {w['distance']}, weights with {w['weight_frac']} and distance weights with "
        f"{w['distance_weight_frac']} fractional bits, data·edge-weight products in {w['weighted_feature']}"
        for name, w in widths.items()
    )
    tables = {name: exp_table(widths[name]["distance"], surgery.types[name]["edge_weight"]) for name in names}
    garnet: dict[str, Any] = {
        "layers": names,
        "exp_table": tables,
        "not_exact_in_float": names,
        "why": "hls4ml's GarNet template computes in fixed point (truncated distances, an exp(-d²) table, "
        f"transforms contracted into fixed-point weights; {shown}); the float Keras layer does not, so a "
        "sample differs where that small difference moves a value of the next quantizer across one of its "
        "rounding boundaries",
        "widths": widths,
        "mirror": "trigflow.models.gnn.GarNetHLS with your weights",
        "types": surgery.types,
        "second_input": {"name": model.input_names[count_k], "source": given.count_source},
        "firmware_vs_mirror_bit_exact_fraction": proof["bit_exact_fraction"],
        "firmware_vs_model": versus_model,
        "layer_differences": layers,
    }
    note = (
        f"GarNet {', '.join(names)} not exact in float: firmware = fixed-point mirror of your weights "
        f"bit for bit; vs your model {versus_model['differing_samples']:,} of {len(x):,} samples differ, max "
        f"|Δ| {versus_model['max_abs_diff']:.3g}, argmax agreement {versus_model['argmax_agreement']:.4f}"
    )
    sections: dict[str, Any] = dict(proof)
    sections["garnet"] = garnet
    if labels is not None and bool(np.all(labels == np.round(labels))) and labels.min() >= 0:
        acc = accuracy(outputs, labels)  # "float" holds your model, "qkeras" the mirror (float32)
        garnet["accuracy"] = {"firmware": acc["firmware"], "mirror": acc["qkeras"], "model": acc["float"]}
    sections.update(
        verdict_note=note,
        warnings=([] if versus_model["bit_exact_fraction"] >= FLOAT_LAYER_FLOOR else [
            f"firmware vs your model: {versus_model['bit_exact_fraction']:.4%} bit-exact, below the "
            f"{FLOAT_LAYER_FLOOR:.1%} floor for a model with a float layer (GarNet {', '.join(names)})"
        ]) + [
            f"GarNet {name}: its exp(-d²) table has {t['entries']:,} entries of {t['entry_bits']} bits = "
            f"{t['kbit']:,} kbit per copy (hls4ml's own: {t['hls4ml_kbit']:,} kbit); the estimate does not "
            "count it: check memory after HLS synthesis"
            for name, t in tables.items() if t["kbit"] > t["hls4ml_kbit"]
        ],
        model={
            "path": str(start.model_path.resolve()),
            "weights": str(Path(start.weights).resolve()) if start.weights else None,
            "class": model.__class__.__name__,
            "quantized": True,
            "layers": len(model.layers),
            "parameters": int(model.count_params()),
            "head": head,
        },
        data={
            "source": given.source, "samples": int(len(x)), "labels": labels is not None,
            "reshape": given.reshaped,
        },
        parameters=int(mirror.count_params()),
        configuration={
            "path": "garnet_mirror",
            "firmware_types": firmware_types(hls_model),  # the final per-layer types, as for other models
            "input_type": record["layer_precisions"][record["converted_input"]]["result"],
            "layer_precisions": record["layer_precisions"],
            "notes": list(record["warnings"]),
        },
        **cost,
    )
    limits = Thresholds(**config.verify.__dict__, max_float_rel_diff=start.max_float_rel_diff)
    return Evidence(
        sections=sections,
        proof=proof,
        limits=limits,
        firmware={k: v for k, v in spec.__dict__.items() if k not in ("layer_precisions", "layer_reuse")},
        thresholds={**config.verify.__dict__, "max_float_rel_diff": start.max_float_rel_diff},
        check_options={
            "quantized": True,
            "scale": float_scale(y_user),
            "versus": " (firmware vs trigflow's fixed-point mirror of your GarNet weights)",
        },
    )
