"""FixedType, trigflow's one fixed-point type: text, range, ap_fixed casts (checked against g++ with hls4ml's
ap_types), the constructors from intervals, exact values, hls4ml precisions and QKeras quantizers."""

from __future__ import annotations

import itertools
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from trigflow.errors import TrigflowError
from trigflow.quantize.fixed import OVERFLOWS, ROUNDINGS, FixedType, frac_bits, grid_frac_bits


@pytest.mark.parametrize(
    "text, expected, canonical",
    [
        ("fixed<16,6>", FixedType(True, 16, 6), "fixed<16,6>"),
        ("ufixed<8,3,RND_CONV,SAT>", FixedType(False, 8, 3, "RND_CONV", "SAT"), "ufixed<8,3,RND_CONV,SAT>"),
        ("ap_fixed<12,4,AP_RND,AP_SAT>", FixedType(True, 12, 4, "RND", "SAT"), "fixed<12,4,RND,SAT>"),
        ("ap_ufixed<8,0,AP_RND_CONV,AP_SAT_SYM>", FixedType(False, 8, 0, "RND_CONV", "SAT_SYM"), None),
        ("fixed<10,-2,TRN,SAT>", FixedType(True, 10, -2, "TRN", "SAT"), "fixed<10,-2,TRN,SAT>"),
        ("fixed<16,6,TRN,WRAP>", FixedType(True, 16, 6), "fixed<16,6>"),
        ("fixed<16,6,RND_CONV,SAT,0>", FixedType(True, 16, 6, "RND_CONV", "SAT"), "fixed<16,6,RND_CONV,SAT>"),
        (" fixed < 16 , 6 , rnd_conv , sat > ", FixedType(True, 16, 6, "RND_CONV", "SAT"), None),
        ("fixed<8,4,RND>", FixedType(True, 8, 4, "RND", "WRAP"), "fixed<8,4,RND,WRAP>"),
    ],
)
def test_parse_and_format_round_trip(text, expected, canonical):
    t = FixedType.parse(text)
    assert t == expected
    if canonical is not None:
        assert str(t) == canonical
    assert FixedType.parse(str(t)) == t
    assert FixedType.parse(t.ap) == t


def test_c_plus_plus_spelling():
    assert FixedType(True, 16, 6).ap == "ap_fixed<16,6>"
    assert FixedType(False, 8, 3, "RND_CONV", "SAT").ap == "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"
    assert FixedType(True, 8, 3, "TRN", "SAT").ap == "ap_fixed<8,3,AP_TRN,AP_SAT>"
    assert FixedType(True, 8, 3).with_modes("RND", "SAT") == FixedType(True, 8, 3, "RND", "SAT")


@pytest.mark.parametrize(
    "text", ["fixed<16>", "int<8>", "fixed<0,0>", "fixed<8,4,ROUND,SAT>", "fixed<8,4,TRN,CLIP>"]
)
def test_bad_types_are_user_errors(text):
    with pytest.raises(TrigflowError):
        FixedType.parse(text)


def test_ranges():
    t = FixedType(True, 8, 3)
    assert (t.lo, t.hi, t.lsb, t.frac) == (-4.0, 4.0 - 2**-5, 2**-5, 5)
    u = FixedType(False, 8, 3)
    assert (u.lo, u.hi, u.lsb, u.frac) == (0.0, 8.0 - 2**-5, 2**-5, 5)
    s = FixedType(True, 8, 3, "RND_CONV", "SAT_SYM")
    assert (s.lo, s.hi) == (-(4.0 - 2**-5), 4.0 - 2**-5)
    n = FixedType(True, 4, -2)  # all bits below the binary point
    assert (n.lo, n.hi, n.lsb) == (-(2.0**-3), 2.0**-3 - 2**-6, 2**-6)
    w = FixedType(False, 4, 6)  # lsb above 1
    assert (w.lo, w.hi, w.lsb) == (0.0, 64.0 - 4.0, 4.0)
    assert t.holds([-4.0, 0.03125, 4 - 2**-5]) and t.holds([])
    assert not t.holds([4.0]) and not t.holds([-4.03125]) and not t.holds([2**-6])
    assert not s.holds([-4.0]) and s.holds([-4 + 2**-5])


def test_ranges_agree_with_hls4ml():
    from hls4ml.model.types import FixedPrecisionType

    for signed, overflow in itertools.product((True, False), ("WRAP", "SAT", "SAT_SYM")):
        t = FixedType(signed, 10, 3, "RND_CONV", overflow)
        p = FixedPrecisionType(10, 3, signed, "RND_CONV", overflow)
        assert (t.lo, t.hi) == (p.min, p.max)


# --- casts against real ap_fixed (g++ with hls4ml's ap_types) ---------------------------------------------
CAST_TYPES = [FixedType(True, 6, 3), FixedType(False, 5, 2), FixedType(True, 5, -1), FixedType(True, 4, 6)]
CAST_VALUES = np.array(
    sorted(
        {k / 64.0 for k in range(-700, 701, 3)}
        | {k / 8.0 + d for k in range(-80, 81) for d in (0.0, 0.0625, -0.0625)}
        | {v * s for v in (0.5, 1.5, 2.5, 3.75, 4.0, 7.96875, 8.0, 31.5, 100.0, 1e3, 3e3) for s in (1, -1)}
        | {k * 2.0**-7 for k in range(-40, 41)}
    ),
    np.float64,
)


def _ap_types_dir() -> Path:
    import hls4ml

    return Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"


@pytest.fixture(scope="module")
def ap_fixed_casts(tmp_path_factory) -> dict[FixedType, np.ndarray]:
    """Every (type, rounding, overflow) of CAST_TYPES applied to CAST_VALUES by ap_fixed itself."""
    types = [t.with_modes(r, o) for t in CAST_TYPES for r in ROUNDINGS for o in OVERFLOWS]
    lines = ['#include <cstdio>', '#include "ap_fixed.h"', "int main() {", "  double x;",
             "  while (std::scanf(\"%lf\", &x) == 1) {"]
    for t in types:
        lines.append(f"    {{ {t.ap} y = x; std::printf(\"%.17g \", y.to_double()); }}")
    lines += ['    std::printf("\\n");', "  }", "  return 0;", "}"]
    work = tmp_path_factory.mktemp("apfixed")
    (work / "cast.cpp").write_text("\n".join(lines))
    subprocess.run(
        ["g++", "-O0", "-std=c++14", f"-I{_ap_types_dir()}", "cast.cpp", "-o", "cast"],
        cwd=work, check=True, env={**os.environ},
    )
    out = subprocess.run(
        [str(work / "cast")], input="\n".join(repr(float(v)) for v in CAST_VALUES),
        capture_output=True, text=True, check=True,
    ).stdout
    table = np.array([[float(w) for w in line.split()] for line in out.splitlines()])
    return {t: table[:, k] for k, t in enumerate(types)}


def test_cast_is_ap_fixed_for_every_mode(ap_fixed_casts):
    for t, expected in ap_fixed_casts.items():
        np.testing.assert_array_equal(t.cast(CAST_VALUES), expected, err_msg=str(t.ap))


def test_cast_in_tensorflow_is_the_same(ap_fixed_casts):
    import tensorflow as tf

    x = tf.constant(CAST_VALUES, tf.float64)
    for t, expected in ap_fixed_casts.items():
        np.testing.assert_array_equal(t.cast(x, tf).numpy(), expected, err_msg=str(t.ap))


def test_cast_examples():
    t = FixedType(True, 8, 4, "RND", "SAT")  # 4 fractional bits; half toward +inf
    np.testing.assert_array_equal(
        t.cast(np.array([-0.03125, 0.03125, 0.09375, 100.0])), [0.0, 0.0625, 0.125, t.hi]
    )
    t = FixedType(True, 8, 4, "RND_CONV", "SAT")  # half to even
    np.testing.assert_array_equal(t.cast(np.array([0.03125, 0.09375, -100.0])), [0.0, 0.125, -8.0])
    trn_wrap = FixedType(True, 8, 4)
    np.testing.assert_array_equal(trn_wrap.cast(np.array([-0.01, 8.0])), [-0.0625, -8.0])


# --- constructors ------------------------------------------------------------------------------------------
def test_covering_is_the_narrowest():
    assert FixedType.covering(-5.0, 3.0, 0) == FixedType(True, 4, 4)
    assert FixedType.covering(0.0, 3.9, 4) == FixedType(False, 6, 2)
    assert FixedType.covering(0.0, 4.0, 4) == FixedType(False, 7, 3)
    assert FixedType.covering(-4.0, 3.0, 2) == FixedType(True, 5, 3)
    assert FixedType.covering(-4.0, 4.0, 2) == FixedType(True, 6, 4)  # +2^k needs one more bit than -2^k
    assert FixedType.covering(0.0, 0.0, 3) == FixedType(False, 1, -2)
    assert FixedType.covering(0.0, 1.0, 0, signed=True) == FixedType(True, 2, 2)
    for lo, hi, frac in [(-3.3, 0.7, 3), (0.0, 100.0, 0), (-0.01, 0.01, 10), (0.0, 0.25, 2), (-1.0, 1.0, -1)]:
        t = FixedType.covering(lo, hi, frac)
        assert t.frac == frac and t.lo <= lo and hi <= t.hi
        if t.width > 1:
            narrower = FixedType(t.signed, t.width - 1, t.integer - 1)
            assert lo < narrower.lo or hi > narrower.hi
    with pytest.raises(TrigflowError):
        FixedType.covering(-1.0, 1.0, 2, signed=False)
    with pytest.raises(TrigflowError):
        FixedType.covering(0.0, float("inf"), 2)


def test_exact_is_the_narrowest_type_holding_the_values():
    assert str(FixedType.exact([-1.5, 0.25, 3.75])) == "fixed<5,3>"
    assert str(FixedType.exact([0.0, 0.5, 7.5])) == "ufixed<4,3>"
    assert FixedType.exact([-1.0, 0.5]) == FixedType(True, 2, 1)
    assert FixedType.exact([1024.0, 2048.0]) == FixedType(False, 2, 12)
    assert FixedType.exact([]) is None
    assert FixedType.exact([1 / 3]) is None
    assert FixedType.exact([2.0**-20], max_frac=16) is None
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.integers(-300, 300, 7) * 2.0 ** -int(rng.integers(-3, 9))
        t = FixedType.exact(v)
        assert t.holds(v)
        if t.width > 1:  # one bit fewer, at the top or at the bottom, does not hold them
            for smaller in (replace(t, width=t.width - 1, integer=t.integer - 1), replace(t, width=t.width - 1)):
                assert not smaller.holds(v)


def test_grid_frac_bits():
    assert grid_frac_bits([0.5, 0.25], 0, 8) == 2
    assert grid_frac_bits([4.0, 8.0], -8, 8) == -2
    assert grid_frac_bits([0.1], 0, 8) is None
    assert frac_bits([1.0, 0.125]) == 3
    with pytest.raises(TrigflowError):
        frac_bits([0.1])


def test_from_hls_reads_fixed_and_integer_precisions():
    from hls4ml.model.types import (
        ExponentPrecisionType,
        FixedPrecisionType,
        IntegerPrecisionType,
        XnorPrecisionType,
    )

    assert FixedType.from_hls(FixedPrecisionType(16, 6)) == FixedType(True, 16, 6)
    p = FixedPrecisionType(10, 3, False, "AP_RND_CONV", "AP_SAT")
    assert FixedType.from_hls(p) == FixedType(False, 10, 3, "RND_CONV", "SAT")
    assert FixedType.parse(str(p)) == FixedType.from_hls(p)  # hls4ml's own spelling parses too
    p = FixedPrecisionType(8, 2, True, "RND", "SAT_SYM")
    assert FixedType.from_hls(p) == FixedType(True, 8, 2, "RND", "SAT_SYM")
    assert FixedType.from_hls(IntegerPrecisionType(8, signed=False)) == FixedType(False, 8, 8)
    assert FixedType.from_hls(IntegerPrecisionType(5)) == FixedType(True, 5, 5)
    class APFixedPrecisionType(FixedPrecisionType):  # as hls4ml's backends specialise the types
        pass

    ap = APFixedPrecisionType(8, 3, True, "RND", "SAT")
    assert FixedType.from_hls(ap) == FixedType(True, 8, 3, "RND", "SAT")
    assert FixedType.from_hls(XnorPrecisionType()) is None
    assert FixedType.from_hls(ExponentPrecisionType(4)) is None
    assert FixedType.from_hls(None) is None


def test_from_quantizer_matches_what_qkeras_outputs():
    from qkeras import quantized_bits, quantized_relu

    x = np.linspace(-20, 20, 4001).astype(np.float32)
    cases = [
        (quantized_bits(8, 3, alpha=1), FixedType(True, 8, 4, "RND_CONV", "SAT")),
        (quantized_bits(6, 0, alpha=1), FixedType(True, 6, 1, "RND_CONV", "SAT")),
        (quantized_bits(8, 2, keep_negative=False, alpha=1), FixedType(False, 8, 2, "RND_CONV", "SAT")),
        (quantized_bits(6, 2, symmetric=True, alpha=1), FixedType(True, 6, 3, "RND_CONV", "SAT_SYM")),
        (quantized_relu(6, 2), FixedType(False, 6, 2, "RND_CONV", "SAT")),
        (quantized_relu(8, 0), FixedType(False, 8, 0, "RND_CONV", "SAT")),
    ]
    for q, expected in cases:
        t = FixedType.from_quantizer(q)
        assert t == expected, str(q)
        out = np.asarray(q(x), np.float64)
        # the type holds the quantizer's outputs, and the quantizer is the type's RND_CONV/SAT cast
        assert t.holds(out), str(q)
        np.testing.assert_array_equal(out, t.cast(x.astype(np.float64)), err_msg=str(q))
    assert FixedType.from_quantizer(FixedType(True, 10, 4, "RND_CONV", "SAT").quantizer()) == FixedType(
        True, 10, 4, "RND_CONV", "SAT"
    )
    u = FixedType(False, 7, 1, "RND_CONV", "SAT")
    assert FixedType.from_quantizer(u.quantizer()) == u


def test_from_quantizer_refuses_inexact_quantizers():
    from qkeras import quantized_bits, quantized_relu, quantized_tanh

    inexact = (quantized_bits(8, 3, alpha="auto_po2"), quantized_relu(6, 2, negative_slope=0.25), quantized_tanh(8))
    for q in inexact:
        with pytest.raises(TrigflowError, match="dense_0"):
            FixedType.from_quantizer(q, where="dense_0")
