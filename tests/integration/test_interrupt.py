"""Ctrl-C stops what runs on SSH hosts too: closing the connection alone leaves a command without a
terminal running there, so the run kills the process groups of its running commands first."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import compute_popen
from tests.support.project import host_entry, write_project
from tests.support.waiting import wait_for


def sleeping(testbed: Any, seconds: int) -> int:
    """How many `sleep SECONDS` processes run on the test hosts (they share this machine)."""
    proc = subprocess.run(
        ["pgrep", "-u", testbed.user, "-fx", f"sleep {seconds}"], capture_output=True, text=True
    )
    return len(proc.stdout.split())


@pytest.mark.parametrize("channel", ["persistent shell", "exec channel", "openssh"])
def test_ctrl_c_kills_the_commands_running_on_ssh_hosts(testbed: Any, tmp_path: Path, channel: str) -> None:
    seconds = 400_000 + random.randrange(500_000)
    # a task timeout, or a background job (`&`), sends the command over an exec channel
    timeout = "    timeout: 3600\n" if channel == "exec channel" else ""
    command = f"sleep {seconds} & sleep {seconds}; wait" if channel == "exec channel" else f"sleep {seconds}"
    expected = 4 if channel == "exec channel" else 2
    hosts = "[o1, o2]" if channel == "openssh" else "[h1, h2]"
    openssh = {f"o{i}": host_entry(testbed, f"h{i}", connection="openssh") for i in (1, 2)}
    book = (
        "inventory: {hosts: hosts.yaml, configs: configs.yaml}\n"
        "tasks:\n"
        "  - name: long\n"
        f"    hosts: {hosts}\n"
        f"{timeout}"
        f"    cmd: '{command}'\n"
    )
    write_project(tmp_path, testbed, book, extra_hosts=openssh)
    run = compute_popen("run", "book.yaml", cwd=tmp_path)
    try:
        wait_for(lambda: sleeping(testbed, seconds) >= expected, 20, "the commands to start", interval=0.1)
        assert sleeping(testbed, seconds) == expected
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=20)
        assert run.returncode == 130, out + err
        wait_for(lambda: sleeping(testbed, seconds) == 0, 10, "the commands to be killed", interval=0.1)
    finally:
        run.kill()
        subprocess.run(["pkill", "-u", testbed.user, "-fx", f"sleep {seconds}"], capture_output=True)
