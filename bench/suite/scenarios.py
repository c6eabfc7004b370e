"""What each scenario runs: the input files of every tool (written once per benchmark run) and the
command lines to time. Pure description; bench/run.py does the timing.

Every contender reaches the same loopback sshd hosts of the test bed, as the same user, with the
same key and the bed's known_hosts (strict host key checking everywhere).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

CLIENTS = Path(__file__).resolve().parent / "clients"

COMPUTE, FLOOR, PEER = "compute", "floor", "peer"


class Counter(Protocol):
    """Figures of a run besides its time (G: the round trips the relays counted)."""

    def mark(self) -> None:
        """Just before the timed process starts (after the contender's reset)."""

    def count(self) -> dict[str, float]:
        """What happened since `mark` (callable again: it changes nothing)."""


@dataclass
class Contender:
    """One command line to time: this tool, the floor, or a peer."""

    name: str
    role: str  # COMPUTE | FLOOR | PEER
    argv: list[str]
    cwd: Path
    reset: Callable[[], None] | None = None  # untimed, before every run (e.g. delete the copy)
    max_runs: int | None = None  # for peers too slow to repeat: time them this many times only
    timeout: float = 120.0
    extrapolate: float = 1.0  # the run did 1/extrapolate of the work: scale its time by this
    note: str = ""
    verify: Callable[[], str | None] | None = None  # after a run: what is wrong with its result
    counter: Counter | None = None  # figures counted during each timed run


@dataclass
class Target:
    """One goal of the issue: `ratio` of compute against the floor (<=), a peer (>= times faster),
    or an absolute time (`seconds` <=) for `who`."""

    # "floor" | "faster" | "seconds" | "scaling" (compute's time against scenario `who`)
    # | "round trips" (compute's time beyond contender `who`'s, in the group's round trips)
    kind: str
    limit: float
    who: str = ""

    def describe(self) -> str:
        if self.kind == "floor":
            return f"<= {self.limit:g}x the floor"
        if self.kind == "faster":
            return f">= {self.limit:g}x faster than {self.who}"
        if self.kind == "scaling":
            return f"<= {self.limit:g}x the time of {self.who} (4x hosts)"
        if self.kind == "round trips":
            return f"<= {self.limit:g} round trips beyond {self.who.split(':')[0]}"
        return f"{self.who or 'compute'} < {self.limit:g} s"


@dataclass
class Group:
    """One comparison table: a scenario has one or two (C: --version and check, D: file and tree)."""

    key: str
    title: str
    contenders: list[Contender]
    targets: list[Target] = field(default_factory=list)
    memory: bool = False  # also sample the peak memory of each contender's process tree
    rtt: float | None = None  # G: the hosts' round trip (s): times are also shown as round trips


@dataclass
class Setting:
    """What the scenarios need to know about the bench: the bed, the venv, where to write."""

    bed: Any  # testbed.Testbed
    venv: Path
    work: Path
    quick: bool
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run at the end
    env: dict[str, str] = field(default_factory=dict)  # the contenders' (for resets that run one first)

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def ports(self, hosts: list[str]) -> list[str]:
        return [str(self.bed.hosts[h]) for h in hosts]

    def hosts(self, count: int) -> list[str]:
        return [f"h{i}" for i in range(1, count + 1)]


# --------------------------------------------------------------------------- input files


def write_inventories(s: Setting) -> None:
    """hosts.yaml for compute (the bed's own), an ansible inventory + config, pyinfra inventories."""
    bed, work = s.bed, s.work
    shutil.copy(bed.hosts_yaml, work / "hosts.yaml")
    known, key = str(bed.known_hosts), str(bed.client_key)
    ssh_args = f"-o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
    lines = ["[bench]"]
    for name in bed.linux_hosts:
        lines.append(
            f"{name} ansible_host=127.0.0.1 ansible_port={bed.hosts[name]} ansible_user={bed.user} "
            f"ansible_ssh_private_key_file={key}"
        )
    lines += [
        "",
        "[bench:vars]",
        f"ansible_ssh_common_args='{ssh_args}'",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    (work / "inventory.ini").write_text("\n".join(lines) + "\n")
    # Ansible's defaults (ssh with ControlPersist, no pipelining), except where its files go.
    (work / "ansible.cfg").write_text(
        "[defaults]\n"
        "host_key_checking = True\n"
        f"local_tmp = {work}/ansible-home/tmp\n"
        "[ssh_connection]\n"
        f"control_path_dir = {work}/ansible-cp\n"
    )
    for count in (1, 8, 32):
        hosts = [h for h in s.hosts(count) if h in bed.hosts]
        entries = [
            (
                h,
                {
                    "ssh_hostname": "127.0.0.1",
                    "ssh_port": bed.hosts[h],
                    "ssh_user": bed.user,
                    "ssh_key": key,
                    "ssh_known_hosts_file": known,
                    "ssh_strict_host_key_checking": "yes",
                },
            )
            for h in hosts
        ]
        (work / f"pyinfra_inv{count}.py").write_text(f"hosts = {entries!r}\n")


def _compute_book(path: Path, tasks: list[dict[str, Any]]) -> None:
    # JSON is YAML: no YAML writer needed in the bench's own process
    path.write_text(json.dumps({"inventory": {"hosts": "hosts.yaml"}, "tasks": tasks}, indent=1) + "\n")


def _ansible_book(path: Path, hosts: list[str], tasks: list[dict[str, Any]]) -> None:
    play = {"hosts": ":".join(hosts), "gather_facts": False, "tasks": tasks}
    path.write_text(json.dumps([play], indent=1) + "\n")


def _pyinfra_ops(path: Path, calls: list[str]) -> None:
    path.write_text("from pyinfra.operations import files, server\n\n" + "\n".join(calls) + "\n")


def ansible_cold(s: Setting) -> Callable[[], None]:
    """Close the connections ansible keeps open between runs (ControlPersist, 60 s): every tool
    then starts from no connection, as after a minute's pause (with them open, ansible raw on
    8 hosts takes about half as long)."""

    def reset() -> None:
        for sock in (s.work / "ansible-cp").glob("*"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                capture_output=True,
                timeout=10,
                check=False,
            )

    return reset


def _ansible(
    s: Setting, name: str, args: list[str], also: Callable[[], None] | None = None, **extra: Any
) -> Contender:
    """An ansible-playbook contender starting from no connection (and running `also` before)."""
    cold = ansible_cold(s)

    def reset() -> None:
        cold()
        if also is not None:
            also()

    argv = [s.bin("ansible-playbook"), "-i", "inventory.ini", *args]
    return Contender(name, PEER, argv, s.work, reset=reset, **extra)


# --------------------------------------------------------------------------- scenarios


def one_command(s: Setting, key: str, count: int) -> Group:
    """A (8 hosts) and F (32 hosts): one `cmd` running `true` on every host."""
    work, bed = s.work, s.bed
    hosts = s.hosts(count)
    _compute_book(work / f"{key}.yaml", [{"name": "true", "hosts": hosts, "cmd": "true"}])
    for module in ("raw", "command"):
        _ansible_book(work / f"{key}_{module}.yml", hosts, [{module: "true"}])
    _pyinfra_ops(work / f"{key}_pyinfra.py", ["server.shell(name='true', commands=['true'])"])
    ssh_id = [str(bed.client_key), bed.user, str(bed.known_hosts)]
    forks = str(count)
    contenders = [
        Contender("compute", COMPUTE, [s.bin("compute"), "run", "--forks", forks, f"{key}.yaml"], work),
        Contender(
            "paramiko threads",
            FLOOR,
            [s.bin("python"), str(CLIENTS / "paramiko_floor.py"), *ssh_id, *s.ports(hosts)],
            work,
        ),
        Contender(
            "fabric ThreadingGroup",
            PEER,
            [
                s.bin("python"),
                str(CLIENTS / "fabric_peer.py"),
                "group",
                *ssh_id,
                "true",
                *s.ports(hosts),
            ],
            work,
        ),
        Contender(
            "pyinfra", PEER, [s.bin("pyinfra"), "-y", f"pyinfra_inv{count}.py", f"{key}_pyinfra.py"], work
        ),
        _ansible(s, "ansible raw", ["-f", forks, f"{key}_raw.yml"]),
        _ansible(s, "ansible command", ["-f", forks, f"{key}_command.yml"]),
    ]
    if key == "A":
        targets = [Target("floor", 1.3), Target("faster", 2, "pyinfra"), Target("faster", 4, "ansible raw")]
        title = "A. one cmd on 8 hosts"
    else:
        targets = [
            Target("scaling", 2, "A"),
            Target("faster", 1, "pyinfra"),
            Target("faster", 1, "ansible raw"),
        ]
        title = f"F. one cmd on {count} hosts"
    return Group(key, title, contenders, targets, memory=True)


def fifty_tasks(s: Setting) -> Group:
    """B: 50 tasks of one command each, in order, on one host."""
    work, bed = s.work, s.bed
    lines = [f"echo {i}" for i in range(50)]
    _compute_book(
        work / "B.yaml", [{"name": f"t{i}", "hosts": "h1", "cmd": line} for i, line in enumerate(lines)]
    )
    for module in ("raw", "command"):
        _ansible_book(work / f"B_{module}.yml", ["h1"], [{module: line} for line in lines])
    _pyinfra_ops(
        work / "B_pyinfra.py",
        [f"server.shell(name='t{i}', commands=[{line!r}])" for i, line in enumerate(lines)],
    )
    (work / "B.txt").write_text("\n".join(lines) + "\n")
    ssh_id = [str(bed.client_key), bed.user, str(bed.known_hosts)]
    contenders = [
        Contender("compute", COMPUTE, [s.bin("compute"), "run", "B.yaml"], work),
        Contender(
            "one ssh, 50 lines", FLOOR, ["ssh", "-F", str(bed.ssh_config), "h1", "\n".join(lines)], work
        ),
        Contender(
            "fabric Connection.run",
            PEER,
            [
                s.bin("python"),
                str(CLIENTS / "fabric_peer.py"),
                "serial",
                *ssh_id,
                "B.txt",
                *s.ports(["h1"]),
            ],
            work,
        ),
        Contender("pyinfra", PEER, [s.bin("pyinfra"), "-y", "pyinfra_inv1.py", "B_pyinfra.py"], work),
        _ansible(s, "ansible raw", ["B_raw.yml"]),
        _ansible(s, "ansible command", ["B_command.yml"]),
    ]
    targets = [Target("floor", 2.5), Target("faster", 6, "pyinfra"), Target("faster", 6, "ansible raw")]
    return Group("B", "B. 50 cmd tasks on 1 host", contenders, targets)


def start_up(s: Setting) -> list[Group]:
    """C: `compute --version` against `python -c pass`; `compute check` of a 20-task playbook."""
    work = s.work
    hosts = s.hosts(8)
    tasks = [{"name": f"step {i}", "hosts": hosts[i % 8], "cmd": [f"echo {i}", "true"]} for i in range(20)]
    _compute_book(work / "C.yaml", tasks)
    _ansible_book(work / "C.yml", hosts, [{"raw": f"echo {i}"} for i in range(20)])
    version = Group(
        "C-version",
        "C. start-up: --version",
        [
            Contender("compute", COMPUTE, [s.bin("compute"), "--version"], work),
            Contender("python -c pass", FLOOR, [s.bin("python"), "-c", "pass"], work),
            # what every console script made by pip costs before any of its package runs
            Contender("pip's launcher alone", FLOOR, [s.bin("python"), "-c", "import re, sys"], work),
            Contender("pyinfra", PEER, [s.bin("pyinfra"), "--version"], work),
            Contender("ansible-playbook", PEER, [s.bin("ansible-playbook"), "--version"], work),
        ],
        [Target("floor", 1.5)],
    )
    check = Group(
        "C-check",
        "C. start-up: check a 20-task playbook",
        [
            Contender("compute", COMPUTE, [s.bin("compute"), "check", "C.yaml"], work),
            Contender("python -c pass", FLOOR, [s.bin("python"), "-c", "pass"], work),
            Contender(
                "ansible --syntax-check",
                PEER,
                [s.bin("ansible-playbook"), "--syntax-check", "-i", "inventory.ini", "C.yml"],
                work,
            ),
        ],
        [Target("seconds", 0.5)],
    )
    return [version, check]


def _fresh_dir(s: Setting, path: Path) -> Callable[[], None]:
    """A reset that empties `path` (in the test user's home) and makes it again, owned by that user."""

    def reset() -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        os.chown(path, s.bed.home.stat().st_uid, s.bed.home.stat().st_gid)

    return reset


def _make_data(work: Path) -> tuple[Path, Path]:
    """A 100 MB file of random bytes and a tree of 1,000 files of 1-8 kB in 20 directories."""
    big, tree = work / "big.bin", work / "tree"
    if not big.exists():
        with open(big, "wb") as f:
            for _ in range(100):
                f.write(os.urandom(1_000_000))
    if not tree.exists():
        for i in range(1000):
            folder = tree / f"d{i % 20:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i:04d}.txt").write_bytes(os.urandom(1024 + (i * 7919) % 7168))
    return big, tree


def _same_size(src: Path, copy: Path) -> Callable[[], str | None]:
    """A check that `copy` holds as many files and bytes as `src`."""

    def size(path: Path) -> tuple[int, int]:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    def verify() -> str | None:
        want, got = size(src), size(copy) if copy.exists() else (0, 0)
        return (
            None if want == got else f"{copy}: {got[0]} files, {got[1]} bytes; expected {want[0]}, {want[1]}"
        )

    return verify


def copies(s: Setting) -> list[Group]:
    """D: push one 100 MB file, then a 1,000-file tree, to h1, into a destination emptied before
    every run (the peers then copy everything, as they would the first time)."""
    work, bed = s.work, s.bed
    big, tree = _make_data(work)
    base = bed.home / f"bench-copy-{os.getpid()}"
    s.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    ssh = ["ssh", "-F", str(bed.ssh_config), "h1"]
    slow = 60.0 if s.quick else 120.0  # ansible and pyinfra copy a tree file by file: minutes
    groups = []
    for what, src, floor_name in (("file", big, "scp"), ("tree", tree, "tar | ssh tar")):
        dest = base / what
        _compute_book(
            work / f"D_{what}.yaml",
            [
                {
                    "name": what,
                    "hosts": "h1",
                    "copy": {"mode": "push", "src": str(src), "dest": str(dest / "compute")},
                }
            ],
        )
        _ansible_book(
            work / f"D_{what}.yml", ["h1"], [{"copy": {"src": str(src), "dest": f"{dest / 'ansible'}/"}}]
        )
        op = (
            f"files.put(src={str(big)!r}, dest={str(dest / 'pyinfra' / big.name)!r})"
            if what == "file"
            else f"files.sync(src={str(tree)!r}, dest={str(dest / 'pyinfra' / tree.name)!r})"
        )
        _pyinfra_ops(work / f"D_{what}_pyinfra.py", [op])
        if what == "file":
            floor = ["scp", "-q", "-F", str(bed.ssh_config), str(big), f"h1:{dest / 'floor'}/"]
        else:
            unpack = f"tar x -C {dest / 'floor'}"
            floor = shell(f"tar c -C {q(work)} tree | {' '.join(ssh)} {q(unpack)}")
        rsync = ["rsync", "-a", "-e", f"ssh -F {bed.ssh_config}", str(src), f"h1:{dest / 'rsync'}/"]
        contenders = [
            Contender(
                "compute",
                COMPUTE,
                [s.bin("compute"), "run", f"D_{what}.yaml"],
                work,
                _fresh_dir(s, dest / "compute"),
                verify=_same_size(src, dest / "compute" / src.name),
            ),
            Contender(floor_name, FLOOR, floor, work, _fresh_dir(s, dest / "floor")),
            *(
                [Contender("rsync -a", PEER, rsync, work, _fresh_dir(s, dest / "rsync"))]
                if shutil.which("rsync")
                else []
            ),
            Contender(
                "pyinfra",
                PEER,
                [s.bin("pyinfra"), "-y", "pyinfra_inv1.py", f"D_{what}_pyinfra.py"],
                work,
                _fresh_dir(s, dest / "pyinfra"),
                **({"max_runs": 1, "timeout": slow} if what == "tree" else {}),
            ),
            _ansible(
                s,
                "ansible copy",
                [f"D_{what}.yml"],
                _fresh_dir(s, dest / "ansible"),
                **({"max_runs": 1, "timeout": slow} if what == "tree" else {}),
            ),
        ]
        title = "D. copy push: one 100 MB file" if what == "file" else "D. copy push: a 1,000-file tree"
        target = Target("floor", 1.2 if what == "file" else 1.3)
        groups.append(Group(f"D-{what}", title, contenders, [target]))
    return groups


def sweep(s: Setting) -> Group:
    """E: a 1,000-point sweep submitted to Slurm, from `compute run` to its exit (the ledger's last
    row is written before). Jobs are submitted held and cancelled between runs, so that nothing
    runs on the machine while the others are timed."""
    work, bed = s.work, s.bed
    (work / "configs.yaml").write_text("default: {cpus: 1, time: '00:05:00'}\n")
    task = {"cmd": "echo", "sweep": {"i": list(range(1000))}, "array": "auto", "sbatch": {"hold": True}}
    book = {
        "inventory": {"hosts": "hosts.yaml", "configs": "configs.yaml"},
        "tasks": [{"name": "sweep", "hosts": "cluster", "slurm": task}],
    }
    (work / "E.yaml").write_text(json.dumps(book) + "\n")
    ssh = ["ssh", "-F", str(bed.ssh_config), bed.slurm_alias]
    cancel = (
        " ".join(ssh)
        + " "
        + q('scancel -u "$USER"; while [ -n "$(squeue -h -u "$USER" -t PD,R,CG -o %i)" ]; do sleep 0.1; done')
    )
    archive = work / "archive-E"

    def reset() -> None:
        subprocess.run(["bash", "-c", cancel], check=True, timeout=60, capture_output=True)
        shutil.rmtree(archive, ignore_errors=True)

    loop_points = 100
    submit = "sbatch --parsable --hold -o /dev/null --wrap"
    loop = f"for i in $(seq {loop_points}); do {' '.join(ssh)} \"{submit} 'echo $i'\" > /dev/null || exit 1; done"

    def ledger_rows() -> str | None:
        rows = (archive / "job.csv").read_text().count("\n") - 1 if (archive / "job.csv").exists() else 0
        return None if rows == 1000 else f"{rows} rows in {archive / 'job.csv'}, expected 1000"

    contenders = [
        Contender(
            "compute",
            COMPUTE,
            [s.bin("compute"), "run", "--archive", str(archive), "E.yaml"],
            work,
            reset,
            verify=ledger_rows,
        ),
        Contender(
            "one ssh + sbatch --array",
            FLOOR,
            [*ssh, f"{submit.replace('--wrap', '--array=0-999 --wrap')} 'echo $SLURM_ARRAY_TASK_ID'"],
            work,
            reset,
        ),
        Contender(
            "ssh + sbatch loop",
            PEER,
            shell(loop),
            work,
            reset,
            max_runs=1 if s.quick else 3,
            extrapolate=1000 / loop_points,
            note=f"{loop_points} submissions timed, x{1000 // loop_points}",
        ),
    ]
    return Group("E", "E. a 1,000-point Slurm sweep", contenders, [Target("seconds", 3.0)])


def scenarios(s: Setting) -> dict[str, Callable[[], list[Group]]]:
    """Scenario letter -> a function writing its files and returning its comparison tables."""
    return {
        "A": lambda: [one_command(s, "A", 8)],
        "B": lambda: [fifty_tasks(s)],
        "C": lambda: start_up(s),
        "D": lambda: copies(s),
        "E": lambda: [sweep(s)],
        "F": lambda: [one_command(s, "F", 32)],
        "G": lambda: far_network(s),
    }


def far_network(s: Setting) -> list[Group]:
    from bench.suite import far  # it builds on this module

    return far.groups(s)


def shell(command: str) -> list[str]:
    """A contender that is a shell pipeline."""
    return ["bash", "-c", command]


def q(value: object) -> str:
    return shlex.quote(str(value))
