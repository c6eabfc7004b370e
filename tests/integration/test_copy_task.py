"""The `copy` task through the CLI, over the test sshd (as the test user) and on localhost: files,
an empty file, trees with nested directories, odd names, modes, links, exclude, merging, a
missing source, and a host that sends an archive escaping the destination."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import host_entry, write_project
from tests.integration.envtools import chown_tree, compute, user_workspace
from tests.trees import listing, make_tree

EXCLUDE = "[.git, '*.ckpt', __pycache__]"


@pytest.fixture(scope="module")
def space(testbed: Any) -> Iterator[Path]:
    """The test user's workspace: the host side of every copy to h1."""
    with user_workspace(testbed, "copy") as work:
        yield work


def tilde(testbed: Any, path: Path) -> str:
    """`path` written with `~` for the test user's home (the host expands it)."""
    return "~/" + str(path.relative_to(testbed.home))


def run(tmp_path: Path, testbed: Any, tasks: str, **h1: Any) -> Any:
    book = "inventory: {hosts: hosts.yaml, configs: configs.yaml}\ntasks:\n" + tasks
    # `o1` is h1 through the system's ssh client (connection: openssh) instead of paramiko
    extra = {"h1": host_entry(testbed, "h1", **h1), "o1": host_entry(testbed, "h1", connection="openssh")}
    write_project(tmp_path, testbed, book, extra_hosts=extra)
    return compute("run", "book.yaml", cwd=tmp_path)


def kept(tree: dict[str, tuple[str, int, str]]) -> dict[str, tuple[str, int, str]]:
    """What EXCLUDE leaves of a listing."""
    return {
        rel: v
        for rel, v in tree.items()
        if not ({".git", "__pycache__"} & set(rel.split("/")) or rel.endswith(".ckpt"))
    }


@pytest.mark.parametrize("alias", ["h1", "o1", "localhost"])
def test_a_tree_goes_there_and_back(testbed: Any, space: Path, tmp_path: Path, alias: str) -> None:
    tree = make_tree(tmp_path / "src")
    remote = alias != "localhost"
    there = space / f"tree-{alias}" / "new dir" if remote else tmp_path / "there" / "new dir"
    back = tmp_path / "back" / "deeper"
    dest = tilde(testbed, there) if remote else str(there)
    tasks = (
        f"  - {{hosts: {alias}, copy: {{mode: push, src: '{tree}', dest: '{dest}', exclude: {EXCLUDE}}}}}\n"
        f"  - {{hosts: {alias}, copy: {{mode: pull, src: '{dest}/proj', dest: '{back}'}}}}\n"
    )
    proc = run(tmp_path, testbed, tasks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = kept(listing(tree))
    assert listing(there / "proj") == expected
    assert listing(back / "proj") == expected
    assert expected["link"] == ("link", 0, "good") and expected["run.sh"][1] == 0o751
    files = sum(kind != "dir" for kind, _, _ in expected.values())
    assert f"pushed {tree} into {dest} ({files} files" in proc.stdout
    assert f"pulled {dest}/proj into {back} ({files} files" in proc.stdout
    if remote:
        assert os.stat(there / "proj" / "good").st_uid != 0  # written by the test user, as itself
    assert sorted(p.name for p in there.iterdir()) == ["proj"]  # no temporary left behind
    assert sorted(p.name for p in back.iterdir()) == ["proj"]


def test_files_empty_files_links_and_a_big_file(testbed: Any, space: Path, tmp_path: Path) -> None:
    src = tmp_path / "files"
    src.mkdir()
    (src / "empty").write_bytes(b"")
    big = os.urandom(1 << 20) * 24  # 24 MiB: several channel windows' worth
    (src / "big.bin").write_bytes(big)
    (src / 'it\'s a "file".txt').write_text("odd name\n")
    os.chmod(src / 'it\'s a "file".txt', 0o600)
    os.symlink(src / "big.bin", src / "alias.bin")
    there = space / "files"
    back = tmp_path / "back"
    names = ["empty", "big.bin", 'it\'s a "file".txt', "alias.bin"]
    tasks = "".join(
        f"  - hosts: h1\n    copy: {{mode: push, src: {yaml_str(str(src / n))}, dest: {there}}}\n"
        f"  - hosts: h1\n    copy: {{mode: pull, src: {yaml_str(str(there / n))}, dest: {back}}}\n"
        for n in names
    )
    proc = run(tmp_path, testbed, tasks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for folder in (there, back):
        assert (folder / "empty").read_bytes() == b""
        assert digest(folder / "big.bin") == digest(src / "big.bin")
        assert (folder / 'it\'s a "file".txt').read_text() == "odd name\n"
        assert oct((folder / 'it\'s a "file".txt').stat().st_mode & 0o777) == oct(0o600)
        # a top-level link is followed: a plain file with the link's name
        assert not (folder / "alias.bin").is_symlink()
        assert digest(folder / "alias.bin") == digest(src / "big.bin")


def yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_copying_again_merges_into_the_tree_there(testbed: Any, space: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    there = space / "merge"
    task = f"  - {{hosts: h1, copy: {{mode: push, src: '{tree}', dest: '{there}'}}}}\n"
    assert run(tmp_path, testbed, task).returncode == 0
    (there / "proj" / "only-there.txt").write_text("results")
    chown_tree(there, testbed.user)
    (tree / "good").write_text("changed here\n")
    proc = run(tmp_path, testbed, task)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (there / "proj" / "good").read_text() == "changed here\n"
    assert (there / "proj" / "only-there.txt").read_text() == "results"


def test_a_missing_source_fails_cleanly_and_writes_nothing(testbed: Any, space: Path, tmp_path: Path) -> None:
    there = space / "never"
    back = tmp_path / "never-back"
    for task in (
        f"  - {{hosts: h1, copy: {{mode: push, src: {tmp_path}/nope, dest: {there}}}}}\n",
        f"  - {{hosts: h1, copy: {{mode: pull, src: {space}/nope, dest: {back}}}}}\n",
        f"  - {{hosts: localhost, copy: {{mode: pull, src: {tmp_path}/nope, dest: {back}}}}}\n",
    ):
        proc = run(tmp_path, testbed, task)
        assert proc.returncode == 1
        assert "source not found" in proc.stdout and "nope" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr
        assert not there.exists() and not back.exists()


def test_an_archive_escaping_the_destination_is_refused(testbed: Any, space: Path, tmp_path: Path) -> None:
    """A host whose `tar` sends members outside the tree (a broken or hostile host)."""
    import io
    import tarfile

    fake = space / "fakebin"
    fake.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in (".", "./ok.txt", "./../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if name == "." else tarfile.REGTYPE
            info.size = 0 if name == "." else 3
            tar.addfile(info, None if name == "." else io.BytesIO(b"bad"))
    (fake / "evil.tar").write_bytes(buffer.getvalue())
    (fake / "tar").write_text(f"#!/bin/sh\ncat {fake}/evil.tar\n")
    (fake / "tar").chmod(0o755)
    (space / "victim").mkdir()
    chown_tree(space, testbed.user)
    back = tmp_path / "inbox"
    task = f"  - {{hosts: h1, copy: {{mode: pull, src: {space}/victim, dest: {back}}}}}\n"
    proc = run(tmp_path, testbed, task, init=[f"export PATH={fake}:$PATH"])
    assert proc.returncode == 1
    assert "refusing tar member './../escaped.txt'" in proc.stdout
    assert not (tmp_path / "escaped.txt").exists()
    assert not back.exists()  # nothing written, not even the destination made for it
