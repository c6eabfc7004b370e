"""localhost: scripts run through bash in a subprocess, no SSH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from compute_platform.hosts.base import Host, LineCallback, Result
from compute_platform.hosts.process import Processes, kill_tree

if TYPE_CHECKING:
    from compute_platform.input.spec import HostSpec

SHELL = shutil.which("bash") or "/bin/sh"


class LocalHost(Host):
    flies = False  # no round trip to save: each question is a command of its own

    def __init__(self, spec: HostSpec) -> None:
        super().__init__(spec)
        # a timeout or an interruption stops the whole process tree, not just the shell
        self._processes = Processes(stop=kill_tree)

    def close(self) -> None:
        """Kill what is still running (an interrupted run must not leave commands behind)."""
        self._processes.stop_all()

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
        done = self._processes.run(
            [SHELL, "-c", script], timeout=timeout, on_line=on_line, stdin=stdin, stdout_to=stdout_to
        )
        return Result(script, done.exit_code, done.stdout, done.stderr, self.clock() - start, done.timed_out)

    def put(self, local: Path, remote: str) -> None:
        target = Path(self.expand(remote))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)

    def get(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.expand(remote), local)

    def home(self) -> str:
        return os.path.expanduser("~")
