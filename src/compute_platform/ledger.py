"""The only code that knows the layout of archive/ and job.csv.

archive/
  job.csv              one row per job (per array element), appended under a lock, never rewritten
  events.csv           later events about those jobs (cancelled, resubmitted), appended likewise
  <host>/<job_id>.<ext> the exact script submitted, written under a temporary name then renamed
  .lock                the file lock every writer takes
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compute_platform.errors import HostError, LedgerError, TaskError

LEDGER_VERSION = "2"  # 2: the `wandb` column
# Room kept free in the archive's file system beyond what a submission needs: a job is submitted only
# if its row can surely be written (a full disk after sbatch would leave it unrecorded).
SPARE_BYTES = 1 << 20
ROW_BYTES = 4096  # generous: a row is ~1 KiB plus its command lines
JOBS_FILE = "job.csv"
EVENTS_FILE = "events.csv"
# events.csv entries of a submission whose answer was lost, and of its resolution
UNCONFIRMED = "unconfirmed"
CONFIRMED = "confirmed"
NOT_SUBMITTED = "not-submitted"


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

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_row(cls, row: dict[str, str]) -> JobRecord:
        known = {name: (row.get(name) or "") for name in cls.columns()}
        return cls(**known)


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


def renewed(old: JobRecord, job_id: str, paths: JobPaths, script: str, run_id: str) -> JobRecord:
    """The row of a resubmitted job: the same point and command, a new id and files, pointing back."""
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
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def jobs_file(self) -> Path:
        return self.root / JOBS_FILE

    @property
    def events_file(self) -> Path:
        return self.root / EVENTS_FILE

    def ensure_writable(self, host: str | None = None) -> None:
        """Refuse early (before submitting anything) when the archive cannot be written: a probe
        file with some bytes in it (an empty file fits on a full disk), then the free room."""
        try:
            target = self.root / safe_name(host) if host else self.root
            target.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target, prefix=".probe-") as probe:
                probe.write(b"\0" * ROW_BYTES)
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as e:
            raise LedgerError(
                f"cannot write the archive {self.root}: {e.strerror or e}. Nothing was submitted: "
                "jobs that cannot be recorded are never started (free some space, or use --archive DIR)."
            ) from e
        self.reserve(0)

    def reserve(self, nbytes: int) -> None:
        """Refuse a submission whose records might not fit: less than `nbytes` + SPARE_BYTES free."""
        try:
            info = os.statvfs(self.root)
        except OSError as e:
            raise LedgerError(
                f"cannot read the free space of the archive {self.root}: {e.strerror or e}"
            ) from e
        free = info.f_bavail * info.f_frsize
        if free < nbytes + SPARE_BYTES:
            raise LedgerError(
                f"the archive {self.root} has {free // 1024} KiB free: not enough to record what would be "
                f"submitted next (needs {(nbytes + SPARE_BYTES) // 1024} KiB), so it is not submitted. "
                "Free some space, or use --archive DIR, then run again with --skip-submitted."
            )

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def stage_script(self, host: str, text: str, suffix: str) -> Path:
        """Write a script under a temporary name in archive/<host>/ (renamed by `commit_script`)."""
        folder = self.root / safe_name(host)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=folder, prefix=".staged-", suffix=f".{suffix}")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise LedgerError(f"cannot write a script in {folder}: {e.strerror or e}") from e
        os.chmod(name, 0o666 & ~_umask())
        return Path(name)

    def commit_script(self, staged: Path, job_id: str) -> Path:
        """Give a staged script its final name, `<job_id>.<ext>`, once the job id is known."""
        final = staged.with_name(f"{safe_name(job_id)}{staged.suffix}")
        os.replace(staged, final)
        return final

    def submit(
        self,
        host: str,
        script: Script,
        submit: Callable[[], str],
        records: Callable[[str, str], Sequence[JobRecord]],
        lost: Callable[[str], dict[str, Any]] | None = None,
    ) -> str:
        """The one submission transaction, for a run, a resumed run and a resubmission, for Slurm and
        tmux alike: stage the script, reserve the room its rows need, `submit()` (which returns the
        job id, or the tmux session), give the script its final name, append `records(id, script)`.
        Nothing is submitted that cannot be recorded; a refused submission leaves no trace; when the
        connection died while the scheduler may have taken the job (HostError), the script stays and
        an `unconfirmed` event with `lost(script)`'s details lets a resumed run look for it."""
        staged = self.stage_script(host, script.text, script.suffix)
        try:
            self.reserve(ROW_BYTES * script.rows)
            job_id = submit()
        except HostError as e:
            if lost is None:
                self.discard(staged)
                raise
            self.append_events([Event(now(), host, "", UNCONFIRMED, json.dumps(lost(self.relative(staged))))])
            raise TaskError(
                host=e.host,
                message=f"{e.reason}; whether the scheduler got the job under way is unknown: a run with "
                "--skip-submitted looks for it in the queue first, records it if there, else submits it",
            ) from e
        except BaseException:
            self.discard(staged)
            raise
        archived = self.relative(self.commit_script(staged, job_id))
        try:
            self.append(records(job_id, archived))
        except LedgerError as e:
            raise LedgerError(f"job {job_id} was submitted on {host} but not recorded: {e.message}") from e
        return job_id

    def script_text(self, record: JobRecord) -> str:
        """The archived script of a row, exactly as it was submitted."""
        path = self.root / record.script
        try:
            return path.read_text(encoding="utf-8")
        except OSError as e:
            raise LedgerError(
                f"cannot read the archived script of job {record.job_id}: {path}: {e.strerror or e}"
            ) from e

    def discard(self, staged: Path) -> None:
        with suppress(FileNotFoundError):
            staged.unlink()

    def relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def append(self, records: Sequence[JobRecord]) -> None:
        """Append rows atomically under the lock: one write, fsynced; a header for a new file."""
        if records:
            self._append(self.jobs_file, JobRecord.columns(), [asdict(r) for r in records])

    def append_events(self, events: Sequence[Event]) -> None:
        if events:
            self._append(self.events_file, Event.columns(), [asdict(e) for e in events])

    def append_new(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        """Append the records whose (host, job_id) is not in job.csv yet and return them; the check
        and the write happen under one lock, so two imports at once add each job once."""
        try:
            with self.locked():
                seen = self.job_keys()
                new = []
                for record in records:
                    if (record.host, record.job_id) not in seen:
                        seen.add((record.host, record.job_id))
                        new.append(record)
                if new:
                    self._write(self.jobs_file, JobRecord.columns(), [asdict(r) for r in new])
        except OSError as e:
            raise LedgerError(f"cannot append to {self.jobs_file}: {e.strerror or e}") from e
        return new

    def _append(self, path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
        try:
            with self.locked():
                self._write(path, columns, rows)
        except OSError as e:
            raise LedgerError(f"cannot append to {path}: {e.strerror or e}") from e

    def _write(self, path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
        """One write, fsynced (a header first for a new file); the caller holds the lock. A file keeps
        the columns of its header (one started by an older version has fewer: its rows stay as long
        as its header, for every csv reader). A write that fails is cut off again, so that no torn
        row is left for the next append to be glued onto."""
        header = _header(path)
        buffer = io.StringIO()
        fields = header if header and columns[: len(header)] == header else columns
        if len(fields) < len(columns) and "version" in fields:  # the rows are of that file's version
            rows = [{**row, "version": "1"} for row in rows]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        if not header:
            writer.writeheader()
        writer.writerows(rows)
        data = buffer.getvalue().encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to {path}")
                os.fsync(fd)
            except OSError:
                with suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def records(self) -> list[JobRecord]:
        return [JobRecord.from_row(row) for row in _read(self.jobs_file)]

    def job_keys(self) -> set[tuple[str, str]]:
        """(host, job_id) of every row, without building the records (cheap enough for a hint)."""
        return {(row.get("host") or "", row.get("job_id") or "") for row in _read(self.jobs_file)}

    def unconfirmed(self, playbook: str, task: str, host: str) -> list[tuple[Event, dict[str, Any]]]:
        """The submissions of this playbook's task on this host whose outcome is unknown (the
        connection died while sbatch ran) and not yet resolved, each with its details."""
        events = self.events()
        resolved = {_detail(e).get("token") for e in events if e.event in (CONFIRMED, NOT_SUBMITTED)}
        found = []
        for event in events:
            info = _detail(event)
            if (
                event.event == UNCONFIRMED
                and event.host == host
                and (info.get("playbook"), info.get("task")) == (playbook, task)
                and info.get("token") not in resolved
            ):
                found.append((event, info))
        return found

    def submitted_points(self, playbook: str, task: str, host: str | None) -> set[tuple[str, str]]:
        """(job_index, command) of every job this playbook's task submitted on this host (on any
        host: None), whatever became of it: the sweep points a resumed run (`--skip-submitted`)
        leaves out."""
        return {
            (r.job_index, r.command)
            for r in self.records()
            if r.playbook == playbook and r.task == task and host in (None, r.host)
        }

    def events(self) -> list[Event]:
        return [Event(**{c: row.get(c) or "" for c in Event.columns()}) for row in _read(self.events_file)]


def _detail(event: Event) -> dict[str, Any]:
    try:
        info = json.loads(event.detail)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _read(path: Path) -> list[dict[str, str]]:
    """Rows by column name; a column a file started by an older version lacks reads as empty."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _header(path: Path) -> list[str]:
    """The columns of an existing file's header ([] for a missing or empty file)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        return []


def safe_name(text: str | None) -> str:
    """A file-name-safe version of a host alias or job id (no separators, no leading dots)."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+@" else "_" for c in (text or ""))
    return cleaned.lstrip(".") or "_"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe later.
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


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
