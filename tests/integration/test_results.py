"""`compute results` on real jobs: tmux jobs on a test-bed workstation over SSH and Slurm jobs of the
bed's cluster writing COMPUTE_METRICS, seeds missing and jobs still running; a second call on an ended
sweep touches no host."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import write_hosts
from tests.support.projects import SlurmProject, TmuxProject
from tests.support.waiting import poll_until

# writes loss = lr * 10 / step + seed / 100 at steps 1..3; seed 2 of lr=0.1 writes nothing
WRITER = (
    'f() { lr=${1#--lr=}; [ "$SEED" = 2 ] && [ "$lr" = 0.1 ] && exit 0; for s in 1 2 3; do '
    'printf \'{"step": %s, "loss": %s}\\n\' "$s" "$(python3 -c "print($lr * 10 / $s + $SEED / 100)")" '
    '>> "$COMPUTE_METRICS"; done; }; f'
)


def points(folder: Path, *extra: str) -> dict[str, dict[str, Any]]:
    proc = compute("results", "--json", "--sort", "loss", *extra, cwd=folder, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {str(p["sweep"]["lr"]): p for p in json.loads(proc.stdout)["points"]}


@pytest.fixture
def tmux_project(testbed: Any, tmp_path: Path, local_tmux: str) -> Iterator[TmuxProject]:
    made = TmuxProject(testbed, tmp_path)
    yield made
    made.clean()


@pytest.fixture
def local_tmux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "tmux"
    folder.mkdir()
    monkeypatch.setenv("TMUX_TMPDIR", str(folder))
    yield str(folder)


def test_tmux_metrics_over_seeds_then_no_host_is_asked_again(testbed: Any, tmux_project: TmuxProject) -> None:
    tmux_project.book("h1", cmd=WRITER, sweep={"lr": [0.1, 0.01]}, seeds="0 1 2")
    tmux_project.run()
    tmux_project.wait(timeout=60)
    found = points(tmux_project.folder)
    assert list(found) == ["0.01", "0.1"]  # ranked by the final loss
    assert found["0.1"]["missing_seeds"] == ["2"] and found["0.01"]["missing_seeds"] == []
    assert found["0.01"]["final"]["loss"]["mean"] == pytest.approx(10 * 0.01 / 3 + 0.01)  # seeds 0, 1, 2
    assert found["0.1"]["best"]["loss"]["n"] == 2
    grid = compute("results", "--grid", "--sort", "loss", cwd=tmux_project.folder, timeout=60).stdout
    assert "on h1: loss" in grid  # the grid's title names the metric
    assert "*0.04333" in grid and "0.3383 ± 0.007071" in grid  # the best point marked
    # the sweep has ended and everything is here: the same answer through a host that is not there
    dead = tmux_project.folder / "dead"
    dead.mkdir()
    hosts = dict(tmux_project.hosts)
    hosts["h1"] = {**hosts["h1"], "port": 1, "connect_timeout": 2}
    write_hosts(dead, hosts)
    again = compute(
        "results", "--json", "--sort", "loss", "-i", str(dead / "hosts.yaml"), cwd=tmux_project.folder
    )
    assert again.returncode == 0 and "cannot" not in again.stderr, again.stderr
    assert {str(p["sweep"]["lr"]): p for p in json.loads(again.stdout)["points"]} == found
    # one job in full, from what is here
    one = compute("jobs", found["0.1"]["job_id"], "-i", str(dead / "hosts.yaml"), cwd=tmux_project.folder)
    assert one.returncode == 0 and "cannot" not in one.stderr, one.stdout + one.stderr
    assert "no value from seed(s) 2" in one.stdout and "loss: 0.3383 ± 0.007071" in one.stdout
    assert "(tmux), task" in one.stdout and "\nused" not in one.stdout  # no accounting for tmux jobs


@pytest.fixture
def slurm_project(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[SlurmProject]:
    made = SlurmProject(testbed, tmp_path)
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)


def test_slurm_metrics_while_a_job_still_runs(slurm_project: SlurmProject) -> None:
    slow = 'f() { echo "{\\"loss\\": 1.5}" >> "$COMPUTE_METRICS"; echo val=2.5; [ "$1" = --lr=0.1 ] && sleep 30; true; }; f'
    metrics = {"from_log": {"val": "val=([0-9.]+)"}}
    fields = {"cmd": slow, "sweep": {"lr": [0.1, 0.01]}, "array": False, "metrics": metrics}
    task = {"name": "train", "hosts": "cluster", "slurm": fields}
    proc = slurm_project.run([task])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    slurm_project.wait(timeout=60, until=("RUNNING", "COMPLETED"))
    import time

    deadline = time.monotonic() + 30
    while True:  # the running job's line is read as soon as it is written
        found = points(slurm_project.folder)
        if "loss" in found["0.1"]["final"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found["0.1"]["state"] == "RUNNING" and found["0.1"]["final"]["loss"]["mean"] == 1.5
    assert found["0.1"]["final"]["val"]["mean"] == 2.5  # from the running job's output
    assert found["0.01"]["state"] == "COMPLETED" and found["0.01"]["final"]["loss"]["n"] == 1
    shown = compute("results", cwd=slurm_project.folder).stdout
    assert "lr=0.1" in shown and "RUNNING" in shown
    compute("cancel", "--task", "train", cwd=slurm_project.folder)


def test_metrics_from_the_output_and_from_a_file_the_program_writes(tmux_project: TmuxProject) -> None:
    cmd = (
        'echo "epoch 1 val_loss=0.5$SEED"; echo "epoch 2 val_loss=0.4$SEED"; mkdir -p "out/$SEED"; '
        'printf "step,acc\\n1,0.7\\n2,0.8$SEED\\n" > "out/$SEED/m.csv"'
    )
    metrics = {"from_log": {"val_loss": "val_loss=([0-9.]+)"}, "file": "out/{seed}/m.csv"}
    tmux_project.book("h1", cmd=cmd, seeds="0 1", metrics=metrics, cd=tmux_project.remote)
    tmux_project.run()
    tmux_project.wait(timeout=60)
    proc = compute("results", "--json", "--sort", "acc", "--max", cwd=tmux_project.folder, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [point] = json.loads(proc.stdout)["points"]
    assert point["final"]["val_loss"] == {
        "mean": pytest.approx(0.405),
        "std": pytest.approx(0.00707, abs=1e-4),
        "n": 2,
    }
    assert point["best"]["val_loss"]["mean"] == pytest.approx(0.405)  # the least of each seed's
    assert point["final"]["acc"]["mean"] == pytest.approx(0.805) and point["best"]["acc"][
        "mean"
    ] == pytest.approx(0.805)


def test_results_while_jobs_run_cost_one_round_trip_per_host(
    tmux_project: TmuxProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The states of the open jobs and what is new of their metrics (and of their output, for
    `from_log`) come in ONE command per host; once the last job has ended and been fetched, none."""
    from compute_platform.hosts.base import Host
    from compute_platform.jobs import results
    from compute_platform.jobs.query import Jobs

    cmd = 'echo "{\\"loss\\": 1.5}" >> "$COMPUTE_METRICS"; echo "val=2.5"; [ "$1" = --lr=0.01 ] && sleep 300; true'
    metrics = {"from_log": {"val": "val=([0-9.]+)"}}
    tmux_project.book("h1", cmd=f"f() {{ {cmd}; }}; f", sweep={"lr": [0.1, 0.01]}, metrics=metrics)
    tmux_project.run()
    # one lane: the first job ends, then the second runs (and has written its metrics)
    tmux_project.wait(
        lambda states: {s["state"] for s in states.values()} == {"COMPLETED", "RUNNING"}, timeout=60
    )
    commands: list[str] = []
    real = Host.run

    def counted(self: Host, command: str, **kwargs: Any) -> Any:
        commands.append(self.alias)
        return real(self, command, **kwargs)

    monkeypatch.setattr(Host, "run", counted)
    view = Jobs(tmux_project.folder / "archive")
    try:

        def look() -> results.Found:
            commands.clear()
            return results.collect(view, "sweep", None, "loss", set())

        found = poll_until(look, lambda found: all("val" in p.final for p in found.points), 30, "the metrics")
        assert commands == ["h1"] and not found.problems, found.problems
        by_lr = {p.record.command.split("--lr=")[-1]: p for p in found.points}
        assert {lr: p.state for lr, p in by_lr.items()} == {"0.1": "COMPLETED", "0.01": "RUNNING"}
        assert all(p.final["loss"].mean == 1.5 and p.final["val"].mean == 2.5 for p in by_lr.values())
        tmux_project.compute("cancel", "--task", "sweep")
        tmux_project.wait(timeout=30)
        look()  # the cancelled job's end, and its files
        assert commands == ["h1"]
        look()
        assert commands == []
    finally:
        view.close()
