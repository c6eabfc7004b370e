"""A derived index of the ledger's three files, so that `compute jobs` reads the rows it shows and the
rows still open, not every row of job.csv (10^5-10^6 after a few months of a group's sweeps).

For each file (job.csv, states.csv, events.csv) it keeps a checkpoint: how many bytes were folded in,
and what tells that the file was replaced or rewritten since (device and inode, a size below the
checkpoint, hashes of the header line and of the bytes just before the checkpoint). From those bytes:

  open       the rows neither ended (states.csv) nor cancelled (events.csv): where they are in job.csv
  cancelled  the rows cancelled whose end states.csv does not hold (not asked again unless shown)
  latest     the run of the row submitted last, and where its rows are
  tallies    per (task, host), in the order the ledger first has them: rows, cancelled, ended per state
  replaced   (host, job id) -> the job id that resubmitted it
  blocks     per BLOCK rows of job.csv: where they start, their latest submitted_at, and their tasks,
             hosts and runs while they are few: the rows of one task, run or day are read alone
  ends       per BLOCK lines of states.csv: where they start, the first and last row they end
  notes      the events that are not about one job's end (cancelled, resubmitted): submissions left
             unconfirmed and their outcome, feeds; few, kept whole

Each refresh folds in only what was appended since (a last record only once it is complete). A state or
a cancellation ends the rows folded in by then with its (host, job id): states and events are read up
to where they were before job.csv is, so that every line of theirs finds its row (they are written after
it). The index is never the source of truth: any complete version is valid, and a missing, unreadable or
outdated one is rebuilt from the files.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from compute_platform.ledger.records import CANCELLED_EVENT, RESUBMITTED_EVENT, Ended, Event, JobRecord

VERSION = 1  # of what the index keeps and how: another one is rebuilt, not read
BLOCK = 1024  # rows of job.csv, lines of states.csv, per block
FEW = 16  # a block names up to this many tasks, hosts and runs; more read as "any"
CHUNK = 8 << 20  # bytes read at a time while folding
TAIL = 64  # the bytes before a checkpoint whose hash must stay the same
ROW_GUESS = 4096  # bytes read for one row at a given offset (more when it is longer)
GAP = 1 << 16  # rows closer than this are read in one read
_OFFSET_BITS = 40  # an open row is one int: its tally's number above its offset in job.csv

Key = tuple[str, str]  # (host, job id)
Records = Iterator[tuple[int, list[str]]]  # (offset in the file, fields) of each complete record


@dataclass(frozen=True)
class TaskCount:
    """The rows of one task on one host: how many, how many cancelled without a recorded end, how
    many ended per final state (states.csv). The others are open."""

    task: str
    host: str
    rows: int
    cancelled: int
    ended: dict[str, int]

    @property
    def open(self) -> int:
        return self.rows - self.cancelled - sum(self.ended.values())


@dataclass
class _Mark:
    """How much of one file was folded in, and what shows it is still that file."""

    offset: int = 0
    device: int = 0
    inode: int = 0
    head: str = ""  # hash of the header line
    tail: str = ""  # hash of the TAIL bytes before `offset`
    columns: list[str] = field(default_factory=list)

    def still(self, path: Path) -> bool:
        """Whether `path` still begins with what was folded in (it may have grown since)."""
        if self.offset == 0:
            return True
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                if (stat.st_dev, stat.st_ino) != (self.device, self.inode) or stat.st_size < self.offset:
                    return False
                return (
                    _hash(f.readline(self.offset)) == self.head
                    and _hash(_before(f, self.offset)) == self.tail
                )
        except OSError:
            return False


@dataclass
class _Tally:
    task: str
    host: str
    rows: int = 0
    cancelled: int = 0
    ended: dict[str, int] = field(default_factory=dict)


@dataclass
class _Block:
    """BLOCK rows of job.csv from `offset`; `tasks`, `hosts`, `runs` None once more than FEW."""

    offset: int
    rows: int = 0
    last_at: str = ""
    tasks: list[str] | None = field(default_factory=list)
    hosts: list[str] | None = field(default_factory=list)
    runs: list[str] | None = field(default_factory=list)

    def may_hold(self, host: str | None, task: str | None, run: str | None, since: str | None) -> bool:
        return (
            _among(host, self.hosts)
            and _among(task, self.tasks)
            and _among(run, self.runs)
            and (since is None or self.last_at >= since)
        )


@dataclass
class _Ends:
    """BLOCK lines of states.csv from `offset`, ending the rows at offsets `low` to `high` (-1: none)."""

    offset: int
    lines: int = 0
    low: int = -1
    high: int = -1

    def widen(self, row: int) -> None:
        self.low = row if self.low < 0 else min(self.low, row)
        self.high = max(self.high, row)


class Index:
    """What the index holds, folded from the files; `refresh` keeps it up to date."""

    def __init__(self) -> None:
        self.jobs, self.states, self.events = _Mark(), _Mark(), _Mark()
        self.rows = 0
        self.tallies: list[_Tally] = []
        self._tally: dict[Key, int] = {}  # (task, host) -> its number in `tallies`
        # key -> its row packed with its tally (`_pack`), a list when several rows share the key
        self.open: dict[Key, int | list[int]] = {}
        self.cancelled: dict[Key, int | list[int]] = {}
        self.latest_run: str | None = None
        self.latest_at = ""
        self.latest: list[int] = []  # offsets of the latest run's rows
        self.replaced: dict[Key, str] = {}
        self.blocks: list[_Block] = []
        self.ends: list[_Ends] = []
        self.notes: list[Event] = []
        self._names: dict[str, str] = {}  # one copy of each host, task, run and state name

    # -- folding ----------------------------------------------------------------------------------

    def still(self, jobs: Path, states: Path, events: Path) -> bool:
        return self.jobs.still(jobs) and self.states.still(states) and self.events.still(events)

    def marks(self) -> tuple[int, int, int]:
        return self.jobs.offset, self.states.offset, self.events.offset

    def fold(self, jobs: Path, states: Path, events: Path) -> None:
        """Fold in what was appended to the files. states.csv and events.csv are read up to their
        size before job.csv is read: each of their lines is about a row already written."""
        states_end, events_end = _size(states), _size(events)
        self._fold_jobs(jobs)
        self._fold_states(states, states_end)
        self._fold_events(events, events_end)

    def _fold_jobs(self, path: Path) -> None:
        # the loop of a rebuild: 10^6 rows, so names are bound locally and the common cases inline
        records = _appended(path, self.jobs)
        pick = _picker(self.jobs.columns, ("submitted_at", "task", "host", "job_id", "run_id", "replaces"))
        run_before, latest_run, latest_at = self.latest_run, self.latest_run, self.latest_at
        name, tally, opened, blocks = self._names.setdefault, self._tally.get, self.open, self.blocks
        rows = self.rows
        for offset, fields in records:
            if not fields:
                continue  # a blank line
            at, task, host, job_id, run, replaces = pick(fields)
            task, host, run = name(task, task), name(host, host), name(run, run)
            number = tally((task, host))
            if number is None:
                number = self._tally_of(task, host)
            self.tallies[number].rows += 1
            key, packed = (host, job_id), _pack(offset, number)
            if key in opened:
                _add(opened, key, packed)
            else:
                opened[key] = packed
            if replaces:
                self.replaced[(host, replaces)] = job_id
            if latest_run is None or at > latest_at:  # the first of the latest, as max() finds it
                latest_run, latest_at = run, at
            if run == run_before:
                self.latest.append(offset)
            if not blocks or blocks[-1].rows >= BLOCK:
                blocks.append(_Block(offset))
            block = blocks[-1]
            block.rows += 1
            if at > block.last_at:
                block.last_at = at
            if block.tasks is not None and task not in block.tasks:
                block.tasks = _with(block.tasks, task)
            if block.hosts is not None and host not in block.hosts:
                block.hosts = _with(block.hosts, host)
            if block.runs is not None and run not in block.runs:
                block.runs = _with(block.runs, run)
            rows += 1
        self.rows, self.latest_run, self.latest_at = rows, latest_run, latest_at
        if latest_run != run_before:  # a new latest run: its rows may be in earlier blocks too
            self.latest = [offset for offset, _ in self.rows_where(path, run=latest_run)]

    def _fold_states(self, path: Path, end: int) -> None:
        records = _appended(path, self.states, end)
        width = len(self.states.columns)
        pick = _picker(self.states.columns, ("host", "job_id", "state"))
        name, opened, cancelled, tallies, ends = (
            self._names.setdefault,
            self.open,
            self.cancelled,
            self.tallies,
            self.ends,
        )
        for offset, fields in records:
            if not ends or ends[-1].lines >= BLOCK:
                ends.append(_Ends(offset))
            block = ends[-1]
            block.lines += 1
            if len(fields) != width:  # torn by a failed append
                continue
            host, job_id, state = pick(fields)
            key, state = (host, job_id), name(state, state)
            if not (host and job_id and state) or (key not in opened and key not in cancelled):
                continue
            for packed in _pop(opened, key):
                self._end(packed, state, block)
            for packed in _pop(cancelled, key):
                tallies[_unpack(packed)[1]].cancelled -= 1
                self._end(packed, state, block)

    def _end(self, packed: int, state: str, block: _Ends) -> None:
        offset, number = _unpack(packed)
        ended = self.tallies[number].ended
        ended[state] = ended.get(state, 0) + 1
        block.widen(offset)

    def _fold_events(self, path: Path, end: int) -> None:
        records = _appended(path, self.events, end)
        width = len(self.events.columns)
        pick = _picker(self.events.columns, Event.columns())
        for _, fields in records:
            if len(fields) != width:
                continue
            event = Event(*pick(fields))
            if event.event != CANCELLED_EVENT:
                if event.event != RESUBMITTED_EVENT:
                    self.notes.append(event)
                continue
            key = (event.host, event.job_id)
            for packed in _pop(self.open, key):
                self.tallies[_unpack(packed)[1]].cancelled += 1
                _add(self.cancelled, key, packed)

    def _tally_of(self, task: str, host: str) -> int:
        number = self._tally.get((task, host))
        if number is None:
            number = self._tally[(task, host)] = len(self.tallies)
            self.tallies.append(_Tally(task, host))
        return number

    def _name(self, text: str) -> str:
        return self._names.setdefault(text, text)

    # -- what it answers --------------------------------------------------------------------------

    def counts(self) -> list[TaskCount]:
        return [TaskCount(t.task, t.host, t.rows, t.cancelled, dict(t.ended)) for t in self.tallies]

    def open_offsets(self) -> list[int]:
        return sorted(_unpack(packed)[0] for packed in _values(self.open))

    def cancelled_keys(self) -> set[Key]:
        return set(self.cancelled)

    def rows_where(
        self,
        path: Path,
        host: str | None = None,
        task: str | None = None,
        run: str | None = None,
        since: str | None = None,
        last: int | None = None,
        mentioning: Iterable[str] = (),
    ) -> list[tuple[int, JobRecord]]:
        """(offset, record) of the rows with this host, task and run, submitted since then (ISO
        time), whose job id holds one of `mentioning`'s words; the `last` latest of them. Only
        the blocks that may hold such rows are read."""
        names = list(mentioning)
        words = [name.replace('"', '""').encode() for name in names]  # as csv writes them
        read = JobRecord.reader(self.jobs.columns)
        parts: list[list[tuple[int, JobRecord]]] = []  # of each block read, the latest first
        found = 0
        ends = [b.offset for b in self.blocks[1:]] + [self.jobs.offset]
        chosen = [i for i, b in enumerate(self.blocks) if b.may_hold(host, task, run, since)]
        try:
            with open(path, "rb") as f:
                for i in reversed(chosen):  # the latest first, for `last`
                    data = _pread(f, self.blocks[i].offset, ends[i] - self.blocks[i].offset)
                    if words and not any(word in data for word in words):
                        continue
                    part = []
                    for offset, _, fields in _records(data, self.blocks[i].offset):
                        if not fields:
                            continue
                        record = read(fields)
                        if (
                            host in (None, record.host)
                            and task in (None, record.task)
                            and run in (None, record.run_id)
                            and (since is None or record.submitted_at >= since)
                            and (not names or any(name in record.job_id for name in names))
                        ):
                            part.append((offset, record))
                    parts.append(part)
                    found += len(part)
                    if last is not None and found >= last:
                        break
        except OSError:
            return []
        rows = [row for part in reversed(parts) for row in part]
        return rows if last is None else rows[max(0, len(rows) - last) :]

    def ends_of(self, path: Path, keys: set[Key], offsets: list[int]) -> dict[Key, Ended]:
        """The ends of `keys` (rows at `offsets`) recorded in states.csv: only its blocks that end
        one of those rows are read; the first line of a job wins, as in `Ledger.ended`."""
        offsets = sorted(offsets)
        pick = _picker(self.states.columns, Ended.columns())
        width = len(self.states.columns)
        found: dict[Key, Ended] = {}
        stops = [b.offset for b in self.ends[1:]] + [self.states.offset]
        try:
            with open(path, "rb") as f:
                for block, stop in zip(self.ends, stops, strict=True):
                    i = bisect.bisect_left(offsets, block.low)
                    if block.low < 0 or i == len(offsets) or offsets[i] > block.high:
                        continue
                    for _, _, fields in _records(_pread(f, block.offset, stop - block.offset), block.offset):
                        if len(fields) != width:
                            continue
                        item = Ended(*pick(fields))
                        if (item.host, item.job_id) in keys and item.state:
                            found.setdefault((item.host, item.job_id), item)
        except OSError:
            return {}
        return found

    # -- on disk ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "files": [_mark_json(m) for m in (self.jobs, self.states, self.events)],
            "rows": self.rows,
            "tallies": [[t.task, t.host, t.rows, t.cancelled, t.ended] for t in self.tallies],
            "open": [[*key, *_unpack(p)] for key, p in _items(self.open)],
            "cancelled": [[*key, *_unpack(p)] for key, p in _items(self.cancelled)],
            "latest": [self.latest_run, self.latest_at, self.latest],
            "replaced": [[*key, new] for key, new in self.replaced.items()],
            "blocks": [[b.offset, b.rows, b.last_at, b.tasks, b.hosts, b.runs] for b in self.blocks],
            "ends": [[b.offset, b.lines, b.low, b.high] for b in self.ends],
            "notes": [list(vars(e).values()) for e in self.notes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Index:
        """An index read back; raises (KeyError, TypeError, ValueError) on anything else."""
        if data["version"] != VERSION:
            raise ValueError(f"index version {data['version']}")
        index = cls()
        index.jobs, index.states, index.events = (_Mark(*m) for m in data["files"])
        index.rows = int(data["rows"])
        for task, host, rows, cancelled, ended in data["tallies"]:
            index.tallies[index._tally_of(str(task), str(host))] = _Tally(
                str(task), str(host), int(rows), int(cancelled), {str(s): int(n) for s, n in ended.items()}
            )
        for name, rows in (("open", data["open"]), ("cancelled", data["cancelled"])):
            target = getattr(index, name)
            for host, job_id, offset, number in rows:
                if not 0 <= int(number) < len(index.tallies):
                    raise ValueError("a row of no task")
                _add(target, (str(host), str(job_id)), _pack(int(offset), int(number)))
        index.latest_run, index.latest_at, latest = data["latest"]
        index.latest = [int(offset) for offset in latest]
        index.replaced = {(str(host), str(old)): str(new) for host, old, new in data["replaced"]}
        index.blocks = [_Block(*b) for b in data["blocks"]]
        index.ends = [_Ends(*b) for b in data["ends"]]
        index.notes = [Event(*(str(v) for v in e)) for e in data["notes"]]
        return index


def refresh(index: Index | None, where: Path, jobs: Path, states: Path, events: Path, mode: int) -> Index:
    """The index of these files up to their current end: `index` (else the one saved at `where`),
    rebuilt when a file was replaced or rewritten, with what was appended since folded in, saved
    again when it moved on. A read-only archive keeps an index in memory only."""
    if index is None:
        index = load(where)
    if not index.still(jobs, states, events):
        index = Index()
    before = index.marks()
    index.fold(jobs, states, events)
    if index.marks() != before:
        save(index, where, mode)
    return index


def load(where: Path) -> Index:
    """The saved index, or an empty one (missing, damaged, of another version: it is rebuilt). The
    file is the hash of its JSON on a line, then the JSON: what does not match was not written so."""
    try:
        check, _, data = where.read_bytes().partition(b"\n")
        if check.decode() != _hash(data):
            return Index()
        return Index.from_json(json.loads(data))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return Index()


def save(index: Index, where: Path, mode: int) -> None:
    """Write under a temporary name, then rename: a reader sees the old index or the new one, whole."""
    data = json.dumps(index.to_json(), separators=(",", ":")).encode()
    data = _hash(data).encode() + b"\n" + data
    with suppress(OSError):
        fd, name = tempfile.mkstemp(dir=where.parent, prefix=f"{where.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(name, mode)
            os.replace(name, where)
        except BaseException:
            with suppress(OSError):
                os.unlink(name)
            raise


def rows_at(path: Path, columns: list[str], offsets: Iterable[int]) -> list[tuple[int, JobRecord]]:
    """(offset, record) of the rows of job.csv that start at these offsets, in file order. Offsets
    close to each other are read at once (the latest run's rows are next to each other)."""
    read = JobRecord.reader(columns)
    wanted = sorted(set(offsets))
    found: list[tuple[int, JobRecord]] = []
    groups: list[list[int]] = []
    for offset in wanted:
        if groups and offset - groups[-1][-1] <= GAP:
            groups[-1].append(offset)
        else:
            groups.append([offset])
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for group in groups:
                length = group[-1] - group[0] + ROW_GUESS
                while True:
                    data = _pread(f, group[0], length)
                    rows = {offset: fields for offset, _, fields in _records(data, group[0])}
                    if group[-1] in rows or group[0] + len(data) >= size:
                        break
                    length *= 2  # the last row is longer than guessed
                found += [(o, read(rows[o])) for o in group if rows.get(o)]
    except OSError:
        return []
    return found


# -- reading the files ------------------------------------------------------------------------------


def _appended(path: Path, mark: _Mark, end: int | None = None) -> Records:
    """The complete records of `path` from `mark` to `end` (its size), moving `mark` past them as
    they are read. The header is read first, when nothing was yet, so that the caller knows the
    columns before the first record."""
    try:
        size = path.stat().st_size if end is None else end
        if mark.offset == 0:
            _read_header(path, mark, size)
    except OSError:
        return iter(())
    return _folding(path, mark, size) if mark.offset else iter(())


def _read_header(path: Path, mark: _Mark, size: int) -> None:
    with open(path, "rb") as f:
        line = f.readline(size)
        if not line.endswith(b"\n"):  # no header yet, or not a whole one
            return
        stat = os.fstat(f.fileno())
        mark.columns = next(csv.reader([line.decode("utf-8", "replace")]), [])
        mark.offset, mark.device, mark.inode, mark.head = len(line), stat.st_dev, stat.st_ino, _hash(line)
        mark.tail = _hash(_before(f, mark.offset))


def _folding(path: Path, mark: _Mark, size: int) -> Records:
    try:
        with open(path, "rb") as f:
            f.seek(mark.offset)
            carry = b""
            while mark.offset + len(carry) < size:
                chunk = f.read(min(CHUNK, size - mark.offset - len(carry)))
                if not chunk:
                    break
                data = carry + chunk
                done = 0
                for offset, stop, fields in _records(data, mark.offset):
                    yield offset, fields
                    done = stop - mark.offset
                carry = data[done:]
                mark.offset += done
            mark.tail = _hash(_before(f, mark.offset))
    except OSError:
        return


def _records(data: bytes, base: int) -> Iterator[tuple[int, int, list[str]]]:
    """(start, end, fields) in the file of each complete record of `data`, read from `base`: a record
    ends at a newline outside quotes, so a torn last one (no newline yet, or a quoted field still open)
    is left out until it is whole. The csv module reads latin-1 text (one character per byte, so that
    the lengths of its lines are byte counts); fields are made UTF-8 text again where they need it. An
    unreadable record has no fields."""
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("latin-1")
    stops = list(accumulate(map(len, io.StringIO(text, newline=""))))
    utf8 = not text.isascii()
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:
            fields = []
        stop = stops[reader.line_num - 1]
        if stop == end and text.count('"', start, end) % 2:
            return  # a quoted field still open where the data ends: torn
        yield base + start, base + stop, [_text(f) for f in fields] if utf8 else fields
        start = stop


def _pread(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(max(0, length))


def _before(f: BinaryIO, offset: int) -> bytes:
    return _pread(f, max(0, offset - TAIL), min(offset, TAIL))


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _positions(columns: list[str], names: Iterable[str]) -> list[int]:
    return [columns.index(name) if name in columns else -1 for name in names]


def _picker(columns: list[str], names: Sequence[str]) -> Callable[[list[str]], tuple[str, ...]]:
    """fields -> the values of these columns ("" for a column the file lacks or a row too short)."""
    where = _positions(columns, names)
    slow: Callable[[list[str]], tuple[str, ...]] = lambda fields: tuple(  # noqa: E731
        fields[i] if 0 <= i < len(fields) else "" for i in where
    )
    if len(where) < 2 or min(where) < 0:
        return slow
    get, need = itemgetter(*where), max(where) + 1

    def pick(fields: list[str]) -> tuple[str, ...]:
        return get(fields) if len(fields) >= need else slow(fields)  # type: ignore[no-any-return]

    return pick


def _text(value: str) -> str:
    """A latin-1 field (see `_records`) as the UTF-8 text it is."""
    return value if value.isascii() else value.encode("latin-1").decode("utf-8", "replace")


def _among(value: str | None, names: list[str] | None) -> bool:
    return value is None or names is None or value in names


def _with(names: list[str] | None, name: str) -> list[str] | None:
    if names is None or name in names:
        return names
    return None if len(names) >= FEW else [*names, name]


def _pack(offset: int, tally: int) -> int:
    return tally << _OFFSET_BITS | offset


def _unpack(packed: int) -> tuple[int, int]:
    return packed & ((1 << _OFFSET_BITS) - 1), packed >> _OFFSET_BITS


def _add(rows: dict[Key, int | list[int]], key: Key, packed: int) -> None:
    held = rows.get(key)
    if held is None:
        rows[key] = packed
    elif isinstance(held, int):
        rows[key] = [held, packed]
    else:
        held.append(packed)


def _pop(rows: dict[Key, int | list[int]], key: Key) -> list[int]:
    held = rows.pop(key, None)
    return [] if held is None else [held] if isinstance(held, int) else held


def _items(rows: dict[Key, int | list[int]]) -> Iterator[tuple[Key, int]]:
    for key, held in rows.items():
        for packed in [held] if isinstance(held, int) else held:
            yield key, packed


def _values(rows: dict[Key, int | list[int]]) -> Iterator[int]:
    return (packed for _, packed in _items(rows))


def _mark_json(mark: _Mark) -> list[Any]:
    return [mark.offset, mark.device, mark.inode, mark.head, mark.tail, mark.columns]
