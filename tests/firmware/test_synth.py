"""Firmware layer: vendor report parsing (hand-written fixtures), the synthesis hand-off without a tool, and
the open path (yosys on a da4ml RTL fixture)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import trigflow.firmware.yosys as yosys_mod
from trigflow.cli import app
from trigflow.errors import TrigflowError
from trigflow.firmware.synth import (
    VendorToolMissing,
    find_vendor_tool,
    parse_cosim_report,
    parse_vendor_report,
    synthesize,
)
from trigflow.firmware.yosys import (
    MANIFEST,
    YosysMissing,
    count_resources,
    family_for_part,
    logic_levels,
)

FIXTURES = Path(__file__).parent / "fixtures"
KEYS = {"resources", "latency_cycles", "latency_ns", "ii", "source"}


@pytest.mark.parametrize("suffix", ["xml", "rpt"])
def test_vitis_report(suffix):
    rep = parse_vendor_report(FIXTURES / f"vitis_myproject_csynth.{suffix}")
    assert set(rep) == KEYS
    assert rep == {
        "resources": {"dsp": 1502, "lut": 101839, "ff": 9363, "bram": 4},
        "latency_cycles": 14,
        "latency_ns": 70.0,
        "ii": 1,
        "source": "vitis_hls",
    }


@pytest.mark.parametrize("suffix", ["xml", "rpt"])
def test_vivado_report(suffix):
    rep = parse_vendor_report(FIXTURES / f"vivado_myproject_csynth.{suffix}")
    assert rep == {
        "resources": {"dsp": 340, "lut": 263280, "ff": 43847, "bram": 100},
        "latency_cycles": 1044,
        "latency_ns": 5220.0,
        "ii": 1028,
        "source": "vivado_hls",
    }


def test_cosim_report():
    assert parse_cosim_report(FIXTURES / "vivado_myproject_cosim.rpt") == {
        "rtl": "Verilog",
        "status": "Pass",
        "latency_min": 1045,
        "latency_max": 1045,
        "ii_min": 1029,
        "ii_max": 1029,
    }


def test_undefined_latency_and_bad_reports(tmp_path):
    text = (FIXTURES / "vivado_myproject_csynth.xml").read_text()
    undef = tmp_path / "undef_csynth.xml"
    undef.write_text(
        text.replace(
            "<Worst-caseLatency>1044</Worst-caseLatency>", "<Worst-caseLatency>undef</Worst-caseLatency>"
        )
    )
    rep = parse_vendor_report(undef)
    assert rep["latency_cycles"] is None and rep["latency_ns"] is None and rep["resources"]["dsp"] == 340
    broken = tmp_path / "broken_csynth.xml"
    broken.write_text("<profile><AreaEstimates>")
    with pytest.raises(TrigflowError, match="not a readable"):
        parse_vendor_report(broken)
    with pytest.raises(TrigflowError, match="does not exist"):
        parse_vendor_report(tmp_path / "missing_csynth.xml")
    junk = tmp_path / "junk_csynth.rpt"
    junk.write_text("== Vitis HLS Report for 'x'\n")
    with pytest.raises(TrigflowError, match="csynth report"):
        parse_vendor_report(junk)


def _project(tmp_path: Path, backend: str) -> Path:
    prj = tmp_path / "prj"
    prj.mkdir()
    (prj / "build_prj.tcl").write_text("# hls4ml build script\n")
    (prj / "project.tcl").write_text(
        'variable project_name\nset project_name "myproject"\nvariable backend\n'
        f'set backend "{backend}"\nvariable clock_period\nset clock_period 5\n'
    )
    if backend == "vitis":
        (prj / "build_opt.tcl").write_text("array set opt {\n    csim       1\n    synth      1\n}\n")
    return prj


def _fake_tool(bindir: Path, name: str, fixture: str) -> None:
    """A stand-in HLS tool: records its arguments and drops a csynth report where the real one would."""
    bindir.mkdir(exist_ok=True)
    script = bindir / name
    script.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > args.txt\n'
        "mkdir -p myproject_prj/solution1/syn/report\n"
        f"cp {FIXTURES / fixture} myproject_prj/solution1/syn/report/myproject_csynth.xml\n"
        "echo '***** C/RTL SYNTHESIS *****'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_missing_tool_exits_with_code_3(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_vendor_tool() is None
    prj = _project(tmp_path, "vitis")
    with pytest.raises(VendorToolMissing) as info:
        synthesize(prj)
    err = info.value
    assert isinstance(err, TrigflowError) and err.exit_code == 3 and VendorToolMissing.exit_code == 3
    msg = str(err)
    assert "\n" not in msg
    assert "vitis_hls/vivado_hls not found on PATH" in msg and "settings64.sh" in msg


def test_not_a_project(tmp_path):
    with pytest.raises(TrigflowError, match="build_prj.tcl"):
        synthesize(tmp_path)


def test_vitis_hand_off(tmp_path, monkeypatch):
    _fake_tool(tmp_path / "bin", "vitis_hls", "vitis_myproject_csynth.xml")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert find_vendor_tool("vitis") == str(tmp_path / "bin" / "vitis_hls")
    prj = _project(tmp_path, "vitis")
    rep = synthesize(prj)
    assert rep["source"] == "vitis_hls" and rep["latency_cycles"] == 14 and rep["resources"]["dsp"] == 1502
    args = (prj / "args.txt").read_text().split("\n")
    assert args[:2] == ["-f", "build_prj.tcl"]
    opts = (prj / "build_opt.tcl").read_text()
    assert "csim       0" in opts and "synth      1" in opts and "cosim      0" in opts
    assert "C/RTL SYNTHESIS" in (prj / "build_stdout.log").read_text()


def test_vivado_hand_off_passes_options_as_argument(tmp_path, monkeypatch):
    _fake_tool(tmp_path / "bin", "vivado_hls", "vivado_myproject_csynth.xml")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    prj = _project(tmp_path, "vivado")
    rep = synthesize(prj, cosim=True)
    assert rep["source"] == "vivado_hls" and rep["latency_cycles"] == 1044 and rep["ii"] == 1028
    args = (prj / "args.txt").read_text().split("\n")
    assert args[:2] == ["-f", "build_prj.tcl"]
    assert "csim=0" in args[2] and "synth=1" in args[2] and "cosim=1" in args[2]


def test_tool_failure_is_reported(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "vitis_hls"
    tool.write_text("#!/bin/sh\necho 'ERROR: [HLS 207-812] boom' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    prj = _project(tmp_path, "vitis")
    with pytest.raises(TrigflowError, match="exit code 1"):
        synthesize(prj)
    assert "boom" in (prj / "build_stdout.log").read_text()


# ---------------------------------------------------------------------------------------------------------
# The open path: yosys synth_xilinx on an RTL project (rtl/rtl_manifest.json)
# ---------------------------------------------------------------------------------------------------------
RTL_FIXTURE = FIXTURES / "rtl_dense84"  # da4ml 8-4 dense layer, 3 pipeline stages (fixtures/README.md)


def _rtl_project(tmp_path: Path, **manifest_changes: object) -> Path:
    prj = tmp_path / "rtl_prj"
    shutil.copytree(RTL_FIXTURE, prj)
    if manifest_changes:
        path = prj / "rtl" / MANIFEST
        path.write_text(json.dumps({**json.loads(path.read_text()), **manifest_changes}))
    return prj


@pytest.mark.parametrize(
    ("part", "family"),
    [
        ("xcu250-figd2104-2L-e", "xcup"),
        ("xcvu9p-flga2104-2-e", "xcup"),
        ("xcvu13p-flga2577-2-e", "xcup"),
        ("xczu9eg-ffvb1156-2-e", "xcup"),
        ("xcku040-ffva1156-2-e", "xcu"),
        ("xc7a100tcsg324-1", "xc7"),
        ("xc7z020clg400-1", "xc7"),
    ],
)
def test_family_for_part(part, family):
    assert family_for_part(part) == family


def test_unknown_part_family_is_a_usage_error(tmp_path):
    with pytest.raises(TrigflowError) as info:
        family_for_part("5CGXFC7C7F23C8")
    msg = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in msg and "xcup" in msg and "xc7" in msg
    prj = _rtl_project(tmp_path, part="5CGXFC7C7F23C8")
    with pytest.raises(TrigflowError, match="no FPGA family"):
        synthesize(prj, open_flow=True)
    assert not (prj / "rtl" / "yosys_report.json").exists() and not (prj / "rtl" / "yosys.log").exists()


def test_count_resources():
    cells = {"LUT2": 10, "LUT6": 3, "INV": 2, "FDRE": 7, "FDSE": 1, "CARRY4": 4, "CARRY8": 1, "DSP48E2": 2}
    cells |= {"RAMB18E2": 1, "RAMB36E2": 2, "MUXF7": 5, "SRL16E": 1}
    assert count_resources(cells) == {"dsp": 2, "lut": 16, "ff": 8, "bram": 5, "carry": 5}


def test_logic_levels_per_register_group():
    """in -> FF a -> LUT -> CARRY4 -> CARRY4 -> FF b -> LUT -> out (combinational output)."""

    def cell(kind, ins, outs):
        dirs = {**{p: "input" for p in ins}, **{p: "output" for p in outs}}
        return {"type": kind, "port_directions": dirs, "connections": {**ins, **outs}}

    netlist = {
        "modules": {
            "top": {
                "ports": {
                    "x": {"direction": "input", "bits": [2]},
                    "y": {"direction": "output", "bits": [9]},
                },
                "cells": {
                    "ffa": cell("FDRE", {"C": [1], "D": [2]}, {"Q": [3]}),
                    "lut": cell("LUT2", {"I0": [3], "I1": [3]}, {"O": [4]}),
                    "c0": cell("CARRY4", {"S": [4]}, {"CO": [5]}),
                    "c1": cell("CARRY4", {"CI": [5], "S": [3]}, {"O": [6]}),
                    "ffb": cell("FDRE", {"C": [1], "D": [6]}, {"Q": [7]}),
                    "out": cell("LUT1", {"I0": [7]}, {"O": [9]}),
                },
                "netnames": {
                    "a_reg": {"hide_name": 0, "bits": [3]},
                    "b_reg": {"hide_name": 0, "bits": [7]},
                    "$auto$x": {"hide_name": 1, "bits": [4]},
                },
            }
        }
    }
    assert logic_levels(netlist, "top") == {"a_reg": 0, "b_reg": 3, "output y": 1}


def test_open_path_needs_rtl(tmp_path):
    with pytest.raises(TrigflowError) as info:
        synthesize(tmp_path, open_flow=True)
    assert "trigflow rtl" in str(info.value) and "\n" not in str(info.value)


def test_open_path_without_yosys_exits_3(tmp_path, monkeypatch):
    prj = _rtl_project(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(YosysMissing) as info:
        synthesize(prj, open_flow=True)
    msg = str(info.value)
    assert info.value.exit_code == 3 and "apt-get install" in msg and "yosys" in msg and "\n" not in msg
    assert not (prj / "rtl" / "yosys_report.json").exists()


def test_no_vendor_tool_falls_back_to_yosys(tmp_path, monkeypatch):
    prj = _rtl_project(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(yosys_mod, "synthesize_rtl", lambda root: {"source": "yosys", "project": root})
    assert synthesize(prj) == {"source": "yosys", "project": prj}


def test_yosys_failure_names_cause_and_log(tmp_path):
    prj = _rtl_project(tmp_path)
    stage = prj / "rtl" / "vendor" / "da4ml" / "dense84_stage1.v"
    stage.write_text(stage.read_text().replace("endmodule", "wire oops = ;\nendmodule"))
    with pytest.raises(TrigflowError) as info:
        synthesize(prj, open_flow=True)
    msg = str(info.value)
    log = prj / "rtl" / "yosys.log"
    assert msg.startswith("yosys failed: ") and str(log) in msg and "\n" not in msg
    assert log.is_file() and "syntax error" in log.read_text()
    assert not (prj / "rtl" / "yosys_report.json").exists()
    assert not list((prj / "rtl").glob(".*part"))


def test_cli_synth_yosys_measures_the_rtl(tmp_path):
    """The default run's synthesis: a 3-stage da4ml dense layer, ~15 s on 2 cores."""
    prj = _rtl_project(tmp_path)
    result = CliRunner().invoke(app, ["synth", "--yosys", str(prj)])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.output)
    assert rep == json.loads((prj / "rtl" / "yosys_report.json").read_text())
    assert KEYS <= set(rep) and rep["source"] == "yosys" and rep["family"] == "xcup"
    assert set(rep["resources"]) == {"dsp", "lut", "ff", "bram", "carry"}
    res = rep["resources"]
    # shift-add logic only: no DSP or BRAM; registers at most the 386 pipeline bits da4ml declares
    assert res["dsp"] == 0 and res["bram"] == 0 and res["lut"] > 0 and res["carry"] > 0
    assert 0 < res["ff"] <= 56 + 192 + 82 + 56
    assert res["lut"] == sum(n for cell, n in rep["cells"].items() if cell.startswith(("LUT", "INV")))
    assert (rep["latency_cycles"], rep["latency_ns"], rep["ii"]) == (4, 20.0, 1)
    levels = rep["logic_levels"]
    assert set(levels) == {"stage0_inp", "stage1_inp", "stage2_inp", "model_out"}
    assert levels["stage0_inp"] == 0 and min(levels[k] for k in ("stage1_inp", "stage2_inp", "model_out")) > 0
    assert rep["max_logic_levels"] == max(levels.values())
    assert "Executing SYNTH_XILINX pass" in (prj / "rtl" / "yosys.log").read_text()
