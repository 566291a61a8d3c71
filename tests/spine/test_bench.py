"""scripts/bench.py: the markdown is templated from the JSON (no benchmark is run here)."""

from __future__ import annotations

import json

import pytest

from tests.script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench")


def fake_result(bench) -> dict:
    kind = {
        "settings": {"data.max_samples": 100},
        "data": {"train": 60, "test": 25},
        "parameters": 123,
        "stages_s": bench.stage_times(
            {
                "load data": 1.0,
                "train float twin": 2.0,
                "train QKeras (QAT)": 3.0,
                "hls4ml convert + g++ compile": 10.0,
            },
            7.5,
        ),
        "quality": {"metric": "accuracy", "float": 0.5, "qkeras": 0.49, "firmware": 0.49},
        "bit_exact_fraction": 1.0,
        "proof_samples": 25,
        "passed": True,
        "failures": [],
        "resources": {"dsp": 1, "lut": 2, "ff": 3, "bram": 0},
        "latency_cycles": 9,
        "latency_ns": 45.0,
        "throughput": {
            "samples": 25,
            "samples_per_s_best": {"hls4ml_predict": 10.0, "onnxruntime": 80.0},
            "ratios_best": {"onnxruntime_vs_hls4ml_predict": 8.0},
        },
        "process_wall_s": 30.0,
        "peak_rss_mb": {"self": 700.0, "children": 700.0},
    }
    return {
        "command": "python scripts/bench.py --quick",
        "date": "2026-01-01T00:00:00+00:00",
        "mode": "quick",
        "settings": bench.SETTINGS["quick"],
        "machine": {
            "cpu": "cpu",
            "cores_logical": 2,
            "cores_usable": 2,
            "ram_gb": 8.0,
            "platform": "linux",
            "python": "3.11",
            "gxx": "g++ 12",
            "load_average_1min_start": 0.1,
            "load_average_1min_end": 0.2,
        },
        "versions": {"tensorflow": "2.14", "qkeras": "0.9", "hls4ml": "1.3", "onnxruntime": "1.x"},
        "kinds": {"mlp": kind, "cnn": {"error": "TrigflowError: boom"}},
        "scaling": {
            "mlp": {
                "model": "16 → w → w → 5",
                "rows": [
                    {
                        "size": 16,
                        "parameters": 600,
                        "convert_s": 0.2,
                        "compile_s": 20.0,
                        "csim_samples": 9,
                        "csim_samples_per_s": 5000.0,
                        "resources": {"dsp": 0, "lut": 10, "ff": 5, "bram": 0},
                        "latency_cycles": 7,
                    }
                ],
            }
        },
        "sections_s": {"kind:mlp": 30.0},
        "total_s": 30.0,
    }


def test_stage_times_split_convert_and_compile(bench):
    st = bench.stage_times(
        {"hls4ml convert + g++ compile": 10.0, "train float twin": 1.0, "train QKeras (QAT)": 2.0}, 7.5
    )
    assert st["convert"] == 2.5 and st["compile"] == 7.5 and st["train"] == 3.0


def test_render_from_json(bench, tmp_path):
    result = fake_result(bench)
    (tmp_path / "bench.json").write_text(json.dumps(result))
    bench.main(["--render", "--out-json", str(tmp_path / "bench.json"), "--out-md", str(tmp_path / "B.md")])
    text = (tmp_path / "B.md").read_text()
    assert "python scripts/bench.py --quick" in text and "2026-01-01" in text
    assert "| mlp | 25 | 1.0 | 5.0 | 2.5 | 7.5 |" in text
    assert "| mlp | 25 | 10.0 | 80.0 | 8.0× |" in text and "error: TrigflowError: boom" in text
    assert "hls4ml 1.3" in text and "g++ 12" in text
