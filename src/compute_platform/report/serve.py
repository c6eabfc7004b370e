"""`compute ui`: the pages of report/html.py served live, for the whole ledger, to this machine only.

- Bound to 127.0.0.1, never another address.
- Every request carries the random token printed at start (`?token=`); one without it, or with another
  Host than this address (a page elsewhere reaching loopback through a DNS name), is refused with 403.
- The hosts are asked at most once per `every` seconds per page, however many tabs are open: a page is
  made again only when a request comes and the one made last is older than that. Pages are made one at a
  time (one set of connections, one ledger), each with one round trip per host for the open jobs'
  states and one for what is new of their metrics; ended jobs are never asked again.
- Requests are not logged: their URLs hold the token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from compute_platform.errors import ComputeError
from compute_platform.jobs import results
from compute_platform.jobs.query import Jobs
from compute_platform.report import html, pages

ADDRESS = "127.0.0.1"

Maker = Callable[[], tuple[str, str]]  # -> (the whole page, its <main>)


@dataclass
class _Made:
    at: float
    whole: str
    main: str


class Pages:
    """The pages, each made again at most every `every` seconds."""

    def __init__(self, view: Jobs, token: str, every: float) -> None:
        self.view = view
        self.token = token
        self.every = every
        self._made: dict[tuple[str, str], _Made] = {}
        self._lock = threading.Lock()  # one page made at a time: the view and its connections are shared

    def get(self, kind: str, name: str, part: bool) -> str:
        with self._lock:
            made = self._made.get((kind, name))
            if made is None or time.monotonic() - made.at >= self.every:
                whole, main = self._make(kind, name)
                made = self._made[(kind, name)] = _Made(time.monotonic(), whole, main)
        return made.main if part else made.whole

    def _make(self, kind: str, name: str) -> tuple[str, str]:
        if kind == "index":
            page = pages.index_page(self.view)
            whole = html.index_page(page, self.token, self.every)
            return whole, _main_of(whole)
        found = results.collect(self.view, name, None, None, set())
        task = pages.task_page(self.view, found)
        home = f"/?token={self.token}"
        return html.task_page(task, self.every, home), html.task_main(task)


def _main_of(whole: str) -> str:
    start, end = whole.index("<main>") + len("<main>"), whole.rindex("</main>")
    return whole[start:end]


def server(
    view: Jobs, port: int = 0, every: float = 5.0, token: str | None = None
) -> tuple[ThreadingHTTPServer, str]:
    """The server (not started: `serve_forever`) and the URL that opens it, token included."""
    token = token or secrets.token_urlsafe(24)
    made = Pages(view, token, every)
    httpd = ThreadingHTTPServer((ADDRESS, port), _handler(made))
    httpd.daemon_threads = True
    return httpd, f"http://{ADDRESS}:{httpd.server_port}/?token={token}"


def _handler(made: Pages) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "compute-ui"
        sys_version = ""

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            given = (query.get("token") or [""])[0]
            if not self._our_host() or not hmac.compare_digest(given.encode(), made.token.encode()):
                self._send(
                    HTTPStatus.FORBIDDEN,
                    "forbidden: open the URL compute ui printed (it holds the token)\n",
                    "text/plain",
                )
                return
            part = (query.get("part") or [""])[0] == "main"
            try:
                if url.path == "/":
                    body = made.get("index", "", part)
                elif url.path == "/task" and (name := (query.get("name") or [""])[0]):
                    body = made.get("task", name, part)
                else:
                    self._send(HTTPStatus.NOT_FOUND, "not found\n", "text/plain")
                    return
            except ComputeError as e:
                self._send(HTTPStatus.NOT_FOUND, f"{e}\n", "text/plain")
                return
            self._send(HTTPStatus.OK, body, "text/html")

        def _our_host(self) -> bool:
            host = self.headers.get("Host", "")
            port: int = getattr(self.server, "server_port", 0)
            return host in (f"{ADDRESS}:{port}", f"localhost:{port}")

        def _send(self, status: HTTPStatus, body: str, kind: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the token never leaves in a Referer
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return  # the URLs hold the token

    return Handler
