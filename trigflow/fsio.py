"""Spine layer: every file and folder trigflow writes goes through here (temporary path, then rename)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trigflow.errors import TrigflowError


def check_writable_parent(path: Path) -> None:
    parent = path.parent if path.parent != Path("") else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrigflowError(f"cannot create folder {parent} ({exc.strerror}); choose another output path") from None
    if not os.access(parent, os.W_OK):
        raise TrigflowError(f"cannot write to {parent}: folder is not writable; choose another output path")


def refuse_existing(path: Path, force: bool, what: str = "output") -> None:
    if path.exists() and not force:
        raise TrigflowError(f"{what} {path} already exists; pass --force to overwrite it or choose another path")


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a full disk or a read-only file system into a one-line error naming the path."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TrigflowError(f"disk full while writing {path}; free space or choose another output path") from None
        if exc.errno in (errno.EROFS, errno.EACCES):
            raise TrigflowError(f"cannot write {path} ({exc.strerror}); choose a writable output path") from None
        raise


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock named after ``path`` (a ``.name.lock`` file beside it) or fail at once."""
    path = Path(path)
    check_writable_parent(path)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise TrigflowError(
                f"{path} is being written by another trigflow run (pid {owner}); wait for it or choose another path"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)  # the lock file stays: unlinking it would race with a waiter


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; published ones get the usual umask mode."""
    os.chmod(path, mode & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on failure delete it."""
    path = Path(path)
    refuse_existing(path, force, "file")
    check_writable_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_errors(path):
            yield tmp_path
            _publish_mode(tmp_path, 0o666)
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    refuse_existing(path, force, "folder")
    check_writable_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        with disk_errors(path):
            yield tmp
        _publish_mode(tmp, 0o777)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)
