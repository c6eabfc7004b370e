"""sshd limits met as they are on real servers: logins dropped before the banner, as sshd drops those
past its MaxStartups (several aliases of one server at once), are tried again; `MaxSessions 1` (one
channel per connection): the persistent shell gives its channel up, commands take turns."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_platform.errors import HostError
from compute_platform.hosts import make_host
from compute_platform.input.spec import HostSpec
from tests.support import testbed as tbm


@pytest.fixture
def limited(testbed: tbm.Testbed, request: pytest.FixtureRequest) -> Iterator[str]:
    """An sshd of its own with the sshd_config options the test gives (indirect parameter)."""
    options: dict[str, str] = request.param
    name = f"lim{uuid.uuid4().hex[:6]}"
    tbm.start_sshd(testbed, name, extra_options=options)
    yield name
    tbm.remove_sshd(testbed, name)


class DropsFirst:
    """A loopback port in front of an sshd that closes the first `drops` connections at once, before
    any banner, as sshd does to logins past its MaxStartups; later ones are passed through."""

    def __init__(self, target: int, drops: int) -> None:
        self.target = target
        self.drops = drops
        self.seen = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.seen += 1
            if self.seen <= self.drops:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()


def pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_a_login_dropped_before_the_banner_is_tried_again(testbed: tbm.Testbed, tmp_path: Path) -> None:
    front = DropsFirst(testbed.hosts["h1"], drops=3)
    known = tmp_path / "known_hosts"
    key_line = testbed.known_hosts.read_text().splitlines()[0].split(" ", 1)[1]
    known.write_text(f"[127.0.0.1]:{front.port} {key_line}\n")
    host = make_host(
        HostSpec(
            alias="h1",
            host="127.0.0.1",
            port=front.port,
            user=testbed.user,
            key=str(testbed.client_key),
            known_hosts=str(known),
        )
    )
    try:
        assert host.run("echo in").stdout == "in\n"
        assert front.seen == 4
    finally:
        host.close()
        front.listener.close()


def test_a_server_that_always_drops_says_max_startups(testbed: tbm.Testbed, tmp_path: Path) -> None:
    front = DropsFirst(testbed.hosts["h1"], drops=10**6)
    host = make_host(HostSpec(alias="h1", host="127.0.0.1", port=front.port, connect_timeout=1.5))
    try:
        with pytest.raises(HostError) as info:
            host.connect()
        assert "closed the connection before its SSH banner" in str(info.value)
        assert "MaxStartups" in str(info.value) and front.seen > 3
    finally:
        front.listener.close()


@pytest.mark.parametrize("limited", [{"MaxSessions": "1"}], indirect=True)
def test_max_sessions_1_gives_the_shells_channel_up(testbed: tbm.Testbed, limited: str) -> None:
    spec = HostSpec(
        alias=limited,
        host="127.0.0.1",
        port=testbed.hosts[limited],
        user=testbed.user,
        key=str(testbed.client_key),
        known_hosts=str(testbed.known_hosts),
    )
    host = make_host(spec)
    try:
        assert host.run("echo plain").stdout == "plain\n"  # the persistent shell holds the channel
        fed = host.run("cat", stdin=b"fed")  # needs a channel of its own
        assert (fed.exit_code, fed.stdout) == (0, "fed")
        assert host.run("echo after").stdout == "after\n"
        assert host.run("echo timed", timeout=10).stdout == "timed\n"
    finally:
        host.close()
