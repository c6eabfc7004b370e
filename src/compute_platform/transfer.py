"""Files and trees between this machine and a host.

Over SSH everything travels as ONE tar stream on one exec channel: a 1,000-file tree costs one
round trip, and a single big file streams as fast as over SFTP (faster, when pulling). The
receiving side unpacks into a temporary directory inside `dest` and renames the result into
place only once the stream is complete and every step succeeded, so a failure (a missing
source, a lost connection) leaves nothing half-written. On localhost, copies are plain copies
with the same temporary-name-then-rename rule.

Symbolic links: a top-level `src` that is a link is followed (its name is kept); links inside a
tree are copied as links, their target text unchanged. Other special files (sockets, FIFOs,
devices) inside a tree are skipped and counted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from compute_platform import shell
from compute_platform.errors import TaskError
from compute_platform.hosts.base import Result

if TYPE_CHECKING:
    from compute_platform.hosts import Host

# Called with the number of bytes moved since the last call and the total expected (None when
# unknown, as for a pull: the host does not measure the tree first).
Progress = Callable[[int, "int | None"], None]

TMP_PREFIX = ".compute-copy-"
REFUSED = 95  # exit code of a remote script that refuses (missing source, wrong kind of target)
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


@dataclass
class Stats:
    """What a copy moved."""

    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- exclusion ---------------------------------------------------------------------------------


def excluded(rel: str, patterns: Iterable[str]) -> bool:
    """True when the path `rel` (relative to the copied tree's root, `/`-separated) matches a
    pattern. As GNU tar's --exclude (which applies them on pull): a pattern matches the whole
    path or any tail of it that starts after a `/`, and `*` also matches `/`; so `.git` and
    `*.ckpt` match at any depth, and `data/raw` matches that directory wherever it is."""
    parts = rel.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(tail, pattern) for pattern in patterns for tail in tails)


# -- local side: scanning and producing a tar stream -------------------------------------------


@dataclass(frozen=True)
class Entry:
    path: Path
    arcname: str
    st: os.stat_result


@dataclass
class Source:
    """A local file or tree, scanned: its entries in tar order and what they weigh."""

    name: str
    is_dir: bool
    entries: list[Entry]
    stats: Stats


def scan(src: Path, patterns: Iterable[str] = ()) -> Source:
    """The entries to send for `src` (a top-level link is followed). Raises TaskError when it
    does not exist, before anything is sent."""
    patterns = tuple(patterns)
    try:
        st = src.stat()
    except FileNotFoundError:
        raise TaskError(f"source not found: {src}") from None
    except OSError as e:
        raise TaskError(f"cannot read {src}: {e.strerror}") from None
    name = src.name or src.resolve().name
    stats = Stats()
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise TaskError(f"{src} is not a regular file nor a directory")
        stats.files, stats.bytes = 1, st.st_size
        return Source(name, False, [Entry(src, name, st)], stats)
    entries = [Entry(src, ".", st)]
    _walk(src, "", patterns, entries, stats)
    return Source(name, True, entries, stats)


def _walk(folder: Path, rel: str, patterns: tuple[str, ...], out: list[Entry], stats: Stats) -> None:
    try:
        children = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise TaskError(f"cannot read {folder}: {e.strerror}") from None
    for child in children:
        child_rel = f"{rel}{child.name}"
        if excluded(child_rel, patterns):
            continue
        try:
            st = child.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed while we looked: nothing to copy
            continue
        except OSError as e:
            raise TaskError(f"cannot read {child.path}: {e.strerror}") from None
        entry = Entry(Path(child.path), f"./{child_rel}", st)
        if stat.S_ISDIR(st.st_mode):
            out.append(entry)
            _walk(Path(child.path), child_rel + "/", patterns, out, stats)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            out.append(entry)
            stats.files += 1
            stats.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
        else:
            stats.skipped.append(child_rel)


def tar_chunks(source: Source, progress: Progress | None = None) -> Iterator[bytes]:
    """The tar stream of `source`, produced lazily (no thread, no pipe, no temporary file).
    A file that shrinks while being read is padded with zeros, as GNU tar does, and reported."""
    written = 0
    for entry in source.entries:
        info = _tarinfo(entry)
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        written += len(header)
        yield header
        if info.isreg():
            for chunk in _content(entry, info.size, source.stats):
                written += len(chunk)
                if progress:
                    progress(len(chunk), source.stats.bytes)
                yield chunk
            pad = -info.size % BLOCK
            written += pad
            yield b"\0" * pad
    end = 2 * BLOCK
    end += -(written + end) % RECORD  # a whole last record, as tar itself writes
    yield b"\0" * end


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    st = entry.st
    info = tarfile.TarInfo(entry.arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)  # whole seconds: no pax header per member for a fraction
    info.uid, info.gid = st.st_uid, st.st_gid
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.path)
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    return info


def _content(entry: Entry, size: int, stats: Stats) -> Iterator[bytes]:
    left = size
    try:
        with open(entry.path, "rb") as f:
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
    except OSError as e:
        raise TaskError(f"cannot read {entry.path}: {e.strerror}") from None
    if left:
        stats.warnings.append(f"{entry.path} shrank while being copied (padded with zeros)")
        while left > 0:
            n = min(CHUNK, left)
            left -= n
            yield b"\0" * n


class ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (for Host.run(stdin=...)).
    An error while producing (an unreadable file) ends the stream early, so the receiver fails
    on a truncated archive instead of waiting forever; `error` says why."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.error: TaskError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except TaskError as e:
                self.error = e
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


# -- local side: receiving a tar stream --------------------------------------------------------


class UnsafeArchive(TaskError):
    """A tar member that would land outside the destination (absolute, `..`, through a link)."""


@dataclass
class Unpacked:
    """What a received stream held: a tree (its root member `.` came first) or one file."""

    is_dir: bool = False
    files: int = 0
    bytes: int = 0


def _checked(
    tar: tarfile.TarFile, root: Path, patterns: tuple[str, ...], seen: Unpacked
) -> Iterator[tarfile.TarInfo]:
    """The members of a stream, refusing any that would escape `root` (a malicious or broken
    sender); checked as they come, so links extracted earlier in the stream are accounted for."""
    real_root = os.path.realpath(root)
    uid, gid = os.getuid(), os.getgid()
    for member in tar:
        name = member.name
        if name in (".", "./"):
            if not member.isdir():
                raise UnsafeArchive(f"refusing tar member {name!r}: the root must be a directory")
            seen.is_dir = True
        else:
            rel = name.removeprefix("./")
            _check_name(name, rel, real_root)
            if member.islnk():
                _check_name(member.linkname, member.linkname.removeprefix("./"), real_root)
            if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                raise UnsafeArchive(f"refusing tar member {name!r}: a device or FIFO")
            # the host's tar excluded these already; this only guards against other tars
            if name.startswith("./") and excluded(rel.rstrip("/"), patterns):
                continue
            seen.files += not member.isdir()
            seen.bytes += member.size if member.isreg() else 0
        # never recreate the sender's owners or set-id bits here: the files belong to us
        member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
        member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
        yield member


def _check_name(name: str, rel: str, real_root: str) -> None:
    if name.startswith("/") or os.path.isabs(name):
        raise UnsafeArchive(f"refusing tar member {name!r}: an absolute path")
    if ".." in rel.split("/"):
        raise UnsafeArchive(f"refusing tar member {name!r}: it leads out of the destination with '..'")
    parent = os.path.realpath(os.path.join(real_root, os.path.dirname(rel.rstrip("/"))))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise UnsafeArchive(f"refusing tar member {name!r}: it leads out of the destination through a link")
    # A member named like a link extracted before it would be written (or chmod-ed) through that
    # link, wherever it points: tarfile opens and chmods the path without unlinking it first.
    if os.path.islink(os.path.join(real_root, rel.rstrip("/"))):
        raise UnsafeArchive(f"refusing tar member {name!r}: it would be written through a link")


def extract(stream: BinaryIO, root: Path, patterns: Iterable[str] = ()) -> Unpacked:
    """Unpack a tar stream into the existing directory `root`, checking every member."""
    seen = Unpacked()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        members = _checked(tar, root, tuple(patterns), seen)
        if hasattr(tarfile, "fully_trusted_filter"):  # our checks replace the library's filters
            tar.extractall(root, members=members, filter="fully_trusted")
        else:  # pragma: no cover - Python < 3.10.12
            tar.extractall(root, members=members)
    return seen


class StreamExtractor:
    """A writable end for Host.run(stdout_to=...): bytes written are unpacked into `root` by a
    thread. A bad stream is remembered and the rest drained, so the writer never blocks."""

    def __init__(self, root: Path, patterns: Iterable[str], progress: Progress | None) -> None:
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb")
        self._writer = os.fdopen(write_fd, "wb")
        self.error: BaseException | None = None
        self.unpacked = Unpacked()
        self._progress = progress
        self._thread = threading.Thread(target=self._run, args=(root, tuple(patterns)), daemon=True)
        self._thread.start()

    def _run(self, root: Path, patterns: tuple[str, ...]) -> None:
        try:
            self.unpacked = extract(self._reader, root, patterns)
        except BaseException as e:  # reported by the caller after close(); drained below
            self.error = e
        finally:
            while self._reader.read(CHUNK):
                pass
            self._reader.close()

    def write(self, data: bytes) -> int:
        if self._progress:
            self._progress(len(data), None)
        with contextlib.suppress(BrokenPipeError):  # the extractor is gone; its error says why
            self._writer.write(data)
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._writer.close()
        self._thread.join()


# -- local side: placing a finished copy -------------------------------------------------------


def place(tmp: Path, name: str, is_dir: bool, dest: Path) -> None:
    """Move a complete copy from the temporary directory `tmp` (inside `dest`) into `dest/name`:
    a file replaces a file; a tree is renamed into place, or merged into an existing tree
    (each file renamed over its old version; files only in the old tree are kept)."""
    target = dest / name
    if not is_dir:
        if target.is_dir():
            raise TaskError(f"{target} is a directory: cannot replace it with the file {name}")
        os.replace(tmp / name, target)
        return
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    if not target.is_dir():
        raise TaskError(f"{target} exists and is not a directory: cannot copy the tree {name} there")
    _merge(tmp, target)


def _merge(src: Path, dst: Path) -> None:
    for child in os.scandir(src):
        there = dst / child.name
        if child.is_dir(follow_symlinks=False) and there.is_dir() and not there.is_symlink():
            _merge(Path(child.path), there)
        elif there.is_dir() and not there.is_symlink():
            raise TaskError(f"{there} is a directory: cannot replace it with the file {child.name}")
        elif child.is_dir(follow_symlinks=False) and os.path.lexists(there):
            raise TaskError(f"{there} exists and is not a directory: cannot copy a directory there")
        else:
            os.replace(child.path, there)
    shutil.copystat(src, dst, follow_symlinks=False)


def local_dest(dest: Path) -> Path:
    """Create the destination directory if missing; it must be a directory."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TaskError(f"destination {dest} exists and is not a directory") from None
    except OSError as e:
        raise TaskError(f"cannot create the destination {dest}: {e.strerror}") from None
    return dest


def copy_local(
    src: Path, dest: Path, patterns: Iterable[str] = (), progress: Progress | None = None
) -> Stats:
    """A plain local copy of `src` into the directory `dest`, through a temporary directory."""
    source = scan(src, patterns)  # a clean error for a missing source, before creating anything
    dest = local_dest(dest)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest))
    try:
        for entry in source.entries:
            _copy_entry(entry, tmp)
            if progress and stat.S_ISREG(entry.st.st_mode):
                progress(entry.st.st_size, source.stats.bytes)
        if source.is_dir:
            _fix_dir_times(source, tmp)
        place(tmp, source.name, source.is_dir, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return source.stats


def _copy_entry(entry: Entry, root: Path) -> None:
    target = root / entry.arcname  # `root / "."` is root itself
    mode = entry.st.st_mode
    if stat.S_ISDIR(mode):
        target.mkdir(exist_ok=True)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(entry.path), target)
        return
    else:
        shutil.copyfile(entry.path, target)
    os.chmod(target, stat.S_IMODE(mode))
    os.utime(target, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns))


def _fix_dir_times(source: Source, root: Path) -> None:
    """Directory times change as their content is written: set them again, deepest first."""
    for entry in reversed(source.entries):
        if stat.S_ISDIR(entry.st.st_mode):
            os.utime(root / entry.arcname, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns))


# -- the host side: shell scripts (pure) -------------------------------------------------------


def receive_script(dest: str, name: str, is_dir: bool) -> str:
    """Run on the host for a push: unpack the tar stream on stdin into a temporary directory
    inside `dest`, then move the result to `dest/name` (see `place` for the rules)."""
    refuse = f"exit {REFUSED}"
    lines = [
        f"dest={shell.quote_path(dest)}",
        f"name={shell.quote(name)}",
        'mkdir -p -- "$dest" || exit 1',
        f'tmp=$(mktemp -d "$dest/{TMP_PREFIX}XXXXXX") || exit 1',
        "trap 'rm -rf \"$tmp\"' EXIT",
        'tar -x -p --no-same-owner -f - -C "$tmp" || exit 1',
        'target="$dest/$name"',
    ]
    if not is_dir:
        return "\n".join(
            [
                *lines,
                'if [ -d "$target" ]; then',
                '  echo "compute: $target is a directory: cannot replace it with the file $name" >&2',
                f"  {refuse}",
                "fi",
                'mv -f -- "$tmp/$name" "$target"',
            ]
        )
    return "\n".join(
        [
            *lines,
            'if [ ! -e "$target" ] && [ ! -L "$target" ]; then',
            '  mv -- "$tmp" "$target"',
            'elif [ -d "$target" ]; then',
            '  cp -R -P -p -- "$tmp"/. "$target"/  # merge into the existing tree',
            "else",
            '  echo "compute: $target exists and is not a directory: cannot copy the tree $name there" >&2',
            f"  {refuse}",
            "fi",
        ]
    )


def send_script(src: str, patterns: Iterable[str] = ()) -> str:
    """Run on the host for a pull: a tar stream of `src` on stdout, a tree's members relative to
    its root (`.`, `./a`, ...), a file as one member named after it (a top-level link followed)."""
    excludes = " ".join(shell.quote(f"--exclude={p}") for p in patterns)
    return "\n".join(
        [
            f"src={shell.quote_path(src)}",
            'if [ -d "$src" ]; then',
            f'  cd -- "$src" || exit {REFUSED}',
            f"  tar -c -f - {excludes + ' ' if excludes else ''}.",
            'elif [ -e "$src" ]; then',
            f'  cd -- "$(dirname -- "$src")" || exit {REFUSED}',
            '  tar -c -h -f - -- "$(basename -- "$src")"',
            "else",
            '  echo "compute: source not found: $src" >&2',
            f"  exit {REFUSED}",
            "fi",
        ]
    )


# -- over a host -------------------------------------------------------------------------------


def push(
    host: Host,
    src: Path,
    dest: str,
    patterns: Iterable[str] = (),
    progress: Progress | None = None,
    timeout: float | None = None,
) -> Stats:
    """Copy the local `src` into the directory `dest` on the host, in one tar stream."""
    source = scan(src, patterns)
    reader = ChunkReader(tar_chunks(source, progress))
    stdin = io.BufferedReader(reader, CHUNK)
    result = host.run(receive_script(dest, source.name, source.is_dir), stdin=stdin, timeout=timeout)
    if reader.error is not None:
        raise TaskError(f"{host.alias}: copy to {dest} stopped: {reader.error.message}") from reader.error
    if not result.ok:
        raise TaskError(f"{host.alias}: copy to {dest} failed: {_said(result)}")
    return source.stats


def pull(
    host: Host,
    src: str,
    dest: Path,
    patterns: Iterable[str] = (),
    progress: Progress | None = None,
    timeout: float | None = None,
) -> Stats:
    """Copy `src` from the host into the local directory `dest`, in one tar stream. On failure
    nothing is left, not even the directories made for `dest`."""
    name = _basename(host, src)
    made = [p for p in (dest, *dest.parents) if not p.exists()]
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=local_dest(dest)))
    try:
        stats, is_dir = _receive(host, src, name, tmp, tuple(patterns), progress, timeout)
        place(tmp, name, is_dir, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _receive(
    host: Host,
    src: str,
    name: str,
    tmp: Path,
    patterns: tuple[str, ...],
    progress: Progress | None,
    timeout: float | None,
) -> tuple[Stats, bool]:
    """Run the sending script on the host and unpack its stream into `tmp`: (stats, is_dir)."""
    sink = StreamExtractor(tmp, patterns, progress)
    try:
        result = host.run(send_script(src, patterns), stdout_to=cast(BinaryIO, sink), timeout=timeout)
    finally:
        sink.close()
    stats = Stats(files=sink.unpacked.files, bytes=sink.unpacked.bytes)
    if not result.ok and not _only_changed_files(result, stats):
        raise TaskError(f"{host.alias}: copy of {src} failed: {_said(result)}")
    if isinstance(sink.error, TaskError):
        raise TaskError(f"{host.alias}: copy of {src}: {sink.error.message}") from sink.error
    if sink.error is not None:
        raise TaskError(f"{host.alias}: copy of {src}: bad tar stream: {sink.error}") from sink.error
    if not sink.unpacked.is_dir and not (tmp / name).is_file():
        raise TaskError(f"{host.alias}: copy of {src}: the host sent no file named {name}")
    return stats, sink.unpacked.is_dir


def _basename(host: Host, src: str) -> str:
    name = os.path.basename(src.rstrip("/"))
    if name in ("", "~", ".", ".."):
        name = os.path.basename(host.expand(src).rstrip("/"))
    if name in ("", ".", ".."):
        raise TaskError(f"{host.alias}: cannot copy {src!r}: name the directory itself (e.g. ~/results)")
    return name


def _only_changed_files(result: Result, stats: Stats) -> bool:
    """GNU tar exits 1 when a file changed while it was read (a log still being written): the
    archive is complete, so accept it with a warning."""
    if result.exit_code != 1 or "file changed as we read it" not in result.stderr:
        return False
    stats.warnings.extend(line for line in result.stderr.splitlines() if line.strip())
    return True


def _said(result: Result) -> str:
    if result.timed_out:
        return f"timed out after {result.duration:.0f} s"
    lines = [line.removeprefix("compute: ") for line in result.tail(6).splitlines()]
    return "\n".join(lines) or f"exit code {result.exit_code}"
