"""scripts/bench_verify.py: the 16-constituent IN benchmark of `trigflow verify`, run here only in its smoke
setting (4 particles, 1,000 jets): per-stage times in the JSON, the row written between its markers in the
markdown without touching the rest, and scripts/bench.py keeping that section when it re-renders."""

from __future__ import annotations

import json

import pytest

from tests.script_loader import load_script


@pytest.mark.slow  # 40-86 s: it trains and verifies a small IN
def test_smoke_setting_writes_json_and_the_marked_row(tmp_path):
    """Measured: 40-86 s wall on the shared 2-core machine (1 epoch on 1,000 jets, verify on 4 particles)."""
    bench = load_script("bench_verify")
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nkept as it is\n")
    out_json = tmp_path / "bench_verify.json"
    args = ["--particles", "4", "--jets", "1000", "--train-jets", "1000", "--out-json", str(out_json),
            "--out-md", str(md)]
    result = bench.main(args)
    m = json.loads(out_json.read_text())["measurement"]
    assert m == result["measurement"] and m["passed"] and m["bit_exact_fraction"] == 1.0
    assert set(m["stages_s"]) == {"convert", "compile", "C-sim", "localisation", "overflow", "other"}
    assert m["stages_s"]["compile"] > 0 and m["stages_s"]["convert"] > 0 and m["stages_s"]["C-sim"] > 0
    assert m["stages_s"]["localisation"] < 1  # exact: nothing to localise
    assert m["conversion"]["path"] == "rewritten"
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nkept as it is\n\n<!-- bench-verify:start -->")
    assert "| IN Conv1D form, 4 constituents, 8 bit | 1,000 | rewritten | 1.000000 |" in text
    bench.write_section(md, bench.render(result))  # a rerun replaces the section, nothing else
    assert md.read_text() == text


def test_bench_render_keeps_marked_sections(tmp_path):
    bench = load_script("bench")
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# old\n\n<!-- bench-verify:start -->\nrow\n<!-- bench-verify:end -->\n")
    assert bench.keep_marked_sections(md, "# new\n") == (
        "# new\n\n<!-- bench-verify:start -->\nrow\n<!-- bench-verify:end -->\n"
    )
    assert bench.keep_marked_sections(tmp_path / "missing.md", "# new\n") == "# new\n"


def test_write_section_replaces_its_own_marked_section_only(tmp_path):
    write_section = load_script("bench_csim").write_section
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\nkept\n")
    write_section(md, "<!-- b:start -->\nb\n<!-- b:end -->\n")  # absent: appended
    write_section(md, "<!-- a:start -->\nnew a\n<!-- a:end -->")  # present: replaced in place
    assert md.read_text() == (
        "# Benchmarks\n\n<!-- a:start -->\nnew a\n<!-- a:end -->\n\nkept\n\n<!-- b:start -->\nb\n<!-- b:end -->\n"
    )


def test_bench_l1_judges_each_firmware_against_the_level1_goal():
    l1 = load_script("bench_l1")
    goal = l1.KINDS["mlp"][2]
    assert l1.meets(goal, {"lut": 30_304, "dsp": 0, "latency_ns": 35.0, "ii": 1}) == "yes"
    assert l1.meets(goal, {"lut": 42_238, "dsp": 0, "latency_ns": 40.0, "ii": 1}) == "no: lut 42,238 > 40,000"
    assert l1.meets(goal, {"lut": 1, "dsp": 0, "ii": 1}) == "no: latency_ns unknown"
    fits = {"lut": 1, "dsp": 0, "latency_ns": 1.0, "ii": 1}
    assert l1.meets(goal, {**fits, "accuracy": 0.6694}, "accuracy", 0.6794) == "yes"  # exactly 1 point lost
    lost = l1.meets(goal, {**fits, "accuracy": 0.5}, "accuracy", 0.6794)
    assert lost == "no: accuracy 0.5000 < default 0.6794 − 0.01"
    figures = {"dsp": 0, "lut": 30_304, "ff": 5_836, "carry": 8_058, "latency_cycles": 7, "latency_ns": 35.0, "ii": 1,
               "accuracy": 0.6776, "bit_exact": 1.0}
    row = {"kind": "mlp", "settings": {}, "metric": "accuracy", "goal": goal, "latency": {},
           "da": {"refused": "no DA"}, "rtl": figures,
           "command": "python scripts/bench_l1.py", "when": "now", "machine": {"load_average_1min": 0.1},
           "total_s": 1}
    text = l1.render({"kinds": {"mlp": row}})
    assert "| mlp | RTL (yosys) | 0 | 30,304 | 5,836 | 8,058 | 7 | 35.0 | 1 | accuracy 0.6776 | 1.0000 | yes |" in text
    assert "| mlp | HLS DA (estimate): refused — no DA |" in text
    assert text.startswith("<!-- l1:start -->") and text.rstrip().endswith("<!-- l1:end -->")
