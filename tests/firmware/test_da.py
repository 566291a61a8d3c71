"""hls4ml's distributed-arithmetic strategy (da4ml): configured per Dense/Conv layer, bit-exact in C-sim, 0 DSP."""

from __future__ import annotations

import numpy as np
import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware.convert import DISTRIBUTED_ARITHMETIC, FirmwareSpec, convert, hls_config
from trigflow.quantize.presets import QuantSpec

SPEC = QuantSpec(bits=6, integer=0)


def _mlp(hidden=(8,), seed: int = 1):
    from trigflow.models.mlp import build_mlp

    model = build_mlp(16, 5, hidden, spec=SPEC, seed=seed)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.laplace(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _spec(**kw) -> FirmwareSpec:
    return FirmwareSpec(strategy=DISTRIBUTED_ARITHMETIC, input_type=SPEC.input_type, **kw)


def test_da_is_set_per_dense_layer_not_on_the_model():
    config = hls_config(_mlp(), _spec())
    assert config["Model"]["Strategy"] == "Latency"
    strategies = {name: layer.get("Strategy") for name, layer in config["LayerName"].items()}
    assert strategies["dense_0"] == strategies["logits"] == DISTRIBUTED_ARITHMETIC
    assert strategies["features"] is None and strategies["relu_0"] is None


def test_da_csim_is_bit_exact_and_uses_no_dsp(tmp_path):
    from trigflow.firmware.csim import predict
    from trigflow.firmware.estimate import estimate
    from trigflow.proof.reference import exact_predict

    model = _mlp()
    hls_model = convert(model, tmp_path / "prj", _spec())
    x = SPEC.quantize_input(np.random.default_rng(0).normal(0, 3, (2000, 16)))
    np.testing.assert_array_equal(predict(hls_model, x), exact_predict(model, x))
    est = estimate(hls_model)
    assert est.resources["dsp"] == 0 and est.resources["lut"] > 0
    dense = [layer for layer in est.layers if layer.name in ("dense_0", "logits")]
    assert dense and all("distributed arithmetic" in layer.note for layer in dense)


def test_da_config_refuses_reuse_and_quartus():
    from trigflow.config import load_config

    with pytest.raises(TrigflowError, match="distributed_arithmetic needs reuse_factor 1"):
        load_config("mlp", None, {"firmware": {"strategy": DISTRIBUTED_ARITHMETIC, "reuse_factor": 2}})


def test_da_conv_estimate_counts_partitions_and_pixels(tmp_path):
    """A per-item QDense (hls4ml's PointwiseConv1D → Conv1D under DA) repeats da4ml's kernel once per pixel of a
    partition and runs its partitions one after the other, as hls4ml's conv_da_parallel template does."""
    from trigflow.firmware.estimate import estimate
    from trigflow.firmware.gnn import convert_graph_network
    from trigflow.models.gnn import build_deepsets

    model = build_deepsets(8, 3, 5, bits=6, phi_hidden=(8,), rho_hidden=(8,), pooling="sum")
    hls_model, _ = convert_graph_network(model, tmp_path / "prj", FirmwareSpec(strategy=DISTRIBUTED_ARITHMETIC),
                                         compile=False)
    layers = {layer.name: layer for layer in estimate(hls_model).layers}
    node = {name: hls_model.graph[name] for name in ("phi_dense_0", "pool_sum")}
    assert node["phi_dense_0"].get_attr("n_partitions") == 8  # one φ kernel, shared by the 8 particles
    assert layers["phi_dense_0"].ii == 8
    assert layers["phi_dense_0"].lut == round(node["phi_dense_0"].get_attr("da_kernel_cost"))
    assert node["pool_sum"].get_attr("n_partitions") == 1  # the sum: fully parallel, one kernel per feature
    assert layers["pool_sum"].ii == 1
    assert layers["pool_sum"].lut == 8 * round(node["pool_sum"].get_attr("da_kernel_cost"))
