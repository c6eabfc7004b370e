"""The pictures of a sweep on real jobs: `compute plot`'s PNGs, `compute report`'s page and `compute ui`'s
live pages, opened in headless Chromium (the table sorts, the grid and the plots render, the live page
updates when a job ends, a request without the token is refused). The jobs are tmux jobs of a test-bed
workstation over SSH, writing COMPUTE_METRICS."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.support.browser import Browser
from tests.support.cli import compute
from tests.support.projects import TmuxProject
from tests.support.waiting import poll_until

# loss = lr * 10 / step + wd * 2 + seed / 100 at steps 1..4, acc = 1 - loss; seed 2 of lr=0.1 wd=0 writes
# nothing
WRITER = (
    'f() { lr=${1#--lr=}; wd=${2#--wd=}; [ "$SEED" = 2 ] && [ "$lr" = 0.1 ] && [ "$wd" = 0 ] && exit 0; '
    "python3 -c \"import json; [print(json.dumps({'step': s, 'loss': (l := $lr * 10 / s + $wd * 2 + $SEED / 100), "
    '\'acc\': 1 - l})) for s in range(1, 5)]" >> "$COMPUTE_METRICS"; }; f'
)
SWEEP = {"lr": [0.1, 0.03, 0.01, 0.003, 0.001], "wd": [0, 0.1]}


@pytest.fixture
def swept(testbed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TmuxProject]:
    """A sweep of 10 points x 3 seeds that has ended."""
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    made = TmuxProject(testbed, tmp_path)
    made.book("h1", cmd=WRITER, sweep=SWEEP, seeds="0 1 2", metrics={"sort": "loss", "max": ["acc"]})
    made.run()
    made.wait(timeout=60)
    yield made
    made.clean()


def cells(browser: Browser, table: str, column: int) -> list[str]:
    found: list[str] = browser.js(
        f"Array.from(document.querySelectorAll('#{table} tbody tr')).map(r => r.cells[{column}].textContent.trim())"
    )
    return found


def numbers(texts: list[str]) -> list[float]:
    return [float(t) for t in texts]


def header(browser: Browser, table: str, name: str) -> int:
    index: int = browser.js(
        f"Array.from(document.querySelectorAll('#{table} thead th')).findIndex(th => th.textContent.trim() === {name!r})"
    )
    assert index >= 0, f"no column {name} in {table}"
    return index


@pytest.mark.slow
def test_report_page_sorts_and_draws_the_grid_and_plots(
    swept: TmuxProject, browser: Browser, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    proc = compute(
        "report", "-o", str(out), cwd=swept.folder, timeout=60
    )  # the task says: sort loss, max acc
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 point(s), 10 job(s)" in proc.stdout
    page = out.read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # it loads nothing
    browser.open(out.as_uri(), wait_for="document.querySelector('#results-table')")
    assert browser.console_errors() == []
    picture = os.environ.get("COMPUTE_REPORT_PICTURE")  # scripts/report-picture: the picture in docs/
    if picture:
        browser.screenshot(Path(picture), width=1100, height=1050, full_page=False)
    lr, wd = header(browser, "results-table", "lr"), header(browser, "results-table", "wd")
    loss, acc = header(browser, "results-table", "loss"), header(browser, "results-table", "acc")
    assert numbers(cells(browser, "results-table", loss)) == sorted(
        numbers(cells(browser, "results-table", loss))
    )
    assert cells(browser, "results-table", 0) == ["★"] + [""] * 9  # the best marked
    assert (cells(browser, "results-table", lr)[0], cells(browser, "results-table", wd)[0]) == ("0.001", "0")
    browser.click(f"#results-table thead th:nth-child({acc + 1})")
    shown = numbers(cells(browser, "results-table", acc))
    assert shown == sorted(shown) and shown != numbers(cells(browser, "results-table", acc))[::-1]
    browser.click(f"#results-table thead th:nth-child({acc + 1})")
    assert numbers(cells(browser, "results-table", acc)) == sorted(shown, reverse=True)
    browser.click(f"#results-table thead th:nth-child({lr + 1})")  # a parameter, by its value
    assert numbers(cells(browser, "results-table", lr)) == sorted(
        numbers(cells(browser, "results-table", lr))
    )
    seeds = cells(browser, "results-table", header(browser, "results-table", "seeds"))
    assert seeds.count("2/3 (no 2)") == 1 and seeds.count("3/3") == 9
    # the grid: lr on rows, wd on columns, every point a cell coloured by the metric, the best outlined
    colours = browser.js(
        "Array.from(document.querySelectorAll('#grid td.cell')).map(td => td.style.background)"
    )
    assert len(colours) == 10 and len(set(colours)) == 10, colours
    assert browser.text("#grid td.cell.best") == "0.0125"
    # the plots: loss and acc by lr (a log axis: 0.001 to 0.1) and by wd, their curves with bands
    titles = browser.js("Array.from(document.querySelectorAll('#plots svg > title')).map(t => t.textContent)")
    assert titles == [
        "loss by lr",
        "loss by wd",
        "loss by step (best 8 of 10)",
        "acc by lr",
        "acc by wd",
        "acc by step (best 8 of 10)",
    ], titles
    assert browser.js("document.querySelectorAll('#plots svg')[0].querySelectorAll('circle').length") == 10
    assert browser.js("document.querySelectorAll('#plots svg')[2].querySelectorAll('polygon').length") == 8
    drawn = browser.js("document.querySelectorAll('#plots svg')[0].getBoundingClientRect().width")
    assert drawn > 300
    assert "git commit" in browser.text("#sweep") and "python3 -c" in page  # the sweep's facts and commands
    assert browser.text("#jobs").count("COMPLETED") == 10
    browser.screenshot(tmp_path / "report.png")


@pytest.mark.slow
def test_plot_writes_pngs_of_each_metric(swept: TmuxProject, tmp_path: Path) -> None:
    proc = compute("plot", "-o", str(tmp_path / "plots"), "--sort", "loss", cwd=swept.folder, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = tmp_path / "plots" / "sweep"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "acc-by-lr.png",
        "acc-by-wd.png",
        "acc-curves.png",
        "loss-by-lr.png",
        "loss-by-wd.png",
        "loss-curves.png",
    ]
    for name in names:
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert proc.stdout.count("wrote ") == 6
    refused = compute("plot", "-o", "/proc/no-plots-here", cwd=swept.folder, timeout=120)
    assert refused.returncode == 1 and "error: cannot write the plots: /proc/no-plots-here" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "compute_platform", "plot"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "pip install 'compute[plot]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


class Ui:
    """`compute ui` in a subprocess, on a free port; the URL it printed."""

    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("compute") or "compute", "ui", "--every", "5"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=(\S+))", line)
        assert found, line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.url, self.port, self.token = found.group(1), int(found.group(2)), found.group(3)

    def status(self, path: str, host: str | None = None) -> int:
        return self.get(path, {"Host": host} if host else {})[0]

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        found = (answer.status, dict(answer.getheaders()), answer.read())
        conn.close()
        return found

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ui_is_live_and_only_for_its_token(
    testbed: Any, tmp_path: Path, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    project = TmuxProject(testbed, tmp_path)
    flag = f"{project.remote}/go"
    wait = f'f() {{ while [ ! -e {flag} ]; do sleep 0.2; done; echo \'{{"loss": 0.5}}\' >> "$COMPUTE_METRICS"; }}; f'
    project.book("h1", cmd=wait, sweep={"lr": [0.1]})
    project.run()
    ui = Ui(project.folder)
    try:
        assert browser.status_of(f"http://127.0.0.1:{ui.port}/") == 403  # no token
        assert browser.status_of(f"http://127.0.0.1:{ui.port}/?token=wrong") == 403
        assert ui.status(f"/?token={ui.token}", host="evil.example:80") == 403  # a DNS name pointing here
        assert ui.status(f"/?token={ui.token}") == 200
        browser.open(ui.url, wait_for="document.querySelector('#tasks-table')")
        assert "sweep" in browser.text("#tasks-table") and "1 running" in browser.text("#tasks-table")
        browser.click("#tasks-table a")
        browser.wait("document.querySelector('#jobs-table') !== null", timeout=30)
        assert "RUNNING" in browser.text("#jobs-table")
        project.shell("h1", f"touch {flag}")
        # the page fetches its content again every 5 s: it says COMPLETED, and the metric, unreloaded
        browser.wait(
            "document.querySelector('#jobs-table').innerText.includes('COMPLETED') && "
            "document.querySelector('#results-table').innerText.includes('0.5') && "
            "document.body.getAttribute('data-updates') !== null",
            timeout=40,
        )

        # once nothing changes, the page is told so (304) and only its time moves: its content stays put
        def settled() -> bool:
            first = browser.js(
                "[document.getElementById('as-of').innerText, document.body.getAttribute('data-updates')]"
            )
            later = browser.wait(
                f"document.getElementById('as-of').innerText !== {json.dumps(first[0])} && "
                "[document.getElementById('as-of').innerText, document.body.getAttribute('data-updates')]",
                timeout=15,
            )
            return bool(later[1] == first[1])

        poll_until(settled, bool, 40, "a refresh that leaves the content as it was", interval=0)
        assert browser.console_errors() == []
        # the content of a page left open is sent again only once it changed: else 304, and its time
        part = f"/task?name=sweep&part=main&token={ui.token}"
        status, headers, body = ui.get(part, {})
        assert status == 200 and "COMPLETED" in body.decode() and headers["ETag"]
        status, again, body = ui.get(part, {"If-None-Match": headers["ETag"]})
        assert (status, body, again["ETag"]) == (304, b"", headers["ETag"])
        assert " as of " in unquote(again["X-As-Of"])
        assert ui.get(part, {"If-None-Match": '"other"'})[0] == 200
    finally:
        ui.stop()
        project.clean()
    assert ui.proc.stderr is not None and ui.token not in ui.proc.stderr.read()  # nothing logs the token
    poll_until(lambda: ui.proc.poll(), lambda code: code is not None, 10, "compute ui to stop")
