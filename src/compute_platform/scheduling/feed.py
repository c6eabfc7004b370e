"""A sweep larger than the user's submit limit (MaxSubmitJobs and the like: every array element
counts), fed by the cluster itself: `compute run` submits what fits, chunk 0, and a small feeder job
that waits for it (`--dependency=afterany`); the feeder submits the next chunk and the next feeder,
and so on, so the sweep goes on without the laptop and the queue never holds more than the limit.

Every script is rendered at run time, archived like any other (ledger/feeds.py keeps the planned
rows until the jobs exist) and uploaded to the feed's folder on the host, so the feeder is a tiny
shell script (scripts/feeder.sh) that only sbatches staged files:

~/.compute/feeds/<feed id>/
  feed.sh                the feeder; `sbatch feed.sh K` makes the feeder of chunk K
  <chunk>.<batch>.sbatch the scripts of the chunks still to come (each removed once submitted)
  submitted              `<token> <job id> <time>` for every job a feeder submitted
  stop                   written by `compute cancel --task`: no feeder submits anything once it exists
  feeder.<id>.out        each feeder's output

Each job carries its own token in its --comment (`<feed id>.<chunk>.<batch>`, the feeders
`<feed id>.<chunk>.feeder`), so that a job whose line never reached `submitted` is found in the queue.
The queue holds at most the room the limit left when the run started: chunk 0 takes room - 1 jobs
(its feeder takes one place), each later chunk room - 2 (its feeder runs while it submits the chunk
and the next feeder). This module is the pure part (sizes, the feeder's script) and the round trips
(upload, look, stop)."""

from __future__ import annotations

import io
import re
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from compute_platform.hosts import shell
from compute_platform.ledger import JobRecord, Ledger, feeds
from compute_platform.scheduling import script as shell_file
from compute_platform.scheduling.sbatch import OptionValue, directive, one_line

if TYPE_CHECKING:
    from compute_platform.hosts import Host

FEEDS = "~/.compute/feeds"  # on the host
MIN_ROOM = 3  # a feed needs room for a chunk of one job, its feeder and the next feeder
FEEDER_MINUTES = 10  # the feeder's time limit (shorter when the config's `time` is)
RETRY_PAUSE = 30  # seconds between a feeder's attempts while a limit refuses a job
# The sbatch options of the jobs that also decide where the feeder may run and what it counts against.
FEEDER_OPTIONS = ("partition", "account", "qos", "reservation")
TOKEN_MARK = "compute-submission:"
SECTION = "@@compute-feed@@"
STOPPED = "@@compute-feed-stopped@@"
STOP_WAIT = 60  # seconds `stop` waits for cancelled feeders to leave the queue
# A feed is started in the ledger just before its first feeder is submitted: one seen without a
# feeder that young is not taken for stopped.
GRACE_SECONDS = 120


def new_feed_id() -> str:
    return uuid.uuid4().hex[:16]


def chunk_sizes(jobs: int, room: int) -> list[int]:
    """How many jobs each chunk has: all in one when they fit in the room; else room - 1 first and
    room - 2 for each later one (see the module's docstring). `room` >= MIN_ROOM when they do not fit."""
    if jobs <= room:
        return [jobs]
    if room < MIN_ROOM:
        raise ValueError(f"a feed needs room for {MIN_ROOM} jobs, not {room}")
    sizes = [room - 1]
    rest = jobs - sizes[0]
    while rest > 0:
        sizes.append(min(room - 2, rest))
        rest -= sizes[-1]
    return sizes


def batch_name(chunk: int, batch: int) -> str:
    """The file of a chunk's batch in the feed's folder: fixed widths, so the shell lists them in order."""
    return f"{chunk:06d}.{batch:06d}"


def batch_token(feed: str, chunk: int, batch: int) -> str:
    return f"{feed}.{batch_name(chunk, batch)}"


def feeder_token(feed: str, chunk: int) -> str:
    return f"{feed}.{chunk:06d}.feeder"


def folder(home: str, feed: str) -> str:
    return f"{home.rstrip('/')}/{FEEDS.removeprefix('~/')}/{feed}"


# -- the feeder's script (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class FeederSpec:
    feed: str
    folder: str  # absolute, on the host
    chunks: int  # the last chunk's number
    job_name: str  # the sweep's: the feeder is `<job_name>.feed`
    comment: str = ""  # where the feed comes from (playbook, task, host)
    options: Mapping[str, OptionValue] = field(default_factory=dict)  # FEEDER_OPTIONS of the jobs
    minutes: int = FEEDER_MINUTES
    pause: float = RETRY_PAUSE


def render_feeder(spec: FeederSpec) -> str:
    lines = ["#!/bin/bash"]
    if spec.comment:
        lines.append(f"# {one_line(spec.comment)}: the feeder of its sweep (feed {spec.feed})")
    options: dict[str, OptionValue] = {"job-name": f"{spec.job_name}.feed"}
    options.update({k: v for k, v in spec.options.items() if k in FEEDER_OPTIONS})
    options.update(
        {
            "time": f"{spec.minutes // 60:02d}:{spec.minutes % 60:02d}:00",
            "ntasks": 1,
            "mem": "100M",
            "no-requeue": True,  # a feeder run twice would find its jobs in `submitted`, but why risk it
            "output": f"{spec.folder}/feeder.%j.out",
        }
    )
    lines += [f"#SBATCH {directive(k, v)}" for k, v in options.items() if v not in (None, False)]
    body = (
        _template()
        .replace("@FEED@", shell.quote(spec.feed))
        .replace("@DIR@", shell.quote(spec.folder))
        .replace("@LAST@", str(spec.chunks))
        .replace("@PAUSE@", f"{spec.pause:g}")
    )
    return "\n".join([*lines, "", body]) + "\n"


def _template() -> str:
    return shell_file("feeder.sh")


def feeder_minutes(time_limit: str | None) -> int:
    """FEEDER_MINUTES, or the config's time limit when shorter (a partition allows that much)."""
    minutes = slurm_minutes(time_limit) if time_limit else None
    return max(1, min(FEEDER_MINUTES, minutes)) if minutes else FEEDER_MINUTES


def slurm_minutes(text: str) -> int | None:
    """Slurm's time formats (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) in whole
    minutes, rounded up; None for what is not one (`infinite`, a typo sbatch will refuse)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        return None
    days, a, b, c = match.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    else:  # MM or MM:SS
        seconds = int(a) * 60 + int(b or 0)
    return -(-seconds // 60)


# -- round trips ----------------------------------------------------------------------------------


def upload(host: Host, remote: str, files: Mapping[str, str]) -> None:
    """The feed's folder with these files, in one round trip (a tar stream on stdin)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    where = shell.quote_path(remote)
    host.run(
        f"mkdir -p {where} && tar -x -m -f - -C {where}", stdin=buffer.getvalue(), timeout=300, check=True
    )


def remove(host: Host, remote: str) -> None:
    """A feed that never started: its folder goes (a `stop` first, should anything have run)."""
    where = shell.quote_path(remote)
    host.run(f": > {where}/stop 2>/dev/null; rm -rf {where}", timeout=60)


@dataclass(frozen=True)
class News:
    """What the host says of one feed: the jobs its feeders submitted (`token -> (job id, when)`),
    its feeders still queued (`job id -> state`), and whether it was stopped."""

    submitted: dict[str, tuple[str, str]]
    feeders: dict[str, str]
    stopped: bool


def look(host: Host, feeds: Sequence[tuple[str, str]]) -> dict[str, News]:
    """One round trip for these feeds (`(feed id, folder)`): the user's queue, then each feed's
    `submitted` file and stop mark."""
    return parse_look(host.run(_look_command(feeds), timeout=120, check=True).stdout, [f for f, _ in feeds])


def stop(host: Host, feeds: Sequence[tuple[str, str]]) -> dict[str, News]:
    """Stop these feeds in one round trip: the stop mark first (no feeder submits anything after
    it), then scancel of their feeders, a wait until those have left the queue (one killed inside
    sbatch may still have got its job in), then what `look` says."""
    marks = " ".join(f"{shell.quote_path(where)}/stop" for _, where in feeds)
    pattern = "|".join("^" + re.escape(f"{TOKEN_MARK}{feed}.") + r"[0-9]+\.feeder[|]" for feed, _ in feeds)
    feeders = (
        f"squeue -h -u \"$(id -un)\" -o '%k|%F' 2>/dev/null | grep -E {shell.quote(pattern)} | cut -d'|' -f2"
    )
    command = "\n".join(
        [
            f'for m in {marks}; do [ -d "${{m%/stop}}" ] && : > "$m"; done',
            f"compute_ids=$({feeders})",
            '[ -z "$compute_ids" ] || scancel $compute_ids',
            f"for compute_i in $(seq {STOP_WAIT * 4}); do",
            f'  [ -n "$({feeders})" ] || break',
            "  sleep 0.25",
            "done",
            f'for m in {marks}; do rm -f "${{m%/stop}}"/*.sbatch; done',
            _look_command(feeds),
        ]
    )
    return parse_look(host.run(command, timeout=STOP_WAIT + 120, check=True).stdout, [f for f, _ in feeds])


def _look_command(feeds: Sequence[tuple[str, str]]) -> str:
    lines = [
        "squeue -h -u \"$(id -un)\" -o '%k|%F|%T' 2>/dev/null | grep -F " + shell.quote(TOKEN_MARK),
        "true",
    ]
    for feed, where in feeds:
        path = shell.quote_path(where)
        lines += [
            f"echo {SECTION} {shell.quote(feed)}",
            f"cat {path}/submitted 2>/dev/null",
            f"[ -e {path}/stop ] && echo {STOPPED}",
            "true",
        ]
    return "\n".join(lines)


def parse_look(text: str, feeds: Sequence[str]) -> dict[str, News]:
    """`look`'s answer: queue lines `compute-submission:<token>|<job id>|<state>`, then for each
    feed `@@compute-feed@@ <id>` and its `submitted` lines, `<token> <job id> <time>`."""
    queue, *sections = text.split(SECTION + " ")
    queued: dict[str, tuple[str, str]] = {}  # token -> (job id, state)
    for line in queue.splitlines():
        comment, _, rest = line.strip().partition("|")
        job_id, _, state = rest.partition("|")
        if comment.startswith(TOKEN_MARK) and job_id:
            queued.setdefault(comment.removeprefix(TOKEN_MARK), (job_id, state))
    logged: dict[str, list[str]] = {}
    stopped: set[str] = set()
    for section in sections:
        feed, _, body = section.partition("\n")
        lines = body.splitlines()
        logged[feed.strip()] = lines
        if STOPPED in lines:
            stopped.add(feed.strip())
    news = {}
    for feed in feeds:
        submitted: dict[str, tuple[str, str]] = {}
        for line in logged.get(feed, []):
            words = line.split()
            if len(words) >= 2 and words[0].startswith(f"{feed}.") and words[1].isdigit():
                submitted.setdefault(words[0], (words[1], words[2] if len(words) > 2 else ""))
        feeders: dict[str, str] = {}
        for token, (job_id, state) in queued.items():
            if not token.startswith(f"{feed}."):
                continue
            if token.endswith(".feeder"):
                feeders[job_id] = state
            else:  # a job whose line never reached `submitted` (its feeder was killed in between)
                submitted.setdefault(token, (job_id, ""))
        news[feed] = News(
            {t: v for t, v in submitted.items() if not t.endswith(".feeder")}, feeders, feed in stopped
        )
    return news


# -- following a feed -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where one feed stands after a look: the points still to come, its feeder, whether it ended."""

    feed: feeds.Feed
    left: int  # points not submitted yet (by an open feed: still to come)
    feeder: tuple[str, str] | None = None  # (job id, state) of a feeder in the queue
    ended: str = ""  # why it ended in this look ("" while open)
    rows: tuple[JobRecord, ...] = ()  # the rows this look added to job.csv
    unreachable: str = ""  # why the host could not be asked

    @property
    def open(self) -> bool:
        return not self.ended

    def line(self) -> str:
        """What `compute jobs` says of it ("" once every point was submitted)."""
        plan = self.feed
        what = f"task '{plan.task}' on {plan.host}"
        if self.ended == feeds.DONE:
            return ""
        if self.ended == feeds.CANCELLED:
            return f"the feed of {what} was stopped: {self.left} points were not submitted"
        if self.ended:
            return (
                f"the feed of {what} stopped, {self.left} points not submitted: {self.ended}; "
                f"`compute run {plan.playbook} --resume` submits them"
            )
        how = f"host unreachable: {self.unreachable}" if self.unreachable else "no feeder queued"
        if self.feeder:
            how = f"feeder job {self.feeder[0]} {self.feeder[1].lower()}"
        return f"{self.left} points still to be fed by the cluster ({what}, {how})"


def follow(host: Host, ledger: Ledger, plans: Sequence[feeds.Feed], stopping: bool = False) -> list[Progress]:
    """Look at these feeds of one host (or stop them), record the jobs their feeders submitted,
    and end the feeds that are over: every batch recorded, stopped, or without a feeder any more."""
    if not plans:
        return []
    where = [(plan.feed, plan.remote) for plan in plans]
    news = stop(host, where) if stopping else look(host, where)
    found = []
    for plan in plans:
        heard = news.get(plan.feed) or News({}, {}, False)
        new = feeds.record(ledger, plan, heard.submitted)
        left = feeds.points_left(ledger, plan)
        feeder = next(iter(heard.feeders.items()), None)
        why = ""
        if not left:
            why = feeds.DONE
        elif heard.stopped:
            why = feeds.CANCELLED
        elif not heard.feeders and _age(plan.started) > GRACE_SECONDS:
            why = f"its feeder ended before submitting every chunk (see {plan.remote}/feeder.*.out)"
        if why:
            feeds.end(ledger, plan, why)
        found.append(Progress(plan, left, feeder, why, tuple(new)))
    return found


def _age(at: str) -> float:
    from datetime import datetime, timezone

    try:
        started = datetime.fromisoformat(at)
    except ValueError:
        return float("inf")
    return (datetime.now(timezone.utc) - started).total_seconds()
