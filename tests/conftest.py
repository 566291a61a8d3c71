"""Shared fixtures: small data files in the trigflow layouts, built without the generators."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path

import h5py
import numpy as np
import pytest

from trigflow.data import HLF_NAMES, JET_CLASSES


def write_fake_jets(path: Path, n: int = 6000, seed: int = 1) -> Path:
    """Jets file in the generator's layout with class-dependent Gaussian features (learnable, not physics)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(JET_CLASSES), n).astype(np.int8)
    centres = rng.normal(size=(len(JET_CLASSES), len(HLF_NAMES)))
    hlf = (centres[label] + rng.normal(size=(n, len(HLF_NAMES)))) * rng.uniform(0.1, 50, len(HLF_NAMES))
    with h5py.File(path, "w") as f:
        f.create_dataset("hlf", data=hlf.astype(np.float32)).attrs["names"] = list(HLF_NAMES)
        f.create_dataset("label", data=label).attrs["classes"] = list(JET_CLASSES)
        for name in ("pt", "eta", "mass"):
            f.create_dataset(name, data=rng.uniform(1, 2, n).astype(np.float32))
        f.attrs["generator"] = "test fixture"
        f.attrs["seed"] = seed
    return path


@pytest.fixture(scope="session")
def fake_jets(tmp_path_factory) -> Path:
    return write_fake_jets(tmp_path_factory.mktemp("data") / "fake_jets.h5")
