"""One contract, every transport: the same assertions against LocalHost, SSHHost (paramiko, its own
connection or the keeper's kept one) and OpenSSHHost (the system ssh client through a ControlMaster),
all but the first against a real sshd, and against users whose login is like real ones: zsh, fish,
tcsh, dash as login shell, and a bashrc that prints on both streams and sets `set -eu`
(tests/support/testbed.py's LOGIN_USERS)."""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.errors import CommandFailed
from compute_platform.hosts import Host, kept, make_host
from compute_platform.hosts.base import HEAD_BYTES, TAIL_BYTES
from compute_platform.hosts.ssh import SSHHost
from compute_platform.input.spec import HostSpec
from tests.support import keepers
from tests.support import testbed as tbm


def ssh_spec(tb: Any, alias: str = "h1", user: str | None = None, **extra: Any) -> HostSpec:
    return HostSpec(
        alias=alias,
        host="127.0.0.1",
        port=tb.hosts[alias],
        user=user or tb.user,
        key=str(tb.client_key),
        known_hosts=str(tb.known_hosts),
        **extra,
    )


# transport, or transport-login user: what start-up files export, seen by every command
KINDS = {
    "local": None,
    "ssh": None,
    "openssh": None,
    "ssh-czsh": "zsh",
    "ssh-cfish": "fish",
    "ssh-ctcsh": "tcsh",
    "ssh-cdash": None,
    "ssh-cnoisy": "noisy",
    "ssh-ccd": "cd",
    "openssh-cfish": "fish",
    "openssh-cnoisy": "noisy",
    # through the connection keeper: its persistent shell (bash), exec channels (a noisy login)
    "kept": None,
    "kept-cnoisy": "noisy",
}


@pytest.fixture(params=list(KINDS))
def make(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of hosts of one kind, with optional init/env; every host is closed afterwards."""
    made: list[Host] = []
    connection, _, login = str(request.param).partition("-")

    def factory(**extra: Any) -> Host:
        if connection == "local":
            spec = HostSpec(alias="localhost", **extra)
        else:
            tb = request.getfixturevalue("testbed")
            user = tbm.login_user(tb, login) if login else None
            spec = ssh_spec(tb, user=user, connection="ssh" if connection == "kept" else connection, **extra)
        host = kept_host(spec, request) if connection == "kept" else make_host(spec)
        made.append(host)
        return host

    yield factory
    for host in made:
        host.close()


def kept_host(spec: HostSpec, request: pytest.FixtureRequest) -> Host:
    """A host going through the keeper's connection: the first one connects by itself and, closed,
    asks a keeper to keep its connection; the host returned goes through it."""
    request.getfixturevalue("keeper")
    host = make_host(spec)
    assert isinstance(host, SSHHost)
    host.connect()
    if not host.kept:
        host.close()
        keepers.wait_kept(spec.alias)
        host = make_host(spec)
        assert isinstance(host, SSHHost)
        host.connect()
    assert host.kept
    return host


def test_exit_codes_and_streams(make: Any) -> None:
    host = make()
    result = host.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok and result.duration >= 0
    with pytest.raises(CommandFailed) as info:
        host.run("echo boom >&2; exit 4", check=True)
    assert info.value.result.exit_code == 4 and "boom" in str(info.value)


def test_cwd_env_and_quoting(make: Any, tmp_path: Path) -> None:
    host = make(env={"FROM_HOST": "h v"})
    folder = "/tmp/compute contract dir"
    host.run(f"mkdir -p '{folder}'", check=True)
    result = host.run('pwd; echo "$FROM_HOST|$X"', cwd=folder, env={"X": "a'b $HOME;`id`"}, check=True)
    assert result.stdout == f"{folder}\nh v|a'b $HOME;`id`\n"


def test_missing_cwd_fails_clearly(make: Any) -> None:
    result = make().run("true", cwd="/nonexistent/dir")
    assert result.exit_code == 97 and "cannot cd to /nonexistent/dir" in result.stderr


def test_init_runs_first_and_a_failing_init_stops(make: Any) -> None:
    assert make(init=("export GREETING=hi",)).run('echo "$GREETING"').stdout == "hi\n"
    result = make(init=("false",)).run("echo should-not-run")
    assert result.exit_code == 97 and "init failed" in result.stderr and "should-not-run" not in result.stdout


def test_home_and_tilde_paths(make: Any, tmp_path: Path) -> None:
    host = make()
    home = host.run('printf %s "$HOME"', check=True).stdout
    assert host.home() == home
    assert host.expand("~/x") == f"{home}/x"
    assert host.run("pwd", cwd="~", check=True).stdout.strip() == home


def test_put_get_round_trip(make: Any, tmp_path: Path) -> None:
    host = make()
    data = os.urandom(3 * 1024 * 1024)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    remote = f"~/contract-{os.getpid()}-{time.monotonic_ns()}.bin"
    host.put(src, remote)
    digest = host.run(f"sha256sum {remote.replace('~', '$HOME', 1)}", check=True).stdout.split()[0]
    assert digest == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back" / "copy.bin"
    host.get(remote, back)
    assert back.read_bytes() == data
    host.run(f"rm -f {remote.replace('~', '$HOME', 1)}", check=True)


def test_large_stdout_and_stderr_at_once_do_not_deadlock(make: Any) -> None:
    # 10 MiB on each stream at the same time: a reader that drains one stream after the other hangs.
    script = "head -c 10485760 /dev/zero | tr '\\0' a & head -c 10485760 /dev/zero | tr '\\0' b >&2; wait"
    result = make().run(script, timeout=60)
    assert result.ok
    # each stream's first and last 4 MiB are kept, the middle 2 MiB said to be dropped
    mark = "\n[compute: 2.1 MB of output not kept]\n"
    assert result.stdout == "a" * HEAD_BYTES + mark + "a" * TAIL_BYTES
    assert result.stderr == "b" * HEAD_BYTES + mark + "b" * TAIL_BYTES


def test_lines_are_streamed_as_they_come(make: Any) -> None:
    seen: list[tuple[str, str, float]] = []
    start = time.monotonic()
    make().run(
        "echo one; sleep 0.5; echo two >&2",
        on_line=lambda s, text: seen.append((s, text, time.monotonic() - start)),
    )
    assert [(s, text) for s, text, _ in seen] == [("stdout", "one"), ("stderr", "two")]
    assert seen[0][2] < seen[1][2] - 0.3  # the first line arrived before the command ended


def test_timeout_kills_the_process_tree(make: Any) -> None:
    host = make()
    # durations no other test (or run of this one) uses, so that `ps` finds only this tree
    first, second = (300_000 + random.randrange(600_000) * 2 + i for i in range(2))
    start = time.monotonic()
    result = host.run(f"sleep {first} & sleep {second}; echo not reached", timeout=1)
    assert result.timed_out and not result.ok and time.monotonic() - start < 10
    time.sleep(0.5)
    left = host.run(f"ps -eo args | grep -cE '^sleep ({first}|{second})$' || true").stdout.strip()
    assert left == "0"


def test_stdin_bytes(make: Any) -> None:
    assert make().run("wc -c", stdin=b"x" * 100000, check=True).stdout.strip() == "100000"


def test_stdin_is_closed_unless_fed(make: Any) -> None:
    host = make()
    # in the persistent shell (plain), on an exec channel (a background job), and with a timeout
    for script in ("cat; echo done", "cat & wait; echo done"):
        result = host.run(script, timeout=20)
        assert (result.ok, result.stdout) == (True, "done\n"), script


def test_what_start_up_files_export_reaches_every_command(make: Any, request: pytest.FixtureRequest) -> None:
    expected = KINDS[request.node.callspec.params["make"]]
    if expected is None:
        pytest.skip("this login exports nothing of its own")
    host = make()
    assert host.run('echo "$COMPUTE_LOGIN"').stdout == f"{expected}\n"
    assert host.run('echo "$COMPUTE_LOGIN"', timeout=20).stdout == f"{expected}\n"


def test_commands_start_in_the_home_directory(make: Any, request: pytest.FixtureRequest) -> None:
    """Whatever `cd` a start-up file does (the noisy and cd users' bashrc go to /tmp)."""
    if request.node.callspec.params["make"] == "local":
        pytest.skip("local commands start where compute runs")
    host = make()
    home = host.home()
    assert host.run("pwd").stdout == f"{home}\n"
    assert host.run("pwd", timeout=20).stdout == f"{home}\n"


def test_no_pid_file_is_left_on_the_host(make: Any, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Every command records its process group in /tmp/compute-*.pid (for Ctrl-C and timeouts); the
    persistent shell's too. None stays once the host is closed."""
    if request.node.callspec.params["make"] == "local":
        pytest.skip("local commands need no pid file")
    # the bed's hosts are this machine: files newer than this one were made during the test
    start = tmp_path / "start"
    start.write_text("")
    os.utime(start, (time.time() - 1, time.time() - 1))
    host = make()
    user = host.run("id -un", check=True).stdout.strip()
    host.run("echo plain", check=True)
    host.run("echo timed", timeout=20, check=True)
    host.close()
    if request.node.callspec.params["make"].startswith("kept"):
        kept.logout(None)  # a kept connection's shell lives on with it, and goes when it is closed
    time.sleep(0.5)
    assert [path for path in Path("/tmp").glob("compute-*.pid") if made_by(path, user, start)] == []


def made_by(path: Path, user: str, start: Path) -> bool:
    try:
        return path.owner() == user and path.stat().st_mtime >= start.stat().st_mtime
    except FileNotFoundError:  # removed while the test looked
        return False
