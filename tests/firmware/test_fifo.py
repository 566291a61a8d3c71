"""FIFO depth model: parsing the generated top function and replaying stream traces (no compiler needed).

The end-to-end test (trace a compiled project, rewrite, recompile, same bits) is in test_cnn_firmware.py.
"""

import numpy as np
import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware import fifo
from trigflow.firmware.fifo import READ, WRITE, _iterations, _occupancy, _Proc, _schedule

TOP = """
void myproject(hls::stream<input_t> &image, hls::stream<result_t> &layer9_out) {
    #pragma HLS DATAFLOW
    hls::stream<conv_0_t> layer3_out("layer3_out");
    #pragma HLS STREAM variable=layer3_out depth=196

    hls::stream<pool_0_t> layer6_out("layer6_out");
    #pragma HLS STREAM variable=layer6_out depth=49

    auto& layer7_out = layer6_out;
    nnet::conv_2d_cl<image_t, conv_0_t, config3>(image, layer3_out, w3, b3); // conv_0

    nnet::pooling2d_cl<conv_0_t, pool_0_t, config6>(layer3_out, layer6_out); // pool_0

    nnet::dense<pool_0_t, result_t, config9>(layer7_out, layer9_out, w9, b9); // logits

}
"""

PARAMS = """
struct config3 : nnet::conv2d_config {
    static const unsigned reuse_factor = 4;
};

struct config6 : nnet::pooling2d_config {
    static const unsigned reuse_factor = 1;
};
"""


def test_reads_streams_depths_and_processes(tmp_path):
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "myproject.cpp").write_text(TOP)
    (tmp_path / "firmware" / "parameters.h").write_text(PARAMS)
    flow = fifo.read_dataflow(tmp_path, "myproject")
    assert flow.depths == {"layer3_out": 196, "layer6_out": 49}
    assert flow.aliases == {"layer7_out": "layer6_out"}
    assert [(p.layer, p.function, p.ii) for p in flow.processes] == [
        ("conv_0", "conv_2d_cl", 4),  # a convolution's pixel loop runs at II = reuse factor
        ("pool_0", "pooling2d_cl", 1),
        ("logits", "dense", 1),
    ]


def test_io_parallel_project_has_no_fifos(tmp_path):
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "myproject.cpp").write_text("void myproject(input_t x[16], result_t y[5]) {}")
    (tmp_path / "firmware" / "parameters.h").write_text("")
    with pytest.raises(TrigflowError, match="io_stream"):
        fifo.read_dataflow(tmp_path, "myproject")


def test_iterations_are_reads_then_writes():
    ops = np.array([(0, READ), (1, WRITE), (0, READ), (0, READ), (1, WRITE), (1, WRITE)])
    assert _iterations(ops) == [((0,), (1,)), ((0,), ()), ((0,), (1,)), ((), (1,))]


def chain(n: int, consumer_ii: int) -> list[_Proc]:
    """source → stream 0 → relay → stream 1 → sink, n elements."""
    return [
        _Proc("source", 1, [((), (0,))] * n),
        _Proc("relay", consumer_ii, [((0,), (1,))] * n),
        _Proc("sink", 1, [((1,), ())] * n),
    ]


def test_matched_rates_need_two_slots():
    """One element per clock on both sides: each element is held from its write cycle through its read cycle."""
    writes, reads, cycles = _schedule(chain(20, 1), 2)
    assert _occupancy(writes[0], reads[0]) == 2
    assert reads[0] == [w + 1 for w in writes[0]]
    assert cycles == 22


def test_slow_consumer_fills_the_fifo_and_small_fifo_stalls_only_the_producer():
    procs = chain(20, 4)
    writes, reads, free = _schedule(procs, 2)
    assert _occupancy(writes[0], reads[0]) == 15  # 20 written in cycles 0-19; read at 1, 5, 9, 13, 17 by then
    _, _, bounded = _schedule(procs, 2, {0: 2})
    assert bounded == free  # the slow consumer sets the pace: a 2-deep FIFO costs no cycle in a chain


def test_measured_depth_is_enough_and_reconvergent_paths_deadlock_when_too_shallow():
    """A fork that rejoins: the join reads all of branch A before branch B, so B must buffer everything."""
    n = 8
    procs = [
        _Proc("fork", 1, [((), (0, 1))] * n),  # writes stream 0 (A) and 1 (B) each iteration
        _Proc("join", 1, [((0,), ())] * n + [((1,), ())] * n),
    ]
    writes, reads, free = _schedule(procs, 2)
    need = _occupancy(writes[1], reads[1])
    assert need == n
    assert _schedule(procs, 2, {0: 2, 1: need})[2] == free
    with pytest.raises(TrigflowError, match="deadlock"):
        _schedule(procs, 2, {0: 2, 1: need - 2})


def test_proposed_depths_add_margin_and_never_exceed_worst_case():
    profile = fifo.FifoProfile(
        depths={"a": 196, "b": 49, "c": 1},
        occupancy={"a": 2, "b": 60, "c": 1},
        producer={},
        consumer={},
        samples=4,
        data_independent=True,
        cycles=100,
    )
    assert profile.proposed() == {"a": 3, "b": 49, "c": 1}
    assert profile.proposed(margin=0) == {"a": 2, "b": 49, "c": 1}
