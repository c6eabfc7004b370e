"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_entry(testbed: Any, alias: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": testbed.hosts[alias],
        "user": testbed.user,
        "key": str(testbed.client_key),
        "known_hosts": str(testbed.known_hosts),
        **extra,
    }


def write_project(
    folder: Path,
    testbed: Any,
    book: str,
    *,
    extra_hosts: dict[str, Any] | None = None,
    known_hosts: Path | None = None,
    strict: bool = False,
    configs: str = "default: {cpus: 1, time: '00:05:00'}\n",
) -> Path:
    """hosts.yaml (every test bed host + localhost), configs.yaml and book.yaml in `folder`."""
    hosts: dict[str, Any] = {"localhost": {}}
    for alias in testbed.hosts:
        entry = host_entry(testbed, alias)
        if known_hosts is not None:
            entry["known_hosts"] = str(known_hosts)
        if strict:
            entry["host_key_checking"] = "strict"
        hosts[alias] = entry
    hosts.update(extra_hosts or {})
    (folder / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (folder / "configs.yaml").write_text(configs)
    path = folder / "book.yaml"
    path.write_text(book)
    return path


def compute(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`compute ARGS` in `cwd`, as a user runs it (plain output: stdout is not a terminal); `env`
    adds variables to the current environment."""
    return subprocess.run(
        [sys.executable, "-m", "compute_platform", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def job_output(text: str) -> str:
    """A Slurm or tmux job's output after its first line, `CMD <command>` (the original tool's
    jobs printed it too, and its users grep for it)."""
    first, _, rest = text.partition("\n")
    assert first.startswith("CMD "), text
    return rest
