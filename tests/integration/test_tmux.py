"""The tmux task with real tmux, locally and over the test bed's sshd, followed with the real
`compute jobs / logs / cancel / resubmit` commands.

Port-based test hosts are one machine and one user: their tmux sessions live on one tmux server
(the bed sets TMUX_TMPDIR for every ssh session) and share ~/compute/logs. Session names cannot
collide anyway (a name is claimed by creating its directory), and each test uses its own job name.
Local runs get a private tmux server (TMUX_TMPDIR below), killed at the end of the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.hosts import shell
from tests.support import testbed as tbm
from tests.support.projects import TmuxProject as Project
from tests.support.waiting import wait_for

WHERE = ["localhost", "h1"]
FINAL = ("COMPLETED", "FAILED", "CANCELLED")
# A job that logs when it starts and ends (GNU date: seconds with nanoseconds) around a short sleep.
TIMED = 't() { echo start $(date +%s.%N) "$@"; sleep 0.3; echo end $(date +%s.%N); }; t'


@pytest.fixture
def local_tmux(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private tmux server for local runs (a short path: tmux sockets are limited to ~100 bytes)."""
    folder = tempfile.mkdtemp(prefix="ctmux-", dir="/tmp")
    monkeypatch.setenv("TMUX_TMPDIR", folder)
    yield folder
    subprocess.run(["tmux", "kill-server"], capture_output=True, timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def project(testbed: Any, tmp_path: Path, local_tmux: str) -> Iterator[Project]:
    made = Project(testbed, tmp_path)
    yield made
    made.clean()


def intervals(logs: list[str]) -> list[tuple[float, float]]:
    spans = []
    for text in logs:
        words = text.split()
        spans.append((float(words[words.index("start") + 1]), float(words[words.index("end") + 1])))
    return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.slow
@pytest.mark.parametrize("where", WHERE)
def test_sequential_jobs_run_in_order_through_init_env_and_cd(project: Project, where: str) -> None:
    project.host(where, init=["export FROM_INIT=init-ran"], env={"HOST_ENV": "host env"})
    project.book(
        where,
        cmd=f'echo "$FROM_INIT|$HOST_ENV|$TASK_ENV|$PWD|$SEED"; {TIMED} "seed=$seed"',
        args=["a", "b", "c"],
        seeds=[7],
        env={"TASK_ENV": "task $env"},
        cd="/tmp",
    )
    proc = project.run()
    assert f"tmux session {project.name}: 3 jobs, 1 at a time" in proc.stdout
    states = project.wait()
    ids = [f"{project.name}.{i}" for i in range(3)]
    assert [states[i]["state"] for i in ids] == ["COMPLETED"] * 3
    logs = [project.log(i) for i in ids]
    assert all(log.startswith("init-ran|host env|task $env|/tmp|7\n") for log in logs)
    assert [log.split("\n")[1].split()[2:] for log in logs] == [
        ["seed=7", "a"],
        ["seed=7", "b"],
        ["seed=7", "c"],
    ]
    spans = intervals(logs)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), spans  # one after another, in order


@pytest.mark.parametrize("where", WHERE)
def test_parallel_runs_at_most_max_parallel_jobs_at_once(project: Project, where: str) -> None:
    project.book(where, cmd=TIMED, args=[str(i) for i in range(6)], parallel=True, max_parallel=2)
    proc = project.run()
    assert "6 jobs, 2 at a time" in proc.stdout
    states = project.wait()
    assert {s["state"] for s in states.values()} == {"COMPLETED"}
    spans = intervals(project.logs(where))
    assert most_at_once(spans) == 2


@pytest.mark.parametrize("where", WHERE)
def test_each_running_job_has_its_own_gpu(project: Project, where: str) -> None:
    project.book(
        where,
        cmd=f'echo "gpu=$CUDA_VISIBLE_DEVICES"; {TIMED}',
        args=[str(i) for i in range(4)],
        parallel=True,
        gpus=[0, 1],
    )
    project.run()
    project.wait()
    logs = project.logs(where)
    gpus = [log.split("\n")[0] for log in logs]
    assert sorted(set(gpus)) == ["gpu=0", "gpu=1"]
    spans = intervals(logs)
    for gpu in ("gpu=0", "gpu=1"):
        mine = sorted(span for span, g in zip(spans, gpus, strict=True) if g == gpu)
        assert all(mine[i][1] <= mine[i + 1][0] for i in range(len(mine) - 1)), (gpu, mine)
    assert most_at_once(spans) == 2


@pytest.mark.slow
@pytest.mark.parametrize("where", WHERE)
def test_a_failing_job_is_failed_with_its_code_and_only_it_is_resubmitted(
    project: Project, where: str
) -> None:
    project.book(where, cmd="echo out; echo err >&2; exit", args=["0", "3"], parallel=True)
    project.run()
    states = project.wait()
    ok, bad = f"{project.name}.0", f"{project.name}.1"
    assert (states[ok]["state"], states[ok]["exit_code"]) == ("COMPLETED", 0)
    assert (states[bad]["state"], states[bad]["exit_code"]) == ("FAILED", 3)
    assert project.log(bad) == "out\nerr\n"  # stdout and stderr, in one log
    table = project.compute("jobs")
    assert "FAILED (3)" in table.stdout and "COMPLETED" in table.stdout

    proc = project.compute("resubmit", "--failed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = f"{project.name}-2.1"
    assert f"{bad} resubmitted as {again}" in proc.stdout
    rows = {r.job_id: r for r in project.records()}
    assert rows[again].replaces == bad and rows[again].command == rows[bad].command
    assert (project.folder / "archive" / where / f"{project.name}-2.tmux").exists()
    states = project.wait()
    assert (states[again]["state"], states[again]["exit_code"]) == ("FAILED", 3)
    assert states[bad]["replaced_by"] == again
    folder = rows[again].status_file.rsplit("/", 1)[0]
    files = project.shell(where, f"ls {shell.quote(folder)}").split()
    assert "1.log" in files and "0.log" not in files  # the job that succeeded did not run again
    # the original failure was resubmitted already: only its failed replacement goes again
    proc = project.compute("resubmit", "--failed")
    assert proc.stdout.endswith(f"{again} resubmitted as {project.name}-3.1\nresubmitted 1 failed job(s)\n")
    project.wait()


@pytest.mark.parametrize("where", WHERE)
def test_cancel_kills_the_running_job_and_the_queue_never_starts(project: Project, where: str) -> None:
    marker = f"m{uuid.uuid4().hex[:8]}"
    project.book(where, cmd="bash -c 'sleep 60 & wait'", args=[f"{marker}-0", f"{marker}-1"])
    project.run()
    first, second = f"{project.name}.0", f"{project.name}.1"
    states = project.wait(lambda s: s[first]["state"] == "RUNNING")
    assert states[second]["state"] == "PENDING"
    assert marker in project.shell(where, "ps -eo args")
    # by job ids, or the whole session by its name
    proc = project.compute("cancel", *([first, second] if where == "localhost" else [project.name]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cancelled 2 job(s)" in proc.stdout
    states = project.wait()
    assert states[first]["state"] == "CANCELLED" and states[second]["state"] == "CANCELLED"
    wait_for(  # the sleep child too, not only the shell
        lambda: marker not in project.shell(where, "ps -eo args"),
        10,
        "the cancelled job's processes to end",
        interval=0.2,
    )
    folder = project.records()[1].status_file.rsplit("/", 1)[0]
    assert "1.started" not in project.shell(where, f"ls {shell.quote(folder)}").split()
    events = (project.folder / "archive" / "events.csv").read_text()
    assert f"{first},cancelled" in events and f"{second},cancelled" in events


def test_an_existing_session_is_never_clobbered(project: Project) -> None:
    subprocess.run(["tmux", "new-session", "-d", "-s", project.name, "sleep 30"], check=True, timeout=10)
    project.book("localhost", cmd="echo hi")
    proc = project.run()
    assert f"tmux session name '{project.name}' is taken" in proc.stdout
    assert f"using '{project.name}-2'" in proc.stdout
    states = project.wait()
    assert states[f"{project.name}-2.0"]["state"] == "COMPLETED"
    panes = subprocess.run(
        ["tmux", "list-panes", "-t", f"={project.name}", "-F", "#{pane_current_command}"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert panes.stdout.split() == ["sleep"]  # the user's own session is untouched
    # a second launch does not reuse the first one's name even though that session has ended
    project.run()
    assert f"{project.name}-3.0" in project.wait()


def test_a_host_without_tmux_gets_a_clear_error_and_nothing_is_recorded(project: Project) -> None:
    alias = f"notmux{uuid.uuid4().hex[:4]}"
    tbm.start_sshd(project.testbed, alias, no_tmux=True)
    try:
        project.book(alias, cmd="echo hi")
        proc = project.compute("run", "book.yaml")
    finally:
        tbm.stop_sshd(project.testbed, alias)
    assert proc.returncode == 1
    assert f"tmux is not installed on {alias} (not in PATH: " in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert project.records() == []
    assert not list((project.folder / "archive").glob(f"{alias}/*.tmux"))


def test_dry_run_prints_the_launcher_and_starts_nothing(project: Project) -> None:
    project.book("h1", cmd="python train.py", args=["a", "b"], parallel=True, max_parallel=1)
    proc = project.run("--dry-run")
    assert f"# tmux session {project.name} (or {project.name}-2" in proc.stdout
    assert "2 jobs, 1 at a time" in proc.stdout
    assert "python train.py a" in proc.stdout and "compute_lane()" in proc.stdout
    assert project.records() == []
    assert project.name not in project.shell(
        "h1", "tmux list-sessions -F '#{session_name}' 2>/dev/null; true"
    )


def test_a_killed_session_stops_its_job_which_shows_failed(project: Project) -> None:
    marker = f"m{uuid.uuid4().hex[:8]}"
    project.book("localhost", cmd="bash -c 'sleep 60 & wait'", args=[marker, "never"])
    project.run()
    first, second = f"{project.name}.0", f"{project.name}.1"
    project.wait(lambda s: s[first]["state"] == "RUNNING")
    subprocess.run(["tmux", "kill-session", "-t", f"={project.name}"], check=True, timeout=10)
    states = project.wait()
    assert (states[first]["state"], states[first]["exit_code"]) == ("FAILED", 143)  # SIGTERM, passed on
    assert states[second]["state"] == "FAILED"  # never started: `resubmit --failed` will run it
    wait_for(
        lambda: marker not in project.shell("localhost", "ps -eo args"),
        10,
        "the job's processes to end with their session",
        interval=0.2,
    )


RAY_ONE_NODE = (
    'python -c \'import os, ray; ray.init(); n = [x for x in ray.nodes() if x["Alive"]]; '
    'print("ray", os.environ["RAY_ADDRESS"], len(n), os.environ["SEED"], flush=True)\''
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_true_gives_each_tmux_job_its_own_head_stopped_when_it_ends(project: Project) -> None:
    """Two jobs at once on one workstation, each with a one-node Ray cluster of its own (its own
    port), seeds in turn on it; when they end, no Ray process of theirs is left."""
    from tests.support import mlenv

    env = mlenv.venv(mlenv.RAY)
    project.host("h1", init=[f"source {env}/bin/activate"])
    project.book("h1", cmd=RAY_ONE_NODE, sweep={"x": [1, 2]}, seeds=[0, 1], parallel=True, ray=True)
    project.run()
    states = project.wait(timeout=240)
    assert {s["state"] for s in states.values()} == {"COMPLETED"}, states
    records = sorted(project.records(), key=lambda r: int(r.job_index))
    # the log holds what Ray said while it started (stdout and stderr together), then `CMD ...`
    logs = [project.shell("h1", f"cat {shell.quote(r.log_out)}") for r in records]
    assert all("\nCMD python -c" in log and "compute: Ray stopped" in log for log in logs), logs
    said = [[line.split() for line in log.splitlines() if line.startswith("ray ")] for log in logs]
    assert [[words[3] for words in job] for job in said] == [["0", "1"], ["0", "1"]], said
    assert all(words[2] == "1" for job in said for words in job), said
    addresses = {job[0][1] for job in said}
    assert len(addresses) == 2 and all(job[0][1] == job[1][1] for job in said), said  # one head per job
    left = subprocess.run(["pgrep", "-af", f"compute-ray-{project.name}"], capture_output=True, text=True)
    assert [line for line in left.stdout.splitlines() if "pgrep" not in line] == []


def test_jobs_lost_with_their_session_are_retried_by_watch(project: Project) -> None:
    # job a's first attempt waits, to be lost with its session (b never starts); the next ones complete
    cmd = 'f() { if [ "$1" = a ] && [ ! -e lost-a ]; then touch lost-a; sleep 60; fi; echo "again $1"; }; f'
    project.book("localhost", cmd=cmd, args=["a", "b"], cd=str(project.folder), retry=2)
    project.run()
    first, second = f"{project.name}.0", f"{project.name}.1"
    project.wait(lambda s: s[first]["state"] == "RUNNING")
    subprocess.run(["tmux", "kill-session", "-t", f"={project.name}"], check=True, timeout=10)
    project.wait()
    said = project.compute("watch", "--once").stdout
    assert f"job {first} (lost) retried as" in said and f"job {second} (lost) retried as" in said, said
    states = project.wait()
    retried = {row["job_id"]: row for row in states.values() if row["replaces"]}
    assert sorted((r["replaces"], r["state"], r["attempt"], r["retry_reason"]) for r in retried.values()) == [
        (first, "COMPLETED", "2", "lost"),
        (second, "COMPLETED", "2", "lost"),
    ]
    assert "again a" in project.log(next(j for j, r in retried.items() if r["replaces"] == first))
    assert f"{first}" not in project.compute("watch", "--once").stdout  # nothing is retried twice


@pytest.mark.parametrize("where", WHERE)
def test_fail_on_log_stops_a_job_and_watch_does_not_retry_it(project: Project, where: str) -> None:
    project.book(
        where,
        cmd="echo 'NCCL watchdog timeout: rank 3'; sleep 59.41; echo",
        args=["a"],
        env={"COMPUTE_LOG_EVERY": "1"},
        fail_on_log=["NCCL watchdog"],
        retry={"max": 3, "on": ["failed"]},
    )
    project.run()
    job = f"{project.name}.0"
    states = project.wait(timeout=20)  # stopped within about a second, not after a minute
    assert (states[job]["state"], states[job]["exit_code"], states[job]["reason"]) == (
        "FAILED",
        143,
        "fail_on_log",
    )
    assert "FAILED (143) fail_on_log" in project.compute("jobs").stdout
    assert "matches a fail_on_log pattern" in project.log(job)
    assert "sleep 59.41" not in project.shell(where, "ps -eo args")
    said = project.compute("watch", "--once")
    assert said.returncode == 0 and f"job {job} not retried: fail_on_log is not retried" in said.stdout, (
        said.stdout + said.stderr
    )
    assert [r.job_id for r in project.records()] == [job]


def test_a_session_lost_with_a_tmux_server_another_launch_started_is_asked_again(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two launches at once on a host with no tmux server both start one; the one whose server loses
    the socket is told "server exited unexpectedly". Here a tmux that answers so once, then is tmux."""
    real = shutil.which("tmux")
    assert real
    folder = tmp_path / "bin"
    folder.mkdir()
    told = tmp_path / "told"
    (folder / "tmux").write_text(
        f'#!/bin/sh\nif [ "$1" = new-session ] && [ ! -e {told} ]; then\n'
        f"  : > {told}; echo 'server exited unexpectedly' >&2; exit 1\nfi\nexec {real} \"$@\"\n"
    )
    (folder / "tmux").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    project.book("localhost", cmd="echo hi")
    project.run()
    assert told.exists()  # it was told, once
    assert project.wait()[f"{project.name}.0"]["state"] == "COMPLETED"
