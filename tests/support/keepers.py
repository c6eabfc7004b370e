"""The connection keeper (src/compute_platform/hosts/keeper.py) seen from a test: its processes in a
control directory, waiting for it to hold a host's connection, stopping it for good."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from compute_platform.hosts import kept
from tests.support.waiting import poll_until, wait_for


def pids(folder: Path) -> list[int]:
    """The keeper processes serving (or starting in) control directory `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"compute_platform.hosts.keeper" in argv and any(
            arg.startswith(str(folder).encode()) for arg in argv
        ):
            found.append(int(proc.name))
    return found


def log(folder: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted(folder.glob("keeper-*.log")))


def kept_aliases() -> list[str]:
    return sorted(row["alias"] for row in kept.connections())


def wait_kept(*aliases: str, timeout: float = 20) -> list[str]:
    """Wait until the keeper of this environment holds a connection to each of `aliases`."""
    return poll_until(
        kept_aliases, lambda held: set(aliases) <= set(held), timeout, f"the keeper to hold {aliases}"
    )


def stop(folder: Path, timeout: float = 10) -> None:
    """Stop every keeper of `folder` (SIGTERM: it closes its connections), SIGKILL what is left."""
    for pid in pids(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pids(folder), 5, "the keepers to end")
