"""Hosts reached with the system `ssh` client (`connection: openssh`), for clusters whose login asks for
a one-time code. Every command goes through one ControlMaster connection per host that outlives the
run (ControlPersist): the code is typed once, in `compute hosts --login HOST`, and later runs reuse
the open connection without asking again."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from compute_platform.errors import HostError, HostKeyChanged
from compute_platform.hosts import shell
from compute_platform.hosts.base import Host, LineCallback, Result
from compute_platform.hosts.process import Processes, kill_tree
from compute_platform.hosts.remote import (
    LOGIN_PROBE,
    Login,
    kill_group_script,
    kill_groups_script,
    launch,
    parse_login,
)
from compute_platform.input.sshconfig import ssh_config_path

if TYPE_CHECKING:
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

# Ctrl-C: how long to wait for the running commands' process groups to be killed on the host
KILL_WAIT_SECONDS = 5.0

SSH = "ssh"
SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")
SOCKET_PATH_MAX = 104  # sun_path is 104 bytes on BSDs and macOS, 108 on Linux
SSH_FAILED = 255  # what ssh exits with when the connection (not the command) failed


def control_dir() -> Path:
    """The private directory (0700) of the master sockets: $COMPUTE_CONTROL_DIR or ~/.cache/compute/cm."""
    folder = Path(os.environ.get("COMPUTE_CONTROL_DIR") or "~/.cache/compute/cm").expanduser()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # anyone who can reach a master socket can run commands as us
    return folder


class OpenSSHHost(Host):
    def __init__(self, spec: HostSpec, inventory: Inventory | None = None) -> None:
        super().__init__(spec)
        self._inventory = inventory
        self._lock = threading.Lock()
        self._login: Login | None = None
        self._ready = False
        self._home: str | None = None
        self._processes = Processes(stop=kill_tree)
        self._inflight: set[str] = set()  # pid files of the commands running on the host
        self._options_cache: dict[bool, list[str]] = {}

    # -- the ssh command line -----------------------------------------------------------------

    @property
    def destination(self) -> str:
        return self.spec.host or self.alias

    def ssh_command(self, *options: str, command: str | None = None, batch: bool = True) -> list[str]:
        """`ssh` with this host's settings, `options`, the destination and the remote command
        (one argument: ssh hands it as-is to the remote login shell, like an exec channel)."""
        if batch not in self._options_cache:
            self._options_cache[batch] = self._options(batch)
        argv = [SSH, *self._options_cache[batch], *options, self.destination]
        return argv if command is None else [*argv, command]

    def _options(self, batch: bool) -> list[str]:
        spec = self.spec
        folder = control_dir()
        if len(str(folder)) + 41 > SOCKET_PATH_MAX:  # %C is 40 hex digits
            raise HostError(
                self.alias,
                f"the socket directory {folder} is too long for a unix socket: "
                "set COMPUTE_CONTROL_DIR to a shorter directory",
            )
        settings = {
            "ControlPath": str(folder / "%C"),
            # `0` is "for ever" to OpenSSH: a master kept for this run alone is closed by close()
            "ControlPersist": spec.control_persist if spec.persist_seconds else "yes",
            # never prompt in a run: without an open master, a host that wants a code fails at once
            "BatchMode": "yes" if batch else "no",
            "StrictHostKeyChecking": "yes" if spec.host_key_checking == "strict" else "accept-new",
            "ConnectTimeout": str(math.ceil(spec.connect_timeout)),
            # the same bound on a silent host as over paramiko (hosts.yaml `keepalive`)
            "ServerAliveInterval": str(math.ceil(spec.keepalive)),
            "ServerAliveCountMax": "2",
            # keeps ssh's own notices ("Permanently added ...") out of the commands' stderr
            "LogLevel": "ERROR",
        }
        known = spec.known_hosts or os.environ.get("COMPUTE_KNOWN_HOSTS")
        if known:
            settings["UserKnownHostsFile"] = str(Path(known).expanduser())
        if spec.key:
            settings.update(IdentityFile=str(Path(spec.key).expanduser()), IdentitiesOnly="yes")
        argv = [f"-o{name}={value}" for name, value in settings.items()]
        if spec.port:
            argv += ["-p", str(spec.port)]
        if spec.user:
            argv += ["-l", spec.user]
        config = self._config_file()
        if config:
            argv += ["-F", config]
        if spec.proxy_jump:
            argv += ["-J", spec.proxy_jump]
        return argv

    def _config_file(self) -> str | None:
        """The ssh_config to use: none (ssh's own), $COMPUTE_SSH_CONFIG, or when a jump host is a
        hosts.yaml alias, a generated one that defines those aliases, then includes the user's."""
        explicit = "COMPUTE_SSH_CONFIG" in os.environ
        user = ssh_config_path()
        blocks = self._jump_blocks()
        if not blocks:
            if not explicit:
                return None
            return str(user) if user.exists() else os.devnull
        includes = [user] if user.exists() else []
        if not explicit and SYSTEM_CONFIG.exists():
            includes.append(SYSTEM_CONFIG)
        text = "# jump hosts of hosts.yaml, written by compute\n" + "".join(blocks)
        text += "Host *\n" + "".join(f'  Include "{path}"\n' for path in includes)
        return str(_write_once(text))

    def _jump_blocks(self) -> list[str]:
        """ssh_config `Host` blocks for every hosts.yaml alias on the way to this host."""
        from compute_platform.hosts.jumps import check_route, split_jumps

        if self._inventory is None or not self.spec.proxy_jump:
            return []
        check_route(self._inventory, self.spec.proxy_jump, self.spec)
        blocks: dict[str, str] = {}
        pending = split_jumps(self.spec.proxy_jump)
        while pending:
            alias = pending.pop()
            hop = self._inventory.hosts.get(alias)
            if hop is None or alias in blocks:
                continue
            blocks[alias] = _host_block(alias, hop)
            pending += split_jumps(hop.proxy_jump or "")
        return list(blocks.values())

    # -- the master connection ----------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._ready:
                return
            if not self.master_running():
                self._open_master(interactive=False)
            self._ready = True

    def master_running(self) -> bool:
        proc = subprocess.run(
            self.ssh_command("-Ocheck"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            start_new_session=True,
        )
        return proc.returncode == 0

    def login(self) -> bool:
        """Open the master connection on this terminal, where ssh asks for passwords and codes.
        False if one was open already."""
        if self.master_running():
            return False
        self._open_master(interactive=True)
        return True

    def logout(self) -> bool:
        """Close the master connection; False if none was open."""
        proc = subprocess.run(
            self.ssh_command("-Oexit"), stdin=subprocess.DEVNULL, capture_output=True, timeout=30
        )
        return proc.returncode == 0

    def _open_master(self, interactive: bool) -> None:
        argv = self.ssh_command("-oControlMaster=yes", "-N", "-f", batch=not interactive)
        # ssh -f leaves a background process holding its stderr: a file, not a pipe to wait on
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.run(
                    argv,
                    stdin=None if interactive else subprocess.DEVNULL,
                    stdout=None if interactive else subprocess.DEVNULL,
                    stderr=None if interactive else errors,
                    timeout=None if interactive else self.spec.connect_timeout + 30,
                    start_new_session=not interactive,  # no terminal: nothing can prompt
                )
            except subprocess.TimeoutExpired as e:
                raise HostError(self.alias, f"ssh did not connect within {e.timeout:g} s") from e
            except OSError as e:
                raise HostError(self.alias, f"cannot run {SSH}: {e.strerror or e}") from e
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise self._connect_error(said, interactive)

    def _connect_error(self, said: str, interactive: bool) -> HostError:
        where = f"{self.spec.user + '@' if self.spec.user else ''}{self.destination}"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in said:
            return HostKeyChanged(
                self.alias,
                f"the host key of {where} CHANGED; this may be an attack. If the host was reinstalled, "
                f"remove the old key as ssh says:\n{said}",
            )
        if "host key is known" in said or "Host key verification failed" in said:
            return HostError(
                self.alias,
                f"unknown host key for {where} and host_key_checking is strict: add it to your known hosts "
                f"first (e.g. `ssh-keyscan`, or `compute hosts --login {self.alias}` to check it by hand)",
            )
        hint = ""
        if not interactive and ("Permission denied" in said or "keyboard-interactive" in said):
            hint = (
                f"\nif this host asks for a password or a one-time code, open the connection first with "
                f"`compute hosts --login {self.alias}`; it then stays open {self.spec.control_persist} "
                "after its last use"
            )
        return HostError(self.alias, f"ssh could not connect to {where}: {said or 'no reason given'}{hint}")

    # -- commands ----------------------------------------------------------------------------

    def execute(
        self,
        script: str,
        *,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        stdin: bytes | BinaryIO | None = None,
        stdout_to: BinaryIO | None = None,
    ) -> Result:
        self.connect()
        start = self.clock()
        # every command records its process group: a timeout or Ctrl-C stops its whole tree there
        launched = launch(script, self.login_shell(), fed=stdin is not None)
        pidfile = launched.pidfile

        def stop(proc: subprocess.Popen[bytes]) -> None:
            self._run_quietly(kill_group_script(pidfile))  # killing our client alone leaves it running
            kill_tree(proc)

        argv = self.ssh_command("-oControlMaster=no", "-T", command=launched.command)
        self._inflight.add(pidfile)
        try:
            done = self._processes.run(
                argv,
                timeout=timeout,
                on_line=on_line,
                stdin=stdin,
                stdout_to=stdout_to,
                on_timeout=stop,
                token=launched.token,
            )
        except OSError as e:
            raise HostError(self.alias, f"cannot run {SSH}: {e.strerror or e}") from e
        finally:
            self._inflight.discard(pidfile)
        if done.exit_code == SSH_FAILED and not self.master_running():
            said = done.stderr.strip() or "ssh exited with 255"
            raise HostError(self.alias, f"lost the connection: {said}")
        return Result(script, done.exit_code, done.stdout, done.stderr, self.clock() - start, done.timed_out)

    def login_shell(self) -> Login:
        """The login shell sshd starts for this user, asked once per run (one round trip)."""
        if self._login is None:
            self.connect()
            argv = self.ssh_command("-oControlMaster=no", "-T", command=LOGIN_PROBE)
            try:
                done = self._processes.run(argv, timeout=self.spec.connect_timeout + 30)
            except OSError as e:
                raise HostError(self.alias, f"cannot run {SSH}: {e.strerror or e}") from e
            if done.exit_code == SSH_FAILED and not self.master_running():
                raise HostError(
                    self.alias, f"lost the connection: {done.stderr.strip() or 'ssh exited with 255'}"
                )
            self._login = parse_login(done.stdout, done.stderr)
        return self._login

    def _run_quietly(self, script: str, timeout: float = 30) -> None:
        command = launch(script, self._login).command if self._login is not None else script
        subprocess.run(
            self.ssh_command("-oControlMaster=no", "-T", command=command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
        )

    def interrupt(self) -> None:
        """Ctrl-C: kill the running commands' process groups on the host first (the master keeps
        them alive when our clients die), then our clients."""
        running = list(self._inflight)
        if running:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run_quietly(kill_groups_script(running), timeout=KILL_WAIT_SECONDS)
        super().interrupt()

    def close(self) -> None:
        """Stop our running commands; the master stays open for the next run (that is its point),
        unless `control_persist` is 0."""
        self._processes.stop_all()
        if self._ready and not self.spec.persist_seconds:
            self._ready = False
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.logout()

    def tunnel(self, host: str, port: int, timeout: float, requester: str) -> Any:
        """A connection to host:port through this host's master (`ssh -W`), for a paramiko host
        behind it: a bastion that wants a one-time code can be crossed with the code typed once."""
        import paramiko

        from compute_platform.hosts.jumps import unreachable

        try:
            self.connect()
        except HostError as e:
            raise unreachable(self.alias, requester, e) from e
        argv = self.ssh_command("-oControlMaster=no", "-W", f"[{host}]:{port}")
        return paramiko.ProxyCommand(shell.join(argv))

    # -- files -------------------------------------------------------------------------------

    def put(self, local: Path, remote: str) -> None:
        with open(local, "rb") as data:
            result = self.execute(f"cat > {shell.quote_path(remote)}", stdin=data)
        if not result.ok:
            raise HostError(self.alias, f"cannot write {remote}: {result.tail()}")

    def get(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        with open(local, "wb") as sink:
            result = self.execute(f"cat {shell.quote_path(remote)}", stdout_to=sink)
        if not result.ok:
            local.unlink(missing_ok=True)
            raise HostError(self.alias, f"cannot read {remote}: {result.tail()}")

    def home(self) -> str:
        if self._home is None:
            result = self.execute('printf %s "$HOME"')
            if not result.ok or not result.stdout:
                raise HostError(self.alias, f"cannot find the home directory: {result.tail()}")
            self._home = result.stdout
        return self._home


def _host_block(alias: str, spec: HostSpec) -> str:
    """An ssh_config `Host` block saying what hosts.yaml says of a jump host."""
    settings: dict[str, Any] = {
        "HostName": spec.host,
        "Port": spec.port,
        "User": spec.user,
        "IdentityFile": str(Path(spec.key).expanduser()) if spec.key else None,
        "IdentitiesOnly": "yes" if spec.key else None,
        "UserKnownHostsFile": str(Path(spec.known_hosts).expanduser()) if spec.known_hosts else None,
        "StrictHostKeyChecking": "yes" if spec.host_key_checking == "strict" else "accept-new",
        "ConnectTimeout": math.ceil(spec.connect_timeout),
        "ProxyJump": spec.proxy_jump,
    }
    lines = [f'  {name} "{value}"\n' for name, value in settings.items() if value is not None]
    return f"Host {alias}\n" + "".join(lines)


def _write_once(text: str) -> Path:
    """A file named after its content in the private directory (so writers never race)."""
    path = control_dir() / f"jumps-{hashlib.sha256(text.encode()).hexdigest()[:16]}.ssh_config"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def shared_connection(inventory: Inventory, alias: str, opening: bool) -> str:
    """`compute hosts --login/--logout HOST` of a `connection: openssh` host: open the master on this
    terminal, or close it."""
    spec = inventory.host(alias)
    host = OpenSSHHost(spec, inventory)
    if not opening:
        return f"{alias}: connection closed" if host.logout() else f"{alias}: no connection was open"
    if not host.login():
        return f"{alias}: the connection is already open"
    return f"{alias}: connection open; runs reuse it until {spec.control_persist} after its last use"
