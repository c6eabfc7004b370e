"""`copy`: a file or a whole tree from this machine to a host (push) or back (pull)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from compute_platform import transfer
from compute_platform.errors import InputError
from compute_platform.hosts.local import LocalHost
from compute_platform.tasks.base import Action, Outcome

if TYPE_CHECKING:
    from compute_platform.hosts import Host
    from compute_platform.inventory import HostSpec, Inventory
    from compute_platform.playbook import Task
    from compute_platform.runner import RunContext

# Progress is reported only for transfers that last, and at most this often.
PROGRESS_AFTER = 1.0
PROGRESS_EVERY = 0.1


class Copy(Action):
    """Copy a file or a whole tree from this machine to the host (push) or back (pull), in one
    tar stream over SSH (plain copies on localhost). `src` lands INSIDE the directory `dest`,
    written under a temporary name and renamed when complete."""

    kind = "copy"

    mode: Literal["push", "pull"]
    """`push`: this machine -> host. `pull`: host -> this machine."""
    src: str = Field(min_length=1)
    """The file or directory to copy (`~` is the home on its side). A top-level symlink is
    followed; symlinks inside a tree are copied as symlinks."""
    dest: str = Field(min_length=1)
    """The directory to copy into, created if missing; an existing tree of the same name is
    merged into (its other files are kept)."""
    exclude: tuple[str, ...] = ()
    """Patterns left out of a tree, matched against names and relative paths at any depth
    (`.git`, `__pycache__`, `*.ckpt`, `data/raw`)."""

    @field_validator("exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

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
                f"task '{task.name}': copy: pulling {self.src} from {len(task.hosts)} hosts into the "
                "same local directory would overwrite one host's copy with another's: "
                "use one task per host, each with its own dest",
                task.position,
            )

    def plan(self, ctx: RunContext, host: Host) -> list[str]:
        if isinstance(host, LocalHost):
            return [f"# local copy of {self.src} into {self.dest}"]
        if self.mode == "push":
            name = Path(self.src).expanduser().name
            script = transfer.receive_script(self.dest, name, Path(self.src).expanduser().is_dir())
            return [f"# tar stream of local {self.src} on stdin\n" + host.script(script)]
        script = transfer.send_script(self.src, self.exclude)
        return [host.script(script) + f"\n# tar stream unpacked into local {self.dest}"]

    def run(self, ctx: RunContext, host: Host) -> Outcome:
        progress = Reported(ctx)
        start = time.monotonic()
        if isinstance(host, LocalHost):
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

    def _message(self, stats: transfer.Stats, seconds: float) -> str:
        files = f"{stats.files} file{'s' * (stats.files != 1)}"
        skipped = f", skipped {len(stats.skipped)} special files" if stats.skipped else ""
        verb = "pushed" if self.mode == "push" else "pulled"
        return f"{verb} {self.src} into {self.dest} ({files}, {_size(stats.bytes)}, {seconds:.2f} s{skipped})"


class Reported:
    """A transfer.Progress that tells the run's reporter (the display owner) how far a copy
    went: nothing during the first second, then at most ten updates a second."""

    def __init__(self, ctx: RunContext) -> None:
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
            self.ctx.state.reporter.host_progress(self.ctx.task, self.ctx.alias, self.done, total)

    def finish(self) -> None:
        if self.shown:
            self.ctx.state.reporter.host_progress(self.ctx.task, self.ctx.alias, self.done, self.total)


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
