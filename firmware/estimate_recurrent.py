"""Firmware layer: the estimate's cost model of hls4ml's recurrent layers (``nnet::gru_stack`` /
``lstm_stack``, io_parallel, Latency strategy), registered with ``trigflow.firmware.estimate.layer_cost``.

In io_parallel the top function is pipelined, so HLS unrolls the loop over the T time steps: T copies of one
step's hardware, II 1. Per step: the input product x·W (n_in × G·n constants; off the recurrence, so it is
scheduled ahead and not on the critical path after the first step), the recurrent product h·U (n × G·n
constants), the gate sums, the sigmoid/tanh lookup tables (``table_size`` × table_t; index = an adder) and the
general (non-constant) products of the gates: GRU r·(h·U_h) and the state mix z·h + (1−z)·h̃ (3n multipliers),
LSTM c·i + s·f and o·tanh(s) (3n). The critical path is T × (h·U, gate sum, table, product, sum, table,
product, sum) — the recurrence is serial. Uncalibrated against vendor reports (no GRU/LSTM synthesis was run).
"""

from __future__ import annotations

from typing import Any

from trigflow.firmware import estimate as est

__all__ = ["recurrent_cost"]


def _table_reads(kind: str, n: int) -> tuple[int, int]:
    """(sigmoid reads, tanh reads) per step."""
    return (2 * n, n) if kind == "GRU" else (3 * n, 2 * n)


@est.layer_cost("GRU", "LSTM")
def recurrent_cost(layer: Any, io_stream: bool) -> est.LayerCost:
    kind = "GRU" if "GRU" in f"{layer.class_name}{type(layer).__name__}".upper() else "LSTM"
    w, wn = est._weights(layer, "weight")
    u, un = est._weights(layer, "recurrent_weight")
    if w is None or u is None:
        return est._not_modelled(layer, "no weights found")
    b, _ = est._weights(layer, "bias")
    br, _ = est._weights(layer, "recurrent_bias")
    x, out = est._io_operands(layer)
    acc = est._acc_operand(layer, out)
    n = int(est._attr(layer, "n_out", u.shape[0]))
    steps = int(est._attr(layer, "n_timesteps", 1))
    n_in = int(est._attr(layer, "n_in", w.shape[0]))
    strategy = est._attr(layer, "strategy", "latency")
    mm_x = est._matmul(w.reshape(n_in, -1), b, x, wn, acc, acc, 1, strategy)
    mm_h = est._matmul(u.reshape(n, -1), br, out, un, acc, acc, 1, strategy)
    table_t = est._operand(getattr(est._attr(layer, "table_t"), "precision", None))
    size = int(est._attr(layer, "table_size", 1024))
    sig_reads, tanh_reads = _table_reads(kind, n)
    bram_s, lut_s, in_bram_s = est._table_rom(sig_reads, size, table_t.type.width)
    bram_t, lut_t, in_bram_t = est._table_rom(tanh_reads, size, table_t.type.width)
    gate_mults = 3 * n
    dsp_g, lut_g, t_mult = est._general_multipliers(gate_mults, table_t, acc)
    w_acc = acc.type.width
    # table index adders, gate sums, state sums
    lut_add = int((sig_reads + tanh_reads + 4 * n) * w_acc * est.LUT_PER_ADDER_BIT)

    def table(in_bram: bool, reads: int) -> list[est._Op]:
        read = est._Op(cycles=est.ROM_BRAM_CYCLES) if in_bram else est._Op(est.ROM_LUT_NS, reads * w_acc)
        return [est._Op(est._t_add(w_acc), reads * w_acc), read]  # index adder, read

    step = [*mm_h.ops, est._Op(est._t_add(w_acc), 3 * n * w_acc)]  # h·U, gate sums
    step += table(in_bram_s, sig_reads)
    if kind == "GRU":
        step += [est._Op(t_mult, n * w_acc), est._Op(est._t_add(w_acc), n * w_acc)]  # r·(h·U_h), + x·W_h
        step += table(in_bram_t, n)
        step += [est._Op(t_mult, 2 * n * w_acc), est._Op(est._t_add(w_acc), n * out.type.width)]  # mix
    else:
        step += [est._Op(t_mult, 2 * n * w_acc), est._Op(est._t_add(w_acc), n * out.type.width)]  # c·i + s·f
        step += table(in_bram_t, n)
        step += [est._Op(t_mult, n * out.type.width)]  # o·tanh(s)
    ops = [*mm_x.ops, *(step * steps)]
    per_step = est.LayerEstimate(layer.name, kind)
    per_step.dsp = mm_x.dsp + mm_h.dsp + dsp_g
    per_step.lut = mm_x.lut + mm_h.lut + lut_g + lut_s + lut_t + lut_add
    per_step.bram = bram_s + bram_t
    per_step.mults = mm_x.mults + mm_h.mults + gate_mults
    total = est.LayerEstimate(
        layer.name, kind, per_step.dsp * steps, per_step.lut * steps, 0, per_step.bram * steps,
        mults=per_step.mults * steps,
        note=f"{steps} steps unrolled (io_parallel), tables {size} x {table_t.type.width} bits; uncalibrated",
    )
    if io_stream:
        total.note += "; io_stream not modelled"
    return est.LayerCost(total, ops)  # ops hold every step: registers are counted along them
