"""`compute jobs --grid` and `--summary`: the models built from ledger rows + states, and their
renderings, checked against reference files in golden/jobviews/ (rich Console(record=True) text at a
fixed width). After a deliberate change, regenerate them with
`COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_jobviews.py` and review the diff."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from compute_platform.errors import InputError
from compute_platform.jobs import views
from compute_platform.jobs.query import Row
from compute_platform.ledger import JobRecord
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
from compute_platform.scheduling.sweep import expand
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "jobviews"
CYCLE = (COMPLETED, RUNNING, PENDING, FAILED, TIMEOUT, CANCELLED)


def rows_of(
    task: str,
    args: Sequence[Any],
    sweep: dict[str, list[Any]],
    seeds: Sequence[int | str] = (),
    *,
    host: str = "cluster",
    states: Sequence[str] = CYCLE,
    first_id: int = 100,
) -> list[Row]:
    """Ledger rows as the slurm task writes them (args words, sweep JSON, seeds, job_index)."""
    out = []
    for job in expand(args, sweep, seeds):
        record = JobRecord(
            submitted_at="2026-11-24T23:20:32+00:00",
            playbook="/p/book.yaml",
            task=task,
            host=host,
            scheduler="slurm",
            job_id=f"{first_id}_{job.index}",
            job_name=task,
            args=" ".join(job.args),
            sweep=json.dumps(job.point) if job.point else "",
            seeds=",".join(str(s) for s in job.seeds),
            job_index=str(job.index),
        )
        out.append(Row(record, JobState(states[job.index % len(states)])))
    return out


def text(renderable: RenderableType, width: int = 100) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# -- the model ----------------------------------------------------------------------------------


def test_first_parameter_on_rows_the_others_combined_on_columns_args_as_an_extra_row_label() -> None:
    rows = rows_of(
        "train", ["--model a", "--model b"], {"lr": [0.1, 0.01], "wd": [0, 1], "fast": [True]}, [0]
    )
    [grid] = views.grids(rows)
    assert grid.row_axes == ("args", "lr")
    assert grid.rows == (
        ("--model a", "0.1"),
        ("--model a", "0.01"),
        ("--model b", "0.1"),
        ("--model b", "0.01"),
    )
    assert grid.columns == ("wd=0\nfast=true", "wd=1\nfast=true")
    # job 5 is --model b, lr 0.1, wd 1: row 2, column 1
    assert grid.cells[(2, 1)] == views.Cell("0", CYCLE[5], "100_5", "cluster")
    assert grid.missing == 0 and sum(grid.counts().values()) == 8


def test_a_point_run_again_shows_its_latest_job() -> None:
    first = rows_of("t", [], {"x": [1, 2]}, states=[FAILED])
    again = rows_of("t", [], {"x": [1]}, states=[RUNNING], first_id=200)  # resubmitted / re-run
    [grid] = views.grids([*first, *again])
    assert grid.cells[(0, 0)] == views.Cell("", RUNNING, "200_0", "cluster")
    assert grid.cells[(1, 0)].state == FAILED
    assert grid.counts()[FAILED] == 1 and grid.counts()[RUNNING] == 1


def test_scattered_hosts_make_one_grid_and_hosts_running_every_point_one_grid_each() -> None:
    every = rows_of("t", [], {"x": [1, 2, 3, 4]})
    scattered = [
        Row(r.record.__class__(**{**r.record.__dict__, "host": f"h{i % 2}"}), r.state)
        for i, r in enumerate(every)
    ]
    [grid] = views.grids(scattered)
    assert grid.hosts == ("h0", "h1") and len(grid.cells) == 4
    both = rows_of("t", [], {"x": [1, 2]}, host="h1") + rows_of("t", [], {"x": [1, 2]}, host="h2")
    grids = views.grids(both)
    assert [g.hosts for g in grids] == [("h1",), ("h2",)] and all(len(g.cells) == 2 for g in grids)


def test_a_task_of_the_same_name_in_another_playbook_is_left_out() -> None:
    other = [
        Row(JobRecord(**{**r.record.__dict__, "playbook": "/elsewhere/book.yaml"}), r.state)
        for r in rows_of("t", [], {"y": [1, 2, 3]})
    ]
    [grid] = views.grids([*other, *rows_of("t", [], {"x": [1, 2]})])
    assert grid.row_axes == ("x",) and len(grid.cells) == 2


def test_a_point_missing_from_the_product_is_an_empty_cell() -> None:
    rows = rows_of("t", [], {"a": [1, 2], "b": ["x", "y"]})
    [grid] = views.grids(rows[:3])
    assert grid.missing == 1 and (1, 1) not in grid.cells


def test_unreadable_or_missing_sweep_json_still_draws() -> None:
    row = rows_of("t", ["--x"], {})[0]
    broken = Row(JobRecord(**{**row.record.__dict__, "sweep": "{not json", "job_index": ""}), row.state)
    [grid] = views.grids([broken])
    assert grid.row_axes == ("args",) and grid.rows == (("--x",),) and grid.columns == ("",)


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("", ""),
        ("0", "0"),
        ("0,1", "0,1"),
        ("0,1,2", "0-2"),
        ("0,1,2,3,7,8,9,11", "0-3,7-9,11"),
        ("a,b", "a,b"),
        ("3,2,1", "3,2,1"),
    ],
)
def test_seeds_are_compressed_into_ranges(seeds: str, expected: str) -> None:
    assert views.compress_seeds(seeds) == expected


def test_latest_task_is_the_task_of_the_last_row_and_an_empty_ledger_says_so() -> None:
    rows = rows_of("a", [], {"x": [1]}) + rows_of("b", [], {"x": [1]}) + rows_of("a", [], {"x": [2]})
    assert views.latest_task([r.record for r in rows]) == "a"
    with pytest.raises(InputError, match="no job in the ledger"):
        views.latest_task([])


# -- reference renderings ---------------------------------------------------------------------


def test_grid_with_args_and_three_parameters_matches_reference() -> None:
    rows = rows_of(
        "train",
        ["--model small", "--model large"],
        {"lr": [0.1, 0.01], "wd": [0, 1e-4], "fast": [True, False]},
        [0, 1, 2],
    )
    check_golden(GOLDEN / "grid_args_three_params.txt", text(views.draw_grid(rows)))


def test_grid_with_one_parameter_matches_reference() -> None:
    rows = rows_of(
        "lr-scan", [], {"lr": [0.1, 0.03, 0.01, 0.003]}, [0, 1, 2, 3, 4], states=[COMPLETED, UNKNOWN, PENDING]
    )
    check_golden(GOLDEN / "grid_one_param.txt", text(views.draw_grid(rows)))


def test_grid_with_a_missing_point_matches_reference() -> None:
    rows = rows_of("t", [], {"a": [1, 2], "b": ["x", "y"]}, [7])
    check_golden(GOLDEN / "grid_missing_point.txt", text(views.draw_grid(rows[:3])))


def test_grids_of_two_hosts_running_the_same_sweep_match_reference() -> None:
    rows = rows_of("t", ["a", "b"], {}, host="h1") + rows_of("t", ["a", "b"], {}, host="h2", states=[FAILED])
    check_golden(GOLDEN / "grid_two_hosts.txt", text(views.draw_grid(rows)))


def test_summary_table_matches_reference() -> None:
    rows = (
        rows_of("train", [], {"x": list(range(7))}, host="cluster")
        + rows_of("train", [], {"x": [1, 2]}, host="h1", states=[COMPLETED])
        + rows_of("report", [], {}, host="cluster", states=[PENDING])
    )
    check_golden(GOLDEN / "summary.txt", text(views.draw_summary(rows)))


def test_cells_are_coloured_by_state() -> None:
    rows = rows_of("t", [], {"x": [1, 2, 3]}, states=[COMPLETED, FAILED, PENDING])
    console = Console(record=True, width=60, force_terminal=True, color_system="standard", file=io.StringIO())
    console.print(views.draw_grid(rows))
    styled = console.export_text(styles=True)
    assert "\x1b[32mCD" in styled  # green
    assert "\x1b[1;31mF" in styled  # bold red
    assert "\x1b[33mPD" in styled  # yellow


# -- summary ------------------------------------------------------------------------------------


def test_counts_per_task_and_host_in_ledger_order() -> None:
    rows = rows_of("a", [], {"x": [1, 2, 3]}, host="h2") + rows_of("a", [], {"x": [1]}, host="h1")
    rows += rows_of("b", [], {"x": [1, 2]}, host="h2", states=[TIMEOUT])
    found = views.counts(rows)
    assert [(c.task, c.host, c.jobs) for c in found] == [("a", "h2", 3), ("a", "h1", 1), ("b", "h2", 2)]
    assert found[2].states[TIMEOUT] == 2 and found[0].states[COMPLETED] == 1


def test_counts_start_from_the_ledgers_counts_and_keep_its_order() -> None:
    """--summary: the ended jobs come counted from the ledger's index, the open ones as rows."""
    open_rows = [
        Row(JobRecord("t", "b.yaml", "eval", "h", "tmux", "9", "eval"), JobState(RUNNING)),
        Row(JobRecord("t", "b.yaml", "train", "h", "tmux", "8", "train"), JobState(PENDING)),
    ]
    counted = [("train", "h", {COMPLETED: 3, FAILED: 1}), ("eval", "h", {}), ("gone", "h", {COMPLETED: 0})]
    found = views.counts(open_rows, counted)
    assert [(c.task, c.jobs) for c in found] == [("train", 5), ("eval", 1)]  # ledger order; empty left out
    assert found[0].states == {**dict.fromkeys(found[0].states, 0), COMPLETED: 3, FAILED: 1, PENDING: 1}


def test_summary_json_has_its_documented_shape() -> None:
    rows = rows_of("a", [], {"x": [1, 2]}) + rows_of("b", [], {}, states=[CANCELLED])
    document = json.loads(views.summary_json(views.counts(rows)))
    states = [PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, UNKNOWN]
    assert document["version"] == 1
    assert [(t["task"], t["host"], t["jobs"]) for t in document["tasks"]] == [
        ("a", "cluster", 2),
        ("b", "cluster", 1),
    ]
    assert all(list(t["states"]) == states for t in document["tasks"])
    assert document["total"] == {
        "jobs": 3,
        "states": {**dict.fromkeys(states, 0), COMPLETED: 1, RUNNING: 1, CANCELLED: 1},
    }
    assert json.loads(views.summary_json([])) == {
        "version": 1,
        "tasks": [],
        "total": {"jobs": 0, "states": dict.fromkeys(states, 0)},
    }


def test_the_default_table_shows_open_jobs_and_the_latest_run() -> None:
    from compute_platform.jobs.query import Selection, select

    def row(job_id: str, run: str, at: str, state: str) -> Row:
        return Row(JobRecord(at, "b.yaml", "t", "h", "tmux", job_id, "n", run_id=run), JobState(state))

    rows = [
        row("old-done", "r1", "2026-01-01T00:00:00+00:00", "COMPLETED"),
        row("old-open", "r1", "2026-01-01T00:00:00+00:00", "RUNNING"),
        row("new-done", "r2", "2026-02-01T00:00:00+00:00", "FAILED"),
    ]
    ids = lambda kept: [r.record.job_id for r in kept]  # noqa: E731
    shown, left = select(rows, Selection())
    assert (ids(shown), left) == (["old-open", "new-done"], 1)
    assert select(rows, Selection(), narrowed=True) == (rows, 0)  # --task, --host or --state chose
    assert ids(select(rows, Selection(everything=True))[0]) == ["old-done", "old-open", "new-done"]
    assert ids(select(rows, Selection(run="r1"))[0]) == ["old-done", "old-open"]
    assert ids(select(rows, Selection(since="2026-01-15"))[0]) == ["new-done"]
    assert ids(select(rows, Selection(last=1))[0]) == ["new-done"]
    assert ids(select(rows, Selection(since="3650d"))[0]) == ["old-done", "old-open", "new-done"]
