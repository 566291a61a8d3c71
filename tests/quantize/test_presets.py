import numpy as np

from trigflow.quantize.presets import QuantSpec


def test_input_grid_values_are_exact_in_the_firmware_input_type():
    from hls4ml.model.types import FixedPrecisionType

    spec = QuantSpec(input_bits=12, input_integer=3)
    x = spec.quantize_input(np.random.default_rng(0).normal(scale=5, size=10_000))
    lsb = spec.input_lsb
    np.testing.assert_array_equal(np.round(x / lsb) * lsb, x)  # on the grid
    fixed = FixedPrecisionType(width=spec.input_bits, integer=spec.input_integer + 1, signed=True)
    assert x.max() <= 2.0 ** (fixed.integer - 1) - lsb and x.min() >= -(2.0 ** (fixed.integer - 1))
    assert spec.input_type.startswith(f"fixed<{spec.input_bits},{spec.input_integer + 1}")


def test_quantize_input_is_idempotent():
    spec = QuantSpec()
    x = spec.quantize_input(np.linspace(-40, 40, 1001))
    np.testing.assert_array_equal(spec.quantize_input(x), x)
