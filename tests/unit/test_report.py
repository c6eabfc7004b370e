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
    by_lr, by_opt = figures.against_params(POINTS, "loss", set())
    assert (by_lr.param, by_lr.numeric, by_lr.log_x) == ("lr", True, True)  # two decades: a log axis
    assert [m.x for m in by_lr.marks] == [0.1, 0.01, 0.001]
    assert [m.best for m in by_lr.marks] == [False, False, True]  # the least final loss
    assert by_lr.marks[0].y.mean == pytest.approx(10 / 3 * 0.1 + 0.005)
    assert (by_opt.numeric, by_opt.categories) == (False, ("sgd", "adam"))
    assert figures.against_params(POINTS, "acc", set()) == []  # no point has it


def test_learning_curves_of_the_best_points_only() -> None:
    asked: list[str] = []

    def series(p: Point) -> list[Series]:
        asked.append(p.record.job_id)
        return SEEDED[p.record.job_id]

    found = figures.curves(POINTS, series, "loss", set(), top=2)
    assert found is not None and found.shown_of == 3
    assert asked == ["j2", "j1"]  # the third point's files are never read
    best = found.curves[0]
    assert best.best and best.steps == (1.0, 2.0, 3.0)
    assert best.mean[0] == pytest.approx(0.01 + 0.005) and best.std[0] == pytest.approx(math.sqrt(0.00005))
    # values without steps are drawn against their order; a point with one value has no curve
    flat = figures.curves(POINTS[:1], lambda p: [{"loss": [(None, 3.0), (None, 2.0)]}], "loss", set())
    assert flat is not None and flat.curves[0].steps == (1.0, 2.0)
    assert figures.curves(POINTS[:1], lambda p: [{"loss": [(None, 1.0)]}], "loss", set()) is None


def test_axis_ticks_are_round_numbers() -> None:
    assert figures.ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert figures.ticks(0.013, 0.46) == [0.1, 0.2, 0.3, 0.4]
    assert figures.ticks(-3.0, 7.0) == [-2.0, 0.0, 2.0, 4.0, 6.0]
    assert figures.ticks(2.0, 2.0) == [2.0]
    assert figures.ticks(1.0, 3.0, whole=True) == [1.0, 2.0, 3.0]  # steps: no 1.5
    assert figures.log_ticks(0.0007, 0.15) == [0.001, 0.01, 0.1]


def test_the_plots_as_svg() -> None:
    by_lr, by_opt = figures.against_params(POINTS, "loss", set())
    found = figures.curves(POINTS, lambda p: SEEDED[p.record.job_id], "loss", set())
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
    [figure] = figures.against_params(alone, "loss", set())
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
        {p.record.job_id: p.final["loss"].mean for p in points if "loss" in p.final},
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
