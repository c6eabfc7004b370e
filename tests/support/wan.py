"""Far hosts, as a laptop sees them: sshd hosts in network namespaces behind delayed links
(tests/support/latency.py), some of them reachable only through a jump host.

    this namespace (the laptop)
      bridge ctb<tag>, .1 of a /24 -- 25 ms -- d1..dN   .11, .12 ...   hosts reached directly
                                    \\-- 25 ms -- jump   .2
                                                   bridge `lan` in the jump's namespace, .1 of another /24
                                                     \\-- 25 ms -- b1..bM  .11, .12 ...   hosts behind it

Every host (the jump host too) is one namespace `ctb<tag>-NAME` running one sshd on its own
127.0.0.1:22, and a relay in that namespace listening on the host's address, port 22: every
connection into a host crosses one link of `delay` each way. Round trips: laptop - direct host
2 x delay (50 ms), laptop - jump host 50 ms, jump host - host behind 50 ms, so a host behind
answers the laptop through the jump host in 100 ms. The laptop has no route to the jump host's
`lan`, whose hosts have no route out, and the jump host forwards no packets: the hosts behind
answer only the jump host. Nothing is limited but time (no bandwidth limit, no loss).

The hosts are the test bed's (`testbed.up`): its test user, client key, host key and sshd_config;
each has its own TMUX_TMPDIR (its own tmux server, as on separate machines) and shares the
machine's filesystem. Names follow the multi-node mode's (tests/support/cluster.py: `tag` from the
state directory), so `cluster.remove_network(state)`, which `down` calls, removes the namespaces,
what runs in them and the bridge, even after a crash. Root only; the relays run on a thread of
the process that called `up`, and stop with it or with `down`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import shutil
import socket
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tests.support import cluster, latency
from tests.support.testbed import (
    SSHD,
    Testbed,
    TestbedError,
    _mkdir,
    _start_daemon,
    _tail,
    _wait,
    _which,
    _write_atomic,
)

DELAY = 0.025  # each way, on every link: 50 ms round trips
JUMP = "jump"
SSH_PORT = 22
MARKER = "wan.json"  # the subnets, for `down`


@dataclass
class Wan:
    state: Path
    delay: float
    addresses: dict[str, str]
    """Every host (the jump host, d1..dN, b1..bM) -> the address the laptop or the jump host dials."""
    direct: list[str]
    behind: list[str]
    netns: dict[str, str]
    subnets: list[ipaddress.IPv4Network]  # the laptop's side, the jump host's `lan`
    bed: Testbed
    network: latency.Network
    ssh_config: Path
    known_hosts: Path

    @property
    def rtt(self) -> float:
        """The round trip of one link (laptop - host, laptop - jump host, jump host - host behind)."""
        return 2 * self.delay

    def hops(self, host: str) -> int:
        """Links between the laptop and `host`: 2 behind the jump host, else 1."""
        return 2 if host in self.behind else 1

    def entry(self, host: str, **extra: Any) -> dict[str, Any]:
        """The hosts.yaml entry of `host` for compute (behind ones: `proxy_jump: jump`)."""
        entry: dict[str, Any] = {
            "host": self.addresses[host],
            "user": self.bed.user,
            "key": str(self.bed.client_key),
            "known_hosts": str(self.known_hosts),
            "host_key_checking": "strict",
        }
        if host in self.behind:
            entry["proxy_jump"] = JUMP
        return {**entry, **extra}

    def reachable(self, host: str, source: str | None = None, timeout: float = 2) -> bool:
        """Whether a TCP connection to `host`'s port 22 opens from the namespace of host `source`
        (None: the laptop). Only the far network's own addresses are ever dialled."""
        address = ipaddress.IPv4Address(self.addresses[host])
        assert any(address in net for net in self.subnets), address
        sock = latency.socket_in(self.netns[source]) if source else socket.socket()
        with sock:
            sock.settimeout(timeout)
            try:
                sock.connect((str(address), SSH_PORT))
            except OSError:
                return False
            return True

    def write_ssh_config(self, path: Path, **options: str) -> Path:
        """An ssh_config naming every host (behind ones with `ProxyJump jump`), with `options`
        (e.g. KexAlgorithms="curve25519-sha256") on each; no connection is shared between runs
        unless a command line asks for one."""
        bed = self.bed
        settings = {
            "User": bed.user,
            "IdentityFile": str(bed.client_key),
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "BatchMode": "yes",
            "ConnectTimeout": "10",
            "LogLevel": "ERROR",
            "ControlMaster": "no",
            "ControlPath": "none",
            **options,
        }
        blocks = [f"# the far network of {self.state}: ssh -F {path} d1\n"]
        for name, address in self.addresses.items():
            lines = {"HostName": address, **settings, **({"ProxyJump": JUMP} if name in self.behind else {})}
            blocks.append(f"Host {name}\n" + "".join(f"  {k} {v}\n" for k, v in lines.items()) + "\n")
        _write_atomic(path, "".join(blocks))
        return path

    def write_hosts(self, path: Path, **extra: Any) -> Path:
        """A hosts.yaml with every host (`extra` settings on each); JSON is YAML."""
        hosts = {name: self.entry(name, **extra) for name in self.addresses}
        path.write_text(json.dumps(hosts, indent=1) + "\n")
        return path


# --------------------------------------------------------------------------- network


def _pick_subnets(state: Path) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Two /24s that no address or route of this machine overlaps (the caller holds the lock)."""
    used = cluster._used_networks()
    start = int(cluster.tag(state), 16) % len(cluster.SUBNETS)
    free: list[ipaddress.IPv4Network] = []
    for i in range(len(cluster.SUBNETS)):
        net = cluster.SUBNETS[(start + i) % len(cluster.SUBNETS)]
        if not any(net.overlaps(other) for other in used):
            free.append(net)
            if len(free) == 2:
                return free[0], free[1]
    raise TestbedError("no two free /24s in 10.200.0.0-10.254.255.0 for the far network")


def _host_link(ns: str, link: str, where: list[str], peer_of: str, address: str, prefix: int) -> None:
    """Namespace `ns` with `eth0` at `address`, its veth peer `link` on bridge `peer_of` (in the
    namespace `where` names: [] for this one, ["-n", NS] for another)."""
    ip = cluster._ip
    ip("netns", "add", ns)
    ip(*where, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip(*where, "link", "set", link, "addrgenmode", "none")
    ip(*where, "link", "set", link, "master", peer_of, "up")
    ip("-n", ns, "link", "set", "eth0", "addrgenmode", "none")
    ip("-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")


def _make_network(
    state: Path, direct: list[str], behind: list[str]
) -> tuple[dict[str, str], dict[str, str], list[ipaddress.IPv4Network]]:
    """The namespaces, bridges and addresses; (host -> namespace, host -> address, the two subnets)."""
    ip = cluster._ip
    prefix = cluster.netns_prefix(state)
    bridge = cluster.bridge_name(state)
    netns = {name: prefix + name for name in [JUMP, *direct, *behind]}
    lock_path = Path(tempfile.gettempdir()) / "compute-testbed-net.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        outside, inside = _pick_subnets(state)
        # the laptop has no route to the hosts behind: refused here, never sent out by the default route
        ip("route", "add", "unreachable", str(inside))
        _write_atomic(state / MARKER, json.dumps({"subnets": [str(outside), str(inside)]}) + "\n")
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "set", bridge, "addrgenmode", "none")
        ip("addr", "add", f"{next(outside.hosts())}/{outside.prefixlen}", "dev", bridge)
        ip("link", "set", bridge, "up")
    far = list(outside.hosts())
    near = list(inside.hosts())
    addresses = {JUMP: str(far[1])}
    addresses.update({name: str(far[10 + k]) for k, name in enumerate(direct)})
    addresses.update({name: str(near[10 + k]) for k, name in enumerate(behind)})
    for name in [JUMP, *direct]:
        _host_link(netns[name], f"{bridge}{name}"[:15], [], bridge, addresses[name], outside.prefixlen)
    jump = ["-n", netns[JUMP]]
    ip(*jump, "link", "add", "lan", "type", "bridge")
    ip(*jump, "link", "set", "lan", "addrgenmode", "none")
    ip(*jump, "addr", "add", f"{near[0]}/{inside.prefixlen}", "dev", "lan")
    ip(*jump, "link", "set", "lan", "up")
    for name in behind:
        _host_link(netns[name], f"v{name}", jump, "lan", addresses[name], inside.prefixlen)
    return netns, addresses, [outside, inside]


# --------------------------------------------------------------------------- hosts


def _sshd(bed: Testbed, state: Path, name: str, ns: str) -> list[str]:
    tmux = _mkdir(state / "tmux" / name, 0o1777)
    return [
        _which("nsenter") or "nsenter",
        f"--net={cluster.NETNS_DIR / ns}",
        "--",
        SSHD,
        "-f",
        str(bed.sshd_config),
        "-E",
        str(state / f"{name}.log"),
        "-o",
        f"Port {SSH_PORT}",
        "-o",
        "ListenAddress 127.0.0.1",
        "-o",
        f"PidFile {state / f'{name}.pid'}",
        # the first SetEnv counts: this host's own tmux server, nothing of the bed's Slurm
        "-o",
        f"SetEnv TMUX_TMPDIR={tmux}",
    ]


def _listening(ns: str) -> bool:
    sock = latency.socket_in(ns)
    with sock:
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", SSH_PORT))
        except OSError:
            return False
        return True


def _start_sshds(bed: Testbed, state: Path, netns: dict[str, str]) -> None:
    started = [
        (name, _start_daemon(_sshd(bed, state, name, ns), state / f"{name}.start.err"))
        for name, ns in netns.items()
    ]
    for name, proc in started:
        if proc.wait(timeout=10) != 0:
            raise TestbedError(
                f"sshd {name} failed to start:\n{_tail(state / f'{name}.start.err')}\n{_tail(state / f'{name}.log')}"
            )
    for name, ns in netns.items():
        _wait(partial(_listening, ns), 10, f"sshd {name} in {ns}")


def _write_known_hosts(wan: Wan) -> None:
    keytype, keydata = wan.bed.host_pubkey.split()[:2]
    _write_atomic(wan.known_hosts, "".join(f"{a} {keytype} {keydata}\n" for a in wan.addresses.values()))


# --------------------------------------------------------------------------- up / down


def up(bed: Testbed, state: Path, direct: int = 8, behind: int = 8, delay: float = DELAY) -> Wan:
    """Bring the far network up in `state` (wiped first): the namespaces, one sshd per host, the
    relays, and `ssh_config` and `known_hosts` for them. Returns once every sshd listens."""
    state = Path(state).absolute()
    down(state)
    shutil.rmtree(state, ignore_errors=True)
    _mkdir(state, 0o755)
    _mkdir(state / "tmux", 0o755)
    direct_names = [f"d{k}" for k in range(1, direct + 1)]
    behind_names = [f"b{k}" for k in range(1, behind + 1)]
    network = latency.Network()
    try:
        netns, addresses, subnets = _make_network(state, direct_names, behind_names)
        wan = Wan(
            state,
            delay,
            addresses,
            direct_names,
            behind_names,
            netns,
            subnets,
            bed,
            network,
            state / "ssh_config",
            state / "known_hosts",
        )
        _start_sshds(bed, state, netns)
        for name, address in addresses.items():
            network.add(name, (address, SSH_PORT), ("127.0.0.1", SSH_PORT), delay, netns[name])
        _write_known_hosts(wan)
        wan.write_ssh_config(wan.ssh_config)
    except BaseException:
        network.close()
        down(state)
        raise
    return wan


def down(state: Path, wan: Wan | None = None) -> None:
    """Stop the relays (when `wan` is given), then whatever runs in the namespaces (sshd, their
    sessions, tmux servers), the namespaces, the bridge and the route. Idempotent; keeps the logs."""
    state = Path(state).absolute()
    if wan is not None:
        wan.network.close()
    cluster.remove_network(state)
    # links of a namespace that something still holds outlive `ip netns delete`: remove ours
    for line in cluster._ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
        if name.startswith(cluster.bridge_name(state)):
            cluster._ip("link", "delete", name, check=False)
    with contextlib.suppress(OSError, ValueError, KeyError):
        for subnet in json.loads((state / MARKER).read_text())["subnets"][1:]:
            cluster._ip("route", "del", "unreachable", subnet, check=False)
        (state / MARKER).unlink()
