"""Quantize layer: trigflow's one fixed-point type, like hls4ml's single ``FixedPrecisionType``.

``FixedType`` is an ``ap_fixed``/``ap_ufixed`` format with its rounding and overflow modes: parse and format
(hls4ml's ``fixed<W,I,RND_CONV,SAT>`` spelling), range and LSB, an exact cast of float64 values, and the
constructors every stage needs — from a QKeras quantizer (as hls4ml implements it), from an hls4ml precision
object, from a value interval, from values that must be held exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from trigflow.errors import TrigflowError

__all__ = ["OVERFLOWS", "ROUNDINGS", "FixedType", "Overflow", "Rounding", "frac_bits", "grid_frac_bits"]

Rounding = Literal["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV"]
Overflow = Literal["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]
ROUNDINGS: tuple[str, ...] = Rounding.__args__  # type: ignore[attr-defined]
OVERFLOWS: tuple[str, ...] = Overflow.__args__  # type: ignore[attr-defined]

_PATTERN = re.compile(
    r"\s*(?:ap_)?(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(?:AP_)?(\w+))?\s*(?:,\s*(?:AP_)?(\w+))?"
    r"\s*(?:,\s*\d+\s*)?>\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FixedType:
    """``fixed<width, integer, rounding, overflow>``; ``integer`` counts the sign bit (as ap_fixed)."""

    signed: bool
    width: int
    integer: int
    rounding: Rounding = "TRN"
    overflow: Overflow = "WRAP"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise TrigflowError(f"a fixed-point type needs width ≥ 1, got {self.width}")
        if self.rounding not in ROUNDINGS:
            raise TrigflowError(f"unknown rounding mode {self.rounding!r}; use one of {', '.join(ROUNDINGS)}")
        if self.overflow not in OVERFLOWS:
            raise TrigflowError(f"unknown overflow mode {self.overflow!r}; use one of {', '.join(OVERFLOWS)}")

    # --- range ----------------------------------------------------------------------------------------------
    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0**-self.frac

    @property
    def hi(self) -> float:
        return (2.0 ** (self.integer - 1) if self.signed else 2.0**self.integer) - self.lsb

    @property
    def lo(self) -> float:
        if not self.signed:
            return 0.0
        return -self.hi if self.overflow == "SAT_SYM" else -(2.0 ** (self.integer - 1))

    def holds(self, values: Any) -> bool:
        """Every value is representable: inside the range and on the grid."""
        v = np.asarray(values, np.float64)
        if v.size == 0:
            return True
        scaled = v / self.lsb
        return bool(v.min() >= self.lo and v.max() <= self.hi and np.all(scaled == np.round(scaled)))

    # --- text -----------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> FixedType:
        """``fixed<16,6>``, ``ap_ufixed<8,0,AP_RND_CONV,AP_SAT>``, ``fixed<12,4,RND,SAT>`` …"""
        m = _PATTERN.fullmatch(str(text))
        if not m:
            raise TrigflowError(
                f"not a fixed-point type: {text!r}; write e.g. 'fixed<16,6>' or 'ufixed<8,3,RND_CONV,SAT>'"
            )
        rounding, overflow = (m.group(4) or "TRN").upper(), (m.group(5) or "WRAP").upper()
        signed, width, integer = m.group(1) == "", int(m.group(2)), int(m.group(3))
        return cls(signed, width, integer, rounding, overflow)  # type: ignore[arg-type]

    def __str__(self) -> str:
        name = f"{'' if self.signed else 'u'}fixed<{self.width},{self.integer}"
        if (self.rounding, self.overflow) != ("TRN", "WRAP"):
            name += f",{self.rounding},{self.overflow}"
        return name + ">"

    @property
    def ap(self) -> str:
        """The C++ spelling, ``ap_fixed<W,I,AP_RND_CONV,AP_SAT>``."""
        name = f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}"
        if (self.rounding, self.overflow) != ("TRN", "WRAP"):
            name += f",AP_{self.rounding},AP_{self.overflow}"
        return name + ">"

    def with_modes(self, rounding: Rounding = "TRN", overflow: Overflow = "WRAP") -> FixedType:
        return replace(self, rounding=rounding, overflow=overflow)

    # --- arithmetic -----------------------------------------------------------------------------------------
    def cast(self, x: Any, xp: Any = np) -> Any:
        """``ap_fixed`` assignment of exact (float64) values, elementwise; ``xp`` is numpy or tensorflow."""
        tf_like = xp is not np
        scale = 2.0**self.frac
        y = x * scale
        r = self.rounding
        if r == "TRN":
            y = xp.floor(y)
        elif r == "RND":  # half toward +inf
            y = xp.floor(y + 0.5)
        elif r == "RND_CONV":  # half to even
            y = xp.math.round(y) if tf_like else np.round(y)
        elif r == "RND_MIN_INF":
            y = xp.math.ceil(y - 0.5) if tf_like else np.ceil(y - 0.5)
        elif r == "RND_ZERO":  # half toward zero
            y = xp.sign(y) * (xp.math.ceil(xp.abs(y) - 0.5) if tf_like else np.ceil(np.abs(y) - 0.5))
        elif r == "RND_INF":  # half away from zero
            y = xp.sign(y) * xp.floor(xp.abs(y) + 0.5)
        else:  # TRN_ZERO
            y = xp.sign(y) * xp.floor(xp.abs(y))
        lo, hi = self.lo * scale, self.hi * scale
        if self.overflow == "WRAP":
            span = 2.0**self.width
            y = (y - lo) - xp.floor((y - lo) / span) * span + lo
        elif self.overflow == "SAT_ZERO":
            inside = (y >= lo) & (y <= hi)
            y = xp.where(inside, y, xp.zeros_like(y))
        else:
            y = xp.clip_by_value(y, lo, hi) if tf_like else np.clip(y, lo, hi)
        return y / scale

    # --- constructors ---------------------------------------------------------------------------------------
    @classmethod
    def covering(cls, lo: float, hi: float, frac: int, signed: bool | None = None) -> FixedType:
        """The narrowest type with ``frac`` fractional bits whose range holds [lo, hi]."""
        lo, hi, frac = float(lo), float(hi), int(frac)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise TrigflowError(f"no fixed-point type holds [{lo}, {hi}]; give finite bounds lo ≤ hi")
        signed = lo < 0 if signed is None else signed
        if lo < 0 and not signed:
            raise TrigflowError(f"an unsigned type cannot hold {lo}")
        lsb = 2.0**-frac
        integer = -frac + 1 if signed else -frac
        while True:
            t_hi = (2.0 ** (integer - 1) if signed else 2.0**integer) - lsb
            t_lo = -(2.0 ** (integer - 1)) if signed else 0.0
            if lo >= t_lo and hi <= t_hi and integer + frac >= 1:
                return cls(signed, integer + frac, integer)
            integer += 1

    @classmethod
    def exact(cls, values: Any, max_frac: int = 32, min_frac: int = -16) -> FixedType | None:
        """The narrowest type holding every value exactly, or None when they need more than ``max_frac``
        fractional bits."""
        v = np.asarray(values, np.float64).ravel()
        if v.size == 0:
            return None
        frac = grid_frac_bits(v, min_frac, max_frac)
        if frac is None:
            return None
        return cls.covering(float(v.min()), float(v.max()), frac)

    @classmethod
    def from_hls(cls, precision: Any) -> FixedType | None:
        """An hls4ml ``FixedPrecisionType``/``IntegerPrecisionType`` (None for other precision kinds)."""
        kinds = {c.__name__ for c in type(precision).__mro__}  # backends subclass them (APFixedPrecisionType)
        width = getattr(precision, "width", None)
        integer = getattr(precision, "integer", None)
        if width is None or integer is None or not kinds & {"FixedPrecisionType", "IntegerPrecisionType"}:
            return None
        rounding = _mode_name(getattr(precision, "rounding_mode", None), "TRN")
        overflow = _mode_name(getattr(precision, "saturation_mode", None), "WRAP")
        return cls(bool(getattr(precision, "signed", True)), int(width), int(integer), rounding, overflow)

    @classmethod
    def from_quantizer(cls, quantizer: Any, where: str = "quantizer") -> FixedType:
        """The type holding exactly what a QKeras quantizer outputs, as hls4ml's ``bit_exact`` pass derives it
        (RND_CONV, SAT; unsigned when the quantizer keeps no negatives).

        Only quantizers whose firmware form is exact are accepted: ``quantized_bits(bits, integer, alpha=1)``
        and plain ``quantized_relu(bits, integer)``; anything else is an error naming ``where``.
        """
        name = type(quantizer).__name__
        if getattr(quantizer, "use_stochastic_rounding", False):
            raise TrigflowError(f"{where}: stochastic rounding cannot be bit-exact; train without it")
        if name == "quantized_bits":
            bits, integer = int(quantizer.bits), int(quantizer.integer)
            if quantizer.alpha not in (None, 1, 1.0):
                raise TrigflowError(
                    f"{where}: only quantized_bits(bits, integer, alpha=1) maps exactly to an ap_fixed type; "
                    f"got {quantizer}"
                )
            signed = bool(quantizer.keep_negative)
            overflow = "SAT_SYM" if quantizer.symmetric else "SAT"
            return cls(signed, bits, integer + signed, "RND_CONV", overflow)
        if name == "quantized_relu":
            if quantizer.negative_slope or quantizer.use_sigmoid or quantizer.relu_upper_bound is not None:
                raise TrigflowError(
                    f"{where}: only plain quantized_relu(bits, integer) is exact; got {quantizer}"
                )
            return cls(False, int(quantizer.bits), int(quantizer.integer), "RND_CONV", "SAT")
        raise TrigflowError(
            f"{where}: quantizer {quantizer!r} has no exact fixed-point form; "
            "use quantized_bits or quantized_relu"
        )

    def quantizer(self) -> Any:
        """The QKeras ``quantized_bits`` that rounds onto this type (RND_CONV, SAT/SAT_SYM)."""
        from qkeras import quantized_bits

        return quantized_bits(
            self.width,
            self.integer - int(self.signed),
            keep_negative=self.signed,
            symmetric=self.overflow == "SAT_SYM",
            alpha=1,
        )


def _mode_name(mode: Any, default: str) -> str:
    if mode is None:
        return default
    name = getattr(mode, "name", str(mode)).upper().replace("AP_", "")
    return name or default


def grid_frac_bits(values: Any, lowest: int, highest: int) -> int | None:
    """The smallest ``f`` in [lowest, highest] with every value a multiple of 2**-f, else None."""
    values = np.asarray(values, np.float64)
    for f in range(lowest, highest + 1):
        scaled = values * 2.0**f
        if np.all(scaled == np.round(scaled)):
            return f
    return None


def frac_bits(values: Any, limit: int = 32) -> int:
    """Fractional bits needed to hold ``values`` exactly; an error when more than ``limit``."""
    frac = grid_frac_bits(values, 0, limit)
    if frac is None:
        raise TrigflowError(f"values are not on a fixed-point grid with ≤ {limit} fractional bits")
    return frac
