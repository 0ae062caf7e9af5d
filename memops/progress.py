"""Progress of long steps: rich bars on a terminal, plain lines otherwise, silence under --json.

A step deep inside a backup (a Redis SCAN, a COPY, an upload) reports through the
meter of the current context, ``meter()``, so no engine needs a progress
parameter: the operation picks the meter once (``meter_for``) and runs under
``reporting(meter)``. The default meter is silent, so library calls, tests and
scheduled runs print nothing.

    with meter().count("redis acme", "keys") as counter:
        for batch in batches:
            counter.advance(len(batch))

A counter is used from the thread that opened it; a thread started inside a
step gets the meter with ``contextvars.copy_context().run``.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

UNITS = ("keys", "rows", "points", "bytes")


class Counter:
    """One counted step: ``advance`` by a number done, or ``update`` to the number done."""

    def __init__(self, show: Callable[[int], None] | None = None) -> None:
        self.completed = 0
        self._show = show

    def advance(self, done: int) -> None:
        self.update(self.completed + done)

    def update(self, completed: int) -> None:
        self.completed = completed
        if self._show is not None:
            self._show(completed)


class Meter:
    """The silent meter: counts nothing visible (what runs without a person watching get)."""

    def note(self, message: str) -> None:
        return None

    @contextlib.contextmanager
    def count(self, description: str, unit: str, total: int | None = None) -> Iterator[Counter]:
        """A counter for one step in ``unit`` (one of UNITS), ``total`` when known."""
        if unit not in UNITS:
            raise ValueError(f"unknown progress unit {unit!r}")
        counter = self._counter(description, unit, total)
        try:
            yield counter
        finally:
            self._finish(counter)

    @contextlib.contextmanager
    def watch_file(
        self, description: str, path: Path, *, interval_s: float = 0.25
    ) -> Iterator[None]:
        """Count the bytes of a file another process is writing, until the block ends."""
        if type(self) is Meter:
            yield
            return
        with self.count(description, "bytes") as counter:
            stop = threading.Event()

            def poll() -> None:
                while not stop.wait(interval_s):
                    with contextlib.suppress(OSError):
                        counter.update(path.stat().st_size)

            watcher = threading.Thread(target=poll, daemon=True)
            watcher.start()
            try:
                yield
            finally:
                stop.set()
                watcher.join()
                with contextlib.suppress(OSError):
                    counter.update(path.stat().st_size)

    def close(self) -> None:
        return None

    def _counter(self, description: str, unit: str, total: int | None) -> Counter:
        return Counter()

    def _finish(self, counter: Counter) -> None:
        return None


class LineMeter(Meter):
    """Plain lines on a stream (a log, or stderr that is not a terminal): one per step."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._labels: dict[int, tuple[str, str]] = {}

    def note(self, message: str) -> None:
        print(f"  … {message}", file=self.stream, flush=True)

    def _counter(self, description: str, unit: str, total: int | None) -> Counter:
        counter = Counter()
        self._labels[id(counter)] = (description, unit)
        return counter

    def _finish(self, counter: Counter) -> None:
        description, unit = self._labels.pop(id(counter))
        self.note(f"{description}: {format_amount(counter.completed, unit)}")


class RichMeter(Meter):
    """Live rich bars on a terminal; notes print above them.

    The live display starts with the first counter: before it, a playbook's
    output may be streaming to the same terminal.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[amount]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self._tasks: dict[int, Any] = {}
        self._started = False

    def note(self, message: str) -> None:
        self._progress.console.print(f"  … {message}", highlight=False)

    def _counter(self, description: str, unit: str, total: int | None) -> Counter:
        progress = self._progress
        if not self._started:  # only now: until a step counts, others may own the terminal
            progress.start()
            self._started = True
        task = progress.add_task(description, total=total, amount=format_amount(0, unit))

        def show(completed: int) -> None:
            progress.update(task, completed=completed, amount=format_amount(completed, unit))

        counter = Counter(show)
        self._tasks[id(counter)] = task
        return counter

    def _finish(self, counter: Counter) -> None:
        task = self._tasks.pop(id(counter))
        self._progress.update(task, total=counter.completed, completed=counter.completed)
        self._progress.stop_task(task)

    def close(self) -> None:
        if self._started:
            self._progress.stop()


def format_amount(amount: int, unit: str) -> str:
    """``1,234,567 keys``, or bytes in binary units (``12.3 MiB``)."""
    if unit != "bytes":
        return f"{amount:,} {unit}"
    size = float(amount)
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or suffix == "GiB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1024
    return f"{amount} B"  # unreachable


_SILENT = Meter()
_current: contextvars.ContextVar[Meter] = contextvars.ContextVar("memops_meter", default=_SILENT)


def meter() -> Meter:
    """The meter steps report to (silent unless an operation chose one)."""
    return _current.get()


def meter_for(*, watching: bool, stream: IO[str] | None = None) -> Meter:
    """Bars when a person watches a terminal, lines when they watch a log, else silence."""
    if not watching:
        return _SILENT
    stream = stream or sys.stderr
    if stream.isatty():
        return RichMeter()
    return LineMeter(stream)


@contextlib.contextmanager
def reporting(chosen: Meter) -> Iterator[Meter]:
    """Run the block with ``chosen`` as the current meter; stop its display afterwards."""
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)
        chosen.close()
