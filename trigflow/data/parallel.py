"""Data layer: run generator chunks over a process pool, in order, with a progress bar.

Results depend only on the chunk list (each chunk carries its own seed), never on the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def map_chunks(
    fn: Callable[[Any], T],
    chunks: Sequence[Any],
    *,
    workers: int | None = None,
    description: str = "generating",
    total: int | None = None,
    size_of: Callable[[T], int] = lambda _: 1,
) -> Iterator[T]:
    """Yield ``fn(chunk)`` for each chunk, in chunk order, computed on ``workers`` processes.

    ``fn`` must be a module-level function (picklable). The progress bar advances by ``size_of(result)``
    out of ``total`` (default: number of chunks).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    workers = workers or default_workers()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total if total is not None else len(chunks))
        if workers == 1:
            results: Iterator[T] = map(fn, chunks)
            for result in results:
                progress.advance(task, size_of(result))
                yield result
            return
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for result in pool.imap(fn, chunks):
                progress.advance(task, size_of(result))
                yield result
