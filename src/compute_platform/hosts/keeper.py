"""The connection keeper: one detached process per user and environment that holds paramiko
connections open between runs and lends them to compute processes, over a unix socket in the
private control directory (hosts/kept.py is the client side and the protocol).

    python -m compute_platform.hosts.keeper SOCKET

started by a run that connected by itself (`kept.start_pending`), which left the connections it
used in a request file beside SOCKET (read once the keeper listens). Each connection is opened by SSHHost's own code, so with the same keys, settings and host key
checks as a run's; its jump hosts are connections kept here too, shared by the hosts behind them.
A connection is lent only while known_hosts still records the key it was checked against, and
while it is up (idle ones are asked to answer a keepalive every `keepalive` seconds); it is closed
`control_persist` after its last use, and the keeper exits once it holds none.

Only processes of the same user may connect: the directory is 0700 and the socket 0600, and each
connection's peer is checked by the kernel's word (SO_PEERCRED, on Linux): whoever reaches this
socket runs commands as the user on every kept host without a password, and a directory's mode
is one chmod away from being wrong."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compute_platform.errors import HostError, HostKeyChanged
from compute_platform.hosts.channel import (
    KEEPALIVE_ANSWER_PERIODS,
    READ_SIZE,
    Channel,
    Watch,
    check_alive,
    send_all,
)
from compute_platform.hosts.kept import (
    CLOSE,
    DATA,
    EOF,
    EXEC,
    FRAME_MAX,
    HELLO,
    LOST,
    PARK,
    REPLY,
    SHUT,
    STATUS,
    STDERR,
    STDOUT,
    SUBSYSTEM,
    KeptTransport,
    identity,
    peer_uid,
    reach,
    recv_frame,
    request,
    send_frame,
    send_json,
    take_lock,
    warm_prefix,
)
from compute_platform.hosts.remote import Login

if TYPE_CHECKING:
    import paramiko

    from compute_platform.hosts.jumps import JumpHost
    from compute_platform.hosts.ssh import SSHHost
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

TICK = 0.5  # seconds between two looks at what to close (and whether to exit)
HELLO_WAIT = 10.0  # a connection that says nothing this long is dropped
LOCK_WAIT = 2.0  # another keeper holds the lock: how long to wait for it to listen, or to leave
LOG_LIMIT = 1 << 20  # the log is emptied at start once it is larger


def log(message: str) -> None:
    now = time.time()
    stamp = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d}"
    print(f"{stamp} keeper[{os.getpid()}] {message}", file=sys.stderr, flush=True)


class Entry:
    """One connection (to a host, through its jump hosts) and what the keeper knows of it."""

    def __init__(self, keeper: Keeper, key: str, spec: HostSpec, inventory: Inventory) -> None:
        from compute_platform.hosts.ssh import SSHHost

        self.keeper = keeper
        self.key = key
        self.token = uuid.uuid4().hex
        self.spec = spec
        self.inventory = inventory
        self.host: SSHHost = SSHHost(spec, jump=self._jump, hosts=inventory.hosts, keep=False)
        self.persist = spec.persist_seconds
        self.through: list[Entry] = []  # the kept jump hosts its connection goes through
        self.clients = 0  # runs holding it now
        self.pins = 0  # requests opening it now
        self.last_used = time.monotonic()
        self.opened_at: float | None = None
        self.login: tuple[str, bool] | None = None
        self.parked: tuple[Channel, str] | None = None  # a persistent shell, and its pid file
        self.spare: paramiko.Channel | None = None  # a session opened in advance: a command's channel at once
        self._refilling = False
        # one session opened at a time: paramiko keeps the server's refusal (MaxSessions) per
        # connection, not per channel, and of two refused at once one would get a vaguer error
        self.opening_session = threading.Lock()
        self.watchers: set[socket.socket] = set()  # the runs' attach connections: told when it is lost
        self.closed = False
        self.probing = False
        self.next_probe = 0.0
        self._opening = threading.Lock()
        self._home_lock = threading.Lock()
        self._finished = 0  # attempts at opening it that ended
        self._failed: tuple[int, HostError] | None = None

    def describe(self) -> str:
        via = f" via {','.join(hop.spec.alias for hop in self.through)}" if self.through else ""
        return f"{self.spec.alias} ({self.key[:8]}{via})"

    # -- opening

    def open(self, probe: bool, shell: bool = False) -> None:
        """Connect (and ask the login shell: `probe`; start a persistent shell for the next run:
        `shell`), unless it is up; one at a time. Whoever waited for an attempt that failed gets its
        error, not a second attempt (and twice the timeout)."""
        seen = self._finished
        with self._opening:
            if self.closed:
                raise _Closed()
            if self._failed is not None and self._failed[0] > seen:
                raise self._failed[1]
            if self.host.live_transport() is not None and (self.login is not None or not probe):
                return
            start = time.monotonic()
            try:
                self.host.connect()
                if probe:
                    login = self.host.login_shell()
                    self.login = (login.shell, login.prints)
                if shell and self.login is not None:  # in the background: a run may come meanwhile
                    _thread(self._start_shell, Login(*self.login))
                    self.refill()
            except HostError as e:
                self._finished += 1
                self._failed = (self._finished, e)
                raise
            self._finished += 1
            self._failed = None
            if self.opened_at is None:
                self.opened_at = time.monotonic()
                log(f"opened {self.describe()} in {self.opened_at - start:.2f} s")

    def _start_shell(self, login: Login) -> None:
        """A persistent shell, parked for the first run to come: its first command then costs one
        round trip. Only where a run would use one (bash, start-up files that print nothing)."""
        from compute_platform.hosts.persistent import PersistentShell

        transport = self.host.live_transport()
        if not login.is_bash or login.prints or transport is None or isinstance(transport, KeptTransport):
            return
        shell = PersistentShell(self.spec.alias, self.spec.connect_timeout, self.spec.keepalive)
        try:
            started = shell.start(transport)
        except HostError:  # the connection went meanwhile: no shell to keep
            return
        if started is not None:
            self.park(*started)

    def opening(self) -> bool:
        return self._opening.locked()

    def lendable(self) -> bool:
        """(Holding the keeper's lock.) Whether a new request may have this connection: it is being
        opened, or up with every host key on its way still the one known_hosts records."""
        if self.closed:
            return False
        if self.opening() or self.opened_at is None:
            return True
        return all(
            entry.host.live_transport() is not None and entry.host.key_still_recorded()
            for entry in [self, *self.through]
        )

    def _jump(self, chain: str, target: HostSpec) -> JumpHost:
        """The jump host resolver of this connection's SSHHost: a kept connection of its own for an
        SSH hop (shared by every host behind it), an OpenSSH master for a `connection: openssh` one."""
        from compute_platform.hosts import jumps
        from compute_platform.hosts.openssh import OpenSSHHost

        spec = jumps.next_hop(self.inventory, chain, target)
        if spec.is_local:
            raise jumps.not_a_jump_host(target, spec)
        if spec.connection == "openssh":
            return OpenSSHHost(spec, self.inventory)
        hop = self.keeper.entry(request(spec, self.inventory.hosts))
        with self.keeper.lock:
            if hop not in self.through:
                self.through.append(hop)
        return _Hop(hop)

    # -- lending

    def take_spare(self) -> paramiko.Channel | None:
        """The session opened in advance, if there is one (another is opened for the next command)."""
        with self.keeper.lock:
            spare, self.spare = self.spare, None
        if spare is not None and (spare.closed or not spare.active):
            spare = None
        self.refill()
        return spare

    def refill(self) -> None:
        """Open a spare session in the background, unless there is one (or one is being opened)."""
        with self.keeper.lock:
            if self.spare is not None or self._refilling or self.closed:
                return
            self._refilling = True
        _thread(self._open_spare)

    def _open_spare(self) -> None:
        import paramiko

        chan: paramiko.Channel | None = None
        transport = self.host.live_transport()
        # kept as the spare before the lock goes: a request waiting for it takes it, rather than
        # asking a server that allows one session (MaxSessions) for a second
        with self.opening_session:
            try:
                if isinstance(transport, paramiko.Transport):
                    chan = transport.open_session(timeout=self.spec.connect_timeout)
            except Exception:  # sshd's MaxSessions, or the connection is going: commands open their own
                chan = None
            with self.keeper.lock:
                self._refilling = False
                if chan is not None and self.spare is None and not self.closed:
                    self.spare, chan = chan, None
        if chan is not None:
            chan.close()

    def take_shell(self) -> tuple[Channel, str] | None:
        with self.keeper.lock:
            parked, self.parked = self.parked, None
        if parked is not None and _alive(parked[0]):
            return parked
        if parked is not None:
            parked[0].close()
        return None

    def park(self, chan: Channel, pidfile: str) -> None:
        with self.keeper.lock:
            if self.parked is None and not self.closed and _alive(chan):
                self.parked = (chan, pidfile)
                return
        chan.close()

    def home(self) -> str:
        """The home directory as SFTP says it, asked once; the SFTP session is not kept open."""
        with self._home_lock:
            try:
                return self.host.home()
            finally:
                self.host.close_sftp()

    def idle(self) -> bool:
        """(Holding the keeper's lock.) Nobody uses it, nor a connection that goes through it."""
        if self.clients or self.pins:
            return False
        return not any(self in other.through and not other.closed for other in self.keeper.tokens.values())

    def close(self, why: str) -> None:
        """Close it, once an opening under way has ended: nothing is opened after the close."""
        with self._opening:
            with self.keeper.lock:
                if self.closed:
                    return
                self.closed = True
                if self.keeper.entries.get(self.key) is self:
                    del self.keeper.entries[self.key]
                self.keeper.tokens.pop(self.token, None)
                watchers, self.watchers = list(self.watchers), set()
                parked, self.parked = self.parked, None
                spare, self.spare = self.spare, None
                for hop in self.through:
                    hop.last_used = time.monotonic()
            for conn in watchers:
                with contextlib.suppress(OSError):
                    send_frame(conn, LOST)
            if parked is not None:
                parked[0].close()
            if spare is not None:
                spare.close()
            with contextlib.suppress(Exception):
                self.host.close()
        if self.opened_at is not None:
            log(f"closed {self.describe()}: {why}")


class _Closed(Exception):
    """The connection was closed while a request waited for it: the request takes a new one."""


class _Hop:
    """A kept jump host, as SSHHost's jump resolver hands it out: opened through its Entry (one
    attempt for every host behind it), then tunnelled through by SSHHost's own code."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.alias = entry.spec.alias

    def tunnel(self, host: str, port: int, timeout: float, requester: str) -> Any:
        from compute_platform.hosts.jumps import unreachable

        try:
            self.entry.open(probe=False)
        except HostError as e:
            raise unreachable(self.alias, requester, e) from e
        return self.entry.host.tunnel(host, port, timeout, requester)


class Keeper:
    def __init__(self, path: Path, listener: socket.socket) -> None:
        self.path = path
        self.listener = listener
        self.lock = threading.Lock()
        self.entries: dict[str, Entry] = {}  # identity -> the connection a new request gets
        self.tokens: dict[str, Entry] = {}  # token -> every connection not closed (retired ones too)
        self.serving = 0  # connections being served
        self.warming = 0  # connections asked for by `warm`, not opened (nor failed) yet
        self.logouts: list[tuple[float, str | None]] = []  # (when, alias or None: all), for `warm`
        self.stopping = False
        self.ops: dict[str, Callable[[socket.socket, dict[str, Any]], None]] = {
            "attach": self.attach,
            "session": self.session,
            "shell": self.shell,
            "tunnel": self.tunnel,
            "keepalive": self.keepalive,
            "home": self.home,
            "warm": self.warm,
            "list": self.listing,
            "close": self.close,
        }

    # -- the loop

    def serve(self) -> None:
        self.listener.settimeout(TICK)
        while True:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                pass
            else:
                _thread(self.handle, conn)
            if self.housekeeping():
                return

    def housekeeping(self) -> bool:
        """Close what is lost, expired or no longer lent; True once nothing is left (the socket is
        then removed, and the keeper exits)."""
        now = time.monotonic()
        with self.lock:
            entries = list(self.tokens.values())
        for entry in entries:
            with self.lock:
                idle = entry.idle()
            if self.stopping:
                entry.close("the keeper stops")
            elif entry.opening():
                continue
            elif entry.opened_at is None:
                if idle:
                    entry.close("it could not be opened")
            elif entry.host.live_transport() is None:
                entry.close("the connection was lost")
            elif idle and (entry.key not in self.entries or self.entries[entry.key] is not entry):
                entry.close("a newer connection replaced it")
            elif idle and now - entry.last_used >= entry.persist:
                entry.close(f"unused for {entry.persist:g} s (control_persist)")
            elif idle and now >= entry.next_probe and not entry.probing:
                entry.probing = True
                entry.next_probe = now + entry.spec.keepalive
                _thread(self._probe, entry)
        with self.lock:
            done = not self.tokens and ((self.serving == 0 and self.warming == 0) or self.stopping)
            if done:
                with contextlib.suppress(OSError):
                    self.path.unlink()  # no new run finds us: they connect by themselves
        if done:
            self.listener.close()
            log("holds no connection: exits")
        return done

    def _probe(self, entry: Entry) -> None:
        """An idle connection must answer a keepalive, as during a command: a host gone while
        nobody used it is not lent to the next run."""
        transport = entry.host.live_transport()
        try:
            if transport is not None:
                check_alive(transport, Watch(entry.spec.alias, entry.spec.keepalive))
        except HostError as e:
            entry.close(e.reason)
        finally:
            entry.probing = False

    def handle(self, conn: socket.socket) -> None:
        with self.lock:
            self.serving += 1
        op = "?"
        try:
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                log(f"refused a connection from uid {uid}: only uid {os.getuid()} may use this keeper")
                return
            conn.settimeout(HELLO_WAIT)
            frame = recv_frame(conn)
            if frame is None or frame[0] != HELLO:
                return
            hello = json.loads(frame[1])
            conn.settimeout(None)
            op = str(hello.get("op"))
            serve = self.ops.get(op)
            if serve is None:
                send_json(conn, REPLY, {"ok": False, "reason": f"unknown operation {op!r}"})
                return
            serve(conn, hello)
        except Exception as e:  # one connection's trouble is not the keeper's
            log(f"{op}: {type(e).__name__}: {e}")
        finally:
            conn.close()
            with self.lock:
                self.serving -= 1

    # -- finding a connection for a request

    def entry(self, asked: Mapping[str, Any], pin: bool = False) -> Entry:
        """The connection for a request: the one kept if it may still be lent (a connection no
        longer lendable is retired: closed once its runs let it go), else a new one, not opened yet."""
        from compute_platform.hosts import ssh  # noqa: F401  (imported here, not under the lock)
        from compute_platform.input.inventory import Inventory
        from compute_platform.input.spec import HostSpec

        key = identity(asked)
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and not entry.lendable():
                del self.entries[key]
                log(f"retired {entry.describe()}: it is lost, or known_hosts no longer records its host key")
                entry = None
            if entry is None:
                spec = HostSpec.from_settings(asked["spec"])
                hosts = {alias: HostSpec.from_settings(values) for alias, values in asked["hosts"].items()}
                entry = Entry(self, key, spec, Inventory(hosts=hosts, configs={}))
                self.entries[key] = entry
                self.tokens[entry.token] = entry
            else:  # the latest request says how long to keep it
                entry.persist = HostSpec.from_settings(asked["spec"]).persist_seconds
            if pin:
                entry.pins += 1
        return entry

    def lend(self, asked: Mapping[str, Any], client: bool) -> Entry:
        """The connection for a request, opened (raises its HostError); counted as used by a run
        when `client`. One closed while the request waited for it (--logout) is replaced."""
        while True:
            entry = self.entry(asked, pin=True)
            opened = False
            try:
                entry.open(probe=True, shell=not client)
                opened = True
            except _Closed:
                continue
            finally:
                with self.lock:
                    entry.pins -= 1
                    entry.last_used = time.monotonic()
                    if client and opened:
                        entry.clients += 1
            return entry

    def release(self, entry: Entry, conn: socket.socket) -> None:
        with self.lock:
            entry.watchers.discard(conn)
            entry.clients -= 1
            entry.last_used = time.monotonic()

    def _lent(self, conn: socket.socket, hello: Mapping[str, Any]) -> tuple[Entry, paramiko.Transport] | None:
        """The connection a channel request names, while it is up; else the client is told it is lost."""
        with self.lock:
            entry = self.tokens.get(str(hello.get("token")))
        transport = entry.host.live_transport() if entry is not None else None
        if entry is None or transport is None or isinstance(transport, KeptTransport):
            send_json(conn, REPLY, {"ok": False, "reason": "the kept connection was lost"})
            return None
        return entry, transport

    # -- operations

    def attach(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        """A run's host: the connection, opened if needed, held until the run closes this socket."""
        try:
            entry = self.lend(hello["request"], client=True)
        except HostError as e:
            kind = "HostKeyChanged" if isinstance(e, HostKeyChanged) else "HostError"
            send_json(conn, REPLY, {"ok": False, "error": {"type": kind, "host": e.host, "reason": e.reason}})
            return
        except Exception as e:
            log(f"attach: {type(e).__name__}: {e}")
            send_json(
                conn,
                REPLY,
                {"ok": False, "error": {"type": "internal", "reason": f"{type(e).__name__}: {e}"}},
            )
            return
        try:
            with self.lock:
                entry.watchers.add(conn)
                lost = entry.closed  # closed in between (--logout): told at once
            send_json(
                conn,
                REPLY,
                {
                    "ok": True,
                    "token": entry.token,
                    "login": entry.login,
                    "key_used": entry.host.key_used(),
                    "pid": os.getpid(),
                },
            )
            if lost:
                send_frame(conn, LOST)
            while conn.recv(4096):  # until the run lets it go (or ends)
                pass
        except OSError:
            pass
        finally:
            self.release(entry, conn)

    def session(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        lent = self._lent(conn, hello)
        if lent is not None:
            chan = lent[0].take_spare() or self._open_session(conn, *lent, hello)
            if chan is not None:
                send_json(conn, REPLY, {"ok": True})
                Relay(conn, chan, lent[0]).run()

    def shell(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        """The persistent shell a run left here, or a new session to start one in."""
        lent = self._lent(conn, hello)
        if lent is None:
            return
        parked = lent[0].take_shell()
        if parked is not None:
            send_json(conn, REPLY, {"ok": True, "pidfile": parked[1]})
            Relay(conn, parked[0], lent[0]).run()
            return
        chan = lent[0].take_spare() or self._open_session(conn, *lent, hello)
        if chan is not None:
            send_json(conn, REPLY, {"ok": True, "pidfile": None})
            Relay(conn, chan, lent[0]).run()

    @staticmethod
    def _open_session(
        conn: socket.socket, entry: Entry, transport: paramiko.Transport, hello: Mapping[str, Any]
    ) -> paramiko.Channel | None:
        """A new session, or the spare one opened while this waited for the spare's opening."""
        import paramiko

        try:
            with entry.opening_session:
                spare = entry.take_spare()
                if spare is not None:
                    return spare
                return transport.open_session(timeout=hello.get("timeout"))
        except paramiko.ChannelException as e:  # sshd's MaxSessions: the client waits and asks again
            # a command matters more than the shell parked for the next run: its session goes
            parked = entry.take_shell()
            if parked is not None:
                parked[0].close()
            send_json(conn, REPLY, {"ok": False, "refused": str(e.text)})
        except Exception as e:
            send_json(conn, REPLY, {"ok": False, "reason": str(e) or type(e).__name__})
        return None

    def tunnel(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        """A `direct-tcpip` channel, then raw bytes both ways (a host behind this one)."""
        import paramiko

        lent = self._lent(conn, hello)
        if lent is None:
            return
        host, port = hello["dest"]
        try:
            chan = lent[1].open_channel(
                "direct-tcpip", (host, int(port)), ("127.0.0.1", 0), timeout=hello.get("timeout")
            )
        except paramiko.ChannelException as e:
            send_json(conn, REPLY, {"ok": False, "refused": str(e.text)})
            return
        except Exception as e:
            send_json(conn, REPLY, {"ok": False, "reason": str(e) or type(e).__name__})
            return
        send_json(conn, REPLY, {"ok": True})
        _pipe(conn, chan)

    def keepalive(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        """A run's command is silent: the host must answer within `wait` s, or is lost for every run."""
        lent = self._lent(conn, hello)
        if lent is None:
            return
        entry, transport = lent
        wait = float(hello.get("wait", 30))
        try:
            check_alive(transport, Watch(entry.spec.alias, wait / KEEPALIVE_ANSWER_PERIODS))
        except HostError as e:
            entry.close(e.reason)
            send_json(conn, REPLY, {"ok": True, "answered": False})
            return
        send_json(conn, REPLY, {"ok": True, "answered": transport.is_active()})

    def home(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        lent = self._lent(conn, hello)
        if lent is None:
            return
        try:
            home = lent[0].home()
        except HostError as e:
            send_json(conn, REPLY, {"ok": False, "reason": e.reason})
            return
        send_json(conn, REPLY, {"ok": True, "home": home})

    def warm(self, conn: socket.socket | None, hello: Mapping[str, Any]) -> None:
        """Open these connections (in the background), for the next runs."""
        for asked in hello.get("requests", []):
            with self.lock:
                self.warming += 1
            _thread(self._warm_one, asked, time.monotonic())
        if conn is not None:
            send_json(conn, REPLY, {"ok": True})

    def _warm_one(self, asked: Mapping[str, Any], asked_at: float) -> None:
        alias = asked["spec"].get("alias")
        try:
            # with the login probe and a shell: the next run needs neither
            entry = self.lend(asked, client=False)
            with self.lock:
                # a --logout since it was asked for (even before the keeper listened) cancels it
                cancelled = (
                    any(t >= asked_at and a in (None, alias) for t, a in self.logouts) and not entry.clients
                )
            if cancelled:
                entry.close("compute hosts --logout")
        except HostError as e:
            log(f"cannot open {alias}: {e.reason}")
        except Exception as e:
            log(f"cannot open {alias}: {type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.warming -= 1

    def listing(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        now = time.monotonic()
        rows = []
        with self.lock:
            entries = [e for e in self.tokens.values() if e.opened_at is not None]
            for entry in entries:
                ep = entry.host.endpoint
                rows.append(
                    {
                        "alias": entry.spec.alias,
                        "address": f"{ep.user}@{ep.hostname}:{ep.port}" if ep else entry.spec.address,
                        "via": [hop.spec.alias for hop in entry.through],
                        "open_for": now - (entry.opened_at or now),
                        "runs": entry.clients,
                        "idle_for": 0.0 if not entry.idle() else now - entry.last_used,
                        "persist": entry.persist,
                        "shell": entry.parked is not None,
                        "pid": os.getpid(),
                    }
                )
        send_json(conn, REPLY, {"ok": True, "connections": rows})

    def close(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        """`compute hosts --logout`: close a host's connections now (alias None: all of them)."""
        alias = hello.get("alias")
        with self.lock:
            now = time.monotonic()  # a warm-up older than this many seconds has long ended
            self.logouts = [(t, a) for t, a in self.logouts if now - t < 600] + [(now, alias)]
            chosen = [e for e in self.tokens.values() if alias is None or e.spec.alias == alias]
        closed = sum(1 for e in chosen if e.opened_at is not None)
        for entry in chosen:
            entry.close("compute hosts --logout")
        send_json(conn, REPLY, {"ok": True, "closed": closed})

    def stop(self, *_: object) -> None:
        self.stopping = True


class Relay:
    """One channel between a run (the unix connection) and the host (the paramiko channel): what
    the run sends is done on the channel here, what the channel says is sent there by a pump thread."""

    def __init__(self, conn: socket.socket, chan: Channel, entry: Entry) -> None:
        self.conn = conn
        self.chan = chan
        self.entry = entry
        self.send_lock = threading.Lock()
        self.stop = threading.Event()
        self.wake = os.pipe()  # wakes the pump at once when it must stop (a shell being parked)
        self.asked = False  # an exec request whose answer the pump has not seen yet

    def run(self) -> None:
        pump = _thread(self._pump)
        parked = False
        try:
            while True:
                frame = recv_frame(self.conn)
                if frame is None or frame[0] == CLOSE:
                    return
                kind, payload = frame
                if kind == DATA:
                    send_all(self.chan, payload)
                elif kind == SHUT:
                    self.chan.shutdown_write()
                elif kind == EXEC:
                    self._request(self._exec, payload.decode())
                elif kind == SUBSYSTEM:
                    self._request(self.chan.invoke_subsystem, payload.decode())
                elif kind == PARK:
                    self._stop()
                    pump.join()
                    self.entry.park(self.chan, json.loads(payload)["pidfile"])
                    parked = True
                    return
        except OSError:
            pass
        finally:
            self._stop()
            if not parked:
                self.chan.close()
            pump.join(5)  # its sends fail once the run is gone
            if not pump.is_alive():
                for fd in self.wake:
                    os.close(fd)

    def _stop(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            os.write(self.wake[1], b"*")

    def _exec(self, command: str) -> None:
        """The command's request, sent without waiting for the server's answer (paramiko's
        exec_command waits): stdin the run sends at once follows it in the same flight, so a
        command fed on stdin costs one round trip, not two. The pump looks at the answer."""
        import paramiko
        from paramiko.common import cMSG_CHANNEL_REQUEST

        chan: Any = self.chan  # what exec_command does, but its wait: paramiko's own private calls
        if not (hasattr(chan, "_event_pending") and hasattr(chan.transport, "_send_user_message")):
            self.chan.exec_command(command)  # another paramiko: its own way
            return
        if chan.closed or not chan.active:
            raise paramiko.SSHException("the channel is closed")
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(chan.remote_chanid)
        message.add_string("exec")
        message.add_boolean(True)
        message.add_string(command)
        chan._event_pending()
        self.asked = True
        chan.transport._send_user_message(message)

    def _request(self, ask: Callable[[str], None], what: str) -> None:
        try:
            ask(what)
        except Exception as e:  # paramiko raises SSHException when the server says no
            self._send_json({"ok": False, "reason": str(e) or type(e).__name__})
        else:
            self._send_json({"ok": True})

    def _send_json(self, value: Mapping[str, Any]) -> None:
        self._send(REPLY, json.dumps(value).encode())

    def _send(self, kind: bytes, data: bytes = b"") -> None:
        view = memoryview(data)
        with self.send_lock:
            while True:
                send_frame(self.conn, kind, view[:FRAME_MAX])
                view = view[FRAME_MAX:]
                if not view:
                    return

    def _pump(self) -> None:
        """The channel's output, exit status, EOF and close, in the order the client's reader
        expects: all output before EOF, the status as soon as it comes (a background process may
        hold the output open after it)."""
        chan = self.chan
        answer: Any = chan  # paramiko's: its event says the server answered the exec request
        status_sent = eof_sent = False
        try:
            while not self.stop.is_set():
                if self.asked and answer.event.is_set():
                    self.asked = False
                    if not answer.event_ready:  # the server refused to run it: say so as a closed channel
                        self._send(CLOSE, json.dumps({"reason": "the server refused the command"}).encode())
                        chan.close()
                        return
                # read first: what came before the close and the EOF (output, status) is buffered by
                # then; a close seen after the reads could hide what came in between
                closed = chan.closed
                eof = bool(chan.eof_received)
                if chan.recv_ready():
                    self._send(STDOUT, chan.recv(READ_SIZE))
                elif chan.recv_stderr_ready():
                    self._send(STDERR, chan.recv_stderr(READ_SIZE))
                elif not status_sent and chan.exit_status_ready():
                    self._send(STATUS, chan.exit_status.to_bytes(4, "big", signed=True))
                    status_sent = True
                elif eof and not eof_sent:
                    self._send(EOF)
                    eof_sent = True
                elif closed:
                    self._send(CLOSE, json.dumps({"reason": "the channel was closed"}).encode())
                    return
                elif eof_sent and status_sent:
                    self.stop.wait(0.1)  # only the close is to come
                elif eof:
                    chan.status_event.wait(0.2)  # EOF keeps the channel readable: select would spin
                else:
                    select.select([chan.fileno(), self.wake[0]], [], [], 0.5)
        except OSError:  # the run went away
            self.stop.set()


def _alive(chan: Channel) -> bool:
    return not (chan.closed or chan.eof_received or chan.exit_status_ready())


def _pipe(conn: socket.socket, chan: paramiko.Channel) -> None:
    """Raw bytes both ways until either side ends."""

    def up() -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(READ_SIZE):
                send_all(chan, data)
        chan.close()

    _thread(up)
    with contextlib.suppress(OSError):
        while data := chan.recv(READ_SIZE):
            conn.sendall(data)
    chan.close()
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# -- start ---------------------------------------------------------------------------------------


def _listen(path: Path) -> socket.socket:
    """The keeper's socket (0600 from the start: bound under a umask), replacing a stale one (we
    hold the lock: no keeper serves it)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    listener.listen(128)
    return listener


def _read_requests(path: Path) -> list[dict[str, Any]]:
    """The requests runs left for the keeper at `path` (kept.start_pending), their files removed."""
    asked: list[dict[str, Any]] = []
    for warm in sorted(path.parent.glob(f"{warm_prefix(path)}*.json")):
        with contextlib.suppress(OSError, ValueError):
            asked += json.loads(warm.read_text(encoding="utf-8"))
        warm.unlink(missing_ok=True)
    return asked


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0])
    with contextlib.suppress(OSError):
        if os.fstat(2).st_size > LOG_LIMIT:
            os.ftruncate(2, 0)
    deadline = time.monotonic() + LOCK_WAIT
    lock = take_lock(path)
    while lock is None:
        if reach(path) is not None or time.monotonic() > deadline:
            log(f"another keeper serves {path}: exits")  # it was told, or reads the requests when it listens
            return 0
        time.sleep(0.05)  # a run looking whether the socket is stale holds the lock a moment
        lock = take_lock(path)
    keeper = Keeper(path, _listen(path))
    signal.signal(signal.SIGTERM, keeper.stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: where each thread is, in the log
    log(f"serving {path}")
    # listening first: a run that writes its requests later finds the socket and tells it directly
    # (until their files are gone, `compute hosts --logout` waits: kept.logout)
    keeper.warm(None, {"requests": _read_requests(path)})
    keeper.serve()
    os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
