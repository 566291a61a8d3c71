"""Data layer: measure how fast the data generators run on this machine; results go to a JSON file.

Usage::

    python scripts/bench_generators.py                 # jets and anomaly on 1 and 2 local workers and local Ray
    python scripts/bench_generators.py jets --n 500 --engines 2
    python scripts/bench_generators.py anomaly-adc2021 --n 200 --engines 1   # the weighted QCD of --selection adc2021

One function per kind, registered in ``BENCHMARKS``; each returns a dict of measurements. Engines: ``1`` and
``2`` are local worker processes, ``ray`` a local Ray cluster of 2 CPUs (``trigflow data ... --address
local``). Results are merged into ``scripts/results/generators.json`` under ``kind/engine``, so other
measurements are kept, and rendered into the ``generators`` section of BENCHMARKS.md, with the core-minutes
that generating each embedded data set takes at the 1-worker rate (issue #20's budget: 30).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_csim import machine, write_section  # noqa: E402  (the benchmarks' shared helpers)
from generate_embedded_data import EMBEDDED_ANOMALY, EMBEDDED_JETS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "generators.json"
MARKDOWN = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
ENGINES = {"1": (1, None), "2": (2, None), "ray": (2, "local")}  # name -> (workers, Ray address)
EMBEDDED_ITEMS = {
    "jets": EMBEDDED_JETS["n"],
    "anomaly": EMBEDDED_ANOMALY["n_background"] + 4 * EMBEDDED_ANOMALY["n_signal"],
}
BUDGET_CORE_MINUTES = 30


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


def bench_anomaly(n: int, workers: int, selection: str = "trigflow") -> dict:
    """L1 anomaly events (Pythia8 + FastJet + smearing): ``n`` background + ``n // 4`` per signal.

    Per process: kept (preselected) and generated Pythia events per second of one worker, init included.
    ``selection="adc2021"`` (the weighted file) adds the lepton-enriched QCD's worker-seconds per effective
    event (Kish, from the file's weights).
    """
    import numpy as np

    from trigflow.data.anomaly import generate_anomaly, load_anomaly
    from trigflow.kinds.ae import effective_count

    n_signal = max(1, n // 4)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = generate_anomaly(
            Path(tmp) / "anomaly.h5", n, n_signal, seed=12345, workers=workers, selection=selection
        )
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
    row = {
        "n_background": n,
        "n_signal": n_signal,
        "workers": workers,
        "seconds": round(seconds, 2),
        "events_per_s": round(len(data) / seconds, 2),
        "per_process": per_process,
        "generator": data.attrs["generator"],
    }
    if data.weight is not None:
        qcd_names = [name for name in data.components if name.startswith("qcd_hf")]
        qcd = np.isin(np.asarray(data.components)[data.component], qcd_names)
        w = data.weight[qcd]
        qcd_seconds = sum(stats[name]["seconds"] for name in qcd_names)
        n_eff = effective_count(w, len(w))
        row["qcd"] = {
            "events": int(qcd.sum()),
            "effective_events": round(n_eff, 1),
            "worker_seconds": round(qcd_seconds, 1),
            "worker_s_per_effective_event": round(qcd_seconds / n_eff, 2),
            "per_bin": {
                name: {k: stats[name][k] for k in ("kept", "generated", "seconds", "sigma_pass_pb")}
                for name in qcd_names
            },
        }
    return row


BENCHMARKS: dict[str, Callable[[int, int], dict]] = {
    "jets": bench_jets,
    "anomaly": bench_anomaly,
    "anomaly-adc2021": functools.partial(bench_anomaly, selection="adc2021"),
}
DEFAULT_KINDS = ["jets", "anomaly"]  # anomaly-adc2021 takes minutes per engine: run it by name
QCD_TARGET = 20_280  # effective weighted QCD events that would match the embedded file's QCD count


def items_per_s(row: dict) -> float:
    return row["jets_per_s"] if "jets_per_s" in row else row["events_per_s"]


def render(results: dict) -> str:
    lines = [
        "<!-- generators:start -->",
        "## Data generation (Pythia8 + FastJet)",
        "",
        "Generated by `python scripts/bench_generators.py` (raw numbers: `scripts/results/generators.json`). "
        "Items = jets or anomaly events written; Pythia events include those the selection rejects. "
        "Engines: local worker processes, or a local Ray cluster of 2 CPUs (`--address local`); the file is "
        "the same for the same seed on every engine. Embedded set: core-minutes to generate it at the 1-worker "
        f"rate (budget {BUDGET_CORE_MINUTES}).",
        "",
        "| data | engine | items | seconds | items/s | Pythia events/s | load at start | embedded set, core-minutes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in sorted(results, key=lambda k: k.partition("/")):
        kind, _, engine = key.partition("/")
        row = results[key]
        if kind not in BENCHMARKS or not engine:
            continue
        items = row.get("n_jets", row.get("n_background", 0) + 4 * row.get("n_signal", 0))
        pythia = row.get("events_per_s") if "jets_per_s" in row else None
        core_min = EMBEDDED_ITEMS[kind] / items_per_s(row) / 60 if engine == "1" and kind in EMBEDDED_ITEMS else None
        lines.append(
            f"| {kind} | {engine} | {items:,} | {row['seconds']:.1f} | {items_per_s(row):.1f} | "
            f"{'–' if pythia is None else f'{pythia:.1f}'} | {row['machine']['load_average_1min']} | "
            f"{'–' if core_min is None else f'{core_min:.1f}'} |"
        )
    for key in sorted(k for k in results if k.startswith("anomaly-adc2021/")):
        q = results[key]["qcd"]
        per_event = q["worker_s_per_effective_event"]
        bins = " / ".join(f"{b['kept']}" for b in q["per_bin"].values())
        lines.append(
            f"\n`{key}` (`--selection adc2021`, not an embedded set): its weighted lepton-enriched QCD, "
            f"{q['events']:,} events ({bins} in the pT-hat bins {' / '.join(q['per_bin'])}) worth "
            f"{q['effective_events']:,.1f} effective ones, took {q['worker_seconds']:,.0f} worker-s, i.e. "
            f"{per_event:.1f} worker-s per effective QCD event: {QCD_TARGET * per_event / 60:,.0f} core-minutes "
            f"for as many effective events as the embedded file's {QCD_TARGET:,} QCD events (a small sample: "
            "the rate is uncertain by about 1/√(events) of its costliest bin)."
        )
    lines.append("<!-- generators:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", help=f"kinds to measure: {', '.join(BENCHMARKS)} (default: {', '.join(DEFAULT_KINDS)})")
    parser.add_argument("--n", type=int, default=500, help="items to generate per kind")
    parser.add_argument("--engines", default="1,2,ray", help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to merge the results into")
    parser.add_argument("--out-md", type=Path, default=MARKDOWN, help="markdown file with the generators section")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    from trigflow.data.parallel import cluster
    from trigflow.fsio import write_text

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = {k: v for k, v in results.items() if "/" in k}  # rows of the old layout had no engine
    for kind in args.kinds or DEFAULT_KINDS:
        for engine in args.engines.split(","):
            workers, address = ENGINES[engine]
            before = machine()
            with cluster(address):
                row = BENCHMARKS[kind](args.n, workers)
            results[f"{kind}/{engine}"] = {**row, "engine": engine, "machine": before, "when": time.ctime()}
            print(kind, engine, json.dumps(row)[:300], flush=True)
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    write_section(args.out_md, render(results))


if __name__ == "__main__":
    main()
