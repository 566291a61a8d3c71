"""Data layer: physics data sets as HDF5 files and the arrays the models train on.

One module per data set (``jets``, ``anomaly``) plus ``public`` loaders for the public files; all readers return
plain numpy arrays in a small dataclass so later stages never touch HDF5.
"""

from __future__ import annotations

JET_CLASSES: tuple[str, ...] = ("g", "q", "w", "z", "t")

HLF_NAMES: tuple[str, ...] = (
    "zlogz",
    "c1_b0_mmdt",
    "c1_b1_mmdt",
    "c1_b2_mmdt",
    "c2_b1_mmdt",
    "c2_b2_mmdt",
    "d2_b1_mmdt",
    "d2_b2_mmdt",
    "d2_a1_b1_mmdt",
    "d2_a1_b2_mmdt",
    "m2_b1_mmdt",
    "m2_b2_mmdt",
    "n2_b1_mmdt",
    "n2_b2_mmdt",
    "mass_mmdt",
    "multiplicity",
)
