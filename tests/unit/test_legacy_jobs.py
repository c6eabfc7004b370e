"""Reading the original tool's jobs.csv into the ledger (`compute import-legacy`): the line shapes it
really wrote (tests/unit/legacy/jobs.csv, with its archived scripts), the import's counts and its
idempotence, the errors for bad input, the hint of `compute jobs`, and the Slurm states of rows
without an exit-status file."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from compute_platform.errors import InputError
from compute_platform.ledger import JobRecord, Ledger, legacy
from compute_platform.ledger.legacy import BAD_ID, NO_ID, LegacyJob, Skipped
from compute_platform.scheduling import slurm
from compute_platform.scheduling.backend import COMPLETED, FAILED, UNKNOWN, JobState
from tests.support.cli import compute

FIXTURE = Path(__file__).parent / "legacy"
HOSTS = """\
pando:
  host: pando.example.org
  platform: slurm
  save_path: "/scratch/me/slurm_logs"
calmip:
  host: olympe.example.org
  platform: slurm
  save_path: "/tmpdir/me/slurm_logs"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder as the original left it: jobs.csv, hosts.yaml and archive/<alias>/<alias>_<id>.slurm."""
    shutil.copy(FIXTURE / "jobs.csv", tmp_path / "jobs.csv")
    shutil.copytree(FIXTURE / "archive", tmp_path / "archive")
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    return tmp_path


def run_import(folder: Path, dry_run: bool = False) -> legacy.ImportResult:
    return legacy.import_jobs(folder / "jobs.csv", folder / "hosts.yaml", folder / "archive", dry_run=dry_run)


# -- parsing ------------------------------------------------------------------------------------


def test_the_shapes_the_original_wrote() -> None:
    parsed = legacy.parse((FIXTURE / "jobs.csv").read_bytes(), "jobs.csv")
    assert parsed.jobs == (
        LegacyJob(1, "pando", "1289083", "1289083", "--env=Pong-v0 --theta_init_std=0.5 --theta_init_bias=0"),
        LegacyJob(
            3, "calmip", "796193", "796193", "--net=canonical --env=Pong-v0 --es_wd=0.001 --es_sigma=0.02"
        ),
        # commas in the command stay in it
        LegacyJob(4, "pando", "12345", "12345", "['run_1', 'run_2', 'run_3']"),
        LegacyJob(5, "pando", "12345", "12345", "run_1"),
        # sbatch's answer with a leading space: the id is the number, the script keeps the space
        LegacyJob(
            8,
            "pando",
            "1425485",
            " 1425485",
            "python3 train.py --net=impala --env=leaper-easy --seeding=unique",
        ),
        LegacyJob(9, "pando", "1480302", "1480302", "pytest -v --disable-pytest-warnings --color=yes tests"),
    )
    # sbatch failed (empty id), or the host's init printed before sbatch's answer
    assert parsed.skipped == (Skipped(2, NO_ID), Skipped(6, NO_ID), Skipped(7, BAD_ID))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("h , 00042 , x", LegacyJob(1, "h", "42", "00042", "x")),  # squeue prints 42
        ("h , 0 , x", Skipped(1, BAD_ID)),  # one such id would fail `squeue -j` for the whole host
        ("h , 4294967294 , x", Skipped(1, BAD_ID)),
        ("h , 12 34 , x", Skipped(1, BAD_ID)),
        ("h , 123 , a , b , c\r\n", LegacyJob(1, "h", "123", "123", "a , b , c")),
        ("h , 123 , ", LegacyJob(1, "h", "123", "123", "")),
        ("   ", None),
    ],
)
def test_one_line(line: str, expected: object) -> None:
    assert legacy.parse_line(line, 1, "jobs.csv") == expected


@pytest.mark.parametrize(
    "line",
    [
        "some notes about my runs",
        "pando,1289083,--env=Pong-v0",  # not the original's ` , `
        " , 123 , x",  # no alias
        "submitted_at,playbook,task,host,scheduler,job_id,job_name",  # our own job.csv
    ],
)
def test_a_line_the_original_never_wrote_is_an_error_naming_file_and_line(line: str) -> None:
    data = f"pando , 1 , x \n{line}\n".encode()
    with pytest.raises(InputError) as e:
        legacy.parse(data, "old/jobs.csv")
    assert str(e.value).startswith(
        "old/jobs.csv:2: cannot read this line: expected `ALIAS , JOB_ID , COMMAND`"
    )


def test_a_line_that_is_not_utf8_is_named() -> None:
    with pytest.raises(InputError, match=r"^jobs.csv:2: cannot read this line: byte 13 is not UTF-8"):
        legacy.parse(b"pando , 1 , x \npando , 2 , \xe9t\xe9 \n", "jobs.csv")


@pytest.mark.parametrize(
    ("script", "name"),
    [
        ("#!/bin/bash   \n   \n#SBATCH -J Procgen\n\n#SBATCH -N 1\necho hi\n", "Procgen"),
        ("#!/bin/bash\n#SBATCH -J Pong debug\n", "Pong"),  # sbatch reads one word
        ("#!/bin/bash\n#SBATCH --job-name=a.b\n", "a.b"),
        ("#!/bin/bash\n#SBATCH --job-name 'x y'\n", "x y"),
        ("#!/bin/bash\n#SBATCH -Jshort\n", "short"),
        ("#!/bin/bash\n#SBATCH -J first\n#SBATCH -J second\n", "second"),
        ("#!/bin/bash\necho start\n#SBATCH -J too-late\n", ""),  # after the first command: not an option
        ("#!/bin/bash\n#SBATCH -N 1\n", ""),
        ("#!/bin/bash\n#SBATCH -J 'unclosed\n", "'unclosed"),
    ],
)
def test_job_name_from_the_script(script: str, name: str) -> None:
    assert legacy.job_name(script) == name


def test_line_ranges() -> None:
    assert legacy.line_ranges([9]) == "line 9"
    assert legacy.line_ranges([135, 9, 132, 133, 134]) == "lines 9, 132-135"
    many = [10 * i for i in range(1, 13)]
    assert legacy.line_ranges(many) == "lines 10, 20, 30, 40, 50, 60, 70, 80 and 4 more"


# -- the import ---------------------------------------------------------------------------------


def test_import_writes_one_row_per_job_as_the_original_named_its_files(project: Path) -> None:
    result = run_import(project)
    assert (len(result.imported), result.already, result.repeated) == (5, 0, (5,))
    assert [s.line for s in result.skipped] == [2, 6, 7]
    rows = {r.job_id: r for r in Ledger(project / "archive").records()}
    assert list(rows) == ["1289083", "796193", "12345", "1425485", "1480302"]
    procgen = rows["1425485"]
    assert procgen == JobRecord(
        submitted_at="",
        playbook=str((project / "jobs.csv").resolve()),
        task="legacy",
        host="pando",
        scheduler="slurm",
        job_id="1425485",
        job_name="Procgen",
        command="python3 train.py --net=impala --env=leaper-easy --seeding=unique",
        script="pando/pando_ 1425485.slurm",
        log_out="/scratch/me/slurm_logs/slurm.1425485.out",
        log_err="/scratch/me/slurm_logs/slurm.1425485.err",
        run_id=procgen.run_id,
        hosts_file=str((project / "hosts.yaml").resolve()),
    )
    assert Ledger(project / "archive").script_text(procgen).startswith("#!/bin/bash")
    assert (rows["796193"].job_name, rows["796193"].script) == ("Pong", "calmip/calmip_796193.slurm")
    assert (rows["1289083"].script, rows["1289083"].job_name) == ("", "")  # no archived script
    assert rows["12345"].command == "['run_1', 'run_2', 'run_3']"  # the first line of a repeated job
    assert all(r.status_file == "" for r in rows.values())


def test_importing_again_adds_nothing(project: Path) -> None:
    run_import(project)
    before = (project / "archive" / "job.csv").read_bytes()
    again = run_import(project)
    assert (len(again.imported), again.already, len(again.skipped)) == (0, 5, 3)
    assert (project / "archive" / "job.csv").read_bytes() == before
    assert legacy.report(again)[0].endswith(
        "imported 0 job(s) into "
        + str(again.ledger)
        + " (task legacy), 5 already there, 1 repeated line(s), 3 invalid line(s) skipped"
    )


def test_jobs_already_in_the_ledger_are_left_out(project: Path) -> None:
    ledger = Ledger(project / "archive")
    ours = JobRecord("2026-01-01T00:00:00+00:00", "book.yaml", "train", "pando", "slurm", "1480302", "train")
    ledger.append([ours])
    result = run_import(project)
    assert len(result.imported) == 4 and result.already == 1
    assert [r.task for r in ledger.records()].count("train") == 1


def test_dry_run_writes_nothing(project: Path) -> None:
    result = run_import(project, dry_run=True)
    assert len(result.imported) == 5 and not (project / "archive" / "job.csv").exists()
    assert legacy.report(result)[0].startswith(f"{project / 'jobs.csv'}: would import 5 job(s)")


def test_the_report_lists_what_was_skipped_and_why(project: Path) -> None:
    lines = legacy.report(run_import(project))
    assert lines[1:] == [
        f"  {NO_ID}: lines 2, 6",
        f"  {BAD_ID}: line 7",
        "  the same job as an earlier line: line 5",
        "see them: compute jobs --task legacy",
    ]


def test_an_alias_missing_from_hosts_yaml_is_an_error_naming_the_line(project: Path) -> None:
    (project / "hosts.yaml").write_text(HOSTS.replace("calmip:", "calmip2:"))
    with pytest.raises(InputError) as e:
        run_import(project)
    assert str(e.value) == (
        f"{project / 'jobs.csv'}:3: unknown host 'calmip': not in {project / 'hosts.yaml'} (add it, or pass "
        "--inventory with the original's hosts.yaml) (did you mean 'calmip2'?)"
    )
    assert not (project / "archive" / "job.csv").exists()  # nothing half-imported


def test_an_alias_that_is_not_a_slurm_host_is_an_error(project: Path) -> None:
    (project / "hosts.yaml").write_text(
        HOSTS.replace('platform: slurm\n  save_path: "/tmpdir', 'platform: linux\n  save_path: "/tmpdir')
    )
    with pytest.raises(
        InputError, match=r"jobs.csv:3: host 'calmip' is not a Slurm host .*\(platform: linux\)"
    ):
        run_import(project)


def test_without_save_path_the_logs_are_left_unknown(project: Path) -> None:
    (project / "hosts.yaml").write_text(HOSTS.replace('  save_path: "/tmpdir/me/slurm_logs"\n', ""))
    result = run_import(project)
    assert result.without_logs == ("calmip",)
    row = next(r for r in result.imported if r.host == "calmip")
    assert (row.log_out, row.log_err) == ("", "")  # not the default save_path: the original had none
    assert (
        "  host calmip has no save_path in the hosts file: the logs of its jobs are not known"
        in legacy.report(result)
    )


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found: give the path of the original tool's jobs.csv"):
        legacy.import_jobs(tmp_path / "jobs.csv", tmp_path / "hosts.yaml", tmp_path / "archive")


# -- the hint of `compute jobs` -------------------------------------------------------------------


def test_the_hint_names_the_command_until_the_jobs_are_imported(project: Path) -> None:
    hint = legacy.hint(project / "jobs.csv", project / "archive")
    assert hint == (
        f"hint: 5 job(s) of the original tool's {project / 'jobs.csv'} are not in "
        f"{project / 'archive' / 'job.csv'}: import them with `compute import-legacy --archive {project / 'archive'}`"
    )
    run_import(project)
    assert legacy.hint(project / "jobs.csv", project / "archive") is None


def test_the_hint_reads_the_imported_rows_not_the_whole_ledger(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `compute jobs` in such a project gives the hint a look: it reads the rows of task legacy
    (the ledger's index knows where they are), then the jobs still missing by their ids."""
    run_import(project)
    ledger = Ledger(project / "archive")
    [one, *others] = ledger.records()
    rows = [*others, replace(one, task="train")]  # one of them under another task: there all the same
    ledger.jobs_file.unlink()
    ledger.append(rows)

    def every_row(self: Ledger) -> set[tuple[str, str]]:
        raise AssertionError("the whole ledger was read")

    monkeypatch.setattr(Ledger, "job_keys", every_row)
    assert legacy.hint(project / "jobs.csv", project / "archive") is None
    ledger.jobs_file.unlink()
    ledger.append(others)
    assert legacy.hint(project / "jobs.csv", project / "archive") is not None


def test_no_hint_without_a_jobs_csv_or_for_another_kind_of_jobs_csv(tmp_path: Path) -> None:
    assert legacy.hint(tmp_path / "jobs.csv", tmp_path / "archive") is None
    (tmp_path / "jobs.csv").write_text("name,id,command\ntrain,1 , 2 , x\n")
    assert legacy.hint(tmp_path / "jobs.csv", tmp_path / "archive") is None


def test_cli_import_then_jobs_without_hint(project: Path) -> None:
    before = compute("jobs", cwd=project)
    assert before.returncode == 2
    assert (
        "hint: 5 job(s) of the original tool's jobs.csv are not in archive/job.csv: import them with `compute import-legacy`"
        in before.stderr
    )
    assert "hint" not in compute("jobs", "--json", cwd=project).stderr
    done = compute("import-legacy", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "jobs.csv: imported 5 job(s) into archive/job.csv (task legacy), 0 already there, 1 repeated line(s)"
    )
    again = compute("import-legacy", "--dry-run", cwd=project)
    assert "would import 0 job(s)" in again.stdout and again.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("import-legacy", "nothing.csv"),
            "error: nothing.csv not found: give the path of the original tool's jobs.csv",
        ),
        (("import-legacy", "-i", "none.yaml"), "error: hosts file not found: none.yaml"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(
    project: Path, args: tuple[str, ...], message: str
) -> None:
    proc = compute(*args, cwd=project)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and "Traceback" not in proc.stderr


def test_cli_names_the_unreadable_line(project: Path) -> None:
    with open(project / "jobs.csv", "a") as f:
        f.write("these are my notes\n")
    proc = compute("import-legacy", cwd=project)
    assert proc.returncode == 2 and proc.stderr.startswith("error: jobs.csv:10: cannot read this line")


# -- states of rows without an exit-status file -------------------------------------------------


def imported(job_id: str) -> JobRecord:
    return JobRecord("", "jobs.csv", "legacy", "pando", "slurm", job_id, "", log_out=f"/l/slurm.{job_id}.out")


def test_states_of_imported_rows_come_from_squeue_then_sacct() -> None:
    records = [imported("7"), imported("8"), imported("9")]
    queue = slurm.parse_squeue("7|COMPLETED|None\n")
    sacct = slurm.parse_sacct("8|FAILED|3:0\n")
    states = slurm.merge_states(records, queue, {}, sacct)
    assert states == {
        "7": JobState(COMPLETED),
        "8": JobState(FAILED, 3),
        "9": JobState(UNKNOWN, None, slurm.GONE_UNTRACKED),
    }
    # a cluster without accounting cannot say more than that, and says why
    alone = slurm.merge_states([imported("9")], {}, {}, {}, sacct_works=False)
    assert alone == {"9": JobState(UNKNOWN, None, "gone from the queue; sacct does not work on this cluster")}
    # rows of our own jobs keep saying what they lack
    ours = JobRecord("", "b.yaml", "t", "pando", "slurm", "10", "t", status_file="/l/t.10.status")
    assert slurm.merge_states([ours], {}, {}, {}) == {
        "10": JobState(UNKNOWN, None, "gone from the queue, no exit status")
    }


def test_the_json_of_an_imported_row_is_the_documented_shape(project: Path) -> None:
    from compute_platform.jobs.query import Row, as_json

    row = run_import(project).imported[0]
    job = json.loads(as_json([Row(row, JobState(COMPLETED))]))["jobs"][0]
    assert (job["task"], job["scheduler"], job["state"], job["status_file"]) == (
        "legacy",
        "slurm",
        "COMPLETED",
        "",
    )
