"""Bad input, faults and concurrency (issue #12): one line naming cause and fix, exit code != 0, no
traceback unless ``--debug``, and no partial output (no project, report, ``.part``/``.lock``/``.kept`` entry).

The catalogue and where each item is tested ("both": message and absence of output asserted). Paths are
relative to tests/; "here" is this file.
- missing model file: spine/test_verify_cli.py::test_bad_inputs_are_one_line_errors[missing.h5] (both)
- corrupt model file: spine/test_verify_cli.py::test_corrupt_model_is_a_one_line_error (both);
  firmware/test_verify_engine.py::test_load_errors_are_one_line[corrupt] (message)
- truncated model file (.h5, .keras, empty): here, test_truncated_model_file
- JSON without weights: spine/test_verify_cli.py::test_bad_inputs_are_one_line_errors[arch.json] (both);
  firmware/test_verify_engine.py::test_load_errors_are_one_line[json_no_weights, weights_only] (message)
- unsupported layer: here, test_unsupported_layer_names_it_the_alternative_and_the_supported_ones;
  firmware/test_verify_engine.py::test_load_errors_are_one_line[lambda] (message, library level)
- input shape mismatch: spine/test_verify_cli.py::test_bad_inputs_are_one_line_errors[model.h5-...] (both);
  here, test_bad_data_is_refused_before_anything_is_written[x6.npy] (the fix in the message),
  test_data_of_another_shape_names_both_shapes_and_the_fix (8 vs 16 constituents, flattened vs (N, F):
  --reshape named; --reshape where no rule applies), both; the rule applied and recorded:
  spine/test_verify_cli.py::test_reshape_pads_constituents_and_is_recorded (slow)
- NaN/inf in data: here, test_bad_data_is_refused_before_anything_is_written[nan.npy] (verify),
  test_nan_in_run_data_is_refused (run)
- unknown config key: spine/test_config.py::test_unknown_key_suggests_nearest (library);
  spine/test_run_mlp.py::test_bad_option_is_one_line (CLI); here, test_config_errors_on_the_command_line
  (valid keys listed, nearest suggested, nothing written; run and verify)
- invalid part / clock / project name with a separator or ``..``:
  spine/test_config.py::test_bad_values_are_one_line_errors (library); here,
  test_config_errors_on_the_command_line (CLI, run and verify)
- output folder not writable: here, test_output_folder_not_writable (a folder under a regular file; a
  read-only folder: chmod 0o555, or as root, where chmod does not stop writes, a monkeypatched os.access)
- full disk while writing: here, test_full_disk_while_hls4ml_writes_the_project,
  test_full_disk_at_publish_keeps_the_previous_outputs (ENOSPC raised by a monkeypatch)
- g++ missing / failing: here, test_compiler_missing, test_compiler_failing_shows_first_error_and_kept_log
- interrupted run: spine/test_fsio.py::test_atomic_file_appears_only_when_complete (library); here,
  test_ctrl_c_exits_130_and_keeps_nothing (mid-write, and after the project is in place),
  test_ctrl_c_in_a_forced_run_restores_the_previous_project, test_ctrl_c_signal_to_a_real_run (SIGINT)
- existing output not overwritten without --force: spine/test_run_mlp.py::test_rerun_refuses_to_overwrite,
  spine/test_verify_cli.py::test_rerun_refuses_to_overwrite,
  spine/test_fsio.py::test_atomic_dir_refuses_existing_without_force; here,
  test_existing_project_alone_needs_force (only the project exists)
- two runs on one project at once: spine/test_run_mlp.py::test_concurrent_run_on_same_project_is_refused
  (run); here, test_concurrent_verify_is_refused_and_lock_is_released (verify; lock file removed after)
- tracebacks only with --debug: here, test_debug_shows_the_traceback, test_unexpected_error_is_one_line
- command-line usage (exit 2, one line naming the command's --help, nothing written): here,
  test_unknown_option, test_missing_argument, test_bad_option_value, test_unknown_command
- ``trigflow report`` on a folder without a report: here, test_report_without_report_json (both)
- determinism (same config + seed: identical weights, firmware files, report except timings):
  spine/test_run_mlp.py::test_same_seed_gives_identical_weights_project_and_report (not duplicated)
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from trigflow.errors import TrigflowError


@dataclass
class Result:
    code: int
    err: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def cli(monkeypatch, capsys, *args: str) -> Result:
    """``trigflow ARGS`` in this process (the console script's entry point, no interpreter start-up)."""
    from trigflow.cli import main

    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps at the terminal width; keep the error on one line
    monkeypatch.setattr(sys, "argv", ["trigflow", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    return Result(int(exit_.value.code), capsys.readouterr().err)


def assert_error(result: Result, *fragments: str, code: int = 2) -> None:
    assert result.code == code, result.err[-3000:]
    assert "Traceback" not in result.err
    assert len(result.errors) == 1, result.err[-3000:]
    for fragment in fragments:
        assert fragment in result.errors[0], result.errors[0]


def assert_nothing_left(work: Path) -> None:
    """The output folders' parent holds nothing the failed run wrote (outputs, temporaries, locks)."""
    assert not work.exists() or sorted(p.name for p in work.iterdir()) == []


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Tiny models (QKeras Dense 4 → 2 as .h5 and .keras, a Conv1DTranspose, a custom layer) and data
    (6 features; NaN/inf)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    root = tmp_path_factory.mktemp("models")
    q = quantized_bits(6, 0, alpha=1)
    layers = tf.keras.layers
    model = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(4,)),
            QActivation(quantized_bits(8, 2, alpha=1), name="inq"),
            QDense(2, kernel_quantizer=q, bias_quantizer=q, name="dense"),
        ]
    )
    model.save(root / "tiny.h5")
    model.save(root / "tiny.keras")
    x = tf.keras.Input((5, 4))
    tf.keras.Model(x, layers.Conv1DTranspose(2, 3, name="up")(x)).save(root / "transpose.h5")

    class Scale(layers.Layer):  # a user's own layer: its class is not importable by name
        def call(self, inputs):
            return 2.0 * inputs

    x = tf.keras.Input((4,))
    tf.keras.Model(x, QDense(2, kernel_quantizer=q, name="dense")(Scale(name="scale")(x))).save(
        root / "custom.h5"
    )
    x = tf.keras.Input((4, 3))  # 4 constituents × 3 features
    h = layers.Flatten(name="flat")(QActivation(quantized_bits(8, 2, alpha=1), name="inq")(x))
    tf.keras.Model(x, QDense(2, kernel_quantizer=q, name="dense")(h)).save(root / "sets.h5")
    rng = np.random.default_rng(0)
    np.save(root / "c2.npy", rng.normal(size=(1200, 2, 3)).astype(np.float32))
    np.save(root / "flat12.npy", rng.normal(size=(1200, 12)).astype(np.float32))
    data = rng.normal(size=(1200, 4)).astype(np.float32)
    np.save(root / "x6.npy", rng.normal(size=(1200, 6)).astype(np.float32))
    data[5, 1], data[7, 0] = np.nan, np.inf
    np.save(root / "nan.npy", data)
    return root


def verify_args(models: Path, work: Path, model: str = "tiny.h5", *extra: str) -> list[str]:
    return ["verify", str(models / model), "--n", "1000", "--out", str(work / "out"),
            "--project-dir", str(work / "prj"), *extra]


# --- model files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, keep", [("tiny.h5", 0.5), ("tiny.keras", 0.5), ("tiny.h5", 0.0)])
def test_truncated_model_file(models, tmp_path, monkeypatch, capsys, name, keep):
    data = (models / name).read_bytes()
    broken = tmp_path / f"broken{Path(name).suffix}"
    broken.write_bytes(data[: int(len(data) * keep)])
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(tmp_path, work, broken.name))
    assert_error(result, f"model file {broken}", "corrupt or truncated", "re-save it")
    assert_nothing_left(work)


def test_unsupported_layer_names_it_the_alternative_and_the_supported_ones(
    models, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work, "transpose.h5"))
    assert_error(
        result,
        "layer 'up' (Conv1DTranspose) is not supported by trigflow verify",
        "use UpSampling1D followed by Conv1D",
        "supported: InputLayer, Dense, QDense",
    )
    assert_nothing_left(work)


def test_unknown_custom_layer_names_it_and_how_to_register_it(models, tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work, "custom.h5"))
    assert_error(
        result,
        "layer 'scale' (Scale) is a custom layer trigflow does not know",
        "--custom-objects MODULE:Scale",
        "register_keras_v2_layer_handler",
    )
    assert_nothing_left(work)


# --- data ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, fragments",
    [
        ("nan.npy", ["contains NaN/inf in 2 sample(s) (first at index 5)", "clean or drop them"]),
        ("x6.npy", ["the model expects (4,)", "give inputs of that shape"]),
    ],
)
def test_bad_data_is_refused_before_anything_is_written(
    models, tmp_path, monkeypatch, capsys, data, fragments
):
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work, "tiny.h5", "--data", str(models / data)))
    assert_error(result, f"data file {models / data}", *fragments)
    assert_nothing_left(work)


@pytest.mark.parametrize(
    "model, data, extra, fragments",
    [
        ("sets.h5", "c2.npy", (), ["inputs of shape (2, 3) per sample, the model expects (4, 3)",
                                   "pass --reshape (reshape=True) to sort the rows by pT and truncate or "
                                   "zero-pad to 4; or give inputs of that shape"]),
        ("sets.h5", "flat12.npy", (), ["inputs of shape (12,) per sample, the model expects (4, 3)",
                                       "pass --reshape (reshape=True) to flatten/unflatten them in C order"]),
        ("tiny.h5", "x6.npy", ("--reshape",), ["inputs of shape (6,) per sample, the model expects (4,)",
                                               "no reshape rule applies", "give inputs of that shape"]),
    ],
)
def test_data_of_another_shape_names_both_shapes_and_the_fix(
    models, tmp_path, monkeypatch, capsys, model, data, extra, fragments
):
    work = tmp_path / "w"
    args = verify_args(models, work, model, "--data", str(models / data), *extra)
    result = cli(monkeypatch, capsys, *args)
    assert_error(result, f"data file {models / data}", *fragments)
    assert_nothing_left(work)


def test_nan_in_run_data_is_refused(fake_jets, tmp_path, monkeypatch, capsys):
    import h5py

    bad = tmp_path / "nan_jets.h5"
    shutil.copyfile(fake_jets, bad)
    with h5py.File(bad, "r+") as f:
        f["hlf"][3, 2] = np.nan
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, "run", "mlp", "--data", str(bad), "--out", str(work / "out"),
                 "--project-dir", str(work / "prj"), "--epochs", "1", "--set", "verify.min_samples=1000")
    assert_error(result, "contains NaN/inf in 1 sample(s) (first at index 3)", "clean or drop them")
    assert_nothing_left(work)


# --- configuration ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "verify"])
@pytest.mark.parametrize(
    "option, fragments",
    [
        ("firmware.partt=xcu250-figd2104-2L-e", ["unknown config key 'firmware.partt'", "did you mean 'part'",
                                                "valid keys: backend, part, clock_period"]),
        ("firmware.part=not-a-part", ["invalid FPGA part 'not-a-part'", "such as xcu250-figd2104-2L-e"]),
        ("firmware.clock_period=0", ["invalid clock period 0.0 ns", "give a value in (0, 1000]"]),
        ("firmware.clock_period=fast", ["firmware.clock_period: 'fast' is not a valid float"]),
        ("firmware.project_name=../evil", ["invalid project name '../evil'", "no path separators or .."]),
        ("firmware.project_name=a/b", ["invalid project name 'a/b'"]),
        ("firmware.project_name=..", ["invalid project name '..'"]),
    ],
)
def test_config_errors_on_the_command_line(models, tmp_path, monkeypatch, capsys, command, option, fragments):
    work = tmp_path / "w"
    if command == "run":
        args = ["run", "mlp", "--out", str(work / "out"), "--project-dir", str(work / "prj")]
    else:
        args = verify_args(models, work)
    assert_error(cli(monkeypatch, capsys, *args, "--set", option), *fragments)
    assert_nothing_left(work)


# --- where the outputs go -----------------------------------------------------------------------------------
def test_output_folder_not_writable(models, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = cli(monkeypatch, capsys, *verify_args(models, blocker / "sub"))
    assert_error(result, f"cannot create folder {blocker / 'sub'}", f"{blocker} is a file, not a folder",
                 "choose another output path")
    assert blocker.read_text() == "not a folder"

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    if os.geteuid() == 0:  # root writes through 0o555: make the check see what a user would
        real_access = os.access
        def access(p, mode, **kw):
            return Path(p) != read_only and real_access(p, mode, **kw)

        monkeypatch.setattr(os, "access", access)
    else:
        read_only.chmod(0o555)
    try:
        result = cli(monkeypatch, capsys, *verify_args(models, read_only))
    finally:
        read_only.chmod(0o755)
    assert_error(result, f"cannot write to {read_only}: folder is not writable", "choose another output path")
    assert_nothing_left(read_only)


def test_existing_project_alone_needs_force(models, tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    (work / "prj").mkdir(parents=True)
    (work / "prj" / "mine.txt").write_text("keep")
    for args in (verify_args(models, work),
                 ["run", "mlp", "--out", str(work / "out"), "--project-dir", str(work / "prj")]):
        result = cli(monkeypatch, capsys, *args)
        assert_error(result, f"project folder {work / 'prj'} already exists", "pass --force")
        assert sorted(p.name for p in work.iterdir()) == ["prj"]
        assert (work / "prj" / "mine.txt").read_text() == "keep"


# --- faults while writing -----------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_hls4ml_writes_the_project(models, tmp_path, monkeypatch, capsys):
    from hls4ml.model.graph import ModelGraph

    monkeypatch.setattr(ModelGraph, "write", _enospc)
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work))
    assert_error(
        result, f"disk full while writing {work / 'prj'}", "free space or choose another output path"
    )
    assert_nothing_left(work)


def previous_outputs(work: Path) -> None:
    """Run and project folders of an earlier run, each holding one old.txt, to be replaced with --force."""
    for name in ("out", "prj"):
        (work / name).mkdir(parents=True)
        (work / name / "old.txt").write_text(name)


def assert_previous_outputs_kept(work: Path) -> None:
    for name in ("out", "prj"):
        assert [p.name for p in (work / name).iterdir()] == ["old.txt"]


@pytest.mark.slow  # 20 s (a whole verify first); restoring the previous outputs: test_ctrl_c_in_a_forced_run_...
def test_full_disk_at_publish_keeps_the_previous_outputs(models, tmp_path, monkeypatch, capsys):
    """--force over old outputs, ENOSPC as the report folder is renamed into place: the old ones come back."""
    work = tmp_path / "w"
    previous_outputs(work)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == work / "out" and ".part" in Path(src).name:
            _enospc()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    result = cli(monkeypatch, capsys, *verify_args(models, work, "tiny.h5", "--force"))
    assert_error(result, f"disk full while writing {work / 'out'}", "free space")
    assert sorted(p.name for p in work.iterdir()) == ["out", "prj"]
    assert_previous_outputs_kept(work)


def test_compiler_missing(models, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work))
    assert_error(result, "g++ not found on PATH", "apt-get install g++")
    assert_nothing_left(work)


def test_compiler_failing_shows_first_error_and_kept_log(models, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "g++").write_text(
        "#!/bin/sh\necho 'note: fake compiler' >&2\n"
        "echo 'firmware/myproject.cpp:3:10: fatal error: simulated.h: No such file or directory' >&2\n"
        "exit 1\n"
    )
    (fake / "g++").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(logs))  # where the failed build's log is kept
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work))
    first = "firmware/myproject.cpp:3:10: fatal error: simulated.h: No such file or directory"
    assert_error(result, f"C-simulation compile failed: {first}", "full g++ log: ")
    log = Path(result.errors[0].split("full g++ log: ")[1].rstrip(")"))
    assert log.parent == logs and first in log.read_text()
    assert_nothing_left(work)


# --- Ctrl-C -------------------------------------------------------------------------------------------------
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "where",
    [
        "trigflow.firmware.convert.compile_project",
        pytest.param("trigflow.proof.checks.prove", marks=pytest.mark.slow),  # 21 s: the whole build first
    ],
)
def test_ctrl_c_exits_130_and_keeps_nothing(models, tmp_path, monkeypatch, capsys, where):
    """During the g++ build (both folders still temporary) and after the project is in place (the proof)."""
    monkeypatch.setattr(where, _interrupt)
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work))
    assert_error(result, "interrupted (Ctrl-C)", "no partial output was kept", code=130)
    assert_nothing_left(work)


def test_ctrl_c_in_a_forced_run_restores_the_previous_project(fake_jets, tmp_path, monkeypatch, capsys):
    """`trigflow run` with --force, interrupted after training: the old project and run folder are intact."""
    work = tmp_path / "w"
    previous_outputs(work)
    monkeypatch.setattr("trigflow.pipeline.build_firmware", _interrupt)
    result = cli(monkeypatch, capsys, "run", "mlp", "--data", str(fake_jets), "--out", str(work / "out"),
                 "--project-dir", str(work / "prj"), "--force", "--epochs", "1",
                 "--set", "verify.min_samples=1000", "--set", "model.hidden=4,4")
    assert_error(result, "interrupted (Ctrl-C)", code=130)
    assert sorted(p.name for p in work.iterdir()) == ["out", "prj"]
    assert_previous_outputs_kept(work)


@pytest.mark.slow  # 18-21 s (a real subprocess run); in-process Ctrl-C: test_ctrl_c_exits_130_and_keeps_nothing
def test_ctrl_c_signal_to_a_real_run(models, tmp_path):
    """SIGINT to the console script while it writes the project: exit 130, one line, nothing left."""
    work = tmp_path / "w"
    env = {**os.environ, "COLUMNS": "1000"}
    script = Path(sys.executable).with_name("trigflow")  # the console script, as a user starts it
    command = [str(script)]
    if not script.exists():
        command = [sys.executable, "-c", "from trigflow.cli import main; main()"]
    proc = subprocess.Popen(
        [*command, *verify_args(models, work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
        # a background CI job inherits SIGINT ignored (POSIX shells do that for `cmd &`), and Python keeps an
        # ignored SIGINT ignored: start the run as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".part") for p in work.glob(".prj.*")):  # the project is being written
            assert proc.poll() is None, "the run ended before writing its project"
            assert time.monotonic() < deadline, "no project folder appeared within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_error(Result(proc.returncode, err), "interrupted (Ctrl-C)", code=130)
    assert_nothing_left(work)


# --- concurrency --------------------------------------------------------------------------------------------
def test_concurrent_verify_is_refused_and_lock_is_released(models, tmp_path, monkeypatch, capsys):
    from trigflow.fsio import exclusive

    work = tmp_path / "w"
    with exclusive(work / "prj"):
        result = cli(monkeypatch, capsys, *verify_args(models, work))
        with pytest.raises(TrigflowError, match="being written by another trigflow run"):
            with exclusive(work / "prj"):
                pass
    assert_error(result, f"{work / 'prj'} is being written by another trigflow run (pid {os.getpid()})",
                 "wait for it or choose another path")
    assert_nothing_left(work)  # the lock file goes with the lock
    with exclusive(work / "prj"):  # and the next run gets it
        pass


# --- tracebacks ---------------------------------------------------------------------------------------------
def test_debug_shows_the_traceback(models, tmp_path, monkeypatch):
    from trigflow.cli import main

    monkeypatch.setattr(sys, "argv", ["trigflow", "--debug", *verify_args(models, tmp_path, "missing.h5")])
    with pytest.raises(TrigflowError, match="not found"):
        main()


def test_unexpected_error_is_one_line(models, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("trigflow.firmware.loaders.load_model", broken)
    work = tmp_path / "w"
    result = cli(monkeypatch, capsys, *verify_args(models, work))
    assert_error(result, "RuntimeError: a bug (rerun with --debug for the traceback)", code=1)
    assert_nothing_left(work)


# --- command-line usage -------------------------------------------------------------------------------------
def usage_error(monkeypatch, capsys, tmp_path: Path, *args: str) -> str:
    """``trigflow ARGS`` from an empty folder: exit 2, one error line, no traceback, nothing written."""
    monkeypatch.chdir(tmp_path)
    result = cli(monkeypatch, capsys, *args)
    assert_error(result, code=2)
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert_nothing_left(tmp_path)
    return result.errors[0]


def test_unknown_detector_for_generated_jets(monkeypatch, capsys, tmp_path):
    out = tmp_path / "jets.h5"
    result = cli(monkeypatch, capsys, "data", "jets", "--n", "5", "--detector", "cms", "--out", str(out))
    assert_error(result, "unknown detector 'cms'; choose from none, hcal, hcal_ecal")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_leading_jet_labelling_without_diboson_jets(monkeypatch, capsys, tmp_path):
    out = tmp_path / "jets.h5"
    result = cli(monkeypatch, capsys, "data", "jets", "--n", "5", "--boson-labelling", "leading", "--out", str(out))
    assert_error(result, "boson_labelling='leading' needs boson_processes='diboson'")
    assert list(tmp_path.iterdir()) == []


def test_unknown_option(monkeypatch, capsys, tmp_path):
    line = usage_error(monkeypatch, capsys, tmp_path, "run", "--nope", "--out", str(tmp_path / "out"))
    assert "No such option: --nope" in line and "see 'trigflow run --help'" in line


def test_missing_argument(monkeypatch, capsys, tmp_path):
    line = usage_error(monkeypatch, capsys, tmp_path, "estimate")
    assert "Missing argument 'path'" in line and "see 'trigflow estimate --help'" in line


def test_bad_option_value(monkeypatch, capsys, tmp_path):
    line = usage_error(monkeypatch, capsys, tmp_path, "run", "mlp", "--epochs", "many")
    assert "Invalid value for '--epochs'" in line and "see 'trigflow run --help'" in line


def test_unknown_command(monkeypatch, capsys, tmp_path):
    line = usage_error(monkeypatch, capsys, tmp_path, "trian")
    assert "No such command 'trian'" in line and "see 'trigflow --help'" in line


def test_report_without_report_json(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "empty_run"
    folder.mkdir()
    result = cli(monkeypatch, capsys, "report", str(folder))
    assert_error(result, "report.json", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == []  # no page, no temporary left


def test_registered_custom_layer_without_hls4ml_converter_says_how_to_add_one(
    models, tmp_path, monkeypatch, capsys
):
    """--custom-objects module:Class makes the file load; without an hls4ml handler for the class, one line
    says how to register one (exit 2, nothing written)."""
    (tmp_path / "scalemod.py").write_text(
        "import tensorflow as tf\n\n\nclass Scale(tf.keras.layers.Layer):\n"
        "    def call(self, inputs):\n        return 2.0 * inputs\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    work = tmp_path / "w"
    args = verify_args(models, work, "custom.h5", "--custom-objects", "scalemod:Scale")
    result = cli(monkeypatch, capsys, *args)
    assert_error(
        result,
        "layer 'scale' (Scale) has no hls4ml converter",
        "register_keras_v2_layer_handler('Scale', handler)",
    )
    assert_nothing_left(work)


def test_custom_objects_that_cannot_be_imported_are_one_line(models, tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    args = verify_args(models, work, "custom.h5", "--custom-objects", "nomod_x:Scale")
    result = cli(monkeypatch, capsys, *args)
    assert_error(result, "--custom-objects nomod_x:Scale: cannot import module 'nomod_x'", "PYTHONPATH")
    assert_nothing_left(work)
