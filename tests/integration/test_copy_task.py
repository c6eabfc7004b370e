"""The `copy` task through the CLI, over the test sshd (as the test user) and on localhost: files,
an empty file, trees with nested directories, odd names, modes, links, exclude, merging, a
missing source, a host that sends an archive escaping the destination, and glob sources expanded
on either side (several matches, hidden names, no match, two of one name, hostile patterns)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.envtools import chown_tree, user_workspace
from tests.support.cli import compute
from tests.support.project import host_entry, write_project
from tests.support.trees import listing, make_tree

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


# -- a glob `src`: expanded where the files are ---------------------------------------------------


def roms(folder: Path) -> Path:
    """a.zip, b.zip, a tree `proj`, a hidden .c.zip and a readme (the setup of the original)."""
    folder.mkdir(parents=True)
    for name in ("a.zip", "b.zip", ".c.zip", "readme.txt"):
        (folder / name).write_text(name)
    make_tree(folder)
    return folder


@pytest.mark.parametrize("alias", ["h1", "o1", "localhost"])
def test_every_match_of_a_glob_goes_there_and_back(
    testbed: Any, space: Path, tmp_path: Path, alias: str
) -> None:
    setup = roms(tmp_path / "setup")
    remote = alias != "localhost"
    there = space / f"glob-{alias}" / "Atari_ROM" if remote else tmp_path / "there" / "Atari_ROM"
    dest = tilde(testbed, there) if remote else str(there)
    back, hidden = tmp_path / "back", tmp_path / "hidden"
    tasks = (
        f"  - {{hosts: {alias}, copy: {{mode: push, src: '{setup}/[!r]*', dest: '{dest}', exclude: {EXCLUDE}}}}}\n"
        f"  - {{hosts: {alias}, copy: {{mode: push, src: '{setup}/.*.zip', dest: '{dest}'}}}}\n"
        f"  - {{hosts: {alias}, copy: {{mode: pull, src: '{dest}/*', dest: '{back}'}}}}\n"
        f"  - {{hosts: {alias}, copy: {{mode: pull, src: '{dest}/.?.zip', dest: '{hidden}'}}}}\n"
    )
    proc = run(tmp_path, testbed, tasks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for folder in (there, back):
        assert sorted(p.name for p in folder.iterdir()) == (
            [".c.zip", "a.zip", "b.zip", "proj"] if folder == there else ["a.zip", "b.zip", "proj"]
        )
        assert (folder / "a.zip").read_text() == "a.zip"
        assert listing(folder / "proj") == kept(listing(setup / "proj"))
    assert [p.name for p in hidden.iterdir()] == [".c.zip"]
    files = 2 + sum(kind != "dir" for kind, _, _ in kept(listing(setup / "proj")).values())
    assert f"pushed {setup}/[!r]* (3 matches) into {dest} ({files} files" in proc.stdout
    assert f"pulled {dest}/* (3 matches) into {back} ({files} files" in proc.stdout
    assert f"pulled {dest}/.?.zip (1 match) into {hidden} (1 file" in proc.stdout
    if remote:
        assert os.stat(there / "proj" / "good").st_uid != 0  # written by the test user, as itself


def test_a_glob_that_matches_nothing_fails_cleanly_and_writes_nothing(
    testbed: Any, space: Path, tmp_path: Path
) -> None:
    (space / "empty").mkdir()
    there, back = space / "never", tmp_path / "never-back"
    for task, said in (
        (f"hosts: h1, copy: {{mode: push, src: '{tmp_path}/*.zip', dest: '{there}'}}", "on this machine"),
        (f"hosts: h1, copy: {{mode: pull, src: '~/{space.name}/empty/*.zip', dest: '{back}'}}", "on h1"),
        (f"hosts: o1, copy: {{mode: pull, src: '{space}/empty/*', dest: '{back}'}}", "on o1"),
        (
            f"hosts: localhost, copy: {{mode: pull, src: '{tmp_path}/*.zip', dest: '{back}'}}",
            "on this machine",
        ),
    ):
        proc = run(tmp_path, testbed, f"  - {{{task}}}\n")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        pattern = task.split("src: '")[1].split("'")[0]
        assert f"no match for {pattern} {said}" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr
        assert not there.exists() and not back.exists()


def test_matches_of_the_same_name_on_the_host_are_refused(testbed: Any, space: Path, tmp_path: Path) -> None:
    for run_dir in ("run1", "run2"):
        (space / "dups" / run_dir).mkdir(parents=True)
        (space / "dups" / run_dir / "out.txt").write_text(run_dir)
    chown_tree(space, testbed.user)
    back = tmp_path / "back"
    proc = run(
        tmp_path,
        testbed,
        f"  - {{hosts: h1, copy: {{mode: pull, src: '{space}/dups/*/out.txt', dest: '{back}'}}}}\n",
    )
    assert proc.returncode == 1
    assert "both named out.txt" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert not back.exists()


HOSTILE = ["$(id).txt", "a;b.txt", "`id`.txt", "it's.txt"]


def test_hostile_patterns_stay_letters_on_both_sides(testbed: Any, space: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "hostile", space / "hostile"
    for folder in (local, remote):
        folder.mkdir()
        for name in [*HOSTILE, "other.log"]:
            (folder / name).write_text(name)
    chown_tree(space, testbed.user)
    pwned = space / "PWNED"
    attacks = [f"*$(touch {pwned})*", f"*`touch {pwned}`*", f"*;touch {pwned};*", f"*' ; touch {pwned} ; '*"]
    tasks = "".join(
        f"  - {{hosts: h1, ignore_errors: true, copy: {{mode: {mode}, src: {yaml_str(f'{folder}/{attack}')}, "
        f"dest: '{tmp_path}/x'}}}}\n"
        for attack in attacks
        for mode, folder in (("pull", remote), ("push", local))
    )
    tasks += "".join(
        f"  - {{hosts: h1, copy: {{mode: push, src: {yaml_str(f'{local}/{name[:3]}*')}, dest: '{space}/in'}}}}\n"
        f"  - {{hosts: h1, copy: {{mode: pull, src: {yaml_str(f'{remote}/{name[:3]}*')}, dest: '{tmp_path}/in'}}}}\n"
        for name in HOSTILE
    )
    proc = run(tmp_path, testbed, tasks)
    for attack in attacks:
        assert f"no match for {remote}/{attack} on h1" in proc.stdout, proc.stdout + proc.stderr
        assert f"no match for {local}/{attack} on this machine" in proc.stdout
    assert not pwned.exists() and not (tmp_path / "x").exists()
    for folder in (space / "in", tmp_path / "in"):
        assert sorted(p.name for p in folder.iterdir()) == sorted(HOSTILE)
        assert all((folder / name).read_text() == name for name in HOSTILE)
    assert proc.stdout.count("(1 match) into") == 2 * len(HOSTILE)


def test_dry_run_says_where_a_glob_is_expanded(testbed: Any, space: Path, tmp_path: Path) -> None:
    setup = roms(tmp_path / "setup")
    tasks = (
        f"  - {{hosts: h1, copy: {{mode: push, src: '{setup}/*.zip', dest: '~/Atari_ROM'}}}}\n"
        f"  - {{hosts: h1, copy: {{mode: pull, src: '~/runs/*/log.txt', dest: '{tmp_path}/logs'}}}}\n"
    )
    write_project(
        tmp_path, testbed, "inventory: {hosts: hosts.yaml, configs: configs.yaml}\ntasks:\n" + tasks
    )
    proc = compute("run", "book.yaml", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"# {setup}/*.zip expanded on this machine: 2 matches: a.zip, b.zip" in proc.stdout
    assert "# ~/runs/*/log.txt expanded on h1 by its shell" in proc.stdout
    assert "pattern=runs/*/log.txt" in proc.stdout or "pattern='runs/*/log.txt'" in proc.stdout
    assert not (tmp_path / "logs").exists() and not (Path(testbed.home) / "Atari_ROM").exists()
