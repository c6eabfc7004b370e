"""`tmux`: a sweep run on a workstation without a scheduler, in a tmux session. The same fields and
expansion as `slurm`, plus `parallel`, `max_parallel` and `gpus`; every job is recorded in the ledger."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Union

from pydantic import Field, field_validator, model_validator

from compute_platform.context import Outcome
from compute_platform.errors import InputError
from compute_platform.hosts import secret_env
from compute_platform.ledger import JobPaths, JobRecord, Script
from compute_platform.scheduling import tmux
from compute_platform.scheduling.recovery import LOST, Policy
from compute_platform.scheduling.sweep import Job, SweepFields
from compute_platform.tasks.base import Action
from compute_platform.tasks.resume import host_share
from compute_platform.tasks.sweeptask import code_cd, job_row, place_code, placed_code

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec


class Tmux(Action, SweepFields):
    kind = "tmux"

    parallel: bool | None = None
    """`false`: one job at a time, in order; `true`: several at once. Default: true when `max_parallel`
    or `gpus` is given."""
    max_parallel: int | None = Field(default=None, ge=1)
    """At most this many jobs at once (each "lane" runs its share in order)."""
    config: str | None = None
    """Accepted so that a `slurm` task moves to a workstation by changing its key: checked against
    configs.yaml and recorded in job.csv, but nothing reserves CPUs, memory or time here."""
    gpus: tuple[Union[int, str], ...] = ()  # noqa: UP007
    """GPU ids; each running job gets one to itself as `CUDA_VISIBLE_DEVICES` (one job per GPU at a time)."""

    ray: bool = False
    """A one-node Ray cluster per job, started in the job's lane before its command (a head of its
    own: ports and temp dir of the job, `RAY_ADDRESS` exported), stopped when the job ends."""

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value

    @field_validator("gpus")
    @classmethod
    def _gpu_ids(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for gpu in value:
            text = str(gpu)
            if isinstance(gpu, bool) or (isinstance(gpu, int) and gpu < 0) or not text:
                raise ValueError(f"a GPU is an index >= 0 or a device id, got {gpu!r}")
            if any(c.isspace() or c == "," for c in text):
                raise ValueError(f"one GPU per list item, got {text!r}")
        if len({str(g) for g in value}) != len(value):
            raise ValueError("GPUs must be distinct: each running job gets one of them to itself")
        return value

    @model_validator(mode="after")
    def _parallel_or_not(self) -> Tmux:
        if self.parallel is False and self.max_parallel is not None:
            raise ValueError("max_parallel limits parallel jobs, and parallel is false: remove one of them")
        if self.parallel is False and len(self.gpus) > 1:
            raise ValueError(
                "with parallel: false one job runs at a time, on one GPU: list one GPU or remove parallel"
            )
        return self

    @model_validator(mode="after")
    def _recovery(self) -> Tmux:
        if self.retry and self.retry.checkpoint:
            raise ValueError("retry.checkpoint acts before a Slurm time limit: tmux jobs have none")
        return self

    def policy(self) -> Policy | None:
        """A workstation's jobs are not preempted and have no limits: what is retried by default
        is a job lost with its session or its host (`lost`)."""
        found = super().policy()
        if found and self.retry and "on" not in self.retry.model_fields_set:
            found = dataclasses.replace(found, on=(LOST,))
        return found

    def remote_needs(self) -> frozenset[str]:
        return frozenset({"save_path", "tmux", *(["ray"] if self.ray else [])})

    def notes(self) -> list[tuple[tuple[str | int, ...], str]]:
        found = self.sweep_notes()
        if self.seeds:
            found.append(
                (
                    ("seeds",),
                    "the original tool's tmux task ignored seeds (it ran each command once); "
                    "compute runs each command once per seed, with $seed set",
                )
            )
        return found

    @property
    def runs_parallel(self) -> bool:
        if self.parallel is not None:
            return self.parallel
        return self.max_parallel is not None or bool(self.gpus)

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        if self.config is not None:
            inventory.config(self.config, host.alias, task.position)
        count = host.gpu
        if isinstance(count, bool):
            return
        beyond = [g for g in self.gpus if isinstance(g, int) and g >= count]
        if beyond:
            raise InputError(
                f"gpus {beyond} do not exist on host '{host.alias}', which has "
                f"gpu: {count} in the hosts file (GPUs are numbered from 0)",
                task.position,
            )

    # -- what runs ---------------------------------------------------------------------------------

    def lanes(self) -> int:
        return tmux.max_lanes(self.runs_parallel, self.max_parallel, [str(g) for g in self.gpus])

    def launcher(self, ctx: TaskContext, host: Host, jobs: list[Job]) -> str:
        code, _ = placed_code(ctx)
        spec = tmux.LauncherSpec(
            task=ctx.task.name,
            cmd=self.cmd,
            jobs=tuple(jobs),
            seed_flag=self.seed_flag,
            init=host.spec.init,
            env={**host.spec.env, **self.env, **({"COMPUTE_CODE": code} if code else {})},
            cd=code_cd(self.cd, code) or default_cd(host),
            lanes=self.lanes(),
            gpus=tuple(str(g) for g in self.gpus),
            secret_env=self.secret_env,
            wandb=host.spec.wandb,
            wandb_dir=host.spec.wandb_dir,
            ray=self.ray,
            policy=self.policy(),
            metrics=self.metrics.sources() if self.metrics else None,
        )
        return tmux.render_launcher(spec)

    def session_base(self, ctx: TaskContext) -> str:
        return tmux.session_base(self.name(ctx.task.name))

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        jobs, why_none = host_share(ctx, self)
        if not jobs:
            return [f"# {why_none}"]
        base = self.session_base(ctx)
        root = host.spec.save_path
        lanes = tmux.lane_count(self.lanes(), len(jobs))
        place_code(ctx, self, host, dry_run=True)
        text = self.launcher(ctx, host, jobs)
        return [
            f"# tmux session {base} (or {base}-2, {base}-3... if taken): {len(jobs)} jobs, "
            f"{lanes} at a time; files in {root}/{base}/",
            f"# the launcher, written to {root}/{base}/{tmux.LAUNCHER}:\n{text}",
            host.script(tmux.launch_script(root, base)),
        ]

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        jobs, why_none = host_share(ctx, self)
        if not jobs:
            return Outcome(changed=False, message=why_none)
        place_code(ctx, self, host)  # the jobs run the code as it is now, whatever changes later
        ctx.progress(0, len(jobs))  # one round trip: the bar fills when the launch is recorded
        with ctx.submission():  # Ctrl-C waits until the launch is recorded
            outcome = self.launch(ctx, host, jobs)
        ctx.progress(len(jobs), len(jobs))
        return outcome

    def launch(self, ctx: TaskContext, host: Host, jobs: list[Job]) -> Outcome:
        ledger = ctx.ledger
        ledger.ensure_writable(host.alias)
        text = self.launcher(ctx, host, jobs)
        base = self.session_base(ctx)
        launched: list[tmux.Launched] = []

        def start() -> str:
            taken = tmux.archived_sessions(ledger, host.alias, base)
            secrets = secret_env.read(self.secret_env, host.alias)
            root, timeout = host.spec.save_path, ctx.timeout or 120
            launched.append(
                tmux.launch(host, text, root, base, taken=taken, timeout=timeout, secrets=secrets)
            )
            return launched[0].session

        def rows(session: str, script: str) -> list[JobRecord]:
            return [self.record(ctx, host, job, launched[0], script) for job in jobs]

        ledger.submit(host.alias, Script(text, tmux.SUFFIX, len(jobs)), start, rows)
        started = launched[0]
        if started.session != base:
            ctx.info(
                f"tmux session name '{base}' is taken (by a session or an earlier launch): "
                f"using '{started.session}'"
            )
        lanes = tmux.lane_count(self.lanes(), len(jobs))
        ctx.info(
            f"tmux session {started.session}: {len(jobs)} jobs, {lanes} at a time; "
            f"logs in {started.folder}/<index>.log"
        )
        return Outcome(message=f"{len(jobs)} jobs started in tmux session {started.session}")

    def record(
        self, ctx: TaskContext, host: Host, job: Job, started: tmux.Launched, script: str
    ) -> JobRecord:
        paths = JobPaths.tmux(started.folder, str(job.index))
        submitted = (tmux.SCHEDULER, tmux.job_id(started.session, job.index), paths, script)
        return job_row(ctx, self, job, submitted, self.config or "", wandb=host.spec.wandb or "")


def default_cd(host: Host) -> str:
    """Where jobs run without `cd`: where `compute run` was started for localhost (as `cmd` does),
    the home directory on an SSH host (as a login would)."""
    return os.getcwd() if host.spec.is_local else "~"
