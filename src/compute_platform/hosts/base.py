"""The Host interface: local and SSH hosts differ only in how bytes travel."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from compute_platform.errors import CommandFailed, Interrupted
from compute_platform.hosts import shell
from compute_platform.hosts.remote import Login

if TYPE_CHECKING:
    from compute_platform.input.inventory import HostSpec

# Called with ("stdout" | "stderr", line) for every complete line, as it arrives.
LineCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class Result:
    """What a command did: exit code (-1 when killed by a timeout), its output and its duration."""

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


class LineSplitter:
    """Turns chunks of bytes into complete decoded lines for a LineCallback."""

    def __init__(self, stream: str, callback: LineCallback | None) -> None:
        self.stream = stream
        self.callback = callback
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        if self.callback is None:
            return
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        for line in complete:
            self.callback(self.stream, line.decode(errors="replace"))

    def flush(self) -> None:
        if self.callback is not None and self.buffer:
            self.callback(self.stream, self.buffer.decode(errors="replace"))
        self.buffer = b""


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
