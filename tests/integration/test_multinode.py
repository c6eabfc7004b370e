"""The test bed's multi-node mode (tests/support/cluster.py): a real Slurm cluster of three nodes, each
a slurmd in its own network namespace, with slurmdbd accounting, and `compute` driving it through the
login node as a user does. The controller forgets a job 10 s after it ended (MinJobAge), so what
`compute jobs` shows of older jobs comes from sacct, as on real clusters.

Every test writes its logs under its own folder of the test user's home (job ids restart with every
bed, and beds share that home)."""

from __future__ import annotations

import json
import os
import re
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
from tests.support.cli import compute, job_output
from tests.support.project import bed_hosts, write_book, write_hosts
from tests.support.projects import CLUSTER_CONFIGS as CONFIGS
from tests.support.projects import ClusterProject as Project
from tests.support.projects import local, login, slurm
from tests.support.waiting import poll_until, wait_jobs

# exits with the number of its flag (`--code=3`: 3) after saying where it ran
EXITS = 'f() { echo "on $(hostname)"; exit "${1#--code=}"; }; f'


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


# --------------------------------------------------------------------------- compute on it


@pytest.fixture(scope="module")
def forgotten(multinode: tbm.Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One `compute run` of a sweep of single jobs and an array, each exiting 0 or 3, waited for
    until they ended and the controller has forgotten them (MinJobAge + its purge pass)."""
    made = Project(multinode, tmp_path_factory.mktemp("forgotten"))
    proc = made.run(
        [
            slurm("single", cmd=EXITS, sweep={"code": [0, 3]}, array=False),
            slurm("arr", cmd=EXITS, sweep={"code": [0, 3, 0, 3]}, array=True),
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = list(made.wait())
    base = sorted({job_id.split("_")[0] for job_id in ids})

    def known() -> str:
        return local(multinode, "squeue", "-h", "-t", "all", "-j", ",".join(base), "-o", "%i %T")

    poll_until(known, lambda out: out.strip() == "", 60, "the controller to forget the jobs", 0.5)
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)


def states(project: Project) -> dict[str, tuple[str, str, int | None]]:
    return {job_id: (j["task"], j["state"], j["exit_code"]) for job_id, j in project.jobs().items()}


@pytest.mark.slow
def test_jobs_the_controller_forgot_show_their_end_from_sacct(forgotten: Project) -> None:
    before = states(forgotten)  # the jobs' status files and sacct
    single = {k: v for k, v in before.items() if v[0] == "single"}
    assert sorted(v[1:] for v in single.values()) == [("COMPLETED", 0), ("FAILED", 3)]
    assert all("_" not in job_id for job_id in single)
    # without the status files the jobs wrote, sacct alone says the same
    for status in forgotten.logs.glob("*.status"):
        status.unlink()
    assert states(forgotten) == before
    ids = ",".join(sorted(single))
    sacct = local(forgotten.bed, "sacct", "-n", "-X", "-P", "-j", ids, "-o", "JobID,State,ExitCode,NodeList")
    records = sorted(line.split("|")[1:] for line in sacct.split())
    assert [r[:2] for r in records] == [["COMPLETED", "0:0"], ["FAILED", "3:0"]]
    assert all(r[2] in ("node1", "node2", "node3") for r in records)


@pytest.mark.slow
def test_an_array_whose_elements_exit_0_and_3(forgotten: Project) -> None:
    shown = {k: v for k, v in states(forgotten).items() if v[0] == "arr"}
    array_id = next(iter(shown)).split("_")[0]
    assert shown == {
        f"{array_id}_0": ("arr", "COMPLETED", 0),
        f"{array_id}_1": ("arr", "FAILED", 3),
        f"{array_id}_2": ("arr", "COMPLETED", 0),
        f"{array_id}_3": ("arr", "FAILED", 3),
    }
    outputs = [job_output(p.read_text()) for p in sorted(forgotten.logs.glob(f"arr.{array_id}_*.out"))]
    assert len(outputs) == 4 and all(out.startswith("on node") for out in outputs)


@pytest.mark.slow
def test_max_submit_jobs_set_with_sacctmgr_is_enforced(
    multinode: tbm.Testbed, project: Project, limits: None
) -> None:
    mn.sacctmgr(multinode, f"modify user {multinode.user} set MaxSubmitJobs=2")
    refused = project.run([slurm("three", cmd="true", sweep={"i": [1, 2, 3]}, array=True)])  # 3 jobs
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "sbatch refused the job: sbatch: error: AssocMaxSubmitJobLimit" in refused.stdout
    assert "Job violates accounting/QOS policy (job submit limit" in refused.stdout
    assert not (project.folder / "archive" / "job.csv").exists()
    accepted = project.run([slurm("two", cmd="true", sweep={"i": [1, 2]})])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert {row.state.state for row in project.wait().values()} == {"COMPLETED"}


@pytest.mark.slow
def test_max_jobs_holds_the_others_pending_with_its_reason(
    multinode: tbm.Testbed, project: Project, limits: None
) -> None:
    mn.sacctmgr(multinode, f"modify user {multinode.user} set MaxJobs=1")
    proc = project.run([slurm("one-at-a-time", cmd="f() { sleep 1; }; f", sweep={"i": [1, 2]})])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def held(rows: dict[str, Row]) -> bool:
        return sorted((r.state.state, r.state.reason) for r in rows.values()) == [
            ("PENDING", "AssocMaxJobsLimit"),
            ("RUNNING", ""),
        ]

    wait_jobs(project.folder / "archive", done=held, timeout=30)
    assert {row.state.state for row in project.wait().values()} == {"COMPLETED"}


@pytest.mark.slow
def test_a_high_partition_job_preempts_and_requeues_a_debug_job(
    multinode: tbm.Testbed, project: Project
) -> None:
    proc = project.run([slurm("low", cmd="sleep 60", sbatch={"nodelist": "node1", "exclusive": True})])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (low,) = project.wait(until=("RUNNING",))
    high = login(multinode, "cd /tmp && sbatch --parsable -p high -w node1 --exclusive --wrap true").strip()

    def low_requeued(rows: dict[str, Row]) -> bool:
        return rows[low].state.state == "PENDING"

    wait_jobs(project.folder / "archive", done=low_requeued, timeout=30)
    history = poll_until(
        lambda: local(multinode, "sacct", "-n", "-X", "-P", "-D", "-j", f"{low},{high}", "-o", "JobID,State"),
        lambda out: f"{high}|COMPLETED" in out,
        30,
        "the high job to complete",
        0.5,
    )
    assert f"{low}|PREEMPTED" in history.split()
    cancelled = compute("cancel", low, cwd=project.folder)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert project.wait()[low].state.state == "CANCELLED"


@pytest.mark.slow
def test_a_job_whose_node_fails_ends_failed_with_node_fail(multinode: tbm.Testbed, project: Project) -> None:
    sbatch = {"nodelist": "node2", "no-requeue": True}
    proc = project.run([slurm("doomed", cmd="echo started; sleep 60", sbatch=sbatch)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (job,) = project.wait(until=("RUNNING",))
    local(multinode, "scontrol", "update", "nodename=node2", "state=down", "reason=compute-test")
    try:
        state = project.wait()[job].state
        assert (state.state, state.reason) == ("FAILED", "NODE_FAIL"), state
        history = local(multinode, "sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State")
        assert f"{job}|NODE_FAIL" in history.split(), history
    finally:
        local(multinode, "scontrol", "update", "nodename=node2", "state=resume")
        mn.wait_nodes_idle(multinode)


@pytest.mark.slow
def test_a_job_over_its_time_limit_ends_timeout(multinode: tbm.Testbed, project: Project) -> None:
    # Slurm keeps time limits in minutes and checks them about every 30 s: this takes 60-90 s
    proc = project.run([slurm("late", cmd="echo started; sleep 300", config="one-minute")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (job,) = project.wait(until=("RUNNING",))
    state = project.wait(timeout=150)[job].state
    assert state.state == "TIMEOUT", state
    history = local(multinode, "sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State")
    assert f"{job}|TIMEOUT" in history.split(), history


@pytest.mark.slow
def test_a_requeued_job_runs_again_and_ends_completed(multinode: tbm.Testbed, project: Project) -> None:
    cmd = 'echo "restarts: ${SLURM_RESTART_COUNT:-0}"; sleep 3'
    proc = project.run([slurm("again", cmd=cmd, sbatch={"nodelist": "node1"})])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (job,) = project.wait(until=("RUNNING",))
    local(multinode, "scontrol", "requeue", job)
    # the end of the first run (its trap wrote a status file) is not taken for the job's end
    requeued = project.wait(until=("PENDING",), timeout=20)[job].state
    assert requeued.state == "PENDING", requeued
    row = project.wait(timeout=90)[job]
    assert row.state.state == "COMPLETED" and row.state.exit_code == 0, row.state
    assert "restarts: 1" in Path(row.record.log_out).read_text()
    history = poll_until(
        lambda: local(multinode, "sacct", "-n", "-X", "-P", "-D", "-j", job, "-o", "JobID,State"),
        lambda out: f"{job}|COMPLETED" in out.split(),
        30,
        "sacct to show the second run",
        0.5,
    )
    assert f"{job}|REQUEUED" in history.split(), history


def test_a_gpu_job_sees_its_fake_gpu(project: Project) -> None:
    proc = project.run([slurm("gpu", cmd='echo "$(hostname) $CUDA_VISIBLE_DEVICES"', config="gpu")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait().values()
    assert row.state.state == "COMPLETED"
    assert job_output(Path(row.record.log_out).read_text()) == "node3 0\n"


# --------------------------------------------------------------------------- layouts over nodes


def test_nodes_and_tasks_per_node_give_each_node_its_tasks(project: Project) -> None:
    """`nodes: 2, tasks_per_node: 2`: srun inside the job runs 4 tasks, 2 on each of 2 nodes."""
    (project.folder / "configs.yaml").write_text(CONFIGS + "pairs: {nodes: 2, tasks_per_node: 2, time: 5}\n")
    probe = "srun bash -c 'echo \"$(hostname) $SLURM_PROCID $SLURM_NTASKS $SLURM_CPUS_PER_TASK\"' | sort"
    proc = project.run([slurm("pairs", cmd=probe, config="pairs")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait().values()
    assert row.state.state == "COMPLETED", row
    lines = job_output(Path(row.record.log_out).read_text()).split("\n")
    tasks = [line.split() for line in lines if line]
    assert sorted(t[1] for t in tasks) == ["0", "1", "2", "3"] and {t[2] for t in tasks} == {"4"}
    per_node = {t[0]: sum(1 for u in tasks if u[0] == t[0]) for t in tasks}
    assert len(per_node) == 2 and set(per_node.values()) == {2}, per_node


# Each rank connects to rank 0 at MASTER_ADDR:MASTER_PORT and sends "rank@host"; rank 0 prints what
# it heard from the others. Run as `python3 - <<EOF` inside each task of `launcher: srun`.
RENDEZVOUS = r"""
import os, socket, time
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
me = f"{rank}@{socket.gethostname()}/{os.environ['LOCAL_RANK']}/{os.environ['NODE_RANK']}"
address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
if rank == 0:
    server = socket.create_server(("", address[1]))
    heard = []
    for _ in range(size - 1):
        peer, _ = server.accept()
        heard.append(peer.makefile().read().strip())
    print(f"rank0 {me} seed={os.environ.get('SEED')} heard", " ".join(sorted(heard)), flush=True)
else:
    for attempt in range(100):
        try:
            with socket.create_connection(address, timeout=5) as peer:
                peer.sendall(me.encode())
            break
        except OSError:
            time.sleep(0.1)
"""


def test_srun_launcher_ranks_meet_at_master_addr_and_port(project: Project) -> None:
    """`launcher: srun` on 2 nodes x 2 tasks: four processes, ranks 0-3, two per node; each seed meets again."""
    (project.folder / "configs.yaml").write_text(CONFIGS + "pairs: {nodes: 2, tasks_per_node: 2, time: 5}\n")
    cmd = f"python3 - <<'EOF'\n{RENDEZVOUS}\nEOF"
    proc = project.run([slurm("ranks", cmd=cmd, config="pairs", launcher="srun", seeds=[1, 2])])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait(timeout=90).values()
    assert row.state.state == "COMPLETED", (row, Path(row.record.log_err).read_text())
    out = Path(row.record.log_out).read_text()  # after `CMD <the command>`, on several lines here
    said = [line.split() for line in out.splitlines() if line.startswith("rank0 ")]
    assert [words[2] for words in said] == ["seed=1", "seed=2"]
    for words in said:
        head = words[1].split("@")[1].split("/")[0]
        peers = words[4:]
        assert sorted(p.split("@")[0] for p in peers) == ["1", "2", "3"]
        on_head = [p for p in peers if p.split("@")[1].startswith(head + "/")]
        assert len(on_head) == 1 and on_head[0].endswith("/1/0"), peers  # rank 1: local rank 1 on node 0
        assert all(p.endswith("/1") for p in peers if p not in on_head), peers  # the other node: NODE_RANK 1


ALL_REDUCE = r"""
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
total = torch.tensor([float(rank)])
dist.all_reduce(total)
print(f"rank {rank} of {dist.get_world_size()} local {os.environ['LOCAL_RANK']} on {os.uname().nodename} sum {int(total.item())}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_launcher_runs_a_real_all_reduce_over_two_nodes(
    multinode: tbm.Testbed, project: Project
) -> None:
    """`launcher: torchrun`, 2 nodes x 2 processes: one torchrun per node, c10d rendezvous on the
    first; torch.distributed's gloo all-reduce of the ranks gives 0+1+2+3 everywhere."""
    from tests.support import mlenv

    activated(multinode, project, mlenv.venv(mlenv.TORCH))
    (project.folder / "configs.yaml").write_text(
        CONFIGS + "ddp: {nodes: 2, tasks_per_node: 2, time: 5, mem: 1500M}\n"
    )
    cmd = f"python - <<'EOF'\n{ALL_REDUCE}\nEOF"
    proc = project.run([slurm("ddp", cmd=cmd, config="ddp", launcher="torchrun")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait(timeout=180).values()
    out = Path(row.record.log_out).read_text()
    assert row.state.state == "COMPLETED", (row, out, Path(row.record.log_err).read_text()[-3000:])
    said = sorted(line.split() for line in out.splitlines() if re.match(r"rank \d+ of ", line))
    assert [words[1] for words in said] == ["0", "1", "2", "3"], out
    assert {words[3] for words in said} == {"4"} and {words[-1] for words in said} == {"6"}, out
    assert sorted(words[5] for words in said) == ["0", "0", "1", "1"], out
    nodes = {words[7] for words in said}
    assert len(nodes) == 2, out


# The driver of a `ray: true` job: the nodes of its cluster, and a task pinned to each node.
RAY_DRIVER = r"""
import os, socket, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
nodes = [n for n in ray.nodes() if n["Alive"]]
@ray.remote(num_cpus=0)
def where():
    return socket.gethostname()
names = ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote() for n in nodes])
print("ray", os.environ["RAY_ADDRESS"], os.environ.get("SEED"), len(nodes), " ".join(sorted(names)), flush=True)
@@AFTER@@
"""


def activated(multinode: tbm.Testbed, project: Project, env: Path, **settings: Any) -> None:
    """The project's login node with `env` activated by its init (and `settings`)."""
    alias = multinode.slurm_alias or "cluster"
    hosts = {**bed_hosts(multinode)[alias], "save_path": str(project.logs), **settings}
    write_hosts(project.folder, {"cluster": {**hosts, "init": [f"source {env}/bin/activate"]}})


def ray_project(multinode: tbm.Testbed, project: Project, nodes: int = 3, **settings: Any) -> None:
    """The login node with Ray's venv, and a config `ray3` of `nodes` nodes."""
    from tests.support import mlenv

    activated(multinode, project, mlenv.venv(mlenv.RAY), **settings)
    config = f"ray3: {{nodes: {nodes}, cpus_per_task: 1, time: 5, mem: 1500M}}\n"
    (project.folder / "configs.yaml").write_text(CONFIGS + config)


def ray_lines(row: Row) -> list[list[str]]:
    out = Path(row.record.log_out).read_text()
    return [line.split() for line in out.splitlines() if line.startswith("ray ")]


def ray_processes(job_id: str) -> str:
    """The Ray processes of a job on any node (the nodes share this machine's process table): their
    command lines name the job's temp dir."""
    found = subprocess.run(["pgrep", "-af", f"compute-ray-{job_id}/"], capture_output=True, text=True)
    return "\n".join(line for line in found.stdout.splitlines() if "pgrep" not in line)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_ray_job_is_one_cluster_of_its_three_nodes_and_stops_with_the_job(
    multinode: tbm.Testbed, project: Project
) -> None:
    """`ray: true` on 3 nodes: the driver sees 3 nodes and runs a task on each; each seed runs in
    turn on the same cluster; when the job ends, no Ray process of it is left on any node."""
    ray_project(multinode, project)
    cmd = f"python - <<'EOF'\n{RAY_DRIVER.replace('@@AFTER@@', '')}\nEOF"
    proc = project.run([slurm("ray", cmd=cmd, config="ray3", ray=True, seeds=[0, 1])])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait(timeout=240).values()
    err = Path(row.record.log_err).read_text()
    assert row.state.state == "COMPLETED", (row, Path(row.record.log_out).read_text(), err[-3000:])
    said = ray_lines(row)
    assert [words[2] for words in said] == ["0", "1"], said
    assert all(words[3] == "3" and words[4:] == ["node1", "node2", "node3"] for words in said), said
    assert said[0][1] == said[1][1]  # the same cluster for both seeds
    assert "compute: Ray stopped" in err
    assert ray_processes(row.record.job_id) == ""


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_ray_jobs_on_the_same_nodes_stay_apart_and_cancel_leaves_no_ray(
    multinode: tbm.Testbed, project: Project
) -> None:
    """Two 3-node Ray jobs at once, on the same nodes: each cluster holds its own 3 nodes, at its own
    port. Cancelled while their drivers wait, neither leaves a Ray process on any node."""
    ray_project(multinode, project)
    hold = "import time; print('waiting', flush=True); time.sleep(600)"
    project.logs.mkdir(parents=True, exist_ok=True)
    shutil.chown(project.logs, multinode.user, multinode.user)
    driver = project.logs / "driver.py"  # the jobs append their args: `python driver.py --a`
    driver.write_text(RAY_DRIVER.replace("@@AFTER@@", hold))
    cmd = f"python {driver}"
    proc = project.run([slurm("pair", cmd=cmd, config="ray3", ray=True, args=["--a", "--b"], array=False)])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def outputs() -> list[tuple[Row, str]]:
        rows = project.wait(timeout=60, until=("RUNNING", "COMPLETED", "FAILED", "CANCELLED")).values()
        out = [Path(row.record.log_out) for row in rows]
        return [(row, path.read_text() if path.exists() else "") for row, path in zip(rows, out, strict=True)]

    def waiting(seen: list[tuple[Row, str]]) -> bool:
        return len(seen) == 2 and all("waiting" in text for _, text in seen)

    rows = [
        row for row, _ in poll_until(outputs, waiting, 240, "both Ray jobs waiting in their cluster", 1.0)
    ]
    said = [ray_lines(row)[0] for row in rows]
    assert all(words[3] == "3" and words[4:] == ["node1", "node2", "node3"] for words in said), said
    assert said[0][1] != said[1][1], said  # two clusters, two addresses
    assert compute("cancel", "--task", "pair", cwd=project.folder).returncode == 0
    for row in rows:
        job = row.record.job_id
        poll_until(
            lambda job=job: ray_processes(job), lambda left: left == "", 60, "no Ray process left", 0.5
        )
    ended = project.wait(timeout=60)
    assert {r.state.state for r in ended.values()} == {"CANCELLED"}


HETJOB_CONFIGS = (
    "gpu1: {nodes: 1, gpu: 1, partition: gpu, time: 5}\npair: {nodes: 2, cpus_per_task: 1, time: 5}\n"
)


def test_a_heterogeneous_job_sees_the_nodes_of_each_component(project: Project) -> None:
    """`components: [gpu1, pair]`: one hetjob of a GPU node and two CPU nodes; the command, on the
    first component's node, reaches each component with `srun --het-group`; compute jobs follows it
    as one job (squeue and sacct list `ID+0`, `ID+1`)."""
    (project.folder / "configs.yaml").write_text(CONFIGS + HETJOB_CONFIGS)
    probe = (
        'echo "groups $SLURM_HET_SIZE $(hostname)"; '
        "srun --het-group=0 bash -c 'echo \"gpu $(hostname) $CUDA_VISIBLE_DEVICES\"'; "
        "srun --het-group=1 bash -c 'echo \"cpu $(hostname)\"' | sort"
    )
    proc = project.run([slurm("het", cmd=probe, components=["gpu1", "pair"])])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait(timeout=120).values()
    out = job_output(Path(row.record.log_out).read_text())
    assert row.state.state == "COMPLETED", (row, out, Path(row.record.log_err).read_text())
    assert row.record.config == "gpu1+pair" and "+" not in row.record.job_id
    lines = out.splitlines()
    assert lines[0] == "groups 2 node3" and lines[1] == "gpu node3 0", out
    assert sorted(lines[2:]) == ["cpu node1", "cpu node2"], out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_ray_cluster_spans_every_component_of_a_heterogeneous_job(
    multinode: tbm.Testbed, project: Project
) -> None:
    ray_project(multinode, project)
    with (project.folder / "configs.yaml").open("a") as configs:  # Ray needs more than 256 MB per CPU
        configs.write(HETJOB_CONFIGS.replace("time: 5}", "time: 5, mem: 1500M}"))
    cmd = f"python - <<'EOF'\n{RAY_DRIVER.replace('@@AFTER@@', '')}\nEOF"
    proc = project.run([slurm("rayhet", cmd=cmd, components=["gpu1", "pair"], ray=True)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait(timeout=240).values()
    out = Path(row.record.log_out).read_text()
    assert row.state.state == "COMPLETED", (row, out, Path(row.record.log_err).read_text()[-3000:])
    (said,) = ray_lines(row)
    assert said[3] == "3" and said[4:] == ["node1", "node2", "node3"], said
    assert ray_processes(row.record.job_id) == ""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_originals_heterogeneous_ray_job_runs_on_a_gpu_node_and_cpu_nodes(
    multinode: tbm.Testbed, project: Project
) -> None:
    """The original's form, as its playbooks wrote it: `srun:` with `ray: true, heterogeneous: true`
    and a config of `cpus` and `gpu` (two whole 4-CPU nodes, and a GPU node)."""
    ray_project(multinode, project, cpus_per_node=4, gpu=True)
    with (project.folder / "configs.yaml").open("a") as configs:
        configs.write("hetero: {cpus: 8, gpu: 1, time: 5, mem: 1500M}\n")
    driver = RAY_DRIVER.replace(
        "@@AFTER@@", 'print("gpus", ray.cluster_resources().get("GPU", 0), flush=True)'
    )
    write_book(
        project.folder,
        [
            {
                "name": "hetero",
                "hosts": "cluster",
                "srun": {
                    "cmd": f"python - <<'EOF'\n{driver}\nEOF",
                    "config": "hetero",
                    "ray": True,
                    "heterogeneous": True,
                    "seeds": 0,
                },
            }
        ],
    )
    proc = compute("run", "book.yaml", cwd=project.folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = project.wait(timeout=240).values()
    out = Path(row.record.log_out).read_text()
    assert row.state.state == "COMPLETED", (row, out, Path(row.record.log_err).read_text()[-3000:])
    (said,) = ray_lines(row)
    assert said[3] == "3" and said[4:] == ["node1", "node2", "node3"], said
    assert "gpus 1.0" in out, out


def test_check_remote_finds_ray_through_the_hosts_init_or_says_it_is_missing(
    multinode: tbm.Testbed, project: Project
) -> None:
    write_book(project.folder, [slurm("ray", cmd="true", config="default", ray=True)])
    proc = compute("check", "--remote", "book.yaml", cwd=project.folder, timeout=60)
    assert proc.returncode == 1 and "ray: command not found" in proc.stdout, proc.stdout
    ray_project(multinode, project)
    proc = compute("check", "--remote", "book.yaml", cwd=project.folder, timeout=60)
    assert proc.returncode == 0 and "ray, version 2.60.0" in proc.stdout, proc.stdout


def test_check_remote_asks_the_cluster_about_a_layout_it_cannot_hold(project: Project) -> None:
    (project.folder / "configs.yaml").write_text(CONFIGS + "wide: {nodes: 5, time: 5}\n")
    write_book(project.folder, [slurm("wide", cmd="true", config="wide")])
    proc = compute("check", "--remote", "book.yaml", cwd=project.folder, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "node" in proc.stdout.lower() and "FAILED" in proc.stdout, proc.stdout
    assert not (project.folder / "archive" / "job.csv").exists()  # nothing submitted


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


# --------------------------------------------------------------------------- cgroups: OUT_OF_MEMORY


def _writable_cgroup_v1() -> bool:
    root = mn.CGROUP_ROOT
    return all((root / c / "tasks").exists() and os.access(root / c, os.W_OK) for c in mn.CGROUP_CONTROLLERS)


@pytest.fixture(scope="module")
def cgroup_bed(_isolated_ssh: None) -> Iterator[tbm.Testbed]:
    """One node with proctrack/cgroup + task/cgroup (what gives real OUT_OF_MEMORY states), no
    accounting: the controller's memory (MinJobAge) and the job's status file are what answer."""
    if not _writable_cgroup_v1():
        pytest.skip("needs writable cgroup v1 controllers (task/cgroup)")
    state = Path(f"/tmp/compute-multinode-cgroup-{uuid.uuid4().hex[:6]}")
    bed = tbm.up(state, hosts=0, nodes=1, accounting=False, cgroup=True)
    try:
        yield bed
    finally:
        tbm.down(state)
        shutil.rmtree(state, ignore_errors=True)


def test_a_job_over_its_memory_ends_failed_out_of_memory(cgroup_bed: tbm.Testbed, tmp_path: Path) -> None:
    project = Project(cgroup_bed, tmp_path)
    try:
        hog = "python3 -c 'a = b\"x\" * (600 << 20); print(len(a))'"
        proc = project.run([slurm("hog", cmd=hog, config="small")])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (row,) = project.wait(timeout=60).values()
        assert (row.state.state, row.state.reason) == ("FAILED", "OUT_OF_MEMORY"), row.state
        assert row.state.exit_code == 137  # the command was killed (SIGKILL) by the OOM killer
        queue = login(cgroup_bed, f"squeue -h -t all -j {row.record.job_id} -o %T")
        assert queue.split() == ["OUT_OF_MEMORY"]
    finally:
        shutil.rmtree(project.logs, ignore_errors=True)


@pytest.mark.slow
def test_results_say_what_accounting_says_a_job_used(project: Project) -> None:
    hog = "python3 -c 'import time; x = bytearray(40 * 2**20); time.sleep(3)'; echo '{\"loss\": 1}' >> \"$COMPUTE_METRICS\""
    proc = project.run([slurm("use", cmd=hog, config="small")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project.wait(timeout=60)

    def usage() -> Any:
        out = compute("results", "--json", cwd=project.folder, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)["points"][0]["usage"]

    found = poll_until(usage, lambda u: u is not None, 90, "sacct's record of the job", interval=1)
    assert found["req_mem_mb"] == 100.0 and found["elapsed"] >= 3
    assert 30 < found["max_rss_mb"] < 100  # the 40 MiB it held, with Python
    shown = compute("results", cwd=project.folder).stdout
    assert "MEMORY (used/asked)" in shown and "/100M" in shown
    job = json.loads(compute("jobs", "--json", cwd=project.folder).stdout)["jobs"][0]["job_id"]
    detail = compute("jobs", job, cwd=project.folder)
    assert detail.returncode == 0, detail.stdout + detail.stderr
    used = next(line for line in detail.stdout.splitlines() if line.startswith("used"))
    assert re.search(r"asked 100M, used \d+M \(\d+%\); \d+m\d\ds elapsed; CPU (\d+%|-) of \d+", used), used
    assert "loss: 1" in detail.stdout and "COMPLETED" in detail.stdout
