"""`compute results`' pure part: reading JSON lines, the statistics over seeds, the ranking, the
table, the CSV and JSON shapes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from compute_platform.jobs import results
from compute_platform.jobs.results import Stat
from compute_platform.ledger import JobRecord


def aggregate(record: JobRecord, state: str, series: list[results.Series], higher: set[str]) -> results.Point:
    return results.aggregate(record, state, [results.summarize(s) for s in series], higher)


def record(job_id: str, lr: float, seeds: str = "0,1,2") -> JobRecord:
    return JobRecord(
        "t", "p", "train", "h", "tmux", job_id, "train", sweep=json.dumps({"lr": lr}), seeds=seeds
    )


def lines(*items: dict[str, object]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def test_json_lines_give_each_numeric_value_with_its_step() -> None:
    data = (
        lines({"step": 1, "loss": 0.5, "note": "x"}, {"loss": 0.25, "acc": True})
        + b'not json\n[1]\n{"loss": 9'
    )
    assert results.parse(data) == {"loss": [(1.0, 0.5), (None, 0.25)]}  # the torn last line is left out
    assert results.parse(lines({"loss": float("nan")})) == {}


def test_statistics_over_seeds() -> None:
    assert Stat.of([1.0, 2.0, 3.0]) == Stat(2.0, 1.0, 3)
    assert Stat.of([4.0]) == Stat(4.0, 0.0, 1)
    assert Stat.of([]) is None
    assert Stat(2.0, 1.0, 3).text() == "2 ± 1" and Stat(4.0, 0.0, 1).text() == "4"


def test_a_point_has_final_and_best_values_and_its_missing_seeds() -> None:
    series = [
        {"loss": [(1, 0.9), (2, 0.3), (3, 0.4)], "acc": [(3, 0.7)]},
        {"loss": [(1, 0.8), (2, 0.6)], "acc": [(2, 0.9)]},
        {},  # seed 2 wrote nothing
    ]
    point = aggregate(record("j0", 0.1), "COMPLETED", series, higher={"acc"})
    assert point.missing == ("2",)
    assert point.final["loss"] == Stat(0.5, pytest.approx(0.1414, abs=1e-4), 2)  # type: ignore[arg-type]
    assert point.best["loss"].mean == pytest.approx(0.45)  # min of each seed, then the mean
    assert point.best["acc"].mean == pytest.approx(0.8)  # higher is better
    running = aggregate(record("j1", 0.1, "0,1"), "RUNNING", [{"loss": [(None, 1.0)]}], set())
    assert running.missing == ("1",)  # a seed still to run has no file yet


def test_ranking_and_the_best_point_marked() -> None:
    a = aggregate(record("a", 0.1), "COMPLETED", [{"loss": [(None, 0.5)]}], set())
    b = aggregate(record("b", 0.01), "COMPLETED", [{"loss": [(None, 0.2)]}], set())
    c = aggregate(record("c", 1.0), "FAILED", [{}], set())
    assert [p.record.job_id for p in results.ranked([a, b, c], "loss", set())] == ["b", "a", "c"]
    assert [p.record.job_id for p in results.ranked([a, b, c], "loss", {"loss"})] == ["a", "b", "c"]
    text = results.table(results.ranked([a, b, c], "loss", set()), "loss", set())
    first = text.splitlines()[1]
    assert first.startswith("*") and "lr=0.01" in first and "seeds=" not in first
    assert text.splitlines()[3].split()[0] == "lr=1.0"  # no metric: last, no mark


def test_the_csv_and_json_shapes() -> None:
    a = aggregate(record("a", 0.1), "COMPLETED", [{"loss": [(None, 0.5)]}, {"loss": [(None, 0.7)]}], set())
    rows = list(csv.DictReader(io.StringIO(results.as_csv([a], "loss"))))
    assert (
        rows[0]["lr"] == "0.1"
        and float(rows[0]["loss_mean"]) == pytest.approx(0.6)
        and rows[0]["loss_n"] == "2"
    )
    assert rows[0]["missing_seeds"] == "2"
    data = json.loads(results.as_json([a], "loss", set()))
    assert data["version"] == 1 and data["points"][0]["final"]["loss"]["n"] == 2
    assert data["points"][0]["sweep"] == {"lr": 0.1} and data["points"][0]["missing_seeds"] == ["2"]


def test_the_hosts_answer_is_read_by_its_lengths() -> None:
    answer = b"@@compute-metrics 0 12 5\nabc\n\n@@compute-metrics 1 -1 0\n@@compute-metrics 2 3 3\n@@c"
    assert results._chunks(answer) == [(0, 12, b"abc\n\n"), (1, -1, b""), (2, 3, b"@@c")]


def test_a_file_the_program_writes_is_csv_or_json_lines() -> None:
    assert results.parse_any(b"step,acc,name\n1,0.5,x\n2,0.75,y\n3,") == {"acc": [(1.0, 0.5), (2.0, 0.75)]}
    assert results.parse_any(lines({"acc": 0.5})) == {"acc": [(None, 0.5)]}
    assert results.parse_any(b"") == {}


def test_the_output_s_matches_become_values() -> None:
    found = results._log_lines(
        b"val_loss=0.5\nacc: 0.9\nval_loss=oops\n",
        [("val_loss", r"val_loss=([0-9.]+)"), ("acc", r"acc: ([0-9.]+)")],
    )
    assert results.parse(found) == {"val_loss": [(None, 0.5)], "acc": [(None, 0.9)]}


def test_one_job_in_full_says_what_it_asked_and_used() -> None:
    from compute_platform.jobs import detail
    from compute_platform.jobs.query import Row
    from compute_platform.scheduling.backend import JobState
    from compute_platform.scheduling.slurm import Usage

    used = Usage(elapsed=725, max_rss_mb=3.1 * 1024, req_mem_mb=64 * 1024, cpu_seconds=2465, cpus=4)
    assert results.usage_line(used) == "asked 64G, used 3.1G (5%); 12m05s elapsed; CPU 85% of 4"
    job = JobRecord(
        "2026-12-01T10:00:00+00:00",
        "p",
        "train",
        "h",
        "slurm",
        "42",
        "train",
        sweep='{"lr": 0.1}',
        seeds="0,1",
    )
    point = aggregate(job, "COMPLETED", [{"loss": [(1, 0.5), (2, 0.25)]}, {}], set())
    shown = detail.lines(Row(job, JobState("COMPLETED", 0)), dataclasses.replace(point, usage=used))
    assert shown[0] == "job        42 on h (slurm), task 'train', name train"
    assert "used       asked 64G, used 3.1G (5%); 12m05s elapsed; CPU 85% of 4" in shown
    assert shown[-2:] == ["metrics    loss: 0.25 (best 0.25)", "           no value from seed(s) 1"]
    running = detail.lines(Row(job, JobState("RUNNING")), point)
    assert "used       known once it has ended (sacct)" in running


def test_a_replaced_job_in_full_says_what_replaced_it() -> None:
    from compute_platform.jobs import detail
    from compute_platform.jobs.query import Row
    from compute_platform.scheduling.backend import JobState

    job = JobRecord("2026-12-01T10:00:00+00:00", "p", "train", "h", "slurm", "100", "train")
    shown = detail.lines(Row(job, JobState("FAILED", 137), "101"), aggregate(job, "FAILED", [], set()))
    assert "replaced by  101 (compute jobs 101)" in shown


def test_the_task_says_how_its_points_rank_and_its_scripts_carry_it() -> None:
    from pydantic import ValidationError

    from compute_platform.scheduling.sources import METRICS_MARK, MetricSources
    from compute_platform.scheduling.sweep import MetricsSpec

    spec = MetricsSpec(from_log={"val": "val=([0-9.]+)"}, sort="val", max=("acc",))
    sources = spec.sources()
    assert MetricSources.in_script(f"#!/bin/bash\n{METRICS_MARK}{sources.to_json()}\n") == sources
    assert (sources.sort, sources.higher) == ("val", ("acc",))
    # a task without them writes what it wrote before (the reference scripts stay as they are)
    assert "sort" not in MetricsSpec(file="m.csv").sources().to_json()
    with pytest.raises(ValidationError, match="metric's name"):
        MetricsSpec(sort=" ")
    with pytest.raises(ValidationError):
        MetricsSpec(max="acc")  # type: ignore[arg-type]  # a list of names


def test_an_end_the_controller_may_undo_shows_its_usage_and_is_fetched_again(tmp_path: object) -> None:
    """A Slurm job that ended while the controller still knows it (it may be requeued): what sacct said
    is kept and shown, but the job is not done, so its metrics and usage are asked again; once its end
    is settled, it is done. A job that ended without the usage sacct knows yet is held."""
    from pathlib import Path

    from compute_platform.jobs.query import Jobs, Row
    from compute_platform.scheduling.backend import COMPLETED, JobState

    view = Jobs(Path(str(tmp_path)) / "archive")
    one, two = (
        dataclasses.replace(
            record(job_id, 0.1, seeds=""), scheduler="slurm", status_file=f"/o/{job_id}.status"
        )
        for job_id in ("11", "12")
    )
    said = b"asked|11\nasked|12\n11|00:00:05||100M|00:00:01|1|COMPLETED\n11.batch|00:00:05|10M||00:00:01|1|COMPLETED\n"
    metrics = lines({"loss": 1.0})

    def answer(new: bool) -> bytes:  # each file's size, and the bytes not fetched yet
        sent = metrics if new else b""
        return b"".join(results.HEADER + b"%d %d %d\n" % (n, len(metrics), len(sent)) + sent for n in (0, 1))

    def look(settled: bool) -> results._Fetch:
        fetch = results._Fetch(view, "h", [one, two], set())
        assert [(job_id, path) for job_id, path in fetch.ask] == [
            ("11", "/o/11.status"),
            ("12", "/o/12.status"),
        ]
        fetch._read_usage(said)
        fetch._read_metrics(answer(new=not results.store.fetched(view.ledger, one, None)))
        fetch.finish([Row(r, JobState(COMPLETED, 0, settled=settled)) for r in (one, two)])
        return fetch

    look(settled=False)
    assert results.store.usage(view.ledger, one)["max_rss_mb"] == 10.0  # type: ignore[index]
    assert not results.store.is_done(view.ledger, one)
    look(settled=True)
    assert results.store.is_done(view.ledger, one)
    assert not results.store.is_done(view.ledger, two)  # sacct has not said what it used yet
