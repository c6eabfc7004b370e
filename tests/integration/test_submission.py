"""The one submission path, against the real programs: a point of a scattered sweep is the same point
whichever host runs it (`--limit`, a host that failed an earlier task, then `--resume`), and a
resubmission goes through the same transaction as a submission (nothing resubmitted that cannot be
recorded)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faultbed import Project, SmallDisk, ledger_rows, scancel_name, slurm_jobs
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.waiting import wait_jobs


def scattered(points: int, hosts: list[str]) -> dict[str, Any]:
    return {
        "name": "spread",
        "hosts": hosts,
        "tmux": {"cmd": "true", "sweep": {"p": list(range(points))}, "scatter": True, "parallel": True},
    }


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    made = Project(testbed, tmp_path)
    yield made
    subprocess.run(["rm", "-rf", str(testbed.home / made.logs_name)], capture_output=True)


def hosts_of(project: Project) -> list[tuple[str, str]]:
    return sorted((r["host"], r["job_index"]) for r in project.rows())


def test_a_scattered_point_run_on_one_host_is_not_submitted_again_on_another(project: Project) -> None:
    project.book([scattered(6, ["h1", "h2"])])
    first = project.run("--limit", "h1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert hosts_of(project) == [("h1", str(i)) for i in range(6)]  # h1 alone: the whole sweep
    again = project.run("--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 of 6 points already submitted" in again.stdout
    assert len(project.rows()) == 6  # h2 did not submit its share again


def test_points_left_by_a_host_that_failed_are_dealt_over_the_hosts_of_the_resumed_run(
    project: Project,
) -> None:
    project.hosts["h2"]["env"] = {"BROKEN": "1"}
    project.write_hosts()
    gate = {"name": "gate", "hosts": ["h1", "h2"], "cmd": '[ -z "$BROKEN" ]'}
    project.book([gate, scattered(6, ["h1", "h2"])])
    first = project.run()
    assert first.returncode == 1  # h2 failed the gate: the sweep went to h1 alone
    assert hosts_of(project) == [("h1", str(i)) for i in range(6)]
    del project.hosts["h2"]["env"]
    project.write_hosts()
    # a longer sweep: its 4 new points are dealt over both hosts, the 6 old ones left out
    project.book([gate, scattered(10, ["h1", "h2"])])
    again = project.run("--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = hosts_of(project)
    assert sorted(int(i) for _, i in rows) == list(range(10))  # every point exactly once
    assert [h for h, i in rows if int(i) >= 6] == ["h1", "h1", "h2", "h2"]


# -- resubmit through the transaction: a full archive resubmits nothing ---------------------------


def test_resubmitting_onto_a_full_archive_resubmits_nothing(project: Project, tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path / "disk", "4m")
    archive = disk.where / "archive"
    name = project.job_name("refail")
    try:
        project.book([{"name": "fail", "hosts": "cluster", "slurm": {"cmd": "exit 3", "job_name": name}}])
        proc = project.run("--archive", str(archive))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_ended(archive)
        before = slurm_jobs(project.bed, name)
        disk.fill(leave=64 * 1024)
        again = compute("resubmit", "--failed", "--archive", str(archive), cwd=project.folder)
        assert again.returncode == 1, again.stdout + again.stderr
        assert "not enough to record" in again.stdout + again.stderr
        assert "Traceback" not in again.stdout + again.stderr
        assert slurm_jobs(project.bed, name) == before  # nothing went to Slurm
        assert len(ledger_rows(archive)) == 1 and not list(archive.rglob(".staged-*"))
    finally:
        scancel_name(project.bed, name)
        disk.unmount()


def wait_ended(archive: Path, timeout: float = 30) -> None:
    wait_jobs(archive, timeout=timeout)
