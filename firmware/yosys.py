"""Firmware layer: measured resources of an RTL project with the open synthesiser yosys (no vendor tools).

``synthesize_rtl(project_dir)`` reads the project's ``rtl/rtl_manifest.json`` (written by ``trigflow rtl``:
``top``, ``sources`` relative to the manifest, ``clock_period_ns``, ``part``, ``latency_cycles``, ``ii``),
runs

    read_verilog -sv -defer <sources>; synth_xilinx -family <family> -flatten -noiopad -noclkbuf -top <top>

and returns the report in the keys of ``trigflow.firmware.estimate.Estimate.to_report()`` (``resources``
{dsp, lut, ff, bram} plus ``carry``, ``latency_cycles``, ``latency_ns``, ``ii``) with ``source: "yosys"``,
and the logic depth per pipeline stage. It writes ``rtl/yosys_report.json`` and ``rtl/yosys.log``
(each atomically; a failed run writes the log only).

Part -> ``synth_xilinx -family`` (``PART_FAMILIES``; first match wins):

    ==============================  ===========================================  ======
    part name                        devices                                      family
    ==============================  ===========================================  ======
    ``xc{vu,ku,au}<n>p...``          Virtex/Kintex/Artix UltraScale+ (xcvu9p,     xcup
                                     xcvu13p, xcku15p, xcau25p)
    ``xczu<n>...``                   Zynq UltraScale+ MPSoC / RFSoC               xcup
    ``xcu<n>...``                    Alveo U-series cards (xcu50, xcu250, xcu280)  xcup
    ``xc{vu,ku}<n>...`` (no ``p``)   Virtex/Kintex UltraScale (xcvu095, xcku040)  xcu
    ``xc7{a,k,v,z,s}<n>...``         7 series (Artix, Kintex, Virtex, Zynq,       xc7
                                     Spartan)
    ==============================  ===========================================  ======

Counting (cells of the flattened netlist): LUT = LUT1..LUT6, INV (a LUT1 on the device) and LUT-based
memories/shift registers (RAM*X*, RAM32M/64M, SRL*); FF = FDRE/FDSE/FDCE/FDPE and latches; DSP =
DSP48E1/DSP48E2; CARRY = CARRY4 + CARRY8 (yosys 0.23 maps UltraScale+ carry logic to CARRY4 cells, 4 bits
each, where Vivado would use CARRY8); BRAM in 18 kb units like the HLS reports (RAMB18 = 1, RAMB36 = 2).
I/O and clock buffers are not inserted (``-noiopad -noclkbuf``): the design is a block inside a larger
firmware, like the out-of-context HLS figures it is compared with.

Logic depth: yosys 0.23's ``ltp`` gives one longest path per module and, with ``-noff``, does not stop at
the Xilinx flip-flops it mapped (FDRE), so it measures through the registers. Instead the synthesised
netlist is written as JSON (``write_json``) and ``logic_levels`` computes, for every register group (the
flip-flops whose outputs form one named register, e.g. da4ml's ``stage1_inp``, or a combinational output
port), the largest number of logic cells (LUT, INV, CARRY, MUXF, DSP) on any path that ends at it and starts
at a flip-flop, a memory or an input port. Like Vivado's "logic levels", every CARRY cell of a chain counts
one level. In a da4ml pipeline the group ``stage<k+1>_inp`` (or the output register ``model_out``) holds the
depth of pipeline stage k.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_file, write_text

__all__ = [
    "MANIFEST",
    "PART_FAMILIES",
    "YosysMissing",
    "count_resources",
    "family_for_part",
    "find_manifest",
    "find_yosys",
    "logic_levels",
    "read_manifest",
    "synthesize_rtl",
]

MANIFEST = "rtl_manifest.json"
REPORT = "yosys_report.json"
LOG = "yosys.log"

# (part-name pattern, yosys synth_xilinx family, devices); first match wins
PART_FAMILIES: tuple[tuple[str, str, str], ...] = (
    (r"xc(vu|ku|au)\d+p", "xcup", "Virtex/Kintex/Artix UltraScale+"),
    (r"xczu\d+", "xcup", "Zynq UltraScale+"),
    (r"xcu\d+", "xcup", "Alveo U-series (UltraScale+)"),
    (r"xc(vu|ku)\d+", "xcu", "Virtex/Kintex UltraScale"),
    (r"xc7[akvzs]\d+", "xc7", "7 series"),
)

_MANIFEST_KEYS = {"top": str, "sources": list, "clock_period_ns": (int, float), "part": str}

# logic levels per cell type (prefix match); sequential cells start and end paths; others count 0
_LEVEL_CELLS = ("LUT", "INV", "CARRY", "MUXF", "DSP48")
_SEQUENTIAL_CELLS = r"FD|LD|RAMB|FIFO|SRL|RAM\d"  # flip-flops, latches, block/LUT memories, shift registers


class YosysMissing(TrigflowError):
    """yosys is not on PATH: the open synthesis path cannot run here."""

    exit_code = 3


def family_for_part(part: str) -> str:
    """The ``synth_xilinx -family`` of an FPGA part name (``PART_FAMILIES``)."""
    name = part.strip().lower()
    for pattern, family, _ in PART_FAMILIES:
        if re.match(pattern, name):
            return family
    known = ", ".join(f"{family} ({devices})" for _, family, devices in PART_FAMILIES)
    raise TrigflowError(
        f"part {part!r} is of no FPGA family yosys synth_xilinx supports here; use one of: {known}"
    )


def find_yosys() -> str:
    """Path of ``yosys`` on PATH, or YosysMissing (exit 3) saying how to install it."""
    found = shutil.which("yosys")
    if found is None:
        raise YosysMissing(
            "yosys not found on PATH: install it with `sudo apt-get install -y yosys` (Debian/Ubuntu) "
            "to measure resources of the RTL project"
        )
    return found


def find_manifest(project_dir: str | Path) -> Path | None:
    """``rtl_manifest.json`` of a project folder (``<project>/rtl/``) or of an RTL folder, else None."""
    root = Path(project_dir)
    for candidate in (root / "rtl" / MANIFEST, root / MANIFEST):
        if candidate.is_file():
            return candidate
    return None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest with checked keys; ``sources`` resolved to absolute paths that exist."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TrigflowError(f"{path} is not a readable RTL manifest ({exc}); re-run `trigflow rtl`") from None
    if not isinstance(manifest, dict):
        raise TrigflowError(f"{path} is not a JSON object; re-run `trigflow rtl`")
    for key, kind in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise TrigflowError(f"{path} lacks a valid {key!r}; re-run `trigflow rtl`")
    sources = [(path.parent / s).resolve() for s in manifest["sources"]]
    if not sources:
        raise TrigflowError(f"{path} lists no sources; re-run `trigflow rtl`")
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise TrigflowError(f"{path} lists sources that do not exist ({missing[0]}); re-run `trigflow rtl`")
    not_verilog = [s.name for s in sources if s.suffix.lower() not in (".v", ".sv", ".vh", ".svh")]
    if not_verilog:
        raise TrigflowError(
            f"{path} lists non-Verilog sources ({not_verilog[0]}); yosys reads Verilog: write the RTL "
            "as Verilog"
        )
    return {**manifest, "sources": sources}


def _script(manifest: dict[str, Any], family: str, netlist: Path, stat: Path) -> str:
    sources = " ".join(f'"{s}"' for s in manifest["sources"])
    top = manifest["top"]
    return "\n".join(
        [
            f"read_verilog -sv -defer {sources}",
            f"hierarchy -check -top {top}",
            f"synth_xilinx -family {family} -flatten -noiopad -noclkbuf -top {top}",
            f"tee -q -o {stat} stat -json",
            "stat",
            f"write_json {netlist}",
            "",
        ]
    )


def _first_error(log: str) -> str:
    for line in log.splitlines():
        if line.startswith("ERROR:") or " ERROR: " in line:
            return line.split("ERROR:", 1)[1].strip()
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def count_resources(cells: dict[str, int]) -> dict[str, int]:
    """LUT/FF/DSP/BRAM (18 kb units)/CARRY from yosys cell counts by type (see the module docstring)."""
    res = {"dsp": 0, "lut": 0, "ff": 0, "bram": 0, "carry": 0}
    for cell, n in cells.items():
        if re.fullmatch(r"LUT[1-6](_2)?|INV|SRL\w*|RAM\d+X\d+\w*|RAM\d+M\w*", cell):
            res["lut"] += n
        elif re.fullmatch(r"FD[A-Z]*|LD[A-Z]*", cell):
            res["ff"] += n
        elif cell.startswith("DSP48"):
            res["dsp"] += n
        elif cell.startswith("CARRY"):
            res["carry"] += n
        elif cell.startswith("RAMB18"):
            res["bram"] += n
        elif cell.startswith("RAMB36"):
            res["bram"] += 2 * n
    return res


def _weight(cell_type: str) -> int | None:
    """Levels a cell adds; None for a sequential cell (a path starts at its outputs, ends at its inputs)."""
    if re.match(_SEQUENTIAL_CELLS, cell_type):
        return None
    return 1 if cell_type.startswith(_LEVEL_CELLS) else 0


def _group_name(names: Iterable[str]) -> str | None:
    """The clearest public name of a register bit: top-level names before hierarchical ones."""
    public = sorted(names, key=lambda n: (n.count("."), len(n), n))
    return public[0] if public else None


def logic_levels(netlist: dict[str, Any], top: str) -> dict[str, int]:
    """Max logic levels into every register group (and combinational output port) of a flat netlist."""
    module = netlist["modules"][top]
    cells: dict[str, dict[str, Any]] = module["cells"]
    driver: dict[int, str] = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "output":
                for b in bits:
                    if isinstance(b, int):
                        driver[b] = name
    bit_names: dict[int, list[str]] = {}
    for net, info in module["netnames"].items():
        if info.get("hide_name"):
            continue
        for b in info["bits"]:
            if isinstance(b, int):
                bit_names.setdefault(b, []).append(net)

    depth: dict[str, int] = {}

    def inputs(cell: dict[str, Any]) -> list[int]:
        dirs = cell.get("port_directions", {})
        return [
            b
            for port, bits in cell["connections"].items()
            if dirs.get(port) == "input"
            for b in bits
            if isinstance(b, int)
        ]

    def arrival(bit: int) -> int:
        """Levels at a net bit: iterative DFS over combinational drivers (a loop counts once)."""
        stack = [driver.get(bit)]
        on_stack: set[str] = set()
        while stack:
            name = stack[-1]
            if name is None or name in depth:
                stack.pop()
                continue
            cell = cells[name]
            weight = _weight(cell["type"])
            if weight is None:
                depth[name] = 0
                stack.pop()
                continue
            sources = [d for d in (driver.get(b) for b in inputs(cell)) if d is not None]
            pending = [d for d in sources if d not in depth and d not in on_stack]
            if pending:
                on_stack.add(name)
                stack.extend(pending)
                continue
            depth[name] = weight + max((depth.get(d, 0) for d in sources), default=0)
            on_stack.discard(name)
            stack.pop()
        src = driver.get(bit)
        return 0 if src is None else depth[src]

    groups: dict[str, int] = {}
    for name, cell in cells.items():
        if _weight(cell["type"]) is not None:
            continue
        q_bits = [
            b
            for port, bits in cell["connections"].items()
            if cell.get("port_directions", {}).get(port) == "output"
            for b in bits
            if isinstance(b, int)
        ]
        label = _group_name(n for b in q_bits for n in bit_names.get(b, [])) or name
        label = label.lstrip("\\")
        levels = max((arrival(b) for b in inputs(cell)), default=0)
        groups[label] = max(groups.get(label, 0), levels)
    for port, info in module.get("ports", {}).items():
        if info.get("direction") != "output":
            continue
        bits = [b for b in info["bits"] if isinstance(b, int)]
        if any(driver.get(b) and _weight(cells[driver[b]]["type"]) is not None for b in bits):
            levels = max(arrival(b) for b in bits)
            groups[f"output {port}"] = max(groups.get(f"output {port}", 0), levels)
    return dict(sorted(groups.items(), key=lambda kv: _natural(kv[0])))


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def synthesize_rtl(project_dir: str | Path) -> dict[str, Any]:
    """Run yosys ``synth_xilinx`` on the project's RTL; write and return the report (``source: "yosys"``)."""
    manifest_path = find_manifest(project_dir)
    if manifest_path is None:
        raise TrigflowError(
            f"{project_dir} has no rtl/{MANIFEST}; write the RTL project first with `trigflow rtl RUN_DIR`"
        )
    manifest = read_manifest(manifest_path)
    family = family_for_part(manifest["part"])
    yosys = find_yosys()
    rtl_dir = manifest_path.parent
    log_path = rtl_dir / LOG
    with tempfile.TemporaryDirectory(prefix="trigflow_yosys_") as tmp:
        work = Path(tmp)
        netlist_path, stat_path = work / "netlist.json", work / "stat.json"
        script = work / "synth.ys"
        script.write_text(_script(manifest, family, netlist_path, stat_path))
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [yosys, "-q", "-l", str(work / LOG), "-s", str(script)],
                cwd=rtl_dir,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise TrigflowError(
                f"yosys could not be started ({exc}); reinstall it with apt-get install yosys"
            ) from None
        seconds = round(time.monotonic() - start, 1)
        log_text = (work / LOG).read_text(errors="replace") if (work / LOG).is_file() else ""
        log_text += proc.stderr and f"\n{proc.stderr}"
        write_text(log_path, log_text)
        if proc.returncode != 0 or not netlist_path.is_file() or not stat_path.is_file():
            raise TrigflowError(f"yosys failed: {_first_error(log_text + proc.stdout)}; see {log_path}")
        stat = json.loads(stat_path.read_text())
        netlist = json.loads(netlist_path.read_text())
    top_key = "\\" + manifest["top"]
    cells = stat["modules"].get(top_key, stat.get("design", {})).get("num_cells_by_type", {})
    levels = logic_levels(netlist, manifest["top"])
    period = float(manifest["clock_period_ns"])
    latency = manifest.get("latency_cycles")
    report = {
        "resources": count_resources(cells),
        "latency_cycles": latency,
        "latency_ns": round(latency * period, 3) if isinstance(latency, int) else None,
        "ii": manifest.get("ii"),
        "source": "yosys",
        "logic_levels": levels,
        "max_logic_levels": max(levels.values(), default=0),
        "cells": dict(sorted(cells.items())),
        "top": manifest["top"],
        "part": manifest["part"],
        "family": family,
        "clock_period_ns": period,
        "yosys_version": netlist.get("creator", ""),
        "seconds": seconds,
        "log": str(log_path),
    }
    with atomic_file(rtl_dir / REPORT) as tmp_report:
        tmp_report.write_text(json.dumps(report, indent=2) + "\n")
    return report
