#!/usr/bin/env python3
"""Benchmark: the ledger at research-group scale. For ledgers of 10^4, 10^5 (and, with --rows, 10^6)
rows of tmux jobs on localhost, generated (one 1,000-job sweep per run, one run a few minutes after the
other; every job ended, its final state in archive/states.csv as after a first look: a warm-up
`compute jobs --summary` learns the last run's and builds the ledger's index), it measures the wall
time, CPU time and peak memory of:

  jobs        `compute jobs` (the default view: open jobs and the latest run's)
  summary     `compute jobs --summary`
  grid        `compute jobs --grid` (the latest task)
  logs        `compute logs JOB` (the last job)
  last        `compute jobs --last 100`
  run         `compute jobs --run run0` (the oldest run: its rows and ends at the start of the files)
  all         `compute jobs --all`
  rebuild     `compute jobs` without archive/.index.json (as after a rewrite of job.csv): the index
              is built again from the whole files

(the median of 3 runs of each), and reports for each the growth from the smallest to the largest
ledger (the target: under 1.5x from 10^4 to 10^6, with `compute jobs` under 0.5 s and 150 MB at 10^6).

    python3 bench/ledger.py [--rows 10000,100000,1000000] [--out bench/results/ledger.json]

Needs no test bed: localhost runs the state queries, on the open jobs' status files.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from compute_platform.ledger import INDEX_FILE, JOBS_FILE, STATES_FILE, Ended, JobRecord, Ledger  # noqa: E402

OPEN = 1000  # the latest run's jobs, not in states.csv yet: the warm-up asks about them once
PER_TASK = 1000
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
COMMANDS = {
    "jobs": ["jobs"],
    "summary": ["jobs", "--summary"],
    "grid": ["jobs", "--grid"],
    "logs": ["logs", "LAST"],
    "last": ["jobs", "--last", "100"],
    "run": ["jobs", "--run", "run0"],
    "all": ["jobs", "--all"],
    "rebuild": ["jobs"],  # after removing the index
}
BATCH = 100_000  # rows generated and appended at a time
REPEAT = 3  # runs of each command: the median is reported (the machine may be busy)


def make_ledger(folder: Path, rows: int) -> str:
    """`rows` tmux rows on localhost; the last OPEN still running (their status files absent), the
    others ended with their final state in states.csv. Returns the last job's id."""
    logs = folder / "logs"
    logs.mkdir(parents=True)
    (folder / "hosts.yaml").write_text("localhost: {}\n")
    (logs / f"{rows - 1}.log").write_text("the last job's output\n")
    ledger = Ledger(folder / "archive")
    for start in range(0, rows, BATCH):  # a batch at a time: 10^6 records at once take GBs
        numbers = range(start, min(rows, start + BATCH))
        records = [make_row(folder, i) for i in numbers]
        ledger.append(records)
        ledger.append_ended(
            [
                Ended("2026-01-02T00:00:00+00:00", "localhost", r.job_id, "COMPLETED", "0")
                for i, r in zip(numbers, records, strict=True)
                if i < rows - OPEN
            ]
        )
    return make_row(folder, rows - 1).job_id


def make_row(folder: Path, i: int) -> JobRecord:
    task, index = divmod(i, PER_TASK)
    logs = folder / "logs"
    return JobRecord(
        (START + timedelta(minutes=5 * task)).isoformat(timespec="seconds"),
        str(folder / "book.yaml"),
        f"task{task}",
        "localhost",
        "tmux",
        f"task{task}.{index}",
        f"task{task}",
        command=f"python train.py --lr {index * 1e-4:g} --seed 0",
        sweep=json.dumps({"lr": index * 1e-4}),
        job_index=str(index),
        run_id=f"run{task}",
        log_out=str(logs / f"{i}.log"),
        status_file=str(logs / f"{i}.status"),
        hosts_file=str(folder / "hosts.yaml"),
    )


def measure(folder: Path, argv: list[str], before: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Wall time, CPU time (user + system: less sensitive than the wall time to other work on the
    machine) and peak memory of one command (GNU time's %U %S %M), the median of REPEAT runs, each
    after `before()`."""
    runs = []
    for _ in range(REPEAT):
        before()
        timed = ["/usr/bin/time", "-f", "%U %S %M", sys.executable, "-m", "compute_platform", *argv]
        start = time.monotonic()
        done = subprocess.run(timed, cwd=folder, capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
        user, system, peak_kb = done.stderr.strip().splitlines()[-1].split()
        runs.append((wall, float(user) + float(system), int(peak_kb) / 1024))
    return {
        "seconds": round(statistics.median(r[0] for r in runs), 3),
        "cpu_seconds": round(statistics.median(r[1] for r in runs), 2),
        "peak_mb": round(statistics.median(r[2] for r in runs), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="10000,100000", help="ledger sizes, comma-separated")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ledger.json"))
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="compute-ledger-") as tmp:
            folder = Path(tmp)
            last = make_ledger(folder, rows)
            measure(folder, ["jobs", "--summary"])  # the warm-up: the last run's states are learnt
            index = folder / "archive" / INDEX_FILE
            results[str(rows)] = {
                name: measure(
                    folder,
                    [last if word == "LAST" else word for word in argv],
                    functools.partial(index.unlink, missing_ok=True) if name == "rebuild" else lambda: None,
                )
                for name, argv in COMMANDS.items()
            }
            files = ", ".join(
                f"{name} {(folder / 'archive' / name).stat().st_size / 2**20:.1f} MB"
                for name in (JOBS_FILE, STATES_FILE, INDEX_FILE)
            )
        print(
            f"{rows:>8} rows ({files}): "
            + ", ".join(
                f"{k} {v['seconds']} s ({v['cpu_seconds']} cpu) {v['peak_mb']} MB"
                for k, v in results[str(rows)].items()
            )
        )
    small, large = str(sizes[0]), str(sizes[-1])
    growth = {
        name: {
            "time": round(results[large][name]["seconds"] / results[small][name]["seconds"], 2),
            "cpu": round(results[large][name]["cpu_seconds"] / results[small][name]["cpu_seconds"], 2),
            "memory": round(results[large][name]["peak_mb"] / results[small][name]["peak_mb"], 2),
        }
        for name in COMMANDS
    }
    print(
        f"growth {small} -> {large} rows (time, cpu, memory): "
        + ", ".join(f"{k} {v['time']}x {v['cpu']}x {v['memory']}x" for k, v in growth.items())
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "growth": growth}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
