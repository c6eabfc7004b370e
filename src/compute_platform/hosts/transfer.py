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

Globs: a `src` with `*`, `?` or `[...]` is expanded where the files are, as the shell of
`scp -r SRC DEST` would: a push on this machine (Python's glob), a pull by the host's shell
within the same one round trip (the host lists its matches first, then sends them). Every
match lands in `dest` under its own name; all of them are placed only once all have arrived.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from compute_platform.errors import TaskError
from compute_platform.hosts import shell
from compute_platform.hosts.base import Result

if TYPE_CHECKING:
    from compute_platform.hosts import Host

# Called with the number of bytes moved since the last call and the total expected (None when
# unknown, as for a pull: the host does not measure the tree first).
Progress = Callable[[int, "int | None"], None]

TMP_PREFIX = ".compute-copy-"
REFUSED = 95  # exit code of a remote script that refuses (missing source, wrong kind of target)
NO_MATCH = 96  # exit code of a remote script whose glob matched nothing
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
    matches: int = 0  # how many matches of a glob (0: `src` was no glob)


# -- exclusion ---------------------------------------------------------------------------------


def excluded(rel: str, patterns: Iterable[str]) -> bool:
    """True when the path `rel` (relative to the copied tree's root, `/`-separated) matches a
    pattern. As GNU tar's --exclude (which applies them on pull): a pattern matches the whole
    path or any tail of it that starts after a `/`, and `*` also matches `/`; so `.git` and
    `*.ckpt` match at any depth, and `data/raw` matches that directory wherever it is."""
    parts = rel.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(tail, pattern) for pattern in patterns for tail in tails)


# -- globs -------------------------------------------------------------------------------------

GLOB_CHARS = re.compile(r"[*?[]")


def is_glob(src: str) -> bool:
    """True when `src` is a pattern for the shell (`*`, `?`, `[...]`); without one of these it
    names one path, copied exactly as before globs were known."""
    return GLOB_CHARS.search(src) is not None


def local_matches(pattern: str) -> list[Path]:
    """The paths of this machine a glob names, sorted, as a POSIX shell expands it: `~` first,
    `*` and `?` never match a leading dot unless the pattern has one, `.` and `..` never match.
    As the shell leaves an unmatched pattern as it is, a path named literally so is its match."""
    head, sep, rest = pattern.partition("/")
    home = os.path.expanduser(head) if head.startswith("~") else head
    if home != head:  # `~` or `~user`: the home is a path, not a pattern
        here, literal = glob.escape(home) + sep + rest, home + sep + rest
    else:
        here = literal = pattern
    found = [Path(m) for m in sorted(glob.glob(here)) if os.path.basename(m.rstrip("/")) not in (".", "..")]
    if not found and os.path.lexists(literal):
        found = [Path(literal)]
    if not found:
        raise TaskError(f"no match for {pattern} on this machine")
    return found


def names_of(paths: Sequence[str]) -> list[str]:
    """The names the matches of a glob get inside `dest` (`scp -r a/x b/y dest` makes dest/x and
    dest/y). Two matches of the same name would overwrite one another: refused, as are paths
    whose name is no name (`.`, `..`, a bare `/`: only a broken or hostile host sends those)."""
    names: dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path.rstrip("/"))
        if name in ("", ".", ".."):
            raise TaskError(f"cannot copy {path!r}: it names no file or directory")
        if name in names:
            raise TaskError(
                f"{names[name]} and {path} are both named {name}: "
                "copied into one directory, one would overwrite the other"
            )
        names[name] = path
    return list(names)


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


@dataclass
class Bundle:
    """Several sources in one tar stream (the matches of a glob): a tree's entries under its
    name (`NAME`, `NAME/a`, ...), a file as one member named after it."""

    sources: list[Source]
    entries: list[Entry]
    stats: Stats


def bundle(srcs: Sequence[Path], patterns: Iterable[str] = ()) -> Bundle:
    """Scan every source (see `scan`); two of the same name are refused before anything is sent."""
    names_of([str(src) for src in srcs])
    patterns = tuple(patterns)
    sources = [scan(src, patterns) for src in srcs]
    entries = [
        Entry(e.path, _under(source.name, e.arcname), e.st) if source.is_dir else e
        for source in sources
        for e in source.entries
    ]
    stats = Stats(
        files=sum(source.stats.files for source in sources),
        bytes=sum(source.stats.bytes for source in sources),
        skipped=[f"{source.name}/{rel}" for source in sources for rel in source.stats.skipped],
        matches=len(sources),
    )
    return Bundle(sources, entries, stats)


def _under(name: str, arcname: str) -> str:
    """The member name of a tree's entry in a bundle: `.` -> NAME, `./a` -> NAME/a."""
    return name if arcname == "." else f"{name}/{arcname.removeprefix('./')}"


def tar_chunks(source: Source | Bundle, progress: Progress | None = None) -> Iterator[bytes]:
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
    """What a received stream held: a tree (its root member `.` came first) or one file; or,
    for a glob, its matches in `tops`."""

    is_dir: bool = False
    files: int = 0
    bytes: int = 0
    tops: list[tuple[str, bool]] = field(default_factory=list)  # a glob's matches: (name, is_dir)


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
            _check_member(member, real_root)
            # the host's tar excluded these already; this only guards against other tars
            if name.startswith("./") and excluded(rel.rstrip("/"), patterns):
                continue
            seen.files += not member.isdir()
            seen.bytes += member.size if member.isreg() else 0
        yield _owned(member, uid, gid)


def _check_member(member: tarfile.TarInfo, real_root: str) -> None:
    name = member.name
    _check_name(name, name.removeprefix("./"), real_root)
    if member.islnk():
        _check_name(member.linkname, member.linkname.removeprefix("./"), real_root)
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"refusing tar member {name!r}: a device or FIFO")


def _owned(member: tarfile.TarInfo, uid: int, gid: int) -> tarfile.TarInfo:
    """Never recreate the sender's owners or set-id bits here: the files belong to us."""
    member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
    member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
    return member


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


def extract_matches(stream: BinaryIO, root: Path, patterns: Iterable[str] = ()) -> Unpacked:
    """Unpack what `send_matches_script` sends into the existing directory `root`: the paths of
    the matches, each ended by a NUL and the list by an empty one, then one tar stream per match
    (as `send_script` sends one source), in that order; each lands in `root/NAME`."""
    names = names_of(_read_names(stream))
    seen = Unpacked()
    with tarfile.open(fileobj=stream, mode="r|", ignore_zeros=True) as tar:  # streams one after another
        members = _checked_matches(tar, root, names, tuple(patterns), seen)
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(root, members=members, filter="fully_trusted")
        else:  # pragma: no cover - Python < 3.10.12
            tar.extractall(root, members=members)
    return seen


def _read_names(stream: BinaryIO) -> list[str]:
    names: list[str] = []
    name = bytearray()
    while True:
        byte = stream.read(1)
        if not byte:
            raise TaskError("the host's list of matches ended early")
        if byte != b"\0":
            name += byte
        elif name:
            names.append(os.fsdecode(bytes(name)))
            name.clear()
        else:
            return names


def _checked_matches(
    tar: tarfile.TarFile, root: Path, names: list[str], patterns: tuple[str, ...], seen: Unpacked
) -> Iterator[tarfile.TarInfo]:
    """The members of the streams of a glob's matches, renamed under the match's name (`.` ->
    NAME, `./a` -> NAME/a; a file match is one member, its name) and checked as `_checked` does.
    A member out of that order (a broken or hostile host) is refused."""
    real_root = os.path.realpath(root)
    uid, gid = os.getuid(), os.getgid()
    waiting = iter(names)
    tree: str | None = None  # the name of the tree whose members come now
    for member in tar:
        original = member.name
        if original in (".", "./") or not original.startswith("./"):  # the next match begins
            name = next(waiting, None)
            if name is None:
                raise UnsafeArchive(f"refusing tar member {original!r}: more sources than matches")
            if original in (".", "./") and not member.isdir():
                raise UnsafeArchive(f"refusing tar member {original!r}: the root must be a directory")
            if original not in (".", "./") and (original != name or not member.isreg()):
                raise UnsafeArchive(f"refusing tar member {original!r}: expected the file {name!r}")
            tree = name if member.isdir() else None
            member.name = name
            seen.tops.append((name, member.isdir()))
        elif tree is None:
            raise UnsafeArchive(f"refusing tar member {original!r}: it belongs to no match")
        else:
            rel = original.removeprefix("./")
            if excluded(rel.rstrip("/"), patterns):  # guards against other tars, as in `_checked`
                continue
            member.name = f"{tree}/{rel}"
            if member.islnk():
                if not member.linkname.startswith("./"):
                    raise UnsafeArchive(f"refusing tar member {original!r}: a hard link out of its tree")
                member.linkname = f"{tree}/{member.linkname.removeprefix('./')}"
        _check_member(member, real_root)
        seen.files += not member.isdir()
        seen.bytes += member.size if member.isreg() else 0
        yield _owned(member, uid, gid)
    missing = list(waiting)
    if missing:
        raise TaskError(f"the host sent {len(names) - len(missing)} of its {len(names)} matches")


class StreamExtractor:
    """A writable end for Host.run(stdout_to=...): bytes written are unpacked into `root` by a
    thread. A bad stream is remembered and the rest drained, so the writer never blocks."""

    def __init__(
        self, root: Path, patterns: Iterable[str], progress: Progress | None, matches: bool = False
    ) -> None:
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb")
        self._writer = os.fdopen(write_fd, "wb")
        self.error: BaseException | None = None
        self.unpacked = Unpacked()
        self._progress = progress
        self._extract = extract_matches if matches else extract
        self._thread = threading.Thread(target=self._run, args=(root, tuple(patterns)), daemon=True)
        self._thread.start()

    def _run(self, root: Path, patterns: tuple[str, ...]) -> None:
        try:
            self.unpacked = self._extract(self._reader, root, patterns)
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
    _check_target(dest / name, name, is_dir)
    _put(tmp if is_dir else tmp / name, dest / name, is_dir)


def place_all(tmp: Path, tops: Sequence[tuple[str, bool]], dest: Path) -> None:
    """Move every match of a glob from `tmp/NAME` into `dest/NAME` (as `place` does), once all
    of them are known to fit: a conflict leaves `dest` as it was."""
    for name, is_dir in tops:
        _check_target(dest / name, name, is_dir)
    for name, is_dir in tops:
        _put(tmp / name, dest / name, is_dir)


def _check_target(target: Path, name: str, is_dir: bool) -> None:
    if not is_dir and target.is_dir():
        raise TaskError(f"{target} is a directory: cannot replace it with the file {name}")
    if is_dir and os.path.lexists(target) and not target.is_dir():
        raise TaskError(f"{target} exists and is not a directory: cannot copy the tree {name} there")


def _put(built: Path, target: Path, is_dir: bool) -> None:
    if not is_dir:
        os.replace(built, target)
    elif not os.path.lexists(target):
        os.rename(built, target)
    else:
        _merge(built, target)


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
        _build(source, tmp, source.stats.bytes, progress)
        place(tmp, source.name, source.is_dir, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return source.stats


def copy_local_matches(
    srcs: Sequence[Path], dest: Path, patterns: Iterable[str] = (), progress: Progress | None = None
) -> Stats:
    """Local copies of several sources (a glob's matches) into the directory `dest`, each
    built in one temporary directory and placed once all are complete."""
    matches = bundle(srcs, patterns)  # clean errors (missing, two alike) before creating anything
    dest = local_dest(dest)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest))
    try:
        for source in matches.sources:
            _build(source, tmp / source.name if source.is_dir else tmp, matches.stats.bytes, progress)
        place_all(tmp, [(source.name, source.is_dir) for source in matches.sources], dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return matches.stats


def _build(source: Source, root: Path, total: int, progress: Progress | None) -> None:
    """Copy `source` into `root` (a tree: becomes `root`; a file: goes into `root`)."""
    for entry in source.entries:
        _copy_entry(entry, root)
        if progress and stat.S_ISREG(entry.st.st_mode):
            progress(entry.st.st_size, total)
    if source.is_dir:
        _fix_dir_times(source, root)


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


# zsh globs the value of a variable only when asked, and stops where a pattern matches nothing
ZSH_GLOBS = '[ -z "${ZSH_VERSION-}" ] || setopt glob_subst no_nomatch  # glob as sh does'


def receive_matches_script(dest: str) -> str:
    """Run on the host for a push of a glob's matches: unpack the tar stream on stdin (see
    `bundle`) into a temporary directory inside `dest`, check that every match fits, then move
    each to `dest/NAME` (see `place`). The names are read from what was unpacked, not written
    here: a script is one argument of the remote command (Linux takes 128 kB at most)."""
    refuse = f"exit {REFUSED}"
    return "\n".join(
        [
            f"dest={shell.quote_path(dest)}",
            'mkdir -p -- "$dest" || exit 1',
            f'tmp=$(mktemp -d "$dest/{TMP_PREFIX}XXXXXX") || exit 1',
            "trap 'rm -rf \"$tmp\"' EXIT",
            'tar -x -p --no-same-owner -f - -C "$tmp" || exit 1',
            "set +f",
            ZSH_GLOBS,
            "place() {  # $1: check (all must fit before any moves) or move",
            '  for new in "$tmp"/* "$tmp"/.[!.]* "$tmp"/..?*; do',
            '    [ -e "$new" ] || continue  # a pattern that matched nothing',
            "    name=${new##*/}",
            '    target="$dest/$name"',
            '    if [ -d "$new" ]; then',
            '      if [ ! -e "$target" ] && [ ! -L "$target" ]; then',
            '        [ "$1" = check ] || mv -- "$new" "$target" || exit 1',
            '      elif [ -d "$target" ]; then',
            '        [ "$1" = check ] || cp -R -P -p -- "$new"/. "$target"/ || exit 1  # merge',
            "      else",
            '        echo "compute: $target exists and is not a directory: cannot copy the tree $name there" >&2',
            f"        {refuse}",
            "      fi",
            '    elif [ -d "$target" ]; then',
            '      echo "compute: $target is a directory: cannot replace it with the file $name" >&2',
            f"      {refuse}",
            "    else",
            '      [ "$1" = check ] || mv -f -- "$new" "$target" || exit 1',
            "    fi",
            "  done",
            "}",
            "place check",
            "place move",
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


def send_matches_script(pattern: str, patterns: Iterable[str] = ()) -> str:
    """Run on the host for a pull of a glob: expand `pattern` with the host's shell, then write on
    stdout the paths of the matches, each ended by a NUL and the list by an empty one, then the
    matches in that order: the files (a link followed) in one tar stream, each named after
    itself, then each tree as `send_script` sends it. The pattern is the value of a variable,
    expanded unquoted with IFS empty: globbed, never split nor run (`$(...)`, `;`, backquotes
    stay letters). Nothing is sent when it matches nothing or a match is a dangling link. Every
    pass over the matches is linear and a file costs no process: 20,000 matches are fine."""
    home, rest = ('"$HOME"/', pattern[2:]) if pattern.startswith("~/") else ("", pattern)
    excludes = " ".join(shell.quote(f"--exclude={p}") for p in patterns)
    return "\n".join(
        [
            f"pattern={shell.quote(rest)}",
            "IFS=  # the value of $pattern is globbed, never split into words",
            "set +f",
            ZSH_GLOBS,
            f"set -- {home}$pattern",
            "# . and .. (which `.*` gives too) are never matches, as in Python's glob",
            'files() { for m do case /${m%/} in */. | */..) ;; *) [ -d "$m" ] || printf \'%s\\0\' "$m" ;; esac; done; }',
            'trees() { for m do case /${m%/} in */. | */..) ;; *) [ ! -d "$m" ] || printf \'%s\\0\' "$m" ;; esac; done; }',
            "found=0 any_file=0",
            "for m do  # an unmatched pattern stays as written: it names nothing (or a path named so)",
            "  case /${m%/} in */. | */..) continue ;; esac",
            '  if [ -e "$m" ]; then',
            "    found=1",
            '    [ -d "$m" ] || any_file=1',
            '  elif [ -L "$m" ]; then',
            '    echo "compute: $m is a link to nothing" >&2',
            f"    exit {REFUSED}",
            "  fi",
            "done",
            f'[ "$found" = 1 ] || exit {NO_MATCH}  # no match: nothing sent',
            'files "$@"; trees "$@"; printf \'\\0\'  # the paths, in the order they are sent',
            "changed=0",
            "sent() {  # tar exits 1 when a file changed while it was read: a warning",
            '  [ "$1" = 0 ] || [ "$1" = 1 ] || exit "$1"',
            '  [ "$1" = 0 ] || changed=1',
            "}",
            'if [ "$any_file" = 1 ]; then',
            "  files \"$@\" | tar -c -h --hard-dereference --no-recursion -P --transform='s,^.*/,,' -f - --null -T -",
            "  sent $?",
            "fi",
            "for m do",
            '  [ -d "$m" ] || continue',
            "  case /${m%/} in */. | */..) continue ;; esac",
            f'  (cd -- "$m" || exit {REFUSED}; exec tar -c -f - {excludes + " " if excludes else ""}.)',
            "  sent $?",
            "done",
            'exit "$changed"',
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
    _send(host, source, receive_script(dest, source.name, source.is_dir), dest, progress, timeout)
    return source.stats


def push_matches(
    host: Host,
    srcs: Sequence[Path],
    dest: str,
    patterns: Iterable[str] = (),
    progress: Progress | None = None,
    timeout: float | None = None,
) -> Stats:
    """Copy several local sources (a glob's matches) into the directory `dest` on the host, in
    one tar stream; none is placed there unless all arrived and fit."""
    matches = bundle(srcs, patterns)
    _send(host, matches, receive_matches_script(dest), dest, progress, timeout)
    return matches.stats


def _send(
    host: Host,
    source: Source | Bundle,
    script: str,
    dest: str,
    progress: Progress | None,
    timeout: float | None,
) -> None:
    reader = ChunkReader(tar_chunks(source, progress))
    stdin = io.BufferedReader(reader, CHUNK)
    result = host.run(script, stdin=stdin, timeout=timeout)
    if reader.error is not None:
        raise TaskError(
            host=host.alias, message=f"copy to {dest} stopped: {reader.error.message}"
        ) from reader.error
    if not result.ok:
        raise TaskError(host=host.alias, message=f"copy to {dest} failed: {_said(result)}")


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
    patterns = tuple(patterns)

    def receive(tmp: Path) -> Stats:
        sink = StreamExtractor(tmp, patterns, progress)
        stats = _receive(host, send_script(src, patterns), src, sink, timeout)
        if not sink.unpacked.is_dir and not (tmp / name).is_file():
            raise TaskError(host=host.alias, message=f"copy of {src}: the host sent no file named {name}")
        place(tmp, name, sink.unpacked.is_dir, dest)
        return stats

    return _pulled(dest, receive)


def pull_matches(
    host: Host,
    pattern: str,
    dest: Path,
    patterns: Iterable[str] = (),
    progress: Progress | None = None,
    timeout: float | None = None,
) -> Stats:
    """Copy every match of the glob `pattern`, expanded on the host, into the local directory
    `dest`, in one round trip; as `pull`, a failure leaves nothing."""
    patterns = tuple(patterns)

    def receive(tmp: Path) -> Stats:
        sink = StreamExtractor(tmp, patterns, progress, matches=True)
        stats = _receive(host, send_matches_script(pattern, patterns), pattern, sink, timeout)
        place_all(tmp, sink.unpacked.tops, dest)
        stats.matches = len(sink.unpacked.tops)
        return stats

    return _pulled(dest, receive)


def _pulled(dest: Path, receive: Callable[[Path], Stats]) -> Stats:
    """Run `receive` on a new temporary directory inside `dest` (created if missing), then
    remove it; on failure remove the directories made for `dest` too."""
    made = [p for p in (dest, *dest.parents) if not p.exists()]
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=local_dest(dest)))
    try:
        stats = receive(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _receive(host: Host, script: str, src: str, sink: StreamExtractor, timeout: float | None) -> Stats:
    """Run a sending script on the host, its stdout unpacked by `sink`: what arrived."""
    try:
        result = host.run(script, stdout_to=cast(BinaryIO, sink), timeout=timeout)
    finally:
        sink.close()
    stats = Stats(files=sink.unpacked.files, bytes=sink.unpacked.bytes)
    if result.exit_code == NO_MATCH and not result.timed_out:
        raise TaskError(host=host.alias, message=f"no match for {src} on {host.alias}")
    if not result.ok and not _only_changed_files(result, stats):
        raise TaskError(host=host.alias, message=f"copy of {src} failed: {_said(result)}")
    if isinstance(sink.error, TaskError):
        raise TaskError(host=host.alias, message=f"copy of {src}: {sink.error.message}") from sink.error
    if sink.error is not None:
        raise TaskError(
            host=host.alias, message=f"copy of {src}: bad tar stream: {sink.error}"
        ) from sink.error
    return stats


def _basename(host: Host, src: str) -> str:
    name = os.path.basename(src.rstrip("/"))
    if name in ("", "~", ".", ".."):
        name = os.path.basename(host.expand(src).rstrip("/"))
    if name in ("", ".", ".."):
        raise TaskError(
            host=host.alias, message=f"cannot copy {src!r}: name the directory itself (e.g. ~/results)"
        )
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
