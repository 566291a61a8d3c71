"""Benchmarks: the performance figures users compare, measured in one run on one machine (issue #13).

Usage::

    python scripts/bench.py            # full benchmark (budget: < 20 min on 2 idle cores)
    python scripts/bench.py --quick    # ~2-minute smoke version (tiny data, 1 epoch, small sizes)
    python scripts/bench.py --render   # rewrite BENCHMARKS.md from scripts/results/bench.json

Sections, each in its own Python process (so its peak RSS is its own, and one failure does not stop the rest):

* ``kind:<mlp|cnn|gnn|ae>`` — ``trigflow.pipeline.run`` with reduced data and epochs: wall time of every stage
  (from ``report.json`` ``timings_s``; the g++ part of "convert + compile" is timed by wrapping
  ``firmware.convert.compile_project``), accuracy (mean AUC for ae) of float / QKeras / firmware,
  bit-exact fraction, estimated resources and latency, peak RSS. Then, on the same compiled project and the
  same test inputs: samples/s of hls4ml ``ModelGraph.predict`` (``firmware.csim.predict``, what the proof
  runs) and onnxruntime on the exported QKeras model, best of ``repeats`` interleaved rounds.
* ``scaling:<kind>`` — convert, compile and C-sim time vs model size, untrained (random-weight) models
  built by the kinds' own ``Recipe.build`` and converted by ``pipeline.build_firmware``.

Writes ``scripts/results/bench.json`` (every raw number) and ``BENCHMARKS.md`` (templated from the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
RESULTS = SCRIPTS / "results" / "bench.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
sys.path.insert(0, str(SCRIPTS))

from bench_csim import cpu_seconds, interleaved, timed  # noqa: E402  (shared with the C-sim benchmark)

KINDS = ("mlp", "cnn", "gnn", "ae")

# Reduced settings per mode: config overrides per kind (``section.key``), throughput and scaling sizes.
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "default_kinds": list(KINDS),
        "kinds": {
            "mlp": {"data.max_samples": 20000, "quant.epochs": 5, "verify.min_samples": 2000},
            "cnn": {"data.max_samples": 8000, "quant.epochs": 3, "verify.min_samples": 1000},
            "gnn": {"data.max_samples": 10000, "quant.epochs": 3, "verify.min_samples": 1000},
            "ae": {"data.max_samples": 20000, "quant.epochs": 5, "verify.min_samples": 2000},
        },
        "throughput_samples": 5000,  # at most, of the test set; fewer if hls4ml predict needs > budget
        "throughput_budget_s": 4.0,
        "repeats": 3,
        "scaling": {"mlp": [16, 32, 64, 128], "cnn": [4, 8, 16], "gnn": [8, 16, 32]},
        "scaling_samples": 2000,  # at most, random inputs on the input grid; fewer if predict needs > budget
        "scaling_budget_s": 2.0,
        "section_timeout_s": 900,
    },
    "quick": {  # ~2 min on 2 idle cores; `--quick --kinds mlp,cnn,gnn,ae` smoke-tests every kind (~5 min)
        "default_kinds": ["mlp"],
        "kinds": {k: {"data.max_samples": 2000, "quant.epochs": 1, "verify.min_samples": 200} for k in KINDS},
        "throughput_samples": 500,
        "throughput_budget_s": 1.0,
        "repeats": 1,
        "scaling": {"mlp": [16, 32]},
        "scaling_samples": 500,
        "scaling_budget_s": 0.5,
        "section_timeout_s": 600,
    },
}
SCALING_SHAPE = {
    "mlp": "16 → w → w → 5 (model.hidden = (w, w))",
    "cnn": "16×16×1 → conv f → conv f → dense 32 → 5, io_stream (model.filters = (f, f))",
    "gnn": "Interaction Network on N constituents × 3 features, head (32, 32) (model.n_particles = N)",
}


# --- small helpers ------------------------------------------------------------------------------------------
def peak_rss_mb() -> dict[str, float]:
    """Peak RSS of this process and of its waited-for descendants, MB (Linux: ru_maxrss in kB)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"self": round(me.ru_maxrss / 1024, 1), "children": round(kids.ru_maxrss / 1024, 1)}


def nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"quant.epochs": 3}`` → ``{"quant": {"epochs": "3"}}`` (``trigflow.config.parse_overrides``)."""
    from trigflow.config import parse_overrides

    return parse_overrides(f"{k}={v}" for k, v in overrides.items())


class Probe:
    """Wraps stage functions the pipeline calls by module attribute, to keep their results and time g++."""

    def __init__(self) -> None:
        self.compile_s: list[float] = []
        self.build_compile_s = 0.0
        self.hls_model: Any = None
        self.x_test: np.ndarray | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Probe]:
        import trigflow.firmware.convert as conversion
        from trigflow import pipeline

        real_compile, real_build, real_simulate = (
            conversion.compile_project,
            pipeline.build_firmware,
            pipeline.simulate,
        )

        def compile_project(hls_model):
            seconds, library = timed(lambda: real_compile(hls_model))
            self.compile_s.append(seconds)
            return library

        def build_firmware(*args, **kwargs):
            before = len(self.compile_s)
            self.hls_model = real_build(*args, **kwargs)
            self.build_compile_s = sum(self.compile_s[before:])
            return self.hls_model

        def simulate(trained, hls_model, x, ui, out):
            self.x_test = x
            return real_simulate(trained, hls_model, x, ui, out)

        conversion.compile_project, pipeline.build_firmware, pipeline.simulate = (
            compile_project,
            build_firmware,
            simulate,
        )
        try:
            yield self
        finally:
            conversion.compile_project, pipeline.build_firmware, pipeline.simulate = (
                real_compile,
                real_build,
                real_simulate,
            )


def rates(methods: dict[str, Callable[[], object]], samples: int, repeats: int) -> dict[str, Any]:
    """Interleaved rounds of every method (same inputs); best and median samples/s, samples per CPU-second."""
    seconds, cpu, outputs = interleaved(methods, repeats)
    return {
        "best": {m: round(samples / min(ts), 1) for m, ts in seconds.items()},
        "median": {m: round(samples / statistics.median(ts), 1) for m, ts in seconds.items()},
        "per_cpu_s": {m: round(samples / max(statistics.median(cs), 1e-9), 1) for m, cs in cpu.items()},
        "outputs": outputs,
    }


def affordable(hls_model, x: np.ndarray, seconds: float, probe: int = 50) -> int:
    """How many of ``x`` hls4ml predict runs in about ``seconds`` (≥ ``probe``): bounds the slowest method."""
    from trigflow.firmware.csim import predict

    t, _ = timed(lambda: predict(hls_model, x[:probe]))  # also the warm-up (lazy tables, first call)
    return int(min(len(x), max(probe, probe * seconds / max(t, 1e-9))))


# --- section: one model kind end to end ---------------------------------------------------------------------
def stage_times(timings: dict[str, float], build_compile_s: float) -> dict[str, float]:
    """The report's stage timings grouped as the table shows them (convert = build stage minus g++)."""
    t = timings.get
    build = t("hls4ml convert + g++ compile", 0.0)
    return {
        "data": t("load data", 0.0),
        "train": t("train float twin", 0.0) + t("train QKeras (QAT)", 0.0),
        "convert": round(build - build_compile_s, 3),
        "compile": round(build_compile_s, 3),
        "estimate": t("resource/latency estimate", 0.0),
        "csim": t("C-simulation", 0.0),
        "keras_inference": t("QKeras and float inference", 0.0),
        "onnx": t("ONNX export + onnxruntime", 0.0),
        "report": t("report + plots", 0.0),
    }


def quality(report: dict[str, Any]) -> dict[str, Any]:
    """Accuracy (classifiers) or mean AUC over signals (ae) of float / QKeras / firmware."""
    if report["kind"] == "ae":
        aucs = list(report["auc"].values())
        return {
            "metric": "mean AUC",
            **{m: float(np.mean([a[m] for a in aucs])) for m in ("float", "qkeras", "firmware")},
        }
    return {"metric": "accuracy", **report["accuracy"]}


def throughput(hls_model, onnx_path: Path, x: np.ndarray, repeats: int) -> dict[str, Any]:
    """hls4ml predict (the proof's C-sim) vs onnxruntime, same project and inputs."""
    from trigflow.firmware.csim import predict
    from trigflow.onnx import feeds, session

    sess = session(onnx_path)
    inputs = feeds(sess, x)
    methods: dict[str, Callable[[], object]] = {
        "hls4ml_predict": lambda: predict(hls_model, x),
        "onnxruntime": lambda: sess.run(None, inputs)[0],
    }
    r = rates(methods, len(x), repeats)
    r.pop("outputs")
    best = r["best"]
    return {
        "samples": len(x),
        "repeats": repeats,
        "samples_per_s_best": best,
        "samples_per_s_median": r["median"],
        "samples_per_cpu_s": r["per_cpu_s"],
        "ratios_best": {
            "onnxruntime_vs_hls4ml_predict": round(best["onnxruntime"] / best["hls4ml_predict"], 1),
        },
    }


def run_kind(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from trigflow import pipeline
    from trigflow.config import load_config

    kind = params["kind"]
    overrides = nested(params["overrides"])
    overrides.update(out=str(workdir / "runs" / kind), project_dir=str(workdir / "hls" / kind), force="true")
    config = load_config(kind, overrides=overrides)
    with Probe().installed() as probe:
        wall, result = timed(lambda: pipeline.run(config))
    report = result.report
    assert probe.x_test is not None
    x = probe.x_test[: params["throughput_samples"]]
    n = affordable(probe.hls_model, x, params["throughput_budget_s"])
    tput = throughput(
        probe.hls_model,
        result.out_dir / "qkeras_model.onnx",
        x[:n],
        params["repeats"],
    )
    return {
        "settings": params["overrides"],
        "data": report["data"],
        "parameters": report["parameters"],
        "pipeline_wall_s": round(wall, 2),
        "stages_s": stage_times(report["timings_s"], probe.build_compile_s),
        "report_timings_s": report["timings_s"],
        "compile_calls_s": [round(s, 2) for s in probe.compile_s],
        "quality": quality(report),
        "bit_exact_fraction": report["bit_exact_fraction"],
        "proof_samples": report["samples"],
        "onnx_max_abs_diff": report["onnx_max_abs_diff"],
        "passed": report["passed"],
        "failures": report["failures"],
        "resources": report["resources"],
        "latency_cycles": report["latency_cycles"],
        "latency_ns": report["latency_ns"],
        "ii": report["ii"],
        "throughput": tput,
    }


def scaled_config(kind: str, size: int, project: Path):
    from trigflow.config import load_config

    model = {"mlp": {"hidden": (size, size)}, "cnn": {"filters": (size, size)}, "gnn": {"n_particles": size}}[
        kind
    ]
    return load_config(kind, overrides={"model": model, "project_dir": str(project), "force": True})


def input_shape(kind: str, config) -> tuple[int, ...]:
    from trigflow.data import HLF_NAMES

    if kind == "mlp":
        return (len(HLF_NAMES),)
    if kind == "cnn":
        return (16, 16, 1)
    from trigflow.kinds.gnn import FEATURES

    return (config.model.n_particles, len(FEATURES))


def run_scaling(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Random-weight models of growing size: params, convert, compile, hls4ml C-sim rate, estimate."""
    from trigflow import pipeline
    from trigflow.data import JET_CLASSES
    from trigflow.firmware.csim import predict
    from trigflow.kinds import Prepared, Trained, recipe_for
    from trigflow.quantize.presets import QuantSpec
    from trigflow.ui import StageUI

    kind = params["kind"]
    recipe = recipe_for(kind)
    rows = []
    for size in params["sizes"]:
        config = scaled_config(kind, size, workdir / "hls" / f"scale_{kind}_{size}")
        spec = QuantSpec.from_config(config.quant)
        rng = np.random.default_rng(size)
        x = spec.quantize_input(
            rng.normal(size=(params["samples"], *input_shape(kind, config))).astype(np.float32)
        )
        stub = Prepared(x[:1], np.zeros(1), x[:1], np.zeros(1), x[:1], np.zeros(1), {}, JET_CLASSES)
        qmodel = recipe.build(stub, config, True)
        with Probe().installed() as probe:  # look up build_firmware inside: the probe wraps it
            build = functools.partial(
                pipeline.build_firmware, recipe, Trained(qmodel, qmodel), config, StageUI(quiet=True)
            )
            try:
                build_s, hls_model = timed(build)
            except Exception as exc:  # one size failing (e.g. a compiler crash) must not hide the others
                rows.append({"size": size, "parameters": int(qmodel.count_params()), "error": _one_line(exc)})
                print(f"  scaling {kind} {size}: {rows[-1]}", flush=True)
                continue
        n = affordable(hls_model, x, params["budget_s"])
        csim_s = min(timed(functools.partial(predict, hls_model, x[:n]))[0] for _ in range(params["repeats"]))
        cost = pipeline.firmware_cost(hls_model)
        rows.append(
            {
                "size": size,
                "parameters": int(qmodel.count_params()),
                "convert_s": round(build_s - probe.build_compile_s, 2),
                "compile_s": round(probe.build_compile_s, 2),
                "csim_samples": n,
                "csim_s": round(csim_s, 3),
                "csim_samples_per_s": round(n / csim_s, 1),
                "resources": cost["resources"],
                "latency_cycles": cost["latency_cycles"],
            }
        )
        print(f"  scaling {kind} {size}: {rows[-1]}", flush=True)
    return {"model": SCALING_SHAPE[kind], "weights": "random (untrained)", "rows": rows}


def _one_line(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


SECTIONS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "kind": run_kind,
    "scaling": run_scaling,
}


def worker(section: str, params_json: str, result_path: Path) -> None:
    """Child process: run one section, write its JSON (with peak RSS and wall time including imports)."""
    start = time.perf_counter()
    params = json.loads(params_json)
    try:
        out = SECTIONS[section](params, Path(params["workdir"]))
    except Exception as exc:  # recorded, so an unattended run reports it and carries on
        traceback.print_exc()
        out = {"error": _one_line(exc)}
    out["process_wall_s"] = round(time.perf_counter() - start, 2)
    out["process_cpu_s"] = round(cpu_seconds(), 2)  # user + system, this process and its children
    out["peak_rss_mb"] = peak_rss_mb()
    result_path.write_text(json.dumps(out, indent=2, default=str))
    sys.stdout.flush()
    os._exit(0)  # skip TF/ray atexit teardown


# --- parent: machine, sections, outputs ---------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    mem_kb = (
        next(
            (
                int(line.split()[1])
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            ),
            0,
        )
        if Path("/proc/meminfo").exists()
        else 0
    )
    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "cpu": cpu,
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gxx": gxx[0] if gxx else "not found",
        "load_average_1min_start": round(os.getloadavg()[0], 2),
    }


def run_section(section: str, params: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    tag = f"{section}_{params['kind']}" if params.get("kind") else section
    result, log = workdir / f"{tag}.json", workdir / f"{tag}.log"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        section,
        "--params",
        json.dumps({**params, "workdir": str(workdir)}),
        "--result",
        str(result),
    ]
    start = time.perf_counter()
    try:
        with open(log, "w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
        out = (
            json.loads(result.read_text())
            if result.exists()
            else {"error": f"worker exited with code {proc.returncode} without a result; log: {log}"}
        )
    except subprocess.TimeoutExpired:
        out = {"error": f"timed out after {timeout:.0f} s; log: {log}"}
    out["section_wall_s"] = round(time.perf_counter() - start, 2)
    if "error" in out:
        tail = log.read_text().splitlines()[-15:] if log.exists() else []
        print("\n".join(["    " + line for line in tail]), flush=True)
    return out


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from trigflow.proof.checks import versions

    mode = "quick" if args.quick else "full"
    s = SETTINGS[mode]
    kinds = [k for k in args.kinds.split(",") if k] if args.kinds else s["default_kinds"]
    result: dict[str, Any] = {
        "command": " ".join(["python", "scripts/bench.py", *map(shlex.quote, args.argv)]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": mode,
        "settings": s,
        "machine": machine(),
        "versions": versions(),
        "kinds": {},
        "scaling": {},
        "sections_s": {},
        "sections_cpu_s": {},
    }
    total_start = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="trigflow_bench.", dir=args.workdir))
    print(f"bench ({mode}): scratch in {workdir}", flush=True)

    def section(name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        label = f"{name}:{kind}" if kind else name
        print(f"[{label}] ...", flush=True)
        out = run_section(name, {**params, "kind": kind}, workdir, s["section_timeout_s"])
        result["sections_s"][label] = out["section_wall_s"]
        result["sections_cpu_s"][label] = out.get("process_cpu_s")
        status = f"ERROR {out['error']}" if "error" in out else "ok"
        print(f"[{label}] {out['section_wall_s']:.1f} s — {status}", flush=True)
        return out

    for kind in kinds:
        params = {
            "overrides": s["kinds"][kind],
            "throughput_samples": s["throughput_samples"],
            "throughput_budget_s": s["throughput_budget_s"],
            "repeats": s["repeats"],
        }
        result["kinds"][kind] = section("kind", kind, params)
    if not args.no_scaling:
        for kind, sizes in s["scaling"].items():
            params = {
                "sizes": sizes,
                "samples": s["scaling_samples"],
                "budget_s": s["scaling_budget_s"],
                "repeats": s["repeats"],
            }
            result["scaling"][kind] = section("scaling", kind, params)
    result["total_s"] = round(time.perf_counter() - total_start, 1)
    result["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(f"total {result['total_s']:.1f} s", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return result


# --- markdown, templated from the JSON ----------------------------------------------------------------------
def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits if abs(value) >= 1 or value == 0 else 3}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + [
        "| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows
    ]


def _res(r: dict[str, Any]) -> str:
    res = r.get("resources") or {}
    return " / ".join(_f(res.get(k), 0) for k in ("dsp", "lut", "ff", "bram"))


def render(result: dict[str, Any]) -> str:
    m, v, s = result["machine"], result["versions"], result["settings"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{result['command']}` on {result['date']} ({result['mode']} mode, total "
        f"{result['total_s']:.0f} s). Every figure below is templated from "
        f"`{result.get('json', 'bench.json')}`; "
        "rerun the command to refresh them (`--render` rewrites this file from the JSON).",
        "",
        f"**Machine:** {m['cpu']}, {m['cores_logical']} logical cores ({m['cores_usable']} usable), "
        f"{m['ram_gb']} GB RAM, {m['platform']}; load average {m['load_average_1min_start']} at start, "
        f"{m.get('load_average_1min_end')} at end.",
        "",
        f"**Versions:** python {m['python']}, tensorflow {v.get('tensorflow')}, qkeras {v.get('qkeras')}, "
        f"hls4ml {v.get('hls4ml')}, onnxruntime {v.get('onnxruntime')}, tf2onnx {v.get('tf2onnx')}, "
        f"trigflow {v.get('trigflow')}, {m['gxx']}.",
        "",
        "## Reduced settings",
        "",
        "Each kind runs the real recipe (`trigflow.pipeline.run`) with these config overrides, so the models "
        "are "
        "under-trained: the accuracies below measure the flow, not the physics reach (see `docs/`).",
        "",
    ]
    lines += _table(
        ["kind", "overrides"],
        [[k, ", ".join(f"`{a}={b}`" for a, b in s["kinds"][k].items())] for k in result["kinds"]],
    )
    lines += [
        "",
        f"C-sim throughput: up to {s['throughput_samples']} test samples (fewer where hls4ml predict would "
        f"need more than {s['throughput_budget_s']} s; the count is in the table), best of {s['repeats']} "
        "interleaved round(s). "
        f"Scaling: random (untrained) weights, up to {s['scaling_samples']} random inputs (C-sim budget "
        f"{s['scaling_budget_s']} s per size).",
        "",
        "## Per kind: stage wall times (s) and peak memory",
        "",
        "convert = hls4ml conversion and project write; compile = g++ of the C-sim library; C-sim = hls4ml "
        "predict on the whole test set; ONNX = export of both twins + onnxruntime; report = plots and kind "
        "extras (cnn: FIFO sizing and recompile); process total = the kind's whole Python process (imports, "
        "pipeline, throughput). Peak RSS = `ru_maxrss` of the kind's process (the JSON also has its "
        "children's, which on Linux include "
        "the forked Python image, so they are not a separate g++ figure).",
        "",
    ]
    rows, qrows, trows = [], [], []
    for kind, r in result["kinds"].items():
        if "error" in r:
            rows.append([kind, f"error: {r['error']}"] + [""] * 9)
            continue
        st = r["stages_s"]
        rows.append(
            [
                kind,
                r["data"]["test"],
                st["data"],
                st["train"],
                st["convert"],
                st["compile"],
                st["csim"],
                st["onnx"],
                st["report"],
                r["process_wall_s"],
                f"{r['peak_rss_mb']['self']:,.0f}",
            ]
        )
        q = r["quality"]
        qrows.append(
            [
                kind,
                q["metric"],
                f"{q['float']:.4f}",
                f"{q['qkeras']:.4f}",
                f"{q['firmware']:.4f}",
                f"{r['bit_exact_fraction']:.6f}",
                r["proof_samples"],
                r["parameters"],
                _res(r),
                r["latency_cycles"],
                r["latency_ns"],
                "yes" if r["passed"] else "no: " + "; ".join(r["failures"]),
            ]
        )
        t = r["throughput"]
        b, ratio = t["samples_per_s_best"], t["ratios_best"]
        trows.append(
            [
                kind,
                t["samples"],
                b["hls4ml_predict"],
                b["onnxruntime"],
                f"{ratio['onnxruntime_vs_hls4ml_predict']:.1f}×",
            ]
        )
    lines += _table(
        [
            "kind",
            "test samples",
            "data",
            "train (2 twins)",
            "convert",
            "compile",
            "C-sim",
            "ONNX",
            "report",
            "process total",
            "peak RSS MB",
        ],
        rows,
    )
    lines += [
        "",
        "## Per kind: quality, proof, estimated cost",
        "",
        "Resources are `trigflow estimate` figures (no vendor synthesis): DSP / LUT / FF / BRAM.",
        "",
    ]
    lines += _table(
        [
            "kind",
            "metric",
            "float",
            "QKeras",
            "firmware",
            "bit-exact",
            "proof samples",
            "params",
            "DSP / LUT / FF / BRAM",
            "latency cycles",
            "latency ns",
            "checks passed",
        ],
        qrows,
    )
    lines += [
        "",
        "## C-sim throughput (samples/s, same project and inputs)",
        "",
        "hls4ml = `ModelGraph.predict` (one Python call per sample; `firmware.csim.predict`, the proof's C-sim); "
        "onnxruntime = the QKeras model exported with tf2onnx (float, not bit-exact).",
        "",
    ]
    lines += _table(["kind", "samples", "hls4ml predict", "onnxruntime", "onnxruntime / hls4ml"], trows)
    if result.get("scaling"):
        lines += [
            "",
            "## Cost vs model size",
            "",
            "Untrained models with random weights (timing only), built by the kind's `Recipe.build` and "
            "converted by `pipeline.build_firmware`. C-sim = hls4ml predict on random inputs on the input "
            "grid (best of the "
            "rounds); resources and latency from the estimate.",
            "",
        ]
        srows = []
        for kind, sc in result["scaling"].items():
            if "error" in sc:
                srows.append([kind, f"error: {sc['error']}"] + [""] * 7)
                continue
            for row in sc["rows"]:
                if "error" in row:
                    srows.append([f"{kind}: {sc['model']}", row["size"], row["parameters"], f"error: {row['error']}"]
                                 + [""] * 5)
                    continue
                srows.append(
                    [
                        f"{kind}: {sc['model']}",
                        row["size"],
                        row["parameters"],
                        row["convert_s"],
                        row["compile_s"],
                        row["csim_samples"],
                        row["csim_samples_per_s"],
                        _res(row),
                        row["latency_cycles"],
                    ]
                )
        lines += _table(
            [
                "model",
                "size",
                "params",
                "convert s",
                "compile s",
                "C-sim samples",
                "C-sim samples/s",
                "DSP / LUT / FF / BRAM",
                "latency cycles",
            ],
            srows,
        )
    lines += [
        "",
        "## Section wall times",
        "",
        "CPU = user + system seconds of the section's process and its children; on an idle machine the wall "
        "time is close to it (most stages use one core), on a shared one the wall time is larger.",
        "",
    ]
    cpu = result.get("sections_cpu_s", {})
    lines += _table(
        ["section", "wall s", "CPU s"],
        [[k, v, cpu.get(k)] for k, v in result["sections_s"].items()]
        + [["**total**", result["total_s"], sum(c for c in cpu.values() if c) or None]],
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2-minute smoke version")
    parser.add_argument("--kinds", help="comma-separated kinds (default: all; --quick: mlp)")
    parser.add_argument("--no-scaling", action="store_true", help="skip cost vs model size")
    parser.add_argument("--out-json", type=Path, default=RESULTS)
    parser.add_argument("--out-md", type=Path, default=MARKDOWN)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the scratch folder (default: $TMPDIR)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (runs, projects, logs)")
    parser.add_argument("--render", action="store_true", help="only rewrite --out-md from --out-json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.params, args.result)
        return None

    from trigflow.fsio import write_text

    if args.render:
        result = json.loads(args.out_json.read_text())
    else:
        args.argv = argv
        result = benchmark(args)
        with contextlib.suppress(ValueError):
            result["json"] = str(args.out_json.resolve().relative_to(ROOT))
        result.setdefault("json", str(args.out_json))
        write_text(args.out_json, json.dumps(result, indent=2, default=str) + "\n")
    text = keep_marked_sections(args.out_md, render(result))
    write_text(args.out_md, text)
    print(text)
    return result


def keep_marked_sections(path: Path, text: str) -> str:
    """``text`` plus the sections other scripts keep in ``path`` between ``<!-- NAME:start -->`` and
    ``<!-- NAME:end -->`` (e.g. ``scripts/bench_verify.py``), so a re-render does not drop them."""
    import re

    old = path.read_text() if path.is_file() else ""
    pattern = re.compile(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", re.DOTALL)
    kept = [m.group(0) for m in pattern.finditer(old) if f"<!-- {m.group(1)}:start -->" not in text]
    return text.rstrip("\n") + "".join(f"\n\n{block}" for block in kept) + "\n" if kept else text


if __name__ == "__main__":
    main()
