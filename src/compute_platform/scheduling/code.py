"""Code snapshots (a task's `code:`): the files jobs run, packed once per run on this machine and named
by their content's hash, sent to `<code_dir>/<hash>/` on each host, where the jobs start. A job then
runs the code it was submitted with, whatever changes later on either side; its resubmissions,
requeues and retries too (their archived script names the snapshot).

Per host and run: one round trip says whether the host has the snapshot (then nothing is sent) and
which earlier ones it has; a second one sends what it lacks: only the files that changed since an
earlier snapshot it holds (the others are hard links into that one), else everything. A job submitted
again finds its snapshot there even after `compute code --clean`: `restore` sends the archive's copy back.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compute_platform.errors import CommandFailed, TaskError
from compute_platform.hosts import shell

if TYPE_CHECKING:
    from compute_platform.hosts import Host
    from compute_platform.ledger import Ledger
    from compute_platform.scheduling.sweep import CodeSource

DIGEST = re.compile(r"[0-9a-f]{8,64}")  # a snapshot's name (its content's hash)
COMPLETE = ".compute-complete"  # written last: a snapshot folder without it is not one
REMOVE = ".compute-remove"  # in a delta: the files of the earlier snapshot that are not this one's
ALWAYS_LEFT_OUT = (".git",)
BASES = 5  # earlier snapshots a host is asked about, latest first
HAVE, MISSING, BASE, WHERE = (
    "compute-code-have",
    "compute-code-missing",
    "compute-code-base ",
    "compute-code-at ",
)


@dataclass(frozen=True)
class Snapshot:
    digest: str
    root: Path
    files: dict[str, tuple[str, int]]  # relative path -> (sha256 of the content, mode)
    source: str  # "git" or the folder
    commit: str = ""
    dirty: bool = False
    diff: str = ""  # against `commit`: what the snapshot has that the commit has not

    def manifest(self) -> dict[str, object]:
        return {
            "source": self.source,
            "root": str(self.root),
            "commit": self.commit,
            "dirty": self.dirty,
            "files": {path: list(entry) for path, entry in sorted(self.files.items())},
        }

    def size(self, paths: Sequence[str] | None = None) -> int:
        return sum((self.root / p).lstat().st_size for p in (self.files if paths is None else paths))


def pack(source: CodeSource, playbook: Path, leave_out: Sequence[Path] = ()) -> Snapshot:
    """The snapshot a task's `code:` names, read from this machine's files now; `leave_out`: folders
    never in it (the archive: a snapshot holding the archive would grow with every run)."""
    base = playbook.resolve().parent
    if source.git:
        root = Path(_git(base, "rev-parse", "--show-toplevel").strip())
        names = [n for n in _git(root, "ls-files", "-z", "-c", "-o", "--exclude-standard").split("\0") if n]
        commit = _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip()
        diff = _worktree_diff(root, commit)
        label = "git"
    else:
        root = (base / (source.path or ".")).resolve()
        if not root.is_dir():
            raise TaskError(f"code: {source.path} is not a folder (from {base})")
        names = [
            str(p.relative_to(root)) for p in sorted(root.rglob("*")) if not p.is_dir() or p.is_symlink()
        ]
        commit, diff, label = "", "", str(root)
    files = {}
    skipped = [f"{p.resolve().relative_to(root)}/" for p in leave_out if p.resolve().is_relative_to(root)]
    for name in sorted(set(names)):
        path = root / name
        if _left_out(name, (*source.exclude, *skipped)) or not (path.is_file() or path.is_symlink()):
            continue  # a tracked file deleted in the working tree, a folder, a device...
        files[name] = (_hash(path), _mode(path))
    text = json.dumps(sorted(files.items()), separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return Snapshot(digest, root, files, label, commit, bool(diff.strip()), diff)


def _left_out(name: str, exclude: Sequence[str]) -> bool:
    parts = name.split("/")
    if any(part in ALWAYS_LEFT_OUT for part in parts[:-1]) or parts[-1] in ALWAYS_LEFT_OUT:
        return True
    for pattern in exclude:
        bare = pattern.rstrip("/")
        if fnmatch.fnmatch(name, bare) or any(fnmatch.fnmatch(part, bare) for part in parts[:-1]):
            return True
        if not pattern.endswith("/") and fnmatch.fnmatch(parts[-1], bare):
            return True
        if pattern.endswith("/") and (name + "/").startswith(pattern):
            return True
    return False


def _hash(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mode(path: Path) -> int:
    return 0o777 if path.is_symlink() else (0o755 if path.stat().st_mode & 0o100 else 0o644)


def _git(folder: Path, *args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TaskError(f"code: git: {e}") from e
    if check and proc.returncode != 0:
        said = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise TaskError(f"code: git: the playbook is not in a git repository ({folder}): {said[0]}")
    return proc.stdout


def _worktree_diff(root: Path, commit: str) -> str:
    """The uncommitted changes, untracked files included, against `commit`: through an index of our own,
    so that the user's staging area is left as it is."""
    with tempfile.TemporaryDirectory(prefix="compute-index-") as folder:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(folder) / "index")}

        def git(*args: str) -> str:
            proc = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, timeout=60
            )
            return proc.stdout

        if commit:
            git("read-tree", commit)
        git("add", "-A")
        return (
            git("diff", "--cached", "--binary", commit)
            if commit
            else git("diff", "--cached", "--binary", "--root")
        )


def tarball(snapshot: Snapshot, paths: Sequence[str] | None = None, remove: Sequence[str] = ()) -> bytes:
    """The files (all, or `paths`) as a gzip tar, the same bytes for the same files (no times, owners);
    `remove`: the earlier snapshot's files to drop, in REMOVE."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for name in sorted(snapshot.files if paths is None else paths):
            path = snapshot.root / name
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = snapshot.files[name][1]
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
        if remove:
            data = "".join(f"{name}\0" for name in remove).encode()
            info = tarfile.TarInfo(REMOVE)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class Placed:
    """A snapshot on a host: where, and what it cost to put it there."""

    path: str  # absolute on the host
    sent: int  # bytes sent (0: it was there)
    files: int  # files sent
    base: str = ""  # the earlier snapshot the others are linked from


def ensure(host: Host, ledger: Ledger, snapshot: Snapshot, code_dir: str) -> Placed:
    """Put the snapshot on the host unless it has it (one round trip when it does)."""
    from compute_platform.ledger import snapshots

    known = [d for d in snapshots.sent_to(ledger, host.alias, code_dir) if d != snapshot.digest][:BASES]
    where, have, bases = _probe(host, code_dir, snapshot.digest, known)
    path = f"{where.rstrip('/')}/{snapshot.digest}"
    if have:
        return Placed(path, 0, 0)
    base = next((snapshots.load(ledger, b) for b in bases if snapshots.load(ledger, b)), None)
    if base is None:
        paths, remove = list(snapshot.files), []
    else:
        old = base.files
        paths = [p for p, entry in snapshot.files.items() if old.get(p) != entry]
        remove = [p for p in old if p not in snapshot.files or old[p] != snapshot.files[p]]
    data = tarball(snapshot, paths, remove)
    _send(host, code_dir, where, snapshot.digest, data, base.digest if base else "")
    return Placed(path, len(data), len(paths), base.digest if base else "")


def restore(host: Host, ledger: Ledger, digests: Sequence[str]) -> list[Placed]:
    """Before jobs are submitted again (`compute resubmit`, a retry): put back on the host each of
    their snapshots it no longer has (`compute code --clean` removed it), from the archive's copy,
    in every code folder it was sent to (their scripts name the folder). One round trip per
    snapshot and folder when the host has it. A snapshot the archive lost is left as it is."""
    from compute_platform.ledger import snapshots

    placed = []
    for digest in dict.fromkeys(d for d in digests if DIGEST.fullmatch(d)):  # job.csv may be hand-edited
        archived = snapshots.tarball(ledger, digest)
        for code_dir in snapshots.sent_dirs(ledger, host.alias, digest) or [host.spec.code_dir]:
            where, have, _ = _probe(host, code_dir, digest, [])
            if have or not archived.is_file():
                continue
            data = archived.read_bytes()
            _send(host, code_dir, where, digest, data, "")
            snapshots.sent(ledger, host.alias, code_dir, digest)
            stored = snapshots.load(ledger, digest)
            files = len(stored.files) if stored else 0
            placed.append(Placed(f"{where.rstrip('/')}/{digest}", len(data), files))
    return placed


def _probe(host: Host, code_dir: str, digest: str, known: Sequence[str]) -> tuple[str, bool, list[str]]:
    """(the code folder's absolute path, whether it holds the snapshot, which of `known` it holds)."""
    folder = shell.quote_path(code_dir)
    lines = [
        f'd={folder}; mkdir -p "$d" && cd "$d" || exit 1',
        f'printf "{WHERE}%s\\n" "$PWD"',
        f"if [ -e {digest}/{COMPLETE} ]; then echo {HAVE}; exit 0; fi",
        f"echo {MISSING}",
        *(f'[ -e {b}/{COMPLETE} ] && echo "{BASE}{b}"' for b in known),
        "true",
    ]
    result = host.run("\n".join(lines), timeout=60)
    if not result.ok:
        raise CommandFailed(host.alias, result, f"cannot use the code folder {code_dir}")
    answer = result.stdout.splitlines()
    where = next((line[len(WHERE) :] for line in answer if line.startswith(WHERE)), "")
    return where, HAVE in answer, [line[len(BASE) :] for line in answer if line.startswith(BASE)]


def _send(host: Host, code_dir: str, where: str, digest: str, data: bytes, base: str) -> None:
    result = host.run(_unpack(where, digest, base), stdin=data, timeout=600)
    if not result.ok:
        raise CommandFailed(host.alias, result, f"cannot unpack the code snapshot in {code_dir}")


def _unpack(where: str, digest: str, base: str) -> str:
    """Unpack the tar on stdin as `<where>/<digest>`: beside the files of `base` (hard links, minus the
    ones it lists in REMOVE), under a temporary name renamed once complete."""
    folder = shell.quote(where)
    return "\n".join(
        [
            "set -e",
            f"cd {folder}",
            f't=.{digest}.$$; rm -rf "$t" "$t.new"; mkdir "$t.new"',
            'tar -xzf - -C "$t.new"',
            *(
                [
                    f'cp -al {base} "$t"; rm -f "$t/{COMPLETE}"',
                    f'if [ -e "$t.new/{REMOVE}" ]; then (cd "$t" && xargs -0 -r rm -f -- < "../$t.new/{REMOVE}"); fi',
                ]
                if base
                else ['mkdir "$t"']
            ),
            f'rm -f "$t.new/{REMOVE}"',
            'cp -a "$t.new/." "$t/"; rm -rf "$t.new"',
            f': > "$t/{COMPLETE}"',
            f'if [ -e {digest}/{COMPLETE} ]; then rm -rf "$t"; else rm -rf {digest}; mv "$t" {digest}; fi',
        ]
    )


def clean_script(code_dir: str, keep: Sequence[str]) -> str:
    """Remove the snapshots of `code_dir` that are not in `keep`; print each one removed."""
    kept = " ".join(shell.quote(k) for k in keep)
    return "\n".join(
        [
            f'd={shell.quote_path(code_dir)}; [ -d "$d" ] || exit 0; cd "$d" || exit 1',
            f'for s in */; do s=${{s%/}}; [ -e "$s/{COMPLETE}" ] || continue',
            f'  case " {kept} " in *" $s "*) continue ;; esac',
            '  rm -rf -- "$s" && echo "$s"',
            "done",
        ]
    )
