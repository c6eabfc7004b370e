"""`compute ui`: the pages of report/html.py served live, for the whole ledger, to this machine only.

- Bound to 127.0.0.1, never another address.
- Every request carries the random token printed at start (`?token=`); one without it, or with another
  Host than this address (a page elsewhere reaching loopback through a DNS name), is refused with 403.
- The hosts are asked at most once per `every` seconds per page, however many tabs are open: a page is
  made again only when a request comes and the one made last is older than that, by one request while
  the others get that copy. Pages are made one at a time (one set of connections, one ledger), each with
  one round trip per host for the open jobs' states and one for what is new of their metrics; ended
  jobs are never asked again.
- A page of ended jobs only, all fetched, is not made again while the ledger's files stay as they were:
  nothing a host says can change it. It is only dated again.
- A page left open asks for its content with the ETag it has: an unchanged one is not sent again (304,
  with the time it is as of), so a finished 10,000-point sweep costs its tab no megabytes per refresh.
- Requests are not logged: their URLs hold the token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from html import escape, unescape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from compute_platform.errors import ComputeError
from compute_platform.jobs import results
from compute_platform.jobs.query import FINAL, Jobs
from compute_platform.report import html, pages

ADDRESS = "127.0.0.1"


@dataclass
class _Made:
    at: float
    whole: str
    main: str
    # the ledger's stamp, when the page is of ended jobs only, all fetched: nothing a host says can change
    # it, only the ledger (a resubmission, a new run of the task)
    settled: tuple[object, ...] | None = None

    def again(self, now: str) -> _Made:
        """The same page, as of `now`."""

        def dated(text: str) -> str:
            return AS_OF.sub(lambda m: _as_of_now(m, now), text, count=1)

        return _Made(time.monotonic(), dated(self.whole), dated(self.main), self.settled)

    @functools.cached_property
    def tag(self) -> str:
        """The content's ETag, its time left out: a page left open is sent it again only once it changed."""
        return '"' + hashlib.sha256(AS_OF.sub("", self.main).encode()).hexdigest()[:20] + '"'

    @functools.cached_property
    def as_of(self) -> str:
        """What the page's as-of line says now (a 304 carries it, for the page to say it)."""
        found = AS_OF.search(self.main)
        return unescape(found.group(1)) if found else ""


AS_OF = re.compile(r'<p class="note" id="as-of">([^<]*)</p>')


def _as_of_now(found: re.Match[str], now: str) -> str:
    summary = found.group(1).rpartition(" · as of ")[0]
    return found.group(0).replace(found.group(1), f"{summary} · as of {escape(now)}")


class Pages:
    """The pages, each made again at most every `every` seconds. A page is made by one request at a time;
    others get the copy made last meanwhile, so that a page whose hosts are slow holds up no other."""

    def __init__(self, view: Jobs, token: str, every: float, metric: str | None, higher: set[str]) -> None:
        self.view = view
        self.token = token
        self.every = every
        self.metric = metric
        self.higher = higher
        self._made: dict[tuple[str, str], _Made] = {}
        self._making: dict[tuple[str, str], threading.Lock] = {}
        self._view = threading.Lock()  # the view (its ledger and connections) serves one page at a time

    def get(self, kind: str, name: str) -> _Made:
        key = (kind, name)
        made = self._made.get(key)
        if made is None or time.monotonic() - made.at >= self.every:
            made = self._make_again(key, made)
        return made

    def _make_again(self, key: tuple[str, str], stale: _Made | None) -> _Made:
        lock = self._making.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=stale is None):
            assert stale is not None
            return stale  # another request is making it
        try:
            made = self._made.get(key)
            if made is None or time.monotonic() - made.at >= self.every:
                if made is not None and made.settled is not None and made.settled == self.view.ledger.stamp():
                    made = self._made[key] = made.again(pages.now_text())  # a 10,000-point page: 5 s saved
                else:
                    with self._view:
                        made = self._made[key] = self._make(*key)
            return made
        finally:
            lock.release()

    def _make(self, kind: str, name: str) -> _Made:
        if kind == "index":
            index = pages.index_page(self.view)
            made = _Made(
                time.monotonic(),
                html.index_page(index, self.token, self.every),
                html.index_main(index, self.token),
            )
            return made
        before = self.view.ledger.stamp()
        found = results.collect(self.view, name, None, self.metric, self.higher)
        task = pages.task_page(self.view, found)
        home = f"/?token={quote(self.token, safe='')}"
        ended = all(row.state.state in FINAL for row in found.rows) and not found.problems
        settled = before if ended and self.view.ledger.stamp() == before else None
        return _Made(time.monotonic(), html.task_page(task, self.every, home), html.task_main(task), settled)


def server(
    view: Jobs,
    port: int = 0,
    every: float = 5.0,
    token: str | None = None,
    metric: str | None = None,
    higher: set[str] | None = None,
) -> tuple[ThreadingHTTPServer, str]:
    """The server (not started: `serve_forever`) and the URL that opens it, token included."""
    token = token or secrets.token_urlsafe(24)
    made = Pages(view, token, every, metric, higher or set())
    httpd = ThreadingHTTPServer((ADDRESS, port), _handler(made))
    httpd.daemon_threads = True
    return httpd, f"http://{ADDRESS}:{httpd.server_port}/?token={token}"


def _handler(made: Pages) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "compute-ui"
        sys_version = ""

        timeout = 60  # a client that opens a connection and sends nothing does not keep a thread

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            given = (query.get("token") or [""])[0]
            if not self._our_host() or not hmac.compare_digest(given.encode(), made.token.encode()):
                self._send(
                    HTTPStatus.FORBIDDEN, "forbidden: open the URL compute ui printed (it holds the token)\n"
                )
                return
            part = (query.get("part") or [""])[0] == "main"
            name = (query.get("name") or [""])[0]
            try:
                if url.path == "/":
                    self._page(made.get("index", ""), part)
                elif url.path == "/task" and name:
                    self._page(made.get("task", name), part)
                else:
                    self._send(HTTPStatus.NOT_FOUND, "not found\n")
            except ComputeError as e:  # a task the ledger does not have, a ledger gone
                self._send(HTTPStatus.NOT_FOUND, f"{e}\n")
            except Exception as e:  # a page that cannot be made: said, and the server goes on
                sys.stderr.write(f"compute ui: cannot make {url.path}: {type(e).__name__}: {e}\n")
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot make this page: {type(e).__name__}: {e}\n"
                )

        def do_HEAD(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, "")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own errors (a malformed request) with this server's headers too."""
            self._send(HTTPStatus(code), f"{message or HTTPStatus(code).phrase}\n")

        def _our_host(self) -> bool:
            host = self.headers.get("Host", "")
            port: int = getattr(self.server, "server_port", 0)
            return host in (f"{ADDRESS}:{port}", f"localhost:{port}")

        def _page(self, page: _Made, part: bool) -> None:
            """A page, or the content of a page left open: not sent again while it is unchanged (a
            10,000-point page is megabytes every few seconds), only its time."""
            if not part:
                self._send(HTTPStatus.OK, page.whole, "text/html")
            elif self.headers.get("If-None-Match") == page.tag:
                self._send(
                    HTTPStatus.NOT_MODIFIED, "", headers={"ETag": page.tag, "X-As-Of": quote(page.as_of)}
                )
            else:
                self._send(HTTPStatus.OK, page.main, "text/html", headers={"ETag": page.tag})

        def _send(
            self,
            status: HTTPStatus,
            body: str,
            kind: str = "text/plain",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = body.encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            if status != HTTPStatus.NOT_MODIFIED:
                self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the token never leaves in a Referer
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", html.POLICY)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return  # the URLs hold the token

    return Handler
