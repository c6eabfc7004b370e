"""A user of the original tool moves to `compute`: jobs it submitted to the test bed's real Slurm, recorded
in its jobs.csv and archive/<alias>/<alias>_<id>.slurm, are imported with `compute import-legacy` and then
followed with `compute jobs` and `compute logs`, their states from the cluster."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.hosts import HostPool
from compute_platform.input.inventory import load_inventory
from tests.support import testbed as tbm
from tests.support.project import write_hosts
from tests.support.projects import SlurmProject as Project
from tests.support.waiting import poll_until

# What the original rendered (src/slurm.py's make_slurm, in short): the job name, then the command
# echoed and run. It had sbatch write the logs to save_path with --output/--error.
SCRIPT = """\
#!/bin/bash{pad}
{pad}
#SBATCH -J {name}

#SBATCH -N 1
#SBATCH -n 1
#SBATCH --time=00:05:00


echo CMD {command}

{command}"""
NEVER_SEEN = "4000000"  # a job id this bed's controller never gave


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    made = Project(testbed, tmp_path)
    # the original's hosts.yaml gave save_path as an absolute path (sbatch gets it on the command line)
    for entry in made.hosts.values():
        entry["save_path"] = str(made.logs)
    write_hosts(tmp_path, made.hosts)
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)


def submit_like_the_original(project: Project, name: str, command: str) -> tuple[str, str]:
    """Upload the script and sbatch it over SSH as the original did; (job id, script)."""
    script = SCRIPT.format(pad="   ", name=name, command=command)
    logs = project.logs
    pool = HostPool(load_inventory(project.folder / "hosts.yaml", None))
    try:
        answer = pool.get("cluster").run(
            f"mkdir -p {logs} && cat > {logs}/remote.slurm && sbatch --export=ALL "
            f"--error={logs}/slurm.%j.err --output={logs}/slurm.%j.out {logs}/remote.slurm",
            stdin=script.encode(),
            timeout=60,
            check=True,
        )
    finally:
        pool.close()
    return answer.stdout.split("Submitted")[-1].replace("batch job", "").strip(), script


def jobs_json(project: Project) -> tuple[dict[str, dict[str, Any]], str]:
    shown = project.cli("jobs", "--json")
    assert shown.returncode == 0, shown.stderr
    return {job["job_id"]: job for job in json.loads(shown.stdout)["jobs"]}, shown.stderr


def test_jobs_of_the_original_tool_are_imported_once_and_followed_with_their_real_states(
    project: Project,
) -> None:
    ok, ok_script = submit_like_the_original(project, "legacy-ok", "echo hello --lr=0.1")
    failed, failed_script = submit_like_the_original(project, "legacy-fail", "exit 3")
    archive = project.folder / "archive" / "cluster"
    archive.mkdir(parents=True)
    (archive / f"cluster_{ok}.slurm").write_text(ok_script)
    (archive / f"cluster_ {failed}.slurm").write_text(failed_script)  # sbatch's answer had a space
    (project.folder / "jobs.csv").write_text(
        f"cluster , {ok} , echo hello --lr=0.1 \n"
        "cluster ,  , echo refused \n"  # sbatch failed: no id
        f"cluster ,  {failed} , exit 3 \n"
        f"cluster , {NEVER_SEEN} , echo long ago \n"
    )

    before = project.cli("jobs")
    assert before.returncode == 2  # no ledger yet; the hint says what to do
    assert (
        "hint: 3 job(s) of the original tool's jobs.csv are not in archive/job.csv: import them with "
        in before.stderr
    )
    assert "`compute import-legacy`" in before.stderr

    done = project.cli("import-legacy")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "jobs.csv: imported 3 job(s) into archive/job.csv (task legacy), 0 already there, 1 invalid line(s) skipped",
        "  no job id (sbatch failed): line 2",
        "see them: compute jobs --task legacy",
    ]

    jobs, stderr = poll_until(
        lambda: jobs_json(project),
        lambda seen: {seen[0][ok]["state"], seen[0][failed]["state"]} <= {"COMPLETED", "FAILED"},
        45,
        "both jobs to end",
        interval=0.3,
    )
    assert "hint" not in stderr
    assert (jobs[ok]["state"], jobs[failed]["state"]) == ("COMPLETED", "FAILED")
    assert (jobs[ok]["job_name"], jobs[ok]["task"], jobs[ok]["scheduler"]) == ("legacy-ok", "legacy", "slurm")
    assert (jobs[ok]["script"], jobs[failed]["script"]) == (
        f"cluster/cluster_{ok}.slurm",
        f"cluster/cluster_ {failed}.slurm",
    )
    assert jobs[ok]["log_out"] == f"{project.logs}/slurm.{ok}.out" and jobs[ok]["status_file"] == ""
    # the cluster cannot say: this bed has no accounting (sacct), and the controller never knew it
    assert (jobs[NEVER_SEEN]["state"], jobs[NEVER_SEEN]["reason"]) == (
        "UNKNOWN",
        "gone from the queue; sacct does not work on this cluster",
    )

    # the logs are where the original had Slurm write them
    logs = project.cli("logs", ok)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "CMD echo hello --lr=0.1\nhello --lr=0.1\n"

    table = project.cli("jobs", "--task", "legacy")
    assert table.returncode == 0 and "hint" not in table.stderr
    assert "3 jobs: 1 completed, 1 failed, 1 unknown" in table.stdout

    ledger = (project.folder / "archive" / "job.csv").read_bytes()
    again = project.cli("import-legacy")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(
        "jobs.csv: imported 0 job(s) into archive/job.csv (task legacy), 3 already there"
    )
    assert (project.folder / "archive" / "job.csv").read_bytes() == ledger


@pytest.mark.slow
def test_a_ledger_with_more_job_ids_than_a_command_line_holds_still_gets_its_states(project: Project) -> None:
    """The original recorded one id per job (no arrays): 17,000 of them on one host are ~130 KB of ids,
    more than one command line takes; the states query sends them on stdin."""
    job, _ = submit_like_the_original(project, "legacy-many", "echo many")
    lines = [f"cluster , {5_000_000 + i} , python3 train.py --i={i} \n" for i in range(17_000)]
    (project.folder / "jobs.csv").write_text("".join(lines) + f"cluster , {job} , echo many \n")
    done = project.cli("import-legacy")
    assert done.returncode == 0 and "imported 17001 job(s)" in done.stdout, done.stdout + done.stderr
    poll_until(
        lambda: jobs_json(project)[0][job]["state"],
        lambda state: state == "COMPLETED",
        45,
        f"job {job} to complete",
        interval=0.3,
    )
    jobs = jobs_json(project)[0]
    assert {j["reason"] for i, j in jobs.items() if i != job} == {
        "gone from the queue; sacct does not work on this cluster"
    }
