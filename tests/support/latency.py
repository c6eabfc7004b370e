"""A far network in user space: TCP relays that hold every chunk for a fixed delay each way.

A relay listens on one address and forwards each connection to its target. Every chunk read from
one side is written to the other `delay` seconds after it arrived, in order: each direction has a
queue of (release time, chunk), so chunks in flight do not wait for one another and a burst costs
one delay, not one per write. A request and its answer therefore cost 2 x delay (the round trip,
RTT), whatever else is in flight. There is no bandwidth limit and no loss.

TCP's own handshake is emulated too: the relay connects to its target 3 x delay after it accepted
(SYN, SYN-ACK, ACK: when the server would see the connection), so the first answer of a new
connection comes 2 round trips after `connect()`, as over a real link with that delay.

Relays can listen and connect inside network namespaces (`ip netns` names, root only): a socket
belongs to the namespace of the thread that made it, so each one is made by a short-lived thread
that entered the namespace first. One event loop, on a thread of this process, serves every relay
of a `Network`.

Each connection counts its round trips as the relay sees them (`Connection.turns`): one for TCP's
handshake, then one each time the relay delivers an answer to a client that spoke since the
previous answer. Data the client sends without waiting (pipelined) costs no turn; a multiplexed
connection (a jump host's, carrying several sessions) counts more turns than its longest session
waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
CHUNK = 65536
Address = tuple[str, int]


def socket_in(netns: str | None) -> socket.socket:
    """A TCP socket in network namespace `netns` (None: this process's own)."""
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    thread = threading.Thread(target=make, name=f"netns {netns}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


@dataclass
class Connection:
    """One connection through a relay, as the relay saw it."""

    relay: str
    opened: float  # time.monotonic()
    turns: int = 1  # TCP's handshake, then one per answer to a client that spoke since the last one
    sent: int = 0  # bytes from the client to the target
    received: int = 0  # bytes from the target to the client
    closed: float | None = None
    asked: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class Relay:
    name: str
    listen: Address  # where it was bound (the port filled in when 0 was asked)
    target: Address
    delay: float
    netns: str | None


class Network:
    """Relays served by one event loop on a background thread; a context manager that closes them."""

    def __init__(self) -> None:
        self.relays: dict[str, Relay] = {}
        self.connections: list[Connection] = []  # every connection so far, in the order they opened
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relays", daemon=True)
        self._thread.start()

    def add(
        self, name: str, listen: Address, target: Address, delay: float, netns: str | None = None
    ) -> Relay:
        """Start relay `name`: listen on `listen` (port 0: any free one) and forward to `target`,
        both in `netns`, holding every chunk `delay` seconds each way. Returns once it listens."""
        future = asyncio.run_coroutine_threadsafe(self._serve(name, listen, target, delay, netns), self._loop)
        relay = future.result(timeout=30)
        self.relays[name] = relay
        return relay

    def open_connections(self) -> int:
        return sum(1 for c in self.connections if c.closed is None)

    def close(self) -> None:
        """Stop listening, cut every connection, stop the loop's thread."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the loop's thread ----------------------------------------------------------------

    async def _serve(
        self, name: str, listen: Address, target: Address, delay: float, netns: str | None
    ) -> Relay:
        sock = socket_in(netns)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(listen)
            sock.listen(256)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        relay = Relay(name, sock.getsockname()[:2], target, delay, netns)

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._relay(relay, reader, writer)
            except asyncio.CancelledError:
                pass  # closing the network: the connection is cut, nothing to report
            finally:
                self._tasks.discard(task)

        self._servers.append(await asyncio.start_server(accepted, sock=sock))
        return relay

    async def _relay(
        self, relay: Relay, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        conn = Connection(relay.name, time.monotonic())
        self.connections.append(conn)
        up: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        down: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        writers = [client_w]
        # the client may speak at once (its connect() returned at once): queue it meanwhile
        pumps = [asyncio.ensure_future(_read(client_r, up, relay.delay, conn, from_client=True))]
        try:
            await asyncio.sleep(3 * relay.delay)  # SYN, SYN-ACK, ACK: now the server would see it
            sock = socket_in(relay.netns)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, relay.target)
            except OSError:
                sock.close()
                return  # the client sees its connection closed, as after a refusal
            server_r, server_w = await asyncio.open_connection(sock=sock)
            writers.append(server_w)
            for writer in writers:
                _no_delay(writer)
            pumps += [
                asyncio.ensure_future(_write(up, server_w, conn, to_client=False)),
                asyncio.ensure_future(_read(server_r, down, relay.delay, conn, from_client=False)),
                asyncio.ensure_future(_write(down, client_w, conn, to_client=True)),
            ]
            # done when both directions have delivered their end, or when one side broke
            with contextlib.suppress(OSError):
                await asyncio.gather(*pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in writers:
                writer.close()
            conn.closed = time.monotonic()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # the transports close their sockets on the loop's next turns: a socket left open would
        # keep its network namespace (and the namespace's links) alive after `ip netns delete`
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0.05)


async def _read(
    reader: asyncio.StreamReader,
    queue: asyncio.Queue[tuple[float, bytes]],
    delay: float,
    conn: Connection,
    from_client: bool,
) -> None:
    """Queue every chunk with its release time; b"" (the end) last, also when the side broke."""
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(CHUNK):
            if from_client:
                conn.asked = True
                conn.sent += len(data)
            else:
                conn.received += len(data)
            queue.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    queue.put_nowait((loop.time() + delay, b""))


async def _write(
    queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, conn: Connection, to_client: bool
) -> None:
    """Write each chunk once its time has come; at the end, pass the end on (half-close)."""
    loop = asyncio.get_running_loop()
    while True:
        release, data = await queue.get()
        wait = release - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if not data:
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
            return
        writer.write(data)
        await writer.drain()
        if to_client and conn.asked:
            conn.turns += 1
            conn.asked = False


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextlib.contextmanager
def relay(target: Address, delay: float, listen: Address = ("127.0.0.1", 0)) -> Iterator[Relay]:
    """One relay on loopback, for the length of a `with` block."""
    with Network() as network:
        yield network.add("relay", listen, target, delay)
