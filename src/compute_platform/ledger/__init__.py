"""The ledger: every job ever submitted, in archive/job.csv, and the archive of its scripts. This package
is the only code that knows that layout; the rest of compute uses the names below."""

from compute_platform.ledger.index import TaskCount
from compute_platform.ledger.records import (
    CANCELLED_EVENT,
    CONFIRMED,
    LEDGER_VERSION,
    NOT_SUBMITTED,
    NOTIFIED_EVENT,
    RESUBMITTED_EVENT,
    UNCONFIRMED,
    Ended,
    Event,
    JobPaths,
    JobRecord,
    Script,
    git_state,
    new_run_id,
    now,
    renewed,
    safe_name,
)
from compute_platform.ledger.store import EVENTS_FILE, INDEX_FILE, JOBS_FILE, STATES_FILE, Ledger

__all__ = [
    "CANCELLED_EVENT",
    "CONFIRMED",
    "EVENTS_FILE",
    "INDEX_FILE",
    "JOBS_FILE",
    "LEDGER_VERSION",
    "NOTIFIED_EVENT",
    "NOT_SUBMITTED",
    "RESUBMITTED_EVENT",
    "STATES_FILE",
    "UNCONFIRMED",
    "Ended",
    "Event",
    "JobPaths",
    "JobRecord",
    "Ledger",
    "Script",
    "TaskCount",
    "git_state",
    "new_run_id",
    "now",
    "renewed",
    "safe_name",
]
