"""Test helper: a file of ``scripts/`` (not a package) imported as a module, so tests can call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["SCRIPTS", "load_script"]

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str, module_name: str | None = None) -> ModuleType:
    """``scripts/<name>.py``, executed afresh and registered in ``sys.modules`` (default name
    ``trigflow_<name>_script``) so its dataclasses and pickles resolve."""
    spec = importlib.util.spec_from_file_location(module_name or f"trigflow_{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
