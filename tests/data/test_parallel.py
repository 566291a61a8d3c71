"""Data layer: generator chunks on a Ray cluster give the same file as local processes (same seed)."""

from __future__ import annotations

from posixpath import basename

import h5py
import numpy as np
import pytest

from trigflow.data.parallel import cluster, map_chunks


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
