"""Firmware layer: every change trigflow makes to hls4ml's own code, in one place.

Each patch is a context manager that replaces one hls4ml 1.3 attribute for the duration of one conversion
and restores it afterwards, so nothing leaks into other users of hls4ml in the same process.
"""

from __future__ import annotations

import contextlib
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["fixed_stamp", "garnet_distance_typedef", "garnet_widths", "python_bool_signedness"]


@contextlib.contextmanager
def fixed_stamp(stamp: str) -> Iterator[None]:
    """Replaces: hls4ml 1.3's ``MakeStamp`` pass, which names the C-sim library ``<project>-<stamp>.so`` with
    ``str(uuid4())[-8:]``. Why: a content stamp keeps identical conversions byte-identical, while a changed
    model still gets a fresh library name (no stale dlopen handle)."""
    from hls4ml.model.optimizer.passes import stamp as stamp_pass

    real = stamp_pass.uuid
    stamp_pass.uuid = types.SimpleNamespace(uuid4=lambda: stamp)
    try:
        yield
    finally:
        stamp_pass.uuid = real


@contextlib.contextmanager
def python_bool_signedness() -> Iterator[None]:
    """Replaces: hls4ml 1.3's ``GarNet._add_variable``, which stores ``signed = np.amin(data) < 0`` (a
    ``numpy.bool_``) in the GarNet weight types. Why: ``ModelGraph.save`` cannot serialise a ``numpy.bool_``
    to JSON; the wrapper turns it into a Python bool. Harmless for models without GarNet."""
    from hls4ml.model import layers

    real = layers.GarNet._add_variable

    def add_variable(self, name, var_name, data, frac_width=10, quantize=False):
        real(self, name, var_name, data, frac_width=frac_width, quantize=quantize)
        precision = self.weights[name].type.precision
        precision.signed = bool(precision.signed)

    layers.GarNet._add_variable = add_variable
    try:
        yield
    finally:
        layers.GarNet._add_variable = real


def garnet_distance_typedef(distance: str) -> str:
    """The line of the GarNet config that declares ``distance`` (e.g. ``fixed<19,3,RND,SAT>``) as
    ``distance_t``, as hls4ml 1.3's template writes it."""
    from trigflow.quantize.fixed import FixedType

    d = FixedType.parse(distance)
    return f"typedef ap_fixed<{d.width}, {d.integer}, AP_{d.rounding}, AP_SAT> distance_t;"


# hls4ml 1.3's nnet_garnet.h rounds each data·edge-weight product to the layer's input type; under
# garnet_widths the project's copy rounds it to the config's weighted_feature_t instead.
GARNET_INCR_LINE = "typename data_getter_T::data_t incr = data_getter.get(iv, ix) * edge_weight;"
GARNET_INCR_TYPED = "typename CONFIG_T::weighted_feature_t incr = data_getter.get(iv, ix) * edge_weight;"
GARNET_WEIGHT_FRAC_KEYS = {  # hls4ml's GarNet weight variable -> the width key giving its fractional bits
    "input_transform_weights": "weight_frac", "input_transform_biases": "weight_frac",
    "output_transform_biases": "weight_frac",
    "aggregator_distance_weights": "distance_weight_frac",
    "aggregator_distance_biases": "distance_weight_frac",
}


@contextlib.contextmanager
def garnet_widths(widths: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """Replaces: for the GarNet layers named in ``widths`` ({layer: {"distance": "fixed<19,3,RND,SAT>",
    "weight_frac": "16", "distance_weight_frac": "20", "weighted_feature": "fixed<24,12,RND_CONV,SAT>"}},
    the keys of a GarNet mirror's types; the last two optional), hls4ml 1.3's hard-coded weight precision
    (``GarNet._add_variable``'s ``frac_width=10``, per variable: the distance weights S and biases get
    ``distance_weight_frac``, the others ``weight_frac``; the integer bits still come from the data), the
    distance type its template writes (``GarNetConfigTemplate.format``: ``distance_width = 12``,
    ``ap_fixed<12, 4, AP_TRN, AP_SAT>``; the exp(-d²) table follows the width) and, with
    ``weighted_feature``, the type each data·edge-weight product is rounded to (``nnet_garnet.h`` uses the
    layer's input type; ``VivadoWriter.write_nnet_utils`` is wrapped to make the project's copy of the header
    use ``CONFIG_T::weighted_feature_t``, which the config then declares). Why: with raw-unit inputs
    hls4ml's widths make the firmware differ from the user's float GarNet on up to 19 % of the jets of a
    trained model (``docs/verify_graphs.md``); the mirror (``models.gnn.GarNetHLS``) computes with the same
    widths, so firmware = mirror stays bit-exact."""
    from hls4ml.backends.vivado.passes import garnet_templates
    from hls4ml.model import layers
    from hls4ml.writer.vivado_writer import VivadoWriter

    from trigflow.errors import TrigflowError
    from trigflow.quantize.fixed import FixedType

    real_add, real_format = layers.GarNet._add_variable, garnet_templates.GarNetConfigTemplate.format
    real_write = VivadoWriter.write_nnet_utils
    typed = any("weighted_feature" in w for w in widths.values())

    def add_variable(self, name, var_name, data, frac_width=10, quantize=False):
        if self.name in widths and not quantize and name in GARNET_WEIGHT_FRAC_KEYS:
            w = widths[self.name]
            frac_width = int(w.get(GARNET_WEIGHT_FRAC_KEYS[name]) or w["weight_frac"])
        real_add(self, name, var_name, data, frac_width=frac_width, quantize=quantize)

    def format(self, node):
        text = real_format(self, node)
        if node.name not in widths:
            return text
        w = widths[node.name]
        d = FixedType.parse(w["distance"])
        text, n_width = re.subn(r"distance_width = \d+;", f"distance_width = {d.width};", text)
        feature = FixedType.parse(w["weighted_feature"]).ap if "weighted_feature" in w else \
            node.get_input_variable(node.inputs[0]).type.name
        text, n_type = re.subn(
            r"typedef ap_fixed<\d+, \d+, AP_TRN, AP_SAT> distance_t;",
            garnet_distance_typedef(w["distance"]) + f"\n    typedef {feature} weighted_feature_t;", text,
        )
        if (n_width, n_type) != (1, 1):
            raise TrigflowError(
                f"GarNet '{node.name}': hls4ml's GarNet template no longer writes distance_width/distance_t "
                "as hls4ml 1.3 did; use hls4ml 1.3"
            )
        return text

    def write_nnet_utils(self, model):
        real_write(self, model)
        if not typed:
            return
        header = Path(model.config.get_output_dir()) / "firmware" / "nnet_utils" / "nnet_garnet.h"
        text = header.read_text()
        if text.count(GARNET_INCR_LINE) != 1:
            raise TrigflowError("hls4ml's nnet_garnet.h no longer rounds data·edge-weight products as hls4ml "
                                "1.3 did; use hls4ml 1.3")
        header.write_text(text.replace(GARNET_INCR_LINE, GARNET_INCR_TYPED))

    layers.GarNet._add_variable = add_variable
    garnet_templates.GarNetConfigTemplate.format = format
    VivadoWriter.write_nnet_utils = write_nnet_utils
    try:
        yield
    finally:
        layers.GarNet._add_variable = real_add
        garnet_templates.GarNetConfigTemplate.format = real_format
        VivadoWriter.write_nnet_utils = real_write
