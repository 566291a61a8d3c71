"""Firmware layer: running the compiled C-simulation on arrays — the one C-sim entry point of every proof.

hls4ml's ``ModelGraph.predict`` (one call per sample into the compiled library). A batched C++ loop was
measured at 1.9-3.0x with two workers but needs its own g++ build (5-18 s), which only pays above ~11k-155k
samples per project; proofs run 2k-10k, so it was removed.
"""

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
