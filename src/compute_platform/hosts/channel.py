"""One read loop for what a command writes on a paramiko channel, used by the exec channels of
SSHHost and by its persistent shell: both streams drained as data comes (a reader waiting on one
stream while the other fills its window deadlocks), the end of the command left to the caller (an
exit status and EOF, or the shell's markers), a silent host asked to answer keepalives, and an
optional deadline. Also what an exec channel needs around it: its stdin and its end.

A channel is paramiko's, or a kept connection's (hosts/kept.py: the same methods, through the
connection keeper): `Channel` and `Transport` say what of them this code uses."""

from __future__ import annotations

import select
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from compute_platform.errors import HostError
from compute_platform.hosts.base import BoundedOutput, LineSplitter

# Reads take all that is buffered: paramiko drops what is read from the front of its buffer,
# a copy of the rest, so 64 kB reads from a full 64 MB window cost seconds of CPU per 100 MB.
READ_SIZE = 1 << 26
# A host silent for `keepalive` seconds while a command runs is asked to answer within this many
# keepalive periods more; no answer: the host (or the network to it) is down, the command is lost.
KEEPALIVE_ANSWER_PERIODS = 2
# After the exit status, how long output may stay silent before the command counts as over (a
# background process it started may hold the output open for ever).
OUTPUT_GRACE_SECONDS = 1.0
CLOSED = "the connection was closed while a command was running"


class Transport(Protocol):
    """What the read loop asks of a connection."""

    def is_active(self) -> bool: ...
    def global_request(self, kind: str, data: Any = None, wait: bool = True) -> object: ...
    def close(self) -> None: ...


class Channel(Protocol):
    """What SSH hosts and the keeper use of a channel (paramiko's Channel has all of it)."""

    @property
    def closed(self) -> bool: ...
    @property
    def eof_received(self) -> int: ...
    @property
    def status_event(self) -> threading.Event: ...
    @property
    def exit_status(self) -> int: ...
    def get_transport(self) -> Transport | None: ...
    def exec_command(self, command: str) -> None: ...
    def invoke_subsystem(self, subsystem: str) -> None: ...
    def recv_ready(self) -> bool: ...
    def recv(self, nbytes: int) -> bytes: ...
    def recv_stderr_ready(self) -> bool: ...
    def recv_stderr(self, nbytes: int) -> bytes: ...
    def exit_status_ready(self) -> bool: ...
    def recv_exit_status(self) -> int: ...
    def send(self, data: Any) -> int: ...
    def sendall(self, data: Any) -> None: ...
    def shutdown_write(self) -> None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


class Sink(Protocol):
    def feed(self, data: bytes) -> None: ...


class Ending(Protocol):
    """How the command being read ends."""

    def over(self, silence: float) -> bool:
        """Whether the command ended and its output was read to the end (`silence`: seconds since
        the last output)."""

    def check(self) -> None:
        """Raise if the channel ended before the command did (the connection being still up)."""


@dataclass(frozen=True)
class Watch:
    """The host at the other end: named in errors, asked to answer after `keepalive` s of silence."""

    alias: str
    keepalive: float


def read(
    chan: Channel,
    out: Sink,
    err: Sink,
    ending: Ending,
    watch: Watch,
    deadline: float | None = None,
) -> bool:
    """Feed `out` and `err` with the channel's stdout and stderr until `ending` says the command is
    over (True) or `deadline` (time.monotonic()) passes first (False)."""
    last_output = time.monotonic()
    while True:
        if _drain(chan, out, err):
            last_output = time.monotonic()
            continue
        # in this order: a command that ended keeps its result even if the connection dropped
        # since; a dropped connection closes every channel, and is what to report then
        if ending.over(time.monotonic() - last_output):
            return True
        transport = chan.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(watch.alias, CLOSED)
        try:
            ending.check()
        except Exception:
            # the channel ended since the drain above: the output, status and EOF that came before
            # its end are buffered by now, and decide whether the command ended first (a command's
            # last output, status, EOF and close often come together, and another thread may run
            # between the drain and this check)
            if _drain(chan, out, err) or ending.over(time.monotonic() - last_output):
                continue
            raise
        if time.monotonic() - last_output > watch.keepalive:
            check_alive(transport, watch)
            last_output = time.monotonic()
        if deadline is not None and time.monotonic() > deadline:
            return False
        _wait(chan, deadline)


def _drain(chan: Channel, out: Sink, err: Sink) -> bool:
    """Take what both streams hold now; whether there was anything."""
    busy = False
    if chan.recv_ready():
        out.feed(chan.recv(READ_SIZE))
        busy = True
    if chan.recv_stderr_ready():
        err.feed(chan.recv_stderr(READ_SIZE))
        busy = True
    return busy


def _wait(chan: Channel, deadline: float | None) -> None:
    """Until the channel has something to say: at most a second, 0.2 s once the exit status is in
    (to end soon after the output does), and never past the deadline."""
    wait = 0.2 if chan.exit_status_ready() else 1.0
    if deadline is not None:
        wait = max(0.0, min(wait, deadline - time.monotonic()))
    if chan.eof_received:
        # EOF marks the channel readable for good: select() would return at once and the loop
        # would spin, holding the GIL the transport thread needs to read the exit status (~5 ms
        # lost per command). Wait for the status itself.
        chan.status_event.wait(wait)
    else:
        select.select([chan], [], [], wait)


def check_alive(transport: Transport, watch: Watch) -> None:
    """Ask a silent host to answer a keepalive request; none in time: it is gone (a crashed host
    or a cut network sends no FIN, and TCP alone would wait for hours)."""
    answered = threading.Event()

    def ask() -> None:
        transport.global_request("keepalive@openssh.com", wait=True)  # returns on any answer
        answered.set()

    threading.Thread(target=ask, daemon=True).start()
    wait = watch.keepalive * KEEPALIVE_ANSWER_PERIODS
    if not answered.wait(wait):
        transport.close()
        silent = watch.keepalive + wait
        raise HostError(
            watch.alias,
            f"the host stopped answering ({silent:g} s without an answer to keepalives): it or the "
            "network to it is down; what the command did there is unknown",
        )


class ExecEnding:
    """An exec channel's command is over once its exit status came and its output ended."""

    def __init__(self, chan: Channel, alias: str) -> None:
        self.chan = chan
        self.alias = alias

    def over(self, silence: float) -> bool:
        # sshd sends the exit status at once but the rest of the output only as our window
        # allows: read on to EOF, unless a background process holds the output open, silent
        chan = self.chan
        return chan.exit_status_ready() and (bool(chan.eof_received) or silence > OUTPUT_GRACE_SECONDS)

    def check(self) -> None:
        if self.chan.closed:
            raise HostError(self.alias, CLOSED)


class Capture:
    """One output stream kept (its start and its end: memory stays bounded whatever the command
    prints), and cut into lines for the callback as it comes."""

    def __init__(self, lines: LineSplitter) -> None:
        self.lines = lines
        self.kept = BoundedOutput()

    def feed(self, data: bytes) -> None:
        self.kept.feed(data)
        self.lines.feed(data)

    def text(self) -> str:
        self.lines.flush()
        return self.kept.text()


class Forward:
    """stdout written to a file as it comes (a download), none of it kept."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def feed(self, data: bytes) -> None:
        self.file.write(data)

    def text(self) -> str:
        return ""


def feed_stdin(chan: Channel, data: bytes | BinaryIO) -> None:
    """Send `data` as the command's stdin, then EOF (run in a thread of its own: the command may
    write more than the channel's window before it reads its input)."""
    try:
        if isinstance(data, bytes):
            send_all(chan, data)
        else:
            while chunk := data.read(1 << 20):
                send_all(chan, chunk)
        chan.shutdown_write()
    except OSError:
        pass


def send_all(chan: Any, data: bytes) -> None:  # Any: paramiko's stubs want bytes; any buffer works
    """paramiko's sendall() sends a packet (32 kB) at a time and copies the rest of the buffer
    after each one: ~16 MB copied per MB sent (100 MB: 0.42 -> 0.25 s, measured). Slices of a
    memoryview copy nothing."""
    view = memoryview(data)
    while view:
        sent = chan.send(view)
        if not sent:
            raise OSError("the channel closed while sending")
        view = view[sent:]
