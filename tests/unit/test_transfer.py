"""transfer: exclusion (the same as GNU tar's, which applies it on pull), the tar stream we send
(checked with the real tar), the checks on a stream we receive, and plain local copies."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from compute_platform.errors import TaskError
from compute_platform.hosts import transfer
from tests.support.trees import listing, make_tree

PATTERNS = [".git", "*.ckpt", "__pycache__", "data/raw", "logs/*.txt", "b?d"]


def test_exclusion_matches_gnu_tar(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    proc = subprocess.run(
        ["tar", "-c", "-f", "-", *(f"--exclude={p}" for p in PATTERNS), "."],
        cwd=tree,
        capture_output=True,
        check=True,
        timeout=30,
    )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        by_tar = {m.name.removeprefix("./") for m in tar.getmembers()} - {"."}
    ours = {e.arcname.removeprefix("./") for e in transfer.scan(tree, PATTERNS).entries} - {"."}
    assert ours == by_tar
    assert "data/rawer/1.bin" in ours and "logs/a.log" in ours and "good" in ours
    assert not {"model.ckpt", "deep/er/model.ckpt", "a/.git", "x/data/raw", "logs/sub/b.txt", "bad"} & ours


def test_our_stream_is_read_by_gnu_tar_with_modes_links_and_odd_names(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    source = transfer.scan(tree)
    stream = b"".join(transfer.tar_chunks(source))
    assert len(stream) % tarfile.RECORDSIZE == 0
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-x", "-p", "-f", "-", "-C", str(out)], input=stream, check=True, timeout=30)
    assert listing(out) == listing(tree)
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(tree.stat().st_mode)
    assert source.stats.files == len([p for p in tree.rglob("*") if not p.is_dir() or p.is_symlink()])


def test_a_file_that_shrinks_while_sent_is_padded_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"x" * 5000)
    source = transfer.scan(path)
    chunks = transfer.tar_chunks(source)
    header = next(chunks)
    path.write_bytes(b"x" * 10)
    stream = header + b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        member = tar.getmembers()[0]
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert len(data) == 5000 and data.startswith(b"x" * 10) and data.endswith(b"\0")
    assert "shrank" in source.stats.warnings[0]


def test_an_unreadable_file_ends_the_stream_with_the_reason(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    source = transfer.scan(tree)
    (tree / "good").unlink()
    reader = transfer.ChunkReader(transfer.tar_chunks(source))
    data = io.BufferedReader(reader).read()
    assert (
        reader.error is not None and "cannot read" in reader.error.message and "good" in reader.error.message
    )
    assert len(data) % tarfile.BLOCKSIZE == 0  # truncated: a receiving tar fails instead of waiting


def evil(*members: tuple[str, str, str]) -> bytes:
    """A tar stream of (name, type, link target) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = target
            tar.addfile(info, io.BytesIO(b"") if kind == "file" else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("/etc/evil", "file", "")], "absolute"),
        ([(".", "dir", ""), ("./../evil", "file", "")], "'..'"),
        ([(".", "dir", ""), ("./a/../../evil", "file", "")], "'..'"),
        ([(".", "dir", ""), ("./up", "sym", ".."), ("./up/evil", "file", "")], "through a link"),
        ([(".", "dir", ""), ("./abs", "sym", "/tmp"), ("./abs/evil", "file", "")], "through a link"),
        ([(".", "dir", ""), ("./h", "hard", "/etc/passwd")], "absolute"),
        ([(".", "dir", ""), ("./f", "fifo", "")], "FIFO"),
        ([(".", "file", "")], "root must be a directory"),
    ],
)
def test_streams_that_escape_the_destination_are_refused(
    tmp_path: Path, members: list[tuple[str, str, str]], reason: str
) -> None:
    root = tmp_path / "inbox" / "root"
    root.mkdir(parents=True)
    with pytest.raises(transfer.UnsafeArchive) as info:
        transfer.extract(io.BytesIO(evil(*members)), root)
    assert reason in str(info.value)
    assert not (tmp_path / "inbox" / "evil").exists() and not (tmp_path / "evil").exists()


def test_received_files_are_ours_without_set_id_bits(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("tool")
        info.mode, info.uid, info.gid, info.size = 0o4755, 4242, 4242, 2
        tar.addfile(info, io.BytesIO(b"hi"))
    buffer.seek(0)
    unpacked = transfer.extract(buffer, tmp_path)
    st = (tmp_path / "tool").stat()
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == os.getuid()
    assert (unpacked.is_dir, unpacked.files, unpacked.bytes) == (False, 1, 2)


# -- local copies ------------------------------------------------------------------------------


def test_local_copy_of_a_tree_keeps_modes_links_and_applies_exclude(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    stats = transfer.copy_local(tree, tmp_path / "dest" / "new", [".git", "*.ckpt"])
    copied = listing(tmp_path / "dest" / "new" / "proj")
    expected = {k: v for k, v in listing(tree).items() if ".git" not in k and not k.endswith(".ckpt")}
    assert copied == expected and copied["link"] == ("link", 0, "good")
    assert stats.files == len([k for k, v in expected.items() if v[0] != "dir"])
    assert os.stat(tmp_path / "dest/new/proj/src").st_mtime == os.stat(tree / "src").st_mtime
    assert [p.name for p in (tmp_path / "dest" / "new").iterdir()] == ["proj"]  # no temporary left


def test_copying_a_tree_again_merges_and_keeps_other_files(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    dest = tmp_path / "dest"
    transfer.copy_local(tree, dest)
    (dest / "proj" / "only-there").write_text("keep me")
    (tree / "good").write_text("new content")
    transfer.copy_local(tree, dest)
    assert (dest / "proj" / "only-there").read_text() == "keep me"
    assert (dest / "proj" / "good").read_text() == "new content"


def test_local_copy_of_files_empty_and_linked(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "real.txt").write_text("data")
    os.chmod(tmp_path / "real.txt", 0o640)
    os.symlink(tmp_path / "real.txt", tmp_path / "alias.txt")
    dest = tmp_path / "out"
    transfer.copy_local(tmp_path / "empty", dest)
    transfer.copy_local(tmp_path / "alias.txt", dest)  # a top-level link is followed, its name kept
    assert (dest / "empty").read_text() == ""
    assert not (dest / "alias.txt").is_symlink() and (dest / "alias.txt").read_text() == "data"
    assert stat.S_IMODE((dest / "alias.txt").stat().st_mode) == 0o640


def test_missing_source_is_a_clean_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="source not found"):
        transfer.copy_local(tmp_path / "nope", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_file_never_replaces_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "dest" / "f").mkdir(parents=True)
    with pytest.raises(TaskError, match="is a directory"):
        transfer.copy_local(tmp_path / "f", tmp_path / "dest")
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["f"]
