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
from pathlib import Path
from typing import Any

import pytest
import testbed as tbm

from tests.integration.faultbed import Project, ledger_ids, scancel_name, slurm_jobs, wait_for


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
