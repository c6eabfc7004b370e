"""`compute jobs --grid` and `--summary` on sweeps really run by the test bed's Slurm and tmux, and
the submission progress the slurm and tmux tasks report while a run goes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from compute_platform import playbook
from compute_platform.run.reporting import Reporter
from compute_platform.run.runner import Runner, RunOptions
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import book_text, host_entry, write_project
from tests.support.waiting import wait_jobs

# exits 3 when the sweep point has `--fail`: a sweep with failures in known cells
FAILS_ON_FLAG = "python3 -c 'import sys; sys.exit(3 if \"--fail\" in sys.argv else 0)'"


def project(folder: Path, testbed: tbm.Testbed, tasks: list[dict[str, Any]]) -> Path:
    """hosts.yaml with `cluster` (its logs in a folder of this test: job ids restart with every bed,
    and beds share the test user's home) and h1..hN; book.yaml with these tasks."""
    logs = f"~/compute/test-{uuid.uuid4().hex[:10]}"
    cluster = {**host_entry(testbed, testbed.slurm_alias), "platform": "slurm", "save_path": logs}
    return write_project(folder, testbed, book_text(tasks), extra_hosts={"cluster": cluster})


def wait_final(folder: Path, timeout: float = 45) -> None:
    wait_jobs(folder / "archive", timeout=timeout)


def cells(output: str, label: str) -> list[str]:
    """The cells of the grid row whose first label is `label` (│-separated, label columns dropped)."""
    for line in output.splitlines():
        parts = [p.strip() for p in line.strip("│ \n").split("│")]
        if parts and parts[0] == label:
            return parts[1:]
    raise AssertionError(f"no row {label!r} in:\n{output}")


@pytest.mark.slow
def test_grid_and_summary_of_a_slurm_sweep_with_failures(testbed: tbm.Testbed, tmp_path: Path) -> None:
    tasks = [
        {"name": "warmup", "hosts": "cluster", "slurm": {"cmd": "true"}},
        {
            "name": "train",
            "hosts": "cluster",
            "slurm": {
                "cmd": FAILS_ON_FLAG,
                "sweep": {"lr": [0.1, 0.01], "fail": [False, True]},
                "seeds": "0, 1, 2",
            },
        },
    ]
    project(tmp_path, testbed, tasks)
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_final(tmp_path)

    grid = compute("jobs", "--grid", cwd=tmp_path)  # no task: the ledger's latest, train
    assert grid.returncode == 0, grid.stdout + grid.stderr
    assert grid.stdout.startswith("train on cluster\n")
    assert "fail=false" in grid.stdout and "fail=true" in grid.stdout
    assert cells(grid.stdout, "0.1") == ["0-2 CD", "0-2 F"]
    assert cells(grid.stdout, "0.01") == ["0-2 CD", "0-2 F"]
    assert "CD completed 2  F failed 2" in grid.stdout

    other = compute("jobs", "--grid", "warmup", cwd=tmp_path)
    assert other.stdout.startswith("warmup on cluster\n") and "CD completed 1" in other.stdout

    summary = compute("jobs", "--summary", cwd=tmp_path)
    rows = [line.split() for line in summary.stdout.splitlines()]
    assert rows[0] == [
        "TASK",
        "HOST",
        "JOBS",
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
    ]
    assert rows[1] == ["warmup", "cluster", "1", "0", "0", "1", "0", "0", "0"]
    assert rows[2] == ["train", "cluster", "4", "0", "0", "2", "2", "0", "0"]
    assert rows[3] == ["total", "5", "0", "0", "3", "2", "0", "0"]

    document = json.loads(compute("jobs", "--summary", "--json", "--task", "train", cwd=tmp_path).stdout)
    assert document["version"] == 1
    assert [(t["task"], t["host"], t["jobs"]) for t in document["tasks"]] == [("train", "cluster", 4)]
    assert document["tasks"][0]["states"]["FAILED"] == 2 and document["total"]["jobs"] == 4
    assert set(document["total"]["states"]) == {
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "UNKNOWN",
    }


def test_grid_of_a_tmux_sweep_with_args_and_a_refusal_of_contradicting_options(
    testbed: tbm.Testbed, tmp_path: Path
) -> None:
    name = f"grid{uuid.uuid4().hex[:6]}"  # tmux session names are shared by the bed's hosts
    tasks = [
        {
            "name": name,
            "hosts": "h1",
            "tmux": {
                "cmd": FAILS_ON_FLAG,
                "args": ["--model a", "--model b"],
                "sweep": {"fail": [False, True]},
            },
        }
    ]
    project(tmp_path, testbed, tasks)
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_final(tmp_path, timeout=30)
    grid = compute("jobs", "--grid", name, cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr
    lines = grid.stdout.splitlines()
    assert lines[0] == f"{name} on h1"
    assert "args" in lines[2] and "fail" in lines[2] and "state" in lines[2]
    body = [[p.strip() for p in line.strip("│").split("│")] for line in lines if line.startswith("│")]
    # args written once per group of rows; the first sweep parameter next to it
    assert body == [
        ["--model a", "false", "CD"],
        ["", "true", "F"],
        ["--model b", "false", "CD"],
        ["", "true", "F"],
    ]
    refused = compute("jobs", "--grid", "--json", cwd=tmp_path)
    assert refused.returncode == 2 and "--grid draws one task's sweep" in refused.stderr


class Progress(Reporter):
    """Records what the live view would draw as a bar."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, int | None, str]] = []

    def host_progress(self, task: Any, host: str, done: int, total: int | None, unit: str = "bytes") -> None:
        self.events.append((task.name, host, done, total, unit))


@pytest.mark.parametrize("array", [False, True])
def test_a_sweep_reports_its_submission_progress(testbed: tbm.Testbed, tmp_path: Path, array: bool) -> None:
    name = f"prog{uuid.uuid4().hex[:6]}"
    tasks = [
        {
            "name": "many",
            "hosts": "cluster",
            "slurm": {"cmd": "true", "sweep": {"i": [1, 2, 3, 4, 5]}, "array": array},
        },
        {"name": name, "hosts": "h1", "tmux": {"cmd": "true", "args": ["a", "b", "c"]}},
    ]
    book = project(tmp_path, testbed, tasks)
    reporter = Progress()
    summary = Runner(playbook.load(book), RunOptions(archive=tmp_path / "archive"), reporter).run()
    assert not summary.failed
    slurm = [e[2:] for e in reporter.events if e[0] == "many"]
    if array:  # one sbatch for the whole array
        assert slurm == [(0, 5, "jobs"), (5, 5, "jobs")]
    else:  # one sbatch per job, one step each
        assert slurm == [(i, 5, "jobs") for i in range(6)]
    assert [e[1:] for e in reporter.events if e[0] == name] == [("h1", 0, 3, "jobs"), ("h1", 3, 3, "jobs")]
    wait_final(tmp_path)
