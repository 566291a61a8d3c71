from trigflow.models.mlp import build_mlp


def test_float_twin_has_the_same_architecture():
    q = build_mlp(16, 5, (64, 32, 32), quantized=True)
    f = build_mlp(16, 5, (64, 32, 32), quantized=False)
    assert q.count_params() == f.count_params() == 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5
    assert [w.shape for w in q.get_weights()] == [w.shape for w in f.get_weights()]
    assert q.output_shape == f.output_shape == (None, 5)


def test_quantized_model_has_a_quantizer_after_every_op():
    q = build_mlp(16, 5, (8, 8), quantized=True)
    kinds = [layer.__class__.__name__ for layer in q.layers]
    assert kinds == ["InputLayer", "QActivation", "QDense", "QActivation", "QDense", "QActivation", "QDense"]
