from pathlib import Path

import pytest

from trigflow.config import load_config, parse_overrides
from trigflow.errors import TrigflowError


def test_defaults_are_the_documented_run():
    cfg = load_config("mlp")
    assert cfg.quant.bits == 6
    assert cfg.firmware.backend == "Vitis"
    assert cfg.firmware.io_type == "io_parallel"
    assert cfg.firmware.strategy == "Latency"
    assert cfg.out_dir == Path("runs/mlp")
    assert cfg.project_path == Path("hls_projects/mlp")


def test_file_then_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("quant:\n  bits: 8\nfirmware:\n  clock_period: 4\n  reuse_factor: 2\n")
    cfg = load_config("mlp", f, parse_overrides(["quant.bits=4", "model.hidden=32,16"]))
    assert cfg.quant.bits == 4  # flag wins over file
    assert cfg.firmware.clock_period == 4.0
    assert cfg.firmware.reuse_factor == 2
    assert cfg.model.hidden == (32, 16)


def test_a_single_width_in_a_file_or_the_api_is_a_one_item_list(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("model:\n  hidden: 16\n")
    assert load_config("mlp", f).model.hidden == (16,)
    assert load_config("ae", overrides={"model": {"hidden": 16}}).model.hidden == (16,)
    with pytest.raises(TrigflowError, match=r"config key model.hidden: \{'a': 1\} is not a list; give e.g. \[32, 16\]"):
        load_config("mlp", overrides={"model": {"hidden": {"a": 1}}})


def test_toml_file(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("seed = 3\n[firmware]\nbackend = 'Vivado'\n")
    cfg = load_config("mlp", f)
    assert (cfg.seed, cfg.firmware.backend) == (3, "Vivado")


def test_unknown_key_suggests_nearest():
    with pytest.raises(TrigflowError, match=r"unknown config key 'quant.bitz'.*did you mean 'bits'"):
        load_config("mlp", overrides={"quant": {"bitz": 4}})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"firmware": {"part": "not a part"}}, "invalid FPGA part"),
        ({"firmware": {"clock_period": -1}}, "invalid clock period"),
        ({"firmware": {"project_name": "../evil"}}, "no path separators"),
        ({"firmware": {"backend": "Xyz"}}, "unknown backend"),
        ({"quant": {"bits": "six"}}, "not a valid int"),
        ({"quant": {"sparsity": 1.5}}, "invalid sparsity"),
        ({"firmware": {"parallelization_factor": 0}}, "invalid parallelization factor 0: must be ≥ 1"),
    ],
)
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(TrigflowError, match=message) as info:
        load_config("mlp", overrides=overrides)
    assert "\n" not in str(info.value)


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(TrigflowError, match="not found"):
        load_config("mlp", tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("quant: [unclosed\n")
    with pytest.raises(TrigflowError, match="cannot be parsed"):
        load_config("mlp", bad)


def test_layer_bits_and_per_layer_options():
    cfg = load_config("mlp", overrides=parse_overrides(["quant.layer_bits=8,6,4,6"]))
    assert cfg.quant.layer_bits == (8, 6, 4, 6) and cfg.quant.per_layer == "none"
    sensitivity = load_config("mlp", overrides={"quant": {"per_layer": "sensitivity"}})
    assert sensitivity.quant.per_layer == "sensitivity"
    for overrides, message in [
        ({"quant": {"layer_bits": "6,6"}}, "one width per Dense layer"),
        ({"quant": {"layer_bits": "6,1,6,6"}}, "invalid quant.layer_bits"),
        ({"quant": {"per_layer": "hessian"}}, "unknown quant.per_layer"),
        ({"quant": {"per_layer_min_bits": 1}}, "per_layer_min_bits"),
    ]:
        with pytest.raises(TrigflowError, match=message):
            load_config("mlp", overrides=overrides)
    with pytest.raises(TrigflowError, match="mlp only"):
        load_config("cnn", overrides={"quant": {"per_layer": "sensitivity"}})


def test_phi_hidden_sets_the_deepsets_per_particle_widths_only():
    from trigflow.kinds.gnn import DEEPSETS_WIDTHS, deepsets_widths

    default = load_config("gnn")  # the Level-1 default: Deep Sets, φ 64, ρ 64-32-32
    assert default.model.arch == "deepsets" and default.model.hidden == (64, 32, 32)
    assert default.model.phi_hidden == () and deepsets_widths(default) == DEEPSETS_WIDTHS == {"phi_hidden": (64,)}
    narrow = load_config("gnn", overrides=parse_overrides(["model.arch=deepsets", "model.phi_hidden=48,32"]))
    assert deepsets_widths(narrow)["phi_hidden"] == (48, 32)
    for kind, overrides, message in [
        ("gnn", {"model": {"arch": "deepsets", "phi_hidden": "32,0"}}, "invalid model.phi_hidden"),
        ("gnn", {"model": {"arch": "in", "phi_hidden": "32,32"}}, "arch=deepsets only"),
        ("mlp", {"model": {"phi_hidden": "32"}}, "arch=deepsets only"),
    ]:
        with pytest.raises(TrigflowError, match=message) as info:
            load_config(kind, overrides=overrides)
        assert "\n" not in str(info.value)
