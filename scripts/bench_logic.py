"""Firmware layer: the compiled emulator of an RTL project's logic against da4ml's interpreter of the same logic.

Usage::

    python scripts/bench_logic.py PROJECT/rtl [MORE/rtl ...] [--samples 20000] [--repeats 3]

For each RTL folder written by ``trigflow rtl`` (``model/comb.json``): the g++ build time of
``firmware.logic_emulator``, samples/s of the emulator and of da4ml's interpreter on one thread, on inputs drawn
on the design's input grid, and whether the two agree on every sample. Writes ``scripts/results/logic.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "logic.json"


def grid_inputs(logic, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.integers(round(q.min / q.step), round(q.max / q.step) + 1, n) * q.step for q in logic.inp_qint], axis=1
    )


def best_rate(fn, n: int, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return n / min(seconds)


def bench(folder: Path, samples: int, repeats: int) -> dict:
    from da4ml.cmvm.types import CombLogic

    from trigflow.firmware.logic_emulator import compile_logic

    logic = CombLogic.load(folder / "model" / "comb.json")
    x = grid_inputs(logic, samples)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        emulator = compile_logic(logic, tmp)
        build_s = time.perf_counter() - start
        equal = bool(np.array_equal(emulator.predict(x, threads=1), logic.predict(x, n_threads=1)))
        return {
            "ops": len(logic.ops),
            "samples": samples,
            "emulator_build_s": round(build_s, 1),
            "equal_on_every_sample": equal,
            "emulator_samples_per_s": round(best_rate(lambda: emulator.predict(x, threads=1), samples, repeats)),
            "interpreter_samples_per_s": round(
                best_rate(lambda: logic.predict(x, n_threads=1), samples, repeats)
            ),
        }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="RTL folders written by trigflow rtl")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = {str(folder): bench(folder, args.samples, args.repeats) for folder in args.folders}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
