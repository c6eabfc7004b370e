"""Local test bed: several OpenSSH servers on 127.0.0.1 plus a single-node Slurm cluster, or a
small multi-node one.

Everything lives below one state directory (default ``$COMPUTE_TESTBED`` or
``/tmp/compute-testbed``); every daemon listens on a port picked at start-up, so several
beds (parallel test runs) can be up on one machine at the same time.

    testbed up [--state DIR] [--hosts N] [--no-slurm] [--max-job-count N] [--nodes N [--no-accounting] [--cgroup]]
    testbed down [--state DIR]
    testbed env [--state DIR]        # prints export lines for a shell
    testbed status [--state DIR]

Hosts: ``h1..hN`` are one sshd each (same host key, same machine, same test user ``ctest``);
``cluster`` is one more sshd that stands for the Slurm login node (``sbatch`` there reaches the
bed's private slurmctld through ``SetEnv SLURM_CONF=...`` in the sshd config).

``--nodes N`` (``up(nodes=N)``) is the multi-node mode, in tests/support/cluster.py: instead of the
single-node cluster, N slurmd in network namespaces on a bridge of their own, slurmctld, slurmdbd +
MariaDB (accounting, limits enforced), partitions with preemption, fake GPUs on the last node; the
login node is still ``cluster``. The single-node mode is unchanged and stays the fast tests' bed.

Layout of STATE::

    testbed.json  hosts.yaml  ssh_config  known_hosts  env.sh
    ssh/      sshd_config  hostkey_ed25519  client_ed25519  authorized_keys/ctest
              NAME.pid  NAME.log (one per sshd instance)
    tmux/     TMUX_TMPDIR of every ssh session (tmux sockets: tmux/tmux-UID/NAME)
    notmux/bin  symlinks to /usr/local/bin + /usr/bin except tmux (PATH of no-tmux hosts)
    munge/    etc/munge.key lib/ log/ run/munge.socket run/munged.pid
    slurm/    etc/slurm.conf etc/gres.conf spool/{ctld,d} log/{slurmctld,slurmd}.log
              log/jobcomp.txt run/*.pid fakegpu/nvidia[0-1] jobs/ (1777)

Its command line is ``scripts/testbed`` (``scripts/testbed.py``, which runs ``main`` here). The
tests import it (``from tests.support import testbed as tbm``) for the API ``up``, ``down``,
``Testbed.load``, ``start_sshd``, ``stop_sshd``, ``sshd_log``, ``free_port``, ``slurm_env``,
``wait_idle``, ``is_up``; the multi-node mode adds ``cluster.sacctmgr``, ``cluster.node_states``.
Only the standard library: it runs with any python3, before the package
is installed. Needs root (it creates the user, mknods fake GPUs and runs slurmd as root).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

USER = "ctest"
SLURM_ALIAS = "cluster"
DEFAULT_HOSTS = 4
CLUSTER_CPUS = 32
CLUSTER_GPUS = 2
SSHD = "/usr/sbin/sshd"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MARKER = "testbed.json"

# program -> Debian package that provides it
PROGRAMS: dict[str, str] = {
    SSHD: "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "tmux": "tmux",
    "useradd": "passwd",
    "usermod": "passwd",
    "runuser": "util-linux",
}
SLURM_PROGRAMS: dict[str, str] = {
    "munged": "munge",
    "slurmctld": "slurm-wlm (slurmctld)",
    "slurmd": "slurm-wlm (slurmd)",
    "sbatch": "slurm-wlm (slurm-client)",
    "squeue": "slurm-wlm (slurm-client)",
    "sinfo": "slurm-wlm (slurm-client)",
    "scancel": "slurm-wlm (slurm-client)",
    "scontrol": "slurm-wlm (slurm-client)",
}
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends "
    "openssh-server openssh-client slurm-wlm munge tmux git python3-venv"
)


class TestbedError(RuntimeError):
    """The bed cannot be brought up (missing program, not root, daemon failed...)."""


def default_state() -> Path:
    return Path(os.environ.get("COMPUTE_TESTBED") or "/tmp/compute-testbed")


# --------------------------------------------------------------------------- the bed


@dataclass
class Testbed:
    state: Path
    user: str
    client_key: Path
    known_hosts: Path
    hosts_yaml: Path
    ssh_config: Path
    hosts: dict[str, int]
    """Every sshd instance: alias -> port (h1..hN, the slurm alias, and start_sshd() extras)."""
    slurm_alias: str | None
    slurm_conf: Path | None
    home: Path
    jobs_dir: Path
    host_key: Path
    host_pubkey: str
    sshd_options: dict[str, dict[str, str]] = field(default_factory=dict)
    """Extra sshd -o options per instance (kept so a restarted host keeps them)."""
    slurm_ports: dict[str, int] = field(default_factory=dict)
    node: str | None = None
    up_seconds: float = 0.0
    base_hosts: list[str] = field(default_factory=list)
    """The sshd instances of `up` (the others were added by start_sshd() and may be stopped)."""
    up_timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step of the multi-node mode's bring-up."""
    nodes: list[str] = field(default_factory=list)
    """Multi-node mode (`up(nodes=N)`): the compute nodes node1..nodeN; empty in the single-node mode."""
    cluster: dict[str, Any] = field(default_factory=dict)
    """Multi-node mode: network (bridge, subnet, netns, addresses), switches (accounting, cgroup),
    node sizes and GPU nodes (tests/support/cluster.py `plan`)."""
    max_job_count: int = 0
    """The single-node cluster's MaxJobCount (0: Slurm's default, 10,000 jobs, each array element
    counting); bench/sweep.py raises it for its 100,000-point sweep."""

    # ---- paths
    @property
    def ssh_dir(self) -> Path:
        return self.state / "ssh"

    @property
    def sshd_config(self) -> Path:
        return self.ssh_dir / "sshd_config"

    @property
    def tmux_dir(self) -> Path:
        """TMUX_TMPDIR of every ssh session: the sockets are in tmux/tmux-UID/."""
        return self.state / "tmux"

    @property
    def linux_hosts(self) -> list[str]:
        return [name for name in self.hosts if name != self.slurm_alias]

    def sshd_pidfile(self, name: str) -> Path:
        return self.ssh_dir / f"{name}.pid"

    def sshd_logfile(self, name: str) -> Path:
        return self.ssh_dir / f"{name}.log"

    @property
    def slurm_dir(self) -> Path:
        return self.state / "slurm"

    @property
    def munge_dir(self) -> Path:
        return self.state / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "run" / "munge.socket"

    @property
    def jobcomp(self) -> Path:
        """One `JobId=... JobState=... ExitCode=...` line per finished job (sacct does not work)."""
        return self.slurm_dir / "log" / "jobcomp.txt"

    # ---- persistence
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Testbed:
        paths = {
            "state",
            "client_key",
            "known_hosts",
            "hosts_yaml",
            "ssh_config",
            "home",
            "jobs_dir",
            "host_key",
            "slurm_conf",
        }
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in data:
                continue
            value = data[name]
            kwargs[name] = Path(value) if name in paths and value is not None else value
        return cls(**kwargs)

    def save(self) -> None:
        _write_atomic(self.state / MARKER, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, state: Path) -> Testbed:
        path = Path(state) / MARKER
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise TestbedError(f"no test bed in {state} (run: scripts/testbed up --state {state})") from None


# --------------------------------------------------------------------------- helpers

_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (never the same one twice in this process)."""
    with _ports_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise TestbedError("could not find a free port")


def _which(program: str) -> str | None:
    if os.path.isabs(program):
        return program if os.access(program, os.X_OK) else None
    path = os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH
    return shutil.which(program, path=path)


def _require(programs: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    missing: list[str] = []
    for program, package in programs.items():
        where = _which(program)
        if where is None:
            missing.append(f"{program} (Debian package {package})")
        else:
            found[program] = where
    if missing:
        raise TestbedError(
            "missing programs: " + ", ".join(missing) + f"\n  install them with: {INSTALL_HINT}"
        )
    return found


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _mkdir(path: Path, mode: int = 0o755, owner: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def _run(
    cmd: list[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise TestbedError(
            f"{shlex.join(cmd)} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def _start_daemon(
    cmd: list[str], errfile: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a self-daemonizing program; its early stderr goes to errfile (never a pipe)."""
    with open(errfile, "wb") as err:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=dict(env) if env is not None else None,
            close_fds=True,
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---- processes (by pid file; never by name)


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _has_pid(pidfile: Path) -> bool:
    return _read_pid(pidfile) is not None


def _proc_state(pid: int) -> str | None:
    """The /proc state letter, or None if there is no such process. Zombies count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    out: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(children.get(child, []))
    return out


def _owned_pid(pidfile: Path, state: Path) -> int | None:
    """The pid in pidfile if that process is alive and was started for this state dir."""
    pid = _read_pid(pidfile)
    if pid is None or not _alive(pid):
        return None
    if str(state) not in _cmdline(pid):
        return None  # pid reused by something else
    return pid


def _terminate(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM, wait until gone (zombies count as gone), SIGKILL after timeout."""
    pids = [p for p in pids if _alive(p)]
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                if _alive(pid):
                    with suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            _wait(lambda: not any(_alive(p) for p in pids), 5, "killed processes to exit")
            return
        time.sleep(0.01)


def _stop_pidfile(pidfile: Path, state: Path, tree: bool = False) -> None:
    pid = _owned_pid(pidfile, state)
    if pid is not None:
        pids = [pid]
        if tree:
            pids += _descendants(pid, _children_map())
        _terminate(pids)
    with suppress(FileNotFoundError):
        pidfile.unlink()


# --------------------------------------------------------------------------- user


def _ensure_user(user: str) -> pwd.struct_passwd:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        _run(["useradd", "-m", "-s", "/bin/bash", user])
        pw = pwd.getpwnam(user)
    # useradd leaves the password '!' (locked); with UsePAM no, sshd then refuses even keys.
    locked = True
    with suppress(OSError):
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                locked = fields[1].startswith("!")
    if locked:
        _run(["usermod", "-p", "*", user])
    home = Path(pw.pw_dir)
    if not home.is_dir():
        _mkdir(home, 0o755, user)
    # A plain, fast shell start-up. TESTBED_PATH (set by the sshd of a no-tmux host) wins over
    # the PATH that /etc/profile sets for login shells.
    rc = (
        "# written by scripts/testbed.py: a plain, fast shell start-up for the test user\n"
        'if [ -n "${TESTBED_PATH:-}" ]; then PATH="$TESTBED_PATH"; export PATH; fi\n'
    )
    for name in (".bashrc", ".profile"):
        path = home / name
        try:
            same = path.read_text() == rc
        except OSError:
            same = False
        if not same:
            _write_atomic(path, rc)
            os.chown(path, pw.pw_uid, pw.pw_gid)
    with suppress(FileNotFoundError):
        (home / ".bash_logout").unlink()
    return pw


# Users whose login differs the way real ones do: another login shell, or start-up files that print,
# `set -e`/`set -u`. Each exports COMPUTE_LOGIN from its start-up files (what a job must still see).
# Made on demand by `login_user` (useradd takes ~50 ms each), with the test user's key.
LOGIN_USERS: dict[str, tuple[str, dict[str, str]]] = {
    "czsh": ("/usr/bin/zsh", {".zshenv": "export COMPUTE_LOGIN=zsh\n"}),
    "cfish": ("/usr/bin/fish", {".config/fish/config.fish": "set -gx COMPUTE_LOGIN fish\n"}),
    "ctcsh": ("/usr/bin/tcsh", {".tcshrc": "setenv COMPUTE_LOGIN tcsh\n"}),
    "cdash": ("/bin/dash", {}),
    "cnoisy": (
        "/bin/bash",
        {
            ".bashrc": "echo 'Welcome to the lab cluster!'\necho 'quota: 91% of /home used' >&2\n"
            "set -eu\nexport COMPUTE_LOGIN=noisy\ncd /tmp\n"
        },
    ),
    "ccd": ("/bin/bash", {".bashrc": "cd /tmp\nexport COMPUTE_LOGIN=cd\n"}),
}


def login_user(tb: Testbed, name: str) -> str:
    """Make one of LOGIN_USERS (idempotent), allowed in with the bed's client key; its name."""
    shell_path, files = LOGIN_USERS[name]
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "-m", "-s", shell_path, name])
        pw = pwd.getpwnam(name)
    _run(["usermod", "-p", "*", "-s", shell_path, name])
    home = Path(pw.pw_dir)
    for relative, text in files.items():
        path = home / relative
        for folder in reversed([*path.relative_to(home).parents][:-1]):
            _mkdir(home / folder, 0o755, name)
        _write_atomic(path, text)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    public = tb.client_key.with_name(tb.client_key.name + ".pub").read_text().strip()
    _write_atomic(tb.ssh_dir / "authorized_keys" / name, public + "\n")
    return name


# --------------------------------------------------------------------------- ssh


def _keygen(path: Path, comment: str) -> str:
    _run(["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def _base_setenv(tb: Testbed) -> list[str]:
    env = [f"TMUX_TMPDIR={tb.tmux_dir}"]
    if tb.slurm_conf is not None:
        env.insert(0, f"SLURM_CONF={tb.slurm_conf}")
    return env


def _write_sshd_config(tb: Testbed) -> None:
    text = f"""\
# shared by every test sshd instance; Port/ListenAddress/PidFile are given with -o per instance
HostKey {tb.host_key}
AuthorizedKeysFile {tb.ssh_dir}/authorized_keys/%u
# StrictModes must be off: the keys live below /tmp (1777)
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 64
Subsystem sftp internal-sftp
# only the first SetEnv line counts: start_sshd() merges extra variables into it (-o comes first)
SetEnv {" ".join(_base_setenv(tb))}
LogLevel VERBOSE
"""
    _write_atomic(tb.sshd_config, text)


def _notmux_bin(tb: Testbed) -> Path:
    """A directory of symlinks to everything in /usr/local/bin and /usr/bin except tmux."""
    bindir = tb.state / "notmux" / "bin"
    if bindir.is_dir():
        return bindir
    tmp = tb.state / "notmux" / f".bin.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for src in ("/usr/local/bin", "/usr/bin"):
        with suppress(OSError):
            for entry in os.scandir(src):
                if entry.name.startswith("tmux") or (tmp / entry.name).exists():
                    continue
                with suppress(FileExistsError):
                    os.symlink(entry.path, tmp / entry.name)
    os.chmod(tmp, 0o755)
    try:
        os.rename(tmp, bindir)
    except OSError:  # someone else made it
        shutil.rmtree(tmp, ignore_errors=True)
    return bindir


def _sshd_command(tb: Testbed, name: str, port: int, extra: Mapping[str, str]) -> list[str]:
    opts: dict[str, str] = {}
    setenv = _base_setenv(tb)
    for key, value in extra.items():
        if key.lower() == "setenv":
            added = value.split()
            names = {item.split("=", 1)[0] for item in added}
            setenv = [item for item in setenv if item.split("=", 1)[0] not in names] + added
        else:
            opts[key] = value
    opts.update(
        {
            "Port": str(port),
            "ListenAddress": "127.0.0.1",
            "PidFile": str(tb.sshd_pidfile(name)),
            "SetEnv": " ".join(setenv),
        }
    )
    cmd = [SSHD, "-f", str(tb.sshd_config), "-E", str(tb.sshd_logfile(name))]
    for key, value in opts.items():
        cmd += ["-o", f"{key} {value}"]
    return cmd


def _launch_sshds(tb: Testbed, names: Iterable[str]) -> None:
    """Start the named sshd instances (ports/options from tb) and wait until they accept."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privsep dir: /run is a tmpfs
    os.chmod("/run/sshd", 0o755)
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name in names:
        port = tb.hosts[name]
        tb.sshd_pidfile(name).unlink(missing_ok=True)
        if _port_open(port):
            raise TestbedError(f"sshd {name}: port {port} is already in use")
        cmd = _sshd_command(tb, name, port, tb.sshd_options.get(name, {}))
        started.append((name, _start_daemon(cmd, tb.ssh_dir / f"{name}.start.err")))
    for name, proc in started:
        rc = proc.wait(timeout=10)
        port = tb.hosts[name]
        if rc != 0:
            raise TestbedError(
                f"sshd {name} (port {port}) failed to start (exit {rc}):\n"
                + _tail(tb.ssh_dir / f"{name}.start.err")
                + "\n"
                + _tail(tb.sshd_logfile(name))
            )
    for name, _ in started:
        port = tb.hosts[name]
        try:
            _wait(partial(_port_open, port), 10, f"sshd {name} on port {port}")
            _wait(partial(_has_pid, tb.sshd_pidfile(name)), 5, f"sshd {name} pid file")
        except TestbedError as e:
            raise TestbedError(f"{e}\n{_tail(tb.sshd_logfile(name))}") from None


def _write_client_files(tb: Testbed) -> None:
    """known_hosts, ssh_config and hosts.yaml for every sshd instance in tb.hosts."""
    keytype, keydata = tb.host_pubkey.split()[:2]
    _write_atomic(
        tb.known_hosts, "".join(f"[127.0.0.1]:{port} {keytype} {keydata}\n" for port in tb.hosts.values())
    )
    cfg = [f"# test bed {tb.state}: ssh -F {tb.ssh_config} h1 ...\n"]
    for name, port in tb.hosts.items():
        cfg.append(
            f"Host {name}\n"
            f"  HostName 127.0.0.1\n"
            f"  Port {port}\n"
            f"  User {tb.user}\n"
            f"  IdentityFile {tb.client_key}\n"
            f"  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {tb.known_hosts}\n"
            f"  GlobalKnownHostsFile /dev/null\n"
            f"  StrictHostKeyChecking yes\n"
            f"  BatchMode yes\n"
            f"  ConnectTimeout 10\n"
            f"  LogLevel ERROR\n\n"
        )
    _write_atomic(tb.ssh_config, "".join(cfg))
    yaml = [f"# test bed {tb.state} (written by scripts/testbed.py)\n"]
    for name, port in tb.hosts.items():
        yaml.append(
            f"{name}:\n"
            f"  host: 127.0.0.1\n"
            f"  port: {port}\n"
            f"  user: {tb.user}\n"
            f"  key: {json.dumps(str(tb.client_key))}\n"
            f"  known_hosts: {json.dumps(str(tb.known_hosts))}\n"
            f'  save_path: "~/compute/logs"\n'
        )
        if name == tb.slurm_alias:
            cpus, gpus = _cluster_size(tb)
            yaml.append(f"  platform: slurm\n  cpus_per_node: {cpus}\n  gpu: {gpus}\n")
    _write_atomic(tb.hosts_yaml, "".join(yaml))
    env = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env_vars(tb).items())
    _write_atomic(tb.state / "env.sh", env)


def _cluster_size(tb: Testbed) -> tuple[int, int]:
    """CPUs of one node and GPUs of the GPU node(s), for hosts.yaml's entry of the login node."""
    if tb.nodes:
        return int(tb.cluster["cpus"]), max(tb.cluster["gpu_nodes"].values(), default=0)
    return CLUSTER_CPUS, CLUSTER_GPUS


def start_sshd(
    tb: Testbed,
    name: str,
    port: int | None = None,
    extra_options: dict[str, str] | None = None,
    no_tmux: bool = False,
) -> int:
    """Start (or restart) one sshd instance `name`; returns its port.

    A known name keeps its port and options unless given. `extra_options` are sshd_config
    keywords given with -o (a SetEnv is merged with the bed's SLURM_CONF/TMUX_TMPDIR).
    `no_tmux=True`: the sessions' PATH has no tmux (also for login shells).
    The host is added to tb.hosts, known_hosts, ssh_config, hosts.yaml and testbed.json.
    """
    if "/" in name or not name:
        raise ValueError(f"bad host name {name!r}")
    running = _owned_pid(tb.sshd_pidfile(name), tb.state)
    if running is not None:
        raise TestbedError(f"sshd {name} is already running (pid {running})")
    if port is None:
        port = tb.hosts.get(name) or free_port()
    options = dict(tb.sshd_options.get(name, {})) if extra_options is None else dict(extra_options)
    if no_tmux:
        bindir = _notmux_bin(tb)
        setenv = [
            item
            for item in options.get("SetEnv", "").split()
            if item.split("=", 1)[0] not in ("PATH", "TESTBED_PATH")
        ]
        options["SetEnv"] = " ".join([*setenv, f"PATH={bindir}", f"TESTBED_PATH={bindir}"])
    new = name not in tb.hosts
    tb.hosts[name] = port
    if options:
        tb.sshd_options[name] = options
    else:
        tb.sshd_options.pop(name, None)
    try:
        _launch_sshds(tb, [name])
    except BaseException:
        if new:
            del tb.hosts[name]
            tb.sshd_options.pop(name, None)
        raise
    _write_client_files(tb)
    tb.save()
    return port


def stop_sshd(tb: Testbed, name: str, kill_sessions: bool = True) -> None:
    """Stop sshd `name` (by its pid file) and wait until its port is closed.

    kill_sessions=True (default) also ends its open connections, like a host going down.
    The host stays in tb.hosts, so start_sshd(tb, name) brings it back on the same port.
    """
    _stop_pidfile(tb.sshd_pidfile(name), tb.state, tree=kill_sessions)
    port = tb.hosts.get(name)
    if port is not None:
        _wait(lambda: not _port_open(port), 10, f"port {port} of sshd {name} to close")


def remove_sshd(tb: Testbed, name: str) -> None:
    """Stop sshd `name` (added by start_sshd) and forget it: gone from tb.hosts and the client files."""
    if name in tb.base_hosts:
        raise TestbedError(f"{name} is one of the bed's own hosts: use stop_sshd()")
    stop_sshd(tb, name)
    tb.hosts.pop(name, None)
    tb.sshd_options.pop(name, None)
    _write_client_files(tb)
    tb.save()


def sshd_log(tb: Testbed, name: str) -> str:
    """The log of sshd `name` (LogLevel VERBOSE: 'Accepted publickey for ctest from ...')."""
    try:
        return tb.sshd_logfile(name).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------- slurm


def slurm_env(tb: Testbed) -> dict[str, str]:
    """Variables for local sbatch/squeue/... calls: env={**os.environ, **slurm_env(tb)}."""
    if tb.slurm_conf is None:
        raise TestbedError(f"the test bed {tb.state} has no Slurm (it was brought up with --no-slurm)")
    return {"SLURM_CONF": str(tb.slurm_conf)}


def _slurm_cmd(
    tb: Testbed, cmd: list[str], check: bool = True, timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    return _run(cmd, env={**os.environ, **slurm_env(tb)}, check=check, timeout=timeout)


def node_state(tb: Testbed) -> str:
    proc = _slurm_cmd(tb, ["sinfo", "-h", "-o", "%T"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _jobs(tb: Testbed) -> list[str]:
    proc = _slurm_cmd(tb, ["squeue", "-h", "-o", "%A"], check=False)
    if proc.returncode != 0:
        return []
    return proc.stdout.split()


def _wait_node_idle(tb: Testbed, timeout: float) -> None:
    if tb.nodes:
        from tests.support import cluster as mn  # it builds on this module's helpers

        mn.wait_nodes_idle(tb, timeout)
        return
    deadline = time.monotonic() + timeout
    resumed = False
    state = ""
    while time.monotonic() < deadline:
        state = node_state(tb)
        base = state.rstrip("*~#!%$@^-")
        if base == "idle":
            return
        if not resumed and any(s in base for s in ("drain", "inval", "fail")):
            _slurm_cmd(tb, ["scontrol", "update", f"nodename={tb.node}", "state=resume"], check=False)
            resumed = True
        time.sleep(0.02)
    raise TestbedError(
        f"Slurm node {tb.node} not idle after {timeout:g} s (state {state!r})\n"
        + _tail(tb.slurm_dir / "log" / "slurmctld.log")
        + "\n"
        + _tail(tb.slurm_dir / "log" / "slurmd.log")
    )


def wait_idle(tb: Testbed, timeout: float = 30) -> None:
    """Wait until the Slurm queue is empty and the node (every node, in the multi-node mode) is idle."""
    deadline = time.monotonic() + timeout
    while _jobs(tb):
        if time.monotonic() > deadline:
            raise TestbedError(f"Slurm jobs still queued after {timeout:g} s: {_jobs(tb)}")
        time.sleep(0.05)
    _wait_node_idle(tb, max(1.0, deadline - time.monotonic()))


def stop_slurmctld(tb: Testbed) -> None:
    """Stop the controller, like an outage: sbatch/squeue fail with "Unable to contact slurm
    controller" until start_slurmctld(). Jobs keep their state (StateSaveLocation)."""
    _stop_pidfile(tb.slurm_dir / "run" / "slurmctld.pid", tb.state)


def start_slurmctld(tb: Testbed, timeout: float = 30) -> None:
    """Start the controller again and wait until it answers and slurmd has registered."""
    if tb.slurm_conf is None:
        raise TestbedError(f"the test bed {tb.state} has no Slurm")
    log = tb.slurm_dir / "log" / "slurmctld.log"
    cmd = [_which("slurmctld") or "slurmctld", "-f", str(tb.slurm_conf)]
    env = {**os.environ, **slurm_env(tb)}
    rc = _start_daemon(cmd, tb.slurm_dir / "log" / "slurmctld.start.err", env).wait(timeout=timeout)
    if rc != 0:
        raise TestbedError(f"slurmctld failed to start again (exit {rc}):\n{_tail(log)}")
    _wait(partial(_listening_or_fatal, tb.slurm_ports["slurmctld"], log), timeout, "slurmctld")
    _wait(
        lambda: node_state(tb).rstrip("*~#!%$@^-") not in ("", "unknown"), timeout, "node registration", 0.1
    )


def _slurm_conf_text(tb: Testbed) -> str:
    s = tb.slurm_dir
    p = tb.slurm_ports
    return f"""\
# written by scripts/testbed.py
ClusterName=testbed
SlurmctldHost={tb.node}(127.0.0.1)
SlurmctldPort={p["slurmctld"]}
SlurmdPort={p["slurmd"]}
CommunicationParameters=NoInAddrAny
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={tb.munge_socket}
StateSaveLocation={s}/spool/ctld
SlurmdSpoolDir={s}/spool/d
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
# without these a job waits ~2 s before it starts
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# trust CPUs= below instead of the hardware (32 one-CPU jobs at once on 2 cores)
SlurmdParameters=config_overrides
# no slurmdbd: sacct does not work; use squeue -t all / scontrol show job / the jobcomp file
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={tb.jobcomp}
GresTypes=gpu
KillWait=2
MinJobAge=300
InactiveLimit=0
{f"MaxJobCount={tb.max_job_count}{chr(10)}" if tb.max_job_count else ""}NodeName={tb.node} NodeAddr=127.0.0.1 CPUs={CLUSTER_CPUS} RealMemory=16000 \
Gres=gpu:{CLUSTER_GPUS} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=long  Nodes=ALL Default=NO  MaxTime=7-00:00:00 State=UP
PartitionName=gpu   Nodes=ALL Default=NO  MaxTime=1-00:00:00 State=UP
"""


def _start_munge(tb: Testbed) -> None:
    m = tb.munge_dir
    _mkdir(m, 0o755)
    for sub in ("etc", "lib", "log"):
        _mkdir(m / sub, 0o700, "munge")
    _mkdir(m / "run", 0o755, "munge")
    key = m / "etc" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    pw = pwd.getpwnam("munge")
    os.chown(key, pw.pw_uid, pw.pw_gid)
    cmd = [
        "runuser",
        "-u",
        "munge",
        "--",
        _which("munged") or "munged",
        f"--socket={tb.munge_socket}",
        f"--key-file={key}",
        f"--pid-file={m / 'run' / 'munged.pid'}",
        f"--seed-file={m / 'lib' / 'munged.seed'}",
        f"--log-file={m / 'log' / 'munged.log'}",
    ]
    proc = _start_daemon(cmd, m / "munged.start.err")
    rc = proc.wait(timeout=10)
    if rc != 0:
        raise TestbedError(
            f"munged failed to start (exit {rc}):\n"
            + _tail(m / "munged.start.err")
            + "\n"
            + _tail(m / "log" / "munged.log")
        )
    _wait(
        lambda: tb.munge_socket.is_socket() and _read_pid(m / "run" / "munged.pid") is not None,
        10,
        "munged socket",
    )


def _listening_or_fatal(port: int, log: Path) -> bool:
    if _port_open(port):
        return True
    with suppress(OSError):
        if "fatal:" in log.read_text(errors="replace"):
            raise TestbedError(f"{log.stem} failed to start (port {port})")
    return False


def _start_slurm(tb: Testbed) -> None:
    s = tb.slurm_dir
    _mkdir(s, 0o755)
    _mkdir(s / "etc", 0o755)
    _mkdir(s / "spool", 0o755)
    _mkdir(s / "spool" / "ctld", 0o755, "slurm")
    _mkdir(s / "spool" / "d", 0o755)
    _mkdir(s / "log", 0o755, "slurm")
    _mkdir(s / "run", 0o755, "slurm")
    _mkdir(s / "fakegpu", 0o755)
    for i in range(CLUSTER_GPUS):
        dev = s / "fakegpu" / f"nvidia{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # character device, like /dev/null
    assert tb.slurm_conf is not None
    _write_atomic(tb.slurm_conf, _slurm_conf_text(tb))
    last = CLUSTER_GPUS - 1
    _write_atomic(
        tb.slurm_conf.with_name("gres.conf"),
        f"AutoDetect=off\nNodeName={tb.node} Name=gpu File={s}/fakegpu/nvidia[0-{last}]\n",
    )
    _start_munge(tb)
    env = {**os.environ, "SLURM_CONF": str(tb.slurm_conf)}
    # slurmd started before slurmctld listens retries its registration only after ~1 s:
    # start slurmctld first and wait for its port (node idle in ~0.1 s instead of ~1 s).
    for name in ("slurmctld", "slurmd"):
        cmd = [_which(name) or name, "-f", str(tb.slurm_conf)]
        rc = _start_daemon(cmd, s / "log" / f"{name}.start.err", env).wait(timeout=20)
        if rc != 0:
            raise TestbedError(
                f"{name} failed to start (exit {rc}):\n"
                + _tail(s / "log" / f"{name}.start.err")
                + "\n"
                + _tail(s / "log" / f"{name}.log")
            )
        port = tb.slurm_ports[name]
        log = s / "log" / f"{name}.log"
        try:
            _wait(partial(_listening_or_fatal, port, log), 15, f"{name} on port {port}")
        except TestbedError as e:
            raise TestbedError(f"{e}\n{_tail(log)}") from None
    _wait_node_idle(tb, 20)


# --------------------------------------------------------------------------- up / down


def _check_state_dir(state: Path) -> None:
    if (
        state.exists()
        and any(state.iterdir())
        and not (state / MARKER).exists()
        and not (state / "ssh").exists()
    ):
        raise TestbedError(f"{state} is not empty and holds no test bed: refusing to use it")
    # the test user, slurm and munge must reach files below STATE
    for parent in [state, *state.parents]:
        if parent.exists() and parent != state and not (parent.stat().st_mode & 0o001):
            raise TestbedError(
                f"{parent} is not searchable by other users, so the test user and the Slurm "
                f"daemons cannot reach {state}: use a state directory under /tmp"
            )


def up(
    state: Path | None = None,
    hosts: int = DEFAULT_HOSTS,
    slurm: bool = True,
    nodes: int = 0,
    accounting: bool = True,
    cgroup: bool = False,
    max_job_count: int = 0,
) -> Testbed:
    """Bring a fresh bed up in `state` (a previous bed there is taken down and wiped).

    nodes=0: the single-node Slurm cluster. nodes=N: the multi-node mode (tests/support/cluster.py):
    N slurmd in network namespaces on a bridge, slurmctld, and with `accounting` slurmdbd + MariaDB;
    `cgroup` switches to proctrack/cgroup + task/cgroup. `max_job_count`: the single-node cluster's
    MaxJobCount (0: Slurm's default). `up_timings` in testbed.json says how long each step took."""
    from tests.support import cluster as mn  # it builds on this module's helpers

    t0 = time.monotonic()
    state = Path(state or default_state()).absolute()
    if hosts < 0:
        raise ValueError("hosts must be >= 0")
    if nodes < 0:
        raise ValueError("nodes must be >= 0")
    if max_job_count and nodes:
        raise ValueError("max_job_count is the single-node cluster's (not with nodes)")
    if nodes and not slurm:
        raise ValueError("nodes needs Slurm (not with slurm=False)")
    if os.geteuid() != 0:
        raise TestbedError("the test bed needs root (creates a user, starts sshd and slurmd)")
    needed = {**PROGRAMS, **(SLURM_PROGRAMS if slurm else {})}
    try:
        _require({**needed, **(mn.programs(accounting) if nodes else {})})
    except TestbedError as e:
        raise TestbedError(f"{e}\n  and for --nodes: {mn.INSTALL_HINT}" if nodes else str(e)) from None
    _check_state_dir(state)
    if state.exists():
        down(state)
        shutil.rmtree(state)
    _mkdir(state, 0o755)
    ssh_dir = _mkdir(state / "ssh", 0o755)
    _mkdir(ssh_dir / "authorized_keys", 0o755)
    _mkdir(state / "tmux", 0o1777)
    slurm_dir = state / "slurm"
    _mkdir(slurm_dir, 0o755)
    jobs_dir = _mkdir(slurm_dir / "jobs", 0o1777)

    pw = _ensure_user(USER)
    host_key = ssh_dir / "hostkey_ed25519"
    client_key = ssh_dir / "client_ed25519"
    host_pub = _keygen(host_key, "testbed-host")
    client_pub = _keygen(client_key, "testbed-client")
    _write_atomic(ssh_dir / "authorized_keys" / USER, client_pub + "\n")

    names = [f"h{i}" for i in range(1, hosts + 1)] + ([SLURM_ALIAS] if slurm else [])
    tb = Testbed(
        state=state,
        user=USER,
        client_key=client_key,
        known_hosts=state / "known_hosts",
        hosts_yaml=state / "hosts.yaml",
        ssh_config=state / "ssh_config",
        hosts={name: free_port() for name in names},
        slurm_alias=SLURM_ALIAS if slurm else None,
        slurm_conf=slurm_dir / "etc" / "slurm.conf" if slurm else None,
        home=Path(pw.pw_dir),
        jobs_dir=jobs_dir,
        host_key=host_key,
        host_pubkey=host_pub,
        slurm_ports={"slurmctld": free_port(), "slurmd": free_port()} if slurm else {},
        node=socket.gethostname().split(".")[0] if slurm and not nodes else None,
        base_hosts=list(names),
        max_job_count=max_job_count,
    )
    if nodes:
        tb.nodes = [f"node{k}" for k in range(1, nodes + 1)]
        tb.cluster = mn.plan(state, nodes, accounting, cgroup)
        if accounting:
            tb.slurm_ports.update(slurmdbd=free_port(), mariadb=free_port())
    tb.save()  # from here on, down() can clean up whatever was started
    try:
        _write_sshd_config(tb)
        _write_client_files(tb)
        errors: list[BaseException] = []
        slurm_thread: threading.Thread | None = None
        if slurm:

            def run_slurm() -> None:
                try:
                    if nodes:
                        mn.start(tb, tb.up_timings)
                    else:
                        _start_slurm(tb)
                except BaseException as e:  # re-raised below
                    errors.append(e)

            slurm_thread = threading.Thread(target=run_slurm, daemon=True)
            slurm_thread.start()
        try:
            _launch_sshds(tb, names)
        finally:
            if slurm_thread is not None:
                slurm_thread.join()  # before any down(): it must see every pid file
        if errors:
            raise errors[0]
    except BaseException:
        down(state)
        raise
    tb.up_seconds = round(time.monotonic() - t0, 3)
    tb.save()
    return tb


def _tmux_sockets(state: Path, user: str) -> list[Path]:
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return []
    out: list[Path] = []
    for d in (state / "tmux" / f"tmux-{uid}", Path(f"/tmp/tmux-{uid}")):
        with suppress(OSError):
            out += [p for p in d.iterdir() if p.is_socket()]
    return out


def _kill_tmux(state: Path, user: str) -> None:
    """Stop the test user's tmux servers (the bed's TMUX_TMPDIR and /tmp/tmux-UID)."""
    servers: list[int] = []
    for sock in _tmux_sockets(state, user):
        tmux = ["runuser", "-u", user, "--", "tmux", "-S", str(sock)]
        with suppress(subprocess.TimeoutExpired, OSError):
            proc = _run([*tmux, "display-message", "-p", "#{pid}"], check=False, timeout=5)
            if proc.stdout.strip().isdigit():
                servers.append(int(proc.stdout.strip()))
            _run([*tmux, "kill-server"], check=False, timeout=5)
    _terminate(servers)  # kill-server returns before the server has exited


def down(state: Path | None = None) -> None:
    """Take the bed in `state` down: cancel all jobs, stop every daemon by pid file, kill the
    test user's tmux servers; in the multi-node mode also remove the namespaces (and what still
    runs in them), the bridge and the cgroup subtrees. Idempotent; keeps the files (logs) for
    inspection."""
    from tests.support import cluster as mn  # it builds on this module's helpers

    state = Path(state or default_state()).absolute()
    if not state.exists():
        return
    tb: Testbed | None = None
    with suppress(TestbedError, ValueError, TypeError, json.JSONDecodeError):
        tb = Testbed.load(state)
    user = tb.user if tb is not None else USER
    slurm_run = state / "slurm" / "run"
    ctld = _owned_pid(slurm_run / "slurmctld.pid", state)
    multinode = tb is None or bool(tb.nodes)
    if multinode:
        # every daemon at once; the job steps still running are ended with the namespaces below
        mn.stop(state, tb)
    elif tb is not None and tb.slurm_conf is not None and ctld is not None:
        with suppress(TestbedError, subprocess.TimeoutExpired):
            jobs = _jobs(tb)
            if jobs:
                _slurm_cmd(tb, ["scancel", *jobs], check=False)
                deadline = time.monotonic() + 15
                while _jobs(tb) and time.monotonic() < deadline:
                    time.sleep(0.05)
    _stop_pidfile(slurm_run / "slurmd.pid", state)
    _stop_pidfile(slurm_run / "slurmctld.pid", state)
    _stop_pidfile(state / "munge" / "run" / "munged.pid", state)
    ssh_dir = state / "ssh"
    with suppress(FileNotFoundError):
        pidfiles = sorted(ssh_dir.glob("*.pid"))
        children = _children_map()
        pids: list[int] = []
        for pidfile in pidfiles:
            pid = _owned_pid(pidfile, state)
            if pid is not None:
                pids += [pid, *_descendants(pid, children)]
        _terminate(pids)
        for pidfile in pidfiles:
            pidfile.unlink(missing_ok=True)
    _kill_tmux(state, user)
    if multinode:
        mn.remove_network(state)


def is_up(state: Path | None = None) -> bool:
    """True if the bed in `state` exists and all its daemons (but start_sshd() extras) are alive."""
    state = Path(state or default_state()).absolute()
    try:
        tb = Testbed.load(state)
    except (TestbedError, ValueError, TypeError, json.JSONDecodeError):
        return False
    return all(alive or not needed for _, _, alive, needed in _components(tb))


def _components(tb: Testbed) -> Iterator[tuple[str, str, bool, bool]]:
    """(what, detail, alive, needed for the bed to count as up) per daemon."""
    for name, port in tb.hosts.items():
        pid = _owned_pid(tb.sshd_pidfile(name), tb.state)
        needed = name in tb.base_hosts or not tb.base_hosts
        yield f"sshd {name}", f"port {port} pid {pid}", pid is not None, needed
    if tb.nodes:
        from tests.support import cluster as mn  # it builds on this module's helpers

        yield from mn.components(tb)
    elif tb.slurm_conf is not None:
        for name, pidfile in (
            ("munged", tb.munge_dir / "run" / "munged.pid"),
            ("slurmctld", tb.slurm_dir / "run" / "slurmctld.pid"),
            ("slurmd", tb.slurm_dir / "run" / "slurmd.pid"),
        ):
            pid = _owned_pid(pidfile, tb.state)
            dport = tb.slurm_ports.get(name)
            where = f"port {dport} " if dport else ""
            yield name, f"{where}pid {pid}", pid is not None, True


def env_vars(tb: Testbed) -> dict[str, str]:
    """What `testbed env` exports: point the tool and Slurm clients at this bed."""
    out = {
        "COMPUTE_TESTBED": str(tb.state),
        "COMPUTE_KNOWN_HOSTS": str(tb.known_hosts),
        "COMPUTE_SSH_CONFIG": str(tb.ssh_config),
        "COMPUTE_TESTBED_HOSTS_YAML": str(tb.hosts_yaml),
    }
    if tb.slurm_conf is not None:
        out["SLURM_CONF"] = str(tb.slurm_conf)
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n\n")[0] if __doc__ else None
    parser = argparse.ArgumentParser(prog="testbed", description=summary)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring a fresh bed up (takes a previous one down)")
    p_up.add_argument("--hosts", type=int, default=DEFAULT_HOSTS, help="number of hN hosts")
    p_up.add_argument("--no-slurm", action="store_true", help="no munge/slurmctld/slurmd/cluster")
    p_up.add_argument(
        "--nodes",
        type=int,
        default=0,
        metavar="N",
        help="multi-node mode: N compute nodes in network namespaces, slurmdbd + MariaDB (default: "
        "the single-node cluster)",
    )
    p_up.add_argument("--no-accounting", action="store_true", help="--nodes without slurmdbd/MariaDB")
    p_up.add_argument("--cgroup", action="store_true", help="--nodes with proctrack/cgroup + task/cgroup")
    p_up.add_argument(
        "--max-job-count",
        type=int,
        default=0,
        metavar="N",
        help="the single-node cluster's MaxJobCount (default: Slurm's, 10000; each array element counts)",
    )
    p_down = sub.add_parser("down", help="stop everything (idempotent)")
    p_env = sub.add_parser("env", help='print export lines: eval "$(scripts/testbed env)"')
    p_status = sub.add_parser("status", help="show what runs; exit 1 unless all of it is up")
    for p in (p_up, p_down, p_env, p_status):
        p.add_argument(
            "--state",
            type=Path,
            default=None,
            help="state directory (default $COMPUTE_TESTBED or /tmp/compute-testbed)",
        )
    args = parser.parse_args(argv)
    state = Path(args.state or default_state()).absolute()
    try:
        if args.command == "up":
            if (args.no_accounting or args.cgroup) and not args.nodes:
                parser.error("--no-accounting and --cgroup go with --nodes N")
            tb = up(
                state,
                hosts=args.hosts,
                slurm=not args.no_slurm,
                nodes=args.nodes,
                accounting=not args.no_accounting,
                cgroup=args.cgroup,
                max_job_count=args.max_job_count,
            )
            print(f"testbed up in {tb.up_seconds:.2f} s: {state}")
            for name, port in tb.hosts.items():
                print(f"  {name:8} 127.0.0.1:{port}")
            if tb.nodes:
                from tests.support import cluster as mn  # it builds on this module's helpers

                for line in mn.describe(tb):
                    print(f"  {line}")
                steps = ", ".join(f"{step} {seconds:.2f}" for step, seconds in tb.up_timings.items())
                print(f"  steps (s): {steps}")
            elif tb.slurm_conf is not None:
                print(f"  slurm    node {tb.node}, SLURM_CONF={tb.slurm_conf}")
            first = next(iter(tb.hosts), "h1")
            print(f'  use: eval "$(scripts/testbed env --state {state})"; ssh -F {tb.ssh_config} {first}')
        elif args.command == "down":
            t0 = time.monotonic()
            down(state)
            print(f"testbed down in {time.monotonic() - t0:.2f} s: {state}")
        elif args.command == "env":
            tb = Testbed.load(state)
            for key, value in env_vars(tb).items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "status":
            try:
                tb = Testbed.load(state)
            except TestbedError as e:
                print(e)
                return 1
            ok = True
            for what, detail, alive, needed in _components(tb):
                ok = ok and (alive or not needed)
                word = "up" if alive else "DOWN" if needed else "stopped"
                print(f"{what:14} {word:7} {detail}")
            if tb.nodes and ok:
                from tests.support import cluster as mn  # it builds on this module's helpers

                states = ", ".join(f"{n} {s}" for n, s in mn.node_states(tb).items())
                print(f"{'slurm nodes':14} {states}; {len(_jobs(tb))} job(s) queued")
            elif tb.slurm_conf is not None and ok:
                print(f"{'slurm node':14} {node_state(tb)}; {len(_jobs(tb))} job(s) queued")
            return 0 if ok else 1
    except TestbedError as e:
        print(f"testbed: error: {e}", file=sys.stderr)
        return 1
    return 0
