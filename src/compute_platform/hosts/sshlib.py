"""paramiko, imported once and as cheaply as possible, and known_hosts files parsed once per run.

paramiko imports `invoke` (which pulls in asyncio and unittest.mock: ~45 ms, a third of paramiko's
import time) only to run the commands of `Match exec` lines of an ssh config. Unless the user's
ssh config has such a line, paramiko is imported with `invoke` made unavailable, which paramiko
handles as an optional dependency.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from compute_platform.inventory import ssh_config_path

if TYPE_CHECKING:
    import paramiko

_import_lock = threading.Lock()
_MATCH_EXEC = re.compile(r"^\s*match\b.*\bexec\b", re.IGNORECASE | re.MULTILINE)

_known_lock = threading.Lock()
_known: dict[str, tuple[tuple[int, int], paramiko.HostKeys]] = {}  # path -> (mtime, size), keys


def load_paramiko() -> None:
    """Import paramiko (once, whichever thread asks first)."""
    with _import_lock:
        if "paramiko" in sys.modules:
            return
        if "invoke" in sys.modules or _config_runs_commands():
            import paramiko

            return
        sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` fails at once
        try:
            import paramiko  # noqa: F401
        finally:
            del sys.modules["invoke"]


def _config_runs_commands() -> bool:
    try:
        return _MATCH_EXEC.search(ssh_config_path().read_text(errors="replace")) is not None
    except OSError:
        return False


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
