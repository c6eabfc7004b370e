"""What `compute jobs / logs / cancel / resubmit` need from a scheduler (slurm, tmux).

Each scheduler module provides one object with this shape; `BACKENDS` in jobs/query.py is the literal table
scheduler name -> backend. Every method does ONE round trip per host for all the records it is given
(the states' query flies with a refresh's other questions to the host: one round trip in all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from compute_platform.hosts import Host
    from compute_platform.hosts.shell import Part
    from compute_platform.ledger import JobRecord, Ledger

# The states shown to users, the same for every scheduler.
PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMEOUT = "TIMEOUT"
UNKNOWN = "UNKNOWN"
# Scheduler ends that say more than the state shown (FAILED or CANCELLED): kept as the row's reason,
# so that an out-of-memory kill or a node failure reads as such, also once the scheduler forgot the job
TELLING_ENDS = frozenset(
    {
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "SPECIAL_EXIT",
        "REVOKED",
        "fail_on_log",
    }
)

# Why a tmux job failed without an error of its own: what a retry policy calls `lost`.
SESSION_KILLED = "stopped with its tmux session"
NO_STATUS = "ended without an exit status (tmux session killed or host rebooted)"
NEVER_STARTED = "never started: its tmux session ended"
LOST_REASONS = (SESSION_KILLED, NO_STATUS, NEVER_STARTED)
# The reason of a job that stopped itself because its output matched a `fail_on_log` pattern
STOPPED_ON_LOG = "fail_on_log"


@dataclass(frozen=True)
class JobState:
    state: str
    exit_code: int | None = None
    reason: str = ""
    # False while the scheduler may still change an ended state (a Slurm job the controller still
    # knows can be requeued after a preemption or a node failure): only settled ends are kept
    settled: bool = field(default=True, compare=False)
    attempt: int | None = None  # the attempt the job is in (or ended in), where the job says


@dataclass(frozen=True)
class Again:
    """A retry of one ended job (compute watch): the attempt the new job starts as, why, and the
    sbatch options its script is given (`{"mem": "8G"}`)."""

    attempt: int
    reason: str
    overrides: Mapping[str, str] = field(default_factory=dict)


class Backend(Protocol):
    def states_part(self, records: Sequence[JobRecord]) -> Part:
        """The ONE query of the host that tells the live state of every record (the scheduler's
        queue, the exit-status files the jobs write when they end): it flies with the other
        questions of a refresh to that host (`Host.ask`)."""
        ...

    def read_states(self, records: Sequence[JobRecord], answer: str) -> dict[str, JobState]:
        """Every record's state (by job_id) from what `states_part` printed."""
        ...

    def cancel(self, host: Host, records: Sequence[JobRecord]) -> None:
        """Stop these jobs (one call for all of them)."""
        ...

    def resubmit(
        self,
        host: Host,
        records: Sequence[JobRecord],
        ledger: Ledger,
        again: Mapping[str, Again] | None = None,
    ) -> list[JobRecord]:
        """Submit these jobs again from their archived scripts; return the new ledger rows
        (already appended), each with `replaces` set to the job it replaces. `again` (by job id):
        retries, each submitted alone, in its own run, with its attempt and resources."""
        ...
