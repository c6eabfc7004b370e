"""`pip`: install or uninstall packages with the host's Python, in ONE pip call per host."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator

from compute_platform.context import Outcome
from compute_platform.errors import CommandFailed, InputError
from compute_platform.hosts import shell
from compute_platform.tasks.base import Action, one_or_many

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.hosts.base import Result
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

# Exit status 0 when the interpreter runs outside any virtual or conda environment, where pip
# must install with --user (a venv or conda env is the user's own: install into it directly).
OUTSIDE_ENV_TEST = (
    "import os, sys; sys.exit(0 if sys.prefix == sys.base_prefix"
    ' and not os.path.isdir(os.path.join(sys.prefix, "conda-meta")) else 1)'
)
PIP_FLAGS = ("--disable-pip-version-check", "--no-input")
# pip's last word on what it changed (indented when uninstalling, and before an upgrade)
DONE = re.compile(r"^\s*(Successfully (?:installed|uninstalled) .*)$", re.MULTILINE)


def pip_script(python: str, action: str, words: list[str], *, requirements: bool = False) -> str:
    """A shell script that runs `python -m pip ACTION ... WORDS` once (WORDS already quoted).
    `--user` is added for installs only when the interpreter is outside a virtual environment,
    decided on the host in the same script. With `requirements`, the file's text is read from
    stdin into a temporary file first (so it travels with the command: no extra round trip)."""
    py = shell.quote_path(python)
    lines = []
    if requirements:
        lines += [
            "req=$(mktemp) || exit 1",
            "trap 'rm -f \"$req\"' EXIT",
            'cat > "$req" || exit 1',
        ]
    if action == "install":
        lines += [
            f"if {py} -c {shell.quote(OUTSIDE_ENV_TEST)}; then set -- --user; else set --; fi",
        ]
    else:
        lines += ["set --"]
    req = ' -r "$req"' if requirements else ""
    extra = " " + " ".join(words) if words else ""
    lines.append(f'{py} -m pip {action} {shell.join(PIP_FLAGS)} "$@"{req}{extra}')
    return "\n".join(lines)


class Pip(Action):
    """Install or uninstall packages with the host's Python (its `python` setting, through its
    `init`) in one pip call; `--user` only outside a virtual environment. `pip: [numpy, pandas]`
    is a short form of `pip: {packages: [numpy, pandas]}`."""

    kind = "pip"

    action: Literal["install", "uninstall"] = "install"
    """What pip does (uninstall runs with `-y`)."""
    packages: tuple[str, ...] = ()
    """Requirement specifiers, e.g. `numpy`, `torch==2.3.1`, `pandas>=2`."""
    requirements: str | None = None
    """A requirements file on THIS machine (relative to the current directory), sent to the host
    with the command."""
    upgrade: bool = False
    """Pass `--upgrade` (install only)."""
    editable: str | None = None
    """A project directory on the host to install with `-e` (install only)."""
    extra_args: tuple[str, ...] = ()
    """More pip arguments, e.g. `[--index-url, https://...]` or one string split like a shell."""

    @classmethod
    def shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return {"packages": [raw]}
        if isinstance(raw, list):
            return {"packages": raw}
        return raw

    _packages_one_or_many = field_validator("packages", mode="before")(one_or_many)

    @field_validator("extra_args", mode="before")
    @classmethod
    def _split_args(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("packages")
    @classmethod
    def _no_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in value):
            raise ValueError("a package name is empty")
        return value

    def remote_needs(self) -> frozenset[str]:
        # pip refuses to install into an externally managed (system) Python
        system = self.action == "install" and "--break-system-packages" not in self.extra_args
        return frozenset({"python", "python-system"} if system else {"python"})

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        where = "pip"
        if self.action == "uninstall" and (self.editable or self.upgrade):
            raise InputError(
                f"{where}: 'editable' and 'upgrade' only apply to action: install", task.position
            )
        if not (self.packages or self.requirements or self.editable):
            raise InputError(
                f"{where}: nothing to {self.action}: give 'packages', 'requirements' or 'editable'",
                task.position,
            )
        if self.requirements and not self.requirements_file().is_file():
            raise InputError(
                f"{where}: requirements file not found: {self.requirements} "
                f"(a local path, relative to the current directory {Path.cwd()})",
                task.position,
            )

    def requirements_file(self) -> Path:
        assert self.requirements is not None
        return Path(self.requirements).expanduser()

    def words(self) -> list[str]:
        """pip's arguments as shell words (the editable path keeps a leading `~`)."""
        words: list[str] = []
        if self.action == "uninstall":
            words.append("-y")
        if self.upgrade:
            words.append("--upgrade")
        if self.editable:
            words += ["-e", shell.quote_path(self.editable)]
        return [*words, *(shell.quote(a) for a in (*self.packages, *self.extra_args))]

    def command(self, host: Host) -> str:
        return pip_script(host.spec.python, self.action, self.words(), requirements=bool(self.requirements))

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        return [host.script(self.command(host))]

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        stdin = self.requirements_file().read_bytes() if self.requirements else None
        result = host.run(
            self.command(host),
            timeout=ctx.timeout,
            stdin=stdin,
            on_line=ctx.output(host) if ctx.options.verbose else None,
        )
        check_pip(host, result, f"pip {self.action}")
        return summary(result)


def check_pip(host: Host, result: Result, what: str) -> None:
    """Success is pip's exit code; a failure carries pip's own last lines and, when the cause is
    a well-known one, what to do about it."""
    if result.ok:
        return
    head = f"{what} failed (exit code {result.exit_code})"
    if result.timed_out:
        head = f"{what} timed out after {result.duration:.0f} s"
    if "externally-managed-environment" in result.stderr + result.stdout:
        head += (
            f"; {host.spec.python} on {host.alias} is the system's Python: set `python:` for this host"
            " in hosts.yaml to a virtual environment's interpreter (e.g. ~/venv/bin/python)"
        )
    raise CommandFailed(host.alias, result, head)


def summary(result: Result) -> Outcome:
    """changed when pip says it installed or removed something."""
    done = DONE.findall(result.stdout)
    if done:
        return Outcome(changed=True, message=done[-1])
    return Outcome(changed=False, message="nothing to do")
