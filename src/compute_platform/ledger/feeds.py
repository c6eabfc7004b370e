"""Sweeps fed by the cluster (scheduling/feed.py): what a run planned for the jobs that a feeder job
submits later, kept in the archive until they are submitted. job.csv only ever holds jobs really
submitted: a planned batch becomes rows there once its job id is known.

archive/feeds/<feed id>/
  plan.json     the feed: playbook, task, host, hosts file, run, its folder on the host, and every
                batch still to come (token, chunk, array or not, its staged script, its rows)
  <token>.csv   the rows a batch will have in job.csv, in the order of its array indexes; the job
                id, the logs and the script are filled in once the feeder has submitted it
  recorded      the tokens whose rows are in job.csv, one a line
archive/<host>/.staged-*.slurm   each batch's script, staged as any submission's (Ledger.stage_script)
                and renamed after its job id once known (Ledger.commit_script)

events.csv: `feed` when a feed starts (its id), `feed-ended` when it is over: every batch recorded
(`done`), or stopped (`cancelled` by `compute cancel --task`, or its feeder ended first) with the
number of points it did not submit.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from compute_platform.errors import LedgerError
from compute_platform.ledger.records import Event, JobPaths, JobRecord, now, safe_name, write_whole
from compute_platform.ledger.store import Ledger

FEED = "feed"
FEED_ENDED = "feed-ended"
FOLDER = "feeds"
DONE = "done"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class Batch:
    """One sbatch a feeder is to make: its script, staged in the archive, and its planned rows."""

    token: str  # in the job's --comment, as for every submission: how the job is found again
    chunk: int  # the feeder of this chunk submits it once the chunk before has ended
    array: bool
    script: str  # the staged script, relative to the archive
    save_path: str  # where its logs go (absolute on the host)
    rows: int


@dataclass(frozen=True)
class Feed:
    feed: str
    host: str
    playbook: str
    task: str
    run_id: str
    hosts_file: str
    remote: str  # the feed's folder on the host (absolute)
    chunks: int  # the number of the last chunk (chunk 0 was submitted by the run itself)
    batches: tuple[Batch, ...]
    started: str = ""

    @property
    def points(self) -> int:
        return sum(b.rows for b in self.batches)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "batches": [asdict(b) for b in self.batches]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Feed:
        batches = tuple(Batch(**b) for b in data.get("batches", []))
        return cls(**{**data, "batches": batches})


def folder(ledger: Ledger, feed: str) -> Path:
    return ledger.root / FOLDER / safe_name(feed)


def stage_batch(
    ledger: Ledger, feed: str, token: str, host: str, text: str, rows: Sequence[JobRecord]
) -> str:
    """Stage one batch's script (as a submission does) and its planned rows; the script's path,
    relative to the archive."""
    where = folder(ledger, feed)
    try:
        where.mkdir(parents=True, exist_ok=True)
        write_whole(where / f"{safe_name(token)}.csv", _csv(rows).encode())
    except OSError as e:
        raise LedgerError(f"cannot stage the feed's rows in {where}: {e.strerror or e}") from e
    return ledger.relative(ledger.stage_script(host, text, "slurm"))


def start(ledger: Ledger, feed: Feed) -> None:
    """The plan written, then the `feed` event: from here on the feed's points count as submitted
    for a resumed run until the feed has ended."""
    where = folder(ledger, feed.feed)
    try:
        write_whole(where / "plan.json", (json.dumps(feed.to_json(), indent=1) + "\n").encode())
    except OSError as e:
        raise LedgerError(f"cannot write the feed's plan in {where}: {e.strerror or e}") from e
    ledger.append_events([Event(now(), feed.host, "", FEED, json.dumps({"feed": feed.feed}))])


def discard(ledger: Ledger, feed: str, scripts: Sequence[str]) -> None:
    """Undo the staging of a feed that never started."""
    for script in scripts:
        ledger.discard(ledger.root / script)
    shutil.rmtree(folder(ledger, feed), ignore_errors=True)


def open_feeds(ledger: Ledger, events: Sequence[Event] | None = None) -> list[Feed]:
    """The feeds started and not ended, oldest first (a plan that cannot be read is left out). The
    feed events come from the index (`run_events`), not from a read of all of events.csv."""
    started, ended = _feed_events(ledger.run_events() if events is None else events)
    found = []
    for feed_id, event in started.items():
        if feed_id not in ended:
            feed = load(ledger, feed_id, event.at)
            if feed is not None:
                found.append(feed)
    return found


def load(ledger: Ledger, feed_id: str, at: str = "") -> Feed | None:
    try:
        data = json.loads((folder(ledger, feed_id) / "plan.json").read_text(encoding="utf-8"))
        return replace(Feed.from_json(data), started=at)
    except (OSError, ValueError, TypeError):
        return None


def recorded(ledger: Ledger, feed: Feed) -> set[str]:
    try:
        text = (folder(ledger, feed.feed) / "recorded").read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return set(text.split())


def record(ledger: Ledger, feed: Feed, submitted: Mapping[str, tuple[str, str]]) -> list[JobRecord]:
    """The rows of the batches the feeders submitted (`token -> (job id, when)`) not in job.csv
    yet: each script renamed after its job id, the rows appended (append_new: two commands recording
    the same batch at once add it once), the tokens noted as recorded. Returns the new rows."""
    done = recorded(ledger, feed)
    new: list[JobRecord] = []
    tokens = []
    for batch in feed.batches:
        if batch.token in done or batch.token not in submitted:
            continue
        job_id, at = submitted[batch.token]
        script = _commit(ledger, batch.script, job_id)
        rows = filled(_planned(ledger, feed, batch), job_id, script, batch.save_path, batch.array, at)
        new += ledger.append_new(rows)
        tokens.append(batch.token)
    if tokens:
        try:
            with open(folder(ledger, feed.feed) / "recorded", "a", encoding="utf-8") as f:
                f.write("".join(f"{t}\n" for t in tokens))
        except OSError as e:  # the rows are in job.csv: a later look finds them there (append_new)
            raise LedgerError(
                f"cannot note the recorded batches of feed {feed.feed}: {e.strerror or e}"
            ) from e
    return new


def filled(
    planned: Sequence[JobRecord], job_id: str, script: str, save_path: str, array: bool, at: str = ""
) -> list[JobRecord]:
    """The rows of one submission, made before its job id was known, with the id (`<id>_<index>` for
    the elements of an array, in the order of their indexes), its logs, its archived script and when
    it was submitted (default: now)."""
    at = at or now()
    rows = []
    for position, row in enumerate(planned):
        element = f"{job_id}_{position}" if array else job_id
        paths = JobPaths.slurm(save_path, row.job_name, element)
        rows.append(
            replace(
                row,
                submitted_at=at,
                job_id=element,
                script=script,
                log_out=paths.out,
                log_err=paths.err,
                status_file=paths.status,
            )
        )
    return rows


def left(ledger: Ledger, feed: Feed) -> list[Batch]:
    """The batches not recorded yet."""
    done = recorded(ledger, feed)
    return [b for b in feed.batches if b.token not in done]


def points_left(ledger: Ledger, feed: Feed) -> int:
    return sum(b.rows for b in left(ledger, feed))


def end(ledger: Ledger, feed: Feed, why: str) -> None:
    """The feed is over; `why` is DONE, CANCELLED or what stopped it. Its remaining points are no
    longer counted as submitted (a resumed run submits them): their staged scripts go, and every
    planned row (those submitted are in job.csv); the plan stays."""
    remaining = left(ledger, feed)
    detail = json.dumps({"feed": feed.feed, "why": why, "left": sum(b.rows for b in remaining)})
    ledger.append_events([Event(now(), feed.host, "", FEED_ENDED, detail)])
    for batch in remaining:
        ledger.discard(ledger.root / batch.script)
    for batch in feed.batches:
        with suppress(OSError):
            (folder(ledger, feed.feed) / f"{safe_name(batch.token)}.csv").unlink()


def planned_points(ledger: Ledger, playbook: str, task: str, host: str | None) -> set[tuple[str, str]]:
    """(job_index, command) of the points the open feeds of this playbook's task on this host (any
    host: None) are still to submit: a resumed run leaves them out, as it leaves out the ledger's."""
    points: set[tuple[str, str]] = set()
    for feed in open_feeds(ledger):
        if (feed.playbook, feed.task) == (playbook, task) and host in (None, feed.host):
            for batch in left(ledger, feed):
                points.update((r.job_index, r.command) for r in _planned(ledger, feed, batch))
    return points


# -- files ------------------------------------------------------------------------------------


def _feed_events(events: Sequence[Event]) -> tuple[dict[str, Event], dict[str, dict[str, Any]]]:
    started: dict[str, Event] = {}
    ended: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.event not in (FEED, FEED_ENDED):
            continue
        try:
            info = json.loads(event.detail)
        except ValueError:
            continue
        feed_id = str(info.get("feed", "")) if isinstance(info, dict) else ""
        if feed_id and event.event == FEED:
            started.setdefault(feed_id, event)
        elif feed_id:
            ended.setdefault(feed_id, info)
    return started, ended


def _planned(ledger: Ledger, feed: Feed, batch: Batch) -> list[JobRecord]:
    path = folder(ledger, feed.feed) / f"{safe_name(batch.token)}.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            read = JobRecord.reader(next(rows, []))
            return [read(row) for row in rows if row]
    except OSError as e:
        raise LedgerError(
            f"cannot read the planned rows of feed {feed.feed}: {path}: {e.strerror or e}"
        ) from e


def _commit(ledger: Ledger, script: str, job_id: str) -> str:
    """The staged script renamed after its job id (already done by a command that recorded the
    batch at the same moment, or before it stopped: then it is there under that name)."""
    staged = ledger.root / script
    final = staged.with_name(f"{safe_name(job_id)}{staged.suffix}")
    with suppress(FileNotFoundError):
        final = ledger.commit_script(staged, job_id)
    return ledger.relative(final)


def _csv(rows: Sequence[JobRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=JobRecord.columns(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buffer.getvalue()
