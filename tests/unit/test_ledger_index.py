"""The ledger's derived index (archive/.index.json, ledger/index.py): what `compute jobs` reads instead of
every row of job.csv. Each answer is checked against the whole files read as before (`records()`,
`ended()`, `events()`), after appends, rewrites, torn lines, cancellations and concurrent writers."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import random
from pathlib import Path

import pytest

from compute_platform.ledger import CANCELLED_EVENT, INDEX_FILE, Ended, Event, JobRecord, Ledger
from compute_platform.ledger import index as ledger_index
from compute_platform.ledger.index import Index


def row(i: int, run: str = "r1", task: str = "train", host: str = "h", **fields: str) -> JobRecord:
    return JobRecord(
        fields.pop("submitted_at", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00"),
        "/p/book.yaml",
        task,
        host,
        "tmux",
        fields.pop("job_id", f"j{i}"),
        task,
        run_id=run,
        job_index=str(i),
        **fields,
    )


def ended(job_id: str, state: str = "COMPLETED", host: str = "h") -> Ended:
    return Ended("2026-02-01T00:00:00+00:00", host, job_id, state, "0")


def cancelled(job_id: str, host: str = "h") -> Event:
    return Event("2026-02-01T00:00:00+00:00", host, job_id, CANCELLED_EVENT)


def keys(records: list[JobRecord]) -> list[tuple[str, str]]:
    return [(r.host, r.job_id) for r in records]


def expected_open(ledger: Ledger) -> list[tuple[str, str]]:
    """The open rows as the whole files say: no recorded end, no cancellation."""
    done = set(ledger.ended()) | {(e.host, e.job_id) for e in ledger.events() if e.event == CANCELLED_EVENT}
    return [key for key in keys(ledger.records()) if key not in done]


def expected_default(ledger: Ledger) -> list[tuple[str, str]]:
    records = ledger.records()
    latest = max(records, key=lambda r: r.submitted_at).run_id
    shown = set(expected_open(ledger))
    return [(r.host, r.job_id) for r in records if (r.host, r.job_id) in shown or r.run_id == latest]


def fresh(root: Path) -> Ledger:
    """A new Ledger on the archive, as the next command makes it (it reads the saved index)."""
    return Ledger(root)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "archive"


def test_missing_index_is_built_then_read_back_and_rebuilt_when_deleted(root: Path) -> None:
    ledger = Ledger(root)
    ledger.append([row(i) for i in range(10)])
    ledger.append_ended([ended(f"j{i}") for i in range(6)])
    assert keys(ledger.open_records()) == [("h", f"j{i}") for i in range(6, 10)]
    saved = json.loads((root / INDEX_FILE).read_text().split("\n", 1)[1])
    assert saved["rows"] == 10 and len(saved["open"]) == 4

    again = fresh(root)
    assert keys(again.shown_by_default()) == expected_default(again)
    (root / INDEX_FILE).unlink()
    rebuilt = fresh(root)
    assert rebuilt.size() == 10 and keys(rebuilt.open_records()) == expected_open(rebuilt)
    assert (root / INDEX_FILE).exists()


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not json",
        b'{"version": 1}',
        b'{"version": 99, "rows": 3}',
        b"[1, 2]",
        b'{"version": 1, "files": 7}',
    ],
)
def test_a_corrupt_index_is_rebuilt_silently(root: Path, damage: bytes) -> None:
    Ledger(root).append([row(i) for i in range(5)])
    Ledger(root).size()
    check = ledger_index._hash(damage).encode()
    for content in (damage, check + b"\n" + damage):  # damaged, or well hashed but not an index
        (root / INDEX_FILE).write_bytes(content)
        ledger = fresh(root)
        assert ledger.size() == 5 and keys(ledger.open_records()) == keys(ledger.records())


def test_an_index_changed_since_it_was_written_is_not_trusted(root: Path) -> None:
    Ledger(root).append([row(i) for i in range(5)])
    Ledger(root).size()
    saved = (root / INDEX_FILE).read_bytes()
    (root / INDEX_FILE).write_bytes(saved.replace(b'"rows":5', b'"rows":7'))  # well formed, wrong
    assert fresh(root).size() == 5


def test_only_the_bytes_appended_since_the_checkpoint_are_read(root: Path) -> None:
    ledger = Ledger(root)
    ledger.append([row(i) for i in range(3)])
    assert [c.task for c in ledger.task_counts()] == ["train"]
    # an already folded row changed in the middle of the file (header and tail unchanged): not read again
    text = ledger.jobs_file.read_bytes()
    ledger.jobs_file.write_bytes(text.replace(b",train,h,tmux,j1,train,", b",tr4in,h,tmux,j1,tr4in,"))
    ledger.append([row(3, task="eval")])
    later = fresh(root)
    assert [(c.task, c.rows) for c in later.task_counts()] == [("train", 3), ("eval", 1)]
    assert later.size() == 4


@pytest.mark.parametrize("how", ["shrunk", "rewritten", "replaced", "header"])
def test_a_rewritten_shrunk_or_replaced_job_csv_is_read_again(root: Path, how: str) -> None:
    ledger = Ledger(root)
    ledger.append([row(i) for i in range(6)])
    assert ledger.size() == 6
    text = ledger.jobs_file.read_bytes()
    header, *lines = text.splitlines(keepends=True)
    if how == "shrunk":
        ledger.jobs_file.write_bytes(header + b"".join(lines[:2]))
    elif how == "rewritten":  # same size, same inode, the last row another job
        ledger.jobs_file.write_bytes(text.replace(b"j5", b"k5"))
    elif how == "replaced":  # a new file renamed over it, longer, its first row gone
        new = root / "new.csv"
        new.write_bytes(header + b"".join(lines[1:]) + b"".join(lines[:2]).replace(b"j", b"x"))
        os.replace(new, ledger.jobs_file)
    else:  # in place, as long, the columns in another order: every position moved
        columns = JobRecord.columns()
        columns[2], columns[3] = columns[3], columns[2]  # host before task
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(vars(r) for r in ledger.records())
        assert len(buffer.getvalue()) == len(text)
        ledger.jobs_file.write_text(buffer.getvalue())
    later = fresh(root)
    assert later.size() == len(later.records())
    assert keys(later.open_records()) == expected_open(later)
    assert keys(later.shown_by_default()) == expected_default(later)
    later.append_ended([ended(r.job_id) for r in later.records()])  # ends find their rows by key
    done = fresh(root)
    assert done.open_records() == [] and sum(sum(c.ended.values()) for c in done.task_counts()) == done.size()


def test_a_torn_last_row_is_left_out_until_it_is_whole(root: Path) -> None:
    ledger = Ledger(root)
    ledger.append([row(0)])
    assert ledger.size() == 1
    whole = Ledger(root / "model")
    whole.append([row(1, command='python a.py --note "x, y"\npython b.py')])  # quoted, over two lines
    line = whole.jobs_file.read_bytes().split(b"\n", 1)[1]
    first_line_end = line.index(b"\n") + 1
    for cut in (
        10,
        first_line_end,
        len(line) - 1,
    ):  # no newline; a newline inside the quotes; no last newline
        with open(ledger.jobs_file, "ab") as f:
            f.write(line[:cut])
        torn = fresh(root)
        assert torn.size() == 1 and keys(torn.open_records()) == [("h", "j0")]
        with open(ledger.jobs_file, "r+b") as f:
            f.truncate(f.seek(0, os.SEEK_END) - cut)
    with open(ledger.jobs_file, "ab") as f:
        f.write(line[:first_line_end])
    assert fresh(root).size() == 1
    with open(ledger.jobs_file, "ab") as f:
        f.write(line[first_line_end:])
    whole_now = fresh(root)
    assert whole_now.size() == 2
    assert whole_now.shown_by_default()[-1] == whole.records()[0]


def test_ends_and_cancellations_fold_rows_out_of_the_open_set(root: Path) -> None:
    ledger = Ledger(root)
    ledger.append([row(i) for i in range(4)] + [row(9, host="g", job_id="j0")])  # j0 on two hosts
    ledger.append_ended([ended("j0"), ended("j1", "FAILED"), ended("nowhere")])
    ledger.append_events([cancelled("j2"), cancelled("j1"), cancelled("nowhere")])
    later = fresh(root)
    assert keys(later.open_records()) == [("h", "j3"), ("g", "j0")]
    assert later.cancelled(later.records()) == {("h", "j2")}
    (count,) = [c for c in later.task_counts() if c.host == "h"]
    assert (count.rows, count.cancelled, count.ended, count.open) == (4, 1, {"COMPLETED": 1, "FAILED": 1}, 1)
    # the cancelled job's end, learnt later, counts as that end instead
    later.append_ended([ended("j2", "CANCELLED")])
    (count,) = [c for c in fresh(root).task_counts() if c.host == "h"]
    assert (count.cancelled, count.ended) == (0, {"COMPLETED": 1, "FAILED": 1, "CANCELLED": 1})
    assert fresh(root).cancelled(later.records()) == set()


def test_the_ends_of_rows_handed_out_are_read_from_the_blocks_that_end_them(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_index, "BLOCK", 4)
    ledger = Ledger(root)
    ledger.append([row(i, run=f"r{i // 10}") for i in range(40)])
    ledger.append_ended([ended(f"j{i}", "FAILED" if i % 3 else "COMPLETED") for i in range(0, 40, 2)])
    ledger.append_ended([ended("j2", "TIMEOUT")])  # a second line for a job: the first one wins
    every = ledger.ended()
    later = fresh(root)
    for chosen in (later.records_where(run="r1"), later.shown_by_default(), later.records_where(last=3)):
        wanted = {(r.host, r.job_id) for r in chosen}
        assert later.ended(chosen) == {key: e for key, e in every.items() if key in wanted}
    assert fresh(root).ended(ledger.records()) == every  # rows it did not hand out: the whole file


def test_rows_of_a_task_run_period_or_id_are_read_from_the_blocks_that_hold_them(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_index, "BLOCK", 4)
    monkeypatch.setattr(ledger_index, "FEW", 2)
    ledger = Ledger(root)
    rng = random.Random(7)
    rows = [
        row(i, run=f"r{i // 7}", task=rng.choice(["a", "b", "c", "ü"]), host=rng.choice(["h", "g"]))
        for i in range(60)
    ]
    ledger.append(rows)
    later = fresh(root)
    assert later.records_where() == rows
    assert later.records_where(task="ü") == [r for r in rows if r.task == "ü"]
    assert later.records_where(host="g", task="a") == [r for r in rows if (r.host, r.task) == ("g", "a")]
    assert later.records_where(run="r3") == [r for r in rows if r.run_id == "r3"]
    start = rows[45].submitted_at
    assert later.records_where(since=start) == [r for r in rows if r.submitted_at >= start]
    assert later.records_where(last=5) == rows[-5:]
    assert later.records_where(task="b", last=2) == [r for r in rows if r.task == "b"][-2:]
    assert later.records_where(mentioning=["j1"]) == [r for r in rows if "j1" in r.job_id]
    assert later.records_where(task="none") == []


def test_the_latest_run_is_the_run_of_the_first_row_submitted_last(root: Path) -> None:
    ledger = Ledger(root)
    ledger.append([row(i, run="a") for i in range(3)])
    assert ledger.index().latest_run == "a"
    ledger.append([row(10, run="b"), row(1, run="a"), row(11, run="b")])  # b newer; a's late row stays a's
    later = fresh(root)
    assert later.index().latest_run == "b" and keys(later.shown_by_default()) == expected_default(later)
    ledger.append([row(11, run="c")])  # the same time as b's latest: b stays (max keeps the first)
    assert fresh(root).index().latest_run == "b"
    ledger.append([row(12, run="a")])  # a again, with rows in earlier blocks: all of them are its rows
    ledger.append_ended([ended(f"j{i}") for i in (0, 1, 2, 10, 11, 12)])
    later = fresh(root)
    assert later.index().latest_run == "a"
    assert [(r.job_id, r.run_id) for r in later.shown_by_default()] == [
        ("j0", "a"),
        ("j1", "a"),
        ("j2", "a"),
        ("j1", "a"),
        ("j12", "a"),
    ]


def test_text_fields_and_lines_of_every_kind_come_back_exactly(root: Path) -> None:
    ledger = Ledger(root)
    odd = [
        row(0, task="évalué", command="python a.py\npython b.py", sweep='{"lr": 0.1, "név": "ü"}'),
        row(1, command='a "quoted" word, a comma', args="--x 'y z'"),
        row(2, command="carriage\r\nreturn\rlone", host="hôte"),
        row(3, task="漢字", job_id="長い名前.1"),
    ]
    ledger.append(odd)
    with open(ledger.jobs_file, "ab") as f:
        f.write(b"\n")  # a blank line, as a hand edit leaves
    ledger.append([row(4)])
    later = fresh(root)
    assert later.shown_by_default() == ledger.records()
    assert later.records_where(task="漢字") == [odd[3]] and later.records_where(host="hôte") == [odd[2]]


def test_an_older_header_and_rows_shorter_than_it_still_read(root: Path) -> None:
    root.mkdir()
    (root / "job.csv").write_text(
        "submitted_at,playbook,task,host,scheduler,job_id,job_name\n"
        "2026-01-01T00:00:00+00:00,b.yaml,t,h,slurm,1,n\n"
        "2026-01-01T00:00:01+00:00,b.yaml,t,h,slurm,2\n"
    )
    ledger = Ledger(root)
    assert ledger.shown_by_default() == ledger.records()
    assert [c.rows for c in ledger.task_counts()] == [2]


def test_the_events_not_about_one_job_are_kept_whole(root: Path) -> None:
    ledger = Ledger(root)
    notes = [
        Event("t", "h", "", "unconfirmed", json.dumps({"token": 'a,"b"\nc', "playbook": "p", "task": "t"})),
        Event("t", "h", "7", "confirmed", json.dumps({"token": "x"})),
        Event("t", "h", "", "feed", json.dumps({"feed": "f1"})),
    ]
    ledger.append_events(
        [notes[0], cancelled("j1"), notes[1], Event("t", "h", "j1", "resubmitted", "j9"), notes[2]]
    )
    assert fresh(root).run_events() == notes
    assert [e for e, _ in fresh(root).unconfirmed("p", "t", "h")] == [notes[0]]


def test_answers_match_the_whole_files_through_random_appends(root: Path) -> None:
    rng = random.Random(11)
    ledger = Ledger(root)
    made = 0
    for step in range(60):
        what = rng.random()
        records = ledger.records()
        if what < 0.4 or not records:
            run = f"r{step // 6}"
            ledger.append([row(made + i, run=run, task=rng.choice("xyz")) for i in range(rng.randint(1, 8))])
            made = len(ledger.records())
        elif what < 0.7:
            ledger.append_ended([ended(rng.choice(records).job_id, rng.choice(["COMPLETED", "FAILED"]))])
        elif what < 0.85:
            ledger.append_events([cancelled(rng.choice(records).job_id)])
        else:
            old = rng.choice(records)
            ledger.append([row(made, run=f"r{step // 6}", replaces=old.job_id)])
            made += 1
        view = fresh(root) if step % 3 else ledger  # a new command, or the same one going on
        assert view.size() == len(view.records())
        assert keys(view.open_records()) == expected_open(view)
        assert keys(view.shown_by_default()) == expected_default(view)
        assert view.replacements() == {(r.host, r.replaces): r.job_id for r in view.records() if r.replaces}
        assert sum(c.rows for c in view.task_counts()) == len(view.records())
    rebuilt = Index()
    rebuilt.fold(ledger.jobs_file, ledger.states_file, ledger.events_file)
    assert fresh(root).index().to_json() == rebuilt.to_json()


def _append_many(root: str, writer: int) -> None:
    ledger = Ledger(Path(root))
    for batch in range(25):
        ledger.append([row(1000 * writer + 10 * batch + i, run=f"w{writer}") for i in range(10)])
        ledger.append_ended([ended(f"j{1000 * writer + 10 * batch}")])
        ledger.append_events([cancelled(f"j{1000 * writer + 10 * batch + 1}")])


def test_concurrent_appends_while_commands_read_and_write_the_index(root: Path) -> None:
    Ledger(root).append([row(0)])
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(root), w)) for w in range(1, 5)]
    for writer in writers:
        writer.start()
    seen = 0
    while any(w.is_alive() for w in writers):
        folded = fresh(root).index()  # each a command: reads the saved index, folds, saves its own
        opened = sum(1 if isinstance(held, int) else len(held) for held in folded.open.values())
        assert folded.rows >= seen and opened == sum(c.open for c in folded.counts())
        assert folded.rows == sum(c.rows for c in folded.counts())
        seen = folded.rows
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    last = fresh(root)
    assert last.size() == 1 + 4 * 25 * 10
    assert keys(last.open_records()) == expected_open(last)
    rebuilt = Index()
    rebuilt.fold(last.jobs_file, last.states_file, last.events_file)
    assert last.index().to_json() == rebuilt.to_json()


def test_a_deleted_states_csv_opens_the_rows_again(root: Path) -> None:
    ledger = Ledger(root)
    ledger.append([row(i) for i in range(3)])
    ledger.append_ended([ended("j0"), ended("j1")])
    assert keys(ledger.open_records()) == [("h", "j2")]
    ledger.states_file.unlink()  # derived knowledge: its jobs are asked again
    assert keys(fresh(root).open_records()) == keys(ledger.records())
