"""Slurm sweeps from real playbooks, through the CLI, over the test bed's sshd to its real single-node
Slurm (munge + slurmctld + slurmd), then `compute jobs / logs / cancel / resubmit` on them.

Every test writes its logs under its own folder of the test user's home: job ids restart at 1 with
every test bed, and several beds may share that home."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import testbed as tbm
from tests.support.cli import job_output
from tests.support.projects import SlurmProject as Project
from tests.support.projects import slurm
from tests.support.waiting import wait_for


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    made = Project(testbed, tmp_path)
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)  # the test user's home outlives the test bed


def test_sweep_3x2_with_two_seeds_runs_every_point_with_its_seeds_in_order(project: Project) -> None:
    proc = project.run(
        [
            slurm(
                "train",
                cmd='echo "seed=$seed"',  # the original tool's form: the command reads $seed
                args=["--model a", "--model b", "--model c"],
                sweep={"lr": [0.1, 0.01]},
                seeds="0, 1",
            )
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 job array (6 elements)" in proc.stdout
    states = project.wait()
    assert {row.state.state for row in states.values()} == {"COMPLETED"}
    rows = project.rows()
    assert len(rows) == 6
    array_id = rows[0]["job_id"].split("_")[0]
    assert [r["job_id"] for r in rows] == [f"{array_id}_{i}" for i in range(6)]
    expected = [(m, lr) for lr in ("0.1", "0.01") for m in "abc"]  # args vary fastest, as the original's
    for row, (model, lr) in zip(rows, expected, strict=True):
        assert project.output(row) == f"seed=0 --model {model} --lr={lr}\nseed=1 --model {model} --lr={lr}\n"
        assert json.loads(row["sweep"]) == {"lr": float(lr)} and row["args"] == f"--model {model}"
        assert row["seeds"] == "0,1" and row["scheduler"] == "slurm" and row["host"] == "cluster"
    # the archive holds the exact script, named after the array id
    script = project.folder / "archive" / rows[0]["script"]
    assert script.name == f"{array_id}.slurm" and "#SBATCH --array=0-5" in script.read_text()
    # and `compute jobs` shows them, and `compute logs` reads one back from the host
    shown = project.cli("jobs")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("COMPLETED") == 6 and "6 jobs: 6 completed" in shown.stdout
    logs = project.cli("logs", f"{array_id}_5")
    assert (
        logs.stdout
        == 'CMD echo "seed=$seed" --model c --lr=0.01\nseed=0 --model c --lr=0.01\nseed=1 --model c --lr=0.01\n'
    )


@pytest.mark.slow
def test_fifty_points_go_as_one_array_and_all_complete(project: Project) -> None:
    proc = project.run([slurm("fifty", cmd="echo point", sweep={"i": list(range(50))}, max_parallel=25)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = project.rows()
    assert len(rows) == 50 and len({r["script"] for r in rows}) == 1
    assert "#SBATCH --array=0-49%25" in (project.folder / "archive" / rows[0]["script"]).read_text()
    states = project.wait(timeout=60)
    assert all(row.state.state == "COMPLETED" and row.state.exit_code == 0 for row in states.values())
    assert [project.output(r) for r in rows] == [f"point --i={i}\n" for i in range(50)]


@pytest.mark.slow
def test_a_failed_job_shows_failed_and_resubmit_reruns_only_it(project: Project) -> None:
    marker = f"{project.logs}/failed-once"
    # x=2 fails the first time only
    cmd = (
        f'f() {{ if [ "$1" = --x=2 ] && [ ! -e {marker} ]; then touch {marker}; exit 1; fi; echo ok "$1"; }}'
    )
    cmd += "; f"
    proc = project.run([slurm("flaky", cmd=cmd, sweep={"x": [1, 2, 3]}, array=False)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project.wait()
    failed = project.rows()[1]["job_id"]
    shown = project.cli("jobs", "--state", "FAILED")
    assert (
        f"{failed} " in shown.stdout
        and "FAILED (1)" in shown.stdout
        and shown.stdout.count("FAILED (1)") == 1
    )

    again = project.cli("resubmit", "--failed")
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout.startswith(f"cluster: {failed} resubmitted as ")
        and "resubmitted 1 failed job(s)" in again.stdout
    )
    rows = project.rows()
    assert len(rows) == 4 and rows[3]["replaces"] == failed
    assert (project.folder / "archive" / rows[3]["script"]).read_text() == (
        project.folder / "archive" / rows[1]["script"]
    ).read_text()
    states = project.wait()
    assert states[rows[3]["job_id"]].state.state == "COMPLETED"
    assert project.output(rows[3]) == "ok --x=2\n"
    # the failure stays in the ledger, pointing at its replacement; nothing is left to resubmit
    assert states[failed].replaced_by == rows[3]["job_id"]
    assert "no failed job to resubmit" in project.cli("resubmit", "--failed").stdout


def test_an_array_element_is_resubmitted_alone(project: Project) -> None:
    proc = project.run(
        [slurm("arr", cmd='f() { test "$1" != --x=3 && echo "$1"; }; f', sweep={"x": list(range(6))})]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project.wait()
    again = project.cli("resubmit", "--failed", "--task", "arr")
    assert again.returncode == 0, again.stderr
    rows = project.rows()
    assert len(rows) == 7 and rows[6]["replaces"] == rows[3]["job_id"]
    assert rows[6]["job_id"].endswith("_3") and rows[6]["sweep"] == '{"x": 3}'
    states = project.wait()
    assert states[rows[6]["job_id"]].state.state == "FAILED"  # the same script fails the same way


def test_cancel_a_running_job_is_recorded(project: Project) -> None:
    proc = project.run([slurm("sleepy", cmd="echo started; sleep 60")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = project.rows()[0]["job_id"]
    project.wait(until=("RUNNING",))
    log = Path(project.rows()[0]["log_out"])
    # RUNNING comes before the script's first line: let it set its trap
    wait_for(lambda: log.exists() and "started" in log.read_text(), 10, "the job's first line", interval=0.1)
    done = project.cli("cancel", job_id)
    assert done.returncode == 0 and f"cancelled 1 job(s): {job_id}" in done.stdout, done.stderr
    state = project.wait()[job_id].state
    assert state.state == "CANCELLED"
    events = (project.folder / "archive" / "events.csv").read_text()
    assert f",cluster,{job_id},cancelled," in events
    # the job recorded its end itself (what `compute jobs` reads once the controller forgets it)
    status = Path(project.rows()[0]["status_file"])
    wait_for(status.exists, 10, "the job's status file", interval=0.2)
    # scancel signals the script and its command at once: the script's trap or the command's own
    # exit may record the end first; the code is 143 (SIGTERM) either way
    assert status.read_text() in ("143 signal\n", "143 exit\n")
    assert "already ended" in project.cli("cancel", job_id).stdout


@pytest.mark.slow
def test_logs_follow_prints_everything_and_stops_when_the_job_ends(project: Project) -> None:
    proc = project.run([slurm("ticker", cmd="for i in 1 2 3 4; do echo tick $i; sleep 0.4; done")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = project.rows()[0]["job_id"]
    followed = project.cli("logs", "-f", job_id, timeout=30)
    assert followed.returncode == 0, followed.stderr
    assert job_output(followed.stdout) == "tick 1\ntick 2\ntick 3\ntick 4\n"


def test_a_gpu_on_a_host_without_gpus_is_refused_before_anything_is_submitted(
    testbed: tbm.Testbed, tmp_path: Path
) -> None:
    project = Project(testbed, tmp_path, gpu=False)
    proc = project.run([slurm("needs-gpu", cmd="nvidia-smi", config="gpu")])
    assert proc.returncode == 2
    assert "asks for 1 GPU(s) per node on host 'cluster', which has no GPU (gpu: false)" in proc.stderr
    assert not (tmp_path / "archive").exists()


def test_a_refused_submission_quotes_sbatch_and_records_nothing(project: Project) -> None:
    proc = project.run([slurm("bad", cmd="true", config="nopart")])
    assert proc.returncode == 1
    assert (
        "sbatch refused the job: sbatch: error: invalid partition specified: no-such-partition" in proc.stdout
    )
    assert not (project.folder / "archive" / "job.csv").exists()
    assert list((project.folder / "archive" / "cluster").iterdir()) == []


def test_arguments_reach_the_program_literally(project: Project) -> None:
    words = ["it's", "a b", "$HOME", "x;y", '"q"', "*", "`id`"]
    proc = project.run(
        [slurm("quoting", cmd="printf '%s\\n'", args=[words], sweep={"msg": ["'hello world'; $(ls) *"]})]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project.wait()
    # a sweep value with blanks: the flag, then its words as a shell splits them, each literal
    lines = project.output(project.rows()[0]).splitlines()
    assert lines == [*words, "--msg", "hello world;", "$(ls)", "*"]


def test_two_aliases_of_one_cluster_share_a_scattered_sweep(project: Project) -> None:
    proc = project.run(
        [slurm("spread", hosts=["cluster", "cluster2"], cmd="echo", sweep={"p": [0, 1, 2, 3]}, scatter=True)]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = project.rows()
    assert sorted((r["host"], r["job_index"]) for r in rows) == [
        ("cluster", "0"),
        ("cluster", "2"),
        ("cluster2", "1"),
        ("cluster2", "3"),
    ]
    project.wait()
    assert sorted(project.output(r) for r in rows) == [f"--p={p}\n" for p in range(4)]
    assert project.cli("jobs", "--host", "cluster2").stdout.count("COMPLETED") == 2


@pytest.mark.slow
def test_a_dependency_on_an_earlier_task_waits_for_its_jobs(project: Project) -> None:
    first = slurm("first", cmd=f"sleep 1; touch {project.logs}/first-done; echo", sweep={"k": [1, 2]})
    second = slurm(
        "second", cmd=f"test -e {project.logs}/first-done && echo after", dependency="afterok:first"
    )
    proc = project.run([first, second])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = project.rows()
    assert rows[2]["dependency"] == f"afterok:{rows[0]['job_id']}:{rows[1]['job_id']}"
    states = project.wait()
    assert states[rows[2]["job_id"]].state.state == "COMPLETED"
    assert project.output(rows[2]) == "after\n"


def test_dry_run_prints_the_scripts_and_submits_nothing(project: Project) -> None:
    proc = project.run([slurm("dry", cmd="echo", sweep={"i": list(range(8))})], "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 job array (8 elements)" in proc.stdout and "#SBATCH --array=0-7" in proc.stdout
    assert not (project.folder / "archive").exists()
