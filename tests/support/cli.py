"""The `compute` command line in a subprocess, as a user runs it: plain output (stdout is not a
terminal), from a project folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]

# How the command is started: `python3 -m compute_platform`, the original tool's entry point
# `python3 compute.py` (its `compute.py playbooks/x.yaml` is `compute run playbooks/x.yaml`), or the
# `compute` script that installing the package puts on PATH.
Entry = Literal["module", "shim", "script"]


def compute_argv(*args: str, entry: Entry = "module") -> list[str]:
    """The command line of `compute ARGS`."""
    if entry == "script":
        return ["compute", *args]
    start = [str(ROOT / "compute.py")] if entry == "shim" else ["-m", "compute_platform"]
    return [sys.executable, *start, *args]


def compute(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    unset: Iterable[str] = (),
    umask: int | None = None,
    entry: Entry = "module",
) -> subprocess.CompletedProcess[str]:
    """Run `compute ARGS` in `cwd` (started as `entry` says) and wait for it. `env` adds variables
    to the current environment, `unset` removes some; `umask` is the process's (its files' modes)."""
    return subprocess.run(
        compute_argv(*args, entry=entry),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(env, unset),
        umask=-1 if umask is None else umask,
    )


def compute_popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `compute ARGS` in `cwd` with its stdout and stderr piped (to signal it, read it as it runs)."""
    return subprocess.Popen(
        compute_argv(*args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(env),
    )


def environment(add: dict[str, str] | None = None, unset: Iterable[str] = ()) -> dict[str, str]:
    """The current environment with `add` and without `unset`."""
    gone = set(unset)
    return {k: v for k, v in {**os.environ, **(add or {})}.items() if k not in gone}


def job_output(text: str) -> str:
    """A Slurm or tmux job's output after its first line, `CMD <command>` (the original tool's
    jobs printed it too, and its users grep for it)."""
    first, _, rest = text.partition("\n")
    assert first.startswith("CMD "), text
    return rest
