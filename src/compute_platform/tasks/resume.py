"""`compute run --skip-submitted` (alias `--resume`): the sweep tasks leave out the points the ledger
already holds, so that a run stopped half-way (Ctrl-C, a lost connection, a scheduler outage) is
completed by running it again, without submitting anything twice.

A point is identified by the playbook file, the task name, the host (any host, for a scattered sweep:
see host_share), the job's index in the sweep and
its exact command lines (so a point whose command changed is submitted again). The points that a feed
of the cluster is still to submit (a sweep larger than the submit limit) count as submitted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compute_platform.ledger import feeds
from compute_platform.scheduling.sweep import scatter

if TYPE_CHECKING:
    from compute_platform.context import TaskContext
    from compute_platform.scheduling.sweep import Job, SweepFields


def host_share(ctx: TaskContext, fields: SweepFields) -> tuple[list[Job], str]:
    """(the jobs this host is to submit, why there is none when so). Without `scatter` every
    host runs every point, and `--skip-submitted` leaves out what this host submitted already. With
    `scatter` a point is the same point whichever host ran it: the points any host submitted are left
    out first and the rest is dealt round-robin over the task's hosts of this run, from ONE reading of
    the ledger for the whole task, so that every host deals the same list (a host left out by `--limit`
    or by an earlier failure does not get its share submitted twice later)."""
    jobs = fields.jobs()
    if not fields.scatter:
        return unsubmitted(ctx, fields, jobs), ALL_SUBMITTED
    if ctx.options.skip_submitted:
        done = ctx.shared(f"resume:submitted:{ctx.task.index}", lambda: _submitted(ctx, None))
        jobs = _left(ctx, fields, jobs, done)
    return scatter(jobs, ctx.host_index, len(ctx.task_hosts)), NOT_DEALT if jobs else ALL_SUBMITTED


def unsubmitted(ctx: TaskContext, fields: SweepFields, jobs: list[Job]) -> list[Job]:
    """The jobs still to submit on this host: all of them unless the run skips submitted points."""
    if not ctx.options.skip_submitted or not jobs:
        return jobs
    return _left(ctx, fields, jobs, _submitted(ctx, ctx.alias))


def _left(ctx: TaskContext, fields: SweepFields, jobs: list[Job], done: set[tuple[str, str]]) -> list[Job]:
    """The jobs whose point is not in `done`, saying how many were."""
    todo = [job for job in jobs if (str(job.index), fields.command_text(job)) not in done]
    if len(todo) < len(jobs):
        ctx.info(f"{len(jobs) - len(todo)} of {len(jobs)} points already submitted (in the ledger): skipped")
    return todo


def _submitted(ctx: TaskContext, host: str | None) -> set[tuple[str, str]]:
    """The points in the ledger, and those an open feed is still to submit (ledger/feeds.py)."""
    playbook, task = str(ctx.playbook_path), ctx.task.name
    return ctx.ledger.submitted_points(playbook, task, host) | feeds.planned_points(
        ctx.ledger, playbook, task, host
    )


ALL_SUBMITTED = "every point was already submitted"
NOT_DEALT = "no job for this host (scatter)"
