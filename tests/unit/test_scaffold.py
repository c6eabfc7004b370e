"""`compute init`'s files, against reference files.

The references live in tests/unit/golden/init/. After an intended change of a template,
regenerate them with `COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_scaffold.py` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_platform.cli.scaffold import init, render_hosts
from compute_platform.errors import InputError
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "init"
SSH_CONFIG = """\
Host bastion
  HostName bastion.example.org
Host cluster login2
  ProxyJump bastion
Host *.internal !skip
  User me
"""


def test_hosts_yaml_lists_ssh_config_hosts_as_comments() -> None:
    check_golden(GOLDEN / "hosts.yaml", render_hosts(["bastion", "cluster", "login2"], "~/.ssh/config"))


def test_init_writes_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(SSH_CONFIG)
    monkeypatch.setenv("COMPUTE_SSH_CONFIG", str(config))
    project = tmp_path / "project"
    written = init(project)
    assert [p.relative_to(project).as_posix() for p in written] == [
        "hosts.yaml",
        "configs.yaml",
        "playbooks/example.yaml",
        ".gitignore",
    ]
    hosts = (project / "hosts.yaml").read_text()
    # literal aliases only, never patterns
    assert "# bastion: {}\n# cluster: {}\n# login2: {}\n" in hosts and "internal" not in hosts
    assert f"Hosts found in {config}" in hosts
    assert (project / ".gitignore").read_text().endswith("archive/\n")


def test_without_ssh_config_no_suggestions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTE_SSH_CONFIG", str(tmp_path / "missing"))
    init(tmp_path)
    assert "Hosts found in" not in (tmp_path / "hosts.yaml").read_text()


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "example.yaml").write_text("mine\n")
    with pytest.raises(InputError, match=r"example.yaml already exists: compute init never overwrites"):
        init(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["example.yaml", "playbooks"]
    assert (tmp_path / "playbooks" / "example.yaml").read_text() == "mine\n"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", "# job scripts and job.csv recorded by compute\narchive/\n"),
        ("*.pyc", "*.pyc\n# job scripts and job.csv recorded by compute\narchive/\n"),
        ("*.pyc\narchive/\n", "*.pyc\narchive/\n"),
        ("/archive\n", "/archive\n"),
    ],
)
def test_gitignore_gets_archive_once(tmp_path: Path, before: str, after: str) -> None:
    if before:
        (tmp_path / ".gitignore").write_text(before)
    written = init(tmp_path)
    assert (tmp_path / ".gitignore").read_text() == after
    assert (tmp_path / ".gitignore" in written) == (before != after)
