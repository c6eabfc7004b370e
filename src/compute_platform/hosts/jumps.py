"""Jump hosts (`proxy_jump`, OpenSSH's ProxyJump): parsing hops, finding their settings, cycles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from compute_platform.errors import HostError
from compute_platform.input import sshconfig

if TYPE_CHECKING:
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec


@runtime_checkable
class JumpHost(Protocol):
    """A host that can carry a TCP connection to another host."""

    alias: str

    def tunnel(self, host: str, port: int, timeout: float, requester: str) -> Any:
        """A socket-like object connected to host:port from this host; errors are HostErrors
        of `requester` (the host being reached), naming this jump host."""


def split_jumps(chain: str) -> list[str]:
    """ProxyJump syntax: `a,b,c` is a, then b reached from a, then c reached from b."""
    return [hop.strip() for hop in chain.split(",") if hop.strip()]


@dataclass(frozen=True)
class Hop:
    """One hop written `[ssh://][user@]host[:port]` (IPv6 as `[::1]:22`)."""

    host: str
    user: str | None = None
    port: int | None = None


def parse_hop(text: str) -> Hop:
    """Raise ValueError with a readable reason when `text` is not a hop."""
    rest = text.removeprefix("ssh://")
    user, _, rest = rest.rpartition("@")
    port = ""
    if rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        port = after.removeprefix(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest
    if not host or any(c.isspace() or c in "[]@/" for c in host):
        raise ValueError(f"'{text}' is not a host alias nor [user@]host[:port]")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"'{text}': the port must be a number from 1 to 65535")
    return Hop(host, user or None, int(port) if port else None)


def hop_spec(inventory: Inventory, text: str, target: HostSpec) -> HostSpec:
    """The settings of one hop on the way to `target`: its hosts.yaml entry; otherwise, like OpenSSH,
    what ~/.ssh/config says for it (HostName, User, IdentityFile...) under what the hop itself
    spells out. It is checked against the target's known_hosts file (unless ~/.ssh/config names
    one for it) and with the target's host_key_checking: a hop is never checked more loosely."""
    from compute_platform.input.spec import HostSpec

    if text in inventory.hosts:
        return inventory.hosts[text]
    try:
        hop = parse_hop(text)
    except ValueError as e:
        raise HostError(target.alias, f"proxy_jump: {e}") from None
    config = sshconfig.lookup(hop.host, target.alias)
    return HostSpec(
        alias=hop.host,  # not `host`: ~/.ssh/config's HostName for it must still apply
        user=hop.user,
        port=hop.port,
        connection="ssh",
        known_hosts=None if config.get("userknownhostsfile") else target.known_hosts,
        host_key_checking=target.host_key_checking,
        connect_timeout=target.connect_timeout,
    )


def next_hop(inventory: Inventory, chain: str, target: HostSpec) -> HostSpec:
    """The settings of the host to tunnel through to reach `target`, for its ProxyJump value `chain`
    ("a,b": b, itself reached through a); the whole route is checked for cycles first, before any
    connection (a cycle found while connecting could deadlock on the hosts' locks)."""
    check_route(inventory, chain, target)
    hops = split_jumps(chain)
    spec = hop_spec(inventory, hops[-1], target)
    if len(hops) > 1:
        spec = spec.but(proxy_jump=",".join(hops[:-1]))
    return spec


def unreachable(hop: str, requester: str, error: HostError) -> HostError:
    """`requester`'s error when its jump host `hop` cannot be reached."""
    return HostError(requester, f"jump host {hop} is unreachable: {error.about(hop)}")


def check_route(inventory: Inventory, chain: str, target: HostSpec) -> None:
    """Follow the jump hosts from `target` to the first one; a host met twice is a cycle."""
    seen = [target.alias]
    spec = target
    while chain:
        hops = split_jumps(chain)
        if not hops:
            raise HostError(target.alias, f"the proxy_jump of {spec.alias} is empty")
        hop = hop_spec(inventory, hops[-1], spec)
        if hop.alias in seen:
            raise HostError(target.alias, f"proxy_jump cycle: {' -> '.join([*seen, hop.alias])}")
        seen.append(hop.alias)
        # `a,b`: b is reached through a, whatever b's own settings say (as with `ssh -J a,b`)
        chain = ",".join(hops[:-1]) if len(hops) > 1 else _own_jumps(hop)
        spec = hop


def _own_jumps(hop: HostSpec) -> str:
    """The ProxyJump of a hop itself, as its connection will use it."""
    return sshconfig.proxy_jump(hop.proxy_jump, sshconfig.lookup(hop.address, hop.alias)) or ""


def not_a_jump_host(target: HostSpec, hop: HostSpec) -> HostError:
    return HostError(
        target.alias, f"{hop.alias} cannot be a jump host: it is run locally (use an SSH host as proxy_jump)"
    )
