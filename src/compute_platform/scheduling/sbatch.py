"""Render an sbatch script from a frozen spec. Pure: no I/O, the same spec gives the same text.

The script has four parts:
  1. `#SBATCH` directives: name, time, partition, CPUs, memory, GPUs, mail, extras, array, logs;
  2. the exit-status record: a trap writes `<save_path>/<name>.<job id>.status` when the job ends
     (normally, on failure, on scancel or at its time limit), so the ledger knows final states even
     on clusters without accounting (`sacct`);
  3. the host's init lines, exported variables and the working directory;
  4. the job body (every seed in turn), or for an array a `case` on SLURM_ARRAY_TASK_ID.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Union

from compute_platform.hosts import shell
from compute_platform.input.spec import ResolvedConfig
from compute_platform.ledger import JobPaths
from compute_platform.scheduling import launchers, script
from compute_platform.scheduling.jobscript import seed_loop
from compute_platform.scheduling.recovery import POLICY_MARK, Policy
from compute_platform.scheduling.sources import METRICS_MARK, MetricSources
from compute_platform.scheduling.sweep import Job

OptionValue = Union[str, int, float, bool, None]  # noqa: UP007

JOB_EXIT_UNKNOWN_TASK = 98
OPTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# Options the renderer owns: setting them through `sbatch:` or a config would break the ledger.
RESERVED = frozenset({"job-name", "output", "error", "array", "parsable", "wrap"})


@dataclass(frozen=True)
class SbatchSpec:
    """Everything one sbatch script depends on, already resolved for one host."""

    job_name: str
    cmd: str
    jobs: tuple[Job, ...]
    config: ResolvedConfig
    save_path: str  # absolute on the host (a leading `~` is kept only in --dry-run output)
    array: bool = False  # True: one array task per job, indexed 0..len(jobs)-1
    max_parallel: int | None = None
    seed_flag: str | None = None
    cpus_per_node: int | None = None
    init: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cd: str | None = None
    options: Mapping[str, OptionValue] = field(default_factory=dict)  # the task's `sbatch:` mapping
    comment: str = ""  # one line saying where the script comes from (playbook, task)
    secret_env: tuple[str, ...] = ()  # names only: the values reach sbatch's environment on stdin
    wandb: str | None = None  # the host's W&B mode (WANDB_MODE)
    wandb_dir: str = ""  # WANDB_DIR, absolute on the host like save_path
    launcher: str = "none"  # how the command starts over the allocation (scheduling/launchers.py)
    ray: bool = False  # a Ray cluster over the job's nodes before the command (scripts/ray-cluster.sh)
    components: tuple[ResolvedConfig, ...] = ()  # a heterogeneous job's components after `config`'s
    policy: Policy | None = None  # retry, fail_on_log and notify (scheduling/recovery.py)
    metrics: MetricSources | None = None  # from_log patterns, a file the program writes (compute results)


def render(spec: SbatchSpec) -> str:
    if not spec.jobs:
        raise ValueError("an sbatch script needs at least one job")
    if not spec.array and len(spec.jobs) != 1:
        raise ValueError("a script that is not an array runs exactly one job")
    lines = ["#!/bin/bash"]
    if spec.comment:
        lines.append(f"# {one_line(spec.comment)}")
    if spec.secret_env:  # so that a resubmission knows what to pass again
        lines.append(
            f"# compute: secret_env {' '.join(spec.secret_env)} (passed on submission, never written)"
        )
    if spec.metrics:  # what `compute results` reads besides COMPUTE_METRICS
        lines.append(f"{METRICS_MARK}{spec.metrics.to_json()}")
    if spec.policy:  # what `compute watch` applies once the job ended, as it was at submission
        lines.append(f"{POLICY_MARK}{spec.policy.to_json()}")
    lines += [f"#SBATCH {d}" for d in directives(spec)]
    lines += ["", *status_trap(spec), ""]
    prelude = [
        *shell.prelude(spec.init),
        *shell.wandb_exports(spec.wandb, spec.wandb_dir),
        *shell.prelude(env=spec.env, cwd=spec.cd),
    ]
    lines += [*prelude, ""] if prelude else []
    lines += body(spec)
    return "\n".join(lines) + "\n"


def directives(spec: SbatchSpec) -> list[str]:
    """The `#SBATCH` lines' options: the job's, then for a heterogeneous job `hetjob` and each other
    component's resources (sbatch reads the job's name, mail, logs and array from the first block)."""
    config = spec.config
    options: dict[str, OptionValue] = {"job-name": spec.job_name, **resources(config, spec)}
    options["mail-type"] = config.mail
    options["mail-user"] = config.mail_user
    for name, value in [*config.extra.items(), *spec.options.items()]:
        options[option_name(name)] = value  # the task's own options override the config's
    if spec.array:
        last = len(spec.jobs) - 1
        throttle = f"%{spec.max_parallel}" if spec.max_parallel else ""
        options["array"] = f"0-{last}{throttle}" if last else f"0{throttle}"
    pattern = "%A_%a" if spec.array else "%j"
    paths = JobPaths.slurm(spec.save_path, spec.job_name, pattern)
    options["output"], options["error"] = paths.out, paths.err
    policy = spec.policy
    if policy and (policy.requeue or policy.checkpoint) and not {"requeue", "no-requeue"} & set(options):
        options["requeue"] = True  # preemption, node failure, a checkpoint's own requeue: Slurm runs it again
    if policy and (policy.requeue or policy.checkpoint) and "open-mode" not in options:
        options["open-mode"] = "append"  # a requeued job's output goes on after its earlier attempts'
    if policy and policy.checkpoint and "signal" not in options:
        options["signal"] = f"B:{policy.checkpoint.signal}@{policy.checkpoint.before}"
    found = [directive(name, value) for name, value in options.items() if value not in (None, False)]
    for component in spec.components:
        extra = {option_name(k): v for k, v in component.extra.items()}
        found += [
            "hetjob",
            *(
                directive(n, v)
                for n, v in {**resources(component, spec), **extra}.items()
                if v not in (None, False)
            ),
        ]
    return found


def resources(config: ResolvedConfig, spec: SbatchSpec) -> dict[str, OptionValue]:
    """What one component of a job asks for: time, partition, CPUs, memory and GPUs."""
    return {
        "time": config.time,
        "partition": config.partition,
        **cpu_options(config, spec.cpus_per_node, spec.ray),
        "mem": config.mem,
        "gres": f"gpu:{config.gpu}" if config.gpu else None,
    }


def cpu_options(
    config: ResolvedConfig, cpus_per_node: int | None, ray: bool = False
) -> dict[str, OptionValue]:
    """`nodes`/`tasks_per_node`: that many nodes, each with that many tasks (1 unless given) of
    `cpus_per_task` CPUs. `cpus_per_task` alone: one task with that many CPUs. `cpus`: the original
    tool's layout, one task per CPU, one per core, on ceil(cpus / cpus_per_node) nodes; beyond one
    node it asked for every CPU of those nodes (`-N 2 -n 48` for 30 CPUs of 24-CPU nodes), and so
    does this. With `ray`, one task per node (Ray's head or worker) with every CPU the node gives:
    for `cpus`, the original's `--nodes=N --ntasks=N --cpus-per-task=<cpus_per_node>`."""
    cpus, cpus_per_task = config.cpus, config.cpus_per_task
    if ray and cpus:
        nodes = math.ceil(cpus / cpus_per_node) if cpus_per_node else 1
        return {"nodes": nodes, "ntasks": nodes, "cpus-per-task": cpus_per_node or cpus}
    if ray and (config.nodes or cpus_per_task):
        return {"nodes": config.nodes, "ntasks-per-node": 1, "cpus-per-task": cpus_per_task}
    if config.nodes or config.tasks_per_node:
        return {
            "nodes": config.nodes,
            "ntasks-per-node": config.tasks_per_node or 1,
            "cpus-per-task": cpus_per_task,
        }
    if cpus_per_task:
        return {"ntasks": 1, "cpus-per-task": cpus_per_task}
    if not cpus:
        return {}
    nodes = math.ceil(cpus / cpus_per_node) if cpus_per_node else 1
    return {
        "nodes": nodes,
        "ntasks": nodes * cpus_per_node if cpus_per_node and nodes > 1 else cpus,
        "ntasks-per-core": 1,
        "threads-per-core": 1,
    }


def option_name(name: str) -> str:
    """`mail_user` and `--mail-user` both mean the sbatch option `mail-user`."""
    return name.lstrip("-").replace("_", "-")


def check_option(name: str, value: OptionValue) -> str | None:
    """Why an extra sbatch option cannot be written as a directive (None when it can)."""
    bare = option_name(name)
    if not OPTION_NAME.match(bare):
        return f"'{name}' is not an sbatch option name"
    if bare in RESERVED:
        return f"'{bare}' is set by compute itself and cannot be given as an extra sbatch option"
    text = "" if value is None or isinstance(value, bool) else str(value)
    if any(c in text for c in '"\\\n\r'):
        return f"the value of '{bare}' contains a quote, a backslash or a newline: sbatch cannot read it"
    return None


def directive(name: str, value: OptionValue) -> str:
    """`--name=value` as sbatch reads it in a `#SBATCH` line (not a shell: it only knows double
    quotes, and `#` starts a comment outside them)."""
    problem = check_option(name, value) if name not in RESERVED else None
    if problem:
        raise ValueError(problem)
    if value is True:
        return f"--{name}"
    text = str(value)
    if not text or any(c.isspace() or c in "#'" for c in text):
        text = f'"{text}"'
    return f"--{name}={text}"


def status_trap(spec: SbatchSpec) -> list[str]:
    """Write `<exit code> <how>` to the status file whichever way the job ends: `exit` (the script
    ended), `signal` (scancel, preemption) or `timeout` (the controller says TimeLimit)."""
    job_id = '"$SLURM_ARRAY_JOB_ID"_"$SLURM_ARRAY_TASK_ID"' if spec.array else '"$SLURM_JOB_ID"'
    folder = shell.quote_path(spec.save_path.rstrip("/") or "/")
    # the name JobPaths.slurm gives the status file, with the id as the job sees it
    return [
        f"compute_status={folder}/{shell.quote(spec.job_name)}.{job_id}.status",
        'compute_metrics="${compute_status%.status}.metrics"  # COMPUTE_METRICS: .metrics.<seed position>.jsonl',
        *(
            ['compute_output="${compute_status%.status}.out"']
            if spec.metrics and spec.metrics.from_log
            else []
        ),
        "compute_pid=",
        "compute_record() {",
        "  trap - EXIT TERM INT",
        *(
            ['  printf \'%s %s %s\\n\' "$1" "$2" "$COMPUTE_ATTEMPT" > "$compute_status.tmp" &&']
            if spec.policy
            else ['  printf \'%s %s\\n\' "$1" "$2" > "$compute_status.tmp" &&']
        ),
        '    mv -f "$compute_status.tmp" "$compute_status"',
        "}",
        "compute_stop() {",
        '  [ -n "$compute_pid" ] && kill -TERM "$compute_pid" 2>/dev/null',
        "  compute_record 143 signal",
        # Only the controller knows why the signal came; ask it once, briefly (KillWait is short).
        # (a heterogeneous job's components answer one line each)
        '  case "$(timeout 5 squeue -h -j "$SLURM_JOB_ID" -o %r 2>/dev/null | head -n 1)" in',
        "    TimeLimit) compute_record 143 timeout ;;",
        "  esac",
        "  exit 143",
        "}",
        "trap compute_stop TERM INT",
        "trap 'compute_record \"$?\" exit' EXIT",
    ]


def body(spec: SbatchSpec) -> list[str]:
    """`compute_job` runs the job (for an array, the one SLURM_ARRAY_TASK_ID picks) in the background
    while the script waits for it: a trapped signal interrupts `wait` at once, so the status is
    written even when the program ignores SIGTERM."""
    if spec.array:
        inner = ['case "$SLURM_ARRAY_TASK_ID" in']
        for task_id, job in enumerate(spec.jobs):
            # not indented: the user's command may hold a here-document whose end marker must stay put
            inner += [f"{task_id})  # job {job.index}: {one_line(job.label())}"]
            inner += [*seed_loop(job, spec.cmd, spec.seed_flag, launch(spec), spec.metrics), ";;"]
        inner += [
            "*)",
            f'echo "compute: no job for array task $SLURM_ARRAY_TASK_ID" >&2; exit {JOB_EXIT_UNKNOWN_TASK}',
            ";;",
            "esac",
        ]
    else:
        inner = seed_loop(spec.jobs[0], spec.cmd, spec.seed_flag, launch(spec), spec.metrics)
    # A function run with `&` is a subshell: its `exit` ends the job body, not the script.
    lines = [
        *recovery_lines(spec),
        *launchers.prelude(spec.launcher),
        "compute_job() {",
        *inner,
        'exit "$compute_rc"',
        "}",
    ]
    if not spec.ray:
        return [*lines, *start_job(spec, "exit")]
    return [
        *lines,
        "",
        f"compute_ray_gpus=({' '.join(str(c.gpu) for c in (spec.config, *spec.components))})  # per component",
        launchers.ray_cluster(),
        "",
        'compute_ray_up || { compute_rc=$?; compute_ray_down; exit "$compute_rc"; }',
        *start_job(spec, "keep"),
        "compute_ray_down",
        'exit "$compute_rc"',
    ]


def _watched(spec: SbatchSpec) -> bool:
    """Whether the script carries recovery.sh: a checkpoint before the time limit, or fail_on_log."""
    policy = spec.policy
    return bool(policy and (policy.checkpoint or policy.fail_on_log))


def recovery_lines(spec: SbatchSpec) -> list[str]:
    """The attempt number, and the checkpoint and fail_on_log traps (scripts/recovery.sh)."""
    policy = spec.policy
    if policy is None:
        return []
    job_id = '"$SLURM_ARRAY_JOB_ID"_"$SLURM_ARRAY_TASK_ID"' if spec.array else '"$SLURM_JOB_ID"'
    lines = [
        f"compute_self={job_id}",
        "compute_attempts_before=0  # set by compute watch when it submits this script again",
        "export COMPUTE_ATTEMPT=$((compute_attempts_before + ${SLURM_RESTART_COUNT:-0} + 1))"
        f" COMPUTE_MAX_ATTEMPTS={policy.max}",
    ]
    if policy.requeue:  # the last attempt is not requeued (preemption, node failure) again
        lines.append(
            '[ "$COMPUTE_ATTEMPT" -lt "$COMPUTE_MAX_ATTEMPTS" ] || '
            'scontrol update jobid="$compute_self" requeue=0 >/dev/null 2>&1'
        )
    if not _watched(spec):
        return [*lines, ""]
    lines.append(script("recovery.sh").rstrip("\n"))
    if policy.fail_on_log:
        lines.append(script("log-look.sh").rstrip("\n"))
    point = policy.checkpoint
    if point:
        lines.append(f"export COMPUTE_CHECKPOINT_SIGNAL={point.signal}")
        lines.append(
            f"compute_checkpoint_wait={max(5, point.before - 20)}  # seconds the program has to save"
        )
        if point.command:
            # not indented: the user's command may hold a here-document whose end marker must stay put
            lines += ["compute_checkpoint_command() {", point.command, "}"]
        lines.append(f"trap compute_checkpoint {point.signal}")
    if policy.fail_on_log:
        lines.append(f"compute_fail_on_log=({shell.join(policy.fail_on_log)})")
        lines.append('compute_logs=("${compute_status%.status}.out" "${compute_status%.status}.err")')
        lines.append("trap compute_log_stop USR2")
    return [*lines, ""]


def start_job(spec: SbatchSpec, then: str) -> list[str]:
    """Start the job body in the background and wait for it (a trapped signal interrupts `wait` at
    once); with recovery.sh, its log watcher beside it, and a wait that outlasts a checkpoint's
    trap. `then`: `exit` with the body's code, or `keep` it in compute_rc for what follows."""
    if not _watched(spec):
        waited = ['wait "$compute_pid"'] if then == "exit" else ['wait "$compute_pid"', "compute_rc=$?"]
        return ["compute_job &", "compute_pid=$!", *waited]
    watcher = ["compute_log_watch &", "compute_watcher=$!"] if spec.policy and spec.policy.fail_on_log else []
    stop = ['kill "$compute_watcher" 2>/dev/null'] if watcher else []
    return [
        *(["compute_log_mark"] if watcher else []),
        "compute_job &",
        "compute_pid=$!",
        *watcher,
        "compute_wait",
        *stop,
        *(['exit "$compute_rc"'] if then == "exit" else []),
    ]


def launch(spec: SbatchSpec) -> Callable[[str], str] | None:
    """What starts each seed's command line, for the spec's launcher (None: as it is)."""
    if spec.launcher == "none":
        return None
    config = spec.config
    per_node = config.tasks_per_node or config.gpu or 1  # torchrun: processes on each node
    return lambda line: launchers.command(spec.launcher, line, per_node)


def one_line(text: str) -> str:
    return " ".join(text.split())
