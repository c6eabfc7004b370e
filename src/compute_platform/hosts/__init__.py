"""Hosts: one interface (base.Host), a local and an SSH implementation, and a per-run pool."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from compute_platform.hosts.base import Host, Result

if TYPE_CHECKING:
    from compute_platform.hosts.ssh import SSHHost
    from compute_platform.inventory import HostSpec, Inventory

__all__ = ["Host", "HostPool", "Result", "make_host"]


def make_host(spec: HostSpec, pool: HostPool | None = None) -> Host:
    if spec.is_local:
        from compute_platform.hosts.local import LocalHost

        return LocalHost(spec)
    from compute_platform.hosts.ssh import SSHHost

    return SSHHost(spec, jump=pool.ssh if pool else None)


class HostPool:
    """One Host object (so one connection) per alias for the whole run."""

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

    def ssh(self, target: str) -> SSHHost:
        """A jump host: an alias, or `user@host:port` (ProxyJump syntax, first hop of a chain)."""
        from compute_platform.hosts.ssh import SSHHost
        from compute_platform.inventory import HostSpec

        hops = [h.strip() for h in target.split(",") if h.strip()]
        # `a,b` means a then b: the last hop is reached through the ones before it.
        last = hops[-1]
        if len(hops) > 1:
            spec = self._spec_or_address(last).model_copy(update={"proxy_jump": ",".join(hops[:-1])})
            key = target
        else:
            spec = self._spec_or_address(last)
            key = last
        with self._lock:
            host = self._hosts.get(key)
            if host is None:
                host = self._hosts[key] = SSHHost(spec, jump=self.ssh)
        assert isinstance(host, SSHHost) or isinstance(spec, HostSpec)
        if not isinstance(host, SSHHost):
            raise TypeError(f"{target} is not an SSH host")
        return host

    def _spec(self, alias: str) -> HostSpec:
        return self.inventory.host(alias)

    def _spec_or_address(self, text: str) -> HostSpec:
        from compute_platform.inventory import HostSpec

        if text in self.inventory.hosts:
            return self.inventory.hosts[text]
        user, _, rest = text.rpartition("@")
        host, _, port = rest.partition(":")
        return HostSpec(alias=text, host=host, user=user or None, port=int(port) if port else None)

    def close(self) -> None:
        with self._lock:
            hosts = list(self._hosts.values())
            self._hosts.clear()
        for host in reversed(hosts):
            # closing must never hide the run's real outcome
            with contextlib.suppress(Exception):
                host.close()
