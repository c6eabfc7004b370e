"""SSH hosts over paramiko: one connection per host, opened lazily, reused by every task of the run,
and kept open for the next runs by the connection keeper (hosts/kept.py) unless `control_persist`
says 0."""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from compute_platform.errors import HostError, HostKeyChanged
from compute_platform.hosts import kept
from compute_platform.hosts.base import Host, LineCallback, LineSplitter, Result
from compute_platform.hosts.channel import Capture, Channel, ExecEnding, Forward, Watch, feed_stdin, read
from compute_platform.hosts.jumps import JumpHost, unreachable
from compute_platform.hosts.kept import KeptTransport, refusal
from compute_platform.hosts.persistent import FED_MAX, PersistentShell, eligible, with_stdin
from compute_platform.hosts.remote import (
    LOGIN_PROBE,
    Login,
    Opening,
    kill_group_script,
    kill_groups_script,
    launch,
    parse_login,
)
from compute_platform.hosts.sshlib import known_hosts
from compute_platform.input import sshconfig
from compute_platform.input.spec import HostSpec, known_hosts_path

if TYPE_CHECKING:
    import paramiko

KEEPALIVE_SECONDS = 15
# Ctrl-C: how long to wait for the running commands' process groups to be killed on the host
KILL_WAIT_SECONDS = 5.0
WINDOW_SIZE = 1 << 26  # large windows let big transfers stream instead of stalling on acks
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_known_hosts_lock = threading.Lock()
# A server that drops a login before its banner is asked again after these pauses (doubling).
REFUSED_FIRST_PAUSE = 0.1
REFUSED_MAX_PAUSE = 2.0


class _DroppedBeforeBanner(Exception):
    """The server closed the connection before saying anything (sshd's MaxStartups): try again."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, after merging hosts.yaml with ~/.ssh/config."""

    hostname: str
    port: int
    user: str
    keys: tuple[str, ...]
    proxy_jump: str | None
    known_hosts: Path

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def endpoint(spec: HostSpec) -> Endpoint:
    """hosts.yaml values win; ~/.ssh/config fills what they leave out (as OpenSSH would)."""
    cfg = sshconfig.lookup(spec.address, spec.alias)
    hostname = spec.host or cfg.get("hostname") or spec.alias
    port = spec.port or int(cfg.get("port", 22))
    user = spec.user or cfg.get("user") or getpass.getuser()
    keys = (spec.key,) if spec.key else tuple(cfg.get("identityfile", ()))
    jump = sshconfig.proxy_jump(spec.proxy_jump, cfg)
    files = str(cfg.get("userknownhostsfile", "")).split()
    known = spec.known_hosts or (files[0] if files else None)
    known_file = Path(known).expanduser() if known else known_hosts_path()
    return Endpoint(hostname, port, user, keys, jump, known_file)


# Given a ProxyJump value and the host it leads to, the host to tunnel through.
JumpResolver = Callable[[str, HostSpec], JumpHost]


class SSHHost(Host):
    """`jump` finds the jump hosts on the way (a run's pool); `hosts` are hosts.yaml's, which the
    keeper needs to find them too. `keep=False`: the connection is this process's alone (the
    keeper's own hosts)."""

    def __init__(
        self,
        spec: HostSpec,
        jump: JumpResolver | None = None,
        hosts: Mapping[str, HostSpec] | None = None,
        keep: bool = True,
    ) -> None:
        super().__init__(spec)
        self._jump = jump
        self._hosts: Mapping[str, HostSpec] = hosts or {}
        # a host outside a pool cannot reach its jump hosts: it must fail as before, not through a keeper
        self._keep = keep and (jump is not None or not spec.proxy_jump)
        self._noted = False  # connected by itself, and noted for the keeper to keep (kept.keep_later)
        self._lock = threading.Lock()
        self._transport: paramiko.Transport | KeptTransport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None
        self._shell = PersistentShell(spec.alias, spec.connect_timeout, spec.keepalive, self._kill_group)
        self._inflight: set[str] = set()  # pid files of the commands running on exec channels
        self._login: Login | None = None
        self._key_used: str | None = None
        self._watch = Watch(spec.alias, spec.keepalive)
        self.endpoint: Endpoint | None = None

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return
            self._transport = self._open()

    def transport(self) -> paramiko.Transport | KeptTransport:
        self.connect()
        assert self._transport is not None
        return self._transport

    @property
    def kept(self) -> bool:
        """Whether this host goes through a connection the keeper holds."""
        return isinstance(self._transport, KeptTransport)

    def _open(self) -> paramiko.Transport | KeptTransport:
        """The keeper's connection when a keeper runs (it opens one if it holds none), else a login
        of our own, noted at once for a keeper to keep once the run is over (whichever pool closes
        first hands every noted connection over: a pool that is never closed loses nothing)."""
        keep = self._keep and kept.enabled(self.spec)
        if keep:
            lent = kept.attach(self.spec, self._hosts)
            if lent is not None:
                if lent.login is not None:
                    self._login = Login(*lent.login)
                self._key_used = lent.key_used
                return lent
        transport = self._log_in()
        if keep:
            kept.keep_later(self.spec, self._hosts)
            self._noted = True
        return transport

    def _log_in(self) -> paramiko.Transport:
        """Log in; a server that drops the connection before its banner, as sshd does beyond its
        MaxStartups unauthenticated connections (several aliases of one server at once), is asked
        again after a growing, jittered pause, until connect_timeout."""
        deadline = self.clock() + self.spec.connect_timeout
        pause = REFUSED_FIRST_PAUSE
        refused = 0
        while True:
            try:
                return self._open_once()
            except _DroppedBeforeBanner as e:
                refused += 1
                if self.clock() + pause > deadline:
                    raise HostError(
                        self.alias,
                        f"{e.where} closed the connection before its SSH banner, {refused} time(s) in "
                        f"{self.spec.connect_timeout:g} s: it limits simultaneous logins (sshd's "
                        "MaxStartups); fewer hosts at once (--forks) or a larger connect_timeout helps",
                    ) from None
                time.sleep(pause * (1 + random.random()))
                pause = min(pause * 2, REFUSED_MAX_PAUSE)

    def _open_once(self) -> paramiko.Transport:
        ep = self.endpoint = endpoint(self.spec)
        timeout = self.spec.connect_timeout
        # connect before importing paramiko (~80 ms, once): sshd starts the session's process
        # meanwhile, on another core
        sock = self._socket(ep, timeout)
        sshconfig.load_paramiko()
        import paramiko

        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE, default_max_packet_size=1 << 15)
        # every step of the login is bounded: a host that accepts TCP and then says nothing, or
        # stalls the key exchange or the authentication, fails within connect_timeout
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        where = f"{ep.user}@{ep.hostname}:{ep.port}"
        known = self._known_hosts(ep)
        pinned = _pin_key_types(transport, known.lookup(ep.known_hosts_name))
        try:
            self._handshake(transport, ep, pinned)
            self._check_host_key(ep, known, transport.get_remote_server_key())
            self._authenticate(ep, transport)
        except HostError:
            transport.close()
            raise
        except paramiko.AuthenticationException as e:
            transport.close()
            keys = ", ".join(ep.keys) or "ssh-agent and ~/.ssh/id_*"
            raise HostError(self.alias, f"authentication failed for {where} (keys tried: {keys}): {e}") from e
        except (paramiko.SSHException, EOFError, OSError) as e:
            transport.close()
            if "protocol banner" in str(e) and isinstance(
                e.__cause__ or e.__context__, (EOFError, ConnectionResetError)
            ):
                raise _DroppedBeforeBanner(where) from e
            raise HostError(
                self.alias, f"SSH handshake with {where} failed: {str(e) or type(e).__name__}"
            ) from e
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return transport

    def _socket(self, ep: Endpoint, timeout: float) -> Any:
        if ep.proxy_jump:
            if self._jump is None:
                raise HostError(self.alias, f"proxy_jump '{ep.proxy_jump}' is not available here")
            hop = self._jump(ep.proxy_jump, self.spec)
            return hop.tunnel(ep.hostname, ep.port, timeout, self.alias)
        try:
            sock = socket.create_connection((ep.hostname, ep.port), timeout=timeout)
        except socket.gaierror as e:
            raise HostError(self.alias, f"cannot resolve host name '{ep.hostname}': {e.strerror}") from e
        except TimeoutError as e:
            raise HostError(
                self.alias, f"connection to {ep.hostname}:{ep.port} timed out after {timeout:g} s"
            ) from e
        except ConnectionRefusedError as e:
            raise HostError(
                self.alias, f"connection to {ep.hostname}:{ep.port} refused (is sshd running there?)"
            ) from e
        except OSError as e:
            raise HostError(
                self.alias, f"cannot connect to {ep.hostname}:{ep.port}: {e.strerror or e}"
            ) from e
        # Without TCP_NODELAY each exec channel waits ~40 ms on Nagle + delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def tunnel(self, host: str, port: int, timeout: float, requester: str) -> Any:
        """A `direct-tcpip` channel from this host to host:port: the socket of a host behind it."""
        try:
            transport = self.transport()
        except HostError as e:
            raise unreachable(self.alias, requester, e) from e
        try:
            return transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except Exception as e:  # paramiko raises SSHException, EOFError or OSError; kept: KeptError
            refused = refusal(e)
            if refused is not None:
                raise HostError(
                    requester, f"jump host {self.alias} cannot connect to {host}:{port}: {refused}"
                ) from e
            raise HostError(
                requester, f"jump host {self.alias} failed to open a tunnel: {e or type(e).__name__}"
            ) from e

    def _handshake(self, transport: paramiko.Transport, ep: Endpoint, pinned: list[str]) -> None:
        """The key exchange, its failures said plainly (paramiko's words are often cryptic)."""
        import paramiko

        timeout = self.spec.connect_timeout
        start = self.clock()
        timed_out = HostError(
            self.alias,
            f"SSH handshake with {ep.hostname}:{ep.port} timed out after {timeout:g} s "
            "(connect_timeout): the port accepts connections but no SSH server answers there",
        )
        try:
            # on timeout start_client() may just return, the exchange unfinished
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError) as e:
            if pinned and "host key" in str(e).lower():
                raise self._changed(ep, f"offers none of the key types recorded ({', '.join(pinned)})") from e
            if self.clock() - start >= timeout * 0.9:  # paramiko's banner/handshake timeouts
                raise timed_out from e
            raise
        if not transport.initial_kex_done:
            raise timed_out

    def _known_hosts(self, ep: Endpoint) -> paramiko.HostKeys:
        import paramiko

        path = ep.known_hosts
        try:
            return known_hosts(path)
        except (OSError, paramiko.SSHException) as e:
            raise HostError(self.alias, f"cannot read known hosts file {path}: {e}") from e

    def _changed(self, ep: Endpoint, how: str) -> HostKeyChanged:
        path, name = ep.known_hosts, ep.known_hosts_name
        return HostKeyChanged(
            self.alias,
            f"the host key of {name} CHANGED: the host {how} (recorded in {path}"
            f"{_known_hosts_line(path, name)}). This may be an attack; if the host was reinstalled, "
            f"remove the old key with: ssh-keygen -f {path} -R '{name}'",
        )

    def _check_host_key(self, ep: Endpoint, known: paramiko.HostKeys, key: paramiko.PKey) -> None:
        path = ep.known_hosts
        name = ep.known_hosts_name
        entry = known.lookup(name)
        if entry is not None and key.get_name() in entry:
            if entry[key.get_name()] == key:
                return
            raise self._changed(ep, f"presents another {key.get_name()} key")
        if self.spec.host_key_checking == "strict":
            raise HostError(
                self.alias,
                f"unknown host key for {name} ({key.get_name()}) and host_key_checking is strict: "
                f"add it to {path} first (e.g. ssh-keyscan -p {ep.port} {ep.hostname} >> {path})",
            )
        with _known_hosts_lock:
            # several aliases of one host connect at once: the first records the key, the others
            # find it (the file as it is now, not as this run first read it) and add nothing
            line = f"{name} {key.get_name()} {key.get_base64()}\n"
            with contextlib.suppress(OSError):
                if line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                    return
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)

    def _authenticate(self, ep: Endpoint, transport: paramiko.Transport) -> None:
        import paramiko

        errors: list[str] = []
        for pkey, source in self._keys(ep, errors):
            try:
                transport.auth_publickey(ep.user, pkey)
                self._key_used = f"{source} ({pkey.get_name()} {pkey.fingerprint})"
                return
            except paramiko.AuthenticationException as e:
                errors.append(str(e))
        tried = ", ".join(ep.keys) if ep.keys else "ssh-agent and ~/.ssh/id_*"
        detail = f": {errors[-1]}" if errors else ""
        raise HostError(
            self.alias, f"authentication failed for {ep.user}@{ep.hostname}:{ep.port} (tried {tried}){detail}"
        )

    def key_used(self) -> str | None:
        """The key the login succeeded with, and where it came from (ssh-agent or a file)."""
        return self._key_used

    def _keys(self, ep: Endpoint, errors: list[str]) -> list[tuple[paramiko.PKey, str]]:
        """As OpenSSH: the agent's keys, then the key files (with `key:`, that one only, from the
        agent when it holds it). An encrypted file the agent holds is skipped; one it does not
        hold is a line of the error: load it into ssh-agent."""
        import paramiko

        agent: list[paramiko.PKey] = []
        with contextlib.suppress(paramiko.SSHException, OSError):
            agent = list(paramiko.Agent().get_keys())
        paths = [Path(k).expanduser() for k in ep.keys]
        keys: list[tuple[paramiko.PKey, str]] = []
        if not paths:
            keys.extend((key, "ssh-agent") for key in agent)
            home = Path("~/.ssh").expanduser()
            paths = [home / name for name in DEFAULT_KEYS if (home / name).exists()]
        for path in paths:
            if not path.exists():
                raise HostError(self.alias, f"identity file not found: {path}")
            held = [key for key in agent if key.asbytes() == _public_blob(path)]
            if held:
                keys.extend((k, f"{path}, from ssh-agent") for k in held)
                continue
            _warn_if_unprotected(path)
            try:
                keys.append((paramiko.PKey.from_path(str(path)), str(path)))
            except (paramiko.PasswordRequiredException, TypeError):
                # TypeError: what cryptography raises for an encrypted OpenSSH-format key
                errors.append(f"{path} needs a passphrase: add it to ssh-agent (ssh-add {path})")
            except (paramiko.SSHException, OSError, ValueError) as e:
                errors.append(f"cannot load {path}: {e}")
        return keys

    # -- what the keeper asks of the hosts it holds ---------------------------------------------

    def live_transport(self) -> paramiko.Transport | KeptTransport | None:
        """The connection while it is up (never a new one)."""
        transport = self._transport
        return transport if transport is not None and transport.is_active() else None

    def key_still_recorded(self) -> bool:
        """Whether known_hosts still records the key this connection was checked against. A kept
        connection is lent only while it does: a key removed or replaced there since says the user
        no longer vouches for it, and a new connection checks the host again."""
        import paramiko

        transport, ep = self._transport, self.endpoint
        if not isinstance(transport, paramiko.Transport) or ep is None:
            return False
        key = transport.get_remote_server_key()
        try:
            entry = known_hosts(ep.known_hosts).lookup(ep.known_hosts_name)
        except (OSError, paramiko.SSHException):
            return False
        return entry is not None and entry.get(key.get_name()) == key

    def close_sftp(self) -> None:
        """Close the SFTP session (its channel counts in sshd's MaxSessions); opened again when needed."""
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None

    def interrupt(self) -> None:
        """Ctrl-C: closing the connection does not stop what runs on the host (sshd sends no signal
        to a command without a terminal), so kill the process groups of every running command
        first, over the same connection, for at most a few seconds."""
        running = [*self._inflight, *self._shell.running()]
        transport = self._transport
        if running and transport is not None and transport.is_active() and self._login is not None:
            command = launch(kill_groups_script(running), self._login).command
            killer = threading.Thread(target=_run_quietly, args=(transport, command))
            killer.daemon = True
            killer.start()
            killer.join(KILL_WAIT_SECONDS)
        super().interrupt()

    def close(self) -> None:
        """Close the connection (release it, when the keeper's). A pool then asks a keeper to open
        the connections its hosts made by themselves (kept.start_pending); a host of its own, at once."""
        with self._lock:
            self._shell.close()
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            if self._noted and self._jump is None:
                self._noted = False
                kept.start_pending()

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
        # commands go to the persistent shell, their stdin inside the script when it is small; a
        # command gets an exec channel of its own for a larger or streamed stdin, a file for
        # stdout, or background jobs (which could write into the next command's output)
        start = self.clock()
        login = self.login_shell()
        fed = stdin is None or (isinstance(stdin, bytes) and len(stdin) <= FED_MAX)
        if fed and stdout_to is None and eligible(script) and login.is_bash and not login.prints:
            whole = script if stdin is None else with_stdin(script, stdin)  # type: ignore[arg-type]
            deadline = None if timeout is None else start + timeout
            result = self._shell.try_run(self.transport(), whole, on_line, deadline)
            if result is not None:
                return replace(result, command=script)
        return self._exec(script, timeout, on_line, stdin, stdout_to)

    def _exec(
        self,
        script: str,
        timeout: float | None,
        on_line: LineCallback | None,
        stdin: bytes | BinaryIO | None,
        stdout_to: BinaryIO | None,
    ) -> Result:
        start = self.clock()
        # every exec channel records its process group: a timeout or Ctrl-C stops the whole tree
        launched = launch(script, self.login_shell(), fed=stdin is not None)
        pidfile = launched.pidfile
        self._inflight.add(pidfile)
        chan = self._open_exec(launched.command)
        if stdin is not None:
            threading.Thread(target=feed_stdin, args=(chan, stdin), daemon=True).start()
        else:
            chan.shutdown_write()  # EOF: a command that reads stdin ends instead of waiting
        out: Capture | Forward = Capture(LineSplitter("stdout", on_line))
        if stdout_to is not None:
            out = Forward(stdout_to)
        err = Capture(LineSplitter("stderr", on_line))
        opened_out, opened_err = Opening(launched.token, out), Opening(launched.token, err)
        deadline = None if timeout is None else start + timeout
        try:
            ended = read(chan, opened_out, opened_err, ExecEnding(chan, self.alias), self._watch, deadline)
            # the status only after all the output: waiting for it first deadlocks on a full window
            exit_code = chan.recv_exit_status() if ended else -1
        finally:
            chan.close()
        opened_out.close()
        opened_err.close()
        self._inflight.discard(pidfile)
        if not ended:
            self._kill_group(pidfile)
        return Result(script, exit_code, out.text(), err.text(), self.clock() - start, not ended)

    def login_shell(self) -> Login:
        """The login shell sshd starts for this user, asked once per connection (one round trip;
        none for a kept connection: the keeper asked)."""
        if self._login is None:
            self.connect()
        if self._login is None:
            chan = self._open_exec(LOGIN_PROBE)
            chan.shutdown_write()
            out, err = Capture(LineSplitter("stdout", None)), Capture(LineSplitter("stderr", None))
            deadline = self.clock() + self.spec.connect_timeout
            try:
                read(chan, out, err, ExecEnding(chan, self.alias), self._watch, deadline)
            finally:
                chan.close()
            self._login = parse_login(out.text(), err.text())
        return self._login

    def _open_exec(self, script: str) -> Channel:
        chan = self._open_session()
        try:
            chan.exec_command(script)
        except Exception as e:
            raise HostError(self.alias, f"lost the connection: {e or type(e).__name__}") from e
        return chan

    def _open_session(self) -> Channel:
        """A new channel. A server that refuses it (sshd's MaxSessions) gets the persistent shell's
        channel back, or waits for the end of another of our commands, until connect_timeout."""
        deadline = self.clock() + self.spec.connect_timeout
        while True:
            try:
                return self.transport().open_session(timeout=self.spec.connect_timeout)
            except HostError:
                raise
            except Exception as e:
                if refusal(e) is None:
                    raise HostError(self.alias, f"lost the connection: {e or type(e).__name__}") from e
                # the shell's channel, once closed, frees its session when sshd has seen the close
                self._shell.give_up()
                if self.clock() > deadline:
                    raise HostError(
                        self.alias,
                        f"the server refused a new SSH session ({e}): it allows fewer at once than "
                        "compute needs (sshd's MaxSessions)",
                    ) from e
                time.sleep(0.05)

    def _kill_group(self, pidfile: str) -> None:
        # on an exec channel: the persistent shell may be the group being killed
        with contextlib.suppress(HostError):
            self._exec(kill_group_script(pidfile), None, None, None, None)

    # -- files -------------------------------------------------------------------------------

    def sftp(self) -> paramiko.SFTPClient:
        transport = self.transport()
        with self._lock:
            if self._sftp is None:
                try:
                    self._sftp = transport.open_sftp_client()
                except Exception as e:  # paramiko raises SSHException or EOFError here
                    raise HostError(self.alias, f"cannot open SFTP: {e or type(e).__name__}") from e
                if self._sftp is None:
                    raise HostError(self.alias, "the SFTP subsystem is not available")
            return self._sftp

    def home(self) -> str:
        if self._home is None:
            transport = self.transport()
            if isinstance(transport, KeptTransport):  # the keeper asked SFTP once for every run
                try:
                    self._home = transport.home(self.spec.connect_timeout)
                except OSError as e:
                    raise HostError(self.alias, f"cannot open SFTP: {e}") from e
            else:
                self._home = self.sftp().normalize(".")
        return self._home

    def put(self, local: Path, remote: str) -> None:
        try:
            self.sftp().put(str(local), self.expand(remote))
        except OSError as e:
            raise HostError(self.alias, f"cannot write {remote}: {e}") from e

    def get(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.sftp().get(self.expand(remote), str(local))
        except OSError as e:
            raise HostError(self.alias, f"cannot read {remote}: {e}") from e


def _run_quietly(transport: paramiko.Transport | KeptTransport, script: str) -> None:
    """Run a script on its own channel and wait for it; errors are ignored (best effort)."""
    with contextlib.suppress(Exception):
        chan = transport.open_session(timeout=KILL_WAIT_SECONDS)
        chan.exec_command(script)
        chan.recv_exit_status()
        chan.close()


def _known_hosts_line(path: Path, name: str) -> str:
    """`, line N` of the first entry for `name`, hashed entries (`|1|salt|hash`) included."""
    import paramiko

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for number, line in enumerate(lines, 1):
        for pattern in line.split(" ", 1)[0].split(","):
            if pattern == name or (
                pattern.startswith("|1|") and paramiko.HostKeys.hash_host(name, pattern) == pattern
            ):
                return f", line {number}"
    return ""


# Host key algorithms a known_hosts key type allows (an RSA key signs with SHA-2 too).
_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def _pin_key_types(transport: paramiko.Transport, entry: Any) -> list[str]:
    """For a known host, negotiate only the key types recorded for it, as OpenSSH does: otherwise a
    server (or an attacker) offering another type would pass as an unknown key, and be accepted."""
    if not entry:
        return []
    recorded = list(entry.keys())
    allowed = {a for t in recorded for a in _KEY_ALGORITHMS.get(t, (t,))}
    options = transport.get_security_options()
    kept = [t for t in options.key_types if t in allowed]
    if kept:
        options.key_types = kept
    return recorded


_warned: set[Path] = set()


def _public_blob(path: Path) -> bytes | None:
    """The public key next to a key file (`id_ed25519.pub`), as the agent names keys; None if none."""
    import base64
    import binascii

    try:
        words = path.with_name(path.name + ".pub").read_text().split()
        return base64.b64decode(words[1], validate=True) if len(words) > 1 else None
    except (OSError, ValueError, binascii.Error):
        return None


def _warn_if_unprotected(path: Path) -> None:
    """OpenSSH refuses a private key that other users can read; say so (once per key)."""
    try:
        info = path.stat()
    except OSError:
        return
    if info.st_mode & 0o077 and info.st_uid == os.getuid() and path not in _warned:
        _warned.add(path)
        logging.getLogger("compute_platform").warning(
            f"{path} is accessible by other users (mode {info.st_mode & 0o777:o}); OpenSSH refuses to "
            f"use such a key (UNPROTECTED PRIVATE KEY FILE): chmod 600 {path}"
        )


os.environ.setdefault("PARAMIKO_NO_GSSAPI", "1")
