"""Firmware layer: FIFO depths of an io_stream project, measured from the C-simulation instead of RTL cosim.

hls4ml declares every stream between two layers with the worst-case depth (one whole tensor) and offers a FIFO
depth optimisation that needs Vivado/Vitis RTL co-simulation. The C-simulation alone cannot measure occupancy:
it runs the dataflow processes one after another, so each stream briefly holds its whole tensor. Here:

1. **Trace** – a copy of the project is built with an instrumented ``hls_stream.h`` (every read and write is
   logged with the stream's name) and a marker before each layer call in ``myproject.cpp`` (so each access is
   attributed to its process); the C-sim runs on calibration data and the trace is read back through ctypes.
2. **Replay** – each process replays its own access sequence as pipelined loop iterations (one iteration = its
   reads then its writes, started every II cycles: II = reuse factor for convolutions, 1 otherwise; the input
   port delivers one element per clock, the output port is always ready). Processes run concurrently; an
   iteration starts when the data it reads has been written in an earlier cycle. The largest number of elements
   a stream holds at once (from the cycle of a write through the cycle of its read) is its measured occupancy.
3. **Depth** – ``measured + 1`` (hls4ml's cosim flow uses the same +1), at least 2 (the Vitis HLS default channel
   depth; the smallest that sustains one transfer per clock), never above hls4ml's worst case. The replay is
   run again with these bounded FIFOs (writers stall while full) to confirm no deadlock and no lost cycle.
4. **Rewrite** – a staged copy of the project gets the new ``#pragma HLS STREAM ... depth=`` values and a new
   library stamp, is recompiled, and must give bit-identical C-sim outputs before it replaces the project.

The trace is a property of the schedule, not of the values: hls4ml's stream kernels have fixed trip counts, and
``FifoProfile.data_independent`` records whether every calibration sample produced the same access sequence.
This is a model of the RTL schedule, not RTL: where Vivado/Vitis is available, hls4ml's cosim-based
``FifoDepthOptimization`` remains the reference.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

READ, WRITE = 0, 1
MIN_DEPTH = 2  # Vitis HLS default dataflow channel depth; sustains one transfer per clock
MARGIN = 1  # hls4ml's cosim FIFO optimisation also sets max occupancy + 1

_PRAGMA = re.compile(r"(#pragma HLS STREAM variable=(\w+) depth=)(\d+)")
_ALIAS = re.compile(r"auto&\s+(\w+)\s*=\s*(\w+)\s*;")
_CALL = re.compile(r"^(\s*)nnet::(\w+)<(.+)>\((.*)\);\s*//\s*(\S+)\s*$")
_CONFIG = re.compile(r"struct (\w+) : [\w:]+ \{(.*?)\n\};", re.DOTALL)

_TRACER = r"""
#include <vector>
namespace trigflow_fifo {
inline int &process() { static int p = -1; return p; }
inline std::vector<int> &events() { static std::vector<int> e; return e; }
inline std::vector<std::string> &names() { static std::vector<std::string> n; return n; }
inline int stream_id(const std::string &name) {
    std::vector<std::string> &n = names();
    for (size_t i = 0; i < n.size(); i++)
        if (n[i] == name) return (int)i;
    n.push_back(name);
    return (int)n.size() - 1;
}
inline void record(int id, int op) {
    if (id < 0) return;
    std::vector<int> &e = events();
    e.push_back(process()); e.push_back(id); e.push_back(op);
}
inline void set_process(int p) { process() = p; }
} // namespace trigflow_fifo
"""

_EXPORTS = r"""
extern "C" {
long trigflow_fifo_n_events() { return (long)(trigflow_fifo::events().size() / 3); }
void trigflow_fifo_copy_events(int *out) {
    std::vector<int> &e = trigflow_fifo::events();
    for (size_t i = 0; i < e.size(); i++) out[i] = e[i];
}
int trigflow_fifo_n_streams() { return (int)trigflow_fifo::names().size(); }
const char *trigflow_fifo_stream_name(int i) { return trigflow_fifo::names()[i].c_str(); }
void trigflow_fifo_clear() { trigflow_fifo::events().clear(); }
}
"""


# --------------------------------------------------------------------------------------------- the project
@dataclass(frozen=True)
class Process:
    index: int
    function: str  # nnet kernel, e.g. conv_2d_cl
    layer: str  # the layer's name (comment hls4ml writes after the call)
    ii: int  # initiation interval of its per-element loop in the model


@dataclass(frozen=True)
class Dataflow:
    depths: dict[str, int]  # stream → depth declared in myproject.cpp
    aliases: dict[str, str]  # alias → stream (Flatten/Reshape in io_stream are references)
    processes: list[Process]


def _sources(hls_model) -> tuple[Path, str]:
    project = Path(hls_model.config.get_output_dir())
    name = hls_model.config.get_project_name()
    return project, name


def read_dataflow(project: Path, name: str) -> Dataflow:
    """Streams, their declared depths and the dataflow processes of ``firmware/<name>.cpp``."""
    cpp = (project / "firmware" / f"{name}.cpp").read_text()
    depths = {m.group(2): int(m.group(3)) for m in _PRAGMA.finditer(cpp)}
    if not depths:
        raise TrigflowError(
            "the project has no '#pragma HLS STREAM' FIFOs to size; FIFO depths exist only with firmware.io_type=io_stream"
        )
    params = (project / "firmware" / "parameters.h").read_text()
    reuse = {}
    for m in _CONFIG.finditer(params):
        rf = re.search(r"reuse_factor\s*=\s*(\d+)", m.group(2))
        reuse[m.group(1)] = int(rf.group(1)) if rf else 1
    processes = []
    for line in cpp.splitlines():
        m = _CALL.match(line)
        if m:
            function, config = m.group(2), m.group(3).split(",")[-1].strip()
            ii = reuse.get(config, 1) if "conv" in function else 1
            processes.append(Process(len(processes), function, m.group(5), max(1, ii)))
    return Dataflow(depths, dict(_ALIAS.findall(cpp)), processes)


# --------------------------------------------------------------------------------------------- the trace
def _instrument(project: Path, name: str, flow: Dataflow) -> None:
    """Turn the copy at ``project`` into a tracing build (the real project is never touched)."""
    header = project / "firmware" / "ap_types" / "hls_stream.h"
    text = header.read_text()
    edits = [
        ("namespace hls {", _TRACER + "\nnamespace hls {", 1),
        ("std::string _name;", "std::string _name;\n    int _tf_id = -1;", 1),
        ("_name = name;", "_name = name;\n        _tf_id = trigflow_fifo::stream_id(_name);", 1),
        ("_data.push_back(tail);", "_data.push_back(tail);\n        trigflow_fifo::record(_tf_id, 1);", 1),
        ("_data.pop_front();", "_data.pop_front();\n            trigflow_fifo::record(_tf_id, 0);", 2),
    ]
    for old, new, at_least in edits:
        if text.count(old) < at_least:
            raise TrigflowError(f"cannot instrument {header}: '{old}' not found (unknown hls_stream.h layout)")
        text = text.replace(old, new)
    header.write_text(text)

    cpp = project / "firmware" / f"{name}.cpp"
    lines, k, last = [], 0, -1
    for line in cpp.read_text().splitlines():
        m = _CALL.match(line)
        if m:
            lines.append(f"{m.group(1)}trigflow_fifo::set_process({k});")
            k, last = k + 1, len(lines)
        lines.append(line)
    if k != len(flow.processes):
        raise TrigflowError(f"cannot instrument {cpp}: found {k} layer calls, expected {len(flow.processes)}")
    lines.insert(last + 1, "    trigflow_fifo::set_process(-1);")
    cpp.write_text("\n".join(lines) + "\n")

    bridge = project / f"{name}_bridge.cpp"
    bridge.write_text(bridge.read_text() + _EXPORTS)
    build = project / "build_lib.sh"
    build.write_text(build.read_text().replace('CFLAGS="-O3 ', 'CFLAGS="-O0 ', 1))  # tracing only: compiles faster


def _build(project: Path) -> None:
    from trigflow.firmware.convert import _first_error, use_fast_build_flags  # one place parses g++ logs

    use_fast_build_flags(project)
    result = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True)
    log = project / "build_lib.log"
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise TrigflowError(f"C-simulation compile failed: {_first_error(result.stdout + result.stderr)} (log: {log})")


def _stamp(project: Path) -> str:
    stamp = re.search(r"^LIB_STAMP=(\w+)", (project / "build_lib.sh").read_text(), re.MULTILINE)
    if not stamp:
        raise TrigflowError(f"{project / 'build_lib.sh'} has no LIB_STAMP; regenerate the project")
    return stamp.group(1)


def library_path(project: Path, name: str) -> Path:
    """The compiled C-simulation library of the project at ``project``."""
    return project / "firmware" / f"{name}-{_stamp(project)}.so"


def _dlclose(lib) -> None:
    import _ctypes

    _ctypes.dlclose(lib._handle)


def _run(lib, name: str, x: np.ndarray, n_out: int) -> np.ndarray:
    top = getattr(lib, f"{name}_double")
    top.restype = None
    top.argtypes = [np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.zeros((len(x), n_out))
    for i in range(len(x)):
        row = np.zeros(n_out)
        top(np.ascontiguousarray(x[i]), row)
        y[i] = row
    return y


def _output_size(hls_model) -> int:
    outputs = hls_model.get_output_variables()
    if len(outputs) != 1 or len(hls_model.get_input_variables()) != 1:
        raise TrigflowError("FIFO depth measurement supports models with one input and one output")
    return int(outputs[0].size())


def trace_streams(hls_model, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Run a tracing build of the project on ``x``: (events (n, 3) = process, stream, op; stream names).

    Process -1 is the test bench (the bridge writing inputs and reading outputs)."""
    project, name = _sources(hls_model)
    flow = read_dataflow(project, name)
    with tempfile.TemporaryDirectory(prefix="trigflow-fifo-") as tmp:
        copy = Path(tmp) / "prj"
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("*.so", "*_prj", "tb_data"))
        _instrument(copy, name, flow)
        _build(copy)
        lib = ctypes.CDLL(str(library_path(copy, name)))
        try:
            _run(lib, name, x, _output_size(hls_model))
            lib.trigflow_fifo_n_events.restype = ctypes.c_long
            n = lib.trigflow_fifo_n_events()
            events = np.zeros(3 * n, dtype=np.intc)
            lib.trigflow_fifo_copy_events.argtypes = [np.ctypeslib.ndpointer(np.intc, flags="C_CONTIGUOUS")]
            lib.trigflow_fifo_copy_events(events)
            lib.trigflow_fifo_stream_name.restype = ctypes.c_char_p
            names = [lib.trigflow_fifo_stream_name(i).decode() for i in range(lib.trigflow_fifo_n_streams())]
        finally:
            _dlclose(lib)
    return events.reshape(-1, 3), names


# --------------------------------------------------------------------------------------------- the replay
@dataclass
class _Proc:
    name: str
    ii: int
    iterations: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (streams read, streams written) per iteration


def _iterations(ops: np.ndarray) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Group one process's (stream, op) sequence into loop iterations: reads, then writes, each stream once."""
    out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    reads: list[int] = []
    writes: list[int] = []
    for stream, op in ops.tolist():
        if (op == READ and (writes or stream in reads)) or (op == WRITE and stream in writes):
            out.append((tuple(reads), tuple(writes)))
            reads, writes = [], []
        (reads if op == READ else writes).append(stream)
    if reads or writes:
        out.append((tuple(reads), tuple(writes)))
    return out


def _processes(events: np.ndarray, flow: Dataflow) -> list[_Proc]:
    """Source (bench writes), the layers in call order, sink (bench reads)."""
    bench = events[events[:, 0] == -1]
    procs = [_Proc("source", 1, _iterations(bench[bench[:, 2] == WRITE][:, 1:]))]
    for p in flow.processes:
        procs.append(_Proc(p.layer, p.ii, _iterations(events[events[:, 0] == p.index][:, 1:])))
    procs.append(_Proc("sink", 1, _iterations(bench[bench[:, 2] == READ][:, 1:])))
    return procs


def _schedule(procs: list[_Proc], n_streams: int, depth: dict[int, int] | None = None):
    """Cycle-by-cycle replay: each process starts its next iteration as soon as its II has passed, every element
    it reads was written in an earlier cycle and (bounded FIFOs) every stream it writes has a free slot; a slot is
    free again the cycle after its element is read. Returns (write cycles, read cycles) per stream and the number
    of cycles. ``depth=None``: unbounded FIFOs. Raises TrigflowError on deadlock."""
    writes: list[list[int]] = [[] for _ in range(n_streams)]
    reads: list[list[int]] = [[] for _ in range(n_streams)]
    nxt = [0] * len(procs)
    ready = [0] * len(procs)  # earliest cycle of each process's next iteration
    remaining = sum(len(p.iterations) for p in procs)
    limit = max(p.ii for p in procs) + 1
    t = idle = 0
    while remaining:
        fired = []
        for k, proc in enumerate(procs):  # decide on the state before cycle t ...
            if nxt[k] == len(proc.iterations) or t < ready[k]:
                continue
            rd, wr = proc.iterations[nxt[k]]
            if any(len(writes[s]) <= len(reads[s]) for s in rd):
                continue
            if depth is not None and any(len(writes[s]) - len(reads[s]) >= depth.get(s, 1 << 30) for s in wr):
                continue
            fired.append(k)
        for k in fired:  # ... then apply cycle t
            rd, wr = procs[k].iterations[nxt[k]]
            for s in rd:
                reads[s].append(t)
            for s in wr:
                writes[s].append(t)
            nxt[k] += 1
            ready[k] = t + procs[k].ii
            remaining -= 1
        idle = 0 if fired else idle + 1
        if idle > limit:
            stuck = [p.name for k, p in enumerate(procs) if nxt[k] < len(p.iterations)]
            raise TrigflowError(f"FIFO depths deadlock the dataflow (stuck: {', '.join(stuck)}); keep larger depths")
        t += 1
    return writes, reads, t


def _occupancy(writes: list[int], reads: list[int]) -> int:
    """Most elements held at once; an element holds its slot from its write cycle through its read cycle."""
    if not writes:
        return 0
    w, r = np.asarray(writes), np.asarray(reads)
    return int(np.max(np.arange(1, len(w) + 1) - np.searchsorted(r, w, side="left")))


def _per_sample_identical(events: np.ndarray, samples: int) -> bool:
    """Did every calibration sample produce the same access sequence (values do not steer the schedule)?"""
    if samples < 2:
        return True
    if len(events) % samples:
        return False
    chunks = events.reshape(samples, -1, 3)
    return bool(np.all(chunks == chunks[0]))


@dataclass
class FifoProfile:
    """The replay of one C-sim trace: each internal stream's declared depth, measured occupancy and endpoints."""

    depths: dict[str, int]  # declared in the project now
    occupancy: dict[str, int]  # measured with unbounded FIFOs
    producer: dict[str, str]
    consumer: dict[str, str]
    samples: int
    data_independent: bool
    cycles: int  # replay length with unbounded FIFOs
    _procs: list[_Proc] = field(default_factory=list, repr=False)
    _ids: dict[str, int] = field(default_factory=dict, repr=False)

    def proposed(self, margin: int = MARGIN, minimum: int = MIN_DEPTH) -> dict[str, int]:
        """max(measured + margin, minimum), never above the declared (worst-case) depth."""
        return {s: min(d, max(self.occupancy[s] + margin, minimum)) for s, d in self.depths.items()}

    def cycles_with(self, depths: dict[str, int]) -> int:
        """Replay length with FIFOs bounded to ``depths`` (equal to ``cycles``: no stall); raises on deadlock."""
        bounded = {self._ids[s]: d for s, d in depths.items() if s in self._ids}
        return _schedule(self._procs, len(self._ids), bounded)[2]


def measure_fifo_occupancy(hls_model, x: np.ndarray, *, samples: int = 16) -> FifoProfile:
    """Trace the C-sim on ``x[:samples]`` and replay it with unbounded FIFOs (see the module docstring)."""
    project, name = _sources(hls_model)
    flow = read_dataflow(project, name)
    x = np.asarray(x)[:samples]
    if len(x) == 0:
        raise TrigflowError("FIFO depth measurement needs at least one calibration sample")
    events, names = trace_streams(hls_model, x)
    procs = _processes(events, flow)
    writes, reads, cycles = _schedule(procs, len(names))
    ids = {n: i for i, n in enumerate(names)}
    occupancy, producer, consumer = {}, {}, {}
    for stream in flow.depths:
        if stream not in ids:
            raise TrigflowError(f"stream {stream} was never accessed in the C-sim trace; cannot size it")
        s = ids[stream]
        occupancy[stream] = _occupancy(writes[s], reads[s])
        producer[stream] = next(p.name for p in procs if any(s in wr for _, wr in p.iterations))
        consumer[stream] = next(p.name for p in procs if any(s in rd for rd, _ in p.iterations))
    return FifoProfile(
        dict(flow.depths), occupancy, producer, consumer, len(x), _per_sample_identical(events, len(x)), cycles, procs, ids
    )


# --------------------------------------------------------------------------------------------- the rewrite
def _rewrite(cpp: Path, depths: dict[str, int]) -> None:
    text = cpp.read_text()

    def depth(m: re.Match) -> str:
        return m.group(1) + str(depths.get(m.group(2), int(m.group(3))))

    cpp.write_text(_PRAGMA.sub(depth, text))


def _new_stamp(project: Path, old: str, depths: dict[str, int]) -> str:
    """A new library name (a fresh dlopen, never a stale handle), derived from the old stamp and the depths."""
    stamp = hashlib.sha256(json.dumps([old, sorted(depths.items())]).encode()).hexdigest()[:8]
    for path, pattern in ((project / "build_lib.sh", "LIB_STAMP={}"), (project / "hls4ml_config.yml", "Stamp: {}")):
        text = path.read_text()
        if pattern.format(old) in text:
            path.write_text(text.replace(pattern.format(old), pattern.format(stamp)))
    return stamp


def apply_fifo_depths(hls_model, depths: dict[str, int], x: np.ndarray, reference: np.ndarray | None = None) -> None:
    """Write ``depths`` into the project, recompile, and require bit-identical C-sim outputs on ``x``.

    The change is staged in a copy beside the project and swapped in only when the outputs match ``reference``
    (default: the current library's outputs on ``x``); ``hls_model`` is then linked to the new library."""
    from trigflow.firmware.csim import predict

    project, name = _sources(hls_model)
    if reference is None:
        reference = predict(hls_model, x)
    old_stamp = _stamp(project)
    stage = project.parent / f".{project.name}.fifo-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(project, stage, symlinks=True)
    old_lib = hls_model._top_function_lib
    try:
        for lib in stage.glob(f"firmware/{name}-*.so"):
            lib.unlink()
        _rewrite(stage / "firmware" / f"{name}.cpp", depths)
        stamp = _new_stamp(stage, old_stamp, depths)
        _build(stage)
        hls_model._top_function_lib = ctypes.CDLL(str(library_path(stage, name)))
        y = predict(hls_model, x)
        reference = np.asarray(reference, dtype=np.float64).reshape(y.shape)
        if not np.array_equal(y, reference):
            bad = int(np.sum(~np.all(y == reference, axis=1)))
            raise TrigflowError(f"C-sim outputs changed after rewriting FIFO depths ({bad} of {len(y)} samples); kept the old project")
    except BaseException:
        hls_model._top_function_lib = old_lib
        shutil.rmtree(stage, ignore_errors=True)
        raise
    retired = project.parent / f".{project.name}.fifo-old-{os.getpid()}"
    os.rename(project, retired)
    os.rename(stage, project)
    shutil.rmtree(retired, ignore_errors=True)
    staged_lib = hls_model._top_function_lib
    hls_model._top_function_lib = ctypes.CDLL(str(library_path(project, name)))
    _dlclose(staged_lib)
    hls_model.config.config["Stamp"] = stamp
    _set_graph_pragmas(hls_model, depths)


def _set_graph_pragmas(hls_model, depths: dict[str, int]) -> None:
    """Keep an in-memory ModelGraph in step, so a later ``write()`` keeps the depths (no-op for linked projects)."""
    try:
        variables = hls_model.output_vars.values()
    except Exception:  # FilesystemModelGraph: no graph in memory
        return
    for var in variables:
        pragma = getattr(var, "pragma", None)
        if isinstance(pragma, tuple) and pragma[0] == "stream" and var.name in depths:
            var.pragma = ("stream", depths[var.name])


def optimize_fifo_depths(
    hls_model,
    x: np.ndarray,
    *,
    samples: int = 16,
    margin: int = MARGIN,
    reference: np.ndarray | None = None,
) -> dict[str, tuple[int, int]]:
    """Measure each FIFO's occupancy on ``x[:samples]``, write max(measured + ``margin``, 2) into the project,
    recompile and re-verify the bits on all of ``x`` (against ``reference`` when given). Returns stream name →
    (old depth, new depth); the measurement is kept in ``fifo_depths.json`` in the project."""
    profile = measure_fifo_occupancy(hls_model, x, samples=samples)
    depths = profile.proposed(margin)
    summary = summarize(profile, depths)
    apply_fifo_depths(hls_model, depths, x, reference)
    project, _ = _sources(hls_model)
    (project / "fifo_depths.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {s: (profile.depths[s], depths[s]) for s in profile.depths}


def summarize(profile: FifoProfile, depths: dict[str, int]) -> dict[str, Any]:
    """Report form of a measurement; replays with ``depths`` to state the cycles it costs (raises on deadlock)."""
    bounded = profile.cycles_with(depths)
    return {
        "method": "C-sim stream trace replayed as a concurrent dataflow schedule (one iteration per II per process); "
        f"depth = max(measured occupancy + {MARGIN}, {MIN_DEPTH}), capped at hls4ml's worst-case depth",
        "samples": profile.samples,
        "trace_data_independent": profile.data_independent,
        "replay_cycles": {"unbounded": profile.cycles, "new_depths": bounded},
        "streams": {
            s: {
                "producer": profile.producer[s],
                "consumer": profile.consumer[s],
                "old": profile.depths[s],
                "measured": profile.occupancy[s],
                "new": depths[s],
            }
            for s in profile.depths
        },
        "total_old": int(sum(profile.depths.values())),
        "total_new": int(sum(depths.values())),
    }
