"""Fixtures of the integration tests (the test bed itself is tests/conftest.py's)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.envtools import as_user, user_workspace
from tests.support import keepers
from tests.support import testbed as tbm


@pytest.fixture(scope="session")
def user_venv(testbed: tbm.Testbed) -> Iterator[Path]:
    """A virtual environment of the test user (Debian's python3 itself refuses pip installs, PEP 668),
    made once per session (2-3 s, in the set-up of the first test that asks, not in its run) and
    removed at the end."""
    with user_workspace(testbed, "venv") as work:
        as_user(testbed.user, f"python3 -m venv {work}/venv")
        yield work / "venv"


@pytest.fixture
def keeper(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The connection keeper on (the test environment has it off), in a control directory of this
    test's own (short: a unix socket's path has at most 104 bytes); every keeper started there is
    stopped at the end, so that no connection outlives the test."""
    folder = Path(tempfile.mkdtemp(prefix="ck-", dir="/tmp"))
    monkeypatch.setenv("COMPUTE_CONTROL_DIR", str(folder))
    monkeypatch.setenv("COMPUTE_KEEPER", "1")
    try:
        yield folder
    finally:
        keepers.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
