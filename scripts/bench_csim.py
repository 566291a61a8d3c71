"""Firmware layer: how fast the exact engines run — hls4ml predict (the proof's C-sim), the compiled emulator of
the RTL's logic, the RTL's Verilator model, da4ml's interpreter and the exact QKeras reference — against
onnxruntime (float, not exact).

Usage::

    python scripts/bench_csim.py                    # jet MLP 16-64-32-32-5 and a small io_stream CNN
    python scripts/bench_csim.py --samples 50000 --repeats 3 --no-cnn
    python scripts/bench_csim.py --no-cnn --engines # also the MLP's RTL (a Verilator build of minutes)

Per model, on one compiled hls4ml project: samples/s of hls4ml ``predict`` (``trigflow.firmware.csim``) and
of onnxruntime on the tf2onnx export of the same QKeras model. With ``--engines`` (io_parallel models): the
same model traced into RTL (``firmware.rtl.build_rtl``), its logic compiled by ``firmware.logic_emulator``, its
Verilator simulation and da4ml's interpreter, and
``proof.reference.exact_predict``; each exact engine's outputs are checked equal to hls4ml's on every sample
(``bit_exact_vs_csim``), and the BENCHMARKS.md section ``engines`` gets the table. Every method runs
``--repeats`` times, interleaved in short rounds, and the best run counts (the machine is shared: the best run
is the least disturbed one); medians too. As the wall clock depends on what else runs, the CPU time of every
run is measured as well: samples per CPU-second, the CPUs obtained, and the rate an idle machine would give.
Writes ``scripts/results/csim.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
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


def write_section(path: Path, section: str) -> str:
    """``path``'s text with the section marked like ``section`` (it starts with ``<!-- NAME:start -->`` and
    ends with ``<!-- NAME:end -->``) replaced by it, or appended when absent; returns the new text."""
    import re

    from trigflow.fsio import write_text

    name = re.match(r"<!-- ([\w-]+):start -->", section).group(1)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.is_file() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + section.rstrip("\n") + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section.rstrip("\n") + "\n"
    write_text(path, text)
    return text


def jet_mlp():
    from trigflow.models.mlp import build_mlp
    from trigflow.quantize.presets import QuantSpec

    spec = QuantSpec()
    return build_mlp(spec=spec, seed=0), spec, "fixed<16,6,RND_CONV,SAT>", "io_parallel"


def small_cnn():
    """8×8×2 image → QConv2D 4×3×3 → ReLU → QDense 5, io_stream."""
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


ENGINES = ("logic_emulator", "rtl_verilator", "da4ml_interpreter", "exact_reference")  # must equal hls4ml predict
MARKDOWN = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def exact_engines(model, qspec, x, workdir: Path) -> tuple[dict[str, Callable[[], object]], float]:
    """The compiled emulator of the RTL's logic, the RTL (Verilator), da4ml's interpreter of the same logic and
    the exact reference, as methods; and the seconds the RTL took to trace and build (the emulator's g++ build
    included)."""
    from trigflow.firmware.rtl import build_rtl
    from trigflow.proof.reference import exact_predict

    start = time.perf_counter()
    kif = (1, qspec.input_integer, qspec.input_bits - 1 - qspec.input_integer)
    project = build_rtl(model, kif, workdir / "rtl", max_lut=float("inf"))
    emulator = project.emulator()
    build_s = time.perf_counter() - start
    methods = {
        "logic_emulator": lambda: emulator.predict(x, threads=1),  # one core: its rate per CPU-second
        "rtl_verilator": lambda: project.predict(x),
        "da4ml_interpreter": lambda: project.interpret(x),
        "exact_reference": lambda: exact_predict(model, x),
    }
    return methods, build_s


def bench_model(name: str, samples: int, repeats: int, workdir: Path, engines: bool = False) -> dict:
    import onnxruntime as ort

    from trigflow.firmware.convert import FirmwareSpec, convert
    from trigflow.firmware.csim import predict
    from trigflow.onnx import export_onnx

    model, qspec, input_type, io_type = MODELS[name]()
    rng = np.random.default_rng(1)
    x = qspec.quantize_input(rng.normal(scale=2, size=(samples, *model.input_shape[1:])))
    hls_model = convert(model, workdir / name, FirmwareSpec(input_type=input_type, io_type=io_type))
    onnx_path = export_onnx(model, workdir / f"{name}.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x32 = np.asarray(x, dtype=np.float32)
    input_name = session.get_inputs()[0].name

    methods: dict[str, Callable[[], object]] = {
        "hls4ml_predict": lambda: predict(hls_model, x),
        "onnxruntime": lambda: session.run(None, {input_name: x32})[0],
    }
    rtl_build_s = None
    engines = engines and io_type == "io_parallel"  # the RTL path is io_parallel only
    if engines:
        more, rtl_build_s = exact_engines(model, qspec, x, workdir)
        methods.update(more)
    seconds, cpu, outputs = interleaved(methods, repeats)
    best = {m: samples / min(ts) for m, ts in seconds.items()}
    median = {m: samples / statistics.median(ts) for m, ts in seconds.items()}
    per_cpu = {m: samples / statistics.median(cs) for m, cs in cpu.items()}
    share = {m: statistics.median(c / t for c, t in zip(cpu[m], seconds[m])) for m in methods}
    y_hls = outputs["hls4ml_predict"]
    exact = {
        m: float(np.mean(np.all(np.asarray(outputs[m], np.float64).reshape(samples, -1) == y_hls, axis=1)))
        for m in ENGINES if m in outputs
    }
    return {
        **({"bit_exact_vs_csim": exact, "rtl_build_s": round(rtl_build_s, 1)} if engines else {}),
        "samples": samples,
        "repeats": repeats,
        "io_type": io_type,
        "samples_per_s_best": {m: round(v, 1) for m, v in best.items()},
        "samples_per_s_median": {m: round(v, 1) for m, v in median.items()},
        "samples_per_cpu_s": {m: round(v, 1) for m, v in per_cpu.items()},
        "cpu_share": {m: round(v, 2) for m, v in share.items()},
        "onnxruntime_max_abs_diff_vs_csim": float(
            np.max(np.abs(np.asarray(outputs["onnxruntime"]).reshape(samples, -1) - y_hls))
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="samples per timed run (MLP; CNN: ¼)")
    parser.add_argument("--repeats", type=int, default=8, help="interleaved rounds; the best run counts")
    parser.add_argument("--no-cnn", action="store_true", help="only the jet MLP")
    parser.add_argument("--engines", action="store_true", help="also RTL, da4ml interpreter, exact reference")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--out-md", type=Path, default=MARKDOWN, help="where the engines section goes")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    from trigflow.fsio import write_text
    from trigflow.proof.checks import versions

    result: dict = {"machine": machine(), "note": autogroup_note(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench_csim.") as tmp:
        workdir = Path(tmp)
        for name in MODELS:
            if args.no_cnn and "cnn" in name:
                continue
            n = args.samples if "mlp" in name else max(1000, args.samples // 4)
            result["models"][name] = bench_model(name, n, args.repeats, workdir, args.engines)
    result["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    result["versions"] = versions()
    text = json.dumps(result, indent=2)
    write_text(args.out, text + "\n")
    print(text)
    if args.engines:
        write_section(args.out_md, render_engines(result, " ".join(["python scripts/bench_csim.py", *argv]), args.out))
    return result


def render_engines(result: dict, command: str, raw: Path) -> str:
    """BENCHMARKS.md section: samples/s of every engine on each model, relative to hls4ml predict."""
    lines = [
        "<!-- engines:start -->",
        "## Exact engines (samples/s, same model and inputs; issue #19 goal: ≥ 50× hls4ml predict)",
        "",
        f"Generated by `{command}` (raw numbers: `{raw}`; load average "
        f"{result['machine']['load_average_1min']} at start, {result['machine']['load_average_1min_end']} at end). "
        "Best of the interleaved runs; per CPU-second as well, since the machine is shared and some engines "
        "use both cores. Exact = outputs equal to hls4ml's C-sim on every sample.",
        "",
        "| model | engine | exact | samples/s | × hls4ml | samples per CPU-s | × hls4ml |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["models"].items():
        if "bit_exact_vs_csim" not in row:
            continue
        best, per_cpu = row["samples_per_s_best"], row["samples_per_cpu_s"]
        checked = {"hls4ml_predict": 1.0, **row["bit_exact_vs_csim"]}  # the C-sim is the baseline
        for m in best:
            exact = "no (float)" if m == "onnxruntime" else "yes" if checked[m] == 1.0 else "NO"
            lines.append(
                f"| {name} | {m} | {exact} | {best[m]:,.0f} | {best[m] / best['hls4ml_predict']:.1f}× | "
                f"{per_cpu[m]:,.0f} | {per_cpu[m] / per_cpu['hls4ml_predict']:.1f}× |"
            )
        lines.append(f"\nRTL trace + Verilator build + emulator g++ build of {name}: {row['rtl_build_s']:,} s.")
    lines.append("<!-- engines:end -->")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
