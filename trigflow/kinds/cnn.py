"""Spine layer: the CNN jet-image tagger recipe — 16×16 jet images (pT fraction per Δη×Δφ pixel) → 5 class logits.

Differs from the MLP in four places:

* ``prepare``: images are not standardised per pixel (most pixels are zero, and a per-pixel shift would make
  the empty image non-zero). Pixels are multiplied by a fixed power of two, ``2**(input_integer - 1)``, so the
  largest possible pixel (1.0, all of the jet's pT) lands at half the input range; a power of two only moves the
  binary point, so the firmware receives the raw pT fraction with ``input_bits - 2`` fractional bits
  (2⁻¹⁴ ≈ 6·10⁻⁵ of the jet pT with the default 16/5 input format). Then the input quantizer puts them on the grid.
* ``train``: the standard twins; with ``model.arch=batchnorm`` the deployed QKeras model is the batch-norm-folded
  twin (``QConv2DBatchnorm`` → ``QConv2D``), checked to give identical outputs.
* ``convert``: refuses, before hls4ml runs, a layout the HLS tools cannot unroll (io_parallel tensors beyond the
  4096-element partition limit; more than 4096 multiplications per clock in one layer).
* ``write_extras``: after the proof, sizes the stream FIFOs from the C-simulation (``trigflow.firmware.fifo``),
  recompiles the project, and requires the C-sim outputs to stay bit-identical to the proven ones on every test
  sample, so the proof in the report holds for the project as it is left. (Here because ``convert`` gets no data.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from trigflow.config import RunConfig
from trigflow.errors import TrigflowError
from trigflow.kinds import Arrays, Prepared, Recipe, Trained, checked_arch

HLS_UNROLL_LIMIT = 4096  # multiplications one pipelined loop iteration may unroll (Vivado HLS XFORM 203-504)
HLS_PARTITION_LIMIT = 4096  # hls4ml build_prj.tcl: config_array_partition -maximum_size 4096 ("MaximumSize")
FIFO_TRACE_SAMPLES = 16  # images traced for the FIFO depths (the access pattern does not depend on the values)


def load(config: RunConfig) -> Arrays:
    from trigflow.data import JET_CLASSES
    from trigflow.data.jets import load_jets

    jets = load_jets(config.data.path, parts=("image",))
    x, y = jets.image[..., np.newaxis], jets.label.astype(np.int64)  # (N, η, φ, 1): channels last
    if config.data.max_samples is not None:
        x, y = x[: config.data.max_samples], y[: config.data.max_samples]
    source = config.data.path or "embedded jets (Pythia8 + FastJet)"
    return Arrays(x, y, ("pt_fraction",), JET_CLASSES, str(source))


def pixel_scale(spec) -> float:
    """Fixed scale of the pixels: a power of two putting a pixel of 1.0 at half the input range."""
    return 2.0 ** (spec.input_integer - 1)


def prepare(arrays: Arrays, config: RunConfig) -> Prepared:
    """Split, scale pixels by a fixed power of two, and put them on the firmware input grid."""
    from trigflow.data.prepare import check_finite, grid_summary, split_for_proof
    from trigflow.quantize.presets import QuantSpec

    check_finite(arrays.x, f"data ({arrays.source})")
    if arrays.x.ndim != 4:
        raise TrigflowError(f"cnn needs images (N, height, width, channels); got an array of shape {arrays.x.shape}")
    parts = split_for_proof(arrays.x, arrays.y, config)
    spec = QuantSpec.from_config(config.quant)
    scale = pixel_scale(spec)

    def to_grid(x: np.ndarray) -> np.ndarray:
        return spec.quantize_input(x * np.float32(scale))

    on_grid = parts.map_x(to_grid)
    lost = float(np.mean(on_grid.x_train[parts.x_train > 0] == 0)) if np.any(parts.x_train > 0) else 0.0
    preprocessing = {
        "features": list(arrays.feature_names),
        "classes": list(arrays.class_names),
        "image_shape": list(arrays.x.shape[1:]),
        "pixel_scale": scale,
        "scaling": "x = pixel pT fraction × pixel_scale (a power of two: a binary-point shift), then input_quantizer",
        "nonzero_pixels_below_lsb": lost,  # training pixels > 0 that the input grid rounds to 0
        "input_quantizer": grid_summary(spec),
    }
    return Prepared.of(on_grid, preprocessing, arrays.class_names)


ARCHS = ("default", "batchnorm")  # model.arch: plain convolutions, or batch norm folded into each convolution


def _arch(config: RunConfig) -> str:
    return checked_arch(config, "cnn", ARCHS)


def build(prepared: Prepared, config: RunConfig, quantized: bool):
    from trigflow.models.cnn import build_cnn
    from trigflow.quantize.presets import QuantSpec

    return build_cnn(
        tuple(prepared.x_train.shape[1:]),
        len(prepared.class_names),
        config.model.filters,
        config.model.hidden,
        quantized=quantized,
        spec=QuantSpec.from_config(config.quant),
        seed=config.seed,
        batchnorm=_arch(config) == "batchnorm",
    )


def train(recipe: Recipe, prepared: Prepared, config: RunConfig, ui) -> Trained:
    """The standard twin training; with ``model.arch=batchnorm`` the firmware gets the folded QKeras model, which
    must give exactly the trained model's outputs (checked on the validation images)."""
    from trigflow.models.cnn import fold_batchnorm
    from trigflow.quantize.train import train_twins

    trained = train_twins(recipe, prepared, config, ui)
    if _arch(config) == "batchnorm":
        folded = fold_batchnorm(trained.qmodel)
        x = prepared.x_val
        if not np.array_equal(folded.predict(x, verbose=0), trained.qmodel.predict(x, verbose=0)):
            raise TrigflowError("folding QConv2DBatchnorm changed the QKeras outputs; use model.arch=default")
        trained.deploy_qmodel = folded
    return trained


def check_buildable(model, spec) -> None:
    """One-line errors, before hls4ml runs, for layouts HLS cannot unroll; each names the cause and the fix."""
    from trigflow.models.cnn import largest_tensor, unrolled_multiplications

    if spec.io_type == "io_parallel":
        name, shape, size = largest_tensor(model)
        if size > HLS_PARTITION_LIMIT:
            dims = "×".join(map(str, shape))
            raise TrigflowError(
                f"io_parallel cannot build this CNN: layer '{name}' outputs {dims} = {size} values, which io_parallel "
                f"keeps in registers (complete array partition, limit {HLS_PARTITION_LIMIT}); "
                "use --set firmware.io_type=io_stream (the cnn default: one pixel at a time through FIFOs)"
            )
    # The Latency strategy unrolls every multiplication whatever the reuse factor; Resource unrolls 1/reuse of them.
    reuse = spec.reuse_factor if spec.strategy == "Resource" else 1
    for name, mults in unrolled_multiplications(model, reuse).items():
        if mults > HLS_UNROLL_LIMIT:
            need = -(-mults * reuse // HLS_UNROLL_LIMIT)
            raise TrigflowError(
                f"layer '{name}' would unroll {mults} multiplications per clock (HLS unroll limit {HLS_UNROLL_LIMIT}); "
                f"use --reuse {need} or more with --set firmware.strategy=Resource, or a smaller layer"
            )


def convert(model, project_dir, spec, *, force: bool = False):
    from trigflow.firmware.convert import convert as hls4ml_convert

    check_buildable(model, spec)
    return hls4ml_convert(model, project_dir, spec, force=force)


def write_extras(report: dict, outputs: dict, prepared: Prepared, config: RunConfig, out: Path) -> None:
    """ROC plots; for io_stream, FIFO depths measured in C-sim, written into the project and re-proven."""
    from trigflow import report as reporting

    reporting.write_plots({**outputs, "labels": prepared.y_test}, prepared.class_names, out)
    if config.firmware.io_type == "io_stream":
        report["fifo_depths"] = size_fifos(config.project_path.resolve(), prepared.x_test, outputs["firmware"])


def size_fifos(project: Path, x: np.ndarray, proven: np.ndarray) -> dict:
    """Measure and rewrite the FIFO depths of the compiled project at ``project``; the rebuilt C-sim must give
    exactly the ``proven`` outputs on all of ``x``, so the proof in the report holds for the project as left."""
    import ctypes

    import hls4ml

    from trigflow.firmware import fifo

    start = time.perf_counter()
    hls_model = hls4ml.converters.link_existing_project(str(project))
    hls_model._top_function_lib = ctypes.CDLL(str(fifo.library_path(project, hls_model.config.get_project_name())))
    fifo.optimize_fifo_depths(hls_model, x, samples=FIFO_TRACE_SAMPLES, reference=proven)
    summary = json.loads((project / "fifo_depths.json").read_text())
    summary["reverified_samples"] = int(len(x))
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


RECIPE = Recipe(
    kind="cnn", load=load, build=build, prepare=prepare, train=train, convert=convert, write_extras=write_extras
)
