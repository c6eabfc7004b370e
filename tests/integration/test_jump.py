"""Jump hosts (`proxy_jump`, ~/.ssh/config's ProxyJump) through real sshd instances.

Two extra sshd instances serve as jump hosts, with LogLevel DEBUG1 so that their logs show every
forwarded connection ("server_request_direct_tcpip: ... target 127.0.0.1 port P"): the tests read
there that the connection to the target really went through each hop, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import free_port, host_entry, write_hosts


@dataclass
class Jumps:
    testbed: Any
    names: tuple[str, str]
    target: str  # an sshd that only these tests use (no shared connection to it left by others)

    def port(self, name: str) -> int:
        return int(self.testbed.hosts[name])

    def mark(self) -> dict[str, int]:
        """Where each jump host's log ends now."""
        return {name: len(tbm.sshd_log(self.testbed, name)) for name in self.names}

    def forwarded(self, name: str, since: dict[str, int]) -> list[int]:
        """The ports jump host `name` opened a forwarded connection to since `since`."""
        log = tbm.sshd_log(self.testbed, name)[since[name] :]
        marker = "server_request_direct_tcpip: originator"
        return [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if marker in line]


@pytest.fixture(scope="module")
def jumps(testbed: Any) -> Iterator[Jumps]:
    names = (f"jumpa{free_port()}", f"jumpb{free_port()}")
    target = f"target{free_port()}"
    for name in names:
        tbm.start_sshd(testbed, name, extra_options={"LogLevel": "DEBUG1"})
    tbm.start_sshd(testbed, target)
    yield Jumps(testbed, names, target)
    for name in (*names, target):
        tbm.stop_sshd(testbed, name)
        testbed.hosts.pop(name, None)
        testbed.sshd_options.pop(name, None)
    tbm._write_client_files(testbed)
    testbed.save()


def project(folder: Path, hosts: dict[str, Any], targets: list[str]) -> None:
    write_hosts(folder, hosts)
    (folder / "book.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\n"
        f"tasks:\n  - {{name: where, hosts: [{', '.join(targets)}], cmd: 'echo \"on $SSH_CONNECTION\"'}}\n"
    )


def test_two_hop_chain_goes_through_each_jump_host_in_order(
    testbed: Any, jumps: Jumps, tmp_path: Path
) -> None:
    a, b = jumps.names
    hosts = {
        a: host_entry(testbed, a),
        b: host_entry(testbed, b),
        "behind": host_entry(testbed, "h1", proxy_jump=f"{a},{b}"),
    }
    project(tmp_path, hosts, ["behind"])
    since = jumps.mark()
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "behind | on 127.0.0.1 " in proc.stdout and f" 127.0.0.1 {testbed.hosts['h1']}" in proc.stdout
    # the first hop forwarded to the second, the second to the target
    assert jumps.forwarded(a, since) == [jumps.port(b)]
    assert jumps.forwarded(b, since) == [testbed.hosts["h1"]]


def test_a_jump_hosts_own_proxy_jump_is_followed(testbed: Any, jumps: Jumps, tmp_path: Path) -> None:
    a, b = jumps.names
    hosts = {
        a: host_entry(testbed, a),
        b: host_entry(testbed, b, proxy_jump=a),
        "behind": host_entry(testbed, "h2", proxy_jump=b),
        "also": host_entry(testbed, "h3", proxy_jump=b),
    }
    project(tmp_path, hosts, ["behind", "also"])
    since = jumps.mark()
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # one connection to each jump host for the whole run, shared by both targets
    assert jumps.forwarded(a, since) == [jumps.port(b)]
    assert sorted(jumps.forwarded(b, since)) == sorted([testbed.hosts["h2"], testbed.hosts["h3"]])


def test_ssh_config_proxyjump_chain_of_aliases_and_addresses(
    testbed: Any, jumps: Jumps, tmp_path: Path
) -> None:
    a, b = jumps.names
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host cfg-target\n  HostName 127.0.0.1\n  Port {testbed.hosts['h4']}\n  User {testbed.user}\n"
        f"  ProxyJump cfg-first,{testbed.user}@127.0.0.1:{jumps.port(b)}\n"
        f"Host cfg-first\n  HostName 127.0.0.1\n  Port {jumps.port(a)}\n  User {testbed.user}\n"
        f"Host *\n  IdentityFile {testbed.client_key}\n"
    )
    # cfg-target is not in hosts.yaml: ~/.ssh/config defines it
    project(tmp_path, {"localhost": {}}, ["cfg-target"])
    since = jumps.mark()
    proc = compute("run", "book.yaml", cwd=tmp_path, env={"COMPUTE_SSH_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert jumps.forwarded(a, since) == [jumps.port(b)]
    assert jumps.forwarded(b, since) == [testbed.hosts["h4"]]


def test_each_hop_is_checked_against_its_own_known_hosts_name(
    testbed: Any, jumps: Jumps, tmp_path: Path
) -> None:
    a, b = jumps.names
    key = testbed.known_hosts.read_text().splitlines()[0].split(" ", 1)[1]
    known = tmp_path / "known_hosts"
    strict = {"known_hosts": str(known), "host_key_checking": "strict"}
    hosts = {
        a: host_entry(testbed, a, **strict),
        b: host_entry(testbed, b, **strict),
        "behind": host_entry(testbed, "h1", proxy_jump=f"{a},{b}", **strict),
    }
    project(tmp_path, hosts, ["behind"])
    names = {alias: f"[127.0.0.1]:{port}" for alias, port in [(a, jumps.port(a)), (b, jumps.port(b))]}
    names["behind"] = f"[127.0.0.1]:{testbed.hosts['h1']}"
    for missing in (a, b, "behind"):
        known.write_text("".join(f"{name} {key}\n" for alias, name in names.items() if alias != missing))
        proc = compute("run", "book.yaml", cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout
        assert f"unknown host key for {names[missing]}" in proc.stdout
    known.write_text("".join(f"{name} {key}\n" for name in names.values()))
    assert compute("run", "book.yaml", cwd=tmp_path).returncode == 0


def test_a_jump_host_that_is_down_is_named(testbed: Any, jumps: Jumps, tmp_path: Path) -> None:
    a, _ = jumps.names
    port = free_port()
    hosts = {
        "gone": host_entry(testbed, a, port=port),
        "behind": host_entry(testbed, "h1", proxy_jump="gone"),
        "deeper": host_entry(testbed, "h2", proxy_jump=f"gone,{a}"),
        "address": host_entry(testbed, "h3", proxy_jump=f"{testbed.user}@127.0.0.1:{port}"),
    }
    project(tmp_path, hosts, ["behind", "deeper", "address"])
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    refused = f"connection to 127.0.0.1:{port} refused (is sshd running there?)"
    assert "failed: behind" in proc.stdout and f"jump host gone is unreachable: {refused}" in proc.stdout
    assert f"jump host {a} is unreachable: jump host gone is unreachable: {refused}" in proc.stdout
    assert f"jump host 127.0.0.1 is unreachable: {refused}" in proc.stdout


def test_a_jump_host_that_cannot_reach_the_target_says_so(testbed: Any, jumps: Jumps, tmp_path: Path) -> None:
    a, _ = jumps.names
    port = free_port()
    hosts = {a: host_entry(testbed, a), "behind": host_entry(testbed, "h1", port=port, proxy_jump=a)}
    project(tmp_path, hosts, ["behind"])
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"jump host {a} cannot connect to 127.0.0.1:{port}: Connect failed" in proc.stdout


def test_a_proxy_jump_cycle_is_an_error_before_any_connection(testbed: Any, tmp_path: Path) -> None:
    hosts = {
        "x": host_entry(testbed, "h1", proxy_jump="y"),
        "y": host_entry(testbed, "h2", proxy_jump="z"),
        "z": host_entry(testbed, "h3", proxy_jump="x"),
    }
    project(tmp_path, hosts, ["x"])
    before = len(tbm.sshd_log(testbed, "h1"))
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "proxy_jump cycle: x -> y -> z -> x" in proc.stdout
    assert "Connection from" not in tbm.sshd_log(testbed, "h1")[before:]


def close_master(testbed: Any, entry: dict[str, Any]) -> None:
    """Close the shared connection an openssh host left open (the run does not, on purpose)."""
    from compute_platform.hosts.openssh import OpenSSHHost
    from compute_platform.input.spec import HostSpec

    OpenSSHHost(HostSpec(alias="x", **{**entry, "connection": "openssh"})).logout()


def test_openssh_host_behind_a_chain_of_hosts_yaml_jump_hosts(
    testbed: Any, jumps: Jumps, tmp_path: Path
) -> None:
    a, b = jumps.names
    target = host_entry(testbed, jumps.target, proxy_jump=f"{a},{b}", connection="openssh")
    project(tmp_path, {a: host_entry(testbed, a), b: host_entry(testbed, b), "behind": target}, ["behind"])
    since = jumps.mark()
    try:
        proc = compute("run", "book.yaml", cwd=tmp_path)
    finally:
        close_master(testbed, target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "behind | on 127.0.0.1" in proc.stdout
    assert jumps.forwarded(a, since) == [jumps.port(b)]
    assert jumps.forwarded(b, since) == [jumps.port(jumps.target)]


def test_paramiko_host_behind_an_openssh_jump_host(testbed: Any, jumps: Jumps, tmp_path: Path) -> None:
    a, _ = jumps.names
    bastion = host_entry(testbed, a, connection="openssh")
    hosts = {a: bastion, "behind": host_entry(testbed, jumps.target, proxy_jump=a)}
    project(tmp_path, hosts, ["behind"])
    since = jumps.mark()
    try:
        proc = compute("run", "book.yaml", cwd=tmp_path)
    finally:
        close_master(testbed, bastion)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert jumps.forwarded(a, since) == [jumps.port(jumps.target)]
