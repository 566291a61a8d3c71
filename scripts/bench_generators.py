"""Data layer: measure how fast the data generators run on this machine; results go to a JSON file.

Usage::

    python scripts/bench_generators.py                 # every kind
    python scripts/bench_generators.py jets --n 500 --workers 2

One function per kind, registered in ``BENCHMARKS``; each returns a dict of measurements. Results are merged
into ``scripts/results/generators.json`` under the kind's name, so benchmarks of other kinds are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_csim import machine  # noqa: E402  (one description of the machine for every benchmark)

RESULTS = Path(__file__).resolve().parent / "results" / "generators.json"


def bench_jets(n: int, workers: int) -> dict:
    """Pythia8 + FastJet jet generation: jets/s and Pythia events/s of ``generate_jets`` (default options)."""
    from trigflow.data.jets import generate_jets, load_jets

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = generate_jets(Path(tmp) / "jets.h5", n, seed=12345, workers=workers)
        seconds = time.perf_counter() - start
        attrs = load_jets(path).attrs
    return {
        "n_jets": n,
        "workers": workers,
        "seconds": round(seconds, 2),
        "jets_per_s": round(n / seconds, 2),
        "events_per_s": round(attrs["n_events"] / seconds, 2),
        "pythia_events": attrs["n_events"],
        "options": {"n_constituents": attrs["n_constituents"], "image_size": attrs["image_size"]},
        "generator": attrs["generator"],
    }


def bench_anomaly(n: int, workers: int) -> dict:
    """L1 anomaly events (Pythia8 + FastJet + smearing): ``n`` background + ``n // 4`` per signal.

    Per process: kept (preselected) and generated Pythia events per second of one worker, init included.
    """
    from trigflow.data.anomaly import generate_anomaly, load_anomaly

    n_signal = max(1, n // 4)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = generate_anomaly(Path(tmp) / "anomaly.h5", n, n_signal, seed=12345, workers=workers)
        seconds = time.perf_counter() - start
        data = load_anomaly(path)
    stats = json.loads(data.attrs["generation_stats"])
    per_process = {
        name: {
            "kept": s["kept"],
            "generated": s["generated"],
            "preselection_efficiency": round(s["kept"] / s["generated"], 3),
            "kept_per_worker_s": round(s["kept"] / s["seconds"], 1),
            "generated_per_worker_s": round(s["generated"] / s["seconds"], 1),
        }
        for name, s in stats.items()
        if s["generated"]
    }
    return {
        "n_background": n,
        "n_signal": n_signal,
        "workers": workers,
        "seconds": round(seconds, 2),
        "events_per_s": round(len(data) / seconds, 2),
        "per_process": per_process,
        "generator": data.attrs["generator"],
    }


BENCHMARKS: dict[str, Callable[[int, int], dict]] = {"jets": bench_jets, "anomaly": bench_anomaly}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", help=f"kinds to measure: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--n", type=int, default=500, help="items to generate per kind")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to merge the results into")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for kind in args.kinds or list(BENCHMARKS):
        before = machine()
        results[kind] = {**BENCHMARKS[kind](args.n, args.workers), "machine": before, "when": time.ctime()}

    from trigflow.fsio import write_text

    write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
