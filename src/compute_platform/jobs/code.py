"""`compute code`: what a job ran (its snapshot: the commit, the uncommitted changes, the files), the
difference with the working tree now, and the cleaning of snapshots no open job needs."""

from __future__ import annotations

import difflib
import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from compute_platform.errors import ComputeError, InputError
from compute_platform.jobs.query import Jobs
from compute_platform.ledger import JobRecord, snapshots

DIFF_LINES = 4000  # of the working tree's difference shown at most


def describe(view: Jobs, record: JobRecord) -> list[str]:
    """What the job ran, then the snapshot's own changes against its commit."""
    stored = _stored(view, record)
    manifest = stored.manifest
    commit = manifest.get("commit") or "(no commit)"
    dirty = " with uncommitted changes (below)" if manifest.get("dirty") else ""
    lines = [
        f"job {record.job_id} on {record.host} ran code {stored.digest}: {len(stored.files)} files",
        f"from {manifest.get('source')} at {manifest.get('root')}, commit {commit}{dirty}",
    ]
    text = snapshots.diff(view.ledger, stored.digest)
    return [*lines, "", text.rstrip("\n")] if text.strip() else lines


def against_now(view: Jobs, record: JobRecord, root: Path | None = None) -> list[str]:
    """The snapshot the job ran against the same files now (its root, or `root`), as a unified diff."""
    stored = _stored(view, record)
    here = root or Path(str(stored.manifest.get("root", "")))
    if not here.is_dir():
        raise InputError(f"the snapshot's folder {here} is not here any more: give it with --root DIR")
    with tarfile.open(snapshots.tarball(view.ledger, stored.digest)) as tar:
        then = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]
    out: list[str] = [f"new since: {name}" for name in _new_files(stored, here, then)]
    for name in sorted(then):
        now_path = here / name
        old = then.get(name)
        new = now_path.read_bytes() if now_path.is_file() else None
        if old == new:
            continue
        if new is None:
            out.append(f"deleted since: {name}")
            continue
        a, b = _text(old or b""), _text(new)
        if a is None or b is None:
            out.append(f"binary file changed: {name}")
            continue
        out += difflib.unified_diff(a, b, f"job/{name}", f"now/{name}", lineterm="")
    if len(out) > DIFF_LINES:
        out = [*out[:DIFF_LINES], f"... {len(out) - DIFF_LINES} more lines"]
    return out or [f"the files of code {stored.digest} are as they are now in {here}"]


def clean(
    view: Jobs, host: str | None, dry_run: bool, waiting: Callable[[str], None] | None = None
) -> list[str]:
    """Remove, on each host that got snapshots, those no open job runs; one line per snapshot. Not
    while jobs are resubmitted (`waiting` is told): one whose snapshot is put back has no row yet
    that says it is open."""
    with view.ledger.resubmitting(waiting):
        return _clean(view, host, dry_run)


def _clean(view: Jobs, host: str | None, dry_run: bool) -> list[str]:
    from compute_platform.jobs.query import FINAL
    from compute_platform.scheduling import code

    needed: dict[str, set[str]] = {}
    open_rows = [r for r in view.ledger.open_records() if r.code]
    for row in view.rows(open_rows):  # asks the hosts: a job that ended since is not open any more
        if row.state.state not in FINAL:
            needed.setdefault(row.record.host, set()).add(row.record.code)
    lines: list[str] = []
    for alias, code_dir, hosts_file in _places(view, host):
        keep = sorted(needed.get(alias, set()))
        if dry_run:
            lines.append(f"{alias}: would remove the snapshots of {code_dir} but {', '.join(keep) or 'none'}")
            continue
        try:
            result = view.host(hosts_file, alias).run(
                code.clean_script(code_dir, keep), timeout=300, check=True
            )
        except ComputeError as e:
            lines.append(f"{alias}: {e.about(alias)}")
            continue
        removed = result.stdout.split()
        lines.append(
            f"{alias}: removed {len(removed)} snapshot(s) from {code_dir}"
            + (f": {', '.join(removed)}" if removed else "")
        )
    return lines


def _places(view: Jobs, host: str | None) -> list[tuple[str, str, str]]:
    """(host, code_dir, hosts file) of every place snapshots were sent to."""
    found: dict[tuple[str, str], str] = {}
    recorded = {r.host: r.hosts_file for r in view.ledger.open_records()}
    for alias, code_dir in snapshots.places(view.ledger):
        if host in (None, alias):
            found.setdefault((alias, code_dir), recorded.get(alias, ""))
    return [(alias, code_dir, hosts_file) for (alias, code_dir), hosts_file in found.items()]


def _new_files(stored: snapshots.Stored, here: Path, then: dict[str, bytes]) -> list[str]:
    """A git snapshot's repository: the files there now (as git lists them) that the snapshot lacks."""
    if stored.manifest.get("source") != "git":
        return []
    import subprocess

    proc = subprocess.run(
        ["git", "-C", str(here), "ls-files", "-z", "-c", "-o", "--exclude-standard"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = [n for n in proc.stdout.split("\0") if n and (here / n).is_file()]
    return sorted(n for n in names if n not in then and n not in stored.files)


def _stored(view: Jobs, record: JobRecord) -> snapshots.Stored:
    if not record.code:
        raise InputError(f"job {record.job_id} ran no code snapshot (its task has no `code:`)")
    stored = snapshots.load(view.ledger, record.code)
    if stored is None:
        raise InputError(
            f"code {record.code} of job {record.job_id} is not in {snapshots.folder(view.ledger)}"
        )
    return stored


def _text(data: bytes) -> Sequence[str] | None:
    if b"\0" in data[:8192]:
        return None
    return io.StringIO(data.decode("utf-8", "replace")).read().splitlines()
