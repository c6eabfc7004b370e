"""Fixtures of the integration tests (the test bed itself is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.envtools import as_user, user_workspace
from tests.support import testbed as tbm


@pytest.fixture(scope="session")
def user_venv(testbed: tbm.Testbed) -> Iterator[Path]:
    """A virtual environment of the test user (Debian's python3 itself refuses pip installs, PEP 668),
    made once per session (2-3 s, in the set-up of the first test that asks, not in its run) and
    removed at the end."""
    with user_workspace(testbed, "venv") as work:
        as_user(testbed.user, f"python3 -m venv {work}/venv")
        yield work / "venv"
