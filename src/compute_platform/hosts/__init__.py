"""Hosts: one interface (base.Host), a local and two SSH implementations, and a per-run pool."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TYPE_CHECKING

from compute_platform.hosts.base import Host, Result

if TYPE_CHECKING:
    from compute_platform.hosts.jumps import JumpHost
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

__all__ = ["Host", "HostPool", "Result", "close_all", "make_host", "shared_connection"]


def make_host(spec: HostSpec, pool: HostPool | None = None) -> Host:
    if spec.is_local:
        from compute_platform.hosts.local import LocalHost

        return LocalHost(spec)
    if spec.connection == "openssh":
        from compute_platform.hosts.openssh import OpenSSHHost

        return OpenSSHHost(spec, pool.inventory if pool else None)
    from compute_platform.hosts.ssh import SSHHost

    if pool is None:
        return SSHHost(spec)
    return SSHHost(spec, jump=pool.jump, hosts=pool.inventory.hosts)


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

        spec = jumps.next_hop(self.inventory, chain, target)
        hops = jumps.split_jumps(chain)
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
        if "compute_platform.hosts.kept" in sys.modules:  # only SSH hosts load it
            from compute_platform.hosts import kept

            # the connections the run made by itself, for a keeper to hold for the next runs
            with contextlib.suppress(Exception):
                kept.start_pending()


def shared_connection(inventory: Inventory, alias: str, opening: bool) -> str:
    """`compute hosts --login/--logout HOST`: open an OpenSSH master on this terminal, or close the
    connection kept for HOST (the master, or the keeper's connection of a paramiko host)."""
    from compute_platform.errors import InputError

    spec = inventory.host(alias)
    if spec.connection == "openssh":
        from compute_platform.hosts import openssh

        return openssh.shared_connection(inventory, alias, opening)
    if spec.is_local:
        raise InputError(f"host '{alias}' runs locally: it has no connection to open or close")
    if opening:
        raise InputError(
            f"host '{alias}' does not say `connection: openssh`: `--login` is for hosts whose login asks "
            "for a code; the others keep their connection after each run by themselves (control_persist)"
        )
    from compute_platform.hosts import kept

    return f"{alias}: connection closed" if kept.logout(alias) else f"{alias}: no connection was open"


def close_all(inventory: Inventory | None) -> str:
    """`compute hosts --logout-all`: every connection the keeper holds, and the masters of the
    `connection: openssh` hosts of `inventory`."""
    from compute_platform.hosts import kept

    closed = kept.logout(None)
    if inventory is not None:
        from compute_platform.hosts.openssh import OpenSSHHost

        for spec in inventory.hosts.values():
            if spec.connection == "openssh":
                closed += OpenSSHHost(spec, inventory).logout()
    return f"{closed} connection(s) closed"
