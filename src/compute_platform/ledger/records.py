"""What the ledger records: a job's row (JobRecord), every file name of a job (JobPaths), later
events, the archived script, and the values a row carries (times, run ids, the code's git state)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LEDGER_VERSION = "3"  # 2: the `wandb` column; 3: `attempt`, `retry_reason` and `code`
# events.csv entries of a submission whose answer was lost, and of its resolution
UNCONFIRMED = "unconfirmed"
CONFIRMED = "confirmed"
NOT_SUBMITTED = "not-submitted"
CANCELLED_EVENT = "cancelled"  # `compute cancel` stopped the job
RESUBMITTED_EVENT = "resubmitted"  # `compute resubmit` submitted it again (the detail: the new id)
NOTIFIED_EVENT = "notified"  # compute watch told of a sweep (detail: its run, task and what it told)


@dataclass(frozen=True)
class JobRecord:
    """One row of job.csv. Every field is text, so that the file stays readable by any tool."""

    submitted_at: str
    playbook: str
    task: str
    host: str
    scheduler: str  # slurm | tmux
    job_id: str
    job_name: str
    config: str = ""
    command: str = ""  # the full command lines as they run, one per seed, joined by newlines
    args: str = ""  # the args entry as words, space-joined
    sweep: str = ""  # JSON of the sweep point
    seeds: str = ""  # comma-separated
    script: str = ""  # path of the archived script, relative to the archive directory
    log_out: str = ""  # on the host
    log_err: str = ""  # on the host
    status_file: str = ""  # on the host: where the job writes its exit code when it ends
    git_commit: str = ""
    git_dirty: str = ""
    replaces: str = ""  # job_id of the row this one resubmits
    run_id: str = ""
    job_index: str = ""  # index of the point in the task's sweep
    version: str = LEDGER_VERSION
    hosts_file: str = ""  # absolute path of the hosts.yaml the run used: how `compute jobs` reconnects
    dependency: str = ""  # the sbatch --dependency given on submission (not part of the script)
    wandb: str = ""  # the host's W&B mode when the job was submitted (online, offline, disabled)
    attempt: str = ""  # the attempt this submission starts with ("" = 1); requeues in place add to it
    retry_reason: str = ""  # why `compute watch` submitted it again: the class of the last attempt's end
    code: str = ""  # the hash of the code snapshot the job runs (archive/code/<hash>.*), "" without one

    @property
    def point(self) -> dict[str, Any]:
        """The sweep point (`sweep`'s JSON) as a dict: {} without one, or for a row whose JSON was mangled."""
        return dict(_point(self.sweep))

    @classmethod
    def columns(cls) -> list[str]:
        return list(_JOB_COLUMNS)

    @classmethod
    def from_row(cls, row: dict[str, str]) -> JobRecord:
        return cls(*(row.get(name) or "" for name in _JOB_COLUMNS))

    @classmethod
    def reader(cls, header: list[str]) -> Callable[[list[str]], JobRecord]:
        """Rows of a file with this header -> records, a column the file lacks read as empty: the
        positions worked out once per file, not once per row (a ledger has 10^5-10^6 rows)."""
        where = [header.index(name) if name in header else -1 for name in _JOB_COLUMNS]
        width = len(header)

        def read(row: list[str]) -> JobRecord:
            if len(row) < width:  # a row shorter than its header (written by hand): pad it
                row = row + [""] * (width - len(row))
            return cls(*(row[i] if i >= 0 else "" for i in where))

        return read


_JOB_COLUMNS = tuple(f.name for f in fields(JobRecord))


@functools.lru_cache(maxsize=4096)
def _point(sweep: str) -> tuple[tuple[str, Any], ...]:
    """Parsed once per distinct text: the views ask a sweep's rows for their points many times over."""
    try:
        found = json.loads(sweep) if sweep else {}
    except ValueError:
        return ()
    return tuple(found.items()) if isinstance(found, dict) else ()


@dataclass(frozen=True)
class JobPaths:
    """Where one job's files are on its host: the one owner of those names. The renderers write the
    jobs' logs and exit-status files there, the rows of job.csv record them, a resubmission names
    them anew."""

    out: str
    err: str  # "" where stderr goes to `out` (tmux jobs)
    status: str  # "" where the job writes none (the original tool's jobs)

    @classmethod
    def slurm(cls, save_path: str, job_name: str, job_id: str) -> JobPaths:
        """`<save_path>/<job_name>.<id>.out|err|status`; `job_id` may be a Slurm pattern (%j, %A_%a)."""
        base = f"{save_path.rstrip('/') or '/'}/{job_name}.{job_id}"
        return cls(f"{base}.out", f"{base}.err", f"{base}.status")

    @classmethod
    def tmux(cls, session_folder: str, index: str) -> JobPaths:
        """`<save_path>/<session>/<index>.log|status` (the launcher keeps its other files there too)."""
        base = f"{session_folder}/{index}"
        return cls(f"{base}.log", "", f"{base}.status")

    @staticmethod
    def metrics(status: str, seed: int | None = None) -> str:
        """Where a job writes its metrics (COMPUTE_METRICS), beside its status file: one file per seed
        (`.metrics.<its position>.jsonl`: a seed is any word, a position is a safe name)."""
        base = status.removesuffix(".status") + ".metrics"
        return f"{base}.{seed}.jsonl" if seed is not None else f"{base}.jsonl"

    @classmethod
    def original(cls, save_path: str, job_id: str) -> JobPaths:
        """Where the original tool had Slurm write its jobs' output: `<save_path>/slurm.<id>.out|err`."""
        base = f"{save_path.rstrip('/') or '/'}/slurm.{job_id}"
        return cls(f"{base}.out", f"{base}.err", "")


@dataclass(frozen=True)
class Event:
    at: str
    host: str
    job_id: str
    event: str  # cancelled | resubmitted | unconfirmed | confirmed | not-submitted
    detail: str = ""

    def info(self) -> dict[str, Any]:
        """The detail as the JSON object it holds ({} when it holds none: an id, a hand edit)."""
        try:
            found = json.loads(self.detail)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Ended:
    """A job's final state as its host first reported it (archive/states.csv): an ended job is never
    asked about again. Derived knowledge, not a record of the run: job.csv stays the source of truth."""

    at: str
    host: str
    job_id: str
    state: str
    exit_code: str  # "" when unknown
    reason: str = ""
    attempt: str = ""  # the attempt it ended in, as the job counted it ("" when it did not say)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Script:
    """What a submission archives: the script's text, its suffix (`slurm`, `tmux`) and how many
    rows it will add to job.csv (their room is reserved before anything is submitted)."""

    text: str
    suffix: str
    rows: int


def renewed(
    old: JobRecord,
    job_id: str,
    paths: JobPaths,
    script: str,
    run_id: str,
    attempt: str = "",
    reason: str = "",
) -> JobRecord:
    """The row of a resubmitted job: the same point and command, a new id and files, pointing back;
    a retry also says its attempt and why."""
    return replace(
        old,
        submitted_at=now(),
        job_id=job_id,
        script=script,
        log_out=paths.out,
        log_err=paths.err,
        status_file=paths.status,
        replaces=old.job_id,
        run_id=run_id,
        dependency="",
        attempt=attempt,
        retry_reason=reason,
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def safe_name(text: str | None) -> str:
    """A file-name-safe version of a host alias or job id (no separators, no leading dots)."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+@" else "_" for c in (text or ""))
    return cleaned.lstrip(".") or "_"


def git_state(path: Path) -> tuple[str, str]:
    """(commit, 'true'/'false' dirty) of the git repository holding `path`; ('', '') outside one."""
    folder = path if path.is_dir() else path.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "", ""
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip(), "true" if status.stdout.strip() else "false"
    except (OSError, subprocess.TimeoutExpired):
        return "", ""


def write_whole(path: Path, data: bytes) -> None:
    """A whole file, fsynced under a temporary name in its folder, then renamed over the old one: a reader
    sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = str(path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}"))
    # 0o666 and the user's umask, as any file they write (mkstemp's 0600 would hide a shared archive)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
