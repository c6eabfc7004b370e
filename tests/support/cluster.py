"""Multi-node mode of the test bed (`scripts/testbed up --nodes N`): a small real Slurm cluster.

    node1 .. nodeN   one `slurmd -N nodeK` each, in its own network, UTS and mount namespace:
                     `hostname` prints nodeK and /etc/hosts is the bed's; the filesystem is the
                     host's (the cluster's shared file system). No default route: a node reaches
                     nothing but the bridge's subnet.
    bridge           `ctb<tag>` with a /24 picked at start-up among 10.200-254.x.0 (one that no
                     address or route of this machine overlaps); the host side is .1, nodeK .(10+K)
    host side        munged, slurmctld, and with accounting (the default) MariaDB + slurmdbd; the
                     login node is the bed's sshd `cluster` on 127.0.0.1, as in the single-node mode

Accounting: the cluster `testbed`, and the test user ctest in the account `testacct`, are registered
with sacctmgr (root is in the account `root`); `AccountingStorageEnforce=limits`, so per-user limits set with sacctmgr (MaxSubmitJobs,
MaxJobs) are enforced; `MinJobAge=10`: the controller forgets a job 10 s after its end (and once its
purge timer has run) and `sacct` is the source, as on real clusters.

Partitions: `debug` (default, every node, PriorityTier=1), `high` (every node, PriorityTier=10,
not preemptable) and `gpu` (the GPU node: the last one, `Gres=gpu:2`, character devices 195:N).
`PreemptType=preempt/partition_prio` + `PreemptMode=REQUEUE`: a `high` job requeues the `debug`
jobs in its way. The plugins are proctrack/linuxproc + task/none by default (no cgroups needed);
`cgroup=True` (`--cgroup`) uses proctrack/cgroup + task/cgroup on cgroup v1, each node in a subtree
of its own bind-mounted over /sys/fs/cgroup/<controller> in its mount namespace.

Layout below the bed's state directory (besides the single-node mode's ssh/, munge/ ...)::

    slurm/   etc/{slurm.conf,slurmdbd.conf,gres.conf,cgroup.conf,hosts}  dev/nodeK/nvidia[0-1]
             spool/{ctld,nodeK}  log/{slurmctld,slurmdbd,slurmd.nodeK}.log  run/*.pid  jobs/ (1777)
    mariadb/ data/  run/{mysqld.sock,mariadbd.pid}  log/mariadbd.log

Network namespaces `ctb<tag>-nodeK` and the bridge are named after a hash of the state directory's
path (`tag`), so `down` finds them even without testbed.json. Needs root, `ip` (iproute2),
`nsenter`/`unshare` (util-linux), and slurmdbd + mariadb-server for accounting.
The functions here are called by tests/support/testbed.py (`up(nodes=N)`, `down`, `is_up`).
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import pwd
import re
import secrets
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from tests.support.testbed import (
    Testbed,
    TestbedError,
    _children_map,
    _descendants,
    _listening_or_fatal,
    _mkdir,
    _read_pid,
    _run,
    _start_daemon,
    _start_munge,
    _tail,
    _terminate,
    _wait,
    _which,
    _write_atomic,
)

DEFAULT_NODES = 3
NODE_CPUS = 4
NODE_MEMORY = 4000  # MB
NODE_GPUS = 2  # on the last node
CLUSTER_NAME = "testbed"
ACCOUNT = "testacct"
MIN_JOB_AGE = 10
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("freezer", "cpuset", "memory", "devices")
SUBNETS = [ipaddress.IPv4Network(f"10.{a}.{b}.0/24") for a in range(200, 255) for b in range(256)]

# program -> Debian package that provides it
PROGRAMS: dict[str, str] = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "setsid": "util-linux",
}
ACCOUNTING_PROGRAMS: dict[str, str] = {
    "slurmdbd": "slurmdbd",
    "sacctmgr": "slurm-wlm (slurm-client)",
    "sacct": "slurm-wlm (slurm-client)",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
}
INSTALL_HINT = "apt-get install -y --no-install-recommends slurmdbd mariadb-server iproute2"


# --------------------------------------------------------------------------- names and plan


def tag(state: Path) -> str:
    """Six hex digits naming this bed's bridge, veths and network namespaces."""
    return hashlib.sha1(str(Path(state).absolute()).encode()).hexdigest()[:6]


def bridge_name(state: Path) -> str:
    return f"ctb{tag(state)}"


def netns_prefix(state: Path) -> str:
    return f"ctb{tag(state)}-"


def plan(state: Path, nodes: int, accounting: bool, cgroup: bool) -> dict[str, Any]:
    """What testbed.json keeps of the cluster (the subnet is filled in by `start`)."""
    if not 1 <= nodes <= 200:
        raise ValueError("nodes must be between 1 and 200")
    names = [f"node{k}" for k in range(1, nodes + 1)]
    return {
        "bridge": bridge_name(state),
        "netns": {name: netns_prefix(state) + name for name in names},
        "veth": {name: f"{bridge_name(state)}v{k}" for k, name in enumerate(names, 1)},
        "subnet": None,
        "gateway": None,
        "addresses": {},
        "controller": socket.gethostname().split(".")[0],
        "accounting": accounting,
        "cgroup": cgroup,
        "cpus": NODE_CPUS,
        "memory": NODE_MEMORY,
        "gpu_nodes": {names[-1]: NODE_GPUS},
    }


def programs(accounting: bool) -> dict[str, str]:
    return {**PROGRAMS, **(ACCOUNTING_PROGRAMS if accounting else {})}


# ---- paths


def slurmd_pidfile(tb: Testbed, node: str) -> Path:
    return tb.slurm_dir / "run" / f"slurmd.{node}.pid"


def slurmdbd_pidfile(state: Path) -> Path:
    return state / "slurm" / "run" / "slurmdbd.pid"


def mariadb_dir(state: Path) -> Path:
    return state / "mariadb"


def mariadb_socket(state: Path) -> Path:
    return mariadb_dir(state) / "run" / "mysqld.sock"


def mariadb_pidfile(state: Path) -> Path:
    return mariadb_dir(state) / "run" / "mariadbd.pid"


# --------------------------------------------------------------------------- processes


def _owned(pid: int | None, state: Path) -> bool:
    """The process is alive (not a zombie) and was started for this state dir (its command line
    or, for slurmdbd, which takes no config option, its SLURM_CONF says so)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        blob = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return str(state).encode() in blob


def owned_pid(pidfile: Path, state: Path) -> int | None:
    pid = _read_pid(pidfile)
    return pid if _owned(pid, state) else None


def _slurm_env(tb: Testbed) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(tb.slurm_conf)}


def _daemon(cmd: list[str], errfile: Path, what: str, log: Path, env: dict[str, str] | None = None) -> None:
    """Start a program that daemonizes itself (or `setsid -f` does) and check its first exit code."""
    rc = _start_daemon(cmd, errfile, env).wait(timeout=30)
    if rc != 0:
        raise TestbedError(f"{what} failed to start (exit {rc}):\n{_tail(errfile)}\n{_tail(log)}")


# --------------------------------------------------------------------------- network


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([_which("ip") or "ip", *args], check=check, timeout=15)


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address or a route in (the default route aside)."""
    found: list[ipaddress.IPv4Network] = []
    for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
        for word in re.findall(r"(?<![\d.])(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", _ip(*args, check=False).stdout):
            with suppress(ValueError):
                net = ipaddress.IPv4Network(word, strict=False)
                if net.prefixlen > 0:
                    found.append(net)
    return found


def _pick_subnet(state: Path) -> ipaddress.IPv4Network:
    used = _used_networks()
    start = int(tag(state), 16) % len(SUBNETS)
    for i in range(len(SUBNETS)):
        net = SUBNETS[(start + i) % len(SUBNETS)]
        if not any(net.overlaps(other) for other in used):
            return net
    raise TestbedError("no free /24 in 10.200.0.0-10.254.255.0 for the cluster's bridge")


def _netns_list() -> list[str]:
    proc = _ip("netns", "list", check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def _make_network(tb: Testbed) -> None:
    """The bridge with its subnet (picked under a machine-wide lock, so two beds coming up at once
    take different ones), then one namespace per node with its veth on the bridge."""
    c = tb.cluster
    _remove_network(tb.state)  # what a bed of this state dir left behind
    lock_path = Path(tempfile.gettempdir()) / "compute-testbed-net.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        net = _pick_subnet(tb.state)
        hosts = list(net.hosts())
        c["subnet"] = str(net)
        c["gateway"] = str(hosts[0])
        c["addresses"] = {node: str(hosts[9 + k]) for k, node in enumerate(tb.nodes, 1)}
        bridge = c["bridge"]
        _ip("link", "add", bridge, "type", "bridge")
        tb.save()  # from here on, down() removes the bridge
        _ip("link", "set", bridge, "addrgenmode", "none")  # no IPv6 link-local traffic
        _ip("addr", "add", f"{c['gateway']}/{net.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
    for node in tb.nodes:
        ns, veth = c["netns"][node], c["veth"][node]
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "addrgenmode", "none")
        _ip("link", "set", veth, "master", bridge, "up")
        _ip("-n", ns, "link", "set", "eth0", "addrgenmode", "none")
        _ip("-n", ns, "addr", "add", f"{c['addresses'][node]}/{net.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")


def _netns_pids(ns: str) -> list[int]:
    proc = _ip("netns", "pids", ns, check=False)
    return [int(word) for word in proc.stdout.split() if word.isdigit()]


def _remove_network(state: Path) -> None:
    """Kill what still runs in this bed's namespaces (job steps), delete them (their veths go with
    them) and the bridge. Only names derived from this state dir are touched."""
    if _which("ip") is None:
        return
    spaces = [ns for ns in _netns_list() if ns.startswith(netns_prefix(state))]
    pids = [pid for ns in spaces for pid in _netns_pids(ns)]
    children = _children_map()
    _terminate([*pids, *(d for pid in pids for d in _descendants(pid, children))], timeout=3)
    for ns in spaces:
        _ip("netns", "delete", ns, check=False)
    if _link_exists(bridge_name(state)):
        _ip("link", "delete", bridge_name(state), "type", "bridge", check=False)


# --------------------------------------------------------------------------- cgroups


def _cgroup_dirs(state: Path, node: str) -> list[Path]:
    return [CGROUP_ROOT / ctrl / f"ctb{tag(state)}_{node}" for ctrl in CGROUP_CONTROLLERS]


def _make_cgroups(tb: Testbed) -> None:
    for ctrl in CGROUP_CONTROLLERS:
        root = CGROUP_ROOT / ctrl
        if not (root / "tasks").exists() or not os.access(root, os.W_OK):
            raise TestbedError(
                f"--cgroup needs a writable cgroup v1 controller at {root} (this machine has none): "
                "use the default mode (proctrack/linuxproc, task/none)"
            )
    for node in tb.nodes:
        for path in _cgroup_dirs(tb.state, node):
            path.mkdir(exist_ok=True)
            if path.parent.name == "cpuset":  # a new cpuset has no CPUs and no memory nodes
                for name in ("cpuset.cpus", "cpuset.mems"):
                    (path / name).write_text((path.parent / name).read_text())


def _remove_cgroups(state: Path) -> None:
    for ctrl in CGROUP_CONTROLLERS:
        for top in (CGROUP_ROOT / ctrl).glob(f"ctb{tag(state)}_*"):
            for folder, _dirs, _files in os.walk(top, topdown=False):
                with suppress(OSError):
                    os.rmdir(folder)


# --------------------------------------------------------------------------- configuration


def _slurm_conf_text(tb: Testbed) -> str:
    s, p, c = tb.slurm_dir, tb.slurm_ports, tb.cluster
    if c["cgroup"]:
        plugins = (
            "ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup\n"
            "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=1\n"
        )
    else:
        # OverMemoryKill: jobacct_gather polls every second and kills a step over its --mem
        # (FAILED, not OUT_OF_MEMORY; with task/cgroup it would be a fatal conflict)
        plugins = (
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=1\n"
            "JobAcctGatherParams=OverMemoryKill\n"
        )
    if c["accounting"]:
        accounting = f"""\
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={c["gateway"]}
AccountingStoragePort={p["slurmdbd"]}
# the munge socket of sacct/sacctmgr -> slurmdbd connections comes from here, not from AuthInfo
AccountingStoragePass={tb.munge_socket}
AccountingStorageEnforce=limits
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
"""
    else:
        accounting = f"""\
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={tb.jobcomp}
"""
    node_lines = []
    for node in tb.nodes:
        gpus = c["gpu_nodes"].get(node, 0)
        gres = f" Gres=gpu:{gpus}" if gpus else ""
        node_lines.append(
            f"NodeName={node} NodeAddr={c['addresses'][node]} CPUs={c['cpus']} "
            f"RealMemory={c['memory']}{gres} State=UNKNOWN"
        )
    gpu_nodes = ",".join(c["gpu_nodes"])
    return f"""\
# written by scripts/testbed.py (multi-node mode)
ClusterName={CLUSTER_NAME}
SlurmctldHost={c["controller"]}({c["gateway"]})
SlurmctldPort={p["slurmctld"]}
SlurmdPort={p["slurmd"]}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long (default 120 s) before it may start again
AuthInfo=socket={tb.munge_socket},cred_expire=15
StateSaveLocation={s}/spool/ctld
SlurmdSpoolDir={s}/spool/%n
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.%n.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
{plugins}MpiDefault=none
MailProg=/bin/true
# 1, not 2: with 2 an admin `state=down` is undone within a second
ReturnToService=1
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=5,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without it a job with no --mem gets the whole node's memory
DefMemPerCPU=256
# trust CPUs= and RealMemory= below instead of the hardware
SlurmdParameters=config_overrides
{accounting}PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
GresTypes=gpu
KillWait=5
OverTimeLimit=0
MinJobAge={MIN_JOB_AGE}
InactiveLimit=0
{chr(10).join(node_lines)}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=high  Nodes=ALL Default=NO  MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
PartitionName=gpu   Nodes={gpu_nodes} Default=NO MaxTime=1-00:00:00 State=UP PriorityTier=1
"""


def _slurmdbd_conf_text(tb: Testbed, password: str) -> str:
    s = tb.slurm_dir
    return f"""\
# written by scripts/testbed.py (multi-node mode)
AuthType=auth/munge
AuthInfo=socket={tb.munge_socket}
DbdHost={tb.cluster["controller"]}
DbdPort={tb.slurm_ports["slurmdbd"]}
SlurmUser=slurm
DebugLevel=info
LogFile={s}/log/slurmdbd.log
PidFile={s}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={tb.slurm_ports["mariadb"]}
StorageUser=slurm
StoragePass={password}
StorageLoc=slurm_acct_db
"""


def _write_files(tb: Testbed) -> None:
    s, c = tb.slurm_dir, tb.cluster
    for sub, owner in (("etc", None), ("spool", None), ("log", "slurm"), ("run", "slurm"), ("dev", None)):
        _mkdir(s / sub, 0o755, owner)
    _mkdir(s / "spool" / "ctld", 0o755, "slurm")
    for node in tb.nodes:
        _mkdir(s / "spool" / node, 0o755)
    gres = ["AutoDetect=off"]
    for node, count in c["gpu_nodes"].items():
        folder = _mkdir(s / "dev" / node, 0o755)
        for i in range(count):  # character devices (slurmd rejects regular files), NVIDIA's major
            os.mknod(folder / f"nvidia{i}", 0o666 | 0o020000, os.makedev(195, i))
        gres.append(f"NodeName={node} Name=gpu File={folder}/nvidia[0-{count - 1}]")
    assert tb.slurm_conf is not None
    _write_atomic(tb.slurm_conf, _slurm_conf_text(tb))
    _write_atomic(tb.slurm_conf.with_name("gres.conf"), "\n".join(gres) + "\n")
    if c["cgroup"]:
        _write_atomic(
            tb.slurm_conf.with_name("cgroup.conf"),
            "CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nCgroupMountpoint=/sys/fs/cgroup\n"
            "ConstrainCores=yes\nConstrainRAMSpace=yes\nConstrainDevices=yes\n",
        )
    hosts = [f"127.0.0.1 localhost\n{c['gateway']} {c['controller']}\n"]
    hosts += [f"{c['addresses'][node]} {node}\n" for node in tb.nodes]
    _write_atomic(tb.slurm_conf.with_name("hosts"), "".join(hosts))


# --------------------------------------------------------------------------- accounting


INNODB = ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M"]


def _start_mariadb(tb: Testbed) -> str:
    """A private MariaDB (data dir under the state dir, 127.0.0.1 and a unix socket of its own) with
    a database user for slurmdbd; returns that user's password."""
    d = mariadb_dir(tb.state)
    _mkdir(d, 0o755)
    for sub, mode in (("data", 0o700), ("run", 0o755), ("log", 0o750)):
        _mkdir(d / sub, mode, "mysql")
    log = d / "log" / "mariadbd.log"
    init = [
        _which("mariadb-install-db") or "mariadb-install-db",
        "--no-defaults",
        f"--datadir={d / 'data'}",
        "--user=mysql",
        "--auth-root-authentication-method=socket",
        "--skip-test-db",
        "--skip-name-resolve",
        *INNODB,
    ]
    proc = _run(init, check=False, timeout=60)
    if proc.returncode != 0:
        raise TestbedError(f"mariadb-install-db failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    server = [
        _which("setsid") or "setsid",
        "-f",
        _which("mariadbd") or "mariadbd",
        "--no-defaults",
        f"--datadir={d / 'data'}",
        "--user=mysql",
        f"--socket={mariadb_socket(tb.state)}",
        f"--port={tb.slurm_ports['mariadb']}",
        "--bind-address=127.0.0.1",
        f"--pid-file={mariadb_pidfile(tb.state)}",
        f"--log-error={log}",
        "--skip-name-resolve",
        "--max-connections=50",
        *INNODB,
    ]
    _daemon(server, d / "mariadbd.start.err", "mariadbd", log)

    def ready() -> bool:
        if "[ERROR] Aborting" in (log.read_text(errors="replace") if log.exists() else ""):
            raise TestbedError(f"mariadbd failed to start:\n{_tail(log)}")
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(mariadb_socket(tb.state)))
            except OSError:
                return False
        return True

    _wait(ready, 30, "mariadbd's socket", interval=0.02)
    password = secrets.token_hex(12)
    sql = (
        f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    )
    client = [_which("mariadb") or "mariadb", "--no-defaults", f"--socket={mariadb_socket(tb.state)}"]
    _run([*client, "-u", "root", "-e", sql])
    return password


def _start_slurmdbd(tb: Testbed, password: str) -> None:
    assert tb.slurm_conf is not None
    conf = tb.slurm_conf.with_name("slurmdbd.conf")
    _write_atomic(conf, _slurmdbd_conf_text(tb, password), 0o600)
    pw = pwd.getpwnam("slurm")
    os.chown(conf, pw.pw_uid, pw.pw_gid)
    log = tb.slurm_dir / "log" / "slurmdbd.log"
    # slurmdbd takes no config option: it reads slurmdbd.conf beside $SLURM_CONF
    _daemon(
        [_which("slurmdbd") or "slurmdbd"],
        tb.slurm_dir / "log" / "slurmdbd.start.err",
        "slurmdbd",
        log,
        _slurm_env(tb),
    )
    port = tb.slurm_ports["slurmdbd"]
    try:
        _wait(lambda: _listening_or_fatal(port, log), 30, f"slurmdbd on port {port}", interval=0.02)
    except TestbedError as e:
        raise TestbedError(f"{e}\n{_tail(log)}") from None


def sacctmgr(tb: Testbed, *commands: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run sacctmgr commands (one a line, e.g. `modify user ctest set MaxSubmitJobs=2`) as root
    without confirmation, in one process."""
    cmd = [_which("sacctmgr") or "sacctmgr", "-i"]
    if len(commands) == 1:
        return _run([*cmd, *shlex.split(commands[0])], env=_slurm_env(tb), check=check)
    return _run(cmd, env=_slurm_env(tb), check=check, input="\n".join(commands) + "\n")


def _register(tb: Testbed) -> None:
    """The cluster, the account and the test user in the accounting database: one `sacctmgr load`
    (each sacctmgr call costs ~0.4 s here, most of it in slurmdbd's replies)."""
    flat = tb.slurm_dir / "etc" / "associations.cfg"
    _write_atomic(
        flat,
        f"Cluster - '{CLUSTER_NAME}'\n"
        "Parent - 'root'\n"
        f"Account - '{ACCOUNT}':Description='tests':Organization='testbed'\n"
        f"Parent - '{ACCOUNT}'\n"
        f"User - '{tb.user}':DefaultAccount='{ACCOUNT}'\n",
    )
    proc = sacctmgr(tb, f"load file={flat}", check=False)
    if proc.returncode != 0:
        raise TestbedError(
            f"sacctmgr could not register the cluster and the test user:\n{proc.stdout}{proc.stderr}"
        )


# --------------------------------------------------------------------------- nodes


def node_states(tb: Testbed) -> dict[str, str]:
    """node -> Slurm state (`idle`, `mixed`, `down*` ...), as sinfo shows it; {} if it does not answer."""
    proc = _run(["sinfo", "-h", "-N", "-o", "%N|%T"], env=_slurm_env(tb), check=False, timeout=15)
    if proc.returncode != 0:
        return {}
    states: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        node, _, state = line.partition("|")
        states[node.strip()] = state.strip()
    return states


def wait_nodes_idle(tb: Testbed, timeout: float = 30) -> None:
    """Wait until every node is idle (nodes left drained/down are resumed once)."""
    deadline = time.monotonic() + timeout
    resumed = False
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = node_states(tb)
        if set(states) == set(tb.nodes) and all(s.rstrip("*~#!%$@^-") == "idle" for s in states.values()):
            return
        bad = [n for n, s in states.items() if any(w in s for w in ("drain", "inval", "fail", "down"))]
        if bad and not resumed and not any(s.endswith("*") for s in states.values()):
            _run(
                ["scontrol", "update", f"nodename={','.join(bad)}", "state=resume"],
                env=_slurm_env(tb),
                check=False,
            )
            resumed = True
        time.sleep(0.02)
    logs = "\n".join(_tail(tb.slurm_dir / "log" / f"slurmd.{n}.log", 5) for n in tb.nodes)
    raise TestbedError(
        f"Slurm nodes not idle after {timeout:g} s: {states}\n"
        + _tail(tb.slurm_dir / "log" / "slurmctld.log")
        + "\n"
        + logs
    )


def _node_script(tb: Testbed, node: str) -> str:
    """What runs in the node's new UTS + mount namespace before it becomes slurmd."""
    assert tb.slurm_conf is not None
    q = shlex.quote
    steps = [f"mount --bind {q(str(tb.slurm_conf.with_name('hosts')))} /etc/hosts", f"hostname {node}"]
    if tb.cluster["cgroup"]:
        for path in _cgroup_dirs(tb.state, node):
            steps.append(f"mount --bind {q(str(path))} {q(str(path.parent))}")
    slurmd = _which("slurmd") or "slurmd"
    steps.append(f"exec {q(slurmd)} -N {node} -f {q(str(tb.slurm_conf))}")
    return " && ".join(steps)


def _start_nodes(tb: Testbed) -> None:
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    for node in tb.nodes:
        ns = NETNS_DIR / tb.cluster["netns"][node]
        cmd = [
            _which("nsenter") or "nsenter",
            f"--net={ns}",
            "--",
            _which("unshare") or "unshare",
            "--uts",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            _node_script(tb, node),
        ]
        errfile = tb.slurm_dir / "log" / f"slurmd.{node}.start.err"
        started.append((node, _start_daemon(cmd, errfile, _slurm_env(tb))))
    for node, proc in started:
        rc = proc.wait(timeout=30)
        if rc != 0:
            log = tb.slurm_dir / "log" / f"slurmd.{node}.log"
            errfile = tb.slurm_dir / "log" / f"slurmd.{node}.start.err"
            raise TestbedError(f"slurmd {node} failed to start (exit {rc}):\n{_tail(errfile)}\n{_tail(log)}")


# --------------------------------------------------------------------------- up / down


def start(tb: Testbed, timings: dict[str, float] | None = None) -> None:
    """Bring the cluster of `tb` up: network, files, munged, MariaDB + slurmdbd + sacctmgr (with
    accounting), slurmctld, the nodes; returns once every node is idle. `timings` gets the
    seconds each step took."""
    times = timings if timings is not None else {}
    t0 = time.monotonic()

    def mark(step: str) -> None:
        nonlocal t0
        now = time.monotonic()
        times[step] = round(now - t0, 3)
        t0 = now

    c = tb.cluster
    errors: list[BaseException] = []
    db_password: list[str] = []

    def database() -> None:  # the slow part (~2 s): runs while the network is made
        try:
            db_password.append(_start_mariadb(tb))
        except BaseException as e:  # re-raised below
            errors.append(e)

    db_thread: threading.Thread | None = None
    if c["accounting"]:
        db_thread = threading.Thread(target=database, daemon=True)
        db_thread.start()
    try:
        _make_network(tb)
        if c["cgroup"]:
            _make_cgroups(tb)
        _write_files(tb)
        _start_munge(tb)
        mark("network, files, munged")
    finally:
        if db_thread is not None:
            db_thread.join()
    if errors:
        raise errors[0]
    if c["accounting"]:
        mark("mariadb (rest)")
        _start_slurmdbd(tb, db_password[0])
        mark("slurmdbd")
        _register(tb)
        mark("sacctmgr")
    log = tb.slurm_dir / "log" / "slurmctld.log"
    assert tb.slurm_conf is not None
    _daemon(
        [_which("slurmctld") or "slurmctld", "-f", str(tb.slurm_conf)],
        tb.slurm_dir / "log" / "slurmctld.start.err",
        "slurmctld",
        log,
        _slurm_env(tb),
    )
    port = tb.slurm_ports["slurmctld"]
    try:
        _wait(lambda: _listening_or_fatal(port, log), 20, f"slurmctld on port {port}")
    except TestbedError as e:
        raise TestbedError(f"{e}\n{_tail(log)}") from None
    mark("slurmctld")
    _start_nodes(tb)
    wait_nodes_idle(tb, 30)
    mark("slurmd, nodes idle")


def stop(state: Path, tb: Testbed | None) -> None:
    """Stop the cluster's own daemons (every slurmd, slurmctld, slurmdbd, mariadbd) at once; munged,
    the sshds and the network are testbed.down's and remove_network's."""
    pids: list[int] = []
    run = state / "slurm" / "run"
    pidfiles = [
        *run.glob("slurmd.*.pid"),
        run / "slurmctld.pid",
        slurmdbd_pidfile(state),
        mariadb_pidfile(state),
    ]
    for pidfile in pidfiles:
        pid = owned_pid(pidfile, state)
        if pid is not None:
            pids.append(pid)
    _terminate(pids, timeout=10)
    for pidfile in pidfiles:
        pidfile.unlink(missing_ok=True)


def remove_network(state: Path) -> None:
    """After the daemons: leftover job steps, the namespaces, the bridge, the cgroup subtrees."""
    _remove_network(state)
    _remove_cgroups(state)


def components(tb: Testbed) -> Iterator[tuple[str, str, bool, bool]]:
    """(what, detail, alive, needed) for `testbed status` and `is_up`."""
    c = tb.cluster
    yield "bridge", f"{c['bridge']} {c['subnet']}", _link_exists(c["bridge"]), True
    spaces = set(_netns_list())
    daemons: list[tuple[str, Path, int | None]] = [("munged", tb.munge_dir / "run" / "munged.pid", None)]
    if c["accounting"]:
        daemons += [
            ("mariadbd", mariadb_pidfile(tb.state), tb.slurm_ports.get("mariadb")),
            ("slurmdbd", slurmdbd_pidfile(tb.state), tb.slurm_ports.get("slurmdbd")),
        ]
    daemons.append(("slurmctld", tb.slurm_dir / "run" / "slurmctld.pid", tb.slurm_ports.get("slurmctld")))
    for name, pidfile, port in daemons:
        pid = owned_pid(pidfile, tb.state)
        where = f"port {port} " if port else ""
        yield name, f"{where}pid {pid}", pid is not None, True
    for node in tb.nodes:
        pid = owned_pid(slurmd_pidfile(tb, node), tb.state)
        ns = c["netns"][node]
        alive = pid is not None and ns in spaces
        yield f"slurmd {node}", f"{c['addresses'].get(node)} netns {ns} pid {pid}", alive, True


def describe(tb: Testbed) -> list[str]:
    """What `testbed up` prints about the cluster."""
    c = tb.cluster
    gpus = ", ".join(f"{n} gpu:{k}" for n, k in c["gpu_nodes"].items())
    mode = "cgroup (proctrack/cgroup, task/cgroup)" if c["cgroup"] else "linuxproc (no cgroups)"
    acct = (
        f"slurmdbd :{tb.slurm_ports['slurmdbd']} + MariaDB 127.0.0.1:{tb.slurm_ports['mariadb']}, "
        f"cluster {CLUSTER_NAME}, user {tb.user} in account {ACCOUNT}, limits enforced"
        if c["accounting"]
        else "none (sacct does not work)"
    )
    nodes = ", ".join(f"{n} {c['addresses'][n]}" for n in tb.nodes)
    return [
        f"nodes    {nodes} ({c['cpus']} CPUs, {c['memory']} MB each; {gpus})",
        f"network  bridge {c['bridge']} {c['subnet']} (host side {c['gateway']}), netns {netns_prefix(tb.state)}*",
        f"slurm    slurmctld {c['gateway']}:{tb.slurm_ports['slurmctld']}, SLURM_CONF={tb.slurm_conf}",
        "         partitions debug* (PriorityTier 1), high (10, preempts debug: REQUEUE), gpu; "
        f"MinJobAge {MIN_JOB_AGE} s; plugins {mode}",
        f"account  {acct}",
        f"login    ssh -F {tb.ssh_config} {tb.slurm_alias}",
    ]
