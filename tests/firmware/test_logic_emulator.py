"""The compiled emulator of da4ml's logic: equal to da4ml's interpreter op by op (against the exact QKeras
reference: tests/firmware/test_rtl.py)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from trigflow.firmware.logic_emulator import EmulatorUnsupported, compile_logic


def _logic(inp, out):
    from da4ml.trace import comb_trace

    with contextlib.redirect_stdout(io.StringIO()):
        return comb_trace(inp, out)


def _every_op():
    """A 4-input design holding each op kind: constant matmul (add/sub, shifts), relu, quantize with wrap,
    constant add, MSB mux (max), product, lookup table (tanh)."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput

    inp = FixedVariableArrayInput((4,))
    x = inp.quantize(1, 3, 4)
    kernel = np.array([[0.75, -1.5, 0.125], [2.0, 0.5, -0.25], [-0.375, 1.0, 3.0], [1.25, -2.0, 0.0625]])
    parts = [
        x @ kernel,
        (x @ kernel).relu(i=2, f=2),
        (x * 3.5).quantize(1, 2, 1),
        x + 0.8125,
        np.maximum(x[:2], x[2:]),
        x[:2] * x[2:],
        x.apply(np.tanh).quantize(1, 0, 6),
    ]
    flat = np.concatenate([p._vars.ravel() for p in parts])
    return inp, FixedVariableArray(flat, x.solver_options)


def _grid_inputs(logic, n: int, seed: int, off_grid: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    columns = []
    for q in logic.inp_qint:
        low, high = round(q.min / q.step), round(q.max / q.step)
        column = rng.integers(low, high + 1, n) * q.step
        columns.append(column + (rng.uniform(0, q.step, n) if off_grid else 0))
    return np.stack(columns, axis=1)


def test_every_op_kind_equals_da4mls_interpreter(tmp_path):
    logic = _logic(*_every_op())
    assert {op.opcode for op in logic.ops} >= {-1, 0, 1, 2, 3, 4, 6, 7, 8}
    emulator = compile_logic(logic, tmp_path / "emulator")
    for off_grid in (False, True):  # off the grid, both take the input as TRN + WRAP onto it
        x = _grid_inputs(logic, 20_000, seed=1, off_grid=off_grid)
        expected = logic.predict(x, n_threads=1)
        np.testing.assert_array_equal(emulator.predict(x, threads=1), expected)
        np.testing.assert_array_equal(emulator.predict(x, threads=2), expected)
    np.testing.assert_array_equal(emulator.predict(x[:3]), logic.predict(x[:3], n_threads=1))  # a partial lane
    again = compile_logic(logic, tmp_path / "emulator")  # same source: the library is reused, not rebuilt
    assert again.library == emulator.library and len(list((tmp_path / "emulator").glob("*.so"))) == 1


def test_a_value_wider_than_int64_lanes_is_refused(tmp_path):
    from da4ml.trace import FixedVariableArrayInput

    inp = FixedVariableArrayInput((2,))
    x = inp.quantize(1, 30, 10)
    logic = _logic(inp, x[:1] * x[1:])
    with pytest.raises(EmulatorUnsupported, match="multiplies beyond 62 bits"):
        compile_logic(logic, tmp_path / "emulator")
    assert not (tmp_path / "emulator").exists()
