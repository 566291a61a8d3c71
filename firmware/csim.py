"""Firmware layer: running the compiled C-simulation on arrays."""

from __future__ import annotations

import contextlib
import io

import numpy as np


def predict(hls_model, x: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """C-simulation outputs for ``x`` (one row per sample), as float64 so no bit is lost. A model with several
    inputs takes a list of arrays, one per input."""
    if isinstance(x, (list, tuple)):
        x = [np.ascontiguousarray(a, dtype=np.float64) for a in x]
        n = len(x[0])
    else:
        x = np.ascontiguousarray(x, dtype=np.float64)
        n = len(x)
    with contextlib.redirect_stdout(io.StringIO()):
        y = hls_model.predict(x)
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(n, -1)
