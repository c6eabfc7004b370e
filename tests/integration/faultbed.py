"""Helpers of the fault-injection, concurrency and security suites: a project folder on the test bed,
the CLI as a subprocess, the ledger's rows, and what the real Slurm holds."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support import testbed as tbm

CONFIGS = "default: {cpus: 1, time: '00:05:00'}\n"


def compute_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "compute_platform", *args]


def compute(*args: str, cwd: Path, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(compute_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Project:
    """hosts.yaml with every host of the bed (`cluster` as a Slurm login node, logs in a private folder
    of the test user's home), configs.yaml, and playbooks written from Python structures."""

    def __init__(self, bed: tbm.Testbed, folder: Path, **hosts_extra: Any) -> None:
        self.bed = bed
        self.folder = folder
        self.tag = uuid.uuid4().hex[:8]
        self.logs_name = f"compute/faults-{self.tag}"
        hosts = yaml.safe_load(Path(bed.hosts_yaml).read_text())
        for entry in hosts.values():
            entry["save_path"] = f"~/{self.logs_name}"
            entry.update(hosts_extra)
        hosts["localhost"] = {}
        self.hosts = hosts
        self.write_hosts()
        (folder / "configs.yaml").write_text(CONFIGS)

    def write_hosts(self) -> None:
        (self.folder / "hosts.yaml").write_text(yaml.safe_dump(self.hosts, sort_keys=False))

    def job_name(self, what: str) -> str:
        return f"{what}-{self.tag}"

    def book(self, tasks: list[dict[str, Any]], name: str = "book.yaml") -> Path:
        data = {"inventory": {"hosts": "hosts.yaml", "configs": "configs.yaml"}, "tasks": tasks}
        path = self.folder / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        return compute("run", "book.yaml", *args, cwd=self.folder, timeout=timeout, **kw)

    def popen(self, *args: str, book: str = "book.yaml") -> subprocess.Popen[str]:
        return subprocess.Popen(
            compute_argv("run", book, *args),
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def archive(self) -> Path:
        return self.folder / "archive"

    def rows(self) -> list[dict[str, str]]:
        return ledger_rows(self.archive)


def ledger_rows(archive: Path) -> list[dict[str, str]]:
    try:
        with open(archive / "job.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def slurm(bed: tbm.Testbed, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **tbm.slurm_env(bed)},
    )


def slurm_jobs(bed: tbm.Testbed, name: str) -> list[str]:
    """Ids of every job (array elements included) of this name that Slurm knows, in any state."""
    proc = slurm(bed, "squeue", "-h", "-r", "-t", "all", "-n", name, "-o", "%i")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def scancel_name(bed: tbm.Testbed, name: str) -> None:
    slurm(bed, "scancel", "-n", name)


def ledger_ids(rows: list[dict[str, str]]) -> list[str]:
    return [r["job_id"] for r in rows]
