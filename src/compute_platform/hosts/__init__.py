"""Hosts: one interface (base.Host), a local and two SSH implementations, and a per-run pool."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from compute_platform.hosts.base import Host, Result

if TYPE_CHECKING:
    from compute_platform.hosts.jumps import JumpHost
    from compute_platform.input.inventory import HostSpec, Inventory

__all__ = ["Host", "HostPool", "Result", "make_host"]


def make_host(spec: HostSpec, pool: HostPool | None = None) -> Host:
    if spec.is_local:
        from compute_platform.hosts.local import LocalHost

        return LocalHost(spec)
    if spec.connection == "openssh":
        from compute_platform.hosts.openssh import OpenSSHHost

        return OpenSSHHost(spec, pool.inventory if pool else None)
    from compute_platform.hosts.ssh import SSHHost

    return SSHHost(spec, jump=pool.jump if pool else None)


class HostPool:
    """One Host object (so one connection) per alias for the whole run, jump hosts included."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._hosts: dict[str, Host] = {}
        self._lock = threading.Lock()

    def get(self, alias: str) -> Host:
        with self._lock:
            host = self._hosts.get(alias)
            if host is None:
                host = self._hosts[alias] = make_host(self._spec(alias), self)
            return host

    def jump(self, chain: str, target: HostSpec) -> JumpHost:
        """The host to tunnel through to reach `target`, for its ProxyJump value `chain`: hosts.yaml
        aliases, ~/.ssh/config names or user@host:port, "a,b" meaning b reached through a."""
        from compute_platform.hosts import jumps

        # before any connection: a cycle found while connecting could deadlock on the hosts' locks
        jumps.check_route(self.inventory, chain, target)
        hops = jumps.split_jumps(chain)
        spec = jumps.hop_spec(self.inventory, hops[-1], target)
        if len(hops) > 1:
            spec = spec.model_copy(update={"proxy_jump": ",".join(hops[:-1])})
        # a hosts.yaml alias alone is the same Host (and connection) as when a task names it
        shared = len(hops) == 1 and hops[0] in self.inventory.hosts
        key = hops[0] if shared else f"{chain}|{target.known_hosts}|{target.host_key_checking}"
        with self._lock:
            host = self._hosts.pop(key, None) or make_host(spec, self)
            # re-inserted last: the pool closes the hosts that go through a jump host before it
            self._hosts[key] = host
        if not isinstance(host, jumps.JumpHost):
            raise jumps.not_a_jump_host(target, spec)
        return host

    def _spec(self, alias: str) -> HostSpec:
        return self.inventory.host(alias)

    def close(self) -> None:
        with self._lock:
            hosts = list(self._hosts.values())
            self._hosts.clear()
        for host in hosts:
            # closing must never hide the run's real outcome
            with contextlib.suppress(Exception):
                host.close()
