"""Data layer: opening trigflow HDF5 files with one-line errors, and writing them atomically."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_file


@contextlib.contextmanager
def open_h5(path: str | os.PathLike, required: tuple[str, ...] = ()) -> Iterator["h5py.File"]:  # noqa: F821
    """Open an HDF5 file for reading; missing, corrupt or incomplete files raise TrigflowError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"data file {path} not found; generate it with `trigflow data ...` or fix the path")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrigflowError(
            f"data file {path} is not a readable HDF5 file (corrupt or truncated: {exc.__class__.__name__}); "
            "regenerate it"
        ) from None
    try:
        missing = [k for k in required if k not in f]
        if missing:
            raise TrigflowError(f"data file {path} lacks dataset(s) {', '.join(missing)}; regenerate it")
        yield f
    finally:
        f.close()


@contextlib.contextmanager
def create_h5(path: str | os.PathLike, *, force: bool = False) -> Iterator["h5py.File"]:  # noqa: F821
    """Create an HDF5 file at a temporary path; it appears at ``path`` only once fully written."""
    import h5py

    with atomic_file(path, force=force) as tmp:
        with h5py.File(tmp, "w") as f:
            yield f
