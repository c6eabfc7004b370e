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
    from compute_platform.hosts import Host
    from compute_platform.scheduling.code import Snapshot
    from compute_platform.scheduling.sweep import CodeSource, Job, SweepFields


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
        code=placed_code(ctx)[1],
    )


@functools.lru_cache(maxsize=16)
def _absolute(path: str) -> str:
    """The hosts file's absolute path, resolved once per run, not once per row (a 100,000-point
    sweep spent 7 s in realpath)."""
    return str(Path(path).resolve())


def placed_code(ctx: TaskContext) -> tuple[str, str]:
    """(where the task's jobs start on this host, the snapshot's hash): what `place_code` or
    `plan_code` found for this task and host; ("", "") for a task without `code:`."""
    found: tuple[str, str] = ctx.shared(f"code:placed:{ctx.alias}:{ctx.task.index}", lambda: ("", ""))
    return found


def place_code(ctx: TaskContext, fields: SweepFields, host: Host, dry_run: bool = False) -> None:
    """Pack the task's code once per run and put it on this host (once per run and host: one round
    trip when it is there); `dry_run`: only say where it would be."""
    from compute_platform.scheduling import code

    source = fields.code
    if source is None:
        return
    snap: Snapshot = ctx.shared(f"code:pack:{source!r}", lambda: _packed(ctx, source, not dry_run))
    code_dir = host.spec.code_dir

    def place() -> tuple[str, str]:
        if dry_run:
            return f"{code_dir.rstrip('/')}/{snap.digest}", snap.digest
        from compute_platform.ledger import snapshots

        placed = code.ensure(host, ctx.ledger, snap, code_dir)
        snapshots.sent(ctx.ledger, ctx.alias, code_dir, snap.digest)
        if placed.sent:
            linked = f"; the others linked from {placed.base}" if placed.base else ""
            ctx.info(f"code {snap.digest}: sent {placed.files} file(s), {placed.sent} bytes{linked}")
        else:
            ctx.info(f"code {snap.digest}: already on the host, nothing sent")
        return placed.path, snap.digest

    where = ctx.shared(f"code:{ctx.alias}:{code_dir}:{snap.digest}:{dry_run}", place)
    ctx.shared(f"code:placed:{ctx.alias}:{ctx.task.index}", lambda: where)


def _packed(ctx: TaskContext, source: CodeSource, keep: bool) -> Snapshot:
    from compute_platform.ledger import snapshots
    from compute_platform.scheduling import code

    snap = code.pack(source, ctx.playbook_path, [ctx.ledger.root])
    if keep:
        snapshots.store(ctx.ledger, snap.digest, snap.manifest(), code.tarball(snap), snap.diff)
    return snap


def code_cd(cd: str | None, placed: str) -> str | None:
    """The jobs' directory with a snapshot: the snapshot, or `cd` within it when `cd` is relative."""
    if not placed:
        return cd
    if cd and (cd.startswith(("/", "~"))):
        return cd
    return f"{placed}/{cd}" if cd else placed
