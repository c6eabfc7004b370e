"""G: a laptop far from its hosts. The hosts are sshd instances in network namespaces behind links
of 25 ms each way (tests/support/wan.py on tests/support/latency.py): d1..d8 reached directly
(50 ms round trips), b1..b8 behind a jump host (50 ms to it, 50 ms from it to them: 100 ms), and
tmux jobs of a ledger on d1..d3, the "clusters" that `compute jobs` asks (a Slurm login node
costs the same: one query per host).

Every contender starts with no connection open (what compute keeps is closed before each,
close_kept_connections), except those named "again", which run once untimed and are timed the
second time, PAUSE seconds later (what ControlPersist gives OpenSSH and Ansible, and compute's
connection keeper). Besides its time, each contender's time in round trips of the hosts' link, and what
the relays counted during it: `turns`, the request/response turns of the busiest host
connection (TCP's handshake included, tests/support/latency.py), and `conns`, the TCP
connections opened through the relays (the jump host's included).
"""

from __future__ import annotations

import contextlib
import csv
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.suite.scenarios import (
    CLIENTS,
    COMPUTE,
    FLOOR,
    PEER,
    Contender,
    Group,
    Setting,
    Target,
    _ansible,
    ansible_cold,
    q,
    shell,
)
from tests.support import wan as wanm

JOB_HOSTS = ["d1", "d2", "d3"]
STARTUP = "start-up: no host asked"
MASTER_OPTIONS = "-o ControlMaster=auto -o ControlPersist=60"
KEX = "curve25519-sha256"  # what paramiko (compute, the paramiko floor) negotiates
PAUSE = 2.0  # seconds between the two runs of an "again" row


@dataclass
class Far:
    """The far network and the files every contender of G reads."""

    s: Setting
    wan: wanm.Wan
    ssh_config: Path  # for ssh and ansible: the wan's, with paramiko's key exchange
    kex: Path  # the same for compute's `connection: openssh` hosts (COMPUTE_SSH_CONFIG)
    hosts: Path  # hosts.yaml: paramiko (compute's default)
    openssh: Path  # the same hosts with `connection: openssh` (a ControlMaster per host)
    archive: Path  # tmux jobs running on JOB_HOSTS
    ended: Path  # one tmux job that ended, its state recorded: `compute jobs` asks no host
    job: str  # HOST:ID of one running job, for `compute logs`
    log: str  # its output file on the host

    def compute(self, *args: str) -> list[str]:
        return [self.s.bin("compute"), *args]

    def compute_openssh(self, *args: str) -> list[str]:
        """compute with the hosts of `connection: openssh` (their ssh using paramiko's key exchange)."""
        return [
            "env",
            f"COMPUTE_SSH_CONFIG={self.kex}",
            self.s.bin("compute"),
            *args,
            "-i",
            str(self.openssh),
        ]

    def call(self, argv: list[str]) -> str:
        """Run a contender's command untimed (set-up, or the first of two runs); its output."""
        proc = subprocess.run(
            argv, cwd=self.s.work, env=self.s.env, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc.stdout


class RelayCount:
    """The Counter of a G contender: turns of the busiest connection to `hosts`, connections opened."""

    def __init__(self, wan: wanm.Wan, hosts: list[str]) -> None:
        self.wan = wan
        self.hosts = set(hosts)
        self.before: list[int] = []

    def mark(self) -> None:
        self.before = [c.turns for c in self.wan.network.connections]

    def count(self) -> dict[str, float]:
        conns = list(self.wan.network.connections)
        before = self.before + [0] * (len(conns) - len(self.before))
        turns = [c.turns - was for c, was in zip(conns, before, strict=True) if c.relay in self.hosts]
        return {"turns": float(max(turns, default=0)), "conns": float(len(conns) - len(self.before))}

    def opened(self, least: int) -> str | None:
        """A contender's `verify`: what is wrong when it opened fewer connections than `least`."""
        opened = int(self.count()["conns"])
        if opened >= least:
            return None
        return (
            f"opened {opened} connection(s), {least} expected: it reused one kept from before "
            "(close those in close_kept_connections)"
        )


def close_kept_connections(f: Far) -> None:
    """Close every connection compute keeps between commands, so that a timed run starts from
    none: `compute hosts --logout-all`, which closes what the keeper holds for paramiko hosts (it
    waits for a keeper a run has just started) and the ControlMasters of the `connection:
    openssh` hosts. Should compute come to keep connections that it does not close, close them
    here: the cold runs' check (RelayCount.opened) fails until then, naming this function."""
    f.call(f.compute_openssh("hosts", "--logout-all"))


# --------------------------------------------------------------------------- set-up


def set_up(s: Setting) -> Far:
    """The far network, hosts files, the running jobs of the ledger and one ended job."""
    wan = wanm.up(s.bed, s.work.parent / "wan")
    far: Far | None = None

    def tear_down() -> None:
        if far is not None:
            with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
                close_kept_connections(far)  # the keeper would otherwise outlive the bench
        wanm.down(wan.state, wan)

    s.cleanups.append(tear_down)
    (s.work / "G-cm").mkdir(mode=0o700, exist_ok=True)  # the ssh floor's master sockets
    # OpenSSH 9's default key exchange (sntrup761x25519) costs ~0.2 s of CPU per connection here,
    # client and server on the same 2 cores: every client does paramiko's, so that round trips
    # are what differs (the G-run table also shows ssh with its default)
    ssh_config = wan.write_ssh_config(s.work / "G_ssh_config", KexAlgorithms=KEX)
    kex = s.work / "G_kex_ssh_config"
    kex.write_text(f"Host *\n  KexAlgorithms {KEX}\n")
    hosts = wan.write_hosts(s.work / "G_hosts.yaml")
    openssh = wan.write_hosts(s.work / "G_hosts_openssh.yaml", connection="openssh")
    archive, ended = s.work / "archive-G", s.work / "archive-G-ended"
    far = Far(s, wan, ssh_config, kex, hosts, openssh, archive, ended, "", "")
    _write_inventory(far)
    _book(
        far, "G_jobs.yaml", [{"name": "far", "hosts": JOB_HOSTS, "tmux": {"cmd": "echo started; sleep 3600"}}]
    )
    _book(far, "G_ended.yaml", [{"name": "done", "hosts": "d1", "tmux": {"cmd": "echo done"}}])
    far.call(far.compute("run", "--archive", str(far.archive), "G_jobs.yaml"))
    far.call(far.compute("run", "--archive", str(far.ended), "G_ended.yaml"))
    _wait_ended(far)
    with open(far.archive / "job.csv", newline="") as rows:
        first = next(row for row in csv.DictReader(rows) if row["host"] == "d1")
    far.job, far.log = f"d1:{first['job_id']}", first["log_out"]
    return far


def _book(f: Far, name: str, tasks: list[dict[str, object]]) -> None:
    book = {"inventory": {"hosts": f.hosts.name}, "tasks": tasks}
    (f.s.work / name).write_text(json.dumps(book, indent=1) + "\n")


def _wait_ended(f: Far) -> None:
    """Until `compute jobs` has recorded the ended job's state (it then asks no host again)."""
    deadline = time.monotonic() + 30
    while not (f.ended / "states.csv").exists() or "COMPLETED" not in (f.ended / "states.csv").read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the job of {f.ended} did not end within 30 s")
        f.call(f.compute("jobs", "--archive", str(f.ended)))
        time.sleep(0.2)


def _write_inventory(f: Far) -> None:
    """Ansible's: every host by its ssh_config name (the config has their keys and the jump host)."""
    lines = ["[far]", *f.wan.addresses, "", "[far:vars]", f"ansible_ssh_common_args='-F {f.ssh_config}'"]
    lines.append("ansible_python_interpreter=/usr/bin/python3")
    (f.s.work / "G_inventory.ini").write_text("\n".join(lines) + "\n")
    for key, hosts in (("run", f.wan.direct), ("jump", f.wan.behind), ("jobs", JOB_HOSTS)):
        play = {"hosts": ",".join(hosts), "gather_facts": False, "tasks": [{"raw": "true"}]}
        (f.s.work / f"G_{key}_raw.yml").write_text(json.dumps([play], indent=1) + "\n")


# --------------------------------------------------------------------------- contenders


def ssh_each(
    f: Far, hosts: list[str], options: str = "", command: str = "true", config: Path | None = None
) -> list[str]:
    """One `ssh HOST COMMAND` per host, all at once; fails if one does."""
    ssh = f"ssh -F {q(config or f.ssh_config)} {options}".rstrip()
    return shell(
        f'pids=""; for h in {" ".join(hosts)}; do {ssh} "$h" {q(command)} & pids="$pids $!"; done; '
        'for p in $pids; do wait "$p" || exit 1; done'
    )


def masters(f: Far) -> str:
    return f"{MASTER_OPTIONS} -o ControlPath={f.s.work / 'G-cm'}/%C"


def close_masters(f: Far, hosts: list[str]) -> None:
    for host in hosts:
        subprocess.run(
            ["ssh", "-F", str(f.ssh_config), *masters(f).split(), "-O", "exit", host],
            capture_output=True,
            timeout=10,
            check=False,
        )


def paramiko_floor(f: Far, hosts: list[str]) -> list[str]:
    wan, bed = f.wan, f.s.bed
    jump = ["--jump", f"{wan.addresses[wanm.JUMP]}:22"] if hosts[0] in wan.behind else []
    targets = [f"{wan.addresses[h]}:22" for h in hosts]
    script = str(CLIENTS / "paramiko_floor.py")
    return [f.s.bin("python"), script, *jump, str(bed.client_key), bed.user, str(wan.known_hosts), *targets]


def nothing_kept(f: Far, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A reset that closes what compute keeps first, for every contender of G: a run of compute
    that logged in by itself leaves a keeper that logs in again in the background, which must
    neither reach the next contender's count nor share the cores with its run."""

    def reset() -> None:
        close_kept_connections(f)
        if then is not None:
            then()

    return reset


def cold(f: Far, c: Contender, hosts: list[str]) -> Contender:
    """`c` from no kept connection, counted, and checked to have opened a connection per host
    (and the jump host's)."""
    counter = RelayCount(f.wan, hosts)
    least = len(hosts) + (1 if hosts[0] in f.wan.behind else 0)
    c.reset = nothing_kept(f, c.reset)
    c.counter = counter
    c.verify = lambda: counter.opened(least)
    return c


def compute_cold(f: Far, name: str, argv: list[str], hosts: list[str], role: str = COMPUTE) -> Contender:
    return cold(f, Contender(name, role, argv, f.s.work), hosts)


def again(
    f: Far,
    name: str,
    role: str,
    argv: list[str],
    hosts: list[str],
    close: Callable[[], None] | None = None,
    before: int = 1,
) -> Contender:
    """A command run `before` times from no kept connection, then once more (timed), each run PAUSE
    seconds after the previous one: as a user types the same command again."""

    def first() -> None:
        if close is not None:
            close()
        for _ in range(before):
            f.call(argv)
            time.sleep(PAUSE)

    return Contender(
        name, role, argv, f.s.work, reset=nothing_kept(f, first), counter=RelayCount(f.wan, hosts)
    )


def ssh_again(f: Far, hosts: list[str]) -> Contender:
    """The floor of an "again" row: one `ssh` per host through the ControlMaster a first run left."""
    return again(
        f,
        "ssh via ControlMaster",
        FLOOR,
        ssh_each(f, hosts, masters(f)),
        hosts,
        lambda: close_masters(f, hosts),
    )


# --------------------------------------------------------------------------- groups


def run_group(f: Far, behind: bool) -> Group:
    """`compute run` of one cmd on 8 hosts: reached directly, or behind the jump host."""
    wan, work = f.wan, f.s.work
    hosts = wan.behind if behind else wan.direct
    key = "jump" if behind else "run"
    _book(f, f"G_{key}.yaml", [{"name": "true", "hosts": hosts, "cmd": "true"}])
    ssh = "ssh -J per host" if behind else "ssh per host"
    paramiko = "paramiko, shared jump" if behind else "paramiko threads"
    ansible = ["-i", "G_inventory.ini", "-f", "8", f"G_{key}_raw.yml"]
    contenders = [
        compute_cold(f, "compute", f.compute("run", "--forks", "8", f"G_{key}.yaml"), hosts),
        cold(f, Contender(ssh, FLOOR, ssh_each(f, hosts), work), hosts),
        cold(f, Contender(paramiko, FLOOR, paramiko_floor(f, hosts), work), hosts),
        cold(f, _ansible(f.s, "ansible raw", ansible), hosts),
    ]
    if not behind:
        default = ssh_each(f, hosts, config=wan.ssh_config)
        contenders.insert(3, cold(f, Contender("ssh, default kex", PEER, default, work), hosts))
    where = "behind a jump host, 100 ms" if behind else "50 ms away"
    return Group(f"G-{key}", f"G. one cmd on 8 hosts {where}", contenders, rtt=wan.rtt * (2 if behind else 1))


def jobs_first(f: Far) -> Group:
    """`compute jobs` on 3 hosts with running jobs, from no kept connection."""
    jobs, hosts, work = ["jobs", "--archive", str(f.archive)], JOB_HOSTS, f.s.work
    contenders = [
        compute_cold(f, "compute", f.compute(*jobs), hosts),
        cold(f, Contender("ssh per host", FLOOR, ssh_each(f, hosts), work), hosts),
        cold(f, Contender("paramiko threads", FLOOR, paramiko_floor(f, hosts), work), hosts),
        startup(f),
        compute_cold(f, "compute (openssh)", f.compute_openssh(*jobs), hosts, PEER),
        cold(f, _ansible(f.s, "ansible raw", ["-i", "G_inventory.ini", "G_jobs_raw.yml"]), hosts),
    ]
    return Group("G-jobs", "G. compute jobs on 3 hosts 50 ms away, first", contenders, rtt=f.wan.rtt)


def jobs_again(f: Far) -> Group:
    """The same, run again within seconds of a first run."""
    jobs, hosts = ["jobs", "--archive", str(f.archive)], JOB_HOSTS
    ansible = [f.s.bin("ansible-playbook"), "-i", "inventory.ini", "-i", "G_inventory.ini", "G_jobs_raw.yml"]
    contenders = [
        again(f, "compute, again", COMPUTE, f.compute(*jobs), hosts),
        again(f, "compute, a third time", PEER, f.compute(*jobs), hosts, before=2),
        ssh_again(f, hosts),
        startup(f),
        again(f, "compute (openssh), again", PEER, f.compute_openssh(*jobs), hosts),
        again(f, "ansible raw, again", PEER, ansible, hosts, ansible_cold(f.s)),
    ]
    target = Target("round trips", 1.5, STARTUP)
    title = "G. compute jobs on 3 hosts 50 ms away, again"
    return Group("G-jobs-again", title, contenders, [target], rtt=f.wan.rtt)


def results_again(f: Far) -> Group:
    """`compute results` of the running jobs, run again within seconds of a first run: their states
    and what is new of their metrics in one command per host (it was two: the states, then the
    metrics), against `compute jobs` (the states alone) and one ssh command per host."""
    results, jobs, hosts = (
        ["results", "--archive", str(f.archive)],
        ["jobs", "--archive", str(f.archive)],
        JOB_HOSTS,
    )
    contenders = [
        again(f, "compute results, again", COMPUTE, f.compute(*results), hosts),
        again(f, "compute jobs, again", PEER, f.compute(*jobs), hosts),
        ssh_again(f, hosts),
        startup(f),
    ]
    target = Target("round trips", 1.0, "compute jobs, again")  # the metrics ride with the states
    title = "G. compute results of running jobs on 3 hosts 50 ms away, again"
    return Group("G-results-again", title, contenders, [target], rtt=f.wan.rtt)


def startup(f: Far) -> Contender:
    """`compute jobs` on a ledger whose only job has ended (its state recorded): start-up alone."""
    counter = RelayCount(f.wan, JOB_HOSTS)
    argv = f.compute("jobs", "--archive", str(f.ended))
    verify = lambda: None if counter.count()["conns"] == 0 else "it connected to a host"  # noqa: E731
    return Contender(STARTUP, FLOOR, argv, f.s.work, nothing_kept(f), verify=verify, counter=counter)


def logs_group(f: Far) -> Group:
    """`compute logs HOST:ID`: one job's output file, from no kept connection."""
    logs, host, work = ["logs", "--archive", str(f.archive), f.job], [f.job.split(":")[0]], f.s.work
    tail = f"tail -c +1 -- {q(f.log)}"
    contenders = [
        compute_cold(f, "compute", f.compute(*logs), host),
        cold(f, Contender("ssh tail", FLOOR, ssh_each(f, host, command=tail), work), host),
        cold(f, Contender("paramiko", FLOOR, paramiko_floor(f, host), work), host),
        compute_cold(f, "compute (openssh)", f.compute_openssh(*logs), host, PEER),
    ]
    return Group("G-logs", "G. compute logs JOB, 50 ms away", contenders, rtt=f.wan.rtt)


def groups(s: Setting) -> list[Group]:
    far = set_up(s)
    return [
        run_group(far, False),
        run_group(far, True),
        jobs_first(far),
        jobs_again(far),
        results_again(far),
        logs_group(far),
    ]
