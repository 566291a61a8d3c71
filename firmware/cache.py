"""Firmware layer: a cache of converted, compiled projects; an unchanged model skips hls4ml and g++.

``cached_convert(model, spec)`` → ``(project_dir, FastSim)``. An entry lives in
``$TRIGFLOW_CACHE/projects/<key>/`` (default ``~/.cache/trigflow``) and is a complete hls4ml project with its
fast batched C-simulation library (``trigflow.firmware.fastsim``; hls4ml's own library on request) and
``trigflow_cache.json`` (key, spec, versions and the SHA-256 of every project file).

* key: SHA-256 of the model architecture JSON, every weight array (dtype, shape, bytes), the FirmwareSpec,
  the hls4ml version and the trigflow version;
* hit: the manifest's key and every file digest are checked (a few ms), then the fast library is loaded;
  anything missing or different makes the entry *corrupted*: it is moved aside and rebuilt;
* miss: the model is converted (``trigflow.firmware.convert.convert``) into a staging folder in the cache,
  both libraries are compiled, and the folder is renamed to ``<key>`` in one step. Two processes missing at
  once: a lock file (``<key>.lock``, ``flock``) makes the second wait and then hit; where locks do not work
  (some network file systems) the rename still lets exactly one entry win, and the loser uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trigflow.errors import TrigflowError
from trigflow.firmware import convert as conversion
from trigflow.firmware import fastsim
from trigflow.firmware.fastsim import FastSim

CACHE_ENV = "TRIGFLOW_CACHE"
MANIFEST = "trigflow_cache.json"
FORMAT = 1
UNTRACKED_PREFIXES = ("trigflow_batch", ".trigflow_build")  # fast-sim files: fastsim's manifest checks them


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "trigflow")


def cache_key(model, spec: conversion.FirmwareSpec) -> str:
    from importlib.metadata import version

    import trigflow

    h = hashlib.sha256(f"trigflow-cache-v{FORMAT}\0".encode())
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        h.update(model.to_json().encode() + b"\0")
    for w in model.get_weights():
        h.update(f"{w.dtype.str}{w.shape}".encode() + b"\0")
        h.update(w.tobytes(order="C"))
    h.update(json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str).encode() + b"\0")
    h.update(f"hls4ml={version('hls4ml')};trigflow={trigflow.__version__}".encode())
    return h.hexdigest()


def _tracked(entry: Path) -> Iterator[Path]:
    for path in sorted(entry.rglob("*")):
        rel = path.relative_to(entry)
        if path.is_file() and rel.name != MANIFEST and not rel.parts[0].startswith(UNTRACKED_PREFIXES):
            yield path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _open(entry: Path, key: str) -> FastSim | None:
    """The entry's FastSim if the entry is complete and undamaged, else None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        if manifest.get("key") != key or manifest.get("format") != FORMAT:
            return None
        for rel, digest in manifest["files"].items():
            if _digest(entry / rel) != digest:
                return None
        return FastSim.from_project(entry)  # rebuilds the fast library itself if that part is damaged
    except (OSError, ValueError, KeyError, TrigflowError):
        return None


def _discard(path: Path) -> None:
    if path.exists():
        trash = path.with_name(f".trash-{path.name[:16]}-{os.getpid()}-{time.monotonic_ns()}")
        with contextlib.suppress(OSError):
            os.replace(path, trash)
            path = trash
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): rely on the atomic rename alone
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(
    model, spec: conversion.FirmwareSpec, key: str, root: Path, entry: Path, compile_hls4ml: bool
) -> None:
    """Convert and compile into a staging folder, then rename it to ``entry`` (first rename wins)."""
    from importlib.metadata import version

    import trigflow

    staging = Path(tempfile.mkdtemp(prefix=f".staging-{key[:16]}-", dir=root))
    try:
        project = staging / key
        hls_model = conversion.convert(model, project, spec, compile=False)
        with ThreadPoolExecutor(2) as pool:  # hls4ml's library and the fast library compile side by side
            jobs = [pool.submit(fastsim.build, project)]
            if compile_hls4ml:
                jobs.append(pool.submit(conversion.compile_project, hls_model))
            for job in jobs:
                job.result()
        cfg = project / "hls4ml_config.yml"
        if cfg.exists():
            cfg.write_text(cfg.read_text().replace(str(project), str(entry)))
        manifest = {
            "format": FORMAT,
            "key": key,
            "spec": dataclasses.asdict(spec),
            "versions": {"hls4ml": version("hls4ml"), "trigflow": trigflow.__version__},
            "model": model.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {str(p.relative_to(project)): _digest(p) for p in _tracked(project)},
        }
        (project / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            os.rename(project, entry)
        except OSError:
            if not entry.exists():
                raise  # not a lost race
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cached_convert(
    model, spec: conversion.FirmwareSpec, *, cache_dir: str | Path | None = None, compile_hls4ml: bool = False
) -> tuple[Path, FastSim]:
    """The compiled project of ``model`` under ``spec`` and its fast C-simulation, converting only on a miss.

    ``compile_hls4ml=True`` also builds hls4ml's own C-simulation library (``firmware/<project>-<stamp>.so``)
    on a miss. It is off by default: the fast library is all the simulation needs, and skipping the second
    compile of the same firmware halves the cold start. An entry is reused either way.
    """
    root = cache_root(cache_dir) / "projects"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrigflowError(
            f"cannot create the cache folder {root} ({exc}); set ${CACHE_ENV} to a writable folder"
        ) from exc
    key = cache_key(model, spec)
    entry = root / key
    sim = _open(entry, key)
    if sim is not None:
        return entry, sim
    with _locked(root / f"{key}.lock"):
        sim = _open(entry, key)  # another process may have built it while we waited
        if sim is None:
            _discard(entry)  # missing, incomplete or damaged
            _build(model, spec, key, root, entry, compile_hls4ml)
            sim = _open(entry, key)
    if sim is None:
        raise TrigflowError(
            f"cache entry {entry} is unusable right after it was built; delete {root} and retry"
        )
    return entry, sim
