"""Retry policies: what a job's end means (classify), whether it earns another attempt (decide) and
with which resources (escalate). Pure: the policy travels in the job's row (its `policy` column),
so that `compute watch` applies it without the playbook, as it was when the job was submitted.

What happens where:
  on the cluster   preemption and node failure requeue the job in place (`--requeue`); a job with a
                   `checkpoint` gets a signal before its time limit and requeues itself; fail_on_log
                   patterns stop a job from inside (scheduling/scripts/recovery.sh)
  compute watch    out of memory, a time limit without a checkpoint, log patterns and exit codes:
                   a new submission of the archived script, with more memory or time when asked
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compute_platform.scheduling.backend import (
    CANCELLED,
    COMPLETED,
    FAILED,
    LOST_REASONS,
    STOPPED_ON_LOG,
    TIMEOUT,
    UNKNOWN,
    JobState,
)

# The failures a policy may name (`retry: {on: [...]}`), besides exit codes.
PREEMPTED = "preempted"  # the scheduler took the node for a job of a higher priority
NODE_FAIL = "node_fail"  # the node died under the job (or never booted)
TIMEOUT_CLASS = "timeout"  # the time limit was reached
OOM = "oom"  # killed for using more memory than asked (or exit code 137)
LOST = "lost"  # a tmux job that ended without an exit status (session killed, host rebooted)
LOG = "log"  # a failed job whose output matches one of `on_log`
FAILED_CLASS = "failed"  # any other non-zero exit: the program's own error
FAIL_ON_LOG = STOPPED_ON_LOG  # stopped by the job itself: its output matched `fail_on_log`
CLASSES = (PREEMPTED, NODE_FAIL, TIMEOUT_CLASS, OOM, LOST, LOG, FAILED_CLASS, FAIL_ON_LOG)
DEFAULT_ON = (PREEMPTED, NODE_FAIL, TIMEOUT_CLASS, OOM)
# the ends that the cluster itself retries once the script asks for it (`--requeue`)
IN_PLACE = frozenset({PREEMPTED, NODE_FAIL})
# What Slurm's own processes write in the job's error file when it kills a job for its memory: with
# JobAcctGatherParams=OverMemoryKill ("exceeded memory limit") and with cgroups ("oom-kill event").
OOM_LOG = ("exceeded memory limit", "oom-kill event", "oom_kill event", "Out Of Memory")
EXIT_OOM = 137  # 128 + SIGKILL: what a program killed by the kernel's OOM killer exits with


@dataclass(frozen=True)
class Checkpoint:
    """A job near its time limit gets `signal` (or runs `command`), then is requeued in place."""

    before: int = 120  # seconds before the limit (Slurm sends it up to a minute earlier)
    signal: str = "USR1"
    command: str = ""  # shell code run in the job's directory instead of signalling the program


@dataclass(frozen=True)
class Policy:
    """A task's `retry`, `fail_on_log` and `notify`, as the job's row keeps them."""

    max: int = 3  # attempts in all, the first included
    on: tuple[str | int, ...] = DEFAULT_ON  # classes, or exit codes
    on_log: tuple[str, ...] = ()  # extended regular expressions (grep -E)
    mem: float = 1.0  # escalation factors for `oom` and `timeout`
    time: float = 1.0
    checkpoint: Checkpoint | None = None
    fail_on_log: tuple[str, ...] = ()
    webhook: str = ""
    mail: tuple[str, ...] = ()
    smtp: str = ""  # host:port of the SMTP server the mail goes through
    retries: bool = True  # False: only fail_on_log or notify were given

    def to_json(self) -> str:
        data: dict[str, Any] = {"max": self.max, "on": list(self.on)} if self.retries else {}
        data.update(
            {k: list(v) for k, v in (("on_log", self.on_log), ("fail_on_log", self.fail_on_log)) if v}
        )
        if self.mem != 1 or self.time != 1:
            data["escalate"] = {"mem": self.mem, "time": self.time}
        if self.checkpoint:
            data["checkpoint"] = vars(self.checkpoint)
        data.update({k: v for k, v in (("webhook", self.webhook), ("smtp", self.smtp)) if v})
        if self.mail:
            data["mail"] = list(self.mail)
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy | None:
        """The policy of a row (None: the row has none, or a hand-edited one that does not read)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            escalate = data.get("escalate", {})
            point = data.get("checkpoint")
            return cls(
                max=int(data.get("max", 1)),
                on=tuple(data.get("on", ())),
                on_log=tuple(data.get("on_log", ())),
                mem=float(escalate.get("mem", 1)),
                time=float(escalate.get("time", 1)),
                checkpoint=Checkpoint(**point) if point else None,
                fail_on_log=tuple(data.get("fail_on_log", ())),
                webhook=str(data.get("webhook", "")),
                mail=tuple(data.get("mail", ())),
                smtp=str(data.get("smtp", "")),
                retries="max" in data,
            )
        except (ValueError, TypeError, AttributeError):
            return None

    @property
    def requeue(self) -> bool:
        """Whether the script asks Slurm to requeue it after a preemption or a node failure."""
        return self.retries and self.max > 1 and bool(IN_PLACE & set(self.on))

    @property
    def log_patterns(self) -> tuple[str, ...]:
        """What to look for in an ended job's output: its on_log patterns, and Slurm's words for a
        memory kill when `oom` is retried."""
        return (*self.on_log, *(OOM_LOG if OOM in self.on else ()))


@dataclass(frozen=True)
class Verdict:
    """What becomes of an ended job: retried (with these resource overrides) or not, and why."""

    failure: str  # its class ("" for a job that completed)
    retry: bool
    why: str  # for the user: "oom, attempt 2 of 3 with --mem=8G", "exit 1 is not retried"
    overrides: Mapping[str, str] = field(default_factory=dict)  # sbatch options: {"mem": "8G"}


def classify(state: JobState, log_match: str = "") -> str:
    """The class of a job's end ("" when it completed or was cancelled by the user). `log_match`:
    the first pattern its output matched (on_log, or Slurm's memory words), if any."""
    reason = state.reason
    if state.state == COMPLETED:
        return ""
    if reason == FAIL_ON_LOG:
        return FAIL_ON_LOG
    if reason == "PREEMPTED":
        return PREEMPTED
    if reason in ("NODE_FAIL", "BOOT_FAIL"):
        return NODE_FAIL
    if state.state == CANCELLED:
        return ""  # scancel or `compute cancel` (its SIGKILL after the grace too): the user's decision
    if reason == "OUT_OF_MEMORY" or state.exit_code == EXIT_OOM or log_match in OOM_LOG:
        return OOM
    if state.state == TIMEOUT:
        return TIMEOUT_CLASS
    if log_match:
        return LOG
    if state.state == FAILED and reason in LOST_REASONS:
        return LOST
    if state.state in (FAILED, UNKNOWN):
        return FAILED_CLASS
    return ""


def decide(
    policy: Policy | None,
    state: JobState,
    attempt: int,
    script: str = "",
    log_match: str = "",
    base: Mapping[str, str] | None = None,
) -> Verdict:
    """Whether a job that ended this way, at this attempt (1 for the first), is submitted again.
    `script`: its archived script, whose `--mem` and `--time` an escalation grows; `base`: the
    overrides the attempt already had (they win over the script's directives)."""
    failure = classify(state, log_match)
    if not failure:
        return Verdict("", False, "")
    if policy is None or not policy.retries:
        return Verdict(failure, False, f"{failure}: the task has no retry policy")
    code = state.exit_code
    wanted = failure in policy.on or (
        failure in (FAILED_CLASS, LOG) and code is not None and code in policy.on
    )
    if failure == LOG and LOG not in policy.on:
        wanted = True  # an on_log pattern names what to retry: listing it is asking for it
    if not wanted:
        what = f"exit {code}" if failure == FAILED_CLASS and code is not None else failure
        return Verdict(failure, False, f"{what} is not retried (retry.on: {', '.join(map(str, policy.on))})")
    if attempt >= policy.max:
        return Verdict(failure, False, f"{failure}: attempt {attempt} of {policy.max} was the last")
    overrides = dict(base or {})
    grown = _escalate(policy, failure, script, overrides)
    if grown is None:
        return Verdict(failure, False, f"{failure}: no --mem in its script to grow (give mem in the config)")
    shown = " ".join(f"--{k}={v}" for k, v in grown.items())
    return Verdict(
        failure,
        True,
        f"{failure}, attempt {attempt + 1} of {policy.max}" + (f" with {shown}" if shown else ""),
        grown,
    )


def _escalate(policy: Policy, failure: str, script: str, overrides: dict[str, str]) -> dict[str, str] | None:
    """The overrides of the next attempt; None when memory must grow but nothing says how much the
    job had."""
    asked = {**directives(script), **overrides}
    if failure == OOM and policy.mem > 1:
        mem = parse_mem(asked.get("mem", ""))
        if mem is None:
            return None
        overrides["mem"] = format_mem(mem * policy.mem)
    if failure == TIMEOUT_CLASS and policy.time > 1:
        minutes = parse_time(asked.get("time", ""))
        if minutes is not None:
            overrides["time"] = str(math.ceil(minutes * policy.time))
    return overrides


_DIRECTIVE = re.compile(r"^#SBATCH\s+--(mem|time)=\"?([^\"\s]+)\"?", re.MULTILINE)


def directives(script: str) -> dict[str, str]:
    """The `--mem` and `--time` of a script's first `#SBATCH` block (a heterogeneous job's first
    component)."""
    head = script.split("#SBATCH hetjob", 1)[0]
    return {name: value for name, value in _DIRECTIVE.findall(head)}


_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_mem(text: str) -> float | None:
    """Slurm's `--mem` (`4G`, `500M`, `4000`: megabytes by default) in MiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", text.strip().upper())
    if not match:
        return None
    return float(match.group(1)) * _MEM_UNITS[match.group(2) or "M"]


def format_mem(mib: float) -> str:
    """MiB -> `--mem`'s value: whole gigabytes when it is one, else megabytes (rounded up)."""
    whole = math.ceil(mib)
    return f"{whole // 1024}G" if whole % 1024 == 0 else f"{whole}M"


def parse_time(text: str) -> float | None:
    """Slurm's `--time` (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) in minutes."""
    text = text.strip()
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    try:
        parts = [int(p) for p in rest.split(":")]
        day = int(days)
    except ValueError:
        return None
    if "-" in text:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    else:
        return None
    return day * 1440 + hours * 60 + minutes + seconds / 60


def sbatch_args(overrides: Mapping[str, str]) -> list[str]:
    """The overrides as sbatch options: on its command line they win over the script's directives."""
    return [f"--{name}={value}" for name, value in sorted(overrides.items())]


def attempt_of(text: str) -> int:
    return int(text) if text.isdigit() and int(text) > 0 else 1


def first_match(text: str, patterns: Sequence[str]) -> str:
    """The first of `patterns` (by its order) that one of the lines `grep -o` printed came from."""
    found = set(text.splitlines())
    return next((p for p in patterns if p in found), "")


_BEFORE = re.compile(r"^compute_attempts_before=\d+", re.MULTILINE)


def script_again(text: str, overrides: Mapping[str, str], attempts_before: int) -> str:
    """An archived sbatch script as its next attempt runs it: the attempts before it, and the grown
    `--mem`/`--time` in its first `#SBATCH` block (so that the archive keeps the exact script, and a
    further escalation grows from there)."""
    text = _BEFORE.sub(f"compute_attempts_before={attempts_before}", text, count=1)
    head, mark, tail = text.partition("#SBATCH hetjob")
    for name, value in sorted(overrides.items()):
        line = f"#SBATCH --{name}={value}"
        pattern = re.compile(rf"^#SBATCH\s+--{re.escape(name)}=.*$", re.MULTILINE)
        if pattern.search(head):
            head = pattern.sub(line.replace("\\", r"\\"), head, count=1)
        else:
            first = re.search(r"^#SBATCH .*$", head, re.MULTILINE)
            at = first.end() if first else len(head)
            head = f"{head[:at]}\n{line}{head[at:]}"
    return head + mark + tail


POLICY_MARK = "# compute: policy "


def policy_in(script: str) -> Policy | None:
    """The policy an archived script carries (sbatch or tmux launcher), None without one."""
    start = script.find("\n" + POLICY_MARK)
    if start < 0:
        return None
    line = script[start + 1 + len(POLICY_MARK) :].split("\n", 1)[0]
    return Policy.from_json(line)


def attempts_before(script: str) -> int:
    """The attempts before the one an archived script starts (what `script_again` wrote in it)."""
    found = _BEFORE.search(script)
    return int(found.group(0).partition("=")[2]) if found else 0
