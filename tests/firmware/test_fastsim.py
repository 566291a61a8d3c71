import shutil

import numpy as np
import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware import fastsim
from trigflow.firmware.convert import FirmwareSpec, convert
from trigflow.firmware.csim import predict
from trigflow.firmware.fastsim import FastSim, classify, fast_predict, predict_distributed
from trigflow.models.mlp import build_mlp
from trigflow.quantize.presets import QuantSpec

N = 20_000


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A small bit-exact MLP, its compiled project, 20k inputs and the hls4ml and QKeras outputs on them."""
    spec = QuantSpec(bits=6, input_bits=14, input_integer=4)
    model = build_mlp(10, 3, (16, 8), quantized=True, spec=spec)
    rng = np.random.default_rng(0)
    x = spec.quantize_input(rng.normal(scale=3, size=(N, 10)))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:3000], y[:3000], epochs=2, verbose=0)
    project = tmp_path_factory.mktemp("fastsim") / "prj"
    hls_model = convert(model, project, FirmwareSpec(input_type=spec.input_type))
    y_hls = predict(hls_model, x)
    y_q = model.predict(x, batch_size=4096, verbose=0).astype(np.float64)
    np.testing.assert_array_equal(y_hls, y_q)  # the premise: this configuration is bit-exact
    return {"model": model, "project": project, "hls_model": hls_model, "x": x, "y_hls": y_hls, "y_q": y_q}


@pytest.mark.parametrize("threads", [1, 2])
def test_same_bits_as_hls4ml_and_qkeras(mlp, threads):
    sim = FastSim.from_project(mlp["project"])
    assert sim.mode == "threads"
    y = sim.predict(mlp["x"], threads=threads)
    assert y.dtype == np.float64 and y.shape == (N, 3)
    np.testing.assert_array_equal(y, mlp["y_hls"])
    np.testing.assert_array_equal(y, mlp["y_q"])


def test_processes_mode_same_bits(mlp):
    y = FastSim.from_project(mlp["project"]).predict(mlp["x"], threads=2, mode="processes")
    np.testing.assert_array_equal(y, mlp["y_hls"])


def test_fast_predict_on_model_graph_and_odd_sizes(mlp):
    x, y_hls = mlp["x"], mlp["y_hls"]
    for n in (1, 2, 65, 129):  # fewer samples than workers × block, a sample alone
        np.testing.assert_array_equal(fast_predict(mlp["hls_model"], x[:n], threads=2), y_hls[:n])
    assert fast_predict(mlp["hls_model"], x[:0]).shape == (0, 3)


def test_works_from_a_moved_project_without_rebuilding(mlp, tmp_path, monkeypatch):
    """The library holds the weights; a copied project is loaded as is (no g++), from the folder alone."""
    FastSim.from_project(mlp["project"])
    moved = tmp_path / "elsewhere"
    shutil.copytree(mlp["project"], moved)
    monkeypatch.setattr(fastsim, "_compile", lambda *a, **k: pytest.fail("rebuilt an up-to-date library"))
    sim = FastSim.from_project(moved)
    assert sim.library_path.parent == moved.resolve()
    np.testing.assert_array_equal(sim.predict(mlp["x"][:2000], threads=2), mlp["y_hls"][:2000])


def test_bad_inputs_give_clear_errors(mlp, tmp_path):
    sim = FastSim.from_project(mlp["project"])
    with pytest.raises(TrigflowError, match="whole samples"):
        sim.predict(np.zeros((5, 7)))
    with pytest.raises(TrigflowError, match="1 input"):
        sim.predict([mlp["x"], mlp["x"]])
    with pytest.raises(TrigflowError, match="mode"):
        sim.predict(mlp["x"][:10], mode="gpu")
    with pytest.raises(TrigflowError, match="hls4ml project"):
        FastSim.from_project(tmp_path)


def test_threads_refused_where_not_thread_safe(mlp):
    sim = FastSim.from_project(mlp["project"])
    manifest = {**sim.manifest, "mode": "processes", "mode_reason": "io_stream"}
    unsafe = FastSim(sim.project_dir, manifest, sim._lib)
    with pytest.raises(TrigflowError, match="not thread-safe"):
        unsafe.predict(mlp["x"][:100], threads=2, mode="threads")
    np.testing.assert_array_equal(unsafe.predict(mlp["x"][:300], threads=2), mlp["y_hls"][:300])


def _fake_project(tmp_path, header="", parameters="", top=""):
    (tmp_path / "firmware").mkdir(parents=True)
    (tmp_path / "myproject_bridge.cpp").write_text("")
    (tmp_path / "firmware" / "myproject.h").write_text(header)
    (tmp_path / "firmware" / "parameters.h").write_text(parameters)
    (tmp_path / "firmware" / "myproject.cpp").write_text(top)
    return tmp_path


def test_classify_stateful_projects(tmp_path):
    assert classify(_fake_project(tmp_path / "a", "void myproject(x_t x[4], y_t y[2]);"))[0] == "threads"
    assert classify(_fake_project(tmp_path / "b", "void myproject(hls::stream<x_t> &x);"))[0] == "processes"
    recurrent = _fake_project(tmp_path / "c", parameters="static const bool use_static = true;")
    assert classify(recurrent)[0] == "processes"
    assert classify(_fake_project(tmp_path / "d", top="    static int calls = 0;\n"))[0] == "processes"


def test_multi_input_multi_output_model(tmp_path):
    """Two inputs, three outputs; a layer named "sig" (typedef sig_t, also in <signal.h>) and a sigmoid
    lookup table (lazily initialised static, warmed up before the threads start)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    q_in = quantized_bits(12, 3, alpha=1)
    a, b = tf.keras.Input((4,), name="a"), tf.keras.Input((3,), name="b")
    joined = tf.keras.layers.Concatenate(name="cat")(
        [QActivation(q_in, name="qa")(a), QActivation(q_in, name="qb")(b)]
    )
    w = dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))
    out2 = QDense(3, name="o2", **w)(joined)
    prob = tf.keras.layers.Activation("sigmoid", name="prob")(out2)
    model = tf.keras.Model([a, b], [QDense(2, name="sig", **w)(joined), out2, prob])
    rng = np.random.default_rng(2)
    xa = np.asarray(q_in(rng.normal(scale=2, size=(3000, 4)).astype(np.float32)), dtype=np.float64)
    xb = np.asarray(q_in(rng.normal(scale=2, size=(3000, 3)).astype(np.float32)), dtype=np.float64)
    hls_model = convert(model, tmp_path / "multi", FirmwareSpec(input_type="fixed<12,4,RND_CONV,SAT>"))
    sim = FastSim.from_project(tmp_path / "multi")
    assert (sim.mode, sim.input_sizes, sim.output_sizes) == ("threads", [4, 3], [2, 3, 3])
    ys = sim.predict([xa, xb], threads=2)
    for y, h in zip(ys, hls_model.predict([xa, xb])):
        np.testing.assert_array_equal(y, h)
    q1, q2, _ = model.predict([xa, xb], verbose=0)  # the float sigmoid is not bit-exact by design
    np.testing.assert_array_equal(ys[0], q1.astype(np.float64))
    np.testing.assert_array_equal(ys[1], q2.astype(np.float64))
    with pytest.raises(TrigflowError, match="2 input"):
        sim.predict(xa)


def test_predict_distributed(mlp):
    x, y_hls = mlp["x"], mlp["y_hls"]
    local = predict_distributed(mlp["project"], x[:3000])  # Ray not initialised: this machine's cores
    np.testing.assert_array_equal(local, y_hls[:3000])
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        np.testing.assert_array_equal(predict_distributed(mlp["project"], x, chunks=5), y_hls)
    finally:
        ray.shutdown()
