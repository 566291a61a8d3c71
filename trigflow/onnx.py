"""Spine layer: ONNX export of Keras/QKeras models and their check in onnxruntime.

tf2onnx traces the QKeras fake-quantisation arithmetic (round, clip, scale) into plain ONNX ops, so the
exported QKeras model computes the quantized outputs on any ONNX runtime, CPU or GPU, with a dynamic batch.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from trigflow.fsio import atomic_file

OPSET = 13


def export_onnx(model, path: str | Path, *, opset: int = OPSET) -> Path:
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    signature = [
        tf.TensorSpec((None, *inp.shape[1:]), tf.float32, name=name)
        for inp, name in zip(model.inputs, model.input_names)
    ]
    path = Path(path)
    with atomic_file(path) as tmp, contextlib.redirect_stdout(io.StringIO()):
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset, output_path=str(tmp))
    return path


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(x, dtype=np.float32)})[0]
