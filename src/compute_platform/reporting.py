"""Display is separate from execution: the runner emits events, a Reporter renders them."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from compute_platform.playbook import Playbook, Task
    from compute_platform.runner import RunOptions, RunSummary


class Reporter:
    """Receives every event of a run. The base class ignores them all."""

    def run_start(self, playbook: Playbook, options: RunOptions) -> None: ...
    def task_start(self, task: Task, hosts: tuple[str, ...]) -> None: ...
    def host_output(self, task: Task, host: str, stream: str, line: str) -> None: ...
    def host_message(self, task: Task, host: str, text: str) -> None: ...
    def host_plan(self, task: Task, host: str, command: str) -> None: ...
    def host_done(self, task: Task, host: str, status: str, seconds: float, message: str) -> None: ...
    def task_done(self, task: Task) -> None: ...
    def interrupted(self) -> None: ...
    def run_done(self, summary: RunSummary) -> None: ...


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


STYLES = {"ok": "32", "changed": "33", "failed": "1;31", "skipped": "36", "head": "1", "dim": "2"}


class PlainReporter(Reporter):
    """Line-oriented output: readable in a terminal, in a log file and in CI."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.color = use_color(self.stream) if color is None else color
        self.lock = threading.Lock()

    def paint(self, style: str, text: str) -> str:
        return f"\x1b[{STYLES[style]}m{text}\x1b[0m" if self.color else text

    def emit(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def run_start(self, playbook: Playbook, options: RunOptions) -> None:
        mode = " (dry run: nothing is executed)" if options.dry_run else ""
        self.emit(self.paint("head", f"PLAYBOOK {playbook.path}{mode}"))

    def task_start(self, task: Task, hosts: tuple[str, ...]) -> None:
        self.emit(
            self.paint("head", f"\nTASK [{task.name}] ({task.kind}) on {', '.join(hosts) or 'no host'}")
        )

    def host_output(self, task: Task, host: str, stream: str, line: str) -> None:
        mark = "!" if stream == "stderr" else "|"
        self.emit(f"{host} {mark} {line}")

    def host_message(self, task: Task, host: str, text: str) -> None:
        self.emit(f"{host}: {text}")

    def host_plan(self, task: Task, host: str, command: str) -> None:
        lines = command.splitlines() or [""]
        self.emit(f"{host} $ {lines[0]}")
        for line in lines[1:]:
            self.emit(f"{' ' * len(host)}   {line}")

    def host_done(self, task: Task, host: str, status: str, seconds: float, message: str) -> None:
        text = f"{status}: {host} ({seconds:.2f} s)" + (f": {message}" if message else "")
        self.emit(self.paint(status if status in STYLES else "ok", text), always=status == "failed")

    def interrupted(self) -> None:
        self.emit(self.paint("failed", "\nInterrupted: stopping running tasks."), always=True)

    def run_done(self, summary: RunSummary) -> None:
        if not summary.hosts:
            return
        width = max(len(h) for h in summary.hosts)
        self.emit(self.paint("head", "\nSUMMARY"))
        for alias, h in summary.hosts.items():
            state = "failed" if h.failed else "ok"
            row = (
                f"{alias:<{width}}  ok={h.ok:<3} changed={h.changed:<3} failed={h.failed:<3} "
                f"skipped={h.skipped:<3} {h.seconds:6.2f} s"
            )
            self.emit(self.paint(state, row), always=bool(h.failed))
        self.emit(f"total {summary.seconds:.2f} s")
