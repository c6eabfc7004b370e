"""Pure pieces of the Slurm task and backend: array layout, dependencies, state merging, resubmitted
rows, and the rendered script's exit-status record (run with bash and a fake Slurm environment)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import subprocess
import time
from pathlib import Path

import pytest

from compute_platform.errors import InputError
from compute_platform.input.spec import ResolvedConfig
from compute_platform.jobs.query import Row, filter_states, one_record, pick, point_text, state_text
from compute_platform.ledger import JobPaths, JobRecord, renewed
from compute_platform.scheduling import slurm
from compute_platform.scheduling.backend import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    UNKNOWN,
    JobState,
)
from compute_platform.scheduling.sbatch import SbatchSpec, render
from compute_platform.scheduling.sweep import expand
from compute_platform.tasks.slurm import AUTO_ARRAY_MIN, layout, resolve_dependency
from tests.support.waiting import wait_for


def jobs(n: int) -> list:  # type: ignore[type-arg]
    return expand([], {"x": list(range(n))})


# -- layout -----------------------------------------------------------------------------------


def test_auto_keeps_a_few_jobs_plain_and_makes_arrays_of_more() -> None:
    few = layout(jobs(AUTO_ARRAY_MIN - 1), "auto", None, 1001)
    assert [b.array for b in few] == [False] * (AUTO_ARRAY_MIN - 1)
    many = layout(jobs(AUTO_ARRAY_MIN), "auto", None, 1001)
    assert len(many) == 1 and many[0].array and len(many[0].jobs) == AUTO_ARRAY_MIN


def test_max_parallel_asks_for_an_array_even_for_two_jobs() -> None:
    assert [b.array for b in layout(jobs(2), "auto", 1, 1001)] == [True]


def test_arrays_are_split_by_max_array_size_in_order() -> None:
    batches = layout(jobs(25), True, None, 10)
    assert [len(b.jobs) for b in batches] == [10, 10, 5]
    assert [j.index for b in batches for j in b.jobs] == list(range(25))


def test_array_false_is_one_sbatch_per_job() -> None:
    assert len(layout(jobs(30), False, None, 1001)) == 30


# -- dependencies -----------------------------------------------------------------------------


def test_dependency_on_a_task_becomes_its_job_ids() -> None:
    ids = {"train": ["12", "13"], "prep": ["7"]}
    assert resolve_dependency("afterok:train", ids.__getitem__) == "afterok:12:13"
    assert resolve_dependency("afterok:train,afterany:prep", ids.__getitem__) == "afterok:12:13,afterany:7"
    assert resolve_dependency("afterok:train?afternotok:9", ids.__getitem__) == "afterok:12:13?afternotok:9"


def test_raw_slurm_dependencies_pass_unchanged() -> None:
    def nothing(name: str) -> list[str]:
        raise AssertionError(name)

    for raw in ("afterok:123:456", "after:123+10", "afterany:5_3", "singleton"):
        assert resolve_dependency(raw, nothing) == raw


# -- states -----------------------------------------------------------------------------------


def test_squeue_sacct_and_status_lines_are_parsed() -> None:
    assert slurm.parse_squeue("12|RUNNING|None\n13_2|PENDING|Dependency\n") == {
        "12": ("RUNNING", ""),
        "13_2": ("PENDING", "Dependency"),
    }
    assert slurm.parse_status_files("/l/blank.status| \n") == {}  # a blank line is no status
    assert slurm.parse_attempts("/l/a.status|0 exit 3\n/l/b.status|0 exit\n") == {"/l/a.status": 3}
    assert slurm.parse_status_files("/l/a b.12.status|1 exit\n/l/x.13.status|143 timeout\n") == {
        "/l/a b.12.status": (1, "exit"),
        "/l/x.13.status": (143, "timeout"),
    }
    assert slurm.parse_sacct("12|CANCELLED by 1001|0:15\n13|FAILED|2:0\n") == {
        "12": ("CANCELLED", 0),
        "13": ("FAILED", 2),
    }


@pytest.mark.parametrize(
    ("queued", "status", "sacct", "expected"),
    [
        (("PENDING", "Priority"), None, None, JobState(PENDING, None, "Priority")),
        (("COMPLETING", ""), None, None, JobState(RUNNING)),
        # the job's own record gives the exit code the controller does not show
        (("FAILED", "NonZeroExitCode"), (3, "exit"), None, JobState(FAILED, 3, "NonZeroExitCode")),
        (("TIMEOUT", "TimeLimit"), (143, "signal"), None, JobState(TIMEOUT, 143, "TimeLimit")),
        # gone from the queue (MinJobAge): the status file alone
        (None, (0, "exit"), None, JobState(COMPLETED, 0)),
        (None, (2, "exit"), None, JobState(FAILED, 2)),
        (None, (143, "signal"), None, JobState(CANCELLED, 143)),
        (None, (143, "timeout"), None, JobState(TIMEOUT, 143)),
        # never started (cancelled while pending, launch failure): the controller or sacct
        (("CANCELLED", ""), None, None, JobState(CANCELLED)),
        (None, None, ("NODE_FAIL", 1), JobState(FAILED, 1, "NODE_FAIL")),
        # the Slurm name of an end that says more than FAILED or CANCELLED is its reason
        (("OUT_OF_MEMORY", "OutOfMemory"), (137, "exit"), None, JobState(FAILED, 137, "OUT_OF_MEMORY")),
        (None, (137, "exit"), ("OUT_OF_MEMORY", 0), JobState(FAILED, 137, "OUT_OF_MEMORY")),
        (("PREEMPTED", ""), (143, "signal"), None, JobState(CANCELLED, 143, "PREEMPTED")),
        (None, (1, "exit"), ("FAILED", 1), JobState(FAILED, 1)),
        (None, None, None, JobState(UNKNOWN, None, "gone from the queue, no exit status")),
    ],
)
def test_merge_prefers_the_controller_while_alive_then_the_status_file(
    queued: tuple[str, str] | None,
    status: tuple[int, str] | None,
    sacct: tuple[str, int | None] | None,
    expected: JobState,
) -> None:
    assert slurm.merge_one(queued, status, sacct) == expected


def record(job_id: str, host: str = "c", **extra: str) -> JobRecord:
    base = f"/logs/train.{job_id}"
    return JobRecord(
        "2026-01-01T00:00:00+00:00",
        "/p/book.yaml",
        extra.pop("task", "train"),
        host,
        "slurm",
        job_id,
        "train",
        log_out=f"{base}.out",
        log_err=f"{base}.err",
        status_file=f"{base}.status",
        **extra,
    )


def test_a_resubmitted_row_points_to_the_old_one_with_logs_named_after_the_new_id() -> None:
    old = record("15_2", dependency="afterok:3", args="--a 1")
    paths = JobPaths.slurm(posixpath.dirname(old.log_out), old.job_name, "19_2")
    new = renewed(old, "19_2", paths, "c/19.slurm", "run2")
    assert (new.job_id, new.replaces, new.script, new.run_id) == ("19_2", "15_2", "c/19.slurm", "run2")
    assert (new.log_out, new.status_file) == ("/logs/train.19_2.out", "/logs/train.19_2.status")
    assert new.dependency == "" and new.args == "--a 1"


def test_sbatch_id_is_read_after_warnings_and_cluster_names() -> None:
    assert slurm.parse_job_id("123\n") == "123"
    assert slurm.parse_job_id("sbatch: warning: something\n456;cluster2\n") == "456"


# -- picking and showing rows -----------------------------------------------------------------


def test_jobs_are_named_by_id_array_id_or_host_and_id() -> None:
    records = [record("5"), record("7_0"), record("7_1"), record("5", host="other")]
    assert pick(records, ["c:5"]) == [records[0]]
    assert pick(records, ["7"]) == records[1:3]
    with pytest.raises(InputError, match="several hosts"):
        pick(records, ["5"])
    with pytest.raises(InputError, match="an array"):
        one_record(records, "7")
    with pytest.raises(InputError, match="no job 9"):
        pick(records, ["9"])


def test_state_filter_and_text() -> None:
    rows = [
        Row(record("1"), JobState(FAILED, 3), replaced_by="4"),
        Row(record("2"), JobState(PENDING, None, "Dependency")),
    ]
    assert filter_states(rows, "failed") == rows[:1]
    with pytest.raises(InputError, match="unknown state"):
        filter_states(rows, "DONE")
    assert state_text(rows[0]) == "FAILED (3) -> 4"
    assert state_text(rows[1]) == "PENDING (Dependency)"
    assert (
        state_text(Row(record("5"), JobState(FAILED, 137, "OUT_OF_MEMORY"))) == "FAILED (137) OUT_OF_MEMORY"
    )
    assert state_text(Row(record("6"), JobState(FAILED, 3, "NonZeroExitCode"))) == "FAILED (3)"
    assert (
        point_text(record("1", args="--model a", sweep='{"lr": 0.1}', seeds="0,1"))
        == "--model a lr=0.1 seeds=0,1"
    )


# -- the rendered script, run by bash with a fake Slurm environment ---------------------------


def run_script(tmp_path: Path, cmd: str, seeds: list[int], *, wait: bool = True) -> subprocess.Popen[str]:
    spec = SbatchSpec(
        "t", cmd, tuple(expand([], {}, seeds)), ResolvedConfig("default"), str(tmp_path), seed_flag=None
    )
    script = tmp_path / "job.sbatch"
    script.write_text(render(spec))
    env = {**os.environ, "SLURM_JOB_ID": "42", "PATH": os.environ["PATH"]}
    proc = subprocess.Popen(
        ["bash", str(script)],
        env=env,
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    if wait:
        proc.wait(timeout=10)
    return proc


def test_all_seeds_run_in_order_and_the_last_failure_is_the_exit_code(tmp_path: Path) -> None:
    proc = run_script(tmp_path, 'echo "seed $SEED"; [ "$SEED" != 1 ] || exit 4;', [0, 1, 2])
    assert proc.stdout is not None
    output = proc.stdout.read().split("\n")
    assert output[0].startswith("CMD echo")  # as the original tool's jobs did
    assert output[1:4] == ["seed 0", "seed 1", "seed 2"]
    assert proc.returncode == 4
    assert (tmp_path / "t.42.status").read_text() == "4 exit\n"


def test_a_signal_is_recorded_even_when_the_program_ignores_it(tmp_path: Path) -> None:
    proc = run_script(tmp_path, "trap '' TERM; touch started; sleep 30", [], wait=False)
    wait_for((tmp_path / "started").exists, 5, "the program to start", interval=0.02)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 143
    assert time.monotonic() - start < 3
    with contextlib.suppress(ProcessLookupError):  # the program that ignored SIGTERM: Slurm would SIGKILL it
        os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "t.42.status").read_text() == "143 signal\n"


def test_array_elements_that_never_started_take_the_state_of_the_array_record() -> None:
    records = [record("30_0"), record("30_1"), record("30_2")]
    queue = slurm.parse_squeue("30_0|COMPLETED|None\n30|CANCELLED|JobHeldUser\n")
    states = slurm.merge_states(records, queue, {"/logs/train.30_0.status": (0, "exit")}, {})
    assert states == {
        "30_0": JobState(COMPLETED, 0),
        "30_1": JobState(CANCELLED, None, "JobHeldUser"),
        "30_2": JobState(CANCELLED, None, "JobHeldUser"),
    }


def test_an_end_the_controller_still_knows_is_not_settled() -> None:
    """A preempted or node-failed job may be requeued while the controller knows it, even after it
    wrote its status file: its end is kept (never asked again) only once the controller forgot it."""
    from compute_platform.scheduling.slurm import merge_one

    assert not merge_one(("PREEMPTED", ""), (143, "signal"), None).settled
    assert not merge_one(("NODE_FAIL", ""), None, ("NODE_FAIL", 1)).settled
    assert merge_one(None, (143, "signal"), None).settled
    assert merge_one(None, None, ("COMPLETED", 0)).settled


def test_a_heterogeneous_job_is_its_first_component() -> None:
    """squeue and sacct list a hetjob's components (`7+0`, `7+1`): the job's state is its first's,
    which runs the batch script (and whose exit code the script's)."""
    queue = slurm.parse_squeue("7+0|RUNNING|None\n7+1|RUNNING|None\n8|PENDING|Priority\n")
    assert queue == {"7": ("RUNNING", ""), "8": ("PENDING", "Priority")}
    ended = slurm.parse_sacct("7+0|FAILED|3:0\n7+1|CANCELLED by 0|0:15\n")
    assert ended == {"7": ("FAILED", 3)}


def test_what_accounting_says_a_job_used() -> None:
    text = (
        "12|00:02:05||100M|01:00.500|1|COMPLETED\n12.batch|00:02:05|420456K||01:00.400|1|COMPLETED\n"
        "12.extern|00:02:05|0||00:00:00|1|COMPLETED\n"
        "13_0|1-00:00:10||4Gc|01:00:00|2|FAILED\n13_0.batch|1-00:00:10|2G||01:00:00|2|FAILED\nbad line\n"
        "14|00:00:01|||00:00:00|1|COMPLETED\n14.batch|00:00:01|1M||00:00:00|1|COMPLETED\n"  # it does not say what was asked yet
        "15|00:00:01||?|00:00:00|1|COMPLETED\n15.batch|00:00:01|1M||00:00:00|1|COMPLETED\n"  # nor in words it knows
        "16|||100M|00:00:00|1|COMPLETED\n16.batch||1M||00:00:00|1|COMPLETED\n"  # nor its elapsed time
        "17|00:00:00||100M|00:00:00|0|CANCELLED by 1000\n"  # cancelled while pending: it never ran
        "18|00:00:03||100M|00:00:00|1|COMPLETED\n"  # its steps' records are still to come
    )
    found = slurm.parse_usage(text)
    assert found["12"] == slurm.Usage(125.0, pytest.approx(410.6, abs=0.1), 100.0, 60.5, 1)  # type: ignore[arg-type]
    assert found["12"].cpu_efficiency == pytest.approx(60.5 / 125)
    assert (found["13_0"].elapsed, found["13_0"].req_mem_mb, found["13_0"].max_rss_mb) == (
        86410.0,
        8192.0,
        2048.0,
    )
    assert found["17"] == slurm.Usage(0.0, None, 100.0, 0.0, 0) and found["17"].cpu_efficiency is None
    assert not {"14", "15", "16", "18"} & set(found)  # asked again


def test_accounting_is_asked_about_ended_jobs_only_in_chunks(tmp_path: Path) -> None:
    """Known to have ended (no status file given), or whose status file is there: asked, ID_CHUNK ids
    per sacct call; a job still running (no status file yet) is not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text('#!/bin/sh\necho "sacct $*"\n')
    (bin_dir / "sacct").chmod(0o755)
    (tmp_path / "12.status").write_text("0 exit\n")
    asked = [("11", ""), ("12", str(tmp_path / "12.status")), ("13", str(tmp_path / "13.status"))]
    asked += [(str(100 + i), "") for i in range(slurm.ID_CHUNK)]
    part = slurm.usage_part(asked)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    said = subprocess.run(
        ["bash", "-c", part.script], input=part.stdin, capture_output=True, env=env, check=True
    ).stdout.decode()
    assert slurm.usage_asked(said) == {"11", "12"} | {str(100 + i) for i in range(slurm.ID_CHUNK)}
    calls = [line.split()[4] for line in said.splitlines() if line.startswith("sacct")]
    assert [len(c.split(",")) for c in calls] == [slurm.ID_CHUNK, 2]
    assert (
        calls[0].startswith("11,12,100,")
        and calls[1] == f"{100 + slurm.ID_CHUNK - 2},{100 + slurm.ID_CHUNK - 1}"
    )
    assert f"-o {slurm.USAGE_FIELDS}" in said
    answers = {
        "Slurm accounting storage is disabled": slurm.NO_SACCT,  # no accounting on this cluster: never asked again
        "slurm_persist_conn_open_without_init: failed to open persistent connection": slurm.SACCT_FAILED,
    }
    for error, mark in answers.items():
        (bin_dir / "sacct").write_text(f'#!/bin/sh\necho "sacct: error: {error}" >&2\nexit 1\n')
        said = subprocess.run(
            ["bash", "-c", part.script], input=part.stdin, capture_output=True, env=env, check=True
        ).stdout.decode()
        other = {slurm.NO_SACCT, slurm.SACCT_FAILED} - {mark}
        assert mark in said.splitlines() and other.isdisjoint(said.splitlines()) and error not in said
    (bin_dir / "sacct").unlink()  # no sacct at all
    env["PATH"] = f"{bin_dir}"
    said = subprocess.run(
        ["/bin/bash", "-c", part.script], input=part.stdin, capture_output=True, env=env, check=True
    ).stdout.decode()
    assert slurm.NO_SACCT in said
