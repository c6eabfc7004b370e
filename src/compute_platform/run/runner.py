"""Run order, parallelism and outcomes. Tasks run in order; within a task, hosts run in parallel.
A host that fails is left out of the rest of the playbook while the others go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from compute_platform.context import HostSummary, Outcome, RunOptions, RunSummary, Status
from compute_platform.errors import ComputeError, InputError, Interrupted
from compute_platform.ledger import Ledger, git_state, new_run_id

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host, HostPool
    from compute_platform.hosts.base import LineCallback
    from compute_platform.input.inventory import Inventory
    from compute_platform.playbook.loader import Playbook
    from compute_platform.run.reporting import Reporter


T = TypeVar("T")
# After Ctrl-C, how long the runner waits for submissions under way to be recorded.
SUBMISSION_GRACE = 30.0


@dataclass
class RunState:
    """What lives for one whole run and is shared by its tasks (caches, the ledger)."""

    playbook: Playbook
    options: RunOptions
    reporter: Reporter
    pool: HostPool
    cache: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, threading.Lock] = field(default_factory=dict)  # one per key of `cache`
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set by Ctrl-C: no new submission starts; the ones under way finish and are recorded.
    stopping: threading.Event = field(default_factory=threading.Event)
    submitting: dict[str, int] = field(default_factory=dict)  # alias -> submissions under way

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)
        self.ledger = Ledger(self.options.archive)
        self.run_id = new_run_id()
        self.playbook_path = self.playbook.path.resolve()
        self.submitted: dict[tuple[str, str], list[str]] = {}  # (task name, alias) -> job ids

    def cached(self, key: str, make: Any) -> Any:
        """`make()` once per key; each key has a lock of its own, so that hosts making their own
        values (a cluster's answers, a code upload) do not wait for one another."""
        with self.lock:
            if key in self.cache:
                return self.cache[key]
            gate = self.gates.setdefault(key, threading.Lock())
        with gate:
            with self.lock:
                if key in self.cache:
                    return self.cache[key]
            value = make()
            with self.lock:
                self.cache[key] = value
            return value

    @contextmanager
    def submission(self, alias: str) -> Iterator[None]:
        """Around one submission AND its ledger record: once the run is stopping none starts, and
        the runner waits for those under way, so that a job the scheduler accepted is always recorded."""
        with self.lock:
            if self.stopping.is_set():
                raise Interrupted(alias)
            self.submitting[alias] = self.submitting.get(alias, 0) + 1
        try:
            yield
        finally:
            with self.changed:
                self.submitting[alias] -= 1
                if not self.submitting[alias]:
                    del self.submitting[alias]
                self.changed.notify_all()

    def stop(self) -> set[str]:
        """Refuse new submissions; return the hosts with a submission under way."""
        with self.lock:
            self.stopping.set()
            return set(self.submitting)

    def wait_submissions(self, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: not self.submitting, timeout)


@dataclass(frozen=True)
class RunContext:
    """What a task sees while it runs on one host: the runner's TaskContext (context.py)."""

    state: RunState
    task: Task
    alias: str
    task_hosts: tuple[str, ...]

    @property
    def options(self) -> RunOptions:
        return self.state.options

    @property
    def stopping(self) -> threading.Event:
        return self.state.stopping

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def git_state(self) -> tuple[str, str]:
        path = self.state.playbook_path
        return self.state.cached("git_state", lambda: git_state(path))  # type: ignore[no-any-return]

    def submission(self) -> AbstractContextManager[None]:
        return self.state.submission(self.alias)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        return self.state.cached(key, make)  # type: ignore[no-any-return]

    def submitted(self, task_name: str) -> list[str]:
        with self.state.lock:
            return list(self.state.submitted.get((task_name, self.alias), []))

    def add_submitted(self, ids: Sequence[str]) -> None:
        with self.state.lock:
            self.state.submitted.setdefault((self.task.name, self.alias), []).extend(ids)

    @property
    def playbook_path(self) -> Path:
        return self.state.playbook_path

    @property
    def inventory(self) -> Inventory:
        return self.state.playbook.inventory

    @property
    def timeout(self) -> float | None:
        return self.task.timeout

    @property
    def host_index(self) -> int:
        return self.task_hosts.index(self.alias)

    def output(self, host: Host) -> LineCallback:
        reporter, task = self.state.reporter, self.task
        return lambda stream, line: reporter.host_output(task, host.alias, stream, line)

    def info(self, text: str) -> None:
        self.state.reporter.host_message(self.task, self.alias, text)

    def progress(self, done: int, total: int | None, unit: str = "jobs") -> None:
        """How far this host's step is (e.g. jobs of a sweep submitted): a bar in the live view."""
        self.state.reporter.host_progress(self.task, self.alias, done, total, unit)


def dry_contexts(playbook: Playbook, pool: HostPool, alias: str) -> Iterator[tuple[Task, TaskContext]]:
    """The context a dry run gives each of a host's tasks, for code that renders what a run would
    submit without running it (`check --remote` asks the scheduler about those scripts)."""
    from compute_platform.run.reporting import Reporter

    state = RunState(playbook, RunOptions(dry_run=True), Reporter(), pool)
    for task in playbook.tasks:
        if alias in task.hosts:
            yield task, RunContext(state, task, alias, task.hosts)


class Runner:
    def __init__(self, playbook: Playbook, options: RunOptions, reporter: Reporter) -> None:
        self.playbook = playbook
        self.options = options
        self.reporter = reporter
        self.running: set[str] = set()  # "task on host" being worked on, for the Ctrl-C message
        self.in_use: dict[str, Host] = {}  # alias -> Host of the tasks under way, stopped by Ctrl-C

    def selected(self, task: Task) -> tuple[str, ...]:
        if not self.options.limit:
            return task.hosts
        return tuple(h for h in task.hosts if h in self.options.limit)

    def check_limit(self) -> None:
        known = {h for t in self.playbook.tasks for h in t.hosts}
        for alias in self.options.limit:
            if alias not in known:
                from compute_platform.input.yamlfile import did_you_mean

                raise InputError(
                    f"--limit: host '{alias}' is not used by any task of {self.playbook.path}"
                    + did_you_mean(alias, known)
                )

    def run(self) -> RunSummary:
        from compute_platform.hosts import HostPool

        self.check_limit()
        start = time.monotonic()
        summary = RunSummary()
        pool = HostPool(self.playbook.inventory)
        state = RunState(self.playbook, self.options, self.reporter, pool)
        failed: set[str] = set()
        self.reporter.run_start(self.playbook.path, self.options)
        executor = ThreadPoolExecutor(max_workers=max(1, self.options.forks))
        try:
            for task in self.playbook.tasks:
                hosts = self.selected(task)
                for alias in hosts:
                    summary.hosts.setdefault(alias, HostSummary())
                active = tuple(h for h in hosts if h not in failed)
                self.reporter.task_start(task, active)
                for alias in hosts:
                    if alias in failed:
                        summary.hosts[alias].skipped += 1
                        self.reporter.host_done(task, alias, Status.SKIPPED, 0.0, "failed earlier")
                stop = self._run_task(executor, state, task, active, summary, failed)
                self.reporter.task_done(task)
                if stop:
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
            self.reporter.interrupted(sorted(self.running))
            self._stop(state)
            pool.close()  # breaks running channels and kills local process trees
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            pool.close()
            summary.seconds = time.monotonic() - start
        self.reporter.run_done(summary)
        return summary

    def _stop(self, state: RunState) -> None:
        """Ctrl-C: stop every command at once (process trees included), except on the hosts where a
        submission is under way: let those end and be recorded (a few seconds at most; a second
        Ctrl-C stops waiting), so that the ledger holds every job that was really submitted."""
        busy = state.stop()
        for alias, host in list(self.in_use.items()):
            if alias not in busy:
                host.interrupt()
        with suppress(KeyboardInterrupt):
            state.wait_submissions(SUBMISSION_GRACE)
        for host in list(self.in_use.values()):
            host.interrupt()

    def _run_task(
        self,
        executor: ThreadPoolExecutor,
        state: RunState,
        task: Task,
        active: tuple[str, ...],
        summary: RunSummary,
        failed: set[str],
    ) -> bool:
        futures: dict[Future[tuple[str, Status, float, str]], str] = {}
        for alias in active:
            ctx = RunContext(state, task, alias, active)
            futures[executor.submit(self._one, ctx)] = alias
        pending = set(futures)
        stop = False
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                alias, status, seconds, message = future.result()
                host = summary.hosts[alias]
                host.seconds += seconds
                if status is Status.FAILED:
                    host.failed += 1
                    host.error = message
                    failed.add(alias)
                    if self.options.fail_fast:
                        stop = True
                        for other in pending:
                            other.cancel()
                else:
                    host.ok += 1
                    host.changed += status is Status.CHANGED
                self.reporter.host_done(task, alias, status, seconds, message)
        return stop

    def _one(self, ctx: RunContext) -> tuple[str, Status, float, str]:
        """Run one task on one host; never raises (except on interruption)."""
        start = time.monotonic()
        alias, task = ctx.alias, ctx.task
        label = f"'{task.name}' on {alias}"
        self.running.add(label)
        try:
            host = ctx.state.pool.get(alias)
            self.in_use[alias] = host
            if self.options.dry_run:
                for line in task.action.plan(ctx, host):
                    self.reporter.host_plan(task, alias, line)
                return alias, Status.OK, time.monotonic() - start, ""
            outcome: Outcome = task.action.run(ctx, host)
            status = Status.CHANGED if outcome.changed else Status.OK
            return alias, status, time.monotonic() - start, outcome.message
        except ComputeError as e:
            message = e.about(alias)
            if task.ignore_errors:
                self.reporter.host_message(task, alias, f"ignored error: {message}")
                return alias, Status.OK, time.monotonic() - start, f"ignored: {message}"
            return alias, Status.FAILED, time.monotonic() - start, message
        except Exception as e:  # a bug in a task must fail that host, not the whole run
            if self.options.verbose:
                import traceback

                traceback.print_exc()
            return alias, Status.FAILED, time.monotonic() - start, f"internal error: {type(e).__name__}: {e}"
        finally:
            self.running.discard(label)
