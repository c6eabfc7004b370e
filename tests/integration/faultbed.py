"""Helpers of the fault-injection, concurrency and security suites: a project folder on the test bed,
a small disk to fill, the ledger's rows, and what the real Slurm holds."""

from __future__ import annotations

import csv
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import testbed as tbm
from tests.support.cli import compute, compute_popen
from tests.support.project import CONFIGS, bed_hosts, write_book, write_hosts


class Project:
    """hosts.yaml with every host of the bed (`cluster` as a Slurm login node, logs in a private folder
    of the test user's home), configs.yaml, and playbooks written from Python structures."""

    def __init__(self, bed: tbm.Testbed, folder: Path, **hosts_extra: Any) -> None:
        self.bed = bed
        self.folder = folder
        self.tag = uuid.uuid4().hex[:8]
        self.logs_name = f"compute/faults-{self.tag}"
        hosts = bed_hosts(bed)
        for entry in hosts.values():
            entry["save_path"] = f"~/{self.logs_name}"
            entry.update(hosts_extra)
        hosts["localhost"] = {}
        self.hosts = hosts
        self.write_hosts()
        (folder / "configs.yaml").write_text(CONFIGS)

    def write_hosts(self) -> None:
        write_hosts(self.folder, self.hosts)

    def job_name(self, what: str) -> str:
        return f"{what}-{self.tag}"

    def book(self, tasks: list[dict[str, Any]], name: str = "book.yaml") -> Path:
        return write_book(self.folder, tasks, name)

    def run(self, *args: str, timeout: float = 60, **how: Any) -> subprocess.CompletedProcess[str]:
        """`compute run book.yaml ARGS` in the project (`how`: env, unset, umask of support.cli.compute)."""
        return compute("run", "book.yaml", *args, cwd=self.folder, timeout=timeout, **how)

    def popen(self, *args: str, book: str = "book.yaml") -> subprocess.Popen[str]:
        return compute_popen("run", book, *args, cwd=self.folder)

    @property
    def archive(self) -> Path:
        return self.folder / "archive"

    def rows(self) -> list[dict[str, str]]:
        return ledger_rows(self.archive)


class SmallDisk:
    """A tmpfs of `size` mounted for the test (root only), optionally filled up to leave `free` bytes."""

    def __init__(self, where: Path, size: str, options: str = "") -> None:
        self.where = where
        where.mkdir()
        mount = ["mount", "-t", "tmpfs", "-o", f"size={size}" + (f",{options}" if options else ""), "tmpfs"]
        proc = subprocess.run([*mount, str(where)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")

    def fill(self, leave: int) -> None:
        info = os.statvfs(self.where)
        size = info.f_bavail * info.f_frsize - leave
        with open(self.where / "filler", "wb") as f:
            f.write(b"\0" * max(0, size))

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


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
