"""Task types. TASK_TYPES is the one literal table of action keys -> their models; REGISTRY maps
the same keys to the model classes, each imported when first asked for (a playbook of `cmd`
tasks does not pay for importing the Slurm, tmux, copy, git and pip modules: ~20 ms)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from compute_platform.context import Outcome
from compute_platform.tasks.base import Action

TASK_TYPES: dict[str, str] = {
    "cmd": "compute_platform.tasks.cmd:Cmd",
    "pip": "compute_platform.tasks.pip:Pip",
    "git": "compute_platform.tasks.git:Git",
    "clone": "compute_platform.tasks.clone:Clone",
    "copy": "compute_platform.tasks.copy:Copy",
    "slurm": "compute_platform.tasks.slurm:Slurm",
    "tmux": "compute_platform.tasks.tmux:Tmux",
    "sync": "compute_platform.tasks.sync:Sync",
}

# Other spellings accepted for the same task type (the original tool's names).
ALIASES: dict[str, str] = {
    "srun": "slurm",
    "run": "cmd",
}


class _Registry(Mapping[str, type[Action]]):
    """TASK_TYPES with the classes in place of their names, imported on first use."""

    def __getitem__(self, key: str) -> type[Action]:
        module, _, name = TASK_TYPES[key].partition(":")
        model: type[Action] = getattr(importlib.import_module(module), name)
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(TASK_TYPES)

    def __len__(self) -> int:
        return len(TASK_TYPES)


REGISTRY: Mapping[str, type[Action]] = _Registry()

__all__ = ["ALIASES", "REGISTRY", "TASK_TYPES", "Action", "Outcome"]
