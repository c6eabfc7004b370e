"""Shell completion through a real bash: the script `compute completion bash` prints, sourced and asked."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import compute, compute_argv

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A `compute` on PATH that runs this checkout (the completion script calls `compute` by name)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "compute"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.join(compute_argv())} "$@"\n')
    wrapper.chmod(0o755)
    return folder


def complete(bin_dir: Path, cwd: Path, words: list[str]) -> list[str]:
    """What bash offers for the last of `words` (COMPREPLY), after `eval "$(compute completion bash)"`."""
    words_text = " ".join(f"'{w}'" for w in words)
    script = (
        'eval "$(compute completion bash)"\n'
        f"COMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}\n"
        "_compute_completion compute\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd)},
    )
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_commands_and_options(bin_dir: Path, tmp_path: Path) -> None:
    commands = complete(bin_dir, tmp_path, ["compute", ""])
    assert {"run", "check", "hosts", "init", "schema", "completion"} <= set(commands)
    assert complete(bin_dir, tmp_path, ["compute", "sch"]) == ["schema"]
    assert complete(bin_dir, tmp_path, ["compute", "schema", "h"]) == ["hosts"]
    assert "--dry-run" in complete(bin_dir, tmp_path, ["compute", "run", "--"])


def test_limit_completes_the_playbooks_hosts(bin_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(
        "localhost: {}\nalpha: {host: a.example.org}\nbeta: {host: b.example.org}\n"
    )
    (tmp_path / "book.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\ntasks: [{hosts: [alpha, beta, localhost], cmd: 'true'}]\n"
    )
    assert complete(bin_dir, tmp_path, ["compute", "run", "book.yaml", "--limit", ""]) == [
        "alpha",
        "beta",
        "localhost",
    ]
    assert complete(bin_dir, tmp_path, ["compute", "run", "book.yaml", "--limit", "alpha,b"]) == [
        "alpha,beta"
    ]
    # a broken playbook offers nothing and prints no error
    (tmp_path / "book.yaml").write_text("tasks: [")
    assert complete(bin_dir, tmp_path, ["compute", "run", "book.yaml", "--limit", ""]) == []


@pytest.mark.parametrize(
    ("shell", "marker"), [("zsh", "#compdef compute"), ("fish", "complete --no-files --command compute")]
)
def test_zsh_and_fish_scripts(shell: str, marker: str, tmp_path: Path) -> None:
    proc = compute("completion", shell, timeout=30)
    assert proc.returncode == 0 and marker in proc.stdout and "_COMPUTE_COMPLETE" in proc.stdout
