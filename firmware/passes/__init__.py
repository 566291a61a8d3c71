"""Firmware layer: graph rewrites as named passes, one transformation per module (qonnx style).

A pass is an object with ``apply(model) -> (model, changed)``: it returns a rewritten copy (or the model
itself when there was nothing to do) and whether anything changed; a second ``apply`` reports no change.
Keras passes take a Keras model, ONNX passes an ``onnx.ModelProto``. ``apply_passes`` runs a list in order.

* ``dense_to_pointwise_conv.DenseToPointwiseConv`` — rank-3 QDense → QConv1D(kernel_size=1), quantizers kept.
* ``concat_last_axis.ConcatenateLastAxis`` — item-axis Concatenate → Permute, Concatenate(axis=-1), Permute
  (hls4ml's bit-exact flow gets the value ranges of a non-last-axis Concatenate wrong).
* ``garnet_weights.GarNetWeights`` — GarNetHLS (the Keras mirror) → hls4ml's GarNet with weights on its grids.
* ``recurrent_mirror.RecurrentMirror`` — a user's QGRU/QLSTM → its mirror QGRUHLS/QLSTMHLS (one-line refusals).
* ``recurrent_plain.RecurrentPlain`` — QGRUHLS/QLSTMHLS (the Keras mirrors) → plain QGRU/QLSTM, weights on grid.
* ``simplernn_unroll.SimpleRNNUnroll`` — QSimpleRNNHLS → per step Cropping1D, Reshape, QDense, QDense, Add,
  tanh (hls4ml 1.3 has no Vivado/Vitis SimpleRNN template).
* ``exact_types`` — the analysis behind the GNN conversion and verify's ``explicit_types`` fallback
  (``firmware.fallback``): an exact fixed-point type for every layer.
* ``onnx_explicit_pads``, ``onnx_gemm_to_matmul``, ``onnx_builtin_clean``, ``onnx_qonnx_clean`` — cleaning for
  hls4ml's ONNX frontend; ``onnx_lower_quant``, ``onnx_as_double`` — the onnxruntime reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["Pass", "apply_passes"]


class Pass(Protocol):
    def apply(self, model: Any) -> tuple[Any, bool]: ...


def apply_passes(model: Any, passes: Iterable[Pass]) -> tuple[Any, bool]:
    """Apply ``passes`` in order; ``changed`` is True when any of them changed the model."""
    changed = False
    for p in passes:
        model, step = p.apply(model)
        changed = changed or step
    return model, changed
