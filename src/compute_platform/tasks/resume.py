"""`compute run --skip-submitted` (alias `--resume`): the sweep tasks leave out the points the ledger
already holds, so that a run stopped half-way (Ctrl-C, a lost connection, a scheduler outage) is
completed by running it again, without submitting anything twice.

A point is identified by the playbook file, the task name, the host, the job's index in the sweep and
its exact command lines (so a point whose command changed is submitted again)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compute_platform.ledger import Ledger

if TYPE_CHECKING:
    from compute_platform.runner import RunContext
    from compute_platform.scheduling.sweep import Job, SweepFields


def unsubmitted(ctx: RunContext, fields: SweepFields, jobs: list[Job]) -> list[Job]:
    """The jobs still to submit on this host: all of them unless the run skips submitted points."""
    if not ctx.options.skip_submitted or not jobs:
        return jobs
    done = Ledger(ctx.options.archive).submitted_points(
        str(ctx.playbook.path.resolve()), ctx.task.name, ctx.alias
    )
    todo = [job for job in jobs if (str(job.index), fields.command_text(job)) not in done]
    if len(todo) < len(jobs):
        ctx.info(f"{len(jobs) - len(todo)} of {len(jobs)} points already submitted (in the ledger): skipped")
    return todo


def nothing_to_do(jobs: list[Job]) -> str:
    """Why a host has no job to submit."""
    return "no job for this host (scatter)" if not jobs else "every point was already submitted"
