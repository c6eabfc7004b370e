"""Progress of a host's step in the live view: bytes for copies, a count of jobs for sweeps; the other
reporters ignore it."""

from __future__ import annotations

import io

from rich.console import Console

from compute_platform.run.reporting import JsonReporter, PlainReporter, _progress_bar


def shown(done: int, total: int | None, unit: str, seconds: float = 2.0) -> str:
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(_progress_bar(done, total, unit, seconds))
    return console.export_text().strip()


def test_a_sweep_shows_jobs_submitted_out_of_all() -> None:
    text = shown(120, 1000, "jobs")
    assert text.endswith("120 / 1000 jobs") and "━" in text


def test_a_copy_shows_bytes_and_a_rate() -> None:
    assert shown(2_000_000, 4_000_000, "bytes").endswith("2.0 MB / 4.0 MB 1.0 MB/s")
    assert shown(5, None, "jobs") == "5 jobs"


def test_plain_and_json_reporters_ignore_progress() -> None:
    plain, document = io.StringIO(), io.StringIO()
    PlainReporter(plain).host_progress(None, "h1", 1, 2, "jobs")  # type: ignore[arg-type]
    JsonReporter(document).host_progress(None, "h1", 1, 2, "jobs")  # type: ignore[arg-type]
    assert plain.getvalue() == document.getvalue() == ""
