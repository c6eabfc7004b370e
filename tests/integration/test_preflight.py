"""`compute check --remote` against the test bed: the real sshd instances, the real single-node Slurm
(`sbatch --test-only`), tmux, git and a real Python with pip on the hosts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.envtools import as_user, user_workspace
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import book_text, free_port, host_entry, write_hosts, write_project

CONFIGS = """\
default: {cpus: 1, time: '00:05:00'}
gpu: {cpus: 1, gpu: 1, partition: gpu, time: '00:05:00'}
nopart: {cpus: 1, partition: no-such-partition}
threegpus: {gpu: 3, partition: gpu}
"""


@pytest.fixture(scope="module")
def venv(testbed: tbm.Testbed) -> Iterator[Path]:
    """A virtual environment of the test user with pip (the system's, through its site-packages:
    no download, 0.1 s) - Debian's own python3 is externally managed."""
    with user_workspace(testbed, "preflight") as work:
        as_user(testbed.user, f"python3 -m venv --without-pip --system-site-packages {work}/venv")
        yield work / "venv"


def project(folder: Path, testbed: tbm.Testbed, tasks: list[dict[str, Any]], **hosts: dict[str, Any]) -> Path:
    cluster = {**host_entry(testbed, testbed.slurm_alias), "platform": "slurm", "gpu": 2}
    return write_project(
        folder, testbed, book_text(tasks), extra_hosts={"cluster": cluster, **hosts}, configs=CONFIGS
    )


REPORT_LINE = re.compile(r"^(\S+)\s+(.+?)\s+(ok|FAILED)(?:\s+(.*))?$")


def lines_of(proc: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(host, check) -> (ok|FAILED, detail) from the report (between the OK line and the verdict)."""
    found = {}
    for line in proc.stdout.splitlines()[1:-1]:
        match = REPORT_LINE.match(line)
        assert match, line
        host, name, status, detail = match.groups()
        found[(host, name)] = (status, detail or "")
    return found


def queue(testbed: tbm.Testbed) -> str:
    env = {**os.environ, **tbm.slurm_env(testbed)}
    return subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, timeout=10, env=env
    ).stdout


def test_a_good_playbook_passes_every_check_and_submits_nothing(
    testbed: tbm.Testbed, tmp_path: Path, venv: Path
) -> None:
    tasks = [
        {"name": "train", "hosts": "cluster", "slurm": {"cmd": "echo", "sweep": {"lr": [1, 2, 3, 4, 5, 6]}}},
        {"name": "gpu", "hosts": "cluster", "slurm": {"cmd": "echo", "config": "gpu", "array": False}},
        {"name": "side", "hosts": "h1", "tmux": {"cmd": "echo", "args": ["a", "b"]}},
        {"name": "deps", "hosts": "h1", "pip": ["ctiny"]},
        {"name": "code", "hosts": "h2", "git": {"path": "~"}},
    ]
    project(tmp_path, testbed, tasks, h1=host_entry(testbed, "h1", python=f"{venv}/bin/python"))
    before = queue(testbed)
    start = time.monotonic()
    proc = compute("check", "--remote", "book.yaml", cwd=tmp_path, timeout=60)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = lines_of(proc)
    assert {status for status, _ in found.values()} == {"ok"}, proc.stdout
    assert set(found) == {
        ("cluster", "connect"),
        ("cluster", "login shell"),
        ("cluster", "key"),
        ("cluster", "save_path ~/compute/logs writable"),
        ("cluster", "sbatch"),
        ("cluster", "task 'train': sbatch --test-only"),
        ("cluster", "task 'gpu': sbatch --test-only"),
        ("h1", "connect"),
        ("h1", "login shell"),
        ("h1", "key"),
        ("h1", "save_path ~/compute/logs writable"),
        ("h1", "tmux"),
        ("h1", f"{venv}/bin/python with pip"),
        ("h2", "connect"),
        ("h2", "login shell"),
        ("h2", "key"),
        ("h2", "git"),
    }
    assert found[("h1", "login shell")][1] == "/bin/bash: runs compute's scripts"
    assert found[("h1", "key")][1].startswith(f"{testbed.client_key} (ssh-ed25519 SHA256:")
    assert " to start at " in found[("cluster", "task 'train': sbatch --test-only")][1]
    assert "in partition gpu" in found[("cluster", "task 'gpu': sbatch --test-only")][1]
    assert found[("cluster", "save_path ~/compute/logs writable")][1] == f"{testbed.home}/compute/logs"
    assert found[("h1", "tmux")][1].startswith("tmux ")
    assert found[("h1", f"{venv}/bin/python with pip")][1].startswith(f"{venv}/bin/python 3.")
    assert proc.stdout.splitlines()[-1] == "remote checks: all 17 ok"
    assert queue(testbed) == before and not (tmp_path / "archive").exists()  # nothing submitted
    assert seconds < 15


def test_a_partition_the_cluster_does_not_have_fails_with_sbatchs_words(
    testbed: tbm.Testbed, tmp_path: Path
) -> None:
    tasks = [
        {"name": "good", "hosts": "cluster", "slurm": {"cmd": "echo"}},
        {"name": "bad", "hosts": "cluster", "slurm": {"cmd": "echo", "config": "nopart"}},
    ]
    project(tmp_path, testbed, tasks)
    proc = compute("check", "--remote", "book.yaml", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = lines_of(proc)
    assert found[("cluster", "task 'good': sbatch --test-only")][0] == "ok"
    status, detail = found[("cluster", "task 'bad': sbatch --test-only")]
    assert status == "FAILED"
    assert "sbatch: error: invalid partition specified: no-such-partition" in detail
    assert proc.stdout.splitlines()[-1] == "remote checks: 1 of 7 FAILED"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_more_gpus_than_a_node_has_are_refused_by_the_cluster(testbed: tbm.Testbed, tmp_path: Path) -> None:
    tasks = [{"name": "big", "hosts": "cluster", "slurm": {"cmd": "echo", "config": "threegpus"}}]
    book = project(tmp_path, testbed, tasks)
    hosts = yaml.safe_load((tmp_path / "hosts.yaml").read_text())
    hosts["cluster"]["gpu"] = True  # the hosts file does not say how many: only the cluster knows
    write_hosts(tmp_path, hosts)
    proc = compute("check", "--remote", book.name, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status, detail = lines_of(proc)[("cluster", "task 'big': sbatch --test-only")]
    assert status == "FAILED" and "Requested node configuration is not available" in detail


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A folder owned by root, mode 0755: the test user can read it but not write in it."""
    path = Path(f"/tmp/compute-rootonly-{uuid.uuid4().hex[:8]}")
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unwritable_save_path_fails_with_the_reason(
    testbed: tbm.Testbed, tmp_path: Path, root_dir: Path
) -> None:
    tasks = [
        {"name": "a", "hosts": ["h3", "h4"], "tmux": {"cmd": "echo"}},
        {"name": "b", "hosts": "cluster", "slurm": {"cmd": "echo"}},
    ]
    project(
        tmp_path,
        testbed,
        tasks,
        h3=host_entry(testbed, "h3", save_path="/proc/compute-logs"),
        h4=host_entry(testbed, "h4", save_path=str(root_dir)),
        cluster={**host_entry(testbed, "cluster"), "platform": "slurm", "save_path": f"{root_dir}/logs"},
    )
    proc = compute("check", "--remote", "book.yaml", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = lines_of(proc)
    status, detail = found[("h3", "save_path /proc/compute-logs writable")]
    assert status == "FAILED" and "mkdir: cannot create directory '/proc/compute-logs'" in detail
    assert "set `save_path` for h3 in hosts.yaml" in detail
    status, detail = found[("h4", f"save_path {root_dir} writable")]
    assert status == "FAILED" and "Permission denied" in detail and "touch" in detail
    status, detail = found[("cluster", f"save_path {root_dir}/logs writable")]
    assert status == "FAILED" and "Permission denied" in detail
    assert found[("cluster", "task 'b': sbatch --test-only")][0] == "ok"  # the other checks still ran
    assert list(root_dir.iterdir()) == []


def test_missing_tmux_system_python_and_an_unreachable_host_are_reported(
    testbed: tbm.Testbed, tmp_path: Path
) -> None:
    alias = f"notmux{uuid.uuid4().hex[:4]}"
    port = tbm.start_sshd(testbed, alias, no_tmux=True)
    try:
        tasks = [
            {"name": "t", "hosts": [alias, "gone"], "tmux": {"cmd": "echo"}},
            {"name": "p", "hosts": "h1", "pip": ["ctiny"]},
            {"name": "g", "hosts": "h2", "pip": {"packages": ["x"], "action": "uninstall"}, "timeout": 5},
        ]
        gone = {**host_entry(testbed, "h1"), "port": free_port(), "connect_timeout": 3}
        project(
            tmp_path, testbed, tasks, **{alias: {**host_entry(testbed, "h1"), "port": port}, "gone": gone}
        )
        start = time.monotonic()
        proc = compute("check", "--remote", "book.yaml", cwd=tmp_path, timeout=60)
        seconds = time.monotonic() - start
    finally:
        tbm.remove_sshd(testbed, alias)  # later tests that walk every host of the bed must not meet it
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = lines_of(proc)
    status, detail = found[(alias, "tmux")]
    assert status == "FAILED" and "tmux: command not found" in detail and "install tmux" in detail
    status, detail = found[("h1", "python3 with pip")]
    assert status == "FAILED" and "externally managed (PEP 668)" in detail
    assert found[("h2", "python3 with pip")][0] == "ok"  # uninstalling: the system's Python will do
    status, detail = found[("gone", "connect")]
    assert status == "FAILED" and "refused" in detail
    assert [name for host, name in found if host == "gone"] == ["connect"]  # nothing else is tried
    assert seconds < 15


def test_the_login_shell_and_noisy_start_up_files_are_reported(testbed: tbm.Testbed, tmp_path: Path) -> None:
    users = {alias: tbm.login_user(testbed, user) for alias, user in (("h1", "cfish"), ("h2", "cnoisy"))}
    tasks = [{"name": "hello", "hosts": ["h1", "h2"], "cmd": "true"}]
    entries = {alias: {**host_entry(testbed, alias), "user": user} for alias, user in users.items()}
    project(tmp_path, testbed, tasks, **entries)
    proc = compute("check", "--remote", "book.yaml", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = lines_of(proc)
    assert found[("h1", "login shell")] == ("ok", "/usr/bin/fish: starts bash for compute's scripts")
    assert found[("h2", "login shell")][1] == (
        "/bin/bash (start-up files print text: compute ignores it): runs compute's scripts"
    )


def test_a_tmux_too_old_for_the_launcher_fails_the_check(testbed: tbm.Testbed, tmp_path: Path) -> None:
    alias = f"oldtmux{uuid.uuid4().hex[:4]}"
    fake = testbed.state / alias  # the test user reads the bed's folder, not pytest's
    fake.mkdir(mode=0o755)
    (fake / "tmux").write_text("#!/bin/sh\necho 'tmux 1.8'\n")
    (fake / "tmux").chmod(0o755)
    path = f"{fake}:/usr/local/bin:/usr/bin:/bin"
    port = tbm.start_sshd(testbed, alias, extra_options={"SetEnv": f"PATH={path} TESTBED_PATH={path}"})
    try:
        tasks = [{"name": "t", "hosts": alias, "tmux": {"cmd": "echo"}}]
        project(tmp_path, testbed, tasks, **{alias: {**host_entry(testbed, "h1"), "port": port}})
        proc = compute("check", "--remote", "book.yaml", cwd=tmp_path, timeout=60)
    finally:
        tbm.remove_sshd(testbed, alias)
        shutil.rmtree(fake)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status, detail = lines_of(proc)[(alias, "tmux")]
    assert status == "FAILED" and "tmux 1.8 is too old: compute's tmux jobs need tmux 2.1" in detail
