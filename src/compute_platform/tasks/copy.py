"""`copy`: a file or a whole tree (or every match of a glob) from this machine to a host (push)
or back (pull)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from compute_platform.context import Outcome
from compute_platform.errors import InputError, TaskError
from compute_platform.hosts import transfer
from compute_platform.hosts.local import LocalHost
from compute_platform.tasks.base import Action, one_or_many

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

# Progress is reported only for transfers that last, and at most this often.
PROGRESS_AFTER = 1.0
PROGRESS_EVERY = 0.1


class Copy(Action):
    """Copy a file or a whole tree from this machine to the host (push) or back (pull), in one
    tar stream over SSH (plain copies on localhost). `src` lands INSIDE the directory `dest`,
    written under a temporary name and renamed when complete. A glob `src` copies every match,
    as `scp -r` through a shell does."""

    kind = "copy"

    mode: Literal["push", "pull"]
    """`push`: this machine -> host. `pull`: host -> this machine."""
    src: str = Field(min_length=1)
    """The file or directory to copy (`~` is the home on its side). A top-level symlink is
    followed; symlinks inside a tree are copied as symlinks. With `*`, `?` or `[...]` it is a
    glob, expanded where the files are (push: here, pull: by the host's shell; hidden names only
    when the pattern starts them with a dot): every match is copied into `dest`; no match is an
    error."""
    dest: str = Field(min_length=1)
    """The directory to copy into, created if missing; an existing tree of the same name is
    merged into (its other files are kept)."""
    exclude: tuple[str, ...] = ()
    """Patterns left out of a tree, matched against names and relative paths at any depth
    (`.git`, `__pycache__`, `*.ckpt`, `data/raw`)."""

    _exclude_one_or_many = field_validator("exclude", mode="before")(one_or_many)

    @field_validator("exclude")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        patterns = tuple(p.rstrip("/") for p in value)
        if any(not p for p in patterns):
            raise ValueError("an exclude pattern is empty")
        return patterns

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        if self.mode == "pull" and len(task.hosts) > 1:
            raise InputError(
                f"copy: pulling {self.src} from {len(task.hosts)} hosts into the "
                "same local directory would overwrite one host's copy with another's: "
                "use one task per host, each with its own dest",
                task.position,
            )

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        if transfer.is_glob(self.src):
            return self._plan_matches(host)
        if isinstance(host, LocalHost):
            return [f"# local copy of {self.src} into {self.dest}"]
        if self.mode == "push":
            name = Path(self.src).expanduser().name
            script = transfer.receive_script(self.dest, name, Path(self.src).expanduser().is_dir())
            return [f"# tar stream of local {self.src} on stdin\n" + host.script(script)]
        script = transfer.send_script(self.src, self.exclude)
        return [host.script(script) + f"\n# tar stream unpacked into local {self.dest}"]

    def _plan_matches(self, host: Host) -> list[str]:
        if self.mode == "pull" and not isinstance(host, LocalHost):
            script = transfer.send_matches_script(self.src, self.exclude)
            return [
                f"# {self.src} expanded on {host.alias} by its shell; its matches listed, then sent\n"
                + host.script(script)
                + f"\n# every match unpacked into local {self.dest}"
            ]
        try:
            found = _names(transfer.local_matches(self.src))
        except TaskError as e:  # the files may appear before the run gets here
            found = f"nothing now ({e.message})"
        expanded = f"# {self.src} expanded on this machine: {found}"
        if isinstance(host, LocalHost):
            return [f"{expanded}\n# local copy of every match into {self.dest}"]
        script = transfer.receive_matches_script(self.dest)
        return [f"{expanded}\n# one tar stream of every match on stdin\n" + host.script(script)]

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        progress = Reported(ctx)
        start = time.monotonic()
        if transfer.is_glob(self.src):
            stats = self._copy_matches(ctx, host, progress)
        elif isinstance(host, LocalHost):
            stats = transfer.copy_local(
                Path(host.expand(self.src)), Path(host.expand(self.dest)), self.exclude, progress
            )
        elif self.mode == "push":
            stats = transfer.push(
                host, Path(self.src).expanduser(), self.dest, self.exclude, progress, ctx.timeout
            )
        else:
            stats = transfer.pull(
                host, self.src, Path(self.dest).expanduser(), self.exclude, progress, ctx.timeout
            )
        progress.finish()
        for warning in stats.warnings:
            ctx.info(f"warning: {warning}")
        return Outcome(True, self._message(stats, time.monotonic() - start))

    def _copy_matches(self, ctx: TaskContext, host: Host, progress: Reported) -> transfer.Stats:
        if self.mode == "pull" and not isinstance(host, LocalHost):
            return transfer.pull_matches(
                host, self.src, Path(self.dest).expanduser(), self.exclude, progress, ctx.timeout
            )
        found = transfer.local_matches(self.src)
        if isinstance(host, LocalHost):
            return transfer.copy_local_matches(found, Path(host.expand(self.dest)), self.exclude, progress)
        return transfer.push_matches(host, found, self.dest, self.exclude, progress, ctx.timeout)

    def _message(self, stats: transfer.Stats, seconds: float) -> str:
        files = f"{stats.files} file{'s' * (stats.files != 1)}"
        skipped = f", skipped {len(stats.skipped)} special files" if stats.skipped else ""
        verb = "pushed" if self.mode == "push" else "pulled"
        matches = f" ({stats.matches} match{'es' * (stats.matches != 1)})" if stats.matches else ""
        return (
            f"{verb} {self.src}{matches} into {self.dest} "
            f"({files}, {_size(stats.bytes)}, {seconds:.2f} s{skipped})"
        )


class Reported:
    """A transfer.Progress that tells the run's reporter (the display owner) how far a copy
    went: nothing during the first second, then at most ten updates a second."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.total: int | None = None
        self.shown = False

    def __call__(self, count: int, total: int | None) -> None:
        self.done += count
        self.total = total
        now = time.monotonic()
        if now - self.start >= PROGRESS_AFTER and now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.shown = True
            self.ctx.progress(self.done, total, "bytes")

    def finish(self) -> None:
        if self.shown:
            self.ctx.progress(self.done, self.total, "bytes")


def _names(paths: list[Path], shown: int = 10) -> str:
    """`3 matches: a.zip, b.zip, c.zip` (the first few of a long list)."""
    names = [p.name for p in paths[:shown]] + (
        [f"... {len(paths) - shown} more"] if len(paths) > shown else []
    )
    return f"{len(paths)} match{'es' * (len(paths) != 1)}: {', '.join(names)}"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
