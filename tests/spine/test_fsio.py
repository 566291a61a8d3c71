import pytest

from trigflow.errors import TrigflowError
from trigflow.fsio import atomic_dir, atomic_file


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "project"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_without_force(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(TrigflowError, match="--force"):
        with atomic_dir(target):
            pass
    assert (target / "keep.txt").read_text() == "old"
    with atomic_dir(target, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["project"]


def test_atomic_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "data.h5"
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
