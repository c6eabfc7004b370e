"""Real playbooks with `cmd` on several SSH hosts (real sshd) and localhost, through the CLI."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Entry, compute
from tests.support.project import free_port, write_project

BOOK = """\
inventory: {hosts: hosts.yaml, configs: configs.yaml}
tasks:
  - name: who
    hosts: [h1, h2, h3, localhost]
    cmd: echo "I am $USER in $PWD"
  - name: second
    hosts: [h1, h2, h3, localhost]
    cmd: echo second-task
"""


def test_cmd_on_three_ssh_hosts_and_localhost(testbed: Any, tmp_path: Path) -> None:
    write_project(tmp_path, testbed, BOOK)
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for alias in ("h1", "h2", "h3"):
        assert f"{alias} | I am {testbed.user} in {testbed.home}" in proc.stdout
        assert f"{alias} | second-task" in proc.stdout
    assert "localhost | I am" in proc.stdout
    assert "failed=0" in proc.stdout


def test_a_host_that_is_down_fails_alone_and_quickly(testbed: Any, tmp_path: Path) -> None:
    down = {
        "down": {
            "host": "127.0.0.1",
            "port": free_port(),
            "user": testbed.user,
            "key": str(testbed.client_key),
        }
    }
    write_project(
        tmp_path, testbed, BOOK.replace("[h1, h2, h3, localhost]", "[h1, down, localhost]"), extra_hosts=down
    )
    start = time.monotonic()
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert time.monotonic() - start < 15
    assert proc.returncode == 1
    assert "down" in proc.stdout and "refused" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    # the others finished both tasks; the down host was left out of the second task
    assert "h1 | second-task" in proc.stdout and "localhost | second-task" in proc.stdout
    assert "skipped: down" in proc.stdout


def test_changed_host_key_is_refused(testbed: Any, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    fake = (tmp_path / "other.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{testbed.hosts['h1']} {fake[0]} {fake[1]}\n")
    write_project(tmp_path, testbed, BOOK.replace("[h1, h2, h3, localhost]", "[h1]"), known_hosts=known)
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "CHANGED" in proc.stdout and f"ssh-keygen -f {known} -R" in proc.stdout
    assert known.read_text().count("\n") == 1  # never overwritten


def test_unknown_host_key_is_recorded_unless_strict(testbed: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    write_project(tmp_path, testbed, BOOK.replace("[h1, h2, h3, localhost]", "[h2]"), known_hosts=known)
    assert compute("run", "book.yaml", cwd=tmp_path).returncode == 0
    assert f"[127.0.0.1]:{testbed.hosts['h2']} ssh-ed25519 " in known.read_text()

    strict = tmp_path / "strict"
    strict.mkdir()
    empty = strict / "known_hosts"
    empty.write_text("")
    write_project(
        strict, testbed, BOOK.replace("[h1, h2, h3, localhost]", "[h2]"), known_hosts=empty, strict=True
    )
    proc = compute("run", "book.yaml", cwd=strict)
    assert proc.returncode == 1 and "host_key_checking is strict" in proc.stdout
    assert empty.read_text() == ""


def test_limit_and_dry_run(testbed: Any, tmp_path: Path) -> None:
    write_project(tmp_path, testbed, BOOK)
    proc = compute("run", "book.yaml", "--limit", "h2,localhost", cwd=tmp_path)
    assert proc.returncode == 0
    assert "h2 | second-task" in proc.stdout and "h1 |" not in proc.stdout and "h3 |" not in proc.stdout

    marker = tmp_path / "dry-marker"
    write_project(tmp_path, testbed, BOOK.replace("echo second-task", f"touch {marker}"))
    proc = compute("run", "book.yaml", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0
    assert f"h1 $ touch {marker}" in proc.stdout and f"localhost $ touch {marker}" in proc.stdout
    assert not marker.exists()

    proc = compute("run", "book.yaml", "--limit", "nope", cwd=tmp_path)
    assert proc.returncode == 2 and "--limit" in proc.stderr


def test_hosts_ping(testbed: Any, tmp_path: Path) -> None:
    down = {
        "down": {
            "host": "127.0.0.1",
            "port": free_port(),
            "user": testbed.user,
            "key": str(testbed.client_key),
        }
    }
    write_project(tmp_path, testbed, BOOK, extra_hosts=down)
    proc = compute("hosts", "--ping", "-i", "hosts.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert " ok " in lines["h1"] and "connect" in lines["h1"]
    assert "FAILED" in lines["down"] and "refused" in lines["down"]


@pytest.mark.parametrize(
    "entry", ["shim", "script"]
)  # `python3 compute.py book.yaml`, `compute run book.yaml`
def test_original_entry_point_and_console_script(testbed: Any, tmp_path: Path, entry: Entry) -> None:
    write_project(tmp_path, testbed, BOOK.replace("[h1, h2, h3, localhost]", "[localhost, h1]"))
    args = ["book.yaml"] if entry == "shim" else ["run", "book.yaml"]
    proc = compute(*args, cwd=tmp_path, timeout=60, entry=entry)
    assert proc.returncode == 0, proc.stderr
    assert "h1 | second-task" in proc.stdout
