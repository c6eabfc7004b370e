"""`clone`: the original tool's list of repositories cloned into the home directory, each one
exactly a `git: {action: clone}` task (same script, retries, errors and `install`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from compute_platform.context import Outcome
from compute_platform.errors import ComputeError, InputError, Interrupted, TaskError
from compute_platform.tasks.base import Action, one_or_many
from compute_platform.tasks.git import Git, repo_name

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec


class Clone(Action):
    """Clone each repository into `~/NAME` on the host (the original tool's `clone`), then, with
    `install`, `pip install -e` it with the host's Python. Each one is a `git` clone: cloning again
    pulls, an unreachable remote is retried, other errors quote git. A failed repository does not
    stop the others; the task fails at the end naming it. `clone: [url, ...]` is a short form."""

    kind = "clone"

    repos: tuple[str, ...] = Field(min_length=1)
    """URLs (`https://`, `ssh://`, `git@host:x.git`) or paths on the host, cloned in this order;
    `.../BERL.git` lands in `~/BERL`."""
    install: bool = False
    """Then `pip install -e` each repository with the host's `python`, through its `init`."""
    path: str = Field(default="~", min_length=1)
    """The directory the repositories are cloned into (created if missing)."""

    @classmethod
    def shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, (str, list)):
            return {"repos": raw}
        return raw

    _repos_one_or_many = field_validator("repos", mode="before")(one_or_many)

    @field_validator("repos")
    @classmethod
    def _named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for repo in value:
            if not repo.strip() or not repo_name(repo).strip("."):
                raise ValueError(f"'{repo}' does not name a repository (expected a URL or a path)")
        return value

    def remote_needs(self) -> frozenset[str]:
        return frozenset({"git", "python", "python-system"} if self.install else {"git"})

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        seen: dict[str, str] = {}
        for repo in self.repos:
            name = repo_name(repo)
            if name in seen:
                raise InputError(
                    f"clone: {seen[name]} and {repo} would both be cloned into "
                    f"{self.path.rstrip('/')}/{name}: clone one of them with a `git` task and its own `path`",
                    task.position,
                )
            seen[name] = repo

    def clones(self) -> list[Git]:
        """One `git` clone per repository: the only cloning code there is."""
        return [Git(action="clone", path=self.path, repo=repo, install=self.install) for repo in self.repos]

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        return [step for git in self.clones() for step in git.plan(ctx, host)]

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        changed, failed = False, []
        for git in self.clones():
            name = repo_name(git.repo or "")
            try:
                outcome = git.run(ctx, host)
            except Interrupted:
                raise
            except ComputeError as e:  # the others are still cloned, as the original did
                message = e.about(host.alias)
                ctx.info(f"clone {name}: failed: {message}")
                failed.append(name)
                continue
            ctx.info(f"clone {name}: {outcome.message}")
            changed = changed or outcome.changed
        done = len(self.repos) - len(failed)
        if failed:
            raise TaskError(
                host=host.alias,
                message=f"clone failed for {', '.join(failed)} ({done} of {len(self.repos)} "
                "repositories done; git's words are above)",
            )
        return Outcome(changed, f"{done} repositor{'y' if done == 1 else 'ies'}")
