"""`copy` with a glob `src`: which paths a pattern names on this machine, the names matches get in
`dest`, the scripts of both directions run for real by bash and sh (no SSH: the host's side is a
local shell), hostile patterns that must stay letters, and streams a broken host could send."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from compute_platform.errors import TaskError
from compute_platform.hosts import transfer
from tests.support.trees import listing, make_tree


def files(root: Path, *names: str) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


@pytest.mark.parametrize(
    ("src", "glob"),
    [
        ("data/*.txt", True),
        ("run?.log", True),
        ("out[0-9]", True),
        ("~/setup/*.zip", True),
        ("data/file.txt", False),
        ("~/runs/exp 1", False),
        ("a;rm -rf ~", False),
        ("$(id)", False),
    ],
)
def test_a_glob_is_told_by_its_characters(src: str, glob: bool) -> None:
    assert transfer.is_glob(src) is glob


def test_local_matches_are_sorted_and_skip_hidden_names_unless_asked(tmp_path: Path) -> None:
    files(tmp_path, "b.txt", "a.txt", ".hidden.txt", "c.log", "sub/d.txt")
    assert [p.name for p in transfer.local_matches(f"{tmp_path}/*.txt")] == ["a.txt", "b.txt"]
    assert [p.name for p in transfer.local_matches(f"{tmp_path}/.*")] == [".hidden.txt"]  # not . nor ..
    assert [p.name for p in transfer.local_matches(f"{tmp_path}/[ab].t?t")] == ["a.txt", "b.txt"]
    assert [p.name for p in transfer.local_matches(f"{tmp_path}/*")] == ["a.txt", "b.txt", "c.log", "sub"]


def test_local_matches_expand_the_home_as_a_path_not_a_pattern(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "odd [home]"
    files(home, "setup/a.zip", "setup/b.zip")
    monkeypatch.setenv("HOME", str(home))
    assert transfer.local_matches("~/setup/*.zip") == [home / "setup/a.zip", home / "setup/b.zip"]


def test_an_unmatched_pattern_names_a_path_literally_as_the_shell_leaves_it(tmp_path: Path) -> None:
    files(tmp_path, "weird[1].txt")
    assert transfer.local_matches(f"{tmp_path}/weird[1].txt") == [tmp_path / "weird[1].txt"]


def test_no_match_names_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"no match for .*/\*\.zip on this machine"):
        transfer.local_matches(f"{tmp_path}/*.zip")


def test_matches_of_the_same_name_are_refused(tmp_path: Path) -> None:
    files(tmp_path, "a/out.txt", "b/out.txt")
    with pytest.raises(TaskError, match=r"both named out\.txt"):
        transfer.bundle(transfer.local_matches(f"{tmp_path}/*/out.txt"))
    assert transfer.names_of(["x/a/", "/y/b", "c"]) == ["a", "b", "c"]
    for bad in (".", "x/..", "/"):
        with pytest.raises(TaskError, match="names no file"):
            transfer.names_of([bad])


def test_local_copy_of_matches_puts_each_into_dest_and_merges_trees(tmp_path: Path) -> None:
    src = files(tmp_path / "src", "a.zip", "b.zip", "notes.txt")
    tree = make_tree(src)
    dest = tmp_path / "dest"
    files(dest, "proj/only-there")
    stats = transfer.copy_local_matches(transfer.local_matches(f"{src}/[ap]*"), dest, ["*.ckpt"])
    assert sorted(p.name for p in dest.iterdir()) == ["a.zip", "proj"]
    assert (dest / "proj" / "only-there").exists()
    assert listing(dest / "proj")["good"] == listing(tree)["good"]
    assert not (dest / "proj" / "model.ckpt").exists()
    assert stats.matches == 2 and stats.files > 2


def test_a_conflict_places_no_match_at_all(tmp_path: Path) -> None:
    src = files(tmp_path / "src", "a.txt", "b.txt")
    dest = tmp_path / "dest"
    (dest / "b.txt").mkdir(parents=True)
    with pytest.raises(TaskError, match="is a directory"):
        transfer.copy_local_matches(transfer.local_matches(f"{src}/*.txt"), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]  # a.txt was not placed either


# -- the host's side, run by a local shell ------------------------------------------------------


def host_shell(shell: str, script: str, home: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [shell, "-c", script],
        input=stdin,
        capture_output=True,
        cwd=home,
        env={"PATH": os.environ["PATH"], "HOME": str(home)},
        timeout=30,
    )


def pulled(stream: bytes, root: Path, patterns: tuple[str, ...] = ()) -> transfer.Unpacked:
    root.mkdir(parents=True, exist_ok=True)
    return transfer.extract_matches(io.BytesIO(stream), root, patterns)


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_sent_matches_unpack_under_their_names(tmp_path: Path, shell: str) -> None:
    home = tmp_path / "home"
    files(home, "data/a.txt", "data/b.txt", "data/.hidden.txt", "data/c.log")
    tree = make_tree(home / "data")
    os.symlink(home / "data" / "a.txt", home / "data" / "linked.txt")
    os.link(home / "data" / "b.txt", home / "data" / "hard.txt")  # sent as a file of its own
    proc = host_shell(shell, transfer.send_matches_script("~/data/*", ["*.ckpt"]), home)
    assert proc.returncode == 0, proc.stderr
    seen = pulled(proc.stdout, tmp_path / "inbox", ("*.ckpt",))
    assert [name for name, _ in seen.tops] == ["a.txt", "b.txt", "c.log", "hard.txt", "linked.txt", "proj"]
    inbox = tmp_path / "inbox"
    assert not (inbox / "linked.txt").is_symlink() and (inbox / "linked.txt").read_text() == "data/a.txt"
    expected = {k: v for k, v in listing(tree).items() if not k.endswith(".ckpt")}
    assert listing(inbox / "proj") == expected and expected["link"] == ("link", 0, "good")
    assert not (inbox / ".hidden.txt").exists()


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_no_match_on_the_host_sends_nothing(tmp_path: Path, shell: str) -> None:
    proc = host_shell(shell, transfer.send_matches_script("*.zip"), tmp_path)
    assert proc.returncode == transfer.NO_MATCH and proc.stdout == b""


@pytest.mark.parametrize("shell", ["bash", "sh"])
@pytest.mark.parametrize(
    "pattern",
    [
        "*$(touch PWNED)*",
        "*`touch PWNED`*",
        "*; touch PWNED; *",
        "*\ntouch PWNED\n*",
        "*' ; touch PWNED ; '*",
        '*" ; touch PWNED ; "*',
        "*${IFS}touch${IFS}PWNED*",
        "* && touch PWNED *",
    ],
)
def test_a_hostile_pattern_is_globbed_never_run(tmp_path: Path, shell: str, pattern: str) -> None:
    files(tmp_path, "innocent.txt")
    proc = host_shell(shell, transfer.send_matches_script(pattern), tmp_path)
    assert proc.returncode == transfer.NO_MATCH, proc.stderr
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_names_with_shell_characters_are_matched_as_letters(tmp_path: Path, shell: str) -> None:
    names = ["$(id).txt", "a;b.txt", "`id`.txt", "it's.txt", "two  spaces.txt", "-rf.txt"]
    files(tmp_path, *names, "other.log")
    proc = host_shell(shell, transfer.send_matches_script("*.txt"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = pulled(proc.stdout, tmp_path / "inbox")
    assert sorted(name for name, _ in seen.tops) == sorted(names)
    proc = host_shell(shell, transfer.send_matches_script("$(id)*"), tmp_path)
    assert [name for name, _ in pulled(proc.stdout, tmp_path / "again").tops] == ["$(id).txt"]


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_a_dangling_link_among_the_matches_sends_nothing(tmp_path: Path, shell: str) -> None:
    files(tmp_path, "a.txt")
    os.symlink(tmp_path / "gone", tmp_path / "b.txt")
    proc = host_shell(shell, transfer.send_matches_script("*.txt"), tmp_path)
    assert proc.returncode == transfer.REFUSED and proc.stdout == b""
    assert b"b.txt is a link to nothing" in proc.stderr


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_pushed_matches_are_placed_only_when_all_fit(tmp_path: Path, shell: str) -> None:
    src = files(tmp_path / "src", "a.zip", "b.zip", ".rc")
    tree = make_tree(src)
    home = tmp_path / "home"
    files(home, "ROM/proj/only-there")
    stream = b"".join(
        transfer.tar_chunks(transfer.bundle([*transfer.local_matches(f"{src}/*"), src / ".rc"]))
    )
    proc = host_shell(shell, transfer.receive_matches_script("~/ROM"), home, stream)
    assert proc.returncode == 0, proc.stderr
    rom = home / "ROM"
    assert sorted(p.name for p in rom.iterdir()) == [".rc", "a.zip", "b.zip", "proj"]
    assert (rom / "proj" / "only-there").exists()  # merged into
    assert listing(rom / "proj") == {**listing(tree), "only-there": ("file", 0o644, "ROM/proj/only-there")}
    (rom / "a.zip").unlink()
    (rom / "b.zip").unlink()
    (rom / "b.zip").mkdir()  # a file can never replace a directory: nothing is placed
    proc = host_shell(shell, transfer.receive_matches_script("~/ROM"), home, stream)
    assert proc.returncode == transfer.REFUSED and b"is a directory" in proc.stderr
    assert sorted(p.name for p in rom.iterdir()) == [".rc", "b.zip", "proj"]


# -- streams of a broken or hostile host ------------------------------------------------------------


def stream_of(names: list[str], *archives: list[tuple[str, str, str]]) -> bytes:
    """The names block, then one tar stream per list of (name, kind, link target)."""
    out = b"".join(n.encode() + b"\0" for n in names) + b"\0"
    for members in archives:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, kind, target in members:
                info = tarfile.TarInfo(name)
                info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "hard": tarfile.LNKTYPE}[kind]
                info.linkname = target
                tar.addfile(info, io.BytesIO(b"") if kind == "file" else None)
        out += buffer.getvalue()
    return out


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (stream_of(["x/a"], [("b", "file", "")]), "expected the file 'a'"),
        (stream_of(["x/a"], [("./b", "file", "")]), "belongs to no match"),
        (stream_of(["x/a"], [("a", "file", "")], [("./b", "file", "")]), "belongs to no match"),
        (stream_of(["x/a"], [("a", "file", "")], [("c", "file", "")]), "more sources than matches"),
        (stream_of(["x/t"], [(".", "dir", ""), ("./../evil", "file", "")]), "'..'"),
        (stream_of(["x/t"], [(".", "dir", ""), ("./h", "hard", "/etc/passwd")]), "out of its tree"),
        (stream_of(["x/t"], [(".", "file", "")]), "root must be a directory"),
        (stream_of([".."], [(".", "dir", "")]), "names no file"),
        (stream_of(["a/x", "b/x"], [("x", "file", "")]), "both named x"),
        (stream_of(["a", "b"], [("a", "file", "")]), "sent 1 of its 2 matches"),
        (b"a\0b", "ended early"),
    ],
)
def test_streams_out_of_order_or_escaping_are_refused(tmp_path: Path, stream: bytes, reason: str) -> None:
    root = tmp_path / "inbox" / "tmp"
    with pytest.raises(TaskError) as info:
        pulled(stream, root)
    assert reason in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]
    assert not (tmp_path / "inbox" / "evil").exists()
