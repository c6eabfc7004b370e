"""Concurrent runs of the tool on one archive and one cluster: 4 `compute run` processes at once, each
submitting 250 jobs to the real Slurm (two as one sbatch per job: 500 locked appends racing; two as
arrays: big appends). job.csv must end with exactly 1,000 well-formed rows, every archived script
present and exactly what Slurm runs (so no two submissions ever shared a remote file name), nothing
interleaved."""

from __future__ import annotations

import collections
import csv
import random
import shutil
import time
from pathlib import Path

import pytest

from compute_platform.ledger import JobRecord
from tests.integration.faultbed import Project, ledger_rows, scancel_name, slurm, slurm_jobs
from tests.support import testbed as tbm
from tests.support.cli import compute, compute_popen
from tests.support.waiting import wait_for

RUNS = 4
JOBS = 250


@pytest.mark.slow
def test_four_runs_at_once_on_one_archive(testbed: tbm.Testbed, tmp_path: Path) -> None:
    project = Project(testbed, tmp_path)
    names = [project.job_name(f"c{i}") for i in range(RUNS)]
    for i, name in enumerate(names):
        task = {
            "name": f"sweep{i}",
            "hosts": "cluster",
            "slurm": {
                "cmd": "true",
                "job_name": name,
                "sweep": {"i": list(range(JOBS))},
                "array": i >= 2,
                "sbatch": {"hold": True},
            },
        }
        project.book([task], name=f"book{i}.yaml")
    start = time.monotonic()
    procs = [project.popen(book=f"book{i}.yaml") for i in range(RUNS)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
        took = time.monotonic() - start
        for proc, (out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, out + err
        assert took < 60, took

        # exactly 1,000 rows, each with every column and nothing more, one header
        text = (project.archive / "job.csv").read_text(encoding="utf-8")
        assert text.count("submitted_at,") == 1
        with open(project.archive / "job.csv", newline="", encoding="utf-8") as f:
            raw = list(csv.reader(f))
        assert raw[0] == JobRecord.columns()
        assert len(raw) == 1 + RUNS * JOBS and all(len(row) == len(raw[0]) for row in raw)
        rows = ledger_rows(project.archive)
        for name in names:
            mine = [r for r in rows if r["job_name"] == name]
            assert sorted(int(r["job_index"]) for r in mine) == list(range(JOBS))
            assert sorted(r["job_id"] for r in mine) == sorted(slurm_jobs(testbed, name))
        ids = collections.Counter((r["host"], r["job_id"]) for r in rows)
        assert max(ids.values()) == 1

        # every archived script exists, and is exactly the script Slurm has for that job
        scripts = {r["script"]: r["job_id"].split("_")[0] for r in rows}
        assert len(scripts) == 2 * JOBS + 2
        assert not list(project.archive.rglob(".staged-*"))
        for script, job_id in random.sample(sorted(scripts.items()), 24):
            archived = (project.archive / script).read_text()
            held = slurm(testbed, "scontrol", "write", "batch_script", job_id, "-")
            assert held.returncode == 0, held.stderr
            assert held.stdout == archived, script
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for name in names:
            scancel_name(testbed, name)


def test_two_tmux_launches_at_once_on_one_host_never_share_a_session(
    testbed: tbm.Testbed, tmp_path: Path
) -> None:
    project = Project(testbed, tmp_path)
    task = {
        "name": "same",
        "hosts": "h1",
        "tmux": {"cmd": "true", "job_name": project.job_name("t"), "args": ["a", "b"]},
    }
    project.book([task])
    try:
        procs = [project.popen() for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, out + err
        rows = ledger_rows(project.archive)
        sessions = {r["job_id"].rsplit(".", 1)[0] for r in rows}
        assert len(rows) == 4 and len(sessions) == 2
        assert {r["script"] for r in rows} == {f"h1/{s}.tmux" for s in sessions}
        assert all((project.archive / r["script"]).is_file() for r in rows)
    finally:
        shutil.rmtree(testbed.home / project.logs_name, ignore_errors=True)


def test_resubmitters_at_once_resubmit_a_failed_job_once(testbed: tbm.Testbed, tmp_path: Path) -> None:
    """Two `compute resubmit --failed` and a `compute watch --once` whose policy retries the job, all
    started together on one archive: one new job, not three."""
    project = Project(testbed, tmp_path)
    name = project.job_name("r")
    task = {
        "name": "flaky",
        "hosts": "h1",
        "tmux": {"cmd": "exit", "job_name": name, "args": ["3"], "retry": {"max": 5, "on": [3]}},
    }
    project.book([task])
    try:
        done = project.run()
        assert done.returncode == 0, done.stdout + done.stderr

        def failed() -> bool:
            listed = compute("jobs", "--json", cwd=tmp_path).stdout
            return '"state": "FAILED"' in listed

        wait_for(failed, 30, "the job to fail")
        procs = [
            compute_popen(*argv, cwd=tmp_path)
            for argv in [["resubmit", "--failed"]] * 2 + [["watch", "--once"]]
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, out + err
        rows = ledger_rows(project.archive)
        first = rows[0]["job_id"]
        # (the watch may retry the new job too, once it has failed: that one is not `first`)
        assert [r["replaces"] for r in rows].count(first) == 1, rows
    finally:
        shutil.rmtree(testbed.home / project.logs_name, ignore_errors=True)
