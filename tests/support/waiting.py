"""Waiting for something with a deadline: poll, sleep a little, and fail the test with what was last
seen once the time is up (instead of a `while ... < deadline: time.sleep()` loop in every test)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from compute_platform.jobs.query import FINAL, Jobs, Row

T = TypeVar("T")


def poll_until(
    read: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    show: Callable[[T], object] = lambda value: value,
) -> T:
    """Call `read` every `interval` s until `done` holds for its value, and return that value; after
    `timeout` s fail with `what` and the last value read (as `show` puts it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last seen: {show(value)!r}"
            )
        time.sleep(interval)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Wait until `condition()` is true; after `timeout` s fail the test, naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_jobs(
    archive: Path,
    until: Iterable[str] = FINAL,
    *,
    done: Callable[[dict[str, Row]], bool] | None = None,
    timeout: float = 45,
    interval: float = 0.2,
) -> dict[str, Row]:
    """Poll the states of the jobs in `archive` (what `compute jobs` shows) until every one is in
    `until` (by default: ended), or until `done(rows)`; returns the rows by job id. The polling runs
    in-process on one connection per host, so a test does not pay a process and an SSH login per poll."""
    wanted = set(until)
    check = done or (lambda rows: all(row.state.state in wanted for row in rows.values()))
    view = Jobs(archive)

    def read() -> dict[str, Row]:
        return {row.record.job_id: row for row in view.rows(view.records())}

    def states(rows: dict[str, Row]) -> dict[str, object]:
        return {job_id: row.state for job_id, row in rows.items()}

    try:
        return poll_until(read, check, timeout, "the jobs' states", interval, show=states)
    finally:
        view.close()
