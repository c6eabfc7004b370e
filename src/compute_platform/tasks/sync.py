"""`sync`: upload W&B offline runs from the host. W&B ends an offline run by printing
`wandb: wandb sync /path/to/offline-run-...` (on stderr, so in the job's error log); this task
reads those lines from the logs of the jobs named, in one round trip, and runs `wandb sync` once
with every run directory found as a literal word (a log line is never run as shell code)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from compute_platform.context import Outcome
from compute_platform.errors import CommandFailed, InputError, TaskError
from compute_platform.hosts import shell
from compute_platform.ledger import JobPaths, JobRecord
from compute_platform.tasks.base import Action

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

JOB = re.compile(r"(?:(?P<host>[^:\s]+):)?(?P<id>[A-Za-z0-9][A-Za-z0-9_.+-]*)")
MAX_RANGE = 10_000  # ids in one job_array: each is a file to read
# What the reading script prints before each log's lines (which it indents by one space).
MARK = "compute-sync:"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# W&B's own line: `wandb: wandb sync PATH`, at the start of a line (not an echo of a command
# that mentions it, such as the job's `CMD ...` line or a shell trace)
SYNC = re.compile(r"^\s*wandb:\s*wandb sync[ \t]+(.+)")
# The name W&B gives a run's directory: offline-run-20230512_101500-3k2j1h0d (run-... online,
# dryrun-... in its old versions)
RUN_DIR = re.compile(r"(?:offline-run|run|dryrun)-\d{8}_\d{6}-[A-Za-z0-9]+")


def run_dirs(lines: Sequence[str]) -> list[str]:
    """The run directories named by the lines W&B prints, `wandb: wandb sync /home/me/wandb/offline-run-...`
    (the line starts so; anything else that mentions `wandb sync` is not W&B's). W&B prints one
    path, unquoted, so the rest of the line is that path, spaces included; several paths only when
    every word is a run directory. A line where an option (`--sync-all`) or words that are not a
    path follow are left out."""
    found: list[str] = []
    for line in lines:
        for segment in line.split("\r"):  # progress bars rewrite the line with carriage returns
            match = SYNC.search(ANSI.sub("", segment))
            if not match:
                continue
            for path in _paths(match.group(1).strip()):
                if path not in found:
                    found.append(path)
    return found


def _paths(rest: str) -> list[str]:
    if len(rest) > 1 and rest[0] == rest[-1] and rest[0] in "`'\"":
        rest = rest[1:-1].strip()
    if not rest or rest.startswith("-") or "/" not in rest:
        return []
    words = rest.split()
    if len(words) > 1 and all(RUN_DIR.fullmatch(posixpath.basename(w.rstrip("/"))) for w in words):
        return words
    return [rest]


# Run directories per `wandb sync` call: a command line holds a few thousand at most.
SYNC_CHUNK = 200


def read_script() -> str:
    """Shell code printing whether `wandb` is on PATH, then, for each log path read from stdin (NUL
    after each: any number of logs, any name; a leading `~/` is the home), a mark line
    `compute-sync: log|missing|unreadable INDEX` and, for a readable one, its `wandb sync` lines
    indented by one space (so that no log line can pass for a mark)."""
    return "\n".join(
        [
            "export LC_ALL=C",
            f"if command -v wandb >/dev/null 2>&1; then echo '{MARK} wandb yes'; else echo '{MARK} wandb no'; fi",
            "i=0",
            "while IFS= read -r -d '' f; do",
            '  case $f in "~") f=$HOME ;; "~/"*) f=$HOME/${f#??} ;; esac',
            f'  if [ ! -e "$f" ]; then echo "{MARK} missing $i"',
            f'  elif [ ! -r "$f" ]; then echo "{MARK} unreadable $i"',
            f"  else echo \"{MARK} log $i\"; grep -a -F -e 'wandb sync' -- \"$f\" | sed 's/^/ /'",
            "  fi",
            "  i=$((i + 1))",
            "done",
        ]
    )


def log_list(paths: Sequence[str]) -> bytes:
    """What `read_script` reads on stdin."""
    return b"".join(p.encode() + b"\0" for p in paths)


@dataclass(frozen=True)
class Listing:
    """What `read_script` printed: whether wandb is there, and each log's state and lines."""

    wandb: bool
    logs: tuple[tuple[str, tuple[str, ...]], ...]  # (log | missing | unreadable, its lines)


def parse_listing(stdout: str, count: int) -> Listing:
    """The output of `read_script` for `count` logs (anything the host's init printed before it is
    skipped). A log the output does not mention (the script was cut short) counts as missing."""
    wandb = False
    states = ["missing"] * count
    lines: list[list[str]] = [[] for _ in range(count)]
    current: int | None = None
    for line in stdout.split("\n"):  # not splitlines: a log line may hold carriage returns
        if line.startswith(MARK):
            word, _, value = line.removeprefix(MARK).strip().partition(" ")
            if word == "wandb":
                wandb = value == "yes"
            elif value.isdigit() and int(value) < count:
                current = int(value)
                states[current] = word
            continue
        if current is not None and line.startswith(" ") and states[current] == "log":
            lines[current].append(line[1:])
    return Listing(wandb, tuple((s, tuple(ls)) for s, ls in zip(states, lines, strict=True)))


@dataclass(frozen=True)
class Log:
    job: str  # the job id, as reported
    path: str  # on the host (a leading `~` is its home)


class Sync(Action):
    """Upload W&B offline runs (the original tool's `sync`): every `wandb: wandb sync PATH` line
    in the error logs of the jobs named is read, and `wandb sync` runs on the host (after its
    `init`) with each run directory as a literal word. Job ids of this ledger use the logs it
    recorded; other ids (the original's) use `<save_path>/slurm.<id>.err`. A job whose log is
    missing or names no run is reported; `wandb` not found on the host fails the task."""

    kind = "sync"

    jobs: tuple[str, ...] = ()
    """Job ids: ids in this project's ledger (`123`, an array `123` or one element `123_4`, a tmux
    session or one job `NAME.0`, `HOST:ID` to name the host), or Slurm ids of jobs submitted
    otherwise (their error log is `<save_path>/slurm.<id>.err`)."""
    job_array: tuple[int, int] | None = None
    """`[first, last]`: every job id from first to last, both included, as in `jobs`."""
    task: str | None = Field(default=None, min_length=1)
    """Every job the ledger has for the task of this name on the host."""

    @field_validator("jobs", mode="before", json_schema_input_type=list[str | int] | str | int)
    @classmethod
    def _ids(cls, value: Any) -> Any:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise ValueError(f"a job id is a number or a name, not {item!r}")
        return [str(item).strip() for item in items]

    @field_validator("jobs")
    @classmethod
    def _known_form(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not JOB.fullmatch(item):
                raise ValueError(f"'{item}' is not a job id (e.g. 123, 123_4, NAME.0, HOST:123)")
        return value

    @model_validator(mode="after")
    def _something(self) -> Sync:
        if self.job_array is not None:
            first, last = self.job_array
            if first < 0 or last < first:
                raise ValueError(
                    f"job_array [{first}, {last}]: expected [first, last] with 0 <= first <= last"
                )
            if last - first + 1 > MAX_RANGE:
                raise ValueError(f"job_array [{first}, {last}] holds more than {MAX_RANGE} ids")
        if not (self.jobs or self.job_array or self.task):
            raise ValueError("nothing to sync: give 'jobs', 'job_array' or 'task'")
        return self

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        for item in self.jobs:
            named = JOB.fullmatch(item)
            alias = named.group("host") if named else None
            if alias and alias not in task.hosts:
                raise InputError(
                    f"sync: job {item} is on {alias}, which is not one of the task's "
                    f"hosts ({', '.join(task.hosts)})",
                    task.position,
                )

    def ids(self) -> list[str]:
        """The ids of `jobs` then of `job_array`, in order."""
        ids = list(self.jobs)
        if self.job_array is not None:
            ids += [str(i) for i in range(self.job_array[0], self.job_array[1] + 1)]
        return ids

    def logs(self, ctx: TaskContext, host: Host, strict: bool = True) -> tuple[list[Log], list[str]]:
        """The logs to read on this host, each once, and notes on what names none. `strict`: a
        task name the ledger does not know is an error (in a dry run only a note)."""
        ledger = ctx.ledger
        records = ledger.records()
        here = [r for r in records if r.host == host.alias]
        logs: list[Log] = []
        notes: list[str] = []

        def add(job: str, path: str) -> None:
            if not path:
                notes.append(f"{job}: the ledger has no log file for it")
            elif all(log.path != path for log in logs):
                logs.append(Log(job, path))

        for item in self.ids():
            alias, _, job_id = item.rpartition(":")
            if alias and alias != host.alias:
                continue  # a job of another host of this task
            found = [r for r in here if _names(r, job_id)]
            for record in found:
                add(record.job_id, record.log_err or record.log_out)  # tmux: one log for both
            if not found:
                # the original tool's `sbatch --error=<save_path>/slurm.%j.err`
                add(job_id, JobPaths.original(host.spec.save_path, job_id).err)
        if self.task:
            mine = [r for r in here if r.task == self.task]
            if not mine and strict and self.task not in {r.task for r in records}:
                from compute_platform.input.yamlfile import did_you_mean

                raise TaskError(
                    host=host.alias,
                    message=f"sync: no job of task '{self.task}' in {ledger.jobs_file}"
                    + did_you_mean(self.task, {r.task for r in records}),
                )
            if not mine:
                notes.append(f"task {self.task}: no job of it on this host in {ledger.jobs_file}")
            for record in mine:
                add(record.job_id, record.log_err or record.log_out)
        return logs, notes

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        logs, _ = self.logs(ctx, host, strict=False)
        if not logs:
            return []
        listed = "".join(f"\n#   {log.path}" for log in logs)
        return [
            host.script(read_script()) + f"\n# with these logs on stdin:{listed}",
            host.script("wandb sync RUN_DIR...  # each run directory those lines name, quoted"),
        ]

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        logs, notes = self.logs(ctx, host)
        for note in notes:
            ctx.info(note)
        if not logs:
            return Outcome(False, "no job to sync on this host")
        read = host.run(read_script(), stdin=log_list([log.path for log in logs]), timeout=ctx.timeout)
        if not read.ok:
            raise CommandFailed(host.alias, read, "sync: reading the jobs' logs failed")
        listing = parse_listing(read.stdout, len(logs))
        if not listing.wandb:
            raise TaskError(
                host=host.alias,
                message="sync: `wandb` was not found on the host (PATH after its init): install "
                "it there (a `pip` task with wandb) or make it reachable with the host's `init` or `env` "
                "in hosts.yaml (e.g. activating the environment that has it)",
            )
        runs: list[str] = []
        empty = missing = 0
        for log, (state, lines) in zip(logs, listing.logs, strict=True):
            if state != "log":
                missing += 1
                ctx.info(f"{log.job}: {'no log' if state == 'missing' else 'cannot read'} {log.path}")
                continue
            found = run_dirs(lines)
            if not found:
                empty += 1
                ctx.info(f"{log.job}: no `wandb sync` line in {log.path}")
            else:
                ctx.info(f"{log.job}: {_count(len(found), 'run')}: {shell.join(found)}")
            runs += [r for r in found if r not in runs]
        left = [
            text
            for n, text in ((empty, f"{empty} naming no run"), (missing, f"{missing} without a log"))
            if n
        ]
        rest = f" ({', '.join(left)})" if left else ""
        if not runs:
            return Outcome(False, f"nothing to sync from {_count(len(logs), 'job')}{rest}")
        # the paths as literal words: whatever a log line holds reaches wandb as text
        for start in range(0, len(runs), SYNC_CHUNK):
            chunk = runs[start : start + SYNC_CHUNK]
            result = host.run(
                shell.join(["wandb", "sync", *chunk]), timeout=ctx.timeout, on_line=ctx.output(host)
            )
            if not result.ok:
                what = "timed out" if result.timed_out else f"failed (exit code {result.exit_code})"
                raise CommandFailed(host.alias, result, f"wandb sync {what}")
        return Outcome(True, f"synced {_count(len(runs), 'run')} from {_count(len(logs), 'job')}{rest}")


def _names(record: JobRecord, job_id: str) -> bool:
    """Whether `job_id` names this row: itself, its array (`123` for `123_4`) or its tmux session."""
    return record.job_id == job_id or record.job_id.startswith((f"{job_id}_", f"{job_id}."))


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"
