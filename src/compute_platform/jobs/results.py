"""`compute results`: the metrics the jobs wrote (COMPUTE_METRICS, JSON lines), fetched from their hosts and
aggregated per sweep point over its seeds.

Fetching rides in the command that asks the jobs' states (`Jobs.rows` with riders): ONE per host for
every file not fetched whole yet: each one's new bytes (from what `archive/metrics/` holds, at most
FILE_BYTES per call) come back length-prefixed. A job that has
ended and whose files are all here is marked done and never asked again, so a second call on an ended
sweep touches no host. The aggregation is pure.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from compute_platform.errors import ComputeError, LedgerError
from compute_platform.hosts import shell
from compute_platform.jobs.query import FINAL, Jobs, Rider, Row, point_text
from compute_platform.ledger import JobPaths, JobRecord
from compute_platform.ledger import metrics as store
from compute_platform.scheduling import slurm
from compute_platform.scheduling.sources import MetricSources

FILE_BYTES = 4 << 20  # of one file per call: a larger one comes over several calls
HEADER = b"@@compute-metrics "
JSON_VERSION = 1

Key = tuple[str, str]  # (host, job id)
Series = dict[str, list[tuple[float | None, float]]]  # metric -> [(step, value)], in the file's order


# -- pure: reading and aggregating ------------------------------------------------------------------


def parse(data: bytes) -> Series:
    """JSON lines -> each numeric value by metric name, with its `step` (None without). A line being
    written (no newline yet), a line that is not a JSON object, and values that are not numbers are
    left out."""
    whole = data[: data.rfind(b"\n") + 1].decode("utf-8", "replace")
    try:  # one decoding for the whole file: per line, json.loads costs 10 us of setup each
        items = json.loads("[" + ",".join(line for line in whole.splitlines() if line.strip()) + "]")
    except ValueError:
        items = [_one(line) for line in whole.splitlines()]
    found: Series = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        step = item.get("step")
        step = float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None
        for name, value in item.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if name != "step" and number and math.isfinite(value):
                found.setdefault(str(name), []).append((step, float(value)))
    return found


def _one(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


@dataclass(frozen=True)
class Stat:
    """A value over seeds: the mean, the sample standard deviation (0 for one seed) and n."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        if not values:
            return None
        mean = sum(values) / len(values)
        if len(values) < 2:
            return cls(mean, 0.0, len(values))
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return cls(mean, math.sqrt(variance), len(values))

    def text(self) -> str:
        return f"{number(self.mean)} ± {number(self.std)}" if self.n > 1 else number(self.mean)


@dataclass(frozen=True)
class Point:
    """One sweep point (a job): its metrics' final and best values over its seeds."""

    record: JobRecord
    state: str
    seeds: tuple[str, ...]  # every seed of the point ("" once for a job without seeds)
    missing: tuple[str, ...]  # the seeds that wrote no value
    final: dict[str, Stat] = field(default_factory=dict)
    best: dict[str, Stat] = field(default_factory=dict)
    usage: slurm.Usage | None = None  # what accounting said it used (ended Slurm jobs)


Summary = dict[str, tuple[float, float, float]]  # metric -> (last, least, greatest) value of one seed


def summarize(series: Series) -> Summary:
    """What the table needs of a seed's series: each metric's last, least and greatest value."""
    found: Summary = {}
    for name, points in series.items():
        values = [v for _, v in points]
        found[name] = (values[-1], min(values), max(values))
    return found


def aggregate(record: JobRecord, state: str, per_seed: Sequence[Summary], higher: set[str]) -> Point:
    """`per_seed`: the summary of each seed's series (`summarize`), in the row's order. A metric's final
    value is its last; its best the least (the most for the metrics in `higher`); each over the seeds
    that have it."""
    seeds = tuple(record.seeds.split(",")) if record.seeds else ("",)
    finals: dict[str, list[float]] = {}
    bests: dict[str, list[float]] = {}
    for summary in per_seed:
        for name, (last, least, greatest) in summary.items():
            finals.setdefault(name, []).append(last)
            bests.setdefault(name, []).append(greatest if name in higher else least)
    missing = tuple(seed for seed, item in zip(seeds, per_seed, strict=False) if not item)
    missing += seeds[len(per_seed) :]
    return Point(
        record,
        state,
        seeds,
        missing,
        {k: s for k, v in finals.items() if (s := Stat.of(v))},
        {k: s for k, v in bests.items() if (s := Stat.of(v))},
    )


def ranked(points: Sequence[Point], metric: str | None, higher: set[str]) -> list[Point]:
    """Best first by the metric's final mean (the points without it last), else in ledger order."""
    if not metric:
        return list(points)
    sign = -1.0 if metric in higher else 1.0
    return sorted(
        points, key=lambda p: (metric not in p.final, sign * p.final[metric].mean if metric in p.final else 0)
    )


def names(points: Sequence[Point], metric: str | None) -> list[str]:
    found = sorted({name for p in points for name in p.final})
    return ([metric] if metric in found else []) + [n for n in found if n != metric]


def table(points: Sequence[Point], metric: str | None, higher: set[str]) -> str:
    """Aligned columns: the point, its state and seeds, each metric's final (mean ± std) and best; the
    best point (by `metric`) marked with `*`."""
    shown = names(points, metric)
    used = any(p.usage for p in points)
    head = ["", "POINT", "HOST", "STATE", "SEEDS", *[c for n in shown for c in (n, f"best {n}")]]
    head += ["ELAPSED", "MEMORY (used/asked)", "CPU"] if used else []
    best = points[0] if metric and points and metric in points[0].final else None
    lines = [head]
    for p in points:
        seeds = f"{len(p.seeds) - len(p.missing)}/{len(p.seeds)}"
        if p.missing and p.seeds != ("",):
            seeds += f" (no {','.join(p.missing)})"
        cells = [
            "*" if p is best else "",
            point_text(dataclasses.replace(p.record, seeds="")) or p.record.job_id,
            p.record.host,
            p.state,
            seeds,
        ]
        for n in shown:
            cells += [
                p.final[n].text() if n in p.final else "-",
                number(p.best[n].mean) if n in p.best else "-",
            ]
        if used:
            cells += usage_cells(p.usage)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def usage_cells(usage: slurm.Usage | None) -> list[str]:
    """`12m05s`, `3.1G/64G`, `85%`: a job's resource use, or dashes."""
    if usage is None:
        return ["-", "-", "-"]
    seconds = int(usage.elapsed)
    hours = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    elapsed = hours if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    memory = f"{_mb(usage.max_rss_mb)}/{_mb(usage.req_mem_mb)}"
    efficiency = usage.cpu_efficiency
    return [elapsed, memory, f"{efficiency:.0%}" if efficiency is not None else "-"]


def usage_line(usage: slurm.Usage) -> str:
    """`asked 64G, used 3.1G (5%); 12m05s; CPU 85% of 4`: `compute jobs JOB`'s line."""
    elapsed, _, cpu = usage_cells(usage)
    asked, used = _mb(usage.req_mem_mb), _mb(usage.max_rss_mb)
    share = (
        f" ({usage.max_rss_mb / usage.req_mem_mb:.0%})"
        if usage.max_rss_mb is not None and usage.req_mem_mb
        else ""
    )
    return f"asked {asked}, used {used}{share}; {elapsed} elapsed; CPU {cpu} of {usage.cpus}"


def _mb(value: float | None) -> str:
    """`3.1G`, `64G`, `400M`."""
    if value is None:
        return "?"
    if value < 1024:
        return f"{value:.0f}M"
    gib = value / 1024
    return f"{gib:.0f}G" if gib >= 10 or gib == int(gib) else f"{gib:.1f}G"


def as_json(points: Sequence[Point], metric: str | None, higher: set[str]) -> str:
    """`compute results --json` (docs/json.md)."""

    def stat(s: Stat) -> dict[str, float | int]:
        return {"mean": s.mean, "std": s.std, "n": s.n}

    return json.dumps(
        {
            "version": JSON_VERSION,
            "sort": metric,
            "higher_is_better": sorted(higher),
            "points": [
                {
                    "task": p.record.task,
                    "host": p.record.host,
                    "job_id": p.record.job_id,
                    "args": p.record.args,
                    "sweep": p.record.point,
                    "state": p.state,
                    "seeds": list(p.seeds) if p.seeds != ("",) else [],
                    "missing_seeds": list(p.missing) if p.seeds != ("",) else [],
                    "final": {k: stat(v) for k, v in p.final.items()},
                    "best": {k: stat(v) for k, v in p.best.items()},
                    "usage": dataclasses.asdict(p.usage) if p.usage else None,
                }
                for p in points
            ],
        },
        indent=2,
    )


def as_csv(points: Sequence[Point], metric: str | None) -> str:
    """One row per point: its identity, then `<metric>_mean`, `_std`, `_n`, `_best` per metric."""
    shown = names(points, metric)
    params = sorted({k for p in points for k in p.record.point})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["task", "host", "job_id", "state", "args", *params, "seeds", "missing_seeds"]
        + [f"{n}_{what}" for n in shown for what in ("mean", "std", "n", "best")]
    )
    for p in points:
        point = p.record.point
        row: list[object] = [p.record.task, p.record.host, p.record.job_id, p.state, p.record.args]
        row += [point.get(k, "") for k in params]
        row += [" ".join(s for s in p.seeds if s), " ".join(p.missing if p.seeds != ("",) else ())]
        for n in shown:
            f, b = p.final.get(n), p.best.get(n)
            row += [f.mean, f.std, f.n, b.mean if b else ""] if f else ["", "", "", ""]
        writer.writerow(row)
    return out.getvalue()


def number(value: float) -> str:
    return f"{value:.4g}"


# -- I/O: fetching --------------------------------------------------------------------------------


def seed_positions(record: JobRecord) -> list[int | None]:
    return list(range(len(record.seeds.split(",")))) if record.seeds else [None]


def gather(view: Jobs, records: Sequence[JobRecord]) -> tuple[list[Row], list[str]]:
    """The records' rows with their states, and what is new of their metrics (and of their Slurm jobs'
    resource use) brought here: ONE command per host for all of it, the questions riding with the
    states' (`Jobs.rows`). The problems met fetching."""
    todo = [r for r in records if r.status_file and not store.is_done(view.ledger, r)]
    # ended as the ledger knows: an end recorded, or cancelled (one cancelled while pending never
    # gets an end of its own: it wrote no status file and the controller forgot it)
    ended = set(view.ledger.ended(todo)) | view.ledger.cancelled(todo) if todo else set()
    by_host: dict[tuple[str, str], list[JobRecord]] = {}
    for record in todo:
        by_host.setdefault((record.hosts_file, record.host), []).append(record)
    fetches = {key: _Fetch(view, key[1], group, ended) for key, group in by_host.items()}
    rows = view.rows(records, riders={key: fetch.riders() for key, fetch in fetches.items()})
    rows_of: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        rows_of.setdefault((row.record.hosts_file, row.record.host), []).append(row)
    problems: list[str] = []
    for key, fetch in fetches.items():
        fetch.finish(rows_of.get(key, []))
        problems += fetch.problems
    return rows, problems


KINDS = ("jsonl", "file")  # what is fetched by its new bytes: COMPUTE_METRICS and the program's own file
LOG_LINES = 100_000  # matches of from_log patterns kept per seed (the last ones)

# Each item on stdin is (number, kind, path, offset); for `log` items the path is the seed's COMPUTE_METRICS
# (its .from and .to say where its output starts and ends), the offset the pattern group, and the output
# file follows. The answer: per item a header `@@compute-metrics <number> <size> <length>`, then its bytes.
_APPEND = f"""\
  if [ -f "$f" ]; then
    s=$(stat -L -c %s -- "$f" 2>/dev/null || echo 0); n=$((s - o))
    [ "$n" -le {FILE_BYTES} ] || n={FILE_BYTES}
    [ "$n" -ge 0 ] || n=0
    printf '{HEADER.decode()}%s %s %s\\n' "$k" "$s" "$n"
    [ "$n" -eq 0 ] || tail -c +$((o + 1)) -- "$f" | head -c "$n"
  else
    printf '{HEADER.decode()}%s -1 0\\n' "$k"
  fi"""
_LOG = f"""\
  IFS= read -r -d '' out
  if [ -r "$f.from" ]; then
    a=$(cat -- "$f.from"); b=$(cat -- "$f.to" 2>/dev/null || stat -c %s -- "$out" 2>/dev/null || echo 0)
    m=$(tail -c +$((a + 1)) -- "$out" 2>/dev/null | head -c $((b - a)) | "compute_grep_$o" | tail -n {LOG_LINES})
    printf '{HEADER.decode()}%s %s %s\\n' "$k" 0 "$(printf '%s' "$m" | wc -c)"
    printf '%s' "$m"
  else
    printf '{HEADER.decode()}%s -1 0\\n' "$k"
  fi"""


def fetch_script(groups: Sequence[tuple[str, ...]]) -> str:
    """The host's side: a grep per group of from_log patterns, then each item of stdin."""
    greps = [
        f"compute_grep_{i}() {{ grep -E -o {' '.join('-e ' + shell.quote(p) for p in patterns)}; }}"
        for i, patterns in enumerate(groups)
    ]
    return "\n".join(
        [
            *greps,
            "while IFS= read -r -d '' k && IFS= read -r -d '' kind && IFS= read -r -d '' f && IFS= read -r -d '' o; do",
            '  if [ "$kind" = log ]; then',
            _LOG,
            "  else",
            _APPEND,
            "  fi",
            "done",
        ]
    )


class _Fetch:
    """One host's part of `gather`: what is new of its jobs' metrics files and the resource use of its
    ended Slurm jobs, asked in the refresh's round trip (`riders`), kept as the answers come, and
    which jobs are then done (`finish`: ended, everything here, never asked again)."""

    def __init__(self, view: Jobs, alias: str, records: Sequence[JobRecord], ended: set[Key]) -> None:
        self.view, self.alias, self.records = view, alias, records
        self.items: list[tuple[JobRecord, int | None, str]] = []
        self.groups: list[tuple[str, ...]] = []
        self.patterns: dict[str, tuple[tuple[str, str], ...]] = {}
        for record in records:
            sources = sources_of(view, record)
            for seed in seed_positions(record):
                self.items.append((record, seed, "jsonl"))
                if sources and sources.file:
                    self.items.append((record, seed, "file"))
                if sources and sources.from_log:
                    self.items.append((record, seed, "log"))
                    self.patterns[record.job_id] = sources.from_log
                    if tuple(p for _, p in sources.from_log) not in self.groups:
                        self.groups.append(tuple(p for _, p in sources.from_log))
        # accounting is asked about the jobs known to have ended (until it answered), and those whose
        # status file is there when it is asked (they ended since, maybe to be requeued: asked again
        # until their end is known for good); what a running job used is not final yet
        self.ask = [
            (r.job_id, "" if (r.host, r.job_id) in ended else r.status_file)
            for r in records
            if r.scheduler == "slurm"
            and ((r.host, r.job_id) not in ended or store.usage(view.ledger, r) is None)
        ]
        self.asked: set[str] = set()
        self.used: dict[str, slurm.Usage] = {}
        self.sacct_works = True
        self.sizes: dict[int, int] = {}
        self.problems: list[str] = []

    def riders(self) -> list[Rider]:
        ride = [
            Rider(
                shell.Part(fetch_script(self.groups), self._stdin(), timeout=300, whole=True),
                self._read_metrics,
            )
        ]
        if self.ask:
            ride.insert(0, Rider(slurm.usage_part(self.ask), self._read_usage))
        return ride

    def _stdin(self) -> bytes:
        stdin = b""
        ledger = self.view.ledger
        for number, (record, seed, kind) in enumerate(self.items):
            path = JobPaths.metrics(record.status_file, seed)
            if kind == "log":
                group = self.groups.index(tuple(p for _, p in self.patterns[record.job_id]))
                stdin += f"{number}\0log\0{path}\0{group}\0{record.log_out}\0".encode()
            else:
                remote = path if kind == "jsonl" else f"{path}.file"
                stdin += f"{number}\0{kind}\0{remote}\0{store.fetched(ledger, record, seed, kind)}\0".encode()
        return stdin

    def _failed(self, error: ComputeError) -> None:
        problem = f"{self.alias}: cannot fetch metrics: {error.about(self.alias)}"
        if problem not in self.problems:
            self.problems.append(problem)

    def _read_usage(self, answer: bytes | ComputeError) -> None:
        if isinstance(answer, ComputeError):
            self._failed(answer)
            return
        said = answer.decode("utf-8", "replace")
        self.asked = slurm.usage_asked(said)
        self.used = slurm.parse_usage(said)
        self.sacct_works = slurm.NO_SACCT not in said

    def _read_metrics(self, answer: bytes | ComputeError) -> None:
        if isinstance(answer, ComputeError):
            self._failed(answer)
            return
        ledger = self.view.ledger
        for index, size, data in _chunks(answer):
            if not 0 <= index < len(self.items):
                continue
            record, seed, kind = self.items[index]
            if kind == "log":
                if size >= 0:
                    store.replace(ledger, record, seed, _log_lines(data, self.patterns[record.job_id]), "log")
            elif data:
                store.append(ledger, record, seed, data, kind)
            self.sizes[index] = size

    def finish(self, rows: Sequence[Row]) -> None:
        """Keep what accounting said of the jobs that ended; mark done those ended with everything
        here (asked after their end: the states come first in the round trip). An end the controller
        may still undo (a requeue after a preemption or a node failure: not `settled`) is not done:
        its usage, shown at once, is asked again until it is."""
        ledger = self.view.ledger
        held: set[Key] = set()  # ended, but accounting has not said yet what they used
        mine = {r.job_id for r in self.records}
        for row in rows:
            record = row.record
            if row.state.state not in FINAL or record.job_id not in mine or record.scheduler != "slurm":
                continue
            if record.job_id in self.used:
                store.keep_usage(ledger, record, dataclasses.asdict(self.used[record.job_id]))
            elif store.usage(ledger, record) is None and (
                record.job_id not in self.asked or self.sacct_works
            ):
                held.add(row.key)  # asked next time, or accounting's record is still to come
        complete: dict[Key, bool] = {}
        for index, (record, seed, kind) in enumerate(self.items):
            size = self.sizes.get(index, 0)
            whole = kind == "log" or size < 0 or store.fetched(ledger, record, seed, kind) >= size
            key = (record.host, record.job_id)
            complete[key] = complete.get(key, True) and whole and index in self.sizes
        for row in rows:
            if _ended(row) and complete.get(row.key) and row.key not in held:
                store.mark_done(ledger, row.record)


def _ended(row: Row) -> bool:
    return row.state.state in FINAL and row.state.settled


def _log_lines(data: bytes, metrics: Sequence[tuple[str, str]]) -> bytes:
    """The matches grep printed -> JSON lines, each a metric and the value its pattern's group caught."""
    compiled = [(name, re.compile(pattern)) for name, pattern in metrics]
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        for name, pattern in compiled:
            found = pattern.search(line)
            value = _float(found.group(1)) if found else None
            if value is not None:
                out.append(json.dumps({name: value}))
            if found:
                break
    return "".join(f"{line}\n" for line in out).encode()


def sources_of(view: Jobs, record: JobRecord) -> MetricSources | None:
    try:
        return MetricSources.in_script(view.ledger.script_text(record)) if record.script else None
    except LedgerError:
        return None


def parse_any(data: bytes) -> Series:
    """A file the program writes: JSON lines, or a CSV of numbers under a header (`step` one of them)."""
    whole = data[: data.rfind(b"\n") + 1]
    if whole.lstrip().startswith(b"{"):
        return parse(data)
    rows = list(csv.reader(io.StringIO(whole.decode("utf-8", "replace"))))
    if not rows:
        return {}
    header = rows[0]
    found: Series = {}
    for row in rows[1:]:
        values = dict(zip(header, row, strict=False))
        step = _float(values.get("step", ""))
        for name, text in values.items():
            value = _float(text)
            if name != "step" and value is not None:
                found.setdefault(name.strip(), []).append((step, value))
    return found


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """The length-prefixed answer -> (file number, its size on the host (-1: none), the new bytes)."""
    found: list[tuple[int, int, bytes]] = []
    at = 0
    while True:
        start = data.find(HEADER, at)
        if start < 0:
            return found
        end = data.find(b"\n", start)
        if end < 0:
            return found
        words = data[start + len(HEADER) : end].split()
        if len(words) != 3 or not all(w.lstrip(b"-").isdigit() for w in words):
            at = end + 1
            continue
        index, size, length = (int(w) for w in words)
        found.append((index, size, data[end + 1 : end + 1 + length]))
        at = end + 1 + length


def seed_series(view: Jobs, record: JobRecord, seed: int | None) -> Series:
    """A seed's metrics from every source that is here: COMPUTE_METRICS, the program's file, its output."""
    found: Series = {}
    for kind, read in (("jsonl", parse), ("file", parse_any), ("log", parse)):
        for name, values in read(store.read(view.ledger, record, seed, kind)).items():
            found.setdefault(name, []).extend(values)
    return found


def series(view: Jobs, record: JobRecord) -> list[Series]:
    """Each seed's whole series (for curves), from what is here."""
    return [seed_series(view, record, seed) for seed in seed_positions(record)]


def summaries(view: Jobs, record: JobRecord) -> list[Summary]:
    """Each seed's summary; kept beside the fetched files once the job is done (they change no more),
    so that a call on an ended sweep reads one small file per job."""
    done = store.is_done(view.ledger, record)
    if done:
        kept = store.summary(view.ledger, record)
        if kept is not None:
            return [{k: (v[0], v[1], v[2]) for k, v in seed.items()} for seed in kept]
    found = [summarize(seed_series(view, record, seed)) for seed in seed_positions(record)]
    if done:
        store.keep_summary(view.ledger, record, found)
    return found


@dataclass(frozen=True)
class Found:
    """A task's results: its rows (their states now), its points ranked, the problems met fetching."""

    task: str
    rows: list[Row]
    points: list[Point]
    metric: str | None
    higher: set[str]
    problems: list[str]


def collect(view: Jobs, task: str, host: str | None, metric: str | None, higher: set[str]) -> Found:
    """The task's rows with their states, what is new of their metrics fetched (one round trip per host),
    the points ranked by `metric`, else by the task's `metrics: {sort}` (its latest job's script says);
    `higher` and the task's `metrics: {max}` are the metrics better higher."""
    rows, problems = gather(view, view.records(host, task))
    said = sources_of(view, rows[-1].record) if rows else None
    if said is not None:
        metric = metric or said.sort or None
        higher = higher | set(said.higher)
    return Found(task, rows, ranked(points(view, rows, higher), metric, higher), metric, higher, problems)


def points(view: Jobs, rows: Sequence[Row], higher: set[str]) -> list[Point]:
    """Each row's point from what is here (after `fetch`); replaced rows (retried jobs) left out."""
    replaced = view.replaced()
    return [point_of(view, row, higher) for row in rows if row.key not in replaced]


def point_of(view: Jobs, row: Row, higher: set[str]) -> Point:
    """One row's point from what is here, with what accounting said it used."""
    point = aggregate(row.record, row.state.state, summaries(view, row.record), higher)
    used = store.usage(view.ledger, row.record)
    if used is not None:
        with contextlib.suppress(TypeError):  # a hand-edited file: shown without
            point = dataclasses.replace(point, usage=slurm.Usage(**used))
    return point
