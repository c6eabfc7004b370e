"""The floor of scenarios A and F: the least a Python program can do to run one command on N hosts
with paramiko. One thread per host, TCP_NODELAY, the key loaded once, the bed's known_hosts checked.

    python paramiko_floor.py KEY USER KNOWN_HOSTS PORT...
"""

from __future__ import annotations

import socket
import sys
import threading

import paramiko


def run_one(port: int, user: str, key: paramiko.PKey, known: paramiko.HostKeys, codes: list[int]) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        server_key = transport.get_remote_server_key()
        if not known.check(f"[127.0.0.1]:{port}", server_key):
            raise SystemExit(f"unknown host key on port {port}")
        transport.auth_publickey(user, key)
        channel = transport.open_session()
        channel.exec_command("true")
        codes.append(channel.recv_exit_status())
    finally:
        transport.close()


def main() -> int:
    key_path, user, known_hosts, *ports = sys.argv[1:]
    key = paramiko.Ed25519Key.from_private_key_file(key_path)
    known = paramiko.HostKeys(known_hosts)
    codes: list[int] = []
    threads = [threading.Thread(target=run_one, args=(int(port), user, key, known, codes)) for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0 if codes == [0] * len(ports) else 1


if __name__ == "__main__":
    sys.exit(main())
