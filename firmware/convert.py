"""Firmware layer: the one way into hls4ml — configuration, conversion and a compiled project.

``convert(model, project_dir, FirmwareSpec)`` converts a Keras/QKeras model; the ONNX frontend
(``onnx_frontend.convert_onnx``) goes through the same ``build_project``: hls4ml's frontends differ only in
the configuration, the converter call and what the content stamp hashes (``Frontend``). The project is written
and compiled in a temporary folder beside its destination and renamed into place only when complete. Weights
are compiled into the headers (``write_weights_txt=False``) so the C-simulation library does not depend on
where the project was built, and the folder can be moved or archived as is.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from trigflow.errors import TrigflowError, first_line
from trigflow.firmware.hls4ml_patches import fixed_stamp, python_bool_signedness
from trigflow.fsio import DISK_FULL, NOT_WRITABLE, atomic_dir

RESERVED_LAYER_NAMES = ("input",)
DISTRIBUTED_ARITHMETIC = "distributed_arithmetic"
# Keras layers hls4ml 1.3 builds with distributed arithmetic (da4ml) when their LayerName entry asks for it;
# the model-wide strategy stays Latency (hls4ml refuses DA on the input layer).
DA_LAYERS = ("Dense", "QDense", "Conv1D", "QConv1D", "Conv2D", "QConv2D")
BUILD_TOOLS = {  # what hls4ml's build_lib.sh needs, and how to get it
    "g++": "install a C++ compiler (e.g. `apt-get install g++`) or put it on PATH",
    "bash": "put bash on PATH (hls4ml's build_lib.sh is a bash script)",
}


@dataclass(frozen=True)
class FirmwareSpec:
    """How hls4ml builds a project, for every frontend. The defaults are written here once; the ``firmware``
    section of the run configuration (``trigflow.config.FirmwareConfig``) takes its defaults from this class
    and maps onto it in ``from_config``."""

    backend: str = "Vitis"
    part: str = "xcu250-figd2104-2L-e"
    clock_period: float = 5.0  # ns
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = 1
    project_name: str = "myproject"
    input_type: str | None = None  # fixed-point type that holds the input data exactly
    bit_exact: bool = True  # hls4ml's bit_exact flow (Keras frontend: types from the QKeras quantizers)
    default_precision: str | None = None  # hls4ml's default type; None: hls4ml's own (fixed<16,6>)
    # items per cycle of the per-item layers (affine layers on an (items, features) tensor, which hls4ml
    # builds as pointwise Conv1D; it snaps the value to a divisor of the item count): 1 = one multiplier set
    # shared by all items, items = fully parallel
    parallelization_factor: int = 1
    layer_precisions: dict[str, dict[str, str]] = field(default_factory=dict)  # per-layer overrides
    layer_parallelization: dict[str, int] = field(default_factory=dict)  # per-layer ParallelizationFactor
    rtl: bool = False  # a run also builds and proves the RTL backend (`trigflow rtl`); hls4ml ignores it
    layer_reuse: dict[str, int] = field(default_factory=dict)  # per-layer ReuseFactor (hls4ml LayerName key)

    CONFIG_FIELDS: ClassVar[tuple[str, ...]] = (
        "backend", "part", "clock_period", "io_type", "strategy", "reuse_factor", "parallelization_factor",
        "project_name", "rtl",
    )

    @classmethod
    def from_config(cls, fw: Any, **extra: Any) -> FirmwareSpec:
        """The spec of a run configuration's ``firmware`` section (``CONFIG_FIELDS``) plus ``extra``."""
        return cls(**{name: getattr(fw, name) for name in cls.CONFIG_FIELDS}, **extra)


def check_layer_names(model) -> None:
    for layer in model.layers:
        if layer.name in RESERVED_LAYER_NAMES:
            raise TrigflowError(
                f"layer name '{layer.name}' is reserved by hls4ml; rename that layer (e.g. '{layer.name}_0')"
            )


def hls_config(model, spec: FirmwareSpec) -> dict[str, Any]:
    """Per-layer hls4ml configuration of a Keras model: input type, strategy, reuse and parallelization
    factors, plus any overrides."""
    import hls4ml

    extra = {} if spec.default_precision is None else {"default_precision": spec.default_precision}
    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config_from_keras_model(
            model, granularity="name", backend=spec.backend, **extra
        )
    _apply_spec(config, spec)
    if spec.strategy == DISTRIBUTED_ARITHMETIC:
        for layer in model.layers:
            if type(layer).__name__ in DA_LAYERS:
                config["LayerName"].setdefault(layer.name, {})["Strategy"] = DISTRIBUTED_ARITHMETIC
    if spec.input_type is not None:
        for name in model.input_names:
            config["LayerName"][name]["Precision"]["result"] = spec.input_type
    for name, precisions in spec.layer_precisions.items():
        config["LayerName"].setdefault(name, {}).setdefault("Precision", {}).update(precisions)
    for name, reuse in spec.layer_reuse.items():
        config["LayerName"].setdefault(name, {})["ReuseFactor"] = int(reuse)
    for name, items in _per_item_layers(model).items():
        factor = spec.layer_parallelization.get(name, min(spec.parallelization_factor, items))
        config["LayerName"].setdefault(name, {})["ParallelizationFactor"] = int(factor)
    return config


def _apply_spec(config: dict[str, Any], spec: FirmwareSpec) -> None:
    """Strategy and reuse factor, model-wide and on every layer (per-layer entries win in hls4ml).
    Distributed arithmetic is set per layer (``hls_config``); the model-wide strategy is then Latency."""
    config["Model"]["Strategy"] = "Latency" if spec.strategy == DISTRIBUTED_ARITHMETIC else spec.strategy
    config["Model"]["ReuseFactor"] = spec.reuse_factor
    for layer in config.get("LayerName", {}).values():
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = spec.reuse_factor


def _per_item_layers(model) -> dict[str, int]:
    """{layer: item count} of the affine layers applied to an (items, features) tensor."""
    found = {}
    for layer in model.layers:
        if type(layer).__name__ not in ("Dense", "QDense", "Conv1D", "QConv1D"):
            continue
        shape = getattr(layer, "input_shape", None)
        kernel = getattr(layer, "kernel_size", (1,))
        if isinstance(shape, tuple) and len(shape) == 3 and shape[1] and tuple(kernel) == (1,):
            found[layer.name] = int(shape[1])
    return found


def content_stamp(parts: Iterable[bytes], config: dict[str, Any], spec: FirmwareSpec) -> str:
    """A stamp derived from what the firmware computes (the model's bytes, the configuration).

    hls4ml names the C-sim library ``<project>-<stamp>.so`` with a random stamp; a content stamp keeps
    identical runs identical, and a changed model still gets a fresh library name (no stale dlopen handle).
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    hls = {k: v for k, v in spec.__dict__.items() if k != "rtl"}  # what hls4ml builds, not what runs after
    digest.update(json.dumps([config, hls], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:8]


def _first_error(log: str) -> str:
    for line in log.splitlines():
        if re.search(r"\berror\b", line, re.IGNORECASE):
            return line.strip()
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# GCC >= 11 runs its -Wfree-nonheap-object / -Wmismatched-* analysis over every function, and the static
# initialisers of weights compiled into headers are huge: 80-95 % of g++'s time on a 16-64-64-5 MLP (22 s ->
# 4 s) and growing faster than the weight count. Turning the three warnings off skips that pass; the object
# code is byte-identical (checked with objdump). -O1 instead of hls4ml's -O3 (the last -O wins): a
# 16-constituent Interaction Network compiled in 31 s instead of 67 s and simulated 1,000 jets in 4.7 s
# instead of 4.4 s, outputs identical (ap_fixed arithmetic is integer arithmetic at any -O; every proof checks
# every bit). Only the C-simulation library is affected: HLS synthesis reads the sources, not these flags.
FAST_BUILD_FLAGS = "-O1 -Wno-free-nonheap-object -Wno-mismatched-dealloc -Wno-mismatched-new-delete"


# GCC 12 crashes (internal compiler error in gimple_duplicate_bb) while completely unrolling the static
# initialisers of some large weight headers, e.g. an Interaction Network on 32 particles (992 edges). The two
# unrolling passes are only an optimisation; the proof that follows checks the library bit for bit.
UNROLL_CRASH_FLAGS = "-fdisable-tree-cunrolli -fdisable-tree-cunroll"


def use_build_flags(project: Path, flags: str) -> None:
    """Add ``flags`` to the CFLAGS of the project's hls4ml ``build_lib.sh`` (idempotent)."""
    script = Path(project) / "build_lib.sh"
    text = script.read_text()
    if flags not in text:
        text, n = re.subn(r'^CFLAGS="([^"]*)"', rf'CFLAGS="\1 {flags}"', text, count=1, flags=re.MULTILINE)
        if n:
            script.write_text(text)


def use_fast_build_flags(project: Path) -> None:
    use_build_flags(project, FAST_BUILD_FLAGS)


def _run_build(out: Path) -> tuple[int, str]:
    result = subprocess.run(["bash", "build_lib.sh"], cwd=out, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def compile_project(hls_model) -> Path:
    """Build the C-simulation library with g++ (log in ``build_lib.log``) and link it into ``hls_model``.

    On failure the log is also kept in the system temp folder: the project folder itself is removed.
    """
    out = Path(hls_model.config.get_output_dir())
    for tool, fix in BUILD_TOOLS.items():
        if shutil.which(tool) is None:
            raise TrigflowError(f"{tool} not found on PATH; {fix}")
    use_fast_build_flags(out)
    code, log = _run_build(out)
    if code != 0 and "internal compiler error" in log and "cunroll" in log:
        use_build_flags(out, UNROLL_CRASH_FLAGS)
        first = log
        code, log = _run_build(out)
        log = f"{first}\n--- g++ crashed while unrolling; rebuilt with {UNROLL_CRASH_FLAGS} ---\n{log}"
    (out / "build_lib.log").write_text(log)
    if code != 0:
        kept = _keep_log(log)
        raise TrigflowError(f"C-simulation compile failed: {_first_error(log)} (full g++ log: {kept})")
    name, stamp = hls_model.config.get_project_name(), hls_model.config.get_config_value("Stamp")
    return out / "firmware" / f"{name}-{stamp}.so"


def _keep_log(log: str) -> Path:
    """A copy of a failed build's log that outlives the removed project folder."""
    fd, path = tempfile.mkstemp(prefix="trigflow-build_lib-", suffix=".log")
    with os.fdopen(fd, "w") as handle:
        handle.write(log)
    return Path(path)


def load_library(hls_model, library: Path) -> None:
    hls_model._top_function_lib = ctypes.cdll.LoadLibrary(str(library))


def _relocate(project: Path, old: Path, hls_model) -> None:
    """After the rename: point the saved config and the in-memory model at the final folder."""
    cfg = project / "hls4ml_config.yml"
    if cfg.exists():
        cfg.write_text(cfg.read_text().replace(str(old), str(project)))
    hls_model.config.config["OutputDir"] = str(project)


class Frontend(NamedTuple):
    """What differs between hls4ml's frontends: configuration, converter call, what the stamp hashes."""

    what: str  # for error messages: "the model", "the ONNX model"
    config: Callable[[FirmwareSpec], dict[str, Any]]
    convert: Callable[[dict[str, Any], Path, FirmwareSpec], Any]  # (config, output dir, spec) -> ModelGraph
    fingerprint: Callable[[], Iterable[bytes]]  # the model's bytes, for the content stamp


def _project_options(spec: FirmwareSpec, out: Path) -> dict[str, Any]:
    """What every hls4ml frontend takes besides the model and its config; weights go into the headers."""
    return {
        "output_dir": str(out),
        "project_name": spec.project_name,
        "backend": spec.backend,
        "part": spec.part,
        "clock_period": spec.clock_period,
        "io_type": spec.io_type,
        "write_weights_txt": False,
    }


def from_keras(model) -> Frontend:
    """hls4ml's Keras frontend (``convert_from_keras_model``); the stamp hashes architecture and weights."""

    def converter(config: dict[str, Any], out: Path, spec: FirmwareSpec):
        import hls4ml

        return hls4ml.converters.convert_from_keras_model(
            model, hls_config=config, bit_exact=spec.bit_exact or None, **_project_options(spec, out)
        )

    def fingerprint() -> Iterable[bytes]:
        yield model.to_json().encode()
        for weight in model.get_weights():
            yield weight.tobytes()

    return Frontend("the model", lambda spec: hls_config(model, spec), converter, fingerprint)


def from_onnx(cleaned) -> Frontend:
    """hls4ml's ONNX frontend on a cleaned graph (``firmware.passes``); the stamp hashes the serialised graph.
    hls4ml's ``bit_exact`` flow is not used: QONNX ``Quant`` nodes set their own types."""

    def config(spec: FirmwareSpec) -> dict[str, Any]:
        import hls4ml

        config = hls4ml.utils.config_from_onnx_model(
            cleaned, granularity="name", backend=spec.backend,
            default_precision=spec.default_precision or "fixed<16,6>",
        )
        _apply_spec(config, spec)
        for name, precisions in spec.layer_precisions.items():
            config["LayerName"].setdefault(name, {}).setdefault("Precision", {}).update(precisions)
        return config

    def converter(config: dict[str, Any], out: Path, spec: FirmwareSpec):
        import hls4ml

        return hls4ml.converters.convert_from_onnx_model(cleaned, hls_config=config, **_project_options(spec, out))

    return Frontend("the ONNX model", config, converter, lambda: [cleaned.SerializeToString()])


def build_project(
    frontend: Frontend,
    project_dir: str | Path,
    spec: FirmwareSpec,
    *,
    force: bool = False,
    compile: bool = True,
    check: Callable[[Any], None] | None = None,
):
    """The one way into hls4ml: configure and convert with ``frontend`` in a temporary folder beside
    ``project_dir``, ``check`` the ModelGraph, write it with a content stamp, compile the C-simulation (with
    the GCC-crash rebuild), rename into place and load the library. Returns the ModelGraph."""
    project_dir = Path(project_dir).resolve()
    with atomic_dir(project_dir, force=force) as tmp:
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                config = frontend.config(spec)
                with python_bool_signedness():
                    hls_model = frontend.convert(config, tmp, spec)
                if check is not None:
                    check(hls_model)
                with fixed_stamp(content_stamp(frontend.fingerprint(), config, spec)):
                    hls_model.write()
        except TrigflowError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_FULL + NOT_WRITABLE:
                raise  # atomic_dir names the project folder and the fix
            raise TrigflowError(
                f"hls4ml could not convert {frontend.what}: {exc.__class__.__name__}: {first_line(exc)}"
            ) from exc
        (tmp / "convert.log").write_text(log.getvalue())
        with contextlib.redirect_stdout(io.StringIO()):
            hls_model.save(str(tmp / "model.fml"))  # the graph, for `trigflow estimate PROJECT`
        library = compile_project(hls_model) if compile else None
    _relocate(project_dir, tmp, hls_model)
    if library is not None:
        load_library(hls_model, project_dir / library.relative_to(tmp))
    return hls_model


def convert(
    model,
    project_dir: str | Path,
    spec: FirmwareSpec,
    *,
    force: bool = False,
    compile: bool = True,
    check: Callable[[Any], None] | None = None,
):
    """Convert the Keras/QKeras ``model`` with hls4ml into ``project_dir``, compile the C-simulation and
    return the ModelGraph. ``check(hls_model)`` runs before anything is written (raise to refuse the
    conversion)."""
    check_layer_names(model)
    return build_project(from_keras(model), project_dir, spec, force=force, compile=compile, check=check)
