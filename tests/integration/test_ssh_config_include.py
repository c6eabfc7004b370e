"""A host that only a file included by ~/.ssh/config defines, reached over SSH (a real sshd)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.cli import compute
from tests.support.project import write_hosts


def test_run_on_an_alias_defined_in_an_included_file(testbed: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    included = home / ".ssh" / "config.d" / "bed.conf"
    included.parent.mkdir(parents=True)
    included.write_text(
        f"Host inc-h1\n  HostName 127.0.0.1\n  Port {testbed.hosts['h1']}\n  User {testbed.user}\n"
    )
    config = tmp_path / "ssh_config"
    # relative to ~/.ssh, a glob, inside a Host block that goes on after the Include line
    config.write_text(f"Host inc-*\n  Include config.d/*.conf\n  IdentityFile {testbed.client_key}\n")
    write_hosts(tmp_path, {"localhost": {}})  # inc-h1 is not in hosts.yaml
    (tmp_path / "book.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\ntasks:\n  - {hosts: inc-h1, cmd: 'echo \"I am $USER\"'}\n"
    )
    env = {"COMPUTE_SSH_CONFIG": str(config), "HOME": str(home)}
    proc = compute("run", "book.yaml", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"inc-h1 | I am {testbed.user}" in proc.stdout
