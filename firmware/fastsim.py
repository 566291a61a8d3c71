"""Firmware layer: fast C-simulation — the loop over samples in C++, on every core, with hls4ml's exact bits.

hls4ml's ``ModelGraph.predict`` calls the compiled bridge once per sample from Python, on one core. Here the
same bridge function (``<project>_double``: double → input ap type, top function, output ap type → double)
is called from a generated C++ file, ``<project>/trigflow_batch.cpp`` (it includes only the bridge, so the
project's layer-named typedefs cannot clash with system headers), and the loop over samples, the threads and
the worker processes live in ``<project>/trigflow_runtime.cpp`` (no project header). Both are compiled with
the project's own ``build_lib.sh`` flags (plus ``-fvisibility=hidden``; ``-pthread`` for the runtime part),
together with ``firmware/<project>.cpp``, into ``trigflow_batch-<stamp>.so`` beside the project (log:
``trigflow_batch.log``; manifest: ``trigflow_batch.json``). The library holds the weights (they are in the
headers) and does not need the ModelGraph: ``FastSim.from_project(folder)`` is enough; the C entry point
``trigflow_batch(const double* in, double* out, long n, int threads)`` can be used without Python too.

Thread safety. Some hls4ml layer implementations keep ``static`` variables in the C-simulation:

* lookup tables initialised lazily (``static bool initialized`` + ``static table[]``: sigmoid, softmax, tanh,
  ...). Safe with threads because one warm-up sample runs in the calling thread before any worker starts,
  after which the tables are only read;
* per-call state: io_stream convolution/pooling line buffers and pixel counters (``nnet_conv_stream.h``,
  ``nnet_conv2d_stream.h``), recurrent layers with ``use_static = true`` (``nnet_recurrent.h``), the
  unsynchronised name counter of unnamed ``hls::stream`` objects, and any ``static`` in the generated top
  function. Threads would race on these, so such projects run in *processes*: ``fork()``ed workers, each
  with its own copy of every static, writing their rows into shared memory.

``classify(project)`` decides (``threads`` or ``processes``, with the reason) and the choice is compiled into
the library as its default; ``predict(mode="processes")`` is allowed for any project, ``mode="threads"`` only
where it is safe (a race would corrupt the statics for the rest of the process, not only for that call).
Multi-input and multi-output models are supported (a list of arrays in, a list out), as in hls4ml.

Distribution: ``predict_distributed`` splits large sample counts into chunks over a Ray cluster (the library
bytes travel through the object store, so workers need trigflow and a compatible glibc, not the project).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

TEMPLATES = Path(__file__).parent / "templates" / "fastsim"
TEMPLATE = TEMPLATES / "trigflow_batch.cpp"  # per project: one sample through the bridge (filled in)
RUNTIME = TEMPLATES / "trigflow_runtime.cpp"  # same for every project: loops, threads, processes
SOURCE_NAME = "trigflow_batch.cpp"
RUNTIME_NAME = "trigflow_runtime.cpp"
ABI = 2
MANIFEST_NAME = "trigflow_batch.json"
LOG_NAME = "trigflow_batch.log"
MODES = {"threads": 0, "processes": 1}
EXTRA_FLAGS = ["-fvisibility=hidden"]  # added to build_lib.sh's flags; the runtime part also gets -pthread

_lock = threading.Lock()
_loaded: dict[str, _Library] = {}  # library path → loaded library (dlopen once per process)


# --- reading the project ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Port:
    name: str  # argument name in the bridge
    size: str  # C++ expression for the number of values per sample (evaluated by the compiler)


@dataclass(frozen=True)
class BridgeInfo:
    project: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]


def project_name(project: Path) -> str:
    cfg = project / "hls4ml_config.yml"
    if cfg.exists():
        m = re.search(r"^ProjectName:\s*(\S+)\s*$", cfg.read_text(), re.MULTILINE)
        if m and (project / f"{m.group(1)}_bridge.cpp").exists():
            return m.group(1)
    bridges = sorted(p.name[: -len("_bridge.cpp")] for p in project.glob("*_bridge.cpp"))
    if len(bridges) != 1:
        raise TrigflowError(
            f"{project} does not look like an hls4ml project (expected one <project>_bridge.cpp, found "
            f"{len(bridges)}); pass the folder that hls4ml wrote (the one with build_lib.sh and firmware/)"
        )
    return bridges[0]


def _function_body(text: str, name: str) -> tuple[str, str]:
    """Parameter list and body of ``void name(...) { ... }`` in ``text``."""
    m = re.search(rf"\bvoid\s+{re.escape(name)}\s*\(([^)]*)\)\s*\{{", text)
    if m is None:
        raise TrigflowError(f"{name} not found in the hls4ml bridge; was the project written by hls4ml?")
    depth, i = 1, m.end()
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return m.group(1), text[m.end() : i - 1]


# nnet::convert_data<src_t, dst_t, SIZE>(src, dst): the bridge's conversions, double on the outer side
CONVERT_CALL = (
    r"convert_data\s*<\s*([^,<>]+)\s*,\s*([^,<>]+)\s*,\s*([^>]+?)\s*>"  # <src_t, dst_t, SIZE>
    r"\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)"  # (src, dst)
)


def read_bridge(project: Path) -> BridgeInfo:
    """Inputs and outputs of the project's ``<project>_double`` bridge function, with their sizes."""
    name = project_name(project)
    params, body = _function_body((project / f"{name}_bridge.cpp").read_text(), f"{name}_double")
    args = [a.strip().split("*")[-1].strip() for a in params.split(",") if a.strip()]
    conv = re.findall(CONVERT_CALL, body)
    inputs = {src: size for s_t, _, size, src, _ in conv if s_t.strip() == "double"}
    outputs = {dst: size for _, d_t, size, _, dst in conv if d_t.strip() == "double"}
    ins = tuple(Port(a, inputs[a]) for a in args if a in inputs)
    outs = tuple(Port(a, outputs[a]) for a in args if a in outputs)
    if not ins or not outs or len(ins) + len(outs) != len(args):
        raise TrigflowError(
            f"cannot read the inputs/outputs of {name}_double in {project / (name + '_bridge.cpp')} "
            f"(arguments {args}); this hls4ml bridge layout is not supported by the fast C-simulation"
        )
    return BridgeInfo(name, ins, outs)


def classify(project: str | Path) -> tuple[str, str]:
    """``("threads" | "processes", reason)``: whether workers may share one copy of the C-sim's statics."""
    project = Path(project)
    name = project_name(project)
    fw = project / "firmware"
    header = (fw / f"{name}.h").read_text() if (fw / f"{name}.h").exists() else ""
    top = (fw / f"{name}.cpp").read_text() if (fw / f"{name}.cpp").exists() else ""
    params = (fw / "parameters.h").read_text() if (fw / "parameters.h").exists() else ""
    if "hls::stream" in header:
        return "processes", "io_stream: stream layers keep static line buffers/counters (not thread-safe)"
    if re.search(r"use_static\s*=\s*true", params):
        return "processes", "recurrent layer with use_static = true keeps its state in static variables"
    statics = [
        line.strip()
        for line in top.splitlines()
        if re.match(r"\s*static\s", line) and "loaded_weights" not in line and "const" not in line
    ]
    if statics:
        return "processes", f"the top function declares static state ({statics[0]})"
    return "threads", "io_parallel without per-call static state (lazy lookup tables are warmed up first)"


def _stamp(project: Path, build_script: str) -> str:
    """Digest of everything the library is built from: template, build script, bridge and firmware sources."""
    h = hashlib.sha256()
    h.update(TEMPLATE.read_bytes())
    h.update(RUNTIME.read_bytes())
    h.update(build_script.encode())
    h.update(" ".join(EXTRA_FLAGS).encode())
    files = [project / f"{project_name(project)}_bridge.cpp"]
    sources = (".h", ".hpp", ".cpp", ".txt")
    files += sorted(p for p in (project / "firmware").rglob("*") if p.suffix in sources)
    for path in files:
        h.update(str(path.relative_to(project)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


# --- building -----------------------------------------------------------------------------------------------
def render(info: BridgeInfo, mode: str) -> str:
    call = [f"in[{k}] + i * trigflow_gen_in_size[{k}]" for k in range(len(info.inputs))]
    call += [f"out[{k}] + i * trigflow_gen_out_size[{k}]" for k in range(len(info.outputs))]
    fill = {
        "BRIDGE": f"{info.project}_bridge.cpp",
        "PROJECT": info.project,
        "N_IN": str(len(info.inputs)),
        "N_OUT": str(len(info.outputs)),
        "IN_SIZES": ", ".join(f"(long)({p.size})" for p in info.inputs),
        "OUT_SIZES": ", ".join(f"(long)({p.size})" for p in info.outputs),
        "DEFAULT_MODE": str(MODES[mode]),
        "CALL_ARGS": ", ".join(call),
    }
    text = TEMPLATE.read_text()
    for key, value in fill.items():
        text = text.replace(f"@{key}@", value)
    return text


def _build_variables(project: Path, script: str) -> dict[str, str]:
    """CC, CFLAGS, INCFLAGS, LDFLAGS, WEIGHTS_DIR as the project's build_lib.sh sets them (its own checks)."""
    head = []
    for line in script.splitlines():
        if line.lstrip().startswith("${CC}"):
            break
        head.append(line)
    names = ("CC", "CFLAGS", "INCFLAGS", "LDFLAGS", "WEIGHTS_DIR")
    probe = "\n".join(head) + "\nprintf '%s\\0' " + " ".join(f'"${{{n}}}"' for n in names) + "\n"
    result = subprocess.run(["bash", "-c", probe], cwd=project, capture_output=True, text=True)
    values = result.stdout.split("\0")
    if result.returncode != 0 or len(values) < len(names):
        return {
            "CC": "g++",
            "CFLAGS": "-O3 -fPIC -std=c++11",
            "INCFLAGS": "-Ifirmware/ap_types/",
            "LDFLAGS": "",
            "WEIGHTS_DIR": f'"{project}/firmware/weights"',
        }
    return dict(zip(names, values))


def _compile(project: Path, info: BridgeInfo, out_name: str, log: list[str]) -> None:
    script = (project / "build_lib.sh").read_text() if (project / "build_lib.sh").exists() else ""
    v = _build_variables(project, script)
    cc = v["CC"] or "g++"
    if shutil.which(cc) is None:
        raise TrigflowError(f"{cc} not found on PATH; install a C++ compiler (e.g. `apt-get install g++`)")
    flags = [*v["CFLAGS"].split(), *EXTRA_FLAGS, *v["INCFLAGS"].split(), f"-DWEIGHTS_DIR={v['WEIGHTS_DIR']}"]
    build = Path(tempfile.mkdtemp(prefix=".trigflow_build.", dir=project))
    try:
        objects = [build / "top.o", build / "batch.o", build / "runtime.o"]
        sources = [f"firmware/{info.project}.cpp", SOURCE_NAME, RUNTIME_NAME]
        commands = [[cc, *flags, "-c", src, "-o", str(obj)] for src, obj in zip(sources, objects)]
        commands[-1][1:1] = ["-pthread"]  # only the runtime part uses threads
        with ThreadPoolExecutor(len(commands)) as pool:  # the translation units compile side by side
            results = list(pool.map(lambda c: subprocess.run(c, cwd=project, capture_output=True, text=True),
                                    commands))
        lib_tmp = build / "lib.so"
        link = [cc, *v["CFLAGS"].split(), *EXTRA_FLAGS, "-pthread", "-shared", *map(str, objects),
                "-o", str(lib_tmp), *v["LDFLAGS"].split()]
        for cmd, res in zip(commands, results):
            log.append("$ " + " ".join(cmd) + "\n" + res.stdout + res.stderr)
        if all(r.returncode == 0 for r in results):
            res = subprocess.run(link, cwd=project, capture_output=True, text=True)
            log.append("$ " + " ".join(link) + "\n" + res.stdout + res.stderr)
            results.append(res)
        failed = [r for r in results if r.returncode != 0]
        if failed:
            text = failed[0].stdout + failed[0].stderr
            first = next((ln for ln in text.splitlines() if "error" in ln.lower()), text.strip()[-300:])
            raise TrigflowError(
                f"fast C-simulation compile failed: {first.strip()} (log: {project / LOG_NAME})"
            )
        os.replace(lib_tmp, project / out_name)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def build(project: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Generate and compile the batched library of ``project`` unless an up-to-date one exists.

    Returns the manifest (``trigflow_batch.json``): stamp, library file and digest, ports, mode and reason.
    """
    project = Path(project).resolve()
    if not (project / "firmware").is_dir():
        raise TrigflowError(
            f"{project} is not an hls4ml project folder (no firmware/); convert the model first"
        )
    script = (project / "build_lib.sh").read_text() if (project / "build_lib.sh").exists() else ""
    stamp = _stamp(project, script)
    manifest_path = project / MANIFEST_NAME
    if not force and manifest_path.exists():
        with contextlib.suppress(ValueError, OSError, KeyError):
            manifest = json.loads(manifest_path.read_text())
            library = project / manifest["library"]
            intact = library.exists() and _sha256(library) == manifest["library_sha256"]
            if manifest.get("stamp") == stamp and intact:
                return manifest
    info = read_bridge(project)
    mode, reason = classify(project)
    _write_atomic(project / SOURCE_NAME, render(info, mode))
    _write_atomic(project / RUNTIME_NAME, RUNTIME.read_text())
    library = f"trigflow_batch-{stamp[:16]}.so"
    log: list[str] = []
    try:
        _compile(project, info, library, log)
    finally:
        _write_atomic(project / LOG_NAME, "\n".join(log))
    manifest = {
        "stamp": stamp,
        "library": library,
        "project": info.project,
        "inputs": [{"name": p.name, "size": p.size} for p in info.inputs],
        "outputs": [{"name": p.name, "size": p.size} for p in info.outputs],
        "mode": mode,
        "mode_reason": reason,
        "library_sha256": _sha256(project / library),
    }
    _write_atomic(manifest_path, json.dumps(manifest, indent=2))
    for old in project.glob("trigflow_batch-*.so"):  # libraries of earlier builds
        if old.name != library:
            old.unlink(missing_ok=True)
    return manifest


# --- running ------------------------------------------------------------------------------------------------
class _Library:
    """A loaded trigflow_batch library: sizes come from the library itself."""

    def __init__(self, path: Path):
        self.path = path
        lib = ctypes.CDLL(str(path))
        if lib.trigflow_abi() != ABI:
            raise TrigflowError(f"{path} was built by another trigflow version; rebuild it")
        for fn in ("trigflow_input_size", "trigflow_output_size"):
            getattr(lib, fn).restype = ctypes.c_long
            getattr(lib, fn).argtypes = [ctypes.c_int]
        self.input_sizes = [lib.trigflow_input_size(k) for k in range(lib.trigflow_n_inputs())]
        self.output_sizes = [lib.trigflow_output_size(k) for k in range(lib.trigflow_n_outputs())]
        self.default_mode = {v: k for k, v in MODES.items()}[lib.trigflow_default_mode()]
        self._run = lib.trigflow_batch_multi
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p), ctypes.c_long,
                              ctypes.c_int, ctypes.c_int]
        self._lib = lib

    @classmethod
    def load(cls, path: Path) -> _Library:
        key = str(path)
        with _lock:
            if key not in _loaded:
                _loaded[key] = cls(path)
            return _loaded[key]

    def inputs(self, x: Any) -> tuple[list[np.ndarray], int]:
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.input_sizes):
            raise TrigflowError(f"the model has {len(self.input_sizes)} input(s), got {len(xs)} array(s)")
        arrays, counts = [], []
        for k, (xi, size) in enumerate(zip(xs, self.input_sizes)):
            xi = np.ascontiguousarray(xi, dtype=np.float64)
            n, rem = divmod(xi.size, size)
            if rem or (xi.ndim > 1 and xi.shape[0] != n):
                raise TrigflowError(
                    f"input {k}: shape {xi.shape} does not hold whole samples of {size} values each"
                )
            arrays.append(xi.reshape(n, size))
            counts.append(n)
        if len(set(counts)) != 1:
            raise TrigflowError(f"the inputs hold different numbers of samples: {counts}")
        return arrays, counts[0]

    def run(self, x: Any, workers: int, mode: str) -> list[np.ndarray]:
        arrays, n = self.inputs(x)
        outs = [np.empty((n, size), dtype=np.float64) for size in self.output_sizes]
        ins_p = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
        outs_p = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
        rc = self._run(ins_p, outs_p, n, int(workers), MODES[mode])  # ctypes releases the GIL
        if rc != 0:
            raise TrigflowError(
                f"fast C-simulation failed (code {rc}, mode {mode}): a worker process crashed; see its output"
            )
        return outs


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class FastSim:
    """The batched C-simulation of one compiled hls4ml project."""

    def __init__(self, project_dir: Path, manifest: dict[str, Any], library: _Library):
        self.project_dir = project_dir
        self.manifest = manifest
        self._lib = library

    @classmethod
    def from_project(cls, project_dir: str | Path, *, rebuild: bool = False) -> FastSim:
        """Load (building first if missing or out of date) the batched library of an hls4ml project folder."""
        project = Path(project_dir).resolve()
        manifest = build(project, force=rebuild)
        try:
            library = _Library.load(project / manifest["library"])
        except OSError:  # damaged library file: build it again once
            manifest = build(project, force=True)
            library = _Library.load(project / manifest["library"])
        return cls(project, manifest, library)

    @property
    def mode(self) -> str:
        return self.manifest["mode"]

    @property
    def mode_reason(self) -> str:
        return self.manifest["mode_reason"]

    @property
    def library_path(self) -> Path:
        return self._lib.path

    @property
    def input_sizes(self) -> list[int]:
        return list(self._lib.input_sizes)

    @property
    def output_sizes(self) -> list[int]:
        return list(self._lib.output_sizes)

    def predict(self, x: Any, threads: int | None = None, *, mode: str | None = None) -> Any:
        """C-simulation outputs, float64, one row per sample (a list of arrays for multi-output models).

        ``x``: one array (rows = samples) or, for multi-input models, a list of arrays. ``threads``: number of
        workers (default: the cores this process may use); ``mode``: ``threads`` or ``processes`` (default:
        the project's safe choice, see ``classify``). With ``threads=1`` the samples run in order in this
        thread, exactly like hls4ml predict.
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise TrigflowError(f"unknown fast C-simulation mode {mode!r}; use one of {sorted(MODES)}")
        if mode == "threads" and self.mode != "threads" and (threads or available_cores()) > 1:
            # a race corrupts the statics for the rest of this process, not only this call
            raise TrigflowError(
                f"{self.project_dir} is not thread-safe ({self.mode_reason}); use mode='processes'"
            )
        outs = self._lib.run(x, threads or available_cores(), mode)
        return outs[0] if len(outs) == 1 else outs


def fast_predict(hls_model, x: Any, threads: int | None = None) -> Any:
    """``FastSim.predict`` on the project of an hls4ml ModelGraph (written and compiled)."""
    return FastSim.from_project(hls_model.config.get_output_dir()).predict(x, threads)


# --- distribution -------------------------------------------------------------------------------------------
def _ray_chunk(digest: str, blob: bytes, x: Any, threads: int) -> list[np.ndarray]:
    """Ray task: write the library once per node (content-addressed), load it, run one chunk."""
    path = Path(tempfile.gettempdir()) / f"trigflow_batch-{digest[:24]}.so"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".trigflow_batch.", suffix=".so", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    lib = _Library.load(path)
    return lib.run(x, threads, lib.default_mode)


def predict_distributed(
    project_dir: str | Path,
    x: Any,
    address: str | None = None,
    chunks: int | None = None,
    *,
    threads_per_chunk: int = 1,
) -> Any:
    """Fast C-simulation of many samples split into chunks over a Ray cluster, results in input order.

    ``address``: a Ray cluster (``ray.init(address=..., include_dashboard=False)``; disconnected afterwards).
    Without it, an already initialised Ray (e.g. ``ray.init(num_cpus=2)``) is used, and without Ray at all
    the samples are split over this machine's cores (``FastSim.predict``). ``chunks``: default 4 per CPU of
    the cluster, at least 1,000 samples each. The workers get the compiled library through the object store.
    """
    sim = FastSim.from_project(project_dir)
    arrays, n = sim._lib.inputs(x)
    import ray

    started = False
    if address is not None and not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    if not ray.is_initialized():
        return sim.predict(arrays if len(arrays) > 1 else arrays[0])
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        chunks = max(1, min(chunks or 4 * cpus, max(1, n // 1000)))
        blob = sim.library_path.read_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        blob_ref = ray.put(blob)
        task = ray.remote(num_cpus=threads_per_chunk)(_ray_chunk)
        bounds = np.linspace(0, n, chunks + 1).astype(int)
        refs = [
            task.remote(digest, blob_ref, [a[lo:hi] for a in arrays], threads_per_chunk)
            for lo, hi in zip(bounds[:-1], bounds[1:])
            if hi > lo
        ]
        parts = ray.get(refs)
    finally:
        if started:
            ray.shutdown()
    outs = [np.concatenate([p[k] for p in parts]) for k in range(len(sim.output_sizes))]
    return outs[0] if len(outs) == 1 else outs
