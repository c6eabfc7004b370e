"""The original tool's playbooks, as its users wrote them (the project in tests/original/: hosts.yaml,
configs.yaml, playbooks/*.yaml), checked, dry-run and then run for real on the test bed through the
CLI, from the project folder, as `python3 compute.py playbooks/x.yaml` was run.

Every command of the corpus runs a small recorder program that prints, once per process, the argv
it was given and what it sees (seed, Slurm job id, W&B variables, working directory). Each job's
argv, for every seed, is compared with the argv the original tool gave, written out by hand below
from its code (xp.py, slurm.py and, for the `srun:` form, its compute.py of 2022): args vary
fastest and the last sweep key slowest; `--key=value`, `--key w1 w2` for a value with blanks, a bare
flag for true, nothing for false; `$seed` is each seed in turn and nothing else is appended; and
the CPU layout is `-N ceil(cpus/cpus_per_node) -n cpus (or nodes*cpus_per_node beyond one node)
--ntasks-per-core=1 --threads-per-core=1`.

For the real runs the corpus is copied and only what names the user's machines changes: each
host's address, port, user, key and known_hosts (from the bed's hosts.yaml), the Slurm hosts'
cpus_per_node (the bed's node), the user's folders /home/jdoe and /scratch/jdoe (a private
folder of the bed user's home, removed afterwards), and a save_path for the workstations.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from compute_platform.ledger import JobRecord, Ledger
from tests.integration.envtools import as_user, chown_tree, user_workspace
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import host_entry
from tests.support.waiting import wait_jobs

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "original"
BOOKS = sorted(p.name for p in (CORPUS / "playbooks").glob("*.yaml"))

# The corpus' hosts -> the bed's (both clusters are aliases of the bed's one Slurm cluster).
BED_ALIASES = {"cluster_a": "cluster", "cluster_b": "cluster", "ws1": "h1", "ws2": "h2"}
# The user's folders on those hosts -> folders below the private folder of one test.
FOLDERS = {"/home/jdoe": "home", "/scratch/jdoe": "scratch"}
COMMIT = "git -c user.name=Test -c user.email=test@example.org commit -q"

RECORDER = """\
import json, os, sys, time

KEYS = ("SEED", "SLURM_JOB_ID", "SLURM_PROCID", "WANDB_MODE", "WANDB_DIR", "OMP_NUM_THREADS", "XP_SITE")
seen = {key: os.environ.get(key) for key in KEYS}
seen["argv"] = sys.argv[1:]
seen["cwd"] = os.getcwd()
seen["time"] = time.time()
seen["version"] = open("VERSION").read().strip() if os.path.exists("VERSION") else None
print("RECORD " + json.dumps(seen), flush=True)
"""

# -- what `compute check` says --------------------------------------------------------------------

LITERAL = "reaches the program as written: the original tool let the shell expand"
TMUX_SEEDS = "the original tool's tmux task ignored seeds (it ran each command once)"
# playbook -> (line, what the warning says) for every warning, in order
WARNINGS: dict[str, list[tuple[int, str]]] = {
    "deploy.yaml": [],
    "es_sweep.yaml": [(15, "task 'ES sweep': 'parallel' has no effect on Slurm jobs")],
    "gpu.yaml": [],
    "heavy.yaml": [
        (19, f"task 'Big runs': '--out=$HOME/runs --env=humanoid' {LITERAL}"),
        (24, "task 'Clean up': 'scatter' only spreads slurm and tmux jobs: no effect here"),
    ],
    "noargs.yaml": [],
    "procgen.yaml": [],
    "scatter.yaml": [],
    "tmux.yaml": [
        (13, f"task 'One after the other': {TMUX_SEEDS}"),
        (28, f"task 'All at once': {TMUX_SEEDS}"),
    ],
}


def copy_corpus(folder: Path) -> Path:
    shutil.copytree(CORPUS, folder)
    return folder


def test_every_playbook_of_the_corpus_has_its_expectations() -> None:
    assert BOOKS and set(BOOKS) == set(WARNINGS)


@pytest.mark.parametrize("book", BOOKS)
def test_check_passes_and_warns_where_the_original_ran_differently(book: str, tmp_path: Path) -> None:
    project = copy_corpus(tmp_path / "project")
    proc = compute("check", f"playbooks/{book}", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"playbooks/{book}: OK ("), proc.stdout
    found = []
    for line in proc.stderr.splitlines():
        match = re.fullmatch(rf"warning: playbooks/{re.escape(book)}:(\d+):\d+: (.*)", line)
        assert match, f"not a warning with the playbook's file:line: {line!r}"
        found.append((int(match.group(1)), match.group(2)))
    expected = WARNINGS[book]
    assert len(found) == len(expected), found
    for (line, text), (want_line, want_text) in zip(found, expected, strict=True):
        assert line == want_line and text.startswith(want_text), (line, text)


def sbatch_directives(dry_run: str) -> dict[str, list[list[str]]]:
    """host -> the `#SBATCH` lines of each script `compute run --dry-run` printed for it."""
    scripts: dict[str, list[list[str]]] = {}
    current: list[str] | None = None
    for line in dry_run.splitlines():
        start = re.match(r"^(\S+) \$ sbatch .*<<'EOF'$", line)
        if start:
            current = []
            scripts.setdefault(start.group(1), []).append(current)
        elif current is not None and line.strip() == "EOF":
            current = None
        elif current is not None and line.strip().startswith("#SBATCH "):
            current.append(line.strip().removeprefix("#SBATCH "))
    return scripts


@dataclass(frozen=True)
class Ask:
    """The resources the original tool's sbatch script asked for with one config on one host."""

    nodes: int
    tasks: int
    time: str  # as written in configs.yaml
    time_limit: str  # as Slurm shows it
    partition: str | None
    gpus: int = 0

    def directives(self) -> list[str]:
        lines = [f"--time={self.time}"]
        lines += [f"--partition={self.partition}"] if self.partition else []
        lines += [f"--nodes={self.nodes}", f"--ntasks={self.tasks}", "--ntasks-per-core=1"]
        lines += ["--threads-per-core=1"]
        lines += [f"--gres=gpu:{self.gpus}"] if self.gpus else []
        return [*lines, "--mail-type=ALL", "--mail-user=jane.doe@example.org"]


# (config, host) -> what the original asked for (configs.yaml; cpus_per_node 32 on cluster_a, 16 on
# cluster_b, the bed's 32 for both in the real runs: every config below but `wide` fits one node).
ASKS = {
    ("single", "cluster_a"): Ask(1, 1, "0-00:10:00", "00:10:00", "debug"),
    ("single", "cluster_b"): Ask(1, 1, "0-00:10:00", "00:10:00", "long"),
    ("small", "cluster_a"): Ask(1, 2, "0-01:00:00", "01:00:00", "debug"),
    ("small", "cluster_b"): Ask(1, 3, "0-01:00:00", "01:00:00", None),
    ("gpu", "cluster_a"): Ask(1, 4, "1-00:00:00", "1-00:00:00", "gpu", gpus=1),
    ("default", "cluster_b"): Ask(1, 8, "0-12:00:00", "12:00:00", None),
    # beyond one node: every CPU of ceil(48/32) = 2 nodes, of ceil(20/16) = 2 nodes
    ("wide", "cluster_a"): Ask(2, 64, "2-00:00:00", "2-00:00:00", "long"),
    ("wide", "cluster_b"): Ask(2, 32, "2-00:00:00", "2-00:00:00", "long"),
}
# playbook -> its Slurm task's config, and how many jobs each host gets
DRY_RUNS: dict[str, tuple[str, dict[str, int]]] = {
    "deploy.yaml": ("small", {"cluster_b": 1}),
    "es_sweep.yaml": ("small", {"cluster_a": 4}),
    "gpu.yaml": ("gpu", {"cluster_a": 1}),
    "heavy.yaml": ("wide", {"cluster_a": 1, "cluster_b": 1}),
    "noargs.yaml": ("default", {"cluster_b": 1}),
    "procgen.yaml": ("single", {"cluster_a": 3, "cluster_b": 3}),
    "scatter.yaml": ("single", {"cluster_a": 2, "cluster_b": 1}),
}


@dataclass(frozen=True)
class TmuxTask:
    """A tmux task of tmux.yaml and what each host runs of it."""

    name: str
    session: str  # job_name
    cmd: str
    jobs: dict[str, list[str]]  # host -> words after cmd of each job
    seeds: tuple[str, ...]
    at_once: dict[str, int]  # host -> how many of its jobs run at once


TMUX = [
    TmuxTask(
        "One after the other",
        "seq",
        "--seed={seed} --mode=seq",
        {"ws1": ["--env=a", "--env=b --fast"]},
        ("0", "1"),
        {"ws1": 1},
    ),
    # scatter inside tmux: the sweep's 3 points round-robin over ws1 and ws2
    TmuxTask(
        "All at once",
        "par",
        "--seed={seed} --mode=par",
        {"ws1": ["--width=8", "--width=32"], "ws2": ["--width=16"]},
        ("3",),
        {"ws1": 2, "ws2": 1},
    ),
]


@pytest.mark.parametrize("book", BOOKS)
def test_dry_run_prints_what_would_run_and_starts_nothing(book: str, tmp_path: Path) -> None:
    project = copy_corpus(tmp_path / "project")
    proc = compute("run", "--dry-run", f"playbooks/{book}", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dry run: nothing is executed" in proc.stdout
    assert not (project / "archive").exists()
    for task in TMUX if book == "tmux.yaml" else []:
        for host, jobs in task.jobs.items():
            lanes = task.at_once[host]
            line = rf"^{host} \$ # tmux session {task.session} .*: {len(jobs)} jobs?, {lanes} at a time"
            assert re.search(line, proc.stdout, re.MULTILINE), proc.stdout
    if book not in DRY_RUNS:
        return
    config, counts = DRY_RUNS[book]
    scripts = sbatch_directives(proc.stdout)
    assert {host: len(found) for host, found in scripts.items()} == counts
    for host, found in scripts.items():
        for directives in found:
            resources = [d for d in directives if not d.startswith(("--job-name=", "--output=", "--error="))]
            assert sorted(resources) == sorted(ASKS[(config, host)].directives()), (host, directives)


# -- real runs ------------------------------------------------------------------------------------


class Project:
    """The corpus copied to `folder`, its hosts pointed at the test bed; the user's folders are below
    `work`, a private folder of the bed user's home (with the recorder as /home/jdoe/xp/record.py)."""

    def __init__(self, bed: tbm.Testbed, folder: Path, work: Path) -> None:
        self.bed = bed
        self.folder = copy_corpus(folder)
        self.work = work
        for path in folder.rglob("*.yaml"):
            text = path.read_text()
            for theirs, ours in FOLDERS.items():
                text = text.replace(theirs, str(work / ours))
            path.write_text(text)
        bed_hosts = YAML(typ="safe").load(Path(bed.hosts_yaml).read_text())
        yaml = YAML()  # round trip: the init blocks and the rest stay as written
        hosts = yaml.load((folder / "hosts.yaml").read_text())
        for alias, bed_alias in BED_ALIASES.items():
            entry = hosts[alias]
            at = list(entry).index("host")
            for key, value in host_entry(bed, bed_alias).items():
                if key in entry:
                    entry[key] = value
                else:
                    at += 1
                    entry.insert(at, key, value)
            if entry["platform"] == "slurm":
                entry["cpus_per_node"] = bed_hosts[bed_alias]["cpus_per_node"]
            else:
                entry["save_path"] = str(work / "tmux_logs")
        out = io.StringIO()
        yaml.dump(hosts, out)
        (folder / "hosts.yaml").write_text(out.getvalue())
        for name in ("home/xp", "scratch/slurm_logs", "scratch/b/slurm_logs", "tmux_logs"):
            (work / name).mkdir(parents=True)
        (work / "home" / "xp" / "record.py").write_text(RECORDER)
        chown_tree(work, bed.user)

    def run(self, book: str) -> subprocess.CompletedProcess[str]:
        """`compute run playbooks/BOOK` from the project folder."""
        proc = compute("run", f"playbooks/{book}", cwd=self.folder, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def records(self) -> list[JobRecord]:
        return Ledger(self.folder / "archive").records()

    def wait(self, timeout: float = 25) -> None:
        """Poll the jobs' states (one connection per host, 0.2 s apart) until every job has ended."""
        rows = wait_jobs(self.folder / "archive", timeout=timeout)
        assert {job_id: row.state.state for job_id, row in rows.items()} == dict.fromkeys(rows, "COMPLETED")

    def log(self, record: JobRecord) -> tuple[str, list[dict[str, Any]]]:
        """A job's output: its first line and what the recorder printed, in order."""
        lines = Path(record.log_out).read_text().splitlines()
        seen = [json.loads(line.removeprefix("RECORD ")) for line in lines if line.startswith("RECORD ")]
        return (lines[0] if lines else ""), seen


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    with user_workspace(testbed, "original") as work:
        yield Project(testbed, tmp_path / "project", work)


def job_order(record: JobRecord) -> tuple[int, ...]:
    return tuple(int(part) for part in record.job_id.split("_"))


@dataclass(frozen=True)
class Expected:
    """What the original tool submitted for one playbook of the corpus."""

    config: str
    cmd: str  # the recorder's words from the task's cmd, `{seed}` and `{job}` as the shell expanded them
    jobs: dict[str, list[str]]  # host -> the words after cmd of each of its jobs, in submission order
    seeds: tuple[str, ...]
    ranks: int = 1  # processes per seed run: `srun` in cmd starts one per task of the job
    via_shim: bool = False  # `python3 compute.py playbooks/x.yaml`, the original's own command line

    def argv(self, job: str, seed: str, words: str) -> list[str]:
        return [*self.cmd.format(seed=seed, job=job).split(), *words.split()]


EXPECTED = {
    # srun: (the 2022 form), scatter beside hosts: 3 args x 2 presets round-robin over both hosts
    "procgen.yaml": Expected(
        config="single",
        cmd="--wandb=jdoe/procgen --seed={seed} --job={job} --save_freq=50",
        seeds=("0",),
        jobs={
            "cluster_a": [
                "--env=leaper --preset pando procgen canonical --tag=procgen",
                "--env=starpilot --preset pando procgen canonical --tag=procgen",
                "--env=bigfish --single_seed --preset pando procgen openai --tag=procgen",
            ],
            "cluster_b": [
                "--env=bigfish --single_seed --preset pando procgen canonical --tag=procgen",
                "--env=leaper --preset pando procgen openai --tag=procgen",
                "--env=starpilot --preset pando procgen openai --tag=procgen",
            ],
        },
    ),
    # numbers as written: 1e-4 (a string for the original's YAML 1.1 too) and 0.10 (the original's float
    # 0.1: a documented difference); " --sigma" keeps its blank (one more space on the command line);
    # true is a bare flag, false nothing
    "es_sweep.yaml": Expected(
        config="small",
        cmd="--seed={seed} --job={job}",
        seeds=("0", "1", "2"),
        ranks=2,
        jobs={
            "cluster_a": [
                "--env=cartpole --es_lr=1e-4 --sigma=0.02 --normalize",
                "--env=cartpole --es_lr=0.10 --sigma=0.02 --normalize",
                "--env=cartpole --es_lr=1e-4 --sigma=0.02",
                "--env=cartpole --es_lr=0.10 --sigma=0.02",
            ]
        },
    ),
    # variables: £hosts as the host list, £common inside cmd; scatter inside slurm; seeds {0..3}
    "scatter.yaml": Expected(
        config="single",
        cmd="--pop_per_cpu=2 --max_frames=1000 --seed={seed} --job={job}",
        seeds=("0", "1", "2", "3"),
        jobs={"cluster_a": ["--env=leaper", "--env=bigfish"], "cluster_b": ["--env=bossfight"]},
        via_shim=True,
    ),
    "gpu.yaml": Expected(
        config="gpu",
        cmd="--seed={seed} --device=cuda",
        seeds=("0", "1"),
        jobs={"cluster_a": ["--env=ant --batch=64 --amp"]},
    ),
    # git: then slurm: in one entry: run as written (the original's later runner), git pull first
    "deploy.yaml": Expected(
        config="small",
        cmd="--seed={seed} --job={job}",
        seeds=("0",),
        jobs={"cluster_b": ["--env=walker --steps=1000"]},
    ),
    # `args:` with nothing after it: the original failed on it (it iterated None); one job without args
    "noargs.yaml": Expected(
        config="default",
        cmd="--seed={seed} --job={job} --baseline",
        seeds=("0",),
        jobs={"cluster_b": [""]},
    ),
}


def scontrol(job_id: str, env: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=15, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return dict(word.split("=", 1) for word in proc.stdout.split() if "=" in word)


def check_slurm_jobs(project: Project, expected: Expected, slurm_env: dict[str, str]) -> None:
    records = project.records()
    by_host: dict[str, list[JobRecord]] = {}
    for record in sorted(records, key=job_order):
        assert record.scheduler == "slurm" and record.config == expected.config
        by_host.setdefault(record.host, []).append(record)
    assert {host: len(jobs) for host, jobs in by_host.items()} == {
        host: len(jobs) for host, jobs in expected.jobs.items()
    }
    for host, jobs in by_host.items():
        ask = ASKS[(expected.config, host)]
        save = project.work / ("scratch/slurm_logs" if host == "cluster_a" else "scratch/b/slurm_logs")
        for record, words in zip(jobs, expected.jobs[host], strict=True):
            first, seen = project.log(record)
            assert first.startswith("CMD "), first
            # every seed in turn, each run by `ranks` processes
            assert len(seen) == len(expected.seeds) * expected.ranks, seen
            job = seen[0]["SLURM_JOB_ID"]
            assert job == record.job_id or "_" in record.job_id  # an array element has an id of its own
            for i, seed in enumerate(expected.seeds):
                runs = seen[i * expected.ranks : (i + 1) * expected.ranks]
                assert sorted(int(r["SLURM_PROCID"]) for r in runs) == list(range(expected.ranks))
                for run in runs:
                    assert run["argv"] == expected.argv(job, seed, words), (host, record.job_id)
                    assert run["SEED"] == seed and run["SLURM_JOB_ID"] == job
                    # the init block ran in the job's shell, the W&B variables follow save_path
                    assert run["cwd"] == str(project.work / "home" / "xp")
                    assert (run["OMP_NUM_THREADS"], run["XP_SITE"]) == ("1", host)
                    assert run["WANDB_MODE"] == ("offline" if host == "cluster_a" else "online")
                    assert run["WANDB_DIR"] == str(save).replace("slurm_logs", "wandb_files")
            assert Path(record.log_out).parent == save
            # what Slurm recorded: the original's CPU layout, time, partition, GPUs, mail
            shown = scontrol(record.job_id, slurm_env)
            assert (shown["NumNodes"], shown["NumTasks"]) == (str(ask.nodes), str(ask.tasks))
            assert shown["TimeLimit"] == ask.time_limit
            assert shown["Partition"] == (ask.partition or "debug")  # the bed's default partition
            assert shown["NtasksPerN:B:S:C"].endswith(":1") and shown["ReqB:S:C:T"].endswith(":1")
            assert shown.get("TresPerNode") == (f"gres:gpu:{ask.gpus}" if ask.gpus else None)
            assert shown["MailUser"] == "jane.doe@example.org"
            assert {"BEGIN", "END", "FAIL", "REQUEUE"} <= set(shown["MailType"].split(","))
            script = (project.folder / "archive" / record.script).read_text()
            assert ("--partition" in script) == bool(ask.partition)


@pytest.mark.parametrize("book", list(EXPECTED))
def test_slurm_playbook_submits_the_original_jobs(
    book: str, project: Project, slurm_env: dict[str, str]
) -> None:
    expected = EXPECTED[book]
    if book == "deploy.yaml":
        make_repository(project)
    if expected.via_shim:
        proc = compute(f"playbooks/{book}", cwd=project.folder, timeout=60, entry="shim")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        proc = project.run(book)
    project.wait()
    if book == "deploy.yaml":
        # the entry's actions in the order written: git pull, then the job sees the new commit
        tasks = re.findall(r"^TASK \[Pull then run\] \((\w+)\)", proc.stdout, re.MULTILINE)
        assert tasks == ["git", "slurm"], proc.stdout
        assert [run["version"] for run in project.log(project.records()[0])[1]] == ["2"]
    check_slurm_jobs(project, expected, slurm_env)


def make_repository(project: Project) -> None:
    """/home/jdoe/xp as a clone with one commit more on its remote: a VERSION file."""
    work = project.work
    as_user(
        project.bed.user,
        f"cd {work} && git init -q --bare --initial-branch=main origin.git"
        f" && cd home/xp && git init -q --initial-branch=main && git add -A && {COMMIT} -m first"
        f" && git remote add origin {work}/origin.git && git push -q -u origin main"
        f" && git clone -q {work}/origin.git {work}/elsewhere && cd {work}/elsewhere"
        f" && echo 2 > VERSION && git add VERSION && {COMMIT} -m v2 && git push -q origin main",
    )


# -- tmux -----------------------------------------------------------------------------------------


def test_tmux_playbook_runs_every_job_with_each_seed(project: Project) -> None:
    proc = project.run("tmux.yaml")
    for task in TMUX:
        for host, lanes in task.at_once.items():
            count = len(task.jobs[host])
            line = rf"^{host}: tmux session \S+: {count} jobs?, {lanes} at a time"
            assert re.search(line, proc.stdout, re.MULTILINE), proc.stdout
    project.wait()
    records = project.records()
    for task in TMUX:
        mine = [r for r in records if r.task == task.name]
        assert {r.scheduler for r in mine} == {"tmux"} and {r.host for r in mine} == set(task.jobs)
        for host, jobs in task.jobs.items():
            on_host = sorted((r for r in mine if r.host == host), key=lambda r: int(r.job_index))
            assert len(on_host) == len(jobs)
            spans = []
            for record, words in zip(on_host, jobs, strict=True):
                first, seen = project.log(record)
                assert first.startswith("CMD "), first
                # once per seed: compute's change, which `check` warns about (the original ran each
                # command once, with $seed empty)
                assert [run["argv"] for run in seen] == [
                    [*task.cmd.format(seed=seed).split(), *words.split()] for seed in task.seeds
                ]
                assert [run["SEED"] for run in seen] == list(task.seeds)
                assert all(run["cwd"] == str(project.work / "home" / "xp") for run in seen)
                # hosts without `wandb:` get no W&B variables, as in the original
                assert all(run["WANDB_MODE"] is None and run["WANDB_DIR"] is None for run in seen)
                spans.append((seen[0]["time"], seen[-1]["time"]))
            if task.at_once[host] == 1:
                assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans
