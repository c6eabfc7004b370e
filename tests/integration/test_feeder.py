"""A sweep larger than the user's MaxSubmitJobs, fed by the cluster itself (scheduling/feed.py), on the
multi-node test bed with accounting (tests/support/cluster.py): `compute run` submits what fits and a
feeder job; the feeders submit the rest as earlier chunks end. The limit is set with sacctmgr and
set back to none after each test.

Every test writes its logs under its own folder of the test user's home (job ids restart with every
bed, and beds share that home)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import cluster as mn
from tests.support import testbed as tbm
from tests.support.cli import compute, job_output
from tests.support.project import bed_hosts, write_book, write_hosts
from tests.support.waiting import poll_until

LIMIT = 20
POINTS = 200


@pytest.fixture
def folder(multinode: tbm.Testbed, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A project (hosts.yaml: the login node with a log folder of its own, configs.yaml) and that
    log folder; the test user may queue at most LIMIT jobs meanwhile."""
    logs = multinode.home / f"compute/test-{uuid.uuid4().hex[:10]}"
    alias = multinode.slurm_alias or "cluster"
    write_hosts(tmp_path, {"cluster": {**bed_hosts(multinode)[alias], "save_path": str(logs)}})
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1, time: '00:05:00'}\n")
    mn.sacctmgr(multinode, f"modify user {multinode.user} set MaxSubmitJobs={LIMIT}")
    try:
        yield tmp_path, logs
    finally:
        mn.sacctmgr(multinode, f"modify user {multinode.user} set MaxSubmitJobs=-1")
        subprocess.run(
            ["scancel", "-u", multinode.user], env=_env(multinode), capture_output=True, timeout=30
        )
        shutil.rmtree(logs, ignore_errors=True)
        for started in events(tmp_path, "feed"):  # the feeds' folders, in the same home
            shutil.rmtree(multinode.home / ".compute" / "feeds" / started["feed"], ignore_errors=True)


def _env(bed: tbm.Testbed) -> dict[str, str]:
    return {**os.environ, **tbm.slurm_env(bed)}


def queued(bed: tbm.Testbed) -> list[str]:
    """The test user's jobs that count against MaxSubmitJobs, one line per array element."""
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-u", bed.user, "-t", "PD,R,CF,S", "-o", "%i %j"],
        env=_env(bed),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


class Sampler:
    """squeue every 0.2 s in a thread while the sweep runs: the most jobs ever queued at once."""

    def __init__(self, bed: tbm.Testbed) -> None:
        self.bed = bed
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.most = max(self.most, len(queued(self.bed)))
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def book(folder: Path, name: str, cmd: str) -> None:
    write_book(
        folder,
        [{"name": name, "hosts": "cluster", "slurm": {"cmd": cmd, "sweep": {"i": list(range(POINTS))}}}],
    )


def ledger_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """`compute jobs --all --json` (a refresh: the feeds' new jobs are recorded first), by job id."""
    proc = compute("jobs", "--all", "--json", cwd=folder, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {job["job_id"]: job for job in json.loads(proc.stdout)["jobs"]}


def events(folder: Path, kind: str) -> list[dict[str, Any]]:
    path = folder / "archive" / "events.csv"
    lines = path.read_text().splitlines()[1:] if path.exists() else []

    rows = list(csv.reader(lines))  # the detail column is JSON
    return [json.loads(r[4]) for r in rows if r[3] == kind]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sweep_ten_times_the_limit_runs_every_point_once(
    multinode: tbm.Testbed, folder: tuple[Path, Path]
) -> None:
    project, logs = folder
    book(project, "fed", "true")
    sampler = Sampler(multinode)
    try:
        start = time.monotonic()
        proc = compute("run", "book.yaml", cwd=project)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{POINTS - LIMIT + 1} to be fed by the cluster" in proc.stdout, proc.stdout
        assert f"MaxSubmitJobs of association testacct/{multinode.user} is {LIMIT}, 0 queued" in proc.stdout

        # a resumed run while the feed goes on submits nothing: its points are the feed's
        resumed = compute("run", "book.yaml", "--resume", cwd=project)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert (
            "points: they are left out" in resumed.stdout
            and "every point was already submitted" in resumed.stdout
        )

        shown = compute("jobs", cwd=project, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "points still to be fed by the cluster (task 'fed' on cluster, feeder job" in shown.stdout

        def done() -> dict[str, dict[str, Any]]:
            return ledger_rows(project)

        rows = poll_until(
            done,
            lambda r: len(r) == POINTS and all(j["state"] == "COMPLETED" for j in r.values()),
            180,
            "every point to be recorded and completed",
            1.0,
            show=lambda r: (len(r), sorted({j["state"] for j in r.values()})),
        )
        seconds = time.monotonic() - start
    finally:
        sampler.stop()
    assert sampler.samples > 10 and 0 < sampler.most <= LIMIT, (sampler.most, sampler.samples)
    # every point once, in job.csv as in its logs
    assert sorted(int(j["job_index"]) for j in rows.values()) == list(range(POINTS))
    outputs = sorted(logs.glob("fed.*.out"))
    assert len(outputs) == POINTS
    assert sorted(job_output(p.read_text()) for p in outputs) == [""] * POINTS
    assert all((project / "archive" / j["script"]).is_file() for j in rows.values())
    (ended,) = events(project, "feed-ended")
    assert (ended["why"], ended["left"]) == ("done", 0)
    # the plan kept the queue within the limit: no feeder had to wait for room
    feed_dir = multinode.home / ".compute" / "feeds" / ended["feed"]
    said = "".join(p.read_text() for p in feed_dir.glob("feeder.*.out"))
    assert "MaxSubmitJob" not in said and "compute: chunk 11:" in said, said
    print(f"{POINTS} points, MaxSubmitJobs {LIMIT}: {seconds:.1f} s, at most {sampler.most} queued")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cancel_task_stops_the_feed(multinode: tbm.Testbed, folder: tuple[Path, Path]) -> None:
    project, _ = folder
    book(project, "stopped", "f() { sleep 2; }; f")
    start = time.strftime("%Y-%m-%dT%H:%M:%S")
    proc = compute("run", "book.yaml", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def fed_once() -> dict[str, dict[str, Any]]:
        return ledger_rows(project)

    # the first feeder has run: chunk 1 is in the ledger
    poll_until(fed_once, lambda r: len(r) > LIMIT, 60, "the first fed chunk", 0.5, show=len)
    cancelled = compute("cancel", "--task", "stopped", cwd=project, timeout=120)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "stopped the feed of task 'stopped' on cluster:" in cancelled.stdout
    (ended,) = events(project, "feed-ended")
    assert ended["why"] == "cancelled" and ended["left"] > 0
    rows = ledger_rows(project)
    assert len(rows) + ended["left"] == POINTS
    # nothing more comes: the queue empties and stays empty, the ledger stays as it is
    poll_until(lambda: queued(multinode), lambda q: q == [], 30, "the queue to empty", 0.5)
    time.sleep(5)
    assert queued(multinode) == []
    assert ledger_rows(project).keys() == rows.keys()
    assert {j["state"] for j in rows.values()} <= {"CANCELLED", "COMPLETED", "RUNNING", "PENDING"}
    # every job the feeders submitted is in the ledger (sacct knows them by their name)
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-u", multinode.user, "--name=stopped", "-S", start, "-o", "JobID"],
        env=_env(multinode),
        capture_output=True,
        text=True,
        timeout=30,
    )
    arrays = {line.split("_")[0] for line in sacct.stdout.split()}
    assert arrays <= {job_id.split("_")[0] for job_id in rows}, (arrays, sorted(rows)[:5])
    # a resumed run submits what the stopped feed did not
    resumed = compute("run", "book.yaml", "--resume", cwd=project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(rows)} of {POINTS} points already submitted" in resumed.stdout
    assert f"{ended['left']} jobs: " in resumed.stdout
    compute("cancel", "--task", "stopped", cwd=project, timeout=120)
