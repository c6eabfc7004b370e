"""Reference ("golden") files: rendered text is compared with a file kept in the repository.

After a deliberate change, rewrite the files with `COMPUTE_REGEN_GOLDEN=1 pytest <test module>` and
review the diff before committing it."""

from __future__ import annotations

import os
from pathlib import Path

REGEN = "COMPUTE_REGEN_GOLDEN"


def regenerating() -> bool:
    return os.environ.get(REGEN) == "1"


def check_golden(path: Path, text: str, *, stale: str | None = None) -> None:
    """`text` is exactly the content of `path`; with COMPUTE_REGEN_GOLDEN=1 the file is written first.
    `stale` replaces the default advice of the failure message (how to bring the file up to date)."""
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    advice = stale or f"run with {REGEN}=1 to rewrite it, then review the diff"
    assert path.exists(), f"no reference file {path}: {advice}"
    assert text == path.read_text(encoding="utf-8"), f"{path} is stale: {advice}"
