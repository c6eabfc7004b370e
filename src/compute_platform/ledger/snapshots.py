"""The code snapshots of the archive (`archive/code/`), owned here like every file of the archive:

  code/<hash>.tar.gz   the snapshot's files, exactly as they were sent (what `compute code --diff` reads)
  code/<hash>.json     its manifest: where it came from, the git commit, each file's hash and mode
  code/<hash>.diff     the uncommitted changes against that commit, as `git diff` shows them
  code/sent.csv        which host got which snapshot, where, when (appended under the ledger's lock)

A snapshot is written once, under a temporary name renamed in place: its name is its content's hash.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_platform.errors import LedgerError
from compute_platform.ledger.records import now, write_whole
from compute_platform.ledger.store import Ledger

FOLDER = "code"
SENT = "sent.csv"
SENT_COLUMNS = ["at", "host", "code_dir", "hash"]


@dataclass(frozen=True)
class Stored:
    """A snapshot as the archive keeps it."""

    digest: str
    manifest: dict[str, Any]  # {"source", "commit", "dirty", "files": {path: [sha256, mode]}}

    @property
    def files(self) -> dict[str, tuple[str, int]]:
        return {path: (entry[0], int(entry[1])) for path, entry in self.manifest.get("files", {}).items()}


def folder(ledger: Ledger) -> Path:
    return ledger.root / FOLDER


def store(ledger: Ledger, digest: str, manifest: dict[str, Any], tarball: bytes, diff: str) -> None:
    """Keep a snapshot (once: an existing one is the same content)."""
    where = folder(ledger)
    if (where / f"{digest}.json").exists():
        return
    try:
        where.mkdir(parents=True, exist_ok=True)
        write_whole(where / f"{digest}.tar.gz", tarball)
        write_whole(where / f"{digest}.diff", diff.encode())
        write_whole(where / f"{digest}.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    except OSError as e:
        raise LedgerError(f"cannot keep the code snapshot in {where}: {e.strerror or e}") from e


def load(ledger: Ledger, digest: str) -> Stored | None:
    try:
        manifest = json.loads((folder(ledger) / f"{digest}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Stored(digest, manifest) if isinstance(manifest, dict) else None


def tarball(ledger: Ledger, digest: str) -> Path:
    return folder(ledger) / f"{digest}.tar.gz"


def diff(ledger: Ledger, digest: str) -> str:
    try:
        return (folder(ledger) / f"{digest}.diff").read_text(encoding="utf-8")
    except OSError:
        return ""


def sent(ledger: Ledger, host: str, code_dir: str, digest: str) -> None:
    """Record that `host` holds the snapshot under `code_dir`."""
    path = folder(ledger) / SENT
    with ledger.locked():
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            if new:
                writer.writerow(SENT_COLUMNS)
            writer.writerow([now(), host, code_dir, digest])
            f.flush()
            os.fsync(f.fileno())


def sent_to(ledger: Ledger, host: str, code_dir: str) -> list[str]:
    """The snapshots sent to this host's `code_dir`, latest first."""
    return list(
        dict.fromkeys(
            r["hash"] for r in _sent(ledger, host) if r.get("code_dir") == code_dir and r.get("hash")
        )
    )


def sent_dirs(ledger: Ledger, host: str, digest: str) -> list[str]:
    """The code folders of this host that the snapshot was sent to, latest first."""
    return list(
        dict.fromkeys(
            r["code_dir"] for r in _sent(ledger, host) if r.get("hash") == digest and r.get("code_dir")
        )
    )


def sent_since(ledger: Ledger, since: str, digests: set[str]) -> list[tuple[str, str, str]]:
    """(host, code_dir, hash) of the sends of these snapshots recorded at `since` (now()) or later."""
    try:
        with open(folder(ledger) / SENT, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    return [
        (r.get("host", ""), r.get("code_dir", ""), r.get("hash", ""))
        for r in rows
        if r.get("at", "") >= since and r.get("hash") in digests
    ]


def _sent(ledger: Ledger, host: str) -> list[dict[str, str]]:
    """The rows of sent.csv about this host, latest first."""
    try:
        with open(folder(ledger) / SENT, newline="", encoding="utf-8") as f:
            return [r for r in reversed(list(csv.DictReader(f))) if r.get("host") == host]
    except FileNotFoundError:
        return []


def places(ledger: Ledger) -> list[tuple[str, str]]:
    """(host, code_dir) of every place a snapshot was sent to."""
    try:
        with open(folder(ledger) / SENT, newline="", encoding="utf-8") as f:
            return list(dict.fromkeys((r.get("host", ""), r.get("code_dir", "")) for r in csv.DictReader(f)))
    except FileNotFoundError:
        return []
