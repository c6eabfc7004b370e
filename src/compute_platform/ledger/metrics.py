"""The jobs' metrics as fetched from their hosts (`archive/metrics/`), owned here like every file of the
archive:

  metrics/<host>/<job id>.<seed position>.jsonl   the bytes of the job's COMPUTE_METRICS file fetched so far,
                                                  a prefix of it (appended as more is fetched)
  metrics/<host>/<job id>.<seed position>.file    the same of the file the program writes anyway (`metrics.file`)
  metrics/<host>/<job id>.<seed position>.log     the matches of `metrics.from_log` in the seed's output
  metrics/<host>/<job id>.done                    the job had ended and everything was fetched: it is never
                                                  asked again
  metrics/<host>/<job id>.usage.json              what sacct said an ended Slurm job used
  metrics/<host>/<job id>.summary.json            a done job's last, least and greatest value of each metric
                                                  per seed (what `compute results` shows, read at once)

Derived: deleted, it is fetched again from the hosts (while their files are there).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from compute_platform.ledger.records import JobRecord, safe_name, write_whole
from compute_platform.ledger.store import Ledger

FOLDER = "metrics"


def local(ledger: Ledger, record: JobRecord, seed: int | None, kind: str = "jsonl") -> Path:
    name = f"{safe_name(record.job_id)}.{seed if seed is not None else 'all'}.{kind}"
    return ledger.root / FOLDER / safe_name(record.host) / name


def fetched(ledger: Ledger, record: JobRecord, seed: int | None, kind: str = "jsonl") -> int:
    """How many bytes of the job's file are here."""
    try:
        return local(ledger, record, seed, kind).stat().st_size
    except OSError:
        return 0


def append(ledger: Ledger, record: JobRecord, seed: int | None, data: bytes, kind: str = "jsonl") -> None:
    path = local(ledger, record, seed, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)


def replace(ledger: Ledger, record: JobRecord, seed: int | None, data: bytes, kind: str) -> None:
    """Write what was found again, whole (the matches of a seed's output, looked for again each time)."""
    write_whole(local(ledger, record, seed, kind), data)


def read(ledger: Ledger, record: JobRecord, seed: int | None, kind: str = "jsonl") -> bytes:
    try:
        return local(ledger, record, seed, kind).read_bytes()
    except OSError:
        return b""


def _done_path(ledger: Ledger, record: JobRecord) -> Path:
    return _job_file(ledger, record, "done")


def is_done(ledger: Ledger, record: JobRecord) -> bool:
    return _done_path(ledger, record).exists()


def mark_done(ledger: Ledger, record: JobRecord) -> None:
    path = _done_path(ledger, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)


def summary(ledger: Ledger, record: JobRecord) -> list[dict[str, list[float]]] | None:
    found = _load(_job_file(ledger, record, "summary.json"))
    return found if isinstance(found, list) else None


def keep_summary(ledger: Ledger, record: JobRecord, seeds: list[Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only archive: computed again next time
        write_whole(_job_file(ledger, record, "summary.json"), json.dumps(seeds).encode())


def usage(ledger: Ledger, record: JobRecord) -> dict[str, Any] | None:
    """What accounting said the ended job used (compute results), None when it was not asked or did not say."""
    found = _load(_job_file(ledger, record, "usage.json"))
    return found if isinstance(found, dict) else None


def keep_usage(ledger: Ledger, record: JobRecord, found: dict[str, Any]) -> None:
    write_whole(_job_file(ledger, record, "usage.json"), json.dumps(found).encode())


def _job_file(ledger: Ledger, record: JobRecord, suffix: str) -> Path:
    return ledger.root / FOLDER / safe_name(record.host) / f"{safe_name(record.job_id)}.{suffix}"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
