"""The `git` task against real git: a bare repository on this machine, reached by the SSH host
(the test user) over ssh:// through the test sshd and by local path; retries while the remote's
sshd is down, and immediate failures for what retrying cannot fix."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.envtools import as_user, chown_tree, python_project, user_workspace
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import free_port, host_entry, write_project

COMMIT = "git -c user.name=Test -c user.email=test@example.org commit -q"


@dataclass(frozen=True)
class Remote:
    work: Path  # the test user's workspace
    origin: Path  # the bare repository
    seed: Path  # a working clone of it, to add commits "from elsewhere"
    env: dict[str, str]  # host env: how the test user's git reaches the test sshd
    port: int

    def url(self, port: int | None = None, repo: Path | None = None) -> str:
        return f"ssh://ctest@127.0.0.1:{port or self.port}{repo or self.origin}"


@pytest.fixture(scope="module")
def remote(testbed: Any) -> Iterator[Remote]:
    user = testbed.user
    with user_workspace(testbed, "git") as work:
        # the test user's own key and known hosts for the test sshd (every bed sshd shares a host
        # key, so one wildcard line also covers an sshd started later on another port)
        shutil.copy(testbed.client_key, work / "key")
        (work / "known_hosts").write_text(f"[127.0.0.1]:* {testbed.host_pubkey}\n")
        python_project(work / "seed", "ctinyproj", "from git")
        chown_tree(work, user)
        (work / "key").chmod(0o600)
        as_user(
            user,
            f"cd {work} && git init -q --bare --initial-branch=main origin.git && cd seed"
            f" && git init -q --initial-branch=main && git add -A && {COMMIT} -m first"
            f" && git remote add origin {work}/origin.git && git push -q origin main",
        )
        ssh = f"ssh -i {work}/key -o UserKnownHostsFile={work}/known_hosts -o BatchMode=yes"
        yield Remote(work, work / "origin.git", work / "seed", {"GIT_SSH_COMMAND": ssh}, testbed.hosts["h1"])


def run(tmp_path: Path, testbed: Any, remote: Remote, tasks: str, **h1: Any) -> Any:
    book = "inventory: {hosts: hosts.yaml, configs: configs.yaml}\ntasks:\n" + tasks
    env = {**remote.env, **h1.pop("env", {})}
    write_project(tmp_path, testbed, book, extra_hosts={"h1": host_entry(testbed, "h1", env=env, **h1)})
    return compute("run", "book.yaml", cwd=tmp_path)


def new_commit(remote: Remote, name: str, text: str = "x") -> None:
    as_user(
        "ctest",
        f"cd {remote.seed} && echo {text} > {name} && git add {name} && {COMMIT} -m {name}"
        " && git push -q origin main",
    )


def test_clone_over_ssh_then_again_pulls_then_pull_gets_new_commits(
    testbed: Any, remote: Remote, tmp_path: Path
) -> None:
    into = remote.work / "clones-a"
    clone = (
        f"  - {{hosts: h1, git: {{action: clone, path: {into}, repo: '{remote.url()}', "
        "branch: main, depth: 1}}\n"
    )
    proc = run(tmp_path, testbed, remote, clone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed: h1" in proc.stdout and f"cloned into {into}/origin" in proc.stdout
    assert (into / "origin" / "ctinyproj" / "__init__.py").exists()
    assert as_user("ctest", f"git -C {into}/origin rev-parse --is-shallow-repository").strip() == "true"

    proc = run(tmp_path, testbed, remote, clone)  # idempotent: the repository is there, pull
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: h1" in proc.stdout and "already cloned; already up to date" in proc.stdout

    new_commit(remote, "second.txt")
    proc = run(tmp_path, testbed, remote, f"  - {{hosts: h1, git: {{path: {into}/origin}}}}\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed: h1" in proc.stdout and "pulled" in proc.stdout
    assert (into / "origin" / "second.txt").read_text() == "x\n"


def test_push_of_a_commit_made_on_the_host(testbed: Any, remote: Remote, tmp_path: Path) -> None:
    clone = remote.work / "clones-push" / "origin"
    as_user("ctest", f"git clone -q {remote.origin} {clone}")
    as_user(
        "ctest", f"cd {clone} && echo from-host > pushed.txt && git add pushed.txt && {COMMIT} -m from-host"
    )
    proc = run(tmp_path, testbed, remote, f"  - {{hosts: h1, git: {{action: push, path: {clone}}}}}\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed: h1" in proc.stdout and "pushed" in proc.stdout
    assert "from-host" in as_user("ctest", f"git -C {remote.origin} log --format=%s main")
    as_user("ctest", f"cd {remote.seed} && git pull -q origin main")  # keep the seed in step


def test_clone_by_local_path_with_install(
    testbed: Any, remote: Remote, tmp_path: Path, user_venv: Path
) -> None:
    python = f"{user_venv}/bin/python"
    home_relative = "~/" + str(remote.origin.relative_to(testbed.home))
    tasks = (
        f"  - {{hosts: h1, git: {{action: clone, path: {remote.work}/clones-b, repo: '{home_relative}',"
        " install: true}}\n"
        f"  - {{hosts: h1, cmd: cd / && {python} -c 'import ctinyproj; print(ctinyproj.VALUE)'}}\n"
    )
    proc = run(tmp_path, testbed, remote, tasks, python=python)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installed with pip -e" in proc.stdout and "h1 | from git" in proc.stdout


def test_clone_on_localhost_by_local_path(tmp_path: Path) -> None:
    origin = tmp_path / "mine.git"
    seed = tmp_path / "seed"
    subprocess.run(
        ["git", "init", "-q", "--bare", "--initial-branch=main", str(origin)], check=True, timeout=30
    )
    seed.mkdir()
    (seed / "f.txt").write_text("local\n")
    for argv in (
        ["git", "init", "-q", "--initial-branch=main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one"],
        ["git", "push", "-q", str(origin), "main"],
    ):
        subprocess.run(argv, cwd=seed, check=True, timeout=30)
    (tmp_path / "hosts.yaml").write_text("localhost: {}\n")
    (tmp_path / "book.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\n"
        f"tasks:\n  - {{hosts: localhost, git: {{action: clone, path: {tmp_path}/out, repo: {origin}}}}}\n"
    )
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "out" / "mine" / "f.txt").read_text() == "local\n"


def test_a_remote_that_comes_up_late_is_reached_by_retrying(
    testbed: Any, remote: Remote, tmp_path: Path
) -> None:
    port = free_port()
    name = f"late{port}"

    def start_later() -> None:
        time.sleep(1.5)
        tbm.start_sshd(testbed, name, port=port)

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        tasks = (
            f"  - {{hosts: h1, git: {{action: clone, path: {remote.work}/clones-late, "
            f"repo: '{remote.url(port)}', retries: 40, delay: 0.25}}}}\n"
        )
        proc = run(tmp_path, testbed, remote, tasks)
    finally:
        starter.join()
        tbm.remove_sshd(testbed, name)  # later tests that walk every host must not meet it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "h1: git clone: remote unreachable (ssh: connect to host 127.0.0.1" in proc.stdout
    assert "attempt 1 of 40 failed, retrying in 0.25 s" in proc.stdout
    assert "changed: h1" in proc.stdout and "cloned into" in proc.stdout


def test_an_unreachable_remote_fails_after_the_configured_attempts(
    testbed: Any, remote: Remote, tmp_path: Path
) -> None:
    tasks = (
        f"  - {{hosts: h1, git: {{action: clone, path: {remote.work}/clones-never, "
        f"repo: '{remote.url(free_port())}', retries: 3, delay: 0.2}}}}\n"
    )
    proc = run(tmp_path, testbed, remote, tasks)
    assert proc.returncode == 1
    assert proc.stdout.count("retrying in 0.2 s") == 2
    assert "the remote is still unreachable after 3 attempts 0.2 s apart" in proc.stdout
    assert "Connection refused" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert not (remote.work / "clones-never" / "origin").exists()


def test_a_missing_repository_fails_at_the_first_attempt(
    testbed: Any, remote: Remote, tmp_path: Path
) -> None:
    nope = remote.work / "nope.git"
    tasks = (
        f"  - {{hosts: h1, git: {{action: clone, path: {remote.work}/c, repo: '{remote.url(repo=nope)}'}}}}\n"
    )
    start = time.monotonic()
    proc = run(tmp_path, testbed, remote, tasks)
    assert time.monotonic() - start < 5  # with the default 5 s delay, a retry would show
    assert proc.returncode == 1 and "retrying" not in proc.stdout
    assert "does not appear to be a git repository" in proc.stdout
    assert "check the repository's URL or path" in proc.stdout


def test_a_dirty_tree_blocks_a_pull_at_once_with_gits_words(
    testbed: Any, remote: Remote, tmp_path: Path
) -> None:
    clone = remote.work / "clones-dirty" / "origin"
    as_user("ctest", f"git clone -q {remote.origin} {clone} && echo local-edit >> {clone}/pyproject.toml")
    as_user(
        "ctest",
        f"cd {remote.seed} && git pull -q origin main && echo upstream >> pyproject.toml"
        f" && {COMMIT} -am upstream && git push -q origin main",
    )
    proc = run(tmp_path, testbed, remote, f"  - {{hosts: h1, git: {{path: {clone}}}}}\n")
    assert proc.returncode == 1 and "retrying" not in proc.stdout
    assert "would be overwritten by merge" in proc.stdout and "pyproject.toml" in proc.stdout
    assert "local changes: commit or discard them" in proc.stdout


def test_clone_into_a_directory_holding_something_else_is_refused(
    testbed: Any, remote: Remote, tmp_path: Path
) -> None:
    taken = remote.work / "clones-taken" / "origin"
    as_user("ctest", f"mkdir -p {taken} && echo mine > {taken}/notes.txt")
    tasks = f"  - {{hosts: h1, git: {{action: clone, path: {taken.parent}, repo: '{remote.url()}'}}}}\n"
    proc = run(tmp_path, testbed, remote, tasks)
    assert proc.returncode == 1
    assert f"{taken} exists and is not empty: remove it or clone elsewhere" in proc.stdout
    assert (taken / "notes.txt").read_text() == "mine\n"
