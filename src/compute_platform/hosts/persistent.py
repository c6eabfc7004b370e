"""One persistent remote shell per SSH host, for plain commands: sshd forks a login shell for every
exec channel (~3.5 ms each), while a command sent to a shell already running costs ~0.3 ms.

The shell is an exec channel like any other (sshd runs `$SHELL -c DRIVER`, so what ~/.bashrc
defines is defined), running a loop that reads one script at a time, NUL-terminated, and runs it
in a subshell with stdin from /dev/null: `cd`, `export` or `exit` in one command cannot reach the
next one. After each script the loop prints a marker made of a random token and the exit code on
stdout, and the token on stderr; the reader cuts each stream at its marker. A script that starts
background jobs (`&`) runs on an exec channel instead: a job still writing after the script ended
would write into the next command's output.

A command with a timeout runs there too: when it passes, the driver's process group is killed (the
command with it) and the shell dropped. So does a command fed a small stdin (up to FED_MAX bytes):
the bytes go inside its script (`with_stdin`), so `compute jobs` asks a host in one round trip, not
two (sshd opens a new session's window only once its command runs).

Over a connection the keeper holds (hosts/kept.py), the shell outlives the run too: at close, a
shell between two commands goes back to the keeper, and the next run's first command goes to it
at once (no session to open, no driver to start: one round trip for the command alone).
"""

from __future__ import annotations

import base64
import re
import select
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from compute_platform.errors import HostError
from compute_platform.hosts.base import BoundedOutput, LineCallback, LineSplitter, Result
from compute_platform.hosts.channel import CLOSED, READ_SIZE, Channel, Watch, read
from compute_platform.hosts.kept import KeptChannel, KeptTransport, refusal

if TYPE_CHECKING:
    import paramiko

# The driver: bash only (its `read -d ''` is what frames the scripts); another login shell
# answers something else and its host keeps using exec channels.
DRIVER = r"""[ -n "$BASH_VERSION" ] || { echo not-bash; exit 0; }
cd "$HOME" 2>/dev/null
echo bash; echo bash >&2
while IFS= read -r -d '' __compute_script; do
  __compute_token=${__compute_script%%$'\n'*}
  __compute_script=${__compute_script#*$'\n'}
  ( unset -v __compute_token; eval "$__compute_script" ) </dev/null
  __compute_rc=$?
  printf '%s %d\n' "$__compute_token" "$__compute_rc"
  printf '%s\n' "$__compute_token" >&2
done
"""
# `&` that starts a background job: not `&&`, `>&`, `<&`, `&>` or `|&`.
_BACKGROUND = re.compile(r"(?<![&<>|])&(?![&>])")


FED_MAX = 64 * 1024  # bytes of stdin sent inside a script; more goes on an exec channel's stdin


def with_stdin(script: str, data: bytes) -> str:
    """`script` reading `data` on its stdin, as one script for the shell: the bytes in base64 (NULs
    included) in a here-document, decoded into a pipe to the script's subshell (whose exit code is
    the pipeline's). bash reads the here-document's lines right after the line that opens it."""
    marker = f"COMPUTE_STDIN_{uuid.uuid4().hex}"
    encoded = base64.encodebytes(data).decode()
    return f"base64 -d <<'{marker}' | (\n{encoded}{marker}\n{script}\n)"


def eligible(script: str) -> bool:
    """Whether a script may run in the persistent shell (no background job that could outlive it)."""
    return _BACKGROUND.search(script) is None and "\0" not in script


class ShellGone(Exception):
    """The persistent shell ended before its marker (the script killed it, e.g. `kill $$`)."""


class Marked:
    """One output stream of the persistent shell, cut at the marker that ends a command."""

    def __init__(self, token: bytes, lines: LineSplitter) -> None:
        self.token = token
        self.lines = lines
        self.kept = BoundedOutput()  # memory stays bounded whatever the command prints
        self.pending = b""
        self.tail: bytes | None = None  # what follows the token, once it came

    def feed(self, data: bytes) -> None:
        if self.tail is not None:
            self.tail += data
            return
        self.pending += data
        found = self.pending.find(self.token)
        if found >= 0:
            self._emit(self.pending[:found])
            self.tail = self.pending[found + len(self.token) :]
            self.pending = b""
            return
        # hold back only what could be the start of a token cut in two by the transport
        keep = next(
            (
                k
                for k in range(min(len(self.token) - 1, len(self.pending)), 0, -1)
                if self.pending.endswith(self.token[:k])
            ),
            0,
        )
        cut = len(self.pending) - keep
        self._emit(self.pending[:cut])
        self.pending = self.pending[cut:]

    def _emit(self, data: bytes) -> None:
        if data:
            self.kept.feed(data)
            self.lines.feed(data)

    @property
    def done(self) -> bool:
        return self.tail is not None and b"\n" in self.tail

    def text(self) -> str:
        self.lines.flush()
        self.kept.feed(self.pending)
        self.pending = b""
        return self.kept.text()


class PersistentShell:
    """The persistent shell of one SSH host; one command at a time (`try_run` says None when busy
    or unavailable, and the caller uses an exec channel)."""

    def __init__(
        self,
        alias: str,
        connect_timeout: float,
        keepalive: float,
        kill: Callable[[str], None] | None = None,
    ) -> None:
        self.alias = alias
        self.kill = kill  # kills the process group of the pid in this file (not through this shell)
        self.connect_timeout = connect_timeout
        self.watch = Watch(alias, keepalive)
        self._lock = threading.Lock()
        self._chan: Channel | None = None
        self.disabled = False  # the login shell is not bash
        self.pidfile: str | None = None  # where the driver wrote its pid: its process group, on Ctrl-C

    def try_run(
        self,
        transport: paramiko.Transport | KeptTransport,
        script: str,
        on_line: LineCallback | None,
        deadline: float | None = None,
    ) -> Result | None:
        """Run `script` (until `deadline`, time.monotonic()); None when the shell is busy or the host
        cannot have one."""
        if self.disabled or not self._lock.acquire(blocking=False):
            return None
        abandoned: tuple[Channel, str | None] | None = None
        try:
            chan = self._channel(transport)
            if chan is None:
                return None
            try:
                result = self._run(chan, script, on_line, deadline)
                if result.timed_out:  # this shell is never used again
                    abandoned, self._chan = (chan, self.pidfile), None
                return result
            except ShellGone as gone:
                self._drop()
                return gone.args[0]  # type: ignore[no-any-return]
            except BaseException:
                self._drop()  # interrupted mid-command: its output would reach the next one
                raise
        finally:
            self._lock.release()
            if abandoned is not None:
                self._abandon(*abandoned)

    def _abandon(self, chan: Channel, pidfile: str | None) -> None:
        """A shell whose command timed out: its process group killed first (while the driver still
        has its pid file), then its channel closed. Not under the lock: the kill opens an exec
        channel, and a server refusing it takes the lock (give_up)."""
        try:
            if pidfile and self.kill is not None:
                self.kill(pidfile)
        finally:
            chan.close()

    def close(self) -> None:
        """Forget the shell (the caller closes the transport, and the channel with it). A kept
        connection's shell that is between two commands goes back to the keeper instead."""
        chan = self._chan
        if isinstance(chan, KeptChannel) and self.pidfile and self._lock.acquire(blocking=False):
            try:
                if not (chan.closed or chan.eof_received or chan.exit_status_ready()):
                    chan.park(self.pidfile)
            finally:
                self._lock.release()
        self._chan = None

    def start(self, transport: paramiko.Transport) -> tuple[Channel, str] | None:
        """(The keeper.) A shell started now and handed over with its pid file, for a run to take
        when it comes; None if the host cannot have one (not bash, no session left)."""
        with self._lock:
            chan = self._channel(transport)
            self._chan = None
            return None if chan is None or self.pidfile is None else (chan, self.pidfile)

    def give_up(self) -> bool:
        """Close the shell's channel for good (the server allows too few sessions to keep it);
        whether there was one. Waits for a command the shell is running."""
        with self._lock:
            self.disabled = True
            held = self._chan is not None and not self._chan.closed
            self._drop()
            return held

    def running(self) -> list[str]:
        """The driver's pid file while it runs (for stopping its commands on Ctrl-C)."""
        chan = self._chan
        alive = chan is not None and not chan.closed and not chan.exit_status_ready()
        return [self.pidfile] if alive and self.pidfile else []

    def _drop(self) -> None:
        if self._chan is not None:
            self._chan.close()
        self._chan = None

    def _channel(self, transport: paramiko.Transport | KeptTransport) -> Channel | None:
        chan = self._chan
        if chan is not None and not chan.closed and not chan.exit_status_ready():
            _drain(chan)  # late output of the previous command: not this one's
            return chan
        self._chan = None
        try:
            if isinstance(transport, KeptTransport):
                chan, pidfile = transport.shell(self.connect_timeout)
                if pidfile is not None:  # the shell a run left, still running its driver
                    _drain(chan)
                    self.pidfile, self._chan = pidfile, chan
                    return chan
            else:
                chan = transport.open_session(timeout=self.connect_timeout)
        except Exception as e:  # paramiko raises SSHException, EOFError or OSError; kept: KeptError
            if refusal(e) is not None:  # the server allows no more sessions (MaxSessions)
                self.disabled = True
                return None
            raise HostError(self.alias, f"lost the connection: {e or type(e).__name__}") from e
        try:
            pidfile = f"/tmp/compute-{uuid.uuid4().hex}.pid"
            # sshd made the driver's shell a session leader: its pid is the group of every command
            # the pid file goes when the driver ends, however: closing the connection ends it by a signal
            cleanup = f"trap 'rm -f {pidfile}' EXIT; trap 'exit 129' HUP TERM PIPE"
            chan.exec_command(f"echo $$ > {pidfile}\n{cleanup}\n{DRIVER}")
            self.pidfile = pidfile
            bash = _answers_bash(chan, self.connect_timeout)
        except Exception as e:  # paramiko raises SSHException, EOFError or OSError
            raise HostError(self.alias, f"lost the connection: {e or type(e).__name__}") from e
        if not bash:
            chan.close()
            self.disabled = True
            return None
        self._chan = chan
        return chan

    def _run(
        self, chan: Channel, script: str, on_line: LineCallback | None, deadline: float | None
    ) -> Result:
        start = time.monotonic()
        token = f"compute-{uuid.uuid4().hex}".encode()
        out = Marked(token, LineSplitter("stdout", on_line))
        err = Marked(token, LineSplitter("stderr", on_line))
        try:
            chan.sendall(token + b"\n" + script.encode() + b"\0")
        except OSError as e:
            raise HostError(self.alias, CLOSED) from e
        if not read(chan, out, err, Framed(chan, script, out, err, start), self.watch, deadline):
            return Result(script, -1, out.text(), err.text(), time.monotonic() - start, timed_out=True)
        assert out.tail is not None
        exit_code = int(out.tail.split(b"\n", 1)[0])
        return Result(script, exit_code, out.text(), err.text(), time.monotonic() - start)


class Framed:
    """A command of the persistent shell is over once both its markers came."""

    def __init__(self, chan: Channel, script: str, out: Marked, err: Marked, start: float) -> None:
        self.chan = chan
        self.script = script
        self.out = out
        self.err = err
        self.start = start

    def over(self, silence: float) -> bool:
        return self.out.done and self.err.done

    def check(self) -> None:
        if self.chan.eof_received or self.chan.closed:
            # the shell itself ended: the script killed it; an exec channel says -1 then
            out, err = self.out.text(), self.err.text()
            raise ShellGone(Result(self.script, -1, out, err, time.monotonic() - self.start))


def _drain(chan: Channel) -> None:
    while chan.recv_ready():
        chan.recv(READ_SIZE)
    while chan.recv_stderr_ready():
        chan.recv_stderr(READ_SIZE)


def _answers_bash(chan: Channel, timeout: float) -> bool:
    """Whether the driver answered `bash` on both streams and nothing else: a login script that
    prints something would print it in every exec channel's output, so such a host keeps those."""
    out = err = b""
    deadline = time.monotonic() + timeout
    while not (out.endswith(b"\n") and err.endswith(b"\n")) and time.monotonic() < deadline:
        if chan.recv_ready():
            out += chan.recv(4096)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(4096)
        elif chan.eof_received or chan.closed:
            break
        else:
            select.select([chan], [], [], 0.2)
    return out == err == b"bash\n"
