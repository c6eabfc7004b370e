"""Slurm over a Host: thin I/O around the pure renderer. One round trip per call, for all the jobs
it is given: prepare (mkdir + home + MaxArraySize + the user's submit limits), submit (upload +
sbatch), states (squeue + exit-status files + sacct when it works), cancel (scancel), resubmit
(sbatch of archived scripts)."""

from __future__ import annotations

import dataclasses
import posixpath
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compute_platform.errors import CommandFailed, Interrupted, TaskError
from compute_platform.hosts import secret_env, shell
from compute_platform.ledger import JobPaths, JobRecord, Ledger, Script, new_run_id, renewed
from compute_platform.scheduling.backend import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    STOPPED_ON_LOG,
    TELLING_ENDS,
    TIMEOUT,
    UNKNOWN,
    Again,
    JobState,
)

if TYPE_CHECKING:
    from compute_platform.hosts import Host

# Slurm's own default; used when `scontrol show config` cannot be read (and by --dry-run).
DEFAULT_MAX_ARRAY_SIZE = 1001
# Where scripts are uploaded before sbatch reads them: one unique file per submission, removed after
# (Slurm keeps its own copy; the local archive keeps ours).
REMOTE_SCRIPTS = "~/.compute/scripts"
SECTION = "@@compute-section@@"
ID_CHUNK = 1000  # job ids per squeue or sacct call (one argument of ~10 KB)
NO_SACCT = "@@compute-no-sacct@@"  # printed when sacct fails (no accounting on the cluster)
SACCT_FAILED = "@@compute-sacct-failed@@"  # sacct failed for another reason: asked again next time
# Why a job is UNKNOWN when neither squeue, its status file nor sacct answers:
GONE = "gone from the queue, no exit status"
GONE_UNTRACKED = "gone from the queue and from sacct"  # a row without a status file
GONE_NO_SACCT = "gone from the queue; sacct does not work on this cluster"

# Slurm's many states -> the few shown to users.
STATES = {
    "PENDING": PENDING,
    "REQUEUED": PENDING,
    "REQUEUE_HOLD": PENDING,
    "REQUEUE_FED": PENDING,
    "RESV_DEL_HOLD": PENDING,
    "CONFIGURING": RUNNING,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING,
    "STOPPED": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "RESIZING": RUNNING,
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "BOOT_FAIL": FAILED,
    "NODE_FAIL": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "DEADLINE": FAILED,
    "SPECIAL_EXIT": FAILED,
    "CANCELLED": CANCELLED,
    "REVOKED": CANCELLED,
    "PREEMPTED": CANCELLED,
    "TIMEOUT": TIMEOUT,
}
LIVE = (PENDING, RUNNING)


@dataclass(frozen=True)
class Cluster:
    """What the login node told once per run: the user's home, the largest array allowed, and the
    limits on how many jobs the user may have queued (where accounting enforces them)."""

    home: str
    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
    limits: SubmitLimits | None = None

    def expand(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return self.home.rstrip("/") + path[1:]
        return path


def prepare(host: Host, save_path: str) -> Cluster:
    """Create the log folder (Slurm silently fails a job whose output folder is missing), check that
    sbatch is there, and read the home, MaxArraySize and the user's submit limits with what they
    already count (`scontrol show assoc_mgr`: the controller's own view, limits inherited from the
    accounts included, no slurmdbd call), in one round trip."""
    command = "\n".join(
        [
            "command -v sbatch >/dev/null || { echo 'sbatch: command not found' >&2; exit 127; }",
            f"mkdir -p {shell.quote_path(save_path)} {shell.quote_path(REMOTE_SCRIPTS)} || exit 1",
            'printf "%s\\n" "$HOME"',
            "scontrol show config 2>/dev/null | sed -n -e 's/^MaxArraySize *= */MaxArraySize=/p' "
            "-e 's/^AccountingStorageEnforce *= */AccountingStorageEnforce=/p'",
            f"echo {SECTION}",
            'compute_me=$(id -un); printf "%s\\n" "$compute_me"',
            'scontrol show assoc_mgr users="$compute_me" flags=assoc,qos 2>/dev/null |',
            f"  grep -E {shell.quote(ASSOC_LINES)}",
            "true",
        ]
    )
    result = host.run(command, timeout=60)
    if result.exit_code == 127:
        raise TaskError(
            host=host.alias,
            message="sbatch not found: is this a Slurm login node? If Slurm needs a "
            "`module load`, add it to the host's `init` in hosts.yaml",
        )
    if not result.ok:
        raise CommandFailed(host.alias, result, f"cannot create the log folder {save_path}")
    return parse_prepare(result.stdout)


def parse_prepare(stdout: str) -> Cluster:
    """prepare's answer: the home, `scontrol show config`'s two lines, then the user's name and the
    association lines (parse_assoc_mgr)."""
    head, _, assoc = stdout.partition(SECTION + "\n")
    lines = head.splitlines()
    home = lines[0].strip() if lines else ""
    config = _settings(lines[1:])
    size = config.get("MaxArraySize", "")
    enforce = {word.strip() for word in config.get("AccountingStorageEnforce", "").split(",")}
    user, _, records = assoc.partition("\n")
    # associations and QOS limits hold only where accounting enforces them ("safe" implies limits)
    limits = parse_assoc_mgr(records, user.strip()) if enforce & {"limits", "safe"} else None
    return Cluster(home, int(size) if size.isdigit() and int(size) > 0 else DEFAULT_MAX_ARRAY_SIZE, limits)


def _settings(words: Sequence[str]) -> dict[str, str]:
    """`Name=value` words (or lines) -> {Name: value}."""
    found: dict[str, str] = {}
    for word in words:
        name, _, value = word.strip().partition("=")
        found[name] = value.strip()
    return found


# -- the user's submit limits -------------------------------------------------------------------

# The lines of `scontrol show assoc_mgr flags=assoc,qos` that say something about submit limits: each
# record's first line, an association's parent and default flag, the limits, the user/account lines.
ASSOC_LINES = r"^(ClusterName|QOS)=|ParentAccount=|SubmitJobs|Limits$|^ +[^ =]+$"
DEFAULT_QOS = "normal"  # Slurm's default QOS, the one limits are read from when a task names none


@dataclass(frozen=True)
class SubmitLimit:
    """One limit on the jobs the user may have queued (pending or running; each array element
    counts), with how many it already counts."""

    name: str  # says where it is set, for messages: "MaxSubmitJobs of association testacct/ctest"
    limit: int
    used: int

    @property
    def room(self) -> int:
        return max(0, self.limit - self.used)

    def describe(self) -> str:
        return f"{self.name} is {self.limit}, {self.used} queued"


@dataclass(frozen=True)
class _Record:
    """One association or QOS of `scontrol show assoc_mgr`: its identity and its submit limits."""

    kind: str  # "assoc" | "qos"
    fields: dict[str, str]
    limits: dict[str, tuple[int, int]]  # MaxSubmitJobs -> (limit, used); only the limits that are set
    per_user: dict[str, dict[str, tuple[int, int]]]  # QOS: uid -> its limits; account -> its limits
    per_account: dict[str, dict[str, tuple[int, int]]]

    @property
    def user(self) -> str:
        """An association's user name (`UserName=ctest(1001)`; "" for an account's own record)."""
        return self.fields.get("UserName", "").partition("(")[0]

    @property
    def uid(self) -> str:
        return self.fields.get("UserName", "").partition("(")[2].rstrip(")")


@dataclass(frozen=True)
class SubmitLimits:
    """The associations and QOS the controller told about, to pick the limits of one task from."""

    user: str
    records: tuple[_Record, ...]

    def tightest(self, account: str | None, qos: str | None, partition: str | None) -> SubmitLimit | None:
        """The limit leaving the least room for a task submitted with these options (None: no limit)."""
        found = self.applying(account, qos, partition)
        return min(found, key=lambda item: item.room) if found else None

    def applying(self, account: str | None, qos: str | None, partition: str | None) -> list[SubmitLimit]:
        """The user's association (the account given, else the default one; the partition's own
        association where there is one) with its MaxSubmitJobs and GrpSubmitJobs, the GrpSubmitJobs
        of every account above it, and the limits of the QOS (the one given, else `normal`): its
        GrpSubmitJobs, MaxSubmitJobsPerUser and MaxSubmitJobsPerAccount."""
        assocs = [r for r in self.records if r.kind == "assoc"]
        mine = [r for r in assocs if r.user == self.user]
        if account:
            mine = [r for r in mine if r.fields.get("Account") == account]
        else:
            mine = [r for r in mine if r.fields.get("DefAssoc") == "Yes"] or mine
        if not mine:
            return []
        wanted = [r for r in mine if partition and r.fields.get("Partition") == partition]
        chosen = (wanted or [r for r in mine if not r.fields.get("Partition")] or mine)[0]
        account = chosen.fields.get("Account", "")
        found = [
            SubmitLimit(f"{name} of association {account}/{self.user}", *value)
            for name, value in chosen.limits.items()
        ]
        accounts = {r.fields.get("Account", ""): r for r in assocs if not r.user}
        above, seen = account, set()
        while above in accounts and above not in seen:  # the accounts above it, to the root
            seen.add(above)
            record = accounts[above]
            if "GrpSubmitJobs" in record.limits:
                found.append(
                    SubmitLimit(f"GrpSubmitJobs of account {above}", *record.limits["GrpSubmitJobs"])
                )
            above = record.fields.get("ParentAccount", "").partition("(")[0]
        name = qos or DEFAULT_QOS
        for record in self.records:
            if record.kind == "qos" and record.fields.get("QOS", "").partition("(")[0] == name:
                for key, value in record.limits.items():
                    found.append(SubmitLimit(f"{key} of QOS {name}", *value))
                for key, value in record.per_user.get(chosen.uid, {}).items():
                    found.append(SubmitLimit(f"{key.removesuffix('PU')}PerUser of QOS {name}", *value))
                for key, value in record.per_account.get(account, {}).items():
                    found.append(SubmitLimit(f"{key.removesuffix('PA')}PerAccount of QOS {name}", *value))
        return found


_LIMIT = re.compile(r"\b((?:Grp|Max)SubmitJobs(?:PU|PA)?)=(\d+)\((\d+)\)")


def parse_assoc_mgr(text: str, user: str) -> SubmitLimits | None:
    """The lines ASSOC_LINES keeps of `scontrol show assoc_mgr users=<user> flags=assoc,qos`, e.g.

        ClusterName=testbed Account=testacct UserName=ctest(1001) Partition= Priority=0 ID=4
            ParentAccount= Lft=3 DefAssoc=Yes
            GrpSubmitJobs=N(0) GrpWall=N(0.00)
            MaxJobs= MaxJobsAccrue= MaxSubmitJobs=20(3) MaxWallPJ=
        QOS=normal(1)
            GrpJobs=N(0) GrpJobsAccrue=N(0) GrpSubmitJobs=N(0) GrpWall=N(0.00)
            User Limits
              1001
                MaxJobsPU=N(0) MaxJobsAccruePU=N(0) MaxSubmitJobsPU=25(3)

    `20(3)`: a limit of 20 that counts 3 jobs now; `N(0)` or nothing: no limit. None when the
    controller said nothing (no accounting, or it keeps associations private)."""
    records: list[_Record] = []
    section: dict[str, dict[str, tuple[int, int]]] | None = None
    current: dict[str, tuple[int, int]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith(("ClusterName=", "QOS=")):
            fields = _settings(stripped.split())
            records.append(_Record("assoc" if "ClusterName" in fields else "qos", fields, {}, {}, {}))
            section = current = None
        elif not records or not stripped:
            continue
        elif stripped in ("User Limits", "Account Limits"):
            section = records[-1].per_user if stripped == "User Limits" else records[-1].per_account
            current = None
        elif section is not None and "=" not in stripped and " " not in stripped:
            current = section.setdefault(stripped, {})
        elif "ParentAccount=" in stripped:
            records[-1].fields.update(_settings(stripped.split()))
        else:
            target = current if current is not None else records[-1].limits
            for name, limit, used in _LIMIT.findall(stripped):
                target[name] = (int(limit), int(used))
    return SubmitLimits(user, tuple(records)) if records and user else None


# sbatch's words when the controller could not be reached: the job was NOT taken, trying again is safe.
UNREACHABLE = ("Unable to contact slurm controller", "temporarily unable to accept job", "Connection refused")
# ... when the answer was lost: the controller may have taken the job. A retry first looks for it.
UNCERTAIN = ("Socket timed out", "Zero Bytes were transmitted", "Communication connection failure")
TOKEN_MARK = "compute-submission:"
FOUND_MARK = "compute-found="


@dataclass(frozen=True)
class Retry:
    """How long to keep trying while the controller is unreachable (`submit_retry` of the task), with
    a doubling pause between attempts; `stop` (Ctrl-C) ends the pauses, `report` hears each retry."""

    seconds: float = 0.0
    stop: threading.Event | None = None
    report: Callable[[str], None] | None = None
    first_pause: float = 1.0
    max_pause: float = 30.0


def new_token() -> str:
    return uuid.uuid4().hex


def submit(
    host: Host,
    text: str,
    extra_args: Sequence[str] = (),
    retry: Retry = Retry(),
    token: str | None = None,
    secrets: Mapping[str, str] | None = None,
    script_args: Sequence[str] = (),
) -> str:
    """Upload the script to a unique path, sbatch it, remove it; return the job (or array) id.
    A refused submission raises with sbatch's own words. While the controller is unreachable the
    submission is tried again for `retry.seconds`; each retry first looks in the queue for the job
    of an earlier attempt whose answer was lost (by a token in its --comment), so none runs twice.
    `secrets` reach sbatch's environment (so the job's) through stdin, before the script;
    `script_args` are the script's own arguments (`$1`...)."""
    token = None if _has_comment(text) else (token or new_token())
    args = [*extra_args, f"--comment={TOKEN_MARK}{token}"] if token else list(extra_args)
    stop = retry.stop or threading.Event()
    start = time.monotonic()
    pause = retry.first_pause
    attempt = 0
    while True:
        end = secret_env.marker()
        command = submit_command(args, token if attempt else None, script_args)
        stdin = text.encode()
        if secrets:
            command = f"{secret_env.receive(end)}\n{command}"
            stdin = secret_env.payload(secrets, end) + stdin
        result = host.run(command, stdin=stdin, timeout=120)
        if result.ok:
            return parse_job_id(result.stdout)
        said = result.stderr.strip() or result.stdout.strip() or f"exit code {result.exit_code}"
        waited = time.monotonic() - start
        retryable = _retryable(said, token is not None)
        if not retryable or waited + pause > retry.seconds:
            raise _refused(host.alias, said, waited if retryable else None, retry.seconds)
        if retry.report:
            retry.report(f"sbatch failed ({said.splitlines()[-1]}): trying again in {pause:g} s")
        if stop.wait(pause):
            raise Interrupted(host.alias)
        pause = min(pause * 2, retry.max_pause)
        attempt += 1


def _refused(alias: str, said: str, waited: float | None, budget: float) -> TaskError:
    if waited is None:
        return TaskError(host=alias, message=f"sbatch refused the job: {said}")
    return TaskError(
        host=alias,
        message=f"Slurm's controller did not answer for {waited:.0f} s "
        f"(submit_retry: {budget:g} s): {said}. The jobs submitted before are recorded; once Slurm "
        "answers again, run the playbook "
        "with --skip-submitted to submit the rest",
    )


def submit_command(args: Sequence[str], look_for: str | None, script_args: Sequence[str] = ()) -> str:
    """The remote side of one attempt: the script arrives on stdin into a unique file (two runs never
    share one), sbatch reads it, the file is removed. `look_for`: print the id of the queued job whose
    comment carries this token instead of submitting (the answer of an earlier attempt was lost)."""
    path = f"{REMOTE_SCRIPTS}/{new_run_id()}-{uuid.uuid4().hex[:8]}.sbatch"
    remote = shell.quote_path(path)
    lines = []
    if look_for:
        # a failing squeue means the controller is still away: fail like sbatch would, to retry later
        lines += [
            "compute_q=$(squeue -h -u \"$(id -un)\" -o '%F|%k') || "
            "{ echo 'sbatch: error: Unable to contact slurm controller (squeue failed)' >&2; exit 1; }",
            f'compute_id=$(printf "%s\\n" "$compute_q" | grep -F {shell.quote("|" + TOKEN_MARK + look_for)}'
            " | head -n 1 | cut -d'|' -f1)",
            f'if [ -n "$compute_id" ]; then cat >/dev/null; echo "{FOUND_MARK}$compute_id"; exit 0; fi',
        ]
    after = f" {shell.join(script_args)}" if script_args else ""
    lines.append(
        f"cat > {remote} && sbatch --parsable {shell.join(args)} {remote}{after}; "
        f"compute_rc=$?; rm -f {remote}; exit $compute_rc"
    )
    return "\n".join(lines)


def find_submissions(host: Host, tokens: Sequence[str]) -> dict[str, str]:
    """token -> job id, for the submissions (by their --comment token) still in Slurm's queue."""
    # every state: a job found may have run and ended already (it stays until MinJobAge)
    result = host.run("squeue -h -t all -u \"$(id -un)\" -o '%F|%k'", timeout=120, check=True)
    wanted = set(tokens)
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        job_id, _, comment = line.strip().partition("|")
        token = comment.removeprefix(TOKEN_MARK)
        if comment.startswith(TOKEN_MARK) and token in wanted:
            found.setdefault(token, job_id)
    return found


def _has_comment(text: str) -> bool:
    return re.search(r"^#SBATCH\s+--comment\b", text, re.MULTILINE) is not None


def _retryable(said: str, have_token: bool) -> bool:
    return any(m in said for m in UNREACHABLE) or (have_token and any(m in said for m in UNCERTAIN))


def parse_job_id(stdout: str) -> str:
    """`sbatch --parsable` prints `<id>` or `<id>;<cluster>` (after any warnings)."""
    for line in reversed(stdout.strip().splitlines()):
        job_id = line.strip().removeprefix(FOUND_MARK).split(";")[0]
        if job_id.isdigit():
            return job_id
    raise TaskError(f"cannot read a job id in sbatch's answer: {stdout.strip()!r}")


# -- states -----------------------------------------------------------------------------------


def states_part(records: Sequence[JobRecord]) -> shell.Part:
    """The question of `states`, to fly alone or with others: one squeue for all the user's jobs the
    controller still knows (its size set by the user's queue, not by the ledger), then the
    exit-status files the jobs wrote, then sacct when it works. What it needs comes on stdin, read
    with shell builtins only: the status files, then the job ids in chunks for sacct (a command line
    holds at most 128 KiB). The records are the jobs still open: ended ones are not asked about again
    (archive/states.csv)."""
    ids = list(dict.fromkeys(r.job_id.split("_")[0] for r in records))
    chunks = "".join(f"{','.join(ids[i : i + ID_CHUNK])}\n" for i in range(0, len(ids), ID_CHUNK))
    files = "".join(f"{r.status_file}\n" for r in records if r.status_file)
    command = "\n".join(
        [
            "squeue -h -r -t all -u \"$(id -un)\" -o '%i|%T|%r' </dev/null 2>/dev/null",
            f"echo {SECTION}",
            f'while IFS= read -r f && [ "$f" != {SECTION} ]; do',
            '  [ -r "$f" ] && IFS= read -r l < "$f" && printf "%s|%s\\n" "$f" "$l"',
            "done",
            f"echo {SECTION}",
            "while IFS= read -r ids; do",
            f'  sacct -n -X -P -j "$ids" -o JobID,State,ExitCode </dev/null 2>/dev/null || echo {NO_SACCT}',
            "done",
            "true",
        ]
    )
    return shell.Part(command, f"{files}{SECTION}\n{chunks}".encode(), timeout=120)


def read_states(records: Sequence[JobRecord], answer: str) -> dict[str, JobState]:
    """The state of each record from what `states_part` printed."""
    queue, status, sacct = [*answer.split(SECTION + "\n"), "", ""][:3]
    found = merge_states(
        records,
        parse_squeue(queue),
        parse_status_files(status),
        parse_sacct(sacct),
        sacct_works=NO_SACCT not in sacct.splitlines(),
    )
    attempts = parse_attempts(status)
    for r in records:
        attempt = attempts.get(r.status_file)
        if attempt and found[r.job_id].state not in LIVE:  # a live job's file is its last attempt's
            found[r.job_id] = dataclasses.replace(found[r.job_id], attempt=attempt)
    return found


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """`%i|%T|%r` lines -> job id -> (Slurm state, reason)."""
    found: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and (job_id := leader(parts[0])):
            found[job_id] = (parts[1], "" if parts[2] in ("None", "(null)") else parts[2])
    return found


def leader(job_id: str) -> str | None:
    """A heterogeneous job is its first component (`123+0`, which runs the batch script): its
    state is the job's, its other components (`123+1` ...) are left out. Other ids are themselves."""
    base, plus, component = job_id.partition("+")
    if not plus:
        return job_id
    return base if component == "0" else None


def parse_status_files(text: str) -> dict[str, tuple[int, str]]:
    """`<path>|<exit code> <how> [<attempt>]` lines -> path -> (exit code, how it ended)."""
    found: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        path, _, content = line.rpartition("|")
        words = content.split()
        if not words:
            continue
        code, *how = words
        if path and re.fullmatch(r"-?\d+", code):
            found[path] = (int(code), how[0] if how else "exit")
    return found


def parse_attempts(text: str) -> dict[str, int]:
    """The attempt a job's status file says it ended in (its third word: jobs with a retry policy)."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        path, _, content = line.rpartition("|")
        words = content.split()
        if path and len(words) > 2 and words[2].isdigit():
            found[path] = int(words[2])
    return found


def parse_sacct(text: str) -> dict[str, tuple[str, int | None]]:
    """`JobID|State|ExitCode` lines (`CANCELLED by 123`, `1:0`) -> job id -> (state, exit code)."""
    found: dict[str, tuple[str, int | None]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and (job_id := leader(parts[0])):
            code = parts[2].split(":")[0]
            found[job_id] = (parts[1].split(" ")[0], int(code) if code.isdigit() else None)
    return found


def merge_states(
    records: Sequence[JobRecord],
    queue: dict[str, tuple[str, str]],
    status: dict[str, tuple[int, str]],
    sacct: dict[str, tuple[str, int | None]],
    sacct_works: bool = True,
) -> dict[str, JobState]:
    """Array elements that never started have no record of their own: squeue (and sacct) show the
    array's remaining elements as one record under the array id (e.g. an array cancelled while pending).
    A row without a status file (imported from the original tool) has only squeue and sacct to go by."""

    def pick(found: dict[str, Any], job_id: str) -> Any:
        return found.get(job_id) or found.get(job_id.partition("_")[0])

    def gone(record: JobRecord) -> str:
        if record.status_file:
            return GONE
        return GONE_UNTRACKED if sacct_works else GONE_NO_SACCT

    return {
        r.job_id: merge_one(
            pick(queue, r.job_id),
            status.get(r.status_file) if r.status_file else None,
            pick(sacct, r.job_id),
            gone(r),
        )
        for r in records
    }


def merge_one(
    queued: tuple[str, str] | None,
    status: tuple[int, str] | None,
    sacct: tuple[str, int | None] | None,
    gone: str = GONE,
) -> JobState:
    """The controller knows best while a job lives; the job's own status file knows its exit code
    (and outlives the controller's memory, MinJobAge); sacct fills in when both are silent. `gone`:
    why nothing is known when nothing answers."""
    slurm_state = STATES.get(queued[0], UNKNOWN) if queued else None
    reason = queued[1] if queued else ""
    told = [found[0] for found in (queued, sacct) if found and found[0] in TELLING_ENDS]
    # an end the controller still knows may be undone (requeue after a preemption or node failure,
    # even once the job wrote its status file): settled only once the controller forgot the job
    settled = queued is None
    if slurm_state in LIVE:
        return JobState(slurm_state, None, reason)
    reason = told[0] if told else reason
    if status is not None:
        code, how = status
        reason = STOPPED_ON_LOG if how == "log" else reason
        return JobState(slurm_state or state_from_status(code, how), code, reason, settled)
    if sacct is not None and sacct[0] in STATES:
        return JobState(STATES[sacct[0]], sacct[1], reason, settled)
    if slurm_state is not None:
        return JobState(slurm_state, None, reason, settled)
    return JobState(UNKNOWN, None, gone)


def state_from_status(code: int, how: str) -> str:
    if how == "timeout":
        return TIMEOUT
    if how in ("signal", "requeue"):
        return CANCELLED
    return COMPLETED if code == 0 else FAILED


# -- cancel and resubmit ----------------------------------------------------------------------


def cancel(host: Host, records: Sequence[JobRecord]) -> None:
    if records:
        host.run(f"scancel {shell.join([r.job_id for r in records])}", timeout=60, check=True)


def resubmit(
    host: Host, records: Sequence[JobRecord], ledger: Ledger, again: Mapping[str, Again] | None = None
) -> list[JobRecord]:
    """Submit each archived script again, without its dependency (the jobs it waited for are done):
    whole jobs as they were, array elements as `sbatch --array=<their indexes>`, one call per script.
    A retry (`again`) is one call per job, its script given its attempt and grown resources, its
    rows kept in the run of the job they retry."""
    groups: dict[str, list[JobRecord]] = {}
    for record in records:
        key = record.job_id if again else record.script
        groups.setdefault(key, []).append(record)
    from compute_platform.scheduling import code

    ledger.ensure_writable(host.alias)
    code.restore(host, ledger, [r.code for r in records])  # `compute code --clean` may have removed it
    run_id = new_run_id()
    found: list[JobRecord] = []
    for group in groups.values():
        retry = again.get(group[0].job_id) if again else None
        found += _resubmit(host, ledger, group, group[0].run_id if retry else run_id, retry)
    return found


def _resubmit(
    host: Host, ledger: Ledger, group: list[JobRecord], run_id: str, retry: Again | None = None
) -> list[JobRecord]:
    """One archived script, through the ledger's submission transaction: nothing is resubmitted that
    cannot be recorded, and a lost answer is noted as unconfirmed."""
    text = ledger.script_text(group[0])
    if retry:
        from compute_platform.scheduling.recovery import script_again

        text = script_again(text, retry.overrides, retry.attempt - 1)
    indexes = [r.job_id.partition("_")[2] for r in group]
    array = all(indexes)
    token = new_token()
    new: list[JobRecord] = []
    attempt, reason = (str(retry.attempt), retry.reason) if retry else ("", "")

    def sbatch() -> str:
        secrets = secret_env.read(secret_env.names_in(text), host.alias)
        return submit(
            host, text, [f"--array={','.join(indexes)}"] if array else [], token=token, secrets=secrets
        )

    def rows(job_id: str, script: str) -> list[JobRecord]:
        new.extend(renewed_rows(group, job_id, script, attempt, reason, run_id))
        return new

    def lost(script: str) -> dict[str, Any]:
        info = {"resubmits": [r.job_id for r in group], "token": token, "script": script}
        return {**info, "attempt": attempt, "reason": reason} if retry else info

    ledger.submit(host.alias, Script(text, "slurm", len(group)), sbatch, rows, lost)
    return new


def renewed_rows(
    group: Sequence[JobRecord], job_id: str, script: str, attempt: str, reason: str, run_id: str = ""
) -> list[JobRecord]:
    """The rows of one resubmission of these jobs of one script (array elements keep their index);
    a retry's (`attempt`) stay in the run of the jobs they retry."""
    indexes = [r.job_id.partition("_")[2] for r in group]
    array = all(indexes)
    ids = [f"{job_id}_{i}" if array else job_id for i in indexes]
    return [
        renewed(
            r,
            new_id,
            JobPaths.slurm(posixpath.dirname(r.log_out), r.job_name, new_id),
            script,
            run_id or r.run_id,
            attempt,
            reason,
        )
        for r, new_id in zip(group, ids, strict=True)
    ]


class SlurmBackend:
    """The `Backend` of jobs/query.py for Slurm (see scheduling/backend.py)."""

    def states_part(self, records: Sequence[JobRecord]) -> shell.Part:
        return states_part(records)

    def read_states(self, records: Sequence[JobRecord], answer: str) -> dict[str, JobState]:
        return read_states(records, answer)

    def cancel(self, host: Host, records: Sequence[JobRecord]) -> None:
        cancel(host, records)

    def resubmit(
        self,
        host: Host,
        records: Sequence[JobRecord],
        ledger: Ledger,
        again: Mapping[str, Again] | None = None,
    ) -> list[JobRecord]:
        return resubmit(host, records, ledger, again)


BACKEND = SlurmBackend()


# -- resource use (compute results) -----------------------------------------------------------------

USAGE_FIELDS = "JobID,Elapsed,MaxRSS,ReqMem,TotalCPU,AllocCPUS,State"


@dataclass(frozen=True)
class Usage:
    """What accounting says an ended job used: its time, its peak memory against what it asked, its CPU."""

    elapsed: float  # seconds
    max_rss_mb: float | None  # the largest of its steps'
    req_mem_mb: float | None
    cpu_seconds: float
    cpus: int

    @property
    def cpu_efficiency(self) -> float | None:
        """CPU time used over CPU time held (elapsed x CPUs)."""
        held = self.elapsed * self.cpus
        return self.cpu_seconds / held if held > 0 else None


def usage_part(asked: Sequence[tuple[str, str]]) -> shell.Part:
    """sacct for these (job id, status file) pairs, their steps too (the peak memory is a step's): a
    job with a status file only once the file is there (it has ended; what a running job used is not
    final), one with none ("": known to have ended) in any case. Prints `asked|<id>` for each job it
    asks about, then sacct's lines; NO_SACCT when the cluster has no accounting (sacct says its storage
    is disabled, or there is no sacct), SACCT_FAILED when sacct failed otherwise (slurmdbd down for a
    while: its jobs are asked again, not taken as never to be known)."""
    sacct = f'sacct -n -P -j "$compute_ids" -o {USAGE_FIELDS} </dev/null 2>&1 1>&3 3>&-'
    script = "\n".join(
        [
            "compute_sacct() {",
            '  if [ -n "$compute_ids" ]; then',
            f'    {{ compute_err=$({sacct}); }} 3>&1 || case "$compute_err" in',
            f'      *"storage is disabled"*|*"not found"*) echo {NO_SACCT} ;;',
            f"      *) echo {SACCT_FAILED} ;;",
            "    esac",
            "  fi",
            "  compute_ids=; compute_n=0",
            "}",
            "compute_ids=; compute_n=0",
            "while IFS= read -r compute_j && IFS= read -r compute_f; do",
            '  if [ -z "$compute_f" ] || [ -r "$compute_f" ]; then',
            "    printf 'asked|%s\\n' \"$compute_j\"",
            "    compute_ids=${compute_ids:+$compute_ids,}$compute_j; compute_n=$((compute_n + 1))",
            f'    [ "$compute_n" -lt {ID_CHUNK} ] || compute_sacct',
            "  fi",
            "done",
            "compute_sacct",
        ]
    )
    stdin = "".join(f"{job_id}\n{status_file}\n" for job_id, status_file in asked)
    return shell.Part(script, stdin.encode(), timeout=120)


def usage_asked(text: str) -> set[str]:
    """The jobs `usage_part` asked sacct about."""
    return {line[6:] for line in text.splitlines() if line.startswith("asked|")}


def parse_usage(text: str) -> dict[str, Usage]:
    """`JobID|Elapsed|MaxRSS|ReqMem|TotalCPU|AllocCPUS|State` lines of jobs and their steps -> job id ->
    Usage. A job whose record does not say yet what it asked, or has no step yet, is left out (sacct is a
    little behind the job's end: it is asked again); one that ended without ever running (cancelled
    while pending: no step will come) used nothing."""
    main: dict[str, list[str]] = {}
    peak: dict[str, float] = {}
    steps: set[str] = set()
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 7:
            continue
        job, _, step = parts[0].partition(".")
        job = leader(job) or ""
        if not job:
            continue
        if step:
            steps.add(job)
            rss = _mem_mb(parts[2])
            if rss is not None:
                peak[job] = max(peak.get(job, 0.0), rss)
        elif _seconds(parts[1]) is not None and _mem_mb(parts[3].rstrip("nc")) is not None:
            main[job] = parts  # right after the end, the record may not say it all yet: asked again
    found = {}
    for job, parts in main.items():
        never_ran = _seconds(parts[1]) == 0 and parts[6].split(" ")[0] in NEVER_RAN_ENDS
        if job not in steps and not never_ran:  # its steps' records (their memory) are still to come
            continue
        cpus = int(parts[5]) if parts[5].isdigit() else 1
        req = parts[3]
        per_cpu = req.endswith("c")
        asked = _mem_mb(req.rstrip("nc"))
        assert asked is not None  # (checked above)
        found[job] = Usage(
            _seconds(parts[1]) or 0.0,
            peak.get(job, _mem_mb(parts[2])),
            asked * max(cpus, 1) if per_cpu else asked,
            _seconds(parts[4]) or 0.0,
            cpus,
        )
    return found


# the ends of a job that may never have run (no step, nothing used): any other has steps to come
NEVER_RAN_ENDS = frozenset(
    {"CANCELLED", "FAILED", "BOOT_FAIL", "NODE_FAIL", "DEADLINE", "TIMEOUT", "REVOKED"}
)


def _mem_mb(text: str) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip())
    if not match:
        return None
    return (
        float(match.group(1))
        * {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2, "": 1 / 1024**2}[match.group(2)]
    )


def _seconds(text: str) -> float | None:
    """`[D-]HH:MM:SS[.mmm]`, `MM:SS[.mmm]` -> seconds."""
    days, _, rest = text.strip().rpartition("-")
    try:
        parts = [float(p) for p in rest.split(":")]
        day = int(days) if days else 0
    except ValueError:
        return None
    total = 0.0
    for part in parts:
        total = total * 60 + part
    return day * 86400 + total
