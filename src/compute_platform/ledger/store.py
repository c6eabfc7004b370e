"""The only code that knows the layout of archive/ and job.csv.

archive/
  job.csv              one row per job (per array element), appended under a lock, never rewritten
  events.csv           later events about those jobs (cancelled, resubmitted), appended likewise
  states.csv           the final state of each ended job, as its host first reported it: never asked again
  <host>/<job_id>.<ext> the exact script submitted, written under a temporary name then renamed
  .lock                the file lock every writer takes
  .resubmit.lock       held by whoever resubmits jobs, from reading what was resubmitted to recording it
  .index.json          derived from the three files (ledger/index.py): the open rows, the latest run's,
                       the counts of the ended ones; rebuilt when missing or outdated, never the source
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

from compute_platform.errors import HostError, LedgerError, TaskError
from compute_platform.ledger.index import Index, TaskCount, refresh, rows_at
from compute_platform.ledger.records import (
    CONFIRMED,
    NOT_SUBMITTED,
    UNCONFIRMED,
    Ended,
    Event,
    JobRecord,
    Script,
    now,
    safe_name,
)

# Room kept free in the archive's file system beyond what a submission needs: a job is submitted only
# if its row can surely be written (a full disk after sbatch would leave it unrecorded).
SPARE_BYTES = 1 << 20
ROW_BYTES = 4096  # generous: a row is ~1 KiB plus its command lines
JOBS_FILE = "job.csv"
EVENTS_FILE = "events.csv"
STATES_FILE = "states.csv"  # the final state of ended jobs, appended as hosts report them
INDEX_FILE = ".index.json"  # hidden: no host's folder (safe_name) can take its name
WATCH_FILE = ".watch.json"  # how far `compute watch` read states.csv: derived, may be deleted
WATCH_LOCK = ".watch.lock"  # held by the one `compute watch` of the archive
RESUBMIT_LOCK = ".resubmit.lock"  # held while jobs are resubmitted (`compute resubmit`, `compute watch`)


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # what was read of each file, with the (size, mtime, inode) it was read at: a command asks
        # several times (the records, the replaced ones; --watch every refresh) and the files only grow
        self._read: dict[Path, tuple[tuple[int, int, int], Any]] = {}
        self._index: Index | None = None
        self._index_at: tuple[tuple[int, int, int] | None, ...] = ()  # the files' stats it was folded at
        self._offsets: dict[tuple[str, str], int] = {}  # where the rows handed out are, for `ended`

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
            # vars, not asdict: asdict copies every field deeply (8 s for 100,000 rows)
            self._append(self.jobs_file, JobRecord.columns(), [vars(r) for r in records])

    def append_events(self, events: Sequence[Event]) -> None:
        if events:
            self._append(self.events_file, Event.columns(), [asdict(e) for e in events])

    @property
    def states_file(self) -> Path:
        return self.root / STATES_FILE

    def append_ended(self, ended: Sequence[Ended]) -> None:
        if ended:
            self._append(self.states_file, Ended.columns(), [asdict(e) for e in ended])

    def ended(self, records: Sequence[JobRecord] | None = None) -> dict[tuple[str, str], Ended]:
        """(host, job id) -> the final state recorded for it (a torn last row is left out); of these
        records only, when given. Rows this ledger handed out (`records_where`, `shown_by_default`)
        are looked up in the blocks of states.csv that end them; others make it read the whole file."""
        if records is None:
            found: dict[tuple[str, str], Ended] = self._cached(self.states_file, _read_ended, {})
            return found
        folded = self.index()
        keys = {
            key
            for key in ((r.host, r.job_id) for r in records)
            if key not in folded.open and key not in folded.cancelled  # neither has an end
        }
        offsets = [self._offsets.get(key) for key in keys]
        if not keys:
            return {}
        if None in offsets:
            every = self.ended()
            return {key: every[key] for key in keys if key in every}
        return folded.ends_of(self.states_file, keys, [o for o in offsets if o is not None])

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
                    self._write(self.jobs_file, JobRecord.columns(), [vars(r) for r in new])
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
        """Every row of job.csv."""
        records: list[JobRecord] = self._cached(self.jobs_file, _read_records, [])
        return list(records)

    def _cached(self, path: Path, read: Callable[[Path], Any], missing: Any) -> Any:
        """`read(path)`, again only once the file changed."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return missing
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if path not in self._read or self._read[path][0] != key:
            self._read[path] = (key, read(path))
        return self._read[path][1]

    def job_keys(self) -> set[tuple[str, str]]:
        """(host, job_id) of every row, without building the records (cheap enough for a hint)."""
        return {(row.get("host") or "", row.get("job_id") or "") for row in _read(self.jobs_file)}

    def in_doubt(self) -> list[tuple[Event, dict[str, Any]]]:
        """The submissions whose outcome is unknown (the connection died while sbatch ran) and not
        yet resolved, each with its details."""
        events = self.run_events()
        resolved = {e.info().get("token") for e in events if e.event in (CONFIRMED, NOT_SUBMITTED)}
        return [
            (event, info)
            for event in events
            if event.event == UNCONFIRMED and (info := event.info()).get("token") not in resolved
        ]

    def unconfirmed(self, playbook: str, task: str, host: str) -> list[tuple[Event, dict[str, Any]]]:
        """The submissions of this playbook's task on this host in doubt (`in_doubt`)."""
        return [
            (event, info)
            for event, info in self.in_doubt()
            if event.host == host and (info.get("playbook"), info.get("task")) == (playbook, task)
        ]

    def resubmitted_in_doubt(self) -> set[tuple[str, str]]:
        """(host, job id) of the jobs whose resubmission is in doubt: `compute watch` looks for it in
        the queue; meanwhile nobody resubmits them."""
        found: set[tuple[str, str]] = set()
        for event, info in self.in_doubt():
            named = info.get("resubmits")
            if isinstance(named, list):
                found.update((event.host, str(job_id)) for job_id in named)
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

    # -- compute watch: the ends it has looked at, and the one watch per archive ------------------

    def ended_since(self, offset: int) -> tuple[list[Ended], int]:
        """The ends states.csv got from byte `offset` on (whole lines only), and where they stop. An
        offset beyond the file (it was deleted, it is learnt again) starts from its beginning."""
        try:
            with open(self.states_file, "rb") as f:
                header = f.readline()
                size = os.fstat(f.fileno()).st_size
                start = max(offset, len(header)) if offset <= size else len(header)
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return [], 0
        whole = data[: data.rfind(b"\n") + 1]
        rows = csv.reader(io.StringIO((header + whole).decode("utf-8", "replace")))
        columns = next(rows, [])
        where = [columns.index(c) if c in columns else -1 for c in Ended.columns()]
        found = [
            Ended(*(row[i] if i >= 0 else "" for i in where)) for row in rows if len(row) == len(columns)
        ]
        return [e for e in found if e.host and e.job_id and e.state], start + len(whole)

    def watch_cursor(self) -> int | None:
        """Where the last `compute watch` stopped reading states.csv (None: no watch ran here; 0:
        states.csv is not the file it read, which was deleted or rewritten since)."""
        try:
            data = json.loads((self.root / WATCH_FILE).read_text(encoding="utf-8"))
            offset, inode = int(data["states_offset"]), int(data["inode"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        stat = _stat(self.states_file)
        return offset if stat and stat[2] == inode and stat[0] >= offset else 0

    def save_watch_cursor(self, offset: int) -> None:
        stat = _stat(self.states_file)
        target = self.root / WATCH_FILE
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".watch-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"states_offset": offset, "inode": stat[2] if stat else 0}, f)
        os.replace(name, target)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """The archive's one `compute watch`: a second one would retry the same jobs twice."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / WATCH_LOCK, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LedgerError(
                    f"another compute watch follows {self.root} (it holds {self.root / WATCH_LOCK}): "
                    "one per archive, or jobs would be retried twice"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def resubmitting(self, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """One resubmitter of the archive at a time (`compute resubmit`, `compute watch`, `compute
        code --clean`, each process): whoever reads `replacements()` under it and submits before
        leaving it never resubmits a job another one has just resubmitted. `waiting` is told when
        another one holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / RESUBMIT_LOCK, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting(
                        f"waiting for {self.root / RESUBMIT_LOCK}: another compute resubmit, watch or "
                        "code --clean of this archive is resubmitting jobs or removing code"
                    )
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- through the index: what `compute jobs` reads instead of every row ------------------------

    def index(self) -> Index:
        """The index (ledger/index.py) up to the files' current end: refolded only once one changed."""
        files = (self.jobs_file, self.states_file, self.events_file)
        stats = self.stamp()
        if self._index is None or stats != self._index_at:
            where = self.root / INDEX_FILE
            self._index = refresh(self._index, where, *files, mode=0o666 & ~_umask())
            self._index_at = stats
        return self._index

    def stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """The three files' (size, mtime, inode): any new row, end or event changes it."""
        return tuple(_stat(path) for path in (self.jobs_file, self.states_file, self.events_file))

    def size(self) -> int:
        """How many rows job.csv has (whole ones: a row being written is not counted yet)."""
        return self.index().rows

    def task_counts(self) -> list[TaskCount]:
        """Per task and host, in ledger order: its rows, and how many are cancelled, ended, open."""
        return self.index().counts()

    def shown_by_default(self) -> list[JobRecord]:
        """The rows still open (not ended, not cancelled) and the latest run's, in ledger order."""
        folded = self.index()
        offsets = folded.open_offsets() + folded.latest
        return self._handed(rows_at(self.jobs_file, folded.jobs.columns, offsets))

    def open_records(self) -> list[JobRecord]:
        """The rows neither ended nor cancelled, in ledger order."""
        folded = self.index()
        return self._handed(rows_at(self.jobs_file, folded.jobs.columns, folded.open_offsets()))

    def records_where(
        self,
        host: str | None = None,
        task: str | None = None,
        run: str | None = None,
        since: str | None = None,
        last: int | None = None,
        mentioning: Sequence[str] = (),
    ) -> list[JobRecord]:
        """The rows of this host, task and run, submitted since then (an ISO time), whose job id
        holds one of `mentioning`; the `last` latest of them; in ledger order. Only the parts of
        job.csv that may hold them are read (all of it without any of these)."""
        found = self.index().rows_where(self.jobs_file, host, task, run, since, last, mentioning)
        return self._handed(found)

    def cancelled(self, records: Sequence[JobRecord]) -> set[tuple[str, str]]:
        """(host, job id) of these records that were cancelled and have no recorded end."""
        held = self.index().cancelled
        return {(r.host, r.job_id) for r in records if (r.host, r.job_id) in held}

    def run_events(self) -> list[Event]:
        """The events of events.csv that are not about one job's end (cancelled, resubmitted):
        submissions left unconfirmed and their outcome, feeds. Few, whatever the ledger's length."""
        return list(self.index().notes)

    def replacements(self) -> dict[tuple[str, str], str]:
        """(host, job id) -> the job id that resubmitted it."""
        return dict(self.index().replaced)

    def _handed(self, found: list[tuple[int, JobRecord]]) -> list[JobRecord]:
        for offset, record in found:
            self._offsets.setdefault((record.host, record.job_id), offset)
        return [record for _, record in found]


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _read(path: Path) -> list[dict[str, str]]:
    """Rows by column name; a column a file started by an older version lacks reads as empty."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _read_records(path: Path) -> list[JobRecord]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            read = JobRecord.reader(next(rows, []))
            return [read(row) for row in rows if row]
    except FileNotFoundError:
        return []


def _read_ended(path: Path) -> dict[tuple[str, str], Ended]:
    found: dict[tuple[str, str], Ended] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            where = [header.index(c) if c in header else -1 for c in Ended.columns()]
            for row in rows:
                if len(row) != len(header):  # torn by a failed append
                    continue
                item = Ended(*(row[i] if i >= 0 else "" for i in where))
                if item.host and item.job_id and item.state:
                    found.setdefault((item.host, item.job_id), item)
    except FileNotFoundError:
        pass
    return found


def _header(path: Path) -> list[str]:
    """The columns of an existing file's header ([] for a missing or empty file)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        return []


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe later.
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK
