"""Start-up costs a user pays at every command: what gets imported, and when (issue: performance).

Each check runs a fresh interpreter, since imports are process-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("click", "pydantic", "paramiko", "rich", "ruamel", "invoke")


def _modules(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages imported after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_version_imports_nothing_heavy() -> None:
    loaded = _modules(
        "from compute_platform.entry import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_loading_a_playbook_imports_no_ssh_or_display_library(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text("h1: {host: example.invalid}\n")
    book = tmp_path / "book.yaml"
    book.write_text("inventory: {hosts: hosts.yaml}\ntasks:\n  - {hosts: h1, cmd: 'true'}\n")
    loaded = _modules(
        f"from compute_platform import playbook\nplaybook.load(__import__('pathlib').Path({str(book)!r}))"
    )
    assert not loaded & {"paramiko", "rich", "invoke", "click"}


def test_paramiko_is_imported_without_invoke(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ServerAliveInterval 30\n")
    loaded = _modules(
        "from compute_platform.input.sshconfig import load_paramiko\nload_paramiko()\nimport paramiko",
        {"COMPUTE_SSH_CONFIG": str(config)},
    )
    assert "paramiko" in loaded and "invoke" not in loaded


def test_an_ssh_config_with_match_exec_gets_invoke(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text('Match host x exec "test -f /nonexistent"\n  Port 2222\n')
    code = (
        "from compute_platform.input.sshconfig import load_paramiko\nload_paramiko()\nimport paramiko\n"
        f"paramiko.SSHConfig.from_path({str(config)!r}).lookup('x')"
    )
    assert "invoke" in _modules(code, {"COMPUTE_SSH_CONFIG": str(config)})


def test_no_model_reads_its_source_when_created() -> None:
    """pydantic's use_attribute_docstrings parses every model's source at import (~60 ms per start):
    field docstrings are read by compute_platform.playbook.fielddocs when a reference or schema is made."""
    from compute_platform.input.models import ConfigSpec, HostEntry
    from compute_platform.tasks import REGISTRY

    for model in [HostEntry, ConfigSpec, *REGISTRY.values()]:
        assert not model.model_config.get("use_attribute_docstrings"), model.__name__


def test_known_hosts_is_parsed_once_until_the_file_changes(tmp_path: Path) -> None:
    from compute_platform.hosts.sshlib import known_hosts

    path = tmp_path / "known_hosts"
    line = (
        "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    path.write_text(line)
    first = known_hosts(path)
    assert known_hosts(path) is first and first.lookup("[127.0.0.1]:2222") is not None
    path.write_text(line + line.replace("2222", "2223"))
    second = known_hosts(path)
    assert second is not first and second.lookup("[127.0.0.1]:2223") is not None
    assert len(known_hosts(tmp_path / "missing")) == 0


def test_a_hosts_file_read_again_imports_neither_yaml_nor_pydantic(tmp_path: Path) -> None:
    """`compute jobs` after a run: the hosts file's validated settings come from the cache, and what
    asks tmux and Slurm hosts through a kept connection imports no validation nor SSH library."""
    (tmp_path / "hosts.yaml").write_text("h1: {host: example.invalid, port: 2222, init: [module load x]}\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    code = (
        "from pathlib import Path\nfrom compute_platform.input.inventory import load_inventory\n"
        f"spec = load_inventory(Path({str(tmp_path / 'hosts.yaml')!r}), None).host('h1')\n"
        "assert spec.port == 2222 and spec.init == ('module load x',), spec\n"
        "import compute_platform.jobs.query, compute_platform.hosts.ssh, compute_platform.hosts.kept\n"
        "import compute_platform.scheduling.tmux, compute_platform.scheduling.slurm"
    )
    assert {"pydantic", "ruamel"} <= _modules(code, env)  # the first read validates
    loaded = _modules(code, env)
    assert not loaded & {"pydantic", "ruamel", "paramiko"}, loaded & {"pydantic", "ruamel", "paramiko"}
