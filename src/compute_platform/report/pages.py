"""What the pages show, gathered from the ledger and the hosts: a task's page (its results, grid, plots,
sweep and jobs: `compute report`, `compute ui`) and the ledger's index of tasks (`compute ui`). The
hosts are asked as `compute results` and `compute jobs --summary` ask them: one round trip per host for
the open jobs' states, one for what is new of their metrics; ended jobs fetched whole, never again.
report/html.py renders these models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from compute_platform.errors import LedgerError
from compute_platform.jobs import query, views
from compute_platform.jobs import results as found_results
from compute_platform.jobs.query import Jobs
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
    grid_values: dict[str, float]  # job id -> the metric's final mean
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
    """Every figure of the chosen metrics (default: every metric the points have)."""
    names = list(metrics) or found_results.names(found.points, found.metric)
    cache: dict[tuple[str, str], list[found_results.Series]] = {}

    def series(point: Point) -> list[found_results.Series]:
        key = (point.record.host, point.record.job_id)
        if key not in cache:
            cache[key] = found_results.series(view, point.record)
        return cache[key]

    drawn = []
    for name in names:
        params = tuple(fig.against_params(found.points, name, found.higher))
        curves = fig.curves(found.points, series, name, found.higher)
        if params or curves:
            drawn.append(MetricFigures(name, params, curves))
    return drawn


def task_page(view: Jobs, found: Found) -> TaskPage:
    """`found` (results.collect) as a page; ranked by its metric, else by the first one it has."""
    names = found_results.names(found.points, found.metric)
    metric = found.metric if found.metric in names else (names[0] if names else None)
    if metric != found.metric:
        ranked = found_results.ranked(found.points, metric, found.higher)
        found = Found(found.task, found.rows, ranked, metric, found.higher, found.problems)
    best = found.points[0] if metric and found.points and metric in found.points[0].final else None
    grid_values = {
        p.record.job_id: p.final[metric].mean for p in found.points if metric and metric in p.final
    }
    return TaskPage(
        found,
        tuple(found_results.names(found.points, metric)),
        _params(found.points),
        best,
        tuple(views.grids(found.rows)),
        metric or "",
        grid_values,
        tuple(figures_of(view, found)),
        _facts(view, found),
        query.summary(found.rows),
        now_text(),
    )


def _params(points: Sequence[Point]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    if len({p.record.args for p in points}) > 1 or any(p.record.args for p in points):
        names["args"] = None
    for p in points:
        try:
            sweep = json.loads(p.record.sweep) if p.record.sweep else {}
        except ValueError:
            continue
        names.update(dict.fromkeys(sweep if isinstance(sweep, dict) else {}))
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
        ("submitted", f"{_time(first)} to {_time(last)}" if first != last else _time(first)),
        ("jobs", f"{len(records)} ({query.summary(found.rows)})"),
    )
    commands = tuple(line for r in records for line in r.command.splitlines() if line)
    latest = records[-1]
    try:
        script = view.ledger.script_text(latest) if latest.script else ""
    except LedgerError:
        script = ""
    return Facts(items, commands, script, f"archive/{latest.script}" if script else "")


def _time(text: str) -> str:
    return text.replace("T", " ").removesuffix("+00:00")


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
            count.task, hosts, sum(states.values()), states, _time(latest.get(count.task, ""))
        )
    return IndexPage(str(view.ledger.root), tuple(by_task.values()), problems[:5], now_text())
