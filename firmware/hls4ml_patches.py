"""Firmware layer: every change trigflow makes to hls4ml's own code, in one place.

Each patch is a context manager that replaces one hls4ml 1.3 attribute for the duration of one conversion
and restores it afterwards, so nothing leaks into other users of hls4ml in the same process.
"""

from __future__ import annotations

import contextlib
import re
import types
from collections.abc import Iterator, Mapping

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
    """The line of the GarNet config that declares ``distance`` (e.g. ``fixed<15,3,TRN,SAT>``) as
    ``distance_t``, as hls4ml 1.3's template writes it."""
    from trigflow.quantize.fixed import FixedType

    d = FixedType.parse(distance)
    return f"typedef ap_fixed<{d.width}, {d.integer}, AP_TRN, AP_SAT> distance_t;"


@contextlib.contextmanager
def garnet_widths(widths: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """Replaces: for the GarNet layers named in ``widths`` ({layer: {"distance": "fixed<15,3,TRN,SAT>",
    "weight_frac": "14"}}, the keys of a GarNet mirror's types), hls4ml 1.3's hard-coded weight precision
    (``GarNet._add_variable``'s ``frac_width=10``; the integer bits still come from the data) and the
    distance type its template writes (``GarNetConfigTemplate.format``: ``distance_width = 12``,
    ``ap_fixed<12, 4, AP_TRN, AP_SAT>``; the exp(-d²) table follows the width). Why: with raw-unit inputs the
    12-bit distance and the 10-bit weights alone make the firmware differ from the user's float GarNet on
    0.7 % of jets (``docs/verify_graphs.md``); the mirror (``models.gnn.GarNetHLS``) computes with the same
    widths, so firmware = mirror stays bit-exact."""
    from hls4ml.backends.vivado.passes import garnet_templates
    from hls4ml.model import layers

    from trigflow.errors import TrigflowError
    from trigflow.quantize.fixed import FixedType

    real_add, real_format = layers.GarNet._add_variable, garnet_templates.GarNetConfigTemplate.format

    def add_variable(self, name, var_name, data, frac_width=10, quantize=False):
        if self.name in widths and not quantize:
            frac_width = int(widths[self.name]["weight_frac"])
        real_add(self, name, var_name, data, frac_width=frac_width, quantize=quantize)

    def format(self, node):
        text = real_format(self, node)
        if node.name not in widths:
            return text
        d = FixedType.parse(widths[node.name]["distance"])
        text, n_width = re.subn(r"distance_width = \d+;", f"distance_width = {d.width};", text)
        text, n_type = re.subn(
            r"typedef ap_fixed<\d+, \d+, AP_TRN, AP_SAT> distance_t;",
            garnet_distance_typedef(widths[node.name]["distance"]), text,
        )
        if (n_width, n_type) != (1, 1):
            raise TrigflowError(
                f"GarNet '{node.name}': hls4ml's GarNet template no longer writes distance_width/distance_t "
                "as hls4ml 1.3 did; use hls4ml 1.3"
            )
        return text

    layers.GarNet._add_variable = add_variable
    garnet_templates.GarNetConfigTemplate.format = format
    try:
        yield
    finally:
        layers.GarNet._add_variable = real_add
        garnet_templates.GarNetConfigTemplate.format = real_format
