"""The floor of scenarios A, F and G: the least a Python program can do to run one command on N
hosts with paramiko. One thread per host, TCP_NODELAY, the key loaded once, the bed's known_hosts
checked. With --jump, one connection to the jump host carries every host's (one channel each).

    python paramiko_floor.py [--jump HOST:PORT] KEY USER KNOWN_HOSTS TARGET...

A TARGET is a port on 127.0.0.1 or HOST:PORT.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

import paramiko


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def login(sock: Any, where: tuple[str, int], user: str, key: paramiko.PKey, known: paramiko.HostKeys) -> Any:
    """A paramiko Transport over `sock`, its host key checked and authenticated."""
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=10)
    if not known.check(known_name(*where), transport.get_remote_server_key()):
        transport.close()
        raise SystemExit(f"unknown host key for {known_name(*where)}")
    transport.auth_publickey(user, key)
    return transport


def tcp(where: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(where, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run_one(
    where: tuple[str, int],
    user: str,
    key: paramiko.PKey,
    known: paramiko.HostKeys,
    jump: Any,
    done: list[tuple[int, Any]],
) -> None:
    sock = tcp(where) if jump is None else jump.open_channel("direct-tcpip", where, ("127.0.0.1", 0))
    transport = login(sock, where, user, key, known)
    channel = transport.open_session()
    channel.exec_command("true")
    done.append((channel.recv_exit_status(), transport))


def close_all(transports: list[Any]) -> None:
    """Once every host has answered: a transport closed over a jump channel while others still
    talk can make paramiko send on a channel sshd has freed, and sshd then drops the whole jump
    connection ("data packet referred to nonexistent channel")."""
    for transport in transports:
        transport.close()


def main() -> int:
    args = sys.argv[1:]
    jump_at = None
    if args[0] == "--jump":
        jump_at, args = address(args[1]), args[2:]
    key_path, user, known_hosts, *targets = args
    key = paramiko.Ed25519Key.from_private_key_file(key_path)
    known = paramiko.HostKeys(known_hosts)
    jump = login(tcp(jump_at), jump_at, user, key, known) if jump_at else None
    done: list[tuple[int, Any]] = []
    threads = [
        threading.Thread(target=run_one, args=(address(t), user, key, known, jump, done)) for t in targets
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close_all([transport for _, transport in done] + ([jump] if jump is not None else []))
    return 0 if [code for code, _ in done] == [0] * len(targets) else 1


if __name__ == "__main__":
    sys.exit(main())
