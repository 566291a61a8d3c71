"""Spine layer: the ``trigflow`` command. Parses options, calls the Python API (``trigflow.api``), prints.

No logic lives here. Errors a user can fix print as one line and exit non-zero (``--debug`` shows tracebacks);
usage errors (unknown option, missing argument, bad value) exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from trigflow.errors import TrigflowError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="From physics data to a verified, bit-exact FPGA firmware project.",
)
data_app = typer.Typer(no_args_is_help=True, help="Generate physics data sets (Pythia8 + FastJet) as HDF5.")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}
INTERRUPTED = 130  # exit code of a run stopped with Ctrl-C (128 + SIGINT)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _overrides(**flags: Any) -> dict[str, Any]:
    """Map flat CLI flags ("section.key": value) into the nested override mapping; None means not given."""
    nested: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return nested


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _dotted(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The nested overrides as the API's dotted keywords (``{"quant.epochs": "3"}``), as ``--set`` spells them."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


BackendOption = Annotated[Optional[str], typer.Option(help="Vitis, Vivado or Quartus.")]
IoTypeOption = Annotated[Optional[str], typer.Option(help="io_parallel or io_stream.")]
StrategyOption = Annotated[
    Optional[str], typer.Option(help="Latency, Resource or distributed_arithmetic (Dense/Conv as shift-adds).")
]


def _verdict(failures: list[str], passed: str, note: str | None = None) -> None:
    """FAIL lines (and the report's note as a warning) and exit code 1, or one PASS line with the note."""
    if failures:
        if note:
            err_console.print(f"[yellow]warning[/yellow] {note}")
        for failure in failures:
            err_console.print(f"[red]FAIL[/red] {failure}")
        raise typer.Exit(1)
    console.print(f"[green]PASS[/green] {passed}" + (f" ({note})" if note else ""))


def _print_report(report: dict[str, Any], report_path: Path) -> None:
    """The run's summary table and where its report is."""
    from trigflow.report import summary_rows

    _print_rows(f"trigflow run {report['kind']}", summary_rows(report), report_path)


@app.command()
def run(
    kind: Annotated[str, typer.Argument(help="Model kind: mlp, cnn, gnn, ae or rnn.")] = "mlp",
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML/TOML/JSON run config.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Run folder (default runs/<kind>/).")] = None,
    project_dir: Annotated[Optional[str], typer.Option(help="hls4ml project (default hls_projects/<kind>/).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data file (default: the embedded data set).")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Overwrite existing run/project folders.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for split, initialisation and training.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum training epochs.")] = None,
    bits: Annotated[Optional[int], typer.Option(help="Bit width of weights and activations.")] = None,
    sparsity: Annotated[Optional[float], typer.Option(help="Target pruned-weight fraction.")] = None,
    backend: BackendOption = None,
    part: Annotated[Optional[str], typer.Option(help="FPGA part.")] = None,
    clock: Annotated[Optional[float], typer.Option(help="Clock period in ns.")] = None,
    reuse: Annotated[Optional[int], typer.Option(help="Reuse factor.")] = None,
    strategy: StrategyOption = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Any config key, e.g. --set quant.input_bits=18.")
    ] = None,
) -> None:
    """Train (QAT + float twin), convert with hls4ml, compile the C-sim, prove it bit-exact and estimate its cost.

    Writes report.json (proof, accuracies, the resource/latency estimate), junit.xml and plots to the run
    folder, and the hls4ml project to the project folder.
    """
    from trigflow import api
    from trigflow.config import parse_overrides
    from trigflow.ui import StageUI

    flags = _overrides(
        **{
            "out": out,
            "project_dir": project_dir,
            "data.path": data,
            "force": force,
            "seed": seed,
            "quant.epochs": epochs,
            "quant.bits": bits,
            "quant.sparsity": sparsity,
            "firmware.backend": backend,
            "firmware.part": part,
            "firmware.clock_period": clock,
            "firmware.reuse_factor": reuse,
            "firmware.strategy": strategy,
        }
    )
    overrides = _dotted(_merge(parse_overrides(set_ or []), flags))
    result = api.run(kind, config=config, progress=StageUI(err_console), **overrides)  # type: ignore[arg-type]
    _print_report(result.report, result.run_dir / "report.json")
    _verdict(result.failures, "firmware proven against QKeras", result.report.get("verdict_note"))


@app.command()
def verify(
    model: Annotated[Path, typer.Argument(help="Keras/QKeras model: .h5, .keras, or architecture .json.")],
    weights: Annotated[Optional[Path], typer.Option(help="Weights .h5 (with an architecture .json).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Inputs (and labels): .h5, .npy or .npz.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Samples (default: all; 10,000 drawn).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML/TOML/JSON config.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Report folder (default runs/verify/).")] = None,
    project_dir: Annotated[Optional[str], typer.Option(help="hls4ml project (hls_projects/verify/).")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Overwrite existing folders.")] = None,
    min_bit_exact: Annotated[Optional[float], typer.Option(help="Required bit-exact fraction.")] = None,
    min_samples: Annotated[Optional[int], typer.Option(help="Required samples (default 1000).")] = None,
    max_float_diff: Annotated[
        float, typer.Option(help="Float models: allowed max |Δ| relative to max(1, max |output|).")
    ] = 0.01,
    backend: BackendOption = None,
    io_type: IoTypeOption = None,
    strategy: StrategyOption = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Any config key, e.g. --set verify.min_samples=500.")
    ] = None,
    custom_objects: Annotated[
        Optional[list[str]],
        typer.Option("--custom-objects", help="Your own layer class as module:Class (repeatable)."),
    ] = None,
    reshape: Annotated[
        bool,
        typer.Option(
            "--reshape",
            help="Fit data of another shape: flattened <-> (N, F) (C order); constituents sorted by pT, "
            "truncated or zero-padded to the model's count.",
        ),
    ] = False,
) -> None:
    """Prove any model's firmware: pick a bit-exact configuration, compare bits, localise, count overflows."""
    if model.suffix.lower() == ".onnx":  # ONNX models take hls4ml's ONNX frontend, proven against onnxruntime
        return firmware(model, data=data, n=n, out=out, project_dir=project_dir, force=bool(force),
                        max_float_diff=max_float_diff, backend=backend, io_type=io_type)
    from trigflow import api
    from trigflow.config import parse_overrides
    from trigflow.ui import StageUI

    flags = _overrides(
        **{
            "out": out,
            "project_dir": project_dir,
            "force": force,
            "verify.min_bit_exact_fraction": min_bit_exact,
            "verify.min_samples": min_samples,
            "firmware.backend": backend,
            "firmware.io_type": io_type,
            "firmware.strategy": strategy,
        }
    )
    result = api.verify(
        model,
        data,
        weights=weights,
        n=n,
        config=config,
        max_float_rel_diff=max_float_diff,
        custom_objects=custom_objects or (),
        reshape=reshape,
        progress=StageUI(err_console),
        **_dotted(_merge(parse_overrides(set_ or []), flags)),
    )
    _print_report(result.report, result.run_dir / "report.json")
    _verdict(result.failures, "firmware verified against the model", result.report.get("verdict_note"))


_ADDRESS_HELP = (
    "Ray cluster for the seeded chunks (auto, ray://HOST:10001, HOST:6379, or 'local'); same file for "
    "the same seed. Default: local processes."
)


@contextmanager
def _resumable(out: Path) -> Iterator[None]:
    """Ctrl-C during generation says where the finished chunks are and that the same command resumes."""
    from trigflow.data.parallel import ChunkStore
    from trigflow.errors import Interrupted

    try:
        yield
    except KeyboardInterrupt:
        store = ChunkStore.beside(out)
        raise Interrupted(
            f"interrupted (Ctrl-C); {store.count()} finished chunks are kept in {store.folder}, "
            "and the same command resumes from them"
        ) from None


@data_app.command("jets")
def data_jets(
    n: Annotated[int, typer.Option("--n", help="Number of jets (balanced over g, q, W, Z, t).")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Output HDF5 file.")] = Path("jets.h5"),
    workers: Annotated[Optional[int], typer.Option(help="Processes (default: all cores).")] = None,
    constituents: Annotated[int, typer.Option(help="Constituents kept per jet.")] = 32,
    image_size: Annotated[int, typer.Option(help="Jet image size (pixels per side).")] = 16,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    address: Annotated[Optional[str], typer.Option(help=_ADDRESS_HELP)] = None,
    detector: Annotated[
        str,
        typer.Option(
            help="none (generator-level particles), hcal or hcal_ecal (calorimeter cells), "
            "public (the public files' tag: cells, no tracks above 110 GeV, smearing) or public_tag (its "
            "numbers parsed: cells 0.022 / 0.0175, tracks up to 220 GeV); docs/jets.md."
        ),
    ] = "none",
    min_particle_pt: Annotated[
        float, typer.Option(help="GeV; softer particles (cells) are not clustered (0: all). docs/jets.md.")
    ] = 0.0,
    boson_processes: Annotated[
        str, typer.Option(help="boson_parton (W/Z + parton) or diboson (WW/ZZ, as the public set). docs/jets.md.")
    ] = "boson_parton",
    boson_labelling: Annotated[
        str, typer.Option(help="matched (truth-matched W/Z jets) or leading (each event's leading jet; diboson).")
    ] = "matched",
) -> None:
    """Generate jets with Pythia8 + FastJet: 16 high-level features, constituents and images."""
    from trigflow.data.jets import generate_jets
    from trigflow.data.parallel import cluster

    with cluster(address), _resumable(out):
        path = generate_jets(
            out, n, seed, workers=workers, n_constituents=constituents, image_size=image_size, force=force,
            detector=detector, min_particle_pt_gev=min_particle_pt, boson_processes=boson_processes,
            boson_labelling=boson_labelling,
        )
    console.print(f"wrote {path}")


@data_app.command("anomaly")
def data_anomaly(
    n: Annotated[int, typer.Option("--n", help="Standard-Model background events.")] = 10000,
    n_signal: Annotated[int, typer.Option(help="Events per new-physics signal process.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Output HDF5 file.")] = Path("anomaly.h5"),
    workers: Annotated[Optional[int], typer.Option(help="Processes (default: all cores).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    address: Annotated[Optional[str], typer.Option(help=_ADDRESS_HELP)] = None,
    selection: Annotated[
        str, typer.Option(help="trigflow (as the embedded file) or adc2021 (weighted, lepton-enriched QCD).")
    ] = "trigflow",
) -> None:
    """Generate L1 anomaly-detection events (ADC2021 layout): SM background + four BSM signals."""
    from trigflow.data.anomaly import generate_anomaly
    from trigflow.data.parallel import cluster

    with cluster(address), _resumable(out):
        path = generate_anomaly(out, n, n_signal, seed, workers=workers, force=force, selection=selection)
    console.print(f"wrote {path}")


@app.command()
def estimate(
    path: Annotated[Path, typer.Argument(help="hls4ml project folder or trigflow run folder.")],
) -> None:
    """Resources (DSP/LUT/FF/BRAM) and latency per layer, without vendor tools."""
    from trigflow import api

    result = api.estimate(path).estimate
    table = Table(title=f"estimate · {result.part} · {result.clock_period_ns} ns clock")
    rows = result.table()
    for key in rows[0]:
        table.add_column(key, justify="right" if key not in ("layer", "kind", "note") else "left")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()))
    console.print(table)


@app.command()
def rtl(
    run_dir: Annotated[Path, typer.Argument(help="A finished trigflow run folder.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing <project>/rtl/ folder.")] = False,
    max_lut: Annotated[
        Optional[float],
        typer.Option("--max-lut", help="Largest design to build, in LUTs (da4ml's cost); default: the part's LUTs."),
    ] = None,
) -> None:
    """Trace the run's proven model into pipelined Verilog (da4ml), compile it with Verilator and prove the
    RTL simulation bit-exact on the run's test set; writes <project>/rtl/ and rtl_report.json."""
    from trigflow import api
    from trigflow.ui import StageUI

    result = api.rtl(run_dir, force=force, max_lut=max_lut, progress=StageUI(err_console))
    proof, manifest = result.report["proof"], result.report["rtl"]
    rows = [
        ("RTL project", str(result.rtl_dir)),
        ("top / part", f"{manifest['top']} / {manifest['part']}"),
        ("latency", f"{manifest['latency_cycles']} cycles at {manifest['clock_period_ns']} ns, II {manifest['ii']}"),
        ("da4ml cost", f"{manifest['da4ml_cost_lut']:,.0f} LUT, {manifest['reg_bits']:,} FF bits, 0 DSP"),
        ("bit-exact", f"{proof['bit_exact_fraction']:.6f} of {proof['samples']} samples ({proof['engine']})"),
        ("engines agree", result.report["checks"]["engines_agree"]["detail"]),
    ]
    _print_rows("trigflow rtl", rows)
    _verdict(result.failures, "RTL simulation proven against QKeras")


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="Folder written by trigflow run/verify/firmware/scan.")],
    open_: Annotated[bool, typer.Option("--open", help="Open the page in your web browser.")] = False,
) -> None:
    """(Re)build the folder's index.html from its report.json (scan.json for a scan)."""
    from trigflow.report_html import write_index

    page = write_index(folder)
    console.print(f"page: {page}")
    if open_:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


@app.command()
def synth(
    path: Annotated[Path, typer.Argument(help="hls4ml project folder or trigflow run folder.")],
    cosim: Annotated[bool, typer.Option("--cosim", help="Also run C/RTL co-simulation.")] = False,
    yosys: Annotated[
        bool,
        typer.Option(
            "--yosys", help="Synthesise the project's RTL (trigflow rtl) with yosys even if vendor HLS is on PATH."
        ),
    ] = False,
) -> None:
    """C-synthesis with vitis_hls / vivado_hls when on PATH; else yosys on the project's RTL (from trigflow rtl).

    The yosys path writes rtl/yosys_report.json and rtl/yosys.log; exit 3 when no tool can run.
    """
    import json

    from trigflow.api import project_dir_of
    from trigflow.firmware.synth import synthesize

    console.print_json(json.dumps(synthesize(project_dir_of(path), cosim=cosim, open_flow=yosys)))


@app.command()
def scan(
    kind: Annotated[str, typer.Argument(help="Model kind: mlp, cnn, gnn, ae or rnn.")] = "mlp",
    bits: Annotated[str, typer.Option(help="Bit widths, comma-separated.")] = "4,6,8",
    sparsity: Annotated[str, typer.Option(help="Pruned-weight fractions, comma-separated.")] = "0,0.5,0.75",
    reuse: Annotated[str, typer.Option(help="Reuse factors, comma-separated.")] = "1,2,4",
    per_layer: Annotated[
        str, typer.Option(help="Per-layer widths: none (uniform), sensitivity (lowered per layer), or both.")
    ] = "none",
    epochs: Annotated[Optional[int], typer.Option(help="Maximum training epochs per trial.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data file (default: the embedded data set).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Run config for every trial.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Scan folder (default scans/<kind>/).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (default: local Ray).")] = None,
    cpus: Annotated[Optional[int], typer.Option(help="Local Ray CPUs (default: all cores).")] = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs reserved per trial.")] = 1.0,
    resume: Annotated[bool, typer.Option("--resume", help="Keep finished trials, run the rest.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rerun every trial of an existing scan.")] = False,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Any config key, every trial: --set data.max_samples=5000.")
    ] = None,
) -> None:
    """Scan bits × sparsity × reuse (× per-layer widths) on Ray Tune: train, prove and estimate each point; mark
    the Pareto front."""
    from trigflow.config import parse_overrides
    from trigflow.scan import ScanSpec, parse_list, table_rows
    from trigflow.scan import scan as run_scan

    flags = _overrides(**{"data.path": data, "quant.epochs": epochs})
    spec = ScanSpec(
        kind=kind,
        bits=parse_list(bits, int, "bits"),
        sparsity=parse_list(sparsity, float, "sparsity"),
        reuse=parse_list(reuse, int, "reuse"),
        per_layer=("none", "sensitivity") if per_layer == "both" else parse_list(per_layer, str, "per-layer"),
        out=out,
        config_path=str(config) if config else None,
        overrides=_merge(parse_overrides(set_ or []), flags),
        resume=resume,
        force=force,
        address=address,
        num_cpus=cpus,
        cpus_per_trial=cpus_per_trial,
    )
    result = run_scan(spec)
    title = f"trigflow scan {kind} · {len(result.rows)} trials ({result.ran} run now) · {result.wall_s:.0f} s"
    table = Table(title=title)
    headers, rows = table_rows(result.rows)
    for key in headers:
        table.add_column(key, justify="left" if key in ("trial", "status") else "right", no_wrap=key == "trial")
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
    console.print(f"table: {result.out_dir / 'scan.csv'}  front: {', '.join(result.front) or 'empty'}")
    console.print(f"plot: {result.out_dir / 'pareto.png'}")
    for row in result.failed:
        err_console.print(f"[red]FAIL[/red] {row['id']}: {row['error']}")
    if result.failed:
        raise typer.Exit(1)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A finished mlp or gnn run folder.")],
    data: Annotated[
        Path, typer.Option(help="Raw inputs .npy/.npz: gnn (jets, particles, 3) = pT/GeV, η_rel, φ_rel.")
    ],
    labels: Annotated[Path, typer.Option(help="Labels .npy/.npz: class indices, one-hot or class names.")],
    jet_pt: Annotated[
        Optional[Path], typer.Option(help="gnn: jet pT .npy (default: .npz 'jet_pt', else Σ constituent pT).")
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Metrics file (<RUN_DIR>/evaluate.json).")] = None,
    project_dir: Annotated[Optional[Path], typer.Option(help="Firmware project (the run's).")] = None,
    firmware: Annotated[bool, typer.Option("--firmware/--no-firmware", help="Run the C-simulation.")] = True,
) -> None:
    """Score a trained run (float, QKeras, firmware) on raw arrays with the run's recorded preprocessing."""
    from trigflow import api
    from trigflow.evaluate_run import summary_rows
    from trigflow.ui import StageUI

    result = api.evaluate(
        run_dir,
        data,
        labels,
        jet_pt=jet_pt,
        out=out,
        project_dir=project_dir,
        firmware=firmware,
        progress=StageUI(err_console),
    )
    title = f"trigflow evaluate {result.report['kind']} ({result.report['arch']})"
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in summary_rows(result.report):
        table.add_row(name, value)
    console.print(table)
    console.print(f"metrics: {result.path}")


export_app = typer.Typer(no_args_is_help=True, help="Export trained models for CPU/GPU inference.")
app.add_typer(export_app, name="export")


def _print_rows(title: str, rows: list[tuple[str, str]], report_path: Path | None = None) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if report_path is not None:
        console.print(f"report: {report_path}")


@export_app.command("onnx")
def export_onnx_command(
    source: Annotated[Path, typer.Argument(help="trigflow run folder, or Keras/QKeras .h5/.keras model.")],
    out: Annotated[Optional[Path], typer.Option(help="Output (default <RUN>/onnx, <MODEL>_onnx).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (13-18).")] = 13,
    n: Annotated[Optional[int], typer.Option("--n", help="Samples checked (default: all test data).")] = None,
    max_diff: Annotated[float, typer.Option(help="Allowed max |Δ| onnxruntime vs Keras.")] = 1e-5,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output folder.")] = False,
) -> None:
    """Write the QKeras and float models as ONNX (dynamic batch), checked in onnxruntime against Keras."""
    from trigflow import api
    from trigflow.onnx import summary_rows

    result = api.export_onnx(source, out, opset=opset, n=n, force=force, max_abs_diff=max_diff)
    title = f"trigflow export onnx (opset {result.report['opset']})"
    _print_rows(title, summary_rows(result.report), result.out_dir / "export_report.json")
    _verdict(result.failures, "onnxruntime matches Keras")


@app.command()
def firmware(
    model: Annotated[Path, typer.Argument(help="ONNX or QONNX model (.onnx).")],
    data: Annotated[Optional[Path], typer.Option(help="Inputs (and labels): .h5, .npy or .npz.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Samples (all data; 10,000 drawn).")] = None,
    out: Annotated[Optional[str], typer.Option(help="Report folder (runs/onnx/).")] = None,
    project_dir: Annotated[Optional[str], typer.Option(help="hls4ml project (hls_projects/onnx/).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing folders.")] = False,
    precision: Annotated[Optional[str], typer.Option(help="Default type, fixed<24,8> (profiled).")] = None,
    min_samples: Annotated[int, typer.Option(help="Required samples.")] = 1000,
    max_float_diff: Annotated[
        float, typer.Option(help="Float models: allowed max |Δ| relative to max(1, max |output|).")
    ] = 0.01,
    backend: BackendOption = None,
    io_type: IoTypeOption = None,
) -> None:
    """(Q)ONNX model → hls4ml project → C-sim proven against onnxruntime (QONNX: bit for bit)."""
    from trigflow.firmware.convert import FirmwareSpec
    from trigflow.verify_onnx import summary_rows, verify_onnx
    from trigflow.ui import StageUI

    report = verify_onnx(
        model,
        data,
        n,
        out,
        project_dir,
        force,
        spec=FirmwareSpec(**{k: v for k, v in {"backend": backend, "io_type": io_type}.items() if v is not None}),
        precision=precision,
        min_samples=min_samples,
        max_float_rel_diff=max_float_diff,
        ui=StageUI(err_console),
    )
    _print_rows("trigflow firmware (ONNX)", summary_rows(report), Path(report["run_dir"]) / "report.json")
    _verdict(report["failures"], "firmware proven against onnxruntime")


def main() -> None:
    """Console entry point: one-line errors, distinct exit codes, tracebacks only with --debug."""
    try:
        code = app(prog_name="trigflow", standalone_mode=False)  # click returns the code of a typer.Exit here
        if code == INTERRUPTED:  # typer turns Ctrl-C into Exit(130) before it reaches us
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except TrigflowError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]error:[/red] interrupted (Ctrl-C); no partial output was kept, rerun to start again")
        sys.exit(INTERRUPTED)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors of the click that typer bundles (typer._click), exit 2
        message = exc.format_message().strip()
        if message:  # empty: no_args_is_help has printed the help
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "trigflow"
            err_console.print(
                f"[red]error:[/red] {message} (see '{command} --help')", highlight=False, soft_wrap=True
            )
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything else is a bug
        if _state["debug"]:
            raise
        err_console.print(
            f"[red]error:[/red] {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
