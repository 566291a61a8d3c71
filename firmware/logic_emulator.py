"""Firmware layer: da4ml's combinational logic compiled to native code, an exact emulator of the RTL's arithmetic.

da4ml's interpreter runs a traced design op by op. Here every op becomes one line of C++ instead. Each value
is an int64 on its op's grid (value = n · 2⁻ᶠ, with f from da4ml's minimal (k, i, f)), and each line acts
on 8 samples at once through GCC vector types. g++ compiles the file once per design (``compile_logic``).
The result runs the same integer arithmetic as the Verilog da4ml writes from that logic.

The op semantics follow ``da4ml.cmvm.types.CombLogic.__call__``: add/sub with shift, relu with wrap,
quantize with TRN and WRAP, constant add, constant, MSB mux, multiply, lookup. Inputs are taken as
``quantize=True`` takes them, with TRN and WRAP onto the input op's grid. A design whose values would not fit
62 bits is refused (``EmulatorUnsupported``), and callers then keep another engine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EmulatorUnsupported", "LogicEmulator", "compile_logic", "emulator_source"]

LANES = 8  # int64 lanes: two 256-bit registers per value (4 and 16 measured slower)
OPS_PER_FUNCTION = 500  # g++'s time grows faster than linearly with a function's length
MAX_BITS = 62
CXXFLAGS = ("-O1", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++20")  # C++20: << of negatives


class EmulatorUnsupported(ValueError):
    """The logic holds something the compiled emulator does not express (a too-wide value, an unknown op)."""


def _kif(qint) -> tuple[int, int, int]:
    from da4ml.cmvm.types import _minimal_kif

    k, i, f = _minimal_kif(qint)
    return int(k), int(i), int(f)


def _shift(expr: str, d: int) -> str:
    """``expr`` · 2^d on integers: a left shift, or a floor (arithmetic right) shift."""
    if d == 0:
        return f"({expr})"
    return f"(({expr}) << {d})" if d > 0 else f"(({expr}) >> {-d})"


def _integer(value: Fraction, what: str) -> int:
    if value.denominator != 1:
        raise EmulatorUnsupported(f"{what} is not on its grid ({value})")
    return int(value)


def _bits_at(qint, f: int) -> int:
    """Bits (sign included) of the largest |value| of ``qint`` written as an integer at 2⁻ᶠ."""
    top = max(abs(Fraction(qint.min)), abs(Fraction(qint.max))) * Fraction(2) ** f
    return int(top).bit_length() + 1


def _check_width(qint, f: int, where: str) -> None:
    if _bits_at(qint, f) > MAX_BITS:
        raise EmulatorUnsupported(f"{where} needs more than {MAX_BITS} bits at 2^-{f}")


def _check_widening(qint, f0: int, f: int, where: int) -> None:
    if _bits_at(qint, f0) + max(0, f - f0) > MAX_BITS:
        raise EmulatorUnsupported(f"op {where} widens its operand beyond {MAX_BITS} bits")


def _wrap(var: str, k: int, i: int, f: int) -> str:
    """Two's-complement wrap of an integer at 2⁻ᶠ onto k sign bits, i integer and f fraction bits."""
    bits = k + i + f
    if bits <= 0:
        return "V{}"
    if bits >= 63:
        return var
    mask = (1 << bits) - 1
    if k:
        half = 1 << (bits - 1)
        return f"((({var}) + {half}L) & {mask}L) - {half}L"
    return f"(({var}) & {mask}L)"


def emulator_source(logic) -> str:
    """The C++ source of ``logic``'s emulator: ``run(x, y, n, threads)`` with float64 rows in and out."""
    ops = logic.ops
    kifs = [_kif(op.qint) for op in ops]
    n_in, n_out = logic.shape
    lines: list[str] = []
    tables: list[str] = []
    for idx, op in enumerate(ops):
        k, i, f = kifs[idx]
        dst = f"t[{idx}]"
        code = op.opcode
        if code == -1:
            shift = int(logic.inp_shifts[op.id0]) + f
            _check_width(op.qint, f, f"input {op.id0}")
            scale = float(2.0**shift)
            lines.append(f"{{ V r = load(x, base, n, {n_in}, {op.id0}, {scale!r}); {dst} = {_wrap('r', k, i, f)}; }}")
        elif code in (0, 1):
            f0, f1 = kifs[op.id0][2], kifs[op.id1][2] - op.data
            common = max(f0, f1, f)
            _check_width(op.qint, common, f"op {idx}")
            for src, fs in ((op.id0, f0), (op.id1, f1)):
                if _bits_at(ops[src].qint, kifs[src][2]) + common - fs > MAX_BITS:
                    raise EmulatorUnsupported(f"op {idx} aligns op {src} beyond {MAX_BITS} bits")
            sign = "+" if code == 0 else "-"
            total = f"{_shift(f't[{op.id0}]', common - f0)} {sign} {_shift(f't[{op.id1}]', common - f1)}"
            lines.append(f"{dst} = {_shift(total, f - common)};")
        elif code in (2, -2):
            f0 = kifs[op.id0][2]
            neg = "-" if code == -2 else ""
            _check_widening(ops[op.id0].qint, f0, f, idx)
            lines.append(
                f"{{ V r = {neg}t[{op.id0}]; r = r & (r > 0); r = {_shift('r', f - f0)}; "
                f"{dst} = {_wrap('r', 0, i, f)}; }}"
            )
        elif code in (3, -3):
            f0 = kifs[op.id0][2]
            neg = "-" if code == -3 else ""
            _check_widening(ops[op.id0].qint, f0, f, idx)
            lines.append(f"{{ V r = {_shift(f'{neg}t[{op.id0}]', f - f0)}; {dst} = {_wrap('r', k, i, f)}; }}")
        elif code == 4:
            f0 = kifs[op.id0][2]
            bias = Fraction(op.data) * Fraction(op.qint.step)
            common = max(f0, f)
            _check_width(op.qint, common, f"op {idx}")
            constant = _integer(bias * Fraction(2) ** common, f"the constant of op {idx}")
            aligned = _shift(f"t[{op.id0}]", common - f0)
            lines.append(f"{dst} = {_shift(f'{aligned} + {constant}L', f - common)};")
        elif code == 5:
            constant = _integer(Fraction(op.data) * Fraction(op.qint.step) * Fraction(2) ** f, f"op {idx}")
            lines.append(f"{dst} = V{{}} + {constant}L;")
        elif code in (6, -6):
            id_c = op.data & 0xFFFFFFFF
            shift = (op.data >> 32) & 0xFFFFFFFF
            shift = shift if shift < 0x80000000 else shift - 0x100000000
            qc, (_, ic, fc) = ops[id_c].qint, kifs[id_c]
            if qc.min < 0:
                cond = f"(t[{id_c}] < 0)"
            else:
                threshold = Fraction(2) ** (ic - 1 + fc)
                cond = f"(t[{id_c}] >= {-(-threshold.numerator // threshold.denominator)}L)"
            f0, f1 = kifs[op.id0][2], kifs[op.id1][2] - shift
            for src, fs in ((op.id0, f0), (op.id1, f1)):
                if _bits_at(ops[src].qint, kifs[src][2]) + max(0, f - fs) > MAX_BITS:
                    raise EmulatorUnsupported(f"op {idx} aligns op {src} beyond {MAX_BITS} bits")
            neg = "-" if code == -6 else ""
            a, b = _shift(f"t[{op.id0}]", f - f0), _shift(f"{neg}t[{op.id1}]", f - f1)
            lines.append(f"{{ V m = {cond}; {dst} = ({a} & m) | ({b} & ~m); }}")
        elif code == 7:
            (_, _, f0), (_, _, f1) = kifs[op.id0], kifs[op.id1]
            if _bits_at(ops[op.id0].qint, f0) + _bits_at(ops[op.id1].qint, f1) > MAX_BITS:
                raise EmulatorUnsupported(f"op {idx} multiplies beyond {MAX_BITS} bits")
            lines.append(f"{dst} = {_shift(f't[{op.id0}] * t[{op.id1}]', f - f0 - f1)};")
        elif code == 8:
            table = logic.lookup_tables[op.data]
            q0, f0 = ops[op.id0].qint, kifs[op.id0][2]
            offset = _integer(Fraction(q0.min) * Fraction(2) ** f0, f"the table key of op {idx}")
            from da4ml.trace.fixed_variable import interpret_as

            tk, ti, tf = table.spec.out_kif
            values = [
                _integer(Fraction(float(v)) * Fraction(2) ** f, f"table {op.data}")
                for v in np.atleast_1d(interpret_as(np.asarray(table.table), tk, ti, tf))
            ]
            name = f"table{idx}"
            tables.append(f"static const int64_t {name}[{len(values)}] = {{{', '.join(f'{v}L' for v in values)}}};")
            lines.append(f"for (int l = 0; l < {LANES}; ++l) {dst}[l] = {name}[t[{op.id0}][l] - ({offset}L)];")
        else:
            raise EmulatorUnsupported(f"op {idx} has opcode {code}, which the emulator does not know")
    outputs = []
    for j, (idx, shift, neg) in enumerate(zip(logic.out_idxs, logic.out_shifts, logic.out_negs)):
        if idx < 0:
            outputs.append(f"store(y, base, n, {n_out}, {j}, V{{}}, 0.0);")
            continue
        scale = (-1.0 if neg else 1.0) * 2.0 ** (int(shift) - kifs[idx][2])
        outputs.append(f"store(y, base, n, {n_out}, {j}, t[{idx}], {scale!r});")
    chunks = [lines[start : start + OPS_PER_FUNCTION] for start in range(0, len(lines), OPS_PER_FUNCTION)]
    functions = "\n".join(
        f"__attribute__((noinline)) static void part{j}(V* __restrict t, const double* x, long base, long n) {{\n    "
        + "\n    ".join(chunk)
        + "\n}"
        for j, chunk in enumerate(chunks)
    )
    calls = " ".join(f"part{j}(t, x, base, n);" for j in range(len(chunks)))
    return f"""#include <cmath>
#include <cstdint>
#include <vector>
typedef int64_t V __attribute__((vector_size({8 * LANES})));
{chr(10).join(tables)}
static inline V load(const double* x, long base, long n, int width, int col, double scale) {{
    V r = {{}};
    for (int l = 0; l < {LANES}; ++l)
        if (base + l < n) r[l] = (int64_t)std::floor(x[(base + l) * width + col] * scale);
    return r;
}}
static inline void store(double* y, long base, long n, int width, int col, V v, double scale) {{
    for (int l = 0; l < {LANES}; ++l)
        if (base + l < n) y[(base + l) * width + col] = (double)v[l] * scale;
}}
{functions}
extern "C" void run(const double* x, double* y, long n, int threads) {{
    #pragma omp parallel num_threads(threads)
    {{
        std::vector<V> buffer({max(1, len(ops))});
        V* t = buffer.data();
        #pragma omp for schedule(static)
        for (long base = 0; base < n; base += {LANES}) {{
            {calls}
            {" ".join(outputs)}
        }}
    }}
}}
"""


@dataclass
class LogicEmulator:
    """A compiled emulator: ``predict(x)`` gives one float64 row per sample, as da4ml's interpreter does."""

    library: Path
    shape: tuple[int, int]
    _lib: Any = None

    def __post_init__(self) -> None:
        self._lib = ctypes.CDLL(str(self.library))
        self._lib.run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
        self._lib.run.restype = None

    def predict(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        n_in, n_out = self.shape
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(-1, n_in))
        y = np.empty((len(x), n_out), dtype=np.float64)
        self._lib.run(x.ctypes.data, y.ctypes.data, len(x), int(threads or len(os.sched_getaffinity(0))))
        return y


def _cpu_flags() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line for line in lines if line.startswith("flags")), "")


def compile_logic(logic, folder: str | Path) -> LogicEmulator:
    """Write ``logic``'s emulator into ``folder`` and compile it with g++ (reused when the source is unchanged).
    Raises ``EmulatorUnsupported`` for a design it cannot express, ``RuntimeError`` (with the log path) when
    g++ fails."""
    source = emulator_source(logic)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    built_for = " ".join(CXXFLAGS) + _cpu_flags()  # -march=native: a library built elsewhere is not reused
    digest = hashlib.sha256((source + built_for).encode()).hexdigest()[:16]
    library = folder / f"emulator_{digest}.so"
    if not library.is_file():
        (folder / "emulator.cc").write_text(source)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so")
        os.close(fd)
        done = subprocess.run(
            ["g++", *CXXFLAGS, "-o", tmp, str(folder / "emulator.cc")], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = folder / "emulator.log"
            log.write_text(done.stdout + done.stderr)
            os.unlink(tmp)
            raise RuntimeError(f"g++ could not compile the logic emulator (log: {log})")
        os.replace(tmp, library)
    return LogicEmulator(library, (int(logic.shape[0]), int(logic.shape[1])))
