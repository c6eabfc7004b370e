"""A pulled tar stream cannot write or chmod through a link it created itself: a symlink member
followed by a member of the same name would otherwise reach any file the user can write."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from compute_platform.hosts.transfer import UnsafeArchive, extract


def stream(victim: Path, second: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        root = tarfile.TarInfo(".")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        link = tarfile.TarInfo("./x")
        link.type, link.linkname = tarfile.SYMTYPE, str(victim)
        tar.addfile(link)
        member = tarfile.TarInfo("./x")
        if second == "dir":
            member.type, member.mode = tarfile.DIRTYPE, 0o600
            tar.addfile(member)
        else:
            member.size = 5
            tar.addfile(member, io.BytesIO(b"owned"))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("second", ["file", "dir"])
def test_a_member_named_like_an_earlier_link_is_refused(tmp_path: Path, second: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (outside / "precious").write_text("precious")
    victim = outside if second == "dir" else outside / "precious"
    root = tmp_path / "dest"
    root.mkdir()
    with pytest.raises(UnsafeArchive, match="through a link"):
        extract(stream(victim, second), root)
    assert (outside / "precious").read_text() == "precious"
    assert os.stat(outside).st_mode & 0o777 == 0o755
