"""The `pip` task against real pip: a venv on an SSH host (the test sshd), packages served from a
wheel directory on loopback, built in the test (no internet)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.envtools import as_user, wheel, wheel_server
from tests.support.cli import compute
from tests.support.project import host_entry, write_project


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("wheels")
    for version in ("1.0", "2.0"):
        wheel(folder, "ctiny", version, {"ctiny/__init__.py": f"VERSION = {version!r}\n"})
    with wheel_server(folder) as url:
        yield url


def project(tmp_path: Path, testbed: Any, book: str, **h1: Any) -> None:
    write_project(tmp_path, testbed, book, extra_hosts={"h1": host_entry(testbed, "h1", **h1)})


def installed(testbed: Any, venv: Path) -> str:
    return as_user(testbed.user, f"{venv}/bin/python -m pip list --disable-pip-version-check --format=freeze")


BOOK = """\
inventory: {{hosts: hosts.yaml, configs: configs.yaml}}
tasks:
  - name: list form
    hosts: h1
    pip: [ctiny==1.0]
  - name: again
    hosts: h1
    pip: [ctiny==1.0]
  - name: version
    hosts: h1
    cmd: cd / && {python} -c 'import ctiny; print("ctiny", ctiny.VERSION)'
  - name: upgrade
    hosts: h1
    pip: {{packages: [ctiny], upgrade: true, extra_args: [--no-index, --find-links, "{index}"]}}
  - name: uninstall
    hosts: h1
    pip: {{action: uninstall, packages: [ctiny]}}
"""


@pytest.mark.slow
def test_install_upgrade_uninstall_on_an_ssh_host(
    testbed: Any, user_venv: Path, index: str, tmp_path: Path
) -> None:
    python = f"{user_venv}/bin/python"
    # the list form has no room for options: the index comes from the host's environment
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": index}
    project(tmp_path, testbed, BOOK.format(python=python, index=index), python=python, env=env)
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "changed: h1" in out and "Successfully installed ctiny-1.0" in out
    assert "ok: h1" in out and "nothing to do" in out  # installed already: not changed
    assert "h1 | ctiny 1.0" in out
    assert "Successfully installed ctiny-2.0" in out
    assert "Successfully uninstalled ctiny-2.0" in out
    assert "ctiny==" not in installed(testbed, user_venv)


def test_a_requirements_file_is_sent_from_here(
    testbed: Any, user_venv: Path, index: str, tmp_path: Path
) -> None:
    (tmp_path / "requirements.txt").write_text(f"--no-index\n--find-links {index}\nctiny==2.0\n")
    book = (
        "inventory: {hosts: hosts.yaml, configs: configs.yaml}\n"
        "tasks:\n  - {hosts: h1, pip: {requirements: requirements.txt}}\n"
        "  - {hosts: h1, pip: {action: uninstall, requirements: requirements.txt}}\n"
    )
    project(tmp_path, testbed, book, python=f"{user_venv}/bin/python")
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Successfully installed ctiny-2.0" in proc.stdout
    assert "Successfully uninstalled ctiny-2.0" in proc.stdout


def test_a_missing_package_fails_with_pips_own_words(
    testbed: Any, user_venv: Path, index: str, tmp_path: Path
) -> None:
    book = (
        "inventory: {hosts: hosts.yaml, configs: configs.yaml}\n"
        "tasks:\n  - hosts: h1\n"
        f"    pip: {{packages: [ctiny-nope], extra_args: '--no-index --find-links {index}'}}\n"
    )
    project(tmp_path, testbed, book, python=f"{user_venv}/bin/python")
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "failed: h1" in proc.stdout and "pip install failed (exit code 1)" in proc.stdout
    assert "No matching distribution found for ctiny-nope" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_systems_python_is_left_alone_with_a_hint(testbed: Any, index: str, tmp_path: Path) -> None:
    """Outside a venv pip runs with --user, which Debian's Python refuses (PEP 668)."""
    book = (
        "inventory: {hosts: hosts.yaml, configs: configs.yaml}\n"
        "tasks:\n  - hosts: h1\n"
        f"    pip: {{packages: [ctiny], extra_args: '--no-index --find-links {index}'}}\n"
    )
    project(tmp_path, testbed, book)  # python: python3, the system's
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "PEP 668" in proc.stdout  # pip's own words
    assert "set `python:` for this host in hosts.yaml" in proc.stdout


def test_pip_on_localhost(index: str, tmp_path: Path) -> None:
    # our own pip serves the venv (no copy of pip in it: 0.1 s instead of 3 s to make)
    venv = ["-m", "venv", "--without-pip", "--system-site-packages", str(tmp_path / "venv")]
    subprocess.run([sys.executable, *venv], check=True, timeout=120)
    (tmp_path / "hosts.yaml").write_text(f"localhost: {{python: {tmp_path}/venv/bin/python}}\n")
    (tmp_path / "book.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\n"
        "tasks:\n  - hosts: localhost\n"
        f"    pip: {{packages: [ctiny==1.0], extra_args: '--no-index --find-links {index}'}}\n"
    )
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Successfully installed ctiny-1.0" in proc.stdout
    assert (tmp_path / "venv/lib").exists() and list(
        (tmp_path / "venv/lib").glob("python*/site-packages/ctiny")
    )
