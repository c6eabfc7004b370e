"""The test bed itself: sshd hosts, the Slurm cluster, extra hosts, tear-down."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import paramiko
import pytest

from tests.support import testbed as tbm
from tests.support.projects import ssh
from tests.support.waiting import poll_until


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_job(env: dict[str, str], job_id: str, timeout: float = 30) -> str:
    """Poll squeue until the job is in a final state; returns it."""

    def state() -> str:
        proc = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True, env=env
        )
        return proc.stdout.strip()

    final = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
    return poll_until(state, lambda now: now in final, timeout, f"job {job_id} to end", interval=0.2)


def test_ssh_config_echo(testbed: tbm.Testbed) -> None:
    before = tbm.sshd_log(testbed, "h1").count("Accepted publickey for ctest")
    assert ssh(testbed, "h1", "echo ok; whoami") == f"ok\n{testbed.user}\n"
    log = tbm.sshd_log(testbed, "h1")
    assert log.count("Accepted publickey for ctest") == before + 1


def test_layout(testbed: tbm.Testbed) -> None:
    assert set(testbed.hosts) >= {"h1", "h2", "h3", "h4", "cluster"}
    assert testbed.slurm_alias == "cluster"
    assert len(set(testbed.hosts.values())) == len(testbed.hosts)
    known = Path(testbed.known_hosts).read_text()
    for port in testbed.hosts.values():
        assert f"[127.0.0.1]:{port} ssh-ed25519 " in known
    assert os.environ["COMPUTE_KNOWN_HOSTS"] == str(testbed.known_hosts)
    assert not Path(os.environ["COMPUTE_SSH_CONFIG"]).exists()
    assert tbm.Testbed.load(testbed.state).hosts["h1"] == testbed.hosts["h1"]
    assert tbm.is_up(testbed.state)
    assert Path(testbed.jobs_dir).stat().st_mode & 0o7777 == 0o1777


def test_hosts_yaml_is_valid_for_the_tool(tb_hosts_yaml: Path, testbed: tbm.Testbed) -> None:
    from compute_platform.input.inventory import load_hosts

    hosts, _ = load_hosts(tb_hosts_yaml)
    assert hosts["h1"].port == testbed.hosts["h1"]
    assert hosts["h1"].user == "ctest"
    assert hosts["h1"].known_hosts == str(testbed.known_hosts)
    cluster = hosts["cluster"]
    assert cluster.platform == "slurm"
    assert cluster.cpus_per_node == 32
    assert cluster.gpu_count == 2


def test_paramiko_every_host(testbed: tbm.Testbed) -> None:
    # the bed's own hosts: extras started (and stopped) by other tests are not part of the promise
    for name in testbed.base_hosts or testbed.hosts:
        port = testbed.hosts[name]
        client = paramiko.SSHClient()
        client.load_host_keys(str(testbed.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=port,
            username=testbed.user,
            key_filename=str(testbed.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        try:
            _, out, _ = client.exec_command("echo $SLURM_CONF")
            assert out.read().decode().strip() == str(testbed.slurm_conf), name
            assert out.channel.recv_exit_status() == 0
        finally:
            client.close()


def test_sbatch_over_ssh_completes(testbed: tbm.Testbed, slurm_env: dict[str, str]) -> None:
    jobs = str(testbed.jobs_dir)
    job_id = ssh(testbed, "cluster", f"cd {jobs} && sbatch --parsable --wrap true").strip()
    gpu_id = ssh(
        testbed,
        "cluster",
        f"cd {jobs} && sbatch --parsable -p gpu --gres=gpu:1 -o gpu-%j.out "
        "--wrap 'echo gpu=$CUDA_VISIBLE_DEVICES'",
    ).strip()
    assert job_id.isdigit() and gpu_id.isdigit()
    assert wait_job(slurm_env, job_id) == "COMPLETED"
    assert wait_job(slurm_env, gpu_id) == "COMPLETED"
    out = Path(jobs, f"gpu-{gpu_id}.out").read_text()
    assert out.strip() in ("gpu=0", "gpu=1")
    user = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%u"],
        capture_output=True,
        text=True,
        env=slurm_env,
    ).stdout.strip()
    assert user == testbed.user


def test_start_stop_sshd(testbed: tbm.Testbed) -> None:
    port = tbm.start_sshd(testbed, "extra1")
    try:
        assert testbed.hosts["extra1"] == port
        assert "Host extra1" in Path(testbed.ssh_config).read_text()
        assert ssh(testbed, "extra1", "echo up") == "up\n"
        assert "Accepted publickey for ctest" in tbm.sshd_log(testbed, "extra1")
        tbm.stop_sshd(testbed, "extra1")
        assert not port_open(port)
        # restart: same name -> same port
        assert tbm.start_sshd(testbed, "extra1") == port
        assert ssh(testbed, "extra1", "echo again") == "again\n"
    finally:
        tbm.stop_sshd(testbed, "extra1")
    assert not port_open(port)


def test_stop_sshd_drops_open_sessions(testbed: tbm.Testbed) -> None:
    tbm.start_sshd(testbed, "extra2")
    proc = subprocess.Popen(
        ["ssh", "-F", str(testbed.ssh_config), "extra2", "echo started; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        tbm.stop_sshd(testbed, "extra2")
        assert proc.wait(timeout=10) == 255
    finally:
        proc.kill()
        proc.wait()


def test_no_tmux_host(testbed: tbm.Testbed) -> None:
    tbm.start_sshd(testbed, "notmux", no_tmux=True)
    try:
        out = ssh(testbed, "notmux", "command -v tmux || echo none; command -v git python3 sbatch")
        lines = out.split()
        assert lines[0] == "none"
        assert len(lines) == 4  # git, python3, sbatch still found
        login = ssh(testbed, "notmux", "bash -lc 'command -v tmux || echo none'")
        assert login.strip() == "none"
        assert ssh(testbed, "notmux", "echo $SLURM_CONF").strip() == str(testbed.slurm_conf)
        assert ssh(testbed, "h1", "command -v tmux").strip().endswith("/tmux")
    finally:
        tbm.stop_sshd(testbed, "notmux")


def test_second_bed_and_down_leave_nothing() -> None:
    """A second bed runs beside the session's one; down() stops every process and port."""
    state = Path(f"/tmp/compute-testbed-{os.getpid()}-second")
    bed = tbm.up(state, hosts=1, slurm=True)
    try:
        pidfiles = [
            bed.state / "ssh" / "h1.pid",
            bed.state / "ssh" / "cluster.pid",
            bed.state / "munge" / "run" / "munged.pid",
            bed.state / "slurm" / "run" / "slurmctld.pid",
            bed.state / "slurm" / "run" / "slurmd.pid",
        ]
        pids = [int(p.read_text()) for p in pidfiles]
        ports = [*bed.hosts.values(), *bed.slurm_ports.values()]
        assert all(port_open(p) for p in ports)
        assert ssh(bed, "h1", "echo two") == "two\n"
        ssh(bed, "h1", "tmux new-session -d -s bedtest 'sleep 600'")
        sockets = list(Path(bed.state, "tmux").glob("tmux-*/default"))
        assert len(sockets) == 1  # TMUX_TMPDIR is private to the bed
        tmux_pid = int(ssh(bed, "h1", "tmux display-message -p '#{pid}'"))
        pids.append(tmux_pid)
        env = {**os.environ, **tbm.slurm_env(bed)}
        job = subprocess.run(
            ["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 60"],
            capture_output=True,
            text=True,
            env=env,
            cwd=bed.jobs_dir,
            check=True,
        ).stdout.strip()
        assert job.isdigit()
    finally:
        tbm.down(state)
    try:
        for pid in pids:
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        assert not any(port_open(p) for p in ports)
        tbm.down(state)  # idempotent
        assert not tbm.is_up(state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("name", ["h2", "h3", "h4"])
def test_other_hosts_distinct_logs(testbed: tbm.Testbed, name: str) -> None:
    before = tbm.sshd_log(testbed, name).count("Accepted publickey")
    h1_before = tbm.sshd_log(testbed, "h1").count("Accepted publickey")
    assert ssh(testbed, name, "echo ok") == "ok\n"
    assert tbm.sshd_log(testbed, name).count("Accepted publickey") == before + 1
    assert tbm.sshd_log(testbed, "h1").count("Accepted publickey") == h1_before


def test_the_command_line_in_scripts_runs_this_module(testbed: tbm.Testbed) -> None:
    """`scripts/testbed status|env` (the commands a developer types) run this module."""
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    status = subprocess.run(
        ["bash", str(scripts / "testbed"), "status", "--state", str(testbed.state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "sshd h1" in status.stdout and "slurmctld" in status.stdout
    env = subprocess.run(
        ["bash", str(scripts / "testbed"), "env", "--state", str(testbed.state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"export COMPUTE_TESTBED={shlex.quote(str(testbed.state))}" in env.stdout.splitlines()
