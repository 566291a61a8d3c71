"""Firmware layer: the conversion fallback chain — an hls4ml error is never the answer a user gets.

``build_with_fallback(dep, project_dir, force=..., compile=...) -> (hls_model, dep, conversion)`` tries, in
order:

1. ``bit_exact`` — the chosen configuration as is (hls4ml's bit-exact precision flow);
2. ``rewritten`` — when hls4ml raises while converting: the graph rewrites of ``rewrites()`` (each a pass
   in ``firmware.passes``), checked to compute the same outputs on the data, then the bit-exact flow again;
3. ``explicit_types`` — hls4ml's bit-exact flow off, every layer's type set by trigflow: the exact types of
   ``firmware.passes.exact_types`` (interval arithmetic from the quantizers, the baked weights and the input
   type), the user's per-layer overrides on top; hls4ml's result is checked (types and weights) before the
   project is written.

The returned ``dep`` is the deployment that was built (rewritten model, spec), so the proof and the
localisation (``proof.localize``) work on what became firmware. ``conversion`` records the path taken, the
passes applied and the errors that made each step fall through (for the report). When every step fails the
last one's error is raised (a one-line ``TrigflowError``). Every step that fails, fails in conversion: the
project is compiled once, for the step that converted. ``compile=False`` leaves the g++ build to
``compile_firmware`` (so the two can be timed apart).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError

__all__ = ["build_with_fallback", "compile_firmware", "explicit_types", "rewrites"]

CONVERSION_ERROR = "hls4ml could not convert"


def rewrites() -> list[Any]:
    """The graph rewrites tried when hls4ml's bit-exact flow raises, in order."""
    from trigflow.firmware.passes.concat_last_axis import ConcatenateLastAxis

    return [ConcatenateLastAxis()]


def _conversion_failed(exc: TrigflowError) -> bool:
    return str(exc).startswith(CONVERSION_ERROR)


def _same_outputs(a, b, x: np.ndarray) -> bool:
    """The rewritten Keras model gives exactly the original's outputs on the data."""
    pa = a.predict(x, batch_size=4096, verbose=0)
    pb = b.predict(x, batch_size=4096, verbose=0)
    return bool(np.array_equal(pa, pb))


def explicit_types(dep) -> tuple[Any, list[str]]:
    """``dep`` with hls4ml's bit-exact flow off and every layer's type from ``exact_types.propagate`` (the
    user's overrides on top); plus the analysis' notes."""
    from trigflow.firmware.passes.exact_types import propagate

    _, prec, notes = propagate(dep.model, dep.spec.input_type, max_weight_frac=24)
    input_name = dep.model.input_names[0]
    spec = dataclasses.replace(
        dep.spec,
        bit_exact=False,
        input_type=prec[input_name]["result"],
        layer_precisions=prec,
    )
    return dataclasses.replace(dep, spec=spec), notes


def build_with_fallback(dep, project_dir: str | Path, *, force: bool = False, compile: bool = True):
    """``(hls_model, dep, conversion)``; see the module docstring."""
    from trigflow.firmware.autoconfig import _quiet, build_firmware

    errors: list[str] = []
    if dep.spec.bit_exact:
        try:
            hls_model = build_firmware(dep, project_dir, force=force, compile=compile)
            return hls_model, dep, {"path": "bit_exact", "passes": []}
        except TrigflowError as exc:
            if not _conversion_failed(exc):
                raise
            errors.append(f"bit_exact: {exc}")
    else:  # a float model: profiled types already (nothing for the bit-exact flow to get wrong)
        hls_model = build_firmware(dep, project_dir, force=force, compile=compile)
        return hls_model, dep, {"path": "profiled_types", "passes": []}

    model, applied = dep.model, []
    for rewrite in rewrites():
        with _quiet():
            model, changed = rewrite.apply(model)
        if changed:
            applied.append(type(rewrite).__name__)
    if applied:
        with _quiet():
            same = _same_outputs(dep.model, model, dep.x)
        if not same:
            errors.append(f"rewritten ({', '.join(applied)}): outputs differ from the model; not used")
            model, applied = dep.model, []
    if applied:
        rewritten = dataclasses.replace(dep, model=model)
        try:
            hls_model = build_firmware(rewritten, project_dir, force=force, compile=compile)
            return hls_model, rewritten, {"path": "rewritten", "passes": applied, "errors": errors}
        except TrigflowError as exc:
            if not _conversion_failed(exc):
                raise
            errors.append(f"rewritten ({', '.join(applied)}): {exc}")

    try:
        typed, notes = explicit_types(dataclasses.replace(dep, model=model))
    except TrigflowError as exc:
        raise TrigflowError(
            f"{errors[0]}; the fallbacks failed too (explicit types: {exc}); set the types of that part with "
            "--config LayerName: {layer: {Precision: ...}}"
        ) from None
    hls_model = _build_checked(typed, project_dir, force, compile)
    typed = dataclasses.replace(typed, notes=[*typed.notes, *notes])
    conversion = {"path": "explicit_types", "passes": applied, "errors": errors}
    return hls_model, typed, conversion


def compile_firmware(hls_model) -> None:
    """The g++ build of a project converted with ``compile=False``, loaded into ``hls_model``; on failure
    the project folder is removed (no half-built project), as ``build_firmware`` does."""
    import shutil

    from trigflow.firmware.convert import compile_project, load_library

    project = Path(hls_model.config.get_output_dir())
    try:
        load_library(hls_model, compile_project(hls_model))
    except BaseException:
        shutil.rmtree(project, ignore_errors=True)
        raise


def _build_checked(dep, project_dir: str | Path, force: bool, compile: bool = True):
    """Convert with explicit types; hls4ml's types and weights are checked before the project is written."""
    from trigflow.firmware.convert import convert
    from trigflow.firmware.gnn import check_converted

    spec = dep.spec
    if dep.overrides:
        merged = {name: dict(p) for name, p in spec.layer_precisions.items()}
        for name, p in dep.overrides.items():
            merged.setdefault(name, {}).update(p)
        spec = dataclasses.replace(spec, layer_precisions=merged)
    overrides = {"layer_precisions": spec.layer_precisions}
    return convert(
        dep.model, project_dir, spec, force=force, compile=compile,
        check=lambda hls_model: check_converted(hls_model, dep.model, overrides),
    )
