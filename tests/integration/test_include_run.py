"""An included playbook's tasks run in place, through the CLI, on localhost."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import compute


def test_run_with_an_include(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text("localhost: {}\n")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "greet.yaml").write_text(
        "variables: {who: nobody}\ntasks:\n  - {name: greet, hosts: localhost, cmd: 'echo hello {{ who }}'}\n"
    )
    (tmp_path / "main.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\n"
        "tasks:\n"
        "  - {name: before, hosts: localhost, cmd: echo before}\n"
        "  - {include: parts/greet.yaml, variables: {who: world}}\n"
        "  - {name: after, hosts: localhost, cmd: echo after}\n"
    )
    proc = compute("run", "main.yaml", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("localhost | ")]
    assert lines == ["localhost | before", "localhost | hello world", "localhost | after"]
