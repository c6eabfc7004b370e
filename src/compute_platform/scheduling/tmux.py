"""tmux jobs on workstations without a scheduler: the launcher script (pure), the scripts that start,
query and cancel jobs on a host (pure), and BACKEND, the thin I/O that `compute jobs` and the `tmux`
task run them with.

On the host, one session directory `<save_path>/<session>/` holds everything of one launch:

  launcher.sh   the launcher (archived locally as archive/<host>/<session>.tmux)
  queue         the job indices to run, in order
  I.log         stdout and stderr of job I        I.started  its start time (the lane's claim)
  I.pid         its process group                 I.status   its exit code, written when it ends
  I.cancelled   written by `compute cancel`

The directory name is the tmux session name. Creating it with `mkdir` is what claims a name, so two
launches never share one, and a finished session's files are never overwritten by a later one.
A session has one window per "lane"; each lane runs one job at a time, taking the next job of the
queue that no other lane has claimed, so at most `lanes` jobs run at once and they start in order.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compute_platform.errors import CommandFailed, TaskError
from compute_platform.hosts import secret_env, shell
from compute_platform.ledger import JobPaths, Script, renewed
from compute_platform.scheduling import script as shell_file
from compute_platform.scheduling.backend import (
    CANCELLED,
    COMPLETED,
    FAILED,
    NEVER_STARTED,
    NO_STATUS,
    PENDING,
    RUNNING,
    SESSION_KILLED,
    STOPPED_ON_LOG,
    UNKNOWN,
    Again,
    Backend,
    JobState,
)
from compute_platform.scheduling.jobscript import seed_loop
from compute_platform.scheduling.launchers import ray_cluster
from compute_platform.scheduling.recovery import POLICY_MARK, Policy
from compute_platform.scheduling.sources import METRICS_MARK, MetricSources

if TYPE_CHECKING:
    from compute_platform.hosts import Host
    from compute_platform.ledger import JobRecord, Ledger
    from compute_platform.scheduling.sweep import Job

SCHEDULER = "tmux"
SUFFIX = "tmux"  # archive/<host>/<session>.tmux
LAUNCHER = "launcher.sh"
FORMAT = "1"
# Exit code of the launch script when tmux is not in PATH (the shell's own "command not found" code).
NO_TMUX = 127
NO_TMUX_MARK = "compute: tmux not found; PATH="
SESSION_MARK = "compute-session="
# tmux turns '.' and ':' into '_' in session names; do it ourselves so the name we record is the real one.
_SESSION_UNSAFE = re.compile(r"[^A-Za-z0-9_+-]")
MAX_SUFFIX = 9999


# -- pure: names and lanes -------------------------------------------------------------------------


def session_base(job_name: str) -> str:
    return _SESSION_UNSAFE.sub("_", job_name).lstrip("-") or "job"


def max_lanes(parallel: bool, max_parallel: int | None, gpus: Sequence[str]) -> int:
    """How many jobs may run at once (0: no limit): one without `parallel`; with it, at most
    `max_parallel` and at most one per listed GPU."""
    if not parallel:
        return 1
    limits = [n for n in (max_parallel, len(gpus) or None) if n]
    return min(limits) if limits else 0


def lane_count(limit: int, jobs: int) -> int:
    return min(limit, jobs) if limit else jobs


def job_id(session: str, index: int | str) -> str:
    """`session.index`: unique on its host, since a session name is never reused there (the ledger
    and `compute jobs` name a job `HOST:session.index` where several hosts have the same id)."""
    return f"{session}.{index}"


@dataclass(frozen=True)
class JobFiles:
    """Where one job's files are on its host."""

    folder: str
    index: str

    @classmethod
    def of(cls, record: JobRecord) -> JobFiles:
        folder, name = posixpath.split(record.status_file)
        return cls(folder, name.removesuffix(".status"))

    @property
    def session(self) -> str:
        return posixpath.basename(self.folder)

    def where(self) -> tuple[str, str]:
        return self.folder, self.index

    def path(self, what: str) -> str:
        return f"{self.folder}/{self.index}.{what}"


# -- pure: the launcher ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LauncherSpec:
    """Everything the launcher of one task on one host depends on."""

    task: str
    cmd: str
    jobs: tuple[Job, ...]
    seed_flag: str | None = None
    init: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cd: str | None = None
    lanes: int = 1  # max_lanes(): 0 means one lane per job
    gpus: tuple[str, ...] = ()
    secret_env: tuple[str, ...] = ()  # names only: the values come in SECRETS, removed once read
    wandb: str | None = None  # the host's W&B mode (WANDB_MODE)
    wandb_dir: str = ""  # WANDB_DIR (a leading `~` is the home on the host)
    ray: bool = False  # a Ray head per job, in its lane (scheduling/scripts/ray-cluster.sh)
    policy: Policy | None = None  # retry and notify, for compute watch (scheduling/recovery.py)
    metrics: MetricSources | None = None  # from_log patterns, a file the program writes (compute results)


def render_launcher(spec: LauncherSpec) -> str:
    """The launcher script: the jobs' common prelude, one function per job, then the code that starts
    the session and runs the lanes."""
    parts = [_header(spec), _prelude_function(spec)]
    if spec.ray:
        parts.append(ray_cluster() + "\n")
    parts += [_job_function(spec, job) for job in spec.jobs]
    runtime = _RUNTIME.replace("@ALL@", " ".join(str(j.index) for j in spec.jobs))
    if spec.secret_env:
        runtime = _with_secrets(runtime, spec.secret_env)
    parts.append(runtime)
    return "\n".join(parts)


SECRETS = "secrets.env"  # in the session directory, mode 0600, while the lanes start


LANE_READS = '  if [ -r environment ]; then . ./environment; fi; : > "lane-$1.ready"\n'


def _with_secrets(runtime: str, names: Sequence[str]) -> str:
    """Each lane sources SECRETS when it starts, after the environment (its jobs inherit the
    variables); `start` removes both files once every lane has read them (or after 30 s), so the
    values do not stay on disk."""
    reads = (
        "  if [ -r environment ]; then . ./environment; fi\n"
        f"  # secret_env {' '.join(names)}: read once, by the lane\n"
        f'  if [ -r {SECRETS} ]; then . ./{SECRETS}; fi; : > "lane-$1.ready"\n'
    )
    runtime = runtime.replace(LANE_READS, reads, 1)
    return runtime.replace(
        "  rm -f environment lane-*.ready\n", f"  rm -f environment {SECRETS} lane-*.ready\n", 1
    )


def _header(spec: LauncherSpec) -> str:
    at_once = "one job per lane" if spec.lanes == 0 else f"at most {spec.lanes} at once"
    gpus = " ".join(shell.quote(g) for g in spec.gpus)
    jobs = f"{len(spec.jobs)} job" + ("s" if len(spec.jobs) != 1 else "")
    return f"""\
#!/usr/bin/env bash
# compute tmux launcher, format {FORMAT}. Task '{_comment(spec.task)}': {jobs}, {at_once}.
# `bash {LAUNCHER} start [INDEX...]` starts a tmux session named after this file's directory with one
# window ("lane") per job that may run at once; each lane runs, one after another, the next jobs of the
# queue that no other lane has claimed. Job INDEX leaves its files next to this script: INDEX.log
# (stdout+stderr), INDEX.started, INDEX.pid (its process group), INDEX.status (exit code, on exit).
{POLICY_MARK + spec.policy.to_json() + chr(10) if spec.policy else ""}{METRICS_MARK + spec.metrics.to_json() + chr(10) if spec.metrics else ""}compute_dir=$(cd "$(dirname "$0")" && pwd) || exit 1
cd "$compute_dir" || exit 1
compute_max_lanes={spec.lanes}  # 0: one lane per job
compute_gpus=({gpus})  # lane K gives its jobs CUDA_VISIBLE_DEVICES=${{compute_gpus[K]}}
compute_gpu=
{_log_watch(spec)}"""


def _log_watch(spec: LauncherSpec) -> str:
    """fail_on_log: the patterns each lane's watcher looks for in its job's output (and how often,
    when the task's env says: the watcher runs in the lane, outside the job's env)."""
    patterns = spec.policy.fail_on_log if spec.policy else ()
    if not patterns:
        return ""
    every = spec.env.get("COMPUTE_LOG_EVERY")
    return f"compute_fail_on_log=({shell.join(patterns)})\n" + (
        f"COMPUTE_LOG_EVERY={shell.quote(every)}\n" if every is not None else ""
    )


def _prelude_function(spec: LauncherSpec) -> str:
    """What every job does first, in its own process: the host's init and env, the task's env, its
    GPU, the working directory. A failure there ends the job with shell.PRELUDE_FAILED."""
    lines = ["compute_prelude() {", *shell.prelude(spec.init)]
    lines += [*shell.wandb_exports(spec.wandb, spec.wandb_dir), *shell.prelude(env=spec.env)]
    if spec.gpus:
        lines.append('export CUDA_VISIBLE_DEVICES="$compute_gpu"')
    lines += [*shell.prelude(cwd=spec.cd), ":", "}", ""]
    return "\n".join(lines)


def _job_function(spec: LauncherSpec, job: Job) -> str:
    # not indented: the user's command may hold a here-document whose end marker must stay put
    lines = [
        f"job_{job.index}() {{  # {_comment(job.label())}",
        f'compute_metrics="$compute_dir/{job.index}.metrics"  # COMPUTE_METRICS (JobPaths.metrics)',
        *(
            [f'compute_output="$compute_dir/{job.index}.log"']
            if spec.metrics and spec.metrics.from_log
            else []
        ),
        "compute_prelude",
    ]
    if spec.ray:  # the job runs in a process of its own: its EXIT trap stops its Ray
        lines += [
            "trap compute_ray_down EXIT",  # first: a head that started but did not answer is stopped too
            f'compute_ray_local "$(basename "$compute_dir")-{job.index}" || exit',
        ]
    lines += seed_loop(job, spec.cmd, spec.seed_flag, sources=spec.metrics)
    lines += ['exit "$compute_rc"', "}", ""]
    return "\n".join(lines)


def _comment(text: str) -> str:
    return " ".join(text.split())


# The part of the launcher that is the same for every task. Bash, because of arrays, `set -m` and
# `wait PID`; the jobs themselves are plain POSIX shell written by the user.
_RUNTIME = shell_file("log-look.sh") + "\n" + shell_file("tmux-runtime.sh") + "\n"


# -- pure: the scripts run on the host --------------------------------------------------------------


def launch_script(
    root: str, base: str, taken: Sequence[str] = (), indices: Sequence[int] = (), secrets_end: str = ""
) -> str:
    """Claim a free session name under `root` (`base`, then `base-2`, `base-3`...: never a live tmux
    session, an existing directory or a name in `taken`), write the launcher read from stdin there and
    start it. Prints `compute-session=NAME DIR` on success. With `secrets_end`, stdin starts with the
    secrets' export lines up to that marker, written to SECRETS (mode 0600) for the lanes."""
    taken_words = " ".join(t for t in taken if t)
    secrets = (
        f'(umask 077; while IFS= read -r compute_l && [ "$compute_l" != {shell.quote(secrets_end)} ]; do\n'
        f'  printf "%s\\n" "$compute_l"; done > "$compute_name/{SECRETS}") || exit 1\n'
        if secrets_end
        else ""
    )
    return f"""\
command -v tmux >/dev/null 2>&1 || {{ echo "{NO_TMUX_MARK}$PATH" >&2; exit {NO_TMUX}; }}
compute_root={shell.quote_path(root)}
mkdir -p "$compute_root" && cd "$compute_root" && compute_root=$(pwd) || exit 1
compute_taken={shell.quote(f" {taken_words} ")}
compute_name={shell.quote(base)}
compute_k=1
until case "$compute_taken" in *" $compute_name "*) false ;; esac &&
  ! tmux has-session -t "=$compute_name" 2>/dev/null && mkdir "$compute_name" 2>/dev/null; do
  [ -w . ] && [ "$compute_k" -lt {MAX_SUFFIX} ] ||
    {{ echo "compute: cannot create a session directory in $compute_root" >&2; exit 1; }}
  compute_k=$((compute_k + 1))
  compute_name={shell.quote(base)}-$compute_k
done
{secrets}cat > "$compute_name/{LAUNCHER}" &&
  bash "$compute_name/{LAUNCHER}" start {" ".join(str(i) for i in indices)} ||
  {{ compute_rc=$?; rm -rf "./$compute_name"; exit "$compute_rc"; }}
echo "{SESSION_MARK}$compute_name $compute_root/$compute_name"
"""


# Prints, for one job: job_id, folder exists, started, exit status (or -), process alive, cancelled,
# session alive; tab-separated. Builtins only, so that a thousand jobs cost no thousand processes.
_STATE_FUNCTION = shell_file("tmux-state.sh")


def states_script() -> str:
    """The state of every job named on stdin (`job_stdin`), from its files and ONE tmux call for all
    of them. On stdin, not on the command line: a command line holds at most 128 KiB."""
    return "\n".join([_STATE_FUNCTION, _EACH_JOB.format(function="compute_state")])


# Reads (job id, folder, index) triples, each word NUL-terminated, and calls the function on each.
_EACH_JOB = (
    "while IFS= read -r -d '' compute_j && IFS= read -r -d '' compute_f && IFS= read -r -d '' compute_i; do\n"
    '  {function} "$compute_j" "$compute_f" "$compute_i"\n'
    "done"
)


def job_stdin(records: Sequence[JobRecord]) -> bytes:
    """The jobs `states_script` and `cancel_script` read: id, folder, index, each NUL-terminated."""
    return b"".join(
        f"{r.job_id}\0{JobFiles.of(r).folder}\0{JobFiles.of(r).index}\0".encode() for r in records
    )


def parse_states(output: str) -> dict[str, JobState]:
    states: dict[str, JobState] = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 7:
            continue
        job, folder, started, status, alive, cancelled, session = fields
        states[job] = decide(
            folder == "1", started == "1", status, alive == "1", cancelled == "1", session == "1"
        )
    return states


def decide(folder: bool, started: bool, status: str, alive: bool, cancelled: bool, session: bool) -> JobState:
    """A job's state from its files and whether its process and session are alive. A job stopped by
    anything else than `compute cancel` (a killed session, a reboot) is FAILED, so that
    `resubmit --failed` runs it again."""
    words = status.split()
    if words and words[0].lstrip("-").isdigit():
        code = int(words[0])
        if cancelled:
            return JobState(CANCELLED, code)
        if words[1:2] == ["lost"]:
            return JobState(FAILED, code, SESSION_KILLED)
        if words[1:2] == ["log"]:
            return JobState(FAILED, code, STOPPED_ON_LOG)
        return JobState(COMPLETED, 0) if code == 0 else JobState(FAILED, code)
    if not folder:
        return JobState(UNKNOWN, None, "its files on the host are gone")
    if started:
        # A lane that is still there writes the status as soon as it has reaped the job.
        if alive or session:
            return JobState(RUNNING)
        if cancelled:
            return JobState(CANCELLED)
        return JobState(FAILED, None, NO_STATUS)
    if cancelled:
        return JobState(CANCELLED)
    if session:
        return JobState(PENDING, None, "waiting for a lane")
    return JobState(FAILED, None, NEVER_STARTED)


# Marks one job cancelled (so that no lane starts it) and stops it if it runs: SIGTERM to its process
# group, SIGKILL after a grace period if it is still there. Prints `cancelled ID`, or `ended ID` for a
# job that was over already.
_CANCEL_FUNCTION = shell_file("tmux-cancel.sh")


def cancel_script(grace: float = 10.0) -> str:
    """Cancel every job named on stdin (`job_stdin`)."""
    function = _CANCEL_FUNCTION.replace("@GRACE@", f"{grace:g}")
    return "\n".join([function, _EACH_JOB.format(function="compute_cancel")])


# -- I/O: launching and the backend of `compute jobs` ---------------------------------------------


@dataclass(frozen=True)
class Launched:
    session: str
    folder: str  # absolute, on the host

    def files(self, index: int | str) -> JobFiles:
        return JobFiles(self.folder, str(index))


def launch(
    host: Host,
    launcher: str,
    root: str,
    base: str,
    *,
    taken: Sequence[str] = (),
    indices: Sequence[int] = (),
    timeout: float | None = 120,
    secrets: Mapping[str, str] | None = None,
) -> Launched:
    """Start a launcher on a host in one round trip: the script claims a session name and starts it,
    the launcher travels on stdin (a command line is limited to 128 KiB, a sweep's launcher is not),
    after the secrets' values when there are some."""
    end = secret_env.marker() if secrets else ""
    script = launch_script(root, base, taken, indices, end)
    stdin = (secret_env.payload(secrets, end) if secrets else b"") + launcher.encode()
    result = host.run(script, stdin=stdin, timeout=timeout)
    if result.exit_code == NO_TMUX and NO_TMUX_MARK in result.stderr:
        path = result.stderr.split(NO_TMUX_MARK, 1)[1].strip().splitlines()[0]
        raise TaskError(
            host=host.alias,
            message=f"tmux is not installed on {host.alias} (not in PATH: {path}). Install it "
            "(e.g. `apt install tmux`), or put its directory in PATH through the host's init or env in "
            "hosts.yaml.",
        )
    if not result.ok:
        raise CommandFailed(host.alias, result, "could not start the tmux session")
    for line in result.stdout.splitlines():
        if line.startswith(SESSION_MARK):
            session, _, folder = line.removeprefix(SESSION_MARK).partition(" ")
            return Launched(session, folder)
    raise CommandFailed(host.alias, result, "the launch script did not report its session")


def archived_sessions(ledger: Ledger, alias: str, base: str) -> list[str]:
    """The names `base` or `base-N` already archived for a host: never reused, so that no archived
    launcher is overwritten (even if its folder on the host was deleted)."""
    from compute_platform.ledger import safe_name

    folder = ledger.root / safe_name(alias)
    ours = re.compile(rf"{re.escape(base)}(-\d+)?")
    names = (p.stem for p in folder.glob(f"*.{SUFFIX}")) if folder.is_dir() else ()
    return sorted(name for name in names if ours.fullmatch(name))


class TmuxBackend:
    """`compute jobs / cancel / resubmit` for tmux jobs: one shell call per host for all records."""

    def states_part(self, records: Sequence[JobRecord]) -> shell.Part:
        return shell.Part(states_script(), job_stdin(records), timeout=60)

    def read_states(self, records: Sequence[JobRecord], answer: str) -> dict[str, JobState]:
        states = parse_states(answer)
        for record in records:
            states.setdefault(record.job_id, JobState(UNKNOWN, None, "no answer from the host"))
        return states

    def cancel(self, host: Host, records: Sequence[JobRecord]) -> None:
        if records:
            host.run(cancel_script(), stdin=job_stdin(records), timeout=60, check=True)

    def resubmit(
        self,
        host: Host,
        records: Sequence[JobRecord],
        ledger: Ledger,
        again: Mapping[str, Again] | None = None,
    ) -> list[JobRecord]:
        """Start the archived launchers again, each for its failed jobs only, in a new session; a
        retry (`again`) is a session per job, its row in the run of the job it retries (tmux jobs
        have no resources to grow)."""
        from compute_platform.ledger import new_run_id, now
        from compute_platform.scheduling import code

        groups: dict[str, list[JobRecord]] = {}
        for record in records:
            groups.setdefault(record.job_id if again else record.script, []).append(record)
        ledger.ensure_writable(host.alias)
        code.restore(host, ledger, [r.code for r in records])  # `compute code --clean` may have removed it
        run_id = new_run_id()
        new: list[JobRecord] = []
        for olds in groups.values():
            retry = again.get(olds[0].job_id) if again else None
            launcher = _read_archived(ledger, olds[0].script)
            root = posixpath.dirname(JobFiles.of(olds[0]).folder)
            indices = [int(JobFiles.of(r).index) for r in olds]
            run = olds[0].run_id if retry else run_id
            new += _relaunch(host, ledger, launcher, root, olds, indices, run, now(), retry)
        return new


def _read_archived(ledger: Ledger, script: str) -> str:
    path = Path(script) if Path(script).is_absolute() else ledger.root / script
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise TaskError(f"cannot read the archived launcher {path}: {e.strerror or e}") from e


def _relaunch(
    host: Host,
    ledger: Ledger,
    launcher: str,
    root: str,
    olds: Sequence[JobRecord],
    indices: Sequence[int],
    run_id: str,
    at: str,
    retry: Again | None = None,
) -> list[JobRecord]:
    """One archived launcher started again for some of its jobs, through the ledger's submission
    transaction (nothing started that cannot be recorded)."""
    base = session_base(olds[0].job_name)
    launched: list[Launched] = []
    new: list[JobRecord] = []

    def start() -> str:
        taken = archived_sessions(ledger, host.alias, base)
        secrets = secret_env.read(secret_env.names_in(launcher), host.alias)
        launched.append(launch(host, launcher, root, base, taken=taken, indices=indices, secrets=secrets))
        return launched[0].session

    def rows(session: str, archived: str) -> list[JobRecord]:
        for old in olds:
            index = JobFiles.of(old).index
            paths = JobPaths.tmux(launched[0].folder, index)
            attempt, reason = (str(retry.attempt), retry.reason) if retry else ("", "")
            new.append(renewed(old, job_id(session, index), paths, archived, run_id, attempt, reason))
        return new

    ledger.submit(host.alias, Script(launcher, SUFFIX, len(olds)), start, rows)
    return new


BACKEND: Backend = TmuxBackend()  # the annotation makes mypy check the protocol
