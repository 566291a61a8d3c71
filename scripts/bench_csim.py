"""Firmware layer: how fast the C-simulation runs — trigflow fast C-sim vs hls4ml predict vs onnxruntime.

Usage::

    python scripts/bench_csim.py                    # jet MLP 16-64-32-32-5 and a small io_stream CNN
    python scripts/bench_csim.py --samples 50000 --repeats 3 --no-cnn

Per model, on one compiled hls4ml project: samples/s of hls4ml ``predict`` (``trigflow.firmware.csim``), of
``FastSim.predict`` with 1 worker and with every core, and of onnxruntime on the tf2onnx export of the same
QKeras model; the fast C-sim outputs are checked bit for bit against hls4ml predict. Every method runs
``--repeats`` times, interleaved in short rounds, and the best run counts (the machine is shared: the best run
is the least disturbed one); medians too. As the wall clock depends on what else runs, the CPU time of every
run is measured as well: samples per CPU-second, the CPUs obtained, and the rate an idle machine would give.
Then the start-up of ``cached_convert``: cold (empty cache: convert + compile), cached in the same process, and
cached in a fresh Python process (imports excluded).
Writes ``scripts/results/csim.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "csim.json"


def machine() -> dict:
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def jet_mlp():
    from trigflow.models.mlp import build_mlp
    from trigflow.quantize.presets import QuantSpec

    spec = QuantSpec()
    return build_mlp(spec=spec, seed=0), spec, "fixed<16,6,RND_CONV,SAT>", "io_parallel"


def small_cnn():
    """8×8×2 image → QConv2D 4×3×3 → ReLU → QDense 5, io_stream (so the fast C-sim runs in processes)."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from trigflow.quantize.presets import QuantSpec

    spec = QuantSpec(bits=6, input_bits=10, input_integer=3)
    w = dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))
    init = tf.keras.initializers.GlorotUniform
    inputs = tf.keras.Input((8, 8, 2), name="image")
    x = QActivation(spec.input(), name="input_quant")(inputs)
    x = QConv2D(4, (3, 3), kernel_initializer=init(0), name="conv", **w)(x)
    x = QActivation(quantized_relu(6, 0), name="relu")(x)
    x = tf.keras.layers.Flatten(name="flat")(x)
    x = QDense(5, kernel_initializer=init(1), name="logits", **w)(x)
    return tf.keras.Model(inputs, x, name="q_cnn"), spec, spec.input_type, "io_stream"


MODELS: dict[str, Callable] = {"jet_mlp_16_64_32_32_5": jet_mlp, "cnn_8x8x2_io_stream": small_cnn}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (g++, forked workers), µs resolution."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def autogroup_note() -> str | None:
    """On a busy Linux kernel with autogroup, CPU time is shared per session, not per thread: say so."""
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None
    if enabled and os.getloadavg()[0] > len(os.sched_getaffinity(0)):
        return (
            "sched_autogroup is on and the machine is busy: the kernel gives this session one fair share of "
            "the CPUs however many threads/processes it runs, so wall-clock scaling with workers cannot show "
            "here; compare samples_per_cpu_s (work per CPU-second), cpu_share (CPUs obtained) and "
            "projected_on_idle_cores instead"
        )
    return None


def interleaved(
    methods: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, object]]:
    """``repeats`` rounds of every method in turn: wall seconds, CPU seconds per call, last outputs."""
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    outputs: dict[str, object] = {}
    for _ in range(repeats):
        for method, fn in methods.items():
            c0 = cpu_seconds()
            t, outputs[method] = timed(fn)
            cpu[method].append(cpu_seconds() - c0)
            seconds[method].append(t)
    return seconds, cpu, outputs


def bench_model(name: str, samples: int, repeats: int, workdir: Path) -> dict:
    import onnxruntime as ort

    from trigflow.firmware.convert import FirmwareSpec, convert
    from trigflow.firmware.csim import predict
    from trigflow.firmware.fastsim import FastSim, available_cores
    from trigflow.onnx import export_onnx

    model, qspec, input_type, io_type = MODELS[name]()
    rng = np.random.default_rng(1)
    x = qspec.quantize_input(rng.normal(scale=2, size=(samples, *model.input_shape[1:])))
    hls_model = convert(model, workdir / name, FirmwareSpec(input_type=input_type, io_type=io_type))
    sim = FastSim.from_project(workdir / name)
    onnx_path = export_onnx(model, workdir / f"{name}.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x32 = np.asarray(x, dtype=np.float32)
    input_name = session.get_inputs()[0].name
    cores = available_cores()

    methods: dict[str, Callable[[], object]] = {
        "hls4ml_predict": lambda: predict(hls_model, x),
        "fast_1_worker": lambda: sim.predict(x, threads=1),
        f"fast_{cores}_workers": lambda: sim.predict(x, threads=cores),
        "onnxruntime": lambda: session.run(None, {input_name: x32})[0],
    }
    seconds, cpu, outputs = interleaved(methods, repeats)
    best = {m: samples / min(ts) for m, ts in seconds.items()}
    median = {m: samples / statistics.median(ts) for m, ts in seconds.items()}
    per_cpu = {m: samples / statistics.median(cs) for m, cs in cpu.items()}
    # What an otherwise idle machine would give: work per CPU-second × the cores each method can use
    # (hls4ml predict is one Python loop: one core; onnxruntime is left out, its threads spin).
    usable = {"hls4ml_predict": 1, "fast_1_worker": 1, f"fast_{cores}_workers": cores}
    idle = {m: per_cpu[m] * usable[m] for m in usable}
    share = {m: statistics.median(c / t for c, t in zip(cpu[m], seconds[m])) for m in methods}
    fast = f"fast_{cores}_workers"

    def ratios(rate: dict[str, float]) -> dict[str, float]:
        return {
            "fast_vs_hls4ml_predict": round(rate[fast] / rate["hls4ml_predict"], 3),
            "fast_1_worker_vs_hls4ml_predict": round(rate["fast_1_worker"] / rate["hls4ml_predict"], 3),
            f"fast_{cores}_vs_1_worker": round(rate[fast] / rate["fast_1_worker"], 3),
            "fast_vs_onnxruntime": round(rate[fast] / rate["onnxruntime"], 4),
        }

    y_hls = outputs["hls4ml_predict"]
    return {
        "samples": samples,
        "repeats": repeats,
        "io_type": io_type,
        "fast_mode": sim.mode,
        "fast_mode_reason": sim.mode_reason,
        "bit_equal_to_hls4ml_predict": bool(
            np.array_equal(outputs[fast], y_hls) and np.array_equal(outputs["fast_1_worker"], y_hls)
        ),
        "samples_per_s_best": {m: round(v, 1) for m, v in best.items()},
        "samples_per_s_median": {m: round(v, 1) for m, v in median.items()},
        "ratios_best": ratios(best),
        "ratios_median": ratios(median),
        "samples_per_cpu_s": {m: round(v, 1) for m, v in per_cpu.items()},
        "cpu_share": {m: round(v, 2) for m, v in share.items()},
        "projected_on_idle_cores": {
            "samples_per_s": {m: round(v, 1) for m, v in idle.items()},
            "fast_vs_hls4ml_predict": round(idle[fast] / idle["hls4ml_predict"], 3),
        },
        "onnxruntime_max_abs_diff_vs_csim": float(
            np.max(np.abs(np.asarray(outputs["onnxruntime"]).reshape(samples, -1) - y_hls))
        ),
    }


FRESH = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {scripts!r})
from bench_csim import jet_mlp
from trigflow.firmware.cache import cached_convert
from trigflow.firmware.convert import FirmwareSpec
model, _, input_type, io_type = jet_mlp()
start = time.perf_counter()
spec = FirmwareSpec(input_type=input_type, io_type=io_type)
project, sim = cached_convert(model, spec, cache_dir={cache!r})
sim.predict(__import__("numpy").zeros((1, 16)))
print(time.perf_counter() - start)
"""


def bench_start(workdir: Path) -> dict:
    """Seconds from ``cached_convert`` to the first output: cold cache, cached, cached in a new process."""
    import trigflow.firmware.convert as conversion
    from trigflow.firmware.cache import cached_convert
    from trigflow.firmware.convert import FirmwareSpec

    model, _, input_type, io_type = jet_mlp()
    spec = FirmwareSpec(input_type=input_type, io_type=io_type)
    cache = workdir / "cache"
    one = np.zeros((1, 16))
    def start() -> object:
        return cached_convert(model, spec, cache_dir=cache)[1].predict(one)

    c0 = cpu_seconds()
    cold, _ = timed(start)
    cold_cpu = cpu_seconds() - c0
    real, conversion.convert = conversion.convert, None  # a hit must not convert
    try:
        hot = [timed(start)[0] for _ in range(3)]
    finally:
        conversion.convert = real
    script = FRESH.format(scripts=str(Path(__file__).resolve().parent), cache=str(cache))
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    fresh_s = float(fresh.stdout.strip().splitlines()[-1])
    return {
        "model": "jet_mlp_16_64_32_32_5",
        "cold_s": round(cold, 2),
        "cold_cpu_s": round(cold_cpu, 2),
        "cached_same_process_s": round(min(hot), 3),
        "cached_fresh_process_s": round(fresh_s, 3),
        "cold_vs_cached": round(cold / min(hot), 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="samples per timed run (MLP; CNN: ¼)")
    parser.add_argument("--repeats", type=int, default=8, help="interleaved rounds; the best run counts")
    parser.add_argument("--no-cnn", action="store_true", help="only the jet MLP")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from trigflow.fsio import write_text
    from trigflow.pipeline import versions

    result: dict = {"machine": machine(), "note": autogroup_note(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench_csim.") as tmp:
        workdir = Path(tmp)
        for name in MODELS:
            if args.no_cnn and "cnn" in name:
                continue
            n = args.samples if "mlp" in name else max(1000, args.samples // 4)
            result["models"][name] = bench_model(name, n, args.repeats, workdir)
        result["start"] = bench_start(workdir)
    result["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    result["versions"] = versions()
    text = json.dumps(result, indent=2)
    write_text(args.out, text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
