"""SSH hosts run plain commands in one persistent remote shell (hosts/persistent.py): against the real
sshd, one channel for many commands, and each command behaving as if it had its own exec channel."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from compute_platform.hosts import make_host
from compute_platform.hosts.base import HEAD_BYTES, TAIL_BYTES
from compute_platform.hosts.ssh import SSHHost
from compute_platform.input.spec import HostSpec
from tests.support import testbed as tbm


@pytest.fixture
def own(testbed: tbm.Testbed) -> Iterator[tuple[SSHHost, str]]:
    """A host on an sshd of its own (its log counts only this test's sessions), and that sshd's name."""
    name = f"p{uuid.uuid4().hex[:6]}"
    port = tbm.start_sshd(testbed, name)
    spec = HostSpec(
        alias=name,
        host="127.0.0.1",
        port=port,
        user=testbed.user,
        key=str(testbed.client_key),
        known_hosts=str(testbed.known_hosts),
    )
    host = make_host(spec)
    assert isinstance(host, SSHHost)
    yield host, name
    host.close()
    tbm.remove_sshd(testbed, name)


def sessions(bed: Any, name: str) -> int:
    """Channels sshd opened beyond the first: the login probe, once per connection."""
    return tbm.sshd_log(bed, name).count("Starting session:") - 1


def test_fifty_commands_use_one_channel(testbed: tbm.Testbed, own: tuple[SSHHost, str]) -> None:
    host, name = own
    results = [host.run(f"echo {i}; echo e{i} >&2; exit {i % 3}") for i in range(50)]
    assert [(r.exit_code, r.stdout, r.stderr) for r in results] == [
        (i % 3, f"{i}\n", f"e{i}\n") for i in range(50)
    ]
    assert sessions(testbed, name) == 1


def test_state_does_not_leak_between_commands(own: tuple[SSHHost, str]) -> None:
    host, _ = own
    home = host.run('printf %s "$HOME"', check=True).stdout
    first = host.run("cd /tmp; export LEAK=1; leaky() { :; }; umask 077; exit 3")
    assert first.exit_code == 3
    after = host.run('pwd; echo "${LEAK-unset}"; type leaky >/dev/null 2>&1 || echo no-function; umask')
    assert after.stdout == f"{home}\nunset\nno-function\n0022\n"


def test_a_command_that_kills_its_shell_is_reported_like_an_exec_channel(
    testbed: tbm.Testbed, own: tuple[SSHHost, str]
) -> None:
    host, name = own
    killed = host.run("echo before; kill $$")
    assert (killed.exit_code, killed.stdout) == (-1, "before\n")
    assert host.run("echo next").stdout == "next\n"  # a fresh shell
    assert sessions(testbed, name) == 2


def test_ten_mib_on_both_streams(own: tuple[SSHHost, str]) -> None:
    host, _ = own
    script = "head -c 10485760 /dev/zero | tr '\\0' a; head -c 10485760 /dev/zero | tr '\\0' b >&2; exit 5"
    result = host.run(script)
    assert result.exit_code == 5
    # each stream's first and last 4 MiB are kept, the middle said to be dropped (memory stays bounded)
    mark = "\n[compute: 2.1 MB of output not kept]\n"
    assert result.stdout == "a" * HEAD_BYTES + mark + "a" * TAIL_BYTES
    assert result.stderr == "b" * HEAD_BYTES + mark + "b" * TAIL_BYTES
    assert host.run("echo small").stdout == "small\n"


def test_background_jobs_do_not_write_into_the_next_command(
    testbed: tbm.Testbed, own: tuple[SSHHost, str]
) -> None:
    host, name = own
    assert host.run("echo one").stdout == "one\n"
    late = host.run("(sleep 0.3; echo late) & echo now")  # an exec channel: it waits for `late`
    assert late.stdout == "now\nlate\n"
    assert [host.run(f"echo {i}").stdout for i in range(3)] == ["0\n", "1\n", "2\n"]
    assert sessions(testbed, name) == 2


def test_a_second_caller_does_not_wait_for_the_first(own: tuple[SSHHost, str]) -> None:
    host, _ = own
    host.run("true")
    slow: list[Any] = []
    thread = threading.Thread(target=lambda: slow.append(host.run("sleep 1.5; echo slow")))
    thread.start()
    quick = host.run("sleep 0.2; echo quick")
    assert quick.stdout == "quick\n" and quick.duration < 1.2
    thread.join(10)
    assert slow[0].stdout == "slow\n"


def test_a_small_stdin_goes_inside_the_script(testbed: tbm.Testbed, own: tuple[SSHHost, str]) -> None:
    """What `compute jobs` sends (job ids and folders, NUL-separated) reaches the command byte for
    byte, without a session of its own: one round trip per host."""
    host, name = own
    data = b"job\0/home/u/x y/\n'$(rm -rf ~)'\0\xff\xfe tail without newline"
    for fed in (data, b"", data * 1000):
        result = host.run("od -An -v -tx1 | tr -d ' \\n'; echo; exit 4", stdin=fed)
        assert (result.exit_code, result.stdout) == (4, fed.hex() + "\n")
        assert result.command == "od -An -v -tx1 | tr -d ' \\n'; echo; exit 4"
    assert sessions(testbed, name) == 1
    big = b"x" * (2 * 65536)  # over FED_MAX: an exec channel of its own, its stdin streamed
    assert host.run("wc -c", stdin=big).stdout.strip() == str(len(big))
    assert sessions(testbed, name) == 2


def test_a_timeout_in_the_shell_kills_the_command_and_the_next_one_runs(own: tuple[SSHHost, str]) -> None:
    host, _ = own
    mark = f"/tmp/compute-test-{uuid.uuid4().hex}"
    nap = f"30.{uuid.uuid4().int % 10**6:06d}"  # no other process sleeps this long
    result = host.run(f"echo started; sleep {nap}; touch {mark}", timeout=1.0)
    assert result.timed_out and result.exit_code == -1 and result.stdout == "started\n"
    assert result.duration < 5
    after = host.run(
        f"sleep 1; test -e {mark} && echo ran-on || echo stopped; pgrep -f 'sleep {nap}' || true"
    )
    assert after.stdout == "stopped\n"
    assert host.run("echo fine", timeout=10).stdout == "fine\n"
