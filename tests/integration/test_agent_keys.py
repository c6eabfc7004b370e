"""Keys as OpenSSH uses them: a passphrase-protected key loaded into a real ssh-agent logs in (the
encrypted file is never an error then); without the agent, the error says to load it, in one line."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.errors import HostError
from compute_platform.hosts import make_host
from compute_platform.input.spec import HostSpec
from tests.support import testbed as tbm

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def encrypted_key(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A passphrase-protected ed25519 key that user cdash accepts, and that user."""
    user = tbm.login_user(testbed, "cdash")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True)
    allowed = testbed.ssh_dir / "authorized_keys" / user
    before = allowed.read_text()
    allowed.write_text(before + key.with_name("id_ed25519.pub").read_text())
    yield key, user
    allowed.write_text(before)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A real ssh-agent for this test only, on a socket of its own."""
    socket = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        tbm._wait(socket.exists, 10, "ssh-agent's socket")
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        yield {**os.environ, "SSH_AUTH_SOCK": str(socket)}
    finally:
        proc.terminate()
        proc.wait(10)


def spec(testbed: Any, user: str, key: Path) -> HostSpec:
    return HostSpec(
        alias="h1",
        host="127.0.0.1",
        port=testbed.hosts["h1"],
        user=user,
        key=str(key),
        known_hosts=str(testbed.known_hosts),
    )


def test_a_passphrase_key_in_the_agent_logs_in(
    testbed: tbm.Testbed, encrypted_key: tuple[Path, str], agent: dict[str, str], tmp_path: Path
) -> None:
    key, user = encrypted_key
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o700)
    env = {**agent, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
    subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    host = make_host(spec(testbed, user, key))
    try:
        assert host.run("echo in", check=True).stdout == "in\n"
        assert (host.key_used() or "").startswith(f"{key}, from ssh-agent (ssh-ed25519 SHA256:")
    finally:
        host.close()


def test_a_passphrase_key_without_the_agent_says_to_load_it(
    testbed: tbm.Testbed, encrypted_key: tuple[Path, str], agent: dict[str, str]
) -> None:
    key, user = encrypted_key
    host = make_host(spec(testbed, user, key))
    with pytest.raises(HostError) as info:
        host.connect()
    assert f"{key} needs a passphrase: add it to ssh-agent (ssh-add {key})" in str(info.value)
    assert "Traceback" not in str(info.value) and "TypeError" not in str(info.value)
