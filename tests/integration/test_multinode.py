"""The test bed's multi-node mode (tests/support/cluster.py): a real Slurm cluster of three nodes, each
a slurmd in its own network namespace, with slurmdbd accounting, and `compute` driving it through the
login node as a user does. The controller forgets a job 10 s after it ended (MinJobAge), so what
`compute jobs` shows of older jobs comes from sacct, as on real clusters.

Every test writes its logs under its own folder of the test user's home (job ids restart with every
bed, and beds share that home)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.jobs.query import Row
from tests.support import cluster as mn
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import bed_hosts, write_book, write_hosts
from tests.support.waiting import wait_jobs

CONFIGS = """\
default: {cpus: 1, time: '00:05:00'}
gpu: {cpus: 1, gpu: 1, partition: gpu}
"""
# exits with the number of its flag (`--code=3`: 3) after saying where it ran
EXITS = 'f() { echo "on $(hostname)"; exit "${1#--code=}"; }; f'


def login(bed: tbm.Testbed, command: str, timeout: float = 30) -> str:
    """`command` on the login node as the test user (ssh through the bed's ssh_config)."""
    proc = subprocess.run(
        ["ssh", "-F", str(bed.ssh_config), bed.slurm_alias or "cluster", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{command!r}: exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def local(bed: tbm.Testbed, *cmd: str) -> str:
    """A Slurm client command here, as root (sacct, squeue)."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **tbm.slurm_env(bed)}
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
    return proc.stdout


class Project:
    """A folder with hosts.yaml (the cluster's login node, with a private log folder), configs.yaml
    and book.yaml."""

    def __init__(self, bed: tbm.Testbed, folder: Path) -> None:
        self.bed = bed
        self.folder = folder
        self.logs = bed.home / f"compute/test-{uuid.uuid4().hex[:10]}"
        alias = bed.slurm_alias or "cluster"
        write_hosts(folder, {"cluster": {**bed_hosts(bed)[alias], "save_path": str(self.logs)}})
        (folder / "configs.yaml").write_text(CONFIGS)

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


def slurm(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "hosts": "cluster", "slurm": fields}


@pytest.fixture
def project(multinode: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    made = Project(multinode, tmp_path)
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)  # the test user's home outlives the bed


@pytest.fixture
def limits(multinode: tbm.Testbed) -> Iterator[None]:
    """The test user's association limits are set back to none after the test."""
    yield
    mn.sacctmgr(multinode, f"modify user {multinode.user} set MaxSubmitJobs=-1 MaxJobs=-1")


# --------------------------------------------------------------------------- the cluster itself


def test_sinfo_on_the_login_node_shows_every_node_idle(multinode: tbm.Testbed) -> None:
    lines = login(multinode, "sinfo -h -N -o '%N %P %T'").split()
    rows = {(lines[i], lines[i + 1], lines[i + 2]) for i in range(0, len(lines), 3)}
    assert {node for node, _, _ in rows} == {"node1", "node2", "node3"}
    assert {state for _, _, state in rows} == {"idle"}
    assert {node for node, partition, _ in rows if partition == "gpu"} == {"node3"}
    assert {node for node, partition, _ in rows if partition == "debug*"} == {"node1", "node2", "node3"}


def test_srun_on_three_nodes_prints_three_names(multinode: tbm.Testbed) -> None:
    out = login(multinode, "cd /tmp && srun -N3 hostname")
    assert sorted(out.split()) == ["node1", "node2", "node3"]


# --------------------------------------------------------------------------- up and down


def test_a_small_cluster_without_accounting_comes_up_and_leaves_nothing_behind() -> None:
    state = Path(f"/tmp/compute-multinode-small-{uuid.uuid4().hex[:6]}")
    try:
        bed = tbm.up(state, hosts=0, nodes=1, accounting=False)
        assert tbm.is_up(state) and bed.nodes == ["node1"]
        assert mn.node_states(bed) == {"node1": "idle"}
        spaces = list(bed.cluster["netns"].values())
        pids = [pid for pidfile in state.rglob("*.pid") if (pid := mn.owned_pid(pidfile, state)) is not None]
        assert len(pids) == 4  # sshd, munged, slurmctld, slurmd
    finally:
        tbm.down(state)
    assert not tbm.is_up(state)
    assert not set(spaces) & set(mn._netns_list())
    assert not mn._link_exists(bed.cluster["bridge"])
    assert not any(tbm._alive(pid) for pid in pids)
    tbm.down(state)  # idempotent
    shutil.rmtree(state, ignore_errors=True)
