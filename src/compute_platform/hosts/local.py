"""localhost: scripts run through bash in a subprocess, no SSH."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from compute_platform.hosts.base import Host, LineCallback, LineSplitter, Result

if TYPE_CHECKING:
    from compute_platform.inventory import HostSpec

SHELL = shutil.which("bash") or "/bin/sh"


class LocalHost(Host):
    def __init__(self, spec: HostSpec) -> None:
        super().__init__(spec)
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Kill what is still running (an interrupted run must not leave commands behind)."""
        with self._lock:
            running = list(self._running)
        for proc in running:
            _kill_tree(proc)

    def execute(
        self,
        script: str,
        *,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        stdin: bytes | BinaryIO | None = None,
        stdout_to: BinaryIO | None = None,
    ) -> Result:
        start = self.clock()
        # A new session so that a timeout can kill the whole process tree, not just the shell.
        proc = subprocess.Popen(
            [SHELL, "-c", script],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._running.add(proc)
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [
            threading.Thread(
                target=_drain, args=(proc.stdout, out, LineSplitter("stdout", on_line), stdout_to)
            ),
            threading.Thread(target=_drain, args=(proc.stderr, err, LineSplitter("stderr", on_line), None)),
        ]
        if stdin is not None:
            readers.append(threading.Thread(target=_feed, args=(proc.stdin, stdin)))
        for t in readers:
            t.daemon = True
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc)
        except BaseException:
            _kill_tree(proc)
            raise
        finally:
            with self._lock:
                self._running.discard(proc)
        for t in readers:
            t.join()
        return Result(
            script,
            -1 if timed_out else proc.returncode,
            b"".join(out).decode(errors="replace"),
            b"".join(err).decode(errors="replace"),
            self.clock() - start,
            timed_out,
        )

    def put(self, local: Path, remote: str) -> None:
        target = Path(self.expand(remote))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)

    def get(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.expand(remote), local)

    def home(self) -> str:
        return os.path.expanduser("~")


def _drain(pipe: IO[bytes], sink: list[bytes], lines: LineSplitter, to: BinaryIO | None) -> None:
    while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
        if to is not None:
            to.write(chunk)
        else:
            sink.append(chunk)
            lines.feed(chunk)
    lines.flush()


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


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:
        pass
