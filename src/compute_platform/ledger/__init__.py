"""The ledger: every job ever submitted, in archive/job.csv, and the archive of its scripts. This package
is the only code that knows that layout; the rest of compute uses the names below."""

from compute_platform.ledger.records import (
    CONFIRMED,
    LEDGER_VERSION,
    NOT_SUBMITTED,
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
from compute_platform.ledger.store import EVENTS_FILE, JOBS_FILE, STATES_FILE, Ledger

__all__ = [
    "CONFIRMED",
    "EVENTS_FILE",
    "JOBS_FILE",
    "LEDGER_VERSION",
    "NOT_SUBMITTED",
    "STATES_FILE",
    "UNCONFIRMED",
    "Ended",
    "Event",
    "JobPaths",
    "JobRecord",
    "Ledger",
    "Script",
    "git_state",
    "new_run_id",
    "now",
    "renewed",
    "safe_name",
]
