"""`compute init` through the CLI: the new project runs as-is on localhost."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import compute


def test_init_then_run_the_example(tmp_path: Path) -> None:
    proc = compute("init", "proj", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote proj/hosts.yaml" in proc.stdout and "next: cd proj && compute run" in proc.stdout
    project = tmp_path / "proj"
    assert compute("check", "playbooks/example.yaml", cwd=project).returncode == 0
    run = compute("run", "playbooks/example.yaml", cwd=project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "localhost | hello from compute on" in run.stdout
    # the inventory paths are relative to the playbook: it runs from anywhere
    assert compute("run", "proj/playbooks/example.yaml", cwd=tmp_path).returncode == 0


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "configs.yaml").write_text("mine: {}\n")
    proc = compute("init", cwd=tmp_path)
    assert proc.returncode == 2
    assert "configs.yaml already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs.yaml"]
