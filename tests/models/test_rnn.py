"""models/rnn.py: the QGRU/QLSTM builders, hls4ml's lookup tables, and the mirror layers
(``QGRUHLS``/``QLSTMHLS``)
against QKeras (training path) and against hls4ml's C simulation (slow: one compile each)."""

from __future__ import annotations

import numpy as np
import pytest

from trigflow.models.rnn import RecurrentTypes, build_rnn, sigmoid_table, tanh_table
from trigflow.quantize.fixed import FixedType

T, F = 6, 3


def _model(arch: str, types: RecurrentTypes | None = None, noise: float = 0.3):
    model = build_rnn(T, F, 5, arch=arch, units=8, head_hidden=(8,), quantized=True, types=types, seed=1)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, noise, w.shape) for w in model.get_weights()])
    return model


def _inputs(n: int = 300, seed: int = 1) -> np.ndarray:
    x = np.round(np.random.default_rng(seed).normal(0, 1.5, (n, T, F)) * 128) / 128  # the input grid (1/128)
    x[:, 4:] = 0  # padded tail, as short jets have
    return x.astype(np.float32)


def test_tables_are_hls4ml_formulas_on_table_t():
    table = FixedType.parse("fixed<18,8>")
    sig, tanh = sigmoid_table(1024, table), tanh_table(1024, table)
    assert sig.shape == tanh.shape == (1024,) and table.holds(sig) and table.holds(tanh)
    x_sig = 16.0 * (np.arange(1024) - 512) / 1024
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x_sig)), atol=table.lsb)
    assert np.all(sig <= 1 / (1 + np.exp(-x_sig)) + 1e-7)  # truncation (TRN), never rounded up
    np.testing.assert_allclose(tanh, np.tanh(8.0 * (np.arange(1024) - 512) / 1024), atol=table.lsb)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_twins_share_shapes_and_the_mirror_tracks_qkeras(arch):
    from trigflow.firmware.passes.recurrent_plain import RecurrentPlain
    from trigflow.models.rnn import recurrent_layer

    qmodel, fmodel = _model(arch), build_rnn(T, F, 5, arch=arch, units=8, head_hidden=(8,), quantized=False)
    assert [w.shape for w in qmodel.get_weights()] == [w.shape for w in fmodel.get_weights()]
    assert type(recurrent_layer(qmodel)).__name__ == f"Q{arch.upper()}HLS"
    x = _inputs()
    rewrite = RecurrentPlain()
    plain, changed = rewrite.apply(qmodel)
    assert changed and type(plain.get_layer(arch)).__name__ == f"Q{arch.upper()}"
    assert rewrite.apply(plain) == (plain, False)  # nothing left to rewrite
    assert rewrite.precisions[arch] == {"accum": recurrent_layer(qmodel).hls_types.accum,
                                        "table": "fixed<18,8>", "result": "fixed<16,6,RND,SAT>"}
    assert ("input_quant" in rewrite.precisions) == (arch == "lstm")
    # the training path is QKeras' own layer (float sigmoid/tanh) ...
    np.testing.assert_allclose(qmodel(x, training=True).numpy(), plain(x).numpy(), atol=1e-5)
    # ... the inference path the firmware's: close to it, different in the low bits (tables, accum_t)
    mirror = qmodel.predict(x, verbose=0)
    assert not np.array_equal(mirror, plain(x).numpy())
    assert np.max(np.abs(mirror - plain(x).numpy())) < 0.5


def test_mirror_is_float32_exact_and_reloads(tmp_path):
    import tensorflow as tf

    from trigflow.models.rnn import custom_objects
    from trigflow.proof.reference import exact_predict

    model = _model("gru", RecurrentTypes(table="fixed<14,4>"))
    x = _inputs()
    np.testing.assert_array_equal(model.predict(x, verbose=0).astype(np.float64), exact_predict(model, x))
    model.save(tmp_path / "m.h5")
    again = tf.keras.models.load_model(tmp_path / "m.h5", custom_objects=custom_objects(), compile=False)
    assert again.get_layer("gru").hls_types.table == "fixed<14,4>"
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_unknown_arch_is_refused():
    from trigflow.errors import TrigflowError

    with pytest.raises(TrigflowError, match="unknown model.arch 'rnn'"):
        build_rnn(T, F, 5, arch="rnn")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_csim_equals_the_mirror_on_random_weights(tmp_path, arch):
    """Untrained, widely spread weights (saturating gates, all table regions): the C-sim equals the mirror."""
    from trigflow.firmware.convert import FirmwareSpec
    from trigflow.kinds.rnn import convert, types_for
    from trigflow.proof.reference import exact_predict

    model = _model(arch, types_for(arch), noise=0.6)
    x = _inputs(2000, seed=2)
    spec = FirmwareSpec(input_type="fixed<16,6,RND_CONV,SAT>")
    hls_model = convert(model, tmp_path / "prj", spec)
    firmware = hls_model.predict(np.ascontiguousarray(x, dtype=np.float64)).reshape(len(x), -1)
    np.testing.assert_array_equal(firmware, exact_predict(model, x))


def _user_gru(**options):
    import tensorflow as tf
    from qkeras import QActivation, QDense, QGRU, quantized_bits

    from trigflow.models.rnn import qkeras_recurrent_fix

    qkeras_recurrent_fix()
    names = ("kernel_quantizer", "recurrent_quantizer", "bias_quantizer")
    q = {k: quantized_bits(6, 0, alpha=1) for k in names}
    gru = {"activation": "tanh", "recurrent_activation": "sigmoid", "reset_after": True, **q, **options}
    x_in = tf.keras.Input((T, F))
    x = QActivation(quantized_bits(12, 4, alpha=1), name="input_quant")(x_in)
    x = QGRU(8, name="user_gru", **gru)(x)
    return tf.keras.Model(x_in, QDense(5, kernel_quantizer=quantized_bits(6, 0, alpha=1), name="out")(x))


def test_a_users_qgru_becomes_its_mirror():
    from trigflow.firmware.passes.recurrent_mirror import RecurrentMirror

    user = _user_gru()
    mirror, changed = RecurrentMirror().apply(user)
    assert changed and type(mirror.get_layer("user_gru")).__name__ == "QGRUHLS"
    assert RecurrentMirror().apply(mirror)[1] is False  # a mirror is left as it is
    x = _inputs()
    np.testing.assert_allclose(mirror(x, training=True).numpy(), user(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"return_sequences": True}, "return_sequences=True"),
        ({"reset_after": False}, "reset_after=False"),
        ({"activation": "relu"}, "activation='relu'"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation='hard_sigmoid'"),
        ({"kernel_quantizer": None}, "no kernel_quantizer"),
    ],
)
def test_unmirrorable_recurrent_options_are_refused_in_one_line(options, match):
    from trigflow.errors import TrigflowError
    from trigflow.firmware.passes.recurrent_mirror import RecurrentMirror

    with pytest.raises(TrigflowError, match=match) as info:
        RecurrentMirror().apply(_user_gru(**options))
    assert "\n" not in str(info.value) and "user_gru" in str(info.value)


def test_unrolled_simplernn_firmware_equals_the_mirror(tmp_path):
    """hls4ml 1.3 has no Vivado/Vitis SimpleRNN template: the mirror QSimpleRNNHLS is unrolled (per step
    Cropping1D, Reshape, QDense, QDense, Add, tanh table) and the C-sim equals the mirror bit for bit. Tiny (4
    steps, 4 units) so it runs by default: ≈ 20 s here, most of it the g++ build."""
    from trigflow.firmware.convert import FirmwareSpec
    from trigflow.firmware.passes.simplernn_unroll import SimpleRNNUnroll
    from trigflow.kinds.rnn import convert, types_for
    from trigflow.proof.reference import exact_predict

    model = build_rnn(4, F, 5, arch="simplernn", units=4, head_hidden=(4,), quantized=True,
                      types=types_for("simplernn"), seed=1)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.6, w.shape) for w in model.get_weights()])  # saturating tanh
    x = _inputs(1000, seed=3)[:, :4]
    rewrite = SimpleRNNUnroll()
    unrolled, changed = rewrite.apply(model)
    assert changed and rewrite.apply(unrolled) == (unrolled, False)
    assert rewrite.tanh_layers["simplernn"] == [f"simplernn_h{t}" for t in range(4)]
    assert "QSimpleRNNHLS" not in {type(layer).__name__ for layer in unrolled.layers}
    # the training path is QKeras' QSimpleRNN (float tanh); the inference path the firmware's table
    assert not np.array_equal(model(x, training=True).numpy(), model.predict(x, verbose=0))
    hls_model = convert(model, tmp_path / "prj", FirmwareSpec(input_type="fixed<12,5,RND_CONV,SAT>"))
    firmware = hls_model.predict(np.ascontiguousarray(x, dtype=np.float64)).reshape(len(x), -1)
    reference = exact_predict(model, x)
    assert len(np.unique(reference)) > 100
    np.testing.assert_array_equal(firmware, reference)
