"""The headless browser harness (tests/support/browser.py) against a page of its own: Chromium
starts, loads a page from a local HTTP server, clicks, reads text, sees HTTP statuses and console
errors, and takes a screenshot."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import Browser
from tests.support.waiting import poll_until

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title></head>
<body>
  <h1 id="title">Browser harness</h1>
  <button id="go" onclick="document.querySelector('#out').textContent = 'clicked'">Go</button>
  <p id="out">waiting</p>
  <button id="boom" onclick="setTimeout(() => { throw new Error('boom from the page'); })">Boom</button>
</body></html>
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            self._answer(200, PAGE)
        elif self.path == "/forbidden":
            self._answer(403, b"")  # an empty body: Chromium shows its own error page
        else:
            self.send_error(404)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: no lines on stderr
        pass


class _Server(http.server.ThreadingHTTPServer):
    # Chromium keeps spare connections open (preconnects) that never send a request: closing the
    # server must not wait for their threads
    daemon_threads = True
    block_on_close = False


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The base URL of a local HTTP server that serves PAGE at / (and 404 elsewhere)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_click_text_status_screenshot(browser: Browser, site: str, tmp_path: Path) -> None:
    browser.open(f"{site}/", wait_for="document.querySelector('#go')")
    assert browser.text("#title") == "Browser harness"
    assert browser.text("#out") == "waiting"
    browser.click("#go")
    assert browser.wait("document.querySelector('#out').innerText === 'clicked'", timeout=5)
    assert browser.console_errors() == []

    shot = browser.screenshot(tmp_path / "page.png")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    assert browser.status_of(f"{site}/") == 200
    assert browser.status_of(f"{site}/missing") == 404
    assert browser.status_of(f"{site}/forbidden") == 403


def test_js_errors_are_reported(browser: Browser, site: str) -> None:
    browser.open(f"{site}/")
    with pytest.raises(AssertionError, match="no element matches #nothing"):
        browser.click("#nothing")
    with pytest.raises(AssertionError, match="ReferenceError"):
        browser.js("undefinedName + 1")
    assert browser.console_errors() == []  # what js() raised is not the page's error
    browser.click("#boom")
    errors = poll_until(browser.console_errors, bool, 5, "the page's uncaught exception")
    assert "boom from the page" in errors[0]
