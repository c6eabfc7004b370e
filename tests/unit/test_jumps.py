"""Jump hosts, the pure parts: ProxyJump hops, hop settings, cycles, ssh_config blocks for openssh."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_platform.errors import HostError
from compute_platform.hosts.jumps import Hop, check_route, hop_spec, parse_hop, split_jumps
from compute_platform.hosts.openssh import OpenSSHHost
from compute_platform.input.inventory import Inventory
from compute_platform.input.spec import HostSpec


@pytest.mark.parametrize(
    ("text", "hop"),
    [
        ("bastion", Hop("bastion")),
        ("me@bastion", Hop("bastion", "me")),
        ("me@bastion.example.org:2222", Hop("bastion.example.org", "me", 2222)),
        ("ssh://me@10.0.0.1:22", Hop("10.0.0.1", "me", 22)),
        ("[::1]:2200", Hop("::1", None, 2200)),
        ("fe80::1", Hop("fe80::1")),
        ("a@b@host", Hop("host", "a@b")),
    ],
)
def test_parse_hop(text: str, hop: Hop) -> None:
    assert parse_hop(text) == hop


@pytest.mark.parametrize(("text", "reason"), [("me@", "is not a host alias"), ("h:99999", "port must be")])
def test_bad_hops(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_hop(text)


def test_split_jumps() -> None:
    assert split_jumps(" a, b ,,c ") == ["a", "b", "c"]


def inventory(**hosts: HostSpec) -> Inventory:
    return Inventory({alias: spec.but(alias=alias) for alias, spec in hosts.items()}, {})


def test_an_address_hop_inherits_the_targets_host_key_settings() -> None:
    target = HostSpec(alias="t", known_hosts="/k", host_key_checking="strict", connect_timeout=3)
    hop = hop_spec(inventory(), "me@gate:2222", target)
    assert (hop.alias, hop.host, hop.user, hop.port) == ("gate", None, "me", 2222)
    assert (hop.known_hosts, hop.host_key_checking, hop.connect_timeout) == ("/k", "strict", 3)
    # a hosts.yaml alias keeps its own settings
    own = HostSpec(host="gate.example.org", known_hosts="/own")
    assert hop_spec(inventory(gate=own), "gate", target).known_hosts == "/own"


def test_cycles_are_found_without_connecting() -> None:
    inv = inventory(
        a=HostSpec(host="a.example.org", proxy_jump="b"),
        b=HostSpec(host="b.example.org", proxy_jump="c"),
        c=HostSpec(host="c.example.org", proxy_jump="a"),
        d=HostSpec(host="d.example.org", proxy_jump="x,b"),
    )
    with pytest.raises(HostError, match=r"t: proxy_jump cycle: t -> a -> b -> c -> a"):
        check_route(inv, "a", HostSpec(alias="t"))
    # `x,b`: b is reached through x, not through its own proxy_jump
    check_route(inv, "x,b", HostSpec(alias="t"))
    with pytest.raises(HostError, match="proxy_jump cycle: t -> b -> t"):
        check_route(
            inventory(t=HostSpec(proxy_jump="b"), b=HostSpec(proxy_jump="t")), "b", HostSpec(alias="t")
        )


def test_openssh_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTE_CONTROL_DIR", str(tmp_path / "cm"))
    monkeypatch.delenv("COMPUTE_SSH_CONFIG", raising=False)
    monkeypatch.delenv("COMPUTE_KNOWN_HOSTS", raising=False)
    inv = inventory(
        gate=HostSpec(host="gate.example.org", user="me", key="/keys/gate", host_key_checking="strict"),
        inner=HostSpec(host="10.0.0.2", port=2222, proxy_jump="gate"),
    )
    spec = HostSpec(
        alias="c", host="c.internal", user="u", port=22, proxy_jump="gate,inner", connection="openssh"
    )
    argv = OpenSSHHost(spec, inv).ssh_command("-T", command="echo 'a b'")
    assert argv[0] == "ssh" and argv[-2:] == ["c.internal", "echo 'a b'"]
    assert f"-oControlPath={tmp_path / 'cm' / '%C'}" in argv and "-oBatchMode=yes" in argv
    assert argv[argv.index("-J") + 1] == "gate,inner"
    assert (tmp_path / "cm").stat().st_mode & 0o777 == 0o700
    config = Path(argv[argv.index("-F") + 1]).read_text()
    assert 'Host gate\n  HostName "gate.example.org"\n  User "me"\n  IdentityFile "/keys/gate"\n' in config
    assert 'StrictHostKeyChecking "yes"' in config
    assert 'Host inner\n  HostName "10.0.0.2"\n  Port "2222"\n' in config and 'ProxyJump "gate"' in config
    assert OpenSSHHost(spec, inv).ssh_command(batch=False)[-1] == "c.internal"
    assert "-oBatchMode=no" in OpenSSHHost(spec, inv).ssh_command(batch=False)
