"""~/.ssh/config `Include`, read as OpenSSH reads it: paths relative to ~/.ssh, globs in lexical order,
an Include inside a Host block applying only within it, nesting, cycles, missing files."""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from compute_platform.errors import HostError
from compute_platform.input import sshconfig


@pytest.fixture
def ssh_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of its own (relative Includes are under ~/.ssh) and its ~/.ssh, the config elsewhere
    (COMPUTE_SSH_CONFIG, like `ssh -F`: relative paths are still under ~/.ssh)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("COMPUTE_SSH_CONFIG", str(tmp_path / "config"))
    return home / ".ssh"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config(text: str) -> Path:
    return write(sshconfig.ssh_config_path(), text)


def settings(name: str) -> tuple[str | None, str | None, str | None]:
    found = sshconfig.lookup(name, name)
    return found.get("hostname"), found.get("port"), found.get("user")


def test_a_host_of_an_included_file_has_its_hostname_port_and_user(ssh_dir: Path) -> None:
    write(ssh_dir / "cluster.conf", "Host login\n  HostName login.example.org\n  Port 2222\n  User alice\n")
    config("Include cluster.conf\nHost other\n  Port 2000\n")
    assert settings("login") == ("login.example.org", "2222", "alice")
    assert settings("other") == ("other", "2000", None)
    assert sshconfig.ssh_config_hosts() == {"login", "other"}


def test_relative_paths_are_under_home_ssh_not_beside_the_config(ssh_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "beside.conf", "Host a\n  Port 1\n")  # next to the config: not what `beside.conf` means
    write(ssh_dir / "beside.conf", "Host a\n  Port 2\n")
    write(ssh_dir / "t.conf", "Host t\n  Port 3\n")
    config('Include beside.conf\nInclude "~/.ssh/t.conf"\n')
    assert settings("a")[1] == "2" and settings("t")[1] == "3"


def test_a_glob_reads_its_files_in_lexical_order(ssh_dir: Path) -> None:
    # the first value obtained wins: 10-b before 20-a, whatever order they were written in
    write(ssh_dir / "config.d" / "20-a", "Host box\n  Port 2020\n  User late\nHost a\n  Port 1\n")
    write(ssh_dir / "config.d" / "10-b", "Host box\n  Port 1010\nHost b\n  Port 2\n")
    write(ssh_dir / "config.d" / ".hidden", "Host box\n  Port 9\n")  # `*` skips dot files, as glob(3) does
    config("Include config.d/*\n")
    assert settings("box") == ("box", "1010", "late")
    assert sshconfig.ssh_config_hosts() == {"box", "a", "b"}
    assert "2020" not in sshconfig.config_text(sshconfig.ssh_config_path()).split("1010")[0]


def test_several_paths_on_one_line_and_the_equals_form(ssh_dir: Path) -> None:
    write(ssh_dir / "one", "Host one\n  Port 1\n")
    write(ssh_dir / "two", "Host two\n  Port 2\n")
    write(ssh_dir / "three", "Host three\n  Port 3\n")
    config('Include one two\ninclude = "th[r]?e"\n')
    assert [settings(h)[1] for h in ("one", "two", "three")] == ["1", "2", "3"]


def test_an_include_inside_a_host_block_applies_only_within_it(ssh_dir: Path) -> None:
    write(ssh_dir / "inner", "Port 2201\nHost inner1\n  HostName inner-host\n")
    config("Host outer\n  Include inner\n  User after-include\nHost *\n  User fallback\n")
    # the included lines apply to `outer` only; the block goes on after the Include line
    assert settings("outer") == ("outer", "2201", "after-include")
    # inner1's block is inside `Host outer`: it matches no host, as OpenSSH has it
    assert settings("inner1") == ("inner1", None, "fallback")


def test_an_include_inside_a_matching_block_applies_there(ssh_dir: Path) -> None:
    write(ssh_dir / "inner", "Host login*\n  User bob\nHost *\n  Port 2222\n")
    config("Host login* gpu\n  Include inner\n  HostName cluster.example.org\n")
    assert settings("login1") == ("cluster.example.org", "2222", "bob")
    assert settings("gpu") == ("cluster.example.org", "2222", None)
    assert settings("elsewhere") == ("elsewhere", None, None)


def test_nested_includes(ssh_dir: Path) -> None:
    write(ssh_dir / "a", "Include b\n")
    write(ssh_dir / "b", f"Include {ssh_dir / 'c'}\n")
    write(ssh_dir / "c", "Host deep\n  HostName deep.example.org\n  Port 2022\n")
    config("Include a\n")
    assert settings("deep") == ("deep.example.org", "2022", None)
    assert sshconfig.ssh_config_hosts() == {"deep"}


def test_an_include_cycle_is_an_error_naming_the_file(ssh_dir: Path) -> None:
    write(ssh_dir / "loop", "Host looped\n  Port 7\nInclude loop\n")
    config("Host top\n  Port 1\nInclude loop\n")
    start = time.monotonic()
    where = re.escape(f"{ssh_dir / 'loop'} line 3")
    with pytest.raises(HostError, match=rf"top: cannot read .*: {where}: Include nested more than 16 deep"):
        sshconfig.lookup("top", "top")
    # listing names is best effort: what was read before the cycle, quickly
    assert sshconfig.ssh_config_hosts() == {"top", "looped"}
    assert time.monotonic() - start < 1


def test_a_branching_cycle_stops_at_once(ssh_dir: Path) -> None:
    # every file includes both: reading on past the first cycle would read 2**16 files
    write(ssh_dir / "d" / "a", "Host y\nInclude d/*\n")
    write(ssh_dir / "d" / "b", "Include d/*\n")
    config("Include d/*\n")
    start = time.monotonic()
    assert sshconfig.ssh_config_hosts() == {"y"}
    with pytest.raises(HostError, match="an include cycle"):
        sshconfig.lookup("y", "y")
    assert time.monotonic() - start < 1


def test_16_levels_are_allowed(ssh_dir: Path) -> None:
    for level in range(1, 16):
        write(ssh_dir / f"l{level}", f"Include l{level + 1}\n")
    write(ssh_dir / "l16", "Host bottom\n  Port 16\n")
    config("Include l1\n")
    assert settings("bottom")[1] == "16"


def test_a_missing_file_or_a_glob_matching_nothing_is_ignored(ssh_dir: Path) -> None:
    config("Include nowhere.conf /no/such/dir/* ~/.ssh/none.d/*.conf\nHost h\n  Port 2\n")
    assert settings("h") == ("h", "2", None)
    assert sshconfig.ssh_config_hosts() == {"h"}


def test_without_a_config_nothing(ssh_dir: Path) -> None:
    assert sshconfig.lookup("h", "h") == {} and sshconfig.ssh_config_hosts() == set()


def test_a_config_without_include_is_handed_over_verbatim(ssh_dir: Path) -> None:
    text = "# mine\nHost a b\n  Port 1\nMatch host x exec 'true'\n  User u\n"
    config(text)
    assert sshconfig.config_text(sshconfig.ssh_config_path()) == text


def test_match_exec_in_an_included_file_is_seen(ssh_dir: Path) -> None:
    write(ssh_dir / "m", 'Match host x exec "test -f /nonexistent"\n  Port 2222\n')
    config("Include m\n")
    assert sshconfig._runs_commands()
    config("Include other\n")
    assert not sshconfig._runs_commands()


OPENSSH_CASES = {
    "inside a host block": (
        {"inner": "Port 2201\nHost inner1\n  HostName inner-host\n  User i\n"},
        "Host outer\n  Include inner\n  User after-include\nHost *\n  User fallback\n",
    ),
    "inside a match block, nested": (
        {"a": "User from-a\nInclude b\nPort 2002\n", "b": "Host *.lab\n  HostName lab-gw\n  Port 2001\n"},
        "Match originalhost box.lab,gpu\n  Include a\n  User late\nHost box.lab other\n  Port 9\n",
    ),
    "a glob at the top": (
        {"d/1": "Host box\n  User one\n", "d/2": "Host box other\n  User two\n  Port 22022\n"},
        "Include d/*\nHost *\n  HostName fallback\n",
    ),
    "negated patterns": (
        {"neg": "Host * !gpu\n  User not-gpu\n"},
        "Host box gpu\n  Include neg\nHost *\n  Port 2\n",
    ),
}


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH's ssh")
@pytest.mark.parametrize("case", OPENSSH_CASES)
def test_the_same_settings_as_openssh(ssh_dir: Path, case: str) -> None:
    files, text = OPENSSH_CASES[case]
    for name, content in files.items():
        write(ssh_dir / name, content)
    path = config(text)
    for host in ("outer", "inner1", "box", "box.lab", "gpu", "other", "x.lab"):
        out = subprocess.run(["ssh", "-G", "-F", str(path), host], capture_output=True, text=True, check=True)
        theirs = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
        hostname, port, user = settings(host)
        ours = (hostname, port or "22", user or getpass.getuser())
        assert ours == (theirs["hostname"], theirs["port"], theirs["user"]), host
