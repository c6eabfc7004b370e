"""Fault injection against the real programs: hosts and sshd going away, hosts that never answer,
Slurm's controller stopping, hanging commands, Ctrl-C in the middle of a sweep, an archive that cannot
be written. Every test is bounded in time; the long ones are marked `slow` (their own CI step).

What is checked each time: the run ends on its own within its timeouts, the error names the host and
says what happened, the other hosts finish, the exit code says so, and the ledger (archive/job.csv)
holds exactly the jobs that Slurm really has: none missing, none twice."""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faultbed import Project, SmallDisk, ledger_ids, ledger_rows, scancel_name, slurm_jobs
from tests.support import testbed as tbm
from tests.support.waiting import wait_for


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Project:
    return Project(testbed, tmp_path)


def sweep(name: str, points: int, **extra: Any) -> dict[str, Any]:
    """A slurm task of `points` held jobs (they never run: the tests look at submissions only)."""
    return {
        "name": "sweep",
        "hosts": "cluster",
        "slurm": {
            "cmd": "true",
            "job_name": name,
            "sweep": {"i": list(range(points))},
            "sbatch": {"hold": True},
            **extra,
        },
    }


def assert_ledger_is_slurm(project: Project, name: str) -> list[dict[str, str]]:
    """Every job Slurm has under this name is in the ledger exactly once, and nothing else is."""
    rows = project.rows()
    ids = ledger_ids(rows)
    assert len(ids) == len(set(ids)), [i for i, n in collections.Counter(ids).items() if n > 1]
    assert sorted(ids) == sorted(slurm_jobs(project.bed, name))
    for row in rows:
        assert (project.archive / row["script"]).is_file()
    return rows


# -- Ctrl-C during a sweep, then --resume --------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_a_sweep_records_every_submitted_job_and_resume_submits_the_rest(
    project: Project,
) -> None:
    name = project.job_name("ctrlc")
    project.book([sweep(name, 200, array=False)])
    try:
        proc = project.popen()
        try:
            wait_for(lambda: len(project.rows()) >= 15, 30, "15 submissions")
            proc.send_signal(signal.SIGINT)
            start = time.monotonic()
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        stopped_in = time.monotonic() - start
        assert proc.returncode == 130, out + err
        assert stopped_in < 5, stopped_in
        assert "interrupted" in err and "Traceback" not in out + err
        rows = assert_ledger_is_slurm(project, name)
        assert 15 <= len(rows) < 200

        # the same playbook again, resumed: only the missing points are submitted
        done = project.run("--resume", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{len(rows)} of 200 points already submitted" in done.stdout
        rows = assert_ledger_is_slurm(project, name)
        assert sorted(int(r["job_index"]) for r in rows) == list(range(200))

        # and once more: nothing left to submit
        again = project.run("--skip-submitted")
        assert again.returncode == 0 and "every point was already submitted" in again.stdout
        assert len(project.rows()) == 200
    finally:
        scancel_name(project.bed, name)


# -- Slurm's controller stops during a sweep -------------------------------------------------------


class Outage:
    """slurmctld stopped and started again by the test; always running again after it."""

    def __init__(self, bed: tbm.Testbed) -> None:
        self.bed = bed
        self.down = False

    def begin(self) -> None:
        tbm.stop_slurmctld(self.bed)
        self.down = True

    def end(self) -> None:
        if self.down:
            tbm.start_slurmctld(self.bed)
            self.down = False


@pytest.fixture
def outage(testbed: tbm.Testbed) -> Iterator[Outage]:
    state = Outage(testbed)
    yield state
    state.end()


@pytest.mark.slow
def test_a_controller_outage_during_a_sweep_is_waited_out(project: Project, outage: Outage) -> None:
    """slurmctld stops after a few submissions and comes back ~11 s later (longer than sbatch's own
    connection retries): the sweep waits, retries, and ends with every job submitted exactly once."""
    name = project.job_name("outage")
    project.book([sweep(name, 30, array=False, submit_retry=120)])
    proc = project.popen()
    try:
        wait_for(lambda: len(project.rows()) >= 5, 30, "5 submissions")
        outage.begin()
        time.sleep(11)
        outage.end()
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, out + err
        assert "trying again in" in out
        rows = assert_ledger_is_slurm(project, name)
        assert sorted(int(r["job_index"]) for r in rows) == list(range(30))
    finally:
        if proc.poll() is None:
            proc.kill()
        outage.end()
        scancel_name(project.bed, name)


@pytest.mark.slow
def test_a_controller_outage_longer_than_submit_retry_fails_clearly_then_resumes(
    project: Project, outage: Outage
) -> None:
    name = project.job_name("longoutage")
    after = {"name": "after", "hosts": ["h1", "cluster"], "cmd": "echo after-the-outage"}
    project.book([sweep(name, 30, array=False, submit_retry=2), after])
    proc = project.popen()
    try:
        wait_for(lambda: len(project.rows()) >= 5, 30, "5 submissions")
        outage.begin()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, out + err
        assert "controller did not answer" in out and "Unable to contact slurm controller" in out
        assert "Traceback" not in out + err
        assert "h1 | after-the-outage" in out and "skipped: cluster" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        outage.end()
    try:
        before = assert_ledger_is_slurm(project, name)
        assert 5 <= len(before) < 30
        done = project.run("--skip-submitted", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = assert_ledger_is_slurm(project, name)
        assert sorted(int(r["job_index"]) for r in rows) == list(range(30))
    finally:
        scancel_name(project.bed, name)


# -- an archive that cannot be written: full, read-only, filling up during a sweep ----------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., SmallDisk]]:
    made: list[SmallDisk] = []

    def make(size: str = "4m", options: str = "") -> SmallDisk:
        made.append(SmallDisk(tmp_path / f"disk{len(made)}", size, options))
        return made[-1]

    yield make
    for disk in made:
        disk.unmount()


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_an_unwritable_archive_submits_nothing(
    project: Project, small_disk: Callable[..., SmallDisk], how: str
) -> None:
    name = project.job_name("nodisk")
    disk = small_disk("4m", "ro" if how == "read-only" else "")
    if how == "full":
        (disk.where / "archive").mkdir()
        disk.fill(0)
    project.book([sweep(name, 3, array=False)])
    proc = project.run("--archive", str(disk.where / "archive"))
    try:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "cannot write the archive" in proc.stdout and "Nothing was submitted" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr
        assert slurm_jobs(project.bed, name) == []
    finally:
        scancel_name(project.bed, name)


def test_an_archive_filling_up_during_a_sweep_stops_before_an_unrecordable_job(
    project: Project, small_disk: Callable[..., SmallDisk]
) -> None:
    name = project.job_name("filling")
    disk = small_disk("4m")
    archive = disk.where / "archive"
    archive.mkdir()
    disk.fill((1 << 20) + 60_000)  # the spare megabyte, and room for a few jobs
    project.book([sweep(name, 40, array=False)])
    proc = project.run("--archive", str(archive))
    try:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "not enough to record" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
        rows = ledger_rows(archive)
        assert 1 <= len(rows) < 40
        assert sorted(ledger_ids(rows)) == sorted(slurm_jobs(project.bed, name))
        assert not list(archive.rglob(".staged-*"))
    finally:
        scancel_name(project.bed, name)
