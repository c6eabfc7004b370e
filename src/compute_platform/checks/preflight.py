"""`compute check --remote`: what a run will need, verified on every host of the playbook before
anything runs. Nothing is submitted or started; the only change is creating `save_path`, which the
run would do anyway.

One connection per host, hosts in parallel (each bounded by its `connect_timeout`), and at most two
round trips per host:

1. one script running every probe the host's tasks need, each in its own subshell, its output
   followed by a marker line with its exit status:
   - `save_path` writable (mkdir -p, touch and rm a probe file) for slurm and tmux tasks,
   - `sbatch` found (plus the home and MaxArraySize that scripts are rendered with) for slurm tasks,
   - `tmux` found for tmux tasks,
   - the host's `python` with pip for pip tasks and git installs, and for installs not the system's
     externally managed Python (PEP 668: pip refuses to install there, even with --user),
   - `git` found for git tasks;
2. on Slurm hosts, `sbatch --test-only` on the `#SBATCH` header of every distinct script the run
   would submit, rendered exactly as the run renders them. sbatch reads nothing else of a script, so
   a partition, time limit, GPU request or array size the cluster refuses is caught with sbatch's
   own words. (A `dependency` is left out: the ids it names exist only once the run has submitted.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compute_platform.errors import ComputeError
from compute_platform.hosts import shell
from compute_platform.scheduling.slurm import DEFAULT_MAX_ARRAY_SIZE, Cluster

if TYPE_CHECKING:
    from compute_platform.context import Task
    from compute_platform.hosts import Host, HostPool
    from compute_platform.hosts.base import Result
    from compute_platform.hosts.remote import Login
    from compute_platform.playbook.loader import Playbook

MARK = "@@compute-check@@"
TIMEOUT = 60.0  # per round trip, once connected
CLUSTER = "cluster facts"  # a probe whose output is used, not reported
EOF_WORD = "COMPUTE_SBATCH_TEST"  # every header line starts with '#': it can never be this word
# Exit status when the interpreter is the system's, marked externally managed (PEP 668).
MANAGED = 3
MANAGED_TEST = (
    "import os, sys, sysconfig; sys.exit("
    f"{MANAGED} if sys.prefix == sys.base_prefix and os.path.exists("
    'os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 0)'
)


@dataclass(frozen=True)
class Check:
    """One line of the report: a check on one host, ok or not, and why."""

    host: str
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Probe:
    """A shell snippet run on the host (in a subshell, stderr merged into stdout): exit status 0
    means ok; otherwise its output and the hint say what is wrong and what to do."""

    name: str
    script: str
    hint: str = ""


# -- what each host needs ---------------------------------------------------------------------


def host_tasks(playbook: Playbook, alias: str) -> list[Task]:
    return [task for task in playbook.tasks if alias in task.hosts]


def probes(playbook: Playbook, alias: str) -> list[Probe]:
    """The probes the tasks of `alias` need, each once, in a fixed order."""
    spec = playbook.inventory.host(alias)
    needs: set[str] = set()
    for task in host_tasks(playbook, alias):
        needs |= task.action.remote_needs()  # each task says what it needs (see NEEDS)
    found: list[Probe] = []
    if "save_path" in needs:
        found.append(save_path_probe(spec.save_path, alias))
    if "sbatch" in needs:
        found += [tool_probe("sbatch", SBATCH_HINT), Probe(CLUSTER, CLUSTER_SCRIPT)]
    if "tmux" in needs:
        found.append(tool_probe("tmux", TMUX_HINT, TMUX_VERSION))
    if "python" in needs:
        found.append(python_probe(spec.python, alias, "python-system" in needs))
    if "git" in needs:
        found.append(tool_probe("git", "install git on the host", "git --version"))
    if "ray" in needs:
        found.append(tool_probe("ray", RAY_HINT, "ray --version"))
    return found


# What a task may need on a host (Action.remote_needs): its log folder writable, a Slurm login node,
# tmux, the host's python with pip (refused if it is an externally managed system Python), git, ray.
NEEDS = ("save_path", "sbatch", "tmux", "python", "python-system", "git", "ray")

RAY_HINT = "install Ray on the cluster (`pip install ray`), or activate its environment in the host's init"


SBATCH_HINT = (
    "is this a Slurm login node? If Slurm needs a `module load`, add it to the host's `init` in hosts.yaml"
)
# The oldest tmux the launcher works with: `new-session -c` (1.9) and exact session names, `-t =NAME`
# (2.1). Released versions say `tmux 3.3a`; builds from git `tmux master` or `tmux next-3.4`.
TMUX_MIN = "2.1"
TMUX_HINT = (
    f"install tmux {TMUX_MIN} or later (e.g. `apt install tmux`) or put it in PATH through the host's "
    "init or env"
)
TMUX_VERSION = "\n".join(
    [
        "v=$(tmux -V) || exit",
        'case "$v" in "tmux "[01].*|"tmux 2.0"*)',
        f'  echo "$v is too old: compute\'s tmux jobs need tmux {TMUX_MIN}"; exit 1 ;;',
        "esac",
        'echo "$v"',
    ]
)

CLUSTER_SCRIPT = (
    'printf "%s\\n" "$HOME"\nscontrol show config 2>/dev/null | sed -n \'s/^MaxArraySize *= *//p\'\ntrue'
)


def tool_probe(tool: str, hint: str, version: str = "") -> Probe:
    found = f"command -v {tool} >/dev/null || {{ echo '{tool}: command not found'; exit 127; }}"
    return Probe(tool, f"{found}\n{version or f'command -v {tool}'}", hint)


def save_path_probe(save_path: str, alias: str) -> Probe:
    folder = shell.quote_path(save_path)
    probe = f"{folder}/.compute-probe-$$"
    script = f"mkdir -p -- {folder} && touch -- {probe} && rm -f -- {probe} && cd -- {folder} && pwd"
    return Probe(
        f"save_path {save_path} writable",
        script,
        f"set `save_path` for {alias} in hosts.yaml to a folder its user can write",
    )


def python_probe(python: str, alias: str, managed: bool) -> Probe:
    """The interpreter runs and has pip (and, for installs, is not the system's managed Python); on
    success it says which it is. POSIX shell only: the login shell of an SSH host may not be bash."""
    py = shell.quote_path(python)
    which = shell.quote("import sys; print(sys.executable, sys.version.split()[0])")
    lines = [
        f"version=$({py} -c {which}) || exit",
        f"pip=$({py} -m pip --version) || exit",
    ]
    if managed:
        lines.append(
            f"{py} -c {shell.quote(MANAGED_TEST)} || {{ echo {shell.quote(MANAGED_MESSAGE.format(python))};"
            f" exit {MANAGED}; }}"
        )
    lines.append('echo "$version, ${pip%% from *}"')  # "pip 23.0.1 from /usr/lib/..." -> "pip 23.0.1"
    hint = f"set `python:` for {alias} in hosts.yaml to an interpreter with pip, e.g. ~/venv/bin/python"
    return Probe(f"{python} with pip", "\n".join(lines), hint)


MANAGED_MESSAGE = "{} is the system's Python, marked externally managed (PEP 668): pip will refuse to install"


# -- the scripts and their answers ------------------------------------------------------------


def probe_script(found: Sequence[Probe]) -> str:
    """Every probe in a subshell (one cannot end the others), each followed by its marker. Messages
    in English whatever the host's locale: they are quoted in the report."""
    parts = ["LC_ALL=C; export LC_ALL"]
    for i, probe in enumerate(found):
        parts.append(f"( {probe.script}\n) </dev/null 2>&1\nprintf '\\n%s %s %s\\n' {MARK} {i} \"$?\"")
    return "\n".join(parts)


def parse_markers(stdout: str) -> dict[int, tuple[int, str]]:
    """probe index -> (exit status, its output)."""
    found: dict[int, tuple[int, str]] = {}
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            _, index, code = line.split()
            found[int(index)] = (int(code), "\n".join(lines).strip())
            lines = []
        else:
            lines.append(line)
    return found


def sbatch_header(script: str) -> str:
    """The part of a rendered script sbatch reads: the lines before the first command."""
    lines = []
    for line in script.splitlines():
        if line and not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(line for line in lines if line) + "\n"


def test_only_script(headers: Sequence[str]) -> str:
    tests = [
        Probe(str(i), f"sbatch --test-only <<'{EOF_WORD}'\n{h}true\n{EOF_WORD}")
        for i, h in enumerate(headers)
    ]
    return probe_script(tests)


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def answer(alias: str, probe: Probe, code: int, output: str) -> Check:
    if code == 0:
        return Check(alias, probe.name, True, one_line(output))
    said = one_line(output) or f"exit status {code}"
    return Check(alias, probe.name, False, f"{said} ({probe.hint})" if probe.hint else said)


def test_only_answer(alias: str, name: str, code: int, output: str) -> Check:
    """sbatch --test-only says `sbatch: Job N to start at ...` (on stderr) when the cluster would
    accept the job, and its errors otherwise."""
    if code == 0:
        lines = [line for line in output.splitlines() if " to start at " in line] or output.splitlines()
        return Check(alias, name, True, one_line(lines[-1].removeprefix("sbatch: ")) if lines else "")
    return Check(alias, name, False, one_line(output) or f"sbatch --test-only: exit status {code}")


# -- running them -----------------------------------------------------------------------------


def check_hosts(playbook: Playbook, forks: int = 10) -> list[Check]:
    """Every check of every host the playbook uses; hosts in parallel, reported in playbook order."""
    from compute_platform.hosts import HostPool

    aliases = list(dict.fromkeys(alias for task in playbook.tasks for alias in task.hosts))
    pool = HostPool(playbook.inventory)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(forks, len(aliases) or 1))) as executor:
            found = executor.map(lambda alias: check_host(pool, playbook, alias), aliases)
            return [check for checks in found for check in checks]
    finally:
        pool.close()


def check_host(pool: HostPool, playbook: Playbook, alias: str) -> list[Check]:
    start = time.monotonic()
    try:
        host = pool.get(alias)
        host.connect()
    except ComputeError as e:
        return [Check(alias, "connect", False, e.about(alias))]
    where = "local" if host.spec.is_local else f"{1000 * (time.monotonic() - start):.0f} ms"
    checks = [Check(alias, "connect", True, where)]
    try:
        login = host.login_shell()
        if login is not None:
            checks.append(Check(alias, "login shell", True, login_detail(login)))
        key = host.key_used()
        if key is not None:
            checks.append(Check(alias, "key", True, key))
        found = probes(playbook, alias)
        answers = run_probes(host, found)
        reported = [(i, p) for i, p in enumerate(found) if p.name != CLUSTER]
        checks += [answer(alias, p, *answers[i]) for i, p in reported if i in answers]
        missing = [p.name for i, p in reported if i not in answers]
        if missing:
            return [*checks, Check(alias, ", ".join(missing), False, "no answer")]
        sbatch = next((c for c in checks if c.name == "sbatch"), None)
        if sbatch is not None and sbatch.ok:
            facts = next(answers[i][1] for i, p in enumerate(found) if p.name == CLUSTER)
            checks += test_submissions(host, pool, playbook, cluster_of(facts))
    except ComputeError as e:
        checks.append(Check(alias, "checks", False, e.about(alias)))
    return checks


def login_detail(login: Login) -> str:
    """What the login means for the run: bash runs compute's scripts itself; any other shell only
    starts bash with them (what its start-up files export is kept, its functions are not)."""
    how = "runs compute's scripts" if login.is_bash else "starts bash for compute's scripts"
    return f"{login.describe()}: {how}"


def run_probes(host: Host, found: Sequence[Probe]) -> dict[int, tuple[int, str]]:
    if not found:
        return {}
    result = host.run(probe_script(found), timeout=TIMEOUT)
    answers = parse_markers(result.stdout)
    if not answers:
        raise ComputeError(f"{host.alias}: the checks did not run: {_said(result)}")
    return answers


def _said(result: Result) -> str:
    if result.timed_out:
        return f"no answer within {TIMEOUT:.0f} s"
    return one_line(result.tail(5)) or f"exit status {result.exit_code}"


def cluster_of(facts: str) -> Cluster:
    lines = facts.splitlines()
    home = lines[0].strip() if lines else "~"
    size = lines[1].strip() if len(lines) > 1 else ""
    return Cluster(home, int(size) if size.isdigit() and int(size) > 0 else DEFAULT_MAX_ARRAY_SIZE)


def test_submissions(host: Host, pool: HostPool, playbook: Playbook, cluster: Cluster) -> list[Check]:
    """sbatch --test-only for every distinct header of every script the slurm tasks would submit
    on this host, in one round trip."""
    tests = headers(host, pool, playbook, cluster)
    if not tests:
        return []
    result = host.run(test_only_script([h for _, h in tests]), timeout=TIMEOUT)
    answers = parse_markers(result.stdout)
    checks = []
    for i, (name, _) in enumerate(tests):
        if i in answers:
            checks.append(test_only_answer(host.alias, name, *answers[i]))
        else:
            checks.append(Check(host.alias, name, False, _said(result)))
    return checks


def headers(host: Host, pool: HostPool, playbook: Playbook, cluster: Cluster) -> list[tuple[str, str]]:
    """(check name, #SBATCH header) of every distinct script of the host's slurm tasks, rendered by
    the task itself through the context a run gives it."""
    from compute_platform.run.runner import dry_contexts

    found: list[tuple[str, str]] = []
    for task, ctx in dry_contexts(playbook, pool, host.alias):
        scripts = task.action.test_scripts(ctx, host, cluster)
        distinct = list(dict.fromkeys(sbatch_header(script) for script in scripts))
        for n, header in enumerate(distinct, 1):
            suffix = f" ({n} of {len(distinct)})" if len(distinct) > 1 else ""
            found.append((f"task '{task.name}': sbatch --test-only{suffix}", header))
    return found


# -- the report -------------------------------------------------------------------------------


def report_lines(checks: Sequence[Check], color: bool = False) -> list[str]:
    """`HOST  CHECK  ok|FAILED  detail`, aligned."""
    if not checks:
        return []
    host_width = max(len(c.host) for c in checks)
    name_width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        status = "ok" if c.ok else "FAILED"
        if color:
            status = f"\x1b[32m{status}\x1b[0m" if c.ok else f"\x1b[1;31m{status}\x1b[0m"
        pad = " " * (6 - len("ok" if c.ok else "FAILED"))
        lines.append(f"{c.host:<{host_width}}  {c.name:<{name_width}}  {status}{pad}  {c.detail}".rstrip())
    return lines


def verdict(checks: Sequence[Check]) -> str:
    failed = sum(not c.ok for c in checks)
    if failed:
        return f"remote checks: {failed} of {len(checks)} FAILED"
    return f"remote checks: all {len(checks)} ok"
