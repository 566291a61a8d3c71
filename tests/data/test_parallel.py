"""Data layer: generator chunks on a Ray cluster give the same file as local processes (same seed)."""

from __future__ import annotations

from posixpath import basename

import h5py
import numpy as np
import pytest

from trigflow.data.parallel import ChunkStore, cluster, map_chunks


def _same_h5(a, b) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa) == sorted(fb)
        for name in fa:
            np.testing.assert_array_equal(fa[name][()], fb[name][()])
            assert set(fa[name].attrs) == set(fb[name].attrs)
        skip = {"trigflow_version"}
        for key in set(fa.attrs) - skip:
            np.testing.assert_array_equal(fa.attrs[key], fb.attrs[key])


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_map_chunks_on_ray_keeps_chunk_order(local_ray):
    # the task function must be importable on the workers: a library function, as the generators' are
    chunks = [f"chunk/{i}" for i in range(23)]
    expected = [str(i) for i in range(23)]
    assert list(map_chunks(basename, chunks, address="auto")) == expected
    with cluster("auto"):
        assert list(map_chunks(basename, chunks)) == expected
    assert list(map_chunks(basename, chunks, workers=1)) == expected  # outside the block: local


def test_jets_on_ray_equal_local_processes(local_ray, tmp_path):
    from trigflow.data.jets import generate_jets

    options = {"n_constituents": 8, "image_size": 4, "jets_per_chunk": 10}
    local = generate_jets(tmp_path / "local.h5", 100, seed=3, workers=1, **options)
    with cluster("auto"):
        on_ray = generate_jets(tmp_path / "ray.h5", 100, seed=3, **options)
    _same_h5(local, on_ray)


def _boom_after(fn, n_ok: int):
    """``fn`` that raises on its ``n_ok + 1``-th call, under ``fn``'s own name (so its store keys match)."""
    calls = []

    def wrapped(chunk):
        calls.append(chunk)
        if len(calls) > n_ok:
            raise KeyboardInterrupt("interrupted")
        return fn(chunk)

    wrapped.__module__, wrapped.__qualname__ = fn.__module__, fn.__qualname__
    return wrapped, calls


def test_map_chunks_resumes_from_its_store(tmp_path):
    chunks = [f"chunk/{i}" for i in range(7)]
    store = ChunkStore(tmp_path / "partial", "v1")
    failing, _ = _boom_after(basename, 4)
    with pytest.raises(KeyboardInterrupt):
        list(map_chunks(failing, chunks, workers=1, checkpoint=store))
    assert store.count() == 4
    counting, calls = _boom_after(basename, 99)
    assert list(map_chunks(counting, chunks, workers=1, checkpoint=store)) == [str(i) for i in range(7)]
    assert calls == chunks[4:]  # only the unfinished chunks ran
    other_version, calls = _boom_after(basename, 99)
    list(map_chunks(other_version, chunks, workers=1, checkpoint=ChunkStore(store.folder, "v2")))
    assert calls == chunks  # results of another format version are not reused


def test_interrupted_jet_generation_resumes_to_the_same_file(tmp_path, monkeypatch):
    from trigflow.data import jets

    options = {"n_constituents": 8, "image_size": 4, "jets_per_chunk": 5, "workers": 1}
    fresh = jets.generate_jets(tmp_path / "fresh.h5", 25, seed=5, **options)
    out = tmp_path / "resumed.h5"
    failing, _ = _boom_after(jets._generate_chunk, 3)
    monkeypatch.setattr(jets, "_generate_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        jets.generate_jets(out, 25, seed=5, **options)
    monkeypatch.undo()
    assert not out.exists() and ChunkStore.beside(out).count() == 3  # nothing half-written, 3 chunks kept
    counting, calls = _boom_after(jets._generate_chunk, 99)
    monkeypatch.setattr(jets, "_generate_chunk", counting)
    jets.generate_jets(out, 25, seed=5, **options)
    assert len(calls) == 5 - 3
    assert not ChunkStore.beside(out).folder.exists()  # removed once the file is complete
    _same_h5(fresh, out)
