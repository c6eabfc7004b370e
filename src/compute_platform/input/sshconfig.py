"""~/.ssh/config, read here only: where it is, the host names it defines, the settings it gives a host
(paramiko's SSHConfig, which reads it as OpenSSH does), and importing paramiko as cheaply as it allows.

paramiko imports `invoke` (which pulls in asyncio and unittest.mock: ~45 ms, a third of paramiko's
import time) only to run the commands of `Match exec` lines of an ssh config. Unless the user's
ssh config has such a line, paramiko is imported with `invoke` made unavailable, which paramiko
handles as an optional dependency.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compute_platform.errors import HostError

_import_lock = threading.Lock()
_MATCH_EXEC = re.compile(r"^\s*match\b.*\bexec\b", re.IGNORECASE | re.MULTILINE)


def ssh_config_path() -> Path:
    return Path(os.environ.get("COMPUTE_SSH_CONFIG", "~/.ssh/config")).expanduser()


def ssh_config_hosts() -> set[str]:
    """Literal (non-pattern) Host names of the user's ~/.ssh/config. Read without paramiko: an
    unknown alias is looked up here while a playbook is checked, which must stay quick."""
    path = ssh_config_path()
    names: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return names
    for raw in text.splitlines():
        parts = raw.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "host":
            names.update(n for n in parts[1].split() if not any(c in n for c in "*?!"))
    return names


def lookup(name: str, alias: str) -> dict[str, Any]:
    """The ~/.ssh/config settings for host `name` (empty without a config file); errors name `alias`."""
    path = ssh_config_path()
    if not path.exists():
        return {}
    load_paramiko()
    import paramiko

    try:
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(name))
    except Exception as e:  # paramiko raises several types for bad configs
        raise HostError(alias, f"cannot read {path}: {e}") from e


def proxy_jump(given: str | None, settings: Mapping[str, Any]) -> str | None:
    """The jump hosts on the way to a host: those `given` in hosts.yaml, else its ~/.ssh/config
    `settings`' ProxyJump; `none` (as OpenSSH spells it) for none."""
    jump = given or settings.get("proxyjump")
    if jump and jump.lower() == "none":
        return None
    return jump


def load_paramiko() -> None:
    """Import paramiko (once, whichever thread asks first)."""
    with _import_lock:
        if "paramiko" in sys.modules:
            return
        if "invoke" in sys.modules or _runs_commands():
            import paramiko

            return
        sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` fails at once
        try:
            import paramiko  # noqa: F401
        finally:
            del sys.modules["invoke"]


def _runs_commands() -> bool:
    try:
        return _MATCH_EXEC.search(ssh_config_path().read_text(errors="replace")) is not None
    except OSError:
        return False
