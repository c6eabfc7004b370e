"""known_hosts files parsed once per run (paramiko itself is imported by sshconfig.load_paramiko)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

_known_lock = threading.Lock()
_known: dict[str, tuple[tuple[int, int], paramiko.HostKeys]] = {}  # path -> (mtime, size), keys


def known_hosts(path: Path) -> paramiko.HostKeys:
    """The parsed known_hosts file at `path` (empty when missing), shared by the hosts of a run
    until the file changes: parsing builds a key object per line, per host otherwise.
    Raises OSError or paramiko.SSHException for an unreadable file. Do not modify the result."""
    import paramiko

    try:
        stat = path.stat()
    except FileNotFoundError:
        return paramiko.HostKeys()
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _known_lock:
        cached = _known.get(str(path))
        if cached is None or cached[0] != stamp:
            keys = paramiko.HostKeys()
            keys.load(str(path))
            cached = _known[str(path)] = (stamp, keys)
        return cached[1]
