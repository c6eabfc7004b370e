"""What a task is and what it may use while it runs on one host: a playbook's Task, the TaskAction
protocol every task type implements, the TaskContext protocol (the runner implements it), the options of
a run, a task's Outcome and the run's summaries. A leaf: tasks, the loader and reporters import this
module, never the runner; it imports nothing of the package at run time but errors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from compute_platform.errors import Position

if TYPE_CHECKING:
    from compute_platform.hosts import Host
    from compute_platform.hosts.base import LineCallback
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec
    from compute_platform.ledger import Ledger

T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    forks: int = 10
    fail_fast: bool = False
    limit: tuple[str, ...] = ()
    archive: Path = Path("archive")
    verbose: bool = False
    skip_submitted: bool = False  # slurm/tmux: leave out the sweep points the ledger already has


class Status(str, Enum):
    """How a task ended on one host, as reporters show it and count it."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: the host failed an earlier task

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Outcome:
    """What a task did on one host (failures are raised as ComputeError instead)."""

    changed: bool = True
    message: str = ""


class TaskAction(Protocol):
    """What every task type provides (tasks.base.Action implements it with pydantic)."""

    kind: ClassVar[str]

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        """Cross-checks against the inventory, before any connection (raise InputError)."""

    def remote_needs(self) -> frozenset[str]:
        """What `compute check --remote` must probe on a host for this task."""

    def test_scripts(self, ctx: TaskContext, host: Host, cluster: Any) -> list[str]:
        """The job scripts `check --remote` asks the scheduler about (`sbatch --test-only`)."""

    def notes(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Warnings about what loads but may not run as a reader expects, each with its key path."""

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        """What `--dry-run` prints for this host: the commands, exactly as they would run."""

    def run(self, ctx: TaskContext, host: Host) -> Outcome: ...


@dataclass(frozen=True)
class Task:
    """One task of a playbook, validated: its action and the hosts it runs on, in order."""

    index: int
    name: str
    kind: str
    action: TaskAction
    hosts: tuple[str, ...]
    position: Position
    ignore_errors: bool = False
    timeout: float | None = None


class TaskContext(Protocol):
    """Everything a task sees of the run while it works on one host."""

    @property
    def alias(self) -> str: ...
    @property
    def task(self) -> Task: ...
    @property
    def task_hosts(self) -> tuple[str, ...]:
        """The task's hosts in this run (after --limit and earlier failures), in playbook order."""

    @property
    def host_index(self) -> int: ...
    @property
    def options(self) -> RunOptions: ...
    @property
    def playbook_path(self) -> Path:
        """The playbook file being run (absolute): with the task's name, it names a sweep in the ledger."""

    @property
    def inventory(self) -> Inventory: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def stopping(self) -> threading.Event:
        """Set by Ctrl-C: waits (retry pauses) end at once."""

    @property
    def ledger(self) -> Ledger:
        """The run's ledger, opened once."""

    @property
    def run_id(self) -> str: ...

    def git_state(self) -> tuple[str, str]:
        """(commit, dirty) of the playbook's repository, read once per run."""

    def submission(self) -> AbstractContextManager[None]:
        """Around one submission and its record: none starts once the run is stopping, and Ctrl-C
        waits for those under way, so that a job the scheduler took is always recorded."""

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """A value made once per run and shared by the tasks and hosts (a cluster's answers)."""

    def submitted(self, task_name: str) -> list[str]:
        """The job ids an earlier task of this run submitted on this host (for dependencies)."""

    def add_submitted(self, ids: Sequence[str]) -> None: ...
    def output(self, host: Host) -> LineCallback: ...
    def info(self, text: str) -> None: ...
    def progress(self, done: int, total: int | None, unit: str = "jobs") -> None: ...


@dataclass
class HostSummary:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    error: str = ""


@dataclass
class RunSummary:
    hosts: dict[str, HostSummary] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.interrupted or any(h.failed for h in self.hosts.values())
