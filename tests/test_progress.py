"""The progress meter: silent by default, lines on a log, rich bars on a terminal."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from memops.progress import (
    LineMeter,
    Meter,
    RichMeter,
    format_amount,
    meter,
    meter_for,
    reporting,
)


def test_the_default_meter_is_silent_and_reporting_restores_it() -> None:
    assert type(meter()) is Meter
    stream = io.StringIO()
    chosen = LineMeter(stream)
    with reporting(chosen):
        assert meter() is chosen
        with meter().count("redis 'acme'", "keys") as counter:
            counter.advance(1500)
            counter.advance(500)
    assert type(meter()) is Meter
    assert stream.getvalue() == "  … redis 'acme': 2,000 keys\n"


def test_a_thread_sees_the_meter_only_through_a_copied_context() -> None:
    import contextvars

    seen: list[Meter] = []
    with reporting(LineMeter(io.StringIO())) as chosen:
        plain = threading.Thread(target=lambda: seen.append(meter()))
        copied = contextvars.copy_context()
        carried = threading.Thread(target=lambda: seen.append(copied.run(meter)))
        for thread in (plain, carried):
            thread.start()
            thread.join()
    assert type(seen[0]) is Meter
    assert seen[1] is chosen


def test_meter_for_picks_by_who_is_watching() -> None:
    assert type(meter_for(watching=False, stream=io.StringIO())) is Meter
    assert isinstance(meter_for(watching=True, stream=io.StringIO()), LineMeter)


def test_an_unknown_unit_is_a_bug() -> None:
    with pytest.raises(ValueError, match="furlongs"), Meter().count("x", "furlongs"):
        pass


def test_rich_bars_show_the_count_and_total() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    rich = RichMeter(console)
    rich.note("before any bar")
    with reporting(rich), meter().count("storing dump.zst", "bytes", 3 * 1024 * 1024) as counter:
        counter.update(3 * 1024 * 1024)
    text = out.getvalue()
    assert "before any bar" in text
    assert "storing dump.zst" in text
    assert "3.0 MiB" in text
    assert "100%" in text


def test_watch_file_counts_what_another_writer_adds(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    stream = io.StringIO()
    with LineMeter(stream).watch_file("postgresql dump", path, interval_s=0.01):
        path.write_bytes(b"x" * 5000)
    assert stream.getvalue() == "  … postgresql dump: 4.9 KiB\n"


def test_amounts_read_well() -> None:
    assert format_amount(1234567, "rows") == "1,234,567 rows"
    assert format_amount(512, "bytes") == "512 B"
    assert format_amount(5 * 1024**3, "bytes") == "5.0 GiB"
