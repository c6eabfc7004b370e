"""The Host interface: local and SSH hosts differ only in how bytes travel."""

from __future__ import annotations

import dataclasses
import io
import secrets
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from compute_platform.errors import CommandFailed, Interrupted
from compute_platform.hosts import shell
from compute_platform.hosts.remote import Login

if TYPE_CHECKING:
    from compute_platform.input.spec import HostSpec

# Called with ("stdout" | "stderr", line) for every complete line, as it arrives.
LineCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class Result:
    """What a command did: exit code (-1 when killed by a timeout), its output (of a stream over
    HEAD_BYTES + TAIL_BYTES, its start and end: BoundedOutput) and its duration."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def tail(self, lines: int = 10) -> str:
        """The last lines of stderr (or of stdout when stderr is empty), for error messages."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


# A line longer than this reaches the callback in pieces of at most this many bytes: a command
# printing without a newline (a progress bar redrawn with \r, binary data) must not grow a buffer
# without end. 64 KiB is far above any line meant to be read, and cheap to hold.
LINE_LIMIT = 64 << 10
# Of each output stream, the first HEAD_BYTES and the last TAIL_BYTES are kept, the middle dropped.
# Callers parse outputs such as job state tables (squeue, sacct, status files for ~10,000 jobs:
# ~1 MB), which must come whole: 4 MiB + 4 MiB keeps 8x that untouched. Beyond, the start says what
# the command did first and the end how it failed, and a command costs at most ~8 MiB per stream
# (twice that while decoded) however much it prints.
HEAD_BYTES = 4 << 20
TAIL_BYTES = 4 << 20


class LineSplitter:
    """Turns chunks of bytes into decoded lines for a LineCallback: each complete line, a line
    longer than `limit` bytes in pieces (cut between characters)."""

    def __init__(self, stream: str, callback: LineCallback | None, limit: int = LINE_LIMIT) -> None:
        self.stream = stream
        self.callback = callback
        self.limit = limit
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        if self.callback is None:
            return
        *complete, rest = (self.buffer + data).split(b"\n")
        for line in complete:
            self._emit(line, whole=True)
        self.buffer = self._emit(rest, whole=False)

    def flush(self) -> None:
        if self.callback is not None and self.buffer:
            self._emit(self.buffer, whole=True)
        self.buffer = b""

    def _emit(self, line: bytes, whole: bool) -> bytes:
        """Pass `line` on, in pieces of at most `limit` bytes; of a line not `whole` (its newline
        still to come), what is left under the limit is returned, to be continued."""
        assert self.callback is not None
        start = 0  # an offset, not slices of the rest: one read over SSH can be a 64 MiB line
        while len(line) - start > self.limit:
            piece = line[start : start + self.limit]
            cut = complete_prefix(piece) or self.limit  # 0: no character boundary
            self.callback(self.stream, piece[:cut].decode(errors="replace"))
            start += cut
        if not whole:
            return line[start:]
        self.callback(self.stream, line[start:].decode(errors="replace"))
        return b""


class BoundedOutput:
    """One output stream as a command's Result holds it: its first `head` and last `tail` bytes,
    with one line in place of the middle saying how much was dropped. `seen` counts every byte."""

    def __init__(self, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self.head_limit = head
        self.tail_limit = tail
        self.head = bytearray()
        # whole chunks, the oldest dropped once the rest hold `tail` bytes: no copying of what is kept
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.seen = 0

    def feed(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_limit > 0:
            self._keep_tail(data)

    def _keep_tail(self, data: bytes) -> None:
        if len(data) >= self.tail_limit:  # one chunk fills the tail (paramiko reads up to 64 MiB)
            self.tail.clear()
            self.tail_size = 0
            data = data[len(data) - self.tail_limit :]
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail_size - len(self.tail[0]) >= self.tail_limit:
            self.tail_size -= len(self.tail.popleft())

    @property
    def dropped(self) -> int:
        """Bytes not kept (before cutting at line boundaries, which `text` does)."""
        return self.seen - len(self.head) - min(self.tail_size, self.tail_limit)

    def text(self) -> str:
        tail = b"".join(self.tail)[-self.tail_limit :] if self.tail_limit > 0 else b""
        if self.seen == len(self.head) + len(tail):  # all of it: exactly what the command wrote
            return (bytes(self.head) + tail).decode(errors="replace")
        head = self.head[: _head_end(self.head)]
        tail = tail[_tail_start(tail) :]
        dropped = self.seen - len(head) - len(tail)
        mark = f"[compute: {describe_size(dropped)} of output not kept]\n"
        if head and not head.endswith(b"\n"):
            mark = "\n" + mark
        return head.decode(errors="replace") + mark + tail.decode(errors="replace")


def _head_end(head: bytes | bytearray) -> int:
    """Where the kept start ends: after its last newline when one is near the end (no half line
    before the mark), else after its last whole character."""
    newline = head.rfind(b"\n", max(0, len(head) - LINE_LIMIT))
    return newline + 1 if newline >= 0 else complete_prefix(head)


def _tail_start(tail: bytes) -> int:
    """Where the kept end starts: after its first newline when one is near the start, else at its
    first whole character."""
    newline = tail.find(b"\n", 0, LINE_LIMIT)
    if newline >= 0:
        return newline + 1
    start = 0
    while start < min(3, len(tail)) and 0x80 <= tail[start] < 0xC0:  # continuation bytes
        start += 1
    return start


def complete_prefix(data: bytes | bytearray) -> int:
    """The length of `data` without a UTF-8 character cut off at its end (a lead byte whose
    continuation bytes are missing): cutting there splits no character in two."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # the lead byte of a character of `need` bytes
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)  # not UTF-8 there: errors="replace" shows it as it is


def describe_size(count: int) -> str:
    """A byte count for people: `512 bytes`, `41.9 MB` (decimal units, as rich and `ls --si`)."""
    if count < 1000:
        return f"{count} bytes"
    size, unit = count / 1000, "kB"
    for bigger in ("MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:.1f} {unit}"


class Host(ABC):
    """A machine that runs shell scripts and exchanges files. One instance per host per run."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.alias = spec.alias
        self.interrupted = False

    def script(self, command: str, *, cwd: str | None = None, env: Mapping[str, object] | None = None) -> str:
        """Exactly what `run` executes: the host's init and env, the working directory, the command."""
        merged: dict[str, object] = {**self.spec.env, **(env or {})}
        return shell.build(command, init=self.spec.init, env=merged, cwd=cwd)

    def run(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, object] | None = None,
        timeout: float | None = None,
        check: bool = False,
        on_line: LineCallback | None = None,
        stdin: bytes | BinaryIO | None = None,
        stdout_to: BinaryIO | None = None,
    ) -> Result:
        """Run a shell command through the host's init/env in `cwd`; raise CommandFailed if `check`."""
        if self.interrupted:
            raise Interrupted(self.alias)
        result = self.execute(
            self.script(command, cwd=cwd, env=env),
            timeout=timeout,
            on_line=on_line,
            stdin=stdin,
            stdout_to=stdout_to,
        )
        result = Result(
            command, result.exit_code, result.stdout, result.stderr, result.duration, result.timed_out
        )
        if check and not result.ok:
            raise CommandFailed(self.alias, result)
        return result

    # whether several questions are worth one command (`ask`): not where a round trip costs nothing
    flies = True

    def ask(self, parts: Sequence[shell.Part]) -> list[bytes | CommandFailed]:
        """Several questions in ONE round trip (`shell.flight`): each part's output, or the
        CommandFailed that `run(check=True)` would have raised for it alone. A connection that fails
        raises for all of them. The answer comes through a file (so an exec channel of its own) only
        when a part needs its bytes whole; else as any command's output (the persistent shell)."""
        if len(parts) == 1 or not self.flies:
            return [self._ask_one(part) for part in parts]
        token = secrets.token_hex(8)
        script, stdin = shell.flight(parts, token)
        result, said = self._answer(script, stdin, sum(p.timeout for p in parts), any(p.whole for p in parts))
        answers: list[bytes | CommandFailed] = []
        for answer in shell.apart(said, token, len(parts)):
            if answer is not None and answer[0] == 0:
                answers.append(answer[1])
                continue
            if answer is not None:  # the part failed, the others may not have
                code, out = answer
                failed = Result(script, code, out.decode("utf-8", "replace"), result.stderr, result.duration)
                answers.append(CommandFailed(self.alias, failed))
            elif result.timed_out:
                answers.append(CommandFailed(self.alias, dataclasses.replace(result, command=script)))
            else:
                what = f"no answer: the command ended (exit code {result.exit_code}) before this part, or its output was cut"
                answers.append(CommandFailed(self.alias, result, what))
        return answers

    def _ask_one(self, part: shell.Part) -> bytes | CommandFailed:
        result, said = self._answer(part.script, part.stdin, part.timeout, part.whole)
        return said if result.ok else CommandFailed(self.alias, result)

    def _answer(self, script: str, stdin: bytes, timeout: float, whole: bool) -> tuple[Result, bytes]:
        buffer = io.BytesIO() if whole else None
        result = self.run(script, stdin=stdin, timeout=timeout, stdout_to=buffer)
        return result, buffer.getvalue() if buffer is not None else result.stdout.encode()

    @abstractmethod
    def execute(
        self,
        script: str,
        *,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        stdin: bytes | BinaryIO | None = None,
        stdout_to: BinaryIO | None = None,
    ) -> Result:
        """Run a complete shell script as-is. stdout goes to `stdout_to` (binary) when given,
        else it is captured; stderr is always captured. Both are drained concurrently."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy one local file to a path on the host (`~` is the host's home)."""

    @abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy one file from the host to a local path."""

    @abstractmethod
    def home(self) -> str:
        """The home directory of the user on the host (cached)."""

    def expand(self, path: str) -> str:
        """A host path with a leading `~` replaced by the host's home."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + "/" + path[2:]
        return path

    def login_shell(self) -> Login | None:
        """What sshd starts for this host's user (None: not an SSH host)."""
        return None

    def key_used(self) -> str | None:
        """The key this host's login used, once connected (None: none, or the ssh client chose)."""
        return None

    def connect(self) -> None:  # noqa: B027 - optional hook: local hosts have nothing to open
        """Open the connection now (SSH hosts connect lazily otherwise)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the Host may not be used afterwards."""

    def interrupt(self) -> None:
        """Ctrl-C: stop what runs (close) and refuse every later command, so that a task under way
        cannot quietly reconnect and go on."""
        self.interrupted = True
        self.close()

    @staticmethod
    def clock() -> float:
        return time.monotonic()
