#!/usr/bin/env python3
"""Benchmark: submit an N-point sweep (default 1,000) to the test bed's Slurm over SSH, end to end,
from `compute run` starting to its exit (the last ledger row is written before it exits):

  arrays     compute run, `array: auto` (one sbatch per MaxArraySize elements)
  per-job    compute run, `array: false` (one sbatch per point, all over one SSH connection)
  ssh-loop   a plain shell `for` loop of `ssh cluster sbatch --wrap ...` (records nothing)
  large      compute run, `array: auto`, of a --large-points sweep (default 100,000): no submit limit,
             so compute submits every point itself (100 arrays of 1,001)

Jobs are submitted held (`--hold`) and cancelled after each variant, so running jobs do not slow
the next variant down; the figures are submission + recording only.

    python3 bench/sweep.py [--points 1000] [--loop-points 1000] [--large-points 100000]
                           [--variants arrays,per-job,ssh-loop,large] [--state /tmp/compute-bench-bed]

Uses the test bed at $COMPUTE_TESTBED when it is up (its MaxJobCount must hold the large sweep:
`scripts/testbed up --hosts 0 --max-job-count 200000`), else brings one up so (root needed) and
takes it down at the end.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_testbed() -> ModuleType:
    """The test bed package (tests/support/testbed.py), importable from the repository's root."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support import testbed

    return testbed


def project(folder: Path, bed: object, points: int, array: bool | str) -> None:
    hosts = yaml.safe_load(Path(bed.hosts_yaml).read_text())  # type: ignore[attr-defined]
    cluster = {**hosts[bed.slurm_alias], "save_path": "~/compute/bench"}  # type: ignore[attr-defined]
    (folder / "hosts.yaml").write_text(yaml.safe_dump({"cluster": cluster}))
    (folder / "configs.yaml").write_text("default: {cpus: 1, time: '00:05:00'}\n")
    # a large sweep as a product, as large ones are written (a list of 100,000 values alone takes
    # ruamel ~25 s to read)
    axes = {"i": list(range(points))}
    if points > 1000 and points % 1000 == 0:
        axes = {"i": list(range(1000)), "j": list(range(points // 1000))}
    task = {"cmd": "echo", "sweep": axes, "array": array, "sbatch": {"hold": True}}
    book = {
        "inventory": {"hosts": "hosts.yaml", "configs": "configs.yaml"},
        "tasks": [{"name": "bench", "hosts": "cluster", "slurm": task}],
    }
    (folder / "book.yaml").write_text(yaml.safe_dump(book, sort_keys=False))


def ssh(bed: object, command: str) -> str:
    proc = subprocess.run(
        ["ssh", "-F", str(bed.ssh_config), "cluster", command],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise SystemExit(f"ssh cluster {command!r} failed: {proc.stderr}")
    return proc.stdout


def run_compute(bed: object, points: int, array: bool | str) -> float:
    with tempfile.TemporaryDirectory(prefix="compute-bench-") as tmp:
        folder = Path(tmp)
        project(folder, bed, points, array)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "compute_platform", "run", "-q", "book.yaml"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"compute run failed:\n{proc.stdout}\n{proc.stderr}")
        with open(folder / "archive" / "job.csv", newline="") as f:
            rows = len(list(csv.DictReader(f)))
        if rows != points:
            raise SystemExit(f"expected {points} ledger rows, found {rows}")
    return seconds


def run_loop(bed: object, points: int) -> float:
    loop = (
        f"for i in $(seq {points}); do "
        f"ssh -F {bed.ssh_config} cluster \"sbatch --parsable --hold -o /dev/null --wrap 'echo $i'\" "  # type: ignore[attr-defined]
        "> /dev/null || exit 1; done"
    )
    start = time.perf_counter()
    subprocess.run(["bash", "-c", loop], check=True, timeout=3600)
    return time.perf_counter() - start


def max_job_count(bed: object) -> int:
    out = ssh(bed, "scontrol show config | sed -n 's/^MaxJobCount *= *//p'").strip()
    return int(out) if out.isdigit() else 10000


def cancel_all(bed: object) -> None:
    ssh(
        bed, 'scancel -u "$USER"; while [ -n "$(squeue -h -u "$USER" -t PD,R,CG -o %i)" ]; do sleep 0.2; done'
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument(
        "--loop-points", type=int, default=None, help="points for the ssh loop (default: --points)"
    )
    parser.add_argument("--large-points", type=int, default=100_000, help="points of the `large` variant")
    parser.add_argument("--variants", default="arrays,per-job,ssh-loop,large", help="comma-separated")
    parser.add_argument("--state", default="/tmp/compute-bench-bed")
    args = parser.parse_args()
    loop_points = args.loop_points or args.points
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    # every held array element counts against MaxJobCount (Slurm's default: 10,000)
    room = 2 * max(args.points, args.large_points if "large" in variants else 0)

    tbm = load_testbed()
    reuse = os.environ.get("COMPUTE_TESTBED")
    owned = None
    if reuse and tbm.is_up(Path(reuse)):
        bed = tbm.Testbed.load(Path(reuse))
    else:
        owned = Path(args.state)
        bed = tbm.up(owned, hosts=0, max_job_count=max(10000, room))
    os.environ["COMPUTE_KNOWN_HOSTS"] = str(bed.known_hosts)
    os.environ.setdefault("COMPUTE_SSH_CONFIG", str(bed.ssh_config))
    try:
        if "large" in variants and max_job_count(bed) < args.large_points + 10:
            raise SystemExit(
                f"the bed's MaxJobCount ({max_job_count(bed)}) cannot hold {args.large_points} held jobs: "
                f"bring it up with --max-job-count {room}"
            )
        cancel_all(bed)
        runs = {
            "arrays": lambda: (args.points, run_compute(bed, args.points, "auto")),
            "per-job": lambda: (args.points, run_compute(bed, args.points, False)),
            "ssh-loop": lambda: (loop_points, run_loop(bed, loop_points)),
            "large": lambda: (args.large_points, run_compute(bed, args.large_points, "auto")),
        }
        results: dict[str, tuple[int, float]] = {}
        for name in variants:
            results[name] = runs[name]()
            cancel_all(bed)
    finally:
        if owned is not None:
            tbm.down(owned)

    first = next(iter(results.values()))
    base = first[1] / first[0]
    print(f"{'variant':<10} {'points':>7} {'seconds':>9} {'ms/point':>9} {'vs ' + next(iter(results)):>10}")
    for name, (points, seconds) in results.items():
        per_point = seconds / points
        print(f"{name:<10} {points:>7} {seconds:>9.2f} {1000 * per_point:>9.2f} {per_point / base:>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
