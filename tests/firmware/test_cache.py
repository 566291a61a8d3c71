import json
import shutil
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from trigflow.firmware import cache, fastsim
from trigflow.firmware import convert as conversion
from trigflow.firmware.cache import cache_key, cached_convert
from trigflow.firmware.convert import FirmwareSpec
from trigflow.models.mlp import build_mlp
from trigflow.quantize.presets import QuantSpec

QSPEC = QuantSpec(bits=6, input_bits=14, input_integer=4)
FSPEC = FirmwareSpec(input_type=QSPEC.input_type)


@pytest.fixture(scope="module")
def trained():
    model = build_mlp(10, 3, (16, 8), quantized=True, spec=QSPEC)
    rng = np.random.default_rng(0)
    x = QSPEC.quantize_input(rng.normal(scale=3, size=(5000, 10)))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    return model, x, model.predict(x, verbose=0).astype(np.float64)


@pytest.fixture(scope="module")
def built(trained, tmp_path_factory):
    """One cache with the model converted in it (the conversion is counted)."""
    model, _, _ = trained
    root = tmp_path_factory.mktemp("cache")
    calls = []
    real = conversion.convert

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    conversion.convert = counting
    try:
        project, sim = cached_convert(model, FSPEC, cache_dir=root)
    finally:
        conversion.convert = real
    return SimpleNamespace(root=root, project=project, sim=sim, conversions=len(calls))


def _no_conversion(*args, **kwargs):
    raise AssertionError("converted although the cache holds this model")


def test_miss_converts_once_and_is_bit_exact(trained, built):
    _, x, y_q = trained
    assert built.conversions == 1
    assert built.project.parent == built.root / "projects"
    np.testing.assert_array_equal(built.sim.predict(x, threads=2), y_q)
    assert not list((built.project / "firmware").glob("myproject-*.so"))  # hls4ml's library: only on request
    assert not [p for p in (built.root / "projects").iterdir() if p.name.startswith((".staging", ".trash"))]
    manifest = json.loads((built.project / "trigflow_cache.json").read_text())
    assert manifest["key"] == built.project.name and "firmware/parameters.h" in manifest["files"]
    assert ".staging" not in (built.project / "hls4ml_config.yml").read_text()


def test_hit_skips_conversion_and_gives_same_bits(trained, built, monkeypatch):
    model, x, y_q = trained
    monkeypatch.setattr(conversion, "convert", _no_conversion)
    monkeypatch.setattr(fastsim, "_compile", _no_conversion)
    monkeypatch.setenv(cache.CACHE_ENV, str(built.root))
    project, sim = cached_convert(model, FSPEC)  # through $TRIGFLOW_CACHE
    assert project == built.project
    np.testing.assert_array_equal(sim.predict(x, threads=1), y_q)


def test_key_follows_weights_and_spec(trained):
    import tensorflow as tf

    model, _, _ = trained
    key = cache_key(model, FSPEC)
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert cache_key(clone, FSPEC) == key
    assert cache_key(model, FirmwareSpec(input_type=QSPEC.input_type, reuse_factor=2)) != key
    weights = model.get_weights()
    weights[0] = weights[0].copy()
    weights[0][0, 0] += 2**-5
    clone.set_weights(weights)
    assert cache_key(clone, FSPEC) != key


def test_corrupted_entry_is_rebuilt(trained, built, tmp_path):
    model, x, y_q = trained
    root = tmp_path / "cache"
    shutil.copytree(built.root, root)
    entry = root / "projects" / built.project.name
    params = entry / "firmware" / "parameters.h"
    params.write_text(params.read_text().replace("reuse_factor = 1", "reuse_factor = 3", 1))
    calls = []
    real = conversion.convert
    conversion.convert = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        project, sim = cached_convert(model, FSPEC, cache_dir=root)
    finally:
        conversion.convert = real
    assert calls == [1] and project == entry
    assert "reuse_factor = 3" not in params.read_text()
    np.testing.assert_array_equal(sim.predict(x), y_q)


def test_damaged_fast_library_alone_is_rebuilt_without_conversion(trained, built, tmp_path, monkeypatch):
    model, x, y_q = trained
    root = tmp_path / "cache"
    shutil.copytree(built.root, root)
    entry = root / "projects" / built.project.name
    for lib in entry.glob("trigflow_batch-*.so"):
        lib.write_bytes(lib.read_bytes()[:1000])  # truncated
    monkeypatch.setattr(conversion, "convert", _no_conversion)
    project, sim = cached_convert(model, FSPEC, cache_dir=root)
    np.testing.assert_array_equal(sim.predict(x), y_q)


def test_lost_rename_race_uses_the_winner(trained, built, tmp_path, monkeypatch):
    """Another process finishes the same entry while this one converts: its entry wins, ours is dropped."""
    model, x, y_q = trained
    root = tmp_path / "cache"
    key = built.project.name

    def racing_convert(model, project, spec, **kwargs):
        winner = root / "projects" / key
        shutil.copytree(built.project, winner)
        (winner / "winner.txt").write_text("first")
        shutil.copytree(built.project, project)  # "our" conversion: the same files
        return object()

    monkeypatch.setattr(conversion, "convert", racing_convert)
    real_open, looks = cache._open, []

    def open_entry(entry, k):  # the first two looks (before and after taking the lock) find nothing yet
        looks.append(entry)
        return real_open(entry, k) if len(looks) > 2 else None

    monkeypatch.setattr(cache, "_open", open_entry)
    project, sim = cached_convert(model, FSPEC, cache_dir=root)
    assert (project / "winner.txt").exists()
    assert not [p for p in (root / "projects").iterdir() if p.name.startswith(".staging")]
    np.testing.assert_array_equal(sim.predict(x[:1000]), y_q[:1000])


@pytest.mark.slow
def test_two_processes_missing_at_once_convert_once(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        from trigflow.firmware import cache, convert as conversion
        from trigflow.firmware.convert import FirmwareSpec
        from trigflow.models.mlp import build_mlp
        from trigflow.quantize.presets import QuantSpec
        q = QuantSpec(bits=6, input_bits=14, input_integer=4)
        real, calls = conversion.convert, []
        conversion.convert = lambda *a, **k: calls.append(1) or real(*a, **k)
        model, spec = build_mlp(10, 3, (16, 8), spec=q), FirmwareSpec(input_type=q.input_type)
        project, sim = cache.cached_convert(model, spec, cache_dir={str(tmp_path)!r})
        print(project, len(calls))
        """
    )
    command = [sys.executable, "-c", script]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0][0] == outs[1][0]
    assert sorted(int(o[1]) for o in outs) == [0, 1]
