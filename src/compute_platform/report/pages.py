"""What the pages show, gathered from the ledger and the hosts: a task's page (its results, grid, plots,
sweep and jobs: `compute report`, `compute ui`) and the ledger's index of tasks (`compute ui`). The
hosts are asked as `compute results` and `compute jobs --summary` ask them: one round trip per host for
the open jobs' states, one for what is new of their metrics; ended jobs fetched whole, never again.
report/html.py renders these models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from compute_platform.errors import LedgerError
from compute_platform.jobs import query, views
from compute_platform.jobs import results as found_results
from compute_platform.jobs.query import Jobs, time_text
from compute_platform.jobs.results import Found, Point
from compute_platform.report import figures as fig
from compute_platform.report.figures import MetricFigures


@dataclass(frozen=True)
class Facts:
    """What the sweep was: where, how, with which code."""

    items: tuple[tuple[str, str], ...]  # label, value
    commands: tuple[str, ...]  # every point's command lines, as they ran
    script: str  # one job's archived script (its #SBATCH lines are the config)
    script_name: str


@dataclass(frozen=True)
class TaskPage:
    found: Found
    metrics: tuple[str, ...]  # in the table's order, the ranking one first
    params: tuple[str, ...]  # the swept parameters ("args" first when the task has several entries)
    best: Point | None
    grids: tuple[views.SweepGrid, ...]
    grid_metric: str
    grid_values: dict[tuple[str, str], float]  # (host, job id) -> the metric's final mean
    figures: tuple[MetricFigures, ...]
    facts: Facts
    summary: str  # "12 completed, 3 running"
    generated: str


@dataclass(frozen=True)
class TaskLine:
    task: str
    hosts: tuple[str, ...]
    jobs: int
    states: dict[str, int]
    latest: str


@dataclass(frozen=True)
class IndexPage:
    archive: str
    tasks: tuple[TaskLine, ...]
    problems: tuple[str, ...]
    generated: str


def now_text() -> str:
    return datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def figures_of(view: Jobs, found: Found, metrics: Sequence[str] = ()) -> list[MetricFigures]:
    """Every figure of the chosen metrics (default: every metric the points have), the best points by
    `found.metric`."""
    names = list(metrics) or found_results.names(found.points, found.metric)

    read: dict[tuple[str, str], list[found_results.Series]] = {}  # the same best points, for each metric

    def series(point: Point) -> list[found_results.Series]:
        key = (point.record.host, point.record.job_id)
        if key not in read:
            read[key] = found_results.series(view, point.record)
        return read[key]

    drawn = []
    for name in names:
        params = tuple(fig.against_params(found.points, name, found.metric, found.higher))
        curves = fig.curves(found.points, series, name, found.metric, found.higher)
        if params or curves:
            drawn.append(MetricFigures(name, params, curves))
    return drawn


def task_page(view: Jobs, found: Found) -> TaskPage:
    """`found` (results.collect) as a page. The best point is the best by `found.metric` (none without
    one: which way is better is the user's to say); the grid is coloured by it, else by the first metric."""
    names = found_results.names(found.points, found.metric)
    metric = found.metric if found.metric in names else None
    best = found.points[0] if metric and found.points and metric in found.points[0].final else None
    shown = metric or (names[0] if names else "")
    grid_values = {
        (p.record.host, p.record.job_id): p.final[shown].mean for p in found.points if shown in p.final
    }
    return TaskPage(
        found,
        tuple(names),
        _params(found.points),
        best,
        tuple(views.grids(found.rows)),
        shown,
        grid_values,
        tuple(figures_of(view, found)),
        _facts(view, found),
        query.summary(found.rows),
        now_text(),
    )


def _params(points: Sequence[Point]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    if any(p.record.args for p in points):
        names["args"] = None
    for p in points:
        names.update(dict.fromkeys(p.record.point))
    return tuple(names)


def _facts(view: Jobs, found: Found) -> Facts:
    records = [row.record for row in found.rows]
    if not records:
        return Facts((), (), "", "")

    def distinct(values: Sequence[str]) -> str:
        return ", ".join(dict.fromkeys(v for v in values if v)) or "-"

    commits = [
        r.git_commit[:12] + (" (uncommitted changes)" if r.git_dirty == "1" else "")
        for r in records
        if r.git_commit
    ]
    first, last = records[0].submitted_at, records[-1].submitted_at
    items = (
        ("playbook", distinct([r.playbook for r in records])),
        ("hosts", distinct([r.host for r in records])),
        ("scheduler", distinct([r.scheduler for r in records])),
        ("config", distinct([r.config for r in records])),
        ("git commit", distinct(commits)),
        ("code snapshot", distinct([r.code for r in records])),
        ("runs", distinct([r.run_id for r in records])),
        ("submitted", f"{time_text(first)} to {time_text(last)}" if first != last else time_text(first)),
    )
    commands = tuple(line for r in records for line in r.command.splitlines() if line)
    latest = records[-1]
    try:
        script = view.ledger.script_text(latest) if latest.script else ""
    except LedgerError:
        script = ""
    return Facts(items, commands, script, f"archive/{latest.script}" if script else "")


def index_page(view: Jobs) -> IndexPage:
    """Every task of the ledger with the states of its jobs: the open ones asked (one query per host),
    the ended ones counted by the ledger's index."""
    every = query.Selection(True, None, None, None)
    records, counted = view.summarized(None, None, every, None)
    rows = view.rows(records)
    problems = tuple(
        dict.fromkeys(r.state.reason for r in rows if r.state.state == "UNKNOWN" and r.state.reason)
    )
    by_task: dict[str, TaskLine] = {}
    latest = {}
    for count in views.counts(rows, counted):
        if count.task not in latest:  # the index knows where the task's rows are: a short read
            last = view.records(None, count.task, last=1)
            latest[count.task] = last[-1].submitted_at if last else ""
        line = by_task.get(count.task)
        states = (
            dict(count.states) if line is None else {s: n + count.states[s] for s, n in line.states.items()}
        )
        hosts = (count.host,) if line is None else (*line.hosts, count.host)
        by_task[count.task] = TaskLine(
            count.task, hosts, sum(states.values()), states, time_text(latest.get(count.task, ""))
        )
    return IndexPage(str(view.ledger.root), tuple(by_task.values()), problems[:5], now_text())
