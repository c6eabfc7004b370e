"""The fabric peer: `group` runs one command on every host with a ThreadingGroup (scenario A/F);
`serial` runs each line of a file as its own command on the first host, in order (scenario B).

    python fabric_peer.py group|serial KEY USER KNOWN_HOSTS COMMAND_OR_FILE PORT...

Fabric's defaults otherwise (no TCP_NODELAY: paramiko does not set it and fabric does not either).
"""

from __future__ import annotations

import sys
from pathlib import Path

import paramiko
from fabric import Config, Connection, ThreadingGroup


def connection(port: str, user: str, key: str, known_hosts: str) -> Connection:
    config = Config(overrides={"load_ssh_configs": False})
    conn = Connection(
        "127.0.0.1", user=user, port=int(port), config=config, connect_kwargs={"key_filename": key}
    )
    conn.client.load_host_keys(known_hosts)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def main() -> int:
    mode, key, user, known_hosts, what, *ports = sys.argv[1:]
    conns = [connection(port, user, key, known_hosts) for port in ports]
    if mode == "group":
        results = ThreadingGroup.from_connections(conns).run(what, hide=True)
        return 0 if all(r.ok for r in results.values()) else 1
    with conns[0] as conn:
        for line in Path(what).read_text().splitlines():
            conn.run(line, hide=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
