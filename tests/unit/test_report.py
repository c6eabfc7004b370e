"""The pictures' pure parts: the figures worked out from a sweep's points, their SVG (reference files),
the page's HTML (every ledger value escaped), the axes' ticks."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest

from compute_platform.jobs import results
from compute_platform.jobs.query import Row
from compute_platform.jobs.results import Found, Point, Series
from compute_platform.ledger import JobRecord
from compute_platform.report import figures, html, svg
from compute_platform.report.pages import Facts, IndexPage, TaskLine, TaskPage
from compute_platform.scheduling.backend import JobState
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "report"


def record(
    job_id: str, sweep: dict[str, object], seeds: str = "0,1", args: str = "", task: str = "train"
) -> JobRecord:
    return JobRecord(
        "2026-12-01T10:00:00+00:00",
        "book.yaml",
        task,
        "h",
        "tmux",
        job_id,
        "train",
        sweep=json.dumps(sweep),
        seeds=seeds,
        args=args,
    )


def point(
    job_id: str, sweep: dict[str, object], per_seed: list[Series], higher: set[str] = frozenset()
) -> Point:  # type: ignore[assignment]
    return results.aggregate(
        record(job_id, sweep), "COMPLETED", [results.summarize(s) for s in per_seed], set(higher)
    )


def curve(lr: float, seed: int, steps: int = 3) -> Series:
    return {"loss": [(float(s), lr * 10 / s + seed / 100) for s in range(1, steps + 1)]}


SEEDED = {f"j{i}": [curve(lr, 0), curve(lr, 1)] for i, lr in enumerate([0.1, 0.01, 0.001])}
POINTS = [
    point(f"j{i}", {"lr": lr, "opt": opt}, SEEDED[f"j{i}"])
    for i, (lr, opt) in enumerate([(0.1, "sgd"), (0.01, "adam"), (0.001, "adam")])
]


def test_a_metric_by_each_swept_parameter_numeric_or_not() -> None:
    by_lr, by_opt = figures.against_params(POINTS, "loss", "loss", set())
    assert (by_lr.param, by_lr.numeric, by_lr.log_x) == ("lr", True, True)  # two decades: a log axis
    assert [m.x for m in by_lr.marks] == [0.1, 0.01, 0.001]
    assert [m.best for m in by_lr.marks] == [False, False, True]  # the least final loss
    assert by_lr.marks[0].y.mean == pytest.approx(10 / 3 * 0.1 + 0.005)
    assert (by_opt.numeric, by_opt.categories) == (False, {"sgd": 0, "adam": 1})
    assert figures.against_params(POINTS, "acc", "loss", set()) == []  # no point has it
    # which way is better is the user's to say: no --sort, no best
    assert not any(m.best for f in figures.against_params(POINTS, "loss", None, set()) for m in f.marks)


def test_learning_curves_of_the_best_points_only() -> None:
    asked: list[str] = []

    def series(p: Point) -> list[Series]:
        asked.append(p.record.job_id)
        return SEEDED[p.record.job_id]

    found = figures.curves(POINTS, series, "loss", "loss", set(), top=2)
    assert found is not None and found.shown_of == 3
    assert asked == ["j2", "j1"]  # the third point's files are never read
    best = found.curves[0]
    assert best.best and best.steps == (1.0, 2.0, 3.0)
    assert best.mean[0] == pytest.approx(0.01 + 0.005) and best.std[0] == pytest.approx(math.sqrt(0.00005))
    # values without steps are drawn against their order; a point with one value has no curve
    flat = figures.curves(POINTS[:1], lambda p: [{"loss": [(None, 3.0), (None, 2.0)]}], "loss", None, set())
    assert flat is not None and flat.curves[0].steps == (1.0, 2.0)
    assert figures.curves(POINTS[:1], lambda p: [{"loss": [(None, 1.0)]}], "loss", None, set()) is None


def test_a_curve_is_drawn_where_every_seed_has_a_value() -> None:
    long = {"loss": [(float(s), 10.0 - s) for s in range(1, 11)]}
    short = {"loss": [(float(s), 10.0 - s) for s in range(1, 6)] + [(3.0, 0.0)]}  # step 3 again: a requeue
    mixed = {"loss": [(None, 99.0), (1.0, 9.0), (2.0, 8.0)]}  # the values without a step are left out
    found = figures.curves(POINTS[:1], lambda p: [long, short, mixed, {}], "loss", None, set())
    assert found is not None
    [drawn] = found.curves
    assert drawn.steps == (1.0, 2.0)  # the steps the three seeds with values have, no cliff at 6
    assert drawn.mean == (9.0, 8.0)
    final_only = [point(f"f{i}", {"lr": i}, [{"test": [(None, 1.0)]}]) for i in range(100)]
    asked: list[str] = []
    figures.curves(
        final_only, lambda p: asked.append(p.record.job_id) or [{"test": [(None, 1.0)]}], "test", None, set()
    )
    assert len(asked) == 3 * figures.CURVES  # not every file of the sweep for a metric that has no curve


def test_axis_ticks_are_round_numbers() -> None:
    assert figures.ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert figures.ticks(0.013, 0.46) == [0.1, 0.2, 0.3, 0.4]
    assert figures.ticks(-3.0, 7.0) == [-2.0, 0.0, 2.0, 4.0, 6.0]
    assert figures.ticks(2.0, 2.0) == [2.0]
    assert figures.ticks(1.0, 3.0, whole=True) == [1.0, 2.0, 3.0]  # steps: no 1.5
    assert figures.log_ticks(0.0007, 0.15) == [0.001, 0.01, 0.1]
    assert figures.ticks(0.3, 0.30000000000000004) == [0.3]  # equal but for the last bit: no endless axis
    assert figures.ticks(1e-15, 5e-15) == [1e-15, 2e-15, 3e-15, 4e-15, 5e-15]
    # seeds that all wrote 0.7 (a mean of 0.6999999999999998, a std of 1e-16) still draw
    same = results.aggregate(
        record("j", {"lr": 1}, seeds="0,1,2"), "COMPLETED", [{"acc": (0.7, 0.7, 0.7)}] * 3, set()
    )
    [figure] = figures.against_params([same], "acc", None, set())
    assert "<circle" in svg.against_param(figure)


def test_the_plots_as_svg() -> None:
    by_lr, by_opt = figures.against_params(POINTS, "loss", "loss", set())
    found = figures.curves(POINTS, lambda p: SEEDED[p.record.job_id], "loss", "loss", set())
    assert found is not None
    for name, text in [
        ("loss-by-lr.svg", svg.against_param(by_lr)),
        ("loss-by-opt.svg", svg.against_param(by_opt)),
        ("loss-curves.svg", svg.learning_curves(found)),
    ]:
        check_golden(GOLDEN / name, text + "\n")
        assert "nan" not in text and "inf" not in text


def test_one_point_or_equal_values_still_draw() -> None:
    alone = [point("j0", {"lr": 0.1}, [{"loss": [(1.0, 2.0)]}])]
    [figure] = figures.against_params(alone, "loss", "loss", set())
    text = svg.against_param(figure)
    assert "<circle" in text and "nan" not in text


class _Text(HTMLParser):
    """The text and the tags of a page, as a browser would read them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_of(points: list[Point], rows: list[Row], task: str = "train") -> TaskPage:
    found = Found(task, rows, points, "loss", set(), [])
    return TaskPage(
        found,
        tuple(results.names(points, "loss")),
        ("lr",),
        points[0] if points else None,
        (),
        "loss",
        {(p.record.host, p.record.job_id): p.final["loss"].mean for p in points if "loss" in p.final},
        (),
        Facts(
            (("playbook", "book.yaml"),), ("python train.py --lr 0.1",), "#!/bin/bash\n", "archive/h/j0.sh"
        ),
        "3 completed",
        "2026-12-01 10:00:00 UTC",
    )


def test_every_ledger_value_on_a_page_is_text() -> None:
    evil = "<script>alert(1)</script>"
    bad = results.aggregate(
        record("j<b>", {"lr": evil}, task=evil), "COMPLETED", [{'loss"><img src=x>': (1.0, 1.0, 1.0)}], set()
    )
    page = page_of([bad], [Row(bad.record, JobState("COMPLETED", 0))], task=evil)
    text = html.task_page(page)
    parsed = _Text()
    parsed.feed(text)
    assert parsed.tags.count("script") == 1 and "img" not in parsed.tags and "b" not in parsed.tags
    assert evil in "".join(parsed.text)  # shown, as text
    index = html.index_page(
        IndexPage("archive", (TaskLine(evil, ("h",), 1, {"COMPLETED": 1}, ""),), (), "now"), "tok", 5
    )
    parsed = _Text()
    parsed.feed(index)
    assert parsed.tags.count("script") == 1 and "task?name=%3Cscript%3E" in index


def test_a_page_says_when_no_metric_was_written() -> None:
    empty = results.aggregate(record("j0", {"lr": 0.1}), "RUNNING", [], set())
    page = page_of([empty], [Row(empty.record, JobState("RUNNING"))])
    text = html.task_page(page, refresh=5, home="/?token=t")
    assert "No job has written a metric yet" in text and 'data-refresh="5"' in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # a page loads nothing


def test_a_grid_too_large_or_too_sparse_is_left_out() -> None:
    from compute_platform.jobs.views import grids

    sparse = [point(f"j{i}", {"a": i, "b": i}, [{"loss": [(None, float(i))]}]) for i in range(200)]
    rows = [Row(p.record, JobState("COMPLETED", 0)) for p in sparse]
    page = page_of(sparse, rows)
    page = TaskPage(
        *[tuple(grids(rows)) if f == "grids" else getattr(page, f) for f in TaskPage.__dataclass_fields__]
    )
    text = html.task_page(page)
    assert "Left out: 40,000 cells for 200 point(s)" in text and text.count('class="cell') == 0


def test_plot_files_of_names_that_had_to_change_do_not_collide() -> None:
    from compute_platform.report import png

    assert png.file_name("loss", "by", "lr") == "loss-by-lr.png"
    assert png.file_name("val/loss", "by", "lr") != png.file_name("val loss", "by", "lr")
    assert ".." not in png.file_name("..")


def test_files_written_whole_follow_the_umask(tmp_path: Path) -> None:
    import os

    from compute_platform.ledger.records import write_whole

    old = os.umask(0o022)
    try:
        write_whole(tmp_path / "report.html", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # nothing staged left


def test_ui_makes_a_page_of_ended_jobs_again_only_once_the_ledger_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished 10,000-point sweep's page takes seconds to make: while the ledger stays as it was,
    `compute ui` only dates it again. A job still open, or a new row, has it made again."""
    import types

    from compute_platform.ledger import Ledger
    from compute_platform.report import pages, serve

    ledger = Ledger(tmp_path)
    ledger.append([JobRecord("2026-01-01T00:00:00+00:00", "b.yaml", "t", "h", "tmux", "t.0", "t")])
    state = {"now": "COMPLETED"}
    made: list[str] = []

    def collect(view: object, task: str, *args: object) -> Found:
        made.append(task)
        row = Row(ledger.records()[0], JobState(state["now"]))
        return Found(task, [row], [], None, set(), [])

    monkeypatch.setattr(results, "collect", collect)
    monkeypatch.setattr(pages, "task_page", lambda view, found: found)
    monkeypatch.setattr(html, "task_page", lambda page, every, home: f"<html>{html.task_main(page)}</html>")
    monkeypatch.setattr(
        html, "task_main", lambda page: f'<p class="note" id="as-of">1 job · as of {pages.now_text()}</p>x'
    )
    site = serve.Pages(types.SimpleNamespace(ledger=ledger), "tok", 0.0, None, set())  # type: ignore[arg-type]
    first = site.get("task", "t")
    again = site.get("task", "t")
    assert made == ["t"] and again.tag == first.tag and again.at > first.at  # dated again, not made again
    assert again.main.endswith("</p>x") and again.as_of.startswith("1 job · as of ")
    ledger.append([JobRecord("2026-01-01T00:01:00+00:00", "b.yaml", "t", "h", "tmux", "t.1", "t")])
    site.get("task", "t")
    assert made == ["t", "t"]  # the ledger changed
    state["now"] = "RUNNING"  # a resubmission: a new row, still open
    ledger.append([JobRecord("2026-01-01T00:02:00+00:00", "b.yaml", "t", "h", "tmux", "t-2.0", "t")])
    site.get("task", "t")
    site.get("task", "t")
    assert made == ["t", "t", "t", "t"]  # an open job: its host is asked at every refresh
