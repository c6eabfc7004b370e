#!/usr/bin/env python3
"""Time pushing a 100 MB file and a 1,000-file tree to a loopback sshd with compute's `copy` task,
`scp` and `rsync`, and print the ratios.

    python3 bench/copy_bench.py [--runs N] [--state DIR]

Brings up one loopback sshd with scripts/testbed.py (needs root: it creates the test user), or
reuses the bed in --state / $COMPUTE_TESTBED when it is up. Every contender copies the same data to
the same sshd as the same user, into a destination emptied before each run (so rsync copies
everything too). Runs are interleaved after one warm-up round; a time is the median of --runs.
Contenders:
  compute        `compute run book.yaml` with one copy task: the whole process, as a user sees it
                 (Python start-up, imports, connecting included)
  compute (API)  transfer.push on a connection already open: the transfer alone
  scp            OpenSSH scp (SFTP protocol), `-r` for the tree
  rsync          rsync -a over ssh
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

# This script's directory comes first on sys.path, and its name would shadow the standard `copy`
# module (dataclasses and pydantic import it): take the directory out before anything imports it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

FILE_MB = 100
TREE_FILES = 1000


def testbed_module() -> ModuleType:
    """The test bed package (tests/support/testbed.py), importable from the repository's root."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support import testbed

    return testbed


def make_data(folder: Path) -> tuple[Path, Path]:
    """A 100 MB file of random bytes and a tree of 1,000 small files (1-8 kB) in 20 directories."""
    folder.mkdir(parents=True, exist_ok=True)
    big = folder / "big.bin"
    if not big.exists() or big.stat().st_size != FILE_MB * 1_000_000:
        with open(big, "wb") as f:
            for _ in range(FILE_MB):
                f.write(os.urandom(1_000_000))
    tree = folder / "tree"
    if not tree.exists():
        rng = random.Random(0)
        for i in range(TREE_FILES):
            path = tree / f"dir{i % 20:02d}" / f"file{i:04d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randint(1000, 8000)))
    return big, tree


class Bench:
    def __init__(self, tb: Any, work: Path) -> None:
        self.tb = tb
        self.port = tb.hosts["h1"]
        self.work = work
        self.dest = Path(tb.home) / "compute-bench-copy"
        self.ssh = [
            "-F", "/dev/null", "-i", str(tb.client_key), "-o", f"UserKnownHostsFile={tb.known_hosts}",
            "-o", "BatchMode=yes",
        ]  # fmt: skip
        self.target = f"{tb.user}@127.0.0.1:{self.dest}/"
        self.host: Any = None

    def reset(self) -> None:
        """An empty destination, owned by the test user, before every run."""
        shutil.rmtree(self.dest, ignore_errors=True)
        self.dest.mkdir()
        shutil.chown(self.dest, self.tb.user, self.tb.user)

    def compute_cli(self, src: Path) -> None:
        book = self.work / "book.yaml"
        book.write_text(
            f"inventory: {{hosts: {self.tb.hosts_yaml}}}\n"
            f"tasks:\n  - {{hosts: h1, copy: {{mode: push, src: '{src}', dest: '{self.dest}'}}}}\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        env["COMPUTE_KNOWN_HOSTS"] = str(self.tb.known_hosts)
        subprocess.run(
            [sys.executable, "-m", "compute_platform", "run", "-q", str(book)],
            check=True, cwd=self.work, env=env, stdout=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip

    def compute_floor(self) -> None:
        """The same `compute run` with a `cmd: true` task: start-up, loading, connecting."""
        book = self.work / "floor.yaml"
        book.write_text(
            f"inventory: {{hosts: {self.tb.hosts_yaml}}}\ntasks:\n  - {{hosts: h1, cmd: 'true'}}\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        env["COMPUTE_KNOWN_HOSTS"] = str(self.tb.known_hosts)
        subprocess.run(
            [sys.executable, "-m", "compute_platform", "run", "-q", str(book)],
            check=True, cwd=self.work, env=env, stdout=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip

    def compute_api(self, src: Path) -> None:
        from compute_platform.hosts import transfer

        if self.host is None:
            from compute_platform.hosts import make_host
            from compute_platform.input.inventory import load_hosts

            self.host = make_host(load_hosts(Path(self.tb.hosts_yaml))[0]["h1"])
            self.host.connect()
        transfer.push(self.host, src, str(self.dest))

    def scp(self, src: Path) -> None:
        recursive = ["-r"] if src.is_dir() else []
        subprocess.run(["scp", "-q", *recursive, *self.ssh, "-P", str(self.port), str(src), self.target],
                       check=True, timeout=600)  # fmt: skip

    def rsync(self, src: Path) -> None:
        shell = " ".join(["ssh", *self.ssh, "-p", str(self.port)])
        subprocess.run(["rsync", "-a", "-e", shell, str(src), self.target], check=True, timeout=600)

    def check(self, src: Path) -> None:
        copied = self.dest / src.name
        if src.is_dir():
            count = sum(len(files) for _, _, files in os.walk(copied))
            assert count == TREE_FILES, f"{count} files copied"
        else:
            assert copied.stat().st_size == src.stat().st_size


def measure(
    bench: Bench, src: Path, contenders: dict[str, Callable[[Path], None]], runs: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(runs + 1):  # round 0 warms caches up and is not counted
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            bench.reset()
            start = time.perf_counter()
            contenders[name](src)
            elapsed = time.perf_counter() - start
            bench.check(src)
            if round_:
                times[name].append(elapsed)
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{title}")
    print(f"  {'contender':<15}{'median':>9}{'min':>9}{'max':>9}{'vs scp':>9}{'vs rsync':>10}")
    for name, t in times.items():
        print(
            f"  {name:<15}{med[name]:>8.3f}s{min(t):>8.3f}s{max(t):>8.3f}s"
            f"{med[name] / med['scp']:>8.2f}x{med[name] / med['rsync']:>9.2f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state", default=os.environ.get("COMPUTE_TESTBED"))
    args = parser.parse_args()
    for program in ("scp", "rsync"):
        if not shutil.which(program):
            print(
                f"bench/copy_bench.py: `{program}` is missing (apt-get install -y openssh-client rsync)",
                file=sys.stderr,
            )
            return 1
    tbm = testbed_module()
    reuse = args.state and tbm.is_up(Path(args.state))
    state = Path(args.state) if reuse else Path(f"/tmp/compute-bench-copy-{os.getpid()}")
    tb = tbm.Testbed.load(state) if reuse else tbm.up(state, hosts=1, slurm=False)
    work = Path("/tmp/compute-bench-copy-data")
    try:
        big, tree = make_data(work)
        bench = Bench(tb, work)
        contenders = {
            "compute": bench.compute_cli,
            "compute (API)": bench.compute_api,
            "scp": bench.scp,
            "rsync": bench.rsync,
        }
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, loopback sshd on port {bench.port}, "
              f"median of {args.runs} runs")  # fmt: skip
        report(f"push one {FILE_MB} MB file", measure(bench, big, contenders, args.runs))
        report(f"push a tree of {TREE_FILES} files", measure(bench, tree, contenders, args.runs))
        floor = []
        for _ in range(args.runs):
            start = time.perf_counter()
            bench.compute_floor()
            floor.append(time.perf_counter() - start)
        print(f"\n`compute run` of one `cmd: true` task (start-up + connect, no copy): "
              f"median {statistics.median(floor):.3f}s")  # fmt: skip
        shutil.rmtree(bench.dest, ignore_errors=True)
    finally:
        if not reuse:
            tbm.down(state)
            shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
