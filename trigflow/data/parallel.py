"""Data layer: run generator chunks over a process pool, in order, with a progress bar.

Results depend only on the chunk list (each chunk carries its own seed), never on the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from trigflow.errors import TrigflowError

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
        # An executor (unlike Pool.imap) raises BrokenProcessPool when a worker dies instead of waiting forever.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            try:
                for result in pool.map(fn, chunks):
                    progress.advance(task, size_of(result))
                    yield result
            except BrokenProcessPool:
                raise TrigflowError(
                    "a generator process died (out of memory or killed); rerun, or use fewer --workers"
                ) from None
