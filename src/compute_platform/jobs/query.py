"""`compute jobs / logs / cancel / resubmit`: the ledger's rows, joined with their live state.

How hosts are reached again: each row records the absolute path of the hosts.yaml its run used
(`hosts_file`); `--inventory FILE` overrides it (e.g. after moving the project). Rows of older
ledgers without that column fall back to ./hosts.yaml, then to ~/.ssh/config.

Every query is one round trip per host for all its jobs: each scheduler's query of the host (its
backend's `states_part`) and the other questions a command has for it (riders: the metrics that
`compute results` fetches) fly in one command (`Host.ask`). Hosts are queried in parallel, and a host
that cannot be reached shows its jobs as UNKNOWN with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compute_platform.errors import ComputeError, InputError, LedgerError
from compute_platform.hosts import shell
from compute_platform.ledger import (
    CANCELLED_EVENT,
    RESUBMITTED_EVENT,
    Ended,
    Event,
    JobRecord,
    Ledger,
    TaskCount,
    now,
)
from compute_platform.scheduling.backend import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TELLING_ENDS,
    TIMEOUT,
    UNKNOWN,
    Backend,
    JobState,
)

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from compute_platform.hosts import Host, HostPool
    from compute_platform.scheduling.feed import Progress

# scheduler name -> module holding its BACKEND (imported only when a row of that scheduler is shown)
BACKENDS: dict[str, str] = {
    "slurm": "compute_platform.scheduling.slurm",
    "tmux": "compute_platform.scheduling.tmux",
}


@dataclass(frozen=True)
class Rider:
    """A question a command has for a host besides its jobs' states (the metrics to fetch): it flies
    in the same round trip, and `read` gets its output, or the error that kept it from an answer."""

    part: shell.Part
    read: Callable[[bytes | ComputeError], None]


Riders = dict[tuple[str, str], list[Rider]]  # by (hosts file, alias) of the rows

FINAL = (COMPLETED, FAILED, CANCELLED, TIMEOUT)
ALL_STATES = (PENDING, RUNNING, *FINAL, UNKNOWN)
WATCH_SECONDS = 5.0  # Slurm's man pages ask not to poll the controller in tight loops
WATCH_MAX_SECONDS = 60.0  # --watch's longest pause, reached while nothing changes
FOLLOW_SECONDS = 1.0  # `logs -f`: how often the file is read (a cheap `tail -c`)
FOLLOW_STATE_EVERY = 10  # ... and every this many reads, whether the job has ended


def backend(scheduler: str) -> Backend:
    if scheduler not in BACKENDS:
        raise InputError(
            f"the ledger names an unknown scheduler '{scheduler}' (known: {', '.join(BACKENDS)})"
        )
    found: Backend = importlib.import_module(BACKENDS[scheduler]).BACKEND
    return found


@dataclass(frozen=True)
class Row:
    """A ledger row and what is known of it now."""

    record: JobRecord
    state: JobState
    replaced_by: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.record.host, self.record.job_id

    @property
    def attempt(self) -> int:
        """The attempt the job is in or ended in: as the job said (requeues in place counted), else
        the one its row started as."""
        started = int(self.record.attempt) if self.record.attempt.isdigit() else 1
        return max(started, self.state.attempt or 0)


class Jobs:
    """The ledger of one archive plus the connections needed to ask hosts about its jobs."""

    def __init__(self, archive: Path, inventory: Path | None = None, forks: int = 10) -> None:
        self.ledger = Ledger(archive)
        self.inventory = inventory
        self.forks = forks
        # one pool per hosts file, made under the lock: host() is called from the query threads,
        # and a pool made twice would leave one of them never closed
        self._pools: dict[str, HostPool] = {}
        self._pools_lock = threading.Lock()

    # -- selection ---------------------------------------------------------------------------

    def records(
        self,
        host: str | None = None,
        task: str | None = None,
        job_ids: Sequence[str] = (),
        run: str | None = None,
        since: str | None = None,
        last: int | None = None,
    ) -> list[JobRecord]:
        """The rows of this host and task (the ledger's index knows which parts of job.csv hold
        them), of this run, submitted since then (an ISO time), the `last` latest, named by `job_ids`."""
        self._check(host, task)
        ids = [wanted.rpartition(":")[2] for wanted in job_ids]
        records = self.ledger.records_where(host or None, task or None, run, since, last, ids)
        if job_ids:
            records = pick(records, job_ids)
        return records

    def chosen(
        self, host: str | None, task: str | None, selection: Selection, states: str | None
    ) -> tuple[list[JobRecord], int | None]:
        """The rows the table may show, and how many rows (of --host, --task) they were chosen from
        (None: all of them are here). The default view reads the ledger's open rows and its latest
        run's, --since, --run and --last only the parts of job.csv that may hold their rows; --state
        needs every row's state."""
        if states:
            return self.records(host, task), None
        if selection.default and not (host or task):
            self._check(None, None)
            return self.ledger.shown_by_default(), self.ledger.size()
        since = since_time(selection.since) if selection.since else None
        records = self.records(host, task, run=selection.run, since=since, last=selection.last)
        return records, sum(c.rows for c in self.ledger.task_counts() if _of(c, host, task))

    def summarized(
        self, host: str | None, task: str | None, selection: Selection, states: str | None
    ) -> tuple[list[JobRecord], list[tuple[str, str, dict[str, int]]]]:
        """For --summary: the rows to ask about, and the counts of the others per task and host (in
        ledger order, --state applied). Without --since, --run or --last, the rows asked about are
        the open ones: the ledger counts the others (a cancelled job without a recorded end counts
        as CANCELLED); with them, every row they choose."""
        if selection.since or selection.run or selection.last:
            return self.chosen(host, task, selection, None)[0], []
        wanted = _states(states)
        self._check(host, task)
        counted = []
        for count in self.ledger.task_counts():
            if not _of(count, host, task):
                continue
            found = dict.fromkeys(ALL_STATES, 0)
            for state, n in count.ended.items():
                found[state if state in FINAL else UNKNOWN] += n
            found[CANCELLED] += count.cancelled
            kept = {state: n for state, n in found.items() if state in (wanted or found)}
            counted.append((count.task, count.host, kept))
        records = [r for r in self.ledger.open_records() if host in (None, r.host) and task in (None, r.task)]
        return records, counted

    def _check(self, host: str | None, task: str | None) -> None:
        """A missing ledger and a task it does not have (on that host) are errors."""
        if not self.ledger.jobs_file.exists():
            raise InputError(
                f"no job ledger in {self.ledger.root}: run a playbook with slurm or tmux tasks first "
                "(or point --archive at the right folder)"
            )
        if task:
            known = {c.task for c in self.ledger.task_counts() if host in (None, "", c.host)}
            if task not in known:
                from compute_platform.input.yamlfile import did_you_mean

                raise InputError(
                    f"no job of task '{task}' in {self.ledger.jobs_file}" + did_you_mean(task, known)
                )

    def replaced(self) -> dict[tuple[str, str], str]:
        """(host, job id) -> the job id that resubmitted it."""
        return self.ledger.replacements()

    # -- live states -------------------------------------------------------------------------

    def rows(
        self,
        records: Sequence[JobRecord],
        known: dict[tuple[str, str], Row] | None = None,
        riders: Riders | None = None,
    ) -> list[Row]:
        """Every record with its state. Jobs that ended (in `known`, or in the archive's states.csv)
        are not asked again; those that ended since are written there. `riders`: see `states`."""
        known = known or {}
        ended = self.ledger.ended(records)
        finished = {key: final_state(e) for key, e in ended.items()}
        finished.update(
            {key: row.state for key, row in known.items() if row.state.state in FINAL and row.state.settled}
        )
        todo = [r for r in records if (r.host, r.job_id) not in finished]
        found = self.states(todo, riders)
        self._keep_ended(found, ended)
        found.update({key: finished[key] for key in ((r.host, r.job_id) for r in records) if key in finished})
        replaced = self.replaced()
        cancelled = self.ledger.cancelled(records)
        rows: list[Row] = []
        for record in records:
            key = (record.host, record.job_id)
            state = found.get(key) or (known[key].state if key in known else JobState(UNKNOWN))
            if state.state == UNKNOWN and key in cancelled:
                # scancel took it before it started (so it wrote no status), then Slurm forgot it
                state = JobState(CANCELLED, None, "compute cancel")
            rows.append(Row(record, state, replaced.get(key, "")))
        return rows

    def _keep_ended(
        self, found: dict[tuple[str, str], JobState], ended: dict[tuple[str, str], Ended]
    ) -> None:
        """Write the jobs that ended since the last look to states.csv; a read-only archive only
        means they are asked again next time."""
        new = [
            Ended(
                now(),
                host,
                job_id,
                state.state,
                "" if state.exit_code is None else str(state.exit_code),
                state.reason,
                "" if state.attempt is None else str(state.attempt),
            )
            for (host, job_id), state in found.items()
            if state.state in FINAL and state.settled and (host, job_id) not in ended
        ]
        with contextlib.suppress(LedgerError):
            self.ledger.append_ended(new)

    def states(
        self, records: Sequence[JobRecord], riders: Riders | None = None
    ) -> dict[tuple[str, str], JobState]:
        """The records' live states: ONE round trip per host, in parallel, which also carries the
        other questions a command has for that host (`riders`, by hosts file and alias: a host
        with riders and no open job is asked them alone)."""
        riders = riders or {}
        groups: dict[tuple[str, str], dict[str, list[JobRecord]]] = {key: {} for key in riders}
        for (scheduler, hosts_file, alias), group in self.by_host(records).items():
            groups.setdefault((hosts_file, alias), {})[scheduler] = group

        def one(item: tuple[tuple[str, str], dict[str, list[JobRecord]]]) -> dict[tuple[str, str], JobState]:
            (hosts_file, alias), by_scheduler = item
            asked = list(by_scheduler.values())
            extra = riders.get((hosts_file, alias), [])
            answers: list[bytes | ComputeError]
            try:
                backends = [backend(scheduler) for scheduler in by_scheduler]
                parts = [b.states_part(group) for b, group in zip(backends, asked, strict=True)]
                answers = list(self.host(hosts_file, alias).ask([*parts, *(rider.part for rider in extra)]))
            except ComputeError as e:
                backends, answers = [], [e] * (len(asked) + len(extra))
            found: dict[tuple[str, str], JobState] = {}
            for i, group in enumerate(asked):
                answer = answers[i]
                if isinstance(answer, ComputeError):
                    reason = answer.about(alias)
                    found.update({(alias, r.job_id): JobState(UNKNOWN, None, reason) for r in group})
                    continue
                said = backends[i].read_states(group, answer.decode("utf-8", "replace"))
                found.update({(alias, r.job_id): said.get(r.job_id, JobState(UNKNOWN)) for r in group})
            for rider, answer in zip(extra, answers[len(asked) :], strict=True):
                rider.read(answer)
            return found

        merged: dict[tuple[str, str], JobState] = {}
        for part in self.parallel(one, list(groups.items())):
            merged.update(part)
        return merged

    # -- actions -----------------------------------------------------------------------------

    def cancel(self, records: Sequence[JobRecord]) -> tuple[list[Row], list[Row]]:
        """Cancel the jobs still pending or running; (cancelled, already ended)."""
        rows = self.rows(records)
        live = [row for row in rows if row.state.state in (PENDING, RUNNING, UNKNOWN)]
        ended = [row for row in rows if row not in live]

        def one(item: tuple[tuple[str, str, str], list[JobRecord]]) -> None:
            (scheduler, hosts_file, alias), group = item
            backend(scheduler).cancel(self.host(hosts_file, alias), group)

        self.parallel(one, list(self.by_host([row.record for row in live]).items()))
        self.ledger.append_events(
            [Event(now(), row.record.host, row.record.job_id, CANCELLED_EVENT) for row in live]
        )
        return live, ended

    def resubmit_failed(
        self, records: Sequence[JobRecord], waiting: Callable[[str], None] | None = None
    ) -> list[tuple[JobRecord, JobRecord]]:
        """Resubmit the FAILED jobs that were not resubmitted already; (old, new) pairs. `waiting`
        is told when another process resubmits jobs of the archive at the same moment."""
        replaced = self.replaced()
        # a job imported from the original tool's jobs.csv has no script compute wrote (its logs were
        # named on sbatch's command line): its playbook, run again, resubmits it
        candidates = [r for r in records if (r.host, r.job_id) not in replaced and r.status_file]
        failed = [row.record for row in self.rows(candidates) if row.state.state == FAILED]
        if not failed:
            return []
        self.ledger.ensure_writable()

        def one(item: tuple[tuple[str, str, str], list[JobRecord]]) -> list[JobRecord]:
            (scheduler, hosts_file, alias), group = item
            return backend(scheduler).resubmit(self.host(hosts_file, alias), group, self.ledger)

        # a `compute watch` (or another resubmit) may have resubmitted some while the hosts answered
        with self.ledger.resubmitting(waiting):
            # a retry whose sbatch answer was lost may be in the queue: `compute watch` looks for it
            gone = set(self.replaced()) | self.ledger.resubmitted_in_doubt()
            failed = [r for r in failed if (r.host, r.job_id) not in gone]
            new = [row for part in self.parallel(one, list(self.by_host(failed).items())) for row in part]
            old = {(r.host, r.job_id): r for r in failed}
            pairs = [(old[(n.host, n.replaces)], n) for n in new]
            self.ledger.append_events(
                [Event(now(), o.host, o.job_id, RESUBMITTED_EVENT, n.job_id) for o, n in pairs]
            )
        return pairs

    def logs(
        self,
        record: JobRecord,
        write: Callable[[bytes], None],
        err: bool = False,
        follow: bool = False,
    ) -> None:
        """Copy the job's output (or error) file from its host. With `follow`, read what was added
        every second until the job has ended: its exit-status file appears (checked in the same
        round trip), or, for a job that never started, the scheduler says it is over."""
        host = self.host(record.hosts_file, record.host)
        path = record.log_err if err else record.log_out
        if not path:
            raise InputError(f"job {record.job_id} has no {'error' if err else 'output'} file in the ledger")
        offset, reads, ended = 0, 0, False
        while True:
            command = f"tail -c +{offset + 1} -- {shell.quote_path(path)}"
            if record.status_file:
                command += f"\n[ -e {shell.quote_path(record.status_file)} ] && echo ended >&2; true"
            buffer = io.BytesIO()
            result = host.run(command, timeout=60, stdout_to=buffer)
            data = buffer.getvalue()
            if data:
                write(data)
                offset += len(data)
            missing = "tail:" in result.stderr
            if not follow:
                if missing:
                    state = self.rows([record])[0].state.state
                    raise ComputeError(
                        f"{record.host}: {path} does not exist (yet): job {record.job_id} is {state}"
                    )
                return
            if ended:
                return
            reads += 1
            ended = "ended" in result.stderr.splitlines() or (
                reads % FOLLOW_STATE_EVERY == 0 and self.rows([record])[0].state.state in FINAL
            )
            time.sleep(0 if ended else FOLLOW_SECONDS)  # once ended: one last read, then stop

    def feed(
        self, host: str | None = None, task: str | None = None, stopping: bool = False
    ) -> list[Progress]:
        """Follow (with `stopping`: stop) the open feeds of this host and task, sweeps the cluster
        submits itself (scheduling/feed.py): one round trip per host that has one, the jobs their
        feeders submitted since recorded in job.csv (each Progress has the new rows)."""
        from compute_platform.ledger import feeds

        groups: dict[tuple[str, str], list[feeds.Feed]] = {}
        for plan in feeds.open_feeds(self.ledger):
            if host in (None, plan.host) and task in (None, plan.task):
                groups.setdefault((plan.hosts_file, plan.host), []).append(plan)
        if not groups:
            return []
        from compute_platform.scheduling import feed  # with sbatch and the inventory's models: ~0.25 s

        def one(item: tuple[tuple[str, str], list[feeds.Feed]]) -> list[Progress]:
            (hosts_file, alias), plans = item
            try:
                return feed.follow(self.host(hosts_file, alias), self.ledger, plans, stopping)
            except ComputeError as e:
                if stopping:
                    raise
                return [
                    feed.Progress(p, feeds.points_left(self.ledger, p), unreachable=e.about(alias))
                    for p in plans
                ]

        return [progress for part in self.parallel(one, list(groups.items())) for progress in part]

    # -- hosts -------------------------------------------------------------------------------

    def by_host(self, records: Iterable[JobRecord]) -> dict[tuple[str, str, str], list[JobRecord]]:
        groups: dict[tuple[str, str, str], list[JobRecord]] = {}
        for r in records:
            groups.setdefault((r.scheduler, r.hosts_file, r.host), []).append(r)
        return groups

    def host(self, hosts_file: str, alias: str) -> Host:
        from compute_platform.hosts import HostPool
        from compute_platform.input.inventory import load_inventory

        path = self.hosts_path(hosts_file)
        key = str(path or "")
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = HostPool(load_inventory(path, None))
        return pool.get(alias)

    def hosts_path(self, recorded: str) -> Path | None:
        if self.inventory is not None:
            return self.inventory
        if recorded:
            path = Path(recorded)
            if not path.exists():
                raise InputError(
                    f"the hosts file {recorded} recorded in the ledger no longer exists: "
                    "pass --inventory hosts.yaml"
                )
            return path
        local = Path("hosts.yaml")
        return local if local.exists() else None

    def parallel(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=max(1, min(self.forks, len(items)))) as pool:
            return list(pool.map(fn, items))

    def close(self) -> None:
        with self._pools_lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()


def final_state(ended: Ended) -> JobState:
    """A job's end as states.csv keeps it; a state that is not a final one (a hand-edited file) is
    shown UNKNOWN, saying what the file holds."""
    code = int(ended.exit_code) if ended.exit_code.lstrip("-").isdigit() else None
    if ended.state not in FINAL:
        return JobState(UNKNOWN, code, f"states.csv says {ended.state!r}")
    attempt = int(ended.attempt) if ended.attempt.isdigit() else None
    return JobState(ended.state, code, ended.reason, attempt=attempt)


def _of(count: TaskCount, host: str | None, task: str | None) -> bool:
    return host in (None, "", count.host) and task in (None, "", count.task)


def pick(records: Sequence[JobRecord], job_ids: Sequence[str]) -> list[JobRecord]:
    """Records named on the command line: `ID`, `ARRAYID` (all its elements), a tmux SESSION (all
    its jobs, `SESSION.INDEX`) or `HOST:ID`."""
    chosen: list[JobRecord] = []
    for wanted in job_ids:
        host, _, job_id = wanted.rpartition(":")
        found = [
            r
            for r in records
            if (not host or r.host == host)
            and (r.job_id == job_id or r.job_id.startswith((f"{job_id}_", f"{job_id}.")))
        ]
        if not found:
            raise InputError(f"no job {wanted} in the ledger (see `compute jobs`)")
        hosts = {r.host for r in found}
        if len(hosts) > 1:
            raise InputError(
                f"job id {job_id} exists on several hosts ({', '.join(sorted(hosts))}): write HOST:{job_id}"
            )
        chosen += [r for r in found if r not in chosen]
    return chosen


def one_record(records: Sequence[JobRecord], job_id: str) -> JobRecord:
    """Exactly one job (for `logs`): an array id alone is ambiguous."""
    found = pick(records, [job_id])
    if len(found) > 1:
        sample = ", ".join(r.job_id for r in found[:3])
        raise InputError(f"{job_id} names {len(found)} jobs (an array): pick one, e.g. {sample}")
    return found[0]


def filter_states(rows: Sequence[Row], states: str | None) -> list[Row]:
    wanted = _states(states)
    return [row for row in rows if row.state.state in wanted] if wanted else list(rows)


def _states(states: str | None) -> set[str]:
    """--state's states (none: every state)."""
    wanted = {s.strip().upper() for s in (states or "").split(",") if s.strip()}
    unknown = wanted - set(ALL_STATES)
    if unknown:
        raise InputError(
            f"--state: unknown state {', '.join(sorted(unknown))}; expected: {', '.join(ALL_STATES)}"
        )
    return wanted


@dataclass(frozen=True)
class Selection:
    """Which rows of the ledger the table shows. With none of these (and no --host, --task or
    --state), the default: the jobs still open and those of the latest run, the rest counted."""

    everything: bool = False  # --all
    since: str | None = None  # --since: an ISO date or time, or "3d", "12h", "30m" ago
    run: str | None = None  # --run RUN_ID
    last: int | None = None  # --last N: the N latest rows

    @property
    def default(self) -> bool:
        return not (self.everything or self.since or self.run or self.last)


def select(
    rows: Sequence[Row], selection: Selection, narrowed: bool = False, total: int | None = None
) -> tuple[list[Row], int]:
    """The rows to show, and how many were left out of `total` (default: of `rows`; more when `rows`
    were chosen from the ledger already, as `Jobs.chosen` does). `narrowed`: --host, --task or
    --state chose already, so the default keeps every row they chose."""
    kept = list(rows)
    if selection.run:
        kept = [row for row in kept if row.record.run_id == selection.run]
    if selection.since:
        start = since_time(selection.since)
        kept = [row for row in kept if row.record.submitted_at >= start]
    if selection.last:
        kept = kept[-selection.last :]
    if selection.default and not narrowed and kept:
        latest = max(kept, key=lambda row: row.record.submitted_at).record.run_id
        kept = [row for row in kept if row.state.state not in FINAL or row.record.run_id == latest]
    return kept, (len(rows) if total is None else total) - len(kept)


_AGO = {"d": 86400, "h": 3600, "m": 60}


def since_time(text: str) -> str:
    """--since as the ISO time rows are compared with: `2026-11-01`, `2026-11-01T12:00`, or `3d`,
    `12h`, `30m` before now."""
    from datetime import datetime, timedelta, timezone

    amount, unit = text[:-1], text[-1:].lower()
    if unit in _AGO and amount.isdigit():
        at = datetime.now(timezone.utc) - timedelta(seconds=int(amount) * _AGO[unit])
        return at.isoformat(timespec="seconds")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--since: expected a date (2026-11-01), a time (2026-11-01T12:00) or an age (3d, 12h, 30m), got {text!r}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")


# -- display ----------------------------------------------------------------------------------

STATE_STYLES = {
    PENDING: "yellow",
    RUNNING: "cyan",
    COMPLETED: "green",
    FAILED: "bold red",
    CANCELLED: "magenta",
    TIMEOUT: "red",
    UNKNOWN: "dim",
}


def state_text(row: Row) -> str:
    state = row.state
    text = state.state
    if state.state in (FAILED, TIMEOUT, CANCELLED) and state.exit_code not in (None, 0):
        text += f" ({state.exit_code})"
    if state.reason and state.state in (PENDING, UNKNOWN):
        text += f" ({state.reason})"
    elif state.reason in TELLING_ENDS:  # OUT_OF_MEMORY, NODE_FAIL, PREEMPTED...
        text += f" {state.reason}"
    if row.attempt > 1:
        why = f" after {row.record.retry_reason}" if row.record.retry_reason else ""
        text += f" (attempt {row.attempt}{why})"
    if row.replaced_by:
        text += f" -> {row.replaced_by}"
    return text


def time_text(stamp: str) -> str:
    """`2026-12-01T10:02:11+00:00` -> `2026-12-01 10:02:11`: a row's time as the views show it."""
    return stamp.replace("T", " ").removesuffix("+00:00")


def point_text(record: JobRecord) -> str:
    parts = [record.args] if record.args else []
    if record.sweep:
        try:
            point = json.loads(record.sweep)
            parts += [f"{k}={v}" for k, v in point.items()]
        except (ValueError, AttributeError):
            parts.append(record.sweep)
    if record.seeds:
        parts.append(f"seeds={record.seeds}")
    return " ".join(parts)


COLUMNS = ("JOB", "HOST", "TASK", "NAME", "STATE", "SUBMITTED", "POINT")


def table(rows: Sequence[Row]) -> Text:
    """Aligned columns, the state in color. Built as one Text: rich's Table takes seconds for a
    1,000-job sweep, and a table this simple needs none of its layout."""
    from rich.text import Text

    cells = [
        (
            r.record.job_id,
            r.record.host,
            r.record.task,
            r.record.job_name,
            state_text(r),
            time_text(r.record.submitted_at),
            point_text(r.record),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    text = Text()
    text.append(_line(COLUMNS, widths).rstrip(), style="bold")
    for row, line in zip(rows, cells, strict=True):
        text.append("\n" + _line(line[:4], widths[:4]) + "  ")
        text.append(line[4].ljust(widths[4]), style=STATE_STYLES[row.state.state])
        text.append(("  " + _line(line[5:], widths[5:])).rstrip())
    return text


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))


def summary(rows: Sequence[Row]) -> str:
    counts = {state: sum(row.state.state == state for row in rows) for state in ALL_STATES}
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) or "no job"


JSON_VERSION = 1


def as_json(rows: Sequence[Row]) -> str:
    """`compute jobs --json`: `{"version": 1, "jobs": [...]}`, each job its ledger row plus its state
    (shape in docs/json.md)."""
    return json.dumps(
        {
            "version": JSON_VERSION,
            "jobs": [
                {
                    **asdict(row.record),
                    "state": row.state.state,
                    "exit_code": row.state.exit_code,
                    "reason": row.state.reason,
                    "replaced_by": row.replaced_by,
                    "attempts": row.attempt,
                }
                for row in rows
            ],
        },
        indent=2,
    )


def show(
    view: Jobs,
    records: Sequence[JobRecord],
    states: str | None,
    watch: bool,
    draw: Callable[[list[Row]], RenderableType] | None = None,
    selection: Selection | None = None,
    narrowed: bool = True,
    total: int | None = None,
    feed: Callable[[], list[Progress]] | None = None,
) -> None:
    """Print the table (or what `draw` makes of the rows: jobviews' grid or summary) once, or with
    `watch` redraw it every WATCH_SECONDS until every job shown has ended (Ctrl-C stops watching).
    Final states are not asked again. `feed` (Jobs.feed) follows the sweeps the cluster feeds: the
    jobs they submitted join the rows, a line says what is still to come, and --watch goes on while
    one is open."""
    import shutil
    import sys

    from rich.console import Console, Group
    from rich.live import Live

    terminal = sys.stdout.isatty()
    console = Console(width=None if terminal else max(200, shutil.get_terminal_size().columns))
    known: dict[tuple[str, str], Row] = {}
    fed: dict[str, Progress] = {}
    chosen_rows = list(records)
    added = 0

    def frame() -> tuple[RenderableType, bool, list[JobState]]:
        nonlocal added
        for progress in feed() if feed is not None else []:
            fed[progress.feed.feed] = progress
            chosen_rows.extend(progress.rows)
            added += len(progress.rows)
        rows = view.rows(chosen_rows, known)
        known.update({row.key: row for row in rows})
        chosen = selection or Selection(everything=True)
        grown = None if total is None else total + added
        shown, left = select(filter_states(rows, states), chosen, narrowed, grown)
        done = all(row.state.state in FINAL for row in shown) and not any(p.open for p in fed.values())
        seen = [row.state for row in shown]
        feeding = [line for line in (p.line() for p in fed.values()) if line]
        if draw is not None:
            return Group(draw(shown), *feeding) if feeding else draw(shown), done, seen
        lines: list[RenderableType] = [table(shown), f"\n{len(shown)} jobs: {summary(shown)}", *feeding]
        if left:
            lines.append(
                f"{left} ended job(s) of earlier runs not shown: --all, --since, --run or --last show them"
            )
        return Group(*lines), done, seen

    if not watch:
        console.print(frame()[0], soft_wrap=True)
        return
    try:
        with Live(console=console, auto_refresh=False) as live:
            pause, before = WATCH_SECONDS, None
            while True:
                renderable, done, seen = frame()
                live.update(renderable, refresh=True)
                if done:
                    return
                # Slurm asks for no tight polling: while nothing changes, ask less and less often
                pause = WATCH_SECONDS if seen != before else min(pause * 2, WATCH_MAX_SECONDS)
                before = seen
                time.sleep(pause)
    except KeyboardInterrupt:
        return
