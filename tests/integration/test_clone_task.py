"""The original tool's `clone` and `run` keys through the CLI on the test bed: repositories cloned
into the SSH host's home (one over ssh:// through the test sshd, one by path), installed with the
host's Python, cloned again (pulled), and one that fails without stopping the others."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.envtools import as_user, chown_tree, python_project, user_workspace
from tests.support.cli import compute
from tests.support.project import host_entry, write_project

COMMIT = "git -c user.name=Test -c user.email=test@example.org commit -q"


@dataclass(frozen=True)
class Repos:
    work: Path  # the test user's workspace, holding the bare repositories
    names: tuple[str, str]  # unique: they are cloned into the test user's home, shared by test beds
    env: dict[str, str]  # how the test user's git reaches the test sshd
    port: int

    def url(self, name: str) -> str:
        return f"ssh://ctest@127.0.0.1:{self.port}{self.work}/{name}.git"

    def path(self, name: str) -> str:
        return f"{self.work}/{name}.git"


@pytest.fixture
def repos(testbed: Any) -> Iterator[Repos]:
    tag = uuid.uuid4().hex[:8]
    names = (f"ctclonea{tag}", f"ctcloneb{tag}")
    with user_workspace(testbed, "clone") as work:
        shutil.copy(testbed.client_key, work / "key")
        (work / "known_hosts").write_text(f"[127.0.0.1]:* {testbed.host_pubkey}\n")
        for name in names:
            python_project(work / f"seed-{name}", name, f"from {name}")
        chown_tree(work, testbed.user)
        (work / "key").chmod(0o600)
        for name in names:
            as_user(
                testbed.user,
                f"cd {work} && git init -q --bare --initial-branch=main {name}.git && cd seed-{name}"
                f" && git init -q --initial-branch=main && git add -A && {COMMIT} -m first"
                f" && git push -q {work}/{name}.git main",
            )
        ssh = f"ssh -i {work}/key -o UserKnownHostsFile={work}/known_hosts -o BatchMode=yes"
        try:
            yield Repos(work, names, {"GIT_SSH_COMMAND": ssh}, testbed.hosts["h1"])
        finally:
            for name in names:
                shutil.rmtree(testbed.home / name, ignore_errors=True)


def run(tmp_path: Path, testbed: Any, tasks: str, **h1: Any) -> Any:
    book = "inventory: {hosts: hosts.yaml, configs: configs.yaml}\ntasks:\n" + tasks
    write_project(tmp_path, testbed, book, extra_hosts={"h1": host_entry(testbed, "h1", **h1)})
    return compute("run", "book.yaml", cwd=tmp_path)


@pytest.mark.slow
def test_clone_into_home_with_install_then_again_pulls(
    testbed: Any, repos: Repos, tmp_path: Path, user_venv: Path
) -> None:
    python = f"{user_venv}/bin/python"
    a, b = repos.names
    tasks = (
        "  - name: Git clone\n"
        "    hosts: [h1]\n"
        "    clone:\n"
        f"      repos: ['{repos.url(a)}', '{repos.path(b)}']\n"
        "      install: true\n"
        f"  - {{hosts: h1, run: \"cd / && {python} -c 'import {a}, {b}; print({a}.VALUE, {b}.VALUE)'\"}}\n"
    )
    proc = run(tmp_path, testbed, tasks, python=python, env=repos.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"h1: clone {a}: cloned into ~/{a}; installed with pip -e" in proc.stdout
    assert f"h1: clone {b}: cloned into ~/{b}; installed with pip -e" in proc.stdout
    assert "changed: h1" in proc.stdout and "2 repositories" in proc.stdout
    assert f"h1 | from {a} from {b}" in proc.stdout
    assert (testbed.home / a / a / "__init__.py").exists() and (testbed.home / b / "pyproject.toml").exists()

    again = f"  - {{hosts: h1, clone: {{repos: ['{repos.url(a)}', '{repos.path(b)}']}}}}\n"
    proc = run(tmp_path, testbed, again, env=repos.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"h1: clone {a}: already cloned; already up to date" in proc.stdout
    assert f"h1: clone {b}: already cloned; already up to date" in proc.stdout
    assert "ok: h1" in proc.stdout


def test_a_failing_repository_does_not_stop_the_others(testbed: Any, repos: Repos, tmp_path: Path) -> None:
    a, b = repos.names
    tasks = f"  - {{name: c, hosts: h1, clone: ['{repos.url('nope')}', '{repos.path(b)}']}}\n"
    proc = run(tmp_path, testbed, tasks, env=repos.env)
    assert proc.returncode == 1
    assert "h1: clone nope: failed: git clone failed (check the repository's URL or path)" in proc.stdout
    assert "does not appear to be a git repository" in proc.stdout
    assert f"h1: clone {b}: cloned into ~/{b}" in proc.stdout
    assert "clone failed for nope (1 of 2 repositories done" in proc.stdout
    assert (testbed.home / b / "pyproject.toml").exists() and not (testbed.home / a).exists()
    assert not (testbed.home / "nope").exists()


def test_run_takes_one_command_or_a_list_as_cmd_does(testbed: Any, tmp_path: Path) -> None:
    tasks = (
        "  - {name: one, hosts: [h1, localhost], run: 'echo one; echo \"$HOME\" | wc -l'}\n"
        "  - name: list\n"
        "    hosts: [h1]\n"
        "    run:\n"
        "      - echo first\n"
        "      - cd /tmp && pwd\n"
        "      - 'false'\n"
        "      - echo never\n"
    )
    proc = run(tmp_path, testbed, tasks)
    assert proc.returncode == 1
    assert "TASK [one] (cmd) on h1, localhost" in proc.stdout
    for host in ("h1", "localhost"):
        assert f"{host} | one\n" in proc.stdout and f"{host} | 1\n" in proc.stdout
    assert "h1 | first\nh1 | /tmp\n" in proc.stdout and "never" not in proc.stdout
    assert "failed: h1" in proc.stdout and "command failed with exit code 1" in proc.stdout
