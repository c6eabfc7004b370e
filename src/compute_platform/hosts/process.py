"""Local processes with both outputs drained at once: LocalHost runs its scripts with this, and
OpenSSHHost its `ssh` clients."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO

from compute_platform.hosts.base import BoundedOutput, LineCallback, LineSplitter
from compute_platform.hosts.remote import Opening

Stop = Callable[["subprocess.Popen[bytes]"], None]


@dataclass(frozen=True)
class Exited:
    exit_code: int  # -1 when stopped by the timeout
    stdout: str
    stderr: str
    timed_out: bool


class Processes:
    """Runs processes for one host and remembers the running ones, so that closing the host
    stops them: an interrupted run must not leave commands behind."""

    def __init__(self, stop: Stop) -> None:
        self._stop = stop
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        stdin: bytes | BinaryIO | None = None,
        stdout_to: BinaryIO | None = None,
        on_timeout: Stop | None = None,
        token: bytes | None = None,
    ) -> Exited:
        """Run `argv` in a new session (so that the whole tree can be stopped) and wait for it;
        after `timeout` seconds, stop it with `on_timeout` (default: the stop given at creation).
        With `token` (a script started by remote.launch), what each stream shows before it is dropped."""
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._running.add(proc)
        out = Kept(LineSplitter("stdout", on_line), stdout_to)
        err = Kept(LineSplitter("stderr", on_line), None)
        threads = [
            threading.Thread(target=_drain, args=(proc.stdout, out, token)),
            threading.Thread(target=_drain, args=(proc.stderr, err, token)),
        ]
        if stdin is not None:
            threads.append(threading.Thread(target=_feed, args=(proc.stdin, stdin)))
        for t in threads:
            t.daemon = True
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            (on_timeout or self._stop)(proc)
        except BaseException:
            self._stop(proc)
            raise
        finally:
            with self._lock:
                self._running.discard(proc)
        for t in threads:
            t.join()
        return Exited(-1 if timed_out else proc.returncode, out.text(), err.text(), timed_out)

    def stop_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for proc in running:
            self._stop(proc)


def kill_tree(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM the process group of `proc` (its own session), SIGKILL what is left of it after
    `grace` seconds. The group, not just `proc`: a child that ignores SIGTERM outlives the shell
    and would keep the output pipes (and the run) open for ever."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or the group never looks empty
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Kept:
    """One output stream: written whole to `to` as it comes (a download, never cut), or kept (its
    start and its end: memory stays bounded whatever the command prints) and cut into lines."""

    def __init__(self, lines: LineSplitter, to: BinaryIO | None) -> None:
        self.lines = lines
        self.to = to
        self.kept = BoundedOutput()

    def feed(self, data: bytes) -> None:
        if self.to is not None:
            self.to.write(data)
        else:
            self.kept.feed(data)
            self.lines.feed(data)

    def text(self) -> str:
        return self.kept.text()


def _drain(pipe: IO[bytes], kept: Kept, token: bytes | None) -> None:
    sink: Kept | Opening = kept if token is None else Opening(token, kept)
    while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
        sink.feed(chunk)
    if isinstance(sink, Opening):
        sink.close()
    kept.lines.flush()


def _feed(pipe: IO[bytes], data: bytes | BinaryIO) -> None:
    try:
        if isinstance(data, bytes):
            pipe.write(data)
        else:
            while chunk := data.read(1 << 20):
                pipe.write(chunk)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()
