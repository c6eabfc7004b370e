"""`connection: openssh`: the system ssh client through one ControlMaster per host, kept open between
runs. Against a real sshd of its own, so that its log counts every connection made to it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.hosts.openssh import OpenSSHHost
from compute_platform.input.spec import HostSpec
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import free_port, host_entry, write_hosts

ACCEPTED = "Accepted publickey for"


@pytest.fixture
def cluster(testbed: Any) -> Iterator[str]:
    """A fresh sshd (no shared connection to it exists yet); its master is closed afterwards."""
    name = f"osh{free_port()}"
    tbm.start_sshd(testbed, name)
    yield name
    OpenSSHHost(spec(testbed, name)).logout()
    tbm.stop_sshd(testbed, name)
    testbed.hosts.pop(name, None)
    tbm._write_client_files(testbed)
    testbed.save()


def spec(testbed: Any, name: str, **extra: Any) -> HostSpec:
    return HostSpec(alias=name, connection="openssh", **{**host_entry(testbed, name), **extra})


def project(folder: Path, testbed: Any, name: str, **extra: Any) -> None:
    entry = host_entry(testbed, name, connection="openssh", **extra)
    write_hosts(folder, {"cluster": entry})
    task = "{hosts: cluster, cmd: 'echo \"pid $$ on $SSH_CONNECTION\"'}"
    (folder / "book.yaml").write_text(f"inventory: {{hosts: hosts.yaml}}\ntasks:\n  - {task}\n")


def connections(testbed: Any, name: str) -> int:
    return tbm.sshd_log(testbed, name).count(ACCEPTED)


def test_two_runs_share_one_connection(testbed: Any, cluster: str, tmp_path: Path) -> None:
    project(tmp_path, testbed, cluster)
    first = compute("run", "book.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert connections(testbed, cluster) == 1
    # the master outlived the run
    assert OpenSSHHost(spec(testbed, cluster)).master_running()
    second = compute("run", "book.yaml", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert connections(testbed, cluster) == 1  # no new connection: the second run used the same master
    line = next(line for line in second.stdout.splitlines() if "cluster | pid" in line)
    assert line.split(" on ")[1] in first.stdout  # same client port: the same TCP connection


def test_login_opens_the_connection_that_runs_use_and_logout_closes_it(
    testbed: Any, cluster: str, tmp_path: Path
) -> None:
    project(tmp_path, testbed, cluster, control_persist="2h")
    login = compute("hosts", "--login", "cluster", cwd=tmp_path)
    assert login.returncode == 0, login.stderr
    assert "cluster: connection open; runs reuse it until 2h after its last use" in login.stdout
    assert "already open" in compute("hosts", "--login", "cluster", cwd=tmp_path).stdout
    assert compute("run", "book.yaml", cwd=tmp_path).returncode == 0
    assert connections(testbed, cluster) == 1
    assert (
        compute("hosts", "--logout", "cluster", cwd=tmp_path).stdout.strip() == "cluster: connection closed"
    )
    assert not OpenSSHHost(spec(testbed, cluster)).master_running()
    assert compute("run", "book.yaml", cwd=tmp_path).returncode == 0
    assert connections(testbed, cluster) == 2


def test_login_is_only_for_openssh_hosts(testbed: Any, tmp_path: Path) -> None:
    write_hosts(tmp_path, {"ws": host_entry(testbed, "h1")})
    proc = compute("hosts", "--login", "ws", cwd=tmp_path)
    assert proc.returncode == 2 and "does not say `connection: openssh`" in proc.stderr


def test_a_refused_login_says_to_use_hosts_login(testbed: Any, cluster: str, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    project(tmp_path, testbed, cluster, key=str(other))
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Permission denied" in proc.stdout and "compute hosts --login cluster" in proc.stdout


def test_host_keys_changed_and_strict(testbed: Any, cluster: str, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "fake")], check=True)
    fake = (tmp_path / "fake.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{testbed.hosts[cluster]} {fake[0]} {fake[1]}\n")
    project(tmp_path, testbed, cluster, known_hosts=str(known))
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "CHANGED" in proc.stdout and "ssh-keygen" in proc.stdout
    assert known.read_text().count("\n") == 1

    known.write_text("")
    project(tmp_path, testbed, cluster, known_hosts=str(known), host_key_checking="strict")
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "host_key_checking is strict" in proc.stdout
    assert known.read_text() == ""

    project(tmp_path, testbed, cluster, known_hosts=str(known))  # accept-new records it
    assert compute("run", "book.yaml", cwd=tmp_path).returncode == 0
    assert f"[127.0.0.1]:{testbed.hosts[cluster]} ssh-ed25519 " in known.read_text()


def test_the_control_directory_is_private(testbed: Any, cluster: str) -> None:
    host = OpenSSHHost(spec(testbed, cluster))
    assert host.run("true").ok
    folder = Path(os.environ["COMPUTE_CONTROL_DIR"])
    assert folder.stat().st_mode & 0o777 == 0o700
    assert any(p.is_socket() for p in folder.iterdir())
