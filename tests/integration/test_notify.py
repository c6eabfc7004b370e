"""What `compute watch` tells, received by servers on loopback: a webhook's JSON POST and a mail
through a minimal SMTP server."""

from __future__ import annotations

import email
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from compute_platform.jobs import notify
from compute_platform.scheduling.recovery import Policy
from tests.support.servers import Webhook


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: greets, says OK to each command, keeps the DATA."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line.split(b" ")[0].strip().upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                data = b""
                while (part := self.rfile.readline()) not in (b".\r\n", b""):
                    data += part
                self.server.messages.append(data)  # type: ignore[attr-defined]
                self.wfile.write(b"250 kept\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.messages = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_mail_and_a_webhook_are_sent(smtp: socketserver.ThreadingTCPServer) -> None:
    hook = Webhook()
    try:
        port = smtp.server_address[1]
        policy = Policy(webhook=hook.url, mail=("me@lab.org", "you@lab.org"), smtp=f"127.0.0.1:{port}")
        assert notify.send(policy, "compute: task 'train': every job has ended", "Jobs: 4 completed.") == []
        [message] = smtp.messages  # type: ignore[attr-defined]
        mail = email.message_from_bytes(message)
        assert mail["To"] == "me@lab.org, you@lab.org" and "every job has ended" in mail["Subject"]
        assert "4 completed" in mail.get_payload()
        assert hook.bodies == [{"text": "compute: task 'train': every job has ended\nJobs: 4 completed."}]
    finally:
        hook.close()


def test_what_cannot_be_sent_is_said_in_one_line_without_the_webhooks_secret() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    policy = Policy(
        webhook=f"http://127.0.0.1:{port}/services/T0/B0/secret",
        mail=("me@lab.org",),
        smtp=f"127.0.0.1:{port}",
    )
    problems = notify.send(policy, "s", "t")
    assert len(problems) == 2
    assert problems[0].startswith(f"webhook http://127.0.0.1:{port}/...: ") and "secret" not in problems[0]
    assert problems[1].startswith(f"mail through 127.0.0.1:{port}: ")
