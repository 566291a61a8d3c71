"""Firmware layer: hls4ml configuration and conversion of a Keras/QKeras model into a compiled project.

The project is written and compiled in a temporary folder beside its destination and renamed into place
only when complete. Weights are compiled into the headers (``write_weights_txt=False``) so the C-simulation
library does not depend on where the project was built, and the folder can be moved or archived as is.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.fsio import DISK_FULL, NOT_WRITABLE, atomic_dir

RESERVED_LAYER_NAMES = ("input",)
BUILD_TOOLS = {  # what hls4ml's build_lib.sh needs, and how to get it
    "g++": "install a C++ compiler (e.g. `apt-get install g++`) or put it on PATH",
    "bash": "put bash on PATH (hls4ml's build_lib.sh is a bash script)",
}


@dataclass(frozen=True)
class FirmwareSpec:
    backend: str = "Vitis"
    part: str = "xcu250-figd2104-2L-e"
    clock_period: float = 5.0
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = 1
    project_name: str = "myproject"
    input_type: str | None = None  # fixed-point type that holds the input data exactly
    bit_exact: bool = True
    layer_precisions: dict[str, dict[str, str]] = field(default_factory=dict)  # per-layer overrides

    @classmethod
    def from_config(cls, fw: Any, **extra: Any) -> FirmwareSpec:
        return cls(
            backend=fw.backend,
            part=fw.part,
            clock_period=fw.clock_period,
            io_type=fw.io_type,
            strategy=fw.strategy,
            reuse_factor=fw.reuse_factor,
            project_name=fw.project_name,
            **extra,
        )


def check_layer_names(model) -> None:
    for layer in model.layers:
        if layer.name in RESERVED_LAYER_NAMES:
            raise TrigflowError(
                f"layer name '{layer.name}' is reserved by hls4ml; rename that layer (e.g. '{layer.name}_0')"
            )


def hls_config(model, spec: FirmwareSpec) -> dict[str, Any]:
    """Per-layer hls4ml configuration: input type, strategy and reuse factor, plus any overrides."""
    import hls4ml

    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=spec.backend)
    config["Model"]["Strategy"] = spec.strategy
    config["Model"]["ReuseFactor"] = spec.reuse_factor
    for layer in config["LayerName"].values():  # per-layer entries win over the model-level value in hls4ml
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = spec.reuse_factor
    if spec.input_type is not None:
        for name in model.input_names:
            config["LayerName"][name]["Precision"]["result"] = spec.input_type
    for name, precisions in spec.layer_precisions.items():
        config["LayerName"].setdefault(name, {}).setdefault("Precision", {}).update(precisions)
    return config


def content_stamp(model, config: dict[str, Any], spec: FirmwareSpec) -> str:
    """A stamp derived from what the firmware computes (architecture, weights, configuration).

    hls4ml names the C-sim library ``<project>-<stamp>.so`` with a random stamp; a content stamp keeps identical
    runs identical, and a changed model still gets a fresh library name (no stale dlopen handle).
    """
    digest = hashlib.sha256(model.to_json().encode())
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    digest.update(json.dumps([config, spec.__dict__], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:8]


@contextlib.contextmanager
def _fixed_stamp(stamp: str):
    """hls4ml's MakeStamp pass draws ``str(uuid4())[-8:]``; make it draw ``stamp`` for this write."""
    import types

    from hls4ml.model.optimizer.passes import stamp as stamp_pass

    real = stamp_pass.uuid
    stamp_pass.uuid = types.SimpleNamespace(uuid4=lambda: stamp)
    try:
        yield
    finally:
        stamp_pass.uuid = real


def _first_error(log: str) -> str:
    for line in log.splitlines():
        if re.search(r"\berror\b", line, re.IGNORECASE):
            return line.strip()
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# GCC >= 11 runs its -Wfree-nonheap-object / -Wmismatched-* analysis over every function, and the static
# initialisers of weights compiled into headers are huge: 80-95 % of g++'s time on a 16-64-64-5 MLP (22 s ->
# 4 s) and growing faster than the weight count. Turning the three warnings off skips that pass; the object
# code is byte-identical (checked with objdump).
FAST_BUILD_FLAGS = "-Wno-free-nonheap-object -Wno-mismatched-dealloc -Wno-mismatched-new-delete"


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


def convert(model, project_dir: str | Path, spec: FirmwareSpec, *, force: bool = False, compile: bool = True):
    """Convert ``model`` with hls4ml into ``project_dir``, compile the C-simulation and return the ModelGraph."""
    import hls4ml

    check_layer_names(model)
    project_dir = Path(project_dir).resolve()
    config = hls_config(model, spec)
    with atomic_dir(project_dir, force=force) as tmp:
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                hls_model = hls4ml.converters.convert_from_keras_model(
                    model,
                    hls_config=config,
                    output_dir=str(tmp),
                    project_name=spec.project_name,
                    backend=spec.backend,
                    part=spec.part,
                    clock_period=spec.clock_period,
                    io_type=spec.io_type,
                    bit_exact=spec.bit_exact or None,
                    write_weights_txt=False,
                )
                with _fixed_stamp(content_stamp(model, config, spec)):
                    hls_model.write()
        except TrigflowError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_FULL + NOT_WRITABLE:
                raise  # atomic_dir names the project folder and the fix
            raise TrigflowError(f"hls4ml could not convert the model: {exc.__class__.__name__}: {exc}") from exc
        (tmp / "convert.log").write_text(log.getvalue())
        with contextlib.redirect_stdout(io.StringIO()):
            hls_model.save(str(tmp / "model.fml"))  # the graph, for `trigflow estimate PROJECT`
        library = compile_project(hls_model) if compile else None
    _relocate(project_dir, tmp, hls_model)
    if library is not None:
        load_library(hls_model, project_dir / library.relative_to(tmp))
    return hls_model
