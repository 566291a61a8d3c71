"""Firmware layer: synthesis hand-off to Vitis HLS / Vivado HLS or yosys, and parsing of their reports.

``synthesize(project_dir)`` runs the ``build_prj.tcl`` that hls4ml writes into a project folder with the
vendor HLS tool found on PATH (C synthesis only, optionally co-simulation) and returns the report in the
same keys as ``trigflow.firmware.estimate.Estimate.to_report()``: ``resources`` {dsp, lut, ff, bram},
``latency_cycles``, ``latency_ns``, ``ii`` and ``source`` ("vitis_hls" or "vivado_hls").
Without a vendor tool (or with ``open_flow=True``) a project that holds an RTL project
(``rtl/rtl_manifest.json``, written by ``trigflow rtl``) is synthesised with yosys instead
(``trigflow.firmware.yosys``, ``source: "yosys"``, resources plus ``carry`` and logic levels).
``parse_vendor_report(path)`` reads a ``<top>_csynth.xml`` or ``<top>_csynth.rpt`` of either tool.

Commands (as hls4ml 1.3 runs them): a Vitis-backend project reads its options from ``build_opt.tcl``
(``vitis-run --tcl build_prj.tcl --mode hls`` for Vitis 2024.2+, or ``vitis_hls -f build_prj.tcl``); a
Vivado-backend project takes them as one argument: ``vivado_hls -f build_prj.tcl "csim=0 synth=1 ..."``.
Latency is the worst case, II the largest interval, both in cycles of the target clock.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.fsio import write_text

# search order per project backend (vitis-run is the Vitis 2024.2+ entry point used by hls4ml 1.3)
_TOOLS = {
    "vitis": ("vitis_hls", "vitis-run"),
    "vivado": ("vivado_hls", "vitis_hls"),
    None: ("vitis_hls", "vitis-run", "vivado_hls"),
}


class VendorToolMissing(TrigflowError):
    """No vendor HLS tool on PATH: synthesis cannot run here (estimates still can)."""

    exit_code = 3


def find_vendor_tool(backend: str | None = None) -> str | None:
    """Path of the HLS tool to use (vitis_hls, vitis-run or vivado_hls on PATH), or None."""
    key = backend.lower() if backend else None
    if key not in _TOOLS:
        key = "vitis" if key and "vitis" in key else ("vivado" if key else None)
    for name in _TOOLS[key]:
        found = shutil.which(name)
        if found:
            return found
    return None


def _project_info(project_dir: Path) -> dict[str, str]:
    """``project_name``, ``backend``, ``clock_period`` ... from the hls4ml ``project.tcl``."""
    info: dict[str, str] = {}
    tcl = project_dir / "project.tcl"
    if not tcl.is_file():
        return info
    for line in tcl.read_text().splitlines():
        m = re.match(r'\s*set\s+(\w+)\s+"?([^"\s]+)"?', line)
        if m:
            info[m.group(1)] = m.group(2)
    return info


def _build_options(cosim: bool) -> dict[str, int]:
    return {
        "reset": 0,
        "csim": 0,
        "synth": 1,
        "cosim": int(cosim),
        "validation": int(cosim),
        "export": 0,
        "vsynth": 0,
        "fifo_opt": 0,
    }


def _command(tool: str, project_dir: Path, opts: dict[str, int]) -> list[str]:
    name = Path(tool).name
    if (project_dir / "build_opt.tcl").is_file():
        # Vitis-backend build_prj.tcl sources build_opt.tcl instead of parsing argv
        body = "".join(f"    {k:<10} {v}\n" for k, v in opts.items())
        write_text(project_dir / "build_opt.tcl", "array set opt {\n" + body + "}\n")
    if name == "vitis-run":
        return [tool, "--tcl", "build_prj.tcl", "--mode", "hls"]
    return [tool, "-f", "build_prj.tcl", " ".join(f"{k}={v}" for k, v in opts.items())]


def _find_report(project_dir: Path, top: str, suffix: str) -> Path | None:
    """``<top>_csynth.xml``: first under ``<project>_prj/solution1``, else anywhere in the project."""
    name = f"{top}_csynth.{suffix}"
    direct = project_dir / f"{top.removesuffix('_axi')}_prj" / "solution1" / "syn" / "report" / name
    if direct.is_file():
        return direct
    found = sorted(project_dir.glob(f"**/syn/report/{name}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def synthesize(project_dir: str | Path, *, cosim: bool = False, open_flow: bool = False) -> dict[str, Any]:
    """Run C synthesis (and co-simulation if asked) of an hls4ml project; return the parsed report.

    ``open_flow=True``, or no vendor tool on PATH while the project holds ``rtl/rtl_manifest.json``: yosys
    synthesis of the RTL project instead (``trigflow.firmware.yosys.synthesize_rtl``).
    """
    from trigflow.firmware.yosys import find_manifest, synthesize_rtl

    root = Path(project_dir)
    if open_flow:
        if cosim:
            raise TrigflowError("--cosim needs a vendor HLS tool; drop it for the yosys path")
        return synthesize_rtl(root)
    info = _project_info(root)
    tool = find_vendor_tool(info.get("backend") or None)
    if tool is None and find_manifest(root) is not None and not cosim:
        return synthesize_rtl(root)
    if not (root / "build_prj.tcl").is_file():
        raise TrigflowError(f"{root} has no build_prj.tcl; pass a project folder written by hls4ml (write())")
    backend = info.get("backend", "")
    if tool is None:
        raise VendorToolMissing(
            "vitis_hls/vivado_hls not found on PATH: source the Xilinx settings64.sh of a Vitis HLS or "
            "Vivado HLS install first, or use the resource estimate, which needs no vendor tool "
            "(or `trigflow rtl RUN_DIR` then `trigflow synth --yosys` for measured resources with yosys)"
        )
    opts = _build_options(cosim)
    cmd = _command(tool, root, opts)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    log = root / "build_stdout.log"
    write_text(log, proc.stdout + ("\n" + proc.stderr if proc.stderr else ""))
    if proc.returncode != 0:
        raise TrigflowError(f"{Path(tool).name} failed with exit code {proc.returncode}; see {log}")

    top = info.get("project_name", "myproject")
    if "accelerator" in backend:
        top += "_axi"
    report = _find_report(root, top, "xml") or _find_report(root, top, "rpt")
    if report is None:
        raise TrigflowError(f"synthesis ran but no {top}_csynth.xml was written under {root}; see {log}")
    result = parse_vendor_report(report)
    if Path(tool).name in ("vitis_hls", "vitis-run"):
        result["source"] = "vitis_hls"
    if cosim:
        cosim_rpt = report.parents[2] / "sim" / "report" / f"{top}_cosim.rpt"
        if cosim_rpt.is_file():
            result["cosim"] = parse_cosim_report(cosim_rpt)
    return result


# ---------------------------------------------------------------------------------------------------------
# Report parsing
# ---------------------------------------------------------------------------------------------------------
def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _float(text: str | None) -> float | None:
    try:
        return float(str(text).strip().split()[0]) if text is not None else None
    except (ValueError, IndexError):
        return None


def _report(
    resources: dict[str, int | None],
    latency: int | None,
    ii: int | None,
    period: float | None,
    source: str,
) -> dict[str, Any]:
    return {
        "resources": {k: int(v or 0) for k, v in resources.items()},
        "latency_cycles": latency,
        "latency_ns": round(latency * period, 3) if (latency is not None and period) else None,
        "ii": ii,
        "source": source,
    }


def parse_vendor_report(path: str | Path) -> dict[str, Any]:
    """Parse a Vitis HLS or Vivado HLS ``<top>_csynth.xml`` (or ``.rpt``) into the report.json keys.

    Latency is ``Worst-caseLatency`` (None when the tool reports it undefined), ``ii`` is ``Interval-max``
    (``Interval-min`` if absent); ``source`` is "vivado_hls" for reports with DSP48E columns (Vivado HLS),
    "vitis_hls" otherwise.
    """
    p = Path(path)
    if not p.is_file():
        raise TrigflowError(f"report {p} does not exist; run synthesis first or pass the *_csynth.xml path")
    if p.suffix == ".rpt":
        return _parse_rpt(p.read_text(errors="replace"), p)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise TrigflowError(f"{p} is not a readable csynth XML report ({exc}); re-run synthesis") from exc
    res_node = root.find("./AreaEstimates/Resources")
    lat_node = root.find("./PerformanceEstimates/SummaryOfOverallLatency")
    if res_node is None or lat_node is None:
        raise TrigflowError(
            f"{p} lacks AreaEstimates/Resources or SummaryOfOverallLatency; not a csynth report"
        )
    vivado = res_node.find("DSP48E") is not None
    resources = {
        "dsp": _int(res_node.findtext("DSP48E" if vivado else "DSP")),
        "lut": _int(res_node.findtext("LUT")),
        "ff": _int(res_node.findtext("FF")),
        "bram": _int(res_node.findtext("BRAM_18K")),
    }
    latency = _int(lat_node.findtext("Worst-caseLatency"))
    ii = _int(lat_node.findtext("Interval-max"))
    if ii is None:
        ii = _int(lat_node.findtext("Interval-min"))
    period = _float(root.findtext("./UserAssignments/TargetClockPeriod"))
    return _report(resources, latency, ii, period, "vivado_hls" if vivado else "vitis_hls")


def _table_row(lines: list[str], start: int, first_cell: str) -> list[str] | None:
    for line in lines[start:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    return None


def _parse_rpt(text: str, path: Path) -> dict[str, Any]:
    """Text report: clock table, latency summary row and the utilization ``Total`` row."""
    lines = text.splitlines()
    period = None
    m = re.search(r"\|\s*ap_clk\s*\|\s*([\d.]+)\s*ns", text)
    if m:
        period = float(m.group(1))
    latency = ii = None
    for i, line in enumerate(lines):
        if "Latency (cycles)" in line and "Interval" in line:
            # header, sub-header, separator, then the values row
            for row in lines[i + 1 : i + 6]:
                cells = [c.strip() for c in row.strip().strip("|").split("|")]
                if len(cells) >= 6 and _int(cells[0]) is not None:
                    latency, ii = _int(cells[1]), _int(cells[5]) or _int(cells[4])
                    break
            break
    header_idx = next((i for i, ln in enumerate(lines) if "BRAM_18K" in ln and "Name" in ln), None)
    if header_idx is None or latency is None:
        raise TrigflowError(f"{path} does not look like a csynth report (no latency or utilization table)")
    header = [c.strip() for c in lines[header_idx].strip().strip("|").split("|")]
    total = _table_row(lines, header_idx, "Total")
    if total is None:
        raise TrigflowError(f"{path}: utilization table has no Total row")
    col = {name: idx for idx, name in enumerate(header)}
    vivado = "DSP48E" in col
    dsp_col = "DSP48E" if vivado else "DSP"

    def cell(name: str) -> int | None:
        return _int(total[col[name]]) if name in col and col[name] < len(total) else None

    resources = {"dsp": cell(dsp_col), "lut": cell("LUT"), "ff": cell("FF"), "bram": cell("BRAM_18K")}
    source = "vivado_hls" if vivado or "Vivado HLS Report" in text else "vitis_hls"
    return _report(resources, latency, ii, period, source)


def parse_cosim_report(path: str | Path) -> dict[str, Any]:
    """Co-simulation result (status, latency and interval min/max in cycles) from ``<top>_cosim.rpt``."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if re.search(r"\|\s*(VHDL|Verilog)\s*\|", line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 8 and cells[1] != "NA":
                return {
                    "rtl": cells[0],
                    "status": cells[1],
                    "latency_min": _int(cells[2]),
                    "latency_max": _int(cells[4]),
                    "ii_min": _int(cells[5]),
                    "ii_max": _int(cells[7]),
                }
    return {"status": "not run"}
