"""`copy` never writes outside `dest`: hostile tar streams (what a compromised or broken host could send
on a pull) built from absolute names, `..`, links pointing out and files written through them. Either
the stream is refused (UnsafeArchive, a clean error) or everything it wrote is inside `dest`; the
directory next to `dest` is never touched. Links inside the tree are kept as links, as documented."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute_platform.hosts.transfer import UnsafeArchive, extract

PARTS = st.sampled_from(["a", "b", "..", ".", "", "c d", "/", "outside", "..."])
NAMES = st.lists(PARTS, min_size=1, max_size=4).map("/".join)
TARGETS = st.one_of(NAMES, st.sampled_from(["../outside", "/tmp", "../../", "a", "../outside/x"]))
MEMBERS = st.lists(
    st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]), NAMES, TARGETS), min_size=1, max_size=6
)


def tar_of(members: list[tuple[str, str, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, target in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = b"payload"
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, target
            else:
                info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def snapshot(folder: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path)] = path.read_bytes()
        else:
            found[str(path)] = "dir"
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=MEMBERS)
def test_a_pulled_stream_never_writes_outside_dest(
    tmp_path: Path, members: list[tuple[str, str, str]]
) -> None:
    case = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    dest, outside = case / "dest", case / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("untouched")
    before = snapshot(outside)
    try:
        extract(io.BytesIO(tar_of(members)), dest)
    except UnsafeArchive as e:
        assert "refusing tar member" in str(e)
    except Exception:
        pass  # a broken stream (a link to nothing, a file over a dir): the copy task says "bad tar stream"
    assert snapshot(outside) == before
    real_dest = os.path.realpath(dest)
    for path in case.rglob("*"):
        if path == outside or path.is_relative_to(outside):
            continue
        # everything written is inside dest (links may point anywhere: they are data, not writes)
        assert path == dest or os.path.realpath(path.parent).startswith(real_dest), path


def test_the_classic_escapes_are_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    for members in (
        [("file", "../../x", "")],
        [("file", "/tmp/x-compute-test", "")],
        [("symlink", "link", ".."), ("file", "link/escaped", "")],
        [("hardlink", "h", "../outside")],
    ):
        try:
            extract(io.BytesIO(tar_of(members)), dest)
        except UnsafeArchive:
            continue
        raise AssertionError(f"not refused: {members}")
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/x-compute-test").exists()
