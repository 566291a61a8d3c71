"""Firmware layer: vendor report parsing (hand-written fixtures) and the synthesis hand-off without a tool."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware.synth import (
    VendorToolMissing,
    find_vendor_tool,
    parse_cosim_report,
    parse_vendor_report,
    synthesize,
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
