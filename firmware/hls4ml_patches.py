"""Firmware layer: every change trigflow makes to hls4ml's own code, in one place.

Each patch is a context manager that replaces one hls4ml 1.3 attribute for the duration of one conversion
and restores it afterwards, so nothing leaks into other users of hls4ml in the same process.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

__all__ = ["fixed_stamp", "python_bool_signedness"]


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
