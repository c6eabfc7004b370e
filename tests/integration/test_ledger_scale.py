"""`compute jobs` on a ledger as a research group has after a few months: 10,000 tmux jobs on localhost
(a command line with every status file on it overflowed: "Argument list too long"). Ended jobs are
asked about once; their final state is kept in archive/states.csv."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compute_platform.ledger import JobRecord, Ledger
from tests.support.cli import compute

JOBS = 10_000


def ledger_of_ended_jobs(project: Path, jobs: int) -> Path:
    """`jobs` tmux rows on localhost, each with an exit-status file saying how it ended."""
    folder = project / "logs" / "sweep"
    folder.mkdir(parents=True)
    for i in range(jobs):
        (folder / f"{i}.started").write_text("")
        (folder / f"{i}.status").write_text(f"{i % 3}\n")
    (project / "hosts.yaml").write_text("localhost: {}\n")
    rows = [
        JobRecord(
            "2026-01-01T00:00:00+00:00",
            str(project / "book.yaml"),
            "sweep",
            "localhost",
            "tmux",
            f"sweep.{i}",
            "sweep",
            job_index=str(i),
            log_out=str(folder / f"{i}.log"),
            status_file=str(folder / f"{i}.status"),
            hosts_file=str(project / "hosts.yaml"),
        )
        for i in range(jobs)
    ]
    Ledger(project / "archive").append(rows)
    return folder


@pytest.mark.slow
def test_ten_thousand_ended_jobs_are_shown_and_asked_about_once(tmp_path: Path) -> None:
    folder = ledger_of_ended_jobs(tmp_path, JOBS)
    first = compute("jobs", "--json", cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    states = [job["state"] for job in json.loads(first.stdout)["jobs"]]
    assert len(states) == JOBS and states.count("COMPLETED") == len(range(0, JOBS, 3))
    kept = (tmp_path / "archive" / "states.csv").read_text().splitlines()
    assert len(kept) == JOBS + 1  # a header, then one line per ended job

    shutil.rmtree(folder)  # ended jobs are not asked again: their files are not even looked at
    second = compute("jobs", "--json", cwd=tmp_path, timeout=120)
    again = json.loads(second.stdout)["jobs"]
    assert [job["state"] for job in again] == states
    assert {job["exit_code"] for job in again} == {0, 1, 2}
    assert (tmp_path / "archive" / "states.csv").read_text().splitlines() == kept  # nothing new
