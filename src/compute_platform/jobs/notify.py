"""What `compute watch` tells: a JSON POST to a webhook (`{"text": ...}`, as Slack's incoming
webhooks read it) and a mail through an SMTP server. A message that cannot be sent is reported, not
raised: the watch goes on following the jobs."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from email.message import EmailMessage

from compute_platform.scheduling.recovery import Policy

TIMEOUT = 10.0  # seconds for a webhook or an SMTP server to answer
SENDER = "compute-watch"


def send(policy: Policy, subject: str, text: str) -> list[str]:
    """Send `text` where the policy says; the problems met, one line each (empty: all sent)."""
    problems = []
    if policy.webhook:
        problems += _webhook(policy.webhook, f"{subject}\n{text}")
    if policy.mail:
        problems += _mail(policy.smtp or "localhost:25", policy.mail, subject, text)
    return problems


def _webhook(url: str, text: str) -> list[str]:
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            answer.read(1024)
    except Exception as e:
        return [f"webhook {_shown(url)}: {getattr(e, 'reason', e) or type(e).__name__}"]
    return []


def _mail(server: str, to: tuple[str, ...], subject: str, text: str) -> list[str]:
    try:
        host, _, port = server.rpartition(":")
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = f"{SENDER}@{socket.gethostname()}"
        message["To"] = ", ".join(to)
        message.set_content(text)
        with smtplib.SMTP(host, int(port), timeout=TIMEOUT) as smtp:
            smtp.send_message(message)
    except Exception as e:
        return [f"mail through {server}: {e or type(e).__name__}"]
    return []


def _shown(url: str) -> str:
    """A webhook's URL without its path: Slack's carry their secret there."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/..."
