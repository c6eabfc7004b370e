"""The far network of tests/support/wan.py (what bench/run.py --scenario G measures compute on):
hosts in network namespaces behind links of 25 ms each way, one of them behind a jump host."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import testbed as tbm
from tests.support import wan
from tests.support.wan import JUMP


@pytest.fixture(scope="module")
def far(testbed: tbm.Testbed) -> Iterator[wan.Wan]:
    state = Path(tempfile.mkdtemp(prefix="compute-wan-", dir="/tmp"))
    state.chmod(0o755)
    network = wan.up(testbed, state, direct=1, behind=1)
    try:
        yield network
    finally:
        wan.down(state, network)
        shutil.rmtree(state, ignore_errors=True)


def test_hosts_behind_the_jump_host_answer_it_alone(far: wan.Wan) -> None:
    assert far.reachable("d1") and far.reachable(JUMP)
    assert far.reachable("b1", source=JUMP)
    assert not far.reachable("b1")  # the laptop has no route there
    assert not far.reachable("b1", source="d1")
    assert not far.reachable("d1", source="b1")  # nor have the hosts behind a route out


def test_each_turn_of_a_login_waits_a_round_trip_per_link(far: wan.Wan) -> None:
    for host, links in (("d1", 1), ("b1", 2)):
        before = len(far.network.connections)
        start = time.perf_counter()
        proc = subprocess.run(
            ["ssh", "-F", str(far.ssh_config), host, "hostname -I"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.perf_counter() - start
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[0] == far.addresses[host]
        opened = far.network.connections[before:]
        # behind the jump host: ssh's ProxyJump first logs in to the jump host, then through it
        assert [c.relay for c in opened] == ([JUMP, host] if links == 2 else [host])
        turns = opened[-1].turns
        assert 6 <= turns <= 20, turns  # TCP, key exchange, authentication, the command
        assert took >= turns * links * far.rtt, (host, turns, took)
