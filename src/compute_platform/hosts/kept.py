"""Connections kept open between runs for paramiko hosts: the client side of the connection keeper
(hosts/keeper.py), what OpenSSH's ControlMaster with ControlPersist is to `ssh`.

A run that finds no keeper connects by itself, as it always did; when it closes its hosts it starts
a keeper, without waiting for it, and asks it to open the connections the run used (an SSH
session's keys live in the process that made them: they cannot be handed over). The keeper is one
detached process per user and environment, serving a unix socket in the private control directory;
it opens connections with SSHHost's own code (the same keys, settings and host key checks), keeps
each `control_persist` after its last use, and exits once it holds none. The next run finds it and
goes through it (`attach`, waiting if that connection is still being opened): its commands cost the
round trips of the commands alone, not those of a login.

The protocol: one unix connection per attached host (held by the run, its end is the host's
release) and one per SSH channel, each framed as a kind byte, a 4-byte length and the payload; the
first frame is a HELLO naming the operation, the keeper answers with a REPLY (JSON). A channel
then carries the command, stdin and its end one way, stdout, stderr, the exit status, EOF and the
close the other: `KeptChannel` gives the rest of the code the methods of a paramiko Channel it
uses, and `KeptTransport` those of a Transport. A tunnel (`direct-tcpip`, this host as a jump
host) is raw bytes after its REPLY.

Nothing here imports paramiko: a run whose hosts are all kept does not pay for it (~90 ms), unless
it copies files (SFTP runs here, over a kept channel)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import select
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compute_platform import __version__
from compute_platform.errors import HostError, HostKeyChanged
from compute_platform.hosts.channel import KEEPALIVE_ANSWER_PERIODS
from compute_platform.hosts.jumps import split_jumps
from compute_platform.hosts.openssh import SOCKET_PATH_MAX, control_dir
from compute_platform.input import sshconfig

if TYPE_CHECKING:
    import paramiko

    from compute_platform.input.spec import HostSpec

PROTOCOL = 1
# `COMPUTE_KEEPER=0` (or off, no, false): no connection is kept, none is looked for.
OFF = ("0", "off", "no", "false")
# What a keeper's connections depend on besides hosts.yaml: a keeper serves one environment, and a
# run in another one (another ~/.ssh/config, known_hosts, agent, user) has its own keeper.
ENVIRONMENT = ("HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK", "COMPUTE_SSH_CONFIG", "COMPUTE_KNOWN_HOSTS")
# The settings of a host that the keeper needs to open its connection as SSHHost would...
SETTINGS = (
    "alias",
    "host",
    "port",
    "user",
    "key",
    "proxy_jump",
    "connection",
    "host_key_checking",
    "known_hosts",
    "connect_timeout",
    "keepalive",
    "control_persist",
)
# ... and those that make two connections different (keepalive and control_persist do not: they say
# how a connection is watched and how long it is kept, and the latest request's values apply).
IDENTITY = SETTINGS[:-2]

# Frame kinds. Client -> keeper:
HELLO = b"H"  # JSON {"op": ..., ...}: the first frame of every connection
EXEC = b"X"  # the command of an exec channel
SUBSYSTEM = b"S"  # the subsystem to start on the channel (sftp)
DATA = b"D"  # stdin
SHUT = b"E"  # end of stdin (shutdown_write)
PARK = b"P"  # JSON {"pidfile": ...}: the persistent shell, between commands, goes back to the keeper
# Keeper -> client:
REPLY = b"J"  # JSON {"ok": true, ...} or {"ok": false, "error": {...}}
STDOUT = b"O"
STDERR = b"R"
STATUS = b"T"  # the exit status, 4 bytes signed
EOF = b"F"  # the command's output ended
# Either way:
CLOSE = b"C"  # the channel is closed (from the keeper: JSON {"reason": ...})
LOST = b"L"  # keeper -> an attached client: the connection is gone

HEADER = struct.Struct(">cI")
FRAME_MAX = 1 << 20  # data goes in frames of at most 1 MiB: nobody holds more than that to read one
# A channel's unread output held here, beyond which its reader waits (the keeper's SSH window
# holds the rest, and sshd what does not fit there).
BUFFER_LIMIT = 4 << 20
REPLY_MARGIN = 5.0  # seconds granted to the keeper beyond its own bound on an operation
STARTING_WAIT = 10.0  # how long --logout waits for a keeper being started (a Python start, a lock)


class ChannelRefused(Exception):
    """The server refused a new channel (sshd's MaxSessions), as paramiko's ChannelException."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class KeptError(OSError):
    """The keeper could not do what was asked on a kept connection (it is lost, or gone)."""


def refusal(error: BaseException) -> str | None:
    """The server's words when `error` is its refusal of a new channel (paramiko's ChannelException,
    or the keeper's ChannelRefused), else None. paramiko is looked at only if it is loaded."""
    if isinstance(error, ChannelRefused):
        return error.text
    paramiko = sys.modules.get("paramiko")
    if paramiko is not None and isinstance(error, paramiko.ChannelException):
        return str(error.text)
    return None


# -- framing ---------------------------------------------------------------------------------


def send_frame(sock: socket.socket, kind: bytes, payload: bytes | memoryview = b"") -> None:
    sock.sendall(HEADER.pack(kind, len(payload)))
    if payload:
        sock.sendall(payload)


def send_json(sock: socket.socket, kind: bytes, value: Mapping[str, Any]) -> None:
    send_frame(sock, kind, json.dumps(value).encode())


def recv_exact(sock: socket.socket, count: int) -> bytes | None:
    """Exactly `count` bytes, or None at the end of the stream (nothing read beyond them)."""
    parts: list[bytes] = []
    while count:
        part = sock.recv(min(count, FRAME_MAX))
        if not part:
            return None
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


def recv_frame(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The next frame (kind, payload), None at the end of the stream."""
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    kind, size = HEADER.unpack(header)
    payload = recv_exact(sock, size) if size else b""
    return None if payload is None else (kind, payload)


def recv_reply(sock: socket.socket) -> dict[str, Any]:
    """The keeper's REPLY; KeptError if the connection ends first or says something else."""
    frame = recv_frame(sock)
    if frame is None or frame[0] != REPLY:
        raise KeptError("the connection keeper did not answer")
    reply: dict[str, Any] = json.loads(frame[1])
    return reply


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket, as the kernel tells it (Linux's
    SO_PEERCRED); None where it cannot be asked (there only the directory's mode protects it)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


# -- who may keep what -------------------------------------------------------------------------


def enabled(spec: HostSpec) -> bool:
    """Whether this host's connection is kept between runs (and looked for in a keeper)."""
    return os.environ.get("COMPUTE_KEEPER", "").strip().lower() not in OFF and spec.persist_seconds > 0


def socket_path() -> Path | None:
    """The socket of the keeper for this environment (None: the control directory cannot be made,
    or its path is too long for a unix socket; hosts then connect by themselves)."""
    seen = {name: os.environ.get(name) for name in ENVIRONMENT}
    seen.update(protocol=str(PROTOCOL), version=__version__, uid=str(os.getuid()))
    digest = hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()[:16]
    try:
        path = control_dir() / f"keeper-{digest}.sock"
    except OSError:  # a home that cannot be written: nothing is kept
        return None
    return path if len(str(path)) < SOCKET_PATH_MAX else None


def settings(spec: HostSpec) -> dict[str, Any]:
    """The settings of `spec` the keeper opens its connection with; file names made absolute (the
    keeper does not run in this directory)."""
    values = {name: getattr(spec, name) for name in SETTINGS}
    for name in ("key", "known_hosts"):
        if values[name]:
            values[name] = os.path.abspath(os.path.expanduser(values[name]))
    return values


def request(spec: HostSpec, hosts: Mapping[str, HostSpec]) -> dict[str, Any]:
    """What the keeper needs to open `spec`'s connection: its settings and those of the hosts.yaml
    hosts on its way (its jump hosts, theirs, ...). When ~/.ssh/config sets a ProxyJump, which may
    name a hosts.yaml alias, every SSH host of hosts.yaml is sent (only paramiko reads that file,
    and a run through the keeper does not import paramiko)."""
    if "proxyjump" in sshconfig.expanded_text().lower():
        route = {alias: host for alias, host in hosts.items() if not host.is_local}
    else:
        route = {}
        pending = split_jumps(spec.proxy_jump or "")
        while pending:
            alias = pending.pop()
            if alias in hosts and alias not in route:
                route[alias] = hosts[alias]
                pending += split_jumps(hosts[alias].proxy_jump or "")
    return {"spec": settings(spec), "hosts": {alias: settings(host) for alias, host in sorted(route.items())}}


def identity(asked: Mapping[str, Any]) -> str:
    """The key under which a request's connection is kept: two requests share a connection only
    when everything that decides where it goes, as whom and how it is checked is the same (the
    host's settings, those of the hosts on its way, ~/.ssh/config as it reads now)."""
    fields = {
        "spec": {name: asked["spec"].get(name) for name in IDENTITY},
        "hosts": {a: {n: h.get(n) for n in IDENTITY} for a, h in sorted(asked["hosts"].items())},
        "ssh_config": hashlib.sha256(sshconfig.expanded_text().encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


# -- reaching the keeper -----------------------------------------------------------------------


def reach(path: Path) -> socket.socket | None:
    """A connection to the keeper at `path`; None if none serves it (a socket left by a keeper that
    died is removed, when it is ours and no keeper holds its lock)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except ConnectionRefusedError:
        sock.close()
        remove_stale(path)
        return None
    except OSError:  # no socket there (the common case: no keeper)
        sock.close()
        return None
    if peer_uid(sock) not in (None, os.getuid()):  # not ours: never send it a command
        sock.close()
        return None
    return sock


def lock_path(path: Path) -> Path:
    return path.with_suffix(".lock")


def take_lock(path: Path) -> int | None:
    """The keeper's lock for socket `path` (held by a keeper for its whole life); None if taken."""
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale(path: Path) -> None:
    """Remove `path` if it is a socket of ours that no keeper serves (no keeper holds the lock)."""
    fd = take_lock(path)
    if fd is None:
        return
    try:
        info = os.lstat(path)
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


def attach(spec: HostSpec, hosts: Mapping[str, HostSpec]) -> KeptTransport | None:
    """`spec`'s connection through the keeper, opened by it now if it holds none (waiting for it if
    it is being opened); None when no keeper answers (the caller connects by itself). Raises the
    HostError the keeper met opening it: the same a connection of this process would meet."""
    path = socket_path()
    sock = reach(path) if path is not None else None
    if sock is None:
        return None
    asked = request(spec, hosts)
    # the keeper bounds each login (and each jump host's) by connect_timeout, MaxStartups included
    sock.settimeout(spec.connect_timeout * (2 + len(asked["hosts"])) + 2 * REPLY_MARGIN)
    try:
        send_json(sock, HELLO, {"op": "attach", "request": asked})
        reply = recv_reply(sock)
    except (OSError, ValueError):  # the keeper died or is leaving: connect directly
        sock.close()
        return None
    if not reply.get("ok"):
        sock.close()
        error = reply.get("error") or {}
        if error.get("type") == "HostKeyChanged":
            raise HostKeyChanged(error.get("host") or spec.alias, error["reason"])
        if error.get("type") == "HostError":
            raise HostError(error.get("host") or spec.alias, error["reason"])
        if error:  # a fault of the keeper's own: say so once, and connect directly
            logging.getLogger("compute_platform").warning(
                f"{spec.alias}: the connection keeper failed ({error.get('reason')}); connecting directly"
            )
        return None
    sock.setblocking(False)  # only polled, for a LOST frame or the keeper's end
    assert path is not None
    return KeptTransport(path, sock, reply, spec.alias, spec.keepalive)


# -- after a run: asking a keeper to keep its connections --------------------------------------

_pending: list[dict[str, Any]] = []
_pending_lock = threading.Lock()


def keep_later(spec: HostSpec, hosts: Mapping[str, HostSpec]) -> None:
    """Note a connection this run made by itself, for `start_pending` to hand to a keeper (noted
    when it is made: a pool of the run that is never closed loses nothing)."""
    with _pending_lock:
        _pending.append(request(spec, hosts))


def start_pending() -> None:
    """Ask a keeper to open the connections noted by `keep_later`: the one running, or a new one,
    started without waiting for it (its start-up and logins are not this run's). The requests go
    in a 0600 file beside the socket, which a keeper reads once it listens; of the runs that write
    one while no keeper listens (one run closing several pools, runs ending together), the one
    whose file is the oldest starts the keeper, which reads them all."""
    global _pending
    with _pending_lock:
        asked, _pending = _pending, []
    path = socket_path() if asked else None
    if path is None:
        return
    warm = path.parent / f"{warm_prefix(path)}{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    try:
        fd = os.open(warm, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asked, f)
    sock = reach(path)  # after the file: a keeper that listens later reads it
    if sock is not None:  # one runs already: it is told now (were the file read too, nothing is opened twice)
        with contextlib.suppress(OSError), sock:
            send_json(sock, HELLO, {"op": "warm", "requests": asked})
            recv_reply(sock)
        warm.unlink(missing_ok=True)
        return
    if min(warm_files(path), default=warm) != warm:
        return  # an older one: a keeper is being started, and will read this file too
    package = str(Path(__file__).resolve().parents[2])  # the folder compute_platform is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))}
    try:
        with open(
            os.open(path.with_suffix(".log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        ) as log:
            keeper = subprocess.Popen(
                [sys.executable, "-m", "compute_platform.hosts.keeper", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                env=env,
                start_new_session=True,  # Ctrl-C in this terminal is not for it
            )
    except OSError:
        warm.unlink(missing_ok=True)
        return
    # reaped when it ends, if this process lives that long (no zombie, no warning at exit)
    threading.Thread(target=keeper.wait, daemon=True).start()


def warm_prefix(path: Path) -> str:
    return f"warm-{path.stem}-"


def warm_files(path: Path) -> list[Path]:
    """The request files for the keeper at `path` not read yet and recent enough to be waited for
    (older ones are a keeper's that died starting: the next keeper reads them, nobody waits)."""
    now = time.time()
    found = []
    for warm in path.parent.glob(f"{warm_prefix(path)}*.json"):
        with contextlib.suppress(OSError):
            if now - warm.stat().st_mtime < STARTING_WAIT:
                found.append(warm)
    return sorted(found)  # by the time in their names: the oldest first


# -- compute hosts --connections / --logout ------------------------------------------------------


def keepers() -> list[Path]:
    """The sockets of the keepers in the control directory (one per environment)."""
    try:
        return sorted(control_dir().glob("keeper-*.sock"))
    except OSError:
        return []


def ask_all(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Send `message` to every keeper that answers; their replies."""
    replies: list[dict[str, Any]] = []
    for path in keepers():
        sock = reach(path)
        if sock is None:
            continue
        with contextlib.suppress(OSError, ValueError), sock:
            sock.settimeout(30)
            send_json(sock, HELLO, message)
            replies.append({**recv_reply(sock), "socket": str(path)})
    return replies


def connections() -> list[dict[str, Any]]:
    """The connections the keepers hold: alias, address, via, ages, users (docs/files.md)."""
    return [entry for reply in ask_all({"op": "list"}) for entry in reply.get("connections", [])]


def logout(alias: str | None) -> int:
    """Close the kept connections of host `alias` (None: all) now; how many were open. A keeper
    still starting (right after a run) is waited for: its warm-up would open them again."""
    deadline = time.monotonic() + STARTING_WAIT
    while time.monotonic() < deadline and _starting():
        time.sleep(0.05)
    return sum(int(reply.get("closed", 0)) for reply in ask_all({"op": "close", "alias": alias}))


def _starting() -> bool:
    """Whether a keeper was started and has not read its requests yet (their files are there)."""
    now = time.time()
    try:
        warms = list(control_dir().glob("warm-*.json"))
    except OSError:
        return False
    for warm in warms:
        with contextlib.suppress(OSError):
            if now - warm.stat().st_mtime < STARTING_WAIT:
                return True
    return False


# -- a kept connection, as a paramiko Transport ----------------------------------------------------


class KeptTransport:
    """One attached connection of the keeper, with the methods of paramiko's Transport that SSHHost
    uses. `close` releases it (the keeper keeps it `control_persist` longer); it is no longer active
    once the keeper says it is lost, or is gone."""

    def __init__(
        self, path: Path, control: socket.socket, reply: Mapping[str, Any], alias: str, keepalive: float
    ) -> None:
        self.path = path
        self.alias = alias
        self.token: str = reply["token"]
        login = reply.get("login")
        self.login = (str(login[0]), bool(login[1])) if login else None
        self.key_used: str | None = reply.get("key_used")
        self.answer_wait = keepalive * KEEPALIVE_ANSWER_PERIODS
        self.keeper_pid: int = int(reply.get("pid", 0))
        self._home: str | None = reply.get("home")
        self._control = control
        self._active = True
        self._lock = threading.Lock()
        self._channels: weakref.WeakSet[KeptChannel] = weakref.WeakSet()
        self._count = 0

    def is_active(self) -> bool:
        with self._lock:
            if self._active:
                try:
                    # anything from the keeper on this connection (LOST, or its end) means lost
                    if select.select([self._control], [], [], 0)[0]:
                        self._active = False
                except (OSError, ValueError):
                    self._active = False
            return self._active

    def close(self) -> None:
        """Release the connection: our channels close (a persistent shell parked before stays)."""
        with self._lock:
            self._active = False
            channels = list(self._channels)
        for chan in channels:
            chan.close()
        with contextlib.suppress(OSError):
            self._control.close()

    def _connect(self, op: str, bound: float | None, **fields: Any) -> tuple[socket.socket, dict[str, Any]]:
        """A new connection to the keeper for operation `op` on this connection, and its reply
        (`bound`: how long the keeper may take, None: no limit)."""
        if not self.is_active():
            raise KeptError("the kept connection was closed")
        sock = reach(self.path)
        if sock is None:
            raise KeptError("the connection keeper is gone")
        try:
            sock.settimeout(None if bound is None else bound + REPLY_MARGIN)
            send_json(sock, HELLO, {"op": op, "token": self.token, **fields})
            reply = recv_reply(sock)
        except (OSError, ValueError) as e:
            sock.close()
            raise KeptError(str(e) or "the connection keeper did not answer") from e
        if not reply.get("ok"):
            sock.close()
            if reply.get("refused") is not None:
                raise ChannelRefused(reply["refused"])
            raise KeptError(reply.get("reason") or "the kept connection was lost")
        sock.settimeout(None)
        return sock, reply

    def _channel(self, sock: socket.socket) -> KeptChannel:
        with self._lock:
            self._count += 1
            chan = KeptChannel(sock, self, f"kept-{self._count}")
            self._channels.add(chan)
        return chan

    def open_session(
        self, window_size: int | None = None, max_packet_size: int | None = None, timeout: float | None = None
    ) -> KeptChannel:
        sock, _ = self._connect("session", timeout, timeout=timeout)
        return self._channel(sock)

    def shell(self, timeout: float) -> tuple[KeptChannel, str | None]:
        """A channel for the persistent shell: the one a run left to the keeper, already running
        (with the pid file of its driver), or a new session (None) for the caller to start one in."""
        sock, reply = self._connect("shell", timeout, timeout=timeout)
        return self._channel(sock), reply.get("pidfile")

    def open_channel(
        self, kind: str, dest_addr: tuple[str, int], src_addr: tuple[str, int], timeout: float | None = None
    ) -> socket.socket:
        """A `direct-tcpip` channel, as a socket: what paramiko needs for a host behind this one."""
        assert kind == "direct-tcpip"
        sock, _ = self._connect("tunnel", timeout, dest=list(dest_addr), timeout=timeout)
        return sock

    def open_sftp_client(self) -> paramiko.SFTPClient:
        from compute_platform.input.sshconfig import load_paramiko

        chan = self.open_session()
        chan.invoke_subsystem("sftp")
        load_paramiko()
        import paramiko

        return paramiko.SFTPClient(chan)  # type: ignore[arg-type]  # a socket-like channel is enough

    def global_request(self, kind: str, data: Any = None, wait: bool = True) -> object:
        """A keepalive: returns once the host answered, or once the keeper gave up on it, a second
        after the caller does (channel.check_alive): the caller's words say what happened, and the
        keeper closes the connection, lost for every run."""
        try:
            sock, reply = self._connect("keepalive", self.answer_wait + 1, wait=self.answer_wait + 1)
        except KeptError:
            return None
        sock.close()
        return reply

    def home(self, timeout: float) -> str:
        """The home directory, as SFTP tells it (asked by the keeper once per connection)."""
        if self._home is None:
            sock, reply = self._connect("home", 2 * timeout, timeout=timeout)
            sock.close()
            self._home = str(reply["home"])
        return self._home


class _Stream:
    """Bytes read from the keeper for one output stream, not yet taken by the reader."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def push(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def take(self, count: int) -> bytes:
        if count >= self.size:
            data = b"".join(self.chunks)
            self.chunks.clear()
            self.size = 0
            return data
        parts: list[bytes] = []
        while count:
            chunk = self.chunks.popleft()
            if len(chunk) > count:
                self.chunks.appendleft(chunk[count:])
                chunk = chunk[:count]
            parts.append(chunk)
            count -= len(chunk)
            self.size -= len(chunk)
        return b"".join(parts)


class KeptChannel:
    """One channel of a kept connection, with the methods of paramiko's Channel that SSHHost, its
    persistent shell, the read loop and SFTP use, and their meaning: a thread reads what the keeper
    sends (as paramiko's transport thread does), `fileno` is readable while output is buffered or
    has ended, the exit status is -1 when the channel closed without one."""

    def __init__(self, sock: socket.socket, transport: KeptTransport, name: str) -> None:
        self._sock = sock
        self._transport = transport
        self._name = name
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._out = _Stream()
        self._err = _Stream()
        self._replies: deque[dict[str, Any]] = deque()
        self._pipe: tuple[int, int] | None = None
        self._pipe_set = False
        self._timeout: float | None = None
        self._gone = False  # closed or parked by us: nothing more is sent
        self.closed = False
        self.eof_received = False
        self.exit_status = -1
        self.status_event = threading.Event()
        self.reason = ""
        threading.Thread(target=self._read, name=f"compute-{name}", daemon=True).start()

    # -- what the keeper sends

    def _read(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            while True:
                header = stream.read(HEADER.size)
                if len(header) < HEADER.size:
                    break
                kind, size = HEADER.unpack(header)
                payload = stream.read(size) if size else b""
                if len(payload) < size:
                    break
                if kind == CLOSE:
                    with contextlib.suppress(ValueError):
                        self.reason = json.loads(payload).get("reason", "")
                    break
                with self._cond:
                    self._take(kind, payload)
                    self._cond.notify_all()
                    self._signal()
                    while self._out.size + self._err.size > BUFFER_LIMIT and not self.closed:
                        self._cond.wait()
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()
            with self._cond:
                self._set_closed()

    def _take(self, kind: bytes, payload: bytes) -> None:
        if kind == STDOUT:
            self._out.push(payload)
        elif kind == STDERR:
            self._err.push(payload)
        elif kind == STATUS:
            self.exit_status = int.from_bytes(payload, "big", signed=True)
            self.status_event.set()
        elif kind == EOF:
            self.eof_received = True
        elif kind == REPLY:
            self._replies.append(json.loads(payload))

    def _set_closed(self) -> None:
        """(Holding the condition.) As paramiko's: buffered output can still be read, then b""."""
        self.closed = True
        self.status_event.set()
        self._cond.notify_all()
        self._signal()

    def _signal(self) -> None:
        """(Holding the condition.) The pipe of `fileno` is readable exactly while there is
        something to read or the output ended, as paramiko's is."""
        if self._pipe is None:
            return
        ready = bool(self._out.size or self._err.size or self.eof_received or self.closed)
        if ready and not self._pipe_set:
            os.write(self._pipe[1], b"*")
            self._pipe_set = True
        elif not ready and self._pipe_set:
            os.read(self._pipe[0], 1)
            self._pipe_set = False

    def _reply(self) -> dict[str, Any]:
        with self._cond:
            while not self._replies and not self.closed:
                self._cond.wait()
            if not self._replies:
                raise KeptError(self.reason or "the kept connection was lost")
            return self._replies.popleft()

    # -- paramiko's Channel

    def get_transport(self) -> KeptTransport:
        return self._transport

    def get_name(self) -> str:
        return self._name

    def fileno(self) -> int:
        with self._cond:
            if self._pipe is None:
                self._pipe = os.pipe()
                # closed when the channel is forgotten, not at close(): a select() may be waiting on it
                weakref.finalize(self, _close_pipe, self._pipe)
                self._signal()
            return self._pipe[0]

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, blocking: bool) -> None:
        self._timeout = None if blocking else 0.0

    def _send(self, kind: bytes, payload: bytes | memoryview = b"") -> None:
        with self._send_lock:
            if self._gone:
                raise OSError(errno.EPIPE, "the channel is closed")
            send_frame(self._sock, kind, payload)

    def exec_command(self, command: str | bytes) -> None:
        self._send(EXEC, command.encode() if isinstance(command, str) else command)
        self._check(self._reply())

    def invoke_subsystem(self, subsystem: str) -> None:
        self._send(SUBSYSTEM, subsystem.encode())
        self._check(self._reply())

    @staticmethod
    def _check(reply: Mapping[str, Any]) -> None:
        if not reply.get("ok"):
            raise KeptError(reply.get("reason") or "the server refused the request")

    def send(self, data: Any) -> int:
        if self.closed:
            raise OSError(errno.EPIPE, "the channel is closed")
        piece = memoryview(data)[:FRAME_MAX]
        self._send(DATA, piece)
        return len(piece)

    def sendall(self, data: Any) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self._send(SHUT)

    def _wait_for(self, stream: _Stream, count: int) -> bytes:
        with self._cond:
            while not stream.size and not (self.eof_received or self.closed):
                if not self._cond.wait(self._timeout) and self._timeout is not None:
                    raise TimeoutError()
            data = stream.take(count)
            self._cond.notify_all()  # room again for the reader thread
            self._signal()
            return data

    def recv(self, nbytes: int) -> bytes:
        return self._wait_for(self._out, nbytes)

    def recv_stderr(self, nbytes: int) -> bytes:
        return self._wait_for(self._err, nbytes)

    def recv_ready(self) -> bool:
        return self._out.size > 0

    def recv_stderr_ready(self) -> bool:
        return self._err.size > 0

    def exit_status_ready(self) -> bool:
        return self.closed or self.status_event.is_set()

    def recv_exit_status(self) -> int:
        self.status_event.wait()
        return self.exit_status

    def close(self) -> None:
        self._leave(CLOSE, b"")

    def park(self, pidfile: str) -> None:
        """Hand the persistent shell (between two commands) back to the keeper, for the next run."""
        self._leave(PARK, json.dumps({"pidfile": pidfile}).encode())

    def _leave(self, kind: bytes, payload: bytes) -> None:
        with self._send_lock:
            if self._gone:
                return
            self._gone = True
            with contextlib.suppress(OSError):
                if not self.closed:
                    send_frame(self._sock, kind, payload)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with self._cond:
            self._set_closed()


def _close_pipe(pipe: tuple[int, int]) -> None:
    for fd in pipe:
        with contextlib.suppress(OSError):
            os.close(fd)
