"""Several questions to a host in one round trip (hosts/shell.py `flight`, `apart`), run by bash: each
part reads exactly its own share of the stdin, whatever it does with it, and its output and exit
status come back apart."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute_platform.hosts import shell

TOKEN = "0123abcd"


def fly(parts: list[shell.Part], env: dict[str, str] | None = None) -> list[tuple[int, bytes] | None]:
    script, stdin = shell.flight(parts, TOKEN)
    answer = subprocess.run(
        ["bash", "-c", script], input=stdin, capture_output=True, timeout=60, check=False, env=env
    )
    return shell.apart(answer.stdout, TOKEN, len(parts))


@pytest.fixture(scope="module")
def other_head(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A PATH whose `head` is not GNU's (it knows no --version, as BSD's and busybox's): the flight
    then reads with dd, byte by byte."""
    folder = tmp_path_factory.mktemp("bin")
    fake = folder / "head"
    fake.write_text(f'#!/bin/sh\n[ "$1" = --version ] && exit 1\nexec {shutil.which("head")} "$@"\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def test_each_part_reads_its_own_stdin_and_says_its_exit_status() -> None:
    parts = [
        shell.Part("wc -c; exit 3", b"x" * (3 << 20)),  # larger than any pipe's buffer
        shell.Part("head -c 1", b"hello"),  # leaves before the end of its share
        shell.Part("true", b"unread"),  # reads none of it
        shell.Part("echo none; cat", b""),  # nothing to read: no wait for the parts after it
        shell.Part("printf 'no newline'; cat", b"\0binary\n"),
        shell.Part(f"printf '\\n{shell.FLIGHT_MARK}-other 0\\n'; cat", b"tail"),  # a mark of another flight
    ]
    assert fly(parts) == [
        (3, b"3145728\n"),
        (0, b"h"),
        (0, b""),
        (0, b"none\n"),
        (0, b"no newline\0binary\n"),
        (0, f"\n{shell.FLIGHT_MARK}-other 0\ntail".encode()),
    ]


def test_a_flight_cut_short_leaves_the_parts_after_it_without_an_answer() -> None:
    # a part ends the whole command ($$ is the command's shell, in a subshell too): a lost connection
    said = fly([shell.Part("echo first"), shell.Part("kill -9 $$"), shell.Part("echo never")])
    assert said == [(0, b"first\n"), None, None]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.binary(max_size=3000), st.integers(0, 4000)), min_size=1, max_size=5),
    st.booleans(),
)
def test_any_stdin_reaches_its_own_part_whole(
    other_head: dict[str, str], shares: list[tuple[bytes, int]], gnu: bool
) -> None:
    """Each part reads some of its share (`head -c`), or all of it (`cat`): the next one still starts
    at its own, with GNU's head or another."""
    parts = [shell.Part(f"head -c {n}; echo; cat >/dev/null" if n % 2 else "cat", data) for data, n in shares]
    expected = [(0, data[:n] + b"\n" if n % 2 else data) for data, n in shares]
    assert fly(parts, None if gnu else other_head) == expected


def test_a_host_asks_its_questions_in_one_command_whatever_its_init_sets() -> None:
    """`Host.ask`: one command for every part, each answered apart, with a host whose init sets `set
    -e` and `lastpipe` (a part that fails, or leaves by `exit`, ends only itself)."""
    from compute_platform.errors import CommandFailed
    from compute_platform.hosts.local import LocalHost
    from compute_platform.input.spec import HostSpec

    class Far(LocalHost):
        flies = True  # as a remote host does: a local one asks each part alone

    host = Far(HostSpec(alias="far", init=("set -e -o pipefail", "shopt -s lastpipe")))
    commands: list[str] = []
    run = host.run

    def counted(command: str, **kwargs: object) -> object:
        commands.append(command)
        return run(command, **kwargs)  # type: ignore[arg-type]

    host.run = counted  # type: ignore[method-assign]
    try:
        said = host.ask(
            [
                shell.Part("echo before; false"),  # ends the flight under the init's set -e: not here
                shell.Part("cat; exit 4", b"fed"),
                shell.Part("printf '\\0\\377'", whole=True),
                shell.Part("wc -c", b"x" * 70_000),
            ]
        )
    finally:
        host.close()
    assert len(commands) == 1
    first, fed = said[0], said[1]
    assert (
        isinstance(first, CommandFailed) and first.result.exit_code == 1 and first.result.stdout == "before\n"
    )
    assert isinstance(fed, CommandFailed) and (fed.result.exit_code, fed.result.stdout) == (4, "fed")
    assert said[2:] == [b"\0\377", b"70000\n"]


def test_an_answer_cut_in_its_middle_fails_the_parts_it_lost() -> None:
    """A long answer keeps its start and its end (BoundedOutput): a part whose mark was cut out, and
    the part after it (its output would start in another's), have no answer; the others keep theirs."""
    marks = [f"\n{shell.FLIGHT_MARK}-{TOKEN} {n} 0\n".encode() for n in range(4)]
    answer = b"zero" + marks[0] + b"one...[cut]...two" + marks[2] + b"three" + marks[3]
    assert shell.apart(answer, TOKEN, 4) == [(0, b"zero"), None, None, (0, b"three")]
