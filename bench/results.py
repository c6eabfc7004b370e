#!/usr/bin/env python3
"""Benchmark: `compute results` of a sweep once its metrics are fetched. For sweeps of 100, 1,000 and
10,000 points (3 seeds each, 50 lines of 2 metrics per seed, every job ended, its metrics in
archive/metrics/ and marked done, as after a first call), it measures the wall time and peak memory of
`compute results --sort loss` (the table), `--json` and `--csv`, and of `compute report` (the page, with
its plots, and its size): the median of 3 runs, and the growth from the smallest to the largest sweep.
Target: a 1,000-point sweep's results under a second. Beside it, the floor: `compute --version`
(Python's start and the command line).

    python3 bench/results.py [--points 100,1000,10000] [--out bench/results/results.json]

Needs no test bed: nothing is asked of a host (every job has ended and is fetched).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from compute_platform.ledger import Ended, JobRecord, Ledger  # noqa: E402
from compute_platform.ledger import metrics as store  # noqa: E402

SEEDS = 3
LINES = 50


def build(folder: Path, points: int) -> None:
    ledger = Ledger(folder / "archive")
    rows, ends = [], []
    for i in range(points):
        record = JobRecord(
            "2026-12-01T00:00:00+00:00",
            "/p/b.yaml",
            "train",
            "localhost",
            "tmux",
            f"train.{i}",
            "train",
            sweep=json.dumps({"lr": 10 ** -(i % 5), "width": i // 5}),
            seeds="0,1,2",
            status_file=f"/tmp/none/{i}.status",
            run_id="run0",
            job_index=str(i),
        )
        rows.append(record)
        ends.append(Ended("2026-12-01T00:00:00+00:00", "localhost", record.job_id, "COMPLETED", "0"))
        for seed in range(SEEDS):
            data = "".join(
                json.dumps({"step": s, "loss": 1.0 / (s + 1) + i * 1e-4 + seed * 1e-3, "acc": s / LINES})
                + "\n"
                for s in range(LINES)
            )
            store.append(ledger, record, seed, data.encode())
        store.mark_done(ledger, record)
    ledger.append(rows)
    ledger.append_ended(ends)
    (folder / "hosts.yaml").write_text("localhost: {}\n")


def measure(folder: Path, *args: str) -> tuple[float, float]:
    """(seconds, peak MB) of one `compute ARGS`, median of 3."""
    times, peaks = [], []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "compute_platform", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - start)
        peaks.append(int(proc.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="100,1000,10000")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "results.json"))
    options = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="compute-bench-results-") as tmp:
        floor = measure(Path(tmp), "--version")
        report["floor"] = {"seconds": round(floor[0], 3), "peak_mb": round(floor[1], 1)}
        print(f"floor (compute --version): {floor[0]:.3f} s, {floor[1]:.0f} MB")
        for n in [int(p) for p in options.points.split(",")]:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            build(folder, n)
            subprocess.run(
                [sys.executable, "-m", "compute_platform", "jobs", "--summary"],
                cwd=folder,
                capture_output=True,
                check=True,
            )
            found = {}
            for name, args in (
                ("table", ["results", "--sort", "loss"]),
                ("json", ["results", "--json"]),
                ("csv", ["results", "--csv"]),
                ("report", ["report", "--sort", "loss", "-o", "report.html"]),
            ):
                seconds, peak = measure(folder, *args)
                found[name] = {"seconds": round(seconds, 3), "peak_mb": round(peak, 1)}
                size = (
                    f"  {(folder / 'report.html').stat().st_size / 1e6:.2f} MB page"
                    if name == "report"
                    else ""
                )
                print(f"{n:>6} points  {name:<6} {seconds:.3f} s  {peak:.0f} MB{size}")
                if name == "report":
                    found[name]["page_mb"] = round((folder / "report.html").stat().st_size / 1e6, 2)
            report[str(n)] = found
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
