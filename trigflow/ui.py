"""Spine layer: stage progress on the terminal (rich) and the per-stage wall times that go into reports."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class StageUI:
    """``with ui.stage("train", total=30) as advance: ...`` shows a bar (or a spinner) and records the time."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        start = time.perf_counter()
        if self.quiet:
            yield lambda *args, **kwargs: None
        else:
            columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
            if total is not None:
                columns.append(MofNCompleteColumn())
            columns.append(TimeElapsedColumn())
            with Progress(*columns, console=self.console, transient=True) as progress:
                task = progress.add_task(name, total=total)

                def advance(steps: int = 1, description: str | None = None) -> None:
                    progress.update(task, advance=steps, description=description or name)

                yield advance
        elapsed = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + elapsed
        if not self.quiet:
            self.console.print(f"[green]✓[/green] {name} [dim]({elapsed:.1f} s)[/dim]")
