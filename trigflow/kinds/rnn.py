"""Spine layer: the recurrent jet tagger recipe — pT-ordered constituent sequence → QGRU/QLSTM/QSimpleRNN → 5
class logits.

The jets and input features are the gnn kind's (``trigflow.kinds.gnn``: the ``model.n_particles`` highest-pT
constituents as (z, Δη, Δφ), scaled without a mean shift, zero-padded): here they are a sequence, highest pT
first, of length ``model.n_particles``. ``model.arch``: ``gru`` (default), ``lstm`` or ``simplernn``;
``model.hidden`` = (recurrent units, head widths...).

Exactness: hls4ml computes sigmoid/tanh as lookup tables. The QKeras model's recurrent layer
(``trigflow.models.rnn.QGRUHLS`` / ``QLSTMHLS``) trains as a QKeras QGRU/QLSTM (float activations) and
predicts with the firmware's arithmetic — its tables, its accum/table/result types — so the proof compares
bits; the project gets exactly those types. hls4ml 1.3's Vivado/Vitis backend has no SimpleRNN template: a
``simplernn`` is converted unrolled (``trigflow.firmware.passes.simplernn_unroll``: per step Dense, Dense,
Add and hls4ml's tanh table, on the mirror's types). What the tables cost is reported as the accuracy of
the training path (float sigmoid/tanh) beside the mirror's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.kinds import Arrays, Prepared, Recipe, checked_arch
from trigflow.kinds import gnn

ARCHS = ("gru", "lstm", "simplernn")
MAX_STEPS = 64
PRECISION_FILE = "trigflow_rnn.json"

EXACTNESS = (
    "bit-exact by construction (mirror): the QKeras model's recurrent layer predicts what hls4ml's "
    "nnet::{arch} computes, step by step in float64 — products and sums assigned to accum_t, sigmoid/tanh "
    "read "
    "from hls4ml's {size}-entry tables (values on table_t, index truncated), the state assigned to result_t; "
    "training uses QKeras' float sigmoid/tanh (straight-through), so the tables cost "
    "accuracy_float_activations - accuracy_qkeras"
)
EXACTNESS_UNROLLED = (
    "bit-exact by construction (mirror): hls4ml 1.3 has no Vivado/Vitis SimpleRNN, so the firmware is the "
    "layer unrolled over its {steps} steps (per step Dense x·W+b and Dense h·U on accum_t, Add on accum_t, "
    "hls4ml's {size}-entry tanh table onto result_t); the QKeras model's QSimpleRNNHLS predicts exactly that "
    "in float64; training uses QKeras' float tanh (straight-through), so the table costs "
    "accuracy_float_activations - accuracy_qkeras"
)


def arch_of(config: RunConfig) -> str:
    return checked_arch(config, "rnn", ARCHS)


def _check(config: RunConfig) -> None:
    arch_of(config)
    n = config.model.n_particles
    if not 2 <= n <= MAX_STEPS:
        raise TrigflowError(
            f"model.n_particles (the sequence length) must be in 2..{MAX_STEPS} for rnn, got {n}; "
            "use e.g. --set model.n_particles=16"
        )
    if config.firmware.io_type != "io_parallel":
        raise TrigflowError(
            f"firmware.io_type={config.firmware.io_type} is not proven for rnn (its mirror is hls4ml's "
            "io_parallel nnet::gru/lstm and layers); use --set firmware.io_type=io_parallel"
        )
    if len(config.model.hidden) < 1:
        raise TrigflowError("model.hidden must give the recurrent units first, e.g. --set model.hidden=16,16")


def load(config: RunConfig) -> Arrays:
    _check(config)
    return gnn.load(replace(config, model=replace(config.model, arch="in")))  # the gnn kind's jets


def types_for(arch: str):
    from trigflow.models.rnn import RecurrentTypes

    types = RecurrentTypes()
    # hls4ml's nnet::lstm feeds the state back through a dense on the input type and writes the dense into
    # accum_t via res_T: input, accum and result must be one type
    return replace(types, accum=types.result) if arch == "lstm" else types


def custom_objects() -> dict[str, Any]:
    from trigflow.models.rnn import custom_objects as model_objects

    return model_objects()


def build(prepared: Prepared, config: RunConfig, quantized: bool):
    from trigflow.models.rnn import build_rnn
    from trigflow.quantize.presets import QuantSpec

    _check(config)
    arch = arch_of(config)
    n, f = prepared.x_train.shape[1:]
    units, *head = config.model.hidden
    return build_rnn(
        int(n), int(f), len(prepared.class_names), arch=arch, units=int(units), head_hidden=tuple(head),
        quantized=quantized, spec=QuantSpec.from_config(config.quant), types=types_for(arch),
        seed=config.seed,
    )


def convert(model, project_dir, spec, *, force: bool = False):
    """hls4ml from the plain QGRU/QLSTM twin of the mirror model (a SimpleRNN: its unrolled graph), with the
    mirror's types in the project."""
    from trigflow.firmware.convert import convert as hls_convert
    from trigflow.firmware.passes.recurrent_plain import RecurrentPlain
    from trigflow.models.rnn import recurrent_layer
    from trigflow.quantize.fixed import FixedType

    layer = recurrent_layer(model)
    t = layer.hls_types
    if type(layer).__name__ == "QSimpleRNNHLS":
        return _convert_unrolled(model, layer, project_dir, spec, force=force)
    if type(layer).__name__ == "QLSTMHLS":  # nnet::lstm needs input type == result type (see types_for)
        grid = FixedType.from_quantizer(model.get_layer("input_quant").quantizer, "input_quant")
        result = t.fixed("result")
        if grid.frac > result.frac or grid.integer > result.integer:
            raise TrigflowError(
                f"arch=lstm: hls4ml's nnet::lstm reads its input as result_t={result}, which cannot hold the "
                f"input grid {grid}; lower quant.input_bits to ≤ {result.width} with quant.input_integer ≤ "
                f"{result.integer - 1}"
            )
    rewrite = RecurrentPlain()
    plain, _ = rewrite.apply(model)
    spec = replace(spec, bit_exact=False, layer_precisions={**spec.layer_precisions, **rewrite.precisions})

    def check(hls_model) -> None:
        node = next(n for n in hls_model.get_layers() if n.name == layer.name)
        for key in ("accum", "table", "result"):
            got = FixedType.from_hls(node.get_attr(f"{key}_t").precision)
            if got != t.fixed(key):
                raise TrigflowError(
                    f"hls4ml gave {layer.name} {key}_t={got}, the mirror computes with {t.fixed(key)}; "
                    "the rnn firmware would not be bit-exact"
                )
        if int(node.get_attr("table_size", 1024)) != t.table_size:
            raise TrigflowError(f"hls4ml table_size {node.get_attr('table_size')} != mirror {t.table_size}")

    hls_model = hls_convert(plain, project_dir, spec, force=force, check=check)
    record = {"recurrent_layer": layer.name, "types": t.to_dict(), "bit_exact_by_construction": True}
    (Path(project_dir) / PRECISION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return hls_model


def _convert_unrolled(model, layer, project_dir, spec, *, force: bool):
    """A QSimpleRNNHLS: hls4ml from the unrolled graph; every unrolled layer's types checked after
    conversion."""
    from trigflow.firmware.convert import convert as hls_convert
    from trigflow.firmware.passes.simplernn_unroll import SimpleRNNUnroll
    from trigflow.quantize.fixed import FixedType

    t = layer.hls_types
    rewrite = SimpleRNNUnroll()
    unrolled, _ = rewrite.apply(model)
    spec = replace(spec, bit_exact=False, layer_precisions={**spec.layer_precisions, **rewrite.precisions})
    tanh_layers = set(rewrite.tanh_layers[layer.name])

    def check(hls_model) -> None:
        nodes = {node.name: node for node in hls_model.get_layers()}
        for name, precisions in rewrite.precisions.items():
            if name not in nodes:  # a QDense's linear activation that hls4ml removed
                continue
            for key, wanted in precisions.items():
                got = FixedType.from_hls(nodes[name].get_attr(f"{key}_t").precision)
                if got != FixedType.parse(wanted):
                    raise TrigflowError(
                        f"hls4ml gave {name} {key}_t={got}, the mirror {layer.name} computes with {wanted}; "
                        "the rnn firmware would not be bit-exact"
                    )
        for name in tanh_layers:
            size = int(nodes[name].get_attr("table_size", 1024))
            if size != t.table_size:
                raise TrigflowError(f"hls4ml table_size {size} on {name} != mirror {t.table_size}")

    hls_model = hls_convert(unrolled, project_dir, spec, force=force, check=check)
    record = {"recurrent_layer": layer.name, "types": t.to_dict(), "bit_exact_by_construction": True,
              "unrolled_steps": len(tanh_layers)}
    (Path(project_dir) / PRECISION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return hls_model


def write_extras(report: dict, outputs: dict, prepared: Prepared, config: RunConfig, out: Path) -> None:
    """ROC plots; architecture, types, exactness and what the lookup tables cost in accuracy."""
    import tensorflow as tf

    from trigflow import report as reporting
    from trigflow.models.rnn import recurrent_layer

    reporting.write_plots({**outputs, "labels": prepared.y_test}, prepared.class_names, out)
    arch = arch_of(config)
    qmodel = tf.keras.models.load_model(
        out / "qkeras_model.h5", custom_objects=custom_objects(), compile=False
    )
    layer = recurrent_layer(qmodel)
    x, y = prepared.x_test, prepared.y_test
    trained_path = np.concatenate(
        [qmodel(x[i : i + 4096], training=True).numpy() for i in range(0, len(x), 4096)]
    )
    units, *head = config.model.hidden
    report["rnn"] = {
        "arch": arch,
        "sequence_length": int(x.shape[1]),
        "features": list(gnn.FEATURES),
        "units": int(units),
        "head": [int(w) for w in head],
        "types": layer.hls_types.to_dict(),
        "exactness": (EXACTNESS_UNROLLED if arch == "simplernn" else EXACTNESS).format(
            arch=arch, size=layer.hls_types.table_size, steps=int(x.shape[1])),
        "accuracy_float_activations": float(np.mean(np.argmax(trained_path, 1) == y)),
    }


RECIPE = Recipe(
    kind="rnn", load=load, build=build, prepare=gnn.prepare, convert=convert, write_extras=write_extras
)
