"""`git`: pull (default), push or clone on the host, retrying while the remote cannot be reached."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from compute_platform.context import Outcome
from compute_platform.errors import InputError, TaskError
from compute_platform.hosts import shell
from compute_platform.tasks.base import Action
from compute_platform.tasks.pip import check_pip, pip_script

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.hosts.base import Result
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

# Exit code of a clone script that refuses to touch a directory holding something else.
TARGET_TAKEN = 94
ALREADY_CLONED = "compute: already cloned, pulling instead"

# git's messages are classified, so they must be in English whatever the host's locale; a
# remote that would ask for a password or a passphrase must fail instead of hanging.
GIT_ENV = (
    "export LC_ALL=C GIT_TERMINAL_PROMPT=0\n"
    'export GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes -o ConnectTimeout=20}"'
)


@dataclass(frozen=True)
class Diagnosis:
    """What a failed git command says about its cause."""

    retry: bool
    hint: str = ""
    line: str = ""  # git's line that told


# Checked in order: the first match wins. Causes that retrying cannot fix come first, because
# their messages can also mention a closed connection.
_CAUSES: tuple[tuple[re.Pattern[str], Diagnosis], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), diagnosis)
    for pattern, diagnosis in (
        (
            r"permission denied \(|authentication failed|could not read (username|password)"
            r"|terminal prompts disabled|host key verification failed|HTTP code 40[13]",
            Diagnosis(
                False,
                "the remote refused the credentials of the host's user: check the key or "
                "token that user has for this remote (and its known_hosts)",
            ),
        ),
        (
            r"does not appear to be a git repository|repository '.*' (not found|does not exist)"
            r"|repository not found|HTTP code 404",
            Diagnosis(False, "check the repository's URL or path"),
        ),
        (
            r"would be overwritten by (merge|checkout)|commit your changes or stash them",
            Diagnosis(False, "the working tree on the host has local changes: commit or discard them"),
        ),
        (
            r"^CONFLICT|automatic merge failed|you have unmerged paths|need to specify how to reconcile",
            Diagnosis(False, "the branches diverged: merge them by hand on the host"),
        ),
        (
            r"\[rejected\]|failed to push some refs",
            Diagnosis(False, "the remote has commits the host does not have: pull first"),
        ),
        (
            r"could not resolve (host|proxy)|name or service not known|temporary failure in name resolution"
            r"|connection refused|connection timed out|timed out|network is unreachable|no route to host"
            r"|connection reset|connection closed by|kex_exchange_identification|failed to connect to"
            r"|couldn't connect to server|proxy connect aborted|ssl_connect|gnutls_handshake"
            r"|empty reply from server|the remote end hung up unexpectedly.*\n.*early eof",
            Diagnosis(True),
        ),
    )
)


def diagnose(output: str) -> Diagnosis:
    """Retry only when git could not reach the remote (DNS, refused, timed out, proxy)."""
    for pattern, diagnosis in _CAUSES:
        found = pattern.search(output)
        if found:
            start = output.rfind("\n", 0, found.start()) + 1
            end = output.find("\n", found.end())
            line = output[start : end if end >= 0 else len(output)].strip()
            return Diagnosis(diagnosis.retry, diagnosis.hint, line)
    return Diagnosis(False)


def repo_name(repo: str) -> str:
    """The directory `git clone` makes for a URL, a scp-like address or a path: `.../BERL.git` -> BERL."""
    last = re.split(r"[/:]", repo.rstrip("/"))[-1]
    return last.removesuffix(".git") or last


def _path_or_url(value: str) -> str:
    """A repository as a shell word: local paths keep a leading `~` meaning the host's home."""
    return shell.quote_path(value) if value.startswith("~") else shell.quote(value)


class Git(Action):
    """Pull, push or clone a repository on the host with its own git and credentials. While the
    remote cannot be reached (DNS, refused, timed out, proxy) it retries; other errors fail at
    once with git's own message."""

    kind = "git"

    action: Literal["pull", "push", "clone"] = "pull"
    """`pull` and `push` work in the repository `path`; `clone` clones `repo` into `path`."""
    path: str = Field(min_length=1)
    """pull/push: the repository on the host. clone: the directory to clone INTO (created if
    missing): `repo: .../BERL.git` lands in `path/BERL`."""
    repo: str | None = None
    """clone: the URL (`https://`, `ssh://`, `git@host:x.git`) or path on the host. Cloning again
    where that repository already is pulls instead."""
    branch: str | None = None
    """clone: the branch to check out. pull/push: `git pull|push origin BRANCH`."""
    install: bool = False
    """clone: then `pip install -e` the repository with the host's Python (as the `pip` task)."""
    depth: int | None = Field(default=None, ge=1)
    """clone: a shallow clone of that many commits."""
    retries: int = Field(default=25, ge=1)
    """Attempts in all while the remote cannot be reached."""
    delay: float = Field(default=5.0, ge=0)
    """Seconds between those attempts."""

    def remote_needs(self) -> frozenset[str]:
        return frozenset({"git", "python", "python-system"} if self.install else {"git"})

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        where = "git"
        if self.action == "clone" and not self.repo:
            raise InputError(f"{where}: action clone needs 'repo' (the URL or path to clone)", task.position)
        if self.action != "clone":
            for name in ("repo", "depth", "install"):
                if getattr(self, name):
                    raise InputError(
                        f"{where}: '{name}' only applies to action: clone (action is {self.action}; "
                        "'path' is the repository on the host)",
                        task.position,
                    )

    @property
    def target(self) -> str:
        """The repository directory on the host: `path` itself, or `path/NAME` for a clone."""
        if self.action == "clone":
            assert self.repo is not None
            return self.path.rstrip("/") + "/" + repo_name(self.repo)
        return self.path

    def command(self) -> str:
        if self.action == "clone":
            return f"{GIT_ENV}\n{self._clone()}"
        return f"{GIT_ENV}\ncd {shell.quote_path(self.path)} || exit 1\n{self._pull_or_push(self.action)}"

    def _pull_or_push(self, action: str) -> str:
        return shell.join(["git", action, *(["origin", self.branch] if self.branch else [])])

    def _clone(self) -> str:
        assert self.repo is not None
        repo = _path_or_url(self.repo)
        options = [
            *(["--branch", self.branch] if self.branch else []),
            *(["--depth", self.depth] if self.depth else []),
        ]
        clone = shell.join(["git", "clone", *options, "--"])
        taken = f"exit {TARGET_TAKEN}"
        # `norm` makes `x`, `x/` and `x.git` the same repository when comparing origin URLs.
        return "\n".join(
            [
                f"parent={shell.quote_path(self.path)}",
                f'target="$parent"/{shell.quote(repo_name(self.repo))}',
                f"repo={repo}",
                'norm() { u=${1%/}; printf %s "${u%.git}"; }',
                'if [ -e "$target/.git" ]; then',
                '  url=$(git -C "$target" remote get-url origin 2>/dev/null) || url=',
                '  if [ "$(norm "$url")" = "$(norm "$repo")" ]; then',
                f"    echo {shell.quote(ALREADY_CLONED)}",
                f'    cd "$target" && {self._pull_or_push("pull")}',
                "  else",
                '    echo "compute: $target already holds another repository (origin: ${url:-none});'
                ' remove it or clone elsewhere" >&2',
                f"    {taken}",
                "  fi",
                'elif [ -d "$target" ] && [ -n "$(ls -A "$target")" ]; then',
                '  echo "compute: $target exists and is not empty: remove it or clone elsewhere" >&2',
                f"  {taken}",
                "else",
                '  mkdir -p "$parent" || exit 1',
                f'  {clone} "$repo" "$target"',
                "fi",
            ]
        )

    def install_command(self, host: Host) -> str:
        return pip_script(host.spec.python, "install", ["-e", shell.quote_path(self.target)])

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        steps = [host.script(self.command())]
        if self.install:
            steps.append(host.script(self.install_command(host)))
        return steps

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        result = self._with_retries(ctx, host)
        outcome = self._outcome(result)
        if self.install:
            installed = host.run(self.install_command(host), timeout=ctx.timeout)
            check_pip(host, installed, f"pip install -e {self.target}")
            outcome = Outcome(True, f"{outcome.message}; installed with pip -e")
        return outcome

    def _with_retries(self, ctx: TaskContext, host: Host) -> Result:
        for attempt in range(1, self.retries + 1):
            result = host.run(self.command(), timeout=ctx.timeout)
            if result.ok:
                return result
            output = f"{result.stderr}\n{result.stdout}"
            diagnosis = diagnose(output)
            if result.exit_code == TARGET_TAKEN or not diagnosis.retry or result.timed_out:
                raise TaskError(self._failure(result, diagnosis), host=host.alias)
            if attempt == self.retries:
                raise TaskError(
                    host=host.alias,
                    message=f"git {self.action}: the remote is still unreachable after "
                    f"{attempt} attempt{'s' * (attempt > 1)} {self.delay:g} s apart; check the network "
                    f"or proxy from {host.alias}, or raise `retries`. git said:\n{_last_lines(result)}",
                )
            ctx.info(
                f"git {self.action}: remote unreachable ({diagnosis.line}); attempt {attempt} of "
                f"{self.retries} failed, retrying in {self.delay:g} s"
            )
            time.sleep(self.delay)
        raise AssertionError("unreachable: retries >= 1")

    def _failure(self, result: Result, diagnosis: Diagnosis) -> str:
        if result.exit_code == TARGET_TAKEN:
            return f"git clone: {result.stderr.strip().removeprefix('compute: ')}"
        if result.timed_out:
            return f"git {self.action} timed out after {result.duration:.0f} s"
        hint = f" ({diagnosis.hint})" if diagnosis.hint else ""
        return f"git {self.action} failed{hint}. git said:\n{_last_lines(result)}"

    def _outcome(self, result: Result) -> Outcome:
        said = f"{result.stdout}\n{result.stderr}"
        if self.action == "clone" and ALREADY_CLONED not in result.stdout:
            return Outcome(True, f"cloned into {self.target}")
        if self.action == "push":
            up_to_date = "Everything up-to-date" in said
            return Outcome(not up_to_date, "already up to date" if up_to_date else "pushed")
        up_to_date = "Already up to date" in said or "Already up-to-date" in said
        prefix = "already cloned; " if self.action == "clone" else ""
        return Outcome(not up_to_date, prefix + ("already up to date" if up_to_date else "pulled"))


def _last_lines(result: Result, count: int = 6) -> str:
    text = "\n".join(part for part in (result.stdout.strip(), result.stderr.strip()) if part)
    return "\n".join(text.splitlines()[-count:])
