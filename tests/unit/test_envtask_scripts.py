"""The shell scripts the pip, git and copy tasks run on a host, against reference files.

The references live in tests/unit/golden/envtasks/. After an intended change of a script, regenerate
them with `COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_envtask_scripts.py` and review the diff.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from compute_platform.hosts import transfer
from compute_platform.tasks.git import Git
from compute_platform.tasks.pip import Pip, pip_script
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "envtasks"


def _pip(**fields: object) -> str:
    action = Pip.model_validate(Pip.shorthand(fields.pop("raw")) if "raw" in fields else fields)
    return pip_script(
        "~/envs/x y/bin/python", action.action, action.words(), requirements=bool(action.requirements)
    )


CASES: dict[str, Callable[[], str]] = {
    "pip_list.sh": lambda: _pip(raw=["numpy", "torch==2.3.1", "pandas>=2; python_version>'3'"]),
    "pip_full.sh": lambda: _pip(
        packages=["a"],
        requirements="req.txt",
        upgrade=True,
        editable="~/code/my proj",
        extra_args="--index-url 'http://127.0.0.1:8000/simple' --no-cache-dir",
    ),
    "pip_uninstall.sh": lambda: _pip(action="uninstall", packages=["a", "b"]),
    "git_pull.sh": lambda: Git(path="~/code/BERL").command(),
    "git_push_branch.sh": lambda: Git(action="push", path="/srv/it's here", branch="dev").command(),
    "git_clone.sh": lambda: Git(
        action="clone", path="~/code", repo="git@github.com:me/BERL.git", branch="main", depth=1
    ).command(),
    "git_clone_tilde_path.sh": lambda: Git(action="clone", path="/tmp/x", repo="~/repos/a b.git").command(),
    "copy_receive_file.sh": lambda: transfer.receive_script("~/data in", "it's.txt", is_dir=False),
    "copy_receive_tree.sh": lambda: transfer.receive_script("/scratch/$USER", "proj", is_dir=True),
    "copy_send.sh": lambda: transfer.send_script("~/runs/exp 1", [".git", "*.ckpt", "data/raw"]),
    "copy_send_matches.sh": lambda: transfer.send_matches_script(
        "~/runs/*/out [0-9].txt", [".git", "*.ckpt"]
    ),
    "copy_receive_matches.sh": lambda: transfer.receive_matches_script("~/Atari ROM"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_matches_reference(name: str) -> None:
    check_golden(GOLDEN / name, CASES[name]() + "\n")


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_is_valid_shell(name: str) -> None:
    for shell in ("bash", "sh"):
        proc = subprocess.run([shell, "-n"], input=CASES[name](), capture_output=True, text=True, timeout=10)
        assert proc.returncode == 0, proc.stderr
