"""The public Python API (``trigflow.run``/``verify``/``evaluate``/``export_onnx``/``estimate``): its shape,
how overrides are read and refused, a cheap ``import trigflow``, and one real run through it."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import trigflow
from trigflow import api, config
from trigflow.errors import TrigflowError

OPERATIONS = ("run", "verify", "evaluate", "export_onnx", "estimate")
RESULTS = ("RunResult", "VerifyResult", "EvaluateResult", "ExportResult", "EstimateResult")


def test_the_package_exports_the_api():
    assert set(OPERATIONS) | set(RESULTS) <= set(trigflow.__all__)
    assert set(api.__all__) <= set(trigflow.__all__)
    for name in trigflow.__all__:
        assert getattr(trigflow, name) is not None
    for name in OPERATIONS:
        assert getattr(trigflow, name) is getattr(api, name)
    for name in RESULTS:
        assert dataclasses.is_dataclass(getattr(trigflow, name))
    assert (Path(trigflow.__file__).parent / "py.typed").is_file()


def test_verify_and_evaluate_stay_functions_after_the_spine_modules_are_imported():
    from trigflow.evaluate_run import evaluate_run  # noqa: F401
    from trigflow.verify_model import verify_model  # noqa: F401

    assert trigflow.verify is api.verify and trigflow.evaluate is api.evaluate


def test_literal_types_list_the_configs_choices():
    assert typing.get_args(api.Kind) == config.KINDS
    assert typing.get_args(api.Backend) == config.BACKENDS
    assert typing.get_args(api.IoType) == config.IO_TYPES
    assert typing.get_args(api.Strategy) == config.STRATEGIES
    hints = typing.get_type_hints(api.verify, globalns=vars(api), localns={"np": None, "StageUI": object})
    assert hints["backend"] == api.Backend | None and hints["io_type"] == api.IoType | None
    assert inspect.signature(api.run).parameters["kind"].kind is inspect.Parameter.POSITIONAL_ONLY


def test_overrides_nested_dotted_and_top_level_read_the_same():
    as_dict = api.nested_overrides({"quant": {"epochs": 2, "bits": 8}, "seed": 3, "out": None})
    dotted = api.nested_overrides({"quant.epochs": 2, "quant.bits": 8, "seed": 3})
    assert as_dict == dotted == {"quant": {"epochs": 2, "bits": 8}, "seed": 3}
    cfg = config.load_config("mlp", overrides=dotted)
    assert (cfg.quant.epochs, cfg.quant.bits, cfg.seed) == (2, 8, 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: trigflow.run("mlp", quant={"epocs": 2}), r"unknown config key 'quant.epocs'.*did you mean 'epochs'"),
        (lambda: trigflow.run("mlp", **{"firmware.partt": "x"}), r"'firmware.partt'.*did you mean 'part'"),
        (lambda: trigflow.run("mlp", epochs=2), r"unknown config key 'epochs': did you mean 'quant.epochs'"),
        (lambda: trigflow.run("mlp", kind="cnn"), r"the kind is run's first argument"),
        (lambda: trigflow.run("mlpp"), r"unknown kind 'mlpp': choose one of mlp, cnn, gnn, ae"),  # type: ignore[arg-type]
        (lambda: trigflow.run("mlp", firmware={"io_type": "stream"}), r"unknown io_type 'stream': choose one of"),
        (lambda: trigflow.run("mlp", firmware={"strategy": "Fast"}), r"unknown strategy 'Fast'"),
        (lambda: trigflow.verify("m.h5", backend="Vitus"), r"unknown backend 'Vitus': choose one of Vitis"),  # type: ignore[arg-type]
        (lambda: trigflow.verify("m.h5", verify={"min_sample": 5}), r"did you mean 'min_samples'"),
        (lambda: trigflow.verify("m.onnx"), r"trigflow firmware m.onnx"),
    ],
)
def test_bad_overrides_and_choices_are_one_line_errors_before_any_work(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrigflowError, match=message) as error:
        call()
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_import_is_cheap():
    code = "import sys, trigflow; print(sorted({'tensorflow', 'keras', 'hls4ml', 'qkeras', 'numpy', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_through_the_api(fake_jets, tmp_path):
    result = trigflow.run(
        "mlp",
        data=fake_jets,
        out=tmp_path / "run",
        project_dir=tmp_path / "prj",
        model={"hidden": (16,)},
        quant={"epochs": 2},
        **{"verify.min_samples": 1000},
    )
    assert isinstance(result, trigflow.RunResult)
    assert result.passed and result.failures == [] and result.report["passed"] is True
    assert result.report["bit_exact_fraction"] == 1.0
    assert {"kind", "accuracy", "checks", "project_dir", "run_dir", "resources", "versions"} <= set(result.report)
    assert result.run_dir == (tmp_path / "run").resolve() and result.project_dir == (tmp_path / "prj").resolve()
    assert {"report.json", "junit.xml", "roc.png", "qkeras_model.h5", "config.json"} <= set(result.files)
    assert (result.project_dir / "firmware" / "myproject.cpp").is_file()
    assert result.config.quant.epochs == 2 and result.config.data.path == str(fake_jets)
    x, y = result.test_data
    assert len(x) == len(y) == result.report["samples"]
    assert set(result.models) == {"float", "qkeras"}
    assert result.models["qkeras"].count_params() == result.report["parameters"]

    estimate = trigflow.estimate(result.run_dir)
    assert estimate.project_dir == result.project_dir
    assert estimate.report == {k: result.report[k] for k in estimate.report}
    assert estimate.table[-1]["layer"] == "total"


# --- packaging ---------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
PINS = {"pyparsing", "pyarrow"}  # declared only to pin other packages' dependencies (comments in pyproject.toml)


def _name(requirement: str) -> str:
    import re

    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_declared_dependencies_equal_imported_ones():
    import ast
    import importlib.metadata
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    local = {p.stem for folder in ("scripts", "tests") for p in (ROOT / folder).rglob("*.py")} | {"trigflow"}
    modules = set()
    for folder in ("trigflow", "models", "quantize", "firmware", "proof", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    distributions = importlib.metadata.packages_distributions()
    imported = {
        _name(distributions[m][0]) for m in modules - set(sys.stdlib_module_names) - local
    }
    assert imported - optional == declared - PINS


def test_readme_example_compiles_and_uses_only_the_public_api():
    import re

    readme = (ROOT / "README.md").read_text()
    example = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    compile(example, "README.md", "exec")
    assert set(re.findall(r"\btrigflow\.(\w+)\(", example)) <= set(trigflow.__all__)
