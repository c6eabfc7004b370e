"""The projects the integration tests run, each a folder with hosts.yaml, configs.yaml and book.yaml:

* `SlurmProject`: the test bed's Slurm cluster (two aliases of it), jobs' logs in a private folder;
* `ClusterProject`: the multi-node cluster's login node (`scripts/testbed up --nodes N`);
* `TmuxProject`: the bed's workstations and localhost, for tmux tasks;

and the helpers their tests share: `slurm()` (a slurm task), `ssh()` (a command on a host of the bed),
`login()` (on the cluster's login node), `local()` (a Slurm client command here).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from compute_platform.hosts import HostPool, shell
from compute_platform.input.inventory import load_inventory
from compute_platform.jobs.query import FINAL, Row
from compute_platform.ledger import JobRecord, Ledger
from tests.support import testbed as tbm
from tests.support.cli import compute, job_output
from tests.support.project import bed_hosts, host_entry, write_book, write_hosts, write_project
from tests.support.waiting import wait_jobs

SLURM_CONFIGS = """\
default: {cpus: 1, time: '00:05:00'}
gpu: {cpus: 1, gpu: 1, partition: gpu}
nopart: {partition: no-such-partition}
"""


class SlurmProject:
    """A folder with hosts.yaml (the bed's, with a private log folder), configs.yaml and book.yaml."""

    def __init__(self, bed: tbm.Testbed, folder: Path, **cluster: Any) -> None:
        self.bed = bed
        self.folder = folder
        self.logs_name = f"compute/test-{uuid.uuid4().hex[:10]}"
        self.logs = bed.home / self.logs_name
        entry = {**bed_hosts(bed)[bed.slurm_alias], "save_path": f"~/{self.logs_name}", **cluster}
        self.hosts = {"cluster": entry, "cluster2": dict(entry)}  # two aliases of the same cluster
        write_hosts(folder, self.hosts)
        (folder / "configs.yaml").write_text(SLURM_CONFIGS)

    def run(self, tasks: list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
        write_book(self.folder, tasks)
        return compute("run", "book.yaml", *extra, cwd=self.folder)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return compute(*args, cwd=self.folder, timeout=timeout)

    def rows(self) -> list[dict[str, str]]:
        with open(self.folder / "archive" / "job.csv", newline="") as f:
            return list(csv.DictReader(f))

    def wait(self, timeout: float = 45, until: tuple[str, ...] = FINAL) -> dict[str, Row]:
        """Poll the jobs' states (one squeue round trip per poll, 0.2 s apart) until all are in `until`."""
        return wait_jobs(self.folder / "archive", until, timeout=timeout)

    def output(self, row: dict[str, str]) -> str:
        return job_output(Path(row["log_out"]).read_text())


def slurm(name: str, hosts: Any = "cluster", **fields: Any) -> dict[str, Any]:
    return {"name": name, "hosts": hosts, "slurm": fields}


CLUSTER_CONFIGS = """\
default: {cpus: 1, time: '00:05:00'}
gpu: {cpus: 1, gpu: 1, partition: gpu}
one-minute: {cpus: 1, time: '00:01:00'}
small: {cpus: 1, mem: 100M}
"""


def ssh(bed: tbm.Testbed, host: str, command: str, timeout: float = 30) -> str:
    """`command` on a host of the bed as the test user, through the system ssh and the bed's ssh_config."""
    proc = subprocess.run(
        ["ssh", "-F", str(bed.ssh_config), host, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"ssh {host} {command!r}: exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def login(bed: tbm.Testbed, command: str, timeout: float = 30) -> str:
    """`command` on the cluster's login node."""
    return ssh(bed, bed.slurm_alias or "cluster", command, timeout)


def local(bed: tbm.Testbed, *cmd: str) -> str:
    """A Slurm client command here, as root (sacct, squeue)."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **tbm.slurm_env(bed)}
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
    return proc.stdout


class ClusterProject:
    """A folder with hosts.yaml (the cluster's login node, with a private log folder), configs.yaml
    and book.yaml."""

    def __init__(self, bed: tbm.Testbed, folder: Path) -> None:
        self.bed = bed
        self.folder = folder
        self.logs = bed.home / f"compute/test-{uuid.uuid4().hex[:10]}"
        alias = bed.slurm_alias or "cluster"
        write_hosts(folder, {"cluster": {**bed_hosts(bed)[alias], "save_path": str(self.logs)}})
        (folder / "configs.yaml").write_text(CLUSTER_CONFIGS)

    def run(self, tasks: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        write_book(self.folder, tasks)
        return compute("run", "book.yaml", cwd=self.folder)

    def jobs(self) -> dict[str, dict[str, Any]]:
        """`compute jobs --all --json`, by job id."""
        proc = compute("jobs", "--all", "--json", cwd=self.folder, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {job["job_id"]: job for job in json.loads(proc.stdout)["jobs"]}

    def wait(self, timeout: float = 60, until: tuple[str, ...] | None = None) -> dict[str, Row]:
        if until is None:
            return wait_jobs(self.folder / "archive", timeout=timeout)
        return wait_jobs(self.folder / "archive", until, timeout=timeout)


class TmuxProject:
    """A folder with hosts.yaml (the bed's hosts + localhost), a playbook and its archive."""

    def __init__(self, testbed: Any, folder: Path) -> None:
        self.testbed = testbed
        self.folder = folder
        self.name = f"t{uuid.uuid4().hex[:6]}"
        self.hosts: dict[str, Any] = {"localhost": {"save_path": str(folder / "logs")}}
        # on the bed's hosts: a folder of the test user's home that this test removes at its end
        self.remote = f"~/compute/tmux-tests/{self.name}"

    def host(self, alias: str, **settings: Any) -> None:
        """Give a host extra settings (init, env...)."""
        base = self.hosts.get(alias) or host_entry(self.testbed, alias, save_path=self.remote)
        self.hosts[alias] = {**base, **settings}

    def book(self, where: str, **fields: Any) -> None:
        if where not in self.hosts:
            self.host(where)
        task = {"name": "sweep", "hosts": where, "tmux": {"job_name": self.name, **fields}}
        text = json.dumps({"inventory": {"hosts": "hosts.yaml"}, "tasks": [task]})
        write_project(self.folder, self.testbed, text, extra_hosts=self.hosts)

    def compute(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return compute(*args, cwd=self.folder, timeout=timeout)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.compute("run", "book.yaml", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def records(self) -> list[JobRecord]:
        return Ledger(self.folder / "archive").records()

    def states(self) -> dict[str, dict[str, Any]]:
        proc = self.compute("jobs", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {row["job_id"]: row for row in json.loads(proc.stdout)["jobs"]}

    def wait(self, done: Any = None, timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Poll the jobs' states until `done(states)` (default: every job has ended), then return
        what `compute jobs --json` says. The polling runs the same code in-process, on one
        connection, so that the test does not pay a new process and SSH login every 0.2 s."""
        done = done or (lambda states: all(s["state"] in FINAL for s in states.values()))
        wait_jobs(
            self.folder / "archive",
            done=lambda rows: done({job_id: {"state": row.state.state} for job_id, row in rows.items()}),
            timeout=timeout,
        )
        return self.states()

    def log(self, job_id: str) -> str:
        proc = self.compute("logs", job_id)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return job_output(proc.stdout)

    def logs(self, where: str) -> list[str]:
        """Every job's log in index order, read in one call (`compute logs` is tested on its own)."""
        records = sorted(self.records(), key=lambda r: int(r.job_index))
        paths = " ".join(shell.quote(r.log_out) for r in records)
        text = self.shell(where, f"for f in {paths}; do cat \"$f\"; echo '<end of log>'; done")
        return [job_output(log) for log in text.split("<end of log>\n")[:-1]]

    def clean(self) -> None:
        for alias in self.hosts:
            if alias != "localhost" and alias in self.testbed.hosts and (self.folder / "hosts.yaml").exists():
                with contextlib.suppress(Exception):  # a stopped host (no tmux test) has nothing to clean
                    self.shell(alias, f"rm -rf {shell.quote_path(self.remote)}")

    def shell(self, alias: str, command: str) -> str:
        pool = HostPool(load_inventory(self.folder / "hosts.yaml", None))
        try:
            return pool.get(alias).run(command, timeout=30, check=True).stdout
        finally:
            pool.close()
