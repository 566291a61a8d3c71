"""Data layer: regenerate the data files shipped in ``trigflow/data/embedded/``.

Usage::

    python scripts/generate_embedded_data.py                  # every kind
    python scripts/generate_embedded_data.py jets --force     # only the jet file, overwriting it

One function per kind, registered in ``GENERATORS``; each writes its file and returns the path.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

EMBEDDED_JETS = {"n": 50_000, "seed": 0, "n_constituents": 16, "image_size": 16}


def generate_embedded_jets(*, workers: int | None, force: bool) -> Path:
    """50,000 jets (10,000 per class g, q, W, Z, t) with HLF, 16 constituents and 16×16 images."""
    from trigflow.data.jets import embedded_jets_path, generate_jets

    return generate_jets(embedded_jets_path(), workers=workers, force=force, **EMBEDDED_JETS)


def describe_jets(path: Path) -> str:
    from trigflow.data import JET_CLASSES
    from trigflow.data.jets import load_jets

    jets = load_jets(path)
    counts = ", ".join(f"{name}={int((jets.label == i).sum())}" for i, name in enumerate(JET_CLASSES))
    return f"{len(jets)} jets ({counts})"


EMBEDDED_ANOMALY = {"n_background": 60_000, "n_signal": 5_000, "seed": 0}


def generate_embedded_anomaly(*, workers: int | None, force: bool) -> Path:
    """60,000 Standard-Model events + 5,000 per signal (4 signals) in the ADC2021 57-input layout."""
    from trigflow.data.anomaly import embedded_anomaly_path, generate_anomaly

    return generate_anomaly(embedded_anomaly_path(), workers=workers, force=force, **EMBEDDED_ANOMALY)


def describe_anomaly(path: Path) -> str:
    from trigflow.data.anomaly import load_anomaly

    data = load_anomaly(path)
    counts = ", ".join(f"{name}={int((data.process == i).sum())}" for i, name in enumerate(data.processes))
    return f"{len(data)} events ({counts})"


GENERATORS: dict[str, Callable[..., Path]] = {
    "jets": generate_embedded_jets,
    "anomaly": generate_embedded_anomaly,
}
DESCRIBERS: dict[str, Callable[[Path], str]] = {"jets": describe_jets, "anomaly": describe_anomaly}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", help=f"kinds to generate: {', '.join(GENERATORS)} (default: all)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(GENERATORS)}")
    for kind in args.kinds or list(GENERATORS):
        path = GENERATORS[kind](workers=args.workers, force=args.force)
        path.chmod(0o644)  # shipped with the package: readable by everyone (temporary files start as 0600)
        summary = DESCRIBERS[kind](path) if kind in DESCRIBERS else ""
        print(f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB) {summary}".rstrip())


if __name__ == "__main__":
    main()
