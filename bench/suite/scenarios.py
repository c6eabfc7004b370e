"""What each scenario runs: the input files of every tool (written once per benchmark run) and the
command lines to time. Pure description; bench/run.py does the timing.

Every contender reaches the same loopback sshd hosts of the test bed, as the same user, with the
same key and the bed's known_hosts (strict host key checking everywhere).
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIENTS = Path(__file__).resolve().parent / "clients"

COMPUTE, FLOOR, PEER = "compute", "floor", "peer"


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


@dataclass
class Target:
    """One goal of the issue: `ratio` of compute against the floor (<=), a peer (>= times faster),
    or an absolute time (`seconds` <=) for `who`."""

    kind: str  # "floor" | "faster" | "seconds" | "scaling" (compute's time against scenario `who`)
    limit: float
    who: str = ""

    def describe(self) -> str:
        if self.kind == "floor":
            return f"<= {self.limit:g}x the floor"
        if self.kind == "faster":
            return f">= {self.limit:g}x faster than {self.who}"
        if self.kind == "scaling":
            return f"<= {self.limit:g}x the time of {self.who} (4x hosts)"
        return f"{self.who or 'compute'} < {self.limit:g} s"


@dataclass
class Group:
    """One comparison table: a scenario has one or two (C: --version and check, D: file and tree)."""

    key: str
    title: str
    contenders: list[Contender]
    targets: list[Target] = field(default_factory=list)
    memory: bool = False  # also sample the peak memory of each contender's process tree


@dataclass
class Setting:
    """What the scenarios need to know about the bench: the bed, the venv, where to write."""

    bed: Any  # testbed.Testbed
    venv: Path
    work: Path
    quick: bool

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
        Contender(
            "ansible raw",
            PEER,
            [s.bin("ansible-playbook"), "-f", forks, "-i", "inventory.ini", f"{key}_raw.yml"],
            work,
        ),
        Contender(
            "ansible command",
            PEER,
            [s.bin("ansible-playbook"), "-f", forks, "-i", "inventory.ini", f"{key}_command.yml"],
            work,
        ),
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
    ansible = [s.bin("ansible-playbook"), "-i", "inventory.ini"]
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
        Contender("ansible raw", PEER, [*ansible, "B_raw.yml"], work),
        Contender("ansible command", PEER, [*ansible, "B_command.yml"], work),
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


def scenarios(s: Setting) -> dict[str, Callable[[], list[Group]]]:
    """Scenario letter -> a function writing its files and returning its comparison tables."""
    return {
        "A": lambda: [one_command(s, "A", 8)],
        "B": lambda: [fifty_tasks(s)],
        "C": lambda: start_up(s),
        "F": lambda: [one_command(s, "F", 32)],
    }


def shell(command: str) -> list[str]:
    """A contender that is a shell pipeline."""
    return ["bash", "-c", command]


def q(value: object) -> str:
    return shlex.quote(str(value))
