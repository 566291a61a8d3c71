"""Firmware layer: FPGA resource and latency estimate of an hls4ml model, without vendor tools.

``estimate(hls_model)`` walks a converted (not necessarily compiled) hls4ml ``ModelGraph`` and predicts,
per layer and in total, DSP / LUT / FF / BRAM_18K usage, latency in clock cycles (and ns at the configured
clock period) and the initiation interval, the way Vitis HLS would schedule the hls4ml templates.
``estimate_project(path)`` does the same for a project folder that holds a serialized ``model.fml``.

The model (constants below; fitted and cited in docs/estimate.md, reproduced by
scripts/calibrate_estimate.py):

Multipliers (Dense, Conv, BatchNorm scale).  With the Latency strategy and reuse factor 1 the weights are
compile-time constants, so HLS specialises every product ``x * w``:

* ``w == 0`` (pruned): removed, together with its adder.  Costs nothing.
* ``w`` a power of two: a shift (wiring).  Costs nothing.
* otherwise the constant is reduced to its odd mantissa ``m`` (trailing zeros are a shift) of ``b`` bits
  (plus sign) with ``c`` non-zero canonical-signed-digit (CSD) digits.  ``c <= 2`` is one adder
  (``x << i +/- x << j``).  ``c >= DSP_MIN_CSD`` is a multiplier, bound to a DSP48 when the wider operand
  has at least ``DSP_MIN_OPERAND_BITS`` (11) bits, ``max(x_bits, b) >= 11``, and built in fabric otherwise
  (``LUT_PER_CONST_MULT_BIT2 * x_bits * b`` LUTs).  This follows the binding in vendor reports (Vitis HLS
  2024.1: 12x6, 12x7, 11x9, 14x8 bit constant products on DSPs, 10x10 and 8x8 in LUTs; Vivado HLS 2020.1:
  6x16 on DSPs, 6x6 in LUTs); a DSP48E2 is 27x18, wider operands take several.  1-bit (binary), ternary and
  power-of-two (exponent) weight types never use DSPs.  The same width rule decides general (non-constant)
  multipliers: softmax, merge layers, reuse factor > 1.
* reuse factor RF > 1 (Latency strategy): ``ceil(n_nonzero / RF)`` shared general multipliers (full weight
  width, no constant specialisation) fed by RF:1 multiplexers; II = RF, latency grows by RF - 1.
* Resource strategy: ``ceil(n_in * n_out / RF)`` general multipliers (zeros are not skipped: the weights
  live in a ROM of depth RF, BRAM when deep), sequential accumulation, II = RF, latency ~ RF + pipeline.
* Distributed arithmetic (``strategy=distributed_arithmetic``, hls4ml's da4ml pass): no DSP.  The LUT count
  of the whole constant matrix-vector product (products and adder tree, with da4ml's shared subexpressions)
  is da4ml's own cost figure, which hls4ml records as ``da_kernel_cost`` (about 1 LUT per adder bit; on a
  6-bit 16-64-32-32-5 MLP da4ml said 37.3k where yosys synth_xilinx counted 37.5k LUT, docs/rtl.md).  Before
  hls4ml's DA pass ran (no ``da_kernel_cost``), the products are the Latency model's fabric products
  with no DSP binding (no shared terms: an upper bound).  Latency: an adder tree of ``ceil(log2 n_in) + 1``
  levels of the output width.  A Conv (io_parallel, hls4ml's conv_da_parallel template) builds that kernel
  once per pixel of a partition and runs its partitions one per cycle: LUT × pixels per partition,
  II = partitions.

Adder trees.  Output ``j`` sums its ``k_j`` non-zero products (and the bias when non-zero) in a balanced
tree: ``k_j - 1`` adders of the accumulator width (clipped to the product width), depth
``ceil(log2 k_max)``; every DSP product takes one of them into its post-adder (multiply-accumulate).

Timing.  Operations on the critical path (multiplier, adder levels, comparators, table reads) are chained
into clock cycles of ``period * (1 - uncertainty)`` (Vitis default uncertainty 27 %), as HLS does when it
schedules a pipelined top function; a table read in BRAM is a registered boundary.  With io_parallel the
whole network is one chain (latency = cycles of the chain + I/O registers, II = largest layer II).  With
io_stream every layer is a dataflow process that handles one stream packet (pixel) per II: it takes
``packets * II + depth`` cycles, starts when its producer emits the first packet it needs and ends no
earlier than ``STREAM_TAIL_CYCLES`` after its producer (the HLS dataflow latency model); the network II is
the slowest process.  Conv2D/Conv1D with io_stream use the line-buffer (im2col) kernel:
one kernel window (``kh * kw * n_chan`` inputs x ``n_filt`` outputs, a small dense layer) per input pixel.
With io_parallel a Conv layer repeats that window product for ``out_pixels / parallelization`` partitions.

Activations.  ReLU/linear are multiplexers (rounding or saturating output types add an adder/comparator).
Sigmoid, tanh, softmax and friends read lookup tables (``table_size`` x table width): small tables become
LUT ROM, larger ones BRAM, replicated for parallel reads (dual ported).  Softmax (stable) = max tree,
subtract, exp table, sum tree, inverse table, one multiplier per element.  Pooling = comparator (max) or adder
(average) trees.  Stream FIFOs deeper than ``FIFO_SRL_MAX_DEPTH`` take BRAM, shallower ones shift registers.

Registers (FF) are counted at every cycle boundary of the schedule: the bits alive at that point
(products, partial sums, outputs), times ``FF_PER_LIVE_BIT``.

Each hls4ml layer name has one cost model, a function registered with ``@layer_cost("Dense", "QDense", ...)``;
``handler_for(layer)`` finds it by the layer's ``class_name``, else by its hls4ml class.

Limits: with the Latency strategy the DSP count is the number of non-zero constants with three or more
CSD digits that meet a wide operand, a property of the trained weights: estimate the trained model, not an
untrained one (an untrained layer has far more such constants than an l1-regularised trained one).  HLS LUT
estimates differ from post-synthesis counts by up to 2x; strategies other than Latency/RF=1, BRAM and the
io_stream FIFOs are modelled from the templates but not calibrated; layers not listed above are reported with
zero cost and a note.  Treat the numbers as a fast first look, not a sign-off (stated errors:
docs/estimate.md, printed by scripts/calibrate_estimate.py).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from trigflow.errors import TrigflowError
from trigflow.firmware.loaders import MERGE_LAYERS
from trigflow.quantize.fixed import FixedType

# ---------------------------------------------------------------------------------------------------------
# Fitted / device constants (UltraScale+ speed grade -2, Vitis HLS 2024.1).  See docs/estimate.md.
# ---------------------------------------------------------------------------------------------------------
DSP_MIN_OPERAND_BITS = 11  # a product goes to a DSP48 when its wider operand has at least this many bits
DSP_MIN_CSD = 3  # constants with fewer non-zero CSD digits are one adder (Vitis 2024.1 reports)
DSP_A_BITS, DSP_B_BITS = 27, 18  # DSP48E2 multiplier port widths
LUT_PER_ADDER_BIT = 1.6  # per adder bit: LUT6 + CARRY8, plus HLS overhead (fitted)
LUT_PER_CONST_MULT_BIT2 = 0.6  # per x_bits * b of a constant multiplier core in fabric (Vitis 2024.1 reports)
LUT_PER_VAR_MULT_BIT2 = 0.6  # per x_bits * w_bits of a general (non-constant) LUT multiplier
LUT_PER_MUX_BIT = 0.5  # 2:1 multiplexer / ReLU per output bit
FF_PER_LIVE_BIT = 0.3  # flip-flops per bit alive at a cycle boundary (fitted; HLS shares/trims registers)
T_ADD_NS = 0.5  # adder delay: T_ADD_NS + T_ADD_PER_BIT_NS * width (fitted)
T_ADD_PER_BIT_NS = 0.02
T_DSP_NS = 2.5  # DSP48 multiply, combinational part (fitted)
T_MUX_NS = 0.35  # multiplexer / compare-select
ROM_BRAM_CYCLES = 1  # registered BRAM table read
ROM_LUT_NS = 1.2  # LUT ROM read
ROM_BRAM_MIN_BITS = 8192  # tables at least this big go to BRAM
ROM_BRAM_MIN_DEPTH = 64  # resource-strategy weight memories at least this deep go to BRAM
FIFO_SRL_MAX_DEPTH = 16  # stream FIFOs deeper than this take BRAM
STREAM_IO_CYCLES = 1  # read/write registers of a dataflow process
STREAM_TAIL_CYCLES = 1  # a dataflow process that keeps pace ends this long after its producer
PARALLEL_IO_CYCLES = 1  # input/output registers of a pipelined io_parallel top function
DEFAULT_UNCERTAINTY = {"vitis": 0.27, "vivado": 0.125}

_BRAM18_BITS = 18 * 1024


# ---------------------------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------------------------
@dataclass
class LayerEstimate:
    """Estimate for one hls4ml layer; ``latency_cycles`` is its share of the network latency."""

    name: str
    kind: str
    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram: int = 0
    latency_cycles: int = 0
    ii: int = 1
    mults: int = 0  # hardware multiplier instances (DSP or LUT); zero and power-of-two weights excluded
    note: str = ""


@dataclass
class Estimate:
    """Per-layer and total estimate of a converted hls4ml model."""

    layers: list[LayerEstimate]
    latency_cycles: int
    ii: int
    clock_period_ns: float
    io_type: str
    part: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, int]:
        return {k: int(sum(getattr(layer, k) for layer in self.layers)) for k in ("dsp", "lut", "ff", "bram")}

    @property
    def latency_ns(self) -> float:
        return round(self.latency_cycles * self.clock_period_ns, 3)

    def to_report(self) -> dict[str, Any]:
        """The fixed report.json keys shared with ``trigflow.firmware.synth``."""
        return {
            "resources": self.resources,
            "latency_cycles": int(self.latency_cycles),
            "latency_ns": self.latency_ns,
            "ii": int(self.ii),
            "source": "estimate",
        }

    def table(self) -> list[dict[str, Any]]:
        """Rows for printing: one per layer plus a ``total`` row (same keys in every row)."""
        rows = [
            {
                "layer": le.name,
                "kind": le.kind,
                "dsp": le.dsp,
                "lut": le.lut,
                "ff": le.ff,
                "bram": le.bram,
                "latency_cycles": le.latency_cycles,
                "ii": le.ii,
                "mults": le.mults,
                "note": le.note,
            }
            for le in self.layers
        ]
        total = self.resources
        rows.append(
            {
                "layer": "total",
                "kind": self.io_type,
                **total,
                "latency_cycles": self.latency_cycles,
                "ii": self.ii,
                "mults": sum(le.mults for le in self.layers),
                "note": f"{self.latency_ns} ns at {self.clock_period_ns} ns clock",
            }
        )
        return rows


# ---------------------------------------------------------------------------------------------------------
# Number formats
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operand:
    """An operand of the arithmetic: its fixed-point type, and what its bits mean — ``fixed`` (the type),
    ``binary`` (±1 in one bit), ``exponent`` (a power of two) or ``float`` (not modelled)."""

    type: FixedType
    kind: str = "fixed"

    @property
    def rounds(self) -> bool:
        return self.type.rounding.startswith("RND")

    @property
    def saturates(self) -> bool:
        return self.type.overflow.startswith("SAT")


_DEFAULT = Operand(FixedType(True, 16, 6))  # unknown types count as ap_fixed<16,6>


def _operand(precision: Any) -> Operand:
    """hls4ml precision type -> operand description (duck-typed; unknown types count as ap_fixed<16,6>)."""
    if precision is None:
        return _DEFAULT
    cls = type(precision).__name__
    width = int(getattr(precision, "width", 16) or 16)
    signed = bool(getattr(precision, "signed", True))
    if "Xnor" in cls:
        return Operand(FixedType(False, 1, 1), "binary")
    if "Exponent" in cls:
        return Operand(FixedType(signed, width, width), "exponent")
    if "Float" in cls:
        return Operand(FixedType(True, 32, 9), "float")
    fixed = FixedType.from_hls(precision)
    if fixed is None:
        integer = getattr(precision, "integer", width)
        fixed = FixedType(signed, width, width if integer is None else int(integer))
    return Operand(fixed)


def _tensor_operand(var: Any) -> Operand:
    t = getattr(var, "type", None)
    return _operand(getattr(t, "precision", None))


def _quantize(values: np.ndarray, num: Operand) -> np.ndarray:
    """Integer mantissas of ``values`` in format ``num`` (the weight header after the ap_fixed cast; any RND
    mode rounds half up and any overflow clips: close enough for counting non-zero digits)."""
    t = num.type
    scaled = np.asarray(values, dtype=np.float64) * (2.0**t.frac)
    q = np.floor(scaled + 0.5) if num.rounds else np.floor(scaled)
    lo = -(2 ** (t.width - 1)) if t.signed else 0
    hi = 2 ** (t.width - 1) - 1 if t.signed else 2**t.width - 1
    return np.clip(q, lo, hi).astype(np.int64)


def _csd_digits(m: np.ndarray) -> np.ndarray:
    """Number of non-zero digits of the canonical signed-digit form of positive integers."""
    m = m.astype(np.int64).copy()
    count = np.zeros_like(m)
    while np.any(m):
        digit = np.where((m & 1) == 1, 2 - (m & 3), 0)
        count += digit != 0
        m = (m - digit) >> 1
    return count


def _bit_length(m: np.ndarray) -> np.ndarray:
    out = np.zeros_like(m)
    nz = m > 0
    out[nz] = np.floor(np.log2(m[nz].astype(np.float64))).astype(np.int64) + 1
    return out


def _log2c(k: int) -> int:
    return int(math.ceil(math.log2(k))) if k > 1 else 0


def _bram18(depth: int, width: int) -> int:
    """BRAM_18K blocks for a depth x width memory (1Kx18 / 512x36 / 2Kx9 ... aspect ratios)."""
    if depth <= 0 or width <= 0:
        return 0
    if depth <= 512:
        return math.ceil(width / 36)
    if depth > 16384:
        return math.ceil(depth / 16384) * width
    return math.ceil(width / (_BRAM18_BITS // (1 << _log2c(depth))))


def _dsp_slices(a_bits: int, b_bits: int) -> int:
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    return math.ceil(a / DSP_A_BITS) * math.ceil(b / DSP_B_BITS)


def _dsp_width_ok(a_bits: Any, b_bits: Any) -> Any:
    """DSP48 or fabric for an a_bits x b_bits product: DSP when the wider operand has >= 11 bits.

    Vitis HLS 2024.1 reports bind 12 x 6, 12 x 7, 11 x 9 and 14 x 8 bit constant products to DSPs and
    10 x 10, 8 x 8 bit ones to LUTs; Vivado HLS 2020.1 put 6 x 16 bit products on DSPs and 6 x 6 bit ones
    in fabric (sources in docs/estimate.md).  A threshold on the product of the widths cannot reproduce
    both (12 x 6 = 72 on a DSP, 10 x 10 = 100 in LUTs); one on the wider operand can.
    """
    return np.maximum(a_bits, b_bits) >= DSP_MIN_OPERAND_BITS


def _t_add(width: int) -> float:
    return T_ADD_NS + T_ADD_PER_BIT_NS * max(width, 1)


# ---------------------------------------------------------------------------------------------------------
# Critical-path operations and the scheduler
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Op:
    """One step on a layer's critical path: combinational ``ns`` or a registered ``cycles`` boundary."""

    ns: float = 0.0
    live_bits: int | None = None  # bits alive after this step (registered if a cycle boundary falls here)
    cycles: int = 0  # > 0: registered step (e.g. BRAM read) taking this many cycles


@dataclass
class LayerCost:
    """What a layer handler returns: the layer's resources, its critical path and its stream schedule."""

    est: LayerEstimate
    ops: list[_Op]
    stream_packets: int = 1  # io_stream: packets handled per inference
    stream_ii: int = 1  # io_stream: cycles per packet
    first_packets: int = 1  # io_stream: packets read before the first output (line buffer fill)
    extra_cycles: int = 0  # cycles outside the critical-path ops (e.g. sequential reuse)
    copies: int = 1  # parallel copies of the critical-path hardware (registers scale with it)


class _Scheduler:
    """Packs ops into clock cycles of ``t_eff`` ns, counting cycle boundaries and registered bits."""

    def __init__(self, t_eff: float):
        self.t_eff = t_eff
        self.used = 0.0
        self.cycles = 0
        self.ff_bits = 0

    def run(self, ops: list[_Op], carry_bits: int = 0) -> int:
        start = self.cycles
        last_bits = carry_bits
        for op in ops:
            if op.cycles:
                self.ff_bits += last_bits if self.used > 0 else 0
                self.cycles += op.cycles
                self.used = 0.0
            elif op.ns > 0:
                if self.used + op.ns > self.t_eff and self.used > 0:
                    self.cycles += 1
                    self.ff_bits += last_bits
                    self.used = 0.0
                extra = int(op.ns // self.t_eff) if op.ns > self.t_eff else 0
                self.cycles += extra
                self.used += op.ns - extra * self.t_eff
            last_bits = last_bits if op.live_bits is None else op.live_bits
        self.last_bits = last_bits
        return self.cycles - start

    def close(self) -> int:
        """Register the end of the chain (a process output); returns cycles added."""
        if self.used > 0:
            self.cycles += 1
            self.used = 0.0
            return 1
        return 0


# ---------------------------------------------------------------------------------------------------------
# Layer models
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _MatMul:
    """Cost of one y = W x (+ b) block with constant or stored weights."""

    dsp: int
    lut: int
    mults: int
    ops: list[_Op]
    ii: int
    extra_cycles: int
    bram: int
    note: str
    ff: int = 0  # registers outside the critical-path schedule (accumulators of sequential reuse)


def _general_multipliers(n_hw: int, x: Operand, wn: Operand) -> tuple[int, int, float]:
    """(dsp, lut, delay ns) of ``n_hw`` general (non-constant) x * w multipliers."""
    if _dsp_width_ok(x.type.width, wn.type.width) and wn.kind == "fixed":
        return n_hw * _dsp_slices(x.type.width, wn.type.width), 0, T_DSP_NS
    lut = int(n_hw * x.type.width * wn.type.width * LUT_PER_VAR_MULT_BIT2)
    return 0, lut, _log2c(max(wn.type.width, 2)) * _t_add(x.type.width + wn.type.width)


def _matmul(
    w2d: np.ndarray,
    bias: np.ndarray | None,
    x: Operand,
    wn: Operand,
    acc: Operand,
    out: Operand,
    rf: int,
    strategy: str,
) -> _MatMul:
    """Resources and critical path of a matrix-vector product ``w2d`` (n_in x n_out)."""
    n_in, n_out = w2d.shape
    rf = max(int(rf or 1), 1)
    strategy = (strategy or "latency").lower()
    q = _quantize(w2d, wn) if wn.kind == "fixed" else (np.asarray(w2d) != 0).astype(np.int64)
    nz = q != 0
    if wn.kind in ("binary", "exponent"):
        nz = np.ones_like(nz, dtype=bool) if wn.kind == "binary" else (np.asarray(w2d) != 0)
    bias_nz = np.zeros(n_out, dtype=bool) if bias is None else (np.asarray(bias).reshape(-1)[:n_out] != 0)
    k = nz.sum(axis=0) + bias_nz.astype(int)
    nnz = int(nz.sum())
    k_max = int(k.max()) if k.size else 0
    prod_bits = x.type.width + wn.type.width
    drop = max(0, x.type.frac + wn.type.frac - acc.type.frac)
    adder_bits = max(1, min(acc.type.width, prod_bits - drop + 1))
    n_adders = int(np.maximum(k - 1, 0).sum())
    dsp = lut = mults = bram = 0
    extra = 0
    ii = 1
    note = ""
    t_mult = 0.0
    dsp_products = 0

    if strategy.startswith("resource"):
        # weights in a ROM (depth rf), ceil(n_in*n_out/rf) general multipliers, sequential accumulation
        n_hw = math.ceil(n_in * n_out / rf)
        mults = n_hw
        dsp, lut, t_mult = _general_multipliers(n_hw, x, wn)
        lut += int(n_hw * adder_bits * LUT_PER_ADDER_BIT)  # accumulators
        rom_bits = n_in * n_out * wn.type.width
        if rf >= ROM_BRAM_MIN_DEPTH and rom_bits >= ROM_BRAM_MIN_BITS:
            bram = _bram18(rf, n_hw * wn.type.width)
        else:  # LUT ROM: 64 words per LUT6
            lut += int(math.ceil(rf / 64) * n_hw * wn.type.width)
        ii = rf
        extra = rf - 1
        ops = [_Op(t_mult, 0 if dsp else n_hw * prod_bits), _Op(_t_add(adder_bits), n_out * adder_bits)]
        note = f"resource RF={rf}, weights {rom_bits} bits in {'BRAM' if bram else 'LUT ROM'}"
        ff = n_out * adder_bits + n_hw * prod_bits  # accumulators + multiplier operand registers
        return _MatMul(dsp, lut, mults, ops, ii, extra, bram, note, ff)

    a = np.abs(q[nz]) if wn.kind == "fixed" else np.ones(nnz, dtype=np.int64)
    tz = a & -a
    m = a // np.maximum(tz, 1)
    bits = _bit_length(m) + (1 if wn.type.signed else 0)
    csd = _csd_digits(m)
    is_shift = m <= 1
    if wn.kind in ("binary", "exponent") or (wn.kind == "fixed" and wn.type.width <= 2):
        is_shift = np.ones_like(is_shift, dtype=bool)

    if rf > 1 and not strategy.startswith("distributed"):
        # shared general multipliers behind rf:1 multiplexers (constants no longer specialised)
        n_real = int((~is_shift).sum())
        n_hw = math.ceil(n_real / rf)
        mults = n_hw
        dsp, lut, t_mult = _general_multipliers(n_hw, x, wn)
        mux_bits = n_hw * (wn.type.width + x.type.width * math.ceil((rf - 1) / 3))
        lut += int(mux_bits * LUT_PER_MUX_BIT)
        lut += int(math.ceil(n_adders / rf) * adder_bits * LUT_PER_ADDER_BIT)
        lut += int(n_out * adder_bits * LUT_PER_MUX_BIT)  # accumulator feedback muxes
        ii = rf
        extra = rf - 1
        t_mult += T_MUX_NS
        note = f"RF={rf}: {n_hw} shared multipliers"
    else:
        allow_dsp = not strategy.startswith("distributed") and wn.kind == "fixed" and x.kind == "fixed"
        to_dsp = (~is_shift) & _dsp_width_ok(x.type.width, bits) & (csd >= DSP_MIN_CSD) & allow_dsp
        to_lut = (~is_shift) & ~to_dsp
        dsp = int(sum(_dsp_slices(x.type.width, int(b)) for b in bits[to_dsp])) if to_dsp.any() else 0
        # in fabric: a constant with two CSD digits is one adder (x << i +/- x << j); one with more digits a
        # LUT multiplier core, proportional to x_bits * b
        shift_add = to_lut & (csd <= 2)
        core = to_lut & (csd > 2)
        lut += int((LUT_PER_ADDER_BIT * (x.type.width + bits[shift_add])).sum())
        lut += int((x.type.width * bits[core] * LUT_PER_CONST_MULT_BIT2).sum())
        mults = int(to_dsp.sum() + to_lut.sum())
        dsp_products = int(to_dsp.sum())
        if to_dsp.any():
            t_mult = T_DSP_NS
        if to_lut.any():
            t_lut = _log2c(int(csd[to_lut].max())) * _t_add(x.type.width + int(bits[to_lut].max()))
            t_mult = max(t_mult, t_lut)
        if wn.kind == "binary":
            lut += int(nnz * x.type.width * LUT_PER_MUX_BIT)  # +/- x selection
            t_mult = T_MUX_NS
        note = "" if strategy == "latency" else strategy
        if nnz < q.size:
            note = (note + " " if note else "") + f"{q.size - nnz}/{q.size} weights zero"

    # one adder per DSP product goes into the DSP48 post-adder (multiply-accumulate cascade)
    lut += int(max(n_adders - dsp_products, 0) * adder_bits * LUT_PER_ADDER_BIT)
    # products: DSP outputs are registered inside the DSP48, LUT/shift products in fabric
    fabric_products = (mults if not dsp else 0) if rf > 1 else nnz - dsp_products
    ops = [_Op(t_mult, max(fabric_products, 0) * adder_bits)]
    # adder tree levels: live partial sums halve per level
    live = int(k.sum())
    for _ in range(_log2c(k_max)):
        live = int(np.ceil(k / 2).sum()) if live else 0
        k = np.ceil(k / 2)
        ops.append(_Op(_t_add(adder_bits), max(live, n_out) * adder_bits))
    if out.rounds or out.saturates:
        ops.append(_Op(_t_add(out.type.width) if out.rounds else T_MUX_NS, n_out * out.type.width))
    out_bits = out.type.width if (out.rounds or out.saturates) else adder_bits
    ops[-1].live_bits = n_out * min(adder_bits, out_bits)
    ff = (n_out * adder_bits + mults * prod_bits) if rf > 1 else 0
    if "float" in (x.kind, wn.kind):
        note = (note + "; " if note else "") + "floating-point types not modelled"
    return _MatMul(dsp, lut, mults, ops, ii, extra, bram, note.strip(), ff)


def _attr(layer: Any, key: str, default: Any = None) -> Any:
    try:
        val = layer.get_attr(key, default)
    except Exception:  # noqa: BLE001 - hls4ml layers raise various errors for odd attributes
        return default
    return default if val is None else val


def _weights(layer: Any, name: str) -> tuple[np.ndarray | None, Operand | None]:
    var = getattr(layer, "weights", {}).get(name)
    if var is None:
        return None, None
    return np.asarray(var.data), _operand(getattr(var.type, "precision", None))


def _acc_operand(layer: Any, fallback: Operand) -> Operand:
    acc = _attr(layer, "accum_t")
    return _operand(getattr(acc, "precision", None)) if acc is not None else fallback


def _io_operands(layer: Any) -> tuple[Operand, Operand]:
    try:
        x = _tensor_operand(layer.get_input_variable())
    except Exception:  # noqa: BLE001 - input layers have no input variable
        x = _DEFAULT
    return x, _tensor_operand(layer.get_output_variable())


def _shape(var: Any) -> list[int]:
    return [int(s) for s in getattr(var, "shape", [])]


def _stream_pack(layer: Any) -> int:
    """Elements per stream packet of the layer's input (walks back through Reshape/Flatten)."""
    node = layer.get_input_node()
    while node is not None and type(node).__name__.endswith(("Reshape", "Flatten")):
        node = node.get_input_node()
    if node is None:
        return 1
    shape = _shape(node.get_output_variable())
    return max(shape[-1], 1) if shape else 1


# ---------------------------------------------------------------------------------------------------------
# Per-layer handlers: ``@layer_cost("Dense", "QDense")`` registers a function (layer, io_stream) -> LayerCost
# for hls4ml layers of those class names (the ``class_name`` of the layer, else its hls4ml class).
# ---------------------------------------------------------------------------------------------------------
LayerHandler = Callable[[Any, bool], LayerCost]
_HANDLERS: dict[str, LayerHandler] = {}


def layer_cost(*names: str) -> Callable[[LayerHandler], LayerHandler]:
    """Register the decorated function as the cost model of the hls4ml layers called ``names``."""

    def register(handler: LayerHandler) -> LayerHandler:
        for name in names:
            if name in _HANDLERS:
                raise ValueError(f"two cost models for hls4ml layer {name!r}")
            _HANDLERS[name] = handler
        return handler

    return register


def handler_for(layer: Any) -> LayerHandler | None:
    """The cost model of ``layer``: by its ``class_name`` (e.g. QDense), else by its hls4ml class (Dense)."""
    kind = str(getattr(layer, "class_name", ""))
    return _HANDLERS.get(kind) or _HANDLERS.get(type(layer).__name__)


def _layer_model(layer: Any, io_stream: bool) -> LayerCost:
    handler = handler_for(layer)
    if handler is None:
        return _not_modelled(layer, f"layer type {_kind(layer)}", " (counted as zero)")
    return handler(layer, io_stream)


def _kind(layer: Any) -> str:
    return str(getattr(layer, "class_name", type(layer).__name__))


def _not_modelled(layer: Any, why: str, tail: str = "") -> LayerCost:
    """Zero cost and a note (``estimate`` lists every layer whose note says "not modelled")."""
    sep = " " if tail else "; "
    return LayerCost(LayerEstimate(layer.name, _kind(layer), note=f"{why}{sep}not modelled{tail}"), [])


def _kernel_operands(layer: Any) -> tuple[Operand, Operand, np.ndarray, Operand, np.ndarray | None] | None:
    """(input, output, weights, weight type, bias) of a layer with a kernel; None without weights."""
    w, wn = _weights(layer, "weight")
    if w is None:
        return None
    b, _ = _weights(layer, "bias")
    x, out = _io_operands(layer)
    return x, out, w, wn, b


def _distributed_arithmetic(layer: Any, n_in: int) -> LayerCost | None:
    """A Dense/Conv kernel hls4ml built with distributed arithmetic (its weights now live in generated
    logic): da4ml's LUT figure, no DSP, an adder tree of ``ceil(log2 n_in) + 1`` levels; None otherwise."""
    cost = _attr(layer, "da_kernel_cost")
    if cost is None or str(_attr(layer, "strategy", "")).lower() != "distributed_arithmetic":
        return None
    _, out = _io_operands(layer)
    lut = int(round(float(cost)))
    width = out.type.width
    live = int(_attr(layer, "n_out", 1)) * width  # registers at a cycle boundary: the outputs' width
    ops = [_Op(_t_add(width), live) for _ in range(_log2c(max(n_in, 1)) + 1)]
    note = f"distributed arithmetic (da4ml cost {lut})"
    return LayerCost(LayerEstimate(layer.name, layer.class_name, 0, lut, 0, 0, ii=1, mults=0, note=note), ops)


@layer_cost("Dense", "QDense", "BinaryDense", "TernaryDense", "EinsumDense")
def _dense(layer: Any, io_stream: bool) -> LayerCost:
    if (da := _distributed_arithmetic(layer, int(_attr(layer, "n_in", 1)))) is not None:
        return da
    if (operands := _kernel_operands(layer)) is None:
        return _not_modelled(layer, "no weights found")
    x, out, w, wn, b = operands
    name, kind = layer.name, layer.class_name
    n_in = int(_attr(layer, "n_in", w.shape[0]))
    w2d = w.reshape(n_in, -1)
    acc = _acc_operand(layer, out)
    mm = _matmul(w2d, b, x, wn, acc, out, _attr(layer, "reuse_factor", 1), _attr(layer, "strategy"))
    est = LayerEstimate(name, kind, mm.dsp, mm.lut, mm.ff, mm.bram, ii=mm.ii, mults=mm.mults, note=mm.note)
    lay = LayerCost(est, mm.ops, extra_cycles=mm.extra_cycles)
    if io_stream:
        pack = _stream_pack(layer)
        lay.stream_packets = max(1, math.ceil(n_in / pack))
        lay.first_packets = lay.stream_packets
    return lay


@layer_cost(
    "Conv", "Conv1D", "Conv2D", "QConv1D", "QConv2D", "BinaryConv2D", "PointwiseConv1D", "PointwiseConv2D",
    "Conv2DBatchnorm", "QConv2DBatchnorm",
)
def _conv(layer: Any, io_stream: bool) -> LayerCost:
    n_window = int(_attr(layer, "n_chan", 1)) * int(_attr(layer, "filt_height", 1))
    n_window *= int(_attr(layer, "filt_width", 1))
    out_pixels = int(_attr(layer, "out_height", 1)) * int(_attr(layer, "out_width", 1))
    n_part = int(_attr(layer, "n_partitions", out_pixels) or out_pixels)
    copies = max(1, out_pixels // max(n_part, 1))  # io_parallel: the window product, once per pixel of a partition
    if (da := _distributed_arithmetic(layer, n_window)) is not None:
        if io_stream:
            return da
        da.est.lut *= copies
        da.est.ii = n_part
        da.est.note = f"{n_part} partitions x {copies} px; {da.est.note}"
        return LayerCost(da.est, da.ops, extra_cycles=n_part - 1, copies=copies)
    if (operands := _kernel_operands(layer)) is None:
        return _not_modelled(layer, "no weights found")
    x, out, w, wn, b = operands
    name, kind = layer.name, layer.class_name
    n_filt = int(_attr(layer, "n_filt", w.shape[-1]))
    n_chan = int(_attr(layer, "n_chan", 1))
    kh = int(_attr(layer, "filt_height", 1))
    kw = int(_attr(layer, "filt_width", 1))
    in_h, in_w = int(_attr(layer, "in_height", 1)), int(_attr(layer, "in_width", 1))
    out_h, out_w = int(_attr(layer, "out_height", 1)), int(_attr(layer, "out_width", 1))
    rf = int(_attr(layer, "reuse_factor", 1))
    w2d = w.reshape(-1, n_filt)
    mm = _matmul(w2d, b, x, wn, _acc_operand(layer, out), out, rf, _attr(layer, "strategy"))
    if io_stream:
        # line buffer: (kh - 1) rows x n_chan shift registers of in_w words (SRL32 LUTs)
        lb_lut = (kh - 1) * n_chan * x.type.width * math.ceil(in_w / 32) if kh > 1 else 0
        lb_ff = kh * kw * n_chan * x.type.width  # kernel window registers
        est = LayerEstimate(
            name, kind, mm.dsp, mm.lut + lb_lut, lb_ff + mm.ff, mm.bram, ii=mm.ii, mults=mm.mults
        )
        est.note = f"line buffer, {in_h * in_w} px/inference" + (f"; {mm.note}" if mm.note else "")
        lay = LayerCost(est, mm.ops, stream_packets=in_h * in_w, stream_ii=mm.ii)
        lay.first_packets = (kh - 1) * in_w + kw
        return lay
    est = LayerEstimate(
        name,
        kind,
        mm.dsp * copies,
        mm.lut * copies,
        mm.ff * copies + out_h * out_w * n_filt * out.type.width,  # the complete output array is registered
        mm.bram,
        ii=n_part * mm.ii,
        mults=mm.mults * copies,
        note=f"{n_part} partitions x {copies} px" + (f"; {mm.note}" if mm.note else ""),
    )
    return LayerCost(est, mm.ops, extra_cycles=(n_part - 1) * mm.ii + mm.extra_cycles, copies=copies)


@layer_cost(
    "BatchNormalization", "QBatchNormalization", "ApplyAlpha", "BatchNormOnnx",
    "BatchNormalizationQuantizedTanh",
)
def _batchnorm(layer: Any, io_stream: bool) -> LayerCost:
    x, out = _io_operands(layer)
    scale, sn = _weights(layer, "scale")
    bias, _ = _weights(layer, "bias")
    name, kind = layer.name, layer.class_name
    if scale is None:
        return _not_modelled(layer, "no scale found")
    n = int(_attr(layer, "n_in", scale.size))
    n_filt = int(_attr(layer, "n_filt", -1))
    per_packet = n_filt if (io_stream and n_filt and n_filt > 0) else n
    scale = np.resize(scale.reshape(-1), per_packet)
    bias_v = None if bias is None else np.resize(bias.reshape(-1), per_packet)
    # y_i = x_i * s_i + b_i: a diagonal matrix-vector product
    diag = np.diag(scale)
    mm = _matmul(diag, bias_v, x, sn, out, out, 1, "latency")
    est = LayerEstimate(name, kind, mm.dsp, mm.lut, 0, 0, mults=mm.mults, note="scale and shift")
    lay = LayerCost(est, mm.ops)
    if io_stream:
        lay.stream_packets = max(1, n // max(per_packet, 1))
    return lay


def _table_rom(n_reads: int, size: int, width: int) -> tuple[int, int, bool]:
    """(bram, lut, in_bram) of a lookup table read n_reads times per cycle."""
    bits = size * width
    if bits >= ROM_BRAM_MIN_BITS:
        return math.ceil(n_reads / 2) * _bram18(size, width), 0, True
    return 0, n_reads * width * math.ceil(size / 64), False


@layer_cost(
    "Activation", "QActivation", "HardActivation", "ParametrizedActivation", "Softmax",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU",
)
def _activation(layer: Any, io_stream: bool) -> LayerCost:
    x, out = _io_operands(layer)
    name, kind = layer.name, layer.class_name
    act = str(_attr(layer, "activation", kind)).lower()
    shape = _shape(layer.get_output_variable())
    n_total = int(np.prod(shape)) if shape else int(_attr(layer, "n_in", 1))
    n = shape[-1] if (io_stream and shape) else n_total
    packets = max(1, n_total // max(n, 1)) if io_stream else 1
    est = LayerEstimate(name, kind)
    ops: list[_Op] = []
    if "softmax" in act or kind == "Softmax":
        impl = str(_attr(layer, "implementation", "stable")).lower()
        n = int(_attr(layer, "n_in", n)) if not io_stream else n
        table = int(_attr(layer, "table_size", 1024))
        exp_t = _operand(getattr(_attr(layer, "exp_table_t"), "precision", None))
        inv_t = _operand(getattr(_attr(layer, "inv_table_t"), "precision", None))
        if impl == "argmax":
            est.lut = int((n - 1) * x.type.width * LUT_PER_ADDER_BIT + n * LUT_PER_MUX_BIT)
            ops = [_Op(_t_add(x.type.width), n * x.type.width) for _ in range(_log2c(n))]
        else:
            b1, l1, in_bram1 = _table_rom(n, table, exp_t.type.width)
            b2, l2, in_bram2 = _table_rom(1, table, inv_t.type.width)
            est.bram, est.lut = b1 + b2, l1 + l2
            est.lut += int(((n - 1) * 2 + n) * x.type.width * LUT_PER_ADDER_BIT)  # max tree, subtract
            est.lut += int((n - 1) * exp_t.type.width * LUT_PER_ADDER_BIT)  # sum tree
            prod = exp_t.type.width * inv_t.type.width
            if _dsp_width_ok(exp_t.type.width, inv_t.type.width):
                est.dsp = n * _dsp_slices(exp_t.type.width, inv_t.type.width)
            else:
                est.lut += int(n * prod * LUT_PER_VAR_MULT_BIT2)
            est.mults = n
            if impl == "stable":
                ops += [_Op(_t_add(x.type.width), n * x.type.width) for _ in range(_log2c(n))]
            ops.append(_Op(_t_add(x.type.width), n * x.type.width))
            ops.append(_Op(cycles=ROM_BRAM_CYCLES) if in_bram1 else _Op(ROM_LUT_NS, n * exp_t.type.width))
            ops += [_Op(_t_add(exp_t.type.width), n * exp_t.type.width) for _ in range(_log2c(n))]
            ops.append(_Op(cycles=ROM_BRAM_CYCLES) if in_bram2 else _Op(ROM_LUT_NS, n * exp_t.type.width))
            ops.append(_Op(T_DSP_NS if est.dsp else _t_add(exp_t.type.width), n * out.type.width))
        est.note = f"{impl}, tables {table} entries"
    elif act in ("relu", "linear", "relu6") or act.startswith(("quantized_relu", "relu")):
        if act == "linear" and out.type.width >= x.type.width and not (out.rounds or out.saturates):
            est.note = "pass-through"
        else:
            est.lut = int(n * out.type.width * LUT_PER_MUX_BIT)
            ns = T_MUX_NS
            if out.rounds and out.type.frac < x.type.frac:
                est.lut += int(n * out.type.width * LUT_PER_ADDER_BIT)
                ns += _t_add(out.type.width)
            if out.saturates and out.type.integer < x.type.integer:
                est.lut += int(n * (x.type.integer - out.type.integer + 1) * LUT_PER_MUX_BIT)
                ns += T_MUX_NS
            ops = [_Op(ns, n * out.type.width)]
    elif act in ("leakyrelu", "leaky_relu", "elu", "selu", "prelu", "thresholdedrelu"):
        est.lut = int(n * (x.type.width * 2 + out.type.width) * LUT_PER_MUX_BIT)
        ops = [_Op(_t_add(x.type.width) + T_MUX_NS, n * out.type.width)]
        est.note = "per-element constant multiply + select"
    elif act in ("hard_sigmoid", "hard_tanh", "hardsigmoid", "hardtanh", "binary_tanh", "ternary_tanh"):
        est.lut = int(n * (x.type.width * LUT_PER_ADDER_BIT + out.type.width * LUT_PER_MUX_BIT))
        ops = [_Op(_t_add(x.type.width) + T_MUX_NS, n * out.type.width)]
    else:
        table = int(_attr(layer, "table_size", 1024))
        tw = _operand(getattr(_attr(layer, "table_t"), "precision", None)).type.width
        est.bram, est.lut, in_bram = _table_rom(n, table, tw)
        est.lut += int(n * x.type.width * LUT_PER_ADDER_BIT)  # index computation
        ops = [_Op(_t_add(x.type.width), n * x.type.width)]
        ops.append(_Op(cycles=ROM_BRAM_CYCLES) if in_bram else _Op(ROM_LUT_NS, n * out.type.width))
        est.note = f"{act} lookup table {table} x {tw} bits"
    return LayerCost(est, ops, stream_packets=packets)


@layer_cost(
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "Pooling1D", "Pooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalPooling1D", "GlobalPooling2D",
)
def _pooling(layer: Any, io_stream: bool) -> LayerCost:
    x, out = _io_operands(layer)
    name, kind = layer.name, layer.class_name
    op = str(_attr(layer, "pool_op", "Max")).lower()
    n_filt = int(_attr(layer, "n_filt", 1))
    ph, pw = (
        int(_attr(layer, "pool_height", 1)),
        int(_attr(layer, "pool_width", _attr(layer, "pool_size", 1))),
    )
    if "global" in kind.lower():
        in_shape = _shape(layer.get_input_variable())
        ph, pw = (int(np.prod(in_shape[:-1])) if in_shape else 1), 1
    k = max(ph * pw, 1)
    in_h, in_w = int(_attr(layer, "in_height", 1)), int(_attr(layer, "in_width", _attr(layer, "n_in", 1)))
    out_h, out_w = (
        int(_attr(layer, "out_height", 1)),
        int(_attr(layer, "out_width", _attr(layer, "n_out", 1))),
    )
    per_out = (k - 1) * x.type.width * (LUT_PER_ADDER_BIT + (LUT_PER_MUX_BIT if op == "max" else 0))
    ops = [
        _Op(_t_add(x.type.width) + (T_MUX_NS if op == "max" else 0), n_filt * x.type.width)
        for _ in range(_log2c(k))
    ]
    if op == "average" and k & (k - 1):
        ops.append(_Op(T_DSP_NS, n_filt * out.type.width))
    if io_stream:
        if "global" in kind.lower():  # sequential accumulation over the pixels
            per_out = x.type.width * (LUT_PER_ADDER_BIT + LUT_PER_MUX_BIT)
            ops = ops[:1]
        lut = int(n_filt * per_out + max(ph - 1, 0) * n_filt * x.type.width * math.ceil(in_w / 32))
        ff = k * n_filt * x.type.width
        est = LayerEstimate(name, kind, 0, lut, ff, 0, note=f"{op} {ph}x{pw}, line buffer")
        return LayerCost(est, ops, stream_packets=max(in_h * in_w, 1), first_packets=(ph - 1) * in_w + pw)
    n_out = max(out_h * out_w, 1) * n_filt
    est = LayerEstimate(name, kind, 0, int(n_out * per_out), 0, 0, note=f"{op} {ph}x{pw}")
    return LayerCost(est, ops, copies=max(n_out // max(n_filt, 1), 1))


@layer_cost(*MERGE_LAYERS, "Dot", "Merge")
def _merge(layer: Any, io_stream: bool) -> LayerCost:
    x, out = _io_operands(layer)
    name, kind = layer.name, layer.class_name
    op = str(_attr(layer, "op", kind)).lower()
    shape = _shape(layer.get_output_variable())
    n = (shape[-1] if io_stream else int(np.prod(shape))) if shape else 1
    est = LayerEstimate(name, kind)
    ops: list[_Op] = []
    if "concat" in op:
        est.note = "wiring"
    elif "mul" in op or "dot" in op:
        est.mults = n
        if _dsp_width_ok(x.type.width, x.type.width):
            est.dsp = n * _dsp_slices(x.type.width, x.type.width)
        else:
            est.lut = int(n * x.type.width * x.type.width * LUT_PER_VAR_MULT_BIT2)
        ops = [_Op(T_DSP_NS, n * out.type.width)]
    else:
        est.lut = int(n * out.type.width * LUT_PER_ADDER_BIT)
        ops = [_Op(_t_add(out.type.width), n * out.type.width)]
    packets = max(1, int(np.prod(shape)) // max(n, 1)) if (io_stream and shape) else 1
    return LayerCost(est, ops, stream_packets=packets)


@layer_cost(
    "DepthwiseConv1D", "DepthwiseConv2D", "QDepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D", "QSeparableConv1D", "QSeparableConv2D",
)
def _depthwise_or_separable(layer: Any, io_stream: bool) -> LayerCost:
    lay = _conv(layer, io_stream)
    lay.est.note = (lay.est.note + "; " if lay.est.note else "") + "depthwise/separable approximated as conv"
    return lay


@layer_cost(
    "Input", "InputLayer", "Reshape", "Flatten", "Transpose", "ZeroPadding1D", "ZeroPadding2D",
    "Cropping1D", "Cropping2D", "Repack", "Constant", "Linear",
)
def _free(layer: Any, io_stream: bool) -> LayerCost:
    """Re-interpretations and wiring: no hardware."""
    return LayerCost(LayerEstimate(layer.name, _kind(layer)), [])


def _fifo_cost(layer: Any) -> tuple[int, int, int]:
    """(bram, lut, ff) of the stream FIFO a layer writes (io_stream)."""
    var = layer.get_output_variable()
    pragma = getattr(var, "pragma", None)
    if not (isinstance(pragma, tuple) and pragma and pragma[0] == "stream"):
        return 0, 0, 0
    depth = int(pragma[1]) if len(pragma) > 1 and pragma[1] else 1
    shape = _shape(var)
    channels = shape[-1] if shape else 1
    width = _tensor_operand(var).type.width
    if depth > FIFO_SRL_MAX_DEPTH:
        return channels * _bram18(depth, width), 0, channels * 2 * (_log2c(depth) + 1)
    return (
        0,
        channels * width * math.ceil(depth / 32) if depth > 2 else 0,
        channels * (width if depth <= 2 else 7),
    )


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------
def _clock(hls_model: Any) -> tuple[float, float, str]:
    cfg = hls_model.config
    period = float(cfg.get_config_value("ClockPeriod", 5) or 5)
    backend = str(cfg.get_config_value("Backend", "Vitis") or "Vitis").lower()
    unc = cfg.get_config_value("ClockUncertainty", None)
    frac = DEFAULT_UNCERTAINTY["vitis" if "vitis" in backend else "vivado"]
    if unc is not None:
        text = str(unc).strip()
        try:
            frac = float(text.rstrip("%")) / 100 if text.endswith("%") else float(text) / period
        except ValueError:
            pass
    return period, min(max(frac, 0.0), 0.9), backend


def estimate(hls_model: Any) -> Estimate:
    """Estimate resources and latency of a converted hls4ml ``ModelGraph`` (no compile, no vendor tools)."""
    if not hasattr(hls_model, "graph") or not hasattr(hls_model, "config"):
        raise TrigflowError(
            "estimate() needs a converted hls4ml ModelGraph; convert the model with hls4ml first"
        )
    period, unc, _backend = _clock(hls_model)
    t_eff = period * (1.0 - unc)
    io_type = str(hls_model.config.get_config_value("IOType", "io_parallel") or "io_parallel")
    io_stream = io_type == "io_stream"
    layers = [_layer_model(layer, io_stream) for layer in hls_model.graph.values()]

    if io_stream:
        total, ii = _schedule_stream(hls_model, layers, t_eff)
    else:
        total, ii = _schedule_parallel(layers, t_eff)

    ests = [lay.est for lay in layers]
    notes = [f"{e.name}: {e.note}" for e in ests if "not modelled" in e.note]
    return Estimate(
        layers=ests,
        latency_cycles=int(total),
        ii=int(ii),
        clock_period_ns=period,
        io_type=io_type,
        part=str(hls_model.config.get_config_value("Part", "") or ""),
        notes=notes,
    )


def _schedule_parallel(layers: list[LayerCost], t_eff: float) -> tuple[int, int]:
    """One pipelined chain through all layers; per-layer share of cycles and registers."""
    sched = _Scheduler(t_eff)
    total = PARALLEL_IO_CYCLES
    for lay in layers:
        ff_before = sched.ff_bits
        cycles = sched.run(lay.ops) + lay.extra_cycles
        sched.cycles += lay.extra_cycles
        lay.est.latency_cycles = cycles
        lay.est.ff += int((sched.ff_bits - ff_before) * FF_PER_LIVE_BIT * lay.copies)
        total += cycles
    total += sched.close()
    ii = max([lay.est.ii for lay in layers] + [1])
    return total, ii


def _schedule_stream(hls_model: Any, layers: list[LayerCost], t_eff: float) -> tuple[int, int]:
    """Dataflow: each layer a process handling its packets; a process ends no earlier than its producer.

    A process starts when its producer emits the first packet it needs and, keeping pace with the
    producer, ends ``STREAM_TAIL_CYCLES`` after it (HLS dataflow latency model); a slower process ends
    ``packets * II + depth`` after it starts.
    """
    finish: dict[str, int] = {}
    first: dict[str, int] = {}
    by_name = dict(zip(hls_model.graph.keys(), layers, strict=True))
    boundary = set(getattr(hls_model, "inputs", []) or []) | set(getattr(hls_model, "outputs", []) or [])
    total = 0
    ii = 1
    for name, node in hls_model.graph.items():
        lay = by_name[name]
        ins = [i for i in (getattr(node, "inputs", None) or []) if i in finish]
        start = max([first[i] for i in ins] + [0])
        prev_finish = max([finish[i] for i in ins] + [0])
        if name not in boundary:  # top-level ports are interfaces, not FIFOs
            bram, lut, ff = _fifo_cost(node)
            lay.est.bram += bram
            lay.est.lut += lut
            lay.est.ff += ff
        if not lay.ops:
            # pure re-interpretation (input, reshape, flatten): passes timing through
            finish[name], first[name] = prev_finish, start
            lay.est.latency_cycles = 0
            continue
        sched = _Scheduler(t_eff)
        depth = sched.run(lay.ops) + sched.close() + lay.extra_cycles + STREAM_IO_CYCLES
        lay.est.ff += int(sched.ff_bits * FF_PER_LIVE_BIT * lay.copies)
        per = max(lay.stream_ii, 1)
        duration = (lay.stream_packets - 1) * per + depth + 1
        end = max(start + duration, prev_finish + STREAM_TAIL_CYCLES)
        finish[name] = end
        first[name] = start + (lay.first_packets - 1) * per + depth
        lay.est.latency_cycles = end - prev_finish
        lay.est.ii = duration
        total = max(total, end)
        ii = max(ii, duration)
    return total, ii


def estimate_project(path: str | Path) -> Estimate:
    """Estimate a project folder written by hls4ml that holds the serialized graph ``model.fml``."""
    root = Path(path)
    if root.is_file() and root.suffix == ".fml":
        fml = root
    else:
        if not root.is_dir():
            raise TrigflowError(
                f"{root} is not a folder; pass the hls4ml project folder (it holds model.fml)"
            )
        fml = root / "model.fml"
        if not fml.is_file():
            found = sorted(root.glob("*.fml"))
            if not found:
                raise TrigflowError(
                    f"no model.fml in {root}; re-run the convert stage (it saves the hls4ml graph there)"
                )
            fml = found[0]
    try:
        from hls4ml.utils.serialization import deserialize_model
    except ImportError as exc:  # pragma: no cover - hls4ml is a hard dependency
        raise TrigflowError(f"hls4ml is not importable ({exc}); install trigflow's dependencies") from exc
    try:
        with tempfile.TemporaryDirectory(prefix="trigflow_fml_") as scratch:  # testbench files land here
            model = deserialize_model(fml, output_dir=scratch)
    except Exception as exc:  # noqa: BLE001 - hls4ml raises many kinds here
        raise TrigflowError(
            f"cannot read {fml}: {type(exc).__name__}: {exc}; write it with hls4ml 1.3 ModelGraph.save"
        ) from exc
    return estimate(model)


from trigflow.firmware import estimate_recurrent  # noqa: E402,F401 - registers the GRU/LSTM cost model
