"""`slurm` (alias `srun`): a sweep submitted as sbatch jobs, arrays when there are more than a few,
each submission archived and recorded in job.csv before the task reports success."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from compute_platform.context import Outcome
from compute_platform.errors import InputError, Interrupted, TaskError
from compute_platform.hosts import secret_env
from compute_platform.ledger import (
    CONFIRMED,
    NOT_SUBMITTED,
    Event,
    JobPaths,
    JobRecord,
    Ledger,
    Script,
    now,
)
from compute_platform.scheduling import slurm
from compute_platform.scheduling.sbatch import SbatchSpec, check_option, option_name, render
from compute_platform.scheduling.sweep import Job, SweepFields
from compute_platform.tasks.base import Action
from compute_platform.tasks.resume import host_share
from compute_platform.tasks.sweeptask import job_row

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import HostSpec, Inventory, ResolvedConfig

# `array: auto` submits a host's jobs as one array from this many jobs on (fewer stay plain jobs,
# whose ids and log names are simpler to read); `max_parallel` always asks for an array.
AUTO_ARRAY_MIN = 5


@dataclass(frozen=True)
class Batch:
    """One sbatch call: a slice of the host's jobs, as an array or as one plain job."""

    jobs: tuple[Job, ...]
    array: bool


def layout(
    jobs: Sequence[Job], array: bool | str, max_parallel: int | None, max_array_size: int
) -> list[Batch]:
    """Plain jobs or arrays of at most MaxArraySize elements (indexes 0..size-1 each)."""
    use_array = array is True or (array == "auto" and (len(jobs) >= AUTO_ARRAY_MIN or bool(max_parallel)))
    if not use_array:
        return [Batch((job,), False) for job in jobs]
    size = max(1, max_array_size)
    return [Batch(tuple(jobs[i : i + size]), True) for i in range(0, len(jobs), size)]


def resolve_dependency(text: str, submitted: Any) -> str:
    """`afterok:train` -> `afterok:123:456`: a word that is not a job id names an earlier task of the
    run, replaced by the ids it submitted on this host (`submitted(name)`); Slurm syntax passes as is."""
    out: list[str] = []
    for part in _split_keep(text, ",?"):
        if part in (",", "?") or ":" not in part:
            out.append(part)
            continue
        kind, *items = part.split(":")
        ids: list[str] = []
        for item in items:
            ids += [item] if _is_job_id(item) else submitted(item)
        out.append(":".join([kind, *ids]))
    return "".join(out)


def _is_job_id(item: str) -> bool:
    head = item.split("+")[0]  # `after:123+10` waits 10 minutes after 123 started
    return head.replace("_", "").isdigit()


def _split_keep(text: str, separators: str) -> list[str]:
    parts: list[str] = []
    current = ""
    for char in text:
        if char in separators:
            parts += [current, char]
            current = ""
        else:
            current += char
    return [*parts, current]


class Slurm(Action, SweepFields):
    kind = "slurm"

    config: str = "default"
    """A name from configs.yaml, resolved for each host (CPUs, time, partition, GPUs, memory, mail)."""
    array: Union[Literal["auto"], bool] = "auto"  # noqa: UP007
    """`auto`: a job array from 5 jobs on a host (or with `max_parallel`); `true`/`false`: always/never."""
    max_parallel: int | None = Field(default=None, ge=1)
    """At most this many elements of an array run at once (`--array=0-49%N`)."""
    dependency: str | None = None
    """`afterok:<task name>` waits for an earlier task's jobs on the same host; Slurm syntax passes as is."""
    sbatch: dict[str, Union[str, int, float, bool, None]] = Field(default_factory=dict)  # noqa: UP007
    """Extra sbatch options: `{qos: high, constraint: a100}`; `true` is a bare flag, `false` omits it."""
    submit_retry: float = Field(default=300, ge=0)
    """Seconds to keep retrying, with back-off, while the controller is unreachable (0: fail at once)."""
    ray: bool = False
    """The original tool's Ray cluster over the job's nodes. `false` changes nothing; `true` is not
    supported yet (refused by `check`)."""
    heterogeneous: bool = False
    """The original tool's heterogeneous Ray job (CPU nodes and a GPU node): only with `ray: true`."""
    parallel: bool | None = None
    """Accepted from the original tool's playbooks; it has no effect on Slurm jobs (a warning says so)."""

    @classmethod
    def shorthand(cls, raw: Any) -> Any:
        return {"cmd": raw} if isinstance(raw, str) else raw

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, option in value.items():
            problem = check_option(name, option)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _secret_env_export(self) -> Slurm:
        if self.secret_env and any(option_name(k) == "export" for k in self.sbatch):
            raise ValueError("secret_env needs sbatch's default --export=ALL: remove the export option")
        return self

    @field_validator("dependency")
    @classmethod
    def _dependency(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() and c != " " for c in value)):
            raise ValueError("expected a Slurm dependency such as 'afterok:<task name>' or 'afterany:123'")
        return value

    # -- load-time checks --------------------------------------------------------------------

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        where = task.position
        if self.ray or self.heterogeneous:
            raise InputError(
                "ray: true (start a Ray cluster over the job's nodes, as the original "
                "tool did) is not supported yet; it comes with compute's multi-node jobs. Until then use "
                "ray: false and start Ray from your command",
                where,
            )
        if host.platform != "slurm":
            hosts_file = inventory.hosts_file or "hosts.yaml"
            raise InputError(
                f"host '{host.alias}' is not a Slurm cluster "
                f"(platform: {host.platform}). Set `platform: slurm` for it in {hosts_file}, "
                "or use the tmux task on workstations",
                where,
            )
        config = inventory.config(self.config, host.alias, where)
        if config.gpu and (not host.gpu or (host.gpu is not True and config.gpu > host.gpu_count)):
            has = "no GPU (gpu: false)" if not host.gpu else f"{host.gpu_count} GPU(s) per node"
            raise InputError(
                f"config '{self.config}' asks for {config.gpu} GPU(s) on host "
                f"'{host.alias}', which has {has} in the hosts file: pick another config or host",
                where,
            )
        if config.cpus_per_task and host.cpus_per_node and config.cpus_per_task > host.cpus_per_node:
            raise InputError(
                f"config '{self.config}' asks for one task of {config.cpus_per_task} CPUs "
                f"on host '{host.alias}', whose nodes have {host.cpus_per_node} (cpus_per_node): a task "
                "cannot span nodes; use cpus (one task per CPU) or fewer CPUs",
                where,
            )
        for name, value in config.extra.items():
            problem = check_option(name, value)
            if problem:
                raise InputError(f"config '{self.config}': {problem}", where)

    def remote_needs(self) -> frozenset[str]:
        return frozenset({"save_path", "sbatch"})

    def test_scripts(self, ctx: TaskContext, host: Host, cluster: slurm.Cluster) -> list[str]:
        jobs = self.dealt(ctx.host_index, len(ctx.task_hosts))
        batches = layout(jobs, self.array, self.max_parallel, cluster.max_array_size)
        return [render(self.spec(ctx, batch, host.spec, cluster)) for batch in batches]

    def notes(self) -> list[tuple[tuple[str | int, ...], str]]:
        found = self.sweep_notes()
        if self.parallel is not None:
            found.append(
                (("parallel",), "'parallel' has no effect on Slurm jobs (every job is queued at once)")
            )
        return found

    # -- dry run and run ---------------------------------------------------------------------

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        jobs, why_none = host_share(ctx, self)
        if not jobs:
            return [f"# {why_none}"]
        cluster = slurm.Cluster(home="~")  # no connection in a dry run: `~` stays, Slurm's default array size
        batches = layout(jobs, self.array, self.max_parallel, cluster.max_array_size)
        dependency = self._planned_dependency()
        lines = [f"# {describe(batches)}" + (f", --dependency={dependency}" if dependency else "")]
        if host.spec.save_path.startswith("~"):
            lines[0] += " (the log folder's ~ becomes the home directory on submission)"
        if self.secret_env:
            lines.append(
                f"# secret_env {' '.join(self.secret_env)}: read from stdin before sbatch, never shown"
            )
        for batch in batches:
            option = f" --dependency={dependency}" if dependency else ""
            script = render(self.spec(ctx, batch, host.spec, cluster))
            lines.append(f"sbatch --parsable{option} <<'EOF'\n{script}EOF")
        return lines

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        if ctx.options.skip_submitted:
            self.confirm(ctx, host)
        jobs, why_none = host_share(ctx, self)
        if not jobs:
            return Outcome(changed=False, message=why_none)
        ledger = ctx.ledger
        ledger.ensure_writable(ctx.alias)  # nothing is submitted that cannot be recorded
        dependency = (
            resolve_dependency(self.dependency, lambda name: self._submitted(ctx, name))
            if self.dependency
            else ""
        )
        cluster = self.cluster(ctx, host)
        batches = layout(jobs, self.array, self.max_parallel, cluster.max_array_size)
        ids: list[str] = []
        done = 0
        ctx.progress(done, len(jobs))  # a bar in the live view: one sbatch per job is slow to submit
        for batch in batches:
            try:
                # Ctrl-C lets a submission under way end and be recorded, and starts no other one
                with ctx.submission():
                    ids.append(self.submit(ctx, host, ledger, batch, cluster, dependency))
                done += len(batch.jobs)
                ctx.progress(done, len(jobs))
            except (TaskError, Interrupted) as e:
                if not ids:
                    raise
                recorded = f" (already submitted and recorded: {', '.join(ids)})"
                raise TaskError(e.reason + recorded, host=e.host) from e
        ctx.add_submitted(ids)
        return Outcome(message=f"{len(jobs)} jobs: {describe(batches)}, id {', '.join(ids)}")

    def submit(
        self,
        ctx: TaskContext,
        host: Host,
        ledger: Ledger,
        batch: Batch,
        cluster: slurm.Cluster,
        dependency: str,
    ) -> str:
        """One batch through the ledger's submission transaction; a submission whose answer was lost
        is noted with what `confirm` needs to find and record it on resume (its token)."""
        spec = self.spec(ctx, batch, host.spec, cluster)
        text = render(spec)
        token = slurm.new_token()

        def sbatch() -> str:
            retry = slurm.Retry(self.submit_retry, ctx.stopping, ctx.info)
            args = [f"--dependency={dependency}"] if dependency else []
            secrets = secret_env.read(self.secret_env, ctx.alias)
            return slurm.submit(host, text, args, retry, token, secrets)

        def lost(script: str) -> dict[str, Any]:
            info: dict[str, Any] = {"playbook": str(ctx.playbook_path), "task": ctx.task.name}
            info.update(token=token, script=script, array=batch.array, dependency=dependency)
            info.update(indexes=[job.index for job in batch.jobs], digest=self.digest(batch.jobs))
            return info

        return ledger.submit(
            ctx.alias,
            Script(text, "slurm", len(batch.jobs)),
            sbatch,
            lambda job_id, script: self.records(ctx, spec, batch, job_id, script, dependency),
            lost,
        )

    def confirm(self, ctx: TaskContext, host: Host) -> None:
        """Resolve the unconfirmed submissions of an earlier run: one found in Slurm's queue by its
        token is recorded as it was submitted; one not found is forgotten (its points are submitted
        again). A job that ran and ended more than MinJobAge ago (300 s by default) is not found."""
        ledger = ctx.ledger
        pending = ledger.unconfirmed(str(ctx.playbook_path), ctx.task.name, ctx.alias)
        if not pending:
            return
        found = slurm.find_submissions(host, [info["token"] for _, info in pending])
        by_index = {job.index: job for job in self.jobs()}
        for event, info in pending:
            job_id = found.get(info["token"], "")
            staged = ledger.root / info["script"]
            jobs = tuple(by_index[i] for i in info["indexes"] if i in by_index)
            what = f"the submission left unconfirmed at {event.at}"
            if job_id and self.digest(jobs) == info.get("digest"):
                batch = Batch(jobs, info["array"])
                spec = self.spec(ctx, batch, host.spec, self.cluster(ctx, host))
                script = ledger.relative(ledger.commit_script(staged, job_id))
                ledger.append(self.records(ctx, spec, batch, job_id, script, info["dependency"]))
                ctx.info(f"{what} is job {job_id}: now recorded")
            elif job_id:  # the task's sweep or command changed since: its rows cannot be written
                ledger.commit_script(staged, job_id)
                ctx.info(f"{what} is job {job_id}, but the task changed since: not recorded (scancel it?)")
            else:
                ledger.discard(staged)
                ctx.info(f"{what} is not in Slurm's queue: submitting it")
            outcome = CONFIRMED if job_id else NOT_SUBMITTED
            ledger.append_events(
                [Event(now(), ctx.alias, job_id, outcome, json.dumps({"token": info["token"]}))]
            )

    # -- pieces ------------------------------------------------------------------------------

    def digest(self, jobs: Sequence[Job]) -> str:
        """What identifies a batch's points: their indexes and exact command lines."""
        text = "\n".join(f"{job.index}\n{self.command_text(job)}" for job in jobs)
        return hashlib.sha256(text.encode()).hexdigest()

    def cluster(self, ctx: TaskContext, host: Host) -> slurm.Cluster:
        """The login node's answers (home, MaxArraySize), asked once per run."""
        save_path = host.spec.save_path
        return ctx.shared(f"slurm:cluster:{ctx.alias}:{save_path}", lambda: slurm.prepare(host, save_path))

    def spec(self, ctx: TaskContext, batch: Batch, host: HostSpec, cluster: slurm.Cluster) -> SbatchSpec:
        config: ResolvedConfig = ctx.inventory.config(self.config, ctx.alias)
        return SbatchSpec(
            job_name=self.name(ctx.task.name),
            cmd=self.cmd,
            jobs=batch.jobs,
            config=config,
            save_path=cluster.expand(host.save_path),
            array=batch.array,
            max_parallel=self.max_parallel,
            seed_flag=self.seed_flag,
            cpus_per_node=host.cpus_per_node,
            init=host.init,
            env={**host.env, **self.env},
            cd=self.cd,
            options=self.sbatch,
            comment=f"compute: playbook {ctx.playbook_path.name}, task '{ctx.task.name}', host {ctx.alias}",
            secret_env=self.secret_env,
            wandb=host.wandb,
            wandb_dir=cluster.expand(host.wandb_dir),
        )

    def records(
        self,
        ctx: TaskContext,
        spec: SbatchSpec,
        batch: Batch,
        job_id: str,
        script: str,
        dependency: str,
    ) -> list[JobRecord]:
        rows = []
        for task_id, job in enumerate(batch.jobs):
            element = f"{job_id}_{task_id}" if batch.array else job_id
            paths = JobPaths.slurm(spec.save_path, spec.job_name, element)
            submitted = ("slurm", element, paths, script)
            rows.append(job_row(ctx, self, job, submitted, self.config, dependency, spec.wandb or ""))
        return rows

    def _submitted(self, ctx: TaskContext, task_name: str) -> list[str]:
        ids = ctx.submitted(task_name)
        if not ids:
            raise TaskError(
                host=ctx.alias,
                message=f"dependency '{self.dependency}': no earlier task named '{task_name}' "
                f"submitted jobs on {ctx.alias} in this run",
            )
        return ids

    def _planned_dependency(self) -> str:
        if not self.dependency:
            return ""
        return resolve_dependency(self.dependency, lambda name: [f"<ids of task '{name}'>"])


def describe(batches: Sequence[Batch]) -> str:
    arrays = [b for b in batches if b.array]
    if not arrays:
        return f"{len(batches)} sbatch job{'s' if len(batches) != 1 else ''}"
    sizes = "+".join(str(len(b.jobs)) for b in arrays)
    return f"{len(arrays)} job array{'s' if len(arrays) != 1 else ''} ({sizes} elements)"
