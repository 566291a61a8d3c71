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
from typing import IO

from trigflow.errors import TrigflowError


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _file_ancestor(folder: Path) -> Path | None:
    """The first existing ancestor of ``folder`` (itself included) that is not a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def check_writable_parent(path: Path) -> None:
    parent = path.parent if path.parent != Path("") else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _file_ancestor(parent)
        cause = f"{blocker} is a file, not a folder" if blocker else exc.strerror
        raise TrigflowError(f"cannot create folder {parent} ({cause}); choose another output path") from None
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
        if exc.errno in DISK_FULL:
            raise TrigflowError(f"disk full while writing {path}; free space or choose another output path") from None
        if exc.errno in NOT_WRITABLE:
            raise TrigflowError(f"cannot write {path} ({exc.strerror}); choose a writable output path") from None
        raise


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock named after ``path`` (a ``.name.lock`` file beside it) or fail at once.

    The lock file is removed on release; a run that locked a file already unlinked by the previous holder
    sees another inode at the path and locks again, so two runs never both hold the lock.
    """
    path = Path(path)
    check_writable_parent(path)
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        with disk_errors(lock_path):
            handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise TrigflowError(
                f"{path} is being written by another trigflow run (pid {owner}); wait for it or choose another path"
            ) from None
        if _same_file(handle, lock_path):
            break
        handle.close()  # the previous holder removed it after we opened it: lock the current one
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while still locked: a waiter re-checks the inode
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def published_on_success(*paths: str | os.PathLike) -> Iterator[None]:
    """Outputs a run publishes at ``paths`` stay only if the whole run succeeds.

    An existing output (``--force``) is moved aside first and put back when the run fails or is interrupted;
    whatever the failed run published there is removed. On success the old outputs are deleted.
    """
    targets = [Path(p) for p in paths]
    moved: list[tuple[Path, Path]] = []
    try:
        for path in targets:
            if path.exists():
                aside = path.with_name(f".{path.name}.kept-{os.getpid()}")
                with disk_errors(path):
                    os.replace(path, aside)
                moved.append((path, aside))
    except BaseException:
        _restore(moved)
        raise
    try:
        yield
    except BaseException:
        for path in targets:
            _remove(path)
        _restore(moved)
        raise
    for _, aside in moved:
        _remove(aside)


def _restore(moved: list[tuple[Path, Path]]) -> None:
    for path, aside in moved:
        os.replace(aside, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; published ones get the usual umask mode."""
    os.chmod(path, mode & ~_umask())


def _temp_beside(path: Path, force: bool, what: str, *, folder: bool) -> Path:
    """Refuse an existing ``path`` (unless ``force``), check its folder is writable, and create a private
    temporary file or folder beside it (same file system, so the final rename is atomic)."""
    refuse_existing(path, force, what)
    check_writable_parent(path)
    options = {"prefix": f".{path.name}.", "suffix": ".part", "dir": path.parent}
    with disk_errors(path):
        if folder:
            return Path(tempfile.mkdtemp(**options))
        fd, tmp = tempfile.mkstemp(**options)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on failure delete it."""
    path = Path(path)
    tmp_path = _temp_beside(path, force, "file", folder=False)
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
    tmp = _temp_beside(path, force, "folder", folder=True)
    try:
        with disk_errors(path):
            yield tmp
            _publish_mode(tmp, 0o777)
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old, path)  # keep the previous output rather than nothing
                    raise
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
