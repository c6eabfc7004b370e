"""The connection keeper's client side (hosts/kept.py) without sshd: what makes two connections the
same, what a request carries, `control_persist`, and a kept channel read by the one read loop
against a scripted keeper end (tests/integration/test_keeper.py has the real thing)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from compute_platform.errors import HostError
from compute_platform.hosts import kept
from compute_platform.hosts.base import LineSplitter
from compute_platform.hosts.channel import Capture, ExecEnding, Watch, read
from compute_platform.input.models import host_spec
from compute_platform.input.spec import HostSpec


@pytest.fixture(autouse=True)
def _private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTE_CONTROL_DIR", str(tmp_path / "cm"))
    monkeypatch.setenv("COMPUTE_SSH_CONFIG", str(tmp_path / "ssh_config"))
    monkeypatch.delenv("COMPUTE_KEEPER", raising=False)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("10m", 600), ("1h30m", 5400), ("90", 90), (90, 90), ("2S", 2), (0, 0), ("0", 0), ("no", 0), (False, 0)],
)
def test_control_persist(written: Any, seconds: float) -> None:
    assert host_spec({"control_persist": written}).persist_seconds == seconds


@pytest.mark.parametrize("written", ["yes", True, "10 m", "-1", "m"])
def test_control_persist_refuses_what_openssh_would_not_take(written: Any) -> None:
    with pytest.raises(ValueError):
        host_spec({"control_persist": written})


def test_the_keeper_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kept.enabled(HostSpec(alias="a"))
    assert not kept.enabled(HostSpec(alias="a", control_persist="0"))
    monkeypatch.setenv("COMPUTE_KEEPER", "off")
    assert not kept.enabled(HostSpec(alias="a"))


def key(spec: HostSpec, hosts: dict[str, HostSpec] | None = None) -> str:
    return kept.identity(kept.request(spec, hosts or {}))


def test_a_connection_is_shared_only_by_identical_logins(tmp_path: Path) -> None:
    base = HostSpec(alias="a", host="h.example.org", user="me", key="/k/id", known_hosts="/k/known")
    same = [
        base.but(init=("module load x",), env={"A": "1"}, save_path="~/x"),
        base.but(keepalive=5, control_persist="8h", platform="slurm"),
    ]
    assert {key(spec) for spec in same} == {key(base)}
    different = [
        base.but(**change)
        for change in (
            {"alias": "b"},
            {"host": "other.example.org"},
            {"port": 2222},
            {"user": "you"},
            {"key": "/k/other"},
            {"known_hosts": "/k/other_known"},
            {"host_key_checking": "strict"},
            {"proxy_jump": "gate"},
            {"connect_timeout": 3},
        )
    ]
    assert len({key(base), *(key(spec) for spec in different)}) == 1 + len(different)


def test_file_names_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sent = kept.settings(HostSpec(alias="a", key="keys/id", known_hosts="~/known"))
    assert sent["key"] == str(tmp_path / "keys" / "id")
    assert sent["known_hosts"] == os.path.expanduser("~/known")


def test_a_request_carries_the_jump_hosts_on_the_way_and_their_settings() -> None:
    hosts = {
        "gate": HostSpec(alias="gate", host="gate.example.org", user="me"),
        "inner": HostSpec(alias="inner", host="10.0.0.2", proxy_jump="gate"),
        "unrelated": HostSpec(alias="unrelated", host="x.example.org"),
    }
    target = HostSpec(alias="t", host="t.internal", proxy_jump="inner")
    assert sorted(kept.request(target, hosts)["hosts"]) == ["gate", "inner"]
    before = key(target, hosts)
    changed = {**hosts, "gate": hosts["gate"].but(user="you")}
    assert key(target, changed) != before  # the bastion's login changed: so did the route
    assert key(target, {**hosts, "unrelated": HostSpec(alias="unrelated", host="y")}) == before


def test_an_ssh_config_proxyjump_sends_every_ssh_host_and_its_text_counts(tmp_path: Path) -> None:
    hosts = {
        "gate": HostSpec(alias="gate", host="gate.example.org"),
        "localhost": HostSpec(alias="localhost"),
    }
    target = HostSpec(alias="t", host="t.internal")
    before = key(target, hosts)
    (tmp_path / "ssh_config").write_text("Host t\n  ProxyJump gate\n")
    assert sorted(kept.request(target, hosts)["hosts"]) == ["gate"]
    assert key(target, hosts) != before


def test_each_environment_has_its_own_keeper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kept.socket_path()
    assert first is not None and first.parent == tmp_path / "cm"
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent"))
    assert kept.socket_path() != first
    monkeypatch.setenv("COMPUTE_CONTROL_DIR", str(tmp_path / ("x" * 100)))
    assert kept.socket_path() is None  # too long for a unix socket: hosts connect by themselves


def test_no_keeper_means_connecting_directly_and_a_stale_socket_is_removed(tmp_path: Path) -> None:
    spec = HostSpec(alias="a", host="h.example.org")
    assert kept.attach(spec, {}) is None
    path = kept.socket_path()
    assert path is not None
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: a keeper that died
    dead.close()
    assert path.exists()
    assert kept.attach(spec, {}) is None
    assert not path.exists()


def test_the_peer_is_known_by_its_uid() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert kept.peer_uid(a) == os.getuid()


class FakeKeeper:
    """The keeper's end of one attached connection and its channels, scripted by a test."""

    def __init__(self, tmp_path: Path) -> None:
        path = kept.socket_path()
        assert path is not None
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.hellos: list[dict[str, Any]] = []
        self.channels: list[socket.socket] = []
        self.ready = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            frame = kept.recv_frame(conn)
            assert frame is not None and frame[0] == kept.HELLO
            hello = json.loads(frame[1])
            self.hellos.append(hello)
            if hello["op"] == "attach":
                kept.send_json(conn, kept.REPLY, {"ok": True, "token": "t1", "login": ["/bin/bash", False]})
                self.control = conn
            else:
                kept.send_json(conn, kept.REPLY, {"ok": True})
                self.channels.append(conn)
                self.ready.set()

    def close(self) -> None:
        self.listener.close()


def test_a_kept_channel_reads_as_a_paramiko_one(tmp_path: Path) -> None:
    keeper = FakeKeeper(tmp_path)
    transport = kept.attach(HostSpec(alias="a", host="h.example.org"), {})
    assert transport is not None and transport.login == ("/bin/bash", False) and transport.is_active()
    chan = transport.open_session(timeout=5)
    keeper.ready.wait(5)
    far = keeper.channels[0]

    def script() -> None:
        assert kept.recv_frame(far) == (kept.EXEC, b"echo hi")
        kept.send_json(far, kept.REPLY, {"ok": True})
        kept.send_frame(far, kept.STDOUT, b"one\ntw")
        kept.send_frame(far, kept.STDERR, b"warn\n")
        time.sleep(0.2)
        kept.send_frame(far, kept.STDOUT, b"o\n" + b"x" * (3 << 20))
        kept.send_frame(far, kept.STATUS, (7).to_bytes(4, "big", signed=True))
        kept.send_frame(far, kept.EOF)

    threading.Thread(target=script, daemon=True).start()
    chan.exec_command("echo hi")
    lines: list[tuple[str, str]] = []
    out = Capture(LineSplitter("stdout", lambda s, line: lines.append((s, line[:5]))))
    err = Capture(LineSplitter("stderr", lambda s, line: lines.append((s, line))))
    assert read(chan, out, err, ExecEnding(chan, "a"), Watch("a", 15), time.monotonic() + 10)  # type: ignore[arg-type]
    assert chan.recv_exit_status() == 7
    assert out.text() == "one\ntwo\n" + "x" * (3 << 20)
    assert err.text() == "warn\n"
    assert lines[:3] == [("stdout", "one"), ("stderr", "warn"), ("stdout", "two")]
    chan.close()
    assert kept.recv_frame(far) == (kept.CLOSE, b"")
    keeper.control.close()  # the keeper is gone: the connection is no longer active
    time.sleep(0.1)
    assert not transport.is_active()
    with pytest.raises(kept.KeptError):
        transport.open_session()
    keeper.close()


def test_a_channel_closed_by_the_keeper_ends_the_read_with_the_lost_connection(tmp_path: Path) -> None:
    keeper = FakeKeeper(tmp_path)
    transport = kept.attach(HostSpec(alias="a", host="h.example.org"), {})
    assert transport is not None
    chan = transport.open_session()
    keeper.ready.wait(5)
    kept.send_frame(keeper.channels[0], kept.STDOUT, b"partial")
    kept.send_frame(keeper.channels[0], kept.CLOSE, json.dumps({"reason": "lost"}).encode())
    keeper.control.close()
    deadline = time.monotonic() + 5
    while not chan.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    out, err = Capture(LineSplitter("stdout", None)), Capture(LineSplitter("stderr", None))
    with pytest.raises(HostError, match="connection was closed"):
        read(chan, out, err, ExecEnding(chan, "a"), Watch("a", 15))  # type: ignore[arg-type]
    assert out.text() == "partial"
    keeper.close()


def test_a_control_directory_that_cannot_be_made_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("COMPUTE_CONTROL_DIR", str(blocked / "cm"))  # below a file: mkdir fails
    spec = HostSpec(alias="a", host="h.example.org")
    assert kept.socket_path() is None and kept.attach(spec, {}) is None
    kept.keep_later(spec, {})
    kept.start_pending()  # nothing to start it in, and no error
    assert kept.connections() == [] and kept.logout(None) == 0
