"""Spine layer: the one typed run configuration every stage reads its slice of.

A ``RunConfig`` is built from defaults, then a YAML/TOML file (``--config``), then command-line overrides
(``section.key=value``). Unknown keys and ill-typed values are one-line errors naming the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trigflow.errors import TrigflowError
from trigflow.firmware.convert import FirmwareSpec

KINDS = ("mlp", "cnn", "gnn", "ae", "rnn")
BACKENDS = ("Vitis", "Vivado", "Quartus")
IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource", "distributed_arithmetic")  # the last: hls4ml DA on Dense/Conv (da4ml)
PER_LAYER = ("none", "sensitivity")
PROJECT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Xilinx part names (xc<family><size>-<package>-<speed>...) and Intel ones (e.g. 10AX115S2F45I1SG, 1SG280...).
PART_NAME = re.compile(r"^(xc[a-z0-9]+-[a-z0-9]+-[a-z0-9-]+|[0-9]{1,2}[a-z]{2}[a-z0-9]{6,})$", re.IGNORECASE)


@dataclass
class DataConfig:
    path: str | None = None  # None: the data set embedded in the package
    seed: int = 0
    test_fraction: float = 0.25
    val_fraction: float = 0.1
    max_samples: int | None = None  # cap on jets read (quick runs); None: all


@dataclass
class ModelConfig:
    hidden: tuple[int, ...] = (64, 32, 32)  # dense widths (MLP; head of CNN/GNN; encoder of the autoencoder)
    filters: tuple[int, ...] = (8, 16)  # CNN convolution blocks
    arch: str = "default"  # variant within a kind, e.g. gnn: "in" | "garnet" | "deepsets"; ae: "ae" | "vae"
    n_particles: int = 16  # GNN: constituents per jet
    # GNN Deep Sets: widths of the per-particle network φ (replicated on every particle, so it sets most of
    # the firmware's size); () = the arch's own φ 64 (trigflow.kinds.gnn.DEEPSETS_WIDTHS)
    phi_hidden: tuple[int, ...] = ()
    latent: int = 3  # autoencoder latent size


# Per-kind defaults, applied before the config file and flags.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"quant": {"sparsity": 0.5}},  # pruned: 0 DSP, 30k LUT, 35 ns RTL at -0.2 points (BENCHMARKS)
    "cnn": {
        "model": {"hidden": (32,)},
        "quant": {"epochs": 15},
        "firmware": {"io_type": "io_stream"},
        "verify": {"min_samples": 2000},
    },
    # gnn: Deep Sets, φ 64 per particle, ρ 64-32-32: 231k LUT, 0 DSP, 50 ns, II 1 (docs/rtl.md); the IN
    # of earlier versions: --set model.arch=in --set model.hidden=32,32
    "gnn": {
        "model": {"arch": "deepsets", "hidden": (64, 32, 32)},
        "quant": {"bits": 8},
        "verify": {"min_samples": 5000},
    },
    "ae": {"model": {"arch": "ae", "hidden": (16,)}, "verify": {"min_samples": 10_000}},  # 50 ns RTL (BENCHMARKS)
    # rnn: hidden = (recurrent units, head widths...); n_particles = sequence length
    "rnn": {
        "model": {"arch": "gru", "hidden": (16, 16), "n_particles": 16},
        "quant": {"bits": 8},
        "verify": {"min_samples": 10_000},
    },
}


@dataclass
class QuantConfig:
    bits: int = 6  # weights, biases and activations
    integer: int = 0
    input_bits: int = 16  # the input format fixed<input_bits, input_integer + 1>
    input_integer: int = 5
    sparsity: float = 0.0  # target fraction of pruned weights (tensorflow-model-optimization)
    # Per-layer widths (MLP): one bit width per Dense layer in order (hidden..., logits), for its weights,
    # bias and the activation after it; () = `bits` everywhere. per_layer="sensitivity" chooses them (see
    # quantize/sensitivity.py; the choice overwrites layer_bits): start at `bits`, lower each layer while
    # validation accuracy stays within per_layer_tolerance of the uniform model, not below per_layer_min_bits.
    layer_bits: tuple[int, ...] = ()
    per_layer: str = "none"
    per_layer_tolerance: float = 0.005
    per_layer_min_bits: int = 3
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 3e-3
    patience: int = 5


_FIRMWARE = FirmwareSpec()  # the firmware defaults are written once, in FirmwareSpec


@dataclass
class FirmwareConfig:
    """The run-configurable part of ``firmware.convert.FirmwareSpec`` (``FirmwareSpec.CONFIG_FIELDS``, mapped by
    ``FirmwareSpec.from_config``), with its defaults."""

    backend: str = _FIRMWARE.backend
    part: str = _FIRMWARE.part
    clock_period: float = _FIRMWARE.clock_period  # ns
    io_type: str = _FIRMWARE.io_type
    strategy: str = _FIRMWARE.strategy
    reuse_factor: int = _FIRMWARE.reuse_factor
    parallelization_factor: int = _FIRMWARE.parallelization_factor  # items per cycle of per-item layers (GNN)
    project_name: str = _FIRMWARE.project_name
    rtl: bool = _FIRMWARE.rtl  # also `trigflow rtl` after a passed run (da4ml Verilog, Verilator proof)


@dataclass
class VerifyConfig:
    min_bit_exact_fraction: float = 1.0
    max_onnx_abs_diff: float = 1e-5
    min_samples: int = 10_000


@dataclass
class RunConfig:
    kind: str = "mlp"
    seed: int = 0
    out: str | None = None  # default runs/<kind>
    project_dir: str | None = None  # default hls_projects/<kind>
    force: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.kind}")

    @property
    def project_path(self) -> Path:
        return Path(self.project_dir or f"hls_projects/{self.kind}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _suggest(key: str, valid: typing.Iterable[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}valid keys: {', '.join(valid)}"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, (int, float)):  # `hidden: 16` in a config file = (16,), as `--set model.hidden=16`
            items = [value]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise TrigflowError(f"config key {where}: {value!r} is not a list; give e.g. [32, 16]")
        return tuple(_coerce(item, args[0], where) for item in items)
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise TrigflowError(f"config key {where}: {value!r} is not a valid {name}")


def _apply(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise TrigflowError(f"unknown config key '{where}': {_suggest(key, names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise TrigflowError(f"config key '{where}' is a section; give it a mapping of keys")
            _apply(current, value, f"{where}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], where))


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrigflowError(f"config file {path} not found; check the path given to --config")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # parse errors of three libraries; the message says which file
        raise TrigflowError(f"config file {path} cannot be parsed ({exc.__class__.__name__}); fix its syntax") from None
    if not isinstance(data, dict):
        raise TrigflowError(f"config file {path} must hold a mapping of keys at the top level")
    return data


def parse_overrides(pairs: typing.Iterable[str]) -> dict[str, Any]:
    """Turn ``["quant.bits=8", "seed=3"]`` into a nested mapping."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise TrigflowError(f"override '{pair}' must look like section.key=value (e.g. quant.bits=8)")
        dotted, value = pair.split("=", 1)
        *sections, key = dotted.strip().split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return nested


def validate(config: RunConfig) -> RunConfig:
    fw, q, d = config.firmware, config.quant, config.data
    checks = [
        (config.kind in KINDS, f"unknown kind '{config.kind}': choose one of {', '.join(KINDS)}"),
        (fw.backend in BACKENDS, f"unknown backend '{fw.backend}': choose one of {', '.join(BACKENDS)}"),
        (fw.io_type in IO_TYPES, f"unknown io_type '{fw.io_type}': choose one of {', '.join(IO_TYPES)}"),
        (fw.strategy in STRATEGIES, f"unknown strategy '{fw.strategy}': choose one of {', '.join(STRATEGIES)}"),
        (
            bool(PART_NAME.match(fw.part)),
            f"invalid FPGA part '{fw.part}': give a vendor part name such as xcu250-figd2104-2L-e",
        ),
        (0 < fw.clock_period <= 1000, f"invalid clock period {fw.clock_period} ns: give a value in (0, 1000]"),
        (fw.reuse_factor >= 1, f"invalid reuse factor {fw.reuse_factor}: must be ≥ 1"),
        (
            fw.parallelization_factor >= 1,
            f"invalid parallelization factor {fw.parallelization_factor}: must be ≥ 1 "
            "(items per cycle of the per-item layers; the item count makes them fully parallel)",
        ),
        (
            fw.strategy != "distributed_arithmetic" or (fw.reuse_factor == 1 and fw.backend in ("Vitis", "Vivado")),
            f"strategy distributed_arithmetic needs reuse_factor 1 and backend Vitis or Vivado "
            f"(got reuse_factor {fw.reuse_factor}, backend {fw.backend})",
        ),
        (
            bool(PROJECT_NAME.match(fw.project_name)),
            f"invalid project name '{fw.project_name}': use letters, digits and _ only (no path separators or ..)",
        ),
        (2 <= q.bits <= 32, f"invalid bit width {q.bits}: choose 2..32"),
        (0 <= q.integer < q.bits, f"invalid integer bits {q.integer}: need 0 ≤ integer < bits ({q.bits})"),
        (
            2 <= q.input_bits <= 32 and 0 <= q.input_integer < q.input_bits,
            f"invalid input format {q.input_bits} bits / {q.input_integer} integer bits",
        ),
        (0 <= q.sparsity < 1, f"invalid sparsity {q.sparsity}: choose a fraction in [0, 1)"),
        (
            all(2 <= b <= 32 and q.integer < b for b in q.layer_bits),
            f"invalid quant.layer_bits {q.layer_bits}: each width must be in 2..32 and > quant.integer",
        ),
        (
            q.per_layer in PER_LAYER,
            f"unknown quant.per_layer '{q.per_layer}': choose one of {', '.join(PER_LAYER)}",
        ),
        (
            config.kind != "mlp" or not q.layer_bits or len(q.layer_bits) == len(config.model.hidden) + 1,
            f"quant.layer_bits {q.layer_bits}: give one width per Dense layer "
            f"({len(config.model.hidden) + 1} for model.hidden={config.model.hidden} + the logits layer)",
        ),
        (
            config.kind == "mlp" or (not q.layer_bits and q.per_layer == "none"),
            f"quant.layer_bits / quant.per_layer are implemented for mlp only, not {config.kind}",
        ),
        (
            0 <= q.per_layer_tolerance < 1 and 2 <= q.per_layer_min_bits and q.integer < q.per_layer_min_bits,
            "quant.per_layer_tolerance must be in [0, 1), quant.per_layer_min_bits ≥ 2 and > quant.integer",
        ),
        (
            all(w >= 1 for w in config.model.phi_hidden),
            f"invalid model.phi_hidden {config.model.phi_hidden}: each width must be ≥ 1",
        ),
        (
            not config.model.phi_hidden or (config.kind == "gnn" and config.model.arch == "deepsets"),
            f"model.phi_hidden sets the per-particle network of gnn arch=deepsets only, not {config.kind} "
            f"arch={config.model.arch}; add --set model.arch=deepsets or drop it",
        ),
        (q.epochs >= 1 and q.batch_size >= 1, "epochs and batch_size must be ≥ 1"),
        (
            0 < d.test_fraction < 1 and 0 <= d.val_fraction < 1 and d.test_fraction + d.val_fraction < 1,
            "data.test_fraction and data.val_fraction must be fractions that sum to < 1",
        ),
        (0 <= config.verify.min_bit_exact_fraction <= 1, "verify.min_bit_exact_fraction must be in [0, 1]"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrigflowError(message)
    return config


def load_config(
    kind: str = "mlp", path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults, then the file at ``path``, then ``overrides`` (a nested mapping); validated."""
    if kind not in KINDS:
        raise TrigflowError(f"unknown kind '{kind}': choose one of {', '.join(KINDS)}")
    config = RunConfig(kind=kind)
    _apply(config, KIND_DEFAULTS[kind])
    if path is not None:
        _apply(config, _read_file(Path(path)))
        config.kind = kind
    if overrides:
        _apply(config, overrides)
    return validate(config)
