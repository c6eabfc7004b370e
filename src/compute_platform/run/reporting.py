"""Display is separate from execution: the runner emits events, a Reporter renders them."""

from __future__ import annotations

import heapq
import os
import sys
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.table import Table

    from compute_platform.context import RunOptions, RunSummary, Status, Task


class Reporter:
    """Receives every event of a run. The base class ignores them all."""

    def run_start(self, playbook: Path, options: RunOptions) -> None: ...
    def task_start(self, task: Task, hosts: tuple[str, ...]) -> None: ...
    def host_output(self, task: Task, host: str, stream: str, line: str) -> None: ...
    def host_message(self, task: Task, host: str, text: str) -> None: ...
    def host_plan(self, task: Task, host: str, command: str) -> None: ...
    # how far a long step on `host` is: bytes of a transfer, jobs of a sweep submitted (total None
    # when unknown); only the live view shows it
    def host_progress(
        self, task: Task, host: str, done: int, total: int | None, unit: str = "bytes"
    ) -> None: ...
    def host_done(self, task: Task, host: str, status: Status, seconds: float, message: str) -> None: ...
    def task_done(self, task: Task) -> None: ...
    def interrupted(self, running: list[str]) -> None: ...
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

    def run_start(self, playbook: Path, options: RunOptions) -> None:
        mode = " (dry run: nothing is executed)" if options.dry_run else ""
        self.emit(self.paint("head", f"PLAYBOOK {playbook}{mode}"))

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
        rest = [f"{' ' * len(host)}   {line}" for line in lines[1:]]
        self.emit("\n".join([f"{host} $ {lines[0]}", *rest]))  # one block: hosts run in parallel

    def host_done(self, task: Task, host: str, status: Status, seconds: float, message: str) -> None:
        text = f"{status}: {host} ({seconds:.2f} s)" + (f": {message}" if message else "")
        self.emit(self.paint(status if status in STYLES else "ok", text), always=status == "failed")

    def interrupted(self, running: list[str]) -> None:
        doing = f" ({', '.join(running)})" if running else ""
        self.emit(self.paint("failed", f"\nInterrupted: stopping what was running{doing}."), always=True)

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


JSON_VERSION = 1
# What `--json` keeps of each host's command output in a task: its last lines, at most this many
# and this many characters (4 MiB, as much as the end of a Result keeps: hosts.base.TAIL_BYTES,
# not imported, for start-up): a command printing without end must not grow the document, nor
# memory, without bound. compute's own entries (info, plan) come from the playbook, bounded by it,
# and are all kept.
OUTPUT_LINES_KEPT = 10_000
OUTPUT_CHARS_KEPT = 4 << 20


class LastLines:
    """One host's entries of a task for the JSON document: every info and plan entry, and the
    last lines of output, after one entry saying how many earlier ones were not kept."""

    def __init__(self, lines: int = OUTPUT_LINES_KEPT, chars: int = OUTPUT_CHARS_KEPT) -> None:
        self.max_lines = lines
        self.max_chars = chars
        self.notes: list[tuple[int, str, str]] = []
        self.output: deque[tuple[int, str, str]] = deque()  # (order of arrival, stream, line)
        self.chars = 0
        self.dropped = 0
        self.count = 0

    def add(self, stream: str, line: str) -> None:
        self.count += 1
        if stream not in ("stdout", "stderr"):
            self.notes.append((self.count, stream, line))
            return
        self.output.append((self.count, stream, line))
        self.chars += len(line)
        while len(self.output) > self.max_lines or (self.chars > self.max_chars and len(self.output) > 1):
            self.chars -= len(self.output.popleft()[2])
            self.dropped += 1

    def entries(self) -> list[dict[str, str]]:
        entries = [{"stream": s, "line": line} for _, s, line in heapq.merge(self.notes, self.output)]
        if self.dropped:
            said = f"[compute: {self.dropped} earlier lines of output not kept]"
            entries.insert(0, {"stream": "info", "line": said})
        return entries


class JsonReporter(Reporter):
    """`--json`: nothing while running, then ONE JSON document on stdout (shape in docs/json.md)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()
        self.playbook = ""
        self.dry_run = False
        self.tasks: list[dict[str, object]] = []
        self.current: dict[str, dict[str, object]] = {}
        self.output: dict[tuple[int, str], LastLines] = {}

    def run_start(self, playbook: Path, options: RunOptions) -> None:
        self.playbook = str(playbook)
        self.dry_run = options.dry_run

    def task_start(self, task: Task, hosts: tuple[str, ...]) -> None:
        with self.lock:
            self.current = {}
            self.tasks.append({"name": task.name, "kind": task.kind, "hosts": self.current})

    def host_output(self, task: Task, host: str, stream: str, line: str) -> None:
        with self.lock:
            key = (task.index, host)
            if key not in self.output:
                self.output[key] = LastLines()
            self.output[key].add(stream, line)

    def host_message(self, task: Task, host: str, text: str) -> None:
        self.host_output(task, host, "info", text)

    def host_plan(self, task: Task, host: str, command: str) -> None:
        self.host_output(task, host, "plan", command)

    def host_done(self, task: Task, host: str, status: Status, seconds: float, message: str) -> None:
        with self.lock:
            self.current[host] = {
                "status": status.value,
                "seconds": round(seconds, 3),
                "message": message,
                "output": self.output.pop((task.index, host), LastLines()).entries(),
            }

    def run_done(self, summary: RunSummary) -> None:
        import json

        document = {
            "version": JSON_VERSION,
            "playbook": self.playbook,
            "dry_run": self.dry_run,
            "ok": not summary.failed,
            "interrupted": summary.interrupted,
            "seconds": round(summary.seconds, 3),
            "tasks": self.tasks,
            "hosts": {
                alias: {
                    "ok": h.ok,
                    "changed": h.changed,
                    "failed": h.failed,
                    "skipped": h.skipped,
                    "seconds": round(h.seconds, 3),
                    "error": h.error,
                }
                for alias, h in summary.hosts.items()
            },
        }
        self.stream.write(json.dumps(document, indent=2) + "\n")
        self.stream.flush()


class LiveReporter(PlainReporter):
    """On a terminal: the current task's hosts with spinners and states, command output scrolling
    above them, and the summary table at the end."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        super().__init__(sys.stdout, quiet=quiet, color=True)
        self.console = Console(highlight=False)
        self.states: dict[str, tuple[str, float, str]] = {}
        self.started: dict[str, float] = {}
        self.progress: dict[str, tuple[int, int | None, str]] = {}
        self.task: Task | None = None
        self.live: object | None = None

    def emit(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        from rich.text import Text

        with self.lock:
            self.console.print(Text.from_ansi(text))

    def _view(self) -> Table:
        import time

        from rich.spinner import Spinner
        from rich.table import Table

        table: Table = Table.grid(padding=(0, 1))
        for host, (status, seconds, message) in self.states.items():
            if status == "running":
                elapsed = time.monotonic() - self.started.get(host, time.monotonic())
                table.add_row(Spinner("dots", style="cyan"), host, f"[dim]{elapsed:5.1f} s[/]")
                if host in self.progress:
                    table.add_row("", "", _progress_bar(*self.progress[host], elapsed))
            else:
                style = {"ok": "green", "changed": "yellow", "failed": "bold red"}.get(status, "cyan")
                table.add_row(
                    f"[{style}]•[/]", host, f"[{style}]{status}[/] [dim]{seconds:.2f} s {message}[/]"
                )
        return table

    def task_start(self, task: Task, hosts: tuple[str, ...]) -> None:
        import time

        from rich.live import Live

        super().task_start(task, hosts)
        self.task = task
        now = time.monotonic()
        self.states = {h: ("running", 0.0, "") for h in hosts}
        self.started = dict.fromkeys(hosts, now)
        self.progress = {}
        live = Live(get_renderable=self._view, console=self.console, refresh_per_second=8, transient=True)
        live.start()
        self.live = live

    def host_progress(self, task: Task, host: str, done: int, total: int | None, unit: str = "bytes") -> None:
        self.progress[host] = (done, total, unit)

    def host_done(self, task: Task, host: str, status: Status, seconds: float, message: str) -> None:
        if host in self.states:
            self.states[host] = (status, seconds, message[:60])
        super().host_done(task, host, status, seconds, message)

    def task_done(self, task: Task) -> None:
        self._stop()

    def interrupted(self, running: list[str]) -> None:
        self._stop()
        super().interrupted(running)

    def _stop(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            live.stop()  # type: ignore[attr-defined]

    def run_done(self, summary: RunSummary) -> None:
        from rich.table import Table

        self._stop()
        if not summary.hosts:
            return
        table = Table(title="Summary", title_justify="left")
        for column in ("host", "ok", "changed", "failed", "skipped", "time"):
            table.add_column(column, justify="left" if column == "host" else "right")
        for alias, h in summary.hosts.items():
            style = "bold red" if h.failed else "green"
            table.add_row(
                f"[{style}]{alias}[/]",
                str(h.ok),
                str(h.changed),
                str(h.failed),
                str(h.skipped),
                f"{h.seconds:.2f} s",
            )
        with self.lock:
            self.console.print(table)
            self.console.print(f"total {summary.seconds:.2f} s")


def _progress_bar(done: int, total: int | None, unit: str, seconds: float) -> Table:
    from rich.filesize import decimal
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    row: Table = Table.grid(padding=(0, 1))
    if unit == "bytes":
        rate = f"{decimal(int(done / seconds))}/s" if seconds > 0 else ""
        amount = f"{decimal(done)} / {decimal(total)}" if total else decimal(done)
    else:  # a count: "120 / 1000 jobs"
        rate = ""
        amount = f"{done} / {total} {unit}" if total else f"{done} {unit}"
    if total:
        row.add_row(
            ProgressBar(total=total, completed=min(done, total), width=30), f"[dim]{amount} {rate}[/]"
        )
    else:
        row.add_row(f"[dim]{amount} {rate}[/]")
    return row


def make_reporter(json: bool = False, quiet: bool = False, secrets: Sequence[str] = ()) -> Reporter:
    """The reporter for a run: JSON if asked, a live view on a terminal, plain lines otherwise; each
    hides the values of `secrets` (the run's secret_env values) in whatever it prints."""
    reporter: Reporter
    if json:
        reporter = JsonReporter()
    elif use_color(sys.stdout) and not quiet:
        reporter = LiveReporter(quiet=quiet)
    else:
        reporter = PlainReporter(quiet=quiet)
    return Masking(reporter, secrets) if secrets else reporter


# -- secrets -------------------------------------------------------------------------------------

MASK = "********"


def mask(text: str, values: Sequence[str]) -> str:
    for value in values:
        text = text.replace(value, MASK)
    return text


class Masking(Reporter):
    """Passes every event on to `inner`, with every secret value in its text replaced by MASK."""

    def __init__(self, inner: Reporter, values: Sequence[str]) -> None:
        self.inner = inner
        self.values = sorted(values, key=len, reverse=True)  # a value inside another is masked too

    def run_start(self, playbook: Path, options: RunOptions) -> None:
        self.inner.run_start(playbook, options)

    def task_start(self, task: Task, hosts: tuple[str, ...]) -> None:
        self.inner.task_start(task, hosts)

    def host_output(self, task: Task, host: str, stream: str, line: str) -> None:
        self.inner.host_output(task, host, stream, mask(line, self.values))

    def host_message(self, task: Task, host: str, text: str) -> None:
        self.inner.host_message(task, host, mask(text, self.values))

    def host_plan(self, task: Task, host: str, command: str) -> None:
        self.inner.host_plan(task, host, mask(command, self.values))

    def host_progress(self, task: Task, host: str, done: int, total: int | None, unit: str = "bytes") -> None:
        self.inner.host_progress(task, host, done, total, unit)

    def host_done(self, task: Task, host: str, status: Status, seconds: float, message: str) -> None:
        self.inner.host_done(task, host, status, seconds, mask(message, self.values))

    def task_done(self, task: Task) -> None:
        self.inner.task_done(task)

    def interrupted(self, running: list[str]) -> None:
        self.inner.interrupted(running)

    def run_done(self, summary: RunSummary) -> None:
        for host in summary.hosts.values():
            host.error = mask(host.error, self.values)
        self.inner.run_done(summary)
