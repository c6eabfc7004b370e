"""Pictures of the ledger: a task's sweep as a grid (`compute jobs --grid`) and the count of states per
task and host (`compute jobs --summary`).

Pure: query.py's rows (ledger record + live state) in, a model out; the renderers turn a model into rich
renderables and the JSON document of `--summary --json` (shape in docs/json.md).

The grid: the first sweep parameter on rows (with the `args` entry as an extra row label when the
task has args), the other parameters combined on columns, each cell one sweep point: its seeds and
its job's state as Slurm's short code (PD, R, CD, F, CA, TO), coloured. A point run several times
(a later run, `compute resubmit`, `--skip-submitted`) shows its latest job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compute_platform.errors import InputError
from compute_platform.jobs.query import ALL_STATES, STATE_STYLES, Row
from compute_platform.ledger import JobRecord
from compute_platform.scheduling.backend import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    UNKNOWN,
)

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

# Slurm's own short state codes (squeue's ST column), so that cells stay narrow and readable
# without colour (NO_COLOR, a pipe, a log file).
TAGS = {
    PENDING: "PD",
    RUNNING: "R",
    COMPLETED: "CD",
    FAILED: "F",
    CANCELLED: "CA",
    TIMEOUT: "TO",
    UNKNOWN: "?",
}
NO_JOB = "·"  # a point of the grid that has no job (e.g. a sweep changed between runs)
JSON_VERSION = 1


# -- the grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    seeds: str  # compressed: "0-4", "1,7", "" without seeds
    state: str
    job_id: str
    host: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(host, job id), as Row.key: two clusters may give the same id."""
        return self.host, self.job_id

    @property
    def text(self) -> str:
        return f"{self.seeds} {TAGS[self.state]}" if self.seeds else TAGS[self.state]


@dataclass(frozen=True)
class SweepGrid:
    """One task's sweep (on one host, or on all its hosts when they share the points out)."""

    task: str
    hosts: tuple[str, ...]
    row_axes: tuple[str, ...]  # the names of the row label columns: ("args", "lr"), ("lr",), ()
    rows: tuple[tuple[str, ...], ...]  # one label per row axis
    columns: tuple[str, ...]  # "wd=0\ndropout=0.1"; ("",) when the sweep has no other parameter
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)  # (row, column) -> its latest job

    def counts(self) -> dict[str, int]:
        found = {state: 0 for state in ALL_STATES}
        for cell in self.cells.values():
            found[cell.state] += 1
        return found

    @property
    def missing(self) -> int:
        return len(self.rows) * len(self.columns) - len(self.cells)


@dataclass(frozen=True)
class _Point:
    """A ledger row as a sweep point."""

    row: Row
    args: str
    params: dict[str, Any]
    index: int

    @property
    def key(self) -> tuple[str, str]:
        return self.args, json.dumps(self.params)


def _point(row: Row, order: int) -> _Point:
    record = row.record
    index = int(record.job_index) if record.job_index.isdigit() else 1_000_000 + order
    return _Point(row, record.args, record.point, index)


def grids(rows: Sequence[Row]) -> list[SweepGrid]:
    """The grids of ONE task's rows (in ledger order). Only the rows of the playbook that ran the task
    last count: another playbook may have a task of the same name with another sweep. Hosts that
    share the points out (`scatter`) make one grid; hosts that each ran the whole sweep, one each."""
    if not rows:
        return []
    rows = [row for row in rows if row.record.playbook == rows[-1].record.playbook]
    latest: dict[tuple[str, tuple[str, str]], _Point] = {}
    for order, row in enumerate(rows):
        point = _point(row, order)
        latest[(row.record.host, point.key)] = point  # later rows replace earlier ones
    hosts = list(dict.fromkeys(host for host, _ in latest))
    keys = [key for _, key in latest]
    task = rows[0].record.task
    if len(keys) == len(set(keys)):
        return [_grid(task, tuple(hosts), list(latest.values()))]
    return [_grid(task, (host,), [p for (h, _), p in latest.items() if h == host]) for host in hosts]


def _grid(task: str, hosts: tuple[str, ...], points: list[_Point]) -> SweepGrid:
    points = sorted(points, key=lambda p: p.index)
    names = list(dict.fromkeys(name for p in points for name in p.params))
    first, others = names[:1], names[1:]
    with_args = any(p.args for p in points)
    row_axes = (("args",) if with_args else ()) + tuple(first)

    def row_label(p: _Point) -> tuple[str, ...]:
        return ((p.args,) if with_args else ()) + tuple(_value(p.params, n) for n in first)

    def column_label(p: _Point) -> str:
        return "\n".join(f"{n}={_value(p.params, n)}" for n in others)  # one header line each

    # rows in the file's order of `args` entries, then of the first parameter's values (jobs vary
    # `args` fastest, so their own order interleaves them)
    args_rank = {a: i for i, a in enumerate(dict.fromkeys(p.args for p in points))}
    value_rank = {
        v: i for i, v in enumerate(dict.fromkeys(_value(p.params, n) for p in points for n in first))
    }

    def row_rank(label: tuple[str, ...]) -> tuple[int, int]:
        return (args_rank[label[0]] if with_args else 0, value_rank[label[-1]] if first else 0)

    row_labels = sorted(dict.fromkeys(row_label(p) for p in points), key=row_rank)
    column_labels = list(dict.fromkeys(column_label(p) for p in points))
    row_at = {label: i for i, label in enumerate(row_labels)}  # a dict: 10^4 points x 10^3 rows otherwise
    column_at = {label: i for i, label in enumerate(column_labels)}
    cells: dict[tuple[int, int], Cell] = {}
    for p in points:
        where = (row_at[row_label(p)], column_at[column_label(p)])
        record = p.row.record
        cells[where] = Cell(compress_seeds(record.seeds), p.row.state.state, record.job_id, record.host)
    return SweepGrid(task, hosts, row_axes, tuple(row_labels), tuple(column_labels), cells)


def _value(params: dict[str, Any], name: str) -> str:
    if name not in params:
        return "-"
    value = params[name]
    # as written in YAML: true/false/null rather than Python's True/False/None
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def compress_seeds(text: str) -> str:
    """`0,1,2,3,7` -> `0-3,7`: runs of three or more consecutive seeds are written as a range."""
    seeds = [s.strip() for s in text.split(",") if s.strip()]
    out: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and _next(seeds[j], seeds[j + 1]):
            j += 1
        out.append(f"{seeds[i]}-{seeds[j]}" if j - i >= 2 else ",".join(seeds[i : j + 1]))
        i = j + 1
    return ",".join(out)


def _next(a: str, b: str) -> bool:
    return a.isdigit() and b.isdigit() and int(b) == int(a) + 1


def latest_task(records: Sequence[JobRecord]) -> str:
    """The task of the ledger's last row (what `--grid` draws without a task name)."""
    if not records:
        raise InputError("no job in the ledger yet (or none on that host): nothing to draw")
    return records[-1].task


# -- rendering the grid -----------------------------------------------------------------------


def render_grid(
    grid: SweepGrid, values: dict[tuple[str, str], str] | None = None, best: tuple[str, str] | None = None
) -> Table:
    """The grid, each cell its seeds and state; with `values` ((host, job id) -> text, `compute results --grid`)
    each cell that value instead, in its state's colour, the `best` job's in bold with a `*`."""
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold")
    for axis in grid.row_axes:
        table.add_column(axis, style="bold", no_wrap=True)
    seeds = any(cell.seeds for cell in grid.cells.values())
    for column in grid.columns:
        table.add_column(
            column or ("value" if values is not None else "seeds" if seeds else "state"), justify="center"
        )
    # with a parameter after args, each args entry spans several rows: write it once, close with a line
    with_args = grid.row_axes[:1] == ("args",) and len(grid.row_axes) > 1
    for r, label in enumerate(grid.rows):
        cells: list[RenderableType] = []
        for c in range(len(grid.columns)):
            cell = grid.cells.get((r, c))
            if cell is None:
                cells.append(Text(NO_JOB, style="dim"))
            elif values is not None:
                mark = "*" if cell.key == best else ""
                style = STATE_STYLES[cell.state] + (" bold" if mark else "")
                cells.append(Text(mark + values.get(cell.key, "-"), style=style))
            else:
                cells.append(Text(cell.text, style=STATE_STYLES[cell.state]))
        # an args entry is written once for its group of rows, and a line closes the group
        first = not with_args or r == 0 or grid.rows[r - 1][0] != label[0]
        last = with_args and r + 1 < len(grid.rows) and grid.rows[r + 1][0] != label[0]
        shown = label if first else ("", *label[1:])
        table.add_row(*shown, *cells, end_section=last)
    return table


def legend(counts: dict[str, int], missing: int = 0) -> Text:
    """Every state with its code, colour and count; UNKNOWN and `no job` only when present."""
    from rich.text import Text

    text = Text()
    shown = [s for s in ALL_STATES if s != UNKNOWN or counts.get(s)]
    for state in shown:
        if text:
            text.append("  ")
        text.append(f"{TAGS[state]} {state.lower()} {counts.get(state, 0)}", style=STATE_STYLES[state])
    if missing:
        text.append(f"  {NO_JOB} no job {missing}", style="dim")
    return text


def render_grids(
    found: Sequence[SweepGrid],
    values: dict[tuple[str, str], str] | None = None,
    best: tuple[str, str] | None = None,
    what: str = "",
) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = []
    for grid in found:
        title = Text(f"{grid.task} on {', '.join(grid.hosts)}" + (f": {what}" if what else ""), style="bold")
        parts += [title, render_grid(grid, values, best), legend(grid.counts(), grid.missing), ""]
    return Group(*parts[:-1])


# -- the summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """The states of one task's jobs on one host."""

    task: str
    host: str
    states: dict[str, int]

    @property
    def jobs(self) -> int:
        return sum(self.states.values())


def counts(rows: Sequence[Row], counted: Sequence[tuple[str, str, dict[str, int]]] = ()) -> list[Count]:
    """One Count per (task, host), in the order the ledger first has them. Every row counts, a
    resubmitted job's old row too (it keeps its FAILED state; `compute jobs` shows `-> new id`).
    `counted`: (task, host, states) of the jobs not in `rows`, in ledger order (the ended jobs the
    ledger's index counted, `Jobs.summarized`)."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for task, host, states in counted:
        found[(task, host)] = {state: states.get(state, 0) for state in ALL_STATES}
    for row in rows:
        key = (row.record.task, row.record.host)
        states = found.setdefault(key, {state: 0 for state in ALL_STATES})
        states[row.state.state] += 1
    return [Count(task, host, states) for (task, host), states in found.items() if any(states.values())]


def total(found: Sequence[Count]) -> dict[str, int]:
    return {state: sum(c.states[state] for c in found) for state in ALL_STATES}


def summary_table(found: Sequence[Count]) -> Text:
    """One line per task and host, the counts coloured by their state (0 dim), a total under several.
    Built as one Text, as the job table is: rich's Table takes seconds for a ledger of 1,000 tasks."""
    from rich.cells import cell_len
    from rich.text import Text

    every = total(found)
    shown = [s for s in ALL_STATES if s != UNKNOWN or every[s]]
    header = ["TASK", "HOST", "JOBS", *shown]
    lines = [[c.task, c.host, str(c.jobs), *(str(c.states[s]) for s in shown)] for c in found]
    footer = ["total", "", str(sum(every.values())), *(str(every[s]) for s in shown)]
    widths = [max(cell_len(line[i]) for line in [header, *lines, footer]) for i in range(len(header))]

    def cells(values: list[str]) -> list[str]:  # TASK and HOST to the left, the numbers to the right
        pads = [" " * (w - cell_len(v)) for v, w in zip(values, widths, strict=True)]
        return [v + pad if i < 2 else pad + v for i, (v, pad) in enumerate(zip(values, pads, strict=True))]

    text = Text()
    text.append("  ".join(cells(header)), style="bold")
    for count, line in zip(found, lines, strict=True):
        parts = cells(line)
        text.append("\n" + "  ".join(parts[:3]))
        for state, part in zip(shown, parts[3:], strict=True):
            number = part.lstrip()
            text.append("  " + part[: len(part) - len(number)])
            text.append(number, style=STATE_STYLES[state] if count.states[state] else "dim")
    if len(found) > 1:
        text.append("\n" + "  ".join(cells(footer)), style="bold")
    return text


def summary_json(found: Sequence[Count]) -> str:
    """`compute jobs --summary --json` (docs/json.md): every state is always present, 0 included."""
    every = total(found)
    return json.dumps(
        {
            "version": JSON_VERSION,
            "tasks": [{"task": c.task, "host": c.host, "jobs": c.jobs, "states": c.states} for c in found],
            "total": {"jobs": sum(every.values()), "states": every},
        },
        indent=2,
    )


# -- what `compute jobs --grid / --summary` draw (jobs.show calls them at every refresh) ----------


def draw_grid(rows: list[Row]) -> RenderableType:
    return render_grids(grids(rows)) if rows else "no job"


def draw_summary(rows: list[Row], counted: Sequence[tuple[str, str, dict[str, int]]] = ()) -> RenderableType:
    found = counts(rows, counted)
    return summary_table(found) if found else "no job"
