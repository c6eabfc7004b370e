#!/usr/bin/env python3
"""Benchmark compute against Ansible, pyinfra, fabric and what SSH itself costs (the floor).

    python3 bench/run.py [--quick] [--scenario A,B,C,D,E,F,G] [--runs N] [--state DIR]

Brings up loopback sshd hosts (and a single-node Slurm for E; for G, far hosts in network
namespaces behind 50 ms round trips, bench/suite/far.py) with scripts/testbed.py, installs the
peers into bench/.venv (bench/requirements.txt, plus this project, editable), then times every
contender of a scenario interleaved (A B C, B C A, ...): one warm-up round, then --runs rounds
(5; 3 with --quick). A time is the whole process, from its start to its exit, as a user sees it.
Prints a table (median, min–max, ratio to the floor, how much faster compute is than each peer,
the issue's targets), writes bench/results/<date>.json and .png and copies them to docs/
(bench.*; bench-far.* for G alone).
Needs root (the test bed creates the test user and starts sshd).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Import this suite as the package `bench.suite` from the repository root, with bench/ itself off
# the import path (its scripts must never shadow a module).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

from bench.suite.report import Result, Timing, as_json, from_json, plot, table  # noqa: E402
from bench.suite.scenarios import Contender, Group, Setting, scenarios, write_inventories  # noqa: E402

BENCH = Path(HERE)
ROOT = BENCH.parent
VENV = BENCH / ".venv"
REQUIREMENTS = BENCH / "requirements.txt"
ALL = "ABCDEFG"
DEFAULT = "ABCDEF"  # G (far hosts, network namespaces) only when asked for
# Variables of this shell that a user's terminal does not have and that change what is measured:
# no .pyc files written (every import compiles again) and unbuffered output.
DROPPED_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "VIRTUAL_ENV", "PYTHONPATH")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- set-up


def ensure_venv(python: str) -> Path:
    """bench/.venv with the pinned peers and this project; reinstalled when requirements change."""
    stamp = VENV / "requirements.sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want:
        return VENV
    say(f"creating {VENV} (ansible-core, pyinfra, fabric, matplotlib from the package index)...")
    subprocess.run([python, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([*pip, "-e", str(ROOT)], check=True)
    stamp.write_text(want + "\n")
    return VENV


def load_testbed() -> ModuleType:
    """The test bed package (tests/support/testbed.py), importable from the repository's root."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support import testbed

    return testbed


def child_env(setting: Setting) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    work = setting.work
    env.update(
        PATH=f"{setting.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        # compute: the hosts file says everything; never read the developer's ~/.ssh/config
        COMPUTE_SSH_CONFIG=str(work / "no-ssh-config"),
        COMPUTE_KNOWN_HOSTS=str(setting.bed.known_hosts),
        # the master sockets of `connection: openssh` hosts (G), not the developer's
        COMPUTE_CONTROL_DIR=str(work / "cm"),
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_HOME=str(work / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        PYINFRA_PROGRESS="off",
    )
    return env


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory_gib": f"{memory:.0f}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": ssh,
    }


def versions(venv: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m\n"
        "for p in ('compute', 'ansible-core', 'pyinfra', 'fabric', 'paramiko', 'pydantic'):\n"
        "    print(p, m.version(p))\n"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


# --------------------------------------------------------------------------- timing


class Failed(Exception):
    pass


def run_once(c: Contender, env: dict[str, str], logs: Path) -> float | None:
    """Seconds from the process's start to its exit (None when it hit its time limit)."""
    if c.reset is not None:
        c.reset()
    if c.counter is not None:
        c.counter.mark()
    log = logs / f"{c.name.replace(' ', '_').replace('/', '_')}.log"
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            c.argv, cwd=c.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        # Popen.wait(timeout=...) polls with sleeps growing to 50 ms, which rounds every time up by
        # as much: wait without a timeout (one blocking waitpid) and let a timer enforce the limit.
        limit = threading.Timer(c.timeout, proc.kill)
        limit.start()
        try:
            code = proc.wait()
        finally:
            limit.cancel()
        seconds = time.perf_counter() - start
        if code < 0 and seconds >= c.timeout:
            return None
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise Failed(f"{c.name} exited with {code}:\n{tail}")
    wrong = c.verify() if c.verify is not None else None
    if wrong:
        raise Failed(f"{c.name} exited with 0 but {wrong}")
    return seconds * c.extrapolate


def time_group(group: Group, env: dict[str, str], runs: int, logs: Path) -> Result:
    """Warm-up round, then `runs` rounds; each round runs every contender once, in a rotating order."""
    timings = {c.name: Timing(c.name, c.role, note=c.note) for c in group.contenders}
    done: dict[str, int] = {c.name: 0 for c in group.contenders}
    say(f"{group.title}: {len(group.contenders)} contenders, 1 warm-up + {runs} runs")
    for round_ in range(runs + 1):
        shift = round_ % len(group.contenders)
        for c in group.contenders[shift:] + group.contenders[:shift]:
            t = timings[c.name]
            limited = c.max_runs is not None
            if t.timed_out is not None or (limited and done[c.name] >= (c.max_runs or 0)):
                continue
            if round_ == 0 and not limited:
                run_once(c, env, logs)  # warm-up: caches, .pyc files, ansible's ControlPersist
                continue
            seconds = run_once(c, env, logs)
            done[c.name] += 1
            if seconds is None:
                t.timed_out = c.timeout * c.extrapolate
                say(f"  {c.name}: stopped after {c.timeout:g} s")
            else:
                t.runs.append(seconds)
                for figure, value in (c.counter.count() if c.counter else {}).items():
                    t.counts.setdefault(figure, []).append(value)
    if group.memory:
        for c in group.contenders:
            timings[c.name].peak_rss_mb = peak_memory(c, env, logs)
    return Result(group, [timings[c.name] for c in group.contenders])


def peak_memory(c: Contender, env: dict[str, str], logs: Path) -> float:
    """Peak resident memory (MB) of the contender's whole process tree, in one extra untimed run:
    the sum over its processes (ansible forks one per host), sampled every 10 ms."""
    if c.reset is not None:
        c.reset()
    with open(logs / "memory.log", "wb") as out:
        proc = subprocess.Popen(
            c.argv, cwd=c.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.01)
    return round(peak / 1024, 1)


def tree_rss(root: int) -> int:
    """kB of resident memory of `root` and all its descendants."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields.get("PPid", "0").strip() or 0)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 5, shorter time limits")
    parser.add_argument(
        "--scenario", default=DEFAULT, help=f"comma-separated letters among {ALL} (default: {DEFAULT})"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="timed runs per contender (default 5, --quick 3)"
    )
    parser.add_argument(
        "--state", default="/tmp/compute-bench", help="working directory (must be under /tmp)"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not copy the plot and JSON to docs/")
    parser.add_argument("--replot", metavar="JSON", help="only print and plot a saved run again")
    args = parser.parse_args(argv)
    args.letters = [x.strip().upper() for x in args.scenario.replace(",", " ").split() if x.strip()]
    args.letters = [c for part in args.letters for c in part]
    unknown = [x for x in args.letters if x not in ALL]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: choose among {', '.join(ALL)}")
    args.runs = args.runs or (3 if args.quick else 5)
    args.load_before = os.getloadavg()[0]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    venv = ensure_venv(sys.executable)
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() != venv.resolve():
        # the rest (plotting with matplotlib included) runs in the bench's own environment
        os.execv(python, [str(python), __file__, *(sys.argv[1:] if argv is None else argv)])
    if args.replot:
        return replot(Path(args.replot), args.no_docs)
    tbm = load_testbed()
    state = Path(args.state)
    bed_dir, work = state / "bed", state / "work"
    hosts = 32 if "F" in args.letters else 8
    say(f"bringing up {hosts} sshd hosts{' and Slurm' if 'E' in args.letters else ''} in {bed_dir}...")
    try:
        bed = tbm.up(bed_dir, hosts=hosts, slurm="E" in args.letters)
    except tbm.TestbedError as e:
        say(f"error: cannot bring the test bed up: {e}")
        return 1
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        logs = work / "logs"
        logs.mkdir()
        setting = Setting(bed, venv, work, args.quick)
        write_inventories(setting)
        env = setting.env = child_env(setting)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(ROOT / "src")], check=True, env=env
        )
        makers = scenarios(setting)
        results: list[Result] = []
        for letter in args.letters:
            if letter not in makers:
                say(f"scenario {letter}: not available yet, skipped")
                continue
            for group in makers[letter]():
                results.append(time_group(group, env, args.runs, logs))
    except (Failed, RuntimeError) as e:  # RuntimeError: a scenario's set-up (tbm.TestbedError is one)
        say(f"error: {e}")
        return 1
    finally:
        for cleanup in setting.cleanups if "setting" in locals() else []:
            cleanup()
        tbm.down(bed_dir)
    report(results, venv, args)
    return 0


def make_caption(now: dt.datetime, info: dict[str, str], load: float, runs: int, quick: bool) -> str:
    return (
        f"compute bench, {now:%Y-%m-%d %H:%M}: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB\n"
        f"load average {load:.1f} before the run; {'quick, ' if quick else ''}{runs} runs after a warm-up"
    )


def replot(path: Path, no_docs: bool) -> int:
    """Print the table and draw the plot of a saved run again (e.g. after changing the plot)."""
    document = json.loads(path.read_text())
    results = from_json(document["scenarios"])
    print(table(results))
    when = dt.datetime.fromisoformat(document["date"])
    caption = make_caption(
        when, document["machine"], document.get("load_before", 0.0), document["runs"], False
    )
    png = path.with_suffix(".png")
    plot(results, png, caption)
    say(f"wrote {png}")
    if not no_docs:
        docs = ROOT / "docs" / f"{docs_name(results)}.png"
        shutil.copy(png, docs)
        say(f"copied to {docs}")
    return 0


def report(results: list[Result], venv: Path, args: argparse.Namespace) -> None:
    now = dt.datetime.now()
    info = machine()
    text = table(results)
    print(text)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stem = now.strftime("%Y-%m-%d-%H%M%S")
    caption = make_caption(now, info, args.load_before, args.runs, args.quick)
    document = {
        "version": 1,
        "date": now.isoformat(timespec="seconds"),
        "command": "python3 bench/run.py " + " ".join(sys.argv[1:]),
        "runs": args.runs,
        "machine": info,
        # other work on the machine: the 1-minute load average before the run (during it, the
        # benchmark's own processes dominate it)
        "load_before": round(args.load_before, 2),
        "versions": versions(venv),
        "scenarios": as_json(results),
    }
    (out / f"{stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(results, out / f"{stem}.png", caption)
    (out / f"{stem}.txt").write_text(caption + "\n" + text + "\n")
    say(f"\nwrote {out / stem}.json, .png and .txt")
    if not args.no_docs:
        docs = ROOT / "docs" / docs_name(results)
        shutil.copy(out / f"{stem}.png", docs.with_suffix(".png"))
        shutil.copy(out / f"{stem}.json", docs.with_suffix(".json"))
        say(f"copied to {docs}.png and .json")


def docs_name(results: list[Result]) -> str:
    """docs/bench.* for the loopback scenarios; G alone (far hosts) has its own, docs/bench-far.*."""
    far = bool(results) and all(r.group.key.startswith("G") for r in results)
    return "bench-far" if far else "bench"


if __name__ == "__main__":
    sys.exit(main())
