"""One small hierarchy of domain errors. Library code raises these; only the CLI prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class ComputeError(Exception):
    """Base of every error the user should see as one clean message: `reason`, and the `host` it is
    about when there is one; `message` is the two as printed (`HOST: reason`)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, host: str | None = None) -> None:
        self.host = host
        self.reason = message
        self.message = f"{host}: {message}" if host else message
        super().__init__(self.message)

    def about(self, host: str) -> str:
        """The message for a line that already names `host`: the reason alone when it is that host's."""
        return self.reason if self.host == host else self.message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Position:
    """Where in which file something was found (1-based line and column, 0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}" if self.column else f"{self.file}:{self.line}"
        return self.file


class InputError(ComputeError):
    """A YAML file, a command-line argument or a reference in them is wrong (exit code 2): the `reason`,
    where it was found (`position`: file, line, column) and what it is about (`subject`, e.g. "task
    'train'"), printed as `file:line:col: subject: reason`."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, position: Position | None = None, subject: str | None = None) -> None:
        self.position = position
        self.subject = subject
        said = f"{subject}: {message}" if subject else message
        super().__init__(f"{position}: {said}" if position else said)
        self.reason = message  # without the position and the subject

    def within(self, subject: str) -> InputError:
        """This error as part of `subject` (the caller knows what the checked value belongs to)."""
        return self if self.subject else InputError(self.reason, self.position, subject)


class HostError(ComputeError):
    """A host cannot be reached or used: connection refused, timeout, authentication, host key."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message, host)


class HostKeyChanged(HostError):
    """The host presented a key different from the one recorded: refuse, never overwrite."""


class Finished(Protocol):
    """What CommandFailed needs of a finished command (hosts.base.Result): errors stay a leaf."""

    @property
    def exit_code(self) -> int: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def duration(self) -> float: ...
    def tail(self) -> str: ...


class CommandFailed(ComputeError):
    """A command exited non-zero (raised only when `check=True`); carries the whole result."""

    def __init__(self, host: str, result: Finished, what: str | None = None) -> None:
        self.result = result
        tail = result.tail()
        head = what or f"command failed with exit code {result.exit_code}"
        if result.timed_out:
            head = what or f"command timed out after {result.duration:.0f} s"
        super().__init__(head + (f"\n{tail}" if tail else ""), host)


class TaskError(ComputeError):
    """A task could not do its job on a host, for a reason that is not a plain command failure."""


class Interrupted(ComputeError):
    """The run is stopping (Ctrl-C): this host starts nothing new."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, host: str) -> None:
        super().__init__("interrupted", host)


class LedgerError(ComputeError):
    """The local archive cannot be written: nothing may be submitted that cannot be recorded."""
