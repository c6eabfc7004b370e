"""The settings of the hosts files already read, kept validated: reading one again (every `compute
jobs`, `logs`, `cancel` after a run) needs neither ruamel nor pydantic, ~130 ms of a command whose
answer, through a kept connection, takes one round trip.

One JSON file per hosts file and text, named by the sha256 of its absolute path, its text and what
validated it (compute's version, the validating modules' sizes and times: a development checkout
changes them), in `$XDG_CACHE_HOME/compute/hosts` (`~/.cache/compute/hosts`). hosts.yaml may hold
secrets (`env`) and says what runs on every host (`init`), so the folder and its files are the
user's alone: a folder or file that another user could have written is not read, and is never
written into. Files are written whole (a temporary file renamed), the least recently read removed
beyond KEEP; anything unreadable is read as absent, and the file is validated again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from compute_platform import __version__
from compute_platform.errors import Position
from compute_platform.input.spec import HostSpec

FORMAT = 1
KEEP = 64

Found = tuple[dict[str, HostSpec], dict[str, Position]]


def folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "compute" / "hosts"


def entry_name(path: Path, text: str) -> str:
    digest = hashlib.sha256()
    for part in (str(FORMAT), __version__, _code_stamp(), str(path.resolve()), text):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest() + ".json"


def _code_stamp() -> str:
    here = Path(__file__).parent
    names = ("spec.py", "models.py", "inventory.py", "yamlfile.py", "settings_cache.py")
    marks = (os.stat(here / name) for name in names)
    return ",".join(f"{m.st_size}:{m.st_mtime_ns}" for m in marks)


def read(path: Path, text: str) -> Found | None:
    """The hosts and positions kept for `path` holding `text`; None when there are none to trust."""
    try:
        where = folder()
        if not _ours(os.stat(where)):
            return None
        fd = os.open(where / entry_name(path, text), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as file:
            if not _ours(os.fstat(file.fileno())):
                return None
            kept = json.loads(file.read())
            os.utime(file.fileno())  # read recently: pruned last
        hosts = {alias: HostSpec.from_settings(values) for alias, values in kept["hosts"].items()}
        positions = {alias: Position(*where_) for alias, where_ in kept["positions"].items()}
        return hosts, positions
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(path: Path, text: str, hosts: dict[str, HostSpec], positions: dict[str, Position]) -> None:
    """Keep what validating `text` gave; a cache that cannot be written is no error."""
    kept = {
        "hosts": {alias: spec.settings() for alias, spec in hosts.items()},
        "positions": {alias: [p.file, p.line, p.column] for alias, p in positions.items()},
    }
    with contextlib.suppress(OSError, TypeError, ValueError):
        where = folder()
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _ours(os.stat(where)):
            return
        fd, temporary = tempfile.mkstemp(dir=where, prefix=".", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(kept, file)
            os.replace(temporary, where / entry_name(path, text))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _prune(where)


def _ours(mark: os.stat_result) -> bool:
    """Owned by this user, and writable by no one else."""
    return mark.st_uid == os.getuid() and not mark.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _prune(where: Path) -> None:
    entries = sorted(where.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-KEEP]:
        with contextlib.suppress(OSError):
            old.unlink()
