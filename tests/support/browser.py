"""A real headless Chromium for the tests (Debian 12's `chromium`), driven over the Chrome DevTools
Protocol (CDP) on a websocket (the `websocket-client` package; no selenium, no chromedriver).

    with Browser.start() as browser:            # or the `browser` fixture below (one per module)
        browser.open(f"http://127.0.0.1:{port}/", wait_for="document.querySelector('#go')")
        browser.click("#go")
        browser.wait("document.querySelector('#out').innerText === 'done'", timeout=5)
        assert browser.status_of(f"http://127.0.0.1:{port}/secret") == 403
        browser.screenshot(tmp_path / "page.png")
        assert browser.console_errors() == []

How it runs, and why:
* Chromium gets a fresh temporary folder: its profile (--user-data-dir, where it writes the
  DevToolsActivePort file we read its port from), and XDG_CONFIG_HOME/XDG_CACHE_HOME, where Debian's
  build otherwise puts its crash-report database and dconf cache (~/.config/chromium/Crash Reports).
* --no-sandbox: the tests run as root, where Chromium refuses to start with its sandbox (and in a
  container without user namespaces it cannot make one as any user); the pages are our own.
* --disable-dev-shm-usage: a container's /dev/shm is often 64 MB, too small for Chromium's shared
  memory (it crashes); /tmp is used instead.
* It runs in a session of its own, so `close()` finds every process it started (zygotes, renderers,
  GPU and utility processes) by session id; the crashpad handlers double-fork into sessions of their
  own, and are found by the temporary folder in their command line.
* One browser-level websocket, one page target attached in "flat" mode (its messages carry our
  sessionId). Reading is synchronous: a command's answer is awaited, and the events that arrive
  meanwhile are kept (console errors, responses, load events) until the next `open()`.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import websocket

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "scripts/test installs it (as root: apt-get install chromium)"
STARTUP_TIMEOUT = 30.0  # a cold start on a loaded 2-core machine; usually ~0.5 s

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
    "--window-size=1280,900",  # the screenshots' default size, so that layout does not change for them
    "--hide-scrollbars",  # screenshots the same whatever the content's height
    "--no-proxy-server",  # the pages are on 127.0.0.1; a proxy of the environment must not be used
    "--disable-extensions",  # Debian's wrapper loads /usr/share/chromium/extensions otherwise
    "--disable-background-networking",  # no calls to Google's services (no internet here anyway)
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--password-store=basic",  # no keyring over D-Bus (there is no bus)
    "--mute-audio",
    "about:blank",
]


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or stopped answering."""


class ProtocolError(BrowserError):
    """A CDP command was refused (e.g. while a navigation replaces the page's JS context)."""


class Browser:
    """One headless Chromium with one page. Start it with `Browser.start()`; `close()` (or leaving
    the `with` block) ends every process it started and removes its folder."""

    def __init__(self, process: subprocess.Popen[bytes], root: Path) -> None:
        self._process = process
        self._root = root  # profile, config, cache and chromium.log, removed by close()
        self._ws: websocket.WebSocket | None = None
        self._session = ""  # the CDP session of our page target
        self._next_id = 0
        self._events: list[dict[str, Any]] = []  # the page's events since the last open()
        self._errors: list[str] = []  # the page's JS exceptions and console/log errors since then
        self._loader: str | None = None  # the loader (navigation) id of the last open()
        self._closed = False

    # ---- starting and stopping

    @classmethod
    def start(cls, program: str | None = None, timeout: float = STARTUP_TIMEOUT) -> Browser:
        """Start headless Chromium (CHROMIUM unless `program` says) and attach to a new blank page
        (BrowserError if it cannot)."""
        program = program or CHROMIUM
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise BrowserError(f"{program} is missing: {INSTALL_HINT}")
        try:
            import websocket  # a test extra (pyproject.toml); imported here so this module always loads
        except ImportError as err:
            raise BrowserError(
                f"the websocket-client package is missing (pip install -e '.[test]'): {err}"
            ) from err
        root = Path(tempfile.mkdtemp(prefix="compute-browser-"))
        env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_CACHE_HOME": str(root / "cache")}
        with open(root / "chromium.log", "wb") as log:
            process = subprocess.Popen(
                [program, f"--user-data-dir={root / 'profile'}", *FLAGS],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # close() finds its processes by session id
            )
        browser = cls(process, root)
        atexit.register(browser.close)  # even if no fixture or `with` gets to close it
        try:
            browser._connect(websocket, timeout)
        except BaseException:
            browser.close()
            raise
        return browser

    def _connect(self, websocket: Any, timeout: float) -> None:
        port, path = self._devtools_address(timeout)
        self._ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}",
            timeout=timeout,
            suppress_origin=True,  # Chromium refuses websockets with an Origin it was not told to allow
            http_no_proxy=["127.0.0.1"],  # websocket-client would use $http_proxy even for loopback
        )
        target = self._send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        attached = self._send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self._send(f"{domain}.enable")
        self._send("Page.setLifecycleEventsEnabled", {"enabled": True})  # the `load` of each navigation

    def _devtools_address(self, timeout: float) -> tuple[int, str]:
        """The port and browser path Chromium writes to DevToolsActivePort once it listens."""
        active = self._root / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(
                    f"chromium exited ({self._process.returncode}) at start:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = active.read_text().split()
                if len(lines) == 2 and lines[1].startswith("/devtools/browser/"):  # not a half-written file
                    return int(lines[0]), lines[1]
            time.sleep(0.02)
        raise BrowserError(f"chromium did not listen within {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of Chromium's own output (stderr): what to show when it fails."""
        with contextlib.suppress(OSError):
            text = (self._root / "chromium.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    def close(self) -> None:
        """End Chromium and every process it started, remove its folder. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._ws is not None:
            # Browser.close: Chromium ends its children and reaps them itself (a SIGKILLed browser
            # leaves them to PID 1, which in a container may never reap them: zombies)
            with contextlib.suppress(Exception):
                self._send("Browser.close", session=False, timeout=3)
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        self._kill_leftovers()
        shutil.rmtree(self._root, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        deadline = time.monotonic() + 3  # the crashpad handlers end soon after the browser
        while self._leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self._leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (left := self._leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            raise BrowserError(f"chromium processes {left} outlived SIGKILL")

    def _leftovers(self) -> list[int]:
        """Live (not zombie) processes of Chromium's session, or naming its folder in their argv."""
        found = []
        marker = str(self._root).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            state, session = stat[0], int(stat[3])
            if state != "Z" and (session == self._process.pid or marker in argv):
                found.append(int(entry))
        return found

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- CDP plumbing

    def _send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True, timeout: float = 20
    ) -> dict[str, Any]:
        """Send one command and return its result; the events that arrive meanwhile are kept."""
        if self._ws is None:
            raise BrowserError("the browser is closed")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer is None:
                raise BrowserError(f"chromium did not answer {method} within {timeout:g} s")
            if answer.get("id") == message["id"]:
                if "error" in answer:
                    raise ProtocolError(f"{method}: {answer['error'].get('message')}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message (events are recorded on the way), or None at the deadline."""
        import websocket

        assert self._ws is not None
        self._ws.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            raw = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, OSError) as err:
            raise BrowserError(
                f"lost the connection to chromium ({err}); its log:\n{self.log_tail()}"
            ) from err
        message: dict[str, Any] = json.loads(raw)
        if "method" in message and message.get("sessionId") == self._session:
            self._events.append(message)
            self._note_error(message["method"], message.get("params", {}))
        return message

    def _note_error(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            self._errors.append(_exception_text(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self._errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in args))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            if entry.get("url", "").endswith("/favicon.ico"):
                return  # Chromium asks every site for one on its own: a missing one is not the page's error
            self._errors.append(
                f"{entry.get('text', '')} ({entry['url']})" if entry.get("url") else entry["text"]
            )

    def _wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The first event since the last open() that `match`es, waiting for it if need be."""
        for event in self._events:
            if match(event):
                return event
        deadline = time.monotonic() + timeout
        while (message := self._receive(deadline)) is not None:
            if "method" in message and message.get("sessionId") == self._session and match(message):
                return message
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    # ---- the page

    def open(self, url: str, wait_for: str | None = None, timeout: float = 20) -> None:
        """Load `url` and wait for its `load` event, then (if given) until JS `wait_for` is truthy.
        An HTTP error status is no failure here (see status_of); a page that cannot load is."""
        # a round trip first: the previous page's events still on their way are in, then dropped
        self._send("Runtime.evaluate", {"expression": "0"})
        self._events.clear()
        self._errors.clear()
        deadline = time.monotonic() + timeout
        navigated = self._send("Page.navigate", {"url": url}, timeout=timeout)
        loader = navigated.get("loaderId")
        failed = navigated.get("errorText")
        # Chromium shows its own error page for a 4xx/5xx answer with an empty body, and says
        # ERR_HTTP_RESPONSE_CODE_FAILURE: that page did load, with the server's status
        if failed and failed != "net::ERR_HTTP_RESPONSE_CODE_FAILURE":
            raise AssertionError(f"could not open {url}: {failed}")
        if loader and not failed:  # a same-document navigation (#anchor) loads nothing
            self._wait_event(
                lambda e: (
                    e["method"] == "Page.lifecycleEvent"
                    and e["params"]["name"] == "load"
                    and e["params"]["loaderId"] == loader
                ),
                max(0.0, deadline - time.monotonic()),
                f"{url} to load",
            )
        self._loader = loader
        if wait_for is not None:
            self.wait(wait_for, max(0.1, deadline - time.monotonic()))

    def status_of(self, url: str, timeout: float = 20) -> int:
        """Open `url` and return the HTTP status of its answer (the last one, after redirects)."""
        self.open(url, timeout=timeout)
        response = self._wait_event(
            lambda e: (
                e["method"] == "Network.responseReceived"
                and e["params"].get("type") == "Document"
                and e["params"].get("loaderId") == self._loader
            ),
            timeout,
            f"the HTTP answer of {url}",
        )
        return int(response["params"]["response"]["status"])

    def js(self, expression: str, timeout: float = 20) -> Any:
        """The value of JS `expression` in the page (a promise is awaited; JSON-like values only:
        a DOM node comes back as {}). A JS exception fails the test with its message."""
        result = self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True, "userGesture": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise AssertionError(
                f"JavaScript failed: {expression}\n{_exception_text(result['exceptionDetails'])}"
            )
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 10, interval: float = 0.05) -> Any:
        """Evaluate JS `expression` until it is truthy and return its value. Exceptions meanwhile
        (an element not there yet, a page being replaced) count as not yet; the last one is shown."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                # truthiness is JavaScript's: a DOM node comes back as {} (falsy in Python)
                found = self.js(
                    f"(async () => {{ const v = await ({expression}); return v ? [v] : null; }})()",
                    timeout=max(1.0, deadline - time.monotonic()),
                )
                if found:
                    return found[0]
                last = found
            except (AssertionError, ProtocolError) as err:
                last = err
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {expression}; last: {last}")
            time.sleep(interval)

    def click(self, selector: str) -> None:
        """Click the first element matching CSS `selector` (its click(): handlers and links run)."""
        self.js(f"{_element(selector)}.click()")

    def text(self, selector: str) -> str:
        """The rendered text (innerText) of the first element matching CSS `selector`."""
        return str(self.js(f"{_element(selector)}.innerText"))

    def screenshot(
        self, path: Path | str, width: int = 1280, height: int = 900, full_page: bool = True
    ) -> Path:
        """Write a PNG of the page, `width` CSS px wide (and as high as the page if `full_page`)."""
        self._send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            params: dict[str, Any] = {"format": "png"}
            if full_page:
                metrics = self._send("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                clip_height = max(height, math.ceil(size["height"]))
                clip = {"x": 0, "y": 0, "width": max(width, math.ceil(size["width"])), "height": clip_height}
                params |= {"captureBeyondViewport": True, "clip": {**clip, "scale": 1}}
            data = self._send("Page.captureScreenshot", params, timeout=60)["data"]
        finally:
            self._send("Emulation.clearDeviceMetricsOverride")
        target = Path(path)
        target.write_bytes(base64.b64decode(data))
        return target

    def console_errors(self) -> list[str]:
        """The JS exceptions, console.error()s and error log entries (failed resources...) of the
        page since the last open()."""
        self._send("Runtime.evaluate", {"expression": "0"})  # a round trip: what the page sent before is in
        return list(self._errors)


def _element(selector: str) -> str:
    """JS for the element matching `selector`, throwing a readable error when there is none."""
    quoted = json.dumps(selector)
    return f"(document.querySelector({quoted}) ?? (() => {{ throw new Error('no element matches ' + {quoted}); }})())"


def _exception_text(details: dict[str, Any]) -> str:
    text = details.get("exception", {}).get("description") or details.get("text", "exception")
    where = details.get("url", "")
    return f"{text} ({where}:{details.get('lineNumber', 0) + 1})" if where else str(text)
