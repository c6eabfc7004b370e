"""`slurm` (alias `srun`): a sweep submitted as sbatch jobs, arrays when there are more than a few,
each submission archived and recorded in job.csv before the task reports success. A sweep larger
than the user's submit limit leaves what does not fit to the cluster itself (scheduling/feed.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from compute_platform.context import Outcome
from compute_platform.errors import ComputeError, HostError, InputError, Interrupted, Position, TaskError
from compute_platform.hosts import secret_env
from compute_platform.input.spec import ResolvedConfig
from compute_platform.ledger import (
    CONFIRMED,
    NOT_SUBMITTED,
    Event,
    JobPaths,
    JobRecord,
    Ledger,
    Script,
    feeds,
    now,
)
from compute_platform.scheduling import feed, slurm
from compute_platform.scheduling.recovery import parse_time
from compute_platform.scheduling.sbatch import SbatchSpec, check_option, option_name, render
from compute_platform.scheduling.sweep import Job, SweepFields
from compute_platform.tasks.base import Action
from compute_platform.tasks.resume import host_share
from compute_platform.tasks.sweeptask import code_cd, job_row, place_code, placed_code

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

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
    if not use_arrays(len(jobs), array, max_parallel):
        return [Batch((job,), False) for job in jobs]
    size = max(1, max_array_size)
    return [Batch(tuple(jobs[i : i + size]), True) for i in range(0, len(jobs), size)]


def use_arrays(jobs: int, array: bool | str, max_parallel: int | None) -> bool:
    return array is True or (array == "auto" and (jobs >= AUTO_ARRAY_MIN or bool(max_parallel)))


def chunks(
    jobs: Sequence[Job], array: bool | str, max_parallel: int | None, max_array_size: int, room: int
) -> list[list[Batch]]:
    """The sweep in chunks that fit in `room` queued jobs (feed.chunk_sizes), each laid out in
    batches: arrays or not as for the whole sweep (a short last chunk stays an array)."""
    arrays = use_arrays(len(jobs), array, max_parallel)
    found, start = [], 0
    for size in feed.chunk_sizes(len(jobs), room):
        found.append(layout(jobs[start : start + size], arrays, max_parallel, max_array_size))
        start += size
    return found


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


def layout_problem(config: ResolvedConfig, host: HostSpec) -> str | None:
    """Why the hosts file says no node of `host` can hold the config's layout (None: it may; the
    cluster itself is asked by `check --remote`)."""
    if config.gpu and (not host.gpu or (host.gpu is not True and config.gpu > host.gpu_count)):
        has = "no GPU (gpu: false)" if not host.gpu else f"{host.gpu_count} GPU(s) per node"
        return f"{config.gpu} GPU(s) per node on host '{host.alias}', which has {has} in the hosts file: pick another config or host"
    per_node, task = host.cpus_per_node, config.cpus_per_task or 1
    if not per_node:
        return None
    where = f"on host '{host.alias}', whose nodes have {per_node} (cpus_per_node)"
    if task > per_node:
        return (
            f"tasks of {task} CPUs {where}: a task cannot span nodes; use cpus (one task per CPU), "
            "tasks_per_node or fewer CPUs"
        )
    if config.tasks_per_node and config.tasks_per_node * task > per_node:
        return (
            f"{config.tasks_per_node} tasks of {task} CPU(s) on each node, {config.tasks_per_node * task} "
            f"CPUs, {where}: ask for fewer tasks per node and more nodes"
        )
    return None


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
    launcher: Literal["none", "srun", "torchrun"] = "none"
    """How the command starts over the job's nodes: `none` once, on the first node; `srun` as every
    task (RANK, LOCAL_RANK, WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT exported); `torchrun` one per
    node (`--nproc-per-node`: the config's tasks_per_node, else its GPUs per node, else 1), c10d
    rendezvous on the first node."""
    ray: bool = False
    """A Ray cluster over the job's nodes before the command starts (the original tool's key): the
    head on the first node, a worker on each other one, ports and temp dir of the job, `RAY_ADDRESS`
    exported; stopped when the job ends."""
    heterogeneous: bool = False
    """The original tool's heterogeneous job: the config's CPU nodes, then one node with its GPUs
    (its `gpu`, `time` and `partition`), as one hetjob; without GPUs in the config, a plain job."""
    components: list[str] = Field(default_factory=list)
    """A heterogeneous job (`#SBATCH hetjob`): the configs of its components, in order (instead of
    `config`); the command (and Ray's head) runs on the first component's first node."""
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
        self.check_components(where)
        if self.ray and self.launcher != "none":
            raise InputError(
                f"ray: true starts Ray on every node and runs the command once, on the first: "
                f"launcher: {self.launcher} would start it on every task; give one or the other",
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
        for config in self.configs(inventory, host.alias, where):
            problem = layout_problem(config, host)
            if problem:
                raise InputError(f"config '{config.name}' asks for {problem}", where)
            if self.ray and config.tasks_per_node and config.tasks_per_node > 1:
                raise InputError(
                    f"config '{config.name}' asks for {config.tasks_per_node} tasks per node; ray: true runs "
                    "one per node (Ray's head or worker, with every CPU of the task): give cpus_per_task instead",
                    where,
                )
            for name, value in config.extra.items():
                problem = check_option(name, value)
                if problem:
                    raise InputError(f"config '{config.name}': {problem}", where)
            point = self.retry.checkpoint if self.retry else None
            minutes = parse_time(config.time) if point and config.time else None
            if point and minutes is not None and point.before >= minutes * 60:
                raise InputError(
                    f"retry.checkpoint.before is {point.before} s, and config '{config.name}' gives the jobs "
                    f"{config.time} in all: the signal would come at once; give a smaller `before`",
                    where,
                )

    def check_components(self, where: Position | None) -> None:
        hetero = "components" if self.components else "heterogeneous: true" if self.heterogeneous else ""
        if not hetero:
            return
        if self.components and ("config" in self.model_fields_set or self.heterogeneous):
            raise InputError(
                "give components (a heterogeneous job) or config and heterogeneous, not both", where
            )
        if self.components and len(self.components) < 2:
            raise InputError("components: a heterogeneous job has two components or more", where)
        if self.array is True:
            raise InputError(
                f"{hetero} makes one heterogeneous job per point: Slurm has no arrays of them", where
            )

    def configs(
        self, inventory: Inventory, alias: str, where: Position | None = None
    ) -> tuple[ResolvedConfig, ...]:
        """The resolved config of each component of the job (one unless it is heterogeneous)."""
        if self.components:
            return tuple(inventory.config(name, alias, where) for name in self.components)
        config = inventory.config(self.config, alias, where)
        if not (self.heterogeneous and config.gpu):
            return (config,)
        # the original's CPU nodes and one GPU node (it named its GPU partition and 6 CPUs in its code); the
        # GPU node first: Slurm's backfill places components in order, and CPU nodes placed first may take
        # the only nodes with GPUs when both are in one partition
        gpus = ResolvedConfig(
            f"{config.name} (GPU node)",
            nodes=1,
            gpu=config.gpu,
            time=config.time,
            partition=config.partition,
            mem=config.mem,
        )
        return (gpus, replace(config, gpu=0))

    @property
    def config_label(self) -> str:
        """The ledger's `config`: the config, or a heterogeneous job's components (`cpu+gpu`)."""
        return "+".join(self.components) if self.components else self.config

    @property
    def arrays(self) -> bool | str:
        """`array`, but never for a heterogeneous job (Slurm has no arrays of them)."""
        return False if self.components or self.heterogeneous else self.array

    def remote_needs(self) -> frozenset[str]:
        return frozenset({"save_path", "sbatch", *(["ray"] if self.ray else [])})

    def test_scripts(self, ctx: TaskContext, host: Host, cluster: slurm.Cluster) -> list[str]:
        jobs = self.dealt(ctx.host_index, len(ctx.task_hosts))
        batches = layout(jobs, self.arrays, self.max_parallel, cluster.max_array_size)
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
        place_code(ctx, self, host, dry_run=True)
        batches = layout(jobs, self.arrays, self.max_parallel, cluster.max_array_size)
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
            self.follow_feeds(ctx, host)
        jobs, why_none = host_share(ctx, self)
        if not jobs:
            return Outcome(changed=False, message=why_none)
        ledger = ctx.ledger
        ledger.ensure_writable(ctx.alias)  # nothing is submitted that cannot be recorded
        place_code(ctx, self, host)  # the jobs run the code as it is now, whatever changes later
        dependency = (
            resolve_dependency(self.dependency, lambda name: self._submitted(ctx, name))
            if self.dependency
            else ""
        )
        cluster = self.cluster(ctx, host)
        taken = ctx.shared(f"slurm:taken:{ctx.alias}", lambda: [0])  # queued by this run's earlier tasks
        limit = self.limit(ctx, cluster)
        room = limit.room - taken[0] if limit else len(jobs)
        if len(jobs) > room >= feed.MIN_ROOM:
            return self.feed(ctx, host, jobs, cluster, limit, room, dependency)
        if len(jobs) > room and limit:  # Slurm refuses what is over the limit, in its own words
            held = f" and this run's earlier tasks hold {limit.room - room}" if room < limit.room else ""
            ctx.info(
                f"{len(jobs)} jobs do not fit ({limit.describe()}{held}), and the cluster can feed them "
                f"only with room for {feed.MIN_ROOM} (a chunk, its feeder and the next): submitting them as they are"
            )
        batches = layout(jobs, self.arrays, self.max_parallel, cluster.max_array_size)
        ids = self.submit_all(ctx, host, batches, cluster, dependency)
        taken[0] += len(jobs)
        ctx.add_submitted(ids)
        return Outcome(message=f"{len(jobs)} jobs: {describe(batches)}, id {', '.join(ids)}")

    def submit_all(
        self, ctx: TaskContext, host: Host, batches: Sequence[Batch], cluster: slurm.Cluster, dependency: str
    ) -> list[str]:
        """Each batch through the ledger, in order, with a progress bar; the ids."""
        ids: list[str] = []
        total = sum(len(batch.jobs) for batch in batches)
        done = 0
        ctx.progress(done, total)  # a bar in the live view: one sbatch per job is slow to submit
        for batch in batches:
            try:
                # Ctrl-C lets a submission under way end and be recorded, and starts no other one
                with ctx.submission():
                    ids.append(self.submit(ctx, host, ctx.ledger, batch, cluster, dependency))
                done += len(batch.jobs)
                ctx.progress(done, total)
            except (TaskError, Interrupted) as e:
                if not ids:
                    raise
                recorded = f" (already submitted and recorded: {', '.join(ids)})"
                raise TaskError(e.reason + recorded, host=e.host) from e
        return ids

    # -- a sweep larger than the submit limit ------------------------------------------------

    def limit(self, ctx: TaskContext, cluster: slurm.Cluster) -> slurm.SubmitLimit | None:
        """The submit limit leaving the least room for this task's jobs (its account, QOS and
        partition, from the config and the task's sbatch options)."""
        if cluster.limits is None:
            return None
        config: ResolvedConfig = ctx.inventory.config(self.config, ctx.alias)
        options = self.feeder_options(config)
        return cluster.limits.tightest(
            _text(options.get("account")), _text(options.get("qos")), _text(options.get("partition"))
        )

    def feeder_options(self, config: ResolvedConfig) -> dict[str, Any]:
        options: dict[str, Any] = {"partition": config.partition}
        for name, value in [*config.extra.items(), *self.sbatch.items()]:
            if option_name(name) in feed.FEEDER_OPTIONS:
                options[option_name(name)] = value
        return options

    def feed(
        self,
        ctx: TaskContext,
        host: Host,
        jobs: Sequence[Job],
        cluster: slurm.Cluster,
        limit: slurm.SubmitLimit | None,
        room: int,
        dependency: str,
    ) -> Outcome:
        """Submit chunk 0 and the first feeder; stage every later chunk for the feeders (`room` >=
        MIN_ROOM jobs). The planned scripts and rows are in the archive and on the host before anything
        is submitted; the feed counts as started (its points as submitted) from just before its first
        feeder is."""
        where = f"{limit.describe()}" if limit else "the limit"
        config: ResolvedConfig = ctx.inventory.config(self.config, ctx.alias)
        if any(option_name(k) == "comment" for k in [*config.extra, *self.sbatch]):
            raise TaskError(
                host=ctx.alias,
                message=f"{len(jobs)} jobs do not fit ({where}): the cluster would feed them, but the jobs "
                "it submits carry compute's token in their --comment: remove the `comment` sbatch option",
            )
        ledger = ctx.ledger
        parts = chunks(jobs, self.arrays, self.max_parallel, cluster.max_array_size, room)
        feed_id = feed.new_feed_id()
        remote = feed.folder(cluster.home, feed_id)
        files: dict[str, str] = {}
        batches: list[feeds.Batch] = []
        try:
            for number, chunk in enumerate(parts[1:], 1):
                for index, batch in enumerate(chunk):
                    spec = self.spec(ctx, batch, host.spec, cluster)
                    text = render(spec)
                    token = feed.batch_token(feed_id, number, index)
                    rows = self.records(ctx, spec, batch, "", "", "")  # ids, logs, script: once submitted
                    script = feeds.stage_batch(ledger, feed_id, token, ctx.alias, text, rows)
                    batches.append(feeds.Batch(token, number, batch.array, script, spec.save_path, len(rows)))
                    files[f"{feed.batch_name(number, index)}.sbatch"] = text
            feeder = feed.render_feeder(
                feed.FeederSpec(
                    feed=feed_id,
                    folder=remote,
                    chunks=len(parts) - 1,
                    job_name=self.name(ctx.task.name),
                    comment=self.spec(ctx, parts[0][0], host.spec, cluster).comment,
                    options=self.feeder_options(config),
                    minutes=feed.feeder_minutes(config.time),
                )
            )
            files["feed.sh"] = feeder
            feed.upload(host, remote, files)
            ids = self.submit_all(ctx, host, parts[0], cluster, dependency)
        except BaseException:
            feeds.discard(ledger, feed_id, [b.script for b in batches])
            with contextlib.suppress(Exception):
                feed.remove(host, remote)
            raise
        plan = feeds.Feed(
            feed=feed_id,
            host=ctx.alias,
            playbook=str(ctx.playbook_path),
            task=ctx.task.name,
            run_id=ctx.run_id,
            hosts_file=str(Path(ctx.inventory.hosts_file).resolve()) if ctx.inventory.hosts_file else "",
            remote=remote,
            chunks=len(parts) - 1,
            batches=tuple(batches),
        )
        feeds.start(ledger, plan)
        fed = plan.points
        try:
            with ctx.submission():
                feeder_id = self.start_feeder(ctx, host, feeder, feed_id, ids)
        except ComputeError as e:
            if not isinstance(e, HostError):  # refused, or never tried: the feed does not go on
                feeds.end(ledger, plan, f"its first feeder was not submitted: {e.reason}")
            raise TaskError(
                f"{e.reason} (the first {len(jobs) - fed} points are submitted and recorded: "
                f"{', '.join(ids)}; the other {fed} were to be fed by the cluster: once Slurm answers, "
                "`compute jobs` says whether the feeder got in, and the playbook run again with "
                "--skip-submitted submits what it did not)",
                host=e.host,
            ) from e
        taken = ctx.shared(f"slurm:taken:{ctx.alias}", lambda: [0])
        taken[0] += room  # what the feed holds in the queue from now on
        ctx.shared(f"slurm:fed:{ctx.alias}:{ctx.task.name}", lambda: True)
        ctx.add_submitted(ids)
        size = sum(len(b.jobs) for b in parts[1])
        return Outcome(
            message=f"{len(jobs)} jobs: {len(jobs) - fed} submitted ({describe(parts[0])}, id {', '.join(ids)}); "
            f"{fed} to be fed by the cluster in {len(parts) - 1} chunk(s) of up to {size} ({where}): "
            f"feeder job {feeder_id}"
        )

    def start_feeder(self, ctx: TaskContext, host: Host, text: str, feed_id: str, ids: Sequence[str]) -> str:
        """The feeder of chunk 1, after every job of chunk 0 (afterany: whatever their end), through
        the ledger's submission transaction (its script archived like any other; it has no row)."""

        def sbatch() -> str:
            retry = slurm.Retry(self.submit_retry, ctx.stopping, ctx.info)
            secrets = secret_env.read(self.secret_env, ctx.alias)  # the feeder hands them on to the jobs
            return slurm.submit(
                host,
                text,
                [f"--dependency=afterany:{':'.join(ids)}"],
                retry,
                feed.feeder_token(feed_id, 1),
                secrets,
                script_args=["1"],
            )

        return ctx.ledger.submit(ctx.alias, Script(text, "slurm", 0), sbatch, lambda job_id, script: [])

    def follow_feeds(self, ctx: TaskContext, host: Host) -> None:
        """Before a resumed run: record what this task's feeds on this host submitted since, and end
        those that are over, so that what an open feed is still to submit is left out (resume.py) and
        what a stopped one did not submit is submitted now."""
        mine = [
            f
            for f in feeds.open_feeds(ctx.ledger)
            if (f.playbook, f.task, f.host) == (str(ctx.playbook_path), ctx.task.name, ctx.alias)
        ]
        for progress in feed.follow(host, ctx.ledger, mine):
            started = f"the feed started {progress.feed.started}"
            if progress.ended == feeds.DONE:
                ctx.info(f"{started} has submitted every point")
            elif progress.ended:
                ctx.info(
                    f"{started} stopped ({progress.ended}): its {progress.left} points left are submitted now"
                )
            else:
                ctx.info(f"{started} is still to submit {progress.left} points: they are left out")

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
        config, *components = self.configs(ctx.inventory, ctx.alias)
        code, _ = placed_code(ctx)
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
            env={**host.env, **self.env, **({"COMPUTE_CODE": code} if code else {})},
            cd=code_cd(self.cd, code),
            options=self.sbatch,
            comment=f"compute: playbook {ctx.playbook_path.name}, task '{ctx.task.name}', host {ctx.alias}",
            secret_env=self.secret_env,
            wandb=host.wandb,
            wandb_dir=cluster.expand(host.wandb_dir),
            launcher=self.launcher,
            ray=self.ray,
            components=tuple(components),
            policy=self.policy(),
            metrics=self.metrics.sources() if self.metrics else None,
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
        at = now()  # one submission: one time for all its rows
        for task_id, job in enumerate(batch.jobs):
            element = f"{job_id}_{task_id}" if batch.array else job_id
            paths = JobPaths.slurm(spec.save_path, spec.job_name, element)
            submitted = ("slurm", element, paths, script)
            rows.append(
                job_row(ctx, self, job, submitted, self.config_label, dependency, spec.wandb or "", at)
            )
        return rows

    def _submitted(self, ctx: TaskContext, task_name: str) -> list[str]:
        if ctx.shared(f"slurm:fed:{ctx.alias}:{task_name}", lambda: False):
            raise TaskError(
                host=ctx.alias,
                message=f"dependency '{self.dependency}': task '{task_name}' is fed by the cluster (its "
                "sweep is larger than the submit limit), so most of its jobs do not exist yet: run this "
                "task once it has ended",
            )
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


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else str(value)


def describe(batches: Sequence[Batch]) -> str:
    arrays = [b for b in batches if b.array]
    if not arrays:
        return f"{len(batches)} sbatch job{'s' if len(batches) != 1 else ''}"
    sizes = "+".join(str(len(b.jobs)) for b in arrays)
    return f"{len(arrays)} job array{'s' if len(arrays) != 1 else ''} ({sizes} elements)"
