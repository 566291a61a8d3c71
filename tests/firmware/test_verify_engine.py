"""The verification engine on a zoo of tiny user models: loading, a chosen configuration, bit-exact C-sim.

Each quantized model is built with random weights (no training: the proof does not care how weights were
found), goes through ``choose_configuration`` + ``build_firmware`` (one g++ compile each) and must give the
QKeras logits bit for bit on every sample. The float model must verify with a small, reported difference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import float_mlp, randomize
from trigflow.firmware.autoconfig import (
    build_firmware,
    choose_configuration,
    data_format,
    leading_input_format,
    quantize_inputs,
    sample_inputs,
)
from trigflow.firmware.csim import predict
from trigflow.firmware.loaders import load_model
from trigflow.proof.compare import compare_bits, softmax
from trigflow.quantize.fixed import FixedType

from trigflow.errors import TrigflowError


def _layers():
    import tensorflow as tf

    return tf.keras.layers


def q6():
    from qkeras import quantized_bits

    return quantized_bits(6, 0, alpha=1)


# --- the zoo ------------------------------------------------------------------------------------------------
def seq_softmax():
    """Sequential, input quantizer, quantized_relu, softmax head as a separate layer."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    L = _layers()
    return tf.keras.Sequential(
        [
            L.InputLayer(input_shape=(8,)),
            QActivation(quantized_bits(12, 3, alpha=1), name="inq"),
            QDense(12, kernel_quantizer=q6(), bias_quantizer=q6(), name="dense_0"),
            QActivation(quantized_relu(6, 2), name="relu_0"),
            QDense(4, kernel_quantizer=q6(), bias_quantizer=q6(), name="dense_1"),
            L.Activation("softmax", name="softmax"),
        ]
    )


def seq_example_style():
    """Like the public hls4ml QKeras examples: Sequential, no input quantizer, inline activations."""
    import tensorflow as tf
    from qkeras import QDense, quantized_relu

    L = _layers()
    return tf.keras.Sequential(
        [
            QDense(
                10,
                input_shape=(6,),
                kernel_quantizer=q6(),
                bias_quantizer=q6(),
                activation=quantized_relu(6, 2),
                name="fc1",
            ),
            QDense(
                5, kernel_quantizer=q6(), bias_quantizer=q6(), activation=quantized_relu(6, 2), name="fc2"
            ),
            QDense(3, kernel_quantizer=q6(), bias_quantizer=q6(), name="output"),
            L.Activation("softmax", name="softmax"),
        ]
    )


def fn_batchnorm():
    """Functional, BatchNormalization between a QDense and its activation quantizer, no head."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    L = _layers()
    x = L.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 3, alpha=1), name="inq")(x)
    h = QDense(10, kernel_quantizer=q6(), bias_quantizer=q6(), name="dense_0")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = QActivation(quantized_relu(6, 2), name="relu_0")(h)
    y = QDense(3, kernel_quantizer=q6(), bias_quantizer=q6(), name="dense_1")(h)
    return tf.keras.Model(x, y)


def fn_quantizers():
    """po2, binary and ternary kernels, alpha='auto_po2', binary activation, inline sigmoid head."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, binary, quantized_bits, quantized_po2, quantized_relu, ternary

    L = _layers()
    x = L.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 3, alpha=1), name="inq")(x)
    h = QDense(10, kernel_quantizer=quantized_po2(4, 1), bias_quantizer=quantized_po2(4, 1), name="po2")(h)
    h = QActivation(quantized_relu(6, 2), name="relu_0")(h)
    h = QDense(8, kernel_quantizer=binary(alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1), name="bin")(
        h
    )
    h = QActivation(quantized_relu(6, 3), name="relu_1")(h)
    h = QDense(
        6, kernel_quantizer=ternary(alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1), name="ter"
    )(h)
    h = QActivation("binary", name="sign")(h)
    y = QDense(
        3,
        kernel_quantizer=quantized_bits(6, 0, alpha="auto_po2"),
        bias_quantizer=q6(),
        activation="sigmoid",
        name="out",
    )(h)
    return tf.keras.Model(x, y)


def fn_cnn():
    """Conv2D + pooling, a Dense applied to an (N, F) tensor, Flatten, softmax head."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    L = _layers()
    x = L.Input((6, 6, 1), name="img")
    h = QActivation(quantized_bits(8, 1, alpha=1), name="inq")(x)
    h = QConv2D(3, (3, 3), kernel_quantizer=q6(), bias_quantizer=q6(), name="conv")(h)
    h = QActivation(quantized_relu(6, 2), name="relu_c")(h)
    h = L.MaxPooling2D((2, 2), name="pool")(h)
    h = L.Reshape((4, 3), name="tokens")(h)
    h = QDense(4, kernel_quantizer=q6(), bias_quantizer=q6(), name="per_token")(h)
    h = QActivation(quantized_relu(6, 2), name="relu_t")(h)
    h = L.Flatten(name="flat")(h)
    y = QDense(3, kernel_quantizer=q6(), bias_quantizer=q6(), activation="softmax", name="out")(h)
    return tf.keras.Model(x, y)


ZOO = {
    "seq_softmax": seq_softmax,
    "seq_example_style": seq_example_style,
    "fn_batchnorm": fn_batchnorm,
    "fn_quantizers": fn_quantizers,
    "fn_cnn": fn_cnn,
}
N = 600


def inputs_for(model, seed: int = 1) -> np.ndarray:
    own = leading_input_format(model)
    if own is not None:  # continuous values: the firmware input type must round exactly like the quantizer
        return sample_inputs(own.type, model.input_shape[1:], N, seed, on_grid=False)
    # no input quantizer: data on a 12-bit grid (as a trigger's upstream firmware would deliver them)
    grid = FixedType.parse("fixed<12,4,RND_CONV,SAT>")  # quantized_bits(12, 3)
    return sample_inputs(grid, model.input_shape[1:], N, seed, on_grid=True)


@pytest.fixture(scope="module")
def saved_example(tmp_path_factory):
    """The example-style model saved as architecture .json + weights .h5 (the public examples' layout)."""
    root = tmp_path_factory.mktemp("example")
    model = randomize(seq_example_style())
    (root / "model.json").write_text(model.to_json())
    model.save_weights(root / "weights.h5")
    return root, model


@pytest.fixture(scope="module", params=list(ZOO))
def verified(request, tmp_path_factory, saved_example):
    name = request.param
    if name == "seq_example_style":
        root, _ = saved_example
        model = load_model(root / "model.json", root / "weights.h5")
    else:
        model = randomize(ZOO[name]())
    x = inputs_for(model)
    dep = choose_configuration(model, x)
    hls_model = build_firmware(dep, tmp_path_factory.mktemp(name) / "prj")
    return name, model, dep, predict(hls_model, dep.x)


def test_zoo_is_bit_exact(verified):
    name, _, dep, y_fw = verified
    y_ref = dep.reference.predict(dep.x, verbose=0).reshape(len(dep.x), -1).astype(np.float64)
    np.testing.assert_array_equal(y_fw, y_ref, err_msg=f"{name}: notes {dep.notes}")
    assert dep.quantized and dep.spec.bit_exact
    assert dep.rewrite_max_abs_diff == 0.0


def test_reference_is_the_users_model(verified):
    """The logits compared are the user's model without its head: the head applied gives the model."""
    name, model, dep, _ = verified
    y_model = model.predict(dep.x, verbose=0).astype(np.float64)
    logits = dep.reference.predict(dep.x, verbose=0).astype(np.float64)
    expected_head = {
        "seq_softmax": "softmax",
        "seq_example_style": "softmax",
        "fn_quantizers": "sigmoid",
        "fn_cnn": "softmax",
        "fn_batchnorm": None,
    }[name]
    assert dep.head == expected_head
    if dep.head == "softmax":
        np.testing.assert_allclose(softmax(logits), y_model, atol=1e-6)
    elif dep.head == "sigmoid":
        np.testing.assert_allclose(1 / (1 + np.exp(-logits)), y_model, atol=1e-6)
    else:
        np.testing.assert_array_equal(logits, y_model)


def test_input_format_chosen(verified):
    name, _, dep, _ = verified
    if name == "seq_example_style":  # no quantizer: the data grid, inserted in front of the firmware model
        assert dep.input_format.source == "data" and str(dep.input_format.type).startswith("fixed<12,4,")
        assert any("inserted" in note for note in dep.notes)
    else:
        assert dep.input_format.source == "quantizer 'inq'"
    assert dep.spec.input_type == str(dep.input_format.type)


def test_float_model_verifies_with_reported_difference(tmp_path):
    model = float_mlp(8, 10, 3, seed=3)
    x = np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32)
    dep = choose_configuration(model, x)
    assert not dep.quantized and not dep.spec.bit_exact and dep.head == "softmax"
    assert dep.spec.layer_precisions["d0"]["result"].startswith(
        "fixed<18,"
    )  # from profiling, not the default
    y_fw = predict(build_firmware(dep, tmp_path / "prj"), dep.x)
    y_float = dep.reference.predict(dep.x, verbose=0).astype(np.float64)
    bits = compare_bits(y_float, y_fw)
    assert bits.bit_exact_fraction < 1.0  # a float model is not bit-exact ...
    assert 0 < bits.max_abs_diff < 0.01 * max(1.0, np.abs(y_float).max())  # ... but close
    assert np.mean(np.argmax(y_fw, 1) == np.argmax(y_float, 1)) > 0.97


# --- inputs -------------------------------------------------------------------------------------------------
def test_data_format_finds_the_exact_grid():
    grid = FixedType.parse("fixed<10,3,RND_CONV,SAT>")  # quantized_bits(10, 2)
    x = quantize_inputs(grid, np.random.default_rng(0).uniform(-4, 4, (500, 3)))
    fmt = data_format(x)
    assert fmt is not None and fmt.type.lsb == 2.0**-7 and fmt.type.signed
    np.testing.assert_array_equal(quantize_inputs(fmt.type, x), x)
    assert data_format(np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)) is None


def test_off_grid_data_get_a_grid_covering_their_range():
    """Float data far outside the old default fixed<16,6> (raw GeV): the chosen grid covers their range, so
    nothing saturates, and it is fine enough that the model's logits are the same as on the raw data."""
    import tensorflow as tf
    from qkeras import QDense

    model = randomize(tf.keras.Sequential([QDense(2, input_shape=(3,), kernel_quantizer=q6(), name="d")]))
    x = (np.random.default_rng(0).normal(size=(50, 3)) * [400, 1, 1]).astype(np.float32)
    dep = choose_configuration(model, x)
    t = dep.input_format.type
    assert dep.input_format.source == "data range" and t.lo <= x.min() and x.max() <= t.hi
    assert t.integer >= 11  # |x| up to ~1,000
    np.testing.assert_array_equal(dep.x, quantize_inputs(t, x))
    np.testing.assert_array_equal(dep.reference.predict(dep.x, verbose=0), model.predict(x, verbose=0))
    assert any("covers their range" in note for note in dep.notes)


def test_drawn_inputs_span_the_quantizer_range():
    fmt = FixedType.parse("fixed<8,3,RND_CONV,SAT>")
    x = sample_inputs(fmt, (4,), 2000, on_grid=False)
    q = quantize_inputs(fmt, x)
    assert q.min() == fmt.lo and q.max() == fmt.hi
    assert len(np.unique(q)) > 200


# --- loading ------------------------------------------------------------------------------------------------
def test_json_and_weights_load_like_the_model(saved_example):
    root, model = saved_example
    loaded = load_model(root / "model.json", root / "weights.h5")
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keras_format_qkeras_model_loads(tmp_path):
    model = randomize(fn_quantizers())
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).uniform(-8, 8, size=(20, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "not found"),
        ("corrupt", "not a readable HDF5 file"),
        ("weights_only", "holds weights only"),
        ("json_no_weights", "--weights"),
        ("bad_json", "not valid JSON"),
        ("suffix", "unsupported type"),
        ("lambda", "layer 'twice' \\(Lambda\\) is not supported"),
        ("wrong_weights", "does not fit"),
    ],
)
def test_load_errors_are_one_line(case, match, tmp_path, saved_example):
    import tensorflow as tf

    root, model = saved_example
    weights = None
    if case == "missing":
        path = tmp_path / "nothere.h5"
    elif case == "corrupt":
        path = tmp_path / "m.h5"
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    elif case == "weights_only":
        path = root / "weights.h5"
    elif case == "json_no_weights":
        path = root / "model.json"
    elif case == "bad_json":
        path = tmp_path / "m.json"
        path.write_text("{not json")
    elif case == "suffix":
        path = tmp_path / "m.pb"
        path.write_text("x")
    elif case == "lambda":
        x = tf.keras.Input((3,))
        y = tf.keras.layers.Lambda(lambda t: 2 * t, name="twice")(x)
        path = tmp_path / "lambda.json"
        path.write_text(json.dumps(json.loads(tf.keras.Model(x, y).to_json())))
        weights = tmp_path / "w.h5"
        tf.keras.Model(x, y).save_weights(weights)
    else:  # wrong_weights
        path = root / "model.json"
        other = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(4,))])
        weights = tmp_path / "other.h5"
        other.save_weights(weights)
    with pytest.raises(TrigflowError, match=match) as err:
        load_model(path, weights)
    assert "\n" not in str(err.value)


def test_garnet_second_input_rule_and_mirror_refusals(tmp_path):
    """The vertex count: the data file's ``n_vertices`` (checked: one whole count 0..N per sample), else the
    count of particles with any non-zero feature (CountValid). A GarNet the mirror does not cover is refused
    in one line."""
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet
    from qkeras import QActivation, quantized_bits

    from trigflow.errors import TrigflowError
    from trigflow.firmware.passes.garnet_mirror import GarNetMirror
    from trigflow.verify_garnet import _second_input

    x = np.zeros((3, 4, 3), np.float32)
    x[0, :2, 0], x[1, :4, 1], x[2, 0, 2] = 1.0, -2.0, 0.5
    counts, source = _second_input(None, x, None)
    assert counts.ravel().tolist() == [2, 4, 1] and "CountValid" in source
    np.savez(tmp_path / "d.npz", x=x, n_vertices=np.array([4, 4, 3]))
    counts, source = _second_input(tmp_path / "d.npz", x, None)
    assert counts.ravel().tolist() == [4, 4, 3] and source == "data file array 'n_vertices'"
    np.savez(tmp_path / "bad.npz", x=x, n_vertices=np.array([4, 5, 3]))
    with pytest.raises(TrigflowError, match="whole vertex counts 0..4"):
        _second_input(tmp_path / "bad.npz", x, None)
    counts, source = _second_input(tmp_path / "bad.npz", x, None, cap=True)  # particles truncated to 4
    assert counts.ravel().tolist() == [4, 4, 3] and source.endswith("(capped at 4, --reshape)")

    def model(quantized: bool, **kwargs):
        inp, count = tf.keras.Input((4, 3)), tf.keras.Input((1,), dtype="uint16")
        h = QActivation(quantized_bits(12, 6, alpha=1))(inp) if quantized else inp
        options = {"simplified": True, "collapse": "mean", "input_format": "xn", "output_activation": None,
                   "quantize_transforms": False, "name": "garnet", **kwargs}
        return tf.keras.Model([inp, count], GarNet(2, 4, 4, **options)([h, count]))

    with pytest.raises(TrigflowError, match="collapse='max'; hls4ml's GarNet firmware"):
        GarNetMirror().apply(model(True, collapse="max"))
    with pytest.raises(TrigflowError, match=r"QActivation\(quantized_bits\(bits, integer, alpha=1\)\) right"):
        GarNetMirror().apply(model(False))
    mirror, changed = GarNetMirror().apply(model(True))
    assert changed and type(mirror.get_layer("garnet")).__name__ == "GarNetHLS"


def test_garnet_without_data_draws_samples_and_counts(tmp_path):
    """No data file: samples over the input quantizer's range with a uniform vertex count 1..N (rows beyond it
    zero); the firmware equals the mirror, and the user's float model is measured against it (4 vertices,
    1,000 samples; ~20 s, mostly g++)."""
    import tensorflow as tf
    from hls4ml.contrib.garnet import GarNet
    from qkeras import QActivation, QDense, quantized_bits

    import trigflow

    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((4, 3), name="particles")
    count = tf.keras.Input((1,), dtype="uint16", name="n_vertices")
    h = QActivation(quantized_bits(10, 3, alpha=1), name="inq")(inp)
    h = GarNet(2, 4, 4, simplified=True, collapse="mean", input_format="xn", output_activation=None,
               quantize_transforms=False, name="garnet")([h, count])
    q = quantized_bits(6, 0, alpha=1)
    out = QDense(3, kernel_quantizer=q, bias_quantizer=q, name="head")(h)
    tf.keras.Model([inp, count], out).save(tmp_path / "g.h5")
    result = trigflow.verify(tmp_path / "g.h5", n=1000, out=tmp_path / "out", project_dir=tmp_path / "prj")
    report = result.report
    assert result.failures == [] and report["bit_exact_fraction"] == 1.0 and report["samples"] == 1000
    garnet = report["garnet"]
    assert garnet["second_input"]["source"] == "drawn uniformly 1..N per sample, rows beyond it zero"
    versus = garnet["firmware_vs_model"]
    assert versus["bit_exact_fraction"] == (1000 - versus["differing_samples"]) / 1000
    assert report["data"]["labels"] is False and "accuracy" not in garnet
    assert set(report["timings_s"]) >= {"hls4ml convert", "g++ compile", "C-simulation"}
