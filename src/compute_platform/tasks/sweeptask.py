"""What the `slurm` and `tmux` tasks share beyond their fields (scheduling/sweep.py): the one place
a submitted job's row of job.csv is made."""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from compute_platform.ledger import JobPaths, JobRecord, now

if TYPE_CHECKING:
    from compute_platform.context import TaskContext
    from compute_platform.scheduling.sweep import Job, SweepFields


def job_row(
    ctx: TaskContext,
    fields: SweepFields,
    job: Job,
    submitted: tuple[str, str, JobPaths, str],
    config: str,
    dependency: str = "",
    wandb: str = "",
    at: str = "",
) -> JobRecord:
    """The row of one job of a sweep: `submitted` is (scheduler, job id, its files, archived script);
    `at`: when it was submitted (default: now)."""
    scheduler, job_id, paths, script = submitted
    commit, dirty = ctx.git_state()
    hosts_file = ctx.inventory.hosts_file
    return JobRecord(
        submitted_at=at or now(),
        playbook=str(ctx.playbook_path),
        task=ctx.task.name,
        host=ctx.alias,
        scheduler=scheduler,
        job_id=job_id,
        job_name=fields.name(ctx.task.name),
        config=config,
        command=fields.command_text(job),
        args=shlex.join(job.args),
        sweep=json.dumps(job.point) if job.point else "",
        seeds=",".join(str(s) for s in job.seeds),
        script=script,
        log_out=paths.out,
        log_err=paths.err,
        status_file=paths.status,
        git_commit=commit,
        git_dirty=dirty,
        run_id=ctx.run_id,
        job_index=str(job.index),
        hosts_file=_absolute(hosts_file) if hosts_file else "",
        dependency=dependency,
        wandb=wandb,
    )


@functools.lru_cache(maxsize=16)
def _absolute(path: str) -> str:
    """The hosts file's absolute path, resolved once per run, not once per row (a 100,000-point
    sweep spent 7 s in realpath)."""
    return str(Path(path).resolve())
