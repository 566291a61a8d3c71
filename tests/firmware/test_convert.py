import os

import numpy as np
import pytest

from trigflow.errors import TrigflowError
from trigflow.firmware.convert import FirmwareSpec, convert
from trigflow.firmware.csim import predict
from trigflow.models.mlp import build_mlp
from trigflow.quantize.presets import QuantSpec


@pytest.fixture(scope="module")
def trained_mlp():
    spec = QuantSpec(bits=6, input_bits=14, input_integer=4)
    model = build_mlp(10, 3, (16, 8), quantized=True, spec=spec)
    rng = np.random.default_rng(0)
    x = spec.quantize_input(rng.normal(scale=3, size=(3000, 10)))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    return model, spec, x


def test_csim_is_bit_exact_with_qkeras(trained_mlp, tmp_path):
    model, spec, x = trained_mlp
    hls_model = convert(model, tmp_path / "prj", FirmwareSpec(input_type=spec.input_type))
    np.testing.assert_array_equal(predict(hls_model, x), model.predict(x, verbose=0).astype(np.float64))
    assert (tmp_path / "prj" / "build_lib.log").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_project_is_relocatable(trained_mlp, tmp_path):
    """Weights live in the headers, so the compiled C-sim does not read files from its build folder."""
    model, spec, x = trained_mlp
    hls_model = convert(model, tmp_path / "a", FirmwareSpec(input_type=spec.input_type))
    (tmp_path / "a").rename(tmp_path / "b")
    np.testing.assert_array_equal(predict(hls_model, x[:500]), model.predict(x[:500], verbose=0).astype(np.float64))
    assert ".part" not in (tmp_path / "b" / "hls4ml_config.yml").read_text()  # no temporary build path recorded


def test_existing_project_needs_force(trained_mlp, tmp_path):
    model, spec, _ = trained_mlp
    (tmp_path / "prj").mkdir()
    (tmp_path / "prj" / "mine.txt").write_text("keep")
    with pytest.raises(TrigflowError, match="--force"):
        convert(model, tmp_path / "prj", FirmwareSpec(input_type=spec.input_type), compile=False)
    assert (tmp_path / "prj" / "mine.txt").read_text() == "keep"


@pytest.mark.slow  # 10 s: two compiles showing why trigflow picks its own types (the others prove ours exact)
def test_naive_hls4ml_config_is_not_exact_but_ours_is(tmp_path):
    """Inputs on a grid finer than hls4ml's default fixed<16,6>: the default config truncates them."""
    fine = QuantSpec(bits=6, input_bits=20, input_integer=4)
    model = build_mlp(10, 3, (16, 8), quantized=True, spec=fine)
    x = fine.quantize_input(np.random.default_rng(1).normal(scale=3, size=(2000, 10)))
    y_q = model.predict(x, verbose=0).astype(np.float64)
    naive = convert(model, tmp_path / "naive", FirmwareSpec(input_type=None, bit_exact=False))
    assert np.all(predict(naive, x) == y_q, axis=1).mean() < 1.0
    ours = convert(model, tmp_path / "ours", FirmwareSpec(input_type=fine.input_type))
    np.testing.assert_array_equal(predict(ours, x), y_q)


def test_reuse_factor_reaches_every_layer(trained_mlp, tmp_path):
    model, spec, x = trained_mlp
    hls_model = convert(model, tmp_path / "prj", FirmwareSpec(input_type=spec.input_type, reuse_factor=4))
    dense = [layer for layer in hls_model.get_layers() if layer.class_name == "Dense"]
    assert dense and all(layer.get_attr("reuse_factor") == 4 for layer in dense)
    np.testing.assert_array_equal(predict(hls_model, x), model.predict(x, verbose=0).astype(np.float64))


def test_fast_build_flags_are_added_once(tmp_path):
    from trigflow.firmware.convert import FAST_BUILD_FLAGS, use_fast_build_flags

    script = tmp_path / "build_lib.sh"
    script.write_text('#!/bin/bash\nCC=g++\nCFLAGS="-O3 -fPIC"\n${CC} ${CFLAGS} -c x.cpp\n')
    use_fast_build_flags(tmp_path)
    use_fast_build_flags(tmp_path)
    text = script.read_text()
    assert f'CFLAGS="-O3 -fPIC {FAST_BUILD_FLAGS}"' in text  # -O1 in FAST_BUILD_FLAGS wins over -O3 and text.count(FAST_BUILD_FLAGS) == 1


def test_compiler_crash_while_unrolling_is_rebuilt_without_unrolling(tmp_path, monkeypatch):
    """GCC 12 ICEs in cunroll(i) on some big weight headers: one retry with those passes disabled."""
    import types

    from trigflow.firmware.convert import UNROLL_CRASH_FLAGS, compile_project

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "g++"
    fake.write_text(
        '#!/bin/bash\ncase "$*" in *-fdisable-tree-cunroll*) exit 0;; esac\n'
        'echo "during GIMPLE pass: cunrolli" >&2\n'
        'echo "x.cpp:1:1: internal compiler error: in gimple_duplicate_bb" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    project = tmp_path / "prj"
    project.mkdir()
    (project / "build_lib.sh").write_text('#!/bin/bash\nset -e\nCC=g++\nCFLAGS="-O3 -fPIC"\n${CC} ${CFLAGS} -c x.cpp\n')
    values = {"Stamp": "abc"}
    config = types.SimpleNamespace(
        get_output_dir=lambda: str(project), get_project_name=lambda: "myproject", get_config_value=values.get
    )
    library = compile_project(types.SimpleNamespace(config=config))
    assert library == project / "firmware" / "myproject-abc.so"
    assert UNROLL_CRASH_FLAGS in (project / "build_lib.sh").read_text()
    assert "rebuilt with" in (project / "build_lib.log").read_text()


def test_run_config_maps_onto_firmware_spec_in_one_place():
    """The firmware defaults are written once (FirmwareSpec); the config section holds exactly its
    run-configurable fields."""
    import dataclasses

    from trigflow.config import FirmwareConfig

    assert tuple(f.name for f in dataclasses.fields(FirmwareConfig)) == FirmwareSpec.CONFIG_FIELDS
    assert FirmwareSpec.from_config(FirmwareConfig()) == FirmwareSpec()
    custom = FirmwareConfig(reuse_factor=4, io_type="io_stream", parallelization_factor=16)
    assert FirmwareSpec.from_config(custom, input_type="fixed<8,3>") == FirmwareSpec(
        reuse_factor=4, io_type="io_stream", input_type="fixed<8,3>", parallelization_factor=16
    )


def test_a_failed_check_leaves_no_project(trained_mlp, tmp_path):
    model, spec, _ = trained_mlp

    def refuse(hls_model):
        raise TrigflowError("not what was asked for")

    with pytest.raises(TrigflowError, match="not what was asked for"):
        convert(model, tmp_path / "prj", FirmwareSpec(input_type=spec.input_type), check=refuse)
    assert not list(tmp_path.iterdir())
