"""A small QKeras CNN through hls4ml io_stream: bit-exact C-sim, FIFO depths sized from the C-sim, refusals."""

import json
import shutil

import numpy as np
import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware.convert import FirmwareSpec
from trigflow.firmware.csim import predict
from trigflow.kinds.cnn import check_buildable, convert
from trigflow.models.cnn import build_cnn
from trigflow.quantize.presets import QuantSpec

SPEC = QuantSpec(bits=6, input_bits=16, input_integer=5)


def images(n: int, size: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """pT-fraction-like images (sum 1) with a class-dependent hot spot, scaled and on the input grid."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.exponential(0.02, (n, size, size)) * (rng.random((n, size, size)) < 0.3)
    x[np.arange(n), 2 + 3 * y, size // 2] += rng.uniform(0.2, 0.9, n)
    x /= x.sum(axis=(1, 2), keepdims=True)
    return SPEC.quantize_input(16 * x[..., None]), y


@pytest.fixture(scope="module")
def stream_cnn(tmp_path_factory):
    import tensorflow as tf

    x, y = images(600)
    model = build_cnn((10, 10, 1), 3, (2, 4), (8,), quantized=True, spec=SPEC)
    model.compile(tf.keras.optimizers.Adam(1e-2), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    project = tmp_path_factory.mktemp("cnn") / "prj"
    hls_model = convert(model, project, FirmwareSpec(io_type="io_stream", input_type=SPEC.input_type))
    return model, hls_model, project, x


def test_stream_csim_is_bit_exact_with_qkeras(stream_cnn):
    model, hls_model, project, x = stream_cnn
    np.testing.assert_array_equal(predict(hls_model, x), model.predict(x, verbose=0).astype(np.float64))
    assert "#pragma HLS STREAM variable=" in (project / "firmware" / "myproject.cpp").read_text()


def test_fifo_optimisation_lowers_depths_and_keeps_bits(stream_cnn, tmp_path):
    import ctypes

    import hls4ml

    from trigflow.firmware import fifo

    model, _, project, x = stream_cnn
    copy = tmp_path / "prj"
    shutil.copytree(project, copy)
    hls_model = hls4ml.converters.link_existing_project(str(copy))
    hls_model.config.config["OutputDir"] = str(copy)
    hls_model._top_function_lib = ctypes.CDLL(str(fifo.library_path(copy, "myproject")))
    old_library = fifo.library_path(copy, "myproject")

    depths = fifo.optimize_fifo_depths(hls_model, x[:200], samples=3)

    assert depths and all(new <= old for old, new in depths.values())
    assert sum(new for _, new in depths.values()) < sum(old for old, _ in depths.values())
    cpp = (copy / "firmware" / "myproject.cpp").read_text()
    for stream, (_, new) in depths.items():
        assert f"#pragma HLS STREAM variable={stream} depth={new}\n" in cpp
    np.testing.assert_array_equal(predict(hls_model, x), model.predict(x, verbose=0).astype(np.float64))
    assert fifo.library_path(copy, "myproject") != old_library and not old_library.exists()  # rebuilt library
    summary = json.loads((copy / "fifo_depths.json").read_text())
    assert summary["trace_data_independent"] is True
    assert summary["replay_cycles"]["new_depths"] == summary["replay_cycles"]["unbounded"]  # no stall
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]  # no staging folder left


def test_io_parallel_is_refused_where_hls_cannot_partition(tmp_path):
    model = build_cnn((16, 16, 1), 5, (32,), (8,), quantized=True, spec=SPEC)  # conv_0 outputs 14×14×32
    with pytest.raises(TrigflowError, match=r"io_parallel cannot build .*'conv_0'.*6272.*io_type=io_stream"):
        convert(model, tmp_path / "p", FirmwareSpec(io_type="io_parallel", input_type=SPEC.input_type))
    assert not (tmp_path / "p").exists()


def test_layer_beyond_the_unroll_limit_is_refused(tmp_path):
    model = build_cnn((16, 16, 1), 5, (16,), (32,), quantized=True, spec=SPEC)  # dense_0: 7·7·16 × 32 = 25088
    with pytest.raises(TrigflowError, match=r"'dense_0' would unroll 25088 multiplications.*--reuse 7"):
        convert(model, tmp_path / "p", FirmwareSpec(io_type="io_stream", input_type=SPEC.input_type))
    with pytest.raises(TrigflowError, match="dense_0"):  # Latency unrolls everything whatever the reuse factor
        convert(model, tmp_path / "p", FirmwareSpec(io_type="io_stream", reuse_factor=8, input_type=SPEC.input_type))
    resource = FirmwareSpec(io_type="io_stream", strategy="Resource", reuse_factor=8, input_type=SPEC.input_type)
    check_buildable(model, resource)  # 25088 / 8 = 3136 per clock: accepted
