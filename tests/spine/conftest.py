"""Spine fixtures: one small ``trigflow run mlp`` per session, for the run tests and the run-page test."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def small_run(fake_jets, tmp_path_factory):
    """(root, args, completed process) of ``trigflow run mlp`` on the fake jets: run in root/out, project in
    root/prj. Tests read it and leave it as they found it."""
    root = tmp_path_factory.mktemp("run")
    args = ["run", "mlp", "--data", str(fake_jets), "--out", str(root / "out")]
    args += ["--project-dir", str(root / "prj"), "--epochs", "3", "--set", "verify.min_samples=1000"]
    command = [sys.executable, "-c", "from trigflow.cli import main; main()", *args]
    return root, args, subprocess.run(command, capture_output=True, text=True)
