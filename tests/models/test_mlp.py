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


def test_layer_bits_give_each_dense_layer_and_its_activation_its_own_width():
    import pytest

    from trigflow.errors import TrigflowError
    from trigflow.quantize.presets import QuantSpec

    q = build_mlp(16, 5, (8, 8), quantized=True, spec=QuantSpec(bits=6, layer_bits=(8, 4, 6)))
    widths = {
        layer.name: (layer.kernel_quantizer_internal.bits, layer.bias_quantizer_internal.bits)
        for layer in q.layers
        if layer.__class__.__name__ == "QDense"
    }
    assert widths == {"dense_0": (8, 8), "dense_1": (4, 4), "logits": (6, 6)}
    relus = {layer.name: layer.quantizer.bits for layer in q.layers if layer.name.startswith("relu_")}
    assert relus == {"relu_0": 8, "relu_1": 4}
    assert q.get_layer("input_quant").quantizer.bits == 16  # the input format is not a layer width
    with pytest.raises(TrigflowError, match="one width per layer"):
        build_mlp(16, 5, (8, 8), quantized=True, spec=QuantSpec(layer_bits=(8, 4)))
