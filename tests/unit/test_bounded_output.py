"""Memory stays bounded whatever a command prints: a Result keeps the start and the end of each
stream (BoundedOutput), a line without end reaches the callback in pieces (LineSplitter), and
`--json` keeps the last lines of each host's output (LastLines)."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from compute_platform.context import Status
from compute_platform.hosts.base import HEAD_BYTES, TAIL_BYTES, BoundedOutput, LineSplitter, describe_size
from compute_platform.hosts.channel import Capture
from compute_platform.hosts.process import Kept
from compute_platform.run.reporting import JsonReporter, LastLines


def bounded(data: bytes, head: int, tail: int, chunk: int = 7) -> BoundedOutput:
    kept = BoundedOutput(head, tail)
    for start in range(0, len(data), chunk):
        kept.feed(data[start : start + chunk])
    return kept


def split(chunks: list[bytes], limit: int) -> list[str]:
    lines: list[str] = []
    splitter = LineSplitter("stdout", lambda stream, line: lines.append(line), limit=limit)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.flush()
    return lines


# -- BoundedOutput ---------------------------------------------------------------------------------


def test_output_within_the_bound_is_kept_exactly() -> None:
    data = "".join(f"line {i} é\n" for i in range(50)).encode()
    kept = bounded(data, head=len(data) - 20, tail=20)
    assert kept.text() == data.decode() and kept.seen == len(data) and kept.dropped == 0


def test_the_middle_is_one_line_saying_how_much_was_dropped() -> None:
    data = "".join(f"line {i:03}\n" for i in range(100)).encode()  # 9 bytes a line
    kept = bounded(data, head=30, tail=30)
    lines = kept.text().splitlines()
    # cut at line boundaries: no half line on either side of the mark
    assert lines == ["line 000", "line 001", "line 002", "[compute: 846 bytes of output not kept]",
                     "line 097", "line 098", "line 099"]  # fmt: skip
    assert kept.seen == len(data) == 27 + 846 + 27


def test_a_stream_without_newlines_is_cut_between_characters() -> None:
    data = "€" * 100  # 3 bytes each: neither bound falls between characters
    kept = bounded(data.encode(), head=10, tail=10)
    head, mark, tail = kept.text().split("\n")
    assert (head, tail) == ("€€€", "€€€") and mark == "[compute: 282 bytes of output not kept]"
    assert "\ufffd" not in kept.text()


def test_one_chunk_larger_than_both_bounds() -> None:
    kept = BoundedOutput(head=4, tail=4)
    kept.feed(b"abc\n" + b"x" * 1000 + b"\nxyz")
    assert kept.text() == "abc\n[compute: 1.0 kB of output not kept]\nxyz"
    assert kept.seen == 1008


@given(
    st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(1, 50),
)
def test_any_bytes_in_any_chunks_never_raise_and_keep_the_ends(
    data: bytes, head: int, tail: int, chunk: int
) -> None:
    kept = bounded(data, head, tail, chunk)
    text = kept.text()
    assert kept.seen == len(data)
    if len(data) <= head + tail:
        assert text == data.decode(errors="replace")
    else:
        assert "of output not kept]" in text and kept.dropped == len(data) - head - tail
        assert len(text) <= head + tail + 80  # a character at most per byte kept, and the mark


def test_memory_held_is_bounded_by_head_and_tail() -> None:
    kept = BoundedOutput()
    chunk = random.randbytes(1 << 20)
    for _ in range(40):
        kept.feed(chunk)
    held = len(kept.head) + sum(len(part) for part in kept.tail)
    assert held <= HEAD_BYTES + TAIL_BYTES + len(chunk)
    assert kept.seen == 40 << 20 and kept.dropped == (40 << 20) - HEAD_BYTES - TAIL_BYTES


def test_the_bounds_keep_a_job_state_table_whole() -> None:
    # squeue's lines for 10,000 jobs, 5 times over: ~1.2 MB
    table = "".join(f"{1000 + i}_{i}|RUNNING|None\n" for i in range(10_000)) * 5
    kept = BoundedOutput()
    kept.feed(table.encode())
    assert kept.text() == table


def test_capture_and_kept_keep_the_same_bounded_output() -> None:
    lines: list[str] = []
    capture = Capture(LineSplitter("stdout", lambda stream, line: lines.append(line)))
    kept = Kept(LineSplitter("stdout", None), None)
    for sink in (capture, kept):
        for _ in range(10):
            sink.feed(b"y" * ((2 << 20) - 1) + b"\n")  # lines of 2 MiB
    assert capture.text() == kept.text() and "\n[compute: 12.6 MB of output not kept]\n" in kept.text()
    # each line passed on in 32 pieces of at most 64 KiB
    assert len(lines) == 320 and max(len(line) for line in lines) == 64 << 10


def test_sizes_read_as_people_write_them() -> None:
    assert [describe_size(n) for n in (0, 999, 1000, 41_900_000, 3 * 10**9)] == [
        "0 bytes", "999 bytes", "1.0 kB", "41.9 MB", "3.0 GB"
    ]  # fmt: skip


# -- LineSplitter ----------------------------------------------------------------------------------


def test_lines_cut_across_chunks_come_whole() -> None:
    assert split([b"a", b"b\nc", b"d\n\n", b"e"], limit=100) == ["ab", "cd", "", "e"]


def test_a_line_longer_than_the_limit_comes_in_pieces() -> None:
    assert split([b"abcdefghij\nxy", b"z\n"], limit=4) == ["abcd", "efgh", "ij", "xyz"]
    splitter = LineSplitter("stdout", lambda stream, line: None, limit=4)
    for _ in range(1000):
        splitter.feed(b"0123456")
        assert len(splitter.buffer) <= 4  # held, never more than the limit


def test_a_huge_chunk_without_newline_is_cut_in_linear_time() -> None:
    pieces = 0

    def count(stream: str, line: str) -> None:
        nonlocal pieces
        pieces += 1

    start = time.monotonic()
    LineSplitter("stdout", count, limit=256).feed(b"x" * (16 << 20))  # copying the rest each time: ~30 s
    assert pieces == 65535 and time.monotonic() - start < 2


def test_pieces_never_split_a_character() -> None:
    pieces = split([("é" * 10 + "\n").encode(), ("€" * 10).encode()], limit=5)
    assert pieces == ["éé", "éé", "éé", "éé", "éé", "€", "€", "€", "€", "€", "€", "€", "€", "€", "€"]


def test_pieces_of_multibyte_text_join_back() -> None:
    text = "aé€😀" * 50
    pieces = split([text.encode()[i : i + 3] for i in range(0, len(text.encode()), 3)], limit=7)
    assert "".join(pieces) == text and all(len(p.encode()) <= 7 for p in pieces)


@given(st.binary(max_size=200), st.integers(1, 30), st.integers(4, 20))
def test_any_bytes_come_back_in_lines_of_bounded_size(data: bytes, chunk: int, limit: int) -> None:
    lines = split([data[i : i + chunk] for i in range(0, len(data), chunk)], limit)
    assert all(len(line.encode(errors="surrogatepass")) <= 3 * limit for line in lines)
    if b"\n" not in data and len(data) <= limit:
        assert lines == ([data.decode(errors="replace")] if data else [])


# -- what --json keeps -----------------------------------------------------------------------------


def test_json_keeps_the_last_lines_and_says_how_many_were_dropped() -> None:
    last = LastLines(lines=3, chars=1000)
    last.add("plan", "echo 1..10")
    for i in range(10):
        last.add("stdout" if i % 2 else "stderr", str(i))
    last.add("info", "done")
    assert last.entries() == [
        {"stream": "info", "line": "[compute: 7 earlier lines of output not kept]"},
        {"stream": "plan", "line": "echo 1..10"},
        {"stream": "stdout", "line": "7"},
        {"stream": "stderr", "line": "8"},
        {"stream": "stdout", "line": "9"},
        {"stream": "info", "line": "done"},
    ]


def test_json_keeps_a_bounded_number_of_characters() -> None:
    last = LastLines(lines=1000, chars=100)
    for _ in range(50):
        last.add("stdout", "x" * 30)
    assert last.chars <= 100 and len(last.output) == 3 and last.dropped == 47


def test_the_json_reporter_bounds_each_hosts_output() -> None:
    reporter = JsonReporter()
    task = SimpleNamespace(index=0)
    for i in range(20_000):
        reporter.host_output(task, "h1", "stdout", f"line {i}")  # type: ignore[arg-type]
    reporter.host_done(task, "h1", Status.OK, 1.0, "")  # type: ignore[arg-type]
    output = reporter.current["h1"]["output"]
    assert isinstance(output, list) and len(output) == 10_001
    assert output[0] == {"stream": "info", "line": "[compute: 10000 earlier lines of output not kept]"}
    assert output[-1] == {"stream": "stdout", "line": "line 19999"}
