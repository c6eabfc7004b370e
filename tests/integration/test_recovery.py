"""Retry policies on the real multi-node cluster (tests/support/cluster.py): a node set down under a
running job, a preemption, a job over its memory limit, its time limit with a checkpoint, a
fail_on_log pattern, an application error, and `compute watch` killed and restarted mid-sweep with
its webhook received on loopback.

What the test bed enforces: its plugins are proctrack/linuxproc + jobacct_gather/linux with
OverMemoryKill, so a job over its `--mem` is killed within a second of polling ("exceeded memory
limit" in its error file; sacct says FAILED, not OUT_OF_MEMORY, which needs cgroups), and time
limits, preemption (partition `high` requeues `debug` jobs) and node failures are Slurm's own."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import testbed as tbm
from tests.support.cli import compute, compute_argv
from tests.support.projects import ClusterProject as Project
from tests.support.projects import local, login, slurm
from tests.support.servers import Webhook
from tests.support.waiting import poll_until

pytestmark = pytest.mark.slow


@pytest.fixture
def project(multinode: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    import shutil

    made = Project(multinode, tmp_path)
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)


def node_of(bed: tbm.Testbed, job_id: str) -> str:
    """The node a running job is on, from squeue ("" while it is not running)."""
    out = local(bed, "squeue", "-h", "-j", job_id, "-o", "%T %N")
    state, _, node = out.strip().partition(" ")
    return node if state == "RUNNING" else ""


def rows_of(project: Project) -> list[dict[str, Any]]:
    return list(project.jobs().values())


def watch_once(project: Project) -> str:
    proc = compute("watch", "--once", cwd=project.folder, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def output(project: Project, job_id: str) -> str:
    return compute("logs", job_id, cwd=project.folder, timeout=60).stdout


def test_a_job_whose_node_goes_down_is_requeued_in_place(multinode: tbm.Testbed, project: Project) -> None:
    proc = project.run(
        [
            slurm(
                "train",
                cmd='echo "attempt $COMPUTE_ATTEMPT on $(hostname)"; sleep 12',
                retry={"on": ["node_fail"]},
            )
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [job_id] = project.jobs()
    node = poll_until(lambda: node_of(multinode, job_id), bool, 30, "the job to run")
    # RUNNING comes before the command's first line: the node goes down once the first attempt has said it
    poll_until(lambda: output(project, job_id), lambda out: "attempt 1 on" in out, 30, "attempt 1 to print")
    local(multinode, "scontrol", "update", f"nodename={node}", "state=down", "reason=compute-test")
    try:
        rows = project.wait(timeout=120, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"))
    finally:
        local(multinode, "scontrol", "update", f"nodename={node}", "state=resume")
    assert rows[job_id].state.state == "COMPLETED"
    [row] = rows_of(project)  # one ledger point, the same job, its second attempt
    assert (row["state"], row["attempts"]) == ("COMPLETED", 2)
    out = output(project, job_id)
    assert f"attempt 1 on {node}" in out and "attempt 2 on " in out  # --open-mode=append kept both
    assert f"attempt 2 on {node}" not in out


def test_a_preempted_job_is_requeued_and_completes(multinode: tbm.Testbed, project: Project) -> None:
    low = {"nodelist": "node2", "exclusive": True}
    proc = project.run(
        [
            slurm(
                "low", cmd='echo "attempt $COMPUTE_ATTEMPT"; sleep 8', sbatch=low, retry={"on": ["preempted"]}
            )
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [job_id] = project.jobs()
    poll_until(lambda: node_of(multinode, job_id), bool, 30, "the low job to run")
    login(multinode, "cd /tmp && sbatch -p high --exclusive -w node2 -o /dev/null --wrap 'sleep 2'")
    rows = project.wait(timeout=120)
    assert rows[job_id].state.state == "COMPLETED"
    [row] = rows_of(project)
    assert row["attempts"] == 2
    assert "attempt 1" in output(project, job_id) and "attempt 2" in output(project, job_id)


def test_a_job_over_its_memory_is_retried_with_more_by_watch(
    multinode: tbm.Testbed, project: Project
) -> None:
    hog = "python3 -c 'import time; x = bytearray(250 * 2**20); time.sleep(3)' && echo fitted"
    retry = {"max": 2, "on": ["oom"], "escalate": {"mem": 4}}
    proc = project.run([slurm("hog", cmd=hog, config="small", retry=retry)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [first] = project.jobs()
    project.wait(timeout=60)
    said = poll_until(lambda: watch_once(project), lambda text: "retried as" in text, 60, "a retry")
    assert f"job {first} (oom) retried as" in said and "--mem=400M" in said
    project.wait(timeout=90)
    jobs = project.jobs()
    [second] = [j for j in jobs if j != first]
    assert jobs[first]["state"] == "FAILED" and jobs[first]["replaced_by"] == second
    assert (jobs[second]["state"], jobs[second]["attempt"], jobs[second]["retry_reason"]) == (
        "COMPLETED",
        "2",
        "oom",
    )
    assert "#SBATCH --mem=400M" in (project.folder / "archive" / jobs[second]["script"]).read_text()
    assert "fitted" in output(project, second)
    assert "not retried" not in watch_once(project)  # done: nothing more to do


def test_an_application_error_is_not_retried_unless_asked(project: Project) -> None:
    proc = project.run(
        [
            slurm("plain", cmd="exit 1", retry=3),  # the default: preemption, node failure, timeout, oom
            slurm("asked", cmd='[ "$COMPUTE_ATTEMPT" -ge 2 ] || exit 4', retry={"max": 2, "on": [4]}),
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project.wait(timeout=60)
    said = poll_until(lambda: watch_once(project), lambda text: "retried as" in text, 60, "a retry")
    assert "(failed) retried as" in said and "exit 1 is not retried" in said
    project.wait(timeout=60)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows_of(project):
        by_task.setdefault(row["task"], []).append(row)
    assert [r["state"] for r in by_task["plain"]] == ["FAILED"]
    assert [(r["state"], r["attempts"]) for r in by_task["asked"]] == [("FAILED", 1), ("COMPLETED", 2)]


def test_fail_on_log_stops_a_running_job(project: Project) -> None:
    cmd = 'echo starting; sleep 1; echo "NCCL watchdog timeout" >&2; sleep 300'
    started = time.monotonic()
    proc = project.run(
        [slurm("hang", cmd=cmd, fail_on_log=["NCCL watchdog"], env={"COMPUTE_LOG_EVERY": "1"})]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = project.wait(timeout=60)
    [row] = rows.values()
    assert (row.state.state, row.state.reason) == ("FAILED", "fail_on_log")
    assert time.monotonic() - started < 45
    said = poll_until(lambda: watch_once(project), lambda text: "not retried" in text, 60, "the verdict")
    assert "fail_on_log" in said


def test_a_watch_killed_and_restarted_loses_and_repeats_nothing(project: Project) -> None:
    hook = Webhook()
    try:
        # four points, each failing its first attempt at once, the later ones a little later
        cmd = 'sleep "$((2 * ${1#--n=}))"; [ "$COMPUTE_ATTEMPT" -ge 2 ] || exit 3'
        task = slurm(
            "sweep",
            cmd=f"f() {{ {cmd}; }}; f",
            sweep={"n": [0, 1, 2, 3]},
            array=False,
            retry={"max": 2, "on": [3]},
            notify={"webhook": hook.url},
        )
        proc = project.run([task])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        first = set(project.jobs())
        argv = compute_argv("watch", "--every", "1")
        watch = subprocess.Popen(
            argv, cwd=project.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            poll_until(
                lambda: len(project.jobs()), lambda n: n > len(first), 60, "a first retry", interval=0.5
            )
        finally:
            watch.send_signal(signal.SIGKILL)
            said = watch.communicate()[0]
        assert "retried as" in said, said
        again = compute("watch", "--every", "1", "--until-done", cwd=project.folder, timeout=180)
        assert again.returncode == 0, again.stdout + again.stderr
        jobs = rows_of(project)
        points: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            points.setdefault(job["sweep"], []).append(job)
        assert len(points) == 4
        for rows in points.values():  # every point: one failed attempt, one retry that completed
            assert sorted((r["state"], r["attempts"]) for r in rows) == [("COMPLETED", 2), ("FAILED", 1)]
        texts = [body["text"] for body in hook.bodies]
        assert len([t for t in texts if "first failure" in t]) == 1, texts
        assert len([t for t in texts if "every job has ended" in t]) == 1, texts
        assert "4 completed" in next(t for t in texts if "every job has ended" in t)
    finally:
        hook.close()


@pytest.mark.timeout(480)
def test_a_job_at_its_time_limit_checkpoints_and_resumes(project: Project) -> None:
    """Slurm's signal comes up to a minute before the time asked (its timer's resolution): here
    10-40 s into a one-minute job, so the 45 s of work span two attempts or more."""
    # counts to 45, one a second, in a file; on USR1 it saves and exits: the next attempt goes on
    program = (
        "import os, signal, sys, time\n"
        "path = 'count'\n"
        "n = int(open(path).read()) if os.path.exists(path) else 0\n"
        "print('attempt', os.environ['COMPUTE_ATTEMPT'], 'from', n, flush=True)\n"
        "def save(*_):\n"
        "    open(path, 'w').write(str(n)); sys.exit(1)\n"
        "signal.signal(signal.SIGUSR1, save)\n"
        "while n < 45:\n"
        "    time.sleep(1); n += 1\n"
        "print('done at', n)\n"
    )
    import shutil

    project.logs.mkdir(parents=True, exist_ok=True)
    (project.logs / "count.py").write_text(program)
    shutil.chown(project.logs, user=project.bed.user)  # the job (the test user) writes there
    retry = {"max": 10, "on": ["timeout"], "checkpoint": {"before": 20}}  # the signal may come at 7 s
    proc = project.run(
        [slurm("long", cmd="python3 count.py", cd=str(project.logs), config="one-minute", retry=retry)]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [job_id] = project.jobs()
    rows = project.wait(timeout=400)
    assert rows[job_id].state.state == "COMPLETED"
    out = output(project, job_id)
    assert "done at 45" in out
    [row] = rows_of(project)
    assert row["attempts"] >= 2, out
    assert "from 0" in out and out.count("attempt") >= 2
